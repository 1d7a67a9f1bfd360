/*
 * test_userstate.c - end users' budget slots: found by tag, claimed once
 * even when several processes ask for a new user at the same moment,
 * taken over only when their period is over and they hold nothing, and
 * refused when every probed slot is in use.
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

#include "shm/userstate.h"

#define DAY	86400
#define NOW	((time_t)1700000000)

static struct userstate_table *
table(uint32_t n)
{
	struct userstate_table *t = mmap(NULL, userstate_size(n),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(t != MAP_FAILED);
	userstate_init(t, n);
	return t;
}

static void
test_get_find_and_separate_users(void **state)
{
	struct userstate_table	*t = table(64);
	struct keystate		*a, *b;
	uint64_t		 ta = userstate_tag("app", "u1");
	uint64_t		 tb = userstate_tag("app", "u2");
	time_t			 s, e;

	(void)state;
	assert_true(ta > 1 && tb > 1 && ta != tb);
	assert_true(userstate_tag("ap", "pu1") != ta);	/* the separator */
	assert_null(userstate_find(t, ta));
	a = userstate_get(t, ta, 1, NOW);
	assert_non_null(a);
	assert_ptr_equal(userstate_find(t, ta), a);
	assert_ptr_equal(userstate_get(t, ta, 1, NOW), a);
	b = userstate_get(t, tb, 1, NOW);
	assert_non_null(b);
	assert_true(a != b);
	ks_spend_add(a, ks_period(1, NOW, &s, &e), 500);
	assert_int_equal(ks_spend(b, ks_period(1, NOW, &s, &e)), 0);
	munmap(t, userstate_size(64));
}

static void
test_slots_are_taken_over_only_when_spent_and_idle(void **state)
{
	struct userstate_table	*t = table(8);
	struct keystate		*ks[8];
	time_t			 s, e;
	int64_t			 today = ks_period(1, NOW, &s, &e);
	int			 i;

	(void)state;
	for (i = 0; i < 8; i++) {
		ks[i] = userstate_get(t, (uint64_t)(100 + i * 8), 1, NOW);
		assert_non_null(ks[i]);
		ks_spend_add(ks[i], today, 1);	/* of today */
	}
	/* all 8 slots hold users of today: a ninth gets none */
	assert_null(userstate_get(t, 100 + 64, 1, NOW));
	/* tomorrow, an idle one is taken over, clean */
	assert_int_equal(ks_budget_hold(ks[3], today, 100, 10), 0);
	ks[0] = userstate_get(t, 100 + 64, 1, NOW + DAY);
	assert_non_null(ks[0]);
	assert_int_equal(ks_held(ks[0]), 0);
	assert_int_equal(ks_spend(ks[0], today + 1), 0);
	/* the one holding something stays its user's */
	assert_non_null(userstate_find(t, 100 + 3 * 8));
	munmap(t, userstate_size(8));
}

#define NPROC	4

static void
test_one_slot_for_a_new_user_asked_for_at_once(void **state)
{
	struct userstate_table	*t = table(1024);
	_Atomic int		*go;
	pid_t			 pids[NPROC];
	int			 i, status, round, n;
	uint32_t		 j;
	uint64_t		 tag;

	(void)state;
	go = mmap(NULL, sizeof(*go), PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	assert_true(go != MAP_FAILED);
	for (round = 0; round < 20; round++) {
		atomic_store(go, 0);
		for (i = 0; i < NPROC; i++) {
			if ((pids[i] = fork()) == 0) {
				while (!atomic_load(go))
					;
				_exit(userstate_get(t, 5000 + (uint64_t)round,
				    1, NOW) == NULL);
			}
		}
		atomic_store(go, 1);
		for (i = 0; i < NPROC; i++) {
			assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
			assert_true(WIFEXITED(status) &&
			    WEXITSTATUS(status) == 0);
		}
		for (j = 0, n = 0; j < t->nslots; j++) {
			userstate_at(t, j, &tag);
			n += tag == 5000 + (uint64_t)round;
		}
		assert_int_equal(n, 1);
	}
	munmap((void *)go, sizeof(*go));
	munmap(t, userstate_size(1024));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_find_and_separate_users),
		cmocka_unit_test(test_slots_are_taken_over_only_when_spent_and_idle),
		cmocka_unit_test(test_one_slot_for_a_new_user_asked_for_at_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
