/*
 * test_bedrock.c - the bedrock adapter: the body Bedrock takes (model and
 * stream removed wherever they stand, anthropic_version added once), the
 * path (the model id mapped and percent-encoded), and a streamed answer
 * turned from event-stream frames into Anthropic SSE: good frames, a bad
 * CRC, an exception frame, a frame cut at the end.
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
#include <zlib.h>

#include "worker/bedrock.h"

static char *
drain(struct evbuffer *b)
{
	size_t	 n = evbuffer_get_length(b);
	char	*s = malloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void
body_is(const char *in, const char *want)
{
	struct evbuffer	*b = evbuffer_new();
	char		*got;

	assert_int_equal(bedrock_body(in, strlen(in), b), 0);
	got = drain(b);
	assert_string_equal(got, want);
	free(got);
	evbuffer_free(b);
}

#define V "\"anthropic_version\":\"bedrock-2023-05-31\""

static void
test_body_model_and_stream_removed(void **state)
{
	(void)state;
	body_is("{\"model\":\"claude\",\"max_tokens\":5,\"stream\":true}",
	    "{\"max_tokens\":5," V "}");
	body_is("{\"model\":\"claude\",\"stream\":false}", "{" V "}");
	body_is("{ \"stream\" : true , \"model\" : \"c\" , \"x\" : [1] }",
	    "{ \"x\" : [1] ," V "}");
	body_is("{\"a\":1,\"model\":\"c\",\"b\":{\"model\":2},\"stream\":true}",
	    "{\"a\":1,\"b\":{\"model\":2}," V "}");
	body_is("{}", "{" V "}");
	body_is("{\"model\":\"c\",\"anthropic_version\":\"x\"}",
	    "{\"anthropic_version\":\"x\"}");
}

static void
test_body_refused(void **state)
{
	struct evbuffer	*b = evbuffer_new();

	(void)state;
	assert_int_equal(bedrock_body("[1]", 3, b), -1);
	assert_int_equal(bedrock_body("{\"model\":1,\"model\":2}", 21, b), -1);
	assert_int_equal(bedrock_body("{\"a\":", 5, b), -1);
	evbuffer_free(b);
}

static void
test_target_maps_and_encodes(void **state)
{
	struct cfg_upstream	 u;
	char			 got[BEDROCK_TARGET_MAX];

	(void)state;
	memset(&u, 0, sizeof(u));
	snprintf(u.deployments[0].model, sizeof(u.deployments[0].model),
	    "claude-3-haiku*");
	snprintf(u.deployments[0].name, sizeof(u.deployments[0].name),
	    "anthropic.claude-3-haiku-20240307-v1:0");
	u.ndeployments = 1;
	assert_int_equal(bedrock_target(&u, "claude-3-haiku-20240307", 1, got,
	    sizeof(got)), 75);
	assert_string_equal(got, "/model/anthropic.claude-3-haiku-20240307-"
	    "v1%3A0/invoke-with-response-stream");
	bedrock_target(&u, "us.anthropic.claude-x", 0, got, sizeof(got));
	assert_string_equal(got, "/model/us.anthropic.claude-x/invoke");
	assert_int_equal(bedrock_target(&u, "x", 0, got, 10), 0);
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static size_t
hdr(unsigned char *p, const char *name, const char *value)
{
	size_t	 nl = strlen(name), vl = strlen(value);

	p[0] = (unsigned char)nl;
	memcpy(p + 1, name, nl);
	p[1 + nl] = 7;
	p[2 + nl] = 0;
	p[3 + nl] = (unsigned char)vl;
	memcpy(p + 4 + nl, value, vl);
	return 4 + nl + vl;
}

/* A frame of MTYPE with ETYPE or XTYPE and PAYLOAD; its length. */
static size_t
frame(unsigned char *out, const char *mtype, const char *etype,
    const char *xtype, const char *payload)
{
	unsigned char	 h[256];
	size_t		 hl = 0, pl = strlen(payload), total;

	hl += hdr(h + hl, ":message-type", mtype);
	if (etype != NULL)
		hl += hdr(h + hl, ":event-type", etype);
	if (xtype != NULL)
		hl += hdr(h + hl, ":exception-type", xtype);
	total = 16 + hl + pl;
	put32(out, (uint32_t)total);
	put32(out + 4, (uint32_t)hl);
	put32(out + 8, (uint32_t)crc32(0, out, 8));
	memcpy(out + 12, h, hl);
	memcpy(out + 12 + hl, payload, pl);
	put32(out + total - 4, (uint32_t)crc32(0, out, (uInt)(total - 4)));
	return total;
}

