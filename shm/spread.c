/*
 * spread.c - whose turn it is to accept.
 *
 * Every worker waits on the same listening socket, and the kernel wakes
 * them all for a new connection; left alone, the first one awake takes
 * the whole queue (libevent's listener accepts until EAGAIN), and with
 * keep-alive clients it keeps them.  So each worker takes a connection
 * only when it holds fewer than the average of the listening workers, or
 * when they all hold as many and it is the one that accepted least
 * recently: at any moment, on a consistent view, at least one worker (the
 * one holding fewest) may take it, and when all are even exactly one
 * may, in turn.  This is nginx's accept_disabled idea, with the share
 * measured against the other workers rather than against a fixed limit.
 *
 * A worker whose turn it is not stops accepting (so that a queued
 * connection does not wake it in a loop) and waits for a kick.  The
 * invariant that no connection waits while nobody accepts rests on a
 * Dekker pair: the waiter stores its flag, fences, then reads the lines;
 * a writer stores its line, fences, then reads the flags.  With a full
 * fence on both sides, either the waiter sees the change or the writer
 * sees the flag and kicks; so a worker whose turn has come is always
 * either accepting or about to be woken.  The fences cost a few cycles
 * per connection opened or closed, never per request.
 *
 * A line read while its owner updates it is one connection off at most;
 * the accept that follows fixes the view, and the next look is correct.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "shm/spread.h"

size_t
spread_size(uint32_t nslots)
{
	return sizeof(struct spread_region) +
	    (size_t)nslots * sizeof(struct spread_slot);
}

void
spread_init(struct spread_region *r, uint32_t nslots)
{
	uint32_t	 i;

	r->nslots = nslots;
	for (i = 0; i < nslots; i++) {
#ifdef __linux__
		r->s[i].kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
#else
		r->s[i].kick_fd = -1;
#endif
	}
}

static void
spread_kick(struct spread_region *r, uint32_t self)
{
	uint64_t	 one = 1;
	uint32_t	 i;

	atomic_thread_fence(memory_order_seq_cst);
	for (i = 0; i < r->nslots; i++) {
		struct spread_slot *s = &r->s[i];

		if (i == self ||
		    atomic_load_explicit(&s->waiting, memory_order_relaxed) == 0)
			continue;
		if (atomic_exchange_explicit(&s->waiting, 0,
		    memory_order_relaxed) == 0 || s->kick_fd == -1)
			continue;
		/* an eventfd counter does not fill up; EINTR cannot block */
		while (write(s->kick_fd, &one, sizeof(one)) == -1 &&
		    errno == EINTR)
			;
	}
}

void
spread_clear(struct spread_region *r, uint32_t slot)
{
	struct spread_slot *s;

	if (r == NULL || slot >= r->nslots)
		return;
	s = &r->s[slot];
	atomic_store_explicit(&s->listening, 0, memory_order_relaxed);
	atomic_store_explicit(&s->conns, 0, memory_order_relaxed);
	atomic_store_explicit(&s->waiting, 0, memory_order_relaxed);
	spread_kick(r, r->nslots);
}

void
spread_set(struct spread_region *r, uint32_t slot, int listening, int conns,
    int64_t last_us)
{
	struct spread_slot *s = &r->s[slot];

	atomic_store_explicit(&s->listening, listening, memory_order_relaxed);
	atomic_store_explicit(&s->conns, conns, memory_order_relaxed);
	if (last_us != 0)
		atomic_store_explicit(&s->last_us, last_us,
		    memory_order_relaxed);
	spread_kick(r, slot);
}

int
spread_turn(struct spread_region *r, uint32_t slot)
{
	const struct spread_slot *me = &r->s[slot];
	int64_t		 total = 0, n = 0, mine, last, c, l;
	int		 tied = 1, first = 1;
	uint32_t	 i;

	mine = atomic_load_explicit(&me->conns, memory_order_relaxed);
	last = atomic_load_explicit(&me->last_us, memory_order_relaxed);
	for (i = 0; i < r->nslots; i++) {
		const struct spread_slot *s = &r->s[i];

		if (i != slot && atomic_load_explicit(&s->listening,
		    memory_order_relaxed) == 0)
			continue;
		c = i == slot ? mine :
		    atomic_load_explicit(&s->conns, memory_order_relaxed);
		n++;
		total += c;
		if (c != mine)
			tied = 0;
		else if (i != slot) {
			l = atomic_load_explicit(&s->last_us,
			    memory_order_relaxed);
			if (l < last || (l == last && i < slot))
				first = 0;
		}
	}
	return mine * n < total || (tied && first);
}

int
spread_wait(struct spread_region *r, uint32_t slot)
{
	struct spread_slot *s = &r->s[slot];

	atomic_store_explicit(&s->waiting, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (!spread_turn(r, slot))
		return 0;
	atomic_store_explicit(&s->waiting, 0, memory_order_relaxed);
	return 1;
}

int
spread_kick_fd(const struct spread_region *r, uint32_t slot)
{
	return r->s[slot].kick_fd;
}

void
spread_kick_drain(const struct spread_region *r, uint32_t slot)
{
	uint64_t	 n;

	if (r->s[slot].kick_fd != -1)
		(void)read(r->s[slot].kick_fd, &n, sizeof(n));
}
