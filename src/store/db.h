/*
 * A thin layer over SQLite used by the whole core: one connection with a
 * cache of persistent prepared statements, and printf-like binding so that a
 * query reads as one line at its call site.
 *
 * Format letters for jf_db_query/jf_db_run: 'I' int64_t, 'i' int, 's' const
 * char * (NULL binds SQL NULL), 'b' blob (const void *, int length), 'n' NULL,
 * 'Z' int64_t that binds NULL when it is 0 (a posting's amount, never 0) and
 * 'N' int64_t that binds NULL when it is negative (a lot's expiry when it has
 * none).  The last two spare an SQL NULLIF, a function call per row.
 * A statement returned by jf_db_query stays owned by the cache; it is reset
 * at its next use, so finish stepping it before issuing the same SQL again.
 */
#ifndef JF_DB_H
#define JF_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "jifen/errors.h"
#include "txid.h"

/* One slot per SQL literal of the core (about 160 today); a full cache fails
 * the query, so keep this well above their number. */
#define JF_DB_STMT_CACHE 1024
/* A database file grows by whole chunks (db.c, jf_db_chunk_bytes): an
 * eighth of its size when opened, as a power of two between these. */
#define JF_DB_CHUNK_BYTES_MIN (1024 * 1024)
#define JF_DB_CHUNK_BYTES_MAX (32 * 1024 * 1024)
_Static_assert(JF_DB_CHUNK_BYTES_MIN <= JF_DB_CHUNK_BYTES_MAX, "chunk bounds in order");
/* member_state's key for a lot that never expires (schema.c, version 7):
 * INT64_MAX, after every real time, so a member's lots sort expiring first. */
#define JF_NEVER_SQL "9223372036854775807"
/* The key1 of a member's due row in member_state (kind 0, beside its accounts
 * 0 points, 1 growth and 2 held): the due_at of its entry in member_due
 * (schema.c, version 18; src/core/lots.c). */
#define JF_DUE_KEY 3
#define JF_DUE_KEY_SQL "3"

/* What the transaction row t posts to the account acct (SQL expressions):
 * its slots' amounts for that account (schema version 16), or for a
 * transaction written before, the sum of its rows in posting_rows.  A query
 * that sums postings per transaction uses this instead of the view
 * `postings`, whose union the planner cannot search by a column of another
 * table: through the view it read every posting of the tenant
 * (tests/api/test_query_plans.py). */
#define JF_SQL_POSTED(t, acct)                                                                     \
    "(CASE WHEN " t ".posting_count > 0 THEN"                                                      \
    " CASE WHEN " t ".p0_account = " acct " THEN " t ".p0_amount ELSE 0 END +"                     \
    " CASE WHEN " t ".p1_account = " acct " THEN " t ".p1_amount ELSE 0 END +"                     \
    " CASE WHEN " t ".p2_account = " acct " THEN " t ".p2_amount ELSE 0 END +"                     \
    " CASE WHEN " t ".p3_account = " acct " THEN " t ".p3_amount ELSE 0 END +"                     \
    " CASE WHEN " t ".p4_account = " acct " THEN " t ".p4_amount ELSE 0 END +"                     \
    " CASE WHEN " t ".p5_account = " acct " THEN " t ".p5_amount ELSE 0 END"                       \
    " ELSE COALESCE((SELECT SUM(pr.amount) FROM posting_rows pr WHERE pr.tenant_id = " t           \
    ".tenant_id AND pr.tx_seq = " t ".seq AND pr.account = " acct "), 0) END)"

