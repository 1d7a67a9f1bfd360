/*
 * confparse.c - the grammar of sluice's configuration files, nginx's: a
 * directive is a word and its arguments, ended by ';' or by a '{ ... }'
 * block.
 *
 * The file is read whole and every token keeps its line, so that every
 * error names the line to fix ("PATH:LINE: message", as nginx -t prints)
 * and the master can refuse a bad file at start, or keep the old one on
 * SIGHUP.  A directive name that starts a new line while the previous
 * directive is still open is reported as "missing ';'" on the previous
 * line, which is where the mistake is.  What a directive means is the
 * loader's business: config.c and keys.c each hold a table of specs, and
 * plain values (strings, durations, sizes, integers) are stored straight
 * into the loader's struct at the spec's offset.  The value parsers are
 * here, below both loaders, so that keys.c never reaches up into config.c.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/confparse.h"

static int	 read_file(struct cp_parser *);
static int	 lex(struct cp_parser *, struct cp_tok *);
static int	 lex_string(struct cp_parser *, struct cp_tok *);
static int	 find_dir(const struct cp_dirspec *, size_t, const char *);
static int	 dispatch(struct cp_parser *, const struct cp_dirspec *, size_t,
		    uint64_t *, struct cp_directive *, void *);
static int	 apply(struct cp_parser *, const struct cp_dirspec *,
		    struct cp_directive *, void *);

int
cp_err(struct cp_parser *p, int line, const char *fmt, ...)
{
	char	 msg[768];
	va_list	 ap;

	if (p->err == NULL || p->errlen == 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(p->err, p->errlen, "%s:%d: %s%s", p->path, line,
		    p->ctx, msg);
	else
		snprintf(p->err, p->errlen, "%s: %s%s", p->path, p->ctx, msg);
	return -1;
}

void
cp_init(struct cp_parser *p, const char *path, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->path = path != NULL ? path : "(null)";
	p->err = err;
	p->errlen = errlen;
	p->args_max = CP_ARGS_DEFAULT;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
}

int
cp_open(struct cp_parser *p)
{
	if (p->buf != NULL)
		cp_close(p);
	return read_file(p);
}

void
cp_close(struct cp_parser *p)
{
	if (p->buf != NULL) {
		explicit_bzero(p->buf, p->len);
		free(p->buf);
		p->buf = NULL;
	}
	p->len = p->pos = 0;
}

static int
read_file(struct cp_parser *p)
{
	struct stat	 st;
	ssize_t		 n;
	size_t		 off = 0;
	int		 fd;

	if ((fd = open(p->path, O_RDONLY | O_CLOEXEC)) == -1)
		return cp_err(p, 0, "%s", strerror(errno));
	if (fstat(fd, &st) == -1) {
		cp_err(p, 0, "%s", strerror(errno));
		goto fail;
	}
	p->file_mode = (unsigned)st.st_mode;
	if (!S_ISREG(st.st_mode)) {
		cp_err(p, 0, "not a regular file");
		goto fail;
	}
	if (st.st_size > CP_FILE_MAX) {
		cp_err(p, 0, "file too large");
		goto fail;
	}
	if ((p->buf = malloc((size_t)st.st_size + 1)) == NULL) {
		cp_err(p, 0, "out of memory");
		goto fail;
	}
	while (off < (size_t)st.st_size) {
		n = read(fd, p->buf + off, (size_t)st.st_size - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			cp_err(p, 0, "%s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;		/* shrank under us: parse what we have */
		off += (size_t)n;
	}
	close(fd);
	p->buf[off] = '\0';
	p->len = off;
	p->line = 1;
	/* the last line of the file, for "unexpected end of file" */
	p->eof_line = 1;
	for (off = 0; off < p->len; off++)
		if (p->buf[off] == '\n' && off + 1 < p->len)
			p->eof_line++;
	return 0;
 fail:
	free(p->buf);
	p->buf = NULL;
	close(fd);
	return -1;
}

