/*
 * The engine: opening the database, the request dispatcher, and the single
 * writer thread with group commit (DESIGN.md, Execution model).
 *
 * jf_call validates a write on the caller's thread and queues it.  The writer
 * takes everything queued (up to JF_BATCH_COMMANDS_MAX), applies each command
 * inside one BEGIN IMMEDIATE transaction and commits once; every command of
 * the batch is answered only after the WAL is flushed (syncer.c flushes and
 * answers off the writer's path, so the next batch runs meanwhile).  A
 * refused command costs its neighbours nothing: it is refused before its
 * first write, or, rarely, after one, and then the batch is rolled back and
 * run again with a savepoint per command (jf_writer_apply).  Long jobs
 * (expiry) run as commands that apply one bounded slice and park until the
 * writer has spare time (writer_unpark), so the till is never locked out.
 *
 * Reads take a connection from a small pool and run in a read transaction:
 * a WAL snapshot that never waits for the writer.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <sodium.h>

#include "cmd.h"
#include "core.h"
#include "bonus.h"
#include "campaigns.h"
#include "checkin.h"
#include "referral.h"
#include "refunds.h"
#include "rules.h"
#include "tiers.h"
#include "tz.h"
#include "walbuf.h"

jf_err jf_fail(jf_ctx *ctx, jf_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->detail, 256, fmt, ap);
    va_end(ap);
    return err;
}

static int64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t jf_now_ms(jf_engine *eng)
{
    return eng->test_clock ? atomic_load(&eng->test_now_ms) : real_now_ms();
}

int64_t jf_engine_now_ms(jf_engine *eng)
{
    return jf_now_ms(eng);
}

void jf_result_deinit(jf_result *res)
{
    if (res == NULL)
        return;
    free(res->body);
    memset(res, 0, sizeof(*res));
}

/* ---- read connection pool ---- */

jf_db *jf_read_acquire(jf_engine *eng)
{
    pthread_mutex_lock(&eng->pool_mu);
    jf_db *db = eng->pool_n > 0 ? eng->pool[--eng->pool_n] : NULL;
    pthread_mutex_unlock(&eng->pool_mu);
    if (db) {
        /* This thread owns the connection now, and uses none of its statements yet. */
        jf_db_stmts_renew(db);
        return db;
    }
    db = calloc(1, sizeof(*db));
    if (db == NULL)
        return NULL;
    if (jf_db_open(db, eng->db_path, false) != JF_OK) {
        jf_db_close(db);
        free(db);
        return NULL;
    }
    return db;
}

void jf_read_release(jf_engine *eng, jf_db *db)
{
    if (db == NULL)
        return;
    /* A read whose COMMIT failed (its preparation ran out of memory) left
     * its transaction open.  Pooled so, the connection would fail the next
     * BEGIN on it (jf_verify's) and answer the reads that take no
     * transaction of their own (an API key's lookup) from the old snapshot;
     * it goes back only once rolled back, and is closed when it cannot be. */
    jf_db_end_stale(db);
    bool clean = sqlite3_get_autocommit(db->h) != 0;
    pthread_mutex_lock(&eng->pool_mu);
    if (clean && eng->pool_n < JF_READ_POOL_MAX) {
        eng->pool[eng->pool_n++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&eng->pool_mu);
    if (db) {
        jf_db_close(db);
        free(db);
    }
}

/* ---- commands ---- */

/* Frees cmd's answer, rendered or not, and keeps the rest of its result. */
static void cmd_body_drop(jf_cmd *cmd)
{
    free(cmd->res.body);
    cmd->res.body = NULL;
    jf_reply_draft_free(cmd->draft);
    cmd->draft = NULL;
}

/* Frees cmd's answer, rendered or not, and resets its result. */
static void cmd_result_drop(jf_cmd *cmd)
{
    cmd_body_drop(cmd);
    jf_result_deinit(&cmd->res);
}

/* Writes the answer the writer left as data (cmd->draft), now that its
 * commit is durable: out of memory here answers out_of_memory, and a retry
 * with the key replays the answer. */
static void cmd_render(jf_cmd *cmd)
{
    if (cmd->draft == NULL)
        return;
    if (cmd->res.err == JF_OK && cmd->res.body == NULL) {
        cmd->res.body = jf_reply_draft_render(cmd->draft, NULL, &cmd->res.body_len);
        if (cmd->res.body == NULL) {
            cmd->res.err = JF_ERR_NOMEM;
            cmd->res.created = false;
            snprintf(cmd->res.detail, sizeof(cmd->res.detail),
                     "The server ran out of memory; try again.");
        }
    }
    jf_reply_draft_free(cmd->draft);
    cmd->draft = NULL;
}

void jf_cmd_free(jf_cmd *cmd)
{
    if (cmd == NULL)
        return;
    free(cmd->path_id);
    free(cmd->idem_key);
    json_decref(cmd->body);
    cmd_result_drop(cmd);
    for (size_t i = 0; i < cmd->sub_count; i++)
        jf_cmd_free(cmd->subs[i]);
    free(cmd->subs);
    free(cmd);
}

static void cmd_finish(jf_cmd *cmd)
{
    cmd->done(cmd->done_ctx, &cmd->res);
    jf_cmd_free(cmd);
}

static void ctx_init(jf_ctx *ctx, jf_engine *eng, jf_db *db, jf_op op, const jf_auth *auth,
                     char *detail)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->eng = eng;
    ctx->db = db;
    ctx->op = op;
    ctx->auth = auth;
    ctx->now_ms = jf_now_ms(eng);
    ctx->detail = detail;
    jf_db_failure_reset();
    jf_json_alloc_reset();
}

/* The points are written as text, not as jf_points_json's tree dumped: the
 * tree, its dump and the walk of it for the key's record were about 3% of the
 * writer's time per earn (docs/PERFORMANCE-HISTORY.md, since commit 64a9f9a).
 * The bytes are the tree's dump's (tests/api/test_idempotency.py pins them). */
void jf_points_reply_end(jf_jtext *b, const jf_points *p, const char *rest_text)
{
    jf_jt_raw(b, ",\"points\":{\"available\":");
    jf_jt_int(b, p->available);
    JF_JT_KEY(b, "pending");
    jf_jt_int(b, p->pending);
    JF_JT_KEY(b, "held");
    jf_jt_int(b, p->held);
    jf_jt_raw(b, "}");
    if (rest_text != NULL) {
        jf_jt_raw(b, ",");
        jf_jt_raw(b, rest_text + 1); /* rest's keys and the closing brace */
    } else {
        jf_jt_raw(b, "}");
    }
}

char *jf_points_reply_text(const char *tx, const jf_points *p, json_t *rest, size_t *len)
{
    bool more = rest != NULL && json_object_size(rest) > 0;
    char *text = more ? jf_json_dump(rest, NULL) : NULL;
    if (more && text == NULL)
        return NULL;
    jf_jtext b = {0};
    jf_jt_raw(&b, "{\"transaction\":");
    jf_jt_raw(&b, tx);
    jf_points_reply_end(&b, p, text);
    free(text);
    return jf_jt_take(&b, len);
}

/* Ends a command or a read: its answer into res.  A SQLite call that failed
 * on the way (jf_db_step), or a jansson allocation, decides the answer
 * unless the handler answered a system failure itself: a handler that took a
 * failed lookup for "no row" answered a business result (not found) for what
 * was an I/O error or an allocation failure. */
static jf_err ctx_finish(jf_ctx *ctx, jf_err err, jf_result *res, jf_reply_draft **draft)
{
    jf_err failed = ctx->db ? jf_db_failure() : JF_OK;
    if (failed == JF_OK && jf_json_alloc_failed())
        failed = JF_ERR_NOMEM;
    jf_db_failure_reset();
    jf_json_alloc_reset();
    /* A system failure the handler answered itself stays (an internal error
     * for a CHECK that failed says more), unless memory ran out: then what
     * the handler saw (an I/O error, a stored body that would not parse) is
     * likely that, and out_of_memory tells the client to try again. */
    bool handled = jf_err_http_status(err) >= 500 && failed != JF_ERR_NOMEM;
    if (failed != JF_OK && err != failed && !handled) {
        snprintf(ctx->detail, sizeof(res->detail), "%s",
                 failed == JF_ERR_NOMEM ? "The server ran out of memory; try again."
                                        : ctx->db->errmsg);
        err = failed;
    }
    bool alone = ctx->out != NULL && json_object_size(ctx->out) == 0;
    if (err == JF_OK && ctx->reply_body) {
        res->body = ctx->reply_body;
        res->body_len = ctx->reply_body_len;
        ctx->reply_body = NULL;
    } else if (err == JF_OK && ctx->reply_draft && alone && draft) {
        *draft = ctx->reply_draft; /* rendered by jf_writer_finish */
        ctx->reply_draft = NULL;
    } else if (err == JF_OK && ctx->reply_draft) {
        res->body =
            ctx->out ? jf_reply_draft_render(ctx->reply_draft, ctx->out, &res->body_len) : NULL;
        if (res->body == NULL)
            err = JF_ERR_NOMEM;
    } else if (err == JF_OK) {
        /* No ctx->out: json_object() failed before the handler ran. */
        res->body = ctx->out == NULL ? NULL
                    : ctx->reply_tx  ? jf_points_reply_text(ctx->reply_tx, &ctx->reply_points,
                                                            ctx->out, &res->body_len)
                                     : jf_json_dump(ctx->out, &res->body_len);
        if (res->body == NULL)
            err = JF_ERR_NOMEM;
    }
    json_decref(ctx->out);
    ctx->out = NULL;
    free(ctx->reply_tx);
    ctx->reply_tx = NULL;
    jf_reply_draft_free(ctx->reply_draft);
    ctx->reply_draft = NULL;
    free(ctx->reply_body);
    ctx->reply_body = NULL;
    free(ctx->awarded);
    ctx->awarded = NULL;
    ctx->awarded_n = 0;
    free(ctx->lines);
    ctx->lines = NULL;
    ctx->lines_n = 0;
    ctx->lines_made = false;
    jf_tier_memo_clear(ctx);
    if (err == JF_OK)
        ctx->detail[0] = '\0'; /* a handler may have prepared a detail it did not need */
    res->err = err;
    res->created = err == JF_OK && ctx->created;
    return err;
}

