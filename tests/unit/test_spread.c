/*
 * test_spread.c - whose turn it is to accept (shm/spread.c).
 *
 * The rule: a worker takes a connection when it holds fewer than the
 * average of the listening workers, or when all hold as many and it
 * accepted least recently.  The properties the design rests on: some
 * listening worker always has the turn; a simulated burst ends evenly
 * whichever worker looks first; a waiting worker is kicked through its
 * eventfd by the next change, and never misses a turn that came while it
 * decided to wait.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm/spread.h"

#define NSLOTS	8

static struct spread_region *
region(void)
{
	struct spread_region *r;

	/* as in the segment: on a 64-byte line */
	r = aligned_alloc(64, (spread_size(NSLOTS) + 63) & ~(size_t)63);
	assert_non_null(r);
	memset(r, 0, spread_size(NSLOTS));
	spread_init(r, NSLOTS);
	return r;
}

static void
region_free(struct spread_region *r)
{
	uint32_t	 i;

	for (i = 0; i < r->nslots; i++)
		if (r->s[i].kick_fd != -1)
			close(r->s[i].kick_fd);
	free(r);
}

static int
readable(int fd)
{
	struct pollfd	 p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 1;
}

static void
test_single_worker_always_has_the_turn(void **state)
{
	struct spread_region *r = region();

	spread_set(r, 3, 1, 0, 0);
	assert_true(spread_turn(r, 3));
	spread_set(r, 3, 1, 500, 77);
	assert_true(spread_turn(r, 3));
	region_free(r);
}

static void
test_fewer_than_average_takes_it(void **state)
{
	struct spread_region *r = region();

	spread_set(r, 0, 1, 3, 10);
	spread_set(r, 1, 1, 1, 20);
	spread_set(r, 2, 1, 2, 30);
	assert_false(spread_turn(r, 0));	/* 3 > 2 */
	assert_true(spread_turn(r, 1));		/* 1 < 2 */
	assert_false(spread_turn(r, 2));	/* at the average, not all even */
	/* a slot that does not listen does not count, however many it holds */
	spread_set(r, 5, 0, 0, 0);
	assert_false(spread_turn(r, 0));
	spread_set(r, 5, 0, 100, 0);
	assert_true(spread_turn(r, 1));
	region_free(r);
}

static void
test_all_even_least_recent_first(void **state)
{
	struct spread_region *r = region();

	spread_set(r, 0, 1, 2, 300);
	spread_set(r, 1, 1, 2, 100);
	spread_set(r, 2, 1, 2, 200);
	assert_false(spread_turn(r, 0));
	assert_true(spread_turn(r, 1));
	assert_false(spread_turn(r, 2));
	/* never accepted: both at 0, the lower slot first */
	spread_set(r, 0, 1, 0, 0);
	spread_set(r, 1, 0, 0, 0);
	spread_set(r, 2, 0, 0, 0);
	spread_set(r, 4, 1, 0, 0);
	r->s[0].last_us = 0;
	assert_true(spread_turn(r, 0));
	assert_false(spread_turn(r, 4));
	region_free(r);
}

/*
 * Every state of 4 workers holding 0..3 connections, with distinct
 * accept times: exactly one has the turn when all are even, at least one
 * otherwise.
 */
static void
test_someone_always_has_the_turn(void **state)
{
	struct spread_region *r = region();
	int	 c[4], k, i, turns, even;

	for (k = 0; k < 256; k++) {
		for (i = 0; i < 4; i++) {
			c[i] = (k >> (2 * i)) & 3;
			spread_set(r, (uint32_t)i, 1, c[i], 1000 + ((k + i) % 4));
		}
		turns = 0;
		even = c[0] == c[1] && c[1] == c[2] && c[2] == c[3];
		for (i = 0; i < 4; i++)
			turns += spread_turn(r, (uint32_t)i);
		if (even)
			assert_int_equal(turns, 1);
		else
			assert_true(turns >= 1);
	}
	region_free(r);
}

