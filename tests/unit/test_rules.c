/*
 * Unit tests of the earning-rule evaluator (src/core/rules.c): each
 * condition and effect, rounding, stacking (exclusive, best-of groups,
 * program cap), limits, and calendar conditions in the program's time zone
 * (a birthday across the UTC day boundary in Asia/Shanghai, hour windows in
 * America/New_York across the 2027 DST change).  The evaluator is pure, so
 * these tests need no database: rules and orders are JSON literals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rules.h"

#define MAX 8

typedef struct harness {
    json_t *rules[MAX];
    jf_rule_ref refs[MAX];
    size_t n;
    jf_rule_facts f;
    jf_award aw[MAX];
    size_t count;
    json_t *order, *tags;
    char detail[256];
} harness;

static int64_t at(const char *rfc3339)
{
    int64_t ms = 0;
    assert_true(jf_time_parse_rfc3339(rfc3339, &ms));
    return ms;
}

static void h_init(harness *h, const char *zone, const char *now)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(jf_tz_get(zone, &h->f.tz), JF_OK);
    h->f.now_ms = at(now);
    h->f.order_cap = -1;
}

static void h_rule(harness *h, const char *json)
{
    json_error_t e;
    json_t *r = json_loads(json, 0, &e);
    assert_non_null(r);
    jf_ctx ctx = {.detail = h->detail};
    if (jf_rule_validate(&ctx, r) != JF_OK)
        fail_msg("rule refused: %s (%s)", h->detail, json);
    static const char *const ids[] = {"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"};
    h->rules[h->n] = r;
    h->refs[h->n].id = ids[h->n];
    h->refs[h->n].version = 1;
    h->refs[h->n].rule = r;
    jf_rule_plan_init(r, &h->refs[h->n].plan);
    h->n++;
}

static void h_order(harness *h, const char *json)
{
    h->order = json_loads(json, 0, NULL);
    assert_non_null(h->order);
    jf_ctx ctx = {.detail = h->detail};
    if (jf_rule_order_validate(&ctx, h->order) != JF_OK)
        fail_msg("order refused: %s", h->detail);
    h->f.order = h->order;
    h->f.channel = json_string_value(json_object_get(h->order, "channel"));
    h->f.store_id = json_string_value(json_object_get(h->order, "store_id"));
}

/* Evaluates and returns the total points. */
static int64_t h_eval(harness *h)
{
    jf_ctx ctx = {.detail = h->detail};
    assert_int_equal(jf_rules_evaluate(&ctx, h->refs, h->n, &h->f, h->aw, &h->count), JF_OK);
    int64_t total = 0;
    for (size_t i = 0; i < h->count; i++)
        total += h->aw[i].points;
    return total;
}

static void h_free(harness *h)
{
    for (size_t i = 0; i < h->n; i++)
        json_decref(h->rules[i]);
    json_decref(h->order);
    json_decref(h->tags);
}

/* Total of one purchase rule on one order at a Wednesday noon in Shanghai. */
static int64_t one(const char *rule, const char *order)
{
    harness h;
    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, rule);
    h_order(&h, order);
    int64_t total = h_eval(&h);
    h_free(&h);
    return total;
}

#define RATE(rounding)                                                                             \
    "{\"name\":\"r\",\"trigger\":\"purchase\",\"effect\":{\"type\":\"rate\",\"points\":1,"         \
    "\"per_amount\":100,\"rounding\":\"" rounding "\"}}"

static void test_rate_rounding(void **state)
{
    (void)state;
    const char *o150 = "{\"id\":\"o\",\"amount\":150}", *o149 = "{\"id\":\"o\",\"amount\":149}";
    assert_int_equal(one(RATE("floor"), o150), 1);
    assert_int_equal(one(RATE("ceil"), o150), 2);
    assert_int_equal(one(RATE("round"), o150), 2);
    assert_int_equal(one(RATE("round"), o149), 1);
    assert_int_equal(one(RATE("ceil"), "{\"id\":\"o\",\"amount\":100}"), 1);
    int64_t r = 0;
    assert_true(jf_rate_apply_round(5, 1, 10, &r));
    assert_int_equal(r, 1);
    assert_false(jf_rate_apply_round(JF_POINTS_MAX, 2, 1, &r));
}

