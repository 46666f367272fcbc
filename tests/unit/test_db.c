/*
 * The store's binding letters (src/store/db.h): 'Z' binds NULL for 0 and 'N'
 * for a negative number, every other value as itself, so that the hot
 * inserts need no SQL NULLIF (a function call per row).  And the
 * transaction id key each connection reads (jf_db_txid_key_load): none on a
 * new database, the same on every connection once upgraded, and a damaged
 * one refuses the open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tmpdb.h"

static int setup(void **state)
{
    tmpdb *t = tmpdb_open("db");
    assert_non_null(t);
    assert_int_equal(jf_db_exec(&t->db, "CREATE TABLE v(n INTEGER, x INTEGER)"), JF_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    assert_true(tmpdb_close(*state));
    return 0;
}

/* Binds x by letter (a one-letter format) and reads back what was stored:
 * true with *out for a number, false for NULL. */
static bool stored(tmpdb *t, int n, const char *letter, int64_t x, int64_t *out)
{
    char fmt[3] = {'i', letter[0], '\0'};
    assert_int_equal(jf_db_run(&t->db, "INSERT INTO v VALUES(?, ?)", fmt, n, x), JF_OK);
    int64_t null = -1;
    assert_int_equal(jf_db_int(&t->db, &null, -1, "SELECT x IS NULL FROM v WHERE n=?", "i", n),
                     JF_OK);
    assert_int_equal(jf_db_int(&t->db, out, 0, "SELECT x FROM v WHERE n=?", "i", n), JF_OK);
    return null == 0;
}

static void test_null_letters(void **state)
{
    tmpdb *t = *state;
    static const struct {
        const char *letter;
        int64_t in;
        bool number;
    } cases[] = {
        {"Z", 0, false},  {"Z", 5, true},          {"Z", -3, true}, {"Z", INT64_MAX, true},
        {"N", -1, false}, {"N", INT64_MIN, false}, {"N", 0, true},  {"N", 1893456000000, true},
        {"I", 0, true},   {"I", -1, true},
    };
    for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
        int64_t got = 42;
        bool number = stored(t, i, cases[i].letter, cases[i].in, &got);
        if (number != cases[i].number || (number && got != cases[i].in))
            fail_msg("'%s' with %lld stored %s %lld", cases[i].letter, (long long)cases[i].in,
                     number ? "the number" : "NULL", (long long)got);
    }
}

static int64_t tx_seq_of(jf_db *db, int64_t tenant, const char *id)
{
    int64_t seq = -1;
    assert_int_equal(jf_db_int(db, &seq, -1, "SELECT jf_tx_seq(?, ?)", "Is", tenant, id), JF_OK);
    return seq;
}

static void test_txid_key(void **state)
{
    (void)state;
    tmpdb *t = tmpdb_open("db-key");
    assert_non_null(t);
    assert_false(t->db.txid_keyed); /* a new file: no meta table yet */
    assert_int_equal(jf_db_migrate(&t->db), JF_OK);
    assert_true(t->db.txid_keyed);
    uint8_t key[JF_TXID_KEY_BYTES];
    memcpy(key, t->db.txid_key, sizeof key);
    char id[JF_ID_LEN_MAX];
    assert_true(jf_txid_make(key, 3, 77, 1764720000123, id));
    assert_int_equal(tx_seq_of(&t->db, 3, id), 77);
    assert_int_equal(tx_seq_of(&t->db, 4, id), -1); /* another tenant's: NULL */
    /* Another connection reads the same key. */
    jf_db other;
    assert_int_equal(jf_db_open(&other, t->path, true), JF_OK);
    assert_true(other.txid_keyed);
    assert_memory_equal(other.txid_key, key, sizeof key);
    assert_int_equal(tx_seq_of(&other, 3, id), 77);
    jf_db_close(&other);
    /* A damaged key refuses the open instead of answering "not found". */
    assert_int_equal(jf_db_exec(&t->db, "UPDATE meta SET value = 'zz' WHERE key = 'txid_key'"),
                     JF_OK);
    assert_int_equal(jf_db_open(&other, t->path, true), JF_ERR_CORRUPT);
    jf_db_close(&other);
    assert_true(tmpdb_close(t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_null_letters, setup, teardown),
        cmocka_unit_test(test_txid_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
