/*
 * sluicectl.c - main() of sluicectl, the operator's command-line tool.
 *
 *   sluicectl [-c FILE] COMMAND [ARGS...]
 *
 * Commands live in one table, each a list of words and a function, so a
 * new one (key new, status, reload, stop) is one entry and one function.
 * Every command reads the same configuration as sluiced, reports errors
 * on stderr and exits 0 or 1; nothing here runs inside the daemon.  A
 * command's function gets its arguments as main() would, argv[0] being
 * its last word, so that it can use getopt itself.
 *
 * `key new` makes the secret from OpenSSL's RAND_bytes and prints it once
 * with the block to append to keys.conf; only the block's hash is kept
 * anywhere, so the secret is wiped from memory as soon as it is printed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/confparse.h"
#include "common/keys.h"
#include "common/log.h"
#include "master/ctl_daemon.h"
#include "master/ctl_db.h"
#include "master/ctl_spool.h"
#include "master/ctl_usage.h"
#include "sql/parts.h"
#include "sql/pgsession.h"
#include "sql/schema.h"

#define DEFAULT_CONFIG	"/etc/sluice/sluice.conf"
#define CMD_WORDS_MAX	3
#define SECRET_BYTES	32
#define SECRET_IN_MAX	4096	/* key hash: longest secret read */

struct ctl_cmd {
	const char	*words[CMD_WORDS_MAX];	/* NULL-terminated if short */
	const char	*args;			/* for the usage line */
	const char	*help;
	int		 need_config;
	int		 (*run)(const struct config *, int, char **);
};

static int	 ctl_db_init(const struct config *, int, char **);
static int	 ctl_key_new(const struct config *, int, char **);
static int	 ctl_key_hash(const struct config *, int, char **);
static int	 ctl_key_check(const struct config *, int, char **);
static int	 ctl_status_cmd(const struct config *, int, char **);
static int	 ctl_reload_cmd(const struct config *, int, char **);
static int	 ctl_stop_cmd(const struct config *, int, char **);
static int	 ctl_cache_flush_cmd(const struct config *, int, char **);
static int	 ctl_spool_replay_cmd(const struct config *, int, char **);
static int	 ctl_own_config(int, char **, const char *, int,
		    struct config **);
static int	 ctl_prices_check(const struct config *, int, char **);
static int	 ctl_usage_cmd(const struct config *, int, char **);

static const struct ctl_cmd ctl_cmds[] = {
	{ { "db", "init" }, "", "create or upgrade the database schema",
	    1, ctl_db_init },
	{ { "prices", "check" }, "[-c file] [--since interval]",
	    "models billed without a price (exit 1 if any)", 0,
	    ctl_prices_check },
	{ { "key", "new" }, "NAME [options]",
	    "print a new secret and its keys.conf block", 0, ctl_key_new },
	{ { "key", "hash" }, "", "hash a secret read from stdin",
	    0, ctl_key_hash },
	{ { "key", "check" }, "[-c file]",
	    "load the config and keys_file, count the keys", 0, ctl_key_check },
	{ { "status" }, "[-w secs] [-n count]",
	    "live numbers from admin_listen (-w: refresh)", 0, ctl_status_cmd },
	{ { "reload" }, "[-t secs]",
	    "SIGHUP the master, say if the reload was applied", 0,
	    ctl_reload_cmd },
	{ { "stop" }, "[-t secs]", "SIGTERM the master, wait until it exits",
	    0, ctl_stop_cmd },
	{ { "cache", "flush" }, "[KEY]",
	    "empty the answer cache, or drop what KEY stored", 0,
	    ctl_cache_flush_cmd },
	{ { "spool", "replay" }, "[-c file] [dir]",
	    "load a spool directory into the database", 0,
	    ctl_spool_replay_cmd },
	{ { "usage" }, "[-c file] [--by key|team|tag|user|model] "
	    "[--since 24h|7d|month] [--limit n] [--csv]",
	    "who spent what: top spenders by cost", 0, ctl_usage_cmd },
};

