/*
 * xlate_resp.h - a whole (non-streamed) answer, and an error body, in
 * one provider's format rewritten in the other's (layer 0, pure).
 *
 * Owns the mapping of a complete answer: Anthropic's message to OpenAI's
 * chat.completion and back (text, tool calls, reasoning, stop reason,
 * usage), and of an upstream's error body to the caller's error shape
 * with the upstream's message.  Called by the translate stage when the
 * answer's last byte is in; it writes into OUT and keeps nothing.
 */
#ifndef SLUICE_XLATE_RESP_H
#define SLUICE_XLATE_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "common/json.h"
#include "worker/xlate_req.h"

struct evbuffer;

/*
 * Anthropic's message BODY as OpenAI's chat.completion into OUT, CREATED
 * its "created" (Unix seconds).  0, or -1 when BODY is not a message.
 */
int	 xlate_resp_to_openai(struct json_doc *, const char *body, size_t len,
	    const struct xlate_info *, int64_t created, struct evbuffer *out);
/* OpenAI's chat.completion BODY as Anthropic's message. */
int	 xlate_resp_to_anthropic(struct json_doc *, const char *body,
	    size_t len, const struct xlate_info *, struct evbuffer *out);
/*
 * An upstream's error BODY (Anthropic's, OpenAI's, or what an
 * OpenAI-compatible server sends: a top-level message or detail) as
 * OpenAI's {"error":{...}} into OUT, the upstream's message and type kept.
 */
void	 xlate_error_to_openai(struct json_doc *, const char *body,
	    size_t len, int status, struct evbuffer *out);
/* ... as Anthropic's {"type":"error",...}, its type from STATUS. */
void	 xlate_error_to_anthropic(struct json_doc *, const char *body,
	    size_t len, int status, const char *reqid, struct evbuffer *out);

#endif
