/*
 * test_xlate.c - the translate stage: which endpoint a translated request
 * goes to, which of the client's headers stay behind, and how an answer
 * is carried: a 2xx stream event by event as its pieces come, a JSON
 * answer and an error whole at its end, and what cannot be translated
 * (too large, compressed) failed rather than relayed half done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "tests/unit/xlate_check.h"
#include "worker/xlate.h"

static struct xlate	 xl;
static struct evbuffer	*in, *out;
static struct xlate_req_opts opts = { "up-model", 4096, 0 };

static void
request(enum xlate_dir dir, const char *body)
{
	struct xlate_err err;

	xlate_reset(&xl);
	if (xlate_request(&xl, dir, &doc, body, strlen(body), &opts, 1234,
	    &err) != 0)
		fail_msg("refused: %s", err.msg);
}

static int
feed(const char *p)
{
	evbuffer_add(in, p, strlen(p));
	return xlate_answer_feed(&xl, &doc, in, out);
}

static const char *
output(size_t *n)
{
	*n = evbuffer_get_length(out);
	return *n > 0 ? (const char *)evbuffer_pullup(out, -1) : "";
}

static void
test_request_endpoints(void **state)
{
	size_t		 n;
	const char	*b;

	(void)state;
	request(XLATE_TO_ANTHROPIC, "{\"model\":\"gpt\",\"messages\":[]}");
	assert_string_equal(xl.ep->path, "/v1/messages");
	assert_null(xl.ep->azure_tail);
	b = (const char *)evbuffer_pullup(xl.body, -1);
	n = evbuffer_get_length(xl.body);
	JP(b, n, "model", "up-model");
	request(XLATE_TO_OPENAI, "{\"model\":\"c\",\"max_tokens\":5,"
	    "\"messages\":[]}");
	assert_string_equal(xl.ep->path, "/v1/chat/completions");
	assert_string_equal(xl.ep->azure_tail, "/chat/completions");
	b = (const char *)evbuffer_pullup(xl.body, -1);
	n = evbuffer_get_length(xl.body);
	JP(b, n, "max_tokens", "5");
	/* a refusal leaves no body behind */
	{
		struct xlate_err err;

		xlate_reset(&xl);
		assert_int_equal(xlate_request(&xl, XLATE_TO_OPENAI, &doc,
		    "{\"top_k\":1,\"messages\":[]}", 25, &opts, 0, &err), -1);
		assert_int_equal(evbuffer_get_length(xl.body), 0);
	}
}

static void
test_headers_dropped(void **state)
{
	struct http_header h = { 0 };

	(void)state;
	request(XLATE_TO_OPENAI, "{\"model\":\"c\",\"messages\":[]}");
#define HDR(s)	(h.name = (s), h.name_len = sizeof(s) - 1, &h)
	assert_true(xlate_drops_header(&xl, HDR("Accept-Encoding")));
	assert_true(xlate_drops_header(&xl, HDR("anthropic-version")));
	assert_true(xlate_drops_header(&xl, HDR("Anthropic-Beta")));
	assert_false(xlate_drops_header(&xl, HDR("OpenAI-Organization")));
	assert_false(xlate_drops_header(&xl, HDR("x-stainless-os")));
	request(XLATE_TO_ANTHROPIC, "{\"model\":\"g\",\"messages\":[]}");
	assert_true(xlate_drops_header(&xl, HDR("openai-project")));
	assert_false(xlate_drops_header(&xl, HDR("anthropic-beta")));
	assert_false(xlate_drops_header(&xl, HDR("user-agent")));
#undef HDR
}

/* A JSON answer goes out only at its end, whole and translated. */
static void
test_whole_answer(void **state)
{
	const char	*r;
	size_t		 n;

	(void)state;
	request(XLATE_TO_ANTHROPIC, "{\"model\":\"gpt\",\"messages\":[]}");
	xlate_answer_begin(&xl, 200, 0, 1);
	assert_false(xlate_answer_streams(&xl));
	assert_int_equal(feed("{\"id\":\"msg_1\",\"model\":\"c\",\"content\":"
	    "[{\"type\":\"text\",\"text\":\"Hi\"}],"), 0);
	assert_int_equal(feed("\"stop_reason\":\"end_turn\",\"usage\":"
	    "{\"input_tokens\":3,\"output_tokens\":2}}"), 0);
	assert_int_equal(evbuffer_get_length(out), 0);
	assert_int_equal(xlate_answer_end(&xl, &doc, "rid", out), 0);
	r = output(&n);
	JP(r, n, "object", "chat.completion");
	JP(r, n, "created", "1234");
	JP(r, n, "choices.0.message.content", "Hi");
	JP(r, n, "usage.total_tokens", "5");
	evbuffer_drain(out, n);
}

/* An error, streamed or not, is the client's error shape, whole. */
static void
test_error_answer(void **state)
{
	const char	*r;
	size_t		 n;

	(void)state;
	request(XLATE_TO_OPENAI, "{\"model\":\"c\",\"messages\":[]}");
	xlate_answer_begin(&xl, 429, 1, 1);
	assert_false(xlate_answer_streams(&xl));
	assert_int_equal(feed("{\"error\":{\"message\":\"Rate limit reached\","
	    "\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}"), 0);
	assert_int_equal(xlate_answer_end(&xl, &doc, "rid-9", out), 0);
	r = output(&n);
	JP(r, n, "type", "error");
	JP(r, n, "error.type", "rate_limit_error");
	JP(r, n, "error.message", "Rate limit reached");
	JP(r, n, "request_id", "rid-9");
	evbuffer_drain(out, n);
}

