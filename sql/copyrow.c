/*
 * copyrow.c - usage events in PostgreSQL's binary COPY format.
 *
 * Binary rather than text COPY because there is nothing to escape and
 * nothing for the server to parse: a row is a field count and, per field,
 * a 32-bit length (-1 for NULL) and the value in the type's send format,
 * all big-endian.  The catch is that the server still validates each
 * value as it receives it, and a single refusal fails the whole COPY, so
 * everything an event may hold that the server would refuse is turned
 * into something it accepts here: text that is not UTF-8 (a model name
 * cut mid-character to fit its slot, or bytes a client sent), a ts_start
 * outside timestamptz's range, an address inet_recv would reject.  The
 * shape of each value is PostgreSQL's: timestamptz is int8 microseconds
 * since 2000-01-01, inet is family, bits, is_cidr, length, address.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "sql/copyrow.h"

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_US		INT64_C(946684800000000)
/* 9999-12-31T23:59:59.999999Z: the clamp for a garbage ts_start. */
#define TS_MAX_US		INT64_C(253402300799999999)

/* Wire values of inet's address family, PGSQL_AF_INET{,6} in PostgreSQL. */
#define PG_AF_INET		2
#define PG_AF_INET6		3

#define COPY_NULL		UINT32_MAX	/* the length of a NULL */

static char	*put_u32(char *, uint32_t);
static char	*put_u16_field(char *, uint16_t);
static char	*put_i64_field(char *, int64_t, int);
static char	*put_text_field(char *, const char *, size_t, int);
static char	*put_tags_field(char *, const char *, size_t);
static char	*put_inet_field(char *, const char *, size_t);

size_t
copy_header(char *buf)
{
	static const char hdr[] = "PGCOPY\n\377\r\n\0"
	    "\0\0\0\0"		/* flags */
	    "\0\0\0\0";		/* header extension length */

	_Static_assert(sizeof(hdr) - 1 == COPY_HEADER_LEN, "PGCOPY header");
	memcpy(buf, hdr, COPY_HEADER_LEN);
	return COPY_HEADER_LEN;
}

size_t
copy_trailer(char *buf)
{
	buf[0] = '\377';	/* a field count of -1 */
	buf[1] = '\377';
	return COPY_TRAILER_LEN;
}

int64_t
copy_ts_us(const struct usage_event *ev)
{
	if (ev->ts_start_us < 0)
		return 0;
	if (ev->ts_start_us > TS_MAX_US)
		return TS_MAX_US;
	return ev->ts_start_us;
}

size_t
copy_row(char *buf, const struct usage_event *ev)
{
	static const char *const sources[] = { "none", "upstream",
	    "estimated" };
	char		*p = buf;
	const char	*src;
	int64_t		 ts;
	uint16_t	 u16;
	size_t		 len;

	u16 = htons(COPY_NFIELDS);
	memcpy(p, &u16, 2), p += 2;

	p = put_u32(p, 16);				/* request_id */
	memcpy(p, ev->request_id, 16), p += 16;

	ts = copy_ts_us(ev);				/* ts_start */
	p = put_i64_field(p, ts - PG_EPOCH_US, 0);

	p = put_text_field(p, ev->key_name, sizeof(ev->key_name), 1);
	p = put_text_field(p, ev->model, sizeof(ev->model), 0);
	p = put_text_field(p, ev->upstream, sizeof(ev->upstream), 1);
	p = put_text_field(p, ev->endpoint, sizeof(ev->endpoint), 0);

	p = put_u32(p, 1);				/* stream */
	*p++ = ev->stream != 0;

	p = put_u16_field(p, ev->status);
	p = put_text_field(p, ev->error_class, sizeof(ev->error_class), 1);
	p = put_i64_field(p, ev->prompt_tokens, 1);
	p = put_i64_field(p, ev->completion_tokens, 1);
	p = put_i64_field(p, ev->cached_tokens, 1);
	p = put_i64_field(p, ev->cost_micro_usd, 1);

	/* usage_source: the CHECK constraint allows these three only */
	src = ev->usage_source < 3 ? sources[ev->usage_source] : "none";
	len = strlen(src);
	p = put_u32(p, (uint32_t)len);
	memcpy(p, src, len), p += len;

	p = put_u16_field(p, ev->attempts);
	p = put_i64_field(p, ev->bytes_in, 1);
	p = put_i64_field(p, ev->bytes_out, 1);
	p = put_i64_field(p, ev->latency_us, 1);
	p = put_i64_field(p, ev->ttfb_us, 1);
	p = put_i64_field(p, ev->overhead_us, 1);
	p = put_inet_field(p, ev->client_addr, sizeof(ev->client_addr));

	p = put_u32(p, 4);				/* worker_pid */
	p = put_u32(p, (uint32_t)ev->worker_pid);
	p = put_text_field(p, ev->client_request_id,
	    sizeof(ev->client_request_id), 1);
	p = put_text_field(p, ev->anthropic_beta, sizeof(ev->anthropic_beta), 1);
	p = put_i64_field(p, ev->cache_write_5m_tokens, 1);
	p = put_i64_field(p, ev->cache_write_1h_tokens, 1);
	p = put_i64_field(p, ev->reasoning_tokens, 1);
	p = put_text_field(p, ev->served_model, sizeof(ev->served_model), 1);
	p = put_text_field(p, ev->client_format, sizeof(ev->client_format), 1);
	p = put_text_field(p, ev->upstream_format, sizeof(ev->upstream_format),
	    1);
	p = put_text_field(p, ev->team, sizeof(ev->team), 1);
	p = put_text_field(p, ev->end_user, sizeof(ev->end_user), 1);
	p = put_tags_field(p, ev->tags, sizeof(ev->tags));
	p = put_u32(p, 1);				/* cache_hit */
	*p++ = ev->cache_hit != 0;
	/* what a hit saved; NULL for a request that was not one */
	p = put_i64_field(p, ev->cache_hit ? ev->cost_saved_micro_usd : -1, 1);

	return (size_t)(p - buf);
}

