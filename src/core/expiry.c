/*
 * Expiry: lots whose expires_at has passed are expired by the job, one
 * `expire` transaction per member covering all of that member's due lots
 * (a member with more than a slice's budget gets one per slice), each lot
 * at most once (I10).  The job is a writer command that handles at most
 * JF_EXPIRY_SLICE_LOTS lots and re-queues itself while there is more, so a
 * million due lots never hold the writer for long; because it picks lots by
 * state, running it again (or resuming after a crash) expires nothing twice.
 *
 * Members come up in the order of their due entries (member_due, lots.c),
 * at or before their earliest due lot.  Taking lots in
 * plain expiry order instead made one transaction per lot whenever lots of
 * one expiry date belong to many members (a transaction costs several times
 * a lot), which is the usual case: a campaign's or a year's points expire
 * together.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "tz.h"

/* The next JF_EXPIRY_SCAN_MEMBERS members with something due, earliest
 * first, with the due_at of their entries; *rows is how many were read. */
static jf_err due_members(jf_ctx *ctx, char (*ids)[JF_ID_LEN_MAX], int64_t *dues, int *n, int *rows)
{
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT m.id, d.due_at FROM member_due d JOIN members m ON m.seq = d.member_seq"
        " WHERE d.tenant_id = ?1 AND d.due_at <= ?2 ORDER BY d.due_at, d.member_seq LIMIT ?3",
        "III", ctx->auth->tenant, ctx->now_ms, (int64_t)JF_EXPIRY_SCAN_MEMBERS);
    if (st == NULL)
        return JF_ERR_IO;
    *n = *rows = 0;
    int rc = SQLITE_DONE;
    while (*rows < JF_EXPIRY_SCAN_MEMBERS && (rc = jf_db_step(st)) == SQLITE_ROW) {
        (*rows)++;
        const char *id = jf_db_text(st, 0);
        if (strlen(id) >= JF_ID_LEN_MAX)
            continue;
        dues[*n] = sqlite3_column_int64(st, 1);
        jf_str_copy(ids[(*n)++], JF_ID_LEN_MAX, id);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? JF_OK : JF_ERR_IO;
}

/* Expires lots[0..n) of member_id, worth sum points, in one transaction. */
static jf_err expire_member(jf_ctx *ctx, const char *member_id, const jf_due_lot *lots, int n,
                            int64_t sum)
{
    jf_tx tx;
    jf_err err = jf_tx_begin(ctx, &tx, "expire", member_id);
    if (err != JF_OK)
        return err;
    tx.actor = "system";
    tx.idem_key = NULL;
    err = jf_lots_expire(ctx, tx.seq, member_id, lots, n);
    tx.points = sum;
    tx.delta = -sum;
    jf_tx_post(&tx, "points", member_id, -sum);
    jf_tx_post(&tx, "expired", NULL, sum);
    if (err == JF_OK)
        err = jf_tx_finish(ctx, &tx);
    jf_tx_deinit(&tx);
    return err;
}

/* The members of one scan and their entries' due_at. */
typedef struct due_scan {
    char (*ids)[JF_ID_LEN_MAX];
    int64_t *dues;
    int n;
} due_scan;

/* Expires the due lots of the scan's members in turn while the slice has
 * budget (lots) and time, and moves each member's due entry on once its due
 * lots are gone; *moved counts the entries that had nothing due (left early
 * by a redeem) and were only moved.  *cut when the time ran out, or when a
 * member has more due lots than the budget left and the slice already
 * expired some: that member is left whole for a later slice, so that the run
 * counts it once and gives it one transaction.  Only a member with more due
 * lots than a whole slice is split; it counts with its last part. */
static jf_err expiry_members(jf_ctx *ctx, const due_scan *sc, jf_due_lot *lots, int *budget,
                             int *moved, const struct timespec *t0, bool *cut)
{
    jf_err err = JF_OK;
    for (int i = 0; err == JF_OK && i < sc->n && 0 < *budget && !*cut; i++) {
        int n = 0;
        int64_t points = 0;
        err = jf_lots_due(ctx, sc->ids[i], *budget + 1, lots, &n, &points);
        if (err == JF_OK && n == 0) {
            err = jf_due_advance(ctx, sc->ids[i], sc->dues[i]);
            (*moved)++;
            *cut = jf_elapsed_us(t0) > JF_EXPIRY_SLICE_US;
            continue;
        }
        if (err != JF_OK)
            continue;
        bool more = n > *budget;
        if (more && *budget < JF_EXPIRY_SLICE_LOTS) {
            *cut = true;
            break;
        }
        if (more)
            points -= lots[--n].remaining;
        err = expire_member(ctx, sc->ids[i], lots, n, points);
        if (err == JF_OK && !more)
            err = jf_due_advance(ctx, sc->ids[i], sc->dues[i]);
        *budget -= n;
        ctx->acc[0] += points;
        ctx->acc[1] += n;
        ctx->acc[2] += more ? 0 : 1;
        *cut = jf_elapsed_us(t0) > JF_EXPIRY_SLICE_US;
    }
    return err;
}

