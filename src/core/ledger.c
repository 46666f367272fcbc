/*
 * Points operations: earn, redeem, adjust, transfer.  Holds and reversals
 * are in holds.c and reverse.c.
 *
 * Each operation has a validate half (caller's thread: the body's shape and
 * ranges) and an apply half (writer: the member's state, lots, postings).
 * Apply checks everything that can refuse the operation before its first
 * write, and asserts I4 for every member it touched after its last.
 */
#include <string.h>

#include "bonus.h"
#include "ledger.h"
#include "referral.h"
#include "refunds.h"
#include "rules.h"
#include "tiers.h"

#define DAY_MS INT64_C(86400000)

/* Optional descriptive fields shared by point operations. */
jf_err jf_args_common(jf_ctx *ctx)
{
    jf_args *a = ctx->args;
    json_t *b = ctx->body;
    jf_err err = jf_json_str(ctx, b, "channel", false, JF_CHANNEL_LEN_MAX, &a->channel);
    if (err == JF_OK)
        err = jf_json_str(ctx, b, "store_id", false, JF_STORE_ID_LEN_MAX, &a->store_id);
    if (err == JF_OK)
        err = jf_json_str(ctx, b, "note", false, JF_NOTE_LEN_MAX, &a->note);
    if (err == JF_OK && !json_object_get(b, "reason"))
        a->reason = NULL;
    else if (err == JF_OK)
        err = jf_json_str(ctx, b, "reason", false, JF_REASON_LEN_MAX, &a->reason);
    json_t *m = json_object_get(b, "metadata");
    if (err == JF_OK && m && !json_is_null(m)) {
        char *text = json_is_object(m) ? jf_json_dump(m, NULL) : NULL;
        size_t n = text ? strlen(text) : SIZE_MAX;
        bool lost = json_is_object(m) && text == NULL;
        free(text);
        if (lost)
            return JF_ERR_NOMEM; /* not "too large": the dump's memory ran out */
        if (n > JF_METADATA_BYTES_MAX)
            return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                           "'metadata' must be an object of at most %d bytes.",
                           JF_METADATA_BYTES_MAX);
        a->metadata = m;
    }
    return err;
}

/* Copies the common fields into the transaction being built. */
void jf_tx_describe(jf_tx *tx, const jf_args *a)
{
    tx->channel = a->channel;
    tx->store_id = a->store_id;
    tx->note = a->note;
    tx->reason = a->reason;
    if (a->metadata)
        tx->metadata = jf_json_dump(a->metadata, NULL);
}

/* Loads a member that may earn or spend; voids its overdue holds first and
 * grants a birthday bonus that is due (the member's first activity of the
 * day, docs/RULES.md). */
jf_err jf_member_writable(jf_ctx *ctx, const char *id, jf_member *m)
{
    jf_err err = jf_member_load(ctx, id, m);
    if (err != JF_OK)
        return err;
    if (strcmp(m->status, "frozen") == 0)
        return jf_fail(ctx, JF_ERR_MEMBER_FROZEN, "Member '%s' is frozen.", m->id);
    if (strcmp(m->status, "closed") == 0)
        return jf_fail(ctx, JF_ERR_MEMBER_CLOSED, "Member '%s' is closed.", m->id);
    err = jf_holds_void_overdue(ctx, m->id);
    return err == JF_OK ? jf_bonus_birthday_due(ctx, m->id, m->birthday) : err;
}

/* ctx holds mem_tx's answer (as text or as data): a write that created it. */
static jf_err points_result_taken(jf_ctx *ctx, const jf_tx *mem_tx)
{
    jf_str_copy(ctx->reply_tx_id, sizeof(ctx->reply_tx_id), mem_tx->id);
    ctx->created = true;
    return JF_OK;
}

/* The same answer with the transaction rendered as text from memory and
 * the points kept as numbers, for ctx_finish (engine.c) to write first:
 * building the transaction's tree and dumping it was a tenth of the
 * writer's time per earn. */
