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

/*
 * What a lookup or a writer's choice reads of a set's slots, side by
 * side: four lines, where reading each slot's own header would be eight
 * lines on eight pages a slot's size apart (a miss spent 2.5 us in those
 * stalls).  word is the slot's state word; tag is bytes 8-15 of the key
 * the slot holds or is being written with, a hint only (a reader that
 * matches it still compares the whole key in the slot, and one that
 * misses it during a replacement misses the entry, as it would a
 * moment earlier); expires is valid while READY.
 */
struct cache_set {
	_Alignas(64) _Atomic uint64_t word[CACHE_WAYS];
	_Atomic uint64_t tag[CACHE_WAYS];
	_Atomic int64_t	 expires[CACHE_WAYS];
	_Atomic uint8_t	 ref[CACHE_WAYS];	/* CLOCK: read since the hand */
	_Atomic uint32_t hand;
};

struct cache_slot {
	uint32_t	 len;
	int32_t		 pid;		/* the writer, while WRITING */
	int64_t		 claimed;	/* when it was claimed (us) */
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
	size_t		 slots_off;
	_Alignas(64) _Atomic uint64_t flush_gen;
	_Alignas(64) _Atomic uint64_t hits;
	_Atomic uint64_t misses, stores, evictions, too_big, busy;
	_Alignas(64) struct cache_set sets[];
};

_Static_assert(sizeof(struct cache_set) % 64 == 0 &&
    sizeof(struct cache_set) <= 256, "a set's index is four lines");

static size_t
roundup64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static size_t
slots_off(size_t nsets)
{
	return roundup64(sizeof(struct cache_arena) +
	    nsets * sizeof(struct cache_set));
}

static struct cache_slot *
slot_at(const struct cache_arena *a, uint32_t i)
{
	return (struct cache_slot *)(void *)((char *)(uintptr_t)a +
	    a->slots_off + (size_t)i * a->stride);
}

static uint32_t
set_of(const struct cache_arena *a, const uint8_t *key)
{
	uint64_t	 h;

	memcpy(&h, key, sizeof(h));
	return (uint32_t)(h % a->nsets);
}

