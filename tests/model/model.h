/*
 * Shared declarations of the model test.
 *
 * The model test drives a real engine through the public API (jifen.h) with a
 * seeded random sequence of operations and, beside it, an independent
 * in-memory oracle (oracle.c) that implements spec.md "Ledger semantics" from
 * scratch.  After every operation the two must agree on the outcome; every
 * few operations they must agree on every member's points and lots.  The
 * files are: oracle.c (the ledger model), util.c (random numbers, time,
 * small vectors), client.c (engine calls and JSON replies), check.c (state
 * comparisons), ops.c (the random operations) and model_test.c (main).
 */
#ifndef JIFEN_MODEL_H
#define JIFEN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jifen/jifen.h"

#define MT_DAY_MS INT64_C(86400000)
#define MT_NEVER INT64_MAX /* expires_at of a lot that never expires */
#define MT_ID_LEN 64

/* ---- util.c: random numbers, time, memory ---- */

typedef struct mt_rng {
    uint64_t s[4];
} mt_rng;

void mt_rng_seed(mt_rng *r, uint64_t seed);
uint64_t mt_rng_next(mt_rng *r);
/* Uniform in [lo, hi] (inclusive); lo <= hi. */
int64_t mt_rng_range(mt_rng *r, int64_t lo, int64_t hi);
/* True with probability percent / 100 (percent may be fractional). */
bool mt_rng_chance(mt_rng *r, double percent);

/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ". */
void mt_time_format(int64_t ms, char *buf, size_t len);
/* Formats ms as RFC 3339 with the given offset from UTC in minutes and
 * with or without the milliseconds (the instant is the same). */
void mt_time_format_offset(int64_t ms, int offset_min, bool with_ms, char *buf, size_t len);
/* Parses the engine's output format exactly; false when it is not that. */
bool mt_time_parse(const char *s, int64_t *ms);

void *mt_xrealloc(void *p, size_t size);
char *mt_xstrdup(const char *s);

/* Appends val to a growable array (arr, n, cap are lvalues). */
#define MT_PUSH(arr, n, cap, val)                                                                  \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? 2 * (cap) : 8;                                                         \
            (arr) = mt_xrealloc((arr), (size_t)(cap) * sizeof *(arr));                             \
        }                                                                                          \
        (arr)[(n)++] = (val);                                                                      \
    } while (0)

/* ---- oracle.c: the ledger model ---- */

/* The oracle's assertions stay on in every build type (NDEBUG or not): a
 * broken one fails the run like a mismatch, naming the seed. */
#define MT_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            mt_oracle_bug(#cond, __FILE__, __LINE__);                                              \
    } while (0)
_Noreturn void mt_oracle_bug(const char *cond, const char *file, int line);

typedef enum o_type {
    O_EARN,
    O_REDEEM,
    O_ADJUST,
    O_TRANSFER,
    O_HOLD,
    O_CAPTURE,
    O_VOID,
    O_EXPIRE,
    O_REVERSE,
} o_type;

typedef enum o_hold_state { O_HOLD_OPEN, O_HOLD_CAPTURED, O_HOLD_VOIDED } o_hold_state;

/* One consumption of a debit: lot, amount taken and how much came back. */
typedef struct o_piece {
    int lot;
    int64_t amount;
    int64_t restored;
} o_piece;

typedef struct o_lot {
    int member;
    int txn; /* the oracle transaction that created it */
    int64_t amount;
    int64_t remaining;
    int64_t available_at;
    int64_t expires_at; /* MT_NEVER for null */
    bool expired;       /* expired by the expiry job */
    char id[MT_ID_LEN]; /* the engine's lot id once matched without doubt */
} o_lot;

typedef struct o_txn {
    o_type type;
    int member;
    int other; /* transfer recipient, else -1 */
    int64_t points;
    int64_t reversed;
    int64_t growth;  /* earn: growth given; reversal of an earn: growth taken back */
    int sign;        /* adjust: +1 or -1 */
    o_piece *pieces; /* what this debit consumed (redeem, -adjust, transfer, hold) */
    int npieces, cap_pieces;
    int *lots; /* lots this credit created (earn, +adjust, transfer recipient) */
    int nlots, cap_lots;
    int hold;            /* capture and void: the hold transaction */
    int reverses;        /* reverse: the original transaction */
    int64_t deadline;    /* hold: created + ttl */
    o_hold_state hstate; /* hold */
    int64_t captured;    /* hold */
    int64_t released;    /* hold */
    char id[MT_ID_LEN];  /* the engine's id; empty for system transactions */
} o_txn;

typedef struct o_member {
    char id[MT_ID_LEN];
    int64_t debt;
    int *lots;
    int nlots, cap_lots;
    bool retired; /* no longer picked for new operations */
    bool dirty;   /* touched since its last full check */
} o_member;

typedef struct o_view {
    int64_t available, pending, held, debt, balance;
} o_view;

typedef struct o_expiry {
    int64_t points, lots, members;
} o_expiry;

/* How often the rarer paths of the ledger ran, to show a run covered them. */
typedef struct o_stats {
    long debt_created; /* clawbacks that ended in debt */
    long debt_paid;    /* credits that paid debt */
    long restored_new; /* restores into a new lot (the original had expired) */
    long restored;     /* restores into the original lot */
    long holds_swept;  /* holds voided past their deadline */
    long lots_expired; /* lots expired by the job */
} o_stats;