int
cp_is_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
	    c == '\v';
}

void
cp_set_str(char *dst, size_t size, const char *src)
{
	size_t	 len = strlen(src);

	if (len >= size)
		len = size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

int
cp_parse_ll(const char *s, long long *out)
{
	long long	 v = 0;
	int		 d;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		d = *s - '0';
		if (v > (LLONG_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int
cp_parse_duration_ms(const char *s, int *ms)
{
	long long	 v = 0, mult;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return -1;
	}
	if (*s == '\0' || strcmp(s, "s") == 0)
		mult = 1000;
	else if (strcmp(s, "ms") == 0)
		mult = 1;
	else if (strcmp(s, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(s, "h") == 0)
		mult = 60 * 60 * 1000;
	else
		return -1;
	if (v > INT_MAX / mult)
		return -1;
	*ms = (int)(v * mult);
	return 0;
}

int
cp_parse_size(const char *s, size_t *bytes)
{
	size_t	 v = 0, mult, d;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		d = (size_t)(*s - '0');
		if (v > (SIZE_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (*s == '\0')
		mult = 1;
	else if (s[1] != '\0')
		return -1;
	else if (*s == 'k' || *s == 'K')
		mult = 1024;
	else if (*s == 'm' || *s == 'M')
		mult = 1024 * 1024;
	else if (*s == 'g' || *s == 'G')
		mult = 1024 * 1024 * 1024;
	else
		return -1;
	if (v > SIZE_MAX / mult)
		return -1;
	*bytes = v * mult;
	return 0;
}

int
cp_parse_usd_micro(const char *s, int64_t *micro)
{
	int64_t	 whole = 0, frac = 0, d;
	int	 nfrac = 0;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		d = *s - '0';
		if (whole > (INT64_MAX - d) / 10)
			return -1;
		whole = whole * 10 + d;
	}
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -1;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (++nfrac > 6)
				return -1;
			frac = frac * 10 + (*s - '0');
		}
	}
	if (*s != '\0')
		return -1;
	for (; nfrac < 6; nfrac++)
		frac *= 10;
	if (whole > (INT64_MAX - frac) / 1000000)
		return -1;
	*micro = whole * 1000000 + frac;
	return 0;
}

static int
lex_string(struct cp_parser *p, struct cp_tok *t)
{
	size_t	 n = 0;
	int	 c, start = p->line;

	t->type = CP_WORD;
	t->quoted = 1;
	p->pos++;			/* opening quote */
	for (;;) {
		if (p->pos >= p->len)
			return cp_err(p, start, "unterminated string");
		c = (unsigned char)p->buf[p->pos++];
		if (c == '"')
			break;
		if (c == '\0')
			return cp_err(p, p->line, "unexpected NUL byte");
		if (c == '\\' && p->pos < p->len &&
		    (p->buf[p->pos] == '"' || p->buf[p->pos] == '\\'))
			c = (unsigned char)p->buf[p->pos++];
		else if (c == '\n')
			p->line++;
		if (n == CP_TOK_MAX - 1)
			return cp_err(p, start, "string too long");
		t->s[n++] = (char)c;
	}
	t->s[n] = '\0';
	if (p->pos < p->len) {
		c = (unsigned char)p->buf[p->pos];
		if (!cp_is_blank(c) && c != ';' && c != '{' && c != '}' &&
		    c != '#')
			return cp_err(p, p->line,
			    "unexpected character after quoted string");
	}
	return 0;
}

static int
lex(struct cp_parser *p, struct cp_tok *t)
{
	size_t	 n = 0;
	int	 c;

	t->quoted = 0;
	t->s[0] = '\0';
	for (;;) {
		if (p->pos >= p->len) {
			t->type = CP_EOF;
			t->line = p->eof_line;
			return 0;
		}
		c = (unsigned char)p->buf[p->pos];
		if (c == '\n') {
			p->line++;
			p->pos++;
		} else if (cp_is_blank(c))
			p->pos++;
		else if (c == '#') {
			while (p->pos < p->len && p->buf[p->pos] != '\n')
				p->pos++;
		} else
			break;
	}
	t->line = p->line;
	switch (c) {
	case ';':
		t->type = CP_SEMI;
		p->pos++;
		return 0;
	case '{':
		t->type = CP_LBRACE;
		p->pos++;
		return 0;
	case '}':
		t->type = CP_RBRACE;
		p->pos++;
		return 0;
	case '"':
		return lex_string(p, t);
	}
	t->type = CP_WORD;
	while (p->pos < p->len) {
		c = (unsigned char)p->buf[p->pos];
		if (cp_is_blank(c) || c == ';' || c == '{' || c == '}' ||
		    c == '"')
			break;
		if (c == '\0')
			return cp_err(p, p->line, "unexpected NUL byte");
		if (n == CP_TOK_MAX - 1)
			return cp_err(p, t->line, "token too long");
		t->s[n++] = (char)c;
		p->pos++;
	}
	t->s[n] = '\0';
	return 0;
}

static int
find_dir(const struct cp_dirspec *tab, size_t ntab, const char *name)
{
	size_t	 i;

	for (i = 0; i < ntab; i++)
		if (strcmp(tab[i].name, name) == 0)
			return (int)i;
	return -1;
}

int
cp_read_directive(struct cp_parser *p, const struct cp_dirspec *tab,
    size_t ntab, struct cp_directive *d)
{
	struct cp_tok	*t;
	int		 last, max;

	max = p->args_max;
	if (max < 1 || max > CP_ARGS_MAX)
		max = CP_ARGS_MAX;
	d->nargs = 0;
	t = &d->args[0];
	if (lex(p, t) == -1)
		return -1;
	d->line = t->line;
	d->end = t->type;
	switch (t->type) {
	case CP_EOF:
	case CP_RBRACE:
		return 0;
	case CP_SEMI:
		return cp_err(p, t->line, "unexpected ';'");
	case CP_LBRACE:
		return cp_err(p, t->line, "unexpected '{'");
	case CP_WORD:
		break;
	}
	d->nargs = 1;
	last = t->line;
	for (;;) {
		t = &d->args[d->nargs];
		if (lex(p, t) == -1)
			return -1;
		switch (t->type) {
		case CP_SEMI:
		case CP_LBRACE:
			d->end = t->type;
			return 0;
		case CP_RBRACE:
		case CP_EOF:
			return cp_err(p, last, "missing ';'");
		case CP_WORD:
			if (!t->quoted && t->line > last &&
			    find_dir(tab, ntab, t->s) != -1)
				return cp_err(p, last, "missing ';'");
			if (d->nargs == max)
				return cp_err(p, d->line, "invalid number of "
				    "arguments in \"%s\" directive",
				    d->args[0].s);
			last = t->line;
			d->nargs++;
			break;
		}
	}
}

/*
 * Check D against TAB (known, not duplicate unless CP_MULTI, argument
 * count, block or not) and apply it to OBJ.  SEEN is one bit per entry
 * of TAB (at most 64 entries).
 */
static int
dispatch(struct cp_parser *p, const struct cp_dirspec *tab, size_t ntab,
    uint64_t *seen, struct cp_directive *d, void *obj)
{
	const struct cp_dirspec	*ds;
	const char		*name = d->args[0].s;
	int			 i;

	if ((i = find_dir(tab, ntab, name)) == -1)
		return cp_err(p, d->line, "unknown directive \"%s\"", name);
	ds = &tab[i];
	if (!(ds->flags & CP_MULTI) && i < 64) {
		if (*seen & (1ULL << i))
			return cp_err(p, d->line,
			    "\"%s\" directive is duplicate", name);
		*seen |= 1ULL << i;
	}
	if (d->nargs - 1 < ds->minargs || d->nargs - 1 > ds->maxargs)
		return cp_err(p, d->line,
		    "invalid number of arguments in \"%s\" directive", name);
	if (d->end == CP_LBRACE && !(ds->flags & CP_BLOCK))
		return cp_err(p, d->line, "\"%s\" directive takes no block",
		    name);
	if (d->end != CP_LBRACE && (ds->flags & CP_BLOCK))
		return cp_err(p, d->line,
		    "\"%s\" directive has no opening '{'", name);
	if (ds->type == CP_FN)
		return ds->fn(p, d, obj);
	return apply(p, ds, d, obj);
}

/* The value of a plain one-argument directive into its field. */
static int
apply(struct cp_parser *p, const struct cp_dirspec *ds,
    struct cp_directive *d, void *obj)
{
	const char	*v = d->args[1].s;
	char		*field = (char *)obj + ds->off;
	long long	 ll;
	int64_t		 i64;
	size_t		 sz, len;
	int		 ms;

	switch (ds->type) {
	case CP_STR:
		len = strlen(v);
		if (len == 0)
			return cp_err(p, d->line,
			    "empty value in \"%s\" directive", ds->name);
		if (len >= ds->size)
			return cp_err(p, d->line, "value too long in \"%s\" "
			    "directive", ds->name);
		memcpy(field, v, len + 1);
		return 0;
	case CP_DUR:
		if (cp_parse_duration_ms(v, &ms) == -1)
			break;
		if (ms < ds->min || ms > ds->max)
			goto range;
		memcpy(field, &ms, sizeof(ms));
		return 0;
	case CP_SIZE:
		if (cp_parse_size(v, &sz) == -1)
			break;
		if ((unsigned long long)sz < (unsigned long long)ds->min ||
		    (unsigned long long)sz > (unsigned long long)ds->max)
			goto range;
		memcpy(field, &sz, sizeof(sz));
		return 0;
	case CP_INT:
		if (cp_parse_ll(v, &ll) == -1)
			break;
		if (ll < ds->min || ll > ds->max)
			goto range;
		ms = (int)ll;
		memcpy(field, &ms, sizeof(ms));
		return 0;
	case CP_I64:
		if (cp_parse_ll(v, &ll) == -1)
			break;
		if (ll < ds->min || ll > ds->max)
			goto range;
		i64 = (int64_t)ll;
		memcpy(field, &i64, sizeof(i64));
		return 0;
	case CP_FN:
		break;
	}
	return cp_err(p, d->line, "invalid value \"%s\" in \"%s\" directive",
	    v, ds->name);
 range:
	return cp_err(p, d->line,
	    "value \"%s\" out of range in \"%s\" directive", v, ds->name);
}

int
cp_parse_file(struct cp_parser *p, const struct cp_dirspec *tab, size_t ntab,
    void *obj)
{
	struct cp_directive	 d;
	uint64_t		 seen = 0;

	for (;;) {
		if (cp_read_directive(p, tab, ntab, &d) == -1)
			return -1;
		if (d.nargs == 0) {
			if (d.end == CP_EOF)
				return 0;
			return cp_err(p, d.line, "unexpected '}'");
		}
		if (dispatch(p, tab, ntab, &seen, &d, obj) == -1)
			return -1;
	}
}

int
cp_parse_block(struct cp_parser *p, const struct cp_dirspec *tab,
    size_t ntab, void *obj)
{
	struct cp_directive	 d;
	uint64_t		 seen = 0;

	for (;;) {
		if (cp_read_directive(p, tab, ntab, &d) == -1)
			return -1;
		if (d.nargs == 0 && d.end == CP_RBRACE)
			return 0;
		if (d.nargs == 0) {
			p->ctx[0] = '\0';
			return cp_err(p, d.line,
			    "unexpected end of file, expecting '}'");
		}
		if (dispatch(p, tab, ntab, &seen, &d, obj) == -1)
			return -1;
	}
}
