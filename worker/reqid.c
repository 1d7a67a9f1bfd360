/*
 * reqid.c - request ids: random UUIDv4, from a per-worker generator.
 *
 * The generator is xoshiro256** seeded from getrandom(2) at worker start;
 * ids need to be unique, not secret, and the request path cannot afford a
 * syscall or a lock for each one.
 */
#include <sys/random.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/hex.h"
#include "common/clock.h"
#include "worker/reqid.h"

static uint64_t	 rs[4];

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
next(void)
{
	uint64_t result = rotl(rs[1] * 5, 7) * 9, t = rs[1] << 17;

	rs[2] ^= rs[0];
	rs[3] ^= rs[1];
	rs[1] ^= rs[2];
	rs[0] ^= rs[3];
	rs[2] ^= t;
	rs[3] = rotl(rs[3], 45);
	return result;
}

void
reqid_init(void)
{
	if (getrandom(rs, sizeof(rs), 0) != sizeof(rs)) {
		/* no entropy source: still unique per process and instant */
		rs[0] = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
		rs[1] = 0x9e3779b97f4a7c15ULL ^ (uint64_t)now_us();
		rs[2] = 0xbf58476d1ce4e5b9ULL;
		rs[3] = 0x94d049bb133111ebULL;
	}
}

void
reqid_new(uint8_t id[16], char str[37])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t a = next(), b = next();
	int	 i, j;

	memcpy(id, &a, 8);
	memcpy(id + 8, &b, 8);
	id[6] = (id[6] & 0x0f) | 0x40;	/* version 4 */
	id[8] = (id[8] & 0x3f) | 0x80;	/* variant 10 */
	for (i = 0, j = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			str[j++] = '-';
		str[j++] = hex[id[i] >> 4];
		str[j++] = hex[id[i] & 15];
	}
	str[j] = '\0';
}

/* A client-sent x-request-id is kept only if it is a UUID. */
int
reqid_parse(const char *s, size_t len, uint8_t id[16])
{
	size_t	 i;
	int	 n = 0, hi, lo;

	if (len != 36)
		return -1;
	for (i = 0; i < len;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			i++;
			continue;
		}
		if ((hi = hex_digit((unsigned char)s[i])) < 0 ||
		    (lo = hex_digit((unsigned char)s[i + 1])) < 0)
			return -1;
		id[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}


