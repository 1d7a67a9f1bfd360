/*
 * admin.c - the admin endpoints on admin_listen: GET /metrics (Prometheus
 * text format 0.0.4), GET /healthz and GET /status (JSON, for sluicectl).
 *
 * Every worker accepts on the admin socket with its own listener, so the
 * endpoints answer as long as one worker does.  Whichever worker answers
 * reads the whole counters region (shm/counters.h) and the ring lanes and
 * sums them: the numbers are the daemon's, not that worker's.  Nothing
 * here touches the request path: an admin connection is not a client, is
 * not metered, and is closed after one answer (Connection: close).
 *
 * Healthy (/healthz 200) means: a worker of the current generation is
 * alive, and the collector's heartbeat is younger than
 * CNT_HEARTBEAT_MAX_MS and it can make events durable: connected to
 * PostgreSQL, or spooling (the spool directory takes batches).  Otherwise
 * 503 with the first reason found, on one JSON line.
 */
#include <sys/socket.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/keys.h"
#include "common/log.h"
#include "shm/counters.h"
#include "shm/keystate.h"
#include "shm/ring.h"
#include "shm/shm.h"
#include "shm/spread.h"
#include "shm/tickets.h"
#include "worker/admin.h"
#include "worker/admin_cache.h"
#include "worker/endpoint.h"
#include "worker/http.h"
#include "worker/meter.h"
#include "worker/reply.h"
#include "worker/tls.h"

#define ADMIN_HEAD_MAX		8192
#define ADMIN_TIMEOUT_S		10	/* to write the answer */
#define ADMIN_HEAD_S		3	/* the whole head, from accept */
#define ADMIN_CONNS_MAX		64	/* per worker */

/*
 * One admin connection: read one request, answer, close.  The head must
 * be complete ADMIN_HEAD_S after accept, however it trickles in; and when
 * all ADMIN_CONNS_MAX are taken, a new connection evicts the oldest one
 * still waiting for its head, so slow clients cannot lock the monitoring
 * out (the newest connection is the likeliest to be a prober's).
 */
struct admin_conn {
	TAILQ_ENTRY(admin_conn)	 entry;
	struct worker		*w;
	struct bufferevent	*bev;
	struct event		*deadline;
	int			 answered;
};
TAILQ_HEAD(admin_conn_list, admin_conn);

/* Everything one answer shows, read once from shared memory. */
struct admin_view {
	int64_t			 now_wall_us;
	int64_t			 now_mono_ms;
	uint32_t		 nslots;
	uint32_t		 nups;
	uint32_t		 gen;
	struct cnt_worker_snap	 total;
	struct cnt_worker_snap	*slot;		/* [nslots] */
	int32_t			 pid[CNT_SLOTS_MAX];
	uint32_t		 sgen[CNT_SLOTS_MAX];
	uint64_t		 pushes[CNT_SLOTS_MAX];
	uint64_t		 drops[CNT_SLOTS_MAX];
	uint64_t		 depth[CNT_SLOTS_MAX];
	int64_t			 lag_us[CNT_SLOTS_MAX];	/* oldest waiting */
	uint64_t		 listening[CNT_SLOTS_MAX];	/* shm/spread */
	uint64_t		 sconns[CNT_SLOTS_MAX];
	uint64_t		 t_pushes, t_drops, t_depth;
	int64_t			 t_lag_us;
	int			 alive;		/* current-generation workers */
	int			 healthy;
	char			 reason[160];
	char			 reload_msg[CNT_TEXT_WORDS * 8 + 1];
	char			 coll_err[CNT_TEXT_WORDS * 8 + 1];
};

static struct shm_segment	*admin_shm;
static struct admin_conn_list	 admin_conns = TAILQ_HEAD_INITIALIZER(admin_conns);

static const char *const class_names[CNT_CLASSES] = {
	"other", "1xx", "2xx", "3xx", "4xx", "5xx",
};

static const char *const hist_names[CNT_H_MAX] = {
	"sluice_request_duration_seconds",
	"sluice_upstream_ttfb_seconds",
	"sluice_overhead_seconds",
};

static const char *const hist_help[CNT_H_MAX] = {
	"Time from the first request byte to the last response byte.",
	"Upstream time to first byte, from the request sent.",
	"Time spent in sluice itself (total minus upstream time).",
};

static const char *const hist_json[CNT_H_MAX] = {
	"latency", "ttfb", "overhead",
};

static void	 admin_accept_cb(struct evconnlistener *, evutil_socket_t,
		    struct sockaddr *, int, void *);
static void	 admin_read_cb(struct bufferevent *, void *);
static void	 admin_write_cb(struct bufferevent *, void *);
static void	 admin_event_cb(struct bufferevent *, short, void *);
static void	 admin_conn_free(struct admin_conn *);
static void	 admin_deadline_cb(evutil_socket_t, short, void *);

