/*
 * xlate_req.c - request bodies from one provider's format to the other's.
 *
 * The body is tokenized once (jsmn) and the new one written member by
 * member; strings are copied with their escapes, so a prompt's bytes
 * reach the other upstream exactly as the client wrote them.  Only what
 * must be looked at is decoded: a data URL (split into media type and
 * base64), and tool arguments, which OpenAI carries as JSON text inside a
 * string and Anthropic as the object itself.
 *
 * A member this file does not know is refused, never dropped: a silently
 * ignored parameter is an answer the client did not ask for.  The only
 * members let through unused are those that change nothing in the answer
 * (store, metadata, service_tier, prompt cache keys, seed).  Block fields
 * the other format has no place for (cache_control, citations) are left
 * out: they tune the provider, not the answer.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "worker/xlate_req.h"

/* Thinking budgets for reasoning_effort (Anthropic's least is 1024). */
#define BUDGET_LOW	1024
#define BUDGET_MEDIUM	2048
#define BUDGET_HIGH	4096

struct tx {
	const struct json_doc	*d;
	struct evbuffer		*out;
	struct evbuffer		*tmp;	/* a decoded string */
	struct xlate_err	*err;
};

/* Key token K is S. */
#define KEY(s)	xj_is(t->d, k, s)

static void
comma(struct evbuffer *b, int *n)
{
	if ((*n)++ > 0)
		XJ_LIT(b, ",");
}

static int
tok_len(const struct json_doc *d, int i)
{
	return d->tok[i].end - d->tok[i].start;
}

/* For messages: a key's raw bytes, at most 64 of them. */
#define RAWK(d, k)	tok_len(d, k) > 64 ? 64 : tok_len(d, k), \
			(d)->js + (d)->tok[k].start

/* null, absent, or the number zero */
static int
neutral(const struct json_doc *d, int v)
{
	enum json_vtype ty = xj_type(d, v);
	int		i;

	if (ty == JV_NONE || ty == JV_NULL || ty == JV_FALSE)
		return 1;
	if (ty == JV_OBJECT || ty == JV_ARRAY)
		return d->tok[v].size == 0;
	if (ty != JV_NUMBER)
		return 0;
	for (i = d->tok[v].start; i < d->tok[v].end; i++)
		if (d->js[i] != '0' && d->js[i] != '.' && d->js[i] != '-')
			return 0;
	return 1;
}

static int
is_number(const struct json_doc *d, int v)
{
	return xj_type(d, v) == JV_NUMBER;
}

/* ---- OpenAI chat -> Anthropic Messages ---- */

/* A text block; an empty text is left out (Anthropic refuses those). */
static void
oa_text_block(struct tx *t, struct evbuffer *b, int text, int *n)
{
	if (tok_len(t->d, text) == 0)
		return;
	comma(b, n);
	XJ_LIT(b, "{\"type\":\"text\",\"text\":");
	xj_raw(b, t->d, text);
	XJ_LIT(b, "}");
}

/* An image_url part's URL: a data URL becomes a base64 source. */
static int
oa_image(struct tx *t, struct evbuffer *b, int url, const char *where)
{
	const char	*p, *semi;
	size_t		 n;

	if (xj_type(t->d, url) != JV_STRING)
		return xj_fail(t->err, "%s: image_url.url must be a string",
		    where);
	evbuffer_drain(t->tmp, evbuffer_get_length(t->tmp));
	if (xj_unescape(t->tmp, t->d->js + t->d->tok[url].start,
	    (size_t)tok_len(t->d, url)) == -1 ||
	    (p = (const char *)evbuffer_pullup(t->tmp, -1)) == NULL)
		p = "";
	n = evbuffer_get_length(t->tmp);
	if (n < 5 || strncasecmp(p, "data:", 5) != 0) {
		XJ_LIT(b, "{\"type\":\"image\",\"source\":{\"type\":\"url\","
		    "\"url\":");
		xj_raw(b, t->d, url);
		XJ_LIT(b, "}}");
		return 0;
	}
	if ((semi = memmem(p, n, ";base64,", 8)) == NULL)
		return xj_fail(t->err, "%s: an image data URL must be base64 "
		    "to be translated to Anthropic's Messages API", where);
	XJ_LIT(b, "{\"type\":\"image\",\"source\":{\"type\":\"base64\","
	    "\"media_type\":");
	xj_quote(b, p + 5, (size_t)(semi - p - 5));
	XJ_LIT(b, ",\"data\":");
	xj_quote(b, semi + 8, (size_t)(p + n - semi - 8));
	XJ_LIT(b, "}}");
	return 0;
}

#define PART_IMAGES	0x1	/* image_url parts allowed (user) */
#define PART_REFUSAL	0x2	/* refusal parts allowed (assistant) */

/* An OpenAI content parts array as Anthropic blocks, into B. */
static int
oa_parts(struct tx *t, struct evbuffer *b, int parts, int allow,
    const char *where, int *n)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 p, ty, v;

	xj_iter(&it, d, parts);
	while (xj_elem(&it, d, &p)) {
		if (xj_type(d, p) != JV_OBJECT)
			return xj_fail(t->err, "%s: a content part is not an "
			    "object", where);
		ty = json_get(d, p, "type");
		if (xj_is(d, ty, "text") || ((allow & PART_REFUSAL) &&
		    xj_is(d, ty, "refusal"))) {
			v = json_get(d, p, xj_is(d, ty, "text") ? "text" :
			    "refusal");
			if (xj_type(d, v) != JV_STRING)
				return xj_fail(t->err, "%s: a text part without "
				    "text", where);
			oa_text_block(t, b, v, n);
		} else if ((allow & PART_IMAGES) && xj_is(d, ty, "image_url")) {
			v = json_get(d, p, "image_url");
			if (xj_type(d, v) == JV_OBJECT)
				v = json_get(d, v, "url");
			comma(b, n);
			if (oa_image(t, b, v, where) == -1)
				return -1;
		} else if (xj_is(d, ty, "input_audio"))
			return xj_fail(t->err, "%s: audio input cannot be "
			    "translated to Anthropic's Messages API", where);
		else if (ty >= 0)
			return xj_fail(t->err, "%s: a content part of type "
			    "`%.*s` cannot be translated to Anthropic's "
			    "Messages API", where, RAWK(d, ty));
		else
			return xj_fail(t->err, "%s: a content part without a "
			    "type", where);
	}
	return 0;
}

