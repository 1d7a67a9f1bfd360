/*
 * streamload - a closed-loop HTTP/1.1 load generator that times every
 * request, for the streaming cells of the benchmark.
 *
 * Why it exists: wrk only sees a response once it is complete, and
 * h2load's "time to 1st byte" is measured once per connection from the
 * start of connect(), so neither gives the time to the first SSE event of
 * every request on a keep-alive connection, which is what a user of a
 * gateway waits for.  This tool keeps C connections busy (one request in
 * flight on each, keep-alive, no pipelining), on one thread with epoll,
 * and for every request records three times from the moment the request
 * was written: the first byte of the response (head), the first byte of
 * the body (for a streamed answer: the first SSE event, since mockllm
 * sends the head at once and the first event after latency-ms), and the
 * end of the response.  It understands Content-Length and chunked bodies.
 *
 * Bounded in time and count: it stops at -d seconds or -n requests,
 * whichever comes first; -w seconds of warm-up are run and not recorded.
 * The output is one JSON object on stdout (percentiles in microseconds).
 *
 *	streamload -p PORT [-c conns] [-n max] [-d secs] [-w secs]
 *	    [-b bodyfile] [-H "Name: value"]... [-P path] [--hold]
 *
 * --hold: start C requests at once, do not reuse connections, and exit
 * when they are all done; used to hold many slow streams open while the
 * harness samples sluice's RSS.
 */

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum rstate { R_HEAD, R_LEN, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CRLF,
    R_TRAILER, R_DONE };

struct conn {
	int		 fd;
	size_t		 sent;		/* bytes of the request written */
	enum rstate	 st;
	char		 head[16384];
	size_t		 hlen;
	size_t		 left;		/* bytes left in body or chunk */
	int		 status;
	int		 keepalive;
	int		 saw_body;
	int64_t		 t0, t_head, t_body;
};

static const char	*req;		/* the whole request, head and body */
static size_t		 reqlen;
static struct sockaddr_in sin_;
static int		 epfd;
static int		 hold;

static int64_t		*lat, *ttfb, *ttfe;
static size_t		 nsamp, maxsamp;
static uint64_t		 started, done_ok, errors, non2xx, reconnects;
static int64_t		 t_rec;		/* recording starts here */
static int64_t		 t_end;

static int64_t
now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static void
die(const char *m)
{
	perror(m);
	exit(1);
}

static int
conn_open(struct conn *c)
{
	struct epoll_event	ev;
	int			one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd == -1)
		die("socket");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sin_, sizeof(sin_)) == -1 &&
	    errno != EINPROGRESS)
		return (-1);
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		die("epoll_ctl");
	return (0);
}

static void
conn_close(struct conn *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
}

static void
set_events(struct conn *c, uint32_t e)
{
	struct epoll_event	ev;

	ev.events = e;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		die("epoll_ctl mod");
}

static void
req_start(struct conn *c)
{
	c->sent = 0;
	c->st = R_HEAD;
	c->hlen = 0;
	c->left = 0;
	c->status = 0;
	c->saw_body = 0;
	c->t0 = now_us();
	c->t_head = c->t_body = 0;
	started++;
}

static void
record(struct conn *c)
{
	int64_t	t = now_us();

	if (c->status < 200 || c->status > 299)
		non2xx++;
	else
		done_ok++;
	if (c->t0 < t_rec || nsamp >= maxsamp)
		return;
	lat[nsamp] = t - c->t0;
	ttfb[nsamp] = c->t_head - c->t0;
	ttfe[nsamp] = (c->saw_body ? c->t_body : t) - c->t0;
	nsamp++;
}