int
admin_init(struct worker *w, struct shm_segment *shm, int fd)
{
	admin_shm = shm;
	if (w->cnt == NULL || shm == NULL)
		return -1;
	w->admin = evconnlistener_new(w->base, admin_accept_cb, w,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	return w->admin == NULL ? -1 : 0;
}

void
admin_stop(struct worker *w)
{
	if (w->admin != NULL) {
		evconnlistener_free(w->admin);
		w->admin = NULL;
	}
}

static void
admin_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct worker		*w = arg;
	struct admin_conn	*ac, *old;
	struct timeval		 tv = { ADMIN_TIMEOUT_S, 0 };
	struct timeval		 head = { ADMIN_HEAD_S, 0 };

	if (w->nadmin >= ADMIN_CONNS_MAX) {
		TAILQ_FOREACH(old, &admin_conns, entry)
			if (!old->answered)
				break;
		if (old == NULL) {
			close(fd);
			return;
		}
		admin_conn_free(old);
	}
	if ((ac = calloc(1, sizeof(*ac))) == NULL) {
		close(fd);
		return;
	}
	ac->w = w;
	if ((ac->bev = bufferevent_socket_new(w->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL ||
	    (ac->deadline = evtimer_new(w->base, admin_deadline_cb,
	    ac)) == NULL) {
		if (ac->bev != NULL)
			bufferevent_free(ac->bev);
		else
			close(fd);
		free(ac);
		return;
	}
	TAILQ_INSERT_TAIL(&admin_conns, ac, entry);
	w->nadmin++;
	bufferevent_setcb(ac->bev, admin_read_cb, admin_write_cb,
	    admin_event_cb, ac);
	bufferevent_set_timeouts(ac->bev, &tv, &tv);
	bufferevent_enable(ac->bev, EV_READ | EV_WRITE);
	evtimer_add(ac->deadline, &head);
}

static void
admin_conn_free(struct admin_conn *ac)
{
	struct worker *w = ac->w;

	TAILQ_REMOVE(&admin_conns, ac, entry);
	event_free(ac->deadline);
	bufferevent_free(ac->bev);
	free(ac);
	w->nadmin--;
	if (w->client_gone != NULL)
		w->client_gone(w);
}

/* The head did not arrive whole in time. */
static void
admin_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin_conn *ac = arg;

	if (!ac->answered)
		admin_conn_free(ac);
}

static void
admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
	admin_conn_free(arg);
}

static void
admin_write_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn *ac = arg;

	if (ac->answered &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		admin_conn_free(ac);
}

/* Append S as a JSON string. */
static void
json_str(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	reply_json_escape(b, s);
	evbuffer_add(b, "\"", 1);
}

/* Append US microseconds as decimal seconds: 1500 -> "0.0015". */
static void
put_seconds(struct evbuffer *b, int64_t us)
{
	char	 frac[8];
	int	 n;

	if (us < 0) {
		evbuffer_add(b, "-", 1);
		us = -us;
	}
	snprintf(frac, sizeof(frac), "%06" PRId64, us % 1000000);
	for (n = 6; n > 0 && frac[n - 1] == '0'; n--)
		frac[n - 1] = '\0';
	evbuffer_add_printf(b, "%" PRId64 "%s%s", us / 1000000, n ? "." : "",
	    frac);
}

static void
admin_read_view(struct admin_view *v)
{
	struct cnt_region	*r = shm_region(admin_shm, "counters", NULL);
	struct cnt_master	*m = &r->master;
	struct cnt_collector	*cc = &r->collector;
	struct spread_region	*sp = shm_region(admin_shm, "spread", NULL);
	struct ring_lane	*l;
	uint32_t		 i;
	uint64_t		 head, n;
	int64_t			 hb;

	v->now_wall_us = wall_us();
	v->now_mono_ms = now_us() / 1000;
	v->nslots = r->nslots;
	if (v->nslots > shm_nlanes(admin_shm))
		v->nslots = shm_nlanes(admin_shm);
	v->nups = cnt_upstream_count(r);
	v->gen = atomic_load_explicit(&m->generation, memory_order_relaxed);
	memset(&v->total, 0, sizeof(v->total));
	for (i = 0; i < v->nslots; i++) {
		cnt_worker_read(&r->workers[i], &v->slot[i]);
		cnt_worker_sum(&v->total, &v->slot[i]);
		v->pid[i] = atomic_load_explicit(&m->slots[i].pid,
		    memory_order_acquire);
		v->sgen[i] = atomic_load_explicit(&m->slots[i].gen,
		    memory_order_relaxed);
		if (v->pid[i] == 0) {
			/* no owner: its gauges mean nothing until the next */
			v->total.conns -= v->slot[i].conns;
			v->total.streams -= v->slot[i].streams;
			v->slot[i].conns = v->slot[i].streams = 0;
		} else if (v->sgen[i] == v->gen)
			v->alive++;
		if (sp != NULL && i < sp->nslots && v->pid[i] != 0) {
			v->listening[i] = (uint64_t)atomic_load_explicit(
			    &sp->s[i].listening, memory_order_relaxed);
			v->sconns[i] = (uint64_t)atomic_load_explicit(
			    &sp->s[i].conns, memory_order_relaxed);
		} else
			v->listening[i] = v->sconns[i] = 0;
		l = shm_lane(admin_shm, i);
		n = ring_readable(l, &head);
		v->pushes[i] = atomic_load_explicit(&l->pushes,
		    memory_order_relaxed);
		v->drops[i] = atomic_load_explicit(&l->drops,
		    memory_order_relaxed);
		v->depth[i] = n;
		v->lag_us[i] = 0;
		if (n > 0) {
			/*
			 * The oldest waiting event was pushed when its request
			 * ended.  The slot is stable until the collector
			 * releases it; a read racing that shows a wrong age
			 * once, never a crash.
			 */
			const struct usage_event *ev = ring_at(l, head);
			int64_t pushed = ev->ts_start_us + ev->latency_us;

			v->lag_us[i] = v->now_wall_us - pushed;
			if (v->lag_us[i] < 0)
				v->lag_us[i] = 0;
		}
		v->t_pushes += v->pushes[i];
		v->t_drops += v->drops[i];
		v->t_depth += v->depth[i];
		if (v->lag_us[i] > v->t_lag_us)
			v->t_lag_us = v->lag_us[i];
	}
	cnt_text_get(&m->reload_msg, v->reload_msg, sizeof(v->reload_msg));
	cnt_text_get(&cc->last_error, v->coll_err, sizeof(v->coll_err));

	/* health: the first reason found */
	v->healthy = 0;
	hb = atomic_load_explicit(&cc->heartbeat_ms, memory_order_relaxed);
	if (v->alive == 0)
		snprintf(v->reason, sizeof(v->reason), "no worker of "
		    "generation %u is running", v->gen);
	else if (hb == 0)
		snprintf(v->reason, sizeof(v->reason), "the collector has "
		    "not started");
	else if (v->now_mono_ms - hb > CNT_HEARTBEAT_MAX_MS)
		snprintf(v->reason, sizeof(v->reason), "the collector has "
		    "not looped for %.1f s", (double)(v->now_mono_ms - hb) /
		    1000.0);
	else if (!atomic_load_explicit(&cc->connected, memory_order_relaxed) &&
	    !atomic_load_explicit(&cc->spool_ok, memory_order_relaxed))
		snprintf(v->reason, sizeof(v->reason), "the collector can "
		    "neither reach PostgreSQL nor spool");
	else
		v->healthy = 1;
}

