/*
 * attrib.h - for whom a request is made (layer 0, pure): the tags and the
 * end user it is attributed to in its usage row.
 *
 * Owns the rules a tag and an end-user id must follow; anyone may call
 * it.  It never allocates, never looks at a connection, and never decides
 * what is forwarded upstream (the x-sluice-* headers never are: see
 * up_header_allowed).
 */
#ifndef SLUICE_ATTRIB_H
#define SLUICE_ATTRIB_H

#include <stddef.h>

/*
 * The tags of a request, "a,b" into OUT (OUTSIZE bytes, EV_TAGS_BYTES is
 * enough): FIXED (the key's, already checked) then those of the header
 * value HDR (HLEN bytes, comma-separated, spaces around a tag ignored),
 * without repeats.  0 ok; -1 with a sentence in ERR: more than
 * EV_TAGS_MAX tags, one longer than EV_TAG_MAX bytes, or a byte that is
 * not printable ASCII.
 */
int	 attrib_tags(const char *fixed, const char *hdr, size_t hlen, char *out,
	    size_t outsize, char *err, size_t errsize);
/*
 * An end-user id (S, LEN bytes) into OUT (EV_USER_MAX bytes): 1 to
 * EV_USER_MAX - 1 bytes and no control character.  0 ok, -1 not.
 */
int	 attrib_user(const char *s, size_t len, char *out, size_t outsize);

#endif
