/*
 * Hot rows (src/core/hot.c): the chain head, program accounts and rules'
 * usage the writer keeps in memory for a batch.  Each case runs the table against a real
 * database with two tenants and reads the stored rows back: what is kept
 * reaches the rows once, at the flush; a rolled-back command's changes are
 * undone; a full table reads and writes directly; the range and the chain's
 * order are still enforced.
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
#include "tmpdir.h"

typedef struct fixture {
    char dir[64], path[96];
    jf_db db;
    jf_engine eng; /* only .hot is used */
    jf_auth auth[2];
    char detail[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_true(tmpdir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "hot", "h.db"));
    jf_engine_options o = {.db_path = f->path, .expiry_interval_s = 0};
    jf_engine *eng = NULL;
    char err[256];
    assert_int_equal(jf_engine_open(&o, &eng, err, sizeof(err)), JF_OK);
    for (int i = 0; i < 2; i++)
        assert_true(tmpdir_tenant(eng, i ? "b" : "a", &f->auth[i], NULL, 0));
    jf_engine_free(eng);
    assert_int_equal(jf_db_open(&f->db, f->path, false), JF_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    jf_hot_free(f->eng.hot);
    jf_db_close(&f->db);
    assert_true(tmpdir_remove(f->dir));
    free(f);
    return 0;
}

static jf_ctx ctx_of(fixture *f, int tenant)
{
    return (jf_ctx){.eng = &f->eng, .db = &f->db, .auth = &f->auth[tenant], .detail = f->detail};
}

/* The stored tx_seq and first byte of the chain head of a tenant. */
static void stored_chain(fixture *f, int tenant, int64_t *seq, int *head0)
{
    sqlite3_stmt *st = jf_db_query(&f->db, "SELECT tx_seq, chain_head FROM tenants WHERE id=?", "I",
                                   f->auth[tenant].tenant);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *seq = sqlite3_column_int64(st, 0);
    *head0 = ((const uint8_t *)sqlite3_column_blob(st, 1))[0];
    sqlite3_reset(st);
}

static int64_t stored_time_max(fixture *f, int tenant)
{
    int64_t t = -1;
    assert_int_equal(jf_db_int(&f->db, &t, -1, "SELECT tx_time_max FROM tenants WHERE id=?", "I",
                               f->auth[tenant].tenant),
                     JF_OK);
    return t;
}

static int64_t stored_balance(fixture *f, int tenant, const char *account)
{
    int64_t b = -1;
    assert_int_equal(jf_db_int(&f->db, &b, 0,
                               "SELECT balance FROM accounts WHERE tenant_id=? AND account=?", "Is",
                               f->auth[tenant].tenant, account),
                     JF_OK);
    return b;
}

/* One transaction on the chain: the next seq, head bytes head0, the latest
 * time 5 ms on. */
static void chain_step(jf_ctx *ctx, int head0)
{
    jf_chain_head head;
    assert_int_equal(jf_hot_chain_get(ctx, &head), JF_OK);
    head.seq++;
    head.time_max += 5;
    memset(head.hash, head0, sizeof(head.hash));
    assert_int_equal(jf_hot_chain_set(ctx, &head), JF_OK);
}

static void add(jf_ctx *ctx, int64_t amount, int64_t want)
{
    int64_t balance = 0;
    assert_int_equal(jf_hot_account_add(ctx, "program:issuance", amount, &balance), JF_OK);
    assert_int_equal(balance, want);
}

static void test_kept_until_flush(void **state)
{
    fixture *f = *state;
    f->eng.hot = jf_hot_new(8);
    jf_ctx a = ctx_of(f, 0);
    int64_t seq = 0;
    int head0 = 0;
    assert_int_equal(jf_db_exec(&f->db, "BEGIN IMMEDIATE"), JF_OK);
    jf_hot_cmd_begin(f->eng.hot);
    chain_step(&a, 7);
    add(&a, -10, -10);
    jf_hot_cmd_begin(f->eng.hot);
    chain_step(&a, 8);
    add(&a, -5, -15);
    stored_chain(f, 0, &seq, &head0);
    assert_int_equal(seq, 0); /* nothing written before the flush */
    assert_int_equal(stored_balance(f, 0, "program:issuance"), 0);
    assert_int_equal(jf_hot_flush(f->eng.hot, &f->db), JF_OK);
    assert_int_equal(jf_db_exec(&f->db, "COMMIT"), JF_OK);
    stored_chain(f, 0, &seq, &head0);
    assert_int_equal(seq, 2);
    assert_int_equal(head0, 8);
    assert_int_equal(stored_balance(f, 0, "program:issuance"), -15);
}

