/*
 * listen.c - the listening sockets, bound by the master before it forks
 * (so that it can bind a privileged port and the children inherit it).
 * All workers accept on the same sockets.
 */
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "master/listen.h"

static int
listen_one(const struct cfg_addr *a, char *err, size_t errlen)
{
	struct addrinfo	 hints, *res = NULL;
	const char	*host = strcmp(a->host, "*") == 0 ? NULL : a->host;
	int		 fd, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, a->port, &hints, &res)) != 0) {
		snprintf(err, errlen, "listen %s:%s: %s", a->host, a->port,
		    gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 4096) == -1) {
		snprintf(err, errlen, "listen %s:%s: %s", a->host, a->port,
		    strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
listen_open(const struct config *cfg, int *fds, char *err, size_t errlen)
{
	int i, j;

	for (i = 0; i < cfg->nlisten; i++) {
		if ((fds[i] = listen_one(&cfg->listen[i], err, errlen)) == -1) {
			for (j = 0; j < i; j++)
				close(fds[j]);
			return -1;
		}
	}
	return cfg->nlisten;
}

int
listen_same(const struct config *a, const struct config *b)
{
	int i;

	if (a->nlisten != b->nlisten)
		return 0;
	for (i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i].host, b->listen[i].host) != 0 ||
		    strcmp(a->listen[i].port, b->listen[i].port) != 0)
			return 0;
	return 1;
}

/*
 * The admin socket (admin_listen): bound like the others, but accepted on
 * by the workers' admin listener only.  *FD = -1 when it is not set.
 */
int
admin_open(const struct config *cfg, int *fd, char *err, size_t errlen)
{
	*fd = -1;
	if (!cfg->has_admin_listen)
		return 0;
	if ((*fd = listen_one(&cfg->admin_listen, err, errlen)) == -1) {
		size_t n = strlen(err);

		snprintf(err + n, errlen - n, " (admin_listen)");
		return -1;
	}
	return 0;
}

int
admin_same(const struct config *a, const struct config *b)
{
	if (a->has_admin_listen != b->has_admin_listen)
		return 0;
	return !a->has_admin_listen ||
	    (strcmp(a->admin_listen.host, b->admin_listen.host) == 0 &&
	    strcmp(a->admin_listen.port, b->admin_listen.port) == 0);
}
