/*
 * upstream.c - each worker's upstreams: keep-alive pools, choice, health.
 *
 * An idle connection waits in its upstream's list with a read callback
 * armed and a read timeout of idle_timeout: if the upstream closes it,
 * sends anything, or the timeout passes, it is freed at once, so a closed
 * connection is never handed out.  (The race where the close arrives after
 * the request is written is handled by the proxy's retry.)  The list is
 * LIFO: the warmest connection is reused first and the cold ones age out.
 *
 * New connections resolve names with evdns (never getaddrinfo on the
 * request path) and speak TLS through bufferevent_openssl with peer and
 * host name verification and SNI.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/clock.h"
#include "common/log.h"
#include "shm/counters.h"
#include "worker/upstream.h"

/* How long a looked-up upstream address is used before looking again. */
#define RESOLVE_TTL_US	(30LL * 1000000)
#define UPSTREAM_IO_MAX	(256 * 1024)	/* bytes per read or write */

static void	 idle_read_cb(struct bufferevent *, void *);
static void	 idle_event_cb(struct bufferevent *, short, void *);

static int
is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static SSL_CTX *
tls_ctx_new(const struct cfg_upstream *u)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (u->ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, u->ca_file, NULL) != 1) {
			log_warnx("upstream %s: cannot load ca_file %s",
			    u->name, u->ca_file);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	return ctx;
}

int
up_init(struct worker *w)
{
	const struct config	*cfg = w->cfg;
	int			 i;

	w->ups = calloc((size_t)cfg->nupstreams, sizeof(*w->ups));
	if (w->ups == NULL)
		return -1;
	for (i = 0; i < cfg->nupstreams; i++) {
		struct upstream			*up = &w->ups[i];
		const struct cfg_upstream	*u = &cfg->upstreams[i];
		int				 dflt;

		up->cfg = u;
		up->w = w;
		up->literal = is_ip_literal(u->host);
		up->cnt_idx = w->cnt == NULL ? -1 :
		    cnt_upstream_find(w->cnt, u->name);
		TAILQ_INIT(&up->idle);
		dflt = strcmp(u->port, u->tls ? "443" : "80") == 0;
		snprintf(up->host_hdr, sizeof(up->host_hdr), "Host: %s%s%s%s%s"
		    "\r\n", strchr(u->host, ':') ? "[" : "", u->host,
		    strchr(u->host, ':') ? "]" : "", dflt ? "" : ":",
		    dflt ? "" : u->port);
		if (u->tls && (up->ssl_ctx = tls_ctx_new(u)) == NULL)
			return -1;
		snprintf(up->extra_hdr, sizeof(up->extra_hdr), "%s%s%s%s%s%s",
		    u->organization[0] ? "OpenAI-Organization: " : "",
		    u->organization, u->organization[0] ? "\r\n" : "",
		    u->project[0] ? "OpenAI-Project: " : "", u->project,
		    u->project[0] ? "\r\n" : "");
		if (u->api_key != NULL) {
			size_t	 n = strlen(u->api_key) + 64;
			char	*h = malloc(n);

			if (h == NULL)
				return -1;
			switch (u->protocol) {
			case PROTO_ANTHROPIC:
				snprintf(h, n, "x-api-key: %s\r\n", u->api_key);
				break;
			case PROTO_AZURE:
				snprintf(h, n, "api-key: %s\r\n", u->api_key);
				break;
			default:
				snprintf(h, n, "Authorization: Bearer %s\r\n",
				    u->api_key);
				break;
			}
			up->auth_hdr = h;
		}
	}
	return 0;
}

static void
upconn_close(struct upconn *uc)
{
	struct evbuffer *out = bufferevent_get_output(uc->bev);

	if (!uc->busy) {
		TAILQ_REMOVE(&uc->up->idle, uc, entry);
		uc->up->nidle--;
	}
	/* drop now what may still point into a request body: libevent
	 * frees a bufferevent's buffers later, from the loop */
	evbuffer_drain(out, evbuffer_get_length(out));
	bufferevent_free(uc->bev);
	free(uc);
}

