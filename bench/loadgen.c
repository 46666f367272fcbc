/*
 * loadgen: the benchmark's load generator.  One thread, epoll, a fixed number
 * of keep-alive connections, each with at most one request outstanding
 * (HTTP/1.1 without pipelining, or RESP for the Redis baseline).
 *
 * Closed loop (--rate 0): every connection sends its next request as soon as
 * the previous answer arrived.  Open loop (--rate R): request k is scheduled
 * at start + k/R whatever happened before; it goes out on the first idle
 * connection, and its latency is measured from the scheduled time, so a
 * stall delays and counts every request scheduled behind it (no coordinated
 * omission, as wrk2).  Requests that never found a connection before the end
 * are reported as "unsent".
 *
 * Every write carries a unique Idempotency-Key (<prefix>-<sequence>, or with
 * --random-keys <prefix>-<32 hex digits> spread like clients' random UUIDs,
 * derived from the sequence so a retry repeats its key); in the
 * redeem workload 5% of requests are retries of an earlier request (same key,
 * same body) and 20% ask for more points than any member has.
 *
 * Output: one JSON object on stdout (counts, throughput, latency histograms in
 * microseconds, status counts, server CPU time if --cpu-pid).  Seeding mode
 * (--workload seed) creates members and writes their ids to --out.
 *
 * Everything is bounded: --duration (<= 3600 s), --count / --max-requests,
 * a drain timeout at the end, and a connection-error budget.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"

#define CONNS_MAX 1024
#define IN_MAX (1 << 20)
#define RING 4096
#define RETRY_LAG 512
#define DRAIN_NS 5000000000ULL
#define CONN_ERRORS_MAX 1000
#define DURATION_MAX_S 3600
#define REFUSED_POINTS 1000000000000LL
/* Lines of one --orders order at most (a till's receipt; jifen takes up to
 * 500, JF_ORDER_LINES_MAX). */
#define JF_LOADGEN_ORDER_LINES_MAX 100

enum op { OP_EARN, OP_REDEEM, OP_TRANSFER, OP_POINTS, OP_HISTORY, OP_MEMBER, OP_BATCH, OP_HEALTHZ };
enum workload { WL_EARN, WL_REDEEM, WL_TRANSFER, WL_READ, WL_SEED, WL_BATCH, WL_HEALTHZ };

typedef struct reqp {
    uint8_t op;
    uint32_t m, m2;
    int64_t pts;
    uint64_t key;
} reqp;

typedef struct conn {
    int fd;
    bool busy;
    char *out;
    size_t out_len, out_off, out_cap;
    char *in;
    size_t in_len;
    uint64_t t_sched;
    uint64_t seq;
    reqp rq;
    int next_idle;
} conn;

typedef struct opts {
    const char *host, *proto, *workload, *members_file, *api_key, *prefix, *out_file;
    const char *expires_at, *sha_earn, *sha_redeem, *sha_transfer, *timeline_file;
    int port, conns, hot, batch, points, order_lines;
    double duration_s, warmup_s, rate;
    uint64_t nmembers, count, max_requests, seed;
    bool sequential, random_keys, orders, frozen;
    int cpu_pid;
} opts;

static opts O;
static enum workload WL;
static bool RESP;
static char **MEMBER_IDS;
static uint64_t NMEMBERS;
static char **SEED_OUT;
static volatile sig_atomic_t STOP_MEASURE;

static reqp ring[RING];
static uint64_t ring_n;
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

/* --timeline: per TL_SLOT_NS of scheduled time in the window, the requests
 * answered and the largest latency, to see when a tail happens. */
#define TL_SLOT_NS UINT64_C(100000000)
#define TL_SLOTS 36000
static uint64_t T_MEASURE, T_END, T_STOP;
static uint32_t tl_n[TL_SLOTS];
static uint64_t tl_max[TL_SLOTS];

static struct {
    hist all, rd, wr;
    uint64_t ok, refused, replayed, conflict, errors, conn_errors, unsent, ops, op_failed;
    uint64_t status[600];
} S;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rnd_below(uint64_t n)
{
    return (uint32_t)(rnd() % n);
}

/* splitmix64's finalizer: a bijection, so distinct sequences stay distinct. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* The Idempotency-Key of request sequence k. */
static void idem_key(char *out, size_t n, uint64_t k)
{
    if (O.random_keys)
        snprintf(out, n, "%s-%016llx%016llx", O.prefix, (unsigned long long)mix64(k),
                 (unsigned long long)mix64(k ^ 0x5DEECE66DULL));
    else
        snprintf(out, n, "%s-%llu", O.prefix, (unsigned long long)k);
}

