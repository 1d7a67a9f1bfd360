/*
 * collector.c - the collector process: ring lanes in, PostgreSQL rows out.
 *
 * The one rule is that a lane's head moves only past events that are
 * durable: committed in PostgreSQL, or in an fsync'ed spool file.  So a
 * collector killed at any point loses nothing (the next one re-reads from
 * head), and the price is that it may offer some events twice.  The
 * segment's epoch, the lane and the position name each event, and the
 * load commits the positions with the rows, so the next load skips what
 * is in already (sql/load.c, shared with `sluicectl spool replay`); a
 * spooled event carries its name in the file.
 *
 * Besides, the collector keeps usage_events partitioned ahead: this
 * month's and next month's partitions, and usage_retention, when it
 * connects and every hour (sql/parts.c).
 *
 * Workers never wait for us, so we must never fall behind for long: when
 * PostgreSQL is unreachable the batches go to the spool instead, lanes keep
 * moving, and the connection is retried in the background (pgsession.c).
 * Once it is back, the spool is replayed oldest file first before new
 * events are loaded, unless a lane is filling up meanwhile.
 *
 * A batch is read in place from the ring (slots below tail are stable
 * until we release them), up to batch_rows events taken round-robin over
 * the lanes, and flushed when full or batch_ms after its first event.
 * While a batch fills, the loop looks at the lanes every millisecond.
 *
 * With nothing to do it sleeps until there is: the lanes' bell (ring.h)
 * wakes it on the first push, and otherwise only its timers do (the
 * heartbeat /healthz reads, a reconnect, reloading key spend, a spool
 * file to retry).  Signals are blocked except while it sleeps in
 * ppoll(), so one that comes just before the sleep ends it at once.
 */
#include <sys/types.h>

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
#include "shm/counters.h"
#include "shm/keystate.h"
#include "shm/ring.h"
#include "shm/shm.h"
#include "sql/budget.h"
#include "sql/collector.h"
#include "sql/lease.h"
#include "sql/load.h"
#include "sql/parts.h"
#include "sql/pgsession.h"
#include "sql/spool.h"

#define COLL_HEARTBEAT_MS	1000	/* idle, wake up this often anyway:
					   /healthz wants a heartbeat within
					   CNT_HEARTBEAT_MAX_MS */
#define COLL_POLL_MS		20	/* idle without a bell: look this often
					   (a lane holds seconds of traffic) */
#define COLL_SPOOL_RETRY_MS	1000	/* after the spool failed too */
#define COLL_DRAIN_MIN_MS	10000	/* keep trying to drain at least */
#define COLL_BUDGET_MS		30000	/* reload key spend from PG */
#define COLL_PARTS_MS		3600000	/* partitions ahead, retention */
#define COLL_PARTS_RETRY_MS	60000	/* after that failed */
#define COLL_FEED_MS		2	/* feed the open COPY this often */
#define COLL_BUSY_MIN_MS	1000	/* usage_events locked: spool, then */
#define COLL_BUSY_MAX_MS	30000	/* try again after 1 s, 2 s, ... */

enum coll_tx {
	TX_OK,
	TX_DATA,		/* PG refused the rows themselves */
	TX_DOWN,		/* connection lost or unusable; now PGS_DOWN */
	TX_BUSY,		/* a lock not granted in time; still up */
};

/* What this process did, on top of the counters of the ones before it. */
struct coll_totals {
	uint64_t	 rows_written;		/* new rows committed to PG */
	uint64_t	 rows_duplicate;	/* rows PG already had */
	uint64_t	 rows_spooled;		/* rows written to spool files */
	uint64_t	 rows_replayed;		/* spooled rows loaded into PG */
	uint64_t	 batches;		/* transactions committed */
	uint64_t	 spool_bytes;		/* bytes written to spool files */
};

static struct {
	const struct config	*cfg;
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

	/* the batch's streamed load: [start, sent) is in its COPY */
	uint64_t		*sent;
	int			 streaming;	/* a load_stream is open */
	int			 nostream;	/* it failed: load_run this batch */
	int64_t			 fed_ms;	/* when it was last fed */

