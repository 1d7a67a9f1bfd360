/*
 * xlate_sse.h - a streamed answer in one provider's format rewritten in
 * the other's as it arrives (layer 0, pure).
 *
 * Owns the state of one translated stream: the SSE reader that cuts the
 * upstream's bytes into events, and the event machine that turns each
 * upstream event into the client's: Anthropic's message_start,
 * content_block_start/delta/stop, message_delta and message_stop to
 * OpenAI's chat.completion.chunk events and [DONE], and back.  An event
 * is written out as soon as it is complete, never held for the next
 * (one upstream event, zero or more client events).
 *
 * Called by the translate stage for each piece of a 2xx event-stream
 * answer.  A framing that is not SSE (Bedrock's event-stream) hands its
 * decoded events to xlate_sse_event directly.  Memory: the event being
 * assembled, bounded by XLATE_SSE_EVENT_MAX; freed by xlate_sse_free.
 */
#ifndef SLUICE_XLATE_SSE_H
#define SLUICE_XLATE_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/json.h"
#include "worker/usage.h"
#include "worker/xlate_req.h"

struct evbuffer;

#define XLATE_SSE_EVENT_MAX	(4 * 1024 * 1024)
#define XLATE_ID_MAX		128

struct xlate_sse {
	int		 to_openai;	/* Anthropic upstream, OpenAI client */
	struct xlate_info info;
	int64_t		 created;	/* OpenAI's "created", Unix seconds */
	/* the SSE reader */
	char		*line;		/* the line being assembled */
	size_t		 llen, lcap;
	char		*data;		/* the event's data lines, joined */
	size_t		 dlen, dcap;
	int		 has_data;
	/* the event machine */
	char		 id[XLATE_ID_MAX];	/* as the upstream wrote it */
	char		 model[XLATE_ID_MAX];
	/* an OpenAI chunk up to its "choices", the same for all of them */
	char		 head[2 * XLATE_ID_MAX + 128];
	size_t		 headlen;
	struct usage_acc usage;		/* read from the events, usage.c */
	int		 started;	/* the client's first event is out */
	int		 done;		/* the client's last event is out */
	int		 block;		/* kind of the open block, BK_* */
	int		 nblocks;	/* Anthropic blocks opened so far */
	int		 tool;		/* OpenAI index of the open tool call */
	char		 tool_id[XLATE_ID_MAX];	/* ... and its id, from OpenAI */
	int		 ntools;	/* tool calls begun */
	int		 formatted;	/* the response_format tool answered */
	char		 stop[32];	/* the stop or finish reason seen */
};

/* Ready S for one stream; TO_OPENAI: the upstream speaks Anthropic. */
void	 xlate_sse_init(struct xlate_sse *, int to_openai,
	    const struct xlate_info *, int64_t created);
/*
 * N bytes of the upstream's stream: each event they complete goes out,
 * translated, into OUT.  0, or -1 when an event is larger than
 * XLATE_SSE_EVENT_MAX or out of memory (the stream cannot go on).
 */
int	 xlate_sse_feed(struct xlate_sse *, struct json_doc *, const char *p,
	    size_t n, struct evbuffer *out);
/* One upstream event's data (DATA, LEN bytes), framing aside. */
void	 xlate_sse_event(struct xlate_sse *, struct json_doc *,
	    const char *data, size_t len, struct evbuffer *out);
/* The upstream's stream ended: what the client still needs into OUT. */
void	 xlate_sse_end(struct xlate_sse *, struct json_doc *,
	    struct evbuffer *out);
void	 xlate_sse_free(struct xlate_sse *);

#endif
