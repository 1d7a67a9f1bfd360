/*
 * meter.h - a finished request's usage event into the ring, and its
 * figures into this worker's live counters (layer 1).
 *
 * Called once per request by the pipeline's finish, which the client
 * core runs exactly once when a request ends, and by the pipeline when
 * it admits a request (meter_lane_full) or finds no price for one
 * (meter_unpriced).  Pushing never blocks: a full lane counts a drop.
 * Knows struct worker, never a client; never logs per request.
 */
#ifndef SLUICE_METER_H
#define SLUICE_METER_H

#include "common/event.h"
#include "worker/wctx.h"

/*
 * Push EV and count it: EP_IDX is its counters' endpoint index, UP_IDX
 * its upstream's counters index (-1: none), STREAM_BEGUN whether
 * meter_stream_begin was called for it.
 */
void	 meter_push(struct worker *, const struct usage_event *ev,
	    int ep_idx, int up_idx, int stream_begun);
/* A streamed answer's head went out: it counts as active until pushed. */
void	 meter_stream_begin(struct worker *);
/*
 * Admission under metering_full reject: 1 (and the refusal counted) when
 * this worker's lane has no free slot, so that the request's event would
 * be dropped; 0 to serve it.  Always 0 under metering_full serve.
 */
int	 meter_lane_full(struct worker *);
/*
 * A request with usage but no price for MODEL (its cost is NULL): count
 * it, and warn the first time this process meets MODEL.
 */
void	 meter_unpriced(struct worker *, const char *model);
/* The label of the counters' rejection index I ("401", "403", "429"). */
const char *meter_reject_code(int i);

#endif
