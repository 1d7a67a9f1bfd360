/*
 * client.c - one client connection and the request on it.
 *
 * States: CL_IDLE -> CL_READ_HEAD -> (CL_READ_BODY) -> CL_HANDLING ->
 * (CL_WRITING) -> CL_IDLE (keep-alive) or CL_CLOSING.  Every callback
 * starts from the state.  A request ends in client_finalize and nowhere
 * else, once its whole answer is queued: it runs the handler's finish hook
 * (the usage event), drains the body and zeroes struct request, so
 * "metered exactly once" is the shape of the code, not a flag.  The
 * connection then waits in CL_WRITING until that answer is written
 * before it reads the next request.  A connection that fails mid-request first
 * runs the exchange's abort hook, so the upstream side lets go of the
 * body before it is drained.
 *
 * While the handler has a request, the client is not read past
 * CLIENT_IO_MAX: a client that keeps sending during a long answer costs
 * bounded memory, as in nginx.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include <openssl/ssl.h>

#include "common/clock.h"
#include "common/log.h"
#include "shm/counters.h"
#include "shm/inflight.h"
#include "worker/client.h"
#include "worker/reply.h"
#include "worker/reqid.h"

/* Queue more than this to a client and the upstream stops being read. */
#define CLIENT_WRITE_LOW	(64 * 1024)
#define CLIENT_MAX_LINE		8192
#define CLIENT_IO_MAX		(256 * 1024)	/* bytes per read or write */
/* a Content-Length body is first given at most this much memory, and
 * twice as much each time it is full: a head that announces 16 MB takes
 * no more until the bytes come */
#define BODY_FIRST_MAX		(1024 * 1024)
#define LINGER_MS		2000

static void	 client_read_cb(void *);
static void	 client_write_cb(void *);
static void	 client_event_cb(void *, int);
static void	 client_read_head(struct client *);
static void	 client_read_more(struct client *);
static void	 client_finalize(struct client *);
static void	 client_free(struct client *);

/* Read with at most MS between reads (0: no limit), unless paused. */
static void
set_read_timeout(struct client *c, int ms)
{
	sbuf_write_timeout(&c->sb, c->w->cfg->send_timeout_ms);
	if (!c->read_paused)
		sbuf_read_on(&c->sb, ms);
}

void
client_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	buf[0] = '\0';
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		    buf, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
		    (socklen_t)len);
}

/* A client on FD, through SSL if not NULL (then EARLY holds what its
 * handshake read past the Finished); FD and SSL are its from here. */
static void
client_new(struct worker *w, int fd, SSL *ssl, struct evbuffer *early,
    struct sockaddr *sa, const struct client_handler *h)
{
	struct client	*c;
	int		 sb_ok;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("client");
		SSL_free(ssl);
		close(fd);
		return;
	}
	c->w = w;
	c->h = h;
	/* the event lives in the in-flight table, where a death leaves it */
	if (w->ift != NULL && w->ift_nfree > 0)
		c->ife = &w->ift[w->ift_free[--w->ift_nfree]];
	else if ((c->ev_own = calloc(1, sizeof(*c->ev_own))) == NULL) {
		log_warn("client");
		SSL_free(ssl);
		close(fd);
		free(c);
		return;
	}
	c->r.ev = c->ife != NULL ? &c->ife->ev : c->ev_own;
	if ((sb_ok = sbuf_init(&c->sb, w->base, fd, client_read_cb,
	    client_write_cb, client_event_cb, c) == 0)) {
		if (ssl != NULL)
			sbuf_tls(&c->sb, ssl);
	} else {
		SSL_free(ssl);
		close(fd);
	}
	client_addr_str(sa, c->addr, sizeof(c->addr));
	TAILQ_INSERT_TAIL(&w->clients, c, entry);
	w->nclients++;
	cnt_gauge(&w->cw->conns, 1);
	if (!sb_ok || (early != NULL &&
	    evbuffer_add_buffer(c->sb.in, early) == -1) ||
	    (c->body = evbuffer_new()) == NULL ||
	    (c->hdata = h->attach(c)) == NULL) {
		log_warnx("client: out of memory");
		client_free(c);
		return;
	}
	sbuf_write_low(&c->sb, CLIENT_WRITE_LOW);
	set_read_timeout(c, w->cfg->client_header_timeout_ms);
	/* a TLS client's first request may have come with its Finished */
	if (evbuffer_get_length(c->sb.in) > 0)
		sbuf_trigger_read(&c->sb);
}