static char *
put_u32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
	return p + 4;
}

/* An int2 field: status and attempts, both unsigned in the event. */
static char *
put_u16_field(char *p, uint16_t v)
{
	p = put_u32(p, 2);
	v = htons(v);
	memcpy(p, &v, 2);
	return p + 2;
}

/* An int8 field; with NEG_NULL a negative value is NULL. */
static char *
put_i64_field(char *p, int64_t v, int neg_null)
{
	uint64_t	 u = (uint64_t)v;
	int		 i;

	if (neg_null && v < 0)
		return put_u32(p, COPY_NULL);
	p = put_u32(p, 8);
	for (i = 7; i >= 0; i--, u >>= 8)
		p[i] = (char)(u & 0xff);
	return p + 8;
}

/*
 * A text field from a fixed-width, maybe unterminated string.  Bytes that
 * are not valid UTF-8 (as PostgreSQL's pg_utf8_islegal sees it: no
 * overlong forms, no surrogates, nothing past U+10FFFF) become '?', one
 * for one, so the field never grows.  A NUL, which text cannot hold,
 * cannot occur: it ends the string.  With EMPTY_NULL, "" is NULL.
 */
/*
 * TAGS ("a,b,c") as a one-dimensional text[] in array_send's format:
 * dimensions, a has-nulls flag, the element type, then for the one
 * dimension its size and lower bound, then each element.  At most
 * EV_TAGS_MAX elements of at most EV_TAG_MAX bytes (their ends); a byte
 * that is not printable ASCII becomes '?' (the worker lets neither
 * through; the row never carries them).
 */
static char *
put_tags_field(char *p, const char *tags, size_t max)
{
	size_t	 len = strnlen(tags, max), i, start;
	char	*lenp = p, *nump, *el;
	uint32_t n = 0;

	for (i = 0; i < len && tags[i] == ','; i++)
		;
	if (i == len)		/* nothing but commas: no tags */
		return put_u32(p, COPY_NULL);
	p += 4;
	p = put_u32(p, 1);		/* one dimension */
	p = put_u32(p, 0);		/* no NULL elements */
	p = put_u32(p, 25);		/* of text */
	nump = p;
	p = put_u32(p, 0);		/* its size, below */
	p = put_u32(p, 1);		/* its lower bound */
	for (start = 0; start <= len && n < EV_TAGS_MAX; start = i + 1) {
		for (i = start; i < len && tags[i] != ','; i++)
			;
		if (i == start)
			continue;
		el = p;
		p += 4;
		if (i - start > EV_TAG_MAX)	/* never from a worker */
			start = i - EV_TAG_MAX;
		for (; start < i; start++)
			*p++ = tags[start] > 0x20 && tags[start] < 0x7f ?
			    tags[start] : '?';
		put_u32(el, (uint32_t)(p - el - 4));
		n++;
	}
	put_u32(nump, n);
	put_u32(lenp, (uint32_t)(p - lenp - 4));
	return p;
}

static char *
put_text_field(char *p, const char *s, size_t max, int empty_null)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 len, i, k, n;
	uint32_t		 cp;
	char			*lenp = p;

	len = strnlen(s, max);
	if (len == 0 && empty_null)
		return put_u32(p, COPY_NULL);
	p += 4;
	for (i = 0; i < len; ) {
		if (u[i] < 0x80) {
			*p++ = (char)u[i++];
			continue;
		}
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			n = 1, cp = u[i] & 0x1f;
		else if (u[i] >= 0xe0 && u[i] <= 0xef)
			n = 2, cp = u[i] & 0x0f;
		else if (u[i] >= 0xf0 && u[i] <= 0xf4)
			n = 3, cp = u[i] & 0x07;
		else
			goto bad;
		if (i + n >= len)
			goto bad;
		for (k = 1; k <= n; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (u[i + k] & 0x3f);
		}
		/* overlong, surrogates, beyond U+10FFFF */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			goto bad;
		memcpy(p, u + i, n + 1);
		p += n + 1;
		i += n + 1;
		continue;
 bad:
		*p++ = '?';
		i++;
	}
	(void)put_u32(lenp, (uint32_t)(p - lenp - 4));
	return p;
}

/*
 * client_addr as inet's binary form: a host address, 32 or 128 bits.
 * The worker writes the peer as inet_ntop prints it; brackets around an
 * IPv6 address are taken off, and anything else (a scope id, a port,
 * garbage, "") is NULL rather than a row the server refuses.
 */
static char *
put_inet_field(char *p, const char *s, size_t max)
{
	char		 addr[EV_ADDR_MAX + 1], *a = addr;
	unsigned char	 in[16];
	size_t		 alen;

	alen = strnlen(s, max < EV_ADDR_MAX ? max : EV_ADDR_MAX);
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (*a == '[' && alen > 2 && a[alen - 1] == ']') {
		a[alen - 1] = '\0';
		a++;
	}
	if (inet_pton(AF_INET, a, in) == 1) {
		p = put_u32(p, 8);
		*p++ = PG_AF_INET, *p++ = 32, *p++ = 0, *p++ = 4;
		memcpy(p, in, 4);
		return p + 4;
	}
	if (inet_pton(AF_INET6, a, in) == 1) {
		p = put_u32(p, 20);
		*p++ = PG_AF_INET6, *p++ = (char)128, *p++ = 0, *p++ = 16;
		memcpy(p, in, 16);
		return p + 16;
	}
	return put_u32(p, COPY_NULL);
}
