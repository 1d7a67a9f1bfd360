/*
 * test_json_strict.c - the strict reading of request bodies: what it
 * refuses (issue 13's hostile bodies, and everything RFC 8259 forbids),
 * what it accepts, and what it reports for model, stream and
 * stream_options.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json_strict.h"

enum { F_MODEL, F_STREAM, F_SO };

struct rd {
	char				 model[128];
	char				 stream[16];
	struct json_strict_field	 f[3];
	struct json_strict_err		 err;
	char				 iu_buf[16];
	struct json_strict_field	 iu[1];	/* include_usage, inside */
	struct json_strict_err		 iu_err;
};

struct body {
	const char	*js;
	size_t		 len;
};

#define B(lit)		{ lit, sizeof(lit) - 1 }
#define NB(a)		(sizeof(a) / sizeof((a)[0]))
#define RD(r, lit)	rd(r, lit, sizeof(lit) - 1)
#define RD_SO(r, lit)	rd_so(r, lit, sizeof(lit) - 1)

/* Read JS from an exact-size heap copy (ASan catches any over-read). */
static enum json_strict_rc
read_copy(const char *js, size_t len, struct json_strict_field *f, int n,
    struct json_strict_err *err)
{
	char			*b = malloc(len ? len : 1);
	enum json_strict_rc	 rc;

	assert_non_null(b);
	memcpy(b, js, len);
	rc = json_strict_read(b, len, f, n, err);
	free(b);
	return rc;
}

/* The fields the request path reads: model, stream, stream_options. */
static enum json_strict_rc
rd(struct rd *r, const char *js, size_t len)
{
	memset(r, 0xa5, sizeof(*r));	/* outputs must not depend on it */
	r->f[F_MODEL] = (struct json_strict_field){ .key = "model",
	    .buf = r->model, .bufsize = sizeof(r->model) };
	r->f[F_STREAM] = (struct json_strict_field){ .key = "stream",
	    .buf = r->stream, .bufsize = sizeof(r->stream) };
	r->f[F_SO] = (struct json_strict_field){ .key = "stream_options" };
	return read_copy(js, len, r->f, 3, &r->err);
}

/* The body must read OK with an object stream_options: read inside it. */
static enum json_strict_rc
rd_so(struct rd *r, const char *js, size_t len)
{
	const struct json_strict_field *so = &r->f[F_SO];

	assert_int_equal(rd(r, js, len), JSON_STRICT_OK);
	assert_int_equal(so->type, JV_OBJECT);
	r->iu[0] = (struct json_strict_field){ .key = "include_usage",
	    .buf = r->iu_buf, .bufsize = sizeof(r->iu_buf) };
	return read_copy(js + so->start, so->end - so->start, r->iu, 1,
	    &r->iu_err);
}

/* Field F's value token is exactly TOK. */
static void
assert_token(const char *js, const struct json_strict_field *f,
    const char *tok)
{
	assert_true(f->end >= f->start);
	if (f->end - f->start != strlen(tok) ||
	    memcmp(js + f->start, tok, f->end - f->start) != 0)
		fail_msg("token [%zu,%zu) is \"%.*s\", not \"%s\"", f->start,
		    f->end, (int)(f->end - f->start), js + f->start, tok);
}

static void
assert_all(const struct body *b, size_t n, enum json_strict_rc want)
{
	struct rd		 r;
	enum json_strict_rc	 rc;
	size_t			 i;

	for (i = 0; i < n; i++)
		if ((rc = rd(&r, b[i].js, b[i].len)) != want)
			fail_msg("body %zu (%.*s): %d, want %d", i,
			    (int)b[i].len, b[i].js, rc, want);
}

static void
test_reads_a_chat_body(void **state)
{
	const char js[] = " {\"model\" : \"gpt-4o-mini\",\"messages\":[{"
	    "\"role\":\"user\",\"content\":\"a \\\"model\\\": \\\\\"},"
	    "{\"model\":\"nested\",\"stream\":false}],\"stream\":true,"
	    "\"stream_options\":{\"include_usage\":false},\"n\":-1.5e3} \n";
	struct rd r;

	(void)state;
	assert_int_equal(RD_SO(&r, js), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].type, JV_STRING);
	assert_token(js, &r.f[F_MODEL], "\"gpt-4o-mini\"");
	assert_string_equal(r.model, "gpt-4o-mini");
	assert_int_equal(r.f[F_MODEL].len, 11);
	assert_true(r.f[F_MODEL].printable);
	assert_int_equal(r.f[F_STREAM].type, JV_TRUE);
	assert_token(js, &r.f[F_STREAM], "true");
	assert_token(js, &r.f[F_SO], "{\"include_usage\":false}");
	assert_int_equal(r.iu[0].type, JV_FALSE);
	assert_int_equal(r.f[F_SO].start + r.iu[0].start,
	    strstr(js, "false},") - js);
	assert_int_equal(r.iu[0].end - r.iu[0].start, 5);
	assert_int_equal(r.err.field, -1);
}

