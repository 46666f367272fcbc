/*
 * Allocation failures in the HTTP layer (the test plan's T3, the part
 * test_faults leaves out).  test_faults calls the engine directly; here a
 * real server (src/server, started in this process on a loopback port)
 * answers real requests from a plain socket, and every allocation made on
 * its HTTP threads (threads named "jifen-http": the loops, the router, the
 * request's body and parameters, the validation the engine does on the
 * caller's thread, the response, the access log) is rigged in turn, as
 * test_faults does: allocation 1, then 2, and so on until the request runs
 * through without reaching the rigged one; once with only that allocation
 * failing, once with it and every one after it failing until the answer.
 * libmicrohttpd's own allocations are not rigged (it is a shared library,
 * which the linker's --wrap does not reach; it is fuzzed upstream).
 *
 * After every request: the server answered, and with its usual status or a
 * system failure (500 or 503 with a problem document that has a code), or
 * it closed the connection without an answer; it never hangs, crashes or
 * answers a business error for a sound request.  The same request sent again
 * with no fault gets its usual answer (for a write, applied once: a replay
 * when the failed one had been applied), the member's points are exactly
 * what the applied writes make them, and at the end `jifen verify` is clean.
 * The ASan build adds leaks and bad accesses on the failure paths.
 * FAULT_CASE=glob runs only the cases it names; FAULT_WHERE=1 prints the
 * stack of every rigged allocation with the answer it led to.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <inttypes.h>
#include <jansson.h>

#include "jifen/jifen.h"
#include "jifen/server.h"
#include "rigged_alloc.h"
#include "tmpdir.h"

#define REPLY_MAX (256 * 1024)
#define ANSWER_S 30 /* a request's answer, or the test calls it a hang */
#define LOOP_MAX 5000

static bool http_thread(const char *name)
{
    return strcmp(name, "jifen-http") == 0;
}

/* ---- a client on a plain socket ---- */

typedef struct reply {
    int status; /* 0: the connection closed without a status line */
    char text[REPLY_MAX];
    size_t len;
    const char *body; /* into text */
} reply;

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("cannot connect to the server: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server closed early: what it answered is read next */
        s += w;
        n -= (size_t)w;
    }
}

/* Reads until the server closes (every request says Connection: close);
 * false when nothing came within ANSWER_S. */
static bool read_all(int fd, reply *r)
{
    r->len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ANSWER_S * 1000) != 1)
            return false;
        ssize_t n = recv(fd, r->text + r->len, sizeof(r->text) - 1 - r->len, 0);
        if (n <= 0 || r->len + (size_t)n >= sizeof(r->text) - 1)
            break;
        r->len += (size_t)n;
    }
    r->text[r->len] = '\0';
    r->status = 0;
    if (sscanf(r->text, "HTTP/1.1 %d", &r->status) != 1)
        r->status = 0;
    const char *end = strstr(r->text, "\r\n\r\n");
    r->body = end ? end + 4 : "";
    return true;
}

typedef struct fixture {
    tmpdir_engine te;
    jf_server *srv;
    FILE *access_log;
    char log_path[192];
    int port;
    char member[64];
    int64_t points;             /* member's available points as the applied writes make them */
    int seq;                    /* makes keys and external ids unique */
    long closed, failed, usual; /* how the rigged requests of a loop were answered */
} fixture;

/* Sends one request and reads its answer; a hang fails the test. */
static void request(fixture *f, const char *method, const char *path, const char *key,
                    const char *body, bool auth, reply *r)
{
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s%s%s%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, auth ? "Authorization: Bearer " : "", auth ? f->te.api_key : "",
                     auth ? "\r\n" : "", key ? "Idempotency-Key: " : "", key ? key : "",
                     key ? "\r\n" : "", blen);
    assert_true(n > 0 && (size_t)n < sizeof head);
    int fd = connect_to(f->port);
    send_all(fd, head, (size_t)n);
    if (blen)
        send_all(fd, body, blen);
    bool answered = read_all(fd, r);
    close(fd);
    if (!answered)
        fail_msg("%s %s: no answer within %d s", method, path, ANSWER_S);
}

/* The member's available points, read with no fault armed. */
static int64_t points_of(fixture *f)
{
    char path[128];
    reply *r = malloc(sizeof *r);
    assert_non_null(r);
    snprintf(path, sizeof path, "/v1/members/%s", f->member);
    request(f, "GET", path, NULL, NULL, true, r);
    assert_int_equal(r->status, 200);
    const char *p = strstr(r->body, "\"available\":");
    assert_non_null(p);
    int64_t v = strtoll(p + strlen("\"available\":"), NULL, 10);
    free(r);
    return v;
}

/* ---- the cases ---- */

/* One request under test.  %s in path and body stands for the member, and
 * %d for a number unique to the call (keys, external ids). */
typedef struct http_case {
    const char *name;
    const char *method, *path, *body;
    bool write; /* carries an Idempotency-Key (a batch's operations carry their own) */
    bool auth;
    int status;         /* its answer with no fault */
    int64_t points;     /* what it adds to the member's points when applied */
    const char *expect; /* text its answer with no fault contains */
} http_case;

