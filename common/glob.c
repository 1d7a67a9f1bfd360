/*
 * glob.c - '*' and '?' matching for model names.
 *
 * Patterns come from the config file and model names from clients, so the
 * match must be cheap and bounded whatever either contains.  This is the
 * classic single-backtrack loop: on a mismatch we return to the most recent
 * '*' and let it swallow one more byte.  Only the last star matters (an
 * earlier star can never need to give back what a later one took), so the
 * cost is O(len(pattern) * len(str)) at worst, with no recursion and no
 * allocation.  The string is LEN bytes and need not be NUL-terminated;
 * there is no escape for a literal '*' or '?'.
 */
#include <stddef.h>

#include "common/glob.h"

int
glob_match(const char *pattern, const char *str, size_t len)
{
	size_t	 p = 0, s = 0, star_p = 0, star_s = 0;
	int	 have_star = 0;

	if (pattern == NULL || (str == NULL && len > 0))
		return 0;

	while (s < len) {
		if (pattern[p] == '*') {
			/* remember where to resume; let it match "" first */
			have_star = 1;
			star_p = ++p;
			star_s = s;
		} else if (pattern[p] != '\0' &&
		    (pattern[p] == '?' || pattern[p] == str[s])) {
			p++;
			s++;
		} else if (have_star) {
			/* the last star takes one more byte */
			p = star_p;
			s = ++star_s;
		} else
			return 0;
	}
	while (pattern[p] == '*')
		p++;
	return pattern[p] == '\0';
}