/* -- /metrics ------------------------------------------------------------ */

static void
m_head(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

static void
m_u64(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t val)
{
	m_head(b, name, type, help);
	evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, val);
}

/* A label value: escape backslash, quote and newline. */
static void
m_label(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(b, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, s, 1);
	}
}

static void
m_hist(struct evbuffer *b, int k, const struct cnt_hist_snap *h)
{
	uint64_t	 cum = 0;
	int		 i;

	m_head(b, hist_names[k], "histogram", hist_help[k]);
	for (i = 0; i < CNT_HIST_BOUNDS; i++) {
		cum += h->bucket[i];
		evbuffer_add_printf(b, "%s_bucket{le=\"", hist_names[k]);
		put_seconds(b, (int64_t)cnt_hist_bounds_us[i]);
		evbuffer_add_printf(b, "\"} %" PRIu64 "\n", cum);
	}
	cum += h->bucket[CNT_HIST_BOUNDS];
	evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n",
	    hist_names[k], cum);
	evbuffer_add_printf(b, "%s_sum ", hist_names[k]);
	put_seconds(b, (int64_t)h->sum_us);
	/* _count is the buckets' total, so that the two always agree */
	evbuffer_add_printf(b, "\n%s_count %" PRIu64 "\n", hist_names[k], cum);
}

/* Per-upstream counter FIELD (an offset into the snapshot's up[]). */
static void
m_upstream(struct evbuffer *b, const struct admin_view *v,
    const struct cnt_region *r, const char *name, const char *help,
    size_t off)
{
	uint32_t i;

	m_head(b, name, "counter", help);
	for (i = 0; i < v->nups; i++) {
		uint64_t val;

		memcpy(&val, (const char *)&v->total.up[i] + off, sizeof(val));
		evbuffer_add_printf(b, "%s{upstream=\"", name);
		m_label(b, r->master.upstream[i]);
		evbuffer_add_printf(b, "\"} %" PRIu64 "\n", val);
	}
}

static void
m_lanes(struct evbuffer *b, const struct admin_view *v, const char *name,
    const char *type, const char *help, const uint64_t *val)
{
	uint32_t i;

	m_head(b, name, type, help);
	for (i = 0; i < v->nslots; i++)
		evbuffer_add_printf(b, "%s{worker=\"%u\"} %" PRIu64 "\n", name,
		    i, val[i]);
}

/* TLS on "listen ... ssl": handshakes, failures by reason, the
 * certificate's expiry (when one is loaded) and ticket key rotations. */
