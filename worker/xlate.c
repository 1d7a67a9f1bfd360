/*
 * xlate.c - the translate stage: one request's way across formats.
 *
 * Why a whole JSON answer is kept: its usage and stop reason come after
 * its content, and the client's Content-Length must be known before its
 * first byte; answers are small next to the prompts they answer.  A 2xx
 * event stream is never kept: each event goes out translated when its
 * last line is in.  An error (any non-2xx) is kept whole like a JSON
 * answer and rewritten in the client's error shape, same status.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "common/event.h"
#include "worker/xlate.h"
#include "worker/xlate_resp.h"

void
xlate_init(struct xlate *x)
{
	memset(x, 0, sizeof(*x));
}

void
xlate_free(struct xlate *x)
{
	if (x->body != NULL)
		evbuffer_free(x->body);
	if (x->whole != NULL)
		evbuffer_free(x->whole);
	if (x->out != NULL)
		evbuffer_free(x->out);
	xlate_sse_free(&x->sse_st);
	x->body = x->whole = x->out = NULL;
}

void
xlate_reset(struct xlate *x)
{
	if (x->dir == XLATE_NONE)
		return;
	evbuffer_drain(x->body, evbuffer_get_length(x->body));
	evbuffer_drain(x->whole, evbuffer_get_length(x->whole));
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	memset(&x->dir, 0, sizeof(*x) - offsetof(struct xlate, dir));
}

int
xlate_request(struct xlate *x, enum xlate_dir dir, struct json_doc *d,
    const char *body, size_t len, const struct xlate_req_opts *o,
    int64_t created, struct xlate_err *err)
{
	int rc;

	if ((x->body == NULL && (x->body = evbuffer_new()) == NULL) ||
	    (x->whole == NULL && (x->whole = evbuffer_new()) == NULL) ||
	    (x->out == NULL && (x->out = evbuffer_new()) == NULL))
		return xj_fail(err, "sluice is out of memory");
	x->dir = dir;
	x->created = created;
	if (dir == XLATE_TO_ANTHROPIC) {
		x->ep = endpoint_find("/v1/messages", 12);
		rc = xlate_req_to_anthropic(d, body, len, o, &x->info, x->body,
		    err);
	} else {
		x->ep = endpoint_find("/v1/chat/completions", 20);
		rc = xlate_req_to_openai(d, body, len, o, &x->info, x->body,
		    err);
	}
	if (rc == -1)
		evbuffer_drain(x->body, evbuffer_get_length(x->body));
	return rc;
}

int
xlate_drops_header(const struct xlate *x, const struct http_header *h)
{
	if (http_name_is(h->name, h->name_len, "accept-encoding"))
		return 1;
	if (h->name_len > 10 && x->dir == XLATE_TO_OPENAI &&
	    http_name_is(h->name, 10, "anthropic-"))
		return 1;
	return h->name_len > 7 && x->dir == XLATE_TO_ANTHROPIC &&
	    http_name_is(h->name, 7, "openai-");
}

void
xlate_put_credential(const struct xlate *x, struct evbuffer *out,
    const struct http_header *h)
{
	const char	*v = h->value;
	size_t		 n = h->value_len;

	if (http_name_is(h->name, h->name_len, "authorization")) {
		if (x->dir != XLATE_TO_ANTHROPIC || n < 7 ||
		    strncasecmp(v, "Bearer ", 7) != 0) {
			http_put_header(out, h);
			return;
		}
		XJ_LIT(out, "x-api-key: ");
		evbuffer_add(out, v + 7, n - 7);
	} else if (x->dir == XLATE_TO_OPENAI &&
	    http_name_is(h->name, h->name_len, "x-api-key")) {
		XJ_LIT(out, "Authorization: Bearer ");
		evbuffer_add(out, v, n);
	} else {
		http_put_header(out, h);
		return;
	}
	XJ_LIT(out, "\r\n");
}

void
xlate_answer_begin(struct xlate *x, int status, int sse, int plain)
{
	x->status = status;
	x->sse = sse && plain && status >= 200 && status < 300;
	x->failed = !plain;
	evbuffer_drain(x->whole, evbuffer_get_length(x->whole));
	/* a request sent to Anthropic is answered to an OpenAI client */
	if (x->sse)
		xlate_sse_init(&x->sse_st, x->dir == XLATE_TO_ANTHROPIC,
		    &x->info, x->created);
}

int
xlate_answer_streams(const struct xlate *x)
{
	return x->sse;
}

int
xlate_answer_feed(struct xlate *x, struct json_doc *d, struct evbuffer *in,
    struct evbuffer *out)
{
	struct evbuffer_iovec	 v[8];
	size_t			 n = evbuffer_get_length(in);
	int			 i, nv;

	if (x->failed) {
		evbuffer_drain(in, n);
		return -1;
	}
	if (!x->sse) {
		if (evbuffer_get_length(x->whole) + n > XLATE_WHOLE_MAX) {
			x->failed = 1;
			evbuffer_drain(in, n);
			return -1;
		}
		evbuffer_add_buffer(x->whole, in);
		return 0;
	}
	while (evbuffer_get_length(in) > 0) {
		nv = evbuffer_peek(in, -1, NULL, v, 8);
		if (nv > 8)
			nv = 8;
		for (i = 0; i < nv; i++)
			if (xlate_sse_feed(&x->sse_st, d, v[i].iov_base,
			    v[i].iov_len, out) == -1) {
				x->failed = 1;
				evbuffer_drain(in, evbuffer_get_length(in));
				return -1;
			}
		for (i = 0, n = 0; i < nv; i++)
			n += v[i].iov_len;
		evbuffer_drain(in, n);
	}
	return 0;
}

int
xlate_answer_end(struct xlate *x, struct json_doc *d, const char *reqid,
    struct evbuffer *out)
{
	const char	*body;
	size_t		 len = evbuffer_get_length(x->whole);
	int		 ok = x->status >= 200 && x->status < 300, rc = 0;

	if (x->failed)
		return -1;
	if (x->sse) {
		xlate_sse_end(&x->sse_st, d, out);
		return 0;
	}
	body = len > 0 ? (const char *)evbuffer_pullup(x->whole, -1) : "";
	if (body == NULL)
		return -1;
	if (ok && x->dir == XLATE_TO_OPENAI)
		rc = xlate_resp_to_anthropic(d, body, len, &x->info, out);
	else if (ok)
		rc = xlate_resp_to_openai(d, body, len, &x->info, x->created,
		    out);
	else if (x->dir == XLATE_TO_OPENAI)
		xlate_error_to_anthropic(d, body, len, x->status, reqid, out);
	else
		xlate_error_to_openai(d, body, len, x->status, out);
	if (rc == -1)
		x->failed = 1;
	return rc;
}

_Static_assert(EV_FORMAT_MAX >= 10, "a format name fits the row");

void
xlate_format_name(char *dst, int anthropic)
{
	/* on every request: a copy of a constant, not a printf */
	if (anthropic)
		memcpy(dst, "anthropic", 10);
	else
		memcpy(dst, "openai", 7);
}
