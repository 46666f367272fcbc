/*
 * Earning rules: strict validation of the rule JSON and the pure evaluator
 * (see rules.h for the evaluation order and docs/RULES.md for the guide).
 *
 * Validation reports the path of the offending field so a merchant can fix
 * a rule without reading code.  Evaluation works on the validated JSON
 * directly: rules are small and few (JF_RULES_ACTIVE_MAX per trigger), and
 * keeping one representation means what is stored, shown and evaluated can
 * never drift apart.  Calendar conditions are evaluated in the program's
 * time zone through tz.h, never through glibc's process-global TZ.
 */
#include <assert.h>
#include <stdarg.h>
#include <string.h>

#include "rules.h"
#include "tiers.h"

#define DAY_MS INT64_C(86400000)

/* ---- validation helpers ---- */

static bool one_of(const char *s, const char *const *names)
{
    for (; s && *names; names++)
        if (strcmp(s, *names) == 0)
            return true;
    return false;
}

/* An array of 1..JF_RULE_LIST_MAX non-empty strings of at most max_len. */
static jf_err str_list_of(jf_ctx *ctx, json_t *a, const char *path, const char *field,
                          size_t max_len)
{
    json_t *v;
    size_t i;
    if (a == NULL)
        return JF_OK;
    if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > JF_RULE_LIST_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s%s' must be an array of 1 to %d strings.",
                       path, field, JF_RULE_LIST_MAX);
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > max_len)
            return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                           "Each element of '%s%s' must be a string of 1 to %zu characters.", path,
                           field, max_len);
    }
    return JF_OK;
}

/* The same, of o's field. */
static jf_err str_list(jf_ctx *ctx, json_t *o, const char *path, const char *field, size_t max_len)
{
    return str_list_of(ctx, json_object_get(o, field), path, field, max_len);
}

/* "HH:MM" with HH 00..24 and MM 00..59 ("24:00" only); minutes since midnight. */
static bool hhmm_parse(const char *s, int *minutes)
{
    if (s == NULL || strlen(s) != 5 || s[2] != ':')
        return false;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return false;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || m > 59 || (h == 24 && m != 0))
        return false;
    *minutes = h * 60 + m;
    return true;
}

static jf_err hours_validate(jf_ctx *ctx, json_t *h)
{
    static const char *const fields[] = {"from", "to", NULL};
    int a, b;
    if (!json_is_object(h))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions.hours' must be an object.");
    jf_err err = jf_json_allow(ctx, h, fields);
    if (err == JF_OK && (!hhmm_parse(json_string_value(json_object_get(h, "from")), &a) ||
                         !hhmm_parse(json_string_value(json_object_get(h, "to")), &b)))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'conditions.hours.from' and '.to' must both be \"HH:MM\" (00:00 to 24:00).");
    if (err == JF_OK && a == b)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions.hours' must not be empty.");
    return err;
}

static jf_err dates_validate(jf_ctx *ctx, json_t *d)
{
    static const char *const fields[] = {"from", "to", NULL};
    int y, m, day;
    if (!json_is_object(d) || json_object_size(d) == 0)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions.dates' must be an object.");
    jf_err err = jf_json_allow(ctx, d, fields);
    const char *from = json_string_value(json_object_get(d, "from"));
    const char *to = json_string_value(json_object_get(d, "to"));
    if (err == JF_OK && ((json_object_get(d, "from") && !jf_date_parse(from, &y, &m, &day)) ||
                         (json_object_get(d, "to") && !jf_date_parse(to, &y, &m, &day))))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'conditions.dates.from' and '.to' must be dates \"YYYY-MM-DD\".");
    if (err == JF_OK && from && to && strcmp(from, to) > 0)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions.dates.from' is after '.to'.");
    return err;
}

static jf_err days_validate(jf_ctx *ctx, json_t *d)
{
    json_t *v;
    size_t i;
    if (!json_is_array(d) || json_array_size(d) < 1 || json_array_size(d) > 7)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'conditions.days_of_week' must be an array of 1 to 7 days.");
    json_array_foreach(d, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 7)
            return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                           "'conditions.days_of_week' holds days 1 (Monday) to 7 (Sunday).");
    }
    return JF_OK;
}

static jf_err selector_validate(jf_ctx *ctx, json_t *c, const char *field)
{
    static const char *const fields[] = {"skus", "categories", "labels", NULL};
    json_t *s = json_object_get(c, field);
    char path[48];
    if (s == NULL)
        return JF_OK;
    snprintf(path, sizeof path, "conditions.%s.", field);
    if (!json_is_object(s) || json_object_size(s) == 0)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'conditions.%s' must be an object with skus, categories or labels.", field);
    jf_err err = jf_json_allow(ctx, s, fields);
    for (int i = 0; err == JF_OK && fields[i]; i++)
        err = str_list(ctx, s, path, fields[i], JF_SKU_LEN_MAX);
    return err;
}

static jf_err purchase_number_validate(jf_ctx *ctx, json_t *p)
{
    static const char *const fields[] = {"first", "nth", NULL};
    int64_t n;
    if (!json_is_object(p) || json_object_size(p) != 1)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'conditions.purchase_number' must be {\"first\": true} or {\"nth\": N}.");
    jf_err err = jf_json_allow(ctx, p, fields);
    if (err == JF_OK && json_object_get(p, "first") && !json_is_true(json_object_get(p, "first")))
        err =
            jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions.purchase_number.first' must be true.");
    if (err == JF_OK)
        err = jf_json_int(ctx, p, "nth", false, 1, 1000000, &n, NULL);
    return err;
}

/* Conditions that only make sense for an order. */
static const char *const order_conditions[] = {"amount_min",   "amount_max",      "channels",
                                               "stores",       "include",         "exclude",
                                               "min_quantity", "purchase_number", NULL};

static jf_err conditions_validate_order(jf_ctx *ctx, json_t *c)
{
    int64_t lo = 0, hi = JF_MONEY_MAX, n;
    jf_err err = jf_json_int(ctx, c, "amount_min", false, 0, JF_MONEY_MAX, &lo, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, c, "amount_max", false, 0, JF_MONEY_MAX, &hi, NULL);
    if (err == JF_OK && lo > hi)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions.amount_min' exceeds 'amount_max'.");
    if (err == JF_OK)
        err = jf_json_int(ctx, c, "min_quantity", false, 1, JF_MONEY_MAX, &n, NULL);
    if (err == JF_OK)
        err = str_list(ctx, c, "conditions.", "channels", JF_CHANNEL_LEN_MAX);
    if (err == JF_OK)
        err = str_list(ctx, c, "conditions.", "stores", JF_STORE_ID_LEN_MAX);
    if (err == JF_OK)
        err = selector_validate(ctx, c, "include");
    if (err == JF_OK)
        err = selector_validate(ctx, c, "exclude");
    if (err == JF_OK && json_object_get(c, "purchase_number"))
        err = purchase_number_validate(ctx, json_object_get(c, "purchase_number"));
    return err;
}

