/*
 * spool.h - the on-disk spool the collector writes usage events to while
 * PostgreSQL is unreachable, and replays from once it is back.
 *
 * Owned by one process at a time: the collector, or `sluicectl spool
 * replay`; spool_open takes an exclusive flock(2) on the directory, held
 * until spool_close.
 * A spool file is binary: a 16-byte header (magic "SLUICESP", format
 * version, sizeof(struct usage_event), native byte order) followed by raw
 * struct usage_event records.  Files are named spool-<16 hex digits>.bin
 * after a sequence that only grows, so name order is write order.  A file
 * is written under a .tmp name, fsync'ed, renamed and the directory
 * fsync'ed: a .bin file is whole and durable.
 */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/event.h"

#define SPOOL_MAGIC	"SLUICESP"
#define SPOOL_VERSION	1
/*
 * Older event sizes a spool may hold.  Fields are only ever added at the
 * end of struct usage_event, so an older event is a prefix of today's:
 * its fields end at ..._FIELDS, and it was padded to 8 bytes.
 *   1: before client_request_id and anthropic_beta
 *   2: before the cache-write, reasoning and served-model fields
 *   3: before the origin (epoch, lane, position): replayed through the
 *      primary key's conflict check, as the loader cannot tell what of
 *      them PostgreSQL already holds
 *   4: before the answer cache's cost_saved_micro_usd and cache_hit
 */
#define SPOOL_PAD8(n)		(((n) + 7) & ~(size_t)7)
#define SPOOL_EVENT_V1_FIELDS	offsetof(struct usage_event, client_request_id)
#define SPOOL_EVENT_V1		SPOOL_PAD8(SPOOL_EVENT_V1_FIELDS)
#define SPOOL_EVENT_V2_FIELDS	offsetof(struct usage_event, cache_write_5m_tokens)
#define SPOOL_EVENT_V2		SPOOL_PAD8(SPOOL_EVENT_V2_FIELDS)
#define SPOOL_EVENT_V3_FIELDS	offsetof(struct usage_event, origin_epoch)
#define SPOOL_EVENT_V3		SPOOL_PAD8(SPOOL_EVENT_V3_FIELDS)
#define SPOOL_EVENT_V4_FIELDS	offsetof(struct usage_event, cost_saved_micro_usd)
#define SPOOL_EVENT_V4		SPOOL_PAD8(SPOOL_EVENT_V4_FIELDS)

struct spool;
struct spool_reader;

/*
 * Open DIR, creating it (mode 0700) if missing, and count the files
 * waiting for replay.  A .tmp file left by a crash is adopted as a spool
 * file (its whole records are valid; loading is idempotent).  NULL with
 * errno set and a message in ERR on failure; EWOULDBLOCK when another
 * process holds the directory.
 */
struct spool	*spool_open(const char *dir, char *err, size_t errlen);
void		 spool_close(struct spool *);
const char	*spool_dir(const struct spool *);
/* Files waiting for replay. */
size_t		 spool_pending(const struct spool *);

/*
 * Write one file: spool_begin, any number of spool_add, then spool_commit
 * (durable when it returns 0) or spool_abort.  -1 with errno on failure;
 * after a failed add or commit call spool_abort.
 */
int		 spool_begin(struct spool *);
int		 spool_add(struct spool *, const struct usage_event *);
/* On success *BYTES (if not NULL) gets the file size, NAME its name. */
int		 spool_commit(struct spool *, uint64_t *bytes, char *name,
		    size_t namelen);
void		 spool_abort(struct spool *);

/*
 * The oldest spool file: 1 and its full path in PATH, 0 if none, -1 on
 * error.
 */
int		 spool_oldest(struct spool *, char *path, size_t pathlen);
/* Delete a replayed file. */
int		 spool_remove(struct spool *, const char *path);
/* Set an unreadable file aside as PATH.bad, out of the replay queue. */
int		 spool_quarantine(struct spool *, const char *path);

/*
 * Read a spool file.  spool_reader_open fails with EINVAL (and a message
 * in ERR) for a header that is not ours or a different event size: such a
 * file should be quarantined, not retried.  spool_read returns up to MAX
 * whole records, 0 at the end (a truncated tail is ignored with a
 * warning), -1 on a read error.
 */
struct spool_reader *spool_reader_open(const char *path, char *err,
		    size_t errlen);
ssize_t		 spool_read(struct spool_reader *, struct usage_event *evs,
		    size_t max);
void		 spool_reader_close(struct spool_reader *);

#endif
