/*
 * test_xlate_sse.c - streamed answers translated event by event, both
 * ways: Anthropic's events to OpenAI's chat.completion.chunk events and
 * [DONE], and OpenAI's chunks to Anthropic's full event sequence.
 *
 * The inputs are the providers' documented streams: Anthropic's
 * streaming guide (the "Hello!" text stream with its ping, and the
 * get_weather tool stream whose partial_json comes in nine pieces) and
 * OpenAI's streaming chunks (role, content pieces, finish_reason, the
 * include_usage chunk, [DONE]), with tool call deltas as OpenAI sends
 * them.  Each stream is fed whole and one byte at a time: the client's
 * events must be the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "tests/unit/xlate_check.h"
#include "worker/xlate_sse.h"

static struct xlate_sse	 st;
static char		*res;
static size_t		 rlen;

/* The client's events: a name (Anthropic) or "", and the data. */
#define MAX_EVENTS	64
static int		 nev;
static char		 ev_name[MAX_EVENTS][32];
static const char	*ev_data[MAX_EVENTS];
static size_t		 ev_len[MAX_EVENTS];

static void
split_events(void)
{
	char	*p = res, *end = res + rlen, *sep, *nl;

	nev = 0;
	while (p < end && (sep = strstr(p, "\n\n")) != NULL) {
		assert_true(nev < MAX_EVENTS);
		ev_name[nev][0] = '\0';
		if (strncmp(p, "event: ", 7) == 0) {
			nl = strchr(p, '\n');
			snprintf(ev_name[nev], sizeof(ev_name[nev]), "%.*s",
			    (int)(nl - p - 7), p + 7);
			p = nl + 1;
		}
		assert_memory_equal(p, "data: ", 6);
		ev_data[nev] = p + 6;
		ev_len[nev] = (size_t)(sep - p - 6);
		nev++;
		p = sep + 2;
	}
	assert_true(p == end);		/* nothing but whole events */
}

/* Feed STREAM to a fresh state, STEP bytes at a time (0: whole). */
static void
run(int to_openai, const struct xlate_info *info, const char *stream,
    size_t step)
{
	size_t i, n = strlen(stream);

	evbuffer_drain(out, evbuffer_get_length(out));
	xlate_sse_init(&st, to_openai, info, 1700000000);
	if (step == 0)
		step = n;
	for (i = 0; i < n; i += step)
		assert_int_equal(xlate_sse_feed(&st, &doc, stream + i,
		    n - i < step ? n - i : step, out), 0);
	xlate_sse_end(&st, &doc, out);
	free(res);
	rlen = evbuffer_get_length(out);
	res = malloc(rlen + 1);
	assert_non_null(res);
	evbuffer_copyout(out, res, rlen);
	res[rlen] = '\0';
	split_events();
}

/* Whole and byte by byte give the same events. */
static void
run_both(int to_openai, const struct xlate_info *info, const char *stream)
{
	char	*whole;
	size_t	 wlen;

	run(to_openai, info, stream, 1);
	whole = strdup(res);
	wlen = rlen;
	run(to_openai, info, stream, 0);
	assert_int_equal(rlen, wlen);
	assert_memory_equal(res, whole, wlen);
	free(whole);
}

#define E(i, path, want)	JP(ev_data[i], ev_len[i], path, want)

static void
is_done(int i)
{
	assert_int_equal(ev_len[i], 6);
	assert_memory_equal(ev_data[i], "[DONE]", 6);
}

/* Anthropic's streaming guide: a text stream, with a ping. */
static const char an_text[] =
    "event: message_start\n"
    "data: {\"type\": \"message_start\", \"message\": {\"id\": "
    "\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", "
    "\"role\": \"assistant\", \"content\": [], \"model\": "
    "\"claude-opus-4-20250514\", \"stop_reason\": null, \"stop_sequence\": "
    "null, \"usage\": {\"input_tokens\": 25, \"output_tokens\": 1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\": \"content_block_start\", \"index\": 0, "
    "\"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": "
    "{\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": "
    "{\"type\": \"text_delta\", \"text\": \"!\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\": \"content_block_stop\", \"index\": 0}\n\n"
    "event: message_delta\n"
    "data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": "
    "\"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": "
    "15}}\n\n"
    "event: message_stop\n"
    "data: {\"type\": \"message_stop\"}\n\n";

