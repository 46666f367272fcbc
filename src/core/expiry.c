/*
 * Expiry: lots whose expires_at has passed are expired by the job, one
 * `expire` transaction per member covering all of that member's due lots
 * (a member with more than a slice's budget gets one per slice), each lot
 * at most once (I10).  The job is a writer command that handles at most
 * JF_EXPIRY_SLICE_LOTS lots and re-queues itself while there is more, so a
 * million due lots never hold the writer for long; because it picks lots by
 * state, running it again (or resuming after a crash) expires nothing twice.
 *
 * Members come up in the order of their earliest due lot.  Taking lots in
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

#define DUE_WHERE                                                                                  \
    " tenant_id=?1 AND expires_at <= ?2 AND remaining > 0 AND expired_tx_seq IS NULL"              \
    " AND expires_at IS NOT NULL"

/* Whether id is among ids[0..n); seen is an open-addressing set of indexes
 * into ids (2 * JF_EXPIRY_SCAN_LOTS slots, -1 when free) that id joins when
 * it is not. */
static bool member_seen(char (*ids)[JF_ID_LEN_MAX], int n, int *seen, const char *id)
{
    enum { SLOTS = 2 * JF_EXPIRY_SCAN_LOTS };
    for (uint64_t i = jf_hash_str(JF_HASH_STR_SEED, id) % SLOTS;; i = (i + 1) % SLOTS) {
        if (seen[i] < 0) {
            seen[i] = n;
            return false;
        }
        if (strcmp(ids[seen[i]], id) == 0)
            return true;
    }
}

/* The members owning the next JF_EXPIRY_SCAN_LOTS due lots, in the order
 * of their earliest; *rows is how many lots were looked at. */
static jf_err due_members(jf_ctx *ctx, char (*ids)[JF_ID_LEN_MAX], int *n, int *rows)
{
    int seen[2 * JF_EXPIRY_SCAN_LOTS];
    memset(seen, -1, sizeof(seen));
    sqlite3_stmt *st = jf_db_query(
        ctx->db, "SELECT member_id FROM lots WHERE" DUE_WHERE " ORDER BY expires_at LIMIT ?3",
        "III", ctx->auth->tenant, ctx->now_ms, (int64_t)JF_EXPIRY_SCAN_LOTS);
    if (st == NULL)
        return JF_ERR_IO;
    *n = *rows = 0;
    while (*rows < JF_EXPIRY_SCAN_LOTS && jf_db_step(st) == SQLITE_ROW) {
        (*rows)++;
        const char *id = jf_db_text(st, 0);
        if (strlen(id) < JF_ID_LEN_MAX && !member_seen(ids, *n, seen, id))
            jf_str_copy(ids[(*n)++], JF_ID_LEN_MAX, id);
    }
    sqlite3_reset(st);
    return JF_OK;
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

/* Expires the due lots of ids[0..members) in turn while the slice has
 * budget (lots) and time; *cut when the time ran out, or when a member has
 * more due lots than the budget left and the slice already expired some:
 * that member is left whole for a later slice, so that the run counts it
 * once and gives it one transaction.  Only a member with more due lots than
 * a whole slice is split; it counts with its last part. */
static jf_err expiry_members(jf_ctx *ctx, char (*ids)[JF_ID_LEN_MAX], int members, jf_due_lot *lots,
                             int *budget, const struct timespec *t0, bool *cut)
{
    jf_err err = JF_OK;
    for (int i = 0; err == JF_OK && i < members && 0 < *budget && !*cut; i++) {
        int n = 0;
        int64_t points = 0;
        err = jf_lots_due(ctx, ids[i], *budget + 1, lots, &n, &points);
        if (err != JF_OK || n == 0)
            continue;
        bool more = n > *budget;
        if (more && *budget < JF_EXPIRY_SLICE_LOTS) {
            *cut = true;
            break;
        }
        if (more)
            points -= lots[--n].remaining;
        err = expire_member(ctx, ids[i], lots, n, points);
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
 * are done: a scan reads each lot's row (a random page), and one long scan
 * per slice read four times the lots the slice then had time for. */
static jf_err expiry_slice(jf_ctx *ctx, char (*ids)[JF_ID_LEN_MAX], jf_due_lot *lots)
{
    int budget = JF_EXPIRY_SLICE_LOTS;
    /* A slice also ends after JF_EXPIRY_SLICE_US of work, so that traffic
     * queued behind it waits at most about that long. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool cut = false, full = true;
    jf_err err = JF_OK;
    while (err == JF_OK && budget > 0 && !cut && full) {
        int members = 0, rows = 0, before = budget;
        err = due_members(ctx, ids, &members, &rows);
        full = rows == JF_EXPIRY_SCAN_LOTS;
        if (err == JF_OK)
            err = expiry_members(ctx, ids, members, lots, &budget, &t0, &cut);
        /* A scan whose members had nothing to expire would find the same
         * again. */
        if (budget == before)
            break;
    }
    /* A slice that expired nothing is the last, whatever it looked at:
     * the next one would find the same. */
    ctx->again = budget < JF_EXPIRY_SLICE_LOTS && (cut || budget == 0 || full);
    return err;
}

static jf_err expiry_run(jf_ctx *ctx)
{
    char(*ids)[JF_ID_LEN_MAX] = malloc(sizeof(*ids) * JF_EXPIRY_SCAN_LOTS);
    /* One more than a slice takes: whether a member has more (expiry_members). */
    jf_due_lot *lots = malloc(sizeof(*lots) * (JF_EXPIRY_SLICE_LOTS + 1));
    jf_err err = ids && lots ? expiry_slice(ctx, ids, lots) : JF_ERR_NOMEM;
    free(ids);
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
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT member_id, SUM(remaining), count(*), MIN(expires_at) FROM lots"
        " WHERE tenant_id=? AND expires_at <= ? AND remaining > 0 AND expired_tx_seq IS NULL"
        " AND expires_at IS NOT NULL GROUP BY member_id ORDER BY member_id",
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
