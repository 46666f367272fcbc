/*
 * Lots: every credit to a member's points is a lot with its own
 * availability and expiry; every debit consumes lots and records each piece.
 *
 * The lineage (which transaction took how much from which lot) is what makes
 * expiry exact, lets a refund put points back into the lots they came from,
 * and later settles points between merchants of a coalition.  The rules are
 * in docs/LEDGER.md: debits take spendable lots earliest-expiring
 * first; restores go back most-recently-consumed first; clawbacks take the
 * reversed transaction's own lots first, then others, then debt within the
 * program's floor; every credit pays outstanding debt first.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

typedef struct lot_ref {
    int64_t seq, remaining, expires_at;
    bool expired; /* expired by the expiry job (restores only) */
} lot_ref;

typedef struct lot_vec {
    lot_ref *v;
    size_t n, cap;
} lot_vec;

static jf_err lot_vec_push(lot_vec *lv, lot_ref r)
{
    if (lv->n == lv->cap) {
        size_t cap = lv->cap ? lv->cap * 2 : 16;
        lot_ref *v = realloc(lv->v, cap * sizeof(*v));
        if (v == NULL)
            return JF_ERR_NOMEM;
        lv->v = v;
        lv->cap = cap;
    }
    lv->v[lv->n++] = r;
    return JF_OK;
}

/* Reads lots from st until their remaining covers amount. */
static jf_err lot_vec_fill(lot_vec *lv, sqlite3_stmt *st, int64_t amount)
{
    int64_t sum = 0;
    jf_err err = JF_OK;
    while (err == JF_OK && sum < amount && jf_db_step(st) == SQLITE_ROW) {
        lot_ref r = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                     jf_db_int_or(st, 2, -1), false};
        sum += r.remaining;
        err = lot_vec_push(lv, r);
    }
    sqlite3_reset(st);
    return err;
}

static jf_err member_debt(jf_ctx *ctx, const char *member_id, int64_t *debt)
{
    jf_member m;
    if (jf_wcache_member_get(jf_ctx_wcache(ctx), ctx->auth->tenant, member_id, &m)) {
        *debt = m.debt;
        return JF_OK;
    }
    return jf_db_int(ctx->db, debt, 0, "SELECT debt FROM members WHERE tenant_id=? AND id=?", "Is",
                     ctx->auth->tenant, member_id);
}

static jf_err member_debt_add(jf_ctx *ctx, const char *member_id, int64_t delta)
{
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, member_id, &m);
    if (err != JF_OK)
        return err;
    jf_member_written(ctx, m); /* the debt is in the member's points */
    jf_wcache_member_dirty(jf_ctx_wcache(ctx), ctx->auth->tenant, member_id);
    return jf_db_run(ctx->db, "UPDATE members SET debt = debt + ? WHERE tenant_id=? AND id=?",
                     "IIs", delta, ctx->auth->tenant, member_id);
}

/* ---- the member's pending mark (schema.c, version 23) ----
 *
 * members.pending_until is no earlier than the available_at of every open
 * lot of the member that was made pending (available_at > created_at), so a
 * read of the member's points at a later time knows that nothing is pending
 * without searching the lots' pending index: 3,500 of the writer's ~98,000
 * instructions per earn of a program without pending points
 * (docs/PERFORMANCE-HISTORY.md, since commit a5d9c29).  A new pending lot
 * raises it to the first whole day (UTC) after its available_at, so a member
 * who earns pending points every day moves it about once a day, not on
 * every earn; it is never lowered (a lot emptied, reversed or expired
 * early leaves it late, which costs only that search until it passes).
 * `jifen verify` checks it (S3). */
#define PENDING_MARK_STEP_MS INT64_C(86400000)