/* ---- the writer ---- */

/* The command's program row, read once per batch attempt while only points
 * operations run (they read it and never change it).  Any other command
 * drops it after it runs, and writer_apply_all drops it before each attempt,
 * since a rolled-back attempt may have read a change that never commits. */
static jf_err writer_program(jf_engine *eng, int64_t tenant, jf_program *out)
{
    if (!eng->prog_valid || eng->prog_tenant != tenant) {
        eng->prog_valid = false;
        jf_err err = jf_program_load(&eng->wdb, tenant, &eng->prog);
        if (err != JF_OK)
            return err;
        eng->prog_tenant = tenant;
        eng->prog_valid = true;
    }
    *out = eng->prog;
    return JF_OK;
}

bool jf_ctx_on_writer(const jf_ctx *ctx)
{
    return ctx->eng && ctx->db == &ctx->eng->wdb;
}

jf_wcache *jf_ctx_wcache(const jf_ctx *ctx)
{
    return jf_ctx_on_writer(ctx) ? ctx->eng->wcache : NULL;
}

jf_idem_filter *jf_ctx_idem_filter(const jf_ctx *ctx)
{
    return jf_ctx_on_writer(ctx) && !ctx->eng->careful ? ctx->eng->idemf : NULL;
}

/* Whether a command that failed without a savepoint left nothing behind: no
 * row changed since it began (a failed statement undoes its own changes), and
 * the transaction is still open (SQLite rolls it back on some I/O errors). */
static bool cmd_wrote_nothing(jf_db *db, int64_t changes_before)
{
    return sqlite3_total_changes64(db->h) == changes_before && !sqlite3_get_autocommit(db->h);
}

/* Work was rolled back: the writer's cache forgets what it may have read of
 * it (wcache.c). */
static void writer_forget(jf_engine *eng)
{
    jf_wcache_rollback(eng->wcache);
    atomic_fetch_add(&eng->cache_forgets, 1);
}

/* Undoes what one command left in the writer's memory once its rows are
 * undone: its hot rows, and the cache only when it wrote.  The cache holds
 * only rows as reads found them (wcache.c): a command refused before its
 * first write (insufficient points, a frozen member) leaves nothing in it to
 * undo, and forgetting would cost every later earn of a tenant with rules
 * their parsing again. */
static void cmd_memory_undo(jf_engine *eng, bool wrote)
{
    jf_hot_cmd_rollback(eng->hot);
    if (wrote)
        writer_forget(eng);
}

/* Applies one command.  Returns true when the command is a sliced job that
 * wants to run again after this batch commits.
 *
 * A savepoint per command costs a copy of every page the command changes
 * (SQLite's sub-journal) plus two statements: about a tenth of the writer's
 * time under W5.  Commands check everything that can refuse them before
 * their first write, so a command runs without one unless it is a dry run
 * (always undone) or its batch is being run again.  A command that fails
 * after writing marks the batch poisoned; writer_batch then rolls the whole
 * transaction back and runs the batch again with a savepoint per command,
 * so its neighbours are never failed by it. */
bool jf_writer_apply(jf_engine *eng, jf_cmd *cmd)
{
    jf_db *db = &eng->wdb;
    if (eng->poisoned) {
        /* Undone by writer_redo, unless the batch fails as a whole. */
        cmd->res.err = JF_ERR_IO;
        return false;
    }
    bool sp = eng->careful || cmd->args.dry_run;
    int64_t changes = sqlite3_total_changes64(db->h);
    jf_ctx ctx;
    ctx_init(&ctx, eng, db, cmd->op, &cmd->auth, cmd->res.detail);
    ctx.path_id = cmd->path_id;
    ctx.body = cmd->body;
    ctx.args = &cmd->args;
    ctx.idem_key = cmd->idem_key;
    ctx.acc = cmd->acc;
    jf_err err = sp ? jf_db_run(db, "SAVEPOINT cmd", "") : JF_OK;
    if (err != JF_OK) {
        cmd->res.err = err;
        return false;
    }
    jf_hot_cmd_begin(eng->hot);
    bool found = false;
    if (cmd->idem_key && (err = jf_idem_lookup(&ctx, cmd, &found)) == JF_OK && found) {
        if (sp)
            jf_db_run(db, "RELEASE cmd", "");
        return false;
    }
    if (err == JF_OK)
        err = writer_program(eng, cmd->auth.tenant, &ctx.prog);
    if (err == JF_OK) {
        ctx.out = json_object();
        err = jf_op_impl_of(cmd->op)->run(&ctx);
    }
    if (!jf_op_is_points(cmd->op))
        eng->prog_valid = false;
    bool again = err == JF_OK && ctx.again;
    if ((err == JF_ERR_IO || err == JF_ERR_CORRUPT) && cmd->res.detail[0] == '\0')
        jf_str_copy(cmd->res.detail, sizeof(cmd->res.detail), db->errmsg);
    char tx_id[JF_ID_LEN_MAX] = "";
    const char *tid =
        ctx.reply_tx || ctx.reply_draft
            ? ctx.reply_tx_id
            : json_string_value(json_object_get(json_object_get(ctx.out, "transaction"), "id"));
    if (tid)
        jf_str_copy(tx_id, sizeof(tx_id), tid);
    jf_idem_form form = jf_idem_form_of(&ctx);
    err = ctx_finish(&ctx, err, &cmd->res, &cmd->draft);
    if (err == JF_OK && cmd->args.dry_run) {
        /* Whatever a dry run touched (overdue holds voided on the way) is
         * undone: it answers exactly what a real run would, and writes nothing.
         * An undo that failed (out of memory) left them: the batch is run
         * again, or, when it already is, commits nothing. */
        bool wrote = !cmd_wrote_nothing(db, changes);
        if (jf_db_run(db, "ROLLBACK TO cmd", "") != JF_OK && wrote)
            eng->poisoned = true;
        jf_db_run(db, "RELEASE cmd", "");
        cmd_memory_undo(eng, wrote);
        return false;
    }
    if (err == JF_OK && cmd->idem_key && !again)
        err = jf_idem_store(&ctx, cmd, tx_id[0] ? tx_id : NULL, &form);
    if (err != JF_OK) {
        /* A failed statement may have made SQLite roll the whole transaction
         * back: then the batch's earlier commands are gone too. */
        bool lost = sqlite3_get_autocommit(db->h) != 0;
        /* The undo can fail too (out of memory): then the command's writes
         * stay in the transaction, as they do without a savepoint. */
        bool undone = sp && !lost && jf_db_run(db, "ROLLBACK TO cmd", "") == JF_OK;
        bool wrote = lost || !cmd_wrote_nothing(db, changes);
        if (!undone && wrote)
            eng->poisoned = true;
        cmd_memory_undo(eng, wrote);
        cmd_body_drop(cmd);
        cmd->res.err = err;
        again = false;
    }
    if (sp)
        jf_db_run(db, "RELEASE cmd", "");
    return again;
}

static void stats_bucket(_Atomic uint64_t *buckets, int n, uint64_t v, uint64_t unit)
{
    int i = 0;
    while (i < n - 1 && v > (unit << i))
        i++;
    atomic_fetch_add(&buckets[i], 1);
}

int64_t jf_elapsed_us(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000000 + (t.tv_nsec - t0->tv_nsec) / 1000;
}

void jf_hist_since(jf_hist *h, const struct timespec *t0)
{
    uint64_t us = (uint64_t)jf_elapsed_us(t0);
    stats_bucket(h->buckets, JF_LATENCY_BUCKETS, us, 50);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum_us, us);
}

static void hist_get(jf_hist *h, jf_latency_hist *out)
{
    for (int i = 0; i < JF_LATENCY_BUCKETS; i++)
        out->buckets[i] = atomic_load(&h->buckets[i]);
    out->count = atomic_load(&h->count);
    out->sum_us = atomic_load(&h->sum_us);
}

int64_t jf_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Moves the first parked job to the head of the queue (there is one;
 * eng->mu held). */
static void writer_unpark_now(jf_engine *eng)
{
    jf_cmd *j = eng->jobs_head;
    eng->jobs_head = j->next;
    if (eng->jobs_head == NULL)
        eng->jobs_tail = NULL;
    j->next = eng->q_head;
    eng->q_head = j;
    if (eng->q_tail == NULL)
        eng->q_tail = j;
    eng->q_len++;
}

/* A sliced job's next slice waits (parked) while foreground commands are
 * queued, and runs when the queue is empty or after it has waited
 * JF_JOB_WAIT_MAX_MS: jobs use the writer's spare time and still progress
 * under full load, so the till keeps its latency while expiry runs (and a
 * held commit may take one, writer_take_held). */
static void writer_unpark(jf_engine *eng)
{
    jf_cmd *j = eng->jobs_head;
    if (j == NULL || (eng->q_head != NULL && jf_mono_ms() - j->parked_ms < JF_JOB_WAIT_MAX_MS))
        return;
    writer_unpark_now(eng);
}

/* What a command costs a commit: a batch's slice counts each operation. */
static size_t cmd_weight(const jf_cmd *c)
{
    size_t ops = c->op == JF_OP_BATCH ? jf_batch_slice_ops(c) : 1;
    return ops > 1 ? ops : 1;
}

/* Unlinks commands from the head of the queue, at least one, while they
 * weigh (cmd_weight) at most *room in all; *room is reduced by what was
 * taken.  eng->mu held. */
static jf_cmd *queue_take(jf_engine *eng, size_t *room, size_t *count)
{
    jf_cmd *head = eng->q_head, *tail = NULL;
    size_t n = 0;
    for (jf_cmd *c = head; c && *room > 0; c = c->next, n++) {
        size_t w = cmd_weight(c);
        if (n > 0 && w > *room)
            break;
        *room -= w < *room ? w : *room;
        tail = c;
    }
    if (tail) {
        eng->q_head = tail->next;
        if (eng->q_head == NULL)
            eng->q_tail = NULL;
        tail->next = NULL;
        eng->q_len -= n;
    }
    *count = n;
    return n ? head : NULL;
}

