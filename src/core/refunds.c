/*
 * Order refunds (refunds.h states the invariants and the rounding).
 *
 * A refund finds the order's earn, the order's lines with the points each
 * earned (order_lines, written by the earn) and what earlier refunds took,
 * decides this refund's amount per line, and then makes ordinary reverse
 * transactions: a restore of each redeem or capture that paid for the order
 * (the points return) and a clawback of the earn.  Those reference their
 * originals, so I6 and `jifen verify` hold as for any reversal; the refund
 * record (refunds, refund_lines, refund_transactions) links them to the
 * order.  Everything runs on the writer as one command, whose writes a
 * refusal undoes (engine.c, jf_writer_apply): insufficient_points beyond the
 * debt floor leaves no trace.
 */
#include <assert.h>
#include <string.h>

#include "ledger.h"
#include "refunds.h"
#include "rules.h"

/* ---- arithmetic ---- */

bool jf_split_largest_remainder(int64_t total, const int64_t *w, size_t n, int64_t *out)
{
    int64_t rem[JF_ORDER_LINES_MAX], sum_w = 0, given = 0;
    if (n == 0 || n > JF_ORDER_LINES_MAX || total < 0 || total > JF_POINTS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < 0 || w[i] > JF_POINTS_MAX)
            return false;
        sum_w += w[i]; /* at most 500 * 2^53: no overflow */
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = 0;
        rem[i] = -1;
        if (sum_w == 0)
            continue;
        __int128 p = (__int128)total * w[i];
        out[i] = (int64_t)(p / sum_w);
        rem[i] = (int64_t)(p % sum_w);
        given += out[i];
    }
    if (sum_w == 0) {
        out[0] = total;
        return true;
    }
    for (int64_t left = total - given; left > 0; left--) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (rem[i] > rem[best])
                best = i;
        assert(rem[best] > 0);
        out[best]++;
        rem[best] = -1;
    }
    return true;
}

bool jf_refund_clawback_target_ceil(const jf_refund_line *lines, size_t n, int64_t earned,
                                    int64_t *out)
{
    int64_t target = 0;
    bool full = true;
    for (size_t i = 0; i < n; i++) {
        const jf_refund_line *l = &lines[i];
        int64_t part = 0;
        if (l->refunded < 0 || l->refunded > l->amount)
            return false;
        full = full && l->refunded == l->amount;
        if (l->amount == 0)
            continue;
        if (!jf_rate_apply_ceil(l->refunded, l->points, l->amount, &part) ||
            !jf_points_add_checked(target, part, &target))
            return false;
    }
    *out = full ? earned : jf_min_i64(target, earned);
    return true;
}

bool jf_refund_return_target_floor(int64_t paid, int64_t order_amount, int64_t refunded,
                                   int64_t *out)
{
    if (order_amount <= 0 || refunded < 0 || refunded > order_amount)
        return false;
    return jf_rate_apply_floor(refunded, paid, order_amount, out);
}

/* ---- order lines, written by the earn ---- */

/* Adds award `points` of the rule planned by p (NULL: the base rate) split
 * over the n lines. */
static jf_err lines_attribute(jf_ctx *ctx, const jf_rule_plan *p, int64_t points,
                              const jf_order_line *lines, size_t n, int64_t *sum)
{
    int64_t w[JF_ORDER_LINES_MAX], part[JF_ORDER_LINES_MAX];
    jf_rule_line_weights(p, lines, n, w);
    if (!jf_split_largest_remainder(points, w, n, part))
        return jf_fail(ctx, JF_ERR_INTERNAL, "Cannot attribute %lld points to %zu lines.",
                       (long long)points, n);
    for (size_t i = 0; i < n; i++)
        sum[i] += part[i];
    return JF_OK;
}

/* The award's rule (a reference, NULL for the base rate or a tier
 * multiplier, which every line weighs) and its plan. */
static jf_err award_rule_body(jf_ctx *ctx, const jf_award *a, json_t **rule, jf_rule_plan *plan)
{
    *rule = NULL;
    if (strchr(a->rule_id, ':'))
        return JF_OK;
    *rule = jf_rule_body_plan(ctx, a->rule_id, a->rule_version, plan);
    return *rule ? JF_OK : JF_ERR_CORRUPT;
}

/* One line of the stored text: [sku, amount, quantity, points], the sku
 * null when the line has none (schema.c, version 24). */
