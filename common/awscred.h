/*
 * awscred.h - an AWS shared credentials file (the ~/.aws/credentials
 * format), parsed.
 *
 * Owns the parse only: INI sections, "name = value" lines, '#' and ';'
 * comments.  Called by the configuration reader (common/config.c) on the
 * text of an upstream's aws_credentials_file, which it has read and
 * whose mode it has checked; it never opens a file and never logs a
 * value.
 */
#ifndef SLUICE_AWSCRED_H
#define SLUICE_AWSCRED_H

#include <stddef.h>

struct awscred {
	char	*key_id;	/* aws_access_key_id */
	char	*secret;	/* aws_secret_access_key */
	char	*token;		/* aws_session_token; NULL none */
};

/*
 * Parse TEXT for PROFILE's section ("default" usually) into C, whose
 * strings the caller frees with awscred_clear.  0, or -1 with the
 * reason in WHY (CAP bytes): no such profile, no key id or secret, a
 * line that is none of the above, out of memory.
 */
int	 awscred_parse(const char *text, const char *profile,
	    struct awscred *c, char *why, size_t cap);
/* Wipe and free C's strings. */
void	 awscred_clear(struct awscred *c);

#endif
