/*
 * sigv4.c - AWS Signature Version 4, as the AWS General Reference
 * ("Create a signed AWS API request") describes it:
 *
 *	canonical = method \n uri \n query \n (name:value \n)* \n
 *		    names;joined \n hex(sha256(payload))
 *	to_sign   = "AWS4-HMAC-SHA256" \n amz_date \n scope \n
 *		    hex(sha256(canonical))
 *	key	  = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region),
 *		    service), "aws4_request")
 *	signature = hex(HMAC(key, to_sign))
 *
 * The key depends on the day, not the request, so it is kept in a
 * struct sigv4_key and derived again only when the day (or region or
 * service) changes: a request then costs two SHA-256 (payload and
 * canonical request) and one HMAC, all through one EVP_MD fetched once
 * (HMAC is RFC 2104 over it: OpenSSL 3's HMAC() fetches per call).  The payload's hash is the caller's
 * (it has the body; a 100 KB body is hashed once, here never).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "worker/sigv4.h"

static void
to_hex(const unsigned char *p, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t	 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * SHA-256 through one digest context and one fetched EVP_MD, both kept
 * for the process: EVP_Digest and HMAC() fetch the algorithm on every
 * call, which was most of a signed 1 KB request's instructions.
 */
static EVP_MD_CTX *
sha256_begin(void)
{
	static EVP_MD		*md;
	static EVP_MD_CTX	*ctx;

	if (md == NULL && (md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		return NULL;
	if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
		return NULL;
	return EVP_DigestInit_ex(ctx, md, NULL) == 1 ? ctx : NULL;
}

/* SHA-256 of A (AN bytes) then B (BN bytes) into OUT. */
static void
sha256_2(const void *a, size_t an, const void *b, size_t bn,
    unsigned char out[32])
{
	EVP_MD_CTX	*ctx = sha256_begin();
	unsigned int	 len = 32;

	if (ctx == NULL || EVP_DigestUpdate(ctx, a, an) != 1 ||
	    EVP_DigestUpdate(ctx, b, bn) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &len) != 1)
		memset(out, 0, 32);	/* no signature AWS accepts */
}

/* HMAC-SHA256 (RFC 2104) of N bytes at S under KEY (at most 64 bytes). */
static void
hmac(const unsigned char *key, size_t klen, const char *s, size_t n,
    unsigned char out[32])
{
	unsigned char	 ipad[64], opad[64], inner[32];
	size_t		 i;

	memset(ipad, 0x36, sizeof(ipad));
	memset(opad, 0x5c, sizeof(opad));
	for (i = 0; i < klen && i < 64; i++) {
		ipad[i] ^= key[i];
		opad[i] ^= key[i];
	}
	sha256_2(ipad, 64, s, n, inner);
	sha256_2(opad, 64, inner, 32, out);
	explicit_bzero(ipad, sizeof(ipad));
	explicit_bzero(opad, sizeof(opad));
}

void
sigv4_sha256_hex(const void *p, size_t n, char out[SIGV4_HEX + 1])
{
	unsigned char	 md[32];

	sha256_2(p, n, "", 0, md);
	to_hex(md, 32, out);
}

/* Append N bytes at S to OUT at *POS; -1 if CAP would be passed. */
static int
put(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
	if (cap - *pos <= n)
		return -1;
	memcpy(out + *pos, s, n);
	*pos += n;
	out[*pos] = '\0';
	return 0;
}

#define PUTS(s)	put(out, cap, &pos, (s), strlen(s))

long
sigv4_canonical(const struct sigv4_req *rq, char *out, size_t cap)
{
	size_t	 pos = 0;
	int	 i;

	if (cap == 0)
		return -1;
	if (PUTS(rq->method) || PUTS("\n") || PUTS(rq->uri) || PUTS("\n") ||
	    PUTS(rq->query) || PUTS("\n"))
		return -1;
	for (i = 0; i < rq->nh; i++)
		if (PUTS(rq->h[i].name) || PUTS(":") || PUTS(rq->h[i].value) ||
		    PUTS("\n"))
			return -1;
	if (PUTS("\n"))
		return -1;
	for (i = 0; i < rq->nh; i++)
		if ((i > 0 && PUTS(";")) || PUTS(rq->h[i].name))
			return -1;
	if (PUTS("\n") || PUTS(rq->payload_hash))
		return -1;
	return (long)pos;
}

long
sigv4_string_to_sign(const struct sigv4_req *rq, const char *canon,
    size_t len, char *out, size_t cap)
{
	char	 h[SIGV4_HEX + 1];
	int	 n;

	sigv4_sha256_hex(canon, len, h);
	n = snprintf(out, cap, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request"
	    "\n%s", rq->amz_date, rq->amz_date, rq->region, rq->service, h);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

const unsigned char *
sigv4_key_for(struct sigv4_key *k, const struct sigv4_req *rq)
{
	unsigned char	 a[32], b[32];
	char		 seed[256];
	int		 n;

	if (strncmp(k->date, rq->amz_date, 8) == 0 && k->date[0] != '\0' &&
	    strcmp(k->region, rq->region) == 0 &&
	    strcmp(k->service, rq->service) == 0)
		return k->k;
	n = snprintf(seed, sizeof(seed), "AWS4%s", rq->secret);
	if (n < 0 || (size_t)n >= sizeof(seed))
		n = 0;	/* no secret that long exists; the signature fails */
	if (n > 64) {	/* a longer HMAC key is its hash (RFC 2104) */
		sha256_2(seed, (size_t)n, "", 0, b);
		hmac(b, 32, rq->amz_date, 8, a);
	} else
		hmac((unsigned char *)seed, (size_t)n, rq->amz_date, 8, a);
	hmac(a, 32, rq->region, strlen(rq->region), b);
	hmac(b, 32, rq->service, strlen(rq->service), a);
	hmac(a, 32, "aws4_request", 12, k->k);
	explicit_bzero(seed, sizeof(seed));
	explicit_bzero(a, sizeof(a));
	explicit_bzero(b, sizeof(b));
	memcpy(k->date, rq->amz_date, 8);
	k->date[8] = '\0';
	snprintf(k->region, sizeof(k->region), "%s", rq->region);
	snprintf(k->service, sizeof(k->service), "%s", rq->service);
	k->derivations++;
	return k->k;
}

void
sigv4_key_forget(struct sigv4_key *k)
{
	unsigned long	 d = k->derivations;

	explicit_bzero(k, sizeof(*k));
	k->derivations = d;
}

long
sigv4_authorization(struct sigv4_key *k, const struct sigv4_req *rq,
    char *sig, char *out, size_t cap)
{
	char			 canon[SIGV4_CANON_MAX], sts[256];
	char			 hex[SIGV4_HEX + 1], names[512];
	unsigned char		 mac[32];
	const unsigned char	*key;
	long			 clen, slen;
	size_t			 pos = 0;
	int			 i, n;

	if ((clen = sigv4_canonical(rq, canon, sizeof(canon))) < 0 ||
	    (slen = sigv4_string_to_sign(rq, canon, (size_t)clen, sts,
	    sizeof(sts))) < 0)
		return -1;
	key = sigv4_key_for(k, rq);
	hmac(key, 32, sts, (size_t)slen, mac);
	to_hex(mac, 32, hex);
	if (sig != NULL)
		memcpy(sig, hex, SIGV4_HEX + 1);
	names[0] = '\0';
	for (i = 0; i < rq->nh; i++)
		if ((i > 0 && put(names, sizeof(names), &pos, ";", 1)) ||
		    put(names, sizeof(names), &pos, rq->h[i].name,
		    strlen(rq->h[i].name)))
			return -1;
	n = snprintf(out, cap, "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/"
	    "aws4_request, SignedHeaders=%s, Signature=%s", rq->access_key,
	    rq->amz_date, rq->region, rq->service, names, hex);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

size_t
sigv4_uri_encode(const char *s, size_t n, int keep_slash, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t	 i, o = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || (c == '/' && keep_slash))
			out[o++] = (char)c;
		else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

void
sigv4_amz_date(time_t t, char out[SIGV4_DATE_LEN + 1])
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(out, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}