static void
m_tls(struct evbuffer *b, const struct cnt_worker_snap *t,
    const struct cnt_master *m)
{
	const struct tickets_region	*tk = shm_region(admin_shm, "tickets",
					    NULL);
	int64_t				 exp;
	int				 k;

	m_head(b, "sluice_tls_handshakes_total", "counter",
	    "TLS handshakes done, full or resumed by a session ticket.");
	evbuffer_add_printf(b, "sluice_tls_handshakes_total{session=\"full\"} "
	    "%" PRIu64 "\nsluice_tls_handshakes_total{session=\"resumed\"} %"
	    PRIu64 "\n", t->tls_full, t->tls_resumed);
	m_head(b, "sluice_tls_handshake_failures_total", "counter",
	    "TLS handshakes that failed, by reason; the connection was "
	    "closed.");
	for (k = 0; k < CNT_TLS_REASONS; k++)
		evbuffer_add_printf(b, "sluice_tls_handshake_failures_total{"
		    "reason=\"%s\"} %" PRIu64 "\n", tls_failure_name(k),
		    t->tls_failed[k]);
	if ((exp = atomic_load_explicit(&m->tls_not_after,
	    memory_order_relaxed)) != 0) {
		m_head(b, "sluice_tls_certificate_expiry_timestamp_seconds",
		    "gauge", "When ssl_certificate expires, in seconds since "
		    "the epoch.");
		evbuffer_add_printf(b, "sluice_tls_certificate_expiry_timestamp"
		    "_seconds %" PRId64 "\n", exp);
	}
	if (tk != NULL)
		m_u64(b, "sluice_tls_ticket_key_rotations_total", "counter",
		    "Session ticket keys made (one at start, then one per "
		    "ssl_session_timeout).", tickets_rotations(tk));
}