static jf_err conditions_validate(jf_ctx *ctx, json_t *c, bool is_event)
{
    static const char *const fields[] = {
        "amount_min", "amount_max",   "channels",        "stores",           "include",
        "exclude",    "min_quantity", "member_tags_any", "member_tiers_any", "days_of_week",
        "hours",      "dates",        "birthday",        "purchase_number",  NULL};
    static const char *const birthdays[] = {"day", "week", "month", NULL};
    if (c == NULL)
        return JF_OK;
    if (!json_is_object(c))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'conditions' must be an object.");
    jf_err err = jf_json_allow(ctx, c, fields);
    for (int i = 0; err == JF_OK && is_event && order_conditions[i]; i++)
        if (json_object_get(c, order_conditions[i]))
            err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                          "'conditions.%s' applies to purchase rules, not event rules.",
                          order_conditions[i]);
    if (err == JF_OK && !is_event)
        err = conditions_validate_order(ctx, c);
    if (err == JF_OK)
        err = str_list(ctx, c, "conditions.", "member_tags_any", JF_TAG_LEN_MAX);
    if (err == JF_OK)
        err = str_list(ctx, c, "conditions.", "member_tiers_any", JF_TIER_CODE_LEN_MAX);
    if (err == JF_OK && json_object_get(c, "days_of_week"))
        err = days_validate(ctx, json_object_get(c, "days_of_week"));
    if (err == JF_OK && json_object_get(c, "hours"))
        err = hours_validate(ctx, json_object_get(c, "hours"));
    if (err == JF_OK && json_object_get(c, "dates"))
        err = dates_validate(ctx, json_object_get(c, "dates"));
    if (err == JF_OK && json_object_get(c, "birthday") &&
        !one_of(json_string_value(json_object_get(c, "birthday")), birthdays))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'conditions.birthday' must be \"day\", \"week\" or \"month\".");
    return err;
}

static jf_err bonuses_validate(jf_ctx *ctx, json_t *b)
{
    static const char *const fields[] = {"sku", "points", NULL};
    json_t *v;
    size_t i;
    const char *s;
    int64_t n;
    if (!json_is_array(b) || json_array_size(b) < 1 || json_array_size(b) > JF_RULE_LIST_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'effect.bonuses' must be an array of 1 to %d {\"sku\", \"points\"}.",
                       JF_RULE_LIST_MAX);
    jf_err err = JF_OK;
    json_array_foreach(b, i, v)
    {
        if (!json_is_object(v))
            return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'effect.bonuses' holds objects.");
        if ((err = jf_json_allow(ctx, v, fields)) != JF_OK ||
            (err = jf_json_str(ctx, v, "sku", true, JF_SKU_LEN_MAX, &s)) != JF_OK ||
            (err = jf_json_int(ctx, v, "points", true, 1, JF_POINTS_MAX, &n, NULL)) != JF_OK)
            return err;
    }
    return err;
}

static jf_err rate_validate(jf_ctx *ctx, json_t *e)
{
    static const char *const roundings[] = {"floor", "ceil", "round", NULL};
    int64_t n;
    jf_err err = jf_json_int(ctx, e, "points", true, 0, JF_POINTS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "per_amount", true, 1, JF_MONEY_MAX, &n, NULL);
    json_t *r = json_object_get(e, "rounding"), *x = json_object_get(e, "exclude_points_paid");
    if (err == JF_OK && r && !one_of(json_string_value(r), roundings))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'effect.rounding' must be \"floor\", \"ceil\" or \"round\".");
    if (err == JF_OK && x && !json_is_boolean(x))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'effect.exclude_points_paid' must be a boolean.");
    return err;
}

/* The fields each effect type accepts, "type" first. */
static const char *const rate_fields[] = {
    "type", "points", "per_amount", "rounding", "exclude_points_paid", NULL};
static const char *const fixed_fields[] = {"type", "points", NULL};
static const char *const mult_fields[] = {"type", "factor_num", "factor_den", "rounding", NULL};
static const char *const bonus_fields[] = {"type", "bonuses", NULL};
static const char *const checkin_fields[] = {"type", "points", "streak_bonus", "cycle_days", NULL};

/* {"type": "check_in", "points": 5, "streak_bonus": [{"day": 7, "points": 50}],
 *  "cycle_days": 7}: points every check-in, a bonus on the streak's day. */
static jf_err checkin_validate(jf_ctx *ctx, json_t *e)
{
    static const char *const fields[] = {"day", "points", NULL};
    json_t *b = json_object_get(e, "streak_bonus"), *v;
    size_t i;
    int64_t n;
    jf_err err = jf_json_allow(ctx, e, checkin_fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "points", true, 0, JF_POINTS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "cycle_days", false, 1, JF_CHECKIN_STREAK_DAYS_MAX, &n, NULL);
    if (err == JF_OK && b && (!json_is_array(b) || json_array_size(b) > JF_RULE_LIST_MAX))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'effect.streak_bonus' must be an array of at most %d {\"day\", \"points\"}.",
                      JF_RULE_LIST_MAX);
    json_array_foreach(b, i, v)
    {
        if (err == JF_OK && !json_is_object(v))
            err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'effect.streak_bonus' holds objects.");
        if (err == JF_OK)
            err = jf_json_allow(ctx, v, fields);
        if (err == JF_OK)
            err = jf_json_int(ctx, v, "day", true, 1, JF_CHECKIN_STREAK_DAYS_MAX, &n, NULL);
        if (err == JF_OK)
            err = jf_json_int(ctx, v, "points", true, 1, JF_POINTS_MAX, &n, NULL);
    }
    return err;
}

/* {"type": "referral", "on": "signup" | "first_purchase", "referrer_points": 100,
 *  "referee_points": 50}: what each side of a referral gets, and when. */
static jf_err referral_validate(jf_ctx *ctx, json_t *e)
{
    static const char *const fields[] = {"type", "on", "referrer_points", "referee_points", NULL};
    static const char *const ons[] = {"signup", "first_purchase", NULL};
    int64_t a = 0, b = 0;
    jf_err err = jf_json_allow(ctx, e, fields);
    if (err == JF_OK && !one_of(json_string_value(json_object_get(e, "on")), ons))
        err = jf_fail(ctx, json_object_get(e, "on") ? JF_ERR_INVALID_FIELD : JF_ERR_MISSING_FIELD,
                      "'effect.on' must be \"signup\" or \"first_purchase\".");
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "referrer_points", false, 0, JF_POINTS_MAX, &a, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "referee_points", false, 0, JF_POINTS_MAX, &b, NULL);
    if (err == JF_OK && a == 0 && b == 0)
        err = jf_fail(ctx, JF_ERR_MISSING_FIELD,
                      "'effect' needs referrer_points or referee_points above 0.");
    return err;
}

static bool has_fixed_growth(json_t *rule);

