/*
 * test_counters.c - the live counters region (shm/counters.h): histogram
 * bucket placement and quantiles, summing worker blocks, the slot's new
 * owner keeping the totals, upstream names, the seqlocked text fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shm/counters.h"

static struct cnt_region *
region_new(uint32_t nslots)
{
	size_t			 sz = cnt_region_size(nslots);
	struct cnt_region	*r;

	sz = (sz + 63) & ~(size_t)63;
	r = aligned_alloc(64, sz);
	assert_non_null(r);
	cnt_region_init(r, nslots);
	return r;
}

static void
test_bucket_placement(void **state)
{
	(void)state;
	/* le semantics: a value equal to a bound falls in that bucket */
	assert_int_equal(cnt_hist_bucket(0), 0);
	assert_int_equal(cnt_hist_bucket(10), 0);
	assert_int_equal(cnt_hist_bucket(11), 1);
	assert_int_equal(cnt_hist_bucket(20), 1);
	assert_int_equal(cnt_hist_bucket(21), 2);
	assert_int_equal(cnt_hist_bucket(999), 6);
	assert_int_equal(cnt_hist_bucket(1000), 6);
	assert_int_equal(cnt_hist_bucket(1001), 7);
	assert_int_equal(cnt_hist_bucket(1000000), 15);
	assert_int_equal(cnt_hist_bucket(500000000), CNT_HIST_BOUNDS - 1);
	assert_int_equal(cnt_hist_bucket(500000001), CNT_HIST_BOUNDS);
	assert_int_equal(cnt_hist_bucket(UINT64_MAX), CNT_HIST_BOUNDS);
}

static void
test_bounds_are_log_spaced(void **state)
{
	int i;

	(void)state;
	for (i = 1; i < CNT_HIST_BOUNDS; i++) {
		assert_true(cnt_hist_bounds_us[i] > cnt_hist_bounds_us[i - 1]);
		assert_true(cnt_hist_bounds_us[i] <=
		    3 * cnt_hist_bounds_us[i - 1]);
	}
	assert_int_equal(cnt_hist_bounds_us[0], 10);
}

static void
test_observe(void **state)
{
	struct cnt_region	*r = region_new(2);
	struct cnt_worker	*w = cnt_worker(r, 0);
	struct cnt_worker_snap	 s;

	(void)state;
	cnt_hist_observe(&w->hist[CNT_H_TOTAL], -5);	/* clamped to 0 */
	cnt_hist_observe(&w->hist[CNT_H_TOTAL], 150);
	cnt_hist_observe(&w->hist[CNT_H_TOTAL], 150);
	cnt_hist_observe(&w->hist[CNT_H_TOTAL], 3000000000LL);
	cnt_worker_read(w, &s);
	assert_int_equal(s.hist[CNT_H_TOTAL].count, 4);
	assert_int_equal(s.hist[CNT_H_TOTAL].sum_us, 300 + 3000000000ULL);
	assert_int_equal(s.hist[CNT_H_TOTAL].bucket[0], 1);
	assert_int_equal(s.hist[CNT_H_TOTAL].bucket[4], 2);	/* le 200 */
	assert_int_equal(s.hist[CNT_H_TOTAL].bucket[CNT_HIST_BOUNDS], 1);
	assert_int_equal(s.hist[CNT_H_TTFB].count, 0);
	assert_null(cnt_worker(r, 2));
	free(r);
}

static void
test_sum_across_blocks(void **state)
{
	struct cnt_region	*r = region_new(4);
	struct cnt_worker_snap	 one, total;
	uint32_t		 i;

	(void)state;
	for (i = 0; i < 4; i++) {
		struct cnt_worker *w = cnt_worker(r, i);

		cnt_add(&w->requests[0][2], 10 + i);
		cnt_add(&w->requests[7][4], 1);
		cnt_add(&w->bytes_in, 100);
		cnt_add(&w->rejected[2], i);
		cnt_gauge(&w->conns, 3);
		cnt_gauge(&w->conns, -1);
		cnt_add(&w->up[5].opened, 1);
		cnt_add(&w->up[5].reused, 9);
		cnt_hist_observe(&w->hist[CNT_H_OVERHEAD], 40);
	}
	memset(&total, 0, sizeof(total));
	for (i = 0; i < 4; i++) {
		cnt_worker_read(cnt_worker(r, i), &one);
		cnt_worker_sum(&total, &one);
	}
	assert_int_equal(total.requests[0][2], 10 + 11 + 12 + 13);
	assert_int_equal(total.requests[7][4], 4);
	assert_int_equal(total.bytes_in, 400);
	assert_int_equal(total.rejected[2], 0 + 1 + 2 + 3);
	assert_int_equal(total.conns, 8);
	assert_int_equal(total.up[5].opened, 4);
	assert_int_equal(total.up[5].reused, 36);
	assert_int_equal(total.hist[CNT_H_OVERHEAD].count, 4);
	assert_int_equal(total.hist[CNT_H_OVERHEAD].bucket[2], 4);
	assert_int_equal(total.hist[CNT_H_OVERHEAD].sum_us, 160);
	free(r);
}

