/*
 * test_attrib.c - the tags and end users a request is attributed to:
 * the key's tags and the header's merged without repeats, and every way
 * a caller could make a row hold something it should not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/event.h"
#include "worker/attrib.h"

static int
tags(const char *fixed, const char *hdr, char *out)
{
	char err[128];

	err[0] = '\0';
	return attrib_tags(fixed, hdr, strlen(hdr), out, EV_TAGS_BYTES, err,
	    sizeof(err));
}

static void
test_tags_merge(void **state)
{
	char	 out[EV_TAGS_BYTES];

	(void)state;
	assert_int_equal(tags(NULL, "", out), 0);
	assert_string_equal(out, "");
	assert_int_equal(tags("web,prod", "", out), 0);
	assert_string_equal(out, "web,prod");
	/* spaces around a tag, empty ones and repeats are dropped */
	assert_int_equal(tags("web", " a , b,,a,\tweb ", out), 0);
	assert_string_equal(out, "web,a,b");
	assert_int_equal(tags(NULL, "team:search/v2", out), 0);
	assert_string_equal(out, "team:search/v2");
}

static void
test_tags_refused(void **state)
{
	char	 out[EV_TAGS_BYTES], hdr[2048], err[128];
	size_t	 n;
	int	 i;

	(void)state;
	assert_int_equal(tags(NULL, "a b", out), -1);
	assert_int_equal(tags(NULL, "caf\xc3\xa9", out), -1);
	assert_int_equal(tags(NULL, "x\001", out), -1);
	/* 64 bytes is a tag, 65 is not */
	memset(hdr, 't', 65);
	hdr[64] = '\0';
	assert_int_equal(tags(NULL, hdr, out), 0);
	hdr[64] = 't';
	hdr[65] = '\0';
	assert_int_equal(attrib_tags(NULL, hdr, 65, out, sizeof(out), err,
	    sizeof(err)), -1);
	assert_string_equal(err, "x-sluice-tags: a tag is 1 to 64 printable "
	    "ASCII bytes without spaces or commas");
	/* 16 tags, the key's counted, and no more */
	for (i = 0, n = 0; i < 15; i++)
		n += (size_t)snprintf(hdr + n, sizeof(hdr) - n, "t%d,", i);
	assert_int_equal(tags("k", hdr, out), 0);
	assert_int_equal(attrib_tags("k,j", hdr, n, out, sizeof(out), err,
	    sizeof(err)), -1);
	assert_string_equal(err, "x-sluice-tags: at most 16 tags a request, "
	    "the key's own included");
	/* the most: 16 of 64 bytes fit the event's field */
	for (i = 0, n = 0; i < 16; i++) {
		memset(hdr + n, 'a' + i, 64);
		n += 64;
		hdr[n++] = ',';
	}
	assert_int_equal(attrib_tags(NULL, hdr, n, out, sizeof(out), err,
	    sizeof(err)), 0);
	assert_int_equal(strlen(out), 16 * 65 - 1);
}

static void
test_end_user(void **state)
{
	char	 out[EV_USER_MAX], big[EV_USER_MAX + 1];

	(void)state;
	assert_int_equal(attrib_user("user-42@example.com", 19, out,
	    sizeof(out)), 0);
	assert_string_equal(out, "user-42@example.com");
	assert_int_equal(attrib_user("j\xc3\xb6rg", 5, out, sizeof(out)), 0);
	assert_int_equal(attrib_user("", 0, out, sizeof(out)), -1);
	assert_int_equal(attrib_user("a\nb", 3, out, sizeof(out)), -1);
	assert_int_equal(attrib_user("a\0b", 3, out, sizeof(out)), -1);
	assert_int_equal(attrib_user("a\x7f", 2, out, sizeof(out)), -1);
	memset(big, 'u', sizeof(big));
	assert_int_equal(attrib_user(big, EV_USER_MAX - 1, out, sizeof(out)),
	    0);
	assert_int_equal(attrib_user(big, EV_USER_MAX, out, sizeof(out)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tags_merge),
		cmocka_unit_test(test_tags_refused),
		cmocka_unit_test(test_end_user),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