static void
test_absent_fields_are_none(void **state)
{
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, "{\"messages\":[]}"), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].type, JV_NONE);
	assert_int_equal(r.f[F_STREAM].type, JV_NONE);
	assert_int_equal(r.f[F_SO].type, JV_NONE);
	assert_string_equal(r.model, "");
	assert_int_equal(r.f[F_MODEL].printable, 0);
}

/* issue 13 item 2: the upstream decodes the key and keeps the last one */
static void
test_escaped_duplicate_model_is_refused(void **state)
{
	const char js[] = "{\"model\":\"gpt-4o-mini\",\"mod\\u0065l\":"
	    "\"o1-pro\",\"messages\":[]}";
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, js), JSON_STRICT_DUPLICATE);
	assert_int_equal(r.err.field, F_MODEL);
	assert_int_equal(r.err.off, strstr(js, "\"mod\\u") - js);
	assert_int_equal(RD(&r, "{\"model\":\"a\",\"model\":\"a\"}"),
	    JSON_STRICT_DUPLICATE);
	assert_int_equal(RD(&r, "{\"\\u006d\\u006f\\u0064\\u0065\\u006c\":1,"
	    "\"model\":\"a\"}"), JSON_STRICT_DUPLICATE);
}

/* issue 13 item 2: Go matches keys case-insensitively, Unicode-aware */
static void
test_case_variant_keys_are_refused(void **state)
{
	static const struct body b[] = {
		B("{\"MODEL\":\"o1-pro\"}"),
		B("{\"model\":\"gpt-4o-mini\",\"MODEL\":\"o1-pro\"}"),
		B("{\"Model\":\"o1-pro\",\"model\":\"gpt-4o-mini\"}"),
		B("{\"model\":\"m\",\"STREAM\":true}"),
		B("{\"model\":\"m\",\"Stream_Options\":null}"),
		B("{\"model\":\"m\",\"\\u017ftream\":true}"),	/* long s */
		B("{\"model\":\"m\",\"\xc5\xbftream\":true}"),
		B("{\"model\":\"m\",\"\\u0053TREAM\":true}"),
		B("{\"model\\u0000\":\"o1-pro\"}"),	/* C strings */
		B("{\"model\\u0000junk\":\"o1-pro\"}"),
		B("{\"mOdEl\":\"o1-pro\",\"model\":\"o1-pro\"}"),
	};
	struct rd r;

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_CASE_VARIANT);
	assert_int_equal(RD(&r, "{\"model\":\"m\",\"STREAM\":true}"),
	    JSON_STRICT_CASE_VARIANT);
	assert_int_equal(r.err.field, F_STREAM);
	assert_int_equal(r.err.off, 13);
}

static void
test_case_variants_inside_stream_options_are_refused(void **state)
{
	static const char *const inner[] = {
		"{\"INCLUDE_USAGE\":true}",
		"{\"\\u0130nclude_usage\":true}",	/* dotted capital I */
		"{\"\xc4\xb1nclude_usage\":true}",	/* dotless i */
		"{\"include_usage\":true,\"Include_Usage\":false}",
	};
	struct json_strict_field	 iu[1] = { { .key = "include_usage" } };
	size_t				 i;

	(void)state;
	for (i = 0; i < NB(inner); i++)
		if (read_copy(inner[i], strlen(inner[i]), iu, 1, NULL) !=
		    JSON_STRICT_CASE_VARIANT)
			fail_msg("accepted %s", inner[i]);
}

