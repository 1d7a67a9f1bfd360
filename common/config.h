/*
 * config.h - sluice.conf: the parsed configuration shared by every process.
 *
 * The master parses the file once (at start and on SIGHUP) with cfg_load();
 * children inherit the result through fork() and treat it as read-only.
 * Nothing here is touched on the request path except by lookup.
 * A config is one malloc'd struct plus arrays; cfg_free() releases it.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"		/* enum log_level */

#define CFG_MAX_LISTEN      8
#define CFG_MAX_ROUTE_UPS   8
#define CFG_NAME_MAX        64
#define CFG_PATTERN_MAX     128
#define CFG_MAX_DEPLOYMENTS 32
#define CFG_MAX_VERTEX      8	/* vertex upstreams (shm/gtokens slots) */
#define CFG_MAX_HDR_NAMES   16	/* names in pass_headers, drop_headers... */
#define CFG_HDR_NAME_MAX    64
#define CFG_ROUTE_MAX_TOKENS 4096	/* route max_tokens default */

struct keyring;

enum cfg_protocol {
	PROTO_OPENAI = 0,	/* OpenAI and every OpenAI-compatible server */
	PROTO_ANTHROPIC,
	PROTO_AZURE,
	PROTO_BEDROCK,		/* Anthropic's Messages on AWS Bedrock, SigV4 */
	PROTO_VERTEX,		/* Anthropic's Messages on Google Vertex AI */
};

/* The upstream takes Anthropic's Messages format (the translate stage
 * and the usage tap treat it as Anthropic). */
#define CFG_SPEAKS_ANTHROPIC(p)	((p) == PROTO_ANTHROPIC || \
				 (p) == PROTO_BEDROCK || (p) == PROTO_VERTEX)

struct cfg_addr {
	char		 host[256];	/* literal address or name, "*" = any */
	char		 port[8];
	int		 ssl;		/* listen ... ssl: clients speak TLS */
	int		 line;
};

/* ssl_protocols: the TLS versions client connections may use */
#define CFG_TLS12	0x1
#define CFG_TLS13	0x2

/* ssl_ciphers by default, for TLS 1.2 (TLS 1.3 has its own five, all
 * AEAD): forward secret AEAD suites only, Mozilla's "intermediate" list
 * without the DHE ones (no dhparam file to manage) */
#define CFG_SSL_CIPHERS	"ECDHE-ECDSA-AES128-GCM-SHA256:" \
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:" \
	"ECDHE-RSA-CHACHA20-POLY1305"

enum cfg_verify_client {
	CFG_VERIFY_OFF = 0,
	CFG_VERIFY_ON,		/* a client certificate is required */
	CFG_VERIFY_OPTIONAL,	/* asked for, checked when one is sent */
};

