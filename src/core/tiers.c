/*
 * Tiers: the configuration, a member's window, upgrades at once and the
 * record of every change (docs/TIERS.md).  The HTTP operations and the
 * evaluation job are in tiers_ops.c.
 */
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "tiers.h"

/* What a command read of the tier configuration, kept until it ends
 * (ctx_finish calls jf_tier_memo_clear): an order earn loads it once for its
 * tier bonus and again for the upgrade after it (docs/PERFORMANCE-HISTORY.md,
 * "Since commit 762cf30").  The configuration changes only by tiers_ops.c's
 * config_put, which clears it.  Between commands the writer keeps the
 * configuration too (wcache.c), so a command's first load reads no row
 * either; the member's tier comes with the member's row, which the writer's
 * member cache keeps (jf_member_tier_load). */
struct jf_tier_memo {
    bool cfg_known, cfg_found;
    jf_tier_config cfg; /* holds a reference to cfg.body when found */
};

/* The command's memo, made on first use; NULL when memory ran out (then
 * nothing is kept and every load reads). */
static jf_tier_memo *memo_of(jf_ctx *ctx)
{
    if (ctx->tier_memo == NULL)
        ctx->tier_memo = calloc(1, sizeof(*ctx->tier_memo));
    return ctx->tier_memo;
}

static void memo_forget_config(jf_tier_memo *m)
{
    if (m->cfg_known && m->cfg_found)
        jf_tier_config_free(&m->cfg);
    m->cfg_known = false;
}

void jf_tier_memo_clear(jf_ctx *ctx)
{
    if (ctx->tier_memo == NULL)
        return;
    memo_forget_config(ctx->tier_memo);
    free(ctx->tier_memo);
    ctx->tier_memo = NULL;
}

void jf_tier_config_changed(jf_ctx *ctx)
{
    if (ctx->tier_memo)
        memo_forget_config(ctx->tier_memo);
    jf_wcache_tiers_changed(jf_ctx_wcache(ctx));
}

/* ---- configuration ---- */

static bool code_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > JF_TIER_CODE_LEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

/* {"num": N, "den": D}: a factor from 1 to JF_RULE_FACTOR_MAX. */
static jf_err factor_validate(jf_ctx *ctx, json_t *f, const char *what)
{
    static const char *const fields[] = {"num", "den", NULL};
    int64_t num = 0, den = 1;
    if (f == NULL)
        return JF_OK;
    if (!json_is_object(f))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be {\"num\", \"den\"}.", what);
    jf_err err = jf_json_allow(ctx, f, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, f, "num", true, 1, JF_RULE_FACTOR_MAX * 1000, &num, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, f, "den", false, 1, 1000, &den, NULL);
    if (err == JF_OK && (num < den || num > den * JF_RULE_FACTOR_MAX))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be a factor from 1 to %d.", what,
                      JF_RULE_FACTOR_MAX);
    return err;
}

static jf_err perks_validate(jf_ctx *ctx, json_t *p)
{
    static const char *const fields[] = {"en", "zh", NULL};
    json_t *v;
    size_t i;
    const char *s;
    if (p == NULL)
        return JF_OK;
    if (!json_is_array(p) || json_array_size(p) > JF_TIER_PERKS_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'benefits.perks' must be an array of at most %d {\"en\", \"zh\"}.",
                       JF_TIER_PERKS_MAX);
    json_array_foreach(p, i, v)
    {
        jf_err err = json_is_object(v)
                         ? jf_json_allow(ctx, v, fields)
                         : jf_fail(ctx, JF_ERR_INVALID_FIELD,
                                   "'benefits.perks' holds {\"en\", \"zh\"} objects.");
        if (err == JF_OK)
            err = jf_json_str(ctx, v, "en", true, JF_NOTE_LEN_MAX, &s);
        if (err == JF_OK)
            err = jf_json_str(ctx, v, "zh", false, JF_NOTE_LEN_MAX, &s);
        if (err != JF_OK)
            return err;
    }
    return JF_OK;
}

static jf_err benefits_validate(jf_ctx *ctx, json_t *b)
{
    static const char *const fields[] = {"earn_multiplier", "birthday_multiplier", "perks",
                                         "rewards", NULL};
    json_t *r, *v;
    size_t i;
    if (b == NULL)
        return JF_OK;
    if (!json_is_object(b))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'benefits' must be an object.");
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err =
            factor_validate(ctx, json_object_get(b, "earn_multiplier"), "benefits.earn_multiplier");
    if (err == JF_OK)
        err = factor_validate(ctx, json_object_get(b, "birthday_multiplier"),
                              "benefits.birthday_multiplier");
    if (err == JF_OK)
        err = perks_validate(ctx, json_object_get(b, "perks"));
    if (err != JF_OK || (r = json_object_get(b, "rewards")) == NULL)
        return err;
    if (!json_is_array(r) || json_array_size(r) > JF_TIER_REWARDS_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'benefits.rewards' must be an array of at most %d reward ids.",
                       JF_TIER_REWARDS_MAX);
    json_array_foreach(r, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) < 1 ||
            json_string_length(v) >= JF_ID_LEN_MAX)
            return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'benefits.rewards' holds reward ids.");
    }
    return JF_OK;
}

