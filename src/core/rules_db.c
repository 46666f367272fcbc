/*
 * Earning rules in the store: the /v1/rules operations, loading the live
 * rules with what they have already awarded, writing awards, and custom
 * events (POST /v1/members/{id}/events).
 *
 * A rule is a head row (current version, status, trigger, priority: what
 * queries filter on) over immutable versions holding the whole rule JSON.
 * PUT and archive add a version; nothing ever edits one, and awards keep
 * the version that produced them, so "why did I get N points" has the same
 * answer forever and nothing already awarded is recomputed.  Usage for
 * limits and budgets is summed from the awards table on the writer, inside
 * the command, so concurrent requests cannot exceed a cap.
 */
#include <string.h>

#include "campaigns.h"
#include "ledger.h"
#include "rules.h"
#include "tiers.h"

#define DAY_MS INT64_C(86400000)

/* ---- the rule representation ---- */

/* Sets r[key] to v (taking it) unless r has key; false when memory ran out. */
static bool rule_default(json_t *r, const char *key, json_t *v)
{
    if (json_object_get(r, key)) {
        json_decref(v);
        return true;
    }
    return json_object_set_new(r, key, v) == 0;
}

/* Fills in defaults so that a stored version is complete; JF_ERR_NOMEM when
 * one could not be added (a version stored without it would read back as
 * another rule). */
static jf_err rule_normalize(json_t *r)
{
    bool ok = rule_default(r, "status", json_string("active"));
    ok = rule_default(r, "priority", json_integer(0)) && ok;
    ok = rule_default(r, "exclusive", json_false()) && ok;
    ok = rule_default(r, "group", json_null()) && ok;
    ok = rule_default(r, "conditions", json_object()) && ok;
    ok = rule_default(r, "limits", json_object()) && ok;
    return ok ? JF_OK : JF_ERR_NOMEM;
}

static jf_err rule_body_validate(jf_ctx *ctx)
{
    char *text = jf_json_dump(ctx->body, NULL);
    if (text == NULL)
        return JF_ERR_NOMEM;
    size_t n = strlen(text);
    free(text);
    if (n > JF_RULE_BYTES_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "A rule must be at most %d bytes of JSON.",
                       JF_RULE_BYTES_MAX);
    jf_err err = jf_rule_validate(ctx, ctx->body);
    if (err == JF_OK)
        err = rule_normalize(ctx->body);
    return err;
}

/* The stored rule id's current version as the API shows it. */
static jf_err rule_json(jf_ctx *ctx, const char *id, bool versions, json_t **out)
{
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT r.version, v.body, r.created_at, r.updated_at FROM rules r JOIN rule_versions v"
        " ON v.tenant_id = r.tenant_id AND v.rule_id = r.id AND v.version = r.version"
        " WHERE r.tenant_id=? AND r.id=?",
        "Is", ctx->auth->tenant, id ? id : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No rule '%s'.", id ? id : "");
    json_t *o = NULL;
    if (jf_db_step(st) == SQLITE_ROW) {
        o = json_object();
        jf_json_set(o, "id", json_string(id));
        jf_json_set(o, "version", json_integer(sqlite3_column_int64(st, 0)));
        json_t *body = jf_json_loads_whole(jf_db_text(st, 1), 0);
        json_object_update(o, body);
        json_decref(body);
        jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 2)));
        jf_json_set(o, "updated_at", jf_json_time_value(sqlite3_column_int64(st, 3)));
        err = JF_OK;
    }
    sqlite3_reset(st);
    if (err != JF_OK || !versions) {
        *out = o;
        return err;
    }
    json_t *list = json_array();
    st = jf_db_query(ctx->db,
                     "SELECT version, actor, created_at, json_extract(body, '$.status')"
                     " FROM rule_versions WHERE tenant_id=? AND rule_id=? ORDER BY version DESC"
                     " LIMIT ?",
                     "IsI", ctx->auth->tenant, id, (int64_t)JF_RULE_VERSIONS_SHOWN);
    while (st && jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(list, json_pack("{sIsssoss}", "version",
                                              (json_int_t)sqlite3_column_int64(st, 0), "actor",
                                              jf_db_text(st, 1), "created_at",
                                              jf_json_time_value(sqlite3_column_int64(st, 2)),
                                              "status", jf_db_text(st, 3)));
    if (st == NULL) {
        json_decref(list);
        json_decref(o);
        return JF_ERR_IO;
    }
    sqlite3_reset(st);
    json_object_set_new(o, "versions", list);
    *out = o;
    return JF_OK;
}

/* Answers with the rule's representation, versions included. */
static jf_err rule_reply(jf_ctx *ctx, const char *id)
{
    json_t *o = NULL;
    jf_err err = rule_json(ctx, id, true, &o);
    if (err == JF_OK) {
        json_decref(ctx->out);
        ctx->out = o;
    }
    return err;
}

