/*
 * `jifen verify` must find rows changed behind the engine's back, not only
 * what the triggers refuse: each case builds a small ledger, tampers with
 * the file through SQLite directly (dropping the guarding trigger first),
 * and expects the named invariant to be reported (F1, the file's own
 * structure, by pointing one table at another's pages).
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
#include <sqlite3.h>

#include "jifen/jifen.h"

static char db_dir[64];
static char db_path[128];

static void run(jf_engine *eng, const jf_auth *auth, jf_op op, const char *id, const char *key,
                const char *body, char *out_id)
{
    jf_request req = {.op = op,
                      .auth = auth,
                      .path_id = id,
                      .body = body,
                      .body_len = body ? strlen(body) : 0,
                      .idempotency_key = key};
    jf_result res;
    jf_err err = jf_call_sync(eng, &req, &res);
    if (err != JF_OK)
        fail_msg("error %d: %s", (int)err, res.detail);
    if (out_id) {
        const char *p = strstr(res.body, "\"id\":\"");
        assert_non_null(p);
        snprintf(out_id, 64, "%.24s", p + 6);
    }
    jf_result_deinit(&res);
}

/* Builds a ledger with an earn, a redeem and a transfer in a new file, and
 * at the end an expiry of a partly spent lot (the test clock moved past it). */
static void build_ledger(void)
{
    snprintf(db_dir, sizeof(db_dir), "/tmp/jifen-verify-XXXXXX");
    assert_non_null(mkdtemp(db_dir));
    snprintf(db_path, sizeof(db_path), "%s/v.db", db_dir);
    jf_engine_options o = {.db_path = db_path, .test_clock = true};
    jf_engine *eng = NULL;
    char err[256], tenant[64], key[128], a[64], b[64], c[64];
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    assert_int_equal(jf_tenant_create(eng, "v", tenant, sizeof(tenant), key, sizeof(key)), JF_OK);
    jf_auth auth;
    assert_int_equal(jf_tenant_auth(eng, tenant, &auth), JF_OK);
    run(eng, &auth, JF_OP_MEMBER_CREATE, NULL, NULL, "{\"external_id\":\"a\"}", a);
    run(eng, &auth, JF_OP_MEMBER_CREATE, NULL, NULL, "{\"external_id\":\"b\"}", b);
    run(eng, &auth, JF_OP_EARN, a, "k1", "{\"points\":100}", NULL);
    run(eng, &auth, JF_OP_REDEEM, a, "k2", "{\"points\":30}", NULL);
    char body[128];
    snprintf(body, sizeof(body), "{\"to_member_id\":\"%s\",\"points\":20}", b);
    run(eng, &auth, JF_OP_TRANSFER, a, "k3", body, NULL);
    run(eng, &auth, JF_OP_TIER_CONFIG_PUT, NULL, NULL,
        "{\"window\":{\"type\":\"lifetime\"},\"tiers\":[{\"code\":\"silver\",\"name\":"
        "\"Silver\",\"threshold\":0},{\"code\":\"gold\",\"name\":\"Gold\",\"threshold\":40}]}",
        NULL);
    run(eng, &auth, JF_OP_EARN, b, "k4", "{\"points\":10,\"growth\":50}", NULL);
    /* A rule with a per-member limit, awarding twice: usage and caps (A2, A3). */
    run(eng, &auth, JF_OP_RULE_CREATE, NULL, NULL,
        "{\"name\":\"5 a purchase\",\"trigger\":\"purchase\",\"status\":\"active\","
        "\"effect\":{\"type\":\"fixed\",\"points\":5},"
        "\"limits\":{\"per_member\":{\"period\":\"day\",\"max_awards\":3}}}",
        NULL);
    run(eng, &auth, JF_OP_EARN, a, "k5",
        "{\"order\":{\"id\":\"o5\",\"amount\":1000,\"currency\":\"CNY\"}}", NULL);
    run(eng, &auth, JF_OP_EARN, b, "k6",
        "{\"order\":{\"id\":\"o6\",\"amount\":2000,\"currency\":\"CNY\"}}", NULL);
    run(eng, &auth, JF_OP_MEMBER_CREATE, NULL, NULL, "{\"external_id\":\"c\"}", c);
    run(eng, &auth, JF_OP_EARN, c, "k7", "{\"points\":40,\"expires_at\":\"2099-01-01T00:00:00Z\"}",
        NULL);
    run(eng, &auth, JF_OP_EARN, c, "k8", "{\"points\":5,\"expires_at\":\"2099-01-01T00:00:00Z\"}",
        NULL);
    run(eng, &auth, JF_OP_REDEEM, c, "k9", "{\"points\":15}", NULL);
    run(eng, &auth, JF_OP_CLOCK_SET, NULL, NULL, "{\"now\":\"2099-01-02T00:00:00Z\"}", NULL);
    run(eng, &auth, JF_OP_EXPIRY_RUN, NULL, NULL, "{}", NULL);
    jf_engine_free(eng);
}

