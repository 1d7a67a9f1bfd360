/*
 * proxy.c - the upstream side of one request: pick a connection, send the
 * request, stream the response back as it arrives.
 *
 * States: PX_CONNECTING (a new connection: DNS, TCP, TLS) -> PX_WAIT_HEAD
 * -> PX_BODY.  Until the first byte of a response reaches the client, a
 * failure is retried: on the next pooled or a new connection when a pooled
 * one turns out to be closed (the upstream may close an idle connection at
 * any moment; nginx does the same), and on the route's next upstream when
 * connecting fails.  After that, failure is reported as it is: the client
 * sees a truncated body and a closed connection.
 *
 * Bytes move from the upstream's input evbuffer to the client's output
 * with evbuffer_remove_buffer (chains move, nothing is copied); a chunked
 * response is de-chunked into px.decoded and re-chunked for the client,
 * one upstream read = one chunk, so SSE events go out as they come.  When
 * the client's output holds more than CLIENT_HIGH bytes, the upstream is
 * no longer read until it drains: a slow client costs bounded memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "common/log.h"
#include "worker/worker.h"

#define CLIENT_HIGH		(256 * 1024)
#define UPSTREAM_HEAD_MAX	(64 * 1024)

static void	 px_read_cb(struct bufferevent *, void *);
static void	 px_write_cb(struct bufferevent *, void *);
static void	 px_event_cb(struct bufferevent *, short, void *);
static void	 px_attempt(struct client *);
static void	 px_try_next(struct client *);
static void	 px_uncount(struct client *);
static void	 px_fail_early(struct client *, int, const char *);

/*
 * Head lines are assembled with these rather than evbuffer_add_printf:
 * they run several times per request, and vfprintf was 5% of a worker's
 * instructions for small requests.
 */
static char *
put_str(char *q, const char *s, size_t n)
{
	memcpy(q, s, n);
	return q + n;
}

static char *
put_u64(char *q, uint64_t v)
{
	char	 t[20];
	int	 n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*q++ = t[--n];
	return q;
}

/* "<hex size>\r\n"; its length. */
static size_t
put_chunk_size(char *line, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char	 t[16];
	int	 k = 0;
	size_t	 len = 0;

	do {
		t[k++] = hex[n & 15];
		n >>= 4;
	} while (n != 0);
	while (k > 0)
		line[len++] = t[--k];
	line[len++] = '\r';
	line[len++] = '\n';
	return len;
}

static void
set_timeouts(struct bufferevent *bev, int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	bufferevent_set_timeouts(bev, &tv, &tv);
}

void
proxy_start(struct client *c, const struct cfg_route *route)
{
	struct proxy *px = &c->px;

	px->route = route;
	px->route_idx = 0;
	px->attempts = 0;
	px->tried = 0;
	px_try_next(c);
}

/* Azure's path after the deployment for an OpenAI endpoint, or NULL. */
const char *
proxy_azure_path(const char *path, size_t len)
{
	if (len == 20 && memcmp(path, "/v1/chat/completions", 20) == 0)
		return "/chat/completions";
	if (len == 15 && memcmp(path, "/v1/completions", 15) == 0)
		return "/completions";
	if (len == 14 && memcmp(path, "/v1/embeddings", 14) == 0)
		return "/embeddings";
	return NULL;
}

static int
up_is_down(const struct upstream *up, int64_t now)
{
	return up->down_until_us > now;
}

/* Passive health: max_fails failures in a row mark it down a while. */
static void
up_failed(struct upstream *up)
{
	int64_t now = now_us();

	up->fails++;
	if (up->cfg->max_fails > 0 && up->fails >= up->cfg->max_fails &&
	    !up_is_down(up, now)) {
		up->down_until_us = now + (int64_t)up->cfg->fail_timeout_ms *
		    1000;
		log_warnx("upstream %s: %d failures in a row, down for %d ms",
		    up->cfg->name, up->fails, up->cfg->fail_timeout_ms);
	}
}

static void
up_answered(struct upstream *up)
{
	if (up->down_until_us != 0) {
		log_info("upstream %s answers again", up->cfg->name);
		up->down_until_us = 0;
	}
	up->fails = 0;
}

static int
px_max_attempts(const struct client *c)
{
	const struct config *cfg = c->w->cfg;

	return cfg->max_attempts > 0 ? cfg->max_attempts :
	    c->px.route->nupstreams;
}

