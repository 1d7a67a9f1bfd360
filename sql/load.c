/*
 * load.c - the one way usage events enter PostgreSQL.
 *
 * An event may be offered twice: a batch re-read after a collector
 * crash (its commit landed, the release of its ring slots did not), a
 * spool file whose unlink was lost, a spool replayed by hand or on
 * another host.  Every event knows where it was: the epoch of the shared
 * segment it was pushed into (shm_epoch), its lane there and its
 * position in the lane, which only grows, whichever process pushed it
 * (a worker, the worker respawned into the same slot, the master
 * metering a dead worker's requests).  So a transaction first claims the
 * positions it holds in sluice_lane_marks (sluice_claim, schema.c),
 * which locks the lanes' rows and answers with the positions already
 * committed; those events are skipped, the rest are COPYed straight into
 * usage_events, and the commit makes the rows and their positions
 * durable together.  Each row is written once: no staging table and no
 * conflict check.
 *
 * What is committed is a set of ranges per lane, in the steady state one
 * range whose end is the lane's high-water mark.  A set, because batches
 * do not always commit in ring order: while the spool is replayed, a lane
 * that is filling up is loaded ahead of the older events in the spool.
 *
 * Two kinds of batch take the old way, COPY into a temporary stage and
 * INSERT ... ON CONFLICT DO NOTHING: events that carry no position
 * (spool files written before schema 4), and a batch whose COPY hits the
 * primary key, which means one of its rows got in without its position:
 * the master meters a dead worker's in-flight requests and may push
 * again the event of a request the worker finished just as it died
 * (master.c, inflight_reap), at a new position.  Such a batch still
 * claims its positions.
 *
 * A row whose month has no partition would make the server refuse the
 * whole COPY.  The collector keeps this month's and next month's made
 * (parts.c) and says so with load_covered; a row outside that span has
 * its month made first, in the same transaction.  A COPY refused for
 * want of a partition all the same (one dropped meanwhile) forgets the
 * span and is tried once more.
 *
 * A spool file is loaded whole or not at all, and removed only after the
 * commit: a crash in between replays it again, which costs nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "sql/copyrow.h"
#include "sql/load.h"
#include "sql/parts.h"
#include "sql/pgsession.h"
#include "sql/schema.h"
#include "sql/spool.h"

#define LOAD_COPY_CHUNK		(256 * 1024)	/* bytes per PQputCopyData */
#define LOAD_LOCK_TIMEOUT	"1s"		/* then spool instead */
#define LOAD_READ_CHUNK		1024		/* events read from a file */

/* One attempt at the transaction: done, or a statement failed. */
enum load_try {
	TRY_OK,
	TRY_SRC,		/* the source failed; rolled back */
	TRY_SQL,		/* see the session's err and SQLSTATE */
};

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
	free(ld->spans);
	free(ld->seen);
	free(ld->months);
	ld->buf = NULL;
	ld->rbuf = NULL;
	ld->spans = ld->seen = NULL;
	ld->months = NULL;
	ld->nspans = ld->spanscap = ld->nseen = ld->seencap = 0;
	ld->nmonths = ld->monthscap = 0;
}

/*
 * The text we send is UTF-8 (copyrow.c makes it so).  A loaded event
 * exists nowhere else once its ring slot or spool file is gone, so
 * commits must be durable whatever the server default is.  The stage,
 * for the conflict check only, has no constraints and empties itself at
 * every commit.
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
	    pgs_exec(s, "SET lock_timeout TO '" LOAD_LOCK_TIMEOUT "'",
	    PGRES_COMMAND_OK, NULL) == -1 ||
	    pgs_exec(s, "CREATE TEMP TABLE IF NOT EXISTS sluice_stage "
	    "(LIKE usage_events) ON COMMIT DELETE ROWS", PGRES_COMMAND_OK,
	    NULL) == -1)
		return -1;
	return version;
}

void
load_covered(struct load *ld, int64_t lo_us, int64_t hi_us)
{
	ld->covered_lo = lo_us;
	ld->covered_hi = hi_us;
}

/* Grow *V (of *CAP elements of SIZE) to hold one more than N. */
static int
load_grow(void *v, size_t *cap, size_t n, size_t size)
{
	void	*p;
	size_t	 ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if ((p = realloc(*(void **)v, ncap * size)) == NULL)
		return -1;
	*(void **)v = p;
	*cap = ncap;
	return 0;
}

