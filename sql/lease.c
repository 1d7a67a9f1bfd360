/*
 * lease.c - the collector's side of limits shared across hosts.
 *
 * Every LEASE_TICK_MS the collector looks at each limited key and team:
 * a window it holds no grant for yet (a new minute, LEASE_AHEAD_S before
 * it starts; a new budget period), a grant less than half unused (ask
 * early, so the workers rarely find it empty), a grant due for renewal
 * (every third of limit_lease_ttl), use not reported yet, or a request
 * refused that needs more than is left (a budget's worst case can be more
 * than a slice).  What needs
 * something goes to sluice_lease() in one statement per LEASE_BATCH
 * keys, which grants a slice (limit_lease percent of the limit) of what
 * the other hosts do not hold.  A grant expires at limit_lease_ttl
 * unless renewed: then PostgreSQL counts only what the host reported
 * using, so a dead host's unused share comes back.  What it used and had
 * not reported yet is the error: at most what it held, a slice and a
 * half (asked for at half a slice left), or a refused request's need and
 * half a slice, per host that dies.
 *
 * When PostgreSQL is unreachable, every limit gets this host's share, the
 * limit over the hosts PostgreSQL saw in the last minute (or what it had
 * leased, if more), until PostgreSQL answers again: logged once per
 * outage, and shown on /metrics.  A host that never reached PostgreSQL
 * since it started waits LEASE_START_WAIT_MS for it, then counts itself
 * alone.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/keys.h"
#include "common/log.h"
#include "shm/counters.h"
#include "shm/keystate.h"
#include "sql/lease.h"
#include "sql/pgsession.h"

#define LEASE_TICK_MS		100	/* look at the leases this often */
#define LEASE_AHEAD_S		10	/* lease the next minute this early */
#define LEASE_BATCH		256	/* keys' windows per statement */
#define LEASE_START_WAIT_MS	5000	/* for PostgreSQL, before falling back */
#define LEASE_FALLBACK_MS	3600000	/* a fallback share's lifetime */

static const char *const kind_name[LEASE_KINDS] = { "rpm", "tpm", "budget" };

/* One window of one limit that goes into the statement. */
struct item {
	struct ks_lease	*l;
	const char	*name;		/* the key state's: key, or "@team" */
	int		 kind;
	int64_t		 win;
	int64_t		 limit;
	int64_t		 used;		/* -1: this host holds none (fresh) */
	int64_t		 want;
};

/* A growing string for the statement's array parameters. */
struct abuf {
	char		*s;
	size_t		 len, size;
};

static struct {
	const struct config	*cfg;
	struct keystate_table	*kst;
	struct cnt_collector	*cnt;
	int64_t			 next_ms;
	int64_t			 started_ms;
	int64_t			 next_prune;	/* minute of the next prune */
	int			 hosts;		/* seen by PG; 0 = not yet */
	int			 fallback;	/* in an outage's fallback */
	int			 said_up;
	int			 said_hosts;	/* the hosts last logged */
	struct item		*items;
	size_t			 nitems, cap;
} ls;

void
lease_init(const struct config *cfg, struct keystate_table *kst,
    struct cnt_collector *cnt)
{
	memset(&ls, 0, sizeof(ls));
	ls.cfg = cfg;
	ls.kst = kst;
	ls.cnt = cnt;
	ls.started_ms = now_us() / 1000;
	ls.next_ms = cfg->limits_shared && kst != NULL && cfg->keys != NULL ?
	    0 : INT64_MAX;
}

int64_t
lease_due(void)
{
	return ls.next_ms;
}

/* The limit of KIND of E, and the window it is in at WALL (us). */
static int64_t
limit_of(const struct key_entry *e, int kind, int64_t wall, int64_t *win)
{
	time_t	 start, end;

	switch (kind) {
	case LEASE_RPM:
		*win = lease_minute(wall);
		return e->rpm;
	case LEASE_TPM:
		*win = lease_minute(wall);
		return e->tpm;
	default:
		if (e->budget_period == PERIOD_NONE)
			return 0;
		*win = ks_period((int)e->budget_period,
		    (time_t)(wall / 1000000), &start, &end);
		return e->budget_micro_usd;
	}
}

/* A lease's slice of LIMIT: limit_lease percent, at least one unit. */
static int64_t
slice_of(int64_t limit)
{
	int64_t	 s = (int64_t)((__int128)limit * ls.cfg->lease_pct / 100);

	return s > 0 ? s : 1;
}

static int
add_item(const struct item *it)
{
	if (ls.nitems == ls.cap) {
		size_t	 n = ls.cap ? ls.cap * 2 : 64;
		void	*p = reallocarray(ls.items, n, sizeof(*ls.items));

		if (p == NULL)
			return -1;
		ls.items = p;
		ls.cap = n;
	}
	ls.items[ls.nitems++] = *it;
	return 0;
}

