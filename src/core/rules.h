/*
 * Earning rules: validation of the rule JSON and the evaluator that turns
 * an order or a custom event into awards (docs/RULES.md is the guide).
 *
 * A rule is data: a JSON object validated once when it is stored and kept
 * as an immutable version.  The evaluator is a pure function of the rules
 * (already in evaluation order: priority descending, then id), the facts of
 * the order or event (member tags and birthday, the clock and the program's
 * time zone) and what each rule has already awarded (for limits and
 * budgets).  It never touches the database: the caller (rules_db.c, on the
 * writer) loads usage first, so a cap checked here cannot be raced.
 *
 * Evaluation, in order:
 *   1. Each rule whose status window and conditions hold "fires".  Its
 *      effect is computed (rate, fixed, sku_bonus; multipliers wait for
 *      step 3) and clipped by its own limits.  An exclusive rule that fires
 *      stops evaluation of every later rule.
 *   2. Within a best-of group only the award with most points counts (the
 *      first in evaluation order on a tie); the others keep 0 points.
 *   3. Multipliers get factor - 1 times the points of the counted rate
 *      awards, clipped by their own limits; groups of multipliers resolve.
 *   4. The program's max_points_per_order trims awards in evaluation order.
 * Every fired rule whose effect gives points yields an award, possibly cut
 * to 0 by a limit, whose explanation says why it got what it got.  A rule
 * whose effect gives nothing (no eligible amount, no bonus SKU in the order,
 * a multiplier without a base award) yields no award and, if exclusive,
 * stops nothing unless it is a multiplier.
 */
#ifndef JF_RULES_H
#define JF_RULES_H

#include "core.h"
#include "tz.h"

/* Validates a rule body for POST /v1/rules and PUT /v1/rules/{id}.  The
 * detail names the offending field ("conditions.hours.from must be HH:MM").
 * Errors: JF_ERR_MISSING_FIELD, JF_ERR_UNKNOWN_FIELD, JF_ERR_INVALID_FIELD.
 * Never writes, never reads the clock. */
jf_err jf_rule_validate(jf_ctx *ctx, json_t *rule);

/* Validates order.lines and the other rule-facing order fields ("lines",
 * "channel", "store_id", "paid_with_points").  Same errors as above. */
jf_err jf_rule_order_validate(jf_ctx *ctx, json_t *order);

/* What a rule has already awarded: to this member in the current period of
 * its per_member limit, and in total (its budget).  Counts are of awards
 * with points > 0. */
typedef struct jf_rule_usage {
    int64_t member_points, member_awards, budget_points, budget_awards;
} jf_rule_usage;

/* A rule's include or exclude (conditions): the lists it names. */
typedef struct jf_rule_selector {
    bool given;
    json_t *skus, *categories, *labels;
} jf_rule_selector;

/*
 * What evaluation reads of a validated rule body, looked up by name once
 * (jf_rule_plan_init) instead of at every evaluation: the writer keeps a
 * rule version's plan with its parsed body (rules_db.c), and looking the
 * fields up again cost an order earn of three rules about 12,000
 * instructions, most of them jansson hashing the same names.  Objects and
 * values are borrowed from the body (NULL when absent) and live as long as
 * a reference to it; the window and the hours are parsed.
 */
typedef struct jf_rule_plan {
    json_t *conditions, *effect;
    int64_t starts_at, ends_at; /* INT64_MIN, INT64_MAX when not given */
    bool exclusive;
    /* conditions */
    json_t *tags_any, *tiers_any, *days_of_week, *amount_min, *amount_max, *min_quantity;
    json_t *channels, *stores, *purchase_number, *nth;
    bool has_hours, has_dates;
    int hours_from, hours_to;                     /* minutes of the day */
    const char *dates_from, *dates_to, *birthday; /* NULL when not given */
    jf_rule_selector include, exclude;
    /* effect */
    const char *type;
    bool multiplier, exclude_points_paid;
    json_t *points, *per_amount, *bonuses, *factor_num, *factor_den;
    const char *rounding;
    /* limits */
    json_t *max_points_per_order, *per_member, *budget;
    const char *period; /* per_member's */
    /* the award */
    json_t *pending_days, *expires_in_days;
    const char *group, *name;
    json_t *growth, *growth_fixed, *growth_num, *growth_den;
    bool fixed_growth; /* a growth.fixed above 0: awarded even without points */
} jf_rule_plan;

/* Fills *out from a validated rule body.  Pure. */
void jf_rule_plan_init(json_t *rule, jf_rule_plan *out);