/* Takes up to a batch of commands off the queue, weighing at most *room
 * (queue_take); NULL when stopping and empty. */
static jf_cmd *writer_take(jf_engine *eng, size_t *room, size_t *count)
{
    pthread_mutex_lock(&eng->mu);
    while (eng->q_head == NULL && eng->jobs_head == NULL && !eng->stopping) {
        eng->writer_busy = false;
        pthread_cond_broadcast(&eng->cv_idle);
        pthread_cond_wait(&eng->cv_work, &eng->mu);
    }
    writer_unpark(eng);
    jf_cmd *head = queue_take(eng, room, count);
    if (head)
        eng->writer_busy = true;
    pthread_mutex_unlock(&eng->mu);
    return head;
}

/* While the syncer flushes an earlier commit, committing this batch gains
 * nothing: its flush cannot start before that one ends.  So the writer
 * keeps the transaction open and adds what arrives meanwhile (up to max
 * commands), and commits when the flush is over (syncer.c wakes it): at
 * moderate load a commit then carries several writes instead of one, with
 * fewer WAL pages and flushes per write.  With nothing queued the writer
 * would only wait, so a sliced job (expiry, a batch of operations) gets a
 * slice in the open transaction instead: the next slice of one already in
 * it (*slice, when slice_own) or a parked one (taken like a queued command,
 * *pulled, when pull).  Foreground commands still go first; the job's
 * slice may hold the commit past the flush's end by one slice's time.
 * NULL when there is nothing to add or the flush is over or the engine
 * stops. */
static jf_cmd *writer_take_held(jf_engine *eng, size_t *room, size_t *count, bool slice_own,
                                bool pull, bool *slice, bool *pulled)
{
    *count = 0;
    *slice = *pulled = false;
    pthread_mutex_lock(&eng->mu);
    while (eng->q_head == NULL && !slice_own && !(pull && eng->jobs_head) &&
           atomic_load(&eng->s_flushing) && !eng->stopping)
        pthread_cond_wait(&eng->cv_work, &eng->mu);
    jf_cmd *head = NULL;
    if (atomic_load(&eng->s_flushing) && !eng->stopping) {
        if (eng->q_head == NULL && slice_own) {
            *slice = true;
        } else {
            if (eng->q_head == NULL && pull && eng->jobs_head) {
                writer_unpark_now(eng);
                *pulled = true;
            }
            if (eng->q_head)
                head = queue_take(eng, room, count);
        }
    }
    pthread_mutex_unlock(&eng->mu);
    return head;
}

/* The first command of the batch that is a sliced job with more to do, and
 * its index in *i; NULL when there is none. */
static jf_cmd *batch_job_again(jf_cmd *batch, const bool *again, int *i)
{
    *i = 0;
    for (jf_cmd *c = batch; c; c = c->next, (*i)++)
        if (again[*i])
            return c;
    return NULL;
}

/* Parks a sliced job for its next slice (writer_unpark). */
static void writer_requeue(jf_engine *eng, jf_cmd *cmd)
{
    pthread_mutex_lock(&eng->mu);
    cmd->next = NULL;
    cmd->parked_ms = jf_mono_ms();
    if (eng->jobs_tail)
        eng->jobs_tail->next = cmd;
    else
        eng->jobs_head = cmd;
    eng->jobs_tail = cmd;
    pthread_mutex_unlock(&eng->mu);
}

static void writer_commit(jf_engine *eng, jf_cmd *batch, size_t n, bool *again)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* The batch's hot rows are written last, once each (hot.c).  A batch
     * still poisoned after its careful run, or whose transaction SQLite
     * rolled back, commits nothing. */
    jf_err err = JF_ERR_IO;
    if (eng->poisoned || sqlite3_get_autocommit(eng->wdb.h))
        jf_hot_discard(eng->hot);
    else if ((err = jf_hot_flush(eng->hot, &eng->wdb)) == JF_OK)
        err = jf_db_run(&eng->wdb, "COMMIT", "");
    jf_hist_since(&eng->commit_hist, &t0);
    atomic_fetch_add(&eng->commits, 1);
    if (err == JF_OK)
        return;
    /* Nothing of this batch is durable: no command may be acknowledged. */
    fprintf(stderr, "jifen: a commit failed, %zu writes refused: %s\n", n, eng->wdb.errmsg);
    jf_db_exec(&eng->wdb, "ROLLBACK");
    writer_forget(eng);
    eng->prog_valid = false;
    eng->poisoned = false;
    int i = 0;
    for (jf_cmd *c = batch; c; c = c->next, i++) {
        again[i] = false;
        cmd_body_drop(c);
        c->res.replayed = false;
        c->res.err = JF_ERR_IO;
        snprintf(c->res.detail, sizeof(c->res.detail), "The commit failed; nothing was written.");
    }
}

/* Records the WAL's length after each commit that wrote to it, and counts
 * those commits (sqlite3_wal_hook). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    jf_engine *eng = arg;
    atomic_store(&eng->wal_frames, frames);
    atomic_fetch_add(&eng->wal_commits, 1);
    return SQLITE_OK;
}

/* ---- the WAL-reset guard ----
 *
 * SQLite up to 3.51.2 (Debian 12 ships 3.40.1) has a race, the "WAL-reset
 * bug" (https://sqlite.org/wal.html#walresetbug): when a commit starts the
 * WAL again from its head while another connection begins a checkpoint, that
 * checkpoint can leave a wrong read mark behind, and a later checkpoint then
 * skips frames of a committed transaction.  Their pages never reach the
 * database file while pages that refer to them do: the database is corrupt.
 * It needs two connections that write or checkpoint, which is this design
 * (the writer commits, the checkpointer copies), and it corrupted a 1.1 GB
 * database here once, while W6's lots were being made.  No packaged SQLite
 * has the fix, so the engine keeps the two apart.  A commit starts the WAL
 * again only when checkpoints have copied all of it, so:
 *
 * - The checkpointer never copies all of it.  Each pass first begins a read
 *   transaction on a connection of its own (the guard), or keeps the one an
 *   earlier pass began, and checkpoints only once two more commits have
 *   passed it; a checkpoint stops at the oldest reader's snapshot, so the
 *   pass leaves at least the last commit in the WAL.
 * - Only the writer copies all of it (writer_wal_restart), between batches,
 *   holding ckpt_mu as every pass does, after ending the guard's read
 *   transaction.  The commit that then starts the WAL again is the writer's
 *   next one that writes; the next pass begins a new guard and checkpoints
 *   only after two commits past it, so after that one.
 *
 * The writer checks the result: a commit that started the WAL
 * (jf_walbuf_wal_starts) while a checkpoint was under way, or began, is
 * counted in wal_starts_during_ckpt (jifen_wal_starts_during_checkpoint_total),
 * which stays 0. */

/* A passive checkpoint on connection h; ckpt_mu held. */
static int ckpt_copy(jf_engine *eng, sqlite3 *h, int *log, int *copied)
{
    atomic_fetch_add(&eng->ckpt_running, 1);
    atomic_fetch_add(&eng->ckpt_calls, 1);
    int rc = sqlite3_wal_checkpoint_v2(h, NULL, SQLITE_CHECKPOINT_PASSIVE, log, copied);
    atomic_fetch_sub(&eng->ckpt_running, 1);
    return rc;
}

/* Begins the guard's read transaction and notes the commits so far (read
 * after its snapshot: the second commit counted past them is newer than
 * it); ckpt_mu held.  On failure no pass checkpoints. */
static void guard_begin(jf_engine *eng)
{
    if (eng->guard == NULL || eng->guard_open)
        return;
    if (jf_db_exec(eng->guard, "BEGIN; SELECT 1 FROM tenants LIMIT 1") != JF_OK) {
        jf_db_exec(eng->guard, "ROLLBACK");
        return;
    }
    eng->guard_commits = atomic_load(&eng->wal_commits);
    eng->guard_open = true;
}

/* Ends the guard's read transaction; ckpt_mu held (by either thread). */
static void guard_end(jf_engine *eng)
{
    if (!eng->guard_open)
        return;
    jf_db_exec(eng->guard, "COMMIT");
    eng->guard_open = false;
}

/* Counts a WAL start made by the transaction that began when the counters
 * read calls0, running0 and starts0, and whether a checkpoint overlapped
 * it.  Writer thread, after the commit. */
static void writer_check_wal_start(jf_engine *eng, uint64_t calls0, int running0,
                                   unsigned long long starts0)
{
    if (jf_walbuf_wal_starts() == starts0)
        return;
    atomic_fetch_add(&eng->wal_starts, 1);
    if (running0 == 0 && atomic_load(&eng->ckpt_running) == 0 &&
        atomic_load(&eng->ckpt_calls) == calls0)
        return;
    atomic_fetch_add(&eng->wal_starts_during_ckpt, 1);
    fprintf(stderr, "jifen: a commit started the WAL again while a checkpoint ran\n");
}

/* The checkpointer copies frames while the writer keeps appending, so on its
 * own it never catches up and the WAL only grows.  Past
 * JF_WAL_RESTART_FRAMES the checkpointer runs pass after pass, and once it
 * has copied all but JF_WAL_RESTART_LAG_FRAMES the writer finishes the copy
 * itself between batches, when nothing new can arrive, and the next
 * transaction starts the WAL again from its head.  Waiting for the lag to
 * shrink matters: a checkpoint of a whole interval's frames held the writer
 * for 30-70 ms.  Past twice the threshold the writer restarts whatever the
 * lag, so the WAL stays bounded when the checkpointer cannot keep up (when
 * the writer's copy finds the checkpointer mid-pass it is busy, and the
 * restart comes after a later commit instead).  Runs
 * after the batch was handed on, so no answer waits for it. */
