/*
 * endpoint.h - the table of client-facing endpoints (layer 0, pure).
 *
 * Owns what sluice knows about each path it serves: whether it is
 * proxied, whether its errors take Anthropic's shape, whether an OpenAI
 * stream there reports usage only when asked (stream_options), the tail
 * of Azure's deployment path, and the label of its counters.  A request
 * path is classified once, when its head is parsed; nothing else compares
 * paths.  Anyone may call it; it never allocates and knows no connection.
 */
#ifndef SLUICE_ENDPOINT_H
#define SLUICE_ENDPOINT_H

#include <stddef.h>

#define EP_PROXIED	0x01	/* POSTed on to an upstream */
#define EP_ANTHROPIC	0x02	/* Anthropic's format: its error shape */
#define EP_STREAM_USAGE	0x04	/* streams carry usage only if asked */
#define EP_LOCAL	0x08	/* answered by sluice (GET /v1/models) */
#define EP_GENERATES	0x10	/* answers with generated tokens */

struct endpoint {
	const char	*path;
	size_t		 len;
	unsigned	 flags;
	const char	*azure_tail;	/* after /openai/deployments/NAME; NULL
					   = Azure does not serve it */
	int		 idx;		/* counters' endpoint index */
};

/* The endpoint for a request path (without the query); never NULL: an
 * unknown path is "other", in Anthropic's shape under /v1/messages. */
const struct endpoint *endpoint_find(const char *path, size_t len);
/* The endpoint a request line names, read before its head is complete
 * (for the shape of a 431 or 400). */
const struct endpoint *endpoint_peek(const char *line, size_t len);
/* The counters' label of endpoint index I. */
const char *endpoint_label(int i);

#endif
