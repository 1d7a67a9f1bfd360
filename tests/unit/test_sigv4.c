/*
 * test_sigv4.c - AWS Signature Version 4 against AWS's published test
 * suite (aws-sig-v4-test-suite: get-vanilla, get-vanilla-query-order-key-
 * case, post-vanilla, get-utf8) and the signing key AWS documents for
 * it, and the key cache: one derivation per day, region and service.
 *
 * The vectors use AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
 * 20150830T123600Z, us-east-1, service "service".  A wrong canonical form,
 * key chain or final HMAC changes the signature, so each is covered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "worker/sigv4.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static struct sigv4_req
vanilla(const char *method, const char *uri, const char *query)
{
	struct sigv4_req rq;

	memset(&rq, 0, sizeof(rq));
	rq.method = method;
	rq.uri = uri;
	rq.query = query;
	rq.h[0].name = "host";
	rq.h[0].value = "example.amazonaws.com";
	rq.h[1].name = "x-amz-date";
	rq.h[1].value = "20150830T123600Z";
	rq.nh = 2;
	rq.payload_hash = EMPTY_SHA;
	rq.amz_date = "20150830T123600Z";
	rq.region = "us-east-1";
	rq.service = "service";
	rq.access_key = "AKIDEXAMPLE";
	rq.secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
	return rq;
}

static void
test_get_vanilla_canonical_request(void **state)
{
	struct sigv4_req rq = vanilla("GET", "/", "");
	char		 canon[1024], sts[256], h[SIGV4_HEX + 1];
	long		 n;

	(void)state;
	n = sigv4_canonical(&rq, canon, sizeof(canon));
	assert_string_equal(canon, "GET\n/\n\nhost:example.amazonaws.com\n"
	    "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA);
	assert_int_equal(n, (long)strlen(canon));
	/* get-vanilla.sts, as the suite publishes it */
	sigv4_sha256_hex(canon, (size_t)n, h);
	assert_string_equal(h, "bb579772317eb040ac9ed261061d46c1f17a8133879d"
	    "6129b6e1c25292927e63");
	assert_true(sigv4_string_to_sign(&rq, canon, (size_t)n, sts,
	    sizeof(sts)) > 0);
	assert_string_equal(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n"
	    "20150830/us-east-1/service/aws4_request\n"
	    "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
}

static void
test_signing_key_is_awss(void **state)
{
	struct sigv4_req rq = vanilla("GET", "/", "");
	struct sigv4_key k;
	const unsigned char *key;
	char		 hex[65];
	int		 i;

	(void)state;
	memset(&k, 0, sizeof(k));
	key = sigv4_key_for(&k, &rq);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	assert_string_equal(hex, "938127b5336810ddb6a5d6af445fcac9e371f9ed418"
	    "ed386b022aed82901be75");
}

static void
check_sig(const char *method, const char *uri, const char *query,
    const char *want)
{
	struct sigv4_req rq = vanilla(method, uri, query);
	struct sigv4_key k;
	char		 auth[512], sig[SIGV4_HEX + 1], full[512];

	memset(&k, 0, sizeof(k));
	assert_true(sigv4_authorization(&k, &rq, sig, auth, sizeof(auth)) > 0);
	assert_string_equal(sig, want);
	snprintf(full, sizeof(full), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
	    "20150830/us-east-1/service/aws4_request, SignedHeaders=host;"
	    "x-amz-date, Signature=%s", want);
	assert_string_equal(auth, full);
}

