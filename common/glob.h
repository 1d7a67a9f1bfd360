/*
 * glob.h - shell-style wildcard match for model names ('*' and '?').
 * Pure function; used by routing, prices and key model lists.
 */
#ifndef SLUICE_GLOB_H
#define SLUICE_GLOB_H

#include <stddef.h>

/* 1 if STR (LEN bytes, not NUL-terminated) matches PATTERN, else 0. */
int	 glob_match(const char *pattern, const char *str, size_t len);

#endif