/*
 * The route's next upstream.  Failover: the first not yet tried, in
 * order.  Balance: of those not yet tried, the one with the fewest
 * requests in flight in this worker, ties broken round-robin.  Upstreams
 * marked down are skipped unless all are down (then they are tried, as
 * nginx does).  After every upstream was tried, a new round starts.
 */
static void
px_pick(struct client *c)
{
	struct proxy		*px = &c->px;
	struct worker		*w = c->w;
	const struct cfg_route	*r = px->route;
	int64_t			 now = now_us();
	uint32_t		 all, bit;
	unsigned		 rr = 0;
	int			 n = r->nupstreams, i, k, pass, best = -1;
	int			 ri = (int)(r - w->cfg->routes);

	all = n >= 32 ? ~0u : (1u << n) - 1;
	if ((px->tried & all) == all)
		px->tried = 0;
	if (w->route_rr != NULL)
		rr = w->route_rr[ri];
	for (pass = 0; pass < 2 && best == -1; pass++) {
		for (k = 0; k < n; k++) {
			struct upstream *up;

			i = r->balance ? (int)((rr + (unsigned)k) % (unsigned)n) :
			    k;
			bit = 1u << (i & 31);
			up = &w->ups[r->upstream[i]];
			if ((px->tried & bit) || (pass == 0 &&
			    up_is_down(up, now)))
				continue;
			if (!r->balance) {
				best = i;
				break;
			}
			if (best == -1 || up->outstanding <
			    w->ups[r->upstream[best]].outstanding)
				best = i;
		}
	}
	if (best == -1)
		best = 0;
	if (r->balance && w->route_rr != NULL)
		w->route_rr[ri] = (unsigned)best + 1;
	px->route_idx = best;
	px->tried |= 1u << (best & 31);
	px->up = &w->ups[r->upstream[best]];
}

static void
px_try_next(struct client *c)
{
	px_pick(c);
	px_attempt(c);
}

/* Another attempt is allowed and nothing reached the client yet. */
static int
px_can_retry(const struct client *c)
{
	return !c->px.head_sent && c->px.attempts < px_max_attempts(c);
}

/* The request target upstream: path prefix, then the client's target or
 * Azure's deployment path. */
static void
px_write_target(struct client *c, struct evbuffer *out)
{
	const struct cfg_upstream	*u = c->px.up->cfg;
	const struct http_head		*rq = &c->rq;
	const char			*model, *tail;

	evbuffer_add(out, u->path_prefix, strlen(u->path_prefix));
	if (u->protocol != PROTO_AZURE ||
	    (tail = proxy_azure_path(rq->target, rq->path_len)) == NULL) {
		evbuffer_add(out, rq->target, rq->target_len);
		return;
	}
	model = c->model_resolved != NULL ? c->model_resolved : c->ev.model;
	evbuffer_add_printf(out, "/openai/deployments/%s%s?api-version=%s",
	    cfg_deployment_for(u, model), tail, u->api_version);
}

