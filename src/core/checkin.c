/*
 * Daily check-in (checkin.h; docs/RULES.md, Check-in).
 *
 * The day is the local date of the engine clock in the program's time zone
 * (tz.h, never glibc's TZ), so a member in Shanghai checks in once between
 * 16:00Z and 16:00Z.  A check-in is one immutable row per member and day;
 * the streak is yesterday's streak plus one, or 1 after a missed day.  Live
 * rules with trigger "check_in" decide the points (a "check_in" effect with
 * a streak bonus table, or "fixed"), with their limits counted on the writer
 * like every rule; the points are an ordinary earn whose awards name the
 * rules.  A check-in with no points is still recorded (the streak counts).
 */
#include <assert.h>
#include <string.h>

#include "checkin.h"
#include "ledger.h"
#include "rules.h"
#include "tz.h"

#define DATE_LEN 11 /* "YYYY-MM-DD" and NUL */

static jf_err program_tz(jf_ctx *ctx, const jf_tz **tz)
{
    if (jf_tz_get(ctx->prog.timezone, tz) != JF_OK)
        return jf_fail(ctx, JF_ERR_UNKNOWN_TIMEZONE, "Unknown time zone '%s'.", ctx->prog.timezone);
    return JF_OK;
}

/* The local date `days_back` days before the one containing now. */
static void local_date(const jf_tz *tz, int64_t now_ms, int days_back, char out[DATE_LEN])
{
    jf_civil c;
    int y, m, d;
    jf_tz_to_civil(tz, now_ms, &c);
    jf_civil_from_days(jf_days_from_civil(c.year, c.month, c.day) - days_back, &y, &m, &d);
    snprintf(out, DATE_LEN, "%04d-%02d-%02d", y, m, d);
}

/* The streak recorded for member on day, 0 when they did not check in. */
static jf_err streak_on(jf_ctx *ctx, const char *member_id, const char *day, int64_t *streak)
{
    return jf_db_int(ctx->db, streak, 0,
                     "SELECT streak FROM checkins WHERE tenant_id=? AND member_id=? AND day=?",
                     "Iss", ctx->auth->tenant, member_id, day);
}

static jf_err checkin_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"channel", "store_id", "note", NULL};
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    return err == JF_OK ? jf_args_common(ctx) : err;
}

/* The answer: the check-in, its awards, its transaction and the points. */
static jf_err checkin_reply(jf_ctx *ctx, const char *member_id, const char *day, int64_t streak,
                            const jf_award *aw, size_t n, int64_t total, const char *tx_id)
{
    json_t *tx = NULL, *pts = NULL;
    jf_err err = tx_id[0] ? jf_tx_json(ctx, tx_id, false, &tx) : JF_OK;
    if (err == JF_OK)
        err = jf_member_points_json(ctx, member_id, &pts);
    if (err != JF_OK) {
        json_decref(tx);
        return err;
    }
    jf_json_set(ctx->out, "check_in",
                json_pack("{sssIsI}", "date", day, "streak", (json_int_t)streak, "points",
                          (json_int_t)total));
    jf_json_set(ctx->out, "awards", jf_awards_array(aw, n));
    jf_json_set(ctx->out, "transaction", tx);
    jf_json_set(ctx->out, "points", pts);
    ctx->created = true;
    return JF_OK;
}