/* -c FILE, for the commands that load the configuration themselves. */
static const char	*ctl_conffile = DEFAULT_CONFIG;

/* status, reload, stop talk to the daemon: master/ctl_daemon.c */
static int
ctl_status_cmd(const struct config *unused, int argc, char **argv)
{
	return ctl_status(ctl_conffile, argc, argv);
}

static int
ctl_reload_cmd(const struct config *unused, int argc, char **argv)
{
	return ctl_reload(ctl_conffile, argc, argv);
}

static int
ctl_cache_flush_cmd(const struct config *unused, int argc, char **argv)
{
	return ctl_cache_flush(ctl_conffile, argc, argv);
}

static int
ctl_stop_cmd(const struct config *unused, int argc, char **argv)
{
	return ctl_stop(ctl_conffile, argc, argv);
}

/*
 * For a command that takes -c FILE after its words too: parse it, allow
 * at most MAXOPS operands after it, and load the configuration into
 * *CFG.  The index of the first operand, or -1 (with USAGE printed).
 */
static int
ctl_own_config(int argc, char **argv, const char *usage, int maxops,
    struct config **cfg)
{
	const char	*conffile = ctl_conffile;
	char		 err[1024];
	int		 ch;

	optind = 0;
	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		switch (ch) {
		case 'c':
			conffile = optarg;
			break;
		default:
			fprintf(stderr, "usage: sluicectl %s\n", usage);
			return -1;
		}
	}
	if (argc - optind > maxops) {
		fprintf(stderr, "usage: sluicectl %s\n", usage);
		return -1;
	}
	if (cfg_load(conffile, cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return -1;
	}
	return optind;
}

/* usage reads usage_events: master/ctl_usage.c */
static int
ctl_usage_cmd(const struct config *unused, int argc, char **argv)
{
	return ctl_usage(ctl_conffile, argc, argv);
}

/* spool replay loads the spool into PostgreSQL: master/ctl_spool.c */
static int
ctl_spool_replay_cmd(const struct config *unused, int argc, char **argv)
{
	struct config	*cfg;
	int		 i, rc;

	if ((i = ctl_own_config(argc, argv, "spool replay [-c file] [dir]", 1,
	    &cfg)) == -1)
		return -1;
	rc = ctl_spool_replay(cfg, i < argc ? argv[i] : cfg->spool_dir);
	cfg_free(cfg);
	return rc;
}

#define NCMDS	(sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static void __attribute__((noreturn))
usage(int status)
{
	FILE	*f = status == 0 ? stdout : stderr;
	size_t	 i;
	int	 w, n;

	fprintf(f, "usage: sluicectl [-h] [-c file] command [args]\n"
	    "  -c file  configuration file (default %s)\n"
	    "commands:\n", DEFAULT_CONFIG);
	for (i = 0; i < NCMDS; i++) {
		n = fprintf(f, "  ");
		for (w = 0; w < CMD_WORDS_MAX && ctl_cmds[i].words[w]; w++)
			n += fprintf(f, "%s%s", w ? " " : "",
			    ctl_cmds[i].words[w]);
		if (*ctl_cmds[i].args)
			n += fprintf(f, " %s", ctl_cmds[i].args);
		if (n >= 26) {
			fputc('\n', f);
			n = 0;
		}
		fprintf(f, "%*s%s\n", 26 - n, "", ctl_cmds[i].help);
	}
	fprintf(f, "key new options: --models GLOB[,GLOB...] --rpm N --tpm N\n"
	    "                 --budget USD/day|USD/month --expires YYYY-MM-DD\n"
	    "                 --team NAME\n");
	exit(status);
}

