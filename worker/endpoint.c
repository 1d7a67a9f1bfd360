/*
 * endpoint.c - the endpoint table.  Its order is the counters' endpoint
 * index (shm/counters.h CNT_ENDPOINTS), and so the order of /metrics.
 */
#include <string.h>

#include "shm/counters.h"
#include "worker/endpoint.h"

#define EP(p)	p, sizeof(p) - 1

static const struct endpoint table[] = {
	{ EP("/v1/chat/completions"), EP_PROXIED | EP_STREAM_USAGE |
	    EP_GENERATES, "/chat/completions", 0 },
	{ EP("/v1/completions"), EP_PROXIED | EP_STREAM_USAGE | EP_GENERATES,
	    "/completions", 1 },
	{ EP("/v1/embeddings"), EP_PROXIED, "/embeddings", 2 },
	{ EP("/v1/responses"), EP_PROXIED | EP_GENERATES, NULL, 3 },
	{ EP("/v1/messages"), EP_PROXIED | EP_ANTHROPIC | EP_GENERATES, NULL,
	    4 },
	{ EP("/v1/messages/count_tokens"), EP_PROXIED | EP_ANTHROPIC, NULL, 5 },
	{ EP("/v1/models"), EP_LOCAL, NULL, 6 },
};
#define NTABLE	(sizeof(table) / sizeof(table[0]))

static const struct endpoint other = { EP("other"), 0, NULL, 7 };
static const struct endpoint other_anthropic = { EP("other"), EP_ANTHROPIC,
    NULL, 7 };

_Static_assert(NTABLE + 1 == CNT_ENDPOINTS, "one counter per endpoint");

const struct endpoint *
endpoint_find(const char *path, size_t len)
{
	size_t i;

	for (i = 0; i < NTABLE; i++)
		if (table[i].len == len && memcmp(table[i].path, path, len) == 0)
			return &table[i];
	if (len >= 12 && memcmp(path, "/v1/messages", 12) == 0)
		return &other_anthropic;
	return &other;
}

const struct endpoint *
endpoint_peek(const char *line, size_t n)
{
	const char	*sp = memchr(line, ' ', n < 16 ? n : 16), *end;
	size_t		 len;

	if (sp == NULL)
		return &other;
	sp++;
	len = (size_t)(line + n - sp);
	if ((end = memchr(sp, ' ', len)) != NULL)
		len = (size_t)(end - sp);
	if ((end = memchr(sp, '?', len)) != NULL)
		len = (size_t)(end - sp);
	return endpoint_find(sp, len);
}

const char *
endpoint_label(int i)
{
	size_t k;

	for (k = 0; k < NTABLE; k++)
		if (table[k].idx == i)
			return table[k].path;
	return other.path;
}
