/*
 * ctl_usage.c - sluicectl usage.
 *
 * One query per report, grouped by the dimension asked for, over the rows
 * since the start asked for: the operators' questions ("which keys cost
 * most this week", "which team", "which end users of this app") without
 * writing SQL.  The dimension is one of a fixed list, never text from the
 * command line in the SQL; the interval is a query parameter that
 * PostgreSQL parses and checks.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/config.h"
#include "master/ctl_db.h"
#include "master/ctl_usage.h"
#include "sql/pgsession.h"

#define USAGE_COLS	7

static const struct {
	const char	*by;		/* --by */
	const char	*head;		/* its column's title */
	const char	*expr;		/* the group, in SQL */
	const char	*from;		/* the rows */
} dims[] = {
	{ "key", "KEY", "key_name", "usage_events" },
	{ "team", "TEAM", "team", "usage_events" },
	{ "tag", "TAG", "tag", "usage_events, unnest(tags) AS tag" },
	{ "user", "END_USER", "end_user", "usage_events" },
	{ "model", "MODEL", "model", "usage_events" },
};
#define NDIMS	(sizeof(dims) / sizeof(dims[0]))

static const char usage_line[] = "usage: sluicectl usage [-c file] "
    "[--by key|team|tag|user|model] [--since 24h|7d|month|interval] "
    "[--limit n] [--csv]\n";

/* A short --since as PostgreSQL's interval; "month": since the 1st. */
static const char *
since_interval(const char *s, char *buf, size_t size)
{
	char	*end;
	long	 n = strtol(s, &end, 10);

	if (strcmp(s, "month") == 0)
		return NULL;
	if (end != s && n > 0 && (strcmp(end, "h") == 0 ||
	    strcmp(end, "d") == 0)) {
		snprintf(buf, size, "%ld %s", n, *end == 'h' ? "hours" :
		    "days");
		return buf;
	}
	return s;
}

/* One CSV field (RFC 4180): quoted when it must be. */
static void
csv_field(const char *v, int last)
{
	if (strpbrk(v, ",\"\r\n") == NULL)
		fputs(v, stdout);
	else {
		putchar('"');
		for (; *v != '\0'; v++) {
			if (*v == '"')
				putchar('"');
			putchar(*v);
		}
		putchar('"');
	}
	putchar(last ? '\n' : ',');
}

static void
print_table(PGresult *res, const char *const *heads, int csv)
{
	int	 w[USAGE_COLS], r, c, n = PQntuples(res), len;

	if (csv) {
		for (c = 0; c < USAGE_COLS; c++)
			csv_field(heads[c], c == USAGE_COLS - 1);
		for (r = 0; r < n; r++)
			for (c = 0; c < USAGE_COLS; c++)
				csv_field(PQgetisnull(res, r, c) ? "" :
				    PQgetvalue(res, r, c), c == USAGE_COLS - 1);
		return;
	}
	for (c = 0; c < USAGE_COLS; c++) {
		w[c] = (int)strlen(heads[c]);
		for (r = 0; r < n; r++)
			if ((len = PQgetlength(res, r, c)) > w[c])
				w[c] = len;
	}
	/* the name left-aligned, the numbers right-aligned */
	for (c = 0; c < USAGE_COLS; c++)
		printf(c == 0 ? "%-*s" : "  %*s", w[c], heads[c]);
	putchar('\n');
	for (r = 0; r < n; r++) {
		for (c = 0; c < USAGE_COLS; c++)
			printf(c == 0 ? "%-*s" : "  %*s", w[c],
			    PQgetisnull(res, r, c) ? "-" :
			    PQgetvalue(res, r, c));
		putchar('\n');
	}
}

int
ctl_usage(const char *conffile, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "by", required_argument, NULL, 'b' },
		{ "since", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'l' },
		{ "csv", no_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	const char	*heads[USAGE_COLS] = { NULL, "REQUESTS", "PROMPT_TOKENS",
			    "COMPLETION_TOKENS", "COST_USD", "ERRORS",
			    "ERROR_RATE" };
	const char	*since = "24h", *params[2], *by = "key";
	struct config	*cfg;
	struct pgsession s;
	PGresult	*res;
	char		 err[1024], ibuf[64], lbuf[16], sql[1024], *end;
	long		 limit = 20;
	size_t		 d;
	int		 ch, csv = 0, rc = -1;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+c:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conffile = optarg;
			break;
		case 'b':
			by = optarg;
			break;
		case 's':
			since = optarg;
			break;
		case 'l':
			limit = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || limit < 1 ||
			    limit > 1000000) {
				fprintf(stderr, "sluicectl: usage: invalid "
				    "--limit \"%s\" (1 to 1000000)\n", optarg);
				return -1;
			}
			break;
		case 'C':
			csv = 1;
			break;
		default:
			fputs(usage_line, stderr);
			return -1;
		}
	}
	for (d = 0; d < NDIMS && strcmp(dims[d].by, by) != 0; d++)
		;
	if (optind != argc || d == NDIMS) {
		fputs(usage_line, stderr);
		return -1;
	}
	heads[0] = dims[d].head;
	snprintf(lbuf, sizeof(lbuf), "%ld", limit);
	params[0] = lbuf;
	params[1] = since_interval(since, ibuf, sizeof(ibuf));
	snprintf(sql, sizeof(sql),
	    "SELECT %s, count(*),"
	    " coalesce(sum(prompt_tokens), 0),"
	    " coalesce(sum(completion_tokens), 0),"
	    " round(coalesce(sum(cost_micro_usd), 0) / 1e6, 6),"
	    " count(*) FILTER (WHERE status >= 400),"
	    " round((count(*) FILTER (WHERE status >= 400))::numeric /"
	    "  count(*), 4)"
	    " FROM %s WHERE ts_start >= %s AND %s IS NOT NULL"
	    " GROUP BY 1 ORDER BY 5 DESC, 2 DESC, 1 LIMIT $1::bigint",
	    dims[d].expr, dims[d].from, params[1] != NULL ?
	    "now() - $2::interval" : "date_trunc('month', now())",
	    dims[d].expr);
	if (cfg_load(conffile, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sluicectl: %s\n", err);
		return -1;
	}
	if (ctl_db_connect(cfg, &s) == -1) {
		cfg_free(cfg);
		return -1;
	}
	res = PQexecParams(s.conn, sql, params[1] != NULL ? 2 : 1, NULL, params,
	    NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fprintf(stderr, "sluicectl: usage: %s",
		    PQerrorMessage(s.conn));
	else {
		print_table(res, heads, csv);
		rc = 0;
	}
	PQclear(res);
	pgs_close(&s);
	cfg_free(cfg);
	return rc;
}
