/*
 * ctl_daemon.c - the sluicectl commands that talk to a running sluiced:
 *
 *   sluicectl status [-w SECONDS] [-n COUNT]
 *   sluicectl reload [-t SECONDS]
 *   sluicectl stop [-t SECONDS]
 *
 * They find the daemon through the same configuration file: its pid_file
 * (to signal the master) and its admin_listen (to read GET /status).  A
 * configuration that no longer loads (the very case `reload` must report)
 * is scanned leniently for those two directives, so that sluicectl can
 * still ask the master, which has the last word.
 *
 * `reload` reads the master's reload counters, sends SIGHUP, and waits
 * until one of them moves: the master records each reload's outcome and
 * message in shared memory and /status shows them.  `stop` sends SIGTERM
 * and waits until the master is gone.  `status` takes two samples of
 * /status to compute rates; p50/p99 come from the histograms' buckets.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/confparse.h"
#include "common/json.h"
#include "common/keys.h"
#include "common/log.h"
#include "master/ctl_daemon.h"
#include "shm/counters.h"

#define CTL_HTTP_TIMEOUT_MS	3000
#define CTL_BODY_MAX		(4 * 1024 * 1024)
#define CTL_RELOAD_WAIT_S	15
#define CTL_STOP_EXTRA_S	15	/* beyond shutdown_timeout */
#define CTL_FLUSH_TRIES		50	/* answers from an old generation */
#define CTL_FLUSH_RETRY_MS	100
#define CTL_WORKERS_MAX		CNT_SLOTS_MAX

/* Where the daemon is, from its configuration file. */
struct ctl_target {
	char		 pid_file[PATH_MAX];
	int		 has_admin;
	char		 host[256];
	char		 port[8];
	int		 shutdown_ms;
	int		 cfg_ok;		/* the file loads as sluiced would */
	char		 cfg_err[1024];
};

/* One sample of /status, the numbers the table shows. */
struct ctl_block {
	int		 slot, pid, alive, current;
	int64_t		 requests, conns, streams, opened, reused;
	int64_t		 ring_depth, ring_drops, lag_ms;
	uint64_t	 lat[CNT_HIST_BUCKETS];
};

struct ctl_sample {
	int64_t		 mono_us;
	int		 healthy;
	char		 health[256];
	int		 master_pid;
	int64_t		 generation, reloads_ok, reloads_failed;
	int64_t		 worker_restarts, started_us;
	int		 last_ok;
	char		 last_msg[300];
	int		 coll_pid, coll_connected, coll_spool_ok, coll_db;
	int64_t		 coll_hb_ms, coll_written, coll_spooled, coll_spool_files;
	int64_t		 coll_spool_bytes;
	char		 coll_err[300];
	struct ctl_block total;
	struct ctl_block w[CTL_WORKERS_MAX];
	int		 nw;
};


static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* "host:port", "[v6]:port" or "port", as sluice.conf writes addresses. */
static int
split_addr(const char *s, char *host, size_t hl, char *port, size_t pl)
{
	const char	*c, *h = s, *pt;
	size_t		 n;

	if (s[0] == '[') {
		if ((c = strstr(s, "]:")) == NULL)
			return -1;
		h = s + 1;
		n = (size_t)(c - h);
		pt = c + 2;
	} else if ((c = strrchr(s, ':')) != NULL) {
		n = (size_t)(c - s);
		pt = c + 1;
	} else {
		h = "*";
		n = 1;
		pt = s;
	}
	if (n >= hl || strlen(pt) >= pl || *pt == '\0')
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	memcpy(port, pt, strlen(pt) + 1);
	return 0;
}

