/*
 * Unit tests of the refund arithmetic (src/core/refunds.c) and of the
 * per-line attribution of awards (jf_rule_line_weights in rules.c): the
 * largest-remainder split, the cumulative clawback (ceil) and return
 * (floor) targets, and a seeded random property test that any order of
 * partial refunds claws back at least each line's exact share, never more
 * than was earned, and exactly everything at the end.  Pure: no database.
 * SEED=n replays a run; the seed is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "refunds.h"
#include "rules.h"
#include "seed.h"

static void test_split_exact_and_largest_remainder(void **state)
{
    (void)state;
    int64_t w[3] = {3000, 0, 6050}, out[3];
    assert_true(jf_split_largest_remainder(90, w, 3, out));
    assert_int_equal(out[0], 30); /* 29.83 takes the point left over */
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 60);
    int64_t eq[3] = {1, 1, 1};
    assert_true(jf_split_largest_remainder(2, eq, 3, out));
    assert_int_equal(out[0] + out[1] + out[2], 2);
    assert_int_equal(out[2], 0); /* ties go to the earlier line */
    int64_t zero[2] = {0, 0};
    assert_true(jf_split_largest_remainder(7, zero, 2, out));
    assert_int_equal(out[0], 7);
    assert_false(jf_split_largest_remainder(-1, eq, 3, out));
    assert_false(jf_split_largest_remainder(1, eq, 0, out));
    int64_t big[2] = {JF_POINTS_MAX, JF_POINTS_MAX};
    assert_true(jf_split_largest_remainder(JF_POINTS_MAX, big, 2, out));
    assert_int_equal(out[0] + out[1], JF_POINTS_MAX);
}

static void test_targets(void **state)
{
    (void)state;
    jf_refund_line l = {.amount = 10550, .points = 105, .refunded = 50};
    int64_t t = 0;
    assert_true(jf_refund_clawback_target_ceil(&l, 1, 105, &t));
    assert_int_equal(t, 1);
    l.refunded = 10550;
    assert_true(jf_refund_clawback_target_ceil(&l, 1, 105, &t));
    assert_int_equal(t, 105);
    l.refunded = 10551;
    assert_false(jf_refund_clawback_target_ceil(&l, 1, 105, &t));
    /* A zero-amount line's points come back with the last refund. */
    jf_refund_line two[2] = {{.amount = 0, .points = 5},
                             {.amount = 100, .points = 10, .refunded = 99}};
    assert_true(jf_refund_clawback_target_ceil(two, 2, 15, &t));
    assert_int_equal(t, 10);
    two[1].refunded = 100;
    assert_true(jf_refund_clawback_target_ceil(two, 2, 15, &t));
    assert_int_equal(t, 15);
    assert_true(jf_refund_return_target_floor(333, 1000, 333, &t));
    assert_int_equal(t, 110);
    assert_true(jf_refund_return_target_floor(333, 1000, 1000, &t));
    assert_int_equal(t, 333);
    assert_false(jf_refund_return_target_floor(333, 0, 0, &t));
    assert_false(jf_refund_return_target_floor(333, 1000, 1001, &t));
}

static void test_line_weights(void **state)
{
    (void)state;
    json_t *order = json_loads("{\"lines\": [{\"sku\": \"TEA\", \"amount\": 3000, \"quantity\": 2},"
                               "{\"sku\": \"GC\", \"amount\": 10000, \"gift_card\": true},"
                               "{\"sku\": \"CAKE\", \"amount\": 6050}]}",
                               0, NULL);
    json_t *rate = json_loads("{\"effect\": {\"type\": \"rate\"}, \"conditions\": {}}", 0, NULL);
    json_t *bonus = json_loads("{\"effect\": {\"type\": \"sku_bonus\", \"bonuses\": [{\"sku\":"
                               " \"TEA\", \"points\": 5}]}, \"conditions\": {}}",
                               0, NULL);
    json_t *inc = json_loads("{\"effect\": {\"type\": \"fixed\"}, \"conditions\": {\"include\":"
                             " {\"skus\": [\"CAKE\"]}}}",
                             0, NULL);
    int64_t w[3];
    jf_rule_plan p_rate, p_bonus, p_inc;
    jf_rule_plan_init(rate, &p_rate);
    jf_rule_plan_init(bonus, &p_bonus);
    jf_rule_plan_init(inc, &p_inc);
    jf_order_line lines[JF_ORDER_LINES_MAX];
    size_t n = jf_order_lines_view(order, lines);
    assert_int_equal(n, 3);
    assert_true(lines[0].quantity == 2 && lines[2].quantity == 1 && lines[1].never &&
                !lines[0].never && strcmp(lines[2].sku, "CAKE") == 0 && !lines[0].category);
    jf_rule_line_weights(NULL, lines, n, w);
    assert_true(w[0] == 3000 && w[1] == 10000 && w[2] == 6050);
    jf_rule_line_weights(&p_rate, lines, n, w);
    assert_true(w[0] == 3000 && w[1] == 0 && w[2] == 6050);
    jf_rule_line_weights(&p_bonus, lines, n, w);
    assert_true(w[0] == 10 && w[1] == 0 && w[2] == 0);
    jf_rule_line_weights(&p_inc, lines, n, w);
    assert_true(w[0] == 0 && w[1] == 0 && w[2] == 6050);
    assert_int_equal(jf_order_lines_view(NULL, lines), 0);
    json_decref(order);
    json_decref(rate);
    json_decref(bonus);
    json_decref(inc);
}