/* Go and Java also fold U+212A (Kelvin) to k; C parsers cut at a NUL */
static void
test_keys_fold_as_lenient_parsers_fold_them(void **state)
{
	static const struct {
		const char		*js;
		enum json_strict_rc	 rc;
	} c[] = {
		{ "{\"\\u212aey\":1}", JSON_STRICT_CASE_VARIANT },
		{ "{\"\xe2\x84\xaa" "EY\":1}", JSON_STRICT_CASE_VARIANT },
		{ "{\"KEY\":1}", JSON_STRICT_CASE_VARIANT },
		{ "{\"key\\u0000\":1}", JSON_STRICT_CASE_VARIANT },
		{ "{\"k\\u0065y\":1}", JSON_STRICT_OK },
		{ "{\"k\xc3\xa9y\":1}", JSON_STRICT_OK },
		{ "{\"ke\\u0000y\":1}", JSON_STRICT_OK },
		{ "{\"\\u0000key\":1}", JSON_STRICT_OK },
		{ "{\"keys\":1,\"ke\":2,\"\":3}", JSON_STRICT_OK },
	};
	struct json_strict_field	 f[1] = { { .key = "key" } };
	char				 js[2048];
	size_t				 i, n;

	(void)state;
	for (i = 0; i < NB(c); i++)
		if (read_copy(c[i].js, strlen(c[i].js), f, 1, NULL) != c[i].rc)
			fail_msg("%s: not %d", c[i].js, c[i].rc);
	/* a NUL anywhere cuts the name, however long the rest */
	n = (size_t)snprintf(js, sizeof(js), "{\"key\\u0000%01000d\":1}", 0);
	assert_int_equal(read_copy(js, n, f, 1, NULL),
	    JSON_STRICT_CASE_VARIANT);
	/* and a long name without one is just another key */
	n = (size_t)snprintf(js, sizeof(js), "{\"key\\u0041%01000d\":1,"
	    "\"key\":2}", 0);
	assert_int_equal(read_copy(js, n, f, 1, NULL), JSON_STRICT_OK);
	assert_int_equal(f[0].type, JV_NUMBER);
	assert_int_equal(f[0].start, n - 2);
}

static void
test_keys_not_asked_for_may_repeat(void **state)
{
	const char js[] = "{\"messages\":[],\"messages\":[1],\"n\":1,\"n\":2,"
	    "\"metadata\":{\"model\":\"a\",\"model\":\"b\",\"MODEL\":1},"
	    "\"model\":\"m\",\"models\":1,\"mode\":2,\"\":3,\"\":4}";
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, js), JSON_STRICT_OK);
	assert_string_equal(r.model, "m");
}

/* issue 13 item 5: the stream flag as the upstream reads it */
static void
test_escaped_stream_key_is_the_stream_key(void **state)
{
	const char js[] = "{\"model\":\"m\",\"stre\\u0061m\":true}";
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, js), JSON_STRICT_OK);
	assert_int_equal(r.f[F_STREAM].type, JV_TRUE);
	assert_token(js, &r.f[F_STREAM], "true");
}

static void
test_stream_false_then_true_is_refused(void **state)
{
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, "{\"model\":\"m\",\"stream\":false,"
	    "\"stream\":true}"), JSON_STRICT_DUPLICATE);
	assert_int_equal(r.err.field, F_STREAM);
	assert_int_equal(RD(&r, "{\"stream_options\":{},\"model\":\"m\","
	    "\"stream_options\":null}"), JSON_STRICT_DUPLICATE);
	assert_int_equal(r.err.field, F_SO);
}

static void
test_stream_values_are_typed_exactly(void **state)
{
	const char s1[] = "{\"model\":\"m\",\"stream\":\"true\"}";
	const char s2[] = "{\"model\":\"m\",\"stream\":1,\"stream_options\":"
	    "null}";
	const char s3[] = "{\"stream\":[true],\"stream_options\":[]}";
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, s1), JSON_STRICT_OK);
	assert_int_equal(r.f[F_STREAM].type, JV_STRING);
	assert_token(s1, &r.f[F_STREAM], "\"true\"");
	assert_string_equal(r.stream, "true");
	assert_int_equal(RD(&r, s2), JSON_STRICT_OK);
	assert_int_equal(r.f[F_STREAM].type, JV_NUMBER);
	assert_int_equal(r.f[F_SO].type, JV_NULL);
	assert_token(s2, &r.f[F_SO], "null");
	assert_int_equal(RD(&r, s3), JSON_STRICT_OK);
	assert_int_equal(r.f[F_STREAM].type, JV_ARRAY);
	assert_token(s3, &r.f[F_STREAM], "[true]");
	assert_int_equal(r.f[F_SO].type, JV_ARRAY);
	assert_token(s3, &r.f[F_SO], "[]");
}

static void
test_include_usage_inside_stream_options(void **state)
{
	struct rd r;

	(void)state;
	assert_int_equal(RD_SO(&r, "{\"stream\":true,\"stream_options\":"
	    "{\"include_usage\":null}}"), JSON_STRICT_OK);
	assert_int_equal(r.iu[0].type, JV_NULL);
	assert_int_equal(RD_SO(&r, "{\"stream_options\":{\"include_usage\":"
	    "true,\"include_usage\":false}}"), JSON_STRICT_DUPLICATE);
	assert_int_equal(r.iu_err.field, 0);
	assert_int_equal(r.iu_err.off, 22);
	assert_int_equal(RD_SO(&r, "{\"stream_options\":{\"include_usage\":"
	    "true,\"include\\u005fusage\":false}}"), JSON_STRICT_DUPLICATE);
	assert_int_equal(RD_SO(&r, "{\"stream_options\":{}}"),
	    JSON_STRICT_OK);
	assert_int_equal(r.iu[0].type, JV_NONE);
	assert_int_equal(RD_SO(&r, "{\"stream_options\":{\"x\":{"
	    "\"include_usage\":false},\"include_usage\":\"yes\"}}"),
	    JSON_STRICT_OK);
	assert_int_equal(r.iu[0].type, JV_STRING);
	assert_string_equal(r.iu_buf, "yes");
}

