/*
 * ctl_db.c - sluicectl's connection to the usage database.
 */
#include <stdio.h>

#include "common/config.h"
#include "master/ctl_db.h"
#include "sql/pgsession.h"

int
ctl_db_connect(const struct config *cfg, struct pgsession *s)
{
	if (cfg->database[0] == '\0') {
		fprintf(stderr, "sluicectl: %s: no database configured\n",
		    cfg->path);
		return -1;
	}
	pgs_init(s, cfg->database, "sluicectl");
	if (pgs_connect(s) == -1) {
		fprintf(stderr, "sluicectl: connecting to the database: %s\n",
		    s->err);
		return -1;
	}
	return 0;
}
