/*
 * test_copyrow.c - a usage event as a row of binary COPY, byte for byte.
 *
 * PostgreSQL validates every value of a COPY and refuses the whole batch
 * for one bad field, so the tests check the exact bytes of what the
 * encoder sends for the cases that could be refused: NULLs, text that is
 * not UTF-8 (a model name cut mid-character to fit its slot, bytes a
 * client sent as a key name), client addresses of both families and
 * garbage, a ts_start out of range, and the longest row there can be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sql/copyrow.h"

/* Field order of a row, as COPY_COLUMNS lists them. */
enum {
	F_REQUEST_ID, F_TS_START, F_KEY_NAME, F_MODEL, F_UPSTREAM, F_ENDPOINT,
	F_STREAM, F_STATUS, F_ERROR_CLASS, F_PROMPT, F_COMPLETION, F_CACHED,
	F_COST, F_USAGE_SOURCE, F_ATTEMPTS, F_BYTES_IN, F_BYTES_OUT,
	F_LATENCY, F_TTFB, F_OVERHEAD, F_CLIENT_ADDR, F_WORKER_PID,
	F_CLIENT_REQUEST_ID, F_ANTHROPIC_BETA, F_CACHE_WRITE_5M,
	F_CACHE_WRITE_1H, F_REASONING, F_SERVED_MODEL, F_CLIENT_FORMAT,
	F_UPSTREAM_FORMAT, F_TEAM, F_END_USER, F_TAGS,
};

/* Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch. */
#define PG_EPOCH_US	INT64_C(946684800000000)

/* Big-endian length words and int8s, for the expected bytes. */
#define LEN(n)		0, 0, ((n) >> 8) & 0xff, (n) & 0xff
#define NUL		0xff, 0xff, 0xff, 0xff
#define I8(v)		LEN(8), 0, 0, 0, 0, 0, 0, ((v) >> 8) & 0xff, (v) & 0xff

static unsigned char	 row[COPY_ROW_MAX + 64];
static size_t		 rowlen;

static void
event(struct usage_event *ev)
{
	int	 i;

	memset(ev, 0, sizeof(*ev));
	for (i = 0; i < 16; i++)
		ev->request_id[i] = (uint8_t)i;
	ev->ts_start_us = PG_EPOCH_US + 1;
	strcpy(ev->key_name, "alice");
	strcpy(ev->model, "gpt-4o");
	strcpy(ev->upstream, "openai");
	strcpy(ev->endpoint, "/v1/chat");
	ev->stream = 1;
	ev->status = 200;
	ev->prompt_tokens = 10;
	ev->completion_tokens = 20;
	ev->cached_tokens = 0;
	ev->cost_micro_usd = 1500;
	ev->usage_source = USAGE_UPSTREAM;
	ev->attempts = 1;
	ev->bytes_in = 100;
	ev->bytes_out = 200;
	ev->latency_us = 3000;
	ev->ttfb_us = 2000;
	ev->overhead_us = 50;
	strcpy(ev->client_addr, "192.0.2.1");
	ev->worker_pid = 4242;
	strcpy(ev->client_request_id, "job-7");
	ev->cache_write_5m_tokens = 3;
	ev->cache_write_1h_tokens = -1;
	ev->reasoning_tokens = 7;
	strcpy(ev->served_model, "gpt-4o-2024-08-06");
	strcpy(ev->client_format, "anthropic");
	strcpy(ev->upstream_format, "openai");
	strcpy(ev->team, "eng");
	strcpy(ev->end_user, "u-1");
	strcpy(ev->tags, "a,bb");
}

static void
encode(const struct usage_event *ev)
{
	memset(row, 0xaa, sizeof(row));
	rowlen = copy_row((char *)row, ev);
	assert_true(rowlen <= COPY_ROW_MAX);
	/* not a byte past what it says it wrote */
	assert_int_equal(row[rowlen], 0xaa);
}

