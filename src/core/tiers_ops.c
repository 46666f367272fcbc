/*
 * The tier operations (docs/TIERS.md): the configuration, a member's tier
 * view, manual sets and imports, the evaluation job and the event log.
 */
#include <string.h>

#include "tiers.h"

jf_err jf_tier_config_validate(jf_ctx *ctx, json_t *b);

static jf_err config_required(jf_ctx *ctx, jf_tier_config *cfg)
{
    bool found = false;
    jf_err err = jf_tier_config_load(ctx, cfg, &found);
    if (err == JF_OK && !found)
        err = jf_fail(ctx, JF_ERR_NOT_FOUND, "The program has no tiers; PUT /v1/tiers first.");
    return err;
}

static json_t *config_json(const jf_tier_config *cfg)
{
    json_t *o = json_deep_copy(cfg->body);
    jf_json_set(o, "version", json_integer(cfg->version));
    jf_json_set(o, "updated_at", jf_json_time_value(cfg->created_at));
    return o;
}

/* ---- GET and PUT /v1/tiers ---- */

static jf_err config_get(jf_ctx *ctx)
{
    jf_tier_config cfg;
    jf_err err = config_required(ctx, &cfg);
    if (err != JF_OK)
        return err;
    json_decref(ctx->out);
    ctx->out = config_json(&cfg);
    jf_tier_config_free(&cfg);
    return JF_OK;
}

/* Refuses a configuration without a tier that members hold. */
static jf_err config_in_use(jf_ctx *ctx, json_t *b)
{
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT tier, count(*) FROM members WHERE tenant_id=? AND"
                                   " tier IS NOT NULL GROUP BY tier",
                                   "I", ctx->auth->tenant);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_OK;
    while (err == JF_OK && jf_db_step(st) == SQLITE_ROW) {
        json_t *t;
        size_t i;
        bool kept = false;
        json_array_foreach(json_object_get(b, "tiers"), i, t)
        {
            kept = kept ||
                   strcmp(json_string_value(json_object_get(t, "code")), jf_db_text(st, 0)) == 0;
        }
        if (!kept)
            err = jf_fail(ctx, JF_ERR_TIER_IN_USE, "%lld members hold tier '%s'.",
                          (long long)sqlite3_column_int64(st, 1), jf_db_text(st, 0));
    }
    sqlite3_reset(st);
    return err;
}

static jf_err config_put_validate(jf_ctx *ctx)
{
    return jf_tier_config_validate(ctx, ctx->body);
}

static jf_err config_put(jf_ctx *ctx)
{
    int64_t version = 0;
    char *text = jf_json_dump(ctx->body, NULL);
    jf_err err = text ? config_in_use(ctx, ctx->body) : JF_ERR_NOMEM;
    if (err == JF_OK)
        err = jf_db_int(ctx->db, &version, 0,
                        "SELECT COALESCE(MAX(version), 0) FROM tier_configs WHERE tenant_id=?", "I",
                        ctx->auth->tenant);
    if (err == JF_OK)
        err =
            jf_db_run(ctx->db,
                      "INSERT INTO tier_configs(tenant_id, version, body, actor, created_at)"
                      " VALUES(?,?,?,?,?)",
                      "IIssI", ctx->auth->tenant, version + 1, text, ctx->auth->actor, ctx->now_ms);
    free(text);
    jf_tier_config_changed(ctx);
    return err == JF_OK ? config_get(ctx) : err;
}

/* ---- evaluation ---- */

typedef struct tier_decision {
    int to;
    const char *kind;     /* upgrade, downgrade, retain, override_end */
    const char *decision; /* upgrade, downgrade, retain */
    char reason[240];
} tier_decision;

/* What an evaluation of a member in tier cur decides on metrics m. */
static void decide(const jf_tier_config *cfg, int cur, const jf_tier_metrics *m, bool override_ends,
                   tier_decision *d)
{
    int q = jf_tier_qualified(cfg, m);
    const char *code = cur >= 0 ? cfg->tiers[cur].code : "none";
    if (q > cur) {
        d->to = q;
        d->decision = "upgrade";
        snprintf(d->reason, sizeof d->reason, "Growth %lld in the window qualifies for %s.",
                 (long long)m->growth, cfg->tiers[q].code);
    } else if (jf_tier_retains(cfg, cur, m)) {
        d->to = cur;
        d->decision = "retain";
        snprintf(d->reason, sizeof d->reason, "Growth %lld in the window keeps %s (retain %lld).",
                 (long long)m->growth, code, (long long)(cur >= 0 ? cfg->tiers[cur].retain : 0));
    } else {
        d->to = cfg->to_qualified || q > cur - 1 ? q : cur - 1;
        d->decision = "downgrade";
        snprintf(d->reason, sizeof d->reason,
                 "Growth %lld in the window is below %s's retain %lld; %s to %s.",
                 (long long)m->growth, code, (long long)cfg->tiers[cur].retain,
                 cfg->to_qualified ? "down to what it supports" : "one level down",
                 d->to >= 0 ? cfg->tiers[d->to].code : "no tier");
    }
    d->kind = override_ends ? "override_end" : d->decision;
}

