/*
 * tls.c - the server TLS context for client connections.
 *
 * Why it is built in the master: the private key is read once, as root if
 * need be, before the workers drop their privileges; they inherit the
 * context through fork() and never open the key file.  A failure names
 * the file and OpenSSL's reason ("PATH:LINE: ssl_certificate_key "x": bad
 * decrypt"), so that sluiced -t and a refused reload say what to fix.
 *
 * Sessions resume by ticket only, never from a per-process cache: the
 * ticket keys are in shared memory (shm/tickets.h), so a ticket any
 * worker issued opens on every worker, of this generation or the next.
 * The master rotates them every ssl_session_timeout; a ticket under the
 * previous key is still accepted and renewed.  The session id context is
 * a hash of the client verification settings, so a session verified
 * under one ssl_client_ca never resumes under another after a reload.
 *
 * Only TLS 1.2 and 1.3; no renegotiation, no compression; ALPN offers
 * http/1.1 and refuses a client that offers only other protocols (h2),
 * as nginx does since 1.21.4.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>


#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "worker/tls.h"

struct tls_server {
	SSL_CTX			*ctx;
	struct tickets_region	*tickets;
	int64_t			 not_after;
};

/* Where a connection keeps its client certificate's identity. */
static int	 peer_idx = -1;

static const char *const failure_names[TLSF_MAX] = {
	"timeout", "closed", "http_request", "protocol_version",
	"no_shared_cipher", "bad_certificate", "alpn", "client_alert",
	"other",
};

const char *
tls_failure_name(int f)
{
	return f >= 0 && f < TLSF_MAX ? failure_names[f] : "other";
}

/* OpenSSL's reason for the first error queued (the cause: the later ones
 * say where it surfaced, "PEM lib"), and the queue emptied. */
static const char *
ssl_reason(void)
{
	unsigned long	 e = ERR_peek_error();
	const char	*r = e != 0 ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r != NULL ? r : "unknown error";
}

/* An encrypted key would have OpenSSL prompt on the terminal: refuse. */
static int
no_passphrase(char *buf, int size, int rw, void *u)
{
	return -1;
}

static void
peer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	free(ptr);
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in,
	    inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * RFC 5077 tickets under the shared keys: AES-256-CBC and HMAC-SHA256,
 * as OpenSSL's own.  Returns 1 (issued, or decrypted under the current
 * key), 2 (decrypted under the previous one: issue a new ticket), 0 (no
 * such key: a full handshake), -1 (error).
 */
static int
ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_server	*ts = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct ticket_key	 k;
	OSSL_PARAM		 params[2];
	int			 rc;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (enc) {
		if (tickets_current(ts->tickets, &k) == -1)
			return 0;	/* no key yet: no ticket */
		memcpy(name, k.name, TICKET_NAME_LEN);
		rc = RAND_bytes(iv, EVP_MAX_IV_LENGTH) == 1 &&
		    EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes,
		    iv) == 1 && EVP_MAC_init(hctx, k.hmac, sizeof(k.hmac),
		    params) == 1 ? 1 : -1;
	} else {
		if ((rc = tickets_find(ts->tickets, name, &k)) == 0)
			return 0;
		if (EVP_MAC_init(hctx, k.hmac, sizeof(k.hmac), params) != 1 ||
		    EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes,
		    iv) != 1)
			rc = -1;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
}

int
tls_tickets_rotate(struct tickets_region *t, int64_t wall_us)
{
	struct ticket_key k;

	if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1) {
		ERR_clear_error();
		return -1;
	}
	tickets_publish(t, &k, wall_us);
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
}

/*
 * The session id context: a session verified under one client CA and
 * verification mode must not resume under others, so hash them (the CA
 * file's bytes and the mode) into it.  0, or -1 with ERR filled.
 */
static int
set_sid_ctx(SSL_CTX *ctx, const struct config *cfg, char *err, size_t errlen)
{
	unsigned char	 md[EVP_MAX_MD_SIZE], buf[4096];
	unsigned int	 mdlen = 0;
	EVP_MD_CTX	*h;
	BIO		*b = NULL;
	int		 n, ok;
	char		 mode = (char)('0' + cfg->ssl_verify_client);

	if ((h = EVP_MD_CTX_new()) == NULL)
		goto nomem;
	ok = EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(h, "sluice", 6) == 1 &&
	    EVP_DigestUpdate(h, &mode, 1) == 1;
	if (ok && cfg->ssl_verify_client != CFG_VERIFY_OFF) {
		if ((b = BIO_new_file(cfg->ssl_client_ca, "rb")) == NULL) {
			snprintf(err, errlen, "%s:%d: ssl_client_ca \"%s\": %s",
			    cfg->path, cfg->ssl_client_ca_line,
			    cfg->ssl_client_ca, ssl_reason());
			EVP_MD_CTX_free(h);
			return -1;
		}
		while (ok && (n = BIO_read(b, buf, sizeof(buf))) > 0)
			ok = EVP_DigestUpdate(h, buf, (size_t)n) == 1;
		BIO_free(b);
	}
	ok = ok && EVP_DigestFinal_ex(h, md, &mdlen) == 1 &&
	    SSL_CTX_set_session_id_context(ctx, md,
	    mdlen > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH : mdlen)
	    == 1;
	EVP_MD_CTX_free(h);
	if (ok)
		return 0;
 nomem:
	snprintf(err, errlen, "%s: TLS session context: %s", cfg->path,
	    ssl_reason());
	return -1;
}

