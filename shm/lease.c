/*
 * lease.c - taking from a leased share of a limit.
 *
 * The invariant: used never stays above granted because of a take; a
 * taker that pushed it over takes its units back and is refused.  Used
 * may pass granted only by settling (a request that used more than it
 * took), and the collector reports that to PostgreSQL, which counts it
 * against the other hosts' grants.  A window's slot is replaced only by
 * the collector: granted is zeroed before used is reset and the window
 * published, so a taker racing with it is refused or counted in the new
 * window, never given the old window's units twice.
 */
#include <stddef.h>

#include "shm/lease.h"

int64_t
lease_minute(int64_t wall_us)
{
	return wall_us / 60000000;
}

struct lease_win *
lease_slot(struct ks_lease *l, int64_t win)
{
	struct lease_win *w = &l->w[win & 1];

	if (atomic_load_explicit(&w->win, memory_order_acquire) != win)
		return NULL;
	return w;
}

int
lease_take(struct ks_lease *l, int64_t win, int64_t n, int64_t now_ms)
{
	struct lease_win	*w;
	int64_t			 u;

	if ((w = lease_slot(l, win)) == NULL ||
	    now_ms >= atomic_load_explicit(&l->expires_ms,
	    memory_order_relaxed))
		return LEASE_NONE;
	if (n <= 0)
		/* nothing to take, but a used share still refuses */
		return atomic_load_explicit(&w->used, memory_order_relaxed) <
		    atomic_load_explicit(&w->granted, memory_order_relaxed) ?
		    LEASE_OK : LEASE_EMPTY;
	u = atomic_fetch_add_explicit(&w->used, n, memory_order_relaxed);
	if (u + n <= atomic_load_explicit(&w->granted, memory_order_relaxed))
		return LEASE_OK;
	atomic_fetch_sub_explicit(&w->used, n, memory_order_relaxed);
	/* so that the collector asks for enough, even past a slice */
	atomic_store_explicit(&l->need, n, memory_order_relaxed);
	return LEASE_EMPTY;
}

void
lease_settle(struct ks_lease *l, int64_t win, int64_t delta)
{
	struct lease_win *w;

	if (delta != 0 && (w = lease_slot(l, win)) != NULL)
		atomic_fetch_add_explicit(&w->used, delta,
		    memory_order_relaxed);
}

void
lease_grant(struct ks_lease *l, int64_t win, int64_t granted, int64_t used,
    int64_t expires_ms)
{
	struct lease_win *w = &l->w[win & 1];

	if (atomic_load_explicit(&w->win, memory_order_relaxed) != win) {
		atomic_store_explicit(&w->granted, 0, memory_order_relaxed);
		atomic_store_explicit(&w->win, 0, memory_order_release);
		atomic_store_explicit(&w->used, used, memory_order_relaxed);
		w->reported = used;
		atomic_store_explicit(&w->granted, granted,
		    memory_order_relaxed);
		atomic_store_explicit(&w->win, win, memory_order_release);
	} else
		atomic_store_explicit(&w->granted, granted,
		    memory_order_relaxed);
	atomic_store_explicit(&l->expires_ms, expires_ms,
	    memory_order_relaxed);
}
