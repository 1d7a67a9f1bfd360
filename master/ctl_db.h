/*
 * ctl_db.h - sluicectl's connection to the usage database: the one place
 * its commands check that a database is configured and connect to it,
 * with the same messages whichever command asks.
 *
 * Called by sluicectl's commands only (sluicectl.c, ctl_usage.c,
 * ctl_spool.c).  It connects and nothing else: the schema, the queries
 * and closing the session are the caller's.
 */
#ifndef SLUICE_CTL_DB_H
#define SLUICE_CTL_DB_H

struct config;
struct pgsession;

/* S connected to CFG's database: 0, or -1 with a message on stderr. */
int	 ctl_db_connect(const struct config *cfg, struct pgsession *s);

#endif