/* Refuses a rule that would exceed the live-rule limit of its trigger. */
static jf_err live_room(jf_ctx *ctx, json_t *body, const char *except_id)
{
    int64_t live = 0;
    if (strcmp(json_string_value(json_object_get(body, "status")), "archived") == 0)
        return JF_OK;
    jf_err err =
        jf_db_int(ctx->db, &live, 0,
                  "SELECT count(*) FROM rules WHERE tenant_id=? AND trigger=?"
                  " AND status IN ('active','draft') AND id <> ?",
                  "Iss", ctx->auth->tenant, json_string_value(json_object_get(body, "trigger")),
                  except_id ? except_id : "");
    if (err == JF_OK && live >= JF_RULES_ACTIVE_MAX)
        err = jf_fail(ctx, JF_ERR_INVALID_REQUEST,
                      "A trigger has at most %d active or draft rules; archive one first.",
                      JF_RULES_ACTIVE_MAX);
    return err;
}

/* A version that brings a per-member limit to a rule whose previous one had
 * none: award_caps gets the rule's earlier awards, which the limit counts
 * within its period as it always did (schema.c, version 12).  Otherwise
 * award_caps already holds them all, or the limit is not there to read it. */
static jf_err caps_backfill(jf_ctx *ctx, const char *id, int64_t previous)
{
    return jf_db_run(ctx->db,
                     "INSERT OR IGNORE INTO award_caps SELECT tenant_id, rule_id, member_id,"
                     " created_at, tx_seq, n, points FROM awards INDEXED BY awards_rule"
                     " WHERE tenant_id=?1 AND rule_id=?2 AND NOT EXISTS (SELECT 1 FROM"
                     " rule_versions v WHERE v.tenant_id=?1 AND v.rule_id=?2 AND v.version=?3"
                     " AND " JF_RULE_PER_MEMBER_SQL("v.body") ")",
                     "IsI", ctx->auth->tenant, id, previous);
}

/* Appends version `version` of rule id and points the head row at it. */
static jf_err rule_store(jf_ctx *ctx, const char *id, int64_t version, json_t *body)
{
    jf_wcache_live_changed(jf_ctx_wcache(ctx));
    char *text = jf_json_dump(body, NULL);
    if (text == NULL)
        return JF_ERR_NOMEM;
    jf_err err =
        jf_db_run(ctx->db,
                  "INSERT INTO rule_versions(tenant_id, rule_id, version, body, actor,"
                  " created_at) VALUES(?,?,?,?,?,?)",
                  "IsIssI", ctx->auth->tenant, id, version, text, ctx->auth->actor, ctx->now_ms);
    free(text);
    const char *trigger = json_string_value(json_object_get(body, "trigger"));
    const char *event = json_string_value(json_object_get(body, "event"));
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *status = json_string_value(json_object_get(body, "status"));
    const char *campaign = json_string_value(json_object_get(body, "campaign_id"));
    int64_t prio = json_integer_value(json_object_get(body, "priority"));
    if (err == JF_OK && version == 1)
        err = jf_db_run(ctx->db,
                        "INSERT INTO rules(tenant_id, id, name, trigger, event, status, priority,"
                        " version, created_at, updated_at, campaign_id)"
                        " VALUES(?,?,?,?,?,?,?,1,?,?,?)",
                        "IsssssIIIs", ctx->auth->tenant, id, name, trigger, event, status, prio,
                        ctx->now_ms, ctx->now_ms, campaign);
    else if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "UPDATE rules SET name=?, trigger=?, event=?, status=?, priority=?,"
                        " version=?, updated_at=? WHERE tenant_id=? AND id=?",
                        "ssssIIIIs", name, trigger, event, status, prio, version, ctx->now_ms,
                        ctx->auth->tenant, id);
    if (err == JF_OK && version > 1 &&
        json_object_get(json_object_get(body, "limits"), "per_member"))
        err = caps_backfill(ctx, id, version - 1);
    return err;
}

/* A rule's campaign must exist, and never changes once the rule has one
 * (a campaign's budget counts the awards of its rules). */
static jf_err rule_campaign_check(jf_ctx *ctx, const char *rule_id)
{
    const char *campaign = json_string_value(json_object_get(ctx->body, "campaign_id"));
    int64_t other = 0;
    jf_err err = campaign ? jf_campaign_check(ctx, campaign) : JF_OK;
    if (err == JF_OK && rule_id)
        err = jf_db_int(ctx->db, &other, 0,
                        "SELECT count(*) FROM rules WHERE tenant_id=? AND id=? AND"
                        " COALESCE(campaign_id, '') <> COALESCE(?, '')",
                        "Iss", ctx->auth->tenant, rule_id, campaign);
    if (err == JF_OK && other)
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "A rule's 'campaign_id' cannot change.");
    return err;
}

static jf_err rule_create(jf_ctx *ctx)
{
    int64_t total = 0;
    char id[JF_ID_LEN_MAX];
    jf_err err = jf_db_int(ctx->db, &total, 0, "SELECT count(*) FROM rules WHERE tenant_id=?", "I",
                           ctx->auth->tenant);
    if (err == JF_OK && total >= JF_RULES_MAX)
        err = jf_fail(ctx, JF_ERR_INVALID_REQUEST, "A tenant has at most %d rules.", JF_RULES_MAX);
    if (err == JF_OK)
        err = live_room(ctx, ctx->body, NULL);
    if (err == JF_OK)
        err = rule_campaign_check(ctx, NULL);
    jf_id_new("rul_", id);
    if (err == JF_OK)
        err = rule_store(ctx, id, 1, ctx->body);
    if (err == JF_OK)
        err = rule_reply(ctx, id);
    ctx->created = err == JF_OK;
    return err;
}

