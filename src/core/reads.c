/*
 * Read-only views: a member's points (now or as of a past instant), their
 * transactions and lots, and the tenant's transactions.  All run on a read
 * connection inside one read transaction, so each answer is one consistent
 * snapshot.
 */
#include <string.h>

#include "ledger.h"
#include "tz.h"

/* The keys (db.h, JF_TX_KEY_SQL) of the transactions a statement reads: the
 * tenant ?1's transaction of a member's entry (seq), the transaction that
 * made the lot l, and the tenant's first key (LOT_EXPIRY_KEY: ledger.h). */
#define MEMBER_TX_KEY JF_TX_KEY_SQL("?1", "seq")
#define LOT_EARN_KEY JF_TX_KEY_SQL("l.tenant_id", "l.tx_seq")
#define TENANT_FIRST_KEY JF_TX_KEY_SQL("?1", "0")

static jf_err account_balance_at(jf_ctx *ctx, const char *member_id, const char *kind,
                                 int64_t as_of, int64_t *out)
{
    char account[JF_ID_LEN_MAX + 16];
    snprintf(account, sizeof(account), "member:%s:%s", member_id, kind);
    /* Every posting to a member's account is in a transaction of which the
     * member is the member or the counterparty. */
    return jf_db_int(ctx->db, out, 0,
                     "SELECT SUM(" JF_SQL_POSTED("t", "?3") ") FROM transactions t WHERE t.txkey IN"
                                                            " (SELECT " MEMBER_TX_KEY
                                                            " FROM member_txs"
                                                            " WHERE tenant_id=?1 AND member_id=?2)"
                                                            " AND t.created_at <= ?4",
                     "IssI", ctx->auth->tenant, member_id, account, as_of);
}

/* Lots as they stood at as_of: remaining = amount − consumptions up to
 * then − what an expiry up to then took (recorded on the lot). */
static jf_err lots_at(jf_ctx *ctx, const char *member_id, int64_t as_of, int64_t *available,
                      int64_t *pending, int64_t *total)
{
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT COALESCE(SUM(CASE WHEN available_at <= ?1 AND (expires_at IS NULL"
        "   OR expires_at > ?1) THEN r END), 0),"
        " COALESCE(SUM(CASE WHEN available_at > ?1 AND (expires_at IS NULL"
        "   OR expires_at > ?1) THEN r END), 0),"
        " COALESCE(SUM(r), 0)"
        " FROM (SELECT l.available_at, l.expires_at, l.amount - COALESCE((SELECT SUM(c.amount)"
        "   FROM consumptions c WHERE c.lot_seq = l.seq AND c.created_at <= ?1), 0)"
        "   - COALESCE((SELECT l.expired_amount FROM transactions x WHERE x.txkey = " LOT_EXPIRY_KEY
        "   AND x.created_at <= ?1), 0) AS r"
        "   FROM member_lots s JOIN lots l ON l.seq = s.seq WHERE s.tenant_id = ?2"
        "   AND s.member_id = ?3 AND l.created_at <= ?1)",
        "IIs", as_of, ctx->auth->tenant, member_id);
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) == SQLITE_ROW) {
        *available = sqlite3_column_int64(st, 0);
        *pending = sqlite3_column_int64(st, 1);
        *total = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return JF_OK;
}

/* A member's points as they stood at as_of, rebuilt from the journal:
 * postings up to then through the member's transactions, each lot's amount
 * less its consumptions up to then.  Costs in proportion to the member's
 * whole history. */
static jf_err points_at(jf_ctx *ctx, const char *member_id, int64_t as_of, jf_points *p)
{
    int64_t total = 0;
    memset(p, 0, sizeof(*p));
    jf_err err = account_balance_at(ctx, member_id, "points", as_of, &p->balance);
    if (err == JF_OK)
        err = account_balance_at(ctx, member_id, "held", as_of, &p->held);
    if (err == JF_OK)
        err = lots_at(ctx, member_id, as_of, &p->available, &p->pending, &total);
    p->debt = total - p->balance;
    return err;
}

json_t *jf_points_answer_json(const char *member_id, int64_t as_of, const jf_points *p)
{
    json_t *o = json_object();
    jf_json_set(o, "member_id", json_string(member_id));
    jf_json_set(o, "as_of", jf_json_time_value(as_of));
    jf_json_set(o, "balance", json_integer(p->balance));
    jf_json_set(o, "available", json_integer(p->available));
    jf_json_set(o, "pending", json_integer(p->pending));
    jf_json_set(o, "held", json_integer(p->held));
    jf_json_set(o, "debt", json_integer(p->debt));
    return o;
}

void jf_points_answer_text(jf_jtext *b, const char *member_id, int64_t as_of, const jf_points *p)
{
    jf_jt_raw(b, "{\"member_id\":");
    jf_jt_str(b, member_id);
    JF_JT_KEY(b, "as_of");
    jf_jt_time(b, as_of);
    JF_JT_KEY(b, "balance");
    jf_jt_int(b, p->balance);
    JF_JT_KEY(b, "available");
    jf_jt_int(b, p->available);
    JF_JT_KEY(b, "pending");
    jf_jt_int(b, p->pending);
    JF_JT_KEY(b, "held");
    jf_jt_int(b, p->held);
    JF_JT_KEY(b, "debt");
    jf_jt_int(b, p->debt);
    jf_jt_raw(b, "}");
}

/* GET /members/{id}/points.  Without as_of the answer is the current state:
 * the balances kept with every posting and the open lots (jf_lots_points,
 * one statement on the member's index entries), which equal the rebuilt
 * figures by I2 and I4, whatever the length of the history. */
static jf_err member_points(jf_ctx *ctx)
{
    jf_member m;
    jf_points p;
    int64_t as_of = ctx->now_ms;
    const char *s = jf_param_get(ctx, "as_of");
    if (s && (!jf_time_parse_rfc3339(s, &as_of) || as_of < 0))
        return jf_fail(ctx, JF_ERR_INVALID_REQUEST, "as_of must be an RFC 3339 time.");
    jf_err err = jf_member_load(ctx, ctx->path_id, &m);
    if (err == JF_OK)
        err = s ? points_at(ctx, m.id, as_of, &p) : jf_lots_points(ctx, m.id, &p);
    if (err != JF_OK)
        return err;
    jf_jtext b = {0};
    jf_points_answer_text(&b, m.id, as_of, &p);
    return jf_reply_text(ctx, &b, JF_OK);
}

static void set_out(jf_ctx *ctx, json_t *v)
{
    json_decref(ctx->out);
    ctx->out = v;
}

/* A member's transactions, as either party, newest first: a range of the
 * member's entries in member_state, each joined to its transaction.  A
 * member that does not exist (in this tenant) has none. */
static jf_err member_tx_page(jf_ctx *ctx, const char *member_id, const char *type, int64_t limit,
                             int64_t cursor)
{
    int64_t seq = 0;
    jf_err err = jf_member_seq(ctx, member_id, &seq);
    if (err == JF_ERR_NOT_FOUND) {
        ctx->detail[0] = '\0';
        err = JF_OK;
    }
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        TX_SELECT MEMBER_TXS_BY_SEQ " AND s.key1 < ?3 AND (?4 IS NULL OR t.type = ?4)"
                                    " ORDER BY s.key1 DESC LIMIT ?5",
        "IIIsI", ctx->auth->tenant, seq, cursor < 0 ? INT64_MAX : cursor, type, limit + 1);
    return jf_list_rows_text(ctx, st, limit, 0, jf_tx_row_text);
}