typedef struct jf_rule_ref {
    const char *id;
    int64_t version;
    json_t *rule;      /* a validated rule body (borrowed) */
    jf_rule_plan plan; /* of rule (jf_rule_plan_init) */
    jf_rule_usage used;
    /* The rule's campaign: its budget {"max_points", "max_awards"} and what
     * all the campaign's rules awarded (budget_* fields), shared by the refs
     * of one campaign and advanced as evaluation awards; NULL without one. */
    json_t *campaign_budget;
    jf_rule_usage *campaign_used;
} jf_rule_ref;

/* One line of a validated order with the fields the rules read, looked up
 * once for every rule that weighs it (jf_order_lines_view): a receipt's
 * lines were looked up again by each rule, about 870 instructions a line
 * and a rule.  The strings and labels are borrowed from the order. */
typedef struct jf_order_line {
    const char *sku, *category; /* NULL when the line has none */
    json_t *labels;             /* array of strings, or NULL */
    int64_t amount, quantity;
    bool never; /* a gift card or shipping: no rule counts it */
} jf_order_line;

/* Fills out[0..n) with the view of order's lines (room for
 * JF_ORDER_LINES_MAX) and returns n: 0 for an order without lines, or no
 * order.  Pure. */
size_t jf_order_lines_view(json_t *order, jf_order_line *out);
/* The view of the command's order's lines (ctx->args->order), made on the
 * first call and kept until the command ends (ctx_finish frees it): the
 * evaluation and the lines' attribution of an order earn both read it.
 * *lines is NULL when *n is 0 (no order, or no lines).  JF_ERR_NOMEM when
 * memory ran out. */
jf_err jf_ctx_order_lines(jf_ctx *ctx, const jf_order_line **lines, size_t *n);

/* The facts rules are evaluated against.  order is NULL for an event. */
typedef struct jf_rule_facts {
    const jf_tz *tz;
    int64_t now_ms;
    json_t *order;            /* validated order, or NULL */
    const char *event;        /* the event name, or NULL for a purchase */
    const char *channel;      /* order.channel, else the body's channel, or NULL */
    const char *store_id;     /* order.store_id, else the body's store_id, or NULL */
    json_t *tags;             /* the member's tags (array of strings) or NULL */
    const char *birthday;     /* "YYYY-MM-DD" or NULL */
    int64_t purchases_before; /* the member's earlier purchase earns */
    int64_t order_cap;        /* the program's max_points_per_order, -1 = none */
    int64_t streak;           /* check-ins: consecutive local days including today */
    const char *referral_on;  /* referrals: "signup" or "first_purchase", else NULL */
    bool referrer;            /* referrals: the award is the referrer's (else the referee's) */
    const char *tier;         /* the member's tier code, or NULL for none */
    /* Purchases: the tier's multipliers (docs/TIERS.md), or NULL. */
    const struct jf_tier_bonus *tier_bonus;
    /* The view of order's lines: the caller's when lines is not NULL
     * (jf_ctx_order_lines), else made by jf_rules_evaluate.  Whether the
     * order has a list of lines (an empty one counts), its amount and its
     * paid_with_points: set by jf_rules_evaluate, whatever the caller gave. */
    const jf_order_line *lines;
    size_t line_count;
    bool has_lines;
    int64_t order_amount, paid_with_points;
} jf_rule_facts;

typedef struct jf_award {
    char rule_id[JF_ID_LEN_MAX];
    int64_t rule_version;
    int64_t points;
    int64_t raw_points;      /* what the effect gave before limits and groups */
    int64_t growth;          /* growth value the award gives (docs/TIERS.md) */
    int64_t pending_days;    /* -1: the request's or the program's */
    int64_t expires_in_days; /* -1: the request's or the program's */
    bool is_rate, is_multiplier;
    bool per_member;   /* the rule version has a per-member limit (award_caps) */
    const char *group; /* borrowed from the rule during evaluation; NULL after */
    char explanation[JF_EXPLANATION_LEN_MAX];
} jf_award;

/*
 * Evaluates rules[0..n) against facts; writes one award per fired rule into
 * awards (room for n) and their count into *count.  Returns
 * JF_ERR_POINTS_OVERFLOW (detail set) when an award or the total would leave
 * the points range; awards are then unusable.  Pure: no database, no clock
 * but facts->now_ms.
 */
jf_err jf_rules_evaluate(jf_ctx *ctx, const jf_rule_ref *rules, size_t n,
                         const jf_rule_facts *facts, jf_award *awards, size_t *count);

/* Room for JF_AWARDS_MAX awards, malloc'd (the caller frees it), NULL when
 * memory ran out.  Not zeroed: every award jf_rules_evaluate and
 * jf_rules_tier_awards count is set whole first, so zeroing the room (about
 * 27 KB, the whole of L1) on every order earn was wasted. */
jf_award *jf_awards_new(void);

