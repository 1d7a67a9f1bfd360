/*
 * master.c - process supervision: nginx's master cycle.
 *
 * Signal handlers only set flags.  The loop blocks every signal it handles
 * and waits in ppoll() with them unblocked, so a signal is never lost
 * between the check of a flag and the wait, and it wakes the loop.
 *
 * Worker slots: there are 2 x workers slots, each tied to one event ring
 * lane, so that a reload can run a new generation beside the old one while
 * the old finishes its in-flight requests.  A worker that dies is respawned
 * in the same slot (same lane; the lane's tail survives in shared memory),
 * with a backoff when it keeps dying.  The collector is respawned too; on
 * shutdown it is stopped only after every worker has exited, so it sees
 * every event they pushed.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/keys.h"
#include "common/log.h"
#include "master/listen.h"
#include "master/master.h"
#include "master/proctitle.h"
#include "master/rlimit.h"
#include "shm/cache.h"
#include "shm/counters.h"
#include "shm/inflight.h"
#include "shm/userstate.h"
#include "shm/keystate.h"
#include "shm/shm.h"
#include "shm/spread.h"
#include "shm/tickets.h"
#include "master/gtoken.h"
#include "sql/collector.h"
#include "worker/tls.h"
#include "worker/usage.h"
#include "worker/worker.h"

#define RESPAWN_MAX_MS		5000
#define FAST_KILL_GRACE_MS	5000
#define MAX_COLLECTOR_RESTARTS_ON_STOP	5
#define COLLECTOR_NICE		10	/* how far ahead of the workers */

struct child {
	pid_t		 pid;		/* 0 = none */
	unsigned	 gen;		/* configuration generation */
	int		 stopping;	/* we asked it to stop */
	int		 crashes;	/* consecutive quick deaths */
	int64_t		 started_ms;
	int64_t		 respawn_at_ms;	/* 0 = no respawn pending */
};

enum stop_mode {
	RUNNING = 0,
	STOP_GRACEFUL,
	STOP_FAST,
};

static volatile sig_atomic_t got_hup, got_term, got_quit, got_chld, got_usr1;

static struct {
	struct config		*cfg;
	const char		*cfg_path;
	struct shm_segment	*shm;
	int			 fds[CFG_MAX_LISTEN];
	int			 nfds;
	int			 admin_fd;	/* -1 = no admin_listen */
	struct cnt_region	*cnt;		/* telemetry, in the segment */
	struct child		*slots;
	int			 nslots;
	struct child		 collector;
	int			 collector_restart;	/* stop it, start anew */
	int			 collector_stop_sent;
	int			 collector_stop_tries;
	unsigned		 gen;
	enum stop_mode		 stop;
	int64_t			 kill_at_ms;
	sigset_t		 waitmask;
	struct tls_server	*tls;		/* the next generation's */
	struct tickets_region	*tickets;
	struct cache_arena	*cache;		/* the answer cache, or NULL */
	int64_t			 rotate_at_ms;	/* next ticket key; 0 = none */
} m;

static void
on_signal(int sig)
{
	switch (sig) {
	case SIGHUP:
		got_hup = 1;
		break;
	case SIGTERM:
	case SIGINT:
		got_term = 1;
		break;
	case SIGQUIT:
		got_quit = 1;
		break;
	case SIGCHLD:
		got_chld = 1;
		break;
	case SIGUSR1:
		got_usr1 = 1;
		break;
	}
}



/* What /status shows of a slot: who runs in it, from which generation. */
static void
slot_publish(int slot, pid_t pid, unsigned gen)
{
	struct cnt_slot *cs;

	if (m.cnt == NULL || slot >= CNT_SLOTS_MAX)
		return;
	cs = &m.cnt->master.slots[slot];
	atomic_store_explicit(&cs->gen, gen, memory_order_relaxed);
	atomic_store_explicit(&cs->started_wall_us, pid ? wall_us() : 0,
	    memory_order_relaxed);
	atomic_store_explicit(&cs->pid, (int32_t)pid, memory_order_release);
}

/* Upstream names get a counter index once, kept across reloads. */
static void
upstreams_publish(const struct config *cfg)
{
	int i;

	for (i = 0; i < cfg->nupstreams; i++)
		if (cnt_upstream_register(m.cnt, cfg->upstreams[i].name) == -1)
			log_warnx("upstream %s: more than %d upstream names "
			    "since start, not counted in /metrics",
			    cfg->upstreams[i].name, CNT_UPSTREAMS_MAX);
}

