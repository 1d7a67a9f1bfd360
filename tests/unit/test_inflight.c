/*
 * test_inflight.c - the in-flight table: one table per worker slot, laid
 * out in the region the master reserves, entries on their own cache
 * lines, and an entry that outlives the process that wrote it (the point:
 * the master reads what a SIGKILLed worker left), tells whether its
 * event was pushed before the death, and a slot's table that grows for
 * a reload while the other slots keep theirs.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm/inflight.h"
#include "shm/ring.h"
#include "shm/shm.h"

/* A region a forked child shares, as the master's segment is. */
static struct inflight_region *
shared_region(size_t size, uint32_t nslots, uint32_t per)
{
	struct inflight_region	*rg;

	rg = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	assert_true(rg != MAP_FAILED);
	inflight_init(rg, nslots, per);
	return rg;
}

static void
test_tables_are_per_slot_and_disjoint(void **state)
{
	struct shm_region_req	 req = { "inflight", 0 };
	struct shm_segment	*shm;
	struct inflight_region	*rg;
	struct inflight_entry	*t0, *t1;
	uint32_t		 n = 0;
	size_t			 size;

	(void)state;
	req.size = inflight_size(4, 16);
	assert_true(req.size >= 4 * 16 * sizeof(struct inflight_entry));
	shm = shm_create_regions(4, 8, &req, 1);
	assert_non_null(shm);
	rg = shm_region(shm, "inflight", &size);
	assert_non_null(rg);
	assert_true(size >= req.size);
	inflight_init(rg, 4, 16);
	t0 = inflight_table(rg, 0, &n);
	assert_int_equal(n, 16);
	t1 = inflight_table(rg, 1, NULL);
	assert_ptr_equal(t1, t0 + 16);
	assert_int_equal((uintptr_t)t1 % 64, 0);
	assert_null(inflight_table(rg, 4, &n));
	assert_null(inflight_table(NULL, 0, &n));
	assert_false(inflight_live(&t1[15]));
	inflight_begin(&t1[15]);
	assert_true(inflight_live(&t1[15]));
	assert_false(inflight_live(&t0[15]));
	shm_destroy(shm);
}

static void
test_a_killed_writer_leaves_its_live_entry(void **state)
{
	struct inflight_region	*rg;
	struct inflight_entry	*t;
	size_t			 size = inflight_size(2, 4);
	pid_t			 pid;
	int			 status;

	(void)state;
	rg = shared_region(size, 2, 4);
	t = inflight_table(rg, 1, NULL);
	if ((pid = fork()) == 0) {
		t[2].ev.bytes_in = 1234;
		t[2].text_bytes = 56;
		inflight_begin(&t[2]);
		t[3].ev.bytes_in = 1;
		inflight_begin(&t[3]);
		inflight_end(&t[3]);	/* pushed, then ended */
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_true(inflight_live(&t[2]));
	assert_int_equal(t[2].ev.bytes_in, 1234);
	assert_int_equal(t[2].text_bytes, 56);
	assert_false(inflight_live(&t[3]));
	assert_int_equal(t[3].ev.bytes_in, 0);
	inflight_end(&t[2]);
	assert_false(inflight_live(&t[2]));
	assert_int_equal(t[2].text_bytes, 0);
	munmap(rg, size);
}

static void
test_a_push_before_the_death_is_not_pushed_again(void **state)
{
	struct inflight_region	*rg;
	struct inflight_entry	*t;
	struct ring_lane	*lane;
	size_t			 size = inflight_size(1, 4);
	size_t			 lsize = ring_lane_size(2);
	uint64_t		 attempts;
	pid_t			 pid;
	int			 status;

	(void)state;
	rg = shared_region(size, 1, 4);
	lane = mmap(NULL, lsize, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	assert_true(lane != MAP_FAILED);
	ring_lane_init(lane, 2, -1);
	t = inflight_table(rg, 0, NULL);
	if ((pid = fork()) == 0) {
		/* 0: under way; 1: pushed, died before the end */
		inflight_begin(&t[0]);
		inflight_begin(&t[1]);
		t[1].ev.bytes_in = 11;
		inflight_pushing(&t[1], lane);
		ring_push(lane, &t[1].ev);
		/* 3: pushed into a full lane (a drop) */
		ring_push(lane, &t[0].ev);
		inflight_begin(&t[3]);
		inflight_pushing(&t[3], lane);
		assert_int_equal(ring_push(lane, &t[3].ev), -1);
		/* 2: about to push, died first */
		inflight_begin(&t[2]);
		inflight_pushing(&t[2], lane);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	attempts = ring_attempts(lane);
	assert_int_equal(attempts, 3);		/* 2 published, 1 dropped */
	assert_true(inflight_unpushed(&t[0], attempts));
	assert_false(inflight_unpushed(&t[1], attempts));
	assert_true(inflight_live(&t[1]));
	assert_true(inflight_unpushed(&t[2], attempts));
	assert_false(inflight_unpushed(&t[3], attempts));
	inflight_end(&t[1]);
	assert_false(inflight_unpushed(&t[1], attempts));
	munmap(lane, lsize);
	munmap(rg, size);
}

static void
test_a_slot_grows_alone_and_its_forks_share_it(void **state)
{
	struct inflight_region	*rg;
	struct inflight_entry	*t0, *t1, *g;
	size_t			 size = inflight_size(2, 4);
	uint32_t		 n = 0, i;
	pid_t			 pid;
	int			 status;

	(void)state;
	rg = shared_region(size, 2, 4);
	t0 = inflight_table(rg, 0, NULL);
	t1 = inflight_table(rg, 1, NULL);
	inflight_begin(&t0[3]);
	assert_int_equal(inflight_grow(rg, 1, 4), 0);	/* big enough */
	assert_ptr_equal(inflight_table(rg, 1, NULL), t1);
	assert_int_equal(inflight_grow(rg, 1, 1000), 0);
	g = inflight_table(rg, 1, &n);
	assert_int_equal(n, 1000);
	assert_true(g != t1);
	for (i = 0; i < n; i++)
		assert_false(inflight_live(&g[i]));
	assert_ptr_equal(inflight_table(rg, 0, &n), t0);
	assert_int_equal(n, 4);
	assert_true(inflight_live(&t0[3]));
	assert_int_equal(inflight_grow(rg, 2, 1000), -1);	/* no slot 2 */
	/* a worker forked afterwards writes where the master reads */
	if ((pid = fork()) == 0) {
		g[999].ev.bytes_in = 77;
		inflight_begin(&g[999]);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(inflight_live(&g[999]));
	assert_int_equal(g[999].ev.bytes_in, 77);
	/* and grows again past the mapping of its own */
	assert_int_equal(inflight_grow(rg, 1, 2000), 0);
	assert_false(inflight_live(&inflight_table(rg, 1, &n)[999]));
	assert_int_equal(n, 2000);
	munmap(rg, size);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables_are_per_slot_and_disjoint),
		cmocka_unit_test(test_a_killed_writer_leaves_its_live_entry),
		cmocka_unit_test(test_a_push_before_the_death_is_not_pushed_again),
		cmocka_unit_test(test_a_slot_grows_alone_and_its_forks_share_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
