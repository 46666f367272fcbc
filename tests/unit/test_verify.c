/*
 * `jifen verify` must find rows changed behind the engine's back, not only
 * what the triggers refuse: each case takes a copy of a small ledger (built
 * once, and verified clean), tampers with the file through SQLite directly
 * (dropping the guarding trigger first), and expects the named invariant to
 * be reported (F1, the file's own structure, by pointing one table at
 * another's pages).  Every check of verify.c, and every way a check's
 * condition can fire, has a case that no other check answers with the same
 * invariant: scripts/mutate_verify.py (`make mutation`) deletes or weakens
 * each check in turn and expects a case here to fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "jifen/jifen.h"

/* The clean ledger, built once for all the cases, and the copy of it that
 * the current case tampers with. */
static char clean_dir[64], clean_path[128];
static char db_dir[64], db_path[128];

/* A ledger's files: the database, its write-ahead log and shared memory
 * (gone once the engine has closed it) and its key file. */
static const char *const ledger_suffix[] = {"", "-wal", "-shm", "-keys"};
#define LEDGER_FILES (sizeof(ledger_suffix) / sizeof(ledger_suffix[0]))

/* SQLite's allocator, wrapped: while sqlite_allocs_left is not negative,
 * that many allocations succeed and every one after them fails
 * (test_file_check_fails; test_faults does this to every allocation). */
static sqlite3_mem_methods sqlite_mem;
static atomic_long sqlite_allocs_left = -1;

static bool sqlite_alloc_fails(void)
{
    long left = atomic_load(&sqlite_allocs_left);
    while (left > 0 && !atomic_compare_exchange_weak(&sqlite_allocs_left, &left, left - 1))
        ;
    return left == 0;
}

static void *rigged_malloc(int n)
{
    return sqlite_alloc_fails() ? NULL : sqlite_mem.xMalloc(n);
}

static void *rigged_realloc(void *p, int n)
{
    return sqlite_alloc_fails() ? NULL : sqlite_mem.xRealloc(p, n);
}

/* Installs the wrapper; SQLite takes it only before it initializes. */
static void rig_sqlite_allocator(void)
{
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_mem), SQLITE_OK);
    sqlite3_mem_methods rigged = sqlite_mem;
    rigged.xMalloc = rigged_malloc;
    rigged.xRealloc = rigged_realloc;
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &rigged), SQLITE_OK);
}

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
        snprintf(out_id, 64, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
    }
    jf_result_deinit(&res);
}

/* Builds a ledger at path with an earn, a redeem and a transfer, rules
 * with awards, an order paid partly with points and then half refunded (a
 * clawback, a return that restores a lot), a partial reversal of an earn with
 * growth, a check-in, and at the end an expiry of a partly spent lot (the
 * test clock moved past it): each check has rows to read. */
static void build_ledger(const char *path)
{
    jf_engine_options o = {.db_path = path, .test_clock = true};
    jf_engine *eng = NULL;
    char err[256], tenant[64], key[128], a[64], b[64], c[64], d[64], growth_earn[64];
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
    run(eng, &auth, JF_OP_EARN, b, "k4", "{\"points\":10,\"growth\":50}", growth_earn);
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
    /* An order with lines, which its earn's row keeps (L1). */
    run(eng, &auth, JF_OP_EARN, a, "k5l",
        "{\"order\":{\"id\":\"o8\",\"amount\":1500,\"currency\":\"CNY\",\"lines\":["
        "{\"sku\":\"A\",\"amount\":1000},{\"sku\":\"B\",\"amount\":500,\"quantity\":2}]}}",
        NULL);
    run(eng, &auth, JF_OP_MEMBER_CREATE, NULL, NULL, "{\"external_id\":\"c\"}", c);
    run(eng, &auth, JF_OP_EARN, c, "k7", "{\"points\":40,\"expires_at\":\"2099-01-01T00:00:00Z\"}",
        NULL);
    run(eng, &auth, JF_OP_EARN, c, "k8", "{\"points\":5,\"expires_at\":\"2099-01-01T00:00:00Z\"}",
        NULL);
    run(eng, &auth, JF_OP_REDEEM, c, "k9", "{\"points\":15}", NULL);
    /* Member d pays 20 points towards order o7 and earns on it; refunding
     * half the order claws back 3 of the 5 points and returns 10 (R1-R3, I6). */
    run(eng, &auth, JF_OP_MEMBER_CREATE, NULL, NULL, "{\"external_id\":\"d\"}", d);
    run(eng, &auth, JF_OP_EARN, d, "k10", "{\"points\":50}", NULL);
    run(eng, &auth, JF_OP_REDEEM, d, "k11",
        "{\"points\":20,\"order\":{\"id\":\"o7\",\"amount\":3000,\"currency\":\"CNY\"}}", NULL);
    run(eng, &auth, JF_OP_EARN, d, "k12",
        "{\"order\":{\"id\":\"o7\",\"amount\":3000,\"currency\":\"CNY\"}}", NULL);
    run(eng, &auth, JF_OP_ORDER_REFUND, "o7", "k13", "{\"amount\":1500}", NULL);
    /* Half of b's earn with growth reversed: 5 points and 25 growth (T1). */
    run(eng, &auth, JF_OP_REVERSE, growth_earn, "k14", "{\"points\":5}", NULL);
    run(eng, &auth, JF_OP_RULE_CREATE, NULL, NULL,
        "{\"name\":\"check-in\",\"trigger\":\"check_in\",\"status\":\"active\","
        "\"effect\":{\"type\":\"fixed\",\"points\":3}}",
        NULL);
    run(eng, &auth, JF_OP_CHECK_IN, d, "k15", "{}", NULL);
    run(eng, &auth, JF_OP_CLOCK_SET, NULL, NULL, "{\"now\":\"2099-01-02T00:00:00Z\"}", NULL);
    run(eng, &auth, JF_OP_EXPIRY_RUN, NULL, NULL, "{}", NULL);
    /* Points of a that expire later: a due entry (S2). */
    run(eng, &auth, JF_OP_EARN, a, "k16", "{\"points\":8,\"expires_at\":\"2100-01-01T00:00:00Z\"}",
        NULL);
    /* Points of a that are pending for a week: its pending mark (S3). */
    run(eng, &auth, JF_OP_EARN, a, "k17", "{\"points\":6,\"pending_days\":7}", NULL);
    jf_engine_free(eng);
}

