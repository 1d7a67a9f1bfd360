/*
 * test_config.c - sluice.conf parsing, as the operator sees it.
 *
 * Every config is written to a real file (mkstemp) and loaded through
 * cfg_load(), so the tests see what sluiced -t sees: the parsed values, or
 * the exact "PATH:LINE: message" error with the line to fix.  Warnings go
 * through log.c; the tests that check them point the log at a file and
 * read it back.
 */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/log.h"

#define ENV_KEY		"SLUICE_TEST_OPENAI_KEY"
#define ENV_UNSET	"SLUICE_TEST_SURELY_UNSET"

/* A minimal valid tail: one upstream, one route. */
#define MINIMAL		"upstream a { url http://127.0.0.1:8000; }\n" \
			"route * a;\n"

static void	 write_file(char *, const char *, mode_t);
static struct config *load_ok(const char *);
static void	 load_ok_free(const char *);
static void	 expect_err(const char *, int, const char *);
static void	 log_to_file(char *);
static char	*slurp(const char *);

/* Write TEXT into a fresh temp file; its name goes into PATH. */
static void
write_file(char *path, const char *text, mode_t mode)
{
	size_t	 len = strlen(text);
	int	 fd;

	strcpy(path, "/tmp/sluice-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static struct config *
load_ok(const char *text)
{
	char		 path[64], err[1024];
	struct config	*cfg = NULL;
	int		 rv;

	write_file(path, text, 0600);
	rv = cfg_load(path, &cfg, err, sizeof(err));
	unlink(path);
	if (rv != 0)
		fail_msg("cfg_load failed: %s", err);
	assert_non_null(cfg);
	return cfg;
}

/* Load TEXT, expect failure with "PATH:LINE: MSG" ("PATH: MSG" if LINE 0). */
static void
expect_err(const char *text, int line, const char *msg)
{
	char		 path[64], err[1024], want[1200];
	struct config	*cfg = NULL;
	int		 rv;

	write_file(path, text, 0600);
	rv = cfg_load(path, &cfg, err, sizeof(err));
	unlink(path);
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", path, msg);
	assert_int_equal(rv, -1);
	assert_null(cfg);
	assert_string_equal(err, want);
}

static void
log_to_file(char *path)
{
	write_file(path, "", 0600);
	assert_int_equal(log_init(path, LOGL_INFO), 0);
}

static char *
slurp(const char *path)
{
	static char	 buf[8192];
	FILE		*f;
	size_t		 n;

	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void
test_full_config(void **state)
{
	char		 keyfile[64], keysconf[64], text[4096], logf[64];
	struct config	*cfg;
	const struct cfg_upstream *u;

	(void)state;
	write_file(keyfile, "sk-ant-secret \t\r\nsecond line\n", 0600);
	write_file(keysconf, "# no keys yet\n", 0600);
	setenv(ENV_KEY, "sk-openai-123", 1);
	snprintf(text, sizeof(text),
	    "# sluice.conf\n"
	    "listen 127.0.0.1:8080;\n"
	    "listen [::1]:8081;\n"
	    "listen *:8082;\n"
	    "listen 8083;\n"
	    "admin_listen 127.0.0.1:9090;   # never public\n"
	    "workers 3;\n"
	    "user sluice;\n"
	    "pid_file /run/sluice/sluiced.pid;\n"
	    "log /var/log/sluice.log debug;\n"			/* 10 */
	    "database \"host=/run/pg dbname=\\\"sl uice\\\" x=\\\\y\";\n"
	    "spool_dir /tmp/spool;\n"
	    "keys_file %s;\n"
	    "shutdown_timeout 45s;\n"
	    "client_max_header_size 32k;\n"
	    "client_max_body_size 8m;\n"
	    "client_header_timeout 10s;\n"
	    "client_body_timeout 2m;\n"
	    "keepalive_timeout 500ms;\n"
	    "send_timeout 1h;\n"				/* 20 */
	    "max_connections 100;\n"
	    "ring_slots 1024;\n"
	    "batch_rows 500;\n"
	    "batch_ms 50ms;\n"
	    "\n"
	    "route gpt-* openai local;   # forward reference\n"
	    "route claude-*\n"
	    "    anthropic;\n"
	    "route * local;\n"
	    "\n"						/* 30 */
	    "upstream openai {\n"
	    "    url https://api.openai.com/v1/;\n"
	    "    protocol openai;\n"
	    "    api_key_env " ENV_KEY ";\n"
	    "    max_idle 16;\n"
	    "    connect_timeout 2s;\n"
	    "    read_timeout 120;\n"
	    "    idle_timeout 30s;\n"
	    "}\n"
	    "upstream anthropic {\n"				/* 40 */
	    "    url https://api.anthropic.com;\n"
	    "    protocol anthropic;\n"
	    "    api_key_file %s;\n"
	    "}\n"
	    "upstream local\n"
	    "{\n"
	    "    url http://[::1]:8000;\n"
	    "    protocol azure;\n"
	    "    ca_file \"%s\";\n"
	    "}\n"						/* 50 */
	    "price gpt-4o-mini input 0.15 output 0.60 cached 0.075;\n"
	    "price claude-* input 3 output 15;\n"
	    "price * input 0 output 0;\n", keysconf, keyfile, keyfile);
	log_to_file(logf);
	cfg = load_ok(text);
	log_init("stderr", LOGL_INFO);
	/* every route has a price: no warning */
	assert_null(strstr(slurp(logf), "no price"));
	unlink(logf);
	unlink(keyfile);
	unlink(keysconf);

	assert_int_equal(cfg->nlisten, 4);
	assert_string_equal(cfg->listen[0].host, "127.0.0.1");
	assert_string_equal(cfg->listen[0].port, "8080");
	assert_int_equal(cfg->listen[0].line, 2);
	assert_string_equal(cfg->listen[1].host, "::1");
	assert_string_equal(cfg->listen[1].port, "8081");
	assert_string_equal(cfg->listen[2].host, "*");
	assert_string_equal(cfg->listen[2].port, "8082");
	assert_string_equal(cfg->listen[3].host, "*");
	assert_string_equal(cfg->listen[3].port, "8083");
	assert_int_equal(cfg->listen[3].line, 5);
	assert_int_equal(cfg->has_admin_listen, 1);
	assert_string_equal(cfg->admin_listen.host, "127.0.0.1");
	assert_string_equal(cfg->admin_listen.port, "9090");
	assert_int_equal(cfg->workers, 3);
	assert_string_equal(cfg->user, "sluice");
	assert_string_equal(cfg->pid_file, "/run/sluice/sluiced.pid");
	assert_string_equal(cfg->log, "/var/log/sluice.log");
	assert_int_equal(cfg->log_level, LOGL_DEBUG);
	assert_string_equal(cfg->database,
	    "host=/run/pg dbname=\"sl uice\" x=\\y");
	assert_string_equal(cfg->spool_dir, "/tmp/spool");
	assert_string_equal(cfg->keys_file, keysconf);
	assert_non_null(cfg->keys);
	assert_int_equal(cfg->shutdown_timeout_ms, 45000);
	assert_int_equal(cfg->client_max_header_size, 32 * 1024);
	assert_int_equal(cfg->client_max_body_size, 8 * 1024 * 1024);
	assert_int_equal(cfg->client_header_timeout_ms, 10000);
	assert_int_equal(cfg->client_body_timeout_ms, 120000);
	assert_int_equal(cfg->keepalive_timeout_ms, 500);
	assert_int_equal(cfg->send_timeout_ms, 3600000);
	assert_int_equal(cfg->max_connections, 100);
	assert_int_equal(cfg->ring_slots, 1024);
	assert_int_equal(cfg->batch_rows, 500);
	assert_int_equal(cfg->batch_ms, 50);

	assert_int_equal(cfg->nupstreams, 3);
	u = &cfg->upstreams[0];
	assert_string_equal(u->name, "openai");
	assert_string_equal(u->url, "https://api.openai.com/v1/");
	assert_int_equal(u->tls, 1);
	assert_string_equal(u->host, "api.openai.com");
	assert_string_equal(u->port, "443");
	assert_string_equal(u->path_prefix, "/v1");
	assert_int_equal(u->protocol, PROTO_OPENAI);
	assert_string_equal(u->api_key_env, ENV_KEY);
	assert_string_equal(u->api_key, "sk-openai-123");
	assert_int_equal(u->max_idle, 16);
	assert_int_equal(u->connect_timeout_ms, 2000);
	assert_int_equal(u->read_timeout_ms, 120000);
	assert_int_equal(u->idle_timeout_ms, 30000);
	assert_int_equal(u->line, 31);
	u = &cfg->upstreams[1];
	assert_string_equal(u->name, "anthropic");
	assert_string_equal(u->port, "443");
	assert_string_equal(u->path_prefix, "");
	assert_int_equal(u->protocol, PROTO_ANTHROPIC);
	assert_string_equal(u->api_key_file, keyfile);
	assert_string_equal(u->api_key, "sk-ant-secret");
	assert_string_equal(u->ca_file, "");
	/* upstream defaults */
	assert_int_equal(u->max_idle, 64);
	assert_int_equal(u->connect_timeout_ms, 5000);
	assert_int_equal(u->read_timeout_ms, 300000);
	assert_int_equal(u->idle_timeout_ms, 60000);
	u = &cfg->upstreams[2];
	assert_int_equal(u->tls, 0);
	assert_string_equal(u->host, "::1");
	assert_string_equal(u->port, "8000");
	assert_int_equal(u->protocol, PROTO_AZURE);
	assert_null(u->api_key);
	assert_string_equal(u->ca_file, keyfile);

	assert_int_equal(cfg->nroutes, 3);
	assert_string_equal(cfg->routes[0].pattern, "gpt-*");
	assert_int_equal(cfg->routes[0].nupstreams, 2);
	assert_int_equal(cfg->routes[0].upstream[0], 0);
	assert_int_equal(cfg->routes[0].upstream[1], 2);
	assert_int_equal(cfg->routes[0].line, 26);
	assert_int_equal(cfg->routes[1].nupstreams, 1);
	assert_int_equal(cfg->routes[1].upstream[0], 1);
	assert_int_equal(cfg->routes[1].line, 27);
	assert_int_equal(cfg->routes[2].upstream[0], 2);

	assert_int_equal(cfg->nprices, 3);
	assert_string_equal(cfg->prices[0].model, "gpt-4o-mini");
	assert_int_equal(cfg->prices[0].input, 150000);
	assert_int_equal(cfg->prices[0].output, 600000);
	assert_int_equal(cfg->prices[0].cached, 75000);
	assert_int_equal(cfg->prices[0].line, 51);
	assert_int_equal(cfg->prices[1].input, 3000000);
	assert_int_equal(cfg->prices[1].output, 15000000);
	assert_int_equal(cfg->prices[1].cached, -1);
	assert_int_equal(cfg->prices[2].input, 0);
	cfg_free(cfg);
}

static void
test_defaults(void **state)
{
	struct config	*cfg;
	long		 n;

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->nlisten, 1);
	assert_string_equal(cfg->listen[0].host, "127.0.0.1");
	assert_string_equal(cfg->listen[0].port, "8080");
	assert_int_equal(cfg->has_admin_listen, 0);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > 64)
		n = 64;
	assert_int_equal(cfg->workers, n);
	assert_string_equal(cfg->user, "");
	assert_string_equal(cfg->pid_file, "");
	assert_string_equal(cfg->log, "stderr");
	assert_int_equal(cfg->log_level, LOGL_INFO);
	assert_string_equal(cfg->database, "");
	assert_string_equal(cfg->spool_dir, "/var/lib/sluice/spool");
	assert_string_equal(cfg->keys_file, "");
	assert_int_equal(cfg->shutdown_timeout_ms, 30000);
	assert_int_equal(cfg->client_max_header_size, 16 * 1024);
	assert_int_equal(cfg->client_max_body_size, 16 * 1024 * 1024);
	assert_int_equal(cfg->client_header_timeout_ms, 60000);
	assert_int_equal(cfg->client_body_timeout_ms, 60000);
	assert_int_equal(cfg->keepalive_timeout_ms, 75000);
	assert_int_equal(cfg->send_timeout_ms, 60000);
	assert_int_equal(cfg->max_connections, 4096);
	assert_int_equal(cfg->ring_slots, 16384);
	assert_int_equal(cfg->batch_rows, 1000);
	assert_int_equal(cfg->batch_ms, 200);
	assert_int_equal(cfg->metering_full_reject, 0);
	assert_int_equal(cfg->nprices, 0);
	assert_int_equal(cfg->upstreams[0].protocol, PROTO_OPENAI);
	assert_string_equal(cfg->upstreams[0].port, "8000");
	cfg_free(cfg);

	cfg = load_ok("workers auto;\n" MINIMAL);
	assert_int_equal(cfg->workers, n);
	cfg_free(cfg);
	cfg = load_ok("log syslog;\n" MINIMAL);
	assert_string_equal(cfg->log, "syslog");
	assert_int_equal(cfg->log_level, LOGL_INFO);
	cfg_free(cfg);
	cfg = load_ok("log stderr warn;\n" MINIMAL);
	assert_int_equal(cfg->log_level, LOGL_WARN);
	cfg_free(cfg);
}

static void
test_syntax_errors(void **state)
{
	(void)state;
	expect_err("\n\nlisen 8080;\n" MINIMAL, 3,
	    "unknown directive \"lisen\"");
	expect_err("listen 8080\nworkers 2;\n" MINIMAL, 1, "missing ';'");
	expect_err(MINIMAL "workers 2", 3, "missing ';'");
	expect_err("upstream a {\n  url http://x\n}\nroute * a;\n", 2,
	    "upstream \"a\": missing ';'");
	expect_err("upstream a {\n  url http://x;\n\n# comment\n", 4,
	    "unexpected end of file, expecting '}'");
	expect_err("upstream a {\n  url http://x;\n", 2,
	    "unexpected end of file, expecting '}'");
	expect_err(MINIMAL "}\n", 3, "unexpected '}'");
	expect_err(MINIMAL ";\n", 3, "unexpected ';'");
	expect_err(MINIMAL "{\n", 3, "unexpected '{'");
	expect_err("database \"host=x\n\ndbname=y;\n" MINIMAL, 1,
	    "unterminated string");
	expect_err("user \"a\"b;\n" MINIMAL, 1,
	    "unexpected character after quoted string");
	expect_err("workers 2 {\n}\n" MINIMAL, 1,
	    "\"workers\" directive takes no block");
	expect_err("upstream a;\n" MINIMAL, 1,
	    "\"upstream\" directive has no opening '{'");
	expect_err("workers;\n" MINIMAL, 1,
	    "invalid number of arguments in \"workers\" directive");
	expect_err("listen 1 ssl 2;\n" MINIMAL, 1,
	    "invalid number of arguments in \"listen\" directive");
	expect_err("listen 1 2;\n" MINIMAL, 1,
	    "invalid parameter \"2\" in \"listen\" directive (expected "
	    "\"ssl\")");
	expect_err(MINIMAL "route x a a a a a a a a a;\n", 3,
	    "route \"x\": more than 8 upstreams");
	expect_err(MINIMAL "route x a translate maybe;\n", 3,
	    "route \"x\": translate is on or off, not \"maybe\"");
	expect_err(MINIMAL "route x a max_tokens 0;\n", 3,
	    "route \"x\": max_tokens \"0\" is not a count from 1");
	expect_err(MINIMAL "route x a translate off color red;\n", 3,
	    "route \"x\": unknown option \"color\" (translate, "
	    "max_tokens, cache)");
	expect_err(MINIMAL "route x a cache maybe;\n", 3,
	    "route \"x\": cache is on or off, not \"maybe\"");
	expect_err("cache 4k;\n" MINIMAL, 0,
	    "\"cache 4096\" holds less than 8 entries of cache_max_entry "
	    "(65536 bytes)");
	expect_err(MINIMAL "route x translate off;\n", 3,
	    "route \"x\": no upstream");
	expect_err("workers 2;\nworkers 3;\n" MINIMAL, 2,
	    "\"workers\" directive is duplicate");
	expect_err("upstream a {\n url http://x;\n lisen 1;\n}\n", 3,
	    "upstream \"a\": unknown directive \"lisen\"");
	expect_err("upstream a {\n url http://x;\n url http://y;\n}\n", 3,
	    "upstream \"a\": \"url\" directive is duplicate");
}

static void
test_value_errors(void **state)
{
	(void)state;
	expect_err("workers 0;\n" MINIMAL, 1,
	    "value \"0\" out of range in \"workers\" directive");
	expect_err("workers 65;\n" MINIMAL, 1,
	    "value \"65\" out of range in \"workers\" directive");
	expect_err("workers two;\n" MINIMAL, 1,
	    "invalid value \"two\" in \"workers\" directive");
	expect_err("shutdown_timeout 5x;\n" MINIMAL, 1,
	    "invalid value \"5x\" in \"shutdown_timeout\" directive");
	expect_err("client_max_body_size 0;\n" MINIMAL, 1,
	    "value \"0\" out of range in \"client_max_body_size\" directive");
	expect_err("client_max_body_size 1t;\n" MINIMAL, 1,
	    "invalid value \"1t\" in \"client_max_body_size\" directive");
	expect_err("ring_slots 3000;\n" MINIMAL, 1,
	    "\"ring_slots\" must be a power of two");
	expect_err("ring_slots 512;\n" MINIMAL, 1,
	    "value \"512\" out of range in \"ring_slots\" directive");
	expect_err("ring_slots 2097152;\n" MINIMAL, 1,
	    "value \"2097152\" out of range in \"ring_slots\" directive");
	expect_err("log stderr loud;\n" MINIMAL, 1,
	    "invalid log level \"loud\"");
	expect_err("user \"\";\n" MINIMAL, 1,
	    "empty value in \"user\" directive");
	expect_err("listen ::1:8080;\n" MINIMAL, 1,
	    "invalid address \"::1:8080\" in \"listen\" directive");
	expect_err("listen host:99999;\n" MINIMAL, 1,
	    "invalid address \"host:99999\" in \"listen\" directive");
	expect_err("listen :80;\n" MINIMAL, 1,
	    "invalid address \":80\" in \"listen\" directive");
	expect_err("listen 80;\nlisten *:80;\n" MINIMAL, 2,
	    "duplicate listen \"*:80\"");
	expect_err("listen 1;\nlisten 2;\nlisten 3;\nlisten 4;\nlisten 5;\n"
	    "listen 6;\nlisten 7;\nlisten 8;\nlisten 9;\n" MINIMAL, 9,
	    "too many \"listen\" directives (max 8)");
	expect_err("admin_listen nope;\n" MINIMAL, 1,
	    "invalid address \"nope\" in \"admin_listen\" directive");
}

static void
test_upstream_errors(void **state)
{
	(void)state;
	expect_err("route * a;\nupstream a {\n protocol openai;\n}\n", 2,
	    "upstream \"a\": missing \"url\"");
	expect_err("upstream a {\n url ftp://x;\n}\nroute * a;\n", 2,
	    "upstream \"a\": invalid url \"ftp://x\": scheme must be http:// "
	    "or https://");
	expect_err("upstream a {\n url http://x:0;\n}\nroute * a;\n", 2,
	    "upstream \"a\": invalid url \"http://x:0\": invalid port");
	expect_err("upstream a {\n url http:///v1;\n}\nroute * a;\n", 2,
	    "upstream \"a\": invalid url \"http:///v1\": missing host");
	expect_err("upstream a {\n url http://x/v1?a=b;\n}\nroute * a;\n", 2,
	    "upstream \"a\": invalid url \"http://x/v1?a=b\": query and "
	    "fragment are not supported");
	expect_err("upstream a {\n url http://u:p@x;\n}\nroute * a;\n", 2,
	    "upstream \"a\": invalid url \"http://u:p@x\": user info is not "
	    "supported");
	expect_err("upstream a {\n url http://x;\n protocol grpc;\n}\n"
	    "route * a;\n", 3, "upstream \"a\": invalid protocol \"grpc\" "
	    "(expected openai, anthropic, azure, bedrock or vertex)");
	expect_err(MINIMAL "upstream a {\n url http://y;\n}\n", 3,
	    "duplicate upstream \"a\"");
	unsetenv(ENV_UNSET);
	expect_err("upstream a {\n url http://x;\n\n api_key_env "
	    ENV_UNSET ";\n}\nroute * a;\n", 4, "upstream \"a\": environment "
	    "variable \"" ENV_UNSET "\" is not set");
	expect_err("upstream a {\n url http://x;\n api_key_file "
	    "/nonexistent/key;\n}\nroute * a;\n", 3, "upstream \"a\": cannot "
	    "read api_key_file \"/nonexistent/key\": No such file or "
	    "directory");
	expect_err("upstream a {\n url http://x;\n ca_file /nonexistent/ca;\n"
	    "}\nroute * a;\n", 3, "upstream \"a\": cannot read ca_file "
	    "\"/nonexistent/ca\": No such file or directory");
	setenv(ENV_KEY, "k", 1);
	expect_err("upstream a {\n url http://x;\n api_key_env " ENV_KEY ";\n"
	    " api_key_file /x;\n}\nroute * a;\n", 4, "upstream \"a\": "
	    "api_key_env and api_key_file are mutually exclusive");
	expect_err("upstream a {\n url http://x;\n max_idle -1;\n}\n"
	    "route * a;\n", 3, "upstream \"a\": invalid value \"-1\" in "
	    "\"max_idle\" directive");
}

static void
test_route_and_price_errors(void **state)
{
	(void)state;
	expect_err("upstream a { url http://x; }\n\nroute gpt-* nope;\n", 3,
	    "route \"gpt-*\": unknown upstream \"nope\"");
	expect_err("route gpt-* a b;\n\nupstream a { url http://x; }\n", 1,
	    "route \"gpt-*\": unknown upstream \"b\"");
	expect_err(MINIMAL "route * a;\n", 3, "duplicate route \"*\"");
	expect_err("upstream a { url http://x; }\n", 0, "no route defined");
	expect_err("", 0, "no route defined");
	expect_err(MINIMAL "price m input 1;\n", 3,
	    "invalid number of arguments in \"price\" directive");
	expect_err(MINIMAL "price m input 1 cached 1;\n", 3,
	    "price \"m\": missing \"output\"");
	expect_err(MINIMAL "price m output 1 cached 1;\n", 3,
	    "price \"m\": missing \"input\"");
	expect_err(MINIMAL "price m input 1 output 2 extra;\n", 3,
	    "invalid number of arguments in \"price\" directive");
	expect_err(MINIMAL "price m input 1 outptu 2;\n", 3,
	    "price \"m\": unknown field \"outptu\"");
	expect_err(MINIMAL "price m input 1 input 2;\n", 3,
	    "price \"m\": duplicate field \"input\"");
	expect_err(MINIMAL "price m input 1.1234567 output 2;\n", 3,
	    "price \"m\": invalid amount \"1.1234567\"");
	expect_err(MINIMAL "price m input 1 output 2;\nprice m input 1 "
	    "output 2;\n", 4, "duplicate price \"m\"");
}

/* metering_full takes serve or reject, nothing else. */
static void
test_metering_full(void **state)
{
	struct config	*cfg;

	cfg = load_ok("metering_full reject;\n" MINIMAL);
	assert_int_equal(cfg->metering_full_reject, 1);
	cfg_free(cfg);
	cfg = load_ok("metering_full serve;\n" MINIMAL);
	assert_int_equal(cfg->metering_full_reject, 0);
	cfg_free(cfg);
	expect_err("metering_full drop;\n" MINIMAL, 1,
	    "invalid value \"drop\" in \"metering_full\" directive: serve "
	    "or reject");
	expect_err("metering_full serve reject;\n" MINIMAL, 1,
	    "invalid number of arguments in \"metering_full\" directive");
}

/* usage_retention: whole months or days, or forever (the default). */
static void
test_usage_retention(void **state)
{
	static const char *const bad[] = {
		"13", "months", "0months", "-1days", "13 months", "2weeks",
		"1201months", "36501days", "13monthsx", "99999999999999999days",
	};
	struct config	*cfg;
	char		 conf[256], want[256];
	size_t		 i;

	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->usage_retention_months, 0);
	assert_int_equal(cfg->usage_retention_days, 0);
	cfg_free(cfg);
	cfg = load_ok("usage_retention 13months;\n" MINIMAL);
	assert_int_equal(cfg->usage_retention_months, 13);
	assert_int_equal(cfg->usage_retention_days, 0);
	cfg_free(cfg);
	cfg = load_ok("usage_retention 1month;\n" MINIMAL);
	assert_int_equal(cfg->usage_retention_months, 1);
	cfg_free(cfg);
	cfg = load_ok("usage_retention 400days;\n" MINIMAL);
	assert_int_equal(cfg->usage_retention_months, 0);
	assert_int_equal(cfg->usage_retention_days, 400);
	cfg_free(cfg);
	cfg = load_ok("usage_retention forever;\n" MINIMAL);
	assert_int_equal(cfg->usage_retention_months, 0);
	assert_int_equal(cfg->usage_retention_days, 0);
	cfg_free(cfg);
	expect_err("usage_retention 400days;\nusage_retention forever;\n"
	    MINIMAL, 2, "\"usage_retention\" directive is duplicate");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(conf, sizeof(conf), "usage_retention \"%s\";\n%s",
		    bad[i], MINIMAL);
		snprintf(want, sizeof(want), "invalid value \"%s\" in "
		    "\"usage_retention\" directive: a number of months or "
		    "days (13months, 400days; at most 100 years) or forever",
		    bad[i]);
		expect_err(conf, 1, want);
	}
}

