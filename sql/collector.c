/*
 * collector.c - the collector process: ring lanes in, PostgreSQL rows out.
 *
 * The one rule is that a lane's head moves only past events that are
 * durable: committed in PostgreSQL, or in an fsync'ed spool file.  So a
 * collector killed at any point loses nothing (the next one re-reads from
 * head), and the price is that it may load some events twice, which the
 * primary key on request_id absorbs: every load is COPY into a temporary
 * staging table, then INSERT ... ON CONFLICT (request_id) DO NOTHING, in
 * one transaction.
 *
 * Workers never wait for us, so we must never fall behind for long: when
 * PostgreSQL is unreachable the batches go to the spool instead, lanes keep
 * moving, and the connection is retried in the background (non-blocking
 * PQconnectStart/PQconnectPoll, backoff 100 ms .. 5 s).  Once it is back,
 * the spool is replayed oldest file first before new events are loaded,
 * unless a lane is filling up meanwhile.
 *
 * A batch is read in place from the ring (slots below tail are stable
 * until we release them), up to batch_rows events taken round-robin over
 * the lanes, and flushed when full or batch_ms after its first event.
 * The loop polls: it sleeps 1-2 ms when there is nothing to do.
 */
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "common/clock.h"
#include "common/config.h"
#include "common/event.h"
#include "common/log.h"
#include "shm/ring.h"
#include "shm/shm.h"
#include "sql/budget.h"
#include "sql/collector.h"
#include "shm/keystate.h"
#include "sql/schema.h"
#include "sql/spool.h"
#include "shm/counters.h"

#define COLL_BACKOFF_MIN_MS	100
#define COLL_BACKOFF_MAX_MS	5000
#define COLL_CONNECT_MS		5000	/* give up on one connect attempt */
#define COLL_IDLE_MS		20	/* sleep when all lanes are empty: a
					   lane holds seconds of traffic, and
					   waking 500 times a second cost the
					   workers' core 1% */
#define COLL_SPOOL_RETRY_MS	1000	/* after the spool failed too */
#define COLL_DRAIN_MIN_MS	10000	/* keep trying to drain at least */
#define COLL_COPY_CHUNK		(256 * 1024)	/* bytes per PQputCopyData */
#define COLL_ROW_MAX		1024	/* bytes one encoded row may take */
#define COLL_REPLAY_CHUNK	1024	/* events read from a spool file */
#define COLL_NFIELDS		22
#define COLL_BUDGET_MS		30000	/* reload key spend from PG */

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_US		INT64_C(946684800000000)
/* 9999-12-31T23:59:59.999999Z: the clamp for a garbage ts_start. */
#define TS_MAX_US		INT64_C(253402300799999999)

/* Wire values of inet's address family, PGSQL_AF_INET{,6} in PostgreSQL. */
#define PG_AF_INET		2
#define PG_AF_INET6		3

#define COLL_COLUMNS							\
	"request_id, ts_start, key_name, model, upstream, endpoint, "	\
	"stream, status, error_class, prompt_tokens, completion_tokens, " \
	"cached_tokens, cost_micro_usd, usage_source, attempts, "	\
	"bytes_in, bytes_out, latency_us, ttfb_us, overhead_us, "	\
	"client_addr, worker_pid"

enum coll_pg {
	PG_NONE,		/* no database configured: spool only */
	PG_DOWN,		/* waiting for the next attempt */
	PG_CONNECTING,		/* PQconnectPoll in progress */
	PG_UP,			/* connected, schema checked, stage ready */
};

enum coll_tx {
	TX_OK,
	TX_DATA,		/* PG refused the rows themselves */
	TX_DOWN,		/* connection lost or unusable; now PG_DOWN */
};

static struct {
	const struct config	*cfg;
	struct shm_segment	*shm;
	uint32_t		 nlanes;
	uint32_t		 lane_slots;
	struct ring_lane	**lanes;
	size_t			 batch_rows;
	int64_t			 batch_ms;
	pid_t			 ppid;

	/* the batch: per lane, ring positions [start, end) */
	uint64_t		*start;
	uint64_t		*end;
	size_t			 count;
	int64_t			 first_ms;	/* when its first event came */
	uint32_t		 rr;		/* lane to read first */

	/* PostgreSQL */
	enum coll_pg		 pg;
	PGconn			*conn;
	PostgresPollingStatusType poll;
	int64_t			 next_connect;
	int64_t			 connect_started;
	int			 backoff_ms;
	int			 down_logged;	/* "unreachable" said once */
	char			 sqlstate[6];
	char			 err[256];

	/* spool */
	struct spool		*spool;
	int			 spooling;	/* in a spool episode */
	uint64_t		 ep_rows;
	uint64_t		 ep_files;
	int			 spool_failed;	/* said once */
	int64_t			 hold_until;	/* next flush attempt */
	int64_t			 replay_hold;

	/* COPY encoding */
	char			*buf;
	size_t			 buflen;
	size_t			 bufcap;
	struct usage_event	*rbuf;

	/* key spend, loaded from PostgreSQL into shared memory */
	struct keystate_table	*kst;
	int64_t			 next_budget;
} coll;

static struct collector_stats	 coll_st;

static volatile sig_atomic_t	 coll_quit;
static volatile sig_atomic_t	 coll_reopen;

static void	 coll_signals(void);
static void	 coll_onsig(int);
static void	 coll_setup(const struct config *, struct shm_segment *);
static void	 coll_sleep(int);
static void	 coll_gather(int64_t);
static int	 coll_pressure(void);
static uint64_t	 coll_backlog(void);
static int	 coll_flush(int64_t);
static void	 coll_release(void);
static enum coll_tx coll_load_batch(uint64_t *);
static int	 coll_spool_batch(void);
static int	 coll_spool_ready(void);
static void	 coll_spool_episode_end(void);
static void	 coll_replay_one(int64_t);
static void	 coll_drain(void);
static void	 coll_budget(int64_t);