/* A file that does not load: find pid_file and admin_listen anyway. */
static void
target_scan(const char *path, struct ctl_target *t)
{
	struct cp_parser	 p;
	struct cp_directive	*d;
	char			 err[512];
	int			 depth = 0, i;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return;
	cp_init(&p, path, err, sizeof(err));
	if (cp_open(&p) == -1) {
		free(d);
		return;
	}
	for (i = 0; i < 100000; i++) {
		if (cp_read_directive(&p, NULL, 0, d) == -1)
			break;
		if (d->nargs == 0) {
			if (d->end == CP_RBRACE && depth > 0) {
				depth--;
				continue;
			}
			break;
		}
		if (d->end == CP_LBRACE) {
			depth++;
			continue;
		}
		if (depth != 0 || d->nargs != 2)
			continue;
		if (strcmp(d->args[0].s, "pid_file") == 0)
			snprintf(t->pid_file, sizeof(t->pid_file), "%s",
			    d->args[1].s);
		else if (strcmp(d->args[0].s, "admin_listen") == 0 &&
		    split_addr(d->args[1].s, t->host, sizeof(t->host),
		    t->port, sizeof(t->port)) == 0)
			t->has_admin = 1;
	}
	cp_close(&p);
	free(d);
}

static int
target_load(const char *path, struct ctl_target *t)
{
	struct config *cfg;

	int		 rc;

	memset(t, 0, sizeof(*t));
	t->shutdown_ms = 30000;
	/* the config's warnings are sluiced's business, not ours */
	(void)log_init("/dev/null", LOGL_WARN);
	rc = cfg_load(path, &cfg, t->cfg_err, sizeof(t->cfg_err));
	(void)log_init("stderr", LOGL_WARN);
	if (rc == 0) {
		t->cfg_ok = 1;
		snprintf(t->pid_file, sizeof(t->pid_file), "%s", cfg->pid_file);
		t->has_admin = cfg->has_admin_listen;
		snprintf(t->host, sizeof(t->host), "%s", cfg->admin_listen.host);
		snprintf(t->port, sizeof(t->port), "%s", cfg->admin_listen.port);
		t->shutdown_ms = cfg->shutdown_timeout_ms;
		cfg_free(cfg);
		return 0;
	}
	target_scan(path, t);
	return -1;
}

/* The master's pid from the pid file; -1 with a message. */
static pid_t
target_pid(const struct ctl_target *t)
{
	FILE	*f;
	long	 pid = 0;

	if (t->pid_file[0] == '\0') {
		fprintf(stderr, "sluicectl: no pid_file in the configuration: "
		    "cannot find sluiced\n");
		return -1;
	}
	if ((f = fopen(t->pid_file, "r")) == NULL) {
		fprintf(stderr, "sluicectl: %s: %s (is sluiced running?)\n",
		    t->pid_file, strerror(errno));
		return -1;
	}
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "sluicectl: %s: no pid in it\n", t->pid_file);
		fclose(f);
		return -1;
	}
	fclose(f);
	if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) {
		fprintf(stderr, "sluicectl: sluiced (pid %ld from %s) is not "
		    "running\n", pid, t->pid_file);
		return -1;
	}
	return (pid_t)pid;
}

/* A process that is gone or a zombie. */
static int
pid_gone(pid_t pid)
{
	char	 path[64], buf[512], *p;
	FILE	*f;
	size_t	 n;

	if (kill(pid, 0) == -1 && errno == ESRCH)
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return (p = strrchr(buf, ')')) != NULL && p[1] == ' ' && p[2] == 'Z';
}

/* Connect to admin_listen; a wildcard address means this host. */
static int
admin_connect(const struct ctl_target *t)
{
	struct addrinfo	 hints, *res, *ai;
	const char	*host = t->host;
	struct timeval	 tv = { CTL_HTTP_TIMEOUT_MS / 1000,
			    (CTL_HTTP_TIMEOUT_MS % 1000) * 1000 };
	int		 fd = -1;

	if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, t->port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* METHOD PATH on the admin endpoint: the status, *BODY malloc'd. */
static int
admin_call(const struct ctl_target *t, const char *method, const char *path,
    char **body, size_t *blen)
{
	char	 req[512], *buf = NULL, *p, *nb;
	size_t	 len = 0, cap = 0;
	ssize_t	 n;
	int	 fd, status;

	*body = NULL;
	if ((fd = admin_connect(t)) == -1)
		return -1;
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n", method, path,
	    t->host);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > CTL_BODY_MAX || (nb = realloc(buf, cap)) ==
			    NULL) {
				free(buf);
				close(fd);
				return -1;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf == NULL || n < 0) {
		free(buf);
		return -1;
	}
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 ||
	    (p = strstr(buf, "\r\n\r\n")) == NULL) {
		free(buf);
		return -1;
	}
	p += 4;
	*blen = len - (size_t)(p - buf);
	memmove(buf, p, *blen + 1);
	*body = buf;
	return status;
}

