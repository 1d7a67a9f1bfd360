/*
 * ctl_daemon.h - sluicectl's commands that talk to a running daemon:
 * status (from the shared counters), reload and stop (signals to the
 * master, checked through its pid file).  Called by sluicectl.c only;
 * each returns sluicectl's exit status.
 */
#ifndef SLUICE_CTL_DAEMON_H
#define SLUICE_CTL_DAEMON_H

int	 ctl_status(const char *conffile, int argc, char **argv);
int	 ctl_reload(const char *conffile, int argc, char **argv);
int	 ctl_stop(const char *conffile, int argc, char **argv);
/* cache flush [KEY], through admin_listen */
int	 ctl_cache_flush(const char *conffile, int argc, char **argv);

#endif
