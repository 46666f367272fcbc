/*
 * Idempotency keys: the keys in flight, the request fingerprint a replay
 * must match, and each key's record of the answer it replays (DESIGN.md,
 * Idempotency; I5).
 *
 * A key's answer is kept in one of two forms.  Most answers are stored whole
 * in `responses` and replayed byte for byte.  The answer of an earn, a
 * redeem or an adjust, {"transaction": T, "points": P}, is instead rebuilt on
 * a replay (schema version 19): T from the transaction's own row, which
 * never changes, rendered as the write rendered it (nothing reversed yet),
 * and P from the three numbers the key's row keeps.  The stored copy was
 * about 430 bytes and one more statement per write, the largest row a write
 * made (docs/PERFORMANCE-HISTORY.md, since commit 0e83ab5).
 *
 * The rebuilt form is format 1 (response_seq -1): the transaction's
 * rendering as jf_tx_view_text writes it today.  That rendering must not
 * change under keys already given out: tests/api/test_idempotency.py pins
 * its bytes, and a change to it needs a format 2 that keeps format 1's
 * builder for the keys before it.  With JIFEN_CHECK_REPLIES set (the API
 * tests set it) every rebuilt record is rebuilt once as it is stored and
 * compared with the answer it replaces.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cmd.h"
#include "ledger.h"

/* response_seq of a key whose answer is rebuilt by format 1 (the insert in
 * jf_idem_store spells it). */
#define REPLY_REBUILT_V1 (-1)

/* ---- idempotency keys in flight ---- */

static size_t inflight_bucket(int64_t tenant, const char *key)
{
    return jf_hash_str((uint64_t)tenant * 0x9e3779b97f4a7c15ull, key) % JF_INFLIGHT_BUCKETS;
}

/* Registers the key: JF_ERR_IDEMPOTENCY_KEY_IN_FLIGHT when it already is,
 * JF_ERR_NOMEM when the entry cannot be made (the key is then not in flight,
 * and a retry must not be told it is). */
jf_err jf_inflight_add(jf_engine *eng, int64_t tenant, const char *key)
{
    size_t b = inflight_bucket(tenant, key);
    jf_err err = JF_ERR_IDEMPOTENCY_KEY_IN_FLIGHT;
    pthread_mutex_lock(&eng->idem_mu);
    jf_inflight *e = eng->inflight[b];
    while (e && !(e->tenant == tenant && strcmp(e->key, key) == 0))
        e = e->next;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        err = e ? JF_OK : JF_ERR_NOMEM;
    }
    if (err == JF_OK) {
        e->tenant = tenant;
        jf_str_copy(e->key, sizeof(e->key), key);
        e->next = eng->inflight[b];
        eng->inflight[b] = e;
    }
    pthread_mutex_unlock(&eng->idem_mu);
    return err;
}

void jf_inflight_remove(jf_engine *eng, int64_t tenant, const char *key)
{
    size_t b = inflight_bucket(tenant, key);
    pthread_mutex_lock(&eng->idem_mu);
    for (jf_inflight **pp = &eng->inflight[b]; *pp; pp = &(*pp)->next) {
        if ((*pp)->tenant == tenant && strcmp((*pp)->key, key) == 0) {
            jf_inflight *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&eng->idem_mu);
}

/* ---- keys and fingerprints ---- */

bool jf_idem_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n < 1 || n > JF_IDEM_KEY_LEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return false;
    return true;
}

/* The request fingerprint that a replay must match: op, path id, canonical
 * body.  JF_ERR_NOMEM when the canonical body cannot be made: a fingerprint
 * without it would refuse the request's own retry as another request. */
jf_err jf_request_hash(jf_cmd *cmd)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, JF_HASH_BYTES);
    const char *op = jf_op_name(cmd->op);
    crypto_generichash_update(&st, (const uint8_t *)op, strlen(op) + 1);
    const char *pid = cmd->path_id ? cmd->path_id : "";
    crypto_generichash_update(&st, (const uint8_t *)pid, strlen(pid) + 1);
    size_t n = 0;
    char *canon = jf_json_dump_sorted(cmd->body, &n);
    if (canon == NULL)
        return JF_ERR_NOMEM;
    crypto_generichash_update(&st, (const uint8_t *)canon, n);
    free(canon);
    crypto_generichash_final(&st, cmd->req_hash, JF_HASH_BYTES);
    return JF_OK;
}

