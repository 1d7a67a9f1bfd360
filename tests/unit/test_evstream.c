/*
 * test_evstream.c - the AWS event-stream decoder and the base64 its
 * payloads carry.
 *
 * Frames are built here with zlib's CRC32, as AWS's encoder does: a
 * chunk event, an exception, headers of every type.  Every stream is
 * fed split at every byte offset (and one byte at a time): the frames
 * delivered must not depend on how reads cut them.  A flipped bit in
 * the prelude CRC, in the message CRC, in a length or in the payload
 * must each stop the decoder with the right error and deliver nothing
 * of the bad frame.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "common/base64.h"
#include "worker/evstream.h"

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* A string header NAME: VALUE at P; its length. */
static size_t
hdr_str(unsigned char *p, const char *name, const char *value)
{
	size_t	 nl = strlen(name), vl = strlen(value), i = 0;

	p[i++] = (unsigned char)nl;
	memcpy(p + i, name, nl);
	i += nl;
	p[i++] = 7;
	p[i++] = (unsigned char)(vl >> 8);
	p[i++] = (unsigned char)vl;
	memcpy(p + i, value, vl);
	return i + vl;
}

/* A frame of headers H (HL bytes) and PAYLOAD at OUT; its length. */
static size_t
frame(unsigned char *out, const unsigned char *h, size_t hl,
    const char *payload)
{
	size_t	 pl = strlen(payload), total = 16 + hl + pl;

	put32(out, (uint32_t)total);
	put32(out + 4, (uint32_t)hl);
	put32(out + 8, (uint32_t)crc32(0, out, 8));
	memcpy(out + 12, h, hl);
	memcpy(out + 12 + hl, payload, pl);
	put32(out + total - 4, (uint32_t)crc32(0, out, (uInt)(total - 4)));
	return total;
}

static size_t
chunk_frame(unsigned char *out, const char *payload)
{
	unsigned char	 h[256];
	size_t		 hl = 0;

	hl += hdr_str(h + hl, ":event-type", "chunk");
	hl += hdr_str(h + hl, ":content-type", "application/json");
	hl += hdr_str(h + hl, ":message-type", "event");
	return frame(out, h, hl, payload);
}

struct seen {
	int	 n;
	char	 payload[8][256];
	char	 mtype[8][16];
	char	 etype[8][64];
	char	 xtype[8][64];
	int	 nheaders[8];
};

static int
on_msg(void *arg, const struct es_msg *m)
{
	struct seen *s = arg;

	if (s->n < 8) {
		snprintf(s->payload[s->n], 256, "%.*s", (int)m->payload_len,
		    (const char *)m->payload);
		snprintf(s->mtype[s->n], 16, "%s", m->message_type);
		snprintf(s->etype[s->n], 64, "%s", m->event_type);
		snprintf(s->xtype[s->n], 64, "%s", m->exception_type);
		s->nheaders[s->n] = m->nheaders;
	}
	s->n++;
	return 0;
}

/* Feed N bytes at P cut at OFF (and OFF2); the error. */
static enum es_error
feed_split(const unsigned char *p, size_t n, size_t off, size_t off2,
    struct seen *s, size_t *pending)
{
	struct es_dec	 d;
	enum es_error	 e;

	es_init(&d);
	memset(s, 0, sizeof(*s));
	if (off2 < off)
		off2 = off;
	if ((e = es_feed(&d, p, off, on_msg, s)) == ES_OK &&
	    (e = es_feed(&d, p + off, off2 - off, on_msg, s)) == ES_OK)
		e = es_feed(&d, p + off2, n - off2, on_msg, s);
	*pending = es_pending(&d);
	es_free(&d);
	return e;
}

static void
test_frames_split_at_every_offset(void **state)
{
	unsigned char	 buf[1024];
	size_t		 n = 0, off, off2, pend;
	struct seen	 s;

	(void)state;
	n += chunk_frame(buf + n, "{\"bytes\":\"eyJ0eXBlIjoicGluZyJ9\"}");
	n += chunk_frame(buf + n, "{\"bytes\":\"e30=\"}");
	n += chunk_frame(buf + n, "");
	for (off = 0; off <= n; off++)
		for (off2 = off; off2 <= n; off2 += 7) {
			assert_int_equal(feed_split(buf, n, off, off2, &s,
			    &pend), ES_OK);
			assert_int_equal(s.n, 3);
			assert_int_equal(pend, 0);
			assert_string_equal(s.payload[0],
			    "{\"bytes\":\"eyJ0eXBlIjoicGluZyJ9\"}");
			assert_string_equal(s.payload[1], "{\"bytes\":\"e30=\"}");
			assert_string_equal(s.payload[2], "");
			assert_string_equal(s.mtype[0], "event");
			assert_string_equal(s.etype[1], "chunk");
			assert_int_equal(s.nheaders[2], 3);
		}
}

