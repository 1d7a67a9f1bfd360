/*
 * test_http.c - the strict HTTP/1.x head parsers and the chunked decoder.
 *
 * These are the first code every client byte meets, so the tests pin each
 * status the request parser answers with (and the smuggling defences that
 * make it answer 400), the response parser's status line, header lookup,
 * the hop-by-hop rule, and a chunked decoder that must give the same bytes
 * however the body is split across reads.  Heads are copied into malloc'd
 * buffers of their exact length so that an over-read shows under ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "worker/http.h"

#define MAX_LINE	8192

/*
 * Parse S (NUL not included) from an exact-size heap copy.  The *_raw
 * forms hand the parser HH as the caller left it; the others zero it
 * first, so that a test of one property is not disturbed by another
 * (see test_request_reused_head_forgets_flags for why that matters).
 */
static int
req_raw(const char *s, size_t n, struct http_head *hh)
{
	char	*b = malloc(n ? n : 1);
	int	 rc;

	assert_non_null(b);
	memcpy(b, s, n);
	rc = http_parse_request(b, n, MAX_LINE, hh);
	free(b);	/* hh points into b: callers only look at scalars */
	return rc;
}

static int
req_n(const char *s, size_t n, struct http_head *hh)
{
	memset(hh, 0, sizeof(*hh));
	return req_raw(s, n, hh);
}

static int
req(const char *s, struct http_head *hh)
{
	return req_n(s, strlen(s), hh);
}

static int
req_raw_s(const char *s, struct http_head *hh)
{
	return req_raw(s, strlen(s), hh);
}

static int
resp_raw(const char *s, struct http_head *hh)
{
	size_t	 n = strlen(s);
	char	*b = malloc(n ? n : 1);
	int	 rc;

	assert_non_null(b);
	memcpy(b, s, n);
	rc = http_parse_response(b, n, hh);
	free(b);
	return rc;
}

static int
resp(const char *s, struct http_head *hh)
{
	memset(hh, 0, sizeof(*hh));
	return resp_raw(s, hh);
}

/* ---- requests: the good ones ---- */

static void
test_request_valid(void **state)
{
	static const char s[] =
	    "POST /v1/chat/completions HTTP/1.1\r\n"
	    "Host: example.com\r\n"
	    "Content-Type:application/json\r\n"
	    "X-Pad: \t spaced value \t \r\n"
	    "Empty:\r\n"
	    "Content-Length: 42\r\n"
	    "\r\n";
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(http_parse_request(s, sizeof(s) - 1, MAX_LINE, &hh), 0);
	assert_int_equal(hh.method_len, 4);
	assert_memory_equal(hh.method, "POST", 4);
	assert_int_equal(hh.target_len, strlen("/v1/chat/completions"));
	assert_memory_equal(hh.target, "/v1/chat/completions", hh.target_len);
	assert_int_equal(hh.path_len, hh.target_len);
	assert_int_equal(hh.minor, 1);
	assert_int_equal(hh.nh, 5);
	assert_int_equal(hh.content_length, 42);
	assert_false(hh.chunked);
	assert_false(hh.conn_close);
	assert_false(hh.conn_keepalive);
	assert_false(hh.expect_continue);
	assert_int_equal(hh.h[0].name_len, 4);
	assert_memory_equal(hh.h[0].name, "Host", 4);
	assert_int_equal(hh.h[0].value_len, 11);
	assert_memory_equal(hh.h[0].value, "example.com", 11);
	/* no space after the colon */
	assert_int_equal(hh.h[1].value_len, 16);
	assert_memory_equal(hh.h[1].value, "application/json", 16);
	/* leading and trailing OWS trimmed, inner space kept */
	assert_int_equal(hh.h[2].value_len, 12);
	assert_memory_equal(hh.h[2].value, "spaced value", 12);
	assert_int_equal(hh.h[3].value_len, 0);
}

static void
test_request_minimal_and_http10(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\n\r\n", &hh), 0);
	assert_int_equal(hh.nh, 0);
	assert_int_equal(hh.content_length, -1);
	assert_int_equal(hh.minor, 1);
	assert_int_equal(req("GET / HTTP/1.0\r\n\r\n", &hh), 0);
	assert_int_equal(hh.minor, 0);
	/* tchar methods beyond the usual ones */
	assert_int_equal(req("M-SEARCH * HTTP/1.1\r\n\r\n", &hh), 0);
	assert_int_equal(hh.method_len, 8);
	/* obs-text (bytes >= 0x80) is allowed in a value */
	assert_int_equal(req("GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n", &hh),
	    0);
}