/* growth_only: the rule gives a fixed growth, so a fixed effect may give 0 points. */
static jf_err effect_validate(jf_ctx *ctx, json_t *e, const char *trigger, bool growth_only)
{
    static const char *const types[] = {"rate",     "fixed",    "multiplier", "sku_bonus",
                                        "check_in", "referral", NULL};
    bool is_event = strcmp(trigger, "event") == 0, is_checkin = strcmp(trigger, "check_in") == 0;
    if (!json_is_object(e))
        return jf_fail(ctx, e ? JF_ERR_INVALID_FIELD : JF_ERR_MISSING_FIELD,
                       "'effect' must be an object with a 'type'.");
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!one_of(type, types))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'effect.type' must be rate, fixed, multiplier, sku_bonus, check_in or"
                       " referral.");
    if ((strcmp(trigger, "referral") == 0) != (strcmp(type, "referral") == 0))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "Referral rules take a 'referral' effect, and only they do.");
    if (strcmp(type, "referral") == 0)
        return referral_validate(ctx, e);
    if (is_event && strcmp(type, "fixed") != 0)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "Event rules take a 'fixed' effect only.");
    if ((strcmp(trigger, "signup") == 0 || strcmp(trigger, "birthday") == 0) &&
        strcmp(type, "fixed") != 0)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "Rules with trigger \"%s\" take a 'fixed' effect only.", trigger);
    if (is_checkin != (strcmp(type, "check_in") == 0) && (!is_checkin || strcmp(type, "fixed")))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "Check-in rules take a 'check_in' or 'fixed' effect, and only they take"
                       " 'check_in'.");
    if (strcmp(type, "check_in") == 0)
        return checkin_validate(ctx, e);
    int64_t num = 1, den = 1, n;
    if (strcmp(type, "fixed") == 0)
        return jf_json_allow(ctx, e, fixed_fields) == JF_OK
                   ? jf_json_int(ctx, e, "points", true, growth_only ? 0 : 1, JF_POINTS_MAX, &n,
                                 NULL)
                   : JF_ERR_UNKNOWN_FIELD;
    if (strcmp(type, "sku_bonus") == 0)
        return jf_json_allow(ctx, e, bonus_fields) == JF_OK
                   ? bonuses_validate(ctx, json_object_get(e, "bonuses"))
                   : JF_ERR_UNKNOWN_FIELD;
    if (strcmp(type, "rate") == 0)
        return jf_json_allow(ctx, e, rate_fields) == JF_OK ? rate_validate(ctx, e)
                                                           : JF_ERR_UNKNOWN_FIELD;
    jf_err err = jf_json_allow(ctx, e, mult_fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "factor_num", true, 1, JF_RULE_FACTOR_MAX, &num, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, e, "factor_den", false, 1, JF_RULE_FACTOR_MAX, &den, NULL);
    if (err == JF_OK && num <= den)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'effect.factor_num / factor_den' must be more than 1 (2/1 doubles).");
    json_t *r = json_object_get(e, "rounding");
    if (err == JF_OK && r &&
        !one_of(json_string_value(r), (const char *const[]){"floor", "ceil", "round", NULL}))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'effect.rounding' must be \"floor\", \"ceil\" or \"round\".");
    return err;
}

static jf_err cap_validate(jf_ctx *ctx, json_t *o, const char *name)
{
    static const char *const fields[] = {"period", "max_points", "max_awards", NULL};
    static const char *const periods[] = {"day", "week", "month", "year", "lifetime", NULL};
    bool per_member = strcmp(name, "per_member") == 0;
    int64_t n;
    bool has_p = false, has_a = false;
    if (!json_is_object(o))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'limits.%s' must be an object.", name);
    jf_err err = jf_json_allow(ctx, o, per_member ? fields : fields + 1);
    if (err == JF_OK)
        err = jf_json_int(ctx, o, "max_points", false, 0, JF_POINTS_MAX, &n, &has_p);
    if (err == JF_OK)
        err = jf_json_int(ctx, o, "max_awards", false, 0, JF_POINTS_MAX, &n, &has_a);
    if (err == JF_OK && !has_p && !has_a)
        err =
            jf_fail(ctx, JF_ERR_MISSING_FIELD, "'limits.%s' needs max_points or max_awards.", name);
    if (err == JF_OK && per_member &&
        !one_of(json_string_value(json_object_get(o, "period")), periods))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'limits.per_member.period' must be day, week, month, year or lifetime.");
    return err;
}

static jf_err limits_validate(jf_ctx *ctx, json_t *l)
{
    static const char *const fields[] = {"per_member", "budget", "max_points_per_order", NULL};
    int64_t n;
    if (l == NULL)
        return JF_OK;
    if (!json_is_object(l))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'limits' must be an object.");
    jf_err err = jf_json_allow(ctx, l, fields);
    if (err == JF_OK && json_object_get(l, "per_member"))
        err = cap_validate(ctx, json_object_get(l, "per_member"), "per_member");
    if (err == JF_OK && json_object_get(l, "budget"))
        err = cap_validate(ctx, json_object_get(l, "budget"), "budget");
    if (err == JF_OK)
        err = jf_json_int(ctx, l, "max_points_per_order", false, 0, JF_POINTS_MAX, &n, NULL);
    return err;
}

/* Top-level scalars of a rule. */
static jf_err rule_head_validate(jf_ctx *ctx, json_t *r, bool *is_event)
{
    static const char *const triggers[] = {"purchase", "event",    "check_in", "referral",
                                           "signup",   "birthday", NULL};
    static const char *const statuses[] = {"active", "draft", "archived", NULL};
    const char *s = NULL;
    int64_t n, starts = 0, ends = 0;
    bool has_s = false, has_e = false;
    jf_err err = jf_json_str(ctx, r, "name", true, JF_RULE_NAME_LEN_MAX, &s);
    const char *trigger = json_string_value(json_object_get(r, "trigger"));
    if (err == JF_OK && !one_of(trigger, triggers))
        err = jf_fail(ctx,
                      json_object_get(r, "trigger") ? JF_ERR_INVALID_FIELD : JF_ERR_MISSING_FIELD,
                      "'trigger' must be purchase, event, check_in, referral, signup or birthday.");
    /* Check-in rules take the conditions of event rules (no order). */
    *is_event = trigger && strcmp(trigger, "purchase") != 0;
    bool named = trigger && strcmp(trigger, "event") == 0;
    s = NULL;
    if (err == JF_OK)
        err = jf_json_str(ctx, r, "event", named, JF_EVENT_NAME_LEN_MAX, &s);
    if (err == JF_OK && !named && s)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'event' is only for trigger \"event\".");
    if (err == JF_OK)
        err = jf_json_int(ctx, r, "priority", false, -1000000, 1000000, &n, NULL);
    json_t *x = json_object_get(r, "exclusive"), *st = json_object_get(r, "status");
    if (err == JF_OK && x && !json_is_boolean(x))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'exclusive' must be a boolean.");
    if (err == JF_OK && st && !one_of(json_string_value(st), statuses))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'status' must be active, draft or archived.");
    s = NULL;
    if (err == JF_OK)
        err = jf_json_str(ctx, r, "group", false, JF_RULE_NAME_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_time(ctx, r, "starts_at", false, &starts, &has_s);
    if (err == JF_OK)
        err = jf_json_time(ctx, r, "ends_at", false, &ends, &has_e);
    if (err == JF_OK && has_s && has_e && starts >= ends)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'starts_at' must be before 'ends_at'.");
    return err;
}

/* The rule-level "growth": {"factor_num", "factor_den"} (of the award's
 * points) or {"fixed": N} (docs/TIERS.md). */
static jf_err growth_validate(jf_ctx *ctx, json_t *g)
{
    static const char *const fields[] = {"factor_num", "factor_den", "fixed", NULL};
    int64_t n;
    bool num = false, fixed = false;
    if (g == NULL)
        return JF_OK;
    if (!json_is_object(g))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'growth' must be {\"factor_num\", \"factor_den\"} or {\"fixed\"}.");
    jf_err err = jf_json_allow(ctx, g, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, g, "factor_num", false, 0, JF_RULE_FACTOR_MAX * 1000, &n, &num);
    if (err == JF_OK)
        err = jf_json_int(ctx, g, "factor_den", false, 1, 1000, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, g, "fixed", false, 0, JF_POINTS_MAX, &n, &fixed);
    if (err == JF_OK && num == fixed)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'growth' takes either 'factor_num' (and 'factor_den') or 'fixed'.");
    if (err == JF_OK && fixed && json_object_get(g, "factor_den"))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'growth.factor_den' goes with 'factor_num'.");
    return err;
}