/* limits local | shared, the lease's slice and lifetime, host_name. */
static void
test_limits_shared(void **state)
{
	struct config	*cfg;
	char		 host[64];

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->limits_shared, 0);
	assert_int_equal(cfg->lease_pct, 5);
	assert_int_equal(cfg->lease_ttl_ms, 10000);
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		assert_string_equal(cfg->host_name, host);
	}
	cfg_free(cfg);
	cfg = load_ok("limits shared;\ndatabase \"dbname=x\";\n"
	    "limit_lease 2%;\nlimit_lease_ttl 30s;\nhost_name gw-b;\n"
	    MINIMAL);
	assert_int_equal(cfg->limits_shared, 1);
	assert_int_equal(cfg->lease_pct, 2);
	assert_int_equal(cfg->lease_ttl_ms, 30000);
	assert_string_equal(cfg->host_name, "gw-b");
	cfg_free(cfg);
	cfg = load_ok("limits local;\n" MINIMAL);
	assert_int_equal(cfg->limits_shared, 0);
	cfg_free(cfg);
	expect_err("\nlimits shared;\n" MINIMAL, 2, "\"limits shared\" "
	    "needs \"database\": the hosts share their limits through it");
	expect_err("limits both;\n" MINIMAL, 1, "invalid value \"both\" in "
	    "\"limits\" directive: local or shared");
	expect_err("limit_lease 51%;\n" MINIMAL, 1, "invalid value \"51%\" "
	    "in \"limit_lease\" directive: a percentage of the limit, 1% "
	    "to 50%");
	expect_err("limit_lease 5;\n" MINIMAL, 1, "invalid value \"5\" "
	    "in \"limit_lease\" directive: a percentage of the limit, 1% "
	    "to 50%");
	expect_err("limit_lease_ttl 100ms;\n" MINIMAL, 1,
	    "value \"100ms\" out of range in \"limit_lease_ttl\" directive");
	expect_err("host_name \"\";\n" MINIMAL, 1,
	    "empty value in \"host_name\" directive");
}

