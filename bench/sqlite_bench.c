/*
 * sqlite_bench: the "SQLite the way a competent team builds it" baseline.
 *
 * One process, N threads, each with its own connection to one database in
 * WAL mode with synchronous=FULL (durable: the commit is fsynced before the
 * operation counts) and a busy_timeout, prepared statements, and one
 * transaction per operation: BEGIN IMMEDIATE; look the idempotency key up
 * (a replay returns the stored result); update the balance row (debits with
 * a non-negative check in the WHERE clause); insert the ledger row, whose
 * idempotency key is UNIQUE; COMMIT.  Reads use deferred transactions on
 * the WAL snapshot.  --batch B puts B operations in one transaction (the
 * batched variant for W5).
 *
 * Closed loop by default; --rate R runs an open loop: operation k is
 * scheduled at start + k/R and its latency counts from that time.
 * Output is one JSON object like loadgen's; server_cpu_s is this process's
 * CPU time over the measurement window (there is no separate server).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"

#define THREADS_MAX 512
#define RING 1024
#define RETRY_LAG 64
#define DURATION_MAX_S 3600
#define REFUSED_POINTS 1000000000000LL

enum wl { WL_EARN, WL_REDEEM, WL_TRANSFER, WL_READ, WL_BATCH };

static struct {
    const char *db, *workload, *prefix, *sync;
    int threads, hot, batch;
    double duration_s, warmup_s, rate;
    long nmembers, balance;
    bool init;
} O = {.workload = "earn",
       .prefix = "sq",
       .sync = "FULL",
       .threads = 16,
       .batch = 1,
       .duration_s = 5,
       .nmembers = 100000,
       .balance = 1000};

static enum wl WL;
static uint64_t T0, T_MEASURE, T_END;
static atomic_uint_fast64_t TICKET;

typedef struct worker {
    pthread_t th;
    int id;
    sqlite3 *db;
    sqlite3_stmt *begin, *begin_read, *commit, *rollback, *idem, *credit, *debit, *ins, *bal, *hist;
    uint64_t rng, seq;
    hist all, rd, wr;
    uint64_t ok, refused, replayed, errors, busy, ops;
    struct {
        int op;
        long m;
        long long pts;
        uint64_t seq;
    } ring[RING];
    uint64_t ring_n;
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ULL),
                          .tv_nsec = (long)(t % 1000000000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

static uint64_t rnd(worker *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "sqlite_bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    exit(2);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite_bench: %s: %s\n", sql, err ? err : "?");
        exit(2);
    }
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(O.db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        fail(db, "open");
    sqlite3_busy_timeout(db, 10000);
    exec(db, "PRAGMA journal_mode=WAL");
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", O.sync);
    exec(db, sql);
    return db;
}

static const char SCHEMA[] =
    "CREATE TABLE members(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK(balance >= 0))"
    " STRICT;"
    "CREATE TABLE ledger(id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, type TEXT NOT NULL,"
    " points INTEGER NOT NULL, counterparty INTEGER, idem_key TEXT NOT NULL UNIQUE,"
    " balance_after INTEGER NOT NULL, created_at INTEGER NOT NULL) STRICT;"
    "CREATE INDEX ledger_member ON ledger(member_id, id);";

static void init_db(void)
{
    sqlite3 *db = open_db();
    exec(db, SCHEMA);
    exec(db, "BEGIN");
    sqlite3_stmt *m, *l;
    sqlite3_prepare_v2(db, "INSERT INTO members(id, balance) VALUES (?, ?)", -1, &m, NULL);
    sqlite3_prepare_v2(db,
                       "INSERT INTO ledger(member_id, type, points, idem_key, balance_after,"
                       " created_at) VALUES (?1, 'earn', ?2, 'seed-' || ?1, ?2, 0)",
                       -1, &l, NULL);
    for (long i = 1; i <= O.nmembers; i++) {
        sqlite3_bind_int64(m, 1, i);
        sqlite3_bind_int64(m, 2, O.balance);
        sqlite3_bind_int64(l, 1, i);
        sqlite3_bind_int64(l, 2, O.balance);
        if (sqlite3_step(m) != SQLITE_DONE || sqlite3_step(l) != SQLITE_DONE)
            fail(db, "seed");
        sqlite3_reset(m);
        sqlite3_reset(l);
    }
    sqlite3_finalize(m);
    sqlite3_finalize(l);
    exec(db, "COMMIT");
    sqlite3_close(db);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
        fail(db, sql);
    return st;
}

static void worker_open(worker *w)
{
    w->db = open_db();
    w->begin = prep(w->db, "BEGIN IMMEDIATE");
    w->begin_read = prep(w->db, "BEGIN");
    w->commit = prep(w->db, "COMMIT");
    w->rollback = prep(w->db, "ROLLBACK");
    w->idem = prep(w->db, "SELECT balance_after FROM ledger WHERE idem_key = ?");
    w->credit = prep(w->db, "UPDATE members SET balance = balance + ?1 WHERE id = ?2"
                            " RETURNING balance");
    w->debit = prep(w->db, "UPDATE members SET balance = balance - ?1 WHERE id = ?2"
                           " AND balance >= ?1 RETURNING balance");
    w->ins = prep(w->db, "INSERT INTO ledger(member_id, type, points, counterparty, idem_key,"
                         " balance_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
    w->bal = prep(w->db, "SELECT balance FROM members WHERE id = ?");
    w->hist = prep(w->db, "SELECT id, type, points, counterparty, idem_key, balance_after,"
                          " created_at FROM ledger WHERE member_id = ? ORDER BY id DESC LIMIT 20");
}

static void worker_close(worker *w)
{
    sqlite3_stmt *all[] = {w->begin,  w->begin_read, w->commit, w->rollback, w->idem,
                           w->credit, w->debit,      w->ins,    w->bal,      w->hist};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(w->db);
}

/* Steps a statement to completion; returns the first column of the first row
 * (or -1 when there was no row), *rc the final result code. */
