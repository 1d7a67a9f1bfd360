/*
 * test_xlate_resp.c - whole answers and error bodies translated between
 * Anthropic's message and OpenAI's chat.completion, both ways.
 *
 * Built from the documented answers: Anthropic's Messages reference
 * ("Hi! My name is Claude.") and its tool use guide (get_weather with
 * text before the call), OpenAI's chat object and its function calling
 * example (call_abc123, arguments with newlines), and both providers'
 * documented error bodies.  Usage numbers must come out exactly, with
 * each format's split of the cached input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "tests/unit/xlate_check.h"
#include "worker/xlate_resp.h"

static const char	*res;
static size_t		 rlen;
static struct xlate_info info;

static void
take(void)
{
	rlen = evbuffer_get_length(out);
	res = rlen > 0 ? (const char *)evbuffer_pullup(out, -1) : "";
}

static int
run(int to_openai, const char *body)
{
	int rc;

	evbuffer_drain(out, evbuffer_get_length(out));
	rc = to_openai ? xlate_resp_to_openai(&doc, body, strlen(body), &info,
	    1700000000, out) : xlate_resp_to_anthropic(&doc, body,
	    strlen(body), &info, out);
	take();
	return rc;
}

#define OK_OA(body)	assert_int_equal(run(1, body), 0)
#define OK_AN(body)	assert_int_equal(run(0, body), 0)
#define F(path, want)	JP(res, rlen, path, want)

/* ---- Anthropic's message -> chat.completion ---- */

static void
test_an_reference_example(void **state)
{
	(void)state;
	OK_OA("{\"content\":[{\"text\":\"Hi! My name is Claude.\",\"type\":"
	    "\"text\"}],\"id\":\"msg_013Zva2CMHLNnXjNJJKqJ2EF\",\"model\":"
	    "\"claude-sonnet-4-20250514\",\"role\":\"assistant\","
	    "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"type\":"
	    "\"message\",\"usage\":{\"input_tokens\":2095,\"output_tokens\":"
	    "503}}");
	F("id", "msg_013Zva2CMHLNnXjNJJKqJ2EF");
	F("object", "chat.completion");
	F("created", "1700000000");
	F("model", "claude-sonnet-4-20250514");
	F("choices.0.index", "0");
	F("choices.0.message.role", "assistant");
	F("choices.0.message.content", "Hi! My name is Claude.");
	F("choices.0.message.tool_calls", NULL);
	F("choices.0.finish_reason", "stop");
	F("usage.prompt_tokens", "2095");
	F("usage.completion_tokens", "503");
	F("usage.total_tokens", "2598");
	F("usage.prompt_tokens_details.cached_tokens", "0");
}

static void
test_an_tool_use_example(void **state)
{
	(void)state;
	OK_OA("{\"id\":\"msg_01Aq9w938a90dw8q\",\"model\":"
	    "\"claude-sonnet-4-20250514\",\"stop_reason\":\"tool_use\","
	    "\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
	    "\"I need to use get_weather.\"},{\"type\":\"tool_use\",\"id\":"
	    "\"toolu_01A09q90qw90lq917835lq9\",\"name\":\"get_weather\","
	    "\"input\":{\"location\":\"San Francisco, CA\",\"unit\":"
	    "\"celsius\"}}],\"usage\":{\"input_tokens\":400,"
	    "\"output_tokens\":60}}");
	F("choices.0.message.content", "I need to use get_weather.");
	F("choices.0.message.tool_calls.0.id",
	    "toolu_01A09q90qw90lq917835lq9");
	F("choices.0.message.tool_calls.0.type", "function");
	F("choices.0.message.tool_calls.0.function.name", "get_weather");
	F("choices.0.message.tool_calls.0.function.arguments",
	    "{\\\"location\\\":\\\"San Francisco, CA\\\",\\\"unit\\\":"
	    "\\\"celsius\\\"}");
	F("choices.0.message.tool_calls.1", NULL);
	F("choices.0.finish_reason", "tool_calls");
	/* a call alone: content is null, as OpenAI sends it */
	OK_OA("{\"id\":\"m\",\"model\":\"c\",\"stop_reason\":\"tool_use\","
	    "\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\","
	    "\"input\":{}}],\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}");
	F("choices.0.message.content", "null");
	F("choices.0.message.tool_calls.0.function.arguments", "{}");
}

/* Anthropic's input_tokens leaves the cache out; OpenAI's counts it. */
static void
test_an_cache_usage(void **state)
{
	(void)state;
	OK_OA("{\"id\":\"m\",\"model\":\"c\",\"content\":[],\"stop_reason\":"
	    "\"end_turn\",\"usage\":{\"input_tokens\":100,"
	    "\"cache_creation_input_tokens\":25,\"cache_read_input_tokens\":50,"
	    "\"output_tokens\":10}}");
	F("usage.prompt_tokens", "175");
	F("usage.prompt_tokens_details.cached_tokens", "50");
	F("usage.completion_tokens", "10");
	F("usage.total_tokens", "185");
}

