/*
 * Holds: checkout reserves points (hold), then captures part or all of them
 * (capture: the rest is released) or lets them go (void).  A hold past its
 * deadline is void: the writer voids a member's overdue holds before any
 * other write to that member, and the sweep voids the rest in slices.
 *
 * Reserved points move from the member's points account to its held
 * account; the hold consumes lots like a redeem, and releasing restores
 * those lots.
 */
#include <string.h>

#include "ledger.h"

typedef struct jf_hold {
    char id[JF_ID_LEN_MAX];
    char member_id[JF_ID_LEN_MAX];
    char status[12];
    int64_t tx_seq, points, expires_at;
} jf_hold;

static jf_err hold_load(jf_ctx *ctx, const char *id, jf_hold *h)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT id, member_id, status, tx_seq, points, expires_at FROM holds"
                    " WHERE tenant_id=? AND id=?",
                    "Is", ctx->auth->tenant, id ? id : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No hold '%s'.", id ? id : "");
    if (jf_db_step(st) == SQLITE_ROW) {
        jf_str_copy(h->id, sizeof(h->id), jf_db_text(st, 0));
        jf_str_copy(h->member_id, sizeof(h->member_id), jf_db_text(st, 1));
        jf_str_copy(h->status, sizeof(h->status), jf_db_text(st, 2));
        h->tx_seq = sqlite3_column_int64(st, 3);
        h->points = sqlite3_column_int64(st, 4);
        h->expires_at = sqlite3_column_int64(st, 5);
        err = JF_OK;
    }
    sqlite3_reset(st);
    return err;
}

static json_t *hold_row_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(jf_db_text(st, 0)));
    jf_json_set(o, "member_id", json_string(jf_db_text(st, 1)));
    jf_json_set(o, "points", json_integer(sqlite3_column_int64(st, 2)));
    jf_json_set(o, "captured", json_integer(sqlite3_column_int64(st, 3)));
    jf_json_set(o, "released", json_integer(sqlite3_column_int64(st, 4)));
    jf_json_set(o, "status", json_string(jf_db_text(st, 5)));
    jf_json_set(o, "expires_at", jf_json_time_value(sqlite3_column_int64(st, 6)));
    jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 7)));
    return o;
}

static jf_err hold_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out)
{
    (void)ctx;
    *out = hold_row_json(st);
    return JF_OK;
}

#define HOLD_COLUMNS                                                                               \
    "SELECT id, member_id, points, captured, released, status, expires_at, created_at,"            \
    " tx_seq FROM holds"

static jf_err hold_json(jf_ctx *ctx, const char *id, json_t **out)
{
    sqlite3_stmt *st = jf_db_query(ctx->db, HOLD_COLUMNS " WHERE tenant_id=? AND id=?", "Is",
                                   ctx->auth->tenant, id ? id : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No hold '%s'.", id ? id : "");
    if (jf_db_step(st) == SQLITE_ROW) {
        *out = hold_row_json(st);
        err = JF_OK;
    }
    sqlite3_reset(st);
    return err;
}

/* Closes a hold: captures `capture` points and releases the rest. */
static jf_err hold_close(jf_ctx *ctx, const jf_hold *h, int64_t capture, const char *actor,
                         char *tx_id)
{
    jf_tx tx;
    int64_t release = h->points - capture;
    jf_err err = jf_tx_begin(ctx, &tx, capture > 0 ? "capture" : "void", h->member_id);
    if (err != JF_OK)
        return err;
    if (actor) {
        tx.actor = actor;
        tx.idem_key = NULL;
    } else {
        jf_tx_describe(&tx, ctx->args);
    }
    tx.hold_id = h->id;
    tx.points = capture > 0 ? capture : h->points;
    tx.delta = release;
    jf_tx_post(&tx, "held", h->member_id, -h->points);
    jf_tx_post(&tx, "redemption", NULL, capture);
    jf_tx_post(&tx, "points", h->member_id, release);
    if (release > 0)
        err = jf_lots_restore(ctx, &tx, h->tx_seq, h->member_id, release);
    if (err == JF_OK)
        err = jf_tx_finish(ctx, &tx);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "UPDATE holds SET captured=?, released=?, status=? WHERE tenant_id=? AND"
                        " id=? AND status='open'",
                        "IIsIs", capture, release,
                        capture > 0 ? "captured" : (actor ? "expired" : "voided"),
                        ctx->auth->tenant, h->id);
    if (err == JF_OK && jf_db_changes(ctx->db) != 1)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Hold %s was not open.", h->id);
    if (err == JF_OK && tx_id)
        jf_str_copy(tx_id, JF_ID_LEN_MAX, tx.id);
    jf_tx_deinit(&tx);
    return err;
}

