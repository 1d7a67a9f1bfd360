/*
 * evstream.c - the event-stream decoder.
 *
 * A frame is taken whole before anything of it is believed: the prelude
 * CRC is checked as soon as its 12 bytes are in (a corrupt length must
 * not make us wait for, or allocate, 16 MB that will never come), the
 * message CRC once the last byte is.  A frame that arrives whole in one
 * read is decoded where it lies; only a split one is copied, into a
 * buffer that grows to its size and is kept for the next.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "worker/evstream.h"

#define PRELUDE		12
#define FRAME_MIN	16

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint32_t
crc(const unsigned char *p, size_t n)
{
	return (uint32_t)crc32(0L, p, (uInt)n);
}

void
es_init(struct es_dec *d)
{
	memset(d, 0, sizeof(*d));
}

void
es_free(struct es_dec *d)
{
	free(d->buf);
	memset(d, 0, sizeof(*d));
}

size_t
es_pending(const struct es_dec *d)
{
	return d->len;
}

const char *
es_strerror(enum es_error err)
{
	switch (err) {
	case ES_OK:
		return "no error";
	case ES_BAD_LENGTH:
		return "impossible frame length";
	case ES_PRELUDE_CRC:
		return "prelude CRC mismatch";
	case ES_MESSAGE_CRC:
		return "message CRC mismatch";
	case ES_BAD_HEADER:
		return "malformed frame header";
	case ES_STOPPED:
		return "stopped";
	case ES_NOMEM:
		return "out of memory";
	}
	return "unknown";
}

/* The prelude at P: its total length in *TOTAL, or why it is no frame's. */
static enum es_error
es_prelude(const unsigned char *p, uint32_t *total)
{
	uint32_t	 t = be32(p), h = be32(p + 4);

	if (crc(p, 8) != be32(p + 8))
		return ES_PRELUDE_CRC;
	if (t < FRAME_MIN || t > ES_FRAME_MAX || h > t - FRAME_MIN)
		return ES_BAD_LENGTH;
	*total = t;
	return ES_OK;
}

/* Copy a string value of N bytes at V into DST (CAP), cut if longer. */
static void
es_str(char *dst, size_t cap, const unsigned char *v, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int
name_is(const unsigned char *name, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(name, s, n) == 0;
}

/* The headers of a frame (HLEN bytes at P) into M; -1 malformed. */
static int
es_headers(const unsigned char *p, size_t hlen, struct es_msg *m)
{
	static const size_t fixed[] = { 0, 0, 1, 2, 4, 8, 0, 0, 8, 16 };
	size_t	 i = 0, nlen, vlen;

	while (i < hlen) {
		const unsigned char *name, *v;
		unsigned	 type;

		nlen = p[i++];
		if (nlen == 0 || hlen - i < nlen + 1)
			return -1;
		name = p + i;
		i += nlen;
		type = p[i++];
		if (type > 9)
			return -1;
		if (type == 6 || type == 7) {
			if (hlen - i < 2)
				return -1;
			vlen = (size_t)p[i] << 8 | p[i + 1];
			i += 2;
		} else
			vlen = fixed[type];
		if (hlen - i < vlen)
			return -1;
		v = p + i;
		i += vlen;
		m->nheaders++;
		if (type != 7)
			continue;
		if (name_is(name, nlen, ":message-type"))
			es_str(m->message_type, sizeof(m->message_type), v, vlen);
		else if (name_is(name, nlen, ":event-type"))
			es_str(m->event_type, sizeof(m->event_type), v, vlen);
		else if (name_is(name, nlen, ":exception-type"))
			es_str(m->exception_type, sizeof(m->exception_type), v,
			    vlen);
		else if (name_is(name, nlen, ":content-type"))
			es_str(m->content_type, sizeof(m->content_type), v, vlen);
		else if (name_is(name, nlen, ":error-code"))
			es_str(m->error_code, sizeof(m->error_code), v, vlen);
		else if (name_is(name, nlen, ":error-message"))
			es_str(m->error_message, sizeof(m->error_message), v,
			    vlen);
	}
	return 0;
}

/* One whole frame of TOTAL bytes at P, its prelude checked. */
static enum es_error
es_frame(struct es_dec *d, const unsigned char *p, uint32_t total,
    es_msg_fn *fn, void *arg)
{
	struct es_msg	 m;
	uint32_t	 hlen = be32(p + 4);

	if (crc(p, total - 4) != be32(p + total - 4))
		return ES_MESSAGE_CRC;
	memset(&m, 0, sizeof(m));
	if (es_headers(p + PRELUDE, hlen, &m) == -1)
		return ES_BAD_HEADER;
	m.payload = p + PRELUDE + hlen;
	m.payload_len = total - FRAME_MIN - hlen;
	d->frames++;
	return fn(arg, &m) == -1 ? ES_STOPPED : ES_OK;
}

/* Append N bytes at P to the partial frame. */
static enum es_error
es_keep(struct es_dec *d, const unsigned char *p, size_t n)
{
	if (d->cap - d->len < n) {
		size_t	 want = d->len + n;
		size_t	 cap = d->cap == 0 ? 4096 : d->cap;
		unsigned char *b;

		while (cap < want)
			cap *= 2;
		if ((b = realloc(d->buf, cap)) == NULL)
			return ES_NOMEM;
		d->buf = b;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, p, n);
	d->len += n;
	return ES_OK;
}

enum es_error
es_feed(struct es_dec *d, const void *data, size_t n, es_msg_fn *fn,
    void *arg)
{
	const unsigned char	*p = data;
	uint32_t		 total;
	size_t			 k;

	while (d->err == ES_OK && n > 0) {
		if (d->len == 0 && n >= PRELUDE) {
			/* a frame starts here: decode it in place if whole */
			if ((d->err = es_prelude(p, &total)) != ES_OK)
				break;
			if (n >= total) {
				d->err = es_frame(d, p, total, fn, arg);
				p += total;
				n -= total;
				continue;
			}
			d->err = es_keep(d, p, n);
			break;
		}
		/* a split frame: its prelude first, then up to its end */
		if (d->len < PRELUDE) {
			k = PRELUDE - d->len < n ? PRELUDE - d->len : n;
			if ((d->err = es_keep(d, p, k)) != ES_OK)
				break;
			p += k;
			n -= k;
			if (d->len < PRELUDE)
				break;
		}
		if ((d->err = es_prelude(d->buf, &total)) != ES_OK)
			break;
		k = total - d->len < n ? total - d->len : n;
		if ((d->err = es_keep(d, p, k)) != ES_OK)
			break;
		p += k;
		n -= k;
		if (d->len == total) {
			d->len = 0;
			d->err = es_frame(d, d->buf, total, fn, arg);
		}
	}
	return d->err;
}