static jf_err points_result_text(jf_ctx *ctx, const jf_tx *mem_tx, const char *member_id,
                                 const jf_points *known)
{
    jf_err err = JF_OK;
    if (known)
        ctx->reply_points = *known;
    else
        err = jf_lots_points(ctx, member_id, &ctx->reply_points);
    /* Kept as data for the syncer to render once the commit is durable: the
     * rendering was about 4% of the writer's instructions per earn. */
    if (err == JF_OK && (ctx->reply_draft = jf_reply_draft_new(ctx, mem_tx, &ctx->reply_points)))
        return points_result_taken(ctx, mem_tx);
    jf_jtext b = {0};
    if (err == JF_OK)
        err = jf_tx_reply_text(ctx, mem_tx, &b);
    if (err == JF_OK && (ctx->reply_tx = jf_jt_take(&b, NULL)) == NULL)
        err = JF_ERR_NOMEM;
    if (err != JF_OK) {
        free(b.p);
        return err;
    }
    return points_result_taken(ctx, mem_tx);
}

/* The answer {"transaction": ..., "points": ...} for the member after the
 * transaction: mem_tx when this command just committed it (rendered from
 * memory, as text while ctx->out holds nothing yet), else tx_id read back;
 * known (may be NULL) are the member's points already read after it. */
static jf_err points_result_known(jf_ctx *ctx, const jf_tx *mem_tx, const char *tx_id,
                                  const char *member_id, const jf_points *known)
{
    if (mem_tx && ctx->reply_tx == NULL && ctx->reply_draft == NULL &&
        json_object_size(ctx->out) == 0)
        return points_result_text(ctx, mem_tx, member_id, known);
    json_t *tx = NULL, *pts = NULL;
    jf_err err = mem_tx ? jf_tx_reply_json(ctx, mem_tx, &tx) : jf_tx_json(ctx, tx_id, false, &tx);
    if (err == JF_OK && known)
        pts = jf_points_json(known);
    else if (err == JF_OK)
        err = jf_member_points_json(ctx, member_id, &pts);
    if (err != JF_OK) {
        json_decref(tx);
        return err;
    }
    json_object_set_new(ctx->out, "transaction", tx);
    json_object_set_new(ctx->out, "points", pts);
    ctx->created = true;
    return JF_OK;
}

jf_err jf_points_result(jf_ctx *ctx, const char *tx_id, const char *member_id)
{
    return points_result_known(ctx, NULL, tx_id, member_id, NULL);
}

/* Checks that amount is spendable now; *p gets the member's points. */
static jf_err require_points(jf_ctx *ctx, const char *member_id, int64_t amount, jf_points *p)
{
    jf_err err = jf_lots_points(ctx, member_id, p);
    if (err == JF_OK && p->available < amount)
        err = jf_fail(ctx, JF_ERR_INSUFFICIENT_POINTS, "Member %s has %lld points available.",
                      member_id, (long long)p->available);
    return err;
}

jf_err jf_require_available(jf_ctx *ctx, const char *member_id, int64_t amount)
{
    jf_points p;
    return require_points(ctx, member_id, amount, &p);
}

/* Commits tx and checks I4 for the members it touched; *member_pts gets
 * tx->member_id's points after tx (read by the assertion, so the reply need
 * not read them again). */
static jf_err tx_finish_points(jf_ctx *ctx, jf_tx *tx, jf_points *member_pts)
{
    jf_points counterparty_pts;
    jf_err err = jf_tx_commit(ctx, tx);
    if (err == JF_OK && tx->member_id)
        err = jf_member_assert_points(ctx, tx->member_id, member_pts);
    if (err == JF_OK && tx->counterparty_id)
        err = jf_member_assert_points(ctx, tx->counterparty_id, &counterparty_pts);
    return err;
}

jf_err jf_tx_finish(jf_ctx *ctx, jf_tx *tx)
{
    jf_points p;
    return tx_finish_points(ctx, tx, &p);
}

jf_err jf_debit_begin(jf_ctx *ctx, const char *type, jf_member *m, jf_tx *tx, jf_points *before)
{
    const jf_args *a = ctx->args;
    jf_err err = jf_member_writable(ctx, ctx->path_id, m);
    if (err == JF_OK)
        err = require_points(ctx, m->id, a->points, before);
    if (err == JF_OK)
        err = jf_tx_begin(ctx, tx, type, m->id);
    if (err != JF_OK)
        return err;
    jf_tx_describe(tx, a);
    tx->points = a->points;
    tx->delta = -a->points;
    tx->order_id = a->order_id;
    return JF_OK;
}