/* The command whose words start ARGV, with *NWORDS set; or NULL. */
static const struct ctl_cmd *
ctl_find(int argc, char **argv, int *nwords)
{
	size_t	 i;
	int	 w;

	for (i = 0; i < NCMDS; i++) {
		for (w = 0; w < CMD_WORDS_MAX && ctl_cmds[i].words[w]; w++)
			if (w >= argc || strcmp(argv[w], ctl_cmds[i].words[w]))
				break;
		if (w == CMD_WORDS_MAX || ctl_cmds[i].words[w] == NULL) {
			*nwords = w;
			return &ctl_cmds[i];
		}
	}
	return NULL;
}

int
main(int argc, char *argv[])
{
	const struct ctl_cmd	*cmd;
	struct config		*cfg = NULL;
	char			 err[1024];
	int			 ch, nwords, rc;

	if (log_init("stderr", LOGL_WARN) == -1) {
		fprintf(stderr, "sluicectl: cannot log to stderr\n");
		return 1;
	}
	log_setrole("sluicectl");

	while ((ch = getopt(argc, argv, "+c:h")) != -1) {
		switch (ch) {
		case 'c':
			ctl_conffile = optarg;
			break;
		case 'h':
			usage(0);
		default:
			usage(1);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage(1);
	if ((cmd = ctl_find(argc, argv, &nwords)) == NULL) {
		fprintf(stderr, "sluicectl: unknown command: %s\n", argv[0]);
		usage(1);
	}

	if (cmd->need_config &&
	    cfg_load(ctl_conffile, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return 1;
	}
	/* the command's argv[0] is its last word, as main's is the program */
	rc = cmd->run(cfg, argc - nwords + 1, argv + nwords - 1);
	if (cfg != NULL)
		cfg_free(cfg);
	return rc == 0 ? 0 : 1;
}

/*
 * sluicectl db init: connect as the collector would, migrate, make this
 * month's and next month's partitions, report.
 */
static int
ctl_db_init(const struct config *cfg, int argc, char **argv)
{
	struct pgsession	 s;
	int			 version;

	if (argc != 1) {
		fprintf(stderr, "sluicectl: db init takes no arguments\n");
		return -1;
	}
	if (ctl_db_connect(cfg, &s) == -1)
		return -1;
	version = schema_init(&s);
	/* the months the collector makes at its start, retention aside */
	if (version == SCHEMA_VERSION) {
		struct parts_retention	 keep = { 0, 0 };
		int64_t			 lo, hi;

		if (parts_maintain(&s, &keep, wall_us(), &lo, &hi) == -1)
			version = -1;
	}
	pgs_close(&s);
	if (version == -1) {
		fprintf(stderr, "sluicectl: %s\n", s.err);
		return -1;
	}
	printf("schema at version %d\n", version);
	if (version > SCHEMA_VERSION)
		fprintf(stderr, "sluicectl: note: the database is newer than "
		    "this sluicectl (version %d)\n", SCHEMA_VERSION);
	return 0;
}

/*
 * sluicectl prices check: the models of usage_events rows with usage
 * since INTERVAL ago (30 days) that no price line matches, as sluiced
 * would price them now (an alias as the model it stands for), with their
 * request counts.  Exit 1 when there are some: a cron job's alarm.
 */
static int
ctl_prices_check(const struct config *unused, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "since", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	static const char	 usage_line[] = "usage: sluicectl prices check "
	    "[-c file] [--since interval]\n";
	struct config		*cfg;
	struct pgsession	 s;
	const struct cfg_alias	*alias;
	const char		*conffile = ctl_conffile, *since = "30 days";
	const char		*model, *priced_as, *params[1];
	PGresult		*res;
	char			 err[1024];
	long long		 nreq, total = 0;
	int			 ch, i, n = 0, rc = -1;

	(void)unused;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+c:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conffile = optarg;
			break;
		case 's':
			since = optarg;
			break;
		default:
			fputs(usage_line, stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fputs(usage_line, stderr);
		return -1;
	}
	if (cfg_load(conffile, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return -1;
	}
	if (ctl_db_connect(cfg, &s) == -1) {
		cfg_free(cfg);
		return -1;
	}
	/* the interval is a parameter: PostgreSQL reads and checks it */
	params[0] = since;
	res = PQexecParams(s.conn, "SELECT model, count(*) FROM usage_events"
	    " WHERE ts_start >= now() - $1::interval AND model IS NOT NULL"
	    " AND usage_source <> 'none' GROUP BY model ORDER BY model",
	    1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "sluicectl: %s", PQerrorMessage(s.conn));
		goto done;
	}
	for (i = 0; i < PQntuples(res); i++) {
		model = PQgetvalue(res, i, 0);
		nreq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		alias = cfg_alias_for(cfg, model, strlen(model));
		priced_as = alias != NULL ? alias->model : model;
		if (cfg_price_for(cfg, priced_as, strlen(priced_as)) != NULL)
			continue;
		if (n++ == 0)
			printf("%-40s %12s\n", "MODEL", "REQUESTS");
		printf("%-40s %12lld\n", model, nreq);
		total += nreq;
	}
	if (n == 0)
		printf("every model seen since %s ago has a price\n", since);
	else
		printf("%d model%s without a price, %lld request%s since %s "
		    "ago\n", n, n == 1 ? "" : "s", total, total == 1 ? "" : "s",
		    since);
	rc = n == 0 ? 0 : -1;
done:
	PQclear(res);
	pgs_close(&s);
	cfg_free(cfg);
	return rc;
}

static void
hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char	 digits[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

/* Decimal digits only, LO..HI; 0 ok, -1 bad. */
static int
parse_count(const char *s, long long lo, long long hi, long long *out)
{
	char	*end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || *out < lo || *out > hi)
		return -1;
	return 0;
}

/* A glob keys.conf can hold unquoted: no blanks, ';', braces, '"' or '#'. */
static int
valid_glob(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || len >= KEY_PATTERN_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f ||
		    strchr(";{}\"#\\", s[i]) != NULL)
			return 0;
	return 1;
}

/* "25.00" as micro-USD -> "25.00"; more decimals only when needed. */
static void
format_usd(int64_t micro, char *out, size_t outlen)
{
	char	 frac[8];
	int	 digits = 6;

	/* six fraction digits, then drop trailing zeros down to two */
	snprintf(frac, sizeof(frac), "%06lld", (long long)(micro % 1000000));
	while (digits > 2 && frac[digits - 1] == '0')
		frac[--digits] = '\0';
	snprintf(out, outlen, "%lld.%s", (long long)(micro / 1000000), frac);
}

/*
 * sluicectl key new NAME [options]: a fresh secret on stdout, once, and the
 * block that goes into keys_file.
 */
static int
ctl_key_new(const struct config *unused, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "models",	required_argument, NULL, 'm' },
		{ "rpm",	required_argument, NULL, 'r' },
		{ "tpm",	required_argument, NULL, 't' },
		{ "budget",	required_argument, NULL, 'b' },
		{ "expires",	required_argument, NULL, 'e' },
		{ "team",	required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	char		 models[KEY_MAX_MODELS * KEY_PATTERN_MAX] = "";
	char		 team[TEAM_NAME_MAX] = "";
	char		 budget[64] = "", expires[16] = "", usd[32];
	char		 secret[sizeof(KEY_SECRET_PREFIX) + 4 * SECRET_BYTES];
	char		 hex[2 * 32 + 1];
	unsigned char	 raw[SECRET_BYTES], b64[4 * SECRET_BYTES];
	uint8_t		 hash[32];
	const char	*name, *slash, *g, *end;
	long long	 rpm = 0, tpm = 0;
	int64_t		 micro, when;
	size_t		 glen, mlen = 0;
	int		 ch, nmodels = 0, n, i, j;

	(void)unused;
	/* GNU getopt: start over (main used it), NAME anywhere */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			for (g = optarg; ; g = end + 1) {
				end = strchr(g, ',');
				glen = end != NULL ? (size_t)(end - g) :
				    strlen(g);
				if (!valid_glob(g, glen)) {
					fprintf(stderr, "sluicectl: key new: "
					    "invalid model pattern \"%.*s\"\n",
					    (int)glen, g);
					return -1;
				}
				if (nmodels == KEY_MAX_MODELS) {
					fprintf(stderr, "sluicectl: key new: "
					    "too many models (max %d)\n",
					    KEY_MAX_MODELS);
					return -1;
				}
				mlen += (size_t)snprintf(models + mlen,
				    sizeof(models) - mlen, "%s%.*s",
				    nmodels ? " " : "", (int)glen, g);
				nmodels++;
				if (end == NULL)
					break;
			}
			break;
		case 'r':
			if (parse_count(optarg, 1, KEY_RPM_MAX, &rpm) == -1) {
				fprintf(stderr, "sluicectl: key new: invalid "
				    "--rpm \"%s\" (1 to %lld)\n", optarg,
				    KEY_RPM_MAX);
				return -1;
			}
			break;
		case 't':
			if (parse_count(optarg, 1, KEY_TPM_MAX, &tpm) == -1) {
				fprintf(stderr, "sluicectl: key new: invalid "
				    "--tpm \"%s\" (1 to %lld)\n", optarg,
				    KEY_TPM_MAX);
				return -1;
			}
			break;
		case 'b':
			slash = strchr(optarg, '/');
			if (slash == NULL || slash - optarg >= 32 ||
			    (strcmp(slash, "/day") != 0 &&
			    strcmp(slash, "/month") != 0))
				goto badbudget;
			snprintf(usd, sizeof(usd), "%.*s",
			    (int)(slash - optarg), optarg);
			if (cp_parse_usd_micro(usd, &micro) == -1 ||
			    micro == 0)
				goto badbudget;
			format_usd(micro, usd, sizeof(usd));
			snprintf(budget, sizeof(budget), "%s per %s", usd,
			    slash + 1);
			break;
 badbudget:
			fprintf(stderr, "sluicectl: key new: invalid --budget "
			    "\"%s\" (expected USD/day or USD/month, e.g. "
			    "25.00/day)\n", optarg);
			return -1;
		case 'e':
			if (keys_parse_date(optarg, &when) == -1) {
				fprintf(stderr, "sluicectl: key new: invalid "
				    "--expires \"%s\" (expected YYYY-MM-DD)\n",
				    optarg);
				return -1;
			}
			if (when <= (int64_t)time(NULL))
				fprintf(stderr, "sluicectl: warning: --expires "
				    "%s is in the past: the key will be "
				    "refused\n", optarg);
			snprintf(expires, sizeof(expires), "%s", optarg);
			break;
		case 'T':
			if (!keys_valid_name(optarg) ||
			    strlen(optarg) >= sizeof(team)) {
				fprintf(stderr, "sluicectl: key new: invalid "
				    "--team \"%s\" (1 to %d of A-Z a-z 0-9 _ . "
				    "-)\n", optarg, TEAM_NAME_MAX - 1);
				return -1;
			}
			snprintf(team, sizeof(team), "%s", optarg);
			break;
		default:
			return -1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: sluicectl key new NAME [--models "
		    "GLOB,...] [--rpm N] [--tpm N]\n"
		    "           [--budget USD/day|USD/month] "
		    "[--expires YYYY-MM-DD] [--team NAME]\n");
		return -1;
	}
	name = argv[optind];
	if (!keys_valid_name(name)) {
		fprintf(stderr, "sluicectl: key new: invalid key name \"%s\" "
		    "(1 to %d of A-Z a-z 0-9 _ . -)\n", name, KEY_NAME_MAX - 1);
		return -1;
	}

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		fprintf(stderr, "sluicectl: key new: RAND_bytes failed\n");
		return -1;
	}
	n = EVP_EncodeBlock(b64, raw, sizeof(raw));
	explicit_bzero(raw, sizeof(raw));
	/* base64url without padding: no character a shell or URL minds */
	for (i = j = 0; i < n; i++) {
		if (b64[i] == '=')
			break;
		b64[j++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	}
	snprintf(secret, sizeof(secret), "%s%.*s", KEY_SECRET_PREFIX, j,
	    (const char *)b64);
	explicit_bzero(b64, sizeof(b64));
	keys_hash_secret(secret, strlen(secret), hash);
	hex_encode(hash, sizeof(hash), hex);

	printf("secret: %s\n\n", secret);
	explicit_bzero(secret, sizeof(secret));
	printf("key %s {\n", name);
	printf("    %-8s sha256:%s;\n", "hash", hex);
	if (nmodels > 0)
		printf("    %-8s %s;\n", "models", models);
	if (rpm > 0)
		printf("    %-8s %lld;\n", "rpm", rpm);
	if (tpm > 0)
		printf("    %-8s %lld;\n", "tpm", tpm);
	if (budget[0] != '\0')
		printf("    %-8s %s;\n", "budget", budget);
	if (expires[0] != '\0')
		printf("    %-8s %s;\n", "expires", expires);
	if (team[0] != '\0')
		printf("    %-8s %s;\n", "team", team);
	printf("}\n");
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "sluicectl: key new: writing the key: %s\n",
		    strerror(errno));
		return -1;
	}
	fprintf(stderr, "sluicectl: the secret is shown once and stored "
	    "nowhere: hand it to the key's user now.\n"
	    "sluicectl: append the key block to keys_file, then reload "
	    "sluiced: sluicectl reload, or kill -HUP the master.\n");
	return 0;
}

