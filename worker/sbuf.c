/*
 * sbuf.c - a client socket's reads and writes, without bufferevents.
 *
 * Two persistent events on one descriptor.  The read event is added
 * while the owner wants input (its timeout is then the longest silence
 * between two reads, as a bufferevent's: libevent restarts a persistent
 * event's timeout each time it fires); the write event only while out
 * holds bytes the socket did not take.  A read is one read(2): into the
 * span its owner named (a request body, read where it will stay), or
 * into one extent reserved in in; level-triggered epoll wakes the loop
 * again if more is waiting.
 *
 * TLS: SSL_read and SSL_write on the same descriptor.  Two things differ
 * from a socket.  OpenSSL may hold decrypted bytes the kernel no longer
 * shows (a record bigger than the read), so a read that leaves some
 * pending makes its event active again rather than waiting for epoll.
 * And either call may need the other readiness (SSL_ERROR_WANT_WRITE on
 * a read, WANT_READ on a write: a renegotiation, a key update); the flag
 * for it makes the other event retry the call when it fires.  A write
 * retried after WANT_WRITE passes the same bytes again, at least as many
 * (out only grows at its end), as OpenSSL requires.
 *
 * Owners are called only from these events, never from an sbuf_
 * function, so no call can free the sbuf under its caller.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "worker/sbuf.h"

#define SBUF_READ_DEFAULT	(16 * 1024)	/* a head and a small body */
#define SBUF_WRITE_MAX		(256 * 1024)	/* per syscall: fairness */
#define SBUF_TLS_RECORD		(16 * 1024)	/* a TLS record's most */

static void	 sbuf_on_read(evutil_socket_t, short, void *);
static void	 sbuf_on_write(evutil_socket_t, short, void *);
static void	 sbuf_on_trigger(evutil_socket_t, short, void *);

static void
ms_tv(struct timeval *tv, int *on, int ms)
{
	*on = ms > 0;
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

int
sbuf_init(struct sbuf *sb, struct event_base *base, int fd,
    void (*read_cb)(void *), void (*write_cb)(void *),
    void (*event_cb)(void *, int), void *arg)
{
	memset(sb, 0, sizeof(*sb));
	sb->fd = -1;
	sb->rev = event_new(base, fd, EV_READ | EV_PERSIST, sbuf_on_read, sb);
	sb->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, sbuf_on_write,
	    sb);
	sb->tev = event_new(base, -1, 0, sbuf_on_trigger, sb);
	sb->in = evbuffer_new();
	sb->out = evbuffer_new();
	if (sb->rev == NULL || sb->wev == NULL || sb->tev == NULL ||
	    sb->in == NULL || sb->out == NULL) {
		sbuf_free(sb);
		return -1;
	}
	sb->fd = fd;
	sb->read_cb = read_cb;
	sb->write_cb = write_cb;
	sb->event_cb = event_cb;
	sb->arg = arg;
	return 0;
}

void
sbuf_free(struct sbuf *sb)
{
	if (sb->rev != NULL)
		event_free(sb->rev);
	if (sb->wev != NULL)
		event_free(sb->wev);
	if (sb->tev != NULL)
		event_free(sb->tev);
	if (sb->in != NULL)
		evbuffer_free(sb->in);
	if (sb->out != NULL)
		evbuffer_free(sb->out);
	if (sb->ssl != NULL)
		SSL_free(sb->ssl);	/* its BIO leaves the socket open */
	if (sb->fd != -1)
		close(sb->fd);
	memset(sb, 0, sizeof(*sb));
	sb->fd = -1;
}

void
sbuf_tls(struct sbuf *sb, SSL *ssl)
{
	sb->ssl = ssl;
	/* a retried write may start elsewhere (evbuffer_pullup), and a
	 * record written is a record taken off out */
	SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    SSL_MODE_ENABLE_PARTIAL_WRITE);
}

SSL *
sbuf_ssl(const struct sbuf *sb)
{
	return sb->ssl;
}