static int
oa_tool_use(struct tx *t, int call, const char *where, int *nb)
{
	const struct json_doc	*d = t->d;
	int			 fn, id, name, ty;

	if (xj_type(d, call) != JV_OBJECT)
		return xj_fail(t->err, "%s: a tool call is not an object",
		    where);
	ty = json_get(d, call, "type");
	fn = json_get(d, call, "function");
	id = json_get(d, call, "id");
	name = json_get(d, fn, "name");
	if (ty >= 0 && !xj_is(d, ty, "function"))
		return xj_fail(t->err, "%s: a tool call of type `%.*s` cannot "
		    "be translated to Anthropic's Messages API", where,
		    RAWK(d, ty));
	if (xj_type(d, id) != JV_STRING || xj_type(d, name) != JV_STRING)
		return xj_fail(t->err, "%s: a tool call needs an id and a "
		    "function name", where);
	comma(t->out, nb);
	XJ_LIT(t->out, "{\"type\":\"tool_use\",\"id\":");
	xj_raw(t->out, d, id);
	XJ_LIT(t->out, ",\"name\":");
	xj_raw(t->out, d, name);
	XJ_LIT(t->out, ",\"input\":");
	if (xj_args_object(t->out, t->tmp, d, json_get(d, fn,
	    "arguments")) == -1)
		return xj_fail(t->err, "%s: function.arguments is not a JSON "
		    "object, which Anthropic's tool_use input must be", where);
	XJ_LIT(t->out, "}");
	return 0;
}

static int
oa_assistant(struct tx *t, int m, const char *where)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 content = json_get(d, m, "content");
	int			 calls = json_get(d, m, "tool_calls"), c;
	int			 nb = 0;

	if (!neutral(d, json_get(d, m, "function_call")))
		return xj_fail(t->err, "%s: function_call (deprecated) cannot "
		    "be translated to Anthropic's Messages API; use tool_calls",
		    where);
	if (!neutral(d, json_get(d, m, "audio")))
		return xj_fail(t->err, "%s: audio cannot be translated to "
		    "Anthropic's Messages API", where);
	XJ_LIT(t->out, "{\"role\":\"assistant\",\"content\":[");
	switch (xj_type(d, content)) {
	case JV_STRING:
		oa_text_block(t, t->out, content, &nb);
		break;
	case JV_ARRAY:
		if (oa_parts(t, t->out, content, PART_REFUSAL, where,
		    &nb) == -1)
			return -1;
		break;
	case JV_NONE:
	case JV_NULL:
		break;
	default:
		return xj_fail(t->err, "%s: content must be a string or an "
		    "array", where);
	}
	xj_iter(&it, d, xj_type(d, calls) == JV_ARRAY ? calls : -1);
	while (xj_elem(&it, d, &c))
		if (oa_tool_use(t, c, where, &nb) == -1)
			return -1;
	XJ_LIT(t->out, "]}");
	return 0;
}

static int
oa_tool_result(struct tx *t, int m, const char *where, int *n)
{
	const struct json_doc	*d = t->d;
	int			 id = json_get(d, m, "tool_call_id");
	int			 content = json_get(d, m, "content"), nb = 0;

	if (xj_type(d, id) != JV_STRING)
		return xj_fail(t->err, "%s: a tool message needs its "
		    "tool_call_id", where);
	comma(t->out, n);
	XJ_LIT(t->out, "{\"type\":\"tool_result\",\"tool_use_id\":");
	xj_raw(t->out, d, id);
	XJ_LIT(t->out, ",\"content\":");
	switch (xj_type(d, content)) {
	case JV_STRING:
		xj_raw(t->out, d, content);
		break;
	case JV_ARRAY:
		XJ_LIT(t->out, "[");
		if (oa_parts(t, t->out, content, 0, where, &nb) == -1)
			return -1;
		XJ_LIT(t->out, "]");
		break;
	case JV_NONE:
	case JV_NULL:
		XJ_LIT(t->out, "\"\"");
		break;
	default:
		return xj_fail(t->err, "%s: content must be a string or an "
		    "array", where);
	}
	XJ_LIT(t->out, "}");
	return 0;
}

/*
 * The messages: system and developer messages go to SYS (Anthropic's
 * top-level system, wherever they stood); a run of tool messages is one
 * user message of tool_result blocks, as Anthropic wants the results of
 * one turn's calls together.
 */
