/*
 * lease.h - the share of a limit this host holds, leased from the
 * PostgreSQL every host shares (limits shared): what the collector was
 * granted for a window, and what the workers took of it.
 *
 * Embedded in each key's state (keystate.h), one per limit kind.  The
 * collector (sql/lease.c) is the only writer of a window and its grant;
 * workers only take from it and settle, with atomics: the request path
 * never waits for the network.  Two windows per kind, by the window's
 * parity, so that the collector can lease the next minute before the
 * current one ends.  Knows nothing of keys, HTTP or SQL: callers pass
 * windows and amounts.
 */
#ifndef SLUICE_LEASE_H
#define SLUICE_LEASE_H

#include <stdatomic.h>
#include <stdint.h>

enum lease_kind {
	LEASE_RPM,		/* requests, per UTC minute */
	LEASE_TPM,		/* tokens, per UTC minute */
	LEASE_BUDGET,		/* micro-USD, per budget period */
	LEASE_KINDS
};

/* One window's grant.  WIN 0: none yet. */
struct lease_win {
	_Atomic int64_t	 win;		/* minute or period id, collector */
	_Atomic int64_t	 granted;	/* units this host may use, in all */
	_Atomic int64_t	 used;		/* units taken, workers */
	int64_t		 reported;	/* used, as last sent; collector's */
};

struct ks_lease {
	struct lease_win w[2];		/* by window parity */
	_Atomic int64_t	 expires_ms;	/* wall clock; past it, no taking */
	_Atomic int64_t	 need;		/* a refused take's units: ask for
					   at least that much; workers */
};

/* The UTC minute of a wall clock in microseconds: rpm and tpm windows. */
int64_t	 lease_minute(int64_t wall_us);

/* What lease_take answers. */
#define LEASE_OK	 0
#define LEASE_EMPTY	-1	/* this host's share of the window is used */
#define LEASE_NONE	-2	/* no grant for the window (yet), or expired */

/*
 * Take N units of window WIN at wall clock NOW_MS: LEASE_OK, or nothing
 * taken.  Lock-free: a fetch-add on used, undone if it went past the
 * grant, so concurrent takers never take more than granted between them.
 * A take refused for want of units leaves N as the lease's need.  N 0 takes nothing and is refused only once the share is all used.
 */
int	 lease_take(struct ks_lease *, int64_t win, int64_t n, int64_t now_ms);
/*
 * Settle a take of window WIN by DELTA units (what the request used less
 * what it took; negative gives back).  Nothing if the window moved on.
 */
void	 lease_settle(struct ks_lease *, int64_t win, int64_t delta);
/*
 * Collector: the grant for WIN is GRANTED in all, valid until
 * EXPIRES_MS.  A window new to this slot starts at USED (what PostgreSQL
 * counts this host as having used of it) and replaces the slot's old one.
 */
void	 lease_grant(struct ks_lease *, int64_t win, int64_t granted,
	    int64_t used, int64_t expires_ms);
/* The slot of WIN, or NULL if it holds another window. */
struct lease_win *lease_slot(struct ks_lease *, int64_t win);

#endif
