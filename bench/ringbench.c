/*
 * ringbench.c - what metering costs: the push on the request path, how
 * many rows per second the collector moves from the ring into
 * PostgreSQL, and how much CPU PostgreSQL spends per row.
 *
 *   ringbench [-n EVENTS] [-p PRODUCERS] [-b BATCH_ROWS] [-f FILL]
 *             [-r REPS] CONNINFO
 *
 * 1. Push cost: one process pushes EVENTS events into a lane big enough
 *    to hold them all (no consumer, no wrap) and reports ns per push.
 * 2. Ring to PostgreSQL: PRODUCERS forked processes push EVENTS events in
 *    all, each into its own lane, as fast as the lane lets them (a full
 *    lane is retried after 100 us, as a benchmark may; workers never
 *    retry); a forked collector (the real collector_main) loads them.
 *    The clock runs from the first push, once the collector is connected,
 *    to the moment the collector's counters say every event is committed.
 *    PostgreSQL's CPU is the schedstat time (first field, ns) of every
 *    process of the cluster (the postmaster's children: the collector's
 *    backend, the WAL writer, the checkpointer...) over that interval,
 *    divided by the rows.  Then the row count is checked.
 * 3. With -f FILL: the same, alternating REPS times between a database
 *    whose usage_events is empty (truncated before each run) and one that
 *    holds FILL rows (generate_series, spread over the current month so
 *    that they share the partition the new rows go to, with UUIDv7 ids),
 *    and the ratio of their rows/s.  Autovacuum is turned off for the
 *    cluster meanwhile (ALTER SYSTEM), so that a vacuum of the freshly
 *    filled table does not land inside one run and not the other.
 *
 * The databases of 3 are created next to CONNINFO's and left behind;
 * make bench-ring runs all this on a private cluster it then removes.
 */
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/config.h"
#include "common/log.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/shm.h"
#include "sql/collector.h"

#define MAXPROCS	512		/* postgres processes we follow */
#define WAIT_S		600		/* bound on any one wait */

struct cpuset {
	int		 n;
	pid_t		 pid[MAXPROCS];
	uint64_t	 ns[MAXPROCS];
};

