/*
 * xlate_check.h - what the translators' unit tests share: the json_doc
 * the translator under test parses with, the buffer it writes into, and
 * a reading of one value of what it wrote by its path
 * ("messages.0.content.1.source.type" walks object members by name and
 * array elements by index).  Header-only, for tests/unit/test_xlate*.c.
 */
#ifndef SLUICE_TEST_XLATE_CHECK_H
#define SLUICE_TEST_XLATE_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "common/json.h"
#include "common/json_strict.h"

static struct json_doc	 doc = { .max_tokens = 1 << 20 };	/* the
					   translator's, as a worker's */
static struct evbuffer	*out;		/* what the translator wrote */
static struct json_doc	 jp_doc = { .max_tokens = 1 << 20 };

static int
xc_setup(void **state)
{
	(void)state;
	out = evbuffer_new();
	return out == NULL ? -1 : 0;
}

static int
xc_teardown(void **state)
{
	(void)state;
	evbuffer_free(out);
	json_doc_free(&doc);
	json_doc_free(&jp_doc);
	return 0;
}

/* The token at PATH in the document jp_doc holds, or -1. */
static int
jp_token(const char *path)
{
	char		 seg[128];
	const char	*p = path, *dot;
	int		 t = 0, i, k;
	size_t		 n;

	while (*p != '\0' && t >= 0) {
		dot = strchr(p, '.');
		n = dot != NULL ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(seg))
			return -1;
		memcpy(seg, p, n);
		seg[n] = '\0';
		p += n + (dot != NULL);
		if (jp_doc.tok[t].type == JSMN_ARRAY) {
			k = atoi(seg);
			if (k >= jp_doc.tok[t].size)
				return -1;
			for (i = t + 1; k > 0; k--)
				i = json_skip(&jp_doc, i);
			t = i;
		} else
			t = json_get(&jp_doc, t, seg);
	}
	return t;
}

/*
 * Check that JS (LEN bytes) is one strict JSON object whose value at
 * PATH is WANT: a string's inside as written, anything else its text;
 * WANT NULL: no such value.
 */
static void
jp_check(const char *js, size_t len, const char *path, const char *want,
    const char *file, int line)
{
	const char	*got;
	size_t		 n;
	int		 t;

	if (json_strict_read(js, len, NULL, 0, NULL) != JSON_STRICT_OK)
		fail_msg("%s:%d: not strict JSON: %.*s", file, line, (int)len,
		    js);
	if (json_parse(&jp_doc, js, len) == -1)
		fail_msg("%s:%d: jsmn refused: %.*s", file, line, (int)len, js);
	t = jp_token(path);
	if (want == NULL) {
		if (t >= 0)
			fail_msg("%s:%d: %s is there: %.*s", file, line, path,
			    (int)len, js);
		return;
	}
	if (t < 0)
		fail_msg("%s:%d: no %s in %.*s", file, line, path, (int)len,
		    js);
	got = json_raw(&jp_doc, t, &n);
	if (n != strlen(want) || memcmp(got, want, n) != 0)
		fail_msg("%s:%d: %s is %.*s, want %s, in %.*s", file, line, path,
		    (int)n, got, want, (int)len, js);
}

#define JP(js, len, path, want)	jp_check((js), (len), (path), (want), \
				    __FILE__, __LINE__)

#endif
