/*
 * xlate_sse.c - streamed answers across the two formats, event by event.
 *
 * The two streams carry the same things in different cuts.  Anthropic
 * opens the message (message_start, with the input usage), then one
 * content block at a time, each started, filled by deltas and stopped,
 * then message_delta (stop reason, cumulative usage) and message_stop.
 * OpenAI sends chunks whose delta may carry text, reasoning or pieces of
 * tool calls (told apart by their index), a finish_reason on the last
 * content chunk, a usage chunk when asked, and [DONE].
 *
 * To OpenAI, each Anthropic event becomes at most one chunk, written the
 * moment it is read; tool arguments go out as the partial JSON arrives
 * (input_json_delta's text is OpenAI's arguments fragment, escapes and
 * all).  To Anthropic, blocks are opened and closed around the chunks'
 * deltas, and message_delta waits for [DONE]: OpenAI reports usage after
 * the finish reason, and Anthropic's message_delta carries both.
 *
 * Usage is read from each event's tokens by usage.c's usage_merge, the
 * reading of the usage row, so the numbers a client is told are the ones
 * it is billed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "worker/xlate_map.h"
#include "worker/xlate_sse.h"

/* An error event's message when the upstream gave none. */
#define STREAM_FAILED	"\"the upstream's stream failed\""

enum {
	BK_NONE = 0,
	BK_TEXT,
	BK_TOOL,
	BK_FORMAT,	/* the tool standing for response_format */
	BK_THINK,
	BK_OTHER,	/* a kind the client's format has no place for */
};

void
xlate_sse_init(struct xlate_sse *s, int to_openai,
    const struct xlate_info *info, int64_t created)
{
	char	*line = s->line, *data = s->data;
	size_t	 lcap = s->lcap, dcap = s->dcap;

	memset(s, 0, sizeof(*s));
	s->line = line;
	s->lcap = lcap;
	s->data = data;
	s->dcap = dcap;
	s->to_openai = to_openai;
	/* Anthropic's input_tokens leaves the cache out; OpenAI's not */
	s->usage.anthropic = to_openai ? 1 : 0;
	s->info = *info;
	s->created = created;
	s->tool = -1;
}

void
xlate_sse_free(struct xlate_sse *s)
{
	free(s->line);
	free(s->data);
	s->line = s->data = NULL;
	s->lcap = s->dcap = s->llen = s->dlen = 0;
}

static int
append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	size_t	 ncap;
	char	*nb;

	if (*len + n > XLATE_SSE_EVENT_MAX)
		return -1;
	if (*len + n > *cap) {
		for (ncap = *cap ? *cap : 1024; ncap < *len + n; ncap *= 2)
			;
		if ((nb = realloc(*buf, ncap)) == NULL)
			return -1;
		*buf = nb;
		*cap = ncap;
	}
	if (n > 0)
		memcpy(*buf + *len, p, n);
	*len += n;
	return 0;
}

/* Keep string token V's inside in DST when it fits, else "". */
static void
keep(char *dst, size_t size, const struct json_doc *d, int v)
{
	size_t n;

	dst[0] = '\0';
	if (xj_type(d, v) != JV_STRING ||
	    (n = (size_t)(d->tok[v].end - d->tok[v].start)) >= size)
		return;
	memcpy(dst, d->js + d->tok[v].start, n);
	dst[n] = '\0';
}

static int
str_empty(const struct json_doc *d, int v)
{
	return xj_type(d, v) != JV_STRING || d->tok[v].end == d->tok[v].start;
}

/* ---- Anthropic events -> OpenAI chunks ---- */

static char *
put(char *q, const char *p, size_t n)
{
	memcpy(q, p, n);
	return q + n;
}

/* the head's literals, an id and a model at their longest, 20 digits */
_Static_assert(sizeof(((struct xlate_sse *)0)->head) >= 80 +
    2 * (XLATE_ID_MAX - 1) + 20, "a chunk's head fits");