jf_err jf_tx_complete(jf_ctx *ctx, jf_tx *tx, const char *member_id, jf_err err)
{
    jf_points p;
    if (err == JF_OK)
        err = tx_finish_points(ctx, tx, &p);
    bool known = tx->member_id && strcmp(tx->member_id, member_id) == 0;
    if (err == JF_OK)
        err = points_result_known(ctx, tx, tx->id, member_id, known ? &p : NULL);
    jf_tx_deinit(tx);
    return err;
}

/* The stored balance after tx of member_id's account kind; false when tx
 * posted nothing to it. */
static bool tx_stored(const jf_tx *tx, const char *member_id, const char *kind, int64_t *out)
{
    int i = jf_tx_posting_find(tx, kind, member_id);
    if (i >= 0)
        *out = tx->stored[i];
    return i >= 0;
}

/* A debit takes only spendable lots (neither pending nor due) and leaves
 * debt alone (a member in debt has nothing spendable), so after it the
 * member's points are the ones before less the debit, and a hold's held
 * points more by it.  The balances the write stored must say the same: a
 * stronger check than reading the points again, at no read. */
static jf_err debit_points_after(jf_ctx *ctx, const jf_tx *tx, const char *member_id,
                                 const jf_points *before, jf_points *after)
{
    int64_t n = tx->points, stored = 0;
    *after = *before;
    after->balance -= n;
    after->available -= n;
    bool ok = tx_stored(tx, member_id, "points", &stored) && stored == after->balance;
    if (ok && tx_stored(tx, member_id, "held", &stored)) {
        after->held += n;
        ok = stored == after->held;
    }
    if (ok && after->available >= 0 && after->balance >= 0 && after->held >= 0)
        return JF_OK;
    fprintf(stderr,
            "jifen: assertion failed for %s after a debit of %lld: expected balance %lld held"
            " %lld available %lld, stored balance %lld\n",
            member_id, (long long)n, (long long)after->balance, (long long)after->held,
            (long long)after->available, (long long)stored);
    return jf_fail(ctx, JF_ERR_INTERNAL, "Ledger assertion failed for %s.", member_id);
}

jf_err jf_debit_complete(jf_ctx *ctx, jf_tx *tx, const char *member_id, const jf_points *before,
                         jf_err err)
{
    jf_points after;
    if (err == JF_OK)
        err = jf_tx_commit(ctx, tx);
    if (err == JF_OK)
        err = debit_points_after(ctx, tx, member_id, before, &after);
    if (err == JF_OK)
        err = points_result_known(ctx, tx, tx->id, member_id, &after);
    jf_tx_deinit(tx);
    return err;
}

/* ---- earn ---- */

jf_err jf_order_validate(jf_ctx *ctx, json_t *o, bool need_amount)
{
    static const char *const fields[] = {"id",      "amount",   "currency",         "lines",
                                         "channel", "store_id", "paid_with_points", NULL};
    jf_args *a = ctx->args;
    if (!json_is_object(o))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'order' must be an object.");
    jf_err err = jf_json_allow(ctx, o, fields);
    if (err == JF_OK)
        err = jf_rule_order_validate(ctx, o);
    a->order = o;
    if (err == JF_OK)
        err = jf_json_str(ctx, o, "id", true, JF_ORDER_ID_LEN_MAX, &a->order_id);
    if (err == JF_OK)
        err = jf_json_int(ctx, o, "amount", need_amount, 0, JF_MONEY_MAX, &a->order_amount, NULL);
    if (err == JF_OK)
        err = jf_json_str(ctx, o, "currency", need_amount, 3, &a->order_currency);
    a->has_order = true;
    return err;
}

jf_err jf_dry_run_args(jf_ctx *ctx)
{
    jf_args *a = ctx->args;
    json_t *d = json_object_get(ctx->body, "dry_run"),
           *i = json_object_get(ctx->body, "include_drafts");
    if ((d && !json_is_boolean(d)) || (i && !json_is_boolean(i)))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'dry_run' and 'include_drafts' are booleans.");
    a->dry_run = json_is_true(d);
    a->include_drafts = json_is_true(i);
    if (a->include_drafts && !a->dry_run)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'include_drafts' needs \"dry_run\": true.");
    if (a->dry_run && ctx->req && ctx->req->op == JF_OP_BATCH)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "A batch cannot hold a dry run.");
    return JF_OK;
}

