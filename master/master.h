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
struct tls_server;

/* TLS: the context for "listen ... ssl" (worker/tls.h), or NULL; the
 * master owns it from here, and builds the next one on reload. */
int	 master_run(struct config *, const char *cfg_path,
	    struct shm_segment *, int *fds, int nfds, int admin_fd,
	    int ready_fd, struct tls_server *tls);

#endif
