/*
 * src/core/jsonw.c writes what jansson's json_dumps(v, JSON_COMPACT |
 * JSON_ENCODE_ANY) writes, byte for byte, and with JSON_SORT_KEYS what it
 * writes then: stored responses are replayed byte for byte, replies written
 * before and after the change must not differ, and the sorted text is the
 * request fingerprint that every stored idempotency key is checked against.  Fixed cases cover each
 * escape, the integer extremes, reals, non-ASCII strings and keys, empty containers and key order;
 * a seeded random test compares the two on many generated trees (SEED=n replays a run; the seed is
 * printed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "seed.h"

static void assert_same_as(json_t *v, bool sorted)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | (sorted ? JSON_SORT_KEYS : 0));
    size_t len = 0;
    char *got = sorted ? jf_json_dump_sorted(v, &len) : jf_json_dump(v, &len);
    assert_non_null(want);
    assert_non_null(got);
    if (strcmp(want, got) != 0)
        fprintf(stderr, "jansson: %s\njsonw:   %s\n", want, got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(want);
    free(got);
}

static void assert_same(json_t *v)
{
    assert_same_as(v, false);
    assert_same_as(v, true);
}

static void test_fixed_values(void **state)
{
    (void)state;
    json_t *o = json_object();
    json_object_set_new(o, "zeta", json_integer(INT64_MIN));
    json_object_set_new(o, "alpha", json_integer(INT64_MAX));
    json_object_set_new(o, "zero", json_integer(0));
    json_object_set_new(o, "neg", json_integer(-9007199254740991));
    json_object_set_new(o, "esc", json_string("q\" b\\ \b\f\n\r\t \x01\x1f\x7f /"));
    json_object_set_new(o, "nul", json_stringn("a\0b", 3));
    json_object_set_new(o, "han", json_string("积分 ✓ 😀"));
    json_object_set_new(o, "键", json_string("value"));
    json_object_set_new(o, "k\"\n", json_true());
    json_object_set_new(o, "real", json_real(0.1));
    json_object_set_new(o, "big", json_real(1e300));
    json_object_set_new(o, "f", json_false());
    json_object_set_new(o, "n", json_null());
    json_object_set_new(o, "ea", json_array());
    json_object_set_new(o, "eo", json_object());
    json_object_set_new(o, "", json_string(""));
    json_t *a = json_array();
    json_array_append_new(a, json_integer(1));
    json_array_append_new(a, json_pack("{s:[i,s,{}]}", "x", 2, "y"));
    json_object_set_new(o, "arr", a);
    /* A key set again keeps its place. */
    json_object_set_new(o, "zeta", json_integer(42));
    assert_same(o);
    json_decref(o);

    json_t *scalars[] = {json_integer(-1), json_string("plain"), json_null(), json_real(-2.5)};
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
        assert_same(scalars[i]);
        json_decref(scalars[i]);
    }
    assert_null(jf_json_dump(NULL, NULL));

    /* Nesting up to JF_JSON_DUMP_DEPTH_MAX is written; deeper is refused. */
    json_t *deep = json_array();
    for (int d = 1; d <= JF_JSON_DUMP_DEPTH_MAX; d++) {
        json_t *outer = json_array();
        json_array_append_new(outer, deep);
        deep = outer;
    }
    assert_same(deep);
    json_t *deeper = json_array();
    json_array_append_new(deeper, deep);
    assert_null(jf_json_dump(deeper, NULL));
    json_decref(deeper);
}

/* A string of up to 12 characters drawn from ASCII, control characters,
 * quotes, backslashes and multi-byte UTF-8. */
static json_t *random_string(unsigned *seed)
{
    static const char *const pieces[] = {TEST_TEXT_PIECES, "\x1f", "\b", "\r"};
    char buf[128] = "";
    int n = rand_r(seed) % 13;
    for (int i = 0; i < n; i++)
        strcat(buf, pieces[rand_r(seed) % (sizeof(pieces) / sizeof(pieces[0]))]);
    return json_string(buf);
}

static json_t *random_value(unsigned *seed, int depth)
{
    int kind = rand_r(seed) % (depth < 4 ? 9 : 7);
    switch (kind) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rand_r(seed) % 2);
    case 2:
        return json_integer((json_int_t)rand_r(seed) - RAND_MAX / 2);
    case 3: {
        int64_t hi = rand_r(seed), lo = rand_r(seed);
        return json_integer((json_int_t)((uint64_t)hi << 33 ^ (uint64_t)lo));
    }
    case 4:
        return json_real((double)rand_r(seed) / 7.0);
    case 5:
    case 6:
        return random_string(seed);
    case 7: {
        json_t *a = json_array();
        for (int i = rand_r(seed) % 5; i > 0; i--)
            json_array_append_new(a, random_value(seed, depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (int i = rand_r(seed) % 6; i > 0; i--) {
            json_t *k = random_string(seed);
            json_object_set_new(o, json_string_value(k), random_value(seed, depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

static void test_random_trees(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_jsonw");
    for (int i = 0; i < 5000; i++) {
        json_t *v = random_value(&seed, 0);
        assert_same(v);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_values),
        cmocka_unit_test(test_random_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