static void
admin_metrics(struct evbuffer *b, const struct admin_view *v)
{
	const struct cnt_region		*r = shm_region(admin_shm, "counters",
					    NULL);
	const struct cnt_master		*m = &r->master;
	const struct cnt_collector	*cc = &r->collector;
	const struct cnt_worker_snap	*t = &v->total;
	int64_t				 hb, at;
	int				 e, k;

	m_head(b, "sluice_requests_total", "counter",
	    "Requests finished, by endpoint and status class.");
	for (e = 0; e < CNT_ENDPOINTS; e++)
		for (k = 0; k < CNT_CLASSES; k++) {
			/* the usual classes always; the rest once seen */
			if (t->requests[e][k] == 0 && (e == CNT_ENDPOINTS - 1 ||
			    (k != 2 && k != 4 && k != 5)))
				continue;
			evbuffer_add_printf(b, "sluice_requests_total{endpoint="
			    "\"%s\",code=\"%s\"} %" PRIu64 "\n",
			    endpoint_label(e), class_names[k],
			    t->requests[e][k]);
		}
	m_u64(b, "sluice_request_bytes_total", "counter",
	    "Request bytes received from clients.", t->bytes_in);
	m_u64(b, "sluice_response_bytes_total", "counter",
	    "Response bytes sent to clients.", t->bytes_out);
	m_head(b, "sluice_client_connections", "gauge",
	    "Client connections open.");
	evbuffer_add_printf(b, "sluice_client_connections %" PRId64 "\n",
	    t->conns);
	m_head(b, "sluice_active_streams", "gauge",
	    "Streamed responses being relayed.");
	evbuffer_add_printf(b, "sluice_active_streams %" PRId64 "\n",
	    t->streams);
	m_head(b, "sluice_rejections_total", "counter",
	    "Requests sluice refused itself: 401 key, 403 model, 429 limit.");
	for (k = 0; k < CNT_REJECTS; k++)
		evbuffer_add_printf(b, "sluice_rejections_total{code=\"%s\"} %"
		    PRIu64 "\n", meter_reject_code(k), t->rejected[k]);
	m_u64(b, "sluice_requests_unpriced_total", "counter",
	    "Requests with usage but no matching price: cost NULL.",
	    t->unpriced);
	m_u64(b, "sluice_metering_full_rejections_total", "counter",
	    "Requests refused 503 because the ring lane was full "
	    "(metering_full reject).", t->metering_full);
	for (k = 0; k < CNT_H_MAX; k++)
		m_hist(b, k, &t->hist[k]);
	m_tls(b, t, m);

#define UPOFF(f) offsetof(struct cnt_worker_snap, up[0].f) - \
	offsetof(struct cnt_worker_snap, up[0])
	m_upstream(b, v, r, "sluice_upstream_connections_opened_total",
	    "Upstream connections opened.", UPOFF(opened));
	m_upstream(b, v, r, "sluice_upstream_connections_reused_total",
	    "Requests sent on a pooled keep-alive connection.", UPOFF(reused));
	m_upstream(b, v, r, "sluice_upstream_requests_total",
	    "Requests that reached an upstream.", UPOFF(requests));
	m_upstream(b, v, r, "sluice_upstream_failures_total",
	    "Requests an upstream failed (connect, timeout, cut).",
	    UPOFF(failures));
	m_upstream(b, v, r, "sluice_upstream_retries_total",
	    "Extra upstream attempts (failover to the next upstream).",
	    UPOFF(retries));
#undef UPOFF

	m_lanes(b, v, "sluice_worker_listening", "gauge",
	    "1 while the worker takes part in accepting new connections.",
	    v->listening);
	m_lanes(b, v, "sluice_worker_connections", "gauge",
	    "Client connections the worker holds: its turn to accept a new "
	    "one comes when it holds fewer than the others.", v->sconns);
	m_lanes(b, v, "sluice_ring_pushes_total", "counter",
	    "Usage events pushed into the worker's ring lane.", v->pushes);
	m_lanes(b, v, "sluice_ring_drops_total", "counter",
	    "Usage events dropped because the lane was full.", v->drops);
	m_lanes(b, v, "sluice_ring_depth", "gauge",
	    "Usage events waiting in the lane for the collector.", v->depth);
	m_head(b, "sluice_collector_lag_seconds", "gauge",
	    "Age of the oldest usage event not yet durable.");
	evbuffer_add(b, "sluice_collector_lag_seconds ", 29);
	put_seconds(b, v->t_lag_us);
	evbuffer_add(b, "\n", 1);

	m_u64(b, "sluice_collector_rows_written_total", "counter",
	    "Usage rows committed to PostgreSQL.", cnt_get(&cc->rows_written));
	m_u64(b, "sluice_collector_rows_duplicate_total", "counter",
	    "Usage rows PostgreSQL already had.",
	    cnt_get(&cc->rows_duplicate));
	m_u64(b, "sluice_collector_rows_spooled_total", "counter",
	    "Usage rows written to spool files.", cnt_get(&cc->rows_spooled));
	m_u64(b, "sluice_collector_rows_replayed_total", "counter",
	    "Spooled rows loaded into PostgreSQL.",
	    cnt_get(&cc->rows_replayed));
	m_u64(b, "sluice_collector_batches_total", "counter",
	    "Batches committed to PostgreSQL.", cnt_get(&cc->batches));
	m_u64(b, "sluice_collector_spool_written_bytes_total", "counter",
	    "Bytes written to spool files.", cnt_get(&cc->spool_bytes));
	m_u64(b, "sluice_collector_spool_files", "gauge",
	    "Spool files waiting for replay.", cnt_get(&cc->spool_files));
	m_u64(b, "sluice_collector_connected", "gauge",
	    "1 while the collector is connected to PostgreSQL.",
	    atomic_load_explicit(&cc->connected, memory_order_relaxed));
	m_u64(b, "sluice_collector_spool_ok", "gauge",
	    "1 while the spool directory takes batches.",
	    atomic_load_explicit(&cc->spool_ok, memory_order_relaxed));
	m_u64(b, "sluice_limits_fallback", "gauge",
	    "1 while limits shared fall back to this host's share "
	    "(PostgreSQL unreachable).",
	    atomic_load_explicit(&cc->limits_fallback, memory_order_relaxed));
	m_u64(b, "sluice_limits_fallbacks_total", "counter",
	    "Outages in which limits shared fell back to this host's share.",
	    cnt_get(&cc->limits_fallbacks));
	hb = atomic_load_explicit(&cc->heartbeat_ms, memory_order_relaxed);
	m_head(b, "sluice_collector_heartbeat_age_seconds", "gauge",
	    "Time since the collector last went round its loop.");
	evbuffer_add(b, "sluice_collector_heartbeat_age_seconds ", 39);
	put_seconds(b, hb == 0 ? 0 : (v->now_mono_ms - hb) * 1000);
	evbuffer_add(b, "\n", 1);
	at = atomic_load_explicit(&cc->error_wall_us, memory_order_relaxed);
	m_head(b, "sluice_collector_last_error_timestamp_seconds", "gauge",
	    "When the collector last saw an error (0 = never).");
	evbuffer_add(b, "sluice_collector_last_error_timestamp_seconds ", 46);
	put_seconds(b, at);
	evbuffer_add(b, "\n", 1);

	m_u64(b, "sluice_worker_restarts_total", "counter",
	    "Workers that died unexpectedly and were respawned.",
	    cnt_get(&m->worker_restarts));
	m_u64(b, "sluice_collector_restarts_total", "counter",
	    "Collector processes that died unexpectedly.",
	    cnt_get(&m->collector_restarts));
	m_head(b, "sluice_reloads_total", "counter",
	    "Configuration reloads (SIGHUP), by outcome.");
	evbuffer_add_printf(b, "sluice_reloads_total{result=\"ok\"} %" PRIu64
	    "\nsluice_reloads_total{result=\"failed\"} %" PRIu64 "\n",
	    cnt_get(&m->reloads_ok), cnt_get(&m->reloads_failed));
	m_u64(b, "sluice_generation", "gauge",
	    "Configuration generation (1 at start, +1 per reload).", v->gen);
	m_u64(b, "sluice_workers_alive", "gauge",
	    "Workers of the current generation running.", (uint64_t)v->alive);
	m_u64(b, "sluice_last_reload_success", "gauge",
	    "1 if the last reload was applied (1 before any reload).",
	    atomic_load_explicit(&m->reload_wall_us, memory_order_relaxed) ==
	    0 ? 1 : atomic_load_explicit(&m->reload_ok, memory_order_relaxed));
	m_head(b, "sluice_last_reload_timestamp_seconds", "gauge",
	    "When the last reload was tried (0 = never).");
	evbuffer_add(b, "sluice_last_reload_timestamp_seconds ", 37);
	put_seconds(b, atomic_load_explicit(&m->reload_wall_us,
	    memory_order_relaxed));
	evbuffer_add(b, "\n", 1);
	m_head(b, "sluice_start_time_seconds", "gauge",
	    "When the master started, in seconds since the epoch.");
	evbuffer_add(b, "sluice_start_time_seconds ", 26);
	put_seconds(b, atomic_load_explicit(&m->started_wall_us,
	    memory_order_relaxed));
	evbuffer_add(b, "\n", 1);
	m_u64(b, "sluice_healthy", "gauge",
	    "1 when /healthz answers 200.", (uint64_t)v->healthy);
}

