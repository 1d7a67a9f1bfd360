/*
 * inflight.c - the in-flight table.
 *
 * Why in shared memory: a worker killed by a signal cannot meter the
 * requests it had under way, so their events must already be outside it.
 * The worker writes the event in place as the request goes (no copy at
 * the end), so the table costs a store per field, not a push.  Only the
 * owner writes an entry while it lives; the master reads it only after
 * waitpid() said the owner is gone, so no field needs to be atomic but
 * the state, which is published with release for whoever looks.
 *
 * Why push_mark: the owner pushes an entry's event and then frees the
 * entry, and may die between the two.  The lane's count of push attempts
 * (tail + drops, both written only by the owner) taken just before the
 * push tells the master afterwards whether the push happened, so such an
 * event is pushed once, never twice.
 *
 * Why a slot may have a mapping of its own: max_connections sizes the
 * tables in the segment at start, and a reload may raise it.  The new
 * generation's slots are free then; each that is too small gets a fresh
 * shared mapping, which the workers forked afterwards inherit.  Workers
 * of the old generation keep the tables they were forked with.
 */
#include <sys/mman.h>

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
	uint32_t	 i;

	if (nslots > INFLIGHT_MAX_SLOTS)
		nslots = INFLIGHT_MAX_SLOTS;
	rg->nslots = nslots;
	rg->per = per;
	for (i = 0; i < nslots; i++) {
		rg->slot[i].e = per > 0 ? &rg->e[(size_t)i * per] : NULL;
		rg->slot[i].n = per;
		rg->slot[i].own = 0;
	}
}

struct inflight_entry *
inflight_table(struct inflight_region *rg, uint32_t slot, uint32_t *n)
{
	if (rg == NULL || slot >= rg->nslots || rg->slot[slot].e == NULL)
		return NULL;
	if (n != NULL)
		*n = rg->slot[slot].n;
	return rg->slot[slot].e;
}

int
inflight_grow(struct inflight_region *rg, uint32_t slot, uint32_t per)
{
	struct inflight_slot	*s;
	void			*p;
	size_t			 len = (size_t)per * sizeof(struct inflight_entry);

	if (rg == NULL || slot >= rg->nslots)
		return -1;
	s = &rg->slot[slot];
	if (s->e != NULL && s->n >= per)
		return 0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED)
		return -1;
	if (s->own)
		munmap(s->e, (size_t)s->n * sizeof(struct inflight_entry));
	s->e = p;
	s->n = per;
	s->own = 1;
	return 0;
}

void
inflight_begin(struct inflight_entry *e)
{
	atomic_store_explicit(&e->state, IFT_LIVE, memory_order_release);
}

void
inflight_end(struct inflight_entry *e)
{
	atomic_store_explicit(&e->state, IFT_FREE, memory_order_release);
	e->push_mark = 0;
	e->text_bytes = 0;
	e->head_bytes = 0;
	memset(e->hold, 0, sizeof(e->hold));
	ev_clear(&e->ev);
}

void
inflight_pushing(struct inflight_entry *e, struct ring_lane *lane)
{
	if (lane == NULL)
		return;
	e->push_mark = ring_attempts(lane);
	atomic_store_explicit(&e->state, IFT_PUSHING, memory_order_release);
}

int
inflight_unpushed(struct inflight_entry *e, uint64_t attempts)
{
	switch (atomic_load_explicit(&e->state, memory_order_acquire)) {
	case IFT_LIVE:
		return 1;
	case IFT_PUSHING:
		/* the owner pushes right after the mark, and nothing between */
		return attempts == e->push_mark;
	default:
		return 0;
	}
}

int
inflight_live(struct inflight_entry *e)
{
	return atomic_load_explicit(&e->state, memory_order_acquire) !=
	    IFT_FREE;
}
