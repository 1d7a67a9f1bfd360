/*
 * reply.h - the bytes of the answers sluice writes itself (layer 0, pure).
 *
 * Owns the error bodies in the caller's protocol (OpenAI's
 * {"error":{...}}, Anthropic's {"type":"error","error":{...},
 * "request_id":...}), the head of a local answer, and JSON string
 * escaping.  Anyone may call it; it writes into the evbuffer it is given
 * and never knows a connection or a request.  admin.c escapes with the
 * same reply_json_escape, so what one escapes the other never has to
 * unescape differently.
 */
#ifndef SLUICE_REPLY_H
#define SLUICE_REPLY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct evbuffer;

/* Append S, JSON-escaped (quotes, backslash, control bytes), to B. */
void	 reply_json_escape(struct evbuffer *b, const char *s);
/* The same for the N bytes at S, which may hold a NUL. */
void	 reply_json_escape_n(struct evbuffer *b, const char *s, size_t n);
/* Anthropic's error type for an HTTP STATUS, as its API documents it. */
const char *reply_anthropic_type(int status);
/*
 * Append an error body to B.  OpenAI's shape carries TYPE and CODE;
 * Anthropic's takes its type from STATUS and carries REQID, which must be
 * the id the head will carry.
 */
void	 reply_error_body(struct evbuffer *b, int anthropic, int status,
	    const char *type, const char *code, const char *msg,
	    const char *reqid);
/*
 * Append the head of a local answer: STATUS, Content-Type CTYPE,
 * Content-Length LEN, x-request-id REQID, x-client-request-id CLIENT_ID
 * unless it is "", a Retry-After when RETRY_S > 0, and Connection: close
 * unless KEEPALIVE.
 */
void	 reply_head(struct evbuffer *out, int status, const char *ctype,
	    size_t len, const char *reqid, const char *client_id, int retry_s,
	    int keepalive);
/* Append "x-client-request-id: ID\r\n" unless ID is "". */
void	 reply_client_id(struct evbuffer *out, const char *client_id);

/*
 * Head lines are assembled with these rather than a printf: they run
 * several times per request, and vfprintf was 5% of a worker's
 * instructions for small requests.  Each writes at Q and returns the end.
 */
static inline char *
reply_put(char *q, const char *s, size_t n)
{
	memcpy(q, s, n);
	return q + n;
}

/* A string literal, its length counted by the compiler. */
#define reply_put_lit(q, lit)	reply_put((q), (lit), sizeof(lit) - 1)

static inline char *
reply_put_u64(char *q, uint64_t v)
{
	char	 t[20];
	int	 n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*q++ = t[--n];
	return q;
}

#endif
