/*
 * test_xlate_req.c - request bodies translated between OpenAI's chat
 * completions and Anthropic's Messages, both ways, field by field.
 *
 * The inputs are the providers' documented request examples (OpenAI's
 * chat create reference: the default, image, functions, logprobs and
 * streaming examples; Anthropic's Messages reference and its tool use
 * guide: get_weather, tool_result), then each field the translation
 * maps, and each construct it refuses, whose 400 must name it.  Every
 * output is checked to be strict JSON before its fields are read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "tests/unit/xlate_check.h"
#include "worker/xlate_req.h"

static const char	*res;
static size_t		 rlen;
static struct xlate_info info;
static struct xlate_err	 err;
static struct xlate_req_opts opts = { "claude-sonnet-4-5", 4096, 0 };

static int
run(int to_anthropic, const char *body)
{
	int rc;

	evbuffer_drain(out, evbuffer_get_length(out));
	err.msg[0] = '\0';
	rc = to_anthropic ?
	    xlate_req_to_anthropic(&doc, body, strlen(body), &opts, &info,
	    out, &err) :
	    xlate_req_to_openai(&doc, body, strlen(body), &opts, &info, out,
	    &err);
	rlen = evbuffer_get_length(out);
	res = rlen > 0 ? (const char *)evbuffer_pullup(out, -1) : "";
	return rc;
}

#define OK_AN(body)	do { if (run(1, body) != 0)			\
	fail_msg("refused: %s", err.msg); } while (0)
#define OK_OA(body)	do { if (run(0, body) != 0)			\
	fail_msg("refused: %s", err.msg); } while (0)
#define F(path, want)	JP(res, rlen, path, want)

/* Refused, with a message that holds WHAT. */
static void
refused(int to_anthropic, const char *body, const char *what)
{
	if (run(to_anthropic, body) != -1)
		fail_msg("accepted: %s -> %.*s", body, (int)rlen, res);
	if (strstr(err.msg, what) == NULL)
		fail_msg("message \"%s\" does not name \"%s\"", err.msg, what);
}

/* ---- OpenAI -> Anthropic ---- */

/* OpenAI's "Default" example: developer and user messages. */
static void
test_oa_default_example(void **state)
{
	(void)state;
	OK_AN("{\"model\": \"gpt-4o\", \"messages\": [{\"role\": "
	    "\"developer\", \"content\": \"You are a helpful assistant.\"}, "
	    "{\"role\": \"user\", \"content\": \"Hello!\"}]}");
	F("model", "claude-sonnet-4-5");
	F("max_tokens", "4096");		/* the route's default */
	F("system.0.type", "text");
	F("system.0.text", "You are a helpful assistant.");
	F("system.1", NULL);
	F("messages.0.role", "user");
	F("messages.0.content", "Hello!");
	F("messages.1", NULL);
	F("stream", NULL);
	assert_int_equal(info.stream, 0);
	assert_string_equal(info.format_tool, "");
}

/* OpenAI's image example: text and image_url parts, max_tokens. */
static void
test_oa_image_example(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"What's in this "
	    "image?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/"
	    "Gfp-wisconsin-madison-the-nature-boardwalk.jpg/2560px-Gfp-"
	    "wisconsin-madison-the-nature-boardwalk.jpg\"}}]}],"
	    "\"max_tokens\":300}");
	F("max_tokens", "300");
	F("messages.0.content.0.type", "text");
	F("messages.0.content.0.text", "What's in this image?");
	F("messages.0.content.1.type", "image");
	F("messages.0.content.1.source.type", "url");
	F("messages.0.content.1.source.url", "https://upload.wikimedia.org/"
	    "wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-"
	    "boardwalk.jpg/2560px-Gfp-wisconsin-madison-the-nature-boardwalk"
	    ".jpg");
}

