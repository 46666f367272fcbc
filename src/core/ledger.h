/*
 * The ledger's internal vocabulary: transactions being built, postings, and
 * the lot operations every points movement is made of.
 *
 * A write builds one jf_tx: tx_begin gives it its sequence number and id (so
 * lot consumptions can reference it), the lot functions move points between
 * lots recording each piece, tx_post adds postings, and tx_commit checks that
 * the postings sum to zero, appends the transaction to the tenant's hash
 * chain and applies the postings to account balances.  All of it runs on the
 * writer inside the command, whose writes a refusal undoes (engine.c).
 */
#ifndef JF_LEDGER_H
#define JF_LEDGER_H

#include "core.h"

#define JF_TX_POSTINGS_MAX 6

typedef struct jf_posting {
    char account[JF_ID_LEN_MAX + 24];
    int64_t amount;
} jf_posting;

typedef struct jf_tx {
    int64_t seq;
    uint8_t prev_hash[JF_HASH_BYTES]; /* the chain head this transaction extends */
    int64_t time_max; /* the tenant's latest transaction time, this one's included */
    char id[JF_ID_LEN_MAX];
    const char *type;
    const char *member_id, *counterparty_id;
    int64_t points; /* the size of the movement, >= 0 */
    int64_t delta;  /* the signed change to member_id's points account */
    const char *reverses, *hold_id;
    const char *order_id, *order_currency;
    int64_t order_amount; /* -1 when there is no order amount */
    const char *reason, *note, *channel, *store_id, *actor, *idem_key;
    char *metadata;    /* JSON text, owned */
    char *order_lines; /* an order earn's lines (jf_order_lines_text), owned */
    jf_posting postings[JF_TX_POSTINGS_MAX];
    /* After jf_tx_commit: each member posting's account balance as stored
     * after it (the upsert returns it); unset for program accounts. */
    int64_t stored[JF_TX_POSTINGS_MAX];
    int posting_count;
} jf_tx;

/* A transaction's fields as the hash chain encodes them; built from a jf_tx
 * by the writer and from stored rows by verify, so both hash the same bytes. */
typedef struct jf_chain_tx {
    int64_t tenant, seq, points, delta, order_amount, created_at;
    const char *id, *type, *member_id, *counterparty_id, *reverses, *hold_id, *order_id,
        *order_currency, *reason, *note, *channel, *store_id, *actor, *metadata, *idem_key;
    const jf_posting *postings;
    int posting_count;
} jf_chain_tx;

void jf_chain_hash(const uint8_t prev[JF_HASH_BYTES], const jf_chain_tx *t,
                   uint8_t out[JF_HASH_BYTES]);

jf_err jf_tx_begin(jf_ctx *ctx, jf_tx *tx, const char *type, const char *member_id);
void jf_tx_post(jf_tx *tx, const char *kind, const char *member_id, int64_t amount);
/* The index in tx->postings of the posting to kind of member_id (of the
 * program when NULL); -1 when tx has none. */
int jf_tx_posting_find(const jf_tx *tx, const char *kind, const char *member_id);
jf_err jf_tx_commit(jf_ctx *ctx, jf_tx *tx);
void jf_tx_deinit(jf_tx *tx);

/* The columns tx rendering reads, in order, of the transaction t. */
#define TX_SELECT                                                                                  \
    "SELECT t.seq, t.id, t.type, t.member_id, t.counterparty_id, t.points, t.reverses,"            \
    " t.hold_id, t.order_id, t.order_amount, t.order_currency, t.reason, t.note, t.channel,"       \
    " t.store_id, t.actor, t.metadata, t.created_at, t.hash, t.delta,"                             \
    " (SELECT COALESCE(SUM(r.points), 0) FROM transactions r INDEXED BY tx_reverses"               \
    " WHERE r.tenant_id = t.tenant_id AND r.reverses = t.id)"
#define TX_COLUMNS TX_SELECT " FROM transactions t"
/* The key (db.h, JF_TX_KEY_SQL) of the tenant ?1's transaction of seq ?2,
 * of its transaction whose id is ?2 (JF_TX_SEQ_SQL), and of its transaction
 * of seq s.key1 (a member's entry in member_state). */
#define TX_KEY_PARAMS JF_TX_KEY_SQL("?1", "?2")
#define TX_KEY_OF_ID JF_TX_KEY_SQL("?1", JF_TX_SEQ_SQL("?1", "?2"))
#define TX_KEY_OF_ENTRY JF_TX_KEY_SQL("?1", "s.key1")
/* The key of the transaction that expired the lot l (reads, verify). */
#define LOT_EXPIRY_KEY JF_TX_KEY_SQL("l.tenant_id", "l.expired_tx_seq")
/* The transaction t of the tenant ?1 whose id is ?2: its primary key
 * through the id, and the id compared. */
#define TX_BY_ID " WHERE t.txkey = " TX_KEY_OF_ID " AND t.id = ?2"
/* A member's transactions t, as member or counterparty, through the member's
 * entries s in member_state: bind the tenant and the member's seq
 * (jf_member_seq) as ?1 and ?2; s.key1 is the transaction's seq. */
