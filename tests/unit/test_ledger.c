/*
 * Unit tests of the ledger through the library's public API: lot
 * consumption order, restores, clawbacks into debt, holds, strict JSON
 * decoding, API key hashing and verification.  Each test opens a fresh
 * engine on a temporary database with the test clock.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "jifen/jifen.h"
#include "tmpdir.h"

typedef tmpdir_engine fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_true(tmpdir_engine_open(f, "unit"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_true(tmpdir_engine_close(f));
    free(f);
    return 0;
}

/* Runs op with a JSON body; returns the parsed response (or NULL on error). */
static json_t *call(fixture *f, jf_op op, const char *path_id, const char *key, jf_err want,
                    const char *fmt, ...)
{
    char body[2048] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
    }
    jf_request req = {.op = op,
                      .auth = &f->auth,
                      .path_id = path_id,
                      .body = fmt ? body : NULL,
                      .body_len = fmt ? strlen(body) : 0,
                      .idempotency_key = key};
    jf_result res;
    jf_err err = jf_call_sync(f->eng, &req, &res);
    if (err != want)
        fail_msg("op %s: want %s got %s (%s)", jf_op_name(op), jf_err_code(want), jf_err_code(err),
                 res.detail);
    json_t *out = res.body ? json_loads(res.body, 0, NULL) : NULL;
    jf_result_deinit(&res);
    return out;
}

static char keybuf[64];
static const char *newkey(void)
{
    static int n;
    snprintf(keybuf, sizeof(keybuf), "k-%d", ++n);
    return keybuf;
}

static void member(fixture *f, const char *ext, char *id)
{
    json_t *m = call(f, JF_OP_MEMBER_CREATE, NULL, NULL, JF_OK, "{\"external_id\":\"%s\"}", ext);
    snprintf(id, 64, "%s", json_string_value(json_object_get(m, "id")));
    json_decref(m);
}

static int64_t points_of(json_t *r, const char *field)
{
    return json_integer_value(json_object_get(json_object_get(r, "points"), field));
}

static void set_clock(fixture *f, const char *when)
{
    json_decref(call(f, JF_OP_CLOCK_SET, NULL, NULL, JF_OK, "{\"now\":\"%s\"}", when));
}

static void assert_verified(fixture *f)
{
    char *json = NULL;
    int64_t violations = -1;
    assert_int_equal(jf_verify(f->eng, &json, &violations), JF_OK);
    if (violations != 0)
        fail_msg("verify: %s", json);
    free(json);
}

static void lot_remaining(fixture *f, const char *mid, int64_t *out, int n)
{
    json_t *r = call(f, JF_OP_MEMBER_LOTS, mid, NULL, JF_OK, NULL);
    json_t *data = json_object_get(r, "data");
    assert_int_equal((int)json_array_size(data), n);
    for (int i = 0; i < n; i++)
        out[i] = json_integer_value(json_object_get(json_array_get(data, i), "remaining"));
    json_decref(r);
}

