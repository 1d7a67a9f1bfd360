/*
 * config.c - parse sluice.conf into one struct config.
 *
 * The grammar is nginx's and lives in confparse.c, shared with keys.conf:
 * this file holds only what sluice.conf's directives mean.  Every error
 * names the line to fix ("PATH:LINE: message", as nginx -t prints) so
 * that the master can refuse a bad file at start, or keep the old config
 * on SIGHUP.
 *
 * Routes may name upstreams defined later in the file: the names are kept
 * aside and resolved once the whole file is read.  Secrets (api keys) are
 * resolved here, at load time, from the environment or a file, so that a
 * missing key fails the start rather than the first request; they are
 * wiped before being freed.  Durations, sizes and prices are parsed by hand
 * with overflow checks; prices are integer micro-USD, never floating point.
 *
 * keys_file is loaded last, once the main file is known good, so that one
 * cfg_load() gives the master (and sluiced -t) the whole configuration or
 * the first error of either file.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/awscred.h"
#include "common/config.h"
#include "common/confparse.h"
#include "common/glob.h"
#include "common/json.h"
#include "common/keys.h"
#include "common/log.h"

#define KEY_FILE_MAX	8192
#define WORKERS_MAX	64

/* Upstream names of one route, resolved to indexes after the whole file. */
struct route_names {
	char		 name[CFG_MAX_ROUTE_UPS][CFG_NAME_MAX];
};

/* What cfg_load keeps aside while parsing (the parser's udata). */
struct cfg_state {
	struct config	*cfg;
	struct route_names *rnames;	/* parallel to cfg->routes */
};

static int	 finish(struct cp_parser *);
static int	 load_keys(struct config *, char *, size_t);
static void	 set_defaults(struct config *);
static int	 ncpu(void);
static int	 parse_port(const char *, size_t, char *, size_t);
static int	 parse_addr(const char *, struct cfg_addr *);
static const char *parse_url(struct cfg_upstream *, const char *);
static int	 read_key_file(struct cp_parser *, int, struct cfg_upstream *);

static int	 d_listen(struct cp_parser *, struct cp_directive *, void *);
static int	 d_ssl_file(struct cp_parser *, struct cp_directive *, void *);
static int	 d_ssl_protocols(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 d_ssl_verify_client(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 d_ssl_session_tickets(struct cp_parser *,
		    struct cp_directive *, void *);
static int	 cfg_resolve(const struct config *, const char *, char *,
		    size_t);
static int	 d_admin_listen(struct cp_parser *, struct cp_directive *, void *);
static int	 d_workers(struct cp_parser *, struct cp_directive *, void *);
static int	 d_log(struct cp_parser *, struct cp_directive *, void *);
static int	 d_ring_slots(struct cp_parser *, struct cp_directive *, void *);
static int	 d_metering_full(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 d_usage_retention(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 d_limits(struct cp_parser *, struct cp_directive *, void *);
static int	 d_limit_lease(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 d_upstream(struct cp_parser *, struct cp_directive *, void *);
static int	 d_route(struct cp_parser *, struct cp_directive *, void *);
static int	 d_price(struct cp_parser *, struct cp_directive *, void *);
static int	 d_url(struct cp_parser *, struct cp_directive *, void *);
static int	 d_protocol(struct cp_parser *, struct cp_directive *, void *);
static int	 d_api_key_env(struct cp_parser *, struct cp_directive *, void *);
static int	 d_api_key_file(struct cp_parser *, struct cp_directive *, void *);
static int	 d_ca_file(struct cp_parser *, struct cp_directive *, void *);
static int	 d_alias(struct cp_parser *, struct cp_directive *, void *);
static int	 d_deployment(struct cp_parser *, struct cp_directive *, void *);
static int	 read_secret_file(struct cp_parser *, int,
		    const struct cfg_upstream *, const char *, const char *,
		    char *, size_t, size_t *);
static int	 d_gcp_file(struct cp_parser *, struct cp_directive *, void *);
static int	 d_aws_env(struct cp_parser *, struct cp_directive *, void *);
static int	 d_aws_file(struct cp_parser *, struct cp_directive *, void *);
static int	 d_pass_headers(struct cp_parser *, struct cp_directive *, void *);
static int	 d_drop_headers(struct cp_parser *, struct cp_directive *, void *);
static int	 d_betas(struct cp_parser *, struct cp_directive *, void *);

#define C_STR(n, f)	{ n, 1, 1, 0, CP_STR, offsetof(struct config, f), \
			    sizeof(((struct config *)0)->f), 0, 0, NULL }
#define C_DUR(n, f, lo)	{ n, 1, 1, 0, CP_DUR, offsetof(struct config, f), \
			    0, lo, INT_MAX, NULL }
#define C_SIZE(n, f)	{ n, 1, 1, 0, CP_SIZE, offsetof(struct config, f), \
			    0, 1, LLONG_MAX, NULL }
#define C_SIZE0(n, f)	{ n, 1, 1, 0, CP_SIZE, offsetof(struct config, f), \
			    0, 0, LLONG_MAX, NULL }
#define C_INT(n, f, lo, hi) { n, 1, 1, 0, CP_INT, offsetof(struct config, f), \
			    0, lo, hi, NULL }
#define U_DUR(n, f)	{ n, 1, 1, 0, CP_DUR, offsetof(struct cfg_upstream, f), \
			    0, 1, INT_MAX, NULL }
#define FN(n, lo, hi, fl, fn) { n, lo, hi, fl, CP_FN, 0, 0, 0, 0, fn }

static const struct cp_dirspec main_dirs[] = {
	FN("listen", 1, 2, CP_MULTI, d_listen),
	FN("ssl_certificate", 1, 1, 0, d_ssl_file),
	FN("ssl_certificate_key", 1, 1, 0, d_ssl_file),
	FN("ssl_client_ca", 1, 1, 0, d_ssl_file),
	C_STR("ssl_ciphers", ssl_ciphers),
	FN("ssl_protocols", 1, 2, 0, d_ssl_protocols),
	FN("ssl_verify_client", 1, 1, 0, d_ssl_verify_client),
	FN("ssl_session_tickets", 1, 1, 0, d_ssl_session_tickets),
	C_DUR("ssl_session_timeout", ssl_session_timeout_ms, 1000),
	FN("admin_listen", 1, 1, 0, d_admin_listen),
	C_STR("admin_allow", admin_allow),
	FN("workers", 1, 1, 0, d_workers),
	C_STR("user", user),
	C_STR("pid_file", pid_file),
	FN("log", 1, 2, 0, d_log),
	C_STR("database", database),
	C_STR("spool_dir", spool_dir),
	C_STR("keys_file", keys_file),
	C_DUR("shutdown_timeout", shutdown_timeout_ms, 0),
	C_SIZE("client_max_header_size", client_max_header_size),
	C_SIZE("client_max_body_size", client_max_body_size),
	C_DUR("client_header_timeout", client_header_timeout_ms, 1),
	C_DUR("client_body_timeout", client_body_timeout_ms, 1),
	C_DUR("keepalive_timeout", keepalive_timeout_ms, 0),
	C_DUR("send_timeout", send_timeout_ms, 1),
	C_INT("max_connections", max_connections, 1, 1048576),
	C_INT("worker_rlimit_nofile", worker_rlimit_nofile, 16, 8388608),
	FN("ring_slots", 1, 1, 0, d_ring_slots),
	C_INT("batch_rows", batch_rows, 1, 1000000),
	C_DUR("batch_ms", batch_ms, 1),
	FN("metering_full", 1, 1, 0, d_metering_full),
	FN("usage_retention", 1, 1, 0, d_usage_retention),
	FN("limits", 1, 1, 0, d_limits),
	FN("limit_lease", 1, 1, 0, d_limit_lease),
	C_DUR("limit_lease_ttl", lease_ttl_ms, 1000),
	C_STR("host_name", host_name),
	FN("upstream", 1, 1, CP_MULTI | CP_BLOCK, d_upstream),
	/* the upstreams, then options: translate, max_tokens, cache */
	FN("route", 2, 1 + CFG_MAX_ROUTE_UPS + 6, CP_MULTI, d_route),
	FN("price", 5, 11, CP_MULTI, d_price),
	FN("alias", 2, 2, CP_MULTI, d_alias),
	C_INT("max_attempts", max_attempts, 1, 16),
	C_INT("default_max_tokens", default_max_tokens, 1, 100000000),
	C_SIZE0("cache", cache_size),
	C_DUR("cache_ttl", cache_ttl_ms, 1000),
	C_SIZE("cache_max_entry", cache_max_entry),
};

