/*
 * xlate_json.c - token walks and JSON writing for the translators.
 *
 * Values are copied as they stand wherever both formats give a field
 * the same JSON type: a string's escapes stay untouched, so that a
 * translation never changes a character of the text it carries, and
 * most of a request body is copied rather than decoded and encoded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/json_strict.h"
#include "worker/reply.h"
#include "worker/xlate_json.h"

#define XJ_MAX_DEPTH	128	/* as json_parse's */

/* A fresh token at D's end, the array grown as json_parse grows it. */
static jsmntok_t *
tok_new(struct json_doc *d)
{
	jsmntok_t	*t;
	int		 ncap;

	if (d->ntok == d->cap) {
		ncap = d->cap > 0 ? d->cap * 2 : 256;
		if (d->max_tokens > 0 && ncap > d->max_tokens)
			ncap = d->max_tokens;
		if (ncap <= d->cap)
			return NULL;
		if ((t = realloc(d->tok, (size_t)ncap * sizeof(*t))) == NULL)
			return NULL;
		d->tok = t;
		d->cap = ncap;
	}
	t = &d->tok[d->ntok++];
	t->size = 0;
	return t;
}

/* JS[I] is '"': the index of its closing quote, or LEN. */
static size_t
str_close(const char *js, size_t len, size_t i)
{
	const char	*q;
	size_t		 bs;

	for (i++; i < len; i = (size_t)(q - js) + 1) {
		if ((q = memchr(js + i, '"', len - i)) == NULL)
			return len;
		for (bs = 0; q - bs > js + i && q[-1 - (ptrdiff_t)bs] == '\\';
		    bs++)
			;
		if (bs % 2 == 0)
			return (size_t)(q - js);
	}
	return len;
}

