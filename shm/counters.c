/*
 * counters.c - the counters region: layout, the master's writes, the
 * readers' copies and sums, histogram quantiles.
 *
 * Why one writer per block: a relaxed load and store of a word nobody else
 * writes costs what a plain add costs, and a block aligned to 64 bytes
 * shares no cache line with another writer, so the request path pays
 * nothing for being observable.  Readers may see one word updated and its
 * neighbour not yet (a histogram's count one ahead of its buckets); every
 * value is still exact on its own, and monotonic.
 *
 * Text fields are seqlocked: the writer makes seq odd, stores the words
 * (relaxed atomics, so that a concurrent read is not a data race), makes
 * seq even again with release; a reader retries while seq is odd or moved.
 */
#include <stdatomic.h>
#include <string.h>

#include "shm/counters.h"

const uint64_t cnt_hist_bounds_us[CNT_HIST_BOUNDS] = {
	10, 20, 50,
	100, 200, 500,
	1000, 2000, 5000,
	10000, 20000, 50000,
	100000, 200000, 500000,
	1000000, 2000000, 5000000,
	10000000, 20000000, 50000000,
	100000000, 200000000, 500000000,
};

_Static_assert(sizeof(struct cnt_worker) % 64 == 0,
    "worker blocks must not share cache lines");

size_t
cnt_region_size(uint32_t nslots)
{
	return sizeof(struct cnt_region) +
	    (size_t)nslots * sizeof(struct cnt_worker);
}

void
cnt_region_init(struct cnt_region *r, uint32_t nslots)
{
	memset(r, 0, cnt_region_size(nslots));
	r->nslots = nslots > CNT_SLOTS_MAX ? CNT_SLOTS_MAX : nslots;
}

int
cnt_upstream_find(const struct cnt_region *r, const char *name)
{
	uint32_t i, n = cnt_upstream_count(r);

	for (i = 0; i < n; i++)
		if (strncmp(r->master.upstream[i], name,
		    CNT_UPSTREAM_NAME_MAX - 1) == 0)
			return (int)i;
	return -1;
}

uint32_t
cnt_upstream_count(const struct cnt_region *r)
{
	uint32_t n;

	n = atomic_load_explicit(&r->master.nupstreams, memory_order_acquire);
	return n > CNT_UPSTREAMS_MAX ? CNT_UPSTREAMS_MAX : n;
}

int
cnt_upstream_register(struct cnt_region *r, const char *name)
{
	struct cnt_master	*m = &r->master;
	uint32_t		 n;
	int			 i;

	if ((i = cnt_upstream_find(r, name)) != -1)
		return i;
	n = atomic_load_explicit(&m->nupstreams, memory_order_relaxed);
	if (n >= CNT_UPSTREAMS_MAX)
		return -1;
	strncpy(m->upstream[n], name, CNT_UPSTREAM_NAME_MAX - 1);
	m->upstream[n][CNT_UPSTREAM_NAME_MAX - 1] = '\0';
	/* the name is written before anyone can see the index */
	atomic_store_explicit(&m->nupstreams, n + 1, memory_order_release);
	return (int)n;
}

