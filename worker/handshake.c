/*
 * handshake.c - from accept on a TLS socket to a client connection.
 *
 * States: HS_PEEK (waiting for the first byte) -> HS_TLS (OpenSSL's
 * handshake under a bufferevent_openssl) -> HS_DONE (the bufferevent
 * quiet, handed on from the loop, outside its callbacks) -> the client
 * core, which reads and writes the socket through the SSL itself;
 * or HS_PEEK -> HS_PLAIN (the 400 written, reading what the client still
 * sends until it closes, so that our close does not reset the answer
 * away) -> closed.
 *
 * The first byte tells TLS from plain HTTP, as nginx's
 * ngx_http_ssl_handshake does: a TLS record starts with 0x16 (handshake),
 * a request line with a letter.  Only a letter is answered in plain
 * text; anything else goes to OpenSSL, which refuses it with a reason.
 *
 * The whole of it, first byte to Finished, is bounded by one deadline of
 * client_header_timeout from accept, not by a timeout per read, so a
 * client trickling its handshake cannot hold a connection longer.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/err.h>

#include "common/log.h"
#include "shm/counters.h"
#include "worker/handshake.h"
#include "worker/tls.h"

_Static_assert(TLSF_MAX == CNT_TLS_REASONS, "a counter per reason");

#define TLS_RECORD_HANDSHAKE	0x16
#define PLAIN_LINGER_MS		2000

enum hs_state {
	HS_PEEK = 0,
	HS_TLS,
	HS_PLAIN,
	HS_DONE,
};

struct hs {
	struct worker	*w;
	struct tls_server *tls;
	const struct client_handler *h;
	enum hs_state	 state;
	int		 fd;		/* ours until the client's */
	SSL		*ssl;		/* HS_TLS, HS_DONE: ours as well */
	struct bufferevent *bev;	/* HS_TLS, HS_DONE: over fd and ssl */
	struct event	*ev;		/* HS_PEEK, HS_PLAIN: the raw socket */
	struct event	*deadline;
	struct sockaddr_storage sa;
	char		 addr[EV_ADDR_MAX];
};

/* nginx's answer (ngx_http_special_response.c), with our name in it */
static const char plain_body[] =
    "<html>\r\n"
    "<head><title>400 The plain HTTP request was sent to HTTPS port"
    "</title></head>\r\n"
    "<body>\r\n"
    "<center><h1>400 Bad Request</h1></center>\r\n"
    "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
    "<hr><center>sluice</center>\r\n"
    "</body>\r\n"
    "</html>\r\n";

static void	 hs_peek_cb(evutil_socket_t, short, void *);
static void	 hs_plain_cb(evutil_socket_t, short, void *);
static void	 hs_event_cb(struct bufferevent *, short, void *);
static void	 hs_deadline_cb(evutil_socket_t, short, void *);

/* The connection is no longer ours; NOTIFY: it is closed, not handed on
 * (a stopping worker may be waiting for it). */
static void
hs_free(struct hs *hs, int notify)
{
	struct worker *w = hs->w;

	if (hs->ev != NULL)
		event_free(hs->ev);
	if (hs->deadline != NULL)
		event_free(hs->deadline);
	/* the bufferevent owns neither the socket nor the SSL */
	if (hs->bev != NULL)
		bufferevent_free(hs->bev);
	if (hs->ssl != NULL)
		SSL_free(hs->ssl);
	if (hs->fd != -1)
		close(hs->fd);
	free(hs);
	w->nhandshakes--;
	if (notify && w->client_gone != NULL)
		w->client_gone(w);
}

static void
hs_fail(struct hs *hs, enum tls_failure why, unsigned long err)
{
	char buf[256];

	cnt_add(&hs->w->cw->tls_failed[why], 1);
	if (err != 0) {
		ERR_error_string_n(err, buf, sizeof(buf));
		log_debug("%s: TLS handshake failed (%s): %s", hs->addr,
		    tls_failure_name(why), buf);
	} else
		log_debug("%s: TLS handshake failed (%s)", hs->addr,
		    tls_failure_name(why));
	ERR_clear_error();
	hs_free(hs, 1);
}

