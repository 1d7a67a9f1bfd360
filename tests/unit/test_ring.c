/*
 * test_ring.c - the usage event ring and the shared segment it lives in.
 *
 * Single-process tests pin the lane's arithmetic (order, wrap-around, full
 * lane, partial release).  The fork tests are the point of the design: a
 * producer and a consumer in different processes sharing only the mmap'd
 * segment, one of them killed with SIGKILL, must never show the consumer a
 * torn or missing event.  Every event carries its absolute position in
 * prompt_tokens and a checksum of all its bytes in cost_micro_usd, so a
 * torn copy, a lost event or a repeat is caught.
 *
 * Children never call cmocka: they report through their exit status.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "common/event.h"
#include "shm/ring.h"
#include "shm/shm.h"

#define TEST_ALARM	60		/* seconds, for every fork test */
#define SPSC_EVENTS	2000000ULL
#define KILL_ROUNDS	20

static uint64_t	 ev_sum(const struct usage_event *);
static void	 ev_fill(struct usage_event *, uint64_t);
static int	 ev_ok(const struct usage_event *, uint64_t);
static void	 child_setup(void);
static pid_t	 spawn_producer(struct ring_lane *, uint64_t);
static int	 consume(struct ring_lane *, uint64_t *, uint64_t);
static void	 reap(pid_t, int);
static double	 now(void);

