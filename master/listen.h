/*
 * listen.h - the master's listening sockets: bound before the first fork,
 * inherited by every worker.  Called by sluiced.c and master.c (reload
 * keeps the sockets when the addresses did not change).
 */
#ifndef SLUICE_LISTEN_H
#define SLUICE_LISTEN_H

#include <stddef.h>

#include "common/config.h"

/* Bind and listen on every cfg->listen address. */
int	 listen_open(const struct config *, int *fds, char *err, size_t);
/* 1 if both configs listen on the same addresses in the same order. */
int	 listen_same(const struct config *, const struct config *);
/* Bind admin_listen; *fd = -1 when the config has none.  0 ok, -1 err. */
int	 admin_open(const struct config *, int *fd, char *err, size_t);
/* 1 if both configs have the same admin_listen (or neither has one). */
int	 admin_same(const struct config *, const struct config *);

#endif