/* A base64 data URL is split into media type and data, escapes read. */
static void
test_oa_image_base64(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
	    "[{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image\\/png;base64,iVBORw0KGgo=\",\"detail\":\"low\"}}]}]}");
	F("messages.0.content.0.type", "image");
	F("messages.0.content.0.source.type", "base64");
	F("messages.0.content.0.source.media_type", "image/png");
	F("messages.0.content.0.source.data", "iVBORw0KGgo=");
	refused(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image/png,abc\"}}]}]}", "base64");
}

/* OpenAI's functions example: tools and tool_choice auto. */
static void
test_oa_functions_example(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"What's the weather like in Boston today?\"}],"
	    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
	    "\"get_current_weather\",\"description\":\"Get the current "
	    "weather in a given location\",\"parameters\":{\"type\":"
	    "\"object\",\"properties\":{\"location\":{\"type\":\"string\","
	    "\"description\":\"The city and state, e.g. San Francisco, CA\"},"
	    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\","
	    "\"fahrenheit\"]}},\"required\":[\"location\"]}}}],"
	    "\"tool_choice\":\"auto\"}");
	F("tools.0.name", "get_current_weather");
	F("tools.0.description", "Get the current weather in a given "
	    "location");
	F("tools.0.input_schema.type", "object");
	F("tools.0.input_schema.properties.unit.enum.1", "fahrenheit");
	F("tools.0.input_schema.required.0", "location");
	F("tools.0.type", NULL);
	F("tool_choice.type", "auto");
	F("tool_choice.disable_parallel_tool_use", NULL);
}

static void
test_oa_tool_choice(void **state)
{
	static const char *tool =
	    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]";
	char body[512];

	(void)state;
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],%s,"
	    "\"tool_choice\":\"required\"}", tool);
	OK_AN(body);
	F("tool_choice.type", "any");
	/* a function with no parameters still has an input schema */
	F("tools.0.input_schema.type", "object");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],%s,"
	    "\"tool_choice\":\"none\",\"parallel_tool_calls\":false}", tool);
	OK_AN(body);
	F("tool_choice.type", "none");
	F("tool_choice.disable_parallel_tool_use", NULL);
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],%s,"
	    "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
	    "\"f\"}},\"parallel_tool_calls\":false}", tool);
	OK_AN(body);
	F("tool_choice.type", "tool");
	F("tool_choice.name", "f");
	F("tool_choice.disable_parallel_tool_use", "true");
	/* no tool_choice, no parallel calls: auto, one at a time */
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],%s,"
	    "\"parallel_tool_calls\":false}", tool);
	OK_AN(body);
	F("tool_choice.type", "auto");
	F("tool_choice.disable_parallel_tool_use", "true");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],%s}",
	    tool);
	OK_AN(body);
	F("tool_choice", NULL);
	refused(1, "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":"
	    "\"custom\",\"custom\":{\"name\":\"g\"}}]}", "custom");
}

/*
 * A tool call round trip: the assistant's tool_calls (OpenAI's documented
 * arguments, newlines and all) become tool_use blocks with the arguments
 * as an object; a run of tool messages becomes one user message of
 * tool_result blocks.
 */
static void
test_oa_tool_round_trip(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":["
	    "{\"role\":\"user\",\"content\":\"Weather in Boston and Paris?\"},"
	    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
	    "{\"id\":\"call_abc123\",\"type\":\"function\",\"function\":"
	    "{\"name\":\"get_current_weather\",\"arguments\":"
	    "\"{\\n\\\"location\\\": \\\"Boston, MA\\\"\\n}\"}},"
	    "{\"id\":\"call_def456\",\"type\":\"function\",\"function\":"
	    "{\"name\":\"get_current_weather\",\"arguments\":\"\"}}]},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_abc123\","
	    "\"content\":\"22 C\"},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_def456\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"18 C\"}]},"
	    "{\"role\":\"user\",\"content\":\"Thanks\"}]}");
	F("messages.1.role", "assistant");
	F("messages.1.content.0.type", "tool_use");
	F("messages.1.content.0.id", "call_abc123");
	F("messages.1.content.0.name", "get_current_weather");
	F("messages.1.content.0.input.location", "Boston, MA");
	F("messages.1.content.1.id", "call_def456");
	F("messages.1.content.1.input", "{}");	/* "" arguments */
	F("messages.1.content.2", NULL);
	F("messages.2.role", "user");
	F("messages.2.content.0.type", "tool_result");
	F("messages.2.content.0.tool_use_id", "call_abc123");
	F("messages.2.content.0.content", "22 C");
	F("messages.2.content.1.tool_use_id", "call_def456");
	F("messages.2.content.1.content.0.text", "18 C");
	F("messages.3.role", "user");
	F("messages.3.content", "Thanks");
	refused(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
	    "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":"
	    "{\"name\":\"f\",\"arguments\":\"{not json\"}}]}]}",
	    "messages[0]: function.arguments is not a JSON object");
}