static long long step_value(sqlite3_stmt *st, int *rc)
{
    long long v = -1;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
            ;
    }
    *rc = r;
    sqlite3_reset(st);
    return v;
}

static bool run_simple(sqlite3_stmt *st)
{
    int rc;
    step_value(st, &rc);
    return rc == SQLITE_DONE;
}

enum outcome { OUT_OK, OUT_REFUSED, OUT_REPLAYED, OUT_ERROR };

/* One ledger operation inside an open write transaction. */
static enum outcome apply_op(worker *w, int op, long m, long m2, long long pts, const char *key)
{
    int rc;
    sqlite3_bind_text(w->idem, 1, key, -1, SQLITE_STATIC);
    long long prev = step_value(w->idem, &rc);
    if (rc != SQLITE_DONE)
        return OUT_ERROR;
    if (prev >= 0)
        return OUT_REPLAYED;
    sqlite3_stmt *up = op == WL_EARN ? w->credit : w->debit;
    sqlite3_bind_int64(up, 1, pts);
    sqlite3_bind_int64(up, 2, m);
    long long b = step_value(up, &rc);
    if (rc != SQLITE_DONE)
        return OUT_ERROR;
    if (b < 0)
        return OUT_REFUSED;
    if (op == WL_TRANSFER) {
        sqlite3_bind_int64(w->credit, 1, pts);
        sqlite3_bind_int64(w->credit, 2, m2);
        if (step_value(w->credit, &rc) < 0 || rc != SQLITE_DONE)
            return OUT_ERROR;
    }
    static const char *types[] = {"earn", "redeem", "transfer", "earn", "earn"};
    sqlite3_bind_int64(w->ins, 1, m);
    sqlite3_bind_text(w->ins, 2, types[op], -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->ins, 3, pts);
    if (op == WL_TRANSFER)
        sqlite3_bind_int64(w->ins, 4, m2);
    else
        sqlite3_bind_null(w->ins, 4);
    sqlite3_bind_text(w->ins, 5, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->ins, 6, b);
    sqlite3_bind_int64(w->ins, 7, (sqlite3_int64)time(NULL));
    return run_simple(w->ins) ? OUT_OK : OUT_ERROR;
}

/* A write transaction of n operations (n = 1 except in batch mode). */
static enum outcome write_txn(worker *w, int op, long m, long m2, long long pts, uint64_t seq)
{
    char key[96];
    if (!run_simple(w->begin)) {
        w->busy++;
        return OUT_ERROR;
    }
    enum outcome out = OUT_OK;
    int n = WL == WL_BATCH ? O.batch : 1;
    for (int i = 0; i < n && out != OUT_ERROR; i++) {
        snprintf(key, sizeof key, "%s-%d-%llu-%d", O.prefix, w->id, (unsigned long long)seq, i);
        if (i > 0)
            m = 1 + (long)(rnd(w) % (uint64_t)O.nmembers), pts = 1 + (long long)(rnd(w) % 100);
        out = apply_op(w, op, m, m2, pts, key);
    }
    if (out == OUT_OK) {
        if (!run_simple(w->commit)) {
            run_simple(w->rollback);
            return OUT_ERROR;
        }
        return OUT_OK;
    }
    run_simple(w->rollback);
    return out;
}