static void
test_one_byte_at_a_time(void **state)
{
	unsigned char	 buf[512];
	size_t		 n, i;
	struct es_dec	 d;
	struct seen	 s;

	(void)state;
	n = chunk_frame(buf, "{\"bytes\":\"e30=\"}");
	memset(&s, 0, sizeof(s));
	es_init(&d);
	for (i = 0; i < n; i++) {
		assert_int_equal(es_feed(&d, buf + i, 1, on_msg, &s), ES_OK);
		assert_int_equal(s.n, i + 1 == n ? 1 : 0);
		assert_int_equal(es_pending(&d), i + 1 == n ? 0 : i + 1);
	}
	es_free(&d);
}

static void
test_cut_frame_is_pending(void **state)
{
	unsigned char	 buf[512];
	size_t		 n, pend;
	struct seen	 s;

	(void)state;
	n = chunk_frame(buf, "{\"bytes\":\"e30=\"}");
	assert_int_equal(feed_split(buf, n - 1, 5, 5, &s, &pend), ES_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(pend, n - 1);
}

static void
test_exception_frame_headers(void **state)
{
	unsigned char	 h[256], buf[512];
	size_t		 hl = 0, n, pend;
	struct seen	 s;

	(void)state;
	hl += hdr_str(h + hl, ":exception-type", "throttlingException");
	hl += hdr_str(h + hl, ":content-type", "application/json");
	hl += hdr_str(h + hl, ":message-type", "exception");
	n = frame(buf, h, hl, "{\"message\":\"Too many requests\"}");
	assert_int_equal(feed_split(buf, n, 3, 40, &s, &pend), ES_OK);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.mtype[0], "exception");
	assert_string_equal(s.xtype[0], "throttlingException");
	assert_string_equal(s.payload[0], "{\"message\":\"Too many requests\"}");
}

static void
test_every_header_type_parsed(void **state)
{
	unsigned char	 h[256], buf[512];
	size_t		 hl = 0, n, pend;
	struct seen	 s;
	int		 t;
	static const size_t vlen[] = { 0, 0, 1, 2, 4, 8, 3, 3, 8, 16 };

	(void)state;
	for (t = 0; t <= 9; t++) {
		h[hl++] = 2;
		h[hl++] = 'h';
		h[hl++] = (unsigned char)('0' + t);
		h[hl++] = (unsigned char)t;
		if (t == 6 || t == 7) {
			h[hl++] = 0;
			h[hl++] = 3;
		}
		memset(h + hl, 'x', vlen[t]);
		hl += vlen[t];
	}
	hl += hdr_str(h + hl, ":message-type", "event");
	n = frame(buf, h, hl, "p");
	assert_int_equal(feed_split(buf, n, 0, 0, &s, &pend), ES_OK);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.nheaders[0], 11);
	assert_string_equal(s.mtype[0], "event");
	assert_string_equal(s.payload[0], "p");
	/* an unknown type (10) and a value past the headers: refused */
	h[3] = 10;
	n = frame(buf, h, hl, "p");
	assert_int_equal(feed_split(buf, n, 0, 0, &s, &pend), ES_BAD_HEADER);
	assert_int_equal(s.n, 0);
	h[3] = 7;
	h[4] = 0xff;
	n = frame(buf, h, hl, "p");
	assert_int_equal(feed_split(buf, n, 0, 0, &s, &pend), ES_BAD_HEADER);
}

static void
test_corruption_detected_at_any_split(void **state)
{
	unsigned char	 good[512], bad[512];
	size_t		 n, first, off, pend;
	struct seen	 s;

	(void)state;
	first = chunk_frame(good, "{\"bytes\":\"e30=\"}");
	n = first + chunk_frame(good + first, "{\"bytes\":\"e30=\"}");
	for (off = 0; off <= n; off++) {
		/* the second frame's prelude CRC */
		memcpy(bad, good, n);
		bad[first + 9] ^= 0x10;
		assert_int_equal(feed_split(bad, n, off, off, &s, &pend),
		    ES_PRELUDE_CRC);
		assert_int_equal(s.n, 1);
		/* a payload byte of the second: the message CRC */
		memcpy(bad, good, n);
		bad[n - 6] ^= 0x01;
		assert_int_equal(feed_split(bad, n, off, off, &s, &pend),
		    ES_MESSAGE_CRC);
		assert_int_equal(s.n, 1);
		/* the message CRC itself */
		memcpy(bad, good, n);
		bad[n - 1] ^= 0x80;
		assert_int_equal(feed_split(bad, n, off, off, &s, &pend),
		    ES_MESSAGE_CRC);
		assert_int_equal(s.n, 1);
	}
}

