/*
 * The HTTP server: libmicrohttpd callbacks around the engine.
 *
 * A request goes through the access handler several times.  The first call
 * only allocates a srv_req and matches the route (queueing a response on the
 * first call would cost the connection its keep-alive).  Calls with upload
 * data append to the body, up to the route's limit.  The final call checks
 * the API key, body size and media type, collects the query, builds a
 * jf_request and calls the engine, which checks role and idempotency key.
 * Reads of what is already on disk are answered on the spot: the engine calls
 * back before jf_call returns.  Writes, and reads that saw a commit not yet
 * flushed, are answered later from the engine's threads, so the connection is
 * suspended and the callback stores the result and resumes it; the daemon
 * then calls the handler once more, which queues the stored answer.  No
 * worker thread ever waits for the writer or for a flush.
 *
 * The daemons run in event loops of ours, one per thread (loop.c), so
 * whoever resumes a connection also wakes its loop (on_done).
 *
 * Shutdown is quiesce (stop accepting), wait until every suspended request
 * has its answer and the others are done, then stop the loops and their
 * daemons: stopping one with a suspended connection is undefined in
 * libmicrohttpd.
 *
 * Quiesce is our own flag, not MHD_quiesce_daemon: with libmicrohttpd's
 * thread pool on epoll (as the server ran before loop.c) that call raced
 * with the workers' own removal of the listening socket from their epoll
 * sets, and the loser aborted the process ("Failed to remove listen FD from
 * epoll set", an open libmicrohttpd defect; it killed a SIGTERM under load
 * in test_crash.py).  Instead the accept policy refuses every connection
 * once the flag is set: libmicrohttpd closes it at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server_priv.h"

/* On shutdown, requests that are not waiting for the engine get this long
 * to finish before the daemon is stopped under them. */
#define SHUTDOWN_GRACE_MS 10000
/* A client that keeps uploading past this many bytes beyond a route's limit
 * is disconnected rather than read to the end. */
#define UPLOAD_DISCARD_MAX ((uint64_t)JF_BATCH_BODY_BYTES_MAX * 2)
/* Query parameters accepted per request. */
#define PARAMS_MAX 32

struct jf_server {
    jf_engine *eng;
    srv_loops *loops;
    int port;
    bool test_clock;
    srv_metrics *metrics;
    srv_log *log;

    atomic_bool closing; /* quiesced: no new connection, no new write */

    atomic_long active;    /* srv_req structs alive */
    atomic_long suspended; /* connections suspended waiting for the engine */
};

bool srv_closing(const jf_server *s)
{
    return atomic_load_explicit(&s->closing, memory_order_relaxed);
}

uint64_t srv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies at most cap - 1 bytes of src and terminates. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* True for 1..max characters of printable ASCII (0x20..0x7e). */
static bool printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return false;
    return n > 0;
}

/* splitmix64's output function: a bijection, so distinct inputs never
 * collide. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 96 bits for a request id: a random 64-bit base per thread, drawn once,
 * plus the thread's count of requests, mixed; and 32 more bits of the base.
 * A getrandom call per request was 2% of an HTTP thread's time in W1; the
 * id only has to be unique (a log correlation id), not secret. */
static void request_id_bits(unsigned char out[12])
{
    static _Thread_local uint64_t base, count;
    static _Thread_local bool seeded;
    if (!seeded) {
        if (getrandom(&base, sizeof base, 0) != (ssize_t)sizeof base)
            base = srv_mono_ns() ^ (uint64_t)(uintptr_t)&base;
        seeded = true;
    }
    uint64_t a = mix64(base + count++), b = mix64(~base);
    memcpy(out, &a, 8);
    memcpy(out + 8, &b, 4);
}

/* Echoes the client's X-Request-Id when it is safe to put in a header and a
 * log line; otherwise generates one, so every response has an id. */
static void set_request_id(srv_req *r)
{
    const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given && printable(given, JF_REQUEST_ID_LEN_MAX)) {
        copy_str(r->request_id, sizeof r->request_id, given);
        return;
    }
    unsigned char rnd[12];
    request_id_bits(rnd);
    static const char hex[] = "0123456789abcdef";
    char *p = r->request_id;
    memcpy(p, "req_", 4);
    p += 4;
    for (size_t i = 0; i < sizeof rnd; i++) {
        *p++ = hex[rnd[i] >> 4];
        *p++ = hex[rnd[i] & 15];
    }
    *p = '\0';
}