/* The certificate chain and its key, which must match. */
static int
load_pair(SSL_CTX *ctx, const struct config *cfg, char *err, size_t errlen)
{
	EVP_PKEY	*key;
	X509		*cert;
	BIO		*b;

	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->ssl_certificate) !=
	    1) {
		snprintf(err, errlen, "%s:%d: ssl_certificate \"%s\": %s",
		    cfg->path, cfg->ssl_certificate_line, cfg->ssl_certificate,
		    ssl_reason());
		return -1;
	}
	if ((b = BIO_new_file(cfg->ssl_certificate_key, "rb")) == NULL) {
		snprintf(err, errlen, "%s:%d: ssl_certificate_key \"%s\": %s",
		    cfg->path, cfg->ssl_certificate_key_line,
		    cfg->ssl_certificate_key, ssl_reason());
		return -1;
	}
	key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (key == NULL) {
		snprintf(err, errlen, "%s:%d: ssl_certificate_key \"%s\": %s "
		    "(a PEM private key without a passphrase is needed)",
		    cfg->path, cfg->ssl_certificate_key_line,
		    cfg->ssl_certificate_key, ssl_reason());
		return -1;
	}
	cert = SSL_CTX_get0_certificate(ctx);
	if (cert == NULL || X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		EVP_PKEY_free(key);
		snprintf(err, errlen, "%s:%d: ssl_certificate_key \"%s\" does "
		    "not match ssl_certificate \"%s\"", cfg->path,
		    cfg->ssl_certificate_key_line, cfg->ssl_certificate_key,
		    cfg->ssl_certificate);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		EVP_PKEY_free(key);
		snprintf(err, errlen, "%s:%d: ssl_certificate_key \"%s\": %s",
		    cfg->path, cfg->ssl_certificate_key_line,
		    cfg->ssl_certificate_key, ssl_reason());
		return -1;
	}
	EVP_PKEY_free(key);
	return 0;
}

/* ssl_client_ca and ssl_verify_client. */
static int
load_client_ca(SSL_CTX *ctx, const struct config *cfg, char *err,
    size_t errlen)
{
	STACK_OF(X509_NAME) *names;
	int mode = SSL_VERIFY_PEER;

	if (cfg->ssl_verify_client == CFG_VERIFY_OFF)
		return 0;
	if (SSL_CTX_load_verify_locations(ctx, cfg->ssl_client_ca, NULL) != 1 ||
	    (names = SSL_load_client_CA_file(cfg->ssl_client_ca)) == NULL) {
		snprintf(err, errlen, "%s:%d: ssl_client_ca \"%s\": %s",
		    cfg->path, cfg->ssl_client_ca_line, cfg->ssl_client_ca,
		    ssl_reason());
		return -1;
	}
	/* the CertificateRequest names the CA, so a client picks its cert */
	SSL_CTX_set_client_CA_list(ctx, names);
	if (cfg->ssl_verify_client == CFG_VERIFY_ON)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	return 0;
}

