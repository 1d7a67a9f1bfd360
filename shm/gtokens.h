/*
 * gtokens.h - the OAuth2 access tokens of the vertex upstreams, in the
 * shared segment, so that no worker ever fetches one in the request path.
 *
 * One writer at a time: the master's short-lived refresher child
 * (master/gtoken.c) publishes each token it gets; the master forks the
 * next one only after the last has exited.  Workers read the token of
 * their upstream by its slot (the upstream's index among the vertex
 * upstreams, in configuration order) and check its expiry themselves.
 * Each slot is seqlocked: a reader never sees a token half rewritten.
 * shm/ knows no HTTP: a token is bytes with an expiry time.
 */
#ifndef SLUICE_GTOKENS_H
#define SLUICE_GTOKENS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define GTOKENS_SLOTS	8		/* vertex upstreams, at most */
#define GTOKEN_MAX	2048		/* bytes of a token, with its NUL */

struct gtoken_slot {
	_Alignas(64) _Atomic uint64_t seq;	/* odd while being written */
	_Atomic int64_t	 expires_wall_us;	/* 0: none yet */
	_Atomic uint64_t refreshes;		/* tokens published */
	_Atomic uint64_t failures;		/* refreshes that failed */
	_Atomic uint64_t w[GTOKEN_MAX / 8];	/* the token, NUL ended */
};

struct gtokens_region {
	struct gtoken_slot slot[GTOKENS_SLOTS];
};

size_t	 gtokens_size(void);
void	 gtokens_init(struct gtokens_region *);
/* The refresher: TOKEN (shorter than GTOKEN_MAX) is slot I's until
 * EXPIRES_WALL_US.  -1 if I or TOKEN does not fit. */
int	 gtokens_publish(struct gtokens_region *, int i, const char *token,
	    int64_t expires_wall_us);
/* The refresher: a refresh of slot I failed (counted beside the
 * refreshes, in the slot; nothing shows them yet). */
void	 gtokens_failed(struct gtokens_region *, int i);
/*
 * Workers: slot I's token copied into OUT (GTOKEN_MAX), if it is still
 * valid at NOW_WALL_US.  Its expiry, or 0 when there is none or it has
 * expired.
 */
int64_t	 gtokens_get(const struct gtokens_region *, int i, int64_t now_wall_us,
	    char *out);
/* The master: slot I's expiry (0 none), to time the next refresh. */
int64_t	 gtokens_expiry(const struct gtokens_region *, int i);

#endif
