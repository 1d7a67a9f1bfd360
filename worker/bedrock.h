/*
 * bedrock.h - what a `protocol bedrock` upstream needs that an Anthropic
 * one does not (layer 0): the request target, the body as Bedrock takes
 * it, the SigV4 headers, and the streamed answer turned from AWS
 * event-stream frames back into Anthropic's SSE.
 *
 * Owns one answer's stream state (struct bedrock_stream).  Called by the
 * proxy at its hook points (writing a bedrock request, reading a
 * streamed bedrock answer); it never touches a connection, a client or
 * a usage event: what it writes goes into the evbuffers it is given, and
 * the usage tap reads the SSE it produces as any Anthropic stream.
 */
#ifndef SLUICE_BEDROCK_H
#define SLUICE_BEDROCK_H

#include <stddef.h>
#include <time.h>

#include "common/config.h"
#include "worker/evstream.h"
#include "worker/sigv4.h"

struct evbuffer;

#define BEDROCK_VERSION		"bedrock-2023-05-31"
/* room for the signing headers bedrock_sign writes */
#define BEDROCK_SIGN_MAX	4096

/*
 * The path for MODEL (mapped through U's deployments, each character
 * outside the unreserved set percent-encoded, as AWS's SDKs send it)
 * into OUT (CAP bytes, at least BEDROCK_TARGET_MAX): "/model/{id}/invoke"
 * or, STREAM, ".../invoke-with-response-stream".  Its length.
 */
#define BEDROCK_TARGET_MAX	(7 + 3 * 256 + 28 + 1)
size_t	 bedrock_target(const struct cfg_upstream *u, const char *model,
	    int stream, char *out, size_t cap);
/*
 * The Messages body of LEN bytes at BODY as Bedrock takes it, into OUT:
 * "model" and "stream" removed (the path says them), "anthropic_version"
 * added unless the client named one.  0, or -1 if BODY is not one JSON
 * object or names "model" or "stream" twice.
 */
int	 bedrock_body(const char *body, size_t len, struct evbuffer *out);
/* The same edit for any cloud host of the Messages API: "model" removed,
 * "stream" too if DROP_STREAM, "anthropic_version" VERSION added unless
 * the client named one (worker/vertex.c uses it). */
int	 bedrock_body_edit(const char *body, size_t len, const char *version,
	    int drop_stream, struct evbuffer *out);
/*
 * The headers that sign a request to U: x-amz-date, x-amz-security-token
 * when U has one, Authorization; each line ending "\r\n", into OUT
 * (BEDROCK_SIGN_MAX).  HOST is the Host header's value, PATH the target
 * as sent, BODY the body as sent; NOW the signing time; K the signing
 * key's cache.  The length, or -1 if something does not fit.
 */
long	 bedrock_sign(struct sigv4_key *k, const struct cfg_upstream *u,
	    const char *host, size_t host_len, const char *path,
	    size_t path_len, const void *body, size_t body_len, time_t now,
	    char *out);

/*
 * Bedrock's error answer (STATUS, LEN bytes of BODY: {"message": ...})
 * as Anthropic's error JSON, into OUT: the type from the status, the
 * message Bedrock's.  A body already in Anthropic's shape is copied.
 */
void	 bedrock_error(int status, const char *body, size_t len,
	    struct evbuffer *out);

/* One streamed answer being relayed. */
struct bedrock_stream {
	struct es_dec	 es;
	int		 failed;	/* an error event went out: the rest
					   of the answer is dropped */
	char		 why[160];	/* for the log line */
	struct evbuffer	*sse;		/* where the current feed writes */
	char		*scratch;	/* a decoded event */
	size_t		 scratch_cap;
};

void	 bedrock_stream_init(struct bedrock_stream *);
void	 bedrock_stream_free(struct bedrock_stream *);
/*
 * Decode N more bytes of event-stream at P; each chunk's event goes to
 * SSE as "event: TYPE\ndata: JSON\n\n".  0, or -1 when the stream can
 * no longer be trusted (a bad CRC, a malformed frame or payload, an
 * exception frame): then an Anthropic error event has been written to
 * SSE, and bs->why says what happened.
 */
int	 bedrock_stream_feed(struct bedrock_stream *bs, const char *p,
	    size_t n, struct evbuffer *sse);
/* The answer ended: -1 (and the error event) if a frame was cut. */
int	 bedrock_stream_end(struct bedrock_stream *bs, struct evbuffer *sse);

#endif
