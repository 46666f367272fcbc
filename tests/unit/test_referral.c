/*
 * Unit tests of referral codes (src/core/referral.c): the code is a
 * bijection of the member's sequence number, so it round-trips, never
 * repeats, uses only the unambiguous alphabet, and anything else parses as
 * no code.  Pure: no database.
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

#define SEQ_MAX ((INT64_C(1) << 39) - 1)

static void test_round_trip_and_alphabet(void **state)
{
    (void)state;
    const int64_t seqs[] = {1, 2, 3, 1000, 123456789, SEQ_MAX - 1, SEQ_MAX};
    char code[JF_REFERRAL_CODE_LEN + 1];
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        int64_t back = 0;
        jf_referral_code(seqs[i], code);
        assert_int_equal(strlen(code), JF_REFERRAL_CODE_LEN);
        assert_null(strpbrk(code, "01OIL"));
        assert_true(jf_referral_code_parse(code, &back));
        assert_int_equal(back, seqs[i]);
    }
    for (int64_t s = 1; s < 20000; s++) {
        int64_t back = 0;
        jf_referral_code(s, code);
        for (char *p = code; *p; p++)
            *p = (char)(*p | 0x20) == *p ? *p : (char)(*p | 0x20); /* lower case parses too */
        assert_true(jf_referral_code_parse(code, &back));
        assert_int_equal(back, s);
    }
}

static int cmp_codes(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_unique(void **state)
{
    (void)state;
    enum { N = 50000 };
    char(*codes)[JF_REFERRAL_CODE_LEN + 1] = calloc(N, sizeof *codes);
    assert_non_null(codes);
    for (int i = 0; i < N; i++)
        jf_referral_code(i + 1, codes[i]);
    qsort(codes, N, sizeof *codes, cmp_codes);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(codes[i - 1], codes[i]) < 0);
    free(codes);
}

static void test_rejects(void **state)
{
    (void)state;
    int64_t seq = 0;
    assert_false(jf_referral_code_parse(NULL, &seq));
    assert_false(jf_referral_code_parse("", &seq));
    assert_false(jf_referral_code_parse("2345678", &seq));
    assert_false(jf_referral_code_parse("234567899", &seq));
    assert_false(jf_referral_code_parse("2345678O", &seq));
    assert_false(jf_referral_code_parse("ZZZZZZZZ", &seq)); /* 31^8 - 1 > 2^39 - 1 */
    assert_false(jf_referral_code_parse("2345 678", &seq));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_alphabet),
        cmocka_unit_test(test_unique),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
