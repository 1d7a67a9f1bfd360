/*
 * fuzz_http.c - libFuzzer target: the client request head parser and the
 * chunked body decoder, the first code every byte from a client meets.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "worker/http.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_head	 hh;
	struct chunked		 ck;
	struct evbuffer		*in, *out;
	const char		*p = (const char *)data;
	size_t			 split;

	if (http_parse_request(p, size, 8192, &hh) == 0) {
		for (int i = 0; i < hh.nh; i++)
			(void)http_is_hop_by_hop(&hh, &hh.h[i]);
		(void)http_find(&hh, "content-type");
	}
	if (http_parse_response(p, size, &hh) == 0)
		(void)http_find(&hh, "connection");

	/* the same bytes as a chunked body, arriving in two reads */
	in = evbuffer_new();
	out = evbuffer_new();
	memset(&ck, 0, sizeof(ck));
	split = size > 0 ? data[0] % (size + 1) : 0;
	evbuffer_add(in, p, split);
	if (chunked_decode(&ck, in, out) >= 0) {
		evbuffer_add(in, p + split, size - split);
		(void)chunked_decode(&ck, in, out);
	}
	evbuffer_free(in);
	evbuffer_free(out);
	return 0;
}