static const char lines_order[] =
    "{\"id\":\"o\",\"amount\":19850,\"paid_with_points\":1000,\"channel\":\"wechat\","
    "\"store_id\":\"s1\",\"lines\":["
    "{\"sku\":\"TEA\",\"category\":\"drinks\",\"labels\":[\"new\"],\"amount\":3000,"
    "\"quantity\":2},"
    "{\"sku\":\"GC\",\"amount\":10000,\"gift_card\":true},"
    "{\"sku\":\"SHIP\",\"amount\":800,\"shipping\":true},"
    "{\"sku\":\"CAKE\",\"category\":\"food\",\"amount\":6050}]}";

static void test_effects_on_lines(void **state)
{
    (void)state;
    /* Gift cards and shipping never earn: 3000 + 6050 eligible. */
    assert_int_equal(one(RATE("floor"), lines_order), 90);
    assert_int_equal(one("{\"name\":\"r\",\"trigger\":\"purchase\",\"effect\":{\"type\":\"rate\","
                         "\"points\":1,\"per_amount\":100,\"exclude_points_paid\":true}}",
                         lines_order),
                     80);
    assert_int_equal(one("{\"name\":\"r\",\"trigger\":\"purchase\",\"conditions\":{\"include\":"
                         "{\"categories\":[\"drinks\"]}},\"effect\":{\"type\":\"rate\","
                         "\"points\":1,\"per_amount\":100}}",
                         lines_order),
                     30);
    assert_int_equal(one("{\"name\":\"r\",\"trigger\":\"purchase\",\"conditions\":{\"exclude\":"
                         "{\"labels\":[\"new\"]}},\"effect\":{\"type\":\"rate\",\"points\":1,"
                         "\"per_amount\":100}}",
                         lines_order),
                     60);
    assert_int_equal(one("{\"name\":\"r\",\"trigger\":\"purchase\",\"effect\":{\"type\":"
                         "\"sku_bonus\",\"bonuses\":[{\"sku\":\"TEA\",\"points\":5},"
                         "{\"sku\":\"GC\",\"points\":99}]}}",
                         lines_order),
                     10);
    assert_int_equal(one("{\"name\":\"r\",\"trigger\":\"purchase\",\"effect\":{\"type\":\"fixed\","
                         "\"points\":7}}",
                         lines_order),
                     7);
}

