/*
 * keys.c - parse keys.conf into a keyring, and find a key by its secret.
 *
 * keys.conf uses sluice.conf's grammar (confparse.c), so an operator gets
 * the same "PATH:LINE: message" for a mistake in either file.  Only the
 * SHA-256 of each secret is stored; a hash that is not "sha256:" and 64
 * hex digits is refused without echoing it, since the likeliest mistake is
 * a secret pasted where its hash belongs, and errors end up in logs.
 *
 * Workers look a key up on every request: the keyring carries an
 * open-addressing table indexed by the first 4 bytes of the hash (already
 * uniformly distributed, so no further hashing), sized to a power of two
 * at least twice the number of keys, so a lookup is O(1) and touches a
 * couple of cache lines.  The table is built once at load, where duplicate
 * names and duplicate hashes are found too (with a second table on the
 * names), so loading stays linear in the number of keys.
 */
#include <sys/stat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "common/confparse.h"
#include "common/glob.h"
#include "common/hex.h"
#include "common/keys.h"

#define KEYS_MAX	(1 << 20)

/* What keys_load keeps aside while parsing (the parser's udata). */
struct keys_state {
	struct keyring	*kr;
	size_t		 cap;
	int		*hash_line;	/* parallel to kr->keys */
	size_t		 team_cap;
	int		*team_line;	/* of each key's "team", parallel */
};

static int	 d_key(struct cp_parser *, struct cp_directive *, void *);
static int	 d_hash(struct cp_parser *, struct cp_directive *, void *);
static int	 d_client_cert(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 index_cert_only(struct cp_parser *, struct keyring *);
static int	 d_models(struct cp_parser *, struct cp_directive *, void *);
static int	 d_budget(struct cp_parser *, struct cp_directive *, void *);
static int	 d_expires(struct cp_parser *, struct cp_directive *, void *);
static int	 d_disabled(struct cp_parser *, struct cp_directive *, void *);
static int	 d_team(struct cp_parser *, struct cp_directive *, void *);
static int	 d_key_team(struct cp_parser *, struct cp_directive *, void *);
static int	 d_tags(struct cp_parser *, struct cp_directive *, void *);
static int	 d_user_budget(struct cp_parser *, struct cp_directive *,
		    void *);
static int	 parse_budget(struct cp_parser *, struct cp_directive *,
		    int64_t *, enum key_period *);
static int	 resolve_teams(struct cp_parser *, struct keys_state *);
static int	 build_index(struct cp_parser *, struct keys_state *);
static int	 check_names(struct cp_parser *, struct keyring *);

static int	 d_cache(struct cp_parser *, struct cp_directive *, void *);
static int	 d_cache_scope(struct cp_parser *, struct cp_directive *,
		    void *);

#define K_FN(n, lo, hi, fn) { n, lo, hi, 0, CP_FN, 0, 0, 0, 0, fn }

static const struct cp_dirspec file_dirs[] = {
	{ "key", 1, 1, CP_MULTI | CP_BLOCK, CP_FN, 0, 0, 0, 0, d_key },
	{ "team", 1, 1, CP_MULTI | CP_BLOCK, CP_FN, 0, 0, 0, 0, d_team },
};

#define K_I64(n, f, hi) { n, 1, 1, 0, CP_I64, offsetof(struct key_entry, f), \
			    0, 1, hi, NULL }

static const struct cp_dirspec key_dirs[] = {
	K_FN("hash", 1, 1, d_hash),
	K_FN("client_cert", 1, 2, d_client_cert),
	K_FN("models", 1, KEY_MAX_MODELS, d_models),
	K_I64("rpm", rpm, KEY_RPM_MAX),
	K_I64("tpm", tpm, KEY_TPM_MAX),
	K_FN("budget", 3, 3, d_budget),
	K_FN("expires", 1, 1, d_expires),
	K_FN("disabled", 0, 0, d_disabled),
	K_FN("team", 1, 1, d_key_team),
	K_FN("tags", 1, EV_TAGS_MAX, d_tags),
	K_FN("end_user_budget", 3, 3, d_user_budget),
	K_FN("cache", 1, 1, d_cache),
	K_FN("cache_scope", 1, 1, d_cache_scope),
};

