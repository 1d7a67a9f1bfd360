/*
 * http.c - strict HTTP/1.x head parsing and chunked decoding.
 *
 * Hand-written rather than evhttp's because the proxy needs what evhttp
 * does not give: 431 versus 413, errors in the caller's JSON, smuggling
 * defences, and no allocation per header.  Every function here is pure
 * over its input and fuzzed by tests/fuzz/fuzz_http.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/hex.h"
#include "worker/http.h"

/* RFC 9110 5.6.2 tchar */
static const unsigned char tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
	['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1,
};

/* Does the comma-separated token list V contain TOKEN (TLEN bytes)? */
static int
list_has_n(const char *v, size_t len, const char *token, size_t tlen)
{
	size_t i = 0, s, e;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < len && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tlen && strncasecmp(v + s, token, tlen) == 0)
			return 1;
	}
	return 0;
}

static int
list_has(const char *v, size_t len, const char *token)
{
	return list_has_n(v, len, token, strlen(token));
}

static int
parse_content_length(const char *v, size_t len, int64_t *out)
{
	int64_t x = 0;
	size_t	i;

	if (len == 0 || len > 18)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	*out = x;
	return 0;
}

/* A byte a field value may not hold: a control other than HTAB, or DEL. */
static int
is_ctl(unsigned char ch)
{
	return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

/*
 * The first is_ctl() byte from P, or END.  A value ends at its CR, so
 * this one pass both finds the end of the line and checks the value,
 * 16 bytes a step where SSE2 is there.
 */
static const char *
ctl_find(const char *p, const char *end)
{
#if defined(__SSE2__)
	const __m128i	 low = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
	const __m128i	 tab = _mm_set1_epi8('\t');

	while (end - p >= 16) {
		__m128i	 v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i	 c = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, low),
			    v), _mm_cmpeq_epi8(v, del));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_andnot_si128(
			    _mm_cmpeq_epi8(v, tab), c));

		if (m != 0)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	for (; p < end; p++)
		if (is_ctl((unsigned char)*p))
			return p;
	return end;
}

/*
 * Header lines from P to END (END is just past the final CRLFCRLF).
 * Returns 0 or an HTTP status.
 */
static int
parse_headers(const char *p, const char *end, struct http_head *hh)
{
	int seen_te = 0, seen_cl = 0;

	hh->nh = 0;
	hh->content_length = -1;
	while (p < end) {
		const char *line = p, *colon, *eol, *vs, *ve;

		if (*line == '\r')	/* the empty line */
			return end - p == 2 && p[1] == '\n' ? 0 : 400;
		if (*line == ' ' || *line == '\t')
			return 400;	/* obsolete line folding */
		for (colon = line; colon < end && tchar[(unsigned char)*colon];
		    colon++)
			;
		if (colon == line || colon == end || *colon != ':')
			return 400;	/* empty name, bad char, space before ':' */
		vs = colon + 1;
		while (vs < end && (*vs == ' ' || *vs == '\t'))
			vs++;
		/* the line's CR, unless a control comes first (a bare LF,
		 * a NUL): then the value holds it, and the head is refused */
		eol = ctl_find(vs, end);
		if (end - eol < 2 || eol[0] != '\r' || eol[1] != '\n')
			return 400;
		ve = eol;
		while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (hh->nh == HTTP_MAX_HEADERS)
			return 431;
		if (colon - line > 0xffff)
			return 431;
		hh->h[hh->nh].name = line;
		hh->h[hh->nh].name_len = (uint16_t)(colon - line);
		hh->h[hh->nh].value = vs;
		hh->h[hh->nh].value_len = (uint32_t)(ve - vs);

		if (http_name_is(line, colon - line, "content-length")) {
			if (seen_cl++ ||
			    parse_content_length(vs, ve - vs, &hh->content_length))
				return 400;
		} else if (http_name_is(line, colon - line, "transfer-encoding")) {
			if (seen_te++)
				return 400;
			if (!http_name_is(vs, ve - vs, "chunked"))
				return 501;
			hh->chunked = 1;
		} else if (http_name_is(line, colon - line, "connection")) {
			if (hh->conn_hdr == 0)
				hh->conn_hdr = hh->nh + 1;
			if (list_has(vs, ve - vs, "close"))
				hh->conn_close = 1;
			if (list_has(vs, ve - vs, "keep-alive"))
				hh->conn_keepalive = 1;
		} else if (http_name_is(line, colon - line, "expect")) {
			if (http_name_is(vs, ve - vs, "100-continue"))
				hh->expect_continue = 1;
		}
		hh->nh++;
		p = eol + 2;
	}
	return 400;
}

