/*
 * inflight.h - the in-flight table: one table per worker slot (2 x workers,
 * like the ring lanes), one entry per client connection, holding the usage
 * event of the request under way on it, kept current while it runs.
 *
 * The worker owns its slot's table while it lives: an entry is live from
 * a request's first byte until just after its event was pushed.  When the
 * worker dies, the master (and only then, only while no worker holds the
 * slot) turns the live entries into events and clears them.  Only the
 * master resizes a slot's table, and only while no worker holds the slot
 * (a reload that raises max_connections).  shm/ knows nothing about HTTP:
 * the entry is an event and a count of bytes.
 */
#ifndef SLUICE_INFLIGHT_H
#define SLUICE_INFLIGHT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/event.h"
#include "shm/keystate.h"
#include "shm/ring.h"

#define INFLIGHT_MAX_SLOTS	128	/* 2 x the most workers config allows */

enum inflight_state {
	IFT_FREE = 0,
	IFT_LIVE,		/* a request is under way */
	IFT_PUSHING		/* its event is being pushed; see push_mark */
};

struct inflight_entry {
	_Alignas(64) _Atomic uint32_t state;	/* enum inflight_state */
	uint64_t	 push_mark;	/* the lane's ring_attempts() before */
	int64_t		 text_bytes;	/* generated text relayed so far */
	int64_t		 head_bytes;	/* the request head's, of ev.bytes_in */
	struct ks_hold	 hold[3];	/* of its key's, team's and end
					   user's limits, until charged */
	struct usage_event ev;		/* the request's event, as it goes */
};

struct inflight_slot {
	struct inflight_entry	*e;	/* in the segment, or its own mapping */
	uint32_t		 n;
	int			 own;	/* e is a mapping of its own */
};

struct inflight_region {
	uint32_t	 nslots;	/* worker slots */
	uint32_t	 per;		/* entries per slot at start */
	struct inflight_slot slot[INFLIGHT_MAX_SLOTS];
	_Alignas(64) struct inflight_entry e[];
};

/* Bytes the region takes for NSLOTS tables of PER entries. */
size_t	 inflight_size(uint32_t nslots, uint32_t per);
/* Initialise a zeroed region in place (master, before the first fork). */
void	 inflight_init(struct inflight_region *, uint32_t nslots, uint32_t per);
/* Slot SLOT's table and its entry count in *N; NULL if none. */
struct inflight_entry *inflight_table(struct inflight_region *, uint32_t slot,
	    uint32_t *n);
/*
 * Master, for a slot no worker holds: give it a table of at least PER
 * entries, all free.  0 ok (or already that big), -1 no memory (the slot
 * keeps its table: requests past its size are not covered).
 */
int	 inflight_grow(struct inflight_region *, uint32_t slot, uint32_t per);

/* The owner marks an entry's request under way, or ended (and zeroes it). */
void	 inflight_begin(struct inflight_entry *);
void	 inflight_end(struct inflight_entry *);
/* The owner, just before it pushes the entry's event into LANE. */
void	 inflight_pushing(struct inflight_entry *, struct ring_lane *lane);
/*
 * The master, for an entry of a dead owner: whether it holds a request
 * whose event still needs pushing (live, or pushing but the push never
 * happened).  ATTEMPTS: ring_attempts() of the lane taken once, after the
 * death and before the master pushes anything into it.
 */
int	 inflight_unpushed(struct inflight_entry *, uint64_t attempts);
/* Whether an entry holds a request under way. */
int	 inflight_live(struct inflight_entry *);

#endif