static int
oa_messages(struct tx *t, int msgs, struct evbuffer *sys, int *nsys)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	char			 where[40];
	int			 m, role, content, i = 0, n = 0, tools = -1;

	XJ_LIT(t->out, "\"messages\":[");
	xj_iter(&it, d, msgs);
	for (; xj_elem(&it, d, &m); i++) {
		snprintf(where, sizeof(where), "messages[%d]", i);
		if (xj_type(d, m) != JV_OBJECT)
			return xj_fail(t->err, "%s is not an object", where);
		role = json_get(d, m, "role");
		content = json_get(d, m, "content");
		if (xj_is(d, role, "system") || xj_is(d, role, "developer")) {
			if (xj_type(d, content) == JV_STRING)
				oa_text_block(t, sys, content, nsys);
			else if (xj_type(d, content) == JV_ARRAY) {
				if (oa_parts(t, sys, content, 0, where,
				    nsys) == -1)
					return -1;
			} else
				return xj_fail(t->err, "%s: content must be a "
				    "string or an array", where);
			continue;
		}
		if (xj_is(d, role, "tool")) {
			if (tools < 0) {
				comma(t->out, &n);
				XJ_LIT(t->out, "{\"role\":\"user\",\"content\":[");
				tools = 0;
			}
			if (oa_tool_result(t, m, where, &tools) == -1)
				return -1;
			continue;
		}
		if (tools >= 0) {
			XJ_LIT(t->out, "]}");
			tools = -1;
		}
		if (xj_is(d, role, "assistant")) {
			comma(t->out, &n);
			if (oa_assistant(t, m, where) == -1)
				return -1;
			continue;
		}
		if (!xj_is(d, role, "user"))
			return role < 0 ? xj_fail(t->err, "%s has no role",
			    where) : xj_fail(t->err, "%s: the role `%.*s` "
			    "cannot be translated to Anthropic's Messages API",
			    where, RAWK(d, role));
		comma(t->out, &n);
		XJ_LIT(t->out, "{\"role\":\"user\",\"content\":");
		if (xj_type(d, content) == JV_STRING)
			xj_raw(t->out, d, content);
		else if (xj_type(d, content) == JV_ARRAY) {
			int nb = 0;

			XJ_LIT(t->out, "[");
			if (oa_parts(t, t->out, content, PART_IMAGES, where,
			    &nb) == -1)
				return -1;
			XJ_LIT(t->out, "]");
		} else
			return xj_fail(t->err, "%s: content must be a string "
			    "or an array", where);
		XJ_LIT(t->out, "}");
	}
	if (tools >= 0)
		XJ_LIT(t->out, "]}");
	XJ_LIT(t->out, "]");
	return 0;
}

static int
oa_tools(struct tx *t, int tools)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 tool, fn, v, i = 0, n = 0;

	XJ_LIT(t->out, ",\"tools\":[");
	xj_iter(&it, d, tools);
	for (; xj_elem(&it, d, &tool); i++) {
		v = json_get(d, tool, "type");
		if (v >= 0 && !xj_is(d, v, "function"))
			return xj_fail(t->err, "tools[%d]: a tool of type "
			    "`%.*s` cannot be translated to Anthropic's "
			    "Messages API", i, RAWK(d, v));
		fn = json_get(d, tool, "function");
		v = json_get(d, fn, "name");
		if (xj_type(d, v) != JV_STRING)
			return xj_fail(t->err, "tools[%d]: a function needs "
			    "a name", i);
		comma(t->out, &n);
		XJ_LIT(t->out, "{\"name\":");
		xj_raw(t->out, d, v);
		if (xj_type(d, v = json_get(d, fn, "description")) ==
		    JV_STRING) {
			XJ_LIT(t->out, ",\"description\":");
			xj_raw(t->out, d, v);
		}
		XJ_LIT(t->out, ",\"input_schema\":");
		if (xj_type(d, v = json_get(d, fn, "parameters")) == JV_OBJECT)
			xj_raw(t->out, d, v);
		else
			XJ_LIT(t->out, "{\"type\":\"object\",\"properties\":{}}");
		XJ_LIT(t->out, "}");
	}
	XJ_LIT(t->out, "]");
	return 0;
}

static int
oa_tool_choice(struct tx *t, int tc, int serial)
{
	const struct json_doc	*d = t->d;
	int			 name = -1, ty;

	XJ_LIT(t->out, ",\"tool_choice\":{\"type\":");
	if (tc < 0 || xj_is(d, tc, "auto"))
		XJ_LIT(t->out, "\"auto\"");
	else if (xj_is(d, tc, "required"))
		XJ_LIT(t->out, "\"any\"");
	else if (xj_is(d, tc, "none")) {
		XJ_LIT(t->out, "\"none\"}");
		return 0;		/* none takes no other member */
	} else if (xj_type(d, tc) == JV_OBJECT &&
	    xj_is(d, ty = json_get(d, tc, "type"), "function") &&
	    xj_type(d, name = json_path(d, tc, "function", "name", NULL)) ==
	    JV_STRING) {
		XJ_LIT(t->out, "\"tool\",\"name\":");
		xj_raw(t->out, d, name);
	} else
		return xj_fail(t->err, "this tool_choice cannot be translated "
		    "to Anthropic's Messages API (none, auto, required or one "
		    "function)");
	if (serial)
		XJ_LIT(t->out, ",\"disable_parallel_tool_use\":true");
	XJ_LIT(t->out, "}");
	return 0;
}

