/*
 * fuzz_json.c - libFuzzer target: the top-level scanner that reads
 * "model" and "stream" from request bodies, checked against jsmn.  Where
 * both accept the input as one object they must find the same first
 * "model" string; every span must lie inside the input.  (The scanner may
 * refuse what jsmn lets through: jsmn accepts "{"a":1:2}".)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/json_scan.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_doc	 doc = { .max_tokens = 1 << 16 };
	struct json_field	 f[2] = { { .key = "model" },
				    { .key = "stream" } };
	const char		*js = (const char *)data;
	int			 rc, m, i;

	rc = json_scan_top(js, size, f, 2);
	for (i = 0; rc == 0 && i < 2; i++)
		if (f[i].type != JV_NONE &&
		    (f[i].start > f[i].end || f[i].end > size))
			abort();
	if (json_parse(&doc, js, size) != 0 || !json_is_obj(&doc, 0))
		return 0;
	/* jsmn stops at a NUL; the scanner does not: compare without them */
	if (memchr(js, '\0', size) != NULL)
		return 0;
	if (rc != 0)
		return 0;
	m = json_get(&doc, 0, "model");
	if ((m >= 0) != (f[0].type != JV_NONE))
		abort();
	if (json_is_str(&doc, m)) {
		size_t		 len;
		const char	*p = json_raw(&doc, m, &len);

		if (f[0].type != JV_STRING || f[0].end - f[0].start != len ||
		    memcmp(js + f[0].start, p, len) != 0)
			abort();
	}
	return 0;
}
