/*
 * schema.h - the PostgreSQL schema of sluice: the usage_events table and
 * the views operators query, created and upgraded by sluice itself.
 *
 * Called by the collector after every (re)connect and by `sluicectl db
 * init`; both may run at once, the migrations serialise on an advisory
 * lock.  Only sql/ talks to PostgreSQL.
 */
#ifndef SLUICE_SCHEMA_H
#define SLUICE_SCHEMA_H

struct pgsession;

/* The schema version this build creates. */
#define SCHEMA_VERSION	8

/*
 * Create the schema or upgrade it to SCHEMA_VERSION, in one transaction.
 * Returns the version the database is at afterwards (which may be newer
 * than SCHEMA_VERSION if a newer sluice upgraded it; it is then left
 * alone), or -1 with the reason in the session's err.  The session must
 * be connected and idle (no transaction open).
 */
int	 schema_init(struct pgsession *);

#endif