/* {"type":"message_stop"} and {"type":"ping"} in base64 */
#define STOP_B64 "eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="
#define PING_B64 "eyJ0eXBlIjoicGluZyJ9"

static void
test_stream_to_sse_any_split(void **state)
{
	unsigned char		 buf[1024];
	size_t			 n = 0, off;
	struct bedrock_stream	 bs;
	struct evbuffer		*sse = evbuffer_new();
	char			*got;

	(void)state;
	n += frame(buf + n, "event", "chunk", NULL,
	    "{\"bytes\":\"" PING_B64 "\",\"p\":\"abcd\"}");
	n += frame(buf + n, "event", "chunk", NULL,
	    "{\"bytes\":\"" STOP_B64 "\"}");
	for (off = 0; off <= n; off++) {
		bedrock_stream_init(&bs);
		assert_int_equal(bedrock_stream_feed(&bs, (char *)buf, off,
		    sse), 0);
		assert_int_equal(bedrock_stream_feed(&bs, (char *)buf + off,
		    n - off, sse), 0);
		assert_int_equal(bedrock_stream_end(&bs, sse), 0);
		got = drain(sse);
		assert_string_equal(got, "event: ping\ndata: {\"type\":\"ping\"}"
		    "\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}"
		    "\n\n");
		free(got);
		bedrock_stream_free(&bs);
	}
	evbuffer_free(sse);
}

static void
test_stream_bad_crc_ends_with_error_event(void **state)
{
	unsigned char		 buf[1024];
	size_t			 n = 0, first;
	struct bedrock_stream	 bs;
	struct evbuffer		*sse = evbuffer_new();
	char			*got;

	(void)state;
	first = frame(buf, "event", "chunk", NULL,
	    "{\"bytes\":\"" PING_B64 "\"}");
	n = first + frame(buf + first, "event", "chunk", NULL,
	    "{\"bytes\":\"" STOP_B64 "\"}");
	buf[n - 8] ^= 1;
	bedrock_stream_init(&bs);
	assert_int_equal(bedrock_stream_feed(&bs, (char *)buf, n, sse), -1);
	assert_string_equal(bs.why, "message CRC mismatch");
	/* what follows is dropped */
	assert_int_equal(bedrock_stream_feed(&bs, (char *)buf, first, sse), -1);
	got = drain(sse);
	assert_string_equal(got, "event: ping\ndata: {\"type\":\"ping\"}\n\n"
	    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
	    "\"api_error\",\"message\":\"upstream stream: message CRC "
	    "mismatch\"}}\n\n");
	free(got);
	bedrock_stream_free(&bs);
	evbuffer_free(sse);
}

static void
test_stream_exception_frame(void **state)
{
	unsigned char		 buf[1024];
	size_t			 n;
	struct bedrock_stream	 bs;
	struct evbuffer		*sse = evbuffer_new();
	char			*got;

	(void)state;
	n = frame(buf, "exception", NULL, "throttlingException",
	    "{\"message\":\"Too many \\\"requests\\\"\"}");
	bedrock_stream_init(&bs);
	assert_int_equal(bedrock_stream_feed(&bs, (char *)buf, n, sse), -1);
	assert_string_equal(bs.why, "exception throttlingException");
	got = drain(sse);
	assert_string_equal(got, "event: error\ndata: {\"type\":\"error\","
	    "\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Too many "
	    "\\\"requests\\\"\"}}\n\n");
	free(got);
	bedrock_stream_free(&bs);
	evbuffer_free(sse);
}

