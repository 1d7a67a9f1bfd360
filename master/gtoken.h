/*
 * gtoken.h - the refresher of the vertex upstreams' OAuth2 access tokens.
 *
 * Owns when each token is fetched again and the short-lived child that
 * fetches one: a JWT for the service account (RS256, OpenSSL) exchanged
 * at the key file's token_uri, the token published in shm/gtokens for
 * every worker.  Called by the master only: gtoken_setup at start and on
 * reload, gtoken_tick from its timer loop, gtoken_reaped from its
 * waitpid loop.  It never blocks the master (the fetch is the child's),
 * and no worker ever fetches a token.  A failure is logged and retried
 * with back-off (1 s doubling to 60 s); the current token stays in use
 * until it expires, so requests fail only then.
 */
#ifndef SLUICE_GTOKEN_H
#define SLUICE_GTOKEN_H

#include <stdint.h>
#include <sys/types.h>

#include "common/config.h"
#include "shm/gtokens.h"

/* The configuration in force (again after a reload): every token is due. */
void	 gtoken_setup(const struct config *cfg, struct gtokens_region *r);
/*
 * Start a refresh that is due at NOW_MS (monotonic ms) if none is under
 * way; the child runs CHILD_INIT first (signals, privileges) and exits.
 * The next due time into *NEXT_MS if earlier (-1: none).
 */
void	 gtoken_tick(int64_t now_ms, int64_t *next_ms,
	    void (*child_init)(void));
/* PID exited with STATUS: 1 if it was the refresher (handled), else 0. */
int	 gtoken_reaped(pid_t pid, int status);

/*
 * The signed JWT assertion for U at NOW (seconds since the epoch) into
 * OUT (CAP bytes): header.claims.signature, base64url.  Its length, or
 * -1 (a key OpenSSL cannot read, too small a buffer).  For the tests too.
 */
long	 gtoken_jwt(const struct cfg_upstream *u, int64_t now, char *out,
	    size_t cap);

#endif
