/*
 * Signup and birthday bonuses (bonus.h).
 */
#include <assert.h>
#include <string.h>

#include "bonus.h"
#include "ledger.h"
#include "rules.h"
#include "tz.h"

#define SWEEP_SLICE 256

/* Evaluates the live rules of kind for member and records the grant of
 * period; nothing at all when no rule of the kind is live. */
static jf_err grant(jf_ctx *ctx, const char *member_id, const char *kind, const char *period)
{
    int64_t done = 0, total = 0;
    size_t n = 0, live = 0;
    char tx_id[JF_ID_LEN_MAX] = "";
    jf_err err = jf_db_int(ctx->db, &done, 0,
                           "SELECT count(*) FROM bonus_grants WHERE tenant_id=? AND member_id=?"
                           " AND kind=? AND period=?",
                           "Isss", ctx->auth->tenant, member_id, kind, period);
    if (err != JF_OK || done)
        return err;
    jf_award *aw = jf_awards_new();
    err = aw ? jf_rules_awards(ctx, member_id, kind, NULL, NULL, aw, &n, &live) : JF_ERR_NOMEM;
    for (size_t i = 0; err == JF_OK && i < n; i++)
        if (!jf_points_add_checked(total, aw[i].points, &total))
            err = jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The %s bonus is too large.", kind);
    if (err == JF_OK && total > 0)
        err = jf_awards_earn(ctx, member_id, aw, n, total,
                             json_pack("{ssss}", "bonus", kind, "period", period), false, tx_id);
    free(aw);
    if (err == JF_OK && live > 0)
        err = jf_db_run(ctx->db,
                        "INSERT INTO bonus_grants(tenant_id, member_id, kind, period, points,"
                        " tx_id, created_at) VALUES(?,?,?,?,?,?,?)",
                        "IsssIsI", ctx->auth->tenant, member_id, kind, period, total,
                        tx_id[0] ? tx_id : NULL, ctx->now_ms);
    return err;
}

jf_err jf_bonus_signup(jf_ctx *ctx, const char *member_id)
{
    return grant(ctx, member_id, "signup", "ever");
}

/* The local year of now as the birthday grant's period. */
static jf_err birthday_period(jf_ctx *ctx, const jf_tz **tz, char period[8])
{
    jf_civil c;
    if (jf_tz_get(ctx->prog.timezone, tz) != JF_OK)
        return jf_fail(ctx, JF_ERR_UNKNOWN_TIMEZONE, "Unknown time zone '%s'.", ctx->prog.timezone);
    jf_tz_to_civil(*tz, ctx->now_ms, &c);
    snprintf(period, 8, "%04d", c.year);
    return JF_OK;
}

jf_err jf_bonus_birthday_due(jf_ctx *ctx, const char *member_id, const char *birthday)
{
    const jf_tz *tz = NULL;
    char period[8];
    if (birthday == NULL || !birthday[0])
        return JF_OK;
    jf_err err = birthday_period(ctx, &tz, period);
    if (err != JF_OK || !jf_rule_birthday_today(tz, ctx->now_ms, birthday))
        return err;
    return grant(ctx, member_id, "birthday", period);
}

/* One slice: members whose birthday month and day are today's (and 29
 * February in a common year's 28 February) without this year's grant. */
static jf_err bonus_sweep(jf_ctx *ctx)
{
    const jf_tz *tz = NULL;
    char period[8], md[8], leap_md[8] = "--", ids[SWEEP_SLICE][JF_ID_LEN_MAX];
    jf_civil c;
    int n = 0;
    jf_err err = birthday_period(ctx, &tz, period);
    if (err != JF_OK)
        return err;
    jf_tz_to_civil(tz, ctx->now_ms, &c);
    snprintf(md, sizeof md, "-%02d-%02d", c.month, c.day);
    bool leap = (c.year % 4 == 0 && c.year % 100 != 0) || c.year % 400 == 0;
    if (c.month == 2 && c.day == 28 && !leap)
        snprintf(leap_md, sizeof leap_md, "-02-29");
    /* By the members born on the day (schema version 14): the planner would
     * rather walk members_page in seq order (version 16), every member of
     * the tenant, to save sorting the day's few. */
    sqlite3_stmt *st = jf_db_query(
        ctx->db,
        "SELECT m.id FROM members m INDEXED BY members_birthday WHERE m.tenant_id=?1 AND"
        " m.status='active' AND"
        " substr(m.birthday, 5) IN (?2, ?3) AND NOT EXISTS (SELECT 1"
        " FROM bonus_grants g WHERE g.tenant_id=?1 AND g.member_id=m.id AND g.kind='birthday'"
        " AND g.period=?4) AND EXISTS (SELECT 1 FROM rules r WHERE r.tenant_id=?1 AND"
        " r.trigger='birthday' AND r.status='active') ORDER BY m.seq LIMIT ?5",
        "IsssI", ctx->auth->tenant, md, leap_md, period, (int64_t)SWEEP_SLICE);
    if (st == NULL)
        return JF_ERR_IO;
    while (n < SWEEP_SLICE && jf_db_step(st) == SQLITE_ROW)
        jf_str_copy(ids[n++], JF_ID_LEN_MAX, jf_db_text(st, 0));
    sqlite3_reset(st);
    for (int i = 0; i < n && err == JF_OK; i++)
        err = grant(ctx, ids[i], "birthday", period);
    if (err != JF_OK)
        return err;
    ctx->acc[0] += n;
    ctx->again = n == SWEEP_SLICE;
    jf_json_set(ctx->out, "birthday_members", json_integer(ctx->acc[0]));
    return JF_OK;
}

const jf_op_impl jf_op_bonus_sweep = {NULL, bonus_sweep};
