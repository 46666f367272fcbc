/*
 * Members: create, read (by id and by the merchant's external_id), update
 * profile and status, list and search.  A member's points are never stored
 * on the member row: they are derived from lots and accounts at read time,
 * so "available" and "pending" follow the clock without any job.
 */
#include <string.h>

#include "ledger.h"
#include "bonus.h"
#include "referral.h"
#include "tz.h"

#define MEMBER_COLUMNS                                                                             \
    "SELECT id, external_id, name, phone, birthday, tags, status, debt, created_at,"               \
    " updated_at, seq, referred_by FROM members"

/* The columns the writer keeps of a member (jf_member), after `first`
 * columns of st's row. */
#define MEMBER_KEPT_COLUMNS                                                                        \
    "seq, id, status, debt, birthday, pending_until, tier, tier_since, tier_eval_at,"              \
    " tier_manual, tier_override_until, referred_by IS NOT NULL"

static void member_kept_row(sqlite3_stmt *st, int first, jf_member *out)
{
    out->seq = sqlite3_column_int64(st, first);
    jf_str_copy(out->id, sizeof(out->id), jf_db_text(st, first + 1));
    jf_str_copy(out->status, sizeof(out->status), jf_db_text(st, first + 2));
    out->debt = sqlite3_column_int64(st, first + 3);
    const char *birthday = jf_db_text(st, first + 4);
    jf_str_copy(out->birthday, sizeof(out->birthday), birthday ? birthday : "");
    out->pending_until = sqlite3_column_int64(st, first + 5);
    const char *tier = jf_db_text(st, first + 6);
    jf_str_copy(out->tier.code, sizeof(out->tier.code), tier ? tier : "");
    out->tier.since = jf_db_int_or(st, first + 7, -1);
    out->tier.eval_at = jf_db_int_or(st, first + 8, -1);
    out->tier.manual = sqlite3_column_int64(st, first + 9) != 0;
    out->tier.override_until = jf_db_int_or(st, first + 10, -1);
    out->referred = sqlite3_column_int64(st, first + 11) != 0;
}