/* issue 13 item 6: matched, routed and priced as the decoded name */
static void
test_escaped_model_is_decoded(void **state)
{
	const char js[] = "{\"model\":\"gpt-4\\u006f\"}";
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, js), JSON_STRICT_OK);
	assert_string_equal(r.model, "gpt-4o");
	assert_int_equal(r.f[F_MODEL].len, 6);
	assert_true(r.f[F_MODEL].printable);
	assert_token(js, &r.f[F_MODEL], "\"gpt-4\\u006f\"");
}

static void
test_escapes_decode(void **state)
{
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, "{\"model\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t"
	    "\\u00e9\\u20AC\\ud83d\\ude00\\uDBFF\\uDFFF\"}"), JSON_STRICT_OK);
	assert_string_equal(r.model, "\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac"
	    "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
	assert_false(r.f[F_MODEL].printable);
	assert_int_equal(RD(&r, "{\"model\":\"a\\u0000b\"}"), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].len, 3);
	assert_memory_equal(r.model, "a\0b", 4);
	assert_false(r.f[F_MODEL].printable);
}

static void
test_printable_models(void **state)
{
	static const struct {
		const char	*js;
		int		 printable;
	} c[] = {
		{ "{\"model\":\"gpt-4o-mini\"}", 1 },
		{ "{\"model\":\"claude-3-5-sonnet-20241022\"}", 1 },
		{ "{\"model\":\"meta-llama/Llama-3-8B\"}", 1 },
		{ "{\"model\":\"qwen2.5:7b\"}", 1 },
		{ "{\"model\":\"@cf/meta/llama-3-8b-instruct\"}", 1 },
		{ "{\"model\":\"\\u0041\"}", 1 },
		{ "{\"model\":\"\"}", 0 },
		{ "{\"model\":\"gpt 4o\"}", 0 },
		{ "{\"model\":\"gpt-4o\\r\\nDELETE / HTTP/1.1\"}", 0 },
		{ "{\"model\":\"gpt-4o\\t\"}", 0 },
		{ "{\"model\":\"gpt-4o\x7f\"}", 0 },	/* DEL: legal raw */
		{ "{\"model\":\"gpt-\xc3\xa9\"}", 0 },
		{ "{\"model\":\"\\u00a0\"}", 0 },
	};
	struct rd	 r;
	size_t		 i;

	(void)state;
	for (i = 0; i < NB(c); i++) {
		assert_int_equal(rd(&r, c[i].js, strlen(c[i].js)),
		    JSON_STRICT_OK);
		if (r.f[F_MODEL].printable != c[i].printable)
			fail_msg("%s: printable %d", c[i].js,
			    r.f[F_MODEL].printable);
	}
}

static void
test_long_values_are_refused(void **state)
{
	char			 js[1024];
	struct rd		 r;
	int			 n;

	(void)state;
	/* 127 bytes and the NUL fit in the 128-byte buffer */
	n = snprintf(js, sizeof(js), "{\"model\":\"%0127d\"}", 0);
	assert_int_equal(rd(&r, js, (size_t)n), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].len, 127);
	n = snprintf(js, sizeof(js), "{\"model\":\"%0128d\"}", 0);
	assert_int_equal(rd(&r, js, (size_t)n), JSON_STRICT_TOO_LONG);
	assert_int_equal(r.err.field, F_MODEL);
	assert_int_equal(r.err.off, 9);
	/* counted decoded: 126 + a 2-byte letter is one too many */
	n = snprintf(js, sizeof(js), "{\"model\":\"%0126d\\u00e9\"}", 0);
	assert_int_equal(rd(&r, js, (size_t)n), JSON_STRICT_TOO_LONG);
	n = snprintf(js, sizeof(js), "{\"model\":\"%0125d\\u00e9\"}", 0);
	assert_int_equal(rd(&r, js, (size_t)n), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].len, 127);
	/* 40 escapes are 240 bytes raw, 40 decoded */
	memcpy(js, "{\"model\":\"", 10);
	for (n = 0; n < 40; n++)
		memcpy(js + 10 + 6 * n, "\\u0041", 6);
	memcpy(js + 10 + 6 * 40, "\"}", 2);
	assert_int_equal(rd(&r, js, 10 + 6 * 40 + 2), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].len, 40);
	/* values without a buffer are not decoded, whatever their length */
	n = snprintf(js, sizeof(js), "{\"stream_options\":\"%0900d\"}", 0);
	assert_int_equal(rd(&r, js, (size_t)n), JSON_STRICT_OK);
	assert_int_equal(r.f[F_SO].type, JV_STRING);
}