/* Evaluates one member due at mt->eval_at: the window ending then decides. */
static jf_err evaluate_member(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id,
                              const jf_member_tier *mt, int64_t *counts)
{
    jf_tier_metrics m;
    tier_decision d;
    int64_t at = mt->eval_at;
    jf_err err = jf_tier_metrics_at(ctx, cfg, member_id, at, true, false, &m);
    if (err != JF_OK)
        return err;
    int cur = jf_tier_effective(cfg, mt);
    bool override_ends = mt->manual && mt->override_until >= 0 && at >= mt->override_until;
    decide(cfg, cur, &m, override_ends, &d);
    bool kept = d.to == cur;
    jf_tier_move mv = {.kind = d.kind,
                       .reason = d.reason,
                       .from = cur,
                       .to = d.to,
                       .growth = m.growth,
                       .since = kept ? mt->since : at,
                       .eval_at = jf_tier_next_eval(cfg, d.to, at),
                       .until = -1,
                       .manual = kept && mt->manual && !override_ends};
    counts[0]++;
    counts[1] += strcmp(d.decision, "retain") == 0;
    counts[2] += strcmp(d.decision, "downgrade") == 0;
    counts[3] += strcmp(d.decision, "upgrade") == 0;
    counts[4] += override_ends;
    return jf_tier_record(ctx, cfg, member_id, &mv);
}

static jf_err evaluate_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"as_of", NULL};
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    return err == JF_OK ? jf_json_time(ctx, ctx->body, "as_of", false, &ctx->args->expires_at,
                                       &ctx->args->has_expires_at)
                        : err;
}

static void evaluate_reply(jf_ctx *ctx, int64_t as_of)
{
    static const char *const names[] = {"evaluated", "retained", "downgraded", "upgraded",
                                        "overrides_ended"};
    jf_json_set(ctx->out, "as_of", jf_json_time_value(as_of));
    for (int i = 0; i < 5; i++)
        jf_json_set(ctx->out, names[i], json_integer(ctx->acc[i]));
}

/* One slice: members whose evaluation is due by as_of, earliest first.
 * Each evaluation moves the member's next one past its due date, so a
 * slice never sees the same due date twice and an interrupted run resumes
 * where it stopped. */
static jf_err evaluate_run(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    int64_t as_of = a->has_expires_at ? a->expires_at : ctx->now_ms;
    char(*ids)[JF_ID_LEN_MAX] = NULL;
    jf_tier_config cfg;
    bool found = false;
    int n = 0;
    if (as_of > ctx->now_ms)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'as_of' must not be in the future.");
    jf_err err = jf_tier_config_load(ctx, &cfg, &found);
    if (err != JF_OK || !found) {
        evaluate_reply(ctx, as_of);
        return err;
    }
    ids = malloc(sizeof(*ids) * JF_TIER_EVAL_SLICE);
    sqlite3_stmt *st =
        ids ? jf_db_query(ctx->db,
                          "SELECT id FROM members WHERE tenant_id=? AND"
                          " tier_eval_at <= ? ORDER BY tier_eval_at, seq LIMIT ?",
                          "III", ctx->auth->tenant, as_of, (int64_t)JF_TIER_EVAL_SLICE)
            : NULL;
    err = ids == NULL ? JF_ERR_NOMEM : st == NULL ? JF_ERR_IO : JF_OK;
    while (err == JF_OK && n < JF_TIER_EVAL_SLICE && jf_db_step(st) == SQLITE_ROW)
        jf_str_copy(ids[n++], JF_ID_LEN_MAX, jf_db_text(st, 0));
    if (st)
        sqlite3_reset(st);
    for (int i = 0; i < n && err == JF_OK; i++) {
        jf_member_tier mt;
        if ((err = jf_member_tier_load(ctx, ids[i], &mt)) == JF_OK)
            err = evaluate_member(ctx, &cfg, ids[i], &mt, ctx->acc);
    }
    free(ids);
    jf_tier_config_free(&cfg);
    if (err != JF_OK)
        return err;
    ctx->again = n == JF_TIER_EVAL_SLICE;
    evaluate_reply(ctx, as_of);
    return JF_OK;
}