#define MEMBER_TXS_BY_SEQ                                                                          \
    " FROM member_state s CROSS JOIN transactions t ON t.txkey = " TX_KEY_OF_ENTRY                 \
    " WHERE s.member_seq = ?2 AND s.kind = 2"

/* Renders a transaction this command just committed from memory, exactly as
 * jf_tx_json renders it without details (a new transaction has nothing
 * reversed yet); *out is the caller's. */
jf_err jf_tx_reply_json(jf_ctx *ctx, const jf_tx *tx, json_t **out);
/* The same reply's text, appended to b (whole, closed). */
jf_err jf_tx_reply_text(jf_ctx *ctx, const jf_tx *tx, jf_jtext *b);
/* An answer {"transaction": T, "points": P} for a transaction this command
 * just committed, kept as data so that the syncer renders it once the commit
 * is durable (jf_writer_finish), not the writer: T's fields copied into one
 * block, the earn's awards taken from ctx (ctx->awarded is NULL after), P the
 * member's points after it.  NULL when memory ran out or when T's awards
 * must be read back from the database (the caller then renders it now). */
jf_reply_draft *jf_reply_draft_new(jf_ctx *ctx, const jf_tx *tx, const jf_points *p);
/* The reply's text of the stored transaction id, as the write that made it
 * rendered it (reversed_points 0, an earn's awards), appended to b (whole,
 * closed): a replay's rebuilt answer (idem.c).  JF_ERR_NOT_FOUND when there
 * is no such transaction. */
jf_err jf_tx_stored_reply_text(jf_ctx *ctx, const char *id, jf_jtext *b);
/* A transaction's view as a tree, and its text in the same bytes, the
 * object left open for more keys (tx.c). */
json_t *jf_tx_view_json(const jf_chain_tx *t, int64_t reversed_points);
void jf_tx_view_text(jf_jtext *b, const jf_chain_tx *t, int64_t reversed_points);

/* One TX_COLUMNS row of a list (cursor column 0, the seq): jf_tx_row_text
 * writes it for jf_list_rows_text, which the transaction lists use;
 * jf_tx_row builds the same bytes as a tree for jf_list_rows, the reference
 * test_tx_view compares the text with. */
jf_err jf_tx_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out);
jf_err jf_tx_row_text(jf_ctx *ctx, sqlite3_stmt *st, jf_jtext *b);

/* One row of a member's lots (reads.c: id, transaction id, amount,
 * remaining, available_at, expires_at, expired_tx_seq, created_at), its
 * status as of ctx->now_ms: jf_lot_row_text writes it for the lots list,
 * jf_lot_row builds the same bytes as a tree (test_tx_view's reference). */
jf_err jf_lot_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out);
jf_err jf_lot_row_text(jf_ctx *ctx, sqlite3_stmt *st, jf_jtext *b);

/* Renders a stored transaction; details adds postings, consumptions, hash. */
jf_err jf_tx_json(jf_ctx *ctx, const char *id, bool details, json_t **out);

/* A member's points now (jf_points, core.h). */
jf_err jf_lots_points(jf_ctx *ctx, const char *member_id, jf_points *out);
/* GET /members/{id}/points's answer (reads.c): written as text, and as the
 * tree it replaced (test_tx_view's reference for the same bytes). */
void jf_points_answer_text(jf_jtext *b, const char *member_id, int64_t as_of, const jf_points *p);
json_t *jf_points_answer_json(const char *member_id, int64_t as_of, const jf_points *p);
/* Creates a lot for a credit, paying the member's debt first. */
/* A due lot as its member's entry describes it. */
typedef struct jf_due_lot {
    int64_t expires_key, available_at, seq, remaining;
} jf_due_lot;
/* The first (at most max) of member_id's due lots in debit order into
 * out[0..*n), and their remaining points. */
jf_err jf_lots_due(jf_ctx *ctx, const char *member_id, int max, jf_due_lot *out, int *n,
                   int64_t *points);
/* Expires lots[0..n), read by jf_lots_due in this command, in the expire
 * transaction tx_seq: each lot closed with what it lost (expired_amount)
 * and its entry. */
jf_err jf_lots_expire(jf_ctx *ctx, int64_t tx_seq, const char *member_id, const jf_due_lot *lots,
                      int n);
/* Moves member_id's due entry (lots.c; schema version 18), now at `was`,
 * to the expiry of its earliest open lot, or removes it when no open lot
 * expires: the expiry, once it has expired what was due by now. */
jf_err jf_due_advance(jf_ctx *ctx, const char *member_id, int64_t was);
jf_err jf_lot_create(jf_ctx *ctx, const jf_tx *tx, const char *member_id, int64_t amount,
                     int64_t available_at, int64_t expires_at, int64_t *lot_seq);
/* Consumes amount from spendable lots, earliest expiring first.  The caller
 * has checked availability; a shortfall is a bug and returns JF_ERR_INTERNAL.
 * When piece_fn is given it is called for each piece (transfer). */