void
client_accept(struct worker *w, int fd, struct sockaddr *sa,
    const struct client_handler *h)
{
	int one = 1;

	if (w->nclients >= w->cfg->max_connections) {
		log_warnx("max_connections (%d) reached, closing a new client",
		    w->cfg->max_connections);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	client_new(w, fd, NULL, NULL, sa, h);
}

void
client_accept_tls(struct worker *w, int fd, SSL *ssl, struct evbuffer *early,
    struct sockaddr *sa, const struct client_handler *h)
{
	client_new(w, fd, ssl, early, sa, h);
}

static void
client_free(struct client *c)
{
	struct worker *w = c->w;

	if (c->r.on_abort != NULL)
		c->r.on_abort(c->r.hook_arg);
	TAILQ_REMOVE(&w->clients, c, entry);
	w->nclients--;
	cnt_gauge(&w->cw->conns, -1);
	sbuf_close_notify(&c->sb);
	sbuf_free(&c->sb);
	if (c->hdata != NULL)
		c->h->detach(c->hdata);
	if (c->body != NULL)
		evbuffer_free(c->body);
	if (c->ife != NULL) {
		/* a partial head abandoned: not a request, no row */
		inflight_end(c->ife);
		w->ift_free[w->ift_nfree++] = (uint32_t)(c->ife - w->ift);
	}
	free(c->r.body_mem);
	free(c->head);
	free(c->ev_own);
	free(c);
	if (w->client_gone != NULL)
		w->client_gone(w);
}

void
client_stop(struct client *c)
{
	/* an idle keep-alive connection is closed now, as nginx does; one
	 * accepted but not yet read gets its first request */
	if (c->state == CL_IDLE && c->nrequests > 0 &&
	    evbuffer_get_length(c->sb.in) == 0)
		client_free(c);
	else {
		c->r.keepalive = 0;
		c->keep = 0;	/* one already answered, being written */
	}
}

void
client_cut(struct client *c, const char *why)
{
	struct request *r = &c->r;

	if (r->t_start_us == 0 || c->state == CL_IDLE ||
	    c->state == CL_CLOSING)
		return;
	if (r->ev->status == 0 || c->state == CL_HANDLING)
		r->ev->status = 503;
	snprintf(r->ev->error_class, sizeof(r->ev->error_class), "%s", why);
	c->h->finish(c);
}

struct evbuffer *
client_output(struct client *c)
{
	return c->sb.out;
}

size_t
client_flush(struct client *c)
{
	return sbuf_flush(&c->sb);
}

void
client_set_hooks(struct client *c, void (*drained)(void *),
    void (*abort)(void *), void *arg)
{
	c->r.on_drained = drained;
	c->r.on_abort = abort;
	c->r.hook_arg = arg;
}

/* Lingering close: stop writing, read and discard until EOF or timeout. */
static void
client_close(struct client *c)
{
	struct evbuffer *in = c->sb.in;

	if (evbuffer_get_length(c->sb.out) > 0)
		return;		/* the write callback comes back here */
	if (evbuffer_get_length(in) == 0) {
		client_free(c);
		return;
	}
	evbuffer_drain(in, evbuffer_get_length(in));
	sbuf_close_notify(&c->sb);
	shutdown(c->sb.fd, SHUT_WR);
	sbuf_write_off(&c->sb);
	c->read_paused = 0;
	set_read_timeout(c, LINGER_MS);
}

/*
 * The connection after its request: wait for the next one, or close.
 * Reached once the last answer is written (CL_WRITING drained).
 */
static void
client_next(struct client *c)
{
	if (c->state == CL_WRITING)
		sbuf_write_low(&c->sb, CLIENT_WRITE_LOW);
	if (!c->keep) {
		c->state = CL_CLOSING;
		client_close(c);
		return;
	}
	c->state = CL_IDLE;
	c->read_paused = 0;
	set_read_timeout(c, c->w->cfg->keepalive_timeout_ms);
	/* a pipelined request may already be buffered: read it, deferred */
	if (evbuffer_get_length(c->sb.in) > 0)
		sbuf_trigger_read(&c->sb);
}

/*
 * The request ends: its event (the handler's finish), then its state is
 * gone.  The only place a request ends.  It runs as soon as the whole
 * answer is queued, before it is written, so that the key is charged
 * before the client can have read the answer and sent its next request,
 * perhaps to another worker.
 */
static void
client_finalize(struct client *c)
{
	struct usage_event *ev = c->r.ev;

	c->h->finish(c);
	/* pushed: no longer the master's to meter if we die (a death
	 * between the push and this store is told apart by push_mark) */
	if (c->ife != NULL)
		inflight_end(c->ife);
	else
		ev_clear(ev);
	c->keep = c->r.keepalive && !c->w->stopping;
	sbuf_read_span(&c->sb, NULL, 0);	/* reads go to the input again */
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	free(c->r.body_mem);		/* a body cut short; else NULL */
	/* the head's 100 header slots are rewritten by the next parse */
	memset(&c->r, 0, offsetof(struct request, hd) +
	    offsetof(struct http_head, h));
	c->r.ev = ev;
}

void
client_answered(struct client *c)
{
	client_finalize(c);
	/* written now, most often whole: no write event, no wake-up */
	if (sbuf_flush(&c->sb) == 0) {
		client_next(c);
		return;
	}
	/* the next request waits until this answer is written */
	c->state = CL_WRITING;
	sbuf_write_low(&c->sb, 0);
}

/* An answer before the body was read: the rest of it is not read, so
 * the connection cannot carry another request. */
static void
client_no_body_follows(struct client *c)
{
	const struct http_head *hd = &c->r.hd;

	if (!c->r.body_read && (hd->chunked || hd->content_length > 0))
		c->r.keepalive = 0;
}

void
client_error(struct client *c, int status, const char *type,
    const char *code, const char *fmt, ...)
{
	struct request	*r = &c->r;
	struct evbuffer	*out = c->sb.out;
	struct evbuffer	*b;
	char		 msg[512];
	va_list		 ap;
	size_t		 len;
	int		 retry = 0;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	client_no_body_follows(c);
	if (c->w->stopping)
		r->keepalive = 0;
	if (status == 429 || status == 503)
		retry = r->retry_after_s > 0 ? r->retry_after_s : 1;
	r->ev->status = (uint16_t)status;
	snprintf(r->ev->error_class, sizeof(r->ev->error_class), "%s", code);
	log_debug("%s %s %d %s: %s", c->addr, r->reqid, status, code, msg);
	if ((b = evbuffer_new()) == NULL) {
		r->keepalive = 0;
		client_answered(c);
		return;
	}
	reply_error_body(b, r->ep != NULL && (r->ep->flags & EP_ANTHROPIC),
	    status, type, code, msg, r->reqid);
	len = evbuffer_get_length(b);
	reply_head(out, status, "application/json", len, r->reqid,
	    r->ev->client_request_id, retry, r->keepalive);
	r->ev->bytes_out += (int64_t)(evbuffer_get_length(out) + len);
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	client_answered(c);
}

void
client_reply_json(struct client *c, int status, struct evbuffer *body)
{
	struct request	*r = &c->r;
	struct evbuffer	*out = c->sb.out;
	size_t		 before = evbuffer_get_length(out);

	client_no_body_follows(c);
	if (c->w->stopping)
		r->keepalive = 0;
	reply_head(out, status, "application/json", evbuffer_get_length(body),
	    r->reqid, r->ev->client_request_id, 0, r->keepalive);
	evbuffer_add_buffer(out, body);
	r->ev->bytes_out += (int64_t)(evbuffer_get_length(out) - before);
	r->ev->status = (uint16_t)status;
	client_answered(c);
}

static void
client_read_cb(void *arg)
{
	struct client	*c = arg;
	struct evbuffer	*in = c->sb.in;

	switch (c->state) {
	case CL_IDLE:
	case CL_READ_HEAD:
		client_read_head(c);
		break;
	case CL_READ_BODY:
		client_read_more(c);
		break;
	case CL_HANDLING:
	case CL_WRITING:
		/*
		 * The next pipelined request waits in the buffer; past
		 * CLIENT_IO_MAX the client is not read until this request is
		 * over.  (A read watermark would do it too, at an event_add
		 * on every read.)
		 */
		if (evbuffer_get_length(in) >= CLIENT_IO_MAX) {
			sbuf_read_off(&c->sb);
			c->read_paused = 1;
		}
		break;
	case CL_CLOSING:
		evbuffer_drain(in, evbuffer_get_length(in));
		break;
	}
}

/* The first byte of a request: it exists from now on. */
static void
request_begin(struct client *c)
{
	struct request *r = &c->r;

	c->state = CL_READ_HEAD;
	c->head_scanned = 0;
	r->t_start_us = now_us();
	r->ev->ts_start_us = wall_us();
	/* before anything can fail, so every answer carries its id */
	reqid_new(r->ev->request_id, r->reqid);
	r->ev->worker_pid = c->w->pid;
	memcpy(r->ev->client_addr, c->addr, sizeof(r->ev->client_addr));
	if (c->ife != NULL)
		inflight_begin(c->ife);
}

/* A client-sent request id, if it is short and printable ASCII. */
static void
client_id_keep(struct request *r, const struct http_header *h)
{
	uint32_t i;

	if (h->value_len == 0 || h->value_len >= sizeof(r->ev->client_request_id))
		return;
	for (i = 0; i < h->value_len; i++)
		if (h->value[i] < 0x21 || h->value[i] > 0x7e)
			return;
	memcpy(r->ev->client_request_id, h->value, h->value_len);
	r->ev->client_request_id[h->value_len] = '\0';
}

/* The head failed to arrive whole: answer in the shape its line names. */
static void
head_error(struct client *c, int status, const char *code, const char *msg)
{
	struct evbuffer	*in = c->sb.in;
	char		 peek[64];
	size_t		 n = evbuffer_copyout(in, peek, sizeof(peek));

	if (c->r.ep == NULL)
		c->r.ep = endpoint_peek(peek, n);
	c->r.keepalive = 0;
	client_error(c, status, "invalid_request_error", code, "%s", msg);
}

static void
client_read_head(struct client *c)
{
	struct evbuffer		*in = c->sb.in;
	const struct config	*cfg = c->w->cfg;
	struct request		*r = &c->r;
	const struct http_header *h;
	size_t			 len;
	int64_t			 left = cfg->client_header_timeout_ms;
	char			 first;
	int			 rc;

	/* RFC 9112 2.2: ignore empty lines before a request line */
	while (c->state == CL_IDLE && evbuffer_get_length(in) > 0) {
		evbuffer_copyout(in, &first, 1);
		if (first != '\r' && first != '\n')
			break;
		evbuffer_drain(in, 1);
	}
	if (evbuffer_get_length(in) == 0)
		return;
	/*
	 * client_header_timeout bounds the whole head, as in nginx, so a
	 * client trickling a byte at a time (slowloris) is cut at the
	 * deadline, not kept alive by every byte.  It is armed only when a
	 * read leaves the head incomplete: most heads come whole, and every
	 * timer set is a heap operation.
	 */
	if (c->state == CL_IDLE)
		request_begin(c);
	else if ((left = (int64_t)cfg->client_header_timeout_ms -
	    (now_us() - r->t_start_us) / 1000) <= 0) {
		head_error(c, 408, "request_timeout",
		    "timed out reading the request");
		return;
	}
	rc = http_head_take(in, &c->head_scanned, cfg->client_max_header_size,
	    &c->head, &c->head_cap, &len);
	if (rc == 0) {
		set_read_timeout(c, (int)left);
		return;
	}
	if (rc == -1) {
		head_error(c, 431, "header_too_large",
		    "request header too large");
		return;
	}
	if (rc == -2) {
		head_error(c, 500, "no_memory", "out of memory");
		return;
	}
	r->ev->bytes_in = (int64_t)len;
	if (c->ife != NULL)	/* a cut request's input is its body's */
		c->ife->head_bytes = (int64_t)len;
	rc = http_parse_request(c->head, len, CLIENT_MAX_LINE, &r->hd);
	if (rc != 0) {
		r->ep = endpoint_peek(c->head, len);
		r->keepalive = 0;
		client_error(c, rc, "invalid_request_error", "bad_request",
		    "malformed HTTP request");
		return;
	}
	r->ep = endpoint_find(r->hd.target, r->hd.path_len);
	/* keepalive_timeout 0 turns keep-alive off, as in nginx */
	r->keepalive = r->hd.minor == 1 && !r->hd.conn_close &&
	    cfg->keepalive_timeout_ms > 0;
	c->nrequests++;
	ev_str(r->ev->endpoint, sizeof(r->ev->endpoint), r->hd.target,
	    r->hd.path_len);
	/*
	 * A client's own id is kept beside ours and echoed back, never used
	 * as the row's key: one id sent ten times must still be ten rows.
	 */
	if ((h = http_find(&r->hd, "x-request-id")) != NULL ||
	    (h = http_find(&r->hd, "x-client-request-id")) != NULL)
		client_id_keep(r, h);
	c->state = CL_HANDLING;
	c->h->head(c);
}

void
client_read_body(struct client *c, void (*done)(struct client *))
{
	struct request		*r = &c->r;
	const struct config	*cfg = c->w->cfg;

	if (!r->hd.chunked && r->hd.content_length < 0) {
		r->keepalive = 0;
		client_error(c, 411, "invalid_request_error",
		    "length_required", "a request body with Content-Length "
		    "or chunked Transfer-Encoding is required");
		return;
	}
	if (r->hd.content_length > (int64_t)cfg->client_max_body_size) {
		client_error(c, 413, "invalid_request_error",
		    "body_too_large", "request body larger than %zu bytes",
		    cfg->client_max_body_size);
		return;
	}
	r->body_done = done;
	if (r->hd.expect_continue && (r->hd.chunked ||
	    r->hd.content_length > 0) && evbuffer_get_length(c->sb.in) == 0) {
		evbuffer_add(c->sb.out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		sbuf_flush(&c->sb);
	}
	c->state = CL_READ_BODY;
	client_read_more(c);
}

/* More of the body is to come: wait for it, client_body_timeout between
 * two reads (armed once: each read restarts it). */
static void
body_wait(struct client *c)
{
	if (!c->r.body_timed) {
		c->r.body_timed = 1;
		set_read_timeout(c, c->w->cfg->client_body_timeout_ms);
	}
}

static void
body_mem_free(const void *p, size_t len, void *arg)
{
	free((void *)p);
}

/* Room in r->body_mem for more of a LEN-byte body: 0, or -1. */
static int
body_grow(struct request *r, size_t len)
{
	size_t	 cap = r->body_cap == 0 ? BODY_FIRST_MAX : 2 * r->body_cap;
	char	*p;

	if (cap > len)
		cap = len;
	if ((p = realloc(r->body_mem, cap)) == NULL)
		return -1;
	r->body_mem = p;
	r->body_cap = cap;
	return 0;
}

/*
 * A Content-Length body: what the head's read brought along is copied
 * out of the input, and the rest is read straight into r->body_mem
 * (sbuf_read_span), in as few reads as the socket allows.  Whole, it is
 * handed to c->body as one reference: contiguous, no copy.  1 whole, 0
 * more to come, -1 out of memory.
 */
static int
body_fill(struct client *c)
{
	struct request	*r = &c->r;
	struct evbuffer	*in = c->sb.in;
	size_t		 len = (size_t)r->hd.content_length, got, n;

	got = r->body_span - sbuf_span_left(&c->sb);
	r->body_have += got;
	r->ev->bytes_in += (int64_t)got;
	r->body_span = 0;
	n = evbuffer_get_length(in);
	if (n > len - r->body_have)
		n = len - r->body_have;
	while (r->body_have + n > r->body_cap)
		if (body_grow(r, len) == -1)
			return -1;
	if (n > 0) {
		evbuffer_remove(in, r->body_mem + r->body_have, n);
		r->body_have += n;
		r->ev->bytes_in += (int64_t)n;
	}
	if (r->body_have < len) {
		if (r->body_have == r->body_cap && body_grow(r, len) == -1)
			return -1;
		r->body_span = r->body_cap - r->body_have;
		sbuf_read_span(&c->sb, r->body_mem + r->body_have,
		    r->body_span);
		return 0;
	}
	sbuf_read_span(&c->sb, NULL, 0);
	if (len > 0) {
		if (evbuffer_add_reference(c->body, r->body_mem, len,
		    body_mem_free, NULL) == -1)
			return -1;
		r->body_mem = NULL;	/* c->body's now */
	}
	return 1;
}

static void
client_read_more(struct client *c)
{
	struct request	*r = &c->r;
	struct evbuffer	*in = c->sb.in;
	size_t		 avail = evbuffer_get_length(in);
	int		 rc;

	if (r->hd.chunked) {
		if (chunked_decode(&r->body_ck, in, c->body) < 0) {
			r->keepalive = 0;
			client_error(c, 400, "invalid_request_error",
			    "bad_request", "malformed chunked request body");
			return;
		}
		r->ev->bytes_in += (int64_t)(avail - evbuffer_get_length(in));
		if (evbuffer_get_length(c->body) >
		    c->w->cfg->client_max_body_size) {
			r->keepalive = 0;
			client_error(c, 413, "invalid_request_error",
			    "body_too_large", "request body larger than %zu "
			    "bytes", c->w->cfg->client_max_body_size);
			return;
		}
		if (r->body_ck.state != CHUNK_DONE) {
			body_wait(c);
			return;
		}
	} else if ((rc = body_fill(c)) <= 0) {
		if (rc == -1) {
			r->keepalive = 0;
			client_error(c, 500, "server_error", "no_memory",
			    "out of memory");
		} else
			body_wait(c);
		return;
	}
	r->body_read = 1;
	c->state = CL_HANDLING;
	r->body_done(c);
}

void
client_handle(struct client *c)
{
	/* a client may wait minutes for a model: only the upstream times out */
	set_read_timeout(c, 0);
}

static void
client_write_cb(void *arg)
{
	struct client *c = arg;

	switch (c->state) {
	case CL_CLOSING:
		client_close(c);
		break;
	case CL_WRITING:
		client_next(c);
		break;
	case CL_HANDLING:
		if (c->r.on_drained != NULL)
			c->r.on_drained(c->r.hook_arg);
		break;
	default:
		break;
	}
}

/* The connection failed with a request under way: end it, then free. */
static void
client_fail(struct client *c, int status, const char *class)
{
	struct request *r = &c->r;

	if (r->on_abort != NULL) {
		r->on_abort(r->hook_arg);
		r->on_abort = NULL;
	}
	r->ev->status = (uint16_t)status;
	if (r->ev->error_class[0] == '\0')
		snprintf(r->ev->error_class, sizeof(r->ev->error_class), "%s",
		    class);
	client_finalize(c);
	client_free(c);
}

static void
client_event_cb(void *arg, int what)
{
	struct client	*c = arg;
	int		 timeout = (what & SB_TIMEOUT) != 0;

	switch (c->state) {
	case CL_IDLE:
	case CL_CLOSING:
		client_free(c);
		return;
	case CL_READ_HEAD:
		if (timeout) {
			head_error(c, 408, "request_timeout",
			    "timed out reading the request");
			return;
		}
		/* a partial head abandoned: not a request yet */
		client_free(c);
		return;
	case CL_READ_BODY:
		if (timeout) {
			c->r.keepalive = 0;
			client_error(c, 408, "invalid_request_error",
			    "request_timeout", "timed out reading the body");
			return;
		}
		client_fail(c, 499, "client_closed");
		return;
	case CL_HANDLING:
		/* the client went away or stopped reading */
		client_fail(c, timeout ? 408 : 499, timeout ?
		    "client_timeout" : "client_closed");
		return;
	case CL_WRITING:
		/* the request was metered when its answer was queued */
		client_free(c);
		return;
	}
}
