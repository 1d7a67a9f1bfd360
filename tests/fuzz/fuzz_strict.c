/*
 * fuzz_strict.c - libFuzzer target: the strict request-body reader
 * (common/json_strict.c) against a reference built another way.
 *
 * The reference is jsmn's tokenization, then a walk over the tokens that
 * checks every byte jsmn does not (the gaps between tokens hold only
 * white space and the one ',' or ':' due there; numbers match the RFC
 * grammar as a POSIX regex; literals are exact; each string is decoded
 * to code points by a separate, simple unescaper that also checks
 * controls, surrogate pairs and UTF-8 by value; depth from the tokens),
 * then Python's json.loads semantics for the members: decoded keys, last
 * duplicate wins.  On every input:
 *   - the strict reader says INVALID exactly when the reference refuses;
 *   - otherwise its verdict is the reference's first finding in document
 *     order (a duplicate of model, stream or stream_options; a key that
 *     folds to one of them; a string value of theirs over its buffer),
 *     with the same field and offset;
 *   - on OK, the type, token extent and decoded value of each field
 *     equal the reference's, and the same holds for include_usage read
 *     inside stream_options.
 */
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/json_strict.h"

#define NF		3

struct ref {
	const char	*js;
	size_t		 len;
	jsmntok_t	*tok;
	int		 ntok;
};

/* What the reference expects of one field. */
struct want {
	const char	*key;
	size_t		 cap;		/* decoded bytes allowed; 0: not read */
	int		 count;
	enum json_vtype	 type;
	size_t		 start, end;
	unsigned char	*val;		/* decoded, malloc'd */
	size_t		 len;
};

static int
ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t
raw_start(const struct ref *R, int t)
{
	return (size_t)R->tok[t].start - (R->tok[t].type == JSMN_STRING);
}

static size_t
raw_end(const struct ref *R, int t)
{
	return (size_t)R->tok[t].end + (R->tok[t].type == JSMN_STRING);
}

/* JS[A..B) is white space around one SEP (or none if SEP is 0). */
static int
gap(const struct ref *R, size_t a, size_t b, char sep)
{
	int seen = 0;

	if (a > b || b > R->len)
		return 0;
	for (; a < b; a++) {
		if (ws(R->js[a]))
			continue;
		if (sep == 0 || seen || R->js[a] != sep)
			return 0;
		seen = 1;
	}
	return sep == 0 || seen;
}

static int
hexval(const char *s, unsigned long *v)
{
	char	 b[5];
	int	 i;

	for (i = 0; i < 4; i++)
		if (strchr("0123456789abcdefABCDEF", s[i]) == NULL ||
		    s[i] == '\0')
			return 0;
	memcpy(b, s, 4);
	b[4] = '\0';
	*v = strtoul(b, NULL, 16);
	return 1;
}

/*
 * The string body S (N bytes, between the quotes) as code points in CP
 * (room for N); their count, or -1 if it is not a valid JSON string.
 */
static long
unescape(const char *s, size_t n, unsigned long *cp)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i = 0, k, m;
	long			 o = 0;
	unsigned long		 c, lo;
	static const unsigned long min[] = { 0, 0, 0x80, 0x800, 0x10000 };

	while (i < n) {
		if (u[i] < 0x20 || u[i] == '"')
			return -1;
		if (u[i] == '\\') {
			if (i + 1 >= n)
				return -1;
			switch (s[i + 1]) {
			case '"': c = '"'; break;
			case '\\': c = '\\'; break;
			case '/': c = '/'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (n - i < 6 || !hexval(s + i + 2, &c))
					return -1;
				i += 4;
				if (c >= 0xdc00 && c <= 0xdfff)
					return -1;
				if (c >= 0xd800 && c <= 0xdbff) {
					if (n - i < 8 || s[i + 2] != '\\' ||
					    s[i + 3] != 'u' ||
					    !hexval(s + i + 4, &lo) ||
					    lo < 0xdc00 || lo > 0xdfff)
						return -1;
					c = ((c - 0xd800) << 10 | (lo - 0xdc00)) +
					    0x10000;
					i += 6;
				}
				break;
			default:
				return -1;
			}
			i += 2;
			cp[o++] = c;
			continue;
		}
		if (u[i] < 0x80) {
			cp[o++] = u[i++];
			continue;
		}
		/* UTF-8 by value: decode, then insist on the shortest form */
		for (m = 0; m < 8 && (u[i] << m & 0x80); m++)
			;
		if (m < 2 || m > 4 || n - i < m)
			return -1;
		c = u[i] & (0x7f >> m);
		for (k = 1; k < m; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				return -1;
			c = c << 6 | (u[i + k] & 0x3f);
		}
		if (c < min[m] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return -1;
		cp[o++] = c;
		i += m;
	}
	return o;
}