static void
test_missing_file(void **state)
{
	struct config	*cfg = (struct config *)0x1;
	char		 err[256];

	(void)state;
	assert_int_equal(cfg_load("/nonexistent/sluice.conf", &cfg, err,
	    sizeof(err)), -1);
	assert_string_equal(err,
	    "/nonexistent/sluice.conf: No such file or directory");
	/* a failed (re)load leaves the caller's pointer alone */
	assert_ptr_equal(cfg, (struct config *)0x1);
}

static void
test_api_key_file_mode_warns(void **state)
{
	char		 keyfile[64], logf[64], text[512], msg[256];
	struct config	*cfg;

	(void)state;
	/* readable by every user: refused, without showing the secret */
	write_file(keyfile, "sk-open\n", 0644);
	snprintf(text, sizeof(text), "upstream a {\n url http://x;\n"
	    " api_key_file %s;\n}\nroute * a;\n", keyfile);
	snprintf(msg, sizeof(msg), "upstream \"a\": api_key_file \"%s\" is "
	    "readable by every user (mode 0644); chmod o-r it", keyfile);
	expect_err(text, 3, msg);
	/* readable by its group: a warning */
	assert_int_equal(chmod(keyfile, 0640), 0);
	log_to_file(logf);
	cfg = load_ok(text);
	log_init("stderr", LOGL_INFO);
	assert_string_equal(cfg->upstreams[0].api_key, "sk-open");
	assert_non_null(strstr(slurp(logf), "accessible by group or others"));
	/* the secret itself is never logged */
	assert_null(strstr(slurp(logf), "sk-open"));
	cfg_free(cfg);
	unlink(logf);

	/* an empty key file is an error, not an empty key */
	assert_int_equal(truncate(keyfile, 0), 0);
	snprintf(msg, sizeof(msg), "upstream \"a\": api_key_file \"%s\" is "
	    "empty", keyfile);
	expect_err(text, 3, msg);
	unlink(keyfile);
}

