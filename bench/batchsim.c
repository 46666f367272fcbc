/*
 * batchsim: what a durable earn's writes cost the writer, by how they are
 * grouped into commits.  It answers a design question of docs/PERFORMANCE.md
 * ("Next", item 1) with figures instead of estimates: how much of an earn's
 * cost is its statements, how much is the pages they dirty, and how both fall
 * when many earns share a commit, when a commit's rows are written in each
 * table's key order, or when an earn is acknowledged on one compact journal
 * record and its rows are written later.
 *
 * It writes the rows jifen's writer wrote for an earn until schema version
 * 16 (its lot's and its transaction's entries in member_state, the member's
 * balance, the transaction, two postings, the lot, the stored reply and the
 * idempotency record; since version 16 the postings are in the transaction's
 * row, as in rows-without-postings below), with the same statements, into a
 * copy of a jifen database (bench/
 * batchsim.py gives it the benchmark's seeded 100,000-member one), on one
 * connection in WAL mode with synchronous=FULL, committing every --batch
 * earns.  Members are uniform at random, idempotency keys random like
 * clients' UUIDs.  It does not check anything and is not jifen: the engine's
 * reads, checks and replies are not here, only its writes.
 *
 * Modes:
 *   rows          each earn's rows in arrival order (what the writer did
 *                 before schema version 16)
 *   rows-sorted   the same rows, each table's in key order within the commit
 *                 (what a materializer applying a journal in bulk would do)
 *   journal       one record per earn, its fields and its reply, appended to
 *                 a rowid table; the key stays in memory until its row is
 *                 written (the acknowledgement path of a journal design)
 *   journal-keys  the record and the idempotency row
 *   rows-multi    the rows in arrival order, but each table's rows of a
 *                 commit in multi-row INSERTs of up to 32 (fewer statements,
 *                 the same rows)
 *   rows-without-ids, rows-without-postings, rows-without-responses,
 *   rows-without-all
 *                 fewer rows: what an earn costs without the transactions'
 *                 and the lots' UNIQUE(tenant_id, id) indexes, without its
 *                 two postings rows (their accounts held as two columns of
 *                 the transaction instead), without its stored reply, or
 *                 without all three.
 * Every rows mode writes the transactions and lots to copies of those tables
 * (batchsim_tx, batchsim_lots, made at start outside the timing) as they
 * were before jifen's schema version 21 (transactions keyed by (tenant_id,
 * seq) WITHOUT ROWID, both with UNIQUE(tenant_id, id)), that differ only in
 * what a rows-without mode leaves out; jifen's own transactions table is a
 * rowid table since version 22.
 *
 * Prints one JSON object: CPU time and wall time per earn (the commit's
 * fdatasync included, as the thread saw it) and WAL frames per earn.  The WAL
 * is checkpointed and truncated between commits, outside the timing.
 */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEMBERS_MAX (1 << 20)
#define BATCH_MAX 100000
#define KEY_BYTES 40
#define ID_BYTES 40

typedef struct earn {
    int64_t member, seq, points, time_ms;
    char key[KEY_BYTES], tx_id[ID_BYTES], lot_id[ID_BYTES], member_id[ID_BYTES];
} earn;

/* A reply as jifen stores it for a replay (about 430 bytes). */
static const char reply[] =
    "{\"transaction\":{\"id\":\"txn_1a24437fd6d04b5218005ea\",\"type\":\"earn\",\"member_id\":"
    "\"mem_0d2f6bc0f7f2250ca042\",\"counterparty_member_id\":null,\"points\":85,\"delta\":85,"
    "\"reverses\":null,\"reversed_points\":0,\"hold_id\":null,\"order\":null,\"reason\":null,"
    "\"note\":null,\"channel\":null,\"store_id\":null,\"actor\":\"key_8ed358612d4240190a88\","
    "\"metadata\":null,\"created_at\":\"2026-12-05T03:20:49.773Z\",\"awards\":[]},\"points\":"
    "{\"available\":1130,\"pending\":0,\"held\":0}}";
