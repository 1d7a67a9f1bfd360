/*
 * load.c - the one way usage events enter PostgreSQL.
 *
 * Loading must be idempotent, because an event may be loaded twice: a
 * batch re-read after a collector crash, a spool file whose unlink was
 * lost, a spool replayed by hand.  So every load is COPY into a
 * temporary staging table without constraints, then INSERT ... ON
 * CONFLICT (request_id) DO NOTHING into usage_events, in one
 * transaction; the rows already there are counted and dropped.
 *
 * A spool file is loaded whole or not at all, and removed only after the
 * commit: a crash in between replays it again, which costs nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "sql/copyrow.h"
#include "sql/load.h"
#include "sql/pgsession.h"
#include "sql/schema.h"
#include "sql/spool.h"

#define LOAD_COPY_CHUNK		(256 * 1024)	/* bytes per PQputCopyData */
#define LOAD_READ_CHUNK		1024		/* events read from a file */

int
load_init(struct load *ld, struct pgsession *db)
{
	memset(ld, 0, sizeof(*ld));
	ld->db = db;
	/* a row may take the buffer past a chunk, then the trailer */
	ld->buf = malloc(LOAD_COPY_CHUNK + COPY_ROW_MAX + COPY_TRAILER_LEN);
	ld->rbuf = calloc(LOAD_READ_CHUNK, sizeof(*ld->rbuf));
	if (ld->buf == NULL || ld->rbuf == NULL) {
		load_free(ld);
		return -1;
	}
	return 0;
}

void
load_free(struct load *ld)
{
	free(ld->buf);
	free(ld->rbuf);
	ld->buf = NULL;
	ld->rbuf = NULL;
}

/*
 * The text we send is UTF-8 (copyrow.c makes it so).  A loaded event
 * exists nowhere else once its ring slot or spool file is gone, so
 * commits must be durable whatever the server default is.  The stage has
 * no constraints and empties itself at every commit.
 */
int
load_ready(struct pgsession *s)
{
	int	 version;

	if (PQsetClientEncoding(s->conn, "UTF8") != 0) {
		pgs_set_error(s, PQerrorMessage(s->conn));
		return -1;
	}
	if ((version = schema_init(s)) == -1)
		return -1;
	if (pgs_exec(s, "SET synchronous_commit TO on", PGRES_COMMAND_OK,
	    NULL) == -1 ||
	    pgs_exec(s, "CREATE TEMP TABLE IF NOT EXISTS sluice_stage "
	    "(LIKE usage_events) ON COMMIT DELETE ROWS", PGRES_COMMAND_OK,
	    NULL) == -1)
		return -1;
	return version;
}

int
load_begin(struct load *ld)
{
	if (pgs_exec(ld->db, "BEGIN", PGRES_COMMAND_OK, NULL) == -1 ||
	    pgs_exec(ld->db, "COPY sluice_stage (" COPY_COLUMNS ") FROM "
	    "STDIN (FORMAT binary)", PGRES_COPY_IN, NULL) == -1)
		return -1;
	ld->buflen = copy_header(ld->buf);
	return 0;
}

int
load_put(struct load *ld, const struct usage_event *ev)
{
	ld->buflen += copy_row(ld->buf + ld->buflen, ev);
	if (ld->buflen < LOAD_COPY_CHUNK)
		return 0;
	if (pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1)
		return -1;
	ld->buflen = 0;
	return 0;
}

/* End the COPY, move the stage into usage_events, commit. */
int
load_commit(struct load *ld, uint64_t *inserted)
{
	PGresult	*res;

	ld->buflen += copy_trailer(ld->buf + ld->buflen);
	if (pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1 ||
	    pgs_copy_end(ld->db) == -1)
		return -1;
	ld->buflen = 0;
	if (pgs_exec(ld->db, "INSERT INTO usage_events (" COPY_COLUMNS ") "
	    "SELECT " COPY_COLUMNS " FROM sluice_stage "
	    "ON CONFLICT (request_id) DO NOTHING", PGRES_COMMAND_OK,
	    &res) == -1)
		return -1;
	*inserted = strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return pgs_commit(ld->db);
}

static enum load_rc
load_quarantine(struct spool *sp, const char *path)
{
	if (spool_quarantine(sp, path) == -1) {
		log_warn("renaming %s", path);
		return LOAD_RETRY;
	}
	return LOAD_BAD;
}

/* A statement failed: the rows' fault, or the connection's. */
static enum load_rc
load_failed(struct load *ld)
{
	return pgs_failed(ld->db, now_us() / 1000) == PGS_DATA ?
	    LOAD_BAD : LOAD_DOWN;
}

enum load_rc
load_file(struct load *ld, struct spool *sp, const char *path,
    uint64_t *rows, uint64_t *inserted)
{
	struct spool_reader	*r;
	char			 err[512];
	const char		*base;
	ssize_t			 n, j;

	*rows = *inserted = 0;
	base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
	if ((r = spool_reader_open(path, err, sizeof(err))) == NULL) {
		if (errno != EINVAL) {
			log_warnx("%s", err);
			return LOAD_RETRY;
		}
		log_warnx("%s; setting it aside as %s.bad", err, base);
		return load_quarantine(sp, path);
	}
	if (load_begin(ld) == -1) {
		spool_reader_close(r);
		return load_failed(ld) == LOAD_DOWN ? LOAD_DOWN : LOAD_RETRY;
	}
	while ((n = spool_read(r, ld->rbuf, LOAD_READ_CHUNK)) > 0) {
		for (j = 0; j < n; j++)
			if (load_put(ld, &ld->rbuf[j]) == -1) {
				spool_reader_close(r);
				return load_failed(ld) == LOAD_DOWN ?
				    LOAD_DOWN : LOAD_RETRY;
			}
		*rows += (uint64_t)n;
	}
	spool_reader_close(r);
	if (n == -1) {
		log_warn("reading %s", path);
		pgs_rollback(ld->db);
		return LOAD_RETRY;
	}
	if (load_commit(ld, inserted) == -1) {
		if (load_failed(ld) == LOAD_DOWN)
			return LOAD_DOWN;
		log_warnx("PostgreSQL refused %s: %s; setting it aside as "
		    "%s.bad", base, ld->db->err, base);
		return load_quarantine(sp, path);
	}
	if (spool_remove(sp, path) == -1) {
		/* Loading it again later is harmless. */
		log_warn("removing %s", path);
		return LOAD_KEPT;
	}
	return LOAD_OK;
}
