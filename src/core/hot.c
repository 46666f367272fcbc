/*
 * Hot rows, written once per batch (docs/PERFORMANCE.md, DESIGN.md
 * "Execution model").
 *
 * Every transaction extends its tenant's hash chain (tenants.tx_seq and
 * chain_head) and nearly every one posts to a program account (an earn
 * debits program:issuance).  Those rows are shared by every write of the
 * tenant, so updating them per write costs one statement and one B-tree
 * update each time, and does nothing for anyone: only the last value of the
 * batch is ever seen outside the writer.  The writer keeps them here instead
 * and writes each one once, just before the batch's COMMIT (jf_hot_flush).
 *
 * A refused command's writes are undone (its savepoint rolled back, or it
 * wrote nothing: engine.c, jf_writer_apply); its changes here must go too.
 * Each entry remembers its value from before the current command the first
 * time the command changes it (jf_hot_cmd_begin starts a command), and
 * jf_hot_cmd_rollback puts those values back.  Only the writer thread
 * touches this table.
 *
 * A rule's usage (rule_usage, schema.c version 12: the points and awards it
 * has given, which its budget and its campaign's count) is as shared: every
 * award of a busy rule adds to one row.  Its additions wait here too, as a
 * row "usage:<rule id>" whose value and awards are what the batch has added
 * and not yet written; a statement of the batch that reads rule_usage calls
 * jf_hot_usage_flush first.
 *
 * When the table is full (more distinct tenants or program accounts in one
 * batch than it holds, JF_HOT_ROWS_MAX for the engine) a row not in it is read and written
 * directly, as before, which is always correct because the table never holds it.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

typedef struct hot_row {
    int64_t tenant;
    char account[sizeof(((jf_posting *)0)->account)]; /* "" for the chain head */
    bool used, dirty;
    int64_t stored;              /* balance or tx_seq as stored before this batch */
    int64_t value;               /* balance or tx_seq now; a usage row's points to add */
    int64_t awards;              /* a usage row's awards to add */
    uint8_t head[JF_HASH_BYTES]; /* the chain head (chain rows only) */
    int64_t time_max;            /* tenants.tx_time_max (chain rows only) */
    uint64_t cmd;                /* the command that saved the fields below */
    int64_t saved_value;         /* value before that command */
    int64_t saved_awards;
    int64_t saved_time_max;
    uint8_t saved_head[JF_HASH_BYTES];
    bool saved_dirty;
} hot_row;

/* Open addressing at most half full, so lookups stay short. */
struct jf_hot {
    hot_row *rows; /* slots: a power of two, at least twice rows_max */
    size_t mask;   /* slots - 1 */
    int *used;     /* slots in use, to clear them after the batch */
    int n, rows_max;
    uint64_t cmd;
};

jf_hot *jf_hot_new(int rows_max)
{
    if (rows_max < 1)
        return NULL;
    size_t slots = 2;
    while (slots < 2 * (size_t)rows_max)
        slots *= 2;
    jf_hot *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->rows = calloc(slots, sizeof(*h->rows));
    h->used = calloc((size_t)rows_max, sizeof(*h->used));
    h->mask = slots - 1;
    h->rows_max = rows_max;
    if (h->rows == NULL || h->used == NULL) {
        jf_hot_free(h);
        return NULL;
    }
    return h;
}

void jf_hot_free(jf_hot *h)
{
    if (h == NULL)
        return;
    free(h->rows);
    free(h->used);
    free(h);
}

static size_t hot_hash(int64_t tenant, const char *account)
{
    uint64_t x = jf_hash_str(JF_HASH_STR_SEED ^ (uint64_t)tenant, account);
    return (size_t)(x ^ (x >> 29));
}

/* The row of (tenant, account), or the empty slot for it, or NULL when the
 * table is full and the row is not in it. */
static hot_row *hot_slot(jf_hot *h, int64_t tenant, const char *account)
{
    for (size_t i = hot_hash(tenant, account) & h->mask, probes = 0; probes <= h->mask;
         i = (i + 1) & h->mask, probes++) {
        hot_row *r = &h->rows[i];
        if (!r->used)
            return h->n < h->rows_max ? r : NULL;
        if (r->tenant == tenant && strcmp(r->account, account) == 0)
            return r;
    }
    return NULL;
}