/* An assistant's text and its calls; empty text is left out. */
static void
test_oa_assistant_text(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
	    "\"content\":\"Let me check.\",\"tool_calls\":[{\"id\":\"c1\","
	    "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
	    "\"{\\\"a\\\":1}\"}}]},{\"role\":\"assistant\",\"content\":\"\","
	    "\"tool_calls\":[{\"id\":\"c2\",\"type\":\"function\",\"function\":"
	    "{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}");
	F("messages.0.content.0.type", "text");
	F("messages.0.content.0.text", "Let me check.");
	F("messages.0.content.1.input.a", "1");
	F("messages.1.content.0.type", "tool_use");
	F("messages.1.content.1", NULL);
}

/* The prompt's bytes reach the upstream as written, escapes included. */
static void
test_oa_text_bytes_kept(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
	    "\"caf\\u00e9 \\\"q\\\"\\n\\ud83d\\ude00 \xe2\x82\xac\"}]}");
	F("messages.0.content", "caf\\u00e9 \\\"q\\\"\\n\\ud83d\\ude00 "
	    "\xe2\x82\xac");
}

static void
test_oa_sampling_and_limits(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":[],\"temperature\":0.2,"
	    "\"top_p\":0.9,\"stop\":\"END\",\"user\":\"user-1234\","
	    "\"max_tokens\":100,\"max_completion_tokens\":200,\"stream\":true,"
	    "\"stream_options\":{\"include_usage\":true},\"seed\":7,"
	    "\"store\":false,\"frequency_penalty\":0,\"n\":1}");
	F("temperature", "0.2");
	F("top_p", "0.9");
	F("stop_sequences.0", "END");
	F("metadata.user_id", "user-1234");
	F("max_tokens", "200");		/* max_completion_tokens wins */
	F("stream", "true");
	F("seed", NULL);
	F("n", NULL);
	assert_int_equal(info.stream, 1);
	assert_int_equal(info.include_usage, 1);
	OK_AN("{\"model\":\"m\",\"messages\":[],\"stop\":[\"a\",\"b\"],"
	    "\"max_tokens\":null,\"stream\":true}");
	F("stop_sequences.1", "b");
	F("max_tokens", "4096");
	assert_int_equal(info.include_usage, 0);
	refused(1, "{\"model\":\"m\",\"messages\":[],\"max_tokens\":1.5}",
	    "max_tokens");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"temperature\":\"hot\"}",
	    "temperature");
}

/* response_format as a forced tool whose schema is the format's. */
static void
test_oa_response_format(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":[],\"response_format\":{\"type\":"
	    "\"json_schema\",\"json_schema\":{\"name\":\"weather_report\","
	    "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":"
	    "{\"temp\":{\"type\":\"number\"}},\"required\":[\"temp\"]}}}}");
	F("tools.0.name", "weather_report");
	F("tools.0.input_schema.required.0", "temp");
	F("tool_choice.type", "tool");
	F("tool_choice.name", "weather_report");
	assert_string_equal(info.format_tool, "weather_report");
	OK_AN("{\"model\":\"m\",\"messages\":[],\"response_format\":{\"type\":"
	    "\"json_object\"}}");
	F("tools.0.name", "json");
	F("tools.0.input_schema.type", "object");
	assert_string_equal(info.format_tool, "json");
	OK_AN("{\"model\":\"m\",\"messages\":[],\"response_format\":{\"type\":"
	    "\"text\"}}");
	F("tools", NULL);
	assert_string_equal(info.format_tool, "");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":"
	    "\"function\",\"function\":{\"name\":\"f\"}}],\"response_format\":"
	    "{\"type\":\"json_object\"}}", "response_format together with "
	    "tools");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"response_format\":"
	    "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a b\"}}}",
	    "json_schema.name");
}