static void test_consume_earliest_expiring_first(void **state)
{
    fixture *f = *state;
    char m[64];
    int64_t rem[3];
    set_clock(f, "2030-01-01T00:00:00Z");
    json_decref(call(f, JF_OP_PROGRAM_UPDATE, NULL, NULL, JF_OK,
                     "{\"expiry\":{\"policy\":\"days_after_earn\",\"days\":30}}"));
    member(f, "c1", m);
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":100}"));
    set_clock(f, "2030-01-02T00:00:00Z");
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":50}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_OK,
                     "{\"points\":70,\"expires_at\":\"2030-01-10T00:00:00Z\"}"));
    json_t *r = call(f, JF_OP_REDEEM, m, newkey(), JF_OK, "{\"points\":80}");
    assert_int_equal(points_of(r, "available"), 140);
    char redeem[64];
    snprintf(redeem, sizeof(redeem), "%s",
             json_string_value(json_object_get(json_object_get(r, "transaction"), "id")));
    json_decref(r);
    lot_remaining(f, m, rem, 3); /* ordered by expiry: C (Jan 10), A (Jan 31), B (Feb 1) */
    assert_int_equal(rem[0], 0);
    assert_int_equal(rem[1], 90);
    assert_int_equal(rem[2], 50);
    /* A partial reversal restores the most recently consumed piece first (A). */
    json_decref(call(f, JF_OP_REVERSE, redeem, newkey(), JF_OK, "{\"points\":30}"));
    lot_remaining(f, m, rem, 3);
    assert_int_equal(rem[0], 20);
    assert_int_equal(rem[1], 100);
    json_decref(call(f, JF_OP_REVERSE, redeem, newkey(), JF_ERR_REVERSAL_EXCEEDS_ORIGINAL,
                     "{\"points\":51}"));
    json_decref(call(f, JF_OP_REVERSE, redeem, newkey(), JF_OK, "{}"));
    lot_remaining(f, m, rem, 3);
    assert_int_equal(rem[0], 70);
    assert_verified(f);
}

static void test_pending_points(void **state)
{
    fixture *f = *state;
    char m[64];
    set_clock(f, "2030-01-01T00:00:00Z");
    json_decref(call(f, JF_OP_PROGRAM_UPDATE, NULL, NULL, JF_OK, "{\"pending_days\":2}"));
    member(f, "p1", m);
    json_t *r = call(f, JF_OP_EARN, m, newkey(), JF_OK,
                     "{\"order\":{\"id\":\"o1\",\"amount\":1999,\"currency\":\"CNY\"}}");
    assert_int_equal(points_of(r, "pending"), 19);
    assert_int_equal(points_of(r, "available"), 0);
    json_decref(r);
    json_decref(call(f, JF_OP_REDEEM, m, newkey(), JF_ERR_INSUFFICIENT_POINTS, "{\"points\":1}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_ORDER_ALREADY_EARNED,
                     "{\"order\":{\"id\":\"o1\",\"amount\":5,\"currency\":\"CNY\"}}"));
    set_clock(f, "2030-01-03T00:00:00Z");
    r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(points_of(r, "available"), 19);
    json_decref(r);
    assert_verified(f);
}

static void test_clawback_into_debt(void **state)
{
    fixture *f = *state;
    char m[64], earn[64];
    member(f, "d1", m);
    json_t *r = call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":100}");
    snprintf(earn, sizeof(earn), "%s",
             json_string_value(json_object_get(json_object_get(r, "transaction"), "id")));
    json_decref(r);
    json_decref(call(f, JF_OP_REDEEM, m, newkey(), JF_OK, "{\"points\":80}"));
    json_decref(call(f, JF_OP_REVERSE, earn, newkey(), JF_ERR_INSUFFICIENT_POINTS, "{}"));
    json_decref(call(f, JF_OP_PROGRAM_UPDATE, NULL, NULL, JF_OK, "{\"debt_floor\":100}"));
    json_decref(call(f, JF_OP_REVERSE, earn, newkey(), JF_OK, "{}"));
    r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "debt")), 80);
    json_decref(r);
    r = call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":50}");
    assert_int_equal(points_of(r, "available"), 0);
    json_decref(r);
    r = call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":50}");
    assert_int_equal(points_of(r, "available"), 20);
    json_decref(r);
    assert_verified(f);
}