/* Every field of a line in the view, whatever the order of its keys. */
static void test_line_view_fields(void **state)
{
    (void)state;
    json_t *order = json_loads(
        "{\"lines\": [{\"quantity\": 3, \"labels\": [\"x\"], \"category\": \"food\","
        " \"amount\": 700, \"sku\": \"A\", \"gift_card\": false, \"shipping\": false},"
        "{\"shipping\": true, \"amount\": 500}, {\"gift_card\": true, \"shipping\": false,"
        " \"amount\": 1}]}",
        0, NULL);
    jf_order_line l[3];
    assert_int_equal(jf_order_lines_view(order, l), 3);
    assert_true(l[0].quantity == 3 && l[0].amount == 700 && strcmp(l[0].sku, "A") == 0 &&
                strcmp(l[0].category, "food") == 0 && json_array_size(l[0].labels) == 1 &&
                !l[0].never);
    assert_true(l[1].never && l[1].quantity == 1 && l[1].amount == 500 && l[1].sku == NULL &&
                l[1].category == NULL && l[1].labels == NULL);
    assert_true(l[2].never && l[2].amount == 1);
    json_decref(order);
}

/* The command's view is made once and kept until the command ends. */
static void test_ctx_order_lines(void **state)
{
    (void)state;
    jf_args args = {.order = json_loads("{\"lines\": [{\"sku\": \"A\", \"amount\": 5},"
                                        " {\"sku\": \"B\", \"amount\": 6}]}",
                                        0, NULL)};
    jf_ctx ctx = {.args = &args};
    const jf_order_line *a = NULL, *b = NULL;
    size_t n = 0;
    assert_int_equal(jf_ctx_order_lines(&ctx, &a, &n), JF_OK);
    assert_true(n == 2 && a != NULL && strcmp(a[1].sku, "B") == 0 && a[1].amount == 6);
    assert_int_equal(jf_ctx_order_lines(&ctx, &b, &n), JF_OK);
    assert_true(b == a && n == 2);
    free(ctx.lines);
    json_decref(args.order);
    jf_ctx none = {.args = &(jf_args){0}};
    assert_int_equal(jf_ctx_order_lines(&none, &a, &n), JF_OK);
    assert_true(a == NULL && n == 0 && none.lines_made);
}

/* One random order refunded in random pieces; checks R2 and R4 throughout. */
static void random_order(unsigned *seed)
{
    jf_refund_line l[8];
    size_t n = 1 + (size_t)(rand_r(seed) % 8);
    int64_t w[8], pts[8], earned = rand_r(seed) % 5000, total = 0, clawed = 0;
    for (size_t i = 0; i < n; i++) {
        w[i] = rand_r(seed) % 4 == 0 ? 0 : 1 + rand_r(seed) % 20000;
        l[i] = (jf_refund_line){.amount = w[i]};
        total += w[i];
    }
    assert_true(jf_split_largest_remainder(earned, w, n, pts));
    for (size_t i = 0; i < n; i++)
        l[i].points = pts[i];
    for (int64_t refunded = 0; refunded < total || clawed < earned;) {
        size_t i = (size_t)(rand_r(seed) % n);
        int64_t left = l[i].amount - l[i].refunded;
        int64_t part = left > 0 ? 1 + rand_r(seed) % left : 0;
        l[i].refunded += part;
        refunded += part;
        int64_t target = 0;
        assert_true(jf_refund_clawback_target_ceil(l, n, earned, &target));
        assert_true(target >= clawed && target <= earned);
        clawed = target;
        /* Kept points never exceed the exact share of the part not refunded. */
        long double share = 0;
        for (size_t k = 0; k < n; k++)
            if (l[k].amount)
                share += (long double)l[k].points * (l[k].amount - l[k].refunded) / l[k].amount;
        assert_true((long double)(earned - clawed) <= share + 1e-9L);
        if (refunded == total)
            assert_int_equal(clawed, earned);
    }
}

static void test_random_refund_sequences(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_refunds");
    for (int i = 0; i < 2000; i++)
        random_order(&seed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_exact_and_largest_remainder),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_line_weights),
        cmocka_unit_test(test_line_view_fields),
        cmocka_unit_test(test_ctx_order_lines),
        cmocka_unit_test(test_random_refund_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
