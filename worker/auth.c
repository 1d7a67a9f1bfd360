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
#include "shm/userstate.h"
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

/*
 * limits shared: the refusal for a take of this host's lease that failed
 * with R.  No lease for the window yet (the collector is leasing, or has
 * not reached PostgreSQL since the start): 503, retry in a second.
 */
static int
lease_refused(struct auth_verdict *v, int r, const char *type,
    const char *code, int retry_s, const char *what)
{
	if (r == LEASE_NONE)
		return refuse(v, 503, "server_error", "limits_loading", 1,
		    "Limits shared across hosts are being leased; retry in a "
		    "second.");
	return refuse(v, 429, type, code, retry_s, "%s", what);
}

/* Seconds to the next UTC minute, when the shared windows turn. */
static int
minute_left(int64_t wall)
{
	return (int)(60 - (wall / 1000000) % 60);
}

/*
 * One request of the RPM per minute of KS (a key's, or TEAM's): the
 * host's limit, then with limits shared this host's lease of the minute.
 */
static int
rpm_take(struct worker *w, struct keystate *ks, int64_t rpm,
    const char *team, struct auth_verdict *v)
{
	int64_t	 wait, wall;
	char	 msg[160];
	int	 r, retry_s;

	if ((wait = ks_rpm_take(ks, rpm, ns_now())) != 0) {
		r = LEASE_EMPTY;
		retry_s = (int)(wait / 1000000000) + 1;
	} else if (!w->cfg->limits_shared)
		return 0;
	else {
		wall = wall_us();
		if ((r = lease_take(&ks->lease[LEASE_RPM], lease_minute(wall),
		    1, wall / 1000)) == LEASE_OK)
			return 0;
		ks_rpm_give_back(ks, rpm);
		retry_s = minute_left(wall);
	}
	/* refused: only now is the message worth making */
	if (team != NULL)
		snprintf(msg, sizeof(msg), "Rate limit reached for requests "
		    "per minute of team `%s`.", team);
	else
		snprintf(msg, sizeof(msg), "Rate limit reached for requests "
		    "per minute.");
	return lease_refused(v, r, "requests", "rate_limit_exceeded", retry_s,
	    msg);
}

int
auth_check_head(struct worker *w, const struct http_head *rq,
    const struct key_cert_id *peer, const struct key_entry **key,
    struct auth_verdict *v)
{
	const struct keyring	*kr = w->cfg->keys;
	const struct key_entry	*k = NULL, *t;
	struct keystate		*ks, *ts;
	const char		*secret;
	size_t			 len = 0;
	uint8_t			 hash[32];

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
	if (ks != NULL && k->rpm > 0 && rpm_take(w, ks, k->rpm, NULL, v) == -1)
		return -1;
	if ((t = keys_team(kr, k)) == NULL || t->rpm <= 0 ||
	    (ts = keystate_at(w->keystate, t->slot)) == NULL ||
	    rpm_take(w, ts, t->rpm, t->name, v) == 0)
		return 0;
	/* the team refused: the key's request was not made */
	if (ks != NULL && k->rpm > 0) {
		ks_rpm_give_back(ks, k->rpm);
		if (w->cfg->limits_shared)
			lease_settle(&ks->lease[LEASE_RPM],
			    lease_minute(wall_us()), -1);
	}
	return -1;
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
	    t->budget_period == PERIOD_NONE) && k->user_budget_micro_usd <= 0)
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

/* One level of limits a request must pass: its key, team or end user. */
struct level {
	struct keystate	*ks;		/* NULL: nothing to hold or charge */
	int64_t		 tpm;		/* 0 = none */
	int64_t		 budget;	/* micro-USD, 0 = none */
	enum key_period	 period;
	const char	*kind;		/* in messages: "key", "team", ... */
	const char	*name;		/* NULL: the kind alone says it */
	int		 shared;	/* limits shared: take from leases */
};

/* "key", "team `eng`", "end user": who refused, for a message. */
static const char *
who(const struct level *l, char *buf, size_t size)
{
	if (l->name == NULL)
		return l->kind;
	snprintf(buf, size, "%s `%s`", l->kind, l->name);
	return buf;
}