static int64_t verify_count(const char *path, char **report)
{
    jf_engine_options o = {.db_path = path, .no_writer = true};
    jf_engine *eng = NULL;
    char err[256];
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    int64_t n = -1;
    assert_int_equal(jf_verify(eng, report, &n), JF_OK);
    jf_engine_free(eng);
    return n;
}

static int remove_files(const char *dir, const char *path)
{
    char file[160];
    for (size_t i = 0; i < LEDGER_FILES; i++) {
        snprintf(file, sizeof(file), "%s%s", path, ledger_suffix[i]);
        unlink(file);
    }
    return dir[0] != '\0' && rmdir(dir) != 0 ? -1 : 0;
}

/* Builds the clean ledger in a new directory and checks that verify finds
 * nothing in it (the group's setup). */
/* Fails unless verify finds nothing in the database at path. */
static void expect_clean(const char *path, const char *what)
{
    char *report = NULL;
    int64_t n = verify_count(path, &report);
    if (n != 0)
        fail_msg("%s has violations: %s", what, report);
    free(report);
}

static int make_clean_ledger(void **state)
{
    (void)state;
    snprintf(clean_dir, sizeof(clean_dir), "/tmp/jifen-verify-XXXXXX");
    assert_non_null(mkdtemp(clean_dir));
    snprintf(clean_path, sizeof(clean_path), "%s/v.db", clean_dir);
    build_ledger(clean_path);
    expect_clean(clean_path, "the clean ledger");
    return 0;
}

static int remove_clean_ledger(void **state)
{
    (void)state;
    return remove_files(clean_dir, clean_path);
}

/* Removes the current case's copy (a cmocka teardown). */
static int remove_ledger(void **state)
{
    (void)state;
    return remove_files(db_dir, db_path);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (in == NULL)
        return; /* a file the clean ledger does not have */
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Copies the clean ledger's files into a new directory for this case. */
static void copy_ledger(void)
{
    snprintf(db_dir, sizeof(db_dir), "/tmp/jifen-verify-XXXXXX");
    assert_non_null(mkdtemp(db_dir));
    snprintf(db_path, sizeof(db_path), "%s/v.db", db_dir);
    char from[160], to[160];
    for (size_t i = 0; i < LEDGER_FILES; i++) {
        snprintf(from, sizeof(from), "%s%s", clean_path, ledger_suffix[i]);
        snprintf(to, sizeof(to), "%s%s", db_path, ledger_suffix[i]);
        copy_file(from, to);
    }
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

/* Verifies the current case's copy, which must have violations; returns the
 * report (malloc'd). */
static char *violations_report(void)
{
    char *report = NULL;
    if (verify_count(db_path, &report) <= 0)
        fail_msg("no violation found: %s", report);
    return report;
}

static void expect_in(const char *report, const char *text)
{
    if (strstr(report, text) == NULL)
        fail_msg("expected %s in %s", text, report);
}

/* Tampers with a copy of the clean ledger and expects every invariant of the
 * NULL-terminated list to be reported. */
static void expect_violations(const char *sql, const char *const *invariants)
{
    copy_ledger();
    tamper(sql);
    char *report = violations_report();
    for (size_t i = 0; invariants[i] != NULL; i++) {
        char needle[32];
        snprintf(needle, sizeof(needle), "\"%s\"", invariants[i]);
        expect_in(report, needle);
    }
    free(report);
}

static void expect_violation(const char *sql, const char *invariant)
{
    const char *const one[] = {invariant, NULL};
    expect_violations(sql, one);
}

/* A posting in its transaction's row (schema version 16). */
static void test_edited_posting(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET p0_amount = p0_amount + 1 WHERE seq = 1;",
                     "I1");
}

/* Transaction 1 as a database from before schema version 16 holds it: its
 * postings as rows of posting_rows, none in its row. */
#define TX1_AS_ROWS                                                                                \
    "DROP TRIGGER transactions_no_update;"                                                         \
    "INSERT INTO posting_rows SELECT tenant_id, tx_seq, n, account, amount, created_at"            \
    " FROM postings WHERE tx_seq = 1;"                                                             \
    "UPDATE transactions SET posting_count = 0, p0_account = NULL, p0_amount = NULL,"              \
    " p1_account = NULL, p1_amount = NULL WHERE seq = 1;"

/* A ledger with postings in both places, as an upgraded database has them,
 * is clean; the tampering cases below start from it. */
static void test_postings_as_rows_are_clean(void **state)
{
    (void)state;
    copy_ledger();
    tamper(TX1_AS_ROWS);
    expect_clean(db_path, "a ledger with postings as rows");
}

static void test_edited_posting_row(void **state)
{
    (void)state;
    expect_violation(TX1_AS_ROWS "DROP TRIGGER postings_no_update;"
                                 "UPDATE posting_rows SET amount = amount + 1 WHERE n = 0;",
                     "I1");
}

/* A transaction's postings both in its row and as rows. */
static void test_postings_in_both_places(void **state)
{
    (void)state;
    expect_violation("INSERT INTO posting_rows SELECT tenant_id, tx_seq, n, account, amount,"
                     " created_at FROM postings WHERE tx_seq = 1;",
                     "I1");
}

static void test_edited_points(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET points = 1000 WHERE seq = 1;",
                     "I7");
}

