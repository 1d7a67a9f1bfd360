/*
 * test_lease.c - taking from a host's leased share of a limit: never more
 * than granted between concurrent takers, nothing without a grant for
 * the window or past its expiry, settling up and down, and the
 * collector's grant replacing an old window's slot.  The forked test
 * takes from 4 processes on one MAP_SHARED lease, the way workers do.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm/keystate.h"
#include "shm/lease.h"

#define NOW	1700000000000LL		/* wall clock, ms */
#define WIN	(NOW / 60000)

static void
test_minute(void **state)
{
	(void)state;
	assert_int_equal(lease_minute(59999999), 0);
	assert_int_equal(lease_minute(60000000), 1);
	assert_int_equal(lease_minute(NOW * 1000), WIN);
}

static void
test_no_grant_no_take(void **state)
{
	struct ks_lease l;

	(void)state;
	memset(&l, 0, sizeof(l));
	assert_int_equal(lease_take(&l, WIN, 1, NOW), LEASE_NONE);
	lease_grant(&l, WIN, 3, 0, NOW + 1000);
	/* another window, or past the expiry: nothing */
	assert_int_equal(lease_take(&l, WIN + 1, 1, NOW), LEASE_NONE);
	assert_int_equal(lease_take(&l, WIN, 1, NOW + 1000), LEASE_NONE);
	assert_int_equal(lease_take(&l, WIN, 1, NOW + 999), LEASE_OK);
}

static void
test_take_up_to_the_grant(void **state)
{
	struct ks_lease	 l;
	int		 i;

	(void)state;
	memset(&l, 0, sizeof(l));
	lease_grant(&l, WIN, 5, 0, NOW + 1000);
	for (i = 0; i < 5; i++)
		assert_int_equal(lease_take(&l, WIN, 1, NOW), LEASE_OK);
	assert_int_equal(lease_take(&l, WIN, 1, NOW), LEASE_EMPTY);
	assert_int_equal(lease_take(&l, WIN, 0, NOW), LEASE_EMPTY);
	assert_int_equal(atomic_load(&l.w[WIN & 1].used), 5);
	/* a bigger grant for the same window keeps what was used */
	lease_grant(&l, WIN, 7, 0, NOW + 2000);
	assert_int_equal(lease_take(&l, WIN, 3, NOW), LEASE_EMPTY);
	assert_int_equal(lease_take(&l, WIN, 2, NOW), LEASE_OK);
	assert_int_equal(atomic_load(&l.w[WIN & 1].used), 7);
}

static void
test_settle(void **state)
{
	struct ks_lease l;

	(void)state;
	memset(&l, 0, sizeof(l));
	lease_grant(&l, WIN, 100, 0, NOW + 1000);
	assert_int_equal(lease_take(&l, WIN, 60, NOW), LEASE_OK);
	lease_settle(&l, WIN, -45);		/* used 15 of 60 */
	assert_int_equal(atomic_load(&l.w[WIN & 1].used), 15);
	lease_settle(&l, WIN, 90);		/* used more than it took */
	assert_int_equal(atomic_load(&l.w[WIN & 1].used), 105);
	assert_int_equal(lease_take(&l, WIN, 1, NOW), LEASE_EMPTY);
	/* a window gone: nothing to settle */
	lease_settle(&l, WIN + 2, -105);
	assert_int_equal(atomic_load(&l.w[WIN & 1].used), 105);
}

static void
test_two_windows(void **state)
{
	struct ks_lease l;

	(void)state;
	memset(&l, 0, sizeof(l));
	lease_grant(&l, WIN, 2, 0, NOW + 1000);
	lease_grant(&l, WIN + 1, 4, 0, NOW + 1000);
	assert_int_equal(lease_take(&l, WIN, 2, NOW), LEASE_OK);
	assert_int_equal(lease_take(&l, WIN + 1, 4, NOW), LEASE_OK);
	/* WIN + 2 takes WIN's slot, starting at what PostgreSQL counts */
	lease_grant(&l, WIN + 2, 10, 7, NOW + 1000);
	assert_null(lease_slot(&l, WIN));
	assert_int_equal(l.w[WIN & 1].reported, 7);
	assert_int_equal(lease_take(&l, WIN + 2, 4, NOW), LEASE_EMPTY);
	assert_int_equal(lease_take(&l, WIN + 2, 3, NOW), LEASE_OK);
	assert_int_equal(lease_take(&l, WIN + 1, 1, NOW), LEASE_EMPTY);
}

/* The tokens and budget a hold took from the leases go back at the
 * charge, replaced by what the request used. */
static void
test_charge_settles_the_leases(void **state)
{
	struct keystate	 ks;
	struct ks_hold	 h;
	int64_t		 period;
	time_t		 now = (time_t)(NOW / 1000), s, e;

	(void)state;
	memset(&ks, 0, sizeof(ks));
	period = ks_period(1, now, &s, &e);
	lease_grant(&ks.lease[LEASE_TPM], WIN, 1000, 0, NOW + 1000);
	lease_grant(&ks.lease[LEASE_BUDGET], period, 50000, 0, NOW + 1000);
	assert_int_equal(lease_take(&ks.lease[LEASE_TPM], WIN, 300, NOW),
	    LEASE_OK);
	assert_int_equal(lease_take(&ks.lease[LEASE_BUDGET], period, 20000,
	    NOW), LEASE_OK);
	memset(&h, 0, sizeof(h));
	h.tokens = 300;
	h.micro_usd = 20000;
	h.tpm_win = WIN;
	h.budget_win = period;
	atomic_store(&ks.held, 20000);
	ks_charge(&ks, &h, 0, 120, 1, 7000, 0, now);
	assert_int_equal(atomic_load(&ks.lease[LEASE_TPM].w[WIN & 1].used),
	    120);
	assert_int_equal(atomic_load(
	    &ks.lease[LEASE_BUDGET].w[period & 1].used), 7000);
	assert_int_equal(ks_held(&ks), 0);
}

/* 4 processes, 1000 takes each, on a grant of 1500: exactly 1500 go. */
static void
test_concurrent_takers_never_pass_the_grant(void **state)
{
	struct ks_lease	*l;
	int		*ok, i, j, st;
	pid_t		 pid[4];

	(void)state;
	l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	assert_true(l != MAP_FAILED);
	memset(l, 0, 4096);
	ok = (int *)(l + 1);
	lease_grant(l, WIN, 1500, 0, NOW + 1000);
	for (i = 0; i < 4; i++) {
		if ((pid[i] = fork()) == 0) {
			int n = 0;

			for (j = 0; j < 1000; j++)
				if (lease_take(l, WIN, 1, NOW) == LEASE_OK)
					n++;
			ok[i] = n;
			_exit(0);
		}
		assert_true(pid[i] > 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(ok[0] + ok[1] + ok[2] + ok[3], 1500);
	assert_int_equal(atomic_load(&l->w[WIN & 1].used), 1500);
	munmap(l, 4096);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minute),
		cmocka_unit_test(test_no_grant_no_take),
		cmocka_unit_test(test_take_up_to_the_grant),
		cmocka_unit_test(test_settle),
		cmocka_unit_test(test_two_windows),
		cmocka_unit_test(test_charge_settles_the_leases),
		cmocka_unit_test(test_concurrent_takers_never_pass_the_grant),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
