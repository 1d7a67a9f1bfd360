/*
 * decode.c - Content-Encoding decoders over zlib, libbrotli and libzstd,
 * fed in pieces of any size (one byte at a time is the unit test's case).
 *
 * Memory is bounded per connection, not per answer: the z_stream and the
 * ZSTD_DStream are made on a connection's first answer in that coding
 * and reset for the next (their windows stay allocated: 32 KiB for zlib,
 * at most 1 << DEC_ZSTD_WLOG for zstd); libbrotli 1.0 has no reset, so
 * its state is the one allocation per answer.  Output goes out through a
 * buffer on the stack, DEC_OUT bytes at a time; nothing is accumulated.
 *
 * "deflate" is RFC 9110's zlib format, but some servers send raw deflate
 * (RFC 1951): the first two bytes decide, as curl and browsers do.
 * A gzip body may hold several members, a zstd body several frames; both
 * are read to the end.  Trailing bytes after a deflate or br stream are
 * ignored: the usage is in what came before.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include "worker/decode.h"

/* 8 MiB: more than zstd's level 19 uses; a larger window is refused */
#define DEC_ZSTD_WLOG	23

static int
is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* N bytes of V, trimmed, equal to S (case-insensitive). */
static int
token_is(const char *v, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp(v, s, n) == 0;
}

enum dec_coding
dec_coding_of(const char *v, size_t n)
{
	while (n > 0 && is_space(*v)) {
		v++;
		n--;
	}
	while (n > 0 && is_space(v[n - 1]))
		n--;
	if (n == 0 || token_is(v, n, "identity"))
		return DEC_IDENTITY;
	if (token_is(v, n, "gzip") || token_is(v, n, "x-gzip"))
		return DEC_GZIP;
	if (token_is(v, n, "deflate"))
		return DEC_DEFLATE;
	if (token_is(v, n, "br"))
		return DEC_BR;
	if (token_is(v, n, "zstd"))
		return DEC_ZSTD;
	/* "gzip, br" and the like: layered codings are not worth decoding */
	return DEC_UNKNOWN;
}

int
dec_accept_next(const char **pp, const char *end, const char **el,
    size_t *ellen)
{
	static const char *const ok[] = { "gzip", "deflate", "br", "zstd",
	    "identity" };
	const char	*p = *pp, *s, *e, *tok_end;
	size_t		 i;

	while (p < end) {
		s = p;
		while (p < end && *p != ',')
			p++;
		e = p;
		if (p < end)
			p++;			/* the comma */
		while (s < e && is_space(*s))
			s++;
		while (e > s && is_space(e[-1]))
			e--;
		for (tok_end = s; tok_end < e && *tok_end != ';' &&
		    !is_space(*tok_end); tok_end++)
			;
		for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			if (token_is(s, (size_t)(tok_end - s), ok[i]))
				break;
		if (i == sizeof(ok) / sizeof(ok[0]))
			continue;	/* compress, *, x-exotic: dropped */
		*pp = p;
		*el = s;
		*ellen = (size_t)(e - s);
		return 1;
	}
	*pp = p;
	return 0;
}

int
dec_start(struct decoder *d, enum dec_coding coding, uint64_t limit)
{
	dec_end(d);
	d->coding = coding;
	d->state = DEC_RUNNING;
	d->out_total = 0;
	d->limit = limit;
	d->nhdr = 0;
	switch (coding) {
	case DEC_GZIP:
	case DEC_DEFLATE:
		if (d->z == NULL && (d->z = calloc(1, sizeof(z_stream))) == NULL)
			break;
		return 0;	/* the window bits are known at the first bytes */
	case DEC_BR:
		if ((d->br = BrotliDecoderCreateInstance(NULL, NULL,
		    NULL)) == NULL)
			break;
		return 0;
	case DEC_ZSTD:
		if (d->zs == NULL) {
			if ((d->zs = ZSTD_createDStream()) == NULL)
				break;
			if (ZSTD_isError(ZSTD_DCtx_setParameter(d->zs,
			    ZSTD_d_windowLogMax, DEC_ZSTD_WLOG))) {
				ZSTD_freeDStream(d->zs);
				d->zs = NULL;
				break;
			}
		} else if (ZSTD_isError(ZSTD_DCtx_reset(d->zs,
		    ZSTD_reset_session_only)))
			break;
		return 0;
	case DEC_IDENTITY:
		return 0;
	case DEC_UNKNOWN:
		break;
	}
	d->state = DEC_ERROR;
	return -1;
}

/* Hand N bytes out, unless that passes the limit. 0, or -1 past it. */
static int
put_out(struct decoder *d, const unsigned char *p, size_t n, dec_out_fn *out,
    void *arg)
{
	if (n == 0)
		return 0;
	if (d->out_total + n > d->limit) {
		d->state = DEC_LIMIT;
		return -1;
	}
	d->out_total += n;
	out(arg, (const char *)p, n);
	return 0;
}

/* (Re)start inflate for the coding; BITS as inflateInit2 takes them. */
static int
z_begin(struct decoder *d, int bits)
{
	z_stream *z = d->z;

	if (d->z_live)
		return inflateReset2(z, bits) == Z_OK ? 0 : -1;
	memset(z, 0, sizeof(*z));
	if (inflateInit2(z, bits) != Z_OK)
		return -1;
	d->z_live = 1;
	return 0;
}

