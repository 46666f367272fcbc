/*
 * Building, committing and rendering transactions (see ledger.h).
 *
 * tx_commit is where the double-entry rule is enforced: the postings of a
 * transaction must sum to zero before anything is written (I1), every
 * account balance is updated by exactly its postings (I2), and the new chain
 * head must extend the previous one by exactly one sequence number (I7).
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "rules.h"
#include "txid.h"
#include "tz.h"

jf_err jf_tx_begin(jf_ctx *ctx, jf_tx *tx, const char *type, const char *member_id)
{
    memset(tx, 0, sizeof(*tx));
    jf_chain_head head;
    jf_err err = jf_hot_chain_get(ctx, &head);
    if (err != JF_OK)
        return err;
    tx->seq = head.seq + 1;
    memcpy(tx->prev_hash, head.hash, JF_HASH_BYTES);
    tx->time_max = head.time_max > ctx->now_ms ? head.time_max : ctx->now_ms;
    /* The tests make ids of the older form to build a database as a binary
     * before schema version 21 left it (tests/api/test_rules.py). */
    if (ctx->eng && ctx->eng->old_txids)
        jf_id_new_ordered("txn_", ctx->now_ms, tx->id);
    /* Past the id's range (limits.h: a million tenants, 1.7e13 transactions
     * each), or on a database without its key, no transaction is made. */
    else if (!ctx->db->txid_keyed ||
             !jf_txid_make(ctx->db->txid_key, ctx->auth->tenant, tx->seq, ctx->now_ms, tx->id))
        return jf_fail(ctx, JF_ERR_INTERNAL, "No transaction id for seq %lld of this tenant.",
                       (long long)tx->seq);
    tx->type = type;
    tx->member_id = member_id;
    tx->order_amount = -1;
    tx->actor = ctx->auth->actor;
    tx->idem_key = ctx->idem_key;
    return JF_OK;
}

/* The account name of kind for member_id, or of the program when NULL. */
/* "member:<id>:<kind>" or "program:<kind>", cut as snprintf would cut it
 * (which cost 780 instructions a posting on the writer). */
static void account_name(const char *kind, const char *member_id, jf_posting *p)
{
    size_t cap = sizeof(p->account), len = 0;
    const char *parts[] = {member_id ? "member:" : "program:", member_id ? member_id : kind,
                           member_id ? ":" : NULL, kind};
    for (size_t i = 0; i < 4 && parts[i] && len < cap - 1; i++) {
        jf_str_copy(p->account + len, cap - len, parts[i]);
        len += strlen(p->account + len);
    }
    p->account[len] = '\0';
}

static int posting_index(const jf_tx *tx, const char *account)
{
    for (int i = 0; i < tx->posting_count; i++)
        if (strcmp(tx->postings[i].account, account) == 0)
            return i;
    return -1;
}

int jf_tx_posting_find(const jf_tx *tx, const char *kind, const char *member_id)
{
    jf_posting want;
    account_name(kind, member_id, &want);
    return posting_index(tx, want.account);
}

void jf_tx_post(jf_tx *tx, const char *kind, const char *member_id, int64_t amount)
{
    if (amount == 0)
        return;
    jf_posting want;
    account_name(kind, member_id, &want);
    int i = posting_index(tx, want.account);
    if (i >= 0) {
        tx->postings[i].amount += amount;
        return;
    }
    /* The ledger never builds more postings than this; running out is a bug. */
    if (tx->posting_count >= JF_TX_POSTINGS_MAX)
        abort();
    want.amount = amount;
    tx->postings[tx->posting_count++] = want;
}

void jf_tx_deinit(jf_tx *tx)
{
    free(tx->metadata);
    free(tx->order_lines);
    tx->metadata = tx->order_lines = NULL;
}

/* The transaction's row with its postings in it (schema.c, version 16:
 * slots p0..p5 and posting_count).  An unused slot's account and amount are
 * NULL: 'Z' binds NULL for the 0 passed for it, since no posting is 0 (a
 * posting that summed to 0 would leave its account beside a NULL amount,
 * which the table's CHECK refuses, as the postings table did before). */
