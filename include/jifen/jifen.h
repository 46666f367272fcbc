/*
 * libjifen: the public interface of the jifen points engine.
 *
 * One engine owns one database.  Everything a client does is a request: an
 * operation (JF_OP_*), the caller's identity (tenant, role, actor), the id
 * taken from the path, query parameters and a JSON body.  The engine answers
 * with a result: an error from the one error table, and on success a JSON body
 * that is the resource representation documented in docs/openapi.yaml.  The
 * engine never speaks HTTP; src/server maps requests and results to HTTP and
 * src/cli uses the same calls.
 *
 * Reads run on the calling thread against their own SQLite connection (a WAL
 * snapshot) and never wait for the writer.  Writes are validated on the
 * calling thread, then queued to the single writer thread, which applies a
 * whole batch of queued writes in one SQLite transaction and commits once
 * before answering every request in it (group commit).
 *
 * Thread safety: every function here may be called from any thread, except
 * jf_engine_free, which must not race with anything else on the engine.
 */
#ifndef JIFEN_JIFEN_H
#define JIFEN_JIFEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jifen/errors.h"
#include "jifen/limits.h"

typedef struct jf_engine jf_engine;

/* Roles of API keys (DESIGN.md, Security). */
typedef enum jf_role {
    JF_ROLE_NONE = 0, /* not authenticated */
    JF_ROLE_READONLY = 1,
    JF_ROLE_POS = 2,
    JF_ROLE_OPERATOR = 3,
    JF_ROLE_ADMIN = 4,
} jf_role;

/* "admin", "operator", "pos", "readonly"; "none" for JF_ROLE_NONE. */
const char *jf_role_name(jf_role role);

/* Parses a role name; returns JF_ROLE_NONE for anything else. */
jf_role jf_role_parse(const char *name);

/* Role sets of operations: which roles may run each. */
#define JF_ROLES_ALL 0x1e   /* readonly, pos, operator, admin */
#define JF_ROLES_STAFF 0x1c /* pos, operator, admin */
#define JF_ROLES_OPS 0x18   /* operator, admin */
#define JF_ROLES_ADMIN 0x10 /* admin */
#define JF_ROLE_BIT(role) (1u << (unsigned)(role))

/*
 * Operations.  X(ENUM, "name", is_write, roles)
 * The name is used in logs, metrics and the hash of idempotent requests; the
 * engine refuses a caller whose role is not in roles (JF_ERR_FORBIDDEN).
 */
