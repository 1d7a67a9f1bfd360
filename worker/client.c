/*
 * client.c - one client connection: read a request, hand it to the proxy,
 * keep the connection alive for the next one.
 *
 * State machine: CL_READ_HEAD -> CL_READ_BODY -> CL_PROXYING -> back to
 * CL_READ_HEAD (keep-alive) or CL_CLOSING.  Every callback starts from
 * the state.  Per-request memory (the head copy, the body evbuffer) hangs
 * off the client and is reused by the next request on the connection, so
 * a keep-alive client costs no allocation per request.  Every request that
 * got as far as a parsed head ends in client_request_done(), which meters
 * it exactly once.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "shm/counters.h"
#include "common/json_scan.h"
#include "worker/worker.h"

/* Queue more than this to a client and the upstream stops being read. */
#define CLIENT_WRITE_LOW	(64 * 1024)
#define CLIENT_MAX_LINE		8192
#define CLIENT_IO_MAX		(256 * 1024)	/* bytes per read or write */
#define LINGER_MS		2000

static void	 client_read_cb(struct bufferevent *, void *);
static void	 client_write_cb(struct bufferevent *, void *);
static void	 client_event_cb(struct bufferevent *, short, void *);
static void	 client_read_head(struct client *);
static void	 client_read_body(struct client *);
static void	 client_dispatch(struct client *);

static void
set_read_timeout(struct client *c, int ms)
{
	struct timeval rt, wt;

	rt.tv_sec = ms / 1000;
	rt.tv_usec = (ms % 1000) * 1000;
	wt.tv_sec = c->w->cfg->send_timeout_ms / 1000;
	wt.tv_usec = (c->w->cfg->send_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, ms > 0 ? &rt : NULL, &wt);
}

void
client_accept(struct worker *w, int fd, struct sockaddr *sa, int salen)
{
	struct client	*c;
	int		 one = 1;

	if (w->nclients >= w->cfg->max_connections) {
		log_warnx("max_connections (%d) reached, closing a new client",
		    w->cfg->max_connections);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("client");
		close(fd);
		return;
	}
	c->w = w;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->body = evbuffer_new();
	c->px.decoded = evbuffer_new();
	if (c->bev == NULL || c->body == NULL || c->px.decoded == NULL) {
		log_warnx("client: out of memory");
		if (c->bev == NULL)
			close(fd);
		client_free(c);
		return;
	}
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr,
		    c->addr, sizeof(c->addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr,
		    c->addr, sizeof(c->addr));
	(void)salen;
	TAILQ_INSERT_TAIL(&w->clients, c, entry);
	w->nclients++;
	cnt_gauge(&w->cw->conns, 1);
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb,
	    client_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, CLIENT_WRITE_LOW, 0);
	/* libevent's default is 16 KB a syscall: a 100 KB body took 7 reads */
	bufferevent_set_max_single_read(c->bev, CLIENT_IO_MAX);
	bufferevent_set_max_single_write(c->bev, CLIENT_IO_MAX);
	set_read_timeout(c, w->cfg->client_header_timeout_ms);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void
client_free(struct client *c)
{
	struct worker *w = c->w;

	if (c->px.uc != NULL)
		proxy_abort(c);
	if (c->bev != NULL) {
		TAILQ_REMOVE(&w->clients, c, entry);
		w->nclients--;
		cnt_gauge(&w->cw->conns, -1);
		bufferevent_free(c->bev);
	}
	if (c->body != NULL)
		evbuffer_free(c->body);
	if (c->px.decoded != NULL)
		evbuffer_free(c->px.decoded);
	free(c->head);
	free(c->px.head);
	usage_tap_free(&c->tap);
	free(c);
	worker_client_gone(w);
}

/* Waiting for a request and holding no byte of one: safe to close. */
int
client_is_idle(const struct client *c)
{
	return c->state == CL_READ_HEAD && c->t_start_us == 0 &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0;
}

/* Append S, JSON-escaped, to B (also the admin endpoints' strings). */
void
json_escape(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			evbuffer_add_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			evbuffer_add_printf(b, "\\u%04x", ch);
		else
			evbuffer_add(b, s, 1);
	}
}