static jf_err pending_mark(jf_ctx *ctx, const char *member_id, int64_t available_at)
{
    jf_member m;
    jf_err err = jf_member_load(ctx, member_id, &m);
    if (err != JF_OK || m.pending_until >= available_at)
        return err;
    int64_t step = PENDING_MARK_STEP_MS - available_at % PENDING_MARK_STEP_MS, until = INT64_MAX;
    if (step <= 0 || __builtin_add_overflow(available_at, step, &until))
        until = INT64_MAX;
    assert(until > available_at || until == INT64_MAX);
    jf_wcache_member_dirty(jf_ctx_wcache(ctx), ctx->auth->tenant, member_id);
    return jf_db_run(ctx->db, "UPDATE members SET pending_until = ? WHERE tenant_id=? AND id=?",
                     "IIs", until, ctx->auth->tenant, member_id);
}

/* ---- a lot's entry in member_state (schema.c, versions 7, 8 and 10) ----
 *
 * Every lot has one entry among its member's rows (the member named by its
 * seq since version 10: jf_member_seq), keyed by whether the lot
 * is closed, its expiry (JF_NEVER_SQL when none), its availability and its
 * seq, with its remaining points as the value.  Only this file writes lot
 * entries, in the same writes that change the lot (creation, a consumption,
 * expiry); `jifen verify` checks them against the lots (S1).  Statements
 * rather than triggers: a trigger cost the writer about 4.5 us per write. */

typedef struct lot_entry {
    char member_id[JF_ID_LEN_MAX];
    int64_t closed, expires_key, available_at, seq, remaining;
} lot_entry;

/* ---- the member's due entry (schema.c, version 18) ----
 *
 * A member with an open lot that expires has one row in member_due,
 * (tenant, due_at, member seq), and its due row in member_state (kind 0,
 * key1 JF_DUE_KEY) holds the same due_at, no later than that lot's expiry.
 * A lot that opens (made, or given points back after it closed) moves the
 * entry earlier when it expires first; the expiry moves it on to the
 * member's earliest open lot, or removes it, once it has expired what was due
 * (jf_due_advance).  A redeem that empties the earliest lot leaves it early,
 * which costs the expiry one look.  `jifen verify` checks both (S2). */

#define DUE_ROW                                                                                    \
    " member_seq = ? AND kind = 0 AND key1 = " JF_DUE_KEY_SQL " AND key2 = 0 AND key3 = 0"         \
    " AND key4 = 0"

/* Moves member m's entry from `was` to `due`, and its due row with it;
 * INT64_MAX (the key of a lot that never expires) is no entry. */
static jf_err due_move(jf_ctx *ctx, int64_t m, int64_t was, int64_t due)
{
    int64_t t = ctx->auth->tenant;
    bool had = was != INT64_MAX;
    jf_err err = JF_OK;
    if (had)
        err = jf_db_run(
            ctx->db, "DELETE FROM member_due WHERE tenant_id = ? AND due_at = ? AND member_seq = ?",
            "III", t, was, m);
    if (err == JF_OK && had && jf_db_changes(ctx->db) != 1)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Member %lld has no due entry at %lld.", (long long)m,
                      (long long)was);
    if (err == JF_OK && due != INT64_MAX)
        err = jf_db_run(ctx->db, "INSERT INTO member_due VALUES(?,?,?)", "III", t, due, m);
    if (err != JF_OK)
        return err;
    if (due == INT64_MAX)
        return jf_db_run(ctx->db, "DELETE FROM member_state WHERE" DUE_ROW, "I", m);
    return had ? jf_db_run(ctx->db, "UPDATE member_state SET value = ? WHERE" DUE_ROW, "II", due, m)
               : jf_db_run(ctx->db,
                           "INSERT INTO member_state VALUES(?, 0, " JF_DUE_KEY_SQL ", 0, 0, 0, ?)",
                           "II", m, due);
}

/* An open lot of member m expires at `expires` (INT64_MAX: never): the
 * member's entry is due no later. */