static void
test_request_path_len_with_query(void **state)
{
	static const char s[] = "GET /v1/models?limit=5&x=? HTTP/1.1\r\n\r\n";
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(http_parse_request(s, sizeof(s) - 1, MAX_LINE, &hh), 0);
	assert_int_equal(hh.target_len, strlen("/v1/models?limit=5&x=?"));
	assert_int_equal(hh.path_len, strlen("/v1/models"));
	assert_memory_equal(hh.target, "/v1/models", hh.path_len);
	assert_int_equal(req("GET /a? HTTP/1.1\r\n\r\n", &hh), 0);
	assert_int_equal(hh.path_len, 2);
	assert_int_equal(hh.target_len, 3);
	assert_int_equal(req("GET ?q HTTP/1.1\r\n\r\n", &hh), 0);
	assert_int_equal(hh.path_len, 0);
}

static void
test_request_connection_tokens(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
	    &hh), 0);
	assert_true(hh.conn_close);
	assert_false(hh.conn_keepalive);
	assert_int_equal(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
	    &hh), 0);
	assert_false(hh.conn_close);
	assert_true(hh.conn_keepalive);
	assert_int_equal(req("GET / HTTP/1.1\r\nconnection: foo ,\tCLOSE ,"
	    "keep-alive\r\n\r\n", &hh), 0);
	assert_true(hh.conn_close);
	assert_true(hh.conn_keepalive);
	/* a token is the whole list element, not a prefix of it */
	assert_int_equal(req("GET / HTTP/1.1\r\nConnection: closed, "
	    "keep-alive-ish, x-close\r\n\r\n", &hh), 0);
	assert_false(hh.conn_close);
	assert_false(hh.conn_keepalive);
	/* only the Connection header counts */
	assert_int_equal(req("GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n",
	    &hh), 0);
	assert_false(hh.conn_close);
}

static void
test_request_expect_continue(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 100-continue\r\n\r\n", &hh), 0);
	assert_true(hh.expect_continue);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "expect: 100-Continue\r\n\r\n", &hh), 0);
	assert_true(hh.expect_continue);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Expect: 200-ok\r\n\r\n", &hh), 0);
	assert_false(hh.expect_continue);
}

static void
test_request_chunked(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"
	    "\r\n\r\n", &hh), 0);
	assert_true(hh.chunked);
	assert_int_equal(hh.content_length, -1);
	assert_int_equal(req("POST / HTTP/1.1\r\ntransfer-encoding:  Chunked "
	    "\r\n\r\n", &hh), 0);
	assert_true(hh.chunked);
	/* chunked needs HTTP/1.1 */
	assert_int_equal(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked"
	    "\r\n\r\n", &hh), 400);
}

static void
test_request_content_length(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	    &hh), 0);
	assert_int_equal(hh.content_length, 0);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n",
	    &hh), 0);
	assert_int_equal(hh.content_length, 7);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: "
	    "999999999999999999\r\n\r\n", &hh), 0);
	assert_int_equal(hh.content_length, 999999999999999999LL);
	/* 19 digits could overflow: refused */
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: "
	    "9999999999999999999\r\n\r\n", &hh), 400);
}

/* ---- requests: every error status ---- */

static void
test_request_400_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"\r\n\r\n",
		"GET / HTTP/1.1\r\n",			/* no empty line */
		"GET / HTTP/1.1\r\n\r",
		"GET / HTTP/1.1",
		"GET /\r\n\r\n",			/* no version */
		"GET\r\n\r\n",
		" GET / HTTP/1.1\r\n\r\n",		/* empty method */
		"GET  / HTTP/1.1\r\n\r\n",		/* empty target */
		"GET / http/1.1\r\n\r\n",
		"GET / FOO/1.1\r\n\r\n",
		"GET / HTTP\r\n\r\n",
		"GET /a\tb HTTP/1.1\r\n\r\n",		/* control in target */
		"GET /a\x7f HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\n: novalue\r\n\r\n",	/* empty name */
		"GET / HTTP/1.1\r\nX(y): z\r\n\r\n",	/* bad name char */
		"GET / HTTP/1.1\r\nX\x80: z\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",	/* bare CR */
		"GET / HTTP/1.1\r\n\r\nX: y\r\n\r\n",	/* bytes past the end */
	};
	struct http_head hh = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = req(bad[i], &hh);

		if (rc != 400)
			fail_msg("case %zu: got %d, want 400", i, rc);
	}
}

static void
test_request_400_bare_lf(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", &hh),
	    400);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\n\n\r\n\r\n", &hh),
	    400);
	assert_int_equal(req("GET / HTTP/1.1\r\nHo\nst: a\r\n\r\n", &hh), 400);
}