/* Voids up to limit overdue holds (of one member, or of the tenant). */
static jf_err holds_void_limit(jf_ctx *ctx, const char *member_id, int64_t limit, int64_t *count)
{
    char ids[64][JF_ID_LEN_MAX];
    int n = 0;
    *count = 0;
    /* Two statements so each uses its own index: per member on every write,
     * per tenant in the sweep. */
    sqlite3_stmt *st =
        member_id
            ? jf_db_query(ctx->db,
                          "SELECT id FROM holds WHERE tenant_id=? AND member_id=?"
                          " AND status='open' AND expires_at <= ? ORDER BY expires_at, tx_seq"
                          " LIMIT ?",
                          "IsII", ctx->auth->tenant, member_id, ctx->now_ms, jf_min_i64(limit, 64))
            : jf_db_query(ctx->db,
                          "SELECT id FROM holds WHERE tenant_id=? AND status='open'"
                          " AND expires_at <= ? ORDER BY expires_at, tx_seq LIMIT ?",
                          "III", ctx->auth->tenant, ctx->now_ms, jf_min_i64(limit, 64));
    if (st == NULL)
        return JF_ERR_IO;
    while (n < 64 && jf_db_step(st) == SQLITE_ROW)
        snprintf(ids[n++], JF_ID_LEN_MAX, "%.*s", JF_ID_LEN_MAX - 1, jf_db_text(st, 0));
    sqlite3_reset(st);
    jf_err err = JF_OK;
    for (int i = 0; err == JF_OK && i < n; i++) {
        jf_hold h;
        err = hold_load(ctx, ids[i], &h);
        if (err == JF_OK)
            err = hold_close(ctx, &h, 0, "system", NULL);
    }
    *count = err == JF_OK ? n : 0;
    return err;
}

/* Whether no open hold of the tenant is due now, from the writer's bound
 * on their deadlines (wcache.c), read again when it is unknown or passed.
 * Off the writer it is always false: the caller looks. */
static jf_err holds_none_due(jf_ctx *ctx, bool *none)
{
    jf_wcache *wc = jf_ctx_wcache(ctx);
    int64_t bound = 0;
    *none = false;
    if (wc == NULL)
        return JF_OK;
    if (!jf_wcache_holds_bound(wc, ctx->auth->tenant, ctx->now_ms, &bound)) {
        jf_err err = jf_db_int(ctx->db, &bound, INT64_MAX,
                               "SELECT MIN(expires_at) FROM holds"
                               " INDEXED BY holds_open WHERE tenant_id=? AND status='open'",
                               "I", ctx->auth->tenant);
        if (err != JF_OK)
            return err;
        jf_wcache_holds_bound_set(wc, ctx->auth->tenant, bound);
    }
    *none = ctx->now_ms < bound;
    return JF_OK;
}

jf_err jf_holds_void_overdue(jf_ctx *ctx, const char *member_id)
{
    int64_t count = 0;
    bool none = false;
    jf_err err = holds_none_due(ctx, &none);
    if (err != JF_OK || none)
        return err;
    do {
        err = holds_void_limit(ctx, member_id, 64, &count);
    } while (err == JF_OK && count == 64);
    return err;
}

static jf_err hold_result(jf_ctx *ctx, const char *tx_id, const char *member_id,
                          const char *hold_id)
{
    json_t *h = NULL;
    jf_err err = jf_points_result(ctx, tx_id, member_id);
    if (err == JF_OK && (err = hold_json(ctx, hold_id, &h)) == JF_OK)
        json_object_set_new(ctx->out, "hold", h);
    return err;
}

static jf_err hold_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"points",  "ttl_seconds", "order",    "note", "reason",
                                         "channel", "store_id",    "metadata", NULL};
    jf_args *a = ctx->args;
    json_t *b = ctx->body, *o = json_object_get(b, "order");
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "points", true, 1, JF_POINTS_MAX, &a->points, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "ttl_seconds", false, 1, JF_HOLD_TTL_SECONDS_MAX, &a->ttl_s,
                          &a->has_ttl);
    if (err == JF_OK && o)
        err = jf_order_validate(ctx, o, false);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

static jf_err hold_apply(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    jf_member m;
    jf_tx tx;
    jf_points before;
    jf_err err = jf_debit_begin(ctx, "hold", &m, &tx, &before);
    if (err != JF_OK)
        return err;
    tx.hold_id = tx.id;
    int64_t ttl = a->has_ttl ? a->ttl_s : ctx->prog.hold_ttl_s;
    err = jf_lots_consume(ctx, &tx, m.id, a->points, NULL, NULL);
    jf_tx_post(&tx, "points", m.id, -a->points);
    jf_tx_post(&tx, "held", m.id, a->points);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "INSERT INTO holds(tenant_id, id, tx_seq, member_id, points, status,"
                        " expires_at, created_at) VALUES(?,?,?,?,?,'open',?,?)",
                        "IsIsIII", ctx->auth->tenant, tx.id, tx.seq, m.id, a->points,
                        ctx->now_ms + ttl * 1000, ctx->now_ms);
    if (err == JF_OK)
        jf_wcache_hold_opened(jf_ctx_wcache(ctx), ctx->auth->tenant, ctx->now_ms + ttl * 1000);
    char id[JF_ID_LEN_MAX];
    jf_str_copy(id, sizeof(id), tx.id);
    json_t *h = NULL;
    if ((err = jf_debit_complete(ctx, &tx, m.id, &before, err)) == JF_OK &&
        (err = hold_json(ctx, id, &h)) == JF_OK)
        json_object_set_new(ctx->out, "hold", h);
    return err;
}

