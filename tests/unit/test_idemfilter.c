/*
 * The writer's filter of stored idempotency keys (src/core/idemfilter.c),
 * through the library's public API: once the filter answers, every stored
 * key is still replayed and new keys skip their lookup; a key another
 * process stored while the filter answered is replayed too, because the
 * writer forgets the filter when the database's data version moves, not
 * because the failed first attempt was run again (no batch is redone); and
 * the same for the orders that earned, which the filter holds too.
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

#include "jifen/jifen.h"
#include "jifen/limits.h"
#include "tmpdir.h"

typedef struct fixture {
    tmpdir_engine te;
    char member[64];
} fixture;

/* Runs op on eng as auth with body; *replayed tells whether the answer was
 * a replay.  Returns the member's available points after it. */
static int64_t call(jf_engine *eng, const jf_auth *auth, jf_op op, const char *path_id,
                    const char *key, const char *body, bool *replayed)
{
    jf_request req = {.op = op,
                      .auth = auth,
                      .path_id = path_id,
                      .body = body,
                      .body_len = strlen(body),
                      .idempotency_key = key};
    jf_result res;
    jf_err err = jf_call_sync(eng, &req, &res);
    if (err != JF_OK)
        fail_msg("%s with key %s: %s (%s)", jf_op_name(op), key ? key : "-", jf_err_code(err),
                 res.detail);
    json_t *doc = json_loads(res.body, 0, NULL);
    json_t *pts = json_object_get(json_object_get(doc, "points"), "available");
    int64_t available = json_is_integer(pts) ? json_integer_value(pts) : -1;
    json_decref(doc);
    if (replayed)
        *replayed = res.replayed;
    jf_result_deinit(&res);
    return available;
}

static int64_t earn(fixture *f, jf_engine *eng, const char *key, bool *replayed)
{
    return call(eng, &f->te.auth, JF_OP_EARN, f->member, key, "{\"points\":5}", replayed);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_true(tmpdir_engine_open(&f->te, "idemfilter"));
    jf_request req = {.op = JF_OP_MEMBER_CREATE,
                      .auth = &f->te.auth,
                      .body = "{\"external_id\":\"m1\"}",
                      .body_len = strlen("{\"external_id\":\"m1\"}")};
    jf_result res;
    assert_int_equal(jf_call_sync(f->te.eng, &req, &res), JF_OK);
    json_t *doc = json_loads(res.body, 0, NULL);
    snprintf(f->member, sizeof(f->member), "%s", json_string_value(json_object_get(doc, "id")));
    json_decref(doc);
    jf_result_deinit(&res);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_true(tmpdir_engine_close(&f->te));
    free(f);
    return 0;
}

static jf_engine_stats stats(jf_engine *eng)
{
    jf_engine_stats st;
    jf_engine_stats_get(eng, &st);
    return st;
}

/* Earns with keys "<prefix>-0" .. "<prefix>-(n-1)"; each answer must be a
 * replay when replays, else a first application. */
static void earn_keys_as(fixture *f, const char *prefix, int n, bool replays)
{
    char key[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        bool replayed = !replays;
        earn(f, f->te.eng, key, &replayed);
        assert_int_equal(replayed, replays);
    }
}

static void earn_keys(fixture *f, const char *prefix, int n)
{
    earn_keys_as(f, prefix, n, false);
}

static void replay_keys(fixture *f, const char *prefix, int n)
{
    earn_keys_as(f, prefix, n, true);
}

/* Writes until the filter answers: it is built on a thread of its own, and
 * adopted and put to use at the writer's batch starts.  The bound only
 * keeps a broken build from hanging the test. */
static void wait_ready(fixture *f)
{
    char key[64];
    for (int i = 0; i < 6000 && !stats(f->te.eng).idem_filter_ready; i++) {
        snprintf(key, sizeof(key), "wait-%d", i);
        earn(f, f->te.eng, key, NULL);
        nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
    }
    assert_true(stats(f->te.eng).idem_filter_ready);
}

static void test_stored_keys_replayed(void **state)
{
    fixture *f = *state;
    earn_keys(f, "a", JF_IDEM_FILTER_WRITES_MIN + 44);
    wait_ready(f);
    jf_engine_stats before = stats(f->te.eng);
    assert_true(before.idem_filter_keys >= JF_IDEM_FILTER_WRITES_MIN + 44);
    assert_true(before.idem_filter_bytes >= JF_IDEM_FILTER_KEYS_MIN * 10 / 8);
    /* Every stored key is a replay that changes nothing: those the build
     * read from the table, and those stored while it ran. */
    int64_t available = earn(f, f->te.eng, "probe-0", NULL);
    replay_keys(f, "a", JF_IDEM_FILTER_WRITES_MIN + 44);
    replay_keys(f, "probe", 1);
    assert_int_equal(earn(f, f->te.eng, "probe-1", NULL), available + 5);
    /* New keys skip their lookup: with a few hundred keys in a filter sized
     * for a million, no absent key should answer "maybe" (the keys and the
     * hash are fixed, so this is the same every run). */
    earn_keys(f, "b", 200);
    jf_engine_stats after = stats(f->te.eng);
    assert_true(after.idem_lookups_skipped - before.idem_lookups_skipped >= 200);
    /* The keys stored while the filter answered are in it. */
    replay_keys(f, "b", 200);
    after = stats(f->te.eng);
    assert_int_equal(after.batches_redone, 0);
    assert_int_equal(after.idem_filter_forgets, 0);
}

