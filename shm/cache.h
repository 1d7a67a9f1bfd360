/*
 * cache.h - the answer cache arena: exact-match entries in shared memory,
 * read and written by every worker.
 *
 * The arena is its own anonymous shared mapping (not a region of the
 * segment), made by the master before it forks a generation of workers,
 * so that a reload can keep it, or replace it when its size changes,
 * without moving anything else.  It is set-associative: an entry's key
 * (32 bytes, a SHA-256 the caller computed) picks a set of CACHE_WAYS
 * fixed-size slots, and the entry lives in one of them; within a set the
 * victim is chosen by CLOCK (a reference bit, a hand).
 *
 * Each slot has one state word (a sequence number and FREE, WRITING or
 * READY), kept with its expiry, CLOCK bit and a tag of its key in its
 * set's index, four lines for the set's eight slots, so that a lookup
 * touches no slot but the one it finds.  A writer claims a slot by CAS, fills it, and publishes it
 * READY with a release store; a reader copies an entry out and keeps
 * the copy only if the word did not change meanwhile (a seqlock).  A
 * writer killed at any point leaves its slot WRITING, which no reader
 * reads; the next writer of the set takes it back once its writer is
 * gone or the claim is stale.
 *
 * Workers look up and store; the master creates, replaces, flushes and
 * destroys.  shm/ knows nothing of HTTP: the bytes stored are opaque,
 * and callers pass the clock (monotonic microseconds) and their pid.
 */
#ifndef SLUICE_CACHE_H
#define SLUICE_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CACHE_KEY_LEN		32	/* bytes of a key: a SHA-256 */
#define CACHE_WAYS		8	/* slots a key may live in */
#define CACHE_OWNER_MAX		64	/* the key name that stored it, NUL */
#define CACHE_ENTRY_MIN		1024	/* smallest cache_max_entry */
/* A claim older than this is taken back even if its writer lives. */
#define CACHE_WRITE_STALE_US	(15LL * 60 * 1000000)

struct cache_arena;
struct cache_slot;

/* The counters, summed over every worker since the arena was made. */
struct cache_stats {
	uint64_t	 hits;
	uint64_t	 misses;
	uint64_t	 stores;	/* entries committed */
	uint64_t	 evictions;	/* live entries pushed out */
	uint64_t	 too_big;	/* answers over the entry bound */
	uint64_t	 busy;		/* not stored: key or set being written */
	uint64_t	 entries;	/* READY slots now (a scan) */
	uint64_t	 slots;
};

/* A hit: the entry's bytes, valid while cache_get_still() says so. */
struct cache_view {
	const uint8_t	*data;
	size_t		 len;
	const _Atomic uint64_t *word_at;	/* the slot's state word */
	uint64_t	 word;
};

/* A store under way: from cache_put_begin (or _defer) to commit or abort. */
struct cache_put {
	struct cache_arena *a;
	struct cache_slot *slot;	/* NULL: nothing claimed */
	int		 deferred;	/* claim at the first append */
	uint8_t		 key[CACHE_KEY_LEN];
	const char	*owner;
	pid_t		 pid;
	int64_t		 now;
	size_t		 head;		/* zeroed bytes the entry starts with */
	_Atomic uint64_t *word_at;	/* where the slot's state word is */
	_Atomic int64_t	*expires_at;
	uint64_t	 word;		/* the claim's state word */
	uint64_t	 flush_gen;	/* a flush meanwhile: not committed */
	size_t		 len;
	int		 too_big;
};

/*
 * Map an arena of about BYTES (at least CACHE_WAYS slots) whose entries
 * hold at most ENTRY_MAX bytes.  NULL with errno: EINVAL if it cannot
 * hold one set or ENTRY_MAX < CACHE_ENTRY_MIN, ENOMEM from mmap.
 */
struct cache_arena *cache_create(size_t bytes, size_t entry_max);
void		 cache_destroy(struct cache_arena *);
size_t		 cache_bytes(const struct cache_arena *);	/* asked for */
size_t		 cache_entry_max(const struct cache_arena *);
uint32_t	 cache_nslots(const struct cache_arena *);

/*
 * Look KEY up at NOW: 1 with *V filled (the entry is fresh), 0 a miss,
 * counted.  Copy V->data out, then call cache_get_still(V): only a 1
 * there makes the copy good, and the caller counts it with
 * cache_count_hit (or cache_count_miss when it was not).
 */
int		 cache_get(struct cache_arena *, const uint8_t *key,
		    int64_t now, struct cache_view *v);
int		 cache_get_still(const struct cache_view *);
void		 cache_count_hit(struct cache_arena *);
void		 cache_count_miss(struct cache_arena *);

/*
 * Claim a slot for KEY, stored by OWNER (a key name, may be ""), from
 * process PID at NOW.  0 claimed (P filled), -1 not stored: another
 * writer has this key, or every slot of its set is being written.
 */
int		 cache_put_begin(struct cache_arena *, const uint8_t *key,
		    const char *owner, pid_t pid, int64_t now,
		    struct cache_put *p);
/*
 * The same, but the slot is claimed only by the first cache_put_append,
 * and the entry then starts with HEAD zeroed bytes (a header the caller
 * patches through cache_put_bytes).  A store that ends without an append
 * (an answer that is not kept) so never takes a slot, nor evicts a live
 * entry for nothing.  OWNER must outlive the store.
 */
void		 cache_put_defer(struct cache_arena *, const uint8_t *key,
		    const char *owner, pid_t pid, int64_t now, size_t head,
		    struct cache_put *p);
/* Add N bytes; -1 once the entry is over the bound (it will not be
 * stored; the caller keeps relaying), or a deferred claim failed. */
int		 cache_put_append(struct cache_put *, const void *, size_t n);
/* The bytes appended so far, to patch a header the caller reserved at
 * the start once it knows it (NULL: nothing claimed, or not yet). */
void		*cache_put_bytes(struct cache_put *);
/* Publish the entry, fresh until EXPIRES (monotonic us); 0, or -1 if it
 * was too big or a flush came meanwhile (then it is dropped). */
int		 cache_put_commit(struct cache_put *, int64_t expires);
void		 cache_put_abort(struct cache_put *);

/* Drop every entry (OWNER NULL) or those OWNER stored; writes under way
 * are not committed.  The entries dropped. */
uint64_t	 cache_flush(struct cache_arena *, const char *owner);
void		 cache_stats(struct cache_arena *, struct cache_stats *);

#endif
