/*
 * xlate_json.c - token walks and JSON writing for the translators.
 *
 * Values are copied as they stand wherever both formats give a field
 * the same JSON type: a string's escapes stay untouched, so that a
 * translation never changes a character of the text it carries, and
 * most of a request body is copied rather than decoded and encoded.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/json_strict.h"
#include "worker/reply.h"
#include "worker/xlate_json.h"

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

void
xj_int(struct evbuffer *b, int64_t v)
{
	char	 t[24];
	int	 n = snprintf(t, sizeof(t), "%lld", (long long)v);

	evbuffer_add(b, t, (size_t)n);
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