	/* reasons to spool although PostgreSQL is up */
	int64_t			 busy_until;	/* usage_events was locked */
	int64_t			 busy_ms;	/* the next back-off; 0: not */
	int			 behind;	/* a lane was over half full */
	int			 bell_fd;	/* the lanes' eventfd, or -1 */

	struct pgsession	 db;

	/* spool */
	struct spool		*spool;
	int			 spooling;	/* in a spool episode */
	uint64_t		 ep_rows;
	uint64_t		 ep_files;
	int			 spool_failed;	/* said once */
	int64_t			 hold_until;	/* next flush attempt */
	int64_t			 replay_hold;

	/* COPY into PostgreSQL */
	struct load		 load;

	/* key spend, loaded from PostgreSQL into shared memory */
	struct keystate_table	*kst;
	int64_t			 next_budget;

	/* where the events are: the segment's epoch names its positions */
	const uint8_t		*epoch;
	struct parts_retention	 retention;
	int64_t			 next_parts;
} coll;

/* Part of the batch as a load source: lane by lane, each [from, end). */
struct coll_src {
	struct load_src		 src;
	const uint64_t		*from;		/* coll.start or coll.sent */
	uint32_t		 lane;
	uint64_t		 pos;
};

static struct coll_totals	 coll_st;

static volatile sig_atomic_t	 coll_quit;
static volatile sig_atomic_t	 coll_reopen;
static sigset_t			 coll_waitmask;	/* ours unblocked */

static void	 coll_signals(void);
static void	 coll_onsig(int);
static void	 coll_setup(const struct config *, struct shm_segment *);
static void	 coll_sleep(int);
static void	 coll_wait(int64_t, int);
static void	 coll_idle(int64_t);
static void	 coll_gather(int64_t);
static int	 coll_pressure(void);
static uint64_t	 coll_backlog(void);
static int	 coll_flush(int64_t);
static int	 coll_to_db(int64_t);
static void	 coll_busy(int64_t);
static void	 coll_feed(int64_t);
static int	 coll_stream_put(void);
static void	 coll_stream_abort(int64_t);
static void	 coll_src_init(struct coll_src *, const uint64_t *);
static void	 coll_release(void);
static enum coll_tx coll_load_batch(uint64_t *);
static int	 coll_spool_batch(void);
static int	 coll_spool_ready(void);
static void	 coll_spool_episode_end(void);
static void	 coll_replay_one(int64_t);
static void	 coll_drain(void);
static void	 coll_budget(int64_t);
static void	 coll_parts(int64_t);
static int	 coll_src_rewind(struct load_src *);
static int	 coll_src_next(struct load_src *, const struct usage_event **,
		    const uint8_t **, uint32_t *, uint64_t *);

static int	 coll_db_ready(struct pgsession *, void *);

static void	 coll_error(const char *, void *);
static void	 coll_publish_begin(struct shm_segment *);
static void	 coll_publish(int64_t);

/* Our block of the counters region (/metrics), and its totals at start. */
static struct cnt_collector	*coll_cnt;
static struct coll_totals	 coll_base;

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
		pgs_step(&coll.db, now);
		if (coll.db.state == PGS_UP && !coll.streaming &&
		    now >= coll.busy_until &&
		    now >= coll.next_parts)
			coll_parts(now);
		if (coll.db.state == PGS_UP && !coll.streaming &&
		    now >= coll.busy_until && now >= coll.next_budget &&
		    (coll.spool == NULL || spool_pending(coll.spool) == 0))
			coll_budget(now);
		/* no statement while a streamed load's COPY is open */
		if (!coll.streaming)
			lease_step(&coll.db, now);

		/* The spool first, unless a lane fills up meanwhile. */
		if (coll.db.state == PGS_UP && !coll.streaming &&
		    now >= coll.busy_until && coll.spool != NULL &&
		    spool_pending(coll.spool) > 0 &&
		    now >= coll.replay_hold && !coll_pressure()) {
			coll_replay_one(now);
			if (!coll_pressure())
				continue;
		}

		coll_gather(now);
		ready = coll.count > 0 && (coll.count >= coll.batch_rows ||
		    now - coll.first_ms >= coll.batch_ms);
		/* While a connection attempt runs, wait for its outcome. */
		if (ready && now >= coll.hold_until &&
		    (coll.db.state != PGS_CONNECTING || coll_pressure()) &&
		    coll_flush(now) == 0)
			continue;
		if (!ready && coll.count > 0)
			coll_feed(now);
		if (coll.count > 0)
			coll_sleep(1);
		else
			coll_idle(now);
	}
	coll_drain();
	coll_publish((now_us() / 1000));
	pgs_close(&coll.db);
	spool_close(coll.spool);
	_exit(0);
}