/* Field K of the row: its length (-1 for NULL) and where its value is. */
static int32_t
field(int k, const unsigned char **val)
{
	size_t	 off = 2;
	int32_t	 len = 0;
	int	 i;

	assert_int_equal(row[0] << 8 | row[1], COPY_NFIELDS);
	for (i = 0; i <= k; i++) {
		assert_true(off + 4 <= rowlen);
		len = (int32_t)((uint32_t)row[off] << 24 | row[off + 1] << 16 |
		    row[off + 2] << 8 | row[off + 3]);
		off += 4;
		*val = row + off;
		if (len > 0)
			off += (size_t)len;
	}
	if (k == COPY_NFIELDS - 1)
		assert_int_equal(off, rowlen);
	return len;
}

static void
assert_field_text(int k, const char *want)
{
	const unsigned char	*v;
	int32_t			 len = field(k, &v);

	assert_int_equal(len, (int32_t)strlen(want));
	assert_memory_equal(v, want, strlen(want));
}

static void
assert_field_null(int k)
{
	const unsigned char	*v;

	assert_int_equal(field(k, &v), -1);
}

static void
test_header_and_trailer(void **state)
{
	static const unsigned char hdr[] = {
		'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0,
		0, 0, 0, 0, 0, 0, 0, 0,
	};
	char	 buf[64];

	(void)state;
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(copy_header(buf), COPY_HEADER_LEN);
	assert_int_equal(sizeof(hdr), COPY_HEADER_LEN);
	assert_memory_equal(buf, hdr, sizeof(hdr));
	assert_int_equal((unsigned char)buf[COPY_HEADER_LEN], 0xaa);

	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(copy_trailer(buf), COPY_TRAILER_LEN);
	assert_int_equal((unsigned char)buf[0], 0xff);
	assert_int_equal((unsigned char)buf[1], 0xff);
	assert_int_equal((unsigned char)buf[2], 0xaa);
}

/* An ordinary event, every byte of it. */
static void
test_whole_row(void **state)
{
	static const unsigned char want[] = {
		0, 35,
		LEN(16), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
		I8(1),
		LEN(5), 'a', 'l', 'i', 'c', 'e',
		LEN(6), 'g', 'p', 't', '-', '4', 'o',
		LEN(6), 'o', 'p', 'e', 'n', 'a', 'i',
		LEN(8), '/', 'v', '1', '/', 'c', 'h', 'a', 't',
		LEN(1), 1,
		LEN(2), 0, 200,
		NUL,
		I8(10), I8(20), I8(0), I8(1500),
		LEN(8), 'u', 'p', 's', 't', 'r', 'e', 'a', 'm',
		LEN(2), 0, 1,
		I8(100), I8(200), I8(3000), I8(2000), I8(50),
		LEN(8), 2, 32, 0, 4, 192, 0, 2, 1,
		LEN(4), 0, 0, 0x10, 0x92,
		LEN(5), 'j', 'o', 'b', '-', '7',
		NUL,
		I8(3), NUL, I8(7),
		LEN(17), 'g', 'p', 't', '-', '4', 'o', '-', '2', '0', '2', '4',
		'-', '0', '8', '-', '0', '6',
		LEN(9), 'a', 'n', 't', 'h', 'r', 'o', 'p', 'i', 'c',
		LEN(6), 'o', 'p', 'e', 'n', 'a', 'i',
		LEN(3), 'e', 'n', 'g',
		LEN(3), 'u', '-', '1',
		/* text[]: 1 dimension, no NULLs, of text (25), 2 from 1 */
		LEN(31), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 2,
		0, 0, 0, 1, LEN(1), 'a', LEN(2), 'b', 'b',
		/* cache_hit false; cost_saved_micro_usd NULL: no hit */
		LEN(1), 0, NUL,
	};
	struct usage_event	 ev;

	(void)state;
	event(&ev);
	encode(&ev);
	assert_int_equal(rowlen, sizeof(want));
	assert_memory_equal(row, want, sizeof(want));
}

