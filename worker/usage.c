/*
 * usage.c - find the usage object in whatever the upstream sends back.
 *
 * Non-streamed bodies: a copy of up to USAGE_BODY_MAX bytes is parsed when
 * the body ends; past that (a large embeddings batch), only the last
 * USAGE_TAIL bytes are kept and the usage object is found from the end,
 * where every provider puts it.  Streams: each SSE line is assembled as it
 * passes and only "data:" lines that mention "usage" are parsed, so the
 * per-event cost is a pass or two of memchr.  Shapes:
 *   OpenAI:     usage.{prompt_tokens, completion_tokens,
 *               prompt_tokens_details.cached_tokens}
 *   Responses:  usage.{input_tokens, output_tokens,
 *               input_tokens_details.cached_tokens}, streamed inside
 *               response.completed's "response"
 *   Anthropic:  usage.{input_tokens, output_tokens, cache_read_input_tokens,
 *               cache_creation_input_tokens}, streamed in message_start's
 *               "message" and in message_delta
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "common/json_scan.h"
#include "worker/usage.h"

#define USAGE_BODY_MAX	(1024 * 1024)
#define USAGE_TAIL	(64 * 1024)
#define USAGE_LINE_MAX	(1024 * 1024)

static void
take(const struct json_doc *d, int tok, int64_t *dst, int *found)
{
	int64_t v;

	if (json_int(d, tok, &v) == 0 && v >= 0) {
		*dst = v;
		*found = 1;
	}
}

/* The members of a usage object merge_usage reads. */
enum {
	U_PROMPT, U_COMPLETION, U_INPUT, U_OUTPUT, U_PROMPT_DET, U_INPUT_DET,
	U_CACHE_READ, U_CACHE_CREATE, U_CACHE_CREATION, U_COMPLETION_DET,
	U_OUTPUT_DET, U_N
};

static const struct {
	const char	*key;
	size_t		 len;
} ukeys[U_N] = {
	{ "prompt_tokens", 13 }, { "completion_tokens", 17 },
	{ "input_tokens", 12 }, { "output_tokens", 13 },
	{ "prompt_tokens_details", 21 }, { "input_tokens_details", 20 },
	{ "cache_read_input_tokens", 23 },
	{ "cache_creation_input_tokens", 27 }, { "cache_creation", 14 },
	{ "completion_tokens_details", 25 }, { "output_tokens_details", 21 },
};

/*
 * The value token of each of ukeys directly in object U, or -1: what
 * json_get finds for it (the first such member), in one walk over the
 * members instead of one per key.
 */
static void
usage_members(const struct json_doc *d, int u, int v[U_N])
{
	int	 i, k, end = d->tok[u].end;

	for (k = 0; k < U_N; k++)
		v[k] = -1;
	for (i = u + 1; i < d->ntok && d->tok[i].start < end; i++) {
		const jsmntok_t	*t = &d->tok[i];
		size_t		 n = (size_t)(t->end - t->start);

		if (t->parent != u || t->type != JSMN_STRING)
			continue;
		for (k = 0; k < U_N; k++)
			if (v[k] == -1 && n == ukeys[k].len &&
			    memcmp(d->js + t->start, ukeys[k].key, n) == 0)
				v[k] = i + 1 < d->ntok ? i + 1 : -1;
		/* skip the value's subtree */
		i = json_skip(d, i + 1) - 1;
	}
}

