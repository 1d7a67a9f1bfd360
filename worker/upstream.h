/*
 * upstream.h - the upstreams as one worker sees them (layer 1).
 *
 * Owns each upstream's keep-alive pool, the choice of an upstream for a
 * route (failover or balance), passive health (max_fails, fail_timeout),
 * and the one decision, after a failed attempt, whether a request goes
 * to the next upstream (as ngx_http_upstream_next does).  Called by the
 * proxy (layer 3) and set up by worker.c; knows struct worker, never a
 * client or a request.
 *
 * Ownership: a connection taken with up_conn_get belongs to its caller
 * until up_conn_done.  It returns to the pool only when the caller says
 * its answer was read in full and nothing of its request is still
 * unwritten or unread; otherwise it is closed, and whatever its output
 * still referenced (a request body) is dropped with it before the caller
 * frees that memory.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/config.h"
#include "worker/sigv4.h"
#include "worker/http.h"
#include "worker/wctx.h"

struct bufferevent;

struct upconn {
	TAILQ_ENTRY(upconn) entry;
	struct upstream	*up;
	struct bufferevent *bev;
	int		 busy;		/* taken; 0 while idle in the pool */
};
TAILQ_HEAD(upconn_list, upconn);

struct upstream {
	const struct cfg_upstream *cfg;
	struct worker	*w;
	SSL_CTX		*ssl_ctx;	/* NULL for http:// */
	struct upconn_list idle;
	int		 nidle;
	char		 host_hdr[300];	/* "Host: h[:p]\r\n" */
	char		*auth_hdr;	/* credential header line, or NULL */
	char		 extra_hdr[320];	/* OpenAI-Organization, -Project */
	int		 cnt_idx;	/* its counters in shm, -1 = none */
	int		 literal;	/* host is an IP address */
	struct sockaddr_storage addr;	/* host resolved, while fresh */
	socklen_t	 addrlen;	/* 0 = not resolved */
	int64_t		 addr_expires_us;
	int		 resolving;	/* an evdns lookup is under way */
	int		 outstanding;	/* requests in flight, for balance */
	int		 fails;		/* failures in a row */
	int64_t		 down_until_us;	/* passive health: skip until then */
	struct sigv4_key sigkey;	/* bedrock: today's signing key */
};

/* How an attempt failed, for up_next. */
enum up_failure {
	UPF_CONNECT,		/* DNS, TCP or TLS failed */
	UPF_CONNECT_TIMEOUT,	/* DNS, TCP or TLS took too long */
	UPF_NO_ANSWER,		/* timed out before any byte of an answer */
	UPF_TIMEOUT,		/* timed out in the middle of a head */
	UPF_CLOSED,		/* closed before an answer head */
	UPF_BAD_ANSWER,		/* a malformed answer head */
	UPF_STATUS,		/* answered 429 or a 5xx that says "not me" */
};

enum up_decision {
	UPD_FAIL = 0,		/* answer the client with the failure */
	UPD_AGAIN,		/* same upstream, another connection */
	UPD_NEXT,		/* the route's next upstream */
};

int	 up_init(struct worker *);
void	 up_free(struct worker *);

/*
 * The operator's header policy for UP: may this client header go there?
 * By default a client's OpenAI-Organization and OpenAI-Project do not
 * (they choose which account pays); pass_headers lets one through,
 * drop_headers drops more.  Framing and hop-by-hop headers are the
 * proxy's business, not this.
 */
int	 up_header_allowed(const struct upstream *, const struct http_header *);
/*
 * An anthropic-beta value as UP lets it through: only the betas its
 * anthropic_betas lists (all of them without a list), into OUT (CAP
 * bytes, NUL-terminated).  Returns the length, 0 for none left.
 */
size_t	 up_filter_betas(const struct upstream *, const char *v, size_t n,
	    char *out, size_t cap);

/* A pooled connection when one is idle (*reused = 1), else a new one. */
struct upconn *up_conn_get(struct upstream *, int *reused);
/*
 * Send REQ (moved out of it) on UC and wait for the answer.  On a pooled
 * plain connection (REUSED) it is written at once, so the write event is
 * armed only for what the socket did not take; a new or TLS one leaves
 * it all to its bufferevent.
 */
void	 up_conn_send(struct upconn *uc, struct evbuffer *req, int reused);
/*
 * Read at most MAX bytes of UC's answer straight into DST, past its
 * bufferevent (which takes at most 4096 bytes a wake-up, after an ioctl):
 * a plain connection only.  The bytes read (*AT: where they are in DST,
 * until DST changes), or 0 when nothing is waiting, the socket is at its
 * end or failed, or UC is TLS: the bufferevent then reads and reports it.
 */
size_t	 up_conn_read_direct(struct upconn *uc, struct evbuffer *dst,
	    size_t max, const char **at);
/* The caller is done with UC; ANSWER_COMPLETE: its answer was read to
 * the end and the connection may serve another request. */
void	 up_conn_done(struct upconn *uc, int answer_complete);

/*
 * The upstream of ROUTE to try next.  *TRIED holds a bit per route index
 * already tried this round; the chosen one is added and its index put in
 * *IDX.
 */
struct upstream *up_pick(struct worker *, const struct cfg_route *,
	    uint32_t *tried, int *idx);
/* The attempts a request on ROUTE may make. */
int	 up_max_attempts(const struct worker *, const struct cfg_route *);
/* STATUS says "this upstream, not this request": another may serve it. */
int	 up_retryable_status(int status);
/* An answer came: passive health forgets earlier failures. */
void	 up_answered(struct upstream *);
/*
 * An attempt on UP failed as WHY; REUSED: on a pooled connection;
 * ATTEMPTS made so far of MAX.  Records the failure (passive health) and
 * decides what the request does next.  Nothing may have reached the
 * client yet.
 */
enum up_decision up_next(struct upstream *, enum up_failure why, int reused,
	    int attempts, int max);

#endif