static jf_err earn_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {
        "points",       "order",      "channel", "store_id",       "note",   "reason", "metadata",
        "pending_days", "expires_at", "dry_run", "include_drafts", "growth", NULL};
    jf_args *a = ctx->args;
    json_t *b = ctx->body;
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "points", false, 1, JF_POINTS_MAX, &a->points, &a->has_points);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "growth", false, 0, JF_POINTS_MAX, &a->growth, &a->has_growth);
    bool has_order = json_object_get(b, "order") != NULL;
    if (err == JF_OK && !a->has_points && !has_order && !a->has_growth)
        err = jf_fail(ctx, JF_ERR_MISSING_FIELD,
                      "Give 'points', 'growth' or an 'order' with an amount.");
    if (err == JF_OK && has_order)
        err = jf_order_validate(ctx, json_object_get(b, "order"), !a->has_points);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "pending_days", false, 0, JF_PENDING_DAYS_MAX, &a->pending_days,
                          &a->has_pending_days);
    if (err == JF_OK)
        err = jf_json_time(ctx, b, "expires_at", false, &a->expires_at, &a->has_expires_at);
    if (err == JF_OK)
        err = jf_dry_run_args(ctx);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

/* Refuses an order in another currency or one that already earned. */
static jf_err earn_order_check(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    if (a->order_currency && strcmp(a->order_currency, ctx->prog.currency) != 0)
        return jf_fail(ctx, JF_ERR_CURRENCY_MISMATCH, "The program's currency is %s.",
                       ctx->prog.currency);
    /* An order the writer's filter has surely never seen earned is not
     * looked up. */
    if (jf_idem_filter_order_absent(jf_ctx_idem_filter(ctx), ctx->auth->tenant, a->order_id))
        return JF_OK;
    int64_t seen = 0;
    jf_err err = jf_db_int(ctx->db, &seen, 0,
                           "SELECT count(*) FROM transactions INDEXED BY tx_order WHERE"
                           " tenant_id=? AND order_id=?"
                           " AND type='earn'",
                           "Is", ctx->auth->tenant, a->order_id);
    if (err == JF_OK && seen)
        err = jf_fail(ctx, JF_ERR_ORDER_ALREADY_EARNED, "Order '%s' already earned points.",
                      a->order_id);
    return err;
}

/* Points of an order without explicit points: the live purchase rules when
 * there are any (*ruled), else the program's base rate rounded down. */
static jf_err earn_order_points(jf_ctx *ctx, const char *member_id, jf_award *aw, size_t *n,
                                bool *ruled, int64_t *points)
{
    const jf_args *a = ctx->args;
    size_t live = 0;
    jf_err err = jf_rules_awards(ctx, member_id, "purchase", NULL, NULL, aw, n, &live);
    *ruled = live > 0 || *n > 0;
    *points = 0;
    for (size_t i = 0; err == JF_OK && *ruled && i < *n; i++)
        if (!jf_points_add_checked(*points, aw[i].points, points))
            err = jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The order earns too many points.");
    if (err != JF_OK || *ruled)
        return err;
    if (!jf_rate_apply_floor(a->order_amount, ctx->prog.earn_points, ctx->prog.earn_per_amount,
                             points))
        return jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The order earns more than the points range.");
    if (ctx->prog.max_points_per_order >= 0 && *points > ctx->prog.max_points_per_order)
        *points = ctx->prog.max_points_per_order;
    return JF_OK;
}

/* Why an order earned what the program's base rate gives, naming the
 * program's cap when it took some. */
static void base_rate_explain(const jf_ctx *ctx, int64_t points, char *why, size_t len)
{
    const jf_args *a = ctx->args;
    /* earn_order_points computed the rate once already, so it does not fail. */
    int64_t rated = points;
    if (!jf_rate_apply_floor(a->order_amount, ctx->prog.earn_points, ctx->prog.earn_per_amount,
                             &rated) ||
        rated < points)
        rated = points;
    char cap[160] = "";
    if (rated > points)
        snprintf(cap, sizeof cap,
                 "; capped from %lld to %lld by the program's max_points_per_order %lld",
                 (long long)rated, (long long)points, (long long)ctx->prog.max_points_per_order);
    snprintf(why, len,
             "Program base rate: %lld points per %lld of order amount %lld (floor) => %lld "
             "points%s.",
             (long long)ctx->prog.earn_points, (long long)ctx->prog.earn_per_amount,
             (long long)a->order_amount, (long long)rated, cap);
}

