/*
 * hex.h - one hexadecimal digit's value; shared by the parsers of key
 * hashes, chunk sizes and request ids.
 */
#ifndef SLUICE_HEX_H
#define SLUICE_HEX_H

/* 0-15, or -1 if C is not a hexadecimal digit. */
static inline int
hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
