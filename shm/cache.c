/*
 * cache.c - the answer cache arena.
 *
 * Why fixed slots in sets: no allocator lives in shared memory, so a
 * worker killed in the middle of a store cannot leave a free list or an
 * index half-updated; the only thing it can leave is one slot marked
 * WRITING, which readers skip and the next writer of that set takes back.
 * The price is space: an entry takes a whole slot (cache_max_entry
 * bytes), however small.
 *
 * The state word: bits 0-1 the state, the rest a sequence number that
 * every change of state advances, so a reader that saw READY with
 * sequence s and sees the same word after its copy knows no writer
 * touched the slot in between (writers claim by CAS before they write).
 *
 * Two writers of one key: each claims a slot, writes its key, then (after
 * a full fence) looks at the set again; one that finds the key in another
 * slot gives its own up.  At least one of them sees the other, so the
 * set ends with at most one entry for the key (or, rarely, none).
 */
#include <sys/mman.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shm/cache.h"

#define ST_FREE		0
#define ST_WRITING	1
#define ST_READY	2
#define ST_MASK		3
#define SEQ_ONE		4

#define WORD(seq, st)	(((seq) & ~(uint64_t)ST_MASK) | (st))
#define NEXT(w, st)	WORD((w) + SEQ_ONE, (st))
#define STATE(w)	((w) & ST_MASK)

struct cache_slot {
	_Atomic uint64_t word;
	_Atomic uint8_t	 ref;		/* CLOCK: read since the hand passed */
	uint32_t	 len;
	int32_t		 pid;		/* the writer, while WRITING */
	int64_t		 claimed;	/* when it was claimed (us) */
	int64_t		 expires;	/* fresh until (us) */
	uint8_t		 key[CACHE_KEY_LEN];
	char		 owner[CACHE_OWNER_MAX];
	_Alignas(64) uint8_t data[];
};

struct cache_arena {
	size_t		 mapped;
	size_t		 bytes;
	size_t		 entry_max;
	size_t		 stride;
	uint32_t	 nslots;
	uint32_t	 nsets;
	_Alignas(64) _Atomic uint64_t flush_gen;
	_Alignas(64) _Atomic uint64_t hits;
	_Atomic uint64_t misses, stores, evictions, too_big, busy;
	_Alignas(64) _Atomic uint32_t hand[];	/* one per set */
};

static size_t
roundup64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static size_t
slots_off(uint32_t nsets)
{
	return roundup64(sizeof(struct cache_arena) +
	    (size_t)nsets * sizeof(_Atomic uint32_t));
}

static struct cache_slot *
slot_at(const struct cache_arena *a, uint32_t i)
{
	return (struct cache_slot *)(void *)((char *)(uintptr_t)a +
	    slots_off(a->nsets) + (size_t)i * a->stride);
}

static uint32_t
set_of(const struct cache_arena *a, const uint8_t *key)
{
	uint64_t	 h;

	memcpy(&h, key, sizeof(h));
	return (uint32_t)(h % a->nsets);
}

struct cache_arena *
cache_create(size_t bytes, size_t entry_max)
{
	struct cache_arena	*a;
	size_t			 stride, nsets, mapped;
	void			*p;

	if (entry_max < CACHE_ENTRY_MIN || entry_max > UINT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	stride = roundup64(sizeof(struct cache_slot) + entry_max);
	nsets = bytes / stride / CACHE_WAYS;
	if (nsets == 0 || nsets > UINT32_MAX / CACHE_WAYS) {
		errno = EINVAL;
		return NULL;
	}
	mapped = slots_off((uint32_t)nsets) + nsets * CACHE_WAYS * stride;
	/*
	 * Populated now, in the master: a shared page is zeroed at its first
	 * touch, and that would be a miss's store, on the request path.
	 */
	p = mmap(NULL, mapped, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* the mapping is zeroed: every slot FREE, every counter 0 */
	a = p;
	a->mapped = mapped;
	a->bytes = bytes;
	a->entry_max = entry_max;
	a->stride = stride;
	a->nsets = (uint32_t)nsets;
	a->nslots = (uint32_t)nsets * CACHE_WAYS;
	return a;
}

void
cache_destroy(struct cache_arena *a)
{
	if (a != NULL)
		(void)munmap(a, a->mapped);
}

size_t
cache_bytes(const struct cache_arena *a)
{
	return a->bytes;
}

size_t
cache_entry_max(const struct cache_arena *a)
{
	return a->entry_max;
}

uint32_t
cache_nslots(const struct cache_arena *a)
{
	return a->nslots;
}

static void
count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

int
cache_get(struct cache_arena *a, const uint8_t *key, int64_t now,
    struct cache_view *v)
{
	struct cache_slot	*s;
	uint32_t		 base = set_of(a, key) * CACHE_WAYS, i;
	uint64_t		 w;

	for (i = 0; i < CACHE_WAYS; i++) {
		s = slot_at(a, base + i);
		w = atomic_load_explicit(&s->word, memory_order_acquire);
		if (STATE(w) != ST_READY ||
		    memcmp(s->key, key, CACHE_KEY_LEN) != 0 ||
		    s->expires <= now || s->len > a->entry_max)
			continue;
		/* a write only when it changes: readers share the line */
		if (atomic_load_explicit(&s->ref, memory_order_relaxed) == 0)
			atomic_store_explicit(&s->ref, 1,
			    memory_order_relaxed);
		v->data = s->data;
		v->len = s->len;
		v->slot = s;
		v->word = w;
		if (atomic_load_explicit(&s->word, memory_order_acquire) != w)
			continue;	/* changed while we read its header */
		return 1;
	}
	count(&a->misses);
	return 0;
}

int
cache_get_still(const struct cache_view *v)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&v->slot->word, memory_order_relaxed) ==
	    v->word;
}