static void die(const char *msg)
{
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

/* ---- request parameters ------------------------------------------------ */

static uint32_t pick_member(uint64_t seq)
{
    if (O.sequential)
        return (uint32_t)(seq % NMEMBERS);
    uint64_t n = O.hot > 0 && (uint64_t)O.hot < NMEMBERS ? (uint64_t)O.hot : NMEMBERS;
    return rnd_below(n);
}

static reqp make_params(uint64_t seq)
{
    reqp r = {.op = OP_EARN, .m = pick_member(seq), .key = seq};
    r.pts = O.points > 0 ? O.points : 1 + (int64_t)rnd_below(100);
    uint32_t dice = rnd_below(100);
    switch (WL) {
    case WL_EARN:
        break;
    case WL_SEED:
        r.op = OP_MEMBER;
        break;
    case WL_BATCH:
        r.op = OP_BATCH;
        break;
    case WL_HEALTHZ:
        r.op = OP_HEALTHZ;
        break;
    case WL_REDEEM:
        if (dice < 5 && ring_n > RETRY_LAG) {
            uint64_t back =
                RETRY_LAG + rnd_below(ring_n - RETRY_LAG < RING - RETRY_LAG ? ring_n - RETRY_LAG
                                                                            : RING - RETRY_LAG);
            return ring[(ring_n - back) % RING];
        }
        r.op = OP_REDEEM;
        r.pts = dice < 25 ? REFUSED_POINTS : 1 + (int64_t)rnd_below(5);
        break;
    case WL_TRANSFER:
        r.op = OP_TRANSFER;
        r.pts = 1;
        r.m2 = (uint32_t)((r.m + 1 + rnd_below(NMEMBERS - 1)) % NMEMBERS);
        break;
    case WL_READ:
        if (dice < 40)
            r.op = OP_POINTS;
        else if (dice < 80)
            r.op = OP_HISTORY;
        break;
    }
    if (WL == WL_REDEEM)
        ring[ring_n++ % RING] = r;
    return r;
}

/* ---- request encoding -------------------------------------------------- */

static void out_reserve(conn *c, size_t need)
{
    if (c->out_cap >= need)
        return;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < need)
        cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out)
        die("out of memory");
    c->out_cap = cap;
}

static void out_printf(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(conn *c, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = c->out_cap - c->out_len;
        int n = vsnprintf(c->out + c->out_len, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            die("format error");
        if ((size_t)n < room) {
            c->out_len += (size_t)n;
            return;
        }
        out_reserve(c, c->out_len + (size_t)n + 1);
    }
}

static void http_request(conn *c, const char *method, const char *path, const char *body,
                         size_t body_len, const reqp *r, bool idem)
{
    out_reserve(c, 512 + body_len);
    c->out_len = 0;
    out_printf(c, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n", method, path,
               O.host, O.port, O.api_key ? O.api_key : "");
    if (idem) {
        char key[160];
        idem_key(key, sizeof key, r->key);
        out_printf(c, "Idempotency-Key: %s\r\n", key);
    }
    if (body)
        out_printf(c, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", body_len,
                   body);
    else
        out_printf(c, "\r\n");
}

/* Bytes an order's body takes at most: its head and each line's. */
#define ORDER_HEAD_BYTES 256
#define ORDER_LINE_BYTES 96

/* --orders: the body of an earn computed by the tenant's rules from an order
 * of --order-lines lines (2 by default: a drink and a food line, 10.00-209.99
 * CNY in all; more alternate the two), whose id is the request's idempotency
 * key (an order earns once).  n is at least order_bytes(). */
static int order_body(char *out, size_t n, const char *key)
{
    unsigned amount[JF_LOADGEN_ORDER_LINES_MAX], total = 0;
    for (int i = 0; i < O.order_lines; i++)
        total += amount[i] = i % 2 == 0 ? 1000 + rnd_below(10000) : rnd_below(10000);
    int len = snprintf(out, n,
                       "{\"order\": {\"id\": \"%s\", \"amount\": %u, \"currency\": \"CNY\", "
                       "\"channel\": \"pos\", \"lines\": [",
                       key, total);
    for (int i = 0; i < O.order_lines; i++)
        len +=
            snprintf(out + len, n - (size_t)len,
                     i % 2 == 0 ? "%s{\"sku\": \"TEA\", \"category\": \"drinks\", "
                                  "\"amount\": %u, \"quantity\": 1}"
                                : "%s{\"sku\": \"CAKE\", \"category\": \"food\", \"amount\": %u}",
                     i ? ", " : "", amount[i]);
    return len + snprintf(out + len, n - (size_t)len, "]}}");
}

static size_t order_bytes(void)
{
    return ORDER_HEAD_BYTES + (size_t)O.order_lines * ORDER_LINE_BYTES;
}

/* POST /v1/batch: {"operations": [{"op", "id", "idempotency_key", "body"}]}; the
 * request itself takes no Idempotency-Key, each operation carries its own. */
static void http_batch(conn *c, const reqp *r)
{
    static char *body;
    static size_t cap;
    size_t need = (size_t)O.batch * (O.orders ? 260 + order_bytes() : 260) + 64, len = 0;
    if (cap < need) {
        body = realloc(body, need);
        if (!body)
            die("out of memory");
        cap = need;
    }
    len += (size_t)snprintf(body + len, cap - len, "{\"operations\": [");
    for (int i = 0; i < O.batch; i++) {
        /* --sequential gives every member exactly one operation in turn (seeding). */
        uint64_t m = O.sequential ? (r->key * (uint64_t)O.batch + (uint64_t)i) % NMEMBERS
                                  : rnd_below(NMEMBERS);
        unsigned pts = O.points > 0 ? (unsigned)O.points : 1 + rnd_below(100);
        char key[160];
        idem_key(key, sizeof key, r->key * (uint64_t)O.batch + (uint64_t)i);
        if (O.orders) {
            len += (size_t)snprintf(body + len, cap - len,
                                    "%s{\"op\": \"earn\", \"id\": \"%s\", \"idempotency_key\": "
                                    "\"%s\", \"body\": ",
                                    i ? ", " : "", MEMBER_IDS[m], key);
            len += (size_t)order_body(body + len, cap - len, key);
            len += (size_t)snprintf(body + len, cap - len, "}");
            continue;
        }
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"op\": \"earn\", \"id\": \"%s\", \"idempotency_key\": "
                                "\"%s\", \"body\": {\"points\": %u",
                                i ? ", " : "", MEMBER_IDS[m], key, pts);
        if (O.expires_at)
            len +=
                (size_t)snprintf(body + len, cap - len, ", \"expires_at\": \"%s\"", O.expires_at);
        len += (size_t)snprintf(body + len, cap - len, "}}");
    }
    len += (size_t)snprintf(body + len, cap - len, "]}");
    http_request(c, "POST", "/v1/batch", body, len, r, false);
}

