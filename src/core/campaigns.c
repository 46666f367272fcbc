/*
 * Campaigns (docs/RULES.md, Campaigns): named sets of rules with a window,
 * a budget and a status.  A rule joins a campaign with "campaign_id"; it is
 * live only while its campaign is active and inside [starts_at, ends_at)
 * (or, in a dry run with include_drafts, while the campaign is a draft),
 * and the campaign's budget caps what all its rules award together,
 * counted on the writer like every limit (rules_db.c loads the usage,
 * rules.c clips).  A campaign is a mutable head row: its status moves
 * draft -> active <-> paused -> ended, and ended is final.
 */
#include <string.h>

#include "campaigns.h"
#include "ledger.h"

static const char *const statuses[] = {"draft", "active", "paused", "ended", NULL};

static bool status_known(const char *s)
{
    for (const char *const *p = statuses; s && *p; p++)
        if (strcmp(*p, s) == 0)
            return true;
    return false;
}

static jf_err budget_validate(jf_ctx *ctx, json_t *b)
{
    static const char *const fields[] = {"max_points", "max_awards", NULL};
    int64_t n;
    bool has_p = false, has_a = false;
    if (b == NULL || json_is_null(b))
        return JF_OK;
    if (!json_is_object(b))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'budget' must be an object.");
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "max_points", false, 0, JF_POINTS_MAX, &n, &has_p);
    if (err == JF_OK)
        err = jf_json_int(ctx, b, "max_awards", false, 0, JF_POINTS_MAX, &n, &has_a);
    if (err == JF_OK && !has_p && !has_a)
        err = jf_fail(ctx, JF_ERR_MISSING_FIELD, "'budget' needs max_points or max_awards.");
    return err;
}

static jf_err campaign_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"name",    "description", "status", "starts_at",
                                         "ends_at", "budget",      NULL};
    json_t *b = ctx->body, *st = json_object_get(b, "status");
    const char *s = NULL;
    int64_t starts = 0, ends = 0;
    bool has_s = false, has_e = false;
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err =
            jf_json_str(ctx, b, "name", ctx->op == JF_OP_CAMPAIGN_CREATE, JF_RULE_NAME_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, b, "description", false, JF_NOTE_LEN_MAX, &s);
    if (err == JF_OK && st && !status_known(json_string_value(st)))
        err =
            jf_fail(ctx, JF_ERR_INVALID_FIELD, "'status' must be draft, active, paused or ended.");
    if (err == JF_OK)
        err = jf_json_time(ctx, b, "starts_at", false, &starts, &has_s);
    if (err == JF_OK)
        err = jf_json_time(ctx, b, "ends_at", false, &ends, &has_e);
    if (err == JF_OK && has_s && has_e && starts >= ends)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'starts_at' must be before 'ends_at'.");
    if (err == JF_OK)
        err = budget_validate(ctx, json_object_get(b, "budget"));
    return err;
}

#define CAMPAIGN_COLUMNS                                                                           \
    "SELECT id, name, description, status, starts_at, ends_at, budget_points, budget_awards,"      \
    " created_at, updated_at, (SELECT COALESCE(SUM(u.points), 0) FROM rules r JOIN rule_usage u"   \
    " ON u.tenant_id = r.tenant_id AND u.rule_id = r.id WHERE r.tenant_id = c.tenant_id AND"       \
    " r.campaign_id = c.id), (SELECT COALESCE(SUM(u.awards), 0) FROM rules r JOIN rule_usage u"    \
    " ON u.tenant_id = r.tenant_id AND u.rule_id = r.id WHERE r.tenant_id = c.tenant_id AND"       \
    " r.campaign_id = c.id) FROM campaigns c"

static json_t *int_or_null(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL
               ? json_null()
               : json_integer(sqlite3_column_int64(st, col));
}

