/*
 * The route table of the HTTP API, and the matcher that walks it.
 *
 * Every endpoint is one row of data (STYLE.md §12): method, path pattern,
 * the engine operation it runs, how large a body it accepts and whether it
 * needs an API key or the test clock.  The server, the metrics labels and
 * the docs all read this one table, so an endpoint cannot exist in one place
 * and be missing from another.
 *
 * Paths arrive raw (the daemon is told not to unescape them) so that an
 * external id containing "%2F" stays one segment; the matcher splits on '/'
 * first and percent-decodes the {param} segment afterwards.  When several
 * patterns match, the one with a literal segment at the leftmost position
 * where they differ wins: /v1/members/external/X is the external-id lookup,
 * not the member "external".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"

/* Paths have at most this many segments; longer ones match nothing. */
#define SEGMENTS_MAX 8

#define BODY JF_BODY_BYTES_MAX
#define ENGINE(op) SRV_KIND_ENGINE, JF_OP_##op

static const srv_route routes[] = {
    {"GET", "/healthz", SRV_KIND_HEALTHZ, JF_OP__COUNT, 0, SRV_ROUTE_NO_AUTH},
    {"GET", "/metrics", SRV_KIND_METRICS, JF_OP__COUNT, 0, SRV_ROUTE_NO_AUTH},
    {"POST", "/v1/members", ENGINE(MEMBER_CREATE), BODY, 0},
    {"GET", "/v1/members", ENGINE(MEMBER_LIST), 0, 0},
    {"GET", "/v1/members/{id}", ENGINE(MEMBER_GET), 0, 0},
    {"GET", "/v1/members/external/{external_id}", ENGINE(MEMBER_GET_EXTERNAL), 0, 0},
    {"PATCH", "/v1/members/{id}", ENGINE(MEMBER_UPDATE), BODY, 0},
    {"GET", "/v1/members/{id}/points", ENGINE(MEMBER_POINTS), 0, 0},
    {"GET", "/v1/members/{id}/transactions", ENGINE(MEMBER_TRANSACTIONS), 0, 0},
    {"GET", "/v1/members/{id}/lots", ENGINE(MEMBER_LOTS), 0, 0},
    {"GET", "/v1/members/{id}/holds", ENGINE(MEMBER_HOLDS), 0, 0},
    {"POST", "/v1/members/{id}/earn", ENGINE(EARN), BODY, 0},
    {"POST", "/v1/members/{id}/redeem", ENGINE(REDEEM), BODY, 0},
    {"POST", "/v1/members/{id}/adjust", ENGINE(ADJUST), BODY, 0},
    {"POST", "/v1/members/{id}/transfer", ENGINE(TRANSFER), BODY, 0},
    {"POST", "/v1/members/{id}/holds", ENGINE(HOLD), BODY, 0},
    {"GET", "/v1/holds/{id}", ENGINE(HOLD_GET), 0, 0},
    {"POST", "/v1/holds/{id}/capture", ENGINE(HOLD_CAPTURE), BODY, 0},
    {"POST", "/v1/holds/{id}/void", ENGINE(HOLD_VOID), BODY, 0},
    {"GET", "/v1/transactions", ENGINE(TRANSACTION_LIST), 0, 0},
    {"GET", "/v1/transactions/{id}", ENGINE(TRANSACTION_GET), 0, 0},
    {"POST", "/v1/transactions/{id}/reverse", ENGINE(REVERSE), BODY, 0},
    {"POST", "/v1/batch", ENGINE(BATCH), JF_BATCH_BODY_BYTES_MAX, 0},
    {"POST", "/v1/members/{id}/events", ENGINE(MEMBER_EVENT), BODY, 0},
    {"POST", "/v1/rules", ENGINE(RULE_CREATE), BODY, 0},
    {"GET", "/v1/rules", ENGINE(RULE_LIST), 0, 0},
    {"GET", "/v1/rules/{id}", ENGINE(RULE_GET), 0, 0},
    {"PUT", "/v1/rules/{id}", ENGINE(RULE_UPDATE), BODY, 0},
    {"POST", "/v1/rules/{id}/archive", ENGINE(RULE_ARCHIVE), BODY, 0},
    {"POST", "/v1/orders/{order_id}/refund", ENGINE(ORDER_REFUND), BODY, 0},
    {"GET", "/v1/orders/{order_id}", ENGINE(ORDER_GET), 0, 0},
    {"POST", "/v1/members/{id}/check-in", ENGINE(CHECK_IN), BODY, 0},
    {"GET", "/v1/members/{id}/check-in", ENGINE(CHECK_IN_CALENDAR), 0, 0},
    {"POST", "/v1/campaigns", ENGINE(CAMPAIGN_CREATE), BODY, 0},
    {"GET", "/v1/campaigns", ENGINE(CAMPAIGN_LIST), 0, 0},
    {"GET", "/v1/campaigns/{id}", ENGINE(CAMPAIGN_GET), 0, 0},
    {"PATCH", "/v1/campaigns/{id}", ENGINE(CAMPAIGN_UPDATE), BODY, 0},
    {"GET", "/v1/tiers", ENGINE(TIER_CONFIG_GET), 0, 0},
    {"PUT", "/v1/tiers", ENGINE(TIER_CONFIG_PUT), BODY, 0},
    {"POST", "/v1/tiers/evaluate", ENGINE(TIER_EVALUATE), BODY, 0},
    {"POST", "/v1/tiers/import", ENGINE(TIER_IMPORT), JF_BATCH_BODY_BYTES_MAX, 0},
    {"GET", "/v1/members/{id}/tier", ENGINE(MEMBER_TIER_GET), 0, 0},
    {"PUT", "/v1/members/{id}/tier", ENGINE(MEMBER_TIER_SET), BODY, 0},
    {"GET", "/v1/events", ENGINE(EVENT_LIST), 0, 0},
    {"GET", "/v1/program", ENGINE(PROGRAM_GET), 0, 0},
    {"PATCH", "/v1/program", ENGINE(PROGRAM_UPDATE), BODY, 0},
    {"POST", "/v1/expiry/run", ENGINE(EXPIRY_RUN), BODY, 0},
    {"GET", "/v1/expiry/forecast", ENGINE(EXPIRY_FORECAST), 0, 0},
    {"POST", "/v1/bonuses/run", ENGINE(BONUS_SWEEP), BODY, 0},
    {"POST", "/v1/api-keys", ENGINE(KEY_CREATE), BODY, 0},
    {"GET", "/v1/api-keys", ENGINE(KEY_LIST), 0, 0},
    {"DELETE", "/v1/api-keys/{id}", ENGINE(KEY_REVOKE), BODY, 0},
    {"PUT", "/v1/test/clock", ENGINE(CLOCK_SET), BODY, SRV_ROUTE_TEST_CLOCK},
    {"GET", "/v1/test/clock", ENGINE(CLOCK_GET), 0, SRV_ROUTE_TEST_CLOCK},
};