/*
 * A bare LF ending the request line leaves the version field as
 * "HTTP/1.1\nHost: a", which starts with "HTTP/" and so is answered 505,
 * as if the client spoke another HTTP version.  It is malformed: 400.
 */
static void
test_request_400_bare_lf_in_request_line(void **state)
{
	struct http_head hh;

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\nHost: a\r\n\r\n", &hh), 400);
	assert_int_equal(req("GET / HTTP/1.1\n\r\n\r\n", &hh), 400);
}

static void
test_request_400_space_before_colon(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding : chunked"
	    "\r\n\r\n", &hh), 400);
}

static void
test_request_400_obs_fold(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n",
	    &hh), 400);
	/* a fold as the very first header line */
	assert_int_equal(req("GET / HTTP/1.1\r\n Host: a\r\n\r\n", &hh), 400);
}

static void
test_request_400_bad_method_char(void **state)
{
	static const char *const bad[] = {
		"G(ET / HTTP/1.1\r\n\r\n",
		"GE\"T / HTTP/1.1\r\n\r\n",
		"GET\t/ HTTP/1.1\r\n\r\n",
		"G\x01T / HTTP/1.1\r\n\r\n",
		"G\xc3\x89T / HTTP/1.1\r\n\r\n",
		"GET/ / HTTP/1.1\r\n\r\n",
	};
	struct http_head hh = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = req(bad[i], &hh);

		if (rc != 400)
			fail_msg("case %zu: got %d, want 400", i, rc);
	}
}

static void
test_request_400_control_in_value(void **state)
{
	static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	struct http_head hh = { 0 };
	char s[64];
	int c;

	(void)state;
	assert_int_equal(req_n(nul, sizeof(nul) - 1, &hh), 400);
	for (c = 1; c < 0x20; c++) {
		if (c == '\t' || c == '\r' || c == '\n')
			continue;
		snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nX: a%cb\r\n\r\n", c);
		if (req(s, &hh) != 400)
			fail_msg("control 0x%02x accepted in a value", c);
	}
	assert_int_equal(req("GET / HTTP/1.1\r\nX: a\x7f" "b\r\n\r\n", &hh),
	    400);
	/* a tab inside a value is fine */
	assert_int_equal(req("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", &hh), 0);
}

static void
test_request_414(void **state)
{
	static char s[MAX_LINE + 32];	/* req_n copies it to the heap */
	struct http_head hh = { 0 };
	size_t	 n, tlen;
	int	 rc;

	(void)state;
	/* the request line (without CRLF) is exactly max_line: accepted */
	tlen = MAX_LINE - strlen("GET ") - strlen(" HTTP/1.1");
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', tlen - 1);
	n = 4 + tlen;
	memcpy(s + n, " HTTP/1.1\r\n\r\n", 13);
	n += 13;
	assert_int_equal(n - 4, MAX_LINE);
	rc = req_n(s, n, &hh);
	assert_int_equal(rc, 0);
	/* one byte more: 414 */
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', tlen);
	n = 4 + tlen + 1;
	memcpy(s + n, " HTTP/1.1\r\n\r\n", 13);
	n += 13;
	assert_int_equal(req_n(s, n, &hh), 414);
	/* a small limit */
	assert_int_equal(http_parse_request("GET /abcdef HTTP/1.1\r\n\r\n",
	    24, 10, &hh), 414);
}

static void
test_request_431_too_many_headers(void **state)
{
	struct http_head hh = { 0 };
	char	*s;
	size_t	 n;
	int	 i;

	(void)state;
	s = malloc(64 + 16 * (HTTP_MAX_HEADERS + 1));
	assert_non_null(s);
	n = (size_t)sprintf(s, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP_MAX_HEADERS; i++)
		n += (size_t)sprintf(s + n, "X-%03d: v\r\n", i);
	memcpy(s + n, "\r\n", 2);
	assert_int_equal(req_n(s, n + 2, &hh), 0);
	assert_int_equal(hh.nh, HTTP_MAX_HEADERS);
	n += (size_t)sprintf(s + n, "X-%03d: v\r\n", i);
	memcpy(s + n, "\r\n", 2);
	assert_int_equal(req_n(s, n + 2, &hh), 431);
	free(s);
}

static void
test_request_501_transfer_coding(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip"
	    "\r\n\r\n", &hh), 501);
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, "
	    "chunked\r\n\r\n", &hh), 501);
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, "
	    "identity\r\n\r\n", &hh), 501);
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: "
	    "\r\n\r\n", &hh), 501);
}