static void writer_wal_restart(jf_engine *eng)
{
    int frames = atomic_load(&eng->wal_frames);
    if (frames < eng->wal_restart_frames)
        return;
    int lag = frames - atomic_load(&eng->wal_backfilled);
    if (lag > JF_WAL_RESTART_LAG_FRAMES && frames < 2 * eng->wal_restart_frames)
        return;
    int log = -1, copied = -1, rc = SQLITE_BUSY;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Busy while a pass checkpoints: the restart comes after a later commit. */
    if (pthread_mutex_trylock(&eng->ckpt_mu) == 0) {
        guard_end(eng);
        rc = ckpt_copy(eng, eng->wdb.h, &log, &copied);
        pthread_mutex_unlock(&eng->ckpt_mu);
    }
    jf_hist_since(&eng->restart_hist, &t0);
    if (rc != SQLITE_OK || log != copied)
        return;
    pthread_mutex_lock(&eng->mu);
    atomic_fetch_add(&eng->wal_epoch, 1);
    atomic_fetch_add(&eng->wal_restarts, 1);
    if (lag > JF_WAL_RESTART_LAG_FRAMES)
        atomic_fetch_add(&eng->wal_restarts_forced, 1);
    atomic_store(&eng->wal_backfilled, 0);
    atomic_store(&eng->wal_frames, 0);
    pthread_mutex_unlock(&eng->mu);
}

void jf_writer_finish(jf_engine *eng, jf_cmd *c)
{
    /* Durable now, not yet answered: the next request with the key must
     * read it again (keycache.c). */
    if (c->op == JF_OP_KEY_REVOKE && c->res.err == JF_OK)
        jf_key_cache_bump(eng->keys);
    if (c->idem_key)
        jf_inflight_remove(eng, c->auth.tenant, c->idem_key);
    cmd_render(c);
    if (c->op == JF_OP_BATCH) {
        for (size_t i = 0; c->res.err == JF_OK && i < c->sub_count; i++)
            cmd_render(c->subs[i]);
        jf_batch_render(c);
        jf_batch_release(eng, c);
    }
    cmd_finish(c);
}

/* Applies one command; true when it is a sliced job to run again. */
static bool writer_apply_one(jf_engine *eng, jf_cmd *c)
{
    return c->op == JF_OP_BATCH ? jf_batch_apply(eng, c) : jf_writer_apply(eng, c);
}

/* Applies every command of the batch inside one transaction; when it cannot
 * begin, every command gets that error. */
static jf_err writer_apply_all(jf_engine *eng, jf_cmd *batch, bool *again)
{
    /* By jf_db_exec: jf_db_step refuses, on the writer, a statement that
     * writes outside a transaction, and SQLite counts BEGIN IMMEDIATE as one. */
    jf_db_end_stale(&eng->wdb);
    jf_err err = jf_db_exec(&eng->wdb, "BEGIN IMMEDIATE");
    /* Read inside the transaction: what another process committed before it
     * (-1, when it cannot be read, forgets everything). */
    int64_t data_version = -1;
    if (err == JF_OK && jf_db_int(&eng->wdb, &data_version, -1, "PRAGMA data_version", "") != JF_OK)
        data_version = -1;
    /* The program an earlier batch read holds while no other process has
     * written since: this process's own changes drop it (jf_writer_apply,
     * after any command that is not a points operation, and every rollback
     * of a batch). */
    if (data_version < 0 || data_version != eng->prog_data_version)
        eng->prog_valid = false;
    eng->prog_data_version = data_version;
    jf_wcache_batch_begin(eng->wcache, data_version);
    jf_idem_filter_batch_begin(eng->idemf, data_version);
    int i = 0;
    for (jf_cmd *c = batch; c; c = c->next, i++) {
        if (err != JF_OK)
            c->res.err = err;
        else
            again[i] = writer_apply_one(eng, c);
    }
    return err;
}

/* Puts a command back as it was before the writer applied it: no result
 * (its operations' either), a sliced job's totals as they were. */
static void cmd_unapply(jf_cmd *c, const int64_t acc_before[JF_CMD_ACC_N])
{
    cmd_result_drop(c);
    memcpy(c->acc, acc_before, sizeof(c->acc));
    /* A batch's earlier slices are committed; their results stay. */
    for (size_t i = c->op == JF_OP_BATCH ? (size_t)acc_before[0] : 0; i < c->sub_count; i++)
        if (c->subs[i]->claimed)
            cmd_result_drop(c->subs[i]);
}

/* A command failed after writing without a savepoint (jf_writer_apply):
 * nothing of the batch may stay, so the transaction is rolled back and the
 * batch runs again with a savepoint per command. */
static jf_err writer_redo(jf_engine *eng, jf_cmd *batch, bool *again, int64_t (*acc)[JF_CMD_ACC_N])
{
    jf_db_exec(&eng->wdb, "ROLLBACK");
    jf_hot_discard(eng->hot);
    writer_forget(eng);
    eng->prog_valid = false;
    int i = 0;
    for (jf_cmd *c = batch; c; c = c->next, i++) {
        cmd_unapply(c, acc[i]);
        again[i] = false;
    }
    eng->poisoned = false;
    eng->careful = true;
    jf_err err = writer_apply_all(eng, batch, again);
    eng->careful = false;
    atomic_fetch_add(&eng->batches_redone, 1);
    return err;
}

/* Applies the commands that joined a held commit (writer_take_held) in
 * the batch's open transaction; more is appended to the batch at index n. */
static jf_err writer_apply_more(jf_engine *eng, jf_cmd *batch, jf_cmd *more, size_t n, bool *again,
                                int64_t (*acc)[JF_CMD_ACC_N])
{
    jf_cmd *last = batch;
    while (last->next)
        last = last->next;
    last->next = more;
    size_t i = n;
    for (jf_cmd *c = more; c; c = c->next, i++) {
        memcpy(acc[i], c->acc, sizeof(c->acc));
        again[i] = writer_apply_one(eng, c);
    }
    return eng->poisoned ? writer_redo(eng, batch, again, acc) : JF_OK;
}

static void writer_batch(jf_engine *eng, jf_cmd *batch, size_t n, size_t room)
{
    bool again[JF_BATCH_COMMANDS_MAX] = {false};
    int64_t acc[JF_BATCH_COMMANDS_MAX][JF_CMD_ACC_N];
    int i = 0;
    for (jf_cmd *c = batch; c; c = c->next, i++)
        memcpy(acc[i], c->acc, sizeof(c->acc));
    uint64_t calls0 = atomic_load(&eng->ckpt_calls);
    int running0 = atomic_load(&eng->ckpt_running);
    unsigned long long starts0 = jf_walbuf_wal_starts();
    jf_err err = writer_apply_all(eng, batch, again);
    if (eng->poisoned)
        err = writer_redo(eng, batch, again, acc);
    int slices = 0;
    while (err == JF_OK && room > 0 && !eng->poisoned) {
        size_t k = 0;
        bool slice = false, pulled = false;
        bool may = slices < JF_HELD_SLICES_MAX;
        int ji = -1;
        jf_cmd *job = may ? batch_job_again(batch, again, &ji) : NULL;
        jf_cmd *more =
            writer_take_held(eng, &room, &k, job != NULL, may && job == NULL, &slice, &pulled);
        if (slice || pulled) {
            slices++;
            atomic_fetch_add(&eng->job_slices_held, 1);
        }
        if (slice) {
            cmd_body_drop(job);
            again[ji] = writer_apply_one(eng, job);
            if (eng->poisoned)
                err = writer_redo(eng, batch, again, acc);
            continue;
        }
        if (more == NULL)
            break;
        err = writer_apply_more(eng, batch, more, n, again, acc);
        n += k;
        atomic_fetch_add(&eng->commands_held, k);
    }
    for (jf_cmd *c = batch; c; c = c->next)
        if (c->res.err != JF_OK)
            atomic_fetch_add(&eng->rejected, 1);
    uint64_t gen = jf_syncer_begin_commit(eng);
    if (err == JF_OK)
        writer_commit(eng, batch, n, again);
    writer_check_wal_start(eng, calls0, running0, starts0);
    jf_wcache_batch_end(eng->wcache);
    atomic_fetch_add(&eng->commands, n);
    stats_bucket(eng->batch_buckets, 11, n, 1);
    jf_cmd *answer = NULL, **tail = &answer;
    i = 0;
    for (jf_cmd *c = batch, *next; c; c = next, i++) {
        next = c->next;
        c->next = NULL;
        if (again[i]) {
            cmd_body_drop(c);
            writer_requeue(eng, c);
            continue;
        }
        *tail = c;
        tail = &c->next;
    }
    if (!jf_syncer_submit(eng, answer, gen)) {
        for (jf_cmd *c = answer, *next; c; c = next) {
            next = c->next;
            jf_writer_finish(eng, c);
        }
    }
    writer_wal_restart(eng);
}

static void *writer_main(void *arg)
{
    jf_engine *eng = arg;
    pthread_setname_np(pthread_self(), "jifen-writer");
    jf_db_guard_writes();
    /* After a restart every member's first write would read its row from a
     * random page; the cache is filled before the first batch instead
     * (requests that arrive meanwhile wait in the queue). */
    int64_t warmed = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (jf_members_warm(&eng->wdb, eng->wcache, &warmed) != JF_OK)
        fprintf(stderr, "jifen: the writer's member cache starts empty: %s\n", eng->wdb.errmsg);
    atomic_store(&eng->warm_us, jf_elapsed_us(&t0));
    atomic_store(&eng->warm_members, warmed);
    for (;;) {
        size_t n = 0, room = JF_BATCH_COMMANDS_MAX;
        jf_cmd *batch = writer_take(eng, &room, &n);
        if (batch == NULL)
            break;
        /* Between batches none of the connection's statements is in use. */
        jf_db_stmts_renew(&eng->wdb);
        writer_batch(eng, batch, n, room);
    }
    return NULL;
}

static jf_err enqueue(jf_engine *eng, jf_cmd *cmd)
{
    pthread_mutex_lock(&eng->mu);
    jf_err err = JF_OK;
    if (eng->draining || eng->stopping || !eng->has_writer)
        err = JF_ERR_SHUTTING_DOWN;
    else if (eng->q_len >= JF_QUEUE_COMMANDS_MAX)
        err = JF_ERR_RATE_LIMITED;
    if (err == JF_OK) {
        if (eng->q_tail)
            eng->q_tail->next = cmd;
        else
            eng->q_head = cmd;
        eng->q_tail = cmd;
        eng->q_len++;
        eng->writer_busy = true;
        pthread_cond_signal(&eng->cv_work);
    }
    pthread_mutex_unlock(&eng->mu);
    return err;
}

