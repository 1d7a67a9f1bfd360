/*
 * worker.h - a worker process (layer 4): what master/ may call.
 *
 * A worker owns its client connections, its per-upstream keep-alive pools
 * and one lane of the event ring.  Nothing in it is shared with another
 * process except through shm/.  The request path's modules and their
 * layers are listed in tests/layers.conf.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include "common/config.h"

struct shm_segment;
struct tls_server;

struct cache_arena;

/* The answer cache arena the next worker_main serves from (NULL: none);
 * the master sets it in the child, before worker_main. */
void	 worker_set_cache(struct cache_arena *);
/* Serve until told to stop, then exit; never returns.  TLS: the context
 * of the "listen ... ssl" sockets (worker/tls.h), or NULL. */
void	 worker_main(const struct config *, struct shm_segment *, int slot,
	    const int *listen_fds, int nfds, int admin_fd,
	    struct tls_server *tls) __attribute__((noreturn));

#endif
