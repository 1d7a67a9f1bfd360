/*
 * fuzz_xlate_an.c - libFuzzer target: translation of what an Anthropic
 * side sends (a Messages request for an OpenAI-format upstream; an
 * Anthropic upstream's answer, error and stream for an OpenAI client).
 * The checks are xlate_fuzz.h's.
 */
#include "tests/fuzz/xlate_fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_xlate(data, size, 0);
}