/* The answer of a dry run: the awards, their total, nothing written. */
static jf_err earn_dry_run_reply(jf_ctx *ctx, const jf_award *aw, size_t n, bool ruled,
                                 int64_t points, int64_t growth)
{
    const jf_args *a = ctx->args;
    json_t *awards = jf_awards_array(aw, ruled ? n : 0);
    if (!ruled && a->has_order && !a->has_points) {
        char why[JF_EXPLANATION_LEN_MAX];
        base_rate_explain(ctx, points, why, sizeof why);
        json_array_append_new(awards, json_pack("{snsnsIsssI}", "rule_id", "rule_version", "points",
                                                (json_int_t)points, "explanation", why, "growth",
                                                (json_int_t)growth));
    }
    jf_json_set(ctx->out, "dry_run", json_true());
    jf_json_set(ctx->out, "total_points", json_integer(points));
    jf_json_set(ctx->out, "total_growth", json_integer(growth));
    jf_json_set(ctx->out, "awards", awards);
    return JF_OK;
}

/* Credits points: one lot per rule award, or one lot for the whole earn. */
static jf_err earn_credit(jf_ctx *ctx, jf_tx *tx, const char *member_id, const jf_award *aw,
                          size_t n, bool ruled, int64_t points)
{
    const jf_args *a = ctx->args;
    jf_err err = JF_OK;
    if (ruled) {
        err = jf_awards_write(ctx, tx, member_id, aw, n);
    } else if (points > 0) {
        int64_t pending = a->has_pending_days ? a->pending_days : ctx->prog.pending_days;
        int64_t expires =
            a->has_expires_at ? a->expires_at : jf_program_expiry_ms(&ctx->prog, ctx->now_ms);
        err = jf_lot_create(ctx, tx, member_id, points, ctx->now_ms + pending * DAY_MS, expires,
                            NULL);
    }
    if (points > 0) {
        jf_tx_post(tx, "issuance", NULL, -points);
        jf_tx_post(tx, "points", member_id, points);
    }
    return err;
}

jf_err jf_member_purchases(jf_ctx *ctx, const char *member_id, int64_t max, int64_t *count)
{
    int64_t seq = 0;
    jf_err err = jf_member_seq(ctx, member_id, &seq);
    /* The order flag of a transaction entry (db.h, JF_TX_ENTRY_KEY4_SQL) is
     * exactly "the member's earn with an order id": the member's own range
     * answers, without a random read of each transaction's row. */
    return err == JF_OK ? jf_db_int(ctx->db, count, 0,
                                    "SELECT count(*) FROM (SELECT 1 FROM member_state"
                                    " WHERE member_seq = ?1 AND kind = 2 AND key4 % 2 = 1"
                                    " LIMIT ?2)",
                                    "II", seq, max)
                        : err;
}

/* After an order earn: the first purchase of a member who was referred
 * rewards their referral (docs/RULES.md, Referrals); the answer then shows
 * the points after it.  A member who was not referred has nothing to
 * reward, and the purchases are not counted (m->referred, from the row the
 * writer's cache keeps). */
static jf_err earn_first_purchase(jf_ctx *ctx, const jf_member *m)
{
    const char *member_id = m->id;
    int64_t orders = 0, got = 0;
    json_t *pts = NULL;
    if (!m->referred)
        return JF_OK;
    /* Whether this is the only one: two are enough to tell. */
    jf_err err = jf_member_purchases(ctx, member_id, 2, &orders);
    if (err == JF_OK && orders == 1)
        err = jf_referral_reward(ctx, member_id, "first_purchase", &got);
    if (err == JF_OK && got > 0 && (err = jf_member_points_json(ctx, member_id, &pts)) == JF_OK)
        jf_json_set(ctx->out, "points", pts);
    return err;
}

/* Growth of an earn: the body's "growth", else the rules' (with an order),
 * else the purchase points of an order, else none. */
