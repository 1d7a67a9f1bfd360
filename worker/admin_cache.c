/*
 * admin_cache.c - the answer cache on admin_listen.
 *
 * A flush runs in whichever worker took the admin connection: the arena
 * is shared, so one worker's flush empties it for all of them.  It is a
 * POST, on the admin address only (loopback unless admin_allow says
 * otherwise), like everything that changes the daemon's state.
 *
 * Except across a reload that changed cache or cache_max_entry: then the
 * new generation answers from a new arena, mapped after the old workers
 * forked, which they cannot reach, and the master (which could) takes no
 * requests.  An old worker stops accepting admin connections when told
 * to stop, but one it took before still reaches it.  So a worker of a
 * previous generation flushes its own arena (what its last requests
 * read) and answers 503; sluicectl asks again on a new connection, which
 * only a current worker accepts.  A 200 therefore always means the arena
 * new requests are answered from was flushed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/keys.h"
#include "shm/cache.h"
#include "worker/admin_cache.h"

static void
counter(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n",
	    name, help, name, type, name, v);
}

void
admin_cache_metrics(struct evbuffer *b, struct cache_arena *a)
{
	struct cache_stats	 st;

	if (a == NULL)
		return;
	cache_stats(a, &st);
	counter(b, "sluice_cache_hits_total", "counter",
	    "Requests answered from the answer cache.", st.hits);
	counter(b, "sluice_cache_misses_total", "counter",
	    "Cacheable requests the answer cache had no answer for.",
	    st.misses);
	counter(b, "sluice_cache_stores_total", "counter",
	    "Answers stored in the answer cache.", st.stores);
	counter(b, "sluice_cache_evictions_total", "counter",
	    "Live entries pushed out to make room (CLOCK).", st.evictions);
	counter(b, "sluice_cache_too_big_total", "counter",
	    "Answers not stored: larger than cache_max_entry.", st.too_big);
	counter(b, "sluice_cache_busy_total", "counter",
	    "Answers not stored: the same request was being stored, or "
	    "every slot of its set was being written.", st.busy);
	counter(b, "sluice_cache_entries", "gauge",
	    "Entries in the answer cache now.", st.entries);
	counter(b, "sluice_cache_slots", "gauge",
	    "Entries the answer cache can hold.", st.slots);
}

void
admin_cache_status(struct evbuffer *b, struct cache_arena *a)
{
	struct cache_stats	 st;

	if (a == NULL)
		return;
	cache_stats(a, &st);
	evbuffer_add_printf(b, ",\"cache\":{\"size_bytes\":%zu,"
	    "\"max_entry_bytes\":%zu,\"slots\":%" PRIu64 ",\"entries\":%"
	    PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
	    ",\"stores\":%" PRIu64 ",\"evictions\":%" PRIu64
	    ",\"too_big\":%" PRIu64 ",\"busy\":%" PRIu64 "}",
	    cache_bytes(a), cache_entry_max(a), st.slots, st.entries, st.hits,
	    st.misses, st.stores, st.evictions, st.too_big, st.busy);
}

int
admin_cache_flush(struct cache_arena *a, int current, const char *target,
    size_t len, struct evbuffer *b)
{
	const char	*q = memchr(target, '?', len);
	char		 key[KEY_NAME_MAX];
	size_t		 n;
	uint64_t	 dropped;

	if (current && a == NULL) {
		evbuffer_add_printf(b, "{\"error\":\"the answer cache is "
		    "off\"}\n");
		return 409;
	}
	key[0] = '\0';
	if (q != NULL) {
		n = len - (size_t)(q - target) - 1;
		if (n < 5 || memcmp(q + 1, "key=", 4) != 0 ||
		    n - 4 >= sizeof(key)) {
			evbuffer_add_printf(b, "{\"error\":\"the query is "
			    "?key=NAME\"}\n");
			return 400;
		}
		memcpy(key, q + 5, n - 4);
		key[n - 4] = '\0';
		if (!keys_valid_name(key)) {
			evbuffer_add_printf(b, "{\"error\":\"not a key "
			    "name\"}\n");
			return 400;
		}
	}
	dropped = a != NULL ? cache_flush(a, key[0] != '\0' ? key : NULL) : 0;
	if (!current) {
		evbuffer_add_printf(b, "{\"error\":\"this worker is of a "
		    "previous generation, finishing after a reload: ask "
		    "again\",\"flushed_here\":%" PRIu64 "}\n", dropped);
		return 503;
	}
	evbuffer_add_printf(b, "{\"flushed\":%" PRIu64 "}\n", dropped);
	return 200;
}