_Static_assert(JF_TX_POSTINGS_MAX == 6, "the transactions table has six posting slots");

/* Where the tests make ids of the older form (jf_tx_begin), such an id is
 * entered in tx_old_ids as the upgrade to schema version 21 would have. */
static jf_err tx_old_id_insert(jf_ctx *ctx, const jf_tx *tx)
{
    return jf_db_run(ctx->db, "INSERT INTO tx_old_ids(tenant_id, id, seq) VALUES(?,?,?)", "IsI",
                     ctx->auth->tenant, tx->id, tx->seq);
}

static jf_err tx_insert_row(jf_ctx *ctx, const jf_tx *tx, const uint8_t *prev, const uint8_t *hash)
{
    if (ctx->eng && ctx->eng->old_txids) {
        jf_err err = tx_old_id_insert(ctx, tx);
        if (err != JF_OK)
            return err;
    }
    const char *acct[JF_TX_POSTINGS_MAX] = {NULL};
    int64_t amount[JF_TX_POSTINGS_MAX] = {0};
    for (int i = 0; i < tx->posting_count; i++) {
        acct[i] = tx->postings[i].account;
        amount[i] = tx->postings[i].amount;
    }
    return jf_db_run(
        ctx->db,
        "INSERT INTO transactions(txkey, id, type, member_id, counterparty_id, points,"
        " delta, reverses, hold_id, order_id, order_amount, order_currency, reason, note, channel,"
        " store_id, actor, metadata, idem_key, created_at, prev_hash, hash, posting_count,"
        " p0_account, p0_amount, p1_account, p1_amount, p2_account, p2_amount, p3_account,"
        " p3_amount, p4_account, p4_amount, p5_account, p5_amount, order_lines)"
        " VALUES(" TX_KEY_PARAMS ",?3,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
        "?,?,?,?)",
        "IIssssIIsssIssssssssIbbisZsZsZsZsZsZs", ctx->auth->tenant, tx->seq, tx->id, tx->type,
        tx->member_id, tx->counterparty_id, tx->points, tx->delta, tx->reverses, tx->hold_id,
        tx->order_id, tx->order_amount >= 0 ? tx->order_amount : (int64_t)0, tx->order_currency,
        tx->reason, tx->note, tx->channel, tx->store_id, tx->actor, tx->metadata, tx->idem_key,
        ctx->now_ms, prev, JF_HASH_BYTES, hash, JF_HASH_BYTES, tx->posting_count, acct[0],
        amount[0], acct[1], amount[1], acct[2], amount[2], acct[3], amount[3], acct[4], amount[4],
        acct[5], amount[5], tx->order_lines);
}

/* The entry of tx for member_id, with what a tier window sums (db.h,
 * JF_TX_ENTRY_*: the same as SQL, which verify compares, S1). */
static jf_err tx_insert_entry(jf_ctx *ctx, const jf_tx *tx, const char *member_id)
{
    int64_t seq = 0, order_amount = 0, order_earn = 0, growth = 0;
    jf_err err = jf_member_seq(ctx, member_id, &seq);
    if (err == JF_OK)
        jf_member_written(ctx, seq);
    if (tx->member_id && strcmp(tx->member_id, member_id) == 0) {
        bool earn = strcmp(tx->type, "earn") == 0;
        if (earn && tx->order_currency && tx->order_amount > 0)
            order_amount = tx->order_amount;
        order_earn = earn && tx->order_id;
        int g = jf_tx_posting_find(tx, "growth", member_id);
        growth = g >= 0 ? tx->postings[g].amount : 0;
    }
    return err == JF_OK ? jf_db_run(ctx->db, "INSERT INTO member_state VALUES(?,2,?,?,?,?,?)",
                                    "IIIIII", seq, tx->seq, ctx->now_ms, order_amount,
                                    tx->time_max * 2 + order_earn, growth)
                        : err;
}

/* The transaction's entries among its member's and its counterparty's rows
 * of member_state (schema.c, versions 7, 8, 10 and 11: keyed by the member's
 * seq; verify checks them, S1). */
