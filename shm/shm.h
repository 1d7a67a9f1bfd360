/*
 * shm.h - the one shared segment, created by the master before the first
 * fork with mmap(MAP_SHARED|MAP_ANONYMOUS) and inherited by every child.
 *
 * Layout: a header, then NLANES event ring lanes (one per worker slot:
 * 2 x workers, so an old and a new generation coexist during a reload),
 * each 64-byte aligned at a fixed stride, then the named regions other
 * modules reserve at create time (counters, key state), each 64-byte
 * aligned and zeroed.  The owning module initialises its region in the
 * master before the first fork and finds it again with shm_region().
 * shm/ knows nothing about HTTP or PostgreSQL.
 *
 * Only the master creates and destroys the segment; every process may
 * call the lookups, which only read the header.
 */
#ifndef SLUICE_SHM_H
#define SLUICE_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "shm/ring.h"

struct shm_segment;

#define SHM_REGIONS_MAX		8	/* named regions per segment */
#define SHM_REGION_NAME_MAX	16	/* bytes, including the NUL */
#define SHM_EPOCH_LEN		16	/* bytes of shm_epoch() */

/* A region a module asks for at create time: "counters", "keys". */
struct shm_region_req {
	const char	*name;
	size_t		 size;		/* bytes, > 0 */
};

/*
 * Map and initialise. Returns NULL with errno set on failure: EINVAL if
 * nlanes is 0 or lane_slots is not a power of two, ENOMEM if it is too big
 * or mmap fails, EAGAIN if the kernel gave no random bytes for the epoch.
 */
struct shm_segment *shm_create(uint32_t nlanes, uint32_t lane_slots);
/*
 * The same, plus NREQ named regions after the lanes.  EINVAL also for more
 * than SHM_REGIONS_MAX regions, a NULL, empty, too long or repeated name,
 * or a size of 0.
 */
struct shm_segment *shm_create_regions(uint32_t nlanes, uint32_t lane_slots,
		    const struct shm_region_req *reqs, size_t nreq);
/* Unmap, and close the lanes' bell (ring.h), which shm_create opened. */
void		 shm_destroy(struct shm_segment *);
uint32_t	 shm_nlanes(const struct shm_segment *);
uint32_t	 shm_lane_slots(const struct shm_segment *);
size_t		 shm_size(const struct shm_segment *);	/* bytes mapped */
/* Lane I, or NULL if I >= shm_nlanes(). */
struct ring_lane *shm_lane(struct shm_segment *, uint32_t i);
/*
 * The segment's epoch: SHM_EPOCH_LEN bytes, a UUIDv7 made at create time
 * and shared by no other segment, here or on another host.  With a lane
 * number and a position in that lane it names one event for good.
 */
const uint8_t	*shm_epoch(const struct shm_segment *);
/* The region called NAME (64-byte aligned), or NULL; *SIZE if not NULL. */
void		*shm_region(struct shm_segment *, const char *name,
		    size_t *size);

#endif
