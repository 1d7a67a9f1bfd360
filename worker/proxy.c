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
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "common/clock.h"
#include "common/log.h"
#include "shm/gtokens.h"
#include "shm/inflight.h"
#include "worker/meter.h"
#include "worker/proxy.h"
#include "worker/reply.h"
#include "worker/upstream.h"
#include "worker/vertex.h"

#define CLIENT_HIGH		(256 * 1024)
#define UPSTREAM_HEAD_MAX	(64 * 1024)
/* inflated bytes read for usage per answer: past it, a zip bomb or not,
 * the request is estimated (the client still gets every byte) */
#define TAP_DECODED_MAX		(8 * 1024 * 1024)

static void	 px_read_cb(struct bufferevent *, void *);
static void	 px_event_cb(struct bufferevent *, short, void *);
static void	 px_attempt(struct proxy *);
static void	 px_try_next(struct proxy *);
static void	 px_uncount(struct proxy *);
static void	 px_fail_early(struct proxy *, enum up_failure, const char *);
static void	 px_abort(void *);
static void	 px_client_drained(void *);
static void	 px_xl_fail(struct proxy *, const char *);
static void	 px_xl_begin(struct proxy *);
static int	 px_xl_relay(struct proxy *, struct evbuffer *);
static int	 px_xl_end(struct proxy *);
static int	 px_deframe(struct proxy *, struct evbuffer *);
static int	 px_es_relay(struct proxy *, struct evbuffer *, int);
static void	 px_es_fail(struct proxy *);
static void	 px_note_upstream(struct proxy *);
static int	 px_berr_relay(struct proxy *, struct evbuffer *, int);
static void	 px_berr_reshape(struct proxy *);
static void	 px_send_head(struct proxy *);

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

int
proxy_init(struct proxy *px, struct client *c)
{
	memset(px, 0, sizeof(*px));
	px->c = c;
	/* px->cl only when a cloud upstream first needs it: every connection
	 * would pay for it (a refused key was 6 to 10 % dearer) */
	return (px->decoded = evbuffer_new()) == NULL ||
	    (px->req = evbuffer_new()) == NULL ? -1 : 0;
}

void
proxy_free(struct proxy *px)
{
	px_abort(px);
	if (px->decoded != NULL)
		evbuffer_free(px->decoded);
	if (px->req != NULL)
		evbuffer_free(px->req);
	if (px->cl != NULL) {
		if (px->cl->cbody != NULL)
			evbuffer_free(px->cl->cbody);
		if (px->cl->sse != NULL)
			evbuffer_free(px->cl->sse);
		bedrock_stream_free(&px->cl->bs);
		free(px->cl);
	}
	free(px->head);
	usage_tap_free(&px->tap);
	dec_free(&px->dec);
}

void
proxy_reset(struct proxy *px)
{
	dec_end(&px->dec);
	if (px->es_on) {
		bedrock_stream_free(&px->cl->bs);
		bedrock_stream_init(&px->cl->bs);
		evbuffer_drain(px->cl->sse, evbuffer_get_length(px->cl->sse));
	}
	memset(&px->state, 0, sizeof(*px) - offsetof(struct proxy, state));
}

int
proxy_add_edit(struct proxy *px, size_t off, size_t skip, const char *str)
{
	struct body_edit *e;

	if (px->nedits == PX_MAX_EDITS)
		return -1;
	e = &px->edits[px->nedits++];
	e->off = off;
	e->skip = skip;
	e->str = str;
	if (px->nedits == 2 && px->edits[0].off > px->edits[1].off) {
		struct body_edit t = px->edits[0];

		px->edits[0] = px->edits[1];
		px->edits[1] = t;
	}
	return 0;
}

/*
 * Every edit lies inside the body, in order, without overlap: then the
 * Content-Length computed from them is exactly the bytes written.
 */
static int
px_edits_ok(const struct proxy *px, size_t blen)
{
	size_t	 pos = 0;
	int	 i;

	for (i = 0; i < px->nedits; i++) {
		const struct body_edit *e = &px->edits[i];

		if (e->off < pos || e->off > blen || e->skip > blen - e->off)
			return 0;
		pos = e->off + e->skip;
	}
	return 1;
}

void
proxy_translate(struct proxy *px, struct xlate *xl)
{
	px->xl = xl;
}

void
proxy_start(struct proxy *px, const struct cfg_route *route,
    const char *model)
{
	if (!px_edits_ok(px, evbuffer_get_length(px->c->body))) {
		log_warnx("request %s: a body edit outside the body, refused",
		    px->c->r.reqid);
		client_error(px->c, 500, "server_error", "internal_error",
		    "sluice could not prepare this request.");
		return;
	}
	px->route = route;
	px->model = model;
	client_set_hooks(px->c, px_client_drained, px_abort, px);
	client_handle(px->c);
	px_try_next(px);
}

static void
px_try_next(struct proxy *px)
{
	px->up = up_pick(px->c->w, px->route, &px->tried, &px->route_idx);
	px_attempt(px);
}

/* The request target upstream: path prefix, then the client's target or
 * Azure's deployment path. */
static void
px_write_target(struct proxy *px, struct http_out *o)
{
	const struct cfg_upstream	*u = px->up->cfg;
	const struct request		*r = &px->c->r;
	const struct endpoint		*ep = px->xl != NULL ? px->xl->ep :
					    r->ep;
	const char			*tail = ep->azure_tail;

	if (u->protocol == PROTO_BEDROCK || u->protocol == PROTO_VERTEX) {
		http_out_put(o, px->cl->cpath, px->cl->cpath_len);
		return;
	}
	http_out_put(o, u->path_prefix, strlen(u->path_prefix));
	if (u->protocol != PROTO_AZURE || tail == NULL) {
		const char	*t = px->xl != NULL ? ep->path : r->hd.target;
		size_t		 n = px->xl != NULL ? ep->len : r->hd.target_len;
		size_t		 k = strlen(u->strip_path);

		/* Gemini's /v1beta/openai/chat/completions: no /v1 */
		if (k > 0 && n > k && memcmp(t, u->strip_path, k) == 0 &&
		    t[k] == '/') {
			t += k;
			n -= k;
		}
		http_out_put(o, t, n);
		return;
	}
	http_out_flush(o);
	evbuffer_add_printf(o->to, "/openai/deployments/%s%s?api-version=%s",
	    cfg_deployment_for(u, px->model), tail, u->api_version);
}

/*
 * anthropic-beta as the upstream allows it; the row records what went
 * (a beta such as the 1M-token context changes the price).
 */