static void
test_published_signatures(void **state)
{
	(void)state;
	check_sig("GET", "/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2"
	    "260956d9b8aae1d763fbf31");
	/* get-vanilla-query-order-key-case: the caller sorts the query */
	check_sig("GET", "/", "Param1=value1&Param2=value2",
	    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	check_sig("POST", "/", "", "5da7c1a2acd57cee7505fc6676e4e544621c3086"
	    "2966e37dddb68e92efbe5d6b");
}

static void
test_get_utf8_path_encoded(void **state)
{
	char	 enc[64];

	(void)state;
	/* get-utf8: the path "/\xe1\x88\xb4" */
	sigv4_uri_encode("/\xe1\x88\xb4", 4, 1, enc);
	assert_string_equal(enc, "/%E1%88%B4");
	check_sig("GET", enc, "", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678"
	    "f255a891fd03141be5d85");
}

static void
test_uri_encode_bedrock_model_id(void **state)
{
	char	 once[128], twice[384];

	(void)state;
	/* the path carries ':' as %3A; the canonical URI encodes it again */
	sigv4_uri_encode("anthropic.claude-3-haiku-20240307-v1:0", 38, 0, once);
	assert_string_equal(once, "anthropic.claude-3-haiku-20240307-v1%3A0");
	sigv4_uri_encode(once, strlen(once), 1, twice);
	assert_string_equal(twice, "anthropic.claude-3-haiku-20240307-v1%253A0");
	sigv4_uri_encode("a b/~", 5, 0, once);
	assert_string_equal(once, "a%20b%2F~");
}

static void
test_key_derived_once_per_day_region_service(void **state)
{
	struct sigv4_req rq = vanilla("GET", "/", "");
	struct sigv4_key k;
	char		 auth[512], a1[SIGV4_HEX + 1], a2[SIGV4_HEX + 1];
	int		 i;

	(void)state;
	memset(&k, 0, sizeof(k));
	for (i = 0; i < 100; i++)
		assert_true(sigv4_authorization(&k, &rq, a1, auth,
		    sizeof(auth)) > 0);
	assert_int_equal(k.derivations, 1);
	rq.amz_date = "20150830T235959Z";	/* same day */
	sigv4_key_for(&k, &rq);
	assert_int_equal(k.derivations, 1);
	rq.amz_date = "20150831T000000Z";	/* the next */
	sigv4_key_for(&k, &rq);
	assert_int_equal(k.derivations, 2);
	rq.region = "eu-west-1";
	sigv4_key_for(&k, &rq);
	assert_int_equal(k.derivations, 3);
	rq.service = "bedrock";
	sigv4_key_for(&k, &rq);
	assert_int_equal(k.derivations, 4);
	/* new credentials: forgotten, derived again, same answer as fresh */
	rq = vanilla("GET", "/", "");
	sigv4_key_forget(&k);
	assert_true(sigv4_authorization(&k, &rq, a2, auth, sizeof(auth)) > 0);
	assert_int_equal(k.derivations, 5);
	assert_string_equal(a1, a2);
}

static void
test_session_token_header_signed(void **state)
{
	struct sigv4_req rq = vanilla("POST", "/", "");
	struct sigv4_key k;
	char		 auth[512], s1[SIGV4_HEX + 1], s2[SIGV4_HEX + 1];

	(void)state;
	memset(&k, 0, sizeof(k));
	sigv4_authorization(&k, &rq, s1, auth, sizeof(auth));
	rq.h[2].name = "x-amz-security-token";
	rq.h[2].value = "tok";
	rq.nh = 3;
	assert_true(sigv4_authorization(&k, &rq, s2, auth, sizeof(auth)) > 0);
	assert_string_not_equal(s1, s2);
	assert_non_null(strstr(auth, "SignedHeaders=host;x-amz-date;"
	    "x-amz-security-token, "));
}

static void
test_amz_date(void **state)
{
	char	 d[SIGV4_DATE_LEN + 1];

	(void)state;
	sigv4_amz_date(1440938160, d);
	assert_string_equal(d, "20150830T123600Z");
}

static void
test_canonical_too_long_refused(void **state)
{
	struct sigv4_req rq = vanilla("GET", "/", "");
	char		 small[40];

	(void)state;
	assert_int_equal(sigv4_canonical(&rq, small, sizeof(small)), -1);
}

/* A secret long enough that "AWS4" + it passes HMAC's 64-byte block:
 * the key chain must agree with OpenSSL's own HMAC(). */
static void
test_long_secret_matches_openssl_hmac(void **state)
{
	struct sigv4_req rq = vanilla("GET", "/", "");
	struct sigv4_key k;
	unsigned char	 a[32], b[32];
	unsigned int	 n = 32;
	char		 seed[128];

	(void)state;
	memset(&k, 0, sizeof(k));
	rq.secret = "0123456789abcdef0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123";
	snprintf(seed, sizeof(seed), "AWS4%s", rq.secret);
	HMAC(EVP_sha256(), seed, (int)strlen(seed),
	    (const unsigned char *)"20150830", 8, a, &n);
	HMAC(EVP_sha256(), a, 32, (const unsigned char *)"us-east-1", 9, b, &n);
	HMAC(EVP_sha256(), b, 32, (const unsigned char *)"service", 7, a, &n);
	HMAC(EVP_sha256(), a, 32, (const unsigned char *)"aws4_request", 12, b,
	    &n);
	assert_memory_equal(sigv4_key_for(&k, &rq), b, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_vanilla_canonical_request),
		cmocka_unit_test(test_signing_key_is_awss),
		cmocka_unit_test(test_published_signatures),
		cmocka_unit_test(test_get_utf8_path_encoded),
		cmocka_unit_test(test_uri_encode_bedrock_model_id),
		cmocka_unit_test(test_key_derived_once_per_day_region_service),
		cmocka_unit_test(test_session_token_header_signed),
		cmocka_unit_test(test_amz_date),
		cmocka_unit_test(test_canonical_too_long_refused),
		cmocka_unit_test(test_long_secret_matches_openssl_hmac),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
