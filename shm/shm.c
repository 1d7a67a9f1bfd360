/*
 * shm.c - the one shared segment.
 *
 * The master maps it once, anonymous and shared, before the first fork, so
 * every child inherits it at the same address: no names in /dev/shm to
 * leak or collide, no file to size, and it disappears with the last
 * process.  Because the address is the same everywhere, the header at the
 * start of the mapping is the struct shm_segment itself and holds offsets,
 * never pointers.
 *
 * Everything is laid out once at create time and never moves: lanes at a
 * fixed stride, then the named regions other modules asked for.  Each
 * piece starts on a 64-byte line so that no two writers share one.  The
 * header is read-only after shm_create_regions() returns.  The segment
 * also owns the lanes' bell, an eventfd every child inherits.
 *
 * A lane's positions start at 0 in every segment, so a position names an
 * event only together with the segment: the header carries an epoch, a
 * UUIDv7 (the creation time, then random bits from the kernel), that no
 * other segment on this or any host shares.  The collector's
 * exactly-once bookkeeping in PostgreSQL is keyed by it.
 */
#include <sys/random.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "shm/ring.h"
#include "shm/shm.h"

#define SHM_MAGIC	0x736c7569636530ULL	/* "sluice0" */
#define SHM_ALIGN	64

struct shm_region_ent {
	char		 name[SHM_REGION_NAME_MAX];
	uint64_t	 off;
	uint64_t	 size;
};

struct shm_segment {
	uint64_t	 magic;
	uint64_t	 size;		/* bytes mapped */
	uint32_t	 nlanes;
	uint32_t	 lane_slots;
	uint64_t	 lanes_off;
	uint64_t	 lane_stride;
	uint32_t	 nregions;
	struct shm_region_ent regions[SHM_REGIONS_MAX];
	int32_t		 bell_fd;	/* the lanes' eventfd, or -1 */
	uint8_t		 epoch[SHM_EPOCH_LEN];
};

static int	 shm_add(size_t *, size_t);
static size_t	 shm_roundup(size_t);
static int	 shm_check_regions(const struct shm_region_req *, size_t);
static int	 shm_make_epoch(uint8_t *);

struct shm_segment *
shm_create(uint32_t nlanes, uint32_t lane_slots)
{
	return shm_create_regions(nlanes, lane_slots, NULL, 0);
}