/* Parse the response head in c->head; set state; 0 ok, -1 bad. */
static int
parse_head(struct conn *c, size_t end)
{
	char	*p, *line, *eol;

	c->head[end] = '\0';
	if (strncmp(c->head, "HTTP/1.", 7) != 0)
		return (-1);
	c->status = atoi(c->head + 9);
	c->keepalive = c->head[7] == '1';
	c->st = R_LEN;
	c->left = 0;
	line = strstr(c->head, "\r\n") + 2;
	while (line < c->head + end && (eol = strstr(line, "\r\n")) != NULL &&
	    eol != line) {
		*eol = '\0';
		if ((p = strchr(line, ':')) != NULL) {
			*p++ = '\0';
			while (*p == ' ')
				p++;
			if (strcasecmp(line, "content-length") == 0)
				c->left = strtoull(p, NULL, 10);
			else if (strcasecmp(line, "transfer-encoding") == 0 &&
			    strcasestr(p, "chunked") != NULL)
				c->st = R_CHUNK_SIZE;
			else if (strcasecmp(line, "connection") == 0) {
				if (strcasecmp(p, "close") == 0)
					c->keepalive = 0;
				else if (strcasecmp(p, "keep-alive") == 0)
					c->keepalive = 1;
			}
		}
		line = eol + 2;
	}
	if (c->st == R_LEN && c->left == 0)
		c->st = R_DONE;
	return (0);
}

/* Consume n bytes of body at p.  Returns -1 on a framing error. */
static int
body(struct conn *c, const char *p, size_t n, int64_t t)
{
	size_t	k;

	while (n > 0 && c->st != R_DONE) {
		switch (c->st) {
		case R_LEN:
		case R_CHUNK_DATA:
			if (!c->saw_body) {
				c->saw_body = 1;
				c->t_body = t;
			}
			k = n < c->left ? n : c->left;
			p += k;
			n -= k;
			c->left -= k;
			if (c->left == 0)
				c->st = c->st == R_LEN ? R_DONE : R_CHUNK_CRLF;
			break;
		case R_CHUNK_SIZE:
		case R_CHUNK_CRLF:
		case R_TRAILER:
			/* line-oriented: gather into head[] */
			if (c->hlen >= sizeof(c->head) - 1)
				return (-1);
			c->head[c->hlen++] = *p++;
			n--;
			if (c->hlen >= 2 && c->head[c->hlen - 2] == '\r' &&
			    c->head[c->hlen - 1] == '\n') {
				c->head[c->hlen - 2] = '\0';
				if (c->st == R_CHUNK_CRLF) {
					c->st = R_CHUNK_SIZE;
				} else if (c->st == R_CHUNK_SIZE) {
					c->left = strtoull(c->head, NULL, 16);
					c->st = c->left ? R_CHUNK_DATA :
					    R_TRAILER;
				} else if (c->hlen == 2) {
					c->st = R_DONE;
				}
				c->hlen = 0;
			}
			break;
		default:
			return (-1);
		}
	}
	return (n == 0 ? 0 : -1);	/* bytes after the end: pipelining */
}

static int
on_read(struct conn *c)
{
	char	 buf[65536], *e;
	ssize_t	 r;
	size_t	 off, take;
	int64_t	 t;

	for (;;) {
		r = read(c->fd, buf, sizeof(buf));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && errno == EAGAIN)
			return (0);
		if (r <= 0)
			return (-1);
		t = now_us();
		off = 0;
		if (c->st == R_HEAD) {
			if (c->t_head == 0)
				c->t_head = t;
			take = (size_t)r;
			if (take > sizeof(c->head) - 1 - c->hlen)
				take = sizeof(c->head) - 1 - c->hlen;
			memcpy(c->head + c->hlen, buf, take);
			c->hlen += take;
			c->head[c->hlen] = '\0';
			if ((e = strstr(c->head, "\r\n\r\n")) == NULL) {
				if (c->hlen >= sizeof(c->head) - 1)
					return (-1);
				continue;
			}
			off = (size_t)(e + 4 - c->head) - (c->hlen - take);
			if (parse_head(c, (size_t)(e + 4 - c->head)) == -1)
				return (-1);
			c->hlen = 0;
		}
		if (body(c, buf + off, (size_t)r - off, t) == -1)
			return (-1);
		if (c->st == R_DONE)
			return (1);
	}
}