/* ---- the answer a key replays ---- */

jf_idem_form jf_idem_form_of(const jf_ctx *ctx)
{
    /* Only the answer ctx_finish writes as {"transaction": T, "points": P}
     * and nothing more: the rebuilt answer writes the same with
     * jf_points_reply_text. */
    const jf_points *p = &ctx->reply_points;
    jf_idem_form f = {0};
    if ((ctx->reply_tx == NULL && ctx->reply_draft == NULL) || ctx->reply_tx_id[0] == '\0' ||
        json_object_size(ctx->out) != 0)
        return f;
    f = (jf_idem_form){
        .rebuilt = true, .available = p->available, .pending = p->pending, .held = p->held};
    return f;
}

/* Format 1: {"transaction": T, "points": P}, T the transaction tx_id as
 * the write that made it rendered it, P the member's points after it. */
static jf_err reply_rebuild_v1(jf_ctx *ctx, const char *tx_id, const jf_idem_form *f,
                               jf_result *res)
{
    jf_jtext b = {0};
    jf_points p = {.available = f->available, .pending = f->pending, .held = f->held};
    jf_err err = jf_tx_stored_reply_text(ctx, tx_id ? tx_id : "", &b);
    char *tx = err == JF_OK ? jf_jt_take(&b, NULL) : NULL;
    if (err == JF_OK && tx == NULL)
        err = JF_ERR_NOMEM;
    if (err == JF_OK && (res->body = jf_points_reply_text(tx, &p, NULL, &res->body_len)) == NULL)
        err = JF_ERR_NOMEM;
    if (err == JF_ERR_NOT_FOUND) {
        snprintf(res->detail, sizeof(res->detail),
                 "Idempotency-Key '%s' names transaction '%s', which is missing.", ctx->idem_key,
                 tx_id ? tx_id : "");
        err = JF_ERR_CORRUPT;
    }
    free(b.p);
    free(tx);
    return err;
}

/* The key's row st matched the request: its answer into cmd->res. */
static jf_err idem_answer(jf_ctx *ctx, sqlite3_stmt *st, jf_cmd *cmd)
{
    jf_result *res = &cmd->res;
    res->created = sqlite3_column_int(st, 2) != 0;
    res->replayed = true;
    if (sqlite3_column_int64(st, 3) == REPLY_REBUILT_V1) {
        jf_idem_form f = {.rebuilt = true,
                          .available = sqlite3_column_int64(st, 6),
                          .pending = sqlite3_column_int64(st, 7),
                          .held = sqlite3_column_int64(st, 8)};
        return reply_rebuild_v1(ctx, jf_db_text(st, 5), &f, res);
    }
    if (sqlite3_column_type(st, 4) == SQLITE_NULL) {
        snprintf(res->detail, sizeof(res->detail),
                 "The stored answer of Idempotency-Key '%s' is missing.", cmd->idem_key);
        return JF_ERR_CORRUPT;
    }
    res->body = strdup(jf_db_text(st, 4));
    res->body_len = res->body ? strlen(res->body) : 0;
    return res->body ? JF_OK : JF_ERR_NOMEM;
}

jf_err jf_idem_lookup(jf_ctx *ctx, jf_cmd *cmd, bool *found)
{
    *found = false;
    if (jf_idem_filter_absent(jf_ctx_idem_filter(ctx), cmd->auth.tenant, cmd->idem_key))
        return JF_OK;
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT i.op, i.request_hash, i.created, i.response_seq, r.body, i.tx_id,"
        " i.after_available, i.after_pending, i.after_held FROM idempotency i"
        " LEFT JOIN responses r ON r.seq = i.response_seq WHERE i.tenant_id=? AND i.key=?",
        "Is", cmd->auth.tenant, cmd->idem_key);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_OK;
    int rc = jf_db_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = JF_ERR_IO; /* not "no such key": the command must not run */
    if (rc == SQLITE_ROW) {
        *found = true;
        const void *h = sqlite3_column_blob(st, 1);
        if (strcmp(jf_db_text(st, 0), jf_op_name(cmd->op)) != 0 ||
            sqlite3_column_bytes(st, 1) != JF_HASH_BYTES ||
            sodium_memcmp(h, cmd->req_hash, JF_HASH_BYTES) != 0) {
            err = JF_ERR_IDEMPOTENCY_KEY_REUSED;
            snprintf(cmd->res.detail, sizeof(cmd->res.detail),
                     "Idempotency-Key '%s' was first used with another request.", cmd->idem_key);
        } else {
            err = idem_answer(ctx, st, cmd);
        }
    }
    sqlite3_reset(st);
    return err;
}