/*
 * Plain HTTP on a TLS port: answer as nginx does, then read and drop what
 * the client still sends until it closes (or the linger ends), so that
 * the answer is not lost to a reset when we close with unread data.
 */
static void
hs_plain(struct hs *hs)
{
	char		 head[160];
	struct iovec	 iov[2];
	struct msghdr	 msg;
	struct timeval	 tv = { PLAIN_LINGER_MS / 1000,
			    (PLAIN_LINGER_MS % 1000) * 1000 };

	cnt_add(&hs->w->cw->tls_failed[TLSF_HTTP], 1);
	log_debug("%s: plain HTTP request sent to a TLS port", hs->addr);
	iov[0].iov_len = (size_t)snprintf(head, sizeof(head),
	    "HTTP/1.1 400 Bad Request\r\nServer: sluice\r\nContent-Type: "
	    "text/html\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    sizeof(plain_body) - 1);
	iov[0].iov_base = head;
	iov[1].iov_base = (void *)plain_body;
	iov[1].iov_len = sizeof(plain_body) - 1;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	/* 500 bytes into an empty socket buffer: one call, or the client
	 * is gone and there is no one to answer */
	if (sendmsg(hs->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == -1 ||
	    shutdown(hs->fd, SHUT_WR) == -1) {
		hs_free(hs, 1);
		return;
	}
	hs->state = HS_PLAIN;
	if (hs->ev != NULL)
		event_free(hs->ev);
	hs->ev = event_new(hs->w->base, hs->fd, EV_READ | EV_PERSIST,
	    hs_plain_cb, hs);
	if (hs->ev == NULL || event_add(hs->ev, &tv) == -1)
		hs_free(hs, 1);
}

static void
hs_plain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hs	*hs = arg;
	char		 buf[4096];
	ssize_t		 n;
	int		 i;

	if (what & EV_TIMEOUT) {
		hs_free(hs, 1);
		return;
	}
	for (i = 0; i < 16; i++) {
		if ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		hs_free(hs, 1);		/* EOF or error: done */
		return;
	}
}

static void
hs_tls(struct hs *hs)
{
	SSL *ssl;

	if ((ssl = tls_server_ssl(hs->tls)) == NULL) {
		hs_fail(hs, TLSF_OTHER, ERR_peek_last_error());
		return;
	}
	hs->ssl = ssl;
	/* not BEV_OPT_CLOSE_ON_FREE: the socket and the SSL outlive it, in
	 * the client (its socket BIO does not close the socket either) */
	hs->bev = bufferevent_openssl_socket_new(hs->w->base, hs->fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, 0);
	if (hs->bev == NULL) {
		hs_fail(hs, TLSF_OTHER, 0);
		return;
	}
	hs->state = HS_TLS;
	if (hs->ev != NULL) {
		event_free(hs->ev);
		hs->ev = NULL;
	}
	/* a client that closes without close_notify has still finished */
	bufferevent_openssl_set_allow_dirty_shutdown(hs->bev, 1);
	bufferevent_setcb(hs->bev, NULL, NULL, hs_event_cb, hs);
}

/* Look at the first byte without taking it.  0 done, 1 wait for it. */
static int
hs_peek(struct hs *hs)
{
	unsigned char	 b;
	ssize_t		 n;

	n = recv(hs->fd, &b, 1, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 1;
	if (n <= 0)
		hs_free(hs, 1);	/* no byte: a port probe, not a handshake */
	else if (b != TLS_RECORD_HANDSHAKE && b >= 'A' && b <= 'Z')
		hs_plain(hs);
	else
		hs_tls(hs);
	return 0;
}

static void
hs_peek_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hs *hs = arg;

	if (hs_peek(hs) == 1 && event_add(hs->ev, NULL) == -1)
		hs_fail(hs, TLSF_OTHER, 0);
}

static void
hs_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct hs		*hs = arg;
	struct worker		*w = hs->w;
	SSL			*ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long		 err;

	if (!(what & BEV_EVENT_CONNECTED)) {
		err = bufferevent_get_openssl_error(bev);
		if (err != 0)
			hs_fail(hs, tls_failure_of(err), err);
		else
			hs_fail(hs, what & BEV_EVENT_TIMEOUT ? TLSF_TIMEOUT :
			    TLSF_CLOSED, 0);
		return;
	}
	if (tls_peer_capture(ssl) == -1) {
		hs_fail(hs, TLSF_OTHER, 0);
		return;
	}
	cnt_add(SSL_session_reused(ssl) ? &w->cw->tls_resumed :
	    &w->cw->tls_full, 1);
	log_debug("%s: %s %s%s", hs->addr, SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl), SSL_session_reused(ssl) ? " resumed" :
	    "");
	/*
	 * Hand on from the loop, not from inside the bufferevent's own
	 * callback, which may still read after this returns: it is quiet
	 * from here, what it read past the Finished stays in its input.
	 */
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	hs->state = HS_DONE;
	event_active(hs->deadline, EV_TIMEOUT, 0);
}