/* The outcome of a reload, where sluicectl reload reads it. */
static void
reload_record(int ok, const char *fmt, ...)
{
	char	 msg[2048];	/* whole in the log, cut in /status */
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!ok)
		log_warnx("%s", msg);
	cnt_master_reload(m.cnt, ok, msg, wall_us());
}

/*
 * The certificate in force: its expiry where /metrics reads it, a line in
 * the log (a warning once expired), and the ticket key rotation timer.
 */
static void
tls_publish(void)
{
	char	 line[PATH_MAX + 512];
	int64_t	 now = now_us() / 1000;

	atomic_store_explicit(&m.cnt->master.tls_not_after,
	    tls_server_not_after(m.tls), memory_order_relaxed);
	if (m.tls == NULL) {
		m.rotate_at_ms = 0;
		return;
	}
	/* the first "listen ... ssl" may come with a reload */
	if (tickets_rotations(m.tickets) == 0 &&
	    tls_tickets_rotate(m.tickets, wall_us()) == -1)
		log_warnx("cannot make a TLS session ticket key: sessions do "
		    "not resume");
	if (tls_server_describe(m.tls, m.cfg, time(NULL), line,
	    sizeof(line)) < 0)
		log_warnx("%s", line);
	else
		log_info("%s", line);
	if (m.rotate_at_ms == 0 ||
	    m.rotate_at_ms > now + m.cfg->ssl_session_timeout_ms)
		m.rotate_at_ms = now + m.cfg->ssl_session_timeout_ms;
}

/* Drop to cfg->user in a child (no-op when not root or no user set). */
static void
master_drop_privileges(const struct config *cfg)
{
	struct passwd *pw;

	if (cfg->user[0] == '\0' || geteuid() != 0)
		return;
	if ((pw = getpwnam(cfg->user)) == NULL)
		fatalx("user %s: no such user", cfg->user);
	if (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", cfg->user);
}

/* In a new child: default signal dispositions, signals still blocked. */
static void
child_setup(void)
{
	struct sigaction sa;
	int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR1 };
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	/* children hold provider keys: no core dumps, no ptrace by peers */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("prctl(PR_SET_DUMPABLE)");
}

/* A token refresher child: as every child, and no longer root. */
static void
gtoken_child_init(void)
{
	child_setup();
	master_drop_privileges(m.cfg);
	for (int i = 0; i < m.nfds; i++)
		close(m.fds[i]);
	if (m.admin_fd != -1)
		close(m.admin_fd);
}

static void
spawn_worker(int slot)
{
	struct child	*ch = &m.slots[slot];
	pid_t		 pid;

	ch->respawn_at_ms = 0;
	/* after a reload that raised max_connections, the table grows */
	if (inflight_grow(shm_region(m.shm, "inflight", NULL), (uint32_t)slot,
	    (uint32_t)m.cfg->max_connections) == -1)
		log_warn("in-flight table of worker slot %d stays at its size: "
		    "requests past it are not metered if the worker dies", slot);
	switch ((pid = fork())) {
	case -1:
		log_warn("fork worker slot %d", slot);
		ch->respawn_at_ms = (now_us() / 1000) + 1000;
		return;
	case 0:
		child_setup();
		proctitle_set("sluice: worker %d", slot);
		{
			char role[32];

			snprintf(role, sizeof(role), "worker %d", slot);
			log_setrole(role);
		}
		master_drop_privileges(m.cfg);
		worker_set_cache(m.cache);
		/* signals stay blocked until worker_main has its handlers */
		worker_main(m.cfg, m.shm, slot, m.fds, m.nfds, m.admin_fd,
		    m.tls);
	default:
		ch->pid = pid;
		ch->gen = m.gen;
		ch->stopping = 0;
		ch->started_ms = (now_us() / 1000);
		slot_publish(slot, pid, m.gen);
		log_debug("worker slot %d started, pid %d", slot, (int)pid);
	}
}

/*
 * The collector is the one process whose falling behind loses data: a
 * full lane drops events.  On a saturated host it runs ahead of the
 * workers (a nice value COLLECTOR_NICE below theirs), so that they slow
 * down instead.  Raising a priority needs root (CAP_SYS_NICE); without
 * it the collector keeps the workers' and says so once.
 */
