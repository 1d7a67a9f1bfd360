/*
 * xlate_fuzz.h - the body of the two translation fuzz targets, one per
 * direction (fuzz_xlate_oa.c: what an OpenAI-format side sends,
 * fuzz_xlate_an.c: what an Anthropic side sends).  Each input is taken
 * as a request from that side, as a whole answer and an error from that
 * side's upstream, and as a stream fed in pieces whose size the input
 * chooses.  On every input: no crash, memory bounded (the stream's event
 * buffer by XLATE_SSE_EVENT_MAX), and whenever the input is one strict
 * JSON object: the translators' tokenizer (xj_parse) gives exactly
 * jsmn's tokens (json_parse), and a translation that succeeds gives one
 * strict JSON object: it never turns a valid body into an invalid one.
 */
#ifndef SLUICE_XLATE_FUZZ_H
#define SLUICE_XLATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "common/json.h"
#include "common/json_strict.h"
#include "worker/xlate_json.h"
#include "worker/xlate_req.h"
#include "worker/xlate_resp.h"
#include "worker/xlate_sse.h"

/* Abort unless the bytes in B are one strict JSON object. */
static void
must_be_json(struct evbuffer *b)
{
	size_t		 n = evbuffer_get_length(b);
	const char	*p = (const char *)evbuffer_pullup(b, -1);

	if (n == 0 || json_strict_read(p, n, NULL, 0, NULL) != JSON_STRICT_OK)
		abort();
}

/* On a valid document, xj_parse is jsmn, token for token. */
static void
same_tokens(const char *p, size_t size)
{
	static struct json_doc	 a = { .max_tokens = 1 << 16 };
	static struct json_doc	 b = { .max_tokens = 1 << 16 };
	int			 i;

	if (json_parse(&a, p, size) == -1) {
		if (xj_parse(&b, p, size) == 0 && a.cap < a.max_tokens)
			abort();	/* jsmn refused only what is too deep */
		return;
	}
	if (xj_parse(&b, p, size) == -1 || a.ntok != b.ntok)
		abort();
	for (i = 0; i < a.ntok; i++)
		if (a.tok[i].type != b.tok[i].type ||
		    a.tok[i].start != b.tok[i].start ||
		    a.tok[i].end != b.tok[i].end ||
		    a.tok[i].size != b.tok[i].size ||
		    a.tok[i].parent != b.tok[i].parent)
			abort();
}

static int
fuzz_xlate(const uint8_t *data, size_t size, int from_openai)
{
	static struct json_doc	 doc = { .max_tokens = 1 << 16 };
	static struct xlate_sse	 st;
	struct xlate_req_opts	 o = { "model", 4096, (int)(size & 1) };
	struct xlate_info	 info = { 0 };
	struct xlate_err	 err;
	struct evbuffer		*out = evbuffer_new();
	const char		*p = (const char *)data;
	int			 valid, rc;
	size_t			 i, step;

	if (out == NULL)
		return 0;
	valid = json_strict_read(p, size, NULL, 0, NULL) == JSON_STRICT_OK;
	if (valid)
		same_tokens(p, size);

	/* a request from this side, for the other */
	rc = from_openai ?
	    xlate_req_to_anthropic(&doc, p, size, &o, &info, out, &err) :
	    xlate_req_to_openai(&doc, p, size, &o, &info, out, &err);
	if (valid && rc == 0)
		must_be_json(out);
	evbuffer_drain(out, evbuffer_get_length(out));

	/* a whole answer from this side's upstream, for the other's client */
	if (size > 0 && data[0] % 2 == 0)
		snprintf(info.format_tool, sizeof(info.format_tool), "json");
	rc = from_openai ?
	    xlate_resp_to_anthropic(&doc, p, size, &info, out) :
	    xlate_resp_to_openai(&doc, p, size, &info, 1, out);
	if (valid && rc == 0)
		must_be_json(out);
	evbuffer_drain(out, evbuffer_get_length(out));
	if (from_openai)
		xlate_error_to_anthropic(&doc, p, size, 400 + (int)size % 200,
		    "rid", out);
	else
		xlate_error_to_openai(&doc, p, size, 400 + (int)size % 200, out);
	if (valid)
		must_be_json(out);
	evbuffer_drain(out, evbuffer_get_length(out));

	/* a stream from this side's upstream, cut where the input says */
	info.include_usage = size > 1 && data[1] % 2 == 0;
	xlate_sse_init(&st, !from_openai, &info, 1);
	step = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
	for (i = 0; i < size; i += step)
		if (xlate_sse_feed(&st, &doc, p + i, size - i < step ?
		    size - i : step, out) == -1)
			break;
	xlate_sse_end(&st, &doc, out);
	evbuffer_free(out);
	return 0;
}

#endif