/* what a team limits: the same directives, read the same way */
static const struct cp_dirspec team_dirs[] = {
	K_FN("models", 1, KEY_MAX_MODELS, d_models),
	K_I64("rpm", rpm, KEY_RPM_MAX),
	K_I64("tpm", tpm, KEY_TPM_MAX),
	K_FN("budget", 3, 3, d_budget),
	K_FN("cache", 1, 1, d_cache),
	K_FN("cache_scope", 1, 1, d_cache_scope),
};

_Static_assert(cp_nitems(key_dirs) <= 64, "seen mask is 64 bits");
_Static_assert(1 + KEY_MAX_MODELS <= CP_ARGS_MAX, "models fit a directive");

/* A name usable as is in logs and usage rows. */
int
keys_valid_name(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len >= KEY_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

static int
d_key(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct keys_state	*st = p->udata;
	struct keyring		*kr = st->kr;
	struct key_entry	*k;
	const char		*name = d->args[1].s;
	size_t			 ncap;
	int			*lines;

	(void)obj;
	if (!keys_valid_name(name))
		return cp_err(p, d->line, "invalid key name \"%s\" (1 to %d "
		    "of A-Z a-z 0-9 _ . -)", name, KEY_NAME_MAX - 1);
	if (kr->nkeys == KEYS_MAX)
		return cp_err(p, d->line, "too many keys (max %d)", KEYS_MAX);
	if ((size_t)kr->nkeys == st->cap) {
		ncap = st->cap == 0 ? 16 : st->cap * 2;
		k = reallocarray(kr->keys, ncap, sizeof(*k));
		if (k == NULL)
			return cp_err(p, d->line, "out of memory");
		kr->keys = k;
		lines = reallocarray(st->hash_line, ncap, sizeof(*lines));
		if (lines == NULL)
			return cp_err(p, d->line, "out of memory");
		st->hash_line = lines;
		lines = reallocarray(st->team_line, ncap, sizeof(*lines));
		if (lines == NULL)
			return cp_err(p, d->line, "out of memory");
		st->team_line = lines;
		st->cap = ncap;
	}
	k = &kr->keys[kr->nkeys];
	memset(k, 0, sizeof(*k));
	cp_set_str(k->name, sizeof(k->name), name);
	k->budget_period = PERIOD_NONE;
	k->slot = -1;
	k->team = -1;
	k->line = d->line;
	st->hash_line[kr->nkeys] = 0;
	st->team_line[kr->nkeys] = 0;
	kr->nkeys++;

	snprintf(p->ctx, sizeof(p->ctx), "key \"%s\": ", name);
	if (cp_parse_block(p, key_dirs, cp_nitems(key_dirs), k) == -1)
		return -1;
	if (st->hash_line[kr->nkeys - 1] == 0 && k->cert_kind == KEY_CERT_NONE)
		return cp_err(p, d->line, "missing \"hash\" (or "
		    "\"client_cert\")");
	p->ctx[0] = '\0';
	return 0;
}

/*
 * 64 hex digits (and, when COLONS, the ':' openssl x509 -fingerprint puts
 * between bytes) into OUT.  0; -1 for the wrong count, with the number
 * of digits in *POS; -2 for a non-digit, its 1-based position in *POS.
 */
static int
parse_hex32(const char *v, int colons, uint8_t out[32], size_t *pos)
{
	size_t	 i, n = 0;
	int	 d;

	for (i = 0; v[i] != '\0'; i++) {
		if (colons && v[i] == ':')
			continue;
		if ((d = hex_digit((unsigned char)v[i])) == -1) {
			*pos = i + 1;
			return -2;
		}
		if (n < 64)
			out[n / 2] = (uint8_t)(n % 2 ? out[n / 2] | d : d << 4);
		n++;
	}
	*pos = n;
	return n == 64 ? 0 : -1;
}

static int
d_team(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct keys_state	*st = p->udata;
	struct keyring		*kr = st->kr;
	struct key_entry	*t;
	const char		*name = d->args[1].s;
	int			 i;

	(void)obj;
	if (!keys_valid_name(name) || strlen(name) > TEAM_NAME_MAX - 1)
		return cp_err(p, d->line, "invalid team name \"%s\" (1 to %d "
		    "of A-Z a-z 0-9 _ . -)", name, TEAM_NAME_MAX - 1);
	for (i = 0; i < kr->nteams; i++)
		if (strcmp(kr->teams[i].name, name) == 0)
			return cp_err(p, d->line, "duplicate team \"%s\" "
			    "(first at line %d)", name, kr->teams[i].line);
	if (kr->nteams == KEYS_MAX)
		return cp_err(p, d->line, "too many teams (max %d)", KEYS_MAX);
	if ((size_t)kr->nteams == st->team_cap) {
		size_t ncap = st->team_cap == 0 ? 8 : st->team_cap * 2;

		t = reallocarray(kr->teams, ncap, sizeof(*t));
		if (t == NULL)
			return cp_err(p, d->line, "out of memory");
		kr->teams = t;
		st->team_cap = ncap;
	}
	t = &kr->teams[kr->nteams++];
	memset(t, 0, sizeof(*t));
	cp_set_str(t->name, sizeof(t->name), name);
	t->budget_period = PERIOD_NONE;
	t->slot = -1;
	t->team = -1;
	t->line = d->line;
	snprintf(p->ctx, sizeof(p->ctx), "team \"%s\": ", name);
	if (cp_parse_block(p, team_dirs, cp_nitems(team_dirs), t) == -1)
		return -1;
	p->ctx[0] = '\0';
	return 0;
}

static int
d_key_team(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct keys_state	*st = p->udata;
	struct key_entry	*k = obj;

	if (strlen(d->args[1].s) >= sizeof(k->team_name))
		return cp_err(p, d->line, "invalid team name");
	cp_set_str(k->team_name, sizeof(k->team_name), d->args[1].s);
	st->team_line[k - st->kr->keys] = d->line;
	return 0;
}

/* cache on|off: whether this key's (or team's) answers are cached */
static int
d_cache(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;
	const char		*v = d->args[1].s;

	if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
		return cp_err(p, d->line, "cache is on or off, not \"%s\"", v);
	k->cache = strcmp(v, "on") == 0 ? KEY_CACHE_ON : KEY_CACHE_OFF;
	return 0;
}

/* cache_scope key|team|global: whose answers a hit may come from */
static int
d_cache_scope(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;
	const char		*v = d->args[1].s;

	if (strcmp(v, "key") == 0)
		k->cache_scope = KEY_SCOPE_KEY;
	else if (strcmp(v, "team") == 0)
		k->cache_scope = KEY_SCOPE_TEAM;
	else if (strcmp(v, "global") == 0)
		k->cache_scope = KEY_SCOPE_GLOBAL;
	else
		return cp_err(p, d->line, "cache_scope is key, team or "
		    "global, not \"%s\"", v);
	return 0;
}

int
keys_tag_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > EV_TAG_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == ',')
			return 0;
	return 1;
}