static void
z_feed(struct decoder *d, const unsigned char *p, size_t n, dec_out_fn *out,
    void *arg)
{
	unsigned char	 buf[DEC_OUT];
	z_stream	*z = d->z;
	int		 rc;

	z->next_in = (unsigned char *)p;
	z->avail_in = (uInt)n;
	while (d->state == DEC_RUNNING) {
		z->next_out = buf;
		z->avail_out = sizeof(buf);
		rc = inflate(z, Z_NO_FLUSH);
		if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
			d->state = DEC_ERROR;
			return;
		}
		if (put_out(d, buf, sizeof(buf) - z->avail_out, out, arg) == -1)
			return;
		if (rc == Z_STREAM_END) {
			/* a gzip member may follow another */
			if (d->coding == DEC_GZIP && z->avail_in > 0) {
				if (inflateReset(z) != Z_OK)
					d->state = DEC_ERROR;
				continue;
			}
			d->state = DEC_DONE;
			return;
		}
		if (z->avail_in == 0 && z->avail_out != 0)
			return;			/* wants more input */
		if (rc == Z_BUF_ERROR && z->avail_out != 0)
			return;
	}
}

/* The first bytes of a gzip or deflate body. 0 go on, -1 need more. */
static int
z_sniff(struct decoder *d, const unsigned char **p, size_t *n,
    dec_out_fn *out, void *arg)
{
	unsigned char	 hdr[2];
	int		 bits;

	if (d->coding == DEC_GZIP)
		bits = 15 + 16;
	else {
		while (d->nhdr < 2 && *n > 0) {
			d->hdr[d->nhdr++] = **p;
			(*p)++;
			(*n)--;
		}
		if (d->nhdr < 2)
			return -1;
		/* zlib: CM 8, a window of at most 32K, FCHECK */
		bits = (d->hdr[0] & 0x0f) == 8 && (d->hdr[0] >> 4) <= 7 &&
		    ((d->hdr[0] << 8) | d->hdr[1]) % 31 == 0 ? 15 : -15;
	}
	if (z_begin(d, bits) == -1) {
		d->state = DEC_ERROR;
		return -1;
	}
	d->nhdr = 3;			/* started */
	if (d->coding == DEC_DEFLATE) {
		memcpy(hdr, d->hdr, 2);
		z_feed(d, hdr, 2, out, arg);
	}
	return 0;
}

static void
br_feed(struct decoder *d, const unsigned char *p, size_t n, dec_out_fn *out,
    void *arg)
{
	unsigned char		 buf[DEC_OUT], *next_out;
	size_t			 avail_out;
	BrotliDecoderResult	 rc;

	while (d->state == DEC_RUNNING) {
		next_out = buf;
		avail_out = sizeof(buf);
		rc = BrotliDecoderDecompressStream(d->br, &n, &p, &avail_out,
		    &next_out, NULL);
		if (rc == BROTLI_DECODER_RESULT_ERROR) {
			d->state = DEC_ERROR;
			return;
		}
		if (put_out(d, buf, sizeof(buf) - avail_out, out, arg) == -1)
			return;
		if (rc == BROTLI_DECODER_RESULT_SUCCESS)
			d->state = DEC_DONE;
		else if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
			return;
	}
}

static void
zs_feed(struct decoder *d, const unsigned char *p, size_t n, dec_out_fn *out,
    void *arg)
{
	unsigned char	 buf[DEC_OUT];
	ZSTD_inBuffer	 in = { p, n, 0 };
	ZSTD_outBuffer	 ob;
	size_t		 rc;

	/* a frame ended (DONE): another may follow */
	if (d->state == DEC_DONE && n > 0)
		d->state = DEC_RUNNING;
	while (d->state == DEC_RUNNING) {
		ob.dst = buf;
		ob.size = sizeof(buf);
		ob.pos = 0;
		rc = ZSTD_decompressStream(d->zs, &ob, &in);
		if (ZSTD_isError(rc)) {
			d->state = DEC_ERROR;
			return;
		}
		if (put_out(d, buf, ob.pos, out, arg) == -1)
			return;
		if (in.pos == in.size && ob.pos < ob.size) {
			if (rc == 0)
				d->state = DEC_DONE;
			return;
		}
	}
}

enum dec_state
dec_feed(struct decoder *d, const void *data, size_t n, dec_out_fn *out,
    void *arg)
{
	const unsigned char *p = data;

	if (d->state == DEC_ERROR || d->state == DEC_LIMIT)
		return d->state;
	switch (d->coding) {
	case DEC_IDENTITY:
		put_out(d, p, n, out, arg);
		break;
	case DEC_GZIP:
	case DEC_DEFLATE:
		if (d->state == DEC_DONE)
			break;		/* trailing bytes */
		if (d->nhdr != 3 && z_sniff(d, &p, &n, out, arg) == -1)
			break;
		if (n > 0 && d->state == DEC_RUNNING)
			z_feed(d, p, n, out, arg);
		break;
	case DEC_BR:
		if (d->state == DEC_RUNNING)
			br_feed(d, p, n, out, arg);
		break;
	case DEC_ZSTD:
		zs_feed(d, p, n, out, arg);
		break;
	case DEC_UNKNOWN:
		d->state = DEC_ERROR;
		break;
	}
	return d->state;
}

void
dec_end(struct decoder *d)
{
	if (d->br != NULL) {
		BrotliDecoderDestroyInstance(d->br);
		d->br = NULL;
	}
}

void
dec_free(struct decoder *d)
{
	dec_end(d);
	if (d->z != NULL) {
		if (d->z_live)
			inflateEnd(d->z);
		free(d->z);
	}
	if (d->zs != NULL)
		ZSTD_freeDStream(d->zs);
	memset(d, 0, sizeof(*d));
}
