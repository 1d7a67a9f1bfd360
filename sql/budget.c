/*
 * budget.c - spend per key and per team from usage_events into shared
 * memory.
 *
 * Workers add each finished request's cost to spend_live; PostgreSQL holds
 * what has been written.  To combine the two without counting a request
 * twice or not at all, the collector (1) reads spend_live of every key,
 * (2) makes every event pushed before that durable, (3) reads the sums from
 * PostgreSQL, (4) sets spend_base to the sum and takes what it read in (1)
 * off spend_live.  A worker pushes its event before it adds the cost, so
 * every cost seen in (1) is in a row that (2) committed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/log.h"
#include "shm/keystate.h"
#include "sql/budget.h"

static time_t	 snapshot_at;

static int
budgeted(const struct key_entry *k)
{
	return k->budget_period != PERIOD_NONE && k->budget_micro_usd > 0 &&
	    k->slot >= 0;
}

int
budget_nkeys(const struct config *cfg)
{
	return cfg->keys != NULL ? cfg->keys->nkeys + cfg->keys->nteams : 0;
}

/* Entry I of budget_nkeys(): the keys, then the teams. */
static const struct key_entry *
entry(const struct keyring *kr, int i)
{
	return i < kr->nkeys ? &kr->keys[i] : &kr->teams[i - kr->nkeys];
}

void
budget_snapshot(const struct config *cfg, struct keystate_table *t,
    int64_t *live)
{
	int i;

	snapshot_at = time(NULL);
	for (i = 0; i < budget_nkeys(cfg); i++) {
		const struct key_entry	*e = entry(cfg->keys, i);
		struct keystate		*ks = keystate_at(t, e->slot);

		live[i] = ks != NULL && budgeted(e) ?
		    atomic_load(&ks->spend_live) : 0;
	}
}

/*
 * The day's and month's spend by COLUMN (key_name or team) into DSUM and
 * MSUM at the index of the entry so named, FROM to N of budget_nkeys().
 */
static int
spend_by(PGconn *conn, const char *column, const struct keyring *kr,
    int from, int n, const char *const params[2], int64_t *dsum,
    int64_t *msum)
{
	PGresult	*res;
	char		 sql[512];
	int		 r, i;

	snprintf(sql, sizeof(sql),
	    "SELECT %s,"
	    " coalesce(sum(cost_micro_usd) FILTER (WHERE ts_start >="
	    "  to_timestamp($1::bigint)), 0),"
	    " coalesce(sum(cost_micro_usd), 0)"
	    " FROM usage_events"
	    " WHERE ts_start >= to_timestamp(least($1::bigint, $2::bigint))"
	    " AND %s IS NOT NULL GROUP BY %s", column, column, column);
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("loading %s spend: %s", column,
		    PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	for (r = 0; r < PQntuples(res); r++) {
		const char *name = PQgetvalue(res, r, 0);

		for (i = from; i < n; i++) {
			if (strcmp(entry(kr, i)->name, name) != 0)
				continue;
			dsum[i] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
			msum[i] = strtoll(PQgetvalue(res, r, 2), NULL, 10);
			break;
		}
	}
	PQclear(res);
	return 0;
}

int
budget_load(PGconn *conn, const struct config *cfg, struct keystate_table *t,
    const int64_t *live)
{
	const struct keyring	*kr = cfg->keys;
	time_t			 now = time(NULL), dstart, mstart, end;
	int64_t			 day, month, *dsum, *msum;
	char			 p0[32], p1[32];
	const char		*params[2] = { p0, p1 };
	int			 i, n;

	if (kr == NULL || kr->nkeys == 0)
		return 0;
	day = ks_period(PERIOD_DAY, now, &dstart, &end);
	month = ks_period(PERIOD_MONTH, now, &mstart, &end);
	if (day != ks_period(PERIOD_DAY, snapshot_at, &dstart, &end)) {
		/* midnight passed since the snapshot: its numbers are stale */
		ks_period(PERIOD_DAY, now, &dstart, &end);
		return -1;
	}
	snprintf(p0, sizeof(p0), "%lld", (long long)dstart);
	snprintf(p1, sizeof(p1), "%lld", (long long)mstart);
	n = budget_nkeys(cfg);
	dsum = calloc((size_t)n, sizeof(*dsum));
	msum = calloc((size_t)n, sizeof(*msum));
	if (dsum == NULL || msum == NULL ||
	    spend_by(conn, "key_name", kr, 0, kr->nkeys, params, dsum,
	    msum) == -1 || (kr->nteams > 0 && spend_by(conn, "team", kr,
	    kr->nkeys, n, params, dsum, msum) == -1)) {
		free(dsum);
		free(msum);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const struct key_entry	*k = entry(kr, i);
		struct keystate		*ks = keystate_at(t, k->slot);

		if (ks == NULL || !budgeted(k))
			continue;
		if (k->budget_period == PERIOD_DAY)
			ks_spend_sync(ks, day, dsum[i], live[i]);
		else
			ks_spend_sync(ks, month, msum[i], live[i]);
	}
	free(dsum);
	free(msum);
	if (!atomic_exchange(&t->spend_loaded, 1))
		log_info("key spend loaded from PostgreSQL: budgets enforced");
	return 0;
}