static void	 coll_pg_step(int64_t);
static void	 coll_pg_start(int64_t);
static void	 coll_pg_ready(int64_t);
static void	 coll_pg_down(int64_t, int);
static enum coll_tx coll_pg_classify(void);
static void	 coll_notice(void *, const char *);

static int	 coll_tx_begin(void);
static int	 coll_tx_put(const struct usage_event *);
static int	 coll_tx_commit(uint64_t *);
static void	 coll_tx_rollback(void);
static int	 coll_exec(const char *, ExecStatusType, PGresult **);
static void	 coll_res_error(PGresult *);
static void	 coll_set_error(const char *);
static void	 coll_publish_begin(struct shm_segment *);
static void	 coll_publish(int64_t);

/* Our block of the counters region (/metrics), and its totals at start. */
static struct cnt_collector	*coll_cnt;
static struct collector_stats	 coll_base;

static void	 coll_encode(const struct usage_event *);
static char	*coll_put_text(char *, const char *, size_t, int);
static char	*coll_put_i64(char *, int64_t, int);

void
collector_main(const struct config *cfg, struct shm_segment *shm)
{
	int64_t		 now;
	int		 ready;

	log_setrole("collector");
	coll_signals();
	coll_publish_begin(shm);
	coll_setup(cfg, shm);

	for (;;) {
		if (coll_reopen) {
			coll_reopen = 0;
			if (log_reopen() == -1)
				log_warn("reopening the log");
		}
		if (coll_quit)
			break;
		if (getppid() != coll.ppid) {
			log_warnx("master process went away, draining");
			break;
		}
		now = (now_us() / 1000);
		coll_publish(now);
		coll_pg_step(now);
		if (coll.pg == PG_UP && now >= coll.next_budget &&
		    (coll.spool == NULL || spool_pending(coll.spool) == 0))
			coll_budget(now);

		/* The spool first, unless a lane fills up meanwhile. */
		if (coll.pg == PG_UP && coll.spool != NULL &&
		    spool_pending(coll.spool) > 0 && now >= coll.replay_hold) {
			coll_replay_one(now);
			if (!coll_pressure())
				continue;
		}

		coll_gather(now);
		ready = coll.count > 0 && (coll.count >= coll.batch_rows ||
		    now - coll.first_ms >= coll.batch_ms);
		/* While a connection attempt runs, wait for its outcome. */
		if (ready && now >= coll.hold_until &&
		    (coll.pg != PG_CONNECTING || coll_pressure()) &&
		    coll_flush(now) == 0)
			continue;
		coll_sleep(coll.count > 0 ? 1 : COLL_IDLE_MS);
	}
	coll_drain();
	coll_publish((now_us() / 1000));
	if (coll.conn != NULL)
		PQfinish(coll.conn);
	spool_close(coll.spool);
	_exit(0);
}

void
collector_stats(struct collector_stats *st)
{
	*st = coll_st;
	st->spool_files = coll.spool != NULL ? spool_pending(coll.spool) : 0;
	st->connected = coll.pg == PG_UP;
}

/*
 * Handlers only set flags and are installed without SA_RESTART, so that
 * the poll() we sleep in returns at once.  SIGINT and SIGHUP reach us
 * from a terminal together with the master; the master decides what they
 * mean and tells us with SIGTERM, so we ignore them.
 */
static void
coll_signals(void)
{
	struct sigaction	 sa;
	sigset_t		 set;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = coll_onsig;
	if (sigaction(SIGTERM, &sa, NULL) == -1 ||
	    sigaction(SIGQUIT, &sa, NULL) == -1 ||
	    sigaction(SIGUSR1, &sa, NULL) == -1)
		fatal("sigaction");
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGINT, &sa, NULL) == -1 ||
	    sigaction(SIGHUP, &sa, NULL) == -1 ||
	    sigaction(SIGPIPE, &sa, NULL) == -1)
		fatal("sigaction");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_UNBLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
}

static void
coll_onsig(int sig)
{
	if (sig == SIGUSR1)
		coll_reopen = 1;
	else
		coll_quit = 1;
}


