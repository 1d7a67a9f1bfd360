/*
 * fuzz_xlate_oa.c - libFuzzer target: translation of what an OpenAI-format
 * side sends (a chat request for an Anthropic upstream; an OpenAI-format
 * upstream's answer, error and stream for an Anthropic client).  The
 * checks are xlate_fuzz.h's.
 */
#include "tests/fuzz/xlate_fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_xlate(data, size, 1);
}