#define JF_OP_MAP(X)                                                                               \
    X(MEMBER_CREATE, "member.create", 1, JF_ROLES_STAFF)                                           \
    X(MEMBER_GET, "member.get", 0, JF_ROLES_ALL)                                                   \
    X(MEMBER_GET_EXTERNAL, "member.get_external", 0, JF_ROLES_ALL)                                 \
    X(MEMBER_UPDATE, "member.update", 1, JF_ROLES_OPS)                                             \
    X(MEMBER_LIST, "member.list", 0, JF_ROLES_ALL)                                                 \
    X(MEMBER_POINTS, "member.points", 0, JF_ROLES_ALL)                                             \
    X(MEMBER_TRANSACTIONS, "member.transactions", 0, JF_ROLES_ALL)                                 \
    X(MEMBER_LOTS, "member.lots", 0, JF_ROLES_ALL)                                                 \
    X(MEMBER_HOLDS, "member.holds", 0, JF_ROLES_ALL)                                               \
    X(EARN, "points.earn", 1, JF_ROLES_STAFF)                                                      \
    X(REDEEM, "points.redeem", 1, JF_ROLES_STAFF)                                                  \
    X(ADJUST, "points.adjust", 1, JF_ROLES_OPS)                                                    \
    X(TRANSFER, "points.transfer", 1, JF_ROLES_STAFF)                                              \
    X(HOLD, "points.hold", 1, JF_ROLES_STAFF)                                                      \
    X(HOLD_GET, "hold.get", 0, JF_ROLES_ALL)                                                       \
    X(HOLD_CAPTURE, "hold.capture", 1, JF_ROLES_STAFF)                                             \
    X(HOLD_VOID, "hold.void", 1, JF_ROLES_STAFF)                                                   \
    X(REVERSE, "transaction.reverse", 1, JF_ROLES_OPS)                                             \
    X(TRANSACTION_GET, "transaction.get", 0, JF_ROLES_ALL)                                         \
    X(TRANSACTION_LIST, "transaction.list", 0, JF_ROLES_ALL)                                       \
    X(PROGRAM_GET, "program.get", 0, JF_ROLES_ALL)                                                 \
    X(PROGRAM_UPDATE, "program.update", 1, JF_ROLES_ADMIN)                                         \
    X(EXPIRY_RUN, "expiry.run", 1, JF_ROLES_ADMIN)                                                 \
    X(EXPIRY_FORECAST, "expiry.forecast", 0, JF_ROLES_ALL)                                         \
    X(HOLDS_SWEEP, "holds.sweep", 1, JF_ROLES_ADMIN)                                               \
    X(KEY_CREATE, "api_key.create", 1, JF_ROLES_ADMIN)                                             \
    X(KEY_LIST, "api_key.list", 0, JF_ROLES_ADMIN)                                                 \
    X(KEY_REVOKE, "api_key.revoke", 1, JF_ROLES_ADMIN)                                             \
    X(CLOCK_SET, "test.clock_set", 1, JF_ROLES_ADMIN)                                              \
    X(CLOCK_GET, "test.clock_get", 0, JF_ROLES_ADMIN)                                              \
    X(BATCH, "points.batch", 1, JF_ROLES_STAFF)                                                    \
    X(MEMBER_EVENT, "member.event", 1, JF_ROLES_STAFF)                                             \
    X(RULE_CREATE, "rule.create", 1, JF_ROLES_ADMIN)                                               \
    X(RULE_LIST, "rule.list", 0, JF_ROLES_ALL)                                                     \
    X(RULE_GET, "rule.get", 0, JF_ROLES_ALL)                                                       \
    X(RULE_UPDATE, "rule.update", 1, JF_ROLES_ADMIN)                                               \
    X(RULE_ARCHIVE, "rule.archive", 1, JF_ROLES_ADMIN)                                             \
    X(ORDER_REFUND, "order.refund", 1, JF_ROLES_STAFF)                                             \
    X(ORDER_GET, "order.get", 0, JF_ROLES_ALL)                                                     \
    X(CHECK_IN, "member.check_in", 1, JF_ROLES_STAFF)                                              \
    X(CHECK_IN_CALENDAR, "member.check_in_calendar", 0, JF_ROLES_ALL)                              \
    X(BONUS_SWEEP, "bonus.sweep", 1, JF_ROLES_ADMIN)                                               \
    X(CAMPAIGN_CREATE, "campaign.create", 1, JF_ROLES_ADMIN)                                       \
    X(CAMPAIGN_LIST, "campaign.list", 0, JF_ROLES_ALL)                                             \
    X(CAMPAIGN_GET, "campaign.get", 0, JF_ROLES_ALL)                                               \
    X(CAMPAIGN_UPDATE, "campaign.update", 1, JF_ROLES_ADMIN)                                       \
    X(TIER_CONFIG_GET, "tier.config_get", 0, JF_ROLES_ALL)                                         \
    X(TIER_CONFIG_PUT, "tier.config_put", 1, JF_ROLES_ADMIN)                                       \
    X(TIER_EVALUATE, "tier.evaluate", 1, JF_ROLES_ADMIN)                                           \
    X(TIER_IMPORT, "tier.import", 1, JF_ROLES_ADMIN)                                               \
    X(MEMBER_TIER_GET, "member.tier_get", 0, JF_ROLES_ALL)                                         \
    X(MEMBER_TIER_SET, "member.tier_set", 1, JF_ROLES_OPS)                                         \
    X(EVENT_LIST, "event.list", 0, JF_ROLES_ALL)

typedef enum jf_op {
#define JF__OP_ENUM(name, str, is_write, roles) JF_OP_##name,
    JF_OP_MAP(JF__OP_ENUM)
#undef JF__OP_ENUM
        JF_OP__COUNT
} jf_op;

