/*
 * master.h - the master process: binds sockets, creates the shared
 * segment, forks and supervises the workers and the collector, and turns
 * signals into reloads and stops.  It never serves traffic itself.
 * Only master/ includes this header.
 */
#ifndef SLUICE_MASTER_H
#define SLUICE_MASTER_H

#include <sys/types.h>

#include "common/config.h"

struct shm_segment;

/* listen.c: bind and listen on every cfg->listen address. */
int	 listen_open(const struct config *, int *fds, char *err, size_t);
/* 1 if both configs listen on the same addresses in the same order. */
int	 listen_same(const struct config *, const struct config *);

/* proctitle.c: what ps shows ("sluice: worker 3"). */
void	 proctitle_init(int argc, char **argv);
void	 proctitle_set(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

/* master.c */
int	 master_run(struct config *, const char *cfg_path,
	    struct shm_segment *, int *fds, int nfds, int ready_fd);
/* Drop to cfg->user in a child (no-op when not root or no user set). */
void	 master_drop_privileges(const struct config *);

#endif
