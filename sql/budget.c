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
#include "shm/userstate.h"
#include "sql/budget.h"

static time_t			 snapshot_at;
static struct userstate_table	*users;	/* end users' budgets, if any */

static int
budgeted(const struct key_entry *k)
{
	return k->budget_period != PERIOD_NONE && k->budget_micro_usd > 0 &&
	    k->slot >= 0;
}

void
budget_set_users(struct userstate_table *t)
{
	users = t;
}

/* Whether any key gives each of its end users a budget. */
static int
user_budgets(const struct keyring *kr)
{
	int i;

	for (i = 0; kr != NULL && i < kr->nkeys; i++)
		if (kr->keys[i].user_budget_micro_usd > 0)
			return 1;
	return 0;
}

int
budget_nkeys(const struct config *cfg)
{
	if (cfg->keys == NULL)
		return 0;
	return cfg->keys->nkeys + cfg->keys->nteams + (users != NULL &&
	    user_budgets(cfg->keys) ? (int)users->nslots : 0);
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

	const struct keyring	*kr = cfg->keys;
	struct keystate		*ks;
	uint64_t		 tag;
	int			 nk = kr != NULL ? kr->nkeys + kr->nteams : 0;

	snapshot_at = time(NULL);
	for (i = 0; i < nk; i++) {
		const struct key_entry	*e = entry(kr, i);

		ks = keystate_at(t, e->slot);
		live[i] = ks != NULL && budgeted(e) ?
		    atomic_load(&ks->spend_live) : 0;
	}
	for (; i < budget_nkeys(cfg); i++) {
		ks = userstate_at(users, (uint32_t)(i - nk), &tag);
		live[i] = ks != NULL && tag > 1 ?
		    atomic_load(&ks->spend_live) : 0;
	}
}

/*
 * The day's and month's spend of each end user of the keys with an
 * end_user_budget: synced into the user's slot (claimed if it has none,
 * as after a restart), with what LIVE (from budget_snapshot, at NK on)
 * saw.  A slot no row names keeps what this host added.
 */
static int
user_spend(PGconn *conn, const struct keyring *kr, const char *const p[2],
    int64_t day, int64_t month, const int64_t *live, int nk)
{
	PGresult		*res;
	const struct key_entry	*k;
	struct keystate		*ks, *base;
	uint64_t		 tag;
	int			 r;

	res = PQexecParams(conn,
	    "SELECT key_name, end_user,"
	    " coalesce(sum(cost_micro_usd) FILTER (WHERE ts_start >="
	    "  to_timestamp($1::bigint)), 0),"
	    " coalesce(sum(cost_micro_usd), 0)"
	    " FROM usage_events"
	    " WHERE ts_start >= to_timestamp(least($1::bigint, $2::bigint))"
	    " AND end_user IS NOT NULL AND key_name IS NOT NULL"
	    " GROUP BY 1, 2", 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("loading end-user spend: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	base = userstate_at(users, 0, &tag);
	for (r = 0; r < PQntuples(res); r++) {
		k = keys_by_name(kr, PQgetvalue(res, r, 0));
		if (k == NULL || k->user_budget_micro_usd <= 0)
			continue;
		ks = userstate_get(users, userstate_tag(k->name,
		    PQgetvalue(res, r, 1)), (int)k->user_budget_period,
		    time(NULL));
		if (ks == NULL)
			continue;	/* full: the worker refuses it too */
		ks_spend_sync(ks, k->user_budget_period == PERIOD_DAY ? day :
		    month, strtoll(PQgetvalue(res, r, k->user_budget_period ==
		    PERIOD_DAY ? 2 : 3), NULL, 10), live[nk + (ks - base)]);
	}
	PQclear(res);
	return 0;
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
	if (n > kr->nkeys + kr->nteams && user_spend(conn, kr, params, day,
	    month, live, kr->nkeys + kr->nteams) == -1) {
		free(dsum);
		free(msum);
		return -1;
	}
	for (i = 0; i < kr->nkeys + kr->nteams; i++) {
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
