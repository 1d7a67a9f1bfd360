/*
 * spool.c - usage events on disk while PostgreSQL is away.
 *
 * The collector may free ring slots only once their events are durable;
 * when the database is unreachable the spool is what makes them durable,
 * so the ring never fills during an outage.  A file is never visible under
 * its final name before it is complete and on disk: it is written as
 * spool-N.tmp, fsync'ed, renamed to spool-N.bin and the directory is
 * fsync'ed so that the rename itself survives a power cut.  Deleting a
 * replayed file needs no such care: if the unlink is lost, the file is
 * replayed again and the load skips the events already in (sql/load.c).
 *
 * The format is raw struct usage_event in native byte order: the spool
 * never leaves the machine, and a header that records the event size
 * keeps a sluice built with a different struct from misreading it.
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/event.h"
#include "common/log.h"
#include "sql/spool.h"

#define SPOOL_BUFSZ	(256 * 1024)
#define SPOOL_PREFIX	"spool-"
#define SPOOL_SEQLEN	16

struct spool_header {
	char		 magic[8];
	uint32_t	 version;
	uint32_t	 event_size;
};

_Static_assert(sizeof(struct spool_header) == 16, "spool header is 16 bytes");

enum spool_kind {
	SPOOL_NONE = 0,		/* not one of ours */
	SPOOL_BIN,		/* spool-N.bin: whole, waiting for replay */
	SPOOL_TMP,		/* spool-N.tmp: being written, or a crash */
	SPOOL_BAD,		/* spool-N.bin.bad: quarantined */
};

struct spool {
	char		 dir[PATH_MAX];
	int		 dirfd;
	uint64_t	 next_seq;
	size_t		 pending;
	/* the file being written */
	int		 fd;
	char		 tmp[PATH_MAX];
	char		 bin[PATH_MAX];
	uint64_t	 bytes;
	size_t		 buflen;
	unsigned char	*buf;
};

struct spool_reader {
	int		 fd;
	int		 eof;
	uint32_t	 event_size;	/* as written: this or an older size */
	char		 path[PATH_MAX];
};

static int		 spool_mkdirs(const char *);
static size_t		 older_fields(uint32_t);
static enum spool_kind	 spool_parse(const char *, uint64_t *);
static int		 spool_scan(struct spool *, int);
static int		 spool_path(const struct spool *, uint64_t,
			    const char *, char *, size_t);
static int		 spool_write_all(int, const void *, size_t);
static ssize_t		 spool_read_all(int, void *, size_t);
static int		 spool_flush(struct spool *);

struct spool *
spool_open(const char *dir, char *err, size_t errlen)
{
	struct spool	*sp;
	int		 saved;

	if (dir == NULL || *dir == '\0') {
		snprintf(err, errlen, "no spool_dir configured");
		errno = EINVAL;
		return NULL;
	}
	if ((sp = calloc(1, sizeof(*sp))) == NULL ||
	    (sp->buf = malloc(SPOOL_BUFSZ)) == NULL) {
		snprintf(err, errlen, "spool: out of memory");
		free(sp);
		errno = ENOMEM;
		return NULL;
	}
	sp->fd = -1;
	sp->dirfd = -1;
	if (strlen(dir) >= sizeof(sp->dir) - 32) {
		snprintf(err, errlen, "spool_dir %s: name too long", dir);
		errno = ENAMETOOLONG;
		goto fail;
	}
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	if (spool_mkdirs(sp->dir) == -1) {
		snprintf(err, errlen, "spool_dir %s: mkdir: %s", dir,
		    strerror(errno));
		goto fail;
	}
	sp->dirfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd == -1) {
		snprintf(err, errlen, "spool_dir %s: %s", dir,
		    strerror(errno));
		goto fail;
	}
	/*
	 * One owner at a time: a second sluiced on the same directory, or
	 * `sluicectl spool replay` while a collector runs, would load and
	 * remove files the other is writing or replaying.  The lock goes
	 * with the descriptor, so a killed owner never leaves it behind.
	 */
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			snprintf(err, errlen, "spool_dir %s: in use by another "
			    "process (a running sluiced, or sluicectl spool "
			    "replay)", dir);
		else
			snprintf(err, errlen, "spool_dir %s: flock: %s", dir,
			    strerror(errno));
		goto fail;
	}
	if (spool_scan(sp, 1) == -1) {
		snprintf(err, errlen, "spool_dir %s: %s", dir,
		    strerror(errno));
		goto fail;
	}
	return sp;

 fail:
	saved = errno;
	spool_close(sp);
	errno = saved;
	return NULL;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	spool_abort(sp);
	if (sp->dirfd != -1)
		(void)close(sp->dirfd);
	free(sp->buf);
	free(sp);
}

