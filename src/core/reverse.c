/*
 * Reversals: a correction is a new transaction that references the original
 * (`reverses`), never an edit.  A reversal moves points the opposite way for
 * the reversed part: debits come back into the lots they were taken from
 * (restore), credits are taken back (clawback, possibly into debt within the
 * program's floor).  The sum of reversals never exceeds the original (I6).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "tiers.h"

typedef struct orig_tx {
    int64_t seq, points, delta, reversed;
    char id[JF_ID_LEN_MAX], type[16], member_id[JF_ID_LEN_MAX], counterparty_id[JF_ID_LEN_MAX];
    char hold_id[JF_ID_LEN_MAX];
} orig_tx;

static jf_err orig_load(jf_ctx *ctx, const char *id, orig_tx *o)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT seq, id, type, member_id, counterparty_id, points, delta, hold_id,"
                    " (SELECT COALESCE(SUM(r.points), 0) FROM transactions r INDEXED BY tx_reverses"
                    "  WHERE r.tenant_id = t.tenant_id"
                    "  AND r.reverses = t.id) FROM transactions t" TX_BY_ID,
                    "Is", ctx->auth->tenant, id ? id : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No transaction '%s'.", id ? id : "");
    if (jf_db_step(st) == SQLITE_ROW) {
        memset(o, 0, sizeof(*o));
        o->seq = sqlite3_column_int64(st, 0);
        jf_str_copy(o->id, sizeof(o->id), jf_db_text(st, 1));
        jf_str_copy(o->type, sizeof(o->type), jf_db_text(st, 2));
        snprintf(o->member_id, sizeof(o->member_id), "%s",
                 jf_db_text(st, 3) ? jf_db_text(st, 3) : "");
        snprintf(o->counterparty_id, sizeof(o->counterparty_id), "%s",
                 jf_db_text(st, 4) ? jf_db_text(st, 4) : "");
        o->points = sqlite3_column_int64(st, 5);
        o->delta = sqlite3_column_int64(st, 6);
        jf_str_copy(o->hold_id, sizeof(o->hold_id), jf_db_text(st, 7) ? jf_db_text(st, 7) : "");
        o->reversed = sqlite3_column_int64(st, 8);
        err = JF_OK;
    }
    sqlite3_reset(st);
    return err;
}

static jf_err reverse_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"points", "reason", "note", "metadata", NULL};
    jf_args *a = ctx->args;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, ctx->body, "points", false, 1, JF_POINTS_MAX, &a->points,
                          &a->has_points);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

static bool reversible(const char *type)
{
    static const char *const types[] = {"earn", "redeem", "adjust", "transfer", "capture", NULL};
    for (const char *const *t = types; *t; t++)
        if (strcmp(*t, type) == 0)
            return true;
    return false;
}

/* The seq of the transaction whose lot consumptions a restore undoes. */
static jf_err restore_source(jf_ctx *ctx, const orig_tx *o, int64_t *seq)
{
    if (strcmp(o->type, "capture") != 0) {
        *seq = o->seq;
        return JF_OK;
    }
    return jf_db_int(ctx->db, seq, 0, "SELECT tx_seq FROM holds WHERE tenant_id=? AND id=?", "Is",
                     ctx->auth->tenant, o->hold_id);
}

/* The growth an earn gave and what its reversals took back. */
static jf_err growth_of(jf_ctx *ctx, const orig_tx *o, int64_t *given, int64_t *taken)
{
    char account[JF_ID_LEN_MAX + 24];
    snprintf(account, sizeof account, "member:%s:growth", o->member_id);
    jf_err err = jf_db_int(ctx->db, given, 0,
                           "SELECT " JF_SQL_POSTED("t", "?3") " FROM transactions t"
                                                              " WHERE t.txkey = " TX_KEY_PARAMS,
                           "IIs", ctx->auth->tenant, o->seq, account);
    if (err == JF_OK)
        err = jf_db_int(
            ctx->db, taken, 0,
            "SELECT COALESCE(-SUM(" JF_SQL_POSTED(
                "r", "?3") "), 0) FROM transactions r"
                           " INDEXED BY tx_reverses WHERE r.tenant_id=?1 AND r.reverses=?2",
            "Iss", ctx->auth->tenant, o->id, account);
    return err;
}

/* Reversing n more points of an earn takes back growth in proportion,
 * rounded up on the running total, all of it with the last point
 * (docs/TIERS.md).  The tier stays until its next evaluation. */
