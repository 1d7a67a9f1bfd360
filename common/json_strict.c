/*
 * json_strict.c - a validating single pass over a request body.
 *
 * A body the gateway reads one way and the upstream another is a way
 * around routing, pricing and the key's model list, so the reading here
 * is the strictest any parser has: RFC 8259 to the letter, and refusal
 * wherever parsers are known to differ (duplicates, case folding, lone
 * surrogates, NULs in keys).  It is a separate module from json_scan.c
 * because the contracts are opposite: json_scan reads upstream answers
 * and must find usage in whatever comes back.
 *
 * Cost: a chat body is mostly string content, so strings are read a
 * block at a time, stopping only at '"', '\\' and controls.  With SSE2
 * (every x86-64) a block is 64 bytes whose stop bits are kept from one
 * stop to the next, and its UTF-8 is checked 16 bytes at once with a
 * rule that needs no sequence boundaries; elsewhere a 16-byte word-wide
 * test also stops at bytes >= 0x80 and each UTF-8 sequence is checked
 * on its own.  Structure is a goto state machine with the open
 * containers as a bit stack.  Only top-level keys and the values of
 * asked-for fields are decoded, each into a bounded buffer, so the pass
 * reads each byte about once and those few tokens twice.
 * bench/jsonbench.c measures it.
 *
 * Fuzzed against jsmn with an independent validator and decoder
 * (tests/fuzz/fuzz_strict.c, and fuzz_strict_portable.c for the
 * fallback loop).
 */
#include <stdint.h>
#include <string.h>

#include "common/json_strict.h"

/* a decoded key this long cannot fold down to a field: see key_match() */
#define KEY_BUF		(4 * JSON_STRICT_KEY_MAX)

_Static_assert(JSON_STRICT_MAX_DEPTH % 64 == 0, "the bit stack is in words");

#define ONES		0x0101010101010101ULL
#define HIGHS		0x8080808080808080ULL

