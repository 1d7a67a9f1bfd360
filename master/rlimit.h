/*
 * rlimit.h - the open-files limit the workers run with.  Called by
 * sluiced.c before the first fork and by master.c on reload (the new
 * generation inherits it).  Never lowers the hard limit.
 */
#ifndef SLUICE_RLIMIT_H
#define SLUICE_RLIMIT_H

#include <stddef.h>

#include "common/config.h"

/*
 * Set RLIMIT_NOFILE to what the configuration needs (cfg_nofile_needed),
 * raising the hard limit when allowed.  0 done; -1 it cannot be had
 * (ERR says why and what to do).  WARN gets a warning, or "", when
 * worker_rlimit_nofile is below what max_connections needs.
 */
int	 rlimit_nofile_apply(const struct config *, char *err, size_t errlen,
	    char *warn, size_t warnlen);

#endif