/* A transaction's entry in member_state (kind 2, key1 its seq; schema.c,
 * version 11) carries what a tier window sums, so the sums read the
 * member's own range and nothing else: key2 the transaction's created_at,
 * key3 its order amount when it is the member's earn with an order
 * currency, key4 twice the tenant's latest transaction time up to this one
 * (tenants.tx_time_max as it was after it) plus 1 when it is the member's
 * earn with an order id, value the member's growth in it; a counterparty's
 * entry has 0 in key3 and value and no order flag.  The latest time never
 * decreases along seq, even if the clock stepped back, so a scan of a
 * member's entries from the newest stops exactly where it falls before a
 * window (tiers.c).  These are the same as SQL over the transaction t, the
 * member m and tm, JF_TX_TIME_MAX_SELECT's rows (verify's S1 the same for
 * one tenant, by txkey since schema version 22), for the upgrade to version
 * 11 and for verify; tx.c writes them from memory. */
#define JF_TX_TIME_MAX_SELECT                                                                      \
    "SELECT tenant_id, seq, max(created_at) OVER (PARTITION BY tenant_id ORDER BY seq) AS tmax"    \
    " FROM transactions"
#define JF_TX_ENTRY_KEY2_SQL "t.created_at"
#define JF_TX_ENTRY_KEY3_SQL                                                                       \
    "CASE WHEN t.member_id = m.id AND t.type = 'earn' AND t.order_currency IS NOT NULL"            \
    " THEN t.order_amount ELSE 0 END"
#define JF_TX_ENTRY_KEY4_SQL                                                                       \
    "(tm.tmax * 2 + CASE WHEN t.member_id = m.id AND t.type = 'earn' AND t.order_id IS NOT NULL"   \
    " THEN 1 ELSE 0 END)"
#define JF_TX_ENTRY_GROWTH_SQL JF_SQL_POSTED("t", "('member:' || m.id || ':growth')")
#define JF_TX_ENTRY_VALUE_SQL                                                                      \
    "CASE WHEN t.member_id = m.id THEN " JF_TX_ENTRY_GROWTH_SQL " ELSE 0 END"
/* The same as the upgrade to version 11 computed it, when every posting was
 * a row of the postings table (schema.c). */
#define JF_TX_ENTRY_VALUE_V11_SQL                                                                  \
    "CASE WHEN t.member_id = m.id THEN COALESCE((SELECT SUM(g.amount) FROM postings g"             \
    " WHERE g.tenant_id = t.tenant_id AND g.tx_seq = t.seq"                                        \
    " AND g.account = 'member:' || m.id || ':growth'), 0) ELSE 0 END"

/* A transaction's rowid, txkey (schema version 22): the tenant shifted over
 * the seq's JF_TXID_SEQ_BITS, plus the seq, as SQL over the expressions
 * tenant and seq (a sum, not an or, so that seq JF_TXID_SEQ_MAX + 1 is the
 * next tenant's first key, an exclusive bound); and the tenant and the seq
 * of a txkey, the table's virtual columns.  A tenant of 2^19 or more
 * has negative keys (its top bit is the sign's), which SQLite's shift
 * carries into the tenant unless masked, and still one range each: its keys
 * grow with the seq, and JF_TX_KEY_SQL(tenant, JF_TXID_SEQ_MAX + 1) is
 * past its last key (the next tenant's first, or for tenant 2^19 - 1 a
 * real number past every integer: SQLite's sum leaves the integers there;
 * tests/unit/test_schema.c).  A statement finds a tenant's transaction by
 * `t.txkey = JF_TX_KEY_SQL(tenant, seq)` and reads a tenant's transactions
 * by JF_TX_OF_TENANT_SQL("t.txkey", tenant) (the view postings: tx_key):
 * the planner searches by txkey, never by the virtual columns
 * (tests/api/test_query_plans.py).  The seq always fits (jf_txid_make
 * refuses a larger one before a transaction is written). */