/* Write the request to the upstream connection's output. */
static void
px_write_request(struct client *c)
{
	struct proxy		*px = &c->px;
	struct upstream		*up = px->up;
	struct evbuffer		*out = bufferevent_get_output(px->uc->bev);
	const struct http_head	*rq = &c->rq;
	const char		*body;
	size_t			 blen = evbuffer_get_length(c->body), len, pos;
	int			 i;

	evbuffer_add(out, rq->method, rq->method_len);
	evbuffer_add(out, " ", 1);
	px_write_target(c, out);
	evbuffer_add(out, " HTTP/1.1\r\n", 11);
	evbuffer_add(out, up->host_hdr, strlen(up->host_hdr));
	for (i = 0; i < rq->nh; i++) {
		const struct http_header *h = &rq->h[i];

		if (http_is_hop_by_hop(rq, h) ||
		    http_name_is(h->name, h->name_len, "host") ||
		    http_name_is(h->name, h->name_len, "content-length") ||
		    http_name_is(h->name, h->name_len, "expect") ||
		    http_name_is(h->name, h->name_len, "x-request-id"))
			continue;
		/* the client's credentials are for sluice (or, with no key
		 * of our own for this upstream and no keys_file, for it) */
		if ((up->auth_hdr != NULL || c->w->cfg->keys != NULL) &&
		    (http_name_is(h->name, h->name_len, "authorization") ||
		    http_name_is(h->name, h->name_len, "x-api-key") ||
		    http_name_is(h->name, h->name_len, "api-key")))
			continue;
		evbuffer_add(out, h->name, h->name_len);
		evbuffer_add(out, ": ", 2);
		evbuffer_add(out, h->value, h->value_len);
		evbuffer_add(out, "\r\n", 2);
	}
	if (up->auth_hdr != NULL)
		evbuffer_add(out, up->auth_hdr, strlen(up->auth_hdr));
	if (up->cfg->protocol == PROTO_ANTHROPIC &&
	    http_find(rq, "anthropic-version") == NULL)
		evbuffer_add(out, "anthropic-version: 2023-06-01\r\n", 31);
	len = blen;
	for (i = 0; i < c->nedits; i++)
		len = len - c->edits[i].skip + strlen(c->edits[i].str);
	{
		char	 line[96], *q = line;

		q = put_str(q, "x-request-id: ", 14);
		q = put_str(q, c->reqid, 36);
		q = put_str(q, "\r\nContent-Length: ", 18);
		q = put_u64(q, len);
		q = put_str(q, "\r\n\r\n", 4);
		evbuffer_add(out, line, (size_t)(q - line));
	}
	/* the body stays in c->body until the response is complete */
	body = (const char *)evbuffer_pullup(c->body, -1);
	for (i = 0, pos = 0; i < c->nedits; i++) {
		const struct body_edit *e = &c->edits[i];

		if (e->off > pos)
			evbuffer_add_reference(out, body + pos, e->off - pos,
			    NULL, NULL);
		evbuffer_add(out, e->str, strlen(e->str));
		pos = e->off + e->skip;
	}
	if (blen > pos)
		evbuffer_add_reference(out, body + pos, blen - pos, NULL, NULL);
}

static void
px_attempt(struct client *c)
{
	struct proxy *px = &c->px;

	px->attempts++;
	px->head_scanned = 0;
	px->t_first_byte_us = 0;
	if (!px->counted) {
		px->up->outstanding++;
		px->counted = 1;
	}
	px->uc = pool_get(px->up, &px->reused);
	if (px->uc == NULL) {
		px->state = PX_CONNECTING;
		px->reused = 0;
		px_fail_early(c, 0, "could not start a connection");
		return;
	}
	px->uc->owner = c;
	bufferevent_setcb(px->uc->bev, px_read_cb, px_write_cb, px_event_cb, c);
	if (px->reused) {
		px->state = PX_WAIT_HEAD;
		set_timeouts(px->uc->bev, px->up->cfg->read_timeout_ms);
	} else {
		px->state = PX_CONNECTING;
		set_timeouts(px->uc->bev, px->up->cfg->connect_timeout_ms);
	}
	px_write_request(c);
	px->t_sent_us = now_us();
	bufferevent_enable(px->uc->bev, EV_READ | EV_WRITE);
}

/* This attempt no longer counts as in flight on its upstream. */
static void
px_uncount(struct client *c)
{
	if (c->px.counted) {
		c->px.up->outstanding--;
		c->px.counted = 0;
	}
}

/* Give up on this connection: it is closed, never pooled. */
static void
px_drop_conn(struct client *c)
{
	px_uncount(c);
	if (c->px.uc != NULL) {
		upconn_free(c->px.uc);
		c->px.uc = NULL;
	}
}

void
proxy_abort(struct client *c)
{
	px_drop_conn(c);
	c->px.state = PX_NONE;
}

/* Record which upstream answered and how many tries it took. */
static void
px_note_upstream(struct client *c)
{
	snprintf(c->ev.upstream, sizeof(c->ev.upstream), "%s",
	    c->px.up->cfg->name);
	c->ev.attempts = (uint8_t)(c->px.attempts > 255 ? 255 : c->px.attempts);
	if (c->px.t_first_byte_us != 0)
		c->ev.ttfb_us = c->px.t_first_byte_us - c->px.t_sent_us;
}

/* The response is complete and queued to the client. */
static void
px_finish(struct client *c)
{
	struct proxy *px = &c->px;

	px_note_upstream(c);
	px_uncount(c);
	px->complete = 1;
	if (px->tap_on)
		usage_tap_end(&c->tap, &c->usage, &c->w->json);
	if (px->keepalive &&
	    evbuffer_get_length(bufferevent_get_input(px->uc->bev)) == 0)
		pool_put(px->uc);
	else
		upconn_free(px->uc);
	px->uc = NULL;
	px->state = PX_NONE;
	client_request_done(c);
}

