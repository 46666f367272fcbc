/*
 * SQLite connection, statement cache and binding helpers (see db.h).
 *
 * Statements are prepared once with SQLITE_PREPARE_PERSISTENT and kept for
 * the life of the connection: preparing costs more than running the simple
 * statements the ledger issues.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "db.h"
#include "walbuf.h"

/* Statement profile for performance work: with JIFEN_SQL_PROFILE set, every
 * statement's run time is summed per SQL text and the top entries are
 * printed to stderr at exit.  Off (no callback at all) otherwise. */
#define PROFILE_SLOTS 512

typedef struct profile_slot {
    const char *key, *sql;
    uint64_t count, ns;
} profile_slot;

static profile_slot profile[PROFILE_SLOTS];
static pthread_mutex_t profile_mu = PTHREAD_MUTEX_INITIALIZER;

static int profile_cmp(const void *a, const void *b)
{
    const profile_slot *x = a, *y = b;
    return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : 0;
}

static void profile_dump(void)
{
    pthread_mutex_lock(&profile_mu);
    qsort(profile, PROFILE_SLOTS, sizeof(profile[0]), profile_cmp);
    for (int i = 0; i < 40 && profile[i].sql; i++)
        fprintf(stderr, "sqlprof %10.3f ms %9llu x %7.2f us  %.150s\n", profile[i].ns / 1e6,
                (unsigned long long)profile[i].count,
                profile[i].ns / 1e3 / (double)profile[i].count, profile[i].sql);
    pthread_mutex_unlock(&profile_mu);
}

static int profile_cb(unsigned type, void *ctx, void *p, void *x)
{
    (void)ctx;
    if (type != SQLITE_TRACE_PROFILE)
        return 0;
    const char *sql = sqlite3_sql((sqlite3_stmt *)p);
    uint64_t ns = *(sqlite3_int64 *)x;
    pthread_mutex_lock(&profile_mu);
    size_t h = ((uintptr_t)sql >> 4) % PROFILE_SLOTS;
    for (size_t n = 0; sql && n < PROFILE_SLOTS; n++) {
        profile_slot *s = &profile[(h + n) % PROFILE_SLOTS];
        if (s->sql == NULL) {
            s->sql = strdup(sql); /* the statement may be finalized before the dump */
            s->key = sql;
        }
        if (s->key == sql) {
            s->count++;
            s->ns += ns;
            break;
        }
    }
    pthread_mutex_unlock(&profile_mu);
    return 0;
}

static void profile_register(void)
{
    atexit(profile_dump);
}

static void profile_attach(sqlite3 *h)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (getenv("JIFEN_SQL_PROFILE") == NULL)
        return;
    pthread_once(&once, profile_register);
    sqlite3_trace_v2(h, SQLITE_TRACE_PROFILE, profile_cb, NULL);
}

/* The first failure of a SQLite call on this thread since the last
 * jf_db_failure_reset (SQLITE_OK when none).  Thread-local because a command
 * runs on one thread from start to end (the writer, or the thread of a
 * read), and because the calls that fail are many and deep. */
static _Thread_local int db_failed_rc;

static void db_failed(int rc)
{
    if (db_failed_rc == SQLITE_OK)
        db_failed_rc = rc == SQLITE_OK ? SQLITE_ERROR : rc;
}

void jf_db_failure_reset(void)
{
    db_failed_rc = SQLITE_OK;
}

jf_err jf_db_failure(void)
{
    if (db_failed_rc == SQLITE_OK)
        return JF_OK;
    bool nomem = (db_failed_rc & 0xff) == SQLITE_NOMEM || db_failed_rc == SQLITE_IOERR_NOMEM;
    return nomem ? JF_ERR_NOMEM : JF_ERR_IO;
}

/* Set on the writer thread: a statement that writes may run only inside a
 * transaction (jf_db_guard_writes). */
static _Thread_local bool db_writes_guarded;

void jf_db_guard_writes(void)
{
    db_writes_guarded = true;
}