static void
px_write_betas(struct proxy *px, struct http_out *o,
    const struct http_header *h)
{
	char		*rec = px->c->r.ev->anthropic_beta;
	size_t		 had = strlen(rec);
	size_t		 cap = sizeof(px->c->r.ev->anthropic_beta);
	char		 v[CFG_MAX_HDR_NAMES * CFG_HDR_NAME_MAX];
	const char	*send = h->value;
	size_t		 n = h->value_len;

	if (px->up->cfg->nbetas > 0) {
		/* each listed name fits once: nothing allowed is cut */
		if ((n = up_filter_betas(px->up, h->value, h->value_len, v,
		    sizeof(v))) == 0)
			return;
		send = v;
	}
	http_out_put(o, "anthropic-beta: ", 16);
	http_out_put(o, send, n);
	http_out_put(o, "\r\n", 2);
	snprintf(rec + had, cap - had, "%s%.*s", had > 0 ? "," : "", (int)n,
	    send);
}

/*
 * Accept-Encoding as the client sent it, less the codings worker/decode
 * cannot read (see decode.h for why); none left, no header.
 */
static void
px_write_accept(struct http_out *o, const struct http_header *h)
{
	const char	*p = h->value, *end = h->value + h->value_len, *el;
	size_t		 n;
	int		 first = 1;

	while (dec_accept_next(&p, end, &el, &n) == 1) {
		http_out_put(o, first ? "Accept-Encoding: " : ", ",
		    first ? 17 : 2);
		http_out_put(o, el, n);
		first = 0;
	}
	if (!first)
		http_out_put(o, "\r\n", 2);
}

/*
 * A bedrock or vertex request's body and path, into px->cl->cbody and
 * px->cl->cpath: the body SRC with its NEDITS edits applied, then as the
 * cloud takes it.  The body to send; SRC itself if it cannot be adapted
 * (the pipeline let only one JSON object through, so that is never),
 * and the upstream says why.
 */
static struct evbuffer *
px_cloud_prepare(struct proxy *px, struct evbuffer *src, int nedits)
{
	const struct cfg_upstream	*u = px->up->cfg;
	struct evbuffer			*edited = src;
	const char			*body;
	size_t				 blen = evbuffer_get_length(src), pos;
	size_t				 plen = strlen(u->path_prefix);
	int				 i, rc;

	if (px->cl == NULL && (px->cl = calloc(1, sizeof(*px->cl))) == NULL)
		return src;	/* out of memory: the upstream refuses it */
	if ((px->cl->cbody == NULL &&
	    (px->cl->cbody = evbuffer_new()) == NULL) ||
	    (px->cl->sse == NULL && (px->cl->sse = evbuffer_new()) == NULL))
		return src;
	memcpy(px->cl->cpath, u->path_prefix, plen);
	px->cl->cpath_len = plen + (u->protocol == PROTO_VERTEX ?
	    vertex_target(u, px->model, px->c->r.ev->stream, px->cl->cpath + plen,
	    sizeof(px->cl->cpath) - plen) : bedrock_target(u, px->model,
	    px->c->r.ev->stream, px->cl->cpath + plen, sizeof(px->cl->cpath) - plen));
	evbuffer_drain(px->cl->cbody, evbuffer_get_length(px->cl->cbody));
	body = (const char *)evbuffer_pullup(src, -1);
	if (nedits > 0) {
		if ((edited = evbuffer_new()) == NULL)
			return src;
		for (i = 0, pos = 0; i < nedits; i++) {
			const struct body_edit *e = &px->edits[i];

			evbuffer_add(edited, body + pos, e->off - pos);
			evbuffer_add(edited, e->str, strlen(e->str));
			pos = e->off + e->skip;
		}
		evbuffer_add(edited, body + pos, blen - pos);
		blen = evbuffer_get_length(edited);
		body = (const char *)evbuffer_pullup(edited, -1);
	}
	rc = u->protocol == PROTO_VERTEX ? vertex_body(body, blen, px->cl->cbody) :
	    bedrock_body(body, blen, px->cl->cbody);
	if (edited != src)
		evbuffer_free(edited);
	return rc == 0 ? px->cl->cbody : src;
}

/* The client's headers a cloud upstream must not see: credentials
 * (sluice signs or has a token), anthropic-version (it is in the body),
 * x-amz-*. */
static int
px_cloud_drops(const struct http_header *h)
{
	return http_name_is(h->name, h->name_len, "authorization") ||
	    http_name_is(h->name, h->name_len, "x-api-key") ||
	    http_name_is(h->name, h->name_len, "api-key") ||
	    http_name_is(h->name, h->name_len, "anthropic-version") ||
	    (h->name_len >= 6 && strncasecmp(h->name, "x-amz-", 6) == 0);
}

/* Sign the bedrock request whose body is BODY: the x-amz-date,
 * x-amz-security-token and Authorization lines, through O. */
static void
px_bedrock_sign(struct proxy *px, struct http_out *o, struct evbuffer *body)
{
	struct upstream	*up = px->up;
	const char	*host = up->host_hdr + 6;	/* after "Host: " */
	size_t		 hlen = strlen(host) - 2;	/* before "\r\n" */
	char		 lines[BEDROCK_SIGN_MAX];
	long		 n;

	n = bedrock_sign(&up->sigkey, up->cfg, host, hlen, px->cl->cpath,
	    px->cl->cpath_len, evbuffer_pullup(body, -1),
	    evbuffer_get_length(body), time(NULL), lines);
	if (n > 0)
		http_out_put(o, lines, (size_t)n);
	else	/* unsigned: Bedrock answers 403, which the client sees */
		log_warnx("request %s: upstream %s: the request could not be "
		    "signed", px->c->r.reqid, up->cfg->name);
}

/* A vertex request's Authorization: the refresher's current token
 * (px_attempt checked that there is one). */
static void
px_vertex_token(struct proxy *px, struct http_out *o)
{
	char	 tok[GTOKEN_MAX];

	if (px->c->w->gtokens == NULL || gtokens_get(px->c->w->gtokens,
	    px->up->cfg->gcp_slot, wall_us(), tok) == 0)
		return;
	http_out_put(o, "Authorization: Bearer ", 22);
	http_out_put(o, tok, strlen(tok));
	http_out_put(o, "\r\n", 2);
	explicit_bzero(tok, sizeof(tok));
}

/* A vertex upstream without a valid token: 502, before anything is
 * sent (the refresher logs why).  1 if so. */