static void
collector_priority(void)
{
	int	 cur;

	errno = 0;
	cur = getpriority(PRIO_PROCESS, 0);
	if ((cur == -1 && errno != 0) ||
	    setpriority(PRIO_PROCESS, 0, cur - COLLECTOR_NICE) == -1)
		log_info("cannot run ahead of the workers: %s",
		    strerror(errno));
}

static void
spawn_collector(void)
{
	pid_t pid;

	m.collector.respawn_at_ms = 0;
	m.collector_stop_sent = 0;
	switch ((pid = fork())) {
	case -1:
		log_warn("fork collector");
		m.collector.respawn_at_ms = (now_us() / 1000) + 1000;
		return;
	case 0:
		child_setup();
		proctitle_set("sluice: collector");
		log_setrole("collector");
		collector_priority();
		master_drop_privileges(m.cfg);
		for (int i = 0; i < m.nfds; i++)
			close(m.fds[i]);
		if (m.admin_fd != -1)
			close(m.admin_fd);
		/* collector_main unblocks once its handlers are in place */
		collector_main(m.cfg, m.shm);
	default:
		m.collector.pid = pid;
		m.collector.started_ms = (now_us() / 1000);
		m.collector.stopping = 0;
	}
}

static void
describe_exit(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s",
		    WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "ended with status 0x%x", status);
}

/* The delay before respawning something that died: 0, then doubling. */
static int64_t
backoff_ms(struct child *ch)
{
	int64_t d;

	if ((now_us() / 1000) - ch->started_ms > 10000)
		ch->crashes = 0;
	if (ch->crashes++ == 0)
		return 0;
	d = 100LL << (ch->crashes > 7 ? 7 : ch->crashes - 1);
	return d > RESPAWN_MAX_MS ? RESPAWN_MAX_MS : d;
}

/* Charge a cut request to one level (its key, or the key's team) in place
 * of what it held there, as auth_charge does for one that ended. */
static void
level_charge(struct keystate_table *kst, const struct key_entry *e,
    const struct usage_event *ev, const struct ks_hold *hold)
{
	struct keystate		*ks;
	int64_t			 tokens = 0;

	if (e == NULL || (ks = keystate_at(kst, e->slot)) == NULL)
		return;
	if (ev->prompt_tokens > 0)
		tokens += ev->prompt_tokens;
	if (ev->completion_tokens > 0)
		tokens += ev->completion_tokens;
	ks_charge(ks, hold, e->tpm, tokens, (int)e->budget_period,
	    ev->cost_micro_usd, now_us() * 1000, time(NULL));
}

/* Charge a cut request to its key, team and end user (its rpm was taken
 * at the start); HOLD: what it held at each, in that order. */
static void
inflight_charge(struct keystate_table *kst, const struct usage_event *ev,
    const struct ks_hold hold[3])
{
	const struct key_entry	*k;
	struct keystate		*us;
	int64_t			 tokens = 0;

	if (m.cfg->keys == NULL || ev->key_name[0] == '\0')
		return;
	if ((k = keys_by_name(m.cfg->keys, ev->key_name)) == NULL)
		return;
	level_charge(kst, k, ev, &hold[0]);
	level_charge(kst, keys_team(m.cfg->keys, k), ev, &hold[1]);
	if (ev->end_user[0] == '\0' || k->user_budget_micro_usd <= 0 ||
	    (us = userstate_find(shm_region(m.shm, "users", NULL),
	    userstate_tag(k->name, ev->end_user))) == NULL)
		return;
	if (ev->prompt_tokens > 0)
		tokens += ev->prompt_tokens;
	if (ev->completion_tokens > 0)
		tokens += ev->completion_tokens;
	ks_charge(us, &hold[2], 0, tokens, (int)k->user_budget_period,
	    ev->cost_micro_usd, now_us() * 1000, time(NULL));
}

/* Whether an entry holds anything of a key's, team's or user's limits. */
static int
holds_any(const struct ks_hold hold[3])
{
	int i;

	for (i = 0; i < 3; i++)
		if (hold[i].tokens != 0 || hold[i].micro_usd != 0)
			return 1;
	return 0;
}

