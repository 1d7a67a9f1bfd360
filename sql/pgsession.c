/*
 * pgsession.c - a PostgreSQL connection that comes and goes.
 *
 * The collector must keep moving the ring while the server is away, so it
 * never waits on a connect: PQconnectStartParams and PQconnectPoll are
 * stepped from its loop, an attempt that has not finished within 5 s is
 * abandoned, and the next one waits 100 ms, then twice as long each time
 * up to 5 s.  An outage is logged once when it starts, then at debug
 * level, so that a database down for an hour does not fill the log.
 *
 * Our connection parameters come first and the operator's conninfo
 * (expanded from dbname) after them, so that anything the operator says
 * wins: TCP keepalives and a user timeout notice a server that vanished
 * without a reset within seconds rather than the kernel's two hours.
 *
 * Errors are kept on one line, because they go into log lines and into
 * the collector's last_error that /metrics and `sluicectl status` show.
 */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "sql/pgsession.h"

#define PGS_BACKOFF_MIN_MS	100
#define PGS_BACKOFF_MAX_MS	5000
#define PGS_CONNECT_MS		5000	/* give up on one connect attempt */

static PGconn	*pgs_start(struct pgsession *, int);
static int	 pgs_ready(struct pgsession *);
static void	 pgs_res_error(struct pgsession *, PGresult *);
static void	 pgs_notice(void *, const char *);

void
pgs_init(struct pgsession *s, const char *conninfo, const char *appname)
{
	memset(s, 0, sizeof(*s));
	s->conninfo = conninfo;
	s->appname = appname;
	s->backoff_ms = PGS_BACKOFF_MIN_MS;
	s->state = conninfo[0] == '\0' ? PGS_NONE : PGS_DOWN;
}

void
pgs_step(struct pgsession *s, int64_t now)
{
	struct pollfd	 pfd;

	switch (s->state) {
	case PGS_NONE:
	case PGS_UP:
		return;
	case PGS_DOWN:
		if (now < s->next_connect)
			return;
		if ((s->conn = pgs_start(s, 1)) == NULL) {
			pgs_down(s, now, 0);
			return;
		}
		s->state = PGS_CONNECTING;
		s->poll = PGRES_POLLING_WRITING;
		s->connect_started = now;
		return;
	case PGS_CONNECTING:
		break;
	}

	if (now - s->connect_started > PGS_CONNECT_MS) {
		pgs_set_error(s, "connection attempt timed out");
		pgs_down(s, now, 0);
		return;
	}
	if (pgs_pollfd(s, &pfd) && poll(&pfd, 1, 0) <= 0)
		return;
	s->poll = PQconnectPoll(s->conn);
	switch (s->poll) {
	case PGRES_POLLING_OK:
		if (pgs_ready(s) == -1)
			pgs_down(s, now, 0);
		break;
	case PGRES_POLLING_FAILED:
		pgs_set_error(s, PQerrorMessage(s->conn));
		pgs_down(s, now, 0);
		break;
	default:
		break;
	}
}

int
pgs_pollfd(const struct pgsession *s, struct pollfd *pfd)
{
	if (s->state != PGS_CONNECTING || PQsocket(s->conn) < 0)
		return 0;
	pfd->fd = PQsocket(s->conn);
	pfd->events = s->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
	pfd->revents = 0;
	return 1;
}

int64_t
pgs_due(const struct pgsession *s)
{
	if (s->state == PGS_DOWN)
		return s->next_connect;
	if (s->state == PGS_CONNECTING)
		return s->connect_started + PGS_CONNECT_MS + 1;
	return INT64_MAX;
}

void
pgs_down(struct pgsession *s, int64_t now, int lost)
{
	if (lost)
		log_warnx("lost PostgreSQL: %s", s->err);
	else if (!s->down_logged)
		log_warnx("PostgreSQL unreachable: %s; retrying in the "
		    "background", s->err);
	else
		log_debug("PostgreSQL still unreachable: %s", s->err);
	s->down_logged = 1;
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	s->state = PGS_DOWN;
	s->next_connect = now + s->backoff_ms;
	s->backoff_ms *= 2;
	if (s->backoff_ms > PGS_BACKOFF_MAX_MS)
		s->backoff_ms = PGS_BACKOFF_MAX_MS;
}

void
pgs_try_now(struct pgsession *s)
{
	if (s->state == PGS_DOWN)
		s->next_connect = 0;
}

int
pgs_connect(struct pgsession *s)
{
	if (s->state == PGS_NONE) {
		pgs_set_error(s, "no database configured");
		return -1;
	}
	if ((s->conn = pgs_start(s, 0)) == NULL)
		return -1;
	if (pgs_ready(s) == -1) {
		pgs_close(s);
		return -1;
	}
	return 0;
}

void
pgs_close(struct pgsession *s)
{
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	if (s->state != PGS_NONE)
		s->state = PGS_DOWN;
}