/* reasoning_effort as a thinking budget below max_tokens. */
static void
test_oa_reasoning_effort(void **state)
{
	(void)state;
	OK_AN("{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":\"low\"}");
	F("thinking.type", "enabled");
	F("thinking.budget_tokens", "1024");
	OK_AN("{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"medium\"}");
	F("thinking.budget_tokens", "2048");
	OK_AN("{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":\"high\","
	    "\"max_completion_tokens\":3000}");
	F("thinking.budget_tokens", "2999");
	F("max_tokens", "3000");
	OK_AN("{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":\"none\"}");
	F("thinking", NULL);
	refused(1, "{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"low\",\"max_tokens\":1000}", "max_tokens 1000 leaves no room");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"max\"}", "reasoning_effort");
	/* Anthropic's thinking takes no forced tool: tool_choice auto or
	 * none goes through, required, a function or a format is a 400 */
	OK_AN("{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":\"low\","
	    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
	    "\"tool_choice\":\"auto\"}");
	F("thinking.budget_tokens", "1024");
	F("tool_choice.type", "auto");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"low\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
	    "\"f\"}}],\"tool_choice\":\"required\"}", "forced tool");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"high\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
	    "\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":"
	    "{\"name\":\"f\"}}}", "tool_choice auto or none");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"medium\",\"response_format\":{\"type\":\"json_object\"}}",
	    "forced tool");
	/* without thinking, the same requests are translated */
	OK_AN("{\"model\":\"m\",\"messages\":[],\"reasoning_effort\":"
	    "\"none\",\"response_format\":{\"type\":\"json_object\"}}");
	F("tool_choice.type", "tool");
}

/* What Anthropic's Messages API cannot do is a 400 that names it. */
static void
test_oa_refused(void **state)
{
	(void)state;
	refused(1, "{\"model\":\"m\",\"messages\":[],\"n\":2}", "n greater "
	    "than 1");
	/* a tool_choice with no tools is not dropped: both APIs refuse it */
	refused(1, "{\"model\":\"m\",\"messages\":[],\"tool_choice\":"
	    "\"required\"}", "tool_choice is only allowed when tools");
	refused(0, "{\"model\":\"m\",\"max_tokens\":8,\"messages\":[],"
	    "\"tool_choice\":{\"type\":\"any\"}}",
	    "tool_choice is only allowed when tools");
	/* OpenAI's logprobs example */
	refused(1, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"Hello!\"}],\"logprobs\":true,\"top_logprobs\":2}",
	    "logprobs");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"modalities\":[\"text\","
	    "\"audio\"],\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}}",
	    "audio output");
	refused(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":"
	    "\"AAA\",\"format\":\"wav\"}}]}]}", "messages[0]: audio input");
	refused(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":[{\"type\":\"file\",\"file\":{\"file_id\":\"f\"}}]}]}",
	    "`file`");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"functions\":[{\"name\":"
	    "\"f\"}]}", "functions (deprecated)");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"logit_bias\":"
	    "{\"50256\":-100}}", "logit_bias");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"presence_penalty\":0.5}",
	    "presence_penalty");
	refused(1, "{\"model\":\"m\",\"messages\":[],\"prediction\":{}}",
	    "`prediction`");
	refused(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"function\","
	    "\"name\":\"f\",\"content\":\"x\"}]}", "role `function`");
	refused(1, "{\"model\":\"m\"}", "messages");
	/* harmless ones pass: n 1, zero penalties, empty logit_bias */
	OK_AN("{\"model\":\"m\",\"messages\":[],\"n\":1,\"logprobs\":false,"
	    "\"presence_penalty\":0,\"logit_bias\":{},\"metadata\":{\"a\":"
	    "\"b\"},\"service_tier\":\"auto\"}");
}

