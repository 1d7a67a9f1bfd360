/*
 * base64.c - RFC 4648 section 4 (decode) and 5 (encode, unpadded).
 *
 * Every byte outside the alphabet is an error rather than skipped, and
 * so are leftover bits that are not zero: a relayed event that decoded
 * to something other than what was sent would be metered as that.
 */
#include <stddef.h>

#include "common/base64.h"

/* The value of C in the standard alphabet, or -1. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
b64_decode(const char *s, size_t n, unsigned char *out)
{
	unsigned long	 acc = 0;
	size_t		 i, pad = 0, o = 0;
	int		 bits = 0, v;

	/* at most two '=', only at the end */
	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (pad > 0 && (n + pad) % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1;		/* 6 bits cannot end a byte */
	for (i = 0; i < n; i++) {
		if ((v = b64_value((unsigned char)s[i])) < 0)
			return -1;
		acc = (acc << 6) | (unsigned long)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1UL << bits) - 1;
		}
	}
	/* the leftover bits of the last character must be zero */
	if (acc != 0)
		return -1;
	return (long)o;
}

size_t
b64url_encode(const unsigned char *p, size_t n, char *out)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		 i, o = 0;
	unsigned long	 v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 |
		    p[i + 2];
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		out[o++] = alpha[v & 63];
	}
	if (n - i == 1) {
		v = (unsigned long)p[i] << 16;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
	}
	return o;
}