const char *
spool_dir(const struct spool *sp)
{
	return sp->dir;
}

size_t
spool_pending(const struct spool *sp)
{
	return sp->pending;
}

int
spool_begin(struct spool *sp)
{
	struct spool_header	 h;

	if (sp->fd != -1)
		spool_abort(sp);
	if (spool_path(sp, sp->next_seq, ".tmp", sp->tmp,
	    sizeof(sp->tmp)) == -1 ||
	    spool_path(sp, sp->next_seq, ".bin", sp->bin,
	    sizeof(sp->bin)) == -1)
		return -1;
	sp->fd = open(sp->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600);
	if (sp->fd == -1)
		return -1;
	sp->next_seq++;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SPOOL_MAGIC, sizeof(h.magic));
	h.version = SPOOL_VERSION;
	h.event_size = sizeof(struct usage_event);
	memcpy(sp->buf, &h, sizeof(h));
	sp->buflen = sizeof(h);
	sp->bytes = sizeof(h);
	return 0;
}

int
spool_add(struct spool *sp, const struct usage_event *ev)
{
	if (sp->fd == -1) {
		errno = EBADF;
		return -1;
	}
	if (SPOOL_BUFSZ - sp->buflen < sizeof(*ev) && spool_flush(sp) == -1)
		return -1;
	memcpy(sp->buf + sp->buflen, ev, sizeof(*ev));
	sp->buflen += sizeof(*ev);
	sp->bytes += sizeof(*ev);
	return 0;
}

int
spool_commit(struct spool *sp, uint64_t *bytes, char *name, size_t namelen)
{
	const char	*base;

	if (sp->fd == -1) {
		errno = EBADF;
		return -1;
	}
	if (spool_flush(sp) == -1 || fsync(sp->fd) == -1)
		return -1;
	if (close(sp->fd) == -1) {
		sp->fd = -1;
		(void)unlink(sp->tmp);
		return -1;
	}
	sp->fd = -1;
	if (rename(sp->tmp, sp->bin) == -1) {
		(void)unlink(sp->tmp);
		return -1;
	}
	/*
	 * The file is complete under its final name; if only the directory
	 * fsync fails the rename may not survive a crash, but the file must
	 * not be rewritten (the events would be spooled twice, harmless),
	 * so report the error and let the caller retry into a new file.
	 */
	sp->pending++;
	if (fsync(sp->dirfd) == -1)
		return -1;
	if (bytes != NULL)
		*bytes = sp->bytes;
	if (name != NULL) {
		base = strrchr(sp->bin, '/');
		snprintf(name, namelen, "%s", base != NULL ? base + 1 : sp->bin);
	}
	return 0;
}

void
spool_abort(struct spool *sp)
{
	if (sp->fd == -1)
		return;
	(void)close(sp->fd);
	sp->fd = -1;
	(void)unlink(sp->tmp);
}