static void
test_request_505(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req("GET / HTTP/2.0\r\n\r\n", &hh), 505);
	assert_int_equal(req("GET / HTTP/1.2\r\n\r\n", &hh), 505);
	assert_int_equal(req("GET / HTTP/0.9\r\n\r\n", &hh), 505);
	assert_int_equal(req("GET / HTTP/3\r\n\r\n", &hh), 505);
	/* anything that starts "HTTP/" but is not 1.0 or 1.1 */
	assert_int_equal(req("GET / HTTP/1.x\r\n\r\n", &hh), 505);
	assert_int_equal(req("GET / HTTP/1.10\r\n\r\n", &hh), 505);
}

static void
test_request_smuggling(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	/* CL + TE, in both orders */
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n\r\n", &hh), 400);
	/* two Content-Lengths, even equal ones */
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Content-Length: 5\r\n\r\n", &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
	    "content-length: 6\r\n\r\n", &hh), 400);
	/* two Transfer-Encodings */
	assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", &hh), 400);
	/* Content-Length that is not all digits */
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n",
	    &hh), 400);
	assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", &hh),
	    400);
}

/*
 * The same struct http_head is reused for every request on a keep-alive
 * connection (worker/client.c keeps it in the client).  What one request
 * said must not leak into the next.
 */
static void
test_request_reused_head_forgets_flags(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(req_raw_s("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Connection: keep-alive\r\nExpect: 100-continue\r\n\r\n", &hh), 0);
	assert_true(hh.chunked);
	/* next request on the same connection: a plain Content-Length body */
	assert_int_equal(req_raw_s("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
	    &hh), 0);
	assert_false(hh.chunked);
	assert_false(hh.conn_keepalive);
	assert_false(hh.expect_continue);
}

static void
test_request_uninitialised_head(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	memset(&hh, 0xff, sizeof(hh));
	assert_int_equal(req_raw_s("GET / HTTP/1.1\r\n\r\n", &hh), 0);
	assert_false(hh.chunked);
	assert_false(hh.conn_close);
	assert_false(hh.conn_keepalive);
	assert_false(hh.expect_continue);
	assert_int_equal(hh.content_length, -1);
}

/* tests/fuzz/corpus/http/regress-version-overread, byte for byte */
static void
test_regress_version_overread(void **state)
{
	static const unsigned char in[] = {
		0x4f, 0x53, 0x54, 0x20, 0xda, 0xcf, 0xdf, 0x6d,
		0x6c, 0x20, 0x0d, 0x0a, 0x0d, 0x0a,
	};
	struct http_head hh = { 0 };
	char *b;
	size_t cut;

	(void)state;
	b = malloc(sizeof(in));
	assert_non_null(b);
	memcpy(b, in, sizeof(in));
	assert_int_equal(http_parse_request(b, sizeof(in), MAX_LINE, &hh), 400);
	assert_int_equal(http_parse_response(b, sizeof(in), &hh), -1);
	free(b);
	/* every prefix, each in its own exact-size buffer */
	for (cut = 0; cut < sizeof(in); cut++) {
		b = malloc(cut ? cut : 1);
		assert_non_null(b);
		memcpy(b, in, cut);
		assert_int_not_equal(http_parse_request(b, cut, MAX_LINE, &hh),
		    0);
		assert_int_equal(http_parse_response(b, cut, &hh), -1);
		free(b);
	}
	/* the same shape with a short "HTTP/" version */
	assert_int_equal(req("GET / HTTP/\r\n\r\n", &hh), 505);
	assert_int_equal(req("GET / HTTP\r\n\r\n", &hh), 400);
}

/* ---- responses ---- */

static void
test_response_valid(void **state)
{
	static const char s[] =
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: 17\r\n"
	    "\r\n";
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(resp(s, &hh), 0);
	assert_int_equal(hh.status, 200);
	assert_int_equal(hh.minor, 1);
	assert_int_equal(hh.content_length, 17);
	assert_false(hh.chunked);
	assert_int_equal(hh.nh, 2);
	assert_int_equal(http_parse_response(s, sizeof(s) - 1, &hh), 0);
	assert_int_equal(hh.target_len, 2);
	assert_memory_equal(hh.target, "OK", 2);
}