static void hot_claim(jf_hot *h, hot_row *r, int64_t tenant, const char *account)
{
    memset(r, 0, sizeof(*r));
    r->used = true;
    r->tenant = tenant;
    jf_str_copy(r->account, sizeof(r->account), account);
    h->used[h->n++] = (int)(r - h->rows);
}

/* Saves the row's current value the first time this command changes it. */
static void hot_touch(jf_hot *h, hot_row *r)
{
    if (r->cmd == h->cmd)
        return;
    r->cmd = h->cmd;
    r->saved_value = r->value;
    r->saved_awards = r->awards;
    r->saved_time_max = r->time_max;
    r->saved_dirty = r->dirty;
    memcpy(r->saved_head, r->head, JF_HASH_BYTES);
}

void jf_hot_cmd_begin(jf_hot *h)
{
    if (h)
        h->cmd++;
}

void jf_hot_cmd_rollback(jf_hot *h)
{
    for (int i = 0; h && i < h->n; i++) {
        hot_row *r = &h->rows[h->used[i]];
        if (r->cmd != h->cmd)
            continue;
        r->value = r->saved_value;
        r->awards = r->saved_awards;
        r->time_max = r->saved_time_max;
        r->dirty = r->saved_dirty;
        memcpy(r->head, r->saved_head, JF_HASH_BYTES);
        r->cmd = 0;
    }
}

static void hot_clear(jf_hot *h)
{
    for (int i = 0; i < h->n; i++)
        h->rows[h->used[i]].used = false;
    h->n = 0;
}

/* ---- the chain head ---- */

/* Moves the stored head from prev_seq to next's; JF_ERR_INTERNAL when it
 * was not at prev_seq. */
static jf_err chain_write(jf_db *db, int64_t tenant, const jf_chain_head *next, int64_t prev_seq)
{
    jf_err err =
        jf_db_run(db,
                  "UPDATE tenants SET tx_seq=?, chain_head=?, tx_time_max=? WHERE id=? AND"
                  " tx_seq=?",
                  "IbIII", next->seq, next->hash, JF_HASH_BYTES, next->time_max, tenant, prev_seq);
    return err == JF_OK && jf_db_changes(db) != 1 ? JF_ERR_INTERNAL : err;
}

static jf_err chain_read(jf_ctx *ctx, jf_chain_head *out)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db, "SELECT tx_seq, chain_head, tx_time_max FROM tenants WHERE id=?", "I",
                    ctx->auth->tenant);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_ERR_UNAUTHORIZED;
    if (jf_db_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 1) == JF_HASH_BYTES) {
        out->seq = sqlite3_column_int64(st, 0);
        memcpy(out->hash, sqlite3_column_blob(st, 1), JF_HASH_BYTES);
        out->time_max = sqlite3_column_int64(st, 2);
        err = JF_OK;
    }
    sqlite3_reset(st);
    return err;
}

jf_err jf_hot_chain_get(jf_ctx *ctx, jf_chain_head *out)
{
    jf_hot *h = ctx->eng ? ctx->eng->hot : NULL;
    hot_row *r = h ? hot_slot(h, ctx->auth->tenant, "") : NULL;
    if (r == NULL)
        return chain_read(ctx, out);
    if (!r->used) {
        jf_chain_head stored;
        jf_err err = chain_read(ctx, &stored);
        if (err != JF_OK)
            return err;
        hot_claim(h, r, ctx->auth->tenant, "");
        r->stored = r->value = stored.seq;
        r->time_max = stored.time_max;
        memcpy(r->head, stored.hash, JF_HASH_BYTES);
    }
    out->seq = r->value;
    out->time_max = r->time_max;
    memcpy(out->hash, r->head, JF_HASH_BYTES);
    return JF_OK;
}

jf_err jf_hot_chain_set(jf_ctx *ctx, const jf_chain_head *next)
{
    jf_hot *h = ctx->eng ? ctx->eng->hot : NULL;
    hot_row *r = h ? hot_slot(h, ctx->auth->tenant, "") : NULL;
    if (r == NULL || !r->used) {
        jf_err err = chain_write(ctx->db, ctx->auth->tenant, next, next->seq - 1);
        return err == JF_ERR_INTERNAL
                   ? jf_fail(ctx, err, "The chain head moved to %lld.", (long long)next->seq)
                   : err;
    }
    if (next->seq != r->value + 1 || next->time_max < r->time_max)
        return jf_fail(ctx, JF_ERR_INTERNAL, "The chain head moved to %lld.", (long long)next->seq);
    hot_touch(h, r);
    r->value = next->seq;
    r->time_max = next->time_max;
    memcpy(r->head, next->hash, JF_HASH_BYTES);
    r->dirty = true;
    return JF_OK;
}