/* A name both APIs take for a tool, copied into NAME. */
static int
tool_name_ok(const struct json_doc *d, int v, char *name)
{
	int i, n;

	if (xj_type(d, v) != JV_STRING || (n = tok_len(d, v)) < 1 ||
	    n > XLATE_TOOL_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = d->js[d->tok[v].start + i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	memcpy(name, d->js + d->tok[v].start, (size_t)n);
	name[n] = '\0';
	return 1;
}

/*
 * response_format as a forced tool whose input schema is the format's:
 * every Anthropic model can be made to call a tool, and the tool's input
 * is the JSON object the client asked for (the answer's translation puts
 * it back as the message content).
 */
static int
oa_format(struct tx *t, int rf, int tools, struct xlate_info *info)
{
	const struct json_doc	*d = t->d;
	int			 ty = json_get(d, rf, "type"), js, schema = -1;

	if (xj_type(d, rf) == JV_NULL || xj_is(d, ty, "text"))
		return 0;
	if (xj_is(d, ty, "json_object"))
		snprintf(info->format_tool, sizeof(info->format_tool), "json");
	else if (xj_is(d, ty, "json_schema")) {
		js = json_get(d, rf, "json_schema");
		if (!tool_name_ok(d, json_get(d, js, "name"),
		    info->format_tool))
			return xj_fail(t->err, "response_format.json_schema."
			    "name must be 1 to 64 letters, digits, '_' or '-'");
		if (xj_type(d, schema = json_get(d, js, "schema")) !=
		    JV_OBJECT)
			schema = -1;
	} else
		return xj_fail(t->err, "this response_format cannot be "
		    "translated to Anthropic's Messages API");
	if (tools >= 0)
		return xj_fail(t->err, "response_format together with tools "
		    "cannot be translated to Anthropic's Messages API (it is "
		    "asked of it as a forced tool)");
	XJ_LIT(t->out, ",\"tools\":[{\"name\":");
	xj_str(t->out, info->format_tool);
	XJ_LIT(t->out, ",\"description\":\"Answer with a JSON object that "
	    "follows this schema.\",\"input_schema\":");
	if (schema >= 0)
		xj_raw(t->out, d, schema);
	else
		XJ_LIT(t->out, "{\"type\":\"object\"}");
	XJ_LIT(t->out, "}],\"tool_choice\":{\"type\":\"tool\",\"name\":");
	xj_str(t->out, info->format_tool);
	XJ_LIT(t->out, "}");
	return 0;
}

/*
 * reasoning_effort as a thinking budget below max_tokens.  FORCED: the
 * request makes the model call a tool (tool_choice required or one
 * function, or response_format), which Anthropic refuses with thinking
 * on (it takes tool_choice auto or none then): refused here, naming why.
 */
static int
oa_thinking(struct tx *t, int re, int64_t max_tokens, int forced)
{
	const struct json_doc	*d = t->d;
	int64_t			 budget;

	if (xj_type(d, re) == JV_NULL || xj_is(d, re, "none"))
		return 0;
	if (xj_is(d, re, "minimal") || xj_is(d, re, "low"))
		budget = BUDGET_LOW;
	else if (xj_is(d, re, "medium"))
		budget = BUDGET_MEDIUM;
	else if (xj_is(d, re, "high"))
		budget = BUDGET_HIGH;
	else
		return xj_fail(t->err, "reasoning_effort must be none, "
		    "minimal, low, medium or high");
	if (forced)
		return xj_fail(t->err, "reasoning_effort together with a forced "
		    "tool (tool_choice required or a function, or "
		    "response_format) cannot be translated to Anthropic's "
		    "Messages API: its thinking allows only tool_choice auto "
		    "or none");
	if (budget >= max_tokens)
		budget = max_tokens - 1;
	if (budget < BUDGET_LOW)
		return xj_fail(t->err, "max_tokens %lld leaves no room for "
		    "reasoning: Anthropic's thinking takes at least %d tokens "
		    "below max_tokens", (long long)max_tokens, BUDGET_LOW);
	XJ_LIT(t->out, ",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":");
	xj_int(t->out, budget);
	XJ_LIT(t->out, "}");
	return 0;
}

struct oa_req {
	int	 messages, max_tokens, temperature, top_p, stop, stream;
	int	 stream_options, tools, tool_choice, parallel, user;
	int	 response_format, reasoning;
};

/* Members that change nothing in an Anthropic answer. */
static const char *const oa_unused[] = {
	"model", "store", "metadata", "service_tier", "prompt_cache_key",
	"safety_identifier", "seed", NULL,
};

static int
oa_read(struct tx *t, struct oa_req *r)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 k, v, i;

	memset(r, 0xff, sizeof(*r));		/* every member -1 */
	xj_iter(&it, d, 0);
	while (xj_member(&it, d, &k, &v)) {
		if (KEY("messages"))
			r->messages = v;
		else if (KEY("max_completion_tokens"))
			r->max_tokens = v;
		else if (KEY("max_tokens")) {
			if (r->max_tokens < 0 ||
			    xj_type(d, r->max_tokens) == JV_NULL)
				r->max_tokens = v;
		} else if (KEY("temperature"))
			r->temperature = v;
		else if (KEY("top_p"))
			r->top_p = v;
		else if (KEY("stop"))
			r->stop = v;
		else if (KEY("stream"))
			r->stream = v;
		else if (KEY("stream_options"))
			r->stream_options = v;
		else if (KEY("tools"))
			r->tools = v;
		else if (KEY("tool_choice"))
			r->tool_choice = v;
		else if (KEY("parallel_tool_calls"))
			r->parallel = v;
		else if (KEY("user"))
			r->user = v;
		else if (KEY("response_format"))
			r->response_format = v;
		else if (KEY("reasoning_effort"))
			r->reasoning = v;
		else if (KEY("n")) {
			if (xj_type(d, v) != JV_NULL && !xj_is_count(d, v))
				return xj_fail(t->err, "n must be a count");
			if (xj_type(d, v) == JV_NUMBER && (tok_len(d, v) != 1 ||
			    d->js[d->tok[v].start] != '1'))
				return xj_fail(t->err, "n greater than 1 cannot "
				    "be translated to Anthropic's Messages API "
				    "(it answers with one choice)");
		} else if (KEY("audio") || KEY("modalities")) {
			if (KEY("audio") ? !neutral(d, v) :
			    memmem(d->js + d->tok[v].start,
			    (size_t)tok_len(d, v), "\"audio\"", 7) != NULL)
				return xj_fail(t->err, "audio output cannot be "
				    "translated to Anthropic's Messages API");
		} else if (KEY("functions") || KEY("function_call")) {
			if (!neutral(d, v))
				return xj_fail(t->err, "%.*s (deprecated) "
				    "cannot be translated to Anthropic's "
				    "Messages API; use tools", RAWK(d, k));
		} else if (KEY("logprobs") || KEY("top_logprobs") ||
		    KEY("logit_bias") || KEY("frequency_penalty") ||
		    KEY("presence_penalty")) {
			if (!neutral(d, v))
				return xj_fail(t->err, "%.*s cannot be "
				    "translated to Anthropic's Messages API",
				    RAWK(d, k));
		} else {
			for (i = 0; oa_unused[i] != NULL; i++)
				if (KEY(oa_unused[i]))
					break;
			if (oa_unused[i] == NULL)
				return xj_fail(t->err, "`%.*s` cannot be "
				    "translated to Anthropic's Messages API",
				    RAWK(d, k));
		}
	}
	if (xj_type(d, r->messages) != JV_ARRAY)
		return xj_fail(t->err, "messages must be an array");
	return 0;
}

static int
oa_sampling(struct tx *t, const struct oa_req *r)
{
	const struct json_doc *d = t->d;

	if (is_number(d, r->temperature)) {
		XJ_LIT(t->out, ",\"temperature\":");
		xj_raw(t->out, d, r->temperature);
	} else if (!neutral(d, r->temperature))
		return xj_fail(t->err, "temperature must be a number");
	if (is_number(d, r->top_p)) {
		XJ_LIT(t->out, ",\"top_p\":");
		xj_raw(t->out, d, r->top_p);
	} else if (!neutral(d, r->top_p))
		return xj_fail(t->err, "top_p must be a number");
	if (xj_type(d, r->stop) == JV_STRING) {
		XJ_LIT(t->out, ",\"stop_sequences\":[");
		xj_raw(t->out, d, r->stop);
		XJ_LIT(t->out, "]");
	} else if (xj_type(d, r->stop) == JV_ARRAY) {
		XJ_LIT(t->out, ",\"stop_sequences\":");
		xj_raw(t->out, d, r->stop);
	} else if (!neutral(d, r->stop))
		return xj_fail(t->err, "stop must be a string or an array");
	if (xj_type(d, r->user) == JV_STRING) {
		XJ_LIT(t->out, ",\"metadata\":{\"user_id\":");
		xj_raw(t->out, d, r->user);
		XJ_LIT(t->out, "}");
	}
	return 0;
}

int
xlate_req_to_anthropic(struct json_doc *d, const char *body, size_t len,
    const struct xlate_req_opts *o, struct xlate_info *info,
    struct evbuffer *out, struct xlate_err *err)
{
	struct tx	 t = { d, out, NULL, err };
	struct oa_req	 r;
	struct evbuffer	*sys = NULL;
	int64_t		 max_tokens = o->max_tokens;
	int		 nsys = 0, rc = -1, serial, iu, forced = 0;

	memset(info, 0, sizeof(*info));
	if (xj_parse(d, body, len) == -1 || d->tok[0].type != JSMN_OBJECT)
		return xj_fail(err, "the request is too large or nested too "
		    "deeply to be translated");
	if (oa_read(&t, &r) == -1)
		return -1;
	if (r.max_tokens >= 0 && xj_type(d, r.max_tokens) != JV_NULL &&
	    (!xj_is_count(d, r.max_tokens) ||
	    json_int(d, r.max_tokens, &max_tokens) == -1))
		return xj_fail(err, "max_tokens must be a count");
	info->stream = xj_type(d, r.stream) == JV_TRUE;
	iu = json_get(d, r.stream_options, "include_usage");
	info->include_usage = xj_type(d, iu) == JV_TRUE;
	if ((t.tmp = evbuffer_new()) == NULL ||
	    (sys = evbuffer_new()) == NULL) {
		xj_fail(err, "out of memory");
		goto done;
	}
	XJ_LIT(out, "{\"model\":");
	xj_str(out, o->model);
	XJ_LIT(out, ",\"max_tokens\":");
	xj_int(out, max_tokens);
	XJ_LIT(out, ",");
	if (oa_messages(&t, r.messages, sys, &nsys) == -1)
		goto done;
	if (nsys > 0) {
		XJ_LIT(out, ",\"system\":[");
		evbuffer_add_buffer(out, sys);
		XJ_LIT(out, "]");
	}
	serial = xj_type(d, r.parallel) == JV_FALSE;
	if (xj_type(d, r.tools) == JV_NULL)
		r.tools = -1;
	if (r.tools >= 0) {
		if (xj_type(d, r.tools) != JV_ARRAY) {
			xj_fail(err, "tools must be an array");
			goto done;
		}
		if (oa_tools(&t, r.tools) == -1)
			goto done;
		if (xj_type(d, r.tool_choice) == JV_NULL)
			r.tool_choice = -1;
		if ((r.tool_choice >= 0 || serial) &&
		    oa_tool_choice(&t, r.tool_choice, serial) == -1)
			goto done;
		forced = r.tool_choice >= 0 && !xj_is(d, r.tool_choice,
		    "auto") && !xj_is(d, r.tool_choice, "none");
	} else if (r.tool_choice >= 0 &&
	    xj_type(d, r.tool_choice) != JV_NULL) {
		/* OpenAI refuses it too; dropping it would change the request */
		xj_fail(err, "tool_choice is only allowed when tools are given");
		goto done;
	}
	if (r.response_format >= 0 &&
	    oa_format(&t, r.response_format, r.tools, info) == -1)
		goto done;
	forced |= info->format_tool[0] != '\0';
	if (oa_sampling(&t, &r) == -1 || (r.reasoning >= 0 &&
	    oa_thinking(&t, r.reasoning, max_tokens, forced) == -1))
		goto done;
	if (info->stream)
		XJ_LIT(out, ",\"stream\":true");
	XJ_LIT(out, "}");
	rc = 0;
 done:
	if (t.tmp != NULL)
		evbuffer_free(t.tmp);
	if (sys != NULL)
		evbuffer_free(sys);
	return rc;
}

/* ---- Anthropic Messages -> OpenAI chat ---- */

/* The text blocks of ARRAY, their insides one after the other, SEP
 * (escaped already) between two; OTHER_OK: other blocks are skipped, else
 * refused. */
static int
an_join_text(struct tx *t, int array, const char *sep, const char *where,
    int other_ok)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 b;

	xj_iter(&it, d, array);
	while (!other_ok && xj_elem(&it, d, &b))
		if (!xj_is(d, json_get(d, b, "type"), "text"))
			return xj_fail(t->err, "%s: only text blocks can be "
			    "translated here", where);
	if (xj_join(t->out, d, array, "text", "text", sep) == -1)
		return xj_fail(t->err, "%s: a text block without text", where);
	return 0;
}

static int
an_image(struct tx *t, int block, const char *where)
{
	const struct json_doc	*d = t->d;
	int			 src = json_get(d, block, "source"), ty, mt, data;

	ty = json_get(d, src, "type");
	XJ_LIT(t->out, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
	if (xj_is(d, ty, "url") &&
	    xj_type(d, data = json_get(d, src, "url")) == JV_STRING)
		xj_raw(t->out, d, data);
	else if (xj_is(d, ty, "base64") &&
	    xj_type(d, mt = json_get(d, src, "media_type")) == JV_STRING &&
	    xj_type(d, data = json_get(d, src, "data")) == JV_STRING) {
		XJ_LIT(t->out, "\"data:");
		xj_inner(t->out, d, mt);
		XJ_LIT(t->out, ";base64,");
		xj_inner(t->out, d, data);
		XJ_LIT(t->out, "\"");
	} else
		return xj_fail(t->err, "%s: only base64 and url image sources "
		    "can be translated to OpenAI's chat API", where);
	XJ_LIT(t->out, "}}");
	return 0;
}

/* A block kind OpenAI's chat API has no place for: refused by name. */
static int
an_refuse_block(struct tx *t, int ty, const char *where)
{
	if (ty < 0)
		return xj_fail(t->err, "%s: a content block without a type",
		    where);
	return xj_fail(t->err, "%s: `%.*s` blocks cannot be translated to "
	    "OpenAI's chat API", where, RAWK(t->d, ty));
}

static int
an_tool_result(struct tx *t, int b, const char *where)
{
	const struct json_doc	*d = t->d;
	int			 id = json_get(d, b, "tool_use_id");
	int			 content = json_get(d, b, "content");

	if (xj_type(d, id) != JV_STRING)
		return xj_fail(t->err, "%s: a tool_result needs its "
		    "tool_use_id", where);
	XJ_LIT(t->out, "{\"role\":\"tool\",\"tool_call_id\":");
	xj_raw(t->out, d, id);
	XJ_LIT(t->out, ",\"content\":");
	if (xj_type(d, content) == JV_STRING)
		xj_raw(t->out, d, content);
	else if (xj_type(d, content) == JV_ARRAY) {
		XJ_LIT(t->out, "\"");
		if (an_join_text(t, content, "\\n", where, 0) == -1)
			return -1;
		XJ_LIT(t->out, "\"");
	} else if (neutral(d, content))
		XJ_LIT(t->out, "\"\"");
	else
		return xj_fail(t->err, "%s: tool_result content must be a "
		    "string or an array", where);
	XJ_LIT(t->out, "}");
	return 0;
}

/*
 * A user turn: its tool results first, each an OpenAI tool message (they
 * must follow the assistant's tool_calls), then the rest as one user
 * message.
 */
static int
an_user(struct tx *t, int content, const char *where, int *n)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 b, ty, rest = 0, np = 0;

	if (xj_type(d, content) == JV_STRING) {
		comma(t->out, n);
		XJ_LIT(t->out, "{\"role\":\"user\",\"content\":");
		xj_raw(t->out, d, content);
		XJ_LIT(t->out, "}");
		return 0;
	}
	if (xj_type(d, content) != JV_ARRAY)
		return xj_fail(t->err, "%s: content must be a string or an "
		    "array", where);
	xj_iter(&it, d, content);
	while (xj_elem(&it, d, &b)) {
		ty = json_get(d, b, "type");
		if (!xj_is(d, ty, "tool_result")) {
			rest++;
			continue;
		}
		comma(t->out, n);
		if (an_tool_result(t, b, where) == -1)
			return -1;
	}
	if (rest == 0)
		return 0;
	comma(t->out, n);
	XJ_LIT(t->out, "{\"role\":\"user\",\"content\":[");
	xj_iter(&it, d, content);
	while (xj_elem(&it, d, &b)) {
		ty = json_get(d, b, "type");
		if (xj_is(d, ty, "tool_result"))
			continue;
		if (xj_is(d, ty, "text")) {
			int text = json_get(d, b, "text");

			if (xj_type(d, text) != JV_STRING)
				return xj_fail(t->err, "%s: a text block "
				    "without text", where);
			comma(t->out, &np);
			XJ_LIT(t->out, "{\"type\":\"text\",\"text\":");
			xj_raw(t->out, d, text);
			XJ_LIT(t->out, "}");
		} else if (xj_is(d, ty, "image")) {
			comma(t->out, &np);
			if (an_image(t, b, where) == -1)
				return -1;
		} else
			return an_refuse_block(t, ty, where);
	}
	XJ_LIT(t->out, "]}");
	return 0;
}

static int
an_assistant(struct tx *t, int content, const char *where, int *n)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 b, ty, v, texts = 0, calls = 0;

	comma(t->out, n);
	XJ_LIT(t->out, "{\"role\":\"assistant\",\"content\":");
	if (xj_type(d, content) == JV_STRING) {
		xj_raw(t->out, d, content);
		XJ_LIT(t->out, "}");
		return 0;
	}
	if (xj_type(d, content) != JV_ARRAY)
		return xj_fail(t->err, "%s: content must be a string or an "
		    "array", where);
	xj_iter(&it, d, content);
	while (xj_elem(&it, d, &b)) {
		ty = json_get(d, b, "type");
		if (xj_is(d, ty, "text"))
			texts++;
		else if (xj_is(d, ty, "tool_use"))
			calls++;
		else if (!xj_is(d, ty, "thinking") &&
		    !xj_is(d, ty, "redacted_thinking"))
			return an_refuse_block(t, ty, where);
	}
	/* thinking is the upstream's own business: it is not sent back */
	if (texts > 0) {
		XJ_LIT(t->out, "\"");
		if (an_join_text(t, content, "", where, 1) == -1)
			return -1;
		XJ_LIT(t->out, "\"");
	} else if (calls > 0)
		XJ_LIT(t->out, "null");
	else
		XJ_LIT(t->out, "\"\"");
	if (calls > 0) {
		int nc = 0;

		XJ_LIT(t->out, ",\"tool_calls\":[");
		xj_iter(&it, d, content);
		while (xj_elem(&it, d, &b)) {
			int id = json_get(d, b, "id"), name;

			if (!xj_is(d, json_get(d, b, "type"), "tool_use"))
				continue;
			name = json_get(d, b, "name");
			if (xj_type(d, id) != JV_STRING ||
			    xj_type(d, name) != JV_STRING)
				return xj_fail(t->err, "%s: a tool_use needs "
				    "an id and a name", where);
			comma(t->out, &nc);
			XJ_LIT(t->out, "{\"id\":");
			xj_raw(t->out, d, id);
			XJ_LIT(t->out, ",\"type\":\"function\",\"function\":"
			    "{\"name\":");
			xj_raw(t->out, d, name);
			XJ_LIT(t->out, ",\"arguments\":");
			if (xj_type(d, v = json_get(d, b, "input")) ==
			    JV_OBJECT)
				xj_quote(t->out, d->js + d->tok[v].start,
				    (size_t)tok_len(d, v));
			else
				XJ_LIT(t->out, "\"{}\"");
			XJ_LIT(t->out, "}}");
		}
		XJ_LIT(t->out, "]");
	}
	XJ_LIT(t->out, "}");
	return 0;
}