static void
test_response_reason(void **state)
{
	static const char a[] = "HTTP/1.0 404 Not Found Here\r\n\r\n";
	static const char b[] = "HTTP/1.1 204\r\n\r\n";
	static const char c[] = "HTTP/1.1 503 \r\n\r\n";
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(http_parse_response(a, sizeof(a) - 1, &hh), 0);
	assert_int_equal(hh.status, 404);
	assert_int_equal(hh.minor, 0);
	assert_int_equal(hh.target_len, strlen("Not Found Here"));
	assert_memory_equal(hh.target, "Not Found Here", hh.target_len);
	assert_int_equal(http_parse_response(b, sizeof(b) - 1, &hh), 0);
	assert_int_equal(hh.status, 204);
	assert_int_equal(hh.target_len, 0);
	assert_int_equal(http_parse_response(c, sizeof(c) - 1, &hh), 0);
	assert_int_equal(hh.status, 503);
	assert_int_equal(hh.target_len, 0);
	assert_int_equal(resp("HTTP/1.1 100 Continue\r\n\r\n", &hh), 0);
	assert_int_equal(hh.status, 100);
	assert_int_equal(resp("HTTP/1.1 599 Whatever\r\n\r\n", &hh), 0);
	assert_int_equal(hh.status, 599);
}

static void
test_response_chunked_and_length(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n", &hh), 0);
	assert_true(hh.chunked);
	assert_int_equal(hh.content_length, -1);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	    &hh), 0);
	assert_int_equal(hh.content_length, 0);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
	    &hh), 0);
	assert_true(hh.conn_close);
	assert_int_equal(hh.content_length, -1);
	/* smuggling defences apply to responses too */
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 3\r\n\r\n", &hh), -1);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	    "Content-Length: 3\r\n\r\n", &hh), -1);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
	    "\r\n", &hh), -1);
}

static void
test_response_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"\r\n\r\n",
		"HTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK",
		"HTTP/1.1 20\r\n\r\n",
		"HTTP/1.1 2000\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 600 OK\r\n\r\n",
		"HTTP/1.1 099 OK\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
	};
	struct http_head hh = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = resp(bad[i], &hh);

		if (rc != -1)
			fail_msg("case %zu (%s): got %d, want -1", i, bad[i],
			    rc);
	}
}

/*
 * The reason phrase is relayed to the client verbatim (worker/proxy.c,
 * px_send_head), so a bare LF or a control byte in it would let an
 * upstream inject a header line past the hop-by-hop filter.  RFC 9112 4:
 * reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
 */
static void
test_response_reason_rejects_controls(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\nSet-Cookie: a=b\r\nX: y\r\n\r\n",
		"HTTP/1.1 200 O\x01K\r\n\r\n",
		"HTTP/1.1 200 O\x7fK\r\n\r\n",
	};
	struct http_head hh;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = resp(bad[i], &hh);

		if (rc != -1)
			fail_msg("case %zu: got %d, want -1", i, rc);
	}
	/* tabs and obs-text are allowed */
	assert_int_equal(resp("HTTP/1.1 200 O\tK \xc3\xa9\r\n\r\n", &hh), 0);
}

static void
test_response_reused_head_forgets_flags(void **state)
{
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(resp_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "Connection: close\r\n\r\n", &hh), 0);
	assert_int_equal(resp_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
	    &hh), 0);
	assert_false(hh.chunked);
	assert_false(hh.conn_close);
}

/* ---- lookups ---- */

static void
test_find_case_insensitive(void **state)
{
	static const char s[] =
	    "GET / HTTP/1.1\r\n"
	    "Content-Type: a\r\n"
	    "X-Request-Id: first\r\n"
	    "x-request-id: second\r\n"
	    "\r\n";
	const struct http_header *h;
	struct http_head hh = { 0 };

	(void)state;
	assert_int_equal(http_parse_request(s, sizeof(s) - 1, MAX_LINE, &hh), 0);
	h = http_find(&hh, "content-type");
	assert_non_null(h);
	assert_ptr_equal(h, &hh.h[0]);
	assert_ptr_equal(http_find(&hh, "CONTENT-TYPE"), &hh.h[0]);
	/* the first match */
	h = http_find(&hh, "X-REQUEST-ID");
	assert_non_null(h);
	assert_int_equal(h->value_len, 5);
	assert_memory_equal(h->value, "first", 5);
	/* no prefix or suffix matches */
	assert_null(http_find(&hh, "content"));
	assert_null(http_find(&hh, "content-type-x"));
	assert_null(http_find(&hh, ""));
	assert_int_equal(http_name_is("Host", 4, "hOST"), 1);
	assert_int_equal(http_name_is("Host", 4, "hos"), 0);
	assert_int_equal(http_name_is("Hos", 3, "host"), 0);
}

