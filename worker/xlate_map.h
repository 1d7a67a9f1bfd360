/*
 * xlate_map.h - the values the two formats name differently, both ways
 * (layer 0, pure): why an answer stopped, and the usage object.
 *
 * Owns the one table of stop reasons and the one writing of a usage
 * object per format, so that a whole answer and a stream translated the
 * same way say the same thing.  Called by xlate_resp and xlate_sse; it
 * reads the usage sluice's own reader found (usage.h), so what a client
 * is told is what its row records.
 */
#ifndef SLUICE_XLATE_MAP_H
#define SLUICE_XLATE_MAP_H

#include <stddef.h>

#include "worker/usage.h"

struct evbuffer;

/*
 * OpenAI's finish_reason for Anthropic's stop_reason (N bytes at SR):
 * end_turn, stop_sequence, pause_turn -> stop; max_tokens and
 * model_context_window_exceeded -> length; tool_use -> tool_calls, or
 * stop when the tool stands for response_format (FORMAT_TOOL); refusal
 * -> content_filter.  Anything else is stop.
 */
const char *xm_finish_reason(const char *sr, size_t n, int format_tool);
/*
 * Anthropic's stop_reason for OpenAI's finish_reason: stop -> end_turn,
 * length -> max_tokens, tool_calls and function_call -> tool_use,
 * content_filter -> refusal; anything else end_turn.
 */
const char *xm_stop_reason(const char *fr, size_t n);
/* ACC as OpenAI's usage object: prompt_tokens counts the cached input. */
void	 xm_usage_openai(struct evbuffer *, const struct usage_acc *);
/* ACC as Anthropic's: input_tokens leaves out what the cache served. */
void	 xm_usage_anthropic(struct evbuffer *, const struct usage_acc *);

#endif