static void
test_nulls(void **state)
{
	struct usage_event	 ev;
	const unsigned char	*v;

	(void)state;
	event(&ev);
	ev.key_name[0] = ev.upstream[0] = ev.error_class[0] = '\0';
	ev.model[0] = ev.endpoint[0] = '\0';
	ev.prompt_tokens = ev.completion_tokens = ev.cached_tokens = -1;
	ev.cost_micro_usd = ev.bytes_in = ev.bytes_out = -1;
	ev.latency_us = ev.ttfb_us = ev.overhead_us = -1;
	ev.client_addr[0] = '\0';
	ev.upstream_format[0] = '\0';
	encode(&ev);

	/* no key, no upstream reached, no error: NULL */
	assert_field_null(F_KEY_NAME);
	assert_field_null(F_UPSTREAM);
	assert_field_null(F_ERROR_CLASS);
	assert_field_null(F_UPSTREAM_FORMAT);
	/* model and endpoint are what the client sent, even "" */
	assert_int_equal(field(F_MODEL, &v), 0);
	assert_int_equal(field(F_ENDPOINT, &v), 0);
	/* -1 = unknown */
	assert_field_null(F_PROMPT);
	assert_field_null(F_COMPLETION);
	assert_field_null(F_CACHED);
	assert_field_null(F_COST);
	assert_field_null(F_BYTES_IN);
	assert_field_null(F_BYTES_OUT);
	assert_field_null(F_LATENCY);
	assert_field_null(F_TTFB);
	assert_field_null(F_OVERHEAD);
	assert_field_null(F_CLIENT_ADDR);
	/* never NULL */
	assert_int_equal(field(F_REQUEST_ID, &v), 16);
	assert_int_equal(field(F_TS_START, &v), 8);
	assert_int_equal(field(F_STREAM, &v), 1);
	assert_int_equal(field(F_STATUS, &v), 2);
	assert_int_equal(field(F_ATTEMPTS, &v), 2);
	assert_int_equal(field(F_WORKER_PID, &v), 4);
	/* zero is a value, not unknown */
	ev.cached_tokens = 0;
	encode(&ev);
	assert_int_equal(field(F_CACHED, &v), 8);
	assert_memory_equal(v, "\0\0\0\0\0\0\0\0", 8);
}

/* ts_start TS as the timestamptz WANT: us since 2000-01-01. */
static void
assert_ts(int64_t ts, const unsigned char want[8])
{
	struct usage_event	 ev;
	const unsigned char	*v;

	event(&ev);
	ev.ts_start_us = ts;
	encode(&ev);
	assert_int_equal(field(F_TS_START, &v), 8);
	assert_memory_equal(v, want, 8);
}

/* Out of timestamptz's range, or before 1970: clamped to 1970..9999. */
static void
test_ts_start_clamped(void **state)
{
	static const unsigned char	 y1970[] = {	/* -946684800000000 */
		0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00 };
	static const unsigned char	 y9999[] = {	/* 252455615999999999 */
		0x03, 0x80, 0xe7, 0x0b, 0x91, 0x3b, 0x7f, 0xff };

	(void)state;
	assert_ts(0, y1970);
	assert_ts(-5, y1970);
	assert_ts(INT64_MIN, y1970);
	assert_ts(INT64_C(253402300799999999), y9999);	/* 9999's last us */
	assert_ts(INT64_MAX, y9999);
}

static void
test_utf8_kept(void **state)
{
	struct usage_event	 ev;

	(void)state;
	event(&ev);
	/* 2, 3 and 4 bytes, and the largest code point */
	strcpy(ev.model, "caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80-"
	    "\xf4\x8f\xbf\xbf");
	strcpy(ev.key_name, "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
	    "\xee\x80\x80\xf0\x90\x80\x80");
	encode(&ev);
	assert_field_text(F_MODEL, ev.model);
	assert_field_text(F_KEY_NAME, ev.key_name);
}