/*
 * A worker died without metering what it had under way: every live entry
 * of its in-flight table becomes the event the worker would have pushed,
 * cut by its death and estimated as usage_estimate does a stream that
 * never reported usage.  The dead worker was its lane's only producer, and
 * no worker holds the slot until we respawn it, so we push for it, at the
 * lane's next positions (the collector's exactly-once bookkeeping goes by
 * lane position, and a respawned worker goes on from there too).  An
 * event the worker pushed just before it died is not pushed again
 * (inflight_unpushed), so each request has one row.
 */
static void
inflight_reap(int slot, pid_t pid)
{
	struct inflight_entry	*t;
	struct ring_lane	*lane = shm_lane(m.shm, (uint32_t)slot);
	struct keystate_table	*kst = shm_region(m.shm, "keys", NULL);
	uint32_t		 n, i, cut = 0;
	uint64_t		 attempts;

	t = inflight_table(shm_region(m.shm, "inflight", NULL),
	    (uint32_t)slot, &n);
	if (t == NULL || lane == NULL)
		return;
	attempts = ring_attempts(lane);	/* before we push any */
	for (i = 0; i < n; i++) {
		struct usage_event	*ev = &t[i].ev;
		struct usage_acc	 a;
		const struct cfg_alias	*al;
		const char		*priced;
		int64_t			 body;

		if (!inflight_unpushed(&t[i], attempts)) {
			/* pushed, and died before charging: charge it now */
			if (holds_any(t[i].hold))
				inflight_charge(kst, ev, t[i].hold);
			if (inflight_live(&t[i]))
				inflight_end(&t[i]);
			continue;
		}
		snprintf(ev->error_class, sizeof(ev->error_class),
		    "worker_died");
		if (ev->status == 0)
			ev->status = 502;
		ev->worker_pid = (int32_t)pid;
		ev->latency_us = wall_us() - ev->ts_start_us;
		if (ev->latency_us < 0)
			ev->latency_us = 0;
		ev->overhead_us = 0;
		ev->ttfb_us = -1;
		memset(&a, 0, sizeof(a));
		a.text_bytes = t[i].text_bytes;
		/* as the worker estimates: from the body read, not the head */
		body = ev->bytes_in - t[i].head_bytes;
		usage_estimate(&a, body > 0 ? (size_t)body : 0);
		/* an alias is billed as the model it stands for, as the
		 * pipeline does */
		al = cfg_alias_for(m.cfg, ev->model, strlen(ev->model));
		priced = al != NULL ? al->model : ev->model;
		usage_to_event(&a, cfg_price_for(m.cfg, priced, strlen(priced)),
		    ev);
		if (ring_push(lane, ev) == -1)
			log_warnx("event ring lane %d full: the event of a "
			    "request cut by worker %d was dropped", slot,
			    (int)pid);
		inflight_charge(kst, ev, t[i].hold);
		inflight_end(&t[i]);
		cut++;
	}
	if (cut > 0)
		log_warnx("worker slot %d (pid %d) died with %u requests in "
		    "flight: metered as worker_died", slot, (int)pid, cut);
}

static void
reap(void)
{
	pid_t	 pid;
	int	 status, i;
	char	 how[128];

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (gtoken_reaped(pid, status))
			continue;
		describe_exit(status, how, sizeof(how));
		if (pid == m.collector.pid) {
			int clean = WIFEXITED(status) &&
			    WEXITSTATUS(status) == 0;

			m.collector.pid = 0;
			if (m.collector.stopping && clean) {
				log_info("collector (pid %d) %s", (int)pid,
				    how);
				if (m.collector_restart && m.stop == RUNNING) {
					m.collector_restart = 0;
					spawn_collector();
				}
				continue;
			}
			log_warnx("collector (pid %d) %s; respawning",
			    (int)pid, how);
			cnt_bump(&m.cnt->master.collector_restarts);
			m.collector.respawn_at_ms = (now_us() / 1000) +
			    backoff_ms(&m.collector);
			continue;
		}
		for (i = 0; i < m.nslots; i++) {
			struct child *ch = &m.slots[i];

			if (ch->pid != pid)
				continue;
			ch->pid = 0;
			slot_publish(i, 0, ch->gen);
			/* its share of the connections no longer counts */
			spread_clear(shm_region(m.shm, "spread", NULL),
			    (uint32_t)i);
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				inflight_reap(i, pid);
			if (ch->stopping || m.stop != RUNNING) {
				log_info("worker slot %d (pid %d, generation "
				    "%u) %s", i, (int)pid, ch->gen, how);
				break;
			}
			log_warnx("worker slot %d (pid %d) %s; respawning", i,
			    (int)pid, how);
			cnt_bump(&m.cnt->master.worker_restarts);
			ch->respawn_at_ms = (now_us() / 1000) + backoff_ms(ch);
			break;
		}
	}
}