int
xj_parse(struct json_doc *d, const char *js, size_t len)
{
	int		 stack[XJ_MAX_DEPTH], depth = 0, key = -1, up, k;
	int		 tops = 0;
	size_t		 i, e;
	jsmntok_t	*t;
	char		 c;

	d->js = js;
	d->len = len;
	d->ntok = 0;
	for (i = 0; i < len; i++) {
		c = js[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (c == ':') {
			/* the value attaches to the key just read */
			if (depth == 0 || d->ntok == 0 ||
			    d->tok[d->ntok - 1].type != JSMN_STRING)
				return -1;
			key = d->ntok - 1;
			continue;
		}
		if (c == ',') {
			key = -1;
			continue;
		}
		if (c == '}' || c == ']') {
			if (depth == 0 || d->tok[stack[depth - 1]].type !=
			    (c == '}' ? JSMN_OBJECT : JSMN_ARRAY))
				return -1;
			d->tok[stack[--depth]].end = (int)i + 1;
			key = -1;
			continue;
		}
		/* a value, or a key: what it hangs from */
		up = key >= 0 ? key : depth > 0 ? stack[depth - 1] : -1;
		if (up < 0 && tops++ > 0)
			return -1;		/* a second top-level value */
		if (up >= 0 && key < 0 && d->tok[up].type == JSMN_OBJECT &&
		    c != '"')
			return -1;		/* only a string is a key */
		if ((t = tok_new(d)) == NULL)
			return -1;
		k = d->ntok - 1;
		t->parent = up;
		if (up >= 0)
			d->tok[up].size++;
		key = -1;
		if (c == '{' || c == '[') {
			if (depth == XJ_MAX_DEPTH)
				return -1;
			t->type = c == '{' ? JSMN_OBJECT : JSMN_ARRAY;
			t->start = (int)i;
			t->end = -1;
			stack[depth++] = k;
		} else if (c == '"') {
			if ((e = str_close(js, len, i)) == len)
				return -1;
			t->type = JSMN_STRING;
			t->start = (int)i + 1;
			t->end = (int)e;
			i = e;
		} else {
			for (e = i; e < len && js[e] != ',' && js[e] != '}' &&
			    js[e] != ']' && js[e] != ' ' && js[e] != '\t' &&
			    js[e] != '\n' && js[e] != '\r' && js[e] != ':';
			    e++)
				;
			t->type = JSMN_PRIMITIVE;
			t->start = (int)i;
			t->end = (int)e;
			i = e - 1;
		}
	}
	if (depth != 0 || d->ntok == 0 || d->tok[0].type == JSMN_STRING ||
	    d->tok[0].type == JSMN_PRIMITIVE) {
		d->ntok = 0;
		return -1;
	}
	return 0;
}

void
xj_iter(struct xj_iter *it, const struct json_doc *d, int i)
{
	it->next = i + 1;
	it->left = 0;
	if (i >= 0 && i < d->ntok && (d->tok[i].type == JSMN_OBJECT ||
	    d->tok[i].type == JSMN_ARRAY))
		it->left = d->tok[i].size;
}

int
xj_member(struct xj_iter *it, const struct json_doc *d, int *key, int *val)
{
	if (it->left <= 0 || it->next + 1 >= d->ntok)
		return 0;
	*key = it->next;
	*val = it->next + 1;
	it->next = json_skip(d, *val);
	it->left--;
	return 1;
}

int
xj_elem(struct xj_iter *it, const struct json_doc *d, int *elem)
{
	if (it->left <= 0 || it->next >= d->ntok)
		return 0;
	*elem = it->next;
	it->next = json_skip(d, *elem);
	it->left--;
	return 1;
}

void
xj_members(const struct json_doc *d, int obj, const char *const *keys,
    int *vals, int n)
{
	struct xj_iter	 it;
	int		 k, v, i, left = n;

	for (i = 0; i < n; i++)
		vals[i] = -1;
	if (xj_type(d, obj) != JV_OBJECT)
		return;
	xj_iter(&it, d, obj);
	while (left > 0 && xj_member(&it, d, &k, &v))
		for (i = 0; i < n; i++)
			if (vals[i] < 0 && xj_is(d, k, keys[i])) {
				vals[i] = v;
				left--;
				break;
			}
}

enum json_vtype
xj_type(const struct json_doc *d, int i)
{
	char ch;

	if (i < 0 || i >= d->ntok)
		return JV_NONE;
	switch (d->tok[i].type) {
	case JSMN_OBJECT:
		return JV_OBJECT;
	case JSMN_ARRAY:
		return JV_ARRAY;
	case JSMN_STRING:
		return JV_STRING;
	default:
		break;
	}
	ch = d->js[d->tok[i].start];
	if (ch == 't')
		return JV_TRUE;
	if (ch == 'f')
		return JV_FALSE;
	if (ch == 'n')
		return JV_NULL;
	return JV_NUMBER;
}

int
xj_is(const struct json_doc *d, int i, const char *s)
{
	return json_str_eq(d, i, s);
}

int
xj_is_count(const struct json_doc *d, int i)
{
	int k;

	if (xj_type(d, i) != JV_NUMBER)
		return 0;
	for (k = d->tok[i].start; k < d->tok[i].end; k++)
		if (d->js[k] < '0' || d->js[k] > '9')
			return 0;
	return 1;
}

void
xj_raw(struct evbuffer *b, const struct json_doc *d, int i)
{
	const jsmntok_t *t = &d->tok[i];

	if (t->type == JSMN_STRING)
		evbuffer_add(b, d->js + t->start - 1,
		    (size_t)(t->end - t->start) + 2);
	else
		evbuffer_add(b, d->js + t->start, (size_t)(t->end - t->start));
}

void
xj_str_or(struct evbuffer *b, const struct json_doc *d, int i,
    const char *dflt)
{
	if (xj_type(d, i) == JV_STRING)
		xj_raw(b, d, i);
	else
		evbuffer_add(b, dflt, strlen(dflt));
}

void
xj_inner(struct evbuffer *b, const struct json_doc *d, int i)
{
	evbuffer_add(b, d->js + d->tok[i].start,
	    (size_t)(d->tok[i].end - d->tok[i].start));
}

void
xj_str(struct evbuffer *b, const char *s)
{
	xj_quote(b, s, strlen(s));
}

void
xj_quote(struct evbuffer *b, const char *p, size_t n)
{
	evbuffer_add(b, "\"", 1);
	reply_json_escape_n(b, p, n);
	evbuffer_add(b, "\"", 1);
}

/* Digits by hand: a stream writes a number or two per event. */
void
xj_int(struct evbuffer *b, int64_t v)
{
	char		 t[24];
	int		 n = (int)sizeof(t);
	uint64_t	 u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	do {
		t[--n] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		t[--n] = '-';
	evbuffer_add(b, t + n, sizeof(t) - (size_t)n);
}

void
xj_add(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, s, strlen(s));
}

static int
hex4(const char *p, unsigned *v)
{
	int i;

	*v = 0;
	for (i = 0; i < 4; i++) {
		char c = p[i];

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static void
put_utf8(struct evbuffer *b, unsigned cp)
{
	unsigned char	 u[4];
	size_t		 n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	evbuffer_add(b, u, n);
}

int
xj_unescape(struct evbuffer *b, const char *p, size_t n)
{
	const char	*end = p + n, *run = p, *bs;
	unsigned	 cp, lo;
	char		 ch;

	while ((bs = memchr(p, '\\', (size_t)(end - p))) != NULL) {
		evbuffer_add(b, run, (size_t)(bs - run));
		if (bs + 1 >= end)
			return -1;
		p = bs + 2;
		switch (bs[1]) {
		case '"': case '\\': case '/':
			ch = bs[1];
			break;
		case 'b': ch = '\b'; break;
		case 'f': ch = '\f'; break;
		case 'n': ch = '\n'; break;
		case 'r': ch = '\r'; break;
		case 't': ch = '\t'; break;
		case 'u':
			if (end - p < 4 || hex4(p, &cp) == -1)
				return -1;
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 &&
			    p[0] == '\\' && p[1] == 'u' &&
			    hex4(p + 2, &lo) == 0 && lo >= 0xdc00 &&
			    lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				    (lo - 0xdc00);
				p += 6;
			} else if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd;
			put_utf8(b, cp);
			run = p;
			continue;
		default:
			return -1;
		}
		evbuffer_add(b, &ch, 1);
		run = p;
	}
	evbuffer_add(b, run, (size_t)(end - run));
	return 0;
}

int
xj_join(struct evbuffer *b, const struct json_doc *d, int array,
    const char *type, const char *key, const char *sep)
{
	struct xj_iter	 it;
	int		 e, v, n = 0;

	xj_iter(&it, d, array);
	while (xj_elem(&it, d, &e)) {
		if (!xj_is(d, json_get(d, e, "type"), type))
			continue;
		if (xj_type(d, v = json_get(d, e, key)) != JV_STRING)
			return -1;
		if (n++ > 0)
			evbuffer_add(b, sep, strlen(sep));
		xj_inner(b, d, v);
	}
	return n;
}

int
xj_args_object(struct evbuffer *out, struct evbuffer *tmp,
    const struct json_doc *d, int args)
{
	const char	*p;
	size_t		 n;

	switch (xj_type(d, args)) {
	case JV_NONE:
	case JV_NULL:
		XJ_LIT(out, "{}");
		return 0;
	case JV_OBJECT:
		xj_raw(out, d, args);
		return 0;
	case JV_STRING:
		break;
	default:
		return -1;
	}
	evbuffer_drain(tmp, evbuffer_get_length(tmp));
	if (xj_unescape(tmp, d->js + d->tok[args].start,
	    (size_t)(d->tok[args].end - d->tok[args].start)) == -1)
		return -1;
	n = evbuffer_get_length(tmp);
	p = n > 0 ? (const char *)evbuffer_pullup(tmp, -1) : "";
	while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++, n--;
	if (n == 0) {
		XJ_LIT(out, "{}");
		return 0;
	}
	if (json_strict_read(p, n, NULL, 0, NULL) != JSON_STRICT_OK)
		return -1;
	evbuffer_add(out, p, n);
	return 0;
}

int
xj_fail(struct xlate_err *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}