static void encode_http(conn *c, const reqp *r)
{
    static char *body;
    static size_t cap;
    char path[256];
    if (body == NULL) {
        cap = 512 + (O.orders ? order_bytes() : 0);
        if ((body = malloc(cap)) == NULL)
            die("out of memory");
    }
    const char *mid = WL == WL_SEED ? NULL : MEMBER_IDS[r->m];
    int n = 0;
    switch (r->op) {
    case OP_EARN:
        snprintf(path, sizeof path, "/v1/members/%s/earn", mid);
        if (O.orders) {
            char key[160];
            idem_key(key, sizeof key, r->key);
            n = order_body(body, cap, key);
        } else if (O.expires_at)
            n = snprintf(body, cap, "{\"points\": %lld, \"expires_at\": \"%s\"}", (long long)r->pts,
                         O.expires_at);
        else
            n = snprintf(body, cap, "{\"points\": %lld}", (long long)r->pts);
        http_request(c, "POST", path, body, (size_t)n, r, true);
        break;
    case OP_REDEEM:
        snprintf(path, sizeof path, "/v1/members/%s/redeem", mid);
        n = snprintf(body, cap, "{\"points\": %lld}", (long long)r->pts);
        http_request(c, "POST", path, body, (size_t)n, r, true);
        break;
    case OP_TRANSFER:
        snprintf(path, sizeof path, "/v1/members/%s/transfer", mid);
        n = snprintf(body, cap, "{\"to_member_id\": \"%s\", \"points\": %lld}", MEMBER_IDS[r->m2],
                     (long long)r->pts);
        http_request(c, "POST", path, body, (size_t)n, r, true);
        break;
    case OP_POINTS:
        snprintf(path, sizeof path, "/v1/members/%s/points", mid);
        http_request(c, "GET", path, NULL, 0, r, false);
        break;
    case OP_HISTORY:
        snprintf(path, sizeof path, "/v1/members/%s/transactions?limit=20", mid);
        http_request(c, "GET", path, NULL, 0, r, false);
        break;
    case OP_MEMBER:
        n = snprintf(body, cap, "{\"external_id\": \"%s-%llu\"}", O.prefix,
                     (unsigned long long)r->key);
        http_request(c, "POST", "/v1/members", body, (size_t)n, r, false);
        break;
    case OP_BATCH:
        http_batch(c, r);
        break;
    case OP_HEALTHZ:
        http_request(c, "GET", "/healthz", NULL, 0, r, false);
        break;
    }
}

