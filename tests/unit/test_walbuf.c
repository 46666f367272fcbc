/*
 * The WAL write-combining VFS (src/store/walbuf.c): a commit's frames reach
 * the file in a few large writes, and yet every other connection sees each
 * commit, whole, as soon as it returns; transactions larger than the buffer,
 * rollbacks and a reopen after close all read back exactly what was written;
 * a commit whose WAL write fails is refused and changes nothing; and a
 * paced checkpoint writes the database back as it copies; a checkpoint
 * grows the database a chunk at a time in large writes; a reader's memory
 * map is kept while the file's size is unchanged and shows every commit;
 * and WAL frames are read through a map of the WAL that shows every commit,
 * a WAL restarted in place and a WAL truncated and grown again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "walbuf.h"

#define ROW_BYTES 3000

static char path[128];

static void remove_db(void)
{
    char p[160];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/jifen-walbuf-%d.db", (int)getpid());
    remove_db();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    remove_db();
    return 0;
}

static void open_db(jf_db *db)
{
    assert_int_equal(jf_db_open(db, path, false), JF_OK);
    assert_int_equal(jf_db_exec(db, "PRAGMA synchronous=NORMAL;"
                                    " CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v BLOB)"),
                     JF_OK);
}

/* Inserts rows [from, to) in one transaction and ends it with end (COMMIT
 * or ROLLBACK); each row's blob is filled with its key's low byte so a
 * reader can check the content.  Returns whether end succeeded. */
static bool insert_and_end(jf_db *db, int from, int to, const char *end)
{
    static unsigned char blob[ROW_BYTES];
    assert_int_equal(jf_db_exec(db, "BEGIN IMMEDIATE"), JF_OK);
    for (int k = from; k < to; k++) {
        memset(blob, k & 0xff, sizeof blob);
        assert_int_equal(
            jf_db_run(db, "INSERT INTO t(k, v) VALUES(?, ?)", "ib", k, blob, (int)sizeof blob),
            JF_OK);
    }
    return jf_db_exec(db, end) == JF_OK;
}

static void insert_rows(jf_db *db, int from, int to, bool commit)
{
    assert_true(insert_and_end(db, from, to, commit ? "COMMIT" : "ROLLBACK"));
}

/* Rows, and rows whose blob is not what insert_rows wrote (0 when whole). */
static void check_rows(jf_db *db, int64_t *rows, int64_t *bad)
{
    assert_int_equal(jf_db_int(db, rows, 0, "SELECT count(*) FROM t", ""), JF_OK);
    assert_int_equal(jf_db_int(db, bad, -1,
                               "SELECT count(*) FROM t WHERE hex(v) !="
                               " replace(hex(zeroblob(3000)), '00', printf('%02X', k & 255))",
                               ""),
                     JF_OK);
}

static void test_commit_is_few_writes(void **state)
{
    (void)state;
    jf_db db;
    open_db(&db);
    insert_rows(&db, 0, 1, true); /* the WAL header and first frames */
    jf_walbuf_stat s0, s1;
    jf_walbuf_stats(&s0);
    insert_rows(&db, 1, 101, true); /* 100 rows of 3,000 bytes: about 80 pages */
    jf_walbuf_stats(&s1);
    unsigned long long writes = s1.writes - s0.writes, flushes = s1.flushes - s0.flushes;
    printf("# one commit: %llu WAL writes from SQLite, %llu to the file\n", writes, flushes);
    assert_true(writes >= 2 * 70); /* a header and a page per frame */
    assert_true(flushes >= 1);
    assert_true(flushes * 20 <= writes);
    int64_t rows, bad;
    check_rows(&db, &rows, &bad);
    assert_int_equal(rows, 101);
    assert_int_equal(bad, 0);
    jf_db_close(&db);
}

/* Copies the whole WAL into the database file; returns the frames copied. */
static int checkpoint_all(jf_db *db)
{
    int log = -1, copied = -1;
    assert_int_equal(
        sqlite3_wal_checkpoint_v2(db->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied),
        SQLITE_OK);
    assert_int_equal(copied, log);
    return copied;
}

/* A checkpoint that needs room grows the database to the next chunk
 * (db.c: 1 MiB for a new database) with zeros written by the shim in large
 * pieces, not one byte per block by SQLite: the blocks are there (not a
 * sparse file, whose first writes an fdatasync would have to journal). */
