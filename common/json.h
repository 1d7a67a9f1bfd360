/*
 * json.h - small helpers over jsmn for the few fields sluice reads.
 *
 * A json_doc owns a growable token array that is reused from one parse to
 * the next, so a worker allocates it once and the request path does not.
 * Tokens point into the caller's buffer; nothing is copied or unescaped
 * unless asked.  Parsing uses jsmn's strict mode and insists on exactly one
 * top-level value; jsmn still lets some malformed syntax through (a
 * trailing comma, a missing value), which the upstream then rejects: what
 * matters here is that the fields sluice reads are read unambiguously.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSMN_HEADER
#define JSMN_PARENT_LINKS
#define JSMN_STRICT
#include <jsmn.h>

struct json_doc {
	const char	*js;
	size_t		 len;
	jsmntok_t	*tok;
	int		 ntok;
	int		 cap;
	int		 max_tokens;	/* 0 = no limit */
};

/* 0 ok; -1 not JSON (or more tokens than max_tokens). */
int	 json_parse(struct json_doc *, const char *js, size_t len);
void	 json_doc_free(struct json_doc *);

/* Index of the value of KEY directly inside object token OBJ, or -1. */
int	 json_get(const struct json_doc *, int obj, const char *key);
/* Same, following a path of keys: json_path(d, 0, "usage", "prompt_tokens", NULL). */
int	 json_path(const struct json_doc *, int obj, ...);
/* 1 if token I is a string equal to S (raw, without unescaping). */
int	 json_str_eq(const struct json_doc *, int i, const char *s);
/* Raw bytes of token I (strings without quotes). */
const char *json_raw(const struct json_doc *, int i, size_t *len);
/* Integer value of primitive token I. 0 ok, -1 not an integer. */
int	 json_int(const struct json_doc *, int i, int64_t *v);
/* 1 true, 0 false, -1 not a boolean. */
int	 json_bool(const struct json_doc *, int i);
/* 1 if token I is a JSON string, 0 otherwise. */
int	 json_is_str(const struct json_doc *, int i);
/* 1 if token I is an object. */
int	 json_is_obj(const struct json_doc *, int i);
/* Index one past the last token that belongs to token I's subtree. */
int	 json_skip(const struct json_doc *, int i);

#endif