static int
px_vertex_no_token(struct proxy *px)
{
	const struct cfg_upstream *u = px->up->cfg;
	char	 tok[GTOKEN_MAX];
	int64_t	 exp;

	if (u->protocol != PROTO_VERTEX)
		return 0;
	exp = px->c->w->gtokens == NULL ? 0 : gtokens_get(px->c->w->gtokens,
	    u->gcp_slot, wall_us(), tok);
	explicit_bzero(tok, sizeof(tok));
	if (exp != 0)
		return 0;
	px_uncount(px);
	px_note_upstream(px);
	px->state = PX_NONE;
	log_warnx("upstream %s: no valid access token (request %s)", u->name,
	    px->c->r.reqid);
	client_error(px->c, 502, "api_error", "upstream_auth", "upstream %s: "
	    "no valid Vertex AI access token (its refresh is failing; see "
	    "the log)", u->name);
	return 1;
}

/*
 * Assemble the request in px->req, for up_conn_send: every evbuffer_add
 * to a bufferevent's output runs its callbacks, and they were a tenth of
 * a small request's instructions.
 */
static void
px_write_request(struct proxy *px)
{
	struct client		*c = px->c;
	struct upstream		*up = px->up;
	struct evbuffer		*out = px->req;
	const struct http_head	*rq = &c->r.hd;
	/* a translated request: the stage's body, which has no edits */
	struct evbuffer		*src = px->xl != NULL ? px->xl->body : c->body;
	const char		*body;
	size_t			 blen = evbuffer_get_length(src), len, pos;
	size_t			 start;
	struct http_out		 o;
	int			 i, nedits = px->xl != NULL ? 0 : px->nedits;
	int			 br = up->cfg->protocol == PROTO_BEDROCK;
	int			 cloud = br || up->cfg->protocol == PROTO_VERTEX;

	if (cloud) {
		src = px_cloud_prepare(px, src, nedits);
		blen = evbuffer_get_length(src);
		nedits = 0;
	}
	c->r.ev->anthropic_beta[0] = '\0';	/* this attempt's */
	http_out_init(&o, out);
	http_out_put(&o, rq->method, rq->method_len);
	http_out_put(&o, " ", 1);
	px_write_target(px, &o);
	http_out_put(&o, " HTTP/1.1\r\n", 11);
	http_out_put(&o, up->host_hdr, strlen(up->host_hdr));
	for (i = 0; i < rq->nh; i++) {
		const struct http_header *h = &rq->h[i];

		if (http_is_hop_by_hop(rq, h) ||
		    http_name_is(h->name, h->name_len, "host") ||
		    http_name_is(h->name, h->name_len, "content-length") ||
		    http_name_is(h->name, h->name_len, "expect") ||
		    http_name_is(h->name, h->name_len, "x-request-id") ||
		    (cloud && px_cloud_drops(h)))
			continue;
		/* the client's credentials are for sluice (or, with no key
		 * of our own for this upstream and no keys_file, for it) */
		if ((up->auth_hdr != NULL || c->w->cfg->keys != NULL) &&
		    (http_name_is(h->name, h->name_len, "authorization") ||
		    http_name_is(h->name, h->name_len, "x-api-key") ||
		    http_name_is(h->name, h->name_len, "api-key")))
			continue;
		if (!up_header_allowed(up, h) ||
		    (px->xl != NULL && xlate_drops_header(px->xl, h)))
			continue;
		if (http_name_is(h->name, h->name_len, "anthropic-beta")) {
			px_write_betas(px, &o, h);
			continue;
		}
		if (http_name_is(h->name, h->name_len, "accept-encoding")) {
			if (up->cfg->protocol != PROTO_BEDROCK)
				px_write_accept(&o, h);
			continue;
		}
		if (px->xl != NULL && (http_name_is(h->name, h->name_len,
		    "authorization") || http_name_is(h->name, h->name_len,
		    "x-api-key"))) {
			http_out_flush(&o);
			xlate_put_credential(px->xl, out, h);
			continue;
		}
		http_out_header(&o, h);
	}
	/*
	 * sluice reads bedrock's event-stream frames to make SSE of them: a
	 * compressed stream fails their CRCs.  Without the header any coding
	 * would be acceptable (RFC 9110, 12.5.3).
	 */
	if (up->cfg->protocol == PROTO_BEDROCK)
		http_out_put(&o, "Accept-Encoding: identity\r\n", 27);
	if (up->auth_hdr != NULL)
		http_out_put(&o, up->auth_hdr, strlen(up->auth_hdr));
	if (up->extra_hdr[0] != '\0')
		http_out_put(&o, up->extra_hdr, strlen(up->extra_hdr));
	if (br)
		px_bedrock_sign(px, &o, src);
	else if (cloud)
		px_vertex_token(px, &o);
	if (up->cfg->protocol == PROTO_ANTHROPIC &&
	    http_find(rq, "anthropic-version") == NULL)
		http_out_put(&o, "anthropic-version: 2023-06-01\r\n", 31);
	len = blen;
	for (i = 0; i < nedits; i++)
		len = len - px->edits[i].skip + strlen(px->edits[i].str);
	{
		char	 line[96], *q = line;

		q = reply_put(q, "x-request-id: ", 14);
		q = reply_put(q, c->r.reqid, 36);
		q = reply_put(q, "\r\nContent-Length: ", 18);
		q = reply_put_u64(q, len);
		q = reply_put(q, "\r\n\r\n", 4);
		http_out_put(&o, line, (size_t)(q - line));
	}
	http_out_flush(&o);
	/*
	 * The body is referenced, not copied: it stays in c->body until the
	 * request ends, and up_conn_done closes a connection whose output
	 * still holds any of it before then.
	 */
	start = evbuffer_get_length(out);
	body = (const char *)evbuffer_pullup(src, -1);
	for (i = 0, pos = 0; i < nedits; i++) {
		const struct body_edit *e = &px->edits[i];

		if (e->off > pos)
			evbuffer_add_reference(out, body + pos, e->off - pos,
			    NULL, NULL);
		evbuffer_add(out, e->str, strlen(e->str));
		pos = e->off + e->skip;
	}
	if (blen > pos)
		evbuffer_add_reference(out, body + pos, blen - pos, NULL, NULL);
	/* px_edits_ok made it so: what Content-Length says is what goes */
	assert(evbuffer_get_length(out) - start == len);
}