/* ---- program accounts ---- */

/* A program account's row exists after its first posting, so an UPDATE
 * comes first, as for a member's (member_account_upsert): the upsert with
 * RETURNING it replaces built an ephemeral table for the returned row, and
 * cost 7.9 us per batch at 5,000 earns/s against 2.0 us for this. */
static jf_err account_upsert(jf_db *db, int64_t tenant, const char *account, int64_t amount,
                             int64_t *balance)
{
    jf_err err = jf_db_run(db,
                           "UPDATE accounts SET balance = jf_kept(balance + ?) WHERE tenant_id = ?"
                           " AND account = ?",
                           "IIs", amount, tenant, account);
    if (err != JF_OK)
        return err;
    if (jf_db_changes(db) == 1) {
        *balance = db->kept;
        return JF_OK;
    }
    *balance = amount;
    return jf_db_run(db, "INSERT INTO accounts(tenant_id, account, balance) VALUES(?,?,?)", "IsI",
                     tenant, account, amount);
}

static jf_err account_range_fail(jf_ctx *ctx, const char *account)
{
    return jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "Account %s would leave the points range.",
                   account);
}

/* A member's account lives in member_state beside the member's lots and
 * transactions (schema.c, version 7): one page for all three per write. */
static jf_err member_account_upsert(jf_ctx *ctx, const char *account, int64_t amount,
                                    int64_t *balance)
{
    static const char *const kinds[] = {"points", "growth", "held"};
    const char *id = account + 7, *colon = strchr(id, ':');
    int code = -1;
    for (int i = 0; colon && i < 3; i++)
        if (strcmp(colon + 1, kinds[i]) == 0)
            code = i;
    if (code < 0 || colon - id >= JF_ID_LEN_MAX)
        return jf_fail(ctx, JF_ERR_INTERNAL, "No such member account: %s.", account);
    char member_id[JF_ID_LEN_MAX];
    memcpy(member_id, id, (size_t)(colon - id));
    member_id[colon - id] = '\0';
    /* Nearly every write finds the account: an UPDATE first costs one search
     * where an upsert costs two (the failed insert, then the update). */
    int64_t seq = 0;
    jf_err err = jf_member_seq(ctx, member_id, &seq);
    if (err == JF_OK)
        jf_member_written(ctx, seq);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "UPDATE member_state SET value = jf_kept(value + ?) WHERE member_seq = ?"
                        " AND kind = 0 AND key1 = ? AND key2 = 0 AND key3 = 0 AND key4 = 0",
                        "IIi", amount, seq, code);
    if (err != JF_OK)
        return err;
    if (jf_db_changes(ctx->db) == 1) {
        *balance = ctx->db->kept;
        return JF_OK;
    }
    *balance = amount;
    return jf_db_run(ctx->db, "INSERT INTO member_state VALUES(?,0,?,0,0,0,?)", "IiI", seq, code,
                     amount);
}

jf_err jf_account_add(jf_ctx *ctx, const char *account, int64_t amount, int64_t *balance)
{
    jf_err err = strncmp(account, "member:", 7) == 0
                     ? member_account_upsert(ctx, account, amount, balance)
                     : account_upsert(ctx->db, ctx->auth->tenant, account, amount, balance);
    return err == JF_OK && !jf_points_in_range(*balance) ? account_range_fail(ctx, account) : err;
}

jf_err jf_hot_account_add(jf_ctx *ctx, const char *account, int64_t amount, int64_t *balance)
{
    jf_hot *h = ctx->eng ? ctx->eng->hot : NULL;
    hot_row *r = h ? hot_slot(h, ctx->auth->tenant, account) : NULL;
    if (r == NULL)
        return jf_account_add(ctx, account, amount, balance);
    if (!r->used) {
        int64_t stored = 0;
        jf_err err = jf_db_int(ctx->db, &stored, 0,
                               "SELECT balance FROM accounts WHERE tenant_id=? AND account=?", "Is",
                               ctx->auth->tenant, account);
        if (err != JF_OK)
            return err;
        hot_claim(h, r, ctx->auth->tenant, account);
        r->stored = r->value = stored;
    }
    int64_t next = 0;
    if (__builtin_add_overflow(r->value, amount, &next) || !jf_points_in_range(next))
        return account_range_fail(ctx, account);
    hot_touch(h, r);
    r->value = next;
    r->dirty = true;
    *balance = next;
    return JF_OK;
}