static jf_err tier_validate(jf_ctx *ctx, json_t *t, int64_t prev_threshold)
{
    static const char *const fields[] = {
        "code",     "name", "name_zh", "threshold", "retain", "spend_threshold", "orders_threshold",
        "benefits", NULL};
    const char *code = NULL, *s;
    int64_t threshold = 0, retain = 0, n;
    bool has_retain = false;
    if (!json_is_object(t))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'tiers' holds objects.");
    jf_err err = jf_json_allow(ctx, t, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, t, "code", true, JF_TIER_CODE_LEN_MAX, &code);
    if (err == JF_OK && !code_valid(code))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "A tier code is 1 to %d of a-z, 0-9, '_' and '-'; '%s' is not.",
                      JF_TIER_CODE_LEN_MAX, code);
    if (err == JF_OK)
        err = jf_json_str(ctx, t, "name", true, JF_TIER_NAME_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, t, "name_zh", false, JF_TIER_NAME_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_int(ctx, t, "threshold", true, 0, JF_POINTS_MAX, &threshold, NULL);
    if (err == JF_OK && threshold <= prev_threshold)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "Tier '%s': thresholds must increase from one tier to the next.", code);
    if (err == JF_OK)
        err = jf_json_int(ctx, t, "retain", false, 0, JF_POINTS_MAX, &retain, &has_retain);
    if (err == JF_OK && has_retain && retain > threshold)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "Tier '%s': 'retain' exceeds 'threshold'.", code);
    if (err == JF_OK)
        err = jf_json_int(ctx, t, "spend_threshold", false, 1, JF_MONEY_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, t, "orders_threshold", false, 1, INT32_MAX, &n, NULL);
    return err == JF_OK ? benefits_validate(ctx, json_object_get(t, "benefits")) : err;
}

static jf_err window_validate(jf_ctx *ctx, json_t *w)
{
    static const char *const fields[] = {"type", "months", NULL};
    static const char *const types[] = {"lifetime", "calendar_year", "rolling_months", NULL};
    const char *type = NULL;
    int64_t months = 0;
    bool has_months = false;
    if (!json_is_object(w))
        return jf_fail(ctx, w ? JF_ERR_INVALID_FIELD : JF_ERR_MISSING_FIELD,
                       "'window' must be {\"type\", \"months\"}.");
    jf_err err = jf_json_allow(ctx, w, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, w, "type", true, 16, &type);
    int k = 0;
    while (err == JF_OK && types[k] && strcmp(types[k], type) != 0)
        k++;
    if (err == JF_OK && types[k] == NULL)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'window.type' must be lifetime, calendar_year or rolling_months.");
    if (err == JF_OK)
        err = jf_json_int(ctx, w, "months", false, 1, JF_TIER_WINDOW_MONTHS_MAX, &months,
                          &has_months);
    if (err == JF_OK && k == 2 && !has_months)
        err = jf_fail(ctx, JF_ERR_MISSING_FIELD, "'window.months' is required for rolling_months.");
    if (err == JF_OK && k != 2 && has_months)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'window.months' goes only with rolling_months.");
    return err;
}