/* The operation's name, e.g. "points.earn".  Never NULL. */
const char *jf_op_name(jf_op op);

/* True when the operation changes state and goes through the writer. */
bool jf_op_is_write(jf_op op);

/* True when role may run op. */
bool jf_op_allows(jf_op op, jf_role role);

/* True when the operation changes points and so requires an idempotency key
 * (API.md): earn, redeem, adjust, transfer, hold, capture, void, reverse,
 * member events, order refunds and check-ins.  A dry run (earn and events with "dry_run": true)
 * writes nothing and needs no key; jf_call checks that after parsing the body. */
bool jf_op_requires_idempotency(jf_op op);

/* One query parameter, already percent-decoded. */
typedef struct jf_param {
    const char *name;
    const char *value;
} jf_param;

/* Who is calling: resolved from an API key by jf_auth_bearer, or built by the
 * CLI for an operator at the console. */
typedef struct jf_auth {
    int64_t tenant; /* internal tenant number; 0 when not authenticated */
    jf_role role;
    char actor[JF_ID_LEN_MAX + 16]; /* the key id ("key_...") or "cli" */
} jf_auth;

typedef struct jf_request {
    jf_op op;
    const jf_auth *auth;
    const char *path_id;    /* the {id} in the path, or NULL */
    const jf_param *params; /* query parameters, or NULL */
    size_t param_count;
    const char *body; /* JSON text, or NULL for no body */
    size_t body_len;
    const char *idempotency_key; /* or NULL */
} jf_request;

typedef struct jf_result {
    jf_err err;
    bool created;  /* success created a resource (HTTP 201) */
    bool replayed; /* the stored response of an earlier request with the same key */
    char *body;    /* JSON on success, NULL on error; freed by jf_result_deinit */
    size_t body_len;
    char detail[256]; /* on error: a sentence for the problem+json detail */
} jf_result;

/* Frees the body and resets the result.  Safe on a zeroed result. */
void jf_result_deinit(jf_result *res);

/* Called once per request when it has an answer.  For writes this runs on the
 * writer thread after the batch committed (or failed); it must not block and
 * must not call back into the engine.  The result is only valid during the
 * call: take the body (set res->body to NULL) to keep it. */
typedef void (*jf_done_fn)(void *ctx, jf_result *res);

/* Engine options. */
typedef struct jf_engine_options {
    const char *db_path;   /* SQLite file; created when missing */
    bool test_clock;       /* enable CLOCK_SET/CLOCK_GET; time starts at the real time */
    int expiry_interval_s; /* scheduled expiry and hold sweep; 0 = never (default 60) */
    bool no_writer;        /* open for reads and verify only (jifen verify) */
    /* Restart the WAL from its head past this many frames (page-sized; 0 =
     * JF_WAL_RESTART_FRAMES).  Lower saves disk and page cache, costs
     * throughput; at least JF_WAL_RESTART_FRAMES_MIN. */
    int wal_restart_frames;
    /* Checkpoint every this many milliseconds (0 = JF_CHECKPOINT_INTERVAL_MS;
     * JF_CHECKPOINT_INTERVAL_MS_MIN to _MAX).  Longer copies fewer pages;
     * the latency tail grows (limits.h). */
    int checkpoint_interval_ms;
} jf_engine_options;

/* Opens (creating and migrating when needed) the database and starts the
 * writer thread.  On failure returns an error, sets *out to NULL and writes a
 * sentence to errbuf (when not NULL).  The engine owns all its memory. */
jf_err jf_engine_open(const jf_engine_options *opts, jf_engine **out, char *errbuf,
                      size_t errbuf_len);

/* Finishes every queued write, stops the writer and closes the database.
 * NULL is a no-op. */
void jf_engine_free(jf_engine *eng);

/* Stops accepting new writes (they fail with JF_ERR_SHUTTING_DOWN) and waits
 * until every queued write has been answered. */
void jf_engine_drain(jf_engine *eng);