/*
 * Calls FN for every window of every limit of every key and team: the
 * current one, and for rpm and tpm near the end of a minute the next.
 */
static void
each_window(int64_t wall, void (*fn)(struct item *, int64_t wall))
{
	const struct keyring	*kr = ls.cfg->keys;
	const struct key_entry	*e;
	struct keystate		*ks;
	struct item		 it;
	int			 i, kind, ahead;

	ahead = (wall / 1000000) % 60 >= 60 - LEASE_AHEAD_S;
	for (i = 0; i < kr->nkeys + kr->nteams; i++) {
		e = i < kr->nkeys ? &kr->keys[i] : &kr->teams[i - kr->nkeys];
		if ((ks = keystate_at(ls.kst, e->slot)) == NULL)
			continue;
		for (kind = 0; kind < LEASE_KINDS; kind++) {
			memset(&it, 0, sizeof(it));
			it.l = &ks->lease[kind];
			it.name = ks->name;
			it.kind = kind;
			if ((it.limit = limit_of(e, kind, wall, &it.win)) <= 0)
				continue;
			fn(&it, wall);
			if (kind != LEASE_BUDGET && ahead) {
				it.win++;
				fn(&it, wall);
			}
		}
	}
}

/* What a window needs from PostgreSQL, added to the batch if anything. */
static void
need(struct item *it, int64_t wall)
{
	struct lease_win	*w = lease_slot(it->l, it->win);
	int64_t			 slice = slice_of(it->limit), left, exp, need;

	if (w == NULL) {
		it->used = -1;
		it->want = slice;
	} else {
		it->used = atomic_load(&w->used);
		left = atomic_load(&w->granted) - it->used;
		/* half a slice left, or less than a refused request needed */
		need = atomic_exchange(&it->l->need, 0);
		it->want = left * 2 < slice || left < need ? slice : 0;
		if (it->want > 0 && need - left > slice)
			it->want = need - left;
		exp = atomic_load(&it->l->expires_ms);
		if (it->want == 0 && it->used == w->reported &&
		    exp - wall / 1000 > ls.cfg->lease_ttl_ms * 2 / 3)
			return;
	}
	if (add_item(it) == -1)
		log_warnx("limits: out of memory for a lease batch");
}

/* This host's share of a window while PostgreSQL is away. */
static void
fall_back(struct item *it, int64_t wall)
{
	struct lease_win	*w = lease_slot(it->l, it->win);
	int			 n = ls.hosts > 0 ? ls.hosts : 1;
	int64_t			 share = (it->limit + n - 1) / n, g;

	g = w != NULL ? atomic_load(&w->granted) : 0;
	lease_grant(it->l, it->win, g > share ? g : share, 0,
	    wall / 1000 + LEASE_FALLBACK_MS);
}

static int
sb_add(struct abuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
sb_add(struct abuf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->size - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if ((size_t)n < b->size - b->len) {
			b->len += (size_t)n;
			return 0;
		}
		if ((b->s = realloc(b->s, b->size * 2 + (size_t)n)) == NULL)
			return -1;
		b->size = b->size * 2 + (size_t)n;
	}
}

/* An array literal element: a name, quoted for PostgreSQL's arrays. */
static int
sb_quoted(struct abuf *b, const char *s)
{
	if (sb_add(b, "\"") == -1)
		return -1;
	for (; *s != '\0'; s++)
		if (sb_add(b, "%s%c", *s == '"' || *s == '\\' ? "\\" : "",
		    *s) == -1)
			return -1;
	return sb_add(b, "\"");
}

/* Items [FROM, TO) as the statement's six array parameters. */
static int
arrays(size_t from, size_t to, struct abuf a[6])
{
	size_t	 i;
	int	 rc = 0;

	for (i = 0; i < 6; i++)
		rc |= sb_add(&a[i], "{");
	for (i = from; i < to && rc == 0; i++) {
		const struct item *it = &ls.items[i];
		const char *sep = i > from ? "," : "";

		rc |= sb_add(&a[0], "%s", sep) | sb_quoted(&a[0], it->name);
		rc |= sb_add(&a[1], "%s%s", sep, kind_name[it->kind]);
		rc |= sb_add(&a[2], "%s%" PRId64, sep, it->win);
		rc |= sb_add(&a[3], "%s%" PRId64, sep, it->limit);
		rc |= sb_add(&a[4], "%s%" PRId64, sep, it->used);
		rc |= sb_add(&a[5], "%s%" PRId64, sep, it->want);
	}
	for (i = 0; i < 6; i++)
		rc |= sb_add(&a[i], "}");
	return rc;
}