static int
d_tags(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;
	size_t			 used = 0, len;
	int			 i;

	for (i = 1; i < d->nargs; i++) {
		len = strlen(d->args[i].s);
		if (!keys_tag_ok(d->args[i].s, len))
			return cp_err(p, d->line, "invalid tag \"%s\" (1 to %d "
			    "printable ASCII bytes, no comma)", d->args[i].s,
			    EV_TAG_MAX);
		if (used > 0)
			k->tags[used++] = ',';
		memcpy(k->tags + used, d->args[i].s, len);
		used += len;
	}
	k->tags[used] = '\0';
	return 0;
}

/* Teams may come after the keys that name them: resolved at the end. */
static int
resolve_teams(struct cp_parser *p, struct keys_state *st)
{
	struct keyring	*kr = st->kr;
	int		 i, j;

	for (i = 0; i < kr->nkeys; i++) {
		struct key_entry *k = &kr->keys[i];

		k->team = -1;
		if (k->team_name[0] == '\0')
			continue;
		for (j = 0; j < kr->nteams; j++)
			if (strcmp(kr->teams[j].name, k->team_name) == 0)
				k->team = j;
		if (k->team == -1)
			return cp_err(p, st->team_line[i], "key \"%s\": no "
			    "team \"%s\" in this file", k->name, k->team_name);
	}
	return 0;
}