/* A deleted transaction is named as missing.  The next link's hash would not
 * match either (each hash covers its seq and the previous hash), but the
 * report says which transaction is gone. */
static void test_deleted_transaction(void **state)
{
    (void)state;
    copy_ledger();
    tamper("DROP TRIGGER transactions_no_delete; DELETE FROM transactions WHERE seq = 2;");
    char *report = violations_report();
    expect_in(report, "\"I7\"");
    expect_in(report, "transaction 2 missing from the chain");
    free(report);
}

/* The stored hash itself edited: the next link compares its stored previous
 * hash with the recomputed one, never with this column, so only comparing
 * each link's stored hash with its recomputed hash catches it. */
static void test_edited_hash(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET hash = zeroblob(32) WHERE seq = 2;",
                     "I7");
}

/* A stored hash one byte longer than a hash, whose first bytes are right, is
 * caught by its length alone; so is such a previous hash. */
static void test_longer_hash(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET hash = CAST(hash || x'00' AS BLOB) WHERE seq = 2;",
                     "I7");
}

static void test_longer_previous_hash(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update; UPDATE transactions"
                     " SET prev_hash = CAST(prev_hash || x'00' AS BLOB) WHERE seq = 2;",
                     "I7");
}

/* The stored previous hash is not an input of the recomputed hash (the
 * previous link's recomputed hash is): only comparing the two catches an
 * edit of it. */
static void test_edited_previous_hash(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET prev_hash = zeroblob(32) WHERE seq = 2;",
                     "I7");
}

/* The tenant's head, its count of transactions and its hash, must be those
 * of the last transaction. */
static void test_head_count(void **state)
{
    (void)state;
    expect_violation("UPDATE tenants SET tx_seq = tx_seq + 1;", "I7");
}

static void test_head_hash(void **state)
{
    (void)state;
    expect_violation("UPDATE tenants SET chain_head = zeroblob(32);", "I7");
}

static void test_edited_balance(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET value = value + 5 WHERE kind = 0;", "I2");
}

/* A member's account with a second balance row, the two summing to its
 * postings: only the count of rows sees it. */
static void test_balance_with_two_rows(void **state)
{
    (void)state;
    expect_violation("INSERT INTO accounts SELECT tenant_id, 'member:' || member_id || ':points', 0"
                     " FROM member_accounts WHERE account = 0 LIMIT 1;",
                     "I2");
}

static void test_edited_lot(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET remaining = remaining - 1 WHERE remaining > 0;", "I4");
}

/* A lot whose amount was raised with what remains of it agrees with its
 * consumptions, but the member's lots no longer add up to the member's
 * points. */
static void test_lots_differ_from_points(void **state)
{
    (void)state;
    expect_violation(
        "UPDATE lots SET amount = amount + 1, remaining = remaining + 1 WHERE tx_seq = 1;", "I4");
}

static void test_consumption_of_missing_lot(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO consumptions(tenant_id, tx_seq, lot_seq, amount, created_at)"
        " SELECT tenant_id, tx_seq, 1 << 40, amount, created_at FROM consumptions LIMIT 1;",
        "I4");
}

/* The lots table's CHECK keeps what remains of a lot within [0, amount], and
 * F1 reports a row that breaks it (quick_check tests CHECK constraints), so
 * these two cases take the CHECK out of the schema as well: verify must not
 * lean on it.  Each keeps the lot equal to its amount minus its consumptions,
 * and the member's points equal to the member's lots. */
#define LOTS_WITHOUT_CHECK                                                                         \
    "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = replace(sql,"                     \
    " 'CHECK(remaining >= 0 AND remaining <= amount)', '') WHERE name = 'lots';"                   \
    "PRAGMA writable_schema = OFF; PRAGMA ignore_check_constraints = ON;"