/* issue 13 item 1: a raw CR/LF in a model name reached a request line */
static void
test_raw_control_characters_are_refused(void **state)
{
	static const struct body b[] = {
		B("{\"model\":\"gpt-4o\r\nDELETE /x HTTP/1.1\r\n\r\n\"}"),
		B("{\"model\":\"a\rb\"}"), B("{\"model\":\"a\nb\"}"),
		B("{\"model\":\"a\tb\"}"), B("{\"model\":\"\x01\"}"),
		B("{\"model\":\"\x1f\"}"), B("{\"model\":\"a\0b\"}"),
		B("{\"m\r\":1}"), B("{\"a\":[\"\x08\"]}"),
		B("{\"messages\":[{\"content\":\"0123456789abcdef0123\x0c\"}]}"),
	};
	struct rd r;

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
	assert_int_equal(RD(&r, "{\"model\":\"a\x7f\"}"), JSON_STRICT_OK);
}

static void
test_bad_escapes_are_refused(void **state)
{
	static const struct body b[] = {
		B("{\"a\":\"\\x41\"}"), B("{\"a\":\"\\'\"}"),
		B("{\"a\":\"\\U0041\"}"), B("{\"a\":\"\\u12\"}"),
		B("{\"a\":\"\\u12G4\"}"), B("{\"a\":\"\\u\"}"),
		B("{\"a\":\"\\"), B("{\"a\":\"\\\"}"), B("{\"a\":\"\\0\"}"),
		B("{\"a\":\"\\a\"}"), B("{\"a\":\"\\ \"}"),
		B("{\"a\\q\":1}"), B("{\"a\":\"\\u00\"}"),
	};

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
}

static void
test_lone_surrogates_are_refused(void **state)
{
	static const struct body b[] = {
		B("{\"a\":\"\\ud800\"}"), B("{\"a\":\"\\udbff\"}"),
		B("{\"a\":\"\\udc00\"}"), B("{\"a\":\"\\udfff\"}"),
		B("{\"a\":\"\\ud800\\u0041\"}"), B("{\"a\":\"\\ud800x\"}"),
		B("{\"a\":\"\\ud800\\ud800\"}"), B("{\"a\":\"\\udc00\\ud800\"}"),
		B("{\"a\":\"\\ud800\\n\"}"), B("{\"a\":\"\\ud800\\u\"}"),
		B("{\"a\":\"\\ud800\\"), B("{\"mod\\ud800el\":1}"),
		B("{\"model\":\"\\ud83d\"}"),
	};

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
}

static void
test_bad_utf8_is_refused(void **state)
{
	static const struct body b[] = {
		B("{\"a\":\"\xc0\xaf\"}"), B("{\"a\":\"\xc1\xbf\"}"),
		B("{\"a\":\"\xe0\x80\xaf\"}"), B("{\"a\":\"\xe0\x9f\xbf\"}"),
		B("{\"a\":\"\xf0\x80\x80\xaf\"}"),
		B("{\"a\":\"\xf0\x8f\xbf\xbf\"}"),
		B("{\"a\":\"\xed\xa0\x80\"}"), B("{\"a\":\"\xed\xbf\xbf\"}"),
		B("{\"a\":\"\xf4\x90\x80\x80\"}"),
		B("{\"a\":\"\xf5\x80\x80\x80\"}"), B("{\"a\":\"\xff\"}"),
		B("{\"a\":\"\xfe\"}"), B("{\"a\":\"\xc3\"}"),
		B("{\"a\":\"\xe2\x82\"}"), B("{\"a\":\"\xf0\x9f\x98\"}"),
		B("{\"a\":\"\x80\"}"), B("{\"a\":\"\xbf\"}"),
		B("{\"a\":\"\xc3\xa9\xa9\"}"), B("{\"a\":\"\xe2\x28\xa1\"}"),
		B("{\"a\":\"\xc3"), B("{\"\xc0\x80\":1}"),
		B("{\"a\":\xc2\xa0" "1}"),	/* NBSP is not white space */
		B("{\"a\":1}\xc2\xa0"), B("\xef\xbb\xbf{}"),	/* a BOM */
	};

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
}

