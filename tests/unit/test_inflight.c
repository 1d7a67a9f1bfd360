/*
 * test_inflight.c - the in-flight table: one table per worker slot, laid
 * out in the region the master reserves, entries on their own cache
 * lines, and an entry that outlives the process that wrote it (the point:
 * the master reads what a SIGKILLed worker left).
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
#include "shm/shm.h"

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
	rg = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	assert_true(rg != MAP_FAILED);
	inflight_init(rg, 2, 4);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables_are_per_slot_and_disjoint),
		cmocka_unit_test(test_a_killed_writer_leaves_its_live_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
