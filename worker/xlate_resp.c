/*
 * xlate_resp.c - whole answers and error bodies across the two formats.
 *
 * The answer is tokenized once; its usage object is read from the tokens
 * by usage.c's usage_merge (the reading that makes the usage row) and
 * written in the client's format by xlate_map, and the rest rewritten,
 * strings copied with their escapes.
 */
#include <string.h>

#include <event2/buffer.h>

#include "worker/reply.h"
#include "worker/xlate_map.h"
#include "worker/xlate_resp.h"

static int
is_tool(const struct json_doc *d, int block, const struct xlate_info *info,
    int format)
{
	int name;

	if (!xj_is(d, json_get(d, block, "type"), "tool_use"))
		return 0;
	name = json_get(d, block, "name");
	return format == (info->format_tool[0] != '\0' &&
	    xj_is(d, name, info->format_tool));
}

static int
count_type(const struct json_doc *d, int array, const char *type)
{
	struct xj_iter	 it;
	int		 e, n = 0;

	xj_iter(&it, d, array);
	while (xj_elem(&it, d, &e))
		n += xj_is(d, json_get(d, e, "type"), type);
	return n;
}

/* The raw bytes of object token V as a JSON string (tool arguments). */
static void
quote_object(struct evbuffer *out, const struct json_doc *d, int v)
{
	if (xj_type(d, v) == JV_OBJECT)
		xj_quote(out, d->js + d->tok[v].start,
		    (size_t)(d->tok[v].end - d->tok[v].start));
	else
		XJ_LIT(out, "\"{}\"");
}

/* Anthropic's content blocks as OpenAI's assistant message. */
static void
an_message(struct evbuffer *out, const struct json_doc *d, int content,
    const struct xlate_info *info)
{
	struct xj_iter	 it;
	int		 b, fmt = -1, n = 0;

	xj_iter(&it, d, content);
	while (fmt < 0 && xj_elem(&it, d, &b))
		if (is_tool(d, b, info, 1))
			fmt = b;
	XJ_LIT(out, "{\"role\":\"assistant\",\"content\":");
	if (fmt >= 0)
		/* response_format: the forced tool's input is the answer */
		quote_object(out, d, json_get(d, fmt, "input"));
	else if (count_type(d, content, "text") > 0) {
		XJ_LIT(out, "\"");
		(void)xj_join(out, d, content, "text", "text", "");
		XJ_LIT(out, "\"");
	} else
		XJ_LIT(out, "null");
	XJ_LIT(out, ",\"refusal\":null");
	if (count_type(d, content, "thinking") > 0) {
		XJ_LIT(out, ",\"reasoning_content\":\"");
		(void)xj_join(out, d, content, "thinking", "thinking", "");
		XJ_LIT(out, "\"");
	}
	xj_iter(&it, d, content);
	while (xj_elem(&it, d, &b)) {
		if (!is_tool(d, b, info, 0))
			continue;
		if (n++ == 0)
			XJ_LIT(out, ",\"tool_calls\":[");
		else
			XJ_LIT(out, ",");
		XJ_LIT(out, "{\"id\":");
		xj_str_or_empty(out, d, json_get(d, b, "id"));
		XJ_LIT(out, ",\"type\":\"function\",\"function\":{\"name\":");
		xj_str_or_empty(out, d, json_get(d, b, "name"));
		XJ_LIT(out, ",\"arguments\":");
		quote_object(out, d, json_get(d, b, "input"));
		XJ_LIT(out, "}}");
	}
	if (n > 0)
		XJ_LIT(out, "]");
	XJ_LIT(out, "}");
}

