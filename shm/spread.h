/*
 * spread.h - the workers' share of the client connections, so that they
 * take turns on the one listening socket (region "spread").
 *
 * One line per worker slot (2 x workers, like the lanes).  The worker in
 * the slot writes whether it listens, how many client connections it
 * holds and when it last accepted one; every worker reads every line to
 * decide whether a new connection is its to take (spread_turn).  A worker
 * whose turn it is not stops accepting and raises its waiting flag; who
 * changes a line next wakes it through its eventfd (the kick) to look
 * again.  The master creates the eventfds before the first fork and
 * clears the line of a worker that died, while no worker holds the slot.
 *
 * shm/ knows nothing about HTTP: a connection is a count.
 */
#ifndef SLUICE_SPREAD_H
#define SLUICE_SPREAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct spread_slot {
	_Alignas(64) _Atomic int32_t listening;	/* 1: takes part */
	_Atomic int32_t	 conns;		/* client connections held */
	_Atomic int64_t	 last_us;	/* monotonic, last accept; 0 = never */
	_Atomic uint32_t waiting;	/* 1: kick me when a line changes */
	int32_t		 kick_fd;	/* eventfd; -1: none, poll instead */
};

struct spread_region {
	uint32_t	 nslots;
	_Alignas(64) struct spread_slot s[];
};

/* Master, before the first fork: size, then init a zeroed region. */
size_t	 spread_size(uint32_t nslots);
void	 spread_init(struct spread_region *, uint32_t nslots);
/* Master: the worker in SLOT is gone; its line no longer counts. */
void	 spread_clear(struct spread_region *, uint32_t slot);

/*
 * The worker in SLOT: publish its line (LAST_US 0 keeps the last accept),
 * then kick every waiting worker, whose turn may have come with it.
 */
void	 spread_set(struct spread_region *, uint32_t slot, int listening,
	    int conns, int64_t last_us);
/*
 * Is the next connection SLOT's to take?  Yes if it holds fewer than the
 * average of the listening workers, or if they all hold as many and it
 * accepted least recently.  Some listening worker's answer is always yes.
 */
int	 spread_turn(struct spread_region *, uint32_t slot);
/*
 * SLOT's turn is not now: raise its waiting flag, then look once more.
 * 1: the turn came meanwhile (the flag is down again); 0: wait for a kick.
 */
int	 spread_wait(struct spread_region *, uint32_t slot);
/* The eventfd a kick makes readable (-1: none); read it empty. */
int	 spread_kick_fd(const struct spread_region *, uint32_t slot);
void	 spread_kick_drain(const struct spread_region *, uint32_t slot);

#endif