void
up_free(struct worker *w)
{
	struct upconn	*uc;
	int		 i;

	for (i = 0; w->ups != NULL && i < w->cfg->nupstreams; i++) {
		while ((uc = TAILQ_FIRST(&w->ups[i].idle)) != NULL)
			upconn_close(uc);
		if (w->ups[i].ssl_ctx != NULL)
			SSL_CTX_free(w->ups[i].ssl_ctx);
		if (w->ups[i].auth_hdr != NULL) {
			explicit_bzero(w->ups[i].auth_hdr,
			    strlen(w->ups[i].auth_hdr));
			free(w->ups[i].auth_hdr);
		}
	}
	free(w->ups);
	w->ups = NULL;
}

static void
resolved_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct upstream *up = arg;

	up->resolving = 0;
	if (err != 0 || res == NULL) {
		log_warnx("upstream %s: resolving %s: %s", up->cfg->name,
		    up->cfg->host, evutil_gai_strerror(err));
		up->addrlen = 0;
		return;
	}
	if (res->ai_addrlen <= sizeof(up->addr)) {
		memcpy(&up->addr, res->ai_addr, res->ai_addrlen);
		up->addrlen = (socklen_t)res->ai_addrlen;
		up->addr_expires_us = now_us() + RESOLVE_TTL_US;
	}
	evutil_freeaddrinfo(res);
}

/* Look the host name up again in the background. */
static void
resolve_refresh(struct upstream *up)
{
	struct evutil_addrinfo hints;

	if (up->resolving)
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	up->resolving = 1;
	/* the callback may run at once (a cached or /etc/hosts answer) */
	evdns_getaddrinfo(up->w->dns, up->cfg->host, up->cfg->port, &hints,
	    resolved_cb, up);
}

