/*
 * json.c - jsmn with parent links, strict mode, and a token array that
 * grows by doubling and is kept between parses.
 *
 * jsmn is the one JSON tokenizer we depend on (Debian's libjsmn-dev is the
 * header itself); it is compiled here once, with JSMN_STATIC off so that
 * this file holds its only definition.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The definitions of jsmn, once, with the options json.h declares. */
#define JSMN_PARENT_LINKS
#define JSMN_STRICT
#include <jsmn.h>

#include "common/json.h"

#define JSON_INITIAL_TOKENS	256
#define JSON_MAX_DEPTH		128

/*
 * jsmn with parent links walks up from the newest token at every closing
 * bracket: quadratic in the nesting depth.  Refuse deep documents first,
 * in one pass (nothing sluice reads is nested more than a few levels).
 */
static int
too_deep(const char *js, size_t len)
{
	const char	*p = js, *end = js + len, *q;
	int		 depth = 0;

	while (p < end) {
		switch (*p) {
		case '"':
			/* skip the string: find a quote not escaped */
			for (q = p + 1;; q++) {
				q = memchr(q, '"', (size_t)(end - q));
				if (q == NULL)
					return 0;	/* jsmn rejects it */
				size_t bs = 0;
				while (q - bs - 1 > p && q[-1 - (long)bs] == '\\')
					bs++;
				if (bs % 2 == 0)
					break;
			}
			p = q + 1;
			continue;
		case '{':
		case '[':
			if (++depth > JSON_MAX_DEPTH)
				return 1;
			break;
		case '}':
		case ']':
			depth--;
			break;
		}
		p++;
	}
	return 0;
}

int
json_parse(struct json_doc *d, const char *js, size_t len)
{
	jsmn_parser	 p;
	int		 n, ncap;
	jsmntok_t	*t;

	d->js = js;
	d->len = len;
	d->ntok = 0;
	if (too_deep(js, len))
		return -1;
	if (d->tok == NULL) {
		int n0 = JSON_INITIAL_TOKENS;

		if (d->max_tokens > 0 && d->max_tokens < n0)
			n0 = d->max_tokens;
		d->tok = malloc((size_t)n0 * sizeof(*d->tok));
		if (d->tok == NULL)
			return -1;
		d->cap = n0;
	}
	for (;;) {
		jsmn_init(&p);
		n = jsmn_parse(&p, js, len, d->tok, d->cap);
		if (n != JSMN_ERROR_NOMEM)
			break;
		ncap = d->cap * 2;
		if (d->max_tokens > 0 && d->cap >= d->max_tokens)
			return -1;
		if (d->max_tokens > 0 && ncap > d->max_tokens)
			ncap = d->max_tokens;
		t = realloc(d->tok, (size_t)ncap * sizeof(*t));
		if (t == NULL)
			return -1;
		d->tok = t;
		d->cap = ncap;
	}
	if (n < 1)
		return -1;
	/* strict jsmn still accepts a truncated top level; insist on one value */
	if (d->tok[0].type == JSMN_OBJECT || d->tok[0].type == JSMN_ARRAY) {
		if (d->tok[0].end < 0)
			return -1;
	}
	/* one value, then only white space: "{...}{...}" is not JSON */
	for (size_t i = (size_t)d->tok[0].end +
	    (d->tok[0].type == JSMN_STRING); i < len; i++)
		if (js[i] != ' ' && js[i] != '\t' && js[i] != '\n' &&
		    js[i] != '\r')
			return -1;
	d->ntok = n;
	return 0;
}

void
json_doc_free(struct json_doc *d)
{
	free(d->tok);
	memset(d, 0, sizeof(*d));
}

int
json_skip(const struct json_doc *d, int i)
{
	int end = d->tok[i].end;

	i++;
	while (i < d->ntok && d->tok[i].start < end)
		i++;
	return i;
}

int
json_get(const struct json_doc *d, int obj, const char *key)
{
	int	 i, end;
	size_t	 klen = strlen(key);

	if (obj < 0 || obj >= d->ntok || d->tok[obj].type != JSMN_OBJECT)
		return -1;
	end = d->tok[obj].end;
	for (i = obj + 1; i < d->ntok && d->tok[i].start < end; i++) {
		const jsmntok_t *k = &d->tok[i];

		if (k->parent != obj || k->type != JSMN_STRING)
			continue;
		if ((size_t)(k->end - k->start) == klen &&
		    memcmp(d->js + k->start, key, klen) == 0)
			return i + 1 < d->ntok ? i + 1 : -1;
		/* skip the value's subtree */
		i = json_skip(d, i + 1) - 1;
	}
	return -1;
}

int
json_path(const struct json_doc *d, int obj, ...)
{
	va_list		 ap;
	const char	*key;

	va_start(ap, obj);
	while (obj >= 0 && (key = va_arg(ap, const char *)) != NULL)
		obj = json_get(d, obj, key);
	va_end(ap);
	return obj;
}

int
json_str_eq(const struct json_doc *d, int i, const char *s)
{
	size_t len = strlen(s);

	if (i < 0 || d->tok[i].type != JSMN_STRING)
		return 0;
	return (size_t)(d->tok[i].end - d->tok[i].start) == len &&
	    memcmp(d->js + d->tok[i].start, s, len) == 0;
}

const char *
json_raw(const struct json_doc *d, int i, size_t *len)
{
	*len = (size_t)(d->tok[i].end - d->tok[i].start);
	return d->js + d->tok[i].start;
}

int
json_int(const struct json_doc *d, int i, int64_t *v)
{
	const char	*p, *e;
	int64_t		 x = 0;
	int		 neg = 0;

	if (i < 0 || d->tok[i].type != JSMN_PRIMITIVE)
		return -1;
	p = d->js + d->tok[i].start;
	e = d->js + d->tok[i].end;
	if (p < e && *p == '-') {
		neg = 1;
		p++;
	}
	if (p == e)
		return -1;
	for (; p < e; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (x > (INT64_MAX - (*p - '0')) / 10)
			return -1;
		x = x * 10 + (*p - '0');
	}
	*v = neg ? -x : x;
	return 0;
}

int
json_bool(const struct json_doc *d, int i)
{
	if (i < 0 || d->tok[i].type != JSMN_PRIMITIVE)
		return -1;
	if (d->js[d->tok[i].start] == 't')
		return 1;
	if (d->js[d->tok[i].start] == 'f')
		return 0;
	return -1;
}

int
json_is_str(const struct json_doc *d, int i)
{
	return i >= 0 && d->tok[i].type == JSMN_STRING;
}

int
json_is_obj(const struct json_doc *d, int i)
{
	return i >= 0 && d->tok[i].type == JSMN_OBJECT;
}
