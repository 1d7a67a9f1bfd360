/*
 * accept.c - this worker's side of the shared listening sockets.
 *
 * Not libevent's evconnlistener: it accepts until EAGAIN, so the one
 * worker awake when a burst of connections arrives takes all of them,
 * and keep-alive clients stay where they landed (four workers and fifty
 * clients left one worker with half the work).  Here each accept first
 * asks whether the connection is this worker's turn (shm/spread.c says
 * how the turn goes round); if not, the worker takes its events off the
 * sockets, so that a connection queued for another worker does not wake
 * it in a loop, and waits for a kick on its eventfd, which whoever
 * changes the picture next (an accept, a close, a worker starting or
 * stopping) sends.  At most ACCEPT_BURST connections per wake-up, so
 * that the requests already here are not kept waiting by a flood.
 *
 * The queue belongs to the socket, not to a worker: a worker that stops
 * (graceful stop, the old generation of a reload) closes its copies, and
 * what is queued stays for the workers still listening, or the next
 * generation, which the master starts before it stops the old one.
 */
#include <sys/socket.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "common/clock.h"
#include "common/log.h"
#include "shm/spread.h"
#include "worker/accept.h"
#include "worker/client.h"
#include "worker/handshake.h"
#include "worker/wctx.h"

#define ACCEPT_BURST		16	/* connections per wake-up, at most */
#define ACCEPT_PAUSE_MS		500	/* out of descriptors, as nginx */
#define ACCEPT_WARN_EVERY_US	(5LL * 1000000)
#define ACCEPT_POLL_MS		5	/* a turn without an eventfd */

enum acc_state {
	ACC_OFF = 0,		/* not started, or stopped for good */
	ACC_ON,			/* events on the sockets */
	ACC_WAITING,		/* not our turn: waiting for a kick */
	ACC_PAUSED,		/* EMFILE: until ev_resume */
};

static struct {
	struct worker		*w;
	struct spread_region	*sp;
	const struct client_handler *h;
	struct event		*ev[CFG_MAX_LISTEN];
	int			 n;
	enum acc_state		 state;
	struct event		*ev_kick;	/* our eventfd, or a timer */
	int			 kick_timer;	/* ev_kick is the timer */
	struct event		*ev_resume;
} acc;

static void	 acc_ready_cb(evutil_socket_t, short, void *);
static void	 acc_kick_cb(evutil_socket_t, short, void *);
static void	 acc_resume_cb(evutil_socket_t, short, void *);

static void
acc_arm(void)
{
	int	 i;

	for (i = 0; i < acc.n; i++)
		event_add(acc.ev[i], NULL);
	acc.state = ACC_ON;
}

static void
acc_disarm(void)
{
	int	 i;

	for (i = 0; i < acc.n; i++)
		event_del(acc.ev[i]);
}

static void
acc_poll_later(void)
{
	struct timeval	 tv = { 0, ACCEPT_POLL_MS * 1000 };

	if (acc.kick_timer)
		evtimer_add(acc.ev_kick, &tv);
}

/* Not our turn: off the sockets until a kick, unless it came meanwhile. */
static void
acc_wait_turn(void)
{
	acc_disarm();
	if (spread_wait(acc.sp, (uint32_t)acc.w->slot)) {
		acc_arm();
		return;
	}
	acc.state = ACC_WAITING;
	acc_poll_later();
}

static void
acc_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	spread_kick_drain(acc.sp, (uint32_t)acc.w->slot);
	if (acc.state != ACC_WAITING)
		return;
	if (spread_wait(acc.sp, (uint32_t)acc.w->slot))
		acc_arm();
	else
		acc_poll_later();
}

/*
 * EMFILE or ENFILE leave the connection in the backlog, so a socket that
 * stays armed is woken for it again at once: 100 % CPU and a log line per
 * wake-up.  Pause instead; the connections wait in the backlog until a
 * descriptor is free.  One warning per interval.
 */
static void
acc_pause(int err)
{
	static int64_t	 last_warn_us;
	static unsigned	 quiet;
	struct timeval	 tv = { 0, ACCEPT_PAUSE_MS * 1000 };
	int64_t		 now = now_us();

	if (now - last_warn_us >= ACCEPT_WARN_EVERY_US) {
		log_warnx("accept: %s: not accepting for %d ms (%u more "
		    "pauses since the last warning); raise "
		    "worker_rlimit_nofile or lower max_connections",
		    strerror(err), ACCEPT_PAUSE_MS, quiet);
		last_warn_us = now;
		quiet = 0;
	} else
		quiet++;
	acc_disarm();
	acc.state = ACC_PAUSED;
	if (acc.ev_resume == NULL)
		acc.ev_resume = evtimer_new(acc.w->base, acc_resume_cb, NULL);
	if (acc.ev_resume != NULL)
		evtimer_add(acc.ev_resume, &tv);
}