void
cache_count_hit(struct cache_arena *a)
{
	count(&a->hits);
}

void
cache_count_miss(struct cache_arena *a)
{
	count(&a->misses);
}

/* A WRITING slot whose writer is gone or has held it too long. */
static int
claim_dead(const struct cache_slot *s, int64_t now)
{
	if (now - s->claimed > CACHE_WRITE_STALE_US)
		return 1;
	return s->pid <= 0 || (kill(s->pid, 0) == -1 && errno == ESRCH);
}

/*
 * The slot of set BASE to claim for KEY, and its word in *W: a FREE one,
 * else an expired or abandoned one, else the CLOCK victim (*EVICT = 1).
 * NULL: KEY is being written by someone else, or nothing is claimable.
 */
static struct cache_slot *
pick(struct cache_arena *a, uint32_t set, const uint8_t *key, int64_t now,
    uint64_t *w, int *evict)
{
	struct cache_slot	*s, *free = NULL, *stale = NULL;
	uint64_t		 sw, fw = 0, tw = 0;
	uint32_t		 base = set * CACHE_WAYS, i, h;

	*evict = 0;
	for (i = 0; i < CACHE_WAYS; i++) {
		s = slot_at(a, base + i);
		sw = atomic_load_explicit(&s->word, memory_order_acquire);
		if (STATE(sw) != ST_FREE &&
		    memcmp(s->key, key, CACHE_KEY_LEN) == 0) {
			if (STATE(sw) == ST_READY) {
				*w = sw;	/* replaced in place */
				return s;
			}
			if (!claim_dead(s, now))
				return NULL;	/* a writer of this key */
		}
		if (STATE(sw) == ST_FREE && free == NULL) {
			free = s;
			fw = sw;
		} else if (stale == NULL && ((STATE(sw) == ST_READY &&
		    s->expires <= now) || (STATE(sw) == ST_WRITING &&
		    claim_dead(s, now)))) {
			stale = s;
			tw = sw;
		}
	}
	if (free != NULL || stale != NULL) {
		*w = free != NULL ? fw : tw;
		return free != NULL ? free : stale;
	}
	/* CLOCK: two turns of the hand find an unreferenced READY slot */
	for (i = 0; i < 2 * CACHE_WAYS; i++) {
		h = atomic_fetch_add_explicit(&a->hand[set], 1,
		    memory_order_relaxed) % CACHE_WAYS;
		s = slot_at(a, base + h);
		sw = atomic_load_explicit(&s->word, memory_order_acquire);
		if (STATE(sw) != ST_READY)
			continue;
		if (atomic_exchange_explicit(&s->ref, 0,
		    memory_order_relaxed) != 0)
			continue;
		*w = sw;
		*evict = 1;
		return s;
	}
	return NULL;
}

