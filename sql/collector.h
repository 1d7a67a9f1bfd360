/*
 * collector.h - the collector process: the only reader of the usage event
 * ring and the only process that talks to PostgreSQL.
 *
 * The master forks it once the shared segment exists and respawns it if it
 * dies; collector_main never returns.  SIGTERM or SIGQUIT (sent after every
 * worker has exited) make it drain every lane and exit 0; SIGUSR1 reopens
 * the log.  The counters describe this process only.
 */
#ifndef SLUICE_COLLECTOR_H
#define SLUICE_COLLECTOR_H

#include <stdint.h>

struct config;
struct shm_segment;

struct collector_stats {
	uint64_t	 rows_written;		/* new rows committed to PG */
	uint64_t	 rows_duplicate;	/* rows PG already had */
	uint64_t	 rows_spooled;		/* rows written to spool files */
	uint64_t	 rows_replayed;		/* spooled rows loaded into PG */
	uint64_t	 batches;		/* transactions committed */
	uint64_t	 spool_bytes;		/* bytes written to spool files */
	uint64_t	 spool_files;		/* spool files waiting */
	int		 connected;		/* 1 while PG is reachable */
	char		 last_error[256];	/* "" if none yet */
};

void	 collector_main(const struct config *, struct shm_segment *)
	    __attribute__((noreturn));
/* A copy of this process's counters. */
void	 collector_stats(struct collector_stats *);

#endif