/* The current version of the path's rule (JF_ERR_NOT_FOUND when none). */
static jf_err rule_current(jf_ctx *ctx, int64_t *version, char **status)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db, "SELECT version, status FROM rules WHERE tenant_id=? AND id=?", "Is",
                    ctx->auth->tenant, ctx->path_id ? ctx->path_id : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No rule '%s'.", ctx->path_id);
    if (jf_db_step(st) == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        *status = strdup(jf_db_text(st, 1));
        err = *status ? JF_OK : JF_ERR_NOMEM;
    }
    sqlite3_reset(st);
    return err;
}

static jf_err rule_update(jf_ctx *ctx)
{
    int64_t version = 0;
    char *status = NULL;
    jf_err err = rule_current(ctx, &version, &status);
    free(status);
    if (err == JF_OK)
        err = live_room(ctx, ctx->body, ctx->path_id);
    if (err == JF_OK)
        err = rule_campaign_check(ctx, ctx->path_id);
    if (err == JF_OK)
        err = rule_store(ctx, ctx->path_id, version + 1, ctx->body);
    return err == JF_OK ? rule_reply(ctx, ctx->path_id) : err;
}

static jf_err rule_archive(jf_ctx *ctx)
{
    int64_t version = 0;
    char *status = NULL;
    json_t *cur = NULL;
    jf_err err = rule_current(ctx, &version, &status);
    bool already = err == JF_OK && strcmp(status, "archived") == 0;
    free(status);
    if (err == JF_OK && !already && (err = rule_json(ctx, ctx->path_id, false, &cur)) == JF_OK) {
        static const char *const drop[] = {"id", "version", "created_at", "updated_at", NULL};
        for (const char *const *k = drop; *k; k++)
            json_object_del(cur, *k);
        json_object_set_new(cur, "status", json_string("archived"));
        err = rule_store(ctx, ctx->path_id, version + 1, cur);
    }
    json_decref(cur);
    return err == JF_OK ? rule_reply(ctx, ctx->path_id) : err;
}

static jf_err rule_get(jf_ctx *ctx)
{
    return rule_reply(ctx, ctx->path_id);
}

