/*
 * Unit tests of referral codes (src/core/referral.c): the code is a
 * bijection of the member's sequence number, so it round-trips, never
 * repeats, uses only the unambiguous alphabet, and anything else parses as
 * no code; each of these holds without a key (databases from before schema
 * version 15) and with one.  Without a key the codes are those of before,
 * pinned by values computed apart (in Python) from the formula; with one
 * they depend on the key.  Pure: no database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "referral.h"

/* Each test runs once without a key (state NULL) and once with this one. */
static const uint8_t test_key[JF_REFERRAL_KEY_BYTES] = {
    0x5a, 0x11, 0x03, 0xc4, 0x9e, 0x27, 0x80, 0x6b, 0xd2, 0x1f, 0x44, 0x3d, 0x70, 0xa8, 0xee, 0x09};

#define SEQ_MAX ((INT64_C(1) << 39) - 1)

static void test_round_trip_and_alphabet(void **state)
{
    const uint8_t *key = *state;
    const int64_t seqs[] = {1, 2, 3, 1000, 123456789, SEQ_MAX - 1, SEQ_MAX};
    char code[JF_REFERRAL_CODE_LEN + 1];
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        int64_t back = 0;
        jf_referral_code(key, seqs[i], code);
        assert_int_equal(strlen(code), JF_REFERRAL_CODE_LEN);
        assert_null(strpbrk(code, "01OIL"));
        assert_true(jf_referral_code_parse(key, code, &back));
        assert_int_equal(back, seqs[i]);
    }
    for (int64_t s = 1; s < 20000; s++) {
        int64_t back = 0;
        jf_referral_code(key, s, code);
        for (char *p = code; *p; p++)
            *p = (char)(*p | 0x20) == *p ? *p : (char)(*p | 0x20); /* lower case parses too */
        assert_true(jf_referral_code_parse(key, code, &back));
        assert_int_equal(back, s);
    }
}

static int cmp_codes(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_unique(void **state)
{
    const uint8_t *key = *state;
    enum { N = 50000 };
    char(*codes)[JF_REFERRAL_CODE_LEN + 1] = calloc(N, sizeof *codes);
    assert_non_null(codes);
    for (int i = 0; i < N; i++)
        jf_referral_code(key, i + 1, codes[i]);
    qsort(codes, N, sizeof *codes, cmp_codes);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(codes[i - 1], codes[i]) < 0);
    free(codes);
}

static void test_rejects(void **state)
{
    const uint8_t *key = *state;
    int64_t seq = 0;
    assert_false(jf_referral_code_parse(key, NULL, &seq));
    assert_false(jf_referral_code_parse(key, "", &seq));
    assert_false(jf_referral_code_parse(key, "2345678", &seq));
    assert_false(jf_referral_code_parse(key, "234567899", &seq));
    assert_false(jf_referral_code_parse(key, "2345678O", &seq));
    assert_false(jf_referral_code_parse(key, "ZZZZZZZZ", &seq)); /* 31^8 - 1 > 2^39 - 1 */
    assert_false(jf_referral_code_parse(key, "2345 678", &seq));
}

/* Without a key, the codes members already have. */
static void test_unkeyed_codes_stay(void **state)
{
    (void)state;
    static const struct {
        int64_t seq;
        const char *code;
    } pinned[] = {{1, "G8ZCJBDE"}, {2, "FBKMHYX4"}, {1000, "B9XJ2QET"}, {SEQ_MAX, "5XNUVZCH"}};
    char code[JF_REFERRAL_CODE_LEN + 1];
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        jf_referral_code(NULL, pinned[i].seq, code);
        assert_string_equal(code, pinned[i].code);
    }
}

/* With a key, a code is another than without, and another under another
 * key: for nearly every number (two keys agree on a code by chance about
 * once in 2^39). */
static void test_keys_change_codes(void **state)
{
    (void)state;
    uint8_t other[JF_REFERRAL_KEY_BYTES];
    memcpy(other, test_key, sizeof other);
    other[0] ^= 1;
    int same_plain = 0, same_other = 0;
    for (int64_t s = 1; s <= 10000; s++) {
        char plain[JF_REFERRAL_CODE_LEN + 1], a[JF_REFERRAL_CODE_LEN + 1],
            b[JF_REFERRAL_CODE_LEN + 1];
        jf_referral_code(NULL, s, plain);
        jf_referral_code(test_key, s, a);
        jf_referral_code(other, s, b);
        same_plain += strcmp(plain, a) == 0;
        same_other += strcmp(a, b) == 0;
    }
    assert_int_equal(same_plain, 0);
    assert_int_equal(same_other, 0);
}

int main(void)
{
    void *keyed = (void *)test_key;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_round_trip_and_alphabet, NULL),
        cmocka_unit_test_prestate(test_round_trip_and_alphabet, keyed),
        cmocka_unit_test_prestate(test_unique, NULL),
        cmocka_unit_test_prestate(test_unique, keyed),
        cmocka_unit_test_prestate(test_rejects, NULL),
        cmocka_unit_test_prestate(test_rejects, keyed),
        cmocka_unit_test(test_unkeyed_codes_stay),
        cmocka_unit_test(test_keys_change_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