/* ---- Anthropic -> OpenAI ---- */

/* Anthropic's Messages reference example. */
static void
test_an_basic_example(void **state)
{
	(void)state;
	opts.model = "gpt-4o-mini";
	OK_OA("{\"model\": \"claude-sonnet-4-20250514\", \"max_tokens\": "
	    "1024, \"messages\": [{\"role\": \"user\", \"content\": \"Hello, "
	    "world\"}]}");
	F("model", "gpt-4o-mini");
	F("messages.0.role", "user");
	F("messages.0.content", "Hello, world");
	F("max_tokens", "1024");
	F("max_completion_tokens", NULL);
	F("stream", NULL);
	opts.max_completion = 1;	/* OpenAI's own API, and Azure */
	OK_OA("{\"model\":\"x\",\"max_tokens\":1024,\"messages\":[]}");
	F("max_completion_tokens", "1024");
	F("max_tokens", NULL);
	opts.max_completion = 0;
}

static void
test_an_system(void **state)
{
	(void)state;
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"system\":\"Be brief.\","
	    "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}");
	F("messages.0.role", "system");
	F("messages.0.content", "Be brief.");
	F("messages.1.role", "user");
	/* Claude Code's shape: several text blocks, cache_control on them */
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"system\":[{\"type\":"
	    "\"text\",\"text\":\"You are Claude Code.\"},{\"type\":\"text\","
	    "\"text\":\"Be brief.\",\"cache_control\":{\"type\":"
	    "\"ephemeral\"}}],\"messages\":[]}");
	F("messages.0.content", "You are Claude Code.\\n\\nBe brief.");
	F("messages.0.cache_control", NULL);
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"system\":[{\"type\":"
	    "\"image\"}],\"messages\":[]}", "system: only text blocks");
}

/* The tool use guide's get_weather: tools and tool_choice. */
static void
test_an_tools(void **state)
{
	(void)state;
	OK_OA("{\"model\":\"x\",\"max_tokens\":1024,\"tools\":[{\"name\":"
	    "\"get_weather\",\"description\":\"Get the current weather in a "
	    "given location\",\"input_schema\":{\"type\":\"object\","
	    "\"properties\":{\"location\":{\"type\":\"string\",\"description\":"
	    "\"The city and state, e.g. San Francisco, CA\"}},\"required\":"
	    "[\"location\"]},\"cache_control\":{\"type\":\"ephemeral\"}}],"
	    "\"tool_choice\":{\"type\":\"any\"},\"messages\":[{\"role\":"
	    "\"user\",\"content\":\"What is the weather like in San "
	    "Francisco?\"}]}");
	F("tools.0.type", "function");
	F("tools.0.function.name", "get_weather");
	F("tools.0.function.description", "Get the current weather in a given "
	    "location");
	F("tools.0.function.parameters.required.0", "location");
	F("tools.0.cache_control", NULL);
	F("tool_choice", "required");
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"tools\":[{\"name\":\"f\","
	    "\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":"
	    "\"tool\",\"name\":\"f\",\"disable_parallel_tool_use\":true},"
	    "\"messages\":[]}");
	F("tool_choice.type", "function");
	F("tool_choice.function.name", "f");
	F("parallel_tool_calls", "false");
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"tools\":[{\"name\":\"f\","
	    "\"type\":\"custom\",\"input_schema\":{}}],\"tool_choice\":"
	    "{\"type\":\"auto\"},\"messages\":[]}");
	F("tool_choice", "auto");
	F("parallel_tool_calls", NULL);
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"tools\":[{\"name\":\"f\"}],"
	    "\"tool_choice\":{\"type\":\"none\"},\"messages\":[]}");
	F("tool_choice", "none");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"tools\":[{\"type\":"
	    "\"web_search_20250305\",\"name\":\"web_search\"}],\"messages\":[]}",
	    "the server tool `web_search_20250305`");
}