const struct key_entry *
keys_team(const struct keyring *kr, const struct key_entry *k)
{
	if (kr == NULL || k == NULL || k->team < 0 || k->team >= kr->nteams)
		return NULL;
	return &kr->teams[k->team];
}

const struct key_entry *
keys_by_name(const struct keyring *kr, const char *name)
{
	int i;

	for (i = 0; kr != NULL && i < kr->nkeys; i++)
		if (strcmp(kr->keys[i].name, name) == 0)
			return &kr->keys[i];
	return NULL;
}

static int
d_hash(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct keys_state	*st = p->udata;
	struct key_entry	*k = obj;
	const char		*v = d->args[1].s;
	size_t			 pos;
	int			 rc;

	/* never echo the value: it may be a secret pasted by mistake */
	if (strncmp(v, "sha256:", 7) != 0)
		return cp_err(p, d->line, "invalid hash (expected \"sha256:\" "
		    "and 64 hex digits)");
	if ((rc = parse_hex32(v + 7, 0, k->hash, &pos)) == -1)
		return cp_err(p, d->line, "invalid hash: %zu hex digits, "
		    "expected 64", pos);
	if (rc == -2)
		return cp_err(p, d->line, "invalid hash: not a hex digit at "
		    "position %zu", pos);
	k->has_hash = 1;
	st->hash_line[k - st->kr->keys] = d->line;
	return 0;
}

/* client_cert sha256:<fingerprint>; or client_cert subject "DN"; */
static int
d_client_cert(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;
	const char		*v = d->args[1].s;
	size_t			 pos;
	int			 rc;

	if (d->nargs == 3 && strcmp(v, "subject") == 0) {
		v = d->args[2].s;
		if (*v == '\0' || strlen(v) >= sizeof(k->cert_subject))
			return cp_err(p, d->line, "invalid subject in "
			    "\"client_cert\" directive");
		cp_set_str(k->cert_subject, sizeof(k->cert_subject), v);
		k->cert_kind = KEY_CERT_SUBJECT;
		return 0;
	}
	if (d->nargs != 2 || strncasecmp(v, "sha256:", 7) != 0)
		return cp_err(p, d->line, "invalid \"client_cert\" directive "
		    "(expected sha256:<fingerprint> or subject \"DN\")");
	if ((rc = parse_hex32(v + 7, 1, k->cert_sha256, &pos)) == -1)
		return cp_err(p, d->line, "invalid client_cert fingerprint: "
		    "%zu hex digits, expected 64", pos);
	if (rc == -2)
		return cp_err(p, d->line, "invalid client_cert fingerprint: "
		    "not a hex digit at position %zu", pos + 7);
	k->cert_kind = KEY_CERT_SHA256;
	return 0;
}

static int
d_models(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;
	const char		*v;
	int			 i;

	for (i = 1; i < d->nargs; i++) {
		v = d->args[i].s;
		if (*v == '\0')
			return cp_err(p, d->line, "empty pattern in "
			    "\"models\" directive");
		if (strlen(v) >= KEY_PATTERN_MAX)
			return cp_err(p, d->line, "pattern too long in "
			    "\"models\" directive");
		cp_set_str(k->models[i - 1], KEY_PATTERN_MAX, v);
	}
	k->nmodels = d->nargs - 1;
	return 0;
}

/* budget USD per day|month, into *MICRO and *PERIOD */
static int
parse_budget(struct cp_parser *p, struct cp_directive *d, int64_t *micro,
    enum key_period *period)
{
	const char	*amount = d->args[1].s, *per = d->args[2].s;
	const char	*kind = d->args[3].s;