static void test_checkpoint_grows_the_file_in_pieces(void **state)
{
    (void)state;
    jf_db db;
    open_db(&db);
    insert_rows(&db, 0, 400, true); /* about 1.2 MB */
    jf_walbuf_stat s0, s1;
    jf_walbuf_stats(&s0);
    assert_int_equal(sqlite3_wal_checkpoint_v2(db.h, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL),
                     SQLITE_OK);
    jf_walbuf_stats(&s1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    printf("# database %lld bytes, %lld allocated, %llu writes of zeros\n", (long long)st.st_size,
           (long long)st.st_blocks * 512, s1.grows - s0.grows);
    assert_true(st.st_size >= 400 * 3000);
    assert_int_equal(st.st_size % jf_db_chunk_bytes(0), 0);
    assert_true((long long)st.st_blocks * 512 >= st.st_size);
    assert_true(s1.grows - s0.grows >= 1);
    assert_true(s1.grows - s0.grows <= (unsigned long long)(st.st_size / (64 * 1024)));
    jf_db_close(&db);
}

/* A file grows by an eighth of its size at open, a power of two from 1 to
 * 32 MiB: a new database is not 32 MiB of zeros, a large one grows rarely. */
static void test_chunk_follows_the_file_size(void **state)
{
    (void)state;
    const int64_t mib = 1024 * 1024;
    assert_int_equal(jf_db_chunk_bytes(0), mib);
    assert_int_equal(jf_db_chunk_bytes(8 * mib), mib);
    assert_int_equal(jf_db_chunk_bytes(8 * mib + 1), 2 * mib);
    assert_int_equal(jf_db_chunk_bytes(100 * mib), 16 * mib);
    assert_int_equal(jf_db_chunk_bytes(256 * mib), 32 * mib);
    assert_int_equal(jf_db_chunk_bytes(INT64_MAX), 32 * mib);
    jf_db db;
    open_db(&db);
    insert_rows(&db, 0, 10, true);
    jf_db_close(&db);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size % mib, 0);
    assert_true(st.st_size < 32 * mib); /* the closing checkpoint grew it by 1 MiB */
}

/* A checkpoint from a paced connection writes the database back every
 * `pace` bytes (one write-back per 4 pages here) and copies everything; a
 * pace of 0 stops it. */
static void test_checkpoint_writes_are_paced(void **state)
{
    (void)state;
    jf_db w, c;
    open_db(&w);
    open_db(&c);
    assert_int_equal(jf_walbuf_pace(c.h, 4 * 4096), SQLITE_OK);
    insert_rows(&w, 0, 100, true); /* about 80 pages */
    jf_walbuf_stat s0, s1, s2;
    jf_walbuf_stats(&s0);
    int copied = checkpoint_all(&c);
    jf_walbuf_stats(&s1);
    printf("# %d frames copied in %llu write-backs\n", copied, s1.paces - s0.paces);
    assert_true(s1.paces - s0.paces >= 15);
    assert_true(s1.paces - s0.paces <= (unsigned long long)copied / 4 + 1);

    assert_int_equal(jf_walbuf_pace(c.h, 0), SQLITE_OK);
    insert_rows(&w, 100, 200, true);
    checkpoint_all(&c);
    jf_walbuf_stats(&s2);
    assert_int_equal(s2.paces, s1.paces);
    jf_db_close(&c);
    jf_db_close(&w);

    jf_db r; /* the database file alone holds every row */
    open_db(&r);
    int64_t rows, bad;
    check_rows(&r, &rows, &bad);
    assert_int_equal(rows, 200);
    assert_int_equal(bad, 0);
    jf_db_close(&r);
}

/* A reader's memory map of the database survives another connection's
 * commits while the file keeps its size, and shows what they wrote; a file
 * that grew is mapped again. */
static void test_reader_map_kept_while_size_unchanged(void **state)
{
    (void)state;
    jf_db w, r;
    open_db(&w);
    insert_rows(&w, 0, 100, true);
    checkpoint_all(&w); /* the rows are in the database file, read through the map */
    assert_int_equal(jf_db_open(&r, path, true), JF_OK);
    int64_t rows, bad;
    check_rows(&r, &rows, &bad);
    assert_int_equal(rows, 100);

    jf_walbuf_stat s0, s1, s2;
    jf_walbuf_stats(&s0);
    for (int k = 99; k >= 50; k -= 10) { /* same size: freed pages stay in the file */
        assert_int_equal(jf_db_run(&w, "DELETE FROM t WHERE k >= ?", "i", k), JF_OK);
        checkpoint_all(&w);
        check_rows(&r, &rows, &bad);
        assert_int_equal(rows, k);
        assert_int_equal(bad, 0);
    }
    jf_walbuf_stats(&s1);
    assert_true(s1.maps_kept - s0.maps_kept >= 4); /* the first one learns the size */

    /* Past the file's chunk (1 MiB for a new one, jf_db_chunk_bytes): the
     * file grows. */
    insert_rows(&w, 100, 1500, true);
    checkpoint_all(&w);
    check_rows(&r, &rows, &bad);
    assert_int_equal(rows, 59 + 1400); /* rows 0..58 and the new ones */
    assert_int_equal(bad, 0);
    jf_walbuf_stats(&s2);
    assert_int_equal(s2.maps_kept, s1.maps_kept);
    jf_db_close(&r);
    jf_db_close(&w);
}

