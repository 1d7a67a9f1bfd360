/*
 * test_json_scan.c - the top-level member scanner used on request bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json_scan.h"

/* Scan S from an exact-size heap copy (ASan catches any over-read). */
static int
scan(const char *s, struct json_field *f, int n)
{
	size_t	 len = strlen(s);
	char	*b = malloc(len ? len : 1);
	int	 rc;

	assert_non_null(b);
	memcpy(b, s, len);
	rc = json_scan_top(b, len, f, n);
	free(b);
	return rc;
}

static void
test_finds_members_and_skips_the_rest(void **state)
{
	const char *js = " {\"messages\":[{\"role\":\"user\",\"content\":"
	    "\"a \\\"model\\\": \\\\\"},{\"model\":\"nested\"}],"
	    "\"model\" : \"gpt-4o-mini\",\"stream\":true,"
	    "\"stream_options\":{\"include_usage\":false},\"n\":-1.5e3} \n";
	struct json_field f[4] = { { .key = "model" }, { .key = "stream" },
	    { .key = "stream_options" }, { .key = "absent" } };

	(void)state;
	assert_int_equal(scan(js, f, 4), 0);
	assert_int_equal(f[0].type, JV_STRING);
	assert_int_equal(f[0].count, 1);
	assert_int_equal(f[0].end - f[0].start, 11);
	assert_memory_equal(js + f[0].start, "gpt-4o-mini", 11);
	assert_int_equal(f[1].type, JV_TRUE);
	assert_int_equal(f[2].type, JV_OBJECT);
	assert_int_equal(js[f[2].start], '{');
	assert_int_equal(js[f[2].end - 1], '}');
	assert_int_equal(f[3].type, JV_NONE);
	assert_int_equal(f[3].count, 0);
}

static void
test_counts_duplicates_and_keeps_the_first(void **state)
{
	const char *js = "{\"model\":\"a\",\"model\":\"bb\"}";
	struct json_field f[1] = { { .key = "model" } };

	(void)state;
	assert_int_equal(scan(js, f, 1), 0);
	assert_int_equal(f[0].count, 2);
	assert_int_equal(f[0].end - f[0].start, 1);
}

static void
test_value_types(void **state)
{
	struct json_field f[1] = { { .key = "v" } };
	static const struct {
		const char	*js;
		enum json_vtype	 t;
	} c[] = {
		{ "{\"v\":false}", JV_FALSE }, { "{\"v\":null}", JV_NULL },
		{ "{\"v\":12}", JV_NUMBER }, { "{\"v\":[1,{}]}", JV_ARRAY },
		{ "{\"v\":\"\"}", JV_STRING }, { "{}", JV_NONE },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		assert_int_equal(scan(c[i].js, f, 1), 0);
		assert_int_equal(f[0].type, c[i].t);
	}
}

static void
test_rejects_what_is_not_one_object(void **state)
{
	static const char *const bad[] = {
		"", "   ", "[]", "\"x\"", "{", "{\"a\":1", "{\"a\":1}x",
		"{\"a\":1}{\"b\":2}", "{\"a\" 1}", "{a:1}", "{\"a\":}",
		"{\"a\":1,}", "{\"a\":\"unterminated}", "{\"a\":[1,2}",
		"{\"a\":{\"b\":1]}", "{\"a\":tru}", "{\"a\":1 \"b\":2}",
		"{\"a\":\"\\\"}",
	};
	struct json_field f[1] = { { .key = "a" } };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan(bad[i], f, 1) != -1)
			fail_msg("accepted: %s", bad[i]);
}

static void
test_depth_is_bounded(void **state)
{
	size_t	 n = JSON_SCAN_MAX_DEPTH + 1, i;
	char	*b = malloc(2 * n + 8);
	struct json_field f[1] = { { .key = "a" } };
	size_t	 len = 0;

	(void)state;
	assert_non_null(b);
	memcpy(b, "{\"a\":", 5);
	len = 5;
	for (i = 0; i < n; i++)
		b[len++] = '[';
	for (i = 0; i < n; i++)
		b[len++] = ']';
	b[len++] = '}';
	assert_int_equal(json_scan_top(b, len, f, 1), -1);
	/* one level less is fine */
	memmove(b + 5, b + 6, len - 6);
	len--;
	memmove(b + 5 + n - 1, b + 5 + n, len - 5 - n);
	len--;
	assert_int_equal(json_scan_top(b, len, f, 1), 0);
	assert_int_equal(f[0].type, JV_ARRAY);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_finds_members_and_skips_the_rest),
		cmocka_unit_test(test_counts_duplicates_and_keeps_the_first),
		cmocka_unit_test(test_value_types),
		cmocka_unit_test(test_rejects_what_is_not_one_object),
		cmocka_unit_test(test_depth_is_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