/* Each budgeted key's and team's spend over its budget, for alerts. */
static void
m_budgets(struct evbuffer *b, struct worker *w)
{
	const struct keyring	*kr = w->cfg->keys;
	const struct key_entry	*e;
	struct keystate		*ks;
	time_t			 now = time(NULL), start, end;
	int64_t			 spend;
	int			 i, n, head = 0;

	n = kr != NULL ? kr->nkeys + kr->nteams : 0;
	for (i = 0; i < n; i++) {
		e = i < kr->nkeys ? &kr->keys[i] : &kr->teams[i - kr->nkeys];
		if (e->budget_micro_usd <= 0 || e->budget_period ==
		    PERIOD_NONE || (ks = keystate_at(w->keystate, e->slot)) ==
		    NULL)
			continue;
		if (!head++)
			m_head(b, "sluice_budget_used_ratio", "gauge",
			    "Spend in the budget period over the budget, per "
			    "key and team.");
		spend = ks_spend(ks, ks_period((int)e->budget_period, now,
		    &start, &end));
		/* names are [A-Za-z0-9_.-]: no label escaping needed */
		evbuffer_add_printf(b, "sluice_budget_used_ratio{%s=\"%s\"} "
		    "%.6f\n", i < kr->nkeys ? "key" : "team", e->name,
		    (double)spend / (double)e->budget_micro_usd);
	}
}

/* -- /status ------------------------------------------------------------- */

static void
j_hist(struct evbuffer *b, const char *name, const struct cnt_hist_snap *h)
{
	int i;

	evbuffer_add_printf(b, "\"%s\":{\"count\":%" PRIu64 ",\"sum_us\":%"
	    PRIu64 ",\"buckets\":[", name, h->count, h->sum_us);
	for (i = 0; i < CNT_HIST_BUCKETS; i++)
		evbuffer_add_printf(b, "%s%" PRIu64, i ? "," : "",
		    h->bucket[i]);
	evbuffer_add(b, "]}", 2);
}

/* The numbers of one slot, or of the totals (SLOT = -1). */
static void
j_block(struct evbuffer *b, const struct admin_view *v, int slot)
{
	const struct cnt_worker_snap	*s = slot < 0 ? &v->total :
					    &v->slot[slot];
	uint64_t			 req = 0, op = 0, ru = 0, fa = 0, re = 0;
	uint32_t			 i;
	int				 e, k;

	for (e = 0; e < CNT_ENDPOINTS; e++)
		for (k = 0; k < CNT_CLASSES; k++)
			req += s->requests[e][k];
	for (i = 0; i < CNT_UPSTREAMS_MAX; i++) {
		op += s->up[i].opened;
		ru += s->up[i].reused;
		fa += s->up[i].failures;
		re += s->up[i].retries;
	}
	evbuffer_add(b, "{", 1);
	if (slot >= 0)
		evbuffer_add_printf(b, "\"slot\":%d,\"pid\":%d,\"generation\":"
		    "%u,\"alive\":%s,\"current\":%s,", slot, (int)v->pid[slot],
		    v->sgen[slot], v->pid[slot] ? "true" : "false",
		    v->pid[slot] && v->sgen[slot] == v->gen ? "true" : "false");
	evbuffer_add_printf(b, "\"requests\":%" PRIu64 ",\"by_class\":{", req);
	for (k = 0; k < CNT_CLASSES; k++) {
		uint64_t n = 0;

		for (e = 0; e < CNT_ENDPOINTS; e++)
			n += s->requests[e][k];
		evbuffer_add_printf(b, "%s\"%s\":%" PRIu64, k ? "," : "",
		    class_names[k], n);
	}
	evbuffer_add(b, "},\"rejected\":{", 14);
	for (k = 0; k < CNT_REJECTS; k++)
		evbuffer_add_printf(b, "%s\"%s\":%" PRIu64, k ? "," : "",
		    meter_reject_code(k), s->rejected[k]);
	evbuffer_add_printf(b, "},\"bytes_in\":%" PRIu64 ",\"bytes_out\":%"
	    PRIu64 ",\"connections\":%" PRId64 ",\"streams\":%" PRId64
	    ",\"upstream_opened\":%" PRIu64 ",\"upstream_reused\":%" PRIu64
	    ",\"upstream_failures\":%" PRIu64 ",\"upstream_retries\":%" PRIu64
	    ",", s->bytes_in, s->bytes_out, s->conns, s->streams, op, ru, fa,
	    re);
	for (k = 0, fa = 0; k < CNT_TLS_REASONS; k++)
		fa += s->tls_failed[k];
	evbuffer_add_printf(b, "\"tls\":{\"full\":%" PRIu64 ",\"resumed\":%"
	    PRIu64 ",\"failed\":%" PRIu64 "},", s->tls_full, s->tls_resumed,
	    fa);
	for (k = 0; k < CNT_H_MAX; k++) {
		j_hist(b, hist_json[k], &s->hist[k]);
		evbuffer_add(b, ",", 1);
	}
	if (slot >= 0)
		evbuffer_add_printf(b, "\"ring\":{\"pushes\":%" PRIu64
		    ",\"drops\":%" PRIu64 ",\"depth\":%" PRIu64 ",\"lag_ms\":%"
		    PRId64 "}}", v->pushes[slot], v->drops[slot],
		    v->depth[slot], v->lag_us[slot] / 1000);
	else
		evbuffer_add_printf(b, "\"ring\":{\"pushes\":%" PRIu64
		    ",\"drops\":%" PRIu64 ",\"depth\":%" PRIu64 ",\"lag_ms\":%"
		    PRId64 "}}", v->t_pushes, v->t_drops, v->t_depth,
		    v->t_lag_us / 1000);
}