/* ---- a member's tier ---- */

static json_t *tier_json(const jf_tier_config *cfg, int i)
{
    if (i < 0)
        return json_null();
    json_t *t = json_deep_copy(cfg->tiers[i].json);
    if (!json_object_get(t, "benefits"))
        jf_json_set(t, "benefits", json_object());
    return t;
}

static json_t *next_tier_json(const jf_tier_config *cfg, int cur, const jf_tier_metrics *m)
{
    if (cur + 1 >= cfg->n)
        return json_null();
    const jf_tier *t = &cfg->tiers[cur + 1];
    int64_t need = t->threshold > m->growth ? t->threshold - m->growth : 0;
    json_t *o = json_pack("{ss so sI sI}", "code", t->code, "name",
                          json_deep_copy(json_object_get(t->json, "name")), "threshold",
                          (json_int_t)t->threshold, "growth_needed", (json_int_t)need);
    if (t->spend_threshold >= 0)
        jf_json_set(
            o, "spend_needed",
            json_integer(t->spend_threshold > m->spend ? t->spend_threshold - m->spend : 0));
    if (t->orders_threshold >= 0)
        jf_json_set(
            o, "orders_needed",
            json_integer(t->orders_threshold > m->orders ? t->orders_threshold - m->orders : 0));
    return o;
}

static jf_err history_json(jf_ctx *ctx, const char *member_id, json_t **out)
{
    sqlite3_stmt *st =
        jf_db_query(ctx->db,
                    "SELECT id, from_tier, to_tier, kind, reason, growth, tx_id,"
                    " actor, until, created_at FROM tier_changes WHERE"
                    " tenant_id=? AND member_id=? ORDER BY seq DESC LIMIT ?",
                    "IsI", ctx->auth->tenant, member_id, (int64_t)JF_TIER_HISTORY_MAX);
    if (st == NULL)
        return JF_ERR_IO;
    *out = json_array();
    while (jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(*out, jf_tier_change_json(st));
    sqlite3_reset(st);
    return JF_OK;
}

/* ctx->out = the member's tier view (docs/TIERS.md). */
static jf_err member_tier_view(jf_ctx *ctx, const jf_tier_config *cfg, const char *member_id)
{
    static const char *const windows[] = {"lifetime", "calendar_year", "rolling_months"};
    jf_member_tier mt;
    jf_tier_metrics m;
    tier_decision d;
    json_t *history = NULL;
    jf_err err = jf_member_tier_load(ctx, member_id, &mt);
    if (err == JF_OK)
        err = jf_tier_metrics_at(ctx, cfg, member_id, ctx->now_ms + 1, false, true, &m);
    if (err == JF_OK)
        err = history_json(ctx, member_id, &history);
    if (err != JF_OK)
        return err;
    int cur = jf_tier_effective(cfg, &mt);
    json_t *o = ctx->out, *w = json_pack("{ss}", "type", windows[cfg->window]);
    decide(cfg, cur, &m, false, &d);
    jf_json_set(w, "from", jf_json_time_value(m.from == INT64_MIN ? -1 : m.from));
    jf_json_set(w, "to", jf_json_time_value(ctx->now_ms));
    jf_json_set(o, "member_id", json_string(member_id));
    jf_json_set(o, "tier", tier_json(cfg, cur));
    jf_json_set(o, "since", jf_json_time_value(mt.since));
    jf_json_set(o, "manual", json_boolean(mt.manual));
    jf_json_set(o, "override_until", jf_json_time_value(mt.override_until));
    jf_json_set(o, "window", w);
    jf_json_set(
        o, "growth",
        json_pack("{sIsI}", "window", (json_int_t)m.growth, "lifetime", (json_int_t)m.lifetime));
    jf_json_set(o, "spend", json_integer(m.spend));
    jf_json_set(o, "orders", json_integer(m.orders));
    jf_json_set(o, "next_tier", next_tier_json(cfg, cur, &m));
    jf_json_set(o, "next_evaluation_at", jf_json_time_value(mt.eval_at));
    jf_json_set(o, "if_evaluated_now",
                json_pack("{ss so ss}", "decision", d.decision, "tier",
                          d.to >= 0 ? json_string(cfg->tiers[d.to].code) : json_null(),
                          "explanation", d.reason));
    jf_json_set(o, "config_version", json_integer(cfg->version));
    jf_json_set(o, "history", history);
    return JF_OK;
}

static jf_err member_tier_get(jf_ctx *ctx)
{
    jf_member mb;
    jf_tier_config cfg;
    jf_err err = jf_member_load(ctx, ctx->path_id, &mb);
    if (err == JF_OK && (err = config_required(ctx, &cfg)) == JF_OK) {
        err = member_tier_view(ctx, &cfg, mb.id);
        jf_tier_config_free(&cfg);
    }
    return err;
}

static jf_err member_tier_set_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"tier", "reason", "until", NULL};
    jf_args *a = ctx->args;
    const char *tier;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "tier", true, JF_TIER_CODE_LEN_MAX, &tier);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "reason", true, JF_REASON_LEN_MAX, &a->reason);
    if (err == JF_OK)
        err = jf_json_time(ctx, ctx->body, "until", false, &a->expires_at, &a->has_expires_at);
    return err;
}