static jf_err member_transactions(jf_ctx *ctx)
{
    jf_member m;
    int64_t limit, cursor;
    jf_err err = jf_member_load(ctx, ctx->path_id, &m);
    if (err == JF_OK)
        err = jf_list_params(ctx, &limit, &cursor);
    return err == JF_OK ? member_tx_page(ctx, m.id, NULL, limit, cursor) : err;
}

/* The seq a page of the tenant's transactions ends before: the cursor, or
 * past the last seq there can be when there is none (or a larger one), so
 * that JF_TX_KEY_SQL of it stays within the tenant's keys. */
static int64_t tx_seq_before(int64_t cursor)
{
    return cursor < 0 || cursor > JF_TXID_SEQ_MAX ? JF_TXID_SEQ_MAX + 1 : cursor;
}

static jf_err transaction_list(jf_ctx *ctx)
{
    int64_t limit, cursor;
    jf_err err = jf_list_params(ctx, &limit, &cursor);
    if (err != JF_OK)
        return err;
    const char *member_id = jf_param_get(ctx, "member_id"), *type = jf_param_get(ctx, "type");
    if (member_id)
        return member_tx_page(ctx, member_id, type, limit, cursor);
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    TX_COLUMNS " WHERE t.txkey >= " TENANT_FIRST_KEY " AND t.txkey < " TX_KEY_PARAMS
                               " AND (?3 IS NULL OR type = ?3) ORDER BY t.txkey DESC LIMIT ?4",
                    "IIsI", ctx->auth->tenant, tx_seq_before(cursor), type, limit + 1);
    return jf_list_rows_text(ctx, st, limit, 0, jf_tx_row_text);
}

static jf_err transaction_get(jf_ctx *ctx)
{
    json_t *tx = NULL;
    jf_err err = jf_tx_json(ctx, ctx->path_id, true, &tx);
    if (err == JF_OK)
        set_out(ctx, tx);
    return err;
}

