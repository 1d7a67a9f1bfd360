/*
 * worker.c - a worker process: one libevent loop, no threads.
 *
 * Inherits the listening sockets and the shared segment from the master,
 * accepts on the shared sockets, and serves until told to stop.  SIGTERM
 * is a graceful stop (nginx's "quit"): stop accepting, close idle
 * keep-alive connections, let in-flight requests finish, exit when the
 * last client is gone or at shutdown_timeout.  SIGQUIT cuts in-flight
 * requests at once, metering each as cut so that no row is lost.
 */
#include <sys/socket.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "common/clock.h"
#include "common/log.h"
#include "shm/counters.h"
#include "shm/inflight.h"
#include "shm/shm.h"
#include "worker/accept.h"
#include "worker/admin.h"
#include "worker/client.h"
#include "worker/handshake.h"
#include "worker/pipeline.h"
#include "worker/reqid.h"
#include "worker/upstream.h"
#include "worker/wctx.h"
#include "worker/worker.h"

static void
stop_listening(struct worker *w)
{
	accept_stop(w);
	admin_stop(w);
}

/* Meter every request still in flight as cut, then leave. */
static void
cut_and_exit(struct worker *w, const char *why)
{
	struct client *c;

	TAILQ_FOREACH(c, &w->clients, entry)
		client_cut(c, why);
	log_info("exiting (%s)", why);
	exit(0);
}

static void
client_gone(struct worker *w)
{
	accept_conns_changed(w);
	/* an admin answer under way finishes too: a prober asking
	 * /status during a reload must not see its connection dropped */
	if (w->stopping && w->nclients == 0 && w->nadmin == 0 &&
	    w->nhandshakes == 0)
		event_base_loopbreak(w->base);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	cut_and_exit(arg, "shutdown_timeout");
}

static void
sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker	*w = arg;
	struct client	*c, *next;
	struct timeval	 tv;

	if (w->stopping)
		return;
	w->stopping = 1;
	stop_listening(w);
	log_info("graceful stop: %d connection(s) open", w->nclients);
	for (c = TAILQ_FIRST(&w->clients); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		client_stop(c);
	}
	if (w->nclients == 0 && w->nadmin == 0 && w->nhandshakes == 0) {
		event_base_loopbreak(w->base);
		return;
	}
	tv.tv_sec = w->cfg->shutdown_timeout_ms / 1000;
	tv.tv_usec = (w->cfg->shutdown_timeout_ms % 1000) * 1000;
	w->ev_deadline = evtimer_new(w->base, deadline_cb, w);
	if (w->ev_deadline != NULL)
		evtimer_add(w->ev_deadline, &tv);
}

static void
sigquit_cb(evutil_socket_t sig, short what, void *arg)
{
	cut_and_exit(arg, "fast_shutdown");
}

static void
sigusr1_cb(evutil_socket_t sig, short what, void *arg)
{
	if (log_reopen() == -1)
		log_warn("reopening the log");
}

/* This slot's in-flight table: every entry free (the master cleared what
 * a dead predecessor left, before it respawned the slot).  Without one,
 * events stay private. */
static void
ift_setup(struct worker *w, struct inflight_region *rg)
{
	uint32_t	 n, i;

	if ((w->ift = inflight_table(rg, (uint32_t)w->slot, &n)) == NULL)
		return;
	if ((w->ift_free = calloc(n, sizeof(*w->ift_free))) == NULL) {
		log_warn("in-flight table");
		w->ift = NULL;
		return;
	}
	for (i = 0; i < n; i++)
		w->ift_free[i] = n - 1 - i;
	w->ift_nfree = n;
}

static struct cache_arena *worker_cache;

void
worker_set_cache(struct cache_arena *a)
{
	worker_cache = a;
}

void
worker_main(const struct config *cfg, struct shm_segment *shm, int slot,
    const int *listen_fds, int nfds, int admin_fd, struct tls_server *tls)
{
	static struct cnt_worker scratch;	/* counters without a segment */
	struct worker	 wk, *w = &wk;

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	w->tls = tls;
	w->slot = slot;
	w->started_us = now_us();
	w->pid = (int32_t)getpid();
	/*
	 * Request bodies of 100 KB come and go as evbuffer chains; glibc
	 * would give the heap top back to the kernel after each (brk three
	 * times a request).  Keep a few MB instead.
	 */
	mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	mallopt(M_TOP_PAD, 1024 * 1024);
	TAILQ_INIT(&w->clients);
	w->client_gone = client_gone;
	w->cache = worker_cache;
	if (shm != NULL && (uint32_t)slot < shm_nlanes(shm))
		w->lane = shm_lane(shm, (uint32_t)slot);
	if (w->lane != NULL)
		ring_lane_prefault(w->lane);
	if (shm != NULL)
		w->keystate = shm_region(shm, "keys", NULL);
	if (shm != NULL)
		w->users = shm_region(shm, "users", NULL);
	if (shm != NULL)
		w->cnt = shm_region(shm, "counters", NULL);
	if (shm != NULL)
		w->gtokens = shm_region(shm, "gtokens", NULL);
	if (shm != NULL)
		ift_setup(w, shm_region(shm, "inflight", NULL));
	if ((w->cw = cnt_worker(w->cnt, (uint32_t)slot)) == NULL)
		w->cw = &scratch;
	cnt_worker_begin(w->cw);	/* our gauges; the totals go on */
	w->json.max_tokens = 1 << 20;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);	/* the master turns ^C into SIGTERM */
	signal(SIGHUP, SIG_IGN);

	if ((w->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (w->dns == NULL) {
		/* no resolv.conf: names from /etc/hosts still resolve */
		w->dns = evdns_base_new(w->base,
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (w->dns == NULL)
			fatalx("evdns_base_new failed");
		evdns_base_load_hosts(w->dns, NULL);
	}
	reqid_init();
	if (up_init(w) == -1)
		fatalx("cannot set up upstream pools (TLS context)");
	w->route_rr = calloc((size_t)cfg->nroutes + 1, sizeof(*w->route_rr));
	if (w->route_rr == NULL)
		fatal("calloc");

	if (accept_start(w, listen_fds, nfds, shm != NULL ?
	    shm_region(shm, "spread", NULL) : NULL, &pipeline_handler) == -1)
		fatalx("cannot set up the listening sockets' events");
	if (admin_fd != -1 && admin_init(w, shm, admin_fd) == -1)
		log_warnx("cannot serve admin_listen in this worker");
	w->ev_term = evsignal_new(w->base, SIGTERM, sigterm_cb, w);
	w->ev_quit = evsignal_new(w->base, SIGQUIT, sigquit_cb, w);
	w->ev_usr1 = evsignal_new(w->base, SIGUSR1, sigusr1_cb, w);
	if (w->ev_term == NULL || w->ev_quit == NULL || w->ev_usr1 == NULL ||
	    evsignal_add(w->ev_term, NULL) == -1 ||
	    evsignal_add(w->ev_quit, NULL) == -1 ||
	    evsignal_add(w->ev_usr1, NULL) == -1)
		fatalx("cannot install signal events");
	{
		sigset_t none;

		/* the master forked us with its signals blocked */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}

	log_info("worker slot %d serving", slot);
	event_base_dispatch(w->base);
	log_info("exiting (all connections closed)");
	up_free(w);
	exit(0);
}
