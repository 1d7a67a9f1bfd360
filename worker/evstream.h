/*
 * evstream.h - the AWS event-stream framing, decoded incrementally
 * (layer 0).
 *
 * Owns the bytes of at most one partial frame.  Called by the Bedrock
 * adapter for a streamed answer (application/vnd.amazon.eventstream),
 * with whatever each read brought; it calls back once per whole frame
 * whose prelude CRC32 and message CRC32 both check, with the headers it
 * knows parsed.  It never interprets a payload and never allocates more
 * than one frame's size (ES_FRAME_MAX); after an error it stays failed.
 *
 * A frame: total length (u32 BE), headers length (u32 BE), CRC32 of
 * those 8 bytes, headers, payload, CRC32 of everything before it.  A
 * header: name length (u8), name, type (u8), value.
 */
#ifndef SLUICE_EVSTREAM_H
#define SLUICE_EVSTREAM_H

#include <stddef.h>
#include <stdint.h>

#define ES_FRAME_MAX	(16 * 1024 * 1024 + 128 * 1024)

/* One frame, valid during the callback only. */
struct es_msg {
	char		 message_type[16];	/* :message-type: event,
						   exception, error */
	char		 event_type[64];	/* :event-type, e.g. chunk */
	char		 exception_type[64];	/* :exception-type */
	char		 content_type[64];	/* :content-type */
	char		 error_code[64];	/* :error-code */
	char		 error_message[256];	/* :error-message */
	int		 nheaders;
	const unsigned char *payload;
	size_t		 payload_len;
};

enum es_error {
	ES_OK = 0,
	ES_BAD_LENGTH,		/* a length no frame can have */
	ES_PRELUDE_CRC,
	ES_MESSAGE_CRC,
	ES_BAD_HEADER,
	ES_STOPPED,		/* the callback said stop */
	ES_NOMEM,
};

/* A frame's callback: 0 go on, -1 stop (es_feed returns ES_STOPPED). */
typedef int	 es_msg_fn(void *arg, const struct es_msg *m);

struct es_dec {
	unsigned char	*buf;		/* a partial frame */
	size_t		 len, cap;
	enum es_error	 err;		/* sticky */
	uint64_t	 frames;	/* whole frames delivered */
};

void	 es_init(struct es_dec *);
void	 es_free(struct es_dec *);
/* Decode N more bytes at P; ES_OK or the (sticky) error. */
enum es_error es_feed(struct es_dec *, const void *p, size_t n,
	    es_msg_fn *fn, void *arg);
/* Bytes of a frame begun and not finished: at the end of the answer,
 * not 0 means it was cut. */
size_t	 es_pending(const struct es_dec *);
/* What ERR means, in a few words. */
const char *es_strerror(enum es_error err);

#endif
