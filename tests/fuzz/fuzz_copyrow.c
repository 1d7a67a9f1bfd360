/*
 * fuzz_copyrow.c - libFuzzer target: any usage event, however odd its
 * bytes, becomes a binary COPY row that PostgreSQL accepts.
 *
 * The input is up to six lines, copied into key_name, model, upstream,
 * endpoint, error_class and client_addr (a line as long as its slot fills
 * it without a NUL, as a worker's truncation can), and the rest of the
 * bytes over the numeric fields.  The row is then read back the way the
 * server reads it: the field count, every length word, each value's size
 * and shape for its type, text valid UTF-8 by Unicode's table of
 * well-formed sequences (written apart from the encoder's check, on
 * purpose), inet as a host address of its family, and not a byte written
 * past the length copy_row() returned.  The answer cache's cache_hit and
 * cost saved are made from bytes the numeric fields already took.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sql/copyrow.h"

#define CHECK(x)	do { if (!(x)) abort(); } while (0)

static const unsigned char	*rp, *rend;

static void
fill(char *slot, size_t size, const uint8_t **p, const uint8_t *end)
{
	const uint8_t	*nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t		 len = (size_t)((nl != NULL ? nl : end) - *p);

	memset(slot, 0, size);
	memcpy(slot, *p, len < size ? len : size);
	*p = nl != NULL ? nl + 1 : end;
}

/* The next field's length word; its value is at rp, LEN bytes. */
static int32_t
next(void)
{
	uint32_t	 u;

	CHECK(rend - rp >= 4);
	u = (uint32_t)rp[0] << 24 | (uint32_t)rp[1] << 16 |
	    (uint32_t)rp[2] << 8 | rp[3];
	rp += 4;
	if (u == UINT32_MAX)
		return -1;
	CHECK(u <= (uint32_t)(rend - rp));
	return (int32_t)u;
}

static int64_t
i64(const unsigned char *v)
{
	uint64_t	 u = 0;
	int		 i;

	for (i = 0; i < 8; i++)
		u = u << 8 | v[i];
	return (int64_t)u;
}

/* Well-formed UTF-8, Table 3-7 of the Unicode standard. */
static int
utf8_ok(const unsigned char *s, size_t n)
{
	size_t	 i = 0, k, len;
	unsigned lo, hi;

	while (i < n) {
		unsigned char b = s[i];

		lo = 0x80, hi = 0xbf;
		if (b == 0)
			return 0;
		if (b <= 0x7f) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf)
			len = 2;
		else if (b >= 0xe0 && b <= 0xef) {
			len = 3;
			if (b == 0xe0)
				lo = 0xa0;
			if (b == 0xed)
				hi = 0x9f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			len = 4;
			if (b == 0xf0)
				lo = 0x90;
			if (b == 0xf4)
				hi = 0x8f;
		} else
			return 0;
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return 0;
		i += len;
	}
	return 1;
}

/*
 * A text field from SLOT: NULL only when NULLABLE and empty; otherwise
 * as long as the input, each byte kept or made '?', and valid UTF-8.
 */
static void
text(const char *slot, size_t size, int nullable)
{
	size_t		 in = strnlen(slot, size), i;
	int32_t		 len = next();

	if (len == -1) {
		CHECK(nullable && in == 0);
		return;
	}
	CHECK((size_t)len == in);
	for (i = 0; i < in; i++)
		CHECK(rp[i] == (unsigned char)slot[i] || rp[i] == '?');
	CHECK(utf8_ok(rp, in));
	rp += len;
}

static void
fixed(int32_t want)
{
	int32_t	 len = next();

	CHECK(len == want);
	rp += len;
}

static void
int8(int64_t v)
{
	int32_t	 len = next();

	if (v < 0) {
		CHECK(len == -1);
		return;
	}
	CHECK(len == 8 && i64(rp) == v);
	rp += 8;
}

/*
 * The tags: NULL when the slot holds nothing but commas; else a text[]
 * of one dimension, no NULLs, lower bound 1, at most EV_TAGS_MAX
 * elements of 1 to EV_TAG_MAX printable ASCII bytes, no comma.
 */
