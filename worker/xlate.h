/*
 * xlate.h - the translate stage of one request (layer 0, pure): what
 * carries a request from its client's format to its upstream's and the
 * answer back.
 *
 * Owns, per request: the direction, the request body as the upstream
 * reads it, the endpoint the upstream serves it at, what the answer's
 * translation must know (struct xlate_info), and the answer's state: a
 * JSON answer is kept whole (bounded) until its end, a 2xx event stream
 * goes out event by event.  The pipeline fills it (xlate_request) and
 * hands it to the proxy, which writes the body, asks which client
 * headers to leave out, and passes the answer's bytes through
 * xlate_answer_*.  It knows no connection: it works on the buffers it is
 * given.  Its buffers are allocated by a connection's first translated
 * request and kept for the next; a connection that never translates
 * never allocates them.
 */
#ifndef SLUICE_XLATE_H
#define SLUICE_XLATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/json.h"
#include "worker/endpoint.h"
#include "worker/http.h"
#include "worker/xlate_req.h"
#include "worker/xlate_sse.h"

struct evbuffer;

/* A JSON answer larger than this is not translated: 502. */
#define XLATE_WHOLE_MAX		(16 * 1024 * 1024)

enum xlate_dir {
	XLATE_NONE = 0,		/* formats match: passthrough */
	XLATE_TO_ANTHROPIC,	/* OpenAI client, Anthropic upstream */
	XLATE_TO_OPENAI,	/* Anthropic client, OpenAI-format upstream */
};

struct xlate {
	struct evbuffer	*body;		/* the request, as the upstream reads it */
	struct evbuffer	*whole;		/* a JSON answer, kept to its end */
	struct evbuffer	*out;		/* the client's answer bytes, before
					   the proxy frames them */
	struct xlate_sse sse_st;	/* a streamed answer's state */
	/* per request: zeroed by xlate_reset from here on */
	enum xlate_dir	 dir;
	const struct endpoint *ep;	/* where the upstream serves it */
	struct xlate_info info;
	int64_t		 created;	/* Unix seconds, OpenAI's "created" */
	int		 status;	/* the upstream's answer status */
	int		 sse;		/* ... streamed: event by event */
	int		 failed;	/* ... could not be translated */
};

/* A stage with no buffers yet (as calloc makes it). */
void	 xlate_init(struct xlate *);
/* Its buffers; the struct itself is the caller's. */
void	 xlate_free(struct xlate *);
/* Forget the last request; its buffers stay for the next. */
void	 xlate_reset(struct xlate *);
/*
 * Translate the request BODY (LEN bytes, read strictly) in direction DIR
 * into X->body.  CREATED (Unix seconds) stamps OpenAI objects made from
 * the answer.  0, or -1 with ERR naming what cannot be translated (or
 * saying sluice is out of memory).
 */
int	 xlate_request(struct xlate *, enum xlate_dir, struct json_doc *,
	    const char *body, size_t len, const struct xlate_req_opts *,
	    int64_t created, struct xlate_err *err);
/*
 * 1 when the client's header H is not for the upstream: Accept-Encoding
 * (the answer is read to be rewritten, so it must come uncompressed) and
 * the client's format's own headers (anthropic-*, openai-*).
 */
int	 xlate_drops_header(const struct xlate *, const struct http_header *);
/*
 * Write the client's credential header H (Authorization or x-api-key),
 * when sluice forwards the client's own, as the upstream's format sends
 * one: OpenAI's "Authorization: Bearer KEY", Anthropic's "x-api-key: KEY".
 */
void	 xlate_put_credential(const struct xlate *, struct evbuffer *out,
	    const struct http_header *h);
/*
 * The upstream answered STATUS; SSE: as an event stream; PLAIN: without
 * a Content-Encoding (anything else cannot be read to be rewritten, and
 * is answered 502 at its end).
 */
void	 xlate_answer_begin(struct xlate *, int status, int sse, int plain);
/* 1 when the answer goes out as it comes (a 2xx stream): its head now. */
int	 xlate_answer_streams(const struct xlate *);
/*
 * The answer's body bytes in IN (all consumed); what the client gets of
 * them into OUT.  -1: the answer cannot be translated (too large, an
 * event too large, out of memory); the stage is failed.
 */
int	 xlate_answer_feed(struct xlate *, struct json_doc *,
	    struct evbuffer *in, struct evbuffer *out);
/*
 * The answer ended: the rest of the client's body into OUT.  A whole
 * answer is translated here: -1 when it is not the answer it should be
 * (the client is told 502).  REQID goes into Anthropic's error bodies.
 */
int	 xlate_answer_end(struct xlate *, struct json_doc *, const char *reqid,
	    struct evbuffer *out);
/* The name of a format, for the usage row: DST of EV_FORMAT_MAX bytes
 * gets "anthropic" when ANTHROPIC, else "openai". */
void	 xlate_format_name(char *dst, int anthropic);

#endif