jf_err jf_rule_validate(jf_ctx *ctx, json_t *r)
{
    static const char *const fields[] = {
        "name",    "description",  "trigger",         "event",       "priority", "exclusive",
        "group",   "conditions",   "effect",          "limits",      "status",   "starts_at",
        "ends_at", "pending_days", "expires_in_days", "campaign_id", "growth",   NULL};
    bool is_event = false;
    int64_t n;
    const char *s = NULL;
    if (!json_is_object(r))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "A rule is a JSON object.");
    jf_err err = jf_json_allow(ctx, r, fields);
    if (err == JF_OK)
        err = rule_head_validate(ctx, r, &is_event);
    if (err == JF_OK)
        err = jf_json_str(ctx, r, "description", false, JF_NOTE_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, r, "campaign_id", false, JF_ID_LEN_MAX - 1, &s);
    if (err == JF_OK)
        err = conditions_validate(ctx, json_object_get(r, "conditions"), is_event);
    if (err == JF_OK)
        err =
            effect_validate(ctx, json_object_get(r, "effect"),
                            json_string_value(json_object_get(r, "trigger")), has_fixed_growth(r));
    if (err == JF_OK)
        err = limits_validate(ctx, json_object_get(r, "limits"));
    if (err == JF_OK)
        err = jf_json_int(ctx, r, "pending_days", false, 0, JF_PENDING_DAYS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, r, "expires_in_days", false, 1, JF_EXPIRY_DAYS_MAX, &n, NULL);
    return err == JF_OK ? growth_validate(ctx, json_object_get(r, "growth")) : err;
}

/* An order line's fields, for its validation and its view; each is taken in
 * one pass over the line's keys (jf_json_fields), a receipt holding up to
 * JF_ORDER_LINES_MAX lines. */
enum {
    LINE_SKU,
    LINE_CATEGORY,
    LINE_LABELS,
    LINE_AMOUNT,
    LINE_QUANTITY,
    LINE_GIFT_CARD,
    LINE_SHIPPING,
    LINE_FIELDS
};
static const char *const line_fields[LINE_FIELDS + 1] = {
    "sku", "category", "labels", "amount", "quantity", "gift_card", "shipping", NULL};

/* Checks one line; its amount into *amount. */
static jf_err line_validate(jf_ctx *ctx, json_t *l, int64_t *amount)
{
    json_t *v[LINE_FIELDS];
    const char *s = NULL;
    int64_t n;
    if (!json_is_object(l))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "Each of 'order.lines' must be an object.");
    jf_err err = jf_json_pick(ctx, l, line_fields, v);
    if (err == JF_OK)
        err = jf_json_str_of(ctx, v[LINE_SKU], "sku", false, JF_SKU_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str_of(ctx, v[LINE_CATEGORY], "category", false, JF_SKU_LEN_MAX, &s);
    if (err == JF_OK)
        err = str_list_of(ctx, v[LINE_LABELS], "order.lines[].", "labels", JF_SKU_LEN_MAX);
    if (err == JF_OK)
        err = jf_json_int_of(ctx, v[LINE_AMOUNT], "amount", true, 0, JF_MONEY_MAX, amount, NULL);
    if (err == JF_OK)
        err = jf_json_int_of(ctx, v[LINE_QUANTITY], "quantity", false, 1, JF_MONEY_MAX, &n, NULL);
    json_t *g = v[LINE_GIFT_CARD], *sh = v[LINE_SHIPPING];
    if (err == JF_OK && ((g && !json_is_boolean(g)) || (sh && !json_is_boolean(sh))))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                      "'order.lines[].gift_card' and '.shipping' must be booleans.");
    return err;
}

jf_err jf_rule_order_validate(jf_ctx *ctx, json_t *o)
{
    const char *s = NULL;
    int64_t n;
    jf_err err = jf_json_str(ctx, o, "channel", false, JF_CHANNEL_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, o, "store_id", false, JF_STORE_ID_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_int(ctx, o, "paid_with_points", false, 0, JF_MONEY_MAX, &n, NULL);
    json_t *lines = json_object_get(o, "lines"), *l;
    size_t i;
    if (err != JF_OK || lines == NULL)
        return err;
    if (!json_is_array(lines) || json_array_size(lines) > JF_ORDER_LINES_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'order.lines' must be an array of at most %d.",
                       JF_ORDER_LINES_MAX);
    int64_t sum = 0;
    json_array_foreach(lines, i, l)
    {
        int64_t amount = 0;
        if ((err = line_validate(ctx, l, &amount)) != JF_OK)
            return err;
        if (!jf_points_add_checked(sum, amount, &sum))
            return jf_fail(ctx, JF_ERR_AMOUNT_OUT_OF_RANGE, "'order.lines' amounts overflow.");
    }
    json_t *amount = json_object_get(o, "amount");
    if (amount && json_integer_value(amount) != sum)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD,
                       "'order.amount' (%lld) must equal the sum of 'order.lines' amounts (%lld).",
                       (long long)json_integer_value(amount), (long long)sum);
    return JF_OK;
}

/* ---- evaluation: calendar ---- */

int64_t jf_rule_period_start_ms(const jf_tz *tz, int64_t now_ms, const char *period)
{
    jf_civil c;
    if (period == NULL || strcmp(period, "lifetime") == 0)
        return INT64_MIN;
    jf_tz_to_civil(tz, now_ms, &c);
    if (strcmp(period, "day") == 0)
        return jf_tz_day_start_ms(tz, now_ms);
    if (strcmp(period, "week") == 0)
        return jf_tz_from_civil_ms(tz, c.year, c.month, c.day - (c.wday + 6) % 7, 0, 0, 0);
    if (strcmp(period, "month") == 0)
        return jf_tz_from_civil_ms(tz, c.year, c.month, 1, 0, 0, 0);
    return jf_tz_from_civil_ms(tz, c.year, 1, 1, 0, 0, 0);
}

/* The member's birthday in year y, Feb 29 becoming Feb 28 in common years. */
static int64_t birthday_days(int y, int m, int d)
{
    int64_t days = jf_days_from_civil(y, m, d);
    int yy, mm, dd;
    jf_civil_from_days(days, &yy, &mm, &dd);
    return mm == m ? days : days - 1;
}

static bool birthday_matches(const char *kind, const char *birthday, const jf_civil *now)
{
    int y, m, d;
    if (birthday == NULL || !jf_date_parse(birthday, &y, &m, &d))
        return false;
    if (strcmp(kind, "month") == 0)
        return m == now->month;
    int64_t today = jf_days_from_civil(now->year, now->month, now->day);
    if (strcmp(kind, "day") == 0)
        return birthday_days(now->year, m, d) == today;
    int64_t monday = today - (now->wday + 6) % 7;
    for (int yy = now->year - 1; yy <= now->year + 1; yy++) {
        int64_t b = birthday_days(yy, m, d);
        if (b >= monday && b < monday + 7)
            return true;
    }
    return false;
}

static bool int_in(json_t *a, int64_t v)
{
    json_t *x;
    size_t i;
    json_array_foreach(a, i, x)
    {
        if (json_integer_value(x) == v)
            return true;
    }
    return false;
}