static jf_err due_note(jf_ctx *ctx, int64_t m, int64_t expires)
{
    if (expires == INT64_MAX)
        return JF_OK;
    int64_t was = INT64_MAX;
    jf_err err =
        jf_db_int(ctx->db, &was, INT64_MAX, "SELECT value FROM member_state WHERE" DUE_ROW, "I", m);
    return err != JF_OK || was <= expires ? err : due_move(ctx, m, was, expires);
}

jf_err jf_due_advance(jf_ctx *ctx, const char *member_id, int64_t was)
{
    int64_t m = 0, next = INT64_MAX;
    jf_err err = jf_member_seq(ctx, member_id, &m);
    /* The open entries sort by expiry: the first is the earliest. */
    if (err == JF_OK)
        err = jf_db_int(ctx->db, &next, INT64_MAX,
                        "SELECT key2 FROM member_state WHERE member_seq = ?"
                        " AND kind = 1 AND key1 = 0 ORDER BY key2 LIMIT 1",
                        "I", m);
    if (err != JF_OK || next == was)
        return err;
    jf_member_written(ctx, m);
    return due_move(ctx, m, was, next);
}

static jf_err lot_entry_insert(jf_ctx *ctx, const lot_entry *e)
{
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, e->member_id, &m);
    if (err == JF_OK)
        jf_member_written(ctx, m);
    if (err == JF_OK)
        err = jf_db_run(ctx->db, "INSERT INTO member_state VALUES(?,1,?,?,?,?,?)", "IIIIII", m,
                        e->closed, e->expires_key, e->available_at, e->seq, e->remaining);
    /* An entry inserted open is a lot made, or one given points back after
     * it closed. */
    return err == JF_OK && !e->closed ? due_note(ctx, m, e->expires_key) : err;
}

/* The entry of e's lot had closed = was_closed; it now says e. */
static jf_err lot_entry_change(jf_ctx *ctx, const lot_entry *e, int64_t was_closed)
{
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, e->member_id, &m);
    if (err != JF_OK)
        return err;
    jf_member_written(ctx, m);
    if (was_closed == e->closed)
        return jf_db_run(ctx->db,
                         "UPDATE member_state SET value = ? WHERE member_seq = ? AND kind = 1"
                         " AND key1 = ? AND key2 = ? AND key3 = ? AND key4 = ?",
                         "IIIIII", e->remaining, m, e->closed, e->expires_key, e->available_at,
                         e->seq);
    err = jf_db_run(ctx->db,
                    "DELETE FROM member_state WHERE member_seq = ? AND kind = 1 AND key1 = ?"
                    " AND key2 = ? AND key3 = ? AND key4 = ?",
                    "IIIII", m, was_closed, e->expires_key, e->available_at, e->seq);
    if (err == JF_OK && jf_db_changes(ctx->db) != 1)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Lot %lld has no entry.", (long long)e->seq);
    return err == JF_OK ? lot_entry_insert(ctx, e) : err;
}

/* Steps a read of one lot just updated, (member_id, closed before, closed,
 * expires key, available_at, remaining), and changes the lot's entry to
 * match. */
