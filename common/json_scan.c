/*
 * json_scan.c - the top level of a JSON object, the rest skipped.
 *
 * jsmn writes a token for every value in the document; for a 100 KB chat
 * request that is most of the work sluice does for it, only to read two
 * members.  Here strings are skipped with memchr and containers with a
 * byte loop that tracks nesting, so the cost is a pass over the bytes.
 * Every function is pure over its input (fuzzed by tests/fuzz/fuzz_json.c
 * against jsmn: where jsmn accepts an object, both must agree).
 */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/json_scan.h"

static int
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t
skip_ws(const char *js, size_t len, size_t i)
{
	while (i < len && is_ws(js[i]))
		i++;
	return i;
}

/* From I, where no backslash run reaches back past I: the index of the
 * first quote not escaped by an odd run of backslashes, or LEN. */
static size_t
string_end_long(const char *js, size_t len, size_t i)
{
	const char *q;
	size_t	    bs;

	for (;;) {
		if (i >= len || (q = memchr(js + i, '"', len - i)) == NULL)
			return len;
		for (bs = 0; q - bs > js + i && q[-1 - (ptrdiff_t)bs] == '\\';
		    bs++)
			;
		if (bs % 2 == 0)
			return (size_t)(q - js);
		i = (size_t)(q - js) + 1;
	}
}

/*
 * JS[I] is '"': the index of the closing quote, or LEN.  A backslash
 * escapes the byte after it, whatever it is (so an odd run of them
 * escapes a quote).  Most strings here are keys shorter than 16 bytes,
 * where a memchr call cost more than the search: the next quote or
 * backslash is looked for 16 bytes a step (SSE2), and a string that
 * runs past 32 bytes of neither goes to memchr, faster on long text.
 */
static size_t
string_end(const char *js, size_t len, size_t i)
{
#if defined(__SSE2__)
	const __m128i	 q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
#endif
	size_t		 plain;

	i++;
	for (;;) {
		plain = 0;
#if defined(__SSE2__)
		while (i < len && len - i >= 16) {
			__m128i	 v = _mm_loadu_si128((const __m128i *)(const void *)
			    (js + i));
			unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			    _mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));

			if (m != 0) {
				i += (size_t)__builtin_ctz(m);
				break;
			}
			i += 16;
			/* JS[I - 1] is no backslash: a run starts at I */
			if ((plain += 16) >= 32)
				return string_end_long(js, len, i);
		}
#endif
		while (i < len && js[i] != '"' && js[i] != '\\')
			i++;
		if (i >= len)
			return len;
		if (js[i] == '"')
			return i;
		i += 2;		/* the backslash and the byte it escapes */
	}
}

/* JS[I] is '{' or '[': one past its matching close, or 0 if malformed. */
static size_t
container_end(const char *js, size_t len, size_t i)
{
	char	 stack[JSON_SCAN_MAX_DEPTH];
	int	 depth = 0;

	for (; i < len; i++) {
		switch (js[i]) {
		case '"':
			i = string_end(js, len, i);
			if (i >= len)
				return 0;
			break;
		case '{':
		case '[':
			if (depth == JSON_SCAN_MAX_DEPTH)
				return 0;
			stack[depth++] = js[i] == '{' ? '}' : ']';
			break;
		case '}':
		case ']':
			if (depth == 0 || stack[depth - 1] != js[i])
				return 0;
			if (--depth == 0)
				return i + 1;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* A value at JS[I]: its type and span; the index after it, or 0. */
static size_t
value(const char *js, size_t len, size_t i, enum json_vtype *t, size_t *s,
    size_t *e)
{
	size_t j;

	if (i >= len)
		return 0;
	switch (js[i]) {
	case '"':
		j = string_end(js, len, i);
		if (j >= len)
			return 0;
		*t = JV_STRING;
		*s = i + 1;
		*e = j;
		return j + 1;
	case '{':
	case '[':
		if ((j = container_end(js, len, i)) == 0)
			return 0;
		*t = js[i] == '{' ? JV_OBJECT : JV_ARRAY;
		*s = i;
		*e = j;
		return j;
	default:
		for (j = i; j < len && js[j] != ',' && js[j] != '}' &&
		    js[j] != ']' && !is_ws(js[j]); j++)
			;
		if (j == i)
			return 0;
		if (j - i == 4 && memcmp(js + i, "true", 4) == 0)
			*t = JV_TRUE;
		else if (j - i == 5 && memcmp(js + i, "false", 5) == 0)
			*t = JV_FALSE;
		else if (j - i == 4 && memcmp(js + i, "null", 4) == 0)
			*t = JV_NULL;
		else if (js[i] == '-' || (js[i] >= '0' && js[i] <= '9'))
			*t = JV_NUMBER;
		else
			return 0;
		*s = i;
		*e = j;
		return j;
	}
}

int
json_scan_top(const char *js, size_t len, struct json_field *fields,
    int nfields)
{
	size_t		 i, ks, ke, vs, ve;
	enum json_vtype	 vt;
	int		 f;

	for (f = 0; f < nfields; f++) {
		fields[f].type = JV_NONE;
		fields[f].count = 0;
		fields[f].start = fields[f].end = 0;
	}
	i = skip_ws(js, len, 0);
	if (i >= len || js[i] != '{')
		return -1;
	i = skip_ws(js, len, i + 1);
	if (i < len && js[i] == '}') {
		i++;
		goto tail;
	}
	for (;;) {
		if (i >= len || js[i] != '"')
			return -1;
		ks = i + 1;
		ke = string_end(js, len, i);
		if (ke >= len)
			return -1;
		i = skip_ws(js, len, ke + 1);
		if (i >= len || js[i] != ':')
			return -1;
		i = skip_ws(js, len, i + 1);
		if ((i = value(js, len, i, &vt, &vs, &ve)) == 0)
			return -1;
		for (f = 0; f < nfields; f++) {
			const char	*k = fields[f].key;
			size_t		 kl;

			/* the first byte rules most keys out, without strlen */
			if (k[0] != (ke > ks ? js[ks] : '\0'))
				continue;
			kl = strlen(k);
			if (ke - ks != kl || memcmp(js + ks, k, kl) != 0)
				continue;
			if (fields[f].count++ == 0) {
				fields[f].type = vt;
				fields[f].start = vs;
				fields[f].end = ve;
			}
		}
		i = skip_ws(js, len, i);
		if (i < len && js[i] == ',') {
			i = skip_ws(js, len, i + 1);
			continue;
		}
		if (i < len && js[i] == '}') {
			i++;
			break;
		}
		return -1;
	}
tail:
	return skip_ws(js, len, i) == len ? 0 : -1;
}
