/*
 * models.c - GET /v1/models from the configuration and the caller's key.
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/keys.h"
#include "worker/models.h"

/* Append a JSON string with the model id, as OpenAI or Anthropic list it. */
static void
models_add(struct evbuffer *b, int anthropic, int *n, const char *id)
{
	char			 needle[KEY_PATTERN_MAX + 8];
	struct evbuffer_ptr	 found;

	if (strpbrk(id, "*?") != NULL)
		return;		/* a glob is not a model anyone can ask for */
	snprintf(needle, sizeof(needle), "\"id\":\"%s\"", id);
	found = evbuffer_search(b, needle, strlen(needle), NULL);
	if (found.pos != -1)
		return;		/* listed already */
	if (anthropic)
		evbuffer_add_printf(b, "%s{\"type\":\"model\",\"id\":\"%s\","
		    "\"display_name\":\"%s\",\"created_at\":"
		    "\"1970-01-01T00:00:00Z\"}", *n ? "," : "", id, id);
	else
		evbuffer_add_printf(b, "%s{\"id\":\"%s\",\"object\":\"model\","
		    "\"created\":0,\"owned_by\":\"sluice\"}", *n ? "," : "", id);
	(*n)++;
}

/*
 * Only concrete names can be listed: those of the key's model list, then
 * the routes' and prices' names that the key may use.
 */
void
models_list(const struct worker *w, const struct key_entry *k, int anth,
    struct evbuffer *b)
{
	const struct config	*cfg = w->cfg;
	int			 i, n = 0;

	evbuffer_add_printf(b, anth ? "{\"data\":[" :
	    "{\"object\":\"list\",\"data\":[");
	if (k != NULL)
		for (i = 0; i < k->nmodels; i++)
			models_add(b, anth, &n, k->models[i]);
	for (i = 0; i < cfg->nroutes; i++) {
		const char *p = cfg->routes[i].pattern;

		if (k == NULL || keys_model_allowed(k, p, strlen(p)))
			if (k == NULL || k->nmodels == 0)
				models_add(b, anth, &n, p);
	}
	for (i = 0; i < cfg->nprices; i++) {
		const char *p = cfg->prices[i].model;

		if (cfg_route_for(cfg, p, strlen(p)) != NULL &&
		    (k == NULL || (k->nmodels == 0 &&
		    keys_model_allowed(k, p, strlen(p)))))
			models_add(b, anth, &n, p);
	}
	evbuffer_add_printf(b, anth ? "],\"has_more\":false}\n" : "]}\n");
}