typedef struct oracle {
    int64_t now;
    o_stats stats;
    int64_t pending_days;
    int64_t expiry_days; /* days_after_earn; 0 = never */
    int64_t debt_floor;
    o_lot *lots;
    int nlots, cap_lots;
    o_txn *txns;
    int ntxns, cap_txns;
    o_member *members;
    int nmembers, cap_members;
    int *open_holds; /* hold transactions still open, in creation order */
    int nopen, cap_open;
} oracle;

void o_init(oracle *o, int64_t now, int64_t pending_days, int64_t expiry_days, int64_t debt_floor);
void o_free(oracle *o);
int o_member_add(oracle *o, const char *id);
void o_view_get(const oracle *o, int m, o_view *v);
bool o_lot_pending(const oracle *o, const o_lot *l);
bool o_lot_due(const oracle *o, const o_lot *l);
bool o_lot_spendable(const oracle *o, const o_lot *l);
const char *o_type_name(o_type t);

/* Each write returns the error the engine must give.  On success *t is the
 * new oracle transaction (its id still empty: the caller fills it in). */
jf_err o_earn(oracle *o, int m, int64_t points, int64_t pending_days, int64_t expires_at, int *t);
jf_err o_redeem(oracle *o, int m, int64_t points, int *t);
jf_err o_adjust(oracle *o, int m, int64_t signed_points, int *t);
jf_err o_transfer(oracle *o, int from, int to, int64_t points, int *t);
jf_err o_hold(oracle *o, int m, int64_t points, int64_t ttl_ms, int *t);
jf_err o_capture(oracle *o, int hold, bool has_points, int64_t points, int *t);
jf_err o_void(oracle *o, int hold, int *t);
jf_err o_reverse(oracle *o, int orig, bool has_points, int64_t points, int *t);
void o_expiry_run(oracle *o, o_expiry *out);
/* Voids every hold past its deadline; returns how many. */
int o_sweep(oracle *o);
/* Moves the clock (never backwards) and sweeps, as CLOCK_SET does. */
int o_clock_set(oracle *o, int64_t now);
const char *o_invariants(const oracle *o, int *bad_member);

/* ---- the model: engine, oracle and the run ---- */

#define MT_LOG_RING 48
#define MT_REPLAY_RING 128

typedef struct mt_replay {
    jf_op op;
    char *path_id;
    char *body;
    char *key;
    char *reply;
    int members[2];
} mt_replay;

typedef struct model {
    jf_engine *eng;
    jf_auth auth;
    char dir[256];
    char db_path[300];
    uint64_t seed;
    long ops;
    long op_index;
    mt_rng rng;
    oracle o;
    int *active; /* member slots picked for operations */
    int nactive;
    long key_counter;
    long order_counter;
    char **orders; /* order ids already earned */
    int norders, cap_orders;
    int *recent; /* oracle transactions with engine ids, newest last */
    int nrecent, cap_recent;
    int *holds; /* hold transactions with engine ids, oldest first */
    int nholds, cap_holds;
    mt_replay replays[MT_REPLAY_RING];
    int nreplays;
    char desc[2048];
    char log[MT_LOG_RING][512];
    long log_count;
    bool trace;
    long checks;
    long lot_checks;
    long replays_done;
    long errors_expected;
} model;

/* Prints the seed, the operation and the message, the recent operations, and
 * exits 1. */
_Noreturn void mt_fail(model *md, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the failure header (seed, operation) once, before details that
 * precede the message of mt_fail. */
void mt_fail_header(model *md);

/* Sets the description of the operation being run (and logs it). */
void mt_desc(model *md, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- client.c: engine calls and replies ---- */

jf_err mt_call(model *md, jf_op op, const char *path_id, const char *body, const char *key,
               const jf_param *params, size_t nparams, jf_result *res);
/* A write that changes points: with a fresh key, remembered for replays when it
 * succeeds.  m0 and m1 are the oracle members it touches (or -1). */
jf_err mt_write(model *md, jf_op op, const char *path_id, const char *body, int m0, int m1,
                jf_result *res);
void mt_new_key(model *md, char *buf, size_t len);
json_t *mt_json(model *md, const jf_result *res);
/* Reads an integer at a dotted path ("points.available"); fails the run when
 * it is missing or not an integer. */
int64_t mt_int(model *md, json_t *root, const char *path);
/* Reads a string at a dotted path; NULL for JSON null; fails when missing. */
const char *mt_str(model *md, json_t *root, const char *path);
void mt_expect_err(model *md, jf_err want, jf_err got, const jf_result *res);
/* Checks a points-result reply against the oracle: transaction type and
 * points, and the member's points.  Records the transaction's engine id. */
void mt_expect_points_result(model *md, json_t *root, int t, const char *type, int64_t points,
                             int m);
void mt_expect_points_obj(model *md, json_t *root, const char *field, int m);
void mt_replay_remember(model *md, jf_op op, const char *path_id, const char *body, const char *key,
                        const jf_result *res, int m0, int m1);

/* ---- check.c: state comparisons ---- */

void mt_check_points(model *md, int m);
void mt_check_lots(model *md, int m);
/* Full check (points and lots) of every member touched since its last check
 * and the points of the other active members; with everyone, of all. */
void mt_check_all(model *md, bool everyone);
void mt_check_clock(model *md);

/* ---- ops.c: random operations ---- */

void mt_op_random(model *md);
int mt_member_create(model *md);
void mt_clock_set(model *md, int64_t now);
void mt_replay_random(model *md);

/* ---- postings.c: stored transactions ---- */

/* GET /transactions/{id} of a recent transaction: type, points,
 * reversed_points and the postings the spec prescribes. */
void mt_op_txn_get(model *md);
/* The member's whole history against the oracle's transactions of it. */
void mt_check_history(model *md, int m);

#endif
