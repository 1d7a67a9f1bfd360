/*
 * test_keystate.c - the per-key limit state every worker shares: GCRA
 * request and token limits, budget spend per period, and the slots the
 * master gives keys across reloads.
 *
 * The clock is a parameter (now_ns), so every edge is driven exactly: a
 * key starting idle gets its whole per-minute allowance at once, then one
 * request per 60/rpm seconds, and a rejection says how long to wait to
 * the nanosecond.  Token and budget holds are booked at admission and
 * settled by the charge.  The forked tests run the limiter and the
 * budget holds from 4 processes on one MAP_SHARED table, the way workers
 * use it.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/keys.h"
#include "shm/keystate.h"

#define SEC	1000000000LL
#define MINUTE	(60 * SEC)
/* An arbitrary "now" far from 0, like CLOCK_MONOTONIC on a machine up
 * for a while. */
#define T0	(123456789LL * SEC + 987654321LL)

static struct keystate_table *
table_new(uint32_t nslots)
{
	struct keystate_table *t = malloc(keystate_size(nslots));

	assert_non_null(t);
	keystate_init(t, nslots);
	return t;
}

/* A keyring holding only names: all keystate_assign reads. */
static struct keyring *
ring_of(const char *const *names, int n)
{
	struct keyring	*kr = calloc(1, sizeof(*kr));
	int		 i;

	assert_non_null(kr);
	kr->keys = calloc((size_t)(n > 0 ? n : 1), sizeof(*kr->keys));
	assert_non_null(kr->keys);
	kr->nkeys = n;
	for (i = 0; i < n; i++) {
		snprintf(kr->keys[i].name, sizeof(kr->keys[i].name), "%s",
		    names[i]);
		kr->keys[i].slot = -1;
	}
	return kr;
}

static void
ring_free(struct keyring *kr)
{
	free(kr->keys);
	free(kr);
}

static int
slot_of(const struct keyring *kr, const char *name)
{
	int i;

	for (i = 0; i < kr->nkeys; i++)
		if (strcmp(kr->keys[i].name, name) == 0)
			return kr->keys[i].slot;
	fail_msg("no key %s", name);
	return -1;
}

/* --- rpm ------------------------------------------------------------- */

static void
test_rpm_burst_then_one_per_interval(void **state)
{
	struct keystate_table	*t = table_new(4);
	struct keystate		*ks = keystate_at(t, 0);
	int64_t			 now = T0, w;
	int			 i;

	(void)state;
	/* rpm 60: the whole minute's allowance at once from idle */
	for (i = 0; i < 60; i++)
		assert_int_equal(ks_rpm_take(ks, 60, now), 0);
	/* the 61st waits exactly one interval (1 s), and is not booked */
	assert_int_equal(ks_rpm_take(ks, 60, now), SEC);
	assert_int_equal(ks_rpm_take(ks, 60, now), SEC);
	assert_int_equal(ks_rpm_take(ks, 60, now + SEC / 2), SEC / 2);
	/* one nanosecond early is still too early, by one nanosecond */
	assert_int_equal(ks_rpm_take(ks, 60, now + SEC - 1), 1);
	/* then one per second, no more */
	for (i = 1; i <= 30; i++) {
		now = T0 + i * SEC;
		assert_int_equal(ks_rpm_take(ks, 60, now), 0);
		assert_int_equal(ks_rpm_take(ks, 60, now), SEC);
	}
	/* after a full idle minute the whole burst is back, not more */
	now += MINUTE;
	for (i = 0; i < 60; i++)
		assert_int_equal(ks_rpm_take(ks, 60, now), 0);
	w = ks_rpm_take(ks, 60, now);
	assert_int_equal(w, SEC);
	free(t);
}

static void
test_rpm_interval_not_dividing_a_minute(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);
	int64_t			 T = MINUTE / 7, w;	/* 8571428571 ns */
	int			 i;

	(void)state;
	for (i = 0; i < 7; i++)
		assert_int_equal(ks_rpm_take(ks, 7, T0), 0);
	w = ks_rpm_take(ks, 7, T0);
	/* 8 intervals booked minus the minute of burst allowance */
	assert_int_equal(w, 8 * T - MINUTE);
	assert_true(w > 0 && w <= T);
	assert_int_equal(ks_rpm_take(ks, 7, T0 + w - 1), 1);
	assert_int_equal(ks_rpm_take(ks, 7, T0 + w), 0);
	assert_int_equal(ks_rpm_take(ks, 7, T0 + w), T);
	free(t);
}