/* -- reading /status ---------------------------------------------------- */

static int64_t
j_i64(const struct json_doc *d, int obj, const char *key)
{
	int64_t v = 0;

	if (json_int(d, json_get(d, obj, key), &v) == -1)
		return 0;
	return v;
}

static int
j_bool(const struct json_doc *d, int obj, const char *key)
{
	return json_bool(d, json_get(d, obj, key)) == 1;
}

static void
j_str(const struct json_doc *d, int obj, const char *key, char *out,
    size_t len)
{
	const char	*s;
	size_t		 n, k;
	int		 i = json_get(d, obj, key);

	out[0] = '\0';
	if (i < 0 || !json_is_str(d, i))
		return;
	s = json_raw(d, i, &n);
	/* unescape what admin.c escapes: quote, backslash, controls */
	for (k = 0; k < n && len > 1; k++, len--) {
		if (s[k] == '\\' && k + 1 < n) {
			k++;
			if (s[k] == 'u') {
				k += 4;
				*out++ = ' ';
				continue;
			}
			*out++ = s[k] == 'n' ? ' ' : s[k];
			continue;
		}
		*out++ = s[k];
	}
	*out = '\0';
}

static void
j_block(const struct json_doc *d, int obj, struct ctl_block *b)
{
	int	 ring = json_get(d, obj, "ring");
	int	 lat = json_path(d, obj, "latency", "buckets", NULL);
	int	 i, k;

	memset(b, 0, sizeof(*b));
	b->slot = (int)j_i64(d, obj, "slot");
	b->pid = (int)j_i64(d, obj, "pid");
	b->alive = j_bool(d, obj, "alive");
	b->current = j_bool(d, obj, "current");
	b->requests = j_i64(d, obj, "requests");
	b->conns = j_i64(d, obj, "connections");
	b->streams = j_i64(d, obj, "streams");
	b->opened = j_i64(d, obj, "upstream_opened");
	b->reused = j_i64(d, obj, "upstream_reused");
	if (ring >= 0) {
		b->ring_depth = j_i64(d, ring, "depth");
		b->ring_drops = j_i64(d, ring, "drops");
		b->lag_ms = j_i64(d, ring, "lag_ms");
	}
	if (lat >= 0 && d->tok[lat].type == JSMN_ARRAY)
		for (i = lat + 1, k = 0; k < d->tok[lat].size &&
		    k < CNT_HIST_BUCKETS && i < d->ntok;
		    k++, i = json_skip(d, i)) {
			int64_t v = 0;

			if (json_int(d, i, &v) == 0 && v > 0)
				b->lat[k] = (uint64_t)v;
		}
}