static jf_err unknown_tier(jf_ctx *ctx, const char *code)
{
    return jf_fail(ctx, JF_ERR_UNKNOWN_TIER, "The program has no tier '%s'.", code);
}

static jf_err member_tier_set(jf_ctx *ctx)
{
    const jf_args *a = ctx->args;
    const char *code = json_string_value(json_object_get(ctx->body, "tier"));
    jf_member mb;
    jf_member_tier mt;
    jf_tier_config cfg;
    if (a->has_expires_at && a->expires_at <= ctx->now_ms)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'until' must be in the future.");
    jf_err err = jf_member_load(ctx, ctx->path_id, &mb);
    if (err != JF_OK || (err = config_required(ctx, &cfg)) != JF_OK)
        return err;
    int to = jf_tier_index(&cfg, code);
    err = to < 0 ? unknown_tier(ctx, code) : jf_member_tier_load(ctx, mb.id, &mt);
    jf_tier_metrics m;
    if (err == JF_OK)
        err = jf_tier_metrics_at(ctx, &cfg, mb.id, ctx->now_ms + 1, false, false, &m);
    if (err == JF_OK) {
        int64_t until = a->has_expires_at ? a->expires_at : -1;
        jf_tier_move mv = {.kind = "manual",
                           .reason = a->reason,
                           .from = jf_tier_effective(&cfg, &mt),
                           .to = to,
                           .growth = m.growth,
                           .since = ctx->now_ms,
                           .eval_at = until >= 0 ? until : jf_tier_next_eval(&cfg, to, ctx->now_ms),
                           .until = until,
                           .manual = true};
        err = jf_tier_record(ctx, &cfg, mb.id, &mv);
    }
    if (err == JF_OK)
        err = member_tier_view(ctx, &cfg, mb.id);
    jf_tier_config_free(&cfg);
    return err;
}

/* ---- import ---- */

static jf_err import_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"members", NULL};
    static const char *const entry_fields[] = {"member_id", "external_id", "tier", "since", NULL};
    json_t *list = json_object_get(ctx->body, "members"), *e;
    size_t i;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK && (!json_is_array(list) || json_array_size(list) < 1 ||
                         json_array_size(list) > JF_TIER_IMPORT_MAX))
        err = jf_fail(ctx, list ? JF_ERR_INVALID_FIELD : JF_ERR_MISSING_FIELD,
                      "'members' must be an array of 1 to %d entries.", JF_TIER_IMPORT_MAX);
    json_array_foreach(list, i, e)
    {
        const char *s;
        int64_t t;
        if (err != JF_OK)
            break;
        err = json_is_object(e)
                  ? jf_json_allow(ctx, e, entry_fields)
                  : jf_fail(ctx, JF_ERR_INVALID_FIELD, "members[%zu] is not an object.", i);
        if (err == JF_OK && !json_object_get(e, "member_id") == !json_object_get(e, "external_id"))
            err = jf_fail(ctx, JF_ERR_INVALID_FIELD,
                          "members[%zu]: give exactly one of member_id and external_id.", i);
        if (err == JF_OK)
            err = jf_json_str(ctx, e, "member_id", false, JF_ID_LEN_MAX - 1, &s);
        if (err == JF_OK)
            err = jf_json_str(ctx, e, "external_id", false, JF_EXTERNAL_ID_LEN_MAX, &s);
        if (err == JF_OK)
            err = jf_json_str(ctx, e, "tier", true, JF_TIER_CODE_LEN_MAX, &s);
        if (err == JF_OK)
            err = jf_json_time(ctx, e, "since", false, &t, NULL);
    }
    return err;
}