static struct upconn *
upconn_new(struct upstream *up)
{
	struct worker	*w = up->w;
	struct upconn	*uc;
	SSL		*ssl = NULL;
	const char	*host = up->cfg->host;
	int		 port = atoi(up->cfg->port);

	if ((uc = calloc(1, sizeof(*uc))) == NULL)
		return NULL;
	uc->up = up;
	if (up->ssl_ctx != NULL) {
		if ((ssl = SSL_new(up->ssl_ctx)) == NULL)
			goto fail;
		if (is_ip_literal(host)) {
			X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

			if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)
				goto fail;
		} else if (SSL_set_tlsext_host_name(ssl, host) != 1 ||
		    SSL_set1_host(ssl, host) != 1)
			goto fail;
		uc->bev = bufferevent_openssl_socket_new(w->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (uc->bev == NULL)
			goto fail;
		ssl = NULL;	/* owned by the bufferevent now */
		bufferevent_openssl_set_allow_dirty_shutdown(uc->bev, 1);
	} else {
		uc->bev = bufferevent_socket_new(w->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
		if (uc->bev == NULL)
			goto fail;
	}
	/*
	 * An IP literal connects at once; a name uses the address cached
	 * from the last lookup while it is fresh, else resolves with evdns
	 * (asynchronously: a worker never blocks on DNS).
	 */
	if (!up->literal && up->addrlen > 0 && up->addr_expires_us > now_us()) {
		if (bufferevent_socket_connect(uc->bev,
		    (struct sockaddr *)&up->addr, (int)up->addrlen) == -1)
			goto fail;
	} else {
		if (!up->literal)
			resolve_refresh(up);
		if (bufferevent_socket_connect_hostname(uc->bev, w->dns,
		    AF_UNSPEC, host, port) == -1)
			goto fail;
	}
	/* one syscall for a whole request body, as nginx's writev does */
	bufferevent_set_max_single_write(uc->bev, UPSTREAM_IO_MAX);
	bufferevent_set_max_single_read(uc->bev, UPSTREAM_IO_MAX);
	if (bufferevent_getfd(uc->bev) != -1) {
		int one = 1;

		setsockopt(bufferevent_getfd(uc->bev), IPPROTO_TCP,
		    TCP_NODELAY, &one, sizeof(one));
	}
	if (up->cnt_idx >= 0)
		cnt_add(&up->w->cw->up[up->cnt_idx].opened, 1);
	return uc;
fail:
	if (ssl != NULL)
		SSL_free(ssl);
	if (uc->bev != NULL)
		bufferevent_free(uc->bev);
	free(uc);
	return NULL;
}

struct upconn *
up_conn_get(struct upstream *up, int *reused)
{
	struct upconn *uc;

	if ((uc = TAILQ_FIRST(&up->idle)) != NULL) {
		TAILQ_REMOVE(&up->idle, uc, entry);
		up->nidle--;
		if (up->cnt_idx >= 0)
			cnt_add(&up->w->cw->up[up->cnt_idx].reused, 1);
		uc->busy = 1;
		*reused = 1;
		return uc;
	}
	*reused = 0;
	if ((uc = upconn_new(up)) == NULL)
		return NULL;
	/* the caller sets its callbacks before the loop runs again */
	uc->busy = 1;
	return uc;
}

void
up_conn_send(struct upconn *uc, struct evbuffer *req, int reused)
{
	int n;

	/*
	 * Written from REQ, not from the output: a socket bufferevent keeps
	 * its output frozen for anyone but itself.  An idle connection's
	 * output is empty (up_conn_done), so nothing can be overtaken.
	 */
	if (reused && uc->up->ssl_ctx == NULL) {
		do {
			n = evbuffer_write_atmost(req,
			    bufferevent_getfd(uc->bev), UPSTREAM_IO_MAX);
		} while (n == -1 && errno == EINTR);
	}
	/* what is left, or an error, the bufferevent writes or reports;
	 * a pooled connection is read already (enabling again re-adds) */
	if (evbuffer_get_length(req) == 0) {
		if (!(bufferevent_get_enabled(uc->bev) & EV_READ))
			bufferevent_enable(uc->bev, EV_READ);
		return;
	}
	evbuffer_add_buffer(bufferevent_get_output(uc->bev), req);
	bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
}

size_t
up_conn_read_direct(struct upconn *uc, struct evbuffer *dst, size_t max,
    const char **at)
{
	struct evbuffer_iovec	 v;
	ssize_t			 n;

	if (uc->up->ssl_ctx != NULL || max == 0 ||
	    evbuffer_reserve_space(dst, (ev_ssize_t)max, &v, 1) != 1)
		return 0;
	do {
		n = read(bufferevent_getfd(uc->bev), v.iov_base, max);
	} while (n == -1 && errno == EINTR);
	/* an end or an error stays for the bufferevent's read to report:
	 * a socket at its end is readable again, and one reset reads 0 */
	if (n <= 0)
		return 0;
	v.iov_len = (size_t)n;
	evbuffer_commit_space(dst, &v, 1);
	*at = v.iov_base;
	return (size_t)n;
}

void
up_conn_done(struct upconn *uc, int answer_complete)
{
	struct upstream	*up = uc->up;
	struct timeval	 tv;

	/*
	 * nginx's keepalive module keeps a connection only if its request
	 * was sent in full: an upstream that answered early (a 413 from a
	 * provider's edge) would read the rest of our body as the next
	 * request.  Bytes left unread would be taken for the next answer.
	 */
	if (!answer_complete || up->nidle >= up->cfg->max_idle ||
	    up->w->stopping ||
	    evbuffer_get_length(bufferevent_get_output(uc->bev)) > 0 ||
	    evbuffer_get_length(bufferevent_get_input(uc->bev)) > 0) {
		upconn_close(uc);
		return;
	}
	uc->busy = 0;
	tv.tv_sec = up->cfg->idle_timeout_ms / 1000;
	tv.tv_usec = (up->cfg->idle_timeout_ms % 1000) * 1000;
	bufferevent_setcb(uc->bev, idle_read_cb, NULL, idle_event_cb, uc);
	/* the next request is queued with writing off: up_conn_send writes
	 * it, and arms the write event only if it must */
	bufferevent_disable(uc->bev, EV_WRITE);
	/* this re-adds the read event if it is on, with the idle timeout */
	bufferevent_set_timeouts(uc->bev, &tv, NULL);
	if (!(bufferevent_get_enabled(uc->bev) & EV_READ))
		bufferevent_enable(uc->bev, EV_READ);
	TAILQ_INSERT_HEAD(&up->idle, uc, entry);
	up->nidle++;
}

/* An idle connection must stay silent; anything else ends it. */
static void
idle_read_cb(struct bufferevent *bev, void *arg)
{
	upconn_close(arg);
}

static void
idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
	upconn_close(arg);
}

/* -- header policy -------------------------------------------------------- */

static int
name_listed(const char (*list)[CFG_HDR_NAME_MAX], int n, const char *name,
    size_t len)
{
	int i;

	for (i = 0; i < n; i++)
		if (http_name_is(name, len, list[i]))
			return 1;
	return 0;
}