/* String token T decoded to UTF-8 (malloc'd, *LEN bytes), or NULL. */
static unsigned char *
ref_string(const struct ref *R, int t, size_t *len)
{
	size_t		 n = (size_t)(R->tok[t].end - R->tok[t].start), o = 0;
	unsigned long	*cp = malloc((n + 1) * sizeof(*cp));
	unsigned char	*b = malloc(4 * n + 1);
	long		 m, i;

	if (cp == NULL || b == NULL)
		abort();
	if ((m = unescape(R->js + R->tok[t].start, n, cp)) < 0) {
		free(cp);
		free(b);
		return NULL;
	}
	for (i = 0; i < m; i++) {
		unsigned long c = cp[i];

		if (c < 0x80)
			b[o++] = (unsigned char)c;
		else if (c < 0x800) {
			b[o++] = (unsigned char)(0xc0 | c >> 6);
			b[o++] = (unsigned char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			b[o++] = (unsigned char)(0xe0 | c >> 12);
			b[o++] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
			b[o++] = (unsigned char)(0x80 | (c & 0x3f));
		} else {
			b[o++] = (unsigned char)(0xf0 | c >> 18);
			b[o++] = (unsigned char)(0x80 | (c >> 12 & 0x3f));
			b[o++] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
			b[o++] = (unsigned char)(0x80 | (c & 0x3f));
		}
	}
	free(cp);
	*len = o;
	return b;
}

static int
string_ok(const struct ref *R, int t)
{
	size_t		 n;
	unsigned char	*b = ref_string(R, t, &n);

	free(b);
	return b != NULL;
}

static int
primitive_ok(const struct ref *R, int t)
{
	static regex_t	 num;
	static int	 compiled;
	const char	*s = R->js + R->tok[t].start;
	size_t		 n = (size_t)(R->tok[t].end - R->tok[t].start);
	char		 b[4096];

	if (!compiled) {
		if (regcomp(&num, "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?"
		    "([eE][+-]?[0-9]+)?$", REG_EXTENDED | REG_NOSUB) != 0)
			abort();
		compiled = 1;
	}
	if ((n == 4 && memcmp(s, "true", 4) == 0) ||
	    (n == 5 && memcmp(s, "false", 5) == 0) ||
	    (n == 4 && memcmp(s, "null", 4) == 0))
		return 1;
	if (n >= sizeof(b))
		return 0;	/* never in a fuzz input this size */
	memcpy(b, s, n);
	b[n] = '\0';
	return regexec(&num, b, 0, NULL, 0) == 0;
}

/* Token T, inside DEPTH open containers: valid?  *NEXT: after it. */
static int
ref_value(const struct ref *R, int t, int depth, int *next)
{
	const jsmntok_t	*k;
	size_t		 pos;
	int		 c, m, v, isobj;

	if (t >= R->ntok)
		return 0;
	k = &R->tok[t];
	*next = t + 1;
	switch (k->type) {
	case JSMN_PRIMITIVE:
		return k->size == 0 && primitive_ok(R, t);
	case JSMN_STRING:
		return k->size == 0 && string_ok(R, t);
	case JSMN_OBJECT:
	case JSMN_ARRAY:
		break;
	default:
		return 0;
	}
	isobj = k->type == JSMN_OBJECT;
	if (depth + 1 > JSON_STRICT_MAX_DEPTH || k->end < 0 ||
	    R->js[k->end - 1] != (isobj ? '}' : ']'))
		return 0;
	pos = (size_t)k->start + 1;
	c = t + 1;
	for (m = 0; m < k->size; m++) {
		if (c >= R->ntok || !gap(R, pos, raw_start(R, c),
		    m ? ',' : 0))
			return 0;
		if (isobj) {
			if (R->tok[c].type != JSMN_STRING ||
			    R->tok[c].size != 1 || !string_ok(R, c))
				return 0;
			pos = raw_end(R, c++);
			if (c >= R->ntok || !gap(R, pos, raw_start(R, c), ':'))
				return 0;
		}
		v = c;
		if (!ref_value(R, v, depth + 1, &c))
			return 0;
		pos = raw_end(R, v);
	}
	*next = c;
	return gap(R, pos, (size_t)k->end - 1, 0);
}

static int
ref_parse(struct ref *R, const char *js, size_t len)
{
	jsmn_parser	 p;
	int		 next;

	R->js = js;
	R->len = len;
	R->ntok = 0;
	R->tok = NULL;
	if (memchr(js, '\0', len) != NULL)	/* jsmn stops there */
		return 0;
	if ((R->tok = malloc((len + 1) * sizeof(*R->tok))) == NULL)
		abort();
	jsmn_init(&p);
	if ((R->ntok = jsmn_parse(&p, js, len, R->tok,
	    (unsigned)len + 1)) < 1)
		return 0;
	return R->tok[0].type == JSMN_OBJECT &&
	    gap(R, 0, (size_t)R->tok[0].start, 0) &&
	    ref_value(R, 0, 0, &next) && next == R->ntok &&
	    gap(R, (size_t)R->tok[0].end, len, 0);
}

static enum json_vtype
vtype(const struct ref *R, int t)
{
	switch (R->tok[t].type) {
	case JSMN_OBJECT:
		return JV_OBJECT;
	case JSMN_ARRAY:
		return JV_ARRAY;
	case JSMN_STRING:
		return JV_STRING;
	default:
		break;
	}
	switch (R->js[R->tok[t].start]) {
	case 't':
		return JV_TRUE;
	case 'f':
		return JV_FALSE;
	case 'n':
		return JV_NULL;
	default:
		return JV_NUMBER;
	}
}

/* The token after T's subtree. */
static int
skip(const struct ref *R, int t)
{
	int end = R->tok[t].end;

	for (t++; t < R->ntok && R->tok[t].start < end; t++)
		;
	return t;
}

/*
 * Key K (valid UTF-8, N bytes) equals KEY once folded as the most
 * lenient parsers fold names: ASCII case, U+0130 and U+0131 as i, U+017F
 * as s, U+212A as k, and the name cut at a NUL.
 */
static int
folds_to(const unsigned char *k, size_t n, const char *key)
{
	size_t		 i = 0, j = 0, l, x;
	unsigned long	 c;
	char		 q;

	while (i < n && k[i] != '\0') {
		c = k[i];
		l = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		if (l > 1)
			for (c &= 0x3f >> (l - 1), x = 1; x < l; x++)
				c = c << 6 | (k[i + x] & 0x3f);
		i += l;
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		else if (c == 0x130 || c == 0x131)
			c = 'i';
		else if (c == 0x17f)
			c = 's';
		else if (c == 0x212a)
			c = 'k';
		else if (c >= 0x80)
			return 0;
		if (key[j] == '\0')
			return 0;
		q = key[j] >= 'A' && key[j] <= 'Z' ? key[j] + 'a' - 'A' : key[j];
		if ((unsigned long)(unsigned char)q != c)
			return 0;
		j++;
	}
	return key[j] == '\0';
}

/*
 * The members of object O as the reference reads them into W; the first
 * finding, its field and offset.
 */
static enum json_strict_rc
ref_members(const struct ref *R, int o, struct want *w, int nw,
    int *field, size_t *off)
{
	enum json_strict_rc	 rc = JSON_STRICT_OK;
	unsigned char		*k;
	size_t			 kl;
	int			 c, m, f, v;

	*field = -1;
	*off = 0;
	for (c = o + 1, m = 0; m < R->tok[o].size; m++, c = skip(R, v)) {
		v = c + 1;
		if ((k = ref_string(R, c, &kl)) == NULL)
			abort();
		for (f = 0; f < nw; f++)
			if (kl == strlen(w[f].key) &&
			    memcmp(k, w[f].key, kl) == 0)
				break;
		if (f < nw) {
			if (w[f].count++ > 0 && rc == JSON_STRICT_OK) {
				rc = JSON_STRICT_DUPLICATE;
				*field = f;
				*off = raw_start(R, c);
			}
			/* last wins, as json.loads */
			w[f].type = vtype(R, v);
			w[f].start = raw_start(R, v);
			w[f].end = raw_end(R, v);
			free(w[f].val);
			w[f].val = NULL;
			w[f].len = 0;
			if (w[f].type == JV_STRING && w[f].cap > 0) {
				w[f].val = ref_string(R, v, &w[f].len);
				if (w[f].len > w[f].cap &&
				    rc == JSON_STRICT_OK) {
					rc = JSON_STRICT_TOO_LONG;
					*field = f;
					*off = raw_start(R, v);
				}
			}
		} else
			for (f = 0; f < nw; f++)
				if (folds_to(k, kl, w[f].key) &&
				    rc == JSON_STRICT_OK) {
					rc = JSON_STRICT_CASE_VARIANT;
					*field = f;
					*off = raw_start(R, c);
				}
		free(k);
	}
	return rc;
}

static void
mismatch(const char *what, const uint8_t *data, size_t size)
{
	fprintf(stderr, "fuzz_strict: %s on %zu bytes: %.*s\n", what, size,
	    (int)(size > 400 ? 400 : size), (const char *)data);
	abort();
}

/* The strict reader's fields F against the reference's W. */
static void
compare(const struct json_strict_field *f, struct want *w, int n,
    const uint8_t *data, size_t size)
{
	int	 i;
	size_t	 j;
	int	 printable;

	for (i = 0; i < n; i++) {
		if (f[i].type != w[i].type)
			mismatch("type", data, size);
		if (f[i].type == JV_NONE)
			continue;
		if (f[i].start != w[i].start || f[i].end != w[i].end)
			mismatch("extent", data, size);
		if (f[i].type != JV_STRING || f[i].buf == NULL)
			continue;
		if (f[i].len != w[i].len ||
		    memcmp(f[i].buf, w[i].val, w[i].len) != 0 ||
		    f[i].buf[f[i].len] != '\0')
			mismatch("decoded value", data, size);
		for (j = 0, printable = w[i].len > 0; j < w[i].len; j++)
			if (w[i].val[j] < 0x21 || w[i].val[j] > 0x7e)
				printable = 0;
		if (f[i].printable != printable)
			mismatch("printable", data, size);
	}
}

static void
check(const struct ref *R, int o, const char *js, size_t len,
    struct json_strict_field *f, int n, const uint8_t *data, size_t size)
{
	struct want		 w[NF];
	struct json_strict_err	 err;
	enum json_strict_rc	 rc, want;
	int			 i, field;
	size_t			 off;

	memset(w, 0, sizeof(w));
	for (i = 0; i < n; i++) {
		w[i].key = f[i].key;
		w[i].cap = f[i].buf != NULL ? f[i].bufsize - 1 : 0;
	}
	rc = json_strict_read(js, len, f, n, &err);
	want = ref_members(R, o, w, n, &field, &off);
	if (rc != want)
		mismatch("verdict", data, size);
	if (rc != JSON_STRICT_OK && (err.field != field ||
	    err.off + (size_t)(js - R->js) != off))
		mismatch("finding", data, size);
	if (rc == JSON_STRICT_OK) {
		/* offsets in the reference count from the whole input */
		for (i = 0; i < n; i++)
			if (w[i].type != JV_NONE) {
				w[i].start -= (size_t)(js - R->js);
				w[i].end -= (size_t)(js - R->js);
			}
		compare(f, w, n, data, size);
	}
	for (i = 0; i < n; i++)
		free(w[i].val);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char			*js = (const char *)data;
	char				 model[128], stream[16], so[64], iu[16];
	struct json_strict_field	 f[NF] = {
		{ .key = "model", .buf = model, .bufsize = sizeof(model) },
		{ .key = "stream", .buf = stream, .bufsize = sizeof(stream) },
		{ .key = "stream_options", .buf = so, .bufsize = sizeof(so) },
	};
	struct json_strict_field	 g[1] = {
		{ .key = "include_usage", .buf = iu, .bufsize = sizeof(iu) },
	};
	struct ref			 R;
	enum json_strict_rc		 rc;
	int				 ok, c, m;

	rc = json_strict_read(js, size, f, NF, NULL);
	ok = ref_parse(&R, js, size);
	if ((rc == JSON_STRICT_INVALID) == ok)
		mismatch(ok ? "refused valid JSON" : "accepted invalid JSON",
		    data, size);
	if (ok) {
		check(&R, 0, js, size, f, NF, data, size);
		/* include_usage inside stream_options, by the same rules */
		if (rc == JSON_STRICT_OK && f[2].type == JV_OBJECT) {
			for (c = 1, m = 0; m < R.tok[0].size; m++) {
				if (raw_start(&R, c + 1) == f[2].start)
					break;
				c = skip(&R, c + 1);
			}
			if (m == R.tok[0].size)
				mismatch("stream_options token", data, size);
			check(&R, c + 1, js + f[2].start,
			    f[2].end - f[2].start, g, 1, data, size);
		}
	}
	free(R.tok);
	return 0;
}
