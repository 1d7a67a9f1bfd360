/*
 * budget.c - spend per key from usage_events into shared memory.
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
	return cfg->keys != NULL ? cfg->keys->nkeys : 0;
}

void
budget_snapshot(const struct config *cfg, struct keystate_table *t,
    int64_t *live)
{
	int i;

	snapshot_at = time(NULL);
	for (i = 0; i < budget_nkeys(cfg); i++) {
		struct keystate *ks = keystate_at(t, cfg->keys->keys[i].slot);

		live[i] = ks != NULL && budgeted(&cfg->keys->keys[i]) ?
		    atomic_load(&ks->spend_live) : 0;
	}
}

int
budget_load(PGconn *conn, const struct config *cfg, struct keystate_table *t,
    const int64_t *live)
{
	const struct keyring	*kr = cfg->keys;
	PGresult		*res;
	time_t			 now = time(NULL), dstart, mstart, end;
	int64_t			 day, month, *dsum, *msum;
	char			 p0[32], p1[32];
	const char		*params[2] = { p0, p1 };
	int			 i, r, n;

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
	res = PQexecParams(conn,
	    "SELECT key_name,"
	    " coalesce(sum(cost_micro_usd) FILTER (WHERE ts_start >="
	    "  to_timestamp($1::bigint)), 0),"
	    " coalesce(sum(cost_micro_usd), 0)"
	    " FROM usage_events"
	    " WHERE ts_start >= to_timestamp(least($1::bigint, $2::bigint))"
	    " AND key_name IS NOT NULL GROUP BY key_name",
	    2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("loading key spend: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	dsum = calloc((size_t)kr->nkeys, sizeof(*dsum));
	msum = calloc((size_t)kr->nkeys, sizeof(*msum));
	if (dsum == NULL || msum == NULL) {
		free(dsum);
		free(msum);
		PQclear(res);
		return -1;
	}
	n = PQntuples(res);
	for (r = 0; r < n; r++) {
		const char *name = PQgetvalue(res, r, 0);

		for (i = 0; i < kr->nkeys; i++) {
			if (strcmp(kr->keys[i].name, name) != 0)
				continue;
			dsum[i] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
			msum[i] = strtoll(PQgetvalue(res, r, 2), NULL, 10);
			break;
		}
	}
	PQclear(res);
	for (i = 0; i < kr->nkeys; i++) {
		const struct key_entry	*k = &kr->keys[i];
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