static jf_err rule_list(jf_ctx *ctx)
{
    const char *status = jf_param_get(ctx, "status"), *trigger = jf_param_get(ctx, "trigger");
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT id FROM rules WHERE tenant_id=? AND (?2 IS NULL OR"
                                   " status=?2) AND (?3 IS NULL OR trigger=?3)"
                                   " ORDER BY trigger DESC, priority DESC, id",
                                   "Iss", ctx->auth->tenant, status, trigger);
    if (st == NULL)
        return JF_ERR_IO;
    json_t *ids = json_array(), *data = json_array(), *v;
    while (jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(ids, json_string(jf_db_text(st, 0)));
    sqlite3_reset(st);
    size_t i;
    jf_err err = JF_OK;
    json_array_foreach(ids, i, v)
    {
        json_t *o = NULL;
        if (err == JF_OK && (err = rule_json(ctx, json_string_value(v), false, &o)) == JF_OK)
            json_array_append_new(data, o);
    }
    json_decref(ids);
    json_decref(ctx->out);
    ctx->out = jf_list_envelope(data, -1);
    return err;
}

/* ---- live rules and their usage ---- */

typedef struct live_rules {
    jf_live_rule rows[JF_RULES_ACTIVE_MAX]; /* the query's, when none are kept */
    jf_rule_ref refs[JF_RULES_ACTIVE_MAX];
    char ids[JF_RULES_ACTIVE_MAX][JF_ID_LEN_MAX];
    size_t n;
    /* The campaigns of the live rules, each once: id, budget, usage. */
    char campaign_ids[JF_RULES_ACTIVE_MAX][JF_ID_LEN_MAX];
    json_t *campaign_budgets[JF_RULES_ACTIVE_MAX];
    jf_rule_usage campaign_used[JF_RULES_ACTIVE_MAX];
    size_t campaigns;
} live_rules;

static void live_free(live_rules *lr)
{
    for (size_t i = 0; i < lr->n; i++)
        json_decref(lr->refs[i].rule);
    for (size_t i = 0; i < lr->campaigns; i++)
        json_decref(lr->campaign_budgets[i]);
    lr->n = lr->campaigns = 0;
}

/* Ties ref to its rule's campaign (row), counting the campaign once. */
static jf_err live_campaign(live_rules *lr, jf_rule_ref *ref, const jf_live_rule *row)
{
    const char *id = row->campaign_id;
    size_t k = 0;
    if (id[0] == '\0')
        return JF_OK;
    while (k < lr->campaigns && strcmp(lr->campaign_ids[k], id) != 0)
        k++;
    if (k == lr->campaigns) {
        json_t *b = json_object();
        if (row->budget_points >= 0)
            jf_json_set(b, "max_points", json_integer(row->budget_points));
        if (row->budget_awards >= 0)
            jf_json_set(b, "max_awards", json_integer(row->budget_awards));
        jf_str_copy(lr->campaign_ids[k], JF_ID_LEN_MAX, id);
        lr->campaign_budgets[k] = b;
        memset(&lr->campaign_used[k], 0, sizeof lr->campaign_used[k]);
        lr->campaigns++;
    }
    ref->campaign_budget =
        json_object_size(lr->campaign_budgets[k]) ? lr->campaign_budgets[k] : NULL;
    ref->campaign_used = ref->campaign_budget ? &lr->campaign_used[k] : NULL;
    return JF_OK;
}

/* What every rule of each loaded campaign has awarded. */
static jf_err campaigns_usage(jf_ctx *ctx, live_rules *lr)
{
    for (size_t k = 0; k < lr->campaigns; k++) {
        sqlite3_stmt *st =
            jf_db_query(ctx->db,
                        "SELECT COALESCE(SUM(u.points), 0), COALESCE(SUM(u.awards), 0) FROM rules r"
                        " JOIN rule_usage u ON u.tenant_id = r.tenant_id AND u.rule_id = r.id WHERE"
                        " r.tenant_id=? AND r.campaign_id=?",
                        "Is", ctx->auth->tenant, lr->campaign_ids[k]);
        if (st == NULL)
            return JF_ERR_IO;
        if (jf_db_step(st) == SQLITE_ROW) {
            lr->campaign_used[k].budget_points = sqlite3_column_int64(st, 0);
            lr->campaign_used[k].budget_awards = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
    }
    return JF_OK;
}

/* What a rule awarded the member since its per-member period began
 * (award_caps), and in all (rule_usage), as far as its limits ask. */
static jf_err usage_load(jf_ctx *ctx, const jf_tz *tz, const char *member_id, jf_rule_ref *ref)
{
    const jf_rule_plan *p = &ref->plan;
    jf_err err = JF_OK;
    for (int pass = 0; pass < 2 && err == JF_OK; pass++) {
        if ((pass == 0 && !p->per_member) || (pass == 1 && !p->budget))
            continue;
        sqlite3_stmt *st =
            pass == 0
                ? jf_db_query(ctx->db,
                              "SELECT COALESCE(SUM(points), 0), count(CASE WHEN points > 0"
                              " THEN 1 END) FROM award_caps WHERE tenant_id=? AND rule_id=? AND"
                              " member_id=? AND created_at >= ?",
                              "IssI", ctx->auth->tenant, ref->id, member_id,
                              jf_rule_period_start_ms(tz, ctx->now_ms, p->period))
                : jf_db_query(ctx->db,
                              "SELECT points, awards FROM rule_usage WHERE tenant_id=? AND"
                              " rule_id=?",
                              "Is", ctx->auth->tenant, ref->id);
        if (st == NULL)
            return JF_ERR_IO;
        if (jf_db_step(st) == SQLITE_ROW) {
            int64_t *pts = pass == 0 ? &ref->used.member_points : &ref->used.budget_points;
            int64_t *cnt = pass == 0 ? &ref->used.member_awards : &ref->used.budget_awards;
            *pts = sqlite3_column_int64(st, 0);
            *cnt = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
    }
    return err;
}

/* The rules the trigger (and event) of the tenant fires, in order, before
 * their campaigns' windows: the writer's kept rows (wcache.c) or the
 * query's, read into buf.  A trigger has at most JF_RULES_ACTIVE_MAX active
 * or draft rules (live_room), so the limit cuts none. */
static jf_err live_rows(jf_ctx *ctx, const char *trigger, const char *event, jf_live_rule *buf,
                        const jf_live_rule **rows, size_t *n)
{
    jf_wcache *wc = jf_ctx_wcache(ctx);
    bool drafts = ctx->args->include_drafts;
    if (jf_wcache_live_get(wc, ctx->auth->tenant, trigger, event, drafts, rows, n))
        return JF_OK;
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT r.id, r.version, r.campaign_id, c.starts_at, c.ends_at, c.budget_points,"
        " c.budget_awards FROM rules r LEFT JOIN campaigns c ON c.tenant_id = r.tenant_id AND"
        " c.id = r.campaign_id WHERE r.tenant_id=?1 AND r.trigger=?2 AND (r.status='active' OR"
        " (?3 AND r.status='draft')) AND (?4 IS NULL OR r.event=?4) AND (r.campaign_id IS NULL OR"
        " c.status='active' OR (?3 AND c.status='draft')) ORDER BY r.priority DESC, r.id LIMIT ?5",
        "IsisI", ctx->auth->tenant, trigger, drafts ? 1 : 0, event, JF_RULES_ACTIVE_MAX);
    if (st == NULL)
        return JF_ERR_IO;
    size_t k = 0;
    int rc = SQLITE_DONE;
    while (k < JF_RULES_ACTIVE_MAX && (rc = jf_db_step(st)) == SQLITE_ROW) {
        jf_live_rule *r = &buf[k++];
        jf_str_copy(r->id, sizeof r->id, jf_db_text(st, 0));
        r->version = sqlite3_column_int64(st, 1);
        jf_str_copy(r->campaign_id, sizeof r->campaign_id,
                    jf_db_text(st, 2) ? jf_db_text(st, 2) : "");
        r->starts_at = jf_db_int_or(st, 3, INT64_MIN);
        r->ends_at = jf_db_int_or(st, 4, INT64_MAX);
        r->budget_points = jf_db_int_or(st, 5, -1);
        r->budget_awards = jf_db_int_or(st, 6, -1);
    }
    sqlite3_reset(st);
    if (k < JF_RULES_ACTIVE_MAX && rc != SQLITE_DONE)
        return JF_ERR_IO;
    jf_wcache_live_put(wc, ctx->auth->tenant, trigger, event, drafts, buf, k);
    *rows = buf;
    *n = k;
    return JF_OK;
}

json_t *jf_rule_body(jf_ctx *ctx, const char *id, int64_t version)
{
    jf_wcache *wc = jf_ctx_wcache(ctx);
    json_t *body = jf_wcache_body_get(wc, ctx->auth->tenant, 'R', id, version);
    if (body != NULL)
        return body;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT body FROM rule_versions WHERE tenant_id=? AND"
                                   " rule_id=? AND version=?",
                                   "IsI", ctx->auth->tenant, id, version);
    if (st != NULL && jf_db_step(st) == SQLITE_ROW)
        body = jf_wcache_body_load(wc, ctx->auth->tenant, 'R', id, version, jf_db_text(st, 0));
    if (st != NULL)
        sqlite3_reset(st);
    return body;
}

/* Whether loading the usage of lr reads rule_usage (a rule's budget, a
 * campaign's), which must first see the batch's additions. */
static bool reads_usage(const live_rules *lr)
{
    for (size_t i = 0; i < lr->n; i++)
        if (lr->refs[i].plan.budget)
            return true;
    return lr->campaigns > 0;
}

json_t *jf_rule_body_plan(jf_ctx *ctx, const char *id, int64_t version, jf_rule_plan *plan)
{
    jf_wcache *wc = jf_ctx_wcache(ctx);
    json_t *body = jf_rule_body(ctx, id, version);
    if (body == NULL)
        return NULL;
    const jf_rule_plan *kept =
        jf_wcache_body_derived(wc, ctx->auth->tenant, 'R', id, version, body);
    if (kept != NULL) {
        *plan = *kept;
        return body;
    }
    jf_rule_plan_init(body, plan);
    jf_rule_plan *keep = wc ? malloc(sizeof(*keep)) : NULL;
    if (keep != NULL) {
        *keep = *plan;
        jf_wcache_body_derive(wc, ctx->auth->tenant, 'R', id, version, body, keep);
    }
    return body;
}

static jf_err live_load(jf_ctx *ctx, const jf_tz *tz, const char *member_id, const char *trigger,
                        const char *event, live_rules *lr)
{
    const jf_live_rule *rows = NULL;
    size_t n = 0;
    jf_err err = live_rows(ctx, trigger, event, lr->rows, &rows, &n);
    lr->n = 0;
    for (size_t i = 0; err == JF_OK && i < n; i++) {
        const jf_live_rule *row = &rows[i];
        if (ctx->now_ms < row->starts_at || ctx->now_ms >= row->ends_at)
            continue; /* outside its campaign's window */
        jf_rule_ref *ref = &lr->refs[lr->n];
        memset(ref, 0, sizeof(*ref));
        jf_str_copy(lr->ids[lr->n], JF_ID_LEN_MAX, row->id);
        ref->id = lr->ids[lr->n];
        ref->version = row->version;
        ref->rule = jf_rule_body_plan(ctx, row->id, row->version, &ref->plan);
        err = ref->rule ? JF_OK : JF_ERR_CORRUPT;
        if (err == JF_OK)
            err = live_campaign(lr, ref, row);
        if (err == JF_OK)
            lr->n++;
    }
    if (err == JF_OK && reads_usage(lr))
        err = jf_hot_usage_flush(ctx);
    if (err == JF_OK)
        err = campaigns_usage(ctx, lr);
    for (size_t i = 0; err == JF_OK && i < lr->n; i++)
        err = usage_load(ctx, tz, member_id, &lr->refs[i]);
    return err;
}

/* How many of the member's earlier purchase earns the live rules can tell
 * apart: a `purchase_number` condition compares the count with nth − 1, so
 * counting up to the largest nth decides every one of them (a count that
 * stops there equals no rule's nth − 1, as the whole count would not).  0
 * when no live rule has the condition. */
static int64_t purchases_needed(const live_rules *lr)
{
    int64_t need = 0;
    for (size_t i = 0; i < lr->n; i++) {
        json_t *pn = lr->refs[i].plan.purchase_number, *nth = lr->refs[i].plan.nth;
        int64_t want = nth ? (int64_t)json_integer_value(nth) : 1;
        if (pn && want > need)
            need = want;
    }
    return need;
}

/* Whether a live rule has a member_tags_any condition: only then are the
 * member's tags read. */
static bool tags_needed(const live_rules *lr)
{
    for (size_t i = 0; i < lr->n; i++)
        if (lr->refs[i].plan.tags_any)
            return true;
    return false;
}

static jf_err tags_load(jf_ctx *ctx, const char *member_id, json_t **tags)
{
    sqlite3_stmt *st = jf_db_query(ctx->db, "SELECT tags FROM members WHERE tenant_id=? AND id=?",
                                   "Is", ctx->auth->tenant, member_id);
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) == SQLITE_ROW)
        *tags = jf_json_loads_whole(jf_db_text(st, 0) ? jf_db_text(st, 0) : "[]", 0);
    sqlite3_reset(st);
    return JF_OK;
}

