/*
 * pgsession.h - one connection to PostgreSQL: opened without blocking and
 * retried with backoff while the server is away, and the statements run
 * on it, with the server's last error kept on one line.
 *
 * The collector owns one and drives it from its loop with pgs_step();
 * `sluicectl db init` opens one with pgs_connect() and waits.  schema.c
 * and the collector run their statements through it.  Only sql/ and
 * sluicectl include this.  It knows no table, no event and no spool: what a fresh
 * connection needs before it may be used (the schema, a staging table)
 * is the owner's ready hook, and the owner learns of every error through
 * its error hook.  Its callers read state, conn and err, and never write
 * them.
 */
#ifndef SLUICE_PGSESSION_H
#define SLUICE_PGSESSION_H

#include <stddef.h>
#include <stdint.h>

/* Debian keeps libpq-fe.h under postgresql/ unless -I says otherwise. */
#if defined(__has_include)
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
#else
#include <libpq-fe.h>
#endif

struct pollfd;

enum pgs_state {
	PGS_NONE,		/* no database configured */
	PGS_DOWN,		/* waiting for the next attempt */
	PGS_CONNECTING,		/* PQconnectPoll in progress */
	PGS_UP,			/* connected, and the ready hook said yes */
};

/* Whose fault a failed transaction was (pgs_failed). */
enum pgs_fail {
	PGS_DATA,		/* the rows: the server refused them, is fine */
	PGS_LOST,		/* the server or the link; now PGS_DOWN */
	PGS_BUSY,		/* a lock not granted within lock_timeout:
				   rolled back, still up */
};

struct pgsession {
	enum pgs_state	 state;
	PGconn		*conn;		/* NULL unless CONNECTING or UP */
	char		 err[512];	/* the last error, one line */

	/*
	 * Called once a connection is made, before it is PGS_UP; -1 (with
	 * the reason given to pgs_set_error) drops it and retries later.
	 */
	int		(*ready)(struct pgsession *, void *arg);
	/* Called with every new err. */
	void		(*error)(const char *err, void *arg);
	void		*arg;

	/* the session's own */
	const char	*conninfo;
	const char	*appname;
	PostgresPollingStatusType poll;
	int64_t		 next_connect;		/* ms, now_us() / 1000 */
	int64_t		 connect_started;
	int		 backoff_ms;
	int		 down_logged;		/* "unreachable" said once */
	char		 sqlstate[6];
};

/*
 * Set S up for CONNINFO (a libpq conninfo or URI; "" means no database,
 * PGS_NONE for good) under application name APPNAME, both kept by
 * pointer.  The hooks may be set afterwards.  No I/O: the first
 * pgs_step() starts connecting.
 */
void	 pgs_init(struct pgsession *s, const char *conninfo,
	    const char *appname);
/* Advance the connection by what is ready now; never blocks for long. */
void	 pgs_step(struct pgsession *s, int64_t now_ms);
/* While connecting, the socket to wait on: 1 and *PFD set, else 0. */
int	 pgs_pollfd(const struct pgsession *s, struct pollfd *pfd);
/*
 * When pgs_step() has something to do next without the socket (the next
 * attempt, an attempt's deadline), in ms like now_ms; INT64_MAX if never.
 */
int64_t	 pgs_due(const struct pgsession *s);
/*
 * Drop the connection and schedule the next attempt after the backoff
 * (100 ms, doubling up to 5 s).  LOST: it was up (logged as lost), else
 * it never came up (logged once per outage, then at debug level).
 */
void	 pgs_down(struct pgsession *s, int64_t now_ms, int lost);
/*
 * Let the next pgs_step() start an attempt at once, whatever the backoff
 * says (the collector's last chance before it stops).  Only when DOWN.
 */
void	 pgs_try_now(struct pgsession *s);
/* Connect and wait, for one-shot tools; 0, or -1 with err set. */
int	 pgs_connect(struct pgsession *s);
/* Close the connection for good. */
void	 pgs_close(struct pgsession *s);

/* Keep MSG as err, on one line, and tell the error hook. */
void	 pgs_set_error(struct pgsession *s, const char *msg);
/*
 * Run SQL and expect WANT.  On success *RESP (if not NULL) gets the
 * result for the caller to clear; on failure, -1 with err and the
 * SQLSTATE set.
 */
int	 pgs_exec(struct pgsession *s, const char *sql, ExecStatusType want,
	    PGresult **resp);
/* COMMIT, and -1 if the server rolled back instead. */
int	 pgs_commit(struct pgsession *s);
/* End a COPY IN and roll back whatever transaction is open. */
void	 pgs_rollback(struct pgsession *s);
/*
 * After a statement of a transaction failed: roll back and decide.  A
 * data error (SQLSTATE class 22 or 23) keeps the connection; anything else
 * may be the server or the schema, so the connection is dropped, to be
 * rebuilt (and made ready again) later.
 */
enum pgs_fail pgs_failed(struct pgsession *s, int64_t now_ms);

/* COPY FROM STDIN, once pgs_exec() returned PGRES_COPY_IN: send LEN bytes. */
int	 pgs_copy_put(struct pgsession *s, const char *buf, size_t len);
/* Send what libpq holds of the COPY now; 0, or -1 with err set. */
int	 pgs_copy_flush(struct pgsession *s);
/* End the COPY and collect its outcome; 0, or -1 with err set. */
int	 pgs_copy_end(struct pgsession *s);

#endif