void
cnt_text_set(struct cnt_text *t, const char *s)
{
	uint64_t	 words[CNT_TEXT_WORDS], seq;
	size_t		 len = strlen(s), i;

	if (len > sizeof(words) - 1)
		len = sizeof(words) - 1;
	memset(words, 0, sizeof(words));
	memcpy(words, s, len);
	seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
	atomic_store_explicit(&t->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (i = 0; i < CNT_TEXT_WORDS; i++)
		atomic_store_explicit(&t->w[i], words[i],
		    memory_order_relaxed);
	atomic_store_explicit(&t->seq, seq + 2, memory_order_release);
}

void
cnt_text_get(const struct cnt_text *t, char *buf, size_t len)
{
	uint64_t	 words[CNT_TEXT_WORDS], s1, s2;
	size_t		 i;
	int		 tries;

	if (len == 0)
		return;
	for (tries = 0; tries < 1000; tries++) {
		s1 = atomic_load_explicit(&t->seq, memory_order_acquire);
		for (i = 0; i < CNT_TEXT_WORDS; i++)
			words[i] = atomic_load_explicit(&t->w[i],
			    memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&t->seq, memory_order_relaxed);
		if ((s1 & 1) == 0 && s1 == s2)
			break;
	}
	if (tries == 1000) {
		buf[0] = '\0';
		return;
	}
	((char *)words)[sizeof(words) - 1] = '\0';
	strncpy(buf, (const char *)words, len - 1);
	buf[len - 1] = '\0';
}

void
cnt_master_reload(struct cnt_region *r, int ok, const char *msg,
    int64_t wall_us)
{
	struct cnt_master *m = &r->master;

	cnt_text_set(&m->reload_msg, msg);
	atomic_store_explicit(&m->reload_ok, ok ? 1 : 0, memory_order_relaxed);
	atomic_store_explicit(&m->reload_wall_us, wall_us,
	    memory_order_relaxed);
	/* the counter last: a reader that sees it move sees the message */
	atomic_thread_fence(memory_order_release);
	cnt_bump(ok ? &m->reloads_ok : &m->reloads_failed);
}

void
cnt_worker_begin(struct cnt_worker *w)
{
	atomic_store_explicit(&w->conns, 0, memory_order_relaxed);
	atomic_store_explicit(&w->streams, 0, memory_order_relaxed);
}

static void
hist_read(const struct cnt_hist *h, struct cnt_hist_snap *s)
{
	int i;

	for (i = 0; i < CNT_HIST_BUCKETS; i++)
		s->bucket[i] = cnt_get(&h->bucket[i]);
	s->sum_us = cnt_get(&h->sum_us);
	s->count = cnt_get(&h->count);
}

void
cnt_worker_read(const struct cnt_worker *w, struct cnt_worker_snap *s)
{
	int i, j;

	s->conns = atomic_load_explicit(&w->conns, memory_order_relaxed);
	s->streams = atomic_load_explicit(&w->streams, memory_order_relaxed);
	s->bytes_in = cnt_get(&w->bytes_in);
	s->bytes_out = cnt_get(&w->bytes_out);
	for (i = 0; i < CNT_ENDPOINTS; i++)
		for (j = 0; j < CNT_CLASSES; j++)
			s->requests[i][j] = cnt_get(&w->requests[i][j]);
	for (i = 0; i < CNT_REJECTS; i++)
		s->rejected[i] = cnt_get(&w->rejected[i]);
	s->unpriced = cnt_get(&w->unpriced);
	s->metering_full = cnt_get(&w->metering_full);
	for (i = 0; i < CNT_H_MAX; i++)
		hist_read(&w->hist[i], &s->hist[i]);
	for (i = 0; i < CNT_UPSTREAMS_MAX; i++) {
		s->up[i].opened = cnt_get(&w->up[i].opened);
		s->up[i].reused = cnt_get(&w->up[i].reused);
		s->up[i].requests = cnt_get(&w->up[i].requests);
		s->up[i].failures = cnt_get(&w->up[i].failures);
		s->up[i].retries = cnt_get(&w->up[i].retries);
	}
	s->tls_full = cnt_get(&w->tls_full);
	s->tls_resumed = cnt_get(&w->tls_resumed);
	for (i = 0; i < CNT_TLS_REASONS; i++)
		s->tls_failed[i] = cnt_get(&w->tls_failed[i]);
}

void
cnt_worker_sum(struct cnt_worker_snap *d, const struct cnt_worker_snap *s)
{
	int i, j;

	d->conns += s->conns;
	d->streams += s->streams;
	d->bytes_in += s->bytes_in;
	d->bytes_out += s->bytes_out;
	for (i = 0; i < CNT_ENDPOINTS; i++)
		for (j = 0; j < CNT_CLASSES; j++)
			d->requests[i][j] += s->requests[i][j];
	for (i = 0; i < CNT_REJECTS; i++)
		d->rejected[i] += s->rejected[i];
	d->unpriced += s->unpriced;
	d->metering_full += s->metering_full;
	for (i = 0; i < CNT_H_MAX; i++) {
		for (j = 0; j < CNT_HIST_BUCKETS; j++)
			d->hist[i].bucket[j] += s->hist[i].bucket[j];
		d->hist[i].sum_us += s->hist[i].sum_us;
		d->hist[i].count += s->hist[i].count;
	}
	for (i = 0; i < CNT_UPSTREAMS_MAX; i++) {
		d->up[i].opened += s->up[i].opened;
		d->up[i].reused += s->up[i].reused;
		d->up[i].requests += s->up[i].requests;
		d->up[i].failures += s->up[i].failures;
		d->up[i].retries += s->up[i].retries;
	}
	d->tls_full += s->tls_full;
	d->tls_resumed += s->tls_resumed;
	for (i = 0; i < CNT_TLS_REASONS; i++)
		d->tls_failed[i] += s->tls_failed[i];
}

double
cnt_hist_quantile(const uint64_t bucket[CNT_HIST_BUCKETS], double q)
{
	uint64_t	 total = 0, seen = 0;
	double		 rank, lo, hi;
	int		 i;

	for (i = 0; i < CNT_HIST_BUCKETS; i++)
		total += bucket[i];
	if (total == 0)
		return -1;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)total;
	for (i = 0; i < CNT_HIST_BUCKETS; i++) {
		if (bucket[i] > 0 && (double)(seen + bucket[i]) >= rank)
			break;
		seen += bucket[i];
	}
	if (i >= CNT_HIST_BOUNDS)
		return (double)cnt_hist_bounds_us[CNT_HIST_BOUNDS - 1];
	lo = i == 0 ? 0 : (double)cnt_hist_bounds_us[i - 1];
	hi = (double)cnt_hist_bounds_us[i];
	return lo + (hi - lo) * ((rank - (double)seen) / (double)bucket[i]);
}