static jf_err tx_insert_entries(jf_ctx *ctx, const jf_tx *tx)
{
    jf_err err = JF_OK;
    if (tx->member_id)
        err = tx_insert_entry(ctx, tx, tx->member_id);
    if (err == JF_OK && tx->counterparty_id &&
        (tx->member_id == NULL || strcmp(tx->counterparty_id, tx->member_id) != 0))
        err = tx_insert_entry(ctx, tx, tx->counterparty_id);
    return err;
}

/* Moves posting n's account balance (the posting itself is in the
 * transaction's row). */
static jf_err tx_apply_balance(jf_ctx *ctx, jf_tx *tx, int n)
{
    const jf_posting *p = &tx->postings[n];
    int64_t balance = 0;
    /* Program accounts are shared by every write of the tenant: the batch
     * keeps them in memory and writes each once (hot.c). */
    if (strncmp(p->account, "program:", 8) == 0)
        return jf_hot_account_add(ctx, p->account, p->amount, &balance);
    jf_err err = jf_account_add(ctx, p->account, p->amount, &balance);
    tx->stored[n] = balance;
    if (err == JF_OK && balance < 0 && strstr(p->account, ":held"))
        return jf_fail(ctx, JF_ERR_INTERNAL, "Held balance of %s would be negative.", p->account);
    return err;
}

/* The transaction's stored fields, as the chain hashes them and as replies
 * render them. */
static jf_chain_tx tx_view(const jf_ctx *ctx, const jf_tx *tx)
{
    return (jf_chain_tx){.tenant = ctx->auth->tenant,
                         .seq = tx->seq,
                         .points = tx->points,
                         .delta = tx->delta,
                         .order_amount = tx->order_amount >= 0 ? tx->order_amount : 0,
                         .created_at = ctx->now_ms,
                         .id = tx->id,
                         .type = tx->type,
                         .member_id = tx->member_id,
                         .counterparty_id = tx->counterparty_id,
                         .reverses = tx->reverses,
                         .hold_id = tx->hold_id,
                         .order_id = tx->order_id,
                         .order_currency = tx->order_currency,
                         .reason = tx->reason,
                         .note = tx->note,
                         .channel = tx->channel,
                         .store_id = tx->store_id,
                         .actor = tx->actor,
                         .metadata = tx->metadata,
                         .idem_key = tx->idem_key,
                         .postings = tx->postings,
                         .posting_count = tx->posting_count};
}

jf_err jf_tx_commit(jf_ctx *ctx, jf_tx *tx)
{
    int64_t sum = 0;
    for (int i = 0; i < tx->posting_count; i++)
        sum += tx->postings[i].amount;
    if (sum != 0)
        return jf_fail(ctx, JF_ERR_INTERNAL, "Postings of %s sum to %lld.", tx->id, (long long)sum);
    const uint8_t *prev = tx->prev_hash;
    uint8_t hash[JF_HASH_BYTES];
    jf_chain_tx c = tx_view(ctx, tx);
    jf_chain_hash(prev, &c, hash);
    jf_err err = tx_insert_row(ctx, tx, prev, hash);
    if (err == JF_OK && tx->order_id && strcmp(tx->type, "earn") == 0 && jf_ctx_on_writer(ctx))
        jf_idem_filter_order_add(ctx->eng->idemf, ctx->auth->tenant, tx->order_id);
    if (err == JF_OK)
        err = tx_insert_entries(ctx, tx);
    for (int i = 0; err == JF_OK && i < tx->posting_count; i++)
        err = tx_apply_balance(ctx, tx, i);
    jf_chain_head next = {.seq = tx->seq, .time_max = tx->time_max};
    memcpy(next.hash, hash, JF_HASH_BYTES);
    return err == JF_OK ? jf_hot_chain_set(ctx, &next) : err;
}

static json_t *tx_order_json(const jf_chain_tx *t)
{
    if (t->order_id == NULL)
        return json_null();
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(t->order_id));
    if (t->order_currency) {
        jf_json_set(o, "amount", json_integer(t->order_amount));
        jf_json_set(o, "currency", json_string(t->order_currency));
    }
    return o;
}