static int
status_sample(const struct ctl_target *t, struct ctl_sample *s)
{
	struct json_doc	 d;
	char		*body;
	size_t		 blen;
	int		 st, m, c, ws, i, k, hr;

	memset(s, 0, sizeof(*s));
	if ((st = admin_call(t, "GET", "/status", &body, &blen)) != 200) {
		free(body);
		return -1;
	}
	s->mono_us = now_us();
	memset(&d, 0, sizeof(d));
	if (json_parse(&d, body, blen) == -1 || !json_is_obj(&d, 0)) {
		json_doc_free(&d);
		free(body);
		return -1;
	}
	s->healthy = j_bool(&d, 0, "healthy");
	j_str(&d, 0, "health", s->health, sizeof(s->health));
	if ((m = json_get(&d, 0, "master")) >= 0) {
		s->master_pid = (int)j_i64(&d, m, "pid");
		s->generation = j_i64(&d, m, "generation");
		s->reloads_ok = j_i64(&d, m, "reloads_ok");
		s->reloads_failed = j_i64(&d, m, "reloads_failed");
		s->worker_restarts = j_i64(&d, m, "worker_restarts");
		s->started_us = j_i64(&d, m, "started_us");
		if ((hr = json_get(&d, m, "last_reload")) >= 0) {
			s->last_ok = j_bool(&d, hr, "ok");
			j_str(&d, hr, "message", s->last_msg,
			    sizeof(s->last_msg));
		}
	}
	if ((c = json_get(&d, 0, "collector")) >= 0) {
		s->coll_pid = (int)j_i64(&d, c, "pid");
		s->coll_connected = j_bool(&d, c, "connected");
		s->coll_spool_ok = j_bool(&d, c, "spool_ok");
		s->coll_db = j_bool(&d, c, "database");
		s->coll_hb_ms = j_i64(&d, c, "heartbeat_age_ms");
		s->coll_written = j_i64(&d, c, "rows_written");
		s->coll_spooled = j_i64(&d, c, "rows_spooled");
		s->coll_spool_files = j_i64(&d, c, "spool_files");
		s->coll_spool_bytes = j_i64(&d, c, "spool_bytes");
		j_str(&d, c, "last_error", s->coll_err, sizeof(s->coll_err));
	}
	if ((ws = json_get(&d, 0, "workers")) >= 0 &&
	    d.tok[ws].type == JSMN_ARRAY)
		for (i = ws + 1, k = 0; k < d.tok[ws].size && i < d.ntok &&
		    s->nw < CTL_WORKERS_MAX; k++, i = json_skip(&d, i))
			j_block(&d, i, &s->w[s->nw++]);
	if ((i = json_get(&d, 0, "totals")) >= 0)
		j_block(&d, i, &s->total);
	json_doc_free(&d);
	free(body);
	return 0;
}

/* -- status --------------------------------------------------------------- */

static void
fmt_ms(char *out, size_t len, double us)
{
	if (us < 0)
		snprintf(out, len, "-");
	else if (us < 10000)
		snprintf(out, len, "%.2f", us / 1000.0);
	else
		snprintf(out, len, "%.0f", us / 1000.0);
}

static void
fmt_bytes(char *out, size_t len, int64_t b)
{
	if (b < 10 * 1024)
		snprintf(out, len, "%lld B", (long long)b);
	else if (b < 10 * 1024 * 1024)
		snprintf(out, len, "%.1f KiB", (double)b / 1024.0);
	else
		snprintf(out, len, "%.1f MiB", (double)b / 1048576.0);
}

/* One row: rates and percentiles over the interval since PREV. */
static int
status_row(const char *label, const struct ctl_block *b,
    const struct ctl_block *prev, double secs)
{
	uint64_t	 lat[CNT_HIST_BUCKETS];
	char		 p50[16], p99[16], reuse[16];
	double		 rate = 0;
	int64_t		 dreq;
	int		 i, since = 0;

	dreq = prev != NULL ? b->requests - prev->requests : 0;
	if (dreq < 0)
		dreq = 0;
	if (secs > 0)
		rate = (double)dreq / secs;
	for (i = 0; i < CNT_HIST_BUCKETS; i++)
		lat[i] = prev != NULL && b->lat[i] >= prev->lat[i] ?
		    b->lat[i] - prev->lat[i] : 0;
	if (dreq == 0) {
		/* idle interval: the latencies since start */
		memcpy(lat, b->lat, sizeof(lat));
		since = 1;
	}
	fmt_ms(p50, sizeof(p50), cnt_hist_quantile(lat, 0.50));
	fmt_ms(p99, sizeof(p99), cnt_hist_quantile(lat, 0.99));
	if (b->opened + b->reused > 0)
		snprintf(reuse, sizeof(reuse), "%.1f", 100.0 *
		    (double)b->reused / (double)(b->opened + b->reused));
	else
		snprintf(reuse, sizeof(reuse), "-");
	printf("%-7s %8d %10lld %8.1f %8s%c %8s%c %6lld %7lld %6s %6lld "
	    "%6lld %7.1f\n", label, b->pid, (long long)b->requests, rate,
	    p50, since && strcmp(p50, "-") ? '*' : ' ', p99,
	    since && strcmp(p99, "-") ? '*' : ' ', (long long)b->conns,
	    (long long)b->streams, reuse, (long long)b->ring_depth,
	    (long long)b->ring_drops, (double)b->lag_ms / 1000.0);
	return since && b->requests > 0;
}