static jf_err growth_back(jf_ctx *ctx, jf_tx *tx, const orig_tx *o, int64_t n)
{
    int64_t given = 0, taken = 0, target = 0;
    jf_err err = growth_of(ctx, o, &given, &taken);
    if (err != JF_OK || given <= 0)
        return err;
    if (o->reversed + n >= o->points)
        target = given;
    else if (!jf_rate_apply_ceil(o->reversed + n, given, o->points, &target))
        return jf_fail(ctx, JF_ERR_INTERNAL, "Growth of '%s' out of range.", o->id);
    if (target > taken)
        jf_tx_post_growth(tx, o->member_id, -(target - taken));
    return JF_OK;
}

/* Moves n points back for the original o, building tx's postings and lots. */
static jf_err reverse_move(jf_ctx *ctx, jf_tx *tx, const orig_tx *o, int64_t n)
{
    int64_t source = 0;
    jf_err err = restore_source(ctx, o, &source);
    if (err != JF_OK)
        return err;
    if (strcmp(o->type, "transfer") == 0) {
        err = jf_lots_clawback(ctx, tx, o->seq, o->counterparty_id, n);
        if (err == JF_OK)
            err = jf_lots_restore(ctx, tx, o->seq, o->member_id, n);
        jf_tx_post(tx, "points", o->counterparty_id, -n);
        jf_tx_post(tx, "points", o->member_id, n);
        tx->counterparty_id = o->counterparty_id;
        tx->delta = n;
        return err;
    }
    const char *system = strcmp(o->type, "earn") == 0     ? "issuance"
                         : strcmp(o->type, "adjust") == 0 ? "adjustment"
                                                          : "redemption";
    bool credit = strcmp(o->type, "earn") == 0 || (strcmp(o->type, "adjust") == 0 && o->delta > 0);
    int64_t back = credit ? -n : n; /* the change to the member's points */
    if (back < 0)
        err = jf_lots_clawback(ctx, tx, o->seq, o->member_id, n);
    else
        err = jf_lots_restore(ctx, tx, source, o->member_id, n);
    jf_tx_post(tx, "points", o->member_id, back);
    jf_tx_post(tx, system, NULL, -back);
    tx->delta = back;
    if (err == JF_OK && strcmp(o->type, "earn") == 0)
        err = growth_back(ctx, tx, o, n);
    return err;
}

jf_err jf_reverse_points(jf_ctx *ctx, const char *orig_id, int64_t points,
                         const jf_reverse_opts *opts, char tx_id[JF_ID_LEN_MAX],
                         char member_id[JF_ID_LEN_MAX])
{
    orig_tx o;
    jf_tx tx;
    jf_err err = orig_load(ctx, orig_id, &o);
    if (err != JF_OK)
        return err;
    if (!reversible(o.type))
        return jf_fail(ctx, JF_ERR_NOT_REVERSIBLE, "A %s transaction cannot be reversed.", o.type);
    int64_t left = o.points - o.reversed;
    int64_t n = points > 0 ? points : left;
    if (left <= 0 || n > left)
        return jf_fail(ctx, JF_ERR_REVERSAL_EXCEEDS_ORIGINAL, "%lld points remain reversible.",
                       (long long)left);
    err = jf_holds_void_overdue(ctx, o.member_id);
    if (err == JF_OK && o.counterparty_id[0])
        err = jf_holds_void_overdue(ctx, o.counterparty_id);
    if (err == JF_OK)
        err = jf_tx_begin(ctx, &tx, "reverse", o.member_id);
    if (err != JF_OK)
        return err;
    jf_tx_describe(&tx, ctx->args);
    if (opts) {
        tx.idem_key = opts->idem_key;
        tx.order_id = opts->order_id;
        if (opts->metadata) {
            free(tx.metadata);
            tx.metadata = strdup(opts->metadata);
        }
    }
    tx.reverses = o.id;
    tx.points = n;
    /* A metadata that could not be copied fails the reversal rather than
     * being stored as null (jsonw.c records a failed dump the same way). */
    if (opts && opts->metadata && tx.metadata == NULL)
        err = JF_ERR_NOMEM;
    else
        err = reverse_move(ctx, &tx, &o, n);
    if (err == JF_OK)
        err = jf_tx_finish(ctx, &tx);
    assert(err != JF_OK || o.reversed + n <= o.points);
    jf_str_copy(tx_id, JF_ID_LEN_MAX, tx.id);
    jf_str_copy(member_id, JF_ID_LEN_MAX, o.member_id);
    jf_tx_deinit(&tx);
    return err;
}

static jf_err reverse_apply(jf_ctx *ctx)
{
    char tx_id[JF_ID_LEN_MAX], member_id[JF_ID_LEN_MAX];
    int64_t n = ctx->args->has_points ? ctx->args->points : 0;
    jf_err err = jf_reverse_points(ctx, ctx->path_id, n, NULL, tx_id, member_id);
    return err == JF_OK ? jf_points_result(ctx, tx_id, member_id) : err;
}

const jf_op_impl jf_op_reverse = {reverse_validate, reverse_apply};