static void line_text(jf_jtext *b, const jf_order_line *l, int64_t points)
{
    jf_jt_raw(b, "[");
    jf_jt_str(b, l->sku);
    jf_jt_raw(b, ",");
    jf_jt_int(b, l->amount);
    jf_jt_raw(b, ",");
    jf_jt_int(b, l->quantity);
    jf_jt_raw(b, ",");
    jf_jt_int(b, points);
    jf_jt_raw(b, "]");
}

jf_err jf_order_lines_text(jf_ctx *ctx, const jf_award *aw, size_t count, bool ruled,
                           int64_t points, char **text)
{
    const jf_order_line *lines = NULL;
    size_t n = 0;
    int64_t sum[JF_ORDER_LINES_MAX] = {0}, total = 0;
    *text = NULL;
    jf_err err = jf_ctx_order_lines(ctx, &lines, &n);
    if (err != JF_OK || n == 0)
        return err;
    for (size_t k = 0; ruled && k < count && err == JF_OK; k++) {
        json_t *rule = NULL;
        jf_rule_plan plan;
        if (aw[k].points > 0 && (err = award_rule_body(ctx, &aw[k], &rule, &plan)) == JF_OK)
            err = lines_attribute(ctx, rule ? &plan : NULL, aw[k].points, lines, n, sum);
        json_decref(rule);
    }
    if (err == JF_OK && !ruled)
        err = lines_attribute(ctx, NULL, points, lines, n, sum);
    if (err != JF_OK)
        return err;
    jf_jtext b = {0};
    for (size_t i = 0; i < n; i++) {
        jf_jt_raw(&b, i == 0 ? "[" : ",");
        line_text(&b, &lines[i], sum[i]);
        total += sum[i];
    }
    jf_jt_raw(&b, "]");
    assert(total == points);
    *text = jf_jt_take(&b, NULL);
    return *text ? JF_OK : JF_ERR_NOMEM;
}

/* ---- the state of an order ---- */

typedef struct order_state {
    char earn_id[JF_ID_LEN_MAX], member_id[JF_ID_LEN_MAX], currency[4];
    int64_t earned, earn_reversed, amount;
    int64_t refunded, clawed, returned, refund_count;
    bool has_lines;
    size_t n;
    jf_refund_line lines[JF_ORDER_LINES_MAX];
    char skus[JF_ORDER_LINES_MAX][JF_SKU_LEN_MAX + 1];
    int64_t quantity[JF_ORDER_LINES_MAX];
} order_state;

/* One stored line, [sku, amount, quantity, points], into o's line i; false
 * when it is not one. */
static bool line_parse(json_t *l, order_state *o, size_t i)
{
    json_t *sku = json_array_get(l, 0), *v[3];
    for (size_t k = 0; k < 3; k++)
        if (!json_is_integer(v[k] = json_array_get(l, k + 1)))
            return false;
    if (json_array_size(l) != 4 || !(json_is_null(sku) || json_is_string(sku)))
        return false;
    const char *text = json_string_value(sku); /* NULL for null */
    jf_str_copy(o->skus[i], sizeof o->skus[i], text ? text : "");
    o->lines[i].amount = json_integer_value(v[0]);
    o->quantity[i] = json_integer_value(v[1]);
    o->lines[i].points = json_integer_value(v[2]);
    return o->lines[i].amount >= 0 && o->quantity[i] >= 1 && o->lines[i].points >= 0;
}

/* The lines an earn's row keeps since schema version 24 (jf_order_lines_text)
 * into o. */
static jf_err order_lines_parse(jf_ctx *ctx, const char *text, order_state *o)
{
    json_t *arr = jf_json_loads_whole(text, 0), *l;
    size_t i;
    bool ok = json_is_array(arr) && json_array_size(arr) >= 1 &&
              json_array_size(arr) <= JF_ORDER_LINES_MAX;
    json_array_foreach(arr, i, l)
    {
        if (ok)
            ok = line_parse(l, o, i);
    }
    o->n = ok ? json_array_size(arr) : 0;
    o->has_lines = ok;
    json_decref(arr);
    return ok ? JF_OK
              : jf_fail(ctx, JF_ERR_CORRUPT, "The lines of order '%s' cannot be read.",
                        ctx->path_id);
}