static jf_err lot_update_step(jf_ctx *ctx, sqlite3_stmt *st, int64_t lot_seq)
{
    if (st == NULL)
        return JF_ERR_IO;
    lot_entry e = {.seq = lot_seq};
    int64_t was_closed = 0;
    int rc = jf_db_step(st);
    if (rc == SQLITE_ROW) {
        jf_str_copy(e.member_id, sizeof(e.member_id), jf_db_text(st, 0));
        was_closed = sqlite3_column_int64(st, 1);
        e.closed = sqlite3_column_int64(st, 2);
        e.expires_key = sqlite3_column_int64(st, 3);
        e.available_at = sqlite3_column_int64(st, 4);
        e.remaining = sqlite3_column_int64(st, 5);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return jf_fail(ctx, JF_ERR_INTERNAL, "Lot %lld cannot change.", (long long)lot_seq);
    return lot_entry_change(ctx, &e, was_closed);
}

static jf_err consumption_add(jf_ctx *ctx, const jf_tx *tx, int64_t lot_seq, int64_t amount)
{
    jf_err err =
        jf_db_run(ctx->db,
                  "INSERT INTO consumptions(tenant_id, tx_seq, lot_seq, amount, created_at)"
                  " VALUES(?,?,?,?,?)",
                  "IIIII", ctx->auth->tenant, tx->seq, lot_seq, amount, ctx->now_ms);
    /* The update, then a read of the row: UPDATE ... RETURNING would run
     * through an ephemeral table opened and closed on every execution
     * (docs/PERFORMANCE-HISTORY.md, since 780b866), and the row's page is in the
     * cache already. */
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "UPDATE lots SET remaining = remaining - ?1, closed ="
                        " (remaining - ?1 = 0 OR expired_tx_seq IS NOT NULL) WHERE seq = ?2",
                        "II", amount, lot_seq);
    if (err == JF_OK && jf_db_changes(ctx->db) != 1)
        return jf_fail(ctx, JF_ERR_INTERNAL, "Lot %lld cannot change.", (long long)lot_seq);
    if (err == JF_OK)
        err = lot_update_step(ctx,
                              jf_db_query(ctx->db,
                                          "SELECT member_id, (remaining + ?1 = 0 OR"
                                          " expired_tx_seq IS NOT NULL), closed,"
                                          " COALESCE(expires_at, " JF_NEVER_SQL "), available_at,"
                                          " remaining FROM lots WHERE seq = ?2",
                                          "II", amount, lot_seq),
                              lot_seq);
    /* The CHECK on lots.remaining (0 <= remaining <= amount) backs this up. */
    return err == JF_ERR_CORRUPT
               ? jf_fail(ctx, JF_ERR_INTERNAL, "Lot %lld out of range.", (long long)lot_seq)
               : err;
}

jf_err jf_lots_due(jf_ctx *ctx, const char *member_id, int max, jf_due_lot *out, int *n,
                   int64_t *points)
{
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, member_id, &m);
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT key2, key3, key4, value FROM member_state"
                                   " WHERE member_seq = ?1 AND kind = 1 AND key1 = 0"
                                   " AND key2 <= ?2 ORDER BY key2, key3, key4 LIMIT ?3",
                                   "IIi", m, ctx->now_ms, max);
    if (st == NULL)
        return JF_ERR_IO;
    int rc = SQLITE_DONE;
    *n = 0;
    *points = 0;
    while (*n < max && (rc = jf_db_step(st)) == SQLITE_ROW) {
        jf_due_lot *d = &out[(*n)++];
        d->expires_key = sqlite3_column_int64(st, 0);
        d->available_at = sqlite3_column_int64(st, 1);
        d->seq = sqlite3_column_int64(st, 2);
        d->remaining = sqlite3_column_int64(st, 3);
        *points += d->remaining;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? JF_OK : JF_ERR_IO;
}

/* One due lot expired: closed with nothing left and what it lost recorded
 * on the lot itself (expired_amount, not a consumption: schema version 13),
 * only if it still holds what its entry says and has not expired (I10);
 * then its closed entry (jf_lots_expire removed the open one). */
static jf_err lot_expire(jf_ctx *ctx, int64_t tx_seq, const char *member_id, const jf_due_lot *d)
{
    jf_err err =
        jf_db_run(ctx->db,
                  "UPDATE lots SET remaining = 0, expired_tx_seq = ?1, expired_amount = ?3,"
                  " closed = 1 WHERE seq = ?2 AND remaining = ?3 AND expired_tx_seq IS NULL",
                  "III", tx_seq, d->seq, d->remaining);
    if (err == JF_OK && jf_db_changes(ctx->db) != 1)
        return jf_fail(ctx, JF_ERR_INTERNAL, "Lot %lld of %s cannot expire.", (long long)d->seq,
                       member_id);
    lot_entry e = {.closed = 1,
                   .expires_key = d->expires_key,
                   .available_at = d->available_at,
                   .seq = d->seq,
                   .remaining = 0};
    jf_str_copy(e.member_id, sizeof(e.member_id), member_id);
    return err == JF_OK ? lot_entry_insert(ctx, &e) : err;
}

