/*
 * Write commands as the writer sees them, shared by the engine and the batch
 * endpoint (a batch is one command holding many sub-commands, each applied
 * as a command of its own with its own idempotency key and result).
 */
#ifndef JF_CMD_H
#define JF_CMD_H

#include "core.h"

/* Running totals a sliced job keeps between its slices. */
#define JF_CMD_ACC_N 6

struct jf_cmd {
    struct jf_cmd *next;
    jf_op op;
    jf_auth auth;
    char *path_id;
    json_t *body;
    jf_args args;
    char *idem_key;
    uint8_t req_hash[JF_HASH_BYTES];
    jf_done_fn done;
    void *done_ctx;
    jf_result res;
    /* res's body as data until jf_writer_finish renders it (tx.c), off the
     * writer; NULL when res holds the body (or an error). */
    struct jf_reply_draft *draft;
    int64_t acc[JF_CMD_ACC_N]; /* running totals of a sliced job */
    int64_t parked_ms;         /* when a sliced job was parked for its next slice */
    struct jf_cmd **subs;      /* a batch's operations */
    size_t sub_count;
    bool claimed; /* a batch operation whose key this batch put in flight */
};

/* Frees a command, its sub-commands and its result.  NULL is a no-op. */
void jf_cmd_free(jf_cmd *cmd);
/* Runs the op's validate on cmd->body (already parsed) and fingerprints the
 * request for idempotency.  On failure the detail is in cmd->res.detail. */
jf_err jf_cmd_validate(jf_engine *eng, const jf_request *req, jf_cmd *cmd);
/* Applies one command (writer thread; engine.c says when it takes a
 * savepoint); true when a sliced job wants to run again. */
bool jf_writer_apply(jf_engine *eng, jf_cmd *cmd);
const jf_op_impl *jf_op_impl_of(jf_op op);

/* idem.c: idempotency keys. */
bool jf_idem_key_valid(const char *key);
jf_err jf_request_hash(jf_cmd *cmd);
jf_err jf_inflight_add(jf_engine *eng, int64_t tenant, const char *key);
void jf_inflight_remove(jf_engine *eng, int64_t tenant, const char *key);
/* What a key's record keeps of its answer: the answer whole, or, when it is
 * {"transaction": T, "points": P} for the transaction the write made, only
 * P's three numbers, T and P rebuilt on a replay (idem.c). */
typedef struct jf_idem_form {
    bool rebuilt;
    int64_t available, pending, held; /* P, when rebuilt */
} jf_idem_form;
/* The form of the answer ctx holds before ctx_finish renders it. */
jf_idem_form jf_idem_form_of(const jf_ctx *ctx);
/* Looks cmd's key up (writer thread, ctx the command's): *found when the
 * key is known; then cmd->res holds its answer (res.body malloc'd,
 * res.replayed set), or the error JF_ERR_IDEMPOTENCY_KEY_REUSED when the
 * request differs, JF_ERR_CORRUPT when the answer cannot be had.  Never runs
 * the command. */
jf_err jf_idem_lookup(jf_ctx *ctx, jf_cmd *cmd, bool *found);
/* Records cmd's key with its answer cmd->res in form f; tx_id (NULL for
 * none) is the transaction the write made.  After ctx_finish. */
jf_err jf_idem_store(jf_ctx *ctx, jf_cmd *cmd, const char *tx_id, const jf_idem_form *f);

/* batch.c */
jf_err jf_batch_prepare(jf_engine *eng, const jf_request *req, jf_cmd *cmd);
/* Applies the batch's next slice (writer thread); true when operations
 * remain for a later slice, false when it is done: cmd->res.err is then
 * JF_OK and the body is left to jf_batch_render.  cmd->acc[0] counts the
 * operations applied so far. */
bool jf_batch_apply(jf_engine *eng, jf_cmd *cmd);
/* The most operations the batch's next slice applies. */
size_t jf_batch_slice_ops(const jf_cmd *cmd);
/* Writes a finished batch's answer, its operations' results in order, into
 * cmd->res.body (JF_ERR_NOMEM in cmd->res when memory runs out).  Does
 * nothing to a batch that failed or already has a body.  Runs off the
 * writer thread, once the batch is durable (jf_writer_finish). */
void jf_batch_render(jf_cmd *cmd);
void jf_batch_release(jf_engine *eng, jf_cmd *cmd);

/* engine.c: releases a command's idempotency keys, answers and frees it. */
void jf_writer_finish(jf_engine *eng, jf_cmd *cmd);

/* syncer.c: durable answers off the writer's path.  Start after the writer's
 * connection is open and migrated: it switches that connection to
 * synchronous=NORMAL only when it can flush the WAL itself; otherwise
 * has_syncer stays false and the writer commits with synchronous=FULL and
 * answers itself.  Fails only when the database cannot be written. */
jf_err jf_syncer_start(jf_engine *eng);
/* The generation of the commit the writer is about to run (before COMMIT). */
uint64_t jf_syncer_begin_commit(jf_engine *eng);
/* Hands over a committed batch's answered commands (linked by next, may be
 * NULL) to be answered after the flush that covers generation gen; false
 * when there is no syncer (the caller answers). */
bool jf_syncer_submit(jf_engine *eng, jf_cmd *list, uint64_t gen);
/* Answers a read (done(done_ctx, res), then deinits res) once commit
 * generation want (JF_READ_WANTS_ALL: every commit its snapshot, taken before
 * this call, can see) is flushed: at once when it is, else from the syncer
 * after that flush, so the calling thread never waits for a flush.  Takes
 * res: the caller must not touch it afterwards.  Waits on the calling thread
 * only when no memory is left to queue it. */
void jf_syncer_answer_read(jf_engine *eng, uint64_t want, jf_result *res, jf_done_fn done,
                           void *done_ctx);
/* For jf_syncer_answer_read: wait for every commit numbered so far. */
#define JF_READ_WANTS_ALL UINT64_MAX
/* Waits until everything handed over is flushed and answered. */
void jf_syncer_drain(jf_engine *eng);
/* Stops the thread after answering what is queued; closes the WAL descriptor. */
void jf_syncer_stop(jf_engine *eng);

#endif