static jf_err one_of(jf_ctx *ctx, json_t *b, const char *field, const char *a, const char *c)
{
    const char *s = NULL;
    jf_err err = jf_json_str(ctx, b, field, false, 32, &s);
    if (err == JF_OK && s && strcmp(s, a) != 0 && strcmp(s, c) != 0)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be \"%s\" or \"%s\".", field, a, c);
    return err;
}

/* Validates a PUT /v1/tiers body and fills in its defaults. */
jf_err jf_tier_config_validate(jf_ctx *ctx, json_t *b)
{
    static const char *const fields[] = {"basis",     "window", "evaluation",
                                         "downgrade", "tiers",  NULL};
    json_t *tiers = json_object_get(b, "tiers"), *t, *u;
    size_t i, j;
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err = one_of(ctx, b, "basis", "growth", "growth");
    if (err == JF_OK)
        err = window_validate(ctx, json_object_get(b, "window"));
    if (err == JF_OK)
        err = one_of(ctx, b, "evaluation", "anniversary", "period_end");
    if (err == JF_OK)
        err = one_of(ctx, b, "downgrade", "one_level", "to_qualified");
    if (err == JF_OK && (!json_is_array(tiers) || json_array_size(tiers) < 1 ||
                         json_array_size(tiers) > JF_TIERS_MAX))
        err = jf_fail(ctx, tiers ? JF_ERR_INVALID_FIELD : JF_ERR_MISSING_FIELD,
                      "'tiers' must be an array of 1 to %d tiers.", JF_TIERS_MAX);
    int64_t prev = -1;
    json_array_foreach(tiers, i, t)
    {
        if (err != JF_OK || (err = tier_validate(ctx, t, prev)) != JF_OK)
            break;
        prev = json_integer_value(json_object_get(t, "threshold"));
        json_array_foreach(tiers, j, u)
        {
            if (j < i && json_equal(json_object_get(t, "code"), json_object_get(u, "code")))
                return jf_fail(ctx, JF_ERR_INVALID_FIELD, "Tier code '%s' appears twice.",
                               json_string_value(json_object_get(t, "code")));
        }
    }
    if (err != JF_OK)
        return err;
    const char *window = json_string_value(json_object_get(json_object_get(b, "window"), "type"));
    if (!json_object_get(b, "basis"))
        jf_json_set(b, "basis", json_string("growth"));
    if (!json_object_get(b, "evaluation"))
        jf_json_set(
            b, "evaluation",
            json_string(strcmp(window, "calendar_year") == 0 ? "period_end" : "anniversary"));
    if (!json_object_get(b, "downgrade"))
        jf_json_set(b, "downgrade", json_string("one_level"));
    return JF_OK;
}

static void factor_of(json_t *f, int64_t *num, int64_t *den)
{
    json_t *d = json_object_get(f, "den");
    *num = f ? json_integer_value(json_object_get(f, "num")) : 1;
    *den = f && d ? json_integer_value(d) : 1;
}

/* Whether o[k] is the string v (false when o has no such string). */
static bool json_str_is(json_t *o, const char *k, const char *v)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && strcmp(s, v) == 0;
}

/* Reads a stored configuration, validated and normalized when it was put;
 * a field missing all the same reads as its default rather than crash the
 * writer. */
static void config_fill(jf_tier_config *cfg)
{
    json_t *b = cfg->body, *w = json_object_get(b, "window"), *t;
    size_t i;
    cfg->window = json_str_is(w, "type", "lifetime")        ? JF_WINDOW_LIFETIME
                  : json_str_is(w, "type", "calendar_year") ? JF_WINDOW_YEAR
                                                            : JF_WINDOW_ROLLING;
    cfg->months =
        cfg->window == JF_WINDOW_ROLLING ? json_integer_value(json_object_get(w, "months")) : 12;
    cfg->period_end = json_str_is(b, "evaluation", "period_end");
    cfg->to_qualified = json_str_is(b, "downgrade", "to_qualified");
    cfg->n = 0;
    json_array_foreach(json_object_get(b, "tiers"), i, t)
    {
        jf_tier *x = &cfg->tiers[cfg->n++];
        json_t *v, *bn = json_object_get(t, "benefits");
        jf_str_copy(x->code, sizeof x->code, json_string_value(json_object_get(t, "code")));
        x->threshold = json_integer_value(json_object_get(t, "threshold"));
        x->retain = (v = json_object_get(t, "retain")) ? json_integer_value(v) : x->threshold;
        x->spend_threshold =
            (v = json_object_get(t, "spend_threshold")) ? json_integer_value(v) : -1;
        x->orders_threshold =
            (v = json_object_get(t, "orders_threshold")) ? json_integer_value(v) : -1;
        cfg->uses_spend = cfg->uses_spend || x->spend_threshold >= 0 || x->orders_threshold >= 0;
        factor_of(json_object_get(bn, "earn_multiplier"), &x->mult_num, &x->mult_den);
        factor_of(json_object_get(bn, "birthday_multiplier"), &x->bday_num, &x->bday_den);
        x->json = t;
    }
}

