/*
 * gtoken.c - OAuth2 tokens for service accounts (RFC 7523, Google's
 * "Using OAuth 2.0 for Server to Server Applications"):
 *
 *	assertion = b64url({"alg":"RS256","typ":"JWT"}) "." b64url(claims)
 *		    "." b64url(RS256 signature of the first two parts)
 *	claims    = iss: client_email, scope: cloud-platform,
 *		    aud: token_uri, iat: now, exp: now + 3600
 *	POST token_uri  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
 *			&assertion=...   ->  {"access_token", "expires_in"}
 *
 * One refresh at a time, in a child the master forks, so the master's
 * loop (signals, respawns) never waits on the network; the child writes
 * the token into the shared segment and exits 0, or logs why and exits
 * 1.  A token is refreshed when half its life is gone or five minutes
 * are left, whichever comes first, so a failing token endpoint has that
 * long to recover before any request notices.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "common/base64.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "master/gtoken.h"
#include "master/proctitle.h"

#define SCOPE		"https://www.googleapis.com/auth/cloud-platform"
#define LIFETIME_S	3600
#define FETCH_TIMEOUT_S	10
#define BACKOFF_MIN_MS	1000
#define BACKOFF_MAX_MS	60000
#define EARLY_MAX_US	(300 * 1000000LL)	/* refresh 5 min before */

static struct {
	const struct config	*cfg;
	struct gtokens_region	*r;
	int			 n;			/* vertex upstreams */
	const struct cfg_upstream *up[GTOKENS_SLOTS];
	int64_t			 due_ms[GTOKENS_SLOTS];
	int64_t			 backoff_ms[GTOKENS_SLOTS];
	pid_t			 pid;			/* the refresh child */
	int			 slot;			/* ... its slot */
} g;

void
gtoken_setup(const struct config *cfg, struct gtokens_region *r)
{
	int	 i;

	g.cfg = cfg;
	g.r = r;
	g.n = 0;
	for (i = 0; i < cfg->nupstreams && g.n < GTOKENS_SLOTS; i++)
		if (cfg->upstreams[i].protocol == PROTO_VERTEX) {
			g.up[cfg->upstreams[i].gcp_slot] = &cfg->upstreams[i];
			g.n++;
		}
	for (i = 0; i < g.n; i++) {
		g.due_ms[i] = 0;		/* now: the key may be new */
		g.backoff_ms[i] = 0;
	}
}

/* When slot I is due after a token that expires at EXP (wall us). */
static int64_t
due_after(int64_t now_ms, int64_t exp)
{
	int64_t	 left = exp - wall_us(), early = left / 2;

	if (early > EARLY_MAX_US)
		early = EARLY_MAX_US;
	left -= early;
	if (left < 1000000)
		left = 1000000;
	return now_ms + left / 1000;
}

static void	 refresh_child(int slot) __attribute__((noreturn));

void
gtoken_tick(int64_t now_ms, int64_t *next_ms, void (*child_init)(void))
{
	int	 i, pick = -1;
	pid_t	 pid;

	for (i = 0; i < g.n; i++) {
		if (g.due_ms[i] <= now_ms && pick == -1 && g.pid == 0)
			pick = i;
		else if (*next_ms == -1 || g.due_ms[i] < *next_ms)
			*next_ms = g.due_ms[i] > now_ms ? g.due_ms[i] :
			    now_ms + 100;
	}
	if (pick == -1)
		return;
	switch ((pid = fork())) {
	case -1:
		log_warn("fork token refresher");
		g.due_ms[pick] = now_ms + 1000;
		break;
	case 0:
		child_init();
		refresh_child(pick);
	default:
		g.pid = pid;
		g.slot = pick;
		/* not due again until it is reaped */
		g.due_ms[pick] = INT64_MAX;
	}
	if (*next_ms == -1 || now_ms + 100 < *next_ms)
		*next_ms = now_ms + 100;
}

