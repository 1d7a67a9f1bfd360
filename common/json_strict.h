/*
 * json_strict.h - one strict reading of a client's JSON request body.
 *
 * Owns the validation of a whole body as RFC 8259 JSON and the decoded
 * reading of the few top-level members the request path acts on (model,
 * stream, stream_options), so that what sluice routes, prices, authorizes
 * and edits is what any upstream parser reads.  Called by the request
 * pipeline on a complete body, and again on the extent of a member object
 * (stream_options) to read inside it by the same rules.  Pure: no
 * allocation, no state, no logging.  It never repairs or normalises a
 * body; whatever two parsers could read two ways is refused.  Upstream
 * answers, where leniency matters more, are json_scan.h's.
 */
#ifndef SLUICE_JSON_STRICT_H
#define SLUICE_JSON_STRICT_H

#include <stddef.h>

#include "common/json_scan.h"		/* enum json_vtype */

#define JSON_STRICT_MAX_DEPTH	512	/* containers open at once, the
					   top object included */
#define JSON_STRICT_KEY_MAX	64	/* longest key a caller may ask for */

enum json_strict_rc {
	JSON_STRICT_OK = 0,
	JSON_STRICT_INVALID,		/* not one strict JSON object */
	JSON_STRICT_DUPLICATE,		/* an asked-for key twice, decoded */
	JSON_STRICT_CASE_VARIANT,	/* a key other parsers take for an
					   asked-for one: see below */
	JSON_STRICT_TOO_LONG,		/* a decoded value over its buffer */
};

struct json_strict_field {
	const char	*key;		/* in: decoded name, ASCII, at most
					   JSON_STRICT_KEY_MAX bytes */
	char		*buf;		/* in: where a string value is decoded,
					   or NULL not to decode it */
	size_t		 bufsize;	/* in: bytes at buf, the NUL included */
	enum json_vtype	 type;		/* out: JV_NONE if absent */
	size_t		 start;		/* out: the value token's first byte (a
					   string's opening quote) */
	size_t		 end;		/* out: one past its last byte */
	size_t		 len;		/* out: decoded bytes in buf, then a
					   NUL; a \u0000 decodes to a NUL too */
	int		 printable;	/* out: decoded string is 1 or more of
					   0x21..0x7e, nothing else */
};

struct json_strict_err {
	size_t		 off;		/* INVALID: where the input stops being
					   JSON (a bad string: its quote);
					   else the key at fault (TOO_LONG:
					   the value) */
	int		 field;		/* the field concerned, or -1 */
};

/*
 * Read JS (LEN bytes): exactly one object, then only white space.
 * Everything is checked (escapes, surrogate pairs, UTF-8, numbers,
 * literals, commas, depth).  Each top-level key is decoded and compared
 * with FIELDS: an exact match fills the field in; a second exact match
 * is JSON_STRICT_DUPLICATE; a key equal to a field once ASCII case is
 * folded, the letters Go and Java also fold (U+0130, U+0131 to i, U+017F
 * to s, U+212A to k) or cut at a \u0000 (as C parsers do) is
 * JSON_STRICT_CASE_VARIANT.  Other keys may repeat.  A string value of a
 * field with a buf is decoded into it; one that does not fit is
 * JSON_STRICT_TOO_LONG.
 *
 * JSON_STRICT_INVALID wins over the others, which are reported first in
 * document order; ERR (may be NULL) says where.  The fields are complete
 * only on JSON_STRICT_OK.  "printable" excludes space, controls and all
 * non-ASCII: every model name in use ("gpt-4o-mini",
 * "claude-3-5-sonnet-20241022", "meta-llama/Llama-3-8B", "qwen2.5:7b")
 * passes, and nothing that passes can split a head line; it does not
 * make a name safe in a URL path ('/', '?', '%', "..").
 *
 * Offsets count from JS: to read inside a member object, pass
 * JS + start and end - start, and add start to what comes back.
 */
enum json_strict_rc json_strict_read(const char *js, size_t len,
	    struct json_strict_field *fields, int nfields,
	    struct json_strict_err *err);

#endif