/* The handshake is done: the client takes the socket, the SSL and the
 * bytes already read. */
static void
hs_done(struct hs *hs)
{
	struct worker	*w = hs->w;
	int		 fd = hs->fd;
	SSL		*ssl = hs->ssl;

	/* the client first, then our count: a stopping worker that sees
	 * no handshake left must already see the client */
	hs->fd = -1;
	hs->ssl = NULL;
	client_accept_tls(w, fd, ssl, bufferevent_get_input(hs->bev),
	    (struct sockaddr *)&hs->sa, hs->h);
	hs_free(hs, 0);
}

static void
hs_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hs *hs = arg;

	if (hs->state == HS_DONE)
		hs_done(hs);
	else if (hs->state == HS_PLAIN)
		hs_free(hs, 1);		/* answered and counted already */
	else
		hs_fail(hs, TLSF_TIMEOUT, 0);
}

void
hs_accept(struct worker *w, struct tls_server *tls, int fd,
    struct sockaddr *sa, int salen, const struct client_handler *h)
{
	struct hs	*hs;
	struct timeval	 tv;
	int		 one = 1, ms = w->cfg->client_header_timeout_ms;

	if (w->nclients + w->nhandshakes >= w->cfg->max_connections) {
		log_warnx("max_connections (%d) reached, closing a new client",
		    w->cfg->max_connections);
		close(fd);
		return;
	}
	if ((hs = calloc(1, sizeof(*hs))) == NULL) {
		log_warn("TLS handshake");
		close(fd);
		return;
	}
	w->nhandshakes++;
	hs->w = w;
	hs->tls = tls;
	hs->h = h;
	hs->fd = fd;
	if (salen > 0 && (size_t)salen <= sizeof(hs->sa))
		memcpy(&hs->sa, sa, (size_t)salen);
	client_addr_str(sa, hs->addr, sizeof(hs->addr));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if ((hs->deadline = evtimer_new(w->base, hs_deadline_cb, hs)) == NULL ||
	    evtimer_add(hs->deadline, &tv) == -1) {
		hs_fail(hs, TLSF_OTHER, 0);
		return;
	}
	/* the ClientHello is often here already: no event for the peek */
	if (hs_peek(hs) == 0)
		return;
	hs->ev = event_new(w->base, fd, EV_READ, hs_peek_cb, hs);
	if (hs->ev == NULL || event_add(hs->ev, NULL) == -1)
		hs_fail(hs, TLSF_OTHER, 0);
}
