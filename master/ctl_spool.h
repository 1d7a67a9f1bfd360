/*
 * ctl_spool.h - `sluicectl spool replay`: a spool directory loaded into
 * PostgreSQL without the daemon, for a host that is being retired or a
 * spool copied from one.
 *
 * Called by sluicectl's command table only.  It loads through sql/load.h,
 * as the collector does, and takes the directory's lock (sql/spool.h), so
 * it refuses a directory a running collector owns; it never signals or
 * asks the daemon anything.
 */
#ifndef SLUICE_CTL_SPOOL_H
#define SLUICE_CTL_SPOOL_H

struct config;

/*
 * sluicectl spool replay: load DIR (the caller's choice: the operand or
 * spool_dir) into the database of CFG.  0 when every file was loaded and
 * removed, -1 otherwise (messages on stderr).
 */
int	 ctl_spool_replay(const struct config *cfg, const char *dir);

#endif