static void
px_attempt(struct proxy *px)
{
	px->attempts++;
	px->head_scanned = 0;
	px->t_first_byte_us = 0;
	if (!px->counted) {
		px->up->outstanding++;
		px->counted = 1;
	}
	if (px_vertex_no_token(px))
		return;
	px->uc = up_conn_get(px->up, &px->reused);
	if (px->uc == NULL) {
		px->state = PX_CONNECTING;
		px->reused = 0;
		px_fail_early(px, UPF_CONNECT, "could not start a connection");
		return;
	}
	bufferevent_setcb(px->uc->bev, px_read_cb, NULL, px_event_cb, px);
	if (px->reused) {
		px->state = PX_WAIT_HEAD;
		set_timeouts(px->uc->bev, px->up->cfg->read_timeout_ms);
	} else {
		px->state = PX_CONNECTING;
		set_timeouts(px->uc->bev, px->up->cfg->connect_timeout_ms);
	}
	px_write_request(px);
	px->t_sent_us = now_us();
	up_conn_send(px->uc, px->req, px->reused);
}

/* This attempt no longer counts as in flight on its upstream. */
static void
px_uncount(struct proxy *px)
{
	if (px->counted) {
		px->up->outstanding--;
		px->counted = 0;
	}
}

/* Let go of the connection; ANSWERED: its answer was read to the end. */
static void
px_release(struct proxy *px, int answered)
{
	px_uncount(px);
	if (px->uc != NULL) {
		up_conn_done(px->uc, answered && px->keepalive);
		px->uc = NULL;
	}
}

/* The client's connection failed: the abort hook. */
static void
px_abort(void *arg)
{
	struct proxy *px = arg;

	px_release(px, 0);
	px->state = PX_NONE;
}

/* Record which upstream answered and how many tries it took. */
static void
px_note_upstream(struct proxy *px)
{
	struct usage_event *ev = px->c->r.ev;

	ev_str(ev->upstream, sizeof(ev->upstream), px->up->cfg->name,
	    strlen(px->up->cfg->name));
	ev->attempts = (uint8_t)(px->attempts > 255 ? 255 : px->attempts);
}

/* Usage cannot be read from this answer: the pipeline will estimate. */
static void
px_tap_lost(struct proxy *px)
{
	px->tap_on = px->dec_on = 0;
	px->tap_lost = 1;
	/* numbers read before the fault are not trusted either */
	px->usage.seen = 0;
}

/* The text relayed so far, where a dying worker leaves it. */
static void
px_tap_mirror(struct proxy *px)
{
	if (px->c->ife != NULL)
		px->c->ife->text_bytes = px->usage.text_bytes;
}

/* Decoded bytes of the answer, for the usage tap only. */
static void
px_tap_decoded(void *arg, const char *p, size_t n)
{
	struct proxy *px = arg;

	usage_tap_feed_mem(&px->tap, &px->usage, &px->c->w->json, p, n);
	px_tap_mirror(px);
}

/* Feed N bytes at P to the tap, through dec if compressed; 0, or -1
 * if the answer can no longer be read for usage. */
static int
px_tap_mem(struct proxy *px, const char *p, size_t n)
{
	if (!px->dec_on) {
		usage_tap_feed_mem(&px->tap, &px->usage, &px->c->w->json, p, n);
		px_tap_mirror(px);
		return 0;
	}
	switch (dec_feed(&px->dec, p, n, px_tap_decoded, px)) {
	case DEC_ERROR:
	case DEC_LIMIT:
		log_info("request %s: %s answer not read for usage (%s)",
		    px->c->r.reqid, px->dec.state == DEC_LIMIT ? "large" :
		    "malformed", px->dec.state == DEC_LIMIT ?
		    "past the decoded limit" : "bad encoding");
		px_tap_lost(px);
		return -1;
	default:
		return 0;
	}
}

/*
 * FN on each contiguous span of the first LEN bytes of DATA, in order,
 * until it returns -1: the tap and the answer cache read the answer in
 * place, never copied out first.
 */
static void
px_spans(struct proxy *px, struct evbuffer *data, size_t len,
    int (*fn)(struct proxy *, const char *, size_t))
{
	struct evbuffer_iovec	 v[16];
	struct evbuffer_ptr	 pos;
	int			 i, nv;

	evbuffer_ptr_set(data, &pos, 0, EVBUFFER_PTR_SET);
	while (len > 0) {
		nv = evbuffer_peek(data, (ev_ssize_t)len, &pos, v, 16);
		if (nv <= 0)
			return;
		for (i = 0; i < nv && i < 16 && len > 0; i++) {
			size_t k = v[i].iov_len < len ? v[i].iov_len : len;

			if (fn(px, v[i].iov_base, k) == -1)
				return;
			len -= k;
			if (evbuffer_ptr_set(data, &pos, k,
			    EVBUFFER_PTR_ADD) == -1)
				return;
		}
	}
}

/* Feed the first LEN bytes of DATA to the tap, through dec if compressed. */
static void
px_tap(struct proxy *px, struct evbuffer *data, size_t len)
{
	if (px->tap_on)
		px_spans(px, data, len, px_tap_mem);
}

static int
px_fill_mem(struct proxy *px, const char *p, size_t n)
{
	/* past the bound the store knows it, and its commit drops it */
	return cache_put_append(px->fill, p, n);
}

/* The first LEN bytes of DATA into the answer cache's entry: the one
 * copy a miss costs.  Past the entry bound nothing more is copied. */
static void
px_fill(struct proxy *px, struct evbuffer *data, size_t len)
{
	if (px->fill != NULL)
		px_spans(px, data, len, px_fill_mem);
}

/*
 * The rest of a Content-Length answer, read straight into the client's
 * output (at most until it holds CLIENT_HIGH): the bufferevent reads
 * 4096 bytes a wake-up, so a 100 KB answer took 25 wake-ups, reads,
 * ioctls and writes.  Never past the answer, so the connection stays
 * clean for the next request.  The bytes read.
 */
static size_t
px_read_rest(struct proxy *px, struct evbuffer *out)
{
	size_t		 have = evbuffer_get_length(out), max, n;
	const char	*at;

	if (px->remaining <= 0 || have >= CLIENT_HIGH)
		return 0;
	max = CLIENT_HIGH - have;
	if ((int64_t)max > px->remaining)
		max = (size_t)px->remaining;
	if ((n = up_conn_read_direct(px->uc, out, max, &at)) == 0)
		return 0;
	if (px->tap_on)
		px_tap_mem(px, at, n);
	if (px->fill != NULL)
		(void)px_fill_mem(px, at, n);
	px->remaining -= (int64_t)n;
	return n;
}

