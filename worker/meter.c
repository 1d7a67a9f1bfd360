/*
 * meter.c - where a finished request becomes its usage event.
 *
 * Called exactly once per request that reached the worker (answered,
 * rejected, failed, or abandoned by its client).  The event is built on
 * the client's struct as the request goes and copied into this worker's
 * ring lane here; a full lane counts a drop and never blocks.
 *
 * The same finished request feeds this worker's live counters (shm/
 * counters.h): plain adds to its own block, nothing shared, so metering
 * for /metrics costs no more than the few stores it takes.
 */
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "worker/worker.h"

/* The counters' endpoint index: these labels, in this order. */
static const char *const meter_endpoints[CNT_ENDPOINTS] = {
	"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
	"/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
	"/v1/models", "other",
};

/* sluice's own rejections: unknown key, model not allowed, limits. */
static const char *const meter_rejects[CNT_REJECTS] = { "401", "403", "429" };

const char *
meter_endpoint_name(int i)
{
	return i >= 0 && i < CNT_ENDPOINTS ? meter_endpoints[i] : "other";
}

const char *
meter_reject_code(int i)
{
	return i >= 0 && i < CNT_REJECTS ? meter_rejects[i] : "";
}

static int
meter_endpoint(const char *p)
{
	int i;

	if (strncmp(p, "/v1/", 4) != 0)
		return CNT_ENDPOINTS - 1;
	for (i = 0; i < CNT_ENDPOINTS - 1; i++)
		if (strcmp(p + 4, meter_endpoints[i] + 4) == 0)
			return i;
	return CNT_ENDPOINTS - 1;
}

void
meter_stream_begin(struct client *c)
{
	if (c->stream)
		cnt_gauge(&c->w->cw->streams, 1);
}

/* The finished request, into this worker's counters. */
static void
meter_count(struct client *c, const struct usage_event *ev)
{
	struct cnt_worker	*cw = c->w->cw;
	int			 cls, idx;

	cls = ev->status >= 100 && ev->status < 600 ? ev->status / 100 : 0;
	cnt_add(&cw->requests[meter_endpoint(ev->endpoint)][cls], 1);
	cnt_add(&cw->bytes_in, ev->bytes_in > 0 ? (uint64_t)ev->bytes_in : 0);
	cnt_add(&cw->bytes_out, ev->bytes_out > 0 ?
	    (uint64_t)ev->bytes_out : 0);
	cnt_hist_observe(&cw->hist[CNT_H_TOTAL], ev->latency_us);
	cnt_hist_observe(&cw->hist[CNT_H_OVERHEAD], ev->overhead_us);
	if (ev->ttfb_us >= 0)
		cnt_hist_observe(&cw->hist[CNT_H_TTFB], ev->ttfb_us);
	if (c->stream && c->px.head_sent)
		cnt_gauge(&cw->streams, -1);	/* see meter_stream_begin */
	if (ev->upstream[0] == '\0') {
		if (ev->status == 401)
			cnt_add(&cw->rejected[0], 1);
		else if (ev->status == 403)
			cnt_add(&cw->rejected[1], 1);
		else if (ev->status == 429)
			cnt_add(&cw->rejected[2], 1);
		return;
	}
	if (c->px.up == NULL || (idx = c->px.up->cnt_idx) < 0)
		return;
	cnt_add(&cw->up[idx].requests, 1);
	if (strncmp(ev->error_class, "upstream_", 9) == 0)
		cnt_add(&cw->up[idx].failures, 1);
	if (ev->attempts > 1)
		cnt_add(&cw->up[idx].retries, (uint64_t)ev->attempts - 1);
}

void
meter_finish(struct client *c)
{
	struct usage_event	*ev = &c->ev;
	int64_t			 now, upstream_us = 0;
	const char		*model;

	if (c->metered || c->t_start_us == 0)
		return;
	c->metered = 1;
	now = now_us();
	ev->latency_us = now - c->t_start_us;
	if (c->px.t_first_byte_us != 0 && c->px.t_sent_us != 0) {
		ev->ttfb_us = c->px.t_first_byte_us - c->px.t_sent_us;
		/* upstream time: from request sent to the end of its answer */
		upstream_us = now - c->px.t_sent_us;
	} else
		ev->ttfb_us = -1;
	ev->overhead_us = ev->latency_us - upstream_us;
	if (ev->overhead_us < 0)
		ev->overhead_us = 0;
	ev->bytes_out = c->out_bytes;
	ev->worker_pid = c->w->pid;
	memcpy(ev->client_addr, c->addr, sizeof(ev->client_addr));
	/* an alias is billed as the model it stands for */
	model = c->model_resolved != NULL ? c->model_resolved : ev->model;
	usage_to_event(&c->usage, cfg_price_for(c->w->cfg, model,
	    strlen(model)), ev);
	/* numbers from a response cut short are not the whole bill */
	if (ev->usage_source == USAGE_UPSTREAM && !c->px.complete)
		ev->usage_source = USAGE_ESTIMATED;
	if (c->w->lane != NULL && ring_push(c->w->lane, ev) == -1)
		log_warnx("event ring lane %d full: usage event %s dropped",
		    c->w->slot, c->reqid);
	meter_count(c, ev);
	/* after the push: the collector's spend sync relies on this order */
	auth_request_done(c);
	log_debug("%s \"%.*s %.*s\" %d %lld %lldus %s", c->addr,
	    (int)c->rq.method_len, c->rq.method, (int)c->rq.path_len,
	    c->rq.target, ev->status, (long long)ev->bytes_out,
	    (long long)ev->latency_us, c->reqid);
}
