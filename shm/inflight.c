/*
 * inflight.c - the in-flight table.
 *
 * Why in shared memory: a worker killed by a signal cannot meter the
 * requests it had under way, so their events must already be outside it.
 * The worker writes the event in place as the request goes (no copy at
 * the end), so the table costs a store per field, not a push.  Only the
 * owner writes an entry while it lives; the master reads it only after
 * waitpid() said the owner is gone, so no field needs to be atomic but
 * the live flag, which is published with release for whoever looks.
 */
#include <string.h>

#include "shm/inflight.h"

_Static_assert(sizeof(struct inflight_entry) % 64 == 0,
    "entries on their own cache lines");

size_t
inflight_size(uint32_t nslots, uint32_t per)
{
	return sizeof(struct inflight_region) +
	    (size_t)nslots * per * sizeof(struct inflight_entry);
}

void
inflight_init(struct inflight_region *rg, uint32_t nslots, uint32_t per)
{
	rg->nslots = nslots;
	rg->per = per;
}

struct inflight_entry *
inflight_table(struct inflight_region *rg, uint32_t slot, uint32_t *n)
{
	if (rg == NULL || slot >= rg->nslots || rg->per == 0)
		return NULL;
	if (n != NULL)
		*n = rg->per;
	return &rg->e[(size_t)slot * rg->per];
}

void
inflight_begin(struct inflight_entry *e)
{
	atomic_store_explicit(&e->live, 1, memory_order_release);
}

void
inflight_end(struct inflight_entry *e)
{
	atomic_store_explicit(&e->live, 0, memory_order_release);
	e->text_bytes = 0;
	memset(&e->ev, 0, sizeof(e->ev));
}

int
inflight_live(struct inflight_entry *e)
{
	return atomic_load_explicit(&e->live, memory_order_acquire) != 0;
}
