/*
 * acache.h - the answer cache stage of a request (layer 3).
 *
 * Owns one request's part in the answer cache (shm/cache.h): whether it
 * may be answered from it or stored in it (endpoint, route, key, the
 * client's Cache-Control), its key (SHA-256 of the endpoint, the upstream
 * format and model, the exact body and the caller's namespace), a hit's
 * answer and usage, and a miss's store, which the proxy fills as it
 * relays the answer and which is committed here only when the answer
 * ended complete and 200.  Called by the pipeline; calls down into the
 * client core to answer a hit.  Never talks to an upstream and never
 * pushes an event: the pipeline does, from what a hit leaves in it.
 */
#ifndef SLUICE_ACACHE_H
#define SLUICE_ACACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/event.h"
#include "common/keys.h"
#include "shm/cache.h"
#include "worker/client.h"

enum acache_state {
	AC_NONE = 0,	/* the cache is off, or this endpoint is never cached */
	AC_BYPASS,	/* off for the key or route, or Cache-Control no-store */
	AC_MISS,	/* asked upstream; stored if put is under way */
	AC_HIT,		/* answered from the cache */
};

struct acache_req {
	enum acache_state state;
	int		 storing;	/* put is under way (claimed or deferred) */
	struct cache_put put;
};

/*
 * Before the request goes upstream (routed, translated, MODEL the model
 * the upstream is asked for): answer it from the cache, or get ready to
 * store its answer.  1 answered (a hit: the event is filled, the request
 * ends), 0 go on.
 */
int	 acache_begin(struct acache_req *, struct client *,
	    const struct key_entry *key, const struct cfg_route *,
	    const char *model, const char *body, size_t len);
/* The store the proxy fills while it relays, or NULL. */
struct cache_put *acache_fill(struct acache_req *);
/* The x-sluice-cache line for an answer relayed from upstream, or NULL. */
const char *acache_header(const struct acache_req *);
/* 1 if the request was answered from the cache. */
static inline int
acache_hit(const struct acache_req *ac)
{
	return ac->state == AC_HIT;
}
/*
 * The request ended with EV metered: commit the store when OK (the
 * answer ended complete, 200, uncompressed), else drop it.  SSE: the
 * answer was an event stream.  AC is reset for the next request.
 */
void	 acache_end(struct acache_req *, struct client *, int ok, int sse,
	    const struct usage_event *ev);

#endif