/*
 * Runs a request.  Requests refused during validation call done on the
 * calling thread before returning.  A read calls done before returning when
 * everything it saw is already on disk, and otherwise later from the
 * engine's syncer thread, after the flush (it never waits for one on the
 * calling thread).  Writes call done later from the engine's threads, after
 * their commit is on disk.  done is called exactly once in every case.  The
 * request and the strings it points to need only live until jf_call returns.
 */
void jf_call(jf_engine *eng, const jf_request *req, jf_done_fn done, void *ctx);

/* jf_call and wait: fills *res (the caller deinits it) and returns res->err. */
jf_err jf_call_sync(jf_engine *eng, const jf_request *req, jf_result *res);

/* Resolves "Bearer <key>" or a bare key to the caller.  Returns
 * JF_ERR_UNAUTHORIZED for a missing, malformed, unknown or revoked key.
 * Compares key hashes in constant time.  Never writes. */
jf_err jf_auth_bearer(jf_engine *eng, const char *authorization, jf_auth *out);

/* Creates a tenant with a default program and an admin key.  Writes the
 * public tenant id ("ten_...") and the new key (shown this once) into the
 * caller's buffers.  JF_ERR_INVALID_FIELD, and no tenant, when the name is
 * empty or longer than JF_NAME_LEN_MAX bytes. */
jf_err jf_tenant_create(jf_engine *eng, const char *name, char *tenant_id, size_t tenant_id_len,
                        char *api_key, size_t api_key_len);

/* Looks up a tenant by its public id or name; fills auth as an admin "cli"
 * caller of that tenant.  JF_ERR_NOT_FOUND when there is none. */
jf_err jf_tenant_auth(jf_engine *eng, const char *id_or_name, jf_auth *out);

/* Lists tenants as a JSON array; *json is malloc'd, the caller frees it. */
jf_err jf_tenant_list(jf_engine *eng, char **json);

/* Runs the hold sweep, expiry, the birthday bonus job and the tier
 * evaluations due for every tenant now (the CLI's `expire`).  Writes a JSON
 * array into *json (malloc'd), one element per tenant: {"tenant_id",
 * "holds": {"voided_holds"}, "expiry": {"expired_points", "lots",
 * "members"}, "bonuses": {"birthday_members"}, "tiers": {"evaluated", ...}}. */
jf_err jf_maintenance_run(jf_engine *eng, char **json);

/* Checks the database file (F1, SQLite's quick_check) and, when it is sound,
 * the invariants of docs/LEDGER.md on the whole database: I1..I7, I10, S1, S2,
 * A1..A3, R1..R3 and G1 (docs/RULES.md), T1 and T2 (docs/TIERS.md).  Writes
 * a JSON report into *json (malloc'd): {"ok": bool, "violation_count": N,
 * "tenants": [{"id", "transactions", "chain_head"}],
 * "violations": [{"invariant": "I2", "detail": "..."}]} (at most
 * JF_VERIFY_REPORT_MAX violations are listed).  Returns JF_OK when the check
 * ran, whatever it found; *violations tells how many violations there were. */
jf_err jf_verify(jf_engine *eng, char **json, int64_t *violations);

/*
 * json_dumps(v, flags), or NULL when one of jansson's allocations failed
 * inside it.  The engine routes jansson's allocations through a hook of its
 * own (installed by jf_engine_open) that notes a failure per thread,
 * because json_dumps (Debian's jansson 2.14) can then still return text,
 * with an object's key left out, which is not JSON.  For the server's
 * problem documents and access log and the CLI's output; the caller frees
 * the text.
 */
struct json_t;
char *jf_json_dumps_whole(const struct json_t *v, size_t flags);

/*
 * The tree json_loads(text, flags, NULL) builds (flags 0 or JSON_DECODE_ANY),
 * or NULL when an allocation failed on the way, as well as for NULL text,
 * text that is not JSON and containers nested deeper than
 * JF_JSON_DECODE_DEPTH_MAX.  Parsed by the engine's own reader
 * (core/jsonr.c), not jansson's.  For the engine's stored text and the
 * CLI's reading of the engine's answers; the caller owns the tree.
 */
struct json_t *jf_json_loads_whole(const char *text, size_t flags);

/* A latency histogram, not cumulative: bucket i counts times in
 * (2^(i-1) * 50 us, 2^i * 50 us]; the last bucket also counts slower ones. */
