/*
 * http.h - HTTP/1.1 message heads and chunked bodies, parsed strictly.
 *
 * The parsers are pure functions over one contiguous head (request line or
 * status line through the empty line) so they can be fuzzed alone
 * (tests/fuzz).  Names and values point into the caller's buffer.
 * Anything ambiguous that could smuggle a request past us (both
 * Content-Length and Transfer-Encoding, two different Content-Lengths,
 * obsolete line folding, bare CR, a space before the colon) is an error.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct evbuffer;

#define HTTP_MAX_HEADERS	100

struct http_header {
	const char	*name;
	const char	*value;
	uint16_t	 name_len;
	uint32_t	 value_len;
};

struct http_head {
	/* request: method and target; response: status and reason */
	const char	*method;
	size_t		 method_len;
	const char	*target;
	size_t		 target_len;
	size_t		 path_len;	/* target up to '?' */
	int		 status;
	int		 minor;		/* HTTP/1.minor */
	int		 nh;
	int		 conn_hdr;	/* 1 + index of the first Connection */
	int64_t		 content_length;	/* -1 = absent */
	unsigned	 chunked:1;		/* Transfer-Encoding: chunked */
	unsigned	 conn_close:1;		/* Connection: close */
	unsigned	 conn_keepalive:1;	/* Connection: keep-alive */
	unsigned	 expect_continue:1;	/* Expect: 100-continue */
	/* last: a parse clears everything before it, not the 100 slots */
	struct http_header h[HTTP_MAX_HEADERS];
};

/*
 * Parse a request head of LEN bytes ending in CRLFCRLF.  Returns 0, or the
 * HTTP status to answer with: 400 malformed, 414 request line too long
 * (more than MAX_LINE), 431 too many headers, 501 unknown transfer coding,
 * 505 not HTTP/1.x.
 */
int	 http_parse_request(const char *buf, size_t len, size_t max_line,
	    struct http_head *);
/* Parse a response head; 0 ok, -1 malformed. */
int	 http_parse_response(const char *buf, size_t len, struct http_head *);

/* Case-insensitive header lookup: the first match, or NULL. */
const struct http_header *http_find(const struct http_head *, const char *name);
/* 1 if NAME (case-insensitive) equals the NUL-terminated S.  Inline: S
 * is most often a literal, whose strlen the compiler folds, so a name of
 * another length costs one compare. */
static inline int
http_name_is(const char *name, size_t len, const char *s)
{
	return strlen(s) == len && strncasecmp(name, s, len) == 0;
}
/* 1 if the header is hop-by-hop (RFC 9110 7.6.1) or named in Connection. */
int	 http_is_hop_by_hop(const struct http_head *, const struct http_header *);
/*
 * Take one head out of IN: search for CRLFCRLF from where the last call
 * stopped (*SCANNED, 0 for a new head) and, when found, move the head into
 * *BUF (grown as needed, *CAP its size) and set *LEN.  1 taken, 0 need
 * more, -1 longer than MAX, -2 out of memory.  Leading empty lines are
 * not skipped here.
 */
int	 http_head_take(struct evbuffer *in, size_t *scanned, size_t max,
	    char **buf, size_t *cap, size_t *len);
/*
 * A head on its way into an evbuffer, gathered in B and added in one
 * evbuffer_add: an add costs some 50 instructions, and a proxied head
 * is some 40 pieces.  A piece larger than the room left goes on its own.
 * Flush before anything else is added to TO, or its length is read.
 */
struct http_out {
	struct evbuffer	*to;
	size_t		 n;
	char		 b[2048];
};

void	 http_out_spill(struct http_out *, const void *, size_t);
void	 http_out_flush(struct http_out *);

static inline void
http_out_init(struct http_out *o, struct evbuffer *to)
{
	o->to = to;
	o->n = 0;
}

static inline void
http_out_put(struct http_out *o, const void *s, size_t n)
{
	if (n > sizeof(o->b) - o->n) {
		http_out_spill(o, s, n);
		return;
	}
	memcpy(o->b + o->n, s, n);
	o->n += n;
}

/* Put "Name: value\r\n" for H. */
void	 http_out_header(struct http_out *, const struct http_header *h);
/* The same straight into OUT. */
void	 http_put_header(struct evbuffer *out, const struct http_header *h);
/* Standard reason phrase for a status. */
const char *http_reason(int status);

/* Incremental chunked-body decoder. */
enum chunked_state {
	CHUNK_SIZE = 0,
	CHUNK_DATA,
	CHUNK_DATA_CRLF,
	CHUNK_TRAILER,
	CHUNK_DONE,
};

struct chunked {
	enum chunked_state state;
	uint64_t	 remaining;
};

/*
 * Move the decoded bytes available in IN to OUT (without copying where
 * evbuffer can move chains).  Returns the number of decoded bytes moved,
 * or -1 on a malformed body.  state becomes CHUNK_DONE after the last
 * chunk and its trailers.
 */
long	 chunked_decode(struct chunked *, struct evbuffer *in,
	    struct evbuffer *out);

#endif
