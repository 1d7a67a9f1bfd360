/*
 * client.h - the client connection core (layer 2).
 *
 * Owns a client connection and the one request on it at a time: accept,
 * head framing and parsing, reading a body for the handler, writing the
 * answers sluice makes itself, keep-alive and lingering close, and the
 * one place a request ends, client_finalize (static), which runs the
 * handler's finish hook exactly once and then resets the request.
 *
 * What it never does: decide anything about a request's meaning (routes,
 * keys, models, upstreams).  That is the handler's (the pipeline, layer
 * 3), which it reaches only through the hooks the handler installed:
 * struct client_handler for every request on a connection, and the
 * drained/abort hooks an exchange installs for its duration (as nginx's
 * upstream sets r->write_event_handler and a cleanup on the request).
 *
 * A request's memory: its head copy and its body evbuffer belong to the
 * connection and are reused by the next request.  A Content-Length body
 * is read into one allocation of its size, which the body evbuffer then
 * references, so it is contiguous without a copy.  The body is drained
 * (and that allocation freed) in client_finalize, after the handler's
 * finish hook: whoever still references it (an upstream connection's
 * output) must have let go by then.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <stdint.h>

#include "common/event.h"
#include "worker/endpoint.h"
#include "worker/http.h"
#include "worker/sbuf.h"
#include "worker/wctx.h"

struct evbuffer;
struct client;
struct ssl_st;
struct inflight_entry;

enum client_state {
	CL_IDLE = 0,		/* between requests: no byte of one yet */
	CL_READ_HEAD,		/* part of a request head is here */
	CL_READ_BODY,		/* reading the body for the handler */
	CL_HANDLING,		/* the handler has the request (proxying) */
	CL_WRITING,		/* answered and metered: flush, then the next */
	CL_CLOSING,		/* lingering close after the last answer */
};

/* What every request on a connection is handed to.  Installed at accept. */
struct client_handler {
	/* A connection opened: the handler's state for it (NULL: refuse). */
	void	*(*attach)(struct client *);
	void	 (*detach)(void *);
	/* A request head was parsed: answer, or read the body. */
	void	 (*head)(struct client *);
	/* The request ends, however it ends: build and push its event. */
	void	 (*finish)(struct client *);
};

/* One request: zeroed when it ends (client_finalize), nowhere else. */
struct request {
	int64_t		 t_start_us;	/* monotonic, its first byte; 0 = none */
	const struct endpoint *ep;	/* classified once, at the head */
	int		 keepalive;	/* the connection outlives it */
	int		 body_read;	/* its body was read to the end */
	int		 body_timed;	/* client_body_timeout is armed */
	char		*body_mem;	/* a Content-Length body as it comes */
	size_t		 body_cap;
	size_t		 body_have;
	size_t		 body_span;	/* asked of the socket straight in */
	struct chunked	 body_ck;
	int		 retry_after_s;	/* > 0: an error sends Retry-After */
	void		(*body_done)(struct client *);
	/* installed by the exchange under way, cleared when it ends */
	void		(*on_drained)(void *);
	void		(*on_abort)(void *);
	void		*hook_arg;
	char		 reqid[40];	/* x-request-id, as sent both ways */
	/* filled as the request goes, bytes_out included: the connection's
	 * in-flight entry (shm/inflight.h), so a dying worker leaves it */
	struct usage_event *ev;
	struct http_head hd;		/* last: see client_finalize */
};

struct client {
	TAILQ_ENTRY(client) entry;
	struct worker	*w;
	struct sbuf	 sb;		/* the socket, its buffers and events */
	enum client_state state;
	char		 addr[EV_ADDR_MAX];
	int		 nrequests;
	int		 keep;		/* after this answer: next request */
	int		 read_paused;	/* input full while a request runs */
	char		*head;		/* the request head, copied out */
	size_t		 head_cap;
	size_t		 head_scanned;	/* input searched for CRLFCRLF */
	struct evbuffer	*body;		/* the current request's body */
	const struct client_handler *h;
	void		*hdata;		/* the handler's, from attach */
	struct inflight_entry *ife;	/* its in-flight entry, or NULL */
	struct usage_event *ev_own;	/* the event without one, allocated
					   only then (2 KB a connection) */
	struct request	 r;
};

void	 client_accept(struct worker *, int fd, struct sockaddr *,
	    const struct client_handler *);
/* A peer's address as usage rows and logs show it. */
void	 client_addr_str(const struct sockaddr *, char *buf, size_t len);
/* The same as client_accept for a TLS connection, its handshake done
 * (worker/handshake.c): the client owns FD and SSL from here, even on
 * failure, and serves EARLY (what the handshake read past its Finished,
 * moved out) first. */
void	 client_accept_tls(struct worker *, int fd, struct ssl_st *,
	    struct evbuffer *early, struct sockaddr *,
	    const struct client_handler *);
/* Read the request body into c->body, then call DONE (411 and 413 are
 * answered here). */
void	 client_read_body(struct client *, void (*done)(struct client *));
/* The handler takes the request over: no client timeout while it runs. */
void	 client_handle(struct client *);
/* Hooks for the exchange under way: DRAINED when the output fell below
 * its low mark, ABORT when the connection failed. */
void	 client_set_hooks(struct client *, void (*drained)(void *),
	    void (*abort)(void *), void *arg);
/* Where the handler writes the answer it relays. */
struct evbuffer *client_output(struct client *);
/* Write what the output holds now, as far as the socket takes it (the
 * rest is written as it drains); the bytes still queued. */
size_t	 client_flush(struct client *);
/* The whole answer is queued: the request ends once it is written. */
void	 client_answered(struct client *);
/* Answer with an error of sluice's own, in the caller's shape; CODE is
 * also the row's error class.  The request ends. */
void	 client_error(struct client *, int status, const char *type,
	    const char *code, const char *fmt, ...)
	    __attribute__((format(printf, 5, 6)));
/* Answer with a local JSON body (moved out of BODY).  The request ends. */
void	 client_reply_json(struct client *, int status, struct evbuffer *body);
/* A graceful stop: close an idle connection, else close after this
 * request. */
void	 client_stop(struct client *);
/* A cut (fast stop, shutdown_timeout): meter the request under way as
 * ended by WHY.  The process exits after; nothing is freed. */
void	 client_cut(struct client *, const char *why);

#endif