static int
on_write(struct conn *c)
{
	ssize_t	r;

	while (c->sent < reqlen) {
		r = write(c->fd, req + c->sent, reqlen - c->sent);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && errno == EAGAIN)
			return (0);
		if (r == -1)
			return (-1);
		c->sent += (size_t)r;
	}
	set_events(c, EPOLLIN);
	return (0);
}

static int
cmp64(const void *a, const void *b)
{
	int64_t	x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x < y ? -1 : x > y);
}

static double
pct(int64_t *v, size_t n, double p)
{
	size_t	i;

	if (n == 0)
		return (0);
	i = (size_t)(p / 100.0 * (double)n);
	if (i >= n)
		i = n - 1;
	return ((double)v[i]);
}

static void
print_dist(const char *name, int64_t *v, size_t n, int last)
{
	double	sum = 0;
	size_t	i;

	qsort(v, n, sizeof(*v), cmp64);
	for (i = 0; i < n; i++)
		sum += (double)v[i];
	printf("\"%s\":{\"mean\":%.1f,\"p50\":%.0f,\"p95\":%.0f,\"p99\":%.0f,"
	    "\"p999\":%.0f,\"max\":%.0f}%s", name,
	    n ? sum / (double)n : 0.0, pct(v, n, 50), pct(v, n, 95),
	    pct(v, n, 99), pct(v, n, 99.9), pct(v, n, 100), last ? "" : ",");
}

static char *
slurp(const char *path, size_t *len)
{
	struct stat	 st;
	char		*b;
	int		 fd;
	ssize_t		 r;
	size_t		 off = 0;

	if ((fd = open(path, O_RDONLY)) == -1 || fstat(fd, &st) == -1)
		die(path);
	if ((b = malloc((size_t)st.st_size + 1)) == NULL)
		die("malloc");
	while (off < (size_t)st.st_size) {
		r = read(fd, b + off, (size_t)st.st_size - off);
		if (r <= 0)
			die(path);
		off += (size_t)r;
	}
	close(fd);
	*len = off;
	return (b);
}

