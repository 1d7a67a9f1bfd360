/*
 * collector.h - the collector process: the only reader of the usage event
 * ring and the only process that talks to PostgreSQL.
 *
 * The master forks it once the shared segment exists and respawns it if it
 * dies; collector_main never returns.  SIGTERM or SIGQUIT (sent after every
 * worker has exited) make it try PostgreSQL once more, drain every lane
 * and replay the spool into it (or spool what it cannot load), and exit
 * 0; SIGUSR1 reopens the log.  What it has done is published in the counters region
 * (shm/counters.h), summed over its restarts; nothing else reads it.
 */
#ifndef SLUICE_COLLECTOR_H
#define SLUICE_COLLECTOR_H

struct config;
struct shm_segment;

void	 collector_main(const struct config *, struct shm_segment *)
	    __attribute__((noreturn));

#endif