#define JF_SQL_STR_(x) #x
#define JF_SQL_STR(x) JF_SQL_STR_(x)
#define JF_TX_SEQ_BITS_SQL JF_SQL_STR(JF_TXID_SEQ_BITS)
#define JF_TX_SEQ_MASK_SQL "((1 << " JF_TX_SEQ_BITS_SQL ") - 1)"
#define JF_TX_KEY_SQL(tenant, seq) "(((" tenant ") << " JF_TX_SEQ_BITS_SQL ") + (" seq "))"
#define JF_TX_TENANT_MASK_SQL "((1 << " JF_SQL_STR(JF_TXID_TENANT_BITS) ") - 1)"
#define JF_TX_TENANT_OF_SQL(txkey)                                                                 \
    "(((" txkey ") >> " JF_TX_SEQ_BITS_SQL ") & " JF_TX_TENANT_MASK_SQL ")"
#define JF_TX_SEQ_OF_SQL(txkey) "((" txkey ") & " JF_TX_SEQ_MASK_SQL ")"
#define JF_TX_OF_TENANT_SQL(txkey, tenant)                                                         \
    txkey " BETWEEN " JF_TX_KEY_SQL(tenant, "0") " AND " JF_TX_KEY_SQL(tenant, JF_TX_SEQ_MASK_SQL)

/* The seq of the tenant's transaction whose id is the SQL expression id, for
 * `t.txkey = JF_TX_KEY_SQL(tenant, JF_TX_SEQ_SQL(tenant, id))`, a lookup of
 * the primary key: the seq the id names in that tenant (txid.h;
 * jf_tx_seq(tenant, id) is registered on every connection by jf_db_open and
 * deciphers under the connection's txid_key), or for an id made before
 * schema version 21 its entry in tx_old_ids.  NULL when neither knows it.
 * The caller still compares the row's id with id: an id of the new form
 * names a seq whatever its time digits say. */
#define JF_TX_SEQ_SQL(tenant, id)                                                                  \
    "COALESCE(jf_tx_seq(" tenant ", " id "), (SELECT o.seq FROM tx_old_ids o"                      \
    " WHERE o.tenant_id = " tenant " AND o.id = " id "))"

/* Whether a rule version's body (a column or expression of JSON text) has a
 * per-member limit: the schema's upgrade, the rule store and verify (A3)
 * decide with it which rules' awards award_caps holds (schema version 12). */
#define JF_RULE_PER_MEMBER_SQL(body) "json_extract(" body ", '$.limits.per_member') IS NOT NULL"

typedef struct jf_db_stmt_slot {
    const char *sql; /* the literal the statement was prepared from (by address) */
    sqlite3_stmt *stmt;
} jf_db_stmt_slot;

typedef struct jf_db {
    sqlite3 *h;
    int64_t kept;    /* the value jf_kept(x) last saw in a statement (jf_db_open) */
    bool txid_keyed; /* txid_key holds the database's key (jf_db_txid_key_load) */
    uint8_t txid_key[JF_TXID_KEY_BYTES];
    uint64_t stmt_gen; /* the statement generation the cache belongs to (jf_db_stmts_renew) */
    jf_db_stmt_slot cache[JF_DB_STMT_CACHE];
    char errmsg[256];
} jf_db;

/* Opens path (creating it unless readonly), sets WAL and synchronous=FULL,
 * a busy timeout, and foreign keys.  On failure writes a sentence to
 * db->errmsg and returns JF_ERR_IO. */
jf_err jf_db_open(jf_db *db, const char *path, bool readonly);

/* The chunk a database file of file_bytes grows by (jf_db_open sets it on
 * the connection): an eighth of the file, rounded up to a power of two,
 * within JF_DB_CHUNK_BYTES_MIN..MAX.  A new database starts at 1 MiB instead
 * of 32, and a large one still grows rarely. */
int jf_db_chunk_bytes(int64_t file_bytes);

/* Reads the database's transaction id key (meta 'txid_key', schema version
 * 21) into db, for jf_tx_seq and the writer's new ids.  A database without
 * one (not yet upgraded, or no database yet) leaves db unkeyed: jf_tx_seq
 * then names nothing, and the writer makes no transaction.  jf_db_open and
 * jf_db_migrate call it; returns JF_ERR_CORRUPT for a key that is not 32
 * hex digits, JF_ERR_IO when it cannot be read. */