static int64_t
not_after(SSL_CTX *ctx)
{
	X509		*cert = SSL_CTX_get0_certificate(ctx);
	struct tm	 tm;

	if (cert == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

struct tls_server *
tls_server_new(const struct config *cfg, struct tickets_region *tickets,
    char *err, size_t errlen)
{
	struct tls_server	*ts;
	SSL_CTX			*ctx;
	long			 opts = SSL_OP_NO_RENEGOTIATION |
				    SSL_OP_NO_COMPRESSION;

	if (cfg->ssl_certificate[0] == '\0') {
		snprintf(err, errlen, "%s: no ssl_certificate", cfg->path);
		return NULL;
	}
	if (peer_idx == -1 && (peer_idx = SSL_get_ex_new_index(0, NULL, NULL,
	    NULL, peer_free)) == -1) {
		snprintf(err, errlen, "%s: TLS: %s", cfg->path, ssl_reason());
		return NULL;
	}
	if ((ts = calloc(1, sizeof(*ts))) == NULL ||
	    (ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errlen, "%s: TLS context: %s", cfg->path,
		    ts == NULL ? "out of memory" : ssl_reason());
		free(ts);
		return NULL;
	}
	ts->ctx = ctx;
	ts->tickets = tickets;
	SSL_CTX_set_app_data(ctx, ts);
	SSL_CTX_set_min_proto_version(ctx, cfg->ssl_protocols & CFG_TLS12 ?
	    TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, cfg->ssl_protocols & CFG_TLS13 ?
	    TLS1_3_VERSION : TLS1_2_VERSION);
	/* idle keep-alive connections hold no 34 KB of buffers, as nginx */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(ctx, cfg->ssl_session_timeout_ms / 1000);
	if (cfg->ssl_session_tickets && tickets != NULL)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
	else if (!cfg->ssl_session_tickets) {
		opts |= SSL_OP_NO_TICKET;
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	SSL_CTX_set_options(ctx, opts);
	if (SSL_CTX_set_cipher_list(ctx, cfg->ssl_ciphers) != 1) {
		snprintf(err, errlen, "%s: ssl_ciphers \"%s\": %s", cfg->path,
		    cfg->ssl_ciphers, ssl_reason());
		goto fail;
	}
	if (load_pair(ctx, cfg, err, errlen) == -1 ||
	    load_client_ca(ctx, cfg, err, errlen) == -1 ||
	    set_sid_ctx(ctx, cfg, err, errlen) == -1)
		goto fail;
	ts->not_after = not_after(ctx);
	return ts;
 fail:
	tls_server_free(ts);
	return NULL;
}

void
tls_server_free(struct tls_server *ts)
{
	if (ts == NULL)
		return;
	SSL_CTX_free(ts->ctx);
	free(ts);
}

int64_t
tls_server_not_after(const struct tls_server *ts)
{
	return ts != NULL ? ts->not_after : 0;
}

/* NAME in RFC 2253 form ("CN=alice,O=Example"), as openssl x509
 * -nameopt RFC2253 prints it. */
static void
name_rfc2253(const X509_NAME *name, char *buf, size_t len)
{
	BIO	*b;
	int	 n = 0;

	buf[0] = '\0';
	if (name == NULL || len == 0 || (b = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0)
		n = BIO_read(b, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

void
tls_server_subject(const struct tls_server *ts, char *buf, size_t len)
{
	X509 *cert = ts != NULL ? SSL_CTX_get0_certificate(ts->ctx) : NULL;

	name_rfc2253(cert != NULL ? X509_get_subject_name(cert) : NULL, buf,
	    len);
}

long
tls_server_describe(const struct tls_server *ts, const struct config *cfg,
    time_t now, char *buf, size_t len)
{
	char		 subject[KEY_SUBJECT_MAX], when[64];
	time_t		 t = (time_t)ts->not_after;
	struct tm	 tm;
	long		 days;

	tls_server_subject(ts, subject, sizeof(subject));
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(when, sizeof(when), "at %lld", (long long)t);
	days = (long)((t - now) / 86400);
	if (t >= now)
		snprintf(buf, len, "ssl_certificate \"%s\" (%s) expires %s, "
		    "in %ld day%s", cfg->ssl_certificate, subject, when, days,
		    days == 1 ? "" : "s");
	else
		snprintf(buf, len, "ssl_certificate \"%s\" (%s) expired %s, "
		    "%ld day%s ago", cfg->ssl_certificate, subject, when, -days,
		    days == -1 ? "" : "s");
	return t >= now ? days : -days - 1;
}

SSL *
tls_server_ssl(struct tls_server *ts)
{
	return SSL_new(ts->ctx);
}

int
tls_peer_capture(SSL *ssl)
{
	struct key_cert_id	*id;
	X509			*cert;
	unsigned int		 n = 0;

	/* a resumed session carries the certificate it was verified with */
	if ((cert = SSL_get0_peer_certificate(ssl)) == NULL ||
	    SSL_get_verify_result(ssl) != X509_V_OK)
		return 0;
	if ((id = calloc(1, sizeof(*id))) == NULL)
		return -1;
	if (X509_digest(cert, EVP_sha256(), id->sha256, &n) != 1 || n != 32) {
		ERR_clear_error();
		free(id);
		return -1;
	}
	name_rfc2253(X509_get_subject_name(cert), id->subject,
	    sizeof(id->subject));
	if (SSL_set_ex_data(ssl, peer_idx, id) != 1) {
		free(id);
		return -1;
	}
	return 0;
}

const struct key_cert_id *
tls_peer(SSL *ssl)
{
	if (peer_idx == -1 || ssl == NULL)
		return NULL;
	return SSL_get_ex_data(ssl, peer_idx);
}

enum tls_failure
tls_failure_of(unsigned long e)
{
	int r = ERR_GET_REASON(e);

	if (ERR_GET_LIB(e) != ERR_LIB_SSL)
		return TLSF_OTHER;
	switch (r) {
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
		return TLSF_HTTP;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		return TLSF_VERSION;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
		return TLSF_CIPHER;
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
	case SSL_R_NO_CERTIFICATES_RETURNED:
		return TLSF_CERT;
	case SSL_R_NO_APPLICATION_PROTOCOL:
		return TLSF_ALPN;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return TLSF_CLOSED;
	default:
		/* an alert the client sent us: reasons 1000 + alert code */
		if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256)
			return TLSF_ALERT;
		return TLSF_OTHER;
	}
}
