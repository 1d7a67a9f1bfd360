/*
 * test_json.c - the jsmn wrapper the worker reads request and response
 * bodies with.
 *
 * json_get must look only at the keys of the object it is given (a
 * "model" or "usage" deeper in the body must not answer for the top one),
 * json_int must refuse what is not an int64 rather than wrap, and the
 * token array must grow past its first 256 tokens and stop at max_tokens.
 * Inputs are copied into malloc'd buffers of their exact length so that
 * ASan sees any read past the end (jsmn is given a length, not a NUL).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"

static char	*copy;

/* Parse S from an exact-size heap copy, kept until the next call. */
static int
parse(struct json_doc *d, const char *s)
{
	size_t n = strlen(s);

	free(copy);
	copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	return json_parse(d, copy, n);
}

static int
teardown(void **state)
{
	(void)state;
	free(copy);
	copy = NULL;
	return 0;
}

static void
test_parse_valid(void **state)
{
	static const char *const good[] = {
		"{}",
		"[]",
		" \t\r\n{ \"a\" : 1 } \n",
		"{\"a\":{\"b\":[1,-2,3.5e10,true,false,null,\"s\"]}}",
		"{\"esc\":\"a\\\"b\\\\c\\u00e9\\n\"}",
		"[[[[[]]]]]",
		"\"just a string\"",
		"123 ",
	};
	struct json_doc d = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (parse(&d, good[i]) != 0)
			fail_msg("case %zu rejected: %s", i, good[i]);
	json_doc_free(&d);
}

static void
test_parse_rejects_non_json(void **state)
{
	static const char *const bad[] = {
		"",
		"   ",
		"hello",
		"{'a':1}",			/* single quotes */
		"{a:1}",			/* bare key */
		"{1:2}",
		"{\"a\" 1}",			/* no colon */
		"{\"a\":1 2}",
		"{\"a\",1}",
		"{\"a\":\"\\q\"}",		/* bad escape */
		"{\"a\":1}}",			/* extra close */
		"]",
		"{\"a\":1} x",			/* trailing garbage */
		"{\"a\":1} 2",
		"<html>",
	};
	struct json_doc d = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(&d, bad[i]) != -1)
			fail_msg("case %zu accepted: %s", i, bad[i]);
	json_doc_free(&d);
}

static void
test_parse_rejects_truncated(void **state)
{
	static const char full[] =
	    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hi\"}],\"stream\":true,\"n\":12}";
	struct json_doc d = { 0 };
	size_t cut;
	char *b;

	(void)state;
	/* every proper prefix of an object is an error */
	for (cut = 0; cut < sizeof(full) - 1; cut++) {
		b = malloc(cut ? cut : 1);
		assert_non_null(b);
		memcpy(b, full, cut);
		if (json_parse(&d, b, cut) != -1)
			fail_msg("prefix of %zu bytes accepted", cut);
		free(b);
	}
	assert_int_equal(parse(&d, full), 0);
	/* a bare primitive with nothing after it counts as truncated */
	assert_int_equal(parse(&d, "123"), -1);
	assert_int_equal(parse(&d, "true"), -1);
	json_doc_free(&d);
}

/*
 * json.c insists on one top-level value (the comment before the check on
 * tok[0].end), but only looks at whether the first value is closed: a
 * second value after it is accepted, and a body such as
 * {"model":"a"}{"model":"b"} is read as model "a".
 */
static void
test_parse_rejects_second_top_level_value(void **state)
{
	static const char *const bad[] = {
		"{\"a\":1}{\"b\":2}",
		"{\"a\":1} [2]",
		"{\"a\":1} \"x\"",
		"[1][2]",
	};
	static const char nul[] = "{\"a\":1}\0{\"b\":2}";
	struct json_doc d = { 0 };
	size_t i;

	int accepted = 0;
	char msg[256] = "";

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(&d, bad[i]) != -1) {
			accepted++;
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
			    " [%zu]%s", i, bad[i]);
		}
	/* jsmn stops at a NUL: bytes after it are never looked at */
	if (json_parse(&d, nul, sizeof(nul) - 1) != -1) {
		accepted++;
		snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
		    " value-NUL-value");
	}
	json_doc_free(&d);
	if (accepted)
		fail_msg("%d inputs with a second value accepted:%s", accepted,
		    msg);
}