static void
test_hop_by_hop(void **state)
{
	static const char s[] =
	    "GET / HTTP/1.1\r\n"
	    "Connection: close, X-Private ,x-other\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "Proxy-Connection: x\r\n"
	    "TE: trailers\r\n"
	    "Trailer: X\r\n"
	    "Upgrade: h2c\r\n"
	    "Proxy-Authorization: Basic x\r\n"
	    "Proxy-Authenticate: Basic\r\n"
	    "x-private: 1\r\n"
	    "X-OTHER: 2\r\n"
	    "Content-Type: a\r\n"
	    "Authorization: Bearer x\r\n"
	    "X-Privatey: 3\r\n"
	    "\r\n";
	static const char no_conn[] =
	    "POST / HTTP/1.1\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "X-Private: 1\r\n"
	    "\r\n";
	struct http_head hh = { 0 };
	int i, want[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };

	(void)state;
	assert_int_equal(http_parse_request(s, sizeof(s) - 1, MAX_LINE, &hh), 0);
	assert_int_equal(hh.nh, 13);
	for (i = 0; i < hh.nh; i++)
		if (http_is_hop_by_hop(&hh, &hh.h[i]) != want[i])
			fail_msg("header %d (%.*s): got %d, want %d", i,
			    (int)hh.h[i].name_len, hh.h[i].name,
			    http_is_hop_by_hop(&hh, &hh.h[i]), want[i]);
	assert_int_equal(http_parse_request(no_conn, sizeof(no_conn) - 1,
	    MAX_LINE, &hh), 0);
	assert_int_equal(http_is_hop_by_hop(&hh, &hh.h[0]), 1);
	assert_int_equal(http_is_hop_by_hop(&hh, &hh.h[1]), 0);
}

/*
 * http_head_take finds the blank line wherever it falls: at every
 * offset against the 16-byte steps of its search, in one chain or split
 * across two at every point, and fed a byte at a time (resuming from
 * where it stopped); it moves exactly the head out and leaves the rest.
 */
static void
test_head_take(void **state)
{
	char		 head[200], all[220], *buf = NULL;
	size_t		 cap = 0, len, scanned, hlen, k, cut, i;
	struct evbuffer	*in;
	int		 rc;

	(void)state;
	assert_non_null(in = evbuffer_new());
	for (k = 0; k < 70; k++) {
		snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nX: %.*s\r\n\r\n",
		    (int)k, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
		    "yyyyyyyyyyyyyyyyyyy\r\r\n\n");
		hlen = strlen(head);
		snprintf(all, sizeof(all), "%sBODY", head);
		for (cut = 0; cut <= hlen + 4; cut++) {
			evbuffer_drain(in, evbuffer_get_length(in));
			/* references stay separate chains */
			evbuffer_add_reference(in, all, cut, NULL, NULL);
			evbuffer_add_reference(in, all + cut, hlen + 4 - cut,
			    NULL, NULL);
			scanned = 0;
			rc = http_head_take(in, &scanned, 4096, &buf, &cap,
			    &len);
			assert_int_equal(rc, 1);
			assert_int_equal(len, hlen);
			assert_memory_equal(buf, head, hlen);
			assert_int_equal(evbuffer_get_length(in), 4);
		}
		evbuffer_drain(in, evbuffer_get_length(in));
		scanned = 0;
		for (i = 0; i < hlen; i++) {
			evbuffer_add(in, all + i, 1);
			rc = http_head_take(in, &scanned, 4096, &buf, &cap,
			    &len);
			assert_int_equal(rc, i + 1 == hlen ? 1 : 0);
		}
		assert_int_equal(len, hlen);
		assert_memory_equal(buf, head, hlen);
		assert_int_equal(evbuffer_get_length(in), 0);
	}
	/* no blank line within MAX: -1 */
	evbuffer_add(in, "GET / HTTP/1.1\r\nX: 1\r\n", 22);
	scanned = 0;
	assert_int_equal(http_head_take(in, &scanned, 20, &buf, &cap, &len), -1);
	free(buf);
	evbuffer_free(in);
}