/* Rows newer than the database file are read from WAL frames, through the
 * process's map of the WAL: each commit shows (the map shares the page cache
 * with the writes), also once the WAL restarts from its head and its frames
 * are written over, and once a checkpoint truncates it to nothing and it
 * grows again (the map is then longer than the file; the reads stay inside
 * it, or this test would die of SIGBUS). */
static void test_wal_reads_come_from_the_map(void **state)
{
    (void)state;
    jf_db w, r;
    open_db(&w);
    open_db(&r);
    jf_walbuf_stat s0, s1;
    int64_t rows, bad;
    int next = 0;
    for (int round = 0; round < 3; round++) {
        jf_walbuf_stats(&s0);
        for (int i = 0; i < 20; i++) {
            insert_rows(&w, next, next + 5, true);
            next += 5;
            check_rows(&r, &rows, &bad);
            assert_int_equal(rows, next);
            assert_int_equal(bad, 0);
        }
        jf_walbuf_stats(&s1);
        printf("# round %d: %llu WAL reads from the map\n", round, s1.map_reads - s0.map_reads);
        assert_true(s1.map_reads - s0.map_reads >= 20);
        /* Rows rewritten in place: the same pages, new content in new frames. */
        assert_int_equal(jf_db_run(&w, "UPDATE t SET v = v WHERE k % 2 = 0", ""), JF_OK);
        check_rows(&r, &rows, &bad);
        assert_int_equal(bad, 0);
        int log = -1, copied = -1;
        int mode = round == 0 ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_TRUNCATE;
        assert_int_equal(sqlite3_wal_checkpoint_v2(w.h, NULL, mode, &log, &copied), SQLITE_OK);
        if (mode == SQLITE_CHECKPOINT_TRUNCATE) {
            char wal[160];
            struct stat st;
            snprintf(wal, sizeof wal, "%s-wal", path);
            assert_int_equal(stat(wal, &st), 0);
            assert_int_equal(st.st_size, 0);
        }
    }
    jf_db_close(&r);
    jf_db_close(&w);
}

static void test_other_connection_sees_each_commit(void **state)
{
    (void)state;
    jf_db w, r;
    open_db(&w);
    open_db(&r);
    int next = 0;
    for (int i = 0; i < 200; i++) {
        int n = 1 + i % 7;
        insert_rows(&w, next, next + n, true);
        next += n;
        int64_t rows, bad;
        check_rows(&r, &rows, &bad);
        assert_int_equal(rows, next);
        assert_int_equal(bad, 0);
    }
    jf_db_close(&r);
    jf_db_close(&w);
}

static void test_large_transaction_rollback_and_reopen(void **state)
{
    (void)state;
    jf_db db, r;
    open_db(&db);
    open_db(&r);
    insert_rows(&db, 0, 1000, true);     /* ~3 MB: more than the buffer */
    insert_rows(&db, 1000, 1400, false); /* rolled back */
    insert_rows(&db, 1000, 1010, true);
    int64_t rows, bad;
    check_rows(&r, &rows, &bad);
    assert_int_equal(rows, 1010);
    assert_int_equal(bad, 0);
    jf_db_close(&r);
    jf_db_close(&db);
    open_db(&db);
    check_rows(&db, &rows, &bad);
    assert_int_equal(rows, 1010);
    assert_int_equal(bad, 0);
    sqlite3_stmt *st = jf_db_query(&db, "PRAGMA integrity_check", "");
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    jf_db_close(&db);
}

/* Tries to commit rows [from, to); returns whether COMMIT succeeded (rolls
 * back when it did not). */
static bool try_commit(jf_db *db, int from, int to)
{
    if (insert_and_end(db, from, to, "COMMIT"))
        return true;
    jf_db_exec(db, "ROLLBACK");
    return false;
}

/* The WAL may not grow past its current size plus 64 KiB (RLIMIT_FSIZE:
 * writes beyond it fail with EFBIG), so a commit of about 300 KB fails
 * part-way through its frames. */
static void test_failed_write_fails_the_commit(void **state)
{
    (void)state;
    jf_db db, r;
    open_db(&db);
    open_db(&r);
    insert_rows(&db, 0, 10, true);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + 64 * 1024;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bool committed = try_commit(&db, 10, 110);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_false(committed);
    int64_t rows, bad;
    check_rows(&r, &rows, &bad);
    assert_int_equal(rows, 10);
    assert_int_equal(bad, 0);
    assert_true(try_commit(&db, 10, 20));
    check_rows(&r, &rows, &bad);
    assert_int_equal(rows, 20);
    assert_int_equal(bad, 0);
    jf_db_close(&r);
    jf_db_close(&db);
    open_db(&db);
    check_rows(&db, &rows, &bad);
    assert_int_equal(rows, 20);
    assert_int_equal(bad, 0);
    jf_db_close(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_is_few_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_connection_sees_each_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_reads_come_from_the_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_writes_are_paced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_grows_the_file_in_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_follows_the_file_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_map_kept_while_size_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_transaction_rollback_and_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_fails_the_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
