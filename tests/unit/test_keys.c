/*
 * test_keys.c - keys.conf parsing and key lookup, as the operator and the
 * workers see them.
 *
 * Every keys file is written to a real file and loaded through keys_load()
 * (or cfg_load() for keys_file), so the tests see what sluiced -t sees:
 * the parsed keys, or the exact "PATH:LINE: message" with the line to fix.
 */
#include <sys/stat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "common/config.h"
#include "common/keys.h"

/* sha256("abc"), FIPS 180-2 appendix B.1 */
#define ABC_HEX	"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define H1	"sha256:" ABC_HEX
#define H2	"sha256:" \
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void
write_file(char *path, const char *text)
{
	size_t	 len = strlen(text);
	int	 fd;

	strcpy(path, "/tmp/sluice-keys-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static struct keyring *
load_ok(const char *text)
{
	char		 path[64], err[1024];
	struct keyring	*kr = NULL;
	int		 rv;

	write_file(path, text);
	rv = keys_load(path, &kr, err, sizeof(err));
	unlink(path);
	if (rv != 0)
		fail_msg("keys_load failed: %s", err);
	assert_non_null(kr);
	return kr;
}

/* Load TEXT, expect "PATH:LINE: MSG" ("PATH: MSG" if LINE 0). */
static void
expect_err(const char *text, int line, const char *msg)
{
	char		 path[64], err[1024], want[1200];
	struct keyring	*kr = NULL;
	int		 rv;

	write_file(path, text);
	rv = keys_load(path, &kr, err, sizeof(err));
	unlink(path);
	assert_int_equal(rv, -1);
	assert_null(kr);
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", path, msg);
	assert_string_equal(err, want);
}

static void
from_hex(const char *hex, uint8_t out[32])
{
	unsigned int	 b;
	int		 i;

	for (i = 0; i < 32; i++) {
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
		out[i] = (uint8_t)b;
	}
}

static void
test_full_file(void **state)
{
	struct keyring		*kr;
	const struct key_entry	*k;
	uint8_t			 h[32];

	(void)state;
	kr = load_ok(
	    "# keys.conf\n"
	    "key alice {\n"
	    "    hash     " H1 ";   # secrets are never stored\n"
	    "    models   gpt-4o-mini \"claude-*\";\n"
	    "    rpm      600;\n"				/* 5 */
	    "    tpm      200000;\n"
	    "    budget   25.00 per day;\n"
	    "    expires  2027-01-01;\n"
	    "}\n"
	    "\n"						/* 10 */
	    "key bob.svc-2 {\n"
	    "    hash sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934"
	    "CA495991B7852B855;\n"
	    "    budget 300 per month;\n"
	    "    disabled;\n"
	    "}\n");
	assert_int_equal(kr->nkeys, 2);

	k = &kr->keys[0];
	assert_string_equal(k->name, "alice");
	from_hex(ABC_HEX, h);
	assert_memory_equal(k->hash, h, 32);
	assert_int_equal(k->nmodels, 2);
	assert_string_equal(k->models[0], "gpt-4o-mini");
	assert_string_equal(k->models[1], "claude-*");
	assert_int_equal(k->rpm, 600);
	assert_int_equal(k->tpm, 200000);
	assert_int_equal(k->budget_micro_usd, 25000000);
	assert_int_equal(k->budget_period, PERIOD_DAY);
	assert_int_equal(k->expires, 1798761600);	/* 2027-01-01Z */
	assert_int_equal(k->disabled, 0);
	assert_int_equal(k->slot, -1);
	assert_int_equal(k->line, 2);

	k = &kr->keys[1];
	assert_string_equal(k->name, "bob.svc-2");
	assert_int_equal(k->nmodels, 0);
	assert_int_equal(k->rpm, 0);
	assert_int_equal(k->tpm, 0);
	assert_int_equal(k->budget_micro_usd, 300000000);
	assert_int_equal(k->budget_period, PERIOD_MONTH);
	assert_int_equal(k->expires, 0);
	assert_int_equal(k->disabled, 1);
	assert_int_equal(k->slot, -1);
	assert_int_equal(k->line, 11);

	assert_ptr_equal(keys_find(kr, h), &kr->keys[0]);
	keys_free(kr);
}

static void
test_empty_file(void **state)
{
	struct keyring	*kr;
	uint8_t		 h[32];

	(void)state;
	kr = load_ok("# no keys yet\n");
	assert_int_equal(kr->nkeys, 0);
	memset(h, 0, sizeof(h));
	assert_null(keys_find(kr, h));
	keys_free(kr);
	keys_free(NULL);
}

static void
test_dates(void **state)
{
	int64_t	 t;

	(void)state;
	assert_int_equal(keys_parse_date("1970-01-01", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(keys_parse_date("2024-02-29", &t), 0);
	assert_int_equal(t, 1709164800);
	assert_int_equal(keys_parse_date("2027-01-01", &t), 0);
	assert_int_equal(t, 1798761600);
	assert_int_equal(keys_parse_date("2023-02-29", &t), -1);
	assert_int_equal(keys_parse_date("2027-04-31", &t), -1);
	assert_int_equal(keys_parse_date("2027-13-01", &t), -1);
	assert_int_equal(keys_parse_date("2027-00-10", &t), -1);
	assert_int_equal(keys_parse_date("2027-1-01", &t), -1);
	assert_int_equal(keys_parse_date("1969-12-31", &t), -1);
	assert_int_equal(keys_parse_date("2027-01-01x", &t), -1);
	assert_int_equal(keys_parse_date("", &t), -1);
}

static void
test_errors(void **state)
{
	(void)state;
	expect_err("keys alice {\n}\n", 1, "unknown directive \"keys\"");
	expect_err("key alice {\n    hash " H1 ";\n    colour red;\n}\n", 3,
	    "key \"alice\": unknown directive \"colour\"");
	expect_err("key alice;\n", 1,
	    "\"key\" directive has no opening '{'");
	expect_err("key alice {\n    hash " H1 ";\n", 2,
	    "unexpected end of file, expecting '}'");
	expect_err("key alice {\n    hash " H1 "\n    rpm 5;\n}\n", 2,
	    "key \"alice\": missing ';'");
	expect_err("key {\n}\n", 1,
	    "invalid number of arguments in \"key\" directive");
	expect_err("key \"a b\" {\n}\n", 1, "invalid key name \"a b\" "
	    "(1 to 63 of A-Z a-z 0-9 _ . -)");

	/* hash: the value is never echoed, it may be a pasted secret */
	expect_err("key alice {\n    hash sk-sluice-abc;\n}\n", 2,
	    "key \"alice\": invalid hash (expected \"sha256:\" and 64 hex "
	    "digits)");
	expect_err("key alice {\n    hash sha256:abcd;\n}\n", 2,
	    "key \"alice\": invalid hash: 4 hex digits, expected 64");
	expect_err("key alice {\n    hash " H1 "0;\n}\n", 2,
	    "key \"alice\": invalid hash: 65 hex digits, expected 64");
	expect_err("key alice {\n    hash sha256:"
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag;"
	    "\n}\n", 2,
	    "key \"alice\": invalid hash: not a hex digit at position 64");
	expect_err("key alice {\n    rpm 5;\n}\n", 1,
	    "key \"alice\": missing \"hash\" (or \"client_cert\")");
	expect_err("key alice {\n    hash " H1 ";\n    hash " H2 ";\n}\n", 3,
	    "key \"alice\": \"hash\" directive is duplicate");

	/* duplicates across keys */
	expect_err("key alice {\n    hash " H1 ";\n}\n"
	    "key bob {\n    hash " H2 ";\n}\n"
	    "key alice {\n    hash sha256:" ABC_HEX ";\n}\n", 7,
	    "duplicate key \"alice\" (first at line 1)");
	expect_err("key alice {\n    hash " H1 ";\n}\n"
	    "key bob {\n    rpm 1;\n    hash sha256:BA7816BF8F01CFEA414140DE5"
	    "DAE2223B00361A396177A9CB410FF61F20015AD;\n}\n", 6,
	    "key \"bob\": same hash as key \"alice\" (line 1)");

	/* values */
	expect_err("key a {\n    hash " H1 ";\n    budget 25.00 per week;\n}\n",
	    3, "key \"a\": invalid budget period \"per week\" (expected "
	    "\"per day\" or \"per month\")");
	expect_err("key a {\n    hash " H1 ";\n    budget 25.00 a day;\n}\n",
	    3, "key \"a\": invalid budget period \"a day\" (expected "
	    "\"per day\" or \"per month\")");
	expect_err("key a {\n    hash " H1 ";\n    budget $25 per day;\n}\n",
	    3, "key \"a\": invalid budget \"$25\" (expected USD, e.g. 25.00)");
	expect_err("key a {\n    hash " H1 ";\n    budget 1.0000001 per day;"
	    "\n}\n", 3, "key \"a\": invalid budget \"1.0000001\" (expected "
	    "USD, e.g. 25.00)");
	expect_err("key a {\n    hash " H1 ";\n    budget 0 per day;\n}\n",
	    3, "key \"a\": budget must be more than 0 (use \"disabled;\" to "
	    "refuse every request)");
	expect_err("key a {\n    hash " H1 ";\n    budget 25;\n}\n", 3,
	    "key \"a\": invalid number of arguments in \"budget\" directive");
	expect_err("key a {\n    hash " H1 ";\n    expires 2027-02-30;\n}\n",
	    3, "key \"a\": invalid date \"2027-02-30\" in \"expires\" "
	    "directive (expected YYYY-MM-DD)");
	expect_err("key a {\n    hash " H1 ";\n    expires 01/01/2027;\n}\n",
	    3, "key \"a\": invalid date \"01/01/2027\" in \"expires\" "
	    "directive (expected YYYY-MM-DD)");
	expect_err("key a {\n    hash " H1 ";\n    rpm ten;\n}\n", 3,
	    "key \"a\": invalid value \"ten\" in \"rpm\" directive");
	expect_err("key a {\n    hash " H1 ";\n    rpm -5;\n}\n", 3,
	    "key \"a\": invalid value \"-5\" in \"rpm\" directive");
	expect_err("key a {\n    hash " H1 ";\n    rpm 0;\n}\n", 3,
	    "key \"a\": value \"0\" out of range in \"rpm\" directive");
	expect_err("key a {\n    hash " H1 ";\n    tpm 99999999999999;\n}\n",
	    3, "key \"a\": value \"99999999999999\" out of range in \"tpm\" "
	    "directive");
	expect_err("key a {\n    hash " H1 ";\n    disabled yes;\n}\n", 3,
	    "key \"a\": invalid number of arguments in \"disabled\" "
	    "directive");
	expect_err("key a {\n    hash " H1 ";\n    models;\n}\n", 3,
	    "key \"a\": invalid number of arguments in \"models\" directive");
	expect_err("key a {\n    hash " H1 ";\n    models \"\";\n}\n", 3,
	    "key \"a\": empty pattern in \"models\" directive");
}

static void
test_missing_file(void **state)
{
	char		 err[1024];
	struct keyring	*kr = NULL;

	(void)state;
	assert_int_equal(keys_load("/nonexistent/keys.conf", &kr, err,
	    sizeof(err)), -1);
	assert_null(kr);
	assert_string_equal(err,
	    "/nonexistent/keys.conf: No such file or directory");
}

static void
test_many_keys(void **state)
{
	enum { NKEYS = 5000 };
	struct keyring		*kr;
	const struct key_entry	*k;
	char			*text, secret[64];
	uint8_t			 h[32];
	size_t			 cap = (size_t)NKEYS * 128, off = 0;
	int			 i, j;

	(void)state;
	assert_non_null(text = malloc(cap));
	for (i = 0; i < NKEYS; i++) {
		snprintf(secret, sizeof(secret), "sk-sluice-test-%d", i);
		keys_hash_secret(secret, strlen(secret), h);
		off += (size_t)snprintf(text + off, cap - off,
		    "key k%d { hash sha256:", i);
		for (j = 0; j < 32; j++)
			off += (size_t)snprintf(text + off, cap - off, "%02x",
			    h[j]);
		off += (size_t)snprintf(text + off, cap - off, "; }\n");
	}
	kr = load_ok(text);
	free(text);
	assert_int_equal(kr->nkeys, NKEYS);
	/* a power of two, at most half full */
	assert_int_equal(kr->index_mask & (kr->index_mask + 1), 0);
	assert_true(kr->index_mask + 1 >= 2 * NKEYS);
	for (i = 0; i < NKEYS; i++) {
		snprintf(secret, sizeof(secret), "sk-sluice-test-%d", i);
		keys_hash_secret(secret, strlen(secret), h);
		k = keys_find(kr, h);
		assert_non_null(k);
		assert_int_equal(k - kr->keys, i);
		assert_memory_equal(k->hash, h, 32);
	}
	keys_hash_secret("sk-sluice-test-5000", 19, h);
	assert_null(keys_find(kr, h));
	memset(h, 0, sizeof(h));
	assert_null(keys_find(kr, h));
	assert_null(keys_find(NULL, h));
	keys_free(kr);
}

static void
test_model_allowed(void **state)
{
	struct keyring		*kr;
	const struct key_entry	*k;

	(void)state;
	kr = load_ok("key a {\n    hash " H1 ";\n"
	    "    models gpt-4o-mini claude-* o?;\n}\n"
	    "key b {\n    hash " H2 ";\n}\n");
	k = &kr->keys[0];
	assert_true(keys_model_allowed(k, "gpt-4o-mini", 11));
	assert_false(keys_model_allowed(k, "gpt-4o", 6));
	assert_false(keys_model_allowed(k, "gpt-4o-mini-2024", 16));
	/* LEN bytes, not up to the NUL */
	assert_true(keys_model_allowed(k, "gpt-4o-mini-2024", 11));
	assert_true(keys_model_allowed(k, "claude-3-5-sonnet", 17));
	assert_true(keys_model_allowed(k, "o1", 2));
	assert_false(keys_model_allowed(k, "o1-mini", 7));
	assert_false(keys_model_allowed(k, "", 0));
	k = &kr->keys[1];	/* no models: every model */
	assert_true(keys_model_allowed(k, "anything", 8));
	assert_true(keys_model_allowed(k, "", 0));
	keys_free(kr);
}

static void
test_hash_secret(void **state)
{
	uint8_t	 h[32], want[32];

	(void)state;
	keys_hash_secret("abc", 3, h);
	from_hex(ABC_HEX, want);
	assert_memory_equal(h, want, 32);
	keys_hash_secret("", 0, h);
	from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852"
	    "b855", want);
	assert_memory_equal(h, want, 32);
	/* FIPS 180-2 B.2, 56 bytes */
	keys_hash_secret("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	    56, h);
	from_hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db"
	    "06c1", want);
	assert_memory_equal(h, want, 32);
}

/*
 * keys_hash_secret remembers the digests it made: over 300 secrets of
 * one length, many sharing a slot, each hashed three times, every call
 * still returns that secret's own SHA-256; so do secrets longer than
 * the memo keeps, and one that differs from a remembered one in its last
 * byte only.
 */
static void
test_hash_secret_memo(void **state)
{
	char	 s[200];
	uint8_t	 h[32], want[32];
	int	 round, i;

	(void)state;
	for (round = 0; round < 3; round++)
		for (i = 0; i < 300; i++) {
			snprintf(s, sizeof(s), "sk-sluice-memo-%05d", i);
			keys_hash_secret(s, strlen(s), h);
			SHA256((const unsigned char *)s, strlen(s), want);
			assert_memory_equal(h, want, 32);
		}
	memset(s, 'k', sizeof(s));
	for (i = 0; i < 2; i++) {
		keys_hash_secret(s, sizeof(s), h);
		SHA256((const unsigned char *)s, sizeof(s), want);
		assert_memory_equal(h, want, 32);
	}
	keys_hash_secret(s, 40, h);
	s[39] = 'j';
	keys_hash_secret(s, 40, h);
	SHA256((const unsigned char *)s, 40, want);
	assert_memory_equal(h, want, 32);
}

static void
test_names(void **state)
{
	char	 name[80];

	(void)state;
	assert_true(keys_valid_name("alice"));
	assert_true(keys_valid_name("team_a.prod-2"));
	assert_false(keys_valid_name(""));
	assert_false(keys_valid_name("a b"));
	assert_false(keys_valid_name("é"));
	assert_false(keys_valid_name("a;b"));
	memset(name, 'x', 63);
	name[63] = '\0';
	assert_true(keys_valid_name(name));
	name[63] = 'x';
	name[64] = '\0';
	assert_false(keys_valid_name(name));
}

/* cfg_load loads keys_file, relative to the config's directory. */
static void
test_config_keys_file(void **state)
{
	char		 dir[64], conf[128], keys[128], err[1024], want[1200];
	struct config	*cfg = NULL;
	FILE		*f;

	(void)state;
	strcpy(dir, "/tmp/sluice-keysdir-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/sluice.conf", dir);
	snprintf(keys, sizeof(keys), "%s/keys.conf", dir);
	assert_non_null(f = fopen(conf, "w"));
	fprintf(f, "listen 127.0.0.1:18080;\n"
	    "upstream u { url http://127.0.0.1:1; }\n"
	    "route * u;\n"
	    "price * input 0 output 0;\n"
	    "keys_file keys.conf;\n");
	fclose(f);

	assert_non_null(f = fopen(keys, "w"));
	assert_int_equal(fchmod(fileno(f), 0600), 0);
	fprintf(f, "key alice {\n    hash " H1 ";\n}\n");
	fclose(f);
	if (cfg_load(conf, &cfg, err, sizeof(err)) != 0)
		fail_msg("cfg_load failed: %s", err);
	assert_string_equal(cfg->keys_file, "keys.conf");
	assert_non_null(cfg->keys);
	assert_int_equal(cfg->keys->nkeys, 1);
	assert_string_equal(cfg->keys->path, keys);
	cfg_free(cfg);
	cfg = NULL;

	/* an error in the keys file names the keys file and its line */
	assert_non_null(f = fopen(keys, "w"));
	assert_int_equal(fchmod(fileno(f), 0600), 0);
	fprintf(f, "key alice {\n    hash " H1 ";\n    rpm lots;\n}\n");
	fclose(f);
	assert_int_equal(cfg_load(conf, &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s:3: key \"alice\": invalid value "
	    "\"lots\" in \"rpm\" directive", keys);
	assert_string_equal(err, want);

	/* and a missing one fails the config too */
	unlink(keys);
	assert_int_equal(cfg_load(conf, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: No such file or directory", keys);
	assert_string_equal(err, want);

	/* without keys_file, no keyring */
	assert_non_null(f = fopen(conf, "w"));
	fprintf(f, "upstream u { url http://127.0.0.1:1; }\nroute * u;\n"
	    "price * input 0 output 0;\n");
	fclose(f);
	if (cfg_load(conf, &cfg, err, sizeof(err)) != 0)
		fail_msg("cfg_load failed: %s", err);
	assert_null(cfg->keys);
	cfg_free(cfg);
	unlink(conf);
	rmdir(dir);
}

/* Teams: their limits, keys naming them before or after, and the errors. */
static void
test_teams(void **state)
{
	struct keyring		*kr;
	const struct key_entry	*a, *b, *t;

	(void)state;
	kr = load_ok(
	    "key a { hash " H1 "; team eng; tags web prod;\n"
	    "\tend_user_budget 0.25 per day; }\n"
	    "team eng {\n"
	    "\tmodels gpt-*;\n"
	    "\trpm 100; tpm 5000;\n"
	    "\tbudget 10.50 per month;\n"
	    "}\n"
	    "key b { hash " H2 "; }\n");
	assert_int_equal(kr->nkeys, 2);
	assert_int_equal(kr->nteams, 1);
	a = keys_by_name(kr, "a");
	b = keys_by_name(kr, "b");
	assert_non_null(a);
	assert_non_null(b);
	assert_null(keys_by_name(kr, "eng"));
	t = keys_team(kr, a);
	assert_non_null(t);
	assert_string_equal(t->name, "eng");
	assert_int_equal(t->rpm, 100);
	assert_int_equal(t->tpm, 5000);
	assert_int_equal(t->budget_micro_usd, 10500000);
	assert_int_equal(t->budget_period, PERIOD_MONTH);
	assert_true(keys_model_allowed(t, "gpt-4o", 6));
	assert_false(keys_model_allowed(t, "claude-x", 8));
	assert_string_equal(a->tags, "web,prod");
	assert_int_equal(a->user_budget_micro_usd, 250000);
	assert_int_equal(a->user_budget_period, PERIOD_DAY);
	assert_int_equal(a->budget_micro_usd, 0);
	assert_null(keys_team(kr, b));
	assert_string_equal(b->tags, "");
	keys_free(kr);

	expect_err("key a { hash " H1 "; team ops; }\n", 1,
	    "key \"a\": no team \"ops\" in this file");
	expect_err("team x { }\nteam x { }\n", 2,
	    "duplicate team \"x\" (first at line 1)");
	expect_err("team x { hash " H1 "; }\n", 1,
	    "team \"x\": unknown directive \"hash\"");
	expect_err("team " "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    " { }\n", 1, "invalid team name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" (1 to 62 of A-Z a-z 0-9 _ . -)");
	expect_err("key a { hash " H1 "; tags ok no,comma; }\n", 1,
	    "key \"a\": invalid tag \"no,comma\" (1 to 64 printable ASCII "
	    "bytes, no comma)");
	assert_true(keys_tag_ok("a-b_c.d:e/f", 11));
	assert_false(keys_tag_ok("", 0));
	assert_false(keys_tag_ok("a b", 3));
	assert_false(keys_tag_ok("a\x7f", 2));
}

/* client_cert: a certificate alone, or a certificate and a secret. */
static void
test_client_cert(void **state)
{
	struct keyring		*kr;
	const struct key_entry	*k;
	struct key_cert_id	 id;
	uint8_t			 h[32];

	(void)state;
	kr = load_ok("key robot {\n    client_cert sha256:"
	    "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:"
	    "17:7A:9C:B4:10:FF:61:F2:00:15:AD;\n}\n"
	    "key both {\n    hash " H1 ";\n"
	    "    client_cert subject \"CN=both,O=Example\";\n}\n"
	    "key plain {\n    hash " H2 ";\n}\n");
	assert_int_equal(kr->nkeys, 3);
	assert_int_equal(kr->ncert_only, 1);
	memset(&id, 0, sizeof(id));
	from_hex(ABC_HEX, id.sha256);
	k = keys_find_cert(kr, &id);
	assert_non_null(k);
	assert_string_equal(k->name, "robot");
	assert_false(k->has_hash);
	/* a key with a hash is never found by its certificate alone */
	snprintf(id.subject, sizeof(id.subject), "CN=both,O=Example");
	memset(id.sha256, 0, sizeof(id.sha256));
	assert_null(keys_find_cert(kr, &id));
	from_hex(ABC_HEX, h);
	k = keys_find(kr, h);
	assert_non_null(k);
	assert_string_equal(k->name, "both");
	assert_true(keys_cert_match(k, &id));
	snprintf(id.subject, sizeof(id.subject), "CN=both,O=Other");
	assert_false(keys_cert_match(k, &id));
	assert_false(keys_cert_match(&kr->keys[2], &id));
	assert_false(keys_cert_match(k, NULL));
	keys_free(kr);

	expect_err("key a {\n    client_cert sha256:abcd;\n}\n", 2,
	    "key \"a\": invalid client_cert fingerprint: 4 hex digits, "
	    "expected 64");
	expect_err("key a {\n    client_cert CN=a;\n}\n", 2,
	    "key \"a\": invalid \"client_cert\" directive (expected "
	    "sha256:<fingerprint> or subject \"DN\")");
	expect_err("key a {\n    client_cert subject \"CN=a\";\n}\n"
	    "key b {\n    client_cert subject \"CN=a\";\n}\n", 4,
	    "key \"b\": same client_cert as key \"a\" (line 1)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_model_allowed),
		cmocka_unit_test(test_hash_secret),
		cmocka_unit_test(test_hash_secret_memo),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_client_cert),
		cmocka_unit_test(test_config_keys_file),
		cmocka_unit_test(test_teams),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
