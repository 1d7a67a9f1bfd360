/*
 * schema.c - create and upgrade the PostgreSQL schema, versioned.
 *
 * The schema is an ordered list of migrations; sluice_schema holds the
 * number applied so far.  Upgrading runs the missing ones and bumps the
 * version in the same transaction, so a failure leaves the database at
 * the old version and never half-migrated.  The transaction first takes
 * a transaction-scoped advisory lock, so a collector reconnecting and an
 * operator running `sluicectl db init` at the same moment serialise
 * instead of racing on CREATE TABLE.  Migrations are append-only: never
 * edit one that has shipped, add the next.
 *
 * usage_events.request_id is the primary key: it is what makes loading
 * idempotent (the collector inserts with ON CONFLICT DO NOTHING, so a
 * replayed spool file or a batch re-read after a crash adds nothing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/pgsession.h"
#include "sql/schema.h"

/* "sluice" in ASCII: the advisory lock key, unlikely to clash. */
#define SCHEMA_LOCK_KEY	"126943618818405"	/* 0x736c75696365 */

/* migrations[i] brings the schema from version i to version i + 1. */
static const char *const migrations[] = {
	/* 1: the usage table, its indexes and the operators' views. */
	"CREATE TABLE usage_events ("
	"  request_id        uuid PRIMARY KEY,"
	"  ts_start          timestamptz NOT NULL,"
	"  key_name          text,"
	"  model             text,"
	"  upstream          text,"
	"  endpoint          text,"
	"  stream            boolean,"
	"  status            smallint,"
	"  error_class       text,"
	"  prompt_tokens     bigint,"
	"  completion_tokens bigint,"
	"  cached_tokens     bigint,"
	"  cost_micro_usd    bigint,"
	"  usage_source      text CHECK (usage_source IN"
	"                      ('upstream', 'estimated', 'none')),"
	"  attempts          smallint,"
	"  bytes_in          bigint,"
	"  bytes_out         bigint,"
	"  latency_us        bigint,"
	"  ttfb_us           bigint,"
	"  overhead_us       bigint,"
	"  client_addr       inet,"
	"  worker_pid        int"
	");"
	"CREATE INDEX usage_events_ts_start ON usage_events (ts_start);"
	"CREATE INDEX usage_events_key_ts ON usage_events (key_name, ts_start);"
	"COMMENT ON TABLE usage_events IS"
	"  'One row per request that reached sluice; loaded by the collector';"

	"CREATE VIEW usage_by_key_day AS"
	" SELECT ts_start::date AS day, key_name,"
	"   count(*) AS requests,"
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"
	"   coalesce(sum(cached_tokens), 0) AS cached_tokens,"
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd,"
	"   count(*) FILTER (WHERE status >= 400) AS errors"
	" FROM usage_events GROUP BY 1, 2;"

	"CREATE VIEW usage_by_model_day AS"
	" SELECT ts_start::date AS day, model,"
	"   count(*) AS requests,"
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"
	"   coalesce(sum(cached_tokens), 0) AS cached_tokens,"
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd,"
	"   count(*) FILTER (WHERE status >= 400) AS errors"
	" FROM usage_events GROUP BY 1, 2;"

	"CREATE VIEW cost_by_key_month AS"
	" SELECT key_name,"
	"   count(*) AS requests,"
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"
	"   coalesce(sum(cached_tokens), 0) AS cached_tokens,"
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd"
	" FROM usage_events"
	" WHERE ts_start >= date_trunc('month', now())"
	" GROUP BY key_name ORDER BY cost_usd DESC, key_name;"

	/* Health of what sluice talked to: 5xx (502/504 included) only. */
	"CREATE VIEW upstream_health_hourly AS"
	" SELECT date_trunc('hour', ts_start) AS hour, upstream,"
	"   count(*) AS requests,"
	"   count(*) FILTER (WHERE status >= 500) AS errors,"
	"   round((count(*) FILTER (WHERE status >= 500))::numeric"
	"     / count(*), 4) AS error_rate,"
	"   percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) / 1000"
	"     AS p50_latency_ms,"
	"   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_us) / 1000"
	"     AS p95_latency_ms,"
	"   percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) / 1000"
	"     AS p99_latency_ms"
	" FROM usage_events WHERE upstream IS NOT NULL"
	" GROUP BY 1, 2;",

	/*
	 * 2: what a client sent as x-request-id is its own column, never
	 * the key (ten requests with one id are ten rows); the betas an
	 * Anthropic request used (some change the price).
	 */
	"ALTER TABLE usage_events ADD COLUMN client_request_id text,"
	"  ADD COLUMN anthropic_beta text;"
	"CREATE INDEX usage_events_client_request_id ON usage_events"
	"  (client_request_id) WHERE client_request_id IS NOT NULL;",

	/*
	 * 3: every billed usage field apart: cache writes by lifetime (priced
	 * at 1.25 and 2 times the input), reasoning tokens (part of the
	 * completion), and the model the upstream says it served.
	 */
	"ALTER TABLE usage_events ADD COLUMN cache_write_5m_tokens bigint,"
	"  ADD COLUMN cache_write_1h_tokens bigint,"
	"  ADD COLUMN reasoning_tokens bigint,"
	"  ADD COLUMN served_model text;",

	/*
	 * 4: the format the client spoke and the upstream's: they differ
	 * when sluice translated the request (openai, anthropic).
	 */
	"ALTER TABLE usage_events ADD COLUMN client_format text,"
	"  ADD COLUMN upstream_format text;",
};

