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
 * Token and budget limits are reserved, then settled: once the request is
 * routed, its worst case (the input estimated from the body's bytes, the
 * output its limit allows) is held against the key's tokens per minute
 * and budget, and a request that cannot hold it is refused before
 * anything goes upstream; when it ends, the hold is replaced by what it
 * used.  So a burst of concurrent requests cannot overshoot a budget
 * between them: only a request that uses more than its worst case can.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/keys.h"
#include "shm/keystate.h"
#include "worker/auth.h"
#include "worker/usage.h"

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
    const struct key_entry **key, struct auth_verdict *v)
{
	const struct keyring	*kr = w->cfg->keys;
	const struct key_entry	*k, *t;
	struct keystate		*ks, *ts;
	const char		*secret;
	size_t			 len = 0;
	uint8_t			 hash[32];
	int64_t			 wait;

	*key = NULL;
	if (kr == NULL)
		return 0;
	if ((secret = find_secret(rq, &len)) == NULL || len == 0)
		return refuse(v, 401, "invalid_request_error",
		    "missing_api_key", 0, "You didn't provide an API key. "
		    "Provide it in the Authorization header (Bearer) or "
		    "x-api-key.");
	keys_hash_secret(secret, len, hash);
	if ((k = keys_find(kr, hash)) == NULL)
		return refuse(v, 401, "invalid_request_error",
		    "invalid_api_key", 0, "Incorrect API key provided.");
	*key = k;
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
	if ((t = keys_team(kr, k)) == NULL || t->rpm <= 0 ||
	    (ts = keystate_at(w->keystate, t->slot)) == NULL ||
	    (wait = ks_rpm_take(ts, t->rpm, ns_now())) == 0)
		return 0;
	/* the team refused: the key's request was not made */
	if (ks != NULL && k->rpm > 0)
		ks_rpm_give_back(ks, k->rpm);
	return refuse(v, 429, "requests", "rate_limit_exceeded",
	    (int)(wait / 1000000000) + 1, "Rate limit reached for requests "
	    "per minute of team `%s`.", t->name);
}

int
auth_check_body(struct worker *w, const struct key_entry *k,
    const char *model, size_t mlen, struct auth_verdict *v)
{
	const struct key_entry	*t = keys_team(w->cfg->keys, k);

	if (k == NULL)
		return 0;
	if (!keys_model_allowed(k, model, mlen))
		return refuse(v, 403, "invalid_request_error",
		    "model_not_allowed", 0, "This key may not use the model "
		    "`%.*s`.", (int)mlen, model);
	if (t != NULL && !keys_model_allowed(t, model, mlen))
		return refuse(v, 403, "invalid_request_error",
		    "model_not_allowed", 0, "This key's team `%s` may not use "
		    "the model `%.*s`.", t->name, (int)mlen, model);
	if (keystate_at(w->keystate, k->slot) == NULL)
		return 0;
	if ((k->budget_micro_usd <= 0 || k->budget_period == PERIOD_NONE) &&
	    (t == NULL || t->budget_micro_usd <= 0 ||
	    t->budget_period == PERIOD_NONE))
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
	return 0;
}

/* The money in micro-USD, as $D.DDDDDD. */
#define USD(m)	(long long)((m) / 1000000), (long long)((m) % 1000000)

/*
 * Hold the worst case against one level's limits (E: the key, or its
 * team, named in messages by WHO: "key" or "team `eng`").
 */
static int
hold_level(struct worker *w, const struct key_entry *e, const char *who,
    const struct cfg_price *price, int64_t in_tokens, int64_t out_tokens,
    struct ks_hold *hold, struct auth_verdict *v)
{
	struct keystate		*ks;
	int64_t			 wait, left, period, spend, worst, room;

