/*
 * test_decode.c - the Content-Encoding decoder the usage tap reads from.
 *
 * The bodies are compressed here with zlib, libbrotli and libzstd, then
 * fed whole, one byte at a time and in random pieces: an upstream's reads
 * split a compressed stream anywhere, and the output must not depend on
 * where.  Corrupt input must end in DEC_ERROR (never a crash or a hang),
 * and a bomb must stop at the limit without inflating past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "worker/decode.h"

struct sink {
	char	*buf;
	size_t	 len, cap;
	size_t	 calls;
};

static void
sink_out(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;

	assert_true(n > 0 && n <= DEC_OUT);
	s->calls++;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
		assert_non_null(s->buf);
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

/* A body like an answer's, LEN bytes, compressible but not trivially. */
static char *
make_body(size_t len)
{
	char	*b = malloc(len);
	size_t	 i;

	assert_non_null(b);
	for (i = 0; i < len; i++)
		b[i] = "{\"usage\":{\"prompt_tokens\":12}}data: \r\n"[
		    (i * 7 + i / 13) % 38];
	return b;
}

/* Compress with zlib; BITS: 15 zlib, -15 raw, 31 gzip. */
static unsigned char *
z_compress(const char *src, size_t n, int bits, size_t *outlen)
{
	z_stream	 z;
	size_t		 cap = n + n / 10 + 64;
	unsigned char	*out = malloc(cap);

	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, bits, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (unsigned char *)src;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	*outlen = z.total_out;
	deflateEnd(&z);
	return out;
}

static unsigned char *
br_compress(const char *src, size_t n, size_t *outlen)
{
	size_t		 cap = BrotliEncoderMaxCompressedSize(n);
	unsigned char	*out = malloc(cap);

	assert_true(BrotliEncoderCompress(5, 22, BROTLI_MODE_TEXT, n,
	    (const uint8_t *)src, &cap, out));
	*outlen = cap;
	return out;
}

static unsigned char *
zs_compress(const char *src, size_t n, size_t *outlen)
{
	size_t		 cap = ZSTD_compressBound(n);
	unsigned char	*out = malloc(cap);

	*outlen = ZSTD_compress(out, cap, src, n, 3);
	assert_false(ZSTD_isError(*outlen));
	return out;
}

static unsigned char *
compress_as(enum dec_coding c, const char *src, size_t n, size_t *outlen)
{
	switch (c) {
	case DEC_GZIP:
		return z_compress(src, n, 31, outlen);
	case DEC_DEFLATE:
		return z_compress(src, n, 15, outlen);
	case DEC_BR:
		return br_compress(src, n, outlen);
	case DEC_ZSTD:
		return zs_compress(src, n, outlen);
	default:
		fail();
	}
	return NULL;
}

/* Feed Z in pieces: STEP 0 whole, 1 a byte each, else random sizes. */
static enum dec_state
feed(struct decoder *d, const unsigned char *z, size_t n, int step,
    struct sink *s)
{
	enum dec_state	 st = DEC_RUNNING;
	size_t		 off = 0, k;

	while (off < n) {
		k = step == 0 ? n : step == 1 ? 1 : 1 + (size_t)rand() % 700;
		if (k > n - off)
			k = n - off;
		st = dec_feed(d, z + off, k, sink_out, s);
		off += k;
	}
	return st;
}

static void
roundtrip(struct decoder *d, enum dec_coding c, size_t len, int step)
{
	char		*body = make_body(len);
	size_t		 zn;
	unsigned char	*z = compress_as(c, body, len, &zn);
	struct sink	 s = { 0 };

	assert_int_equal(dec_start(d, c, 1 << 24), 0);
	assert_int_equal(feed(d, z, zn, step, &s), DEC_DONE);
	assert_int_equal(s.len, len);
	assert_memory_equal(s.buf, body, len);
	dec_end(d);
	free(s.buf);
	free(z);
	free(body);
}

static void
test_roundtrip_every_coding_every_split(void **state)
{
	static const enum dec_coding cs[] = { DEC_GZIP, DEC_DEFLATE, DEC_BR,
	    DEC_ZSTD };
	static const size_t sizes[] = { 1, 1000, 100 * 1024 };
	struct decoder	 d = { 0 };
	size_t		 i, j;
	int		 step;

	(void)state;
	srand(14);
	/* one decoder for all: its state is reused from answer to answer */
	for (i = 0; i < sizeof(cs) / sizeof(cs[0]); i++)
		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
			for (step = 0; step < 3; step++)
				roundtrip(&d, cs[i], sizes[j], step);
	dec_free(&d);
}

static void
test_raw_deflate_is_read_as_deflate(void **state)
{
	char		*body = make_body(5000);
	size_t		 zn;
	unsigned char	*z = z_compress(body, 5000, -15, &zn);
	struct decoder	 d = { 0 };
	struct sink	 s = { 0 };

	(void)state;
	assert_int_equal(dec_start(&d, DEC_DEFLATE, 1 << 20), 0);
	assert_int_equal(feed(&d, z, zn, 1, &s), DEC_DONE);
	assert_int_equal(s.len, 5000);
	assert_memory_equal(s.buf, body, 5000);
	dec_free(&d);
	free(s.buf);
	free(z);
	free(body);
}