int
cache_put_begin(struct cache_arena *a, const uint8_t *key,
    const char *owner, pid_t pid, int64_t now, struct cache_put *p)
{
	struct cache_slot	*s, *o;
	uint32_t		 set = set_of(a, key), i;
	uint64_t		 w, ow;
	int			 tries, evict;
	size_t			 n;

	memset(p, 0, sizeof(*p));
	p->a = a;
	for (tries = 0; tries < 4; tries++) {
		if ((s = pick(a, set, key, now, &w, &evict)) == NULL)
			break;
		if (!atomic_compare_exchange_strong_explicit(&s->word, &w,
		    NEXT(w, ST_WRITING), memory_order_acq_rel,
		    memory_order_relaxed))
			continue;	/* another writer took it: look again */
		if (evict)
			count(&a->evictions);
		p->slot = s;
		p->word = NEXT(w, ST_WRITING);
		p->flush_gen = atomic_load_explicit(&a->flush_gen,
		    memory_order_acquire);
		s->pid = pid;
		s->claimed = now;
		s->len = 0;
		atomic_store_explicit(&s->ref, 0, memory_order_relaxed);
		memcpy(s->key, key, CACHE_KEY_LEN);
		n = strnlen(owner, CACHE_OWNER_MAX - 1);
		memcpy(s->owner, owner, n);
		s->owner[n] = '\0';
		/* our key is out before we look for another writer's */
		atomic_thread_fence(memory_order_seq_cst);
		for (i = 0; i < CACHE_WAYS; i++) {
			o = slot_at(a, set * CACHE_WAYS + i);
			if (o == s)
				continue;
			ow = atomic_load_explicit(&o->word,
			    memory_order_acquire);
			if (STATE(ow) != ST_FREE &&
			    memcmp(o->key, key, CACHE_KEY_LEN) == 0 &&
			    (STATE(ow) == ST_READY || !claim_dead(o, now))) {
				cache_put_abort(p);
				count(&a->busy);
				return -1;
			}
		}
		return 0;
	}
	count(&a->busy);
	return -1;
}

int
cache_put_append(struct cache_put *p, const void *buf, size_t n)
{
	if (p->slot == NULL || p->too_big)
		return -1;
	if (n > p->a->entry_max - p->len) {
		p->too_big = 1;
		return -1;
	}
	memcpy(p->slot->data + p->len, buf, n);
	p->len += n;
	return 0;
}

void *
cache_put_bytes(struct cache_put *p)
{
	return p->slot != NULL ? p->slot->data : NULL;
}

int
cache_put_commit(struct cache_put *p, int64_t expires)
{
	struct cache_slot	*s = p->slot;

	if (s == NULL)
		return -1;
	if (p->too_big || atomic_load_explicit(&p->a->flush_gen,
	    memory_order_acquire) != p->flush_gen) {
		if (p->too_big)
			count(&p->a->too_big);
		cache_put_abort(p);
		return -1;
	}
	s->len = (uint32_t)p->len;
	s->expires = expires;
	/* everything above is visible before READY is */
	atomic_store_explicit(&s->word, NEXT(p->word, ST_READY),
	    memory_order_release);
	count(&p->a->stores);
	p->slot = NULL;
	return 0;
}

void
cache_put_abort(struct cache_put *p)
{
	uint64_t	 w = p->word;

	if (p->slot == NULL)
		return;
	/* only if it is still ours: a stale claim may have been taken */
	(void)atomic_compare_exchange_strong_explicit(&p->slot->word, &w,
	    NEXT(w, ST_FREE), memory_order_release, memory_order_relaxed);
	p->slot = NULL;
}

uint64_t
cache_flush(struct cache_arena *a, const char *owner)
{
	struct cache_slot	*s;
	uint64_t		 w, n = 0;
	uint32_t		 i;

	/* first, so that no write under way commits what we drop */
	atomic_fetch_add_explicit(&a->flush_gen, 1, memory_order_acq_rel);
	for (i = 0; i < a->nslots; i++) {
		s = slot_at(a, i);
		w = atomic_load_explicit(&s->word, memory_order_acquire);
		if (STATE(w) != ST_READY || (owner != NULL &&
		    strncmp(s->owner, owner, CACHE_OWNER_MAX) != 0))
			continue;
		if (atomic_compare_exchange_strong_explicit(&s->word, &w,
		    NEXT(w, ST_FREE), memory_order_acq_rel,
		    memory_order_relaxed))
			n++;
	}
	return n;
}

void
cache_stats(struct cache_arena *a, struct cache_stats *st)
{
	uint32_t	 i;

	memset(st, 0, sizeof(*st));
	st->hits = atomic_load_explicit(&a->hits, memory_order_relaxed);
	st->misses = atomic_load_explicit(&a->misses, memory_order_relaxed);
	st->stores = atomic_load_explicit(&a->stores, memory_order_relaxed);
	st->evictions = atomic_load_explicit(&a->evictions,
	    memory_order_relaxed);
	st->too_big = atomic_load_explicit(&a->too_big, memory_order_relaxed);
	st->busy = atomic_load_explicit(&a->busy, memory_order_relaxed);
	st->slots = a->nslots;
	for (i = 0; i < a->nslots; i++)
		if (STATE(atomic_load_explicit(&slot_at(a, i)->word,
		    memory_order_relaxed)) == ST_READY)
			st->entries++;
}
