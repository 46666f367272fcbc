/*
 * The model test's side of the engine: requests through jf_call_sync exactly
 * as the HTTP server would build them (operation, path id, query parameters,
 * JSON body, idempotency key), replies parsed with jansson, and the checks
 * every write reply gets (error code, transaction, the member's points).
 * Successful keyed writes are remembered in a ring so that ops.c can replay
 * them later and demand the same bytes back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

jf_err mt_call(model *md, jf_op op, const char *path_id, const char *body, const char *key,
               const jf_param *params, size_t nparams, jf_result *res)
{
    jf_request req;
    memset(&req, 0, sizeof req);
    memset(res, 0, sizeof *res);
    req.op = op;
    req.auth = &md->auth;
    req.path_id = path_id;
    req.params = params;
    req.param_count = nparams;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.idempotency_key = key;
    return jf_call_sync(md->eng, &req, res);
}

void mt_new_key(model *md, char *buf, size_t len)
{
    snprintf(buf, len, "mt-%llx-%ld", (unsigned long long)md->seed, ++md->key_counter);
}

jf_err mt_write(model *md, jf_op op, const char *path_id, const char *body, int m0, int m1,
                jf_result *res)
{
    char key[64];
    mt_new_key(md, key, sizeof key);
    jf_err err = mt_call(md, op, path_id, body, key, NULL, 0, res);
    if (md->trace)
        printf("    -> %s %.*s\n", jf_err_code(err), res->body ? (int)res->body_len : 0,
               res->body ? res->body : "");
    if (err == JF_OK && res->replayed)
        mt_fail(md, "a request with a fresh key %s came back marked replayed", key);
    /* Everything written through here answers 201 except the expiry run. */
    if (err == JF_OK && res->created != (op != JF_OP_EXPIRY_RUN))
        mt_fail(md, "%s answered created=%d", jf_op_name(op), (int)res->created);
    if (err == JF_OK)
        mt_replay_remember(md, op, path_id, body, key, res, m0, m1);
    return err;
}

json_t *mt_json(model *md, const jf_result *res)
{
    json_error_t jerr;
    if (res->body == NULL)
        mt_fail(md, "a successful reply has no body");
    json_t *root = json_loadb(res->body, res->body_len, 0, &jerr);
    if (root == NULL)
        mt_fail(md, "the reply is not JSON (%s): %.*s", jerr.text, (int)res->body_len, res->body);
    return root;
}

/* Follows a dotted path ("points.available") from root; NULL when absent. */
static json_t *lookup(json_t *root, const char *path)
{
    char part[64];
    json_t *cur = root;
    while (cur != NULL && *path != '\0') {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, part) : NULL;
        path += n + (dot != NULL);
    }
    return cur;
}

int64_t mt_int(model *md, json_t *root, const char *path)
{
    json_t *v = lookup(root, path);
    if (!json_is_integer(v)) {
        char *text = json_dumps(root, JSON_COMPACT);
        mt_fail(md, "reply field %s is missing or not an integer in %s", path, text ? text : "?");
    }
    return (int64_t)json_integer_value(v);
}

const char *mt_str(model *md, json_t *root, const char *path)
{
    json_t *v = lookup(root, path);
    if (json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        char *text = json_dumps(root, JSON_COMPACT);
        mt_fail(md, "reply field %s is missing or not a string in %s", path, text ? text : "?");
    }
    return json_string_value(v);
}

void mt_expect_err(model *md, jf_err want, jf_err got, const jf_result *res)
{
    if (want == got) {
        if (want != JF_OK)
            md->errors_expected++;
        return;
    }
    mt_fail(md, "expected %s, engine answered %s (detail: %s; body: %.*s)", jf_err_code(want),
            jf_err_code(got), res->detail, res->body ? (int)res->body_len : 0,
            res->body ? res->body : "");
}

void mt_expect_points_obj(model *md, json_t *root, const char *field, int m)
{
    o_view v;
    char path[64];
    int64_t got[3];
    const char *names[3] = {"available", "pending", "held"};
    o_view_get(&md->o, m, &v);
    int64_t want[3] = {v.available, v.pending, v.held};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s.%s", field, names[i]);
        got[i] = mt_int(md, root, path);
    }
    if (got[0] != want[0] || got[1] != want[1] || got[2] != want[2])
        mt_fail(md,
                "%s of member %s (m%d): engine available=%lld pending=%lld held=%lld, "
                "oracle available=%lld pending=%lld held=%lld (debt %lld)",
                field, md->o.members[m].id, m, (long long)got[0], (long long)got[1],
                (long long)got[2], (long long)want[0], (long long)want[1], (long long)want[2],
                (long long)v.debt);
}

void mt_expect_points_result(model *md, json_t *root, int t, const char *type, int64_t points,
                             int m)
{
    const char *got_type = mt_str(md, root, "transaction.type");
    int64_t got_points = mt_int(md, root, "transaction.points");
    const char *id = mt_str(md, root, "transaction.id");
    if (got_type == NULL || strcmp(got_type, type) != 0)
        mt_fail(md, "transaction type: engine %s, oracle %s", got_type ? got_type : "null", type);
    if (got_points != points)
        mt_fail(md, "transaction points: engine %lld, oracle %lld", (long long)got_points,
                (long long)points);
    if (id == NULL || strlen(id) >= MT_ID_LEN)
        mt_fail(md, "transaction id missing or too long");
    if (t >= 0) {
        snprintf(md->o.txns[t].id, MT_ID_LEN, "%s", id);
        MT_PUSH(md->recent, md->nrecent, md->cap_recent, t);
    }
    mt_expect_points_obj(md, root, "points", m);
}

void mt_replay_remember(model *md, jf_op op, const char *path_id, const char *body, const char *key,
                        const jf_result *res, int m0, int m1)
{
    mt_replay *r = &md->replays[md->nreplays % MT_REPLAY_RING];
    if (md->nreplays >= MT_REPLAY_RING) {
        free(r->path_id);
        free(r->body);
        free(r->key);
        free(r->reply);
    }
    r->op = op;
    r->path_id = path_id ? mt_xstrdup(path_id) : NULL;
    r->body = body ? mt_xstrdup(body) : NULL;
    r->key = mt_xstrdup(key);
    r->reply = mt_xrealloc(NULL, res->body_len + 1);
    memcpy(r->reply, res->body ? res->body : "", res->body_len);
    r->reply[res->body_len] = '\0';
    r->members[0] = m0;
    r->members[1] = m1;
    md->nreplays++;
}