static void test_rollback_undoes_one_command(void **state)
{
    fixture *f = *state;
    f->eng.hot = jf_hot_new(8);
    jf_ctx a = ctx_of(f, 0), b = ctx_of(f, 1);
    int64_t seq = 0;
    int head0 = 0;
    assert_int_equal(jf_db_exec(&f->db, "BEGIN IMMEDIATE"), JF_OK);
    jf_hot_cmd_begin(f->eng.hot);
    chain_step(&a, 1);
    add(&a, -10, -10);
    jf_hot_cmd_begin(f->eng.hot); /* refused: both tenants' changes go */
    chain_step(&a, 2);
    add(&a, -5, -15);
    chain_step(&b, 3);
    add(&b, -4, -4);
    jf_hot_cmd_rollback(f->eng.hot);
    jf_hot_cmd_begin(f->eng.hot);
    chain_step(&a, 4);
    add(&a, -7, -17);
    assert_int_equal(jf_hot_flush(f->eng.hot, &f->db), JF_OK);
    assert_int_equal(jf_db_exec(&f->db, "COMMIT"), JF_OK);
    stored_chain(f, 0, &seq, &head0);
    assert_int_equal(seq, 2);
    assert_int_equal(head0, 4);
    assert_int_equal(stored_time_max(f, 0), 10); /* the refused step's 5 ms went too */
    assert_int_equal(stored_balance(f, 0, "program:issuance"), -17);
    stored_chain(f, 1, &seq, &head0);
    assert_int_equal(seq, 0);
    assert_int_equal(stored_balance(f, 1, "program:issuance"), 0);
}

/* One row: tenant a's chain head is kept, everything else goes direct. */
static void test_full_table_writes_directly(void **state)
{
    fixture *f = *state;
    f->eng.hot = jf_hot_new(1);
    jf_ctx a = ctx_of(f, 0), b = ctx_of(f, 1);
    int64_t seq = 0;
    int head0 = 0;
    assert_int_equal(jf_db_exec(&f->db, "BEGIN IMMEDIATE"), JF_OK);
    jf_hot_cmd_begin(f->eng.hot);
    chain_step(&a, 5);
    add(&a, -10, -10);
    chain_step(&b, 6);
    chain_step(&b, 9);
    add(&b, -3, -3);
    /* The direct path checks the range too; the command's savepoint undoes the write. */
    int64_t balance = 0;
    assert_int_equal(jf_db_exec(&f->db, "SAVEPOINT cmd"), JF_OK);
    assert_int_equal(jf_hot_account_add(&b, "program:issuance", -JF_POINTS_MAX, &balance),
                     JF_ERR_POINTS_OVERFLOW);
    assert_int_equal(jf_db_exec(&f->db, "ROLLBACK TO cmd; RELEASE cmd"), JF_OK);
    assert_int_equal(stored_balance(f, 0, "program:issuance"), -10); /* direct */
    stored_chain(f, 1, &seq, &head0);
    assert_int_equal(seq, 2); /* direct */
    assert_int_equal(head0, 9);
    assert_int_equal(stored_time_max(f, 1), 10);
    stored_chain(f, 0, &seq, &head0);
    assert_int_equal(seq, 0); /* kept */
    assert_int_equal(jf_hot_flush(f->eng.hot, &f->db), JF_OK);
    assert_int_equal(jf_db_exec(&f->db, "COMMIT"), JF_OK);
    stored_chain(f, 0, &seq, &head0);
    assert_int_equal(seq, 1);
    assert_int_equal(head0, 5);
    assert_int_equal(stored_balance(f, 1, "program:issuance"), -3);
}

