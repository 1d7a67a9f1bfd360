/*
 * test_cache.c - the answer cache arena: a stored entry is found by its
 * key and only by it, expires, is evicted by CLOCK when its set is full,
 * is not stored past the entry bound, is flushed per owner; two writers
 * of one key leave one entry; and a writer SIGKILLed in each state never
 * leaves an entry another process reads torn, nor a slot lost for good.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdlib.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm/cache.h"

#define ENTRY	1024

static void
mkkey(uint8_t *k, uint64_t set, uint8_t tag)
{
	memset(k, tag, CACHE_KEY_LEN);
	memcpy(k, &set, sizeof(set));	/* the first 8 bytes pick the set */
}

static int
store(struct cache_arena *a, const uint8_t *k, const char *owner,
    const char *body, int64_t now, int64_t ttl)
{
	struct cache_put p;

	if (cache_put_begin(a, k, owner, getpid(), now, &p) == -1)
		return -1;
	if (cache_put_append(&p, body, strlen(body)) == -1) {
		cache_put_abort(&p);
		return -1;
	}
	return cache_put_commit(&p, now + ttl);
}

/* The entry at K as a string in BUF, or "" on a miss. */
static const char *
fetch(struct cache_arena *a, const uint8_t *k, int64_t now, char *buf)
{
	struct cache_view v;

	buf[0] = '\0';
	if (cache_get(a, k, now, &v) == 1) {
		memcpy(buf, v.data, v.len);
		buf[v.len] = '\0';
		if (!cache_get_still(&v))
			buf[0] = '\0';
		else
			cache_count_hit(a);
	}
	return buf;
}

static void
test_store_then_hit_only_by_key(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	struct cache_stats	 st;
	uint8_t			 k1[CACHE_KEY_LEN], k2[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1];

	(void)state;
	assert_non_null(a);
	mkkey(k1, 7, 1);
	mkkey(k2, 7, 2);	/* same set, another key */
	assert_string_equal(fetch(a, k1, 1000, buf), "");
	assert_int_equal(store(a, k1, "alice", "{\"a\":1}", 1000, 500), 0);
	assert_string_equal(fetch(a, k1, 1001, buf), "{\"a\":1}");
	assert_string_equal(fetch(a, k2, 1001, buf), "");
	cache_stats(a, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.stores, 1);
	assert_int_equal(st.entries, 1);
	cache_destroy(a);
}

static void
test_entry_expires_at_its_ttl(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	uint8_t			 k[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1];

	(void)state;
	mkkey(k, 3, 9);
	assert_int_equal(store(a, k, "", "x", 1000, 500), 0);
	assert_string_equal(fetch(a, k, 1499, buf), "x");
	assert_string_equal(fetch(a, k, 1500, buf), "");
	/* an expired entry of the key is replaced in place */
	assert_int_equal(store(a, k, "", "y", 2000, 500), 0);
	assert_string_equal(fetch(a, k, 2001, buf), "y");
	cache_destroy(a);
}

static void
test_too_big_is_not_stored(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	struct cache_put	 p;
	struct cache_stats	 st;
	uint8_t			 k[CACHE_KEY_LEN];
	char			 big[ENTRY + 1], buf[ENTRY + 1];

	(void)state;
	mkkey(k, 1, 1);
	memset(big, 'b', sizeof(big));
	assert_int_equal(cache_put_begin(a, k, "", getpid(), 10, &p), 0);
	assert_int_equal(cache_put_append(&p, big, ENTRY), 0);
	assert_int_equal(cache_put_append(&p, big, 1), -1);
	assert_int_equal(cache_put_commit(&p, 1000), -1);
	assert_string_equal(fetch(a, k, 11, buf), "");
	cache_stats(a, &st);
	assert_int_equal(st.too_big, 1);
	assert_int_equal(st.entries, 0);
	/* exactly the bound is stored */
	assert_int_equal(cache_put_begin(a, k, "", getpid(), 10, &p), 0);
	assert_int_equal(cache_put_append(&p, big, ENTRY), 0);
	assert_int_equal(cache_put_commit(&p, 1000), 0);
	cache_destroy(a);
}