jf_err jf_member_load(jf_ctx *ctx, const char *id, jf_member *out)
{
    jf_wcache *wc = jf_ctx_wcache(ctx);
    if (id && jf_wcache_member_get(wc, ctx->auth->tenant, id, out)) {
        jf_member_seq_note(ctx, out->id, out->seq);
        return JF_OK;
    }
    sqlite3_stmt *st = jf_db_query(
        ctx->db, "SELECT " MEMBER_KEPT_COLUMNS " FROM members WHERE tenant_id=? AND id=?", "Is",
        ctx->auth->tenant, id ? id : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_ERR_NOT_FOUND;
    if (jf_db_step(st) == SQLITE_ROW) {
        member_kept_row(st, 0, out);
        jf_wcache_member_put(wc, ctx->auth->tenant, out);
        jf_member_seq_note(ctx, out->id, out->seq);
        err = JF_OK;
    }
    sqlite3_reset(st);
    if (err == JF_ERR_NOT_FOUND)
        jf_fail(ctx, err, "No member '%s'.", id ? id : "");
    return err;
}

void jf_member_seq_note(jf_ctx *ctx, const char *id, int64_t seq)
{
    if (strlen(id) < sizeof(ctx->seq_memo_id)) {
        memcpy(ctx->seq_memo_id, id, strlen(id) + 1);
        ctx->seq_memo = seq;
    }
}

jf_err jf_member_seq(jf_ctx *ctx, const char *id, int64_t *seq)
{
    if (ctx->seq_memo > 0 && strcmp(ctx->seq_memo_id, id) == 0) {
        *seq = ctx->seq_memo;
        return JF_OK;
    }
    jf_member m;
    jf_err err = jf_member_load(ctx, id, &m);
    *seq = err == JF_OK ? m.seq : 0;
    return err;
}

jf_err jf_members_warm(jf_db *db, jf_wcache *wc, int64_t *count)
{
    *count = 0;
    if (wc == NULL)
        return JF_OK;
    jf_err err = jf_db_exec(db, "BEGIN");
    int64_t data_version = -1;
    if (err == JF_OK)
        err = jf_db_int(db, &data_version, -1, "PRAGMA data_version", "");
    sqlite3_stmt *st =
        err == JF_OK
            ? jf_db_query(db, "SELECT tenant_id, " MEMBER_KEPT_COLUMNS " FROM members LIMIT ?", "I",
                          (int64_t)JF_WCACHE_MEMBERS)
            : NULL;
    if (st != NULL) {
        jf_wcache_batch_begin(wc, data_version);
        while (jf_db_step(st) == SQLITE_ROW) {
            jf_member m;
            member_kept_row(st, 1, &m);
            jf_wcache_member_put(wc, sqlite3_column_int64(st, 0), &m);
            (*count)++;
        }
        sqlite3_reset(st);
        jf_wcache_batch_end(wc);
    } else if (err == JF_OK) {
        err = JF_ERR_IO;
    }
    jf_db_exec(db, "COMMIT");
    return err;
}

/* {"available", "pending", "held"} of a member now. */
jf_err jf_member_points_json(jf_ctx *ctx, const char *member_id, json_t **out)
{
    jf_points p;
    jf_err err = jf_lots_points(ctx, member_id, &p);
    if (err != JF_OK)
        return err;
    *out = jf_points_json(&p);
    return JF_OK;
}

json_t *jf_points_json(const jf_points *p)
{
    return json_pack("{sIsIsI}", "available", (json_int_t)p->available, "pending",
                     (json_int_t)p->pending, "held", (json_int_t)p->held);
}

static jf_err member_json(jf_ctx *ctx, sqlite3_stmt *st, json_t **out)
{
    json_t *o = json_object(), *pts = NULL;
    const char *id = jf_db_text(st, 0);
    jf_json_set(o, "id", json_string(id));
    jf_json_set(o, "external_id", json_string(jf_db_text(st, 1)));
    jf_json_set(o, "name", jf_json_text(jf_db_text(st, 2)));
    jf_json_set(o, "phone", jf_json_text(jf_db_text(st, 3)));
    jf_json_set(o, "birthday", jf_json_text(jf_db_text(st, 4)));
    jf_json_set(o, "tags", jf_json_loads_whole(jf_db_text(st, 5), 0));
    jf_json_set(o, "status", json_string(jf_db_text(st, 6)));
    char code[JF_REFERRAL_CODE_LEN + 1];
    jf_referral_code(jf_referral_key(ctx->eng), sqlite3_column_int64(st, 10), code);
    jf_json_set(o, "referral_code", json_string(code));
    jf_json_set(o, "referred_by", jf_json_text(jf_db_text(st, 11)));
    jf_member_seq_note(ctx, id, sqlite3_column_int64(st, 10));
    jf_err err = jf_member_points_json(ctx, id, &pts);
    jf_json_set(o, "points", pts);
    jf_json_set(o, "debt", json_integer(sqlite3_column_int64(st, 7)));
    jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 8)));
    jf_json_set(o, "updated_at", jf_json_time_value(sqlite3_column_int64(st, 9)));
    if (err != JF_OK) {
        json_decref(o);
        return err;
    }
    *out = o;
    return JF_OK;
}

/* Renders the member whose `column` equals value into ctx->out. */
static jf_err member_render_by(jf_ctx *ctx, bool by_external, const char *value)
{
    sqlite3_stmt *st =
        by_external ? jf_db_query(ctx->db, MEMBER_COLUMNS " WHERE tenant_id=? AND external_id=?",
                                  "Is", ctx->auth->tenant, value ? value : "")
                    : jf_db_query(ctx->db, MEMBER_COLUMNS " WHERE tenant_id=? AND id=?", "Is",
                                  ctx->auth->tenant, value ? value : "");
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = jf_fail(ctx, JF_ERR_NOT_FOUND, "No member '%s'.", value ? value : "");
    json_t *m = NULL;
    if (jf_db_step(st) == SQLITE_ROW && (err = member_json(ctx, st, &m)) == JF_OK) {
        json_decref(ctx->out);
        ctx->out = m;
    }
    sqlite3_reset(st);
    return err;
}

static jf_err member_get(jf_ctx *ctx)
{
    return member_render_by(ctx, false, ctx->path_id);
}

static jf_err member_get_external(jf_ctx *ctx)
{
    return member_render_by(ctx, true, ctx->path_id);
}

static jf_err tags_validate(jf_ctx *ctx, json_t *tags)
{
    if (tags == NULL || json_is_null(tags))
        return JF_OK;
    if (!json_is_array(tags) || json_array_size(tags) > JF_TAGS_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'tags' must be an array of at most %d strings.",
                       JF_TAGS_MAX);
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (!json_is_string(t) || json_string_length(t) < 1 ||
            json_string_length(t) > JF_TAG_LEN_MAX)
            return jf_fail(ctx, JF_ERR_INVALID_FIELD, "Each tag must be 1 to %d characters.",
                           JF_TAG_LEN_MAX);
    }
    return JF_OK;
}