static json_t *campaign_row(sqlite3_stmt *st)
{
    json_t *o = json_object(), *budget = json_object();
    jf_json_set(o, "id", json_string(jf_db_text(st, 0)));
    jf_json_set(o, "name", json_string(jf_db_text(st, 1)));
    jf_json_set(o, "description", jf_json_text(jf_db_text(st, 2)));
    jf_json_set(o, "status", json_string(jf_db_text(st, 3)));
    jf_json_set(o, "starts_at",
                sqlite3_column_type(st, 4) == SQLITE_NULL
                    ? json_null()
                    : jf_json_time_value(sqlite3_column_int64(st, 4)));
    jf_json_set(o, "ends_at",
                sqlite3_column_type(st, 5) == SQLITE_NULL
                    ? json_null()
                    : jf_json_time_value(sqlite3_column_int64(st, 5)));
    jf_json_set(budget, "max_points", int_or_null(st, 6));
    jf_json_set(budget, "max_awards", int_or_null(st, 7));
    jf_json_set(o, "budget", budget);
    jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 8)));
    jf_json_set(o, "updated_at", jf_json_time_value(sqlite3_column_int64(st, 9)));
    jf_json_set(o, "usage",
                json_pack("{sIsI}", "points", (json_int_t)sqlite3_column_int64(st, 10), "awards",
                          (json_int_t)sqlite3_column_int64(st, 11)));
    return o;
}

/* One campaign (with its rules) or, with id NULL, all of them. */
static jf_err campaigns_json(jf_ctx *ctx, const char *id, json_t **out)
{
    jf_err err = jf_hot_usage_flush(ctx); /* the usage sums see the batch's awards */
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   CAMPAIGN_COLUMNS " WHERE c.tenant_id=?1 AND (?2 IS NULL OR"
                                                    " c.id=?2) ORDER BY c.created_at, c.id",
                                   "Is", ctx->auth->tenant, id);
    if (st == NULL)
        return JF_ERR_IO;
    json_t *arr = json_array();
    while (jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(arr, campaign_row(st));
    sqlite3_reset(st);
    for (size_t i = 0; id && i < json_array_size(arr); i++) {
        json_t *rules = json_array();
        st = jf_db_query(ctx->db,
                         "SELECT id FROM rules WHERE tenant_id=? AND campaign_id=? ORDER BY id",
                         "Is", ctx->auth->tenant, id);
        while (st && jf_db_step(st) == SQLITE_ROW)
            json_array_append_new(rules, json_string(jf_db_text(st, 0)));
        if (st)
            sqlite3_reset(st);
        json_object_set_new(json_array_get(arr, i), "rules", rules);
    }
    *out = arr;
    return JF_OK;
}

static jf_err campaign_reply(jf_ctx *ctx, const char *id)
{
    json_t *arr = NULL;
    jf_err err = campaigns_json(ctx, id, &arr);
    if (err == JF_OK && json_array_size(arr) != 1)
        err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No campaign '%s'.", id ? id : "");
    if (err == JF_OK) {
        json_decref(ctx->out);
        ctx->out = json_incref(json_array_get(arr, 0));
    }
    json_decref(arr);
    return err;
}

/* Writes the body's fields over the campaign's current ones. */
static jf_err campaign_store(jf_ctx *ctx, const char *id, bool insert)
{
    jf_wcache_live_changed(jf_ctx_wcache(ctx)); /* the live rules it decides */
    json_t *b = ctx->body, *budget = json_object_get(b, "budget");
    int64_t starts = -1, ends = -1, mp = -1, ma = -1;
    bool has_s = false, has_e = false;
    jf_json_time(ctx, b, "starts_at", false, &starts, &has_s);
    jf_json_time(ctx, b, "ends_at", false, &ends, &has_e);
    if (json_object_get(budget, "max_points"))
        mp = json_integer_value(json_object_get(budget, "max_points"));
    if (json_object_get(budget, "max_awards"))
        ma = json_integer_value(json_object_get(budget, "max_awards"));
    if (insert)
        return jf_db_run(
            ctx->db,
            "INSERT INTO campaigns(tenant_id, id, name, description, status,"
            " starts_at, ends_at, budget_points, budget_awards, created_at,"
            " updated_at) VALUES(?,?,?,?,?,NULLIF(?,-1),NULLIF(?,-1),NULLIF(?,-1),"
            "NULLIF(?,-1),?,?)",
            "IssssIIIIII", ctx->auth->tenant, id, json_string_value(json_object_get(b, "name")),
            json_string_value(json_object_get(b, "description")),
            json_object_get(b, "status") ? json_string_value(json_object_get(b, "status"))
                                         : "draft",
            starts, ends, mp, ma, ctx->now_ms, ctx->now_ms);
    return jf_db_run(
        ctx->db,
        "UPDATE campaigns SET name=COALESCE(?3, name), description=COALESCE(?4, description),"
        " status=COALESCE(?5, status), starts_at=CASE WHEN ?6 THEN NULLIF(?7,-1) ELSE starts_at"
        " END, ends_at=CASE WHEN ?8 THEN NULLIF(?9,-1) ELSE ends_at END, budget_points=CASE"
        " WHEN ?10 THEN NULLIF(?11,-1) ELSE budget_points END, budget_awards=CASE WHEN ?10 THEN"
        " NULLIF(?12,-1) ELSE budget_awards END, updated_at=?13 WHERE tenant_id=?1 AND id=?2",
        "IssssiIiIiIII", ctx->auth->tenant, id, json_string_value(json_object_get(b, "name")),
        json_string_value(json_object_get(b, "description")),
        json_string_value(json_object_get(b, "status")), json_object_get(b, "starts_at") ? 1 : 0,
        starts, json_object_get(b, "ends_at") ? 1 : 0, ends, budget ? 1 : 0, mp, ma, ctx->now_ms);
}

