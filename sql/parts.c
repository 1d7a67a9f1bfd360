/*
 * parts.c - usage_events' partitions, one per UTC month.
 *
 * A row whose month has no partition makes PostgreSQL refuse the whole
 * COPY, so partitions are made before they are needed: this month's
 * and next month's whenever the collector connects and every hour, so
 * that the first rows of a month find theirs made weeks ago.  A row
 * outside that span (a spool replayed late, a wrong clock) gets its
 * month made by the load itself, in its own transaction (load.c).
 *
 * The SQL side is the schema's (sluice_usage_partition,
 * sluice_usage_retain, schema.c): both serialise on one advisory lock,
 * so the collectors of several hosts may race to make a month.  Making
 * or dropping a partition locks usage_events against every other
 * session for a moment; maintenance asks for the lock with a timeout and
 * tries again an hour later rather than queue the loads behind a long
 * report.  Retention drops whole partitions, never rows: a month goes
 * once every row it can hold is older than the retention.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "sql/parts.h"
#include "sql/pgsession.h"

#define PARTS_LOCK_TIMEOUT	"1s"

int32_t
parts_month(int64_t ts_us)
{
	struct tm	 tm;
	time_t		 t = (time_t)(ts_us / 1000000);

	if (ts_us < 0 || gmtime_r(&t, &tm) == NULL)
		return 0;
	return (int32_t)((tm.tm_year - 70) * 12 + tm.tm_mon);
}

int64_t
parts_month_start(int32_t m)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = 70 + m / 12;
	tm.tm_mon = m % 12;
	tm.tm_mday = 1;
	return (int64_t)timegm(&tm) * 1000000;
}

int
parts_ensure(struct pgsession *s, const int32_t *months, size_t n)
{
	char	*sql, *p;
	size_t	 len, i;
	int	 rc;

	if (n == 0)
		return 0;
	/* one statement for them all: an array of epoch seconds */
	len = 192 + n * 24;
	if ((sql = malloc(len)) == NULL) {
		pgs_set_error(s, "out of memory");
		return -1;
	}
	/*
	 * Making a partition waits for every query on usage_events: bounded,
	 * as in parts_maintain.  The bound stays for the rest of the load's
	 * transaction (TO DEFAULT would drop the session's own bound).
	 */
	p = sql + snprintf(sql, len, "SET LOCAL lock_timeout TO '"
	    PARTS_LOCK_TIMEOUT "'; SELECT sluice_usage_partition("
	    "to_timestamp(m)) FROM unnest('{");
	for (i = 0; i < n; i++)
		p += snprintf(p, len - (size_t)(p - sql), "%s%" PRId64,
		    i > 0 ? "," : "", parts_month_start(months[i]) / 1000000);
	snprintf(p, len - (size_t)(p - sql), "}'::bigint[]) AS m");
	rc = pgs_exec(s, sql, PGRES_TUPLES_OK, NULL);
	free(sql);
	return rc;
}

/* The names a statement returned, logged as made or dropped. */
static void
parts_log(PGresult *res, const char *what)
{
	int	 i;

	for (i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 0))
			log_info("%s partition %s", what,
			    PQgetvalue(res, i, 0));
	PQclear(res);
}

int
parts_maintain(struct pgsession *s, const struct parts_retention *ret,
    int64_t now_us, int64_t *lo_us, int64_t *hi_us)
{
	PGresult	*res;
	char		 sql[256];
	int32_t		 m = parts_month(now_us);

	if (pgs_exec(s, "BEGIN", PGRES_COMMAND_OK, NULL) == -1)
		return -1;
	snprintf(sql, sizeof(sql), "SELECT sluice_usage_partition("
	    "to_timestamp(%" PRId64 ")), sluice_usage_partition("
	    "to_timestamp(%" PRId64 "))", parts_month_start(m) / 1000000,
	    parts_month_start(m + 1) / 1000000);
	if (pgs_exec(s, "SET LOCAL lock_timeout TO '" PARTS_LOCK_TIMEOUT "'",
	    PGRES_COMMAND_OK, NULL) == -1 ||
	    pgs_exec(s, sql, PGRES_TUPLES_OK, &res) == -1)
		goto fail;
	if (PQntuples(res) == 1) {
		if (!PQgetisnull(res, 0, 0))
			log_info("made partition %s", PQgetvalue(res, 0, 0));
		if (!PQgetisnull(res, 0, 1))
			log_info("made partition %s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	if (ret->months > 0 || ret->days > 0) {
		/* counted in UTC, as the months of the partitions are */
		snprintf(sql, sizeof(sql), "SELECT * FROM sluice_usage_retain("
		    "(to_timestamp(%" PRId64 ") AT TIME ZONE 'UTC' - "
		    "interval '%d %s') AT TIME ZONE 'UTC')", now_us / 1000000,
		    ret->months > 0 ? ret->months : ret->days,
		    ret->months > 0 ? "months" : "days");
		if (pgs_exec(s, sql, PGRES_TUPLES_OK, &res) == -1)
			goto fail;
		parts_log(res, "usage_retention: dropped");
	}
	if (pgs_commit(s) == -1)
		return -1;
	*lo_us = parts_month_start(m);
	*hi_us = parts_month_start(m + 2);
	return 0;

 fail:
	pgs_rollback(s);
	return -1;
}