/* The id and model are known (message_start): the chunks' head, once. */
static void
chunk_head_make(struct xlate_sse *s)
{
	char	 num[24], *q = s->head;
	int	 n = (int)sizeof(num);
	uint64_t v = s->created > 0 ? (uint64_t)s->created : 0;

	do {
		num[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
#define PUT_LIT(q, lit)	put((q), "" lit, sizeof(lit) - 1)
	q = PUT_LIT(q, "data: {\"id\":\"");
	q = put(q, s->id, strlen(s->id));
	q = PUT_LIT(q, "\",\"object\":\"chat.completion.chunk\",\"created\":");
	q = put(q, num + n, sizeof(num) - (size_t)n);
	q = PUT_LIT(q, ",\"model\":\"");
	q = put(q, s->model, strlen(s->model));
	q = PUT_LIT(q, "\",\"choices\":");
#undef PUT_LIT
	s->headlen = (size_t)(q - s->head);
}

/* A chunk up to its choices: one copy of what every chunk repeats. */
static void
chunk_head(struct xlate_sse *s, struct evbuffer *out)
{
	if (s->headlen == 0)
		chunk_head_make(s);
	evbuffer_add(out, s->head, s->headlen);
}

static void
chunk_open(struct xlate_sse *s, struct evbuffer *out)
{
	chunk_head(s, out);
	XJ_LIT(out, "[{\"index\":0,\"delta\":");
}

static void
chunk_close(struct evbuffer *out, const char *finish)
{
	XJ_LIT(out, ",\"logprobs\":null,\"finish_reason\":");
	if (finish != NULL) {
		XJ_LIT(out, "\"");
		xj_add(out, finish);
		XJ_LIT(out, "\"");
	} else
		XJ_LIT(out, "null");
	XJ_LIT(out, "}]}\n\n");
}

/* A chunk whose delta is one string member KEY, value token V. */
static void
chunk_text(struct xlate_sse *s, struct evbuffer *out, const char *key,
    const struct json_doc *d, int v)
{
	chunk_open(s, out);
	XJ_LIT(out, "{\"");
	xj_add(out, key);
	XJ_LIT(out, "\":");
	xj_raw(out, d, v);
	XJ_LIT(out, "}");
	chunk_close(out, NULL);
}

static void
an_block_start(struct xlate_sse *s, const struct json_doc *d,
    struct evbuffer *out)
{
	int cb = json_get(d, 0, "content_block"), ty = json_get(d, cb, "type");
	int v;

	if (xj_is(d, ty, "text")) {
		s->block = BK_TEXT;
		if (!str_empty(d, v = json_get(d, cb, "text")))
			chunk_text(s, out, "content", d, v);
	} else if (xj_is(d, ty, "tool_use")) {
		v = json_get(d, cb, "name");
		if (s->info.format_tool[0] != '\0' &&
		    xj_is(d, v, s->info.format_tool)) {
			s->block = BK_FORMAT;
			return;
		}
		s->block = BK_TOOL;
		s->tool = s->ntools++;
		chunk_open(s, out);
		XJ_LIT(out, "{\"tool_calls\":[{\"index\":");
		xj_int(out, s->tool);
		XJ_LIT(out, ",\"id\":");
		xj_str_or_empty(out, d, json_get(d, cb, "id"));
		XJ_LIT(out, ",\"type\":\"function\",\"function\":{\"name\":");
		xj_str_or_empty(out, d, v);
		XJ_LIT(out, ",\"arguments\":\"\"}}]}");
		chunk_close(out, NULL);
	} else if (xj_is(d, ty, "thinking"))
		s->block = BK_THINK;
	else
		s->block = BK_OTHER;
}

static void
an_block_delta(struct xlate_sse *s, const struct json_doc *d,
    struct evbuffer *out)
{
	int dl = json_get(d, 0, "delta"), ty = json_get(d, dl, "type"), v;

	if (xj_is(d, ty, "text_delta")) {
		if (!str_empty(d, v = json_get(d, dl, "text")))
			chunk_text(s, out, "content", d, v);
	} else if (xj_is(d, ty, "input_json_delta")) {
		if (str_empty(d, v = json_get(d, dl, "partial_json")))
			return;
		if (s->block == BK_FORMAT)
			chunk_text(s, out, "content", d, v);
		else if (s->block == BK_TOOL) {
			chunk_open(s, out);
			XJ_LIT(out, "{\"tool_calls\":[{\"index\":");
			xj_int(out, s->tool);
			XJ_LIT(out, ",\"function\":{\"arguments\":");
			xj_raw(out, d, v);
			XJ_LIT(out, "}}]}");
			chunk_close(out, NULL);
		}
	} else if (xj_is(d, ty, "thinking_delta")) {
		if (!str_empty(d, v = json_get(d, dl, "thinking")))
			chunk_text(s, out, "reasoning_content", d, v);
	}
	/* signature_delta, citations_delta: nothing OpenAI's chunk holds */
}

/* The members of an Anthropic event this file reads. */
static const char *const an_keys[] = { "type", "message", "usage", "error" };
enum { AK_TYPE, AK_MESSAGE, AK_USAGE, AK_ERROR, AK_N };

static void
an_event(struct xlate_sse *s, struct json_doc *d, const char *p, size_t n,
    struct evbuffer *out)
{
	int ty, v, m[AK_N], mm[3];

	if (xj_parse(d, p, n) == -1 || d->tok[0].type != JSMN_OBJECT)
		return;
	xj_members(d, 0, an_keys, m, AK_N);
	ty = m[AK_TYPE];
	/* message_delta's usage is cumulative: the last one is the bill */
	if (xj_type(d, m[AK_USAGE]) == JV_OBJECT)
		usage_merge(&s->usage, d, m[AK_USAGE]);
	if (xj_is(d, ty, "message_start")) {
		static const char *const mk[] = { "id", "model", "usage" };

		xj_members(d, m[AK_MESSAGE], mk, mm, 3);
		keep(s->id, sizeof(s->id), d, mm[0]);
		keep(s->model, sizeof(s->model), d, mm[1]);
		s->headlen = 0;
		if (xj_type(d, mm[2]) == JV_OBJECT)
			usage_merge(&s->usage, d, mm[2]);
		s->started = 1;
		chunk_open(s, out);
		XJ_LIT(out, "{\"role\":\"assistant\",\"content\":\"\"}");
		chunk_close(out, NULL);
	} else if (xj_is(d, ty, "content_block_start"))
		an_block_start(s, d, out);
	else if (xj_is(d, ty, "content_block_delta"))
		an_block_delta(s, d, out);
	else if (xj_is(d, ty, "content_block_stop")) {
		if (s->block == BK_FORMAT)
			s->formatted = 1;
		s->block = BK_NONE;
	} else if (xj_is(d, ty, "message_delta")) {
		v = json_path(d, 0, "delta", "stop_reason", NULL);
		keep(s->stop, sizeof(s->stop), d, v);
		chunk_open(s, out);
		XJ_LIT(out, "{}");
		chunk_close(out, xm_finish_reason(s->stop, strlen(s->stop),
		    s->formatted));
	} else if (xj_is(d, ty, "message_stop")) {
		if (s->info.include_usage) {
			/* OpenAI's usage chunk: no choice, only the usage */
			chunk_head(s, out);
			XJ_LIT(out, "[],\"usage\":");
			xm_usage_openai(out, &s->usage);
			XJ_LIT(out, "}\n\n");
		}
		XJ_LIT(out, "data: [DONE]\n\n");
		s->done = 1;
	} else if (xj_is(d, ty, "error")) {
		v = m[AK_ERROR];
		XJ_LIT(out, "data: {\"error\":{\"message\":");
		xj_str_or(out, d, json_get(d, v, "message"), STREAM_FAILED);
		XJ_LIT(out, ",\"type\":");
		xj_str_or(out, d, json_get(d, v, "type"), "\"api_error\"");
		XJ_LIT(out, ",\"param\":null,\"code\":null}}\n\n");
		s->done = 1;
	}
	/* ping: nothing to say */
}

/* ---- OpenAI chunks -> Anthropic events ---- */

static void
ev_open(struct evbuffer *out, const char *name)
{
	XJ_LIT(out, "event: ");
	xj_add(out, name);
	XJ_LIT(out, "\ndata: {\"type\":\"");
	xj_add(out, name);
	XJ_LIT(out, "\"");
}

static void
oa_close_block(struct xlate_sse *s, struct evbuffer *out)
{
	if (s->block == BK_NONE)
		return;
	ev_open(out, "content_block_stop");
	XJ_LIT(out, ",\"index\":");
	xj_int(out, s->nblocks - 1);
	XJ_LIT(out, "}\n\n");
	s->block = BK_NONE;
}

/* Open a block of KIND unless one is open; a tool's ID and NAME tokens. */
static void
oa_open_block(struct xlate_sse *s, int kind, const struct json_doc *d,
    int id, int name, struct evbuffer *out)
{
	if (s->block == kind && kind != BK_TOOL)
		return;
	oa_close_block(s, out);
	ev_open(out, "content_block_start");
	XJ_LIT(out, ",\"index\":");
	xj_int(out, s->nblocks++);
	XJ_LIT(out, ",\"content_block\":");
	switch (kind) {
	case BK_TEXT:
		XJ_LIT(out, "{\"type\":\"text\",\"text\":\"\"}");
		break;
	case BK_THINK:
		XJ_LIT(out, "{\"type\":\"thinking\",\"thinking\":\"\","
		    "\"signature\":\"\"}");
		break;
	default:
		XJ_LIT(out, "{\"type\":\"tool_use\",\"id\":");
		xj_str_or_empty(out, d, id);
		XJ_LIT(out, ",\"name\":");
		xj_str_or_empty(out, d, name);
		XJ_LIT(out, ",\"input\":{}}");
		break;
	}
	XJ_LIT(out, "}\n\n");
	s->block = kind;
}

/* A content_block_delta of TYPE whose KEY is string token V. */
static void
oa_delta(struct xlate_sse *s, struct evbuffer *out, const char *type,
    const char *key, const struct json_doc *d, int v)
{
	ev_open(out, "content_block_delta");
	XJ_LIT(out, ",\"index\":");
	xj_int(out, s->nblocks - 1);
	XJ_LIT(out, ",\"delta\":{\"type\":\"");
	xj_add(out, type);
	XJ_LIT(out, "\",\"");
	xj_add(out, key);
	XJ_LIT(out, "\":");
	xj_raw(out, d, v);
	XJ_LIT(out, "}}\n\n");
}

static void
oa_start(struct xlate_sse *s, struct evbuffer *out)
{
	ev_open(out, "message_start");
	XJ_LIT(out, ",\"message\":{\"id\":\"");
	evbuffer_add(out, s->id, strlen(s->id));
	XJ_LIT(out, "\",\"type\":\"message\",\"role\":\"assistant\","
	    "\"model\":\"");
	evbuffer_add(out, s->model, strlen(s->model));
	XJ_LIT(out, "\",\"content\":[],\"stop_reason\":null,"
	    "\"stop_sequence\":null,\"usage\":");
	/* OpenAI tells the input's size only at the end: message_delta */
	xm_usage_anthropic(out, &s->usage);
	XJ_LIT(out, "}}\n\n");
	s->started = 1;
}

/* [DONE]: the stop reason and the whole usage, then the end. */
static void
oa_finish(struct xlate_sse *s, struct evbuffer *out)
{
	if (s->done)
		return;
	if (!s->started)
		oa_start(s, out);
	oa_close_block(s, out);
	ev_open(out, "message_delta");
	evbuffer_add_printf(out, ",\"delta\":{\"stop_reason\":\"%s\","
	    "\"stop_sequence\":null},\"usage\":", s->stop[0] != '\0' ?
	    s->stop : "end_turn");
	xm_usage_anthropic(out, &s->usage);
	XJ_LIT(out, "}\n\n");
	ev_open(out, "message_stop");
	XJ_LIT(out, "}\n\n");
	s->done = 1;
}

static void
oa_tool_calls(struct xlate_sse *s, const struct json_doc *d, int calls,
    struct evbuffer *out)
{
	struct xj_iter	 it;
	int		 tc, fn, v;
	int64_t		 idx;

	xj_iter(&it, d, calls);
	while (xj_elem(&it, d, &tc)) {
		fn = json_get(d, tc, "function");
		if (json_int(d, json_get(d, tc, "index"), &idx) == -1)
			idx = s->block == BK_TOOL ? s->tool : s->ntools;
		v = json_get(d, tc, "id");
		/*
		 * A new call: another index, or an id other than the open
		 * call's.  OpenAI names the id on a call's first piece only;
		 * a server that repeats it on the later pieces of the same
		 * call must not split it into blocks.
		 */
		if (s->block != BK_TOOL || idx != s->tool ||
		    (!str_empty(d, v) && !xj_is(d, v, s->tool_id))) {
			oa_open_block(s, BK_TOOL, d, v, json_get(d, fn, "name"),
			    out);
			s->tool = (int)idx;
			s->ntools++;
			keep(s->tool_id, sizeof(s->tool_id), d, v);
		}
		if (!str_empty(d, v = json_get(d, fn, "arguments")))
			oa_delta(s, out, "input_json_delta", "partial_json", d,
			    v);
	}
}

static void
oa_event(struct xlate_sse *s, struct json_doc *d, const char *p, size_t n,
    struct evbuffer *out)
{
	static const char *const top[] = { "error", "id", "model", "choices",
	    "usage" };
	static const char *const dk[] = { "reasoning_content", "reasoning",
	    "content", "tool_calls" };
	struct xj_iter	 it;
	int		 c, dl, v, m[5], dm[4];

	if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
		oa_finish(s, out);
		return;
	}
	if (s->done)
		return;
	if (xj_parse(d, p, n) == -1 || d->tok[0].type != JSMN_OBJECT)
		return;
	xj_members(d, 0, top, m, 5);
	if (xj_type(d, m[4]) == JV_OBJECT)
		usage_merge(&s->usage, d, m[4]);
	if (xj_type(d, v = m[0]) == JV_OBJECT) {
		ev_open(out, "error");
		XJ_LIT(out, ",\"error\":{\"type\":\"api_error\",\"message\":");
		xj_str_or(out, d, json_get(d, v, "message"), STREAM_FAILED);
		XJ_LIT(out, "}}\n\n");
		s->done = 1;
		return;
	}
	if (!s->started) {
		keep(s->id, sizeof(s->id), d, m[1]);
		keep(s->model, sizeof(s->model), d, m[2]);
		oa_start(s, out);
	}
	xj_iter(&it, d, m[3]);
	if (!xj_elem(&it, d, &c))
		return;			/* the usage chunk */
	dl = json_get(d, c, "delta");
	xj_members(d, dl, dk, dm, 4);
	/* reasoning_content (DeepSeek, vLLM) or reasoning (others),
	 * whichever holds text: a server may send the other as null */
	v = !str_empty(d, dm[0]) ? dm[0] : dm[1];
	if (!str_empty(d, v)) {
		oa_open_block(s, BK_THINK, d, -1, -1, out);
		oa_delta(s, out, "thinking_delta", "thinking", d, v);
	}
	if (!str_empty(d, v = dm[2])) {
		oa_open_block(s, BK_TEXT, d, -1, -1, out);
		oa_delta(s, out, "text_delta", "text", d, v);
	}
	if (xj_type(d, v = dm[3]) == JV_ARRAY)
		oa_tool_calls(s, d, v, out);
	if (xj_type(d, v = json_get(d, c, "finish_reason")) == JV_STRING) {
		oa_close_block(s, out);
		snprintf(s->stop, sizeof(s->stop), "%s", xm_stop_reason(d->js +
		    d->tok[v].start, (size_t)(d->tok[v].end - d->tok[v].start)));
	}
}

/* ---- the SSE reader ---- */

void
xlate_sse_event(struct xlate_sse *s, struct json_doc *d, const char *data,
    size_t len, struct evbuffer *out)
{
	if (len == 0)
		return;			/* "data:" alone: nothing to read */
	if (s->to_openai)
		an_event(s, d, data, len, out);
	else
		oa_event(s, d, data, len, out);
}

/* One complete line of the stream, its newline cut. */
static int
line_end(struct xlate_sse *s, struct json_doc *d, struct evbuffer *out)
{
	const char	*l = s->line;
	size_t		 n = s->llen;

	s->llen = 0;
	if (n > 0 && l[n - 1] == '\r')
		n--;
	if (n == 0) {
		/* a blank line ends the event */
		if (s->has_data)
			xlate_sse_event(s, d, s->data, s->dlen, out);
		s->has_data = 0;
		s->dlen = 0;
		return 0;
	}
	if (n < 5 || memcmp(l, "data:", 5) != 0)
		return 0;		/* event:, id:, retry:, a comment */
	l += 5;
	n -= 5;
	if (n > 0 && *l == ' ')
		l++, n--;
	if (s->has_data && append(&s->data, &s->dlen, &s->dcap, "\n", 1) ==
	    -1)
		return -1;
	s->has_data = 1;
	return append(&s->data, &s->dlen, &s->dcap, l, n);
}

int
xlate_sse_feed(struct xlate_sse *s, struct json_doc *d, const char *p,
    size_t n, struct evbuffer *out)
{
	const char	*nl;
	size_t		 k;

	while (n > 0) {
		nl = memchr(p, '\n', n);
		k = nl != NULL ? (size_t)(nl - p) : n;
		if (append(&s->line, &s->llen, &s->lcap, p, k) == -1)
			return -1;
		if (nl == NULL)
			return 0;
		if (line_end(s, d, out) == -1)
			return -1;
		p += k + 1;
		n -= k + 1;
	}
	return 0;
}

void
xlate_sse_end(struct xlate_sse *s, struct json_doc *d, struct evbuffer *out)
{
	/* a last line, or a last event, without its end */
	if (s->llen > 0)
		(void)line_end(s, d, out);
	if (s->has_data) {
		xlate_sse_event(s, d, s->data, s->dlen, out);
		s->has_data = 0;
		s->dlen = 0;
	}
	/* OpenAI-compatible servers that end without [DONE] */
	if (!s->to_openai && s->started)
		oa_finish(s, out);
}