/* Member a's first lot spent 50 of 100; its amount lowered by 60 leaves -10. */
static void test_lot_below_zero(void **state)
{
    (void)state;
    expect_violation(
        LOTS_WITHOUT_CHECK
        "UPDATE lots SET amount = amount - 60, remaining = remaining - 60 WHERE tx_seq = 1;"
        "UPDATE member_state SET value = value - 60 WHERE kind = 0 AND key1 = 0 AND member_seq ="
        " (SELECT seq FROM members WHERE external_id = 'a');",
        "I4");
}

/* The refund's return restored 10 points to member d's lot of 50 (a negative
 * consumption); 20 more restored leave 60 in it. */
static void test_lot_above_its_amount(void **state)
{
    (void)state;
    expect_violation(
        LOTS_WITHOUT_CHECK
        "INSERT INTO consumptions SELECT tenant_id, tx_seq, lot_seq, -20, created_at"
        " FROM consumptions WHERE amount < 0;"
        "UPDATE lots SET remaining = remaining + 20 WHERE seq = (SELECT lot_seq FROM consumptions"
        " WHERE amount < 0 LIMIT 1);"
        "UPDATE member_state SET value = value + 20 WHERE kind = 0 AND key1 = 0 AND member_seq ="
        " (SELECT seq FROM members WHERE external_id = 'd');",
        "I4");
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

/* An expired lot with a point left in it (its amount raised to match). */
static void test_expired_lot_not_emptied(void **state)
{
    (void)state;
    expect_violation(
        "UPDATE lots SET amount = amount + 1, remaining = 1 WHERE seq = (SELECT MIN(seq) FROM lots"
        " WHERE expired_tx_seq IS NOT NULL);",
        "I10");
}

/* What a lot lost to expiry, recorded on a lot that never expired. */
static void test_expired_amount_of_open_lot(void **state)
{
    (void)state;
    expect_violation("UPDATE lots SET expired_amount = 1 WHERE seq = (SELECT MIN(seq) FROM lots"
                     " WHERE expired_tx_seq IS NULL);",
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

/* Held points (a member's open holds) never go below zero, whatever the
 * debt. */
static void test_held_below_zero(void **state)
{
    (void)state;
    expect_violation("INSERT INTO member_state SELECT seq, 0, 2, 0, 0, 0, -1 FROM members"
                     " WHERE external_id = 'a';",
                     "I3");
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

/* A transfer has an entry for each party; the receiver's is gone. */
static void test_missing_counterparty_entry(void **state)
{
    (void)state;
    expect_violation(
        "DELETE FROM member_state WHERE kind = 2 AND key1 = (SELECT seq FROM transactions"
        " WHERE type = 'transfer') AND member_seq = (SELECT seq FROM members"
        " WHERE external_id = 'b');",
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

/* A member's due entry (member_due, schema version 18) and its due row in
 * member_state, each check on its own: an entry later than the member's
 * earliest lot that expires (both moved), an entry the row does not name, a
 * row without its entry, and the row gone. */
static void test_due_entry_late(void **state)
{
    (void)state;
    expect_violation("UPDATE member_due SET due_at = due_at + 1;"
                     "UPDATE member_state SET value = value + 1 WHERE kind = 0 AND key1 = 3;",
                     "S2");
}

static void test_due_entry_extra(void **state)
{
    (void)state;
    expect_violation("INSERT INTO member_due SELECT tenant_id, due_at - 1, member_seq"
                     " FROM member_due LIMIT 1;",
                     "S2");
}

static void test_due_entry_missing(void **state)
{
    (void)state;
    expect_violation("DELETE FROM member_due;", "S2");
}

/* A member's pending mark earlier than its pending lot (schema v23): the
 * mark the earn set, then one a millisecond short of the lot. */
static void test_pending_mark_too_early(void **state)
{
    (void)state;
    expect_violation("UPDATE members SET pending_until = 0;", "S3");
    assert_int_equal(remove_ledger(NULL), 0); /* the teardown removes the second copy */
    expect_violation(
        "UPDATE members SET pending_until = (SELECT MAX(l.available_at) - 1 FROM lots l"
        " WHERE l.member_id = members.id AND l.available_at > l.created_at)"
        " WHERE pending_until > 0;",
        "S3");
}

/* Row and entry both gone: only the first check sees it. */
static void test_due_row_missing(void **state)
{
    (void)state;
    expect_violation(
        "DELETE FROM member_state WHERE kind = 0 AND key1 = 3; DELETE FROM member_due;", "S2");
}

/* Adds a second tenant to the case's copy: a member with points that
 * expire and points that do not. */
static void add_second_tenant(void)
{
    jf_engine_options o = {.db_path = db_path, .test_clock = true};
    jf_engine *eng = NULL;
    char err[256], tenant[64], key[128], e[64];
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    assert_int_equal(jf_tenant_create(eng, "w", tenant, sizeof(tenant), key, sizeof(key)), JF_OK);
    jf_auth auth;
    assert_int_equal(jf_tenant_auth(eng, tenant, &auth), JF_OK);
    run(eng, &auth, JF_OP_MEMBER_CREATE, NULL, NULL, "{\"external_id\":\"e\"}", e);
    run(eng, &auth, JF_OP_EARN, e, "k1", "{\"points\":9,\"expires_at\":\"2100-01-01T00:00:00Z\"}",
        NULL);
    run(eng, &auth, JF_OP_EARN, e, "k2", "{\"points\":4}", NULL);
    jf_engine_free(eng);
}

/* verify reads the lots once for every tenant (check_lots_all): a second
 * tenant's ledger is clean beside the first's, and what is wrong with its
 * lots is reported of it (tenant 2), not of the first. */
static void test_second_tenants_lots(void **state)
{
    (void)state;
    copy_ledger();
    add_second_tenant();
    expect_clean(db_path, "a ledger of two tenants");
    tamper(
        "UPDATE lots SET remaining = remaining - 1 WHERE tenant_id = 2 AND expires_at IS NOT"
        " NULL; DELETE FROM member_due WHERE tenant_id = 2; DELETE FROM member_state WHERE"
        " kind = 0 AND key1 = 3 AND member_seq IN (SELECT seq FROM members WHERE tenant_id = 2);");
    char *report = violations_report();
    expect_in(report, "tenant 2: lot remaining differs from amount minus consumptions");
    expect_in(report, "tenant 2: member lots minus debt differ from the points balance");
    expect_in(report, "tenant 2: member with a lot that expires and no due entry");
    expect_in(report, "tenant 2: lot without its entry in member_state");
    if (strstr(report, "tenant 1:") != NULL)
        fail_msg("the first tenant is blamed: %s", report);
    free(report);
}

/* An entry and a due row, agreeing, of no member of the tenant. */
static void test_due_entry_of_no_member(void **state)
{
    (void)state;
    expect_violation("INSERT INTO member_state VALUES(1 << 40, 0, 3, 0, 0, 0, 5);"
                     "INSERT INTO member_due SELECT id, 5, 1 << 40 FROM tenants;",
                     "S2");
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

/* A transaction entry's own time, and the amount of the order it earned on. */
static void test_entry_time(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET key2 = key2 + 1 WHERE kind = 2 AND key1 = 1;", "S1");
}

static void test_entry_order_amount(void **state)
{
    (void)state;
    expect_violation("UPDATE member_state SET key3 = key3 + 1 WHERE kind = 2 AND key3 > 0;", "S1");
}

static void test_tier_without_change(void **state)
{
    (void)state;
    expect_violation("UPDATE members SET tier = 'silver' WHERE tier = 'gold';", "T2");
}

/* A tier on a member that never had a tier change. */
static void test_tier_without_any_change(void **state)
{
    (void)state;
    expect_violation("UPDATE members SET tier = 'gold' WHERE external_id = 'a';", "T2");
}

/* Member b's earn gave 50 growth and its reversal took back 25; the earn's
 * growth posting lowered to 20 (the member's growth balance untouched). */
static void test_growth_reversed_beyond_earn(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER transactions_no_update; UPDATE transactions SET"
        " p0_amount = p0_amount - CASE WHEN p0_account LIKE '%:growth' THEN 30 ELSE 0 END,"
        " p1_amount = p1_amount - CASE WHEN p1_account LIKE '%:growth' THEN 30 ELSE 0 END,"
        " p2_amount = p2_amount - CASE WHEN p2_account LIKE '%:growth' THEN 30 ELSE 0 END,"
        " p3_amount = p3_amount - CASE WHEN p3_account LIKE '%:growth' THEN 30 ELSE 0 END,"
        " p4_amount = p4_amount - CASE WHEN p4_account LIKE '%:growth' THEN 30 ELSE 0 END,"
        " p5_amount = p5_amount - CASE WHEN p5_account LIKE '%:growth' THEN 30 ELSE 0 END"
        " WHERE idem_key = 'k4';",
        "T1");
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

static void test_edited_rule_award_count(void **state)
{
    (void)state;
    expect_violation("UPDATE rule_usage SET awards = awards + 1;", "A2");
}

static void test_rule_usage_without_awards(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO rule_usage SELECT tenant_id, 'rul_of_no_award', 0, 0 FROM rule_usage LIMIT 1;",
        "A2");
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

/* A cap entry's points are not part of its key: only the comparison with its
 * award finds them edited. */
static void test_edited_award_cap_points(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER award_caps_no_update; UPDATE award_caps SET points = points + 1"
                     " WHERE tx_seq = (SELECT MIN(tx_seq) FROM award_caps);",
                     "A3");
}

static void test_award_cap_without_award(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO award_caps SELECT tenant_id, rule_id, member_id, created_at, tx_seq + 1000,"
        " n, points FROM award_caps LIMIT 1;",
        "A3");
}

/* A second cap entry for an award that keeps its own, naming another rule,
 * member or time: award_caps is keyed by those, so the award still finds its
 * own entry. */
static void test_award_cap_of_another_rule(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO award_caps SELECT tenant_id, rule_id || 'x', member_id, created_at, tx_seq,"
        " n, points FROM award_caps LIMIT 1;",
        "A3");
}

static void test_award_cap_of_another_member(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO award_caps SELECT tenant_id, rule_id, member_id || 'x', created_at, tx_seq,"
        " n, points FROM award_caps LIMIT 1;",
        "A3");
}

static void test_award_cap_of_another_time(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO award_caps SELECT tenant_id, rule_id, member_id, created_at + 1, tx_seq,"
        " n, points FROM award_caps LIMIT 1;",
        "A3");
}

#define O5_SEQ "(SELECT seq FROM transactions WHERE order_id = 'o5')"

/* A1 on the earn of order o5 (one award of 5 points and its lot): the award
 * and its lot raised together no longer sum to the transaction's points; the
 * lot alone differs from its award; the award names another earn's lot of
 * the same amount, or no lot; a second award of no points names a lot. */
static void test_awards_differ_from_points(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER awards_no_update; UPDATE awards SET points = points + 1"
        " WHERE tx_seq = " O5_SEQ ";"
        "UPDATE lots SET amount = amount + 1, remaining = remaining + 1 WHERE tx_seq = " O5_SEQ ";",
        "A1");
}

static void test_award_lot_amount(void **state)
{
    (void)state;
    expect_violation(
        "UPDATE lots SET amount = amount + 1, remaining = remaining + 1 WHERE tx_seq = " O5_SEQ ";",
        "A1");
}

static void test_award_lot_of_another_transaction(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER awards_no_update; UPDATE awards SET lot_seq = (SELECT lot_seq FROM awards"
        " WHERE tx_seq = (SELECT seq FROM transactions WHERE order_id = 'o6'))"
        " WHERE tx_seq = " O5_SEQ ";",
        "A1");
}

static void test_award_lot_missing(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER awards_no_update;"
                     "UPDATE awards SET lot_seq = 1 << 40 WHERE tx_seq = " O5_SEQ ";",
                     "A1");
}

