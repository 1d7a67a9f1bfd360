/*
 * event.h - one usage event, the unit that becomes one row of usage_events.
 *
 * Fixed width so that it lives in a ring slot in shared memory without
 * pointers: a worker fills it on the stack when a request finishes and
 * copies it into its lane; the collector copies it out and COPYs it into
 * PostgreSQL.  Strings are NUL-terminated and truncated to fit.
 */
#ifndef SLUICE_EVENT_H
#define SLUICE_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum usage_source {
	USAGE_NONE = 0,		/* no usage reported and none estimated */
	USAGE_UPSTREAM,		/* the upstream reported it */
	USAGE_ESTIMATED,	/* sluice estimated it */
};

#define EV_KEY_MAX	64
#define EV_MODEL_MAX	128
#define EV_UPSTREAM_MAX	64
#define EV_ENDPOINT_MAX	48
#define EV_ERROR_MAX	32
#define EV_ADDR_MAX	48
#define EV_CLIENT_ID_MAX 72
#define EV_BETA_MAX	128
#define EV_USER_MAX	257	/* Anthropic's metadata.user_id: 256 */
#define EV_TAG_MAX	64	/* bytes of one tag */
#define EV_TAGS_MAX	16	/* tags a request may carry */
#define EV_TAGS_BYTES	(EV_TAGS_MAX * (EV_TAG_MAX + 1))	/* a,b,c */
#define EV_FORMAT_MAX	16

struct usage_event {
	uint8_t		 request_id[16];	/* UUIDv7 bytes, sluice's own */
	int64_t		 ts_start_us;		/* wall clock, us since epoch */
	int64_t		 prompt_tokens;		/* -1 = unknown */
	int64_t		 completion_tokens;	/* -1 = unknown */
	int64_t		 cached_tokens;		/* -1 = unknown */
	int64_t		 cost_micro_usd;	/* -1 = unknown (no price) */
	int64_t		 bytes_in;		/* request bytes from the client */
	int64_t		 bytes_out;		/* response bytes to the client */
	int64_t		 latency_us;		/* first request byte to last response byte */
	int64_t		 ttfb_us;		/* upstream request sent to first byte, -1 = none */
	int64_t		 overhead_us;		/* time spent in sluice itself */
	int32_t		 worker_pid;
	uint16_t	 status;		/* HTTP status sent to the client */
	uint8_t		 stream;		/* 1 = the client asked for SSE */
	uint8_t		 usage_source;		/* enum usage_source */
	uint8_t		 attempts;		/* upstream attempts made */
	char		 key_name[EV_KEY_MAX];
	char		 model[EV_MODEL_MAX];	/* as requested */
	char		 upstream[EV_UPSTREAM_MAX];	/* "" = none reached */
	char		 endpoint[EV_ENDPOINT_MAX];	/* "/v1/chat/completions" */
	char		 error_class[EV_ERROR_MAX];	/* "" = none */
	char		 client_addr[EV_ADDR_MAX];
	/*
	 * Added in spool format 1's second event size: an older spool's
	 * events are a prefix of this struct, read with the rest zeroed.
	 */
	char		 client_request_id[EV_CLIENT_ID_MAX];	/* as sent, "" = none */
	char		 anthropic_beta[EV_BETA_MAX];	/* betas forwarded */
	/* Added in the third event size (schema version 3). */
	int64_t		 cache_write_5m_tokens;	/* -1 = unknown */
	int64_t		 cache_write_1h_tokens;	/* -1 = unknown */
	int64_t		 reasoning_tokens;	/* -1 = unknown */
	char		 served_model[EV_MODEL_MAX];	/* the answer's "model" */
	/*
	 * Added in the fourth event size (schema versions 4 to 6).
	 *
	 * Where the event was in the ring, stamped by the collector when it
	 * spools it (zero in a ring slot, where the slot's position says
	 * it).  The shared segment's epoch, the lane and the position name
	 * the event for good, on any host, so that a replayed spool skips
	 * what PostgreSQL already holds (sql/load.c).
	 */
	uint8_t		 origin_epoch[16];	/* all zero = unknown */
	uint64_t	 origin_pos;
	uint32_t	 origin_lane;
	/* the formats: the client's, and the upstream's (translation) */
	char		 client_format[EV_FORMAT_MAX];	/* "openai" | "anthropic" */
	char		 upstream_format[EV_FORMAT_MAX];	/* "" = none reached */
	/* for whom: kept last, ev_clear empties them by their first byte */
	char		 team[EV_KEY_MAX];	/* the key's team, "" = none */
	char		 end_user[EV_USER_MAX];	/* "" = none said */
	char		 tags[EV_TAGS_BYTES];	/* "a,b": printable, no commas
						   inside one; "" = none */
	/*
	 * Added in the fifth event size (schema version 7): the answer
	 * cache.  A hit is billed nothing (cost_micro_usd 0) and carries
	 * what the stored answer cost here, -1 = unknown (no price).
	 */
	int64_t		 cost_saved_micro_usd;	/* a hit's; 0 otherwise */
	uint8_t		 cache_hit;		/* 1 = answered from the cache */
};

/*
 * Set a string field of CAP bytes to the N bytes at S, truncated to fit
 * with its NUL, as snprintf's "%.*s" would (S holds no NUL): three of
 * those per request were 5 % of a small request's instructions.
 */
static inline void
ev_str(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/*
 * Make EV a blank event for the next request: every field zero, the
 * attribution strings at the end emptied by their first byte (every
 * reader stops at the NUL), so that a reset does not write the 1.3 KB
 * they take on every request.
 */
static inline void
ev_clear(struct usage_event *ev)
{
	__builtin_memset(ev, 0, __builtin_offsetof(struct usage_event, team));
	ev->team[0] = ev->end_user[0] = ev->tags[0] = '\0';
	ev->cost_saved_micro_usd = 0;
	ev->cache_hit = 0;
}

#endif
