/*
 * auth.c - who is calling, and may they: keys, model access, limits.
 *
 * Runs in two steps so that an unknown caller costs as little as possible:
 * at the request head (before the body is read) the secret is hashed and
 * looked up, and the request-rate limit is taken; once the body is parsed,
 * the model is checked against the key's globs and the token and budget
 * limits are read.  After the response, the tokens and cost are added to
 * the key's shared state.  Without keys_file, sluice does not authenticate.
 *
 * A budget or token limit is checked before a request and charged after
 * it, so the requests already in flight when a key reaches its limit all
 * finish: the overshoot is bounded by what those requests cost.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/keys.h"
#include "common/log.h"
#include "shm/keystate.h"
#include "worker/worker.h"

/*
 * How long after a worker starts a budgeted key waits for the collector to
 * load spend from PostgreSQL; past it (PostgreSQL down at the first start)
 * requests are admitted on the spend this process has seen.
 */
#define BUDGET_LOAD_WAIT_US	(10LL * 1000000)

static int64_t
ns_now(void)
{
	return now_us() * 1000;
}

/* The budget period now falls in, and the seconds until it ends. */
static int64_t
period_of(enum key_period p, int64_t *left_s)
{
	time_t	 now = time(NULL), start, end;
	int64_t	 id = ks_period((int)p, now, &start, &end);

	*left_s = (int64_t)(end - now);
	return id;
}

/* The presented secret: "Authorization: Bearer S", "x-api-key: S" or
 * Azure's "api-key: S". */
static const char *
find_secret(const struct http_head *rq, size_t *len)
{
	const struct http_header *h;

	if ((h = http_find(rq, "authorization")) != NULL) {
		if (h->value_len > 7 && strncasecmp(h->value, "Bearer ", 7) == 0) {
			*len = h->value_len - 7;
			return h->value + 7;
		}
		return NULL;
	}
	if ((h = http_find(rq, "x-api-key")) != NULL ||
	    (h = http_find(rq, "api-key")) != NULL) {
		*len = h->value_len;
		return h->value;
	}
	return NULL;
}

static void
reject(struct client *c, int status, const char *type, const char *code,
    const char *msg)
{
	if (c->rq.chunked || c->body_need > 0 || c->rq.content_length > 0)
		if (c->state == CL_READ_HEAD)
			c->keepalive = 0;	/* the body is not read */
	client_send_error(c, status, type, code, "%s", msg);
}

int
auth_request_head(struct client *c)
{
	const struct keyring	*kr = c->w->cfg->keys;
	const struct key_entry	*k;
	struct keystate		*ks;
	const char		*secret;
	size_t			 len = 0;
	uint8_t			 hash[32];
	int64_t			 wait;

	c->key = NULL;
	if (kr == NULL)
		return 0;
	if ((secret = find_secret(&c->rq, &len)) == NULL || len == 0) {
		reject(c, 401, "invalid_request_error", "missing_api_key",
		    "You didn't provide an API key. Provide it in the "
		    "Authorization header (Bearer) or x-api-key.");
		return -1;
	}
	keys_hash_secret(secret, len, hash);
	if ((k = keys_find(kr, hash)) == NULL) {
		reject(c, 401, "invalid_request_error", "invalid_api_key",
		    "Incorrect API key provided.");
		return -1;
	}
	snprintf(c->ev.key_name, sizeof(c->ev.key_name), "%s", k->name);
	if (k->disabled) {
		reject(c, 401, "invalid_request_error", "key_disabled",
		    "This API key is disabled.");
		return -1;
	}
	if (k->expires != 0 && time(NULL) >= k->expires) {
		reject(c, 401, "invalid_request_error", "key_expired",
		    "This API key has expired.");
		return -1;
	}
	c->key = k;
	ks = keystate_at(c->w->keystate, k->slot);
	if (ks != NULL && k->rpm > 0 &&
	    (wait = ks_rpm_take(ks, k->rpm, ns_now())) != 0) {
		c->retry_after_s = (int)(wait / 1000000000) + 1;
		reject(c, 429, "requests", "rate_limit_exceeded",
		    "Rate limit reached for requests per minute.");
		return -1;
	}
	return 0;
}