static jf_err order_earn_load(jf_ctx *ctx, const char *order_id, order_state *o)
{
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT id, member_id, points, CASE WHEN order_currency IS NULL THEN 0 ELSE order_amount"
        " END, COALESCE(order_currency, ''), (SELECT COALESCE(SUM(r.points), 0) FROM"
        " transactions r INDEXED BY tx_reverses WHERE r.tenant_id = t.tenant_id AND r.reverses"
        " = t.id), order_lines FROM transactions t INDEXED BY tx_order WHERE tenant_id=? AND"
        " order_id=? AND type='earn'",
        "Is", ctx->auth->tenant, order_id);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No earned order '%s'.", order_id);
    if (jf_db_step(st) == SQLITE_ROW) {
        jf_str_copy(o->earn_id, sizeof o->earn_id, jf_db_text(st, 0));
        jf_str_copy(o->member_id, sizeof o->member_id, jf_db_text(st, 1));
        o->earned = sqlite3_column_int64(st, 2);
        o->amount = sqlite3_column_int64(st, 3);
        jf_str_copy(o->currency, sizeof o->currency, jf_db_text(st, 4));
        o->earn_reversed = sqlite3_column_int64(st, 5);
        err = sqlite3_column_type(st, 6) == SQLITE_NULL
                  ? JF_OK
                  : order_lines_parse(ctx, jf_db_text(st, 6), o);
    }
    sqlite3_reset(st);
    return err;
}

/* The order's lines, from the earn's row (read by order_earn_load) or, for
 * an order earned before schema version 24, from order_lines; an order
 * earned without lines is one line. */
static jf_err order_lines_load(jf_ctx *ctx, const char *order_id, order_state *o)
{
    if (o->has_lines)
        return JF_OK;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT n, sku, amount, quantity, points FROM order_lines"
                                   " WHERE tenant_id=? AND order_id=? ORDER BY n",
                                   "Is", ctx->auth->tenant, order_id);
    if (st == NULL)
        return JF_ERR_IO;
    o->n = 0;
    while (o->n < JF_ORDER_LINES_MAX && jf_db_step(st) == SQLITE_ROW) {
        size_t i = o->n++;
        assert(sqlite3_column_int64(st, 0) == (int64_t)i);
        jf_str_copy(o->skus[i], sizeof o->skus[i], jf_db_text(st, 1) ? jf_db_text(st, 1) : "");
        o->lines[i].amount = sqlite3_column_int64(st, 2);
        o->quantity[i] = sqlite3_column_int64(st, 3);
        o->lines[i].points = sqlite3_column_int64(st, 4);
    }
    sqlite3_reset(st);
    o->has_lines = o->n > 0;
    if (!o->has_lines) {
        o->n = 1;
        o->skus[0][0] = '\0';
        o->lines[0].amount = o->amount;
        o->lines[0].points = o->earned;
        o->quantity[0] = 1;
    }
    return JF_OK;
}

/* What earlier refunds of the order took, per line and in total. */
static jf_err order_refunds_load(jf_ctx *ctx, const char *order_id, order_state *o)
{
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT line_n, SUM(amount) FROM refund_lines WHERE"
                                   " tenant_id=? AND order_id=? GROUP BY line_n",
                                   "Is", ctx->auth->tenant, order_id);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_OK;
    while (jf_db_step(st) == SQLITE_ROW) {
        int64_t i = sqlite3_column_int64(st, 0);
        if (i < 0 || (size_t)i >= o->n)
            err = JF_ERR_CORRUPT;
        else
            o->lines[i].refunded = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    /* INDEXED BY: the planner takes the primary key's tenant_id over
     * refunds_order, and reads every refund of the tenant. */
    st = jf_db_query(ctx->db,
                     "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(clawback_points), 0),"
                     " COALESCE(SUM(returned_points), 0), count(*) FROM refunds INDEXED BY"
                     " refunds_order WHERE tenant_id=? AND order_id=?",
                     "Is", ctx->auth->tenant, order_id);
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) == SQLITE_ROW) {
        o->refunded = sqlite3_column_int64(st, 0);
        o->clawed = sqlite3_column_int64(st, 1);
        o->returned = sqlite3_column_int64(st, 2);
        o->refund_count = sqlite3_column_int64(st, 3);
    }
    sqlite3_reset(st);
    return err;
}

static jf_err order_load(jf_ctx *ctx, const char *order_id, order_state *o)
{
    jf_err err = order_earn_load(ctx, order_id, o);
    if (err == JF_OK)
        err = order_lines_load(ctx, order_id, o);
    if (err == JF_OK)
        err = order_refunds_load(ctx, order_id, o);
    int64_t sum = 0;
    for (size_t i = 0; err == JF_OK && i < o->n; i++)
        sum += o->lines[i].refunded;
    if (err == JF_OK && (sum != o->refunded || o->refunded > o->amount))
        err = jf_fail(ctx, JF_ERR_CORRUPT, "Refunds of order '%s' do not add up.", order_id);
    return err;
}

