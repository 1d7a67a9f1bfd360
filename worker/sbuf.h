/*
 * sbuf.h - a client socket's bytes in and out (layer 0).
 *
 * Owns one non-blocking stream socket: its input and output evbuffers,
 * a read event and a write event, each with an idle timeout.  It does
 * what libevent 2.1's socket bufferevents do, less what they cost on a
 * request path: a read takes as many bytes as its owner asks for, into
 * the input or straight into memory its owner names (a bufferevent asks
 * ioctl(FIONREAD) and then reads at most 4096 bytes, so a 100 KB body
 * took 27 wake-ups), and
 * queued output is written at once by sbuf_flush, so the write event is
 * armed (an epoll_ctl and a wake-up) only when the socket is full.
 *
 * A TLS connection, its handshake done (worker/handshake.c), is the same
 * with an SSL in between: sbuf_tls hands it over, and reads and writes
 * become SSL_read and SSL_write on the same events, an SSL_ERROR_WANT_*
 * waiting for the readiness OpenSSL asked for.
 *
 * Called by the client connection core (worker/client.c).  It knows
 * nothing of HTTP; it calls its owner only from the loop (its events),
 * never from inside an sbuf_ call, so an owner may free it from any
 * callback.
 */
#ifndef SLUICE_SBUF_H
#define SLUICE_SBUF_H

#include <stddef.h>
#include <sys/time.h>

struct event;
struct event_base;
struct evbuffer;
struct ssl_st;

/* What the event callback is told, or-ed. */
#define SB_READING	0x01
#define SB_WRITING	0x02
#define SB_EOF		0x10
#define SB_ERROR	0x20
#define SB_TIMEOUT	0x40

struct sbuf {
	int		 fd;
	struct ssl_st	*ssl;		/* TLS: reads and writes go through it */
	int		 tls_rwant;	/* an SSL_read waits for writability */
	int		 tls_wwant;	/* an SSL_write waits for readability */
	int		 tls_dead;	/* a fatal error: no close_notify */
	struct event	*rev;
	struct event	*wev;
	struct event	*tev;		/* sbuf_trigger_read's */
	struct evbuffer	*in;
	struct evbuffer	*out;
	char		*span;		/* reads go here, not to in, if set */
	size_t		 span_left;	/* ... this many bytes more */
	struct timeval	 rtv, wtv;
	int		 rtv_on, wtv_on;	/* 0: no timeout */
	int		 reading;	/* the read event is added */
	int		 writing;	/* the write event is added */
	size_t		 wlow;		/* write_cb at or below this */
	void		(*read_cb)(void *);
	void		(*write_cb)(void *);
	void		(*event_cb)(void *, int what);
	void		*arg;
};

/* Take FD (closed by sbuf_free); 0, or -1 out of memory (FD is then
 * the caller's again, and sbuf_free a no-op). */
int	 sbuf_init(struct sbuf *, struct event_base *, int fd,
	    void (*read_cb)(void *), void (*write_cb)(void *),
	    void (*event_cb)(void *, int), void *arg);
/*
 * From here on the bytes go through SSL, whose handshake on the socket is
 * done; the sbuf frees it.  What the handshake read past its Finished
 * belongs in in, put there by the caller.
 */
void	 sbuf_tls(struct sbuf *, struct ssl_st *);
/* The SSL of a TLS connection, or NULL. */
struct ssl_st *sbuf_ssl(const struct sbuf *);
/*
 * We close: tell a TLS peer with close_notify (once, best effort, never
 * blocking), so that it can tell our close from a cut.  Nothing for a
 * plain socket.  Call it with nothing queued: it writes at once.
 */
void	 sbuf_close_notify(struct sbuf *);
/* Close the socket and free what it holds. */
void	 sbuf_free(struct sbuf *);
/* Wait for input, at most MS between reads (0: for ever), or stop. */
void	 sbuf_read_on(struct sbuf *, int ms);
void	 sbuf_read_off(struct sbuf *);
/*
 * Reads fill the LEN bytes at P, then go to in again (P NULL: at once).
 * sbuf_span_left says how many are still to come; never more than LEN
 * is read, so nothing past them (a pipelined request) lands there.
 */
void	 sbuf_read_span(struct sbuf *, char *p, size_t len);
size_t	 sbuf_span_left(const struct sbuf *);
/* Run read_cb from the loop, without a read (input already buffered). */
void	 sbuf_trigger_read(struct sbuf *);
/* The longest a queued output waits for the socket (0: for ever). */
void	 sbuf_write_timeout(struct sbuf *, int ms);
/* write_cb runs when a write leaves at most LOW bytes queued. */
void	 sbuf_write_low(struct sbuf *, size_t low);
/*
 * Write what out holds now, as far as the socket takes it; what is left,
 * or an error, goes to the write event.  Returns the bytes left.
 */
size_t	 sbuf_flush(struct sbuf *);
/* No more output: stop the write event and drop what is queued. */
void	 sbuf_write_off(struct sbuf *);

#endif
