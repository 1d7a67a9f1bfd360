/*
 * wctx.h - struct worker: what one worker process holds (layer 1).
 *
 * The loop, the configuration in force, this worker's lane of the event
 * ring and its counters, the shared key state, the upstreams as this
 * worker sees them, and the list of its client connections.  Filled by
 * worker.c (layer 4) before the loop runs; read by every module of layers
 * 1 to 3.  Layer 1 modules know this struct but never a client or a
 * request.  Nothing here is shared with another process except the
 * shm/ regions it points to.
 */
#ifndef SLUICE_WCTX_H
#define SLUICE_WCTX_H

#include <sys/queue.h>
#include <stdint.h>

#include "common/config.h"
#include "common/json.h"

struct event;
struct event_base;
struct evdns_base;
struct evconnlistener;
struct ring_lane;
struct keystate_table;
struct userstate_table;
struct cnt_region;
struct cnt_worker;
struct upstream;
struct client;
struct inflight_entry;
struct tls_server;
struct cache_arena;

TAILQ_HEAD(client_list, client);

struct gtokens_region;

struct worker {
	struct event_base *base;
	struct evdns_base *dns;
	const struct config *cfg;
	struct ring_lane *lane;		/* NULL: events are not pushed */
	struct keystate_table *keystate;
	struct userstate_table *users;	/* end users' budgets; NULL: none */
	struct cnt_region *cnt;		/* the counters region, or NULL */
	struct cnt_worker *cw;		/* this slot's counters (never NULL) */
	struct gtokens_region *gtokens;	/* vertex tokens, or NULL */
	struct evconnlistener *admin;	/* admin_listen, or NULL */
	int		 slot;
	struct upstream	*ups;		/* one per cfg->upstreams[] */
	unsigned	*route_rr;	/* per route: balance tie-breaker */
	struct client_list clients;
	int		 nclients;
	struct tls_server *tls;		/* "listen ... ssl", or NULL */
	int		 nhandshakes;	/* TLS connections not yet clients */
	int		 stopping;	/* graceful stop: no new requests */
	struct json_doc	 json;		/* token array reused by every request */
	/* a client or admin connection was freed: installed by worker.c */
	void		(*client_gone)(struct worker *);
	int		 nadmin;	/* admin connections open */
	struct event	*ev_term, *ev_quit, *ev_usr1, *ev_deadline;
	int64_t		 started_us;	/* monotonic */
	int32_t		 pid;
	/* this slot's in-flight table (NULL without a segment) and the
	 * indexes of its free entries, a stack */
	struct inflight_entry *ift;
	uint32_t	*ift_free;
	uint32_t	 ift_nfree;
	struct cache_arena *cache;	/* the answer cache, NULL: off */
};

#endif
