/*
 * Internals shared by the modules of the core: the engine, the per-request
 * context handlers run in, parsed arguments of write operations, and the
 * helpers every module uses.  Nothing here is visible to the server or CLI.
 *
 * A request runs as a handler: reads in the caller's thread on a pooled read
 * connection; writes in two halves, `validate` on the caller's thread (parse
 * and check the body, no database) and `apply` on the writer thread inside
 * the batch transaction (under a SAVEPOINT, so a refused command leaves no
 * trace and does not fail its neighbours).
 */
#ifndef JF_CORE_H
#define JF_CORE_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <string.h>

#include "arith.h"
#include "db.h"
#include "jifen/jifen.h"

/* snprintf(dst, cap, "%s", s) without the format parser, which cost about
 * 550 instructions a call, several times per write on the writer thread:
 * s cut to cap - 1 bytes, always terminated (cap >= 1); NULL (a NULL column
 * read by jf_db_text) copies as "". */
static inline void jf_str_copy(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strnlen(s, cap - 1) : 0;
    if (n > 0)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

#define JF_READ_POOL_MAX 64
#define JF_INFLIGHT_BUCKETS 4096
#define JF_HASH_BYTES 32

/* Program settings of one tenant (one row of `programs`). */
typedef struct jf_program {
    char public_id[JF_ID_LEN_MAX];
    char name[JF_NAME_LEN_MAX + 1];
    char currency[4];
    int64_t earn_points, earn_per_amount;
    char expiry_policy[24]; /* never, days_after_earn, end_of_month, end_of_quarter, end_of_year */
    int64_t expiry_n;       /* days or months */
    int64_t pending_days, debt_floor, hold_ttl_s, operator_adjust_max;
    char timezone[JF_TIMEZONE_LEN_MAX + 1];
    int64_t max_points_per_order; /* cap on what one order earns; -1 = none */
    int64_t updated_at;
} jf_program;

/* Arguments of write operations, parsed by validate.  Strings point into the
 * command's JSON body, which lives as long as the command. */
typedef struct jf_args {
    bool has_points, has_order, has_pending_days, has_expires_at, has_ttl, has_growth;
    bool dry_run, include_drafts; /* earn and events: compute, answer, write nothing */
    json_t *order;                /* the validated "order" object of an earn */
    const char *event_name;       /* POST /v1/members/{id}/events */
    int64_t points, growth;
    const char *order_id, *order_currency;
    int64_t order_amount;
    const char *reason, *note, *channel, *store_id, *to_member;
    json_t *metadata;
    int64_t pending_days, expires_at, ttl_s, now_ms;
} jf_args;

typedef struct jf_inflight {
    struct jf_inflight *next;
    int64_t tenant;
    char key[JF_IDEM_KEY_LEN_MAX + 1];
} jf_inflight;

typedef struct jf_cmd jf_cmd;

/* hot.c: chain heads and program accounts kept by the writer for one batch. */
typedef struct jf_hot jf_hot;
typedef struct jf_wcache jf_wcache;
typedef struct jf_idem_filter jf_idem_filter;

/* A latency histogram filled by one thread and read by /metrics
 * (jf_latency_hist in jifen.h is its snapshot). */
typedef struct jf_hist {
    _Atomic uint64_t buckets[JF_LATENCY_BUCKETS], count, sum_us;
} jf_hist;

/* Adds the time since *t0 to h. */
void jf_hist_since(jf_hist *h, const struct timespec *t0);
/* Microseconds since *t0 (CLOCK_MONOTONIC). */
int64_t jf_elapsed_us(const struct timespec *t0);
/* Milliseconds on CLOCK_MONOTONIC. */
int64_t jf_mono_ms(void);

/* FNV-1a over s, continued from h (start with JF_HASH_STR_SEED, or mix a
 * number such as the tenant into it): the one string hash of the in-memory
 * tables (idempotency keys in flight, hot rows, the key cache, expiry). */
#define JF_HASH_STR_SEED 1469598103934665603ull
static inline uint64_t jf_hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* keycache.c: valid API keys kept in memory; NULL (no caching) when the
 * epoch file beside the database cannot be had. */
typedef struct jf_key_cache jf_key_cache;
jf_key_cache *jf_key_cache_new(const char *db_path);
void jf_key_cache_free(jf_key_cache *kc);
/* The current key epoch: read it before reading a key from the database. */
uint64_t jf_key_cache_epoch(jf_key_cache *kc);
/* Called once a revocation is durable and before it is answered. */
void jf_key_cache_bump(jf_key_cache *kc);
bool jf_key_cache_get(jf_key_cache *kc, const char *id, uint8_t hash[JF_HASH_BYTES],
                      int64_t *tenant, jf_role *role);
void jf_key_cache_put(jf_key_cache *kc, uint64_t epoch, const char *id,
                      const uint8_t hash[JF_HASH_BYTES], int64_t tenant, jf_role role);

struct jf_engine {
    char *db_path;
    bool test_clock;
    bool check_replies; /* JIFEN_CHECK_REPLIES: each rebuilt answer is checked as stored (idem.c) */
    bool old_txids; /* JIFEN_TEST_OLD_TXIDS: transaction ids of before schema version 21 (tx.c) */
    _Atomic int64_t test_now_ms;
    jf_db wdb;
    bool has_writer;
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_idle;
    jf_cmd *q_head, *q_tail;
    jf_cmd *jobs_head, *jobs_tail; /* sliced jobs parked between slices */
    size_t q_len;
    bool stopping, draining, writer_busy;
    pthread_mutex_t idem_mu;
    jf_inflight *inflight[JF_INFLIGHT_BUCKETS];
    pthread_mutex_t pool_mu;
    jf_db *pool[JF_READ_POOL_MAX];
    int pool_n;
    bool has_sched, has_ckpt;
    _Atomic int wal_frames;     /* frames in the WAL after the last commit */
    _Atomic int wal_backfilled; /* frames the checkpointer last reported copied */
    _Atomic unsigned wal_epoch; /* bumped by each restart; older reports are stale */
    _Atomic uint64_t wal_restarts, wal_restarts_forced;
    _Atomic uint64_t memory_trims; /* idle trims of the heap (engine.c, ckpt_idle_trim) */
    int wal_restart_frames;        /* JF_WAL_RESTART_FRAMES unless the options say otherwise */
    int ckpt_interval_ms;          /* JF_CHECKPOINT_INTERVAL_MS unless the options say otherwise */
    /* The WAL-reset guard (engine.c): no checkpoint runs while
     * a commit starts the WAL again. */
    pthread_mutex_t ckpt_mu;      /* held for each checkpoint and each change of the guard */
    jf_db *guard;                 /* the checkpointer's read connection; ckpt_mu */
    bool guard_open;              /* it holds a read transaction; ckpt_mu */
    uint64_t guard_commits;       /* wal_commits when that began; ckpt_mu */
    _Atomic uint64_t wal_commits; /* commits that wrote to the WAL (wal_hook) */
    _Atomic uint64_t ckpt_calls;  /* checkpoints begun, by either thread */
    _Atomic int ckpt_running;     /* checkpoints under way */
    _Atomic uint64_t wal_starts, wal_starts_during_ckpt;
    _Atomic int64_t warm_members, warm_us; /* the writer's warm-up (writer_main) */
    pthread_t sched, ckpt;
    int interval_s;
    pthread_cond_t cv_sched;
    _Atomic uint64_t commits, commands, rejected;
    _Atomic uint64_t batch_buckets[11];
    jf_key_cache *keys; /* keycache.c */
    jf_hist commit_hist, flush_hist, ckpt_hist, restart_hist, trim_hist;
    /* syncer.c: answers go out after the WAL's flush, off the writer's path */
    bool has_syncer, has_sync_mu, s_stopping, s_busy;
    _Atomic bool s_flushing;        /* a flush is running: the writer holds its commit (engine.c) */
    _Atomic uint64_t commands_held; /* commands that joined a held commit */
    _Atomic uint64_t job_slices_held; /* job slices run in a held commit */
    _Atomic uint64_t reads_held;      /* reads answered after a flush */
    pthread_t syncer;
    pthread_mutex_t sync_mu;
    pthread_cond_t cv_sync, cv_durable;
    jf_cmd *s_head, *s_tail; /* committed, waiting for the flush */
    uint64_t s_gen;          /* highest commit generation handed over */
    struct jf_read_wait *r_head;
    /* reads answered after the flush they wait for */
    jf_hot *hot;           /* writer thread only; NULL without a writer */
    jf_wcache *wcache;     /* writer thread only; NULL without a writer */
    jf_idem_filter *idemf; /* the stored keys (idemfilter.c); NULL without a writer */
    /* The referral key (referral.h), read once at open; referral_keyed is
     * false for a database whose codes predate keys. */
    uint8_t referral_key[16];
    bool referral_keyed;
    /* Writer thread only (engine.c, jf_writer_apply): every command takes a
     * savepoint (a batch being run again), and a command without one failed
     * after writing, so the batch must be run again. */
    bool careful, poisoned;
    _Atomic uint64_t batches_redone;
    /* Times rolled-back work made the writer's cache forget its parsed
     * bodies, live rules, tier configurations and hold bounds (engine.c,
     * writer_forget). */
    _Atomic uint64_t cache_forgets;
    /* Writer thread only: the program row of prog_tenant as a batch last
     * read it (engine.c, writer_program), and the data version that batch
     * began at. */
    jf_program prog;
    int64_t prog_tenant, prog_data_version;
    bool prog_valid;
    int wal_fd;
    char wal_path[PATH_MAX]; /* the database path and "-wal" */
    _Atomic uint64_t commit_gen, durable_gen;
    /* syncer.c, jf_member_written: by member seq modulo the size, the
     * generation of the last commit that changed a member's entries. */
    _Atomic uint64_t member_gen[JF_MEMBER_GEN_SLOTS];
};

/* A member's points now.  Derived from the points balance (which equals the
 * open lots' remaining minus debt, I4) and the few lots that are pending or
 * due, so the cost does not grow with the member's history (jf_lots_points,
 * ledger.h). */
typedef struct jf_points {
    int64_t balance, held, debt, due, pending, available;
} jf_points;

/* The context a handler runs in. */
typedef struct jf_ctx {
    jf_engine *eng;
    jf_db *db;
    const jf_request *req; /* NULL for internal commands */
    jf_op op;
    const jf_auth *auth;
    const char *path_id;
    json_t *body;
    jf_args *args;
    const char *idem_key;
    int64_t now_ms;
    jf_program prog;
    json_t *out;  /* the response body on success */
    bool created; /* answer 201 */
    char *detail; /* buffer of 256 bytes for the error detail */
    int64_t *acc; /* running totals of a sliced job (6 values), kept across slices */
    bool again;   /* a sliced job has more to do: run it again after this batch */
    /* The transaction this command last wrote awards for (jf_awards_write),
     * 0 for none: the reply of a transaction without any reads none back;
     * and a copy of those awards (malloc'd, freed by ctx_finish), which the
     * reply's text renders instead of reading them back. */
    int64_t awarded_tx_seq;
    struct jf_award *awarded;
    size_t awarded_n;
    /* The answer's "transaction" as text (ledger.c, points_result_text) and
     * the member's points after it, written by ctx_finish before ctx->out's
     * keys; NULL when the transaction is in ctx->out. */
    char *reply_tx;
    /* Or the same answer as data, rendered off the writer (tx.c,
     * jf_reply_draft_new); NULL when reply_tx or ctx->out holds it. */
    struct jf_reply_draft *reply_draft;
    char reply_tx_id[JF_ID_LEN_MAX];
    jf_points reply_points;
    /* The whole answer as text (jf_list_rows_text), used by ctx_finish
     * instead of ctx->out; NULL otherwise. */
    char *reply_body;
    size_t reply_body_len;
    /* The last member whose seq this command learnt (jf_member_seq): a
     * write resolves its member four or five times. */
    int64_t seq_memo;
    char seq_memo_id[JF_ID_LEN_MAX];
    /* What this command read of tiers (tiers.c), NULL until it reads;
     * freed by ctx_finish. */
    struct jf_tier_memo *tier_memo;
    /* The view of args->order's lines (rules.c, jf_ctx_order_lines), made
     * once for the evaluation and the lines' attribution; malloc'd (NULL for
     * none), freed by ctx_finish. */
    struct jf_order_line *lines;
    size_t lines_n;
    bool lines_made;
} jf_ctx;

typedef jf_err (*jf_validate_fn)(jf_ctx *ctx);
typedef jf_err (*jf_handler_fn)(jf_ctx *ctx);

typedef struct jf_op_impl {
    jf_validate_fn validate; /* writes only; may be NULL */
    jf_handler_fn run;       /* read, or the writer's apply */
} jf_op_impl;

/* engine.c: an answer {"transaction": tx, "points": p, then rest's keys}
 * as text (malloc'd), the points' keys in jf_points_json's order; rest may
 * be NULL.  NULL when memory ran out. */
char *jf_points_reply_text(const char *tx, const jf_points *p, json_t *rest, size_t *len);
/* An answer kept as data until it is rendered (tx.c; made by
 * jf_reply_draft_new, ledger.h). */
typedef struct jf_reply_draft jf_reply_draft;
/* The answer's text, byte for byte what jf_tx_reply_text and
 * jf_points_reply_text write, with rest's keys after "points" (rest may be
 * NULL); malloc'd, NULL when memory ran out.  Any thread: it never touches
 * the database.  The first rendering without rest allocates nothing: it
 * writes into the memory the draft reserved (tx.c). */
char *jf_reply_draft_render(jf_reply_draft *d, json_t *rest, size_t *len);
/* NULL is a no-op. */
void jf_reply_draft_free(jf_reply_draft *d);

/* Sets ctx->detail with printf formatting and returns err: `return jf_fail(ctx, ...)`. */
jf_err jf_fail(jf_ctx *ctx, jf_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* --- errors.c --- */
/* The points operations (earn, redeem, adjust, transfer, hold, capture,
 * void, reverse): what a batch may hold, and what never changes a program. */
bool jf_op_is_points(jf_op op);

/* --- ids.c: identifiers and hashes --- */
void jf_id_new(const char *prefix, char out[JF_ID_LEN_MAX]);
/* Time-ordered and unique in the process: prefix, 11 hex digits of now_ms,
 * 8 of a counter, 4 random (27 characters with a 4-character prefix). */
void jf_id_new_ordered(const char *prefix, int64_t now_ms, char out[JF_ID_LEN_MAX]);
void jf_hex(const uint8_t *bytes, size_t n, char *out);

/* --- jsonr.c: JSON text to jansson values --- */
typedef enum jf_json_fault {
    JF_JSON_FAULT_NONE,
    JF_JSON_FAULT_SYNTAX,    /* not JSON, or not what jansson takes (jsonr.c) */
    JF_JSON_FAULT_DUPLICATE, /* a key twice in one object (JSON_REJECT_DUPLICATES) */
    JF_JSON_FAULT_TOO_BIG,   /* an integer beyond json_int_t */
    JF_JSON_FAULT_DEPTH,     /* containers nested deeper than JF_JSON_DECODE_DEPTH_MAX */
    JF_JSON_FAULT_NOMEM,     /* an allocation failed */
} jf_json_fault;
typedef struct jf_json_read_error {
    jf_json_fault fault;
    size_t at;        /* the byte of the text where it was found */
    int line, column; /* of that byte, both from 1; the column in bytes */
    char text[96];    /* what was wrong, in English */
} jf_json_read_error;
/* The value json_loadb(text, len, flags, NULL) builds (flags: 0,
 * JSON_REJECT_DUPLICATES, JSON_DECODE_ANY), refused where it refuses, and
 * also when containers nest deeper than JF_JSON_DECODE_DEPTH_MAX.  NULL
 * with *e saying why, including an allocation that failed (the partial
 * tree is freed).  *depth (when not NULL) is the nesting of the deepest
 * container read: 0 for a scalar, 1 for {} or [1].  The caller owns the
 * tree.  Never reads outside text[0..len). */
json_t *jf_json_read(const char *text, size_t len, size_t flags, int *depth, jf_json_read_error *e);

/* --- json.c: strict decoding and encoding --- */
/* Parses a request body strictly (duplicate keys refused, depth and size
 * bounded; jsonr.c).  JF_ERR_NOMEM when any allocation failed during the
 * parse. */
jf_err jf_json_parse_body(jf_ctx *ctx, const char *text, size_t len, json_t **out);
/* jf_json_loads_whole (jifen.h) parses the text the engine stored (rules,
 * tier configurations, tags, metadata) the same way, and notes a failed
 * allocation for ctx_finish. */
/* Routes jansson's allocations through a hook that notes a failure, so that
 * jf_json_parse_body can tell a body it could not allocate from a malformed
 * one.  Process-wide (jansson's hooks are); jf_engine_open calls it once. */
void jf_json_init(void);
/* This thread's record of a failed jansson allocation: reset as a command or
 * a read starts (ctx_init), asked as it ends (ctx_finish), which then answers
 * out_of_memory: a tree missing a field for want of memory must be neither
 * stored nor sent. */
void jf_json_alloc_reset(void);
bool jf_json_alloc_failed(void);
/* Records an allocation failure of our own JSON writer (jsonw.c) as one of
 * jansson's: a dump that failed (a transaction's metadata, a stored reply)
 * then answers out_of_memory instead of a value stored as null. */
void jf_json_alloc_note_failure(void);
jf_err jf_json_allow(jf_ctx *ctx, json_t *obj, const char *const *fields);
/* The values of obj's fields in one pass over its keys: vals[i] is
 * fields[i]'s (a NULL-terminated list), NULL when obj lacks it (vals has
 * room for every name of fields; NULL takes none).  Returns obj's first key
 * not among fields, or NULL.  For objects read field by field many times a
 * request (an order's lines), where a lookup by name per field cost about
 * 150 instructions. */
const char *jf_json_fields(json_t *obj, const char *const *fields, json_t **vals);
/* jf_json_allow that also takes the values (jf_json_fields). */
jf_err jf_json_pick(jf_ctx *ctx, json_t *obj, const char *const *fields, json_t **vals);
jf_err jf_json_int(jf_ctx *ctx, json_t *obj, const char *field, bool required, int64_t min,
                   int64_t max, int64_t *out, bool *present);
jf_err jf_json_str(jf_ctx *ctx, json_t *obj, const char *field, bool required, size_t max_len,
                   const char **out);
/* jf_json_int's and jf_json_str's checks of field's value v, already looked
 * up (NULL when absent); the same answers and messages. */
jf_err jf_json_int_of(jf_ctx *ctx, json_t *v, const char *field, bool required, int64_t min,
                      int64_t max, int64_t *out, bool *present);
jf_err jf_json_str_of(jf_ctx *ctx, json_t *v, const char *field, bool required, size_t max_len,
                      const char **out);
jf_err jf_json_time(jf_ctx *ctx, json_t *obj, const char *field, bool required, int64_t *out,
                    bool *present);
json_t *jf_json_time_value(int64_t ms);            /* RFC 3339 string or null when ms < 0 */
json_t *jf_json_text(const char *s);               /* string or null */
char *jf_json_dump(json_t *v, size_t *len);        /* jsonw.c: compact, malloc'd */
char *jf_json_dump_sorted(json_t *v, size_t *len); /* the same, keys in byte order */
/* UTF-8 as jansson checks it (jsonw.c; the writer's and the reader's):
 * the bytes of a sequence that starts with c, 0 for a byte no sequence
 * starts with; whether the n bytes at s are one code point jansson takes. */
size_t jf_json_utf8_first(unsigned char c);
bool jf_json_utf8_full(const unsigned char *s, size_t n);
/* JSON text written piece by piece, in the bytes jf_json_dump writes for the
 * same tree (jsonw.c): a reply rendered from the writer's own structs needs
 * no tree.  Zero-initialised; jf_jt_take hands the text over (NULL when
 * memory ran out) and leaves the buffer empty. */
typedef struct jf_jtext {
    char *p;
    size_t len, cap;
    bool failed;
    bool sorted; /* keys in byte order, as JSON_SORT_KEYS (jf_json_dump_sorted) */
} jf_jtext;
void jf_jt_raw(jf_jtext *b, const char *s); /* appended as it is */
void jf_jt_rawn(jf_jtext *b, const char *s, size_t n);
void jf_jt_str(jf_jtext *b, const char *s); /* as jf_json_text(s) dumps */
/* The most bytes jf_jt_str(b, s) appends (it needs no memory of its own but
 * the buffer's). */
size_t jf_jt_str_max(const char *s);
/* What jf_points_reply_text writes after the transaction: the points, then
 * rest_text's keys (a dumped object, or NULL), and the closing brace. */
void jf_points_reply_end(jf_jtext *b, const jf_points *p, const char *rest_text);
void jf_jt_int(jf_jtext *b, int64_t v);
void jf_jt_json(jf_jtext *b, const json_t *v); /* as jf_json_dump(v); NULL is null */
char *jf_jt_take(jf_jtext *b, size_t *len);
void jf_jt_reserve(jf_jtext *b, size_t n); /* room for n more bytes: one realloc for many */
void jf_jt_time(jf_jtext *b, int64_t ms);  /* as jf_json_time_value(ms) dumps (json.c) */
/* A key after an object's first, as literal text: the names need no escape
 * (test_tx_view.c compares every renderer that uses it with its tree). */
#define JF_JT_KEY(b, k) jf_jt_rawn((b), ",\"" k "\":", sizeof(",\"" k "\":") - 1)
void jf_json_set(json_t *obj, const char *k, json_t *v); /* steals v; NULL v stores null */

/* --- program.c --- */
jf_err jf_program_load(jf_db *db, int64_t tenant, jf_program *out);
json_t *jf_program_json(const jf_program *p);
int64_t jf_program_expiry_ms(const jf_program *p, int64_t earn_ms);
extern const jf_op_impl jf_op_program_get, jf_op_program_update;
jf_err jf_program_insert_default(jf_db *db, int64_t tenant, const char *name, int64_t now);

/* --- engine.c --- */
int64_t jf_now_ms(jf_engine *eng);
jf_db *jf_read_acquire(jf_engine *eng);
void jf_read_release(jf_engine *eng, jf_db *db);
jf_err jf_run_internal(jf_engine *eng, jf_op op, int64_t tenant, const char *body, char **json);

/* --- params --- */
const char *jf_param_get(const jf_ctx *ctx, const char *name);
jf_err jf_param_limit(jf_ctx *ctx, int64_t *limit);
jf_err jf_param_cursor(jf_ctx *ctx, int64_t *cursor);
/* ?limit= and ?cursor= together (-1 when there is no cursor). */
jf_err jf_list_params(jf_ctx *ctx, int64_t *limit, int64_t *cursor);
json_t *jf_list_envelope(json_t *data, int64_t next_cursor);
/* Renders one row of a list. */
typedef jf_err (*jf_row_fn)(jf_ctx *ctx, sqlite3_stmt *st, json_t **out);
/* Steps st (which selects limit + 1 rows) into ctx->out as a list envelope;
 * the cursor is column cursor_col of the last row shown. */
jf_err jf_list_rows(jf_ctx *ctx, sqlite3_stmt *st, int64_t limit, int cursor_col, jf_row_fn row);
/* Writes one row of a list as text, in the bytes its tree would dump to. */
typedef jf_err (*jf_row_text_fn)(jf_ctx *ctx, sqlite3_stmt *st, jf_jtext *b);
/* jf_list_rows with the rows written as text: the envelope's bytes (the same
 * as jf_list_rows's tree dumps to) go to ctx->reply_body.  A page of twenty
 * transactions built as trees and dumped cost a history read most of its
 * time. */
jf_err jf_list_rows_text(jf_ctx *ctx, sqlite3_stmt *st, int64_t limit, int cursor_col,
                         jf_row_text_fn row);
/* A list envelope written as text around rows the caller writes (comma
 * separated): the bytes of jf_list_envelope's tree. */
void jf_list_text_begin(jf_jtext *b);
void jf_list_text_end(jf_jtext *b, int64_t next_cursor);
/* Hands b's text to ctx->reply_body as the answer, or frees it when err is
 * not JF_OK; returns err, or JF_ERR_NOMEM when the text ran out of memory. */
jf_err jf_reply_text(jf_ctx *ctx, jf_jtext *b, jf_err err);
/* ?status=open|all (default all): *open_only tells which. */
jf_err jf_param_open_only(jf_ctx *ctx, bool *open_only);

/* --- members.c --- */
/* A member's tier as stored on its row (tiers.c). */
typedef struct jf_member_tier {
    char code[JF_TIER_CODE_LEN_MAX + 1];    /* "" when none is stored */
    int64_t since, eval_at, override_until; /* -1 when absent */
    bool manual;
} jf_member_tier;
/* The member row's fields the writer needs.  The writer keeps them between
 * batches (wcache.c): code that writes one of these columns (or creates a
 * member) calls jf_wcache_member_dirty first. */
typedef struct jf_member {
    int64_t seq;
    char id[JF_ID_LEN_MAX];
    char status[12];
    bool referred; /* referred_by is set (once, when the member is created) */
    int64_t debt;
    /* No earlier than the available_at of any open lot of the member made
     * pending (lots.c, the pending mark; schema.c, version 23). */
    int64_t pending_until;
    char birthday[16]; /* YYYY-MM-DD, or "" when not set */
    jf_member_tier tier;
} jf_member;
jf_err jf_member_load(jf_ctx *ctx, const char *id, jf_member *out);
/* syncer.c: notes that the writer's open commit changes member_seq's entries in
 * member_state (its accounts, lots or transactions), before that commit can
 * be seen.  Writes on another connection than the writer's note nothing. */
void jf_member_written(jf_ctx *ctx, int64_t member_seq);
/* The generation a read of member_seq's points, transactions or lots waits
 * for, loaded after the read's snapshot was taken. */
uint64_t jf_member_read_gen(jf_engine *eng, int64_t member_seq);
/* The member's seq, which keys its rows of member_state (schema.c, version
 * 10): the command's last member, or the writer's cache, or its row.  An
 * unknown member is JF_ERR_NOT_FOUND with a detail. */
jf_err jf_member_seq(jf_ctx *ctx, const char *id, int64_t *seq);
/* Tells jf_member_seq that member id has this seq (read with its row). */
void jf_member_seq_note(jf_ctx *ctx, const char *id, int64_t seq);
/* Fills the writer's member cache from db before its first batch (up to
 * JF_WCACHE_MEMBERS rows; beyond, any of them); *count is how many rows were
 * read.  Writer thread. */
jf_err jf_members_warm(jf_db *db, jf_wcache *wc, int64_t *count);
jf_err jf_member_points_json(jf_ctx *ctx, const char *member_id, json_t **out);
extern const jf_op_impl jf_op_member_create, jf_op_member_get, jf_op_member_get_external,
    jf_op_member_update, jf_op_member_list;

/* --- ledger.c / lots.c / reads.c / expiry.c --- */
extern const jf_op_impl jf_op_earn, jf_op_redeem, jf_op_adjust, jf_op_transfer, jf_op_hold,
    jf_op_hold_capture, jf_op_hold_void, jf_op_reverse;
extern const jf_op_impl jf_op_member_points, jf_op_member_transactions, jf_op_member_lots,
    jf_op_member_holds, jf_op_hold_get, jf_op_transaction_get, jf_op_transaction_list;
extern const jf_op_impl jf_op_expiry_run, jf_op_expiry_forecast, jf_op_holds_sweep;
jf_err jf_holds_void_overdue(jf_ctx *ctx, const char *member_id);

/* --- hot.c: rows every write of a tenant updates, written once per batch ---
 * The writer starts each command with jf_hot_cmd_begin and calls
 * jf_hot_cmd_rollback wherever a command is refused or rolled back;
 * jf_hot_flush writes the batch's rows just before its COMMIT and forgets
 * them, failed or not.  All of them accept a NULL table (no writer). */
/* A table of at most rows_max rows; NULL without memory (or rows_max < 1). */
jf_hot *jf_hot_new(int rows_max);
void jf_hot_free(jf_hot *h);
void jf_hot_cmd_begin(jf_hot *h);
void jf_hot_cmd_rollback(jf_hot *h);
jf_err jf_hot_flush(jf_hot *h, jf_db *db);
/* Forgets the batch's rows without writing them (the batch was rolled back). */
void jf_hot_discard(jf_hot *h);
/* A tenant's chain head (tenants.tx_seq, chain_head, tx_time_max): its last
 * transaction's number and hash, and the latest time of any of its
 * transactions so far, which never decreases along seq even when the clock
 * steps back (a tier window's scan stops on it, tiers.c). */
typedef struct jf_chain_head {
    int64_t seq, time_max;
    uint8_t hash[JF_HASH_BYTES];
} jf_chain_head;
/* The tenant's chain head, as this batch left it. */
jf_err jf_hot_chain_get(jf_ctx *ctx, jf_chain_head *out);
/* Moves the chain head to *next (seq one past the last); JF_ERR_INTERNAL
 * when next->seq does not follow the head. */
jf_err jf_hot_chain_set(jf_ctx *ctx, const jf_chain_head *next);
/* Adds an award's points and count (awards: 1 when it gave points, else 0)
 * to rule_id's row of rule_usage: kept in the table and written with the
 * batch, or at once when the table cannot keep it (not the writer, full). */
jf_err jf_hot_usage_add(jf_ctx *ctx, const char *rule_id, int64_t points, int64_t awards);
/* Writes the additions to rule_usage that the tenant's table keeps, so that
 * a statement reading rule_usage next sees them.  A no-op off the writer. */
jf_err jf_hot_usage_flush(jf_ctx *ctx);
/* Adds amount to a program account; *balance is the new balance.
 * JF_ERR_POINTS_OVERFLOW (nothing changed) when it would leave the range. */
jf_err jf_hot_account_add(jf_ctx *ctx, const char *account, int64_t amount, int64_t *balance);
/* Adds amount to an account's stored row now (created at 0 when missing; a
 * member's account is a row of member_state, a program's of accounts);
 * *balance is the new balance.  JF_ERR_POINTS_OVERFLOW when the balance
 * leaves the points range (the failed command's writes are undone). */
jf_err jf_account_add(jf_ctx *ctx, const char *account, int64_t amount, int64_t *balance);

/* --- idemfilter.c: which idempotency keys the database may hold ---
 * A filter the writer asks before looking a key up, kept exact enough by
 * the protocol in the file comment: it never calls a stored key absent.
 * Every function accepts NULL (no filter: every key is looked up). */
/* NULL without memory.  Builds nothing until the writer has stored
 * JF_IDEM_FILTER_WRITES_MIN keys; then a thread of its own scans the table. */
jf_idem_filter *jf_idem_filter_new(const char *db_path);
/* Stops the builder.  Call after the writer thread has ended. */
void jf_idem_filter_free(jf_idem_filter *f);
/* Writer thread, at each batch's start inside its write transaction, with
 * SQLite's data version read there: another process's write forgets the
 * filter (and builds it again). */
void jf_idem_filter_batch_begin(jf_idem_filter *f, int64_t data_version);
/* Writer thread: true only when no key (tenant, key) is stored. */
bool jf_idem_filter_absent(jf_idem_filter *f, int64_t tenant, const char *key);
/* Writer thread: the key was just stored (its batch may still roll back). */
void jf_idem_filter_add(jf_idem_filter *f, int64_t tenant, const char *key);
/* The same for the orders that earned (a transaction of type earn with that
 * order id): true only when the tenant has none for order_id; and the earn
 * of order_id was just written (its batch may still roll back). */
bool jf_idem_filter_order_absent(jf_idem_filter *f, int64_t tenant, const char *order_id);
void jf_idem_filter_order_add(jf_idem_filter *f, int64_t tenant, const char *order_id);
typedef struct jf_idem_filter_stats {
    bool ready;               /* answering absences now */
    uint64_t keys, bytes;     /* in the current filter (0 when none) */
    uint64_t lookups_skipped; /* keys (and orders) found absent without a lookup */
    uint64_t builds, forgets; /* filters built, and forgotten */
    double build_seconds;     /* the last build */
} jf_idem_filter_stats;
void jf_idem_filter_stats_get(jf_idem_filter *f, jf_idem_filter_stats *out);

/* --- wcache.c: member rows and hold deadlines the writer keeps between batches ---
 * Writer thread only; every function accepts a NULL table (not the writer).
 * Exact by construction: see the file comment. */
/* NULL without memory. */
jf_wcache *jf_wcache_new(void);
void jf_wcache_free(jf_wcache *c);
/* Starts a batch attempt; data_version is SQLite's (PRAGMA data_version) read
 * inside its transaction: when another process wrote since, all is forgotten. */
void jf_wcache_batch_begin(jf_wcache *c, int64_t data_version);
/* Ends a batch, committed or not: forgets which members it wrote. */
void jf_wcache_batch_end(jf_wcache *c);
/* Some writes were rolled back (a savepoint, a batch, a failed commit). */
void jf_wcache_rollback(jf_wcache *c);
/* Call before writing a member's row (or creating it): the member is read
 * from the database, not from here, until the batch ends. */
void jf_wcache_member_dirty(jf_wcache *c, int64_t tenant, const char *id);
/* Copies the member's row to *out when it is here. */
bool jf_wcache_member_get(jf_wcache *c, int64_t tenant, const char *id, jf_member *out);
/* Remembers a row just read on the writer's connection (ignored when dirty). */
void jf_wcache_member_put(jf_wcache *c, int64_t tenant, const jf_member *m);
/* A bound on the tenant's open holds' deadlines: true with *bound_ms when no
 * open hold is due before it (INT64_MIN for a tenant the table cannot
 * track); false when it must be read (and set again). */
bool jf_wcache_holds_bound(jf_wcache *c, int64_t tenant, int64_t now_ms, int64_t *bound_ms);
void jf_wcache_holds_bound_set(jf_wcache *c, int64_t tenant, int64_t bound_ms);
/* A hold was opened: lowers the bound to its deadline. */
void jf_wcache_hold_opened(jf_wcache *c, int64_t tenant, int64_t expires_ms);
/* A body parsed earlier from an immutable row, by tenant, kind ('R' a
 * rule's version, 'T' a tier configuration), id and version: a new
 * reference (the caller decrefs it), NULL when not kept.  Callers must not
 * change it. */
json_t *jf_wcache_body_get(jf_wcache *c, int64_t tenant, char kind, const char *id,
                           int64_t version);
/* Keeps a reference to body as the one for that key (the caller keeps its own). */
void jf_wcache_body_put(jf_wcache *c, int64_t tenant, char kind, const char *id, int64_t version,
                        json_t *body);
/* The body kept for that key, else text parsed (and kept): a new reference,
 * NULL when text does not parse.  c may be NULL (not the writer): parses. */
json_t *jf_wcache_body_load(jf_wcache *c, int64_t tenant, char kind, const char *id,
                            int64_t version, const char *text);
/* What a caller derived from a kept body (a rule's plan, rules.c) and left
 * with it by jf_wcache_body_derive: NULL unless body is the very body kept
 * for that key and something was left.  Valid until the next call on c;
 * it may point into the body, so a caller copying it keeps its own
 * reference to the body.  c may be NULL. */
const void *jf_wcache_body_derived(jf_wcache *c, int64_t tenant, char kind, const char *id,
                                   int64_t version, const json_t *body);
/* Leaves derived (malloc'd, freed with free() when the body goes; taken
 * over in every case) with the body kept for that key when that is body;
 * otherwise frees it at once. */
void jf_wcache_body_derive(jf_wcache *c, int64_t tenant, char kind, const char *id, int64_t version,
                           const json_t *body, void *derived);
/* One rule a trigger of a tenant fires, as rules_db.c's live query found it
 * before the campaigns' windows are applied. */
typedef struct jf_live_rule {
    char id[JF_ID_LEN_MAX];
    int64_t version;
    char campaign_id[JF_ID_LEN_MAX];      /* "" without a campaign */
    int64_t starts_at, ends_at;           /* its window: INT64_MIN, INT64_MAX when open */
    int64_t budget_points, budget_awards; /* -1: no such budget */
} jf_live_rule;
/* The rows kept for (tenant, trigger, event or NULL, drafts): *rows stays
 * valid until the next call on c; false when none are kept. */
bool jf_wcache_live_get(jf_wcache *c, int64_t tenant, const char *trigger, const char *event,
                        bool drafts, const jf_live_rule **rows, size_t *n);
/* Keeps a copy of rows[0..n) for that key (n <= JF_RULES_ACTIVE_MAX). */
void jf_wcache_live_put(jf_wcache *c, int64_t tenant, const char *trigger, const char *event,
                        bool drafts, const jf_live_rule *rows, size_t n);
/* A rule or a campaign was written: every kept set is forgotten, and none is
 * kept or served again before the next batch.  c may be NULL. */
void jf_wcache_live_changed(jf_wcache *c);
/* The tenant's current tier configuration as tiers.c filled it in the
 * program's time zone tz: true with a copy in *cfg (its body a new
 * reference, for jf_tier_config_free) and *found, which is false for a
 * tenant without one; false when none is kept.  c may be NULL. */
struct jf_tier_config;
bool jf_wcache_tiers_get(jf_wcache *c, int64_t tenant, const char *tz, struct jf_tier_config *cfg,
                         bool *found);
/* Keeps a copy of cfg (when found) as the tenant's, filled in zone tz. */
void jf_wcache_tiers_put(jf_wcache *c, int64_t tenant, const char *tz,
                         const struct jf_tier_config *cfg, bool found);
/* A tier configuration was written: every kept one is forgotten, and none is
 * kept or served again before the next batch.  c may be NULL. */
void jf_wcache_tiers_changed(jf_wcache *c);
/* Whether ctx runs on the writer's connection (the writer's thread), where
 * the writer's own tables (its cache, hot rows, key filter) may be used. */
bool jf_ctx_on_writer(const jf_ctx *ctx);
/* The table when ctx runs on the writer's connection, else NULL. */
jf_wcache *jf_ctx_wcache(const jf_ctx *ctx);
/* The writer's filter of stored keys and earned orders when it may spare
 * this command a lookup: on the writer's connection, outside a batch run
 * again after a failure, which looks every key and order up (a key or
 * order the filter wrongly called absent failed on its table's UNIQUE key
 * the first time; idemfilter.c).  NULL otherwise. */
jf_idem_filter *jf_ctx_idem_filter(const jf_ctx *ctx);

/* --- auth.c --- */
extern const jf_op_impl jf_op_key_create, jf_op_key_list, jf_op_key_revoke;
jf_err jf_key_insert(jf_db *db, int64_t tenant, const char *name, jf_role role, int64_t now,
                     char *key_id, char *secret_out, size_t secret_len);

#endif