static void
test_parse_nul_in_string(void **state)
{
	static const char t[] = "{\"a\":\"x\0y\"}";
	struct json_doc d = { 0 };

	(void)state;
	assert_int_equal(json_parse(&d, t, sizeof(t) - 1), -1);
	json_doc_free(&d);
}

static void
test_get_only_at_its_level(void **state)
{
	static const char s[] =
	    "{\"messages\":[{\"model\":\"deep1\",\"usage\":{\"x\":1}}],"
	    "\"meta\":{\"model\":\"deep2\",\"inner\":{\"model\":\"deep3\"}},"
	    "\"model\":\"top\","
	    "\"k\":\"model\"}";
	struct json_doc d = { 0 };
	int m, meta;

	(void)state;
	assert_int_equal(parse(&d, s), 0);
	m = json_get(&d, 0, "model");
	assert_true(m > 0);
	assert_true(json_str_eq(&d, m, "top"));
	meta = json_get(&d, 0, "meta");
	assert_true(json_is_obj(&d, meta));
	assert_true(json_str_eq(&d, json_get(&d, meta, "model"), "deep2"));
	/* a key that exists only deeper is not found at the top */
	assert_int_equal(json_get(&d, 0, "usage"), -1);
	assert_int_equal(json_get(&d, 0, "inner"), -1);
	/* a string value equal to the key is not a key */
	assert_int_equal(parse(&d, "{\"a\":\"model\",\"b\":[\"model\"]}"), 0);
	assert_int_equal(json_get(&d, 0, "model"), -1);
	json_doc_free(&d);
}

static void
test_get_deeper_key_before_top_one(void **state)
{
	/* the deep "usage" comes first in the text; the top one must win */
	static const char s[] =
	    "{\"choices\":[{\"usage\":{\"prompt_tokens\":1}}],"
	    "\"usage\":{\"prompt_tokens\":2}}";
	struct json_doc d = { 0 };
	int64_t v;

	(void)state;
	assert_int_equal(parse(&d, s), 0);
	assert_int_equal(json_int(&d, json_path(&d, 0, "usage",
	    "prompt_tokens", NULL), &v), 0);
	assert_int_equal(v, 2);
	json_doc_free(&d);
}

static void
test_get_edges(void **state)
{
	struct json_doc d = { 0 };
	int a;

	(void)state;
	assert_int_equal(parse(&d, "{\"a\":[1,2],\"b\":{},\"c\":\"\"}"), 0);
	a = json_get(&d, 0, "a");
	assert_true(a > 0);
	assert_int_equal(json_get(&d, a, "x"), -1);	/* not an object */
	assert_int_equal(json_get(&d, -1, "a"), -1);
	assert_int_equal(json_get(&d, d.ntok, "a"), -1);
	assert_int_equal(json_get(&d, 0, ""), -1);
	assert_int_equal(json_get(&d, 0, "A"), -1);	/* case matters */
	assert_int_equal(json_get(&d, 0, "ab"), -1);
	assert_true(json_is_obj(&d, json_get(&d, 0, "b")));
	assert_int_equal(json_get(&d, json_get(&d, 0, "b"), "a"), -1);
	assert_true(json_str_eq(&d, json_get(&d, 0, "c"), ""));
	/* keys are compared raw, escapes are not decoded */
	assert_int_equal(parse(&d, "{\"m\\u006fdel\":1}"), 0);
	assert_int_equal(json_get(&d, 0, "model"), -1);
	assert_true(json_get(&d, 0, "m\\u006fdel") > 0);
	/* after a failed parse nothing is found */
	assert_int_equal(parse(&d, "{\"a\":"), -1);
	assert_int_equal(json_get(&d, 0, "a"), -1);
	json_doc_free(&d);
}

