/*
 * Strict JSON decoding of request bodies and small encoding helpers.
 *
 * Bodies are parsed (jsonr.c, into jansson's values) with duplicate keys
 * rejected; then each handler names the fields it accepts, so an unknown or
 * misspelt field is a 400 rather than silently ignored.  Integers are
 * checked against the points range (±(2^53−1)) before any handler-specific
 * bound.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tz.h"

/* Whether one of jansson's allocations failed on this thread since the last
 * reset (jf_json_alloc_reset, as a command starts).  A tree built with a
 * failed json_string() or json_object_set_new() silently lacks a field,
 * which a stored version or a reply must not (ctx_finish), and json_dumps
 * may still return text with a key left out (jf_json_dumps_whole). */
static _Thread_local bool json_alloc_failed;

static void *json_alloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        json_alloc_failed = true;
    return p;
}

static void json_hooks_install(void)
{
    json_set_alloc_funcs(json_alloc, free);
}

/* Parses text (len bytes) by jsonr.c; NULL and *failed when an allocation
 * failed on the way (the tree, had there been one, is freed), NULL with the
 * fault in *e when the text is not JSON. */
static json_t *json_parse(const char *text, size_t len, size_t flags, jf_json_read_error *e,
                          int *depth, bool *failed)
{
    /* The hooks, in a process that has not opened an engine yet (a unit
     * test, the CLI). */
    jf_json_init();
    bool failed_before = json_alloc_failed;
    json_alloc_failed = false;
    json_t *v = jf_json_read(text, len, flags, depth, e);
    *failed = json_alloc_failed || e->fault == JF_JSON_FAULT_NOMEM;
    json_alloc_failed = failed_before || *failed;
    if (*failed) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

void jf_json_alloc_reset(void)
{
    json_alloc_failed = false;
}

void jf_json_alloc_note_failure(void)
{
    json_alloc_failed = true;
}

bool jf_json_alloc_failed(void)
{
    return json_alloc_failed;
}

void jf_json_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, json_hooks_install);
}

char *jf_json_dumps_whole(const json_t *v, size_t flags)
{
    bool failed_before = json_alloc_failed;
    json_alloc_failed = false;
    char *s = json_dumps(v, flags);
    bool failed = json_alloc_failed;
    json_alloc_failed = failed_before || failed;
    if (s && failed) {
        free(s);
        s = NULL;
    }
    return s;
}

json_t *jf_json_loads_whole(const char *text, size_t flags)
{
    jf_json_read_error e;
    bool failed;
    return text ? json_parse(text, strlen(text), flags, &e, NULL, &failed) : NULL;
}

jf_err jf_json_parse_body(jf_ctx *ctx, const char *text, size_t len, json_t **out)
{
    jf_json_read_error e;
    *out = NULL;
    bool bulk = ctx->op == JF_OP_BATCH || ctx->op == JF_OP_TIER_IMPORT;
    if (len > (bulk ? JF_BATCH_BODY_BYTES_MAX : JF_BODY_BYTES_MAX))
        return JF_ERR_PAYLOAD_TOO_LARGE;
    bool failed;
    int depth = 0;
    json_t *v = json_parse(text, len, JSON_REJECT_DUPLICATES, &e, &depth, &failed);
    if (failed)
        return JF_ERR_NOMEM;
    if (v == NULL && e.fault == JF_JSON_FAULT_DUPLICATE)
        return jf_fail(ctx, JF_ERR_DUPLICATE_FIELD, "%s", e.text);
    if (v == NULL && e.fault == JF_JSON_FAULT_TOO_BIG)
        return jf_fail(ctx, JF_ERR_AMOUNT_OUT_OF_RANGE, "%s", e.text);
    if (v == NULL && e.fault != JF_JSON_FAULT_DEPTH)
        return jf_fail(ctx, JF_ERR_INVALID_JSON, "%s at line %d column %d", e.text, e.line,
                       e.column);
    if (v == NULL || !json_is_object(v) ||
        depth > JF_JSON_DEPTH_MAX + (ctx->op == JF_OP_BATCH ? 3 : 0)) {
        json_decref(v);
        return jf_fail(ctx, JF_ERR_INVALID_JSON, "The body must be a JSON object of depth <= %d.",
                       JF_JSON_DEPTH_MAX);
    }
    *out = v;
    return JF_OK;
}

jf_err jf_json_allow(jf_ctx *ctx, json_t *obj, const char *const *fields)
{
    return jf_json_pick(ctx, obj, fields, NULL);
}

const char *jf_json_fields(json_t *obj, const char *const *fields, json_t **vals)
{
    const char *k;
    json_t *v;
    size_t n = 0;
    for (; fields[n]; n++)
        if (vals)
            vals[n] = NULL;
    json_object_foreach(obj, k, v)
    {
        size_t i = 0;
        while (i < n && strcmp(fields[i], k) != 0)
            i++;
        if (i == n)
            return k;
        if (vals)
            vals[i] = v;
    }
    return NULL;
}