int
gtoken_reaped(pid_t pid, int status)
{
	int64_t	 now_ms = now_us() / 1000, exp;
	int	 i = g.slot;

	if (pid == 0 || pid != g.pid)
		return 0;
	g.pid = 0;
	if (i >= g.n)
		return 1;		/* a reload removed it */
	exp = gtokens_expiry(g.r, i);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		g.backoff_ms[i] = 0;
		g.due_ms[i] = due_after(now_ms, exp);
		return 1;
	}
	g.backoff_ms[i] = g.backoff_ms[i] == 0 ? BACKOFF_MIN_MS :
	    g.backoff_ms[i] * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
	    g.backoff_ms[i] * 2;
	g.due_ms[i] = now_ms + g.backoff_ms[i];
	gtokens_failed(g.r, i);
	if (exp > wall_us())
		log_warnx("upstream %s: token refresh failed; again in %llds, "
		    "the current token is good for %llds more", g.up[i]->name,
		    (long long)(g.backoff_ms[i] / 1000),
		    (long long)((exp - wall_us()) / 1000000));
	else
		log_warnx("upstream %s: token refresh failed; again in %llds; "
		    "no valid token: its requests fail with 502",
		    g.up[i]->name, (long long)(g.backoff_ms[i] / 1000));
	return 1;
}

/* N bytes at P, base64url, appended to OUT at *POS; -1 if CAP is short. */
static int
put_b64(char *out, size_t cap, size_t *pos, const void *p, size_t n)
{
	if (cap - *pos < B64URL_ENCODED_LEN(n) + 2)
		return -1;
	*pos += b64url_encode(p, n, out + *pos);
	out[*pos] = '\0';
	return 0;
}

long
gtoken_jwt(const struct cfg_upstream *u, int64_t now, char *out, size_t cap)
{
	static const char hdr[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
	char		 claims[1024];
	unsigned char	 sig[1024];
	size_t		 pos = 0, siglen = sizeof(sig);
	EVP_PKEY	*key = NULL;
	EVP_MD_CTX	*md = NULL;
	BIO		*bio;
	long		 rv = -1;
	int		 n;

	n = snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"scope\":\"%s\","
	    "\"aud\":\"%s\",\"iat\":%lld,\"exp\":%lld}", u->gcp_email, SCOPE,
	    u->gcp_token_uri, (long long)now, (long long)now + LIFETIME_S);
	if (n < 0 || (size_t)n >= sizeof(claims) || cap == 0)
		return -1;
	if (put_b64(out, cap, &pos, hdr, sizeof(hdr) - 1) == -1)
		return -1;
	out[pos++] = '.';
	if (put_b64(out, cap, &pos, claims, (size_t)n) == -1)
		return -1;
	if ((bio = BIO_new_mem_buf(u->gcp_key, -1)) == NULL)
		return -1;
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (key == NULL || (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, (unsigned char *)out, pos) != 1)
		goto done;
	out[pos++] = '.';
	if (put_b64(out, cap, &pos, sig, siglen) == -1)
		goto done;
	rv = (long)pos;
 done:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	return rv;
}

/* The token endpoint's host, port, path and scheme, from its URL. */
struct endpoint_url {
	char	 host[256], port[8], path[512];
	int	 tls;
};

static int
parse_uri(const char *uri, struct endpoint_url *e)
{
	const char	*p, *slash, *colon;
	size_t		 n;

	memset(e, 0, sizeof(*e));
	if (strncmp(uri, "https://", 8) == 0) {
		e->tls = 1;
		p = uri + 8;
	} else if (strncmp(uri, "http://", 7) == 0)
		p = uri + 7;
	else
		return -1;
	slash = strchr(p, '/');
	n = slash != NULL ? (size_t)(slash - p) : strlen(p);
	colon = memchr(p, ':', n);
	if ((colon != NULL ? (size_t)(colon - p) : n) >= sizeof(e->host))
		return -1;
	snprintf(e->host, sizeof(e->host), "%.*s", (int)(colon != NULL ?
	    (size_t)(colon - p) : n), p);
	snprintf(e->port, sizeof(e->port), "%.*s", colon != NULL ?
	    (int)(n - (size_t)(colon - p) - 1) : 3, colon != NULL ?
	    colon + 1 : e->tls ? "443" : "80");
	snprintf(e->path, sizeof(e->path), "%s", slash != NULL ? slash : "/");
	return 0;
}

static int
dial(const struct endpoint_url *e)
{
	struct addrinfo	 hints, *res, *ai;
	struct timeval	 tv = { FETCH_TIMEOUT_S, 0 };
	int		 fd = -1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(e->host, e->port, &hints, &res)) != 0) {
		log_warnx("token endpoint %s: %s", e->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype, 0)) == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		log_warn("token endpoint %s:%s", e->host, e->port);
	return fd;
}

