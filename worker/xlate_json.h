/*
 * xlate_json.h - reading jsmn tokens and writing JSON, for the format
 * translators (layer 0, pure).
 *
 * Owns the few moves every translator makes: walk the members of an
 * object or the elements of an array, copy a value as it stands (a
 * string keeps its escapes: what the client wrote is what the upstream
 * reads), decode a string when its bytes must be looked at (a data URL,
 * tool arguments that are JSON inside a string), and write a string back
 * escaped.  Called by xlate_req, xlate_resp and xlate_sse only; it writes
 * into the evbuffer it is given, allocates nothing of its own and keeps
 * no state.
 */
#ifndef SLUICE_XLATE_JSON_H
#define SLUICE_XLATE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "common/json.h"
#include "common/json_scan.h"		/* enum json_vtype */

struct evbuffer;

/* Why a request cannot be translated: a 400 that names the construct. */
struct xlate_err {
	char		 msg[256];
};

/* Members of an object or elements of an array, in document order. */
struct xj_iter {
	int		 next;		/* token of the next member's key */
	int		 left;		/* members or elements still to come */
};

/* Append string literal S (only a literal compiles: "" S). */
#define XJ_LIT(b, s)	evbuffer_add((b), "" s, sizeof(s) - 1)

/*
 * Tokenize JS (LEN bytes) into D, token for token what json_parse (jsmn,
 * strict, with parent links) makes of a valid document, but strings
 * skipped with memchr rather than byte by byte: translating a 100 KB
 * prompt is mostly tokenizing it.  0, or -1 when JS is not one object
 * or array (nesting past JSON_MAX_DEPTH, more than D's max_tokens, a
 * bracket that does not close, a value where a key must be).  It checks
 * less than jsmn inside strings and numbers: a request was read strictly
 * before, and an upstream's answer is only copied from.
 */
int	 xj_parse(struct json_doc *, const char *js, size_t len);
/* Start iterating token I (an object or an array; else nothing). */
void	 xj_iter(struct xj_iter *, const struct json_doc *, int i);
/* The next member: 1 with its key and value tokens, 0 at the end. */
int	 xj_member(struct xj_iter *, const struct json_doc *, int *key,
	    int *val);
/* The next element: 1 with its token, 0 at the end. */
int	 xj_elem(struct xj_iter *, const struct json_doc *, int *elem);

/*
 * One pass over the members of object OBJ: VALS[i] is the value token of
 * the first member named KEYS[i], or -1 (N of them; cheaper than N
 * json_get on the small objects of a stream's events).
 */
void	 xj_members(const struct json_doc *, int obj, const char *const *keys,
	    int *vals, int n);
/* The JSON type of token I (JV_NONE for I < 0). */
enum json_vtype xj_type(const struct json_doc *, int i);
/* 1 if token I is the string S, compared as written (no escapes). */
int	 xj_is(const struct json_doc *, int i, const char *s);
/* 1 if token I is a number without sign, fraction or exponent. */
int	 xj_is_count(const struct json_doc *, int i);

/* Token I as it stands in the document (a string with its quotes). */
void	 xj_raw(struct evbuffer *, const struct json_doc *, int i);
/* String token I as it stands, or the JSON text DFLT when I is none. */
void	 xj_str_or(struct evbuffer *, const struct json_doc *, int i,
	    const char *dflt);
#define xj_str_or_empty(b, d, i)	xj_str_or((b), (d), (i), "\"\"")
/* The inside of string token I, escapes kept. */
void	 xj_inner(struct evbuffer *, const struct json_doc *, int i);
/* C string S as a JSON string, quoted and escaped. */
void	 xj_str(struct evbuffer *, const char *s);
/* N bytes at P as a JSON string, quoted and escaped (JSON text that
 * travels inside a string, as tool arguments do). */
void	 xj_quote(struct evbuffer *, const char *p, size_t n);
void	 xj_int(struct evbuffer *, int64_t v);
/* C string S as it is (a name the caller knows needs no escape). */
void	 xj_add(struct evbuffer *, const char *s);
/*
 * Decode the inside of a JSON string (N bytes at P, as jsmn found it)
 * into B: escapes become the bytes they stand for, a surrogate pair one
 * UTF-8 sequence, a lone surrogate U+FFFD.  0, or -1 on a bad escape.
 */
int	 xj_unescape(struct evbuffer *b, const char *p, size_t n);
/*
 * The inside of string member KEY of every element of ARRAY whose "type"
 * is TYPE, one after the other with SEP (written as it is) between two:
 * how many, or -1 when one of them has no such string.
 */
int	 xj_join(struct evbuffer *, const struct json_doc *, int array,
	    const char *type, const char *key, const char *sep);
/*
 * Tool arguments, which OpenAI carries as JSON text inside string token
 * ARGS, as the object Anthropic's tool_use input is, into OUT (TMP is
 * scratch).  Absent, null or "" is {}; an object token is copied.  0, or
 * -1 (nothing written) when the text is not one strict JSON object.
 */
int	 xj_args_object(struct evbuffer *out, struct evbuffer *tmp,
	    const struct json_doc *, int args);
/* Fill ERR with a message; returns -1. */
int	 xj_fail(struct xlate_err *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