/* The configuration as config_load read it, from the memo when this
 * command read it before, else from what the writer keeps. */
static jf_err config_load(jf_ctx *ctx, jf_tier_config *cfg, bool *found);

static jf_err config_load_kept(jf_ctx *ctx, jf_tier_config *cfg, bool *found)
{
    jf_wcache *wc = jf_ctx_wcache(ctx);
    if (jf_wcache_tiers_get(wc, ctx->auth->tenant, ctx->prog.timezone, cfg, found))
        return JF_OK;
    jf_err err = config_load(ctx, cfg, found);
    if (err == JF_OK)
        jf_wcache_tiers_put(wc, ctx->auth->tenant, ctx->prog.timezone, cfg, *found);
    return err;
}

jf_err jf_tier_config_load(jf_ctx *ctx, jf_tier_config *cfg, bool *found)
{
    jf_tier_memo *m = memo_of(ctx);
    if (m && m->cfg_known) {
        *found = m->cfg_found;
        if (!m->cfg_found) {
            memset(cfg, 0, sizeof(*cfg));
            return JF_OK;
        }
        *cfg = m->cfg;
        json_incref(cfg->body);
        return JF_OK;
    }
    jf_err err = config_load_kept(ctx, cfg, found);
    if (err == JF_OK && m) {
        m->cfg_known = true;
        m->cfg_found = *found;
        if (*found) {
            m->cfg = *cfg;
            json_incref(m->cfg.body);
        }
    }
    return err;
}

static jf_err config_load(jf_ctx *ctx, jf_tier_config *cfg, bool *found)
{
    memset(cfg, 0, sizeof(*cfg));
    *found = false;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT version, body, created_at FROM tier_configs WHERE"
                                   " tenant_id=? ORDER BY version DESC LIMIT 1",
                                   "I", ctx->auth->tenant);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_OK;
    if (jf_db_step(st) == SQLITE_ROW) {
        cfg->version = sqlite3_column_int64(st, 0);
        cfg->body = jf_wcache_body_load(jf_ctx_wcache(ctx), ctx->auth->tenant, 'T', "",
                                        cfg->version, jf_db_text(st, 1));
        cfg->created_at = sqlite3_column_int64(st, 2);
        err = cfg->body ? JF_OK : JF_ERR_CORRUPT;
    }
    sqlite3_reset(st);
    if (err != JF_OK || cfg->body == NULL)
        return err;
    if (jf_tz_get(ctx->prog.timezone, &cfg->tz) != JF_OK && jf_tz_get("UTC", &cfg->tz) != JF_OK) {
        jf_tier_config_free(cfg);
        return jf_fail(ctx, JF_ERR_UNKNOWN_TIMEZONE, "Unknown time zone '%s'.", ctx->prog.timezone);
    }
    config_fill(cfg);
    *found = true;
    return JF_OK;
}

void jf_tier_config_free(jf_tier_config *cfg)
{
    json_decref(cfg->body);
    cfg->body = NULL;
}

int jf_tier_index(const jf_tier_config *cfg, const char *code)
{
    for (int i = 0; code && i < cfg->n; i++)
        if (strcmp(cfg->tiers[i].code, code) == 0)
            return i;
    return -1;
}

/* ---- a member's tier and window ---- */

