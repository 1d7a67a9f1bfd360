/*
 * auth.h - who is calling, and may they (layer 1): keys, model access,
 * rate limits and budgets.
 *
 * Called by the pipeline (layer 3).  Returns verdicts and never answers
 * a client itself: a refusal fills a struct auth_verdict that the caller
 * turns into its error reply.  Knows struct worker (the key state in
 * shm/), never a client or a request.
 *
 * Contract with the collector's spend sync: auth_charge must run after
 * the request's usage event was pushed to the ring (meter_push), so that
 * spend loaded from PostgreSQL never misses a charge this worker made.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stddef.h>

#include "common/event.h"
#include "shm/keystate.h"
#include "worker/http.h"
#include "worker/wctx.h"

struct cfg_price;
struct key_entry;
struct key_cert_id;

/* What a request holds of its key's, its team's and its end user's
 * limits (USER_KS: the end user's state, NULL without one). */
struct auth_holds {
	struct ks_hold	 key;
	struct ks_hold	 team;
	struct ks_hold	 user;
	struct keystate	*user_ks;
};

struct auth_verdict {
	int		 status;	/* 401, 403, 429 or 503 */
	const char	*type;		/* OpenAI's error type */
	const char	*code;		/* error code, the row's error class */
	int		 retry_after_s;	/* > 0: send Retry-After */
	char		 msg[256];
};

/*
 * At the request head: the caller's key (*KEY, also when it is refused,
 * so the row names it) and its request-rate limit.  The key is the one
 * the presented secret names; failing that, the one PEER (the verified
 * client certificate of the connection, or NULL) authenticates alone.  A
 * key whose client_cert is set is refused without that certificate.  0
 * admitted, -1 refused (V filled).  Without keys_file everyone is
 * admitted with *KEY = NULL.
 */
int	 auth_check_head(struct worker *, const struct http_head *,
	    const struct key_cert_id *peer, const struct key_entry **key,
	    struct auth_verdict *v);
/* Once the body is read: the model (decoded), and whether budgets are
 * loaded.  0 admitted, -1 refused (V filled). */
int	 auth_check_body(struct worker *, const struct key_entry *,
	    const char *model, size_t len, struct auth_verdict *v);
/*
 * Once the request is routed: hold its worst case, IN_TOKENS estimated
 * and OUT_TOKENS at most at PRICE (NULL: unpriced), against the tokens
 * per minute and budget of the key, of its team, and of END_USER when
 * the key has an end_user_budget.  0 held (*HOLDS,
 * zero without limits), -1 refused (V filled, saying which level, nothing
 * held).  Every hold is given back by auth_charge exactly once.
 */
int	 auth_hold(struct worker *, const struct key_entry *,
	    const struct cfg_price *price, int64_t in_tokens,
	    int64_t out_tokens, const char *end_user, struct auth_holds *,
	    struct auth_verdict *v);
/* The request is metered: its tokens and cost replace what it held, at
 * the key and at its team (HOLDS NULL: it held nothing). */
void	 auth_charge(struct worker *, const struct key_entry *,
	    const struct auth_holds *, const struct usage_event *);

#endif