static void
test_rpm_one_and_zero(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);
	int			 i;

	(void)state;
	/* rpm 1: one now, the next a minute later */
	assert_int_equal(ks_rpm_take(ks, 1, T0), 0);
	assert_int_equal(ks_rpm_take(ks, 1, T0), MINUTE);
	assert_int_equal(ks_rpm_take(ks, 1, T0 + MINUTE - 1), 1);
	assert_int_equal(ks_rpm_take(ks, 1, T0 + MINUTE), 0);
	/* 0 = no limit, and the state is left alone */
	for (i = 0; i < 1000; i++)
		assert_int_equal(ks_rpm_take(ks, 0, T0), 0);
	assert_int_equal(ks_rpm_take(ks, 1, T0 + MINUTE), MINUTE);
	/* a clock at 0 (fresh boot) works like any other */
	keystate_init(t, 1);
	assert_int_equal(ks_rpm_take(ks, 2, 0), 0);
	assert_int_equal(ks_rpm_take(ks, 2, 0), 0);
	assert_int_equal(ks_rpm_take(ks, 2, 0), 30 * SEC);
	free(t);
}

/* --- tpm ------------------------------------------------------------- */

static void
test_tpm_check_and_add(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);

	(void)state;
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 0);
	/* exactly the allowance used: the next request may still go */
	ks_tpm_add(ks, 1000, 1000, T0);
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 0);
	/* one token over: wait for one token's worth (60 ms at 1000/min) */
	ks_tpm_add(ks, 1000, 1, T0);
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 60 * 1000000LL);
	assert_int_equal(ks_tpm_check(ks, 1000, T0 + 60 * 1000000LL), 0);
	/* 0 = no limit */
	assert_int_equal(ks_tpm_check(ks, 0, T0), 0);

	/* one big request: 1500 tokens at tpm 1000 -> 30 s to wait */
	keystate_init(t, 1);
	ks_tpm_add(ks, 1000, 1500, T0);
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 30 * SEC);
	assert_int_equal(ks_tpm_check(ks, 1000, T0 + 10 * SEC), 20 * SEC);
	assert_int_equal(ks_tpm_check(ks, 1000, T0 + 30 * SEC - 1), 1);
	assert_int_equal(ks_tpm_check(ks, 1000, T0 + 30 * SEC), 0);
	/* usage after an idle spell counts from now, not from the past */
	ks_tpm_add(ks, 1000, 500, T0 + 10 * MINUTE);
	assert_int_equal(ks_tpm_check(ks, 1000, T0 + 10 * MINUTE), 0);
	ks_tpm_add(ks, 1000, 600, T0 + 10 * MINUTE);
	assert_int_equal(ks_tpm_check(ks, 1000, T0 + 10 * MINUTE), 6 * SEC);
	/* zero or negative tokens (no usage known) book nothing */
	keystate_init(t, 1);
	ks_tpm_add(ks, 1000, 0, T0);
	ks_tpm_add(ks, 1000, -1, T0);
	ks_tpm_add(ks, 1000, 1000, T0);
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 0);
	/* the largest limit and a huge count do not overflow */
	keystate_init(t, 1);
	ks_tpm_add(ks, KEY_TPM_MAX, KEY_TPM_MAX * 2, T0);
	assert_int_equal(ks_tpm_check(ks, KEY_TPM_MAX, T0), MINUTE);
	free(t);
}

/* --- budget periods and spend ---------------------------------------- */

static time_t
utc(int y, int mon, int d, int h, int mi, int s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return timegm(&tm);
}

