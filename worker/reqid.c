/*
 * reqid.c - request ids: UUIDv7 (RFC 9562), time-ordered so the usage
 * table's primary key grows at its right edge, with 74 random bits from
 * the kernel's CSPRNG.
 *
 * An id is the row's primary key and is shown to clients, so it must not
 * be predictable: a generator whose state each id reveals (xoshiro) let
 * one client compute another tenant's next ids and load rows under them
 * first.  getrandom(2) fills a buffer of REQID_POOL bytes at a time, so a
 * request costs no system call; the buffer is thrown away in every new
 * process (reqid_init after fork), so no two workers and no restart ever
 * hand out the same random bytes.
 */
#include <sys/random.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "worker/reqid.h"

#define REQID_RAND	10		/* random bytes per id (74 bits used) */
#define REQID_POOL	(REQID_RAND * 409)	/* ~4 KB per getrandom */

static unsigned char	 pool[REQID_POOL];
static size_t		 pool_left;

static int
pool_fill(void)
{
	size_t	 got = 0;
	ssize_t	 n;

	while (got < sizeof(pool)) {
		n = getrandom(pool + got, sizeof(pool) - got, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	pool_left = sizeof(pool);
	return 0;
}

void
reqid_init(void)
{
	explicit_bzero(pool, sizeof(pool));
	if (pool_fill() == -1)
		fatal("getrandom");	/* no safe way to make ids */
}

/*
 * getrandom failing after it worked at start (it does not, short of a
 * broken kernel) must not end the worker on the request path: reuse the
 * pool, each id made distinct by a counter, and say so.
 */
static void
pool_refill(void)
{
	static uint64_t	 reuse;
	uint64_t	 k;
	size_t		 i;

	if (pool_fill() == 0)
		return;
	log_warn("getrandom: request ids reuse their random pool");
	for (i = 0; i + sizeof(k) <= sizeof(pool); i += REQID_RAND) {
		memcpy(&k, pool + i, sizeof(k));
		k ^= ++reuse;
		memcpy(pool + i, &k, sizeof(k));
	}
	pool_left = sizeof(pool);
}

void
reqid_new(uint8_t id[16], char str[37])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t	 ms = (uint64_t)(wall_us() / 1000);
	const unsigned char *r;
	int		 i, j;

	if (pool_left < REQID_RAND)
		pool_refill();
	r = pool + sizeof(pool) - pool_left;
	pool_left -= REQID_RAND;
	for (i = 0; i < 6; i++)
		id[i] = (uint8_t)(ms >> (40 - 8 * i));
	memcpy(id + 6, r, REQID_RAND);
	id[6] = (id[6] & 0x0f) | 0x70;	/* version 7 */
	id[8] = (id[8] & 0x3f) | 0x80;	/* variant 10 */
	for (i = 0, j = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			str[j++] = '-';
		str[j++] = hex[id[i] >> 4];
		str[j++] = hex[id[i] & 15];
	}
	str[j] = '\0';
}