static int
parse_version(const char *p, const char *e, int *minor)
{
	if (e - p != 8 || memcmp(p, "HTTP/1.", 7) != 0)
		return -1;
	if (p[7] != '0' && p[7] != '1')
		return -1;
	*minor = p[7] - '0';
	return 0;
}

int
http_parse_request(const char *buf, size_t len, size_t max_line,
    struct http_head *hh)
{
	const char	*end = buf + len, *eol, *sp1, *sp2, *p;
	int		 rc;

	memset(hh, 0, offsetof(struct http_head, h));
	hh->nh = 0;
	if (len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
		return 400;
	eol = memchr(buf, '\r', len);
	if (eol == NULL || eol[1] != '\n')
		return 400;
	if ((size_t)(eol - buf) > max_line)
		return 414;
	for (p = buf; p < eol && tchar[(unsigned char)*p]; p++)
		;
	if (p == buf || p == eol || *p != ' ')
		return 400;
	sp1 = p;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (sp2 == NULL || sp2 == sp1 + 1)
		return 400;
	for (p = sp1 + 1; p < sp2; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
			return 400;
	hh->method = buf;
	hh->method_len = (size_t)(sp1 - buf);
	hh->target = sp1 + 1;
	hh->target_len = (size_t)(sp2 - sp1 - 1);
	p = memchr(hh->target, '?', hh->target_len);
	hh->path_len = p ? (size_t)(p - hh->target) : hh->target_len;
	if (parse_version(sp2 + 1, eol, &hh->minor) == -1) {
		const char *v = sp2 + 1, *c;

		/* "HTTP/" and printable text: another version, 505; else 400 */
		if (eol - v < 5 || memcmp(v, "HTTP/", 5) != 0)
			return 400;
		for (c = v; c < eol; c++)
			if ((unsigned char)*c <= 0x20 ||
			    (unsigned char)*c >= 0x7f)
				return 400;
		return 505;
	}
	if ((rc = parse_headers(eol + 2, end, hh)) != 0)
		return rc;
	if (hh->chunked && hh->content_length >= 0)
		return 400;	/* RFC 9112 6.3: a smuggling attempt */
	if (hh->chunked && hh->minor == 0)
		return 400;
	return 0;
}

int
http_parse_response(const char *buf, size_t len, struct http_head *hh)
{
	const char	*end = buf + len, *eol;
	int		 st;

	memset(hh, 0, offsetof(struct http_head, h));
	hh->nh = 0;
	if (len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
		return -1;
	eol = memchr(buf, '\r', len);
	if (eol == NULL || eol - buf < 12 || eol[1] != '\n')
		return -1;
	if (parse_version(buf, buf + 8, &hh->minor) == -1 || buf[8] != ' ')
		return -1;
	if (buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' ||
	    buf[11] < '0' || buf[11] > '9')
		return -1;
	if (eol - buf > 12 && buf[12] != ' ')
		return -1;
	st = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	hh->status = st;
	hh->target = eol - buf > 13 ? buf + 13 : eol;	/* reason phrase */
	hh->target_len = (size_t)(eol - hh->target);
	/* RFC 9112 4: HTAB, SP, VCHAR, obs-text; it is sent on verbatim */
	for (const char *c = hh->target; c < eol; c++) {
		unsigned char ch = (unsigned char)*c;

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -1;
	}
	if (parse_headers(eol + 2, end, hh) != 0)
		return -1;
	if (hh->chunked && hh->content_length >= 0)
		return -1;
	return 0;
}

const struct http_header *
http_find(const struct http_head *hh, const char *name)
{
	int i;

	for (i = 0; i < hh->nh; i++)
		if (http_name_is(hh->h[i].name, hh->h[i].name_len, name))
			return &hh->h[i];
	return NULL;
}

int
http_is_hop_by_hop(const struct http_head *hh, const struct http_header *h)
{
	const struct http_header	*c;
	const char			*n = h->name;
	size_t				 l = h->name_len;

	/* literals, so that each costs a length compare (http_name_is) */
	if (http_name_is(n, l, "connection") ||
	    http_name_is(n, l, "keep-alive") ||
	    http_name_is(n, l, "proxy-connection") ||
	    http_name_is(n, l, "te") ||
	    http_name_is(n, l, "trailer") ||
	    http_name_is(n, l, "transfer-encoding") ||
	    http_name_is(n, l, "upgrade") ||
	    http_name_is(n, l, "proxy-authorization") ||
	    http_name_is(n, l, "proxy-authenticate"))
		return 1;
	/* the first Connection header, as http_find would find it */
	if (hh->conn_hdr == 0)
		return 0;
	c = &hh->h[hh->conn_hdr - 1];
	/* a name of any length: one too long to test must not pass */
	return list_has_n(c->value, c->value_len, h->name, h->name_len);
}

/* The first CRLFCRLF in the N bytes at P, or NULL; 16 places a step. */
static const char *
crlf2_find(const char *p, size_t n)
{
	size_t	 i = 0;

#if defined(__SSE2__)
	const __m128i	 cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');

	for (; n - i >= 19; i += 16) {
		const char	*s = p + i;
		__m128i		 a = _mm_loadu_si128((const __m128i *)(const void *)s);
		__m128i		 b = _mm_loadu_si128((const __m128i *)(const void *)(s + 1));
		__m128i		 c = _mm_loadu_si128((const __m128i *)(const void *)(s + 2));
		__m128i		 d = _mm_loadu_si128((const __m128i *)(const void *)(s + 3));
		unsigned	 m = (unsigned)_mm_movemask_epi8(_mm_and_si128(
				    _mm_and_si128(_mm_cmpeq_epi8(a, cr),
				    _mm_cmpeq_epi8(b, lf)), _mm_and_si128(
				    _mm_cmpeq_epi8(c, cr), _mm_cmpeq_epi8(d, lf))));

		if (m != 0)
			return s + __builtin_ctz(m);
	}
#endif
	for (; n - i >= 4; i++)
		if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' &&
		    p[i + 3] == '\n')
			return p + i;
	return NULL;
}

int
http_head_take(struct evbuffer *in, size_t *scanned, size_t max, char **buf,
    size_t *cap, size_t *len)
{
	struct evbuffer_ptr	 start, found;
	struct evbuffer_iovec	 v;
	size_t			 avail = evbuffer_get_length(in), from, hlen;
	const char		*q;

	from = *scanned > 3 ? *scanned - 3 : 0;
	/*
	 * A head most often sits in the input's first chain: searched
	 * there by crlf2_find (evbuffer_search goes a memchr and a compare
	 * per CR, and was a twentieth of a small request's instructions);
	 * across chains, evbuffer_search.
	 */
	if (evbuffer_peek(in, -1, NULL, &v, 1) == 1 && v.iov_len == avail) {
		q = from < avail ? crlf2_find((const char *)v.iov_base + from,
		    avail - from) : NULL;
		found.pos = q == NULL ? -1 : q - (const char *)v.iov_base;
	} else {
		evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET);
		found = evbuffer_search(in, "\r\n\r\n", 4, &start);
	}
	if (found.pos == -1) {
		*scanned = avail;
		return avail > max ? -1 : 0;
	}
	hlen = (size_t)found.pos + 4;
	if (hlen > max)
		return -1;
	if (*cap < hlen) {
		char *n = realloc(*buf, hlen);

		if (n == NULL)
			return -2;
		*buf = n;
		*cap = hlen;
	}
	evbuffer_remove(in, *buf, hlen);
	*scanned = 0;
	*len = hlen;
	return 1;
}

void
http_out_flush(struct http_out *o)
{
	if (o->n > 0)
		evbuffer_add(o->to, o->b, o->n);
	o->n = 0;
}

void
http_out_spill(struct http_out *o, const void *s, size_t n)
{
	http_out_flush(o);
	if (n > sizeof(o->b))
		evbuffer_add(o->to, s, n);
	else {
		memcpy(o->b, s, n);
		o->n = n;
	}
}

void
http_out_header(struct http_out *o, const struct http_header *h)
{
	http_out_put(o, h->name, h->name_len);
	http_out_put(o, ": ", 2);
	http_out_put(o, h->value, h->value_len);
	http_out_put(o, "\r\n", 2);
}

/* For a writer without an http_out (the translation stage's). */
void
http_put_header(struct evbuffer *out, const struct http_header *h)
{
	evbuffer_add(out, h->name, h->name_len);
	evbuffer_add(out, ": ", 2);
	evbuffer_add(out, h->value, h->value_len);
	evbuffer_add(out, "\r\n", 2);
}

const char *
http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 529: return "Site Overloaded";
	default: return "Unknown";
	}
}

