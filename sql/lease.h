/*
 * lease.h - limits shared across hosts (limits shared): this host's
 * collector leases slices of each limited key's and team's rpm, tpm and
 * budget from the PostgreSQL all hosts share, and writes the grants into
 * the key state (shm/lease.h) that the workers spend.
 *
 * Collector only, from one hook point of its loop: lease_step() never
 * waits longer than one statement, and does nothing unless it is due.
 * It never touches the ring, the spool or usage_events.  LEASE_SCHEMA is
 * the migration schema.c lists.
 */
#ifndef SLUICE_SQL_LEASE_H
#define SLUICE_SQL_LEASE_H

#include <stdint.h>

struct config;
struct keystate_table;
struct cnt_collector;
struct pgsession;

/*
 * sluice_leases: per key (or "@team"), kind, window and host, what the
 * host was granted and what it reported using, and until when its grant
 * holds.  sluice_lease() grants, key by key under an advisory lock, up to
 * the limit less what the others hold: a live host's grant (or its use,
 * if more), an expired host's use only.
 */
#define LEASE_SCHEMA							\
	"CREATE TABLE sluice_leases ("					\
	"  key_name text NOT NULL,"					\
	"  kind text NOT NULL,"						\
	"  win bigint NOT NULL,"					\
	"  host text NOT NULL,"						\
	"  granted bigint NOT NULL DEFAULT 0,"				\
	"  used bigint NOT NULL DEFAULT 0,"				\
	"  expires timestamptz NOT NULL,"				\
	"  PRIMARY KEY (key_name, kind, win, host));"			\
	"CREATE TABLE sluice_hosts ("					\
	"  host text PRIMARY KEY,"					\
	"  seen timestamptz NOT NULL);"					\
	"CREATE FUNCTION sluice_lease(p_host text, p_ttl_ms int,"	\
	"  p_key text[], p_kind text[], p_win bigint[], p_limit bigint[],"\
	"  p_used bigint[], p_want bigint[])"				\
	" RETURNS TABLE (r_i int, r_granted bigint, r_used bigint,"	\
	"  r_hosts int)"						\
	" LANGUAGE plpgsql AS $f$"					\
	" DECLARE k int; c bigint; g bigint; u bigint; h int;"		\
	" BEGIN"							\
	"   INSERT INTO sluice_hosts AS s VALUES (p_host, now())"	\
	"     ON CONFLICT (host) DO UPDATE SET seen = now();"		\
	"   SELECT count(*) INTO h FROM sluice_hosts s"			\
	"     WHERE s.seen > now() - interval '1 minute';"		\
	/* one order on every host: no two batches deadlock */		\
	"   FOR k IN SELECT o.n FROM unnest(p_key, p_kind, p_win)"	\
	"       WITH ORDINALITY AS o(kk, kd, kw, n)"			\
	"       ORDER BY o.kk, o.kd, o.kw LOOP"				\
	"     PERFORM pg_advisory_xact_lock(hashtextextended(p_key[k]"	\
	"       || '/' || p_kind[k] || '/' || p_win[k], 0));"		\
	/* used < 0: a host that restarted; its whole grant counts used */ \
	"     INSERT INTO sluice_leases AS l (key_name, kind, win, host,"	\
	"       granted, used, expires) VALUES (p_key[k], p_kind[k],"	\
	"       p_win[k], p_host, 0, greatest(p_used[k], 0), now())"	\
	"       ON CONFLICT (key_name, kind, win, host) DO UPDATE SET"	\
	"       used = CASE WHEN p_used[k] < 0"				\
	"         THEN greatest(l.granted, l.used)"			\
	"         ELSE greatest(l.used, p_used[k]) END;"		\
	"     SELECT coalesce(sum(CASE WHEN l.host = p_host"		\
	"       OR l.expires > now() THEN greatest(l.granted, l.used)"	\
	"       ELSE l.used END), 0) INTO c FROM sluice_leases l"	\
	"       WHERE l.key_name = p_key[k] AND l.kind = p_kind[k]"	\
	"       AND l.win = p_win[k];"					\
	"     g := least(greatest(p_want[k], 0),"			\
	"       greatest(p_limit[k] - c, 0));"				\
	"     UPDATE sluice_leases l"					\
	"       SET granted = greatest(l.granted, l.used) + g,"		\
	"       expires = now() + p_ttl_ms * interval '1 millisecond'"	\
	"       WHERE l.key_name = p_key[k] AND l.kind = p_kind[k]"	\
	"       AND l.win = p_win[k] AND l.host = p_host"		\
	"       RETURNING l.granted, l.used INTO g, u;"			\
	"     r_i := k; r_granted := g; r_used := u; r_hosts := h;"	\
	"     RETURN NEXT;"						\
	"   END LOOP;"							\
	" END $f$;"

/* Once, before the loop: what to lease for, and where to count. */
void	 lease_init(const struct config *, struct keystate_table *,
	    struct cnt_collector *);
/* When lease_step() has something to do next (ms of now_us() / 1000),
 * INT64_MAX if never (limits local). */
int64_t	 lease_due(void);
/*
 * If due: lease what the keys need (a new window, a lease half used, a
 * renewal, use to report) in one statement per batch of keys, or, with
 * PostgreSQL unreachable, give each limit this host's share.
 */
void	 lease_step(struct pgsession *, int64_t now_ms);

#endif