static void test_order_conditions(void **state)
{
    (void)state;
    const char *fmt = "{\"name\":\"r\",\"trigger\":\"purchase\",\"conditions\":{%s},"
                      "\"effect\":{\"type\":\"fixed\",\"points\":1}}";
    static const struct {
        const char *cond;
        int64_t want;
    } cases[] = {
        {"\"amount_min\":9050", 1},
        {"\"amount_min\":9051", 0},
        {"\"amount_max\":9050", 1},
        {"\"amount_max\":9049", 0},
        {"\"channels\":[\"pos\",\"wechat\"]", 1},
        {"\"channels\":[\"pos\"]", 0},
        {"\"stores\":[\"s1\"]", 1},
        {"\"stores\":[\"s2\"]", 0},
        {"\"min_quantity\":3", 1},
        {"\"min_quantity\":4", 0},
        {"\"purchase_number\":{\"first\":true}", 1},
        {"\"purchase_number\":{\"nth\":2}", 0},
        {"\"days_of_week\":[3]", 1},
        {"\"days_of_week\":[1,2,4,5,6,7]", 0},
        {"\"hours\":{\"from\":\"11:00\",\"to\":\"13:00\"}", 1},
        {"\"hours\":{\"from\":\"13:00\",\"to\":\"11:00\"}", 0},
        {"\"dates\":{\"from\":\"2027-01-06\",\"to\":\"2027-01-06\"}", 1},
        {"\"dates\":{\"to\":\"2027-01-05\"}", 0},
        {"\"member_tags_any\":[\"vip\"]", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rule[512];
        snprintf(rule, sizeof rule, fmt, cases[i].cond);
        if (one(rule, lines_order) != cases[i].want)
            fail_msg("condition %s: want %lld", cases[i].cond, (long long)cases[i].want);
    }
}

static void test_multiplier_groups_exclusive_cap(void **state)
{
    (void)state;
    harness h;
    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, RATE("floor"));
    h_rule(&h, "{\"name\":\"double wed\",\"trigger\":\"purchase\",\"group\":\"x\","
               "\"conditions\":{\"days_of_week\":[3]},\"effect\":{\"type\":\"multiplier\","
               "\"factor_num\":2}}");
    h_rule(&h, "{\"name\":\"triple\",\"trigger\":\"purchase\",\"group\":\"x\","
               "\"effect\":{\"type\":\"multiplier\",\"factor_num\":3,\"factor_den\":2}}");
    h_order(&h, "{\"id\":\"o\",\"amount\":7000}");
    /* Base 70; double adds 70, x3/2 adds 35: the group keeps the double. */
    assert_int_equal(h_eval(&h), 140);
    assert_int_equal(h.count, 3);
    assert_int_equal(h.aw[2].points, 0);
    assert_non_null(strstr(h.aw[2].explanation, "best-of group"));
    h.f.order_cap = 100;
    assert_int_equal(h_eval(&h), 100);
    assert_non_null(strstr(h.aw[1].explanation, "max_points_per_order"));
    h_free(&h);

    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, "{\"name\":\"vip\",\"trigger\":\"purchase\",\"exclusive\":true,\"priority\":9,"
               "\"effect\":{\"type\":\"fixed\",\"points\":5}}");
    h_rule(&h, RATE("floor"));
    h_order(&h, "{\"id\":\"o\",\"amount\":7000}");
    assert_int_equal(h_eval(&h), 5);
    assert_int_equal(h.count, 1);
    h_free(&h);
}

static void test_limits(void **state)
{
    (void)state;
    harness h;
    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, "{\"name\":\"capped\",\"trigger\":\"purchase\",\"effect\":{\"type\":\"fixed\","
               "\"points\":30},\"limits\":{\"per_member\":{\"period\":\"day\",\"max_points\":100},"
               "\"budget\":{\"max_awards\":10},\"max_points_per_order\":25}}");
    h_order(&h, "{\"id\":\"o\",\"amount\":1}");
    assert_int_equal(h_eval(&h), 25);
    h.refs[0].used.member_points = 90;
    assert_int_equal(h_eval(&h), 10);
    assert_non_null(strstr(h.aw[0].explanation, "per-member day limit"));
    h.refs[0].used.member_points = 100;
    assert_int_equal(h_eval(&h), 0);
    assert_int_equal(h.count, 1); /* still explained */
    h.refs[0].used.member_points = 0;
    h.refs[0].used.budget_awards = 10;
    assert_int_equal(h_eval(&h), 0);
    assert_non_null(strstr(h.aw[0].explanation, "budget"));
    h_free(&h);
}

/* Explanations whole: the text, and its cut at JF_EXPLANATION_LEN_MAX when
 * the names are long. */
