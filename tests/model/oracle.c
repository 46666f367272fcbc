/*
 * The oracle: an in-memory model of one tenant's ledger, written only from
 * spec.md "Ledger semantics" and sharing no code with the engine.
 *
 * It keeps lots (amount, remaining, available_at, expires_at, expired by the
 * job, creation order = index in o->lots), member debt, holds and every
 * transaction with the pieces it consumed and the lots it created.  Each write
 * first decides the error the engine must answer and changes nothing when
 * there is one; otherwise it applies the movement exactly as the spec says:
 * debits consume spendable lots in debit order, restores go back most
 * recently consumed first (into a new lot when the original was expired by
 * the job), clawbacks take the transaction's own lots, then other lots, then
 * debt up to the floor, and every credit pays debt first.  It is deliberately
 * simple (linear scans, sorting on demand) because clarity is its purpose.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

void o_init(oracle *o, int64_t now, int64_t pending_days, int64_t expiry_days, int64_t debt_floor)
{
    memset(o, 0, sizeof *o);
    o->now = now;
    o->pending_days = pending_days;
    o->expiry_days = expiry_days;
    o->debt_floor = debt_floor;
}

void o_free(oracle *o)
{
    for (int i = 0; i < o->ntxns; i++) {
        free(o->txns[i].pieces);
        free(o->txns[i].lots);
    }
    for (int i = 0; i < o->nmembers; i++)
        free(o->members[i].lots);
    free(o->txns);
    free(o->lots);
    free(o->members);
    free(o->open_holds);
    memset(o, 0, sizeof *o);
}

const char *o_type_name(o_type t)
{
    static const char *names[] = {"earn",    "redeem", "adjust", "transfer", "hold",
                                  "capture", "void",   "expire", "reverse"};
    return names[t];
}

int o_member_add(oracle *o, const char *id)
{
    o_member m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", id);
    MT_PUSH(o->members, o->nmembers, o->cap_members, m);
    return o->nmembers - 1;
}

bool o_lot_pending(const oracle *o, const o_lot *l)
{
    return o->now < l->available_at;
}

bool o_lot_due(const oracle *o, const o_lot *l)
{
    return l->expires_at != MT_NEVER && l->expires_at <= o->now;
}

bool o_lot_spendable(const oracle *o, const o_lot *l)
{
    return !o_lot_pending(o, l) && !o_lot_due(o, l) && !l->expired && l->remaining > 0;
}

void o_view_get(const oracle *o, int m, o_view *v)
{
    const o_member *mem = &o->members[m];
    memset(v, 0, sizeof *v);
    for (int i = 0; i < mem->nlots; i++) {
        const o_lot *l = &o->lots[mem->lots[i]];
        if (o_lot_spendable(o, l))
            v->available += l->remaining;
        else if (o_lot_pending(o, l) && !l->expired)
            v->pending += l->remaining;
        v->balance += l->remaining;
    }
    for (int i = 0; i < o->nopen; i++) {
        const o_txn *h = &o->txns[o->open_holds[i]];
        if (h->member == m)
            v->held += h->points;
    }
    v->debt = mem->debt;
    v->balance -= mem->debt;
}

/* ---- ordering and the basic movements ---- */

typedef struct lot_key {
    int64_t expires_at, available_at;
    int idx;
} lot_key;