static void test_zero_award_with_lot(void **state)
{
    (void)state;
    expect_violation(
        "INSERT INTO awards SELECT tenant_id, tx_seq, n + 1, member_id, rule_id, rule_version, 0,"
        " lot_seq, explanation, created_at, growth FROM awards WHERE tx_seq = " O5_SEQ ";",
        "A1");
}

/* The reversal of member b's earn made to take back more than the earn gave. */
static void test_reversed_more_than_original(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER transactions_no_update; UPDATE transactions SET points = points + 100"
        " WHERE type = 'reverse' AND order_id IS NULL;",
        "I6");
}

static void test_restored_more_than_consumed(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER restores_no_update; UPDATE restores SET amount = amount + 100;",
                     "I6");
}

/* I5: a key on two transactions; a stored response naming a transaction of
 * another key; a key whose stored response is gone. */
static void test_idempotency_key_twice(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update;"
                     "UPDATE transactions SET idem_key = 'k1' WHERE type = 'expire';",
                     "I5");
}

static void test_response_of_another_transaction(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER idempotency_no_update; UPDATE idempotency SET tx_id = (SELECT id"
                     " FROM transactions WHERE seq = 2) WHERE key = 'k1';",
                     "I5");
}

/* k3's transfer keeps its answer whole (an earn's is rebuilt, idem.c). */
static void test_key_without_response(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER responses_no_delete; DELETE FROM responses WHERE seq = (SELECT response_seq"
        " FROM idempotency WHERE key = 'k3');",
        "I5");
}