/* ---- rule usage ---- */

#define USAGE_PREFIX "usage:"

static jf_err usage_write(jf_db *db, int64_t tenant, const char *rule_id, int64_t points,
                          int64_t awards)
{
    return jf_db_run(db,
                     "INSERT INTO rule_usage(tenant_id, rule_id, points, awards) VALUES(?,?,?,?)"
                     " ON CONFLICT(tenant_id, rule_id) DO UPDATE SET"
                     " points = points + excluded.points, awards = awards + excluded.awards",
                     "IsII", tenant, rule_id, points, awards);
}

/* The writer's table when ctx runs on the writer's connection: the usage
 * functions are also reached from reads (a campaign's rendering). */
static jf_hot *writer_hot(const jf_ctx *ctx)
{
    return jf_ctx_on_writer(ctx) ? ctx->eng->hot : NULL;
}

jf_err jf_hot_usage_add(jf_ctx *ctx, const char *rule_id, int64_t points, int64_t awards)
{
    jf_hot *h = writer_hot(ctx);
    char key[sizeof(((hot_row *)0)->account)];
    hot_row *r = NULL;
    if (h && strlen(rule_id) < sizeof key - strlen(USAGE_PREFIX)) {
        snprintf(key, sizeof key, USAGE_PREFIX "%s", rule_id);
        r = hot_slot(h, ctx->auth->tenant, key);
    }
    if (r == NULL)
        return usage_write(ctx->db, ctx->auth->tenant, rule_id, points, awards);
    if (!r->used)
        hot_claim(h, r, ctx->auth->tenant, key);
    assert(points >= 0 && awards >= 0 && r->value >= 0 && r->awards >= 0);
    hot_touch(h, r);
    r->value += points;
    r->awards += awards;
    r->dirty = true;
    return JF_OK;
}

static bool is_usage(const hot_row *r)
{
    return strncmp(r->account, USAGE_PREFIX, strlen(USAGE_PREFIX)) == 0;
}

/* Writes a usage row's additions to its rule's row of rule_usage. */
static jf_err usage_row_write(jf_db *db, const hot_row *r)
{
    return usage_write(db, r->tenant, r->account + strlen(USAGE_PREFIX), r->value, r->awards);
}

/* Writes a usage row's additions and keeps it with none (the command's
 * rollback puts them back, its savepoint's rollback takes the write back). */
static jf_err usage_row_flush(jf_hot *h, jf_db *db, hot_row *r)
{
    jf_err err = usage_row_write(db, r);
    if (err == JF_OK) {
        hot_touch(h, r);
        r->value = r->awards = 0;
        r->dirty = false;
    }
    return err;
}

jf_err jf_hot_usage_flush(jf_ctx *ctx)
{
    jf_hot *h = writer_hot(ctx);
    jf_err err = JF_OK;
    for (int i = 0; h && err == JF_OK && i < h->n; i++) {
        hot_row *r = &h->rows[h->used[i]];
        if (r->dirty && r->tenant == ctx->auth->tenant && is_usage(r))
            err = usage_row_flush(h, ctx->db, r);
    }
    return err;
}

/* ---- once per batch ---- */

static jf_err hot_write(jf_db *db, const hot_row *r)
{
    int64_t balance = 0;
    if (is_usage(r))
        return usage_row_write(db, r);
    if (r->account[0] == '\0') {
        jf_chain_head next = {.seq = r->value, .time_max = r->time_max};
        memcpy(next.hash, r->head, JF_HASH_BYTES);
        return chain_write(db, r->tenant, &next, r->stored);
    }
    jf_err err = account_upsert(db, r->tenant, r->account, r->value - r->stored, &balance);
    /* Nothing but this batch writes the row, so it must land where the
     * batch left it. */
    return err == JF_OK && balance != r->value ? JF_ERR_INTERNAL : err;
}

void jf_hot_discard(jf_hot *h)
{
    if (h)
        hot_clear(h);
}

jf_err jf_hot_flush(jf_hot *h, jf_db *db)
{
    jf_err err = JF_OK;
    for (int i = 0; h && err == JF_OK && i < h->n; i++) {
        const hot_row *r = &h->rows[h->used[i]];
        if (r->dirty)
            err = hot_write(db, r);
    }
    if (h)
        hot_clear(h);
    return err;
}