static void
test_path(void **state)
{
	static const char s[] =
	    "{\"response\":{\"usage\":{\"input_tokens\":7,"
	    "\"input_tokens_details\":{\"cached_tokens\":3}}},"
	    "\"input_tokens\":99}";
	struct json_doc d = { 0 };
	int64_t v;
	int i;

	(void)state;
	assert_int_equal(parse(&d, s), 0);
	i = json_path(&d, 0, "response", "usage", "input_tokens_details",
	    "cached_tokens", NULL);
	assert_int_equal(json_int(&d, i, &v), 0);
	assert_int_equal(v, 3);
	i = json_path(&d, 0, "response", "usage", "input_tokens", NULL);
	assert_int_equal(json_int(&d, i, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(json_path(&d, 0, NULL), 0);
	assert_int_equal(json_path(&d, 0, "response", "nope", "usage", NULL),
	    -1);
	assert_int_equal(json_path(&d, 0, "usage", NULL), -1);
	/* through a non-object */
	assert_int_equal(json_path(&d, 0, "input_tokens", "x", NULL), -1);
	assert_int_equal(json_path(&d, -1, "response", NULL), -1);
	json_doc_free(&d);
}

static void
test_int(void **state)
{
	static const struct {
		const char	*text;
		int		 rc;
		int64_t		 v;
	} c[] = {
		{ "0", 0, 0 },
		{ "42", 0, 42 },
		{ "-0", 0, 0 },
		{ "-17", 0, -17 },
		{ "9223372036854775807", 0, INT64_MAX },
		{ "-9223372036854775807", 0, -INT64_MAX },
		{ "9223372036854775808", -1, 0 },		/* overflow */
		{ "-9223372036854775809", -1, 0 },
		{ "99999999999999999999999", -1, 0 },
		{ "1.0", -1, 0 },
		{ "1.5", -1, 0 },
		{ "1e3", -1, 0 },
		{ "-1E2", -1, 0 },
		{ "-", -1, 0 },
		{ "true", -1, 0 },
		{ "null", -1, 0 },
		{ "\"5\"", -1, 0 },				/* a string */
		{ "[5]", -1, 0 },
		{ "{}", -1, 0 },
	};
	struct json_doc d = { 0 };
	char s[128];
	size_t i;
	int64_t v;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(s, sizeof(s), "{\"v\":%s}", c[i].text);
		assert_int_equal(parse(&d, s), 0);
		v = 12345;
		if (json_int(&d, json_get(&d, 0, "v"), &v) != c[i].rc)
			fail_msg("%s: want rc %d", c[i].text, c[i].rc);
		if (c[i].rc == 0 && v != c[i].v)
			fail_msg("%s: got %lld", c[i].text, (long long)v);
		if (c[i].rc == -1 && v != 12345)
			fail_msg("%s: *v written on error", c[i].text);
	}
	assert_int_equal(json_int(&d, -1, &v), -1);
	json_doc_free(&d);
}

static void
test_bool(void **state)
{
	struct json_doc d = { 0 };

	(void)state;
	assert_int_equal(parse(&d, "{\"t\":true,\"f\":false,\"n\":null,"
	    "\"z\":0,\"o\":1,\"s\":\"true\",\"a\":[true]}"), 0);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "t")), 1);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "f")), 0);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "n")), -1);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "z")), -1);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "o")), -1);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "s")), -1);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "a")), -1);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "missing")), -1);
	json_doc_free(&d);
}

static void
test_str_eq_and_raw(void **state)
{
	struct json_doc d = { 0 };
	const char *r;
	size_t n;
	int i;

	(void)state;
	assert_int_equal(parse(&d, "{\"type\":\"message_start\","
	    "\"e\":\"a\\\"b\",\"n\":5,\"k\":\"\"}"), 0);
	i = json_get(&d, 0, "type");
	assert_true(json_is_str(&d, i));
	assert_true(json_str_eq(&d, i, "message_start"));
	assert_false(json_str_eq(&d, i, "message_star"));
	assert_false(json_str_eq(&d, i, "message_start_"));
	assert_false(json_str_eq(&d, i, "Message_start"));
	r = json_raw(&d, i, &n);
	assert_int_equal(n, 13);
	assert_memory_equal(r, "message_start", 13);
	/* raw: the escape is compared as written */
	i = json_get(&d, 0, "e");
	assert_true(json_str_eq(&d, i, "a\\\"b"));
	assert_false(json_str_eq(&d, i, "a\"b"));
	/* a primitive is not a string even when the text matches */
	i = json_get(&d, 0, "n");
	assert_false(json_is_str(&d, i));
	assert_false(json_str_eq(&d, i, "5"));
	assert_true(json_str_eq(&d, json_get(&d, 0, "k"), ""));
	assert_false(json_str_eq(&d, -1, ""));
	assert_false(json_is_str(&d, -1));
	assert_false(json_is_obj(&d, -1));
	json_doc_free(&d);
}