static uint64_t
tag_of(const uint8_t *key)
{
	uint64_t	 t;

	memcpy(&t, key + 8, sizeof(t));
	return t;
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
	mapped = slots_off(nsets) + nsets * CACHE_WAYS * stride;
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
	a->slots_off = slots_off(nsets);
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
	uint32_t		 set = set_of(a, key), i;
	struct cache_set	*st = &a->sets[set];
	struct cache_slot	*s;
	uint64_t		 w, tag = tag_of(key);

	for (i = 0; i < CACHE_WAYS; i++) {
		if (atomic_load_explicit(&st->tag[i],
		    memory_order_relaxed) != tag)
			continue;
		w = atomic_load_explicit(&st->word[i], memory_order_acquire);
		s = slot_at(a, set * CACHE_WAYS + i);
		if (STATE(w) != ST_READY ||
		    memcmp(s->key, key, CACHE_KEY_LEN) != 0 ||
		    atomic_load_explicit(&st->expires[i],
		    memory_order_relaxed) <= now || s->len > a->entry_max)
			continue;
		/* a write only when it changes: readers share the line */
		if (atomic_load_explicit(&st->ref[i], memory_order_relaxed) == 0)
			atomic_store_explicit(&st->ref[i], 1,
			    memory_order_relaxed);
		v->data = s->data;
		v->len = s->len;
		v->word_at = &st->word[i];
		v->word = w;
		if (atomic_load_explicit(&st->word[i], memory_order_acquire) !=
		    w)
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
	return atomic_load_explicit(v->word_at, memory_order_relaxed) ==
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

/* Slot I of SET holds (or is being written with) KEY. */
static int
holds(struct cache_arena *a, uint32_t set, uint32_t i, uint64_t w,
    const uint8_t *key)
{
	return STATE(w) != ST_FREE && atomic_load_explicit(
	    &a->sets[set].tag[i], memory_order_relaxed) == tag_of(key) &&
	    memcmp(slot_at(a, set * CACHE_WAYS + i)->key, key,
	    CACHE_KEY_LEN) == 0;
}

/*
 * The way of SET to claim for KEY, and its word in *W: a FREE one, else
 * an expired or abandoned one, else the CLOCK victim (*EVICT = 1).  -1:
 * KEY is being written by someone else, or nothing is claimable.
 */
static int
pick(struct cache_arena *a, uint32_t set, const uint8_t *key, int64_t now,
    uint64_t *w, int *evict)
{
	struct cache_set	*st = &a->sets[set];
	uint64_t		 sw, fw = 0, tw = 0;
	uint32_t		 i, h;
	int			 free = -1, stale = -1;

	*evict = 0;
	for (i = 0; i < CACHE_WAYS; i++) {
		sw = atomic_load_explicit(&st->word[i], memory_order_acquire);
		if (holds(a, set, i, sw, key)) {
			if (STATE(sw) == ST_READY) {
				*w = sw;	/* replaced in place */
				return (int)i;
			}
			if (!claim_dead(slot_at(a, set * CACHE_WAYS + i), now))
				return -1;	/* a writer of this key */
		}
		if (STATE(sw) == ST_FREE && free == -1) {
			free = (int)i;
			fw = sw;
		} else if (stale == -1 && ((STATE(sw) == ST_READY &&
		    atomic_load_explicit(&st->expires[i],
		    memory_order_relaxed) <= now) || (STATE(sw) ==
		    ST_WRITING && claim_dead(slot_at(a, set * CACHE_WAYS + i),
		    now)))) {
			stale = (int)i;
			tw = sw;
		}
	}
	if (free != -1 || stale != -1) {
		*w = free != -1 ? fw : tw;
		return free != -1 ? free : stale;
	}
	/* CLOCK: two turns of the hand find an unreferenced READY slot */
	for (i = 0; i < 2 * CACHE_WAYS; i++) {
		h = atomic_fetch_add_explicit(&st->hand, 1,
		    memory_order_relaxed) % CACHE_WAYS;
		sw = atomic_load_explicit(&st->word[h], memory_order_acquire);
		if (STATE(sw) != ST_READY)
			continue;
		if (atomic_exchange_explicit(&st->ref[h], 0,
		    memory_order_relaxed) != 0)
			continue;
		*w = sw;
		*evict = 1;
		return (int)h;
	}
	return -1;
}

/* Claim a slot for P's key: 0, or -1 (counted busy) if none could be. */
static int
claim(struct cache_put *p)
{
	struct cache_arena	*a = p->a;
	const uint8_t		*key = p->key;
	struct cache_set	*st;
	struct cache_slot	*s;
	uint32_t		 set = set_of(a, key), i;
	uint64_t		 w, ow;
	int			 tries, evict, way;
	size_t			 n;

	st = &a->sets[set];
	for (tries = 0; tries < 4; tries++) {
		if ((way = pick(a, set, key, p->now, &w, &evict)) == -1)
			break;
		if (!atomic_compare_exchange_strong_explicit(&st->word[way],
		    &w, NEXT(w, ST_WRITING), memory_order_acq_rel,
		    memory_order_relaxed))
			continue;	/* another writer took it: look again */
		if (evict)
			count(&a->evictions);
		s = slot_at(a, set * CACHE_WAYS + (uint32_t)way);
		p->slot = s;
		p->word_at = &st->word[way];
		p->expires_at = &st->expires[way];
		p->word = NEXT(w, ST_WRITING);
		s->pid = p->pid;
		s->claimed = p->now;
		s->len = 0;
		atomic_store_explicit(&st->ref[way], 0, memory_order_relaxed);
		memcpy(s->key, key, CACHE_KEY_LEN);
		atomic_store_explicit(&st->tag[way], tag_of(key),
		    memory_order_relaxed);
		n = strnlen(p->owner, CACHE_OWNER_MAX - 1);
		memcpy(s->owner, p->owner, n);
		s->owner[n] = '\0';
		/* our key is out before we look for another writer's */
		atomic_thread_fence(memory_order_seq_cst);
		for (i = 0; i < CACHE_WAYS; i++) {
			if (i == (uint32_t)way)
				continue;
			ow = atomic_load_explicit(&st->word[i],
			    memory_order_acquire);
			if (holds(a, set, i, ow, key) &&
			    (STATE(ow) == ST_READY || !claim_dead(slot_at(a,
			    set * CACHE_WAYS + i), p->now))) {
				cache_put_abort(p);
				count(&a->busy);
				return -1;
			}
		}
		memset(s->data, 0, p->head);
		p->len = p->head;
		return 0;
	}
	count(&a->busy);
	return -1;
}

void
cache_put_defer(struct cache_arena *a, const uint8_t *key,
    const char *owner, pid_t pid, int64_t now, size_t head,
    struct cache_put *p)
{
	memset(p, 0, sizeof(*p));
	p->a = a;
	memcpy(p->key, key, CACHE_KEY_LEN);
	p->owner = owner;
	p->pid = pid;
	p->now = now;
	/* from the request's start: a flush meanwhile drops its answer */
	p->flush_gen = atomic_load_explicit(&a->flush_gen,
	    memory_order_acquire);
	/* a header past the bound is an entry too big for any answer */
	p->head = head <= a->entry_max ? head : 0;
	p->too_big = head > a->entry_max;
	p->deferred = !p->too_big;
}

int
cache_put_begin(struct cache_arena *a, const uint8_t *key,
    const char *owner, pid_t pid, int64_t now, struct cache_put *p)
{
	cache_put_defer(a, key, owner, pid, now, 0, p);
	p->deferred = 0;
	return claim(p);
}

int
cache_put_append(struct cache_put *p, const void *buf, size_t n)
{
	if (p->deferred) {
		p->deferred = 0;
		if (claim(p) == -1)
			return -1;
	}
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
	atomic_store_explicit(p->expires_at, expires, memory_order_relaxed);
	/* everything above is visible before READY is */
	atomic_store_explicit(p->word_at, NEXT(p->word, ST_READY),
	    memory_order_release);
	count(&p->a->stores);
	p->slot = NULL;
	return 0;
}

void
cache_put_abort(struct cache_put *p)
{
	uint64_t	 w = p->word;

	p->deferred = 0;
	if (p->slot == NULL)
		return;
	/* only if it is still ours: a stale claim may have been taken */
	(void)atomic_compare_exchange_strong_explicit(p->word_at, &w,
	    NEXT(w, ST_FREE), memory_order_release, memory_order_relaxed);
	p->slot = NULL;
}

uint64_t
cache_flush(struct cache_arena *a, const char *owner)
{
	_Atomic uint64_t	*wp;
	uint64_t		 w, n = 0;
	uint32_t		 i;

	/* first, so that no write under way commits what we drop */
	atomic_fetch_add_explicit(&a->flush_gen, 1, memory_order_acq_rel);
	for (i = 0; i < a->nslots; i++) {
		wp = &a->sets[i / CACHE_WAYS].word[i % CACHE_WAYS];
		w = atomic_load_explicit(wp, memory_order_acquire);
		if (STATE(w) != ST_READY || (owner != NULL &&
		    strncmp(slot_at(a, i)->owner, owner,
		    CACHE_OWNER_MAX) != 0))
			continue;
		if (atomic_compare_exchange_strong_explicit(wp, &w,
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
		if (STATE(atomic_load_explicit(&a->sets[i /
		    CACHE_WAYS].word[i % CACHE_WAYS],
		    memory_order_relaxed)) == ST_READY)
			st->entries++;
}
