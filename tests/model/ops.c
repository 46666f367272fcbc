/*
 * The random operations of the model test.
 *
 * Each operation picks its arguments from the seeded generator (sometimes
 * deliberately wrong: more points than available, an over-capture, a
 * reversal of too much or of a type that cannot be reversed), asks the
 * oracle what must happen, sends the same request to the engine and compares
 * the error code and, on success, the reply: the transaction's type and
 * points and the member's points.  Amounts stay small so that balances run
 * dry, debt appears and insufficient_points is common.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define BODY_MAX 768

static int pick_active(model *md)
{
    return md->active[mt_rng_range(&md->rng, 0, md->nactive - 1)];
}

static int pick_other(model *md, int m)
{
    int other = pick_active(md);
    while (other == m)
        other = pick_active(md);
    return other;
}

static int64_t available_of(model *md, int m)
{
    o_view v;
    o_view_get(&md->o, m, &v);
    return v.available;
}

/* A debit amount: mostly within what is available (often small), sometimes
 * beyond it so that the engine must refuse. */
static int64_t debit_amount(model *md, int64_t avail)
{
    mt_rng *r = &md->rng;
    if (avail <= 0 || mt_rng_chance(r, 15))
        return mt_rng_range(r, avail + 1, avail + 60);
    if (mt_rng_chance(r, 10))
        return avail;
    return mt_rng_range(r, 1, avail < 120 ? avail : 120);
}

static const char *member_id(model *md, int m)
{
    return md->o.members[m].id;
}

