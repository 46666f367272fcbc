/*
 * Unit tests of src/core/arith.h: the points range, checked addition and
 * subtraction at +-(2^53 - 1) and at the int64 edges, and rate application
 * with named rounding computed in 128 bits.
 *
 * A failed check must leave the output untouched, so every failing call
 * starts from a sentinel and the test looks at it afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include "arith.h"

#define SENTINEL INT64_C(-4242)

static const int64_t max = JF_POINTS_MAX;

static void points_max_is_two_to_53_minus_one(void **state)
{
    (void)state;
    assert_int_equal(JF_POINTS_MAX, (INT64_C(1) << 53) - 1);
    assert_int_equal(JF_POINTS_MAX, INT64_C(9007199254740991));
}

static void in_range_edges(void **state)
{
    (void)state;
    assert_true(jf_points_in_range(0));
    assert_true(jf_points_in_range(max));
    assert_true(jf_points_in_range(-max));
    assert_false(jf_points_in_range(max + 1));
    assert_false(jf_points_in_range(-max - 1));
    assert_false(jf_points_in_range(INT64_MAX));
    assert_false(jf_points_in_range(INT64_MIN));
}

/* Expects a + b (or a - b) to be refused and *out to stay untouched. */
static void assert_add_refused(int64_t a, int64_t b)
{
    int64_t out = SENTINEL;
    if (jf_points_add_checked(a, b, &out))
        fail_msg("%lld + %lld accepted", (long long)a, (long long)b);
    assert_int_equal(out, SENTINEL);
}

static void assert_sub_refused(int64_t a, int64_t b)
{
    int64_t out = SENTINEL;
    if (jf_points_sub_checked(a, b, &out))
        fail_msg("%lld - %lld accepted", (long long)a, (long long)b);
    assert_int_equal(out, SENTINEL);
}

static void add_checked_edges(void **state)
{
    (void)state;
    int64_t out = SENTINEL;
    assert_true(jf_points_add_checked(max, 0, &out));
    assert_int_equal(out, max);
    assert_true(jf_points_add_checked(max - 1, 1, &out));
    assert_int_equal(out, max);
    assert_true(jf_points_add_checked(-max, 0, &out));
    assert_int_equal(out, -max);
    assert_true(jf_points_add_checked(max, -max, &out));
    assert_int_equal(out, 0);
    assert_true(jf_points_add_checked(-5, 3, &out));
    assert_int_equal(out, -2);
    /* An out-of-range operand is fine when the sum comes back in range. */
    assert_true(jf_points_add_checked(max + 10, -20, &out));
    assert_int_equal(out, max - 10);
    assert_add_refused(max, 1);
    assert_add_refused(1, max);
    assert_add_refused(-max, -1);
    assert_add_refused(max, max);
    assert_add_refused(-max, -max);
    /* Sums that overflow int64 itself. */
    assert_add_refused(INT64_MAX, 1);
    assert_add_refused(INT64_MIN, -1);
    assert_add_refused(INT64_MAX, INT64_MAX);
    assert_add_refused(INT64_MIN, INT64_MIN);
    assert_add_refused(INT64_MAX, 0);
}

static void sub_checked_edges(void **state)
{
    (void)state;
    int64_t out = SENTINEL;
    assert_true(jf_points_sub_checked(max, max, &out));
    assert_int_equal(out, 0);
    assert_true(jf_points_sub_checked(0, max, &out));
    assert_int_equal(out, -max);
    assert_true(jf_points_sub_checked(-max + 1, 1, &out));
    assert_int_equal(out, -max);
    assert_true(jf_points_sub_checked(3, 5, &out));
    assert_int_equal(out, -2);
    assert_sub_refused(-max, 1);
    assert_sub_refused(0, -max - 1);
    assert_sub_refused(max, -1);
    assert_sub_refused(max, -max);
    assert_sub_refused(0, INT64_MIN);
    assert_sub_refused(INT64_MIN, 1);
    assert_sub_refused(INT64_MAX, -1);
    assert_sub_refused(-1, INT64_MAX);
}

/* Applies both roundings and checks the pair. */
static void assert_rate(int64_t amount, int64_t num, int64_t den, int64_t floor_expected,
                        int64_t ceil_expected)
{
    int64_t lo = SENTINEL, hi = SENTINEL;
    assert_true(jf_rate_apply_floor(amount, num, den, &lo));
    assert_true(jf_rate_apply_ceil(amount, num, den, &hi));
    assert_int_equal(lo, floor_expected);
    assert_int_equal(hi, ceil_expected);
}