/* The one rendering of a transaction, from a stored row or from memory. */
json_t *jf_tx_view_json(const jf_chain_tx *t, int64_t reversed_points)
{
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(t->id));
    jf_json_set(o, "type", json_string(t->type));
    jf_json_set(o, "member_id", jf_json_text(t->member_id));
    jf_json_set(o, "counterparty_member_id", jf_json_text(t->counterparty_id));
    jf_json_set(o, "points", json_integer(t->points));
    jf_json_set(o, "delta", json_integer(t->delta));
    jf_json_set(o, "reverses", jf_json_text(t->reverses));
    jf_json_set(o, "reversed_points", json_integer(reversed_points));
    jf_json_set(o, "hold_id", jf_json_text(t->hold_id));
    jf_json_set(o, "order", tx_order_json(t));
    jf_json_set(o, "reason", jf_json_text(t->reason));
    jf_json_set(o, "note", jf_json_text(t->note));
    jf_json_set(o, "channel", jf_json_text(t->channel));
    jf_json_set(o, "store_id", jf_json_text(t->store_id));
    jf_json_set(o, "actor", json_string(t->actor));
    jf_json_set(o, "metadata", t->metadata ? jf_json_loads_whole(t->metadata, 0) : json_null());
    jf_json_set(o, "created_at", jf_json_time_value(t->created_at));
    return o;
}

static void tx_order_text(jf_jtext *b, const jf_chain_tx *t)
{
    if (t->order_id == NULL) {
        jf_jt_raw(b, "null");
        return;
    }
    jf_jt_raw(b, "{\"id\":");
    jf_jt_str(b, t->order_id);
    if (t->order_currency) {
        JF_JT_KEY(b, "amount");
        jf_jt_int(b, t->order_amount);
        JF_JT_KEY(b, "currency");
        jf_jt_str(b, t->order_currency);
    }
    jf_jt_raw(b, "}");
}

/* jf_tx_view_json's text without its tree, in the same bytes (the two
 * change together; test_tx_view.c compares them).  The object is left open
 * for the caller's further keys: the caller closes it. */
void jf_tx_view_text(jf_jtext *b, const jf_chain_tx *t, int64_t reversed_points)
{
    jf_jt_raw(b, "{\"id\":");
    jf_jt_str(b, t->id);
    JF_JT_KEY(b, "type");
    jf_jt_str(b, t->type);
    JF_JT_KEY(b, "member_id");
    jf_jt_str(b, t->member_id);
    JF_JT_KEY(b, "counterparty_member_id");
    jf_jt_str(b, t->counterparty_id);
    JF_JT_KEY(b, "points");
    jf_jt_int(b, t->points);
    JF_JT_KEY(b, "delta");
    jf_jt_int(b, t->delta);
    JF_JT_KEY(b, "reverses");
    jf_jt_str(b, t->reverses);
    JF_JT_KEY(b, "reversed_points");
    jf_jt_int(b, reversed_points);
    JF_JT_KEY(b, "hold_id");
    jf_jt_str(b, t->hold_id);
    JF_JT_KEY(b, "order");
    tx_order_text(b, t);
    JF_JT_KEY(b, "reason");
    jf_jt_str(b, t->reason);
    JF_JT_KEY(b, "note");
    jf_jt_str(b, t->note);
    JF_JT_KEY(b, "channel");
    jf_jt_str(b, t->channel);
    JF_JT_KEY(b, "store_id");
    jf_jt_str(b, t->store_id);
    JF_JT_KEY(b, "actor");
    jf_jt_str(b, t->actor);
    JF_JT_KEY(b, "metadata");
    json_t *meta = t->metadata ? jf_json_loads_whole(t->metadata, 0) : NULL;
    jf_jt_json(b, meta);
    json_decref(meta);
    JF_JT_KEY(b, "created_at");
    jf_jt_time(b, t->created_at);
}

/* A TX_COLUMNS row's view; its strings are the statement's until its next
 * step. */