static void
test_full_set_evicts_by_clock(void **state)
{
	struct cache_arena	*a;
	struct cache_stats	 st;
	uint8_t			 k[CACHE_WAYS + 1][CACHE_KEY_LEN];
	char			 buf[ENTRY + 1];
	int			 i, gone = -1;

	(void)state;
	/* exactly one set */
	a = cache_create(CACHE_WAYS * (ENTRY + 256), ENTRY);
	assert_non_null(a);
	assert_int_equal(cache_nslots(a), CACHE_WAYS);
	for (i = 0; i <= CACHE_WAYS; i++)
		mkkey(k[i], (uint64_t)i, (uint8_t)(i + 1));
	for (i = 0; i < CACHE_WAYS; i++)
		assert_int_equal(store(a, k[i], "", "v", 10, 1000), 0);
	/* every entry but the 4th was read: CLOCK gives them a second
	 * chance, so the 4th goes */
	for (i = 0; i < CACHE_WAYS; i++)
		if (i != 3)
			assert_string_equal(fetch(a, k[i], 11, buf), "v");
	assert_int_equal(store(a, k[CACHE_WAYS], "", "new", 12, 1000), 0);
	for (i = 0; i < CACHE_WAYS; i++)
		if (fetch(a, k[i], 13, buf)[0] == '\0') {
			assert_int_equal(gone, -1);
			gone = i;
		}
	assert_int_equal(gone, 3);
	assert_string_equal(fetch(a, k[CACHE_WAYS], 13, buf), "new");
	cache_stats(a, &st);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.entries, CACHE_WAYS);
	cache_destroy(a);
}

static void
test_flush_by_owner_and_all(void **state)
{
	struct cache_arena	*a = cache_create(256 * 1024, ENTRY);
	struct cache_put	 p;
	uint8_t			 k1[CACHE_KEY_LEN], k2[CACHE_KEY_LEN],
				 k3[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1];

	(void)state;
	mkkey(k1, 1, 1);
	mkkey(k2, 2, 2);
	mkkey(k3, 3, 3);
	assert_int_equal(store(a, k1, "alice", "a", 10, 1000), 0);
	assert_int_equal(store(a, k2, "bob", "b", 10, 1000), 0);
	assert_int_equal(cache_flush(a, "alice"), 1);
	assert_string_equal(fetch(a, k1, 11, buf), "");
	assert_string_equal(fetch(a, k2, 11, buf), "b");
	/* a write under way when a flush comes is not committed */
	assert_int_equal(cache_put_begin(a, k3, "bob", getpid(), 12, &p), 0);
	assert_int_equal(cache_put_append(&p, "c", 1), 0);
	assert_int_equal(cache_flush(a, NULL), 1);
	assert_int_equal(cache_put_commit(&p, 1000), -1);
	assert_string_equal(fetch(a, k2, 13, buf), "");
	assert_string_equal(fetch(a, k3, 13, buf), "");
	cache_destroy(a);
}

static void
test_second_writer_of_a_key_is_turned_away(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	struct cache_put	 p1, p2;
	uint8_t			 k[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1];

	(void)state;
	mkkey(k, 5, 5);
	assert_int_equal(cache_put_begin(a, k, "", getpid(), 10, &p1), 0);
	assert_int_equal(cache_put_begin(a, k, "", getpid(), 10, &p2), -1);
	/* not readable while written */
	assert_string_equal(fetch(a, k, 11, buf), "");
	assert_int_equal(cache_put_append(&p1, "one", 3), 0);
	assert_int_equal(cache_put_commit(&p1, 1000), 0);
	assert_string_equal(fetch(a, k, 11, buf), "one");
	cache_destroy(a);
}

/* Many processes store one key at once: one entry, whole. */
static void
test_concurrent_writers_leave_one_entry(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	struct cache_stats	 st;
	uint8_t			 k[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1], body[ENTRY];
	pid_t			 pids[8];
	int			 i, r, status;

	(void)state;
	mkkey(k, 11, 4);
	for (i = 0; i < 8; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			memset(body, 'a' + i, 600);
			body[600] = '\0';
			for (r = 0; r < 2000; r++)
				(void)store(a, k, "", body, 10 + r, 1000000);
			_exit(0);
		}
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	cache_stats(a, &st);
	assert_true(st.entries <= 1);
	assert_true(st.stores >= 1);
	if (st.entries == 1) {
		fetch(a, k, 100, buf);
		assert_int_equal(strlen(buf), 600);
		for (i = 1; i < 600; i++)
			assert_int_equal(buf[i], buf[0]);
	}
	cache_destroy(a);
}

