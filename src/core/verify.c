/*
 * `jifen verify`: recomputes every invariant of DESIGN.md from the stored
 * rows, trusting nothing the engine maintains incrementally (balances, lot
 * remainders, chain heads).  It runs in one read transaction, so it is safe
 * while the server writes, and it finds rows changed behind the server's
 * back — an edited amount, a deleted row — not only what triggers would
 * have blocked.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ledger.h"

/* A member_accounts row as the account name postings carry. */
#define MEMBER_ACCOUNT_NAME                                                                        \
    "SELECT 'member:' || member_id || CASE account WHEN 0 THEN ':points' WHEN 1 THEN ':growth'"    \
    " ELSE ':held' END, balance"

typedef struct verifier {
    jf_db *db;
    json_t *violations, *tenants;
    int64_t count;
} verifier;

static void violation(verifier *v, const char *inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void violation(verifier *v, const char *inv, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    v->count++;
    if (json_array_size(v->violations) < JF_VERIFY_REPORT_MAX)
        json_array_append_new(v->violations, json_pack("{ssss}", "invariant", inv, "detail", buf));
}

/* Reports each row of st as a violation described by its columns: of the
 * tenant given, or, when tenant is negative (a statement over every
 * tenant), of the tenant in the row's first column. */
static jf_err report_rows(verifier *v, const char *inv, const char *what, sqlite3_stmt *st,
                          int64_t tenant)
{
    if (st == NULL)
        return JF_ERR_IO;
    int c = tenant < 0 ? 1 : 0;
    while (jf_db_step(st) == SQLITE_ROW) {
        const char *a = jf_db_text(st, c);
        violation(v, inv, "tenant %lld: %s: %s (%lld vs %lld)",
                  (long long)(tenant < 0 ? sqlite3_column_int64(st, 0) : tenant), what, a ? a : "?",
                  (long long)sqlite3_column_int64(st, c + 1),
                  (long long)sqlite3_column_int64(st, c + 2));
    }
    sqlite3_reset(st);
    return JF_OK;
}

/* Runs a query of the tenant ?1 whose every row is a violation. */
static jf_err check_rows(verifier *v, const char *inv, const char *what, const char *sql,
                         int64_t tenant)
{
    assert(tenant >= 0);
    return report_rows(v, inv, what, jf_db_query(v->db, sql, "I", tenant), tenant);
}

/* Runs a query over every tenant whose every row is a violation, its
 * tenant first. */
static jf_err check_rows_all(verifier *v, const char *inv, const char *what, const char *sql)
{
    return report_rows(v, inv, what, jf_db_query(v->db, sql, ""), -1);
}

/* The transactions t (x, o, e, or the table by its name) of the tenant ?1,
 * a range of their key (db.h, JF_TX_OF_TENANT_SQL): a condition on the
 * virtual tenant_id would read every tenant's; and the postings' the same
 * by the view's tx_key. */
#define T_OF_TENANT JF_TX_OF_TENANT_SQL("t.txkey", "?1")
#define X_OF_TENANT JF_TX_OF_TENANT_SQL("x.txkey", "?1")
#define O_OF_TENANT JF_TX_OF_TENANT_SQL("o.txkey", "?1")
#define E_OF_TENANT JF_TX_OF_TENANT_SQL("e.txkey", "?1")
#define TABLE_OF_TENANT JF_TX_OF_TENANT_SQL("transactions.txkey", "?1")
#define POSTINGS_OF_TENANT JF_TX_OF_TENANT_SQL("tx_key", "?1")
/* The key (db.h, JF_TX_KEY_SQL) of the transaction that made the
 * consumption c, of the member entry s, of the old id o (and of the one
 * that expired the lot l: ledger.h, LOT_EXPIRY_KEY). */
#define CONSUMPTION_KEY JF_TX_KEY_SQL("c.tenant_id", "c.tx_seq")
#define ENTRY_KEY JF_TX_KEY_SQL("s.tenant_id", "s.seq")
#define OLD_ID_KEY JF_TX_KEY_SQL("?1", "o.seq")

/* The sum of a transaction row's posting slots (unused ones are NULL). */
#define SLOTS_SUM                                                                                  \
    "(COALESCE(p0_amount, 0) + COALESCE(p1_amount, 0) + COALESCE(p2_amount, 0) +"                  \
    " COALESCE(p3_amount, 0) + COALESCE(p4_amount, 0) + COALESCE(p5_amount, 0))"

/* I2: each account's balance row against the sum of its postings, in one
 * sort of both by account; an account with postings and no balance row, or
 * with two, is reported too.  (A join of the balances with the postings'
 * sums per account made the planner scan every sum for each balance once
 * the postings became the view of schema version 16.) */
#define BALANCES_DIFFER                                                                            \
    "WITH a(account, balance) AS (SELECT account, balance FROM accounts WHERE tenant_id = ?1"      \
    " UNION ALL " MEMBER_ACCOUNT_NAME " FROM member_accounts WHERE tenant_id = ?1),"               \
    " x(account, balance, total, rows) AS (SELECT account, SUM(balance), SUM(total), SUM(n)"       \
    " FROM (SELECT account, balance, 0 AS total, 1 AS n FROM a UNION ALL"                          \
    " SELECT account, 0, amount, 0 FROM postings WHERE tenant_id = ?1 AND " POSTINGS_OF_TENANT     \
    ") GROUP BY account)"                                                                          \
    " SELECT account, balance, total FROM x WHERE balance <> total OR rows <> 1"

static jf_err check_sums(verifier *v, int64_t t)
{
    jf_err err =
        check_rows(v, "I1", "postings of transaction do not sum to zero",
                   "SELECT 'seq ' || tx_seq, SUM(amount), 0 FROM posting_rows WHERE tenant_id=?"
                   " GROUP BY tx_seq HAVING SUM(amount) <> 0",
                   t);
    /* Since version 16 a transaction's postings are in its row; a row never
     * has both (the slots' CHECK keeps posting_count to the slots in use). */
    if (err == JF_OK)
        err = check_rows(v, "I1", "postings of transaction do not sum to zero",
                         "SELECT 'seq ' || t.seq, " SLOTS_SUM
                         ", 0 FROM transactions t WHERE " T_OF_TENANT
                         " AND posting_count > 0 AND " SLOTS_SUM " <> 0",
                         t);
    if (err == JF_OK)
        err = check_rows(
            v, "I1", "transaction has postings both in its row and as rows",
            "SELECT 'seq ' || t.seq, t.posting_count, 0 FROM transactions t WHERE " T_OF_TENANT
            " AND t.posting_count > 0 AND EXISTS (SELECT 1 FROM"
            " posting_rows r WHERE r.tenant_id = t.tenant_id AND r.tx_seq = t.seq)",
            t);
    if (err == JF_OK)
        err = check_rows(v, "I2", "account balance differs from its postings", BALANCES_DIFFER, t);
    if (err == JF_OK)
        err = check_rows(v, "I3", "member balance below its recorded debt or held below zero",
                         "SELECT 'member:' || a.member_id || CASE a.account WHEN 0 THEN ':points'"
                         " ELSE ':held' END, a.balance, COALESCE(m.debt, 0)"
                         " FROM member_accounts a LEFT JOIN members m ON m.tenant_id ="
                         " a.tenant_id AND m.id = a.member_id WHERE a.tenant_id = ?1 AND"
                         " ((a.account = 0 AND a.balance < -COALESCE(m.debt, 0)) OR"
                         " (a.account = 2 AND a.balance < 0))",
                         t);
    return err;
}

/* I4 and I10 by the consumptions of the tenant ?1. */
static jf_err check_consumptions(verifier *v, int64_t t)
{
    jf_err err = check_rows(v, "I4", "consumption of a missing lot",
                            "SELECT 'lot seq ' || c.lot_seq, c.amount, c.tx_seq FROM consumptions c"
                            " WHERE c.tenant_id = ? AND NOT EXISTS (SELECT 1 FROM lots l"
                            " WHERE l.seq = c.lot_seq)",
                            t);
    /* Since schema version 13 an expiry consumes nothing: a consumption by
     * one would expire its lot a second time. */
    if (err == JF_OK)
        err = check_rows(v, "I10", "lot consumed by an expiry",
                         "SELECT l.id, c.amount, c.tx_seq FROM consumptions c JOIN transactions x"
                         " ON x.txkey = " CONSUMPTION_KEY " JOIN lots l"
                         " ON l.seq = c.lot_seq WHERE c.tenant_id = ? AND x.type = 'expire'",
                         t);
    return err;
}

/* The checks driven by the lots run once over every tenant's, each row's
 * tenant first: the lots table has no index that starts with the tenant
 * (an earn would pay for one), so a statement per tenant would read every
 * tenant's lots once per tenant.  I4: each member's lots minus its debt
 * are its points balance, and each lot's remaining is its amount less its
 * consumptions and its expiry.  I10: an expired lot is emptied by its
 * expiry, and an expiry's points are what its lots lost.  S1: each lot has
 * its entry in member_state.  S2: each member with an open lot that
 * expires has a due entry at or before it. */
#define LOTS_DIFFER_FROM_BALANCE                                                                   \
    "WITH l(tenant_id, member_id, total) AS (SELECT tenant_id, member_id, SUM(remaining)"          \
    " FROM lots GROUP BY tenant_id, member_id)"                                                    \
    " SELECT m.tenant_id, m.id, COALESCE(l.total, 0) - m.debt AS lots, COALESCE((SELECT balance"   \
    " FROM member_accounts a WHERE a.tenant_id = m.tenant_id AND a.member_id = m.id AND"           \
    " a.account = 0), 0) AS bal FROM members m LEFT JOIN l ON l.tenant_id = m.tenant_id"           \
    " AND l.member_id = m.id WHERE lots <> bal"
#define LOT_REMAINING_DIFFERS                                                                      \
    "SELECT l.tenant_id, l.id, l.remaining, l.amount - COALESCE((SELECT SUM(c.amount)"             \
    " FROM consumptions c WHERE c.lot_seq = l.seq), 0) - COALESCE(l.expired_amount, 0) AS r"       \
    " FROM lots l WHERE l.remaining <> r OR l.remaining < 0 OR l.remaining > l.amount"
#define LOT_EXPIRY_UNRECORDED                                                                      \
    "SELECT l.tenant_id, l.id, l.remaining, l.expired_amount FROM lots l"                          \
    " WHERE (l.expired_tx_seq IS NULL) <> (l.expired_amount IS NULL) OR"                           \
    " (l.expired_tx_seq IS NOT NULL AND (l.remaining <> 0 OR NOT EXISTS (SELECT 1"                 \
    " FROM transactions x WHERE x.txkey = " LOT_EXPIRY_KEY " AND x.type = 'expire'"                \
    " AND x.member_id = l.member_id)))"
/* Every transaction read once, for its type: only expiries have lots. */
#define EXPIRY_DIFFERS_FROM_LOTS                                                                   \
    "WITH e(tenant_id, seq, total) AS (SELECT tenant_id, expired_tx_seq, SUM(expired_amount)"      \
    " FROM lots WHERE expired_tx_seq IS NOT NULL GROUP BY tenant_id, expired_tx_seq)"              \
    " SELECT x.tenant_id, x.id, x.points, COALESCE(e.total, 0) AS lost FROM transactions x"        \
    " LEFT JOIN e ON e.tenant_id = x.tenant_id AND e.seq = x.seq"                                  \
    " WHERE x.type = 'expire' AND x.points <> lost"
#define LOT_ENTRY_MISSING                                                                          \
    "SELECT l.tenant_id, l.id, l.remaining, l.closed FROM lots l WHERE NOT EXISTS"                 \
    " (SELECT 1 FROM member_lots s WHERE s.tenant_id = l.tenant_id AND s.member_id ="              \
    " l.member_id AND s.closed = l.closed AND s.expires_key = "                                    \
    "COALESCE(l.expires_at, " JF_NEVER_SQL                                                         \
    ") AND s.available_at = l.available_at AND s.seq = l.seq AND s.remaining ="                    \
    " l.remaining)"
/* s is a member's due row in member_state (db.h, JF_DUE_KEY). */
#define DUE_ROW                                                                                    \
    " AND s.kind = 0 AND s.key1 = " JF_DUE_KEY_SQL " AND s.key2 = 0 AND s.key3 = 0 AND s.key4 = 0"
#define DUE_MISSING                                                                                \
    "WITH e(tenant_id, member_id, first) AS (SELECT tenant_id, member_id, MIN(expires_at)"         \
    " FROM lots WHERE remaining > 0 AND expired_tx_seq IS NULL AND expires_at IS NOT NULL"         \
    " GROUP BY tenant_id, member_id)"                                                              \
    " SELECT e.tenant_id, e.member_id, e.first, s.value FROM e JOIN members m"                     \
    " ON m.tenant_id = e.tenant_id AND m.id = e.member_id LEFT JOIN member_state s"                \
    " ON s.member_seq = m.seq" DUE_ROW " WHERE s.value IS NULL OR s.value > e.first"

static jf_err check_lots_all(verifier *v)
{
    jf_err err = check_rows_all(v, "I4", "member lots minus debt differ from the points balance",
                                LOTS_DIFFER_FROM_BALANCE);
    if (err == JF_OK)
        err = check_rows_all(v, "I4",
                             "lot remaining differs from amount minus consumptions and expiry",
                             LOT_REMAINING_DIFFERS);
    if (err == JF_OK)
        err = check_rows_all(v, "I10", "lot expired but not emptied, or its expiry not recorded",
                             LOT_EXPIRY_UNRECORDED);
    if (err == JF_OK)
        err = check_rows_all(v, "I10", "expiry's points differ from what its lots lost",
                             EXPIRY_DIFFERS_FROM_LOTS);
    if (err == JF_OK)
        err = check_rows_all(v, "S1", "lot without its entry in member_state", LOT_ENTRY_MISSING);
    if (err == JF_OK)
        err = check_rows_all(v, "S2",
                             "member with a lot that expires and no due entry at or before it",
                             DUE_MISSING);
    return err;
}

/* S1's transaction entries that differ from what their transaction says
 * (db.h, JF_TX_ENTRY_*).  Driven by the tenant's transactions in seq order
 * (the running maximum of their times), each party found by its id: joined
 * by the member's seq alone, the planner scanned every member of the tenant
 * for each transaction. */
#define ENTRY_DIFFERS                                                                              \
    "WITH tm AS (SELECT txkey, max(created_at) OVER (ORDER BY txkey) AS tmax"                      \
    " FROM transactions WHERE " TABLE_OF_TENANT ")"                                                \
    " SELECT m.id || ' seq ' || t.seq, s.key2, t.created_at FROM tm JOIN transactions t"           \
    " ON t.txkey = tm.txkey JOIN members m"                                                        \
    " ON m.tenant_id = t.tenant_id AND m.id IN (t.member_id, t.counterparty_id)"                   \
    " JOIN member_state s ON s.member_seq = m.seq AND s.kind = 2 AND s.key1 = t.seq"               \
    " WHERE s.key2 IS NOT " JF_TX_ENTRY_KEY2_SQL " OR s.key3 IS NOT " JF_TX_ENTRY_KEY3_SQL         \
    " OR s.key4 IS NOT " JF_TX_ENTRY_KEY4_SQL " OR s.value IS NOT " JF_TX_ENTRY_VALUE_SQL

/* S1: member_state holds exactly one entry per lot, equal to it, and one per
 * transaction and party (schema.c, version 7), carrying what the tier window
 * sums (version 11), nothing else (entries of no member:
 * check_state_members). */
static jf_err check_state(verifier *v, int64_t t)
{
    jf_err err = check_rows(v, "S1", "lot entry in member_state without its lot",
                            "SELECT s.member_id || ' lot seq ' || s.seq, s.remaining, s.closed FROM"
                            " member_lots s WHERE s.tenant_id = ?1 AND NOT EXISTS (SELECT 1 FROM"
                            " lots l WHERE l.seq = s.seq AND l.tenant_id = s.tenant_id AND"
                            " l.member_id = s.member_id)",
                            t);
    if (err == JF_OK)
        err = check_rows(v, "S1", "transaction without its entries in member_state",
                         "SELECT t.id, t.seq, 0 FROM transactions t WHERE " T_OF_TENANT
                         " AND ((t.member_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM member_txs s"
                         " WHERE s.tenant_id = t.tenant_id AND s.member_id = t.member_id AND"
                         " s.seq = t.seq)) OR (t.counterparty_id IS NOT NULL AND NOT EXISTS"
                         " (SELECT 1 FROM member_txs s WHERE s.tenant_id = t.tenant_id AND"
                         " s.member_id = t.counterparty_id AND s.seq = t.seq)))",
                         t);
    if (err == JF_OK)
        err = check_rows(v, "S1", "transaction entry in member_state without its transaction",
                         "SELECT s.member_id, s.seq, 0 FROM member_txs s WHERE s.tenant_id = ?1"
                         " AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.txkey = " ENTRY_KEY
                         " AND (t.member_id = s.member_id OR"
                         " t.counterparty_id = s.member_id))",
                         t);
    if (err == JF_OK)
        err = check_rows(v, "S1", "transaction entry in member_state that differs from it",
                         ENTRY_DIFFERS, t);
    if (err == JF_OK)
        err = check_rows(
            v, "S1", "tenant's latest transaction time differs from its transactions",
            "SELECT 'tx_time_max', e.tx_time_max, a.latest FROM tenants e, (SELECT"
            " COALESCE(max(created_at), 0) AS latest FROM transactions WHERE " TABLE_OF_TENANT
            ") a WHERE e.id = ?1 AND e.tx_time_max IS NOT a.latest",
            t);
    return err;
}

/* S2's statements by the tenant's due entries and members (DUE_MISSING, by
 * the lots, is in check_lots_all). */
#define DUE_UNNAMED                                                                                \
    "SELECT 'member seq ' || d.member_seq, d.due_at, s.value FROM member_due d"                    \
    " LEFT JOIN members m ON m.seq = d.member_seq"                                                 \
    " LEFT JOIN member_state s ON s.member_seq = d.member_seq" DUE_ROW                             \
    " WHERE d.tenant_id = ?1 AND (m.tenant_id IS NOT ?1 OR s.value IS NOT d.due_at)"
#define DUE_ALONE                                                                                  \
    "SELECT m.id, s.value, 0 FROM members m JOIN member_state s ON s.member_seq = m.seq" DUE_ROW   \
    " WHERE m.tenant_id = ?1 AND NOT EXISTS (SELECT 1 FROM member_due d"                           \
    " WHERE d.tenant_id = ?1 AND d.due_at = s.value AND d.member_seq = m.seq)"

/* S3: an open lot made pending whose member's pending mark is earlier than
 * its available_at (lots.c, the pending mark; schema version 23): a read of
 * the member's points would miss it. */
#define PENDING_UNMARKED                                                                           \
    "SELECT l.id, l.available_at, m.pending_until FROM lots l INDEXED BY lots_pending"             \
    " JOIN members m ON m.tenant_id = l.tenant_id AND m.id = l.member_id"                          \
    " WHERE l.tenant_id = ?1 AND l.remaining > 0 AND l.expired_tx_seq IS NULL"                     \
    " AND l.available_at > l.created_at AND m.pending_until < l.available_at"

/* S2: every member with an open lot that expires has one due entry
 * (member_due), at or before that lot's expiry (check_lots_all), and its
 * due row says the same; no entry or row without the other (schema.c,
 * version 18).  S3 as above. */
static jf_err check_due(verifier *v, int64_t t)
{
    jf_err err =
        check_rows(v, "S2", "due entry that its member's due row does not name", DUE_UNNAMED, t);
    if (err == JF_OK)
        err = check_rows(v, "S2", "due row without its due entry", DUE_ALONE, t);
    if (err == JF_OK)
        err = check_rows(v, "S3", "pending lot later than its member's pending mark",
                         PENDING_UNMARKED, t);
    return err;
}

/* The transaction x of tenant whose id is id (SQL expressions): its primary
 * key through the id (db.h), as the engine finds it. */
#define X_BY_ID(tenant, id)                                                                        \
    "x.txkey = " JF_TX_KEY_SQL(tenant, JF_TX_SEQ_SQL(tenant, id)) " AND x.id = " id
/* The seq the transaction t's own id leads to; the transaction that an
 * idempotency key i, a check-in or bonus grant g, a refund's k names. */
#define ID_SEQ JF_TX_SEQ_SQL("?1", "t.id")
#define KEY_TX X_BY_ID("?1", "i.tx_id")
#define GRANT_TX X_BY_ID("g.tenant_id", "g.tx_id")
#define REFUND_TX X_BY_ID("k.tenant_id", "k.tx_id")
/* G1: grants g with points whose earn x differs, or without points and
 * with an earn. */
#define GRANT_DIFFERS                                                                              \
    "SELECT g.member_id, g.points, COALESCE(x.points, 0) FROM (SELECT"                             \
    " tenant_id, member_id, points, tx_id FROM checkins UNION ALL SELECT"                          \
    " tenant_id, member_id, points, tx_id FROM bonus_grants) g LEFT JOIN transactions x"           \
    " ON " GRANT_TX " AND x.type = 'earn' AND x.member_id = g.member_id WHERE g.tenant_id = ?"     \
    " AND ((g.tx_id IS NULL) <> (g.points = 0) OR (g.tx_id IS NOT NULL"                            \
    " AND COALESCE(x.points, -1) <> g.points))"
/* R3: refunds r whose reverse transactions x do not add up to them. */
#define REFUND_DIFFERS                                                                             \
    "SELECT r.id, r.clawback_points + r.returned_points, (SELECT"                                  \
    " COALESCE(SUM(x.points), 0) FROM refund_transactions k JOIN transactions x"                   \
    " ON " REFUND_TX " AND x.type = 'reverse' AND x.points = k.points"                             \
    " WHERE k.tenant_id = r.tenant_id AND k.refund_id = r.id) AS s FROM refunds r"                 \
    " WHERE r.tenant_id = ? AND s <> r.clawback_points + r.returned_points"

/* I5's ids: a transaction's id is its own, since schema version 21 by
 * construction instead of by an index (src/store/txid.h): an id names its
 * tenant and seq, or it is an older one, which tx_old_ids maps to its row;
 * the lookup by id (JF_TX_SEQ_SQL) finds every transaction and nothing
 * else. */
static jf_err check_ids(verifier *v, int64_t t)
{
    jf_err err = check_rows(v, "I5", "transaction id that does not lead to its transaction",
                            "SELECT t.id, t.seq, 0 FROM transactions t WHERE " T_OF_TENANT
                            " AND " ID_SEQ " IS NOT t.seq",
                            t);
    if (err == JF_OK)
        err =
            check_rows(v, "I5", "older transaction id without its transaction",
                       "SELECT o.id, o.seq, 0 FROM tx_old_ids o WHERE o.tenant_id = ?1"
                       " AND (jf_tx_seq(o.tenant_id, o.id) IS NOT NULL OR NOT EXISTS (SELECT 1 FROM"
                       " transactions t WHERE t.txkey = " OLD_ID_KEY " AND t.id = o.id))",
                       t);
    return err;
}

static jf_err check_reversals(verifier *v, int64_t t)
{
    jf_err err = check_rows(
        v, "I6", "reversed more than the original",
        "SELECT o.id, o.points, (SELECT SUM(r.points) FROM transactions r INDEXED BY tx_reverses "
        "WHERE r.tenant_id ="
        " o.tenant_id AND r.reverses = o.id) AS rev FROM transactions o WHERE " O_OF_TENANT
        " AND rev > o.points",
        t);
    if (err == JF_OK)
        err = check_rows(v, "I6", "restored more than was consumed",
                         "SELECT 'source seq ' || r.source_tx_seq, SUM(r.amount), (SELECT"
                         " COALESCE(SUM(c.amount), 0) FROM consumptions c WHERE c.tenant_id ="
                         " r.tenant_id AND c.tx_seq = r.source_tx_seq AND c.lot_seq = r.lot_seq"
                         " AND c.amount > 0) AS consumed FROM restores r WHERE r.tenant_id = ?"
                         " GROUP BY r.source_tx_seq, r.lot_seq HAVING SUM(r.amount) > consumed",
                         t);
    if (err == JF_OK)
        err = check_rows(v, "I5", "idempotency key used by more than one transaction",
                         "SELECT idem_key, count(*), 1 FROM transactions WHERE " TABLE_OF_TENANT
                         " AND idem_key IS NOT NULL GROUP BY idem_key HAVING count(*) > 1",
                         t);
    if (err == JF_OK)
        err = check_ids(v, t);
    if (err == JF_OK)
        err = check_rows(v, "I5", "stored response names a transaction that lacks its key",
                         "SELECT i.key, 0, 0 FROM idempotency i WHERE i.tenant_id = ?1 AND"
                         " i.tx_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM transactions x"
                         " WHERE " KEY_TX " AND x.idem_key = i.key)",
                         t);
    if (err == JF_OK)
        err = check_rows(v, "I5", "idempotency key without its stored response",
                         "SELECT i.key, i.response_seq, 0 FROM idempotency i WHERE i.tenant_id ="
                         " ?1 AND i.response_seq <> -1 AND NOT EXISTS (SELECT 1 FROM responses r"
                         " WHERE r.seq = i.response_seq AND r.tenant_id = i.tenant_id)",
                         t);
    return err;
}

/* The postings of the chain's current row st: its slots (columns 22 on,
 * schema version 16), or its rows in posting_rows when it was written
 * before.  Returns how many there are (more than max are counted, not
 * copied). */
static int load_postings(verifier *v, int64_t tenant, sqlite3_stmt *row, jf_posting *p, int max)
{
    int count = sqlite3_column_int(row, 22);
    for (int i = 0; i < count && i < JF_TX_POSTINGS_MAX && i < max; i++) {
        jf_str_copy(p[i].account, sizeof(p[i].account), jf_db_text(row, 23 + 2 * i));
        p[i].amount = sqlite3_column_int64(row, 24 + 2 * i);
    }
    if (count > 0)
        return count;
    sqlite3_stmt *st = jf_db_query(
        v->db, "SELECT account, amount FROM posting_rows WHERE tenant_id=? AND tx_seq=? ORDER BY n",
        "II", tenant, sqlite3_column_int64(row, 0));
    int n = 0;
    while (st && jf_db_step(st) == SQLITE_ROW) {
        if (n < max) {
            jf_str_copy(p[n].account, sizeof(p[n].account), jf_db_text(st, 0));
            p[n].amount = sqlite3_column_int64(st, 1);
        }
        n++;
    }
    if (st)
        sqlite3_reset(st);
    return n;
}

/* Recomputes one link; returns false on a mismatch. */
static bool chain_link(verifier *v, int64_t tenant, sqlite3_stmt *st, const uint8_t *prev,
                       uint8_t *hash)
{
    jf_posting postings[JF_TX_POSTINGS_MAX + 1];
    jf_chain_tx c = {.tenant = tenant, .seq = sqlite3_column_int64(st, 0)};
    c.id = jf_db_text(st, 1);
    c.type = jf_db_text(st, 2);
    c.member_id = jf_db_text(st, 3);
    c.counterparty_id = jf_db_text(st, 4);
    c.points = sqlite3_column_int64(st, 5);
    c.delta = sqlite3_column_int64(st, 6);
    c.reverses = jf_db_text(st, 7);
    c.hold_id = jf_db_text(st, 8);
    c.order_id = jf_db_text(st, 9);
    c.order_amount = sqlite3_column_int64(st, 10);
    c.order_currency = jf_db_text(st, 11);
    c.reason = jf_db_text(st, 12);
    c.note = jf_db_text(st, 13);
    c.channel = jf_db_text(st, 14);
    c.store_id = jf_db_text(st, 15);
    c.actor = jf_db_text(st, 16);
    c.metadata = jf_db_text(st, 17);
    c.idem_key = jf_db_text(st, 18);
    c.created_at = sqlite3_column_int64(st, 19);
    int n = load_postings(v, tenant, st, postings, JF_TX_POSTINGS_MAX + 1);
    c.postings = postings;
    c.posting_count = n > JF_TX_POSTINGS_MAX + 1 ? JF_TX_POSTINGS_MAX + 1 : n;
    jf_chain_hash(prev, &c, hash);
    return sqlite3_column_bytes(st, 21) == JF_HASH_BYTES &&
           sodium_memcmp(sqlite3_column_blob(st, 21), hash, JF_HASH_BYTES) == 0 &&
           sqlite3_column_bytes(st, 20) == JF_HASH_BYTES &&
           sodium_memcmp(sqlite3_column_blob(st, 20), prev, JF_HASH_BYTES) == 0;
}

static jf_err check_chain(verifier *v, int64_t tenant, const uint8_t *head, int64_t head_seq,
                          char *head_hex)
{
    uint8_t prev[JF_HASH_BYTES] = {0}, hash[JF_HASH_BYTES];
    sqlite3_stmt *st = jf_db_query(
        v->db,
        "SELECT seq, id, type, member_id, counterparty_id, points, delta, reverses, hold_id,"
        " order_id, order_amount, order_currency, reason, note, channel, store_id, actor,"
        " metadata, idem_key, created_at, prev_hash, hash, posting_count, p0_account, p0_amount,"
        " p1_account, p1_amount, p2_account, p2_amount, p3_account, p3_amount, p4_account,"
        " p4_amount, p5_account, p5_amount FROM transactions t WHERE " T_OF_TENANT
        " ORDER BY t.txkey",
        "I", tenant);
    if (st == NULL)
        return JF_ERR_IO;
    int64_t expect = 1;
    bool broken = false;
    while (!broken && jf_db_step(st) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (seq != expect) {
            violation(v, "I7", "tenant %lld: transaction %lld missing from the chain",
                      (long long)tenant, (long long)expect);
            broken = true;
        } else if (!chain_link(v, tenant, st, prev, hash)) {
            violation(v, "I7", "tenant %lld: transaction %lld (%s) does not match its hash",
                      (long long)tenant, (long long)seq, jf_db_text(st, 1));
            broken = true;
        }
        memcpy(prev, hash, JF_HASH_BYTES);
        expect++;
    }
    sqlite3_reset(st);
    if (!broken && (expect - 1 != head_seq || sodium_memcmp(prev, head, JF_HASH_BYTES) != 0))
        violation(v, "I7", "tenant %lld: chain head does not match the last transaction (%lld)",
                  (long long)tenant, (long long)head_seq);
    jf_hex(head, JF_HASH_BYTES, head_hex);
    return JF_OK;
}

/* A2: what each rule awarded, kept as it goes (rule_usage), equals its
 * awards.  A3: award_caps is its awards' copy, whole for every rule whose
 * current version has a per-member limit (schema.c, version 12). */
static jf_err check_usage(verifier *v, int64_t t)
{
    jf_err err = check_rows(
        v, "A2", "rule's usage differs from its awards (points, then awards)",
        "SELECT u.rule_id, u.points - COALESCE(s.p, 0), u.awards - COALESCE(s.c, 0)"
        " FROM rule_usage u LEFT JOIN (SELECT rule_id, SUM(points) AS p, count(CASE WHEN"
        " points > 0 THEN 1 END) AS c FROM awards WHERE tenant_id = ?1 GROUP BY rule_id) s"
        " ON s.rule_id = u.rule_id WHERE u.tenant_id = ?1 AND (s.rule_id IS NULL OR"
        " s.p <> u.points OR s.c <> u.awards)",
        t);
    if (err == JF_OK)
        err = check_rows(v, "A2", "rule's awards without its usage row",
                         "SELECT rule_id, count(*), SUM(points) FROM awards a WHERE"
                         " tenant_id = ?1 AND instr(rule_id, ':') = 0 AND NOT EXISTS (SELECT 1"
                         " FROM rule_usage u WHERE u.tenant_id = ?1 AND u.rule_id = a.rule_id)"
                         " GROUP BY rule_id",
                         t);
    if (err == JF_OK)
        err = check_rows(v, "A3", "award cap entry that differs from its award (seq, n)",
                         "SELECT c.rule_id, c.tx_seq, c.n FROM award_caps c LEFT JOIN awards a"
                         " ON a.tenant_id = c.tenant_id AND a.tx_seq = c.tx_seq AND a.n = c.n"
                         " WHERE c.tenant_id = ?1 AND (a.tenant_id IS NULL OR a.rule_id <>"
                         " c.rule_id OR a.member_id <> c.member_id OR a.created_at <>"
                         " c.created_at OR a.points <> c.points)",
                         t);
    if (err == JF_OK)
        err = check_rows(
            v, "A3", "award of a rule with a per-member limit missing from award_caps (seq, n)",
            "SELECT a.rule_id, a.tx_seq, a.n FROM awards a JOIN rules r ON r.tenant_id ="
            " a.tenant_id AND r.id = a.rule_id JOIN rule_versions rv ON rv.tenant_id ="
            " r.tenant_id AND rv.rule_id = r.id AND rv.version = r.version WHERE a.tenant_id ="
            " ?1 AND " JF_RULE_PER_MEMBER_SQL(
                "rv.body") " AND NOT EXISTS (SELECT 1 FROM"
                           " award_caps c WHERE c.tenant_id = a.tenant_id AND c.rule_id = "
                           "a.rule_id AND"
                           " c.member_id = a.member_id AND c.created_at = a.created_at AND "
                           "c.tx_seq ="
                           " a.tx_seq AND c.n = a.n)",
            t);
    return err;
}

/* A1 (docs/RULES.md): the awards of a transaction sum to its points, and
 * each award's lot was created with exactly the award's points.  A store
 * from before schema version 2 has no awards and is skipped. */
static jf_err check_awards(verifier *v, int64_t t)
{
    int64_t has = 0;
    jf_err err = jf_db_int(v->db, &has, 0,
                           "SELECT count(*) FROM sqlite_master WHERE type='table' AND"
                           " name='awards'",
                           "");
    if (err != JF_OK || !has)
        return err;
    err = check_rows(v, "A1", "awards do not sum to the transaction's points",
                     "SELECT x.id, x.points, (SELECT SUM(a.points) FROM awards a WHERE"
                     " a.tenant_id = x.tenant_id AND a.tx_seq = x.seq) AS s FROM transactions x"
                     " WHERE " X_OF_TENANT " AND s IS NOT NULL AND s <> x.points",
                     t);
    if (err == JF_OK)
        err = check_rows(v, "A1", "award and its lot differ",
                         "SELECT a.rule_id, a.points, COALESCE(l.amount, 0) FROM awards a"
                         " LEFT JOIN lots l ON l.seq = a.lot_seq WHERE a.tenant_id = ? AND"
                         " ((a.points > 0 AND (l.amount IS NULL OR l.amount <> a.points OR"
                         " l.tx_seq <> a.tx_seq)) OR (a.points = 0 AND a.lot_seq IS NOT NULL))",
                         t);
    return err == JF_OK ? check_usage(v, t) : err;
}

/* L1: an order earn's lines, kept in its row since schema version 24
 * (refunds.c, jf_order_lines_text), are a JSON array whose points add up
 * to the earn's points and whose amounts add up to the order's amount
 * when it has one (an earn of explicit points may send lines without
 * the amount, stored as 0); the rows of order_lines of an order earned
 * before add up to its points.  Refunds claw back by these lines (R2). */
#define LINES_VALID "json_valid(x.order_lines) AND json_type(x.order_lines) = 'array'"
#define LINES_SUM(k) "(SELECT SUM(j.value ->> " #k ") FROM json_each(x.order_lines) j)"
#define LINES_DIFFER(k, what, when)                                                                \
    "SELECT x.order_id, CASE WHEN " LINES_VALID                                                    \
    " THEN " LINES_SUM(k) " END AS s, " what " FROM transactions x WHERE " X_OF_TENANT             \
                          " AND x.order_lines IS NOT NULL AND " when " AND s IS NOT " what
#define OLD_LINES_DIFFER                                                                           \
    "SELECT x.order_id, (SELECT SUM(l.points) FROM order_lines l WHERE l.tenant_id = ?1"           \
    " AND l.order_id = x.order_id) AS s, x.points FROM transactions x WHERE " X_OF_TENANT          \
    " AND x.type = 'earn' AND x.order_id IS NOT NULL AND x.order_lines IS NULL"                    \
    " AND s IS NOT NULL AND s <> x.points"

static jf_err check_order_lines(verifier *v, int64_t t)
{
    jf_err err = check_rows(v, "L1", "an order's lines do not add up to its points",
                            LINES_DIFFER(3, "x.points", "1"), t);
    if (err == JF_OK)
        err = check_rows(v, "L1", "an order's lines do not add up to its amount",
                         LINES_DIFFER(1, "x.order_amount",
                                      "x.order_currency IS NOT NULL AND x.order_amount > 0"),
                         t);
    if (err == JF_OK)
        err = check_rows(v, "L1", "an order's lines do not add up to its points", OLD_LINES_DIFFER,
                         t);
    return err;
}

/* R1-R3 (docs/RULES.md, Refunds): an order's refunds never exceed its
 * amount, their clawbacks never exceed what it earned, and each refund's
 * points are exactly those of the reverse transactions it links.  G1: each
 * check-in and bonus grant with points names the member's earn of exactly
 * those points, and one without points names none.  A store from before
 * schema version 3 has none of these and is skipped. */
static jf_err check_refunds(verifier *v, int64_t t)
{
    int64_t has = 0;
    jf_err err = jf_db_int(v->db, &has, 0,
                           "SELECT count(*) FROM sqlite_master WHERE type='table' AND"
                           " name='refunds'",
                           "");
    if (err != JF_OK || !has)
        return err;
    err = check_rows(
        v, "R1", "refunds exceed the order's amount or lines",
        "SELECT r.order_id, SUM(r.amount), (SELECT x.order_amount FROM transactions x"
        " INDEXED BY tx_order WHERE x.tenant_id = r.tenant_id AND x.order_id = r.order_id"
        " AND x.type = 'earn') AS a FROM refunds r WHERE r.tenant_id = ? GROUP BY r.order_id"
        " HAVING a IS NULL OR SUM(r.amount) > a OR SUM(r.amount) <> (SELECT"
        " SUM(l.amount) FROM refund_lines l INDEXED BY refund_lines_order WHERE l.tenant_id ="
        " r.tenant_id AND"
        " l.order_id = r.order_id)",
        t);
    if (err == JF_OK)
        err =
            check_rows(v, "R2", "refunds claw back more than the order earned",
                       "SELECT r.order_id, SUM(r.clawback_points), (SELECT x.points FROM"
                       " transactions x INDEXED BY tx_order WHERE x.tenant_id = r.tenant_id"
                       " AND x.order_id = r.order_id AND x.type = 'earn') AS e FROM refunds r WHERE"
                       " r.tenant_id = ? GROUP BY r.order_id HAVING e IS NULL OR"
                       " SUM(r.clawback_points) > e",
                       t);
    if (err == JF_OK)
        err =
            check_rows(v, "G1", "check-in or bonus grant differs from its earn", GRANT_DIFFERS, t);
    if (err == JF_OK)
        err = check_rows(v, "R3", "refund and its reverse transactions differ", REFUND_DIFFERS, t);
    return err == JF_OK ? check_order_lines(v, t) : err;
}

/* T1: the earns whose reversals took back more growth than they gave (each
 * earn's growth goes to its member's growth account).  By the reversals'
 * index: the planner would otherwise read every transaction of the tenant
 * for each earn. */
#define GROWTH_OF_E "('member:' || e.member_id || ':growth')"
#define GROWTH_GIVEN JF_SQL_POSTED("e", GROWTH_OF_E)
#define GROWTH_TAKEN "-SUM(" JF_SQL_POSTED("r", GROWTH_OF_E) ")"
#define GROWTH_TAKEN_OVER                                                                          \
    "SELECT e.id, " GROWTH_TAKEN ", " GROWTH_GIVEN " AS g FROM transactions e"                     \
    " JOIN transactions r INDEXED BY tx_reverses ON r.tenant_id = e.tenant_id"                     \
    " AND r.reverses = e.id"                                                                       \
    " WHERE " E_OF_TENANT " AND e.type = 'earn' GROUP BY e.id HAVING " GROWTH_TAKEN " > g"

/* T1: growth is never negative and each reversal of an earn takes back at
 * most the growth the earn gave.  T2: a member's tier is one of the current
 * configuration and matches the last recorded change (docs/TIERS.md). */
static jf_err check_tiers(verifier *v, int64_t t)
{
    jf_err err = check_rows(v, "T1", "growth account below zero",
                            "SELECT member_id, balance, 0 FROM member_accounts WHERE tenant_id=?"
                            " AND account = 1 AND balance < 0",
                            t);
    if (err == JF_OK)
        err = check_rows(v, "T1", "reversals took back more growth than the earn gave",
                         GROWTH_TAKEN_OVER, t);
    if (err == JF_OK)
        err = check_rows(v, "T2", "member's tier differs from its last tier change",
                         "SELECT m.id || ' holds ' || COALESCE(m.tier, 'no tier'), 0, 0 FROM"
                         " members m WHERE m.tenant_id = ?1 AND m.tier IS NOT (SELECT c.to_tier"
                         " FROM tier_changes c WHERE c.tenant_id = m.tenant_id AND c.member_id ="
                         " m.id ORDER BY c.seq DESC LIMIT 1)"
                         " AND (m.tier IS NOT NULL OR EXISTS (SELECT 1 FROM tier_changes c"
                         " WHERE c.tenant_id = m.tenant_id AND c.member_id = m.id))",
                         t);
    return err;
}

static jf_err verify_tenant(verifier *v, int64_t tenant, const char *public_id, const uint8_t *head,
                            int64_t head_seq)
{
    char head_hex[2 * JF_HASH_BYTES + 1];
    jf_err err = check_chain(v, tenant, head, head_seq, head_hex);
    if (err == JF_OK)
        err = check_sums(v, tenant);
    if (err == JF_OK)
        err = check_consumptions(v, tenant);
    if (err == JF_OK)
        err = check_state(v, tenant);
    if (err == JF_OK)
        err = check_due(v, tenant);
    if (err == JF_OK)
        err = check_reversals(v, tenant);
    if (err == JF_OK)
        err = check_awards(v, tenant);
    if (err == JF_OK)
        err = check_refunds(v, tenant);
    if (err == JF_OK)
        err = check_tiers(v, tenant);
    json_array_append_new(v->tenants, json_pack("{sssIss}", "id", public_id, "transactions",
                                                (json_int_t)head_seq, "chain_head", head_hex));
    return err;
}

/* F1: SQLite's own check of the file (PRAGMA quick_check: every page, cell
 * and record, without the index cross-check the ledger checks below make
 * where it matters).  Pages holding another tree's records, which SQLite's
 * WAL-reset race leaves behind (engine.c), fail it.  False when the file is
 * not sound: then nothing read from it can be trusted, and the ledger checks
 * are not run. */
static jf_err check_file(verifier *v, bool *sound)
{
    *sound = false;
    sqlite3_stmt *st = jf_db_query(v->db, "PRAGMA quick_check", "");
    if (st == NULL)
        return JF_ERR_IO;
    int64_t before = v->count;
    int rc;
    while ((rc = jf_db_step(st)) == SQLITE_ROW) {
        const char *msg = jf_db_text(st, 0);
        if (msg == NULL || strcmp(msg, "ok") != 0)
            violation(v, "F1", "database file: %s", msg ? msg : "?");
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && v->count == before)
        violation(v, "F1", "database file: %s", sqlite3_errstr(rc));
    *sound = v->count == before;
    return JF_OK;
}

/* S1 across tenants: member_state is keyed by the member's seq (schema.c,
 * version 10), so an entry whose member does not exist belongs to no tenant,
 * and the views the per-tenant checks read never show it. */
static jf_err check_state_members(verifier *v)
{
    sqlite3_stmt *st = jf_db_query(v->db,
                                   "SELECT s.member_seq, s.kind, s.key1 FROM member_state s"
                                   " WHERE NOT EXISTS (SELECT 1 FROM members m"
                                   " WHERE m.seq = s.member_seq)",
                                   "");
    if (st == NULL)
        return JF_ERR_IO;
    while (jf_db_step(st) == SQLITE_ROW)
        violation(v, "S1", "entry in member_state of no member: member seq %lld (kind %lld, %lld)",
                  (long long)sqlite3_column_int64(st, 0), (long long)sqlite3_column_int64(st, 1),
                  (long long)sqlite3_column_int64(st, 2));
    sqlite3_reset(st);
    return JF_OK;
}

static jf_err verify_all(verifier *v)
{
    bool sound = false;
    jf_err ferr = check_file(v, &sound);
    if (ferr != JF_OK || !sound)
        return ferr;
    sqlite3_stmt *st =
        jf_db_query(v->db, "SELECT id, public_id, chain_head, tx_seq FROM tenants ORDER BY id", "");
    if (st == NULL)
        return JF_ERR_IO;
    typedef struct trow {
        int64_t id, seq;
        char public_id[JF_ID_LEN_MAX];
        uint8_t head[JF_HASH_BYTES];
    } trow;
    trow *rows = NULL;
    size_t n = 0;
    jf_err err = JF_OK;
    while (err == JF_OK && jf_db_step(st) == SQLITE_ROW) {
        trow *r = realloc(rows, (n + 1) * sizeof(*rows));
        if (r == NULL) {
            err = JF_ERR_NOMEM;
            break;
        }
        rows = r;
        rows[n].id = sqlite3_column_int64(st, 0);
        jf_str_copy(rows[n].public_id, JF_ID_LEN_MAX, jf_db_text(st, 1));
        memset(rows[n].head, 0, JF_HASH_BYTES);
        if (sqlite3_column_bytes(st, 2) == JF_HASH_BYTES)
            memcpy(rows[n].head, sqlite3_column_blob(st, 2), JF_HASH_BYTES);
        rows[n].seq = sqlite3_column_int64(st, 3);
        n++;
    }
    sqlite3_reset(st);
    for (size_t i = 0; err == JF_OK && i < n; i++)
        err = verify_tenant(v, rows[i].id, rows[i].public_id, rows[i].head, rows[i].seq);
    free(rows);
    if (err == JF_OK)
        err = check_lots_all(v);
    return err == JF_OK ? check_state_members(v) : err;
}

jf_err jf_verify(jf_engine *eng, char **json, int64_t *violations)
{
    *json = NULL;
    *violations = 0;
    verifier v = {.db = jf_read_acquire(eng)};
    if (v.db == NULL)
        return JF_ERR_IO;
    v.violations = json_array();
    v.tenants = json_array();
    jf_err err = jf_db_exec(v.db, "BEGIN");
    if (err == JF_OK) {
        err = verify_all(&v);
        jf_db_exec(v.db, "COMMIT");
    }
    jf_read_release(eng, v.db);
    if (err == JF_OK) {
        json_t *out =
            json_pack("{sbsIsoso}", "ok", v.count == 0, "violation_count", (json_int_t)v.count,
                      "tenants", v.tenants, "violations", v.violations);
        *json = jf_json_dump(out, NULL);
        json_decref(out);
        *violations = v.count;
        return *json ? JF_OK : JF_ERR_NOMEM;
    }
    json_decref(v.violations);
    json_decref(v.tenants);
    return err;
}