jf_err jf_lots_expire(jf_ctx *ctx, int64_t tx_seq, const char *member_id, const jf_due_lot *lots,
                      int n)
{
    if (n == 0)
        return JF_OK;
    /* The open entries, first to last in their key order, are one range:
     * one statement instead of one per lot, and before the closed entries
     * go in, so the member's page makes room rather than splitting. */
    const jf_due_lot *last = &lots[n - 1];
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, member_id, &m);
    if (err == JF_OK)
        jf_member_written(ctx, m);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "DELETE FROM member_state WHERE member_seq = ?1 AND kind = 1 AND key1 = 0"
                        " AND (key2, key3, key4) >= (?2, ?3, ?4)"
                        " AND (key2, key3, key4) <= (?5, ?6, ?7)",
                        "IIIIIII", m, lots[0].expires_key, lots[0].available_at, lots[0].seq,
                        last->expires_key, last->available_at, last->seq);
    if (err == JF_OK && jf_db_changes(ctx->db) != n)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Expiry of %s removed %lld entries, not %d.", member_id,
                      (long long)jf_db_changes(ctx->db), n);
    for (int i = 0; err == JF_OK && i < n; i++)
        err = lot_expire(ctx, tx_seq, member_id, &lots[i]);
    return err;
}

/* Pays the member's debt from a lot that was just credited with amount. */
static jf_err debt_pay_from(jf_ctx *ctx, const jf_tx *tx, const char *member_id, int64_t lot_seq,
                            int64_t amount)
{
    int64_t debt = 0;
    jf_err err = member_debt(ctx, member_id, &debt);
    int64_t pay = jf_min_i64(debt, amount);
    if (err != JF_OK || pay <= 0)
        return err;
    err = consumption_add(ctx, tx, lot_seq, pay);
    return err == JF_OK ? member_debt_add(ctx, member_id, -pay) : err;
}

jf_err jf_lot_create(jf_ctx *ctx, const jf_tx *tx, const char *member_id, int64_t amount,
                     int64_t available_at, int64_t expires_at, int64_t *lot_seq)
{
    if (amount <= 0)
        return jf_fail(ctx, JF_ERR_INTERNAL, "A lot needs a positive amount.");
    char id[JF_ID_LEN_MAX];
    jf_id_new_ordered("lot_", ctx->now_ms, id);
    jf_err err = jf_db_run(ctx->db,
                           "INSERT INTO lots(tenant_id, id, member_id, tx_seq, amount, remaining,"
                           " available_at, expires_at, created_at)"
                           " VALUES(?,?,?,?,?,?,?,?,?)",
                           "IssIIIINI", ctx->auth->tenant, id, member_id, tx->seq, amount, amount,
                           available_at, expires_at, ctx->now_ms);
    if (err != JF_OK)
        return err;
    lot_entry e = {.closed = 0,
                   .expires_key = expires_at < 0 ? INT64_MAX : expires_at,
                   .available_at = available_at,
                   .seq = sqlite3_last_insert_rowid(ctx->db->h),
                   .remaining = amount};
    jf_str_copy(e.member_id, sizeof(e.member_id), member_id);
    if (lot_seq)
        *lot_seq = e.seq;
    err = lot_entry_insert(ctx, &e);
    if (err == JF_OK && available_at > ctx->now_ms)
        err = pending_mark(ctx, member_id, available_at);
    return err == JF_OK ? debt_pay_from(ctx, tx, member_id, e.seq, amount) : err;
}

