/*
 * awscred.c - the shared credentials file, as the AWS CLI and SDKs read
 * it: sections "[name]", lines "key = value", blank around both ignored.
 * Only the three keys sluice uses are read; others (region, output...)
 * are allowed and skipped, so the file an operator already has works.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/awscred.h"

static int
is_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* [S, E) trimmed of blanks at both ends. */
static void
trim(const char **s, const char **e)
{
	while (*s < *e && is_blank((unsigned char)**s))
		(*s)++;
	while (*e > *s && is_blank((unsigned char)(*e)[-1]))
		(*e)--;
}

static int
span_is(const char *s, const char *e, const char *word)
{
	return (size_t)(e - s) == strlen(word) &&
	    memcmp(s, word, (size_t)(e - s)) == 0;
}

static int
set(char **dst, const char *s, const char *e)
{
	if (*dst != NULL) {
		explicit_bzero(*dst, strlen(*dst));
		free(*dst);
	}
	return (*dst = strndup(s, (size_t)(e - s))) == NULL ? -1 : 0;
}

int
awscred_parse(const char *text, const char *profile, struct awscred *c,
    char *why, size_t cap)
{
	const char	*line = text, *nl, *s, *e, *eq;
	int		 in = 0, found = 0, lineno = 0;

	memset(c, 0, sizeof(*c));
	for (; *line != '\0'; line = *nl == '\0' ? nl : nl + 1) {
		nl = line + strcspn(line, "\n");
		lineno++;
		s = line;
		e = nl;
		trim(&s, &e);
		if (s == e || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			if (e[-1] != ']' || e - s < 3)
				goto bad;
			s++;
			e--;
			trim(&s, &e);
			in = span_is(s, e, profile);
			found |= in;
			continue;
		}
		if ((eq = memchr(s, '=', (size_t)(e - s))) == NULL)
			goto bad;
		if (!in)
			continue;
		{
			const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
			char **dst = NULL;

			trim(&ks, &ke);
			trim(&vs, &ve);
			if (span_is(ks, ke, "aws_access_key_id"))
				dst = &c->key_id;
			else if (span_is(ks, ke, "aws_secret_access_key"))
				dst = &c->secret;
			else if (span_is(ks, ke, "aws_session_token"))
				dst = &c->token;
			if (dst != NULL && vs < ve && set(dst, vs, ve) == -1) {
				snprintf(why, cap, "out of memory");
				awscred_clear(c);
				return -1;
			}
		}
	}
	if (!found)
		snprintf(why, cap, "no [%s] profile", profile);
	else if (c->key_id == NULL || c->secret == NULL)
		snprintf(why, cap, "profile [%s] has no aws_access_key_id or "
		    "no aws_secret_access_key", profile);
	else
		return 0;
	awscred_clear(c);
	return -1;
 bad:
	snprintf(why, cap, "line %d is not \"[profile]\" nor \"name = value\"",
	    lineno);
	awscred_clear(c);
	return -1;
}

void
awscred_clear(struct awscred *c)
{
	char	**f[3] = { &c->key_id, &c->secret, &c->token };
	int	 i;

	for (i = 0; i < 3; i++)
		if (*f[i] != NULL) {
			explicit_bzero(*f[i], strlen(*f[i]));
			free(*f[i]);
			*f[i] = NULL;
		}
}
