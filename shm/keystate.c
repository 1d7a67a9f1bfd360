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

/*
 * The Nth entry to give a slot: the keys, then the teams; a team's state
 * name is its name after an "@", which no key name can start with.
 */
static struct key_entry *
entry_at(struct keyring *kr, int n, char *name, size_t size)
{
	struct key_entry *e;

	if (n < kr->nkeys) {
		e = &kr->keys[n];
		snprintf(name, size, "%s", e->name);
	} else {
		/* team names are shorter than key names by the "@" */
		size_t len;

		e = &kr->teams[n - kr->nkeys];
		len = strnlen(e->name, size - 2);
		name[0] = '@';
		memcpy(name + 1, e->name, len);
		name[len + 1] = '\0';
	}
	return e;
}

void
ks_reset(struct keystate *ks)
{
	atomic_store(&ks->rpm_tat_ns, 0);
	atomic_store(&ks->tpm_tat_ns, 0);
	atomic_store(&ks->period, 0);
	atomic_store(&ks->spend_base, 0);
	atomic_store(&ks->spend_live, 0);
	atomic_store(&ks->held, 0);
	memset(ks->lease, 0, sizeof(ks->lease));
}

int
keystate_assign(struct keystate_table *t, struct keyring *kr)
{
	/* name -> slot for the slots in use: open addressing, 2x the keys */
	static int32_t	 map[2 * KEYSTATE_SLOTS];
	static uint8_t	 keep[KEYSTATE_SLOTS];
	uint32_t	 mask = 2 * KEYSTATE_SLOTS - 1, i, h;
	int		 k, n = kr != NULL ? kr->nkeys + kr->nteams : 0;
	char		 name[KEYSTATE_NAME_MAX];

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
	for (k = 0; k < n; k++) {
		struct key_entry *ke = entry_at(kr, k, name, sizeof(name));

		ke->slot = -1;
		for (h = name_hash(name) & mask; map[h] != -1;
		    h = (h + 1) & mask) {
			if (strcmp(t->slots[map[h]].name, name) == 0) {
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
	for (k = 0; k < n; k++) {
		struct key_entry *ke = entry_at(kr, k, name, sizeof(name));
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
		ks_reset(ks);
		snprintf(ks->name, sizeof(ks->name), "%s", name);
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

void
ks_rpm_give_back(struct keystate *ks, int64_t rpm)
{
	if (rpm > 0)
		atomic_fetch_sub_explicit(&ks->rpm_tat_ns, MINUTE_NS / rpm,
		    memory_order_relaxed);
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

static int64_t
tpm_ns(int64_t tpm, int64_t tokens)
{
	return (int64_t)((__int128)tokens * MINUTE_NS / tpm);
}

int64_t
ks_tpm_hold(struct keystate *ks, int64_t tpm, int64_t tokens, int64_t now_ns)
{
	int64_t tat, base, add;

	if (tpm <= 0 || tokens <= 0)
		return 0;
	add = tpm_ns(tpm, tokens);
	tat = atomic_load_explicit(&ks->tpm_tat_ns, memory_order_relaxed);
	for (;;) {
		base = tat > now_ns ? tat : now_ns;
		if (base > now_ns && base - now_ns + add > MINUTE_NS)
			return base - now_ns + add - MINUTE_NS;
		if (atomic_compare_exchange_weak_explicit(&ks->tpm_tat_ns,
		    &tat, base + add, memory_order_relaxed,
		    memory_order_relaxed))
			return 0;
	}
}

/* Give back TOKENS booked and not used: never into the past. */
static void
tpm_refund(struct keystate *ks, int64_t tpm, int64_t tokens, int64_t now_ns)
{
	int64_t tat, ntat, sub = tpm_ns(tpm, tokens);

	tat = atomic_load_explicit(&ks->tpm_tat_ns, memory_order_relaxed);
	do {
		if (tat <= now_ns)
			return;
		ntat = tat - sub < now_ns ? now_ns : tat - sub;
	} while (!atomic_compare_exchange_weak_explicit(&ks->tpm_tat_ns,
	    &tat, ntat, memory_order_relaxed, memory_order_relaxed));
}

int
ks_budget_hold(struct keystate *ks, int64_t period, int64_t budget,
    int64_t micro_usd)
{
	int64_t held;

	if (micro_usd <= 0)
		return ks_spend(ks, period) < budget ? 0 : -1;
	held = atomic_load_explicit(&ks->held, memory_order_relaxed);
	for (;;) {
		/* charges add to the spend before they leave held (ks_charge):
		 * a settling request is counted twice here, never not at all */
		if (ks_spend(ks, period) + held + micro_usd > budget)
			return -1;
		if (atomic_compare_exchange_weak_explicit(&ks->held, &held,
		    held + micro_usd, memory_order_acq_rel,
		    memory_order_relaxed))
			return 0;
	}
}

int64_t
ks_held(struct keystate *ks)
{
	return atomic_load_explicit(&ks->held, memory_order_relaxed);
}

void
ks_tpm_add(struct keystate *ks, int64_t tpm, int64_t tokens, int64_t now_ns)
{
	int64_t tat, ntat, add;

	if (tpm <= 0 || tokens <= 0)
		return;
	add = tpm_ns(tpm, tokens);
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
ks_charge(struct keystate *ks, const struct ks_hold *hold, int64_t tpm,
    int64_t tokens, int period_kind, int64_t micro_usd, int64_t now_ns,
    time_t now)
{
	time_t	 start, end;
	int64_t	 booked = hold != NULL ? hold->tokens : 0;

	if (tpm > 0 && tokens > booked)
		ks_tpm_add(ks, tpm, tokens - booked, now_ns);
	else if (tpm > 0 && tokens < booked)
		tpm_refund(ks, tpm, booked - (tokens > 0 ? tokens : 0), now_ns);
	if (hold != NULL && hold->tpm_win != 0)
		lease_settle(&ks->lease[LEASE_TPM], hold->tpm_win,
		    (tokens > 0 ? tokens : 0) - booked);
	if (micro_usd > 0 && period_kind != 0)
		ks_spend_add(ks, ks_period(period_kind, now, &start, &end),
		    micro_usd);
	if (hold != NULL && hold->budget_win != 0)
		lease_settle(&ks->lease[LEASE_BUDGET], hold->budget_win,
		    (micro_usd > 0 ? micro_usd : 0) - hold->micro_usd);
	/* after the spend: ks_budget_hold may count it twice, never none */
	if (hold != NULL && hold->micro_usd > 0)
		atomic_fetch_sub_explicit(&ks->held, hold->micro_usd,
		    memory_order_acq_rel);
}
