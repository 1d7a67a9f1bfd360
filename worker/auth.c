/*
 * auth.c - who is calling, and may they: keys, model access, limits.
 *
 * Runs in two steps so that an unknown caller costs as little as possible:
 * at the request head (before the body is read) the secret is hashed and
 * looked up, and the request-rate limit is taken; once the body is parsed,
 * the model is checked against the key's globs and the token and budget
 * limits are read.  After the response, the tokens and cost are added to
 * the key's shared state.  Without keys_file, sluice does not authenticate.
 * A key may name a client certificate (client_cert): then the TLS
 * connection's verified certificate is the caller's identity, alone or
 * with the secret.
 *
 * A budget or token limit is checked before a request and charged after
 * it, so the requests already in flight when a key reaches its limit all
 * finish: the overshoot is bounded by what those requests cost.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "common/keys.h"
#include "shm/keystate.h"
#include "worker/auth.h"

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

static int
refuse(struct auth_verdict *v, int status, const char *type,
    const char *code, int retry_s, const char *fmt, ...)
{
	va_list ap;

	v->status = status;
	v->type = type;
	v->code = code;
	v->retry_after_s = retry_s;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int
auth_check_head(struct worker *w, const struct http_head *rq,
    const struct key_cert_id *peer, const struct key_entry **key,
    struct auth_verdict *v)
{
	const struct keyring	*kr = w->cfg->keys;
	const struct key_entry	*k = NULL;
	struct keystate		*ks;
	const char		*secret;
	size_t			 len = 0;
	uint8_t			 hash[32];
	int64_t			 wait;

	*key = NULL;
	if (kr == NULL)
		return 0;
	if ((secret = find_secret(rq, &len)) != NULL && len > 0) {
		keys_hash_secret(secret, len, hash);
		k = keys_find(kr, hash);
	}
	/* a secret that names no key may be an SDK's placeholder: the
	 * certificate alone may still name one */
	if (k == NULL && peer != NULL)
		k = keys_find_cert(kr, peer);
	if (k == NULL && (secret == NULL || len == 0))
		return refuse(v, 401, "invalid_request_error",
		    "missing_api_key", 0, "You didn't provide an API key. "
		    "Provide it in the Authorization header (Bearer) or "
		    "x-api-key.");
	if (k == NULL)
		return refuse(v, 401, "invalid_request_error",
		    "invalid_api_key", 0, "Incorrect API key provided.");
	*key = k;
	if (k->cert_kind != KEY_CERT_NONE && !keys_cert_match(k, peer))
		return refuse(v, 401, "invalid_request_error",
		    "client_cert_required", 0, "This API key must be used over "
		    "TLS with its client certificate.");
	if (k->disabled)
		return refuse(v, 401, "invalid_request_error", "key_disabled",
		    0, "This API key is disabled.");
	if (k->expires != 0 && time(NULL) >= k->expires)
		return refuse(v, 401, "invalid_request_error", "key_expired",
		    0, "This API key has expired.");
	ks = keystate_at(w->keystate, k->slot);
	if (ks != NULL && k->rpm > 0 &&
	    (wait = ks_rpm_take(ks, k->rpm, ns_now())) != 0)
		return refuse(v, 429, "requests", "rate_limit_exceeded",
		    (int)(wait / 1000000000) + 1,
		    "Rate limit reached for requests per minute.");
	return 0;
}

int
auth_check_body(struct worker *w, const struct key_entry *k,
    const char *model, size_t mlen, struct auth_verdict *v)
{
	struct keystate		*ks;
	int64_t			 wait, left, period, spend;

	if (k == NULL)
		return 0;
	if (!keys_model_allowed(k, model, mlen))
		return refuse(v, 403, "invalid_request_error",
		    "model_not_allowed", 0, "This key may not use the model "
		    "`%.*s`.", (int)mlen, model);
	if ((ks = keystate_at(w->keystate, k->slot)) == NULL)
		return 0;
	if (k->tpm > 0 && (wait = ks_tpm_check(ks, k->tpm, ns_now())) != 0)
		return refuse(v, 429, "tokens", "rate_limit_exceeded",
		    (int)(wait / 1000000000) + 1,
		    "Rate limit reached for tokens per minute.");
	if (k->budget_micro_usd <= 0 || k->budget_period == PERIOD_NONE)
		return 0;
	if (w->keystate != NULL && w->cfg->database[0] != '\0' &&
	    !atomic_load_explicit(&w->keystate->spend_loaded,
	    memory_order_relaxed) && now_us() - w->started_us <
	    BUDGET_LOAD_WAIT_US)
		/*
		 * Right after the first start, the spend of earlier runs is
		 * not loaded yet: admitting now could spend a budget twice.
		 * Wait for the collector, briefly.
		 */
		return refuse(v, 503, "server_error", "budget_loading", 1,
		    "Budgets are being loaded; retry in a second.");
	period = period_of(k->budget_period, &left);
	spend = ks_spend(ks, period);
	if (spend >= k->budget_micro_usd)
		return refuse(v, 429, "insufficient_quota", "budget_exceeded",
		    (int)left, "This key has used its budget of "
		    "$%lld.%06lld per %s.",
		    (long long)(k->budget_micro_usd / 1000000),
		    (long long)(k->budget_micro_usd % 1000000),
		    k->budget_period == PERIOD_DAY ? "day" : "month");
	return 0;
}

void
auth_charge(struct worker *w, const struct key_entry *k,
    const struct usage_event *ev)
{
	struct keystate		*ks;
	int64_t			 tokens = 0;

	if (k == NULL || (ks = keystate_at(w->keystate, k->slot)) == NULL)
		return;
	if (ev->prompt_tokens > 0)
		tokens += ev->prompt_tokens;
	if (ev->completion_tokens > 0)
		tokens += ev->completion_tokens;
	ks_charge(ks, k->tpm, tokens, (int)k->budget_period,
	    ev->cost_micro_usd, ns_now(), time(NULL));
}
