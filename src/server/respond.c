/*
 * Building HTTP responses: the one place where a jf_err becomes a status
 * code and an application/problem+json body (STYLE.md §6), and where the
 * headers every response carries are added.
 *
 * Handlers never write a response by hand; they call srv_respond_error or
 * srv_respond, which also record the status and size for the access log and
 * metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>

#include "server_priv.h"

#define PROBLEM_TYPE_BASE "https://jifen.dev/problems/"
#define STR_(x) #x
#define STR(x) STR_(x)

/* Adds a header; a failure here only loses that header, never the reply. */
static void add_header(struct MHD_Response *resp, const char *name, const char *value)
{
    (void)MHD_add_response_header(resp, name, value);
}

static void add_common_headers(srv_req *r, struct MHD_Response *resp, int status,
                               const char *content_type)
{
    add_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    add_header(resp, "X-Request-Id", r->request_id);
    add_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->replayed)
        add_header(resp, "Idempotent-Replayed", "true");
    if (status == 405 && r->match.allow[0])
        add_header(resp, MHD_HTTP_HEADER_ALLOW, r->match.allow);
    if (status == 401)
        add_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    /* A full queue (429) or a server out of memory or stopping (503): when to
     * try again (RFC 9110 §10.2.3), with the same Idempotency-Key. */
    if (status == 429 || status == 503)
        add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, STR(JF_HTTP_RETRY_AFTER_S));
    /* After quiesce, tell keep-alive clients to go away so that shutdown is
     * not held open by connections that would otherwise send more. */
    if (srv_closing(r->srv))
        add_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

enum MHD_Result srv_respond(srv_req *r, int status, const char *content_type, char *body,
                            size_t len, bool take)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, take ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (take)
            free(body);
        return MHD_NO;
    }
    add_common_headers(r, resp, status, content_type);
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->bytes_out = len;
    r->phase = SRV_PHASE_ANSWERED;
    return rc;
}

/* The problem document of RFC 9457 with our stable code.  Returns a
 * malloc'd string, or NULL when out of memory. */
static char *problem_json(jf_err err, const char *detail)
{
    const char *code = jf_err_code(err);
    char type[128];
    snprintf(type, sizeof type, "%s%s", PROBLEM_TYPE_BASE, code);
    json_t *o = json_object();
    if (!o)
        return NULL;
    /* json_object_set_new reports a failed allocation only by its result:
     * a document without its code would leave a client matching on it
     * nothing to match, so any failure gives the fallback instead. */
    json_t *d = json_string(detail && detail[0] ? detail : jf_err_message(err));
    int failed = json_object_set_new(o, "type", json_string(type));
    failed |= json_object_set_new(o, "title", json_string(jf_err_message(err)));
    failed |= json_object_set_new(o, "status", json_integer(jf_err_http_status(err)));
    failed |= json_object_set_new(o, "detail", d ? d : json_string(jf_err_message(err)));
    failed |= json_object_set_new(o, "code", json_string(code));
    /* A dump that ran out of memory may have returned text without a key
     * (jifen.h, jf_json_dumps_whole): the fallback, not that. */
    char *s = failed ? NULL : jf_json_dumps_whole(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

enum MHD_Result srv_respond_error(srv_req *r, jf_err err, const char *detail)
{
    int status = jf_err_http_status(err);
    if (status < 400 || status > 599) {
        /* An error that maps to a success status is a bug in the caller;
         * answering 200 would tell the client something false. */
        err = JF_ERR_INTERNAL;
        status = jf_err_http_status(err);
    }
    char *body = problem_json(err, detail);
    if (!body) {
        static const char fallback[] =
            "{\"type\":\"" PROBLEM_TYPE_BASE "out_of_memory\",\"title\":\"Out of memory.\","
            "\"status\":503,\"detail\":\"Out of memory.\",\"code\":\"out_of_memory\"}";
        return srv_respond(r, 503, "application/problem+json", (char *)fallback,
                           sizeof fallback - 1, false);
    }
    return srv_respond(r, status, "application/problem+json", body, strlen(body), true);
}

enum MHD_Result srv_respond_result(srv_req *r, jf_result *res)
{
    enum MHD_Result rc;
    if (res->err != JF_OK) {
        rc = srv_respond_error(r, res->err, res->detail);
    } else {
        r->replayed = res->replayed;
        /* The body belongs to the engine's allocator, so MHD gets a copy and
         * jf_result_deinit frees the original the engine's way. */
        rc =
            srv_respond(r, res->created ? 201 : 200, "application/json",
                        res->body ? res->body : (char *)"{}", res->body ? res->body_len : 2, false);
    }
    jf_result_deinit(res);
    return rc;
}