static void
test_valid_utf8_is_kept(void **state)
{
	const char js[] = "{\"model\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f"
	    "\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\","
	    "\"\xe6\xb6\x88\xe6\x81\xaf\":\"\xf0\x9f\x98\x80 \xe4\xbd\xa0"
	    "\xe5\xa5\xbd\"}";
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, js), JSON_STRICT_OK);
	assert_string_equal(r.model, "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f"
	    "\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
	assert_false(r.f[F_MODEL].printable);
}

static void
test_bad_numbers_are_refused(void **state)
{
	static const struct body b[] = {
		B("{\"a\":01}"), B("{\"a\":-01}"), B("{\"a\":00}"),
		B("{\"a\":1.}"), B("{\"a\":.5}"), B("{\"a\":-}"),
		B("{\"a\":+1}"), B("{\"a\":1e}"), B("{\"a\":1e+}"),
		B("{\"a\":1E-}"), B("{\"a\":0x1}"), B("{\"a\":1.5.5}"),
		B("{\"a\":--1}"), B("{\"a\":Infinity}"), B("{\"a\":NaN}"),
		B("{\"a\":-Infinity}"), B("{\"a\":1e5.5}"), B("{\"a\":1.e5}"),
		B("{\"a\":-.5}"), B("{\"a\":1 2}"), B("{\"a\":[1 2]}"),
		B("{\"a\":1-}"), B("{\"a\":-1"), B("{\"a\":1e5"),
		B("{\"a\":0.}"), B("{\"a\":1ee5}"), B("{\"a\":1e5e5}"),
	};

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
}

static void
test_numbers_are_read(void **state)
{
	static const char *const num[] = {
		"0", "-0", "1", "-1", "10", "1.5", "-0.0", "1e5", "1E+5",
		"1e-5", "0e0", "0.25E-07", "123456789012345678901234567890",
		"1.5e308", "-1.0E-400", "9", "20e+0",
	};
	char	 js[128];
	struct rd r;
	size_t	 i;
	int	 n;

	(void)state;
	for (i = 0; i < NB(num); i++) {
		n = snprintf(js, sizeof(js), "{\"stream\":%s,\"a\":[%s]}",
		    num[i], num[i]);
		if (rd(&r, js, (size_t)n) != JSON_STRICT_OK)
			fail_msg("refused %s", js);
		assert_int_equal(r.f[F_STREAM].type, JV_NUMBER);
		assert_token(js, &r.f[F_STREAM], num[i]);
	}
}

static void
test_literals_are_exact(void **state)
{
	static const struct body b[] = {
		B("{\"a\":tru}"), B("{\"a\":True}"), B("{\"a\":nul}"),
		B("{\"a\":NULL}"), B("{\"a\":falsey}"), B("{\"a\":truex}"),
		B("{\"a\":t}"), B("{\"a\":nulll}"), B("{\"a\":fals"),
		B("{\"a\":undefined}"), B("{\"a\":[truefalse]}"),
	};
	const char	 js[] = "{\"model\":null,\"stream\":false,"
	    "\"stream_options\":true}";
	struct rd	 r;

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
	assert_int_equal(RD(&r, js), JSON_STRICT_OK);
	assert_int_equal(r.f[F_MODEL].type, JV_NULL);
	assert_token(js, &r.f[F_MODEL], "null");
	assert_int_equal(r.f[F_STREAM].type, JV_FALSE);
	assert_token(js, &r.f[F_STREAM], "false");
	assert_int_equal(r.f[F_SO].type, JV_TRUE);
	assert_token(js, &r.f[F_SO], "true");
}

static void
test_malformed_structure_is_refused(void **state)
{
	static const struct body b[] = {
		B(""), B("   "), B("[]"), B("\"x\""), B("1"), B("null"),
		B("{"), B("}"), B("{\"a\":1"), B("{\"a\":1,}"),
		B("{\"a\":[1,]}"), B("{\"a\":[,1]}"), B("{,\"a\":1}"),
		B("{\"a\":}"), B("{\"a\"}"), B("{\"a\" 1}"), B("{\"a\"::1}"),
		B("{\"a\":1,,\"b\":2}"), B("{\"a\":[1,,2]}"), B("{a:1}"),
		B("{'a':1}"), B("{\"a\":'x'}"), B("{1:2}"), B("{\"a\":1:2}"),
		B("{\"a\":\"unterminated}"), B("{\"a\":[1,2}"),
		B("{\"a\":{\"b\":1]}"), B("{\"a\":1 \"b\":2}"),
		B("{\"a\":1}x"), B("{\"a\":1}{\"b\":2}"), B("{}{}"),
		B("{}]"), B("{}\0"), B("\0{}"), B("{\"a\":1}\n\0"),
		B("{\f}"), B("{\v}"), B("{}\f"),
		B("{/*c*/}"), B("{\"a\":1}//"), B("{\"a\":[}"),
		B("{\"a\":{}"), B("{\"a\":[[]]]}"), B("{\"a\":{\"b\"}}"),
		B("{\"a\":{\"b\":}}"), B("{\"a\":{,}}"), B("{\"a\":[\"b\":1]}"),
		B("{\"a\":1,\"b\"}"), B("{\"a\":1,\"b\":}"), B("{\"a\":1, }"),
	};

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_INVALID);
}