/* listen ... ssl and the ssl_* directives: what sluiced -t refuses. */
static void
test_ssl_directives(void **state)
{
	char		 cert[64], key[64], text[1024], msg[512];
	struct config	*cfg;

	(void)state;
	write_file(cert, "not read here: worker/tls.c loads it\n", 0644);
	write_file(key, "secret\n", 0600);
	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->nlisten_ssl, 0);
	assert_int_equal(cfg->ssl_protocols, CFG_TLS12 | CFG_TLS13);
	assert_string_equal(cfg->ssl_ciphers, CFG_SSL_CIPHERS);
	assert_int_equal(cfg->ssl_verify_client, CFG_VERIFY_OFF);
	assert_int_equal(cfg->ssl_session_tickets, 1);
	assert_int_equal(cfg->ssl_session_timeout_ms, 3600 * 1000);
	cfg_free(cfg);

	snprintf(text, sizeof(text), "listen 127.0.0.1:8443 ssl;\n"
	    "listen 8080;\nssl_certificate %s;\nssl_certificate_key %s;\n"
	    "ssl_protocols TLSv1.3;\nssl_session_timeout 10m;\n"
	    "ssl_session_tickets off;\n" MINIMAL, cert, key);
	cfg = load_ok(text);
	assert_int_equal(cfg->nlisten, 2);
	assert_int_equal(cfg->listen[0].ssl, 1);
	assert_int_equal(cfg->listen[1].ssl, 0);
	assert_int_equal(cfg->nlisten_ssl, 1);
	assert_string_equal(cfg->ssl_certificate, cert);
	assert_int_equal(cfg->ssl_certificate_line, 3);
	assert_int_equal(cfg->ssl_protocols, CFG_TLS13);
	assert_int_equal(cfg->ssl_session_timeout_ms, 600 * 1000);
	assert_int_equal(cfg->ssl_session_tickets, 0);
	cfg_free(cfg);

	expect_err("listen 8443 ssl;\n" MINIMAL, 1, "no \"ssl_certificate\" "
	    "is defined for the \"listen ... ssl\" directive");
	snprintf(text, sizeof(text), "listen 8443 ssl;\nssl_certificate %s;\n"
	    MINIMAL, cert);
	snprintf(msg, sizeof(msg), "no \"ssl_certificate_key\" is defined "
	    "for certificate \"%s\"", cert);
	expect_err(text, 2, msg);
	expect_err("ssl_certificate /nonexistent/c.pem;\n" MINIMAL, 1,
	    "cannot read ssl_certificate \"/nonexistent/c.pem\": No such "
	    "file or directory");
	expect_err("ssl_protocols TLSv1.1;\n" MINIMAL, 1, "invalid value "
	    "\"TLSv1.1\" in \"ssl_protocols\" directive (TLSv1.2 or "
	    "TLSv1.3)");
	snprintf(text, sizeof(text), "ssl_certificate %s;\n"
	    "ssl_certificate_key %s;\nssl_verify_client on;\n" MINIMAL,
	    cert, key);
	expect_err(text, 0, "\"ssl_verify_client\" needs \"ssl_client_ca\", "
	    "the CA that signs client certificates");
	expect_err("ssl_verify_client maybe;\n" MINIMAL, 1, "invalid value "
	    "\"maybe\" in \"ssl_verify_client\" directive: on, optional or "
	    "off");
	/* the key, like keys_file, must not be readable by every user */
	assert_int_equal(chmod(key, 0644), 0);
	snprintf(text, sizeof(text), "ssl_certificate %s;\n"
	    "ssl_certificate_key %s;\n" MINIMAL, cert, key);
	snprintf(msg, sizeof(msg), "ssl_certificate_key \"%s\" is readable "
	    "by every user (mode 0644); chmod o-r it", key);
	expect_err(text, 2, msg);
	assert_int_equal(chmod(key, 0640), 0);
	cfg_free(load_ok(text));
	unlink(cert);
	unlink(key);
}