/* sluicectl key hash: "sha256:<hex>" of the secret on stdin. */
static int
ctl_key_hash(const struct config *unused, int argc, char **argv)
{
	char		 buf[SECRET_IN_MAX + 2], hex[2 * 32 + 1];
	uint8_t		 hash[32];
	size_t		 len;
	int		 rv = -1;

	(void)unused;
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "sluicectl: key hash takes no arguments "
		    "(the secret is read from stdin)\n");
		return -1;
	}
	len = fread(buf, 1, sizeof(buf), stdin);
	if (ferror(stdin)) {
		fprintf(stderr, "sluicectl: key hash: reading stdin: %s\n",
		    strerror(errno));
		goto done;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > SECRET_IN_MAX) {
		fprintf(stderr, "sluicectl: key hash: secret too long (max %d "
		    "bytes)\n", SECRET_IN_MAX);
		goto done;
	}
	if (len == 0) {
		fprintf(stderr, "sluicectl: key hash: empty secret\n");
		goto done;
	}
	keys_hash_secret(buf, len, hash);
	hex_encode(hash, sizeof(hash), hex);
	printf("sha256:%s\n", hex);
	rv = 0;
 done:
	explicit_bzero(buf, sizeof(buf));
	return rv;
}

/* sluicectl key check [-c FILE]: what sluiced -t would say about the keys. */
static int
ctl_key_check(const struct config *unused, int argc, char **argv)
{
	struct config	*cfg;
	int		 n;

	(void)unused;
	if (ctl_own_config(argc, argv, "key check [-c file]", 0, &cfg) == -1)
		return -1;
	if (cfg->keys == NULL) {
		fprintf(stderr, "sluicectl: %s: no keys_file configured\n",
		    cfg->path);
		cfg_free(cfg);
		return -1;
	}
	n = cfg->keys->nkeys;
	printf("%s: %d key%s", cfg->keys->path, n, n == 1 ? "" : "s");
	if ((n = cfg->keys->nteams) > 0)
		printf(", %d team%s", n, n == 1 ? "" : "s");
	printf("\n");
	cfg_free(cfg);
	return 0;
}