static int64_t earn_growth(const jf_args *a, const jf_award *aw, size_t n, bool ruled,
                           int64_t points)
{
    if (a->has_growth)
        return a->growth;
    if (ruled)
        return jf_awards_growth(aw, n);
    return a->has_order ? points : 0;
}

static jf_err earn_apply(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    jf_member m;
    jf_tx tx;
    int64_t points = a->has_points ? a->points : 0;
    bool ruled = false;
    size_t n = 0;
    /* Checked here, not in validate, so that a replay of an old request is
     * answered from its stored response whatever the time is now. */
    if (a->has_expires_at && a->expires_at <= ctx->now_ms)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'expires_at' must be in the future.");
    /* Room for an order's awards (about 27 KB): an earn of points alone has
     * none. */
    jf_award *aw = a->has_order ? jf_awards_new() : NULL;
    jf_err err = aw || !a->has_order ? jf_member_writable(ctx, ctx->path_id, &m) : JF_ERR_NOMEM;
    if (err == JF_OK && a->has_order)
        err = earn_order_check(ctx);
    if (err == JF_OK && a->has_order && !a->has_points)
        err = earn_order_points(ctx, m.id, aw, &n, &ruled, &points);
    int64_t growth = earn_growth(a, aw, n, ruled, points);
    if (err == JF_OK && a->dry_run)
        err = earn_dry_run_reply(ctx, aw, n, ruled, points, growth);
    if (err == JF_OK && !a->dry_run)
        err = jf_tx_begin(ctx, &tx, "earn", m.id);
    if (err != JF_OK || a->dry_run) {
        free(aw);
        return err;
    }
    jf_tx_describe(&tx, a);
    tx.points = tx.delta = points;
    if (a->has_order) {
        tx.order_id = a->order_id;
        tx.order_currency = a->order_currency;
        tx.order_amount = a->order_currency ? a->order_amount : -1;
    }
    err = earn_credit(ctx, &tx, m.id, aw, n, ruled, points);
    jf_tx_post_growth(&tx, m.id, growth);
    if (err == JF_OK && a->has_order)
        err = jf_order_lines_text(ctx, aw, n, ruled, points, &tx.order_lines);
    free(aw);
    err = jf_tx_complete(ctx, &tx, m.id, err);
    if (err == JF_OK && (growth > 0 || a->has_order))
        err = jf_tier_after_growth(ctx, m.id, &tx);
    return err == JF_OK && a->has_order ? earn_first_purchase(ctx, &m) : err;
}

/* ---- redeem ---- */

static jf_err redeem_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"points", "order",  "channel",  "store_id",
                                         "note",   "reason", "metadata", NULL};
    jf_args *a = ctx->args;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, ctx->body, "points", true, 1, JF_POINTS_MAX, &a->points, NULL);
    if (err == JF_OK && json_object_get(ctx->body, "order"))
        err = jf_order_validate(ctx, json_object_get(ctx->body, "order"), false);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

static jf_err redeem_apply(jf_ctx *ctx)
{
    jf_member m;
    jf_tx tx;
    jf_points before;
    int64_t n = ctx->args->points;
    jf_err err = jf_debit_begin(ctx, "redeem", &m, &tx, &before);
    if (err != JF_OK)
        return err;
    err = jf_lots_consume(ctx, &tx, m.id, n, NULL, NULL);
    jf_tx_post(&tx, "points", m.id, -n);
    jf_tx_post(&tx, "redemption", NULL, n);
    return jf_debit_complete(ctx, &tx, m.id, &before, err);
}

/* ---- adjust ---- */

static jf_err adjust_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"points",  "reason",   "note", "metadata",
                                         "channel", "store_id", NULL};
    jf_args *a = ctx->args;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, ctx->body, "points", true, -JF_POINTS_MAX, JF_POINTS_MAX, &a->points,
                          NULL);
    if (err == JF_OK && a->points == 0)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'points' must not be 0.");
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "reason", true, JF_REASON_LEN_MAX, &a->reason);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