static jf_chain_tx tx_row_view(sqlite3_stmt *st)
{
    return (jf_chain_tx){.points = sqlite3_column_int64(st, 5),
                         .delta = sqlite3_column_int64(st, 19),
                         .order_amount = sqlite3_column_int64(st, 9),
                         .created_at = sqlite3_column_int64(st, 17),
                         .id = jf_db_text(st, 1),
                         .type = jf_db_text(st, 2),
                         .member_id = jf_db_text(st, 3),
                         .counterparty_id = jf_db_text(st, 4),
                         .reverses = jf_db_text(st, 6),
                         .hold_id = jf_db_text(st, 7),
                         .order_id = jf_db_text(st, 8),
                         .order_currency = jf_db_text(st, 10),
                         .reason = jf_db_text(st, 11),
                         .note = jf_db_text(st, 12),
                         .channel = jf_db_text(st, 13),
                         .store_id = jf_db_text(st, 14),
                         .actor = jf_db_text(st, 15),
                         .metadata = jf_db_text(st, 16)};
}

static json_t *tx_row_json(sqlite3_stmt *st)
{
    jf_chain_tx t = tx_row_view(st);
    return jf_tx_view_json(&t, sqlite3_column_int64(st, 20));
}

/* What each lot gave to the transaction: its consumptions, and for an
 * expiry the lots it expired (they record it themselves since schema
 * version 13), in the order the expiry took them. */
static sqlite3_stmt *tx_consumptions(jf_ctx *ctx, int64_t seq, bool is_expire)
{
    if (is_expire)
        return jf_db_query(ctx->db,
                           "SELECT l.id, l.expired_amount FROM transactions x JOIN member_lots s"
                           " ON s.tenant_id = x.tenant_id AND s.member_id = x.member_id"
                           " JOIN lots l ON l.seq = s.seq WHERE x.txkey = " TX_KEY_PARAMS
                           " AND s.closed = 1 AND l.expired_tx_seq=?2"
                           " ORDER BY s.expires_key, s.available_at, s.seq",
                           "II", ctx->auth->tenant, seq);
    return jf_db_query(ctx->db,
                       "SELECT l.id, c.amount FROM consumptions c JOIN lots l ON l.seq = c.lot_seq"
                       " WHERE c.tenant_id=? AND c.tx_seq=? ORDER BY c.rowid",
                       "II", ctx->auth->tenant, seq);
}

static jf_err tx_details(jf_ctx *ctx, int64_t seq, bool is_expire, json_t *o)
{
    json_t *postings = json_array(), *cons = json_array();
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT account, amount FROM postings WHERE tenant_id=?1 AND tx_seq=?2"
                    " AND tx_key = " TX_KEY_PARAMS " ORDER BY n",
                    "II", ctx->auth->tenant, seq);
    while (st && jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(postings, json_pack("{sssI}", "account", jf_db_text(st, 0), "amount",
                                                  (json_int_t)sqlite3_column_int64(st, 1)));
    if (st)
        sqlite3_reset(st);
    sqlite3_stmt *cs = tx_consumptions(ctx, seq, is_expire);
    while (cs && jf_db_step(cs) == SQLITE_ROW)
        json_array_append_new(cons, json_pack("{sssI}", "lot_id", jf_db_text(cs, 0), "amount",
                                              (json_int_t)sqlite3_column_int64(cs, 1)));
    if (cs)
        sqlite3_reset(cs);
    json_object_set_new(o, "postings", postings);
    json_object_set_new(o, "consumptions", cons);
    return st && cs ? JF_OK : JF_ERR_IO;
}

/* An earn's rendering lists the rule awards that made it. */
static jf_err tx_add_awards(jf_ctx *ctx, json_t *o, bool is_earn, int64_t seq)
{
    json_t *awards = NULL;
    jf_err err = is_earn ? jf_awards_json(ctx, seq, &awards) : JF_OK;
    if (err == JF_OK && is_earn)
        json_object_set_new(o, "awards", awards);
    return err;
}

