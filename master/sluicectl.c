/*
 * sluicectl.c - main() of sluicectl, the operator's command-line tool.
 *
 *   sluicectl [-c FILE] COMMAND [ARGS...]
 *
 * Commands live in one table, each a list of words and a function, so a
 * new one (key new, status, reload, stop) is one entry and one function.
 * Every command reads the same configuration as sluiced, reports errors
 * on stderr and exits 0 or 1; nothing here runs inside the daemon.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "sql/schema.h"

#define DEFAULT_CONFIG	"/etc/sluice/sluice.conf"
#define CMD_WORDS_MAX	3

struct ctl_cmd {
	const char	*words[CMD_WORDS_MAX];	/* NULL-terminated if short */
	const char	*args;			/* for the usage line */
	const char	*help;
	int		 need_config;
	int		 (*run)(const struct config *, int, char **);
};

static int	 ctl_db_init(const struct config *, int, char **);

static const struct ctl_cmd ctl_cmds[] = {
	{ { "db", "init" }, "", "create or upgrade the database schema",
	    1, ctl_db_init },
};

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
		fprintf(f, "%*s%s\n", n < 24 ? 24 - n : 1, "",
		    ctl_cmds[i].help);
	}
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
	const char		*conffile = DEFAULT_CONFIG;
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
			conffile = optarg;
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
	    cfg_load(conffile, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return 1;
	}
	rc = cmd->run(cfg, argc - nwords, argv + nwords);
	if (cfg != NULL)
		cfg_free(cfg);
	return rc == 0 ? 0 : 1;
}

/* sluicectl db init: connect as the collector would, migrate, report. */
static int
ctl_db_init(const struct config *cfg, int argc, char **argv)
{
	PGconn	*conn;
	char	 err[1024];
	int	 version;

	if (argc != 0) {
		fprintf(stderr, "sluicectl: db init takes no arguments\n");
		return -1;
	}
	if (cfg->database[0] == '\0') {
		fprintf(stderr, "sluicectl: %s: no database configured\n",
		    cfg->path);
		return -1;
	}
	conn = PQconnectdb(cfg->database);
	if (conn == NULL) {
		fprintf(stderr, "sluicectl: out of memory\n");
		return -1;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "sluicectl: connecting to the database: %s",
		    PQerrorMessage(conn));
		PQfinish(conn);
		return -1;
	}
	version = schema_init(conn, err, sizeof(err));
	PQfinish(conn);
	if (version == -1) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return -1;
	}
	printf("schema at version %d\n", version);
	if (version > SCHEMA_VERSION)
		fprintf(stderr, "sluicectl: note: the database is newer than "
		    "this sluicectl (version %d)\n", SCHEMA_VERSION);
	return 0;
}