/* Longest chunk-size line we accept, extensions included. */
#define CHUNK_LINE_MAX	1024

/*
 * The length of the line at the start of the N bytes at B, up to its
 * CRLF, or -1 if they hold no CRLF.
 */
static long
crlf_line(const char *b, size_t n)
{
	const char *cr = b;

	while ((cr = memchr(cr, '\r', n - (size_t)(cr - b))) != NULL) {
		if ((size_t)(cr - b) + 1 < n && cr[1] == '\n')
			return cr - b;
		cr++;
	}
	return -1;
}

long
chunked_decode(struct chunked *ck, struct evbuffer *in, struct evbuffer *out)
{
	long	 moved = 0;

	for (;;) {
		size_t			 avail = evbuffer_get_length(in);
		size_t			 n, i, look;
		const char		*line;
		char			 crlf[2];
		long			 eol;
		uint64_t		 size;
		int			 digits, v, bad;

		switch (ck->state) {
		case CHUNK_SIZE:
		case CHUNK_TRAILER:
			/*
			 * A line that ends within CHUNK_LINE_MAX has its CRLF
			 * in the first CHUNK_LINE_MAX + 2 bytes: read them in
			 * place (made contiguous if they are not) rather than
			 * searched with evbuffer_search_eol and copied out.
			 */
			look = avail < CHUNK_LINE_MAX + 2 ? avail :
			    CHUNK_LINE_MAX + 2;
			if (look == 0)
				return moved;
			if ((line = (const char *)evbuffer_pullup(in,
			    (ev_ssize_t)look)) == NULL)
				return -1;
			if ((eol = crlf_line(line, look)) == -1) {
				if (avail > CHUNK_LINE_MAX)
					return -1;
				return moved;
			}
			n = (size_t)eol;
			if (ck->state == CHUNK_TRAILER) {
				evbuffer_drain(in, n + 2);
				if (n == 0)
					ck->state = CHUNK_DONE;
				continue;
			}
			size = 0;
			digits = 0;
			for (i = 0; i < n && digits <= 15 &&
			    (v = hex_digit((unsigned char)line[i])) >= 0; i++) {
				digits++;
				size = size * 16 + (uint64_t)v;
			}
			/* chunk extensions are allowed and ignored */
			bad = digits == 0 || digits > 15 || (i < n &&
			    line[i] != ';' && line[i] != ' ' && line[i] != '\t');
			evbuffer_drain(in, n + 2);	/* LINE is gone */
			if (bad)
				return -1;
			if (size == 0) {
				ck->state = CHUNK_TRAILER;
				continue;
			}
			ck->remaining = size;
			ck->state = CHUNK_DATA;
			continue;
		case CHUNK_DATA:
			if (avail == 0)
				return moved;
			n = avail < ck->remaining ? avail : (size_t)ck->remaining;
			if (evbuffer_remove_buffer(in, out, n) != (int)n)
				return -1;
			moved += (long)n;
			ck->remaining -= n;
			if (ck->remaining == 0)
				ck->state = CHUNK_DATA_CRLF;
			continue;
		case CHUNK_DATA_CRLF:
			if (avail < 2)
				return moved;
			evbuffer_copyout(in, crlf, 2);
			if (crlf[0] != '\r' || crlf[1] != '\n')
				return -1;
			evbuffer_drain(in, 2);
			ck->state = CHUNK_SIZE;
			continue;
		case CHUNK_DONE:
			return moved;
		}
	}
}
