/*
 * xlate_req.h - a request body in one provider's format rewritten in the
 * other's (layer 0, pure): OpenAI chat completions to Anthropic Messages
 * and back.
 *
 * Owns the field by field mapping of a request (messages, system, tools,
 * tool_choice, tool calls and results, images, sampling, limits, user,
 * structured output, reasoning) and the list of what cannot be mapped,
 * refused with a message that names it.  Called by the pipeline's
 * translate stage on a body json_strict already read; it parses with the
 * json_doc it is given, writes the new body into OUT and learns what the
 * answer's translation will need (struct xlate_info).  It never sends,
 * allocates nothing that outlives the call, and keeps no state.
 *
 * The output is always Anthropic's Messages body or OpenAI's chat body as
 * their public APIs take them; a cloud wrapper of either (Bedrock,
 * Vertex: the model in the path, anthropic_version in the body) is a
 * rewrite of this output by whoever speaks to that upstream.
 */
#ifndef SLUICE_XLATE_REQ_H
#define SLUICE_XLATE_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/json.h"
#include "worker/xlate_json.h"

struct evbuffer;

#define XLATE_TOOL_NAME_MAX	64	/* both APIs: [a-zA-Z0-9_-]{1,64} */

struct xlate_req_opts {
	const char	*model;		/* what the upstream is asked for */
	int64_t		 max_tokens;	/* to Anthropic, when the client sets
					   none: Anthropic requires it */
	int		 max_completion; /* to OpenAI: send the limit as
					   max_completion_tokens (OpenAI and
					   Azure), else max_tokens (what
					   every compatible server takes) */
};

/* What translating the answer needs to know of the request. */
struct xlate_info {
	int		 stream;	/* the client asked for a stream */
	int		 include_usage;	/* OpenAI client: stream_options.
					   include_usage, usage at the end */
	/* response_format, asked of Anthropic as this forced tool: its
	 * input is the answer's content; "" none */
	char		 format_tool[XLATE_TOOL_NAME_MAX + 1];
};

/*
 * The OpenAI chat request BODY (LEN bytes, one strict JSON object) as an
 * Anthropic Messages request, appended to OUT.  0, or -1 with ERR naming
 * what cannot be translated (a 400 for the client).
 */
int	 xlate_req_to_anthropic(struct json_doc *, const char *body,
	    size_t len, const struct xlate_req_opts *, struct xlate_info *,
	    struct evbuffer *out, struct xlate_err *err);
/* The Anthropic Messages request BODY as an OpenAI chat request. */
int	 xlate_req_to_openai(struct json_doc *, const char *body, size_t len,
	    const struct xlate_req_opts *, struct xlate_info *,
	    struct evbuffer *out, struct xlate_err *err);

#endif
