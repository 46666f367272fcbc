/*
 * POST /v1/batch: many point operations in one request, each with its own
 * idempotency key and its own result (a bulk import, an offline till
 * catching up, a nightly job).
 *
 * The batch is one writer command.  Every operation is validated on the
 * caller's thread exactly as its single endpoint would; each valid one is
 * applied as its own command (engine.c, jf_writer_apply), so one refusal
 * (insufficient points) changes nothing for its neighbours.  The writer
 * applies the operations in order, in slices (JF_BATCH_SLICE_OPS or
 * JF_BATCH_SLICE_US, whichever ends first) that commit one by one, and
 * parks the batch between slices like a sliced job, so single requests
 * queued meanwhile go first.  The answer goes out once the last slice is
 * durable.  A crash between slices leaves the earlier ones written: a retry
 * of the batch replays each of those from its key and applies the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"

typedef struct batch_op_name {
    const char *name;
    jf_op op;
} batch_op_name;

static const batch_op_name batch_ops[] = {
    {"earn", JF_OP_EARN},         {"redeem", JF_OP_REDEEM},   {"adjust", JF_OP_ADJUST},
    {"transfer", JF_OP_TRANSFER}, {"hold", JF_OP_HOLD},       {"capture", JF_OP_HOLD_CAPTURE},
    {"void", JF_OP_HOLD_VOID},    {"reverse", JF_OP_REVERSE},
};

static bool batch_op_lookup(const char *name, jf_op *op)
{
    for (size_t i = 0; name && i < sizeof(batch_ops) / sizeof(batch_ops[0]); i++) {
        if (strcmp(batch_ops[i].name, name) == 0) {
            *op = batch_ops[i].op;
            return true;
        }
    }
    return false;
}

static jf_err sub_fail(jf_cmd *sub, jf_err err, const char *detail)
{
    if (detail)
        jf_str_copy(sub->res.detail, sizeof(sub->res.detail), detail);
    sub->res.err = err;
    return err;
}

/* Reads one element of "operations" into sub; an error is the sub's result. */
static jf_err sub_parse(jf_cmd *sub, json_t *e)
{
    static const char *const fields[] = {"op", "id", "idempotency_key", "body", NULL};
    if (!json_is_object(e))
        return sub_fail(sub, JF_ERR_INVALID_FIELD, "Each operation must be an object.");
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v)
    {
        bool known = false;
        for (const char *const *f = fields; *f; f++)
            known = known || strcmp(*f, k) == 0;
        if (!known)
            return sub_fail(sub, JF_ERR_UNKNOWN_FIELD, "Unknown field in an operation.");
    }
    if (!batch_op_lookup(json_string_value(json_object_get(e, "op")), &sub->op))
        return sub_fail(sub, JF_ERR_INVALID_FIELD,
                        "'op' must be earn, redeem, adjust, transfer, hold, capture, void or "
                        "reverse.");
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *key = json_string_value(json_object_get(e, "idempotency_key"));
    json_t *body = json_object_get(e, "body");
    if (id == NULL || *id == '\0' || strlen(id) >= JF_ID_LEN_MAX)
        return sub_fail(sub, JF_ERR_MISSING_FIELD, "'id' names the member, hold or transaction.");
    if (key == NULL)
        return sub_fail(sub, JF_ERR_IDEMPOTENCY_KEY_REQUIRED, NULL);
    if (!jf_idem_key_valid(key))
        return sub_fail(sub, JF_ERR_INVALID_IDEMPOTENCY_KEY, NULL);
    if (body != NULL && !json_is_object(body))
        return sub_fail(sub, JF_ERR_INVALID_FIELD, "'body' must be an object.");
    sub->path_id = strdup(id);
    sub->idem_key = strdup(key);
    sub->body = body ? json_incref(body) : json_object();
    if (sub->path_id == NULL || sub->idem_key == NULL || sub->body == NULL)
        return sub_fail(sub, JF_ERR_NOMEM, NULL);
    return JF_OK;
}

/* Validates one operation as its own endpoint would and claims its key. */
static void sub_prepare(jf_engine *eng, const jf_request *req, jf_cmd *cmd, jf_cmd *sub, json_t *e)
{
    sub->auth = cmd->auth;
    jf_err err = sub_parse(sub, e);
    if (err == JF_OK && !jf_op_allows(sub->op, sub->auth.role))
        err = sub_fail(sub, JF_ERR_FORBIDDEN, "This API key's role may not run this operation.");
    if (err == JF_OK && (err = jf_cmd_validate(eng, req, sub)) != JF_OK)
        sub->res.err = err;
    if (err == JF_OK && (err = jf_inflight_add(eng, sub->auth.tenant, sub->idem_key)) != JF_OK)
        sub_fail(sub, err, NULL);
    else if (err == JF_OK)
        sub->claimed = true;
}