/*
 * A burst of 4 * 8 + 3 connections accepted one by one, the worker that
 * looks first changing in a fixed but unfair pattern (slot 0 looks three
 * times as often): every worker ends with 8 or 9.
 */
static void
test_burst_ends_even_whoever_looks_first(void **state)
{
	struct spread_region *r = region();
	int	 held[4] = { 0 }, got = 0, look, i, w;
	int64_t	 t = 1;

	for (i = 0; i < 4; i++)
		spread_set(r, (uint32_t)i, 1, 0, 0);
	for (look = 0; got < 35 && look < 10000; look++) {
		w = look % 6 < 3 ? 0 : look % 6 - 2;
		if (!spread_turn(r, (uint32_t)w))
			continue;
		held[w]++;
		got++;
		spread_set(r, (uint32_t)w, 1, held[w], t++);
	}
	assert_int_equal(got, 35);
	for (i = 0; i < 4; i++)
		assert_true(held[i] == 8 || held[i] == 9);
	region_free(r);
}

static void
test_waiting_worker_is_kicked_by_the_next_change(void **state)
{
	struct spread_region *r = region();
	int	 fd;

	spread_set(r, 0, 1, 1, 10);
	spread_set(r, 1, 1, 0, 20);
	fd = spread_kick_fd(r, 0);
	assert_true(fd != -1);
	/* slot 0 holds more: it waits, its flag up */
	assert_int_equal(spread_wait(r, 0), 0);
	assert_int_equal(r->s[0].waiting, 1);
	assert_false(readable(fd));
	/* slot 1 accepts: now even, and 0 accepted least recently */
	spread_set(r, 1, 1, 1, 30);
	assert_true(readable(fd));
	assert_int_equal(r->s[0].waiting, 0);
	spread_kick_drain(r, 0);
	assert_false(readable(fd));
	assert_int_equal(spread_wait(r, 0), 1);
	assert_int_equal(r->s[0].waiting, 0);
	/* a kick only for who waits, once */
	spread_set(r, 1, 1, 2, 40);
	assert_false(readable(fd));
	region_free(r);
}

static void
test_turn_that_came_before_the_wait_is_not_missed(void **state)
{
	struct spread_region *r = region();

	spread_set(r, 0, 1, 2, 10);
	spread_set(r, 1, 1, 0, 20);
	assert_false(spread_turn(r, 0));
	/* between the "no" and the wait, slot 1 catches up */
	spread_set(r, 1, 1, 2, 30);
	assert_int_equal(spread_wait(r, 0), 1);
	assert_int_equal(r->s[0].waiting, 0);
	region_free(r);
}

static void
test_a_dead_worker_is_cleared_and_the_waiters_kicked(void **state)
{
	struct spread_region *r = region();

	spread_set(r, 0, 1, 1, 10);
	spread_set(r, 1, 1, 1, 5);
	/* slot 1 accepted least recently: slot 0 waits */
	assert_int_equal(spread_wait(r, 0), 0);
	spread_clear(r, 1);
	assert_int_equal(r->s[1].listening, 0);
	assert_true(readable(spread_kick_fd(r, 0)));
	assert_int_equal(spread_wait(r, 0), 1);
	region_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_worker_always_has_the_turn),
		cmocka_unit_test(test_fewer_than_average_takes_it),
		cmocka_unit_test(test_all_even_least_recent_first),
		cmocka_unit_test(test_someone_always_has_the_turn),
		cmocka_unit_test(test_burst_ends_even_whoever_looks_first),
		cmocka_unit_test(test_waiting_worker_is_kicked_by_the_next_change),
		cmocka_unit_test(test_turn_that_came_before_the_wait_is_not_missed),
		cmocka_unit_test(test_a_dead_worker_is_cleared_and_the_waiters_kicked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