#define ROUTE_COUNT ((int)(sizeof routes / sizeof routes[0]))

int srv_route_count(void)
{
    return ROUTE_COUNT;
}

const srv_route *srv_route_at(int i)
{
    return (i >= 0 && i < ROUTE_COUNT) ? &routes[i] : NULL;
}

/* A segment of a path: a slice of the caller's string, not a copy. */
typedef struct seg {
    const char *s;
    size_t len;
} seg;

/* Splits "/a/b/c" into slices.  Returns the count, or -1 when the path does
 * not start with '/' or has more than SEGMENTS_MAX segments.  "/" alone is
 * one empty segment, which no pattern but a bare "/" would match. */
static int split_path(const char *path, seg *out)
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (n == SEGMENTS_MAX)
            return -1;
        out[n].s = p;
        out[n].len = len;
        n++;
        if (!slash)
            return n;
        p = slash + 1;
    }
}

static bool seg_is_param(const seg *s)
{
    return s->len >= 2 && s->s[0] == '{' && s->s[s->len - 1] == '}';
}

/* Every pattern split once: splitting all of them again for each request
 * was 18,000 instructions a request (callgrind), a tenth of an HTTP
 * thread's work on an earn. */
typedef struct route_pat {
    seg segs[SEGMENTS_MAX];
    int n;
    int param; /* the index of the {param} segment, or -1 */
} route_pat;

/* The routes with n segments, in table order: a path is only tried against
 * patterns of its own length: 20 of the 54 for an earn. */
typedef struct route_bucket {
    int routes[ROUTE_COUNT];
    int n;
} route_bucket;

static route_pat route_pats[ROUTE_COUNT];
static route_bucket route_buckets[SEGMENTS_MAX + 1];
static pthread_once_t route_pats_once = PTHREAD_ONCE_INIT;

/* The index of pattern segment {param}, or -1; a table with two in one
 * pattern is a bug, stopped at the first request. */
static int pattern_param(const char *pattern, const seg *segs, int n)
{
    int param = -1;
    for (int i = 0; i < n; i++) {
        if (!seg_is_param(&segs[i]))
            continue;
        if (param >= 0) {
            fprintf(stderr, "jifen: route %s has two {param} segments\n", pattern);
            abort();
        }
        param = i;
    }
    return param;
}

static void route_pats_split(void)
{
    for (int i = 0; i < ROUTE_COUNT; i++) {
        route_pat *rp = &route_pats[i];
        rp->n = split_path(routes[i].pattern, rp->segs);
        rp->param = pattern_param(routes[i].pattern, rp->segs, rp->n);
        if (rp->n > 0) {
            route_bucket *b = &route_buckets[rp->n];
            b->routes[b->n++] = i;
        }
    }
}

/*
 * Tries one pattern, split once, against the path segments (as many as the
 * pattern has).  Returns -1 when it does not match, else a specificity
 * score: one bit per literal segment, the leftmost segment in the highest
 * bit, so that comparing scores compares literal positions from the left.
 * On a match *param gets the index of the {param} segment (or -1).  The
 * segments are compared from the last: patterns of one length mostly differ
 * there ("/v1/members/{id}/earn", ".../redeem"), and all share the first.
 */