static const struct ctl_block *
prev_block(const struct ctl_sample *prev, int slot, int pid)
{
	int i;

	if (prev == NULL)
		return NULL;
	for (i = 0; i < prev->nw; i++)
		if (prev->w[i].slot == slot && prev->w[i].pid == pid)
			return &prev->w[i];
	return NULL;
}

static void
status_print(const struct ctl_target *t, const struct ctl_sample *s,
    const struct ctl_sample *prev)
{
	char	 label[16], sb[32];
	double	 secs = prev != NULL ?
		    (double)(s->mono_us - prev->mono_us) / 1e6 : 0;
	int	 i, shown = 0, since = 0;

	printf("sluiced pid %d, generation %lld, %s%s%s, %lld worker "
	    "restart(s)\n", s->master_pid, (long long)s->generation,
	    s->healthy ? "healthy" : "UNHEALTHY: ", s->healthy ? "" :
	    s->health, "", (long long)s->worker_restarts);
	printf("%-7s %8s %10s %8s %9s %9s %6s %7s %6s %6s %6s %7s\n",
	    "WORKER", "PID", "REQUESTS", "REQ/S", "P50ms", "P99ms", "CONNS",
	    "STREAMS", "REUSE%", "RING", "DROPS", "LAG s");
	for (i = 0; i < s->nw; i++) {
		if (!s->w[i].alive)
			continue;
		snprintf(label, sizeof(label), "%d%s", s->w[i].slot,
		    s->w[i].current ? "" : " old");
		since |= status_row(label, &s->w[i], prev_block(prev,
		    s->w[i].slot, s->w[i].pid), secs);
		shown++;
	}
	if (shown == 0)
		printf("(no worker running)\n");
	{
		struct ctl_block tot = s->total;

		tot.pid = s->master_pid;
		since |= status_row("total", &tot, prev != NULL ?
		    &prev->total : NULL, secs);
	}
	fmt_bytes(sb, sizeof(sb), s->coll_spool_bytes);
	printf("collector pid %d: %s, %lld rows written, %lld spooled "
	    "(%s), %lld spool file(s) waiting, heartbeat %lld ms ago\n",
	    s->coll_pid, s->coll_connected ? "connected to PostgreSQL" :
	    !s->coll_db ? "spooling (no database)" : s->coll_spool_ok ?
	    "PostgreSQL down, spooling" : "PostgreSQL down, CANNOT SPOOL",
	    (long long)s->coll_written, (long long)s->coll_spooled, sb,
	    (long long)s->coll_spool_files, (long long)s->coll_hb_ms);
	if (s->coll_err[0] != '\0')
		printf("collector last error: %s\n", s->coll_err);
	if (s->reloads_ok + s->reloads_failed > 0)
		printf("last reload: %s (%lld ok, %lld failed)\n", s->last_msg,
		    (long long)s->reloads_ok, (long long)s->reloads_failed);
	if (!t->cfg_ok)
		printf("note: %s\n", t->cfg_err);
	if (since)
		printf("(* = since start: no request in the last %.1f s)\n",
		    secs > 0 ? secs : 0.0);
}

