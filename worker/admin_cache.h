/*
 * admin_cache.h - the answer cache on admin_listen (layer 1): its
 * counters on /metrics and /status, and POST /cache/flush[?key=NAME],
 * which `sluicectl cache flush [KEY]` sends.  Called by admin.c only;
 * knows the arena (shm/cache.h), never a client or a request.
 */
#ifndef SLUICE_ADMIN_CACHE_H
#define SLUICE_ADMIN_CACHE_H

#include <stddef.h>

struct cache_arena;
struct evbuffer;

/* The cache's metrics into B; nothing when the cache is off (NULL). */
void	 admin_cache_metrics(struct evbuffer *b, struct cache_arena *);
/* /status's ,"cache":{...} member into B; nothing when it is off. */
void	 admin_cache_status(struct evbuffer *b, struct cache_arena *);
/*
 * Flush the entries TARGET (the request target, LEN bytes, with its
 * query) asks for: every one, or those stored by ?key=NAME.  CURRENT is
 * 0 in a worker of a previous generation, whose arena may no longer be
 * the one new requests are answered from.  The reply body (JSON) into
 * B; the status: 200, 400, 409 (the cache is off) or 503 (not CURRENT:
 * its own arena flushed, ask again).
 */
int	 admin_cache_flush(struct cache_arena *, int current,
	    const char *target, size_t len, struct evbuffer *b);

#endif