struct cfg_upstream {
	char		 name[CFG_NAME_MAX];
	char		 url[512];	/* as written */
	int		 tls;		/* 1 for https:// */
	char		 host[256];	/* from url; IPv6 without brackets */
	char		 port[8];	/* from url, or 80/443 */
	char		 path_prefix[256]; /* url path without trailing '/', may be "" */
	char		 strip_path[64];  /* taken off the client's path first */
	enum cfg_protocol protocol;
	char		 api_key_env[128];
	char		 api_key_file[PATH_MAX];
	char		*api_key;	/* resolved secret, NULL if none; never logged */
	char		 ca_file[PATH_MAX]; /* "" = system default store */
	int		 max_idle;		/* idle keep-alive conns per worker, 64 */
	int		 connect_timeout_ms;	/* 5s */
	int		 read_timeout_ms;	/* 300s, between reads */
	int		 idle_timeout_ms;	/* 60s, idle pooled conn lifetime */
	int		 max_fails;		/* failures in a row before down, 3 */
	int		 fail_timeout_ms;	/* how long it stays down, 10s */
	char		 api_version[32];	/* azure: ?api-version= */
	struct cfg_deployment {
		char	 model[CFG_PATTERN_MAX];
		char	 name[CFG_NAME_MAX];
	}		 deployments[CFG_MAX_DEPLOYMENTS]; /* azure: model -> deployment */
	int		 ndeployments;
	char		 organization[128];	/* OpenAI-Organization sent, "" none */
	char		 project[128];		/* OpenAI-Project sent, "" none */
	/* client headers: let a default-dropped one through; drop more */
	char		 pass_headers[CFG_MAX_HDR_NAMES][CFG_HDR_NAME_MAX];
	int		 npass_headers;
	char		 drop_headers[CFG_MAX_HDR_NAMES][CFG_HDR_NAME_MAX];
	int		 ndrop_headers;
	/* anthropic-beta values allowed through; none listed: all pass */
	char		 betas[CFG_MAX_HDR_NAMES][CFG_HDR_NAME_MAX];
	int		 nbetas;
	/* bedrock: the region, and AWS credentials from the environment
	 * variables named or a shared credentials file; never logged */
	char		 region[32];
	char		 aws_env[3][64];	/* key id, secret, token ("" none) */
	char		 aws_file[PATH_MAX];
	char		 aws_profile[64];
	char		*aws_key_id, *aws_secret, *aws_token;
	/* vertex: the project, and the service account whose tokens the
	 * master's refresher gets (master/gtoken.c); its key never logged */
	char		 gcp_project[128];
	char		 gcp_file[PATH_MAX];
	char		 gcp_email[256];
	char		*gcp_key;		/* PEM private key */
	char		 gcp_token_uri[512];
	int		 gcp_slot;		/* its shm/gtokens slot */
	int		 line;
};

struct cfg_route {
	char		 pattern[CFG_PATTERN_MAX];	/* glob on the model */
	int		 nupstreams;
	int		 upstream[CFG_MAX_ROUTE_UPS];	/* index into upstreams[] */
	int		 balance;	/* 0 failover in order, 1 least busy */
	int		 translate;	/* 1 (default): a request in the other
					   format is translated; 0: 400 */
	int64_t		 max_tokens;	/* to Anthropic, when the client sets
					   no limit; 4096 */
	int		 cache;		/* 1 (default): answers may be cached */
	int		 line;
};

struct cfg_alias {
	char		 name[CFG_PATTERN_MAX];		/* what clients ask for */
	char		 model[CFG_PATTERN_MAX];	/* what upstreams get */
	int		 line;
};

struct cfg_price {
	char		 model[CFG_PATTERN_MAX];	/* glob, first match wins */
	/* micro-USD per 1M tokens, i.e. USD per 1M tokens * 1e6 */
	int64_t		 input;
	int64_t		 output;
	int64_t		 cached;	/* -1 when not given: cached billed as input */
	int		 line;
	int64_t		 cache_write;	/* 5-minute cache writes; 1.25 x input */
	int64_t		 cache_write_1h; /* 1-hour cache writes; 2 x input */
};

struct config {
	char		 path[PATH_MAX];
	struct cfg_addr	 listen[CFG_MAX_LISTEN];
	int		 nlisten;
	struct cfg_addr	 admin_listen;
	int		 has_admin_listen;
	char		 admin_allow[280];	/* admin_listen allowed off loopback */
	int		 workers;		/* default: number of CPUs */
	char		 user[64];		/* "" = do not drop privileges */
	char		 pid_file[PATH_MAX];	/* "" = none */
	char		 log[PATH_MAX];		/* "syslog", "stderr" or a path */
	enum log_level	 log_level;		/* log FILE [warn|info|debug] */
	char		 database[1024];	/* libpq conninfo, "" = none */
	char		 spool_dir[PATH_MAX];
	char		 keys_file[PATH_MAX];	/* as written; relative to path's dir */
	int		 shutdown_timeout_ms;	/* 30s */

	/* client side limits */
	size_t		 client_max_header_size;	/* 16k */
	size_t		 client_max_body_size;		/* 16m */
	int		 client_header_timeout_ms;	/* 60s */
	int		 client_body_timeout_ms;	/* 60s */
	int		 keepalive_timeout_ms;		/* 75s */
	int		 send_timeout_ms;		/* 60s */
	int		 max_connections;		/* per worker, 4096 */
	int		 worker_rlimit_nofile;		/* 0: what max_connections needs */