/*
 * The exchange failed before anything reached the client: retry where it
 * is safe, else answer with 502/504.
 */
static void
px_fail_early(struct client *c, int timeout, const char *why)
{
	struct proxy *px = &c->px;
	int stale = px->reused && !timeout && px->t_first_byte_us == 0;

	px_drop_conn(c);
	if (stale && px->attempts < px->up->cfg->max_idle + 2) {
		/* a pooled connection the upstream had closed: try again */
		px->attempts--;
		px_attempt(c);
		return;
	}
	log_warnx("upstream %s: %s (request %s)", px->up->cfg->name, why,
	    c->reqid);
	up_failed(px->up);
	/*
	 * Connecting (DNS, TCP, TLS) failed, or no byte of an answer came
	 * in time: the next upstream may do better.  A connection closed
	 * before any answer is not retried: the request may have been run.
	 */
	if ((px->state == PX_CONNECTING || (timeout &&
	    px->t_first_byte_us == 0)) && px_can_retry(c)) {
		px_try_next(c);
		return;
	}
	px_note_upstream(c);
	if (timeout)
		client_send_error(c, 504, "api_error", "upstream_timeout",
		    "upstream %s timed out", px->up->cfg->name);
	else
		client_send_error(c, 502, "api_error", px->state ==
		    PX_CONNECTING ? "upstream_connect" : "upstream_error",
		    "upstream %s: %s", px->up->cfg->name, why);
}

/* Failure after the response started: the client sees a truncated body. */
static void
px_fail_late(struct client *c, const char *class)
{
	px_note_upstream(c);
	snprintf(c->ev.error_class, sizeof(c->ev.error_class), "%s", class);
	log_warnx("upstream %s: %s mid-response (request %s)",
	    c->px.up->cfg->name, class, c->reqid);
	px_drop_conn(c);
	c->px.state = PX_NONE;
	c->keepalive = 0;
	client_request_done(c);
}

/* Send the client the response head, built from the upstream's. */
static void
px_send_head(struct client *c)
{
	struct proxy		*px = &c->px;
	struct evbuffer		*out = bufferevent_get_output(c->bev);
	const struct http_head	*rh = &px->rh;
	size_t			 before = evbuffer_get_length(out);
	int			 i;

	{
		char	 line[16], *q = line;

		q = put_str(q, "HTTP/1.1 ", 9);
		q = put_u64(q, (uint64_t)rh->status);
		*q++ = ' ';
		evbuffer_add(out, line, (size_t)(q - line));
		evbuffer_add(out, rh->target, rh->target_len);
		evbuffer_add(out, "\r\n", 2);
	}
	for (i = 0; i < rh->nh; i++) {
		const struct http_header *h = &rh->h[i];

		if (http_is_hop_by_hop(rh, h) ||
		    http_name_is(h->name, h->name_len, "content-length") ||
		    http_name_is(h->name, h->name_len, "x-request-id"))
			continue;
		evbuffer_add(out, h->name, h->name_len);
		evbuffer_add(out, ": ", 2);
		evbuffer_add(out, h->value, h->value_len);
		evbuffer_add(out, "\r\n", 2);
	}
	{
		char	 line[96], *q = line;

		q = put_str(q, "x-request-id: ", 14);
		q = put_str(q, c->reqid, 36);
		q = put_str(q, "\r\n", 2);
		if (px->mode == BODY_LENGTH) {
			q = put_str(q, "Content-Length: ", 16);
			q = put_u64(q, (uint64_t)px->remaining);
			q = put_str(q, "\r\n", 2);
		} else if (px->mode != BODY_NONE) {
			if (c->rq.minor == 1)
				q = put_str(q, "Transfer-Encoding: chunked\r\n",
				    28);
			else
				c->keepalive = 0; /* HTTP/1.0: ends at close */
		}
		evbuffer_add(out, line, (size_t)(q - line));
	}
	if (c->w->stopping)
		c->keepalive = 0;
	if (!c->keepalive)
		evbuffer_add(out, "Connection: close\r\n", 19);
	evbuffer_add(out, "\r\n", 2);
	c->out_bytes += (int64_t)(evbuffer_get_length(out) - before);
	c->ev.status = (uint16_t)rh->status;
	px->head_sent = 1;
	meter_stream_begin(c);
	/* only a success carries usage */
	px->tap_on = rh->status >= 200 && rh->status < 300;
	if (px->tap_on) {
		const struct http_header *ct = http_find(rh, "content-type");

		usage_tap_reset(&c->tap, ct != NULL && ct->value_len >= 17 &&
		    strncasecmp(ct->value, "text/event-stream", 17) == 0);
	}
}