static int
workers_alive(void)
{
	int i, n = 0;

	for (i = 0; i < m.nslots; i++)
		if (m.slots[i].pid != 0)
			n++;
	return n;
}

static void
signal_workers(int sig, int only_old_gen)
{
	int i;

	for (i = 0; i < m.nslots; i++) {
		struct child *ch = &m.slots[i];

		if (ch->pid == 0 || (only_old_gen && ch->gen == m.gen))
			continue;
		ch->stopping = 1;
		ch->respawn_at_ms = 0;
		if (kill(ch->pid, sig) == -1 && errno != ESRCH)
			log_warn("kill worker %d", (int)ch->pid);
	}
}

static int
collector_settings_changed(const struct config *a, const struct config *b)
{
	return strcmp(a->database, b->database) != 0 ||
	    strcmp(a->spool_dir, b->spool_dir) != 0 ||
	    a->batch_rows != b->batch_rows || a->batch_ms != b->batch_ms ||
	    a->usage_retention_months != b->usage_retention_months ||
	    a->usage_retention_days != b->usage_retention_days;
}

/*
 * The answer cache for a new configuration: the running arena is kept
 * (entries and all) unless its size changed; a new one serves the new
 * generation, the old generation keeps its own mapping until it exits.
 * An arena that cannot be mapped leaves the cache off, said once.
 */
static void
cache_reload(const struct config *ncfg)
{
	if (ncfg->cache_size == m.cfg->cache_size &&
	    ncfg->cache_max_entry == m.cfg->cache_max_entry)
		return;
	cache_destroy(m.cache);
	m.cache = NULL;
	if (ncfg->cache_size == 0)
		return;
	if ((m.cache = cache_create(ncfg->cache_size,
	    ncfg->cache_max_entry)) == NULL)
		log_warn("reload: cache %zu: the answer cache is off",
		    ncfg->cache_size);
	else
		log_info("answer cache: a new arena of %u entries",
		    cache_nslots(m.cache));
}