struct reader {
	const unsigned char		*p;
	size_t				 len;
	struct json_strict_field	*f;
	int				 nf;
	enum json_strict_rc		 rc;	/* first finding, or OK */
	struct json_strict_err		 err;
};

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static size_t
skip_ws(const unsigned char *p, size_t len, size_t i)
{
	while (i < len && is_ws(p[i]))
		i++;
	return i;
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Where a string scan stands: the stop bytes of the 64-byte block at
 * BASE not yet passed (none: no block in hand).  Between two stops in
 * one block nothing is loaded again.
 */
struct stops {
	size_t		 base;
	uint64_t	 m;
};

#if defined(__SSE2__) && !defined(JSON_STRICT_PORTABLE)
#include <emmintrin.h>

/*
 * Does P[K] break UTF-8, judged with the (up to) three bytes before it?
 * Checked byte by byte, so a scan may start anywhere: a byte must be a
 * continuation exactly when one of the three before it is a lead that
 * asks for it; C0, C1 and F5..FF never occur; after E0, ED, F0 and F4
 * the next byte's range is narrower (RFC 3629 section 4: no overlongs,
 * no surrogates, nothing past U+10FFFF).
 */
static int
utf8_bad_at(const unsigned char *p, size_t k)
{
	unsigned	 c = p[k], p1, p2, p3;
	int		 due;

	p1 = k > 0 ? p[k - 1] : 0;
	p2 = k > 1 ? p[k - 2] : 0;
	p3 = k > 2 ? p[k - 3] : 0;
	due = p1 >= 0xc0 || p2 >= 0xe0 || p3 >= 0xf0;
	if (((c & 0xc0) == 0x80) != due || c == 0xc0 || c == 0xc1 ||
	    c >= 0xf5)
		return 1;
	return (p1 == 0xe0 && c < 0xa0) || (p1 == 0xed && c > 0x9f) ||
	    (p1 == 0xf0 && c < 0x90) || (p1 == 0xf4 && c > 0x8f);
}

/* P[I] alone: 1 if a stop, -1 if UTF-8 breaks there, else 0. */
static int
stop_at(const unsigned char *p, size_t i)
{
	if (utf8_bad_at(p, i))
		return -1;
	return p[i] == '"' || p[i] == '\\' || p[i] < 0x20;
}

static __m128i
load16(const unsigned char *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}

static __m128i
bytes(int c)
{
	return _mm_set1_epi8((char)c);
}

/*
 * utf8_bad_at() for the 16 * N bytes at P, 16 at once.  Out of line:
 * the string loop calls it only where a byte is >= 0x80, and is faster
 * without its body.
 */
__attribute__((noinline)) static int
utf8_bad(const unsigned char *p, size_t n)
{
	const __m128i	 zero = _mm_setzero_si128();
	__m128i		 v, p1, cont, notdue, le9f, le8f, err = zero;

	for (; n > 0; n--, p += 16) {
		v = load16(p);
		p1 = load16(p - 1);
		/* signed, 0x80..0xbf are the bytes below 0xc0 */
		cont = _mm_cmplt_epi8(v, bytes(0xc0));
		notdue = _mm_cmpeq_epi8(_mm_or_si128(_mm_or_si128(
		    _mm_subs_epu8(p1, bytes(0xbf)),
		    _mm_subs_epu8(load16(p - 2), bytes(0xdf))),
		    _mm_subs_epu8(load16(p - 3), bytes(0xef))), zero);
		err = _mm_or_si128(err, _mm_cmpeq_epi8(cont, notdue));
		err = _mm_or_si128(err, _mm_cmpeq_epi8(_mm_and_si128(v,
		    bytes(0xfe)), bytes(0xc0)));
		err = _mm_or_si128(err, _mm_andnot_si128(_mm_cmpeq_epi8(
		    _mm_subs_epu8(v, bytes(0xf4)), zero), bytes(0xff)));
		le9f = _mm_cmpeq_epi8(_mm_subs_epu8(v, bytes(0x9f)), zero);
		le8f = _mm_cmpeq_epi8(_mm_subs_epu8(v, bytes(0x8f)), zero);
		err = _mm_or_si128(err, _mm_and_si128(_mm_cmpeq_epi8(p1,
		    bytes(0xe0)), le9f));
		err = _mm_or_si128(err, _mm_andnot_si128(le9f,
		    _mm_cmpeq_epi8(p1, bytes(0xed))));
		err = _mm_or_si128(err, _mm_and_si128(_mm_cmpeq_epi8(p1,
		    bytes(0xf0)), le8f));
		err = _mm_or_si128(err, _mm_andnot_si128(le8f,
		    _mm_cmpeq_epi8(p1, bytes(0xf4))));
	}
	return _mm_movemask_epi8(err) != 0;
}

/* Bit k set if V[k] is '"', '\\' or a control. */
static unsigned
stops16(__m128i v)
{
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(
	    _mm_cmpeq_epi8(v, bytes('"')), _mm_cmpeq_epi8(v, bytes('\\'))),
	    _mm_cmpeq_epi8(_mm_min_epu8(v, bytes(0x1f)), v)));
}

/*
 * Is any of the 16 bytes V, or of the three before them (at P - 3), >=
 * 0x80?  If not, there is no UTF-8 to check.
 */
static int
non_ascii(const unsigned char *p, __m128i v)
{
	return _mm_movemask_epi8(_mm_or_si128(v, load16(p - 3))) != 0;
}

/* The stop bits of the 16 bytes at P, or -1 if UTF-8 breaks there. */
static long
block16(const unsigned char *p)
{
	const __m128i v = load16(p);

	if (non_ascii(p, v) && utf8_bad(p, 1))
		return -1;
	return stops16(v);
}