static int
an_messages(struct tx *t, int system, int msgs)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	char			 where[40];
	int			 m, role, i = 0, n = 0;

	XJ_LIT(t->out, ",\"messages\":[");
	if (xj_type(d, system) == JV_STRING) {
		XJ_LIT(t->out, "{\"role\":\"system\",\"content\":");
		xj_raw(t->out, d, system);
		XJ_LIT(t->out, "}");
		n++;
	} else if (xj_type(d, system) == JV_ARRAY) {
		XJ_LIT(t->out, "{\"role\":\"system\",\"content\":\"");
		if (an_join_text(t, system, "\\n\\n", "system", 0) == -1)
			return -1;
		XJ_LIT(t->out, "\"}");
		n++;
	} else if (!neutral(d, system))
		return xj_fail(t->err, "system must be a string or an array");
	xj_iter(&it, d, msgs);
	for (; xj_elem(&it, d, &m); i++) {
		snprintf(where, sizeof(where), "messages[%d]", i);
		role = json_get(d, m, "role");
		if (xj_is(d, role, "user")) {
			if (an_user(t, json_get(d, m, "content"), where,
			    &n) == -1)
				return -1;
		} else if (xj_is(d, role, "assistant")) {
			if (an_assistant(t, json_get(d, m, "content"), where,
			    &n) == -1)
				return -1;
		} else
			return role < 0 ? xj_fail(t->err, "%s has no role",
			    where) : xj_fail(t->err, "%s: the role `%.*s` "
			    "cannot be translated", where, RAWK(d, role));
	}
	XJ_LIT(t->out, "]");
	return 0;
}