static const struct cp_dirspec upstream_dirs[] = {
	FN("url", 1, 1, 0, d_url),
	FN("protocol", 1, 1, 0, d_protocol),
	FN("api_key_env", 1, 1, 0, d_api_key_env),
	FN("api_key_file", 1, 1, 0, d_api_key_file),
	FN("ca_file", 1, 1, 0, d_ca_file),
	{ "max_idle", 1, 1, 0, CP_INT, offsetof(struct cfg_upstream, max_idle),
	    0, 0, 1000000, NULL },
	U_DUR("connect_timeout", connect_timeout_ms),
	U_DUR("read_timeout", read_timeout_ms),
	U_DUR("idle_timeout", idle_timeout_ms),
	{ "max_fails", 1, 1, 0, CP_INT, offsetof(struct cfg_upstream, max_fails),
	    0, 0, 1000000, NULL },
	U_DUR("fail_timeout", fail_timeout_ms),
	{ "api_version", 1, 1, 0, CP_STR,
	    offsetof(struct cfg_upstream, api_version),
	    sizeof(((struct cfg_upstream *)0)->api_version), 0, 0, NULL },
	FN("deployment", 2, 2, CP_MULTI, d_deployment),
	{ "organization", 1, 1, 0, CP_STR,
	    offsetof(struct cfg_upstream, organization),
	    sizeof(((struct cfg_upstream *)0)->organization), 0, 0, NULL },
	{ "project", 1, 1, 0, CP_STR, offsetof(struct cfg_upstream, project),
	    sizeof(((struct cfg_upstream *)0)->project), 0, 0, NULL },
	FN("pass_headers", 1, CFG_MAX_HDR_NAMES, 0, d_pass_headers),
	FN("drop_headers", 1, CFG_MAX_HDR_NAMES, 0, d_drop_headers),
	FN("anthropic_betas", 1, CFG_MAX_HDR_NAMES, 0, d_betas),
	{ "region", 1, 1, 0, CP_STR, offsetof(struct cfg_upstream, region),
	    sizeof(((struct cfg_upstream *)0)->region), 0, 0, NULL },
	FN("aws_credentials_env", 2, 3, 0, d_aws_env),
	FN("aws_credentials_file", 1, 2, 0, d_aws_file),
	{ "strip_path", 1, 1, 0, CP_STR, offsetof(struct cfg_upstream,
	    strip_path), sizeof(((struct cfg_upstream *)0)->strip_path), 0, 0,
	    NULL },
	{ "gcp_project", 1, 1, 0, CP_STR,
	    offsetof(struct cfg_upstream, gcp_project),
	    sizeof(((struct cfg_upstream *)0)->gcp_project), 0, 0, NULL },
	FN("gcp_credentials_file", 1, 1, 0, d_gcp_file),
};

_Static_assert(cp_nitems(main_dirs) <= 64, "seen mask is 64 bits");

static int
ncpu(void)
{
	long	 n;

	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	if (n > WORKERS_MAX)
		return WORKERS_MAX;
	return (int)n;
}

static void
set_defaults(struct config *cfg)
{
	cfg->workers = ncpu();
	snprintf(cfg->log, sizeof(cfg->log), "stderr");
	cfg->log_level = LOGL_INFO;
	snprintf(cfg->spool_dir, sizeof(cfg->spool_dir),
	    "/var/lib/sluice/spool");
	cfg->shutdown_timeout_ms = 30 * 1000;
	cfg->client_max_header_size = 16 * 1024;
	cfg->client_max_body_size = 16 * 1024 * 1024;
	cfg->client_header_timeout_ms = 60 * 1000;
	cfg->client_body_timeout_ms = 60 * 1000;
	cfg->keepalive_timeout_ms = 75 * 1000;
	cfg->send_timeout_ms = 60 * 1000;
	cfg->max_connections = 4096;
	cfg->default_max_tokens = 4096;
	cfg->ring_slots = 16384;
	cfg->batch_rows = 1000;
	cfg->batch_ms = 200;
	cfg->cache_ttl_ms = 3600 * 1000;
	cfg->cache_max_entry = 64 * 1024;
	cfg->lease_pct = 5;
	cfg->lease_ttl_ms = 10 * 1000;
	if (gethostname(cfg->host_name, sizeof(cfg->host_name)) == -1)
		snprintf(cfg->host_name, sizeof(cfg->host_name), "localhost");
	cfg->host_name[sizeof(cfg->host_name) - 1] = '\0';
	snprintf(cfg->ssl_ciphers, sizeof(cfg->ssl_ciphers), "%s",
	    CFG_SSL_CIPHERS);
	cfg->ssl_protocols = CFG_TLS12 | CFG_TLS13;
	cfg->ssl_session_tickets = 1;
	cfg->ssl_session_timeout_ms = 3600 * 1000;
}

/* LEN bytes of S as a port 1..65535, normalised into OUT. */
static int
parse_port(const char *s, size_t len, char *out, size_t outlen)
{
	long	 v = 0;
	size_t	 i;

	if (len == 0 || len > 5)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	snprintf(out, outlen, "%ld", v);
	return 0;
}

/* "HOST:PORT", "[V6]:PORT", "*:PORT" or "PORT". */
static int
parse_addr(const char *s, struct cfg_addr *a)
{
	const char	*host, *port, *end;
	size_t		 hlen;

	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL || end == s + 1 ||
		    end[1] != ':')
			return -1;
		host = s + 1;
		hlen = (size_t)(end - host);
		port = end + 2;
	} else if ((end = strrchr(s, ':')) == NULL) {
		host = "*";
		hlen = 1;
		port = s;
	} else {
		if (memchr(s, ':', (size_t)(end - s)) != NULL)
			return -1;	/* bare IPv6: brackets needed */
		host = s;
		hlen = (size_t)(end - s);
		port = end + 1;
		if (hlen == 0)
			return -1;
	}
	if (hlen >= sizeof(a->host))
		return -1;
	if (parse_port(port, strlen(port), a->port, sizeof(a->port)) == -1)
		return -1;
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	return 0;
}