int
xlate_resp_to_openai(struct json_doc *d, const char *body, size_t len,
    const struct xlate_info *info, int64_t created, struct evbuffer *out)
{
	struct usage_acc a;
	int		 content, sr, fmt = 0, b;
	struct xj_iter	 it;

	memset(&a, 0, sizeof(a));
	a.anthropic = 1;
	if (xj_parse(d, body, len) == -1 || d->tok[0].type != JSMN_OBJECT ||
	    xj_type(d, content = json_get(d, 0, "content")) != JV_ARRAY)
		return -1;
	usage_merge(&a, d, json_get(d, 0, "usage"));
	xj_iter(&it, d, content);
	while (!fmt && xj_elem(&it, d, &b))
		fmt = is_tool(d, b, info, 1);
	XJ_LIT(out, "{\"id\":");
	xj_str_or_empty(out, d, json_get(d, 0, "id"));
	XJ_LIT(out, ",\"object\":\"chat.completion\",\"created\":");
	xj_int(out, created);
	XJ_LIT(out, ",\"model\":");
	xj_str_or_empty(out, d, json_get(d, 0, "model"));
	XJ_LIT(out, ",\"choices\":[{\"index\":0,\"message\":");
	an_message(out, d, content, info);
	XJ_LIT(out, ",\"logprobs\":null,\"finish_reason\":\"");
	sr = json_get(d, 0, "stop_reason");
	if (xj_type(d, sr) == JV_STRING)
		evbuffer_add_printf(out, "%s", xm_finish_reason(d->js +
		    d->tok[sr].start, (size_t)(d->tok[sr].end -
		    d->tok[sr].start), fmt));
	else
		XJ_LIT(out, "stop");
	XJ_LIT(out, "\"}],\"usage\":");
	xm_usage_openai(out, &a);
	XJ_LIT(out, "}");
	return 0;
}

/* OpenAI's assistant message as Anthropic's content blocks. */
static int
oa_content(struct evbuffer *out, const struct json_doc *d, int msg)
{
	struct evbuffer	*tmp;
	struct xj_iter	 it;
	int		 v, c, n = 0;

	XJ_LIT(out, "[");
	/* whichever of the two holds text: the other may be null */
	v = json_get(d, msg, "reasoning_content");
	if (xj_type(d, v) != JV_STRING || d->tok[v].end == d->tok[v].start)
		v = json_get(d, msg, "reasoning");
	if (xj_type(d, v) == JV_STRING && d->tok[v].end > d->tok[v].start) {
		XJ_LIT(out, "{\"type\":\"thinking\",\"thinking\":");
		xj_raw(out, d, v);
		XJ_LIT(out, ",\"signature\":\"\"}");
		n++;
	}
	v = json_get(d, msg, "content");
	if (xj_type(d, v) == JV_STRING && d->tok[v].end > d->tok[v].start) {
		if (n++ > 0)
			XJ_LIT(out, ",");
		XJ_LIT(out, "{\"type\":\"text\",\"text\":");
		xj_raw(out, d, v);
		XJ_LIT(out, "}");
	} else if (xj_type(d, v) == JV_ARRAY) {
		if (n++ > 0)
			XJ_LIT(out, ",");
		XJ_LIT(out, "{\"type\":\"text\",\"text\":\"");
		(void)xj_join(out, d, v, "text", "text", "");
		XJ_LIT(out, "\"}");
	}
	if ((tmp = evbuffer_new()) == NULL)
		return -1;
	xj_iter(&it, d, json_get(d, msg, "tool_calls"));
	while (xj_elem(&it, d, &c)) {
		int fn = json_get(d, c, "function"), args;

		if (n++ > 0)
			XJ_LIT(out, ",");
		XJ_LIT(out, "{\"type\":\"tool_use\",\"id\":");
		xj_str_or_empty(out, d, json_get(d, c, "id"));
		XJ_LIT(out, ",\"name\":");
		xj_str_or_empty(out, d, json_get(d, fn, "name"));
		XJ_LIT(out, ",\"input\":");
		args = json_get(d, fn, "arguments");
		if (xj_args_object(out, tmp, d, args) == -1) {
			/* the model wrote no JSON object: keep its text */
			XJ_LIT(out, "{\"arguments\":");
			xj_str_or_empty(out, d, args);
			XJ_LIT(out, "}");
		}
		XJ_LIT(out, "}");
	}
	evbuffer_free(tmp);
	XJ_LIT(out, "]");
	return 0;
}