/* One slice: members in turn until JF_EXPIRY_SLICE_LOTS lots or
 * JF_EXPIRY_SLICE_US of work; sets ctx->again when there may be more.  Its
 * members come from short scans, another whenever the last one's members
 * are done: one long scan per slice read four times the lots the slice then
 * had time for. */
static jf_err expiry_slice(jf_ctx *ctx, due_scan *sc, jf_due_lot *lots)
{
    int budget = JF_EXPIRY_SLICE_LOTS, moved = 0;
    /* A slice also ends after JF_EXPIRY_SLICE_US of work, so that traffic
     * queued behind it waits at most about that long. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool cut = false, full = true;
    jf_err err = JF_OK;
    while (err == JF_OK && budget > 0 && !cut && full) {
        int rows = 0, before = budget, moved_before = moved;
        err = due_members(ctx, sc->ids, sc->dues, &sc->n, &rows);
        full = rows == JF_EXPIRY_SCAN_MEMBERS;
        if (err == JF_OK)
            err = expiry_members(ctx, sc, lots, &budget, &moved, &t0, &cut);
        /* A scan that neither expired nor moved anything would find the
         * same again. */
        if (budget == before && moved == moved_before)
            break;
    }
    /* A slice that changed nothing is the last, whatever it looked at: the
     * next one would find the same. */
    ctx->again = (budget < JF_EXPIRY_SLICE_LOTS || moved > 0) && (cut || budget == 0 || full);
    return err;
}

static jf_err expiry_run(jf_ctx *ctx)
{
    due_scan sc = {.ids = malloc(sizeof(*sc.ids) * JF_EXPIRY_SCAN_MEMBERS),
                   .dues = malloc(sizeof(*sc.dues) * JF_EXPIRY_SCAN_MEMBERS)};
    /* One more than a slice takes: whether a member has more (expiry_members). */
    jf_due_lot *lots = malloc(sizeof(*lots) * (JF_EXPIRY_SLICE_LOTS + 1));
    jf_err err = sc.ids && sc.dues && lots ? expiry_slice(ctx, &sc, lots) : JF_ERR_NOMEM;
    free(sc.ids);
    free(sc.dues);
    free(lots);
    if (err != JF_OK)
        return err;
    jf_json_set(ctx->out, "expired_points", json_integer(ctx->acc[0]));
    jf_json_set(ctx->out, "lots", json_integer(ctx->acc[1]));
    jf_json_set(ctx->out, "members", json_integer(ctx->acc[2]));
    return JF_OK;
}

static jf_err expiry_run_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {NULL};
    return jf_json_allow(ctx, ctx->body, fields);
}

static jf_err expiry_forecast(jf_ctx *ctx)
{
    int64_t until = 0, limit, offset;
    const char *s = jf_param_get(ctx, "until");
    if (s == NULL || !jf_time_parse_rfc3339(s, &until))
        return jf_fail(ctx, JF_ERR_INVALID_REQUEST, "until is required: an RFC 3339 time.");
    jf_err err = jf_list_params(ctx, &limit, &offset);
    if (err != JF_OK)
        return err;
    offset = offset < 0 ? 0 : offset;
    int64_t total_points = 0, total_lots = 0;
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT m.id, SUM(s.value), count(*), MIN(s.key2) FROM member_due d"
                    " JOIN members m ON m.seq = d.member_seq JOIN member_state s ON s.member_seq ="
                    " d.member_seq AND s.kind = 1 AND s.key1 = 0 AND s.key2 <= ?2"
                    " WHERE d.tenant_id = ?1 AND d.due_at <= ?2 GROUP BY m.id ORDER BY m.id",
                    "II", ctx->auth->tenant, until);
    if (st == NULL)
        return JF_ERR_IO;
    json_t *data = json_array();
    int64_t row = 0, next = -1;
    while (jf_db_step(st) == SQLITE_ROW) {
        total_points += sqlite3_column_int64(st, 1);
        total_lots += sqlite3_column_int64(st, 2);
        if (row >= offset && row < offset + limit)
            json_array_append_new(data, json_pack("{sssIsIso}", "member_id", jf_db_text(st, 0),
                                                  "points", (json_int_t)sqlite3_column_int64(st, 1),
                                                  "lots", (json_int_t)sqlite3_column_int64(st, 2),
                                                  "earliest_expires_at",
                                                  jf_json_time_value(sqlite3_column_int64(st, 3))));
        else if (row == offset + limit)
            next = offset + limit;
        row++;
    }
    sqlite3_reset(st);
    json_t *o = jf_list_envelope(data, next);
    jf_json_set(o, "until", jf_json_time_value(until));
    jf_json_set(o, "total_points", json_integer(total_points));
    jf_json_set(o, "total_lots", json_integer(total_lots));
    json_decref(ctx->out);
    ctx->out = o;
    return JF_OK;
}

const jf_op_impl jf_op_expiry_run = {expiry_run_validate, expiry_run};
const jf_op_impl jf_op_expiry_forecast = {NULL, expiry_forecast};
