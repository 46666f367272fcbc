/*
 * Program settings: the base earn rate, expiry policy, pending days, debt
 * floor, time zone and hold lifetime of one tenant.  Loaded at the start of
 * every request (one primary-key read) so a PATCH takes effect at once.
 */
#include <string.h>

#include "core.h"
#include "tz.h"

jf_err jf_program_insert_default(jf_db *db, int64_t tenant, const char *name, int64_t now)
{
    return jf_db_run(db,
                     "INSERT INTO programs(tenant_id, name, currency, earn_points,"
                     " earn_per_amount, expiry_policy, expiry_n, pending_days, debt_floor,"
                     " timezone, hold_ttl_s, operator_adjust_max, updated_at)"
                     " VALUES(?, ?, 'CNY', 1, 100, 'never', 0, 0, 0, 'Asia/Shanghai', ?, 10000, ?)",
                     "IsII", tenant, name, (int64_t)JF_HOLD_TTL_SECONDS_DEFAULT, now);
}

jf_err jf_program_load(jf_db *db, int64_t tenant, jf_program *p)
{
    sqlite3_stmt *st = jf_db_query(
        db,
        "SELECT t.public_id, p.name, p.currency, p.earn_points, p.earn_per_amount,"
        " p.expiry_policy, p.expiry_n, p.pending_days, p.debt_floor, p.timezone, p.hold_ttl_s,"
        " p.operator_adjust_max, p.updated_at, COALESCE(p.max_points_per_order, -1)"
        " FROM programs p JOIN tenants t ON t.id = p.tenant_id"
        " WHERE p.tenant_id = ?",
        "I", tenant);
    if (st == NULL)
        return JF_ERR_IO;
    int rc = jf_db_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? JF_ERR_UNAUTHORIZED : JF_ERR_IO;
    }
    memset(p, 0, sizeof(*p));
    jf_str_copy(p->public_id, sizeof(p->public_id), jf_db_text(st, 0));
    jf_str_copy(p->name, sizeof(p->name), jf_db_text(st, 1));
    jf_str_copy(p->currency, sizeof(p->currency), jf_db_text(st, 2));
    p->earn_points = sqlite3_column_int64(st, 3);
    p->earn_per_amount = sqlite3_column_int64(st, 4);
    jf_str_copy(p->expiry_policy, sizeof(p->expiry_policy), jf_db_text(st, 5));
    p->expiry_n = sqlite3_column_int64(st, 6);
    p->pending_days = sqlite3_column_int64(st, 7);
    p->debt_floor = sqlite3_column_int64(st, 8);
    jf_str_copy(p->timezone, sizeof(p->timezone), jf_db_text(st, 9));
    p->hold_ttl_s = sqlite3_column_int64(st, 10);
    p->operator_adjust_max = sqlite3_column_int64(st, 11);
    p->updated_at = sqlite3_column_int64(st, 12);
    p->max_points_per_order = sqlite3_column_int64(st, 13);
    sqlite3_reset(st);
    return JF_OK;
}

json_t *jf_program_json(const jf_program *p)
{
    json_t *expiry = json_pack("{ss}", "policy", p->expiry_policy);
    if (strcmp(p->expiry_policy, "days_after_earn") == 0)
        json_object_set_new(expiry, "days", json_integer(p->expiry_n));
    else if (strcmp(p->expiry_policy, "never") != 0)
        json_object_set_new(expiry, "months", json_integer(p->expiry_n));
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(p->public_id));
    jf_json_set(o, "name", json_string(p->name));
    jf_json_set(o, "currency", json_string(p->currency));
    jf_json_set(o, "earn_rate",
                json_pack("{sIsI}", "points", (json_int_t)p->earn_points, "per_amount",
                          (json_int_t)p->earn_per_amount));
    jf_json_set(o, "expiry", expiry);
    jf_json_set(o, "pending_days", json_integer(p->pending_days));
    jf_json_set(o, "debt_floor", json_integer(p->debt_floor));
    jf_json_set(o, "timezone", json_string(p->timezone));
    jf_json_set(o, "hold_ttl_seconds", json_integer(p->hold_ttl_s));
    jf_json_set(o, "operator_adjust_max", json_integer(p->operator_adjust_max));
    jf_json_set(o, "max_points_per_order",
                p->max_points_per_order < 0 ? json_null() : json_integer(p->max_points_per_order));
    jf_json_set(o, "updated_at", jf_json_time_value(p->updated_at));
    return o;
}

