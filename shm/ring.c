/*
 * ring.c - one single-producer/single-consumer lane of usage events.
 *
 * A worker must never wait for the collector, so push is wait-free: two
 * loads, one memcpy, one store, no loop and no compare-and-swap.  tail and
 * head are 64-bit counters that only grow (they do not wrap in the life of
 * the machine); a position maps to slot pos & mask.
 *
 * The invariant is that tail is stored only after the slot it covers is
 * written, with release order, and read by the consumer with acquire order.
 * A producer SIGKILLed anywhere in ring_push either published a whole event
 * or left tail where it was, so the consumer sees a committed prefix and no
 * torn event; the half-written slot is free and the next producer on the
 * lane overwrites it.  Symmetrically the consumer stores head with release
 * only after it has finished reading the slots below it, and the producer
 * reads head with acquire before reusing them.
 *
 * The bell must never miss a push that the consumer's last look did not
 * see, or an event would wait for the consumer's next timer.  Whether the
 * lane was empty before a push cannot decide it: the consumer may free
 * the slots below our tail while we push.  So it is a Dekker pair: the
 * producer stores tail, fences, loads asleep; the consumer stores asleep,
 * fences, loads every tail.  With a full fence on both sides at least
 * one of them sees the other's store: the consumer finds the event, or
 * the producer rings.  The fence takes the place of the locked add that
 * counted pushes before (pushes has one writer and needs none), so a push
 * costs what it did, plus one load of a line that stays in its cache.
 *
 * The lane lives in memory shared between processes, which is only sound
 * if 64-bit atomics are lock-free (a lock-based fallback would lock a
 * per-process table).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "common/event.h"
#include "shm/ring.h"

#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_LONG_LOCK_FREE != 2
#error "sluice needs lock-free 64-bit atomics to share a ring between processes"
#endif

_Static_assert(offsetof(struct ring_lane, slots) % 64 == 0,
    "ring slots must start on a cache line");

size_t
ring_lane_size(uint32_t nslots)
{
	size_t	 sz;

	sz = offsetof(struct ring_lane, slots) +
	    (size_t)nslots * sizeof(struct usage_event);
	return (sz + 63) & ~(size_t)63;
}

void
ring_lane_init(struct ring_lane *l, uint32_t nslots, int bell_fd)
{
	atomic_init(&l->tail, 0);
	atomic_init(&l->head, 0);
	atomic_init(&l->drops, 0);
	atomic_init(&l->pushes, 0);
	atomic_init(&l->asleep, 0);
	l->nslots = nslots;
	l->mask = nslots - 1;
	l->bell_fd = bell_fd;
}

void
ring_lane_prefault(struct ring_lane *l)
{
#ifdef MADV_POPULATE_WRITE
	uintptr_t	 pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t	 start = (uintptr_t)l & ~(pg - 1);
	uintptr_t	 end = (uintptr_t)&l->slots[l->nslots];

	/* the first and last page may be a neighbour's: populating writes
	 * nothing, so that is harmless */
	(void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
#else
	(void)l;
#endif
}

int
ring_bell_open(void)
{
#ifdef __linux__
	return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
#else
	return -1;
#endif
}

/* One producer per lane, one writer per counter: no locked add. */
static void
ring_count(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c,
	    memory_order_relaxed) + 1, memory_order_relaxed);
}

static void
ring_ring(struct ring_lane *l)
{
	uint64_t	 one = 1;

	/* the consumer may have disarmed meanwhile: ring once, or not */
	if (atomic_exchange_explicit(&l->asleep, 0, memory_order_relaxed) ==
	    0 || l->bell_fd == -1)
		return;
	/* an eventfd counter does not fill up: this never blocks */
	while (write(l->bell_fd, &one, sizeof(one)) == -1 && errno == EINTR)
		;
}

int
ring_push(struct ring_lane *l, const struct usage_event *ev)
{
	uint64_t	 tail, head;

	/* Only this process stores tail: our own last value, relaxed. */
	tail = atomic_load_explicit(&l->tail, memory_order_relaxed);
	/* Acquire: the consumer's reads of the slots below head are done. */
	head = atomic_load_explicit(&l->head, memory_order_acquire);
	if (tail - head >= l->nslots) {
		ring_count(&l->drops);
		return -1;
	}
	memcpy(&l->slots[tail & l->mask], ev, sizeof(*ev));
	/* Release: the slot is whole before the consumer can see it. */
	atomic_store_explicit(&l->tail, tail + 1, memory_order_release);
	ring_count(&l->pushes);
	/* tail before asleep: pairs with the fence in ring_bell_arm */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&l->asleep, memory_order_relaxed) != 0)
		ring_ring(l);
	return 0;
}

uint64_t
ring_attempts(struct ring_lane *l)
{
	return atomic_load_explicit(&l->tail, memory_order_relaxed) +
	    atomic_load_explicit(&l->drops, memory_order_relaxed);
}

uint64_t
ring_free(struct ring_lane *l)
{
	uint64_t	 tail, head;

	tail = atomic_load_explicit(&l->tail, memory_order_relaxed);
	head = atomic_load_explicit(&l->head, memory_order_relaxed);
	/* a consumer that scribbled head past tail leaves no room to trust */
	if (tail - head > l->nslots)
		return 0;
	return l->nslots - (tail - head);
}

uint64_t
ring_readable(struct ring_lane *l, uint64_t *headp)
{
	uint64_t	 tail, head, n;

	head = atomic_load_explicit(&l->head, memory_order_relaxed);
	tail = atomic_load_explicit(&l->tail, memory_order_acquire);
	*headp = head;
	n = tail - head;
	/*
	 * More than a lane holds (or tail behind head) only comes from a
	 * producer that scribbled on shared memory; never report slots that
	 * cannot be there.
	 */
	if (n > l->nslots)
		n = 0;
	return n;
}

const struct usage_event *
ring_at(struct ring_lane *l, uint64_t pos)
{
	return &l->slots[pos & l->mask];
}

void
ring_release(struct ring_lane *l, uint64_t new_head)
{
	/* Release: our reads of the freed slots finish before reuse. */
	atomic_store_explicit(&l->head, new_head, memory_order_release);
}

uint64_t
ring_bell_arm(struct ring_lane **lanes, uint32_t n)
{
	uint64_t	 head, held = 0;
	uint32_t	 i;

	for (i = 0; i < n; i++)
		atomic_store_explicit(&lanes[i]->asleep, 1,
		    memory_order_relaxed);
	/* asleep before every tail: pairs with the fence in ring_push */
	atomic_thread_fence(memory_order_seq_cst);
	for (i = 0; i < n; i++)
		held += ring_readable(lanes[i], &head);
	return held;
}

void
ring_bell_disarm(struct ring_lane **lanes, uint32_t n)
{
	uint32_t	 i;

	for (i = 0; i < n; i++)
		atomic_store_explicit(&lanes[i]->asleep, 0,
		    memory_order_relaxed);
}

int
ring_bell_fd(const struct ring_lane *l)
{
	return l->bell_fd;
}

void
ring_bell_drain(int fd)
{
	uint64_t	 n;

	if (fd != -1)
		(void)read(fd, &n, sizeof(n));
}
