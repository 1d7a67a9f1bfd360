/*
 * sluiced.c - main(): options, configuration check, daemon setup.
 *
 *   sluiced [-f] [-t] [-c FILE]
 *
 * Everything that can fail does so here, before the first fork, with a
 * message on the terminal: the configuration (file:line), binding the
 * listening sockets, the pid file, the shared segment.  Then the master
 * loop takes over (master.c).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "master/listen.h"
#include "master/master.h"
#include "master/proctitle.h"
#include "master/rlimit.h"
#include "shm/counters.h"
#include "shm/gtokens.h"
#include "shm/inflight.h"
#include "shm/keystate.h"
#include "shm/shm.h"
#include "shm/spread.h"
#include "shm/tickets.h"
#include "shm/userstate.h"
#include "worker/tls.h"

#define DEFAULT_CONFIG	"/etc/sluice/sluice.conf"

static void
usage(void)
{
	fprintf(stderr, "usage: sluiced [-ft] [-c file]\n"
	    "  -c file  configuration file (default %s)\n"
	    "  -f       stay in the foreground\n"
	    "  -t       check the configuration and exit\n", DEFAULT_CONFIG);
	exit(1);
}

/* Refuse to start twice; then record our pid. */
static void
pidfile_write(const char *path)
{
	char	 buf[32];
	FILE	*f;
	long	 pid;

	if (path[0] == '\0')
		return;
	if ((f = fopen(path, "r")) != NULL) {
		if (fscanf(f, "%ld", &pid) == 1 && pid > 0 &&
		    (kill((pid_t)pid, 0) == 0 || errno == EPERM))
			fatalx("already running (pid %ld in %s)", pid, path);
		fclose(f);
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		fatal("pid file %s", path);
	snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf))
		fatal("pid file %s", path);
	close(fd);
}

/* The spool must be writable by the user the collector runs as. */
static void
spool_prepare(const struct config *cfg)
{
	struct passwd *pw;

	if (cfg->spool_dir[0] == '\0')
		return;
	if (mkdir(cfg->spool_dir, 0700) == -1 && errno != EEXIST) {
		log_warn("spool_dir %s", cfg->spool_dir);
		return;
	}
	if (cfg->user[0] != '\0' && geteuid() == 0 &&
	    (pw = getpwnam(cfg->user)) != NULL &&
	    chown(cfg->spool_dir, pw->pw_uid, pw->pw_gid) == -1)
		log_warn("chown %s", cfg->spool_dir);
}