int jf_db_step(sqlite3_stmt *st)
{
    if (db_writes_guarded && !sqlite3_stmt_readonly(st) &&
        sqlite3_get_autocommit(sqlite3_db_handle(st))) {
        db_failed(SQLITE_ABORT);
        return SQLITE_ABORT;
    }
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        db_failed(rc);
    return rc;
}

static void db_set_error(jf_db *db, const char *what)
{
    snprintf(db->errmsg, sizeof(db->errmsg), "%s: %s", what,
             db->h ? sqlite3_errmsg(db->h) : "no connection");
}

/* The statement generation (jf_db_stmts_expire).  Relaxed: whoever bumps it
 * either is the connection's owner or hands the owner its next work through
 * a mutex (the writer's queue, the read pool), which orders the bump before
 * the owner's next load. */
static _Atomic uint64_t db_stmt_gen;

/* Process-wide settings, made before SQLite initializes (the VFS lookup in
 * jf_walbuf_vfs initializes it).  Memory statistics off: with them on,
 * every allocation SQLite makes takes one process-wide mutex to count it,
 * and Debian's build has no lookaside, so every small object is one.  A
 * failure (SQLite already initialized by another caller) only keeps the
 * default. */
static void db_global_init(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* SQL function jf_kept(x): returns x and keeps it in the connection's
 * jf_db.  An UPDATE that sets a column to jf_kept(expression) hands the new
 * value back without RETURNING, which SQLite implements with an ephemeral
 * table opened, filled and closed on every execution. */
static void kept_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    jf_db *db = sqlite3_user_data(ctx);
    db->kept = sqlite3_value_int64(argv[0]);
    sqlite3_result_value(ctx, argv[0]);
}

/* SQL function jf_tx_seq(tenant, id): the seq the transaction id names in
 * that tenant under the connection's key (txid.h), or NULL for an id
 * without one, another tenant's, or an unkeyed connection.  JF_TX_SEQ_SQL
 * looks the older ids up. */
static void tx_seq_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const jf_db *db = sqlite3_user_data(ctx);
    const char *id = (const char *)sqlite3_value_text(argv[1]);
    int64_t tenant = 0, seq = 0;
    if (db->txid_keyed && id &&
        jf_txid_parse(db->txid_key, id, (size_t)sqlite3_value_bytes(argv[1]), &tenant, &seq) &&
        tenant == sqlite3_value_int64(argv[0]))
        sqlite3_result_int64(ctx, seq);
    else
        sqlite3_result_null(ctx);
}

int jf_db_chunk_bytes(int64_t file_bytes)
{
    int chunk = JF_DB_CHUNK_BYTES_MIN;
    while (chunk < JF_DB_CHUNK_BYTES_MAX && (int64_t)chunk * 8 < file_bytes)
        chunk *= 2;
    return chunk;
}