static void
test_impossible_lengths_refused(void **state)
{
	unsigned char	 p[16];
	size_t		 pend;
	struct seen	 s;

	(void)state;
	/* a total below the minimum, with a valid prelude CRC */
	memset(p, 0, sizeof(p));
	put32(p, 8);
	put32(p + 8, (uint32_t)crc32(0, p, 8));
	assert_int_equal(feed_split(p, 12, 0, 0, &s, &pend), ES_BAD_LENGTH);
	/* past ES_FRAME_MAX: refused before a byte of it is awaited */
	put32(p, ES_FRAME_MAX + 1);
	put32(p + 8, (uint32_t)crc32(0, p, 8));
	assert_int_equal(feed_split(p, 12, 4, 4, &s, &pend), ES_BAD_LENGTH);
	/* headers longer than the frame */
	put32(p, 32);
	put32(p + 4, 17);
	put32(p + 8, (uint32_t)crc32(0, p, 8));
	assert_int_equal(feed_split(p, 12, 0, 0, &s, &pend), ES_BAD_LENGTH);
}

static int
stop_at_first(void *arg, const struct es_msg *m)
{
	(void)m;
	(*(int *)arg)++;
	return -1;
}

static void
test_stop_from_callback_is_sticky(void **state)
{
	unsigned char	 buf[512];
	size_t		 n;
	struct es_dec	 d;
	int		 calls = 0;

	(void)state;
	n = chunk_frame(buf, "x");
	n += chunk_frame(buf + n, "y");
	es_init(&d);
	assert_int_equal(es_feed(&d, buf, n, stop_at_first, &calls),
	    ES_STOPPED);
	assert_int_equal(calls, 1);
	assert_int_equal(es_feed(&d, buf, n, stop_at_first, &calls),
	    ES_STOPPED);
	assert_int_equal(calls, 1);
	es_free(&d);
}

static void
test_base64_decode(void **state)
{
	unsigned char	 out[64];
	const char	*ev = "eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0=";
	long		 n;

	(void)state;
	n = b64_decode(ev, strlen(ev), out);
	assert_int_equal(n, 23);
	assert_memory_equal(out, "{\"type\":\"message_stop\"}", 23);
	assert_int_equal(b64_decode("", 0, out), 0);
	assert_int_equal(b64_decode("Zg==", 4, out), 1);
	assert_int_equal(b64_decode("Zg", 2, out), 1);
	assert_int_equal(b64_decode("Zm8=", 4, out), 2);
	assert_int_equal(b64_decode("Zm9v", 4, out), 3);
	assert_memory_equal(out, "foo", 3);
	assert_int_equal(b64_decode("+/+/", 4, out), 3);
	assert_int_equal(out[0], 0xfb);
	/* outside the alphabet, bad padding, impossible length, stray bits */
	assert_int_equal(b64_decode("Zm9v!", 5, out), -1);
	assert_int_equal(b64_decode("Zm-v", 4, out), -1);
	assert_int_equal(b64_decode("Z===", 4, out), -1);
	assert_int_equal(b64_decode("Zm9=v", 5, out), -1);
	assert_int_equal(b64_decode("Zm9vZ", 5, out), -1);
	assert_int_equal(b64_decode("Zh==", 4, out), -1);
}

static void
test_base64url_encode(void **state)
{
	char	 out[64];
	size_t	 n;

	(void)state;
	n = b64url_encode((const unsigned char *)"{\"alg\":\"RS256\"}", 15, out);
	assert_int_equal(n, B64URL_ENCODED_LEN(15));
	assert_memory_equal(out, "eyJhbGciOiJSUzI1NiJ9", 20);
	n = b64url_encode((const unsigned char *)"\xfb\xff", 2, out);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "-_8", 3);
	assert_int_equal(b64url_encode((const unsigned char *)"f", 1, out), 2);
	assert_memory_equal(out, "Zg", 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_split_at_every_offset),
		cmocka_unit_test(test_one_byte_at_a_time),
		cmocka_unit_test(test_cut_frame_is_pending),
		cmocka_unit_test(test_exception_frame_headers),
		cmocka_unit_test(test_every_header_type_parsed),
		cmocka_unit_test(test_corruption_detected_at_any_split),
		cmocka_unit_test(test_impossible_lengths_refused),
		cmocka_unit_test(test_stop_from_callback_is_sticky),
		cmocka_unit_test(test_base64_decode),
		cmocka_unit_test(test_base64url_encode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