/* A member's accounts and due lots are one range of member_state: the
 * accounts (kind 0: key1 0 points, 1 growth, 2 held; 3 is the due row,
 * which points_row skips) sort first, then the open lots (kind 1, key1 =
 * closed = 0) by expires_key, so (kind, key1, key2) <= (1, 0, now) holds
 * exactly the accounts, the due row and the open lots due by now.  One
 * range read replaced three subqueries (the two accounts and the due sum),
 * a third of this read's cost, on every write. */
#define POINTS_STATE                                                                               \
    "SELECT kind, key1, value FROM member_state WHERE member_seq = ?1"                             \
    " AND (kind, key1, key2) <= (1, 0, ?2)"
/* The same statement reads the pending lots (a row of kind -1) and, when
 * the writer's cache does not hold the member's debt, the debt (kind -2):
 * one statement instead of two on every write.  The pending lots'
 * `available_at > created_at` is implied (now >= created_at) and lets the
 * lots_pending index serve it.  When the writer's cache holds the member
 * and its pending mark has passed, nothing is pending and the statement
 * reads member_state alone. */
#define PENDING_SUM                                                                                \
    "(SELECT SUM(remaining) FROM lots WHERE tenant_id = ?3"                                        \
    "  AND member_id = ?4 AND remaining > 0 AND expired_tx_seq IS NULL AND available_at > ?2"      \
    "  AND available_at > created_at AND (expires_at IS NULL OR expires_at > ?2))"
#define POINTS_PENDING " UNION ALL SELECT -1, 0, " PENDING_SUM
/* Otherwise the member's row gives its debt and its pending mark, and the
 * pending lots are searched only while the mark has not passed (schema
 * version 23): for a member the writer's cache does not hold, and on every
 * read of a member's points. */
#define POINTS_DEBT                                                                                \
    " UNION ALL SELECT -2, debt, CASE WHEN pending_until > ?2 THEN " PENDING_SUM " END"            \
    " FROM members WHERE tenant_id = ?3 AND id = ?4"

/* One row of the points' statement into p. */
static void points_row(jf_points *p, int64_t kind, int64_t key1, int64_t value)
{
    if (kind == -2) {
        p->debt = key1;
        p->pending = value;
    } else if (kind == -1)
        p->pending = value;
    else if (kind == 1)
        p->due += value;
    else if (key1 == 0)
        p->balance = value;
    else if (key1 == 2)
        p->held = value;
}

jf_err jf_lots_points(jf_ctx *ctx, const char *member_id, jf_points *p)
{
    *p = (jf_points){0};
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, member_id, &m);
    if (err != JF_OK)
        return err;
    /* The writer's cache holds a member's debt exactly while no write of the
     * batch touched the row (wcache.c); reading it again would fetch the
     * member's row, a random page once its cache is warm. */
    jf_member kept;
    bool cached = jf_wcache_member_get(jf_ctx_wcache(ctx), ctx->auth->tenant, member_id, &kept);
    sqlite3_stmt *st =
        cached && kept.pending_until <= ctx->now_ms
            ? jf_db_query(ctx->db, POINTS_STATE, "II", m, ctx->now_ms)
            : jf_db_query(ctx->db, cached ? POINTS_STATE POINTS_PENDING : POINTS_STATE POINTS_DEBT,
                          "IIIs", m, ctx->now_ms, ctx->auth->tenant, member_id);
    if (st == NULL)
        return JF_ERR_IO;
    p->debt = cached ? kept.debt : 0;
    int rc;
    while ((rc = jf_db_step(st)) == SQLITE_ROW)
        points_row(p, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                   sqlite3_column_int64(st, 2));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return JF_ERR_IO;
    p->available = p->balance + p->debt - p->due - p->pending;
    return JF_OK;
}

