/*
 * admin.h - GET /metrics, /healthz and /status on admin_listen (layer 1).
 *
 * Set up and stopped by worker.c.  Its connections are not clients: not
 * metered, one answer each, never on the request path.  Knows struct
 * worker and the shared segment, never a client or a request.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "worker/wctx.h"

struct shm_segment;

/* Accept on FD in this worker's loop; 0, or -1 (no counters, no memory). */
int	 admin_init(struct worker *, struct shm_segment *, int fd);
void	 admin_stop(struct worker *);

#endif