static bool str_in(json_t *a, const char *s)
{
    json_t *x;
    size_t i;
    if (s == NULL)
        return false;
    json_array_foreach(a, i, x)
    {
        if (strcmp(json_string_value(x), s) == 0)
            return true;
    }
    return false;
}

static bool any_in(json_t *a, json_t *values)
{
    json_t *x;
    size_t i;
    json_array_foreach(values, i, x)
    {
        if (json_is_string(x) && str_in(a, json_string_value(x)))
            return true;
    }
    return false;
}

/* ---- evaluation: the plan of a rule ---- */

static jf_rule_selector selector_of(json_t *c, const char *key)
{
    json_t *sel = json_object_get(c, key);
    return (jf_rule_selector){sel != NULL, json_object_get(sel, "skus"),
                              json_object_get(sel, "categories"), json_object_get(sel, "labels")};
}

/* The time r names at key (RFC 3339), else none. */
static int64_t plan_time(json_t *r, const char *key, int64_t none)
{
    int64_t t = 0;
    const char *s = json_string_value(json_object_get(r, key));
    return s && jf_time_parse_rfc3339(s, &t) ? t : none;
}

static void plan_conditions(json_t *c, jf_rule_plan *p)
{
    json_t *hours = json_object_get(c, "hours"), *dates = json_object_get(c, "dates");
    p->tags_any = json_object_get(c, "member_tags_any");
    p->tiers_any = json_object_get(c, "member_tiers_any");
    p->days_of_week = json_object_get(c, "days_of_week");
    p->amount_min = json_object_get(c, "amount_min");
    p->amount_max = json_object_get(c, "amount_max");
    p->min_quantity = json_object_get(c, "min_quantity");
    p->channels = json_object_get(c, "channels");
    p->stores = json_object_get(c, "stores");
    p->purchase_number = json_object_get(c, "purchase_number");
    p->nth = json_object_get(p->purchase_number, "nth");
    p->has_hours = hours != NULL;
    hhmm_parse(json_string_value(json_object_get(hours, "from")), &p->hours_from);
    hhmm_parse(json_string_value(json_object_get(hours, "to")), &p->hours_to);
    p->has_dates = dates != NULL;
    p->dates_from = json_string_value(json_object_get(dates, "from"));
    p->dates_to = json_string_value(json_object_get(dates, "to"));
    p->birthday = json_string_value(json_object_get(c, "birthday"));
    p->include = selector_of(c, "include");
    p->exclude = selector_of(c, "exclude");
}

static void plan_effect(json_t *e, jf_rule_plan *p)
{
    p->type = json_string_value(json_object_get(e, "type"));
    p->multiplier = p->type && strcmp(p->type, "multiplier") == 0;
    p->points = json_object_get(e, "points");
    p->per_amount = json_object_get(e, "per_amount");
    p->bonuses = json_object_get(e, "bonuses");
    p->factor_num = json_object_get(e, "factor_num");
    p->factor_den = json_object_get(e, "factor_den");
    p->rounding = json_string_value(json_object_get(e, "rounding"));
    p->exclude_points_paid = json_is_true(json_object_get(e, "exclude_points_paid"));
}

void jf_rule_plan_init(json_t *rule, jf_rule_plan *out)
{
    jf_rule_plan *p = out;
    memset(p, 0, sizeof(*p));
    p->conditions = json_object_get(rule, "conditions");
    p->effect = json_object_get(rule, "effect");
    json_t *limits = json_object_get(rule, "limits");
    p->starts_at = plan_time(rule, "starts_at", INT64_MIN);
    p->ends_at = plan_time(rule, "ends_at", INT64_MAX);
    p->exclusive = json_is_true(json_object_get(rule, "exclusive"));
    plan_conditions(p->conditions, p);
    plan_effect(p->effect, p);
    p->max_points_per_order = json_object_get(limits, "max_points_per_order");
    p->per_member = json_object_get(limits, "per_member");
    p->budget = json_object_get(limits, "budget");
    p->period = json_string_value(json_object_get(p->per_member, "period"));
    p->pending_days = json_object_get(rule, "pending_days");
    p->expires_in_days = json_object_get(rule, "expires_in_days");
    p->group = json_string_value(json_object_get(rule, "group"));
    p->name = json_string_value(json_object_get(rule, "name"));
    p->growth = json_object_get(rule, "growth");
    p->growth_fixed = json_object_get(p->growth, "fixed");
    p->growth_num = json_object_get(p->growth, "factor_num");
    p->growth_den = json_object_get(p->growth, "factor_den");
    p->fixed_growth = has_fixed_growth(rule);
    assert(p->type != NULL); /* validated: every rule has an effect of a type */
}

/* Days, hours, dates and birthday in the program's zone. */
static bool calendar_matches(const jf_rule_plan *p, const jf_rule_facts *f)
{
    if (!p->days_of_week && !p->has_hours && !p->has_dates && !p->birthday)
        return true;
    jf_civil now;
    jf_tz_to_civil(f->tz, f->now_ms, &now);
    if (p->days_of_week && !int_in(p->days_of_week, now.wday == 0 ? 7 : now.wday))
        return false;
    if (p->has_hours) {
        int from = p->hours_from, to = p->hours_to, m = now.hour * 60 + now.minute;
        bool in = from < to ? (m >= from && m < to) : (m >= from || m < to);
        if (!in)
            return false;
    }
    if (p->has_dates) {
        char today[16];
        snprintf(today, sizeof today, "%04d-%02d-%02d", now.year, now.month, now.day);
        if ((p->dates_from && strcmp(today, p->dates_from) < 0) ||
            (p->dates_to && strcmp(today, p->dates_to) > 0))
            return false;
    }
    return p->birthday == NULL || birthday_matches(p->birthday, f->birthday, &now);
}

/* ---- evaluation: order lines ---- */

/* One validated line's view (line_fields, in one pass over its keys). */
static jf_order_line line_view(json_t *l)
{
    json_t *v[LINE_FIELDS];
    const char *unknown = jf_json_fields(l, line_fields, v);
    assert(unknown == NULL); /* validated: a line has no other keys */
    (void)unknown;
    return (jf_order_line){
        .sku = json_string_value(v[LINE_SKU]),
        .category = json_string_value(v[LINE_CATEGORY]),
        .labels = v[LINE_LABELS],
        .amount = json_integer_value(v[LINE_AMOUNT]),
        .quantity = v[LINE_QUANTITY] ? json_integer_value(v[LINE_QUANTITY]) : 1,
        .never = json_is_true(v[LINE_GIFT_CARD]) || json_is_true(v[LINE_SHIPPING]),
    };
}

size_t jf_order_lines_view(json_t *order, jf_order_line *out)
{
    json_t *lines = json_object_get(order, "lines"), *l;
    size_t i;
    assert(json_array_size(lines) <= JF_ORDER_LINES_MAX);
    json_array_foreach(lines, i, l)
    {
        out[i] = line_view(l);
    }
    return json_array_size(lines);
}

jf_err jf_ctx_order_lines(jf_ctx *ctx, const jf_order_line **lines, size_t *n)
{
    if (!ctx->lines_made) {
        json_t *order = ctx->args ? ctx->args->order : NULL;
        size_t count = json_array_size(json_object_get(order, "lines"));
        assert(ctx->lines == NULL && count <= JF_ORDER_LINES_MAX);
        if (count > 0 && (ctx->lines = malloc(count * sizeof(*ctx->lines))) == NULL)
            return JF_ERR_NOMEM;
        ctx->lines_n = count > 0 ? jf_order_lines_view(order, ctx->lines) : 0;
        ctx->lines_made = true;
    }
    *lines = ctx->lines;
    *n = ctx->lines_n;
    return JF_OK;
}

