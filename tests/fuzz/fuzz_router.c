/*
 * Fuzzes the HTTP route matcher (src/server/router.c) with raw request
 * lines: "<method> <path>", the path still percent-encoded, as the daemon
 * hands it over.  Besides the sanitizers it checks what the server relies
 * on: a match names a route of that method (HEAD answers a GET route), a
 * test-clock route only when the clock is on, and its {id} is the segment
 * decoded as a reference decoder here decodes it (so no NUL); a refusal
 * leaves no route or id; a 405 lists the methods allowed.
 *
 * The corpus (tests/fuzz/corpus/router) replays under ctest in every build;
 * `make fuzz` runs it with libFuzzer (see fuzz_engine.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"

#define LINE_MAX_BYTES 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fail(const char *what, const char *method, const char *path)
{
    fprintf(stderr, "fuzz_router: %s: %s %s\n", what, method, path);
    abort();
}

/* The reference: %XX with two hex digits, anything else as it is; -1 for a
 * malformed escape or %00. */
static int ref_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        char hex[3] = {0};
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (n - i < 3)
            return -1;
        memcpy(hex, s + i + 1, 2);
        if (strspn(hex, "0123456789abcdefABCDEF") != 2 || sscanf(hex, "%2x", &v) != 1 || v == 0)
            return -1;
        out[o++] = (char)v;
        i += 2;
    }
    out[o] = '\0';
    return (int)o;
}

/* The path segment a route's {param} sits at, counted from the first. */
static int param_index(const char *pattern)
{
    int seg = -1;
    for (const char *p = pattern; *p; p++) {
        if (*p == '/')
            seg++;
        if (*p == '{')
            return seg;
    }
    return -1;
}

/* Segment i (0-based, after the leading '/') of path, its bytes in *s. */
static size_t segment(const char *path, int i, const char **s)
{
    const char *p = path;
    for (int k = -1; k < i; k++) {
        p = strchr(p, '/');
        if (p == NULL)
            return 0;
        p++;
    }
    *s = p;
    return strcspn(p, "/");
}

static void check_ok(const srv_match *m, const char *method, const char *path, bool clock)
{
    const srv_route *r = srv_route_at(m->route);
    bool head_of_get = strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
    if (m->route < 0 || m->route >= srv_route_count() ||
        (strcmp(r->method, method) != 0 && !head_of_get))
        fail("matched a route of another method", method, path);
    if ((r->flags & SRV_ROUTE_TEST_CLOCK) && !clock)
        fail("matched a test-clock route without the test clock", method, path);
    int pi = param_index(r->pattern);
    if ((pi >= 0) != (m->path_id != NULL))
        fail("the {id} is missing or extra", method, path);
    if (pi < 0)
        return;
    const char *s = NULL;
    size_t n = segment(path, pi, &s);
    char *want = malloc(n + 1);
    if (want == NULL || ref_decode(s, n, want) < 0 || strcmp(want, m->path_id) != 0)
        fail("the {id} is not its segment decoded", method, path);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[LINE_MAX_BYTES + 1];
    if (size < 2 || size > LINE_MAX_BYTES)
        return 0;
    bool clock = data[0] & 1;
    memcpy(line, data + 1, size - 1);
    line[size - 1] = '\0';
    char *sp = strchr(line, ' ');
    if (sp == NULL)
        return 0;
    *sp = '\0';
    const char *method = line, *path = sp + 1;
    srv_match m;
    srv_match_status st = srv_route_match(method, path, clock, &m);
    if (st == SRV_MATCH_OK)
        check_ok(&m, method, path, clock);
    else if (m.route != -1 || m.path_id != NULL)
        fail("a refusal left a route or an id", method, path);
    if (st == SRV_MATCH_BAD_METHOD && m.allow[0] == '\0')
        fail("a 405 without an Allow list", method, path);
    free(m.path_id);
    return 0;
}
