/*
 * copyrow.h - a usage event as one row of PostgreSQL's binary COPY format
 * (PGCOPY), and the header and trailer around a stream of such rows.
 *
 * Pure: it fills the caller's buffer and knows neither libpq nor the
 * connection nor the table beyond its column list (COPY_COLUMNS, in the
 * order the row carries them).  The collector calls it for every row it
 * loads; the unit test and the fuzz target check its bytes.  It never
 * fails and never writes more than it says: every field is made
 * acceptable to PostgreSQL here, so that one odd event cannot make the
 * server refuse a whole batch.
 */
#ifndef SLUICE_COPYROW_H
#define SLUICE_COPYROW_H

#include <stddef.h>
#include <stdint.h>

#include "common/event.h"

/* The columns of usage_events a row fills, in its order. */
#define COPY_COLUMNS							\
	"request_id, ts_start, key_name, model, upstream, endpoint, "	\
	"stream, status, error_class, prompt_tokens, completion_tokens, " \
	"cached_tokens, cost_micro_usd, usage_source, attempts, "	\
	"bytes_in, bytes_out, latency_us, ttfb_us, overhead_us, "	\
	"client_addr, worker_pid, client_request_id, anthropic_beta, "	\
	"cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, " \
	"served_model, client_format, upstream_format, team, end_user, tags, " \
	"cache_hit, cost_saved_micro_usd"
#define COPY_NFIELDS		35

#define COPY_HEADER_LEN		19
#define COPY_TRAILER_LEN	2
/*
 * The longest row: the field count, a length word per field, the widest
 * value of each fixed-size field (twelve int8s, an IPv6 inet, "estimated")
 * and every text field at the full width of its slot in the event; the
 * tags array: its 20-byte header and a length word per tag.
 */
#define COPY_ROW_MAX	(2 + 4 * COPY_NFIELDS +				\
	16 + 8 + 1 + 2 + 2 + 13 * 8 + 1 + 20 + 4 + sizeof("estimated") - 1 + \
	EV_KEY_MAX + EV_MODEL_MAX + EV_UPSTREAM_MAX + EV_ENDPOINT_MAX +	\
	EV_ERROR_MAX + EV_CLIENT_ID_MAX + EV_BETA_MAX + EV_MODEL_MAX +	\
	2 * EV_FORMAT_MAX + EV_KEY_MAX + EV_USER_MAX + 20 +		\
	EV_TAGS_MAX * (4 + EV_TAG_MAX))

/* The stream's header into BUF; returns COPY_HEADER_LEN. */
size_t	 copy_header(char *buf);
/*
 * One row for EV into BUF, which has room for COPY_ROW_MAX bytes; returns
 * the bytes written.  Text that is not valid UTF-8 has each bad byte
 * replaced by '?'; key_name, upstream, error_class, client_request_id,
 * anthropic_beta, served_model, client_format, upstream_format, team,
 * end_user and tags are NULL when empty; tags is a text[] of the
 * comma-separated names;
 * a negative counter (-1 = unknown) is NULL; ts_start is clamped to
 * 1970..9999; client_addr ("1.2.3.4", "::1" or "[::1]") is an inet, or
 * NULL when it does not parse.
 */
size_t	 copy_row(char *buf, const struct usage_event *ev);
/* The ts_start EV's row carries: clamped to 1970..9999, in us. */
int64_t	 copy_ts_us(const struct usage_event *ev);
/* The stream's trailer into BUF; returns COPY_TRAILER_LEN. */
size_t	 copy_trailer(char *buf);

#endif