/*
 * Handlers only set flags.  Our signals stay blocked but while we sleep
 * in ppoll(), so that one arriving after the loop looked at the flags and
 * before it slept still ends the sleep at once.  SIGINT and SIGHUP reach
 * us from a terminal together with the master; the master decides what
 * they mean and tells us with SIGTERM, so we ignore them.
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
	if (sigprocmask(SIG_BLOCK, &set, &coll_waitmask) == -1)
		fatal("sigprocmask");
	sigdelset(&coll_waitmask, SIGTERM);
	sigdelset(&coll_waitmask, SIGQUIT);
	sigdelset(&coll_waitmask, SIGUSR1);
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
	coll.kst = shm_region(shm, "keys", NULL);
	budget_set_users(shm_region(shm, "users", NULL));
	lease_init(cfg, coll.kst, coll_cnt);
	coll.ppid = getppid();
#ifdef __linux__
	/* If the master dies without telling us, drain and go. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		log_warn("prctl(PR_SET_PDEATHSIG)");
#endif
	coll.epoch = shm_epoch(shm);
	coll.retention.months = cfg->usage_retention_months;
	coll.retention.days = cfg->usage_retention_days;
	coll.nlanes = shm_nlanes(shm);
	coll.lane_slots = shm_lane_slots(shm);
	coll.batch_rows = cfg->batch_rows > 0 ? (size_t)cfg->batch_rows : 1000;
	coll.batch_ms = cfg->batch_ms > 0 ? cfg->batch_ms : 200;
	coll.lanes = calloc(coll.nlanes, sizeof(*coll.lanes));
	coll.start = calloc(coll.nlanes, sizeof(*coll.start));
	coll.end = calloc(coll.nlanes, sizeof(*coll.end));
	coll.sent = calloc(coll.nlanes, sizeof(*coll.sent));
	if (coll.lanes == NULL || coll.start == NULL || coll.end == NULL ||
	    coll.sent == NULL ||
	    load_init(&coll.load, &coll.db) == -1)
		fatal("collector: allocating buffers");
	for (i = 0; i < coll.nlanes; i++) {
		coll.lanes[i] = shm_lane(shm, i);
		(void)ring_readable(coll.lanes[i], &head);
		coll.start[i] = coll.end[i] = coll.sent[i] = head;
	}
	coll.bell_fd = ring_bell_fd(coll.lanes[0]);

	if ((coll.spool = spool_open(cfg->spool_dir, err, sizeof(err))) ==
	    NULL) {
		log_warnx("%s; will retry when a batch needs it", err);
		coll_error(err, NULL);
	} else if (spool_pending(coll.spool) > 0)
		log_info("%zu spool files in %s wait for replay",
		    spool_pending(coll.spool), spool_dir(coll.spool));

	pgs_init(&coll.db, cfg->database, "sluice collector");
	coll.db.ready = coll_db_ready;
	coll.db.error = coll_error;
	if (coll.db.state == PGS_NONE) {
		log_warnx("no database configured: usage events are only "
		    "spooled to %s", cfg->spool_dir);
		coll.spooling = 1;
	}
	log_info("started: %u lanes of %u slots, batch %zu rows / %" PRId64
	    " ms", coll.nlanes, coll.lane_slots, coll.batch_rows,
	    coll.batch_ms);
}

/* Sleep up to MS, waking early for a signal or the connecting socket. */
static void
coll_sleep(int ms)
{
	coll_wait(ms, 0);
}

