/*
 * ringbench.c - what metering costs: the push on the request path, and
 * how many rows per second the collector moves from the ring into
 * PostgreSQL with COPY.
 *
 *   ringbench [-n EVENTS] [-p PRODUCERS] [-b BATCH_ROWS] CONNINFO
 *
 * 1. Push cost: one process pushes EVENTS events into a lane big enough
 *    to hold them all (no consumer, no wrap) and reports ns per push.
 * 2. Ring to PostgreSQL: PRODUCERS forked processes push EVENTS events in
 *    all, each into its own lane, as fast as the lane lets them (a full
 *    lane is retried, as a benchmark may; workers never retry); a forked
 *    collector (the real collector_main) loads them; when the producers are
 *    done the collector gets SIGTERM and drains.  Reports rows/s from the
 *    first push to the collector's exit, and checks the row count.
 */
#include <sys/wait.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/config.h"
#include "common/log.h"
#include "shm/ring.h"
#include "shm/shm.h"
#include "sql/collector.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
fill(struct usage_event *ev, uint64_t lane, uint64_t i)
{
	uint64_t id[2] = { lane << 56 | i, 0x9e3779b97f4a7c15ULL ^ i };

	memset(ev, 0, sizeof(*ev));
	memcpy(ev->request_id, id, 16);
	ev->request_id[6] = (ev->request_id[6] & 0x0f) | 0x40;
	ev->request_id[8] = (ev->request_id[8] & 0x3f) | 0x80;
	ev->ts_start_us = (int64_t)time(NULL) * 1000000;
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
	snprintf(ev->key_name, sizeof(ev->key_name), "bench");
	snprintf(ev->model, sizeof(ev->model), "gpt-4o-mini");
	snprintf(ev->upstream, sizeof(ev->upstream), "mock");
	snprintf(ev->endpoint, sizeof(ev->endpoint), "/v1/chat/completions");
	snprintf(ev->client_addr, sizeof(ev->client_addr), "127.0.0.1");
}

static long
count_rows(const char *conninfo)
{
	PGconn		*c = PQconnectdb(conninfo);
	PGresult	*r;
	long		 n = -1;

	if (PQstatus(c) == CONNECTION_OK) {
		r = PQexec(c, "SELECT count(*) FROM usage_events "
		    "WHERE key_name = 'bench'");
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			n = atol(PQgetvalue(r, 0, 0));
		PQclear(r);
		PQexec(c, "DELETE FROM usage_events WHERE key_name = 'bench'");
	}
	PQfinish(c);
	return n;
}

int
main(int argc, char **argv)
{
	struct shm_segment	*seg;
	struct usage_event	 ev;
	struct config		*cfg;
	long			 n = 200000, rows;
	int			 nprod = 2, batch = 1000, ch, i, st;
	double			 t0, t1;
	pid_t			 coll, prod[16];
	char			 spool[] = "/tmp/ringbench-XXXXXX";

	while ((ch = getopt(argc, argv, "n:p:b:")) != -1) {
		switch (ch) {
		case 'n': n = atol(optarg); break;
		case 'p': nprod = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || n < 1 || nprod < 1 || nprod > 16) {
usage:
		fprintf(stderr, "usage: ringbench [-n events] [-p producers] "
		    "[-b batch_rows] conninfo\n");
		return 2;
	}
	log_init("stderr", LOGL_WARN);

	/* 1: the push alone */
	{
		uint32_t slots = 1;
		struct ring_lane *l;

		while (slots < (uint32_t)n && slots < (1u << 20))
			slots <<= 1;
		if ((seg = shm_create(1, slots)) == NULL) {
			perror("shm_create");
			return 1;
		}
		l = shm_lane(seg, 0);
		fill(&ev, 0, 0);
		/* first lap: the kernel maps the lane's pages in */
		for (i = 0; i < (int)slots; i++)
			ring_push(l, &ev);
		t0 = now_s();
		ring_release(l, (uint64_t)slots);
		/* second lap: the steady state of a ring that has wrapped */
		for (i = 0; i < (int)slots; i++) {
			ev.prompt_tokens = i;
			ring_push(l, &ev);
		}
		t1 = now_s();
		printf("push: %u events, %.1f ns per push (%d-byte events, "
		    "pages already mapped)\n", slots, (t1 - t0) * 1e9 / slots,
		    (int)sizeof(ev));
		shm_destroy(seg);
	}

	/* 2: producers -> ring -> collector -> PostgreSQL */
	if (mkdtemp(spool) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return 1;
	snprintf(cfg->database, sizeof(cfg->database), "%s", argv[optind]);
	snprintf(cfg->spool_dir, sizeof(cfg->spool_dir), "%s", spool);
	cfg->batch_rows = batch;
	cfg->batch_ms = 200;
	cfg->shutdown_timeout_ms = 60000;
	cfg->ring_slots = 65536;
	if ((seg = shm_create((uint32_t)nprod, 65536)) == NULL) {
		perror("shm_create");
		return 1;
	}
	count_rows(argv[optind]);	/* and clear earlier runs */
	t0 = now_s();
	if ((coll = fork()) == 0)
		collector_main(cfg, seg);
	for (i = 0; i < nprod; i++) {
		if ((prod[i] = fork()) == 0) {
			struct ring_lane *l = shm_lane(seg, (uint32_t)i);
			long k, mine = n / nprod + (i < n % nprod);

			for (k = 0; k < mine; k++) {
				fill(&ev, (uint64_t)i, (uint64_t)k);
				while (ring_push(l, &ev) == -1)
					sched_yield();
			}
			_exit(0);
		}
	}
	for (i = 0; i < nprod; i++)
		waitpid(prod[i], &st, 0);
	kill(coll, SIGTERM);
	waitpid(coll, &st, 0);
	t1 = now_s();
	rows = count_rows(argv[optind]);
	printf("ring -> PostgreSQL: %ld events from %d producers, batch %d: "
	    "%.2f s, %.0f rows/s; rows loaded %ld (%s)\n", n, nprod, batch,
	    t1 - t0, n / (t1 - t0), rows, rows == n ? "all" : "MISMATCH");
	return rows == n ? 0 : 1;
}