static jf_err profile_validate(jf_ctx *ctx, json_t *b)
{
    const char *s = NULL;
    int y, m, d;
    jf_err err = jf_json_str(ctx, b, "name", false, JF_NAME_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, b, "phone", false, JF_PHONE_LEN_MAX, &s);
    s = NULL;
    if (err == JF_OK && (err = jf_json_str(ctx, b, "birthday", false, 10, &s)) == JF_OK && s &&
        !jf_date_parse(s, &y, &m, &d))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'birthday' must be a date YYYY-MM-DD.");
    if (err == JF_OK)
        err = tags_validate(ctx, json_object_get(b, "tags"));
    return err;
}

static jf_err member_create_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"external_id", "name",          "phone", "birthday",
                                         "tags",        "referral_code", NULL};
    const char *s = NULL;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "external_id", true, JF_EXTERNAL_ID_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "referral_code", false, 2 * JF_REFERRAL_CODE_LEN, &s);
    if (err == JF_OK)
        err = profile_validate(ctx, ctx->body);
    return err;
}

static const char *body_text(jf_ctx *ctx, const char *field)
{
    return json_string_value(json_object_get(ctx->body, field));
}

static char *tags_text(json_t *tags)
{
    if (tags == NULL || json_is_null(tags))
        return strdup("[]");
    return jf_json_dump(tags, NULL);
}

/* The member a referral code names in this tenant, into referrer. */
static jf_err referrer_resolve(jf_ctx *ctx, const char *code, char referrer[JF_ID_LEN_MAX])
{
    int64_t seq = 0;
    jf_err err =
        jf_fail(ctx, JF_ERR_INVALID_REFERRAL_CODE, "No member has referral code '%s'.", code);
    if (!jf_referral_code_parse(jf_referral_key(ctx->eng), code, &seq))
        return err;
    sqlite3_stmt *st = jf_db_query(ctx->db, "SELECT id FROM members WHERE tenant_id=? AND seq=?",
                                   "II", ctx->auth->tenant, seq);
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) == SQLITE_ROW) {
        jf_str_copy(referrer, JF_ID_LEN_MAX, jf_db_text(st, 0));
        err = JF_OK;
    }
    sqlite3_reset(st);
    return err;
}

static jf_err member_create(jf_ctx *ctx)
{
    const char *ext = body_text(ctx, "external_id");
    int64_t exists = 0;
    jf_err err = jf_db_int(ctx->db, &exists, 0,
                           "SELECT count(*) FROM members WHERE tenant_id=? AND external_id=?", "Is",
                           ctx->auth->tenant, ext);
    if (err != JF_OK)
        return err;
    if (exists)
        return jf_fail(ctx, JF_ERR_MEMBER_EXISTS, "A member with external_id '%s' exists.", ext);
    char id[JF_ID_LEN_MAX], referrer[JF_ID_LEN_MAX] = "";
    const char *code = body_text(ctx, "referral_code");
    if (code && (err = referrer_resolve(ctx, code, referrer)) != JF_OK)
        return err;
    jf_id_new("mem_", id);
    /* Not remembered by the writer before this batch commits (wcache.c). */
    jf_wcache_member_dirty(jf_ctx_wcache(ctx), ctx->auth->tenant, id);
    char *tags = tags_text(json_object_get(ctx->body, "tags"));
    if (tags == NULL)
        return JF_ERR_NOMEM;
    err = jf_db_run(ctx->db,
                    "INSERT INTO members(tenant_id, id, external_id, name, phone, birthday, tags,"
                    " status, created_at, updated_at, referred_by)"
                    " VALUES(?,?,?,?,?,?,?,'active',?,?,?)",
                    "IssssssIIs", ctx->auth->tenant, id, ext, body_text(ctx, "name"),
                    body_text(ctx, "phone"), body_text(ctx, "birthday"), tags, ctx->now_ms,
                    ctx->now_ms, referrer[0] ? referrer : NULL);
    free(tags);
    /* A read of the new member waits for this commit (syncer.c), even when
     * nothing in it writes the member's entries. */
    if (err == JF_OK)
        jf_member_written(ctx, sqlite3_last_insert_rowid(ctx->db->h));
    int64_t got = 0;
    if (err == JF_OK && referrer[0])
        err = jf_referral_reward(ctx, id, "signup", &got);
    if (err == JF_OK)
        err = jf_bonus_signup(ctx, id);
    if (err == JF_OK)
        err = jf_bonus_birthday_due(ctx, id, body_text(ctx, "birthday"));
    if (err == JF_OK && (err = member_render_by(ctx, false, id)) == JF_OK)
        ctx->created = true;
    return err;
}