static const char *lot_status(sqlite3_stmt *st, int64_t now)
{
    int64_t remaining = sqlite3_column_int64(st, 3);
    bool due = sqlite3_column_type(st, 5) != SQLITE_NULL && sqlite3_column_int64(st, 5) <= now;
    if (sqlite3_column_type(st, 6) != SQLITE_NULL || (due && remaining > 0))
        return "expired";
    if (remaining == 0)
        return "consumed";
    return sqlite3_column_int64(st, 4) > now ? "pending" : "available";
}

jf_err jf_lot_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out)
{
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(jf_db_text(st, 0)));
    jf_json_set(o, "transaction_id", jf_json_text(jf_db_text(st, 1)));
    jf_json_set(o, "amount", json_integer(sqlite3_column_int64(st, 2)));
    jf_json_set(o, "remaining", json_integer(sqlite3_column_int64(st, 3)));
    jf_json_set(o, "available_at", jf_json_time_value(sqlite3_column_int64(st, 4)));
    jf_json_set(o, "expires_at",
                sqlite3_column_type(st, 5) == SQLITE_NULL
                    ? json_null()
                    : jf_json_time_value(sqlite3_column_int64(st, 5)));
    jf_json_set(o, "status", json_string(lot_status(st, ctx->now_ms)));
    jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 7)));
    *out = o;
    return JF_OK;
}

jf_err jf_lot_row_text(jf_ctx *ctx, sqlite3_stmt *st, jf_jtext *b)
{
    jf_jt_raw(b, "{\"id\":");
    jf_jt_str(b, jf_db_text(st, 0));
    JF_JT_KEY(b, "transaction_id");
    jf_jt_str(b, jf_db_text(st, 1));
    JF_JT_KEY(b, "amount");
    jf_jt_int(b, sqlite3_column_int64(st, 2));
    JF_JT_KEY(b, "remaining");
    jf_jt_int(b, sqlite3_column_int64(st, 3));
    JF_JT_KEY(b, "available_at");
    jf_jt_time(b, sqlite3_column_int64(st, 4));
    JF_JT_KEY(b, "expires_at");
    jf_jt_time(b, sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 5));
    JF_JT_KEY(b, "status");
    jf_jt_str(b, lot_status(st, ctx->now_ms));
    JF_JT_KEY(b, "created_at");
    jf_jt_time(b, sqlite3_column_int64(st, 7));
    jf_jt_raw(b, "}");
    return b->failed ? JF_ERR_NOMEM : JF_OK;
}

/* A member's lots, by offset (their order has no single key to continue
 * from), written as text like the transaction lists: the member's lot
 * entries in member_state (key2 expires, key3 available_at, key4 the lot's
 * seq), each joined to its lot. */
static jf_err member_lots(jf_ctx *ctx)
{
    jf_member m;
    int64_t limit, offset;
    jf_err err = jf_member_load(ctx, ctx->path_id, &m);
    if (err == JF_OK)
        err = jf_list_params(ctx, &limit, &offset);
    if (err != JF_OK)
        return err;
    bool open_only = false;
    if ((err = jf_param_open_only(ctx, &open_only)) != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT l.id, t.id, l.amount, l.remaining, l.available_at, l.expires_at,"
        " l.expired_tx_seq, l.created_at FROM member_state s CROSS JOIN lots l ON l.seq = s.key4"
        " LEFT JOIN transactions t ON t.txkey = " LOT_EARN_KEY
        " WHERE s.member_seq = ? AND s.kind = 1 AND (? = 0 OR s.key1 = 0)"
        " ORDER BY s.key2, s.key3, s.key4 LIMIT ? OFFSET ?",
        "IiII", m.seq, open_only ? 1 : 0, limit + 1, offset < 0 ? 0 : offset);
    if (st == NULL)
        return JF_ERR_IO;
    jf_jtext b = {0};
    jf_list_text_begin(&b);
    int64_t n = 0;
    bool more = false;
    while (err == JF_OK && jf_db_step(st) == SQLITE_ROW) {
        if (n == limit) {
            more = true;
            break;
        }
        if (n++ > 0)
            jf_jt_raw(&b, ",");
        err = jf_lot_row_text(ctx, st, &b);
    }
    sqlite3_reset(st);
    jf_list_text_end(&b, more ? (offset < 0 ? 0 : offset) + limit : -1);
    return jf_reply_text(ctx, &b, err);
}

const jf_op_impl jf_op_member_points = {NULL, member_points};
const jf_op_impl jf_op_member_transactions = {NULL, member_transactions};
const jf_op_impl jf_op_member_lots = {NULL, member_lots};
const jf_op_impl jf_op_transaction_get = {NULL, transaction_get};
const jf_op_impl jf_op_transaction_list = {NULL, transaction_list};