static void
level_of(struct worker *w, const struct key_entry *e, const char *kind,
    struct level *l)
{
	memset(l, 0, sizeof(*l));
	if (e == NULL)
		return;
	l->ks = keystate_at(w->keystate, e->slot);
	l->tpm = e->tpm;
	l->budget = e->budget_period != PERIOD_NONE ? e->budget_micro_usd : 0;
	l->period = e->budget_period;
	l->kind = kind;
	l->name = strcmp(kind, "key") != 0 ? e->name : NULL;
	l->shared = w->cfg->limits_shared;
}

/* The end user's level of key K, claiming its slot (NULL ks: none). */
static int
user_level(struct worker *w, const struct key_entry *k, const char *user,
    struct level *l, struct auth_verdict *v)
{
	memset(l, 0, sizeof(*l));
	if (k->user_budget_micro_usd <= 0 || k->user_budget_period ==
	    PERIOD_NONE || user == NULL || *user == '\0' || w->users == NULL)
		return 0;
	l->ks = userstate_get(w->users, userstate_tag(k->name, user),
	    (int)k->user_budget_period, time(NULL));
	if (l->ks == NULL)
		return refuse(v, 503, "server_error", "end_users_full", 1,
		    "Too many end users with a budget at once; retry later.");
	l->budget = k->user_budget_micro_usd;
	l->period = k->user_budget_period;
	l->kind = "end user";
	return 0;
}

/* Hold the worst case against one level's limits. */
static int
hold_level(const struct level *l, const struct cfg_price *price,
    int64_t in_tokens, int64_t out_tokens, struct ks_hold *hold,
    struct auth_verdict *v)
{
	int64_t	 wait, left, period, spend, worst, room;
	int64_t	 wall = l->shared ? wall_us() : 0;
	char	 wb[TEAM_NAME_MAX + 16], msg[256];
	int	 r;

	memset(hold, 0, sizeof(*hold));
	if (l->ks == NULL)
		return 0;
	if (l->tpm > 0) {
		if ((wait = ks_tpm_hold(l->ks, l->tpm, in_tokens + out_tokens,
		    ns_now())) != 0)
			return refuse(v, 429, "tokens", "rate_limit_exceeded",
			    (int)(wait / 1000000000) + 1, "Rate limit reached "
			    "for tokens per minute of this %s: this request "
			    "may use %lld tokens (%lld input estimated, %lld "
			    "output at most).", who(l, wb, sizeof(wb)),
			    (long long)(in_tokens + out_tokens),
			    (long long)in_tokens, (long long)out_tokens);
		hold->tokens = in_tokens + out_tokens;
		if (l->shared && (r = lease_take(&l->ks->lease[LEASE_TPM],
		    lease_minute(wall), hold->tokens, wall / 1000)) !=
		    LEASE_OK) {
			ks_charge(l->ks, hold, l->tpm, 0, 0, 0, ns_now(),
			    time(NULL));
			hold->tokens = 0;
			snprintf(msg, sizeof(msg), "Rate limit reached for "
			    "tokens per minute of this %s across hosts: this "
			    "request may use %lld tokens.", who(l, wb,
			    sizeof(wb)), (long long)(in_tokens + out_tokens));
			return lease_refused(v, r, "tokens",
			    "rate_limit_exceeded", minute_left(wall), msg);
		}
		if (l->shared)
			hold->tpm_win = lease_minute(wall);
	}
	if (l->budget <= 0)
		return 0;
	period = period_of(l->period, &left);
	/* unpriced: no cost to hold, but a used budget still refuses */
	worst = price != NULL ? usage_cost(price, in_tokens, 0, 0, 0,
	    out_tokens) : 0;
	if (ks_budget_hold(l->ks, period, l->budget, worst) == 0) {
		hold->micro_usd = worst;
		if (!l->shared || (r = lease_take(&l->ks->lease[LEASE_BUDGET],
		    period, worst, wall / 1000)) == LEASE_OK) {
			hold->budget_win = l->shared ? period : 0;
			return 0;
		}
		/* this host's lease of the budget cannot hold it: give back */
		ks_charge(l->ks, hold, l->tpm, 0, 0, 0, ns_now(), time(NULL));
		memset(hold, 0, sizeof(*hold));
		snprintf(msg, sizeof(msg), "This %s's budget of $%lld.%06lld "
		    "per %s is used, across hosts, up to less than this "
		    "request may cost ($%lld.%06lld).", who(l, wb, sizeof(wb)),
		    USD(l->budget), l->period == PERIOD_DAY ? "day" : "month",
		    USD(worst));
		return lease_refused(v, r, "insufficient_quota",
		    "budget_exceeded", 1, msg);
	}
	/* give back the tokens booked above: nothing goes upstream */
	ks_charge(l->ks, hold, l->tpm, 0, 0, 0, ns_now(), time(NULL));
	hold->tokens = 0;
	spend = ks_spend(l->ks, period);
	if (spend >= l->budget || worst == 0)
		return refuse(v, 429, "insufficient_quota", "budget_exceeded",
		    (int)left, "This %s has used its budget of "
		    "$%lld.%06lld per %s.", who(l, wb, sizeof(wb)), USD(l->budget),
		    l->period == PERIOD_DAY ? "day" : "month");
	room = l->budget - spend - ks_held(l->ks);
	return refuse(v, 429, "insufficient_quota", "budget_exceeded", 1,
	    "This request may cost up to $%lld.%06lld (%lld input tokens "
	    "estimated, %lld output tokens at most), more than the "
	    "$%lld.%06lld left of this %s's budget with the requests under "
	    "way; lower max_tokens, or retry when they are done.",
	    USD(worst), (long long)in_tokens, (long long)out_tokens,
	    USD(room > 0 ? room : 0), who(l, wb, sizeof(wb)));
}