jf_err jf_member_tier_load(jf_ctx *ctx, const char *member_id, jf_member_tier *out)
{
    jf_member mb;
    jf_err err = jf_member_load(ctx, member_id, &mb);
    if (err == JF_OK)
        *out = mb.tier;
    return err;
}

int jf_tier_effective(const jf_tier_config *cfg, const jf_member_tier *mt)
{
    int i = jf_tier_index(cfg, mt->code[0] ? mt->code : NULL);
    if (i >= 0)
        return i;
    return cfg->n > 0 && cfg->tiers[0].threshold == 0 && cfg->tiers[0].spend_threshold < 0 &&
                   cfg->tiers[0].orders_threshold < 0
               ? 0
               : -1;
}

/* The same local wall time k months later (a day the month lacks becomes
 * its last day). */
static int64_t shift_months(const jf_tz *tz, int64_t t, int k)
{
    jf_civil c;
    jf_tz_to_civil(tz, t, &c);
    int64_t m0 = (int64_t)c.year * 12 + (c.month - 1) + k;
    int y = (int)(m0 / 12), m = (int)(m0 % 12) + 1;
    int last = (int)(jf_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) -
                     jf_days_from_civil(y, m, 1));
    return jf_tz_from_civil_ms(tz, y, m, c.day > last ? last : c.day, c.hour, c.minute, c.second);
}

/* Local 1 January of the year containing t. */
static int64_t year_start(const jf_tz *tz, int64_t t)
{
    return jf_tz_period_end_ms(tz, t, -12, JF_PERIOD_YEAR);
}

/* A tier window's sums over the member's transaction entries in
 * member_state (db.h, JF_TX_ENTRY_*; schema version 11): value the growth,
 * key3 the order amount, key4 twice the tenant's latest transaction time up
 * to the entry plus its order flag, key2 its time.  Read from the newest;
 * once an entry's latest time is before the window, so is every older
 * entry's time, and the scan stops: it reads the window's entries and those
 * after it, not the member's whole history. */
#define WINDOW_ENTRIES                                                                             \
    "SELECT key2, key3, key4, value FROM member_state WHERE member_seq = ?1 AND kind = 2"          \
    " ORDER BY key1 DESC"

static void window_add(sqlite3_stmt *st, jf_tier_metrics *m)
{
    int64_t at = sqlite3_column_int64(st, 0);
    if (at < m->from || at >= m->to)
        return;
    m->growth += sqlite3_column_int64(st, 3);
    m->spend += sqlite3_column_int64(st, 1);
    m->orders += sqlite3_column_int64(st, 2) & 1;
}