static void
test_period_bounds(void **state)
{
	time_t	 start, end;
	int64_t	 a, b;

	(void)state;
	/* UTC day */
	a = ks_period(PERIOD_DAY, utc(2025, 3, 14, 23, 59, 59), &start, &end);
	assert_int_equal(start, utc(2025, 3, 14, 0, 0, 0));
	assert_int_equal(end, utc(2025, 3, 15, 0, 0, 0));
	b = ks_period(PERIOD_DAY, utc(2025, 3, 15, 0, 0, 0), &start, &end);
	assert_int_equal(b, a + 1);
	assert_int_equal(start, utc(2025, 3, 15, 0, 0, 0));
	/* UTC month, including February of a leap year and December */
	a = ks_period(PERIOD_MONTH, utc(2024, 2, 29, 12, 0, 0), &start, &end);
	assert_int_equal(start, utc(2024, 2, 1, 0, 0, 0));
	assert_int_equal(end, utc(2024, 3, 1, 0, 0, 0));
	b = ks_period(PERIOD_MONTH, utc(2024, 3, 1, 0, 0, 0), &start, &end);
	assert_int_equal(b, a + 1);
	a = ks_period(PERIOD_MONTH, utc(2024, 12, 31, 23, 59, 59), &start,
	    &end);
	assert_int_equal(start, utc(2024, 12, 1, 0, 0, 0));
	assert_int_equal(end, utc(2025, 1, 1, 0, 0, 0));
	b = ks_period(PERIOD_MONTH, utc(2025, 1, 1, 0, 0, 0), &start, &end);
	assert_int_equal(b, a + 1);
}

static void
test_spend_resets_on_new_period(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);
	time_t			 s, e;
	int64_t			 d1, d2;

	(void)state;
	d1 = ks_period(PERIOD_DAY, utc(2025, 6, 1, 23, 0, 0), &s, &e);
	d2 = ks_period(PERIOD_DAY, utc(2025, 6, 2, 0, 0, 1), &s, &e);
	assert_int_equal(ks_spend(ks, d1), 0);
	ks_spend_add(ks, d1, 250000);
	ks_spend_add(ks, d1, 125000);
	ks_spend_add(ks, d1, 0);	/* unknown cost adds nothing */
	ks_spend_add(ks, d1, -5);
	assert_int_equal(ks_spend(ks, d1), 375000);
	/* midnight UTC: a fresh budget */
	assert_int_equal(ks_spend(ks, d2), 0);
	ks_spend_add(ks, d2, 1000);
	assert_int_equal(ks_spend(ks, d2), 1000);
	/* a first add in a new period (no check before it) also resets */
	ks_spend_add(ks, d2 + 1, 7);
	assert_int_equal(ks_spend(ks, d2 + 1), 7);
	free(t);
}

static void
test_spend_sync_is_exact(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);
	int64_t			 p = 20000, seen;

	(void)state;
	/* requests finish; the collector snapshots what workers added */
	ks_spend_add(ks, p, 100);
	ks_spend_add(ks, p, 200);
	seen = atomic_load(&ks->spend_live);
	assert_int_equal(seen, 300);
	/* more finish while it flushes and queries */
	ks_spend_add(ks, p, 40);
	/* PostgreSQL has the 300 seen, plus 1000 from before a restart */
	ks_spend_sync(ks, p, 1300, seen);
	assert_int_equal(ks_spend(ks, p), 1340);
	/* the next round: nothing counted twice, nothing lost */
	ks_spend_add(ks, p, 5);
	seen = atomic_load(&ks->spend_live);	/* the 40 and the 5 */
	assert_int_equal(seen, 45);
	ks_spend_sync(ks, p, 1345, seen);
	assert_int_equal(ks_spend(ks, p), 1345);
	ks_spend_sync(ks, p, 1345, 0);
	assert_int_equal(ks_spend(ks, p), 1345);

	/* a sync for a period the key has not reached yet starts it */
	ks_spend_sync(ks, p + 1, 77, 0);
	assert_int_equal(ks_spend(ks, p + 1), 77);
	ks_spend_add(ks, p + 1, 3);
	assert_int_equal(ks_spend(ks, p + 1), 80);
	/* a late sync for the period before changes nothing */
	ks_spend_sync(ks, p, 999999, 0);
	assert_int_equal(ks_spend(ks, p + 1), 80);

	/* at start-up (nothing live yet) the DB total is the spend */
	keystate_init(t, 1);
	ks_spend_sync(ks, p, 5000000, 0);
	assert_int_equal(ks_spend(ks, p), 5000000);
	free(t);
}

/* --- slots across reloads -------------------------------------------- */

