/*
 * log.h - the one logging call, OpenBSD style.
 *
 * Every process logs through these.  Lines carry a timestamp, the process
 * role and pid.  fatal()/fatalx() are for startup only: they exit(1).
 * fatal() appends strerror(errno), fatalx() does not.
 *
 * The lowest module of all: it includes no other sluice header, so that
 * every module, the configuration loader included, may log.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

/* The least a line must matter to be written: the "log" directive's level. */
enum log_level {
	LOGL_WARN = 0,
	LOGL_INFO,
	LOGL_DEBUG,
};

/* DEST: "stderr", "syslog" or a file path. */
int	 log_init(const char *dest, enum log_level level);
void	 log_setrole(const char *role);	/* "master", "worker 3", ... */
int	 log_reopen(void);			/* SIGUSR1 */

void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
