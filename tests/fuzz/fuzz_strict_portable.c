/*
 * fuzz_strict_portable.c - fuzz_strict.c's checks on the string loop
 * that machines without SSE2 run: json_strict.c is compiled in here with
 * JSON_STRICT_PORTABLE, so both versions are fuzzed on this one.
 */
#define JSON_STRICT_PORTABLE
#include "common/json_strict.c"
#include "tests/fuzz/fuzz_strict.c"
