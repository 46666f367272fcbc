/*
 * Tiers and growth value (docs/TIERS.md).
 *
 * A tenant's tier configuration is an immutable version (tier_configs); the
 * member row holds its tier, when it was reached, when it is next evaluated
 * and whether it was set by hand.  Growth is the member's `growth` account:
 * earns credit it, reversals of earns take it back, nothing else moves it.
 *
 * Upgrades happen inside the write that adds growth (jf_tier_after_growth);
 * downgrades only at evaluation (the sliced job in tiers_ops.c).  Every
 * change is a tier_changes row and, unless it keeps the tier, an event.
 */
#ifndef JF_TIERS_H
#define JF_TIERS_H

#include "core.h"
#include "tz.h"

typedef struct jf_tier {
    char code[JF_TIER_CODE_LEN_MAX + 1];
    int64_t threshold, retain;
    int64_t spend_threshold, orders_threshold; /* -1: none */
    int64_t mult_num, mult_den, bday_num, bday_den;
    json_t *json; /* the tier object, borrowed from the configuration body */
} jf_tier;

typedef enum jf_tier_window {
    JF_WINDOW_LIFETIME,
    JF_WINDOW_YEAR,
    JF_WINDOW_ROLLING
} jf_tier_window;

/* What a command read of tiers (tiers.c); jf_ctx holds it. */
typedef struct jf_tier_memo jf_tier_memo;

typedef struct jf_tier_config {
    int64_t version, created_at;
    json_t *body; /* owned: the normalized configuration */
    jf_tier_window window;
    int64_t months;    /* the window (rolling), else 12: the anniversary step */
    bool period_end;   /* evaluations on local 1 January, else anniversaries */
    bool to_qualified; /* downgrades go straight to what the window supports */
    bool uses_spend;   /* some tier has a spend or orders threshold */
    int n;
    jf_tier tiers[JF_TIERS_MAX];
    const jf_tz *tz;
} jf_tier_config;

/* Loads the tenant's current configuration; *found is false without one
 * (and cfg then needs no free). */
jf_err jf_tier_config_load(jf_ctx *ctx, jf_tier_config *cfg, bool *found);
void jf_tier_config_free(jf_tier_config *cfg);
/* Forgets the configuration the command read (jf_tier_config_load keeps
 * it for the rest of the command): every command at its end. */
void jf_tier_memo_clear(jf_ctx *ctx);
/* The command wrote a configuration: forgets the one its memo and the
 * writer's cache (wcache.c) hold, and the writer keeps none before the
 * batch ends. */
void jf_tier_config_changed(jf_ctx *ctx);
/* Index of code in cfg, -1 when absent (or code NULL). */
int jf_tier_index(const jf_tier_config *cfg, const char *code);

/* A member's tier as stored (jf_member_tier, core.h): from the member's row
 * as jf_member_load reads it, so the writer's member cache serves it. */
jf_err jf_member_tier_load(jf_ctx *ctx, const char *member_id, jf_member_tier *out);
/* The member's tier index: the stored tier, else the lowest tier when its
 * threshold is 0, else -1 (no tier). */
int jf_tier_effective(const jf_tier_config *cfg, const jf_member_tier *mt);

/* What a window holds for a member: growth, net order amount, orders. */
typedef struct jf_tier_metrics {
    int64_t from, to; /* the window [from, to); from INT64_MIN for lifetime */
    int64_t growth, spend, orders, lifetime;
} jf_tier_metrics;
/* The window that ends at `end`.  at_eval: `end` is an evaluation date, so
 * a calendar-year window is the year that ends there (else the current one).
 * Spend and orders are counted when a tier has such a threshold, or when
 * all is set.  Growth in the window is never below 0. */
jf_err jf_tier_metrics_at(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id,
                          int64_t end, bool at_eval, bool all, jf_tier_metrics *out);
/* The highest tier index the metrics qualify for, -1 for none. */
int jf_tier_qualified(const jf_tier_config *cfg, const jf_tier_metrics *m);
/* Whether m keeps tier i at an evaluation (its retain, or another threshold). */
bool jf_tier_retains(const jf_tier_config *cfg, int i, const jf_tier_metrics *m);
/* The next evaluation after `from` for a member in tier i (-1: never, the
 * lowest tier). */
int64_t jf_tier_next_eval(const jf_tier_config *cfg, int i, int64_t from);

/* Moves the member to tier to (index, -1 for none) and records the change
 * (kind: upgrade, downgrade, retain, manual, override_end, import) with
 * an event unless it is a retain.  since/eval_at/until are stored as given
 * (-1: NULL). */
typedef struct jf_tier_move {
    const char *kind, *reason, *tx_id;
    int from, to;
    int64_t growth, since, eval_at, until;
    bool manual;
} jf_tier_move;
jf_err jf_tier_record(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id,
                      const jf_tier_move *mv);

/* After a write that added growth (or earned from an order) for member_id
 * in transaction tx, committed (jf_tx_commit): when the window now
 * qualifies for a higher tier the member moves up in this same
 * transaction.  The member's lifetime growth is the balance tx stored for
 * its growth posting, read from the database only when tx has none.  A
 * no-op without tiers. */
struct jf_tx;
jf_err jf_tier_after_growth(jf_ctx *ctx, const char *member_id, const struct jf_tx *tx);

/* Rule facts: the member's tier code ("" for none) and, for purchases, the
 * multipliers of its benefits. */
typedef struct jf_tier_bonus {
    char code[JF_TIER_CODE_LEN_MAX + 1];
    int64_t version;
    int64_t mult_num, mult_den, bday_num, bday_den; /* 1/1: none */
} jf_tier_bonus;
jf_err jf_tier_bonus_load(jf_ctx *ctx, const char *member_id, jf_tier_bonus *out);

/* Posts growth g (> 0 credits, < 0 takes back) to the member's growth
 * account against program:growth_issuance. */
void jf_tx_post_growth(struct jf_tx *tx, const char *member_id, int64_t g);

/* A tier change row as JSON (history). */
json_t *jf_tier_change_json(sqlite3_stmt *st);

extern const jf_op_impl jf_op_tier_config_get, jf_op_tier_config_put, jf_op_tier_evaluate,
    jf_op_tier_import, jf_op_member_tier_get, jf_op_member_tier_set, jf_op_event_list;

#endif