static srv_req *req_new(jf_server *s, struct MHD_Connection *conn, const char *url,
                        const char *method)
{
    srv_req *r = srv_loop_req_take();
    if (!r)
        r = malloc(sizeof *r);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    r->srv = s;
    r->conn = conn;
    r->loop = srv_loop_current();
    r->start_ns = srv_mono_ns();
    r->start_wall_ms = wall_ms();
    copy_str(r->method, sizeof r->method, method);
    copy_str(r->path, sizeof r->path, url);
    set_request_id(r);
    r->match_status = srv_route_match(method, url, s->test_clock, &r->match);
    atomic_fetch_add(&s->active, 1);
    return r;
}

static void req_free(srv_req *r)
{
    jf_server *s = r->srv;
    jf_result_deinit(&r->res);
    free(r->match.path_id);
    free(r->body);
    pthread_mutex_destroy(&r->mu);
    if (!srv_loop_req_keep(r))
        free(r);
    atomic_fetch_sub(&s->active, 1);
}

static size_t body_limit(const srv_req *r)
{
    const srv_route *rt = srv_route_at(r->match.route);
    return rt ? rt->body_max : JF_BODY_BYTES_MAX;
}

/* Appends upload data; past the route's limit the rest is read and dropped
 * so that the 413 can be answered on a connection still in step. */
static enum MHD_Result req_append(srv_req *r, const char *data, size_t len)
{
    r->bytes_in += len;
    if (r->too_large)
        return r->bytes_in > UPLOAD_DISCARD_MAX ? MHD_NO : MHD_YES;
    size_t limit = body_limit(r);
    if (len > limit - r->body_len) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return MHD_YES;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        if (cap > limit + 1)
            cap = limit + 1;
        char *b = realloc(r->body, cap);
        if (!b)
            return MHD_NO;
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return MHD_YES;
}

/* "application/json", optionally with "; charset=utf-8" (any case, the
 * value optionally quoted).  Anything else is refused with 415. */
static bool content_type_ok(const char *ct)
{
    if (!ct)
        return false;
    ct += strspn(ct, " \t");
    if (strncasecmp(ct, "application/json", 16) != 0)
        return false;
    const char *p = ct + 16;
    p += strspn(p, " \t");
    if (*p == '\0')
        return true;
    if (*p++ != ';')
        return false;
    p += strspn(p, " \t");
    if (strncasecmp(p, "charset", 7) != 0)
        return false;
    p += 7;
    p += strspn(p, " \t");
    if (*p++ != '=')
        return false;
    p += strspn(p, " \t");
    bool quoted = *p == '"';
    p += quoted;
    if (strncasecmp(p, "utf-8", 5) != 0)
        return false;
    p += 5;
    if (quoted && *p++ != '"')
        return false;
    p += strspn(p, " \t");
    return *p == '\0';
}

/* Query parameters, percent-decoded into memory owned here. */
typedef struct params {
    jf_param p[PARAMS_MAX];
    char *mem[PARAMS_MAX];
    size_t n;
    jf_err err;
} params;

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    params *ps = cls;
    if (ps->n == PARAMS_MAX) {
        ps->err = JF_ERR_INVALID_REQUEST;
        return MHD_NO;
    }
    if (!value)
        value = "";
    size_t klen = strlen(key), vlen = strlen(value);
    char *m = malloc(klen + vlen + 2);
    if (!m) {
        ps->err = JF_ERR_NOMEM;
        return MHD_NO;
    }
    ps->mem[ps->n] = m;
    if (!srv_percent_decode(key, klen, m) || !srv_percent_decode(value, vlen, m + klen + 1)) {
        ps->err = JF_ERR_INVALID_REQUEST;
        ps->n++;
        return MHD_NO;
    }
    ps->p[ps->n].name = m;
    ps->p[ps->n].value = m + klen + 1;
    ps->n++;
    return MHD_YES;
}

static void params_deinit(params *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->mem[i]);
    ps->n = 0;
}

/* Stores the engine's answer; runs exactly once per jf_call: on the calling
 * thread for early refusals and for reads of what is already on disk, on
 * one of the engine's threads otherwise. */