static jf_err member_update_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"name", "phone", "birthday", "tags", "status", NULL};
    const char *s = NULL;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = profile_validate(ctx, ctx->body);
    if (err == JF_OK && (err = jf_json_str(ctx, ctx->body, "status", false, 12, &s)) == JF_OK &&
        s && strcmp(s, "active") && strcmp(s, "frozen") && strcmp(s, "closed"))
        err = jf_fail(ctx, JF_ERR_INVALID_FIELD, "'status' must be active, frozen or closed.");
    return err;
}

/* Sets one nullable text column when the body names it. */
static jf_err member_set_text(jf_ctx *ctx, const char *field, const char *sql)
{
    json_t *v = json_object_get(ctx->body, field);
    if (v == NULL)
        return JF_OK;
    return jf_db_run(ctx->db, sql, "sIs", json_string_value(v), ctx->auth->tenant, ctx->path_id);
}

static jf_err member_update(jf_ctx *ctx)
{
    jf_member m;
    jf_err err = jf_member_load(ctx, ctx->path_id, &m);
    if (err != JF_OK)
        return err;
    if (strcmp(m.status, "closed") == 0)
        return jf_fail(ctx, JF_ERR_MEMBER_CLOSED, "Member '%s' is closed.", m.id);
    jf_wcache_member_dirty(jf_ctx_wcache(ctx), ctx->auth->tenant, m.id);
    err = member_set_text(ctx, "name", "UPDATE members SET name=? WHERE tenant_id=? AND id=?");
    if (err == JF_OK)
        err =
            member_set_text(ctx, "phone", "UPDATE members SET phone=? WHERE tenant_id=? AND id=?");
    if (err == JF_OK)
        err = member_set_text(ctx, "birthday",
                              "UPDATE members SET birthday=? WHERE tenant_id=? AND id=?");
    if (err == JF_OK && json_object_get(ctx->body, "status") &&
        !json_is_null(json_object_get(ctx->body, "status")))
        err = member_set_text(ctx, "status",
                              "UPDATE members SET status=? WHERE tenant_id=? AND id=?");
    if (err == JF_OK && json_object_get(ctx->body, "tags")) {
        char *tags = tags_text(json_object_get(ctx->body, "tags"));
        err = tags ? jf_db_run(ctx->db, "UPDATE members SET tags=? WHERE tenant_id=? AND id=?",
                               "sIs", tags, ctx->auth->tenant, ctx->path_id)
                   : JF_ERR_NOMEM;
        free(tags);
    }
    if (err == JF_OK)
        err = jf_db_run(ctx->db, "UPDATE members SET updated_at=? WHERE tenant_id=? AND id=?",
                        "IIs", ctx->now_ms, ctx->auth->tenant, ctx->path_id);
    return err == JF_OK ? member_render_by(ctx, false, ctx->path_id) : err;
}

static jf_err member_list(jf_ctx *ctx)
{
    int64_t limit, cursor;
    jf_err err = jf_list_params(ctx, &limit, &cursor);
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        MEMBER_COLUMNS " WHERE tenant_id = ?1 AND seq > ?2 AND (?3 IS NULL OR external_id = ?3)"
                       " AND (?4 IS NULL OR phone = ?4)"
                       " AND (?5 IS NULL OR substr(name, 1, length(?5)) = ?5)"
                       " AND (?6 IS NULL OR EXISTS(SELECT 1 FROM json_each(tags) WHERE value = ?6))"
                       " AND (?7 IS NULL OR status = ?7) ORDER BY seq LIMIT ?8",
        "IIsssssI", ctx->auth->tenant, cursor, jf_param_get(ctx, "external_id"),
        jf_param_get(ctx, "phone"), jf_param_get(ctx, "name"), jf_param_get(ctx, "tag"),
        jf_param_get(ctx, "status"), limit + 1);
    return jf_list_rows(ctx, st, limit, 10, member_json);
}

const jf_op_impl jf_op_member_create = {member_create_validate, member_create};
const jf_op_impl jf_op_member_get = {NULL, member_get};
const jf_op_impl jf_op_member_get_external = {NULL, member_get_external};
const jf_op_impl jf_op_member_update = {member_update_validate, member_update};
const jf_op_impl jf_op_member_list = {NULL, member_list};