static jf_err capture_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"points",   "note",     "reason", "channel",
                                         "store_id", "metadata", NULL};
    jf_args *a = ctx->args;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, ctx->body, "points", false, 1, JF_POINTS_MAX, &a->points,
                          &a->has_points);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

/* Loads a hold that is still open and within its deadline. */
static jf_err hold_open(jf_ctx *ctx, jf_hold *h)
{
    jf_err err = hold_load(ctx, ctx->path_id, h);
    if (err == JF_OK && (strcmp(h->status, "open") != 0 || h->expires_at <= ctx->now_ms))
        err = jf_fail(ctx, JF_ERR_HOLD_NOT_OPEN, "Hold '%s' is %s.", h->id,
                      strcmp(h->status, "open") == 0 ? "past its deadline" : h->status);
    return err;
}

static jf_err capture_apply(jf_ctx *ctx)
{
    jf_hold h;
    char tx_id[JF_ID_LEN_MAX];
    jf_err err = hold_open(ctx, &h);
    if (err != JF_OK)
        return err;
    int64_t capture = ctx->args->has_points ? ctx->args->points : h.points;
    if (capture > h.points)
        return jf_fail(ctx, JF_ERR_CAPTURE_EXCEEDS_HOLD, "The hold is for %lld points.",
                       (long long)h.points);
    err = hold_close(ctx, &h, capture, NULL, tx_id);
    return err == JF_OK ? hold_result(ctx, tx_id, h.member_id, h.id) : err;
}

static jf_err void_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"note", "reason", NULL};
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

static jf_err void_apply(jf_ctx *ctx)
{
    jf_hold h;
    char tx_id[JF_ID_LEN_MAX];
    jf_err err = hold_open(ctx, &h);
    if (err == JF_OK)
        err = hold_close(ctx, &h, 0, NULL, tx_id);
    return err == JF_OK ? hold_result(ctx, tx_id, h.member_id, h.id) : err;
}

static jf_err hold_get(jf_ctx *ctx)
{
    json_t *h = NULL;
    jf_err err = hold_json(ctx, ctx->path_id, &h);
    if (err == JF_OK) {
        json_decref(ctx->out);
        ctx->out = h;
    }
    return err;
}

static jf_err member_holds(jf_ctx *ctx)
{
    jf_member m;
    int64_t limit, cursor;
    jf_err err = jf_member_load(ctx, ctx->path_id, &m);
    if (err == JF_OK)
        err = jf_list_params(ctx, &limit, &cursor);
    if (err != JF_OK)
        return err;
    bool open_only = false;
    if ((err = jf_param_open_only(ctx, &open_only)) != JF_OK)
        return err;
    /* The member's holds by their index, then sorted: by the primary key's
     * order (tx_seq) the planner walked every hold of the tenant after the
     * cursor (tests/api/test_query_plans.py). */
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    HOLD_COLUMNS " INDEXED BY holds_member WHERE tenant_id=? AND member_id=? AND"
                                 " tx_seq>?"
                                 " AND (? = 0 OR status = 'open') ORDER BY tx_seq"
                                 " LIMIT ?",
                    "IsIiI", ctx->auth->tenant, m.id, cursor, open_only ? 1 : 0, limit + 1);
    return jf_list_rows(ctx, st, limit, 8, hold_row);
}

/* One slice of the sweep; asks to run again while slices come back full. */
static jf_err holds_sweep(jf_ctx *ctx)
{
    int64_t count = 0;
    jf_err err = holds_void_limit(ctx, NULL, 64, &count);
    if (err != JF_OK)
        return err;
    ctx->acc[0] += count;
    ctx->again = count == 64;
    jf_json_set(ctx->out, "voided_holds", json_integer(ctx->acc[0]));
    return JF_OK;
}

const jf_op_impl jf_op_hold = {hold_validate, hold_apply};
const jf_op_impl jf_op_hold_capture = {capture_validate, capture_apply};
const jf_op_impl jf_op_hold_void = {void_validate, void_apply};
const jf_op_impl jf_op_hold_get = {NULL, hold_get};
const jf_op_impl jf_op_member_holds = {NULL, member_holds};
const jf_op_impl jf_op_holds_sweep = {NULL, holds_sweep};
