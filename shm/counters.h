/*
 * counters.h - live telemetry in the shared segment: per-worker counters
 * and latency histograms, the collector's and the master's numbers.
 *
 * The region ("counters") holds one block per worker slot (shm_nlanes()
 * slots), one collector block and one master block.  Every block has one
 * writer: a worker writes its slot's block, the collector its block, the
 * master its block and the slot table.  Writers use relaxed loads and
 * stores (no lock prefix: one writer per word), readers relaxed loads and
 * sum the slots (/metrics, /status, sluicectl status).  Counters only
 * grow: a respawned worker keeps its slot's totals; only the gauges
 * (connections, streams) are reset by the slot's new owner.
 *
 * shm/ knows nothing about HTTP: the worker gives the endpoint and
 * rejection indexes their meaning (worker/meter.c).  Text fields (the last
 * reload message, the last PostgreSQL error) are seqlocked words.
 *
 * Build with -DSLUICE_NO_COUNTERS to compile the request-path updates out
 * (the benchmark's baseline).
 */
#ifndef SLUICE_COUNTERS_H
#define SLUICE_COUNTERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CNT_SLOTS_MAX		128	/* 2 x the largest "workers" */
#define CNT_UPSTREAMS_MAX	64	/* more upstreams are not counted */
#define CNT_UPSTREAM_NAME_MAX	64
#define CNT_ENDPOINTS		8	/* request kinds, named by the worker */
#define CNT_CLASSES		6	/* status / 100 for 1..5, 0 for others */
#define CNT_REJECTS		3	/* rejection kinds, named by the worker */
#define CNT_TLS_REASONS		9	/* handshake failures, named by the worker */
#define CNT_HIST_BOUNDS		24	/* finite upper bounds, 10us .. 500s */
#define CNT_HIST_BUCKETS	(CNT_HIST_BOUNDS + 1)	/* and +Inf */
#define CNT_TEXT_WORDS		32	/* 256 bytes of text */
#define CNT_HEARTBEAT_MAX_MS	5000	/* older: the collector is stuck */

enum cnt_hist_kind {
	CNT_H_TOTAL = 0,	/* first request byte to last response byte */
	CNT_H_TTFB,		/* upstream time to first byte */
	CNT_H_OVERHEAD,		/* time spent in sluice itself */
	CNT_H_MAX,
};

/* Upper bounds of the histogram buckets, in microseconds (1-2-5 steps). */
extern const uint64_t cnt_hist_bounds_us[CNT_HIST_BOUNDS];

struct cnt_hist {
	_Atomic uint64_t bucket[CNT_HIST_BUCKETS];	/* not cumulative */
	_Atomic uint64_t sum_us;
	_Atomic uint64_t count;
};

struct cnt_upstream {
	_Atomic uint64_t opened;	/* connections opened */
	_Atomic uint64_t reused;	/* requests sent on a pooled one */
	_Atomic uint64_t requests;	/* requests it answered or failed */
	_Atomic uint64_t failures;	/* requests it failed (502/504, cut) */
	_Atomic uint64_t retries;	/* extra attempts (failover) */
};

/* One worker slot's block; written only by the worker in the slot. */
struct cnt_worker {
	_Alignas(64) _Atomic int64_t conns;	/* gauge: client connections */
	_Atomic int64_t	 streams;		/* gauge: streams being relayed */
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t requests[CNT_ENDPOINTS][CNT_CLASSES];
	_Atomic uint64_t rejected[CNT_REJECTS];
	_Atomic uint64_t unpriced;		/* usage, but no price: cost NULL */
	_Atomic uint64_t metering_full;		/* 503: the lane was full */
	struct cnt_hist	 hist[CNT_H_MAX];
	struct cnt_upstream up[CNT_UPSTREAMS_MAX];
	_Atomic uint64_t tls_full;		/* TLS handshakes, full */
	_Atomic uint64_t tls_resumed;		/* ... resumed by ticket */
	_Atomic uint64_t tls_failed[CNT_TLS_REASONS];
};

/* A seqlocked text field: one writer, any number of readers. */
struct cnt_text {
	_Atomic uint64_t seq;
	_Atomic uint64_t w[CNT_TEXT_WORDS];
};

/* Written only by the collector; it keeps growing across its restarts. */
struct cnt_collector {
	_Alignas(64) _Atomic uint64_t rows_written;
	_Atomic uint64_t rows_duplicate;
	_Atomic uint64_t rows_spooled;
	_Atomic uint64_t rows_replayed;
	_Atomic uint64_t batches;
	_Atomic uint64_t spool_bytes;		/* bytes written to spool files */
	_Atomic uint64_t spool_files;		/* gauge: files waiting */
	_Atomic int64_t	 heartbeat_ms;		/* CLOCK_MONOTONIC, 0 = never */
	_Atomic int32_t	 pid;
	_Atomic uint32_t connected;		/* PostgreSQL is up */
	_Atomic uint32_t spool_ok;		/* the spool takes batches */
	_Atomic uint32_t has_database;		/* "database" is set */
	_Atomic int64_t	 error_wall_us;		/* when last_error was set */
	struct cnt_text	 last_error;
	_Atomic uint64_t limits_fallbacks;	/* outages limits fell back in */
	_Atomic uint32_t limits_fallback;	/* gauge: falling back now */
};

/* The master's view of one slot. */
struct cnt_slot {
	_Atomic int32_t	 pid;		/* 0 = no worker */
	_Atomic uint32_t gen;		/* configuration generation */
	_Atomic int64_t	 started_wall_us;
};