static void test_holds(void **state)
{
    fixture *f = *state;
    char m[64], hold[64], capture[64];
    set_clock(f, "2030-01-01T00:00:00Z");
    member(f, "h1", m);
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":100}"));
    json_t *r = call(f, JF_OP_HOLD, m, newkey(), JF_OK, "{\"points\":60,\"ttl_seconds\":60}");
    assert_int_equal(points_of(r, "available"), 40);
    assert_int_equal(points_of(r, "held"), 60);
    snprintf(hold, sizeof(hold), "%s",
             json_string_value(json_object_get(json_object_get(r, "hold"), "id")));
    json_decref(r);
    json_decref(call(f, JF_OP_HOLD_CAPTURE, hold, newkey(), JF_ERR_CAPTURE_EXCEEDS_HOLD,
                     "{\"points\":61}"));
    r = call(f, JF_OP_HOLD_CAPTURE, hold, newkey(), JF_OK, "{\"points\":50}");
    assert_int_equal(points_of(r, "available"), 50);
    assert_int_equal(points_of(r, "held"), 0);
    snprintf(capture, sizeof(capture), "%s",
             json_string_value(json_object_get(json_object_get(r, "transaction"), "id")));
    json_decref(r);
    json_decref(call(f, JF_OP_HOLD_VOID, hold, newkey(), JF_ERR_HOLD_NOT_OPEN, "{}"));
    r = call(f, JF_OP_REVERSE, capture, newkey(), JF_OK, "{}");
    assert_int_equal(points_of(r, "available"), 100);
    json_decref(r);
    /* A hold past its deadline is void once the clock passes it. */
    r = call(f, JF_OP_HOLD, m, newkey(), JF_OK, "{\"points\":30,\"ttl_seconds\":60}");
    snprintf(hold, sizeof(hold), "%s",
             json_string_value(json_object_get(json_object_get(r, "hold"), "id")));
    json_decref(r);
    set_clock(f, "2030-01-01T00:02:00Z");
    json_decref(call(f, JF_OP_HOLD_CAPTURE, hold, newkey(), JF_ERR_HOLD_NOT_OPEN, "{}"));
    r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(points_of(r, "available"), 100);
    assert_int_equal(points_of(r, "held"), 0);
    json_decref(r);
    assert_verified(f);
}