static bool selector_matches(const jf_rule_selector *sel, const jf_order_line *l)
{
    return str_in(sel->skus, l->sku) || str_in(sel->categories, l->category) ||
           any_in(sel->labels, l->labels);
}

/* The lines a rule counts: not gift cards or shipping, and those its
 * include hits and its exclude misses. */
static bool line_eligible(const jf_rule_plan *p, const jf_order_line *l)
{
    if (l->never)
        return false;
    if (p->include.given && !selector_matches(&p->include, l))
        return false;
    return !p->exclude.given || !selector_matches(&p->exclude, l);
}

/* Eligible amount and quantity of the order for a rule's conditions c.
 * Without lines the whole order is one line of quantity 1 (and a rule
 * that includes only some lines matches nothing); an empty list of lines
 * has nothing eligible. */
static void order_eligible(const jf_rule_plan *p, const jf_rule_facts *f, int64_t *amount,
                           int64_t *quantity)
{
    *amount = 0;
    *quantity = 0;
    if (!f->has_lines) {
        if (!p->include.given) {
            *amount = f->order_amount;
            *quantity = 1;
        }
        return;
    }
    for (size_t i = 0; i < f->line_count; i++) {
        if (line_eligible(p, &f->lines[i])) {
            *amount += f->lines[i].amount;
            *quantity += f->lines[i].quantity;
        }
    }
}

static bool order_matches(const jf_rule_plan *p, const jf_rule_facts *f, int64_t amount,
                          int64_t quantity)
{
    if (p->amount_min && amount < json_integer_value(p->amount_min))
        return false;
    if (p->amount_max && amount > json_integer_value(p->amount_max))
        return false;
    if (p->min_quantity && quantity < json_integer_value(p->min_quantity))
        return false;
    if (p->channels && !str_in(p->channels, f->channel))
        return false;
    if (p->stores && !str_in(p->stores, f->store_id))
        return false;
    if ((p->include.given || p->exclude.given) && quantity == 0)
        return false;
    if (p->purchase_number) {
        int64_t want = p->nth ? json_integer_value(p->nth) - 1 : 0;
        if (f->purchases_before != want)
            return false;
    }
    return true;
}

/* Whether the rule of plan p fires now; *amount and *quantity: its
 * eligible part of the order. */
static bool rule_fires(const jf_rule_plan *p, const jf_rule_facts *f, int64_t *amount,
                       int64_t *quantity)
{
    *amount = *quantity = 0;
    if (f->now_ms < p->starts_at || f->now_ms >= p->ends_at)
        return false;
    if (f->order)
        order_eligible(p, f, amount, quantity);
    if (p->conditions == NULL)
        return true;
    if (p->tags_any && !(f->tags && any_in(p->tags_any, f->tags)))
        return false;
    if (p->tiers_any && !(f->tier && str_in(p->tiers_any, f->tier)))
        return false;
    if (!calendar_matches(p, f))
        return false;
    return f->order == NULL || order_matches(p, f, *amount, *quantity);
}

/* ---- evaluation: effects and limits ---- */

static bool apply_rounded(const char *rounding, int64_t amount, int64_t num, int64_t den,
                          int64_t *out)
{
    if (rounding && strcmp(rounding, "ceil") == 0)
        return jf_rate_apply_ceil(amount, num, den, out);
    if (rounding && strcmp(rounding, "round") == 0)
        return jf_rate_apply_round(amount, num, den, out);
    return jf_rate_apply_floor(amount, num, den, out);
}

/* Appends n bytes of s to out (capacity cap, *used bytes so far), as far as
 * they fit before the terminator's byte. */
static void explain_put(char *out, size_t cap, size_t *used, const char *s, size_t n)
{
    size_t room = cap - 1 - *used;
    n = n < room ? n : room;
    memcpy(out + *used, s, n);
    *used += n;
}

/* Whether fmt's only conversions are %s and %lld. */
static bool explain_plain(const char *fmt)
{
    for (const char *p = strchr(fmt, '%'); p; p = strchr(p + 1, '%'))
        if (strncmp(p, "%s", 2) != 0 && strncmp(p, "%lld", 4) != 0)
            return false;
    return true;
}

/* Appends a sentence to an award's explanation, truncating at the limit as
 * vsnprintf does.  The explanations use only %s and %lld, so they are
 * written here: vsnprintf's general machinery cost about 400 instructions a
 * call, some fifteen calls an order earn.  A format with any other
 * conversion still goes to vsnprintf. */
