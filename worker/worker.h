/*
 * worker.h - the request path: one libevent loop per worker process.
 *
 * A worker owns its client connections, its per-upstream keep-alive pools
 * and one lane of the event ring.  Nothing here is shared with another
 * process except through shm/.  Only master/ calls worker_main(); the
 * rest of this header is the contract between the files of worker/.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/event.h"
#include "common/json.h"
#include "worker/http.h"
#include "worker/usage.h"

struct event_base;
struct evdns_base;
struct bufferevent;
struct evbuffer;
struct evconnlistener;
struct shm_segment;
struct ring_lane;
struct keystate_table;
struct cnt_region;
struct cnt_worker;
struct key_entry;

struct worker;
struct client;

/* One upstream as this worker sees it: its pool of idle connections. */
struct upconn {
	TAILQ_ENTRY(upconn) entry;
	struct upstream	*up;
	struct bufferevent *bev;
	struct client	*owner;		/* NULL while idle in the pool */
	unsigned	 requests;	/* requests served on this connection */
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
	uint64_t	 opened;	/* connections opened */
	uint64_t	 reused;	/* requests sent on a pooled connection */
	int		 cnt_idx;	/* its counters in shm, -1 = none */
	int		 literal;	/* host is an IP address */
	struct sockaddr_storage addr;	/* host resolved, while fresh */
	socklen_t	 addrlen;	/* 0 = not resolved */
	int64_t		 addr_expires_us;
	int		 resolving;	/* an evdns lookup is under way */
	int		 outstanding;	/* requests in flight, for balance */
	int		 fails;		/* failures in a row */
	int64_t		 down_until_us;	/* passive health: skip until then */
};

enum client_state {
	CL_READ_HEAD = 0,	/* waiting for, or reading, a request head */
	CL_READ_BODY,		/* reading the request body */
	CL_PROXYING,		/* an upstream exchange is under way */
	CL_CLOSING,		/* flushing the last bytes, then close */
};

enum px_state {
	PX_NONE = 0,
	PX_CONNECTING,		/* new connection: DNS, TCP, TLS */
	PX_WAIT_HEAD,		/* request written, reading the response head */
	PX_BODY,		/* relaying the response body */
};

enum body_mode {
	BODY_NONE = 0,
	BODY_LENGTH,
	BODY_CHUNKED,
	BODY_UNTIL_CLOSE,
};

/* The upstream side of one request; lives inside its client. */
struct proxy {
	enum px_state	 state;
	struct upstream	*up;
	struct upconn	*uc;
	const struct cfg_route *route;
	int		 route_idx;	/* which of route->upstream[] */
	uint32_t	 tried;		/* route indexes tried, a bit each */
	int		 counted;	/* up->outstanding holds this attempt */
	int		 attempts;
	int		 reused;	/* uc came from the pool */
	char		*head;		/* response head, copied out */
	size_t		 head_cap;
	size_t		 head_scanned;
	struct http_head rh;
	enum body_mode	 mode;
	int64_t		 remaining;
	struct chunked	 ck;
	struct evbuffer	*decoded;	/* dechunked bytes on their way out */
	int		 keepalive;	/* upstream connection reusable after */
	int		 head_sent;	/* response head went to the client */
	int		 tap_on;	/* read usage from this response */
	int		 complete;	/* the whole response was relayed */
	int64_t		 t_sent_us;
	int64_t		 t_first_byte_us;
};

struct client {
	TAILQ_ENTRY(client) entry;
	struct worker	*w;
	struct bufferevent *bev;
	enum client_state state;
	char		 addr[EV_ADDR_MAX];