static void
coll_setup(const struct config *cfg, struct shm_segment *shm)
{
	char		 err[512];
	uint64_t	 head;
	uint32_t	 i;

	memset(&coll, 0, sizeof(coll));
	coll.cfg = cfg;
	coll.shm = shm;
	coll.kst = shm_region(shm, "keys", NULL);
	coll.ppid = getppid();
#ifdef __linux__
	/* If the master dies without telling us, drain and go. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		log_warn("prctl(PR_SET_PDEATHSIG)");
#endif
	coll.nlanes = shm_nlanes(shm);
	coll.lane_slots = shm_lane_slots(shm);
	coll.batch_rows = cfg->batch_rows > 0 ? (size_t)cfg->batch_rows : 1000;
	coll.batch_ms = cfg->batch_ms > 0 ? cfg->batch_ms : 200;
	coll.bufcap = COLL_COPY_CHUNK + COLL_ROW_MAX + 64;
	coll.lanes = calloc(coll.nlanes, sizeof(*coll.lanes));
	coll.start = calloc(coll.nlanes, sizeof(*coll.start));
	coll.end = calloc(coll.nlanes, sizeof(*coll.end));
	coll.buf = malloc(coll.bufcap);
	coll.rbuf = calloc(COLL_REPLAY_CHUNK, sizeof(*coll.rbuf));
	if (coll.lanes == NULL || coll.start == NULL || coll.end == NULL ||
	    coll.buf == NULL || coll.rbuf == NULL)
		fatal("collector: allocating buffers");
	for (i = 0; i < coll.nlanes; i++) {
		coll.lanes[i] = shm_lane(shm, i);
		(void)ring_readable(coll.lanes[i], &head);
		coll.start[i] = coll.end[i] = head;
	}

	if ((coll.spool = spool_open(cfg->spool_dir, err, sizeof(err))) ==
	    NULL) {
		log_warnx("%s; will retry when a batch needs it", err);
		coll_set_error(err);
	} else if (spool_pending(coll.spool) > 0)
		log_info("%zu spool files in %s wait for replay",
		    spool_pending(coll.spool), spool_dir(coll.spool));

	coll.backoff_ms = COLL_BACKOFF_MIN_MS;
	if (cfg->database[0] == '\0') {
		log_warnx("no database configured: usage events are only "
		    "spooled to %s", cfg->spool_dir);
		coll.pg = PG_NONE;
		coll.spooling = 1;
	} else
		coll.pg = PG_DOWN;
	log_info("started: %u lanes of %u slots, batch %zu rows / %" PRId64
	    " ms", coll.nlanes, coll.lane_slots, coll.batch_rows,
	    coll.batch_ms);
}

/* Sleep up to MS, waking early for a signal or the connecting socket. */
static void
coll_sleep(int ms)
{
	struct pollfd	 pfd;
	int		 n = 0;

	if (coll.pg == PG_CONNECTING && PQsocket(coll.conn) >= 0) {
		pfd.fd = PQsocket(coll.conn);
		pfd.events = coll.poll == PGRES_POLLING_READING ?
		    POLLIN : POLLOUT;
		pfd.revents = 0;
		n = 1;
	}
	if (poll(n ? &pfd : NULL, n, ms) == -1 && errno != EINTR)
		log_warn("poll");
}

/* Take what the lanes hold, round-robin, up to batch_rows in all. */
static void
coll_gather(int64_t now)
{
	struct ring_lane	*l;
	uint64_t		 head, n, avail, take;
	uint32_t		 k, i;

	for (k = 0; k < coll.nlanes && coll.count < coll.batch_rows; k++) {
		i = (coll.rr + k) % coll.nlanes;
		l = coll.lanes[i];
		n = ring_readable(l, &head);
		if (coll.start[i] != head) {
			/* Only we move head; resynchronise if someone did. */
			coll.count -= coll.end[i] - coll.start[i];
			coll.start[i] = coll.end[i] = head;
		}
		avail = head + n - coll.end[i];
		take = coll.batch_rows - coll.count;
		if (take > avail)
			take = avail;
		if (take == 0)
			continue;
		if (coll.count == 0)
			coll.first_ms = now;
		coll.end[i] += take;
		coll.count += take;
	}
	coll.rr = (coll.rr + 1) % coll.nlanes;
}

/* Events still in the lanes. */
static uint64_t
coll_backlog(void)
{
	uint64_t	 head, n = 0;
	uint32_t	 i;

	for (i = 0; i < coll.nlanes; i++)
		n += ring_readable(coll.lanes[i], &head);
	return n;
}

/* Is any lane more than half full? */
static int
coll_pressure(void)
{
	uint64_t	 head;
	uint32_t	 i;

	for (i = 0; i < coll.nlanes; i++)
		if (ring_readable(coll.lanes[i], &head) > coll.lane_slots / 2)
			return 1;
	return 0;
}

/*
 * Make the batch durable, then release it: into PostgreSQL if we can,
 * into the spool otherwise.  -1 if neither worked (the batch is kept and
 * retried after COLL_SPOOL_RETRY_MS).
 */
static int
coll_flush(int64_t now)
{
	uint64_t	 inserted = 0;
	size_t		 n = coll.count;
	enum coll_tx	 rc;

	if (coll.pg == PG_UP) {
		rc = coll_load_batch(&inserted);
		if (rc == TX_OK) {
			coll_st.rows_written += inserted;
			coll_st.rows_duplicate += n - inserted;
			coll_st.batches++;
			coll_release();
			return 0;
		}
		if (rc == TX_DATA)
			log_warnx("PostgreSQL refused a batch of %zu rows: %s; "
			    "spooling it", n, coll.err);
	}
	if (coll_spool_batch() == -1) {
		coll.hold_until = now + COLL_SPOOL_RETRY_MS;
		return -1;
	}
	coll_release();
	return 0;
}

static void
coll_release(void)
{
	uint32_t	 i;

	for (i = 0; i < coll.nlanes; i++) {
		if (coll.end[i] != coll.start[i])
			ring_release(coll.lanes[i], coll.end[i]);
		coll.start[i] = coll.end[i];
	}
	coll.count = 0;
	coll.hold_until = 0;
}

static enum coll_tx
coll_load_batch(uint64_t *inserted)
{
	uint64_t	 pos;
	uint32_t	 i;

	if (coll_tx_begin() == -1)
		return coll_pg_classify();
	for (i = 0; i < coll.nlanes; i++)
		for (pos = coll.start[i]; pos < coll.end[i]; pos++)
			if (coll_tx_put(ring_at(coll.lanes[i], pos)) == -1)
				return coll_pg_classify();
	if (coll_tx_commit(inserted) == -1)
		return coll_pg_classify();
	return TX_OK;
}

static int
coll_spool_ready(void)
{
	char	 err[512];

	if (coll.spool != NULL)
		return 0;
	if ((coll.spool = spool_open(coll.cfg->spool_dir, err,
	    sizeof(err))) == NULL) {
		coll_set_error(err);
		if (!coll.spool_failed)
			log_warnx("cannot spool: %s", err);
		coll.spool_failed = 1;
		return -1;
	}
	return 0;
}

static int
coll_spool_batch(void)
{
	char		 name[64];
	uint64_t	 bytes, pos;
	uint32_t	 i;

	if (coll_spool_ready() == -1)
		return -1;
	if (spool_begin(coll.spool) == -1)
		goto fail;
	for (i = 0; i < coll.nlanes; i++)
		for (pos = coll.start[i]; pos < coll.end[i]; pos++)
			if (spool_add(coll.spool,
			    ring_at(coll.lanes[i], pos)) == -1)
				goto fail;
	if (spool_commit(coll.spool, &bytes, name, sizeof(name)) == -1)
		goto fail;

	if (coll.spool_failed || (!coll.spooling && coll.pg != PG_UP))
		log_warnx("spooling usage events to %s", spool_dir(coll.spool));
	coll.spool_failed = 0;
	if (coll.pg != PG_UP) {
		coll.spooling = 1;
		coll.ep_rows += coll.count;
		coll.ep_files++;
	}
	coll_st.rows_spooled += coll.count;
	coll_st.spool_bytes += bytes;
	log_debug("spooled %zu rows to %s", coll.count, name);
	return 0;

 fail:
	{
		char	 err[512];

		snprintf(err, sizeof(err), "spool %s: %s",
		    spool_dir(coll.spool), strerror(errno));
		coll_set_error(err);
		if (!coll.spool_failed)
			log_warnx("cannot spool %zu rows: %s", coll.count,
			    err);
		coll.spool_failed = 1;
	}
	spool_abort(coll.spool);
	return -1;
}

static void
coll_spool_episode_end(void)
{
	if (!coll.spooling)
		return;
	if (coll.ep_rows > 0)
		log_info("spooled %" PRIu64 " rows in %" PRIu64 " files %s",
		    coll.ep_rows, coll.ep_files, coll.pg == PG_NONE ?
		    "(no database configured)" :
		    "while PostgreSQL was unreachable");
	coll.spooling = 0;
	coll.ep_rows = coll.ep_files = 0;
}

/* Load the oldest spool file in one transaction, then delete it. */
static void
coll_replay_one(int64_t now)
{
	struct spool_reader	*r;
	char			 path[PATH_MAX], err[512];
	const char		*base;
	uint64_t		 rows = 0, inserted = 0;
	ssize_t			 n, j;
	enum coll_tx		 rc;
	int			 found;

	if ((found = spool_oldest(coll.spool, path, sizeof(path))) <= 0) {
		if (found == -1) {
			log_warn("listing spool %s", spool_dir(coll.spool));
			coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
		}
		return;
	}
	base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
	if ((r = spool_reader_open(path, err, sizeof(err))) == NULL) {
		if (errno == EINVAL) {
			log_warnx("%s; setting it aside as %s.bad", err, base);
			if (spool_quarantine(coll.spool, path) == -1) {
				log_warn("renaming %s", path);
				coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
			}
		} else {
			log_warnx("%s", err);
			coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
		}
		return;
	}
	if (coll_tx_begin() == -1) {
		spool_reader_close(r);
		(void)coll_pg_classify();
		return;
	}
	while ((n = spool_read(r, coll.rbuf, COLL_REPLAY_CHUNK)) > 0) {
		for (j = 0; j < n; j++) {
			if (coll_tx_put(&coll.rbuf[j]) == -1) {
				spool_reader_close(r);
				(void)coll_pg_classify();
				return;
			}
		}
		rows += (uint64_t)n;
	}
	spool_reader_close(r);
	if (n == -1) {
		log_warn("reading %s", path);
		coll_tx_rollback();
		coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
		return;
	}
	if (coll_tx_commit(&inserted) == -1) {
		rc = coll_pg_classify();
		if (rc == TX_DATA) {
			log_warnx("PostgreSQL refused %s: %s; setting it aside "
			    "as %s.bad", base, coll.err, base);
			if (spool_quarantine(coll.spool, path) == -1) {
				log_warn("renaming %s", path);
				coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
			}
		}
		return;
	}
	coll_st.batches++;
	coll_st.rows_replayed += rows;
	coll_st.rows_written += inserted;
	coll_st.rows_duplicate += rows - inserted;
	log_info("replayed %s with %" PRIu64 " rows (%" PRIu64 " new)", base,
	    rows, inserted);
	if (spool_remove(coll.spool, path) == -1) {
		/* Replaying it again later is harmless. */
		log_warn("removing %s", path);
		coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
	}
}

/*
 * Every worker has exited: empty every lane, into PostgreSQL if it is up,
 * into the spool if not, and do not wait for a reconnect.  If neither
 * works, keep trying until the shutdown timeout.  Then, if PostgreSQL is
 * up, replay what the spool still holds, within the same timeout.
 */
static void
coll_drain(void)
{
	int64_t		 now, deadline;
	uint64_t	 drained = 0;
	int		 limit;

	now = (now_us() / 1000);
	limit = coll.cfg->shutdown_timeout_ms;
	if (limit < COLL_DRAIN_MIN_MS)
		limit = COLL_DRAIN_MIN_MS;
	deadline = now + limit;
	/* a connection under way gets its chance before anything is spooled */
	while (coll.pg == PG_CONNECTING && now - coll.connect_started <
	    COLL_CONNECT_MS && now < deadline) {
		coll_pg_step(now);
		if (coll.pg == PG_CONNECTING)
			coll_sleep(5);
		now = (now_us() / 1000);
	}
	if (coll.pg == PG_CONNECTING)
		coll_pg_down(now, 0);
	for (;;) {
		now = (now_us() / 1000);
		coll_gather(now);
		if (coll.count == 0)
			break;
		drained += coll.count;
		if (coll_flush(now) == 0)
			continue;
		drained -= coll.count;
		if (now >= deadline) {
			log_warnx("giving up: %" PRIu64 " usage events could "
			    "not be written to PostgreSQL nor spooled",
			    coll_backlog());
			break;
		}
		/* The spool failed too: PostgreSQL may be back by now. */
		coll_pg_step(now);
		coll_sleep(100);
	}
	/*
	 * With PostgreSQL up, leave nothing behind in the spool either, so
	 * that a clean stop means every row is in the table.
	 */
	while (coll.pg == PG_UP && coll.spool != NULL &&
	    spool_pending(coll.spool) > 0) {
		now = (now_us() / 1000);
		if (now >= deadline) {
			log_warnx("shutdown timeout: leaving the spool for "
			    "the next start");
			break;
		}
		if (now < coll.replay_hold)
			break;		/* a file we cannot read now */
		coll_replay_one(now);
	}
	coll_spool_episode_end();
	log_info("drained %" PRIu64 " events; %" PRIu64 " rows written this "
	    "run, %zu spool files waiting", drained, coll_st.rows_written,
	    coll.spool != NULL ? spool_pending(coll.spool) : (size_t)0);
}

/* Advance the connection state machine, never blocking for long. */
static void
coll_pg_step(int64_t now)
{
	struct pollfd	 pfd;
	int		 fd;

	switch (coll.pg) {
	case PG_NONE:
	case PG_UP:
		return;
	case PG_DOWN:
		if (now >= coll.next_connect)
			coll_pg_start(now);
		return;
	case PG_CONNECTING:
		break;
	}

	if (now - coll.connect_started > COLL_CONNECT_MS) {
		coll_set_error("connection attempt timed out");
		coll_pg_down(now, 0);
		return;
	}
	if ((fd = PQsocket(coll.conn)) >= 0) {
		pfd.fd = fd;
		pfd.events = coll.poll == PGRES_POLLING_READING ?
		    POLLIN : POLLOUT;
		pfd.revents = 0;
		if (poll(&pfd, 1, 0) <= 0)
			return;
	}
	coll.poll = PQconnectPoll(coll.conn);
	switch (coll.poll) {
	case PGRES_POLLING_OK:
		coll_pg_ready(now);
		break;
	case PGRES_POLLING_FAILED:
		coll_set_error(PQerrorMessage(coll.conn));
		coll_pg_down(now, 0);
		break;
	default:
		break;
	}
}

static void
coll_pg_start(int64_t now)
{
	/*
	 * Ours first: anything the operator's conninfo (expanded from
	 * dbname) says overrides them.
	 */
	static const char *const keys[] = {
		"fallback_application_name", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", NULL
	};
	const char	*vals[] = {
		"sluice collector", "1", "10", "5", "3", "15000",
		coll.cfg->database, NULL
	};

	coll.conn = PQconnectStartParams(keys, vals, 1);
	if (coll.conn == NULL) {
		coll_set_error("out of memory");
		coll_pg_down(now, 0);
		return;
	}
	if (PQstatus(coll.conn) == CONNECTION_BAD) {
		coll_set_error(PQerrorMessage(coll.conn));
		coll_pg_down(now, 0);
		return;
	}
	coll.pg = PG_CONNECTING;
	coll.poll = PGRES_POLLING_WRITING;
	coll.connect_started = now;
}

/* Connected: check the schema and make the staging table. */
static void
coll_pg_ready(int64_t now)
{
	char	 err[512];
	int	 version;

	coll.next_budget = 0;	/* load key spend first thing */
	PQsetNoticeProcessor(coll.conn, coll_notice, NULL);
	if (PQsetClientEncoding(coll.conn, "UTF8") != 0) {
		coll_set_error(PQerrorMessage(coll.conn));
		coll_pg_down(now, 0);
		return;
	}
	if ((version = schema_init(coll.conn, err, sizeof(err))) == -1) {
		coll_set_error(err);
		coll_pg_down(now, 0);
		return;
	}
	/*
	 * A released event exists nowhere else: commits must be durable
	 * whatever the server default is.  The stage has no constraints and
	 * empties itself at every commit.
	 */
	if (coll_exec("SET synchronous_commit TO on", PGRES_COMMAND_OK,
	    NULL) == -1 ||
	    coll_exec("CREATE TEMP TABLE IF NOT EXISTS sluice_stage "
	    "(LIKE usage_events) ON COMMIT DELETE ROWS", PGRES_COMMAND_OK,
	    NULL) == -1) {
		coll_pg_down(now, 0);
		return;
	}
	coll.pg = PG_UP;
	coll.backoff_ms = COLL_BACKOFF_MIN_MS;
	coll.down_logged = 0;
	coll_spool_episode_end();
	log_info("connected to PostgreSQL %s (schema version %d)%s",
	    PQdb(coll.conn), version,
	    coll.spool != NULL && spool_pending(coll.spool) > 0 ?
	    ", replaying the spool" : "");
}

/* Drop the connection and schedule the next attempt. */
static void
coll_pg_down(int64_t now, int lost)
{
	if (lost)
		log_warnx("lost PostgreSQL: %s", coll.err);
	else if (!coll.down_logged)
		log_warnx("PostgreSQL unreachable: %s; retrying in the "
		    "background", coll.err);
	else
		log_debug("PostgreSQL still unreachable: %s", coll.err);
	coll.down_logged = 1;
	if (coll.conn != NULL)
		PQfinish(coll.conn);
	coll.conn = NULL;
	coll.pg = PG_DOWN;
	coll.next_connect = now + coll.backoff_ms;
	coll.backoff_ms *= 2;
	if (coll.backoff_ms > COLL_BACKOFF_MAX_MS)
		coll.backoff_ms = COLL_BACKOFF_MAX_MS;
}

/* Server notices are not errors; keep them out of stderr. */
static void
coll_notice(void *arg, const char *msg)
{
	size_t	 len = strlen(msg);

	if (len > 0 && msg[len - 1] == '\n')
		len--;
	log_debug("PostgreSQL: %.*s", (int)len, msg);
}

/*
 * After a failed transaction: roll back and say whose fault it was.
 * Data errors (class 22, 23) keep the connection: the rows are bad, the
 * server is fine.  Anything else may be the server or the schema, so the
 * connection is dropped and rebuilt (which re-runs schema_init).
 */
static enum coll_tx
coll_pg_classify(void)
{
	int64_t	 now = (now_us() / 1000);

	if (PQstatus(coll.conn) == CONNECTION_OK &&
	    (strncmp(coll.sqlstate, "22", 2) == 0 ||
	    strncmp(coll.sqlstate, "23", 2) == 0)) {
		coll_tx_rollback();
		if (PQstatus(coll.conn) == CONNECTION_OK)
			return TX_DATA;
	}
	coll_pg_down(now, 1);
	return TX_DOWN;
}

static int
coll_tx_begin(void)
{
	static const char hdr[] = "PGCOPY\n\377\r\n\0"
	    "\0\0\0\0"		/* flags */
	    "\0\0\0\0";		/* header extension length */

	coll.sqlstate[0] = '\0';
	if (coll_exec("BEGIN", PGRES_COMMAND_OK, NULL) == -1)
		return -1;
	if (coll_exec("COPY sluice_stage (" COLL_COLUMNS ") FROM STDIN "
	    "(FORMAT binary)", PGRES_COPY_IN, NULL) == -1)
		return -1;
	memcpy(coll.buf, hdr, sizeof(hdr) - 1);
	coll.buflen = sizeof(hdr) - 1;
	return 0;
}

static int
coll_tx_put(const struct usage_event *ev)
{
	coll_encode(ev);
	if (coll.buflen < COLL_COPY_CHUNK)
		return 0;
	if (PQputCopyData(coll.conn, coll.buf, (int)coll.buflen) != 1) {
		coll_set_error(PQerrorMessage(coll.conn));
		return -1;
	}
	coll.buflen = 0;
	return 0;
}

/* End the COPY, move the stage into usage_events, commit. */
static int
coll_tx_commit(uint64_t *inserted)
{
	PGresult	*res;
	int		 ok;

	coll.buf[coll.buflen++] = '\377';	/* trailer: -1 fields */
	coll.buf[coll.buflen++] = '\377';
	if (PQputCopyData(coll.conn, coll.buf, (int)coll.buflen) != 1 ||
	    PQputCopyEnd(coll.conn, NULL) != 1) {
		coll_set_error(PQerrorMessage(coll.conn));
		return -1;
	}
	coll.buflen = 0;
	ok = 1;
	while ((res = PQgetResult(coll.conn)) != NULL) {
		if (ok && PQresultStatus(res) != PGRES_COMMAND_OK) {
			coll_res_error(res);
			ok = 0;
		}
		PQclear(res);
	}
	if (!ok)
		return -1;
	if (coll_exec("INSERT INTO usage_events (" COLL_COLUMNS ") "
	    "SELECT " COLL_COLUMNS " FROM sluice_stage "
	    "ON CONFLICT (request_id) DO NOTHING", PGRES_COMMAND_OK,
	    &res) == -1)
		return -1;
	*inserted = strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	if (coll_exec("COMMIT", PGRES_COMMAND_OK, &res) == -1)
		return -1;
	ok = strcmp(PQcmdStatus(res), "COMMIT") == 0;
	PQclear(res);
	if (!ok) {
		coll_set_error("transaction rolled back at COMMIT");
		return -1;
	}
	return 0;
}

static void
coll_tx_rollback(void)
{
	PGresult	*res;

	if (coll.conn == NULL || PQstatus(coll.conn) != CONNECTION_OK)
		return;
	/* Still in COPY IN if the failure came from our side. */
	if (PQputCopyEnd(coll.conn, "aborted by sluice") == 1)
		while ((res = PQgetResult(coll.conn)) != NULL)
			PQclear(res);
	if (PQtransactionStatus(coll.conn) != PQTRANS_IDLE) {
		res = PQexec(coll.conn, "ROLLBACK");
		PQclear(res);
	}
}

static int
coll_exec(const char *sql, ExecStatusType want, PGresult **resp)
{
	PGresult	*res;

	res = PQexec(coll.conn, sql);
	if (res == NULL || PQresultStatus(res) != want) {
		coll_res_error(res);
		PQclear(res);
		return -1;
	}
	if (resp != NULL)
		*resp = res;
	else
		PQclear(res);
	return 0;
}

static void
coll_res_error(PGresult *res)
{
	const char	*msg = NULL, *state;

	if (res != NULL) {
		msg = PQresultErrorMessage(res);
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		snprintf(coll.sqlstate, sizeof(coll.sqlstate), "%s",
		    state != NULL ? state : "");
	}
	if (msg == NULL || *msg == '\0')
		msg = PQerrorMessage(coll.conn);
	coll_set_error(msg);
}

/* Keep the last error, on one line, for the log and collector_stats(). */
static void
coll_set_error(const char *msg)
{
	size_t	 i, j;
	int	 sp = 0;

	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	for (i = j = 0; msg[i] != '\0' && j < sizeof(coll.err) - 1; i++) {
		if (msg[i] == '\n' || msg[i] == '\t' || msg[i] == '\r' ||
		    msg[i] == ' ') {
			sp = j > 0;
			continue;
		}
		if (sp && j < sizeof(coll.err) - 2)
			coll.err[j++] = ' ';
		sp = 0;
		coll.err[j++] = msg[i];
	}
	coll.err[j] = '\0';
	snprintf(coll_st.last_error, sizeof(coll_st.last_error), "%s",
	    coll.err);
	if (coll_cnt != NULL) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		cnt_text_set(&coll_cnt->last_error, coll.err);
		atomic_store_explicit(&coll_cnt->error_wall_us,
		    (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
		    memory_order_relaxed);
	}
}

/*
 * The counters of a previous collector are the base of ours, so that the
 * totals in /metrics keep growing across our restarts.
 */
static void
coll_publish_begin(struct shm_segment *shm)
{
	struct cnt_region *r;

	if ((r = shm_region(shm, "counters", NULL)) == NULL)
		return;
	coll_cnt = &r->collector;
	coll_base.rows_written = cnt_get(&coll_cnt->rows_written);
	coll_base.rows_duplicate = cnt_get(&coll_cnt->rows_duplicate);
	coll_base.rows_spooled = cnt_get(&coll_cnt->rows_spooled);
	coll_base.rows_replayed = cnt_get(&coll_cnt->rows_replayed);
	coll_base.batches = cnt_get(&coll_cnt->batches);
	coll_base.spool_bytes = cnt_get(&coll_cnt->spool_bytes);
	atomic_store_explicit(&coll_cnt->pid, (int32_t)getpid(),
	    memory_order_relaxed);
}

/* Every loop: a dozen relaxed stores, and the heartbeat /healthz reads. */
static void
coll_publish(int64_t now)
{
	struct cnt_collector *cc = coll_cnt;

	if (cc == NULL)
		return;
	cnt_put(&cc->rows_written, coll_base.rows_written +
	    coll_st.rows_written);
	cnt_put(&cc->rows_duplicate, coll_base.rows_duplicate +
	    coll_st.rows_duplicate);
	cnt_put(&cc->rows_spooled, coll_base.rows_spooled +
	    coll_st.rows_spooled);
	cnt_put(&cc->rows_replayed, coll_base.rows_replayed +
	    coll_st.rows_replayed);
	cnt_put(&cc->batches, coll_base.batches + coll_st.batches);
	cnt_put(&cc->spool_bytes, coll_base.spool_bytes + coll_st.spool_bytes);
	cnt_put(&cc->spool_files, coll.spool != NULL ?
	    spool_pending(coll.spool) : 0);
	atomic_store_explicit(&cc->connected, coll.pg == PG_UP,
	    memory_order_relaxed);
	atomic_store_explicit(&cc->spool_ok, coll.spool != NULL &&
	    !coll.spool_failed, memory_order_relaxed);
	atomic_store_explicit(&cc->has_database, coll.pg != PG_NONE,
	    memory_order_relaxed);
	atomic_store_explicit(&cc->heartbeat_ms, now, memory_order_relaxed);
}

/*
 * One row of binary COPY.  Every field is made acceptable to PostgreSQL
 * here, so that one odd event cannot make the server refuse a batch:
 * text is made valid UTF-8, ts_start is clamped, an address that does not
 * parse is NULL.  Negative counters (-1 = unknown) are NULL.
 */
static void
coll_encode(const struct usage_event *ev)
{
	static const char *const sources[] = { "none", "upstream",
	    "estimated" };
	char		*p = coll.buf + coll.buflen;
	char		 addr[EV_ADDR_MAX + 1], *a;
	unsigned char	 in[16];
	const char	*src;
	int64_t		 ts;
	uint32_t	 u32;
	uint16_t	 u16;
	size_t		 alen;

	u16 = htons(COLL_NFIELDS);
	memcpy(p, &u16, 2), p += 2;

	u32 = htonl(16);				/* request_id */
	memcpy(p, &u32, 4), p += 4;
	memcpy(p, ev->request_id, 16), p += 16;

	ts = ev->ts_start_us;				/* ts_start */
	if (ts < 0)
		ts = 0;
	if (ts > TS_MAX_US)
		ts = TS_MAX_US;
	p = coll_put_i64(p, ts - PG_EPOCH_US, 0);

	p = coll_put_text(p, ev->key_name, sizeof(ev->key_name), 1);
	p = coll_put_text(p, ev->model, sizeof(ev->model), 0);
	p = coll_put_text(p, ev->upstream, sizeof(ev->upstream), 1);
	p = coll_put_text(p, ev->endpoint, sizeof(ev->endpoint), 0);

	u32 = htonl(1);					/* stream */
	memcpy(p, &u32, 4), p += 4;
	*p++ = ev->stream != 0;

	u32 = htonl(2);					/* status */
	memcpy(p, &u32, 4), p += 4;
	u16 = htons(ev->status);
	memcpy(p, &u16, 2), p += 2;

	p = coll_put_text(p, ev->error_class, sizeof(ev->error_class), 1);
	p = coll_put_i64(p, ev->prompt_tokens, 1);
	p = coll_put_i64(p, ev->completion_tokens, 1);
	p = coll_put_i64(p, ev->cached_tokens, 1);
	p = coll_put_i64(p, ev->cost_micro_usd, 1);

	src = ev->usage_source < 3 ? sources[ev->usage_source] : "none";
	u32 = htonl((uint32_t)strlen(src));		/* usage_source */
	memcpy(p, &u32, 4), p += 4;
	memcpy(p, src, strlen(src)), p += strlen(src);

	u32 = htonl(2);					/* attempts */
	memcpy(p, &u32, 4), p += 4;
	u16 = htons(ev->attempts);
	memcpy(p, &u16, 2), p += 2;

	p = coll_put_i64(p, ev->bytes_in, 1);
	p = coll_put_i64(p, ev->bytes_out, 1);
	p = coll_put_i64(p, ev->latency_us, 1);
	p = coll_put_i64(p, ev->ttfb_us, 1);
	p = coll_put_i64(p, ev->overhead_us, 1);

	/* client_addr: inet's binary form, or NULL. */
	alen = strnlen(ev->client_addr, sizeof(ev->client_addr));
	memcpy(addr, ev->client_addr, alen);
	addr[alen] = '\0';
	a = addr;
	if (*a == '[' && alen > 2 && a[alen - 1] == ']') {
		a[alen - 1] = '\0';
		a++;
	}
	if (inet_pton(AF_INET, a, in) == 1) {
		u32 = htonl(8);
		memcpy(p, &u32, 4), p += 4;
		*p++ = PG_AF_INET, *p++ = 32, *p++ = 0, *p++ = 4;
		memcpy(p, in, 4), p += 4;
	} else if (inet_pton(AF_INET6, a, in) == 1) {
		u32 = htonl(20);
		memcpy(p, &u32, 4), p += 4;
		*p++ = PG_AF_INET6, *p++ = (char)128, *p++ = 0, *p++ = 16;
		memcpy(p, in, 16), p += 16;
	} else {
		u32 = htonl(UINT32_MAX);
		memcpy(p, &u32, 4), p += 4;
	}

	u32 = htonl(4);					/* worker_pid */
	memcpy(p, &u32, 4), p += 4;
	u32 = htonl((uint32_t)ev->worker_pid);
	memcpy(p, &u32, 4), p += 4;

	coll.buflen = (size_t)(p - coll.buf);
}

/*
 * A text field from a fixed-width, maybe unterminated string.  Bytes that
 * are not valid UTF-8 become '?'.  With EMPTY_NULL, "" is NULL.
 */
static char *
coll_put_text(char *p, const char *s, size_t max, int empty_null)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 len, i, k, n;
	uint32_t		 u32, cp;
	char			*lenp = p;

	len = strnlen(s, max);
	if (len == 0 && empty_null) {
		u32 = htonl(UINT32_MAX);
		memcpy(p, &u32, 4);
		return p + 4;
	}
	p += 4;
	for (i = 0; i < len; ) {
		if (u[i] < 0x80) {
			*p++ = (char)u[i++];
			continue;
		}
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			n = 1, cp = u[i] & 0x1f;
		else if (u[i] >= 0xe0 && u[i] <= 0xef)
			n = 2, cp = u[i] & 0x0f;
		else if (u[i] >= 0xf0 && u[i] <= 0xf4)
			n = 3, cp = u[i] & 0x07;
		else
			goto bad;
		if (i + n >= len)
			goto bad;
		for (k = 1; k <= n; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (u[i + k] & 0x3f);
		}
		/* overlong, surrogates, beyond U+10FFFF */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			goto bad;
		memcpy(p, u + i, n + 1);
		p += n + 1;
		i += n + 1;
		continue;
 bad:
		*p++ = '?';
		i++;
	}
	u32 = htonl((uint32_t)(p - lenp - 4));
	memcpy(lenp, &u32, 4);
	return p;
}

