/*
 * rlimit.c - RLIMIT_NOFILE for the workers.
 *
 * The shipped init script's 1024 against a max_connections of 4096 made
 * accept fail with EMFILE under load.  sluiced sets the limit itself, as
 * nginx's worker_rlimit_nofile does: to what max_connections and the
 * upstream pools need, or to worker_rlimit_nofile when the operator names
 * a number.  Without a number of the operator's, a limit that cannot be
 * had stops the start: better a clear refusal than a worker that pauses
 * accepting under load.
 */
#include <sys/resource.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "master/rlimit.h"

int
rlimit_nofile_apply(const struct config *cfg, char *err, size_t errlen,
    char *warn, size_t warnlen)
{
	struct rlimit	 rl, want;
	long		 need = cfg_nofile_needed(cfg);
	long		 conns = 2L * cfg->max_connections + 64;

	warn[0] = '\0';
	if (cfg->worker_rlimit_nofile > 0 && cfg->worker_rlimit_nofile < conns)
		snprintf(warn, warnlen, "worker_rlimit_nofile %d is below the "
		    "%ld descriptors max_connections %d needs: workers pause "
		    "accepting when they run out", cfg->worker_rlimit_nofile,
		    conns, cfg->max_connections);
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		snprintf(err, errlen, "getrlimit: %s", strerror(errno));
		return -1;
	}
	if (cfg->worker_rlimit_nofile == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur >= (rlim_t)need)
		return 0;
	want.rlim_cur = (rlim_t)need;
	want.rlim_max = rl.rlim_max == RLIM_INFINITY ||
	    rl.rlim_max > (rlim_t)need ? rl.rlim_max : (rlim_t)need;
	if (setrlimit(RLIMIT_NOFILE, &want) == -1) {
		snprintf(err, errlen, "cannot set the open files limit to %ld "
		    "(hard limit %llu): %s; raise the hard limit (ulimit -Hn, "
		    "LimitNOFILE=) or lower max_connections", need,
		    (unsigned long long)rl.rlim_max, strerror(errno));
		return -1;
	}
	return 0;
}