int
spool_oldest(struct spool *sp, char *path, size_t pathlen)
{
	DIR		*d;
	struct dirent	*de;
	uint64_t	 seq, best = 0;
	int		 found = 0, fd;

	if ((fd = dup(sp->dirfd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		(void)close(fd);
		return -1;
	}
	rewinddir(d);
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (spool_parse(de->d_name, &seq) != SPOOL_BIN)
			continue;
		if (!found || seq < best)
			best = seq;
		found = 1;
	}
	if (errno != 0) {
		int saved = errno;

		(void)closedir(d);
		errno = saved;
		return -1;
	}
	(void)closedir(d);
	if (!found) {
		sp->pending = 0;
		return 0;
	}
	if (spool_path(sp, best, ".bin", path, pathlen) == -1)
		return -1;
	return 1;
}

int
spool_remove(struct spool *sp, const char *path)
{
	if (unlink(path) == -1 && errno != ENOENT)
		return -1;
	if (sp->pending > 0)
		sp->pending--;
	return 0;
}

int
spool_quarantine(struct spool *sp, const char *path)
{
	char	 bad[PATH_MAX];
	int	 n;

	n = snprintf(bad, sizeof(bad), "%s.bad", path);
	if (n < 0 || (size_t)n >= sizeof(bad)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (rename(path, bad) == -1)
		return -1;
	if (sp->pending > 0)
		sp->pending--;
	(void)fsync(sp->dirfd);
	return 0;
}

struct spool_reader *
spool_reader_open(const char *path, char *err, size_t errlen)
{
	struct spool_reader	*r;
	struct spool_header	 h;
	ssize_t			 n;
	int			 saved;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	snprintf(r->path, sizeof(r->path), "%s", path);
	if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if ((n = spool_read_all(r->fd, &h, sizeof(h))) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if ((size_t)n < sizeof(h)) {
		/* A crash before the header reached the disk: no events. */
		if (n > 0)
			log_warnx("spool %s: truncated header, no events",
			    path);
		r->eof = 1;
		return r;
	}
	if (memcmp(h.magic, SPOOL_MAGIC, sizeof(h.magic)) != 0 ||
	    h.version != SPOOL_VERSION) {
		snprintf(err, errlen, "%s: not a sluice spool file (version %u)",
		    path, h.version);
		errno = EINVAL;
		goto fail;
	}
	/*
	 * Fields are only ever added at the end of the event, so an older
	 * sluice's events are a prefix of ours (SPOOL_EVENT_V1 bytes).
	 */
	if (h.event_size != sizeof(struct usage_event) &&
	    older_fields(h.event_size) == 0) {
		snprintf(err, errlen, "%s: event size %u, this sluice uses %zu",
		    path, h.event_size, sizeof(struct usage_event));
		errno = EINVAL;
		goto fail;
	}
	r->event_size = h.event_size;
	return r;

 fail:
	saved = errno;
	spool_reader_close(r);
	errno = saved;
	return NULL;
}

/* The bytes of fields in an event of an older SIZE, or 0: not one. */
static size_t
older_fields(uint32_t size)
{
	if (size == SPOOL_EVENT_V1)
		return SPOOL_EVENT_V1_FIELDS;
	if (size == SPOOL_EVENT_V2)
		return SPOOL_EVENT_V2_FIELDS;
	if (size == SPOOL_EVENT_V3)
		return SPOOL_EVENT_V3_FIELDS;
	if (size == SPOOL_EVENT_V4)
		return SPOOL_EVENT_V4_FIELDS;
	return 0;
}

/*
 * Events of an older, shorter size: one at a time, the newer fields
 * empty (text "", counts unknown).
 */
static ssize_t
spool_read_older(struct spool_reader *r, struct usage_event *evs, size_t max)
{
	size_t	 i, fields = older_fields(r->event_size);
	ssize_t	 n;

	for (i = 0; i < max; i++) {
		memset(&evs[i], 0, sizeof(evs[i]));
		if ((n = spool_read_all(r->fd, &evs[i], r->event_size)) == -1)
			return -1;
		/* what was padding then is where the new fields start */
		memset((char *)&evs[i] + fields, 0, sizeof(evs[i]) - fields);
		if (fields <= SPOOL_EVENT_V2_FIELDS)
			evs[i].cache_write_5m_tokens =
			    evs[i].cache_write_1h_tokens =
			    evs[i].reasoning_tokens = -1;
		if ((size_t)n < r->event_size) {
			r->eof = 1;
			if (n > 0)
				log_warnx("spool %s: ignoring a truncated "
				    "record of %zd bytes at the end", r->path,
				    n);
			break;
		}
	}
	return (ssize_t)i;
}

ssize_t
spool_read(struct spool_reader *r, struct usage_event *evs, size_t max)
{
	ssize_t		 n;
	size_t		 whole, rest;

	if (r->eof || max == 0)
		return 0;
	if (r->event_size != sizeof(*evs))
		return spool_read_older(r, evs, max);
	if ((n = spool_read_all(r->fd, evs, max * sizeof(*evs))) == -1)
		return -1;
	whole = (size_t)n / sizeof(*evs);
	rest = (size_t)n % sizeof(*evs);
	if ((size_t)n < max * sizeof(*evs))
		r->eof = 1;
	if (rest != 0)
		log_warnx("spool %s: ignoring a truncated record of %zu bytes "
		    "at the end", r->path, rest);
	return (ssize_t)whole;
}

void
spool_reader_close(struct spool_reader *r)
{
	if (r == NULL)
		return;
	if (r->fd != -1)
		(void)close(r->fd);
	free(r);
}

/* mkdir -p, the last component with mode 0700. */
static int
spool_mkdirs(const char *dir)
{
	char		 p[PATH_MAX];
	char		*s;
	struct stat	 st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
		return 0;
	}
	snprintf(p, sizeof(p), "%s", dir);
	for (s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) == -1 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(p, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

/* "spool-<16 hex>.bin" and friends; *SEQ gets the number. */
static enum spool_kind
spool_parse(const char *name, uint64_t *seq)
{
	const char	*p, *suffix;
	uint64_t	 v = 0;
	int		 i, c;

	if (strncmp(name, SPOOL_PREFIX, sizeof(SPOOL_PREFIX) - 1) != 0)
		return SPOOL_NONE;
	p = name + sizeof(SPOOL_PREFIX) - 1;
	for (i = 0; i < SPOOL_SEQLEN; i++) {
		c = p[i];
		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return SPOOL_NONE;
	}
	suffix = p + SPOOL_SEQLEN;
	*seq = v;
	if (strcmp(suffix, ".bin") == 0)
		return SPOOL_BIN;
	if (strcmp(suffix, ".tmp") == 0)
		return SPOOL_TMP;
	if (strcmp(suffix, ".bin.bad") == 0)
		return SPOOL_BAD;
	return SPOOL_NONE;
}

/*
 * Count the waiting files and find the next sequence number.  With ADOPT,
 * rename leftover .tmp files (a crash mid-write) to .bin: their whole
 * records are real events that may no longer be in the ring.
 */
static int
spool_scan(struct spool *sp, int adopt)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	uint64_t	 seq;
	enum spool_kind	 kind;
	char		 from[PATH_MAX], to[PATH_MAX];
	int		 fd, adopted = 0, saved;

	if ((fd = dup(sp->dirfd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		saved = errno;
		(void)close(fd);
		errno = saved;
		return -1;
	}
	rewinddir(d);
	sp->pending = 0;
	sp->next_seq = 1;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if ((kind = spool_parse(de->d_name, &seq)) == SPOOL_NONE)
			continue;
		if (seq >= sp->next_seq)
			sp->next_seq = seq + 1;
		if (kind == SPOOL_TMP && adopt) {
			if (spool_path(sp, seq, ".tmp", from,
			    sizeof(from)) == -1 ||
			    spool_path(sp, seq, ".bin", to, sizeof(to)) == -1)
				continue;
			if (stat(from, &st) == 0 &&
			    (size_t)st.st_size <= sizeof(struct spool_header)) {
				(void)unlink(from);
				continue;
			}
			if (rename(from, to) == -1) {
				log_warn("spool: adopting %s", from);
				continue;
			}
			log_warnx("spool: adopted %s left by a crash", to);
			adopted = 1;
			kind = SPOOL_BIN;
		}
		if (kind == SPOOL_BIN)
			sp->pending++;
		errno = 0;
	}
	saved = errno;
	(void)closedir(d);
	if (saved != 0) {
		errno = saved;
		return -1;
	}
	if (adopted && fsync(sp->dirfd) == -1)
		return -1;
	return 0;
}

static int
spool_path(const struct spool *sp, uint64_t seq, const char *suffix,
    char *buf, size_t len)
{
	int	 n;

	n = snprintf(buf, len, "%s/" SPOOL_PREFIX "%016" PRIx64 "%s",
	    sp->dir, seq, suffix);
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int
spool_flush(struct spool *sp)
{
	if (spool_write_all(sp->fd, sp->buf, sp->buflen) == -1)
		return -1;
	sp->buflen = 0;
	return 0;
}

static int
spool_write_all(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until LEN bytes or end of file; the count read, or -1. */
static ssize_t
spool_read_all(int fd, void *buf, size_t len)
{
	char		*p = buf;
	size_t		 got = 0;
	ssize_t		 n;

	while (got < len) {
		n = read(fd, p + got, len - got);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}