/* The answer is complete and queued to the client. */
static void
px_finish(struct proxy *px)
{
	px_note_upstream(px);
	px->complete = 1;
	if (px->dec_on && px->dec.state != DEC_DONE)
		px_tap_lost(px);	/* cut short or trailing garbage */
	if (px->tap_on)
		usage_tap_end(&px->tap, &px->usage, &px->c->w->json);
	/* zstd without a checksum decodes some corruption to garbage */
	if (px->dec_on && !px->usage.seen)
		px->tap_lost = 1;
	px_release(px, 1);
	px->state = PX_NONE;
	if (px->xl != NULL && px_xl_end(px) == -1)
		return;
	client_answered(px->c);
}

/*
 * The exchange failed before anything reached the client: up_next says
 * whether another attempt may serve it; else answer 502 or 504.
 */
static void
px_fail_early(struct proxy *px, enum up_failure why, const char *msg)
{
	struct client		*c = px->c;
	int			 connecting = px->state == PX_CONNECTING;
	int			 timeout = why == UPF_NO_ANSWER ||
				    why == UPF_TIMEOUT ||
				    why == UPF_CONNECT_TIMEOUT;

	px_release(px, 0);
	/* "reused": a pooled connection that never answered may be stale */
	switch (up_next(px->up, why, px->reused && px->t_first_byte_us == 0,
	    px->attempts,
	    up_max_attempts(c->w, px->route))) {
	case UPD_AGAIN:
		/* a pooled connection the upstream had closed */
		px->attempts--;
		px_attempt(px);
		return;
	case UPD_NEXT:
		log_warnx("upstream %s: %s (request %s)", px->up->cfg->name,
		    msg, c->r.reqid);
		px_try_next(px);
		return;
	case UPD_FAIL:
		break;
	}
	log_warnx("upstream %s: %s (request %s)", px->up->cfg->name, msg,
	    c->r.reqid);
	px_note_upstream(px);
	px->state = PX_NONE;
	if (timeout)
		client_error(c, 504, "api_error", "upstream_timeout",
		    "upstream %s timed out", px->up->cfg->name);
	else
		client_error(c, 502, "api_error", connecting ?
		    "upstream_connect" : "upstream_error",
		    "upstream %s: %s", px->up->cfg->name, msg);
}

/* Failure after the answer started: the client sees a truncated body. */
static void
px_fail_late(struct proxy *px, const char *class)
{
	struct client *c = px->c;

	if (px->xl != NULL && !px->head_sent) {
		px_xl_fail(px, class);
		return;
	}
	px_note_upstream(px);
	snprintf(c->r.ev->error_class, sizeof(c->r.ev->error_class), "%s", class);
	log_warnx("upstream %s: %s mid-response (request %s)",
	    px->up->cfg->name, class, c->r.reqid);
	px_release(px, 0);
	px->state = PX_NONE;
	c->r.keepalive = 0;
	client_answered(c);
}

/* The answer is an event stream (text/event-stream, or bedrock's
 * turned into one). */
int
proxy_answer_sse(const struct proxy *px)
{
	const struct http_header *ct = http_find(&px->rh, "content-type");

	return px->es_on || (ct != NULL && ct->value_len >= 17 &&
	    strncasecmp(ct->value, "text/event-stream", 17) == 0);
}

/* A bedrock upstream streams its answer in AWS event-stream frames. */
static int
px_answer_eventstream(const struct proxy *px)
{
	const struct http_header *ct;

	if (px->up->cfg->protocol != PROTO_BEDROCK || px->rh.status < 200 ||
	    px->rh.status >= 300 || px->mode == BODY_NONE || px->cl == NULL ||
	    px->cl->sse == NULL)
		return 0;
	ct = http_find(&px->rh, "content-type");
	return ct != NULL && ct->value_len >= 34 &&
	    strncasecmp(ct->value, "application/vnd.amazon.eventstream",
	    34) == 0;
}

/* The usage tap, for an answer whose head is in: only a success
 * carries usage. */
static void
px_tap_begin(struct proxy *px)
{
	const struct http_head	*rh = &px->rh;
	const struct http_header *ce;
	enum dec_coding		 coding;

	px->tap_on = rh->status >= 200 && rh->status < 300;
	if (!px->tap_on)
		return;
	ce = http_find(rh, "content-encoding");
	coding = ce == NULL ? DEC_IDENTITY : dec_coding_of(ce->value,
	    ce->value_len);
	usage_tap_reset(&px->tap, proxy_answer_sse(px));
	if (coding != DEC_IDENTITY && px->mode != BODY_NONE) {
		px->dec_on = 1;
		if (coding == DEC_UNKNOWN || dec_start(&px->dec, coding,
		    TAP_DECODED_MAX) == -1)
			px_tap_lost(px);
	}
}

/* The end of the client's answer head, which began at BEFORE bytes of
 * its output and is being put through O: the head has gone, with the
 * upstream's status. */
static void
px_head_end(struct proxy *px, struct http_out *o, size_t before)
{
	struct client	*c = px->c;
	struct evbuffer	*out = o->to;

	if (c->r.ev->client_request_id[0] != '\0') {
		http_out_flush(o);
		reply_client_id(out, c->r.ev->client_request_id);
	}
	if (c->w->stopping)
		c->r.keepalive = 0;
	if (!c->r.keepalive)
		http_out_put(o, "Connection: close\r\n", 19);
	if (px->cache_hdr != NULL)
		http_out_put(o, px->cache_hdr, strlen(px->cache_hdr));
	/* only a 200 in no content-coding is kept (the pipeline drops it) */
	if (px->fill != NULL && (px->rh.status != 200 ||
	    http_find(&px->rh, "content-encoding") != NULL))
		px->fill = NULL;
	http_out_put(o, "\r\n", 2);
	http_out_flush(o);
	c->r.ev->bytes_out += (int64_t)(evbuffer_get_length(out) - before);
	c->r.ev->status = (uint16_t)px->rh.status;
	px->head_sent = 1;
	if (c->r.ev->stream)
		meter_stream_begin(c->w);
}