void
usage_merge(struct usage_acc *a, const struct json_doc *d, int u)
{
	int	 found = 0, det, m[U_N];
	int64_t	 v;

	if (!json_is_obj(d, u))
		return;
	usage_members(d, u, m);
	take(d, m[U_PROMPT], &a->input, &found);
	take(d, m[U_COMPLETION], &a->output, &found);
	take(d, m[U_INPUT], &a->input, &found);
	take(d, m[U_OUTPUT], &a->output, &found);
	if ((det = m[U_PROMPT_DET]) >= 0 || (det = m[U_INPUT_DET]) >= 0) {
		if (json_int(d, json_get(d, det, "cached_tokens"), &v) == 0 &&
		    v >= 0)
			a->cache_read = v;
	}
	if (json_int(d, m[U_CACHE_READ], &v) == 0 && v >= 0) {
		a->cache_read = v;
		a->anthropic = 1;
	}
	if (json_int(d, m[U_CACHE_CREATE], &v) == 0 && v >= 0) {
		a->cache_create = v;
		a->anthropic = 1;
	}
	/* Anthropic splits the writes by cache lifetime, priced apart */
	if ((det = m[U_CACHE_CREATION]) >= 0 &&
	    json_int(d, json_get(d, det, "ephemeral_1h_input_tokens"),
	    &v) == 0 && v >= 0)
		a->cache_1h = v;
	if ((det = m[U_COMPLETION_DET]) >= 0 ||
	    (det = m[U_OUTPUT_DET]) >= 0) {
		if (json_int(d, json_get(d, det, "reasoning_tokens"),
		    &v) == 0 && v >= 0) {
			a->reasoning = v;
			a->reasoning_seen = 1;
		}
	}
	if (found)
		a->seen = 1;
}

/* The model the upstream says it served, from a member span. */
static void
take_model(struct usage_acc *a, const char *js, const struct json_field *f)
{
	size_t n = f->end - f->start, i;

	if (f->type != JV_STRING || n == 0 || n >= sizeof(a->model))
		return;
	for (i = 0; i < n; i++)	/* printable only: it goes into a row */
		if ((unsigned char)js[f->start + i] < 0x21 ||
		    (unsigned char)js[f->start + i] > 0x7e ||
		    js[f->start + i] == '\\')
			return;
	memcpy(a->model, js + f->start, n);
	a->model[n] = '\0';
}

/* Merge the usage object at JS (LEN bytes, one object): jsmn on it alone. */
static void
merge_span(struct usage_acc *a, struct json_doc *d, const char *js, size_t len)
{
	if (json_parse(d, js, len) == 0)
		usage_merge(a, d, 0);
}

/*
 * The top level is scanned, not tokenized: an answer is mostly content
 * sluice does not read, and only the small usage object goes to jsmn.
 */
void
usage_from_json(struct usage_acc *a, struct json_doc *d, const char *js,
    size_t len)
{
	struct json_field	 f[5] = {
		{ .key = "usage" }, { .key = "message" }, { .key = "response" },
		{ .key = "type" }, { .key = "model" },
	};
	int			 i;

	if (json_scan_top(js, len, f, 5) == -1)
		return;
	if (f[0].type == JV_OBJECT)
		merge_span(a, d, js + f[0].start, f[0].end - f[0].start);
	take_model(a, js, &f[4]);
	/* Anthropic message_start, Responses API response.* events */
	for (i = 1; i <= 2; i++) {
		struct json_field u[2] = { { .key = "usage" },
		    { .key = "model" } };
		const char *o = js + f[i].start;

		if (f[i].type != JV_OBJECT || json_scan_top(o,
		    f[i].end - f[i].start, u, 2) == -1)
			continue;
		take_model(a, o, &u[1]);
		if (u[0].type == JV_OBJECT)
			merge_span(a, d, o + u[0].start, u[0].end - u[0].start);
	}
	if (f[3].type == JV_STRING && f[3].end - f[3].start == 13 &&
	    (memcmp(js + f[3].start, "message_start", 13) == 0 ||
	    memcmp(js + f[3].start, "message_delta", 13) == 0))
		a->anthropic = 1;
}

void
usage_tap_reset(struct usage_tap *t, int sse)
{
	t->len = 0;
	t->sse = sse ? 1 : 0;
	t->truncated = 0;
	t->skip_line = 0;
	t->long_data = 0;
}