/* Fill tls, host, port, path_prefix from URL; NULL or the reason. */
static const char *
parse_url(struct cfg_upstream *u, const char *url)
{
	const char	*rest, *auth_end, *host, *port = NULL, *close, *colon;
	const char	*defport;
	size_t		 hlen, plen = 0;

	if (strncasecmp(url, "http://", 7) == 0) {
		u->tls = 0;
		rest = url + 7;
		defport = "80";
	} else if (strncasecmp(url, "https://", 8) == 0) {
		u->tls = 1;
		rest = url + 8;
		defport = "443";
	} else
		return "scheme must be http:// or https://";
	auth_end = rest + strcspn(rest, "/?#");
	if (memchr(rest, '@', (size_t)(auth_end - rest)) != NULL)
		return "user info is not supported";
	if (rest[0] == '[') {
		close = memchr(rest, ']', (size_t)(auth_end - rest));
		if (close == NULL || close == rest + 1)
			return "invalid host";
		host = rest + 1;
		hlen = (size_t)(close - host);
		if (close + 1 < auth_end) {
			if (close[1] != ':')
				return "invalid host";
			port = close + 2;
		}
	} else {
		host = rest;
		colon = memchr(rest, ':', (size_t)(auth_end - rest));
		hlen = (size_t)((colon != NULL ? colon : auth_end) - rest);
		if (colon != NULL) {
			if (memchr(colon + 1, ':',
			    (size_t)(auth_end - colon - 1)) != NULL)
				return "IPv6 host needs brackets";
			port = colon + 1;
		}
	}
	if (hlen == 0)
		return "missing host";
	if (hlen >= sizeof(u->host))
		return "host too long";
	if (port != NULL) {
		plen = (size_t)(auth_end - port);
		if (parse_port(port, plen, u->port, sizeof(u->port)) == -1)
			return "invalid port";
	} else
		cp_set_str(u->port, sizeof(u->port), defport);
	memcpy(u->host, host, hlen);
	u->host[hlen] = '\0';
	if (strpbrk(auth_end, "?#") != NULL)
		return "query and fragment are not supported";
	plen = strlen(auth_end);
	while (plen > 0 && auth_end[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(u->path_prefix))
		return "path too long";
	memcpy(u->path_prefix, auth_end, plen);
	u->path_prefix[plen] = '\0';
	return NULL;
}

static int
d_listen(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	struct cfg_addr	 a;
	int		 i;

	if (cfg->nlisten == CFG_MAX_LISTEN)
		return cp_err(p, d->line, "too many \"listen\" directives "
		    "(max %d)", CFG_MAX_LISTEN);
	memset(&a, 0, sizeof(a));
	if (parse_addr(d->args[1].s, &a) == -1)
		return cp_err(p, d->line, "invalid address \"%s\" in \"listen\" "
		    "directive", d->args[1].s);
	if (d->nargs == 3 && strcmp(d->args[2].s, "ssl") != 0)
		return cp_err(p, d->line, "invalid parameter \"%s\" in "
		    "\"listen\" directive (expected \"ssl\")", d->args[2].s);
	a.ssl = d->nargs == 3;
	cfg->nlisten_ssl += a.ssl;
	for (i = 0; i < cfg->nlisten; i++)
		if (strcmp(cfg->listen[i].host, a.host) == 0 &&
		    strcmp(cfg->listen[i].port, a.port) == 0)
			return cp_err(p, d->line, "duplicate listen \"%s\"",
			    d->args[1].s);
	a.line = d->line;
	cfg->listen[cfg->nlisten++] = a;
	return 0;
}

static int
d_admin_listen(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;

	if (parse_addr(d->args[1].s, &cfg->admin_listen) == -1)
		return cp_err(p, d->line, "invalid address \"%s\" in "
		    "\"admin_listen\" directive", d->args[1].s);
	cfg->admin_listen.line = d->line;
	cfg->has_admin_listen = 1;
	return 0;
}

static int
d_workers(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;
	long long	 n;

	if (strcmp(v, "auto") == 0) {
		cfg->workers = ncpu();
		return 0;
	}
	if (cp_parse_ll(v, &n) == -1)
		return cp_err(p, d->line, "invalid value \"%s\" in \"workers\" "
		    "directive", v);
	if (n < 1 || n > WORKERS_MAX)
		return cp_err(p, d->line, "value \"%s\" out of range in "
		    "\"workers\" directive", v);
	cfg->workers = (int)n;
	return 0;
}

static int
d_log(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*dest = d->args[1].s, *lvl;

	if (*dest == '\0')
		return cp_err(p, d->line, "empty value in \"log\" directive");
	if (strlen(dest) >= sizeof(cfg->log))
		return cp_err(p, d->line, "value too long in \"log\" directive");
	if (d->nargs == 3) {
		lvl = d->args[2].s;
		if (strcmp(lvl, "warn") == 0)
			cfg->log_level = LOGL_WARN;
		else if (strcmp(lvl, "info") == 0)
			cfg->log_level = LOGL_INFO;
		else if (strcmp(lvl, "debug") == 0)
			cfg->log_level = LOGL_DEBUG;
		else
			return cp_err(p, d->line, "invalid log level \"%s\"", lvl);
	}
	cp_set_str(cfg->log, sizeof(cfg->log), dest);
	return 0;
}

static int
d_ring_slots(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;
	long long	 n;

	if (cp_parse_ll(v, &n) == -1)
		return cp_err(p, d->line, "invalid value \"%s\" in \"ring_slots\" "
		    "directive", v);
	if (n < 1024 || n > 1048576)
		return cp_err(p, d->line, "value \"%s\" out of range in "
		    "\"ring_slots\" directive", v);
	if ((n & (n - 1)) != 0)
		return cp_err(p, d->line, "\"ring_slots\" must be a power of two");
	cfg->ring_slots = (int)n;
	return 0;
}

/* serve (the default: a drop is counted) or reject (503 before it goes up). */
static int
d_metering_full(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;

	if (strcmp(v, "serve") == 0)
		cfg->metering_full_reject = 0;
	else if (strcmp(v, "reject") == 0)
		cfg->metering_full_reject = 1;
	else
		return cp_err(p, d->line, "invalid value \"%s\" in "
		    "\"metering_full\" directive: serve or reject", v);
	return 0;
}

/*
 * ssl_certificate, ssl_certificate_key, ssl_client_ca FILE: resolved as
 * keys_file is, and readable now, so that a missing file fails the start
 * (or the reload) rather than the first handshake.  The private key must
 * not be readable by every user, as keys_file and api_key_file.  What the
 * files hold is checked by worker/tls.c when it loads them.
 */
static int
d_ssl_file(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*name = d->args[0].s, *v = d->args[1].s;
	char		*dst;
	int		*line, fd;
	struct stat	 st;

	if (strcmp(name, "ssl_certificate") == 0) {
		dst = cfg->ssl_certificate;
		line = &cfg->ssl_certificate_line;
	} else if (strcmp(name, "ssl_certificate_key") == 0) {
		dst = cfg->ssl_certificate_key;
		line = &cfg->ssl_certificate_key_line;
	} else {
		dst = cfg->ssl_client_ca;
		line = &cfg->ssl_client_ca_line;
	}
	if (*v == '\0' || cfg_resolve(cfg, v, dst, PATH_MAX) == -1)
		return cp_err(p, d->line, "invalid value \"%s\" in \"%s\" "
		    "directive", v, name);
	*line = d->line;
	if ((fd = open(dst, O_RDONLY | O_CLOEXEC)) == -1)
		return cp_err(p, d->line, "cannot read %s \"%s\": %s", name,
		    dst, strerror(errno));
	if (fstat(fd, &st) == -1) {
		close(fd);
		return cp_err(p, d->line, "cannot read %s \"%s\": %s", name,
		    dst, strerror(errno));
	}
	close(fd);
	if (dst == cfg->ssl_certificate_key && (st.st_mode & S_IROTH))
		return cp_err(p, d->line, "ssl_certificate_key \"%s\" is "
		    "readable by every user (mode %04o); chmod o-r it", dst,
		    (unsigned)(st.st_mode & 07777));
	return 0;
}

/* ssl_protocols TLSv1.2 [TLSv1.3]: nothing older is offered. */
static int
d_ssl_protocols(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	int		 i;

	cfg->ssl_protocols = 0;
	for (i = 1; i < d->nargs; i++) {
		if (strcmp(d->args[i].s, "TLSv1.2") == 0)
			cfg->ssl_protocols |= CFG_TLS12;
		else if (strcmp(d->args[i].s, "TLSv1.3") == 0)
			cfg->ssl_protocols |= CFG_TLS13;
		else
			return cp_err(p, d->line, "invalid value \"%s\" in "
			    "\"ssl_protocols\" directive (TLSv1.2 or TLSv1.3)",
			    d->args[i].s);
	}
	return 0;
}

static int
d_ssl_verify_client(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;

	if (strcmp(v, "on") == 0)
		cfg->ssl_verify_client = CFG_VERIFY_ON;
	else if (strcmp(v, "optional") == 0)
		cfg->ssl_verify_client = CFG_VERIFY_OPTIONAL;
	else if (strcmp(v, "off") == 0)
		cfg->ssl_verify_client = CFG_VERIFY_OFF;
	else
		return cp_err(p, d->line, "invalid value \"%s\" in "
		    "\"ssl_verify_client\" directive: on, optional or off", v);
	return 0;
}

static int
d_ssl_session_tickets(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;

	if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
		return cp_err(p, d->line, "invalid value \"%s\" in "
		    "\"ssl_session_tickets\" directive: on or off", v);
	cfg->ssl_session_tickets = strcmp(v, "on") == 0;
	return 0;
}

/*
 * "13months", "400days" (or "1month", "1day"), or "forever".  In whole
 * months or days because partitions are dropped whole; at most 100
 * years, so that the cutoff stays a date PostgreSQL can compute.
 */
static int
d_usage_retention(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s, *unit;
	long long	 n;
	char		 num[16];
	size_t		 len;

	cfg->usage_retention_months = cfg->usage_retention_days = 0;
	if (strcmp(v, "forever") == 0)
		return 0;
	for (len = 0; v[len] >= '0' && v[len] <= '9'; len++)
		;
	unit = v + len;
	if (len == 0 || len >= sizeof(num))
		goto bad;
	memcpy(num, v, len);
	num[len] = '\0';
	if (cp_parse_ll(num, &n) == -1 || n < 1)
		goto bad;
	if ((strcmp(unit, "months") == 0 || strcmp(unit, "month") == 0) &&
	    n <= 1200)
		cfg->usage_retention_months = (int)n;
	else if ((strcmp(unit, "days") == 0 || strcmp(unit, "day") == 0) &&
	    n <= 36500)
		cfg->usage_retention_days = (int)n;
	else
		goto bad;
	return 0;
 bad:
	return cp_err(p, d->line, "invalid value \"%s\" in "
	    "\"usage_retention\" directive: a number of months or days "
	    "(13months, 400days; at most 100 years) or forever", v);
}

/* A bedrock upstream has a region and AWS credentials, a vertex one a
 * region, a project and a service account; no other has any. */
static int
cloud_check(struct cp_parser *p, int line, const struct cfg_upstream *u)
{
	int	 aws = u->aws_key_id != NULL, gcp = u->gcp_key != NULL;

	if (u->protocol == PROTO_VERTEX) {
		if (aws)
			return cp_err(p, line, "aws_credentials_* are for "
			    "protocol bedrock");
		if (u->region[0] == '\0' || u->gcp_project[0] == '\0' || !gcp)
			return cp_err(p, line, "protocol vertex needs "
			    "\"region\", \"gcp_project\" and "
			    "\"gcp_credentials_file\"");
		if (u->api_key != NULL)
			return cp_err(p, line, "protocol vertex uses the "
			    "service account's tokens, not api_key_*");
		return 0;
	}
	if (gcp || u->gcp_project[0] != '\0')
		return cp_err(p, line, "gcp_project and gcp_credentials_file "
		    "are for protocol vertex");
	if (u->protocol != PROTO_BEDROCK) {
		if (aws || u->region[0] != '\0')
			return cp_err(p, line, "region and aws_credentials_* "
			    "are for protocol bedrock or vertex");
		return 0;
	}
	if (u->region[0] == '\0')
		return cp_err(p, line, "protocol bedrock needs \"region\"");
	if (!aws)
		return cp_err(p, line, "protocol bedrock needs "
		    "aws_credentials_env or aws_credentials_file");
	if (u->api_key != NULL)
		return cp_err(p, line, "protocol bedrock signs with AWS "
		    "credentials, not api_key_*");
	return 0;
}

/* The value of environment variable VAR, copied into *DST. */
static int
aws_getenv(struct cp_parser *p, int line, const char *var, char **dst)
{
	const char	*val;

	if (*var == '\0' || strlen(var) >= 64)
		return cp_err(p, line, "invalid variable name \"%s\" in "
		    "\"aws_credentials_env\"", var);
	if ((val = getenv(var)) == NULL || *val == '\0')
		return cp_err(p, line, "environment variable \"%s\" is %s",
		    var, val == NULL ? "not set" : "empty");
	if ((*dst = strdup(val)) == NULL)
		return cp_err(p, line, "out of memory");
	return 0;
}

/* aws_credentials_env KEY_ID_VAR SECRET_VAR [SESSION_TOKEN_VAR] */
static int
d_aws_env(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	char			**dst[3] = { &u->aws_key_id, &u->aws_secret,
				    &u->aws_token };
	int			 i;

	if (u->aws_key_id != NULL)
		return cp_err(p, d->line, "aws_credentials_env and "
		    "aws_credentials_file are mutually exclusive");
	for (i = 1; i < d->nargs; i++) {
		if (aws_getenv(p, d->line, d->args[i].s, dst[i - 1]) == -1)
			return -1;
		cp_set_str(u->aws_env[i - 1], sizeof(u->aws_env[i - 1]),
		    d->args[i].s);
	}
	return 0;
}

/* aws_credentials_file PATH [PROFILE]: read now, and again on reload. */
static int
d_aws_file(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	const char		*path = d->args[1].s;
	const char		*prof = d->nargs > 2 ? d->args[2].s : "default";
	char			 buf[KEY_FILE_MAX], why[128];
	struct awscred		 c;
	size_t			 len;
	int			 rv;

	if (u->aws_key_id != NULL)
		return cp_err(p, d->line, "aws_credentials_env and "
		    "aws_credentials_file are mutually exclusive");
	if (*path == '\0' || strlen(path) >= sizeof(u->aws_file) ||
	    strlen(prof) >= sizeof(u->aws_profile))
		return cp_err(p, d->line, "invalid value in "
		    "\"aws_credentials_file\" directive");
	if (read_secret_file(p, d->line, u, "aws_credentials_file", path, buf,
	    sizeof(buf), &len) == -1)
		return -1;
	rv = awscred_parse(buf, prof, &c, why, sizeof(why));
	explicit_bzero(buf, sizeof(buf));
	if (rv == -1)
		return cp_err(p, d->line, "aws_credentials_file \"%s\": %s",
		    path, why);
	u->aws_key_id = c.key_id;
	u->aws_secret = c.secret;
	u->aws_token = c.token;
	cp_set_str(u->aws_file, sizeof(u->aws_file), path);
	cp_set_str(u->aws_profile, sizeof(u->aws_profile), prof);
	return 0;
}

/* String member KEY of object 0 of D, JSON escapes undone (those a key
 * file has: \\n \\" \\\\ \\/), into a new string; NULL if absent. */
static char *
json_string_dup(const struct json_doc *d, const char *key)
{
	const char	*v;
	size_t		 n, i, o = 0;
	char		*s;
	int		 t = json_get(d, 0, key);

	if (t < 0 || !json_is_str(d, t) || (v = json_raw(d, t, &n)) == NULL ||
	    (s = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (v[i] == '\\' && i + 1 < n) {
			i++;
			s[o++] = v[i] == 'n' ? '\n' : v[i];
		} else
			s[o++] = v[i];
	}
	s[o] = '\0';
	return s;
}

/* gcp_credentials_file PATH: a service-account JSON key, read now and on
 * every reload; its token_uri must be an http(s) URL. */
static int
d_gcp_file(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj, tmp;
	const char		*path = d->args[1].s, *why;
	char			*buf, *email = NULL, *uri = NULL;
	struct json_doc		 doc;
	size_t			 len;
	int			 rv = -1;

	if (*path == '\0' || strlen(path) >= sizeof(u->gcp_file))
		return cp_err(p, d->line, "invalid value in "
		    "\"gcp_credentials_file\" directive");
	if ((buf = malloc(4 * KEY_FILE_MAX)) == NULL)
		return cp_err(p, d->line, "out of memory");
	memset(&doc, 0, sizeof(doc));
	if (read_secret_file(p, d->line, u, "gcp_credentials_file", path, buf,
	    4 * KEY_FILE_MAX, &len) == -1)
		goto done;
	if (json_parse(&doc, buf, len) == -1 || !json_is_obj(&doc, 0)) {
		cp_err(p, d->line, "gcp_credentials_file \"%s\" is not JSON",
		    path);
		goto done;
	}
	email = json_string_dup(&doc, "client_email");
	uri = json_string_dup(&doc, "token_uri");
	free(u->gcp_key);
	u->gcp_key = json_string_dup(&doc, "private_key");
	if (email == NULL || uri == NULL || u->gcp_key == NULL ||
	    strlen(email) >= sizeof(u->gcp_email) ||
	    strlen(uri) >= sizeof(u->gcp_token_uri)) {
		cp_err(p, d->line, "gcp_credentials_file \"%s\": not a "
		    "service account key (client_email, private_key, "
		    "token_uri)", path);
		goto done;
	}
	memset(&tmp, 0, sizeof(tmp));
	if ((why = parse_url(&tmp, uri)) != NULL) {
		cp_err(p, d->line, "gcp_credentials_file \"%s\": token_uri "
		    "\"%s\": %s", path, uri, why);
		goto done;
	}
	cp_set_str(u->gcp_email, sizeof(u->gcp_email), email);
	cp_set_str(u->gcp_token_uri, sizeof(u->gcp_token_uri), uri);
	cp_set_str(u->gcp_file, sizeof(u->gcp_file), path);
	rv = 0;
 done:
	if (rv == -1 && u->gcp_key != NULL) {
		explicit_bzero(u->gcp_key, strlen(u->gcp_key));
		free(u->gcp_key);
		u->gcp_key = NULL;
	}
	json_doc_free(&doc);
	explicit_bzero(buf, 4 * KEY_FILE_MAX);
	free(buf);
	free(email);
	free(uri);
	return rv;
}

/* "local" (each host its own limits) or "shared" (leased from PG). */
static int
d_limits(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;

	if (strcmp(v, "local") == 0)
		cfg->limits_shared = 0;
	else if (strcmp(v, "shared") == 0)
		cfg->limits_shared = 1;
	else
		return cp_err(p, d->line, "invalid value \"%s\" in \"limits\" "
		    "directive: local or shared", v);
	cfg->limits_line = d->line;
	return 0;
}

/*
 * The slice of a limit one lease grants, in percent of the limit: "5%".
 * At most 50%: a bigger slice leaves the other hosts nothing to lease.
 */
static int
d_limit_lease(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	const char	*v = d->args[1].s;
	char		 num[8];
	size_t		 len = strlen(v);
	long long	 n;

	if (len < 2 || len - 1 >= sizeof(num) || v[len - 1] != '%')
		goto bad;
	memcpy(num, v, len - 1);
	num[len - 1] = '\0';
	if (cp_parse_ll(num, &n) == -1 || n < 1 || n > 50)
		goto bad;
	cfg->lease_pct = (int)n;
	return 0;
 bad:
	return cp_err(p, d->line, "invalid value \"%s\" in \"limit_lease\" "
	    "directive: a percentage of the limit, 1%% to 50%%", v);
}

static int
d_upstream(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config		*cfg = obj;
	struct cfg_upstream	*u;
	const char		*name = d->args[1].s;
	int			 i;

	if (*name == '\0' || strlen(name) >= CFG_NAME_MAX)
		return cp_err(p, d->line, "invalid upstream name \"%s\"", name);
	for (i = 0; i < cfg->nupstreams; i++)
		if (strcmp(cfg->upstreams[i].name, name) == 0)
			return cp_err(p, d->line, "duplicate upstream \"%s\"",
			    name);
	u = reallocarray(cfg->upstreams, (size_t)cfg->nupstreams + 1,
	    sizeof(*u));
	if (u == NULL)
		return cp_err(p, d->line, "out of memory");
	cfg->upstreams = u;
	u = &cfg->upstreams[cfg->nupstreams++];
	memset(u, 0, sizeof(*u));
	cp_set_str(u->name, sizeof(u->name), name);
	u->protocol = PROTO_OPENAI;
	u->max_idle = 64;
	u->connect_timeout_ms = 5 * 1000;
	u->read_timeout_ms = 300 * 1000;
	u->idle_timeout_ms = 60 * 1000;
	u->max_fails = 3;
	u->fail_timeout_ms = 10 * 1000;
	cp_set_str(u->api_version, sizeof(u->api_version), "2024-10-21");
	u->line = d->line;

	snprintf(p->ctx, sizeof(p->ctx), "upstream \"%s\": ", name);
	if (cp_parse_block(p, upstream_dirs, cp_nitems(upstream_dirs), u) == -1)
		return -1;
	if (u->url[0] == '\0')
		return cp_err(p, d->line, "missing \"url\"");
	if (cloud_check(p, d->line, u) == -1)
		return -1;
	p->ctx[0] = '\0';
	return 0;
}

static int
d_url(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	const char		*v = d->args[1].s, *why;

	if (strlen(v) >= sizeof(u->url))
		return cp_err(p, d->line, "url too long");
	if ((why = parse_url(u, v)) != NULL)
		return cp_err(p, d->line, "invalid url \"%s\": %s", v, why);
	cp_set_str(u->url, sizeof(u->url), v);
	return 0;
}

static int
d_protocol(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	const char		*v = d->args[1].s;

	if (strcmp(v, "openai") == 0)
		u->protocol = PROTO_OPENAI;
	else if (strcmp(v, "anthropic") == 0)
		u->protocol = PROTO_ANTHROPIC;
	else if (strcmp(v, "azure") == 0)
		u->protocol = PROTO_AZURE;
	else if (strcmp(v, "bedrock") == 0)
		u->protocol = PROTO_BEDROCK;
	else if (strcmp(v, "vertex") == 0)
		u->protocol = PROTO_VERTEX;
	else
		return cp_err(p, d->line, "invalid protocol \"%s\" (expected "
		    "openai, anthropic, azure, bedrock or vertex)", v);
	return 0;
}

static int
d_api_key_env(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	const char		*var = d->args[1].s, *val;

	if (u->api_key != NULL)
		return cp_err(p, d->line,
		    "api_key_env and api_key_file are mutually exclusive");
	if (*var == '\0' || strlen(var) >= sizeof(u->api_key_env))
		return cp_err(p, d->line, "invalid value \"%s\" in "
		    "\"api_key_env\" directive", var);
	if ((val = getenv(var)) == NULL)
		return cp_err(p, d->line, "environment variable \"%s\" is not "
		    "set", var);
	if (*val == '\0')
		return cp_err(p, d->line, "environment variable \"%s\" is empty",
		    var);
	if ((u->api_key = strdup(val)) == NULL)
		return cp_err(p, d->line, "out of memory");
	cp_set_str(u->api_key_env, sizeof(u->api_key_env), var);
	return 0;
}

/*
 * The whole of the secret file PATH (WHAT names its directive) in BUF
 * (CAP), NUL ended, its length in *LEN: refused if every user may read
 * it, a warning if group or others may touch it.
 */
static int
read_secret_file(struct cp_parser *p, int line, const struct cfg_upstream *u,
    const char *what, const char *path, char *buf, size_t cap, size_t *len)
{
	struct stat	 st;
	size_t		 off = 0;
	ssize_t		 n;
	int		 fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return cp_err(p, line, "cannot read %s \"%s\": %s", what, path,
		    strerror(errno));
	if (fstat(fd, &st) == -1) {
		cp_err(p, line, "cannot read %s \"%s\": %s", what, path,
		    strerror(errno));
		goto done;
	}
	if (st.st_mode & S_IROTH) {
		cp_err(p, line, "%s \"%s\" is readable by every user "
		    "(mode %04o); chmod o-r it", what, path,
		    (unsigned)(st.st_mode & 07777));
		goto done;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		log_warnx("%s:%d: upstream \"%s\": %s \"%s\" is "
		    "accessible by group or others (mode %04o)", p->path, line,
		    u->name, what, path, (unsigned)(st.st_mode & 07777));
	while (off < cap - 1) {
		n = read(fd, buf + off, cap - 1 - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			cp_err(p, line, "cannot read %s \"%s\": %s", what,
			    path, strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	*len = off;
	rv = 0;
 done:
	close(fd);
	return rv;
}

/* The first line of u->api_key_file, trailing blanks stripped. */
static int
read_key_file(struct cp_parser *p, int line, struct cfg_upstream *u)
{
	char		 buf[KEY_FILE_MAX];
	size_t		 off = 0, len;
	int		 rv = -1;

	if (read_secret_file(p, line, u, "api_key_file", u->api_key_file, buf,
	    sizeof(buf), &off) == -1)
		goto done;
	len = strcspn(buf, "\n");
	if (len == off && off == sizeof(buf) - 1) {
		cp_err(p, line, "api_key_file \"%s\": key too long",
		    u->api_key_file);
		goto done;
	}
	while (len > 0 && cp_is_blank((unsigned char)buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0 || memchr(buf, '\0', len) != NULL) {
		cp_err(p, line, "api_key_file \"%s\" is empty", u->api_key_file);
		goto done;
	}
	if ((u->api_key = strdup(buf)) == NULL) {
		cp_err(p, line, "out of memory");
		goto done;
	}
	rv = 0;
 done:
	explicit_bzero(buf, sizeof(buf));
	return rv;
}

static int
d_api_key_file(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	const char		*v = d->args[1].s;

	if (u->api_key != NULL)
		return cp_err(p, d->line,
		    "api_key_env and api_key_file are mutually exclusive");
	if (*v == '\0' || strlen(v) >= sizeof(u->api_key_file))
		return cp_err(p, d->line, "invalid value \"%s\" in "
		    "\"api_key_file\" directive", v);
	cp_set_str(u->api_key_file, sizeof(u->api_key_file), v);
	return read_key_file(p, d->line, u);
}

static int
d_ca_file(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	const char		*v = d->args[1].s;

	if (*v == '\0' || strlen(v) >= sizeof(u->ca_file))
		return cp_err(p, d->line, "invalid value \"%s\" in \"ca_file\" "
		    "directive", v);
	if (access(v, R_OK) == -1)
		return cp_err(p, d->line, "cannot read ca_file \"%s\": %s", v,
		    strerror(errno));
	cp_set_str(u->ca_file, sizeof(u->ca_file), v);
	return 0;
}

static int
d_route(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config		*cfg = obj;
	struct cfg_state	*st = p->udata;
	struct cfg_route	*r;
	struct route_names	*rn;
	const char		*pat = d->args[1].s;
	int64_t			 max_tokens = CFG_ROUTE_MAX_TOKENS;
	int			 i, first, last, balance = 0, translate = 1;
	int			 cache = 1;

	if (*pat == '\0')
		return cp_err(p, d->line, "empty pattern in \"route\" directive");
	if (strlen(pat) >= CFG_PATTERN_MAX)
		return cp_err(p, d->line, "pattern too long in \"route\" "
		    "directive");
	for (i = 0; i < cfg->nroutes; i++)
		if (strcmp(cfg->routes[i].pattern, pat) == 0)
			return cp_err(p, d->line, "duplicate route \"%s\"", pat);
	first = 2;
	if (strcmp(d->args[2].s, "balance") == 0 ||
	    strcmp(d->args[2].s, "failover") == 0) {
		balance = strcmp(d->args[2].s, "balance") == 0;
		first = 3;
		if (d->nargs < 4)
			return cp_err(p, d->line, "route \"%s\": no upstream "
			    "after \"%s\"", pat, d->args[2].s);
	}
	/* options follow the upstreams, each a word and its value */
	for (last = first; last < d->nargs; last++)
		if (last + 1 < d->nargs &&
		    (strcmp(d->args[last].s, "translate") == 0 ||
		    strcmp(d->args[last].s, "max_tokens") == 0 ||
		    strcmp(d->args[last].s, "cache") == 0))
			break;
	for (i = last; i < d->nargs; i += 2) {
		const char	*opt = d->args[i].s, *val;
		long long	 v;

		if (i + 1 >= d->nargs)
			return cp_err(p, d->line, "route \"%s\": \"%s\" needs "
			    "a value", pat, opt);
		val = d->args[i + 1].s;
		if (strcmp(opt, "translate") == 0 && (strcmp(val, "on") == 0 ||
		    strcmp(val, "off") == 0))
			translate = strcmp(val, "on") == 0;
		else if (strcmp(opt, "cache") == 0 && (strcmp(val, "on") == 0 ||
		    strcmp(val, "off") == 0))
			cache = strcmp(val, "on") == 0;
		else if (strcmp(opt, "translate") == 0 ||
		    strcmp(opt, "cache") == 0)
			return cp_err(p, d->line, "route \"%s\": %s is "
			    "on or off, not \"%s\"", pat, opt, val);
		else if (strcmp(opt, "max_tokens") == 0) {
			if (cp_parse_ll(val, &v) == -1 || v < 1 ||
			    v > 100000000)
				return cp_err(p, d->line, "route \"%s\": "
				    "max_tokens \"%s\" is not a count from 1",
				    pat, val);
			max_tokens = v;
		} else
			return cp_err(p, d->line, "route \"%s\": unknown "
			    "option \"%s\" (translate, max_tokens, cache)", pat,
			    opt);
	}
	if (last == first)
		return cp_err(p, d->line, "route \"%s\": no upstream", pat);
	if (last - first > CFG_MAX_ROUTE_UPS)
		return cp_err(p, d->line, "route \"%s\": more than %d "
		    "upstreams", pat, CFG_MAX_ROUTE_UPS);
	for (i = first; i < last; i++)
		if (d->args[i].s[0] == '\0' ||
		    strlen(d->args[i].s) >= CFG_NAME_MAX)
			return cp_err(p, d->line, "route \"%s\": invalid upstream "
			    "name \"%s\"", pat, d->args[i].s);

	r = reallocarray(cfg->routes, (size_t)cfg->nroutes + 1, sizeof(*r));
	if (r == NULL)
		return cp_err(p, d->line, "out of memory");
	cfg->routes = r;
	rn = reallocarray(st->rnames, (size_t)cfg->nroutes + 1, sizeof(*rn));
	if (rn == NULL)
		return cp_err(p, d->line, "out of memory");
	st->rnames = rn;
	r = &cfg->routes[cfg->nroutes];
	rn = &st->rnames[cfg->nroutes];
	cfg->nroutes++;
	memset(r, 0, sizeof(*r));
	memset(rn, 0, sizeof(*rn));
	cp_set_str(r->pattern, sizeof(r->pattern), pat);
	r->line = d->line;
	r->nupstreams = last - first;
	r->balance = balance;
	r->translate = translate;
	r->max_tokens = max_tokens;
	r->cache = cache;
	for (i = 0; i < r->nupstreams; i++) {
		cp_set_str(rn->name[i], sizeof(rn->name[i]),
		    d->args[i + first].s);
		r->upstream[i] = -1;
	}
	return 0;
}

static int
d_price(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config	*cfg = obj;
	struct cfg_price *pr;
	const char	*model = d->args[1].s, *key, *val;
	/* input, output, cached, cache_write (5 min), cache_write_1h */
	int64_t		 v[5] = { -1, -1, -1, -1, -1 };
	static const char *const keys[5] = { "input", "output", "cached",
	    "cache_write", "cache_write_1h" };
	int		 i, k;

	if (*model == '\0')
		return cp_err(p, d->line, "empty model in \"price\" directive");
	if (strlen(model) >= CFG_PATTERN_MAX)
		return cp_err(p, d->line, "model too long in \"price\" directive");
	if ((d->nargs - 2) % 2 != 0)
		return cp_err(p, d->line,
		    "invalid number of arguments in \"price\" directive");
	for (i = 0; i < cfg->nprices; i++)
		if (strcmp(cfg->prices[i].model, model) == 0)
			return cp_err(p, d->line, "duplicate price \"%s\"", model);
	for (i = 2; i < d->nargs; i += 2) {
		key = d->args[i].s;
		val = d->args[i + 1].s;
		for (k = 0; k < 5; k++)
			if (strcmp(key, keys[k]) == 0)
				break;
		if (k == 5)
			return cp_err(p, d->line, "price \"%s\": unknown field "
			    "\"%s\"", model, key);
		if (v[k] != -1)
			return cp_err(p, d->line, "price \"%s\": duplicate field "
			    "\"%s\"", model, key);
		if (cp_parse_usd_micro(val, &v[k]) == -1)
			return cp_err(p, d->line, "price \"%s\": invalid amount "
			    "\"%s\"", model, val);
	}
	for (k = 0; k < 2; k++)
		if (v[k] == -1)
			return cp_err(p, d->line, "price \"%s\": missing \"%s\"",
			    model, keys[k]);

	pr = reallocarray(cfg->prices, (size_t)cfg->nprices + 1, sizeof(*pr));
	if (pr == NULL)
		return cp_err(p, d->line, "out of memory");
	cfg->prices = pr;
	pr = &cfg->prices[cfg->nprices++];
	memset(pr, 0, sizeof(*pr));
	cp_set_str(pr->model, sizeof(pr->model), model);
	pr->input = v[0];
	pr->output = v[1];
	pr->cached = v[2];
	/* unset: as Anthropic bills cache writes, 1.25x and 2x the input */
	pr->cache_write = v[3] != -1 ? v[3] : v[0] * 5 / 4;
	pr->cache_write_1h = v[4] != -1 ? v[4] : v[0] * 2;
	pr->line = d->line;
	return 0;
}

/*
 * /metrics and /status are for the operator: admin_listen must be a
 * loopback address unless "admin_allow" names its host (or host:port).
 */
static int
admin_refused(const struct config *cfg)
{
	const char	*h = cfg->admin_listen.host, *a = cfg->admin_allow;
	unsigned char	 b[16];
	char		 hp[300];

	if (!cfg->has_admin_listen || strcmp(h, "localhost") == 0 ||
	    (inet_pton(AF_INET, h, b) == 1 && b[0] == 127) ||
	    (inet_pton(AF_INET6, h, b) == 1 && memcmp(b,
	    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0))
		return 0;
	if (a[0] == '\0')
		return 1;
	if (strcmp(a, h) == 0)
		return 0;
	snprintf(hp, sizeof(hp), strchr(h, ':') ? "[%s]" : "%s", h);
	if (strcmp(a, hp) == 0)
		return 0;
	snprintf(hp, sizeof(hp), strchr(h, ':') ? "[%s]:%s" : "%s:%s", h,
	    cfg->admin_listen.port);
	return strcmp(a, hp) != 0;
}

static int
first_ssl_line(const struct config *cfg)
{
	int i;

	for (i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].ssl)
			return cfg->listen[i].line;
	return 0;
}

/* Whole-file checks once every directive is read. */
static int
finish(struct cp_parser *p)
{
	struct cfg_state	*st = p->udata;
	struct config		*cfg = st->cfg;
	struct cfg_route	*r;
	const char		*name;
	int			 i, j, k, priced;

	if (cfg->nlisten == 0) {
		snprintf(cfg->listen[0].host, sizeof(cfg->listen[0].host),
		    "127.0.0.1");
		snprintf(cfg->listen[0].port, sizeof(cfg->listen[0].port),
		    "8080");
		cfg->listen[0].line = 0;
		cfg->nlisten = 1;
	}
	if (cfg->nlisten_ssl > 0 && cfg->ssl_certificate[0] == '\0')
		return cp_err(p, first_ssl_line(cfg), "no \"ssl_certificate\" "
		    "is defined for the \"listen ... ssl\" directive");
	if (cfg->ssl_certificate[0] != '\0' &&
	    cfg->ssl_certificate_key[0] == '\0')
		return cp_err(p, cfg->ssl_certificate_line, "no "
		    "\"ssl_certificate_key\" is defined for certificate "
		    "\"%s\"", cfg->ssl_certificate);
	if (cfg->ssl_verify_client != CFG_VERIFY_OFF &&
	    cfg->ssl_client_ca[0] == '\0')
		return cp_err(p, 0, "\"ssl_verify_client\" needs "
		    "\"ssl_client_ca\", the CA that signs client "
		    "certificates");
	if (cfg->cache_max_entry < 1024 || cfg->cache_max_entry > 64 << 20)
		return cp_err(p, 0, "\"cache_max_entry\" is 1k to 64m");
	/* an arena of a single set of 8 slots, at the least */
	if (cfg->cache_size > 0 && cfg->cache_size / 8 <
	    cfg->cache_max_entry + 256)
		return cp_err(p, 0, "\"cache %zu\" holds less than 8 entries "
		    "of cache_max_entry (%zu bytes)", cfg->cache_size,
		    cfg->cache_max_entry);
	if (cfg->limits_shared && cfg->database[0] == '\0')
		return cp_err(p, cfg->limits_line, "\"limits shared\" needs "
		    "\"database\": the hosts share their limits through it");
	if (admin_refused(cfg))
		return cp_err(p, cfg->admin_listen.line, "admin_listen %s is "
		    "not a loopback address; add \"admin_allow %s;\" to serve "
		    "/metrics and /status there", cfg->admin_listen.host,
		    cfg->admin_listen.host);
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		for (j = 0; j < r->nupstreams; j++) {
			name = st->rnames[i].name[j];
			for (k = 0; k < cfg->nupstreams; k++)
				if (strcmp(cfg->upstreams[k].name, name) == 0)
					break;
			if (k == cfg->nupstreams)
				return cp_err(p, r->line, "route \"%s\": unknown "
				    "upstream \"%s\"", r->pattern, name);
			r->upstream[j] = k;
		}
	}
	if (cfg->nroutes == 0)
		return cp_err(p, 0, "no route defined");
	for (i = 0, k = 0; i < cfg->nupstreams; i++) {
		struct cfg_upstream *u = &cfg->upstreams[i];

		u->gcp_slot = -1;
		if (u->protocol != PROTO_VERTEX)
			continue;
		if (k == CFG_MAX_VERTEX)
			return cp_err(p, u->line, "more than %d vertex "
			    "upstreams", CFG_MAX_VERTEX);
		u->gcp_slot = k++;
	}
	/* one route, one wire format: translated once, for all of them */
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		for (j = 1; j < r->nupstreams; j++) {
			const struct cfg_upstream *a, *b;

			a = &cfg->upstreams[r->upstream[0]];
			b = &cfg->upstreams[r->upstream[j]];
			if (CFG_SPEAKS_ANTHROPIC(a->protocol) !=
			    CFG_SPEAKS_ANTHROPIC(b->protocol))
				return cp_err(p, r->line, "route \"%s\": "
				    "upstreams \"%s\" and \"%s\" speak "
				    "different protocols", r->pattern, a->name,
				    b->name);
		}
	}

	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		priced = 0;
		for (k = 0; k < cfg->nprices && !priced; k++)
			priced = glob_match(cfg->prices[k].model, r->pattern,
			    strlen(r->pattern)) ||
			    glob_match(r->pattern, cfg->prices[k].model,
			    strlen(cfg->prices[k].model));
		if (!priced)
			log_warnx("%s:%d: route %s: no price, cost will be NULL",
			    p->path, r->line, r->pattern);
	}
	return 0;
}

int
cfg_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct cp_parser	 p;
	struct cfg_state	 st;
	struct config		*cfg;
	int			 rv = -1;

	cp_init(&p, path, err, errlen);
	if (path == NULL || out == NULL)
		return cp_err(&p, 0, "no configuration file");
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return cp_err(&p, 0, "out of memory");
	memset(&st, 0, sizeof(st));
	st.cfg = cfg;
	p.udata = &st;
	set_defaults(cfg);
	if (strlen(path) >= sizeof(cfg->path)) {
		cp_err(&p, 0, "path too long");
		goto done;
	}
	cp_set_str(cfg->path, sizeof(cfg->path), path);
	if (cp_open(&p) == -1 ||
	    cp_parse_file(&p, main_dirs, cp_nitems(main_dirs), cfg) == -1 ||
	    finish(&p) == -1)
		goto done;
	/* the file may hold a database password: wipe it before going on */
	cp_close(&p);
	if (cfg->keys_file[0] != '\0' && load_keys(cfg, err, errlen) == -1)
		goto done;
	*out = cfg;
	cfg = NULL;
	rv = 0;
 done:
	cp_close(&p);
	free(st.rnames);
	cfg_free(cfg);
	return rv;
}

/*
 * A file named in the config: relative to the config file's directory
 * unless absolute (the master chdirs to / once it runs as a daemon).
 */
static int
cfg_resolve(const struct config *cfg, const char *name, char *out,
    size_t outlen)
{
	const char	*slash;
	int		 n;

	if (name[0] == '/' || (slash = strrchr(cfg->path, '/')) == NULL)
		n = snprintf(out, outlen, "%s", name);
	else
		n = snprintf(out, outlen, "%.*s/%s", (int)(slash - cfg->path),
		    cfg->path, name);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* keys_file; errors are the keys file's own "KEYSPATH:LINE: message". */
static int
load_keys(struct config *cfg, char *err, size_t errlen)
{
	char		 path[PATH_MAX];

	if (cfg_resolve(cfg, cfg->keys_file, path, sizeof(path)) == -1) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: keys_file path too long",
			    cfg->path);
		return -1;
	}
	return keys_load(path, &cfg->keys, err, errlen);
}

void
cfg_free(struct config *cfg)
{
	int	 i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nupstreams; i++) {
		struct cfg_upstream	*u = &cfg->upstreams[i];
		struct awscred		 c = { u->aws_key_id, u->aws_secret,
					    u->aws_token };

		if (u->api_key != NULL) {
			explicit_bzero(u->api_key, strlen(u->api_key));
			free(u->api_key);
		}
		if (u->gcp_key != NULL) {
			explicit_bzero(u->gcp_key, strlen(u->gcp_key));
			free(u->gcp_key);
		}
		awscred_clear(&c);
	}
	free(cfg->upstreams);
	free(cfg->routes);
	free(cfg->prices);
	free(cfg->aliases);
	keys_free(cfg->keys);
	explicit_bzero(cfg->database, sizeof(cfg->database));
	free(cfg);
}

const struct cfg_route *
cfg_route_for(const struct config *cfg, const char *model, size_t len)
{
	int	 i;

	if (cfg == NULL)
		return NULL;
	for (i = 0; i < cfg->nroutes; i++)
		if (glob_match(cfg->routes[i].pattern, model, len))
			return &cfg->routes[i];
	return NULL;
}

const struct cfg_price *
cfg_price_for(const struct config *cfg, const char *model, size_t len)
{
	int	 i;

	if (cfg == NULL)
		return NULL;
	for (i = 0; i < cfg->nprices; i++)
		if (glob_match(cfg->prices[i].model, model, len))
			return &cfg->prices[i];
	return NULL;
}

/* alias NAME MODEL: clients ask for NAME, upstreams are asked for MODEL. */
static int
d_alias(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct config		*cfg = obj;
	struct cfg_alias	*a;
	const char		*name = d->args[1].s, *model = d->args[2].s;
	int			 i;

	if (*name == '\0' || *model == '\0' ||
	    strlen(name) >= CFG_PATTERN_MAX || strlen(model) >= CFG_PATTERN_MAX)
		return cp_err(p, d->line, "invalid \"alias\" directive");
	if (strpbrk(name, "*?") != NULL || strpbrk(model, "*?") != NULL)
		return cp_err(p, d->line, "alias \"%s\": no wildcards in an "
		    "alias or its model", name);
	if (strpbrk(model, "\"\\") != NULL)
		return cp_err(p, d->line, "alias \"%s\": invalid model", name);
	for (i = 0; i < cfg->naliases; i++)
		if (strcmp(cfg->aliases[i].name, name) == 0)
			return cp_err(p, d->line, "duplicate alias \"%s\"",
			    name);
	a = reallocarray(cfg->aliases, (size_t)cfg->naliases + 1, sizeof(*a));
	if (a == NULL)
		return cp_err(p, d->line, "out of memory");
	cfg->aliases = a;
	a = &cfg->aliases[cfg->naliases++];
	memset(a, 0, sizeof(*a));
	cp_set_str(a->name, sizeof(a->name), name);
	cp_set_str(a->model, sizeof(a->model), model);
	a->line = d->line;
	return 0;
}

/* deployment MODEL NAME (azure): which deployment serves MODEL. */
static int
d_deployment(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream	*u = obj;
	struct cfg_deployment	*dp;
	const char		*c;

	if (u->ndeployments == CFG_MAX_DEPLOYMENTS)
		return cp_err(p, d->line, "too many \"deployment\" lines "
		    "(at most %d)", CFG_MAX_DEPLOYMENTS);
	if (strlen(d->args[1].s) >= CFG_PATTERN_MAX ||
	    strlen(d->args[2].s) >= CFG_NAME_MAX || d->args[2].s[0] == '\0')
		return cp_err(p, d->line, "invalid \"deployment\" directive");
	for (c = d->args[2].s; *c != '\0'; c++)
		/* a Bedrock model id has a version after ':' (the path
		 * carries it encoded); written after "protocol bedrock" */
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' &&
		    *c != '.' && (*c != ':' || u->protocol != PROTO_BEDROCK) &&
		    (*c != '@' || u->protocol != PROTO_VERTEX))
			return cp_err(p, d->line, "deployment \"%s\": invalid "
			    "name", d->args[2].s);
	dp = &u->deployments[u->ndeployments++];
	cp_set_str(dp->model, sizeof(dp->model), d->args[1].s);
	cp_set_str(dp->name, sizeof(dp->name), d->args[2].s);
	return 0;
}

