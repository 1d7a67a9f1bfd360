/*
 * test_tickets.c - the shared session ticket keys: which keys a worker
 * may encrypt and decrypt with as the master rotates them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shm/tickets.h"

static void
key_of(int n, struct ticket_key *k)
{
	memset(k, n, sizeof(*k));
}

static void
test_rotation_keeps_the_previous_key(void **state)
{
	struct tickets_region	*r = calloc(1, tickets_size());
	struct ticket_key	 k, want[6];
	int			 i;

	(void)state;
	assert_non_null(r);
	tickets_init(r);
	assert_int_equal(tickets_current(r, &k), -1);	/* none before one */
	key_of(1, &want[1]);
	assert_int_equal(tickets_find(r, want[1].name, &k), 0);
	for (i = 1; i <= 5; i++) {
		key_of(i, &want[i]);
		tickets_publish(r, &want[i], i * 1000);
		assert_int_equal(tickets_rotations(r), (uint64_t)i);
		assert_int_equal(tickets_current(r, &k), 0);
		assert_memory_equal(&k, &want[i], sizeof(k));
		/* the current key: a ticket under it is fine as it is */
		assert_int_equal(tickets_find(r, want[i].name, &k), 1);
		assert_memory_equal(&k, &want[i], sizeof(k));
		if (i >= 2) {
			/* the previous one: accepted, and renewed */
			assert_int_equal(tickets_find(r, want[i - 1].name, &k),
			    2);
			assert_memory_equal(&k, &want[i - 1], sizeof(k));
		}
		if (i >= 3)	/* older: a full handshake */
			assert_int_equal(tickets_find(r, want[i - 2].name, &k),
			    0);
	}
	free(r);
}

static void
test_a_slot_being_written_is_not_read(void **state)
{
	struct tickets_region	*r = calloc(1, tickets_size());
	struct ticket_key	 k, a;

	(void)state;
	assert_non_null(r);
	tickets_init(r);
	key_of(7, &a);
	tickets_publish(r, &a, 1);
	/* a rotation that stopped half-way: the sequence number is odd */
	atomic_fetch_add(&r->slot[1].seq, 1);
	assert_int_equal(tickets_current(r, &k), -1);
	assert_int_equal(tickets_find(r, a.name, &k), 0);
	atomic_fetch_add(&r->slot[1].seq, 1);
	assert_int_equal(tickets_current(r, &k), 0);
	free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rotation_keeps_the_previous_key),
		cmocka_unit_test(test_a_slot_being_written_is_not_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