static void on_done(void *ctx, jf_result *res)
{
    srv_req *r = ctx;
    jf_server *s = r->srv;
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&r->mu);
    r->res = *res;
    res->body = NULL; /* ours now: jf_result_deinit(&r->res) frees it */
    r->done = true;
    bool resume = r->suspended;
    bool orphaned = r->orphaned;
    pthread_mutex_unlock(&r->mu);
    if (orphaned) {
        /* The connection is gone: nothing to resume, only memory to free. */
        req_free(r);
    } else if (resume) {
        /* r may be freed by its loop as soon as the connection is resumed,
         * so nothing of r is touched after this point. */
        srv_loop *loop = r->loop;
        MHD_resume_connection(conn);
        srv_loop_wake(loop);
    }
    if (resume)
        atomic_fetch_sub(&s->suspended, 1);
}

/* Hands the request to the engine.  A write suspends the connection first,
 * so that a writer thread answering at once finds it suspended. */
static enum MHD_Result submit(srv_req *r, const jf_request *req)
{
    jf_server *s = r->srv;
    bool write = jf_op_is_write(req->op);
    /* After quiesce a keep-alive client may still get a request in; it must
     * not suspend its connection, or the daemon could be stopped under it
     * (wait_idle may already have seen no request alive).  The client
     * re-sends after the restart, as with any refusal. */
    if (write && srv_closing(s))
        return srv_respond_error(r, JF_ERR_SHUTTING_DOWN, NULL);
    r->phase = SRV_PHASE_WAITING;
    if (write) {
        r->suspended = true;
        atomic_fetch_add(&s->suspended, 1);
        MHD_suspend_connection(r->conn);
    }
    jf_call(s->eng, req, on_done, r);
    if (write)
        return MHD_YES;
    pthread_mutex_lock(&r->mu);
    bool done = r->done;
    if (!done) {
        /* A read that saw a commit not yet on disk is answered after the
         * flush, from the engine's syncer thread: wait for it like a write. */
        r->suspended = true;
        atomic_fetch_add(&s->suspended, 1);
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->mu);
    return done ? srv_respond_result(r, &r->res) : MHD_YES;
}

/* The Idempotency-Key header, or NULL.  The engine validates it (presence
 * for point-changing operations, length and characters); a copy is kept for
 * the access log when it is printable. */
static const char *idempotency_key(srv_req *r)
{
    const char *k = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
    if (k && printable(k, JF_IDEM_KEY_LEN_MAX))
        copy_str(r->idempotency_key, sizeof r->idempotency_key, k);
    return k;
}

/* What only the server can check: the API key, the body size and the media
 * type.  Role and idempotency key are checked by the engine (jf_call), the
 * one place that knows every operation's rules. */