const struct cfg_alias *
cfg_alias_for(const struct config *cfg, const char *model, size_t len)
{
	int i;

	for (i = 0; i < cfg->naliases; i++)
		if (strlen(cfg->aliases[i].name) == len &&
		    memcmp(cfg->aliases[i].name, model, len) == 0)
			return &cfg->aliases[i];
	return NULL;
}

const char *
cfg_deployment_find(const struct cfg_upstream *u, const char *model)
{
	int i;

	for (i = 0; i < u->ndeployments; i++)
		if (glob_match(u->deployments[i].model, model, strlen(model)))
			return u->deployments[i].name;
	return NULL;
}

const char *
cfg_deployment_for(const struct cfg_upstream *u, const char *model)
{
	const char *name = cfg_deployment_find(u, model);

	return name != NULL ? name : model;
}

long
cfg_nofile_needed(const struct config *cfg)
{
	long	 n = 2L * cfg->max_connections + 64;
	int	 i;

	if (cfg->worker_rlimit_nofile > 0)
		return cfg->worker_rlimit_nofile;
	for (i = 0; i < cfg->nupstreams; i++)
		n += cfg->upstreams[i].max_idle;
	/* every slot's accept kick and the lanes' bell (shm/) */
	n += 2L * cfg->workers + 1;
	return n;
}