struct result {
	double		 rows_s;
	double		 pg_ns_row;		/* the whole cluster */
	double		 be_ns_row;		/* the collector's backend */
	double		 coll_ns_row;		/* the collector itself */
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU time of PID in ns (schedstat's first field), 0 if it is gone. */
static uint64_t
sched_ns(pid_t pid)
{
	char		 path[64];
	FILE		*f;
	unsigned long long ns = 0;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fscanf(f, "%llu", &ns) != 1)
		ns = 0;
	fclose(f);
	return ns;
}

/* The parent of PID, from /proc/PID/stat (after the ")" of comm). */
static pid_t
parent_of(pid_t pid)
{
	char		 path[64], buf[1024], *p;
	FILE		*f;
	size_t		 n;
	int		 ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* The postmaster and all its children, with their CPU time now. */
static void
cpu_snapshot(pid_t pm, struct cpuset *cs)
{
	DIR		*d;
	struct dirent	*de;
	pid_t		 pid;

	cs->n = 0;
	cs->pid[cs->n] = pm;
	cs->ns[cs->n++] = sched_ns(pm);
	if ((d = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(d)) != NULL && cs->n < MAXPROCS) {
		if ((pid = atoi(de->d_name)) <= 0 || parent_of(pid) != pm)
			continue;
		cs->pid[cs->n] = pid;
		cs->ns[cs->n++] = sched_ns(pid);
	}
	closedir(d);
}

/*
 * CPU spent between two snapshots: by the processes alive at both, and
 * all of it by those born since.  One that ended in between is lost
 * (an autovacuum worker, say: autovacuum is off during the runs).
 */
static uint64_t
cpu_delta(const struct cpuset *a, const struct cpuset *b)
{
	uint64_t	 sum = 0;
	int		 i, j;

	for (j = 0; j < b->n; j++) {
		for (i = 0; i < a->n && a->pid[i] != b->pid[j]; i++)
			;
		if (i == a->n)
			sum += b->ns[j];
		else if (b->ns[j] > a->ns[i])
			sum += b->ns[j] - a->ns[i];
	}
	return sum;
}

static PGconn *
db_open(const char *conninfo)
{
	PGconn	*c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "ringbench: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* Run SQL; exit on an error unless OK_FAIL. */
static void
db_run(PGconn *c, const char *sql, int ok_fail)
{
	PGresult	*r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK && !ok_fail) {
		fprintf(stderr, "ringbench: %s: %s", sql,
		    PQresultErrorMessage(r));
		exit(1);
	}
	PQclear(r);
}

/* The first value of SQL's first row as a number, -1 if none. */
static long long
db_num(PGconn *c, const char *sql)
{
	PGresult	*r = PQexec(c, sql);
	long long	 v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	    !PQgetisnull(r, 0, 0))
		v = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

/*
 * A time-ordered id, as sluice makes them (UUIDv7: 48 bits of ms), with
 * the lane and the event's number where sluice has random bits.
 */
static void
fill(struct usage_event *ev, uint64_t lane, uint64_t i, const char *key)
{
	struct timespec	 ts;
	uint64_t	 ms;
	int		 k;

	memset(ev, 0, sizeof(*ev));
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (k = 0; k < 6; k++)
		ev->request_id[k] = (uint8_t)(ms >> (40 - 8 * k));
	ev->request_id[6] = 0x70 | (uint8_t)(lane & 0x0f);
	ev->request_id[7] = (uint8_t)(lane >> 4);
	ev->request_id[8] = 0x80;
	for (k = 0; k < 7; k++)
		ev->request_id[9 + k] = (uint8_t)(i >> (48 - 8 * k));
	ev->ts_start_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	ev->prompt_tokens = 100;
	ev->completion_tokens = 20;
	ev->cached_tokens = 0;
	ev->cost_micro_usd = 27;
	ev->bytes_in = 300;
	ev->bytes_out = 900;
	ev->latency_us = 1500;
	ev->ttfb_us = 1000;
	ev->overhead_us = 40;
	ev->worker_pid = getpid();
	ev->status = 200;
	ev->usage_source = USAGE_UPSTREAM;
	ev->attempts = 1;
	ev->cache_write_5m_tokens = ev->cache_write_1h_tokens = -1;
	ev->reasoning_tokens = -1;
	snprintf(ev->key_name, sizeof(ev->key_name), "%s", key);
	snprintf(ev->model, sizeof(ev->model), "gpt-4o-mini");
	snprintf(ev->upstream, sizeof(ev->upstream), "mock");
	snprintf(ev->endpoint, sizeof(ev->endpoint), "/v1/chat/completions");
	snprintf(ev->client_addr, sizeof(ev->client_addr), "127.0.0.1");
}

/* 1: the push alone. */
static int
bench_push(long n)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint32_t		 slots = 1, i;
	double			 t0, t1;

	while (slots < (uint32_t)n && slots < (1u << 20))
		slots <<= 1;
	if ((seg = shm_create(1, slots)) == NULL) {
		perror("shm_create");
		return -1;
	}
	l = shm_lane(seg, 0);
	fill(&ev, 0, 0, "bench");
	/* first lap: the kernel maps the lane's pages in */
	for (i = 0; i < slots; i++)
		ring_push(l, &ev);
	t0 = now_s();
	ring_release(l, (uint64_t)slots);
	/* second lap: the steady state of a ring that has wrapped */
	for (i = 0; i < slots; i++) {
		ev.prompt_tokens = i;
		ring_push(l, &ev);
	}
	t1 = now_s();
	printf("push: %u events, %.1f ns per push (%d-byte events, "
	    "pages already mapped)\n", slots, (t1 - t0) * 1e9 / slots,
	    (int)sizeof(ev));
	shm_destroy(seg);
	return 0;
}

/* The pid of the collector's backend, once it is connected. */
static pid_t
backend_of_collector(PGconn *c)
{
	return (pid_t)db_num(c, "SELECT pid FROM pg_stat_activity WHERE "
	    "application_name = 'sluice collector' AND datname = "
	    "current_database() ORDER BY backend_start DESC LIMIT 1");
}

/*
 * 2: producers -> ring -> collector -> PostgreSQL, into CONNINFO's
 * database, rows tagged KEY.  -1 if a row is missing or a wait ran out.
 */
static int
bench_ring(const char *conninfo, long n, int nprod, int batch,
    const char *key, struct result *res)
{
	struct shm_segment	*seg;
	struct shm_region_req	 req = { "counters", 0 };
	struct cnt_region	*cr;
	struct cnt_collector	*cc;
	struct usage_event	 ev;
	struct config		*cfg;
	struct cpuset		 a, b;
	PGconn			*c;
	char			 spool[] = "/tmp/ringbench-XXXXXX", sql[256];
	double			 t0, t1, deadline;
	uint64_t		 coll_ns, be0, be1;
	pid_t			 coll, prod[16], pm, be;
	long			 rows;
	int			 i, st;

	if (mkdtemp(spool) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return -1;
	snprintf(cfg->database, sizeof(cfg->database), "%s", conninfo);
	snprintf(cfg->spool_dir, sizeof(cfg->spool_dir), "%s", spool);
	cfg->batch_rows = batch;
	cfg->batch_ms = 200;
	cfg->shutdown_timeout_ms = 60000;
	cfg->ring_slots = 65536;
	req.size = cnt_region_size((uint32_t)nprod);
	if ((seg = shm_create_regions((uint32_t)nprod, 65536, &req, 1)) ==
	    NULL) {
		perror("shm_create");
		return -1;
	}
	cr = shm_region(seg, "counters", NULL);
	cnt_region_init(cr, (uint32_t)nprod);
	cc = &cr->collector;

	c = db_open(conninfo);
	pm = parent_of((pid_t)db_num(c, "SELECT pg_backend_pid()"));
	/* the child leaves C alone: closing it would end ours too */
	if ((coll = fork()) == 0)
		collector_main(cfg, seg);
	deadline = now_s() + WAIT_S;
	while (!atomic_load(&cc->connected) && now_s() < deadline)
		usleep(1000);
	be = backend_of_collector(c);
	be0 = sched_ns(be);
	cpu_snapshot(pm, &a);
	coll_ns = sched_ns(coll);
	t0 = now_s();
	for (i = 0; i < nprod; i++) {
		if ((prod[i] = fork()) == 0) {
			struct ring_lane *l = shm_lane(seg, (uint32_t)i);
			long k, mine = n / nprod + (i < n % nprod);

			for (k = 0; k < mine; k++) {
				fill(&ev, (uint64_t)i, (uint64_t)k, key);
				while (ring_push(l, &ev) == -1)
					usleep(100);
			}
			_exit(0);
		}
	}
	for (i = 0; i < nprod; i++)
		waitpid(prod[i], &st, 0);
	while (cnt_get(&cc->rows_written) + cnt_get(&cc->rows_duplicate) <
	    (uint64_t)n && now_s() < deadline)
		usleep(1000);
	t1 = now_s();
	cpu_snapshot(pm, &b);
	be1 = sched_ns(be);
	coll_ns = sched_ns(coll) - coll_ns;
	kill(coll, SIGTERM);
	waitpid(coll, &st, 0);
	shm_destroy(seg);
	free(cfg);
	snprintf(sql, sizeof(sql), "rm -rf '%s'", spool);
	if (system(sql) != 0)
		fprintf(stderr, "ringbench: could not remove %s\n", spool);

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM usage_events "
	    "WHERE key_name = '%s'", key);
	rows = (long)db_num(c, sql);
	PQfinish(c);
	res->rows_s = n / (t1 - t0);
	res->pg_ns_row = (double)cpu_delta(&a, &b) / n;
	res->be_ns_row = be > 0 && be1 > be0 ? (double)(be1 - be0) / n : 0;
	res->coll_ns_row = (double)coll_ns / n;
	printf("ring -> PostgreSQL: %ld events from %d producers, batch %d: "
	    "%.2f s, %.0f rows/s; PostgreSQL CPU %.2f us/row (backend "
	    "%.2f), collector %.2f us/row; rows loaded %ld (%s)\n", n, nprod,
	    batch, t1 - t0, res->rows_s, res->pg_ns_row / 1000,
	    res->be_ns_row / 1000, res->coll_ns_row / 1000, rows,
	    rows == n ? "all" : "MISMATCH");
	fflush(stdout);
	return rows == n ? 0 : -1;
}

/* CONNINFO with dbname=NAME after it (the last keyword wins). */
static void
conninfo_db(char *buf, size_t len, const char *conninfo, const char *name)
{
	snprintf(buf, len, "%s dbname=%s", conninfo, name);
}

/* A database whose usage_events exists: the collector makes the schema. */
static void
make_db(const char *conninfo, const char *name)
{
	struct result	 r;
	PGconn		*c = db_open(conninfo);
	char		 sql[128], ci[1024];

	db_run(c, "SET client_min_messages TO warning", 0);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
	db_run(c, sql, 0);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	db_run(c, sql, 0);
	PQfinish(c);
	conninfo_db(ci, sizeof(ci), conninfo, name);
	printf("%s: ", name);
	if (bench_ring(ci, 1000, 1, 1000, "warmup", &r) == -1)
		exit(1);
	c = db_open(ci);
	db_run(c, "TRUNCATE usage_events", 0);
	PQfinish(c);
}

/*
 * FILL rows over the current UTC month up to now, a million per
 * statement, then vacuumed (so that every page is all-visible, as in a
 * table that has been there a while) and checkpointed.
 */
static void
fill_db(const char *conninfo, long fill)
{
	PGconn		*c = db_open(conninfo);
	char		 sql[2048];
	long		 from, to, chunk = 1000000;
	double		 t0 = now_s();

	db_run(c, "CREATE TEMP TABLE span AS SELECT "
	    "(extract(epoch FROM date_trunc('month', now() AT TIME ZONE "
	    "'UTC') AT TIME ZONE 'UTC') * 1000)::bigint AS lo, "
	    "(extract(epoch FROM now()) * 1000)::bigint - 1000 AS hi", 0);
	for (from = 1; from <= fill; from += chunk) {
		to = from + chunk - 1 < fill ? from + chunk - 1 : fill;
		snprintf(sql, sizeof(sql),
		    "INSERT INTO usage_events (request_id, ts_start, key_name,"
		    " model, upstream, endpoint, stream, status, prompt_tokens,"
		    " completion_tokens, cached_tokens, cost_micro_usd,"
		    " usage_source, attempts, bytes_in, bytes_out, latency_us,"
		    " ttfb_us, overhead_us, client_addr, worker_pid)"
		    " SELECT (lpad(to_hex(ms), 12, '0') || '7' ||"
		    "  substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,"
		    "  to_timestamp(ms / 1000.0), 'fill-' || (g %% 100),"
		    "  'gpt-4o-mini', 'mock', '/v1/chat/completions', false,"
		    "  200, 100, 20, 0, 27, 'upstream', 1, 300, 900, 1500,"
		    "  1000, 40, '127.0.0.1', 1"
		    " FROM (SELECT g, lo + (hi - lo) * g / %ld AS ms,"
		    "  md5(g::text) AS h FROM span, generate_series(%ld, %ld)"
		    "  g) s", fill, from, to);
		db_run(c, sql, 0);
		printf("\rfilled %ld of %ld rows (%.0f s)", to, fill,
		    now_s() - t0);
		fflush(stdout);
	}
	db_run(c, "VACUUM (ANALYZE) usage_events", 0);
	db_run(c, "CHECKPOINT", 0);
	printf(", vacuumed: %lld rows in %.0f s\n",
	    db_num(c, "SELECT count(*) FROM usage_events"), now_s() - t0);
	PQfinish(c);
}

static int
cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* 3: empty against FILL rows, REPS runs each, alternating. */
static int
bench_fill(const char *conninfo, long n, int nprod, int batch, long fill,
    int reps)
{
	struct result	 r;
	PGconn		*c;
	char		 ce[1024], cf[1024], key[32];
	double		 rs[2][32], pg[2][32], be[2][32];
	int		 rep, k, fail = 0;

	if (reps > 32)
		reps = 32;
	c = db_open(conninfo);
	db_run(c, "ALTER SYSTEM SET autovacuum = off", 0);
	db_run(c, "SELECT pg_reload_conf()", 0);
	PQfinish(c);
	make_db(conninfo, "ring_empty");
	make_db(conninfo, "ring_full");
	conninfo_db(ce, sizeof(ce), conninfo, "ring_empty");
	conninfo_db(cf, sizeof(cf), conninfo, "ring_full");
	fill_db(cf, fill);
	for (rep = 0; rep < reps; rep++) {
		for (k = 0; k < 2; k++) {
			c = db_open(k == 0 ? ce : cf);
			if (k == 0)
				db_run(c, "TRUNCATE usage_events", 0);
			db_run(c, "CHECKPOINT", 0);
			PQfinish(c);
			snprintf(key, sizeof(key), "bench-%d", rep);
			printf("%s run %d: ", k == 0 ? "empty table  " :
			    "filled table ", rep + 1);
			if (bench_ring(k == 0 ? ce : cf, n, nprod, batch, key,
			    &r) == -1)
				fail = 1;
			rs[k][rep] = r.rows_s;
			pg[k][rep] = r.pg_ns_row / 1000;
			be[k][rep] = r.be_ns_row / 1000;
		}
	}
	c = db_open(conninfo);
	db_run(c, "ALTER SYSTEM RESET autovacuum", 0);
	db_run(c, "SELECT pg_reload_conf()", 0);
	PQfinish(c);
	{
		double	 e = median(rs[0], reps), f = median(rs[1], reps);

		printf("medians of %d runs, batch %d: empty %.0f rows/s, "
		    "PostgreSQL %.2f us/row (backend %.2f); %ld rows already "
		    "there %.0f rows/s, PostgreSQL %.2f us/row (backend %.2f); "
		    "filled/empty %.2f\n", reps, batch, e, median(pg[0], reps),
		    median(be[0], reps), fill, f, median(pg[1], reps),
		    median(be[1], reps), f / e);
	}
	return fail ? -1 : 0;
}

int
main(int argc, char **argv)
{
	struct result	 r;
	long		 n = 200000, fill = 0;
	int		 nprod = 2, batch = 1000, reps = 3, ch;

	while ((ch = getopt(argc, argv, "n:p:b:f:r:")) != -1) {
		switch (ch) {
		case 'n': n = atol(optarg); break;
		case 'p': nprod = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'f': fill = atol(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || n < 1 || nprod < 1 || nprod > 16 ||
	    fill < 0 || reps < 1) {
usage:
		fprintf(stderr, "usage: ringbench [-n events] [-p producers] "
		    "[-b batch_rows] [-f fill_rows] [-r reps] conninfo\n");
		return 2;
	}
	log_init("stderr", LOGL_WARN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (bench_push(n) == -1)
		return 1;
	if (fill > 0)
		return bench_fill(argv[optind], n, nprod, batch, fill, reps) ==
		    -1;
	{
		PGconn	*c = db_open(argv[optind]);

		/* the schema may not be there yet: then nothing to clear */
		db_run(c, "DELETE FROM usage_events WHERE key_name = 'bench'",
		    1);
		PQfinish(c);
	}
	return bench_ring(argv[optind], n, nprod, batch, "bench", &r) == -1;
}