/* Order o7's refund: its lines differ from it; it and its lines exceed the
 * order; it names an order that never earned; its clawback exceeds what the
 * order earned; its return differs from its reverse transactions.  Then
 * member d's check-in: its points differ from its earn's, or it names no
 * earn. */
static void test_refund_lines_differ(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER refund_lines_no_update; UPDATE refund_lines SET amount = amount + 1;", "R1");
}

static void test_refunds_exceed_order(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER refund_lines_no_update; DROP TRIGGER refunds_no_update;"
                     "UPDATE refund_lines SET amount = amount + 10000;"
                     "UPDATE refunds SET amount = amount + 10000;",
                     "R1");
}

static void test_refund_of_unknown_order(void **state)
{
    (void)state;
    const char *const both[] = {"R1", "R2", NULL};
    expect_violations(
        "DROP TRIGGER refund_lines_no_update; DROP TRIGGER refunds_no_update;"
        "UPDATE refund_lines SET order_id = 'o-none'; UPDATE refunds SET order_id = 'o-none';",
        both);
}

static void test_clawback_exceeds_earn(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER refunds_no_update;"
                     "UPDATE refunds SET clawback_points = clawback_points + 100;",
                     "R2");
}

static void test_refund_differs_from_reversals(void **state)
{
    (void)state;
    expect_violation(
        "DROP TRIGGER refunds_no_update; UPDATE refunds SET returned_points = returned_points + 1;",
        "R3");
}

/* Order o8's lines, kept in its earn's row: a line's points or amount
 * edited, or text that is not lines.  Then order o5, earned without lines:
 * lines of it in order_lines, as a database from before schema version 24
 * keeps them, that add up (clean) or do not. */
#define O8_LINES_SET(path, change)                                                                 \
    "DROP TRIGGER transactions_no_update; UPDATE transactions SET order_lines ="                   \
    " json_set(order_lines, '" path "', (order_lines ->> '" path "')" change ")"                   \
    " WHERE order_lines IS NOT NULL;"

static void test_order_line_points(void **state)
{
    (void)state;
    expect_violation(O8_LINES_SET("$[0][3]", " + 1"), "L1");
}

