/*
 * ctl_spool.c - sluicectl spool replay.
 *
 * The collector replays its spool as soon as PostgreSQL answers, so this
 * is for the spool it could not empty: a host stopped while the database
 * was away, or files copied from a dead one.  It replays exactly as the
 * collector does (sql/load.c: one transaction per file, each event skipped
 * if its ring position is recorded as loaded, the file removed after the
 * commit, a bad file set aside as .bad), so running it twice, or on files
 * the collector loaded already, adds nothing.  The directory's lock keeps it and a running collector
 * apart: whichever opens the spool first owns it until it closes it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "master/ctl_db.h"
#include "master/ctl_spool.h"
#include "sql/load.h"
#include "sql/pgsession.h"
#include "sql/spool.h"

int
ctl_spool_replay(const struct config *cfg, const char *dir)
{
	struct pgsession	 db;
	struct load		 ld;
	struct spool		*sp;
	struct stat		 st;
	char			 path[PATH_MAX], err[512];
	const char		*base;
	uint64_t		 rows, inserted, trows = 0, tnew = 0;
	unsigned		 files = 0, bad = 0;
	enum load_rc		 lrc;
	int			 found, rc = -1;

	if (cfg->database[0] == '\0') {
		fprintf(stderr, "sluicectl: %s: no database configured\n",
		    cfg->path);
		return -1;
	}
	if (dir == NULL || *dir == '\0') {
		fprintf(stderr, "sluicectl: %s: no spool_dir configured\n",
		    cfg->path);
		return -1;
	}
	/* spool_open would create it: a mistyped name is an error here */
	if (stat(dir, &st) == -1) {
		fprintf(stderr, "sluicectl: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if ((sp = spool_open(dir, err, sizeof(err))) == NULL) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return -1;
	}
	if (load_init(&ld, &db) == -1) {
		fprintf(stderr, "sluicectl: out of memory\n");
		spool_close(sp);
		return -1;
	}
	if (ctl_db_connect(cfg, &db) == -1)
		goto out;
	if (load_ready(&db) == -1) {
		fprintf(stderr, "sluicectl: %s\n", db.err);
		goto out;
	}
	for (;;) {
		if ((found = spool_oldest(sp, path, sizeof(path))) == 0)
			break;
		if (found == -1) {
			fprintf(stderr, "sluicectl: listing %s: %s\n", dir,
			    strerror(errno));
			goto out;
		}
		base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 :
		    path;
		lrc = load_file(&ld, sp, path, &rows, &inserted);
		if (lrc == LOAD_BAD) {
			bad++;
			continue;
		}
		if (lrc == LOAD_DOWN) {
			fprintf(stderr, "sluicectl: lost the database loading "
			    "%s: %s\n", base, db.err);
			goto out;
		}
		if (lrc == LOAD_RETRY) {
			fprintf(stderr, "sluicectl: %s left in the spool\n",
			    base);
			goto out;
		}
		files++;
		trows += rows;
		tnew += inserted;
		printf("%s: %" PRIu64 " rows, %" PRIu64 " new\n", base, rows,
		    inserted);
		/* removing it failed: it would come back first forever */
		if (lrc == LOAD_KEPT)
			goto out;
	}
	rc = bad > 0 ? -1 : 0;
 out:
	printf("loaded %u files from %s: %" PRIu64 " rows, %" PRIu64
	    " new%s\n", files, dir, trows, tnew, rc == 0 ? "" :
	    "; the spool is not empty");
	if (bad > 0)
		fprintf(stderr, "sluicectl: %u files set aside as .bad\n", bad);
	load_free(&ld);
	pgs_close(&db);
	spool_close(sp);
	return rc;
}