static void rate_rounding(void **state)
{
    (void)state;
    assert_rate(7, 1, 3, 2, 3);
    assert_rate(9, 1, 3, 3, 3);
    assert_rate(0, 5, 7, 0, 0);
    assert_rate(5, 0, 7, 0, 0);
    assert_rate(1, 1, 1000000, 0, 1);
    assert_rate(999999, 1, 1000000, 0, 1);
    assert_rate(1000001, 1, 1000000, 1, 2);
    /* 1 point per 100 minor units: 12345 fen is 123 points, floor. */
    assert_rate(12345, 1, 100, 123, 124);
    assert_rate(12300, 1, 100, 123, 123);
    assert_rate(100, 3, 2, 150, 150);
    assert_rate(101, 3, 2, 151, 152);
}

/* Products far beyond int64 are exact in 128 bits. */
static void rate_128_bit_products(void **state)
{
    (void)state;
    int64_t out = SENTINEL;
    assert_rate(max, max, max, max, max);
    assert_rate(max, 1000000, 1000001, INT64_C(9007190247550743), INT64_C(9007190247550744));
    assert_rate(INT64_MAX, 2, 4096, INT64_C(4503599627370495), INT64_C(4503599627370496));
    assert_rate(INT64_C(123456789012345), 987654321, 1000000007, INT64_C(121932630271299),
                INT64_C(121932630271300));
    /* (2^63 - 1) * 2^40 / 2^50: the floor is exactly the maximum, the ceiling one more. */
    assert_true(jf_rate_apply_floor(INT64_MAX, INT64_C(1) << 40, INT64_C(1) << 50, &out));
    assert_int_equal(out, max);
    out = SENTINEL;
    assert_false(jf_rate_apply_ceil(INT64_MAX, INT64_C(1) << 40, INT64_C(1) << 50, &out));
    assert_int_equal(out, SENTINEL);
}

static void rate_range_and_domain(void **state)
{
    (void)state;
    int64_t out = SENTINEL;
    /* The result must fit the points range; the floor of max + 1/2 does. */
    assert_true(jf_rate_apply_floor(2 * max + 1, 1, 2, &out));
    assert_int_equal(out, max);
    out = SENTINEL;
    assert_false(jf_rate_apply_ceil(2 * max + 1, 1, 2, &out));
    assert_int_equal(out, SENTINEL);
    assert_false(jf_rate_apply_floor(max + 1, 1, 1, &out));
    assert_false(jf_rate_apply_floor(INT64_MAX, INT64_MAX, 1, &out));
    assert_false(jf_rate_apply_ceil(INT64_MAX, INT64_MAX, INT64_MAX - 1, &out));
    assert_false(jf_rate_apply_floor(INT64_MAX, INT64_MAX, INT64_MAX, &out));
    /* Negative amounts and rates and non-positive divisors are refused. */
    static const int64_t bad[][3] = {
        {-1, 1, 1},        {1, -1, 1},        {1, 1, 0},         {1, 1, -1},
        {INT64_MIN, 1, 1}, {1, INT64_MIN, 1}, {1, 1, INT64_MIN},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = SENTINEL;
        assert_false(jf_rate_apply_floor(bad[i][0], bad[i][1], bad[i][2], &out));
        assert_false(jf_rate_apply_ceil(bad[i][0], bad[i][1], bad[i][2], &out));
        assert_int_equal(out, SENTINEL);
    }
}

static void min_i64(void **state)
{
    (void)state;
    assert_int_equal(jf_min_i64(1, 2), 1);
    assert_int_equal(jf_min_i64(2, 1), 1);
    assert_int_equal(jf_min_i64(INT64_MIN, INT64_MAX), INT64_MIN);
    assert_int_equal(jf_min_i64(-3, -3), -3);
}

/* jf_i64_dec writes what "%lld" writes: the extremes, powers of ten and
 * their neighbours, and a walk over every magnitude. */
static void i64_dec_matches_printf(void **state)
{
    (void)state;
    int64_t cases[200];
    size_t n = 0;
    cases[n++] = INT64_MIN;
    cases[n++] = INT64_MAX;
    cases[n++] = 0;
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        int64_t c[] = {p - 1, p, p + 1, -p + 1, -p, -p - 1};
        for (size_t k = 0; k < 6; k++)
            cases[n++] = c[k];
    }
    for (int64_t v = 1; v < INT64_MAX / 7; v = v * 7 + 3)
        cases[n++] = v % 2 ? v : -v;
    for (size_t i = 0; i < n; i++) {
        char want[32], got[JF_I64_DEC_MAX + 1];
        snprintf(want, sizeof want, "%lld", (long long)cases[i]);
        size_t len = jf_i64_dec(cases[i], got);
        got[len] = '\0';
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(points_max_is_two_to_53_minus_one),
        cmocka_unit_test(in_range_edges),
        cmocka_unit_test(add_checked_edges),
        cmocka_unit_test(sub_checked_edges),
        cmocka_unit_test(rate_rounding),
        cmocka_unit_test(rate_128_bit_products),
        cmocka_unit_test(rate_range_and_domain),
        cmocka_unit_test(min_i64),
        cmocka_unit_test(i64_dec_matches_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