/* Anthropic's error types, by status (their API documents the mapping). */
static const char *
anthropic_error_type(int status)
{
	switch (status) {
	case 400: case 405: case 408: case 411: case 414: case 431:
		return "invalid_request_error";
	case 401:
		return "authentication_error";
	case 403:
		return "permission_error";
	case 404:
		return "not_found_error";
	case 413:
		return "request_too_large";
	case 429:
		return "rate_limit_error";
	case 529:
		return "overloaded_error";
	default:
		return "api_error";
	}
}

/*
 * Answer the current request with an error produced by sluice itself, in
 * the caller's protocol: OpenAI's {"error":{...}} or Anthropic's
 * {"type":"error","error":{...}}.  CODE also becomes the row's error class.
 */
void
client_send_error(struct client *c, int status, const char *type,
    const char *code, const char *fmt, ...)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);
	struct evbuffer	*b;
	char		 msg[512];
	va_list		 ap;
	size_t		 len;

	char		 retry[48] = "";

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (status == 429 || status == 503)
		snprintf(retry, sizeof(retry), "Retry-After: %d\r\n",
		    c->retry_after_s > 0 ? c->retry_after_s : 1);
	if ((b = evbuffer_new()) == NULL) {
		c->keepalive = 0;
		client_request_done(c);
		return;
	}
	if (c->anthropic) {
		evbuffer_add_printf(b, "{\"type\":\"error\",\"error\":"
		    "{\"type\":\"%s\",\"message\":\"",
		    anthropic_error_type(status));
		json_escape(b, msg);
		evbuffer_add_printf(b, "\"},\"request_id\":\"%s\"}\n", c->reqid);
	} else {
		evbuffer_add(b, "{\"error\":{\"message\":\"", 21);
		json_escape(b, msg);
		evbuffer_add_printf(b, "\",\"type\":\"%s\",\"param\":null,"
		    "\"code\":\"%s\"}}\n", type, code);
	}
	len = evbuffer_get_length(b);
	if (c->reqid[0] == '\0')
		reqid_new(c->w, c->ev.request_id, c->reqid);
	if (c->w->stopping)
		c->keepalive = 0;
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "x-request-id: %s\r\n"
	    "%s"
	    "%s"
	    "\r\n", status, http_reason(status), len, c->reqid,
	    retry,
	    c->keepalive ? "" : "Connection: close\r\n");
	c->out_bytes += (int64_t)(evbuffer_get_length(out) + len);
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	c->ev.status = (uint16_t)status;
	snprintf(c->ev.error_class, sizeof(c->ev.error_class), "%s", code);
	log_debug("%s %s %d %s: %s", c->addr, c->reqid, status, code, msg);
	client_request_done(c);
}

/* Lingering close: stop writing, read and discard until EOF or timeout. */
static void
client_close(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return;		/* the write callback comes back here */
	if (evbuffer_get_length(in) == 0 && c->state != CL_CLOSING) {
		client_free(c);
		return;
	}
	evbuffer_drain(in, evbuffer_get_length(in));
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	set_read_timeout(c, LINGER_MS);
	bufferevent_disable(c->bev, EV_WRITE);
	bufferevent_enable(c->bev, EV_READ);
}

/*
 * The current request is answered (or abandoned): meter it, then either
 * wait for the next request on this connection or close it.
 */