/* The member's birthday, their tags when a live rule asks for them, and
 * their earlier purchase earns up to `need` of them (purchases_needed).
 * The birthday comes from the member as the writer keeps it (members.c):
 * a read of the member's row for its tags and birthday cost every order
 * earn about 9,500 instructions, though few programs have rules on tags. */
static jf_err facts_member(jf_ctx *ctx, const char *member_id, const live_rules *lr,
                           jf_rule_facts *f, json_t **tags, char *birthday, size_t bsize)
{
    jf_member m;
    jf_err err = jf_member_load(ctx, member_id, &m);
    if (err == JF_OK && m.birthday[0]) {
        jf_str_copy(birthday, bsize, m.birthday);
        f->birthday = birthday;
    }
    if (err == JF_OK && tags_needed(lr))
        err = tags_load(ctx, member_id, tags);
    f->tags = *tags;
    f->purchases_before = 0;
    int64_t need = purchases_needed(lr);
    return err == JF_OK && need > 0
               ? jf_member_purchases(ctx, member_id, need, &f->purchases_before)
               : err;
}

/* No purchase rules but a tier multiplier: the base rate as an award with
 * the tier's awards on it, so that each says where its points came from. */
static jf_err base_awards(jf_ctx *ctx, const jf_rule_facts *f, jf_award *aw, size_t *count)
{
    int64_t points = 0;
    if (!jf_rate_apply_floor(ctx->args->order_amount, ctx->prog.earn_points,
                             ctx->prog.earn_per_amount, &points) ||
        !jf_rules_base_awards(f, points, aw, count))
        return jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The order earns more than the points range.");
    return JF_OK;
}