	/* metering */
	int		 ring_slots;		/* events per lane, power of 2, 16384 */
	int		 batch_rows;		/* collector batch size, 1000 */
	int		 batch_ms;		/* collector max batch wait, 200ms */
	int		 metering_full_reject;	/* metering_full reject: 503, not
						   served unmetered; 0 serve */
	/* usage_retention: one of them, or neither (keep forever) */
	int		 usage_retention_months;
	int		 usage_retention_days;

	/* limits across hosts (sql/lease.c) */
	int		 limits_shared;		/* limits shared; 0 = local */
	int		 limits_line;
	int		 lease_pct;		/* limit_lease, % of a limit: 5 */
	int		 lease_ttl_ms;		/* limit_lease_ttl, 10s */
	char		 host_name[64];		/* default: gethostname() */

	/*
	 * client-facing TLS, for every "listen ... ssl": file paths as
	 * resolved (relative to the config file's directory), and the line
	 * of each, for the errors of loading them (worker/tls.c)
	 */
	char		 ssl_certificate[PATH_MAX];	/* "" = none */
	char		 ssl_certificate_key[PATH_MAX];
	char		 ssl_client_ca[PATH_MAX];	/* "" = none */
	int		 ssl_certificate_line;
	int		 ssl_certificate_key_line;
	int		 ssl_client_ca_line;
	char		 ssl_ciphers[1024];		/* TLS 1.2 cipher list */
	int		 ssl_protocols;			/* CFG_TLS12 | CFG_TLS13 */
	enum cfg_verify_client ssl_verify_client;	/* off */
	int		 ssl_session_tickets;		/* 1 */
	int		 ssl_session_timeout_ms;	/* 1h; ticket keys rotate */
	int		 nlisten_ssl;			/* "listen ... ssl" lines */

	struct cfg_upstream *upstreams;
	int		 nupstreams;
	struct cfg_route *routes;
	int		 nroutes;
	struct cfg_price *prices;
	int		 nprices;
	struct cfg_alias *aliases;
	int		 naliases;
	int		 max_attempts;		/* upstream tries per request; 0 =
						   each upstream of the route once */
	int		 default_max_tokens;	/* a request's output limit when
						   it names none: what a budget
						   or tpm holds for it */

	/* the answer cache (shm/cache.h): 0 bytes = off, the default */
	size_t		 cache_size;
	int		 cache_ttl_ms;		/* 1h */
	size_t		 cache_max_entry;	/* 64k: bigger answers not kept */

	struct keyring	*keys;		/* keys_file parsed; NULL without one */
};

/*
 * Parse PATH.  On success returns 0 and sets *out.  On error returns -1 and
 * writes "PATH:LINE: message" into err.  Unknown directives, missing ';',
 * bad values, routes naming unknown upstreams, an unreadable api_key_file
 * and an unset api_key_env are errors.  Warnings (a route with no price)
 * are not errors; they are written through log_warn().
 * With keys_file set, the keys file is loaded too (keys_load()), and its
 * errors are reported as "KEYSPATH:LINE: message".
 */
int	 cfg_load(const char *path, struct config **out, char *err, size_t errlen);
void	 cfg_free(struct config *);

/* The first route whose pattern matches MODEL, or NULL. */
const struct cfg_route *cfg_route_for(const struct config *, const char *model,
	    size_t len);
/* The model an alias stands for, or NULL when MODEL is no alias. */
const struct cfg_alias *cfg_alias_for(const struct config *, const char *model,
	    size_t len);
/* Azure: the deployment serving MODEL on U (its model name by default). */
const char *cfg_deployment_for(const struct cfg_upstream *, const char *model);
/* The deployment line's name for MODEL, or NULL when none matches. */
const char *cfg_deployment_find(const struct cfg_upstream *, const char *model);
/*
 * The open-files limit each worker needs: its clients, an upstream
 * connection per client, every idle pool, and its own (listeners, DNS,
 * log, event loop).  worker_rlimit_nofile when set.
 */
long	 cfg_nofile_needed(const struct config *);
/* The first price whose model glob matches MODEL, or NULL. */
const struct cfg_price *cfg_price_for(const struct config *, const char *model,
	    size_t len);

#endif