/* Appends one RESP command of argc string arguments. */
static void resp_cmd(conn *c, int argc, const char **argv)
{
    out_printf(c, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        out_printf(c, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
}

static void encode_resp(conn *c, const reqp *r)
{
    char k1[32], k2[32], k3[32], k4[32], idem[160], pts[32], key[128];
    out_reserve(c, 512);
    c->out_len = 0;
    snprintf(k1, sizeof k1, "bal:%u", r->m + 1);
    snprintf(k2, sizeof k2, "led:%u", r->m + 1);
    idem_key(key, sizeof key, r->key);
    snprintf(idem, sizeof idem, "idem:%s", key);
    snprintf(pts, sizeof pts, "%lld", (long long)r->pts);
    switch (r->op) {
    case OP_EARN:
    case OP_REDEEM: {
        const char *argv[] = {
            "EVALSHA", r->op == OP_EARN ? O.sha_earn : O.sha_redeem, "3", k1, k2, idem, pts, key};
        resp_cmd(c, 8, argv);
        break;
    }
    case OP_TRANSFER: {
        snprintf(k3, sizeof k3, "bal:%u", r->m2 + 1);
        snprintf(k4, sizeof k4, "led:%u", r->m2 + 1);
        const char *argv[] = {"EVALSHA", O.sha_transfer, "5", k1, k3, k2, k4, idem, pts, key};
        resp_cmd(c, 10, argv);
        break;
    }
    case OP_POINTS: {
        const char *argv[] = {"GET", k1};
        resp_cmd(c, 2, argv);
        break;
    }
    case OP_HISTORY: {
        const char *argv[] = {"XREVRANGE", k2, "+", "-", "COUNT", "20"};
        resp_cmd(c, 6, argv);
        break;
    }
    default:
        die("workload not supported over RESP");
    }
}

/* ---- response parsing -------------------------------------------------- */

/* Returns the end of the line starting at p, or NULL when incomplete. */
static const char *line_end(const char *p, const char *end)
{
    const char *q = memchr(p, '\n', (size_t)(end - p));
    return q && q > p && q[-1] == '\r' ? q + 1 : NULL;
}

/* Returns the end of one complete RESP reply at p, NULL if incomplete. */
static const char *resp_skip(const char *p, const char *end, int depth)
{
    if (p >= end || depth > 8)
        return NULL;
    const char *le = line_end(p, end);
    if (!le)
        return NULL;
    long n = strtol(p + 1, NULL, 10);
    switch (*p) {
    case '+':
    case '-':
    case ':':
        return le;
    case '$':
        if (n < 0)
            return le;
        return end - le >= n + 2 ? le + n + 2 : NULL;
    case '*':
        for (long i = 0; i < n && le; i++)
            le = resp_skip(le, end, depth + 1);
        return le;
    default:
        return end; /* garbage: consume it, counted as an error */
    }
}

typedef struct reply {
    int status;
    bool replayed, close;
    const char *body;
    size_t body_len, total;
} reply;

/* Parses one HTTP response at the start of in; false while incomplete. */
static bool http_parse(const char *in, size_t len, reply *rp)
{
    const char *end = in + len;
    const char *hdr_end = memmem(in, len, "\r\n\r\n", 4);
    if (!hdr_end)
        return false;
    memset(rp, 0, sizeof *rp);
    if (len < 12 || strncmp(in, "HTTP/1.", 7) != 0) {
        rp->status = 599;
        rp->total = len;
        rp->close = true;
        return true;
    }
    rp->status = (int)strtol(in + 9, NULL, 10);
    long clen = 0;
    for (const char *p = memchr(in, '\n', len) + 1; p < hdr_end;) {
        const char *le = line_end(p, end);
        if (!le)
            break;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        else if (strncasecmp(p, "Idempotent-Replayed: true", 25) == 0)
            rp->replayed = true;
        else if (strncasecmp(p, "Connection: close", 17) == 0)
            rp->close = true;
        p = le;
    }
    size_t hlen = (size_t)(hdr_end - in) + 4;
    if (len < hlen + (size_t)clen)
        return false;
    rp->body = in + hlen;
    rp->body_len = (size_t)clen;
    rp->total = hlen + (size_t)clen;
    return true;
}

static bool resp_parse(const char *in, size_t len, reply *rp)
{
    const char *e = resp_skip(in, in + len, 0);
    if (!e)
        return false;
    memset(rp, 0, sizeof *rp);
    rp->total = (size_t)(e - in);
    if (in[0] == '-')
        rp->status = strncmp(in, "-REFUSED", 8) == 0 ? 422 : 500;
    else
        rp->status = 200;
    rp->replayed = strncmp(in, "+REPLAY", 7) == 0;
    return true;
}

/* ---- accounting -------------------------------------------------------- */

static void seed_store(const conn *c, const reply *rp)
{
    const char *p = memmem(rp->body, rp->body_len, "\"id\":\"", 6);
    if (!p || c->seq >= O.count)
        return;
    p += 6;
    const char *q = memchr(p, '"', rp->body_len - (size_t)(p - rp->body));
    if (!q)
        return;
    SEED_OUT[c->seq] = strndup(p, (size_t)(q - p));
}

/* How many times s (NUL-terminated) occurs in buf[0..len). */
static uint64_t count_of(const char *buf, size_t len, const char *s)
{
    size_t n = strlen(s);
    uint64_t k = 0;
    const char *end = buf + len;
    for (const char *p = buf; (p = memmem(p, (size_t)(end - p), s, n)) != NULL; p += n)
        k++;
    return k;
}

/* A batch's answer: its succeeded operations count as operations; with
 * --frozen (every member frozen: the floor, bench/README.md) so do its
 * operations refused as member_frozen, as refusals; any other failed
 * operation is op_failed. */
static void account_batch(const reply *rp)
{
    const char *p = memmem(rp->body, rp->body_len, "\"succeeded\":", 12);
    const char *q = memmem(rp->body, rp->body_len, "\"failed\":", 9);
    uint64_t failed = q ? strtoull(q + 9, NULL, 10) : (uint64_t)O.batch;
    uint64_t frozen = O.frozen ? count_of(rp->body, rp->body_len, "\"code\":\"member_frozen\"") : 0;
    if (frozen > failed)
        frozen = failed;
    S.ok++;
    S.ops += (p ? strtoull(p + 12, NULL, 10) : 0) + frozen;
    S.refused += frozen;
    S.op_failed += failed - frozen;
}

static void account(const conn *c, const reply *rp, uint64_t t_done, bool measured)
{
    int st = rp->status;
    if (WL == WL_SEED && st == 201)
        seed_store(c, rp);
    if (!measured)
        return;
    S.status[st >= 0 && st < 600 ? st : 599]++;
    bool is_read = c->rq.op == OP_POINTS || c->rq.op == OP_HISTORY;
    uint64_t lat = t_done - c->t_sched;
    if (st >= 200 && st < 300 && c->rq.op == OP_BATCH) {
        /* A batch answers {"succeeded": N, "failed": M, "results": [...]}. */
        account_batch(rp);
    } else if (st >= 200 && st < 300) {
        S.ok++;
        S.ops++;
        S.replayed += rp->replayed;
    } else if (st == 422) {
        S.refused++;
        S.ops++;
    } else if (st == 409) {
        S.conflict++;
        S.ops++;
    } else {
        S.errors++;
        if (S.errors <= 3 && rp->body)
            fprintf(stderr, "loadgen: status %d: %.*s\n", st, (int)rp->body_len, rp->body);
        return;
    }
    hist_record(&S.all, lat);
    hist_record(is_read ? &S.rd : &S.wr, lat);
    uint64_t slot = (c->t_sched - T_MEASURE) / TL_SLOT_NS;
    if (slot < TL_SLOTS) {
        tl_n[slot]++;
        tl_max[slot] = lat > tl_max[slot] ? lat : tl_max[slot];
    }
}

/* ---- connections -------------------------------------------------------- */

static int EP;
static conn *CONNS;
static int idle_head = -1;
static struct sockaddr_in ADDR;

static void conn_open(conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket failed");
    if (connect(fd, (struct sockaddr *)&ADDR, sizeof ADDR) != 0) {
        perror("loadgen: connect");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(EP, EPOLL_CTL_ADD, fd, &ev);
    c->fd = fd;
    c->in_len = 0;
}

static void conn_reopen(conn *c)
{
    epoll_ctl(EP, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (++S.conn_errors > CONN_ERRORS_MAX)
        die("too many connection errors");
    conn_open(c);
}

static void idle_push(conn *c)
{
    c->busy = false;
    c->next_idle = idle_head;
    idle_head = (int)(c - CONNS);
}

static conn *idle_pop(void)
{
    if (idle_head < 0)
        return NULL;
    conn *c = &CONNS[idle_head];
    idle_head = c->next_idle;
    return c;
}

static void want_write(conn *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(EP, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            want_write(c, true);
            return;
        }
        return; /* the error shows up on read */
    }
}

static uint64_t issued;

static void issue(conn *c, uint64_t t_sched)
{
    c->busy = true;
    c->seq = issued++;
    c->rq = make_params(c->seq);
    c->t_sched = t_sched;
    if (RESP)
        encode_resp(c, &c->rq);
    else
        encode_http(c, &c->rq);
    c->out_off = 0;
    conn_flush(c);
}

/* ---- main loop ---------------------------------------------------------- */

static bool STOPPING, CPU_STARTED;
static double CPU0, CPU1, SELF0, SELF1;

static double cpu_ticks_of(int pid);
static double self_cpu(void);

/* Samples the server's and our own CPU time when the window opens or closes. */
static void cpu_sample(bool open)
{
    double c = O.cpu_pid ? cpu_ticks_of(O.cpu_pid) : 0, s = self_cpu();
    if (open)
        CPU0 = c, SELF0 = s, CPU_STARTED = true;
    else
        CPU1 = c, SELF1 = s;
}

static bool request_limit_reached(void)
{
    uint64_t lim = O.count ? O.count : O.max_requests;
    return issued >= lim;
}

/* Called when c finished a request; closed loop sends the next at once. */
static void conn_done(conn *c)
{
    if (!STOPPING && O.rate <= 0 && !request_limit_reached())
        issue(c, now_ns());
    else
        idle_push(c);
}

static void conn_readable(conn *c)
{
    for (;;) {
        if (c->in_len == IN_MAX)
            die("response larger than the input buffer");
        ssize_t n = recv(c->fd, c->in + c->in_len, IN_MAX - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or error: the outstanding request failed. */
        if (c->busy) {
            reply rp = {.status = 599};
            account(c, &rp, now_ns(), c->t_sched >= T_MEASURE && c->t_sched < T_END);
        }
        conn_reopen(c);
        if (c->busy)
            conn_done(c);
        return;
    }
    reply rp;
    bool got = RESP ? resp_parse(c->in, c->in_len, &rp) : http_parse(c->in, c->in_len, &rp);
    if (!got || !c->busy)
        return;
    uint64_t t = now_ns();
    account(c, &rp, t, c->t_sched >= T_MEASURE && c->t_sched < T_END);
    memmove(c->in, c->in + rp.total, c->in_len - rp.total);
    c->in_len -= rp.total;
    if (rp.close)
        conn_reopen(c);
    conn_done(c);
}

static void on_usr1(int sig)
{
    (void)sig;
    STOP_MEASURE = 1;
}

static int busy_count(void)
{
    int n = 0;
    for (int i = 0; i < O.conns; i++)
        n += CONNS[i].busy;
    return n;
}

static void arm_timer(int tfd, uint64_t at_ns)
{
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at_ns / 1000000000ULL);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000ULL);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void run(void)
{
    EP = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(EP, EPOLL_CTL_ADD, tfd, &tev);
    CONNS = calloc((size_t)O.conns, sizeof *CONNS);
    if (!CONNS)
        die("out of memory");
    for (int i = O.conns - 1; i >= 0; i--) {
        CONNS[i].in = malloc(IN_MAX);
        if (!CONNS[i].in)
            die("out of memory");
        conn_open(&CONNS[i]);
        idle_push(&CONNS[i]);
    }
    uint64_t t0 = now_ns();
    T_MEASURE = t0 + (uint64_t)(O.warmup_s * 1e9);
    T_END = T_MEASURE + (uint64_t)(O.duration_s * 1e9);
    T_STOP = T_END;
    double interval = O.rate > 0 ? 1e9 / O.rate : 0;
    uint64_t k = 0, next = t0;
    if (O.rate <= 0) {
        conn *c;
        while (!request_limit_reached() && (c = idle_pop()))
            issue(c, now_ns());
    }
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!CPU_STARTED && t >= T_MEASURE)
            cpu_sample(true);
        if (!STOPPING && (t >= T_END || STOP_MEASURE || (O.count && request_limit_reached()))) {
            STOPPING = true;
            T_STOP = t;
            if (!CPU_STARTED)
                cpu_sample(true);
            cpu_sample(false);
            if (STOP_MEASURE && t < T_END)
                T_END = t > T_MEASURE ? t : T_MEASURE;
        }
        if (STOPPING && (busy_count() == 0 || t > T_STOP + DRAIN_NS))
            break;
        if (!STOPPING && O.rate > 0) {
            conn *c;
            while (next <= t && !request_limit_reached() && (c = idle_pop())) {
                issue(c, next);
                next = t0 + (uint64_t)((double)++k * interval);
            }
            if (idle_head >= 0)
                arm_timer(tfd, next);
        }
        int n = epoll_wait(EP, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                uint64_t exp;
                ssize_t r = read(tfd, &exp, sizeof exp);
                (void)r;
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                want_write(c, false);
                conn_flush(c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_readable(c);
        }
    }
    if (O.rate > 0) {
        /* Requests scheduled inside the window that never found a connection. */
        uint64_t sched_end = T_END < T_STOP ? T_END : T_STOP;
        uint64_t due = sched_end > t0 ? (uint64_t)((double)(sched_end - t0) / interval) : 0;
        uint64_t pre = T_MEASURE > t0 ? (uint64_t)((double)(T_MEASURE - t0) / interval) : 0;
        (void)pre;
        S.unsent = k < due ? due - k : 0;
    }
    S.errors += (uint64_t)busy_count(); /* timed out in the drain */
    if (O.count)
        T_END = now_ns(); /* count mode measures everything, start to last answer */
}

/* ---- setup and output --------------------------------------------------- */

static void load_members(void)
{
    if (WL == WL_SEED) {
        NMEMBERS = O.count;
        SEED_OUT = calloc(O.count ? O.count : 1, sizeof *SEED_OUT);
        return;
    }
    if (RESP || !O.members_file) {
        if (!O.nmembers)
            die("--nmembers or --members is required");
        NMEMBERS = O.nmembers;
        return;
    }
    FILE *f = fopen(O.members_file, "r");
    if (!f)
        die("cannot open --members file");
    size_t cap = 1024;
    MEMBER_IDS = malloc(cap * sizeof *MEMBER_IDS);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (NMEMBERS == cap) {
            cap *= 2;
            MEMBER_IDS = realloc(MEMBER_IDS, cap * sizeof *MEMBER_IDS);
        }
        if (!MEMBER_IDS)
            die("out of memory");
        MEMBER_IDS[NMEMBERS++] = strdup(line);
        if (O.nmembers && NMEMBERS == O.nmembers)
            break;
    }
    fclose(f);
    if (NMEMBERS < 2)
        die("need at least 2 members");
}

static double cpu_ticks_of(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* Fields after the comm: state(3) ... utime(14) stime(15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st);
}

static void write_seed(void)
{
    FILE *f = fopen(O.out_file, "w");
    if (!f)
        die("cannot write --out");
    uint64_t missing = 0;
    for (uint64_t i = 0; i < O.count; i++) {
        if (SEED_OUT[i])
            fprintf(f, "%s\n", SEED_OUT[i]);
        else
            missing++;
    }
    fclose(f);
    if (missing)
        fprintf(stderr, "loadgen: %llu members were not created\n", (unsigned long long)missing);
}

/* Lines "t_ms answered max_latency_us", one per slot of the window. */
static void write_timeline(void)
{
    FILE *f = fopen(O.timeline_file, "w");
    if (!f)
        die("cannot write --timeline");
    uint64_t slots = (T_END - T_MEASURE + TL_SLOT_NS - 1) / TL_SLOT_NS;
    for (uint64_t i = 0; i < slots && i < TL_SLOTS; i++)
        fprintf(f, "%llu %u %llu\n", (unsigned long long)(i * TL_SLOT_NS / 1000000), tl_n[i],
                (unsigned long long)(tl_max[i] / 1000));
    fclose(f);
}

static void print_json(double cpu_s, double self_cpu_s)
{
    double dur = (double)(T_END - T_MEASURE) / 1e9;
    if (dur <= 0)
        dur = 1e-9;
    printf("{\"workload\": \"%s\", \"proto\": \"%s\", \"conns\": %d, \"rate\": %.0f, "
           "\"duration_s\": %.3f,\n",
           O.workload, O.proto, O.conns, O.rate, dur);
    printf(" \"requests\": %llu, \"ops\": %llu, \"throughput\": %.1f, \"ok\": %llu, "
           "\"refused\": %llu, \"replayed\": %llu, \"conflict\": %llu, \"errors\": %llu, "
           "\"conn_errors\": %llu, \"unsent\": %llu, \"op_failed\": %llu,\n",
           (unsigned long long)(S.ok + S.refused + S.conflict), (unsigned long long)S.ops,
           (double)S.ops / dur, (unsigned long long)S.ok, (unsigned long long)S.refused,
           (unsigned long long)S.replayed, (unsigned long long)S.conflict,
           (unsigned long long)S.errors, (unsigned long long)S.conn_errors,
           (unsigned long long)S.unsent, (unsigned long long)S.op_failed);
    printf(" \"server_cpu_s\": %.3f, \"loadgen_cpu_s\": %.3f,\n", cpu_s, self_cpu_s);
    printf(" \"lat_us\": ");
    hist_json(stdout, &S.all);
    printf(",\n \"read_lat_us\": ");
    hist_json(stdout, &S.rd);
    printf(",\n \"write_lat_us\": ");
    hist_json(stdout, &S.wr);
    printf(",\n \"status\": {");
    bool first = true;
    for (int i = 0; i < 600; i++)
        if (S.status[i]) {
            printf("%s\"%d\": %llu", first ? "" : ", ", i, (unsigned long long)S.status[i]);
            first = false;
        }
    printf("}}\n");
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const char usage[] =
    "usage: loadgen --port P [--host 127.0.0.1] [--proto http|resp]\n"
    "  --workload earn|redeem|transfer|read|batch|seed|healthz  --conns N\n"
    "  [--duration S] [--warmup S] [--rate R (0 = closed loop)]\n"
    "  [--members FILE] [--nmembers N] [--hot K] [--sequential] [--random-keys] [--count N]\n"
    "  [--max-requests N] [--api-key K] [--prefix P] [--out FILE] [--batch N]\n"
    "  [--expires-at RFC3339] [--sha-earn S --sha-redeem S --sha-transfer S]\n"
    "  [--cpu-pid PID] [--seed N] [--points N (fixed earn amount)]\n"
    "  [--orders (earn and batch: an order with lines, points by the tenant's rules)]\n"
    "  [--order-lines N (lines per order, 1..100; default 2)]\n"
    "  [--timeline FILE (per 100 ms of the window: answered, max latency in us)]\n"
    "  [--frozen (batch: operations refused as member_frozen count as refused operations)]\n"
    "SIGUSR1 ends the measurement window early.\n";

static void parse_args(int argc, char **argv)
{
    O = (opts){.host = "127.0.0.1",
               .proto = "http",
               .workload = "earn",
               .prefix = "lg",
               .conns = 16,
               .duration_s = -1,
               .batch = 1000,
               .order_lines = 2,
               .max_requests = 100000000ULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--sequential") == 0) {
            O.sequential = true;
            continue;
        }
        if (strcmp(a, "--random-keys") == 0) {
            O.random_keys = true;
            continue;
        }
        if (strcmp(a, "--orders") == 0) {
            O.orders = true;
            continue;
        }
        if (strcmp(a, "--frozen") == 0) {
            O.frozen = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            fputs(usage, stdout), exit(0);
        if (!v)
            fputs(usage, stderr), exit(2);
        i++;
#define S_OPT(name, field)                                                                         \
    if (strcmp(a, name) == 0) {                                                                    \
        O.field = v;                                                                               \
        continue;                                                                                  \
    }
#define N_OPT(name, field, conv)                                                                   \
    if (strcmp(a, name) == 0) {                                                                    \
        O.field = conv;                                                                            \
        continue;                                                                                  \
    }
        S_OPT("--host", host) S_OPT("--proto", proto) S_OPT("--workload", workload);
        S_OPT("--members", members_file) S_OPT("--api-key", api_key) S_OPT("--prefix", prefix);
        S_OPT("--out", out_file) S_OPT("--expires-at", expires_at);
        S_OPT("--sha-earn", sha_earn) S_OPT("--sha-redeem", sha_redeem);
        S_OPT("--sha-transfer", sha_transfer) S_OPT("--timeline", timeline_file);
        N_OPT("--port", port, (int)strtol(v, NULL, 10));
        N_OPT("--conns", conns, (int)strtol(v, NULL, 10));
        N_OPT("--hot", hot, (int)strtol(v, NULL, 10));
        N_OPT("--batch", batch, (int)strtol(v, NULL, 10));
        N_OPT("--points", points, (int)strtol(v, NULL, 10));
        N_OPT("--order-lines", order_lines, (int)strtol(v, NULL, 10));
        N_OPT("--cpu-pid", cpu_pid, (int)strtol(v, NULL, 10));
        N_OPT("--duration", duration_s, strtod(v, NULL));
        N_OPT("--warmup", warmup_s, strtod(v, NULL));
        N_OPT("--rate", rate, strtod(v, NULL));
        N_OPT("--nmembers", nmembers, strtoull(v, NULL, 10));
        N_OPT("--count", count, strtoull(v, NULL, 10));
        N_OPT("--max-requests", max_requests, strtoull(v, NULL, 10));
        N_OPT("--seed", seed, strtoull(v, NULL, 10));
        fprintf(stderr, "loadgen: unknown option %s\n", a);
        exit(2);
    }
    if (O.port <= 0 || O.port > 65535 || O.conns < 1 || O.conns > CONNS_MAX)
        die("bad --port or --conns (1..1024)");
    if (O.order_lines < 1 || O.order_lines > JF_LOADGEN_ORDER_LINES_MAX)
        die("bad --order-lines (1..100)");
    /* Without --duration: 5 s, or in count mode as long as the count takes. */
    if (O.duration_s < 0)
        O.duration_s = O.count ? DURATION_MAX_S : 5;
    if (O.duration_s < 0 || O.duration_s > DURATION_MAX_S || O.warmup_s < 0 ||
        O.warmup_s > DURATION_MAX_S)
        die("--duration and --warmup must be within 0..3600 s");
    if (O.batch < 1 || O.batch > 100000)
        die("--batch must be 1..100000");
    RESP = strcmp(O.proto, "resp") == 0;
    const char *names[] = {"earn", "redeem", "transfer", "read", "seed", "batch", "healthz"};
    int w = -1;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(O.workload, names[i]) == 0)
            w = i;
    if (w < 0)
        die("unknown --workload");
    WL = (enum workload)w;
    if (WL == WL_SEED && (!O.count || !O.out_file))
        die("seed needs --count and --out");
    if (O.count)
        O.warmup_s = 0;
    if (O.seed)
        rng_state ^= O.seed * 0x9E3779B97F4A7C15ULL;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    load_members();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, on_usr1);
    ADDR.sin_family = AF_INET;
    ADDR.sin_port = htons((uint16_t)O.port);
    if (inet_pton(AF_INET, O.host, &ADDR.sin_addr) != 1)
        die("bad --host");
    if (ntohl(ADDR.sin_addr.s_addr) >> 24 != 127)
        die("only loopback hosts are allowed");
    run();
    if (WL == WL_SEED)
        write_seed();
    double ticks = (double)sysconf(_SC_CLK_TCK);
    double cpu_s = O.cpu_pid && CPU0 >= 0 && CPU1 >= 0 ? (CPU1 - CPU0) / ticks : -1;
    print_json(cpu_s, SELF1 - SELF0);
    if (O.timeline_file)
        write_timeline();
    return S.errors > 0 && S.ok == 0 ? 1 : 0;
}
