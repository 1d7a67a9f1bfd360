/*
 * vertex.h - what a `protocol vertex` upstream needs that an Anthropic
 * one does not (layer 0): the request target and the body as Vertex AI
 * takes them.  Its answers are Anthropic's own (SSE from
 * :streamRawPredict), and its token is the master's refresher's
 * (shm/gtokens.h), so nothing else is needed here.
 *
 * Called by the proxy while it writes a vertex request; pure.
 */
#ifndef SLUICE_VERTEX_H
#define SLUICE_VERTEX_H

#include <stddef.h>

#include "common/config.h"

struct evbuffer;

#define VERTEX_VERSION		"vertex-2023-10-16"
#define VERTEX_TARGET_MAX	1024

/*
 * The path for MODEL (mapped through U's deployments) into OUT (CAP, at
 * least VERTEX_TARGET_MAX): "/v1/projects/{project}/locations/{region}/
 * publishers/anthropic/models/{model}:rawPredict", ":streamRawPredict"
 * if STREAM.  Its length; 0 if it does not fit.
 */
size_t	 vertex_target(const struct cfg_upstream *u, const char *model,
	    int stream, char *out, size_t cap);
/* The body as Vertex takes it: "model" removed (the path says it),
 * "anthropic_version" vertex-2023-10-16 added; "stream" stays. */
int	 vertex_body(const char *body, size_t len, struct evbuffer *out);

#endif
