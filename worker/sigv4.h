/*
 * sigv4.h - AWS Signature Version 4 over one HTTP request (layer 0).
 *
 * Owns the algorithm only: the canonical request, the string to sign,
 * the signing key and the signature (HMAC-SHA256 and SHA-256 from
 * OpenSSL), and a cache of the signing key.  Called by the Bedrock
 * adapter (worker/bedrock.c) while it writes a request, and by the unit
 * tests with AWS's published vectors.  It never reads credentials,
 * clocks or sockets: the caller hands it every string, already in
 * canonical form (names lower case, in order, values trimmed), and owns
 * the key cache, which it resets when the credentials change.
 */
#ifndef SLUICE_SIGV4_H
#define SLUICE_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_HEX	64		/* a SHA-256 in hex, without NUL */
#define SIGV4_DATE_LEN	16		/* YYYYMMDDTHHMMSSZ */
#define SIGV4_MAX_HDRS	8
#define SIGV4_CANON_MAX	8192		/* a canonical request, at most */

/* The signing key of one day, region and service: four HMACs, done
 * once a day rather than per request. */
struct sigv4_key {
	char		 date[9];	/* YYYYMMDD; "" none yet */
	char		 region[64];
	char		 service[32];
	unsigned char	 k[32];
	unsigned long	 derivations;	/* times derived, for the tests */
};

struct sigv4_header {
	const char	*name;		/* lower case */
	const char	*value;		/* trimmed */
};

struct sigv4_req {
	const char	*method;
	const char	*uri;		/* canonical URI, as sigv4_uri_encode */
	const char	*query;		/* canonical query string; "" none */
	struct sigv4_header h[SIGV4_MAX_HDRS];	/* signed, sorted by name */
	int		 nh;
	const char	*payload_hash;	/* SIGV4_HEX hex digits */
	const char	*amz_date;	/* YYYYMMDDTHHMMSSZ */
	const char	*region;
	const char	*service;
	const char	*access_key;
	const char	*secret;
};

/* The canonical request of RQ in OUT (CAP bytes, NUL ended); its
 * length, or -1 if it does not fit. */
long	 sigv4_canonical(const struct sigv4_req *rq, char *out, size_t cap);
/* The string to sign for a canonical request of LEN bytes at CANON. */
long	 sigv4_string_to_sign(const struct sigv4_req *rq, const char *canon,
	    size_t len, char *out, size_t cap);
/* The signing key for RQ's day, region and service, from K if it holds
 * it, else derived into K. */
const unsigned char *sigv4_key_for(struct sigv4_key *k,
	    const struct sigv4_req *rq);
/* Forget K (the credentials changed). */
void	 sigv4_key_forget(struct sigv4_key *k);
/*
 * The Authorization header's value for RQ in OUT (CAP bytes, NUL
 * ended), its signature also in SIG (SIGV4_HEX + 1) if not NULL; its
 * length, or -1 if something does not fit.
 */
long	 sigv4_authorization(struct sigv4_key *k, const struct sigv4_req *rq,
	    char *sig, char *out, size_t cap);
/* SHA-256 of N bytes at P, in lower-case hex, NUL ended. */
void	 sigv4_sha256_hex(const void *p, size_t n, char out[SIGV4_HEX + 1]);
/* URI-encode N bytes of S as SigV4 wants (all but A-Z a-z 0-9 - . _ ~,
 * and '/' if KEEP_SLASH) into OUT, which holds 3 * N + 1; the length. */
size_t	 sigv4_uri_encode(const char *s, size_t n, int keep_slash, char *out);
/* T as YYYYMMDDTHHMMSSZ (UTC) in OUT (SIGV4_DATE_LEN + 1). */
void	 sigv4_amz_date(time_t t, char out[SIGV4_DATE_LEN + 1]);

#endif
