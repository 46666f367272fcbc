/*
 * A tier window's sums (tiers.c) read a member's transaction entries from
 * the newest and stop at the first whose tenant-wide latest time (key4 / 2,
 * db.h JF_TX_ENTRY_*) is before the window.  Over HTTP the test clock only
 * moves forward, so an entry written after the clock stepped back cannot be
 * made there; these cases write such entries into member_state directly and
 * check that the sums count exactly the entries whose own time is inside
 * the window, neither stopping at the stepped-back entry nor counting it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core.h"
#include "db.h"
#include "tiers.h"
#include "tmpdir.h"
#include "tz.h"

#define DAY_MS (24 * 3600 * 1000LL)
/* 2030-03-01T00:00:00Z: a one-month rolling window ending here starts on
 * 2030-02-01T00:00:00Z, in UTC. */
#define END_MS 1898553600000LL
#define FROM_MS 1896134400000LL

typedef struct fixture {
    char dir[64], path[128], member[64];
    jf_auth auth;
    jf_db db;
    int64_t member_seq;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_true(tmpdir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "tiers", "t.db"));
    jf_engine_options o = {.db_path = f->path, .expiry_interval_s = 0};
    jf_engine *eng = NULL;
    char err[256];
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    assert_true(tmpdir_tenant(eng, "t", &f->auth, NULL, 0));
    const char *body = "{\"external_id\":\"m\"}";
    jf_request req = {
        .op = JF_OP_MEMBER_CREATE, .auth = &f->auth, .body = body, .body_len = strlen(body)};
    jf_result res;
    assert_int_equal(jf_call_sync(eng, &req, &res), JF_OK);
    const char *id = strstr(res.body, "\"id\":\"");
    assert_non_null(id);
    snprintf(f->member, sizeof(f->member), "%.24s", id + 6);
    jf_result_deinit(&res);
    jf_engine_free(eng);
    assert_int_equal(jf_db_open(&f->db, f->path, false), JF_OK);
    assert_int_equal(
        jf_db_int(&f->db, &f->member_seq, 0, "SELECT seq FROM members WHERE id=?", "s", f->member),
        JF_OK);
    assert_true(f->member_seq > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    jf_db_close(&f->db);
    assert_true(tmpdir_remove(f->dir));
    free(f);
    return 0;
}

/* A transaction entry as tx.c writes it: at `at`, the tenant's latest time
 * so far `latest`, growth g, an order earn of `amount` when amount > 0. */
static void entry(fixture *f, int64_t seq, int64_t at, int64_t latest, int64_t g, int64_t amount)
{
    assert_int_equal(jf_db_run(&f->db, "INSERT INTO member_state VALUES(?,2,?,?,?,?,?)", "IIIIII",
                               f->member_seq, seq, at, amount, latest * 2 + (amount > 0), g),
                     JF_OK);
}

static jf_tier_metrics metrics(fixture *f)
{
    char detail[256] = "";
    jf_ctx ctx = {.db = &f->db, .auth = &f->auth, .now_ms = END_MS, .detail = detail};
    jf_member_seq_note(&ctx, f->member, f->member_seq);
    jf_tier_config cfg = {.window = JF_WINDOW_ROLLING, .months = 1};
    assert_int_equal(jf_tz_get("UTC", &cfg.tz), JF_OK);
    jf_tier_metrics m;
    assert_int_equal(jf_tier_metrics_at(&ctx, &cfg, f->member, END_MS, false, true, &m), JF_OK);
    assert_int_equal(m.from, FROM_MS);
    assert_int_equal(m.to, END_MS);
    return m;
}

/* In time order: every entry inside counts, the scan stops at the first
 * before the window. */
static void test_in_order(void **state)
{
    fixture *f = *state;
    entry(f, 1, FROM_MS - 3 * DAY_MS, FROM_MS - 3 * DAY_MS, 1, 100);
    entry(f, 2, FROM_MS - 1, FROM_MS - 1, 2, 0);
    entry(f, 3, FROM_MS, FROM_MS, 4, 300);
    entry(f, 4, END_MS - 1, END_MS - 1, 8, 500);
    jf_tier_metrics m = metrics(f);
    assert_int_equal(m.growth, 12);
    assert_int_equal(m.spend, 800);
    assert_int_equal(m.orders, 2);
}

/* The clock stepped back a day after entry 2: entry 3's own time is before
 * the window although entry 2's is inside.  Entry 3 does not count, and the
 * scan goes on past it to entry 2, because their latest time is inside. */
static void test_clock_stepped_back(void **state)
{
    fixture *f = *state;
    entry(f, 1, FROM_MS - 3 * DAY_MS, FROM_MS - 3 * DAY_MS, 1, 100);
    entry(f, 2, FROM_MS + DAY_MS, FROM_MS + DAY_MS, 2, 200);
    entry(f, 3, FROM_MS - DAY_MS, FROM_MS + DAY_MS, 4, 300);
    entry(f, 4, FROM_MS + 2 * DAY_MS, FROM_MS + 2 * DAY_MS, 8, 0);
    jf_tier_metrics m = metrics(f);
    assert_int_equal(m.growth, 10);
    assert_int_equal(m.spend, 200);
    assert_int_equal(m.orders, 1);
}

/* An entry after the window's end (an evaluation as of an earlier date) is
 * passed over, not a reason to stop. */
static void test_after_the_end(void **state)
{
    fixture *f = *state;
    entry(f, 1, FROM_MS + DAY_MS, FROM_MS + DAY_MS, 2, 0);
    entry(f, 2, END_MS, END_MS, 4, 0);
    entry(f, 3, END_MS + DAY_MS, END_MS + DAY_MS, 8, 0);
    assert_int_equal(metrics(f).growth, 2);
}

/* An entry whose transaction the upgrade did not find has all zeros (verify
 * reports it): it ends nothing. */
static void test_entry_without_latest_time(void **state)
{
    fixture *f = *state;
    entry(f, 1, FROM_MS + DAY_MS, FROM_MS + DAY_MS, 2, 0);
    entry(f, 2, 0, 0, 0, 0);
    entry(f, 3, FROM_MS + 2 * DAY_MS, FROM_MS + 2 * DAY_MS, 8, 0);
    assert_int_equal(metrics(f).growth, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_stepped_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_without_latest_time, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
