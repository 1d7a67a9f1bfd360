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
 * again if more is waiting.  Owners are called only from these
 * events, never from an sbuf_ function, so no call can free the sbuf
 * under its caller.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "worker/sbuf.h"

#define SBUF_READ_DEFAULT	(16 * 1024)	/* a head and a small body */
#define SBUF_WRITE_MAX		(256 * 1024)	/* per syscall: fairness */

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
	if (sb->fd != -1)
		close(sb->fd);
	memset(sb, 0, sizeof(*sb));
	sb->fd = -1;
}

void
sbuf_read_on(struct sbuf *sb, int ms)
{
	ms_tv(&sb->rtv, &sb->rtv_on, ms);
	/* re-adding restarts the timeout: what the callers mean by it */
	event_add(sb->rev, sb->rtv_on ? &sb->rtv : NULL);
	sb->reading = 1;
}

void
sbuf_read_off(struct sbuf *sb)
{
	if (sb->reading)
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

/* One write(v) of what out holds; its result, errno kept. */
static int
sbuf_write_once(struct sbuf *sb)
{
	int n;

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
	n = sbuf_write_once(sb);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
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

static void
sbuf_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct sbuf		*sb = arg;
	struct evbuffer_iovec	 v;
	ssize_t			 n;

	if (what & EV_TIMEOUT) {
		sbuf_read_off(sb);
		sb->event_cb(sb->arg, SB_READING | SB_TIMEOUT);
		return;
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
	sb->read_cb(sb->arg);
}

static void
sbuf_on_trigger(evutil_socket_t fd, short what, void *arg)
{
	struct sbuf *sb = arg;

	sb->read_cb(sb->arg);
}