int
ctl_status(const char *conffile, int argc, char **argv)
{
	struct ctl_target	 t;
	struct ctl_sample	*cur, *prev, *tmp;
	long			 wait_s = 0, count = -1, i;
	int			 ch, tty = isatty(STDOUT_FILENO);
	char			*end;

	optind = 0;
	while ((ch = getopt(argc, argv, "w:n:")) != -1) {
		switch (ch) {
		case 'w':
			wait_s = strtol(optarg, &end, 10);
			if (*end != '\0' || wait_s < 1 || wait_s > 3600) {
				fprintf(stderr, "sluicectl: -w: 1..3600 "
				    "seconds\n");
				return 1;
			}
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end != '\0' || count < 1) {
				fprintf(stderr, "sluicectl: -n: a count\n");
				return 1;
			}
			break;
		default:
			fprintf(stderr, "usage: sluicectl status [-w seconds] "
			    "[-n count]\n");
			return 1;
		}
	}
	if (count == -1)
		count = wait_s > 0 ? LONG_MAX : 1;
	target_load(conffile, &t);
	if (!t.has_admin) {
		fprintf(stderr, "sluicectl: no admin_listen in %s: status "
		    "needs it\n", conffile);
		return 1;
	}
	cur = calloc(1, sizeof(*cur));
	prev = calloc(1, sizeof(*prev));
	if (cur == NULL || prev == NULL) {
		free(cur);
		free(prev);
		return 1;
	}
	if (status_sample(&t, prev) == -1) {
		fprintf(stderr, "sluicectl: cannot read http://%s:%s/status "
		    "(is sluiced running?)\n", t.host, t.port);
		free(cur);
		free(prev);
		return 1;
	}
	for (i = 0; i < count; i++) {
		sleep_ms(wait_s > 0 ? (int)wait_s * 1000 : 1000);
		if (status_sample(&t, cur) == -1) {
			fprintf(stderr, "sluicectl: lost http://%s:%s/status\n",
			    t.host, t.port);
			free(cur);
			free(prev);
			return 1;
		}
		if (wait_s > 0 && tty)
			printf("\033[H\033[2J");
		else if (i > 0)
			printf("\n");
		status_print(&t, cur, prev);
		fflush(stdout);
		tmp = prev;
		prev = cur;
		cur = tmp;
	}
	free(cur);
	free(prev);
	return 0;
}

/* -- reload and stop ---------------------------------------------------- */

static int
wait_option(int argc, char **argv, const char *cmd, long *secs)
{
	char	*end;
	int	 ch;

	optind = 0;
	while ((ch = getopt(argc, argv, "t:")) != -1) {
		if (ch != 't' || (*secs = strtol(optarg, &end, 10)) < 1 ||
		    *end != '\0') {
			fprintf(stderr, "usage: sluicectl %s [-t seconds]\n",
			    cmd);
			return -1;
		}
	}
	return 0;
}

int
ctl_reload(const char *conffile, int argc, char **argv)
{
	struct ctl_target	 t;
	struct ctl_sample	*s;
	int64_t			 ok0, failed0, deadline;
	long			 secs = CTL_RELOAD_WAIT_S;
	pid_t			 pid;
	int			 rc = 1;

	if (wait_option(argc, argv, "reload", &secs) == -1)
		return 1;
	if (target_load(conffile, &t) == -1)
		fprintf(stderr, "sluicectl: warning: %s\n", t.cfg_err);
	if ((pid = target_pid(&t)) == -1)
		return 1;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return 1;
	if (!t.has_admin || status_sample(&t, s) == -1) {
		if (kill(pid, SIGHUP) == -1) {
			fprintf(stderr, "sluicectl: kill %d: %s\n", (int)pid,
			    strerror(errno));
			free(s);
			return 1;
		}
		printf("SIGHUP sent to sluiced (pid %d); without %s the "
		    "outcome is only in its log\n", (int)pid, t.has_admin ?
		    "a reachable admin_listen" : "admin_listen");
		free(s);
		return t.cfg_ok ? 0 : 1;
	}
	ok0 = s->reloads_ok;
	failed0 = s->reloads_failed;
	if (kill(pid, SIGHUP) == -1) {
		fprintf(stderr, "sluicectl: kill %d: %s\n", (int)pid,
		    strerror(errno));
		free(s);
		return 1;
	}
	deadline = now_us() + secs * 1000000;
	for (;;) {
		sleep_ms(100);
		if (status_sample(&t, s) == 0 &&
		    (s->reloads_ok != ok0 || s->reloads_failed != failed0)) {
			if (s->reloads_ok != ok0 && s->last_ok) {
				printf("reload accepted: %s\n", s->last_msg);
				rc = 0;
			} else
				printf("reload refused: %s\n", s->last_msg);
			break;
		}
		if (now_us() >= deadline) {
			fprintf(stderr, "sluicectl: sluiced (pid %d) did not "
			    "report a reload within %ld s\n", (int)pid, secs);
			break;
		}
	}
	free(s);
	return rc;
}