/* A row at TS_US: note its month unless its partition is known. */
static int
plan_month(struct load *ld, int64_t ts_us)
{
	int32_t	 m;
	size_t	 i;

	if (ts_us >= ld->covered_lo && ts_us < ld->covered_hi)
		return 0;
	m = parts_month(ts_us);
	for (i = 0; i < ld->nmonths; i++)
		if (ld->months[i] == m)
			return 0;
	if (load_grow(&ld->months, &ld->monthscap, ld->nmonths,
	    sizeof(*ld->months)) == -1)
		return -1;
	ld->months[ld->nmonths++] = m;
	return 0;
}

/*
 * The event at POS of LANE: it extends the lane's last span or starts
 * one after a gap.  A position at or below one already seen (which no
 * collector writes) makes the whole batch take the conflict check.
 */
static int
plan_span(struct load *ld, uint32_t lane, uint64_t pos)
{
	struct load_span	*sp;
	size_t			 i;

	for (i = ld->nspans; i > 0; i--) {
		sp = &ld->spans[i - 1];
		if (sp->lane != lane)
			continue;
		if (pos == sp->hi) {
			sp->hi++;
			return 0;
		}
		if (pos < sp->hi) {
			ld->marked = 0;
			return 0;
		}
		break;
	}
	if (load_grow(&ld->spans, &ld->spanscap, ld->nspans,
	    sizeof(*ld->spans)) == -1)
		return -1;
	sp = &ld->spans[ld->nspans++];
	sp->lane = lane;
	sp->lo = pos;
	sp->hi = pos + 1;
	return 0;
}

static int
epoch_known(const uint8_t *epoch)
{
	static const uint8_t	 zero[LOAD_EPOCH_LEN];

	return epoch != NULL && memcmp(epoch, zero, sizeof(zero)) != 0;
}

/*
 * First pass: count the events, note the months that may need a
 * partition and the spans of positions to claim.  Events of one known
 * epoch at rising positions are "marked"; anything else is not.
 */
static int
load_plan(struct load *ld, struct load_src *src)
{
	const struct usage_event *ev;
	const uint8_t		*epoch;
	uint32_t		 lane;
	uint64_t		 pos;
	int			 r;

	ld->rows = 0;
	ld->nspans = ld->nmonths = 0;
	ld->marked = 1;
	if (src->rewind(src) == -1)
		return -1;
	while ((r = src->next(src, &ev, &epoch, &lane, &pos)) == 1) {
		if (plan_month(ld, copy_ts_us(ev)) == -1)
			return -1;
		if (ld->marked && !epoch_known(epoch))
			ld->marked = 0;
		else if (ld->marked && ld->rows == 0)
			memcpy(ld->epoch, epoch, LOAD_EPOCH_LEN);
		else if (ld->marked && memcmp(ld->epoch, epoch,
		    LOAD_EPOCH_LEN) != 0)
			ld->marked = 0;
		ld->rows++;
		if (ld->marked && plan_span(ld, lane, pos) == -1)
			return -1;
	}
	return r;
}

/* A position the claim said is committed already. */
static int
load_seen(const struct load *ld, uint32_t lane, uint64_t pos)
{
	size_t	 i;

	for (i = 0; i < ld->nseen; i++)
		if (ld->seen[i].lane == lane && pos >= ld->seen[i].lo &&
		    pos < ld->seen[i].hi)
			return 1;
	return 0;
}

/* The epoch as uuid text into BUF of at least 37 bytes. */
static void
epoch_text(const uint8_t *e, char *buf)
{
	static const char	 hex[] = "0123456789abcdef";
	int			 i, j;

	for (i = j = 0; i < LOAD_EPOCH_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[j++] = '-';
		buf[j++] = hex[e[i] >> 4];
		buf[j++] = hex[e[i] & 15];
	}
	buf[j] = '\0';
}