/* The instant a lot earned at earn_ms expires under the policy; -1 = never. */
int64_t jf_program_expiry_ms(const jf_program *p, int64_t earn_ms)
{
    if (strcmp(p->expiry_policy, "days_after_earn") == 0)
        return earn_ms + p->expiry_n * 86400000;
    jf_period period;
    if (strcmp(p->expiry_policy, "end_of_month") == 0)
        period = JF_PERIOD_MONTH;
    else if (strcmp(p->expiry_policy, "end_of_quarter") == 0)
        period = JF_PERIOD_QUARTER;
    else if (strcmp(p->expiry_policy, "end_of_year") == 0)
        period = JF_PERIOD_YEAR;
    else
        return -1;
    const jf_tz *tz = NULL;
    if (jf_tz_get(p->timezone, &tz) != JF_OK && jf_tz_get("UTC", &tz) != JF_OK)
        return -1;
    return jf_tz_period_end_ms(tz, earn_ms, (int)p->expiry_n, period);
}

static jf_err program_get(jf_ctx *ctx)
{
    json_decref(ctx->out);
    ctx->out = jf_program_json(&ctx->prog);
    return JF_OK;
}

static jf_err expiry_validate(jf_ctx *ctx, json_t *e)
{
    static const char *const fields[] = {"policy", "days", "months", NULL};
    static const char *const policies[] = {"never",          "days_after_earn", "end_of_month",
                                           "end_of_quarter", "end_of_year",     NULL};
    if (!json_is_object(e))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'expiry' must be an object.");
    const char *policy = NULL;
    int64_t n = 0;
    jf_err err = jf_json_allow(ctx, e, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, e, "policy", true, 24, &policy);
    if (err != JF_OK)
        return err;
    bool known = false;
    for (const char *const *p = policies; *p; p++)
        known = known || strcmp(*p, policy) == 0;
    if (!known)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "Unknown expiry policy '%s'.", policy);
    bool days = strcmp(policy, "days_after_earn") == 0, never = strcmp(policy, "never") == 0;
    if (json_object_get(e, days ? "months" : "days") || (never && json_object_get(e, "months")))
        return jf_fail(ctx, JF_ERR_UNKNOWN_FIELD, "This field does not apply to policy '%s'.",
                       policy);
    if (days)
        return jf_json_int(ctx, e, "days", true, 1, JF_EXPIRY_DAYS_MAX, &n, NULL);
    if (!never)
        return jf_json_int(ctx, e, "months", true, 0, JF_EXPIRY_MONTHS_MAX, &n, NULL);
    return JF_OK;
}

static jf_err earn_rate_validate(jf_ctx *ctx, json_t *r)
{
    static const char *const fields[] = {"points", "per_amount", NULL};
    int64_t n;
    if (!json_is_object(r))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'earn_rate' must be an object.");
    jf_err err = jf_json_allow(ctx, r, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, r, "points", true, 0, JF_POINTS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, r, "per_amount", true, 1, JF_POINTS_MAX, &n, NULL);
    return err;
}