static jf_err window_sums(jf_ctx *ctx, const char *member_id, jf_tier_metrics *m)
{
    int64_t seq = 0;
    jf_err err = jf_member_seq(ctx, member_id, &seq);
    sqlite3_stmt *st = err == JF_OK ? jf_db_query(ctx->db, WINDOW_ENTRIES, "I", seq) : NULL;
    if (err == JF_OK && st == NULL)
        err = JF_ERR_IO;
    int rc = SQLITE_DONE;
    m->growth = m->spend = m->orders = 0;
    while (st != NULL && (rc = jf_db_step(st)) == SQLITE_ROW) {
        /* 0: an entry whose transaction the upgrade did not find (verify
         * reports it); it says nothing about the entries before it. */
        int64_t latest = sqlite3_column_int64(st, 2) / 2;
        if (latest > 0 && latest < m->from)
            break;
        window_add(st, m);
    }
    if (err == JF_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = JF_ERR_IO;
    if (st != NULL)
        sqlite3_reset(st);
    return err;
}

/* The window's spend less what was refunded in it. */
static jf_err spend_net(jf_ctx *ctx, const char *member_id, jf_tier_metrics *m)
{
    int64_t refunded = 0;
    jf_err err = jf_db_int(ctx->db, &refunded, 0,
                           "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE tenant_id=? AND"
                           " member_id=? AND created_at >= ? AND created_at < ?",
                           "IsII", ctx->auth->tenant, member_id, m->from, m->to);
    m->spend = m->spend > refunded ? m->spend - refunded : 0;
    return err;
}

/* The member's lifetime growth: its growth account's balance (member_state's
 * row kind 0, key1 1: hot.c), 0 before its first growth.  Through the
 * member's seq, which the command has usually resolved already (every
 * caller has loaded the member), rather than the member_accounts view's
 * lookup of the member. */
static jf_err lifetime_growth(jf_ctx *ctx, const char *member_id, int64_t *out)
{
    int64_t seq = 0;
    jf_err err = jf_member_seq(ctx, member_id, &seq);
    if (err == JF_OK)
        err = jf_db_int(ctx->db, out, 0,
                        "SELECT value FROM member_state WHERE member_seq = ? AND kind = 0"
                        " AND key1 = 1 AND key2 = 0 AND key3 = 0 AND key4 = 0",
                        "I", seq);
    return err;
}

/* jf_tier_metrics_at with the member's lifetime growth already read. */
static jf_err metrics_with_lifetime(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id,
                                    int64_t end, bool at_eval, bool all, int64_t lifetime,
                                    jf_tier_metrics *out)
{
    memset(out, 0, sizeof(*out));
    out->to = end;
    out->from = cfg->window == JF_WINDOW_LIFETIME  ? INT64_MIN
                : cfg->window == JF_WINDOW_ROLLING ? shift_months(cfg->tz, end, -(int)cfg->months)
                                                   : year_start(cfg->tz, at_eval ? end - 1 : end);
    out->lifetime = lifetime;
    bool spend = cfg->uses_spend || all;
    jf_err err = window_sums(ctx, member_id, out);
    /* A refund in the window of growth earned before it cannot make the
     * window's growth negative. */
    out->growth = out->growth < 0 ? 0 : out->growth;
    if (err == JF_OK && spend)
        err = spend_net(ctx, member_id, out);
    else
        out->spend = out->orders = 0;
    return err;
}

jf_err jf_tier_metrics_at(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id,
                          int64_t end, bool at_eval, bool all, jf_tier_metrics *out)
{
    int64_t lifetime = 0;
    jf_err err = lifetime_growth(ctx, member_id, &lifetime);
    if (err != JF_OK) {
        memset(out, 0, sizeof(*out));
        return err;
    }
    return metrics_with_lifetime(ctx, cfg, member_id, end, at_eval, all, lifetime, out);
}

static bool meets(const jf_tier *t, const jf_tier_metrics *m, int64_t growth_needed)
{
    return m->growth >= growth_needed ||
           (t->spend_threshold >= 0 && m->spend >= t->spend_threshold) ||
           (t->orders_threshold >= 0 && m->orders >= t->orders_threshold);
}

int jf_tier_qualified(const jf_tier_config *cfg, const jf_tier_metrics *m)
{
    int q = -1;
    for (int i = 0; i < cfg->n; i++)
        if (meets(&cfg->tiers[i], m, cfg->tiers[i].threshold))
            q = i;
    return q;
}

bool jf_tier_retains(const jf_tier_config *cfg, int i, const jf_tier_metrics *m)
{
    return i < 0 || meets(&cfg->tiers[i], m, cfg->tiers[i].retain);
}

int64_t jf_tier_next_eval(const jf_tier_config *cfg, int i, int64_t from)
{
    if (i < 0 || (i == 0 && cfg->tiers[0].retain == 0))
        return -1; /* nothing to fall from */
    return cfg->period_end ? jf_tz_period_end_ms(cfg->tz, from, 0, JF_PERIOD_YEAR)
                           : shift_months(cfg->tz, from, (int)cfg->months);
}

/* ---- recording changes ---- */

static const char *event_type(const char *kind)
{
    return strcmp(kind, "upgrade") == 0     ? "tier.upgraded"
           : strcmp(kind, "downgrade") == 0 ? "tier.downgraded"
                                            : "tier.changed";
}

static jf_err event_append(jf_ctx *ctx, const char *member_id, const char *type, json_t *data)
{
    char id[JF_ID_LEN_MAX];
    jf_id_new_ordered("evt_", ctx->now_ms, id);
    char *text = jf_json_dump(data, NULL);
    jf_err err =
        text ? jf_db_run(ctx->db,
                         "INSERT INTO events(tenant_id, id, type, member_id, data,"
                         " created_at) VALUES(?,?,?,?,?,?)",
                         "IssssI", ctx->auth->tenant, id, type, member_id, text, ctx->now_ms)
             : JF_ERR_NOMEM;
    free(text);
    return err;
}

jf_err jf_tier_record(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id,
                      const jf_tier_move *mv)
{
    const char *from = mv->from >= 0 ? cfg->tiers[mv->from].code : NULL;
    const char *to = mv->to >= 0 ? cfg->tiers[mv->to].code : NULL;
    /* The row's tier is part of what the writer's member cache keeps. */
    jf_wcache_member_dirty(jf_ctx_wcache(ctx), ctx->auth->tenant, member_id);
    char id[JF_ID_LEN_MAX];
    jf_id_new_ordered("tch_", ctx->now_ms, id);
    jf_err err = jf_db_run(ctx->db,
                           "UPDATE members SET tier=?, tier_since=NULLIF(?,-1),"
                           " tier_eval_at=NULLIF(?,-1), tier_manual=?, tier_override_until="
                           "NULLIF(?,-1), updated_at=? WHERE tenant_id=? AND id=?",
                           "sIIiIIIs", to, mv->since, mv->eval_at, mv->manual ? 1 : 0, mv->until,
                           ctx->now_ms, ctx->auth->tenant, member_id);
    if (err == JF_OK && jf_db_changes(ctx->db) != 1)
        err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No member '%s'.", member_id);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "INSERT INTO tier_changes(tenant_id, member_id, id, from_tier, to_tier,"
                        " kind, reason, growth, tx_id, actor, config_version, until, created_at)"
                        " VALUES(?,?,?,?,?,?,?,?,?,?,?,NULLIF(?,-1),?)",
                        "IssssssIssIII", ctx->auth->tenant, member_id, id, from, to, mv->kind,
                        mv->reason, mv->growth, mv->tx_id, ctx->auth->actor, cfg->version,
                        mv->until, ctx->now_ms);
    if (err != JF_OK || strcmp(mv->kind, "retain") == 0)
        return err;
    json_t *data = json_pack("{sosossssss}", "from", jf_json_text(from), "to", jf_json_text(to),
                             "kind", mv->kind, "reason", mv->reason, "tier_change_id", id);
    err = data ? event_append(ctx, member_id, event_type(mv->kind), data) : JF_ERR_NOMEM;
    json_decref(data);
    return err;
}

/* ---- upgrades at once ---- */

/* Whether a window's growth of at most `most` could reach a tier above cur
 * (by growth alone: the caller rules out spend and orders thresholds). */
static bool growth_may_reach(const jf_tier_config *cfg, int cur, int64_t most)
{
    for (int i = cur + 1; i < cfg->n; i++)
        if (most >= cfg->tiers[i].threshold)
            return true;
    return false;
}

/* The member's lifetime growth after tx: the balance its growth posting
 * stored (jf_tx_commit), which spares a read of the row the posting has
 * just written (about 6,400 instructions of an order earn); read when tx
 * posted no growth (an order earn that gave none, for spend tiers). */
static jf_err lifetime_after(jf_ctx *ctx, const char *member_id, const jf_tx *tx, int64_t *out)
{
    int g = jf_tx_posting_find(tx, "growth", member_id);
    if (g < 0)
        return lifetime_growth(ctx, member_id, out);
    *out = tx->stored[g];
    return JF_OK;
}

jf_err jf_tier_after_growth(jf_ctx *ctx, const char *member_id, const jf_tx *tx)
{
    const char *tx_id = tx->id;
    jf_tier_config cfg;
    jf_member_tier mt;
    jf_tier_metrics m;
    bool found = false;
    jf_err err = jf_tier_config_load(ctx, &cfg, &found);
    if (err != JF_OK || !found)
        return err;
    err = jf_member_tier_load(ctx, member_id, &mt);
    int cur = err == JF_OK ? jf_tier_effective(&cfg, &mt) : -1;
    /* A member in the top tier has nowhere to go up to, and the window's
     * metrics sum every transaction of the member in it: skip them. */
    if (err == JF_OK && cur == cfg.n - 1) {
        jf_tier_config_free(&cfg);
        return JF_OK;
    }
    /* Nor does a member whose lifetime growth is below every higher tier's
     * threshold: the window's growth is at most that, since a reversal
     * comes after its earn and takes back no more than it gave (T1), so
     * what lies before the window adds up to zero or more.  The window's
     * sums cost an order earn about 21,000 instructions.  The window's
     * metrics take the lifetime growth read here. */
    int64_t lifetime = 0;
    if (err == JF_OK)
        err = lifetime_after(ctx, member_id, tx, &lifetime);
    if (err == JF_OK && !cfg.uses_spend && !growth_may_reach(&cfg, cur, lifetime)) {
        jf_tier_config_free(&cfg);
        return JF_OK;
    }
    /* The window includes this transaction (created now). */
    if (err == JF_OK)
        err = metrics_with_lifetime(ctx, &cfg, member_id, ctx->now_ms + 1, false, false, lifetime,
                                    &m);
    int q = err == JF_OK ? jf_tier_qualified(&cfg, &m) : -1;
    if (err == JF_OK && q > cur) {
        char reason[200];
        snprintf(reason, sizeof reason, "Growth %lld in the window reached %s's threshold %lld.",
                 (long long)m.growth, cfg.tiers[q].code, (long long)cfg.tiers[q].threshold);
        jf_tier_move mv = {.kind = "upgrade",
                           .reason = reason,
                           .tx_id = tx_id,
                           .from = cur,
                           .to = q,
                           .growth = m.growth,
                           .since = ctx->now_ms,
                           .eval_at = jf_tier_next_eval(&cfg, q, ctx->now_ms),
                           .until = -1};
        err = jf_tier_record(ctx, &cfg, member_id, &mv);
        if (err == JF_OK && ctx->path_id && strcmp(ctx->path_id, member_id) == 0)
            jf_json_set(ctx->out, "tier_upgrade",
                        json_pack("{sossss}", "from",
                                  jf_json_text(cur >= 0 ? cfg.tiers[cur].code : NULL), "to",
                                  cfg.tiers[q].code, "reason", reason));
    }
    jf_tier_config_free(&cfg);
    return err;
}

jf_err jf_tier_bonus_load(jf_ctx *ctx, const char *member_id, jf_tier_bonus *out)
{
    jf_tier_config cfg;
    jf_member_tier mt;
    bool found = false;
    memset(out, 0, sizeof(*out));
    out->mult_num = out->mult_den = out->bday_num = out->bday_den = 1;
    jf_err err = jf_tier_config_load(ctx, &cfg, &found);
    if (err != JF_OK || !found)
        return err;
    err = jf_member_tier_load(ctx, member_id, &mt);
    int i = err == JF_OK ? jf_tier_effective(&cfg, &mt) : -1;
    if (i >= 0) {
        const jf_tier *t = &cfg.tiers[i];
        jf_str_copy(out->code, sizeof out->code, t->code);
        out->version = cfg.version;
        out->mult_num = t->mult_num;
        out->mult_den = t->mult_den;
        out->bday_num = t->bday_num;
        out->bday_den = t->bday_den;
    }
    jf_tier_config_free(&cfg);
    return err;
}

void jf_tx_post_growth(jf_tx *tx, const char *member_id, int64_t g)
{
    jf_tx_post(tx, "growth", member_id, g);
    jf_tx_post(tx, "growth_issuance", NULL, -g);
}

json_t *jf_tier_change_json(sqlite3_stmt *st)
{
    /* Columns: id, from_tier, to_tier, kind, reason, growth, tx_id, actor, until, created_at. */
    return json_pack("{ss so so ss ss sI so ss so so}", "id", jf_db_text(st, 0), "from",
                     jf_json_text(jf_db_text(st, 1)), "to", jf_json_text(jf_db_text(st, 2)), "kind",
                     jf_db_text(st, 3), "reason", jf_db_text(st, 4), "growth",
                     (json_int_t)sqlite3_column_int64(st, 5), "transaction_id",
                     jf_json_text(jf_db_text(st, 6)), "actor", jf_db_text(st, 7), "until",
                     jf_json_time_value(jf_db_int_or(st, 8, -1)), "at",
                     jf_json_time_value(sqlite3_column_int64(st, 9)));
}
