/*
 * attrib.c - tags and end users.
 *
 * Why so strict: both come from the caller and end in a row that
 * operators group by and dashboards draw, so a tag cannot smuggle a
 * comma, a quote or a control byte, and there are few enough of them that
 * a row stays small (EV_TAGS_MAX of at most EV_TAG_MAX bytes).
 */
#include <stdio.h>
#include <string.h>

#include "common/event.h"
#include "common/keys.h"
#include "worker/attrib.h"

/* Whether the tag S (LEN bytes) is already in the list OUT. */
static int
listed(const char *out, const char *s, size_t len)
{
	const char *p = out, *e;

	while (*p != '\0') {
		e = strchr(p, ',');
		if (e == NULL)
			e = p + strlen(p);
		if ((size_t)(e - p) == len && memcmp(p, s, len) == 0)
			return 1;
		p = *e == ',' ? e + 1 : e;
	}
	return 0;
}

int
attrib_tags(const char *fixed, const char *hdr, size_t hlen, char *out,
    size_t outsize, char *err, size_t errsize)
{
	size_t	 used, i = 0, s, e, n = 0;
	const char *p;

	used = fixed != NULL ? strnlen(fixed, outsize - 1) : 0;
	memcpy(out, fixed != NULL ? fixed : "", used);
	out[used] = '\0';
	for (p = out; *p != '\0'; p++)
		n += *p == ',';
	n += used > 0;
	while (i < hlen) {
		for (s = i; s < hlen && (hdr[s] == ' ' || hdr[s] == '\t'); s++)
			;
		for (e = s; e < hlen && hdr[e] != ','; e++)
			;
		i = e + 1;
		while (e > s && (hdr[e - 1] == ' ' || hdr[e - 1] == '\t'))
			e--;
		if (e == s)
			continue;
		if (!keys_tag_ok(hdr + s, e - s)) {
			snprintf(err, errsize, "x-sluice-tags: a tag is 1 to "
			    "%d printable ASCII bytes without spaces or commas",
			    EV_TAG_MAX);
			return -1;
		}
		if (listed(out, hdr + s, e - s))
			continue;
		if (n == EV_TAGS_MAX || used + 1 + (e - s) >= outsize) {
			snprintf(err, errsize, "x-sluice-tags: at most %d tags "
			    "a request, the key's own included", EV_TAGS_MAX);
			return -1;
		}
		if (used > 0)
			out[used++] = ',';
		memcpy(out + used, hdr + s, e - s);
		used += e - s;
		out[used] = '\0';
		n++;
	}
	return 0;
}

int
attrib_user(const char *s, size_t len, char *out, size_t outsize)
{
	size_t i;

	if (len == 0 || len >= outsize || len >= EV_USER_MAX)
		return -1;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}