static void
test_no_price_warns(void **state)
{
	char		 logf[64];
	const char	*log;
	struct config	*cfg;

	(void)state;
	log_to_file(logf);
	cfg = load_ok("upstream a { url http://x; }\n"
	    "route gpt-* a;\n"
	    "route claude-* a;\n"
	    "route llama-* a;\n"
	    "price gpt-4o input 1 output 2;\n"
	    "price claude-* input 1 output 2;\n");
	log_init("stderr", LOGL_INFO);
	log = slurp(logf);
	assert_null(strstr(log, "route gpt-*: no price"));
	assert_null(strstr(log, "route claude-*: no price"));
	assert_non_null(strstr(log,
	    ":4: route llama-*: no price, cost will be NULL"));
	cfg_free(cfg);
	unlink(logf);
}

/* translate and max_tokens follow a route's upstreams; both default */
static void
test_route_options(void **state)
{
	struct config		*cfg;
	const struct cfg_route	*r;

	(void)state;
	cfg = load_ok("route claude-* b translate off;\n"
	    "route gpt-* failover a c max_tokens 8192 translate on;\n"
	    "route * a;\n"
	    "upstream a { url http://a; }\n"
	    "upstream b { url http://b; protocol anthropic; }\n"
	    "upstream c { url http://c; }\n");
	r = cfg_route_for(cfg, "claude-3", 8);
	assert_int_equal(r->nupstreams, 1);
	assert_int_equal(r->translate, 0);
	assert_int_equal(r->max_tokens, 4096);
	r = cfg_route_for(cfg, "gpt-4", 5);
	assert_int_equal(r->nupstreams, 2);
	assert_int_equal(r->upstream[1], 2);
	assert_int_equal(r->translate, 1);
	assert_int_equal(r->max_tokens, 8192);
	r = cfg_route_for(cfg, "llama", 5);
	assert_int_equal(r->translate, 1);
	assert_int_equal(r->max_tokens, 4096);
	cfg_free(cfg);
}