void
client_request_done(struct client *c)
{
	meter_finish(c);

	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	memset(&c->ev, 0, sizeof(c->ev));
	c->t_start_us = 0;
	c->head_scanned = 0;
	c->head_len = 0;
	c->body_need = 0;
	c->model = NULL;
	c->model_len = 0;
	c->stream = 0;
	c->reqid[0] = '\0';
	c->anthropic = 0;
	c->out_bytes = 0;
	memset(&c->body_ck, 0, sizeof(c->body_ck));
	c->px.t_sent_us = 0;
	c->px.t_first_byte_us = 0;
	c->px.head_sent = 0;
	c->px.attempts = 0;
	c->px.state = PX_NONE;
	c->px.tap_on = 0;
	c->px.complete = 0;
	c->nedits = 0;
	c->model_resolved = NULL;
	c->key = NULL;
	c->retry_after_s = 0;
	memset(&c->usage, 0, sizeof(c->usage));

	if (!c->keepalive || c->w->stopping) {
		c->state = CL_CLOSING;
		client_close(c);
		return;
	}
	c->state = CL_READ_HEAD;
	set_read_timeout(c, c->w->cfg->keepalive_timeout_ms);
	/* a pipelined request may already be buffered: read it, deferred */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

static int
endpoint_is_proxied(const char *p, size_t len)
{
	static const char *const paths[] = {
		"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
		"/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
		NULL,
	};
	int i;

	for (i = 0; paths[i] != NULL; i++)
		if (strlen(paths[i]) == len && memcmp(paths[i], p, len) == 0)
			return 1;
	return 0;
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	switch (c->state) {
	case CL_READ_HEAD:
		client_read_head(c);
		break;
	case CL_READ_BODY:
		client_read_body(c);
		break;
	case CL_PROXYING:
		/* the next pipelined request waits in the buffer */
		break;
	case CL_CLOSING:
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		break;
	}
}

/*
 * Before (or without) a parsed head: does the request line name an
 * Anthropic endpoint?  Then errors go out in Anthropic's shape.
 */
static int
looks_anthropic(const char *p, size_t n)
{
	const char *sp = memchr(p, ' ', n < 16 ? n : 16);

	if (sp == NULL)
		return 0;
	sp++;
	return (size_t)(p + n - sp) >= 12 && memcmp(sp, "/v1/messages", 12) == 0;
}

static void
client_read_head(struct client *c)
{
	struct evbuffer		*in = bufferevent_get_input(c->bev);
	const struct config	*cfg = c->w->cfg;
	const struct http_header *h;
	struct evbuffer_ptr	 start, found;
	size_t			 len, from;
	char			 first;
	int			 rc;

	/* RFC 9112 2.2: ignore empty lines before a request line */
	while (evbuffer_get_length(in) > 0 && c->head_scanned == 0) {
		evbuffer_copyout(in, &first, 1);
		if (first != '\r' && first != '\n')
			break;
		evbuffer_drain(in, 1);
	}
	len = evbuffer_get_length(in);
	if (len == 0)
		return;
	if (c->t_start_us == 0) {
		c->metered = 0;
		c->t_start_us = now_us();
		c->ev.ts_start_us = wall_us();
		set_read_timeout(c, cfg->client_header_timeout_ms);
	} else {
		/*
		 * client_header_timeout bounds the whole head, as in nginx,
		 * so a client trickling a byte at a time (slowloris) is cut
		 * at the deadline, not kept alive by every byte.
		 */
		int64_t left = (int64_t)cfg->client_header_timeout_ms -
		    (now_us() - c->t_start_us) / 1000;

		if (left <= 0) {
			c->keepalive = 0;
			client_send_error(c, 408, "invalid_request_error",
			    "request_timeout", "timed out reading the request");
			return;
		}
		set_read_timeout(c, (int)left);
	}
	from = c->head_scanned > 3 ? c->head_scanned - 3 : 0;
	evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET);
	found = evbuffer_search(in, "\r\n\r\n", 4, &start);
	if (found.pos == -1) {
		c->head_scanned = len;
		if (len > cfg->client_max_header_size) {
			char	 peek[64];
			size_t	 n = evbuffer_copyout(in, peek, sizeof(peek));

			c->anthropic = looks_anthropic(peek, n);
			c->keepalive = 0;
			client_send_error(c, 431, "invalid_request_error",
			    "header_too_large", "request header too large");
		}
		return;
	}
	c->head_len = (size_t)found.pos + 4;
	if (c->head_len > cfg->client_max_header_size) {
		char	 peek[64];
		size_t	 n = evbuffer_copyout(in, peek, sizeof(peek));

		c->anthropic = looks_anthropic(peek, n);
		c->keepalive = 0;
		client_send_error(c, 431, "invalid_request_error",
		    "header_too_large", "request header too large");
		return;
	}
	if (c->head_cap < c->head_len) {
		char *n = realloc(c->head, c->head_len);
		if (n == NULL) {
			c->keepalive = 0;
			client_send_error(c, 500, "server_error", "no_memory",
			    "out of memory");
			return;
		}
		c->head = n;
		c->head_cap = c->head_len;
	}
	evbuffer_remove(in, c->head, c->head_len);
	c->ev.bytes_in = (int64_t)c->head_len;

	rc = http_parse_request(c->head, c->head_len, CLIENT_MAX_LINE, &c->rq);
	if (rc != 0) {
		c->anthropic = looks_anthropic(c->head, c->head_len);
		c->keepalive = 0;
		client_send_error(c, rc, "invalid_request_error",
		    "bad_request", "malformed HTTP request");
		return;
	}
	/* keepalive_timeout 0 turns keep-alive off, as in nginx */
	c->keepalive = c->rq.minor == 1 && !c->rq.conn_close &&
	    cfg->keepalive_timeout_ms > 0;
	c->nrequests++;
	snprintf(c->ev.endpoint, sizeof(c->ev.endpoint), "%.*s",
	    (int)c->rq.path_len, c->rq.target);
	c->anthropic = c->rq.path_len >= 12 &&
	    memcmp(c->rq.target, "/v1/messages", 12) == 0;
	if ((h = http_find(&c->rq, "x-request-id")) != NULL &&
	    reqid_parse(h->value, h->value_len, c->ev.request_id) == 0) {
		memcpy(c->reqid, h->value, 36);
		c->reqid[36] = '\0';
	} else
		reqid_new(c->w, c->ev.request_id, c->reqid);

	if (c->rq.path_len == 10 && memcmp(c->rq.target, "/v1/models", 10) == 0 &&
	    http_name_is(c->rq.method, c->rq.method_len, "GET")) {
		if (c->rq.chunked || c->rq.content_length > 0)
			c->keepalive = 0;
		if (auth_request_head(c) == 0)
			auth_list_models(c);
		return;
	}
	if (!endpoint_is_proxied(c->rq.target, c->rq.path_len)) {
		if (c->rq.chunked || c->rq.content_length > 0)
			c->keepalive = 0;	/* the body is not read */
		client_send_error(c, 404, "invalid_request_error",
		    "unknown_url", "Unknown request URL: %.*s %.*s",
		    (int)c->rq.method_len, c->rq.method,
		    (int)c->rq.path_len, c->rq.target);
		return;
	}
	if (!http_name_is(c->rq.method, c->rq.method_len, "POST")) {
		if (c->rq.chunked || c->rq.content_length > 0)
			c->keepalive = 0;
		client_send_error(c, 405, "invalid_request_error",
		    "method_not_allowed", "%.*s is not allowed here; use POST",
		    (int)c->rq.method_len, c->rq.method);
		return;
	}
	if (!c->rq.chunked && c->rq.content_length < 0) {
		c->keepalive = 0;
		client_send_error(c, 411, "invalid_request_error",
		    "length_required", "a request body with Content-Length "
		    "or chunked Transfer-Encoding is required");
		return;
	}
	if (c->rq.content_length > (int64_t)cfg->client_max_body_size) {
		c->keepalive = 0;
		client_send_error(c, 413, "invalid_request_error",
		    "body_too_large", "request body larger than %zu bytes",
		    cfg->client_max_body_size);
		return;
	}
	if (auth_request_head(c) == -1)
		return;
	c->body_need = c->rq.chunked ? 0 : c->rq.content_length;
	if (c->rq.expect_continue && (c->rq.chunked || c->body_need > 0) &&
	    evbuffer_get_length(in) == 0)
		bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->state = CL_READ_BODY;
	set_read_timeout(c, cfg->client_body_timeout_ms);
	client_read_body(c);
}