static void
test_assign_keeps_frees_and_renews(void **state)
{
	static const char *const abc[] = { "alice", "bob", "carol" };
	static const char *const cab[] = { "carol", "alice", "bob" };
	static const char *const ac[] = { "alice", "carol" };
	static const char *const acd[] = { "alice", "carol", "dave" };
	struct keystate_table	*t = table_new(8);
	struct keyring		*kr;
	struct keystate		*ks;
	int			 a, b, c, d, i;
	int64_t			 p = 4242;

	(void)state;
	kr = ring_of(abc, 3);
	assert_int_equal(keystate_assign(t, kr), 0);
	a = slot_of(kr, "alice");
	b = slot_of(kr, "bob");
	c = slot_of(kr, "carol");
	assert_true(a >= 0 && b >= 0 && c >= 0 && a < 8 && b < 8 && c < 8);
	assert_true(a != b && b != c && a != c);
	assert_string_equal(keystate_at(t, a)->name, "alice");
	/* give each some state */
	for (i = 0; i < 3; i++)
		(void)ks_rpm_take(keystate_at(t, a), 3, T0);
	ks_spend_add(keystate_at(t, a), p, 111);
	ks_spend_add(keystate_at(t, b), p, 222);
	ring_free(kr);

	/* reload, same names in another order: same slots, state kept */
	kr = ring_of(cab, 3);
	assert_int_equal(keystate_assign(t, kr), 0);
	assert_int_equal(slot_of(kr, "alice"), a);
	assert_int_equal(slot_of(kr, "bob"), b);
	assert_int_equal(slot_of(kr, "carol"), c);
	assert_int_not_equal(ks_rpm_take(keystate_at(t, a), 3, T0), 0);
	assert_int_equal(ks_spend(keystate_at(t, a), p), 111);
	ring_free(kr);

	/* bob removed: his slot is free, the others stay */
	kr = ring_of(ac, 2);
	assert_int_equal(keystate_assign(t, kr), 0);
	assert_int_equal(slot_of(kr, "alice"), a);
	assert_int_equal(slot_of(kr, "carol"), c);
	assert_string_equal(keystate_at(t, b)->name, "");
	assert_int_equal(ks_spend(keystate_at(t, a), p), 111);
	ring_free(kr);

	/* dave is new: a fresh slot, not bob's (reused as late as possible) */
	kr = ring_of(acd, 3);
	assert_int_equal(keystate_assign(t, kr), 0);
	d = slot_of(kr, "dave");
	assert_true(d != a && d != b && d != c);
	ks = keystate_at(t, d);
	assert_string_equal(ks->name, "dave");
	assert_int_equal(ks_spend(ks, p), 0);
	assert_int_equal(ks_rpm_take(ks, 1, T0), 0);
	ring_free(kr);

	/* bob comes back later: a new key to us, with no old state */
	{
		static const char *const again[] = { "alice", "carol", "dave",
		    "bob" };

		kr = ring_of(again, 4);
		assert_int_equal(keystate_assign(t, kr), 0);
		assert_int_equal(ks_spend(keystate_at(t, slot_of(kr, "bob")),
		    p), 0);
		assert_int_equal(slot_of(kr, "alice"), a);
		ring_free(kr);
	}
	free(t);
}

static void
test_assign_reuses_freed_slot_clean_and_reports_full(void **state)
{
	static const char *const names[] = { "k0", "k1", "k2", "k3" };
	static const char *const three[] = { "k0", "k2", "k3" };
	static const char *const four[] = { "k0", "k2", "k3", "k9" };
	static const char *const five[] = { "k0", "k2", "k3", "k9", "kx" };
	struct keystate_table	*t = table_new(4);
	struct keyring		*kr;
	struct keystate		*ks;
	int			 s1, s9;

	(void)state;
	kr = ring_of(names, 4);
	assert_int_equal(keystate_assign(t, kr), 0);
	s1 = slot_of(kr, "k1");
	ks = keystate_at(t, s1);
	ks_spend_add(ks, 9, 5000);
	ks_tpm_add(ks, 10, 1000, T0);
	(void)ks_rpm_take(ks, 1, T0);
	ring_free(kr);

	kr = ring_of(three, 3);
	assert_int_equal(keystate_assign(t, kr), 0);
	ring_free(kr);
	/* the table is full but for k1's old slot: k9 gets it, zeroed */
	kr = ring_of(four, 4);
	assert_int_equal(keystate_assign(t, kr), 0);
	s9 = slot_of(kr, "k9");
	assert_int_equal(s9, s1);
	ks = keystate_at(t, s9);
	assert_string_equal(ks->name, "k9");
	assert_int_equal(ks_spend(ks, 9), 0);
	assert_int_equal(ks_tpm_check(ks, 10, T0), 0);
	assert_int_equal(ks_rpm_take(ks, 1, T0), 0);
	ring_free(kr);

	/* one key more than slots */
	kr = ring_of(five, 5);
	assert_int_equal(keystate_assign(t, kr), -1);
	ring_free(kr);

	/* no keys at all frees everything */
	kr = ring_of(NULL, 0);
	assert_int_equal(keystate_assign(t, kr), 0);
	assert_string_equal(keystate_at(t, s9)->name, "");
	ring_free(kr);
	assert_null(keystate_at(t, 4));
	assert_null(keystate_at(t, -1));
	assert_null(keystate_at(NULL, 0));
	free(t);
}

