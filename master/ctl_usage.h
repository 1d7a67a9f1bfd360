/*
 * ctl_usage.h - `sluicectl usage`: who spent what, as a table in the
 * terminal or CSV for scripts, from the usage_events of the configured
 * database.
 *
 * Called by sluicectl's command table only.  It reads PostgreSQL and
 * nothing else: never the daemon, never the spool, never writes.
 */
#ifndef SLUICE_CTL_USAGE_H
#define SLUICE_CTL_USAGE_H

/*
 * sluicectl usage [-c file] [--by key|team|tag|user|model] [--since
 * 24h|7d|month|INTERVAL] [--limit N] [--csv]: CONFFILE is sluicectl's -c,
 * ARGV the command's own.  0 ok, -1 with a message on stderr.
 */
int	 ctl_usage(const char *conffile, int argc, char **argv);

#endif