static void
admin_status(struct evbuffer *b, const struct admin_view *v,
    struct cache_arena *cache)
{
	const struct cnt_region		*r = shm_region(admin_shm, "counters",
					    NULL);
	const struct cnt_master		*m = &r->master;
	const struct cnt_collector	*cc = &r->collector;
	int64_t				 hb, rt;
	uint32_t			 i;
	int				 first = 1;

	hb = atomic_load_explicit(&cc->heartbeat_ms, memory_order_relaxed);
	rt = atomic_load_explicit(&m->reload_wall_us, memory_order_relaxed);
	evbuffer_add_printf(b, "{\"time_us\":%" PRId64 ",\"healthy\":%s,"
	    "\"health\":", v->now_wall_us, v->healthy ? "true" : "false");
	json_str(b, v->healthy ? "ok" : v->reason);
	evbuffer_add_printf(b, ",\"master\":{\"pid\":%d,\"generation\":%u,"
	    "\"started_us\":%" PRId64 ",\"workers_alive\":%d,"
	    "\"worker_restarts\":%" PRIu64 ",\"collector_restarts\":%" PRIu64
	    ",\"reloads_ok\":%" PRIu64 ",\"reloads_failed\":%" PRIu64
	    ",\"last_reload\":{\"time_us\":%" PRId64 ",\"ok\":%s,\"message\":",
	    (int)atomic_load_explicit(&m->pid, memory_order_relaxed), v->gen,
	    atomic_load_explicit(&m->started_wall_us, memory_order_relaxed),
	    v->alive, cnt_get(&m->worker_restarts),
	    cnt_get(&m->collector_restarts), cnt_get(&m->reloads_ok),
	    cnt_get(&m->reloads_failed), rt,
	    atomic_load_explicit(&m->reload_ok, memory_order_relaxed) ?
	    "true" : "false");
	json_str(b, v->reload_msg);
	evbuffer_add_printf(b, "}},\"collector\":{\"pid\":%d,\"connected\":%s,"
	    "\"spool_ok\":%s,\"database\":%s,\"heartbeat_age_ms\":%" PRId64
	    ",\"rows_written\":%" PRIu64 ",\"rows_duplicate\":%" PRIu64
	    ",\"rows_spooled\":%" PRIu64 ",\"rows_replayed\":%" PRIu64
	    ",\"batches\":%" PRIu64 ",\"spool_bytes\":%" PRIu64
	    ",\"spool_files\":%" PRIu64 ",\"last_error_us\":%" PRId64
	    ",\"last_error\":",
	    (int)atomic_load_explicit(&cc->pid, memory_order_relaxed),
	    atomic_load_explicit(&cc->connected, memory_order_relaxed) ?
	    "true" : "false",
	    atomic_load_explicit(&cc->spool_ok, memory_order_relaxed) ?
	    "true" : "false",
	    atomic_load_explicit(&cc->has_database, memory_order_relaxed) ?
	    "true" : "false",
	    hb == 0 ? (int64_t)-1 : v->now_mono_ms - hb,
	    cnt_get(&cc->rows_written), cnt_get(&cc->rows_duplicate),
	    cnt_get(&cc->rows_spooled), cnt_get(&cc->rows_replayed),
	    cnt_get(&cc->batches), cnt_get(&cc->spool_bytes),
	    cnt_get(&cc->spool_files),
	    atomic_load_explicit(&cc->error_wall_us, memory_order_relaxed));
	json_str(b, v->coll_err);
	evbuffer_add(b, "},\"bounds_us\":[", 15);
	for (i = 0; i < CNT_HIST_BOUNDS; i++)
		evbuffer_add_printf(b, "%s%" PRIu64, i ? "," : "",
		    cnt_hist_bounds_us[i]);
	evbuffer_add(b, "],\"workers\":[", 13);
	for (i = 0; i < v->nslots; i++) {
		int			 e, k;
		uint64_t		 used = v->pushes[i];

		for (e = 0; e < CNT_ENDPOINTS; e++)
			for (k = 0; k < CNT_CLASSES; k++)
				used += v->slot[i].requests[e][k];
		if (v->pid[i] == 0 && used == 0)
			continue;	/* a slot never used */
		if (!first)
			evbuffer_add(b, ",", 1);
		first = 0;
		j_block(b, v, (int)i);
	}
	evbuffer_add(b, "],\"totals\":", 11);
	j_block(b, v, -1);
	evbuffer_add(b, ",\"upstreams\":[", 14);
	for (i = 0; i < v->nups; i++) {
		evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
		json_str(b, r->master.upstream[i]);
		evbuffer_add_printf(b, ",\"opened\":%" PRIu64 ",\"reused\":%"
		    PRIu64 ",\"requests\":%" PRIu64 ",\"failures\":%" PRIu64
		    ",\"retries\":%" PRIu64 "}", v->total.up[i].opened,
		    v->total.up[i].reused, v->total.up[i].requests,
		    v->total.up[i].failures, v->total.up[i].retries);
	}
	evbuffer_add(b, "]", 1);
	admin_cache_status(b, cache);
	evbuffer_add(b, "}\n", 2);
}