static void explain(jf_award *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void explain(jf_award *a, const char *fmt, ...)
{
    char *out = a->explanation, num[JF_I64_DEC_MAX];
    size_t cap = sizeof a->explanation, used = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    if (!explain_plain(fmt)) {
        if (used < cap - 1)
            vsnprintf(out + used, cap - used, fmt, ap);
        va_end(ap);
        return;
    }
    for (const char *f = fmt; *f && used < cap - 1;) {
        const char *pct = strchr(f, '%');
        size_t lit = pct ? (size_t)(pct - f) : strlen(f);
        explain_put(out, cap, &used, f, lit);
        f += lit;
        if (pct == NULL)
            break;
        if (strncmp(pct, "%s", 2) == 0) {
            const char *s = va_arg(ap, const char *);
            s = s ? s : "(null)";
            explain_put(out, cap, &used, s, strlen(s));
            f += 2;
        } else if (strncmp(pct, "%lld", 4) == 0) {
            long long v = va_arg(ap, long long);
            explain_put(out, cap, &used, num, jf_i64_dec(v, num));
            f += 4;
        }
    }
    out[used] = '\0';
    va_end(ap);
}

/* Points of a check-in: the effect's points plus the bonus of the streak's
 * day (the day within the cycle when cycle_days is set). */
static bool checkin_points(json_t *e, int64_t streak, jf_award *a)
{
    json_t *cycle = json_object_get(e, "cycle_days"), *b;
    int64_t day = cycle ? (streak - 1) % json_integer_value(cycle) + 1 : streak;
    int64_t pts = json_integer_value(json_object_get(e, "points")), bonus = 0;
    size_t i;
    json_array_foreach(json_object_get(e, "streak_bonus"), i, b)
    {
        if (json_integer_value(json_object_get(b, "day")) == day &&
            !jf_points_add_checked(bonus, json_integer_value(json_object_get(b, "points")), &bonus))
            return false;
    }
    explain(a, "check-in %lld points, streak day %lld bonus %lld", (long long)pts,
            (long long)streak, (long long)bonus);
    return jf_points_add_checked(pts, bonus, &a->points);
}

/* Whether a bonus's sku is a line's (both validated strings; a line may
 * have none). */
static bool same_sku(const char *bonus, const char *line)
{
    return bonus && line && strcmp(bonus, line) == 0;
}

/* Points of a rate, fixed, sku_bonus or check_in effect; false on overflow. */
static bool effect_points(const jf_rule_plan *p, const jf_rule_facts *f, int64_t amount,
                          jf_award *a)
{
    json_t *e = p->effect;
    const char *type = p->type;
    int64_t pts = json_integer_value(p->points);
    if (strcmp(type, "fixed") == 0) {
        a->points = pts;
        explain(a, "fixed %lld points", (long long)pts);
        return true;
    }
    if (strcmp(type, "check_in") == 0)
        return checkin_points(e, f->streak, a);
    if (strcmp(type, "referral") == 0) {
        const char *on = json_string_value(json_object_get(e, "on"));
        bool due = f->referral_on && strcmp(on, f->referral_on) == 0;
        a->points = due ? json_integer_value(json_object_get(e, f->referrer ? "referrer_points"
                                                                            : "referee_points"))
                        : 0;
        explain(a, "referral at %s, %s reward %lld points", on,
                f->referrer ? "referrer" : "referee", (long long)a->points);
        return true;
    }
    if (strcmp(type, "rate") == 0) {
        int64_t per = json_integer_value(p->per_amount), base = amount;
        const char *rounding = p->rounding;
        if (p->exclude_points_paid)
            base -= jf_min_i64(base, f->paid_with_points);
        a->is_rate = true;
        explain(a, "%lld point%s per %lld of eligible amount %lld (%s)", (long long)pts,
                pts == 1 ? "" : "s", (long long)per, (long long)base,
                rounding ? rounding : "floor");
        return apply_rounded(rounding, base, pts, per, &a->points);
    }
    json_t *b;
    size_t i;
    int64_t sum = 0;
    json_array_foreach(p->bonuses, i, b)
    {
        const char *sku = json_string_value(json_object_get(b, "sku"));
        int64_t per = json_integer_value(json_object_get(b, "points"));
        for (size_t j = 0; j < f->line_count; j++) {
            const jf_order_line *l = &f->lines[j];
            int64_t add = 0;
            if (!line_eligible(p, l) || !same_sku(sku, l->sku))
                continue;
            if (__builtin_mul_overflow(per, l->quantity, &add) ||
                !jf_points_add_checked(sum, add, &sum))
                return false;
        }
    }
    a->points = sum;
    explain(a, "SKU bonuses per unit");
    return true;
}

/* Clips a->points to the room left under max (given used); notes why. */
static void clip(jf_award *a, json_t *cap, int64_t used_points, int64_t used_awards,
                 const char *what)
{
    json_t *mp = json_object_get(cap, "max_points"), *ma = json_object_get(cap, "max_awards");
    if (cap == NULL || a->points == 0)
        return;
    if (ma && used_awards >= json_integer_value(ma)) {
        explain(a, "; %s reached (%lld of %lld awards), so 0 points", what, (long long)used_awards,
                (long long)json_integer_value(ma));
        a->points = 0;
        return;
    }
    int64_t room = mp ? json_integer_value(mp) - used_points : a->points;
    if (room < a->points) {
        room = room < 0 ? 0 : room;
        explain(a, "; capped from %lld to %lld by %s (%lld of %lld points used)",
                (long long)a->points, (long long)room, what, (long long)used_points,
                (long long)json_integer_value(mp));
        a->points = room;
    }
}

static void apply_limits(const jf_rule_ref *ref, jf_award *a)
{
    const jf_rule_plan *p = &ref->plan;
    json_t *pm = p->per_member, *per_order = p->max_points_per_order;
    if (per_order && a->points > json_integer_value(per_order)) {
        explain(a, "; capped from %lld to %lld by the rule's max_points_per_order",
                (long long)a->points, (long long)json_integer_value(per_order));
        a->points = json_integer_value(per_order);
    }
    char what[64] = "";
    if (pm)
        snprintf(what, sizeof what, "the per-member %s limit", p->period);
    clip(a, pm, ref->used.member_points, ref->used.member_awards, what);
    clip(a, p->budget, ref->used.budget_points, ref->used.budget_awards, "the rule's budget");
    if (ref->campaign_used == NULL)
        return;
    /* The campaign's budget is shared by its rules: what this award takes is
     * counted at once, so a later rule of the same evaluation sees it.  An
     * award cut afterwards (groups, the order cap) stays counted here, which
     * can only under-spend the budget, never exceed it. */
    clip(a, ref->campaign_budget, ref->campaign_used->budget_points,
         ref->campaign_used->budget_awards, "the campaign's budget");
    if (a->points > 0) {
        ref->campaign_used->budget_points += a->points;
        ref->campaign_used->budget_awards++;
    }
}

jf_award *jf_awards_new(void)
{
    return malloc(JF_AWARDS_MAX * sizeof(jf_award));
}

static void award_init(jf_award *a, const jf_rule_ref *ref)
{
    const jf_rule_plan *p = &ref->plan;
    memset(a, 0, sizeof(*a));
    jf_str_copy(a->rule_id, sizeof a->rule_id, ref->id);
    a->rule_version = ref->version;
    a->pending_days = p->pending_days ? json_integer_value(p->pending_days) : -1;
    a->expires_in_days = p->expires_in_days ? json_integer_value(p->expires_in_days) : -1;
    a->group = p->group;
    a->per_member = p->per_member != NULL;
    explain(a, "Rule '%s' v%lld: ", p->name, (long long)ref->version);
}

/* Within each best-of group, among awards of one kind (multipliers or
 * not), only the one with most points counts. */
static void resolve_groups(jf_award *aw, size_t n, bool multipliers)
{
    for (size_t i = 0; i < n; i++) {
        if (aw[i].group == NULL || aw[i].is_multiplier != multipliers)
            continue;
        for (size_t j = i + 1; j < n; j++) {
            if (aw[j].group == NULL || aw[j].is_multiplier != multipliers ||
                strcmp(aw[i].group, aw[j].group) != 0 || aw[i].points == 0)
                continue;
            size_t lose = aw[j].points > aw[i].points ? i : j;
            explain(&aw[lose], "; not counted: best-of group '%s' keeps the larger award",
                    aw[i].group);
            aw[lose].points = 0;
        }
    }
}

/* Step 3: multipliers on the counted rate awards. */
static bool multipliers_apply(const jf_rule_ref *rules, const size_t *ref_of, jf_award *aw,
                              size_t n)
{
    int64_t base = 0;
    for (size_t i = 0; i < n; i++)
        if (aw[i].is_rate && !jf_points_add_checked(base, aw[i].points, &base))
            return false;
    for (size_t i = 0; i < n; i++) {
        if (!aw[i].is_multiplier)
            continue;
        const jf_rule_plan *p = &rules[ref_of[i]].plan;
        int64_t num = json_integer_value(p->factor_num);
        int64_t den = p->factor_den ? json_integer_value(p->factor_den) : 1;
        const char *rounding = p->rounding;
        explain(&aw[i], "x%lld/%lld of the base award %lld adds", (long long)num, (long long)den,
                (long long)base);
        if (!apply_rounded(rounding, base, num - den, den, &aw[i].points))
            return false;
        aw[i].raw_points = aw[i].points;
        explain(&aw[i], " %lld", (long long)aw[i].points);
        apply_limits(&rules[ref_of[i]], &aw[i]);
    }
    resolve_groups(aw, n, true);
    return true;
}

/* Step 4: the program's cap on one order, in evaluation order. */
static bool order_cap_apply(jf_award *aw, size_t n, int64_t cap)
{
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (cap >= 0 && total + aw[i].points > cap) {
            int64_t fit = cap - total;
            explain(&aw[i], "; capped from %lld to %lld by the program's max_points_per_order %lld",
                    (long long)aw[i].points, (long long)fit, (long long)cap);
            aw[i].points = fit;
        }
        if (!jf_points_add_checked(total, aw[i].points, &total))
            return false;
    }
    return true;
}

