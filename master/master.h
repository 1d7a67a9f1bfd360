/*
 * master.h - the master process: binds sockets, creates the shared
 * segment, forks and supervises the workers and the collector, and turns
 * signals into reloads and stops.  It never serves traffic itself.
 * Called by sluiced.c.
 */
#ifndef SLUICE_MASTER_H
#define SLUICE_MASTER_H

#include <sys/types.h>

#include "common/config.h"

struct shm_segment;

int	 master_run(struct config *, const char *cfg_path,
	    struct shm_segment *, int *fds, int nfds, int admin_fd,
	    int ready_fd);

#endif