/* A connection under way (ASYNC) or made; NULL with err set. */
static PGconn *
pgs_start(struct pgsession *s, int async)
{
	static const char *const keys[] = {
		"fallback_application_name", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", NULL
	};
	const char	*vals[] = {
		s->appname, "1", "10", "5", "3", "15000", s->conninfo, NULL
	};
	PGconn		*conn;

	conn = async ? PQconnectStartParams(keys, vals, 1) :
	    PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		pgs_set_error(s, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD) {
		pgs_set_error(s, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* Connected: let the owner make it ready, then it is up. */
static int
pgs_ready(struct pgsession *s)
{
	PQsetNoticeProcessor(s->conn, pgs_notice, NULL);
	if (s->ready != NULL && s->ready(s, s->arg) == -1)
		return -1;
	s->state = PGS_UP;
	s->backoff_ms = PGS_BACKOFF_MIN_MS;
	s->down_logged = 0;
	return 0;
}

/* Server notices are not errors; keep them out of stderr. */
static void
pgs_notice(void *arg, const char *msg)
{
	size_t	 len = strlen(msg);

	if (len > 0 && msg[len - 1] == '\n')
		len--;
	log_debug("PostgreSQL: %.*s", (int)len, msg);
}

void
pgs_set_error(struct pgsession *s, const char *msg)
{
	size_t	 i, j;
	int	 sp = 0;

	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	for (i = j = 0; msg[i] != '\0' && j < sizeof(s->err) - 1; i++) {
		if (msg[i] == '\n' || msg[i] == '\t' || msg[i] == '\r' ||
		    msg[i] == ' ') {
			sp = j > 0;
			continue;
		}
		if (sp && j < sizeof(s->err) - 2)
			s->err[j++] = ' ';
		sp = 0;
		s->err[j++] = msg[i];
	}
	s->err[j] = '\0';
	if (s->error != NULL)
		s->error(s->err, s->arg);
}

int
pgs_exec(struct pgsession *s, const char *sql, ExecStatusType want,
    PGresult **resp)
{
	PGresult	*res;

	s->sqlstate[0] = '\0';
	res = PQexec(s->conn, sql);
	if (res == NULL || PQresultStatus(res) != want) {
		pgs_res_error(s, res);
		PQclear(res);
		return -1;
	}
	if (resp != NULL)
		*resp = res;
	else
		PQclear(res);
	return 0;
}

int
pgs_commit(struct pgsession *s)
{
	PGresult	*res;
	int		 ok;

	if (pgs_exec(s, "COMMIT", PGRES_COMMAND_OK, &res) == -1)
		return -1;
	/* A COMMIT of a failed transaction reports ROLLBACK. */
	ok = strcmp(PQcmdStatus(res), "COMMIT") == 0;
	PQclear(res);
	if (!ok) {
		pgs_set_error(s, "transaction rolled back at COMMIT");
		return -1;
	}
	return 0;
}

void
pgs_rollback(struct pgsession *s)
{
	PGresult	*res;

	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK)
		return;
	/* Still in COPY IN if the failure came from our side. */
	if (PQputCopyEnd(s->conn, "aborted by sluice") == 1)
		while ((res = PQgetResult(s->conn)) != NULL)
			PQclear(res);
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
		res = PQexec(s->conn, "ROLLBACK");
		PQclear(res);
	}
}

enum pgs_fail
pgs_failed(struct pgsession *s, int64_t now)
{
	if (PQstatus(s->conn) == CONNECTION_OK &&
	    (strncmp(s->sqlstate, "22", 2) == 0 ||
	    strncmp(s->sqlstate, "23", 2) == 0)) {
		pgs_rollback(s);
		if (PQstatus(s->conn) == CONNECTION_OK)
			return PGS_DATA;
	}
	if (PQstatus(s->conn) == CONNECTION_OK &&
	    strcmp(s->sqlstate, "55P03") == 0) {
		pgs_rollback(s);
		if (PQstatus(s->conn) == CONNECTION_OK)
			return PGS_BUSY;
	}
	pgs_down(s, now, 1);
	return PGS_LOST;
}

int
pgs_copy_put(struct pgsession *s, const char *buf, size_t len)
{
	if (PQputCopyData(s->conn, buf, (int)len) != 1) {
		s->sqlstate[0] = '\0';
		pgs_set_error(s, PQerrorMessage(s->conn));
		return -1;
	}
	return 0;
}

int
pgs_copy_flush(struct pgsession *s)
{
	if (PQflush(s->conn) != 0) {
		s->sqlstate[0] = '\0';
		pgs_set_error(s, PQerrorMessage(s->conn));
		return -1;
	}
	return 0;
}

int
pgs_copy_end(struct pgsession *s)
{
	PGresult	*res;
	int		 ok = 1;

	if (PQputCopyEnd(s->conn, NULL) != 1) {
		pgs_set_error(s, PQerrorMessage(s->conn));
		return -1;
	}
	while ((res = PQgetResult(s->conn)) != NULL) {
		if (ok && PQresultStatus(res) != PGRES_COMMAND_OK) {
			pgs_res_error(s, res);
			ok = 0;
		}
		PQclear(res);
	}
	return ok ? 0 : -1;
}

/* The server's message and SQLSTATE, or libpq's when there is no result. */
static void
pgs_res_error(struct pgsession *s, PGresult *res)
{
	const char	*msg = NULL, *state;

	if (res != NULL) {
		msg = PQresultErrorMessage(res);
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		snprintf(s->sqlstate, sizeof(s->sqlstate), "%s",
		    state != NULL ? state : "");
	}
	if (msg == NULL || *msg == '\0')
		msg = PQerrorMessage(s->conn);
	pgs_set_error(s, msg);
}
