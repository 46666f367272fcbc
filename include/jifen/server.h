/*
 * jifen's HTTP/JSON server: libjifen behind libmicrohttpd.
 *
 * The server is a client of the public engine API (jifen.h) and nothing
 * more: it matches a request to a route, authenticates the API key, hands
 * the engine a jf_request and turns the jf_result into an HTTP response.
 * Writes never block a worker thread: the connection is suspended while the
 * engine's writer thread commits, and resumed when the answer arrives.
 * Implemented in src/server; the `jifen serve` command is its only user.
 */
#ifndef JIFEN_SERVER_H
#define JIFEN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "jifen/jifen.h"

typedef struct jf_server jf_server;

typedef struct jf_server_options {
    const char *listen; /* "HOST:PORT" with an IPv4 address or "localhost"; port 0 = any */
    int threads;        /* worker threads; values below 2 become JF_HTTP_THREADS_DEFAULT */
    bool test_clock;    /* serve /v1/test/clock (the engine must have its test clock on) */
    FILE *access_log;   /* JSON lines, one per request; NULL = off.  Not closed by us. */
    int loop_wait_ms;   /* longest sleep of an HTTP loop with nothing due; 0 = the default,
                           JF_HTTP_LOOP_WAIT_MS.  Tests raise it so that a lost wake-up
                           leaves a request unanswered instead of late. */
} jf_server_options;

/*
 * Starts listening and serving with a pool of worker threads.  The engine
 * must outlive the server.  On failure returns JF_ERR_INVALID_REQUEST (a bad
 * listen address), JF_ERR_IO (cannot bind or start) or JF_ERR_NOMEM, sets
 * *out to NULL and writes a sentence into err (when not NULL).
 */
jf_err jf_server_start(jf_engine *eng, const jf_server_options *o, jf_server **out, char *err,
                       size_t errlen);

/* The port actually bound: the one asked for, or the one the kernel chose
 * when the listen address had port 0. */
int jf_server_port(const jf_server *s);

/* Stops accepting new connections.  Requests already received still finish,
 * and their responses carry "Connection: close".  Safe to call twice. */
void jf_server_quiesce(jf_server *s);

/* Quiesces, waits for in-flight requests (every request waiting for the
 * engine's writer, and others for up to a few seconds), then stops the
 * worker threads and frees the server.  Never frees the engine or closes the
 * access log.  NULL is a no-op. */
void jf_server_free(jf_server *s);

#endif