/*
 * The guide's tool round trip: the assistant's text and tool_use (the
 * documented response) become content and tool_calls with the input as
 * a JSON string; the user's tool_result becomes a tool message, before
 * the rest of that turn.
 */
static void
test_an_tool_round_trip(void **state)
{
	(void)state;
	OK_OA("{\"model\":\"x\",\"max_tokens\":1024,\"messages\":["
	    "{\"role\":\"user\",\"content\":\"What is the weather like in San "
	    "Francisco?\"},"
	    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
	    "\"I need to use get_weather.\"},{\"type\":\"tool_use\",\"id\":"
	    "\"toolu_01A09q90qw90lq917835lq9\",\"name\":\"get_weather\","
	    "\"input\":{\"location\":\"San Francisco, CA\",\"unit\":"
	    "\"celsius\"}}]},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
	    "\"tool_use_id\":\"toolu_01A09q90qw90lq917835lq9\",\"content\":"
	    "\"15 degrees\"},{\"type\":\"text\",\"text\":\"And tomorrow?\"}]}]}");
	F("messages.1.role", "assistant");
	F("messages.1.content", "I need to use get_weather.");
	F("messages.1.tool_calls.0.id", "toolu_01A09q90qw90lq917835lq9");
	F("messages.1.tool_calls.0.type", "function");
	F("messages.1.tool_calls.0.function.name", "get_weather");
	F("messages.1.tool_calls.0.function.arguments",
	    "{\\\"location\\\":\\\"San Francisco, CA\\\",\\\"unit\\\":"
	    "\\\"celsius\\\"}");
	F("messages.2.role", "tool");
	F("messages.2.tool_call_id", "toolu_01A09q90qw90lq917835lq9");
	F("messages.2.content", "15 degrees");
	F("messages.3.role", "user");
	F("messages.3.content.0.text", "And tomorrow?");
	/* results as blocks, and a call without text: content null */
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\","
	    "\"name\":\"f\",\"input\":{}}]},{\"role\":\"user\",\"content\":"
	    "[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":"
	    "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":"
	    "\"b\"}],\"is_error\":true}]}]}");
	F("messages.0.content", "null");
	F("messages.0.tool_calls.0.function.arguments", "{}");
	F("messages.1.role", "tool");
	F("messages.1.content", "a\\nb");
	F("messages.2", NULL);
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
	    "\"t\",\"content\":[{\"type\":\"image\",\"source\":{}}]}]}]}",
	    "only text blocks");
}

static void
test_an_images(void **state)
{
	(void)state;
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
	    "\"base64\",\"media_type\":\"image/jpeg\",\"data\":\"/9j/4AAQ\"}},"
	    "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":"
	    "\"https://example.com/a.png\"}},{\"type\":\"text\",\"text\":"
	    "\"Compare them.\"}]}]}");
	F("messages.0.content.0.type", "image_url");
	F("messages.0.content.0.image_url.url", "data:image/jpeg;base64,"
	    "/9j/4AAQ");
	F("messages.0.content.1.image_url.url", "https://example.com/a.png");
	F("messages.0.content.2.type", "text");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
	    "\"file\",\"file_id\":\"f\"}}]}]}", "base64 and url");
}