/* Send the client the answer head, built from the upstream's. */
static void
px_send_head(struct proxy *px)
{
	struct client		*c = px->c;
	struct evbuffer		*out = client_output(c);
	const struct http_head	*rh = &px->rh;
	size_t			 before = evbuffer_get_length(out);
	struct http_out		 o;
	int			 i;

	http_out_init(&o, out);
	{
		char	 line[16], *q = line;

		q = reply_put(q, "HTTP/1.1 ", 9);
		q = reply_put_u64(q, (uint64_t)rh->status);
		*q++ = ' ';
		http_out_put(&o, line, (size_t)(q - line));
		http_out_put(&o, rh->target, rh->target_len);
		http_out_put(&o, "\r\n", 2);
	}
	for (i = 0; i < rh->nh; i++) {
		const struct http_header *h = &rh->h[i];

		if (http_is_hop_by_hop(rh, h) ||
		    http_name_is(h->name, h->name_len, "content-length") ||
		    http_name_is(h->name, h->name_len, "x-request-id") ||
		    http_name_is(h->name, h->name_len, "x-client-request-id") ||
		    http_name_is(h->name, h->name_len, "openai-organization") ||
		    http_name_is(h->name, h->name_len, "openai-project") ||
		    (px->es_on && http_name_is(h->name, h->name_len,
		    "content-type")))
			continue;
		http_out_header(&o, h);
	}
	if (px->es_on)
		http_out_put(&o, "Content-Type: text/event-stream\r\n", 33);
	{
		char	 line[96], *q = line;

		q = reply_put(q, "x-request-id: ", 14);
		q = reply_put(q, c->r.reqid, 36);
		q = reply_put(q, "\r\n", 2);
		if (px->mode == BODY_LENGTH && !px->es_on) {
			q = reply_put(q, "Content-Length: ", 16);
			q = reply_put_u64(q, (uint64_t)px->remaining);
			q = reply_put(q, "\r\n", 2);
		} else if (px->mode != BODY_NONE) {
			if (c->r.hd.minor == 1)
				q = reply_put(q, "Transfer-Encoding: chunked\r\n",
				    28);
			else
				c->r.keepalive = 0; /* HTTP/1.0: ends at close */
		}
		http_out_put(&o, line, (size_t)(q - line));
	}
	px_head_end(px, &o, before);
	px_tap_begin(px);
}