int
main(int argc, char **argv)
{
	struct config		*cfg;
	struct shm_segment	*shm;
	struct shm_region_req	 regions[7];
	struct tls_server	*tls = NULL;
	struct tickets_region	*tickets;
	struct keystate_table	*kst;
	const char		*path = DEFAULT_CONFIG;
	char			 err[1024], abspath[PATH_MAX];
	int			 ch, foreground = 0, test = 0, nfds, admin_fd;
	int			 fds[CFG_MAX_LISTEN], ready[2] = { -1, -1 };

	proctitle_init(argc, argv);
	while ((ch = getopt(argc, argv, "c:fth")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 't':
			test = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	log_init("stderr", LOGL_INFO);
	if (cfg_load(path, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sluiced: %s\n", err);
		if (test)
			fprintf(stderr, "sluiced: configuration file %s test "
			    "failed\n", path);
		return 1;
	}
	if (cfg->user[0] != '\0' && getpwnam(cfg->user) == NULL) {
		fprintf(stderr, "sluiced: %s: user \"%s\" does not exist\n",
		    path, cfg->user);
		if (test)
			fprintf(stderr, "sluiced: configuration file %s test "
			    "failed\n", path);
		return 1;
	}
	if (test && cfg->ssl_certificate[0] != '\0') {
		/* the files load, the key matches, and when it expires */
		char line[PATH_MAX + 512];

		if ((tls = tls_server_new(cfg, NULL, err, sizeof(err))) ==
		    NULL) {
			fprintf(stderr, "sluiced: %s\nsluiced: configuration "
			    "file %s test failed\n", err, path);
			cfg_free(cfg);
			return 1;
		}
		if (tls_server_describe(tls, cfg, time(NULL), line,
		    sizeof(line)) < 0)
			fprintf(stderr, "sluiced: warning: %s\n", line);
		else
			fprintf(stderr, "sluiced: %s\n", line);
		tls_server_free(tls);
	}
	if (test) {
		fprintf(stderr, "sluiced: configuration file %s test is "
		    "successful\n", path);
		cfg_free(cfg);
		return 0;
	}
	if (geteuid() == 0 && cfg->user[0] == '\0') {
		fprintf(stderr, "sluiced: %s: refusing to run workers as root: "
		    "set \"user\" to an unprivileged account (or \"user "
		    "root;\" to run them as root on purpose)\n", path);
		return 1;
	}
	{
		char warn[256];

		if (rlimit_nofile_apply(cfg, err, sizeof(err), warn,
		    sizeof(warn)) == -1)
			fatalx("%s: %s", path, err);
		if (warn[0] != '\0')
			log_warnx("%s: %s", path, warn);
	}
		/* a reload re-reads the same file after we chdir("/") */
	if (realpath(path, abspath) == NULL)
		fatal("%s", path);

	if ((nfds = listen_open(cfg, fds, err, sizeof(err))) == -1)
		fatalx("%s", err);
	if (admin_open(cfg, &admin_fd, err, sizeof(err)) == -1)
		fatalx("%s", err);
	regions[0].name = "keys";
	regions[0].size = keystate_size(KEYSTATE_SLOTS);
	regions[1].name = "counters";
	regions[1].size = cnt_region_size((uint32_t)cfg->workers * 2);
	regions[2].name = "inflight";
	regions[2].size = inflight_size((uint32_t)cfg->workers * 2,
	    (uint32_t)cfg->max_connections);
	regions[3].name = "users";
	regions[3].size = userstate_size(USERSTATE_SLOTS);
	regions[4].name = "spread";
	regions[4].size = spread_size((uint32_t)cfg->workers * 2);
	regions[5].name = "tickets";
	regions[5].size = tickets_size();
	regions[6].name = "gtokens";
	regions[6].size = gtokens_size();
	shm = shm_create_regions((uint32_t)cfg->workers * 2,
	    (uint32_t)cfg->ring_slots, regions, 7);
	if (shm == NULL)
		fatal("cannot create the shared memory segment");
	cnt_region_init(shm_region(shm, "counters", NULL),
	    (uint32_t)cfg->workers * 2);
	inflight_init(shm_region(shm, "inflight", NULL),
	    (uint32_t)cfg->workers * 2, (uint32_t)cfg->max_connections);
	userstate_init(shm_region(shm, "users", NULL), USERSTATE_SLOTS);
	spread_init(shm_region(shm, "spread", NULL),
	    (uint32_t)cfg->workers * 2);
	kst = shm_region(shm, "keys", NULL);
	keystate_init(kst, KEYSTATE_SLOTS);
	if (keystate_assign(kst, cfg->keys) == -1)
		fatalx("more than %d keys", KEYSTATE_SLOTS);
	spool_prepare(cfg);
	tickets = shm_region(shm, "tickets", NULL);
	tickets_init(tickets);
	gtokens_init(shm_region(shm, "gtokens", NULL));
	if (cfg->ssl_certificate[0] != '\0') {
		/* read the key now, while we may still be root */
		if ((tls = tls_server_new(cfg, tickets, err, sizeof(err))) ==
		    NULL)
			fatalx("%s", err);
	}

	if (!foreground) {
		pid_t	 pid;
		char	 ok = 0;

		if (pipe(ready) == -1)
			fatal("pipe");
		if ((pid = fork()) == -1)
			fatal("fork");
		if (pid > 0) {
			/* exit 0 only once the daemon says it is up */
			close(ready[1]);
			cfg_free(cfg);
			if (read(ready[0], &ok, 1) != 1)
				return 1;
			return 0;
		}
		close(ready[0]);
		if (setsid() == -1)
			fatal("setsid");
		if (chdir("/") == -1)
			fatal("chdir");
		int dn = open("/dev/null", O_RDWR);
		if (dn != -1) {
			dup2(dn, STDIN_FILENO);
			dup2(dn, STDOUT_FILENO);
			if (strcmp(cfg->log, "stderr") != 0)
				dup2(dn, STDERR_FILENO);
			if (dn > STDERR_FILENO)
				close(dn);
		}
	}
	if (log_init(cfg->log, cfg->log_level) == -1)
		fatal("log %s", cfg->log);
	log_setrole("master");
	pidfile_write(cfg->pid_file);

	/* master_run owns cfg from here, and removes the pid file */
	return master_run(cfg, abspath, shm, fds, nfds, admin_fd, ready[1],
	    tls);
}