/* Write N bytes, over TLS if SSL; -1 on failure. */
static int
put_all(int fd, SSL *ssl, const char *p, size_t n)
{
	ssize_t	 k;

	while (n > 0) {
		k = ssl != NULL ? SSL_write(ssl, p, (int)n) : write(fd, p, n);
		if (k < 0 && ssl == NULL && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The whole answer (Connection: close) into BUF; its length or -1. */
static long
get_all(int fd, SSL *ssl, char *buf, size_t cap)
{
	size_t	 len = 0;
	ssize_t	 k;

	while (len < cap - 1) {
		k = ssl != NULL ? SSL_read(ssl, buf + len, (int)(cap - 1 - len)) :
		    read(fd, buf + len, cap - 1 - len);
		if (k < 0 && ssl == NULL && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	buf[len] = '\0';
	return len > 0 ? (long)len : -1;
}

/* POST BODY to the token endpoint; the answer's status, its body in
 * *JSON (inside BUF). */
static int
post_form(const struct endpoint_url *e, const char *body, char *buf,
    size_t cap, char **json)
{
	SSL_CTX	*ctx = NULL;
	SSL	*ssl = NULL;
	char	 head[1024];
	int	 fd, status = -1, n;
	char	*p;

	if ((fd = dial(e)) == -1)
		return -1;
	if (e->tls) {
		if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
		    SSL_CTX_set_default_verify_paths(ctx) != 1 ||
		    (ssl = SSL_new(ctx)) == NULL)
			goto done;
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		SSL_set_tlsext_host_name(ssl, e->host);
		SSL_set1_host(ssl, e->host);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) != 1) {
			log_warnx("token endpoint %s: TLS handshake failed",
			    e->host);
			goto done;
		}
	}
	n = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: %s\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", e->path,
	    e->host, strlen(body));
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    put_all(fd, ssl, head, (size_t)n) == -1 ||
	    put_all(fd, ssl, body, strlen(body)) == -1 ||
	    get_all(fd, ssl, buf, cap) == -1) {
		log_warnx("token endpoint %s: no answer", e->host);
		goto done;
	}
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 ||
	    (p = strstr(buf, "\r\n\r\n")) == NULL) {
		log_warnx("token endpoint %s: a malformed answer", e->host);
		status = -1;
		goto done;
	}
	*json = p + 4;
 done:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return status;
}

static void
refresh_child(int slot)
{
	const struct cfg_upstream *u = g.up[slot];
	struct endpoint_url	 e;
	struct json_doc		 doc;
	char			 jwt[4096], body[4200], buf[16384];
	char			 token[GTOKEN_MAX], *json = NULL;
	const char		*v;
	int64_t			 expires_in = 0, t0, margin;
	size_t			 n;
	int			 status, t, x;

	proctitle_set("sluice: token refresh");
	log_setrole("token refresh");
	if (gtoken_jwt(u, wall_us() / 1000000, jwt, sizeof(jwt)) < 0) {
		log_warnx("upstream %s: cannot sign the token request with "
		    "the key of %s", u->name, u->gcp_file);
		_exit(1);
	}
	snprintf(body, sizeof(body), "grant_type=urn%%3Aietf%%3Aparams%%3A"
	    "oauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s", jwt);
	if (parse_uri(u->gcp_token_uri, &e) == -1)
		_exit(1);
	t0 = wall_us();		/* its life counts from the asking */
	status = post_form(&e, body, buf, sizeof(buf), &json);
	if (status == -1)
		_exit(1);
	memset(&doc, 0, sizeof(doc));
	if (status != 200 || json_parse(&doc, json, strlen(json)) == -1 ||
	    !json_is_obj(&doc, 0) ||
	    (t = json_get(&doc, 0, "access_token")) < 0 ||
	    !json_is_str(&doc, t) || (v = json_raw(&doc, t, &n)) == NULL ||
	    n == 0 || n >= sizeof(token) ||
	    (x = json_get(&doc, 0, "expires_in")) < 0 ||
	    json_int(&doc, x, &expires_in) == -1 || expires_in <= 0) {
		log_warnx("upstream %s: token endpoint %s answered %d: %.200s",
		    u->name, e.host, status, json);
		_exit(1);
	}
	memcpy(token, v, n);
	token[n] = '\0';
	/* given up a tenth early (at most a minute): a token is never sent
	 * in the moment the endpoint's clock has it expire */
	margin = expires_in * 100000 < 60000000 ? expires_in * 100000 :
	    60000000;
	gtokens_publish(g.r, slot, token, t0 + expires_in * 1000000 - margin);
	log_info("upstream %s: new access token, good for %llds", u->name,
	    (long long)expires_in);
	explicit_bzero(token, sizeof(token));
	_exit(0);
}