static void
test_gzip_members_and_zstd_frames_concatenated(void **state)
{
	static const enum dec_coding cs[] = { DEC_GZIP, DEC_ZSTD };
	struct decoder	 d = { 0 };
	size_t		 i;

	(void)state;
	for (i = 0; i < 2; i++) {
		size_t		 n1, n2;
		unsigned char	*a = compress_as(cs[i], "hello, ", 7, &n1);
		unsigned char	*b = compress_as(cs[i], "world", 5, &n2);
		unsigned char	*ab = malloc(n1 + n2);
		struct sink	 s = { 0 };

		memcpy(ab, a, n1);
		memcpy(ab + n1, b, n2);
		assert_int_equal(dec_start(&d, cs[i], 1 << 20), 0);
		assert_int_equal(feed(&d, ab, n1 + n2, 0, &s), DEC_DONE);
		assert_int_equal(s.len, 12);
		assert_memory_equal(s.buf, "hello, world", 12);
		free(s.buf);
		free(a);
		free(b);
		free(ab);
	}
	dec_free(&d);
}

static void
test_corrupt_input_is_an_error(void **state)
{
	static const enum dec_coding cs[] = { DEC_GZIP, DEC_DEFLATE, DEC_BR,
	    DEC_ZSTD };
	struct decoder	 d = { 0 };
	char		*body = make_body(20000);
	size_t		 i, zn, pos;
	enum dec_state	 st;

	(void)state;
	for (i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		unsigned char	*z = compress_as(cs[i], body, 20000, &zn);
		struct sink	 s = { 0 };

		/* garbage in the middle of the stream */
		for (pos = zn / 3; pos < zn / 3 + 16 && pos < zn; pos++)
			z[pos] ^= 0x5a;
		assert_int_equal(dec_start(&d, cs[i], 1 << 20), 0);
		st = feed(&d, z, zn, 2, &s);
		/* never a whole, silent success on corrupt data */
		assert_true(st == DEC_ERROR || s.len != 20000 ||
		    memcmp(s.buf, body, 20000) != 0);
		assert_true(st != DEC_DONE || cs[i] == DEC_DEFLATE);
		/* once failed, it stays failed */
		if (st == DEC_ERROR)
			assert_int_equal(dec_feed(&d, z, zn, sink_out, &s),
			    DEC_ERROR);
		free(s.buf);
		free(z);
	}
	/* not compressed at all */
	for (i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		struct sink s = { 0 };

		assert_int_equal(dec_start(&d, cs[i], 1 << 20), 0);
		st = dec_feed(&d, "{\"usage\":{}} not compressed", 27,
		    sink_out, &s);
		assert_true(st == DEC_ERROR || st == DEC_RUNNING);
		assert_true(st != DEC_DONE);
		free(s.buf);
	}
	dec_free(&d);
	free(body);
}

static void
test_bomb_stops_at_the_limit(void **state)
{
	static const enum dec_coding cs[] = { DEC_GZIP, DEC_DEFLATE, DEC_BR,
	    DEC_ZSTD };
	size_t		 big = 64 << 20, zn, i;
	char		*zeros = calloc(1, big);
	struct decoder	 d = { 0 };

	(void)state;
	assert_non_null(zeros);
	for (i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		unsigned char	*z = compress_as(cs[i], zeros, big, &zn);
		struct sink	 s = { 0 };

		assert_true(zn < big / 100);
		assert_int_equal(dec_start(&d, cs[i], 4 << 20), 0);
		assert_int_equal(feed(&d, z, zn, 2, &s), DEC_LIMIT);
		assert_true(s.len <= 4 << 20);
		free(s.buf);
		free(z);
	}
	dec_free(&d);
	free(zeros);
}

static void
test_coding_names(void **state)
{
	(void)state;
	assert_int_equal(dec_coding_of("", 0), DEC_IDENTITY);
	assert_int_equal(dec_coding_of(" identity ", 10), DEC_IDENTITY);
	assert_int_equal(dec_coding_of("GZIP", 4), DEC_GZIP);
	assert_int_equal(dec_coding_of("x-gzip", 6), DEC_GZIP);
	assert_int_equal(dec_coding_of("deflate", 7), DEC_DEFLATE);
	assert_int_equal(dec_coding_of("br", 2), DEC_BR);
	assert_int_equal(dec_coding_of("zstd", 4), DEC_ZSTD);
	assert_int_equal(dec_coding_of("compress", 8), DEC_UNKNOWN);
	assert_int_equal(dec_coding_of("gzip, br", 8), DEC_UNKNOWN);
}

static void
accept_is(const char *in, const char *want)
{
	const char	*p = in, *end = in + strlen(in), *el;
	char		 got[256];
	size_t		 n, len = 0;

	while (dec_accept_next(&p, end, &el, &n) == 1) {
		if (len > 0) {
			memcpy(got + len, ", ", 2);
			len += 2;
		}
		memcpy(got + len, el, n);
		len += n;
	}
	got[len] = '\0';
	assert_string_equal(got, want);
}

static void
test_accept_encoding_filter(void **state)
{
	(void)state;
	accept_is("gzip, deflate, br, zstd", "gzip, deflate, br, zstd");
	accept_is("compress, gzip;q=0", "gzip;q=0");
	accept_is("gzip;q=1.0, identity; q=0.5, *;q=0",
	    "gzip;q=1.0, identity; q=0.5");
	accept_is("x-exotic, compress", "");
	accept_is(" , ,BR ,", "BR");
	accept_is("", "");
	accept_is("gzipper, brotli", "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_coding_every_split),
		cmocka_unit_test(test_raw_deflate_is_read_as_deflate),
		cmocka_unit_test(test_gzip_members_and_zstd_frames_concatenated),
		cmocka_unit_test(test_corrupt_input_is_an_error),
		cmocka_unit_test(test_bomb_stops_at_the_limit),
		cmocka_unit_test(test_coding_names),
		cmocka_unit_test(test_accept_encoding_filter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
