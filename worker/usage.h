/*
 * usage.h - token usage read from upstream responses, without buffering a
 * stream: whole JSON bodies (kept in a bounded copy) and SSE events (read
 * line by line as they pass).  Pure over its inputs, so it is unit-tested
 * and fuzzed alone.  Knows the shapes of OpenAI chat/completions,
 * embeddings, the Responses API and Anthropic messages.
 */
#ifndef SLUICE_USAGE_H
#define SLUICE_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/event.h"
#include "common/json.h"

struct evbuffer;

struct usage_acc {
	int64_t		 input;		/* prompt_tokens | input_tokens */
	int64_t		 output;	/* completion_tokens | output_tokens */
	int64_t		 cache_read;	/* cached_tokens | cache_read_input_tokens */
	int64_t		 cache_create;	/* cache_creation_input_tokens */
	int64_t		 cache_1h;	/* ... of which 1-hour cache writes */
	int64_t		 reasoning;	/* reasoning_tokens, part of output */
	char		 model[EV_MODEL_MAX];	/* the answer's "model", "" none */
	int64_t		 text_bytes;	/* generated text relayed, for an estimate */
	unsigned	 seen:1;	/* a usage object was found */
	unsigned	 estimated:1;	/* by usage_estimate, not reported */
	unsigned	 reasoning_seen:1;	/* reasoning_tokens was reported */
	unsigned	 anthropic:1;	/* input excludes the cache counts */
};

/* A bounded copy of a response body, or its SSE lines as they pass. */
struct usage_tap {
	char		*buf;
	size_t		 len;
	size_t		 cap;
	unsigned	 sse:1;		/* text/event-stream: line mode */
	unsigned	 truncated:1;	/* JSON body larger than the copy */
	unsigned	 skip_line:1;	/* SSE line too long: keep its tail */
	unsigned	 long_data:1;	/* ... and it is a data: line */
};

/* The usage object at token OBJ of a parsed document, merged into ACC. */
void	 usage_merge(struct usage_acc *, const struct json_doc *, int obj);
/* Usage objects in one JSON document are merged into ACC (last wins). */
void	 usage_from_json(struct usage_acc *, struct json_doc *,
	    const char *js, size_t len);
/* Feed the first LEN bytes of DATA (-1: all); DATA is not consumed. */
void	 usage_tap_feed(struct usage_tap *, struct usage_acc *,
	    struct json_doc *, struct evbuffer *data, long len);
void	 usage_tap_feed_mem(struct usage_tap *, struct usage_acc *,
	    struct json_doc *, const char *p, size_t n);
/* The body ended: read a whole JSON body kept by the tap. */
void	 usage_tap_end(struct usage_tap *, struct usage_acc *,
	    struct json_doc *);
void	 usage_tap_reset(struct usage_tap *, int sse);
void	 usage_tap_free(struct usage_tap *);

/*
 * An answer that never reported usage: estimate it, USAGE_BYTES_PER_TOKEN
 * bytes a token, the input from the request body's size and the output
 * from the generated text relayed (usage_source becomes estimated).  A
 * rough bound, there so that a stream the upstream did not meter is still
 * charged rather than free.
 */
#define USAGE_BYTES_PER_TOKEN	4
void	 usage_estimate(struct usage_acc *, size_t request_bytes);
/*
 * Fill the event's tokens, usage_source and cost (micro-USD, rounded to
 * nearest; -1 without a price).  Without usage, tokens and cost are -1.
 */
void	 usage_to_event(const struct usage_acc *, const struct cfg_price *,
	    struct usage_event *);
/*
 * Cost in micro-USD, rounded once, of INPUT prompt tokens of which CACHED
 * were read from the cache and W5M and W1H written to it (5-minute and
 * 1-hour writes), and OUTPUT tokens (reasoning included), at PRICE.
 */
int64_t	 usage_cost(const struct cfg_price *, int64_t input, int64_t cached,
	    int64_t w5m, int64_t w1h, int64_t output);

#endif
