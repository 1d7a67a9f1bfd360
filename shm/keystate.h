/*
 * keystate.h - per-key limit state in the shared segment, so that every
 * worker enforces one limit together, not N times it.
 *
 * One fixed-size slot per key, found by the slot number the master gives
 * each key when it loads keys.conf (keystate_assign).  A slot keeps its key
 * across reloads; a removed key's slot is freed, and new keys take free
 * slots round-robin so a freed slot is reused as late as possible.
 * Requests per minute and tokens per minute are GCRA (one atomic word
 * each, a CAS loop: lock-free); spend is an atomic counter per budget
 * period.  shm/ knows nothing of HTTP: callers pass the clock and limits.
 */
#ifndef SLUICE_KEYSTATE_H
#define SLUICE_KEYSTATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shm/lease.h"

#define KEYSTATE_SLOTS		16384
#define KEYSTATE_NAME_MAX	64

struct keyring;

struct keystate {
	_Alignas(64) char name[KEYSTATE_NAME_MAX]; /* owner, "" = free; master */
	_Atomic int64_t	 rpm_tat_ns;	/* GCRA theoretical arrival time */
	_Atomic int64_t	 tpm_tat_ns;
	_Atomic int64_t	 period;	/* budget period the spend is for */
	_Atomic int64_t	 spend_base;	/* micro-USD from PostgreSQL */
	_Atomic int64_t	 spend_live;	/* micro-USD added by workers since */
	_Atomic int64_t	 held;		/* micro-USD held by requests under way */
	struct ks_lease	 lease[LEASE_KINDS]; /* limits shared: this host's */
};

/*
 * What a request under way holds of its key's limits, from admission to
 * its charge: its worst case, in tokens against tpm and in micro-USD
 * against the budget.
 */
struct ks_hold {
	int64_t		 tokens;
	int64_t		 micro_usd;
	int64_t		 tpm_win;	/* tokens taken of this minute's lease */
	int64_t		 budget_win;	/* micro-USD taken of this period's */
};

struct keystate_table {
	uint32_t	 nslots;
	uint32_t	 cursor;	/* next slot to try for a new key */
	_Atomic int	 spend_loaded;	/* the collector loaded spend once */
	_Alignas(64) struct keystate slots[];
};

size_t	 keystate_size(uint32_t nslots);
void	 keystate_init(struct keystate_table *, uint32_t nslots);
/*
 * Master only: give every key of KR a slot (same name, same slot), free
 * the slots of keys no longer present.  -1 if the table is full.
 */
int	 keystate_assign(struct keystate_table *, struct keyring *kr);
struct keystate *keystate_at(struct keystate_table *, int slot);
/* A state with nothing booked, spent or held (for a new owner). */
void	 ks_reset(struct keystate *);

/*
 * Take one request from a GCRA allowing RPM per minute with a burst of
 * RPM.  0 = admitted; else the nanoseconds to wait.
 */
int64_t	 ks_rpm_take(struct keystate *, int64_t rpm, int64_t now_ns);
/* Undo one ks_rpm_take that was admitted (a later check refused). */
void	 ks_rpm_give_back(struct keystate *, int64_t rpm);
/* 0 if tokens are within TPM per minute now; else the ns to wait. */
int64_t	 ks_tpm_check(struct keystate *, int64_t tpm, int64_t now_ns);
/*
 * Book TOKENS against TPM per minute at admission, if they fit in what is
 * left of the minute's allowance (or the allowance is all unused: one
 * request larger than TPM still goes, alone).  0 booked; else the ns to
 * wait, nothing booked.
 */
int64_t	 ks_tpm_hold(struct keystate *, int64_t tpm, int64_t tokens,
	    int64_t now_ns);
/*
 * Hold MICRO_USD of the budget BUDGET in PERIOD, if the spend, what other
 * requests hold and MICRO_USD stay within it: 0 held, -1 not (nothing
 * held).  Lock-free: a CAS on the held sum, so concurrent requests can
 * never hold more than the budget between them.
 */
int	 ks_budget_hold(struct keystate *, int64_t period, int64_t budget,
	    int64_t micro_usd);
/* Micro-USD held now by requests under way. */
int64_t	 ks_held(struct keystate *);
/* Count TOKENS used (after the response: the limit can be overshot by
 * the requests already in flight). */
void	 ks_tpm_add(struct keystate *, int64_t tpm, int64_t tokens,
	    int64_t now_ns);
/*
 * The budget period containing NOW: KIND 1 = UTC day, 2 = UTC month
 * (enum key_period).  Returns its id; *START and *END bound it.
 */
int64_t	 ks_period(int kind, time_t now, time_t *start, time_t *end);
/* Spend in PERIOD (an id from ks_period); resets on a new one. */
int64_t	 ks_spend(struct keystate *, int64_t period);
void	 ks_spend_add(struct keystate *, int64_t period, int64_t micro_usd);
/*
 * A finished request's charge: TOKENS against a tpm limit (0 = none) and
 * MICRO_USD against the budget of period kind PERIOD_KIND (0 = none),
 * in place of what it held at admission (HOLD, NULL = nothing), and in
 * the leases the hold took from (limits shared).  The one
 * charging rule, for the worker (auth_charge) and the master (a request
 * cut by a worker's death).
 */
void	 ks_charge(struct keystate *, const struct ks_hold *hold, int64_t tpm,
	    int64_t tokens, int period_kind, int64_t micro_usd, int64_t now_ns,
	    time_t now);
/*
 * Collector: spend in PERIOD as PostgreSQL knows it, read after every
 * event counted in LIVE_SEEN (a value of spend_live read earlier) was
 * made durable.  Exact: base becomes DB, and LIVE_SEEN leaves live.
 */
void	 ks_spend_sync(struct keystate *, int64_t period, int64_t db_micro,
	    int64_t live_seen);

#endif