int
ctl_stop(const char *conffile, int argc, char **argv)
{
	struct ctl_target	 t;
	int64_t			 deadline;
	long			 secs = -1;
	pid_t			 pid;

	if (wait_option(argc, argv, "stop", &secs) == -1)
		return 1;
	target_load(conffile, &t);
	if (secs == -1)
		secs = t.shutdown_ms / 1000 + CTL_STOP_EXTRA_S;
	if ((pid = target_pid(&t)) == -1)
		return 1;
	if (kill(pid, SIGTERM) == -1) {
		fprintf(stderr, "sluicectl: kill %d: %s\n", (int)pid,
		    strerror(errno));
		return 1;
	}
	printf("stopping sluiced (pid %d): finishing in-flight requests\n",
	    (int)pid);
	fflush(stdout);
	deadline = now_us() + secs * 1000000;
	while (!pid_gone(pid)) {
		if (now_us() >= deadline) {
			fprintf(stderr, "sluicectl: sluiced (pid %d) still "
			    "running after %ld s\n", (int)pid, secs);
			return 1;
		}
		sleep_ms(50);
	}
	printf("stopped\n");
	return 0;
}

/*
 * sluicectl cache flush [KEY]: POST /cache/flush on admin_listen, which a
 * worker serves from the arena every worker shares.  Right after a reload
 * a worker of the previous generation may still take it: it flushes its
 * own arena and answers 503 (worker/admin_cache.c), and we ask again, on
 * a new connection, until a current worker answers; the entries dropped
 * are summed over the answers.
 */
int
ctl_cache_flush(const char *conffile, int argc, char **argv)
{
	struct ctl_target	 t;
	char			 path[128], *body = NULL;
	const char		*p;
	size_t			 blen = 0;
	unsigned long long	 here, total = 0;
	int			 st, tries;

	if (argc > 2 || (argc == 2 && !keys_valid_name(argv[1]))) {
		fprintf(stderr, "usage: sluicectl cache flush [KEY]\n");
		return 1;
	}
	if (target_load(conffile, &t) == -1)
		fprintf(stderr, "sluicectl: warning: %s\n", t.cfg_err);
	if (!t.has_admin) {
		fprintf(stderr, "sluicectl: no admin_listen in the "
		    "configuration: cannot reach sluiced\n");
		return 1;
	}
	snprintf(path, sizeof(path), "/cache/flush%s%s", argc == 2 ?
	    "?key=" : "", argc == 2 ? argv[1] : "");
	for (tries = 0;; tries++) {
		if ((st = admin_call(&t, "POST", path, &body, &blen)) == -1) {
			fprintf(stderr, "sluicectl: cannot reach admin_listen "
			    "%s:%s\n", t.host, t.port);
			return 1;
		}
		if (st != 503 || tries == CTL_FLUSH_TRIES - 1)
			break;
		if ((p = strstr(body, "\"flushed_here\":")) != NULL &&
		    sscanf(p + 15, "%llu", &here) == 1)
			total += here;
		free(body);
		body = NULL;
		sleep_ms(CTL_FLUSH_RETRY_MS);
	}
	if (st != 200)
		fprintf(stderr, "sluicectl: cache flush: %d %s", st, body);
	else if ((p = strstr(body, "\"flushed\":")) != NULL &&
	    sscanf(p + 10, "%llu", &here) == 1)
		printf("{\"flushed\":%llu}\n", total + here);
	else
		printf("%s", body);
	free(body);
	return st == 200 ? 0 : 1;
}