static void
test_an_stop_reasons(void **state)
{
	static const char *const map[][2] = {
		{ "end_turn", "stop" }, { "stop_sequence", "stop" },
		{ "max_tokens", "length" }, { "tool_use", "tool_calls" },
		{ "refusal", "content_filter" }, { "pause_turn", "stop" },
		{ "model_context_window_exceeded", "length" },
	};
	char	 body[256];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		snprintf(body, sizeof(body), "{\"id\":\"m\",\"model\":\"c\","
		    "\"content\":[],\"stop_reason\":\"%s\",\"usage\":{}}",
		    map[i][0]);
		OK_OA(body);
		F("choices.0.finish_reason", map[i][1]);
	}
}

/* response_format's forced tool: its input is the message content. */
static void
test_an_format_tool(void **state)
{
	(void)state;
	snprintf(info.format_tool, sizeof(info.format_tool), "weather");
	OK_OA("{\"id\":\"m\",\"model\":\"c\",\"stop_reason\":\"tool_use\","
	    "\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
	    "\"weather\",\"input\":{\"temp\":21,\"sky\":\"clear\"}}],"
	    "\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}");
	F("choices.0.message.content",
	    "{\\\"temp\\\":21,\\\"sky\\\":\\\"clear\\\"}");
	F("choices.0.message.tool_calls", NULL);
	F("choices.0.finish_reason", "stop");
	info.format_tool[0] = '\0';
}

static void
test_an_thinking(void **state)
{
	(void)state;
	OK_OA("{\"id\":\"m\",\"model\":\"c\",\"stop_reason\":\"end_turn\","
	    "\"content\":[{\"type\":\"thinking\",\"thinking\":\"2 + 2 is 4.\","
	    "\"signature\":\"Eq\"},{\"type\":\"text\",\"text\":\"4\"}],"
	    "\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}");
	F("choices.0.message.content", "4");
	F("choices.0.message.reasoning_content", "2 + 2 is 4.");
}

static void
test_an_not_a_message(void **state)
{
	(void)state;
	assert_int_equal(run(1, "{\"type\":\"error\"}"), -1);
	assert_int_equal(run(1, "not json"), -1);
}

/* ---- chat.completion -> Anthropic's message ---- */

static void
test_oa_chat_object_example(void **state)
{
	(void)state;
	OK_AN("{\"id\": \"chatcmpl-123\",\"object\": \"chat.completion\","
	    "\"created\": 1677652288,\"model\": \"gpt-4o-mini\","
	    "\"system_fingerprint\": \"fp_44709d6fcb\",\"choices\": [{"
	    "\"index\": 0,\"message\": {\"role\": \"assistant\",\"content\": "
	    "\"\\n\\nHello there, how may I assist you today?\"},\"logprobs\": "
	    "null,\"finish_reason\": \"stop\"}],\"usage\": {\"prompt_tokens\": "
	    "9,\"completion_tokens\": 12,\"total_tokens\": 21,"
	    "\"completion_tokens_details\": {\"reasoning_tokens\": 0,"
	    "\"accepted_prediction_tokens\": 0,\"rejected_prediction_tokens\": "
	    "0}}}");
	F("id", "chatcmpl-123");
	F("type", "message");
	F("role", "assistant");
	F("model", "gpt-4o-mini");
	F("content.0.type", "text");
	F("content.0.text", "\\n\\nHello there, how may I assist you today?");
	F("content.1", NULL);
	F("stop_reason", "end_turn");
	F("stop_sequence", "null");
	F("usage.input_tokens", "9");
	F("usage.output_tokens", "12");
	F("usage.cache_read_input_tokens", "0");
	F("usage.cache_creation_input_tokens", "0");
}

static void
test_oa_function_example(void **state)
{
	(void)state;
	OK_AN("{\"id\":\"chatcmpl-abc123\",\"object\":\"chat.completion\","
	    "\"created\":1699896916,\"model\":\"gpt-4o-mini\",\"choices\":[{"
	    "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
	    "\"tool_calls\":[{\"id\":\"call_abc123\",\"type\":\"function\","
	    "\"function\":{\"name\":\"get_current_weather\",\"arguments\":"
	    "\"{\\n\\\"location\\\": \\\"Boston, MA\\\"\\n}\"}}]},\"logprobs\":"
	    "null,\"finish_reason\":\"tool_calls\"}],\"usage\":{"
	    "\"prompt_tokens\":82,\"completion_tokens\":17,\"total_tokens\":99,"
	    "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}");
	F("content.0.type", "tool_use");
	F("content.0.id", "call_abc123");
	F("content.0.name", "get_current_weather");
	F("content.0.input.location", "Boston, MA");
	F("content.1", NULL);
	F("stop_reason", "tool_use");
	F("usage.input_tokens", "82");
	F("usage.output_tokens", "17");
}