/* A 64-bit mix of every byte, with the checksum field taken as zero. */
static uint64_t
ev_sum(const struct usage_event *ev)
{
	struct usage_event	 c;
	uint64_t		 h, w;
	size_t			 i;

	_Static_assert(sizeof(c) % sizeof(w) == 0, "event is whole words");
	c = *ev;
	c.cost_micro_usd = 0;
	h = 0xcbf29ce484222325ULL;
	for (i = 0; i < sizeof(c); i += sizeof(w)) {
		memcpy(&w, (const char *)&c + i, sizeof(w));
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

/* Every field, padding included, depends on SEQ. */
static void
ev_fill(struct usage_event *ev, uint64_t seq)
{
	memset(ev, (int)(seq & 0xff), sizeof(*ev));
	memcpy(ev->request_id, &seq, sizeof(seq));
	memcpy(ev->request_id + 8, &seq, sizeof(seq));
	ev->ts_start_us = (int64_t)(seq * 1000003);
	ev->prompt_tokens = (int64_t)seq;
	ev->completion_tokens = (int64_t)(seq * 7);
	ev->cached_tokens = -1;
	ev->bytes_in = (int64_t)(seq ^ 0x5555);
	ev->bytes_out = (int64_t)(seq << 3);
	ev->latency_us = (int64_t)(seq % 100000);
	ev->worker_pid = (int32_t)getpid();
	ev->status = 200 + seq % 5;
	memset(ev->key_name, 'a' + seq % 26, sizeof(ev->key_name) - 1);
	ev->key_name[seq % sizeof(ev->key_name)] = '\0';
	memset(ev->model, 'A' + seq % 26, sizeof(ev->model));
	ev->model[sizeof(ev->model) - 1] = '\0';
	ev->cost_micro_usd = (int64_t)ev_sum(ev);
}

static int
ev_ok(const struct usage_event *ev, uint64_t seq)
{
	return ev->prompt_tokens == (int64_t)seq &&
	    ev->cost_micro_usd == (int64_t)ev_sum(ev);
}

static void
child_setup(void)
{
	/* Never outlive a parent that failed or timed out. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(TEST_ALARM);
}

/*
 * A producer that pushes from the lane's tail on, COUNT events or forever,
 * spinning politely when full (the test may spin, the library never does).
 * Exit 0 if its own count of full pushes matches the lane's drops delta.
 */
static pid_t
spawn_producer(struct ring_lane *l, uint64_t count)
{
	struct usage_event	 ev;
	uint64_t		 seq, seq0, full, drops0;
	pid_t			 pid;

	if ((pid = fork()) != 0)
		return pid;
	child_setup();
	seq0 = atomic_load_explicit(&l->tail, memory_order_relaxed);
	drops0 = atomic_load_explicit(&l->drops, memory_order_relaxed);
	full = 0;
	for (seq = seq0; count == 0 || seq - seq0 < count; seq++) {
		ev_fill(&ev, seq);
		while (ring_push(l, &ev) == -1) {
			full++;
			sched_yield();
		}
	}
	_exit(atomic_load(&l->drops) - drops0 == full ? 0 : 1);
}

/*
 * Read and release what is readable, checking each event is number *NEXT.
 * Stops once *NEXT reaches UNTIL (0: after one pass).  -1 on a bad event.
 */
static int
consume(struct ring_lane *l, uint64_t *next, uint64_t until)
{
	struct usage_event	 ev;
	uint64_t		 head, n, i;

	do {
		n = ring_readable(l, &head);
		if (n == 0) {
			if (until == 0)
				return 0;
			sched_yield();
			continue;
		}
		if (head != *next)
			return -1;
		for (i = 0; i < n; i++) {
			memcpy(&ev, ring_at(l, head + i), sizeof(ev));
			if (!ev_ok(&ev, *next)) {
				print_message("bad event at %llu\n",
				    (unsigned long long)*next);
				return -1;
			}
			(*next)++;
		}
		ring_release(l, head + n);
	} while (until != 0 && *next < until);
	return 0;
}

/* Wait for PID; it must have exited 0 (SIG 0) or died of SIG. */
static void
reap(pid_t pid, int sig)
{
	int	 status;

	while (waitpid(pid, &status, 0) == -1)
		assert_int_equal(errno, EINTR);
	if (sig == 0) {
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	} else {
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), sig);
	}
}

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
test_shm_create_rejects_bad_input(void **state)
{
	static const uint32_t	 bad_slots[] = { 0, 3, 6, 1000, 65535 };
	struct shm_region_req	 r[SHM_REGIONS_MAX + 1];
	size_t			 i;

	for (i = 0; i < sizeof(bad_slots) / sizeof(bad_slots[0]); i++) {
		errno = 0;
		assert_null(shm_create(2, bad_slots[i]));
		assert_int_equal(errno, EINVAL);
	}
	errno = 0;
	assert_null(shm_create(0, 8));
	assert_int_equal(errno, EINVAL);

	memset(r, 0, sizeof(r));
	r[0].name = "counters";
	r[0].size = 64;
	r[1].name = "counters";
	r[1].size = 64;
	errno = 0;
	assert_null(shm_create_regions(1, 8, r, 2));	/* repeated */
	assert_int_equal(errno, EINVAL);
	r[1].name = "a_name_far_too_long";
	assert_null(shm_create_regions(1, 8, r, 2));
	r[1].name = "";
	assert_null(shm_create_regions(1, 8, r, 2));
	r[1].name = NULL;
	assert_null(shm_create_regions(1, 8, r, 2));
	r[1].name = "keys";
	r[1].size = 0;
	assert_null(shm_create_regions(1, 8, r, 2));
	assert_null(shm_create_regions(1, 8, r, SHM_REGIONS_MAX + 1));
	assert_null(shm_create_regions(1, 8, NULL, 1));
	assert_int_equal(errno, EINVAL);
}

static void
test_shm_layout(void **state)
{
	struct shm_region_req	 r[2] = {
		{ "counters", 100 }, { "keys", 4096 },
	};
	struct shm_segment	*seg;
	struct ring_lane	*l;
	char			*base, *c, *k;
	size_t			 sz, i;
	uint32_t		 n;

	seg = shm_create_regions(4, 8, r, 2);
	assert_non_null(seg);
	base = (char *)seg;
	assert_int_equal(shm_nlanes(seg), 4);
	assert_int_equal(shm_lane_slots(seg), 8);
	assert_int_equal(ring_lane_size(8) % 64, 0);
	for (n = 0; n < 4; n++) {
		l = shm_lane(seg, n);
		assert_non_null(l);
		assert_int_equal((uintptr_t)l % 64, 0);
		assert_int_equal((char *)l - (char *)shm_lane(seg, 0),
		    n * ring_lane_size(8));
		assert_int_equal(l->nslots, 8);
		assert_int_equal(l->mask, 7);
		assert_int_equal(l->tail, 0);
		assert_int_equal(l->head, 0);
	}
	assert_null(shm_lane(seg, 4));

	c = shm_region(seg, "counters", &sz);
	assert_non_null(c);
	assert_int_equal(sz, 100);
	k = shm_region(seg, "keys", NULL);
	assert_non_null(k);
	assert_null(shm_region(seg, "nope", NULL));
	assert_int_equal((uintptr_t)c % 64, 0);
	assert_int_equal((uintptr_t)k % 64, 0);
	/* After the last lane, apart, inside the mapping, zeroed. */
	assert_true(c >= (char *)shm_lane(seg, 3) + ring_lane_size(8));
	assert_true(k >= c + 100);
	assert_true(k + 4096 <= base + shm_size(seg));
	for (i = 0; i < 4096; i++)
		assert_int_equal(k[i], 0);
	shm_destroy(seg);
	shm_destroy(NULL);
}

/*
 * A lane's positions restart at 0 in every segment, so the epoch is what
 * tells one segment's events from another's: a UUIDv7, never twice.
 */
static void
test_shm_epoch_is_a_fresh_uuidv7(void **state)
{
	struct shm_segment	*a, *b;
	const uint8_t		*ea, *eb;
	uint64_t		 ms = 0;
	int			 i;

	a = shm_create(1, 8);
	b = shm_create(1, 8);
	assert_non_null(a);
	assert_non_null(b);
	ea = shm_epoch(a);
	eb = shm_epoch(b);
	assert_int_equal(ea[6] >> 4, 7);		/* version 7 */
	assert_int_equal(ea[8] >> 6, 2);		/* variant 10 */
	assert_memory_not_equal(ea, eb, SHM_EPOCH_LEN);
	for (i = 0; i < 6; i++)
		ms = ms << 8 | ea[i];
	assert_true(ms > (uint64_t)time(NULL) * 1000 - 60000);
	assert_true(ms <= (uint64_t)time(NULL) * 1000 + 1000);
	shm_destroy(a);
	shm_destroy(b);
}

static void
test_regions_shared_across_fork(void **state)
{
	struct shm_region_req	 r = { "counters", sizeof(uint64_t) };
	struct shm_segment	*seg;
	volatile uint64_t	*v;
	pid_t			 pid;

	seg = shm_create_regions(1, 8, &r, 1);
	assert_non_null(seg);
	v = shm_region(seg, "counters", NULL);
	if ((pid = fork()) == 0) {
		*v = 42;
		_exit(0);
	}
	assert_true(pid > 0);
	reap(pid, 0);
	assert_int_equal(*v, 42);
	shm_destroy(seg);
}

static void
test_push_read_order(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 head, i;

	seg = shm_create(1, 8);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	assert_int_equal(ring_readable(l, &head), 0);
	for (i = 0; i < 5; i++) {
		ev_fill(&ev, i);
		assert_int_equal(ring_push(l, &ev), 0);
	}
	assert_int_equal(ring_readable(l, &head), 5);
	assert_int_equal(head, 0);
	for (i = 0; i < 5; i++)
		assert_true(ev_ok(ring_at(l, head + i), i));
	ring_release(l, head + 5);
	assert_int_equal(ring_readable(l, &head), 0);
	assert_int_equal(head, 5);
	assert_int_equal(l->pushes, 5);
	assert_int_equal(l->drops, 0);
	shm_destroy(seg);
}

static void
test_wraparound_many_laps(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 head, next, seq, i, k, lap;

	seg = shm_create(1, 8);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	seq = next = 0;
	for (lap = 0; lap < 5000; lap++) {
		/* 1..8 events a lap, so every slot offset gets used. */
		k = 1 + lap % 8;
		for (i = 0; i < k; i++) {
			ev_fill(&ev, seq++);
			assert_int_equal(ring_push(l, &ev), 0);
		}
		assert_int_equal(ring_readable(l, &head), k);
		assert_int_equal(head, next);
		for (i = 0; i < k; i++)
			assert_true(ev_ok(ring_at(l, head + i), next++));
		ring_release(l, head + k);
	}
	assert_true(next > 1000 * 8);
	assert_int_equal(l->tail, next);
	assert_int_equal(l->drops, 0);
	shm_destroy(seg);
}

/* ring_free says how many pushes fit: the next one past it is a drop. */
static void
test_free_counts_the_pushes_that_fit(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 i;

	seg = shm_create(1, 8);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	assert_int_equal(ring_free(l), 8);
	for (i = 0; i < 8; i++) {
		ev_fill(&ev, i);
		assert_int_equal(ring_push(l, &ev), 0);
		assert_int_equal(ring_free(l), 7 - i);
	}
	assert_int_equal(ring_push(l, &ev), -1);
	assert_int_equal(ring_free(l), 0);
	ring_release(l, 3);
	assert_int_equal(ring_free(l), 3);
	/* a head scribbled past tail leaves no room, not 2^64 of it */
	atomic_store(&l->head, 20);
	assert_int_equal(ring_free(l), 0);
	shm_destroy(seg);
}

static void
test_full_lane_counts_drops(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 head, i;

	seg = shm_create(1, 8);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	for (i = 0; i < 8; i++) {
		ev_fill(&ev, i);
		assert_int_equal(ring_push(l, &ev), 0);
	}
	for (i = 0; i < 3; i++) {
		ev_fill(&ev, 100 + i);
		assert_int_equal(ring_push(l, &ev), -1);
	}
	assert_int_equal(l->drops, 3);
	assert_int_equal(l->pushes, 8);
	assert_int_equal(l->tail, 8);
	/* A drop overwrote nothing. */
	assert_int_equal(ring_readable(l, &head), 8);
	for (i = 0; i < 8; i++)
		assert_true(ev_ok(ring_at(l, i), i));

	/* Freeing two slots makes room for exactly two. */
	ring_release(l, 2);
	for (i = 8; i < 10; i++) {
		ev_fill(&ev, i);
		assert_int_equal(ring_push(l, &ev), 0);
	}
	ev_fill(&ev, 10);
	assert_int_equal(ring_push(l, &ev), -1);
	assert_int_equal(l->drops, 4);
	assert_int_equal(l->pushes, 10);
	assert_int_equal(ring_readable(l, &head), 8);
	assert_int_equal(head, 2);
	for (i = 2; i < 10; i++)
		assert_true(ev_ok(ring_at(l, i), i));
	shm_destroy(seg);
}

static void
test_release_partial(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 head, i;

	seg = shm_create(1, 8);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	for (i = 0; i < 6; i++) {
		ev_fill(&ev, i);
		assert_int_equal(ring_push(l, &ev), 0);
	}
	assert_int_equal(ring_readable(l, &head), 6);
	/* Only two were made durable: the rest are read again. */
	ring_release(l, head + 2);
	assert_int_equal(ring_readable(l, &head), 4);
	assert_int_equal(head, 2);
	for (i = 0; i < 4; i++)
		assert_true(ev_ok(ring_at(l, head + i), 2 + i));
	/* Two freed slots, two pushed, wrapping to slots 0 and 1. */
	for (i = 6; i < 10; i++) {
		ev_fill(&ev, i);
		assert_int_equal(ring_push(l, &ev), 0);
	}
	ev_fill(&ev, 10);
	assert_int_equal(ring_push(l, &ev), -1);
	assert_int_equal(ring_readable(l, &head), 8);
	for (i = 0; i < 8; i++)
		assert_true(ev_ok(ring_at(l, head + i), 2 + i));
	ring_release(l, head + 8);
	assert_int_equal(ring_readable(l, &head), 0);
	assert_int_equal(head, 10);
	shm_destroy(seg);
}

static void
test_lanes_are_independent(void **state)
{
	struct shm_segment	*seg;
	struct usage_event	 ev;
	uint64_t		 head, i;

	seg = shm_create(2, 8);
	assert_non_null(seg);
	for (i = 0; i < 9; i++) {
		ev_fill(&ev, i);
		(void)ring_push(shm_lane(seg, 0), &ev);
	}
	assert_int_equal(shm_lane(seg, 0)->drops, 1);
	ev_fill(&ev, 0);
	assert_int_equal(ring_push(shm_lane(seg, 1), &ev), 0);
	assert_int_equal(ring_readable(shm_lane(seg, 1), &head), 1);
	assert_true(ev_ok(ring_at(shm_lane(seg, 1), 0), 0));
	assert_int_equal(shm_lane(seg, 1)->drops, 0);
	shm_destroy(seg);
}

/* What a producer killed mid-memcpy leaves: a half slot past tail. */
static void
test_half_written_slot_is_invisible(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 head, next;

	seg = shm_create(1, 8);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	ev_fill(&ev, 0);
	assert_int_equal(ring_push(l, &ev), 0);
	ev_fill(&ev, 1);
	memcpy(&l->slots[1 & l->mask], &ev, sizeof(ev) / 2);

	assert_int_equal(ring_readable(l, &head), 1);
	next = 0;
	assert_int_equal(consume(l, &next, 0), 0);
	assert_int_equal(next, 1);

	/* The next producer overwrites the half slot whole. */
	ev_fill(&ev, 1);
	assert_int_equal(ring_push(l, &ev), 0);
	assert_int_equal(consume(l, &next, 0), 0);
	assert_int_equal(next, 2);
	shm_destroy(seg);
}

static void
test_fork_spsc_two_million(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	uint64_t		 next;
	double			 t0;
	pid_t			 pid;
	int			 rc;

	alarm(TEST_ALARM);
	seg = shm_create(1, 1024);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	t0 = now();
	pid = spawn_producer(l, SPSC_EVENTS);
	assert_true(pid > 0);
	next = 0;
	rc = consume(l, &next, SPSC_EVENTS);
	if (rc == -1)
		kill(pid, SIGKILL);
	reap(pid, rc == -1 ? SIGKILL : 0);
	assert_int_equal(rc, 0);
	print_message("%llu events across fork in %.2fs (%llu full pushes "
	    "retried)\n", SPSC_EVENTS, now() - t0,
	    (unsigned long long)l->drops);

	assert_int_equal(next, SPSC_EVENTS);
	assert_int_equal(l->pushes, SPSC_EVENTS);
	assert_int_equal(l->tail, SPSC_EVENTS);
	assert_int_equal(l->head, SPSC_EVENTS);
	assert_int_equal(consume(l, &next, 0), 0);
	assert_int_equal(next, SPSC_EVENTS);
	shm_destroy(seg);
	alarm(0);
}

static void
test_sigkilled_producer_leaves_committed_prefix(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	uint64_t		 next, tail;
	pid_t			 pid;
	int			 round, rc;

	alarm(TEST_ALARM);
	seg = shm_create(1, 256);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	next = 0;
	for (round = 0; round < KILL_ROUNDS; round++) {
		/* Each producer starts from the tail its predecessor left. */
		pid = spawn_producer(l, 0);
		assert_true(pid > 0);
		rc = consume(l, &next, next + 2000 + 997 * round);
		kill(pid, SIGKILL);
		reap(pid, SIGKILL);
		assert_int_equal(rc, 0);

		/* What it committed is whole and in order; nothing more. */
		assert_int_equal(consume(l, &next, 0), 0);
		tail = atomic_load(&l->tail);
		assert_int_equal(next, tail);
		assert_true(tail - l->pushes <= (uint64_t)round + 1);
	}

	/* A last producer finishes normally on the same lane. */
	tail = atomic_load(&l->tail);
	pid = spawn_producer(l, 10000);
	assert_true(pid > 0);
	rc = consume(l, &next, tail + 10000);
	if (rc == -1)
		kill(pid, SIGKILL);
	reap(pid, rc == -1 ? SIGKILL : 0);
	assert_int_equal(rc, 0);
	assert_int_equal(next, tail + 10000);
	assert_int_equal(atomic_load(&l->tail), next);
	shm_destroy(seg);
	alarm(0);
}

static int
bell_rung(int fd, int ms)
{
	struct pollfd	 p = { fd, POLLIN, 0 };

	return poll(&p, 1, ms) == 1;
}

/*
 * An armed bell rings on the next push into any lane, once; a lane that
 * holds events is counted by the arm (no sleep then); an unarmed bell
 * stays quiet.
 */
static void
test_bell_rings_on_the_first_push_after_arming(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*lanes[2];
	struct usage_event	 ev;
	int			 fd;

	seg = shm_create(2, 8);
	assert_non_null(seg);
	lanes[0] = shm_lane(seg, 0);
	lanes[1] = shm_lane(seg, 1);
	fd = ring_bell_fd(lanes[0]);
	assert_true(fd != -1);
	assert_int_equal(ring_bell_fd(lanes[1]), fd);
	ev_fill(&ev, 0);

	assert_int_equal(ring_push(lanes[1], &ev), 0);
	assert_false(bell_rung(fd, 0));		/* nobody asleep */
	assert_int_equal(ring_bell_arm(lanes, 2), 1);	/* work: no sleep */
	ring_bell_disarm(lanes, 2);
	ring_release(lanes[1], 1);

	assert_int_equal(ring_bell_arm(lanes, 2), 0);
	assert_false(bell_rung(fd, 0));
	assert_int_equal(ring_push(lanes[1], &ev), 0);
	assert_true(bell_rung(fd, 0));
	assert_int_equal(atomic_load(&lanes[1]->asleep), 0);
	/* the other lane's bell is still armed, until the consumer wakes */
	assert_int_equal(atomic_load(&lanes[0]->asleep), 1);
	ring_bell_disarm(lanes, 2);
	ring_bell_drain(fd);
	assert_false(bell_rung(fd, 0));
	assert_int_equal(ring_push(lanes[0], &ev), 0);
	assert_false(bell_rung(fd, 0));
	assert_int_equal(atomic_load(&lanes[0]->pushes), 1);
	assert_int_equal(atomic_load(&lanes[1]->pushes), 2);
	shm_destroy(seg);
}

/*
 * A producer in another process pushes BELL_EVENTS events with pauses of
 * 0 to 60 us, so that the consumer runs out and goes to sleep thousands
 * of times, each time racing a push.  The consumer sleeps on the bell
 * with a 2 s timeout: a timeout while the lane holds events is a wake-up
 * the protocol lost.
 */
#define BELL_EVENTS	30000ULL

static void
test_bell_never_misses_a_push(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l;
	struct usage_event	 ev;
	uint64_t		 next = 0, seq, head;
	unsigned		 sleeps = 0, lost = 0, r = 12345;
	pid_t			 pid;
	int			 fd;

	alarm(TEST_ALARM);
	seg = shm_create(1, 1024);
	assert_non_null(seg);
	l = shm_lane(seg, 0);
	fd = ring_bell_fd(l);
	assert_true(fd != -1);
	if ((pid = fork()) == 0) {
		child_setup();
		for (seq = 0; seq < BELL_EVENTS; seq++) {
			ev_fill(&ev, seq);
			while (ring_push(l, &ev) == -1)
				sched_yield();
			r = r * 1103515245 + 12345;
			if ((r >> 16) % 4 == 0)
				usleep((r >> 8) % 60);
		}
		_exit(0);
	}
	assert_true(pid > 0);
	while (next < BELL_EVENTS) {
		assert_int_equal(consume(l, &next, 0), 0);
		if (next == BELL_EVENTS)
			break;
		ring_bell_drain(fd);
		if (ring_bell_arm(&l, 1) == 0) {
			sleeps++;
			if (!bell_rung(fd, 2000) && ring_readable(l, &head) > 0)
				lost++;
		}
		ring_bell_disarm(&l, 1);
	}
	reap(pid, 0);
	print_message("%u sleeps\n", sleeps);
	assert_int_equal(lost, 0);
	assert_true(sleeps > 100);
	assert_int_equal(next, BELL_EVENTS);
	shm_destroy(seg);
	alarm(0);
}

/* Pages [P, P+LEN) spans. */
static size_t
pages(const void *p, size_t len)
{
	size_t		 pg = (size_t)sysconf(_SC_PAGESIZE);

	return ((uintptr_t)p % pg + len + pg - 1) / pg;
}

/* Pages of [P, P+LEN) resident now (mincore). */
static size_t
resident(const void *p, size_t len)
{
	size_t		 pg = (size_t)sysconf(_SC_PAGESIZE), n, i, got = 0;
	uintptr_t	 start = (uintptr_t)p & ~(uintptr_t)(pg - 1);
	unsigned char	*vec;

	n = pages(p, len);
	len += (uintptr_t)p - start;
	assert_non_null(vec = calloc(n, 1));
	assert_int_equal(mincore((void *)start, len, vec), 0);
	for (i = 0; i < n; i++)
		got += vec[i] & 1;
	free(vec);
	return got;
}

/*
 * A worker prefaults its lane before the first push, so that no push
 * takes a page fault: before, a new lane holds no page; after, every page
 * of its slots is there, and the other lanes are left alone.
 */
static void
test_prefault_makes_the_lane_resident(void **state)
{
	struct shm_segment	*seg;
	struct ring_lane	*l0, *l1;
	size_t			 pg = (size_t)sysconf(_SC_PAGESIZE), len;

	(void)state;
	assert_non_null(seg = shm_create(2, 4096));
	l0 = shm_lane(seg, 0);
	l1 = shm_lane(seg, 1);
	len = 4096 * sizeof(struct usage_event);
	assert_true(resident(&l0->slots[8], len - 16 * pg) == 0);
	ring_lane_prefault(l0);
	assert_int_equal(resident(l0->slots, len), pages(l0->slots, len));
	/* the neighbour's pages stay unallocated but for the shared edge */
	assert_true(resident(&l1->slots[8], len - 16 * pg) == 0);
	shm_destroy(seg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shm_create_rejects_bad_input),
		cmocka_unit_test(test_shm_layout),
		cmocka_unit_test(test_shm_epoch_is_a_fresh_uuidv7),
		cmocka_unit_test(test_regions_shared_across_fork),
		cmocka_unit_test(test_push_read_order),
		cmocka_unit_test(test_wraparound_many_laps),
		cmocka_unit_test(test_full_lane_counts_drops),
		cmocka_unit_test(test_free_counts_the_pushes_that_fit),
		cmocka_unit_test(test_release_partial),
		cmocka_unit_test(test_lanes_are_independent),
		cmocka_unit_test(test_half_written_slot_is_invisible),
		cmocka_unit_test(test_fork_spsc_two_million),
		cmocka_unit_test(test_sigkilled_producer_leaves_committed_prefix),
		cmocka_unit_test(test_bell_rings_on_the_first_push_after_arming),
		cmocka_unit_test(test_bell_never_misses_a_push),
		cmocka_unit_test(test_prefault_makes_the_lane_resident),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