static void
reload(void)
{
	struct config	*ncfg;
	char		 err[1024];
	int		 nfds[CFG_MAX_LISTEN], nn = 0, i, free_slots = 0;
	int		 rebind, admin_rebind;
	struct tls_server *ntls = NULL;

	log_info("SIGHUP: reloading %s", m.cfg_path);
	if (cfg_load(m.cfg_path, &ncfg, err, sizeof(err)) == -1) {
		reload_record(0, "reload failed, keeping the running "
		    "configuration: %s", err);
		return;
	}
	if (ncfg->user[0] != '\0' && getpwnam(ncfg->user) == NULL) {
		reload_record(0, "reload failed: user \"%s\" does not exist",
		    ncfg->user);
		cfg_free(ncfg);
		return;
	}
	if (ncfg->workers > m.nslots / 2) {
		reload_record(0, "reload failed: workers %d exceeds the %d this "
		    "process started with (a restart can raise it)",
		    ncfg->workers, m.nslots / 2);
		cfg_free(ncfg);
		return;
	}
	if (ncfg->ring_slots != m.cfg->ring_slots)
		log_warnx("reload: ring_slots changes only on restart");
	{
		char warn[256];

		if (rlimit_nofile_apply(ncfg, err, sizeof(err), warn,
		    sizeof(warn)) == -1) {
			reload_record(0, "reload failed: %s", err);
			cfg_free(ncfg);
			return;
		}
		if (warn[0] != '\0')
			log_warnx("reload: %s", warn);
	}
	for (i = 0; i < m.nslots; i++)
		if (m.slots[i].pid == 0 && m.slots[i].respawn_at_ms == 0)
			free_slots++;
		else if (m.slots[i].pid == 0 && m.slots[i].gen == m.gen)
			free_slots++;	/* a crashed current worker's slot */
	if (free_slots < ncfg->workers) {
		reload_record(0, "reload failed: the previous generation is still "
		    "finishing its requests; try again shortly");
		cfg_free(ncfg);
		return;
	}
	if (keystate_assign(shm_region(m.shm, "keys", NULL), ncfg->keys) == -1) {
		reload_record(0, "reload failed: more than %d keys",
		    KEYSTATE_SLOTS);
		cfg_free(ncfg);
		return;
	}
	/* a certificate that does not load keeps the old one serving */
	if (ncfg->ssl_certificate[0] != '\0' &&
	    (ntls = tls_server_new(ncfg, m.tickets, err, sizeof(err))) ==
	    NULL) {
		reload_record(0, "reload failed, keeping the running "
		    "configuration and certificate: %s", err);
		cfg_free(ncfg);
		return;
	}
	admin_rebind = !admin_same(m.cfg, ncfg);
	if (admin_rebind) {
		/* release the old admin address first: it may be reused */
		if (m.admin_fd != -1)
			close(m.admin_fd);
		if (admin_open(ncfg, &m.admin_fd, err, sizeof(err)) == -1) {
			reload_record(0, "reload failed: %s", err);
			if (admin_open(m.cfg, &m.admin_fd, err, sizeof(err)) ==
			    -1)
				log_warnx("cannot re-bind the old admin "
				    "address: %s", err);
			tls_server_free(ntls);
			cfg_free(ncfg);
			return;
		}
	}
	rebind = !listen_same(m.cfg, ncfg);
	if (rebind) {
		/* addresses kept from the old config would fail to bind */
		for (i = 0; i < m.nfds; i++)
			close(m.fds[i]);
		if ((nn = listen_open(ncfg, nfds, err, sizeof(err))) == -1) {
			reload_record(0, "reload failed: %s; re-binding the "
			    "old addresses", err);
			if (listen_open(m.cfg, m.fds, err, sizeof(err)) == -1)
				log_warnx("cannot re-bind the old addresses: "
				    "%s (old workers keep serving)", err);
			if (admin_rebind) {
				if (m.admin_fd != -1)
					close(m.admin_fd);
				if (admin_open(m.cfg, &m.admin_fd, err,
				    sizeof(err)) == -1)
					log_warnx("cannot re-bind the old "
					    "admin address: %s", err);
			}
			tls_server_free(ntls);
			cfg_free(ncfg);
			return;
		}
		memcpy(m.fds, nfds, sizeof(nfds));
		m.nfds = nn;
	}
	/* the collector loads key spend: it must know the new keys too */
	if ((collector_settings_changed(m.cfg, ncfg) || ncfg->keys != NULL) &&
	    m.collector.pid != 0) {
		m.collector_restart = 1;
		m.collector.stopping = 1;
		kill(m.collector.pid, SIGTERM);
	}
	if (strcmp(m.cfg->pid_file, ncfg->pid_file) != 0) {
		/* move the pid file where the new configuration wants it */
		FILE *f = ncfg->pid_file[0] ? fopen(ncfg->pid_file, "w") : NULL;

		if (f != NULL) {
			fprintf(f, "%ld\n", (long)getpid());
			fclose(f);
		}
		if (m.cfg->pid_file[0] != '\0')
			unlink(m.cfg->pid_file);
	}
	if (strcmp(m.cfg->log, ncfg->log) != 0 ||
	    m.cfg->log_level != ncfg->log_level) {
		/* the new generation inherits the new destination */
		if (log_init(ncfg->log, ncfg->log_level) == -1)
			log_warn("log %s", ncfg->log);
	}
	cache_reload(ncfg);
	cfg_free(m.cfg);
	m.cfg = ncfg;
	m.gen++;
	upstreams_publish(m.cfg);
	gtoken_setup(m.cfg, shm_region(m.shm, "gtokens", NULL));
	/* the old generation has its own copy, inherited when it forked */
	tls_server_free(m.tls);
	m.tls = ntls;
	tls_publish();
	for (i = 0; i < m.nslots; i++)
		if (m.slots[i].pid == 0)
			m.slots[i].respawn_at_ms = 0;
	for (i = 0, nn = 0; i < m.nslots && nn < m.cfg->workers; i++) {
		if (m.slots[i].pid != 0)
			continue;
		spawn_worker(i);
		nn++;
	}
	signal_workers(SIGTERM, 1);
	atomic_store_explicit(&m.cnt->master.generation, m.gen,
	    memory_order_relaxed);
	reload_record(1, "reloaded: generation %u, %d workers", m.gen,
	    m.cfg->workers);
	log_info("reloaded: generation %u, %d workers; the previous "
	    "generation finishes its requests", m.gen, m.cfg->workers);
}