static int64_t verify_count(char **report)
{
    jf_engine_options o = {.db_path = db_path, .no_writer = true};
    jf_engine *eng = NULL;
    char err[256];
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    int64_t n = -1;
    assert_int_equal(jf_verify(eng, report, &n), JF_OK);
    jf_engine_free(eng);
    return n;
}

/* Removes the last built ledger's files and directory (a cmocka teardown). */
static int remove_ledger(void **state)
{
    (void)state;
    const char *suffix[] = {"", "-wal", "-shm", "-keys"};
    char path[160];
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", db_path, suffix[i]);
        unlink(path);
    }
    return db_dir[0] != '\0' && rmdir(db_dir) != 0 ? -1 : 0;
}

static void tamper(const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("tamper failed: %s", msg);
    sqlite3_close(db);
}

static void expect_violation(const char *sql, const char *invariant)
{
    build_ledger();
    char *report = NULL;
    assert_int_equal(verify_count(&report), 0);
    free(report);
    tamper(sql);
    assert_true(verify_count(&report) > 0);
    char needle[32];
    snprintf(needle, sizeof(needle), "\"%s\"", invariant);
    if (strstr(report, needle) == NULL)
        fail_msg("expected %s in %s", invariant, report);
    free(report);
}

static void test_edited_posting(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER postings_no_update;"
                     "UPDATE postings SET amount = amount + 1 WHERE n = 0 AND tx_seq = 1;",
                     "I1");
}

static void test_edited_points(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET points = 1000 WHERE seq = 1;",
                     "I7");
}

static void test_deleted_transaction(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_delete;"
                     "DELETE FROM transactions WHERE seq = 2;",
                     "I7");
}

static void test_edited_balance(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET value = value + 5 WHERE kind = 0;", "I2");
}

static void test_edited_lot(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET remaining = remaining - 1 WHERE remaining > 0;", "I4");
}

/* Since schema version 13 an expired lot records what it lost itself. */
static void test_edited_expired_amount(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET expired_amount = expired_amount + 1"
                     " WHERE expired_tx_seq IS NOT NULL;",
                     "I4");
}

static void test_expiry_of_other_points(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET expired_amount = expired_amount + 1, amount = amount + 1"
                     " WHERE expired_tx_seq IS NOT NULL;",
                     "I10");
}

static void test_expiry_not_recorded(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET expired_amount = NULL WHERE expired_tx_seq IS NOT NULL;",
                     "I10");
}

static void test_expiry_by_another_transaction(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET expired_tx_seq = (SELECT seq FROM transactions"
                     " WHERE type = 'redeem' LIMIT 1) WHERE expired_tx_seq IS NOT NULL;",
                     "I10");
}

static void test_expiry_as_consumption(void **state)
{
    (void)state;
    expect_violation("INSERT INTO consumptions(tenant_id, tx_seq, lot_seq, amount, created_at)"
                     " SELECT tenant_id, expired_tx_seq, seq, 1, created_at FROM lots"
                     " WHERE expired_tx_seq IS NOT NULL;",
                     "I10");
}

static void test_negative_growth(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET value = -1 WHERE kind = 0 AND key1 = 1;", "T1");
}

static void test_points_below_debt(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET value = -1 WHERE kind = 0 AND key1 = 0;", "I3");
}

/* member_state's copies of lots and transactions (schema v7), each way. */
static void test_edited_lot_entry(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET value = value - 1 WHERE kind = 1 AND value > 0;",
                     "S1");
}

static void test_lot_entry_without_lot(void **state)
{
    (void)state;
    expect_violation("INSERT INTO member_state SELECT member_seq, 1, 1, 0, 0, 1 << 40, 0"
                     " FROM member_state LIMIT 1;",
                     "S1");
}

static void test_missing_transaction_entry(void **state)
{
    (void)state;
    expect_violation("DELETE FROM member_state WHERE kind = 2 AND key1 = (SELECT MAX(key1)"
                     " FROM member_state WHERE kind = 2);",
                     "S1");
}