/* Appends the tier's earn multiplier award ("tier:<code>") and, on the
 * member's birthday, its birthday multiplier award ("tier:<code>:birthday")
 * to aw[0..*k): each adds (factor - 1) times the points of the rate awards,
 * rounded down, and gives no growth.  aw has room for two more.  False on
 * overflow.  A no-op without f->tier_bonus. */
bool jf_rules_tier_awards(const jf_rule_facts *f, jf_award *aw, size_t *k);

/* Without purchase rules: the program's base award of points (growth the
 * same) and the tier's multiplier awards on it, cut by the order cap.
 * False on overflow. */
bool jf_rules_base_awards(const jf_rule_facts *f, int64_t points, jf_award *aw, size_t *count);

/* Start (ms UTC) of the per_member period ("day", "week" (Monday),
 * "month", "year" in tz) containing now_ms; INT64_MIN for "lifetime". */
int64_t jf_rule_period_start_ms(const jf_tz *tz, int64_t now_ms, const char *period);

/* The weight of each line of an order (lines[i], its view by
 * jf_order_lines_view, w[i]) in an award of the rule planned by p, used to
 * attribute the award's points to lines so that a refund of a line claws
 * back what that line earned (docs/RULES.md, Refunds): the eligible line
 * amounts for rate, fixed and multiplier effects, the bonus points of
 * sku_bonus effects, and every line amount when p is NULL (the program's
 * base rate or explicit points).  Lines a rule does not count weigh 0.  w
 * has room for n.  Pure. */
void jf_rule_line_weights(const jf_rule_plan *p, const jf_order_line *lines, size_t n, int64_t *w);

/* True when the member's birthday ("YYYY-MM-DD") is the local date of
 * now_ms in tz; 29 February counts as 28 February in common years, as the
 * "birthday" condition does.  False for NULL or a malformed date.  Pure. */
bool jf_rule_birthday_today(const jf_tz *tz, int64_t now_ms, const char *birthday);

/* --- rules_db.c: storage, the /v1/rules operations, earn integration --- */

/* Facts of the non-order triggers: the check-in streak, and for referral
 * rules when the reward is due and to whom. */
typedef struct jf_trigger_facts {
    int64_t streak;
    const char *referral_on;
    bool referrer;
} jf_trigger_facts;

/* Loads the live rules of a trigger ("purchase", "event" of that event
 * name, "check_in"; active, or active and draft when include_drafts) with
 * their usage for member_id, evaluates them and returns the awards.
 * tf gives the facts of check-in and referral triggers (NULL for others).  *rule_count tells
 * how many live rules there were (0: a purchase falls back to the base
 * rate).  Runs on the writer (or any connection: it only reads). */
jf_err jf_rules_awards(jf_ctx *ctx, const char *member_id, const char *trigger, const char *event,
                       const jf_trigger_facts *tf, jf_award *awards, size_t *count,
                       size_t *rule_count);

/* Writes each award of tx as a lot (when points > 0) and an award row.
 * Called between jf_tx_begin and jf_tx_finish. */
struct jf_tx;
/* A rule version's body, a new reference: the writer's parsed copy
 * (wcache.c), else its row's; NULL when there is no such version. */
json_t *jf_rule_body(jf_ctx *ctx, const char *id, int64_t version);
/* The same, with its plan in *plan: the one the writer keeps with the
 * body (wcache.c), else made now (and kept, on the writer).  *plan points
 * into the body: it is valid while the returned reference is held. */
json_t *jf_rule_body_plan(jf_ctx *ctx, const char *id, int64_t version, jf_rule_plan *plan);
jf_err jf_awards_write(jf_ctx *ctx, const struct jf_tx *tx, const char *member_id,
                       const jf_award *awards, size_t count);

/* Writes awards[0..count) (total points) as one earn to member_id with meta
 * (a JSON object, stolen) as its metadata.  With own_request the transaction
 * carries the request's descriptive fields and idempotency key; otherwise it
 * is a by-product of the request (a bonus, a referral reward) and carries
 * neither.  tx_id, when not NULL, gets the transaction's id. */
jf_err jf_awards_earn(jf_ctx *ctx, const char *member_id, const jf_award *awards, size_t count,
                      int64_t total, json_t *meta, bool own_request, char *tx_id);

/* The awards of a transaction as a JSON array [{"rule_id", "rule_version",
 * "points", "explanation"}]. */
jf_err jf_awards_json(jf_ctx *ctx, int64_t tx_seq, json_t **out);

/* Σ growth of awards (saturating at JF_POINTS_MAX). */
int64_t jf_awards_growth(const jf_award *awards, size_t count);

/* JSON array of computed (not stored) awards. */
json_t *jf_awards_array(const jf_award *awards, size_t count);

extern const jf_op_impl jf_op_rule_create, jf_op_rule_list, jf_op_rule_get, jf_op_rule_update,
    jf_op_rule_archive, jf_op_member_event;

#endif