/* Written only by the master. */
struct cnt_master {
	_Alignas(64) _Atomic uint64_t worker_restarts;	/* unplanned deaths */
	_Atomic uint64_t collector_restarts;
	_Atomic uint64_t reloads_ok;
	_Atomic uint64_t reloads_failed;
	_Atomic uint32_t generation;
	_Atomic int32_t	 pid;
	_Atomic int64_t	 started_wall_us;
	_Atomic int64_t	 reload_wall_us;	/* 0 = no reload yet */
	_Atomic uint32_t reload_ok;		/* outcome of the last reload */
	_Atomic int64_t	 tls_not_after;		/* the certificate in force
						   expires, unix s; 0 = none */
	struct cnt_text	 reload_msg;
	/* upstream names: index i is written once, before nupstreams > i */
	_Atomic uint32_t nupstreams;
	char		 upstream[CNT_UPSTREAMS_MAX][CNT_UPSTREAM_NAME_MAX];
	struct cnt_slot	 slots[CNT_SLOTS_MAX];
};

struct cnt_region {
	uint32_t	 nslots;
	struct cnt_master master;
	struct cnt_collector collector;
	struct cnt_worker workers[];
};

/* Plain copies for readers. */
struct cnt_hist_snap {
	uint64_t	 bucket[CNT_HIST_BUCKETS];
	uint64_t	 sum_us;
	uint64_t	 count;
};

struct cnt_worker_snap {
	int64_t		 conns, streams;
	uint64_t	 bytes_in, bytes_out;
	uint64_t	 requests[CNT_ENDPOINTS][CNT_CLASSES];
	uint64_t	 rejected[CNT_REJECTS];
	uint64_t	 unpriced, metering_full;
	struct cnt_hist_snap hist[CNT_H_MAX];
	struct {
		uint64_t opened, reused, requests, failures, retries;
	}		 up[CNT_UPSTREAMS_MAX];
	uint64_t	 tls_full, tls_resumed, tls_failed[CNT_TLS_REASONS];
};

/* Master, before the first fork. */
size_t	 cnt_region_size(uint32_t nslots);
void	 cnt_region_init(struct cnt_region *, uint32_t nslots);
/* Master: the index of upstream NAME, added if new; -1 when full. */
int	 cnt_upstream_register(struct cnt_region *, const char *name);
/* Anyone: the index of upstream NAME, or -1. */
int	 cnt_upstream_find(const struct cnt_region *, const char *name);
uint32_t cnt_upstream_count(const struct cnt_region *);
/* Master: the last reload's outcome and message. */
void	 cnt_master_reload(struct cnt_region *, int ok, const char *msg,
	    int64_t wall_us);

/* Writers of a text field, and its readers (BUF of at least 257 bytes). */
void	 cnt_text_set(struct cnt_text *, const char *);
void	 cnt_text_get(const struct cnt_text *, char *buf, size_t len);

/* The slot's new owner: reset the gauges, keep the totals. */
void	 cnt_worker_begin(struct cnt_worker *);
/* Readers: copy one block; add one copy into another. */
void	 cnt_worker_read(const struct cnt_worker *, struct cnt_worker_snap *);
void	 cnt_worker_sum(struct cnt_worker_snap *dst,
	    const struct cnt_worker_snap *src);

/* The bucket a value of US microseconds falls in (le semantics). */
static inline unsigned
cnt_hist_bucket(uint64_t us)
{
	unsigned i = 0;

	while (i < CNT_HIST_BOUNDS && us > cnt_hist_bounds_us[i])
		i++;
	return i;
}

/*
 * The Q-quantile (0..1) of a histogram, interpolated linearly inside its
 * bucket as Prometheus's histogram_quantile() does; -1 if it is empty.
 * A quantile in the +Inf bucket is reported as the last finite bound.
 */
double	 cnt_hist_quantile(const uint64_t bucket[CNT_HIST_BUCKETS], double q);

/* Outside the request path (master, collector): never compiled out. */
static inline void
cnt_put(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

static inline void
cnt_bump(_Atomic uint64_t *p)
{
	cnt_put(p, atomic_load_explicit(p, memory_order_relaxed) + 1);
}

static inline uint64_t
cnt_get(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/*
 * The request path.  One writer per word: a relaxed load and store, no
 * read-modify-write, so an update is a plain add to a line this process
 * alone writes.
 */
#ifndef SLUICE_NO_COUNTERS
static inline void
cnt_add(_Atomic uint64_t *p, uint64_t n)
{
	atomic_store_explicit(p, atomic_load_explicit(p,
	    memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void
cnt_gauge(_Atomic int64_t *p, int64_t n)
{
	atomic_store_explicit(p, atomic_load_explicit(p,
	    memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void
cnt_hist_observe(struct cnt_hist *h, int64_t us)
{
	uint64_t v = us < 0 ? 0 : (uint64_t)us;

	cnt_add(&h->bucket[cnt_hist_bucket(v)], 1);
	cnt_add(&h->sum_us, v);
	cnt_add(&h->count, 1);
}
#else
#define cnt_add(p, n)		((void)(p), (void)(n))
#define cnt_gauge(p, n)		((void)(p), (void)(n))
#define cnt_hist_observe(h, us)	((void)(h), (void)(us))
#endif

/* Slot I's block, or NULL. */
static inline struct cnt_worker *
cnt_worker(struct cnt_region *r, uint32_t i)
{
	return r != NULL && i < r->nslots ? &r->workers[i] : NULL;
}

#endif