/*
 * The first stop at or after I ('"', '\\', a control), or LEN if none or
 * if UTF-8 breaks first.  A short string ends in the first 16 bytes; a
 * long one is read 64 bytes a step, each block checked as UTF-8 whole
 * (a valid body is UTF-8 throughout, so a break past the string refuses
 * it as rightly as one inside) and its stop bits kept in S for the
 * stops that follow.  Bytes with fewer than three before them, and the
 * last few, go one by one.
 */
static size_t
next_stop(const unsigned char *p, size_t len, size_t i, struct stops *s)
{
	__m128i		 a, b, c, d;
	long		 m;

	if (s->m != 0 && i - s->base < 64) {
		if ((s->m &= ~0ULL << (i - s->base)) != 0)
			return s->base + (size_t)__builtin_ctzll(s->m);
		i = s->base + 64;
	}
	for (; i < 3 && i < len; i++)
		if ((m = stop_at(p, i)) != 0)
			return m < 0 ? len : i;
	if (len - i >= 16) {
		if ((m = block16(p + i)) != 0)
			return m < 0 ? len : i + (size_t)__builtin_ctzl(m);
		i += 16;
		while (len - i >= 64) {
			a = load16(p + i);
			b = load16(p + i + 16);
			c = load16(p + i + 32);
			d = load16(p + i + 48);
			if (non_ascii(p + i, _mm_or_si128(_mm_or_si128(a, b),
			    _mm_or_si128(c, d))) && utf8_bad(p + i, 4))
				return len;
			s->m = (uint64_t)stops16(a) |
			    (uint64_t)stops16(b) << 16 |
			    (uint64_t)stops16(c) << 32 |
			    (uint64_t)stops16(d) << 48;
			if (s->m != 0) {
				s->base = i;
				return i + (size_t)__builtin_ctzll(s->m);
			}
			i += 64;
		}
		for (; len - i >= 16; i += 16)
			if ((m = block16(p + i)) != 0)
				return m < 0 ? len :
				    i + (size_t)__builtin_ctzl(m);
	}
	for (; i < len; i++)
		if ((m = stop_at(p, i)) != 0)
			return m < 0 ? len : i;
	return len;
}
#else
/* Bytes inside a string that are not simply copied: see str_end(). */
static int
is_stop(unsigned char c)
{
	return c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
}

/*
 * The first stop byte at or after I, or LEN; 16 bytes a step.  A word
 * holds one if a byte is zero after xor with '"' or '\\', or has its
 * high bit set as is or after subtracting 0x20; borrows only start at
 * such a byte, so the test has no false negatives and the byte loop
 * finds which one it was.  No block is kept.  (tests/fuzz/
 * fuzz_strict_portable.c runs this version where SSE2 is there.)
 */
static size_t
next_stop(const unsigned char *p, size_t len, size_t i, struct stops *st)
{
	uint64_t v, w, q, b, r, s;

	while (len - i >= 16) {
		memcpy(&v, p + i, 8);
		memcpy(&w, p + i + 8, 8);
		q = v ^ (ONES * '"');
		b = v ^ (ONES * '\\');
		r = w ^ (ONES * '"');
		s = w ^ (ONES * '\\');
		if ((((q - ONES) & ~q) | ((b - ONES) & ~b) |
		    (v - ONES * 0x20) | v | ((r - ONES) & ~r) |
		    ((s - ONES) & ~s) | (w - ONES * 0x20) | w) & HIGHS)
			break;
		i += 16;
	}
	while (i < len && !is_stop(p[i]))
		i++;
	return i;
}
#endif