static void fill(char *out, size_t len, const char *fmt, const fixture *f, int n)
{
    /* A format names the member as %1$s and the number as %2$d (positional,
     * so either may come first); one that uses the number names the member
     * too, with %1$.0s if it must print nothing of it. */
    int w = snprintf(out, len, fmt, f->member, n);
    assert_true(w >= 0 && (size_t)w < len);
}

static bool json_text_valid(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    json_decref(v);
    return v != NULL;
}

static bool status_is_system(const reply *r)
{
    return (r->status == 500 || r->status == 503) && strstr(r->body, "\"code\":\"") != NULL;
}

/* Runs c with allocation n rigged; false once it ran through without
 * reaching it. */
static bool fault_once(fixture *f, const http_case *c, long n, bool all_after)
{
    char path[256], body[1024] = "", key[64];
    int u = ++f->seq;
    fill(path, sizeof path, c->path, f, u);
    if (c->body)
        fill(body, sizeof body, c->body, f, u);
    snprintf(key, sizeof key, "%s-%d", c->name, u);
    const char *idem = c->write ? key : NULL;
    reply *r = malloc(sizeof *r), *again = malloc(sizeof *again);
    assert_true(r && again);
    arm(FAULT_ALLOC, n, all_after);
    request(f, c->method, path, idem, c->body ? body : NULL, c->auth, r);
    long got = disarm();
    const char *how = all_after ? " and every one after it" : "";
    if (got == 0 && r->status != c->status)
        fail_msg("%s: no fault reached, yet answered %d: %s", c->name, r->status, r->text);
    if (r->status != 0 && r->status != c->status && !status_is_system(r)) {
        rig_print_where();
        fail_msg("%s, allocation %ld failing%s: answered %d: %s", c->name, n, how, r->status,
                 r->text);
    }
    /* Whatever the answer, its body is JSON (jansson's json_dumps, under a
     * failed allocation, can write text with a key missing). */
    if (r->status != 0 && strstr(r->text, "application/") && !json_text_valid(r->body)) {
        rig_print_where();
        fail_msg("%s, allocation %ld failing%s: answered %d with a body that is not JSON: %s",
                 c->name, n, how, r->status, r->body);
    }
    if (getenv("FAULT_WHERE") && got > 0) {
        fprintf(stderr, "%s, allocation %ld (key %s): answered %d\n", c->name, n, key, r->status);
        rig_print_where();
    }
    f->closed += r->status == 0;
    f->failed += r->status != 0 && r->status != c->status;
    f->usual += r->status == c->status;
    /* The same request again, no fault: its usual answer, a write applied
     * once whatever happened to the first. */
    request(f, c->method, path, idem, c->body ? body : NULL, c->auth, again);
    if (again->status != c->status || (c->expect && !strstr(again->body, c->expect))) {
        rig_print_where();
        fail_msg("%s, allocation %ld failing%s (first answered %d): the retry answered %d: %s",
                 c->name, n, how, r->status, again->status, again->text);
    }
    f->points += c->points;
    int64_t now = points_of(f);
    if (now != f->points) {
        rig_print_where();
        fail_msg("%s, allocation %ld failing%s (first answered %d): points %" PRId64
                 ", expected %" PRId64,
                 c->name, n, how, r->status, now, f->points);
    }
    free(r);
    free(again);
    return got > 0;
}

static void assert_verified(fixture *f)
{
    char *json = NULL;
    int64_t violations = -1;
    assert_int_equal(jf_verify(f->te.eng, &json, &violations), JF_OK);
    if (violations != 0)
        fail_msg("verify: %s", json);
    free(json);
}

static void fault_loop(fixture *f, const http_case *c)
{
    for (int mode = 0; mode < 2; mode++) {
        long n = 1;
        f->closed = f->failed = f->usual = 0;
        while (fault_once(f, c, n, mode == 1))
            if (++n > LOOP_MAX)
                fail_msg("%s: still reaching faults after %d allocations", c->name, LOOP_MAX);
        assert_verified(f);
#ifdef __SANITIZE_ADDRESS__
        if (__lsan_do_recoverable_leak_check())
            fail_msg("%s: memory leaked with allocations failing", c->name);
#endif
        printf("%s: %ld allocations rigged in turn (%s): %ld closed without an answer, %ld "
               "answered a system failure, %ld answered as usual\n",
               c->name, n - 1, mode ? "each and every one after it" : "each alone", f->closed,
               f->failed, f->usual);
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !tmpdir_engine_open(&f->te, "httpfaults"))
        return -1;
    snprintf(f->log_path, sizeof f->log_path, "%s/access.log", f->te.dir);
    f->access_log = fopen(f->log_path, "w");
    jf_server_options o = {.listen = "127.0.0.1:0", .threads = 2, .access_log = f->access_log};
    char err[256];
    if (!f->access_log || jf_server_start(f->te.eng, &o, &f->srv, err, sizeof err) != JF_OK)
        return -1;
    f->port = jf_server_port(f->srv);
    reply *r = malloc(sizeof *r);
    if (!r)
        return -1;
    request(f, "POST", "/v1/members", "setup-member", "{\"external_id\":\"m\"}", true, r);
    const char *id = strstr(r->body, "\"id\":\"");
    if (r->status != 201 || !id || sscanf(id + 6, "%63[^\"]", f->member) != 1)
        return -1;
    free(r);
    char path[128], body[64];
    snprintf(path, sizeof path, "/v1/members/%s/earn", f->member);
    snprintf(body, sizeof body, "{\"points\":1000}");
    r = malloc(sizeof *r);
    request(f, "POST", path, "setup-fund", body, true, r);
    bool funded = r->status == 201;
    free(r);
    f->points = 1000;
    *state = f;
    return funded ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    jf_server_free(f->srv);
    fclose(f->access_log);
    bool removed = tmpdir_engine_close(&f->te);
    free(f);
    return removed ? 0 : -1;
}