/*
 * A writer killed at each point of a store: claimed, half written, fully
 * written but not committed.  No reader sees the entry; a later writer
 * takes the slot back (its writer is gone), and the entry it stores is
 * whole.
 */
static void
test_writer_killed_in_each_state(void **state)
{
	struct cache_arena	*a;
	uint8_t			 k[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1], half[512];
	int			 fds[2], stage, status;
	pid_t			 pid;
	char			 c;

	(void)state;
	memset(half, 'h', sizeof(half));
	for (stage = 0; stage < 3; stage++) {
		/* one set, every slot of it taken by the dead writer's key
		 * or by others, so the slot must come back */
		a = cache_create(CACHE_WAYS * (ENTRY + 256), ENTRY);
		assert_non_null(a);
		mkkey(k, 0, 0x42);
		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct cache_put p;

			close(fds[0]);
			if (cache_put_begin(a, k, "dead", getpid(), 10, &p)
			    == -1)
				_exit(1);
			if (stage >= 1)
				cache_put_append(&p, half, sizeof(half));
			if (stage >= 2)
				cache_put_append(&p, half, sizeof(half));
			(void)write(fds[1], "x", 1);
			for (;;)
				pause();
		}
		close(fds[1]);
		assert_int_equal(read(fds[0], &c, 1), 1);
		close(fds[0]);
		/* alive and writing: readers miss, writers of the key wait */
		assert_string_equal(fetch(a, k, 11, buf), "");
		assert_int_equal(store(a, k, "", "live", 11, 1000), -1);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_string_equal(fetch(a, k, 12, buf), "");
		/* its writer is gone: the key can be stored again, whole */
		assert_int_equal(store(a, k, "", "after", 12, 1000), 0);
		assert_string_equal(fetch(a, k, 13, buf), "after");
		cache_destroy(a);
	}
}

/* A reader's copy taken while a writer replaced the entry is refused. */
static void
test_reader_refuses_a_copy_overwritten_meanwhile(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	struct cache_view	 v;
	struct cache_put	 p;
	uint8_t			 k[CACHE_KEY_LEN];

	(void)state;
	mkkey(k, 2, 2);
	assert_int_equal(store(a, k, "", "old", 10, 1000), 0);
	assert_int_equal(cache_get(a, k, 11, &v), 1);
	/* a no-cache refresh claims the same slot while the copy is made */
	assert_int_equal(cache_put_begin(a, k, "", getpid(), 11, &p), 0);
	assert_int_equal(cache_put_append(&p, "new", 3), 0);
	assert_false(cache_get_still(&v));
	assert_int_equal(cache_put_commit(&p, 1000), 0);
	assert_false(cache_get_still(&v));
	cache_destroy(a);
}

static void
test_create_refuses_what_cannot_hold_a_set(void **state)
{
	(void)state;
	errno = 0;
	assert_null(cache_create(4096, ENTRY));
	assert_int_equal(errno, EINVAL);
	assert_null(cache_create(1 << 20, 100));
	assert_int_equal(errno, EINVAL);
}

/*
 * Keys alike in the bytes the index keeps as a tag (8 to 15) and unlike
 * after them: each finds its own entry, never the other's.
 */
static void
test_a_shared_tag_never_answers_another_key(void **state)
{
	struct cache_arena	*a = cache_create(64 * 1024, ENTRY);
	uint8_t			 k1[CACHE_KEY_LEN], k2[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1];

	(void)state;
	assert_non_null(a);
	mkkey(k1, 0, 7);
	memcpy(k2, k1, sizeof(k2));
	k2[CACHE_KEY_LEN - 1] ^= 1;
	assert_int_equal(store(a, k1, "a", "one", 1, 100), 0);
	assert_string_equal(fetch(a, k2, 2, buf), "");
	assert_int_equal(store(a, k2, "a", "two", 1, 100), 0);
	assert_string_equal(fetch(a, k1, 2, buf), "one");
	assert_string_equal(fetch(a, k2, 2, buf), "two");
	cache_destroy(a);
}