/* An int8 field; with NEG_NULL a negative value is NULL. */
static char *
coll_put_i64(char *p, int64_t v, int neg_null)
{
	uint32_t	 u32;
	uint64_t	 u = (uint64_t)v;
	int		 i;

	if (neg_null && v < 0) {
		u32 = htonl(UINT32_MAX);
		memcpy(p, &u32, 4);
		return p + 4;
	}
	u32 = htonl(8);
	memcpy(p, &u32, 4), p += 4;
	for (i = 7; i >= 0; i--, u >>= 8)
		p[i] = (char)(u & 0xff);
	return p + 8;
}

/*
 * Every COLL_BUDGET_MS (and first thing once connected): make every event
 * pushed so far durable, then load each key's spend from PostgreSQL into
 * shared memory (budget.c says why this order makes it exact).
 */
static void
coll_budget(int64_t now)
{
	const struct config	*cfg = coll.cfg;
	int64_t			*live = NULL;
	uint64_t		*target = NULL, head;
	int			 n = budget_nkeys(cfg), ok = 0, tries, done = 0;
	uint32_t		 i;

	coll.next_budget = now + COLL_BUDGET_MS;
	if (coll.kst == NULL || n == 0)
		return;
	live = calloc((size_t)n, sizeof(*live));
	target = calloc(coll.nlanes, sizeof(*target));
	if (live == NULL || target == NULL)
		goto out;
	budget_snapshot(cfg, coll.kst, live);
	for (i = 0; i < coll.nlanes; i++) {
		uint64_t n2 = ring_readable(coll.lanes[i], &head);

		target[i] = head + n2;
	}
	for (tries = 0; tries < 10000; tries++) {
		done = 1;
		for (i = 0; i < coll.nlanes; i++) {
			(void)ring_readable(coll.lanes[i], &head);
			if (head < target[i])
				done = 0;
		}
		if (done)
			break;
		coll_gather(now);
		if (coll.count == 0 || coll_flush(now) != 0 ||
		    coll.pg != PG_UP)
			break;
	}
	if (done && coll.pg == PG_UP &&
	    (coll.spool == NULL || spool_pending(coll.spool) == 0))
		ok = budget_load(coll.conn, cfg, coll.kst, live) == 0;
out:
	if (!ok)
		coll.next_budget = now + 1000;
	free(live);
	free(target);
}