static void
client_read_body(struct client *c)
{
	struct evbuffer	*in = bufferevent_get_input(c->bev);
	size_t		 avail = evbuffer_get_length(in), n;

	if (c->rq.chunked) {
		size_t before = avail;

		if (chunked_decode(&c->body_ck, in, c->body) < 0) {
			c->keepalive = 0;
			client_send_error(c, 400, "invalid_request_error",
			    "bad_request", "malformed chunked request body");
			return;
		}
		c->ev.bytes_in += (int64_t)(before - evbuffer_get_length(in));
		if (evbuffer_get_length(c->body) > c->w->cfg->client_max_body_size) {
			c->keepalive = 0;
			client_send_error(c, 413, "invalid_request_error",
			    "body_too_large", "request body larger than %zu "
			    "bytes", c->w->cfg->client_max_body_size);
			return;
		}
		if (c->body_ck.state != CHUNK_DONE)
			return;
	} else {
		n = avail < (size_t)c->body_need ? avail : (size_t)c->body_need;
		if (n > 0) {
			evbuffer_remove_buffer(in, c->body, n);
			c->body_need -= (int64_t)n;
			c->ev.bytes_in += (int64_t)n;
		}
		if (c->body_need > 0)
			return;
	}
	client_dispatch(c);
}

/*
 * An OpenAI stream reports usage only when asked with
 * stream_options.include_usage; ask on the client's behalf so that every
 * stream is metered.  The extra final chunk (empty choices, a usage
 * object) is part of the documented protocol; SDKs accept it.  The body
 * is not copied: the upstream request is written around the insertion.
 */