/* ---- dispatch ---- */

static void answer_now(jf_done_fn done, void *done_ctx, jf_err err, const char *detail)
{
    jf_result res;
    memset(&res, 0, sizeof(res));
    res.err = err;
    if (detail)
        jf_str_copy(res.detail, sizeof(res.detail), detail);
    done(done_ctx, &res);
    jf_result_deinit(&res);
}

/* Operations whose body may ask for a dry run (no key needed, nothing written). */
static bool op_may_dry_run(jf_op op)
{
    return op == JF_OP_EARN || op == JF_OP_MEMBER_EVENT;
}

static jf_err call_check(jf_engine *eng, const jf_request *req, char *detail)
{
    if (req == NULL || (unsigned)req->op >= (unsigned)JF_OP__COUNT)
        return JF_ERR_INVALID_REQUEST;
    if ((req->op == JF_OP_CLOCK_SET || req->op == JF_OP_CLOCK_GET) && !eng->test_clock)
        return JF_ERR_NOT_FOUND;
    if (req->auth == NULL || req->auth->tenant <= 0 || req->auth->role == JF_ROLE_NONE)
        return JF_ERR_UNAUTHORIZED;
    if (!jf_op_allows(req->op, req->auth->role)) {
        snprintf(detail, 256, "Role '%s' may not run %s.", jf_role_name(req->auth->role),
                 jf_op_name(req->op));
        return JF_ERR_FORBIDDEN;
    }
    if (req->idempotency_key == NULL && jf_op_requires_idempotency(req->op) &&
        !op_may_dry_run(req->op))
        return JF_ERR_IDEMPOTENCY_KEY_REQUIRED;
    if (req->idempotency_key && !jf_idem_key_valid(req->idempotency_key))
        return JF_ERR_INVALID_IDEMPOTENCY_KEY;
    return JF_OK;
}

/* Whether a read may look at ctx->prog.  The ones listed never do, nor does
 * anything they call (reads.c: a member's points, transactions and lots, a
 * transaction, the transaction list), so call_read does not load the
 * program row for them: about a tenth of a balance or history read's
 * instructions.  A handler listed here that came to need the program would
 * find it zeroed. */
static bool op_reads_program(jf_op op)
{
    switch (op) {
    case JF_OP_MEMBER_POINTS:
    case JF_OP_MEMBER_TRANSACTIONS:
    case JF_OP_MEMBER_LOTS:
    case JF_OP_TRANSACTION_GET:
    case JF_OP_TRANSACTION_LIST:
        return false;
    default:
        return true;
    }
}

/* The commit a read must see flushed before it is answered (syncer.c): for
 * a member's points, transactions and lots, which show only that member's
 * entries, the last commit that changed them; for every other read, all. */
static uint64_t read_wants(jf_engine *eng, const jf_ctx *ctx, const jf_request *req)
{
    bool one_member = req->op == JF_OP_MEMBER_POINTS || req->op == JF_OP_MEMBER_TRANSACTIONS ||
                      req->op == JF_OP_MEMBER_LOTS;
    /* The handlers load the path's member (jf_member_load notes its seq). */
    if (one_member && ctx->seq_memo > 0 && req->path_id != NULL &&
        strcmp(ctx->seq_memo_id, req->path_id) == 0)
        return jf_member_read_gen(eng, ctx->seq_memo);
    return JF_READ_WANTS_ALL;
}

static void call_read(jf_engine *eng, const jf_request *req, jf_done_fn done, void *done_ctx)
{
    jf_result res;
    memset(&res, 0, sizeof(res));
    jf_db *db = jf_read_acquire(eng);
    jf_ctx ctx;
    ctx_init(&ctx, eng, db, req->op, req->auth, res.detail);
    ctx.req = req;
    ctx.path_id = req->path_id;
    jf_err err = db ? jf_db_run(db, "BEGIN", "") : JF_ERR_IO;
    if (err == JF_OK) {
        if (op_reads_program(req->op))
            err = jf_program_load(db, req->auth->tenant, &ctx.prog);
        if (err == JF_OK) {
            ctx.out = json_object();
            err = jf_op_impl_of(req->op)->run(&ctx);
        }
        jf_db_run(db, "COMMIT", "");
    }
    uint64_t want = read_wants(eng, &ctx, req);
    ctx_finish(&ctx, err, &res, NULL);
    jf_read_release(eng, db);
    /* Nothing not yet on disk is shown (syncer.c). */
    jf_syncer_answer_read(eng, want, &res, done, done_ctx);
}

jf_err jf_cmd_validate(jf_engine *eng, const jf_request *req, jf_cmd *cmd)
{
    jf_ctx ctx;
    ctx_init(&ctx, eng, NULL, cmd->op, &cmd->auth, cmd->res.detail);
    ctx.req = req;
    ctx.path_id = cmd->path_id;
    ctx.args = &cmd->args;
    ctx.body = cmd->body;
    cmd->args.now_ms = ctx.now_ms;
    const jf_op_impl *impl = jf_op_impl_of(cmd->op);
    jf_err err = impl->validate ? impl->validate(&ctx) : JF_OK;
    /* A validator that normalizes the body (defaults filled in) may have
     * lost a field to a failed allocation; the writer would store it so. */
    if (err == JF_OK && jf_json_alloc_failed())
        err = JF_ERR_NOMEM;
    if (err == JF_OK)
        err = jf_request_hash(cmd);
    return err;
}

static jf_err cmd_prepare(jf_engine *eng, const jf_request *req, jf_cmd *cmd)
{
    cmd->op = req->op;
    cmd->auth = *req->auth;
    if ((req->path_id && (cmd->path_id = strdup(req->path_id)) == NULL) ||
        (req->idempotency_key && (cmd->idem_key = strdup(req->idempotency_key)) == NULL))
        return JF_ERR_NOMEM;
    jf_ctx ctx;
    ctx_init(&ctx, eng, NULL, req->op, &cmd->auth, cmd->res.detail);
    jf_err err = JF_OK;
    if (req->body && req->body_len > 0)
        err = jf_json_parse_body(&ctx, req->body, req->body_len, &cmd->body);
    else
        cmd->body = json_object();
    if (err != JF_OK)
        return err;
    if (cmd->op == JF_OP_BATCH)
        return jf_batch_prepare(eng, req, cmd);
    bool dry = op_may_dry_run(cmd->op) && json_is_true(json_object_get(cmd->body, "dry_run"));
    if (cmd->idem_key == NULL && jf_op_requires_idempotency(cmd->op) && !dry)
        return JF_ERR_IDEMPOTENCY_KEY_REQUIRED;
    err = jf_cmd_validate(eng, req, cmd);
    if (err == JF_OK && cmd->args.dry_run) {
        /* A dry run is never stored as a replay and never blocks a key. */
        free(cmd->idem_key);
        cmd->idem_key = NULL;
    }
    return err;
}

static void call_write(jf_engine *eng, const jf_request *req, jf_done_fn done, void *done_ctx)
{
    jf_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL) {
        answer_now(done, done_ctx, JF_ERR_NOMEM, NULL);
        return;
    }
    cmd->done = done;
    cmd->done_ctx = done_ctx;
    jf_err err = cmd_prepare(eng, req, cmd);
    if (err == JF_OK && cmd->idem_key &&
        (err = jf_inflight_add(eng, cmd->auth.tenant, cmd->idem_key)) != JF_OK) {
        free(cmd->idem_key);
        cmd->idem_key = NULL;
    }
    if (err == JF_OK && (err = enqueue(eng, cmd)) != JF_OK && cmd->idem_key)
        jf_inflight_remove(eng, cmd->auth.tenant, cmd->idem_key);
    if (err != JF_OK) {
        if (cmd->op == JF_OP_BATCH)
            jf_batch_release(eng, cmd);
        cmd->res.err = err;
        cmd_finish(cmd);
    }
}

void jf_call(jf_engine *eng, const jf_request *req, jf_done_fn done, void *done_ctx)
{
    char detail[256] = "";
    jf_err err = call_check(eng, req, detail);
    if (err != JF_OK)
        answer_now(done, done_ctx, err, detail[0] ? detail : NULL);
    else if (jf_op_is_write(req->op))
        call_write(eng, req, done, done_ctx);
    else
        call_read(eng, req, done, done_ctx);
}

typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    jf_result *res;
} sync_wait;

static void sync_done(void *arg, jf_result *res)
{
    sync_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    *w->res = *res;
    memset(res, 0, sizeof(*res)); /* the waiter owns the body now */
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

jf_err jf_call_sync(jf_engine *eng, const jf_request *req, jf_result *res)
{
    sync_wait w = {.res = res};
    memset(res, 0, sizeof(*res));
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    jf_call(eng, req, sync_done, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return res->err;
}

jf_err jf_run_internal(jf_engine *eng, jf_op op, int64_t tenant, const char *body, char **json)
{
    jf_auth auth = {.tenant = tenant, .role = JF_ROLE_ADMIN};
    snprintf(auth.actor, sizeof(auth.actor), "system");
    jf_request req = {.op = op, .auth = &auth, .body = body, .body_len = body ? strlen(body) : 0};
    jf_result res;
    jf_err err = jf_call_sync(eng, &req, &res);
    if (json) {
        *json = res.body;
        res.body = NULL;
    }
    jf_result_deinit(&res);
    return err;
}

/* ---- the test clock ---- */

static jf_err clock_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"now", NULL};
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_time(ctx, ctx->body, "now", true, &ctx->args->expires_at, NULL);
    return err;
}

static jf_err clock_set(jf_ctx *ctx)
{
    int64_t now = atomic_load(&ctx->eng->test_now_ms);
    if (ctx->args->expires_at < now)
        return jf_fail(ctx, JF_ERR_TEST_CLOCK_BACKWARDS, "The test clock is already later.");
    atomic_store(&ctx->eng->test_now_ms, ctx->args->expires_at);
    ctx->now_ms = ctx->args->expires_at;
    /* Holds past their deadline are void as soon as time passes them. */
    jf_err err = jf_holds_void_overdue(ctx, NULL);
    if (err == JF_OK)
        jf_json_set(ctx->out, "now", jf_json_time_value(ctx->now_ms));
    return err;
}

