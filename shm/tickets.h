/*
 * tickets.h - the TLS session ticket keys in the shared segment, so that
 * a session one worker issued resumes on any other, and on the workers of
 * the next generation after a reload.
 *
 * The master writes: tickets_publish() makes a fresh key current (at
 * start, then every ssl_session_timeout); the key it replaces stays valid
 * for decryption one period more, so a ticket lives at least one whole
 * period.  Workers read: the current key to issue a ticket, a key by name
 * to resume one.  Keys live only here, in anonymous shared memory: never
 * on disk, never in a log.  shm/ knows no TLS: a key is bytes the caller
 * made (worker/tls.c), checked here only by name and generation.
 *
 * One writer (the master), any number of readers; every slot is
 * seqlocked, so a reader never uses a key torn by a rotation under way.
 */
#ifndef SLUICE_TICKETS_H
#define SLUICE_TICKETS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TICKETS_SLOTS		4	/* current, previous, two spare */
#define TICKET_NAME_LEN		16
#define TICKET_KEY_LEN		32

struct ticket_key {
	uint8_t		 name[TICKET_NAME_LEN];
	uint8_t		 aes[TICKET_KEY_LEN];
	uint8_t		 hmac[TICKET_KEY_LEN];
};

#define TICKET_WORDS	(sizeof(struct ticket_key) / sizeof(uint64_t))

struct tickets_slot {
	_Alignas(64) _Atomic uint64_t seq;	/* odd while being written */
	_Atomic uint64_t gen;			/* the rotation that wrote it */
	_Atomic uint64_t w[TICKET_WORDS];
};

struct tickets_region {
	_Atomic uint64_t gen;		/* rotations so far; 0 = no key yet */
	_Atomic int64_t	 rotated_wall_us;
	struct tickets_slot slot[TICKETS_SLOTS];
};

size_t	 tickets_size(void);
void	 tickets_init(struct tickets_region *);
/* Master: K becomes the current key; the one before it still decrypts. */
void	 tickets_publish(struct tickets_region *, const struct ticket_key *k,
	    int64_t wall_us);
/* Workers: a copy of the current key.  0, or -1 when there is none. */
int	 tickets_current(const struct tickets_region *, struct ticket_key *);
/*
 * Workers: the key called NAME, copied into *K: 1 if it is the current
 * one, 2 if it is the previous one (the ticket should be renewed), 0 if
 * no valid key has that name (a full handshake).
 */
int	 tickets_find(const struct tickets_region *,
	    const uint8_t name[TICKET_NAME_LEN], struct ticket_key *k);
/* Rotations so far (for /metrics). */
uint64_t tickets_rotations(const struct tickets_region *);

#endif
