/*
 * json_scan.h - find a few top-level members of a large JSON object
 * without tokenizing the rest.
 *
 * A chat request is mostly "messages"; routing needs "model" and
 * "stream".  This skips every other value at memchr speed (strings) and
 * a byte loop (nesting), checking only that the document is one
 * well-formed object at the top and that nested brackets balance and
 * strings end; the upstream validates the rest.  Small values it finds
 * can then be parsed with jsmn (json.h) on their span alone.
 */
#ifndef SLUICE_JSON_SCAN_H
#define SLUICE_JSON_SCAN_H

#include <stddef.h>

enum json_vtype {
	JV_NONE = 0,	/* key absent */
	JV_STRING,
	JV_NUMBER,
	JV_TRUE,
	JV_FALSE,
	JV_NULL,
	JV_OBJECT,
	JV_ARRAY,
};

struct json_field {
	const char	*key;		/* in: member name, no escapes */
	enum json_vtype	 type;		/* out: of the first occurrence */
	size_t		 start;		/* out: strings: after the quote */
	size_t		 end;		/* out: strings: at the closing quote;
					   others: one past the value */
	int		 count;		/* out: occurrences */
};

#define JSON_SCAN_MAX_DEPTH	512

/*
 * Scan JS (LEN bytes), which must be one JSON object and nothing but
 * white space after it.  0 ok, -1 malformed or nested deeper than
 * JSON_SCAN_MAX_DEPTH.
 */
int	 json_scan_top(const char *js, size_t len, struct json_field *fields,
	    int nfields);

#endif
