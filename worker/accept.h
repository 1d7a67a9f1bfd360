/*
 * accept.h - taking client connections off the shared listening sockets
 * (layer 4, beside worker.c, which alone calls it).
 *
 * Owns this worker's events on the listening sockets inherited from the
 * master, the pause after EMFILE, and the worker's line in the "spread"
 * region: a connection is accepted only when it is this worker's turn
 * (shm/spread.h), and a worker whose turn it is not waits for a kick.
 * It never reads a byte from a client: a connection is handed to the
 * client core with the handler it was started with.
 */
#ifndef SLUICE_ACCEPT_H
#define SLUICE_ACCEPT_H

#include "worker/client.h"
#include "worker/wctx.h"

struct spread_region;

/*
 * Accept on the NFDS sockets FDS in W's loop, handing every connection to
 * client_accept() with H.  SP (NULL: accept whenever woken) is the shared
 * region; W's slot indexes it.  -1 if an event cannot be made.
 */
int	 accept_start(struct worker *w, const int *fds, int nfds,
	    struct spread_region *sp, const struct client_handler *h);
/* Stop for good and close our copies of the sockets; the queue stays. */
void	 accept_stop(struct worker *w);
/* W's count of client connections changed: publish it. */
void	 accept_conns_changed(struct worker *w);

#endif