/* Takes amount from the lots in lv, in order, recording each piece. */
static jf_err lots_take(jf_ctx *ctx, const jf_tx *tx, lot_vec *lv, int64_t amount, int64_t *taken,
                        jf_piece_fn piece_fn, void *arg)
{
    jf_err err = JF_OK;
    *taken = 0;
    for (size_t i = 0; err == JF_OK && i < lv->n && *taken < amount; i++) {
        int64_t take = jf_min_i64(lv->v[i].remaining, amount - *taken);
        if (take <= 0)
            continue;
        err = consumption_add(ctx, tx, lv->v[i].seq, take);
        if (err == JF_OK && piece_fn)
            err = piece_fn(ctx, tx, take, lv->v[i].expires_at, arg);
        *taken += take;
    }
    return err;
}

/* Spendable lots in debit order, each query in its index's order so that
 * reading stops as soon as the amount is covered: expiring lots by
 * (expires_at, available_at, seq), then never-expiring ones. */
static jf_err spendable_lots(jf_ctx *ctx, const char *member_id, int64_t amount, lot_vec *lv)
{
    int64_t m = 0;
    jf_err err = jf_member_seq(ctx, member_id, &m);
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT key4, value, key2 FROM member_state WHERE member_seq = ?1 AND kind = 1"
                    " AND key1 = 0 AND key2 > ?2 AND key2 < " JF_NEVER_SQL
                    " AND key3 <= ?2 ORDER BY key2, key3, key4",
                    "II", m, ctx->now_ms);
    err = st ? lot_vec_fill(lv, st, amount) : JF_ERR_IO;
    int64_t have = 0;
    for (size_t i = 0; i < lv->n; i++)
        have += lv->v[i].remaining;
    if (err != JF_OK || have >= amount)
        return err;
    st = jf_db_query(ctx->db,
                     "SELECT key4, value, NULL FROM member_state WHERE member_seq = ?1"
                     " AND kind = 1 AND key1 = 0 AND key2 = " JF_NEVER_SQL
                     " AND key3 <= ?2 ORDER BY key3, key4",
                     "II", m, ctx->now_ms);
    return st ? lot_vec_fill(lv, st, amount - have) : JF_ERR_IO;
}

jf_err jf_lots_consume(jf_ctx *ctx, const jf_tx *tx, const char *member_id, int64_t amount,
                       jf_piece_fn piece_fn, void *arg)
{
    lot_vec lv = {0};
    int64_t taken = 0;
    jf_err err = spendable_lots(ctx, member_id, amount, &lv);
    if (err == JF_OK)
        err = lots_take(ctx, tx, &lv, amount, &taken, piece_fn, arg);
    free(lv.v);
    if (err == JF_OK && taken != amount)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Lots of %s cover %lld of %lld.", member_id,
                      (long long)taken, (long long)amount);
    return err;
}

/* Restores r points of one consumed piece: into its lot unless the expiry
 * job has expired that lot, else into a new lot with the same expiry. */
static jf_err restore_piece(jf_ctx *ctx, const jf_tx *tx, int64_t source_seq, const char *member_id,
                            const lot_ref *piece, int64_t r)
{
    int64_t into = piece->seq;
    jf_err err;
    if (!piece->expired) {
        err = consumption_add(ctx, tx, piece->seq, -r);
        if (err == JF_OK)
            err = debt_pay_from(ctx, tx, member_id, piece->seq, r);
    } else {
        err = jf_lot_create(ctx, tx, member_id, r, ctx->now_ms, piece->expires_at, &into);
    }
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "INSERT INTO restores(tenant_id, tx_seq, source_tx_seq, lot_seq,"
                        " into_lot_seq, amount) VALUES(?,?,?,?,?,?)",
                        "IIIIII", ctx->auth->tenant, tx->seq, source_seq, piece->seq, into, r);
    return err;
}