static void
test_reason(void **state)
{
	(void)state;
	assert_string_equal(http_reason(200), "OK");
	assert_string_equal(http_reason(431),
	    "Request Header Fields Too Large");
	assert_string_equal(http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(http_reason(799), "Unknown");
}

/* ---- chunked bodies ---- */

/* Decode BODY fed in the pieces that CUTS (ascending, < n) delimit. */
static long
decode_pieces(const char *body, size_t n, const size_t *cuts, int ncuts,
    char *out, size_t outsz, size_t *outlen, struct chunked *ck,
    size_t *left)
{
	struct evbuffer *in = evbuffer_new(), *ob = evbuffer_new();
	size_t	 prev = 0;
	long	 total = 0, r;
	int	 k;

	assert_non_null(in);
	assert_non_null(ob);
	memset(ck, 0, sizeof(*ck));
	for (k = 0; k <= ncuts; k++) {
		size_t next = k < ncuts ? cuts[k] : n;

		evbuffer_add(in, body + prev, next - prev);
		prev = next;
		if ((r = chunked_decode(ck, in, ob)) < 0) {
			total = -1;
			break;
		}
		total += r;
	}
	*outlen = evbuffer_get_length(ob);
	assert_true(*outlen <= outsz);
	evbuffer_remove(ob, out, *outlen);
	if (left != NULL)
		*left = evbuffer_get_length(in);
	evbuffer_free(in);
	evbuffer_free(ob);
	return total;
}

static const char chunked_body[] =
    "5;name=value;q=\"x\"\r\n"
    "hello\r\n"
    "1A\r\n"
    "abcdefghijklmnopqrstuvwxyz\r\n"
    "1 \t;ext\r\n"
    "!\r\n"
    "000\r\n"
    "Trailer-One: 1\r\n"
    "X-Checksum: abc\r\n"
    "\r\n";
static const char chunked_decoded[] = "helloabcdefghijklmnopqrstuvwxyz!";

static void
test_chunked_whole(void **state)
{
	struct chunked ck;
	char out[128];
	size_t outlen, left;
	long r;

	(void)state;
	r = decode_pieces(chunked_body, sizeof(chunked_body) - 1, NULL, 0, out,
	    sizeof(out), &outlen, &ck, &left);
	assert_int_equal(r, (long)sizeof(chunked_decoded) - 1);
	assert_int_equal(outlen, sizeof(chunked_decoded) - 1);
	assert_memory_equal(out, chunked_decoded, outlen);
	assert_int_equal(ck.state, CHUNK_DONE);
	assert_int_equal(left, 0);
}

static void
test_chunked_every_split(void **state)
{
	const size_t n = sizeof(chunked_body) - 1;
	struct chunked ck;
	char out[128];
	size_t outlen, a, b, cuts[2];
	long r;

	(void)state;
	/* every single split point, and every pair of split points */
	for (a = 0; a <= n; a++) {
		for (b = a; b <= n; b++) {
			cuts[0] = a;
			cuts[1] = b;
			r = decode_pieces(chunked_body, n, cuts, 2, out,
			    sizeof(out), &outlen, &ck, NULL);
			if (r != (long)sizeof(chunked_decoded) - 1 ||
			    outlen != sizeof(chunked_decoded) - 1 ||
			    memcmp(out, chunked_decoded, outlen) != 0 ||
			    ck.state != CHUNK_DONE)
				fail_msg("split at %zu,%zu: r=%ld state=%d", a,
				    b, r, (int)ck.state);
		}
	}
}

static void
test_chunked_byte_by_byte(void **state)
{
	const size_t n = sizeof(chunked_body) - 1;
	size_t cuts[sizeof(chunked_body)], i, outlen;
	struct chunked ck;
	char out[128];
	long r;

	(void)state;
	for (i = 0; i + 1 < n; i++)
		cuts[i] = i + 1;
	r = decode_pieces(chunked_body, n, cuts, (int)(n - 1), out,
	    sizeof(out), &outlen, &ck, NULL);
	assert_int_equal(r, (long)sizeof(chunked_decoded) - 1);
	assert_int_equal(outlen, sizeof(chunked_decoded) - 1);
	assert_memory_equal(out, chunked_decoded, outlen);
	assert_int_equal(ck.state, CHUNK_DONE);
}

static void
test_chunked_stops_at_end(void **state)
{
	static const char s[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
	struct chunked ck;
	char out[16];
	size_t outlen, left;

	(void)state;
	assert_int_equal(decode_pieces(s, sizeof(s) - 1, NULL, 0, out,
	    sizeof(out), &outlen, &ck, &left), 3);
	assert_int_equal(ck.state, CHUNK_DONE);
	/* the next pipelined request is left alone */
	assert_int_equal(left, strlen("GET / HTTP/1.1\r\n\r\n"));
}

static void
test_chunked_incomplete_is_not_error(void **state)
{
	static const char s[] = "a\r\n01234";
	struct chunked ck;
	char out[16];
	size_t outlen;

	(void)state;
	assert_int_equal(decode_pieces(s, sizeof(s) - 1, NULL, 0, out,
	    sizeof(out), &outlen, &ck, NULL), 5);
	assert_int_equal(ck.state, CHUNK_DATA);
	assert_int_equal(ck.remaining, 5);
}

static long
decode_str(const char *s, size_t n)
{
	struct chunked ck;
	char out[4096];
	size_t outlen;

	return decode_pieces(s, n, NULL, 0, out, sizeof(out), &outlen, &ck,
	    NULL);
}

static void
test_chunked_malformed(void **state)
{
	static const char *const bad[] = {
		"g\r\nx\r\n0\r\n\r\n",		/* bad hex */
		"\r\n",				/* empty size */
		";ext\r\n",
		"-1\r\n",
		"0x5\r\nhello\r\n0\r\n\r\n",
		" 5\r\nhello\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",	/* bare LF after size */
		"5\r\nhelloXX0\r\n\r\n",	/* no CRLF after data */
		"5\r\nhello\n0\r\n\r\n",
		"5\r\nhello\r\r\n0\r\n\r\n",
		"5\r\nhelloo\r\n0\r\n\r\n",	/* more data than size */
		"1000000000000000\r\n",		/* 16 hex digits */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long r = decode_str(bad[i], strlen(bad[i]));

		if (r != -1)
			fail_msg("case %zu: got %ld, want -1", i, r);
	}
	/* 15 hex digits are still a size, just an unfinished one */
	assert_int_equal(decode_str("fffffffffffffff\r\n", 17), 0);
}

static void
test_chunked_long_size_line(void **state)
{
	char	 s[2100];
	size_t	 n;

	(void)state;
	/* extensions up to the limit are fine */
	s[0] = '1';
	s[1] = ';';
	memset(s + 2, 'e', 1022);
	memcpy(s + 1024, "\r\nx\r\n0\r\n\r\n", 10);
	assert_int_equal(decode_str(s, 1034), 1);
	/* a size line longer than that, complete or not, is an error */
	memset(s + 2, 'e', 1100);
	memcpy(s + 1102, "\r\nx\r\n0\r\n\r\n", 10);
	assert_int_equal(decode_str(s, 1112), -1);
	n = 2000;
	memset(s + 2, 'e', n - 2);
	assert_int_equal(decode_str(s, n), -1);
	/* a trailer line too */
	memcpy(s, "0\r\nX: ", 6);
	memset(s + 6, 'v', 1500);
	memcpy(s + 1506, "\r\n\r\n", 4);
	assert_int_equal(decode_str(s, 1510), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_valid),
		cmocka_unit_test(test_request_minimal_and_http10),
		cmocka_unit_test(test_request_path_len_with_query),
		cmocka_unit_test(test_request_connection_tokens),
		cmocka_unit_test(test_request_expect_continue),
		cmocka_unit_test(test_request_chunked),
		cmocka_unit_test(test_request_content_length),
		cmocka_unit_test(test_request_400_malformed),
		cmocka_unit_test(test_request_400_bare_lf),
		cmocka_unit_test(test_request_400_bare_lf_in_request_line),
		cmocka_unit_test(test_request_400_space_before_colon),
		cmocka_unit_test(test_request_400_obs_fold),
		cmocka_unit_test(test_request_400_bad_method_char),
		cmocka_unit_test(test_request_400_control_in_value),
		cmocka_unit_test(test_request_414),
		cmocka_unit_test(test_request_431_too_many_headers),
		cmocka_unit_test(test_request_501_transfer_coding),
		cmocka_unit_test(test_request_505),
		cmocka_unit_test(test_request_smuggling),
		cmocka_unit_test(test_request_reused_head_forgets_flags),
		cmocka_unit_test(test_request_uninitialised_head),
		cmocka_unit_test(test_regress_version_overread),
		cmocka_unit_test(test_response_valid),
		cmocka_unit_test(test_response_reason),
		cmocka_unit_test(test_response_chunked_and_length),
		cmocka_unit_test(test_response_malformed),
		cmocka_unit_test(test_response_reason_rejects_controls),
		cmocka_unit_test(test_response_reused_head_forgets_flags),
		cmocka_unit_test(test_find_case_insensitive),
		cmocka_unit_test(test_hop_by_hop),
		cmocka_unit_test(test_head_take),
		cmocka_unit_test(test_reason),
		cmocka_unit_test(test_chunked_whole),
		cmocka_unit_test(test_chunked_every_split),
		cmocka_unit_test(test_chunked_byte_by_byte),
		cmocka_unit_test(test_chunked_stops_at_end),
		cmocka_unit_test(test_chunked_incomplete_is_not_error),
		cmocka_unit_test(test_chunked_malformed),
		cmocka_unit_test(test_chunked_long_size_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