static void
test_an_text_stream(void **state)
{
	struct xlate_info info = { .stream = 1, .include_usage = 1 };

	(void)state;
	run_both(1, &info, an_text);
	/* start, two texts, finish, usage, [DONE]; ping and stops: none */
	assert_int_equal(nev, 6);
	E(0, "id", "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
	E(0, "object", "chat.completion.chunk");
	E(0, "created", "1700000000");
	E(0, "model", "claude-opus-4-20250514");
	E(0, "choices.0.delta.role", "assistant");
	E(0, "choices.0.finish_reason", "null");
	E(1, "choices.0.delta.content", "Hello");
	E(2, "choices.0.delta.content", "!");
	E(3, "choices.0.delta.content", NULL);
	E(3, "choices.0.finish_reason", "stop");
	E(4, "choices.0", NULL);
	E(4, "usage.prompt_tokens", "25");
	E(4, "usage.completion_tokens", "15");
	E(4, "usage.total_tokens", "40");
	is_done(5);
	/* without include_usage, no usage chunk */
	info.include_usage = 0;
	run(1, &info, an_text, 0);
	assert_int_equal(nev, 5);
	E(3, "choices.0.finish_reason", "stop");
	is_done(4);
}

/* The guide's tool stream: partial_json pieces are arguments pieces. */
static const char an_tool[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":"
    "\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":"
    "\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"stop_sequence\":"
    "null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2},"
    "\"content\":[],\"stop_reason\":null}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"Okay, let's check\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,"
    "\"content_block\":{\"type\":\"tool_use\",\"id\":"
    "\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\","
    "\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":"
    "\"{\\\"location\\\":\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\" Francisc\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\"o,\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\" CA\\\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\", \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":"
    "\"\\\"unit\\\": \\\"fah\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\"renheit\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":"
    "89}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

static void
test_an_tool_stream(void **state)
{
	struct xlate_info info = { .stream = 1 };
	char		  args[256];
	size_t		  n = 0;
	int		  i;

	(void)state;
	run_both(1, &info, an_tool);
	/* start, text, tool start, 8 argument pieces, finish, [DONE] */
	assert_int_equal(nev, 13);
	E(1, "choices.0.delta.content", "Okay, let's check");
	E(2, "choices.0.delta.tool_calls.0.index", "0");
	E(2, "choices.0.delta.tool_calls.0.id", "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
	E(2, "choices.0.delta.tool_calls.0.type", "function");
	E(2, "choices.0.delta.tool_calls.0.function.name", "get_weather");
	E(2, "choices.0.delta.tool_calls.0.function.arguments", "");
	for (i = 3; i < 11; i++) {
		const char	*a;
		size_t		 k;
		int		 t;

		E(i, "choices.0.delta.tool_calls.0.index", "0");
		E(i, "choices.0.delta.tool_calls.0.id", NULL);
		t = jp_token("choices.0.delta.tool_calls.0.function.arguments");
		a = json_raw(&jp_doc, t, &k);
		memcpy(args + n, a, k);
		n += k;
	}
	args[n] = '\0';
	/* the pieces, escapes as sent, make the documented input */
	assert_string_equal(args, "{\\\"location\\\": \\\"San Francisco, CA\\\""
	    ", \\\"unit\\\": \\\"fahrenheit\\\"}");
	E(11, "choices.0.finish_reason", "tool_calls");
	is_done(12);
}

/* response_format's tool streams as content; thinking as reasoning. */
static void
test_an_format_and_thinking(void **state)
{
	struct xlate_info info = { .stream = 1, .format_tool = "report" };

	(void)state;
	run(1, &info,
	    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
	    "\"model\":\"c\",\"usage\":{\"input_tokens\":5}}}\n\n"
	    "data: {\"type\":\"content_block_start\",\"index\":0,"
	    "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
	    "{\"type\":\"thinking_delta\",\"thinking\":\"Hm.\"}}\n\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
	    "{\"type\":\"signature_delta\",\"signature\":\"Eq\"}}\n\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	    "data: {\"type\":\"content_block_start\",\"index\":1,"
	    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
	    "\"report\",\"input\":{}}}\n\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
	    "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}"
	    "\n\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
	    "{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
	    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	    "\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n"
	    "data: {\"type\":\"message_stop\"}\n\n", 0);
	assert_int_equal(nev, 6);
	E(1, "choices.0.delta.reasoning_content", "Hm.");
	E(2, "choices.0.delta.content", "{\\\"a\\\":");
	E(3, "choices.0.delta.content", "1}");
	E(4, "choices.0.finish_reason", "stop");
	is_done(5);
}

static void
test_an_error_event(void **state)
{
	struct xlate_info info = { .stream = 1 };

	(void)state;
	run(1, &info, "event: error\ndata: {\"type\": \"error\", \"error\": "
	    "{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
	    0);
	assert_int_equal(nev, 1);
	E(0, "error.message", "Overloaded");
	E(0, "error.type", "overloaded_error");
}

/* OpenAI's streaming chunks, with the include_usage chunk. */
static const char oa_text[] =
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\","
    "\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":"
    "\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":"
    "null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\","
    "\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":"
    "0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\","
    "\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":"
    "0,\"delta\":{\"content\":\" there\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\","
    "\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":"
    "0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\","
    "\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,"
    "\"total_tokens\":21,\"prompt_tokens_details\":{\"cached_tokens\":4}}}"
    "\n\n"
    "data: [DONE]\n\n";

static void
test_oa_text_stream(void **state)
{
	struct xlate_info info = { .stream = 1 };

	(void)state;
	run_both(0, &info, oa_text);
	assert_int_equal(nev, 7);
	assert_string_equal(ev_name[0], "message_start");
	E(0, "type", "message_start");
	E(0, "message.id", "chatcmpl-123");
	E(0, "message.type", "message");
	E(0, "message.role", "assistant");
	E(0, "message.model", "gpt-4o-mini");
	E(0, "message.content", "[]");
	E(0, "message.usage.input_tokens", "0");
	assert_string_equal(ev_name[1], "content_block_start");
	E(1, "index", "0");
	E(1, "content_block.type", "text");
	assert_string_equal(ev_name[2], "content_block_delta");
	E(2, "index", "0");
	E(2, "delta.type", "text_delta");
	E(2, "delta.text", "Hello");
	E(3, "delta.text", " there");
	assert_string_equal(ev_name[4], "content_block_stop");
	E(4, "index", "0");
	/* the stop reason waits for the usage: both in message_delta */
	assert_string_equal(ev_name[5], "message_delta");
	E(5, "delta.stop_reason", "end_turn");
	E(5, "delta.stop_sequence", "null");
	E(5, "usage.input_tokens", "5");		/* 9 less 4 cached */
	E(5, "usage.cache_read_input_tokens", "4");
	E(5, "usage.output_tokens", "12");
	assert_string_equal(ev_name[6], "message_stop");
	E(6, "type", "message_stop");
}

/* Tool calls as OpenAI streams them: id and name first, then pieces. */
static const char oa_tools[] =
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Checking."
    "\"}}]}\n\n"
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
    "\"call_DdmO9pD3xa9XTPNJ32zg2hcA\",\"type\":\"function\",\"function\":"
    "{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n"
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"location\\\":\"}}]}}]}\n\n"
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n"
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_time\","
    "\"arguments\":\"{}\"}}]}}]}\n\n"
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[{"
    "\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":20}}\n\n"
    "data: [DONE]\n\n";

static void
test_oa_tool_stream(void **state)
{
	struct xlate_info info = { .stream = 1 };

	(void)state;
	run_both(0, &info, oa_tools);
	assert_int_equal(nev, 13);
	assert_string_equal(ev_name[1], "content_block_start");
	E(1, "content_block.type", "text");
	E(2, "delta.text", "Checking.");
	assert_string_equal(ev_name[3], "content_block_stop");
	E(3, "index", "0");
	assert_string_equal(ev_name[4], "content_block_start");
	E(4, "index", "1");
	E(4, "content_block.type", "tool_use");
	E(4, "content_block.id", "call_DdmO9pD3xa9XTPNJ32zg2hcA");
	E(4, "content_block.name", "get_weather");
	E(4, "content_block.input", "{}");
	E(5, "index", "1");
	E(5, "delta.type", "input_json_delta");
	E(5, "delta.partial_json", "{\\\"location\\\":");
	E(6, "delta.partial_json", "\\\"Paris\\\"}");
	assert_string_equal(ev_name[7], "content_block_stop");
	E(7, "index", "1");
	E(8, "index", "2");
	E(8, "content_block.id", "call_2");
	E(8, "content_block.name", "get_time");
	E(9, "delta.partial_json", "{}");
	assert_string_equal(ev_name[10], "content_block_stop");
	E(11, "delta.stop_reason", "tool_use");
	E(11, "usage.input_tokens", "50");
	E(11, "usage.output_tokens", "20");
	assert_string_equal(ev_name[12], "message_stop");
}

/*
 * Thinking, then text, then a tool call, from Anthropic: the thinking
 * is reasoning_content, the signature nothing, and the tool is OpenAI's
 * call 0 although it is Anthropic's block 2.
 */
static void
test_an_thinking_then_tool(void **state)
{
	struct xlate_info info = { .stream = 1 };

	(void)state;
	run_both(1, &info,
	    "event: message_start\n"
	    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
	    "\"model\":\"c\",\"usage\":{\"input_tokens\":5}}}\n\n"
	    "event: content_block_start\n"
	    "data: {\"type\":\"content_block_start\",\"index\":0,"
	    "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
	    "event: content_block_delta\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
	    "{\"type\":\"thinking_delta\",\"thinking\":\"Paris?\"}}\n\n"
	    "event: content_block_delta\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
	    "{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n"
	    "event: content_block_stop\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	    "event: content_block_start\n"
	    "data: {\"type\":\"content_block_start\",\"index\":1,"
	    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
	    "event: content_block_delta\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
	    "{\"type\":\"text_delta\",\"text\":\"Checking.\"}}\n\n"
	    "event: content_block_stop\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
	    "event: content_block_start\n"
	    "data: {\"type\":\"content_block_start\",\"index\":2,"
	    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\","
	    "\"name\":\"get_weather\",\"input\":{}}}\n\n"
	    "event: content_block_delta\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":"
	    "{\"type\":\"input_json_delta\",\"partial_json\":"
	    "\"{\\\"city\\\":\\\"Paris\\\"}\"}}\n\n"
	    "event: content_block_stop\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
	    "event: message_delta\n"
	    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	    "\"tool_use\"},\"usage\":{\"output_tokens\":30}}\n\n"
	    "event: message_stop\n"
	    "data: {\"type\":\"message_stop\"}\n\n");
	assert_int_equal(nev, 7);
	E(0, "choices.0.delta.role", "assistant");
	E(1, "choices.0.delta.reasoning_content", "Paris?");
	E(2, "choices.0.delta.content", "Checking.");
	E(3, "choices.0.delta.tool_calls.0.index", "0");
	E(3, "choices.0.delta.tool_calls.0.id", "toolu_1");
	E(3, "choices.0.delta.tool_calls.0.function.name", "get_weather");
	E(4, "choices.0.delta.tool_calls.0.index", "0");
	E(4, "choices.0.delta.tool_calls.0.function.arguments",
	    "{\\\"city\\\":\\\"Paris\\\"}");
	E(5, "choices.0.finish_reason", "tool_calls");
	is_done(6);
}

/* Reasoning, then a tool call, from OpenAI: block 0 thinking, block 1
 * the tool, each closed before the next opens. */
static const char oa_think_tool[] =
    "data: {\"id\":\"c\",\"model\":\"r1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":null,"
    "\"reasoning_content\":\"Paris\"}}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"r1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"reasoning_content\":null,\"reasoning\":\"?\"}}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"r1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"\"}}]}}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"r1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"tool_calls\":[{\"index\":0,%s\"function\":"
    "{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"r1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"tool_calls\":[{\"index\":0,%s\"function\":"
    "{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"finish_reason\":"
    "\"tool_calls\"}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"r1\",\"choices\":[],\"usage\":"
    "{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n"
    "data: [DONE]\n\n";

static void
test_oa_thinking_then_tool(void **state)
{
	struct xlate_info info = { .stream = 1 };
	char		  stream[2048], *first;
	size_t		  flen;

	(void)state;
	snprintf(stream, sizeof(stream), oa_think_tool, "", "");
	run_both(0, &info, stream);
	assert_int_equal(nev, 11);
	assert_string_equal(ev_name[0], "message_start");
	assert_string_equal(ev_name[1], "content_block_start");
	E(1, "index", "0");
	E(1, "content_block.type", "thinking");
	E(2, "index", "0");
	E(2, "delta.thinking", "Paris");
	E(3, "index", "0");
	E(3, "delta.thinking", "?");
	assert_string_equal(ev_name[4], "content_block_stop");
	E(4, "index", "0");
	assert_string_equal(ev_name[5], "content_block_start");
	E(5, "index", "1");
	E(5, "content_block.type", "tool_use");
	E(5, "content_block.id", "call_1");
	E(6, "index", "1");
	E(6, "delta.partial_json", "{\\\"city\\\":");
	E(7, "index", "1");
	E(7, "delta.partial_json", "\\\"Paris\\\"}");
	assert_string_equal(ev_name[8], "content_block_stop");
	E(8, "index", "1");
	E(9, "delta.stop_reason", "tool_use");
	E(9, "usage.output_tokens", "4");
	assert_string_equal(ev_name[10], "message_stop");
	/* a server that repeats the call's id on every piece: one call */
	first = strdup(res);
	flen = rlen;
	snprintf(stream, sizeof(stream), oa_think_tool, "\"id\":\"call_1\",",
	    "\"id\":\"call_1\",");
	run_both(0, &info, stream);
	assert_int_equal(rlen, flen);
	assert_memory_equal(res, first, flen);
	free(first);
}

/* A server that ends without [DONE], CRLF lines, reasoning deltas. */
static void
test_oa_no_done_crlf_reasoning(void **state)
{
	struct xlate_info info = { .stream = 1 };

	(void)state;
	run(0, &info,
	    "data: {\"id\":\"c\",\"model\":\"qwen3\",\"choices\":[{\"index\":0,"
	    "\"delta\":{\"reasoning_content\":\"Think.\"}}]}\r\n\r\n"
	    ": a comment\r\n\r\n"
	    "data: {\"id\":\"c\",\"model\":\"qwen3\",\"choices\":[{\"index\":0,"
	    "\"delta\":{\"content\":\"Done\"},\"finish_reason\":\"length\"}]}"
	    "\r\n\r\n", 0);
	assert_int_equal(nev, 9);
	E(1, "content_block.type", "thinking");
	E(2, "delta.type", "thinking_delta");
	E(2, "delta.thinking", "Think.");
	assert_string_equal(ev_name[3], "content_block_stop");
	E(4, "content_block.type", "text");
	E(5, "delta.text", "Done");
	E(6, "type", "content_block_stop");
	E(7, "delta.stop_reason", "max_tokens");
	assert_string_equal(ev_name[8], "message_stop");
	/* ended by the stream's end: message_delta and message_stop */
	run(0, &info,
	    "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,"
	    "\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}",
	    0);
	assert_int_equal(nev, 6);
	E(4, "delta.stop_reason", "max_tokens");
	assert_string_equal(ev_name[5], "message_stop");
}

static void
test_oa_error_chunk(void **state)
{
	struct xlate_info info = { .stream = 1 };

	(void)state;
	run(0, &info, "data: {\"error\":{\"message\":\"The server had an "
	    "error\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n", 0);
	assert_int_equal(nev, 1);
	assert_string_equal(ev_name[0], "error");
	E(0, "type", "error");
	E(0, "error.message", "The server had an error");
}

/* An event past XLATE_SSE_EVENT_MAX stops the stream, bounded. */
static void
test_event_too_large(void **state)
{
	struct xlate_info info = { .stream = 1 };
	char		 *big;
	size_t		  n = XLATE_SSE_EVENT_MAX + 64;

	(void)state;
	big = malloc(n);
	assert_non_null(big);
	memcpy(big, "data: \"", 7);
	memset(big + 7, 'a', n - 7);
	xlate_sse_init(&st, 0, &info, 0);
	assert_int_equal(xlate_sse_feed(&st, &doc, big, n, out), -1);
	free(big);
}

static int
teardown(void **state)
{
	xlate_sse_free(&st);
	free(res);
	return xc_teardown(state);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_text_stream),
		cmocka_unit_test(test_an_tool_stream),
		cmocka_unit_test(test_an_format_and_thinking),
		cmocka_unit_test(test_an_error_event),
		cmocka_unit_test(test_oa_text_stream),
		cmocka_unit_test(test_oa_tool_stream),
		cmocka_unit_test(test_an_thinking_then_tool),
		cmocka_unit_test(test_oa_thinking_then_tool),
		cmocka_unit_test(test_oa_no_done_crlf_reasoning),
		cmocka_unit_test(test_oa_error_chunk),
		cmocka_unit_test(test_event_too_large),
	};

	return cmocka_run_group_tests(tests, xc_setup, teardown);
}