/* Parse the response head if it is all here. 1 done, 0 need more, -1 bad. */
static int
px_read_head(struct client *c, struct evbuffer *in)
{
	struct proxy		*px = &c->px;
	struct evbuffer_ptr	 start, found;
	size_t			 len, from, hlen;

	for (;;) {
		len = evbuffer_get_length(in);
		from = px->head_scanned > 3 ? px->head_scanned - 3 : 0;
		evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET);
		found = evbuffer_search(in, "\r\n\r\n", 4, &start);
		if (found.pos == -1) {
			px->head_scanned = len;
			return len > UPSTREAM_HEAD_MAX ? -1 : 0;
		}
		hlen = (size_t)found.pos + 4;
		if (hlen > UPSTREAM_HEAD_MAX)
			return -1;
		if (px->head_cap < hlen) {
			char *n = realloc(px->head, hlen);
			if (n == NULL)
				return -1;
			px->head = n;
			px->head_cap = hlen;
		}
		evbuffer_remove(in, px->head, hlen);
		px->head_scanned = 0;
		if (http_parse_response(px->head, hlen, &px->rh) == -1)
			return -1;
		if (px->rh.status >= 200)
			break;
		/* 1xx: informational, the real head follows */
	}
	if (px->rh.status == 204 || px->rh.status == 304 ||
	    http_name_is(c->rq.method, c->rq.method_len, "HEAD")) {
		px->mode = BODY_NONE;
		px->remaining = 0;
	} else if (px->rh.chunked) {
		px->mode = BODY_CHUNKED;
		memset(&px->ck, 0, sizeof(px->ck));
	} else if (px->rh.content_length >= 0) {
		px->mode = BODY_LENGTH;
		px->remaining = px->rh.content_length;
	} else
		px->mode = BODY_UNTIL_CLOSE;
	px->keepalive = px->rh.minor == 1 && !px->rh.conn_close &&
	    px->mode != BODY_UNTIL_CLOSE;
	return 1;
}

/* Relay what the upstream sent. 1 complete, 0 more to come, -1 bad body. */
static int
px_relay(struct client *c, struct evbuffer *in)
{
	struct proxy	*px = &c->px;
	struct evbuffer	*out = bufferevent_get_output(c->bev);
	size_t		 avail = evbuffer_get_length(in), n, before;
	int		 chunk_out = c->rq.minor == 1;

	before = evbuffer_get_length(out);
	switch (px->mode) {
	case BODY_NONE:
		break;
	case BODY_LENGTH:
		n = avail < (size_t)px->remaining ? avail : (size_t)px->remaining;
		if (px->tap_on && n > 0)
			usage_tap_feed(&c->tap, &c->usage, &c->w->json, in,
			    (long)n);
		if (n > 0)
			evbuffer_remove_buffer(in, out, n);
		px->remaining -= (int64_t)n;
		if (px->remaining > 0) {
			c->out_bytes += (int64_t)n;
			return 0;
		}
		if (evbuffer_get_length(in) > 0)
			px->keepalive = 0;	/* more than it announced */
		break;
	case BODY_CHUNKED:
		if (chunked_decode(&px->ck, in, px->decoded) < 0)
			return -1;
		/* FALLTHROUGH */
	case BODY_UNTIL_CLOSE:
		if (px->mode == BODY_UNTIL_CLOSE)
			evbuffer_add_buffer(px->decoded, in);
		n = evbuffer_get_length(px->decoded);
		if (px->tap_on && n > 0)
			usage_tap_feed(&c->tap, &c->usage, &c->w->json,
			    px->decoded, -1);
		if (n > 0) {
			if (chunk_out) {
				char	 line[24];

				evbuffer_add(out, line, put_chunk_size(line, n));
			}
			evbuffer_add_buffer(out, px->decoded);
			if (chunk_out)
				evbuffer_add(out, "\r\n", 2);
		}
		if (px->mode == BODY_CHUNKED && px->ck.state == CHUNK_DONE) {
			if (chunk_out)
				evbuffer_add(out, "0\r\n\r\n", 5);
			if (evbuffer_get_length(in) > 0)
				px->keepalive = 0;
			break;
		}
		c->out_bytes += (int64_t)(evbuffer_get_length(out) - before);
		return 0;
	}
	c->out_bytes += (int64_t)(evbuffer_get_length(out) - before);
	return 1;
}