int mt_member_create(model *md)
{
    char body[BODY_MAX];
    jf_result res;
    snprintf(body, sizeof body, "{\"external_id\":\"ext-%llx-%d\"}", (unsigned long long)md->seed,
             md->o.nmembers);
    mt_desc(md, "MEMBER_CREATE body=%s", body);
    jf_err err = mt_write(md, JF_OP_MEMBER_CREATE, NULL, body, md->o.nmembers, -1, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    const char *id = mt_str(md, root, "id");
    if (id == NULL || strlen(id) >= MT_ID_LEN)
        mt_fail(md, "member create returned no usable id");
    int m = o_member_add(&md->o, id);
    mt_expect_points_obj(md, root, "points", m);
    json_decref(root);
    jf_result_deinit(&res);
    return m;
}

/* Formats an expires_at override in one of the accepted input forms: with
 * milliseconds and Z, whole seconds and Z (the instant is rounded down to
 * the second first), or with a +08:00 offset.  Returns the instant. */
static int64_t time_value(model *md, int64_t t, char *buf, size_t len)
{
    int form = (int)mt_rng_range(&md->rng, 0, 9);
    if (form < 6) {
        mt_time_format(t, buf, len);
    } else if (form < 8) {
        t -= t % 1000;
        mt_time_format_offset(t, 0, false, buf, len);
    } else {
        mt_time_format_offset(t, 480, true, buf, len);
    }
    return t;
}

/* Builds the optional earn fields; returns the overrides through pd and exp
 * (-1 when absent).  An expires_at override always falls after the lot
 * becomes available: a lot both pending and due is not specified. */
static void earn_extras(model *md, char *buf, size_t len, int64_t *pd, int64_t *exp)
{
    mt_rng *r = &md->rng;
    char when[48];
    size_t n = 0;
    *pd = -1;
    *exp = -1;
    buf[0] = '\0';
    if (mt_rng_chance(r, 20)) {
        *pd = mt_rng_range(r, 0, 4);
        n += (size_t)snprintf(buf + n, len - n, ",\"pending_days\":%lld", (long long)*pd);
    }
    if (mt_rng_chance(r, 15)) {
        int64_t pdays = *pd >= 0 ? *pd : md->o.pending_days;
        int64_t t = md->o.now + pdays * MT_DAY_MS + mt_rng_range(r, 3600000, 60 * MT_DAY_MS);
        *exp = time_value(md, t, when, sizeof when);
        snprintf(buf + n, len - n, ",\"expires_at\":\"%s\"", when);
    }
}

/* Earns for an order id that already earned: 409 and nothing changes. */
static void earn_order_again(model *md, int m)
{
    char body[BODY_MAX];
    jf_result res;
    const char *order = md->orders[mt_rng_range(&md->rng, 0, md->norders - 1)];
    snprintf(body, sizeof body, "{\"order\":{\"id\":\"%s\",\"amount\":500,\"currency\":\"CNY\"}}",
             order);
    mt_desc(md, "EARN (order again) m%d body=%s", m, body);
    jf_err err = mt_write(md, JF_OP_EARN, member_id(md, m), body, m, -1, &res);
    mt_expect_err(md, JF_ERR_ORDER_ALREADY_EARNED, err, &res);
    jf_result_deinit(&res);
}

static void op_earn(model *md)
{
    mt_rng *r = &md->rng;
    char body[BODY_MAX], extras[256], order[64] = "";
    int64_t points, pd, exp;
    int m = pick_active(md), t = -1;
    if (md->norders > 0 && mt_rng_chance(r, 2)) {
        earn_order_again(md, m);
        return;
    }
    earn_extras(md, extras, sizeof extras, &pd, &exp);
    if (mt_rng_chance(r, 25)) {
        int64_t amount = mt_rng_chance(r, 8) ? mt_rng_range(r, 0, 99) : mt_rng_range(r, 100, 40000);
        points = amount / 100; /* earn_rate 1 per 100, floor */
        snprintf(order, sizeof order, "ord-%llx-%ld", (unsigned long long)md->seed,
                 ++md->order_counter);
        snprintf(body, sizeof body,
                 "{\"order\":{\"id\":\"%s\",\"amount\":%lld,\"currency\":\"CNY\"}%s}", order,
                 (long long)amount, extras);
    } else {
        points = mt_rng_range(r, 1, 300);
        snprintf(body, sizeof body, "{\"points\":%lld%s}", (long long)points, extras);
    }
    mt_desc(md, "EARN m%d %s body=%s", m, member_id(md, m), body);
    jf_err want = o_earn(&md->o, m, points, pd, exp, &t);
    jf_result res;
    jf_err err = mt_write(md, JF_OP_EARN, member_id(md, m), body, m, -1, &res);
    mt_expect_err(md, want, err, &res);
    if (order[0] != '\0' && want == JF_OK && t >= 0)
        md->o.txns[t].growth = points; /* an order's growth is its purchase points */
    if (order[0] != '\0')
        MT_PUSH(md->orders, md->norders, md->cap_orders, mt_xstrdup(order));
    json_t *root = mt_json(md, &res);
    mt_expect_points_result(md, root, t, "earn", points, m);
    json_decref(root);
    jf_result_deinit(&res);
}

/* Sends a write and checks the outcome; on success the points-result. */
static void simple_write(model *md, jf_op op, int m, const char *body, jf_err want, int t,
                         const char *type)
{
    jf_result res;
    jf_err err = mt_write(md, op, member_id(md, m), body, m, -1, &res);
    mt_expect_err(md, want, err, &res);
    if (err == JF_OK) {
        json_t *root = mt_json(md, &res);
        mt_expect_points_result(md, root, t, type, md->o.txns[t].points, m);
        json_decref(root);
    }
    jf_result_deinit(&res);
}

static void op_redeem(model *md)
{
    char body[BODY_MAX];
    int m = pick_active(md), t = -1;
    int64_t n = debit_amount(md, available_of(md, m));
    snprintf(body, sizeof body, "{\"points\":%lld}", (long long)n);
    mt_desc(md, "REDEEM m%d %s body=%s", m, member_id(md, m), body);
    jf_err want = o_redeem(&md->o, m, n, &t);
    simple_write(md, JF_OP_REDEEM, m, body, want, t, "redeem");
}

static void op_adjust(model *md)
{
    char body[BODY_MAX];
    int m = pick_active(md), t = -1;
    int64_t n = mt_rng_chance(&md->rng, 60) ? mt_rng_range(&md->rng, 1, 200)
                                            : -debit_amount(md, available_of(md, m));
    snprintf(body, sizeof body, "{\"points\":%lld,\"reason\":\"model test\"}", (long long)n);
    mt_desc(md, "ADJUST m%d %s body=%s", m, member_id(md, m), body);
    jf_err want = o_adjust(&md->o, m, n, &t);
    simple_write(md, JF_OP_ADJUST, m, body, want, t, "adjust");
}

static void op_transfer(model *md)
{
    char body[BODY_MAX];
    jf_result res;
    int from = pick_active(md), t = -1;
    int64_t avail = available_of(md, from);
    bool same = avail > 0 && mt_rng_chance(&md->rng, 5);
    int to = same ? from : pick_other(md, from);
    /* A transfer to oneself stays within what is available so that only
     * same_member applies. */
    int64_t n = same ? mt_rng_range(&md->rng, 1, avail) : debit_amount(md, avail);
    snprintf(body, sizeof body, "{\"to_member_id\":\"%s\",\"points\":%lld}", member_id(md, to),
             (long long)n);
    mt_desc(md, "TRANSFER m%d -> m%d %s body=%s", from, to, member_id(md, from), body);
    jf_err want = o_transfer(&md->o, from, to, n, &t);
    jf_err err = mt_write(md, JF_OP_TRANSFER, member_id(md, from), body, from, to, &res);
    mt_expect_err(md, want, err, &res);
    if (err == JF_OK) {
        json_t *root = mt_json(md, &res);
        mt_expect_points_result(md, root, t, "transfer", n, from);
        mt_expect_points_obj(md, root, "to_points", to);
        json_decref(root);
    }
    jf_result_deinit(&res);
}

/* Checks the "hold" object of a hold, capture or void reply. */
static void expect_hold(model *md, json_t *root, int h)
{
    static const char *states[] = {"open", "captured", "voided"};
    const o_txn *ht = &md->o.txns[h];
    const char *id = mt_str(md, root, "hold.id");
    const char *status = mt_str(md, root, "hold.status");
    const char *exp = mt_str(md, root, "hold.expires_at");
    int64_t deadline = 0;
    if (id == NULL || strcmp(id, ht->id) != 0)
        mt_fail(md, "hold.id %s, expected the hold transaction id %s", id ? id : "null", ht->id);
    if (status == NULL || strcmp(status, states[ht->hstate]) != 0)
        mt_fail(md, "hold.status %s, oracle %s", status ? status : "null", states[ht->hstate]);
    if (!mt_time_parse(exp, &deadline) || deadline != ht->deadline)
        mt_fail(md, "hold.expires_at %s, oracle deadline %lld ms", exp ? exp : "null",
                (long long)ht->deadline);
    int64_t pts = mt_int(md, root, "hold.points");
    int64_t cap = mt_int(md, root, "hold.captured");
    int64_t rel = mt_int(md, root, "hold.released");
    if (pts != ht->points || cap != ht->captured || rel != ht->released)
        mt_fail(md, "hold points/captured/released: engine %lld/%lld/%lld, oracle %lld/%lld/%lld",
                (long long)pts, (long long)cap, (long long)rel, (long long)ht->points,
                (long long)ht->captured, (long long)ht->released);
}

static void op_hold(model *md)
{
    char body[BODY_MAX];
    jf_result res;
    int m = pick_active(md), t = -1;
    int64_t n = debit_amount(md, available_of(md, m));
    int64_t ttl_s = mt_rng_chance(&md->rng, 50) ? 900 : mt_rng_range(&md->rng, 60, 7200);
    if (ttl_s == 900)
        snprintf(body, sizeof body, "{\"points\":%lld}", (long long)n);
    else
        snprintf(body, sizeof body, "{\"points\":%lld,\"ttl_seconds\":%lld}", (long long)n,
                 (long long)ttl_s);
    mt_desc(md, "HOLD m%d %s body=%s", m, member_id(md, m), body);
    jf_err want = o_hold(&md->o, m, n, ttl_s * 1000, &t);
    jf_err err = mt_write(md, JF_OP_HOLD, member_id(md, m), body, m, -1, &res);
    mt_expect_err(md, want, err, &res);
    if (err == JF_OK) {
        json_t *root = mt_json(md, &res);
        mt_expect_points_result(md, root, t, "hold", n, m);
        MT_PUSH(md->holds, md->nholds, md->cap_holds, t);
        expect_hold(md, root, t);
        json_decref(root);
    }
    jf_result_deinit(&res);
}

/* A hold to capture or void: mostly an open one, else any earlier hold. */
static int pick_hold(model *md)
{
    if (md->o.nopen > 0 && mt_rng_chance(&md->rng, 80))
        return md->o.open_holds[mt_rng_range(&md->rng, 0, md->o.nopen - 1)];
    if (md->nholds == 0)
        return -1;
    int lo = md->nholds > 200 ? md->nholds - 200 : 0;
    return md->holds[mt_rng_range(&md->rng, lo, md->nholds - 1)];
}

/* Sends a capture or void of hold h and checks the reply. */
static void hold_finish(model *md, jf_op op, int h, const char *body, jf_err want, int t)
{
    jf_result res;
    int m = md->o.txns[h].member;
    jf_err err = mt_write(md, op, md->o.txns[h].id, body, m, -1, &res);
    mt_expect_err(md, want, err, &res);
    if (err == JF_OK) {
        json_t *root = mt_json(md, &res);
        const char *type = op == JF_OP_HOLD_CAPTURE ? "capture" : "void";
        mt_expect_points_result(md, root, t, type, md->o.txns[t].points, m);
        expect_hold(md, root, h);
        json_decref(root);
    }
    jf_result_deinit(&res);
}

static void op_capture(model *md)
{
    char body[BODY_MAX] = "{}";
    mt_rng *r = &md->rng;
    int h = pick_hold(md), t = -1;
    if (h < 0)
        return;
    int64_t held = md->o.txns[h].points, n = held;
    bool open = md->o.txns[h].hstate == O_HOLD_OPEN;
    int kind = (int)mt_rng_range(r, 0, 9);
    if (!open) {
        /* A closed hold gets only valid amounts: which error a closed hold
         * gives for an over-capture is not specified. */
        n = 1;
    } else if (kind < 4) {
        n = held; /* {}: capture the whole hold */
    } else if (kind < 8) {
        n = mt_rng_range(r, 1, held);
    } else if (kind == 8) {
        n = held;
    } else {
        n = held + mt_rng_range(r, 1, 50);
    }
    if (!open || kind >= 4)
        snprintf(body, sizeof body, "{\"points\":%lld}", (long long)n);
    mt_desc(md, "HOLD_CAPTURE %s (hold of m%d, %lld held, %s) body=%s", md->o.txns[h].id,
            md->o.txns[h].member, (long long)held, open ? "open" : "closed", body);
    jf_err want = o_capture(&md->o, h, strcmp(body, "{}") != 0, n, &t);
    hold_finish(md, JF_OP_HOLD_CAPTURE, h, body, want, t);
}

static void op_void(model *md)
{
    int h = pick_hold(md), t = -1;
    if (h < 0)
        return;
    mt_desc(md, "HOLD_VOID %s (hold of m%d, %lld held, %s) body={}", md->o.txns[h].id,
            md->o.txns[h].member, (long long)md->o.txns[h].points,
            md->o.txns[h].hstate == O_HOLD_OPEN ? "open" : "closed");
    jf_err want = o_void(&md->o, h, &t);
    hold_finish(md, JF_OP_HOLD_VOID, h, "{}", want, t);
}

/* The reverse body: whole, part, or more than remains. */
static bool reverse_body(model *md, int orig, char *body, size_t len, int64_t *n)
{
    mt_rng *r = &md->rng;
    const o_txn *tx = &md->o.txns[orig];
    int64_t rest = tx->points - tx->reversed;
    int kind = (int)mt_rng_range(r, 0, 19);
    bool reason = mt_rng_chance(r, 30);
    if (kind < 9) {
        snprintf(body, len, reason ? "{\"reason\":\"refund\"}" : "{}");
        *n = rest;
        return false;
    }
    *n = kind < 17 && rest > 0 ? mt_rng_range(r, 1, rest) : rest + mt_rng_range(r, 1, 20);
    snprintf(body, len, reason ? "{\"points\":%lld,\"reason\":\"refund\"}" : "{\"points\":%lld}",
             (long long)*n);
    return true;
}

static void op_reverse(model *md)
{
    char body[BODY_MAX];
    jf_result res;
    int t = -1;
    int64_t n;
    if (md->nrecent == 0)
        return;
    int lo = md->nrecent > 400 ? md->nrecent - 400 : 0;
    int orig = md->recent[mt_rng_range(&md->rng, lo, md->nrecent - 1)];
    const o_txn *tx = &md->o.txns[orig];
    bool has = reverse_body(md, orig, body, sizeof body, &n);
    mt_desc(md, "REVERSE %s (%s of m%d%s, %lld points, %lld reversed) body=%s", tx->id,
            o_type_name(tx->type), tx->member,
            tx->type == O_ADJUST && tx->sign < 0 ? " negative" : "", (long long)tx->points,
            (long long)tx->reversed, body);
    int m = tx->member, other = tx->other;
    jf_err want = o_reverse(&md->o, orig, has, n, &t);
    jf_err err = mt_write(md, JF_OP_REVERSE, md->o.txns[orig].id, body, m, other, &res);
    mt_expect_err(md, want, err, &res);
    if (err == JF_OK) {
        json_t *root = mt_json(md, &res);
        mt_expect_points_result(md, root, t, "reverse", md->o.txns[t].points, m);
        json_decref(root);
    }
    jf_result_deinit(&res);
}

static void op_expiry(model *md)
{
    jf_result res;
    o_expiry want;
    mt_desc(md, "EXPIRY_RUN");
    o_expiry_run(&md->o, &want);
    jf_err err = mt_write(md, JF_OP_EXPIRY_RUN, NULL, NULL, -1, -1, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    int64_t pts = mt_int(md, root, "expired_points");
    int64_t lots = mt_int(md, root, "lots");
    int64_t members = mt_int(md, root, "members");
    if (pts != want.points || lots != want.lots || members != want.members)
        mt_fail(md,
                "expiry run: engine expired_points=%lld lots=%lld members=%lld, oracle "
                "%lld/%lld/%lld",
                (long long)pts, (long long)lots, (long long)members, (long long)want.points,
                (long long)want.lots, (long long)want.members);
    json_decref(root);
    jf_result_deinit(&res);
}

static void op_sweep(model *md)
{
    jf_result res;
    mt_desc(md, "HOLDS_SWEEP");
    int voided = o_sweep(&md->o);
    jf_err err = mt_call(md, JF_OP_HOLDS_SWEEP, NULL, NULL, NULL, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    if (md->trace)
        printf("    -> oracle voided %d; %.*s\n", voided, (int)res.body_len,
               res.body ? res.body : "");
    /* spec.md does not give the sweep's reply; when it counts the holds it
     * voided, the count must agree. */
    json_t *root = mt_json(md, &res);
    json_t *count = json_object_get(root, "voided_holds");
    if (json_is_integer(count) && json_integer_value(count) != voided)
        mt_fail(md, "holds sweep voided %lld holds, oracle %d",
                (long long)json_integer_value(count), voided);
    json_decref(root);
    jf_result_deinit(&res);
}

void mt_clock_set(model *md, int64_t now)
{
    char body[BODY_MAX], when[48];
    jf_result res;
    int64_t got = 0;
    /* Whether a hold is overdue exactly at its deadline is not specified:
     * the clock never stops there. */
    for (int i = 0; i < md->o.nopen; i++) {
        if (md->o.txns[md->o.open_holds[i]].deadline == now) {
            now++;
            i = -1;
        }
    }
    mt_time_format(now, when, sizeof when);
    snprintf(body, sizeof body, "{\"now\":\"%s\"}", when);
    mt_desc(md, "CLOCK_SET +%lld ms body=%s", (long long)(now - md->o.now), body);
    o_clock_set(&md->o, now);
    jf_err err = mt_call(md, JF_OP_CLOCK_SET, NULL, body, NULL, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    const char *echo = mt_str(md, root, "now");
    if (!mt_time_parse(echo, &got) || got != now)
        mt_fail(md, "clock set answered now=%s", echo ? echo : "null");
    json_decref(root);
    jf_result_deinit(&res);
    mt_check_clock(md);
}

/* The nearest future lot boundary (available_at or expires_at) of a member,
 * or 0 when there is none within 60 days. */
static int64_t next_boundary(model *md, int m)
{
    const o_member *mem = &md->o.members[m];
    int64_t best = 0, now = md->o.now;
    for (int i = 0; i < mem->nlots; i++) {
        const o_lot *l = &md->o.lots[mem->lots[i]];
        int64_t c[2] = {l->available_at, l->expires_at};
        for (int k = 0; k < 2; k++)
            if (c[k] > now && c[k] != MT_NEVER && c[k] - now <= 60 * MT_DAY_MS &&
                (best == 0 || c[k] < best))
                best = c[k];
    }
    return best;
}

static void op_clock(model *md)
{
    mt_rng *r = &md->rng;
    int kind = (int)mt_rng_range(r, 0, 99);
    int64_t step;
    if (kind < 55)
        step = mt_rng_range(r, 60000, 120 * 60000);
    else if (kind < 80)
        step = mt_rng_range(r, 2 * 3600000, 3 * MT_DAY_MS);
    else if (kind < 90)
        step = mt_rng_range(r, 3 * MT_DAY_MS, 40 * MT_DAY_MS);
    else {
        /* Land exactly on a lot boundary: due at expires_at <= now, available
         * at available_at <= now. */
        int64_t b = next_boundary(md, pick_active(md));
        step = b > 0 ? b - md->o.now : mt_rng_range(r, 1, 60000);
    }
    mt_clock_set(md, md->o.now + step);
}

void mt_replay_random(model *md)
{
    jf_result res;
    int count = md->nreplays < MT_REPLAY_RING ? md->nreplays : MT_REPLAY_RING;
    if (count == 0)
        return;
    const mt_replay *rp = &md->replays[mt_rng_range(&md->rng, 0, count - 1)];
    mt_desc(md, "REPLAY %s path=%s key=%s body=%s", jf_op_name(rp->op),
            rp->path_id ? rp->path_id : "-", rp->key, rp->body ? rp->body : "-");
    jf_err err = mt_call(md, rp->op, rp->path_id, rp->body, rp->key, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    if (!res.replayed || res.created != (rp->op != JF_OP_EXPIRY_RUN))
        mt_fail(md, "a replay answered replayed=%d created=%d", (int)res.replayed,
                (int)res.created);
    if (res.body_len != strlen(rp->reply) || memcmp(res.body, rp->reply, res.body_len) != 0)
        mt_fail(md, "replayed body differs:\n  first:  %s\n  replay: %.*s", rp->reply,
                (int)res.body_len, res.body);
    jf_result_deinit(&res);
    md->replays_done++;
    for (int i = 0; i < 2; i++)
        if (rp->members[i] >= 0)
            mt_check_points(md, rp->members[i]);
}

/* An earlier key with a different request: 422 and nothing changes. */
static void op_key_reuse(model *md)
{
    char body[BODY_MAX];
    jf_result res;
    int count = md->nreplays < MT_REPLAY_RING ? md->nreplays : MT_REPLAY_RING;
    if (count == 0)
        return;
    const mt_replay *rp = &md->replays[mt_rng_range(&md->rng, 0, count - 1)];
    int m = pick_active(md);
    snprintf(body, sizeof body, "{\"points\":1,\"note\":\"reuse %ld\"}", md->op_index);
    mt_desc(md, "EARN with the used key %s (of %s) m%d body=%s", rp->key, jf_op_name(rp->op), m,
            body);
    jf_err err = mt_call(md, JF_OP_EARN, member_id(md, m), body, rp->key, NULL, 0, &res);
    mt_expect_err(md, JF_ERR_IDEMPOTENCY_KEY_REUSED, err, &res);
    jf_result_deinit(&res);
    mt_check_points(md, m);
}

typedef struct op_entry {
    void (*fn)(model *md);
    int weight;
} op_entry;

static const op_entry OPS[] = {
    {op_earn, 220},   {op_redeem, 110},       {op_adjust, 60},   {op_transfer, 80},   {op_hold, 80},
    {op_capture, 60}, {op_void, 40},          {op_reverse, 110}, {op_expiry, 20},     {op_sweep, 8},
    {op_clock, 45},   {mt_replay_random, 30}, {op_key_reuse, 5}, {mt_op_txn_get, 15},
};

void mt_op_random(model *md)
{
    int total = 0;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        total += OPS[i].weight;
    int pick = (int)mt_rng_range(&md->rng, 0, total - 1);
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
        if (pick < OPS[i].weight) {
            OPS[i].fn(md);
            return;
        }
        pick -= OPS[i].weight;
    }
}