static void test_order_line_amount(void **state)
{
    (void)state;
    expect_violation(O8_LINES_SET("$[1][1]", " - 1"), "L1");
}

static void test_order_lines_not_lines(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER transactions_no_update; UPDATE transactions SET order_lines ="
                     " '{\"lines\": 1}' WHERE order_lines IS NOT NULL;",
                     "L1");
}

#define O5_LINE_ROW(points)                                                                        \
    "INSERT INTO order_lines(tenant_id, order_id, n, sku, amount, quantity, points)"               \
    " SELECT tenant_id, order_id, 0, 'S', order_amount, 1, " points " FROM transactions"           \
    " WHERE order_id = 'o5' AND type = 'earn';"

static void test_old_order_lines_are_clean(void **state)
{
    (void)state;
    copy_ledger();
    tamper(O5_LINE_ROW("points"));
    expect_clean(db_path, "a ledger with an order's lines in order_lines");
}

static void test_old_order_lines(void **state)
{
    (void)state;
    expect_violation(O5_LINE_ROW("points + 1"), "L1");
}

static void test_check_in_points(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER checkins_no_update; UPDATE checkins SET points = points + 1;",
                     "G1");
}

static void test_check_in_without_earn(void **state)
{
    (void)state;
    expect_violation("DROP TRIGGER checkins_no_update; UPDATE checkins SET tx_id = NULL;", "G1");
}

/* The symptom of SQLite's WAL-reset race: a table's pages hold another
 * table's records.  Pointing posting_rows at member_state's tree makes it. */
static void test_pages_of_another_tree(void **state)
{
    (void)state;
    expect_violation("PRAGMA writable_schema = ON;"
                     "UPDATE sqlite_schema SET rootpage = (SELECT rootpage FROM sqlite_schema"
                     " WHERE name = 'member_state') WHERE name = 'posting_rows';",
                     "F1");
}

/* PRAGMA quick_check failing outright, not reporting a finding (SQLite
 * 3.40 answers a corrupt page, or a record that overruns its cell, with a
 * row; running out of memory or an I/O error stops it): F1 with the error,
 * and no ledger check runs on what could not be read.  A first verify leaves
 * a read connection in the engine's pool with its statements prepared; then
 * every SQLite allocation from the k-th on fails, for k = 0, 1, ... until one
 * fails inside quick_check. */
static void test_file_check_fails(void **state)
{
    (void)state;
    copy_ledger();
    jf_engine_options o = {.db_path = db_path, .no_writer = true};
    jf_engine *eng = NULL;
    char err[256], *report = NULL;
    int64_t n = -1;
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    assert_int_equal(jf_verify(eng, &report, &n), JF_OK);
    assert_int_equal(n, 0);
    free(report);
    bool found = false;
    for (long k = 0; k < 1000 && !found; k++) {
        report = NULL;
        atomic_store(&sqlite_allocs_left, k);
        jf_err verified = jf_verify(eng, &report, &n);
        atomic_store(&sqlite_allocs_left, -1);
        found = verified == JF_OK && strstr(report, "\"F1\"") != NULL &&
                strstr(report, "out of memory") != NULL;
        free(report);
    }
    jf_engine_free(eng);
    if (!found)
        fail_msg("no failed allocation made quick_check fail");
}

