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
/* Bind admin_listen; *fd = -1 when the config has none.  0 ok, -1 err. */
int	 admin_open(const struct config *, int *fd, char *err, size_t);
/* 1 if both configs have the same admin_listen (or neither has one). */
int	 admin_same(const struct config *, const struct config *);

/* ctl_daemon.c: sluicectl status, reload and stop (exit status). */
int	 ctl_status(const char *conffile, int argc, char **argv);
int	 ctl_reload(const char *conffile, int argc, char **argv);
int	 ctl_stop(const char *conffile, int argc, char **argv);

/* proctitle.c: what ps shows ("sluice: worker 3"). */
void	 proctitle_init(int argc, char **argv);
void	 proctitle_set(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

/* master.c */
int	 master_run(struct config *, const char *cfg_path,
	    struct shm_segment *, int *fds, int nfds, int admin_fd,
	    int ready_fd);
/* Drop to cfg->user in a child (no-op when not root or no user set). */
void	 master_drop_privileges(const struct config *);

#endif