/* The transactions that paid for the order with points: its redeems and the
 * captures of holds made for it, oldest first.  Calls fn for each with its
 * points and what is still reversible of it. */
typedef jf_err (*paid_fn)(jf_ctx *ctx, const char *tx_id, int64_t points, int64_t left, void *arg);

static jf_err order_paid_each(jf_ctx *ctx, const char *order_id, paid_fn fn, void *arg)
{
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT p.id, p.points, (SELECT COALESCE(SUM(r.points), 0) FROM transactions r INDEXED"
        " BY tx_reverses WHERE r.tenant_id = ?1 AND r.reverses = p.id) FROM (SELECT t.seq,"
        " t.id, t.points FROM transactions t INDEXED BY tx_order WHERE t.tenant_id = ?1"
        " AND t.type = 'redeem' AND t.order_id = ?2 UNION ALL SELECT c.seq, c.id, c.points"
        " FROM transactions h INDEXED BY tx_order JOIN transactions c INDEXED BY"
        " tx_hold_capture ON c.tenant_id = ?1 AND c.type = 'capture' AND c.hold_id = h.id"
        " WHERE h.tenant_id = ?1 AND h.type = 'hold' AND h.order_id = ?2) p ORDER BY p.seq",
        "Is", ctx->auth->tenant, order_id);
    if (st == NULL)
        return JF_ERR_IO;
    /* Collected first: fn writes, which must not interleave with this read. */
    char(*ids)[JF_ID_LEN_MAX] = calloc(JF_ORDER_LINES_MAX, sizeof *ids);
    int64_t pts[JF_ORDER_LINES_MAX], left[JF_ORDER_LINES_MAX];
    size_t n = 0;
    while (ids && n < JF_ORDER_LINES_MAX && jf_db_step(st) == SQLITE_ROW) {
        jf_str_copy(ids[n], JF_ID_LEN_MAX, jf_db_text(st, 0));
        pts[n] = sqlite3_column_int64(st, 1);
        left[n] = pts[n] - sqlite3_column_int64(st, 2);
        n++;
    }
    sqlite3_reset(st);
    jf_err err = ids ? JF_OK : JF_ERR_NOMEM;
    for (size_t i = 0; i < n && err == JF_OK; i++)
        err = fn(ctx, ids[i], pts[i], left[i], arg);
    free(ids);
    return err;
}

static jf_err paid_sum(jf_ctx *ctx, const char *tx_id, int64_t points, int64_t left, void *arg)
{
    (void)ctx;
    (void)tx_id;
    int64_t *sums = arg;
    sums[0] += points;
    sums[1] += left;
    return JF_OK;
}

/* ---- POST /v1/orders/{order_id}/refund ---- */

static jf_err refund_line_validate(jf_ctx *ctx, json_t *l, int64_t *sum)
{
    static const char *const fields[] = {"sku", "amount", "quantity", NULL};
    const char *sku = NULL;
    int64_t amount = 0, q = 0;
    if (!json_is_object(l))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "Each of 'lines' must be an object.");
    jf_err err = jf_json_allow(ctx, l, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, l, "sku", true, JF_SKU_LEN_MAX, &sku);
    if (err == JF_OK)
        err = jf_json_int(ctx, l, "amount", true, 1, JF_MONEY_MAX, &amount, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, l, "quantity", false, 1, JF_MONEY_MAX, &q, NULL);
    if (err == JF_OK && !jf_points_add_checked(*sum, amount, sum))
        err = jf_fail(ctx, JF_ERR_AMOUNT_OUT_OF_RANGE, "'lines' amounts overflow.");
    return err;
}