jf_err jf_json_pick(jf_ctx *ctx, json_t *obj, const char *const *fields, json_t **vals)
{
    const char *unknown = jf_json_fields(obj, fields, vals);
    return unknown ? jf_fail(ctx, JF_ERR_UNKNOWN_FIELD, "Unknown field '%s'.", unknown) : JF_OK;
}

jf_err jf_json_int(jf_ctx *ctx, json_t *obj, const char *field, bool required, int64_t min,
                   int64_t max, int64_t *out, bool *present)
{
    return jf_json_int_of(ctx, json_object_get(obj, field), field, required, min, max, out,
                          present);
}

jf_err jf_json_int_of(jf_ctx *ctx, json_t *v, const char *field, bool required, int64_t min,
                      int64_t max, int64_t *out, bool *present)
{
    if (present)
        *present = v != NULL;
    if (v == NULL)
        return required ? jf_fail(ctx, JF_ERR_MISSING_FIELD, "'%s' is required.", field) : JF_OK;
    if (!json_is_integer(v))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be an integer.", field);
    int64_t n = json_integer_value(v);
    if (!jf_points_in_range(n))
        return jf_fail(ctx, JF_ERR_AMOUNT_OUT_OF_RANGE, "'%s' must be within ±9007199254740991.",
                       field);
    if (n < min || n > max)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be between %lld and %lld.", field,
                       (long long)min, (long long)max);
    *out = n;
    return JF_OK;
}

jf_err jf_json_str(jf_ctx *ctx, json_t *obj, const char *field, bool required, size_t max_len,
                   const char **out)
{
    return jf_json_str_of(ctx, json_object_get(obj, field), field, required, max_len, out);
}

jf_err jf_json_str_of(jf_ctx *ctx, json_t *v, const char *field, bool required, size_t max_len,
                      const char **out)
{
    if (v == NULL || (json_is_null(v) && !required))
        return required ? jf_fail(ctx, JF_ERR_MISSING_FIELD, "'%s' is required.", field) : JF_OK;
    if (!json_is_string(v))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be a string.", field);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > max_len || memchr(s, '\0', n) != NULL)
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be 1 to %zu characters.", field,
                       max_len);
    *out = s;
    return JF_OK;
}

jf_err jf_json_time(jf_ctx *ctx, json_t *obj, const char *field, bool required, int64_t *out,
                    bool *present)
{
    const char *s = NULL;
    if (present)
        *present = false;
    jf_err err = jf_json_str(ctx, obj, field, required, 64, &s);
    if (err != JF_OK || s == NULL)
        return err;
    if (!jf_time_parse_rfc3339(s, out))
        return jf_fail(ctx, JF_ERR_INVALID_FIELD, "'%s' must be an RFC 3339 time.", field);
    if (present)
        *present = true;
    return JF_OK;
}

json_t *jf_json_time_value(int64_t ms)
{
    if (ms < 0)
        return json_null();
    char buf[JF_TIME_BUF];
    jf_time_format_rfc3339(ms, buf);
    return json_string(buf);
}

void jf_jt_time(jf_jtext *b, int64_t ms)
{
    if (ms < 0) {
        jf_jt_raw(b, "null");
        return;
    }
    char buf[JF_TIME_BUF];
    jf_time_format_rfc3339(ms, buf);
    jf_jt_str(b, buf);
}

json_t *jf_json_text(const char *s)
{
    return s ? json_string(s) : json_null();
}

void jf_json_set(json_t *obj, const char *k, json_t *v)
{
    json_object_set_new(obj, k, v ? v : json_null());
}

/* ---- query parameters and lists ---- */

const char *jf_param_get(const jf_ctx *ctx, const char *name)
{
    if (ctx->req == NULL)
        return NULL;
    for (size_t i = 0; i < ctx->req->param_count; i++)
        if (ctx->req->params[i].name && strcmp(ctx->req->params[i].name, name) == 0)
            return ctx->req->params[i].value ? ctx->req->params[i].value : "";
    return NULL;
}

static bool parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0' || strlen(s) > 18)
        return false;
    int64_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        n = n * 10 + (*p - '0');
    }
    *out = n;
    return true;
}

jf_err jf_param_limit(jf_ctx *ctx, int64_t *limit)
{
    const char *s = jf_param_get(ctx, "limit");
    *limit = JF_LIST_LIMIT_DEFAULT;
    if (s == NULL)
        return JF_OK;
    if (!parse_i64(s, limit) || *limit < 1 || *limit > JF_LIST_LIMIT_MAX)
        return jf_fail(ctx, JF_ERR_INVALID_REQUEST, "limit must be an integer from 1 to %d.",
                       JF_LIST_LIMIT_MAX);
    return JF_OK;
}

/* Cursors are "c" followed by the position to continue after. */
jf_err jf_param_cursor(jf_ctx *ctx, int64_t *cursor)
{
    const char *s = jf_param_get(ctx, "cursor");
    *cursor = -1;
    if (s == NULL)
        return JF_OK;
    if (s[0] != 'c' || !parse_i64(s + 1, cursor))
        return jf_fail(ctx, JF_ERR_INVALID_CURSOR, "The cursor is not one this API issued.");
    return JF_OK;
}