jf_err jf_rules_awards(jf_ctx *ctx, const char *member_id, const char *trigger, const char *event,
                       const jf_trigger_facts *tf, jf_award *awards, size_t *count,
                       size_t *rule_count)
{
    const jf_tz *tz = NULL;
    if (jf_tz_get(ctx->prog.timezone, &tz) != JF_OK && jf_tz_get("UTC", &tz) != JF_OK)
        return jf_fail(ctx, JF_ERR_UNKNOWN_TIMEZONE, "Unknown time zone '%s'.", ctx->prog.timezone);
    live_rules *lr = malloc(sizeof(*lr)); /* its arrays are filled as counted */
    if (lr == NULL)
        return JF_ERR_NOMEM;
    lr->n = lr->campaigns = 0;
    json_t *tags = NULL, *order = ctx->args->order;
    char birthday[16] = "";
    jf_rule_facts f = {.tz = tz,
                       .now_ms = ctx->now_ms,
                       .order = order,
                       .event = event,
                       .streak = tf ? tf->streak : 0,
                       .referral_on = tf ? tf->referral_on : NULL,
                       .referrer = tf && tf->referrer,
                       .order_cap = order ? ctx->prog.max_points_per_order : -1};
    f.channel = json_string_value(json_object_get(order, "channel"));
    f.channel = f.channel ? f.channel : ctx->args->channel;
    f.store_id = json_string_value(json_object_get(order, "store_id"));
    f.store_id = f.store_id ? f.store_id : ctx->args->store_id;
    jf_tier_bonus tb;
    jf_err err = jf_ctx_order_lines(ctx, &f.lines, &f.line_count);
    if (err == JF_OK)
        err = live_load(ctx, tz, member_id, trigger, event, lr);
    if (err == JF_OK)
        err = facts_member(ctx, member_id, lr, &f, &tags, birthday, sizeof birthday);
    if (err == JF_OK)
        err = jf_tier_bonus_load(ctx, member_id, &tb);
    f.tier = err == JF_OK && tb.code[0] ? tb.code : NULL;
    f.tier_bonus = order ? &tb : NULL;
    *count = 0;
    *rule_count = lr->n;
    if (err == JF_OK && lr->n > 0)
        err = jf_rules_evaluate(ctx, lr->refs, lr->n, &f, awards, count);
    else if (err == JF_OK && order && strcmp(trigger, "purchase") == 0 && f.tier &&
             (tb.mult_num > tb.mult_den || tb.bday_num > tb.bday_den))
        err = base_awards(ctx, &f, awards, count);
    live_free(lr);
    free(lr);
    json_decref(tags);
    return err;
}