jf_err jf_db_open(jf_db *db, const char *path, bool readonly)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, db_global_init);
    memset(db, 0, sizeof(*db));
    db->stmt_gen = atomic_load_explicit(&db_stmt_gen, memory_order_relaxed);
    int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db->h, flags, jf_walbuf_vfs()) != SQLITE_OK) {
        db_set_error(db, "cannot open database");
        return JF_ERR_IO;
    }
    sqlite3_busy_timeout(db->h, 10000);
    profile_attach(db->h);
    if (sqlite3_create_function(db->h, "jf_kept", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, db, kept_fn,
                                NULL, NULL) != SQLITE_OK ||
        sqlite3_create_function(db->h, "jf_tx_seq", 2,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, db,
                                tx_seq_fn, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_exec(db->h, "PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (!readonly && sqlite3_exec(db->h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    /* Grow the files in large chunks: appending a page at a time makes every
     * fdatasync also journal the file's new size, which costs more than the
     * data itself on ext4.  The chunk follows the file's size, so that a new
     * database (every test's, the fuzzers', a small shop's) is not 32 MiB of
     * zeros written and synced: `jifen init` took 70-80 ms with them. */
    struct stat st;
    int chunk = jf_db_chunk_bytes(stat(path, &st) == 0 ? (int64_t)st.st_size : 0);
    if (!readonly)
        sqlite3_file_control(db->h, "main", SQLITE_FCNTL_CHUNK_SIZE, &chunk);
    if (sqlite3_exec(db->h, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    /* Statement journals of savepoints stay in memory instead of temp files. */
    /* Pages are read through a memory map rather than a pread and a copy each.
     * Debian's secure_delete stays on: a member's old phone number or name,
     * replaced by an update, is zeroed in the page rather than left in its
     * free space, and turning it off showed no gain within the scatter. */
    if (sqlite3_exec(db->h,
                     "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768;"
                     " PRAGMA mmap_size=1073741824",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    /* A new database has no meta table yet: it is keyed once upgraded.  A
     * key that cannot be read fails the open: a connection without it would
     * answer "not found" for every transaction made since version 21. */
    jf_err kerr = jf_db_txid_key_load(db);
    if (kerr != JF_OK) {
        db_set_error(db, kerr == JF_ERR_CORRUPT ? "the database's transaction id key is damaged"
                                                : "cannot read the transaction id key");
        return kerr;
    }
    return JF_OK;
fail:
    db_set_error(db, "cannot configure database");
    return JF_ERR_IO;
}

jf_err jf_db_txid_key_load(jf_db *db)
{
    db->txid_keyed = false;
    int64_t has_meta = 0;
    jf_err err = jf_db_int(db, &has_meta, 0,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                           " name = 'meta'",
                           "");
    sqlite3_stmt *st = err == JF_OK && has_meta
                           ? jf_db_query(db, "SELECT value FROM meta WHERE key = 'txid_key'", "")
                           : NULL;
    if (st == NULL)
        return err;
    int rc = jf_db_step(st);
    if (rc == SQLITE_ROW) {
        const char *hex = jf_db_text(st, 0);
        size_t n = 0;
        db->txid_keyed = hex && strlen(hex) == 2 * JF_TXID_KEY_BYTES &&
                         sodium_hex2bin(db->txid_key, sizeof db->txid_key, hex, strlen(hex), NULL,
                                        &n, NULL) == 0 &&
                         n == sizeof db->txid_key;
        err = db->txid_keyed ? JF_OK : JF_ERR_CORRUPT;
    } else if (rc != SQLITE_DONE) {
        err = JF_ERR_IO;
    }
    sqlite3_reset(st);
    return err;
}

/* Finalizes every cached statement and empties the cache. */
static void db_cache_clear(jf_db *db)
{
    for (int i = 0; i < JF_DB_STMT_CACHE; i++)
        if (db->cache[i].stmt)
            sqlite3_finalize(db->cache[i].stmt);
    memset(db->cache, 0, sizeof(db->cache));
}

void jf_db_stmts_expire(void)
{
    atomic_fetch_add_explicit(&db_stmt_gen, 1, memory_order_relaxed);
}

void jf_db_stmts_renew(jf_db *db)
{
    uint64_t gen = atomic_load_explicit(&db_stmt_gen, memory_order_relaxed);
    if (db->stmt_gen == gen)
        return;
    db_cache_clear(db);
    db->stmt_gen = gen;
}

void jf_db_close(jf_db *db)
{
    if (db == NULL || db->h == NULL)
        return;
    db_cache_clear(db);
    sqlite3_close(db->h);
    memset(db, 0, sizeof(*db));
}

static sqlite3_stmt *db_prepare_cached(jf_db *db, const char *sql, int bound)
{
    size_t h = ((uintptr_t)sql >> 3) % JF_DB_STMT_CACHE;
    for (size_t n = 0; n < JF_DB_STMT_CACHE; n++) {
        jf_db_stmt_slot *slot = &db->cache[(h + n) % JF_DB_STMT_CACHE];
        if (slot->sql == sql) {
            sqlite3_reset(slot->stmt);
            /* Stale bindings are cleared unless every parameter is bound
             * again (a bind releases the value it replaces): clearing all
             * of an insert's 35 was about 1% of the writer's instructions
             * per write. */
            if (bound < sqlite3_bind_parameter_count(slot->stmt))
                sqlite3_clear_bindings(slot->stmt);
            return slot->stmt;
        }
        if (slot->sql == NULL) {
            int rc =
                sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &slot->stmt, NULL);
            if (rc != SQLITE_OK) {
                db_failed(rc);
                db_set_error(db, "prepare failed");
                slot->stmt = NULL;
                return NULL;
            }
            slot->sql = sql;
            return slot->stmt;
        }
    }
    db_failed(SQLITE_ERROR);
    snprintf(db->errmsg, sizeof(db->errmsg), "statement cache full");
    return NULL;
}

/* Text and blobs are bound SQLITE_STATIC (not copied) by the calls that
 * step and reset the statement before they return (jf_db_run, jf_db_int),
 * while the caller's values are alive; jf_db_query hands the statement back
 * to be stepped later, so it binds copies.  A statement's stale bindings
 * are never read: db_prepare_cached clears them before its next use unless
 * that use binds every parameter again. */
static int db_bind(sqlite3_stmt *st, const char *fmt, va_list ap, sqlite3_destructor_type keep)
{
    int rc = SQLITE_OK;
    for (int i = 1; fmt && *fmt && rc == SQLITE_OK; fmt++, i++) {
        switch (*fmt) {
        case 'I':
            rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
            break;
        case 'i':
            rc = sqlite3_bind_int(st, i, va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i, s, -1, keep) : sqlite3_bind_null(st, i);
            break;
        }
        case 'b': {
            const void *p = va_arg(ap, const void *);
            int len = va_arg(ap, int);
            rc = sqlite3_bind_blob(st, i, p, len, keep);
            break;
        }
        case 'n':
            rc = sqlite3_bind_null(st, i);
            break;
        case 'Z':
        case 'N': {
            int64_t v = va_arg(ap, int64_t);
            bool null = *fmt == 'Z' ? v == 0 : v < 0;
            rc = null ? sqlite3_bind_null(st, i) : sqlite3_bind_int64(st, i, v);
            break;
        }
        default:
            return SQLITE_MISUSE;
        }
    }
    return rc;
}

static sqlite3_stmt *db_query_v(jf_db *db, const char *sql, const char *fmt, va_list ap,
                                sqlite3_destructor_type keep)
{
    sqlite3_stmt *st = db_prepare_cached(db, sql, fmt ? (int)strlen(fmt) : 0);
    if (st == NULL)
        return NULL;
    int rc = db_bind(st, fmt, ap, keep);
    if (rc != SQLITE_OK) {
        db_failed(rc);
        db_set_error(db, "bind failed");
        return NULL;
    }
    return st;
}

sqlite3_stmt *jf_db_query(jf_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = db_query_v(db, sql, fmt, ap, SQLITE_TRANSIENT);
    va_end(ap);
    return st;
}

jf_err jf_db_run(jf_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = db_query_v(db, sql, fmt, ap, SQLITE_STATIC);
    va_end(ap);
    if (st == NULL)
        return JF_ERR_IO;
    int rc;
    while ((rc = jf_db_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        db_set_error(db, "statement failed");
        return rc == SQLITE_CONSTRAINT ? JF_ERR_CORRUPT : JF_ERR_IO;
    }
    return JF_OK;
}

jf_err jf_db_int(jf_db *db, int64_t *out, int64_t dflt, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = db_query_v(db, sql, fmt, ap, SQLITE_STATIC);
    va_end(ap);
    if (st == NULL)
        return JF_ERR_IO;
    int rc = jf_db_step(st);
    *out = dflt;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_set_error(db, "query failed");
        return JF_ERR_IO;
    }
    return JF_OK;
}

void jf_db_end_stale(jf_db *db)
{
    if (!sqlite3_get_autocommit(db->h) && jf_db_exec(db, "ROLLBACK") == JF_OK)
        fprintf(stderr, "jifen: rolled back a transaction an earlier failure left open\n");
}

jf_err jf_db_exec(jf_db *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        db_failed(rc);
        snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg ? msg : "exec failed");
        sqlite3_free(msg);
        return JF_ERR_IO;
    }
    return JF_OK;
}

int64_t jf_db_changes(jf_db *db)
{
    return sqlite3_changes64(db->h);
}

const char *jf_db_text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

int64_t jf_db_int_or(sqlite3_stmt *st, int col, int64_t if_null)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? if_null : sqlite3_column_int64(st, col);
}