	memset(hold, 0, sizeof(*hold));
	if ((ks = keystate_at(w->keystate, e->slot)) == NULL)
		return 0;
	if (e->tpm > 0) {
		if ((wait = ks_tpm_hold(ks, e->tpm, in_tokens + out_tokens,
		    ns_now())) != 0)
			return refuse(v, 429, "tokens", "rate_limit_exceeded",
			    (int)(wait / 1000000000) + 1, "Rate limit reached "
			    "for tokens per minute of this %s: this request "
			    "may use %lld tokens (%lld input estimated, %lld "
			    "output at most).", who,
			    (long long)(in_tokens + out_tokens),
			    (long long)in_tokens, (long long)out_tokens);
		hold->tokens = in_tokens + out_tokens;
	}
	if (e->budget_micro_usd <= 0 || e->budget_period == PERIOD_NONE)
		return 0;
	period = period_of(e->budget_period, &left);
	/* unpriced: no cost to hold, but a used budget still refuses */
	worst = price != NULL ? usage_cost(price, in_tokens, 0, 0, 0,
	    out_tokens) : 0;
	if (ks_budget_hold(ks, period, e->budget_micro_usd, worst) == 0) {
		hold->micro_usd = worst;
		return 0;
	}
	/* give back the tokens booked above: nothing goes upstream */
	ks_charge(ks, hold, e->tpm, 0, 0, 0, ns_now(), time(NULL));
	hold->tokens = 0;
	spend = ks_spend(ks, period);
	if (spend >= e->budget_micro_usd || worst == 0)
		return refuse(v, 429, "insufficient_quota", "budget_exceeded",
		    (int)left, "This %s has used its budget of "
		    "$%lld.%06lld per %s.", who, USD(e->budget_micro_usd),
		    e->budget_period == PERIOD_DAY ? "day" : "month");
	room = e->budget_micro_usd - spend - ks_held(ks);
	return refuse(v, 429, "insufficient_quota", "budget_exceeded", 1,
	    "This request may cost up to $%lld.%06lld (%lld input tokens "
	    "estimated, %lld output tokens at most), more than the "
	    "$%lld.%06lld left of this %s's budget with the requests under "
	    "way; lower max_tokens, or retry when they are done.",
	    USD(worst), (long long)in_tokens, (long long)out_tokens,
	    USD(room > 0 ? room : 0), who);
}

/* The request's charge to one level, in place of what it held there. */
static void
charge_level(struct worker *w, const struct key_entry *e,
    const struct ks_hold *hold, const struct usage_event *ev)
{
	struct keystate		*ks;
	int64_t			 tokens = 0;

	if ((ks = keystate_at(w->keystate, e->slot)) == NULL)
		return;
	if (ev->prompt_tokens > 0)
		tokens += ev->prompt_tokens;
	if (ev->completion_tokens > 0)
		tokens += ev->completion_tokens;
	ks_charge(ks, hold, e->tpm, tokens, (int)e->budget_period,
	    ev->cost_micro_usd, ns_now(), time(NULL));
}

int
auth_hold(struct worker *w, const struct key_entry *k,
    const struct cfg_price *price, int64_t in_tokens, int64_t out_tokens,
    struct auth_holds *h, struct auth_verdict *v)
{
	const struct key_entry	*t = keys_team(w->cfg->keys, k);
	struct usage_event	 none;
	char			 who[TEAM_NAME_MAX + 8];

	memset(h, 0, sizeof(*h));
	if (k == NULL)
		return 0;
	if (hold_level(w, k, "key", price, in_tokens, out_tokens, &h->key,
	    v) == -1)
		return -1;
	if (t == NULL)
		return 0;
	snprintf(who, sizeof(who), "team `%s`", t->name);
	if (hold_level(w, t, who, price, in_tokens, out_tokens, &h->team,
	    v) == 0)
		return 0;
	/* the team refused: what the key held goes back, unused */
	memset(&none, 0, sizeof(none));
	charge_level(w, k, &h->key, &none);
	memset(h, 0, sizeof(*h));
	return -1;
}

void
auth_charge(struct worker *w, const struct key_entry *k,
    const struct auth_holds *h, const struct usage_event *ev)
{
	const struct key_entry *t;

	if (k == NULL)
		return;
	charge_level(w, k, h != NULL ? &h->key : NULL, ev);
	if ((t = keys_team(w->cfg->keys, k)) != NULL)
		charge_level(w, t, h != NULL ? &h->team : NULL, ev);
}