static jf_err refund_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"amount", "lines", "reason", "note", NULL};
    json_t *b = ctx->body, *lines = json_object_get(b, "lines"), *l;
    jf_args *a = ctx->args;
    size_t i;
    jf_err err = jf_json_allow(ctx, b, fields);
    bool has_amount = json_object_get(b, "amount") != NULL;
    if (err == JF_OK && has_amount == (lines != NULL))
        err = jf_fail(ctx, JF_ERR_MISSING_FIELD, "Give exactly one of 'amount' and 'lines'.");
    if (err == JF_OK && has_amount)
        err = jf_json_int(ctx, b, "amount", true, 1, JF_MONEY_MAX, &a->order_amount, NULL);
    if (err == JF_OK && lines &&
        (!json_is_array(lines) || json_array_size(lines) < 1 ||
         json_array_size(lines) > JF_ORDER_LINES_MAX))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'lines' must be an array of 1 to %d lines.",
                      JF_ORDER_LINES_MAX);
    a->order_amount = lines ? 0 : a->order_amount;
    json_array_foreach(lines, i, l)
    {
        if (err == JF_OK)
            err = refund_line_validate(ctx, l, &a->order_amount);
    }
    if (err == JF_OK && a->order_amount > JF_MONEY_MAX)
        err = jf_fail(ctx, JF_ERR_AMOUNT_OUT_OF_RANGE, "The refund's amount is out of range.");
    a->order_id = ctx->path_id;
    if (err == JF_OK && (a->order_id == NULL || strlen(a->order_id) > JF_ORDER_ID_LEN_MAX))
        err = jf_fail(ctx, JF_ERR_INVALID_REQUEST, "The order id is 1 to %d characters.",
                      JF_ORDER_ID_LEN_MAX);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

/* Spreads an amount refund over the lines, in proportion to what each has
 * left to refund (largest remainder), so no line goes above its amount. */
static jf_err plan_amount(jf_ctx *ctx, const order_state *o, int64_t amount, int64_t *cur)
{
    int64_t left[JF_ORDER_LINES_MAX], sum = 0;
    for (size_t i = 0; i < o->n; i++) {
        left[i] = o->lines[i].amount - o->lines[i].refunded;
        sum += left[i];
    }
    if (amount > sum)
        return jf_fail(ctx, JF_ERR_REFUND_EXCEEDS_ORDER,
                       "Order '%s' has %lld of %lld left to refund.", ctx->path_id, (long long)sum,
                       (long long)o->amount);
    if (!jf_split_largest_remainder(amount, left, o->n, cur))
        return jf_fail(ctx, JF_ERR_INTERNAL, "Cannot spread the refund over the lines.");
    for (size_t i = 0; i < o->n; i++)
        assert(cur[i] >= 0 && cur[i] <= left[i]);
    return JF_OK;
}

/* Refunds each requested line from the order's lines with that SKU, in
 * line order; *first_line[k] is where request line k started (quantities). */
static jf_err plan_lines(jf_ctx *ctx, const order_state *o, json_t *lines, int64_t *cur)
{
    json_t *l;
    size_t k;
    if (!o->has_lines)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "Order '%s' was earned without lines; refund an 'amount'.", ctx->path_id);
    json_array_foreach(lines, k, l)
    {
        const char *sku = json_string_value(json_object_get(l, "sku"));
        int64_t want = json_integer_value(json_object_get(l, "amount")), had = want;
        for (size_t i = 0; i < o->n && want > 0; i++) {
            if (strcmp(o->skus[i], sku) != 0)
                continue;
            int64_t take = jf_min_i64(want, o->lines[i].amount - o->lines[i].refunded - cur[i]);
            cur[i] += take;
            want -= take;
        }
        if (want > 0)
            return jf_fail(ctx, JF_ERR_REFUND_EXCEEDS_ORDER,
                           "Order '%s' has %lld of SKU '%s' left to refund, not %lld.",
                           ctx->path_id, (long long)(had - want), sku, (long long)had);
    }
    return JF_OK;
}

/* What this refund claws back and returns, from the cumulative targets. */
static jf_err plan_points(jf_ctx *ctx, order_state *o, const int64_t *cur, int64_t total,
                          int64_t *claw, int64_t *ret)
{
    int64_t target = 0, paid[2] = {0, 0};
    for (size_t i = 0; i < o->n; i++)
        o->lines[i].refunded += cur[i];
    o->refunded += total;
    if (!jf_refund_clawback_target_ceil(o->lines, o->n, o->earned, &target))
        return jf_fail(ctx, JF_ERR_INTERNAL, "Clawback target out of range.");
    assert(target >= o->clawed && target <= o->earned);
    *claw = jf_min_i64(target - o->clawed, o->earned - o->earn_reversed);
    *claw = *claw < 0 ? 0 : *claw;
    jf_err err = order_paid_each(ctx, ctx->path_id, paid_sum, paid);
    if (err != JF_OK)
        return err;
    if (!jf_refund_return_target_floor(paid[0], o->amount, o->refunded, &target))
        return jf_fail(ctx, JF_ERR_INTERNAL, "Return target out of range.");
    *ret = jf_min_i64(target - o->returned, paid[1]);
    *ret = *ret < 0 ? 0 : *ret;
    return JF_OK;
}