static jf_err import_one(jf_ctx *ctx, const jf_tier_config *cfg, json_t *e, size_t i)
{
    const char *id = json_string_value(json_object_get(e, "member_id"));
    const char *ext = json_string_value(json_object_get(e, "external_id"));
    const char *code = json_string_value(json_object_get(e, "tier"));
    char mid[JF_ID_LEN_MAX] = "";
    int64_t since = ctx->now_ms;
    jf_member_tier mt;
    const char *s = json_string_value(json_object_get(e, "since"));
    if (s)
        jf_time_parse_rfc3339(s, &since);
    jf_err err;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT id FROM members WHERE tenant_id=? AND"
                                   " (id=? OR external_id=?)",
                                   "Iss", ctx->auth->tenant, id, ext);
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) == SQLITE_ROW)
        jf_str_copy(mid, sizeof mid, jf_db_text(st, 0));
    sqlite3_reset(st);
    int to = jf_tier_index(cfg, code);
    if (!mid[0])
        return jf_fail(ctx, JF_ERR_NOT_FOUND, "members[%zu]: no member '%s'.", i, id ? id : ext);
    if (to < 0)
        return jf_fail(ctx, JF_ERR_UNKNOWN_TIER, "members[%zu]: no tier '%s'.", i, code);
    if (since > ctx->now_ms)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "members[%zu]: 'since' is in the future.", i);
    if ((err = jf_member_tier_load(ctx, mid, &mt)) != JF_OK)
        return err;
    jf_tier_move mv = {.kind = "import",
                       .reason = "Imported.",
                       .from = jf_tier_effective(cfg, &mt),
                       .to = to,
                       .since = since,
                       .eval_at = jf_tier_next_eval(cfg, to, since),
                       .until = -1};
    return jf_tier_record(ctx, cfg, mid, &mv);
}

/* All or nothing: a failing entry fails the command, and what the earlier
 * entries wrote is undone with it (engine.c, jf_writer_apply). */
static jf_err import_run(jf_ctx *ctx)
{
    jf_tier_config cfg;
    json_t *e;
    size_t i;
    jf_err err = config_required(ctx, &cfg);
    if (err != JF_OK)
        return err;
    json_array_foreach(json_object_get(ctx->body, "members"), i, e)
    {
        if ((err = import_one(ctx, &cfg, e, i)) != JF_OK)
            break;
    }
    jf_tier_config_free(&cfg);
    if (err == JF_OK)
        jf_json_set(
            ctx->out, "imported",
            json_integer((json_int_t)json_array_size(json_object_get(ctx->body, "members"))));
    return err;
}

/* ---- events ---- */

static jf_err event_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out)
{
    (void)ctx;
    json_t *data = jf_json_loads_whole(jf_db_text(st, 3), 0);
    *out =
        json_pack("{ss ss so so so}", "id", jf_db_text(st, 1), "type", jf_db_text(st, 2),
                  "member_id", jf_json_text(jf_db_text(st, 4)), "data", data ? data : json_null(),
                  "created_at", jf_json_time_value(sqlite3_column_int64(st, 5)));
    return *out ? JF_OK : JF_ERR_NOMEM;
}

static jf_err event_list(jf_ctx *ctx)
{
    int64_t limit, cursor;
    const char *type = jf_param_get(ctx, "type");
    const char *member = jf_param_get(ctx, "member_id");
    jf_err err = jf_list_params(ctx, &limit, &cursor);
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT seq, id, type, data, member_id, created_at FROM events"
                                   " WHERE tenant_id=? AND (? IS NULL OR type=?2) AND"
                                   " (?3 IS NULL OR member_id=?3) AND seq>?4 ORDER BY seq LIMIT ?5",
                                   "IssII", ctx->auth->tenant, type, member, cursor, limit + 1);
    return jf_list_rows(ctx, st, limit, 0, event_row);
}

const jf_op_impl jf_op_tier_config_get = {NULL, config_get};
const jf_op_impl jf_op_tier_config_put = {config_put_validate, config_put};
const jf_op_impl jf_op_tier_evaluate = {evaluate_validate, evaluate_run};
const jf_op_impl jf_op_tier_import = {import_validate, import_run};
const jf_op_impl jf_op_member_tier_get = {NULL, member_tier_get};
const jf_op_impl jf_op_member_tier_set = {member_tier_set_validate, member_tier_set};
const jf_op_impl jf_op_event_list = {NULL, event_list};