static jf_err precheck(srv_req *r, const srv_route *rt, jf_auth *auth, const char **detail)
{
    const char *authz =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    jf_err err = authz ? jf_auth_bearer(r->srv->eng, authz, auth) : JF_ERR_UNAUTHORIZED;
    *detail = NULL;
    if (err != JF_OK)
        return err;
    copy_str(r->actor, sizeof r->actor, auth->actor);
    if (r->too_large) {
        *detail = rt->body_max ? (rt->body_max > JF_BODY_BYTES_MAX
                                      ? "The request body is larger than 1 MiB."
                                      : "The request body is larger than 64 KiB.")
                               : "This endpoint takes no request body.";
        return JF_ERR_PAYLOAD_TOO_LARGE;
    }
    if (r->body_len > 0 && !content_type_ok(MHD_lookup_connection_value(
                               r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return JF_ERR_UNSUPPORTED_MEDIA_TYPE;
    return JF_OK;
}

static enum MHD_Result dispatch_engine(srv_req *r, const srv_route *rt)
{
    jf_auth auth;
    memset(&auth, 0, sizeof auth);
    const char *detail = NULL;
    jf_err err = precheck(r, rt, &auth, &detail);
    if (err != JF_OK)
        return srv_respond_error(r, err, detail);
    params ps;
    memset(&ps, 0, sizeof ps);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_param, &ps);
    enum MHD_Result rc;
    if (ps.err != JF_OK) {
        rc = srv_respond_error(r, ps.err,
                               ps.err == JF_ERR_INVALID_REQUEST
                                   ? "The query string is malformed or has too many parameters."
                                   : NULL);
        goto out;
    }
    jf_request req = {
        .op = rt->op,
        .auth = &auth,
        .path_id = r->match.path_id,
        .params = ps.n ? ps.p : NULL,
        .param_count = ps.n,
        .body = r->body_len ? r->body : NULL,
        .body_len = r->body_len,
        .idempotency_key = idempotency_key(r),
    };
    rc = submit(r, &req);
out:
    params_deinit(&ps);
    return rc;
}

static enum MHD_Result respond_metrics(srv_req *r)
{
    size_t len = 0;
    char *text = srv_metrics_render(r->srv->metrics, r->srv->eng, r->srv->loops, &len);
    if (!text)
        return srv_respond_error(r, JF_ERR_NOMEM, NULL);
    return srv_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, true);
}

/* The final access-handler call of a request that has not been answered. */
static enum MHD_Result dispatch(srv_req *r)
{
    switch (r->match_status) {
    case SRV_MATCH_OK:
        break;
    case SRV_MATCH_BAD_METHOD:
        return srv_respond_error(r, JF_ERR_METHOD_NOT_ALLOWED, NULL);
    case SRV_MATCH_BAD_ENCODING:
        return srv_respond_error(r, JF_ERR_INVALID_REQUEST,
                                 "The path has a malformed percent-escape.");
    case SRV_MATCH_NOT_FOUND:
    default:
        if (r->match.route == -2)
            return srv_respond_error(r, JF_ERR_NOMEM, NULL);
        return srv_respond_error(r, JF_ERR_NOT_FOUND, "Nothing is served at this path.");
    }
    const srv_route *rt = srv_route_at(r->match.route);
    switch (rt->kind) {
    case SRV_KIND_HEALTHZ:
        return srv_respond(r, 200, "application/json", (char *)"{\"status\":\"ok\"}", 15, false);
    case SRV_KIND_METRICS:
        return respond_metrics(r);
    case SRV_KIND_ENGINE:
    default:
        return dispatch_engine(r, rt);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    (void)version;
    jf_server *s = cls;
    srv_req *r = *req_cls;
    if (!r) {
        /* Never answer on the first call: libmicrohttpd 0.9.75 would then
         * close the connection instead of keeping it alive. */
        r = req_new(s, conn, url, method);
        if (!r)
            return MHD_NO;
        *req_cls = r;
        srv_loop_request_begins(conn);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return req_append(r, upload_data, n);
    }
    if (r->phase == SRV_PHASE_RECEIVING) {
        srv_loop_request_whole(conn);
        return dispatch(r);
    }
    if (r->phase == SRV_PHASE_ANSWERED)
        return MHD_YES;
    /* Resumed after the engine answered a write. */
    pthread_mutex_lock(&r->mu);
    bool done = r->done;
    pthread_mutex_unlock(&r->mu);
    return done ? srv_respond_result(r, &r->res) : MHD_YES;
}

static void log_request(jf_server *s, const srv_req *r, uint64_t duration_ns)
{
    const srv_route *rt = srv_route_at(r->match.route);
    srv_log_entry e = {
        .ts_ms = r->start_wall_ms,
        .method = r->method,
        .path = r->path,
        .route = rt ? rt->pattern : NULL,
        .status = r->status,
        .duration_ms = (double)duration_ns / 1e6,
        .bytes_in = r->bytes_in,
        .bytes_out = r->bytes_out,
        .key = r->actor[0] ? r->actor : NULL,
        .idempotency_key = r->idempotency_key[0] ? r->idempotency_key : NULL,
        .replayed = r->replayed,
        .request_id = r->request_id,
    };
    srv_log_write(s->log, &e);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    jf_server *s = cls;
    srv_req *r = *req_cls;
    if (!r)
        return;
    *req_cls = NULL;
    srv_loop_request_ends(conn);
    uint64_t duration_ns = srv_mono_ns() - r->start_ns;
    if (r->status)
        srv_metrics_record(s->metrics, r->match.route, r->status, duration_ns);
    log_request(s, r, duration_ns);
    /* A request whose answer is still coming belongs to on_done from now on;
     * only a daemon stopped under a suspended connection gets here. */
    pthread_mutex_lock(&r->mu);
    bool pending = r->phase == SRV_PHASE_WAITING && !r->done;
    r->orphaned = pending;
    pthread_mutex_unlock(&r->mu);
    if (!pending)
        req_free(r);
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Parses "HOST:PORT" (IPv4 or "localhost"; an empty host or "*" is every
 * interface; port 0..65535, 0 letting the kernel choose). */
static bool parse_listen(const char *listen, struct sockaddr_in *sa, char *err, size_t errlen)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    char host[INET_ADDRSTRLEN + 16];
    if (!colon || (size_t)(colon - listen) >= sizeof host) {
        set_err(err, errlen, "listen address \"%s\" is not HOST:PORT", listen ? listen : "");
        return false;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    const char *h = host;
    if (h[0] == '\0' || strcmp(h, "*") == 0)
        h = "0.0.0.0";
    else if (strcmp(h, "localhost") == 0)
        h = "127.0.0.1";
    if (inet_pton(AF_INET, h, &sa->sin_addr) != 1) {
        set_err(err, errlen, "listen host \"%s\" is not an IPv4 address", host);
        return false;
    }
    const char *p = colon + 1;
    char *end = NULL;
    errno = 0;
    long port = (*p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
    if (port < 0 || port > 65535 || errno != 0 || !end || *end != '\0') {
        set_err(err, errlen, "listen port \"%s\" is not a number from 0 to 65535", p);
        return false;
    }
    sa->sin_port = htons((uint16_t)port);
    return true;
}

/* The daemon's unescape callback: leaves the text as it is (see start_daemon). */
static size_t keep_escaped(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* The daemon's accept policy: once quiesced, every new connection is closed
 * as soon as it is accepted (see the comment at the top). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    return srv_closing(cls) ? MHD_NO : MHD_YES;
}

/* One loop's daemon (loop.c): on epoll, run by the loop's thread, given
 * its connections by the loop. */
static struct MHD_Daemon *make_daemon(void *cls, srv_loop *loop, unsigned conn_limit)
{
    jf_server *s = cls;
    unsigned flags =
        MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* Paths are matched raw and decoded by the router, so that "%2F" in an
     * id cannot split a segment; query values are decoded by collect_param. */
    return MHD_start_daemon(
        flags, (uint16_t)s->port, accept_policy, s, on_access, s, MHD_OPTION_CONNECTION_LIMIT,
        conn_limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)JF_HTTP_CONNECTION_MEMORY_BYTES,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)JF_HTTP_CONNECTION_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, srv_loop_notify,
        loop, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_END);
}

static void server_release(jf_server *s)
{
    srv_metrics_free(s->metrics);
    srv_log_free(s->log);
    free(s);
}

static jf_server *server_alloc(jf_engine *eng, const jf_server_options *o)
{
    jf_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->eng = eng;
    s->test_clock = o->test_clock;
    atomic_init(&s->closing, false);
    atomic_init(&s->active, 0);
    atomic_init(&s->suspended, 0);
    s->metrics = srv_metrics_new();
    s->log = srv_log_new(o->access_log);
    if (!s->metrics || (o->access_log && !s->log)) {
        server_release(s);
        return NULL;
    }
    return s;
}

jf_err jf_server_start(jf_engine *eng, const jf_server_options *o, jf_server **out, char *err,
                       size_t errlen)
{
    struct sockaddr_in sa;
    *out = NULL;
    if (!eng || !o || !parse_listen(o->listen, &sa, err, errlen))
        return JF_ERR_INVALID_REQUEST;
    jf_server *s = server_alloc(eng, o);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return JF_ERR_NOMEM;
    }
    unsigned threads = o->threads >= 2 ? (unsigned)o->threads : JF_HTTP_THREADS_DEFAULT;
    srv_loops_config lc = {
        .n = threads,
        .conn_limit = JF_HTTP_CONNECTIONS_MAX,
        .wait_ms = o->loop_wait_ms > 0 ? o->loop_wait_ms : JF_HTTP_LOOP_WAIT_MS,
        .make = make_daemon,
        .cls = s,
    };
    if (!srv_loops_start(&sa, &lc, &s->loops, &s->port)) {
        set_err(err, errlen, "cannot listen on %s: %s", o->listen, strerror(errno));
        server_release(s);
        return JF_ERR_IO;
    }
    *out = s;
    return JF_OK;
}

int jf_server_port(const jf_server *s)
{
    return s ? s->port : 0;
}

void jf_server_quiesce(jf_server *s)
{
    if (s)
        atomic_store(&s->closing, true);
}

/* Waits until no connection is suspended (always: stopping the daemon with
 * one is undefined) and no request is alive (for at most the grace time). */
static void wait_idle(jf_server *s)
{
    uint64_t deadline = srv_mono_ns() + (uint64_t)SHUTDOWN_GRACE_MS * 1000000u;
    for (;;) {
        long suspended = atomic_load(&s->suspended);
        long active = atomic_load(&s->active);
        if (suspended == 0 && (active == 0 || srv_mono_ns() > deadline))
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void jf_server_free(jf_server *s)
{
    if (!s)
        return;
    jf_server_quiesce(s);
    wait_idle(s);
    srv_loops_stop(s->loops);
    server_release(s);
}
