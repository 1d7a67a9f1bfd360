/*
 * parts.h - the monthly partitions of usage_events: made ahead of the
 * rows that need them, and dropped whole once past usage_retention.
 *
 * The collector calls parts_maintain when it connects and every hour;
 * load.c calls parts_ensure inside its transaction for a row whose month
 * may have no partition yet (a spool replayed long after, a clock gone
 * wrong).  Only sql/ includes this.  It never deletes a row from a
 * partition it keeps: retention works in whole months.
 */
#ifndef SLUICE_PARTS_H
#define SLUICE_PARTS_H

#include <stddef.h>
#include <stdint.h>

struct pgsession;

/*
 * How long rows are kept: months or days; both 0 keeps them forever
 * (usage_retention in sluice.conf(5)).
 */
struct parts_retention {
	int		 months;
	int		 days;
};

/*
 * In the transaction open on S: make the partitions of the N UTC months
 * MONTHS[i] (months since January 1970) unless a partition covers them.
 * 0, or -1 with the session's err and SQLSTATE set.
 */
int	 parts_ensure(struct pgsession *s, const int32_t *months, size_t n);

/*
 * In a transaction of its own: make this month's and next month's
 * partitions, then drop every partition that ends before now minus
 * RETENTION.  Each statement waits at most a second for its lock, so a
 * long query on usage_events delays this by an hour, never the load.
 * *LO_US and *HI_US get the span the partitions now cover for certain
 * (the start of this month to the end of the next, in us since the
 * epoch).  0, or -1 with the session's err set; the connection stays up
 * unless it was lost.
 */
int	 parts_maintain(struct pgsession *s, const struct parts_retention *,
	    int64_t now_us, int64_t *lo_us, int64_t *hi_us);

/* The UTC month of TS_US, as months since January 1970. */
int32_t	 parts_month(int64_t ts_us);
/* The start of month M (months since January 1970), in us. */
int64_t	 parts_month_start(int32_t m);

#endif