static void test_range_and_order_still_checked(void **state)
{
    fixture *f = *state;
    f->eng.hot = jf_hot_new(8);
    jf_ctx a = ctx_of(f, 0);
    int64_t balance = 0;
    jf_chain_head head;
    assert_int_equal(jf_db_exec(&f->db, "BEGIN IMMEDIATE"), JF_OK);
    jf_hot_cmd_begin(f->eng.hot);
    add(&a, -10, -10);
    assert_int_equal(jf_hot_account_add(&a, "program:issuance", -JF_POINTS_MAX, &balance),
                     JF_ERR_POINTS_OVERFLOW);
    add(&a, -1, -11); /* the refused add changed nothing */
    assert_int_equal(jf_hot_chain_get(&a, &head), JF_OK);
    head.seq += 2;
    assert_int_equal(jf_hot_chain_set(&a, &head), JF_ERR_INTERNAL);
    head.seq--;
    head.time_max = 10;
    assert_int_equal(jf_hot_chain_set(&a, &head), JF_OK);
    /* The latest time never goes back. */
    head.seq++;
    head.time_max = 9;
    assert_int_equal(jf_hot_chain_set(&a, &head), JF_ERR_INTERNAL);
    assert_int_equal(jf_hot_flush(f->eng.hot, &f->db), JF_OK);
    assert_int_equal(jf_db_exec(&f->db, "COMMIT"), JF_OK);
    assert_int_equal(stored_balance(f, 0, "program:issuance"), -11);
}

/* A rule's usage row as stored: points * 1000 + awards, -1 when none. */
static int64_t stored_usage(jf_db *db, const jf_auth *auth, const char *rule_id)
{
    int64_t v = -1;
    assert_int_equal(jf_db_int(db, &v, -1,
                               "SELECT points * 1000 + awards FROM rule_usage WHERE tenant_id=?"
                               " AND rule_id=?",
                               "Is", auth->tenant, rule_id),
                     JF_OK);
    return v;
}

/* Rule usage waits in the table until the batch's flush or a read's
 * jf_hot_usage_flush, which writes only the tenant's additions; a command
 * rolled back after such a flush, with its savepoint, gets back what it
 * had flushed of earlier commands; off the writer's connection it is
 * written at once. */
static void test_rule_usage(void **state)
{
    fixture *f = *state;
    jf_db *w = &f->eng.wdb;
    assert_int_equal(jf_db_open(w, f->path, false), JF_OK);
    f->eng.hot = jf_hot_new(8);
    jf_ctx a = ctx_of(f, 0), b = ctx_of(f, 1), off = ctx_of(f, 0);
    a.db = b.db = w;
    assert_int_equal(jf_db_exec(w, "BEGIN IMMEDIATE"), JF_OK);
    jf_hot_cmd_begin(f->eng.hot);
    assert_int_equal(jf_hot_usage_add(&a, "rul_a", 30, 1), JF_OK);
    assert_int_equal(jf_hot_usage_add(&a, "rul_a", 0, 0), JF_OK);
    assert_int_equal(jf_hot_usage_add(&b, "rul_a", 4, 1), JF_OK);
    assert_int_equal(stored_usage(w, a.auth, "rul_a"), -1);
    assert_int_equal(jf_hot_usage_flush(&a), JF_OK);
    assert_int_equal(stored_usage(w, a.auth, "rul_a"), 30001);
    assert_int_equal(stored_usage(w, b.auth, "rul_a"), -1); /* another tenant's waits */
    jf_hot_cmd_begin(f->eng.hot);
    assert_int_equal(jf_hot_usage_add(&a, "rul_a", 7, 1), JF_OK);
    jf_hot_cmd_begin(f->eng.hot); /* only flushes the earlier 7, then is undone */
    assert_int_equal(jf_db_exec(w, "SAVEPOINT cmd"), JF_OK);
    assert_int_equal(jf_hot_usage_flush(&a), JF_OK);
    assert_int_equal(stored_usage(w, a.auth, "rul_a"), 37002);
    assert_int_equal(jf_db_exec(w, "ROLLBACK TO cmd"), JF_OK);
    assert_int_equal(jf_db_exec(w, "RELEASE cmd"), JF_OK);
    jf_hot_cmd_rollback(f->eng.hot);
    assert_int_equal(stored_usage(w, a.auth, "rul_a"), 30001);
    assert_int_equal(jf_hot_flush(f->eng.hot, w), JF_OK);
    assert_int_equal(stored_usage(w, a.auth, "rul_a"), 37002);
    assert_int_equal(stored_usage(w, b.auth, "rul_a"), 4001);
    assert_int_equal(jf_db_exec(w, "COMMIT"), JF_OK);
    assert_int_equal(jf_hot_usage_add(&off, "rul_b", 2, 1), JF_OK); /* autocommit */
    assert_int_equal(jf_hot_usage_flush(&off), JF_OK);
    assert_int_equal(stored_usage(&f->db, a.auth, "rul_b"), 2001);
    assert_int_equal(stored_usage(&f->db, a.auth, "rul_a"), 37002);
    jf_db_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kept_until_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_undoes_one_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_table_writes_directly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_and_order_still_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