static void
test_skip(void **state)
{
	static const char s[] =
	    "{\"a\":{\"x\":[1,2,{\"y\":3}],\"z\":\"s\"},\"b\":[],\"c\":4}";
	struct json_doc d = { 0 };
	int a, b, c;

	(void)state;
	assert_int_equal(parse(&d, s), 0);
	assert_int_equal(json_skip(&d, 0), d.ntok);
	a = json_get(&d, 0, "a");
	b = json_get(&d, 0, "b");
	c = json_get(&d, 0, "c");
	/* past a's subtree is the key "b" */
	assert_int_equal(json_skip(&d, a), b - 1);
	assert_true(json_str_eq(&d, json_skip(&d, a), "b"));
	/* an empty array and a primitive are one token each */
	assert_int_equal(json_skip(&d, b), b + 1);
	assert_int_equal(json_skip(&d, c), c + 1);
	assert_int_equal(json_skip(&d, c), d.ntok);
	json_doc_free(&d);
}

/* "[1,1,...,1]" with N elements: N + 1 tokens.  Caller frees. */
static char *
array_of(int n)
{
	char *s = malloc((size_t)n * 2 + 3);
	int i, k = 0;

	assert_non_null(s);
	s[k++] = '[';
	for (i = 0; i < n; i++) {
		if (i)
			s[k++] = ',';
		s[k++] = '1';
	}
	s[k++] = ']';
	s[k] = '\0';
	return s;
}

static void
test_tokens_grow_past_256(void **state)
{
	struct json_doc d = { 0 };
	char *s, *obj;
	int i, k;

	(void)state;
	s = array_of(5000);
	assert_int_equal(json_parse(&d, s, strlen(s)), 0);
	assert_int_equal(d.ntok, 5001);
	assert_true(d.cap >= 5001);
	assert_int_equal(json_skip(&d, 0), 5001);
	free(s);

	/* an object whose key of interest is past token 256 */
	obj = malloc(64 * 1024);
	assert_non_null(obj);
	k = sprintf(obj, "{");
	for (i = 0; i < 400; i++)
		k += sprintf(obj + k, "\"k%d\":[%d,{\"usage\":1}],", i, i);
	sprintf(obj + k, "\"usage\":{\"total_tokens\":77}}");
	assert_int_equal(json_parse(&d, obj, strlen(obj)), 0);
	assert_true(d.ntok > 256);
	{
		int64_t v;

		assert_int_equal(json_int(&d, json_path(&d, 0, "usage",
		    "total_tokens", NULL), &v), 0);
		assert_int_equal(v, 77);
	}
	/* the grown array is kept and reused for a small document */
	k = d.cap;
	assert_int_equal(parse(&d, "{\"a\":1}"), 0);
	assert_int_equal(d.cap, k);
	assert_int_equal(d.ntok, 3);
	assert_int_equal(json_get(&d, 0, "usage"), -1);
	free(obj);
	json_doc_free(&d);
	assert_null(d.tok);
	assert_int_equal(d.cap, 0);
}