jf_err jf_lots_restore(jf_ctx *ctx, const jf_tx *tx, int64_t source_seq, const char *member_id,
                       int64_t amount)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT c.lot_seq, c.amount - COALESCE((SELECT SUM(r.amount) FROM restores r"
                    "   WHERE r.tenant_id = c.tenant_id AND r.source_tx_seq = c.tx_seq"
                    "   AND r.lot_seq = c.lot_seq), 0),"
                    " l.expires_at, l.expired_tx_seq IS NOT NULL"
                    " FROM consumptions c JOIN lots l ON l.seq = c.lot_seq"
                    " WHERE c.tenant_id=? AND c.tx_seq=? AND c.amount > 0 AND l.member_id=?"
                    " ORDER BY c.rowid DESC",
                    "IIs", ctx->auth->tenant, source_seq, member_id);
    if (st == NULL)
        return JF_ERR_IO;
    lot_vec lv = {0};
    jf_err err = JF_OK;
    while (err == JF_OK && jf_db_step(st) == SQLITE_ROW) {
        lot_ref r = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                     jf_db_int_or(st, 2, -1), sqlite3_column_int(st, 3) != 0};
        err = lot_vec_push(&lv, r);
    }
    sqlite3_reset(st);
    int64_t left = amount;
    for (size_t i = 0; err == JF_OK && i < lv.n && left > 0; i++) {
        int64_t r = jf_min_i64(lv.v[i].remaining, left);
        if (r <= 0)
            continue;
        err = restore_piece(ctx, tx, source_seq, member_id, &lv.v[i], r);
        left -= r;
    }
    free(lv.v);
    if (err == JF_OK && left != 0)
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Only %lld of %lld could be restored.",
                      (long long)(amount - left), (long long)amount);
    return err;
}

jf_err jf_lots_clawback(jf_ctx *ctx, const jf_tx *tx, int64_t source_seq, const char *member_id,
                        int64_t amount)
{
    jf_points pts;
    jf_err err = jf_lots_points(ctx, member_id, &pts);
    if (err != JF_OK)
        return err;
    int64_t debt = pts.debt, total = pts.balance + pts.debt; /* Σ open remaining (I4) */
    int64_t room = ctx->prog.debt_floor > debt ? ctx->prog.debt_floor - debt : 0;
    if (total + room < amount)
        return jf_fail(ctx, JF_ERR_INSUFFICIENT_POINTS,
                       "Member %s has %lld points and %lld of debt room; %lld are needed.",
                       member_id, (long long)total, (long long)room, (long long)amount);
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT l.seq, l.remaining, l.expires_at FROM member_lots s JOIN lots l"
                    " ON l.seq = s.seq WHERE s.tenant_id=? AND s.member_id=? AND s.closed = 0"
                    " ORDER BY l.tx_seq = ? DESC, s.expires_key, s.available_at, s.seq",
                    "IsI", ctx->auth->tenant, member_id, source_seq);
    if (st == NULL)
        return JF_ERR_IO;
    lot_vec lv = {0};
    int64_t taken = 0;
    err = lot_vec_fill(&lv, st, amount);
    if (err == JF_OK)
        err = lots_take(ctx, tx, &lv, amount, &taken, NULL, NULL);
    free(lv.v);
    if (err == JF_OK && taken < amount)
        err = member_debt_add(ctx, member_id, amount - taken);
    return err;
}

jf_err jf_member_assert_points(jf_ctx *ctx, const char *member_id, jf_points *out)
{
    jf_points p = {0};
    jf_err err = jf_lots_points(ctx, member_id, &p);
    *out = p;
    if (err == JF_OK && (p.available < 0 || p.pending < 0 || p.held < 0 || p.debt < 0 ||
                         p.balance + p.debt < 0 || (p.debt > 0 && p.balance != -p.debt))) {
        fprintf(stderr,
                "jifen: assertion I4 failed for %s: balance %lld debt %lld available %lld"
                " pending %lld due %lld held %lld\n",
                member_id, (long long)p.balance, (long long)p.debt, (long long)p.available,
                (long long)p.pending, (long long)p.due, (long long)p.held);
        err = jf_fail(ctx, JF_ERR_INTERNAL, "Ledger assertion failed for %s.", member_id);
    }
    return err;
}
