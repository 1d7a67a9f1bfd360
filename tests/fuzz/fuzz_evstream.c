/*
 * fuzz_evstream.c - libFuzzer target: the AWS event-stream decoder and
 * the base64 of the payloads it delivers.
 *
 * The first byte sets the size of the pieces the rest is fed in (1 to
 * 128 bytes).  The same input is also fed whole: how reads cut a stream
 * must not change what it decodes to, so the frames delivered, their
 * payloads' checksum and the final error must be equal.  Each payload is
 * decoded as base64 into a buffer of exactly B64_DECODED_MAX bytes
 * (ASan: no write past it).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/base64.h"
#include "worker/evstream.h"

struct tally {
	uint64_t	 frames;
	uint32_t	 sum;
};

static int
on_msg(void *arg, const struct es_msg *m)
{
	struct tally	*t = arg;
	unsigned char	*out;
	long		 n;

	t->frames++;
	t->sum = (uint32_t)crc32(t->sum, m->payload, (uInt)m->payload_len);
	if ((out = malloc(B64_DECODED_MAX(m->payload_len) + 1)) == NULL)
		abort();
	n = b64_decode((const char *)m->payload, m->payload_len, out);
	if (n > (long)B64_DECODED_MAX(m->payload_len))
		abort();
	free(out);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct es_dec	 d;
	struct tally	 whole, split;
	enum es_error	 ew, es = ES_OK;
	size_t		 piece, off, k;

	if (size < 1)
		return 0;
	piece = (size_t)(data[0] & 127) + 1;
	data++;
	size--;
	memset(&whole, 0, sizeof(whole));
	memset(&split, 0, sizeof(split));
	es_init(&d);
	ew = es_feed(&d, data, size, on_msg, &whole);
	es_free(&d);
	es_init(&d);
	for (off = 0; off < size && es == ES_OK; off += k) {
		k = size - off < piece ? size - off : piece;
		es = es_feed(&d, data + off, k, on_msg, &split);
	}
	if (d.len > ES_FRAME_MAX)
		abort();
	es_free(&d);
	if (ew != es || whole.frames != split.frames || whole.sum != split.sum)
		abort();
	return 0;
}