int
up_header_allowed(const struct upstream *up, const struct http_header *h)
{
	const struct cfg_upstream *u = up->cfg;

	/* said to sluice, not to the upstream */
	if (h->name_len > 9 && (h->name[0] | 0x20) == 'x' &&
	    strncasecmp(h->name, "x-sluice-", 9) == 0)
		return 0;
	if (u->ndrop_headers > 0 && name_listed(u->drop_headers,
	    u->ndrop_headers, h->name, h->name_len))
		return 0;
	if ((http_name_is(h->name, h->name_len, "openai-organization") ||
	    http_name_is(h->name, h->name_len, "openai-project")) &&
	    !name_listed(u->pass_headers, u->npass_headers, h->name,
	    h->name_len))
		return 0;
	return 1;
}

size_t
up_filter_betas(const struct upstream *up, const char *v, size_t n, char *out,
    size_t cap)
{
	const struct cfg_upstream *u = up->cfg;
	size_t	 i = 0, s, e, len = 0;

	out[0] = '\0';
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e == s || (u->nbetas > 0 &&
		    !name_listed(u->betas, u->nbetas, v + s, e - s)))
			continue;
		if (len + (len > 0) + (e - s) + 1 > cap)
			break;
		if (len > 0)
			out[len++] = ',';
		memcpy(out + len, v + s, e - s);
		len += e - s;
		out[len] = '\0';
	}
	return len;
}

/* -- choice and health ---------------------------------------------------- */

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

void
up_answered(struct upstream *up)
{
	if (up->down_until_us != 0) {
		log_info("upstream %s answers again", up->cfg->name);
		up->down_until_us = 0;
	}
	up->fails = 0;
}

int
up_max_attempts(const struct worker *w, const struct cfg_route *r)
{
	return w->cfg->max_attempts > 0 ? w->cfg->max_attempts :
	    r->nupstreams;
}

int
up_retryable_status(int status)
{
	return status == 429 || status == 500 || status == 502 ||
	    status == 503 || status == 504 || status == 529;
}

/*
 * Failover: the first not yet tried, in order.  Balance: of those not yet
 * tried, the one with the fewest requests in flight in this worker, ties
 * broken round-robin.  Upstreams marked down are skipped unless all are
 * down (then they are tried, as nginx does).  After every upstream was
 * tried, a new round starts.
 */
struct upstream *
up_pick(struct worker *w, const struct cfg_route *r, uint32_t *tried,
    int *idx)
{
	int64_t		 now = now_us();
	uint32_t	 all, bit;
	unsigned	 rr = 0;
	int		 n = r->nupstreams, i, k, pass, best = -1;
	int		 ri = (int)(r - w->cfg->routes);

	all = n >= 32 ? ~0u : (1u << n) - 1;
	if ((*tried & all) == all)
		*tried = 0;
	if (w->route_rr != NULL)
		rr = w->route_rr[ri];
	for (pass = 0; pass < 2 && best == -1; pass++) {
		for (k = 0; k < n; k++) {
			struct upstream *up;

			i = r->balance ? (int)((rr + (unsigned)k) % (unsigned)n) :
			    k;
			bit = 1u << (i & 31);
			up = &w->ups[r->upstream[i]];
			if ((*tried & bit) || (pass == 0 &&
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
	*idx = best;
	*tried |= 1u << (best & 31);
	return &w->ups[r->upstream[best]];
}

/*
 * A pooled connection closed before any answer is one the upstream had
 * closed while idle: try again on another, without counting a failure.
 * Otherwise the failure counts against the upstream, and the request
 * moves on only if it cannot have been run: connecting failed, or no
 * byte of an answer came in time.  A connection closed after the
 * request was sent is not retried; a refusing status is.
 */
enum up_decision
up_next(struct upstream *up, enum up_failure why, int reused, int attempts,
    int max)
{
	if (reused && why == UPF_CLOSED && attempts < up->cfg->max_idle + 2)
		return UPD_AGAIN;
	up_failed(up);
	if (attempts >= max)
		return UPD_FAIL;
	switch (why) {
	case UPF_CONNECT:
	case UPF_CONNECT_TIMEOUT:
	case UPF_NO_ANSWER:
	case UPF_STATUS:
		return UPD_NEXT;
	default:
		return UPD_FAIL;
	}
}
