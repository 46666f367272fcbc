/*
 * Private declarations shared by the files of src/server.
 *
 * router.c holds the route table (the one description of the HTTP surface)
 * and matches a method and path against it; metrics.c keeps the request
 * counters and renders /metrics; access_log.c writes one JSON line per
 * request; server.c ties them to libmicrohttpd.  Names here carry the srv_
 * prefix: they are internal to the server and never part of libjifen.
 */
#ifndef JF_SERVER_INT_H
#define JF_SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jifen/jifen.h"

/* ---- routes (router.c) ---- */

/* The route answers without an API key (/healthz, /metrics). */
#define SRV_ROUTE_NO_AUTH 0x1u
/* The route exists only when the server runs with --test-clock. */
#define SRV_ROUTE_TEST_CLOCK 0x2u

/* Who answers a route: the engine, or the server itself. */
typedef enum srv_kind {
    SRV_KIND_ENGINE,
    SRV_KIND_HEALTHZ,
    SRV_KIND_METRICS,
} srv_kind;

typedef struct srv_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/members/{id}/earn"; at most one {param} segment */
    srv_kind kind;
    jf_op op;        /* for SRV_KIND_ENGINE */
    size_t body_max; /* bytes of request body accepted; 0 = none */
    unsigned flags;  /* SRV_ROUTE_* */
} srv_route;

/* Outcome of matching a request line against the table. */
typedef enum srv_match_status {
    SRV_MATCH_OK,
    SRV_MATCH_NOT_FOUND,    /* no pattern matches the path: 404 */
    SRV_MATCH_BAD_METHOD,   /* a pattern matches, none with this method: 405 */
    SRV_MATCH_BAD_ENCODING, /* the {id} segment has a malformed %-escape or NUL: 400 */
} srv_match_status;

typedef struct srv_match {
    int route;      /* index into the table, or -1 */
    char *path_id;  /* percent-decoded {param}, malloc'd (caller frees), or NULL */
    char allow[64]; /* for 405: the methods the path accepts, "GET, POST"; else "" */
} srv_match;

/* Number of routes, and route i (0 <= i < srv_route_count()). */
int srv_route_count(void);
const srv_route *srv_route_at(int i);

/* Matches method and path (no query string, not yet percent-decoded).
 * Literal segments win over {param} segments, position by position from the
 * left.  Routes flagged SRV_ROUTE_TEST_CLOCK are invisible unless test_clock.
 * Returns SRV_MATCH_OK and fills m, or another status (m->route = -1).
 * On out-of-memory returns SRV_MATCH_NOT_FOUND with m->route = -2. */
srv_match_status srv_route_match(const char *method, const char *path, bool test_clock,
                                 srv_match *m);

/* Percent-decodes src[0..len) into dst (room for len + 1 bytes) and
 * NUL-terminates it.  Returns false on a malformed escape or an encoded NUL. */
bool srv_percent_decode(const char *src, size_t len, char *dst);

/* ---- metrics (metrics.c) ---- */

typedef struct srv_metrics srv_metrics;

/* Allocates zeroed counters for every route plus one "unmatched" row.
 * Returns NULL when out of memory. */
srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);

/* Counts one answered request.  route is an index or -1 (unmatched).
 * Lock-free: safe from every worker thread. */
void srv_metrics_record(srv_metrics *m, int route, int status, uint64_t duration_ns);

typedef struct srv_loops srv_loops;

/* Renders the Prometheus text exposition of the HTTP counters, the HTTP
 * loops' gauges and the engine's writer statistics.  Returns a malloc'd
 * string or NULL. */
char *srv_metrics_render(srv_metrics *m, jf_engine *eng, const srv_loops *loops, size_t *len);

/* loop.c: writes the HTTP loops' gauges (connections open, per loop) in
 * Prometheus text. */
void srv_loops_render(const srv_loops *ls, FILE *f);

/* ---- access log (access_log.c) ---- */

typedef struct srv_log_entry {
    int64_t ts_ms; /* wall clock when the request arrived */
    const char *method;
    const char *path;
    const char *route; /* the pattern, or NULL when unmatched */
    int status;        /* 0 when the connection ended without a response */
    double duration_ms;
    uint64_t bytes_in;
    uint64_t bytes_out;
    const char *key; /* the actor ("key_..."), or NULL */
    const char *idempotency_key;
    bool replayed;
    const char *request_id;
} srv_log_entry;

typedef struct srv_log srv_log;

/* Wraps f (not owned; NULL = logging off, and srv_log_new returns NULL). */
srv_log *srv_log_new(FILE *f);
void srv_log_free(srv_log *l);

/* Writes one JSON line and flushes.  Serialised by a mutex.  NULL is a no-op. */
void srv_log_write(srv_log *l, const srv_log_entry *e);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds. */
void srv_format_rfc3339_ms(int64_t ms, char *buf, size_t len);

#endif
