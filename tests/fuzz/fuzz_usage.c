/*
 * fuzz_usage.c - libFuzzer target: usage extraction from what an upstream
 * sends back, as an SSE stream cut at arbitrary points and as a whole JSON
 * body (including the tail scan used for bodies past the copy limit).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/json.h"
#include "worker/usage.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_doc	 doc = { .max_tokens = 4096 };
	struct usage_tap	 tap;
	struct usage_acc	 acc;
	struct usage_event	 ev;
	struct cfg_price	 price = { .model = "x", .input = 150000,
	    .output = 600000, .cached = 75000, .cache_write = 187500,
	    .cache_write_1h = 300000 };
	const char		*p = (const char *)data;
	size_t			 i, step;

	/* SSE, fed in pieces of a size the input chooses */
	memset(&tap, 0, sizeof(tap));
	memset(&acc, 0, sizeof(acc));
	usage_tap_reset(&tap, 1);
	step = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
	for (i = 0; i < size; i += step)
		usage_tap_feed_mem(&tap, &acc, &doc, p + i,
		    size - i < step ? size - i : step);
	usage_tap_end(&tap, &acc, &doc);
	usage_to_event(&acc, &price, &ev);

	/* a JSON body */
	memset(&acc, 0, sizeof(acc));
	usage_tap_reset(&tap, 0);
	usage_tap_feed_mem(&tap, &acc, &doc, p, size);
	usage_tap_end(&tap, &acc, &doc);
	usage_to_event(&acc, NULL, &ev);
	usage_tap_free(&tap);
	return 0;
}
