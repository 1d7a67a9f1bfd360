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

#include <stddef.h>

/* Debian keeps libpq-fe.h under postgresql/ unless -I says otherwise. */
#if defined(__has_include)
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
#else
#include <libpq-fe.h>
#endif

/* The schema version this build creates. */
#define SCHEMA_VERSION	1

/*
 * Create the schema or upgrade it to SCHEMA_VERSION, in one transaction.
 * Returns the version the database is at afterwards (which may be newer
 * than SCHEMA_VERSION if a newer sluice upgraded it; it is then left
 * alone), or -1 with a message in ERR.  CONN must be idle (no transaction
 * open).
 */
int	 schema_init(PGconn *conn, char *err, size_t errlen);

#endif
