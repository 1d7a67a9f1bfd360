/*
 * models.h - GET /v1/models, answered by sluice (layer 1): the models a
 * caller may use, in OpenAI's list shape or Anthropic's.  Called by the
 * pipeline; writes a JSON body into the evbuffer it is given and never
 * knows the connection it goes to.
 */
#ifndef SLUICE_MODELS_H
#define SLUICE_MODELS_H

#include "worker/wctx.h"

struct evbuffer;
struct key_entry;

/* The list for KEY (NULL: no keys_file, every routed model). */
void	 models_list(const struct worker *, const struct key_entry *key,
	    int anthropic, struct evbuffer *body);

#endif