void
sbuf_close_notify(struct sbuf *sb)
{
	SSL *ssl = sb->ssl;

	/* after a fatal error OpenSSL must not be asked to shut down */
	if (ssl == NULL || sb->tls_dead || !SSL_is_init_finished(ssl) ||
	    (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
		return;
	if (SSL_shutdown(ssl) < 0)
		ERR_clear_error();
}

/* OpenSSL holds bytes epoll cannot see: read them without waiting. */
static void
sbuf_tls_pending(struct sbuf *sb)
{
	if (sb->ssl != NULL && sb->reading && SSL_has_pending(sb->ssl))
		event_active(sb->rev, EV_READ, 0);
}

void
sbuf_read_on(struct sbuf *sb, int ms)
{
	ms_tv(&sb->rtv, &sb->rtv_on, ms);
	/* re-adding restarts the timeout: what the callers mean by it */
	event_add(sb->rev, sb->rtv_on ? &sb->rtv : NULL);
	sb->reading = 1;
	sbuf_tls_pending(sb);
}

void
sbuf_read_off(struct sbuf *sb)
{
	/* a write waiting for readability keeps the event */
	if (sb->reading && !sb->tls_wwant)
		event_del(sb->rev);
	sb->reading = 0;
}

void
sbuf_read_span(struct sbuf *sb, char *p, size_t len)
{
	sb->span = len > 0 ? p : NULL;
	sb->span_left = sb->span != NULL ? len : 0;
}

size_t
sbuf_span_left(const struct sbuf *sb)
{
	return sb->span_left;
}

void
sbuf_trigger_read(struct sbuf *sb)
{
	event_active(sb->tev, EV_TIMEOUT, 0);
}

void
sbuf_write_timeout(struct sbuf *sb, int ms)
{
	int on = ms > 0;

	if (on == sb->wtv_on && sb->wtv.tv_sec == ms / 1000 &&
	    sb->wtv.tv_usec == (ms % 1000) * 1000)
		return;
	ms_tv(&sb->wtv, &sb->wtv_on, ms);
	if (sb->writing)
		event_add(sb->wev, sb->wtv_on ? &sb->wtv : NULL);
}

void
sbuf_write_low(struct sbuf *sb, size_t low)
{
	sb->wlow = low;
}

static void
sbuf_arm_write(struct sbuf *sb)
{
	if (!sb->writing) {
		event_add(sb->wev, sb->wtv_on ? &sb->wtv : NULL);
		sb->writing = 1;
	}
}

static void
sbuf_disarm_write(struct sbuf *sb)
{
	if (sb->writing) {
		event_del(sb->wev);
		sb->writing = 0;
	}
}

/*
 * SSL_write what out holds, a record at a time, up to SBUF_WRITE_MAX: the
 * bytes written, or -1 with errno EAGAIN (OpenSSL waits for the socket)
 * or EPIPE (the connection failed).
 */
static int
sbuf_tls_write(struct sbuf *sb)
{
	size_t	 len;
	int	 n, total = 0, e;

	while (total < SBUF_WRITE_MAX &&
	    (len = evbuffer_get_length(sb->out)) > 0) {
		if (len > SBUF_TLS_RECORD)
			len = SBUF_TLS_RECORD;
		/* one piece, one record: a head and its body go out together */
		n = SSL_write(sb->ssl, evbuffer_pullup(sb->out, (ssize_t)len),
		    (int)len);
		if (n > 0) {
			evbuffer_drain(sb->out, (size_t)n);
			total += n;
			continue;
		}
		e = SSL_get_error(sb->ssl, n);
		if (e == SSL_ERROR_WANT_READ && !sb->tls_wwant) {
			sb->tls_wwant = 1;
			if (!sb->reading)
				event_add(sb->rev, NULL);
		}
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			errno = EAGAIN;
		else {
			ERR_clear_error();
			sb->tls_dead = 1;
			errno = EPIPE;
		}
		return total > 0 ? total : -1;
	}
	return total;
}

/* One write(v) of what out holds; its result, errno kept. */
static int
sbuf_write_once(struct sbuf *sb)
{
	int n;

	if (sb->ssl != NULL)
		return sbuf_tls_write(sb);
	do {
		n = evbuffer_write_atmost(sb->out, sb->fd, SBUF_WRITE_MAX);
	} while (n == -1 && errno == EINTR);
	return n;
}

size_t
sbuf_flush(struct sbuf *sb)
{
	size_t left = evbuffer_get_length(sb->out);

	/* an armed write event writes in its turn, in order */
	if (left == 0 || sb->writing)
		return left;
	(void)sbuf_write_once(sb);
	/* the rest, or the error, is the write event's to report */
	if ((left = evbuffer_get_length(sb->out)) > 0)
		sbuf_arm_write(sb);
	return left;
}

void
sbuf_write_off(struct sbuf *sb)
{
	sbuf_disarm_write(sb);
	evbuffer_drain(sb->out, evbuffer_get_length(sb->out));
}

static void
sbuf_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct sbuf	*sb = arg;
	int		 n;

	if (what & EV_TIMEOUT) {
		sbuf_disarm_write(sb);
		sb->event_cb(sb->arg, SB_WRITING | SB_TIMEOUT);
		return;
	}
	if (sb->tls_rwant) {
		/* the read OpenSSL could not finish may go on now */
		sb->tls_rwant = 0;
		if (sb->reading)
			event_active(sb->rev, EV_READ, 0);
		if (evbuffer_get_length(sb->out) == 0) {
			sbuf_disarm_write(sb);
			return;
		}
	}
	n = sbuf_write_once(sb);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		/* a writable socket would wake us for ever: the read
		 * event adds it back (writing stays set) */
		if (sb->tls_wwant)
			event_del(sb->wev);
		return;
	}
	if (n <= 0) {
		sbuf_disarm_write(sb);
		sb->event_cb(sb->arg, SB_WRITING | SB_ERROR);
		return;
	}
	if (evbuffer_get_length(sb->out) == 0)
		sbuf_disarm_write(sb);
	if (evbuffer_get_length(sb->out) <= sb->wlow)
		sb->write_cb(sb->arg);
}