struct shm_segment *
shm_create_regions(uint32_t nlanes, uint32_t lane_slots,
    const struct shm_region_req *reqs, size_t nreq)
{
	struct shm_segment	*seg;
	size_t			 size, stride, lanes_off, off[SHM_REGIONS_MAX];
	size_t			 i;
	void			*p;

	if (nlanes == 0 || lane_slots == 0 ||
	    (lane_slots & (lane_slots - 1)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	if (shm_check_regions(reqs, nreq) == -1) {
		errno = EINVAL;
		return NULL;
	}

	/* Sizes first, with every sum checked: a huge config is ENOMEM. */
#if SIZE_MAX <= UINT32_MAX
	/* Only a 32-bit size_t can overflow on one lane. */
	if ((size_t)lane_slots > (SIZE_MAX - SHM_ALIGN -
	    offsetof(struct ring_lane, slots)) / sizeof(struct usage_event))
		goto toobig;
#endif
	stride = ring_lane_size(lane_slots);
	lanes_off = shm_roundup(sizeof(struct shm_segment));
	if (stride > (SIZE_MAX - lanes_off) / nlanes)
		goto toobig;
	size = lanes_off + (size_t)nlanes * stride;
	for (i = 0; i < nreq; i++) {
		off[i] = size;
		if (shm_add(&size, reqs[i].size) == -1 ||
		    shm_add(&size, SHM_ALIGN - 1) == -1)
			goto toobig;
		size &= ~(size_t)(SHM_ALIGN - 1);
	}

	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (shm_make_epoch(((struct shm_segment *)p)->epoch) == -1) {
		(void)munmap(p, size);
		errno = EAGAIN;
		return NULL;
	}

	/* The mapping is zeroed; fill in what is not zero. */
	seg = p;
	seg->magic = SHM_MAGIC;
	seg->size = size;
	seg->nlanes = nlanes;
	seg->lane_slots = lane_slots;
	seg->lanes_off = lanes_off;
	seg->lane_stride = stride;
	seg->nregions = nreq;
	for (i = 0; i < nreq; i++) {
		/* Length checked above; the mapping supplies the NUL. */
		memcpy(seg->regions[i].name, reqs[i].name,
		    strlen(reqs[i].name));
		seg->regions[i].off = off[i];
		seg->regions[i].size = reqs[i].size;
	}
	/* one bell for all lanes: the collector sleeps on one descriptor */
	seg->bell_fd = ring_bell_open();
	for (i = 0; i < nlanes; i++)
		ring_lane_init(shm_lane(seg, i), lane_slots, seg->bell_fd);
	return seg;

 toobig:
	errno = ENOMEM;
	return NULL;
}

const uint8_t *
shm_epoch(const struct shm_segment *seg)
{
	return seg->epoch;
}

/* A UUIDv7: 48 bits of milliseconds, version, variant, 74 random bits. */
static int
shm_make_epoch(uint8_t *id)
{
	uint64_t	 ms = (uint64_t)(wall_us() / 1000);
	size_t		 got = 0;
	ssize_t		 n;
	int		 i;

	while (got < SHM_EPOCH_LEN - 6) {
		n = getrandom(id + 6 + got, SHM_EPOCH_LEN - 6 - got, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	for (i = 0; i < 6; i++)
		id[i] = (uint8_t)(ms >> (40 - 8 * i));
	id[6] = (id[6] & 0x0f) | 0x70;
	id[8] = (id[8] & 0x3f) | 0x80;
	return 0;
}

void
shm_destroy(struct shm_segment *seg)
{
	if (seg == NULL)
		return;
	if (seg->bell_fd != -1)
		(void)close(seg->bell_fd);
	(void)munmap(seg, seg->size);
}

uint32_t
shm_nlanes(const struct shm_segment *seg)
{
	return seg->nlanes;
}

uint32_t
shm_lane_slots(const struct shm_segment *seg)
{
	return seg->lane_slots;
}

size_t
shm_size(const struct shm_segment *seg)
{
	return seg->size;
}

struct ring_lane *
shm_lane(struct shm_segment *seg, uint32_t i)
{
	if (i >= seg->nlanes)
		return NULL;
	return (struct ring_lane *)((char *)seg + seg->lanes_off +
	    (size_t)i * seg->lane_stride);
}

void *
shm_region(struct shm_segment *seg, const char *name, size_t *sizep)
{
	uint32_t	 i;

	for (i = 0; i < seg->nregions; i++) {
		if (strcmp(seg->regions[i].name, name) == 0) {
			if (sizep != NULL)
				*sizep = seg->regions[i].size;
			return (char *)seg + seg->regions[i].off;
		}
	}
	return NULL;
}

/* *SZ += N; -1 on overflow. */
static int
shm_add(size_t *sz, size_t n)
{
	if (n > SIZE_MAX - *sz)
		return -1;
	*sz += n;
	return 0;
}

static size_t
shm_roundup(size_t n)
{
	return (n + SHM_ALIGN - 1) & ~(size_t)(SHM_ALIGN - 1);
}

/* Names present, short enough and unique; sizes non-zero. */
static int
shm_check_regions(const struct shm_region_req *reqs, size_t nreq)
{
	size_t	 i, j, len;

	if (nreq > SHM_REGIONS_MAX || (nreq > 0 && reqs == NULL))
		return -1;
	for (i = 0; i < nreq; i++) {
		if (reqs[i].name == NULL || reqs[i].size == 0)
			return -1;
		len = strlen(reqs[i].name);
		if (len == 0 || len >= SHM_REGION_NAME_MAX)
			return -1;
		for (j = 0; j < i; j++)
			if (strcmp(reqs[i].name, reqs[j].name) == 0)
				return -1;
	}
	return 0;
}
