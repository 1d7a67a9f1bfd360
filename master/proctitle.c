/*
 * proctitle.c - set what ps(1) shows, as nginx and PostgreSQL do: the
 * argv area (and the environment strings after it, moved out of the way)
 * is overwritten with the title.
 */
#include <sys/prctl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master/proctitle.h"

extern char	**environ;

static char	*title_start;
static size_t	 title_len;

void
proctitle_init(int argc, char **argv)
{
	char	*end;
	char	**env;
	int	 i, n;

	if (argc < 1 || argv[0] == NULL)
		return;
	end = argv[0] + strlen(argv[0]) + 1;
	for (i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (n = 0; environ[n] != NULL; n++)
		;
	if (n > 0 && environ[0] == end) {
		if ((env = calloc((size_t)n + 1, sizeof(*env))) == NULL)
			return;
		for (i = 0; i < n; i++) {
			if (environ[i] == end)
				end = environ[i] + strlen(environ[i]) + 1;
			env[i] = strdup(environ[i]);
		}
		environ = env;
	}
	/* argv[1..] now point into the area; copy them out too */
	for (i = 1; i < argc; i++)
		argv[i] = strdup(argv[i]);
	title_start = argv[0];
	title_len = (size_t)(end - argv[0]);
}

void
proctitle_set(const char *fmt, ...)
{
	char	 buf[256];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	prctl(PR_SET_NAME, buf + (strncmp(buf, "sluice: ", 8) == 0 ? 8 : 0));
	if (title_start == NULL || title_len < 2)
		return;
	memset(title_start, 0, title_len);
	snprintf(title_start, title_len, "%s", buf);
}
