/*
 * pipeline.h - what happens to a request (layer 3): check the endpoint
 * and method, authenticate, read the body, read and check its model and
 * stream flag, edit it, route it, hand it to the proxy, and when it ends
 * build its one usage event.
 *
 * Installed on every client connection by worker.c as a struct
 * client_handler; the client core calls it only through those hooks.  It
 * calls down: auth, models, meter, upstream routing through the proxy,
 * and the client core's replies.  Contract kept here: the event is pushed
 * (meter_push) before the key is charged (auth_charge), the order the
 * collector's spend sync relies on.
 */
#ifndef SLUICE_PIPELINE_H
#define SLUICE_PIPELINE_H

#include "worker/client.h"

extern const struct client_handler pipeline_handler;

#endif