/* The writes of one refund in progress. */
typedef struct refund_run {
    char id[JF_ID_LEN_MAX], first_tx[JF_ID_LEN_MAX], member_id[JF_ID_LEN_MAX];
    char *metadata;
    int64_t to_return;
} refund_run;

/* Reverses n of tx_id for refund r; the first transaction carries the key. */
static jf_err refund_reverse(jf_ctx *ctx, refund_run *r, const char *tx_id, int64_t n,
                             const char *kind)
{
    char new_id[JF_ID_LEN_MAX], member[JF_ID_LEN_MAX];
    jf_reverse_opts opts = {.idem_key = r->first_tx[0] ? NULL : ctx->idem_key,
                            .order_id = ctx->path_id,
                            .metadata = r->metadata};
    jf_err err = jf_reverse_points(ctx, tx_id, n, &opts, new_id, member);
    if (err == JF_OK && !r->first_tx[0])
        jf_str_copy(r->first_tx, sizeof r->first_tx, new_id);
    if (err == JF_OK && !r->member_id[0])
        jf_str_copy(r->member_id, sizeof r->member_id, member);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "INSERT INTO refund_transactions(tenant_id, refund_id, tx_id, kind,"
                        " points) VALUES(?,?,?,?,?)",
                        "IsssI", ctx->auth->tenant, r->id, new_id, kind, n);
    return err;
}

static jf_err paid_return(jf_ctx *ctx, const char *tx_id, int64_t points, int64_t left, void *arg)
{
    (void)points;
    refund_run *r = arg;
    int64_t n = jf_min_i64(left, r->to_return);
    if (n <= 0)
        return JF_OK;
    r->to_return -= n;
    return refund_reverse(ctx, r, tx_id, n, "return");
}

static jf_err refund_rows(jf_ctx *ctx, const order_state *o, const refund_run *r,
                          const int64_t *cur, int64_t total, int64_t claw, int64_t ret)
{
    jf_err err = jf_db_run(ctx->db,
                           "INSERT INTO refunds(tenant_id, id, order_id, member_id, amount,"
                           " clawback_points, returned_points, reason, actor, created_at)"
                           " VALUES(?,?,?,?,?,?,?,?,?,?)",
                           "IsssIIIssI", ctx->auth->tenant, r->id, ctx->path_id, o->member_id,
                           total, claw, ret, ctx->args->reason, ctx->auth->actor, ctx->now_ms);
    json_t *lines = json_object_get(ctx->body, "lines");
    for (size_t i = 0; i < o->n && err == JF_OK; i++) {
        int64_t q = -1;
        json_t *l;
        size_t k;
        json_array_foreach(lines, k, l)
        {
            json_t *qv = json_object_get(l, "quantity");
            if (qv && strcmp(json_string_value(json_object_get(l, "sku")), o->skus[i]) == 0)
                q = json_integer_value(qv);
        }
        if (cur[i] > 0)
            err =
                jf_db_run(ctx->db,
                          "INSERT INTO refund_lines(tenant_id, refund_id, order_id, line_n,"
                          " amount, quantity) VALUES(?,?,?,?,?,NULLIF(?,-1))",
                          "IssIII", ctx->auth->tenant, r->id, ctx->path_id, (int64_t)i, cur[i], q);
    }
    return err;
}

static json_t *refund_row_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(jf_db_text(st, 0)));
    jf_json_set(o, "order_id", json_string(jf_db_text(st, 1)));
    jf_json_set(o, "member_id", json_string(jf_db_text(st, 2)));
    jf_json_set(o, "amount", json_integer(sqlite3_column_int64(st, 3)));
    jf_json_set(o, "clawback_points", json_integer(sqlite3_column_int64(st, 4)));
    jf_json_set(o, "returned_points", json_integer(sqlite3_column_int64(st, 5)));
    jf_json_set(o, "reason", jf_json_text(jf_db_text(st, 6)));
    jf_json_set(o, "actor", json_string(jf_db_text(st, 7)));
    jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 8)));
    return o;
}