int
xlate_resp_to_anthropic(struct json_doc *d, const char *body, size_t len,
    const struct xlate_info *info, struct evbuffer *out)
{
	struct usage_acc a;
	struct xj_iter	 it;
	int		 choice = -1, msg, fr;

	memset(&a, 0, sizeof(a));
	if (xj_parse(d, body, len) == -1 || d->tok[0].type != JSMN_OBJECT)
		return -1;
	usage_merge(&a, d, json_get(d, 0, "usage"));
	xj_iter(&it, d, json_get(d, 0, "choices"));
	if (!xj_elem(&it, d, &choice) ||
	    xj_type(d, msg = json_get(d, choice, "message")) != JV_OBJECT)
		return -1;
	XJ_LIT(out, "{\"id\":");
	xj_str_or_empty(out, d, json_get(d, 0, "id"));
	XJ_LIT(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
	xj_str_or_empty(out, d, json_get(d, 0, "model"));
	XJ_LIT(out, ",\"content\":");
	if (oa_content(out, d, msg) == -1)
		return -1;
	XJ_LIT(out, ",\"stop_reason\":\"");
	fr = json_get(d, choice, "finish_reason");
	evbuffer_add_printf(out, "%s", xj_type(d, fr) == JV_STRING ?
	    xm_stop_reason(d->js + d->tok[fr].start,
	    (size_t)(d->tok[fr].end - d->tok[fr].start)) : "end_turn");
	XJ_LIT(out, "\",\"stop_sequence\":null,\"usage\":");
	xm_usage_anthropic(out, &a);
	XJ_LIT(out, "}");
	return 0;
}

/* The message and type of an error body, as tokens (-1 none). */
static void
error_parts(struct json_doc *d, const char *body, size_t len, int *msg,
    int *type)
{
	int e;

	*msg = *type = -1;
	if (xj_parse(d, body, len) == -1 || d->tok[0].type != JSMN_OBJECT)
		return;
	e = json_get(d, 0, "error");
	if (xj_type(d, e) == JV_OBJECT) {
		*msg = json_get(d, e, "message");
		*type = json_get(d, e, "type");
	} else if (xj_type(d, e) == JV_STRING)
		*msg = e;
	if (xj_type(d, *msg) != JV_STRING) {
		/* vLLM and FastAPI servers: a top-level message or detail */
		*msg = json_get(d, 0, "message");
		if (xj_type(d, *msg) != JV_STRING)
			*msg = json_get(d, 0, "detail");
		if (*type < 0)
			*type = json_get(d, 0, "type");
	}
	if (xj_type(d, *msg) != JV_STRING)
		*msg = -1;
	if (xj_type(d, *type) != JV_STRING)
		*type = -1;
}

static void
error_message(struct evbuffer *out, const struct json_doc *d, int msg,
    int status)
{
	if (msg >= 0)
		xj_raw(out, d, msg);
	else
		evbuffer_add_printf(out, "\"the upstream answered %d without "
		    "an error message\"", status);
}

void
xlate_error_to_openai(struct json_doc *d, const char *body, size_t len,
    int status, struct evbuffer *out)
{
	int msg, type;

	error_parts(d, body, len, &msg, &type);
	XJ_LIT(out, "{\"error\":{\"message\":");
	error_message(out, d, msg, status);
	XJ_LIT(out, ",\"type\":");
	if (type >= 0)
		xj_raw(out, d, type);
	else
		evbuffer_add_printf(out, "\"%s\"", status >= 500 ?
		    "server_error" : "invalid_request_error");
	XJ_LIT(out, ",\"param\":null,\"code\":null}}\n");
}

void
xlate_error_to_anthropic(struct json_doc *d, const char *body, size_t len,
    int status, const char *reqid, struct evbuffer *out)
{
	int msg, type;

	error_parts(d, body, len, &msg, &type);
	evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"%s\",\"message\":", reply_anthropic_type(status));
	error_message(out, d, msg, status);
	XJ_LIT(out, "},\"request_id\":");
	xj_str(out, reqid);
	XJ_LIT(out, "}\n");
}
