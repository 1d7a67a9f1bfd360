/*
 * handshake.h - a connection accepted on a "listen ... ssl" socket, from
 * accept to a finished TLS handshake (layer 3, beside the proxy).
 *
 * Owns the connection until its handshake is done, then hands it to the
 * client core (client_accept_tls) as a socket, its SSL and the bytes
 * read past the Finished, so the client core never sees a handshake.  A handshake that fails (a
 * timeout, a TLS version or cipher in common with nobody, a bad client
 * certificate, plain HTTP) closes the connection, is counted on /metrics
 * by reason, and never becomes a request: no usage row, no handler call.
 * Plain HTTP gets nginx's 400 "The plain HTTP request was sent to HTTPS
 * port" first.
 *
 * Called by worker.c (the accept callback).  Counts its connections in
 * w->nhandshakes, which a stopping worker waits for as it waits for its
 * clients: a connection accepted before a reload gets its request served.
 */
#ifndef SLUICE_HANDSHAKE_H
#define SLUICE_HANDSHAKE_H

#include <sys/socket.h>

#include "worker/client.h"
#include "worker/wctx.h"

struct tls_server;

void	 hs_accept(struct worker *, struct tls_server *, int fd,
	    struct sockaddr *, int salen, const struct client_handler *);

#endif