/* ---- awards ---- */

int64_t jf_awards_growth(const jf_award *awards, size_t count)
{
    int64_t g = 0;
    for (size_t i = 0; i < count; i++)
        g = jf_min_i64(JF_POINTS_MAX, g + awards[i].growth);
    return g;
}

jf_err jf_awards_earn(jf_ctx *ctx, const char *member_id, const jf_award *awards, size_t count,
                      int64_t total, json_t *meta, bool own_request, char *tx_id)
{
    jf_tx tx;
    jf_err err = jf_tx_begin(ctx, &tx, "earn", member_id);
    if (err != JF_OK) {
        json_decref(meta);
        return err;
    }
    if (own_request)
        jf_tx_describe(&tx, ctx->args);
    else
        tx.idem_key = NULL;
    free(tx.metadata);
    tx.metadata = meta ? jf_json_dump(meta, NULL) : NULL;
    json_decref(meta);
    tx.points = tx.delta = total;
    err = tx.metadata ? jf_awards_write(ctx, &tx, member_id, awards, count) : JF_ERR_NOMEM;
    jf_tx_post(&tx, "issuance", NULL, -total);
    jf_tx_post(&tx, "points", member_id, total);
    int64_t growth = jf_awards_growth(awards, count);
    jf_tx_post_growth(&tx, member_id, growth);
    if (err == JF_OK)
        err = jf_tx_finish(ctx, &tx);
    if (err == JF_OK && growth > 0)
        err = jf_tier_after_growth(ctx, member_id, &tx);
    if (tx_id)
        jf_str_copy(tx_id, JF_ID_LEN_MAX, tx.id);
    jf_tx_deinit(&tx);
    return err;
}

/* An award counts toward its rule's usage (budgets) and, when the rule has
 * a per-member limit, toward the member's (schema.c, version 12). */
static jf_err award_usage_write(jf_ctx *ctx, const jf_tx *tx, const char *member_id,
                                const jf_award *w, int64_t n)
{
    if (strchr(w->rule_id, ':'))
        return JF_OK; /* the base rate or a tier multiplier: no rule */
    /* A busy rule's row is as hot as program:issuance: written with the
     * batch (hot.c). */
    jf_err err = jf_hot_usage_add(ctx, w->rule_id, w->points, (int64_t)(w->points > 0));
    if (err == JF_OK && w->per_member)
        err =
            jf_db_run(ctx->db, "INSERT INTO award_caps VALUES(?,?,?,?,?,?,?)", "IssIIII",
                      ctx->auth->tenant, w->rule_id, member_id, ctx->now_ms, tx->seq, n, w->points);
    return err;
}

jf_err jf_awards_write(jf_ctx *ctx, const jf_tx *tx, const char *member_id, const jf_award *awards,
                       size_t count)
{
    const jf_args *a = ctx->args;
    jf_err err = JF_OK;
    for (size_t i = 0; i < count && err == JF_OK; i++) {
        const jf_award *w = &awards[i];
        int64_t pending = w->pending_days >= 0  ? w->pending_days
                          : a->has_pending_days ? a->pending_days
                                                : ctx->prog.pending_days;
        int64_t expires = w->expires_in_days >= 0 ? ctx->now_ms + w->expires_in_days * DAY_MS
                          : a->has_expires_at     ? a->expires_at
                                                  : jf_program_expiry_ms(&ctx->prog, ctx->now_ms);
        int64_t lot = -1;
        if (w->points > 0)
            err = jf_lot_create(ctx, tx, member_id, w->points, ctx->now_ms + pending * DAY_MS,
                                expires, &lot);
        if (err == JF_OK)
            err = jf_db_run(ctx->db,
                            "INSERT INTO awards(tenant_id, tx_seq, n, member_id, rule_id,"
                            " rule_version, points, lot_seq, explanation, created_at, growth)"
                            " VALUES(?,?,?,?,?,?,?,NULLIF(?,-1),?,?,?)",
                            "IIIssIIIsII", ctx->auth->tenant, tx->seq, (int64_t)i, member_id,
                            w->rule_id, w->rule_version, w->points, lot, w->explanation,
                            ctx->now_ms, w->growth);
        if (err == JF_OK)
            err = award_usage_write(ctx, tx, member_id, w, (int64_t)i);
    }
    if (err == JF_OK && count > 0) {
        ctx->awarded_tx_seq = tx->seq;
        free(ctx->awarded);
        ctx->awarded_n = 0;
        /* Without the copy (no memory) the reply reads them back. */
        if ((ctx->awarded = malloc(count * sizeof(*awards))) != NULL) {
            memcpy(ctx->awarded, awards, count * sizeof(*awards));
            ctx->awarded_n = count;
        }
    }
    return err;
}

