/*
 * meter.h - a finished request's usage event into the ring, and its
 * figures into this worker's live counters (layer 1).
 *
 * Called once per request by the pipeline's finish, which the client
 * core runs exactly once when a request ends.  Pushing never blocks: a
 * full lane counts a drop.  Knows struct worker, never a client.
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
/* The label of the counters' rejection index I ("401", "403", "429"). */
const char *meter_reject_code(int i);

#endif