static const unsigned char hash[32];

static sqlite3 *db;
static int wal_frames_last;
static sqlite3_stmt *st_lot_entry, *st_tx_entry, *st_balance, *st_journal;

static void die(const char *what)
{
    fprintf(stderr, "batchsim: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static int on_wal(void *arg, sqlite3 *h, const char *name, int frames)
{
    (void)arg, (void)h, (void)name;
    wal_frames_last = frames;
    return SQLITE_OK;
}

static sqlite3_stmt *prepare(const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        die(sql);
    return s;
}

static void run(sqlite3_stmt *s)
{
    if (sqlite3_step(s) != SQLITE_DONE)
        die(sqlite3_sql(s));
    sqlite3_reset(s);
}

static void exec(const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(sql);
}

static double seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What a mode writes for an earn besides its member rows and its key. */
typedef struct shape {
    bool copies;    /* transactions and lots go to batchsim_tx and batchsim_lots (rows modes) */
    bool ids;       /* those copies keep their UNIQUE(tenant_id, id) indexes */
    bool postings;  /* two postings rows; else their accounts in the transaction */
    bool responses; /* the stored reply */
    bool multi;     /* each table's rows of a commit in multi-row INSERTs */
} shape;

static shape shape_of(const char *mode)
{
    shape sh = {false, true, true, true, false};
    sh.multi = strcmp(mode, "rows-multi") == 0;
    sh.copies = strncmp(mode, "rows", 4) == 0;
    if (strncmp(mode, "rows-without-", 13) == 0) {
        const char *what = mode + 13;
        bool all = strcmp(what, "all") == 0;
        sh.ids = !(all || strcmp(what, "ids") == 0);
        sh.postings = !(all || strcmp(what, "postings") == 0);
        sh.responses = !(all || strcmp(what, "responses") == 0);
    }
    return sh;
}

/* The copies of transactions and lots that the rows-without modes write:
 * the same columns and rows, the transaction with two more (the accounts of
 * its postings when those are not written), and the id indexes only when
 * the mode keeps them. */
static void copies_make(const shape *sh)
{
    exec("CREATE TABLE batchsim_tx(tenant_id INTEGER NOT NULL, seq INTEGER NOT NULL,"
         " id TEXT NOT NULL, type TEXT NOT NULL, member_id TEXT, counterparty_id TEXT,"
         " points INTEGER NOT NULL, delta INTEGER NOT NULL, reverses TEXT, hold_id TEXT,"
         " order_id TEXT, order_amount INTEGER, order_currency TEXT, reason TEXT, note TEXT,"
         " channel TEXT, store_id TEXT, actor TEXT NOT NULL, metadata TEXT, idem_key TEXT,"
         " created_at INTEGER NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,"
         " debit TEXT, credit TEXT, PRIMARY KEY(tenant_id, seq)) STRICT, WITHOUT ROWID;"
         "INSERT INTO batchsim_tx SELECT tenant_id, seq, id, type, member_id, counterparty_id,"
         " points, delta, reverses, hold_id, order_id, order_amount, order_currency, reason,"
         " note, channel, store_id, actor, metadata, idem_key, created_at, prev_hash, hash,"
         " NULL, NULL FROM transactions;"
         "CREATE TABLE batchsim_lots(seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,"
         " id TEXT NOT NULL, member_id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
         " amount INTEGER NOT NULL, remaining INTEGER NOT NULL, available_at INTEGER NOT NULL,"
         " expires_at INTEGER, expired_tx_seq INTEGER, created_at INTEGER NOT NULL,"
         " closed INTEGER NOT NULL DEFAULT 0, expired_amount INTEGER) STRICT;"
         "INSERT INTO batchsim_lots SELECT seq, tenant_id, id, member_id, tx_seq, amount,"
         " remaining, available_at, expires_at, expired_tx_seq, created_at, closed,"
         " expired_amount FROM lots");
    if (sh->ids)
        exec("CREATE UNIQUE INDEX batchsim_tx_id ON batchsim_tx(tenant_id, id);"
             "CREATE UNIQUE INDEX batchsim_lots_id ON batchsim_lots(tenant_id, id)");
    exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

/* The appended tables' statements: a head and one row's values, so that a
 * statement of k rows repeats the values k times.  Parameters are bound in
 * order by the bind_* functions below, the same for one row or many. */
enum { T_TX, T_POSTING, T_LOT, T_REPLY, T_KEY, T_COUNT };
#define MULTI_ROWS 32

static const char *const heads[T_COUNT] = {
    "INSERT INTO %s(tenant_id, seq, id, type, member_id, points, delta, actor, idem_key,"
    " created_at, prev_hash, hash%s) VALUES",
    "INSERT INTO %s(tenant_id, tx_seq, n, account, amount, created_at) VALUES",
    "INSERT INTO %s(tenant_id, id, member_id, tx_seq, amount, remaining, available_at,"
    " expires_at, created_at) VALUES",
    "INSERT INTO responses(tenant_id, body) VALUES",
    "INSERT INTO idempotency(tenant_id, key, op, request_hash, created, response_seq, tx_id,"
    " created_at) VALUES",
};
static const char *const values[T_COUNT] = {
    "(1,?,?,'earn',?,?,?,'key_bench',?,?,?,?%s)",
    "(1,?,?,?,?,?)",
    "(1,?,?,?,?,?,?,NULL,?)",
    "(1,?)",
    "(1,?,'points.earn',?,1,?,?,?)",
};
static sqlite3_stmt *stmts[T_COUNT][MULTI_ROWS + 1];
/* Where postings rows go: the postings table, renamed posting_rows when
 * jifen's schema version 16 moved a transaction's postings into its row
 * (so on such a database the row modes write what the writer did before). */
static const char *posting_table = "postings";

static sqlite3_stmt *stmt_rows(const shape *sh, int table, int rows)
{
    if (stmts[table][rows])
        return stmts[table][rows];
    char head[512], one[128], sql[16384];
    const char *tx = sh->copies ? "batchsim_tx" : "transactions";
    const char *lots = sh->copies ? "batchsim_lots" : "lots";
    if (table == T_TX) {
        snprintf(head, sizeof head, heads[table], tx, sh->copies ? ", debit, credit" : "");
        snprintf(one, sizeof one, values[table], sh->copies ? ",?,?" : "");
    } else if (table == T_POSTING) {
        snprintf(head, sizeof head, heads[table], posting_table);
        snprintf(one, sizeof one, "%s", values[table]);
    } else {
        snprintf(head, sizeof head, heads[table], lots);
        snprintf(one, sizeof one, "%s", values[table]);
    }
    int len = snprintf(sql, sizeof sql, "%s", head);
    for (int i = 0; i < rows; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, "%s%s", i ? "," : "", one);
    return stmts[table][rows] = prepare(sql);
}

static int bind_tx(sqlite3_stmt *s, int c, const shape *sh, const earn *e)
{
    sqlite3_bind_int64(s, c++, e->seq);
    sqlite3_bind_text(s, c++, e->tx_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, c++, e->member_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, c++, e->points);
    sqlite3_bind_int64(s, c++, e->points);
    sqlite3_bind_text(s, c++, e->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, c++, e->time_ms);
    sqlite3_bind_blob(s, c++, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_blob(s, c++, hash, sizeof hash, SQLITE_STATIC);
    /* The copy's two more columns: the accounts, NULL while postings rows
     * carry them. */
    if (!sh->copies)
        return c;
    if (sh->postings) {
        sqlite3_bind_null(s, c++);
        sqlite3_bind_null(s, c++);
    } else {
        sqlite3_bind_text(s, c++, "program:issuance", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, c++, "member:m:points", -1, SQLITE_STATIC);
    }
    return c;
}

static int bind_posting(sqlite3_stmt *s, int c, const earn *e, int n)
{
    sqlite3_bind_int64(s, c++, e->seq);
    sqlite3_bind_int64(s, c++, n);
    sqlite3_bind_text(s, c++, n ? "member:m:points" : "program:issuance", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, c++, n ? e->points : -e->points);
    sqlite3_bind_int64(s, c++, e->time_ms);
    return c;
}

static int bind_lot(sqlite3_stmt *s, int c, const earn *e)
{
    sqlite3_bind_text(s, c++, e->lot_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, c++, e->member_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, c++, e->seq);
    sqlite3_bind_int64(s, c++, e->points);
    sqlite3_bind_int64(s, c++, e->points);
    sqlite3_bind_int64(s, c++, e->time_ms);
    sqlite3_bind_int64(s, c++, e->time_ms);
    return c;
}

static int bind_reply(sqlite3_stmt *s, int c)
{
    sqlite3_bind_text(s, c++, reply, -1, SQLITE_STATIC);
    return c;
}

static int bind_key(sqlite3_stmt *s, int c, const earn *e)
{
    sqlite3_bind_text(s, c++, e->key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, c++, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_int64(s, c++, e->seq);
    sqlite3_bind_text(s, c++, e->tx_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, c++, e->time_ms);
    return c;
}

static void prepare_all(void)
{
    st_lot_entry = prepare("INSERT INTO member_state VALUES(?1,1,0,9223372036854775807,?2,?3,?4)");
    st_tx_entry = prepare("INSERT INTO member_state VALUES(?1,2,?2,?3,0,?2+?3,0)");
    st_balance = prepare("UPDATE member_state SET value = value + ?1 WHERE member_seq = ?2 AND"
                         " kind = 0 AND key1 = 0 AND key2 = 0 AND key3 = 0 AND key4 = 0");
    st_journal = prepare("INSERT INTO batchsim_journal(seq, rec) VALUES(?,?)");
}

static void write_member_rows(const earn *e)
{
    sqlite3_bind_int64(st_lot_entry, 1, e->member);
    sqlite3_bind_int64(st_lot_entry, 2, e->time_ms);
    sqlite3_bind_int64(st_lot_entry, 3, e->seq);
    sqlite3_bind_int64(st_lot_entry, 4, e->points);
    run(st_lot_entry);
    sqlite3_bind_int64(st_tx_entry, 1, e->member);
    sqlite3_bind_int64(st_tx_entry, 2, e->seq);
    sqlite3_bind_int64(st_tx_entry, 3, e->time_ms);
    run(st_tx_entry);
    sqlite3_bind_int64(st_balance, 1, e->points);
    sqlite3_bind_int64(st_balance, 2, e->member);
    run(st_balance);
}

/* Rows es[0..n) of one appended table, in statements of up to rows_max. */
static void write_table(const shape *sh, int table, earn *const *es, int n, int rows_max)
{
    for (int first = 0; first < n; first += rows_max) {
        int rows = n - first < rows_max ? n - first : rows_max;
        for (int posting = 0; posting < (table == T_POSTING ? 2 : 1); posting++) {
            sqlite3_stmt *s = stmt_rows(sh, table, rows);
            for (int i = first, c = 1; i < first + rows; i++) {
                const earn *e = es[i];
                c = table == T_TX        ? bind_tx(s, c, sh, e)
                    : table == T_POSTING ? bind_posting(s, c, e, posting)
                    : table == T_LOT     ? bind_lot(s, c, e)
                    : table == T_REPLY   ? bind_reply(s, c)
                                         : bind_key(s, c, e);
            }
            run(s);
        }
    }
}

static void write_appended_rows(const shape *sh, earn *const *es, int n, int rows_max)
{
    write_table(sh, T_TX, es, n, rows_max);
    if (sh->postings)
        write_table(sh, T_POSTING, es, n, rows_max);
    write_table(sh, T_LOT, es, n, rows_max);
    if (sh->responses)
        write_table(sh, T_REPLY, es, n, rows_max);
}

/* A compact record: the earn's fields (member, points, time, key, hash) and
 * its reply, which a replay must return byte for byte. */
static void write_journal_record(const earn *e)
{
    unsigned char rec[sizeof(*e) + sizeof hash + sizeof reply];
    memcpy(rec, e, sizeof(*e));
    memcpy(rec + sizeof(*e), hash, sizeof hash);
    memcpy(rec + sizeof(*e) + sizeof hash, reply, sizeof reply);
    sqlite3_bind_int64(st_journal, 1, e->seq);
    sqlite3_bind_blob(st_journal, 2, rec, sizeof rec, SQLITE_STATIC);
    run(st_journal);
}

static int by_member(const void *a, const void *b)
{
    const earn *x = *(earn *const *)a, *y = *(earn *const *)b;
    if (x->member != y->member)
        return x->member < y->member ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(earn *const *)a)->key, (*(earn *const *)b)->key);
}

static void write_batch(const char *mode, const shape *sh, earn **order, int n)
{
    if (sh->multi) {
        for (int i = 0; i < n; i++)
            write_member_rows(order[i]);
        write_appended_rows(sh, order, n, MULTI_ROWS);
        write_table(sh, T_KEY, order, n, MULTI_ROWS);
        return;
    }
    if (strcmp(mode, "rows-sorted") == 0) {
        write_appended_rows(sh, order, n, 1);
        qsort(order, (size_t)n, sizeof(*order), by_member);
        for (int i = 0; i < n; i++)
            write_member_rows(order[i]);
        qsort(order, (size_t)n, sizeof(*order), by_key);
        write_table(sh, T_KEY, order, n, 1);
        return;
    }
    if (strncmp(mode, "rows", 4) == 0) {
        for (int i = 0; i < n; i++) {
            write_member_rows(order[i]);
            write_appended_rows(sh, &order[i], 1, 1);
            write_table(sh, T_KEY, &order[i], 1, 1);
        }
        return;
    }
    bool keys = strcmp(mode, "journal-keys") == 0;
    for (int i = 0; i < n; i++) {
        write_journal_record(order[i]);
        if (keys)
            write_table(sh, T_KEY, &order[i], 1, 1);
    }
}

typedef struct members {
    int64_t n, *seq;
    char (*id)[ID_BYTES];
} members;

static void members_load(members *m)
{
    m->seq = malloc(MEMBERS_MAX * sizeof(*m->seq));
    m->id = malloc(MEMBERS_MAX * sizeof(*m->id));
    if (m->seq == NULL || m->id == NULL)
        die("out of memory");
    sqlite3_stmt *q = prepare("SELECT seq, id FROM members");
    for (m->n = 0; m->n < MEMBERS_MAX && sqlite3_step(q) == SQLITE_ROW; m->n++) {
        m->seq[m->n] = sqlite3_column_int64(q, 0);
        snprintf(m->id[m->n], ID_BYTES, "%s", (const char *)sqlite3_column_text(q, 1));
    }
    sqlite3_finalize(q);
    if (m->n == 0)
        die("no members in the database");
}

static int64_t tx_seq_max(void)
{
    sqlite3_stmt *q = prepare("SELECT coalesce(max(seq), 0) FROM transactions");
    if (sqlite3_step(q) != SQLITE_ROW)
        die("max(seq)");
    int64_t seq = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return seq;
}

static void earn_make(earn *e, const members *m, int64_t seq, int64_t time_ms)
{
    int64_t i = random() % m->n;
    e->member = m->seq[i];
    e->seq = seq;
    e->points = 1 + random() % 100;
    e->time_ms = time_ms;
    snprintf(e->member_id, ID_BYTES, "%s", m->id[i]);
    snprintf(e->key, KEY_BYTES, "%08lx-%08lx-%08lx", random(), random(), random());
    snprintf(e->tx_id, ID_BYTES, "txn_batchsim%020lld", (long long)seq);
    snprintf(e->lot_id, ID_BYTES, "lot_batchsim%020lld", (long long)seq);
}

static int usage(void)
{
    fprintf(stderr, "usage: batchsim --db FILE --mode rows|rows-sorted|journal|journal-keys"
                    "|rows-multi|rows-without-ids|rows-without-postings|rows-without-responses"
                    "|rows-without-all [--batch N (25)] [--count N (100000)] [--seed N (1)]\n"
                    "Writes --count earns' rows into FILE (a copy of a jifen database:"
                    " it is changed), --batch per commit, and prints the cost per earn"
                    " as JSON.\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *mode = NULL;
    long batch = 25, count = 100000, seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            path = argv[i + 1];
        else if (strcmp(argv[i], "--mode") == 0)
            mode = argv[i + 1];
        else if (strcmp(argv[i], "--batch") == 0)
            batch = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--count") == 0)
            count = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtol(argv[i + 1], NULL, 10);
        else
            return usage();
    }
    static const char *const modes[] = {"rows",
                                        "rows-sorted",
                                        "journal",
                                        "journal-keys",
                                        "rows-multi",
                                        "rows-without-ids",
                                        "rows-without-postings",
                                        "rows-without-responses",
                                        "rows-without-all"};
    bool known = false;
    for (size_t i = 0; mode && i < sizeof modes / sizeof modes[0]; i++)
        known = known || strcmp(mode, modes[i]) == 0;
    if (path == NULL || !known || batch < 1 || batch > BATCH_MAX || count < 1)
        return usage();
    srandom((unsigned)seed);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path);
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;"
         "PRAGMA mmap_size=1073741824; PRAGMA cache_size=-65536;"
         "CREATE TABLE IF NOT EXISTS batchsim_journal(seq INTEGER PRIMARY KEY, rec BLOB NOT NULL)"
         " STRICT");
    sqlite3_wal_hook(db, on_wal, NULL);
    members m;
    members_load(&m);
    sqlite3_stmt *renamed = prepare("SELECT 1 FROM sqlite_master WHERE name = 'posting_rows'");
    if (sqlite3_step(renamed) == SQLITE_ROW)
        posting_table = "posting_rows";
    sqlite3_finalize(renamed);
    shape sh = shape_of(mode);
    if (sh.copies)
        copies_make(&sh);
    prepare_all();
    earn *es = calloc((size_t)batch, sizeof(*es));
    earn **order = calloc((size_t)batch, sizeof(*order));
    if (es == NULL || order == NULL)
        die("out of memory");
    int64_t seq = tx_seq_max(), time_ms = 1796440849773;
    double cpu = 0, wall = 0;
    long long frames = 0, done = 0;
    while (done < count) {
        int n = (int)(count - done < batch ? count - done : batch);
        for (int i = 0; i < n; i++) {
            earn_make(&es[i], &m, ++seq, ++time_ms);
            order[i] = &es[i];
        }
        double cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID), wall0 = seconds(CLOCK_MONOTONIC);
        exec("BEGIN IMMEDIATE");
        write_batch(mode, &sh, order, n);
        exec("COMMIT");
        cpu += seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
        wall += seconds(CLOCK_MONOTONIC) - wall0;
        frames += wal_frames_last;
        done += n;
        exec("PRAGMA wal_checkpoint(TRUNCATE)");
    }
    printf(
        "{\"mode\": \"%s\", \"batch\": %ld, \"count\": %lld, \"members\": %lld,"
        " \"cpu_us_per_earn\": %.2f, \"wall_us_per_earn\": %.2f, \"wal_frames_per_earn\": %.3f}\n",
        mode, batch, done, (long long)m.n, cpu * 1e6 / (double)done, wall * 1e6 / (double)done,
        (double)frames / (double)done);
    sqlite3_close(db);
    free(es);
    free(order);
    return 0;
}