static void
test_route_for(void **state)
{
	struct config		*cfg;
	const struct cfg_route	*r;
	const struct cfg_price	*pr;
	const char		*model = "gpt-4o-mini-extra";

	(void)state;
	cfg = load_ok("route gpt-4o* b;\n"
	    "route gpt-* a b;\n"
	    "route claude-? b;\n"
	    "upstream a { url http://a; }\n"
	    "upstream b { url http://b; }\n"
	    "price gpt-4o-mini input 0.15 output 0.6;\n"
	    "price gpt-* input 2.5 output 10;\n"
	    "price claude-* input 3 output 15 cached 0.3 cache_write 4 "
	    "cache_write_1h 7;\n");
	/* cache writes: as Anthropic bills them unless given */
	pr = cfg_price_for(cfg, "gpt-4o-mini", 11);
	assert_int_equal(pr->cache_write, 187500);
	assert_int_equal(pr->cache_write_1h, 300000);
	pr = cfg_price_for(cfg, "claude-3", 8);
	assert_int_equal(pr->cached, 300000);
	assert_int_equal(pr->cache_write, 4000000);
	assert_int_equal(pr->cache_write_1h, 7000000);
	r = cfg_route_for(cfg, "gpt-4o-mini", 11);
	assert_non_null(r);
	assert_int_equal(r->line, 1);		/* first match wins */
	assert_int_equal(r->upstream[0], 1);
	r = cfg_route_for(cfg, "gpt-3.5", 7);
	assert_non_null(r);
	assert_int_equal(r->line, 2);
	assert_int_equal(r->nupstreams, 2);
	assert_int_equal(r->upstream[0], 0);
	assert_int_equal(r->upstream[1], 1);
	assert_non_null(cfg_route_for(cfg, "claude-3", 8));
	assert_null(cfg_route_for(cfg, "claude-35", 9));
	assert_null(cfg_route_for(cfg, "llama", 5));

	pr = cfg_price_for(cfg, "gpt-4o-mini", 11);
	assert_non_null(pr);
	assert_int_equal(pr->input, 150000);
	/* only LEN bytes count: "gpt-4o-mini" is not the whole string */
	pr = cfg_price_for(cfg, model, 11);
	assert_non_null(pr);
	assert_int_equal(pr->input, 150000);
	pr = cfg_price_for(cfg, model, strlen(model));
	assert_non_null(pr);
	assert_int_equal(pr->input, 2500000);
	assert_null(cfg_price_for(cfg, "llama", 5));
	cfg_free(cfg);
}