/* Every byte that is not part of a valid sequence is one '?'. */
static void
test_utf8_invalid_replaced(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;
	} cases[] = {
		{ "gpt-\xff", "gpt-?" },			/* never valid */
		{ "caf\xc3", "caf?" },				/* cut at the end */
		{ "\xe2\x82", "??" },				/* cut, 3-byte */
		{ "\xf0\x9f\x98", "???" },			/* cut, 4-byte */
		{ "a\xe2\x82z", "a??z" },			/* cut, then ASCII */
		{ "\x80x", "?x" },				/* lone continuation */
		{ "\xc0\xaf", "??" },				/* overlong '/' */
		{ "\xc1\xbf", "??" },				/* overlong */
		{ "\xe0\x80\xaf", "???" },			/* overlong, 3 */
		{ "\xf0\x80\x80\xaf", "????" },			/* overlong, 4 */
		{ "\xed\xa0\x80", "???" },			/* surrogate */
		{ "\xed\xbf\xbf", "???" },			/* surrogate */
		{ "\xf4\x90\x80\x80", "????" },			/* > U+10FFFF */
		{ "\xf5\x80\x80\x80", "????" },			/* > U+10FFFF */
		{ "\xc3\xc3\xa9", "?\xc3\xa9" },		/* bad, then good */
		{ "\xfe\xff", "??" },
	};
	struct usage_event	 ev;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		event(&ev);
		strcpy(ev.model, cases[i].in);
		strcpy(ev.key_name, cases[i].in);
		strcpy(ev.error_class, cases[i].in);
		encode(&ev);
		assert_field_text(F_MODEL, cases[i].out);
		assert_field_text(F_KEY_NAME, cases[i].out);
		assert_field_text(F_ERROR_CLASS, cases[i].out);
	}
}

/* A slot filled to the last byte has no NUL: all of it is the text. */
static void
test_text_fills_its_slot(void **state)
{
	struct usage_event	 ev;
	char			 want[EV_MODEL_MAX + 1];

	(void)state;
	event(&ev);
	memset(ev.model, 'm', sizeof(ev.model));
	/* a 2-byte character cut by the end of the slot */
	ev.model[sizeof(ev.model) - 1] = '\xc3';
	memset(want, 'm', sizeof(want));
	want[EV_MODEL_MAX - 1] = '?';
	want[EV_MODEL_MAX] = '\0';
	encode(&ev);
	assert_field_text(F_MODEL, want);
	assert_field_text(F_UPSTREAM, "openai");
}

/* client_addr ADDR as the inet WANT (N bytes), or NULL for N 0. */
static void
assert_inet(const char *addr, const unsigned char *want, size_t n)
{
	struct usage_event	 ev;
	const unsigned char	*v;

	event(&ev);
	memset(ev.client_addr, 0, sizeof(ev.client_addr));
	strcpy(ev.client_addr, addr);
	encode(&ev);
	if (n == 0) {
		assert_field_null(F_CLIENT_ADDR);
		return;
	}
	assert_int_equal(field(F_CLIENT_ADDR, &v), (int32_t)n);
	assert_memory_equal(v, want, n);
}