typedef jf_err (*jf_piece_fn)(jf_ctx *ctx, const jf_tx *tx, int64_t amount, int64_t expires_at,
                              void *arg);
jf_err jf_lots_consume(jf_ctx *ctx, const jf_tx *tx, const char *member_id, int64_t amount,
                       jf_piece_fn piece_fn, void *arg);
/* Returns amount to the lots source_seq consumed, most recent first. */
jf_err jf_lots_restore(jf_ctx *ctx, const jf_tx *tx, int64_t source_seq, const char *member_id,
                       int64_t amount);
/* Takes amount back: lots source_seq created first, then others, then debt
 * within the program's debt floor; JF_ERR_INSUFFICIENT_POINTS beyond it. */
jf_err jf_lots_clawback(jf_ctx *ctx, const jf_tx *tx, int64_t source_seq, const char *member_id,
                        int64_t amount);
/* {"available", "pending", "held"} of p (members.c); NULL when out of memory. */
json_t *jf_points_json(const jf_points *p);
/* Cheap checks of I3/I4 for one member after a write: no negative available,
 * pending or held points; debt only with an empty balance.  (verify and the
 * model test recompute I4 in full.)  *out gets the member's points they read. */
jf_err jf_member_assert_points(jf_ctx *ctx, const char *member_id, jf_points *out);

/* --- reverse.c --- */
/* What a reversal made on behalf of another operation (a refund) records
 * instead of the request's own key and order: NULL fields are left empty. */
typedef struct jf_reverse_opts {
    const char *idem_key; /* the key the transaction carries, or NULL */
    const char *order_id; /* the order it belongs to, or NULL */
    const char *metadata; /* JSON object text replacing the request's metadata, or NULL */
} jf_reverse_opts;
/* Reverses `points` (0: the whole remainder) of transaction orig_id: a
 * restore for a debit, a clawback for a credit (docs/LEDGER.md).  Fails with
 * JF_ERR_NOT_FOUND, JF_ERR_NOT_REVERSIBLE, JF_ERR_REVERSAL_EXCEEDS_ORIGINAL or
 * JF_ERR_INSUFFICIENT_POINTS (beyond the debt floor) and then has written
 * nothing the caller's savepoint would keep.  With opts NULL the transaction
 * carries ctx's idempotency key.  On success writes the new transaction's id
 * and the original's member into the caller's buffers. */
jf_err jf_reverse_points(jf_ctx *ctx, const char *orig_id, int64_t points,
                         const jf_reverse_opts *opts, char tx_id[JF_ID_LEN_MAX],
                         char member_id[JF_ID_LEN_MAX]);

/* --- ledger.c: helpers shared by the point operations --- */
/* Parses channel, store_id, note, reason and metadata from the body. */
jf_err jf_args_common(jf_ctx *ctx);
/* Copies those fields into a transaction being built. */
void jf_tx_describe(jf_tx *tx, const jf_args *a);
/* Loads a member that may earn or spend (not frozen or closed), and voids
 * its overdue holds first. */
jf_err jf_member_writable(jf_ctx *ctx, const char *id, jf_member *m);
/* *count = the member's order earns (purchases), counted up to max of them:
 * callers only tell the first few apart, and a loyal member's whole history
 * was counted on every order earn. */
jf_err jf_member_purchases(jf_ctx *ctx, const char *member_id, int64_t max, int64_t *count);
/* ctx->out = {"transaction": ..., "points": ...} of member_id after tx_id. */
jf_err jf_points_result(jf_ctx *ctx, const char *tx_id, const char *member_id);
/* JF_ERR_INSUFFICIENT_POINTS unless amount is spendable now. */
jf_err jf_require_available(jf_ctx *ctx, const char *member_id, int64_t amount);
/* Commits tx and asserts I4 for every member it touched. */
jf_err jf_tx_finish(jf_ctx *ctx, jf_tx *tx);
/* Starts a debit of ctx->args->points from the path's member: the member may
 * spend and has the points (*before: the member's points now); tx is begun
 * with the common fields set. */
jf_err jf_debit_begin(jf_ctx *ctx, const char *type, jf_member *m, jf_tx *tx, jf_points *before);
/* jf_tx_complete for a debit begun with jf_debit_begin: the member's points
 * after it are derived from *before and checked against the balances the
 * write stored, instead of being read again. */
jf_err jf_debit_complete(jf_ctx *ctx, jf_tx *tx, const char *member_id, const jf_points *before,
                         jf_err err);
/* When err is JF_OK, commits tx and answers with member_id's points; frees
 * tx either way and returns the outcome. */
jf_err jf_tx_complete(jf_ctx *ctx, jf_tx *tx, const char *member_id, jf_err err);
/* Parses an "order" object: id, and amount and currency (required when
 * need_amount). */
jf_err jf_order_validate(jf_ctx *ctx, json_t *o, bool need_amount);
/* Parses "dry_run" and "include_drafts" (earn, events): a dry run is not
 * allowed inside a batch, and include_drafts only in a dry run. */
jf_err jf_dry_run_args(jf_ctx *ctx);

#endif