static jf_err clock_get(jf_ctx *ctx)
{
    jf_json_set(ctx->out, "now", jf_json_time_value(jf_now_ms(ctx->eng)));
    return JF_OK;
}

static const jf_op_impl op_clock_set = {clock_validate, clock_set};
static const jf_op_impl op_clock_get = {NULL, clock_get};
/* A batch is prepared and applied by batch.c; it never runs as one handler. */
static const jf_op_impl op_batch = {NULL, NULL};

const jf_op_impl *jf_op_impl_of(jf_op op)
{
    static const jf_op_impl *const table[JF_OP__COUNT] = {
        [JF_OP_MEMBER_CREATE] = &jf_op_member_create,
        [JF_OP_MEMBER_GET] = &jf_op_member_get,
        [JF_OP_MEMBER_GET_EXTERNAL] = &jf_op_member_get_external,
        [JF_OP_MEMBER_UPDATE] = &jf_op_member_update,
        [JF_OP_MEMBER_LIST] = &jf_op_member_list,
        [JF_OP_MEMBER_POINTS] = &jf_op_member_points,
        [JF_OP_MEMBER_TRANSACTIONS] = &jf_op_member_transactions,
        [JF_OP_MEMBER_LOTS] = &jf_op_member_lots,
        [JF_OP_MEMBER_HOLDS] = &jf_op_member_holds,
        [JF_OP_EARN] = &jf_op_earn,
        [JF_OP_REDEEM] = &jf_op_redeem,
        [JF_OP_ADJUST] = &jf_op_adjust,
        [JF_OP_TRANSFER] = &jf_op_transfer,
        [JF_OP_HOLD] = &jf_op_hold,
        [JF_OP_HOLD_GET] = &jf_op_hold_get,
        [JF_OP_HOLD_CAPTURE] = &jf_op_hold_capture,
        [JF_OP_HOLD_VOID] = &jf_op_hold_void,
        [JF_OP_REVERSE] = &jf_op_reverse,
        [JF_OP_TRANSACTION_GET] = &jf_op_transaction_get,
        [JF_OP_TRANSACTION_LIST] = &jf_op_transaction_list,
        [JF_OP_PROGRAM_GET] = &jf_op_program_get,
        [JF_OP_PROGRAM_UPDATE] = &jf_op_program_update,
        [JF_OP_EXPIRY_RUN] = &jf_op_expiry_run,
        [JF_OP_EXPIRY_FORECAST] = &jf_op_expiry_forecast,
        [JF_OP_HOLDS_SWEEP] = &jf_op_holds_sweep,
        [JF_OP_KEY_CREATE] = &jf_op_key_create,
        [JF_OP_KEY_LIST] = &jf_op_key_list,
        [JF_OP_KEY_REVOKE] = &jf_op_key_revoke,
        [JF_OP_CLOCK_SET] = &op_clock_set,
        [JF_OP_CLOCK_GET] = &op_clock_get,
        [JF_OP_BATCH] = &op_batch,
        [JF_OP_MEMBER_EVENT] = &jf_op_member_event,
        [JF_OP_RULE_CREATE] = &jf_op_rule_create,
        [JF_OP_RULE_LIST] = &jf_op_rule_list,
        [JF_OP_RULE_GET] = &jf_op_rule_get,
        [JF_OP_RULE_UPDATE] = &jf_op_rule_update,
        [JF_OP_RULE_ARCHIVE] = &jf_op_rule_archive,
        [JF_OP_ORDER_REFUND] = &jf_op_order_refund,
        [JF_OP_ORDER_GET] = &jf_op_order_get,
        [JF_OP_CHECK_IN] = &jf_op_check_in,
        [JF_OP_CHECK_IN_CALENDAR] = &jf_op_check_in_calendar,
        [JF_OP_BONUS_SWEEP] = &jf_op_bonus_sweep,
        [JF_OP_CAMPAIGN_CREATE] = &jf_op_campaign_create,
        [JF_OP_CAMPAIGN_LIST] = &jf_op_campaign_list,
        [JF_OP_CAMPAIGN_GET] = &jf_op_campaign_get,
        [JF_OP_CAMPAIGN_UPDATE] = &jf_op_campaign_update,
        [JF_OP_TIER_CONFIG_GET] = &jf_op_tier_config_get,
        [JF_OP_TIER_CONFIG_PUT] = &jf_op_tier_config_put,
        [JF_OP_TIER_EVALUATE] = &jf_op_tier_evaluate,
        [JF_OP_TIER_IMPORT] = &jf_op_tier_import,
        [JF_OP_MEMBER_TIER_GET] = &jf_op_member_tier_get,
        [JF_OP_MEMBER_TIER_SET] = &jf_op_member_tier_set,
        [JF_OP_EVENT_LIST] = &jf_op_event_list,
    };
    return table[op];
}

/* ---- scheduled jobs ---- */

/* Tenants with work for a scheduled job (the query selects their ids; its
 * one parameter, if fmt names one, is now).  Checked on a read connection
 * so an idle tick costs the writer nothing. */
static int sched_tenants(jf_engine *eng, const char *sql, const char *fmt, int64_t *tenants,
                         int max)
{
    jf_db *db = jf_read_acquire(eng);
    if (db == NULL)
        return 0;
    int n = 0;
    sqlite3_stmt *st = jf_db_query(db, sql, fmt, jf_now_ms(eng));
    while (st && n < max && jf_db_step(st) == SQLITE_ROW)
        tenants[n++] = sqlite3_column_int64(st, 0);
    if (st)
        sqlite3_reset(st);
    jf_read_release(eng, db);
    return n;
}

/* Open holds past their deadline. */
static const char sched_holds_sql[] =
    "SELECT t.id FROM tenants t WHERE EXISTS (SELECT 1 FROM holds h WHERE"
    " h.tenant_id = t.id AND h.status = 'open' AND h.expires_at <= ?) ORDER BY t.id";
/* Members with lots past their expiry (or an entry left early, lots.c). */
static const char sched_expiry_sql[] =
    "SELECT t.id FROM tenants t WHERE EXISTS (SELECT 1 FROM member_due d WHERE"
    " d.tenant_id = t.id AND d.due_at <= ?) ORDER BY t.id";
/* A live birthday rule: the daily bonus job's work. */
static const char sched_bonus_sql[] = "SELECT DISTINCT tenant_id FROM rules WHERE"
                                      " trigger='birthday' AND status='active' ORDER BY tenant_id";
/* A tier evaluation due. */
static const char sched_tier_sql[] =
    "SELECT t.id FROM tenants t WHERE EXISTS (SELECT 1 FROM members"
    " m WHERE m.tenant_id = t.id AND m.tier_eval_at <= ?) ORDER BY t.id";

static void sched_run_once(jf_engine *eng, bool expiry)
{
    int64_t tenants[256];
    int n = sched_tenants(eng, sched_holds_sql, "I", tenants, 256);
    for (int i = 0; i < n; i++)
        jf_run_internal(eng, JF_OP_HOLDS_SWEEP, tenants[i], NULL, NULL);
    n = expiry ? sched_tenants(eng, sched_expiry_sql, "I", tenants, 256) : 0;
    for (int i = 0; i < n; i++)
        jf_run_internal(eng, JF_OP_EXPIRY_RUN, tenants[i], NULL, NULL);
    n = expiry ? sched_tenants(eng, sched_bonus_sql, "", tenants, 256) : 0;
    for (int i = 0; i < n; i++)
        jf_run_internal(eng, JF_OP_BONUS_SWEEP, tenants[i], NULL, NULL);
    n = expiry ? sched_tenants(eng, sched_tier_sql, "I", tenants, 256) : 0;
    for (int i = 0; i < n; i++)
        jf_run_internal(eng, JF_OP_TIER_EVALUATE, tenants[i], NULL, NULL);
}

/* Ticks once a second: overdue holds are voided within a second of their
 * deadline; expiry runs every interval_s. */
static void *sched_main(void *arg)
{
    jf_engine *eng = arg;
    pthread_setname_np(pthread_self(), "jifen-sched");
    int ticks = 0;
    pthread_mutex_lock(&eng->mu);
    while (!eng->stopping && !eng->draining) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        int rc = 0;
        while (!eng->stopping && !eng->draining && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&eng->cv_sched, &eng->mu, &until);
        if (eng->stopping || eng->draining)
            break;
        pthread_mutex_unlock(&eng->mu);
        ticks++;
        sched_run_once(eng, ticks % eng->interval_s == 0);
        pthread_mutex_lock(&eng->mu);
    }
    pthread_mutex_unlock(&eng->mu);
    return NULL;
}

/* Runs op for the tenant and appends its answer to the report as the
 * value of key (none when key is NULL).  The answer is the engine's own
 * JSON text, appended as it is, not parsed again (when it was, jansson
 * 2.14's lexer could abort the process on a failed allocation,
 * akheron/jansson#362, which test_faults' test_maintenance found; bodies
 * and stored text are now read by jsonr.c). */
static jf_err maintenance_step(jf_engine *eng, jf_op op, int64_t tenant, jf_jtext *b,
                               const char *key)
{
    char *text = NULL;
    jf_err err = jf_run_internal(eng, op, tenant, NULL, key ? &text : NULL);
    if (err == JF_OK && key) {
        jf_jt_raw(b, ",\"");
        jf_jt_raw(b, key);
        jf_jt_raw(b, "\":");
        jf_jt_raw(b, text);
    }
    free(text);
    return err;
}

/* One tenant's row of the maintenance report, appended to b. */
static jf_err maintenance_tenant(jf_engine *eng, int64_t tenant, const char *public_id, jf_jtext *b)
{
    jf_jt_raw(b, "{\"tenant_id\":");
    jf_jt_str(b, public_id);
    jf_err err = maintenance_step(eng, JF_OP_HOLDS_SWEEP, tenant, b, "holds");
    if (err == JF_OK)
        err = maintenance_step(eng, JF_OP_EXPIRY_RUN, tenant, b, "expiry");
    if (err == JF_OK)
        err = maintenance_step(eng, JF_OP_BONUS_SWEEP, tenant, b, "bonuses");
    if (err == JF_OK)
        err = maintenance_step(eng, JF_OP_TIER_EVALUATE, tenant, b, "tiers");
    jf_jt_raw(b, "}");
    return err;
}