/* Parse the answer head if it is all here. 1 done, 0 need more, -1 bad. */
static int
px_read_head(struct proxy *px, struct evbuffer *in)
{
	const struct http_head	*rq = &px->c->r.hd;
	size_t			 hlen;
	int			 rc;

	for (;;) {
		rc = http_head_take(in, &px->head_scanned, UPSTREAM_HEAD_MAX,
		    &px->head, &px->head_cap, &hlen);
		if (rc <= 0)
			return rc == 0 ? 0 : -1;
		if (http_parse_response(px->head, hlen, &px->rh) == -1)
			return -1;
		if (px->rh.status >= 200)
			break;
		/* 1xx: informational, the real head follows */
	}
	if (px->rh.status == 204 || px->rh.status == 304 ||
	    http_name_is(rq->method, rq->method_len, "HEAD")) {
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
px_relay(struct proxy *px, struct evbuffer *in)
{
	struct client	*c = px->c;
	struct evbuffer	*out = client_output(c);
	size_t		 avail = evbuffer_get_length(in), n, before;
	int		 chunk_out = c->r.hd.minor == 1;

	before = evbuffer_get_length(out);
	switch (px->mode) {
	case BODY_NONE:
		break;
	case BODY_LENGTH:
		n = avail < (size_t)px->remaining ? avail : (size_t)px->remaining;
		if (px->tap_on && n > 0)
			px_tap(px, in, n);
		if (n > 0)
			px_fill(px, in, n);
		if (n > 0)
			evbuffer_remove_buffer(in, out, n);
		px->remaining -= (int64_t)n;
		if (evbuffer_get_length(in) == 0)
			n += px_read_rest(px, out);
		if (px->remaining > 0) {
			c->r.ev->bytes_out += (int64_t)n;
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
			px_tap(px, px->decoded, n);
		if (n > 0)
			px_fill(px, px->decoded, n);
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
		c->r.ev->bytes_out += (int64_t)(evbuffer_get_length(out) - before);
		return 0;
	}
	c->r.ev->bytes_out += (int64_t)(evbuffer_get_length(out) - before);
	return 1;
}

static void
px_read_cb(struct bufferevent *bev, void *arg)
{
	struct proxy	*px = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	int		 rc;

	if (px->t_first_byte_us == 0)
		px->t_first_byte_us = now_us();
	if (px->state == PX_CONNECTING)
		px->state = PX_WAIT_HEAD;
	if (px->state == PX_WAIT_HEAD) {
		rc = px_read_head(px, in);
		if (rc == 0)
			return;
		if (rc == -1) {
			px->reused = 0;	/* a bad answer is not a stale conn */
			px_fail_early(px, UPF_BAD_ANSWER,
			    "malformed response head");
			return;
		}
		if (up_retryable_status(px->rh.status) &&
		    up_next(px->up, UPF_STATUS, 0, px->attempts,
		    up_max_attempts(px->c->w, px->route)) == UPD_NEXT) {
			log_warnx("upstream %s answered %d, trying the next "
			    "(request %s)", px->up->cfg->name, px->rh.status,
			    px->c->r.reqid);
			px->reused = 0;
			px_release(px, 0);
			px_try_next(px);
			return;
		}
		if (!up_retryable_status(px->rh.status))
			up_answered(px->up);
		px->state = PX_BODY;
		px->es_on = px_answer_eventstream(px);
		px->berr = (px->up->cfg->protocol == PROTO_BEDROCK ||
		    px->up->cfg->protocol == PROTO_VERTEX) &&
		    px->rh.status >= 300 && px->mode != BODY_NONE &&
		    px->cl != NULL && px->cl->sse != NULL;
		if (px->xl != NULL)
			px_xl_begin(px);
		else if (!px->berr)	/* its head goes with its new body */
			px_send_head(px);
	}
	rc = px->xl != NULL ? px_xl_relay(px, in) : px->es_on ?
	    px_es_relay(px, in, 0) : px->berr ? px_berr_relay(px, in, 0) :
	    px_relay(px, in);
	if (rc == 2) {
		px_es_fail(px);
		return;
	}
	if (rc < 0) {
		px_fail_late(px, rc == -1 ? "upstream_bad_body" :
		    "upstream_untranslatable");
		return;
	}
	if (rc == 1) {
		px_finish(px);
		return;
	}
	/* an event goes out as it came, not on the next loop turn */
	if (client_flush(px->c) > CLIENT_HIGH)
		bufferevent_disable(bev, EV_READ);
}

/* The client's output drained below its low watermark: the drained hook. */
static void
px_client_drained(void *arg)
{
	struct proxy *px = arg;

	if (px->uc != NULL && px->state == PX_BODY)
		bufferevent_enable(px->uc->bev, EV_READ);
}

static void
px_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct proxy	*px = arg;
	char		 why[256];
	unsigned long	 e;
	int		 dns, rc;

	if (what & BEV_EVENT_CONNECTED) {
		px->state = PX_WAIT_HEAD;
		set_timeouts(bev, px->up->cfg->read_timeout_ms);
		return;
	}
	if ((what & BEV_EVENT_EOF) && px->state == PX_BODY &&
	    px->mode == BODY_UNTIL_CLOSE) {
		struct evbuffer *in = bufferevent_get_input(bev);

		px->keepalive = 0;
		if (px->xl != NULL || px->es_on || px->berr) {
			/* px_xl_end or px_es_relay ends the client's body */
			rc = px->xl != NULL ? px_xl_relay(px, in) : px->es_on ?
			    px_es_relay(px, in, 1) : px_berr_relay(px, in, 1);
			if (rc == 2)
				px_es_fail(px);
			else if (rc < 0)
				px_fail_late(px, "upstream_untranslatable");
			else
				px_finish(px);
			return;
		}
		if (evbuffer_get_length(in) > 0)
			px_relay(px, in);
		if (px->c->r.hd.minor == 1)
			evbuffer_add(client_output(px->c), "0\r\n\r\n", 5);
		px_finish(px);
		return;
	}
	if (px->state == PX_BODY || px->head_sent) {
		px_fail_late(px, (what & BEV_EVENT_TIMEOUT) ?
		    "upstream_timeout" : "upstream_truncated");
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (px->state == PX_CONNECTING)
			px_fail_early(px, UPF_CONNECT_TIMEOUT,
			    "connect timed out");
		else
			px_fail_early(px, px->t_first_byte_us == 0 ?
			    UPF_NO_ANSWER : UPF_TIMEOUT,
			    "timed out waiting for a response");
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
	px_fail_early(px, px->state == PX_CONNECTING ? UPF_CONNECT :
	    UPF_CLOSED, why);
}

/*
 * A translated answer.  Its head is the stage's, not the upstream's: a
 * 2xx stream's goes out at once, chunked, and each piece of the stream
 * as soon as the stage has translated it; a JSON answer's or an error's
 * once the whole body is in and rewritten, with its Content-Length.  Of
 * the upstream's headers only Retry-After is kept: the others are the
 * other provider's, by name and by meaning.  Usage is read by the tap
 * from the upstream's own bytes, before the stage sees them.
 */
static void
px_xl_head(struct proxy *px, int64_t clen)
{
	struct client			*c = px->c;
	struct evbuffer			*out = client_output(c);
	const struct http_header	*ra = http_find(&px->rh, "retry-after");
	size_t				 before = evbuffer_get_length(out);
	struct http_out			 o;

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "x-request-id: %s\r\n", px->rh.status, http_reason(px->rh.status),
	    clen < 0 ? "text/event-stream" : "application/json", c->r.reqid);
	if (clen >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n",
		    (long long)clen);
	else if (c->r.hd.minor == 1)
		evbuffer_add(out, "Cache-Control: no-cache\r\n"
		    "Transfer-Encoding: chunked\r\n", 53);
	else
		c->r.keepalive = 0;	/* HTTP/1.0: ends at close */
	if (ra != NULL)
		http_put_header(out, ra);
	http_out_init(&o, out);
	px_head_end(px, &o, before);
}

static void
px_xl_begin(struct proxy *px)
{
	const struct http_header *ce = http_find(&px->rh, "content-encoding");

	xlate_answer_begin(px->xl, px->rh.status, proxy_answer_sse(px),
	    ce == NULL || dec_coding_of(ce->value, ce->value_len) ==
	    DEC_IDENTITY);
	px_tap_begin(px);
	if (xlate_answer_streams(px->xl))
		px_xl_head(px, -1);
}

/* What the stage wrote for the client, as one chunk of a stream. */
static void
px_xl_out(struct proxy *px)
{
	struct client	*c = px->c;
	struct evbuffer	*out = client_output(c);
	size_t		 n = evbuffer_get_length(px->xl->out);
	size_t		 before = evbuffer_get_length(out);
	char		 line[24];

	if (n == 0)
		return;
	px_fill(px, px->xl->out, n);
	if (c->r.hd.minor == 1)
		evbuffer_add(out, line, put_chunk_size(line, n));
	evbuffer_add_buffer(out, px->xl->out);
	if (c->r.hd.minor == 1)
		evbuffer_add(out, "\r\n", 2);
	c->r.ev->bytes_out += (int64_t)(evbuffer_get_length(out) - before);
}

/*
 * The upstream's body so far, de-framed into px->decoded: 1 it is all
 * in, 0 more to come, -1 bad chunking.
 */
static int
px_deframe(struct proxy *px, struct evbuffer *in)
{
	size_t	 avail = evbuffer_get_length(in), n;
	int	 done = 0;

	switch (px->mode) {
	case BODY_NONE:
		done = 1;
		break;
	case BODY_LENGTH:
		n = avail < (size_t)px->remaining ? avail : (size_t)px->remaining;
		evbuffer_remove_buffer(in, px->decoded, n);
		px->remaining -= (int64_t)n;
		done = px->remaining == 0;
		break;
	case BODY_CHUNKED:
		if (chunked_decode(&px->ck, in, px->decoded) < 0)
			return -1;
		done = px->ck.state == CHUNK_DONE;
		break;
	case BODY_UNTIL_CLOSE:
		evbuffer_add_buffer(px->decoded, in);
		break;
	}
	if (done && evbuffer_get_length(in) > 0)
		px->keepalive = 0;	/* more than it announced */
	return done;
}

/*
 * A bedrock event stream's de-framed bytes (px->decoded) turned into
 * Anthropic SSE in px->cl->sse; DONE: the answer ended.  0, or -1: the
 * stream broke and its error event is the last thing in px->cl->sse.
 */
static int
px_es_convert(struct proxy *px, int done)
{
	struct evbuffer_iovec	 v[16];
	int			 i, nv, rc = 0;

	while (rc == 0 && evbuffer_get_length(px->decoded) > 0) {
		nv = evbuffer_peek(px->decoded, -1, NULL, v, 16);
		for (i = 0; i < nv && i < 16 && rc == 0; i++)
			rc = bedrock_stream_feed(&px->cl->bs, v[i].iov_base,
			    v[i].iov_len, px->cl->sse);
		for (i = 0; i < nv && i < 16; i++)
			evbuffer_drain(px->decoded, v[i].iov_len);
	}
	evbuffer_drain(px->decoded, evbuffer_get_length(px->decoded));
	if (rc == 0 && done)
		rc = bedrock_stream_end(&px->cl->bs, px->cl->sse);
	return rc;
}

/*
 * The upstream's body, de-framed into px->decoded (for bedrock, turned
 * into SSE in px->cl->sse), read by the tap, then handed to the stage.  1
 * complete, 0 more to come, -1 bad body, -2 an answer the stage cannot
 * translate, 2 a broken bedrock stream (its error event handed on).
 */
static int
px_xl_relay(struct proxy *px, struct evbuffer *in)
{
	struct evbuffer	*body = px->es_on ? px->cl->sse : px->decoded;
	size_t		 n;
	int		 done, broke = 0;

	if ((done = px_deframe(px, in)) < 0)
		return -1;
	if (px->es_on)
		broke = px_es_convert(px, done) == -1;
	if (px->berr) {
		/* reshaped once whole, then the stage reads Anthropic's error */
		if (!done && px->mode != BODY_UNTIL_CLOSE)
			return 0;
		px_berr_reshape(px);
	}
	n = evbuffer_get_length(body);
	if (px->tap_on && n > 0)
		px_tap(px, body, n);
	if (n > 0 && xlate_answer_feed(px->xl, &px->c->w->json, body,
	    px->xl->out) == -1)
		return -2;
	if (xlate_answer_streams(px->xl))
		px_xl_out(px);
	return broke ? 2 : done;
}

/*
 * A bedrock event stream relayed as Anthropic SSE, one client chunk per
 * upstream read.  EOF: the connection closed (an answer without a
 * length ends so).  1 complete, 0 more to come, -1 bad body, 2 the
 * stream broke: its error event went out, the answer is over.
 */
static int
px_es_relay(struct proxy *px, struct evbuffer *in, int eof)
{
	struct client	*c = px->c;
	struct evbuffer	*out = client_output(c);
	size_t		 n, before = evbuffer_get_length(out);
	int		 done, broke;
	int		 chunk_out = c->r.hd.minor == 1;

	if ((done = px_deframe(px, in)) < 0)
		return -1;
	done |= eof;
	broke = px_es_convert(px, done) == -1;
	if ((n = evbuffer_get_length(px->cl->sse)) > 0) {
		char	 line[24];

		if (px->tap_on)
			px_tap(px, px->cl->sse, n);
		if (chunk_out)
			evbuffer_add(out, line, put_chunk_size(line, n));
		evbuffer_add_buffer(out, px->cl->sse);
		if (chunk_out)
			evbuffer_add(out, "\r\n", 2);
	}
	if ((done || broke) && chunk_out)
		evbuffer_add(out, "0\r\n\r\n", 5);
	c->r.ev->bytes_out += (int64_t)(evbuffer_get_length(out) - before);
	return broke ? 2 : done;
}

/* A whole bedrock error in px->decoded, reshaped there as Anthropic's. */
static void
px_berr_reshape(struct proxy *px)
{
	size_t	 n = evbuffer_get_length(px->decoded);

	bedrock_error(px->rh.status, (const char *)evbuffer_pullup(
	    px->decoded, -1), n, px->cl->sse);
	evbuffer_drain(px->decoded, n);
	evbuffer_add_buffer(px->decoded, px->cl->sse);
}

/*
 * A bedrock error answer, passed through: read whole, reshaped, then
 * sent with its head and the new length.  EOF: the connection closed.
 * 1 complete, 0 more to come, -1 bad body.
 */
static int
px_berr_relay(struct proxy *px, struct evbuffer *in, int eof)
{
	struct client	*c = px->c;
	size_t		 n;
	int		 done;

	if ((done = px_deframe(px, in)) < 0)
		return -1;
	if (!done && !eof)
		return 0;
	px_berr_reshape(px);
	n = evbuffer_get_length(px->decoded);
	px->mode = BODY_LENGTH;
	px->remaining = (int64_t)n;
	px_send_head(px);
	evbuffer_add_buffer(client_output(c), px->decoded);
	c->r.ev->bytes_out += (int64_t)n;
	return 1;
}

/*
 * A bedrock stream broke (a bad CRC, an exception frame, a frame cut
 * off): the client has its error event and the end of the answer; the
 * row says upstream_protocol, and the usage read so far is not the
 * whole bill (px->complete stays 0).
 */
static void
px_es_fail(struct proxy *px)
{
	struct client *c = px->c;

	px_note_upstream(px);
	snprintf(c->r.ev->error_class, sizeof(c->r.ev->error_class),
	    "upstream_protocol");
	log_warnx("upstream %s: %s, stream ended (request %s)",
	    px->up->cfg->name, px->cl->bs.why, c->r.reqid);
	if (px->tap_on)
		usage_tap_end(&px->tap, &px->usage, &c->w->json);
	px_release(px, 0);
	px->state = PX_NONE;
	if (px->xl != NULL && px_xl_end(px) == -1)
		return;
	client_answered(c);
}

/* The translated answer ended; -1: it is answered 502 instead. */
static int
px_xl_end(struct proxy *px)
{
	struct client	*c = px->c;
	struct evbuffer	*out = client_output(c);
	size_t		 n;
	int		 rc;

	rc = xlate_answer_end(px->xl, &c->w->json, c->r.reqid, px->xl->out);
	if (xlate_answer_streams(px->xl)) {
		px_xl_out(px);
		if (c->r.hd.minor == 1) {
			evbuffer_add(out, "0\r\n\r\n", 5);
			c->r.ev->bytes_out += 5;
		}
		return 0;
	}
	if (rc == -1) {
		px_xl_fail(px, "upstream_untranslatable");
		return -1;
	}
	n = evbuffer_get_length(px->xl->out);
	px_xl_head(px, (int64_t)n);
	px_fill(px, px->xl->out, n);
	evbuffer_add_buffer(out, px->xl->out);
	c->r.ev->bytes_out += (int64_t)n;
	return 0;
}

/* A translated answer failed before its head went out: a 502 (504). */
static void
px_xl_fail(struct proxy *px, const char *class)
{
	struct client *c = px->c;

	px_note_upstream(px);
	log_warnx("upstream %s: %s (request %s)", px->up->cfg->name, class,
	    c->r.reqid);
	px_release(px, 0);
	px->state = PX_NONE;
	if (strcmp(class, "upstream_timeout") == 0)
		client_error(c, 504, "api_error", class, "upstream %s timed "
		    "out", px->up->cfg->name);
	else
		client_error(c, 502, "api_error", class, "upstream %s: its "
		    "answer could not be relayed in this API's format (%s)",
		    px->up->cfg->name, class);
}