static void
test_an_sampling_and_stream(void **state)
{
	(void)state;
	OK_OA("{\"model\":\"x\",\"max_tokens\":64,\"messages\":[],"
	    "\"stop_sequences\":[\"\\n\\nHuman:\"],\"temperature\":0.5,"
	    "\"top_p\":0.7,\"metadata\":{\"user_id\":\"u-42\"},\"stream\":true,"
	    "\"service_tier\":\"auto\"}");
	F("stop.0", "\\n\\nHuman:");
	F("temperature", "0.5");
	F("top_p", "0.7");
	F("user", "u-42");
	F("stream", "true");
	/* a stream is metered only if the upstream is asked for usage */
	F("stream_options.include_usage", "true");
	F("service_tier", NULL);
	assert_int_equal(info.stream, 1);
	OK_OA("{\"model\":\"x\",\"max_tokens\":64,\"messages\":[],"
	    "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}}");
	F("reasoning_effort", "low");
	OK_OA("{\"model\":\"x\",\"max_tokens\":64,\"messages\":[],"
	    "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":16000}}");
	F("reasoning_effort", "high");
	OK_OA("{\"model\":\"x\",\"max_tokens\":64,\"messages\":[],"
	    "\"thinking\":{\"type\":\"disabled\"}}");
	F("reasoning_effort", NULL);
}

/* Thinking blocks in the history are the upstream's own: not sent. */
static void
test_an_thinking_blocks_dropped(void **state)
{
	(void)state;
	OK_OA("{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":"
	    "\"Let me think.\",\"signature\":\"EqQB\"},{\"type\":"
	    "\"redacted_thinking\",\"data\":\"xx\"},{\"type\":\"text\","
	    "\"text\":\"4\"}]}]}");
	F("messages.0.content", "4");
	F("messages.0.tool_calls", NULL);
}

static void
test_an_refused(void **state)
{
	(void)state;
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[],"
	    "\"top_k\":5}", "`top_k`");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[],"
	    "\"mcp_servers\":[]}", "`mcp_servers`");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}]}",
	    "messages[0]: `document` blocks");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"assistant\",\"content\":[{\"type\":\"server_tool_use\"}]}]}",
	    "`server_tool_use` blocks");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"user\",\"content\":[{\"type\":\"search_result\"}]}]}",
	    "`search_result` blocks");
	refused(0, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":"
	    "\"system\",\"content\":\"x\"}]}", "role `system`");
	refused(0, "{\"model\":\"x\",\"max_tokens\":\"many\",\"messages\":[]}",
	    "max_tokens");
}

/* Too deep to tokenize is refused, not half translated. */
static void
test_too_deep(void **state)
{
	char	 body[2048];
	size_t	 n;
	int	 i;

	(void)state;
	n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"m\","
	    "\"messages\":[],\"metadata\":");
	for (i = 0; i < 200; i++)
		body[n++] = '[';
	for (i = 0; i < 200; i++)
		body[n++] = ']';
	body[n++] = '}';
	body[n] = '\0';
	refused(1, body, "nested too deeply");
	refused(0, body, "nested too deeply");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oa_default_example),
		cmocka_unit_test(test_oa_image_example),
		cmocka_unit_test(test_oa_image_base64),
		cmocka_unit_test(test_oa_functions_example),
		cmocka_unit_test(test_oa_tool_choice),
		cmocka_unit_test(test_oa_tool_round_trip),
		cmocka_unit_test(test_oa_assistant_text),
		cmocka_unit_test(test_oa_text_bytes_kept),
		cmocka_unit_test(test_oa_sampling_and_limits),
		cmocka_unit_test(test_oa_response_format),
		cmocka_unit_test(test_oa_reasoning_effort),
		cmocka_unit_test(test_oa_refused),
		cmocka_unit_test(test_an_basic_example),
		cmocka_unit_test(test_an_system),
		cmocka_unit_test(test_an_tools),
		cmocka_unit_test(test_an_tool_round_trip),
		cmocka_unit_test(test_an_images),
		cmocka_unit_test(test_an_sampling_and_stream),
		cmocka_unit_test(test_an_thinking_blocks_dropped),
		cmocka_unit_test(test_an_refused),
		cmocka_unit_test(test_too_deep),
	};

	return cmocka_run_group_tests(tests, xc_setup, xc_teardown);
}