#define JF_LATENCY_BUCKETS 14
typedef struct jf_latency_hist {
    uint64_t buckets[JF_LATENCY_BUCKETS];
    uint64_t count, sum_us;
} jf_latency_hist;

/* Counters for /metrics. */
typedef struct jf_engine_stats {
    uint64_t commits;
    uint64_t commands;
    uint64_t rejected;
    uint64_t queue_depth;
    /* Histogram of batch sizes, not cumulative: bucket i counts batches of
     * size in (2^(i-1), 2^i]; the last bucket also counts every larger one. */
    uint64_t batch_size_buckets[11];
    jf_latency_hist commit;     /* the writer's COMMIT of one batch */
    jf_latency_hist wal_flush;  /* one fdatasync of the WAL by the syncer */
    jf_latency_hist checkpoint; /* one checkpoint pass (copy and sync) */
    uint64_t wal_restarts;      /* whole-WAL copies past the threshold (a restart follows) */
    /* Of those, restarts past twice the threshold, made whatever the
     * checkpointer had left to copy (engine.c, writer_wal_restart). */
    uint64_t wal_restarts_forced;
    /* Commits that started the WAL again from its head, and of those, any
     * during which a checkpoint ran: SQLite's WAL-reset race, which the
     * engine rules out (engine.c), so always 0. */
    uint64_t wal_starts, wal_starts_during_checkpoint;
    /* The member rows the writer read into its cache at start, and how long
     * that took (0 until it is done). */
    int64_t warm_members;
    double warm_seconds;
    /* The writer's own copy before a restart, every attempt (one that finds
     * the checkpointer mid-pass returns at once and restarts nothing). */
    jf_latency_hist wal_restart;
    /* Paced write-backs of checkpoint copies to the disk in this process
     * (one per JF_CHECKPOINT_PACE_BYTES copied). */
    uint64_t checkpoint_writebacks;
    /* WAL frames this process read through its map of the WAL rather than
     * a system call (the writer, the readers, the checkpointer). */
    uint64_t wal_map_reads;
    /* Batches rolled back and run again because a command without a
     * savepoint failed after writing (a rare refusal; see engine.c). */
    uint64_t batches_redone;
    /* Times work rolled back (a dry run that changed rows, a command undone
     * after writing, a batch run again or whose commit failed) made the
     * writer forget the rule and tier bodies it had parsed, its live rules
     * and hold bounds; a command refused before its first write does not. */
    uint64_t cache_forgets;
    /* Write commands applied while the writer held its commit for the
     * syncer's flush of the one before (engine.c, writer_take_held). */
    uint64_t commands_held;
    /* Slices of sliced jobs (expiry, POST /v1/batch) run in such a held
     * commit while nothing else was queued (engine.c, writer_take_held). */
    uint64_t job_slices_held;
    /* Reads answered by the syncer after a flush, not at once: they could
     * see a commit not yet on disk (syncer.c, jf_syncer_answer_read). */
    uint64_t reads_held;
    /* Times the checkpointer handed freed heap memory back to the system
     * after the writer had been idle (engine.c, ckpt_idle_trim), and how
     * long each took (malloc_trim holds an arena's lock while it runs). */
    uint64_t memory_trims;
    jf_latency_hist memory_trim;
    /* The writer's filter of stored idempotency keys (src/core/idemfilter.c):
     * whether it answers now, the keys in it and its size, the keys it found
     * absent without a lookup, the filters built and forgotten (another
     * process wrote, or it filled up), and the last build's time. */
    bool idem_filter_ready;
    uint64_t idem_filter_keys, idem_filter_bytes, idem_lookups_skipped;
    uint64_t idem_filter_builds, idem_filter_forgets;
    double idem_filter_build_seconds;
} jf_engine_stats;

void jf_engine_stats_get(jf_engine *eng, jf_engine_stats *out);

/* The engine's current time in milliseconds since the Unix epoch (the test
 * clock when enabled). */
int64_t jf_engine_now_ms(jf_engine *eng);

/* Library version string, e.g. "0.1.0". */
const char *jf_version(void);

#endif
