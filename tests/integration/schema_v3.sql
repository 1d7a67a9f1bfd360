-- The schema of sluice at version 3, as `sluicectl db init` of commit
-- e7bc8cb made it: pg_dump --no-owner --no-privileges --inserts, its
-- comments, psql meta-commands and search_path setting removed.
-- test_usage_table.py upgrades a database made from it.

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TABLE public.usage_events (
    request_id uuid NOT NULL,
    ts_start timestamp with time zone NOT NULL,
    key_name text,
    model text,
    upstream text,
    endpoint text,
    stream boolean,
    status smallint,
    error_class text,
    prompt_tokens bigint,
    completion_tokens bigint,
    cached_tokens bigint,
    cost_micro_usd bigint,
    usage_source text,
    attempts smallint,
    bytes_in bigint,
    bytes_out bigint,
    latency_us bigint,
    ttfb_us bigint,
    overhead_us bigint,
    client_addr inet,
    worker_pid integer,
    client_request_id text,
    anthropic_beta text,
    cache_write_5m_tokens bigint,
    cache_write_1h_tokens bigint,
    reasoning_tokens bigint,
    served_model text,
    CONSTRAINT usage_events_usage_source_check CHECK ((usage_source = ANY (ARRAY['upstream'::text, 'estimated'::text, 'none'::text])))
);

COMMENT ON TABLE public.usage_events IS 'One row per request that reached sluice; loaded by the collector';

CREATE VIEW public.cost_by_key_month AS
 SELECT usage_events.key_name,
    count(*) AS requests,
    COALESCE(sum(usage_events.prompt_tokens), (0)::numeric) AS prompt_tokens,
    COALESCE(sum(usage_events.completion_tokens), (0)::numeric) AS completion_tokens,
    COALESCE(sum(usage_events.cached_tokens), (0)::numeric) AS cached_tokens,
    round((COALESCE(sum(usage_events.cost_micro_usd), (0)::numeric) / '1000000'::numeric), 6) AS cost_usd
   FROM public.usage_events
  WHERE (usage_events.ts_start >= date_trunc('month'::text, now()))
  GROUP BY usage_events.key_name
  ORDER BY (round((COALESCE(sum(usage_events.cost_micro_usd), (0)::numeric) / '1000000'::numeric), 6)) DESC, usage_events.key_name;

CREATE TABLE public.sluice_schema (
    version integer NOT NULL
);

CREATE VIEW public.upstream_health_hourly AS
 SELECT date_trunc('hour'::text, usage_events.ts_start) AS hour,
    usage_events.upstream,
    count(*) AS requests,
    count(*) FILTER (WHERE (usage_events.status >= 500)) AS errors,
    round(((count(*) FILTER (WHERE (usage_events.status >= 500)))::numeric / (count(*))::numeric), 4) AS error_rate,
    (percentile_cont((0.5)::double precision) WITHIN GROUP (ORDER BY ((usage_events.latency_us)::double precision)) / (1000)::double precision) AS p50_latency_ms,
    (percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((usage_events.latency_us)::double precision)) / (1000)::double precision) AS p95_latency_ms,
    (percentile_cont((0.99)::double precision) WITHIN GROUP (ORDER BY ((usage_events.latency_us)::double precision)) / (1000)::double precision) AS p99_latency_ms
   FROM public.usage_events
  WHERE (usage_events.upstream IS NOT NULL)
  GROUP BY (date_trunc('hour'::text, usage_events.ts_start)), usage_events.upstream;

CREATE VIEW public.usage_by_key_day AS
 SELECT (usage_events.ts_start)::date AS day,
    usage_events.key_name,
    count(*) AS requests,
    COALESCE(sum(usage_events.prompt_tokens), (0)::numeric) AS prompt_tokens,
    COALESCE(sum(usage_events.completion_tokens), (0)::numeric) AS completion_tokens,
    COALESCE(sum(usage_events.cached_tokens), (0)::numeric) AS cached_tokens,
    round((COALESCE(sum(usage_events.cost_micro_usd), (0)::numeric) / '1000000'::numeric), 6) AS cost_usd,
    count(*) FILTER (WHERE (usage_events.status >= 400)) AS errors
   FROM public.usage_events
  GROUP BY ((usage_events.ts_start)::date), usage_events.key_name;

CREATE VIEW public.usage_by_model_day AS
 SELECT (usage_events.ts_start)::date AS day,
    usage_events.model,
    count(*) AS requests,
    COALESCE(sum(usage_events.prompt_tokens), (0)::numeric) AS prompt_tokens,
    COALESCE(sum(usage_events.completion_tokens), (0)::numeric) AS completion_tokens,
    COALESCE(sum(usage_events.cached_tokens), (0)::numeric) AS cached_tokens,
    round((COALESCE(sum(usage_events.cost_micro_usd), (0)::numeric) / '1000000'::numeric), 6) AS cost_usd,
    count(*) FILTER (WHERE (usage_events.status >= 400)) AS errors
   FROM public.usage_events
  GROUP BY ((usage_events.ts_start)::date), usage_events.model;

INSERT INTO public.sluice_schema VALUES (3);

ALTER TABLE ONLY public.usage_events
    ADD CONSTRAINT usage_events_pkey PRIMARY KEY (request_id);

CREATE INDEX usage_events_client_request_id ON public.usage_events USING btree (client_request_id) WHERE (client_request_id IS NOT NULL);

CREATE INDEX usage_events_key_ts ON public.usage_events USING btree (key_name, ts_start);

CREATE INDEX usage_events_ts_start ON public.usage_events USING btree (ts_start);