/* JIFEN_CHECK_REPLIES: the record just stored rebuilds the answer given. */
static jf_err idem_check(jf_ctx *ctx, const jf_cmd *cmd, const char *tx_id, const jf_idem_form *f)
{
    /* An answer the syncer will render (cmd->draft) is rendered here too,
     * by the same function. */
    size_t len = cmd->res.body_len;
    char *drafted = cmd->draft ? jf_reply_draft_render(cmd->draft, NULL, &len) : NULL;
    const char *given = cmd->draft ? drafted : cmd->res.body;
    if (given == NULL)
        return JF_ERR_NOMEM;
    jf_result again = {0};
    jf_err err = reply_rebuild_v1(ctx, tx_id, f, &again);
    bool same = err == JF_OK && again.body_len == len && memcmp(again.body, given, len) == 0;
    if (err == JF_OK && !same) {
        fprintf(stderr,
                "jifen: assertion failed: the answer of Idempotency-Key '%s' rebuilds otherwise\n"
                "  given:   %s\n  rebuilt: %s\n",
                cmd->idem_key, given, again.body);
        err = jf_fail(ctx, JF_ERR_INTERNAL, "The answer of '%s' would replay otherwise.",
                      cmd->idem_key);
    }
    free(again.body);
    free(drafted);
    return err;
}

/* The rebuilt form, when f says the answer has its shape and the write made
 * a transaction; else the answer stored whole.  Responses are appended
 * apart from the keys (schema.c, version 8): a key row stays small wherever
 * a client's key sorts.  A key names the transaction it made (if any) so
 * that verify can tie keys to transactions (I5). */
static jf_err idem_insert(jf_ctx *ctx, jf_cmd *cmd, const char *tx_id, const jf_idem_form *f)
{
    jf_db *db = ctx->db;
    if (f->rebuilt && tx_id) {
        jf_err err = jf_db_run(
            db,
            "INSERT INTO idempotency(tenant_id, key, op, request_hash, created, response_seq,"
            " tx_id, created_at, after_available, after_pending, after_held)"
            " VALUES(?,?,?,?,?,-1,?,?,?,?,?)",
            "IssbisIIII", cmd->auth.tenant, cmd->idem_key, jf_op_name(cmd->op), cmd->req_hash,
            JF_HASH_BYTES, cmd->res.created ? 1 : 0, tx_id, ctx->now_ms, f->available, f->pending,
            f->held);
        return err == JF_OK && ctx->eng->check_replies ? idem_check(ctx, cmd, tx_id, f) : err;
    }
    /* Only an answer of the rebuilt form is left as a draft (ctx_finish). */
    assert(cmd->draft == NULL);
    jf_err err = jf_db_run(db, "INSERT INTO responses(tenant_id, body) VALUES(?,?)", "Is",
                           cmd->auth.tenant, cmd->res.body);
    if (err != JF_OK)
        return err;
    return jf_db_run(db,
                     "INSERT INTO idempotency(tenant_id, key, op, request_hash, created,"
                     " response_seq, tx_id, created_at) VALUES(?,?,?,?,?,?,?,?)",
                     "IssbiIsI", cmd->auth.tenant, cmd->idem_key, jf_op_name(cmd->op),
                     cmd->req_hash, JF_HASH_BYTES, cmd->res.created ? 1 : 0,
                     sqlite3_last_insert_rowid(db->h), tx_id, ctx->now_ms);
}

jf_err jf_idem_store(jf_ctx *ctx, jf_cmd *cmd, const char *tx_id, const jf_idem_form *f)
{
    jf_err err = idem_insert(ctx, cmd, tx_id, f);
    if (err == JF_OK && jf_ctx_on_writer(ctx))
        jf_idem_filter_add(ctx->eng->idemf, cmd->auth.tenant, cmd->idem_key);
    return err;
}