static void
test_valid_bodies_of_every_shape(void **state)
{
	static const struct body b[] = {
		B("{}"), B(" \t\r\n{ \t\r\n} \t\r\n"), B("{\"a\":[]}"),
		B("{\"a\":{}}"), B("{\"a\":\"\"}"), B("{\"\":\"\"}"),
		B("{\"a\":[[],[[]],{},{\"b\":[{}]}]}"),
		B(" {\n  \"a\" : [ 1 , { } , [ ] , \"x\" , null ] ,\r\n\t\"b\""
		    "\t:\ttrue , \"c\" :{ \"d\" : { \"e\" : false } } }\n"),
		B("{\"a\":[1,-2.5,3e3,4E-4,0,-0,true,false,null,\"s\"]}"),
		B("{\"\xe6\xb6\x88\xe6\x81\xaf\":\"\xe4\xbd\xa0\xe5\xa5\xbd\"}"),
		B("{\"a\\n\\u0000b\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\"}"),
		B("{\"a\":\"\\ud83d\\ude00\xf0\x9f\x98\x80\"}"),
		B("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
		    "\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}"),
		B("{\"a\":\"\x7f\"}"), B("{\"a\":\"/\"}"),
	};

	(void)state;
	assert_all(b, NB(b), JSON_STRICT_OK);
}

static void
test_invalid_wins_and_findings_come_in_order(void **state)
{
	struct rd r;

	(void)state;
	assert_int_equal(RD(&r, "{\"model\":\"a\",\"model\":\"b\",}"),
	    JSON_STRICT_INVALID);
	assert_int_equal(r.err.field, -1);
	assert_int_equal(r.err.off, 25);
	assert_int_equal(RD(&r, "{\"MODEL\":1,\"stream\":1,\"stream\":2}"),
	    JSON_STRICT_CASE_VARIANT);
	assert_int_equal(r.err.field, F_MODEL);
	assert_int_equal(RD(&r, "{\"stream\":1,\"stream\":2,\"MODEL\":1}"),
	    JSON_STRICT_DUPLICATE);
	assert_int_equal(r.err.field, F_STREAM);
	assert_int_equal(RD(&r, "{\"a\":\"\\ud800\",\"model\":\"a\","
	    "\"model\":\"b\"}"), JSON_STRICT_INVALID);
	assert_int_equal(r.err.off, 5);
}

static void
test_depth_is_bounded(void **state)
{
	size_t		 n = JSON_STRICT_MAX_DEPTH, i, len;
	char		*b = malloc(6 * (n + 1) + 16);
	struct rd	 r;

	(void)state;
	assert_non_null(b);
	/* the top object and 511 arrays: JSON_STRICT_MAX_DEPTH open */
	memcpy(b, "{\"stream\":", 10);
	len = 10;
	for (i = 0; i < n - 1; i++)
		b[len++] = '[';
	for (i = 0; i < n - 1; i++)
		b[len++] = ']';
	b[len++] = '}';
	assert_int_equal(rd(&r, b, len), JSON_STRICT_OK);
	assert_int_equal(r.f[F_STREAM].type, JV_ARRAY);
	assert_int_equal(r.f[F_STREAM].end, len - 1);
	/* one more is refused */
	memmove(b + 11, b + 10, len - 10);
	b[10] = '[';
	len++;
	b[len - 1] = ']';
	b[len++] = '}';
	assert_int_equal(rd(&r, b, len), JSON_STRICT_INVALID);
	/* objects count the same */
	len = 0;
	for (i = 0; i < n; i++) {
		memcpy(b + len, "{\"a\":", 5);
		len += 5;
	}
	len -= 5;
	memcpy(b + len, "{}", 2);
	len += 2;
	for (i = 0; i < n - 1; i++)
		b[len++] = '}';
	assert_int_equal(rd(&r, b, len), JSON_STRICT_OK);
	len = 0;
	for (i = 0; i < n + 1; i++) {
		memcpy(b + len, "{\"a\":", 5);
		len += 5;
	}
	len -= 5;
	memcpy(b + len, "{}", 2);
	len += 2;
	for (i = 0; i < n; i++)
		b[len++] = '}';
	assert_int_equal(rd(&r, b, len), JSON_STRICT_INVALID);
	free(b);
}