static int
hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The four hex digits at P[I], or -1. */
static long
hex4(const unsigned char *p, size_t len, size_t i)
{
	long	 v = 0;
	int	 k, h;

	if (len - i < 4)
		return -1;
	for (k = 0; k < 4; k++) {
		if ((h = hex(p[i + k])) < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

/*
 * P[I] is a backslash: one past its escape, or 0.  A surrogate must come
 * as a high-low pair: Python keeps a lone one and Go replaces it, so the
 * two would read different strings.
 */
static size_t
escape_end(const unsigned char *p, size_t len, size_t i)
{
	long	 u, lo;

	if (len - i < 2)
		return 0;
	switch (p[i + 1]) {
	case '"': case '\\': case '/': case 'b': case 'f': case 'n':
	case 'r': case 't':
		return i + 2;
	case 'u':
		break;
	default:
		return 0;
	}
	if ((u = hex4(p, len, i + 2)) < 0)
		return 0;
	i += 6;
	if (u >= 0xdc00 && u <= 0xdfff)
		return 0;
	if (u < 0xd800 || u > 0xdbff)
		return i;
	if (len - i < 6 || p[i] != '\\' || p[i + 1] != 'u' ||
	    (lo = hex4(p, len, i + 2)) < 0xdc00 || lo > 0xdfff)
		return 0;
	return i + 6;
}

/*
 * P[I] >= 0x80: the length of the UTF-8 sequence there, or 0 if it is
 * not the shortest form of a scalar value (no overlongs, no surrogates,
 * nothing past U+10FFFF): the table in RFC 3629 section 4, where only
 * the second byte's range depends on the first.
 */
static size_t
utf8_len(const unsigned char *p, size_t len, size_t i)
{
	unsigned	 c = p[i], d;
	size_t		 n;
	int		 ok;

	if (len - i < 2)
		return 0;
	d = p[i + 1];
	if (c < 0xe0) {
		ok = c >= 0xc2;
		n = 2;
	} else if (c < 0xf0) {
		ok = (c != 0xe0 || d >= 0xa0) && (c != 0xed || d < 0xa0);
		n = 3;
	} else {
		ok = c < 0xf5 && (c != 0xf0 || d >= 0x90) &&
		    (c != 0xf4 || d < 0x90);
		n = 4;
	}
	if (!ok || (d & 0xc0) != 0x80 || len - i < n)
		return 0;
	if (n > 2 && (p[i + 2] & 0xc0) != 0x80)
		return 0;
	if (n > 3 && (p[i + 3] & 0xc0) != 0x80)
		return 0;
	return n;
}

/* P[I] is '"': one past the closing quote, or 0 if the string is bad. */
static size_t
str_end(const unsigned char *p, size_t len, size_t i)
{
	struct stops	 st = { 0, 0 };
	size_t		 n;

	i++;
	for (;;) {
		if ((i = next_stop(p, len, i, &st)) == len)
			return 0;
		if (p[i] == '"')
			return i + 1;
		if (p[i] < 0x20)
			return 0;
		if (p[i] == '\\') {
			if ((i = escape_end(p, len, i)) == 0)
				return 0;
			continue;
		}
		/*
		 * A byte >= 0x80, where the portable next_stop() leaves the
		 * UTF-8 to this loop.  Text in another script is mostly such
		 * sequences in a row, CJK mostly 3-byte ones that need no
		 * range check: a loop of its own, where the next index does
		 * not wait for the bytes to be checked.
		 */
		for (;;) {
			while (len - i >= 3 && p[i] - 0xe1u <= 0xefu - 0xe1u &&
			    p[i] != 0xed && (p[i + 1] & 0xc0) == 0x80 &&
			    (p[i + 2] & 0xc0) == 0x80)
				i += 3;
			if (i == len || p[i] < 0x80)
				break;
			if ((n = utf8_len(p, len, i)) == 0)
				return 0;
			i += n;
		}
	}
}

/* P[I] starts a number: one past it, or 0 if it breaks the grammar. */
static size_t
number_end(const unsigned char *p, size_t len, size_t i)
{
	if (p[i] == '-')
		i++;
	if (i == len)
		return 0;
	if (p[i] == '0')
		i++;
	else if (is_digit(p[i]))
		while (++i < len && is_digit(p[i]))
			;
	else
		return 0;
	if (i < len && p[i] == '.') {
		if (++i == len || !is_digit(p[i]))
			return 0;
		while (++i < len && is_digit(p[i]))
			;
	}
	if (i < len && (p[i] == 'e' || p[i] == 'E')) {
		if (++i < len && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i == len || !is_digit(p[i]))
			return 0;
		while (++i < len && is_digit(p[i]))
			;
	}
	return i;
}

static size_t
literal_end(const unsigned char *p, size_t len, size_t i, const char *lit)
{
	size_t n = strlen(lit);

	return len - i >= n && memcmp(p + i, lit, n) == 0 ? i + n : 0;
}

/* Append code point CP as UTF-8 to OUT (CAP bytes) at N; the new N. */
static size_t
utf8_put(unsigned char *out, size_t cap, size_t n, unsigned long cp)
{
	unsigned char	 b[4];
	size_t		 k, m;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		m = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		m = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		m = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		m = 4;
	}
	for (k = 0; k < m; k++, n++)
		if (n < cap)
			out[n] = b[k];
	return n;
}

/*
 * Decode the string token P[S..E), already validated, into OUT.  The
 * decoded length; past CAP, a length over CAP (decoding stops there).
 * UTF-8 is valid already, so only escapes need decoding.
 */
static size_t
str_decode(const unsigned char *p, size_t s, size_t e, unsigned char *out,
    size_t cap)
{
	static const char	 from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	size_t			 n = 0;
	unsigned long		 cp;
	const char		*c;

	for (s++, e--; s < e && n <= cap; ) {
		if (p[s] != '\\') {
			if (n < cap)
				out[n] = p[s];
			n++;
			s++;
			continue;
		}
		if (p[s + 1] != 'u') {
			c = strchr(from, p[s + 1]);
			n = utf8_put(out, cap, n, (unsigned char)to[c - from]);
			s += 2;
			continue;
		}
		cp = (unsigned long)hex4(p, e, s + 2);
		s += 6;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			cp = 0x10000 + ((cp - 0xd800) << 10) +
			    ((unsigned long)hex4(p, e, s + 2) - 0xdc00);
			s += 6;
		}
		n = utf8_put(out, cap, n, cp);
	}
	return n;
}

/*
 * Fold the decoded key K (N bytes) in place the way the most forgiving
 * upstream parsers compare names: ASCII case; the non-ASCII letters
 * whose case mapping lands in ASCII (Go's encoding/json and Java's
 * equalsIgnoreCase take U+0130 and U+0131 for i, U+017F for s, U+212A
 * for k); and a cut at the first NUL, as C strings do.  The new length.
 */
static size_t
key_fold(unsigned char *k, size_t n)
{
	size_t	 i, o;

	for (i = o = 0; i < n && k[i] != '\0'; ) {
		if (k[i] >= 'A' && k[i] <= 'Z') {
			k[o++] = k[i++] | 0x20;
		} else if (n - i >= 2 && k[i] == 0xc4 &&
		    (k[i + 1] == 0xb0 || k[i + 1] == 0xb1)) {
			k[o++] = 'i';
			i += 2;
		} else if (n - i >= 2 && k[i] == 0xc5 && k[i + 1] == 0xbf) {
			k[o++] = 's';
			i += 2;
		} else if (n - i >= 3 && k[i] == 0xe2 && k[i + 1] == 0x84 &&
		    k[i + 2] == 0xaa) {
			k[o++] = 'k';
			i += 3;
		} else
			k[o++] = k[i++];
	}
	return o;
}

/*
 * Key K (N bytes) against field name F: 2 if equal, 1 if equal but for
 * ASCII case, else 0.  Reads no more of K than F is long, plus one.
 */
static int
key_cmp(const unsigned char *k, size_t n, const char *f)
{
	size_t		 i;
	unsigned char	 a, b;
	int		 exact = 1;

	for (i = 0; i < n; i++) {
		if ((b = (unsigned char)f[i]) == '\0')
			return 0;
		if ((a = k[i]) == b)
			continue;
		if (a >= 'A' && a <= 'Z')
			a |= 0x20;
		if (b >= 'A' && b <= 'Z')
			b |= 0x20;
		if (a != b)
			return 0;
		exact = 0;
	}
	if (f[n] != '\0')
		return 0;
	return exact ? 2 : 1;
}

static void
finding(struct reader *r, enum json_strict_rc rc, size_t off, int field)
{
	if (r->rc != JSON_STRICT_OK)
		return;
	r->rc = rc;
	r->err.off = off;
	r->err.field = field;
}

/*
 * The top-level key token P[S..E): the index of the field it names, or
 * -1.  Most keys are plain ASCII and are compared as they stand; the
 * others are decoded, then folded.  Every fold maps at most 3 bytes to
 * 1, so a key whose first KEY_BUF decoded bytes hold no NUL cannot fold
 * down to a field.
 */
static int
key_match(struct reader *r, size_t s, size_t e)
{
	unsigned char		 buf[KEY_BUF];
	const unsigned char	*k = r->p + s + 1;
	size_t			 n = e - s - 2, j;
	int			 f, c;

	for (j = 0; j < n && k[j] != '\\' && k[j] < 0x80; j++)
		;
	if (j < n) {
		n = str_decode(r->p, s, e, buf, sizeof(buf));
		k = buf;
	}
	for (f = 0; f < r->nf; f++) {
		if ((c = key_cmp(k, n, r->f[f].key)) == 0)
			continue;
		if (c == 1)
			finding(r, JSON_STRICT_CASE_VARIANT, s, f);
		else if (r->f[f].type != JV_NONE)
			finding(r, JSON_STRICT_DUPLICATE, s, f);
		else
			return f;
		return -1;
	}
	if (k != buf)
		return -1;
	n = key_fold(buf, n > sizeof(buf) ? sizeof(buf) : n);
	for (f = 0; f < r->nf; f++)
		if (key_cmp(buf, n, r->f[f].key) != 0) {
			finding(r, JSON_STRICT_CASE_VARIANT, s, f);
			break;
		}
	return -1;
}

/* Field F's value is the token P[S..E) of type T. */
static void
record(struct reader *r, int f, enum json_vtype t, size_t s, size_t e)
{
	struct json_strict_field	*fl = &r->f[f];
	const unsigned char		*d;
	size_t				 i, cap;

	fl->type = t;
	fl->start = s;
	fl->end = e;
	if (t != JV_STRING || fl->buf == NULL || fl->bufsize == 0)
		return;
	cap = fl->bufsize - 1;
	fl->len = str_decode(r->p, s, e, (unsigned char *)fl->buf, cap);
	if (fl->len > cap) {
		fl->len = 0;
		fl->buf[0] = '\0';
		finding(r, JSON_STRICT_TOO_LONG, s, f);
		return;
	}
	fl->buf[fl->len] = '\0';
	d = (const unsigned char *)fl->buf;
	for (i = 0; i < fl->len && d[i] >= 0x21 && d[i] <= 0x7e; i++)
		;
	fl->printable = fl->len > 0 && i == fl->len;
}

/* Is the innermost of the DEPTH open containers an object? */
static int
in_object(const uint64_t *obj, int depth)
{
	return (obj[(depth - 1) / 64] >> (depth - 1) % 64 & 1) != 0;
}

/*
 * The grammar.  DEPTH counts open containers; bit d of OBJ says whether
 * the one at depth d + 1 is an object.  PEND is the field whose value
 * is being read at the top level (-1 for none): if that value is a
 * container, its start and type (VS, PT) wait for its close at depth 1.
 * The offset where the input stops being JSON, or LEN + 1 if it is one
 * valid object.
 */
static size_t
parse(struct reader *r)
{
	const unsigned char	*p = r->p;
	size_t			 len = r->len, i, s = 0, vs = 0;
	uint64_t		 obj[JSON_STRICT_MAX_DEPTH / 64] = { 0 };
	int			 depth, pend = -1, isobj;
	enum json_vtype		 vt, pt = JV_NONE;

	i = skip_ws(p, len, 0);
	if (i == len || p[i] != '{')
		return i;
	depth = 0;
	goto open;

member:
	i = skip_ws(p, len, i);
	if (i == len || p[i] != '"')
		return i;
	s = i;
	if ((i = str_end(p, len, i)) == 0)
		return s;
	if (depth == 1)
		pend = key_match(r, s, i);
	i = skip_ws(p, len, i);
	if (i == len || p[i] != ':')
		return i;
	i++;

value:
	i = skip_ws(p, len, i);
	if (i == len)
		return i;
	s = i;
	switch (p[i]) {
	case '{':
	case '[':
		goto open;
	case '"':
		i = str_end(p, len, i);
		vt = JV_STRING;
		break;
	case 't':
		i = literal_end(p, len, i, "true");
		vt = JV_TRUE;
		break;
	case 'f':
		i = literal_end(p, len, i, "false");
		vt = JV_FALSE;
		break;
	case 'n':
		i = literal_end(p, len, i, "null");
		vt = JV_NULL;
		break;
	default:
		if (p[i] != '-' && !is_digit(p[i]))
			return i;
		i = number_end(p, len, i);
		vt = JV_NUMBER;
		break;
	}
	if (i == 0)
		return s;
	if (depth == 1 && pend >= 0) {
		record(r, pend, vt, s, i);
		pend = -1;
	}

after:
	i = skip_ws(p, len, i);
	if (i == len)
		return i;
	if (p[i] == ',') {
		i++;
		if (in_object(obj, depth))
			goto member;
		goto value;
	}
	if (p[i] != (in_object(obj, depth) ? '}' : ']'))
		return i;

close:
	i++;
	if (--depth == 0) {
		i = skip_ws(p, len, i);
		return i == len ? len + 1 : i;
	}
	if (depth == 1 && pend >= 0) {
		record(r, pend, pt, vs, i);
		pend = -1;
	}
	goto after;

open:
	if (depth == JSON_STRICT_MAX_DEPTH)
		return i;
	isobj = p[i] == '{';
	if (isobj)
		obj[depth / 64] |= 1ULL << depth % 64;
	else
		obj[depth / 64] &= ~(1ULL << depth % 64);
	if (depth++ == 1 && pend >= 0) {
		vs = s;
		pt = isobj ? JV_OBJECT : JV_ARRAY;
	}
	i = skip_ws(p, len, i + 1);
	if (i < len && p[i] == (isobj ? '}' : ']'))
		goto close;
	if (isobj)
		goto member;
	goto value;
}

enum json_strict_rc
json_strict_read(const char *js, size_t len, struct json_strict_field *fields,
    int nfields, struct json_strict_err *err)
{
	struct reader	 r;
	size_t		 at;
	int		 f;

	for (f = 0; f < nfields; f++) {
		fields[f].type = JV_NONE;
		fields[f].start = fields[f].end = fields[f].len = 0;
		fields[f].printable = 0;
		if (fields[f].buf != NULL && fields[f].bufsize > 0)
			fields[f].buf[0] = '\0';
	}
	r.p = (const unsigned char *)js;
	r.len = len;
	r.f = fields;
	r.nf = nfields;
	r.rc = JSON_STRICT_OK;
	r.err.off = 0;
	r.err.field = -1;
	if ((at = parse(&r)) <= len) {
		r.rc = JSON_STRICT_INVALID;
		r.err.off = at;
		r.err.field = -1;
	}
	if (err != NULL)
		*err = r.err;
	return r.rc;
}
