/*
 * userstate.c - end users' budgets.
 *
 * Why a hash tag and not the name: an end-user id is up to 256 bytes of
 * the caller's choosing; 64 bits of FNV-1a over key and user, with the
 * key's name first and a separator no key name holds, keep the table
 * small, and two users of a key share a budget only on a 64-bit
 * collision.
 *
 * Why claiming a spent slot is safe: a slot is taken over only when its
 * period is over and it holds nothing, so no request under way is
 * charged to it afterwards (a request charges only what it held, and a
 * request that held nothing adds no spend).
 */
#include <string.h>

#include "shm/userstate.h"

#define TAG_CLAIMING	1	/* a slot being cleared for its new user */

static struct keystate *
slots(struct userstate_table *t)
{
	return (struct keystate *)(void *)&t->tag[t->nslots];
}

size_t
userstate_size(uint32_t nslots)
{
	size_t tags = ((size_t)nslots * sizeof(uint64_t) + 63) & ~(size_t)63;

	return sizeof(struct userstate_table) + tags +
	    (size_t)nslots * sizeof(struct keystate);
}

void
userstate_init(struct userstate_table *t, uint32_t nslots)
{
	uint32_t i;

	/* slots start on a cache line: nslots is a multiple of 8 */
	t->nslots = nslots & ~7u;
	for (i = 0; i < t->nslots; i++)
		atomic_init(&t->tag[i], 0);
}

uint64_t
userstate_tag(const char *key, const char *user)
{
	uint64_t	 h = 14695981039346656037ULL;
	const char	*p;

	for (p = key; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0x1f) * 1099511628211ULL;
	for (p = user; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h > TAG_CLAIMING ? h : h + 2;	/* neither free nor claiming */
}

/* Whether slot KS is over with: its period past, nothing held. */
static int
reusable(struct keystate *ks, int period_kind, time_t now)
{
	time_t start, end;

	return atomic_load(&ks->held) == 0 && atomic_load(&ks->period) <
	    ks_period(period_kind, now, &start, &end);
}

struct keystate *
userstate_find(struct userstate_table *t, uint64_t tag)
{
	uint32_t i, s;

	if (t == NULL || t->nslots == 0)
		return NULL;
	for (i = 0; i < USERSTATE_PROBES; i++) {
		s = (uint32_t)((tag + i) % t->nslots);
		if (atomic_load_explicit(&t->tag[s], memory_order_acquire) ==
		    tag)
			return &slots(t)[s];
	}
	return NULL;
}

struct keystate *
userstate_get(struct userstate_table *t, uint64_t tag, int period_kind,
    time_t now)
{
	struct keystate	*ks;
	uint64_t	 cur;
	uint32_t	 i, s;
	long		 spins;

	if ((ks = userstate_find(t, tag)) != NULL || t == NULL ||
	    t->nslots == 0)
		return ks;
	for (i = 0; i < USERSTATE_PROBES; i++) {
		s = (uint32_t)((tag + i) % t->nslots);
 again:
		cur = atomic_load_explicit(&t->tag[s], memory_order_acquire);
		if (cur == tag)
			return &slots(t)[s];
		if (cur == TAG_CLAIMING) {
			/* a claim takes a few stores: wait for whose it is,
			 * so that two first requests of one user share it */
			for (spins = 0; spins < 1000000 && atomic_load(
			    &t->tag[s]) == TAG_CLAIMING; spins++)
				;
			if (spins < 1000000)
				goto again;
			continue;
		}
		if (cur != 0 && !reusable(&slots(t)[s], period_kind, now))
			continue;
		if (!atomic_compare_exchange_strong(&t->tag[s], &cur,
		    TAG_CLAIMING))
			goto again;
		ks_reset(&slots(t)[s]);
		atomic_store_explicit(&t->tag[s], tag, memory_order_release);
		return &slots(t)[s];
	}
	return NULL;
}

struct keystate *
userstate_at(struct userstate_table *t, uint32_t i, uint64_t *tag)
{
	if (t == NULL || i >= t->nslots)
		return NULL;
	*tag = atomic_load_explicit(&t->tag[i], memory_order_acquire);
	return &slots(t)[i];
}