/*
 * Long strings are read in blocks: a byte that needs a look, and UTF-8
 * good or bad, must be seen the same at every offset into a block, and
 * across two.
 */
static void
test_long_strings_cross_every_block_boundary(void **state)
{
	static const char *const bad[] = {
		"\n", "\x01", "\x1f", "\"", "\\x", "\\ud800", "\xc3", "\x80",
		"\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xe0\x9f\xbf",
		"\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xe4\xb8",
		"\xf0\x9f\x98", "\xc3\xa9\xa9", "\xe4\xc3\xa9",
	};
	static const char *const good[] = {
		"\\n", "\\\"", "\\u00e9", "\\ud83d\\ude00", "\x7f", "\xc2\x80",
		"\xc3\xa9", "\xdf\xbf", "\xe0\xa0\x80", "\xe4\xb8\xad",
		"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
		"\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
	};
	static const char text[] = "0123456789abcdefghijklmnopqrstuv"
	    "0123456789abcdefghijklmnopqrstuv0123456789abcdefghijklmnopqrstuv"
	    "0123456789abcdefghijklmnopqrstuv";
	char		 js[512];
	struct rd	 r;
	size_t		 pos, len, k;

	(void)state;
	for (pos = 0; pos < 140; pos++) {
		for (k = 0; k < NB(bad); k++) {
			len = (size_t)snprintf(js, sizeof(js),
			    "{\"a\":\"%.*s%s%.*s\",\"b\":1}", (int)pos, text,
			    bad[k], (int)(140 - pos), text);
			if (rd(&r, js, len) != JSON_STRICT_INVALID)
				fail_msg("accepted bad %zu at %zu", k, pos);
		}
		for (k = 0; k < NB(good); k++) {
			len = (size_t)snprintf(js, sizeof(js),
			    "{\"a\":\"%.*s%s%.*s\",\"b\":1}", (int)pos, text,
			    good[k], (int)(140 - pos), text);
			if (rd(&r, js, len) != JSON_STRICT_OK)
				fail_msg("refused good %zu at %zu", k, pos);
		}
	}
	/* and right before the closing quote, and at the end of the body */
	for (pos = 0; pos < 140; pos++) {
		len = (size_t)snprintf(js, sizeof(js), "{\"a\":\"%.*s\xe4\xb8\"}",
		    (int)pos, text);
		assert_int_equal(rd(&r, js, len), JSON_STRICT_INVALID);
		len = (size_t)snprintf(js, sizeof(js), "{\"a\":\"%.*s\xe4\xb8\xad\"}",
		    (int)pos, text);
		assert_int_equal(rd(&r, js, len), JSON_STRICT_OK);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_a_chat_body),
		cmocka_unit_test(test_absent_fields_are_none),
		cmocka_unit_test(test_escaped_duplicate_model_is_refused),
		cmocka_unit_test(test_case_variant_keys_are_refused),
		cmocka_unit_test(
		    test_case_variants_inside_stream_options_are_refused),
		cmocka_unit_test(test_keys_fold_as_lenient_parsers_fold_them),
		cmocka_unit_test(test_keys_not_asked_for_may_repeat),
		cmocka_unit_test(test_escaped_stream_key_is_the_stream_key),
		cmocka_unit_test(test_stream_false_then_true_is_refused),
		cmocka_unit_test(test_stream_values_are_typed_exactly),
		cmocka_unit_test(test_include_usage_inside_stream_options),
		cmocka_unit_test(test_escaped_model_is_decoded),
		cmocka_unit_test(test_escapes_decode),
		cmocka_unit_test(test_printable_models),
		cmocka_unit_test(test_long_values_are_refused),
		cmocka_unit_test(test_raw_control_characters_are_refused),
		cmocka_unit_test(test_bad_escapes_are_refused),
		cmocka_unit_test(test_lone_surrogates_are_refused),
		cmocka_unit_test(test_bad_utf8_is_refused),
		cmocka_unit_test(test_valid_utf8_is_kept),
		cmocka_unit_test(test_bad_numbers_are_refused),
		cmocka_unit_test(test_numbers_are_read),
		cmocka_unit_test(test_literals_are_exact),
		cmocka_unit_test(test_malformed_structure_is_refused),
		cmocka_unit_test(test_valid_bodies_of_every_shape),
		cmocka_unit_test(test_invalid_wins_and_findings_come_in_order),
		cmocka_unit_test(test_depth_is_bounded),
		cmocka_unit_test(test_long_strings_cross_every_block_boundary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
