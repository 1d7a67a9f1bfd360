/*
 * tls.h - the server side of TLS for client connections (layer 0): the
 * context every "listen ... ssl" socket shares, its session tickets, and
 * what a finished or failed handshake says.
 *
 * Owns the SSL_CTX built from ssl_certificate, ssl_certificate_key,
 * ssl_ciphers, ssl_protocols, ssl_client_ca and ssl_verify_client.  The
 * master builds it (tls_server_new) before it forks a generation of
 * workers, which inherit it: the key file may be readable by root alone,
 * and the workers run as "user".  A reload builds a new one for the new
 * generation; the old generation keeps serving with its own.  sluiced -t
 * builds one to check the files and then frees it.
 *
 * Called by the master (build, check, ticket keys), the handshake
 * (worker/handshake.c: a new SSL, a peer's identity, a failure's reason),
 * the pipeline (the identity of a connection's client certificate) and
 * admin (reason names).  Knows no connection, no client and no request;
 * never reads a socket.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "common/config.h"
#include "common/keys.h"
#include "shm/tickets.h"

struct tls_server;

/* Why a handshake failed: /metrics' reason label, in this order. */
enum tls_failure {
	TLSF_TIMEOUT = 0,	/* not done within client_header_timeout */
	TLSF_CLOSED,		/* the client went away during it */
	TLSF_HTTP,		/* plain HTTP sent to a TLS port */
	TLSF_VERSION,		/* no TLS version in common (1.2, 1.3 only) */
	TLSF_CIPHER,		/* no cipher suite or group in common */
	TLSF_CERT,		/* no client certificate, or a bad one */
	TLSF_ALPN,		/* offered protocols without http/1.1 */
	TLSF_ALERT,		/* the client refused us (e.g. unknown CA) */
	TLSF_OTHER,
	TLSF_MAX
};

/*
 * The server context for CFG, or NULL with "PATH:LINE: what" in ERR (the
 * file, and why it was refused).  TICKETS: the shared ticket keys, or
 * NULL to check the files only (sluiced -t).
 */
struct tls_server *tls_server_new(const struct config *,
	    struct tickets_region *tickets, char *err, size_t errlen);
void	 tls_server_free(struct tls_server *);
/* When the certificate expires, in seconds since the epoch. */
int64_t	 tls_server_not_after(const struct tls_server *);
/* The certificate's subject, RFC 2253, into BUF. */
void	 tls_server_subject(const struct tls_server *, char *buf, size_t);
/*
 * One line for sluiced -t and the log: 'ssl_certificate "F" (SUBJECT)
 * expires 2027-01-01 00:00:00 UTC, in 396 days' (or "expired ... ago").
 * Returns the days left, negative once expired.
 */
long	 tls_server_describe(const struct tls_server *, const struct config *,
	    time_t now, char *buf, size_t len);
/* A new SSL for an accepted connection, or NULL. */
SSL	*tls_server_ssl(struct tls_server *);

/* Master: a fresh random ticket key becomes current.  0, or -1. */
int	 tls_tickets_rotate(struct tickets_region *, int64_t wall_us);

/*
 * A handshake finished: keep the identity of a verified client
 * certificate with the connection, for tls_peer.  0, or -1 when out of
 * memory (the connection is refused).
 */
int	 tls_peer_capture(SSL *);
/* The client certificate a connection was made with, or NULL (plain
 * HTTP, or TLS without one). */
const struct key_cert_id *tls_peer(SSL *);

/* The reason an OpenSSL error code stands for. */
enum tls_failure tls_failure_of(unsigned long err);
const char *tls_failure_name(int);

#endif