static void
client_ask_stream_usage(struct client *c, const struct cfg_route *route,
    const char *body, size_t len, const struct json_field *so)
{
	struct json_doc			*d = &c->w->json;
	const struct cfg_upstream	*u;
	size_t				 open;
	int				 iu;

	u = &c->w->cfg->upstreams[route->upstream[0]];
	if (u->protocol == PROTO_ANTHROPIC || c->anthropic)
		return;
	if (!(c->rq.path_len == 20 &&
	    memcmp(c->rq.target, "/v1/chat/completions", 20) == 0) &&
	    !(c->rq.path_len == 15 &&
	    memcmp(c->rq.target, "/v1/completions", 15) == 0))
		return;
	if (so->type == JV_NONE) {
		/* json_scan_top saw the object open before anything else */
		open = (size_t)((const char *)memchr(body, '{', len) - body);
		client_add_edit(c, open + 1, 0,
		    "\"stream_options\":{\"include_usage\":true},");
		return;
	}
	/* a small object: jsmn on its span alone */
	if (so->type != JV_OBJECT ||
	    json_parse(d, body + so->start, so->end - so->start) == -1)
		return;
	iu = json_get(d, 0, "include_usage");
	if (iu < 0)
		client_add_edit(c, so->start + 1, 0, d->tok[0].size > 0 ?
		    "\"include_usage\":true," : "\"include_usage\":true");
	else if (json_bool(d, iu) == 0)
		client_add_edit(c, so->start + (size_t)d->tok[iu].start, 5,
		    "true");
}

/* Keep the edits in offset order; there are at most two. */
void
client_add_edit(struct client *c, size_t off, size_t skip, const char *str)
{
	struct body_edit *e;

	if (c->nedits == (int)(sizeof(c->edits) / sizeof(c->edits[0])))
		return;
	e = &c->edits[c->nedits++];
	e->off = off;
	e->skip = skip;
	e->str = str;
	if (c->nedits == 2 && c->edits[0].off > c->edits[1].off) {
		struct body_edit t = c->edits[0];

		c->edits[0] = c->edits[1];
		c->edits[1] = t;
	}
}

/*
 * No format translation: an Anthropic-format request goes to an Anthropic
 * upstream, an OpenAI-format one to an OpenAI or Azure upstream, and Azure
 * serves only what has a deployment path.
 */
static int
client_check_family(struct client *c, const struct cfg_route *route)
{
	const struct cfg_upstream *u;

	u = &c->w->cfg->upstreams[route->upstream[0]];
	if (c->anthropic && u->protocol != PROTO_ANTHROPIC) {
		client_send_error(c, 400, "invalid_request_error",
		    "protocol_mismatch", "The model `%s` is served by an "
		    "OpenAI-format upstream; send it to /v1/chat/completions.",
		    c->ev.model);
		return -1;
	}
	if (!c->anthropic && u->protocol == PROTO_ANTHROPIC) {
		client_send_error(c, 400, "invalid_request_error",
		    "protocol_mismatch", "The model `%s` is served by an "
		    "Anthropic upstream; send it to /v1/messages.",
		    c->ev.model);
		return -1;
	}
	if (u->protocol == PROTO_AZURE && proxy_azure_path(c->rq.target,
	    c->rq.path_len) == NULL) {
		client_send_error(c, 400, "invalid_request_error",
		    "unsupported_endpoint", "%.*s is not served by an Azure "
		    "OpenAI upstream.", (int)c->rq.path_len, c->rq.target);
		return -1;
	}
	return 0;
}

