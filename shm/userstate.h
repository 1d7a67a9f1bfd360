/*
 * userstate.h - the budget state of each end user of a key with an
 * end_user_budget, in the shared segment, so that every worker holds and
 * charges one budget per end user together.
 *
 * A fixed table of slots, found by a 64-bit tag (a hash of the key's name
 * and the end user's id) with linear probing; a slot is claimed by a CAS
 * on its tag, and a slot whose budget period is over and that holds
 * nothing is claimed again by the next user who needs one.  Each slot is
 * a struct keystate, so holds, charges and the collector's spend sync
 * are the key's own rules (keystate.h).  Workers claim and charge; the
 * collector syncs spend; the master creates the table.  shm/ knows
 * nothing of HTTP: callers pass the tag and the clock.
 */
#ifndef SLUICE_USERSTATE_H
#define SLUICE_USERSTATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shm/keystate.h"

#define USERSTATE_SLOTS		65536	/* end users with a budget, at once */
#define USERSTATE_PROBES	64	/* slots looked at for one tag */

struct userstate_table {
	uint32_t	 nslots;
	_Alignas(64) _Atomic uint64_t tag[]; /* then the slots */
};

size_t	 userstate_size(uint32_t nslots);
void	 userstate_init(struct userstate_table *, uint32_t nslots);
/* The tag of end user USER of key KEY: never 0 or 1. */
uint64_t userstate_tag(const char *key, const char *user);
/*
 * The state of the user TAG, claiming a slot for it if it has none:
 * NULL when the probed slots all hold other users of the current period
 * (PERIOD_KIND, NOW) or something under way.
 */
struct keystate *userstate_get(struct userstate_table *, uint64_t tag,
	    int period_kind, time_t now);
/* The state of the user TAG if it has a slot, else NULL (no claim). */
struct keystate *userstate_find(struct userstate_table *, uint64_t tag);
/* Slot I (0 <= I < nslots) and its tag in *TAG (0: free, 1: being
 * claimed); the collector's spend sync. */
struct keystate *userstate_at(struct userstate_table *, uint32_t i,
	    uint64_t *tag);

#endif