jf_err jf_tx_json(jf_ctx *ctx, const char *id, bool details, json_t **out)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db, TX_COLUMNS TX_BY_ID, "Is", ctx->auth->tenant, id ? id : "");
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return jf_fail(ctx, JF_ERR_NOT_FOUND, "No transaction '%s'.", id ? id : "");
    }
    int64_t seq = sqlite3_column_int64(st, 0);
    bool is_earn = strcmp(jf_db_text(st, 2), "earn") == 0;
    bool is_expire = strcmp(jf_db_text(st, 2), "expire") == 0;
    char hash[2 * JF_HASH_BYTES + 1] = "";
    if (sqlite3_column_bytes(st, 18) == JF_HASH_BYTES)
        jf_hex(sqlite3_column_blob(st, 18), JF_HASH_BYTES, hash);
    json_t *o = tx_row_json(st);
    sqlite3_reset(st);
    jf_err err = tx_add_awards(ctx, o, is_earn, seq);
    if (err == JF_OK && details) {
        err = tx_details(ctx, seq, is_expire, o);
        json_object_set_new(o, "hash", json_string(hash));
    }
    if (err != JF_OK) {
        json_decref(o);
        return err;
    }
    *out = o;
    return JF_OK;
}

/* The "awards" key of an earn's reply (none when awards is NULL); takes awards. */
static void awards_text(jf_jtext *b, json_t *awards)
{
    if (awards == NULL)
        return;
    JF_JT_KEY(b, "awards");
    jf_jt_json(b, awards);
    json_decref(awards);
}

jf_err jf_tx_stored_reply_text(jf_ctx *ctx, const char *id, jf_jtext *b)
{
    sqlite3_stmt *st = jf_db_query(ctx->db, TX_COLUMNS TX_BY_ID, "Is", ctx->auth->tenant, id);
    if (st == NULL)
        return JF_ERR_IO;
    int rc = jf_db_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? JF_ERR_NOT_FOUND : JF_ERR_IO;
    }
    int64_t seq = sqlite3_column_int64(st, 0);
    bool is_earn = strcmp(jf_db_text(st, 2), "earn") == 0;
    jf_chain_tx t = tx_row_view(st);
    jf_tx_view_text(b, &t, 0);
    sqlite3_reset(st);
    json_t *awards = NULL;
    jf_err err = is_earn ? jf_awards_json(ctx, seq, &awards) : JF_OK;
    awards_text(b, awards);
    jf_jt_raw(b, "}");
    return err == JF_OK && b->failed ? JF_ERR_NOMEM : err;
}

jf_err jf_tx_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out)
{
    (void)ctx;
    *out = tx_row_json(st);
    return JF_OK;
}

jf_err jf_tx_row_text(jf_ctx *ctx, sqlite3_stmt *st, jf_jtext *b)
{
    (void)ctx;
    jf_chain_tx t = tx_row_view(st);
    jf_tx_view_text(b, &t, sqlite3_column_int64(st, 20));
    jf_jt_raw(b, "}");
    return b->failed ? JF_ERR_NOMEM : JF_OK;
}

/* The awards of an earn this command just wrote (NULL for any other type):
 * read back only when it wrote some. */
static jf_err reply_awards(jf_ctx *ctx, const jf_tx *tx, json_t **awards)
{
    *awards = NULL;
    if (strcmp(tx->type, "earn") != 0)
        return JF_OK;
    if (ctx->awarded_tx_seq != tx->seq) {
        *awards = json_array();
        return *awards ? JF_OK : JF_ERR_NOMEM;
    }
    return jf_awards_json(ctx, tx->seq, awards);
}

/* One award as jf_awards_json's object dumps: its keys in insertion order,
 * or in byte order when b sorts them. */
static void award_text(jf_jtext *b, const jf_award *w)
{
    if (b->sorted) {
        jf_jt_raw(b, "{\"explanation\":");
        jf_jt_str(b, w->explanation);
        JF_JT_KEY(b, "growth");
        jf_jt_int(b, w->growth);
        JF_JT_KEY(b, "points");
        jf_jt_int(b, w->points);
        JF_JT_KEY(b, "rule_id");
        jf_jt_str(b, w->rule_id);
        JF_JT_KEY(b, "rule_version");
        jf_jt_int(b, w->rule_version);
    } else {
        jf_jt_raw(b, "{\"rule_id\":");
        jf_jt_str(b, w->rule_id);
        JF_JT_KEY(b, "rule_version");
        jf_jt_int(b, w->rule_version);
        JF_JT_KEY(b, "points");
        jf_jt_int(b, w->points);
        JF_JT_KEY(b, "explanation");
        jf_jt_str(b, w->explanation);
        JF_JT_KEY(b, "growth");
        jf_jt_int(b, w->growth);
    }
    jf_jt_raw(b, "}");
}