/*
 * Sleep up to MS, waking early for a signal, the connecting socket, and
 * with BELL for the lanes' bell.
 */
static void
coll_wait(int64_t ms, int bell)
{
	struct pollfd	 pfd[2];
	struct timespec	 ts;
	int		 n = 0;

	if (bell && coll.bell_fd != -1) {
		pfd[n].fd = coll.bell_fd;
		pfd[n].events = POLLIN;
		pfd[n++].revents = 0;
	}
	n += pgs_pollfd(&coll.db, &pfd[n]);
	if (ms < 0)
		ms = 0;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	if (ppoll(pfd, (nfds_t)n, &ts, &coll_waitmask) == -1 &&
	    errno != EINTR)
		log_warn("ppoll");
}

/*
 * Nothing to do: sleep until a push rings the bell or a timer is due.
 * The bell is drained before it is armed, so that what rings it after
 * the last look is what wakes us.
 */
static void
coll_idle(int64_t now)
{
	int64_t		 due = now + COLL_HEARTBEAT_MS, t;

	/* the timers of the loop above, under the same conditions */
	if ((t = pgs_due(&coll.db)) < due)
		due = t;
	if (coll.db.state == PGS_UP && (coll.spool == NULL ||
	    spool_pending(coll.spool) == 0) && coll.next_budget < due)
		due = coll.next_budget;
	if (coll.db.state == PGS_UP && coll.spool != NULL &&
	    spool_pending(coll.spool) > 0) {
		t = coll.replay_hold > coll.busy_until ? coll.replay_hold :
		    coll.busy_until;
		if (t < due)
			due = t;
	}
	if ((t = lease_due()) < due)
		due = t;
	if (coll.bell_fd == -1 && now + COLL_POLL_MS < due)
		due = now + COLL_POLL_MS;
	ring_bell_drain(coll.bell_fd);
	if (ring_bell_arm(coll.lanes, coll.nlanes) == 0 && !coll_quit &&
	    !coll_reopen)
		coll_wait(due - now, 1);
	ring_bell_disarm(coll.lanes, coll.nlanes);
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
			if (coll.streaming)
				coll_stream_abort(now);
			coll.count -= coll.end[i] - coll.start[i];
			coll.start[i] = coll.end[i] = coll.sent[i] = head;
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

	int		 r;

	if (coll.streaming) {
		if (coll_to_db(now) && (r = coll_stream_put()) == 0 &&
		    (r = load_stream_end(&coll.load)) == 0) {
			coll_st.rows_written += n;
			coll_st.batches++;
			coll.streaming = 0;
			coll.busy_ms = 0;
			coll_release();
			return 0;
		}
		coll_stream_abort(now);
	}
	if (coll_to_db(now)) {
		rc = coll_load_batch(&inserted);
		if (rc == TX_OK) {
			coll_st.rows_written += inserted;
			coll_st.rows_duplicate += n - inserted;
			coll_st.batches++;
			if (coll.busy_ms != 0)
				log_info("usage_events is free again");
			coll.busy_ms = 0;
			coll_release();
			return 0;
		}
		if (rc == TX_BUSY)
			coll_busy(now);
		if (rc == TX_DATA)
			log_warnx("PostgreSQL refused a batch of %zu rows: %s; "
			    "spooling it", n, coll.db.err);
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
		coll.start[i] = coll.sent[i] = coll.end[i];
	}
	coll.count = 0;
	coll.hold_until = 0;
	coll.nostream = 0;
}

/*
 * A batch filling up: open its streamed load, or feed it what came since
 * it was last fed (load.h says why).  Once a stream failed, the batch
 * waits for coll_flush and load_run.
 */