static void
test_new_owner_keeps_totals(void **state)
{
	struct cnt_region	*r = region_new(2);
	struct cnt_worker	*w = cnt_worker(r, 1);
	struct cnt_worker_snap	 s;

	(void)state;
	cnt_add(&w->requests[1][2], 5);
	cnt_gauge(&w->conns, 7);
	cnt_gauge(&w->streams, 2);
	/* the worker was SIGKILLed with 7 connections open; a new one */
	cnt_worker_begin(w);
	cnt_add(&w->requests[1][2], 1);
	cnt_worker_read(w, &s);
	assert_int_equal(s.requests[1][2], 6);
	assert_int_equal(s.conns, 0);
	assert_int_equal(s.streams, 0);
	free(r);
}

static void
test_quantile(void **state)
{
	uint64_t	 b[CNT_HIST_BUCKETS];
	double		 q;

	(void)state;
	memset(b, 0, sizeof(b));
	assert_true(cnt_hist_quantile(b, 0.5) < 0);
	/* 100 values in (100, 200]: the median interpolates to 150 */
	b[4] = 100;
	q = cnt_hist_quantile(b, 0.5);
	assert_true(q > 149.9 && q < 150.1);
	q = cnt_hist_quantile(b, 0.99);
	assert_true(q > 198.9 && q < 199.1);
	/* one slow outlier in +Inf: p99 stays, p100 is the last bound */
	b[CNT_HIST_BOUNDS] = 1;
	q = cnt_hist_quantile(b, 0.99);
	assert_true(q <= 200.0);
	q = cnt_hist_quantile(b, 1.0);
	assert_true(q == (double)cnt_hist_bounds_us[CNT_HIST_BOUNDS - 1]);
	/* the first bucket interpolates from 0 */
	memset(b, 0, sizeof(b));
	b[0] = 10;
	q = cnt_hist_quantile(b, 0.5);
	assert_true(q > 4.9 && q < 5.1);
}

static void
test_upstream_names(void **state)
{
	struct cnt_region	*r = region_new(2);
	char			 name[32];
	int			 i;

	(void)state;
	assert_int_equal(cnt_upstream_register(r, "openai"), 0);
	assert_int_equal(cnt_upstream_register(r, "anthropic"), 1);
	/* a reload naming it again keeps its index */
	assert_int_equal(cnt_upstream_register(r, "openai"), 0);
	assert_int_equal(cnt_upstream_find(r, "anthropic"), 1);
	assert_int_equal(cnt_upstream_find(r, "vllm"), -1);
	for (i = 2; i < CNT_UPSTREAMS_MAX; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		assert_int_equal(cnt_upstream_register(r, name), i);
	}
	assert_int_equal(cnt_upstream_register(r, "one-too-many"), -1);
	assert_int_equal(cnt_upstream_count(r), CNT_UPSTREAMS_MAX);
	free(r);
}

static void
test_text_and_reload(void **state)
{
	struct cnt_region	*r = region_new(2);
	char			 buf[CNT_TEXT_WORDS * 8 + 1], big[600];

	(void)state;
	cnt_text_get(&r->master.reload_msg, buf, sizeof(buf));
	assert_string_equal(buf, "");
	cnt_master_reload(r, 0, "reload failed: x.conf:3: bad", 1);
	cnt_master_reload(r, 1, "reloaded: generation 2", 2);
	assert_int_equal(cnt_get(&r->master.reloads_ok), 1);
	assert_int_equal(cnt_get(&r->master.reloads_failed), 1);
	cnt_text_get(&r->master.reload_msg, buf, sizeof(buf));
	assert_string_equal(buf, "reloaded: generation 2");
	/* long text is cut to 255 bytes, always terminated */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cnt_text_set(&r->collector.last_error, big);
	cnt_text_get(&r->collector.last_error, buf, sizeof(buf));
	assert_int_equal(strlen(buf), CNT_TEXT_WORDS * 8 - 1);
	/* a small buffer gets a prefix */
	cnt_text_get(&r->master.reload_msg, buf, 9);
	assert_string_equal(buf, "reloaded");
	free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_placement),
		cmocka_unit_test(test_bounds_are_log_spaced),
		cmocka_unit_test(test_observe),
		cmocka_unit_test(test_sum_across_blocks),
		cmocka_unit_test(test_new_owner_keeps_totals),
		cmocka_unit_test(test_quantile),
		cmocka_unit_test(test_upstream_names),
		cmocka_unit_test(test_text_and_reload),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