/* The whole request is here: read what routing needs from the JSON. */
static void
client_dispatch(struct client *c)
{
	struct worker		*w = c->w;
	const struct cfg_route	*route;
	const struct cfg_alias	*alias;
	const char		*body;
	size_t			 len = evbuffer_get_length(c->body);
	struct json_field	 f[3] = {
		{ .key = "model" }, { .key = "stream" },
		{ .key = "stream_options" },
	};

	body = (const char *)evbuffer_pullup(c->body, -1);
	if (body == NULL || json_scan_top(body, len, f, 3) == -1) {
		client_send_error(c, 400, "invalid_request_error",
		    "invalid_json", "We could not parse the JSON body of "
		    "your request.");
		return;
	}
	if (f[0].count > 1) {
		/* parsers disagree on which one counts: refuse, do not pick */
		client_send_error(c, 400, "invalid_request_error",
		    "duplicate_model", "the request body has more than one "
		    "\"model\"");
		return;
	}
	if (f[0].type != JV_STRING) {
		client_send_error(c, 400, "invalid_request_error",
		    "missing_model", "you must provide a model parameter");
		return;
	}
	c->model = body + f[0].start;
	c->model_len = f[0].end - f[0].start;
	snprintf(c->ev.model, sizeof(c->ev.model), "%.*s",
	    (int)c->model_len, c->model);
	c->stream = f[1].type == JV_TRUE;
	c->ev.stream = (uint8_t)c->stream;

	if (auth_request_body(c) == -1)
		return;

	if ((alias = cfg_alias_for(w->cfg, c->model, c->model_len)) != NULL) {
		/* the upstream is asked for the model the alias stands for */
		c->model_resolved = alias->model;
		client_add_edit(c, f[0].start, c->model_len, alias->model);
		route = cfg_route_for(w->cfg, alias->model,
		    strlen(alias->model));
	} else
		route = cfg_route_for(w->cfg, c->model, c->model_len);
	if (route == NULL) {
		client_send_error(c, 404, "invalid_request_error",
		    "model_not_found", "The model `%s` does not exist or you "
		    "do not have access to it.", c->ev.model);
		return;
	}
	if (client_check_family(c, route) == -1)
		return;
	if (c->stream)
		client_ask_stream_usage(c, route, body, len, &f[2]);
	c->state = CL_PROXYING;
	/* a client may wait minutes for a model: only the upstream times out */
	set_read_timeout(c, 0);
	proxy_start(c, route);
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	switch (c->state) {
	case CL_CLOSING:
		client_close(c);
		break;
	case CL_PROXYING:
		proxy_client_drained(c);
		break;
	default:
		break;
	}
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	switch (c->state) {
	case CL_READ_HEAD:
		if (c->t_start_us != 0 && (what & BEV_EVENT_TIMEOUT)) {
			c->keepalive = 0;
			client_send_error(c, 408, "invalid_request_error",
			    "request_timeout", "timed out reading the request");
			return;
		}
		/* idle keep-alive ended, or a partial head abandoned */
		client_free(c);
		return;
	case CL_READ_BODY:
		if (what & BEV_EVENT_TIMEOUT) {
			c->keepalive = 0;
			client_send_error(c, 408, "invalid_request_error",
			    "request_timeout", "timed out reading the body");
			return;
		}
		c->ev.status = 499;
		snprintf(c->ev.error_class, sizeof(c->ev.error_class),
		    "client_closed");
		meter_finish(c);
		client_free(c);
		return;
	case CL_PROXYING:
		/* the client went away or stopped reading: cancel upstream */
		c->ev.status = (what & BEV_EVENT_TIMEOUT) ? 408 : 499;
		snprintf(c->ev.error_class, sizeof(c->ev.error_class), "%s",
		    (what & BEV_EVENT_TIMEOUT) ? "client_timeout" :
		    "client_closed");
		proxy_abort(c);
		meter_finish(c);
		client_free(c);
		return;
	case CL_CLOSING:
		client_free(c);
		return;
	}
}
