/*
 * keystate.c - GCRA and spend counters shared by every worker.
 *
 * GCRA keeps one number per limit, the theoretical arrival time (TAT):
 * a request is admitted when TAT - now <= tau (the burst allowance), and
 * moves TAT to max(TAT, now) + T, T = 1 minute / limit.  With tau =
 * 1 minute - T, a key starting idle may use its whole per-minute allowance
 * at once and then one request per T: a token bucket of size "limit"
 * refilled at "limit" per minute, in one atomic word (Envoy, redis-cell
 * and GitHub's API limiter use the same algorithm).
 */
#include <stdio.h>
#include <string.h>

#include "common/keys.h"
#include "shm/keystate.h"

#define MINUTE_NS	(60LL * 1000000000LL)

size_t
keystate_size(uint32_t nslots)
{
	return sizeof(struct keystate_table) +
	    (size_t)nslots * sizeof(struct keystate);
}

void
keystate_init(struct keystate_table *t, uint32_t nslots)
{
	memset(t, 0, keystate_size(nslots));
	t->nslots = nslots;
}

struct keystate *
keystate_at(struct keystate_table *t, int slot)
{
	if (t == NULL || slot < 0 || (uint32_t)slot >= t->nslots)
		return NULL;
	return &t->slots[slot];
}

static uint32_t
name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

int
keystate_assign(struct keystate_table *t, struct keyring *kr)
{
	/* name -> slot for the slots in use: open addressing, 2x the keys */
	static int32_t	 map[2 * KEYSTATE_SLOTS];
	static uint8_t	 keep[KEYSTATE_SLOTS];
	uint32_t	 mask = 2 * KEYSTATE_SLOTS - 1, i, h;
	int		 k, nkeys = kr != NULL ? kr->nkeys : 0;

	if (t->nslots > KEYSTATE_SLOTS)
		return -1;
	memset(map, 0xff, sizeof(map));
	memset(keep, 0, sizeof(keep));
	for (i = 0; i < t->nslots; i++) {
		if (t->slots[i].name[0] == '\0')
			continue;
		for (h = name_hash(t->slots[i].name) & mask; map[h] != -1;
		    h = (h + 1) & mask)
			;
		map[h] = (int32_t)i;
	}
	for (k = 0; k < nkeys; k++) {
		struct key_entry *ke = &kr->keys[k];

		ke->slot = -1;
		for (h = name_hash(ke->name) & mask; map[h] != -1;
		    h = (h + 1) & mask) {
			if (strcmp(t->slots[map[h]].name, ke->name) == 0) {
				ke->slot = map[h];
				keep[map[h]] = 1;
				break;
			}
		}
	}
	/* free what no key holds any more */
	for (i = 0; i < t->nslots; i++)
		if (t->slots[i].name[0] != '\0' && !keep[i])
			t->slots[i].name[0] = '\0';
	for (k = 0; k < nkeys; k++) {
		struct key_entry *ke = &kr->keys[k];
		struct keystate	 *ks;

		if (ke->slot != -1)
			continue;
		for (i = 0; i < t->nslots; i++) {
			uint32_t s = (t->cursor + i) % t->nslots;

			if (t->slots[s].name[0] == '\0' && !keep[s]) {
				ke->slot = (int)s;
				keep[s] = 1;
				t->cursor = (s + 1) % t->nslots;
				break;
			}
		}
		if (ke->slot == -1)
			return -1;
		ks = &t->slots[ke->slot];
		atomic_store(&ks->rpm_tat_ns, 0);
		atomic_store(&ks->tpm_tat_ns, 0);
		atomic_store(&ks->period, 0);
		atomic_store(&ks->spend_base, 0);
		atomic_store(&ks->spend_live, 0);
		snprintf(ks->name, sizeof(ks->name), "%s", ke->name);
	}
	return 0;
}