/* An earn's "awards" from a copy of them ("[]" for none, as jansson dumps
 * an empty array). */
static void awards_kept_text(jf_jtext *b, const jf_award *w, size_t n)
{
    JF_JT_KEY(b, "awards");
    jf_jt_raw(b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            jf_jt_raw(b, ",");
        award_text(b, &w[i]);
    }
    jf_jt_raw(b, "]");
}

/* The awards this command wrote for tx are rendered from its copy
 * (jf_awards_write); others are read back by reply_awards. */
static bool awards_kept(const jf_ctx *ctx, const jf_tx *tx)
{
    return ctx->awarded_tx_seq == tx->seq && ctx->awarded_n > 0 && strcmp(tx->type, "earn") == 0;
}

jf_err jf_tx_reply_text(jf_ctx *ctx, const jf_tx *tx, jf_jtext *b)
{
    jf_chain_tx t = tx_view(ctx, tx);
    bool kept = awards_kept(ctx, tx);
    json_t *awards = NULL;
    jf_err err = kept ? JF_OK : reply_awards(ctx, tx, &awards);
    jf_tx_view_text(b, &t, 0);
    if (kept)
        awards_kept_text(b, ctx->awarded, ctx->awarded_n);
    else
        awards_text(b, awards);
    jf_jt_raw(b, "}");
    return err == JF_OK && b->failed ? JF_ERR_NOMEM : err;
}

/* ---- answers rendered off the writer ---- */

/* A draft's text is written into memory the writer reserved for it, so that
 * rendering it, once the commit is durable, cannot run out of memory: an
 * answer that failed after its write would tell the client it failed when
 * it did not (test_faults' burst holds every failed earn to having left
 * nothing).  jf_jt_str writes any text without memory of its own; metadata
 * is parsed to be written, so an answer with metadata is rendered on the
 * writer as before. */
struct jf_reply_draft {
    jf_chain_tx view; /* its strings point into text; no metadata, no postings */
    jf_points points;
    bool has_awards; /* an earn's: its awards, "[]" when award_n is 0 */
    jf_award *awards;
    size_t award_n;
    jf_jtext out;   /* reserved for the answer; taken by the first rendering */
    size_t out_max; /* the bound it was reserved for */
    char text[];    /* the view's strings, each with its NUL */
};

enum {
    VIEW_STRINGS = 13,
    /* The answer's keys and punctuation (304 bytes with the order's and the
     * awards' keys and "null" for the metadata), its seven numbers and its
     * quoted time; its strings are counted apart.  An earn's answer then
     * fits the first 1,024 bytes a jf_jtext takes. */
    DRAFT_FIXED_BYTES = 320 + 7 * JF_I64_DEC_MAX + JF_TIME_BUF + 2,
    /* An award's keys and punctuation (64 bytes) and its three numbers. */
    DRAFT_AWARD_FIXED_BYTES = 70 + 3 * JF_I64_DEC_MAX,
};

/* The view's string fields that the answer shows (metadata aside), for
 * copying them in one block. */
static void view_strings(jf_chain_tx *v, const char **f[VIEW_STRINGS])
{
    const char **all[VIEW_STRINGS] = {&v->id,       &v->type,    &v->member_id, &v->counterparty_id,
                                      &v->reverses, &v->hold_id, &v->order_id,  &v->order_currency,
                                      &v->reason,   &v->note,    &v->channel,   &v->store_id,
                                      &v->actor};
    memcpy(f, all, sizeof(all));
}

/* The most bytes of the answer's text, or 0 when some of it would need
 * memory to be written (metadata). */
