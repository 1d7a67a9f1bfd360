/*
 * tickets.c - ticket keys in shared memory, one writer, seqlocked slots.
 *
 * Rotation N writes slot N % TICKETS_SLOTS and then publishes gen = N.
 * Keys N and N-1 are valid; the slot being rewritten held key N-3, long
 * invalid, so a reader racing a rotation at worst fails to find a key
 * that was no longer valid anyway.  A reader copies a slot between two
 * reads of its sequence number and retries (bounded) while they differ.
 */
#include <string.h>

#include "shm/tickets.h"

#define READ_TRIES	1000

size_t
tickets_size(void)
{
	return sizeof(struct tickets_region);
}

void
tickets_init(struct tickets_region *r)
{
	memset(r, 0, sizeof(*r));
}

void
tickets_publish(struct tickets_region *r, const struct ticket_key *k,
    int64_t wall_us)
{
	uint64_t		 gen, words[TICKET_WORDS], seq;
	struct tickets_slot	*s;
	size_t			 i;

	gen = atomic_load_explicit(&r->gen, memory_order_relaxed) + 1;
	s = &r->slot[gen % TICKETS_SLOTS];
	memcpy(words, k, sizeof(words));
	seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->gen, gen, memory_order_relaxed);
	for (i = 0; i < TICKET_WORDS; i++)
		atomic_store_explicit(&s->w[i], words[i], memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
	memset(words, 0, sizeof(words));
	atomic_store_explicit(&r->rotated_wall_us, wall_us,
	    memory_order_relaxed);
	atomic_store_explicit(&r->gen, gen, memory_order_release);
}

/* Copy slot S; its generation, or 0 when it could not be read whole. */
static uint64_t
slot_read(const struct tickets_slot *s, struct ticket_key *k)
{
	uint64_t	 words[TICKET_WORDS], s1, s2, gen;
	size_t		 i;
	int		 tries;

	for (tries = 0; tries < READ_TRIES; tries++) {
		s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
		gen = atomic_load_explicit(&s->gen, memory_order_relaxed);
		for (i = 0; i < TICKET_WORDS; i++)
			words[i] = atomic_load_explicit(&s->w[i],
			    memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
		if ((s1 & 1) == 0 && s1 == s2) {
			memcpy(k, words, sizeof(*k));
			memset(words, 0, sizeof(words));
			return gen;
		}
	}
	return 0;
}

int
tickets_current(const struct tickets_region *r, struct ticket_key *k)
{
	uint64_t gen = atomic_load_explicit(&r->gen, memory_order_acquire);

	if (gen == 0)
		return -1;
	return slot_read(&r->slot[gen % TICKETS_SLOTS], k) == gen ? 0 : -1;
}

int
tickets_find(const struct tickets_region *r,
    const uint8_t name[TICKET_NAME_LEN], struct ticket_key *k)
{
	uint64_t gen = atomic_load_explicit(&r->gen, memory_order_acquire);
	uint64_t g;
	int	 back;

	for (back = 0; back < 2 && gen > (uint64_t)back; back++) {
		g = slot_read(&r->slot[(gen - (uint64_t)back) % TICKETS_SLOTS],
		    k);
		if (g == gen - (uint64_t)back &&
		    memcmp(k->name, name, TICKET_NAME_LEN) == 0)
			return back == 0 ? 1 : 2;
	}
	memset(k, 0, sizeof(*k));
	return 0;
}

uint64_t
tickets_rotations(const struct tickets_region *r)
{
	return atomic_load_explicit(&r->gen, memory_order_relaxed);
}
