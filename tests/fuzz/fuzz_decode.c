/*
 * fuzz_decode.c - libFuzzer target: the Content-Encoding decoder and the
 * usage tap behind it, as the proxy drives them.
 *
 * The first byte picks the coding (bits 0-1), SSE or a JSON body (bit 2)
 * and the size of the pieces (bits 3-6).  Its top
 * bit set, the rest of the input is compressed here first and the decoded
 * bytes must equal it (the split must not matter); clear, the rest is fed
 * as a compressed body (corrupt, truncated, a bomb: any state but a
 * crash, a hang or output past the limit).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "common/json.h"
#include "worker/decode.h"
#include "worker/usage.h"

#define LIMIT	(1 << 20)

struct out {
	struct usage_tap	 tap;
	struct usage_acc	 acc;
	struct json_doc		*doc;
	const uint8_t		*want;	/* roundtrip: the plain text */
	size_t			 got;
};

static void
out_fn(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	if (o->want != NULL && memcmp(o->want + o->got, p, n) != 0)
		abort();
	o->got += n;
	if (o->got > LIMIT)
		abort();
	usage_tap_feed_mem(&o->tap, &o->acc, o->doc, p, n);
}

static uint8_t *
compress_as(enum dec_coding c, const uint8_t *p, size_t n, size_t *zn)
{
	size_t	 cap = ZSTD_compressBound(n) + BrotliEncoderMaxCompressedSize(n) +
		     compressBound((uLong)n) + 64;
	uint8_t	*z = malloc(cap);
	z_stream s;

	if (z == NULL)
		return NULL;
	switch (c) {
	case DEC_GZIP:
	case DEC_DEFLATE:
		memset(&s, 0, sizeof(s));
		if (deflateInit2(&s, 6, Z_DEFLATED, c == DEC_GZIP ? 31 :
		    (n & 1) ? -15 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			abort();
		s.next_in = (uint8_t *)p;
		s.avail_in = (uInt)n;
		s.next_out = z;
		s.avail_out = (uInt)cap;
		if (deflate(&s, Z_FINISH) != Z_STREAM_END)
			abort();
		*zn = s.total_out;
		deflateEnd(&s);
		break;
	case DEC_BR:
		*zn = cap;
		if (!BrotliEncoderCompress(1, 18, BROTLI_MODE_GENERIC, n, p, zn,
		    z))
			abort();
		break;
	default:
		*zn = ZSTD_compress(z, cap, p, n, 1);
		if (ZSTD_isError(*zn))
			abort();
		break;
	}
	return z;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_doc	 doc = { .max_tokens = 4096 };
	static struct decoder	 d;	/* reused, as a connection's is */
	struct out		 o;
	enum dec_coding		 c;
	const uint8_t		*p;
	uint8_t			*z = NULL;
	size_t			 n, i, step;
	enum dec_state		 st = DEC_RUNNING;

	if (size < 1)
		return 0;
	c = (enum dec_coding)(DEC_GZIP + (data[0] & 3));
	step = (size_t)(data[0] >> 3 & 15) + 1;
	memset(&o, 0, sizeof(o));
	o.doc = &doc;
	usage_tap_reset(&o.tap, data[0] >> 2 & 1);
	p = data + 1;
	n = size - 1;
	if (data[0] & 0x80) {
		o.want = p;
		if ((z = compress_as(c, p, n, &n)) == NULL)
			return 0;
		p = z;
	}
	if (dec_start(&d, c, LIMIT) == -1)
		abort();
	for (i = 0; i < n; i += step)
		st = dec_feed(&d, p + i, n - i < step ? n - i : step, out_fn,
		    &o);
	if (o.want != NULL && (st != DEC_DONE || o.got != size - 1))
		abort();
	usage_tap_end(&o.tap, &o.acc, &doc);
	usage_tap_free(&o.tap);
	dec_end(&d);
	free(z);
	return 0;
}
