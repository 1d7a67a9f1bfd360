/*
 * confparse.h - the nginx-like grammar shared by sluice.conf (config.c)
 * and keys.conf (keys.c): a lexer, directives read up to ';' or '{', and
 * tables of directive specs that dispatch them.
 *
 * Only configuration loaders call this, in the master, at start and on
 * SIGHUP.  A loader sets up a parser with cp_init(), reads the file with
 * cp_open(), walks it with cp_parse_file() (a block directive's fn goes
 * on with cp_parse_block()), reports every error through cp_err() as
 * "PATH:LINE: message", and releases the buffer with cp_close().
 *
 * It knows no loader: config.c and keys.c sit above it, so it never
 * includes their headers, and it does no logging.
 */
#ifndef SLUICE_CONFPARSE_H
#define SLUICE_CONFPARSE_H

#include <stddef.h>
#include <stdint.h>

#define CP_FILE_MAX	(16 * 1024 * 1024)
#define CP_TOK_MAX	1100		/* > sizeof(config.database) */
#define CP_ARGS_MAX	40		/* hard cap, name included */
#define CP_ARGS_DEFAULT	16		/* cp_parser.args_max after cp_open */

#define cp_nitems(a)	(sizeof(a) / sizeof((a)[0]))

enum cp_tok_type {
	CP_EOF = 0,
	CP_WORD,
	CP_SEMI,
	CP_LBRACE,
	CP_RBRACE,
};

struct cp_tok {
	enum cp_tok_type type;
	int		 quoted;
	int		 line;
	char		 s[CP_TOK_MAX];
};

struct cp_directive {
	struct cp_tok	 args[CP_ARGS_MAX + 1];	/* args[0] is the name */
	int		 nargs;
	int		 line;
	enum cp_tok_type end;	/* CP_SEMI or CP_LBRACE; EOF/RBRACE if nargs 0 */
};

struct cp_parser {
	const char	*path;
	char		*buf;		/* the whole file, wiped by cp_close */
	size_t		 len;
	size_t		 pos;
	int		 line;
	int		 eof_line;
	int		 args_max;	/* name included, <= CP_ARGS_MAX */
	char		 ctx[CP_TOK_MAX + 16];	/* prefix, e.g. 'upstream "x": ' */
	char		*err;
	size_t		 errlen;
	void		*udata;		/* the loader's own state */
	unsigned	 file_mode;	/* st_mode of the file read */
};

enum cp_vtype {
	CP_FN = 0,	/* fn does it all */
	CP_STR,		/* char[size] */
	CP_DUR,		/* int, milliseconds, cp_parse_duration_ms */
	CP_SIZE,	/* size_t, cp_parse_size */
	CP_INT,		/* int, decimal */
	CP_I64,		/* int64_t, decimal */
};

#define CP_MULTI	0x1	/* may repeat */
#define CP_BLOCK	0x2	/* takes a { } block */

struct cp_dirspec {
	const char	*name;
	int		 minargs;	/* not counting the name */
	int		 maxargs;
	int		 flags;
	enum cp_vtype	 type;
	size_t		 off;		/* of the field in the fn's object */
	size_t		 size;		/* CP_STR: size of the field */
	long long	 min;		/* CP_DUR (ms), CP_SIZE, CP_INT, CP_I64 */
	long long	 max;
	int		(*fn)(struct cp_parser *, struct cp_directive *, void *);
};

/* Set P up for PATH, errors into ERR (emptied); no I/O. */
void	 cp_init(struct cp_parser *p, const char *path, char *err,
	    size_t errlen);
/* Read the file whole; -1 with "PATH: message" in the error buffer. */
int	 cp_open(struct cp_parser *p);
/* Wipe and free the buffer (the file may hold a password). */
void	 cp_close(struct cp_parser *p);
/* Write "PATH:LINE: ctx message" (or "PATH: ..." for LINE 0); return -1. */
int	 cp_err(struct cp_parser *p, int line, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/*
 * Read one directive: its name and arguments up to ';' or '{'.  At the end
 * of the file or of a block, nargs is 0 and end says which.  TAB is used
 * to report a directive name that starts a line while the previous
 * directive is still open as "missing ';'" on the previous line.
 */
int	 cp_read_directive(struct cp_parser *p, const struct cp_dirspec *tab,
	    size_t ntab, struct cp_directive *d);
/* Every directive up to EOF; a stray '}' is an error. */
int	 cp_parse_file(struct cp_parser *p, const struct cp_dirspec *tab,
	    size_t ntab, void *obj);
/* Every directive up to the closing '}' of the block just opened. */
int	 cp_parse_block(struct cp_parser *p, const struct cp_dirspec *tab,
	    size_t ntab, void *obj);

/*
 * Value parsers, for the directive tables and for loaders and tools that
 * read the same values (sluicectl key new --budget).  0 ok, -1 on garbage
 * or overflow; nothing is written to *out then.
 */
/* Decimal digits only, no sign, no blanks. */
int	 cp_parse_ll(const char *s, long long *out);
int	 cp_parse_duration_ms(const char *s, int *ms);	/* 500ms 5s 2m 1h, bare = s */
int	 cp_parse_size(const char *s, size_t *bytes);	/* 512 16k 8m 1g */
int	 cp_parse_usd_micro(const char *s, int64_t *micro); /* "0.15" -> 150000 */
/* Copy SRC into DST of SIZE, truncating (the caller checked the length). */
void	 cp_set_str(char *dst, size_t size, const char *src);
int	 cp_is_blank(int c);

#endif