int main(void)
{
    rig_sqlite_allocator();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_edited_posting, remove_ledger),
        cmocka_unit_test_teardown(test_postings_as_rows_are_clean, remove_ledger),
        cmocka_unit_test_teardown(test_edited_posting_row, remove_ledger),
        cmocka_unit_test_teardown(test_postings_in_both_places, remove_ledger),
        cmocka_unit_test_teardown(test_edited_points, remove_ledger),
        cmocka_unit_test_teardown(test_deleted_transaction, remove_ledger),
        cmocka_unit_test_teardown(test_edited_hash, remove_ledger),
        cmocka_unit_test_teardown(test_longer_hash, remove_ledger),
        cmocka_unit_test_teardown(test_longer_previous_hash, remove_ledger),
        cmocka_unit_test_teardown(test_edited_previous_hash, remove_ledger),
        cmocka_unit_test_teardown(test_head_count, remove_ledger),
        cmocka_unit_test_teardown(test_head_hash, remove_ledger),
        cmocka_unit_test_teardown(test_edited_balance, remove_ledger),
        cmocka_unit_test_teardown(test_balance_with_two_rows, remove_ledger),
        cmocka_unit_test_teardown(test_edited_lot, remove_ledger),
        cmocka_unit_test_teardown(test_lots_differ_from_points, remove_ledger),
        cmocka_unit_test_teardown(test_consumption_of_missing_lot, remove_ledger),
        cmocka_unit_test_teardown(test_lot_below_zero, remove_ledger),
        cmocka_unit_test_teardown(test_lot_above_its_amount, remove_ledger),
        cmocka_unit_test_teardown(test_edited_expired_amount, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_of_other_points, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_not_recorded, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_by_another_transaction, remove_ledger),
        cmocka_unit_test_teardown(test_expiry_as_consumption, remove_ledger),
        cmocka_unit_test_teardown(test_expired_lot_not_emptied, remove_ledger),
        cmocka_unit_test_teardown(test_expired_amount_of_open_lot, remove_ledger),
        cmocka_unit_test_teardown(test_negative_growth, remove_ledger),
        cmocka_unit_test_teardown(test_tier_without_change, remove_ledger),
        cmocka_unit_test_teardown(test_tier_without_any_change, remove_ledger),
        cmocka_unit_test_teardown(test_growth_reversed_beyond_earn, remove_ledger),
        cmocka_unit_test_teardown(test_points_below_debt, remove_ledger),
        cmocka_unit_test_teardown(test_held_below_zero, remove_ledger),
        cmocka_unit_test_teardown(test_edited_lot_entry, remove_ledger),
        cmocka_unit_test_teardown(test_lot_entry_without_lot, remove_ledger),
        cmocka_unit_test_teardown(test_missing_transaction_entry, remove_ledger),
        cmocka_unit_test_teardown(test_missing_counterparty_entry, remove_ledger),
        cmocka_unit_test_teardown(test_transaction_entry_of_another_member, remove_ledger),
        cmocka_unit_test_teardown(test_entry_of_no_member, remove_ledger),
        cmocka_unit_test_teardown(test_due_entry_late, remove_ledger),
        cmocka_unit_test_teardown(test_due_entry_extra, remove_ledger),
        cmocka_unit_test_teardown(test_due_entry_missing, remove_ledger),
        cmocka_unit_test_teardown(test_due_row_missing, remove_ledger),
        cmocka_unit_test_teardown(test_pending_mark_too_early, remove_ledger),
        cmocka_unit_test_teardown(test_due_entry_of_no_member, remove_ledger),
        cmocka_unit_test_teardown(test_transaction_entry_growth, remove_ledger),
        cmocka_unit_test_teardown(test_tenant_latest_time, remove_ledger),
        cmocka_unit_test_teardown(test_entry_latest_time, remove_ledger),
        cmocka_unit_test_teardown(test_entry_time, remove_ledger),
        cmocka_unit_test_teardown(test_entry_order_amount, remove_ledger),
        cmocka_unit_test_teardown(test_edited_rule_usage, remove_ledger),
        cmocka_unit_test_teardown(test_missing_rule_usage, remove_ledger),
        cmocka_unit_test_teardown(test_edited_rule_award_count, remove_ledger),
        cmocka_unit_test_teardown(test_rule_usage_without_awards, remove_ledger),
        cmocka_unit_test_teardown(test_missing_award_cap, remove_ledger),
        cmocka_unit_test_teardown(test_edited_award_cap, remove_ledger),
        cmocka_unit_test_teardown(test_edited_award_cap_points, remove_ledger),
        cmocka_unit_test_teardown(test_award_cap_without_award, remove_ledger),
        cmocka_unit_test_teardown(test_award_cap_of_another_rule, remove_ledger),
        cmocka_unit_test_teardown(test_award_cap_of_another_member, remove_ledger),
        cmocka_unit_test_teardown(test_award_cap_of_another_time, remove_ledger),
        cmocka_unit_test_teardown(test_awards_differ_from_points, remove_ledger),
        cmocka_unit_test_teardown(test_award_lot_amount, remove_ledger),
        cmocka_unit_test_teardown(test_award_lot_of_another_transaction, remove_ledger),
        cmocka_unit_test_teardown(test_award_lot_missing, remove_ledger),
        cmocka_unit_test_teardown(test_zero_award_with_lot, remove_ledger),
        cmocka_unit_test_teardown(test_reversed_more_than_original, remove_ledger),
        cmocka_unit_test_teardown(test_restored_more_than_consumed, remove_ledger),
        cmocka_unit_test_teardown(test_idempotency_key_twice, remove_ledger),
        cmocka_unit_test_teardown(test_response_of_another_transaction, remove_ledger),
        cmocka_unit_test_teardown(test_key_without_response, remove_ledger),
        cmocka_unit_test_teardown(test_refund_lines_differ, remove_ledger),
        cmocka_unit_test_teardown(test_refunds_exceed_order, remove_ledger),
        cmocka_unit_test_teardown(test_refund_of_unknown_order, remove_ledger),
        cmocka_unit_test_teardown(test_clawback_exceeds_earn, remove_ledger),
        cmocka_unit_test_teardown(test_refund_differs_from_reversals, remove_ledger),
        cmocka_unit_test_teardown(test_order_line_points, remove_ledger),
        cmocka_unit_test_teardown(test_order_line_amount, remove_ledger),
        cmocka_unit_test_teardown(test_order_lines_not_lines, remove_ledger),
        cmocka_unit_test_teardown(test_old_order_lines_are_clean, remove_ledger),
        cmocka_unit_test_teardown(test_old_order_lines, remove_ledger),
        cmocka_unit_test_teardown(test_check_in_points, remove_ledger),
        cmocka_unit_test_teardown(test_check_in_without_earn, remove_ledger),
        cmocka_unit_test_teardown(test_pages_of_another_tree, remove_ledger),
        cmocka_unit_test_teardown(test_file_check_fails, remove_ledger),
        cmocka_unit_test_teardown(test_second_tenants_lots, remove_ledger),
    };
    return cmocka_run_group_tests(tests, make_clean_ledger, remove_clean_ledger);
}