static jf_err checkin_apply(jf_ctx *ctx)
{
    const jf_tz *tz = NULL;
    jf_member m;
    char today[DATE_LEN], yesterday[DATE_LEN], tx_id[JF_ID_LEN_MAX] = "";
    int64_t done = 0, streak = 0, total = 0;
    size_t n = 0, live = 0;
    jf_award *aw = jf_awards_new();
    jf_err err = aw ? program_tz(ctx, &tz) : JF_ERR_NOMEM;
    if (err == JF_OK)
        err = jf_member_writable(ctx, ctx->path_id, &m);
    if (err == JF_OK) {
        local_date(tz, ctx->now_ms, 0, today);
        local_date(tz, ctx->now_ms, 1, yesterday);
        err = streak_on(ctx, m.id, today, &done);
    }
    if (err == JF_OK && done)
        err = jf_fail(ctx, JF_ERR_ALREADY_CHECKED_IN, "Member '%s' already checked in on %s.", m.id,
                      today);
    if (err == JF_OK && (err = streak_on(ctx, m.id, yesterday, &streak)) == JF_OK)
        streak++;
    jf_trigger_facts tf = {.streak = streak};
    if (err == JF_OK)
        err = jf_rules_awards(ctx, m.id, "check_in", NULL, &tf, aw, &n, &live);
    for (size_t i = 0; err == JF_OK && i < n; i++)
        if (!jf_points_add_checked(total, aw[i].points, &total))
            err = jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The check-in earns too many points.");
    if (err == JF_OK && total > 0)
        err = jf_awards_earn(ctx, m.id, aw, n, total,
                             json_pack("{sssI}", "check_in", today, "streak", (json_int_t)streak),
                             true, tx_id);
    if (err == JF_OK)
        err = jf_db_run(ctx->db,
                        "INSERT INTO checkins(tenant_id, member_id, day, streak, points, tx_id,"
                        " created_at) VALUES(?,?,?,?,?,?,?)",
                        "IssIIsI", ctx->auth->tenant, m.id, today, streak, total,
                        tx_id[0] ? tx_id : NULL, ctx->now_ms);
    assert(err != JF_OK || streak >= 1);
    if (err == JF_OK)
        err = checkin_reply(ctx, m.id, today, streak, aw, n, total, tx_id);
    free(aw);
    return err;
}

/* ---- GET /v1/members/{id}/check-in?month=YYYY-MM ---- */

/* Parses ?month=YYYY-MM, defaulting to the local month of now. */
static jf_err month_param(jf_ctx *ctx, const jf_tz *tz, char out[8])
{
    const char *p = jf_param_get(ctx, "month");
    int y, m, d;
    char date[DATE_LEN];
    if (p == NULL) {
        local_date(tz, ctx->now_ms, 0, date);
        snprintf(out, 8, "%.7s", date);
        return JF_OK;
    }
    snprintf(date, sizeof date, "%.7s-01", p);
    if (strlen(p) != 7 || !jf_date_parse(date, &y, &m, &d))
        return jf_fail(ctx, JF_ERR_INVALID_REQUEST, "'month' must be YYYY-MM.");
    jf_str_copy(out, 8, p);
    return JF_OK;
}

static jf_err checkin_calendar(jf_ctx *ctx)
{
    const jf_tz *tz = NULL;
    jf_member m;
    char month[8], today[DATE_LEN], yesterday[DATE_LEN], like[10];
    int64_t streak = 0;
    jf_err err = program_tz(ctx, &tz);
    if (err == JF_OK)
        err = jf_member_load(ctx, ctx->path_id, &m);
    if (err == JF_OK)
        err = month_param(ctx, tz, month);
    if (err != JF_OK)
        return err;
    local_date(tz, ctx->now_ms, 0, today);
    local_date(tz, ctx->now_ms, 1, yesterday);
    bool checked_today = false;
    if ((err = streak_on(ctx, m.id, today, &streak)) == JF_OK && streak > 0)
        checked_today = true;
    else if (err == JF_OK)
        err = streak_on(ctx, m.id, yesterday, &streak); /* still alive until today ends */
    snprintf(like, sizeof like, "%s-%%", month);
    sqlite3_stmt *st = err == JF_OK ? jf_db_query(ctx->db,
                                                  "SELECT day, streak, points FROM checkins WHERE"
                                                  " tenant_id=? AND member_id=? AND day LIKE ?"
                                                  " ORDER BY day",
                                                  "Iss", ctx->auth->tenant, m.id, like)
                                    : NULL;
    if (err != JF_OK || st == NULL)
        return err != JF_OK ? err : JF_ERR_IO;
    json_t *days = json_array();
    while (jf_db_step(st) == SQLITE_ROW)
        json_array_append_new(days, json_pack("{sssIsI}", "date", jf_db_text(st, 0), "streak",
                                              (json_int_t)sqlite3_column_int64(st, 1), "points",
                                              (json_int_t)sqlite3_column_int64(st, 2)));
    sqlite3_reset(st);
    jf_json_set(ctx->out, "member_id", json_string(m.id));
    jf_json_set(ctx->out, "month", json_string(month));
    jf_json_set(ctx->out, "today", json_string(today));
    jf_json_set(ctx->out, "checked_in_today", json_boolean(checked_today));
    jf_json_set(ctx->out, "current_streak", json_integer(streak));
    jf_json_set(ctx->out, "days", days);
    return JF_OK;
}

const jf_op_impl jf_op_check_in = {checkin_validate, checkin_apply};
const jf_op_impl jf_op_check_in_calendar = {NULL, checkin_calendar};