	if (cp_parse_usd_micro(amount, micro) == -1)
		return cp_err(p, d->line, "invalid budget \"%s\" (expected "
		    "USD, e.g. 25.00)", amount);
	if (*micro == 0)
		return cp_err(p, d->line, "budget must be more than 0 (use "
		    "\"disabled;\" to refuse every request)");
	if (strcmp(per, "per") != 0 ||
	    (strcmp(kind, "day") != 0 && strcmp(kind, "month") != 0))
		return cp_err(p, d->line, "invalid budget period \"%s %s\" "
		    "(expected \"per day\" or \"per month\")", per, kind);
	*period = kind[0] == 'd' ? PERIOD_DAY : PERIOD_MONTH;
	return 0;
}

static int
d_budget(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry *k = obj;

	return parse_budget(p, d, &k->budget_micro_usd, &k->budget_period);
}

static int
d_user_budget(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry *k = obj;

	return parse_budget(p, d, &k->user_budget_micro_usd,
	    &k->user_budget_period);
}

int
keys_parse_date(const char *s, int64_t *out)
{
	struct tm	 tm, chk;
	time_t		 t;
	int		 i, y, m, d;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -1;
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
	    (s[3] - '0');
	m = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	/* timegm normalises Feb 30 into March: refuse what moved */
	if (gmtime_r(&t, &chk) == NULL || chk.tm_year != y - 1900 ||
	    chk.tm_mon != m - 1 || chk.tm_mday != d)
		return -1;
	*out = (int64_t)t;
	return 0;
}

static int
d_expires(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;
	const char		*v = d->args[1].s;

	if (keys_parse_date(v, &k->expires) == -1)
		return cp_err(p, d->line, "invalid date \"%s\" in \"expires\" "
		    "directive (expected YYYY-MM-DD)", v);
	return 0;
}

static int
d_disabled(struct cp_parser *p, struct cp_directive *d, void *obj)
{
	struct key_entry	*k = obj;

	(void)p;
	(void)d;
	k->disabled = 1;
	return 0;
}

static uint32_t
hash_slot(const uint8_t hash[32])
{
	uint32_t	 h;

	memcpy(&h, hash, sizeof(h));
	return h;
}

/* Index sized to a power of two >= 2 * nkeys; duplicate hashes refused. */
static int
build_index(struct cp_parser *p, struct keys_state *st)
{
	struct keyring	*kr = st->kr;
	uint32_t	 size = 8, i;
	int		 n, j;

	while (size < 2 * (uint32_t)kr->nkeys)
		size <<= 1;
	if ((kr->index = malloc(size * sizeof(*kr->index))) == NULL)
		return cp_err(p, 0, "out of memory");
	kr->index_mask = size - 1;
	memset(kr->index, 0xff, size * sizeof(*kr->index));	/* -1 */
	for (n = 0; n < kr->nkeys; n++) {
		if (!kr->keys[n].has_hash)
			continue;	/* a certificate alone: keys_find_cert */
		i = hash_slot(kr->keys[n].hash) & kr->index_mask;
		while ((j = kr->index[i]) != -1) {
			if (memcmp(kr->keys[j].hash, kr->keys[n].hash, 32) == 0)
				return cp_err(p, st->hash_line[n], "key \"%s\": "
				    "same hash as key \"%s\" (line %d)",
				    kr->keys[n].name, kr->keys[j].name,
				    kr->keys[j].line);
			i = (i + 1) & kr->index_mask;
		}
		kr->index[i] = n;
	}
	return 0;
}