/* Append the spans' FIELD (0 lane, 1 lo, 2 hi) as an array literal. */
static char *
put_array(char *p, const struct load *ld, int field)
{
	const struct load_span	*sp;
	size_t			 i;

	*p++ = '\'';
	*p++ = '{';
	for (i = 0; i < ld->nspans; i++) {
		sp = &ld->spans[i];
		p += sprintf(p, "%s%" PRIu64, i > 0 ? "," : "",
		    field == 0 ? (uint64_t)sp->lane : field == 1 ? sp->lo :
		    sp->hi);
	}
	*p++ = '}';
	*p++ = '\'';
	return p;
}

/* Claim the planned spans; what was committed before goes to seen. */
static int
load_claim(struct load *ld)
{
	PGresult	*res;
	char		*sql, *p, ep[37];
	size_t		 len;
	int		 i, n, rc;

	ld->nseen = 0;
	if (!ld->marked || ld->nspans == 0)
		return 0;
	/* three numbers of at most 20 digits and a comma per span */
	len = 160 + ld->nspans * 3 * 21;
	if ((sql = malloc(len)) == NULL) {
		pgs_set_error(ld->db, "out of memory");
		return -1;
	}
	epoch_text(ld->epoch, ep);
	p = sql + sprintf(sql, "SELECT seen_lane, seen_lo, seen_hi FROM "
	    "sluice_claim('%s', ", ep);
	p = put_array(p, ld, 0);
	*p++ = ',';
	p = put_array(p, ld, 1);
	*p++ = ',';
	p = put_array(p, ld, 2);
	strcpy(p, ")");
	rc = pgs_exec(ld->db, sql, PGRES_TUPLES_OK, &res);
	free(sql);
	if (rc == -1)
		return -1;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		if (load_grow(&ld->seen, &ld->seencap, ld->nseen,
		    sizeof(*ld->seen)) == -1) {
			PQclear(res);
			pgs_set_error(ld->db, "out of memory");
			return -1;
		}
		ld->seen[ld->nseen].lane = (uint32_t)strtoul(
		    PQgetvalue(res, i, 0), NULL, 10);
		ld->seen[ld->nseen].lo = strtoull(PQgetvalue(res, i, 1),
		    NULL, 10);
		ld->seen[ld->nseen].hi = strtoull(PQgetvalue(res, i, 2),
		    NULL, 10);
		ld->nseen++;
	}
	PQclear(res);
	return 0;
}

/* Second pass: every event not seen, as COPY rows. */
static enum load_try
load_send(struct load *ld, struct load_src *src, uint64_t *sent)
{
	const struct usage_event *ev;
	const uint8_t		*epoch;
	uint32_t		 lane;
	uint64_t		 pos;
	int			 r;

	*sent = 0;
	if (src->rewind(src) == -1)
		return TRY_SRC;
	ld->buflen = copy_header(ld->buf);
	while ((r = src->next(src, &ev, &epoch, &lane, &pos)) == 1) {
		if (ld->nseen > 0 && load_seen(ld, lane, pos))
			continue;
		ld->buflen += copy_row(ld->buf + ld->buflen, ev);
		(*sent)++;
		if (ld->buflen < LOAD_COPY_CHUNK)
			continue;
		if (pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1)
			return TRY_SQL;
		ld->buflen = 0;
	}
	if (r == -1)
		return TRY_SRC;
	ld->buflen += copy_trailer(ld->buf + ld->buflen);
	if (pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1 ||
	    pgs_copy_end(ld->db) == -1)
		return TRY_SQL;
	ld->buflen = 0;
	return TRY_OK;
}

/*
 * One attempt: partitions, claim, COPY (into the table, or through the
 * stage when CHECKED), commit.
 */