/* --- holds: reserve at admission, settle at the end ------------------ */

static void
test_tpm_hold_books_and_the_charge_settles(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);
	struct ks_hold		 h = { .tokens = 600 };

	(void)state;
	/* an unused allowance takes even more than a minute's worth */
	assert_int_equal(ks_tpm_hold(ks, 1000, 1500, T0), 0);
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 30 * SEC);
	keystate_init(t, 1);
	assert_int_equal(ks_tpm_hold(ks, 1000, 600, T0), 0);
	/* 600 + 600 would pass the minute: refused, the wait exact */
	assert_int_equal(ks_tpm_hold(ks, 1000, 600, T0), 12 * SEC);
	assert_int_equal(ks_tpm_hold(ks, 1000, 400, T0), 0);
	assert_int_equal(ks_tpm_hold(ks, 1000, 1, T0), 60 * 1000000LL);
	/* the 600 used 100: 500 come back, and 500 fit again */
	ks_charge(ks, &h, 1000, 100, 0, 0, T0, 0);
	assert_int_equal(ks_tpm_hold(ks, 1000, 501, T0), 60 * 1000000LL);
	assert_int_equal(ks_tpm_hold(ks, 1000, 500, T0), 0);
	/* used more than held: the 60 more are added, past the minute */
	h.tokens = 500;
	ks_charge(ks, &h, 1000, 560, 0, 0, T0, 0);
	assert_int_equal(ks_tpm_check(ks, 1000, T0), 3600 * 1000000LL);
	assert_int_equal(ks_tpm_hold(ks, 1000, 1, T0), 3660 * 1000000LL);
	/* a refund never books the past: 60 s later all is free */
	h.tokens = 5000;
	ks_charge(ks, &h, 1000, 0, 0, 0, T0 + MINUTE + 1, 0);
	assert_int_equal(ks_tpm_hold(ks, 1000, 1000, T0 + MINUTE + 1), 0);
	assert_int_equal(ks_tpm_hold(ks, 0, 5, T0), 0);	/* no limit */
	free(t);
}

static void
test_budget_hold_counts_spend_and_holds(void **state)
{
	struct keystate_table	*t = table_new(1);
	struct keystate		*ks = keystate_at(t, 0);
	struct ks_hold		 h = { .micro_usd = 400 };
	time_t			 now = 1700000000, start, end;
	int64_t			 period = ks_period(1, now, &start, &end);

	(void)state;
	assert_int_equal(ks_budget_hold(ks, period, 1000, 400), 0);
	assert_int_equal(ks_budget_hold(ks, period, 1000, 400), 0);
	assert_int_equal(ks_held(ks), 800);
	assert_int_equal(ks_budget_hold(ks, period, 1000, 201), -1);
	assert_int_equal(ks_held(ks), 800);	/* a refusal holds nothing */
	assert_int_equal(ks_budget_hold(ks, period, 1000, 200), 0);
	/* one of the 400s cost 150: 250 of it comes back */
	ks_charge(ks, &h, 0, 0, 1, 150, T0, now);
	assert_int_equal(ks_spend(ks, period), 150);
	assert_int_equal(ks_held(ks), 600);
	assert_int_equal(ks_budget_hold(ks, period, 1000, 251), -1);
	assert_int_equal(ks_budget_hold(ks, period, 1000, 250), 0);
	/* unpriced (0 held): admitted while the spend is under budget */
	assert_int_equal(ks_budget_hold(ks, period, 1000, 0), 0);
	ks_spend_add(ks, period, 850);
	assert_int_equal(ks_budget_hold(ks, period, 1000, 0), -1);
	free(t);
}

/* --- across processes ------------------------------------------------ */

#define NPROC	4
#define TRIES	2000
#define RPM	1000

struct shared {
	_Atomic int	 ready;
	_Atomic int	 go;
	_Atomic int	 admitted[NPROC];
};

/*
 * Run CHILD in NPROC forked processes on T's first key, all let go at
 * once; returns the sum of what they admitted.
 */