/* FNV-1a, for the duplicate-name check only. */
static uint32_t
name_hash(const char *s)
{
	uint32_t	 h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static int
check_names(struct cp_parser *p, struct keyring *kr)
{
	int32_t		*tab;
	uint32_t	 size = 8, mask, i;
	int		 n, j, rv = 0;

	while (size < 2 * (uint32_t)kr->nkeys)
		size <<= 1;
	if ((tab = malloc(size * sizeof(*tab))) == NULL)
		return cp_err(p, 0, "out of memory");
	memset(tab, 0xff, size * sizeof(*tab));
	mask = size - 1;
	for (n = 0; n < kr->nkeys && rv == 0; n++) {
		i = name_hash(kr->keys[n].name) & mask;
		while ((j = tab[i]) != -1) {
			if (strcmp(kr->keys[j].name, kr->keys[n].name) == 0) {
				rv = cp_err(p, kr->keys[n].line, "duplicate "
				    "key \"%s\" (first at line %d)",
				    kr->keys[n].name, kr->keys[j].line);
				break;
			}
			i = (i + 1) & mask;
		}
		tab[i] = n;
	}
	free(tab);
	return rv;
}

int
keys_load(const char *path, struct keyring **out, char *err, size_t errlen)
{
	struct cp_parser	 p;
	struct keys_state	 st;
	struct keyring		*kr;
	int			 rv = -1;

	cp_init(&p, path, err, errlen);
	if (path == NULL || out == NULL)
		return cp_err(&p, 0, "no keys file");
	if (strlen(path) >= sizeof(kr->path))
		return cp_err(&p, 0, "path too long");
	if ((kr = calloc(1, sizeof(*kr))) == NULL)
		return cp_err(&p, 0, "out of memory");
	cp_set_str(kr->path, sizeof(kr->path), path);
	memset(&st, 0, sizeof(st));
	st.kr = kr;
	p.udata = &st;
	p.args_max = 1 + KEY_MAX_MODELS;
	if (cp_open(&p) == -1)
		goto done;
	if (p.file_mode & S_IROTH) {
		/* key hashes are not secrets, but their owners' names and
		 * limits are nobody else's business: refuse, as sshd does */
		cp_err(&p, 0, "readable by every user (mode %04o); chmod o-r "
		    "it", p.file_mode & 07777);
		goto done;
	}
	if (cp_parse_file(&p, file_dirs, cp_nitems(file_dirs), kr) == -1 ||
	    check_names(&p, kr) == -1 || resolve_teams(&p, &st) == -1 ||
	    build_index(&p, &st) == -1 || index_cert_only(&p, kr) == -1)
		goto done;
	*out = kr;
	kr = NULL;
	rv = 0;
 done:
	cp_close(&p);
	free(st.hash_line);
	free(st.team_line);
	keys_free(kr);
	return rv;
}

void
keys_free(struct keyring *kr)
{
	if (kr == NULL)
		return;
	if (kr->keys != NULL) {
		explicit_bzero(kr->keys, (size_t)kr->nkeys * sizeof(*kr->keys));
		free(kr->keys);
	}
	free(kr->teams);
	free(kr->index);
	free(kr->cert_only);
	free(kr);
}

const struct key_entry *
keys_find(const struct keyring *kr, const uint8_t hash[32])
{
	uint32_t	 i;
	int32_t		 j;

	if (kr == NULL || kr->index == NULL)
		return NULL;
	i = hash_slot(hash) & kr->index_mask;
	while ((j = kr->index[i]) != -1) {
		if (memcmp(kr->keys[j].hash, hash, 32) == 0)
			return &kr->keys[j];
		i = (i + 1) & kr->index_mask;
	}
	return NULL;
}

int
keys_cert_match(const struct key_entry *k, const struct key_cert_id *id)
{
	if (id == NULL)
		return 0;
	switch (k->cert_kind) {
	case KEY_CERT_SHA256:
		return memcmp(k->cert_sha256, id->sha256, 32) == 0;
	case KEY_CERT_SUBJECT:
		return strcmp(k->cert_subject, id->subject) == 0;
	default:
		return 0;
	}
}

/*
 * The keys a certificate alone authenticates, apart: there are few, and
 * they are looked at only for a request without a secret that names a
 * key.  Two of them naming one certificate could not be told apart.
 */
static int
index_cert_only(struct cp_parser *p, struct keyring *kr)
{
	const struct key_entry	*a, *b;
	int			 n, j;

	for (n = 0; n < kr->nkeys; n++)
		if (!kr->keys[n].has_hash)
			kr->ncert_only++;
	if (kr->ncert_only == 0)
		return 0;
	kr->cert_only = calloc((size_t)kr->ncert_only, sizeof(*kr->cert_only));
	if (kr->cert_only == NULL)
		return cp_err(p, 0, "out of memory");
	kr->ncert_only = 0;
	for (n = 0; n < kr->nkeys; n++) {
		if (kr->keys[n].has_hash)
			continue;
		a = &kr->keys[n];
		for (j = 0; j < kr->ncert_only; j++) {
			b = &kr->keys[kr->cert_only[j]];
			if (a->cert_kind == b->cert_kind &&
			    (a->cert_kind == KEY_CERT_SHA256 ?
			    memcmp(a->cert_sha256, b->cert_sha256, 32) == 0 :
			    strcmp(a->cert_subject, b->cert_subject) == 0))
				return cp_err(p, a->line, "key \"%s\": same "
				    "client_cert as key \"%s\" (line %d)",
				    a->name, b->name, b->line);
		}
		kr->cert_only[kr->ncert_only++] = n;
	}
	return 0;
}

const struct key_entry *
keys_find_cert(const struct keyring *kr, const struct key_cert_id *id)
{
	int i;

	if (kr == NULL || id == NULL)
		return NULL;
	for (i = 0; i < kr->ncert_only; i++)
		if (keys_cert_match(&kr->keys[kr->cert_only[i]], id))
			return &kr->keys[kr->cert_only[i]];
	return NULL;
}

static void
sha256(const char *secret, size_t len, uint8_t out[32])
{
	/*
	 * OpenSSL 3's one-shot SHA256() looks the algorithm up in its
	 * provider tables on every call: 8,000 instructions a request,
	 * most of an authenticated request's cost.  Fetch it once per
	 * process and reuse one context (processes have no threads).
	 */
	static EVP_MD		*md;
	static EVP_MD_CTX	*ctx;
	unsigned int		 n = 32;

	if (md == NULL && (md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		goto oneshot;
	if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
		goto oneshot;
	if (EVP_DigestInit_ex2(ctx, md, NULL) == 1 &&
	    EVP_DigestUpdate(ctx, secret, len) == 1 &&
	    EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32)
		return;
 oneshot:
	SHA256((const unsigned char *)secret, len, out);
}

/*
 * The digests of the secrets hashed last, by a slot of their bytes: a
 * keep-alive client presents the same secret on every request, and its
 * SHA-256 was still 3,000 instructions, a tenth of a small request's.
 * The memo keeps those secrets in this process's memory, where the
 * request heads that brought them are anyway (never on disk, never in a
 * log), and compares them in constant time, so a hit tells no more than
 * the answer does: that this exact secret was presented before.
 */
#define MEMO_SLOTS	64
#define MEMO_SECRET_MAX	128	/* longer secrets are hashed every time */

static struct {
	size_t		 len;		/* 0: empty */
	char		 secret[MEMO_SECRET_MAX];
	uint8_t		 hash[32];
} memo[MEMO_SLOTS];

void
keys_hash_secret(const char *secret, size_t len, uint8_t out[32])
{
	uint32_t	 h = 2166136261u;	/* FNV-1a: the slot only */
	size_t		 i;

	if (len == 0 || len > MEMO_SECRET_MAX) {
		sha256(secret, len, out);
		return;
	}
	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)secret[i]) * 16777619u;
	h &= MEMO_SLOTS - 1;
	if (memo[h].len == len &&
	    CRYPTO_memcmp(memo[h].secret, secret, len) == 0) {
		memcpy(out, memo[h].hash, 32);
		return;
	}
	sha256(secret, len, out);
	memo[h].len = len;
	memcpy(memo[h].secret, secret, len);
	memcpy(memo[h].hash, out, 32);
}

int
keys_model_allowed(const struct key_entry *k, const char *model, size_t len)
{
	int	 i;

	if (k->nmodels == 0)
		return 1;
	for (i = 0; i < k->nmodels; i++)
		if (glob_match(k->models[i], model, len))
			return 1;
	return 0;
}