int
auth_request_body(struct client *c)
{
	const struct key_entry	*k = c->key;
	struct keystate		*ks;
	int64_t			 wait, left, period, spend;
	char			 msg[256];

	if (k == NULL)
		return 0;
	if (!keys_model_allowed(k, c->model, c->model_len)) {
		snprintf(msg, sizeof(msg), "This key may not use the model "
		    "`%s`.", c->ev.model);
		client_send_error(c, 403, "invalid_request_error",
		    "model_not_allowed", "%s", msg);
		return -1;
	}
	if ((ks = keystate_at(c->w->keystate, k->slot)) == NULL)
		return 0;
	if (k->tpm > 0 && (wait = ks_tpm_check(ks, k->tpm, ns_now())) != 0) {
		c->retry_after_s = (int)(wait / 1000000000) + 1;
		client_send_error(c, 429, "tokens", "rate_limit_exceeded",
		    "Rate limit reached for tokens per minute.");
		return -1;
	}
	if (k->budget_micro_usd > 0 && k->budget_period != PERIOD_NONE) {
		if (c->w->keystate != NULL && c->w->cfg->database[0] != '\0' &&
		    !atomic_load_explicit(&c->w->keystate->spend_loaded,
		    memory_order_relaxed) && now_us() - c->w->started_us <
		    BUDGET_LOAD_WAIT_US) {
			/*
			 * Right after the first start, the spend of earlier
			 * runs is not loaded yet: admitting now could spend a
			 * budget twice.  Wait for the collector, briefly.
			 */
			c->retry_after_s = 1;
			client_send_error(c, 503, "server_error",
			    "budget_loading", "Budgets are being loaded; "
			    "retry in a second.");
			return -1;
		}
		period = period_of(k->budget_period, &left);
		spend = ks_spend(ks, period);
		if (spend >= k->budget_micro_usd) {
			c->retry_after_s = (int)left;
			client_send_error(c, 429, "insufficient_quota",
			    "budget_exceeded", "This key has used its budget "
			    "of $%lld.%06lld per %s.",
			    (long long)(k->budget_micro_usd / 1000000),
			    (long long)(k->budget_micro_usd % 1000000),
			    k->budget_period == PERIOD_DAY ? "day" : "month");
			return -1;
		}
	}
	return 0;
}

void
auth_request_done(struct client *c)
{
	const struct key_entry	*k = c->key;
	const struct usage_event *ev = &c->ev;
	struct keystate		*ks;
	int64_t			 left, tokens = 0;

	if (k == NULL || (ks = keystate_at(c->w->keystate, k->slot)) == NULL)
		return;
	if (ev->prompt_tokens > 0)
		tokens += ev->prompt_tokens;
	if (ev->completion_tokens > 0)
		tokens += ev->completion_tokens;
	if (k->tpm > 0)
		ks_tpm_add(ks, k->tpm, tokens, ns_now());
	if (ev->cost_micro_usd > 0 && k->budget_period != PERIOD_NONE)
		ks_spend_add(ks, period_of(k->budget_period, &left),
		    ev->cost_micro_usd);
}

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
 * GET /v1/models, answered here: the models a caller may use.  Only
 * concrete names can be listed: those of the key's model list, then the
 * routes' and prices' names that the key may use.
 */
void
auth_list_models(struct client *c)
{
	const struct config	*cfg = c->w->cfg;
	const struct key_entry	*k = c->key;
	struct evbuffer		*b, *out = bufferevent_get_output(c->bev);
	int			 i, n = 0, anth;

	anth = http_find(&c->rq, "anthropic-version") != NULL;
	if ((b = evbuffer_new()) == NULL) {
		client_send_error(c, 500, "server_error", "no_memory",
		    "out of memory");
		return;
	}
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
	evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\nx-request-id: %s\r\n"
	    "%s\r\n", evbuffer_get_length(b), c->reqid,
	    c->keepalive ? "" : "Connection: close\r\n");
	c->out_bytes += (int64_t)(evbuffer_get_length(out) +
	    evbuffer_get_length(b));
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	c->ev.status = 200;
	client_request_done(c);
}
