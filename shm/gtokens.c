/*
 * gtokens.c - seqlocked token slots (see tickets.c for the same pattern):
 * the writer makes seq odd, writes, makes it even; a reader copies and
 * retries if seq was odd or changed under it.  Words are atomic so the
 * copy is not a data race, only possibly stale, which seq detects.
 */
#include <string.h>

#include "shm/gtokens.h"

#define WORDS	(GTOKEN_MAX / 8)

size_t
gtokens_size(void)
{
	return sizeof(struct gtokens_region);
}

void
gtokens_init(struct gtokens_region *r)
{
	memset(r, 0, sizeof(*r));
}

int
gtokens_publish(struct gtokens_region *r, int i, const char *token,
    int64_t expires_wall_us)
{
	struct gtoken_slot	*s;
	uint64_t		 buf[WORDS], seq;
	size_t			 n = strlen(token), k;

	if (i < 0 || i >= GTOKENS_SLOTS || n >= GTOKEN_MAX)
		return -1;
	s = &r->slot[i];
	memset(buf, 0, sizeof(buf));
	memcpy(buf, token, n);
	seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (k = 0; k < WORDS; k++)
		atomic_store_explicit(&s->w[k], buf[k], memory_order_relaxed);
	atomic_store_explicit(&s->expires_wall_us, expires_wall_us,
	    memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
	atomic_fetch_add_explicit(&s->refreshes, 1, memory_order_relaxed);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

void
gtokens_failed(struct gtokens_region *r, int i)
{
	if (i >= 0 && i < GTOKENS_SLOTS)
		atomic_fetch_add_explicit(&r->slot[i].failures, 1,
		    memory_order_relaxed);
}

int64_t
gtokens_get(const struct gtokens_region *r, int i, int64_t now_wall_us,
    char *out)
{
	const struct gtoken_slot *s;
	uint64_t		 buf[WORDS], s1, s2;
	int64_t			 exp = 0;
	size_t			 k;
	int			 tries;

	if (i < 0 || i >= GTOKENS_SLOTS)
		return 0;
	s = &r->slot[i];
	for (tries = 0; tries < 1000; tries++) {
		s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		for (k = 0; k < WORDS; k++)
			buf[k] = atomic_load_explicit(&s->w[k],
			    memory_order_relaxed);
		exp = atomic_load_explicit(&s->expires_wall_us,
		    memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
		if (s1 == s2)
			break;
	}
	if (tries == 1000 || exp <= now_wall_us)
		return 0;
	memcpy(out, buf, GTOKEN_MAX);
	out[GTOKEN_MAX - 1] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return exp;
}

int64_t
gtokens_expiry(const struct gtokens_region *r, int i)
{
	if (i < 0 || i >= GTOKENS_SLOTS)
		return 0;
	return atomic_load_explicit(&r->slot[i].expires_wall_us,
	    memory_order_relaxed);
}
