/*
 * test_confparse.c - the value parsers under every directive of
 * sluice.conf and keys.conf (and sluicectl key new --budget).
 *
 * A duration, a size or a price that parses wrong is a timeout, a body
 * limit or a bill that is off by a factor; one that overflows is worse.
 * Each parser is checked at its edges: the largest value that fits, the
 * first that does not, and that *out is left alone on an error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/confparse.h"

static void
test_parse_duration(void **state)
{
	int	 ms = -7;

	(void)state;
	assert_int_equal(cp_parse_duration_ms("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(cp_parse_duration_ms("5s", &ms), 0);
	assert_int_equal(ms, 5000);
	assert_int_equal(cp_parse_duration_ms("2m", &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(cp_parse_duration_ms("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(cp_parse_duration_ms("30", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(cp_parse_duration_ms("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(cp_parse_duration_ms("2147483647ms", &ms), 0);
	assert_int_equal(ms, 2147483647);

	ms = -7;
	assert_int_equal(cp_parse_duration_ms("2147483648ms", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("2147484s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("597h", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("99999999999999999999", &ms),
	    -1);
	assert_int_equal(cp_parse_duration_ms("", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("-5s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms(" 5s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("5 s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("5d", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("5sec", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("1m30s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms("1.5s", &ms), -1);
	assert_int_equal(cp_parse_duration_ms(NULL, &ms), -1);
	assert_int_equal(ms, -7);		/* untouched on error */
}

static void
test_parse_size(void **state)
{
	size_t	 sz = 7;

	(void)state;
	assert_int_equal(cp_parse_size("512", &sz), 0);
	assert_int_equal(sz, 512);
	assert_int_equal(cp_parse_size("16k", &sz), 0);
	assert_int_equal(sz, 16384);
	assert_int_equal(cp_parse_size("16K", &sz), 0);
	assert_int_equal(sz, 16384);
	assert_int_equal(cp_parse_size("8m", &sz), 0);
	assert_int_equal(sz, 8 * 1024 * 1024);
	assert_int_equal(cp_parse_size("1g", &sz), 0);
	assert_int_equal(sz, 1024 * 1024 * 1024);
	assert_int_equal(cp_parse_size("0", &sz), 0);
	assert_int_equal(sz, 0);
	assert_int_equal(cp_parse_size("18446744073709551615", &sz), 0);
	assert_true(sz == SIZE_MAX);

	sz = 7;
	assert_int_equal(cp_parse_size("18446744073709551616", &sz), -1);
	assert_int_equal(cp_parse_size("17179869184g", &sz), -1);
	assert_int_equal(cp_parse_size("", &sz), -1);
	assert_int_equal(cp_parse_size("k", &sz), -1);
	assert_int_equal(cp_parse_size("-1", &sz), -1);
	assert_int_equal(cp_parse_size("16kb", &sz), -1);
	assert_int_equal(cp_parse_size("16t", &sz), -1);
	assert_int_equal(cp_parse_size("1.5m", &sz), -1);
	assert_int_equal(cp_parse_size(NULL, &sz), -1);
	assert_int_equal(sz, 7);
}

static void
test_parse_usd(void **state)
{
	int64_t	 v = 7;

	(void)state;
	assert_int_equal(cp_parse_usd_micro("0.15", &v), 0);
	assert_int_equal(v, 150000);
	assert_int_equal(cp_parse_usd_micro("2.50", &v), 0);
	assert_int_equal(v, 2500000);
	assert_int_equal(cp_parse_usd_micro("10", &v), 0);
	assert_int_equal(v, 10000000);
	assert_int_equal(cp_parse_usd_micro("0.075", &v), 0);
	assert_int_equal(v, 75000);
	assert_int_equal(cp_parse_usd_micro("0.000001", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(cp_parse_usd_micro("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cp_parse_usd_micro("007.5", &v), 0);
	assert_int_equal(v, 7500000);
	/* INT64_MAX micro-USD exactly */
	assert_int_equal(cp_parse_usd_micro("9223372036854.775807", &v), 0);
	assert_true(v == INT64_MAX);

	v = 7;
	assert_int_equal(cp_parse_usd_micro("9223372036854.775808", &v), -1);
	assert_int_equal(cp_parse_usd_micro("9223372036855", &v), -1);
	assert_int_equal(cp_parse_usd_micro("99999999999999999999", &v), -1);
	assert_int_equal(cp_parse_usd_micro("0.1234567", &v), -1);
	assert_int_equal(cp_parse_usd_micro("", &v), -1);
	assert_int_equal(cp_parse_usd_micro(".5", &v), -1);
	assert_int_equal(cp_parse_usd_micro("5.", &v), -1);
	assert_int_equal(cp_parse_usd_micro("-1", &v), -1);
	assert_int_equal(cp_parse_usd_micro("+1", &v), -1);
	assert_int_equal(cp_parse_usd_micro("1e3", &v), -1);
	assert_int_equal(cp_parse_usd_micro("1.2.3", &v), -1);
	assert_int_equal(cp_parse_usd_micro("$1", &v), -1);
	assert_int_equal(cp_parse_usd_micro("1,5", &v), -1);
	assert_int_equal(cp_parse_usd_micro(NULL, &v), -1);
	assert_int_equal(v, 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_usd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
