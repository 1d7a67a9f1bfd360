/*
 * test_log.c - one message is one log line, whatever it carries: a CR or
 * LF from a client or an upstream must not forge a line of its own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"

static void
test_control_bytes_never_split_a_line(void **state)
{
	char	 path[] = "/tmp/sluice-log-XXXXXX", buf[4096];
	int	 fd = mkstemp(path), lines = 0;
	FILE	*f;

	(void)state;
	assert_true(fd != -1);
	close(fd);
	assert_int_equal(log_init(path, LOGL_DEBUG), 0);
	log_warnx("model %s", "gpt-4o\r\n2026-01-01T00:00:00Z [1] forged");
	log_debug("tab\there, bell\a, del\x7f");
	assert_non_null(f = fopen(path, "r"));
	while (fgets(buf, sizeof(buf), f) != NULL) {
		lines++;
		assert_null(strchr(buf, '\r'));
		if (lines == 1)
			assert_non_null(strstr(buf,
			    "model gpt-4o??2026-01-01T00:00:00Z [1] forged\n"));
		else
			assert_non_null(strstr(buf, "tab?here, bell?, del?\n"));
	}
	fclose(f);
	assert_int_equal(lines, 2);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_bytes_never_split_a_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