	/* the current request */
	char		*head;		/* request head, copied out */
	size_t		 head_cap;
	size_t		 head_len;
	size_t		 head_scanned;	/* bytes of input searched for CRLFCRLF */
	struct http_head rq;
	struct evbuffer	*body;
	int64_t		 body_need;	/* Content-Length still to read */
	struct chunked	 body_ck;
	int		 keepalive;	/* keep the connection after this request */
	int		 anthropic;	/* errors in Anthropic's shape */
	int		 nrequests;
	char		 reqid[40];	/* x-request-id, as sent both ways */
	struct usage_event ev;		/* filled as the request goes */
	int64_t		 t_start_us;	/* monotonic, first byte of the head */
	int64_t		 bytes_out_start; /* output counter at response start */
	int64_t		 out_bytes;	/* bytes queued to the client */
	const char	*model;		/* in body */
	size_t		 model_len;
	int		 stream;
	int		 metered;	/* this request's event is pushed */
	/*
	 * Edits to the body on its way upstream, in offset order: an alias
	 * replaced by its model, stream_options.include_usage added.  The
	 * body itself is never copied; the request is written around them.
	 */
	struct body_edit {
		size_t		 off;
		size_t		 skip;	/* original bytes replaced */
		const char	*str;
	}		 edits[2];
	int		 nedits;
	const char	*model_resolved; /* an alias's model, else NULL */
	struct usage_acc usage;
	struct usage_tap tap;
	const struct key_entry *key;	/* the caller's key, NULL = none */
	int		 retry_after_s;	/* for a 429 */
	struct proxy	 px;
};
TAILQ_HEAD(client_list, client);

struct worker {
	struct event_base *base;
	struct evdns_base *dns;
	const struct config *cfg;
	struct ring_lane *lane;
	struct keystate_table *keystate;
	struct cnt_region *cnt;		/* the counters region, or NULL */
	struct cnt_worker *cw;		/* this slot's counters (never NULL) */
	struct evconnlistener *admin;	/* admin_listen, or NULL */
	int		 slot;
	struct evconnlistener *listeners[CFG_MAX_LISTEN];
	int		 nlisteners;
	struct upstream	*ups;		/* one per cfg->upstreams[] */
	struct client_list clients;
	int		 nclients;
	int		 stopping;	/* graceful stop: no new requests */
	struct json_doc	 json;		/* token array reused by every request */
	unsigned	*route_rr;	/* per route: balance tie-breaker */
	struct event	*ev_term, *ev_quit, *ev_usr1, *ev_deadline;
	uint64_t	 rid_state[2];	/* request id generator */
	int64_t		 started_us;	/* monotonic */
	int32_t		 pid;
};

void	 worker_main(const struct config *, struct shm_segment *, int slot,
	    const int *listen_fds, int nfds, int admin_fd)
	    __attribute__((noreturn));
void	 worker_client_gone(struct worker *);

/* client.c */
void	 client_accept(struct worker *, int fd, struct sockaddr *, int);
void	 client_free(struct client *);
void	 client_request_done(struct client *);
void	 json_escape(struct evbuffer *, const char *);
void	 client_add_edit(struct client *, size_t off, size_t skip,
	    const char *str);
void	 client_send_error(struct client *, int status, const char *type,
	    const char *code, const char *fmt, ...)
	    __attribute__((format(printf, 5, 6)));
int	 client_is_idle(const struct client *);

/* proxy.c */
void	 proxy_start(struct client *, const struct cfg_route *);
void	 proxy_abort(struct client *);
void	 proxy_client_drained(struct client *);
const char *proxy_azure_path(const char *path, size_t len);

/* upstream_pool.c */
int	 pool_init(struct worker *);
void	 pool_free(struct worker *);
struct upconn *pool_get(struct upstream *, int *reused);
void	 pool_put(struct upconn *);
void	 upconn_free(struct upconn *);

/* reqid.c */
void	 reqid_init(struct worker *);
void	 reqid_new(struct worker *, uint8_t id[16], char str[37]);
int	 reqid_parse(const char *s, size_t len, uint8_t id[16]);

/* auth.c */
int	 auth_request_head(struct client *);
int	 auth_request_body(struct client *);
void	 auth_request_done(struct client *);
void	 auth_list_models(struct client *);

/* meter.c: the seam where a finished request becomes its usage event */
void	 meter_finish(struct client *);
/* A streamed response's head went out: it counts as active until metered. */
void	 meter_stream_begin(struct client *);
/* Labels of the counters' endpoint and rejection indexes. */
const char *meter_endpoint_name(int);
const char *meter_reject_code(int);

/* admin.c: GET /metrics, /healthz, /status on admin_listen */
int	 admin_init(struct worker *, struct shm_segment *, int fd);
void	 admin_stop(struct worker *);


#endif