static void test_strict_json(void **state)
{
    fixture *f = *state;
    char m[64];
    member(f, "j1", m);
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_UNKNOWN_FIELD, "{\"points\":1,\"x\":1}"));
    json_decref(
        call(f, JF_OP_EARN, m, newkey(), JF_ERR_DUPLICATE_FIELD, "{\"points\":1,\"points\":2}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_INVALID_JSON, "{\"points\":"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_INVALID_JSON, "[1]"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_AMOUNT_OUT_OF_RANGE,
                     "{\"points\":9007199254740992}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_AMOUNT_OUT_OF_RANGE,
                     "{\"points\":99999999999999999999999}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_INVALID_FIELD, "{\"points\":\"1\"}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_INVALID_FIELD, "{\"points\":0}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_MISSING_FIELD, "{}"));
    json_decref(call(f, JF_OP_EARN, m, NULL, JF_ERR_IDEMPOTENCY_KEY_REQUIRED, "{\"points\":1}"));
    json_decref(
        call(f, JF_OP_EARN, m, "bad\001key", JF_ERR_INVALID_IDEMPOTENCY_KEY, "{\"points\":1}"));
    json_decref(call(f, JF_OP_EARN, "mem_nope", newkey(), JF_ERR_NOT_FOUND, "{\"points\":1}"));
    json_t *r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(points_of(r, "available"), 0);
    json_decref(r);
}

static void test_idempotency_replay(void **state)
{
    fixture *f = *state;
    char m[64];
    member(f, "i1", m);
    jf_request req = {.op = JF_OP_EARN,
                      .auth = &f->auth,
                      .path_id = m,
                      .body = "{\"points\":5}",
                      .body_len = 12,
                      .idempotency_key = "same"};
    jf_result a, b;
    assert_int_equal(jf_call_sync(f->eng, &req, &a), JF_OK);
    assert_false(a.replayed);
    assert_int_equal(jf_call_sync(f->eng, &req, &b), JF_OK);
    assert_true(b.replayed);
    assert_true(b.created);
    assert_string_equal(a.body, b.body);
    jf_result_deinit(&a);
    jf_result_deinit(&b);
    req.body = "{\"points\":6}";
    assert_int_equal(jf_call_sync(f->eng, &req, &a), JF_ERR_IDEMPOTENCY_KEY_REUSED);
    jf_result_deinit(&a);
    json_t *r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(points_of(r, "available"), 5);
    json_decref(r);
}

static void test_api_keys(void **state)
{
    fixture *f = *state;
    jf_auth who;
    assert_int_equal(jf_auth_bearer(f->eng, f->api_key, &who), JF_OK);
    assert_int_equal(who.role, JF_ROLE_ADMIN);
    assert_int_equal(who.tenant, f->auth.tenant);
    char bad[128];
    snprintf(bad, sizeof(bad), "%s", f->api_key);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(jf_auth_bearer(f->eng, bad, &who), JF_ERR_UNAUTHORIZED);
    assert_int_equal(jf_auth_bearer(f->eng, "Bearer nonsense", &who), JF_ERR_UNAUTHORIZED);
    json_t *k = call(f, JF_OP_KEY_CREATE, NULL, NULL, JF_OK, "{\"role\":\"pos\"}");
    const char *secret = json_string_value(json_object_get(k, "api_key"));
    char header[160];
    snprintf(header, sizeof(header), "Bearer %s", secret);
    assert_int_equal(jf_auth_bearer(f->eng, header, &who), JF_OK);
    assert_int_equal(who.role, JF_ROLE_POS);
    json_decref(
        call(f, JF_OP_KEY_REVOKE, json_string_value(json_object_get(k, "id")), NULL, JF_OK, NULL));
    assert_int_equal(jf_auth_bearer(f->eng, header, &who), JF_ERR_UNAUTHORIZED);
    json_decref(k);
}

static void test_expiry_once(void **state)
{
    fixture *f = *state;
    char m[64];
    set_clock(f, "2030-01-01T00:00:00Z");
    json_decref(call(f, JF_OP_PROGRAM_UPDATE, NULL, NULL, JF_OK,
                     "{\"expiry\":{\"policy\":\"days_after_earn\",\"days\":30}}"));
    member(f, "e1", m);
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":100}"));
    json_decref(call(f, JF_OP_REDEEM, m, newkey(), JF_OK, "{\"points\":40}"));
    set_clock(f, "2030-02-01T00:00:00Z");
    json_t *r = call(f, JF_OP_EXPIRY_RUN, NULL, NULL, JF_OK, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "expired_points")), 60);
    json_decref(r);
    r = call(f, JF_OP_EXPIRY_RUN, NULL, NULL, JF_OK, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "expired_points")), 0);
    json_decref(r);
    assert_verified(f);
}

/* Answers of requests queued with jf_call, kept until all have come. */
typedef struct queued {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    jf_err err[3];
    char *body[3];
} queued;

typedef struct queued_slot {
    queued *q;
    int i;
} queued_slot;

static void queued_done(void *arg, jf_result *res)
{
    queued_slot *s = arg;
    pthread_mutex_lock(&s->q->mu);
    s->q->err[s->i] = res->err;
    s->q->body[s->i] = res->body;
    res->body = NULL;
    s->q->pending--;
    pthread_cond_signal(&s->q->cv);
    pthread_mutex_unlock(&s->q->mu);
}

/* The writer reads the program row once per batch while only points
 * operations run.  A program change queued between earns must be seen by
 * the earn after it: the first slice of a batch of 1,000 earns keeps the
 * writer busy while the change and the next earn queue up, so those two run
 * in one batch (before the batch's later slices, batch.c). */