/*
 * One SSL_read of at most LEN bytes: their count, 0 at the peer's end
 * (close_notify, or a close without it: a client that got its answer may
 * just go), or -1 with errno EAGAIN (OpenSSL waits) or EIO.
 */
static ssize_t
sbuf_tls_read(struct sbuf *sb, void *p, size_t len)
{
	int n, e;

	if (len > INT_MAX)
		len = INT_MAX;
	if ((n = SSL_read(sb->ssl, p, (int)len)) > 0)
		return n;
	switch ((e = SSL_get_error(sb->ssl, n))) {
	case SSL_ERROR_WANT_WRITE:
		sb->tls_rwant = 1;
		sbuf_arm_write(sb);
		/* FALLTHROUGH */
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		sb->tls_dead = 1;
		if (ERR_peek_error() == 0 && n == 0)
			return 0;
		break;
	case SSL_ERROR_SSL:
		sb->tls_dead = 1;
		if (ERR_GET_REASON(ERR_peek_error()) ==
		    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return 0;
		}
		break;
	}
	ERR_clear_error();
	errno = EIO;
	return -1;
}

static void
sbuf_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct sbuf		*sb = arg;
	struct evbuffer_iovec	 v;
	ssize_t			 n;

	if (what & EV_TIMEOUT) {
		if (!sb->reading)
			return;		/* kept only for a TLS write */
		sbuf_read_off(sb);
		sb->event_cb(sb->arg, SB_READING | SB_TIMEOUT);
		return;
	}
	if (sb->tls_wwant) {
		/* the write OpenSSL could not finish may go on now */
		sb->tls_wwant = 0;
		if (sb->writing) {
			event_add(sb->wev, sb->wtv_on ? &sb->wtv : NULL);
			event_active(sb->wev, EV_WRITE, 0);
		}
		if (!sb->reading) {
			event_del(sb->rev);
			return;
		}
	}
	if (sb->span != NULL) {
		v.iov_base = sb->span;
		v.iov_len = sb->span_left;
	} else if (evbuffer_reserve_space(sb->in, SBUF_READ_DEFAULT, &v,
	    1) == 1)
		v.iov_len = SBUF_READ_DEFAULT;
	else {
		sbuf_read_off(sb);
		sb->event_cb(sb->arg, SB_READING | SB_ERROR);
		return;
	}
	if (sb->ssl != NULL)
		n = sbuf_tls_read(sb, v.iov_base, v.iov_len);
	else
		do {
			n = read(sb->fd, v.iov_base, v.iov_len);
		} while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		sbuf_read_off(sb);
		sb->event_cb(sb->arg, SB_READING | (n == 0 ? SB_EOF :
		    SB_ERROR));
		return;
	}
	if (sb->span != NULL) {
		sb->span += n;
		if ((sb->span_left -= (size_t)n) == 0)
			sb->span = NULL;
	} else {
		v.iov_len = (size_t)n;
		evbuffer_commit_space(sb->in, &v, 1);
	}
	sbuf_tls_pending(sb);
	sb->read_cb(sb->arg);
}

static void
sbuf_on_trigger(evutil_socket_t fd, short what, void *arg)
{
	struct sbuf *sb = arg;

	sb->read_cb(sb->arg);
}