static void test_other_process_key_replayed(void **state)
{
    fixture *f = *state;
    earn_keys(f, "a", JF_IDEM_FILTER_WRITES_MIN);
    wait_ready(f);
    /* A second engine on the same file is another writer, as `jifen` run
     * from the shell beside the server is. */
    jf_engine_options o = {.db_path = f->te.db, .test_clock = true};
    jf_engine *other = NULL;
    assert_int_equal(jf_engine_open(&o, &other, NULL, 0), JF_OK);
    bool replayed = true;
    int64_t after_other = earn(f, other, "from-other", &replayed);
    assert_false(replayed);
    jf_engine_free(other);
    jf_engine_stats before = stats(f->te.eng);
    assert_int_equal(earn(f, f->te.eng, "from-other", &replayed), after_other);
    assert_true(replayed);
    jf_engine_stats after = stats(f->te.eng);
    assert_int_equal(after.idem_filter_forgets, before.idem_filter_forgets + 1);
    assert_int_equal(after.batches_redone, 0);
    assert_false(after.idem_filter_ready);
    /* It is built again, with the other process's key in it. */
    wait_ready(f);
    assert_int_equal(earn(f, f->te.eng, "from-other", &replayed), after_other);
    assert_true(replayed);
    assert_int_equal(stats(f->te.eng).batches_redone, 0);
}

/* Earns order "<prefix>-i" with key "key-<prefix>-i-<try>" and returns the
 * error (JF_OK, or the refusal of an order already earned). */
static jf_err earn_order(jf_engine *eng, fixture *f, const char *prefix, int i, int try)
{
    char key[64], body[128];
    snprintf(key, sizeof(key), "key-%s-%d-%d", prefix, i, try);
    snprintf(body, sizeof(body),
             "{\"order\":{\"id\":\"%s-%d\",\"amount\":1000,\"currency\":\"CNY\"}}", prefix, i);
    jf_request req = {.op = JF_OP_EARN,
                      .auth = &f->te.auth,
                      .path_id = f->member,
                      .body = body,
                      .body_len = strlen(body),
                      .idempotency_key = key};
    jf_result res;
    jf_err err = jf_call_sync(eng, &req, &res);
    jf_result_deinit(&res);
    return err;
}

/* Earns orders "<prefix>-0" .. "<prefix>-(n-1)" with new keys: each must
 * answer want. */
static void earn_orders(fixture *f, const char *prefix, int n, int try, jf_err want)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(earn_order(f->te.eng, f, prefix, i, try), want);
}

/* The same filter holds the orders that earned: once it answers, an order
 * earned before its build, while it answered, or by another process is
 * still refused, new orders skip their lookup, and no batch is ever run
 * again (which is how an order wrongly called absent would still be
 * refused, by the table's UNIQUE index). */
static void test_earned_orders_refused(void **state)
{
    fixture *f = *state;
    earn_orders(f, "a", JF_IDEM_FILTER_WRITES_MIN + 44, 0, JF_OK);
    wait_ready(f);
    earn_orders(f, "a", JF_IDEM_FILTER_WRITES_MIN + 44, 1, JF_ERR_ORDER_ALREADY_EARNED);
    jf_engine_stats before = stats(f->te.eng);
    earn_orders(f, "b", 200, 0, JF_OK);
    jf_engine_stats after = stats(f->te.eng);
    /* Each new order skips two lookups: its key's and its own. */
    assert_true(after.idem_lookups_skipped - before.idem_lookups_skipped >= 400);
    earn_orders(f, "b", 200, 1, JF_ERR_ORDER_ALREADY_EARNED);
    jf_engine_options o = {.db_path = f->te.db, .test_clock = true};
    jf_engine *other = NULL;
    assert_int_equal(jf_engine_open(&o, &other, NULL, 0), JF_OK);
    assert_int_equal(earn_order(other, f, "c", 0, 0), JF_OK);
    jf_engine_free(other);
    assert_int_equal(earn_order(f->te.eng, f, "c", 0, 1), JF_ERR_ORDER_ALREADY_EARNED);
    wait_ready(f);
    assert_int_equal(earn_order(f->te.eng, f, "c", 0, 2), JF_ERR_ORDER_ALREADY_EARNED);
    assert_int_equal(stats(f->te.eng).batches_redone, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stored_keys_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process_key_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earned_orders_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