static jf_err program_update_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"name",
                                         "currency",
                                         "earn_rate",
                                         "expiry",
                                         "pending_days",
                                         "debt_floor",
                                         "timezone",
                                         "hold_ttl_seconds",
                                         "operator_adjust_max",
                                         "max_points_per_order",
                                         NULL};
    json_t *b = ctx->body;
    const char *s = NULL;
    int64_t n;
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, b, "name", false, JF_NAME_LEN_MAX, &s);
    s = NULL;
    if (err == JF_OK && (err = jf_json_str(ctx, b, "currency", false, 3, &s)) == JF_OK && s &&
        (strlen(s) != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || s[2] < 'A' ||
         s[2] > 'Z'))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'currency' must be an ISO 4217 code.");
    if (err == JF_OK && json_object_get(b, "earn_rate"))
        err = earn_rate_validate(ctx, json_object_get(b, "earn_rate"));
    if (err == JF_OK && json_object_get(b, "expiry"))
        err = expiry_validate(ctx, json_object_get(b, "expiry"));
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "pending_days", false, 0, JF_PENDING_DAYS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "debt_floor", false, 0, JF_POINTS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "hold_ttl_seconds", false, 1, JF_HOLD_TTL_SECONDS_MAX, &n, NULL);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "operator_adjust_max", false, 1, JF_POINTS_MAX, &n, NULL);
    json_t *cap = json_object_get(b, "max_points_per_order");
    if (err == JF_OK && cap && !json_is_null(cap))
        err = jf_json_int(ctx, b, "max_points_per_order", false, 0, JF_POINTS_MAX, &n, NULL);
    s = NULL;
    if (err == JF_OK &&
        (err = jf_json_str(ctx, b, "timezone", false, JF_TIMEZONE_LEN_MAX, &s)) == JF_OK && s) {
        const jf_tz *tz;
        if (jf_tz_get(s, &tz) != JF_OK)
            err = jf_fail(ctx, JF_ERR_UNKNOWN_TIMEZONE, "Unknown time zone '%s'.", s);
    }
    return err;
}

static void program_merge(jf_program *p, json_t *b)
{
    json_t *v;
    if ((v = json_object_get(b, "name")))
        jf_str_copy(p->name, sizeof(p->name), json_string_value(v));
    if ((v = json_object_get(b, "currency")))
        jf_str_copy(p->currency, sizeof(p->currency), json_string_value(v));
    if ((v = json_object_get(b, "earn_rate"))) {
        p->earn_points = json_integer_value(json_object_get(v, "points"));
        p->earn_per_amount = json_integer_value(json_object_get(v, "per_amount"));
    }
    if ((v = json_object_get(b, "expiry"))) {
        snprintf(p->expiry_policy, sizeof(p->expiry_policy), "%s",
                 json_string_value(json_object_get(v, "policy")));
        json_t *n = json_object_get(v, "days");
        n = n ? n : json_object_get(v, "months");
        p->expiry_n = n ? json_integer_value(n) : 0;
    }
    if ((v = json_object_get(b, "pending_days")))
        p->pending_days = json_integer_value(v);
    if ((v = json_object_get(b, "debt_floor")))
        p->debt_floor = json_integer_value(v);
    if ((v = json_object_get(b, "timezone")))
        jf_str_copy(p->timezone, sizeof(p->timezone), json_string_value(v));
    if ((v = json_object_get(b, "hold_ttl_seconds")))
        p->hold_ttl_s = json_integer_value(v);
    if ((v = json_object_get(b, "operator_adjust_max")))
        p->operator_adjust_max = json_integer_value(v);
    if ((v = json_object_get(b, "max_points_per_order")))
        p->max_points_per_order = json_is_null(v) ? -1 : json_integer_value(v);
}

static jf_err program_update(jf_ctx *ctx)
{
    jf_program *p = &ctx->prog;
    program_merge(p, ctx->body);
    p->updated_at = ctx->now_ms;
    jf_err err = jf_db_run(
        ctx->db,
        "UPDATE programs SET name=?, currency=?, earn_points=?, earn_per_amount=?,"
        " expiry_policy=?, expiry_n=?, pending_days=?, debt_floor=?, timezone=?, hold_ttl_s=?,"
        " operator_adjust_max=?, updated_at=?, max_points_per_order=NULLIF(?, -1)"
        " WHERE tenant_id=?",
        "ssIIsIIIsIIIII", p->name, p->currency, p->earn_points, p->earn_per_amount,
        p->expiry_policy, p->expiry_n, p->pending_days, p->debt_floor, p->timezone, p->hold_ttl_s,
        p->operator_adjust_max, p->updated_at, p->max_points_per_order, ctx->auth->tenant);
    if (err != JF_OK)
        return err;
    json_decref(ctx->out);
    ctx->out = jf_program_json(p);
    return JF_OK;
}

const jf_op_impl jf_op_program_get = {NULL, program_get};
const jf_op_impl jf_op_program_update = {program_update_validate, program_update};