jf_err jf_list_params(jf_ctx *ctx, int64_t *limit, int64_t *cursor)
{
    jf_err err = jf_param_limit(ctx, limit);
    if (err == JF_OK)
        err = jf_param_cursor(ctx, cursor);
    return err;
}

/* A page's next_cursor as the API spells it: "c" and the last row's key. */
static void cursor_name(char buf[32], int64_t next_cursor)
{
    snprintf(buf, 32, "c%lld", (long long)next_cursor);
}

json_t *jf_list_envelope(json_t *data, int64_t next_cursor)
{
    json_t *o = json_object();
    json_object_set_new(o, "data", data);
    if (next_cursor >= 0) {
        char buf[32];
        cursor_name(buf, next_cursor);
        json_object_set_new(o, "next_cursor", json_string(buf));
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    return o;
}

/* Steps st (limit + 1 rows) and hands each row to be shown to each(arg);
 * *next gets the cursor of the last row shown when another row followed it,
 * else -1.  Resets st. */
static jf_err list_each(sqlite3_stmt *st, int64_t limit, int cursor_col,
                        jf_err (*each)(sqlite3_stmt *st, int64_t n, void *arg), void *arg,
                        int64_t *next)
{
    int64_t n = 0, last = -1;
    jf_err err = JF_OK;
    *next = -1;
    while (err == JF_OK && jf_db_step(st) == SQLITE_ROW) {
        if (n == limit) {
            *next = last;
            break;
        }
        err = each(st, n++, arg);
        last = sqlite3_column_int64(st, cursor_col);
    }
    sqlite3_reset(st);
    return err;
}

typedef struct list_tree {
    jf_ctx *ctx;
    jf_row_fn row;
    json_t *data;
} list_tree;

static jf_err list_tree_row(sqlite3_stmt *st, int64_t n, void *arg)
{
    (void)n;
    list_tree *l = arg;
    json_t *item = NULL;
    jf_err err = l->row(l->ctx, st, &item);
    if (err == JF_OK)
        json_array_append_new(l->data, item);
    return err;
}

jf_err jf_list_rows(jf_ctx *ctx, sqlite3_stmt *st, int64_t limit, int cursor_col, jf_row_fn row)
{
    if (st == NULL)
        return JF_ERR_IO;
    list_tree l = {ctx, row, json_array()};
    int64_t next = -1;
    jf_err err = list_each(st, limit, cursor_col, list_tree_row, &l, &next);
    if (err != JF_OK) {
        json_decref(l.data);
        return err;
    }
    json_decref(ctx->out);
    ctx->out = jf_list_envelope(l.data, next);
    return JF_OK;
}

typedef struct list_text {
    jf_ctx *ctx;
    jf_row_text_fn row;
    jf_jtext b;
} list_text;

static jf_err list_text_row(sqlite3_stmt *st, int64_t n, void *arg)
{
    list_text *l = arg;
    if (n > 0)
        jf_jt_raw(&l->b, ",");
    return l->row(l->ctx, st, &l->b);
}

void jf_list_text_begin(jf_jtext *b)
{
    jf_jt_raw(b, "{\"data\":[");
}

void jf_list_text_end(jf_jtext *b, int64_t next_cursor)
{
    jf_jt_raw(b, "],\"next_cursor\":");
    if (next_cursor >= 0) {
        char buf[32];
        cursor_name(buf, next_cursor);
        jf_jt_str(b, buf);
    } else {
        jf_jt_raw(b, "null");
    }
    jf_jt_raw(b, "}");
}

jf_err jf_reply_text(jf_ctx *ctx, jf_jtext *b, jf_err err)
{
    size_t len = 0;
    char *text = jf_jt_take(b, &len);
    if (err == JF_OK && text == NULL)
        err = JF_ERR_NOMEM;
    if (err != JF_OK) {
        free(text);
        return err;
    }
    free(ctx->reply_body);
    ctx->reply_body = text;
    ctx->reply_body_len = len;
    return JF_OK;
}

jf_err jf_list_rows_text(jf_ctx *ctx, sqlite3_stmt *st, int64_t limit, int cursor_col,
                         jf_row_text_fn row)
{
    if (st == NULL)
        return JF_ERR_IO;
    list_text l = {.ctx = ctx, .row = row};
    int64_t next = -1;
    jf_list_text_begin(&l.b);
    jf_err err = list_each(st, limit, cursor_col, list_text_row, &l, &next);
    jf_list_text_end(&l.b, next);
    return jf_reply_text(ctx, &l.b, err);
}

jf_err jf_param_open_only(jf_ctx *ctx, bool *open_only)
{
    const char *status = jf_param_get(ctx, "status");
    *open_only = status && strcmp(status, "open") == 0;
    if (status && !*open_only && strcmp(status, "all") != 0)
        return jf_fail(ctx, JF_ERR_INVALID_REQUEST, "status must be open or all.");
    return JF_OK;
}