static void
test_url_forms(void **state)
{
	struct config	*cfg;

	(void)state;
	cfg = load_ok("upstream a { url HTTP://Example.com:8443//; }\n"
	    "upstream b { url https://[2001:db8::1]/openai/deployments/; }\n"
	    "upstream c { url http://h/p; }\n"
	    "route * a b c;\n");
	assert_int_equal(cfg->upstreams[0].tls, 0);
	assert_string_equal(cfg->upstreams[0].host, "Example.com");
	assert_string_equal(cfg->upstreams[0].port, "8443");
	assert_string_equal(cfg->upstreams[0].path_prefix, "");
	assert_int_equal(cfg->upstreams[1].tls, 1);
	assert_string_equal(cfg->upstreams[1].host, "2001:db8::1");
	assert_string_equal(cfg->upstreams[1].port, "443");
	assert_string_equal(cfg->upstreams[1].path_prefix,
	    "/openai/deployments");
	assert_string_equal(cfg->upstreams[2].port, "80");
	assert_string_equal(cfg->upstreams[2].path_prefix, "/p");
	cfg_free(cfg);
}

/* A bedrock upstream: its region and AWS credentials, from the named
 * environment variables or a credentials file only sluice may read. */
static void
test_bedrock_upstream(void **state)
{
	struct config	*cfg;
	char		 cred[64], text[512], want[256];

	(void)state;
	setenv("SLUICE_T_AK", "AKIDTEST", 1);
	setenv("SLUICE_T_SK", "secret/key", 1);
	cfg = load_ok("upstream b {\n url https://bedrock-runtime.us-east-1."
	    "amazonaws.com;\n protocol bedrock;\n region us-east-1;\n"
	    " aws_credentials_env SLUICE_T_AK SLUICE_T_SK;\n"
	    " deployment claude-* anthropic.claude-3-haiku-20240307-v1:0;\n}\n"
	    "route claude-* b;\n");
	assert_int_equal(cfg->upstreams[0].protocol, PROTO_BEDROCK);
	assert_string_equal(cfg->upstreams[0].region, "us-east-1");
	assert_string_equal(cfg->upstreams[0].aws_key_id, "AKIDTEST");
	assert_string_equal(cfg->upstreams[0].aws_secret, "secret/key");
	assert_null(cfg->upstreams[0].aws_token);
	assert_string_equal(cfg_deployment_for(&cfg->upstreams[0],
	    "claude-3-haiku"), "anthropic.claude-3-haiku-20240307-v1:0");
	cfg_free(cfg);

	write_file(cred, "# test\n[other]\naws_access_key_id = X\n\n"
	    "[default]\n aws_access_key_id = AKIDFILE \n"
	    "aws_secret_access_key=s3cr3t\naws_session_token = tok\n"
	    "region = eu-west-1\n", 0600);
	snprintf(text, sizeof(text), "upstream b {\n url http://127.0.0.1:1;"
	    "\n protocol bedrock;\n region eu-west-1;\n"
	    " aws_credentials_file %s;\n}\nroute * b;\n", cred);
	cfg = load_ok(text);
	assert_string_equal(cfg->upstreams[0].aws_key_id, "AKIDFILE");
	assert_string_equal(cfg->upstreams[0].aws_secret, "s3cr3t");
	assert_string_equal(cfg->upstreams[0].aws_token, "tok");
	cfg_free(cfg);
	snprintf(text, sizeof(text), "upstream b {\n url http://127.0.0.1:1;"
	    "\n protocol bedrock;\n region eu-west-1;\n"
	    " aws_credentials_file %s other;\n}\nroute * b;\n", cred);
	snprintf(want, sizeof(want), "upstream \"b\": aws_credentials_file "
	    "\"%s\": profile [other] has no aws_access_key_id or no "
	    "aws_secret_access_key", cred);
	expect_err(text, 5, want);
	/* readable by every user: refused */
	chmod(cred, 0644);
	snprintf(text, sizeof(text), "upstream b {\n url http://127.0.0.1:1;"
	    "\n protocol bedrock;\n region eu-west-1;\n"
	    " aws_credentials_file %s;\n}\nroute * b;\n", cred);
	snprintf(want, sizeof(want), "upstream \"b\": aws_credentials_file "
	    "\"%s\" is readable by every user (mode 0644); chmod o-r it",
	    cred);
	expect_err(text, 5, want);
	unlink(cred);

	expect_err("upstream b {\n url http://x;\n protocol bedrock;\n"
	    " aws_credentials_env SLUICE_T_AK SLUICE_T_SK;\n}\nroute * b;\n",
	    1, "upstream \"b\": protocol bedrock needs \"region\"");
	expect_err("upstream b {\n url http://x;\n protocol bedrock;\n"
	    " region us-east-1;\n}\nroute * b;\n", 1, "upstream \"b\": "
	    "protocol bedrock needs aws_credentials_env or "
	    "aws_credentials_file");
	expect_err("upstream b {\n url http://x;\n region us-east-1;\n}\n"
	    "route * b;\n", 1, "upstream \"b\": region and "
	    "aws_credentials_* are for protocol bedrock or vertex");
	/* one route, one format: bedrock goes with anthropic, not openai */
	load_ok_free("upstream a {\n url http://x;\n protocol anthropic;\n}\n"
	    "upstream b {\n url http://y;\n protocol bedrock;\n"
	    " region us-east-1;\n aws_credentials_env SLUICE_T_AK SLUICE_T_SK;"
	    "\n}\nroute * a b;\n");
	expect_err("upstream a {\n url http://x;\n}\n"
	    "upstream b {\n url http://y;\n protocol bedrock;\n"
	    " region us-east-1;\n aws_credentials_env SLUICE_T_AK SLUICE_T_SK;"
	    "\n}\nroute * a b;\n", 10, "route \"*\": upstreams \"a\" and "
	    "\"b\" speak different protocols");
}

