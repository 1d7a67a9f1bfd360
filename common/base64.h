/*
 * base64.h - RFC 4648 base64: decode the standard alphabet, encode the
 * URL-safe one without padding.
 *
 * Owns nothing but the two alphabets.  Called by the Bedrock stream
 * reader (each event's "bytes" field is base64) and by whatever builds a
 * JWT (base64url).  Pure: no allocation, no I/O; it never accepts a
 * character outside the alphabet, so a corrupt field is refused, not
 * decoded to something else.
 */
#ifndef SLUICE_BASE64_H
#define SLUICE_BASE64_H

#include <stddef.h>

/* Bytes b64_decode may write for N characters of input. */
#define B64_DECODED_MAX(n)	(((n) + 3) / 4 * 3)
/* Characters b64url_encode writes for N bytes (no padding, no NUL). */
#define B64URL_ENCODED_LEN(n)	(((n) * 4 + 2) / 3)

/*
 * Decode the N characters at S (standard alphabet, '=' padding
 * optional) into OUT, which holds B64_DECODED_MAX(n).  The bytes
 * written, or -1 for a character outside the alphabet, misplaced
 * padding or a length no encoder produces.
 */
long	 b64_decode(const char *s, size_t n, unsigned char *out);
/* Encode N bytes at P, URL-safe and unpadded, into OUT; the length. */
size_t	 b64url_encode(const unsigned char *p, size_t n, char *out);

#endif