jf_err jf_awards_json(jf_ctx *ctx, int64_t tx_seq, json_t **out)
{
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT rule_id, rule_version, points, explanation, growth FROM"
                                   " awards WHERE tenant_id=? AND tx_seq=? ORDER BY n",
                                   "II", ctx->auth->tenant, tx_seq);
    if (st == NULL)
        return JF_ERR_IO;
    json_t *arr = json_array();
    while (jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(
            arr, json_pack("{sssIsIsssI}", "rule_id", jf_db_text(st, 0), "rule_version",
                           (json_int_t)sqlite3_column_int64(st, 1), "points",
                           (json_int_t)sqlite3_column_int64(st, 2), "explanation",
                           jf_db_text(st, 3), "growth", (json_int_t)sqlite3_column_int64(st, 4)));
    sqlite3_reset(st);
    *out = arr;
    return JF_OK;
}

json_t *jf_awards_array(const jf_award *awards, size_t count)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(arr, json_pack("{sssIsIsssI}", "rule_id", awards[i].rule_id,
                                             "rule_version", (json_int_t)awards[i].rule_version,
                                             "points", (json_int_t)awards[i].points, "explanation",
                                             awards[i].explanation, "growth",
                                             (json_int_t)awards[i].growth));
    return arr;
}

/* ---- custom events ---- */

static jf_err event_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"name",    "attributes", "dry_run", "include_drafts",
                                         "channel", "store_id",   "note",    NULL};
    jf_args *a = ctx->args;
    json_t *b = ctx->body, *attrs = json_object_get(b, "attributes");
    jf_err err = jf_json_allow(ctx, b, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, b, "name", true, JF_EVENT_NAME_LEN_MAX, &a->event_name);
    if (err == JF_OK && attrs && !json_is_object(attrs))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'attributes' must be an object.");
    if (err == JF_OK && attrs) {
        char *text = jf_json_dump(attrs, NULL);
        size_t n = text ? strlen(text) : SIZE_MAX;
        bool lost = text == NULL;
        free(text);
        if (lost)
            err = JF_ERR_NOMEM; /* not "too large": the dump's memory ran out */
        else if (n > JF_METADATA_BYTES_MAX)
            err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'attributes' must be at most %d bytes.",
                          JF_METADATA_BYTES_MAX);
    }
    if (err == JF_OK)
        err = jf_dry_run_args(ctx);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

static jf_err event_apply(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    jf_member m;
    jf_tx tx;
    jf_award *aw = jf_awards_new();
    size_t n = 0, live = 0;
    int64_t total = 0;
    jf_err err = aw ? jf_member_writable(ctx, ctx->path_id, &m) : JF_ERR_NOMEM;
    if (err == JF_OK)
        err = jf_rules_awards(ctx, m.id, "event", a->event_name, NULL, aw, &n, &live);
    for (size_t i = 0; err == JF_OK && i < n; i++)
        if (!jf_points_add_checked(total, aw[i].points, &total))
            err = jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The event earns too many points.");
    int64_t growth = err == JF_OK ? jf_awards_growth(aw, n) : 0;
    if (err == JF_OK && (a->dry_run || (total == 0 && growth == 0))) {
        json_t *pts = NULL;
        jf_json_set(ctx->out, "event", json_string(a->event_name));
        jf_json_set(ctx->out, "dry_run", json_boolean(a->dry_run));
        jf_json_set(ctx->out, "total_points", json_integer(total));
        jf_json_set(ctx->out, "total_growth", json_integer(growth));
        jf_json_set(ctx->out, "awards", jf_awards_array(aw, n));
        jf_json_set(ctx->out, "transaction", json_null());
        if ((err = jf_member_points_json(ctx, m.id, &pts)) == JF_OK)
            jf_json_set(ctx->out, "points", pts);
        free(aw);
        return err;
    }
    if (err == JF_OK)
        err = jf_tx_begin(ctx, &tx, "earn", m.id);
    if (err != JF_OK) {
        free(aw);
        return err;
    }
    jf_tx_describe(&tx, a);
    json_t *attrs = json_object_get(ctx->body, "attributes");
    json_t *meta = attrs ? json_pack("{sssO}", "event", a->event_name, "attributes", attrs)
                         : json_pack("{ssso}", "event", a->event_name, "attributes", json_object());
    free(tx.metadata);
    tx.metadata = jf_json_dump(meta, NULL);
    json_decref(meta);
    tx.points = tx.delta = total;
    err = jf_awards_write(ctx, &tx, m.id, aw, n);
    jf_tx_post(&tx, "issuance", NULL, -total);
    jf_tx_post(&tx, "points", m.id, total);
    jf_tx_post_growth(&tx, m.id, growth);
    free(aw);
    err = jf_tx_complete(ctx, &tx, m.id, err);
    if (err == JF_OK && growth > 0)
        err = jf_tier_after_growth(ctx, m.id, &tx);
    if (err == JF_OK)
        jf_json_set(ctx->out, "event", json_string(a->event_name));
    return err;
}

const jf_op_impl jf_op_rule_create = {rule_body_validate, rule_create};
const jf_op_impl jf_op_rule_update = {rule_body_validate, rule_update};
const jf_op_impl jf_op_rule_archive = {NULL, rule_archive};
const jf_op_impl jf_op_rule_get = {NULL, rule_get};
const jf_op_impl jf_op_rule_list = {NULL, rule_list};
const jf_op_impl jf_op_member_event = {event_validate, event_apply};