static void
test_stream_cut_or_bad_payload(void **state)
{
	unsigned char		 buf[1024];
	size_t			 n;
	struct bedrock_stream	 bs;
	struct evbuffer		*sse = evbuffer_new();
	char			*got;

	(void)state;
	n = frame(buf, "event", "chunk", NULL, "{\"bytes\":\"" STOP_B64 "\"}");
	bedrock_stream_init(&bs);
	assert_int_equal(bedrock_stream_feed(&bs, (char *)buf, n - 1, sse), 0);
	assert_int_equal(bedrock_stream_end(&bs, sse), -1);
	got = drain(sse);
	assert_non_null(strstr(got, "the answer ended inside a frame"));
	free(got);
	bedrock_stream_free(&bs);
	/* "bytes" that are not base64 of one JSON event */
	n = frame(buf, "event", "chunk", NULL, "{\"bytes\":\"!!!!\"}");
	bedrock_stream_init(&bs);
	assert_int_equal(bedrock_stream_feed(&bs, (char *)buf, n, sse), -1);
	got = drain(sse);
	assert_non_null(strstr(got, "event: error\n"));
	free(got);
	bedrock_stream_free(&bs);
	evbuffer_free(sse);
}

static void
test_sign_headers(void **state)
{
	struct cfg_upstream	 u;
	struct sigv4_key	 k;
	char			 out[BEDROCK_SIGN_MAX];
	long			 n;

	(void)state;
	memset(&u, 0, sizeof(u));
	memset(&k, 0, sizeof(k));
	snprintf(u.region, sizeof(u.region), "us-east-1");
	u.aws_key_id = "AKIDEXAMPLE";
	u.aws_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
	n = bedrock_sign(&k, &u, "h", 1, "/model/x/invoke", 15, "{}", 2,
	    1440938160, out);
	assert_int_equal(n, (long)strlen(out));
	assert_non_null(strstr(out, "x-amz-date: 20150830T123600Z\r\n"
	    "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
	    "us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, "
	    "Signature="));
	u.aws_token = "TOKEN";
	bedrock_sign(&k, &u, "h", 1, "/model/x/invoke", 15, "{}", 2,
	    1440938160, out);
	assert_non_null(strstr(out, "x-amz-security-token: TOKEN\r\n"));
	assert_non_null(strstr(out, "SignedHeaders=host;x-amz-date;"
	    "x-amz-security-token, "));
	assert_int_equal(k.derivations, 1);
}

static void
test_error_reshaped_as_anthropics(void **state)
{
	struct evbuffer	*b = evbuffer_new();
	char		*got;
	const char	*an = "{\"type\":\"error\",\"error\":{\"type\":\"x\","
			    "\"message\":\"y\"}}";
	const char	*gerr = "{\"error\":{\"code\":401,\"message\":"
			    "\"expired\",\"status\":\"UNAUTHENTICATED\"}}";

	(void)state;
	bedrock_error(403, "{\"message\":\"bad \\\"sig\\\"\"}",
	    strlen("{\"message\":\"bad \\\"sig\\\"\"}"), b);
	got = drain(b);
	assert_string_equal(got, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"permission_error\",\"message\":\"bad \\\"sig\\\"\"}}");
	free(got);
	bedrock_error(429, "{\"Message\":\"slow\"}", 18, b);
	got = drain(b);
	assert_string_equal(got, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"rate_limit_error\",\"message\":\"slow\"}}");
	free(got);
	bedrock_error(500, "<html>", 6, b);
	got = drain(b);
	assert_string_equal(got, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"api_error\",\"message\":\"the upstream answered 500\"}}");
	free(got);
	bedrock_error(401, gerr, strlen(gerr), b);
	got = drain(b);
	assert_string_equal(got, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"authentication_error\",\"message\":\"expired\"}}");
	free(got);
	bedrock_error(400, an, strlen(an), b);
	got = drain(b);
	assert_string_equal(got, an);
	free(got);
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_model_and_stream_removed),
		cmocka_unit_test(test_body_refused),
		cmocka_unit_test(test_target_maps_and_encodes),
		cmocka_unit_test(test_stream_to_sse_any_split),
		cmocka_unit_test(test_stream_bad_crc_ends_with_error_event),
		cmocka_unit_test(test_stream_exception_frame),
		cmocka_unit_test(test_stream_cut_or_bad_payload),
		cmocka_unit_test(test_sign_headers),
		cmocka_unit_test(test_error_reshaped_as_anthropics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