/* The request's charge to one level, in place of what it held there. */
static void
charge_level(const struct level *l, const struct ks_hold *hold,
    const struct usage_event *ev)
{
	int64_t	 tokens = 0;

	if (l->ks == NULL)
		return;
	if (ev->prompt_tokens > 0)
		tokens += ev->prompt_tokens;
	if (ev->completion_tokens > 0)
		tokens += ev->completion_tokens;
	ks_charge(l->ks, hold, l->tpm, tokens, l->budget > 0 ? (int)l->period :
	    0, ev->cost_micro_usd, ns_now(), time(NULL));
}

int
auth_hold(struct worker *w, const struct key_entry *k,
    const struct cfg_price *price, int64_t in_tokens, int64_t out_tokens,
    const char *end_user, struct auth_holds *h, struct auth_verdict *v)
{
	struct level		 l[3];
	struct ks_hold		*held[3];
	struct usage_event	 none;
	int			 i, n;

	memset(h, 0, sizeof(*h));
	if (k == NULL)
		return 0;
	held[0] = &h->key;
	held[1] = &h->team;
	held[2] = &h->user;
	level_of(w, k, "key", &l[0]);
	level_of(w, keys_team(w->cfg->keys, k), "team", &l[1]);
	if (user_level(w, k, end_user, &l[2], v) == -1)
		return -1;
	for (n = 0; n < 3; n++)
		if (hold_level(&l[n], price, in_tokens, out_tokens, held[n],
		    v) == -1)
			break;
	if (n == 3) {
		h->user_ks = l[2].ks;
		return 0;
	}
	/* a level refused: what the others held goes back, unused */
	memset(&none, 0, sizeof(none));
	for (i = 0; i < n; i++)
		charge_level(&l[i], held[i], &none);
	memset(h, 0, sizeof(*h));
	return -1;
}

void
auth_charge(struct worker *w, const struct key_entry *k,
    const struct auth_holds *h, const struct usage_event *ev)
{
	struct level	 l;

	if (k == NULL)
		return;
	level_of(w, k, "key", &l);
	charge_level(&l, h != NULL ? &h->key : NULL, ev);
	level_of(w, keys_team(w->cfg->keys, k), "team", &l);
	charge_level(&l, h != NULL ? &h->team : NULL, ev);
	if (h == NULL || h->user_ks == NULL)
		return;
	memset(&l, 0, sizeof(l));
	l.ks = h->user_ks;
	l.budget = k->user_budget_micro_usd;
	l.period = k->user_budget_period;
	charge_level(&l, &h->user, ev);
}