/* Adds the refund's lines and transactions to its representation. */
static jf_err refund_details(jf_ctx *ctx, const char *id, json_t *o)
{
    json_t *lines = json_array(), *txs = json_array();
    /* A line's sku: in the earn's row since schema version 24, in
     * order_lines before. */
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT r.line_n, COALESCE(l.sku, (SELECT json_extract(t.order_lines, '$[' || r.line_n"
        " || '][0]') FROM transactions t INDEXED BY tx_order WHERE t.tenant_id = r.tenant_id"
        " AND t.order_id = r.order_id AND t.type = 'earn')), r.amount, r.quantity FROM"
        " refund_lines r LEFT JOIN order_lines l ON l.tenant_id = r.tenant_id AND l.order_id ="
        " r.order_id AND l.n = r.line_n WHERE r.tenant_id=? AND r.refund_id=? ORDER BY r.line_n",
        "Is", ctx->auth->tenant, id);
    while (st && jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(lines, json_pack("{sIsosIso}", "line",
                                               (json_int_t)sqlite3_column_int64(st, 0), "sku",
                                               jf_json_text(jf_db_text(st, 1)), "amount",
                                               (json_int_t)sqlite3_column_int64(st, 2), "quantity",
                                               sqlite3_column_type(st, 3) == SQLITE_NULL
                                                   ? json_null()
                                                   : json_integer(sqlite3_column_int64(st, 3))));
    if (st)
        sqlite3_reset(st);
    sqlite3_stmt *st2 = jf_db_query(ctx->db,
                                    "SELECT tx_id, kind, points FROM refund_transactions WHERE"
                                    " tenant_id=? AND refund_id=? ORDER BY kind DESC, tx_id",
                                    "Is", ctx->auth->tenant, id);
    while (st2 && jf_db_step(st2) == SQLITE_ROW)
        json_array_append_new(txs, json_pack("{sssssI}", "id", jf_db_text(st2, 0), "kind",
                                             jf_db_text(st2, 1), "points",
                                             (json_int_t)sqlite3_column_int64(st2, 2)));
    if (st2)
        sqlite3_reset(st2);
    json_object_set_new(o, "lines", lines);
    json_object_set_new(o, "transactions", txs);
    return st && st2 ? JF_OK : JF_ERR_IO;
}

#define REFUND_COLUMNS                                                                             \
    "SELECT id, order_id, member_id, amount, clawback_points, returned_points, reason, actor,"     \
    " created_at FROM refunds"

/* The refunds of an order (id NULL) or one refund (order_id NULL), oldest
 * first.  Two statements, not one with optional terms: "?2 IS NULL OR
 * order_id = ?2" kept the planner off both indexes, and each refund read
 * every refund of its tenant, in the writer (tests/api/test_query_plans.py). */
static jf_err refunds_json(jf_ctx *ctx, const char *order_id, const char *id, json_t **out)
{
    sqlite3_stmt *st = id ? jf_db_query(ctx->db, REFUND_COLUMNS " WHERE tenant_id=?1 AND id=?2",
                                        "Is", ctx->auth->tenant, id)
                          : jf_db_query(ctx->db,
                                        REFUND_COLUMNS " WHERE tenant_id=?1 AND order_id=?2"
                                                       " ORDER BY created_at, id",
                                        "Is", ctx->auth->tenant, order_id ? order_id : "");
    if (st == NULL)
        return JF_ERR_IO;
    json_t *arr = json_array();
    while (jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(arr, refund_row_json(st));
    sqlite3_reset(st);
    json_t *v;
    size_t i;
    jf_err err = JF_OK;
    json_array_foreach(arr, i, v)
    {
        if (err == JF_OK)
            err = refund_details(ctx, json_string_value(json_object_get(v, "id")), v);
    }
    *out = arr;
    return err;
}

/* Makes the reversals and the record of a planned refund, and answers. */
static jf_err refund_write(jf_ctx *ctx, order_state *o, const int64_t *cur, int64_t total,
                           int64_t claw, int64_t ret)
{
    refund_run r = {.to_return = ret};
    jf_id_new_ordered("ref_", ctx->now_ms, r.id);
    json_t *meta = json_pack("{ssss}", "refund_id", r.id, "order_id", ctx->path_id);
    r.metadata = meta ? jf_json_dump(meta, NULL) : NULL;
    json_decref(meta);
    jf_err err = r.metadata ? JF_OK : JF_ERR_NOMEM;
    if (err == JF_OK && ret > 0)
        err = order_paid_each(ctx, ctx->path_id, paid_return, &r);
    if (err == JF_OK && r.to_return != 0)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "The return of order '%s' fell short.", ctx->path_id);
    if (err == JF_OK && claw > 0)
        err = refund_reverse(ctx, &r, o->earn_id, claw, "clawback");
    if (err == JF_OK)
        err = refund_rows(ctx, o, &r, cur, total, claw, ret);
    free(r.metadata);
    json_t *refunds = NULL, *tx = NULL, *pts = NULL;
    if (err == JF_OK)
        err = refunds_json(ctx, NULL, r.id, &refunds);
    if (err == JF_OK && json_array_size(refunds) != 1)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Refund '%s' was not stored.", r.id);
    if (err == JF_OK && r.first_tx[0])
        err = jf_tx_json(ctx, r.first_tx, false, &tx);
    if (err == JF_OK)
        err = jf_member_points_json(ctx, o->member_id, &pts);
    if (err == JF_OK) {
        jf_json_set(ctx->out, "refund", json_incref(json_array_get(refunds, 0)));
        jf_json_set(ctx->out, "transaction", tx);
        jf_json_set(ctx->out, "points", pts);
        ctx->created = true;
    } else {
        json_decref(tx);
        json_decref(pts);
    }
    json_decref(refunds);
    return err;
}

static jf_err refund_apply(jf_ctx *ctx)
{
    order_state *o = calloc(1, sizeof *o);
    int64_t *cur = calloc(JF_ORDER_LINES_MAX, sizeof *cur), claw = 0, ret = 0;
    int64_t total = ctx->args->order_amount;
    json_t *lines = json_object_get(ctx->body, "lines");
    jf_err err = o && cur ? order_load(ctx, ctx->path_id, o) : JF_ERR_NOMEM;
    if (err == JF_OK && o->currency[0] == '\0')
        err = jf_fail(ctx, JF_ERR_REFUND_EXCEEDS_ORDER,
                      "Order '%s' earned without an amount; there is nothing to refund.",
                      ctx->path_id);
    if (err == JF_OK)
        err = lines ? plan_lines(ctx, o, lines, cur) : plan_amount(ctx, o, total, cur);
    if (err == JF_OK)
        err = plan_points(ctx, o, cur, total, &claw, &ret);
    if (err == JF_OK)
        assert(o->refunded <= o->amount && o->clawed + claw <= o->earned);
    if (err == JF_OK)
        err = refund_write(ctx, o, cur, total, claw, ret);
    free(cur);
    free(o);
    return err;
}

/* ---- GET /v1/orders/{order_id} ---- */

static json_t *order_lines_json(const order_state *o)
{
    json_t *arr = json_array();
    for (size_t i = 0; o->has_lines && i < o->n; i++)
        json_array_append_new(arr, json_pack("{sIsssIsIsIsI}", "line", (json_int_t)i, "sku",
                                             o->skus[i], "amount", (json_int_t)o->lines[i].amount,
                                             "quantity", (json_int_t)o->quantity[i], "points",
                                             (json_int_t)o->lines[i].points, "refunded_amount",
                                             (json_int_t)o->lines[i].refunded));
    return arr;
}

static jf_err order_get(jf_ctx *ctx)
{
    order_state *o = calloc(1, sizeof *o);
    int64_t paid[2] = {0, 0};
    json_t *refunds = NULL;
    jf_err err = o ? order_load(ctx, ctx->path_id, o) : JF_ERR_NOMEM;
    if (err == JF_OK)
        err = order_paid_each(ctx, ctx->path_id, paid_sum, paid);
    if (err == JF_OK)
        err = refunds_json(ctx, ctx->path_id, NULL, &refunds);
    if (err == JF_OK) {
        json_t *out = ctx->out;
        jf_json_set(out, "order_id", json_string(ctx->path_id));
        jf_json_set(out, "member_id", json_string(o->member_id));
        jf_json_set(out, "earn_transaction_id", json_string(o->earn_id));
        jf_json_set(out, "amount", json_integer(o->amount));
        jf_json_set(out, "currency", jf_json_text(o->currency[0] ? o->currency : NULL));
        jf_json_set(out, "earned_points", json_integer(o->earned));
        jf_json_set(out, "points_paid", json_integer(paid[0]));
        jf_json_set(out, "refunded_amount", json_integer(o->refunded));
        jf_json_set(out, "clawback_points", json_integer(o->clawed));
        jf_json_set(out, "returned_points", json_integer(o->returned));
        jf_json_set(out, "lines", order_lines_json(o));
        jf_json_set(out, "refunds", refunds);
        refunds = NULL;
    }
    json_decref(refunds);
    free(o);
    return err;
}

const jf_op_impl jf_op_order_refund = {refund_validate, refund_apply};
const jf_op_impl jf_op_order_get = {NULL, order_get};
