/*
 * reqid.h - request ids (layer 0): the 128-bit id of a request, sent to
 * the client and the upstream as x-request-id and stored as the usage
 * row's key.  The generator's state is this process's own; anyone on the
 * request path may call it, and it never makes a system call per id.
 */
#ifndef SLUICE_REQID_H
#define SLUICE_REQID_H

#include <stddef.h>
#include <stdint.h>

/* Seed the generator; once per process, after fork. */
void	 reqid_init(void);
/* A new id, as bytes and as its 36-character text. */
void	 reqid_new(uint8_t id[16], char str[37]);

#endif
