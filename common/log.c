/*
 * log.c - one logging call for every process.
 *
 * A line is written with a single write(2) so that lines from several
 * processes appending to one file (O_APPEND) never interleave.  SIGUSR1
 * makes the master and its children reopen the file (logrotate).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static int	 log_fd = STDERR_FILENO;
static int	 log_to_syslog;
static enum log_level log_lvl = LOGL_INFO;
static char	 log_path[PATH_MAX];
static char	 log_role[32] = "sluiced";

int
log_init(const char *dest, enum log_level level)
{
	log_lvl = level;
	if (dest == NULL || *dest == '\0' || strcmp(dest, "stderr") == 0) {
		log_to_syslog = 0;
		log_path[0] = '\0';
		log_fd = STDERR_FILENO;
		return 0;
	}
	if (strcmp(dest, "syslog") == 0) {
		log_to_syslog = 1;
		openlog("sluiced", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		return 0;
	}
	snprintf(log_path, sizeof(log_path), "%s", dest);
	return log_reopen();
}

void
log_setrole(const char *role)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
}

int
log_reopen(void)
{
	int fd;

	if (log_path[0] == '\0')
		return 0;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (log_fd != STDERR_FILENO && log_fd != -1)
		close(log_fd);
	log_fd = fd;
	return 0;
}

/*
 * One message is one line: a control byte (a CR or LF from a client, an
 * upstream or a multi-line PostgreSQL error) becomes a '?', so nothing
 * that passes through a message can forge a line of its own.
 */
static void
log_defang(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void
vlog(int pri, const char *level, const char *fmt, va_list ap, int with_errno)
{
	char		 msg[1024], line[1280];
	int		 saved = errno, n;
	struct timespec	 ts;
	struct tm	 tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		size_t l = strlen(msg);
		snprintf(msg + l, sizeof(msg) - l, ": %s", strerror(saved));
	}
	log_defang(msg);
	if (log_to_syslog) {
		syslog(pri, "%s: %s", log_role, msg);
		errno = saved;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
	    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%d] %s: %s%s\n",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(),
	    log_role, level, msg);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (write(log_fd, line, n) == -1) {
		/* nowhere left to report it */
	}
	errno = saved;
}

#define LOGFN(name, pri, lvl, tag, err)				\
void									\
name(const char *fmt, ...)						\
{									\
	va_list ap;							\
	if (log_lvl < (lvl))						\
		return;							\
	va_start(ap, fmt);						\
	vlog(pri, tag, fmt, ap, err);					\
	va_end(ap);							\
}

LOGFN(log_warn, LOG_WARNING, LOGL_WARN, "warning: ", 1)
LOGFN(log_warnx, LOG_WARNING, LOGL_WARN, "warning: ", 0)
LOGFN(log_info, LOG_INFO, LOGL_INFO, "", 0)
LOGFN(log_debug, LOG_DEBUG, LOGL_DEBUG, "debug: ", 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, "fatal: ", fmt, ap, 1);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, "fatal: ", fmt, ap, 0);
	va_end(ap);
	exit(1);
}
