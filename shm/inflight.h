/*
 * inflight.h - the in-flight table: one table per worker slot (2 x workers,
 * like the ring lanes), one entry per client connection, holding the usage
 * event of the request under way on it, kept current while it runs.
 *
 * The worker owns its slot's table while it lives: an entry is live from
 * a request's first byte until just after its event was pushed.  When the
 * worker dies, the master (and only then, only while no worker holds the
 * slot) turns the live entries into events and clears them.  shm/ knows
 * nothing about HTTP: the entry is an event and a count of bytes.
 */
#ifndef SLUICE_INFLIGHT_H
#define SLUICE_INFLIGHT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/event.h"

struct inflight_entry {
	_Alignas(64) _Atomic uint32_t live;	/* 1: a request is under way */
	int64_t		 text_bytes;	/* generated text relayed so far */
	struct usage_event ev;		/* the request's event, as it goes */
};

struct inflight_region {
	uint32_t	 nslots;	/* worker slots */
	uint32_t	 per;		/* entries per slot (max_connections) */
	_Alignas(64) struct inflight_entry e[];
};

/* Bytes the region takes for NSLOTS tables of PER entries. */
size_t	 inflight_size(uint32_t nslots, uint32_t per);
/* Initialise a zeroed region in place (master, before the first fork). */
void	 inflight_init(struct inflight_region *, uint32_t nslots, uint32_t per);
/* Slot SLOT's table and its entry count in *N; NULL if none. */
struct inflight_entry *inflight_table(struct inflight_region *, uint32_t slot,
	    uint32_t *n);
/* The owner marks an entry's request under way, or ended (and zeroes it). */
void	 inflight_begin(struct inflight_entry *);
void	 inflight_end(struct inflight_entry *);
/* Whether an entry holds a request under way. */
int	 inflight_live(struct inflight_entry *);

#endif