jf_err jf_maintenance_run(jf_engine *eng, char **json)
{
    *json = NULL;
    jf_db *db = jf_read_acquire(eng);
    if (db == NULL)
        return JF_ERR_IO;
    jf_jtext b = {0};
    jf_jt_raw(&b, "[");
    sqlite3_stmt *st = jf_db_query(db, "SELECT id, public_id FROM tenants ORDER BY id", "");
    jf_err err = st ? JF_OK : JF_ERR_IO;
    int rc = SQLITE_ROW;
    for (int n = 0; err == JF_OK && (rc = jf_db_step(st)) == SQLITE_ROW; n++) {
        if (n > 0)
            jf_jt_raw(&b, ",");
        err = maintenance_tenant(eng, sqlite3_column_int64(st, 0), jf_db_text(st, 1), &b);
    }
    /* A failed step of the tenants' list fails the run rather than leave
     * the tenants after it out of the report. */
    if (err == JF_OK && rc != SQLITE_DONE)
        err = (rc & 0xff) == SQLITE_NOMEM ? JF_ERR_NOMEM : JF_ERR_IO;
    if (st)
        sqlite3_reset(st);
    jf_read_release(eng, db);
    jf_jt_raw(&b, "]");
    char *text = jf_jt_take(&b, NULL);
    if (err == JF_OK && text == NULL)
        err = JF_ERR_NOMEM;
    if (err == JF_OK)
        *json = text;
    else
        free(text);
    return err;
}

/* ---- checkpoints ---- */

/* Waits us microseconds or until stopped; eng->mu held. */
static void ckpt_wait(jf_engine *eng, long us)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += us * 1000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&eng->cv_sched, &eng->mu, &until);
}

/* Waits until `target` commits have written to the WAL, at most the
 * checkpoint interval, or until stopped.  It looks every
 * JF_CHECKPOINT_POLL_US at first, ten times less often once the writes seem
 * to have stopped, so an idle server wakes rarely. */
static void ckpt_wait_commits(jf_engine *eng, uint64_t target)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&eng->mu);
    int64_t waited = 0;
    while (!eng->stopping && atomic_load(&eng->wal_commits) < target &&
           (waited = jf_elapsed_us(&t0)) < eng->ckpt_interval_ms * 1000L)
        ckpt_wait(eng, waited < 10 * JF_CHECKPOINT_POLL_US ? JF_CHECKPOINT_POLL_US
                                                           : 10 * JF_CHECKPOINT_POLL_US);
    pthread_mutex_unlock(&eng->mu);
}

/* One pass: a checkpoint bounded by the guard's snapshot, once two commits
 * have passed it (the WAL-reset guard above).  SQLITE_BUSY when it did not
 * run.  A guard that two commits have not passed within the interval stays
 * open for the next pass, which copies as soon as they have: ending it
 * there would make a pass need two commits within one interval, and below
 * that rate (2 per 100 ms by default: most shops, most of the day) nothing
 * was ever copied, the WAL grew to twice the restart threshold and the
 * writer then copied all of it while a request waited. */
static int ckpt_pass(jf_engine *eng, sqlite3 *h, int *log, int *copied)
{
    pthread_mutex_lock(&eng->ckpt_mu);
    guard_begin(eng);
    uint64_t target = eng->guard_commits + 2;
    pthread_mutex_unlock(&eng->ckpt_mu);
    ckpt_wait_commits(eng, target);
    int rc = SQLITE_BUSY;
    pthread_mutex_lock(&eng->ckpt_mu);
    if (eng->guard_open && atomic_load(&eng->wal_commits) >= target) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = ckpt_copy(eng, h, log, copied);
        jf_hist_since(&eng->ckpt_hist, &t0);
        guard_end(eng);
    }
    pthread_mutex_unlock(&eng->ckpt_mu);
    return rc;
}

/* Opens the guard's connection and hands it to the engine; false when it
 * cannot, and then only the writer checkpoints. */
static bool ckpt_guard_open(jf_engine *eng)
{
    jf_db *g = calloc(1, sizeof(*g));
    if (g == NULL || jf_db_open(g, eng->db_path, true) != JF_OK) {
        fprintf(stderr, "jifen: no checkpoint guard (%s); the writer checkpoints alone\n",
                g ? g->errmsg : "out of memory");
        if (g)
            jf_db_close(g);
        free(g);
        return false;
    }
    pthread_mutex_lock(&eng->ckpt_mu);
    eng->guard = g;
    pthread_mutex_unlock(&eng->ckpt_mu);
    return true;
}

static void ckpt_guard_close(jf_engine *eng)
{
    pthread_mutex_lock(&eng->ckpt_mu);
    guard_end(eng);
    jf_db *g = eng->guard;
    eng->guard = NULL;
    pthread_mutex_unlock(&eng->ckpt_mu);
    if (g)
        jf_db_close(g);
    free(g);
}

/* What the checkpointer last saw of the writer's work (ckpt_idle_trim). */
typedef struct idle_trim {
    uint64_t commits; /* the commit count at its last look */
    bool pending;     /* the writer has worked since the last trim */
    int64_t since_ms; /* when it last saw the writer working */
} idle_trim;

/* Called with eng->mu held at every look of the checkpointer: once the
 * writer has had nothing to do for JF_MEMORY_TRIM_IDLE_MS after some work,
 * hands the heap memory that work's requests freed back to the system
 * (limits.h).  Off the writer's thread, and only when it is idle, since
 * malloc_trim holds each arena's lock while it walks it. */
static void ckpt_idle_trim(jf_engine *eng, idle_trim *t, uint64_t commits)
{
    int64_t now = jf_mono_ms();
    if (commits != t->commits || eng->writer_busy || eng->q_head || eng->jobs_head) {
        t->commits = commits;
        t->pending = true;
        t->since_ms = now;
        return;
    }
    if (!t->pending || now - t->since_ms < JF_MEMORY_TRIM_IDLE_MS)
        return;
    t->pending = false;
    pthread_mutex_unlock(&eng->mu);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    malloc_trim(0);
    jf_hist_since(&eng->trim_hist, &t0);
    atomic_fetch_add(&eng->memory_trims, 1);
    pthread_mutex_lock(&eng->mu);
}

/* Copies the WAL into the database file from its own connection every
 * checkpoint interval (JF_CHECKPOINT_INTERVAL_MS unless the options say
 * otherwise), so the writer's COMMIT never pays for a checkpoint (the
 * writer's automatic checkpoint is off).  PASSIVE never
 * blocks the writer or readers; a later pass finishes what a reader held.
 * Once the WAL is due for a restart it runs passes back to back until the
 * writer can restart it cheaply (writer_wal_restart), as long as each pass
 * copies something: a reader on an old snapshot stops the copy, and then
 * spinning would only burn a core.  Every pass leaves the newest commits to
 * a later one (the WAL-reset guard above). */
static void *ckpt_main(void *arg)
{
    jf_engine *eng = arg;
    pthread_setname_np(pthread_self(), "jifen-ckpt");
    jf_db db;
    if (jf_db_open(&db, eng->db_path, false) != JF_OK) {
        jf_db_close(&db);
        return NULL;
    }
    if (jf_walbuf_pace(db.h, JF_CHECKPOINT_PACE_BYTES) != SQLITE_OK)
        fprintf(stderr, "jifen: checkpoint writes are not paced: %s\n", sqlite3_errmsg(db.h));
    bool guarded = ckpt_guard_open(eng), behind = false;
    int copied_before = 0;
    uint64_t seen = 0; /* commits when the last pass began */
    idle_trim trim = {0};
    pthread_mutex_lock(&eng->mu);
    while (guarded && !eng->stopping) {
        if (!behind)
            ckpt_wait(eng, eng->ckpt_interval_ms * 1000L);
        if (eng->stopping)
            break;
        /* Fewer than two commits since the last pass: a pass would only wait
         * for more, so an idle server sleeps instead. */
        uint64_t commits = atomic_load(&eng->wal_commits);
        ckpt_idle_trim(eng, &trim, commits);
        if (commits - seen < 2) {
            behind = false;
            continue;
        }
        seen = commits;
        unsigned epoch = atomic_load(&eng->wal_epoch);
        pthread_mutex_unlock(&eng->mu);
        int log = -1, copied = -1;
        int rc = ckpt_pass(eng, db.h, &log, &copied);
        pthread_mutex_lock(&eng->mu);
        bool same_wal = atomic_load(&eng->wal_epoch) == epoch;
        behind = rc == SQLITE_OK && log >= eng->wal_restart_frames && copied < log &&
                 copied > copied_before;
        copied_before = rc == SQLITE_OK ? copied : 0;
        if (rc == SQLITE_OK && same_wal)
            atomic_store(&eng->wal_backfilled, copied);
    }
    pthread_mutex_unlock(&eng->mu);
    ckpt_guard_close(eng);
    jf_db_close(&db);
    return NULL;
}

/* ---- life cycle ---- */

