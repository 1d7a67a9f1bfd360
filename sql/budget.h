/*
 * budget.h - load each key's spend in its budget period from PostgreSQL
 * into the shared key state, so budgets hold across restarts and across
 * several sluice hosts writing to one database.  Collector only.
 */
#ifndef SLUICE_BUDGET_H
#define SLUICE_BUDGET_H

#include <stdint.h>
#include <libpq-fe.h>

struct config;
struct keystate_table;
struct userstate_table;

/* The end users' table the spend of end_user_budget keys is loaded into. */
void	 budget_set_users(struct userstate_table *);
/* The entries budget_snapshot and budget_load use: keys, teams, and the
 * end users' slots when a key has an end_user_budget. */
int	 budget_nkeys(const struct config *);
/* Remember spend_live of every budgeted key, into LIVE (nkeys entries). */
void	 budget_snapshot(const struct config *, struct keystate_table *,
	    int64_t *live);
/*
 * Query the spend of the current day and month per key and sync the
 * shared state.  Call only once every event counted in LIVE is committed
 * to PostgreSQL.  0 ok, -1 on a query error (nothing changed).
 */
int	 budget_load(PGconn *, const struct config *, struct keystate_table *,
	    const int64_t *live);

#endif