static void
begin_stop(enum stop_mode mode)
{
	int i;

	if (m.stop == STOP_FAST || m.stop == mode)
		return;
	m.stop = mode;
	/* new connections are refused at once, not left in the backlog */
	for (i = 0; i < m.nfds; i++)
		close(m.fds[i]);
	m.nfds = 0;
	if (m.admin_fd != -1)
		close(m.admin_fd);
	m.admin_fd = -1;
	if (mode == STOP_GRACEFUL) {
		log_info("graceful stop: finishing in-flight requests "
		    "(at most %d ms)", m.cfg->shutdown_timeout_ms);
		signal_workers(SIGTERM, 0);
		m.kill_at_ms = (now_us() / 1000) + m.cfg->shutdown_timeout_ms +
		    FAST_KILL_GRACE_MS;
	} else {
		log_info("fast stop");
		signal_workers(SIGQUIT, 0);
		m.kill_at_ms = (now_us() / 1000) + FAST_KILL_GRACE_MS;
	}
}

static void
forward_usr1(void)
{
	int i;

	if (log_reopen() == -1)
		log_warn("reopening the log");
	for (i = 0; i < m.nslots; i++)
		if (m.slots[i].pid != 0)
			kill(m.slots[i].pid, SIGUSR1);
	if (m.collector.pid != 0)
		kill(m.collector.pid, SIGUSR1);
}

/* Respawns that are due; the earliest pending deadline into *next. */
static void
run_timers(int64_t *next)
{
	int64_t	 now = (now_us() / 1000);
	int	 i;

	*next = -1;
#define NEXT(t) do { if (*next == -1 || (t) < *next) *next = (t); } while (0)
	if (m.stop == RUNNING) {
		for (i = 0; i < m.nslots; i++) {
			struct child *ch = &m.slots[i];

			if (ch->pid != 0 || ch->respawn_at_ms == 0)
				continue;
			if (ch->respawn_at_ms <= now)
				spawn_worker(i);
			else
				NEXT(ch->respawn_at_ms);
		}
	}
	if (m.rotate_at_ms != 0) {
		if (m.rotate_at_ms <= now) {
			if (tls_tickets_rotate(m.tickets, wall_us()) == -1)
				log_warnx("cannot make a new TLS session ticket "
				    "key; the current one stays");
			m.rotate_at_ms = now + m.cfg->ssl_session_timeout_ms;
		}
		NEXT(m.rotate_at_ms);
	}
	if (m.stop == RUNNING)
		gtoken_tick(now, next, gtoken_child_init);
	if (m.collector.pid == 0 && m.collector.respawn_at_ms != 0) {
		if (m.collector.respawn_at_ms <= now)
			spawn_collector();
		else
			NEXT(m.collector.respawn_at_ms);
	}
	if (m.stop != RUNNING && workers_alive() > 0) {
		if (m.kill_at_ms <= now) {
			log_warnx("workers still running after the shutdown "
			    "timeout: killing them");
			signal_workers(SIGKILL, 0);
			m.kill_at_ms = now + FAST_KILL_GRACE_MS;
		}
		NEXT(m.kill_at_ms);
	}
#undef NEXT
}

/* Stopping and every worker gone: drain the collector, then leave. */
static int
stop_progress(void)
{
	if (m.stop == RUNNING || workers_alive() > 0)
		return 0;
	if (m.collector.pid == 0) {
		if (m.collector_stop_sent && m.collector.respawn_at_ms == 0)
			return 1;	/* drained and exited cleanly */
		if (++m.collector_stop_tries > MAX_COLLECTOR_RESTARTS_ON_STOP) {
			log_warnx("collector keeps failing; giving up on the "
			    "drain");
			return 1;
		}
		spawn_collector();
		m.collector_stop_sent = 0;
	}
	if (!m.collector_stop_sent && m.collector.pid != 0) {
		log_info("workers gone; collector draining the event ring");
		m.collector.stopping = 1;
		m.collector.respawn_at_ms = 0;
		kill(m.collector.pid, SIGTERM);
		m.collector_stop_sent = 1;
	}
	return 0;
}