/* Statuses that say "this upstream, not this request": try another. */
static int
px_retryable_status(int status)
{
	return status == 429 || status == 500 || status == 502 ||
	    status == 503 || status == 504 || status == 529;
}

static void
px_read_cb(struct bufferevent *bev, void *arg)
{
	struct client	*c = arg;
	struct proxy	*px = &c->px;
	struct evbuffer	*in = bufferevent_get_input(bev);
	int		 rc;

	if (px->t_first_byte_us == 0)
		px->t_first_byte_us = now_us();
	if (px->state == PX_CONNECTING)
		px->state = PX_WAIT_HEAD;
	if (px->state == PX_WAIT_HEAD) {
		rc = px_read_head(c, in);
		if (rc == 0)
			return;
		if (rc == -1) {
			px->reused = 0;	/* a bad answer is not a stale conn */
			px_fail_early(c, 0, "malformed response head");
			return;
		}
		if (px_retryable_status(px->rh.status) && px_can_retry(c)) {
			log_warnx("upstream %s answered %d, trying the next "
			    "(request %s)", px->up->cfg->name, px->rh.status,
			    c->reqid);
			up_failed(px->up);
			px->reused = 0;
			px_drop_conn(c);
			px_try_next(c);
			return;
		}
		if (px_retryable_status(px->rh.status))
			up_failed(px->up);
		else
			up_answered(px->up);
		px->state = PX_BODY;
		px_send_head(c);
	}
	rc = px_relay(c, in);
	if (rc == -1) {
		px_fail_late(c, "upstream_bad_body");
		return;
	}
	if (rc == 1) {
		px_finish(c);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > CLIENT_HIGH)
		bufferevent_disable(bev, EV_READ);
}

/* The client's output drained below its low watermark. */
void
proxy_client_drained(struct client *c)
{
	if (c->px.uc != NULL && c->px.state == PX_BODY)
		bufferevent_enable(c->px.uc->bev, EV_READ);
}

static void
px_write_cb(struct bufferevent *bev, void *arg)
{
	/* the whole request is written; nothing to do until the answer */
}

static void
px_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client	*c = arg;
	struct proxy	*px = &c->px;
	char		 why[256];
	unsigned long	 e;
	int		 dns;

	if (what & BEV_EVENT_CONNECTED) {
		px->state = PX_WAIT_HEAD;
		set_timeouts(bev, px->up->cfg->read_timeout_ms);
		return;
	}
	if ((what & BEV_EVENT_EOF) && px->state == PX_BODY &&
	    px->mode == BODY_UNTIL_CLOSE) {
		struct evbuffer *in = bufferevent_get_input(bev);

		if (evbuffer_get_length(in) > 0)
			px_relay(c, in);
		if (c->rq.minor == 1)
			evbuffer_add(bufferevent_get_output(c->bev),
			    "0\r\n\r\n", 5);
		px->keepalive = 0;
		px_finish(c);
		return;
	}
	if (px->state == PX_BODY || px->head_sent) {
		px_fail_late(c, (what & BEV_EVENT_TIMEOUT) ?
		    "upstream_timeout" : "upstream_truncated");
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		px_fail_early(c, 1, px->state == PX_CONNECTING ?
		    "connect timed out" : "timed out waiting for a response");
		return;
	}
	if ((dns = bufferevent_socket_get_dns_error(bev)) != 0)
		snprintf(why, sizeof(why), "DNS: %s", evutil_gai_strerror(dns));
	else if ((e = bufferevent_get_openssl_error(bev)) != 0) {
		char buf[200];

		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(why, sizeof(why), "TLS: %s", buf);
		while (bufferevent_get_openssl_error(bev) != 0)
			;
	} else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed before a "
		    "response");
	else
		snprintf(why, sizeof(why), "%s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	px_fail_early(c, 0, why);
}