static enum load_try
load_try(struct load *ld, struct load_src *src, int checked,
    uint64_t *inserted)
{
	PGresult	*res;
	enum load_try	 t;
	uint64_t	 sent;
	int		 saved;

	if (pgs_exec(ld->db, "BEGIN", PGRES_COMMAND_OK, NULL) == -1 ||
	    parts_ensure(ld->db, ld->months, ld->nmonths) == -1 ||
	    load_claim(ld) == -1 ||
	    pgs_exec(ld->db, checked ?
	    "COPY sluice_stage (" COPY_COLUMNS ") FROM STDIN (FORMAT binary)" :
	    "COPY usage_events (" COPY_COLUMNS ") FROM STDIN (FORMAT binary)",
	    PGRES_COPY_IN, NULL) == -1)
		return TRY_SQL;
	if ((t = load_send(ld, src, &sent)) != TRY_OK) {
		if (t == TRY_SRC) {
			saved = errno;
			pgs_rollback(ld->db);
			errno = saved;
		}
		return t;
	}
	*inserted = sent;
	if (checked) {
		if (pgs_exec(ld->db, "INSERT INTO usage_events ("
		    COPY_COLUMNS ") SELECT " COPY_COLUMNS " FROM sluice_stage "
		    "ON CONFLICT (request_id, ts_start) DO NOTHING",
		    PGRES_COMMAND_OK, &res) == -1)
			return TRY_SQL;
		*inserted = strtoull(PQcmdTuples(res), NULL, 10);
		PQclear(res);
	}
	return pgs_commit(ld->db) == -1 ? TRY_SQL : TRY_OK;
}

enum load_tx
load_run(struct load *ld, struct load_src *src, uint64_t *rows,
    uint64_t *inserted)
{
	enum load_try	 t;
	int		 checked, replanned = 0;

	*rows = *inserted = 0;
	if (load_plan(ld, src) == -1)
		return LOAD_TX_SRC;
	*rows = ld->rows;
	if (ld->rows == 0)
		return LOAD_TX_OK;
	checked = !ld->marked;
	for (;;) {
		if ((t = load_try(ld, src, checked, inserted)) == TRY_OK)
			return LOAD_TX_OK;
		if (t == TRY_SRC)
			return LOAD_TX_SRC;
		if (PQstatus(ld->db->conn) != CONNECTION_OK)
			break;
		if (!checked && strcmp(ld->db->sqlstate, "23505") == 0) {
			log_warnx("a row of a batch of %" PRIu64 " is in "
			    "usage_events already but not its ring position: "
			    "loading the batch through the conflict check",
			    ld->rows);
			pgs_rollback(ld->db);
			checked = 1;
			continue;
		}
		if (!replanned && strcmp(ld->db->sqlstate, "23514") == 0) {
			/* no partition for a row: check every month */
			pgs_rollback(ld->db);
			load_covered(ld, 0, 0);
			replanned = 1;
			if (load_plan(ld, src) == -1)
				return LOAD_TX_SRC;
			continue;
		}
		break;
	}
	switch (pgs_failed(ld->db, now_us() / 1000)) {
	case PGS_DATA:
		return LOAD_TX_DATA;
	case PGS_BUSY:
		return LOAD_TX_BUSY;
	case PGS_LOST:
		break;
	}
	return LOAD_TX_DOWN;
}

int
load_stream_begin(struct load *ld)
{
	ld->rows = 0;
	ld->nspans = ld->nmonths = ld->nseen = 0;
	ld->marked = 1;
	if (pgs_exec(ld->db, "BEGIN", PGRES_COMMAND_OK, NULL) == -1 ||
	    pgs_exec(ld->db, "COPY usage_events (" COPY_COLUMNS ") FROM "
	    "STDIN (FORMAT binary)", PGRES_COPY_IN, NULL) == -1)
		return -1;
	ld->buflen = copy_header(ld->buf);
	return 0;
}

int
load_stream_put(struct load *ld, struct load_src *src, uint64_t *rows)
{
	const struct usage_event *ev;
	const uint8_t		*epoch;
	uint32_t		 lane;
	uint64_t		 pos;
	int64_t			 ts;
	int			 r;

	*rows = 0;
	if (src->rewind(src) == -1)
		return -1;
	while ((r = src->next(src, &ev, &epoch, &lane, &pos)) == 1) {
		ts = copy_ts_us(ev);
		if (ts < ld->covered_lo || ts >= ld->covered_hi ||
		    !epoch_known(epoch) || (ld->rows > 0 &&
		    memcmp(ld->epoch, epoch, LOAD_EPOCH_LEN) != 0))
			return 1;
		if (ld->rows == 0)
			memcpy(ld->epoch, epoch, LOAD_EPOCH_LEN);
		if (plan_span(ld, lane, pos) == -1 || !ld->marked)
			return 1;
		ld->rows++;
		(*rows)++;
		ld->buflen += copy_row(ld->buf + ld->buflen, ev);
		if (ld->buflen < LOAD_COPY_CHUNK)
			continue;
		if (pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1)
			return -1;
		ld->buflen = 0;
	}
	if (r == -1)
		return 1;
	if (ld->buflen > 0 &&
	    pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1)
		return -1;
	ld->buflen = 0;
	return pgs_copy_flush(ld->db);
}