int
master_run(struct config *cfg, const char *cfg_path, struct shm_segment *shm,
    int *fds, int nfds, int admin_fd, int ready_fd, struct tls_server *tls)
{
	struct sigaction sa;
	sigset_t	 block;
	int		 i;
	int		 sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD,
			    SIGUSR1 };

	memset(&m, 0, sizeof(m));
	m.cfg = cfg;
	m.cfg_path = cfg_path;
	m.shm = shm;
	memcpy(m.fds, fds, sizeof(int) * (size_t)nfds);
	m.nfds = nfds;
	m.admin_fd = admin_fd;
	m.nslots = (int)shm_nlanes(shm);
	m.gen = 1;
	m.tls = tls;
	m.tickets = shm_region(shm, "tickets", NULL);
	if (cfg->cache_size > 0 && (m.cache = cache_create(cfg->cache_size,
	    cfg->cache_max_entry)) == NULL)
		fatal("cache %zu", cfg->cache_size);
	if ((m.cnt = shm_region(shm, "counters", NULL)) == NULL)
		fatalx("no counters region in the shared segment");
	atomic_store_explicit(&m.cnt->master.pid, (int32_t)getpid(),
	    memory_order_relaxed);
	atomic_store_explicit(&m.cnt->master.started_wall_us, wall_us(),
	    memory_order_relaxed);
	atomic_store_explicit(&m.cnt->master.generation, m.gen,
	    memory_order_relaxed);
	upstreams_publish(cfg);
	gtoken_setup(cfg, shm_region(shm, "gtokens", NULL));
	tls_publish();
	if ((m.slots = calloc((size_t)m.nslots, sizeof(*m.slots))) == NULL)
		fatal("calloc");

	sigemptyset(&block);
	for (i = 0; i < (int)(sizeof(sigs) / sizeof(sigs[0])); i++)
		sigaddset(&block, sigs[i]);
	if (sigprocmask(SIG_BLOCK, &block, &m.waitmask) == -1)
		fatal("sigprocmask");
	sigdelset(&m.waitmask, SIGHUP);
	sigdelset(&m.waitmask, SIGTERM);
	sigdelset(&m.waitmask, SIGINT);
	sigdelset(&m.waitmask, SIGQUIT);
	sigdelset(&m.waitmask, SIGCHLD);
	sigdelset(&m.waitmask, SIGUSR1);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < (int)(sizeof(sigs) / sizeof(sigs[0])); i++)
		sigaction(sigs[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	proctitle_set("sluice: master (%s)", cfg_path);
	spawn_collector();
	for (i = 0; i < cfg->workers; i++)
		spawn_worker(i);
	log_info("started: %d workers, %d listening socket(s)", cfg->workers,
	    nfds);
	if (ready_fd != -1) {
		if (write(ready_fd, "1", 1) == -1)
			log_warn("ready pipe");
		close(ready_fd);
	}

	for (;;) {
		struct timespec	 ts, *tsp = NULL;
		int64_t		 next;

		if (got_chld) {
			got_chld = 0;
			reap();
		}
		if (got_term) {
			got_term = 0;
			begin_stop(STOP_GRACEFUL);
		}
		if (got_quit) {
			got_quit = 0;
			begin_stop(STOP_FAST);
		}
		if (got_hup) {
			got_hup = 0;
			if (m.stop == RUNNING)
				reload();
		}
		if (got_usr1) {
			got_usr1 = 0;
			forward_usr1();
		}
		run_timers(&next);
		if (stop_progress())
			break;
		if (next != -1) {
			int64_t d = next - (now_us() / 1000);

			if (d < 0)
				d = 0;
			ts.tv_sec = d / 1000;
			ts.tv_nsec = (d % 1000) * 1000000;
			tsp = &ts;
		}
		if (got_chld || got_term || got_quit || got_hup || got_usr1)
			continue;
		if (ppoll(NULL, 0, tsp, &m.waitmask) == -1 && errno != EINTR)
			log_warn("ppoll");
	}
	log_info("stopped");
	if (m.cfg->pid_file[0] != '\0' && unlink(m.cfg->pid_file) == -1)
		log_warn("unlink %s", m.cfg->pid_file);
	cfg_free(m.cfg);
	tls_server_free(m.tls);
	free(m.slots);
	return 0;
}