static size_t draft_out_max(const jf_chain_tx *v, const char **const f[VIEW_STRINGS],
                            const jf_award *w, size_t award_n)
{
    if (v->metadata)
        return 0;
    size_t out = DRAFT_FIXED_BYTES;
    for (int i = 0; i < VIEW_STRINGS; i++)
        out += jf_jt_str_max(*f[i]);
    for (size_t i = 0; i < award_n; i++)
        out +=
            DRAFT_AWARD_FIXED_BYTES + jf_jt_str_max(w[i].rule_id) + jf_jt_str_max(w[i].explanation);
    return out;
}

jf_reply_draft *jf_reply_draft_new(jf_ctx *ctx, const jf_tx *tx, const jf_points *p)
{
    bool earn = strcmp(tx->type, "earn") == 0, kept = awards_kept(ctx, tx);
    /* An earn's awards this command did not keep a copy of are read back
     * from the database, which only the writer can do. */
    if (earn && ctx->awarded_tx_seq == tx->seq && ctx->awarded_n == 0)
        return NULL;
    jf_chain_tx v = tx_view(ctx, tx);
    v.postings = NULL; /* what the answer does not show */
    v.posting_count = 0;
    v.idem_key = NULL;
    const char **f[VIEW_STRINGS];
    view_strings(&v, f);
    size_t out = draft_out_max(&v, f, ctx->awarded, kept ? ctx->awarded_n : 0), bytes = 0;
    if (out == 0)
        return NULL;
    size_t len[VIEW_STRINGS];
    for (int i = 0; i < VIEW_STRINGS; i++) {
        len[i] = *f[i] ? strlen(*f[i]) + 1 : 0;
        bytes += len[i];
    }
    jf_reply_draft *d = malloc(sizeof(*d) + bytes);
    if (d == NULL)
        return NULL;
    *d = (jf_reply_draft){.view = v, .points = *p, .has_awards = earn, .out_max = out};
    jf_jt_reserve(&d->out, out);
    if (d->out.failed) {
        free(d);
        return NULL;
    }
    view_strings(&d->view, f);
    char *at = d->text;
    for (int i = 0; i < VIEW_STRINGS; i++) {
        if (*f[i] == NULL)
            continue;
        memcpy(at, *f[i], len[i]);
        *f[i] = at;
        at += len[i];
    }
    assert(at == d->text + bytes);
    if (kept) {
        d->awards = ctx->awarded; /* taken: ctx_finish frees what ctx still holds */
        d->award_n = ctx->awarded_n;
        ctx->awarded = NULL;
        ctx->awarded_n = 0;
    }
    return d;
}

char *jf_reply_draft_render(jf_reply_draft *d, json_t *rest, size_t *len)
{
    bool more = rest != NULL && json_object_size(rest) > 0;
    char *rest_text = more ? jf_json_dump(rest, NULL) : NULL;
    if (more && rest_text == NULL)
        return NULL;
    jf_jtext b = {0};
    if (!more) { /* the reserved memory holds it all: nothing is allocated */
        b = d->out;
        d->out = (jf_jtext){0};
    }
    const char *reserved = b.p;
    jf_jt_raw(&b, "{\"transaction\":");
    jf_tx_view_text(&b, &d->view, 0);
    if (d->has_awards)
        awards_kept_text(&b, d->awards, d->award_n);
    jf_jt_raw(&b, "}");
    jf_points_reply_end(&b, &d->points, rest_text);
    free(rest_text);
    /* The bound held: writing into the reserved memory allocated nothing. */
    assert(reserved == NULL || (b.p == reserved && b.len <= d->out_max));
    (void)reserved;
    return jf_jt_take(&b, len);
}

void jf_reply_draft_free(jf_reply_draft *d)
{
    if (d == NULL)
        return;
    free(d->awards);
    free(d->out.p);
    free(d);
}

jf_err jf_tx_reply_json(jf_ctx *ctx, const jf_tx *tx, json_t **out)
{
    jf_chain_tx t = tx_view(ctx, tx);
    json_t *awards = NULL;
    jf_err err = reply_awards(ctx, tx, &awards);
    if (err != JF_OK)
        return err;
    json_t *o = jf_tx_view_json(&t, 0);
    if (awards)
        json_object_set_new(o, "awards", awards);
    *out = o;
    return JF_OK;
}