int64_t
ks_rpm_take(struct keystate *ks, int64_t rpm, int64_t now_ns)
{
	int64_t T, tau, tat, ntat;

	if (rpm <= 0)
		return 0;
	T = MINUTE_NS / rpm;
	tau = MINUTE_NS - T;
	tat = atomic_load_explicit(&ks->rpm_tat_ns, memory_order_relaxed);
	for (;;) {
		int64_t base = tat > now_ns ? tat : now_ns;

		if (base - now_ns > tau)
			return base - now_ns - tau;
		ntat = base + T;
		if (atomic_compare_exchange_weak_explicit(&ks->rpm_tat_ns,
		    &tat, ntat, memory_order_relaxed, memory_order_relaxed))
			return 0;
	}
}

int64_t
ks_tpm_check(struct keystate *ks, int64_t tpm, int64_t now_ns)
{
	int64_t tat;

	if (tpm <= 0)
		return 0;
	tat = atomic_load_explicit(&ks->tpm_tat_ns, memory_order_relaxed);
	/* over the per-minute allowance by the time already booked */
	if (tat - now_ns > MINUTE_NS)
		return tat - now_ns - MINUTE_NS;
	return 0;
}

void
ks_tpm_add(struct keystate *ks, int64_t tpm, int64_t tokens, int64_t now_ns)
{
	int64_t tat, ntat, add;

	if (tpm <= 0 || tokens <= 0)
		return;
	add = (int64_t)((__int128)tokens * MINUTE_NS / tpm);
	tat = atomic_load_explicit(&ks->tpm_tat_ns, memory_order_relaxed);
	do {
		ntat = (tat > now_ns ? tat : now_ns) + add;
	} while (!atomic_compare_exchange_weak_explicit(&ks->tpm_tat_ns,
	    &tat, ntat, memory_order_relaxed, memory_order_relaxed));
}

int64_t
ks_spend(struct keystate *ks, int64_t period)
{
	int64_t p = atomic_load_explicit(&ks->period, memory_order_acquire);

	if (p != period) {
		/* a new day or month: whoever wins the CAS zeroes the spend */
		if (p < period && atomic_compare_exchange_strong(&ks->period,
		    &p, period)) {
			atomic_store(&ks->spend_base, 0);
			atomic_store(&ks->spend_live, 0);
		}
	}
	return atomic_load_explicit(&ks->spend_base, memory_order_relaxed) +
	    atomic_load_explicit(&ks->spend_live, memory_order_relaxed);
}

void
ks_spend_add(struct keystate *ks, int64_t period, int64_t micro_usd)
{
	if (micro_usd <= 0)
		return;
	(void)ks_spend(ks, period);
	atomic_fetch_add_explicit(&ks->spend_live, micro_usd,
	    memory_order_relaxed);
}

void
ks_spend_sync(struct keystate *ks, int64_t period, int64_t db_micro,
    int64_t live_seen)
{
	int64_t p = atomic_load(&ks->period);

	if (p > period)
		return;		/* the state moved on meanwhile */
	if (p < period) {
		/* nothing of LIVE_SEEN belongs to this period */
		(void)ks_spend(ks, period);
		atomic_store(&ks->spend_base, db_micro);
		return;
	}
	atomic_store(&ks->spend_base, db_micro);
	atomic_fetch_sub(&ks->spend_live, live_seen);
}

int64_t
ks_period(int kind, time_t now, time_t *start, time_t *end)
{
	struct tm tm;

	if (kind == 1) {
		*start = now - now % 86400;
		*end = *start + 86400;
		return (int64_t)(now / 86400);
	}
	gmtime_r(&now, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	*start = timegm(&tm);
	tm.tm_mon++;
	*end = timegm(&tm);	/* timegm normalises month 12 */
	gmtime_r(&now, &tm);
	return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

void
ks_charge(struct keystate *ks, int64_t tpm, int64_t tokens, int period_kind,
    int64_t micro_usd, int64_t now_ns, time_t now)
{
	time_t start, end;

	if (tpm > 0)
		ks_tpm_add(ks, tpm, tokens, now_ns);
	if (micro_usd > 0 && period_kind != 0)
		ks_spend_add(ks, ks_period(period_kind, now, &start, &end),
		    micro_usd);
}