static int
an_tools(struct tx *t, int tools)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 tool, v, i = 0, n = 0;

	if (xj_type(d, tools) != JV_ARRAY)
		return xj_fail(t->err, "tools must be an array");
	XJ_LIT(t->out, ",\"tools\":[");
	xj_iter(&it, d, tools);
	for (; xj_elem(&it, d, &tool); i++) {
		v = json_get(d, tool, "type");
		if (v >= 0 && !xj_is(d, v, "custom"))
			return xj_fail(t->err, "tools[%d]: the server tool "
			    "`%.*s` cannot be translated to OpenAI's chat API",
			    i, RAWK(d, v));
		if (xj_type(d, v = json_get(d, tool, "name")) != JV_STRING)
			return xj_fail(t->err, "tools[%d]: a tool needs a name",
			    i);
		comma(t->out, &n);
		XJ_LIT(t->out, "{\"type\":\"function\",\"function\":{\"name\":");
		xj_raw(t->out, d, v);
		if (xj_type(d, v = json_get(d, tool, "description")) ==
		    JV_STRING) {
			XJ_LIT(t->out, ",\"description\":");
			xj_raw(t->out, d, v);
		}
		XJ_LIT(t->out, ",\"parameters\":");
		if (xj_type(d, v = json_get(d, tool, "input_schema")) ==
		    JV_OBJECT)
			xj_raw(t->out, d, v);
		else
			XJ_LIT(t->out, "{\"type\":\"object\",\"properties\":{}}");
		XJ_LIT(t->out, "}}");
	}
	XJ_LIT(t->out, "]");
	return 0;
}