static void
test_max_tokens(void **state)
{
	struct json_doc d = { 0 };
	char *s;

	(void)state;
	d.max_tokens = 300;
	s = array_of(299);		/* 300 tokens: just fits */
	assert_int_equal(json_parse(&d, s, strlen(s)), 0);
	assert_int_equal(d.ntok, 300);
	assert_true(d.cap <= 300);
	free(s);
	s = array_of(300);		/* 301 tokens */
	assert_int_equal(json_parse(&d, s, strlen(s)), -1);
	assert_int_equal(d.ntok, 0);
	assert_true(d.cap <= 300);
	free(s);
	s = array_of(100000);
	assert_int_equal(json_parse(&d, s, strlen(s)), -1);
	assert_true(d.cap <= 300);
	free(s);
	/* still usable afterwards */
	assert_int_equal(parse(&d, "{\"a\":true}"), 0);
	assert_int_equal(json_bool(&d, json_get(&d, 0, "a")), 1);
	json_doc_free(&d);

	/* a limit that is a power of two times 256 */
	d.max_tokens = 1024;
	s = array_of(1023);
	assert_int_equal(json_parse(&d, s, strlen(s)), 0);
	free(s);
	s = array_of(1024);
	assert_int_equal(json_parse(&d, s, strlen(s)), -1);
	free(s);
	json_doc_free(&d);
}

/*
 * json.h: "-1 not JSON (or more tokens than max_tokens)".  With a limit
 * below the initial 256-token array the limit is never looked at: jsmn
 * only reports NOMEM once 256 tokens are exceeded.
 */
static void
test_max_tokens_below_initial_array(void **state)
{
	struct json_doc d = { 0 };
	char *s;
	int rc9, rc50;

	(void)state;
	d.max_tokens = 10;
	s = array_of(9);		/* 10 tokens */
	rc9 = json_parse(&d, s, strlen(s));
	free(s);
	s = array_of(50);		/* 51 tokens */
	rc50 = json_parse(&d, s, strlen(s));
	free(s);
	json_doc_free(&d);
	assert_int_equal(rc9, 0);
	assert_int_equal(rc50, -1);
}

/* Deep nesting is refused before jsmn, whose cost grows with depth. */
static void
test_deep_nesting_refused_fast(void **state)
{
	struct json_doc	 d = { 0 };
	size_t		 n = 100000, i, len = 0;
	char		*b = malloc(2 * n + 16);

	(void)state;
	assert_non_null(b);
	b[len++] = '{';
	memcpy(b + len, "\"a\":", 4);
	len += 4;
	for (i = 0; i < n; i++)
		b[len++] = '[';
	for (i = 0; i < n; i++)
		b[len++] = ']';
	b[len++] = '}';
	assert_int_equal(json_parse(&d, b, len), -1);
	/* 100 levels, with brackets inside strings that must not count */
	len = 0;
	b[len++] = '{';
	memcpy(b + len, "\"a\":", 4);
	len += 4;
	for (i = 0; i < 100; i++)
		b[len++] = '[';
	memcpy(b + len, "\"[[[\\\"[\"", 8);
	len += 8;
	for (i = 0; i < 100; i++)
		b[len++] = ']';
	b[len++] = '}';
	assert_int_equal(json_parse(&d, b, len), 0);
	json_doc_free(&d);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deep_nesting_refused_fast),
		cmocka_unit_test_teardown(test_parse_valid, teardown),
		cmocka_unit_test_teardown(test_parse_rejects_non_json, teardown),
		cmocka_unit_test_teardown(test_parse_rejects_truncated,
		    teardown),
		cmocka_unit_test_teardown(
		    test_parse_rejects_second_top_level_value, teardown),
		cmocka_unit_test_teardown(test_parse_nul_in_string, teardown),
		cmocka_unit_test_teardown(test_get_only_at_its_level, teardown),
		cmocka_unit_test_teardown(test_get_deeper_key_before_top_one,
		    teardown),
		cmocka_unit_test_teardown(test_get_edges, teardown),
		cmocka_unit_test_teardown(test_path, teardown),
		cmocka_unit_test_teardown(test_int, teardown),
		cmocka_unit_test_teardown(test_bool, teardown),
		cmocka_unit_test_teardown(test_str_eq_and_raw, teardown),
		cmocka_unit_test_teardown(test_skip, teardown),
		cmocka_unit_test_teardown(test_tokens_grow_past_256, teardown),
		cmocka_unit_test_teardown(test_max_tokens, teardown),
		cmocka_unit_test_teardown(test_max_tokens_below_initial_array,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
