/*
 * proctitle.h - what ps shows for each process ("sluice: worker 3"), as
 * nginx and PostgreSQL do.  Called once by main, then by each child.
 */
#ifndef SLUICE_PROCTITLE_H
#define SLUICE_PROCTITLE_H

void	 proctitle_init(int argc, char **argv);
void	 proctitle_set(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

#endif
