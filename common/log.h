/*
 * log.h - the one logging call, OpenBSD style.
 *
 * Every process logs through these.  Lines carry a timestamp, the process
 * role and pid.  fatal()/fatalx() are for startup only: they exit(1).
 * fatal() appends strerror(errno), fatalx() does not.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

/* DEST: "stderr", "syslog" or a file path.  LEVEL: LOGL_* of config.h. */
int	 log_init(const char *dest, int level);
void	 log_setrole(const char *role);	/* "master", "worker 3", ... */
int	 log_reopen(void);			/* SIGUSR1 */
int	 log_level(void);

void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