#define CASE(fn_name, ...)                                                                         \
    static void fn_name(void **state)                                                              \
    {                                                                                              \
        static const http_case c = {#fn_name, __VA_ARGS__};                                        \
        fault_loop(*state, &c);                                                                    \
    }

CASE(test_earn, "POST", "/v1/members/%1$s/earn",
     "{\"points\":3,\"channel\":\"pos\",\"metadata\":{\"till\":\"t-%2$d\"}}", true, true, 201, 3,
     "\"metadata\":{\"till\":\"t-")
CASE(test_redeem, "POST", "/v1/members/%1$s/redeem", "{\"points\":1}", true, true, 201, -1,
     "\"type\":\"redeem\"")
CASE(test_batch, "POST", "/v1/batch",
     "{\"operations\":[{\"op\":\"earn\",\"id\":\"%1$s\",\"idempotency_key\":\"b-%2$d-1\","
     "\"body\":{\"points\":2}},{\"op\":\"redeem\",\"id\":\"%1$s\",\"idempotency_key\":"
     "\"b-%2$d-2\",\"body\":{\"points\":1}}]}",
     false, true, 200, 1, "\"failed\":0")
CASE(test_member_create, "POST", "/v1/members",
     "{\"external_id\":\"x-%2$d\",\"name\":\"N %1$s\",\"tags\":[\"a\",\"b\"]}", true, true, 201, 0,
     "\"external_id\":\"x-")
CASE(test_member_get, "GET", "/v1/members/%1$s", NULL, false, true, 200, 0, "\"available\":")
CASE(test_transactions, "GET", "/v1/members/%1$s/transactions?limit=3", NULL, false, true, 200, 0,
     "\"next_cursor\":")
CASE(test_bad_json, "POST", "/v1/members/%1$s/earn", "{\"points\":", true, true, 400, 0,
     "\"code\":\"invalid_json\"")
CASE(test_not_found, "GET", "/v1/members/mem_none%2$d%1$.0s", NULL, false, true, 404, 0,
     "\"code\":\"not_found\"")
CASE(test_no_auth, "GET", "/v1/members/%1$s", NULL, false, false, 401, 0, "\"code\":")
CASE(test_metrics, "GET", "/metrics", NULL, false, true, 200, 0, "jifen_http_connections")
CASE(test_healthz, "GET", "/healthz", NULL, false, false, 200, 0, "\"ok\"")

/* Runs last: every line of the access log is whole, or the short line of
 * one the server had no memory to build; never one missing some fields. */
static void test_access_log_lines(void **state)
{
    fixture *f = *state;
    FILE *in = fopen(f->log_path, "r");
    assert_non_null(in);
    char line[4096];
    long whole = 0, short_ = 0;
    while (fgets(line, sizeof line, in)) {
        bool is_whole = strstr(line, "\"method\":") && strstr(line, "\"route\":") &&
                        strstr(line, "\"duration_ms\":") && strstr(line, "\"request_id\":");
        bool is_short = strstr(line, "\"incomplete\":\"out of memory\"") != NULL;
        if (!is_whole && !is_short)
            fail_msg("an access log line with fields missing: %s", line);
        whole += is_whole;
        short_ += is_short;
    }
    fclose(in);
    assert_true(whole > 0 && short_ > 0);
    printf("access log: %ld whole lines, %ld short ones\n", whole, short_);
}

int main(void)
{
    rig_prepare();
    rig_thread_takes_part = http_thread;
    signal(SIGPIPE, SIG_IGN);
    if (getenv("FAULT_CASE"))
        cmocka_set_test_filter(getenv("FAULT_CASE"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_earn),       cmocka_unit_test(test_redeem),
        cmocka_unit_test(test_batch),      cmocka_unit_test(test_member_create),
        cmocka_unit_test(test_member_get), cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_bad_json),   cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_no_auth),    cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_healthz),    cmocka_unit_test(test_access_log_lines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