static void
coll_feed(int64_t now)
{
	if (coll.nostream || now < coll.hold_until ||
	    now - coll.fed_ms < COLL_FEED_MS || !coll_to_db(now))
		return;
	coll.fed_ms = now;
	if (!coll.streaming) {
		if (load_stream_begin(&coll.load) == -1) {
			coll_stream_abort(now);
			return;
		}
		coll.streaming = 1;
	}
	if (coll_stream_put() != 0)
		coll_stream_abort(now);
}

/*
 * Whether the batch goes to PostgreSQL now.  Not while usage_events is
 * locked by another session (coll_busy), and not while a lane is over
 * half full: a row costs PostgreSQL 10 to 20 us of CPU (make bench) and
 * the spool a copy and a share of a write, so a collector that falls
 * behind (PostgreSQL slow, the
 * host's CPU taken by the workers) catches up by spooling, and replays
 * the spool once it has.  Workers never wait for us: a lane that fills
 * up drops events, and that is what this is for.
 */
static int
coll_to_db(int64_t now)
{
	if (coll.db.state != PGS_UP || now < coll.busy_until)
		return 0;
	if (coll_pressure()) {
		if (!coll.behind)
			log_warnx("falling behind (a ring lane is over half "
			    "full): spooling until it is not");
		coll.behind = 1;
		return 0;
	}
	if (coll.behind)
		log_info("caught up: loading into PostgreSQL again");
	coll.behind = 0;
	return 1;
}

/*
 * A load waited lock_timeout for a lock on usage_events (a LOCK TABLE,
 * an ALTER TABLE in another session): spool for a while, 1 s, then 2 s,
 * up to 30 s, rather than stall while the lanes fill.
 */
static void
coll_busy(int64_t now)
{
	if (coll.busy_ms == 0) {
		log_warnx("usage_events is locked (%s): spooling, and trying "
		    "again every few seconds", coll.db.err);
		coll.busy_ms = COLL_BUSY_MIN_MS;
	}
	coll.busy_until = now + coll.busy_ms;
	coll.busy_ms *= 2;
	if (coll.busy_ms > COLL_BUSY_MAX_MS)
		coll.busy_ms = COLL_BUSY_MAX_MS;
}

/* The events of the batch not yet in its COPY, into it. */
static int
coll_stream_put(void)
{
	struct coll_src	 cs;
	uint64_t	 rows;
	uint32_t	 i;

	coll_src_init(&cs, coll.sent);
	if (load_stream_put(&coll.load, &cs.src, &rows) == -1)
		return -1;
	for (i = 0; i < coll.nlanes; i++)
		coll.sent[i] = coll.end[i];
	return 0;
}

/* Roll the stream back; its events stay in the batch for load_run. */
static void
coll_stream_abort(int64_t now)
{
	uint32_t	 i;

	if (strcmp(coll.db.sqlstate, "55P03") == 0)
		coll_busy(now);
	load_stream_abort(&coll.load, now);
	coll.streaming = 0;
	coll.nostream = 1;
	for (i = 0; i < coll.nlanes; i++)
		coll.sent[i] = coll.start[i];
}

static enum coll_tx
coll_load_batch(uint64_t *inserted)
{
	struct coll_src	 cs;
	uint64_t	 rows;

	coll_src_init(&cs, coll.start);
	switch (load_run(&coll.load, &cs.src, &rows, inserted)) {
	case LOAD_TX_OK:
		return TX_OK;
	case LOAD_TX_DATA:
		return TX_DATA;
	case LOAD_TX_DOWN:
		return TX_DOWN;
	case LOAD_TX_BUSY:
		return TX_BUSY;
	case LOAD_TX_SRC:
		break;
	}
	/* the ring never fails a read; only memory for the plan can */
	log_warn("loading a batch");
	return TX_DATA;
}

static void
coll_src_init(struct coll_src *cs, const uint64_t *from)
{
	memset(cs, 0, sizeof(*cs));
	cs->src.rewind = coll_src_rewind;
	cs->src.next = coll_src_next;
	cs->from = from;
}

static int
coll_src_rewind(struct load_src *s)
{
	struct coll_src	*cs = (struct coll_src *)s;

	cs->lane = 0;
	cs->pos = cs->from[0];
	return 0;
}