#define NMIGRATIONS	((int)(sizeof(migrations) / sizeof(migrations[0])))

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == SCHEMA_VERSION,
    "SCHEMA_VERSION must be the number of migrations");

int
schema_init(struct pgsession *s)
{
	PGresult	*res;
	char		 sql[128], msg[sizeof(s->err) + 64];
	int		 version, v;

	if (pgs_exec(s, "BEGIN", PGRES_COMMAND_OK, NULL) == -1)
		return -1;
	if (pgs_exec(s, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")",
	    PGRES_TUPLES_OK, NULL) == -1 ||
	    pgs_exec(s, "SELECT to_regclass('sluice_schema') IS NULL",
	    PGRES_TUPLES_OK, &res) == -1)
		goto fail;
	/* Not IF NOT EXISTS: its NOTICE would end up on stderr. */
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		PQclear(res);
		if (pgs_exec(s,
		    "CREATE TABLE sluice_schema (version int NOT NULL)",
		    PGRES_COMMAND_OK, NULL) == -1)
			goto fail;
	} else
		PQclear(res);
	if (pgs_exec(s, "SELECT max(version) FROM sluice_schema",
	    PGRES_TUPLES_OK, &res) == -1)
		goto fail;

	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		PQclear(res);
		if (pgs_exec(s, "INSERT INTO sluice_schema VALUES (0)",
		    PGRES_COMMAND_OK, NULL) == -1)
			goto fail;
		version = 0;
	} else {
		version = atoi(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	if (version < 0) {
		snprintf(msg, sizeof(msg), "sluice_schema holds version %d",
		    version);
		pgs_set_error(s, msg);
		goto fail;
	}

	for (v = version; v < NMIGRATIONS; v++) {
		if (pgs_exec(s, migrations[v], PGRES_COMMAND_OK, NULL) == -1) {
			snprintf(msg, sizeof(msg), "%s (migration to version "
			    "%d)", s->err, v + 1);
			pgs_set_error(s, msg);
			goto fail;
		}
	}
	if (version < NMIGRATIONS) {
		(void)snprintf(sql, sizeof(sql),
		    "UPDATE sluice_schema SET version = %d", NMIGRATIONS);
		if (pgs_exec(s, sql, PGRES_COMMAND_OK, NULL) == -1)
			goto fail;
		version = NMIGRATIONS;
	}
	if (pgs_commit(s) == -1)
		return -1;
	return version;

 fail:
	pgs_rollback(s);
	return -1;
}