static void test_explanation_text(void **state)
{
    (void)state;
    harness h;
    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, RATE("floor"));
    h_order(&h, "{\"id\":\"o\",\"amount\":7050}");
    assert_int_equal(h_eval(&h), 70);
    assert_string_equal(h.aw[0].explanation,
                        "Rule 'r' v1: 1 point per 100 of eligible amount 7050 (floor) => 70 points,"
                        " 70 growth.");
    h_free(&h);

    char name[JF_RULE_NAME_LEN_MAX + 1], rule[512], want[1024];
    memset(name, 'n', JF_RULE_NAME_LEN_MAX);
    name[JF_RULE_NAME_LEN_MAX] = '\0';
    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, RATE("floor"));
    for (int i = 0; i < 2; i++) {
        snprintf(rule, sizeof rule,
                 "{\"name\":\"%s\",\"trigger\":\"purchase\",\"group\":\"%s\",\"effect\":"
                 "{\"type\":\"multiplier\",\"factor_num\":%d,\"factor_den\":2}}",
                 name, name, 3 + i);
        h_rule(&h, rule);
    }
    h_order(&h, "{\"id\":\"o\",\"amount\":70000000000000}");
    assert_int_equal(h_eval(&h), 1400000000000);
    int n = snprintf(want, sizeof want,
                     "Rule '%s' v1: x3/2 of the base award 700000000000 adds 350000000000; not"
                     " counted: best-of group '%s' keeps the larger award => 0 points.",
                     name, name);
    assert_true(n >= JF_EXPLANATION_LEN_MAX);
    want[JF_EXPLANATION_LEN_MAX - 1] = '\0';
    assert_string_equal(h.aw[1].explanation, want);
    h_free(&h);
}

static const char bday_rule[] = "{\"name\":\"b\",\"trigger\":\"event\",\"event\":\"e\","
                                "\"conditions\":{\"birthday\":\"%s\"},"
                                "\"effect\":{\"type\":\"fixed\",\"points\":1}}";

static int64_t birthday_at(const char *zone, const char *now, const char *kind,
                           const char *birthday)
{
    harness h;
    char rule[256];
    h_init(&h, zone, now);
    snprintf(rule, sizeof rule, bday_rule, kind);
    h_rule(&h, rule);
    h.f.event = "e";
    h.f.birthday = birthday;
    int64_t total = h_eval(&h);
    h_free(&h);
    return total;
}

static void test_birthday_across_utc_day(void **state)
{
    (void)state;
    /* 2027-03-14T16:30Z is already 03-15 00:30 in Shanghai: the birthday. */
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-03-14T16:30:00Z", "day", "1990-03-15"), 1);
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-03-14T15:30:00Z", "day", "1990-03-15"), 0);
    assert_int_equal(birthday_at("UTC", "2027-03-14T16:30:00Z", "day", "1990-03-15"), 0);
    /* 2027-02-28T16:30Z is March 1 in Shanghai: birthday month March. */
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-02-28T16:30:00Z", "month", "1990-03-31"),
                     1);
    assert_int_equal(birthday_at("UTC", "2027-02-28T16:30:00Z", "month", "1990-03-31"), 0);
    /* Week of Monday 2027-03-15 .. Sunday 03-21; Feb 29 is Feb 28 in 2027. */
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-03-17T04:00:00Z", "week", "1990-03-21"), 1);
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-03-17T04:00:00Z", "week", "1990-03-22"), 0);
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-02-28T04:00:00Z", "day", "2000-02-29"), 1);
    assert_int_equal(birthday_at("Asia/Shanghai", "2027-02-28T04:00:00Z", "day", NULL), 0);
}

static int64_t hours_at(const char *now)
{
    harness h;
    h_init(&h, "America/New_York", now);
    h_rule(&h, "{\"name\":\"morning\",\"trigger\":\"event\",\"event\":\"e\",\"conditions\":"
               "{\"hours\":{\"from\":\"09:00\",\"to\":\"10:00\"}},"
               "\"effect\":{\"type\":\"fixed\",\"points\":1}}");
    h.f.event = "e";
    int64_t total = h_eval(&h);
    h_free(&h);
    return total;
}