/*
 * A list of header names (or beta names): letters, digits and '-', as
 * written, compared case-insensitively on the request path.
 */
static int
name_list(struct cp_parser *p, struct cp_directive *d,
    char (*dst)[CFG_HDR_NAME_MAX], int *n)
{
	const char	*c;
	int		 i;

	for (i = 1; i < d->nargs; i++) {
		if (*n == CFG_MAX_HDR_NAMES)
			return cp_err(p, d->line, "\"%s\": at most %d names",
			    d->args[0].s, CFG_MAX_HDR_NAMES);
		if (d->args[i].s[0] == '\0' ||
		    strlen(d->args[i].s) >= CFG_HDR_NAME_MAX)
			return cp_err(p, d->line, "\"%s\": invalid name",
			    d->args[0].s);
		for (c = d->args[i].s; *c != '\0'; c++)
			if (!isalnum((unsigned char)*c) && *c != '-' &&
			    *c != '_' && *c != '.')
				return cp_err(p, d->line, "\"%s\": invalid "
				    "name \"%s\"", d->args[0].s, d->args[i].s);
		cp_set_str(dst[(*n)++], CFG_HDR_NAME_MAX, d->args[i].s);
	}
	return 0;
}

static int
d_pass_headers(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream *u = obj;

	return name_list(p, d, u->pass_headers, &u->npass_headers);
}

static int
d_drop_headers(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream *u = obj;

	return name_list(p, d, u->drop_headers, &u->ndrop_headers);
}

static int
d_betas(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct cfg_upstream *u = obj;

	return name_list(p, d, u->betas, &u->nbetas);
}
