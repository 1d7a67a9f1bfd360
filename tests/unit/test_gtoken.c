/*
 * test_gtoken.c - the vertex tokens: the shared slots (shm/gtokens: what
 * a worker reads is what was published, until it expires) and the JWT
 * the refresher signs (master/gtoken: header and claims as Google wants
 * them, an RS256 signature that verifies with the key's public half).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "common/base64.h"
#include "master/gtoken.h"
#include "shm/gtokens.h"

static void
test_slots_publish_and_expire(void **state)
{
	struct gtokens_region	*r = malloc(gtokens_size());
	char			 out[GTOKEN_MAX], big[GTOKEN_MAX + 1];

	(void)state;
	gtokens_init(r);
	assert_int_equal(gtokens_get(r, 0, 1000, out), 0);
	assert_int_equal(gtokens_publish(r, 0, "ya29.one", 5000), 0);
	assert_int_equal(gtokens_get(r, 0, 1000, out), 5000);
	assert_string_equal(out, "ya29.one");
	/* expired: not handed out */
	assert_int_equal(gtokens_get(r, 0, 5000, out), 0);
	assert_int_equal(gtokens_expiry(r, 0), 5000);
	/* a shorter token replaces a longer one whole */
	gtokens_publish(r, 0, "ya29.a-much-longer-token", 9000);
	gtokens_publish(r, 0, "short", 9000);
	assert_int_equal(gtokens_get(r, 0, 1000, out), 9000);
	assert_string_equal(out, "short");
	/* slots are apart; out of range and too long refused */
	assert_int_equal(gtokens_get(r, 1, 1000, out), 0);
	assert_int_equal(gtokens_publish(r, GTOKENS_SLOTS, "x", 9000), -1);
	memset(big, 'a', GTOKEN_MAX);
	big[GTOKEN_MAX] = '\0';
	assert_int_equal(gtokens_publish(r, 1, big, 9000), -1);
	assert_int_equal(r->slot[0].refreshes, 3);
	gtokens_failed(r, 0);
	assert_int_equal(r->slot[0].failures, 1);
	free(r);
}

/* Base64url of N chars at S into OUT; its length. */
static long
b64url_decode(const char *s, size_t n, unsigned char *out)
{
	char	*t = malloc(n + 4);
	size_t	 i;
	long	 k;

	for (i = 0; i < n; i++)
		t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	k = b64_decode(t, n, out);
	free(t);
	return k;
}

static void
test_jwt_signed_rs256_with_googles_claims(void **state)
{
	struct cfg_upstream	 u;
	EVP_PKEY		*key = EVP_RSA_gen(2048);
	EVP_MD_CTX		*md = EVP_MD_CTX_new();
	BIO			*bio = BIO_new(BIO_s_mem());
	char			 jwt[4096], *pem, *d1, *d2;
	unsigned char		 part[2048];
	long			 n, k;

	(void)state;
	assert_non_null(key);
	PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(bio, &pem);
	memset(&u, 0, sizeof(u));
	u.gcp_key = strndup(pem, (size_t)n);
	snprintf(u.gcp_email, sizeof(u.gcp_email), "sa@p.iam.gserviceaccount.com");
	snprintf(u.gcp_token_uri, sizeof(u.gcp_token_uri),
	    "https://oauth2.googleapis.com/token");
	n = gtoken_jwt(&u, 1700000000, jwt, sizeof(jwt));
	assert_true(n > 0);
	assert_int_equal(n, (long)strlen(jwt));
	d1 = strchr(jwt, '.');
	d2 = strchr(d1 + 1, '.');
	assert_non_null(d2);
	k = b64url_decode(jwt, (size_t)(d1 - jwt), part);
	assert_int_equal(k, 27);
	assert_memory_equal(part, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", 27);
	k = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), part);
	part[k] = '\0';
	assert_string_equal((char *)part, "{\"iss\":\"sa@p.iam.gserviceaccount."
	    "com\",\"scope\":\"https://www.googleapis.com/auth/cloud-platform\","
	    "\"aud\":\"https://oauth2.googleapis.com/token\",\"iat\":1700000000,"
	    "\"exp\":1700003600}");
	/* the signature, over "header.claims", with the public half */
	k = b64url_decode(d2 + 1, strlen(d2 + 1), part);
	assert_int_equal(k, 256);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key),
	    1);
	assert_int_equal(EVP_DigestVerify(md, part, (size_t)k,
	    (unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
	/* one byte of the claims changed: it no longer verifies */
	jwt[5] ^= 1;
	EVP_MD_CTX_reset(md);
	EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key);
	assert_int_not_equal(EVP_DigestVerify(md, part, (size_t)k,
	    (unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
	/* no key OpenSSL can read, a buffer too small: refused */
	assert_int_equal(gtoken_jwt(&u, 1700000000, jwt, 100), -1);
	free(u.gcp_key);
	u.gcp_key = strdup("-----BEGIN PRIVATE KEY-----\nxx\n");
	assert_int_equal(gtoken_jwt(&u, 1700000000, jwt, sizeof(jwt)), -1);
	free(u.gcp_key);
	EVP_MD_CTX_free(md);
	BIO_free(bio);
	EVP_PKEY_free(key);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slots_publish_and_expire),
		cmocka_unit_test(test_jwt_signed_rs256_with_googles_claims),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