/* Growth an award gives: the rule's "growth", else its points for a
 * purchase rule and nothing for other triggers; 0 on overflow (the
 * factor is bounded, so only absurd points overflow). */
static int64_t award_growth(const jf_rule_plan *p, const jf_rule_facts *f, const jf_award *a)
{
    int64_t out = 0;
    if (p->growth == NULL)
        return f->order ? a->points : 0;
    if (p->growth_fixed)
        return json_integer_value(p->growth_fixed);
    if (!jf_rate_apply_floor(a->points, json_integer_value(p->growth_num),
                             p->growth_den ? json_integer_value(p->growth_den) : 1, &out))
        return 0;
    return out;
}

static bool has_fixed_growth(json_t *rule)
{
    json_t *g = json_object_get(json_object_get(rule, "growth"), "fixed");
    return g && json_integer_value(g) > 0;
}

/* One tier multiplier award of (num/den - 1) times base. */
static bool tier_award(const struct jf_tier_bonus *tb, const char *suffix, int64_t num, int64_t den,
                       int64_t base, jf_award *a)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->rule_id, sizeof a->rule_id, "tier:%s%s", tb->code, suffix);
    a->rule_version = tb->version;
    a->pending_days = a->expires_in_days = -1;
    if (!jf_rate_apply_floor(base, num - den, den, &a->points))
        return false;
    a->raw_points = a->points;
    explain(a, "Tier '%s'%s: x%lld/%lld of the base award %lld adds %lld", tb->code,
            suffix[0] ? " birthday" : "", (long long)num, (long long)den, (long long)base,
            (long long)a->points);
    return true;
}

bool jf_rules_tier_awards(const jf_rule_facts *f, jf_award *aw, size_t *k)
{
    const struct jf_tier_bonus *tb = f->tier_bonus;
    int64_t base = 0;
    if (tb == NULL || !tb->code[0])
        return true;
    for (size_t i = 0; i < *k; i++)
        if (aw[i].is_rate && !jf_points_add_checked(base, aw[i].points, &base))
            return false;
    if (base > 0 && tb->mult_num > tb->mult_den) {
        if (!tier_award(tb, "", tb->mult_num, tb->mult_den, base, &aw[*k]))
            return false;
        (*k)++;
    }
    if (base > 0 && tb->bday_num > tb->bday_den &&
        jf_rule_birthday_today(f->tz, f->now_ms, f->birthday)) {
        if (!tier_award(tb, ":birthday", tb->bday_num, tb->bday_den, base, &aw[*k]))
            return false;
        (*k)++;
    }
    return true;
}

bool jf_rules_base_awards(const jf_rule_facts *f, int64_t points, jf_award *aw, size_t *count)
{
    memset(&aw[0], 0, sizeof(aw[0]));
    snprintf(aw[0].rule_id, sizeof aw[0].rule_id, "program:base_rate");
    aw[0].pending_days = aw[0].expires_in_days = -1;
    aw[0].points = aw[0].raw_points = points;
    aw[0].is_rate = true;
    explain(&aw[0], "Program base rate: %lld points", (long long)points);
    size_t k = 1;
    if (!jf_rules_tier_awards(f, aw, &k) || !order_cap_apply(aw, k, f->order_cap))
        return false;
    aw[0].growth = aw[0].points;
    for (size_t i = 0; i < k; i++)
        explain(&aw[i], " => %lld points%s.", (long long)aw[i].points,
                i == 0 ? " and as much growth" : "");
    *count = k;
    return true;
}

jf_err jf_rules_evaluate(jf_ctx *ctx, const jf_rule_ref *rules, size_t n,
                         const jf_rule_facts *given, jf_award *aw, size_t *count)
{
    size_t k = 0, ref_of[JF_AWARDS_MAX];
    if (n > JF_RULES_ACTIVE_MAX)
        return jf_fail(ctx, JF_ERR_INTERNAL, "More than %d live rules.", JF_RULES_ACTIVE_MAX);
    jf_order_line view[JF_ORDER_LINES_MAX]; /* 24 KB, filled as far as the lines go */
    jf_rule_facts facts = *given;
    const jf_rule_facts *f = &facts;
    if (facts.lines == NULL) {
        facts.lines = view;
        facts.line_count = jf_order_lines_view(facts.order, view);
    }
    facts.has_lines = json_object_get(facts.order, "lines") != NULL;
    facts.order_amount = json_integer_value(json_object_get(facts.order, "amount"));
    facts.paid_with_points = json_integer_value(json_object_get(facts.order, "paid_with_points"));
    for (size_t i = 0; i < n; i++) {
        int64_t amount, quantity;
        const jf_rule_plan *p = &rules[i].plan;
        if (!rule_fires(p, f, &amount, &quantity))
            continue;
        award_init(&aw[k], &rules[i]);
        ref_of[k] = i;
        aw[k].is_multiplier = p->multiplier;
        if (!aw[k].is_multiplier) {
            if (!effect_points(p, f, amount, &aw[k]))
                return jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "Rule '%s' overflows.", rules[i].id);
            aw[k].raw_points = aw[k].points;
            if (aw[k].points == 0 && !p->fixed_growth)
                continue; /* nothing to award: as if it had not fired */
            apply_limits(&rules[i], &aw[k]);
        }
        k++;
        if (p->exclusive)
            break;
    }
    resolve_groups(aw, k, false);
    size_t ruled = k;
    if (!multipliers_apply(rules, ref_of, aw, k) ||
        (f->order && !jf_rules_tier_awards(f, aw, &k)) || !order_cap_apply(aw, k, f->order_cap))
        return jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The awards exceed the points range.");
    size_t kept = 0;
    for (size_t i = 0; i < k; i++) {
        aw[i].growth = i < ruled ? award_growth(&rules[ref_of[i]].plan, f, &aw[i]) : 0;
        if (aw[i].raw_points == 0 && aw[i].growth == 0)
            continue;
        explain(&aw[i], " => %lld points", (long long)aw[i].points);
        if (aw[i].growth > 0)
            explain(&aw[i], ", %lld growth", (long long)aw[i].growth);
        explain(&aw[i], ".");
        aw[i].group = NULL;
        if (kept != i)
            aw[kept] = aw[i];
        kept++;
    }
    assert(kept <= k && k <= n + 2);
    *count = kept;
    return JF_OK;
}

/* ---- per-line attribution (order refunds) ---- */

void jf_rule_line_weights(const jf_rule_plan *p, const jf_order_line *lines, size_t n, int64_t *w)
{
    json_t *b;
    size_t j;
    for (size_t i = 0; i < n; i++) {
        const jf_order_line *l = &lines[i];
        w[i] = 0;
        if (p != NULL && !line_eligible(p, l))
            continue;
        if (p == NULL || p->type == NULL || strcmp(p->type, "sku_bonus") != 0) {
            w[i] = l->amount;
            continue;
        }
        json_array_foreach(p->bonuses, j, b)
        {
            int64_t add = 0;
            if (same_sku(json_string_value(json_object_get(b, "sku")), l->sku) &&
                !__builtin_mul_overflow(json_integer_value(json_object_get(b, "points")),
                                        l->quantity, &add))
                w[i] = add > JF_POINTS_MAX - w[i] ? JF_POINTS_MAX : w[i] + add;
        }
    }
}

bool jf_rule_birthday_today(const jf_tz *tz, int64_t now_ms, const char *birthday)
{
    jf_civil now;
    jf_tz_to_civil(tz, now_ms, &now);
    return birthday_matches("day", birthday, &now);
}
