/*
 * keys.h - keys.conf: the API keys sluice hands out, read by the master at
 * start and on SIGHUP (with the config), inherited read-only by children.
 *
 * A key is stored as the SHA-256 of its secret; the secret itself is never
 * stored, logged, or put in an event.  Workers look a presented secret up
 * by its hash (keys_find).  Limits that must hold across workers live in
 * shared memory (shm/keystate.h), at the slot the master gives each key.
 */
#ifndef SLUICE_KEYS_H
#define SLUICE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/event.h"

#define KEY_NAME_MAX	64
#define TEAM_NAME_MAX	63	/* with its "@" it is a key state name */
#define KEY_MAX_MODELS	32
#define KEY_PATTERN_MAX	128
#define KEY_SECRET_PREFIX "sk-sluice-"
#define KEY_RPM_MAX	1000000000LL		/* rpm 1..KEY_RPM_MAX */
#define KEY_TPM_MAX	1000000000000LL		/* tpm 1..KEY_TPM_MAX */
#define KEY_SUBJECT_MAX	256

/*
 * A verified client certificate, as the TLS layer (worker/tls.c) saw it
 * at the handshake: what a key's client_cert is compared with.
 */
struct key_cert_id {
	uint8_t		 sha256[32];		/* of the certificate, DER */
	char		 subject[KEY_SUBJECT_MAX];	/* RFC 2253 */
};

enum key_cert_kind {
	KEY_CERT_NONE = 0,
	KEY_CERT_SHA256,	/* client_cert sha256:<fingerprint>; */
	KEY_CERT_SUBJECT,	/* client_cert subject "CN=..,O=.."; */
};

enum key_period {
	PERIOD_NONE = 0,
	PERIOD_DAY,		/* UTC day */
	PERIOD_MONTH,		/* UTC calendar month */
};

/* cache, cache_scope: 0 = not said (a key takes its team's, then the
 * default: on, scope key) */
enum key_cache {
	KEY_CACHE_UNSET = 0,
	KEY_CACHE_ON,
	KEY_CACHE_OFF,
};

enum key_cache_scope {
	KEY_SCOPE_UNSET = 0,
	KEY_SCOPE_KEY,		/* the key's own answers only */
	KEY_SCOPE_TEAM,		/* its team's keys of scope team */
	KEY_SCOPE_GLOBAL,	/* every key of scope global */
};

struct key_entry {
	char		 name[KEY_NAME_MAX];
	uint8_t		 hash[32];		/* SHA-256 of the secret */
	int		 has_hash;		/* 0: a certificate alone */
	enum key_cert_kind cert_kind;		/* client_cert, or none */
	uint8_t		 cert_sha256[32];
	char		 cert_subject[KEY_SUBJECT_MAX];
	char		 models[KEY_MAX_MODELS][KEY_PATTERN_MAX]; /* globs */
	int		 nmodels;		/* 0 = every routed model */
	int64_t		 rpm;			/* 0 = no limit */
	int64_t		 tpm;			/* 0 = no limit */
	int64_t		 budget_micro_usd;	/* 0 = no budget */
	enum key_period	 budget_period;
	int64_t		 user_budget_micro_usd;	/* each end user's; 0 = none */
	enum key_period	 user_budget_period;
	int64_t		 expires;		/* unix time, 0 = never */
	int		 disabled;
	int		 slot;			/* shm key state; -1 = none yet */
	int		 line;
	char		 team_name[KEY_NAME_MAX];	/* "" = no team */
	char		 tags[EV_TAGS_BYTES];	/* on every row: "a,b", "" = none */
	int		 team;			/* index in teams[], -1 = none */
	enum key_cache	 cache;			/* cache on|off */
	enum key_cache_scope cache_scope;
};

/*
 * A team is a key_entry without a hash: its models, rpm, tpm and budget
 * bind every key of the team on top of the key's own, shared by them.
 */
struct keyring {
	char		 path[4096];
	struct key_entry *keys;
	int		 nkeys;
	struct key_entry *teams;
	int		 nteams;
	int32_t		*index;		/* open addressing on the hash */
	uint32_t	 index_mask;
	int32_t		*cert_only;	/* keys with client_cert, no hash */
	int		 ncert_only;
};

/*
 * Parse keys.conf at PATH.  0 and *out on success; -1 with "PATH:LINE:
 * message" in err.  Grammar (same lexer as sluice.conf):
 *   key NAME {
 *       hash     sha256:<64 hex>;      a bearer secret's hash, and/or
 *       client_cert sha256:<64 hex>;   a client certificate's SHA-256
 *       client_cert subject "DN";      or its subject (RFC 2253)
 *       models   GLOB...;              optional, default every model
 *       rpm      N;  tpm N;            optional
 *       budget   USD per day|month;    optional, e.g. "25.00 per day"
 *       expires  YYYY-MM-DD;           optional, expires at 00:00 UTC
 *       disabled;                      optional
 *       team     NAME;                 optional, a team of this file
 *       tags     TAG...;               optional, on every row of the key
 *       end_user_budget USD per day|month;  optional, each end user's
 *       cache    on|off;               optional, the answer cache
 *       cache_scope key|team|global;   optional, whose answers it sees
 *   }
 *   team NAME {
 *       models GLOB...; rpm N; tpm N; budget USD per day|month;
 *       cache on|off; cache_scope key|team|global;
 *   }
 * A key needs hash or client_cert; with both, a caller must present the
 * secret on a connection made with that certificate.  Duplicate names,
 * duplicate hashes and two certificate-only keys naming one certificate
 * are errors.
 */
int	 keys_load(const char *path, struct keyring **out, char *err,
	    size_t errlen);
void	 keys_free(struct keyring *);
/* The key whose secret hashes to HASH, or NULL. */
const struct key_entry *keys_find(const struct keyring *,
	    const uint8_t hash[32]);
/* The key a certificate alone authenticates (client_cert, no hash). */
const struct key_entry *keys_find_cert(const struct keyring *,
	    const struct key_cert_id *);
/* 1 if ID is the certificate K's client_cert names (0 if it names none). */
int	 keys_cert_match(const struct key_entry *, const struct key_cert_id *);
/* SHA-256 of a secret, for keys_find and `sluicectl key hash`. */
void	 keys_hash_secret(const char *secret, size_t len, uint8_t out[32]);
/* 1 if the key may use MODEL (LEN bytes). */
int	 keys_model_allowed(const struct key_entry *, const char *model,
	    size_t len);
/* 1 if NAME is a valid key name: [A-Za-z0-9_.-]{1,63}. */
int	 keys_valid_name(const char *name);
/* A tag: 1 to EV_TAG_MAX printable ASCII bytes, no space, no comma. */
int	 keys_tag_ok(const char *s, size_t len);
/* The team of key K, or NULL. */
const struct key_entry *keys_team(const struct keyring *,
	    const struct key_entry *k);
/* The key named NAME, or NULL (a linear search: not for the request path). */
const struct key_entry *keys_by_name(const struct keyring *, const char *name);
/* "YYYY-MM-DD" (a real date, 1970 on) -> unix time of 00:00 UTC; 0/-1. */
int	 keys_parse_date(const char *s, int64_t *out);

#endif
