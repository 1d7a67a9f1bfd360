/*
 * xlate_map.c - stop reasons and usage objects across the two formats.
 *
 * The usage numbers are the upstream's, read by usage.c from the same
 * bytes the usage row is made of; only their split differs: OpenAI's
 * prompt_tokens includes cached_tokens, Anthropic's input_tokens leaves
 * out cache reads and cache writes.
 */
#include <string.h>

#include <event2/buffer.h>

#include "worker/xlate_json.h"
#include "worker/xlate_map.h"

static int
is(const char *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

const char *
xm_finish_reason(const char *sr, size_t n, int format_tool)
{
	if (is(sr, n, "max_tokens") ||
	    is(sr, n, "model_context_window_exceeded"))
		return "length";
	if (is(sr, n, "tool_use"))
		return format_tool ? "stop" : "tool_calls";
	if (is(sr, n, "refusal"))
		return "content_filter";
	return "stop";
}

const char *
xm_stop_reason(const char *fr, size_t n)
{
	if (is(fr, n, "length"))
		return "max_tokens";
	if (is(fr, n, "tool_calls") || is(fr, n, "function_call"))
		return "tool_use";
	if (is(fr, n, "content_filter"))
		return "refusal";
	return "end_turn";
}

void
xm_usage_openai(struct evbuffer *b, const struct usage_acc *a)
{
	int64_t prompt = a->input;

	if (a->anthropic)
		prompt += a->cache_read + a->cache_create;
	XJ_LIT(b, "{\"prompt_tokens\":");
	xj_int(b, prompt);
	XJ_LIT(b, ",\"completion_tokens\":");
	xj_int(b, a->output);
	XJ_LIT(b, ",\"total_tokens\":");
	xj_int(b, prompt + a->output);
	XJ_LIT(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
	xj_int(b, a->cache_read);
	XJ_LIT(b, "}");
	if (a->reasoning_seen) {
		XJ_LIT(b, ",\"completion_tokens_details\":{\"reasoning_tokens\":");
		xj_int(b, a->reasoning);
		XJ_LIT(b, "}");
	}
	XJ_LIT(b, "}");
}

void
xm_usage_anthropic(struct evbuffer *b, const struct usage_acc *a)
{
	int64_t input = a->input;

	if (!a->anthropic)
		input = a->input > a->cache_read ? a->input - a->cache_read : 0;
	XJ_LIT(b, "{\"input_tokens\":");
	xj_int(b, input);
	XJ_LIT(b, ",\"output_tokens\":");
	xj_int(b, a->output);
	XJ_LIT(b, ",\"cache_creation_input_tokens\":");
	xj_int(b, a->cache_create);
	XJ_LIT(b, ",\"cache_read_input_tokens\":");
	xj_int(b, a->cache_read);
	XJ_LIT(b, "}");
}