/* A vertex upstream: project, region and a service-account key file. */
static void
test_vertex_upstream(void **state)
{
	struct config	*cfg;
	char		 sa[64], text[768], want[256];

	(void)state;
	write_file(sa, "{\"type\":\"service_account\",\"client_email\":"
	    "\"sa@p.iam.gserviceaccount.com\",\"private_key\":\"-----BEGIN "
	    "PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----\\n\","
	    "\"token_uri\":\"https://oauth2.googleapis.com/token\"}", 0600);
	snprintf(text, sizeof(text), "upstream v {\n url https://x;\n"
	    " protocol vertex;\n region us-east5;\n gcp_project p1;\n"
	    " gcp_credentials_file %s;\n deployment claude-* "
	    "claude-3-5-sonnet-v2@20241022;\n}\nupstream a {\n url http://y;"
	    "\n}\nroute claude-* v;\nroute * a;\n", sa);
	cfg = load_ok(text);
	assert_int_equal(cfg->upstreams[0].protocol, PROTO_VERTEX);
	assert_string_equal(cfg->upstreams[0].gcp_project, "p1");
	assert_string_equal(cfg->upstreams[0].gcp_email,
	    "sa@p.iam.gserviceaccount.com");
	/* the JSON escapes undone: a PEM OpenSSL can read */
	assert_string_equal(cfg->upstreams[0].gcp_key, "-----BEGIN PRIVATE "
	    "KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
	assert_string_equal(cfg->upstreams[0].gcp_token_uri,
	    "https://oauth2.googleapis.com/token");
	assert_int_equal(cfg->upstreams[0].gcp_slot, 0);
	assert_int_equal(cfg->upstreams[1].gcp_slot, -1);
	cfg_free(cfg);
	unlink(sa);

	write_file(sa, "{\"client_email\":\"x\"}", 0600);
	snprintf(text, sizeof(text), "upstream v {\n url https://x;\n"
	    " protocol vertex;\n region r;\n gcp_project p;\n"
	    " gcp_credentials_file %s;\n}\nroute * v;\n", sa);
	snprintf(want, sizeof(want), "upstream \"v\": gcp_credentials_file "
	    "\"%s\": not a service account key (client_email, private_key, "
	    "token_uri)", sa);
	expect_err(text, 6, want);
	unlink(sa);
	expect_err("upstream v {\n url https://x;\n protocol vertex;\n"
	    " region r;\n}\nroute * v;\n", 1, "upstream \"v\": protocol "
	    "vertex needs \"region\", \"gcp_project\" and "
	    "\"gcp_credentials_file\"");
	expect_err("upstream v {\n url https://x;\n gcp_project p;\n}\n"
	    "route * v;\n", 1, "upstream \"v\": gcp_project and "
	    "gcp_credentials_file are for protocol vertex");
}

static void
load_ok_free(const char *text)
{
	cfg_free(load_ok(text));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_config),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_upstream_errors),
		cmocka_unit_test(test_route_and_price_errors),
		cmocka_unit_test(test_metering_full),
		cmocka_unit_test(test_usage_retention),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_api_key_file_mode_warns),
		cmocka_unit_test(test_ssl_directives),
		cmocka_unit_test(test_no_price_warns),
		cmocka_unit_test(test_route_options),
		cmocka_unit_test(test_route_for),
		cmocka_unit_test(test_limits_shared),
		cmocka_unit_test(test_url_forms),
		cmocka_unit_test(test_bedrock_upstream),
		cmocka_unit_test(test_vertex_upstream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