jf_err jf_db_txid_key_load(jf_db *db);

/* Finalizes every cached statement and closes.  Safe on a zeroed db. */
void jf_db_close(jf_db *db);

/* For tests only (test_faults): makes every connection's cached statements
 * stale, so that the next use of each statement prepares it again and a
 * failure injected into the next call also reaches the preparations.  It
 * bumps a process-wide statement generation and touches no connection, so
 * it is safe from any thread: each connection's owner finalizes its own
 * statements when it next calls jf_db_stmts_renew. */
void jf_db_stmts_expire(void);

/* Finalizes db's cached statements when jf_db_stmts_expire was called since
 * they were prepared; otherwise does nothing.  Called only by db's owner at
 * a point where none of its statements is in use: the writer as a batch
 * begins, a reader as it takes a connection from the pool.  Costs one
 * relaxed atomic load there, and nothing per statement. */
void jf_db_stmts_renew(jf_db *db);

/* Prepares (or reuses) sql, binds the arguments per fmt.  Returns NULL on
 * error (the message is in db->errmsg).  sql must be a string literal or
 * otherwise outlive the db: the cache keys on its address. */
sqlite3_stmt *jf_db_query(jf_db *db, const char *sql, const char *fmt, ...);

/* Steps st as sqlite3_step does, and keeps a result other than SQLITE_ROW
 * or SQLITE_DONE as this thread's failure.  Code that reads "no row" from a
 * failed step ("not found", an empty list) would otherwise answer a business
 * result for an I/O error or an allocation failure; the command's boundary
 * (ctx_finish) asks jf_db_failure and answers the system failure instead.
 * Every step in the core goes through it; so do the failures of the calls
 * below (prepare, bind, run, exec). */
int jf_db_step(sqlite3_stmt *st);

/* From now on, on this thread, jf_db_step refuses (SQLITE_ABORT, kept as the
 * thread's failure) a statement that writes outside a transaction.  The
 * writer calls it: SQLite may roll a whole transaction back when a statement
 * fails (an allocation, a full disk, an I/O error), and the statements of
 * the batch that came after would otherwise each commit on their own, half
 * a command made durable without the rest of its batch. */
void jf_db_guard_writes(void);

/* Forgets this thread's failure: called as a command or a read starts. */
void jf_db_failure_reset(void);

/* JF_OK when no SQLite call failed on this thread since the last reset;
 * else JF_ERR_NOMEM for an allocation failure, JF_ERR_IO for the rest. */
jf_err jf_db_failure(void);

/* jf_db_query and step to completion; for INSERT/UPDATE/DELETE. */
jf_err jf_db_run(jf_db *db, const char *sql, const char *fmt, ...);

/* Rolls back a transaction left open on db, before a new one begins.  Every
 * transaction ends in a COMMIT or a ROLLBACK, but either can itself fail
 * (out of memory), and a transaction left open would then fail every later
 * BEGIN on the connection and hold back every checkpoint. */
void jf_db_end_stale(jf_db *db);

/* Runs one or more statements without parameters (DDL, BEGIN, COMMIT). */
jf_err jf_db_exec(jf_db *db, const char *sql);

/* Runs a query that yields one int64 in its first column; *out = dflt when it
 * yields no row or NULL. */
jf_err jf_db_int(jf_db *db, int64_t *out, int64_t dflt, const char *sql, const char *fmt, ...);

/* Rows changed by the last statement. */
int64_t jf_db_changes(jf_db *db);

/* A column as text, "" for NULL-safe display; NULL when the value is NULL. */
const char *jf_db_text(sqlite3_stmt *st, int col);

/* Column col of the current row as an integer, or if_null when it is NULL. */
int64_t jf_db_int_or(sqlite3_stmt *st, int col, int64_t if_null);

/* Creates or migrates the schema; run once by the writer's connection. */
jf_err jf_db_migrate(jf_db *db);

#endif
