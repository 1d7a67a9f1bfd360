/*
 * ring.h - one lane of the usage event ring: single producer (a worker),
 * single consumer (the collector), fixed-size slots, in shared memory.
 *
 * The producer owns tail, the consumer owns head; each is a 64-bit counter
 * that only grows, on its own cache line, published with release stores and
 * read with acquire loads.  Push never waits: a full lane counts a drop.
 * A producer killed mid-copy never advanced tail, so the consumer sees only
 * whole events.  The consumer advances head only after the events it read
 * are durable; until then a restarted consumer reads them again.
 *
 * The bell: a consumer with nothing to do sleeps on an eventfd instead of
 * polling.  It arms every lane's bell, looks at the lanes once more, and
 * sleeps only if they are all empty; the next push into an armed lane
 * rings the bell (one write(2)) and disarms it.  A push into a lane whose
 * bell is not armed costs one load of a word the producer keeps in its
 * cache.  The master creates the eventfd before the first fork.
 */
#ifndef SLUICE_RING_H
#define SLUICE_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/event.h"

struct ring_lane {
	_Alignas(64) _Atomic uint64_t tail;	/* written by the producer */
	_Alignas(64) _Atomic uint64_t head;	/* written by the consumer */
	_Alignas(64) _Atomic uint64_t drops;	/* written by the producer */
	_Atomic uint64_t pushes;		/* written by the producer */
	uint32_t	 nslots;		/* power of two */
	uint32_t	 mask;
	_Alignas(64) _Atomic uint32_t asleep;	/* 1: the consumer waits */
	int32_t		 bell_fd;		/* eventfd; -1: no bell */
	_Alignas(64) struct usage_event slots[];
};

/* Bytes one lane of NSLOTS occupies (a multiple of 64). */
size_t	 ring_lane_size(uint32_t nslots);
/*
 * Initialise a zeroed lane in place. NSLOTS must be a power of two;
 * BELL_FD is the consumer's eventfd (ring_bell_open), or -1.
 */
void	 ring_lane_init(struct ring_lane *, uint32_t nslots, int bell_fd);
/*
 * Producer, before its first push: have the kernel allocate and map the
 * lane's pages now, so that no push takes a page fault (a shared page is
 * zeroed at first touch: half a fault per event until the lane wraps).
 * Advisory: where the kernel cannot, pushes fault as before.
 */
void	 ring_lane_prefault(struct ring_lane *);
/* A bell for the lanes: an eventfd, or -1 where there is none. */
int	 ring_bell_open(void);

/* Producer: copy EV into the lane. 0 ok, -1 full (a drop is counted). */
int	 ring_push(struct ring_lane *, const struct usage_event *ev);
/*
 * Producer: how many slots a push could fill now.  Advisory (relaxed
 * loads): the consumer may free more at any moment, never fewer.
 */
uint64_t ring_free(struct ring_lane *);
/*
 * Producer, or anyone once the producer is dead: pushes tried so far
 * (published plus dropped).  A push changes it once it is done either way.
 */
uint64_t ring_attempts(struct ring_lane *);

/* Consumer: how many events are readable; *head gets the current head. */
uint64_t ring_readable(struct ring_lane *, uint64_t *head);
/* Consumer: the event at absolute position POS (head <= pos < tail). */
const struct usage_event *ring_at(struct ring_lane *, uint64_t pos);
/* Consumer: everything before NEW_HEAD is durable; free those slots. */
void	 ring_release(struct ring_lane *, uint64_t new_head);
/*
 * Consumer, about to sleep: arm the bells of the N lanes, then count the
 * events they hold.  Sleep on the bell (ring_bell_fd) only if that is 0:
 * a push from then on rings it.  Either way ring_bell_disarm() after.
 */
uint64_t ring_bell_arm(struct ring_lane **lanes, uint32_t n);
void	 ring_bell_disarm(struct ring_lane **lanes, uint32_t n);
/* The lanes' bell (-1: none), and reading it empty before a sleep. */
int	 ring_bell_fd(const struct ring_lane *);
void	 ring_bell_drain(int fd);

#endif