int
load_stream_end(struct load *ld)
{
	ld->buflen += copy_trailer(ld->buf + ld->buflen);
	if (pgs_copy_put(ld->db, ld->buf, ld->buflen) == -1)
		return -1;
	ld->buflen = 0;
	if (pgs_copy_end(ld->db) == -1 || load_claim(ld) == -1)
		return -1;
	if (ld->nseen > 0)
		return 1;	/* rows of those are in already: load_run skips them */
	return pgs_commit(ld->db);
}

void
load_stream_abort(struct load *ld, int64_t now_ms)
{
	ld->buflen = 0;
	if (PQstatus(ld->db->conn) == CONNECTION_OK)
		pgs_rollback(ld->db);
	if (PQstatus(ld->db->conn) != CONNECTION_OK)
		pgs_down(ld->db, now_ms, 1);
}

/* A spool file as a source: its events carry their origin. */
struct file_src {
	struct load_src		 src;
	struct load		*ld;
	const char		*path;
	struct spool_reader	*r;
	int			 fresh;		/* r opened, not read yet */
	ssize_t			 n;
	ssize_t			 i;
};

static int
file_rewind(struct load_src *s)
{
	struct file_src	*f = (struct file_src *)s;
	char		 err[512];

	if (f->fresh) {
		f->fresh = 0;
		return 0;
	}
	spool_reader_close(f->r);
	if ((f->r = spool_reader_open(f->path, err, sizeof(err))) == NULL)
		return -1;
	f->n = f->i = 0;
	return 0;
}

static int
file_next(struct load_src *s, const struct usage_event **ev,
    const uint8_t **epoch, uint32_t *lane, uint64_t *pos)
{
	struct file_src		*f = (struct file_src *)s;
	const struct usage_event *e;

	if (f->i == f->n) {
		f->n = spool_read(f->r, f->ld->rbuf, LOAD_READ_CHUNK);
		f->i = 0;
		if (f->n <= 0)
			return f->n == 0 ? 0 : -1;
	}
	e = &f->ld->rbuf[f->i++];
	*ev = e;
	*epoch = e->origin_epoch;
	*lane = e->origin_lane;
	*pos = e->origin_pos;
	return 1;
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

enum load_rc
load_file(struct load *ld, struct spool *sp, const char *path,
    uint64_t *rows, uint64_t *inserted)
{
	struct file_src		 f;
	char			 err[512];
	const char		*base;
	enum load_tx		 rc;

	*rows = *inserted = 0;
	base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
	memset(&f, 0, sizeof(f));
	f.src.rewind = file_rewind;
	f.src.next = file_next;
	f.ld = ld;
	f.path = path;
	/* opened once first to tell a file that is not ours from a failure */
	if ((f.r = spool_reader_open(path, err, sizeof(err))) == NULL) {
		if (errno != EINVAL) {
			log_warnx("%s", err);
			return LOAD_RETRY;
		}
		log_warnx("%s; setting it aside as %s.bad", err, base);
		return load_quarantine(sp, path);
	}
	f.fresh = 1;
	rc = load_run(ld, &f.src, rows, inserted);
	spool_reader_close(f.r);
	switch (rc) {
	case LOAD_TX_OK:
		break;
	case LOAD_TX_SRC:
		log_warn("reading %s", path);
		return LOAD_RETRY;
	case LOAD_TX_DOWN:
		return LOAD_DOWN;
	case LOAD_TX_BUSY:
		log_warnx("%s: %s; trying again later", base, ld->db->err);
		return LOAD_RETRY;
	case LOAD_TX_DATA:
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