static void test_program_change_seen_within_a_batch(void **state)
{
    fixture *f = *state;
    char m[64];
    member(f, "prog", m);
    size_t cap = 1000 * 140 + 64, len = 0;
    char *ops = malloc(cap);
    len += (size_t)snprintf(ops + len, cap - len, "{\"operations\":[");
    for (int i = 0; i < 1000; i++)
        len += (size_t)snprintf(ops + len, cap - len,
                                "%s{\"op\":\"earn\",\"id\":\"%s\",\"idempotency_key\":"
                                "\"bulk-%d\",\"body\":{\"points\":1}}",
                                i ? "," : "", m, i);
    len += (size_t)snprintf(ops + len, cap - len, "]}");
    const char *patch = "{\"earn_rate\":{\"points\":5,\"per_amount\":100}}";
    const char *earn = "{\"order\":{\"id\":\"o-1\",\"amount\":1000,\"currency\":\"CNY\"}}";
    jf_request reqs[3] = {
        {.op = JF_OP_BATCH, .auth = &f->auth, .body = ops, .body_len = len},
        {.op = JF_OP_PROGRAM_UPDATE, .auth = &f->auth, .body = patch, .body_len = strlen(patch)},
        {.op = JF_OP_EARN,
         .auth = &f->auth,
         .path_id = m,
         .body = earn,
         .body_len = strlen(earn),
         .idempotency_key = "after-patch"},
    };
    queued q = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .pending = 3};
    queued_slot slots[3];
    for (int i = 0; i < 3; i++) {
        slots[i] = (queued_slot){&q, i};
        jf_call(f->eng, &reqs[i], queued_done, &slots[i]);
    }
    pthread_mutex_lock(&q.mu);
    while (q.pending > 0)
        pthread_cond_wait(&q.cv, &q.mu);
    pthread_mutex_unlock(&q.mu);
    for (int i = 0; i < 3; i++)
        assert_int_equal(q.err[i], JF_OK);
    json_t *r = json_loads(q.body[2], 0, NULL);
    /* 1,000 fen at 5 points per 100 fen (the old rate gives 10). */
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "transaction"), "points")), 50);
    json_decref(r);
    r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(points_of(r, "available"), 1050);
    json_decref(r);
    for (int i = 0; i < 3; i++)
        free(q.body[i]);
    free(ops);
    assert_verified(f);
}

static uint64_t cache_forgets(fixture *f)
{
    jf_engine_stats st;
    jf_engine_stats_get(f->eng, &st);
    return st.cache_forgets;
}

/* A command refused before its first write leaves the writer's cache as it
 * was (engine.c, jf_writer_apply): forgetting it would make every later
 * earn of a tenant with rules parse them again.  (Work that wrote and was
 * undone still makes it forget: tests/api/test_batch.py, the overdue hold.) */
static void test_refusal_keeps_writer_cache(void **state)
{
    fixture *f = *state;
    char m[64];
    member(f, "refused", m);
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_OK, "{\"points\":100}"));
    uint64_t before = cache_forgets(f);
    json_decref(call(f, JF_OP_REDEEM, m, newkey(), JF_ERR_INSUFFICIENT_POINTS, "{\"points\":101}"));
    json_decref(call(f, JF_OP_MEMBER_UPDATE, m, NULL, JF_OK, "{\"status\":\"frozen\"}"));
    json_decref(call(f, JF_OP_EARN, m, newkey(), JF_ERR_MEMBER_FROZEN, "{\"points\":5}"));
    json_decref(call(f, JF_OP_REDEEM, m, newkey(), JF_ERR_MEMBER_FROZEN, "{\"points\":5}"));
    json_decref(call(f, JF_OP_MEMBER_UPDATE, m, NULL, JF_OK, "{\"status\":\"active\"}"));
    json_decref(call(f, JF_OP_EARN, m, NULL, JF_OK, "{\"points\":5,\"dry_run\":true}"));
    assert_int_equal(cache_forgets(f), before);
    json_t *r = call(f, JF_OP_MEMBER_GET, m, NULL, JF_OK, NULL);
    assert_int_equal(points_of(r, "available"), 100);
    json_decref(r);
    assert_verified(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consume_earliest_expiring_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clawback_into_debt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program_change_seen_within_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_keeps_writer_cache, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