static int
an_tool_choice(struct tx *t, int tc)
{
	const struct json_doc	*d = t->d;
	int			 ty = json_get(d, tc, "type"), name;

	XJ_LIT(t->out, ",\"tool_choice\":");
	if (xj_is(d, ty, "auto"))
		XJ_LIT(t->out, "\"auto\"");
	else if (xj_is(d, ty, "any"))
		XJ_LIT(t->out, "\"required\"");
	else if (xj_is(d, ty, "none"))
		XJ_LIT(t->out, "\"none\"");
	else if (xj_is(d, ty, "tool") &&
	    xj_type(d, name = json_get(d, tc, "name")) == JV_STRING) {
		XJ_LIT(t->out, "{\"type\":\"function\",\"function\":{\"name\":");
		xj_raw(t->out, d, name);
		XJ_LIT(t->out, "}}");
	} else
		return xj_fail(t->err, "this tool_choice cannot be translated "
		    "to OpenAI's chat API (auto, any, none or one tool)");
	if (xj_type(d, json_get(d, tc, "disable_parallel_tool_use")) ==
	    JV_TRUE)
		XJ_LIT(t->out, ",\"parallel_tool_calls\":false");
	return 0;
}

struct an_req {
	int	 messages, system, max_tokens, tools, tool_choice, stop;
	int	 temperature, top_p, metadata, stream, thinking;
};