int
main(int argc, char *argv[])
{
	static const struct option	longopts[] = {
		{ "hold", no_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 }
	};
	struct epoll_event	*evs;
	struct conn		*cs, *c;
	const char		*path = "/v1/chat/completions";
	const char		*bodyfile = NULL;
	char			 hdrs[8192] = "", *b;
	size_t			 blen = 0, hl, i;
	double			 dur = 5, warm = 0;
	uint64_t		 maxn = 1000000;
	int64_t			 t_start, t_stop;
	int			 nc = 1, port = 0, ch, n, k, r, live;

	while ((ch = getopt_long(argc, argv, "c:n:d:w:b:H:P:p:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c': nc = atoi(optarg); break;
		case 'n': maxn = strtoull(optarg, NULL, 10); break;
		case 'd': dur = atof(optarg); break;
		case 'w': warm = atof(optarg); break;
		case 'b': bodyfile = optarg; break;
		case 'P': path = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'o': hold = 1; break;
		case 'H':
			if (strlen(hdrs) + strlen(optarg) + 3 >= sizeof(hdrs))
				die("headers");
			strcat(hdrs, optarg);
			strcat(hdrs, "\r\n");
			break;
		default:
			fprintf(stderr, "usage: streamload -p port [-c n] "
			    "[-n max] [-d secs] [-w secs] [-b file] "
			    "[-H hdr]... [-P path] [--hold]\n");
			return (2);
		}
	}
	if (port <= 0 || nc <= 0)
		return (2);
	if (bodyfile != NULL)
		b = slurp(bodyfile, &blen);
	else
		b = strdup("");
	hl = strlen(path) + strlen(hdrs) + 256;
	if ((req = malloc(hl + blen)) == NULL)
		die("malloc");
	reqlen = (size_t)snprintf((char *)req, hl, "POST %s HTTP/1.1\r\n"
	    "Host: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n%s\r\n", path, port, blen, hdrs);
	memcpy((char *)req + reqlen, b, blen);
	reqlen += blen;

	sin_.sin_family = AF_INET;
	sin_.sin_port = htons((uint16_t)port);
	sin_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

	maxsamp = hold ? (size_t)nc : 4000000;
	lat = calloc(maxsamp, sizeof(*lat));
	ttfb = calloc(maxsamp, sizeof(*ttfb));
	ttfe = calloc(maxsamp, sizeof(*ttfe));
	cs = calloc((size_t)nc, sizeof(*cs));
	evs = calloc((size_t)nc, sizeof(*evs));
	if (!lat || !ttfb || !ttfe || !cs || !evs)
		die("calloc");
	if ((epfd = epoll_create1(0)) == -1)
		die("epoll_create1");

	t_start = now_us();
	t_rec = t_start + (int64_t)(warm * 1e6);
	t_end = t_rec + (int64_t)(dur * 1e6);
	for (i = 0; i < (size_t)nc; i++) {
		cs[i].fd = -1;
		if (conn_open(&cs[i]) == -1)
			die("connect");
		req_start(&cs[i]);
	}
	live = nc;
	while (live > 0) {
		int64_t	t = now_us();
		int	tmo = (int)((t_end - t) / 1000) + 1;

		if (t >= t_end)
			break;
		n = epoll_wait(epfd, evs, nc, tmo > 1000 ? 1000 : tmo);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			die("epoll_wait");
		for (k = 0; k < n; k++) {
			c = evs[k].data.ptr;
			if (c->fd == -1)
				continue;
			r = 0;
			if (evs[k].events & (EPOLLERR | EPOLLHUP) &&
			    !(evs[k].events & EPOLLIN))
				r = -1;
			if (r == 0 && (evs[k].events & EPOLLOUT))
				r = on_write(c);
			if (r == 0 && (evs[k].events & EPOLLIN))
				r = on_read(c);
			if (r == 1) {
				record(c);
				if (hold) {
					conn_close(c);
					live--;
					continue;
				}
				if (!c->keepalive) {
					conn_close(c);
					reconnects++;
					if (conn_open(c) == -1)
						die("connect");
				}
				if (started >= maxn) {
					conn_close(c);
					live--;
					continue;
				}
				req_start(c);
				if (c->keepalive && on_write(c) == -1) {
					errors++;
					conn_close(c);
					live--;
					continue;
				}
				if (c->sent < reqlen)
					set_events(c, EPOLLOUT | EPOLLIN);
			} else if (r == -1) {
				errors++;
				conn_close(c);
				if (hold || started >= maxn) {
					live--;
					continue;
				}
				reconnects++;
				if (conn_open(c) == -1)
					die("connect");
				req_start(c);
			}
		}
	}
	t_stop = now_us();
	if (t_stop > t_end)
		t_stop = t_end;
	{
		double	secs = (double)(t_stop - (t_rec < t_stop ? t_rec :
		    t_start)) / 1e6;

		printf("{\"tool\":\"streamload\",\"connections\":%d,"
		    "\"requests\":%zu,\"completed\":%llu,\"errors\":%llu,"
		    "\"non2xx\":%llu,\"reconnects\":%llu,\"seconds\":%.3f,"
		    "\"rps\":%.1f,", nc, nsamp,
		    (unsigned long long)done_ok, (unsigned long long)errors,
		    (unsigned long long)non2xx,
		    (unsigned long long)reconnects, secs,
		    secs > 0 ? (double)nsamp / secs : 0.0);
	}
	print_dist("latency_us", lat, nsamp, 0);
	print_dist("ttfb_us", ttfb, nsamp, 0);
	print_dist("ttfe_us", ttfe, nsamp, 1);
	printf("}\n");
	for (i = 0; i < (size_t)nc; i++)
		if (cs[i].fd != -1)
			close(cs[i].fd);
	close(epfd);
	free(lat);
	free(ttfb);
	free(ttfe);
	free(cs);
	free(evs);
	free((char *)req);
	free(b);
	return (0);
}