jf_err jf_batch_prepare(jf_engine *eng, const jf_request *req, jf_cmd *cmd)
{
    static const char *const fields[] = {"operations", NULL};
    json_t *ops = json_object_get(cmd->body, "operations");
    const char *k;
    json_t *v;
    json_object_foreach(cmd->body, k, v)
    {
        if (strcmp(k, fields[0]) != 0)
            return sub_fail(cmd, JF_ERR_UNKNOWN_FIELD, "A batch body has only 'operations'.");
    }
    if (cmd->idem_key)
        return sub_fail(cmd, JF_ERR_INVALID_REQUEST,
                        "A batch takes no Idempotency-Key: each operation carries its own.");
    if (!json_is_array(ops) || json_array_size(ops) < 1 || json_array_size(ops) > JF_BATCH_OPS_MAX)
        return sub_fail(cmd, JF_ERR_INVALID_FIELD,
                        "'operations' must be an array of 1 to 1000 operations.");
    cmd->subs = calloc(json_array_size(ops), sizeof(*cmd->subs));
    if (cmd->subs == NULL)
        return JF_ERR_NOMEM;
    for (size_t i = 0; i < json_array_size(ops); i++) {
        if ((cmd->subs[i] = calloc(1, sizeof(jf_cmd))) == NULL)
            return JF_ERR_NOMEM;
        cmd->sub_count = i + 1;
        sub_prepare(eng, req, cmd, cmd->subs[i], json_array_get(ops, i));
    }
    return JF_OK;
}

/* Appends one operation's result: its stored body, or its problem. */
static void result_write(jf_jtext *b, const jf_cmd *sub)
{
    if (sub->res.err == JF_OK) {
        jf_jt_raw(b, sub->res.created ? "{\"status\":201,\"replayed\":"
                                      : "{\"status\":200,\"replayed\":");
        jf_jt_raw(b, sub->res.replayed ? "true,\"body\":" : "false,\"body\":");
        if (sub->res.body)
            jf_jt_rawn(b, sub->res.body,
                       sub->res.body_len ? sub->res.body_len : strlen(sub->res.body));
        else
            jf_jt_raw(b, "null");
        jf_jt_raw(b, "}");
        return;
    }
    jf_err err = sub->res.err;
    char type[96];
    snprintf(type, sizeof(type), "https://jifen.dev/problems/%s", jf_err_code(err));
    json_t *p = json_pack("{sssssiss}", "type", type, "title", jf_err_message(err), "status",
                          jf_err_http_status(err), "code", jf_err_code(err));
    json_object_set_new(p, "detail",
                        json_string(sub->res.detail[0] ? sub->res.detail : jf_err_message(err)));
    jf_jt_raw(b, "{\"status\":");
    jf_jt_int(b, jf_err_http_status(err));
    jf_jt_raw(b, ",\"error\":");
    jf_jt_json(b, p);
    jf_jt_raw(b, "}");
    json_decref(p);
}

/* The operations of this slice: from cmd->acc[0] (where the last slice
 * ended; engine.c restores it when a batch runs again) up to the slice's
 * limits.  True when operations remain.  A slice run again after a failure
 * (eng->careful) is not cut by time: it must reach at least as far as the
 * attempt that failed, or the operation that failed would run again in a
 * later slice without its savepoint, fail again and send its batch round
 * once more (seen under ThreadSanitizer, where one operation can outlast
 * JF_BATCH_SLICE_US). */
static bool batch_slice(jf_engine *eng, jf_cmd *cmd)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t i = (size_t)cmd->acc[0], end = i + jf_batch_slice_ops(cmd);
    for (; i < end; i++) {
        if (cmd->subs[i]->claimed)
            jf_writer_apply(eng, cmd->subs[i]);
        if (!eng->careful && jf_elapsed_us(&t0) > JF_BATCH_SLICE_US) {
            i++;
            break;
        }
    }
    cmd->acc[0] = (int64_t)i;
    return i < cmd->sub_count;
}

size_t jf_batch_slice_ops(const jf_cmd *cmd)
{
    size_t left = cmd->sub_count - (size_t)cmd->acc[0];
    return left < JF_BATCH_SLICE_OPS ? left : JF_BATCH_SLICE_OPS;
}

bool jf_batch_apply(jf_engine *eng, jf_cmd *cmd)
{
    if (batch_slice(eng, cmd))
        return true;
    /* The answer is rendered once the batch is durable, off this thread:
     * with 1,000 results it was a tenth of the writer's time in W5. */
    cmd->res.err = JF_OK;
    return false;
}

void jf_batch_render(jf_cmd *cmd)
{
    if (cmd->res.err != JF_OK || cmd->res.body != NULL)
        return;
    size_t ok = 0, bytes = 64;
    for (size_t i = 0; i < cmd->sub_count; i++) {
        ok += cmd->subs[i]->res.err == JF_OK;
        bytes += 64 + cmd->subs[i]->res.body_len;
    }
    jf_jtext b = {0};
    jf_jt_reserve(&b, bytes);
    jf_jt_raw(&b, "{\"succeeded\":");
    jf_jt_int(&b, (int64_t)ok);
    jf_jt_raw(&b, ",\"failed\":");
    jf_jt_int(&b, (int64_t)(cmd->sub_count - ok));
    jf_jt_raw(&b, ",\"results\":[");
    for (size_t i = 0; i < cmd->sub_count; i++) {
        if (i)
            jf_jt_raw(&b, ",");
        result_write(&b, cmd->subs[i]);
    }
    jf_jt_raw(&b, "]}");
    if ((cmd->res.body = jf_jt_take(&b, &cmd->res.body_len)) == NULL)
        cmd->res.err = JF_ERR_NOMEM;
}

void jf_batch_release(jf_engine *eng, jf_cmd *cmd)
{
    for (size_t i = 0; i < cmd->sub_count; i++)
        if (cmd->subs[i]->claimed)
            jf_inflight_remove(eng, cmd->subs[i]->auth.tenant, cmd->subs[i]->idem_key);
}