void
usage_tap_free(struct usage_tap *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

static int
tap_append(struct usage_tap *t, const char *p, size_t n, size_t max)
{
	if (n == 0)
		return 0;
	if (t->len + n > t->cap) {
		size_t	 ncap = t->cap ? t->cap : 4096;
		char	*nb;

		while (ncap < t->len + n)
			ncap *= 2;
		if (ncap > max)
			ncap = max;
		if (t->len + n > ncap)
			return -1;
		if ((nb = realloc(t->buf, ncap)) == NULL)
			return -1;
		t->buf = nb;
		t->cap = ncap;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
	return 0;
}

/*
 * The first "\":" from Q to END, or NULL.  glibc's memmem sets up a
 * table on every call, which cost more than the search on an event's
 * couple of hundred bytes, a dozen calls an event: memchr for the colon,
 * rarer than the quote, then the byte before it.
 */
static const char *
next_sep(const char *q, const char *end)
{
	const char *c;

	if (end - q < 2)
		return NULL;
	for (c = q + 1; c < end && (c = memchr(c, ':', (size_t)(end - c))) !=
	    NULL; c++)
		if (c[-1] == '"')
			return c - 1;
	return NULL;
}

/* The first "\"usage\"" from Q to END, or NULL: memchr for its 'u'. */
static const char *
find_usage_key(const char *q, const char *end)
{
	const char *c;

	if (end - q < 7)
		return NULL;
	for (c = q + 1; end - c >= 6 && (c = memchr(c, 'u',
	    (size_t)(end - c - 5))) != NULL; c++)
		if (c[-1] == '"' && memcmp(c, "usage\"", 6) == 0)
			return c - 1;
	return NULL;
}

/* Does the key that ends at Q (its closing quote; P the event's start)
 * carry generated text?  Told apart by its last letter first. */
static int
text_key(const char *p, const char *q)
{
#define KEY_IS(k) ((size_t)(q - p) >= sizeof(k) - 1 && \
	memcmp(q - (sizeof(k) - 1), k, sizeof(k) - 1) == 0)
	if (q == p)
		return 0;
	switch (q[-1]) {
	case 't':
		return KEY_IS("\"content") || KEY_IS("\"text");
	case 's':
		return KEY_IS("\"arguments");
	case 'n':
		return KEY_IS("\"partial_json");
	case 'g':
		return KEY_IS("\"thinking");
	case 'l':
		return KEY_IS("\"refusal");
	default:
		return 0;
	}
#undef KEY_IS
}

/*
 * The bytes of generated text in one event: the string values of the
 * keys that carry it in OpenAI's chunks ("content", "arguments",
 * "refusal") and Anthropic's deltas ("text", "partial_json",
 * "thinking"), escapes counted as they stand.  Only for an estimate when
 * an answer never reports usage; one search per key-value separator.
 */
static size_t
text_bytes(const char *p, size_t n)
{
	const char	*end = p + n, *q = p, *s;
	size_t		 total = 0;
	int		 text;

	while ((q = next_sep(q, end)) != NULL) {
		text = text_key(p, q);
		q += 2;
		if (!text)
			continue;
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		if (q >= end || *q != '"')
			continue;
		for (s = ++q; q < end && *q != '"'; q++)
			if (*q == '\\' && q + 1 < end)
				q++;
		total += (size_t)(q - s);
	}
	return total;
}

/*
 * Whether the "usage" key at U (the line ends at END) is the line's only
 * one and is null: include_usage puts "usage":null on every chunk, and
 * parsing it would find nothing.
 */
static int
usage_null(const char *u, const char *end)
{
	const char *q = u + 7;

	while (q < end && (*q == ' ' || *q == '\t'))
		q++;
	if (q >= end || *q++ != ':')
		return 0;
	while (q < end && (*q == ' ' || *q == '\t'))
		q++;
	if ((size_t)(end - q) < 4 || memcmp(q, "null", 4) != 0)
		return 0;
	return find_usage_key(q, end) == NULL;
}

/* One complete SSE line (without its newline). */
static void
sse_line(struct usage_acc *a, struct json_doc *d, const char *p, size_t n)
{
	const char	*u;

	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n < 5 || memcmp(p, "data:", 5) != 0)
		return;
	p += 5;
	n -= 5;
	/* a chunk may carry text and "usage":null (include_usage): count
	 * its text all the same, for a stream cut before its usage came */
	a->text_bytes += text_bytes(p, n);
	if ((u = find_usage_key(p, p + n)) == NULL || usage_null(u, p + n))
		return;
	usage_from_json(a, d, p, n);
}