/*
 * A deferred store takes no slot until its first append: on a full set,
 * one given up before any byte evicts nothing, and one that appends
 * claims then, with its header zeroed in front of what it appended.
 */
static void
test_a_deferred_store_claims_at_its_first_append(void **state)
{
	struct cache_arena	*a = cache_create(CACHE_WAYS * (ENTRY + 256),
				    ENTRY);
	struct cache_put	 p;
	struct cache_stats	 st;
	uint8_t			 k[CACHE_KEY_LEN];
	char			 buf[ENTRY + 1], *hd;
	int			 i;

	(void)state;
	assert_non_null(a);
	for (i = 0; i < CACHE_WAYS; i++) {
		mkkey(k, 0, (uint8_t)(i + 1));
		assert_int_equal(store(a, k, "", "full", 10, 1000), 0);
	}
	mkkey(k, 0, 99);
	cache_put_defer(a, k, "", getpid(), 11, 4, &p);
	assert_null(cache_put_bytes(&p));
	cache_put_abort(&p);
	cache_put_defer(a, k, "", getpid(), 11, 4, &p);
	assert_int_equal(cache_put_commit(&p, 1000), -1);
	cache_stats(a, &st);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.entries, CACHE_WAYS);
	/* appended to: it claims (evicting one), behind its 4-byte header */
	cache_put_defer(a, k, "", getpid(), 11, 4, &p);
	assert_int_equal(cache_put_append(&p, "body", 4), 0);
	assert_non_null(hd = cache_put_bytes(&p));
	assert_memory_equal(hd, "\0\0\0\0body", 8);
	memcpy(hd, "HEAD", 4);
	assert_int_equal(cache_put_commit(&p, 1000), 0);
	assert_string_equal(fetch(a, k, 12, buf), "HEADbody");
	cache_stats(a, &st);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.entries, CACHE_WAYS);
	/* a flush between the start and the first append drops the store */
	mkkey(k, 0, 98);
	cache_put_defer(a, k, "", getpid(), 13, 4, &p);
	cache_flush(a, NULL);
	assert_int_equal(cache_put_append(&p, "late", 4), 0);
	assert_int_equal(cache_put_commit(&p, 1000), -1);
	assert_string_equal(fetch(a, k, 14, buf), "");
	cache_destroy(a);
}

/*
 * The arena's pages are there from the start (MAP_POPULATE in the
 * master), so that no miss's store zeroes a page on the request path.
 */
static void
test_arena_is_resident_from_the_start(void **state)
{
	struct cache_arena	*a = cache_create(4 << 20, ENTRY);
	size_t			 pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t			 len = cache_bytes(a) / 2, n = len / pg, i, got = 0;
	unsigned char		*vec;

	(void)state;
	assert_non_null(a);
	assert_non_null(vec = calloc(n, 1));
	assert_int_equal(mincore(a, len, vec), 0);
	for (i = 0; i < n; i++)
		got += vec[i] & 1;
	free(vec);
	assert_int_equal(got, n);
	cache_destroy(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_then_hit_only_by_key),
		cmocka_unit_test(test_entry_expires_at_its_ttl),
		cmocka_unit_test(test_too_big_is_not_stored),
		cmocka_unit_test(test_full_set_evicts_by_clock),
		cmocka_unit_test(test_flush_by_owner_and_all),
		cmocka_unit_test(test_second_writer_of_a_key_is_turned_away),
		cmocka_unit_test(test_concurrent_writers_leave_one_entry),
		cmocka_unit_test(test_writer_killed_in_each_state),
		cmocka_unit_test(test_reader_refuses_a_copy_overwritten_meanwhile),
		cmocka_unit_test(test_create_refuses_what_cannot_hold_a_set),
		cmocka_unit_test(test_arena_is_resident_from_the_start),
		cmocka_unit_test(test_a_shared_tag_never_answers_another_key),
		cmocka_unit_test(test_a_deferred_store_claims_at_its_first_append),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
