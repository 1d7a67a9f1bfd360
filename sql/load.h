/*
 * load.h - usage events into PostgreSQL: one transaction that COPYs rows
 * into the session's staging table and moves the new ones into
 * usage_events, and the replay of one spool file through it.
 *
 * The collector loads its batches and replays its spool with it, and
 * `sluicectl spool replay` replays a spool directory with it, so that the
 * two cannot drift apart.  Only sql/ and sluicectl include this.  It
 * owns its COPY buffer, never the session (the caller connects it and
 * makes it ready with load_ready) and never the spool (the caller opens
 * it, and so holds its lock).  It logs a file it sets aside; success is
 * the caller's to report.
 */
#ifndef SLUICE_LOAD_H
#define SLUICE_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "common/event.h"

struct pgsession;
struct spool;

struct load {
	struct pgsession	*db;
	char			*buf;
	size_t			 buflen;
	struct usage_event	*rbuf;		/* events read from a file */
};

/* What load_file did with a spool file. */
enum load_rc {
	LOAD_OK,		/* committed and removed */
	LOAD_KEPT,		/* committed, but the file could not be removed */
	LOAD_BAD,		/* unreadable or refused: set aside as .bad */
	LOAD_RETRY,		/* a read or rename failed; still in the queue */
	LOAD_DOWN,		/* the connection was lost; now PGS_DOWN */
};

/* Buffers for loading through DB; -1 when out of memory. */
int		 load_init(struct load *, struct pgsession *db);
void		 load_free(struct load *);

/*
 * Make a fresh connection fit for loading: UTF-8, the schema current,
 * durable commits, the staging table.  The schema version, or -1 with
 * the session's err set.
 */
int		 load_ready(struct pgsession *);

/*
 * One transaction: load_begin, load_put for every event, load_commit
 * with the count of rows that were new in *INSERTED.  -1 on failure, for
 * the caller to pass to pgs_failed().
 */
int		 load_begin(struct load *);
int		 load_put(struct load *, const struct usage_event *);
int		 load_commit(struct load *, uint64_t *inserted);

/*
 * Load the spool file PATH of SP in one transaction and remove it once
 * committed; *ROWS and *INSERTED get what it held and what was new.  A
 * file that is not ours, or that the server refuses as data, is
 * quarantined (LOAD_BAD, or LOAD_RETRY if the rename failed).
 */
enum load_rc	 load_file(struct load *, struct spool *sp, const char *path,
		    uint64_t *rows, uint64_t *inserted);

#endif
