/*
 * meter.c - where a finished request's usage event leaves the worker.
 *
 * The event is copied into this worker's ring lane; a full lane counts a
 * drop and never blocks.  The same event feeds this worker's live
 * counters (shm/counters.h): plain adds to its own block, nothing shared,
 * so metering for /metrics costs no more than the few stores it takes.
 *
 * An unpriced model is said once per process, not once per request: the
 * models already warned about are kept as 64-bit hashes in a fixed table,
 * so a client cycling through made-up model names costs a bounded table
 * and a bounded number of log lines; the counter still counts each one.
 */
#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "worker/meter.h"

#define METER_UNPRICED_MAX	64	/* models warned about, per process */

/* hashes of the models warned about; a collision only spares a line */
static uint64_t	 meter_unpriced_seen[METER_UNPRICED_MAX];
static int	 meter_unpriced_n;

/* sluice's own rejections: unknown key, model not allowed, limits. */
static const char *const meter_rejects[CNT_REJECTS] = { "401", "403", "429" };

const char *
meter_reject_code(int i)
{
	return i >= 0 && i < CNT_REJECTS ? meter_rejects[i] : "";
}

int
meter_lane_full(struct worker *w)
{
	if (!w->cfg->metering_full_reject || w->lane == NULL ||
	    ring_free(w->lane) > 0)
		return 0;
	cnt_add(&w->cw->metering_full, 1);
	return 1;
}

static uint64_t
meter_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

void
meter_unpriced(struct worker *w, const char *model)
{
	uint64_t	 h = meter_hash(model);
	int		 i;

	cnt_add(&w->cw->unpriced, 1);
	for (i = 0; i < meter_unpriced_n; i++)
		if (meter_unpriced_seen[i] == h)
			return;
	if (meter_unpriced_n == METER_UNPRICED_MAX)
		return;
	meter_unpriced_seen[meter_unpriced_n++] = h;
	if (meter_unpriced_n == METER_UNPRICED_MAX)
		log_warnx("model %s has no price: its cost is NULL; %d "
		    "models warned about, further ones are only counted",
		    model, METER_UNPRICED_MAX);
	else
		log_warnx("model %s has no price: its cost is NULL "
		    "(sluice_requests_unpriced_total counts them)", model);
}

void
meter_stream_begin(struct worker *w)
{
	cnt_gauge(&w->cw->streams, 1);
}

static void
meter_count(struct worker *w, const struct usage_event *ev, int ep_idx,
    int idx, int stream_begun)
{
	struct cnt_worker	*cw = w->cw;
	int			 cls;

	cls = ev->status >= 100 && ev->status < 600 ? ev->status / 100 : 0;
	cnt_add(&cw->requests[ep_idx][cls], 1);
	cnt_add(&cw->bytes_in, ev->bytes_in > 0 ? (uint64_t)ev->bytes_in : 0);
	cnt_add(&cw->bytes_out, ev->bytes_out > 0 ?
	    (uint64_t)ev->bytes_out : 0);
	cnt_hist_observe(&cw->hist[CNT_H_TOTAL], ev->latency_us);
	cnt_hist_observe(&cw->hist[CNT_H_OVERHEAD], ev->overhead_us);
	if (ev->ttfb_us >= 0)
		cnt_hist_observe(&cw->hist[CNT_H_TTFB], ev->ttfb_us);
	if (stream_begun)
		cnt_gauge(&cw->streams, -1);
	if (ev->upstream[0] == '\0') {
		if (ev->status == 401)
			cnt_add(&cw->rejected[0], 1);
		else if (ev->status == 403)
			cnt_add(&cw->rejected[1], 1);
		else if (ev->status == 429)
			cnt_add(&cw->rejected[2], 1);
		return;
	}
	if (idx < 0)
		return;
	cnt_add(&cw->up[idx].requests, 1);
	if (strncmp(ev->error_class, "upstream_", 9) == 0)
		cnt_add(&cw->up[idx].failures, 1);
	if (ev->attempts > 1)
		cnt_add(&cw->up[idx].retries, (uint64_t)ev->attempts - 1);
}

void
meter_push(struct worker *w, const struct usage_event *ev, int ep_idx,
    int up_idx, int stream_begun)
{
	if (w->lane != NULL && ring_push(w->lane, ev) == -1)
		log_warnx("event ring lane %d full: a usage event was dropped",
		    w->slot);
	meter_count(w, ev, ep_idx, up_idx, stream_begun);
}