/*
 * Past USAGE_BODY_MAX: keep only the last USAGE_TAIL bytes of the body,
 * where every provider puts its usage object.
 */
static void
tap_keep_tail(struct usage_tap *t, const char *p, size_t n)
{
	if (t->cap < USAGE_TAIL) {
		char *nb = realloc(t->buf, USAGE_TAIL);

		if (nb == NULL) {
			t->len = 0;
			return;
		}
		t->buf = nb;
		t->cap = USAGE_TAIL;
	}
	if (!t->truncated) {
		t->truncated = 1;
		if (t->len > USAGE_TAIL) {
			memmove(t->buf, t->buf + t->len - USAGE_TAIL, USAGE_TAIL);
			t->len = USAGE_TAIL;
		}
	}
	if (n >= USAGE_TAIL) {
		memcpy(t->buf, p + n - USAGE_TAIL, USAGE_TAIL);
		t->len = USAGE_TAIL;
		return;
	}
	if (t->len + n > USAGE_TAIL) {
		size_t drop = t->len + n - USAGE_TAIL;

		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static void	 usage_from_tail(struct usage_acc *, struct json_doc *,
		    const char *, size_t);

/* The SSE line assembled in T is complete. */
static void
sse_line_end(struct usage_tap *t, struct usage_acc *a, struct json_doc *d)
{
	if (!t->skip_line)
		sse_line(a, d, t->buf, t->len);
	else if (t->long_data)
		usage_from_tail(a, d, t->buf, t->len);
	t->len = 0;
	t->skip_line = 0;
	t->long_data = 0;
	t->truncated = 0;
}

void
usage_tap_feed_mem(struct usage_tap *t, struct usage_acc *a,
    struct json_doc *d, const char *p, size_t n)
{
	if (!t->sse) {
		if (!t->truncated && tap_append(t, p, n, USAGE_BODY_MAX) == 0)
			return;
		tap_keep_tail(t, p, n);
		return;
	}
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t	    k = nl ? (size_t)(nl - p) : n;

		if (t->skip_line)
			tap_keep_tail(t, p, k);
		else if (tap_append(t, p, k, USAGE_LINE_MAX) == -1) {
			/*
			 * A line longer than USAGE_LINE_MAX: Responses'
			 * response.completed echoes the request's
			 * instructions before its usage.  Keep the line's
			 * tail, where the usage object is.
			 */
			t->skip_line = 1;
			t->long_data = t->len >= 5 &&
			    memcmp(t->buf, "data:", 5) == 0;
			tap_keep_tail(t, p, k);
		}
		if (nl == NULL)
			return;
		sse_line_end(t, a, d);
		p += k + 1;
		n -= k + 1;
	}
}

void
usage_tap_feed(struct usage_tap *t, struct usage_acc *a, struct json_doc *d,
    struct evbuffer *data, long len)
{
	struct evbuffer_iovec	 v[16];
	struct evbuffer_ptr	 pos;
	int			 i, nv;

	size_t left = len < 0 ? evbuffer_get_length(data) : (size_t)len;

	evbuffer_ptr_set(data, &pos, 0, EVBUFFER_PTR_SET);
	while (left > 0) {
		nv = evbuffer_peek(data, (ev_ssize_t)left, &pos, v, 16);
		if (nv <= 0)
			return;
		for (i = 0; i < nv && i < 16 && left > 0; i++) {
			size_t k = v[i].iov_len < left ? v[i].iov_len : left;

			usage_tap_feed_mem(t, a, d, v[i].iov_base, k);
			left -= k;
			if (evbuffer_ptr_set(data, &pos, k,
			    EVBUFFER_PTR_ADD) == -1)
				return;
		}
	}
}

/* In a body tail, the last "usage" key whose value is an object. */
static void
usage_from_tail(struct usage_acc *a, struct json_doc *d, const char *p,
    size_t n)
{
	const char	*u, *s, *end = p + n;
	size_t		 i;
	int		 depth, instr, esc;

	for (u = end; u > p; u--) {
		if ((size_t)(end - u) < 7 || memcmp(u, "\"usage\"", 7) != 0)
			continue;
		for (s = u + 7; s < end && (*s == ' ' || *s == ':' ||
		    *s == '\t' || *s == '\n' || *s == '\r'); s++)
			;
		if (s >= end || *s != '{')
			continue;
		depth = instr = esc = 0;
		for (i = 0; s + i < end; i++) {
			char ch = s[i];

			if (instr) {
				if (esc)
					esc = 0;
				else if (ch == '\\')
					esc = 1;
				else if (ch == '"')
					instr = 0;
				continue;
			}
			if (ch == '"')
				instr = 1;
			else if (ch == '{')
				depth++;
			else if (ch == '}' && --depth == 0) {
				if (json_parse(d, s, i + 1) == 0)
					usage_merge(a, d, 0);
				return;
			}
		}
	}
}

void
usage_tap_end(struct usage_tap *t, struct usage_acc *a, struct json_doc *d)
{
	if (t->sse) {
		/* a last line without its newline */
		if (t->len > 0)
			sse_line_end(t, a, d);
	} else if (t->truncated)
		usage_from_tail(a, d, t->buf, t->len);
	else if (t->len > 0)
		usage_from_json(a, d, t->buf, t->len);
	t->len = 0;
}

int64_t
usage_cost(const struct cfg_price *p, int64_t input, int64_t cached,
    int64_t w5m, int64_t w1h, int64_t output)
{
	int64_t	 cached_price = p->cached >= 0 ? p->cached : p->input;
	int64_t	 plain;
	__int128 x;

	if (cached > input)
		cached = input;
	if (w5m > input - cached)
		w5m = input - cached;
	if (w1h > input - cached - w5m)
		w1h = input - cached - w5m;
	plain = input - cached - w5m - w1h;
	/* prices are micro-USD per 1M tokens: sum first, round once */
	x = (__int128)plain * p->input + (__int128)cached * cached_price +
	    (__int128)w5m * p->cache_write + (__int128)w1h * p->cache_write_1h +
	    (__int128)output * p->output;
	return (int64_t)((x + 500000) / 1000000);
}

void
usage_estimate(struct usage_acc *a, size_t request_bytes)
{
	if (a->seen)
		return;
	a->input = (int64_t)((request_bytes + USAGE_BYTES_PER_TOKEN - 1) /
	    USAGE_BYTES_PER_TOKEN);
	a->output = (int64_t)((a->text_bytes + USAGE_BYTES_PER_TOKEN - 1) /
	    USAGE_BYTES_PER_TOKEN);
	a->cache_read = a->cache_create = a->cache_1h = a->reasoning = 0;
	a->anthropic = 0;
	a->seen = 1;
	a->estimated = 1;
}

void
usage_to_event(const struct usage_acc *a, const struct cfg_price *p,
    struct usage_event *ev)
{
	int64_t input, w1h;

	memcpy(ev->served_model, a->model, sizeof(ev->served_model));
	if (!a->seen) {
		ev->usage_source = USAGE_NONE;
		ev->prompt_tokens = ev->completion_tokens = -1;
		ev->cached_tokens = ev->cost_micro_usd = -1;
		ev->cache_write_5m_tokens = ev->cache_write_1h_tokens = -1;
		ev->reasoning_tokens = -1;
		return;
	}
	/* Anthropic's input_tokens leaves out the cached parts; OpenAI's not */
	input = a->input;
	if (a->anthropic)
		input += a->cache_read + a->cache_create;
	w1h = a->cache_1h < a->cache_create ? a->cache_1h : a->cache_create;
	ev->usage_source = a->estimated ? USAGE_ESTIMATED : USAGE_UPSTREAM;
	ev->prompt_tokens = input;
	ev->completion_tokens = a->output;
	ev->cached_tokens = a->cache_read;
	ev->cache_write_5m_tokens = a->cache_create - w1h;
	ev->cache_write_1h_tokens = w1h;
	ev->reasoning_tokens = a->reasoning_seen ? a->reasoning : -1;
	ev->cost_micro_usd = p != NULL ? usage_cost(p, input, a->cache_read,
	    a->cache_create - w1h, w1h, a->output) : -1;
}