static int pattern_score(const route_pat *rp, const seg *path, int *param)
{
    int score = 0;
    for (int i = rp->n - 1; i >= 0; i--) {
        const seg *pat = &rp->segs[i];
        if (i == rp->param) {
            if (path[i].len == 0)
                return -1;
            continue;
        }
        if (pat->len != path[i].len || memcmp(pat->s, path[i].s, pat->len) != 0)
            return -1;
        score |= 1 << (SEGMENTS_MAX - 1 - i);
    }
    *param = rp->param;
    return score;
}

/* A quick test before pattern_score: whether the path's last segment is as
 * long as the pattern's, when that is a literal.  It turns most patterns of
 * the path's length away without a call (four in five for an earn). */
static bool last_len_fits(const route_pat *rp, const seg *path)
{
    int last = rp->n - 1;
    return last == rp->param || rp->segs[last].len == path[last].len;
}

/* Whether route i is served: the test-clock routes only with the test clock. */
static bool route_visible(int i, bool test_clock)
{
    return !(routes[i].flags & SRV_ROUTE_TEST_CLOCK) || test_clock;
}

/* HEAD is answered as GET (the daemon drops the body). */
static bool method_matches(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return true;
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

/* Appends a method to the Allow list unless it is already there. */
static void allow_add(char *allow, size_t cap, const char *method)
{
    size_t mlen = strlen(method);
    for (const char *p = strstr(allow, method); p; p = strstr(p + 1, method)) {
        bool starts = p == allow || p[-1] == ' ';
        bool ends = p[mlen] == '\0' || p[mlen] == ',';
        if (starts && ends)
            return;
    }
    size_t used = strlen(allow);
    size_t need = (used ? 2 : 0) + mlen + 1;
    if (used + need > cap)
        return;
    if (used) {
        memcpy(allow + used, ", ", 2);
        used += 2;
    }
    memcpy(allow + used, method, mlen + 1);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool srv_percent_decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%') {
            dst[o++] = src[i];
            continue;
        }
        if (len - i < 3)
            return false;
        int hi = hex_value(src[i + 1]), lo = hex_value(src[i + 2]);
        /* An encoded NUL would silently truncate the id in every C string
         * that carries it later, so it is refused here. */
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return false;
        dst[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    dst[o] = '\0';
    return true;
}

/* The best route with this method among those of the path's length.
 * *path_known says whether any route, of whatever method, matches the path. */
static int best_route(const char *method, const seg *path, int path_n, bool test_clock,
                      int *param_seg, bool *path_known)
{
    int best = -1, best_score = -1;
    *path_known = false;
    pthread_once(&route_pats_once, route_pats_split);
    const route_bucket *b = &route_buckets[path_n];
    for (int k = 0; k < b->n; k++) {
        int i = b->routes[k], param;
        if (!route_visible(i, test_clock) || !last_len_fits(&route_pats[i], path))
            continue;
        int score = pattern_score(&route_pats[i], path, &param);
        if (score < 0)
            continue;
        *path_known = true;
        if (method_matches(routes[i].method, method) && score > best_score) {
            best = i;
            best_score = score;
            *param_seg = param;
        }
    }
    return best;
}

/* For a 405: the methods of every route whose pattern matches the path, in
 * table order.  Built only then, as no other answer carries it. */
static void allow_list(const seg *path, int path_n, bool test_clock, char *allow, size_t cap)
{
    const route_bucket *b = &route_buckets[path_n];
    for (int k = 0; k < b->n; k++) {
        int i = b->routes[k], param;
        if (route_visible(i, test_clock) && pattern_score(&route_pats[i], path, &param) >= 0)
            allow_add(allow, cap, routes[i].method);
    }
}

srv_match_status srv_route_match(const char *method, const char *path, bool test_clock,
                                 srv_match *m)
{
    seg segs[SEGMENTS_MAX];
    m->route = -1;
    m->path_id = NULL;
    m->allow[0] = '\0';
    int n = split_path(path, segs);
    if (n < 0)
        return SRV_MATCH_NOT_FOUND;
    int param = -1;
    bool known;
    int best = best_route(method, segs, n, test_clock, &param, &known);
    if (best < 0 && known)
        allow_list(segs, n, test_clock, m->allow, sizeof m->allow);
    if (best < 0)
        return known ? SRV_MATCH_BAD_METHOD : SRV_MATCH_NOT_FOUND;
    if (param >= 0) {
        char *id = malloc(segs[param].len + 1);
        if (!id) {
            m->route = -2;
            return SRV_MATCH_NOT_FOUND;
        }
        if (!srv_percent_decode(segs[param].s, segs[param].len, id)) {
            free(id);
            return SRV_MATCH_BAD_ENCODING;
        }
        m->path_id = id;
    }
    m->route = best;
    return SRV_MATCH_OK;
}