static bool read_txn(worker *w, bool history, long m)
{
    int rc;
    run_simple(w->begin_read);
    sqlite3_stmt *st = history ? w->hist : w->bal;
    sqlite3_bind_int64(st, 1, m);
    step_value(st, &rc);
    run_simple(w->commit);
    return rc == SQLITE_DONE;
}

static long pick_member(worker *w)
{
    long n = O.hot > 0 && O.hot < O.nmembers ? O.hot : O.nmembers;
    return 1 + (long)(rnd(w) % (uint64_t)n);
}

/* Chooses and runs one operation; returns its outcome and whether it read. */
static enum outcome one_op(worker *w, bool *is_read)
{
    long m = pick_member(w), m2 = 0;
    long long pts = 1 + (long long)(rnd(w) % 100);
    unsigned dice = (unsigned)(rnd(w) % 100);
    uint64_t seq = w->seq++;
    int op = WL;
    *is_read = false;
    if (WL == WL_READ && dice < 80) {
        *is_read = true;
        return read_txn(w, dice >= 40, m) ? OUT_OK : OUT_ERROR;
    }
    if (WL == WL_READ || WL == WL_BATCH)
        op = WL_EARN;
    if (WL == WL_TRANSFER) {
        pts = 1;
        m2 = 1 + (m - 1 + 1 + (long)(rnd(w) % (uint64_t)(O.nmembers - 1))) % O.nmembers;
    }
    if (WL == WL_REDEEM) {
        if (dice < 5 && w->ring_n > RETRY_LAG) {
            uint64_t span =
                w->ring_n - RETRY_LAG < RING - RETRY_LAG ? w->ring_n - RETRY_LAG : RING - RETRY_LAG;
            uint64_t back = RETRY_LAG + rnd(w) % span;
            int i = (int)((w->ring_n - back) % RING);
            return write_txn(w, w->ring[i].op, w->ring[i].m, 0, w->ring[i].pts, w->ring[i].seq);
        }
        pts = dice < 25 ? REFUSED_POINTS : 1 + (long long)(rnd(w) % 5);
        int i = (int)(w->ring_n++ % RING);
        w->ring[i].op = op, w->ring[i].m = m, w->ring[i].pts = pts, w->ring[i].seq = seq;
    }
    return write_txn(w, op, m, m2, pts, seq);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    double interval = O.rate > 0 ? 1e9 / O.rate : 0;
    for (;;) {
        uint64_t sched;
        if (O.rate > 0) {
            uint64_t k = atomic_fetch_add(&TICKET, 1);
            sched = T0 + (uint64_t)((double)k * interval);
            if (sched >= T_END)
                break;
            sleep_until(sched);
        } else {
            sched = now_ns();
            if (sched >= T_END)
                break;
        }
        bool is_read;
        enum outcome out = one_op(w, &is_read);
        uint64_t done = now_ns();
        if (sched < T_MEASURE)
            continue;
        if (out == OUT_ERROR) {
            w->errors++;
            continue;
        }
        w->ok += out != OUT_REFUSED;
        w->refused += out == OUT_REFUSED;
        w->replayed += out == OUT_REPLAYED;
        w->ops += WL == WL_BATCH && !is_read ? (uint64_t)O.batch : 1;
        hist_record(&w->all, done - sched);
        hist_record(is_read ? &w->rd : &w->wr, done - sched);
    }
    return NULL;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void print_json(worker *ws, double cpu)
{
    hist *all = calloc(3, sizeof(hist));
    uint64_t ok = 0, refused = 0, replayed = 0, errors = 0, busy = 0, ops = 0;
    for (int i = 0; i < O.threads; i++) {
        hist_merge(&all[0], &ws[i].all);
        hist_merge(&all[1], &ws[i].rd);
        hist_merge(&all[2], &ws[i].wr);
        ok += ws[i].ok, refused += ws[i].refused, replayed += ws[i].replayed;
        errors += ws[i].errors, busy += ws[i].busy, ops += ws[i].ops;
    }
    double dur = O.duration_s > 0 ? O.duration_s : 1e-9;
    printf("{\"workload\": \"%s\", \"proto\": \"sqlite\", \"conns\": %d, \"rate\": %.0f, "
           "\"duration_s\": %.3f,\n \"requests\": %llu, \"ops\": %llu, \"throughput\": %.1f, "
           "\"ok\": %llu, \"refused\": %llu, \"replayed\": %llu, \"errors\": %llu, "
           "\"busy\": %llu, \"server_cpu_s\": %.3f,\n \"lat_us\": ",
           O.workload, O.threads, O.rate, dur, (unsigned long long)(ok + refused),
           (unsigned long long)ops, (double)ops / dur, (unsigned long long)ok,
           (unsigned long long)refused, (unsigned long long)replayed, (unsigned long long)errors,
           (unsigned long long)busy, cpu);
    hist_json(stdout, &all[0]);
    printf(",\n \"read_lat_us\": ");
    hist_json(stdout, &all[1]);
    printf(",\n \"write_lat_us\": ");
    hist_json(stdout, &all[2]);
    printf("}\n");
    free(all);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--init") == 0)
            O.init = true;
        else if (strcmp(a, "--db") == 0)
            O.db = v, i++;
        else if (strcmp(a, "--workload") == 0)
            O.workload = v, i++;
        else if (strcmp(a, "--prefix") == 0)
            O.prefix = v, i++;
        else if (strcmp(a, "--sync") == 0)
            O.sync = v, i++;
        else if (strcmp(a, "--threads") == 0)
            O.threads = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(a, "--hot") == 0)
            O.hot = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(a, "--batch") == 0)
            O.batch = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(a, "--duration") == 0)
            O.duration_s = strtod(v, NULL), i++;
        else if (strcmp(a, "--warmup") == 0)
            O.warmup_s = strtod(v, NULL), i++;
        else if (strcmp(a, "--rate") == 0)
            O.rate = strtod(v, NULL), i++;
        else if (strcmp(a, "--nmembers") == 0)
            O.nmembers = strtol(v, NULL, 10), i++;
        else if (strcmp(a, "--balance") == 0)
            O.balance = strtol(v, NULL, 10), i++;
        else {
            fprintf(stderr, "usage: sqlite_bench --db F [--init --nmembers N --balance B]\n"
                            "  [--workload earn|redeem|transfer|read|batch] [--threads T]\n"
                            "  [--duration S] [--warmup S] [--rate R] [--hot K] [--batch B]\n"
                            "  [--prefix P] [--sync FULL|NORMAL]\n");
            exit(2);
        }
    }
    const char *names[] = {"earn", "redeem", "transfer", "read", "batch"};
    int w = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(O.workload, names[i]) == 0)
            w = i;
    if (!O.db || w < 0 || O.threads < 1 || O.threads > THREADS_MAX || O.nmembers < 2 ||
        O.duration_s < 0 || O.duration_s > DURATION_MAX_S || O.warmup_s < 0 ||
        O.warmup_s > DURATION_MAX_S || O.batch < 1 || O.batch > 100000) {
        fprintf(stderr, "sqlite_bench: bad arguments\n");
        exit(2);
    }
    WL = (enum wl)w;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (O.init) {
        init_db();
        return 0;
    }
    worker *ws = calloc((size_t)O.threads, sizeof *ws);
    if (!ws)
        return 2;
    for (int i = 0; i < O.threads; i++) {
        ws[i].id = i;
        ws[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1) ^ (uint64_t)now_ns();
        worker_open(&ws[i]);
    }
    T0 = now_ns();
    T_MEASURE = T0 + (uint64_t)(O.warmup_s * 1e9);
    T_END = T_MEASURE + (uint64_t)(O.duration_s * 1e9);
    for (int i = 0; i < O.threads; i++)
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    sleep_until(T_MEASURE);
    double c0 = cpu_s();
    sleep_until(T_END);
    double c1 = cpu_s();
    for (int i = 0; i < O.threads; i++)
        pthread_join(ws[i].th, NULL);
    print_json(ws, c1 - c0);
    for (int i = 0; i < O.threads; i++)
        worker_close(&ws[i]);
    free(ws);
    return 0;
}