static int lot_key_cmp(const void *pa, const void *pb)
{
    const lot_key *a = pa, *b = pb;
    if (a->expires_at != b->expires_at)
        return a->expires_at < b->expires_at ? -1 : 1;
    if (a->available_at != b->available_at)
        return a->available_at < b->available_at ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* The lots idx[0..n) in debit order: expires_at ascending (null last), then
 * available_at, then creation.  Returns a malloc'd array. */
static lot_key *debit_order(const oracle *o, const int *idx, int n)
{
    lot_key *keys = mt_xrealloc(NULL, (size_t)n * sizeof *keys);
    for (int i = 0; i < n; i++) {
        const o_lot *l = &o->lots[idx[i]];
        keys[i] = (lot_key){l->expires_at, l->available_at, idx[i]};
    }
    qsort(keys, (size_t)n, sizeof *keys, lot_key_cmp);
    return keys;
}

static int txn_new(oracle *o, o_type type, int m)
{
    o_txn t;
    memset(&t, 0, sizeof t);
    t.type = type;
    t.member = m;
    t.other = -1;
    t.hold = -1;
    t.reverses = -1;
    MT_PUSH(o->txns, o->ntxns, o->cap_txns, t);
    o->members[m].dirty = true;
    return o->ntxns - 1;
}

/* Credits x points into lot li, paying the member's debt first. */
static void credit_into(oracle *o, int li, int64_t x)
{
    o_lot *l = &o->lots[li];
    o_member *mem = &o->members[l->member];
    int64_t pay = min64(mem->debt, x);
    o->stats.debt_paid += pay > 0;
    mem->debt -= pay;
    l->remaining += x - pay;
    MT_ASSERT(l->remaining <= l->amount);
    MT_ASSERT(mem->debt >= 0);
}

/* Creates a lot of amount points for member m, made by transaction t; the
 * credit pays debt first.  Returns the lot index. */
static int lot_new(oracle *o, int m, int t, int64_t amount, int64_t available_at,
                   int64_t expires_at)
{
    o_lot l;
    memset(&l, 0, sizeof l);
    l.member = m;
    l.txn = t;
    l.amount = amount;
    l.available_at = available_at;
    l.expires_at = expires_at;
    MT_PUSH(o->lots, o->nlots, o->cap_lots, l);
    int li = o->nlots - 1;
    o_member *mem = &o->members[m];
    MT_PUSH(mem->lots, mem->nlots, mem->cap_lots, li);
    mem->dirty = true;
    credit_into(o, li, amount);
    return li;
}

/* Consumes n spendable points of member m in debit order, recording each
 * piece on transaction t.  The caller has checked n <= available. */
static void debit(oracle *o, int m, int t, int64_t n)
{
    o_member *mem = &o->members[m];
    lot_key *keys = debit_order(o, mem->lots, mem->nlots);
    for (int i = 0; i < mem->nlots && n > 0; i++) {
        o_lot *l = &o->lots[keys[i].idx];
        if (!o_lot_spendable(o, l))
            continue;
        int64_t take = min64(l->remaining, n);
        l->remaining -= take;
        n -= take;
        o_piece p = {keys[i].idx, take, 0};
        o_txn *tx = &o->txns[t];
        MT_PUSH(tx->pieces, tx->npieces, tx->cap_pieces, p);
    }
    free(keys);
    MT_ASSERT(n == 0);
}

/* Returns n points consumed by transaction src, most recently consumed
 * first, on behalf of transaction by.  A piece whose lot was expired by the
 * job comes back as a new lot with the same expires_at, available now. */
static void restore(oracle *o, int src, int by, int64_t n)
{
    for (int i = o->txns[src].npieces - 1; i >= 0 && n > 0; i--) {
        o_piece *p = &o->txns[src].pieces[i];
        int64_t x = min64(n, p->amount - p->restored);
        if (x == 0)
            continue;
        p->restored += x;
        n -= x;
        o_lot orig = o->lots[p->lot];
        o->members[orig.member].dirty = true;
        if (orig.expired) {
            lot_new(o, orig.member, by, x, o->now, orig.expires_at);
            o->stats.restored_new++;
        } else {
            credit_into(o, p->lot, x);
            o->stats.restored++;
        }
    }
    MT_ASSERT(n == 0);
}

/* What a clawback can take from member m without breaking the debt floor. */
static int64_t clawback_room(const oracle *o, int m)
{
    const o_member *mem = &o->members[m];
    int64_t room = o->debt_floor - mem->debt;
    for (int i = 0; i < mem->nlots; i++) {
        const o_lot *l = &o->lots[mem->lots[i]];
        if (!l->expired)
            room += l->remaining;
    }
    return room;
}

/* Takes up to n points from the lots idx[0..cnt) in debit order; returns what
 * is still to take. */
static int64_t take_from(oracle *o, const int *idx, int cnt, int64_t n)
{
    lot_key *keys = debit_order(o, idx, cnt);
    for (int i = 0; i < cnt && n > 0; i++) {
        o_lot *l = &o->lots[keys[i].idx];
        if (l->expired || l->remaining == 0)
            continue;
        int64_t take = min64(l->remaining, n);
        l->remaining -= take;
        n -= take;
    }
    free(keys);
    return n;
}

/* Claws n points back from member m for a reversal of transaction src: its
 * own lots first, then every other lot, then debt.  The caller has checked
 * clawback_room. */
static void clawback(oracle *o, int m, int src, int64_t n)
{
    o_txn *s = &o->txns[src];
    int *own = mt_xrealloc(NULL, (size_t)(s->nlots + 1) * sizeof *own);
    int nown = 0;
    for (int i = 0; i < s->nlots; i++)
        if (o->lots[s->lots[i]].member == m)
            own[nown++] = s->lots[i];
    n = take_from(o, own, nown, n);
    free(own);
    o_member *mem = &o->members[m];
    n = take_from(o, mem->lots, mem->nlots, n);
    mem->debt += n;
    o->stats.debt_created += n > 0;
    mem->dirty = true;
    MT_ASSERT(mem->debt <= o->debt_floor);
}

/* ---- holds ---- */

static void open_remove(oracle *o, int h)
{
    for (int i = 0; i < o->nopen; i++) {
        if (o->open_holds[i] == h) {
            memmove(&o->open_holds[i], &o->open_holds[i + 1],
                    (size_t)(o->nopen - i - 1) * sizeof *o->open_holds);
            o->nopen--;
            return;
        }
    }
    MT_ASSERT(!"hold not in the open list");
}

/* Voids open hold h: every held point goes back to the lots. */
static int void_hold(oracle *o, int h)
{
    int v = txn_new(o, O_VOID, o->txns[h].member);
    o->txns[v].points = o->txns[h].points;
    o->txns[v].hold = h;
    restore(o, h, v, o->txns[h].points);
    o->txns[h].hstate = O_HOLD_VOIDED;
    o->txns[h].released = o->txns[h].points;
    open_remove(o, h);
    return v;
}

static bool hold_overdue(const oracle *o, int h)
{
    return o->now > o->txns[h].deadline;
}

/* Voids the overdue holds of member m (every member when m < 0) in the order
 * their deadlines passed, ties in creation order.  The order matters only
 * for which lots keep points when the restores pay debt; spec.md does not
 * name it, and deadline order is the one in which the holds became void. */
static int void_overdue_holds(oracle *o, int m)
{
    int *due = mt_xrealloc(NULL, (size_t)(o->nopen + 1) * sizeof *due);
    int n = 0;
    for (int i = 0; i < o->nopen; i++) {
        int h = o->open_holds[i];
        if ((m < 0 || o->txns[h].member == m) && hold_overdue(o, h))
            due[n++] = h;
    }
    for (int i = 1; i < n; i++) { /* insertion sort by (deadline, creation) */
        int h = due[i], j = i;
        while (j > 0 && (o->txns[due[j - 1]].deadline > o->txns[h].deadline ||
                         (o->txns[due[j - 1]].deadline == o->txns[h].deadline && due[j - 1] > h))) {
            due[j] = due[j - 1];
            j--;
        }
        due[j] = h;
    }
    for (int i = 0; i < n; i++)
        void_hold(o, due[i]);
    o->stats.holds_swept += n;
    free(due);
    return n;
}

/* The writer voids overdue holds of a member before any other write to it.
 * (The test clock sweeps whenever it moves, so normally there are none.) */
static void void_overdue(oracle *o, int m)
{
    void_overdue_holds(o, m);
}

int o_sweep(oracle *o)
{
    return void_overdue_holds(o, -1);
}

int o_clock_set(oracle *o, int64_t now)
{
    MT_ASSERT(now >= o->now);
    o->now = now;
    return o_sweep(o);
}

/* ---- writes ---- */

jf_err o_earn(oracle *o, int m, int64_t points, int64_t pending_days, int64_t expires_at, int *t)
{
    void_overdue(o, m);
    *t = txn_new(o, O_EARN, m);
    o->txns[*t].points = points;
    if (points == 0)
        return JF_OK;
    int64_t pd = pending_days >= 0 ? pending_days : o->pending_days;
    int64_t exp = expires_at;
    if (exp < 0)
        exp = o->expiry_days ? o->now + o->expiry_days * MT_DAY_MS : MT_NEVER;
    int li = lot_new(o, m, *t, points, o->now + pd * MT_DAY_MS, exp);
    o_txn *tx = &o->txns[*t];
    MT_PUSH(tx->lots, tx->nlots, tx->cap_lots, li);
    return JF_OK;
}

jf_err o_redeem(oracle *o, int m, int64_t points, int *t)
{
    o_view v;
    void_overdue(o, m);
    o_view_get(o, m, &v);
    if (points > v.available)
        return JF_ERR_INSUFFICIENT_POINTS;
    *t = txn_new(o, O_REDEEM, m);
    o->txns[*t].points = points;
    debit(o, m, *t, points);
    return JF_OK;
}

jf_err o_adjust(oracle *o, int m, int64_t signed_points, int *t)
{
    o_view v;
    void_overdue(o, m);
    o_view_get(o, m, &v);
    if (signed_points < 0 && -signed_points > v.available)
        return JF_ERR_INSUFFICIENT_POINTS;
    *t = txn_new(o, O_ADJUST, m);
    o_txn *tx = &o->txns[*t];
    tx->sign = signed_points < 0 ? -1 : 1;
    tx->points = signed_points < 0 ? -signed_points : signed_points;
    if (signed_points < 0) {
        debit(o, m, *t, -signed_points);
        return JF_OK;
    }
    int64_t exp = o->expiry_days ? o->now + o->expiry_days * MT_DAY_MS : MT_NEVER;
    int li = lot_new(o, m, *t, signed_points, o->now, exp);
    tx = &o->txns[*t];
    MT_PUSH(tx->lots, tx->nlots, tx->cap_lots, li);
    return JF_OK;
}

jf_err o_transfer(oracle *o, int from, int to, int64_t points, int *t)
{
    o_view v;
    if (from == to)
        return JF_ERR_SAME_MEMBER;
    void_overdue(o, from);
    void_overdue(o, to);
    o_view_get(o, from, &v);
    if (points > v.available)
        return JF_ERR_INSUFFICIENT_POINTS;
    *t = txn_new(o, O_TRANSFER, from);
    o->txns[*t].other = to;
    o->txns[*t].points = points;
    o->members[to].dirty = true;
    debit(o, from, *t, points);
    for (int i = 0; i < o->txns[*t].npieces; i++) {
        o_piece p = o->txns[*t].pieces[i];
        int li = lot_new(o, to, *t, p.amount, o->now, o->lots[p.lot].expires_at);
        o_txn *tx = &o->txns[*t];
        MT_PUSH(tx->lots, tx->nlots, tx->cap_lots, li);
    }
    return JF_OK;
}

jf_err o_hold(oracle *o, int m, int64_t points, int64_t ttl_ms, int *t)
{
    o_view v;
    void_overdue(o, m);
    o_view_get(o, m, &v);
    if (points > v.available)
        return JF_ERR_INSUFFICIENT_POINTS;
    *t = txn_new(o, O_HOLD, m);
    o->txns[*t].points = points;
    o->txns[*t].deadline = o->now + ttl_ms;
    o->txns[*t].hstate = O_HOLD_OPEN;
    debit(o, m, *t, points);
    MT_PUSH(o->open_holds, o->nopen, o->cap_open, *t);
    return JF_OK;
}

jf_err o_capture(oracle *o, int h, bool has_points, int64_t points, int *t)
{
    void_overdue(o, o->txns[h].member);
    if (o->txns[h].hstate != O_HOLD_OPEN)
        return JF_ERR_HOLD_NOT_OPEN;
    int64_t held = o->txns[h].points;
    int64_t n = has_points ? points : held;
    if (n > held)
        return JF_ERR_CAPTURE_EXCEEDS_HOLD;
    *t = txn_new(o, O_CAPTURE, o->txns[h].member);
    o->txns[*t].points = n;
    o->txns[*t].hold = h;
    restore(o, h, *t, held - n);
    o->txns[h].hstate = O_HOLD_CAPTURED;
    o->txns[h].captured = n;
    o->txns[h].released = held - n;
    open_remove(o, h);
    return JF_OK;
}

jf_err o_void(oracle *o, int h, int *t)
{
    void_overdue(o, o->txns[h].member);
    if (o->txns[h].hstate != O_HOLD_OPEN)
        return JF_ERR_HOLD_NOT_OPEN;
    *t = void_hold(o, h);
    return JF_OK;
}

static bool reversible(const o_txn *tx)
{
    switch (tx->type) {
    case O_EARN:
    case O_REDEEM:
    case O_ADJUST:
    case O_TRANSFER:
    case O_CAPTURE:
        return true;
    default:
        return false;
    }
}

/* Growth taken back once k of an earn's points are reversed: in
 * proportion, rounded up, all of it with the last point (docs/TIERS.md). */
static int64_t growth_target(const o_txn *e, int64_t k)
{
    return k >= e->points ? e->growth : (e->growth * k + e->points - 1) / e->points;
}

/* Applies the reversal r of n points of transaction orig (checked). */
static void reverse_apply(oracle *o, int orig, int r, int64_t n)
{
    o_txn tx = o->txns[orig];
    if (tx.type == O_EARN || (tx.type == O_ADJUST && tx.sign > 0))
        clawback(o, tx.member, orig, n);
    else if (tx.type == O_REDEEM || tx.type == O_ADJUST)
        restore(o, orig, r, n);
    else if (tx.type == O_CAPTURE)
        restore(o, tx.hold, r, n);
    else if (tx.type == O_TRANSFER) {
        clawback(o, tx.other, orig, n);
        restore(o, orig, r, n);
    } else
        MT_ASSERT(!"not reversible");
    if (tx.type == O_EARN && tx.growth > 0)
        o->txns[r].growth = growth_target(&tx, tx.reversed + n) - growth_target(&tx, tx.reversed);
    o->txns[orig].reversed += n;
    MT_ASSERT(o->txns[orig].reversed <= o->txns[orig].points);
}

jf_err o_reverse(oracle *o, int orig, bool has_points, int64_t points, int *t)
{
    if (!reversible(&o->txns[orig]))
        return JF_ERR_NOT_REVERSIBLE;
    int64_t rest = o->txns[orig].points - o->txns[orig].reversed;
    int64_t n = has_points ? points : rest;
    if (n > rest || n == 0)
        return JF_ERR_REVERSAL_EXCEEDS_ORIGINAL;
    void_overdue(o, o->txns[orig].member);
    int taker = -1; /* the member points are clawed back from */
    if (o->txns[orig].type == O_TRANSFER) {
        void_overdue(o, o->txns[orig].other);
        taker = o->txns[orig].other;
    } else if (o->txns[orig].type == O_EARN ||
               (o->txns[orig].type == O_ADJUST && o->txns[orig].sign > 0)) {
        taker = o->txns[orig].member;
    }
    if (taker >= 0 && n > clawback_room(o, taker))
        return JF_ERR_INSUFFICIENT_POINTS;
    *t = txn_new(o, O_REVERSE, o->txns[orig].member);
    o->txns[*t].points = n;
    o->txns[*t].other = o->txns[orig].other;
    o->txns[*t].reverses = orig;
    if (taker >= 0)
        o->members[taker].dirty = true;
    reverse_apply(o, orig, *t, n);
    return JF_OK;
}

void o_expiry_run(oracle *o, o_expiry *out)
{
    memset(out, 0, sizeof *out);
    for (int m = 0; m < o->nmembers; m++) {
        o_member *mem = &o->members[m];
        int64_t count = 0, pts = 0;
        for (int i = 0; i < mem->nlots; i++) {
            o_lot *l = &o->lots[mem->lots[i]];
            if (!o_lot_due(o, l) || l->expired || l->remaining == 0)
                continue;
            pts += l->remaining;
            l->remaining = 0;
            l->expired = true;
            count++;
        }
        if (count == 0)
            continue;
        int t = txn_new(o, O_EXPIRE, m); /* marks the member dirty */
        o->txns[t].points = pts;
        out->points += pts;
        out->lots += count;
        o->stats.lots_expired += count;
        out->members++;
    }
}

/* The oracle's own invariants (spec.md "Ledger semantics"): lots within
 * [0, amount], expired lots empty, debt within the floor and, while there is
 * debt, no lot with points left.  Returns a sentence on the first broken
 * one, NULL when all hold.  A broken one is a bug in the oracle. */
const char *o_invariants(const oracle *o, int *bad_member)
{
    for (int m = 0; m < o->nmembers; m++) {
        const o_member *mem = &o->members[m];
        *bad_member = m;
        if (mem->debt < 0 || mem->debt > o->debt_floor)
            return "debt outside [0, debt_floor]";
        for (int i = 0; i < mem->nlots; i++) {
            const o_lot *l = &o->lots[mem->lots[i]];
            if (l->remaining < 0 || l->remaining > l->amount)
                return "a lot's remaining is outside [0, amount]";
            if (l->expired && l->remaining != 0)
                return "an expired lot has points left";
            if (mem->debt > 0 && l->remaining != 0)
                return "a member in debt has a lot with points left";
        }
    }
    *bad_member = -1;
    return NULL;
}