static void
test_oa_cache_usage(void **state)
{
	(void)state;
	OK_AN("{\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,"
	    "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},"
	    "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":100,"
	    "\"completion_tokens\":5,\"prompt_tokens_details\":"
	    "{\"cached_tokens\":40}}}");
	F("usage.input_tokens", "60");
	F("usage.cache_read_input_tokens", "40");
	F("usage.output_tokens", "5");
	F("stop_reason", "max_tokens");
}

/* Arguments that are no JSON object are kept as the model wrote them. */
static void
test_oa_bad_arguments_kept(void **state)
{
	(void)state;
	OK_AN("{\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,"
	    "\"message\":{\"role\":\"assistant\",\"reasoning_content\":"
	    "\"hmm\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\","
	    "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
	    "\"{\\\"a\\\":\"}}]},\"finish_reason\":\"content_filter\"}],"
	    "\"usage\":{}}");
	F("content.0.type", "thinking");
	F("content.0.thinking", "hmm");
	F("content.1.type", "tool_use");
	F("content.1.input.arguments", "{\\\"a\\\":");
	F("content.2", NULL);
	F("stop_reason", "refusal");
}

/* A server's reasoning field, whichever of the two names holds it. */
static void
test_oa_reasoning_field(void **state)
{
	(void)state;
	OK_AN("{\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,"
	    "\"message\":{\"role\":\"assistant\",\"reasoning_content\":null,"
	    "\"reasoning\":\"Two and two.\",\"content\":\"4\"},"
	    "\"finish_reason\":\"stop\"}],\"usage\":{}}");
	F("content.0.type", "thinking");
	F("content.0.thinking", "Two and two.");
	F("content.1.text", "4");
	OK_AN("{\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,"
	    "\"message\":{\"role\":\"assistant\",\"reasoning\":null,"
	    "\"content\":\"4\"},\"finish_reason\":\"stop\"}],\"usage\":{}}");
	F("content.0.type", "text");
	F("content.1", NULL);
}

static void
test_oa_not_a_completion(void **state)
{
	(void)state;
	assert_int_equal(run(0, "{\"choices\":[]}"), -1);
	assert_int_equal(run(0, "{\"object\":\"list\"}"), -1);
}

/* ---- errors ---- */

static void
test_errors(void **state)
{
	(void)state;
	evbuffer_drain(out, evbuffer_get_length(out));
	xlate_error_to_openai(&doc, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"not_found_error\",\"message\":\"The requested resource could "
	    "not be found.\"}}", 106, 404, out);
	take();
	F("error.message", "The requested resource could not be found.");
	F("error.type", "not_found_error");
	F("error.param", "null");
	F("error.code", "null");

	evbuffer_drain(out, evbuffer_get_length(out));
	xlate_error_to_anthropic(&doc, "{\"error\": {\"message\": \"Incorrect "
	    "API key provided: sk-xxx.\", \"type\": \"invalid_request_error\", "
	    "\"param\": null, \"code\": \"invalid_api_key\"}}", 136, 401,
	    "req-1", out);
	take();
	F("type", "error");
	F("error.type", "authentication_error");
	F("error.message", "Incorrect API key provided: sk-xxx.");
	F("request_id", "req-1");

	/* vLLM's shape: the message at the top */
	evbuffer_drain(out, evbuffer_get_length(out));
	xlate_error_to_anthropic(&doc, "{\"object\":\"error\",\"message\":"
	    "\"max_tokens is too large\",\"type\":\"BadRequestError\","
	    "\"code\":400}", 90, 400, "req-2", out);
	take();
	F("error.type", "invalid_request_error");
	F("error.message", "max_tokens is too large");

	evbuffer_drain(out, evbuffer_get_length(out));
	xlate_error_to_openai(&doc, "<html>Bad Gateway</html>", 24, 502, out);
	take();
	F("error.message", "the upstream answered 502 without an error "
	    "message");
	F("error.type", "server_error");

	evbuffer_drain(out, evbuffer_get_length(out));
	xlate_error_to_anthropic(&doc, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"overloaded_error\",\"message\":\"Overloaded\"}}", 75, 529,
	    "r", out);
	take();
	F("error.type", "overloaded_error");
	F("error.message", "Overloaded");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_reference_example),
		cmocka_unit_test(test_an_tool_use_example),
		cmocka_unit_test(test_an_cache_usage),
		cmocka_unit_test(test_an_stop_reasons),
		cmocka_unit_test(test_an_format_tool),
		cmocka_unit_test(test_an_thinking),
		cmocka_unit_test(test_an_not_a_message),
		cmocka_unit_test(test_oa_chat_object_example),
		cmocka_unit_test(test_oa_function_example),
		cmocka_unit_test(test_oa_cache_usage),
		cmocka_unit_test(test_oa_bad_arguments_kept),
		cmocka_unit_test(test_oa_reasoning_field),
		cmocka_unit_test(test_oa_not_a_completion),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, xc_setup, xc_teardown);
}
