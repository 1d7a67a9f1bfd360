/*
 * test_spool.c - spool files written by an older sluice replay here: its
 * events were a prefix of today's (fields are only added at the end), so
 * they are read at their own size with the new fields empty (counts
 * unknown, no origin).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/event.h"
#include "sql/spool.h"

static void
write_old_spool(const char *path, int nevents, size_t tail, size_t size,
    size_t fields)
{
	unsigned char	 rec[sizeof(struct usage_event)];
	struct usage_event ev;
	FILE		*f = fopen(path, "w");
	uint32_t	 v[2] = { SPOOL_VERSION, (uint32_t)size };
	int		 i;

	assert_non_null(f);
	assert_int_equal(fwrite(SPOOL_MAGIC, 1, 8, f), 8);
	assert_int_equal(fwrite(v, sizeof(v), 1, f), 1);
	for (i = 0; i < nevents; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.status = (uint16_t)(200 + i);
		ev.prompt_tokens = 10 + i;
		snprintf(ev.model, sizeof(ev.model), "gpt-%d", i);
		snprintf(ev.client_addr, sizeof(ev.client_addr), "10.0.0.%d",
		    i);
		ev.cache_write_5m_tokens = 5 + i;
		ev.reasoning_tokens = 7 + i;
		snprintf(ev.served_model, sizeof(ev.served_model), "snap-%d",
		    i);
		memset(ev.origin_epoch, 'E', sizeof(ev.origin_epoch));
		ev.origin_pos = 99;
		/* the old struct's padding: must not show as a new field */
		memcpy(rec, &ev, fields);
		memset(rec + fields, 'P', size - fields);
		assert_int_equal(fwrite(rec, size, 1, f), 1);
	}
	if (tail > 0)
		assert_int_equal(fwrite(rec, tail, 1, f), 1);
	assert_int_equal(fclose(f), 0);
}

static void
older_size_replays(size_t size, size_t fields)
{
	char			 dir[] = "/tmp/sluice-spool-XXXXXX", path[256];
	char			 err[256];
	struct usage_event	 evs[8];
	struct spool_reader	*r;
	ssize_t			 n;
	int			 i;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/spool-0000000000000001.bin", dir);
	write_old_spool(path, 3, 100, size, fields);
	r = spool_reader_open(path, err, sizeof(err));
	if (r == NULL)
		fail_msg("open: %s", err);
	n = spool_read(r, evs, 8);
	assert_int_equal(n, 3);
	for (i = 0; i < 3; i++) {
		char want[16];

		assert_int_equal(evs[i].status, 200 + i);
		assert_int_equal(evs[i].prompt_tokens, 10 + i);
		snprintf(want, sizeof(want), "gpt-%d", i);
		assert_string_equal(evs[i].model, want);
		if (fields <= SPOOL_EVENT_V1_FIELDS) {
			assert_string_equal(evs[i].client_request_id, "");
			assert_string_equal(evs[i].anthropic_beta, "");
		}
		if (fields <= SPOOL_EVENT_V2_FIELDS) {
			assert_int_equal(evs[i].cache_write_5m_tokens, -1);
			assert_int_equal(evs[i].reasoning_tokens, -1);
			assert_string_equal(evs[i].served_model, "");
		} else {
			assert_int_equal(evs[i].cache_write_5m_tokens, 5 + i);
			assert_int_equal(evs[i].reasoning_tokens, 7 + i);
			snprintf(want, sizeof(want), "snap-%d", i);
			assert_string_equal(evs[i].served_model, want);
		}
		/* no origin: loaded through the conflict check */
		if (fields <= SPOOL_EVENT_V3_FIELDS) {
			assert_int_equal(evs[i].origin_pos, 0);
			assert_int_equal(evs[i].origin_lane, 0);
			assert_int_equal(evs[i].origin_epoch[0], 0);
			assert_int_equal(evs[i].origin_epoch[15], 0);
			assert_string_equal(evs[i].client_format, "");
			assert_string_equal(evs[i].upstream_format, "");
		} else
			assert_int_equal(evs[i].origin_pos, 99);
		/* before the answer cache: no hit, nothing saved */
		assert_int_equal(evs[i].cache_hit, 0);
		assert_int_equal(evs[i].cost_saved_micro_usd, 0);
	}
	assert_int_equal(spool_read(r, evs, 8), 0);
	spool_reader_close(r);
	unlink(path);
	rmdir(dir);
}

static void
test_older_event_sizes_replay(void **state)
{
	(void)state;
	assert_int_equal(SPOOL_EVENT_V2, 696);	/* as written by schema 2 */
	assert_int_equal(SPOOL_EVENT_V3, 848);	/* as written by schema 3 */
	older_size_replays(SPOOL_EVENT_V1, SPOOL_EVENT_V1_FIELDS);
	older_size_replays(SPOOL_EVENT_V2, SPOOL_EVENT_V2_FIELDS);
	older_size_replays(SPOOL_EVENT_V3, SPOOL_EVENT_V3_FIELDS);
	older_size_replays(SPOOL_EVENT_V4, SPOOL_EVENT_V4_FIELDS);
}

static void
test_unknown_event_size_refused(void **state)
{
	char		 dir[] = "/tmp/sluice-spool-XXXXXX", path[256];
	char		 err[256];
	uint32_t	 v[2] = { SPOOL_VERSION, 123 };
	FILE		*f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/spool-0000000000000001.bin", dir);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fwrite(SPOOL_MAGIC, 1, 8, f), 8);
	assert_int_equal(fwrite(v, sizeof(v), 1, f), 1);
	assert_int_equal(fclose(f), 0);
	assert_null(spool_reader_open(path, err, sizeof(err)));
	assert_non_null(strstr(err, "event size 123"));
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_older_event_sizes_replay),
		cmocka_unit_test(test_unknown_event_size_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