/* A 2xx stream: each event out as soon as its last line is in. */
static void
test_stream_answer(void **state)
{
	size_t n;

	(void)state;
	request(XLATE_TO_OPENAI, "{\"model\":\"c\",\"stream\":true,"
	    "\"messages\":[]}");
	xlate_answer_begin(&xl, 200, 1, 1);
	assert_true(xlate_answer_streams(&xl));
	assert_int_equal(feed("data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":"
	    "[{\"index\":0,\"delta\":{\"content\":\"He"), 0);
	assert_int_equal(evbuffer_get_length(in), 0);	/* all taken */
	assert_int_equal(evbuffer_get_length(out), 0);	/* nothing whole */
	assert_int_equal(feed("y\"}}]}\n\n"), 0);
	output(&n);
	assert_non_null(memmem(evbuffer_pullup(out, -1), n,
	    "\"text\":\"Hey\"", 12));
	evbuffer_drain(out, n);
	assert_int_equal(feed("data: [DONE]\n\n"), 0);
	assert_int_equal(xlate_answer_end(&xl, &doc, "r", out), 0);
	output(&n);
	assert_non_null(memmem(evbuffer_pullup(out, -1), n,
	    "event: message_stop", 19));
	evbuffer_drain(out, n);
}

/* Too large, not JSON, or compressed: failed, never relayed as is. */
static void
test_failures(void **state)
{
	static char	 chunk[1024 * 1024];
	int		 i, rc = 0;

	(void)state;
	request(XLATE_TO_ANTHROPIC, "{\"model\":\"gpt\",\"messages\":[]}");
	xlate_answer_begin(&xl, 200, 0, 1);
	memset(chunk, ' ', sizeof(chunk));
	for (i = 0; i < 20 && rc == 0; i++) {
		evbuffer_add(in, chunk, sizeof(chunk));
		rc = xlate_answer_feed(&xl, &doc, in, out);
	}
	assert_int_equal(rc, -1);
	assert_true(i * sizeof(chunk) > XLATE_WHOLE_MAX);
	assert_int_equal(evbuffer_get_length(in), 0);
	assert_int_equal(xlate_answer_end(&xl, &doc, "r", out), -1);

	xlate_answer_begin(&xl, 200, 0, 1);
	assert_int_equal(feed("<html>"), 0);
	assert_int_equal(xlate_answer_end(&xl, &doc, "r", out), -1);

	xlate_answer_begin(&xl, 200, 1, 0);		/* gzip: unreadable */
	assert_false(xlate_answer_streams(&xl));
	assert_int_equal(feed("\x1f\x8b"), -1);
	assert_int_equal(evbuffer_get_length(out), 0);
}

/* xj_parse gives jsmn's tokens, parent links and sizes included. */
static void
test_tokenizer_is_jsmn(void **state)
{
	static const char *const docs[] = {
		"{}", "[]", "{\"a\":1}", "[1,\"x\",true,null,-2.5e3]",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
		    "\"content\":[{\"type\":\"text\",\"text\":\"a\\\"b\\\\\"}]}],"
		    "\"n\":{},\"e\":[],\"t\":[[[]],{\"x\":{\"y\":[1]}}]}",
		" { \"k\" : \"v\" , \"l\" : [ 1 , { } ] } \n",
	};
	struct json_doc	 a = { .max_tokens = 4096 }, b = { .max_tokens = 4096 };
	size_t		 i;
	int		 k;

	(void)state;
	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		size_t n = strlen(docs[i]);

		assert_int_equal(json_parse(&a, docs[i], n), 0);
		assert_int_equal(xj_parse(&b, docs[i], n), 0);
		assert_int_equal(a.ntok, b.ntok);
		for (k = 0; k < a.ntok; k++) {
			assert_int_equal(a.tok[k].type, b.tok[k].type);
			assert_int_equal(a.tok[k].start, b.tok[k].start);
			assert_int_equal(a.tok[k].end, b.tok[k].end);
			assert_int_equal(a.tok[k].size, b.tok[k].size);
			assert_int_equal(a.tok[k].parent, b.tok[k].parent);
		}
	}
	/* not one document: refused */
	assert_int_equal(xj_parse(&b, "{\"a\":1}{}", 9), -1);
	assert_int_equal(xj_parse(&b, "{\"a\":[1}", 8), -1);
	assert_int_equal(xj_parse(&b, "{1:2}", 5), -1);
	assert_int_equal(xj_parse(&b, "{\"a", 3), -1);
	assert_int_equal(xj_parse(&b, "\"s\"", 3), -1);
	json_doc_free(&a);
	json_doc_free(&b);
}

static int
setup(void **state)
{
	xlate_init(&xl);
	in = evbuffer_new();
	return in == NULL ? -1 : xc_setup(state);
}

static int
teardown(void **state)
{
	xlate_free(&xl);
	evbuffer_free(in);
	return xc_teardown(state);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_endpoints),
		cmocka_unit_test(test_headers_dropped),
		cmocka_unit_test(test_whole_answer),
		cmocka_unit_test(test_error_answer),
		cmocka_unit_test(test_stream_answer),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_tokenizer_is_jsmn),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