static jf_err campaign_create(jf_ctx *ctx)
{
    char id[JF_ID_LEN_MAX];
    int64_t total = 0;
    jf_err err = jf_db_int(ctx->db, &total, 0, "SELECT count(*) FROM campaigns WHERE tenant_id=?",
                           "I", ctx->auth->tenant);
    if (err == JF_OK && total >= JF_CAMPAIGNS_MAX)
        err = jf_fail(ctx, JF_ERR_INVALID_REQUEST, "A tenant has at most %d campaigns.",
                      JF_CAMPAIGNS_MAX);
    jf_id_new("cmp_", id);
    if (err == JF_OK)
        err = campaign_store(ctx, id, true);
    if (err == JF_OK)
        err = campaign_reply(ctx, id);
    ctx->created = err == JF_OK;
    return err;
}

static jf_err campaign_update(jf_ctx *ctx)
{
    /* Copied into the frame, not strdup'ed: a failed allocation here was
     * once answered as "no campaign" (test_faults, test_campaign_update). */
    char status[16] = "";
    sqlite3_stmt *st =
        jf_db_query(ctx->db, "SELECT status FROM campaigns WHERE tenant_id=? AND id=?", "Is",
                    ctx->auth->tenant, ctx->path_id ? ctx->path_id : "");
    if (st == NULL)
        return JF_ERR_IO;
    bool found = jf_db_step(st) == SQLITE_ROW;
    if (found)
        jf_str_copy(status, sizeof(status), jf_db_text(st, 0));
    sqlite3_reset(st);
    jf_err err = found ? JF_OK : jf_fail(ctx, JF_ERR_NOT_FOUND, "No campaign '%s'.", ctx->path_id);
    const char *to = json_string_value(json_object_get(ctx->body, "status"));
    if (err == JF_OK && strcmp(status, "ended") == 0)
        err = jf_fail(ctx, JF_ERR_INVALID_REQUEST, "Campaign '%s' has ended; it cannot change.",
                      ctx->path_id);
    else if (err == JF_OK && to && strcmp(to, "draft") == 0 && strcmp(status, "draft") != 0)
        err = jf_fail(ctx, JF_ERR_INVALID_REQUEST, "A campaign cannot go back to draft.");
    if (err == JF_OK)
        err = campaign_store(ctx, ctx->path_id, false);
    return err == JF_OK ? campaign_reply(ctx, ctx->path_id) : err;
}

static jf_err campaign_get(jf_ctx *ctx)
{
    return campaign_reply(ctx, ctx->path_id);
}

static jf_err campaign_list(jf_ctx *ctx)
{
    json_t *arr = NULL;
    jf_err err = campaigns_json(ctx, NULL, &arr);
    if (err == JF_OK) {
        json_decref(ctx->out);
        ctx->out = jf_list_envelope(arr, -1);
    }
    return err;
}

jf_err jf_campaign_check(jf_ctx *ctx, const char *campaign_id)
{
    int64_t n = 0;
    jf_err err =
        jf_db_int(ctx->db, &n, 0, "SELECT count(*) FROM campaigns WHERE tenant_id=? AND id=?", "Is",
                  ctx->auth->tenant, campaign_id);
    if (err == JF_OK && n == 0)
        err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No campaign '%s'.", campaign_id);
    return err;
}

const jf_op_impl jf_op_campaign_create = {campaign_validate, campaign_create};
const jf_op_impl jf_op_campaign_update = {campaign_validate, campaign_update};
const jf_op_impl jf_op_campaign_get = {NULL, campaign_get};
const jf_op_impl jf_op_campaign_list = {NULL, campaign_list};