static void test_new_york_hours_across_dst(void **state)
{
    (void)state;
    /* EST (UTC-5) before 2027-03-14 02:00, EDT (UTC-4) after. */
    assert_int_equal(hours_at("2027-03-13T14:30:00Z"), 1); /* 09:30 EST */
    assert_int_equal(hours_at("2027-03-13T13:30:00Z"), 0); /* 08:30 EST */
    assert_int_equal(hours_at("2027-03-15T14:30:00Z"), 0); /* 10:30 EDT */
    assert_int_equal(hours_at("2027-03-15T13:30:00Z"), 1); /* 09:30 EDT */
    const jf_tz *ny = NULL;
    assert_int_equal(jf_tz_get("America/New_York", &ny), JF_OK);
    /* The DST day starts at midnight EST; the next day at midnight EDT. */
    assert_int_equal(jf_rule_period_start_ms(ny, at("2027-03-14T12:00:00Z"), "day"),
                     at("2027-03-14T05:00:00Z"));
    assert_int_equal(jf_rule_period_start_ms(ny, at("2027-03-15T12:00:00Z"), "day"),
                     at("2027-03-15T04:00:00Z"));
    assert_int_equal(jf_rule_period_start_ms(ny, at("2027-03-17T12:00:00Z"), "week"),
                     at("2027-03-15T04:00:00Z"));
    assert_int_equal(jf_rule_period_start_ms(ny, at("2027-03-17T12:00:00Z"), "month"),
                     at("2027-03-01T05:00:00Z"));
    assert_int_equal(jf_rule_period_start_ms(ny, at("2027-03-17T12:00:00Z"), "lifetime"),
                     INT64_MIN);
}

static void test_validation(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"name\":\"r\",\"trigger\":\"purchase\"}",
        "{\"name\":\"r\",\"trigger\":\"purchase\",\"effect\":{\"type\":\"fixed\",\"points\":0}}",
        "{\"name\":\"r\",\"trigger\":\"purchase\",\"conditions\":{\"hours\":{\"from\":\"24:30\","
        "\"to\":\"01:00\"}},\"effect\":{\"type\":\"fixed\",\"points\":1}}",
        "{\"name\":\"r\",\"trigger\":\"purchase\",\"conditions\":{\"birthday\":\"year\"},"
        "\"effect\":{\"type\":\"fixed\",\"points\":1}}",
        "{\"name\":\"r\",\"trigger\":\"purchase\",\"starts_at\":\"2027-02-01T00:00:00Z\","
        "\"ends_at\":\"2027-01-01T00:00:00Z\",\"effect\":{\"type\":\"fixed\",\"points\":1}}",
        "{\"name\":\"r\",\"trigger\":\"purchase\",\"event\":\"x\",\"effect\":{\"type\":\"fixed\","
        "\"points\":1}}",
    };
    char detail[256];
    jf_ctx ctx = {.detail = detail};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = json_loads(bad[i], 0, NULL);
        assert_non_null(r);
        if (jf_rule_validate(&ctx, r) == JF_OK)
            fail_msg("accepted: %s", bad[i]);
        json_decref(r);
    }
    /* A rule outside its window does not fire. */
    harness h;
    h_init(&h, "Asia/Shanghai", "2027-01-06T04:00:00Z");
    h_rule(&h, "{\"name\":\"r\",\"trigger\":\"purchase\",\"starts_at\":\"2027-01-07T00:00:00Z\","
               "\"effect\":{\"type\":\"fixed\",\"points\":1}}");
    h_order(&h, "{\"id\":\"o\",\"amount\":1}");
    assert_int_equal(h_eval(&h), 0);
    h_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_rounding),
        cmocka_unit_test(test_effects_on_lines),
        cmocka_unit_test(test_order_conditions),
        cmocka_unit_test(test_multiplier_groups_exclusive_cap),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_explanation_text),
        cmocka_unit_test(test_birthday_across_utc_day),
        cmocka_unit_test(test_new_york_hours_across_dst),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