static void
tags(const char *slot, size_t size)
{
	size_t		 in = strnlen(slot, size), i, nonempty = 0;
	int32_t		 len = next(), el;
	const unsigned char *stop;
	uint32_t	 n, k;

	for (i = 0; i < in; i++)
		nonempty += slot[i] != ',';
	if (len == -1) {
		CHECK(nonempty == 0);
		return;
	}
	CHECK(nonempty > 0 && len >= 20);
	stop = rp + len;
	CHECK(rp[0] == 0 && rp[1] == 0 && rp[2] == 0 && rp[3] == 1);
	CHECK(rp[4] == 0 && rp[5] == 0 && rp[6] == 0 && rp[7] == 0);
	CHECK(rp[8] == 0 && rp[9] == 0 && rp[10] == 0 && rp[11] == 25);
	n = (uint32_t)rp[12] << 24 | (uint32_t)rp[13] << 16 |
	    (uint32_t)rp[14] << 8 | rp[15];
	CHECK(n >= 1 && n <= EV_TAGS_MAX);
	CHECK(rp[16] == 0 && rp[17] == 0 && rp[18] == 0 && rp[19] == 1);
	rp += 20;
	for (k = 0; k < n; k++) {
		CHECK(stop - rp >= 4);
		el = (int32_t)((uint32_t)rp[0] << 24 | (uint32_t)rp[1] << 16 |
		    (uint32_t)rp[2] << 8 | rp[3]);
		rp += 4;
		CHECK(el >= 1 && el <= EV_TAG_MAX && el <= stop - rp);
		for (i = 0; i < (size_t)el; i++)
			CHECK(rp[i] > 0x20 && rp[i] < 0x7f && rp[i] != ',');
		rp += el;
	}
	CHECK(rp == stop);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char v4[] = { 2, 32, 0, 4 };
	static const unsigned char v6[] = { 3, 128, 0, 16 };
	static char		 buf[COPY_ROW_MAX + 64];
	struct usage_event	 ev;
	const uint8_t		*p = data, *end = data + size;
	size_t			 n, i, num = offsetof(struct usage_event,
				    key_name);
	int32_t			 len;
	int64_t			 ts;

	memset(&ev, 0, sizeof(ev));
	fill(ev.key_name, sizeof(ev.key_name), &p, end);
	fill(ev.model, sizeof(ev.model), &p, end);
	fill(ev.upstream, sizeof(ev.upstream), &p, end);
	fill(ev.endpoint, sizeof(ev.endpoint), &p, end);
	fill(ev.error_class, sizeof(ev.error_class), &p, end);
	fill(ev.client_addr, sizeof(ev.client_addr), &p, end);
	fill(ev.client_request_id, sizeof(ev.client_request_id), &p, end);
	fill(ev.anthropic_beta, sizeof(ev.anthropic_beta), &p, end);
	fill(ev.served_model, sizeof(ev.served_model), &p, end);
	fill(ev.client_format, sizeof(ev.client_format), &p, end);
	fill(ev.upstream_format, sizeof(ev.upstream_format), &p, end);
	fill(ev.team, sizeof(ev.team), &p, end);
	fill(ev.end_user, sizeof(ev.end_user), &p, end);
	fill(ev.tags, sizeof(ev.tags), &p, end);
	memcpy(&ev, p, (size_t)(end - p) < num ? (size_t)(end - p) : num);
	/* the answer cache's pair, from bytes already read */
	ev.cache_hit = (uint8_t)(ev.status & 3);	/* 0 no; else true */
	ev.cost_saved_micro_usd = ev.cost_micro_usd ^ ev.bytes_in;

	memset(buf, 0xa5, sizeof(buf));
	n = copy_row(buf, &ev);
	CHECK(n <= COPY_ROW_MAX);
	for (i = n; i < sizeof(buf); i++)
		CHECK((unsigned char)buf[i] == 0xa5);

	rp = (const unsigned char *)buf;
	rend = rp + n;
	CHECK(n >= 2 && (rp[0] << 8 | rp[1]) == COPY_NFIELDS);
	rp += 2;
	CHECK(next() == 16 && memcmp(rp, ev.request_id, 16) == 0);
	rp += 16;
	CHECK(next() == 8);
	ts = i64(rp);		/* 1970-01-01 .. 9999-12-31, from 2000-01-01 */
	CHECK(ts >= INT64_C(-946684800000000) &&
	    ts <= INT64_C(252455615999999999));
	rp += 8;
	text(ev.key_name, sizeof(ev.key_name), 1);
	text(ev.model, sizeof(ev.model), 0);
	text(ev.upstream, sizeof(ev.upstream), 1);
	text(ev.endpoint, sizeof(ev.endpoint), 0);
	CHECK(next() == 1 && (*rp == 0 || *rp == 1));
	rp++;
	fixed(2);					/* status */
	text(ev.error_class, sizeof(ev.error_class), 1);
	int8(ev.prompt_tokens);
	int8(ev.completion_tokens);
	int8(ev.cached_tokens);
	int8(ev.cost_micro_usd);
	len = next();					/* usage_source */
	CHECK((len == 4 && memcmp(rp, "none", 4) == 0) ||
	    (len == 8 && memcmp(rp, "upstream", 8) == 0) ||
	    (len == 9 && memcmp(rp, "estimated", 9) == 0));
	rp += len;
	fixed(2);					/* attempts */
	int8(ev.bytes_in);
	int8(ev.bytes_out);
	int8(ev.latency_us);
	int8(ev.ttfb_us);
	int8(ev.overhead_us);
	len = next();					/* client_addr */
	CHECK(len == -1 || (len == 8 && memcmp(rp, v4, 4) == 0) ||
	    (len == 20 && memcmp(rp, v6, 4) == 0));
	if (len > 0)
		rp += len;
	fixed(4);					/* worker_pid */
	text(ev.client_request_id, sizeof(ev.client_request_id), 1);
	text(ev.anthropic_beta, sizeof(ev.anthropic_beta), 1);
	int8(ev.cache_write_5m_tokens);
	int8(ev.cache_write_1h_tokens);
	int8(ev.reasoning_tokens);
	text(ev.served_model, sizeof(ev.served_model), 1);
	text(ev.client_format, sizeof(ev.client_format), 1);
	text(ev.upstream_format, sizeof(ev.upstream_format), 1);
	text(ev.team, sizeof(ev.team), 1);
	text(ev.end_user, sizeof(ev.end_user), 1);
	tags(ev.tags, sizeof(ev.tags));
	CHECK(next() == 1 && *rp == (ev.cache_hit != 0));	/* cache_hit */
	rp++;
	if (ev.cache_hit)
		int8(ev.cost_saved_micro_usd);
	else
		CHECK(next() == -1);	/* NULL: no hit saved nothing */
	CHECK(rp == rend);
	return 0;
}
