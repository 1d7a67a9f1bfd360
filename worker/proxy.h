/*
 * proxy.h - one upstream exchange for a request (layer 3).
 *
 * Owns the upstream side of a request: which upstream, the connection,
 * the request as written (the client's head filtered, the body with its
 * edits), the answer's head and body relayed to the client as they
 * arrive, and the usage read from that answer on its way.  Called by the
 * pipeline, which fills the edits and starts it; it calls down into the
 * client core (client_answered, client_error) when the exchange ends and
 * installs the client's drained and abort hooks for its duration.  It
 * never builds a usage event (the pipeline does, from what it leaves
 * here) and never decides on its own whether to retry: up_next does.
 * A translated request (proxy_translate) is written and answered through
 * its translate stage (xlate.h); the proxy only frames the bytes.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "shm/cache.h"
#include "worker/bedrock.h"
#include "worker/client.h"
#include "worker/decode.h"
#include "worker/http.h"
#include "worker/usage.h"
#include "worker/xlate.h"

struct evbuffer;
struct upstream;
struct upconn;

enum px_state {
	PX_NONE = 0,
	PX_CONNECTING,		/* new connection: DNS, TCP, TLS */
	PX_WAIT_HEAD,		/* request written, reading the answer head */
	PX_BODY,		/* relaying the answer body */
};

enum body_mode {
	BODY_NONE = 0,
	BODY_LENGTH,
	BODY_CHUNKED,
	BODY_UNTIL_CLOSE,
};

/* Bytes of the body replaced on the way up; never copied, written around. */
struct body_edit {
	size_t		 off;
	size_t		 skip;		/* original bytes replaced */
	const char	*str;
};

#define PX_MAX_EDITS	2

/* protocol bedrock or vertex: the body and path as sent, the streamed
 * answer turned into SSE (kept for the connection, reset per request) */
struct px_cloud {
	struct evbuffer	*cbody;
	struct evbuffer	*sse;
	struct bedrock_stream bs;
	char		 cpath[1400];
	size_t		 cpath_len;
};

struct proxy {
	/* kept for the connection's life */
	struct client	*c;
	char		*head;		/* answer head, copied out */
	size_t		 head_cap;
	struct evbuffer	*req;		/* the request assembled, then moved */
	struct evbuffer	*decoded;	/* dechunked bytes on their way out */
	struct usage_tap tap;
	struct decoder	 dec;		/* a copy of a compressed answer, for tap */
	struct http_head rh;
	/* a cloud upstream's state, made when one is first used: every
	 * connection zeroes struct proxy, so it stays small */
	struct px_cloud	*cl;

	/* per request: zeroed by proxy_reset from here on */
	enum px_state	 state;
	struct xlate	*xl;		/* the translate stage; NULL: passthrough */
	const struct cfg_route *route;
	struct upstream	*up;
	struct upconn	*uc;
	const char	*model;		/* what the upstream is asked for */
	struct body_edit edits[PX_MAX_EDITS];	/* in offset order */
	int		 nedits;
	int		 route_idx;	/* which of route->upstream[] */
	uint32_t	 tried;		/* route indexes tried, a bit each */
	int		 counted;	/* up->outstanding holds this attempt */
	int		 attempts;
	int		 reused;	/* uc came from the pool */
	size_t		 head_scanned;
	enum body_mode	 mode;
	int64_t		 remaining;
	struct chunked	 ck;
	int		 keepalive;	/* the answer leaves the conn reusable */
	int		 head_sent;	/* the answer head went to the client */
	int		 tap_on;	/* read usage from this answer */
	int		 dec_on;	/* ... through dec: it is compressed */
	int		 tap_lost;	/* its usage could not be read: estimate */
	int		 complete;	/* the whole answer was relayed */
	int		 es_on;		/* a bedrock event stream, into sse */
	int		 berr;		/* a bedrock error, reshaped whole */
	int64_t		 t_sent_us;
	int64_t		 t_first_byte_us;
	struct usage_acc usage;
	/* the answer cache's: where the body goes as it is relayed, and
	 * the x-sluice-cache line of the answer head (NULL: none) */
	struct cache_put *fill;
	const char	*cache_hdr;
};

/* 0, or -1 out of memory. */
int	 proxy_init(struct proxy *, struct client *);
void	 proxy_free(struct proxy *);
/* Forget the last exchange; the next request starts clean. */
void	 proxy_reset(struct proxy *);
/* Replace SKIP bytes at OFF of the body with STR; -1 if too many. */
int	 proxy_add_edit(struct proxy *, size_t off, size_t skip,
	    const char *str);
/* Send this request through the translate stage XL (xlate_request done):
 * its body, endpoint and answer are XL's.  Before proxy_start. */
void	 proxy_translate(struct proxy *, struct xlate *xl);
/* 1 if the upstream's answer (its head is in) is an event stream. */
int	 proxy_answer_sse(const struct proxy *);
/* Send the request (c->r, c->body with the edits) to ROUTE for MODEL. */
void	 proxy_start(struct proxy *, const struct cfg_route *,
	    const char *model);

#endif