/* Reads the referral key (referral.h) once: every thread may read it after. */
static jf_err referral_key_load(jf_engine *eng)
{
    _Static_assert(sizeof eng->referral_key == JF_REFERRAL_KEY_BYTES, "referral.h");
    sqlite3_stmt *st =
        jf_db_query(&eng->wdb, "SELECT value FROM meta WHERE key = 'referral_key'", "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_OK;
    int rc = jf_db_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = JF_ERR_IO;
    if (rc == SQLITE_ROW) {
        const char *hex = jf_db_text(st, 0);
        size_t n = 0;
        eng->referral_keyed = sodium_hex2bin(eng->referral_key, sizeof eng->referral_key, hex,
                                             strlen(hex), NULL, &n, NULL) == 0 &&
                              n == sizeof eng->referral_key;
        if (!eng->referral_keyed)
            err = JF_ERR_CORRUPT;
    }
    sqlite3_reset(st);
    return err;
}

const uint8_t *jf_referral_key(const jf_engine *eng)
{
    return eng->referral_keyed ? eng->referral_key : NULL;
}

static jf_err engine_start_writer(jf_engine *eng, char *errbuf, size_t errlen)
{
    jf_err err = jf_db_open(&eng->wdb, eng->db_path, false);
    if (err == JF_OK && (err = jf_db_migrate(&eng->wdb)) != JF_OK && errbuf)
        snprintf(errbuf, errlen, "cannot create or migrate the schema: %s", eng->wdb.errmsg);
    else if (err != JF_OK && errbuf)
        jf_str_copy(errbuf, errlen, eng->wdb.errmsg);
    if (err != JF_OK)
        return err;
    if ((err = referral_key_load(eng)) != JF_OK) {
        if (errbuf)
            snprintf(errbuf, errlen, "cannot read the referral key: %s", eng->wdb.errmsg);
        return err;
    }
    if ((err = jf_db_run(&eng->wdb, "PRAGMA wal_autocheckpoint=0", "")) != JF_OK)
        return err;
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA cache_size=-%d; PRAGMA cache_spill=%d",
             JF_DB_WRITER_CACHE_KIB, JF_DB_WRITER_SPILL_PAGES);
    if ((err = jf_db_exec(&eng->wdb, pragma)) != JF_OK)
        return err;
    if ((eng->hot = jf_hot_new(JF_HOT_ROWS_MAX)) == NULL || (eng->wcache = jf_wcache_new()) == NULL)
        return JF_ERR_NOMEM;
    /* Without memory for it every key is looked up, as before it existed;
     * JIFEN_IDEM_FILTER=0 asks for that (the fault loops of test_faults, whose
     * count of allocations per call must not depend on when a build ends). */
    const char *use = getenv("JIFEN_IDEM_FILTER");
    if (use == NULL || strcmp(use, "0") != 0)
        eng->idemf = jf_idem_filter_new(eng->db_path);
    sqlite3_wal_hook(eng->wdb.h, wal_hook, eng);
    if ((err = jf_syncer_start(eng)) != JF_OK)
        return err;
    if (pthread_create(&eng->writer, NULL, writer_main, eng) != 0)
        return JF_ERR_NOMEM;
    eng->has_writer = true;
    if (pthread_create(&eng->ckpt, NULL, ckpt_main, eng) != 0)
        return JF_ERR_NOMEM;
    eng->has_ckpt = true;
    if (eng->interval_s > 0) {
        if (pthread_create(&eng->sched, NULL, sched_main, eng) != 0)
            return JF_ERR_NOMEM;
        eng->has_sched = true;
    }
    return JF_OK;
}

/* Whether an engine option, set (not 0), lies outside min..max; then says
 * so in errbuf ("the <what> must be <min> to <max> <unit>"). */
static bool option_refused(int value, int min, int max, const char *what, const char *unit,
                           char *errbuf, size_t errbuf_len)
{
    if (value == 0 || (value >= min && value <= max))
        return false;
    if (errbuf)
        snprintf(errbuf, errbuf_len, "the %s must be %d to %d %s", what, min, max, unit);
    return true;
}

jf_err jf_engine_open(const jf_engine_options *opts, jf_engine **out, char *errbuf,
                      size_t errbuf_len)
{
    *out = NULL;
    if (sodium_init() < 0)
        return JF_ERR_INTERNAL;
    jf_json_init();
    if (option_refused(opts->wal_restart_frames, JF_WAL_RESTART_FRAMES_MIN,
                       JF_WAL_RESTART_FRAMES_MAX, "WAL restart threshold", "frames", errbuf,
                       errbuf_len) ||
        option_refused(opts->checkpoint_interval_ms, JF_CHECKPOINT_INTERVAL_MS_MIN,
                       JF_CHECKPOINT_INTERVAL_MS_MAX, "checkpoint interval", "ms", errbuf,
                       errbuf_len))
        return JF_ERR_INVALID_REQUEST;
    jf_engine *eng = calloc(1, sizeof(*eng));
    if (eng == NULL || (eng->db_path = strdup(opts->db_path)) == NULL) {
        free(eng);
        return JF_ERR_NOMEM;
    }
    eng->wal_fd = -1;
    eng->test_clock = opts->test_clock;
    eng->check_replies = getenv("JIFEN_CHECK_REPLIES") != NULL; /* idem.c */
    eng->old_txids = getenv("JIFEN_TEST_OLD_TXIDS") != NULL;    /* tx.c */
    atomic_store(&eng->test_now_ms, real_now_ms());
    eng->interval_s = opts->expiry_interval_s;
    eng->wal_restart_frames =
        opts->wal_restart_frames ? opts->wal_restart_frames : JF_WAL_RESTART_FRAMES;
    eng->ckpt_interval_ms =
        opts->checkpoint_interval_ms ? opts->checkpoint_interval_ms : JF_CHECKPOINT_INTERVAL_MS;
    pthread_mutex_init(&eng->mu, NULL);
    pthread_mutex_init(&eng->idem_mu, NULL);
    pthread_mutex_init(&eng->pool_mu, NULL);
    pthread_mutex_init(&eng->ckpt_mu, NULL);
    pthread_cond_init(&eng->cv_work, NULL);
    pthread_cond_init(&eng->cv_idle, NULL);
    pthread_cond_init(&eng->cv_sched, NULL);
    jf_err err = JF_OK;
    if (!opts->no_writer) {
        /* Only an engine that writes can revoke a key (keycache.c). */
        eng->keys = jf_key_cache_new(eng->db_path);
        err = engine_start_writer(eng, errbuf, errbuf_len);
    } else {
        jf_db *db = jf_read_acquire(eng);
        err = db ? JF_OK : JF_ERR_IO;
        if (err != JF_OK && errbuf)
            snprintf(errbuf, errbuf_len, "cannot open %s", opts->db_path);
        jf_read_release(eng, db);
    }
    if (err != JF_OK) {
        jf_engine_free(eng);
        return err;
    }
    *out = eng;
    return JF_OK;
}

void jf_engine_drain(jf_engine *eng)
{
    if (eng == NULL)
        return;
    pthread_mutex_lock(&eng->mu);
    eng->draining = true;
    pthread_cond_broadcast(&eng->cv_sched);
    while (eng->has_writer && (eng->q_head != NULL || eng->jobs_head != NULL || eng->writer_busy))
        pthread_cond_wait(&eng->cv_idle, &eng->mu);
    pthread_mutex_unlock(&eng->mu);
    jf_syncer_drain(eng);
}

void jf_engine_free(jf_engine *eng)
{
    if (eng == NULL)
        return;
    jf_engine_drain(eng);
    pthread_mutex_lock(&eng->mu);
    eng->stopping = true;
    pthread_cond_broadcast(&eng->cv_work);
    pthread_cond_broadcast(&eng->cv_sched);
    pthread_mutex_unlock(&eng->mu);
    if (eng->has_sched)
        pthread_join(eng->sched, NULL);
    if (eng->has_writer)
        pthread_join(eng->writer, NULL);
    jf_syncer_stop(eng);
    if (eng->has_ckpt)
        pthread_join(eng->ckpt, NULL);
    jf_db_close(&eng->wdb);
    jf_hot_free(eng->hot);
    jf_wcache_free(eng->wcache);
    jf_idem_filter_free(eng->idemf);
    for (int i = 0; i < eng->pool_n; i++) {
        jf_db_close(eng->pool[i]);
        free(eng->pool[i]);
    }
    for (int b = 0; b < JF_INFLIGHT_BUCKETS; b++)
        for (jf_inflight *e = eng->inflight[b], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    pthread_mutex_destroy(&eng->mu);
    pthread_mutex_destroy(&eng->idem_mu);
    pthread_mutex_destroy(&eng->pool_mu);
    pthread_mutex_destroy(&eng->ckpt_mu);
    pthread_cond_destroy(&eng->cv_work);
    pthread_cond_destroy(&eng->cv_idle);
    pthread_cond_destroy(&eng->cv_sched);
    jf_key_cache_free(eng->keys);
    free(eng->db_path);
    free(eng);
}

void jf_engine_stats_get(jf_engine *eng, jf_engine_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->commits = atomic_load(&eng->commits);
    out->commands = atomic_load(&eng->commands);
    out->rejected = atomic_load(&eng->rejected);
    pthread_mutex_lock(&eng->mu);
    out->queue_depth = eng->q_len;
    pthread_mutex_unlock(&eng->mu);
    for (int i = 0; i < 11; i++)
        out->batch_size_buckets[i] = atomic_load(&eng->batch_buckets[i]);
    hist_get(&eng->commit_hist, &out->commit);
    hist_get(&eng->flush_hist, &out->wal_flush);
    hist_get(&eng->ckpt_hist, &out->checkpoint);
    hist_get(&eng->restart_hist, &out->wal_restart);
    hist_get(&eng->trim_hist, &out->memory_trim);
    out->wal_restarts_forced = atomic_load(&eng->wal_restarts_forced);
    out->wal_restarts = atomic_load(&eng->wal_restarts);
    out->wal_starts = atomic_load(&eng->wal_starts);
    out->wal_starts_during_checkpoint = atomic_load(&eng->wal_starts_during_ckpt);
    out->warm_members = atomic_load(&eng->warm_members);
    out->warm_seconds = (double)atomic_load(&eng->warm_us) / 1e6;
    out->batches_redone = atomic_load(&eng->batches_redone);
    out->cache_forgets = atomic_load(&eng->cache_forgets);
    out->commands_held = atomic_load(&eng->commands_held);
    out->job_slices_held = atomic_load(&eng->job_slices_held);
    out->reads_held = atomic_load(&eng->reads_held);
    out->memory_trims = atomic_load(&eng->memory_trims);
    jf_idem_filter_stats fs;
    jf_idem_filter_stats_get(eng->idemf, &fs);
    out->idem_filter_ready = fs.ready;
    out->idem_filter_keys = fs.keys;
    out->idem_filter_bytes = fs.bytes;
    out->idem_lookups_skipped = fs.lookups_skipped;
    out->idem_filter_builds = fs.builds;
    out->idem_filter_forgets = fs.forgets;
    out->idem_filter_build_seconds = fs.build_seconds;
    jf_walbuf_stat vfs;
    jf_walbuf_stats(&vfs);
    out->checkpoint_writebacks = vfs.paces;
    out->wal_map_reads = vfs.map_reads;
}