static void test_transaction_entry_of_another_member(void **state)
{
    (void)state;
    expect_violation("INSERT INTO member_state SELECT m.seq, 2, s.key1, 0, 0, 0, NULL FROM"
                     " member_state s JOIN members m ON m.seq <> s.member_seq WHERE s.kind = 2"
                     " AND NOT EXISTS (SELECT 1 FROM member_state o WHERE o.member_seq = m.seq"
                     " AND o.kind = 2 AND o.key1 = s.key1) LIMIT 1;",
                     "S1");
}

/* Keyed by the member's seq (schema v10): an entry of no member is in no
 * tenant's views. */
static void test_entry_of_no_member(void **state)
{
    (void)state;
    expect_violation("INSERT INTO member_state SELECT 1 << 40, 0, 0, 0, 0, 0, 0;", "S1");
}

/* A transaction entry carries the member's growth in it (schema v11), which
 * a tier window sums: an entry that says otherwise than the postings is
 * caught. */
static void test_transaction_entry_growth(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET value = 7 WHERE kind = 2 AND value = 50;", "S1");
}

/* The entries' latest times (schema v11) are the tenant's running maximum
 * of transaction times, which tenants.tx_time_max carries on. */
static void test_tenant_latest_time(void **state)
{
    (void)state;
    expect_violation("UPDATE tenants SET tx_time_max = tx_time_max + 1;", "S1");
}

static void test_entry_latest_time(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET key4 = key4 + 2 WHERE kind = 2;", "S1");
}

static void test_tier_without_change(void **state)
{
    (void)state;
    expect_violation("UPDATE members SET tier = 'silver' WHERE tier = 'gold';", "T2");
}

static void test_edited_rule_usage(void **state)
{
    (void)state;
    expect_violation("UPDATE rule_usage SET points = points + 1;", "A2");
}

static void test_missing_rule_usage(void **state)
{
    (void)state;
    expect_violation("DELETE FROM rule_usage;", "A2");
}

static void test_missing_award_cap(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER award_caps_no_delete;"
                     "DELETE FROM award_caps WHERE tx_seq = (SELECT MAX(tx_seq) FROM award_caps);",
                     "A3");
}

static void test_edited_award_cap(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER award_caps_no_update;"
                     "UPDATE award_caps SET created_at = created_at - 86400000"
                     " WHERE tx_seq = (SELECT MIN(tx_seq) FROM award_caps);",
                     "A3");
}

/* The symptom of SQLite's WAL-reset race: a table's pages hold another
 * table's records.  Pointing postings at member_state's tree makes it. */
static void test_pages_of_another_tree(void **state)
{
    (void)state;
    expect_violation("PRAGMA writable_schema = ON;"
                     "UPDATE sqlite_schema SET rootpage = (SELECT rootpage FROM sqlite_schema"
                     " WHERE name = 'member_state') WHERE name = 'postings';",
                     "F1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_edited_posting, remove_ledger),
        cmocka_unit_test_teardown(test_edited_points, remove_ledger),
        cmocka_unit_test_teardown(test_deleted_transaction, remove_ledger),
        cmocka_unit_test_teardown(test_edited_balance, remove_ledger),
        cmocka_unit_test_teardown(test_edited_lot, remove_ledger),
        cmocka_unit_test_teardown(test_edited_expired_amount, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_of_other_points, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_not_recorded, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_by_another_transaction, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_as_consumption, remove_ledger),
        cmocka_unit_test_teardown(test_negative_growth, remove_ledger),
        cmocka_unit_test_teardown(test_tier_without_change, remove_ledger),
        cmocka_unit_test_teardown(test_points_below_debt, remove_ledger),
        cmocka_unit_test_teardown(test_edited_lot_entry, remove_ledger),
        cmocka_unit_test_teardown(test_lot_entry_without_lot, remove_ledger),
        cmocka_unit_test_teardown(test_missing_transaction_entry, remove_ledger),
        cmocka_unit_test_teardown(test_transaction_entry_of_another_member, remove_ledger),
        cmocka_unit_test_teardown(test_entry_of_no_member, remove_ledger),
        cmocka_unit_test_teardown(test_transaction_entry_growth, remove_ledger),
        cmocka_unit_test_teardown(test_tenant_latest_time, remove_ledger),
        cmocka_unit_test_teardown(test_entry_latest_time, remove_ledger),
        cmocka_unit_test_teardown(test_edited_rule_usage, remove_ledger),
        cmocka_unit_test_teardown(test_missing_rule_usage, remove_ledger),
        cmocka_unit_test_teardown(test_missing_award_cap, remove_ledger),
        cmocka_unit_test_teardown(test_edited_award_cap, remove_ledger),
        cmocka_unit_test_teardown(test_pages_of_another_tree, remove_ledger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
