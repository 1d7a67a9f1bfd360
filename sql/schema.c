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

#include "sql/lease.h"
#include "sql/pgsession.h"
#include "sql/schema.h"

/* "sluice" in ASCII: the advisory lock key, unlikely to clash. */
#define SCHEMA_LOCK_KEY	"126943618818405"	/* 0x736c75696365 */
/* The lock that making and dropping partitions takes: the key + 1. */
#define PARTS_LOCK_KEY	"126943618818406"


/*
 * The operators' views, as migration 1 made them and migration 4 made them
 * again over the partitioned table.  Frozen like the migrations: a new
 * view, or a changed one, is a new migration.
 */
#define SCHEMA_VIEWS							\
	"CREATE VIEW usage_by_key_day AS"				\
	" SELECT ts_start::date AS day, key_name,"			\
	"   count(*) AS requests,"					\
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"		\
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"	\
	"   coalesce(sum(cached_tokens), 0) AS cached_tokens,"		\
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd," \
	"   count(*) FILTER (WHERE status >= 400) AS errors"		\
	" FROM usage_events GROUP BY 1, 2;"				\
									\
	"CREATE VIEW usage_by_model_day AS"				\
	" SELECT ts_start::date AS day, model,"				\
	"   count(*) AS requests,"					\
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"		\
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"	\
	"   coalesce(sum(cached_tokens), 0) AS cached_tokens,"		\
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd," \
	"   count(*) FILTER (WHERE status >= 400) AS errors"		\
	" FROM usage_events GROUP BY 1, 2;"				\
									\
	"CREATE VIEW cost_by_key_month AS"				\
	" SELECT key_name,"						\
	"   count(*) AS requests,"					\
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"		\
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"	\
	"   coalesce(sum(cached_tokens), 0) AS cached_tokens,"		\
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd" \
	" FROM usage_events"						\
	" WHERE ts_start >= date_trunc('month', now())"			\
	" GROUP BY key_name ORDER BY cost_usd DESC, key_name;"		\
									\
	/* Health of what sluice talked to: 5xx (502/504 included) only. */ \
	"CREATE VIEW upstream_health_hourly AS"				\
	" SELECT date_trunc('hour', ts_start) AS hour, upstream,"	\
	"   count(*) AS requests,"					\
	"   count(*) FILTER (WHERE status >= 500) AS errors,"		\
	"   round((count(*) FILTER (WHERE status >= 500))::numeric"	\
	"     / count(*), 4) AS error_rate,"				\
	"   percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) / 1000" \
	"     AS p50_latency_ms,"					\
	"   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_us) / 1000" \
	"     AS p95_latency_ms,"					\
	"   percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) / 1000" \
	"     AS p99_latency_ms"					\
	" FROM usage_events WHERE upstream IS NOT NULL"			\
	" GROUP BY 1, 2;"

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

	SCHEMA_VIEWS,

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
	 * 4: usage_events partitioned by UTC month, and the ring positions
	 * already committed, so that the collector COPYs straight into it.
	 *
	 * The old table is kept whole, without copying a row: it becomes
	 * the partition of the months its rows span (the parent adopts its
	 * index on client_request_id; the new primary key, which must hold
	 * the partition key, and the BRIN index are built over it).  The
	 * views name the table by oid, so they are made again over the new
	 * one.
	 */
	"DROP VIEW usage_by_key_day, usage_by_model_day, cost_by_key_month,"
	"  upstream_health_hourly;"
	"ALTER TABLE usage_events RENAME TO usage_events_v3;"
	"ALTER INDEX usage_events_pkey RENAME TO usage_events_v3_pkey;"
	"ALTER INDEX usage_events_ts_start RENAME TO usage_events_v3_ts_start;"
	"ALTER INDEX usage_events_key_ts RENAME TO usage_events_v3_key_ts;"
	"ALTER INDEX usage_events_client_request_id"
	"  RENAME TO usage_events_v3_client_request_id;"
	"CREATE TABLE usage_events ("
	"  request_id        uuid NOT NULL,"
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
	/* named as migration 1's was: ATTACH matches it by name */
	"  usage_source      text CONSTRAINT usage_events_usage_source_check"
	"                      CHECK (usage_source IN"
	"                      ('upstream', 'estimated', 'none')),"
	"  attempts          smallint,"
	"  bytes_in          bigint,"
	"  bytes_out         bigint,"
	"  latency_us        bigint,"
	"  ttfb_us           bigint,"
	"  overhead_us       bigint,"
	"  client_addr       inet,"
	"  worker_pid        int,"
	"  client_request_id text,"
	"  anthropic_beta    text,"
	"  cache_write_5m_tokens bigint,"
	"  cache_write_1h_tokens bigint,"
	"  reasoning_tokens  bigint,"
	"  served_model      text,"
	"  PRIMARY KEY (request_id, ts_start)"
	") PARTITION BY RANGE (ts_start);"
	/*
	 * Rows arrive in time order, so a BRIN index finds a time range
	 * for almost nothing per row; the two b-trees of before (ts_start,
	 * and key_name, ts_start, whose inserts land all over the index)
	 * cost more PostgreSQL CPU per row than the rest of the load.
	 */
	"CREATE INDEX usage_events_ts_start ON usage_events USING brin"
	"  (ts_start) WITH (autosummarize = on);"
	"CREATE INDEX usage_events_client_request_id ON usage_events"
	"  (client_request_id) WHERE client_request_id IS NOT NULL;"
	"COMMENT ON TABLE usage_events IS"
	"  'One row per request that reached sluice; loaded by the collector;"
	" partitioned by UTC month';"

	/* Each partition and its bounds, NULL for MINVALUE/MAXVALUE. */
	"CREATE VIEW usage_partitions AS"
	" SELECT c.relname::text AS tablename,"
	"   CASE WHEN b LIKE 'FOR VALUES FROM (MINVALUE)%' THEN NULL ELSE"
	"     substring(b FROM 'FROM \\(''([^'']*)''\\)')::timestamptz"
	"   END AS from_ts,"
	"   CASE WHEN b LIKE '%TO (MAXVALUE)' THEN NULL ELSE"
	"     substring(b FROM 'TO \\(''([^'']*)''\\)')::timestamptz"
	"   END AS to_ts"
	" FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
	"   CROSS JOIN LATERAL pg_get_expr(c.relpartbound, c.oid) AS b"
	" WHERE i.inhparent = 'usage_events'::regclass;"

	/*
	 * The partition of T's UTC month, made unless a partition already
	 * covers some of it; its name, or NULL.  Hosts sharing the database
	 * serialise on an advisory lock.
	 */
	"CREATE FUNCTION sluice_usage_partition(t timestamptz) RETURNS text"
	" LANGUAGE plpgsql AS $f$"
	" DECLARE"
	"   m timestamp := date_trunc('month', t AT TIME ZONE 'UTC');"
	"   lo timestamptz := m AT TIME ZONE 'UTC';"
	"   hi timestamptz := (m + interval '1 month') AT TIME ZONE 'UTC';"
	"   part text := 'usage_events_' || to_char(m, 'YYYY_MM');"
	" BEGIN"
	"   PERFORM pg_advisory_xact_lock(" PARTS_LOCK_KEY ");"
	"   IF EXISTS (SELECT 1 FROM usage_partitions p"
	"       WHERE coalesce(p.from_ts < hi, true)"
	"       AND coalesce(p.to_ts > lo, true)) THEN"
	"     RETURN NULL;"
	"   END IF;"
	"   EXECUTE format('CREATE TABLE %I PARTITION OF usage_events"
	"     FOR VALUES FROM (%L) TO (%L)', part,"
	"     to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00',"
	"     to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');"
	"   RETURN part;"
	" END $f$;"

	/* Drop every partition that ends by CUTOFF; their names. */
	"CREATE FUNCTION sluice_usage_retain(cutoff timestamptz)"
	" RETURNS SETOF text LANGUAGE plpgsql AS $f$"
	" DECLARE p record;"
	" BEGIN"
	"   PERFORM pg_advisory_xact_lock(" PARTS_LOCK_KEY ");"
	"   FOR p IN SELECT tablename FROM usage_partitions"
	"       WHERE to_ts <= cutoff ORDER BY to_ts LOOP"
	"     EXECUTE format('DROP TABLE %I', p.tablename);"
	"     RETURN NEXT p.tablename;"
	"   END LOOP;"
	" END $f$;"

	/*
	 * Which events are in usage_events: per epoch of a shared segment
	 * and lane, the positions committed, as a set of ranges (one range,
	 * a high-water mark, unless a spool is loaded after newer events).
	 */
	"CREATE TABLE sluice_lane_marks ("
	"  epoch   uuid NOT NULL,"
	"  lane    int NOT NULL,"
	"  done    int8multirange NOT NULL,"
	"  updated timestamptz NOT NULL DEFAULT now(),"
	"  PRIMARY KEY (epoch, lane)"
	");"
	"COMMENT ON TABLE sluice_lane_marks IS"
	"  'Ring positions whose events are in usage_events, per shared"
	" memory epoch and lane: how the collector loads each event once';"

	/*
	 * Claim the ranges [P_LO[i], P_HI[i]) of lanes P_LANE[i] of epoch
	 * P_EPOCH for this transaction, and return the parts of them that
	 * were already done: their events are in the table.  The lanes are
	 * locked in order, so two loaders of one epoch wait, never
	 * deadlock, and the second sees what the first committed.
	 */
	"CREATE FUNCTION sluice_claim(p_epoch uuid, p_lane int[],"
	"  p_lo bigint[], p_hi bigint[], OUT seen_lane int,"
	"  OUT seen_lo bigint, OUT seen_hi bigint) RETURNS SETOF record"
	" LANGUAGE plpgsql AS $f$"
	" DECLARE r record; had int8multirange; span int8multirange;"
	" BEGIN"
	"   FOR r IN SELECT u.l, u.lo, u.hi"
	"       FROM unnest(p_lane, p_lo, p_hi) AS u(l, lo, hi)"
	"       ORDER BY u.l, u.lo LOOP"
	"     span := int8multirange(int8range(r.lo, r.hi));"
	"     INSERT INTO sluice_lane_marks (epoch, lane, done)"
	"       VALUES (p_epoch, r.l, '{}') ON CONFLICT DO NOTHING;"
	"     SELECT m.done INTO had FROM sluice_lane_marks m"
	"       WHERE m.epoch = p_epoch AND m.lane = r.l FOR UPDATE;"
	"     UPDATE sluice_lane_marks m SET done = had + span, updated = now()"
	"       WHERE m.epoch = p_epoch AND m.lane = r.l;"
	"     FOR seen_lane, seen_lo, seen_hi IN SELECT r.l, lower(x), upper(x)"
	"         FROM unnest(had * span) AS x LOOP"
	"       RETURN NEXT;"
	"     END LOOP;"
	"   END LOOP;"
	" END $f$;"

	/* The old rows become the partition of their months. */
	"DO $m$"
	" DECLARE lo timestamp; hi timestamp; part text;"
	" BEGIN"
	"   SELECT date_trunc('month', min(ts_start) AT TIME ZONE 'UTC'),"
	"     date_trunc('month', max(ts_start) AT TIME ZONE 'UTC')"
	"     INTO lo, hi FROM usage_events_v3;"
	"   IF lo IS NULL THEN"
	"     DROP TABLE usage_events_v3;"
	"     RETURN;"
	"   END IF;"
	"   part := 'usage_events_' || to_char(lo, 'YYYY_MM');"
	"   IF hi > lo THEN"
	"     part := part || '_' || to_char(hi, 'YYYY_MM');"
	"   END IF;"
	/*
	 * A partition has one primary key, the parent's; the b-trees the
	 * BRIN index replaces would slow down the rows of this month.
	 */
	"   ALTER TABLE usage_events_v3 DROP CONSTRAINT usage_events_v3_pkey;"
	"   DROP INDEX usage_events_v3_ts_start, usage_events_v3_key_ts;"
	"   EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION"
	"     usage_events_v3 FOR VALUES FROM (%L) TO (%L)',"
	"     to_char(lo, 'YYYY-MM-DD') || ' 00:00:00+00',"
	"     to_char(hi + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');"
	"   EXECUTE format('ALTER TABLE usage_events_v3 RENAME TO %I', part);"
	" END $m$;"
	"SELECT sluice_usage_partition(now()),"
	"  sluice_usage_partition(now() + interval '1 month');"

	SCHEMA_VIEWS,

	/*
	 * 5: for whom a request was made: the key's team, the end user the
	 * caller named, and its tags; and the views that answer by them.
	 */
	"ALTER TABLE usage_events ADD COLUMN team text,"
	"  ADD COLUMN end_user text,"
	"  ADD COLUMN tags text[];"
	"CREATE INDEX usage_events_tags ON usage_events USING gin (tags);"
	"CREATE INDEX usage_events_team_ts ON usage_events (team, ts_start)"
	"  WHERE team IS NOT NULL;"
	"CREATE VIEW cost_by_team_day AS"
	" SELECT ts_start::date AS day, team,"
	"   count(*) AS requests,"
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd,"
	"   count(*) FILTER (WHERE status >= 400) AS errors"
	" FROM usage_events WHERE team IS NOT NULL GROUP BY 1, 2;"
	"CREATE VIEW cost_by_tag_day AS"
	" SELECT ts_start::date AS day, tag,"
	"   count(*) AS requests,"
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd,"
	"   count(*) FILTER (WHERE status >= 400) AS errors"
	" FROM usage_events, unnest(tags) AS tag GROUP BY 1, 2;"
	"CREATE VIEW top_end_users_month AS"
	" SELECT key_name, end_user,"
	"   count(*) AS requests,"
	"   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
	"   coalesce(sum(completion_tokens), 0) AS completion_tokens,"
	"   round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6) AS cost_usd"
	" FROM usage_events"
	" WHERE end_user IS NOT NULL AND ts_start >= date_trunc('month', now())"
	" GROUP BY 1, 2 ORDER BY cost_usd DESC, key_name, end_user;",

	/*
	 * 6: the format the client spoke and the upstream's: they differ
	 * when sluice translated the request (openai, anthropic).
	 */
	"ALTER TABLE usage_events ADD COLUMN client_format text,"
	"  ADD COLUMN upstream_format text;",

	/*
	 * 7: the answer cache: a hit is a row billed nothing, with what it
	 * saved in its own column (NULL for a request that was no hit).
	 */
	"ALTER TABLE usage_events ADD COLUMN cache_hit boolean NOT NULL"
	"  DEFAULT false,"
	"  ADD COLUMN cost_saved_micro_usd bigint;",

	/*
	 * 8: limits shared across hosts (sql/lease.c says how): each host's
	 * grant and use of each key's limit per window, the hosts seen, and
	 * the function that grants.
	 */
	LEASE_SCHEMA,
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
