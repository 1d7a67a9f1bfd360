/*
 * meter.c - where a finished request becomes its usage event.
 *
 * Called exactly once per request that reached the worker (answered,
 * rejected, failed, or abandoned by its client).  The event is built on
 * the client's struct as the request goes and copied into this worker's
 * ring lane here; a full lane counts a drop and never blocks.
 */
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "shm/ring.h"
#include "worker/worker.h"

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
	ev->worker_pid = (int32_t)getpid();
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
	/* after the push: the collector's spend sync relies on this order */
	auth_request_done(c);
	log_debug("%s \"%.*s %.*s\" %d %lld %lldus %s", c->addr,
	    (int)c->rq.method_len, c->rq.method, (int)c->rq.path_len,
	    c->rq.target, ev->status, (long long)ev->bytes_out,
	    (long long)ev->latency_us, c->reqid);
}