static jf_err adjust_apply(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    int64_t size = a->points < 0 ? -a->points : a->points;
    if (ctx->auth->role == JF_ROLE_OPERATOR && size > ctx->prog.operator_adjust_max)
        return jf_fail(ctx, JF_ERR_ADJUSTMENT_CAP_EXCEEDED,
                       "Operators may adjust at most %lld points at once.",
                       (long long)ctx->prog.operator_adjust_max);
    jf_member m;
    jf_tx tx;
    jf_err err = jf_member_writable(ctx, ctx->path_id, &m);
    if (err == JF_OK && a->points < 0)
        err = jf_require_available(ctx, m.id, size);
    if (err == JF_OK)
        err = jf_tx_begin(ctx, &tx, "adjust", m.id);
    if (err != JF_OK)
        return err;
    jf_tx_describe(&tx, a);
    tx.points = size;
    tx.delta = a->points;
    if (a->points > 0)
        err = jf_lot_create(ctx, &tx, m.id, size, ctx->now_ms,
                            jf_program_expiry_ms(&ctx->prog, ctx->now_ms), NULL);
    else
        err = jf_lots_consume(ctx, &tx, m.id, size, NULL, NULL);
    jf_tx_post(&tx, "points", m.id, a->points);
    jf_tx_post(&tx, "adjustment", NULL, -a->points);
    return jf_tx_complete(ctx, &tx, m.id, err);
}

/* ---- transfer ---- */

static jf_err transfer_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"to_member_id", "points",  "note",     "reason",
                                         "metadata",     "channel", "store_id", NULL};
    jf_args *a = ctx->args;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "to_member_id", true, JF_ID_LEN_MAX, &a->to_member);
    if (err == JF_OK)
        err = jf_json_int(ctx, ctx->body, "points", true, 1, JF_POINTS_MAX, &a->points, NULL);
    if (err == JF_OK && ctx->path_id && strcmp(ctx->path_id, a->to_member) == 0)
        err = jf_fail(ctx, JF_ERR_SAME_MEMBER, "A member cannot transfer to themselves.");
    return err == JF_OK ? jf_args_common(ctx) : err;
}

/* Each piece taken from the sender becomes a recipient lot with its expiry. */
static jf_err transfer_piece(jf_ctx *ctx, const jf_tx *tx, int64_t amount, int64_t expires_at,
                             void *arg)
{
    (void)arg;
    return jf_lot_create(ctx, tx, tx->counterparty_id, amount, ctx->now_ms, expires_at, NULL);
}

static jf_err transfer_apply(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    jf_member from, to;
    jf_tx tx;
    jf_err err = jf_member_writable(ctx, ctx->path_id, &from);
    if (err == JF_OK)
        err = jf_member_writable(ctx, a->to_member, &to);
    jf_points from_before;
    if (err == JF_OK)
        err = require_points(ctx, from.id, a->points, &from_before);
    if (err == JF_OK)
        err = jf_tx_begin(ctx, &tx, "transfer", from.id);
    if (err != JF_OK)
        return err;
    jf_tx_describe(&tx, a);
    tx.counterparty_id = to.id;
    tx.points = a->points;
    tx.delta = -a->points;
    err = jf_lots_consume(ctx, &tx, from.id, a->points, transfer_piece, NULL);
    jf_tx_post(&tx, "points", from.id, -a->points);
    jf_tx_post(&tx, "points", to.id, a->points);
    /* The sender's points after are derived as for any debit; the
     * recipient's new lots may be pending or expire, so they are read. */
    jf_points from_pts, to_pts;
    if (err == JF_OK)
        err = jf_tx_commit(ctx, &tx);
    if (err == JF_OK)
        err = debit_points_after(ctx, &tx, from.id, &from_before, &from_pts);
    if (err == JF_OK)
        err = jf_member_assert_points(ctx, to.id, &to_pts);
    if (err == JF_OK)
        err = points_result_known(ctx, &tx, tx.id, from.id, &from_pts);
    if (err == JF_OK)
        json_object_set_new(ctx->out, "to_points", jf_points_json(&to_pts));
    jf_tx_deinit(&tx);
    return err;
}

const jf_op_impl jf_op_earn = {earn_validate, earn_apply};
const jf_op_impl jf_op_redeem = {redeem_validate, redeem_apply};
const jf_op_impl jf_op_adjust = {adjust_validate, adjust_apply};
const jf_op_impl jf_op_transfer = {transfer_validate, transfer_apply};
