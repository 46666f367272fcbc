/*
 * The schema as the migrations leave it (src/store/schema.c).  Version 9
 * spells CHECK constraints without IN lists, because SQLite checks an IN
 * list of three or more constants through an ephemeral B-tree it builds for
 * every row.  Each case migrates a new file on one connection and looks at
 * the programs SQLite compiles on that same connection: no INSERT into any
 * table opens an ephemeral B-tree, and the constraints still refuse what
 * they refused before.
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

#include "tmpdb.h"

static int setup(void **state)
{
    tmpdb *t = tmpdb_open("schema");
    assert_non_null(t);
    assert_int_equal(jf_db_migrate(&t->db), JF_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    assert_true(tmpdb_close(*state));
    return 0;
}

/* How many OpenEphemeral instructions the program of sql has. */
static int ephemeral_opens(sqlite3 *h, const char *sql)
{
    char explain[256];
    snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h, explain, -1, &st, NULL), SQLITE_OK);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        n += strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") == 0;
    sqlite3_finalize(st);
    return n;
}

/* Every table's INSERT, CHECK constraints included, on the connection that
 * ran the migrations: it must read the new definitions, not keep the ones
 * it parsed when it created the tables. */
static void test_inserts_build_no_ephemeral_tree(void **state)
{
    tmpdb *f = *state;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(f->db.h,
                                        "SELECT name FROM sqlite_schema WHERE type = 'table'"
                                        " AND name NOT LIKE 'sqlite_%' ORDER BY name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    int tables = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char sql[160];
        snprintf(sql, sizeof(sql), "INSERT INTO \"%s\" DEFAULT VALUES",
                 (const char *)sqlite3_column_text(st, 0));
        if (ephemeral_opens(f->db.h, sql) != 0)
            fail_msg("%s opens an ephemeral B-tree", sql);
        tables++;
    }
    sqlite3_finalize(st);
    assert_true(tables >= 28);
    int64_t left = -1;
    assert_int_equal(jf_db_int(&f->db, &left, -1,
                               "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%CHECK(% IN (%'",
                               ""),
                     JF_OK);
    assert_int_equal(left, 0);
}

/* Runs sql in a transaction that is rolled back; returns its result code. */
static int try_insert(jf_db *db, const char *sql)
{
    assert_int_equal(jf_db_exec(db, "BEGIN"), JF_OK);
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    int ext = sqlite3_extended_errcode(db->h);
    assert_int_equal(jf_db_exec(db, "ROLLBACK"), JF_OK);
    return rc == SQLITE_OK ? SQLITE_OK : ext;
}

static void test_checks_still_refuse(void **state)
{
    tmpdb *f = *state;
    static const char *const kinds[] = {"0", "1", "2", "3", "-1"};
    for (int i = 0; i < 5; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO member_state VALUES(1, %s, 0, 0, 0, 0, 0)",
                 kinds[i]);
        assert_int_equal(try_insert(&f->db, sql), i < 3 ? SQLITE_OK : SQLITE_CONSTRAINT_CHECK);
    }
    static const char *const types[] = {"earn", "reverse", "transfer", "bogus", "Earn", ""};
    for (int i = 0; i < 6; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO transactions(txkey, id, type, points, delta, actor,"
                 " created_at, prev_hash, hash) VALUES((1 << 44) + 1, 't', '%s', 0, 0, 'a', 0,"
                 " x'', x'')",
                 types[i]);
        assert_int_equal(try_insert(&f->db, sql), i < 3 ? SQLITE_OK : SQLITE_CONSTRAINT_CHECK);
    }
    /* Since version 22 the tenant and seq are the rowid's halves (db.h,
     * JF_TX_KEY_SQL), and a seq of 0 is still refused. */
    assert_int_equal(try_insert(&f->db, "INSERT INTO transactions(txkey, id, type, points, delta,"
                                        " actor, created_at, prev_hash, hash) VALUES("
                                        "(7 << 44) + 0, 't', 'earn', 0, 0, 'a', 0, x'', x'')"),
                     SQLITE_CONSTRAINT_CHECK);
    assert_int_equal(jf_db_exec(&f->db, "BEGIN"), JF_OK);
    static const int64_t tenants[] = {1, (INT64_C(1) << 19) - 1, INT64_C(1) << 19,
                                      JF_TXID_TENANT_MAX};
    for (size_t i = 0; i < sizeof tenants / sizeof tenants[0]; i++)
        for (int64_t seq = 1; seq <= JF_TXID_SEQ_MAX;
             seq = seq == 1 ? 2 : JF_TXID_SEQ_MAX + seq - 2)
            assert_int_equal(jf_db_run(&f->db,
                                       "INSERT INTO transactions(txkey, id, type, points, delta,"
                                       " actor, created_at, prev_hash, hash) VALUES(" JF_TX_KEY_SQL(
                                           "?1", "?2") ", 't', 'earn', 0, 0, 'a', 0,"
                                                       " x'', x'')",
                                       "II", tenants[i], seq),
                             JF_OK);
    for (size_t i = 0; i < sizeof tenants / sizeof tenants[0]; i++) {
        /* Its seqs 1, 2 and JF_TXID_SEQ_MAX, by its virtual columns, by its
         * range and by the transaction list's bounds (reads.c). */
        int64_t n = 0, sum = 0;
        assert_int_equal(jf_db_int(&f->db, &n, 0,
                                   "SELECT count(*) FROM transactions WHERE tenant_id = ?", "I",
                                   tenants[i]),
                         JF_OK);
        assert_int_equal(n, 3);
        assert_int_equal(jf_db_int(&f->db, &sum, 0,
                                   "SELECT sum(seq) FROM transactions t WHERE " JF_TX_OF_TENANT_SQL(
                                       "t.txkey", "?1") " AND tenant_id = ?1",
                                   "I", tenants[i]),
                         JF_OK);
        assert_int_equal(sum, JF_TXID_SEQ_MAX + 3);
        assert_int_equal(
            jf_db_int(
                &f->db, &n, 0,
                "SELECT count(*) FROM transactions t WHERE t.txkey >= " JF_TX_KEY_SQL(
                    "?1", "0") " AND t.txkey < " JF_TX_KEY_SQL("?1", "?2") " AND tenant_id = ?1",
                "II", tenants[i], JF_TXID_SEQ_MAX + 1),
            JF_OK);
        assert_int_equal(n, 3);
    }
    assert_int_equal(jf_db_exec(&f->db, "ROLLBACK"), JF_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inserts_build_no_ephemeral_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checks_still_refuse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