static int
coll_src_next(struct load_src *s, const struct usage_event **ev,
    const uint8_t **epoch, uint32_t *lane, uint64_t *pos)
{
	struct coll_src	*cs = (struct coll_src *)s;

	while (cs->pos >= coll.end[cs->lane]) {
		if (++cs->lane == coll.nlanes)
			return 0;
		cs->pos = cs->from[cs->lane];
	}
	*ev = ring_at(coll.lanes[cs->lane], cs->pos);
	*epoch = coll.epoch;
	*lane = cs->lane;
	*pos = cs->pos++;
	return 1;
}

static int
coll_spool_ready(void)
{
	char	 err[512];

	if (coll.spool != NULL)
		return 0;
	if ((coll.spool = spool_open(coll.cfg->spool_dir, err,
	    sizeof(err))) == NULL) {
		coll_error(err, NULL);
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
	struct usage_event ev;
	char		 name[64];
	uint64_t	 bytes, pos;
	uint32_t	 i;

	if (coll_spool_ready() == -1)
		return -1;
	if (spool_begin(coll.spool) == -1)
		goto fail;
	/* each event with its name, for the load that replays it */
	for (i = 0; i < coll.nlanes; i++)
		for (pos = coll.start[i]; pos < coll.end[i]; pos++) {
			memcpy(&ev, ring_at(coll.lanes[i], pos), sizeof(ev));
			memcpy(ev.origin_epoch, coll.epoch,
			    sizeof(ev.origin_epoch));
			ev.origin_lane = i;
			ev.origin_pos = pos;
			if (spool_add(coll.spool, &ev) == -1)
				goto fail;
		}
	if (spool_commit(coll.spool, &bytes, name, sizeof(name)) == -1)
		goto fail;

	if (coll.spool_failed || (!coll.spooling && coll.db.state != PGS_UP))
		log_warnx("spooling usage events to %s", spool_dir(coll.spool));
	coll.spool_failed = 0;
	if (coll.db.state != PGS_UP) {
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
		coll_error(err, NULL);
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
		    coll.ep_rows, coll.ep_files, coll.db.state == PGS_NONE ?
		    "(no database configured)" :
		    "while PostgreSQL was unreachable");
	coll.spooling = 0;
	coll.ep_rows = coll.ep_files = 0;
}

/* Load the oldest spool file in one transaction, then delete it. */
static void
coll_replay_one(int64_t now)
{
	char			 path[PATH_MAX];
	const char		*base;
	uint64_t		 rows = 0, inserted = 0;
	enum load_rc		 rc;
	int			 found;

	if ((found = spool_oldest(coll.spool, path, sizeof(path))) <= 0) {
		if (found == -1) {
			log_warn("listing spool %s", spool_dir(coll.spool));
			coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
		}
		return;
	}
	base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
	rc = load_file(&coll.load, coll.spool, path, &rows, &inserted);
	if (rc == LOAD_RETRY || rc == LOAD_KEPT)
		coll.replay_hold = now + COLL_SPOOL_RETRY_MS;
	if (rc != LOAD_OK && rc != LOAD_KEPT)
		return;
	coll_st.batches++;
	coll_st.rows_replayed += rows;
	coll_st.rows_written += inserted;
	coll_st.rows_duplicate += rows - inserted;
	log_info("replayed %s with %" PRIu64 " rows (%" PRIu64 " new)", base,
	    rows, inserted);
}

/*
 * Every worker has exited: empty every lane, into PostgreSQL if it is up,
 * into the spool if not.  A host may be stopping for good, and whatever
 * is left in its spool stays there until sluiced starts again on it; so
 * PostgreSQL gets one more attempt now, whatever the reconnect backoff
 * says, before anything is spooled.  If neither works, keep trying until
 * the drain deadline.  Then, if PostgreSQL is up, replay what the spool
 * still holds, within the same deadline.
 *
 * The deadline is shutdown_timeout, at least COLL_DRAIN_MIN_MS, counted
 * from the SIGTERM the master sends once every worker has gone: the
 * master waits for the collector without a timer of its own, so this is
 * the one bound on how long a stop takes after the workers' part.
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
	if (coll.db.state == PGS_DOWN) {
		log_info("stopping: trying PostgreSQL once more");
		pgs_try_now(&coll.db);
		pgs_step(&coll.db, now);
	}
	/* a connection under way gets its chance before anything is spooled */
	while (coll.db.state == PGS_CONNECTING && now < deadline) {
		pgs_step(&coll.db, now);
		if (coll.db.state == PGS_CONNECTING)
			coll_sleep(5);
		now = (now_us() / 1000);
	}
	if (coll.db.state == PGS_CONNECTING)
		pgs_down(&coll.db, now, 0);
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
		pgs_step(&coll.db, now);
		coll_sleep(100);
	}
	/*
	 * With PostgreSQL up, leave nothing behind in the spool either, so
	 * that a clean stop means every row is in the table.
	 */
	if (coll.db.state == PGS_UP)
		(void)coll_spool_ready();
	while (coll.db.state == PGS_UP && coll.spool != NULL &&
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

/*
 * A fresh connection: made fit for loading (load.c), then the spool
 * episode, if any, is over.
 */
static int
coll_db_ready(struct pgsession *s, void *arg)
{
	int	 version;

	coll.next_budget = 0;	/* load key spend first thing */
	coll.next_parts = 0;	/* and see to the partitions */
	load_covered(&coll.load, 0, 0);
	if ((version = load_ready(s)) == -1)
		return -1;
	coll_spool_episode_end();
	log_info("connected to PostgreSQL %s (schema version %d)%s",
	    PQdb(s->conn), version,
	    coll.spool != NULL && spool_pending(coll.spool) > 0 ?
	    ", replaying the spool" : "");
	return 0;
}

/*
 * The last error, PostgreSQL's (the session's error hook) or the spool's,
 * for /metrics and `sluicectl status`.
 */
static void
coll_error(const char *msg, void *arg)
{
	struct timespec ts;

	if (coll_cnt == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	cnt_text_set(&coll_cnt->last_error, msg);
	atomic_store_explicit(&coll_cnt->error_wall_us,
	    (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
	    memory_order_relaxed);
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
	atomic_store_explicit(&cc->connected, coll.db.state == PGS_UP,
	    memory_order_relaxed);
	atomic_store_explicit(&cc->spool_ok, coll.spool != NULL &&
	    !coll.spool_failed, memory_order_relaxed);
	atomic_store_explicit(&cc->has_database, coll.db.state != PGS_NONE,
	    memory_order_relaxed);
	atomic_store_explicit(&cc->heartbeat_ms, now, memory_order_relaxed);
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
		    coll.db.state != PGS_UP)
			break;
	}
	if (done && coll.db.state == PGS_UP &&
	    (coll.spool == NULL || spool_pending(coll.spool) == 0))
		ok = budget_load(coll.db.conn, cfg, coll.kst, live) == 0;
out:
	if (!ok)
		coll.next_budget = now + 1000;
	free(live);
	free(target);
}

/*
 * When connected and every COLL_PARTS_MS: this month's and next month's
 * partitions, and usage_retention.  Loading never waits for it: a row
 * whose month lacks a partition gets it from the load itself.
 */
static void
coll_parts(int64_t now)
{
	int64_t		 lo, hi;

	coll.next_parts = now + COLL_PARTS_MS;
	if (parts_maintain(&coll.db, &coll.retention, wall_us(), &lo,
	    &hi) == 0) {
		load_covered(&coll.load, lo, hi);
		return;
	}
	log_warnx("partitions of usage_events: %s; trying again in %d s",
	    coll.db.err, COLL_PARTS_RETRY_MS / 1000);
	load_covered(&coll.load, 0, 0);
	coll.next_parts = now + COLL_PARTS_RETRY_MS;
	if (PQstatus(coll.db.conn) != CONNECTION_OK)
		pgs_down(&coll.db, now, 1);
}
