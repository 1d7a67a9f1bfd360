/*
 * meter.c - where a finished request's usage event leaves the worker.
 *
 * The event is copied into this worker's ring lane; a full lane counts a
 * drop and never blocks.  The same event feeds this worker's live
 * counters (shm/counters.h): plain adds to its own block, nothing shared,
 * so metering for /metrics costs no more than the few stores it takes.
 */
#include <string.h>

#include "common/log.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "worker/meter.h"

/* sluice's own rejections: unknown key, model not allowed, limits. */
static const char *const meter_rejects[CNT_REJECTS] = { "401", "403", "429" };

const char *
meter_reject_code(int i)
{
	return i >= 0 && i < CNT_REJECTS ? meter_rejects[i] : "";
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