static int
run_forked(struct keystate_table *t, int (*child)(struct keystate *))
{
	struct shared	*sh;
	pid_t		 pids[NPROC];
	int		 i, status, total = 0;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	for (i = 0; i < NPROC; i++) {
		pids[i] = fork();
		assert_true(pids[i] != -1);
		if (pids[i] == 0) {
			atomic_fetch_add(&sh->ready, 1);
			while (!atomic_load(&sh->go))
				;
			atomic_store(&sh->admitted[i], child(keystate_at(t, 0)));
			_exit(0);
		}
	}
	while (atomic_load(&sh->ready) < NPROC)
		usleep(100);
	atomic_store(&sh->go, 1);
	for (i = 0; i < NPROC; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		total += atomic_load(&sh->admitted[i]);
	}
	munmap(sh, sizeof(*sh));
	return total;
}

static struct keystate_table *
shared_table(void)
{
	struct keystate_table *t = mmap(NULL, keystate_size(1),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(t != MAP_FAILED);
	keystate_init(t, 1);
	return t;
}

/* one instant: the burst is all there is */
static int
rpm_child(struct keystate *ks)
{
	int n = 0, j;

	for (j = 0; j < TRIES; j++)
		if (ks_rpm_take(ks, RPM, T0) == 0)
			n++;
	return n;
}

static void
test_rpm_across_forked_processes(void **state)
{
	struct keystate_table	*t = shared_table();
	int			 round;

	(void)state;
	for (round = 0; round < 5; round++) {
		keystate_init(t, 1);
		assert_int_equal(run_forked(t, rpm_child), RPM);
		/* and the shared word says one interval more is needed */
		assert_int_equal(ks_rpm_take(keystate_at(t, 0), RPM, T0),
		    MINUTE / RPM);
	}
	munmap(t, keystate_size(1));
}

#define HOLD_MICRO	700
#define BUDGET		(HOLD_MICRO * 13 + 699)
#define HOLD_NOW	((time_t)1700000000)

/* hold, and settle a third of them at once for 100 */
static int
hold_child(struct keystate *ks)
{
	struct ks_hold	 h = { .micro_usd = HOLD_MICRO };
	time_t		 start, end;
	int64_t		 period = ks_period(2, HOLD_NOW, &start, &end);
	int		 n = 0, j;

	for (j = 0; j < TRIES; j++) {
		if (ks_budget_hold(ks, period, BUDGET, HOLD_MICRO) != 0)
			continue;
		n++;
		if (j % 3 == 0)
			ks_charge(ks, &h, 0, 0, 2, 100, T0, HOLD_NOW);
	}
	return n;
}

static void
test_budget_holds_across_forked_processes(void **state)
{
	struct keystate_table	*t = shared_table();
	struct keystate		*ks = keystate_at(t, 0);
	time_t			 start, end;
	int64_t			 period = ks_period(2, HOLD_NOW, &start, &end);
	int64_t			 spent, held;
	int			 total;

	(void)state;
	total = run_forked(t, hold_child);
	/* never more held and spent than the budget, whatever the race */
	spent = ks_spend(ks, period);
	held = ks_held(ks);
	assert_true(spent + held <= BUDGET);
	assert_true(spent + held + HOLD_MICRO > BUDGET);
	assert_int_equal(held % HOLD_MICRO, 0);
	assert_int_equal(spent % 100, 0);
	assert_int_equal(total, held / HOLD_MICRO + spent / 100);
	munmap(t, keystate_size(1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rpm_burst_then_one_per_interval),
		cmocka_unit_test(test_rpm_interval_not_dividing_a_minute),
		cmocka_unit_test(test_rpm_one_and_zero),
		cmocka_unit_test(test_tpm_check_and_add),
		cmocka_unit_test(test_period_bounds),
		cmocka_unit_test(test_spend_resets_on_new_period),
		cmocka_unit_test(test_spend_sync_is_exact),
		cmocka_unit_test(test_assign_keeps_frees_and_renews),
		cmocka_unit_test(test_assign_reuses_freed_slot_clean_and_reports_full),
		cmocka_unit_test(test_rpm_across_forked_processes),
		cmocka_unit_test(test_tpm_hold_books_and_the_charge_settles),
		cmocka_unit_test(test_budget_hold_counts_spend_and_holds),
		cmocka_unit_test(test_budget_holds_across_forked_processes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