/* Members that change nothing in an OpenAI-format answer. */
static const char *const an_unused[] = {
	"model", "service_tier", "context_management", NULL,
};

static int
an_read(struct tx *t, struct an_req *r)
{
	const struct json_doc	*d = t->d;
	struct xj_iter		 it;
	int			 k, v, i;

	memset(r, 0xff, sizeof(*r));
	xj_iter(&it, d, 0);
	while (xj_member(&it, d, &k, &v)) {
		if (KEY("messages"))
			r->messages = v;
		else if (KEY("system"))
			r->system = v;
		else if (KEY("max_tokens"))
			r->max_tokens = v;
		else if (KEY("tools"))
			r->tools = v;
		else if (KEY("tool_choice"))
			r->tool_choice = v;
		else if (KEY("stop_sequences"))
			r->stop = v;
		else if (KEY("temperature"))
			r->temperature = v;
		else if (KEY("top_p"))
			r->top_p = v;
		else if (KEY("metadata"))
			r->metadata = v;
		else if (KEY("stream"))
			r->stream = v;
		else if (KEY("thinking"))
			r->thinking = v;
		else {
			for (i = 0; an_unused[i] != NULL; i++)
				if (KEY(an_unused[i]))
					break;
			if (an_unused[i] == NULL)
				return xj_fail(t->err, "`%.*s` cannot be "
				    "translated to OpenAI's chat API",
				    RAWK(d, k));
		}
	}
	if (xj_type(d, r->messages) != JV_ARRAY)
		return xj_fail(t->err, "messages must be an array");
	return 0;
}

/* thinking's budget as reasoning_effort, the inverse of oa_thinking. */
static int
an_thinking(struct tx *t, int th)
{
	const struct json_doc	*d = t->d;
	int64_t			 budget;
	int			 ty = json_get(d, th, "type");

	if (neutral(d, th) || xj_is(d, ty, "disabled"))
		return 0;
	if (!xj_is(d, ty, "enabled") ||
	    json_int(d, json_get(d, th, "budget_tokens"), &budget) == -1)
		return xj_fail(t->err, "thinking must be enabled with a "
		    "budget_tokens, or disabled");
	XJ_LIT(t->out, ",\"reasoning_effort\":");
	if (budget <= BUDGET_LOW)
		XJ_LIT(t->out, "\"low\"");
	else if (budget <= BUDGET_MEDIUM)
		XJ_LIT(t->out, "\"medium\"");
	else
		XJ_LIT(t->out, "\"high\"");
	return 0;
}

int
xlate_req_to_openai(struct json_doc *d, const char *body, size_t len,
    const struct xlate_req_opts *o, struct xlate_info *info,
    struct evbuffer *out, struct xlate_err *err)
{
	struct tx	 t = { d, out, NULL, err };
	struct an_req	 r;
	int		 v;

	memset(info, 0, sizeof(*info));
	if (xj_parse(d, body, len) == -1 || d->tok[0].type != JSMN_OBJECT)
		return xj_fail(err, "the request is too large or nested too "
		    "deeply to be translated");
	if (an_read(&t, &r) == -1)
		return -1;
	info->stream = xj_type(d, r.stream) == JV_TRUE;
	XJ_LIT(out, "{\"model\":");
	xj_str(out, o->model);
	if (an_messages(&t, r.system, r.messages) == -1)
		return -1;
	if (xj_is_count(d, r.max_tokens)) {
		if (o->max_completion)
			XJ_LIT(out, ",\"max_completion_tokens\":");
		else
			XJ_LIT(out, ",\"max_tokens\":");
		xj_raw(out, d, r.max_tokens);
	} else if (!neutral(d, r.max_tokens))
		return xj_fail(err, "max_tokens must be a count");
	if (r.tools >= 0 && xj_type(d, r.tools) != JV_NULL) {
		if (an_tools(&t, r.tools) == -1 || (r.tool_choice >= 0 &&
		    xj_type(d, r.tool_choice) != JV_NULL &&
		    an_tool_choice(&t, r.tool_choice) == -1))
			return -1;
	} else if (r.tool_choice >= 0 &&
	    xj_type(d, r.tool_choice) != JV_NULL)
		return xj_fail(err, "tool_choice is only allowed when tools "
		    "are given");
	if (xj_type(d, r.stop) == JV_ARRAY) {
		XJ_LIT(out, ",\"stop\":");
		xj_raw(out, d, r.stop);
	} else if (!neutral(d, r.stop))
		return xj_fail(err, "stop_sequences must be an array");
	if (is_number(d, r.temperature)) {
		XJ_LIT(out, ",\"temperature\":");
		xj_raw(out, d, r.temperature);
	} else if (!neutral(d, r.temperature))
		return xj_fail(err, "temperature must be a number");
	if (is_number(d, r.top_p)) {
		XJ_LIT(out, ",\"top_p\":");
		xj_raw(out, d, r.top_p);
	} else if (!neutral(d, r.top_p))
		return xj_fail(err, "top_p must be a number");
	if (xj_type(d, v = json_get(d, r.metadata, "user_id")) == JV_STRING) {
		XJ_LIT(out, ",\"user\":");
		xj_raw(out, d, v);
	}
	if (r.thinking >= 0 && an_thinking(&t, r.thinking) == -1)
		return -1;
	/* streams are metered only when the upstream is asked for usage */
	if (info->stream)
		XJ_LIT(out, ",\"stream\":true,\"stream_options\":"
		    "{\"include_usage\":true}");
	XJ_LIT(out, "}");
	return 0;
}
