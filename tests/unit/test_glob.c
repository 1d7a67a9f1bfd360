/*
 * test_glob.c - the model-name wildcard match.
 *
 * Routing, prices and per-key model lists all go through glob_match(), so
 * a wrong answer sends a request to the wrong upstream or bills it wrong.
 * Besides the ordinary cases, one test feeds a pattern of many stars
 * against a long non-matching string: a recursive matcher takes
 * exponential time there, the backtracking loop must finish at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/glob.h"

static int
m(const char *pat, const char *s)
{
	return glob_match(pat, s, strlen(s));
}

static void
test_empty_pattern(void **state)
{
	(void)state;
	assert_int_equal(m("", ""), 1);
	assert_int_equal(m("", "a"), 0);
	assert_int_equal(glob_match("", NULL, 0), 1);
}

static void
test_star_alone(void **state)
{
	(void)state;
	assert_int_equal(m("*", ""), 1);
	assert_int_equal(m("*", "gpt-4o"), 1);
	assert_int_equal(m("**", "x"), 1);
	assert_int_equal(m("***", ""), 1);
}

static void
test_literal(void **state)
{
	(void)state;
	assert_int_equal(m("gpt-4o", "gpt-4o"), 1);
	assert_int_equal(m("gpt-4o", "gpt-4o-mini"), 0);
	assert_int_equal(m("gpt-4o-mini", "gpt-4o"), 0);
	assert_int_equal(m("gpt-4o", "GPT-4o"), 0);
	assert_int_equal(m("abc", ""), 0);
}

static void
test_prefix_star(void **state)
{
	(void)state;
	assert_int_equal(m("gpt-*", "gpt-4o-mini"), 1);
	assert_int_equal(m("gpt-*", "gpt-"), 1);
	assert_int_equal(m("gpt-*", "gpt"), 0);
	assert_int_equal(m("gpt-*", "claude-3"), 0);
	assert_int_equal(m("gpt-*", "xgpt-4"), 0);
	assert_int_equal(m("*-mini", "gpt-4o-mini"), 1);
	assert_int_equal(m("*-mini", "gpt-4o-minix"), 0);
}

static void
test_question(void **state)
{
	(void)state;
	assert_int_equal(m("?", "a"), 1);
	assert_int_equal(m("?", ""), 0);
	assert_int_equal(m("?", "ab"), 0);
	assert_int_equal(m("gpt-?o", "gpt-4o"), 1);
	assert_int_equal(m("gpt-?o", "gpt-4"), 0);
	assert_int_equal(m("?*", ""), 0);
	assert_int_equal(m("*?", "a"), 1);
	assert_int_equal(m("a?c", "abc"), 1);
	assert_int_equal(m("a?c", "ac"), 0);
}

static void
test_several_stars(void **state)
{
	(void)state;
	assert_int_equal(m("a*b*c", "abc"), 1);
	assert_int_equal(m("a*b*c", "axxbyyc"), 1);
	assert_int_equal(m("a*b*c", "abcbc"), 1);
	assert_int_equal(m("a*b*c", "acb"), 0);
	assert_int_equal(m("a*b*c", "abcx"), 0);
	assert_int_equal(m("*b*", "abc"), 1);
	assert_int_equal(m("*b*", "ac"), 0);
	/* a star must backtrack past a partial match of what follows it */
	assert_int_equal(m("*aab", "aaaab"), 1);
	assert_int_equal(m("a*ab", "aaab"), 1);
}

static void
test_pattern_longer_than_string(void **state)
{
	(void)state;
	assert_int_equal(m("gpt-4o-mini-2024", "gpt-4o"), 0);
	assert_int_equal(m("abc*", "ab"), 0);
	assert_int_equal(m("a*b*c*d", "abc"), 0);
}

static void
test_length_not_nul(void **state)
{
	const char	*s = "gpt-4o-mini";

	(void)state;
	/* only LEN bytes count: "gpt-4o" */
	assert_int_equal(glob_match("gpt-4o", s, 6), 1);
	assert_int_equal(glob_match("gpt-4o-mini", s, 6), 0);
	assert_int_equal(glob_match("*mini", s, 6), 0);
	/* a NUL inside the string is just a byte */
	assert_int_equal(glob_match("a?b", "a\0b", 3), 1);
	assert_int_equal(glob_match("ab", "a\0b", 3), 0);
}

static void
test_many_stars_no_blowup(void **state)
{
	char		 pat[64], str[4096];
	struct timespec	 t0, t1;
	double		 secs;
	size_t		 i;

	(void)state;
	/* "a*a*a*...*a*b" against "aaaa...a": exponential if recursive */
	for (i = 0; i < 30; i++) {
		pat[2 * i] = 'a';
		pat[2 * i + 1] = '*';
	}
	pat[60] = 'b';
	pat[61] = '\0';
	memset(str, 'a', sizeof(str));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(glob_match(pat, str, sizeof(str)), 0);
	str[sizeof(str) - 1] = 'b';
	assert_int_equal(glob_match(pat, str, sizeof(str)), 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs < 1.0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_pattern),
		cmocka_unit_test(test_star_alone),
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_prefix_star),
		cmocka_unit_test(test_question),
		cmocka_unit_test(test_several_stars),
		cmocka_unit_test(test_pattern_longer_than_string),
		cmocka_unit_test(test_length_not_nul),
		cmocka_unit_test(test_many_stars_no_blowup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