static void
acc_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	if (acc.state == ACC_PAUSED)
		acc_arm();
}

/* Whether the listening socket FD is one of the ssl listens. */
static int
acc_tls(int fd)
{
	int i;

	if (acc.w->tls == NULL)
		return 0;
	/* the sockets come in the order of the config's listen lines */
	for (i = 0; i < acc.n; i++)
		if (event_get_fd(acc.ev[i]) == fd)
			return acc.w->cfg->listen[i].ssl;
	return 0;
}

static void
acc_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker		*w = acc.w;
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	int			 k, cfd;

	for (k = 0; k < ACCEPT_BURST && acc.state == ACC_ON; k++) {
		if (acc.sp != NULL && !spread_turn(acc.sp, (uint32_t)w->slot)) {
			acc_wait_turn();
			return;
		}
		len = sizeof(ss);
		cfd = accept4(fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd == -1) {
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return;		/* another worker took it */
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				acc_pause(errno);
				return;
			default:
				log_warn("accept");
				return;
			}
		}
		/* a "listen ... ssl" socket: the handshake first */
		if (acc_tls(fd))
			hs_accept(w, w->tls, cfd, (struct sockaddr *)&ss,
			    (int)len, acc.h);
		else
			client_accept(w, cfd, (struct sockaddr *)&ss, acc.h);
		if (acc.sp != NULL)
			spread_set(acc.sp, (uint32_t)w->slot, 1, w->nclients,
			    now_us());
	}
}

int
accept_start(struct worker *w, const int *fds, int nfds,
    struct spread_region *sp, const struct client_handler *h)
{
	int	 i, kfd;

	acc.w = w;
	acc.h = h;
	acc.sp = sp != NULL && (uint32_t)w->slot < sp->nslots ? sp : NULL;
	for (i = 0; i < nfds && i < CFG_MAX_LISTEN; i++) {
		/* the socket is shared: this is what evconnlistener did */
		if (evutil_make_socket_nonblocking(fds[i]) == -1 ||
		    (acc.ev[i] = event_new(w->base, fds[i], EV_READ |
		    EV_PERSIST, acc_ready_cb, NULL)) == NULL)
			return -1;
		acc.n++;
	}
	if (acc.sp != NULL) {
		kfd = spread_kick_fd(acc.sp, (uint32_t)w->slot);
		if (kfd != -1)
			acc.ev_kick = event_new(w->base, kfd, EV_READ |
			    EV_PERSIST, acc_kick_cb, NULL);
		else {
			acc.ev_kick = evtimer_new(w->base, acc_kick_cb, NULL);
			acc.kick_timer = 1;
		}
		if (acc.ev_kick == NULL ||
		    (!acc.kick_timer && event_add(acc.ev_kick, NULL) == -1))
			return -1;
		/* a kick from before we came is stale: start afresh */
		spread_kick_drain(acc.sp, (uint32_t)w->slot);
		spread_set(acc.sp, (uint32_t)w->slot, 1, w->nclients, 0);
	}
	acc_arm();
	return 0;
}

void
accept_stop(struct worker *w)
{
	int	 i;

	if (acc.state == ACC_OFF)
		return;
	acc.state = ACC_OFF;
	if (acc.ev_resume != NULL)
		evtimer_del(acc.ev_resume);
	if (acc.ev_kick != NULL)
		event_del(acc.ev_kick);
	for (i = 0; i < acc.n; i++) {
		int fd = event_get_fd(acc.ev[i]);

		event_free(acc.ev[i]);
		acc.ev[i] = NULL;
		close(fd);
	}
	acc.n = 0;
	/* no longer counted: whoever waits may be next */
	if (acc.sp != NULL)
		spread_set(acc.sp, (uint32_t)w->slot, 0, w->nclients, 0);
}

void
accept_conns_changed(struct worker *w)
{
	if (acc.sp == NULL || acc.state == ACC_OFF)
		return;
	spread_set(acc.sp, (uint32_t)w->slot, 1, w->nclients, 0);
	/* a close of our own may have made it our turn */
	if (acc.state == ACC_WAITING && spread_wait(acc.sp, (uint32_t)w->slot))
		acc_arm();
}