/* One statement for items [FROM, TO): the grants into the key state. */
static int
lease_batch(struct pgsession *db, size_t from, size_t to, int64_t wall)
{
	struct abuf	 a[6];
	const char	*p[8];
	char		 ttl[16];
	PGresult	*res;
	int		 i, r, rc = -1;

	memset(a, 0, sizeof(a));
	for (i = 0; i < 6; i++) {
		a[i].size = 256;
		if ((a[i].s = calloc(1, a[i].size)) == NULL)
			goto out;
	}
	if (arrays(from, to, a) == -1)
		goto out;
	snprintf(ttl, sizeof(ttl), "%d", ls.cfg->lease_ttl_ms);
	p[0] = ls.cfg->host_name;
	p[1] = ttl;
	for (i = 0; i < 6; i++)
		p[i + 2] = a[i].s;
	res = PQexecParams(db->conn, "SELECT r_i, r_granted, r_used, r_hosts"
	    " FROM sluice_lease($1, $2, $3, $4, $5, $6, $7, $8)", 8, NULL, p,
	    NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgs_set_error(db, PQerrorMessage(db->conn));
		log_warnx("limits: leasing: %s", db->err);
		PQclear(res);
		goto out;
	}
	for (r = 0; r < PQntuples(res); r++) {
		long long	 k = strtoll(PQgetvalue(res, r, 0), NULL, 10);
		struct item	*it;
		int64_t		 g, u;

		if (k < 1 || (size_t)k > to - from)
			continue;
		it = &ls.items[from + (size_t)k - 1];
		g = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		u = strtoll(PQgetvalue(res, r, 2), NULL, 10);
		ls.hosts = atoi(PQgetvalue(res, r, 3));
		/* expiry from before we asked: never later than PG's */
		lease_grant(it->l, it->win, g, u, wall / 1000 +
		    ls.cfg->lease_ttl_ms);
		if (it->used >= 0)
			lease_slot(it->l, it->win)->reported = it->used;
	}
	PQclear(res);
	rc = 0;
 out:
	for (i = 0; i < 6; i++)
		free(a[i].s);
	return rc;
}

/* Once a minute: this host's rows of minutes that are over. */
static void
prune(struct pgsession *db, int64_t wall)
{
	char		 win[32];
	const char	*p[2] = { ls.cfg->host_name, win };
	PGresult	*res;

	if (lease_minute(wall) < ls.next_prune)
		return;
	ls.next_prune = lease_minute(wall) + 1;
	snprintf(win, sizeof(win), "%" PRId64, lease_minute(wall) - 2);
	res = PQexecParams(db->conn, "DELETE FROM sluice_leases WHERE host = $1"
	    " AND kind <> 'budget' AND win < $2::bigint", 2, NULL, p, NULL,
	    NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		log_warnx("limits: pruning old leases: %s",
		    PQerrorMessage(db->conn));
	PQclear(res);
}

static int
lease_all(struct pgsession *db, int64_t wall)
{
	size_t	 from, to;

	ls.nitems = 0;
	each_window(wall, need);
	for (from = 0; from < ls.nitems; from = to) {
		to = from + LEASE_BATCH < ls.nitems ? from + LEASE_BATCH :
		    ls.nitems;
		if (lease_batch(db, from, to, wall) == -1)
			return -1;
	}
	prune(db, wall);
	return 0;
}

void
lease_step(struct pgsession *db, int64_t now_ms)
{
	int64_t	 wall;

	if (now_ms < ls.next_ms)
		return;
	ls.next_ms = now_ms + LEASE_TICK_MS;
	wall = wall_us();
	if (db->state == PGS_UP && lease_all(db, wall) == 0) {
		if (ls.fallback)
			log_info("limits: leasing from PostgreSQL again");
		else if (!ls.said_up)
			log_info("limits: leased from PostgreSQL in slices of "
			    "%d%%", ls.cfg->lease_pct);
		if (ls.hosts != ls.said_hosts && ls.hosts > 0)
			log_info("limits: shared by %d hosts", ls.hosts);
		ls.said_hosts = ls.hosts;
		ls.said_up = 1;
		ls.fallback = 0;
		if (ls.cnt != NULL)
			atomic_store(&ls.cnt->limits_fallback, 0);
		return;
	}
	if (db->state == PGS_UP && PQstatus(db->conn) != CONNECTION_OK)
		pgs_down(db, now_ms, 1);
	if (ls.hosts == 0 && now_ms - ls.started_ms < LEASE_START_WAIT_MS)
		return;
	if (!ls.fallback) {
		log_warnx("limits: PostgreSQL unreachable: each shared limit "
		    "falls back to this host's share, 1/%d of it",
		    ls.hosts > 0 ? ls.hosts : 1);
		ls.fallback = 1;
		if (ls.cnt != NULL) {
			cnt_bump(&ls.cnt->limits_fallbacks);
			atomic_store(&ls.cnt->limits_fallback, 1);
		}
	}
	each_window(wall, fall_back);
}