static void
test_inet(void **state)
{
	static const unsigned char v4[] = { 2, 32, 0, 4, 192, 0, 2, 1 };
	static const unsigned char v6[] = { 3, 128, 0, 16,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	static const unsigned char lo6[] = { 3, 128, 0, 16,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	static const unsigned char mapped[] = { 3, 128, 0, 16,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1 };
	static const char *const garbage[] = {
		"", "garbage", "192.0.2", "192.0.2.256", "192.0.2.1:8080",
		" 192.0.2.1", "192.0.2.1 ", "fe80::1%eth0", "[]", "[::1",
		"::1]", "[[::1]]", "2001:db8::1/64", "localhost",
	};
	struct usage_event	 ev;
	size_t			 i;

	(void)state;
	assert_inet("192.0.2.1", v4, sizeof(v4));
	assert_inet("[192.0.2.1]", v4, sizeof(v4));
	assert_inet("2001:db8::1", v6, sizeof(v6));
	assert_inet("[::1]", lo6, sizeof(lo6));
	assert_inet("::ffff:192.0.2.1", mapped, sizeof(mapped));
	for (i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		assert_inet(garbage[i], NULL, 0);
	event(&ev);
	/* no NUL in the slot at all */
	memset(ev.client_addr, '1', sizeof(ev.client_addr));
	encode(&ev);
	assert_field_null(F_CLIENT_ADDR);
}

static void
test_usage_source(void **state)
{
	struct usage_event	 ev;

	(void)state;
	event(&ev);
	ev.usage_source = USAGE_NONE;
	encode(&ev);
	assert_field_text(F_USAGE_SOURCE, "none");
	ev.usage_source = USAGE_ESTIMATED;
	encode(&ev);
	assert_field_text(F_USAGE_SOURCE, "estimated");
	/* the CHECK constraint knows three values: anything else is none */
	ev.usage_source = 3;
	encode(&ev);
	assert_field_text(F_USAGE_SOURCE, "none");
	ev.usage_source = 255;
	encode(&ev);
	assert_field_text(F_USAGE_SOURCE, "none");
}

/* Tags: none is NULL, empty ones are skipped, a bad byte becomes '?'. */
static void
test_tags(void **state)
{
	static const unsigned char one[] = { 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
	    25, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3, 'x', '?', 'y' };
	struct usage_event	 ev;
	const unsigned char	*v;

	(void)state;
	event(&ev);
	ev.tags[0] = '\0';
	encode(&ev);
	assert_field_null(F_TAGS);
	strcpy(ev.tags, ",,,");
	encode(&ev);
	assert_field_null(F_TAGS);
	strcpy(ev.tags, ",x\001y,");
	encode(&ev);
	assert_int_equal(field(F_TAGS, &v), sizeof(one));
	assert_memory_equal(v, one, sizeof(one));
}

/* Every text slot full, the widest of every other value: COPY_ROW_MAX. */
static void
test_longest_row(void **state)
{
	struct usage_event	 ev;
	int			 i;

	(void)state;
	event(&ev);
	memset(ev.key_name, 'k', sizeof(ev.key_name));
	memset(ev.model, 'm', sizeof(ev.model));
	memset(ev.upstream, 'u', sizeof(ev.upstream));
	memset(ev.endpoint, 'e', sizeof(ev.endpoint));
	memset(ev.error_class, 'x', sizeof(ev.error_class));
	memset(ev.client_request_id, 'c', sizeof(ev.client_request_id));
	memset(ev.anthropic_beta, 'b', sizeof(ev.anthropic_beta));
	memset(ev.served_model, 's', sizeof(ev.served_model));
	memset(ev.client_format, 'f', sizeof(ev.client_format));
	memset(ev.upstream_format, 'g', sizeof(ev.upstream_format));
	memset(ev.team, 't', sizeof(ev.team));
	memset(ev.end_user, 'u', sizeof(ev.end_user));
	/* the most tags, each of the most bytes */
	memset(ev.tags, 'g', sizeof(ev.tags));
	for (i = 1; i < EV_TAGS_MAX; i++)
		ev.tags[i * (EV_TAG_MAX + 1) - 1] = ',';
	ev.tags[sizeof(ev.tags) - 1] = '\0';
	ev.cache_write_1h_tokens = 1;
	ev.cache_hit = 1;
	ev.cost_saved_micro_usd = 1;
	ev.usage_source = USAGE_ESTIMATED;
	strcpy(ev.client_addr, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	encode(&ev);
	assert_int_equal(rowlen, COPY_ROW_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_and_trailer),
		cmocka_unit_test(test_whole_row),
		cmocka_unit_test(test_nulls),
		cmocka_unit_test(test_ts_start_clamped),
		cmocka_unit_test(test_utf8_kept),
		cmocka_unit_test(test_utf8_invalid_replaced),
		cmocka_unit_test(test_text_fills_its_slot),
		cmocka_unit_test(test_inet),
		cmocka_unit_test(test_usage_source),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_longest_row),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
