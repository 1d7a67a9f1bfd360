/*
 * load.h - usage events into PostgreSQL: one transaction that COPYs a
 * batch straight into usage_events and records, in the same commit,
 * which ring positions it holds; and the replay of one spool file
 * through it.
 *
 * The collector loads its batches and replays its spool with it, and
 * `sluicectl spool replay` replays a spool directory with it, so that the
 * two cannot drift apart.  Only sql/ and sluicectl include this.  It
 * owns its buffers, never the session (the caller connects it and
 * makes it ready with load_ready) and never the spool (the caller opens
 * it, and so holds its lock).  It logs a file it sets aside, and a batch
 * it had to load through the primary key's conflict check; success is
 * the caller's to report.
 */
#ifndef SLUICE_LOAD_H
#define SLUICE_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "common/event.h"

struct pgsession;
struct spool;

#define LOAD_EPOCH_LEN	16

/*
 * Where one transaction's events come from, read twice: once to plan
 * (the positions to claim, the months that need a partition) and once
 * to send.  EPOCH, LANE and POS say where an event was in the ring; an
 * event whose epoch is NULL or all zero (a spool file from before schema
 * 4) is loaded through the conflict check instead.
 */
struct load_src {
	/* back to the first event: 0, or -1 with errno set */
	int	(*rewind)(struct load_src *);
	/* the next event: 1, 0 at the end, -1 with errno set */
	int	(*next)(struct load_src *, const struct usage_event **ev,
		    const uint8_t **epoch, uint32_t *lane, uint64_t *pos);
};

/* Positions [lo, hi) of one lane. */
struct load_span {
	uint32_t	 lane;
	uint64_t	 lo;
	uint64_t	 hi;
};

struct load {
	struct pgsession	*db;
	char			*buf;
	size_t			 buflen;
	struct usage_event	*rbuf;		/* events read from a file */

	/* partitions known to exist for [covered_lo, covered_hi), us */
	int64_t			 covered_lo;
	int64_t			 covered_hi;

	/* the plan of the transaction under way */
	uint8_t			 epoch[LOAD_EPOCH_LEN];
	int			 marked;	/* one epoch, rising positions */
	uint64_t		 rows;
	struct load_span	*spans;		/* to claim */
	size_t			 nspans, spanscap;
	struct load_span	*seen;		/* already in the table */
	size_t			 nseen, seencap;
	int32_t			*months;	/* that may lack a partition */
	size_t			 nmonths, monthscap;
};

/* What load_file did with a spool file. */
enum load_rc {
	LOAD_OK,		/* committed and removed */
	LOAD_KEPT,		/* committed, but the file could not be removed */
	LOAD_BAD,		/* unreadable or refused: set aside as .bad */
	LOAD_RETRY,		/* a read or rename failed; still in the queue */
	LOAD_DOWN,		/* the connection was lost; now PGS_DOWN */
};

/* What load_run did with a batch. */
enum load_tx {
	LOAD_TX_OK,		/* committed */
	LOAD_TX_DATA,		/* PostgreSQL refused the rows; still up */
	LOAD_TX_DOWN,		/* the connection was lost; now PGS_DOWN */
	LOAD_TX_BUSY,		/* a lock was not granted in time; still up */
	LOAD_TX_SRC,		/* the source failed (errno); rolled back */
};

/* Buffers for loading through DB; -1 when out of memory. */
int		 load_init(struct load *, struct pgsession *db);
void		 load_free(struct load *);

/*
 * Make a fresh connection fit for loading: UTF-8, the schema current,
 * durable commits, the staging table of the conflict check, and no wait
 * for a lock longer than LOAD_LOCK_TIMEOUT (a session that holds
 * usage_events locked, a LOCK TABLE or an ALTER TABLE, must not stall
 * the collector while the ring fills: LOAD_TX_BUSY says to spool).  The schema
 * version, or -1 with the session's err set.
 */
int		 load_ready(struct pgsession *);

/*
 * The partitions of [LO_US, HI_US) exist (parts_maintain said so): rows
 * in that span need no check for their month.
 */
void		 load_covered(struct load *, int64_t lo_us, int64_t hi_us);

/*
 * Load what SRC holds in one transaction: the positions already
 * committed are skipped, the rest COPYed into usage_events, the
 * positions recorded, all in one commit.  *ROWS and *INSERTED get what
 * SRC held and what was new.
 */
enum load_tx	 load_run(struct load *, struct load_src *src, uint64_t *rows,
		    uint64_t *inserted);

/*
 * A streamed load: the transaction and its COPY open at a batch's first
 * events and are fed as more arrive, so that PostgreSQL's work spreads
 * over the batch's life instead of coming in one burst at its end (a
 * thousand rows are ten milliseconds of its CPU, and on a shared host
 * that burst is the tail latency of every request waiting behind it).
 * Only ring events stream: one epoch, rising positions, months whose
 * partitions are known (load_covered).  The positions are claimed just
 * before the commit.  Anything else (a position committed before, a row
 * refused, a month to make) fails the stream: the caller aborts it and
 * loads the same events with load_run, which sorts each case out.
 *
 * begin: BEGIN and COPY; put: SRC's events into the COPY, sent now;
 * end: claim and commit.  Each 0; -1 with the session's err and
 * SQLSTATE set; put and end 1 for events that do not stream (no error).
 * abort: roll back, or mark the session down if it is lost.
 */
int		 load_stream_begin(struct load *);
int		 load_stream_put(struct load *, struct load_src *src,
		    uint64_t *rows);
int		 load_stream_end(struct load *);
void		 load_stream_abort(struct load *, int64_t now_ms);

/*
 * Load the spool file PATH of SP in one transaction and remove it once
 * committed; *ROWS and *INSERTED get what it held and what was new.  A
 * file that is not ours, or that the server refuses as data, is
 * quarantined (LOAD_BAD, or LOAD_RETRY if the rename failed).
 */
enum load_rc	 load_file(struct load *, struct spool *sp, const char *path,
		    uint64_t *rows, uint64_t *inserted);

#endif