/* -- the one request ----------------------------------------------------- */

static void
admin_reply(struct admin_conn *ac, int status, const char *ctype,
    struct evbuffer *body, int head_only)
{
	struct evbuffer *out = bufferevent_get_output(ac->bev);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n"
	    "Connection: close\r\n\r\n", status, http_reason(status), ctype,
	    evbuffer_get_length(body));
	if (!head_only)
		evbuffer_add_buffer(out, body);
	ac->answered = 1;
	bufferevent_disable(ac->bev, EV_READ);
}

/*
 * Whether W is of the current generation: not stopping, and its slot
 * published with the master's generation.  A slot not yet published
 * with our pid is a worker just forked, so of the newest generation.
 */
static int
admin_current(const struct worker *w)
{
	const struct cnt_region	*r = shm_region(admin_shm, "counters", NULL);
	const struct cnt_slot	*cs;

	if (w->stopping)
		return 0;
	if (r == NULL || w->slot < 0 || w->slot >= CNT_SLOTS_MAX)
		return 1;
	cs = &r->master.slots[w->slot];
	if (atomic_load_explicit(&cs->pid, memory_order_acquire) != w->pid)
		return 1;
	return atomic_load_explicit(&cs->gen, memory_order_relaxed) ==
	    atomic_load_explicit(&r->master.generation, memory_order_relaxed);
}

static void
admin_read_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn	*ac = arg;
	struct evbuffer		*in = bufferevent_get_input(bev), *body;
	struct evbuffer_ptr	 found;
	struct http_head	 rq;
	struct admin_view	*v = NULL;
	char			*head;
	size_t			 len;
	int			 rc, head_only;

	if (ac->answered)
		return;
	found = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (found.pos == -1) {
		if (evbuffer_get_length(in) > ADMIN_HEAD_MAX)
			admin_conn_free(ac);
		return;
	}
	len = (size_t)found.pos + 4;
	if (len > ADMIN_HEAD_MAX || (body = evbuffer_new()) == NULL) {
		admin_conn_free(ac);
		return;
	}
	head = (char *)evbuffer_pullup(in, (ev_ssize_t)len);
	if (head == NULL ||
	    (rc = http_parse_request(head, len, ADMIN_HEAD_MAX, &rq)) != 0) {
		evbuffer_add_printf(body, "{\"error\":\"bad request\"}\n");
		admin_reply(ac, 400, "application/json", body, 0);
		evbuffer_free(body);
		return;
	}
	head_only = rq.method_len == 4 && memcmp(rq.method, "HEAD", 4) == 0;
	if (rq.method_len == 4 && memcmp(rq.method, "POST", 4) == 0 &&
	    rq.path_len == 12 && memcmp(rq.target, "/cache/flush", 12) == 0) {
		rc = admin_cache_flush(ac->w->cache, admin_current(ac->w),
		    rq.target, rq.target_len, body);
		admin_reply(ac, rc, "application/json", body, 0);
		evbuffer_free(body);
		return;
	}
	if (!head_only && !(rq.method_len == 3 &&
	    memcmp(rq.method, "GET", 3) == 0)) {
		evbuffer_add_printf(body, "{\"error\":\"only GET\"}\n");
		admin_reply(ac, 405, "application/json", body, 0);
		evbuffer_free(body);
		return;
	}
#define PATH_IS(p) (rq.path_len == sizeof(p) - 1 && \
	memcmp(rq.target, p, sizeof(p) - 1) == 0)
	if (!PATH_IS("/metrics") && !PATH_IS("/healthz") &&
	    !PATH_IS("/status")) {
		evbuffer_add_printf(body, "{\"error\":\"not found: try "
		    "/metrics, /healthz or /status\"}\n");
		admin_reply(ac, 404, "application/json", body, head_only);
		evbuffer_free(body);
		return;
	}
	if ((v = calloc(1, sizeof(*v))) == NULL ||
	    (v->slot = calloc(CNT_SLOTS_MAX, sizeof(*v->slot))) == NULL) {
		free(v);
		evbuffer_free(body);
		admin_conn_free(ac);
		return;
	}
	admin_read_view(v);
	if (PATH_IS("/metrics")) {
		admin_metrics(body, v);
		m_budgets(body, ac->w);
		admin_cache_metrics(body, ac->w->cache);
		admin_reply(ac, 200, "text/plain; version=0.0.4; charset=utf-8",
		    body, head_only);
	} else if (PATH_IS("/healthz")) {
		if (v->healthy)
			evbuffer_add_printf(body, "{\"status\":\"ok\"}\n");
		else {
			evbuffer_add_printf(body, "{\"status\":\"unhealthy\","
			    "\"reason\":");
			json_str(body, v->reason);
			evbuffer_add_printf(body, "}\n");
		}
		admin_reply(ac, v->healthy ? 200 : 503, "application/json",
		    body, head_only);
	} else {
		admin_status(body, v, ac->w->cache);
		admin_reply(ac, 200, "application/json", body, head_only);
	}
#undef PATH_IS
	free(v->slot);
	free(v);
	evbuffer_free(body);
}
