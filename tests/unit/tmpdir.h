/*
 * Temporary directories for unit tests, and the tenant most engine tests
 * start from: shared, so that each test file keeps only the setup that is
 * its own.
 */
#ifndef JF_TEST_TMPDIR_H
#define JF_TEST_TMPDIR_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "jifen/jifen.h"

/* Makes the directory /tmp/jifen-<prefix>-XXXXXX (its name in dir) and
 * writes "<dir>/<file>" into path; false on failure or when either does
 * not fit. */
static inline bool tmpdir_make(char *dir, size_t dir_len, char *path, size_t path_len,
                               const char *prefix, const char *file)
{
    int n = snprintf(dir, dir_len, "/tmp/jifen-%s-XXXXXX", prefix);
    if (n < 0 || (size_t)n >= dir_len || mkdtemp(dir) == NULL)
        return false;
    n = snprintf(path, path_len, "%s/%s", dir, file);
    return n >= 0 && (size_t)n < path_len;
}

/* Removes dir and everything in it; true when that worked. */
static inline bool tmpdir_remove(const char *dir)
{
    char cmd[128];
    int n = snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return n > 0 && (size_t)n < sizeof(cmd) && system(cmd) == 0;
}

/* Creates tenant `name` on eng and fills its admin auth (and its API key,
 * when key is not NULL); false on any failure. */
static inline bool tmpdir_tenant(jf_engine *eng, const char *name, jf_auth *auth, char *key,
                                 size_t key_len)
{
    char tenant[64], unused[128];
    if (key == NULL) {
        key = unused;
        key_len = sizeof(unused);
    }
    return jf_tenant_create(eng, name, tenant, sizeof(tenant), key, key_len) == JF_OK &&
           jf_tenant_auth(eng, tenant, auth) == JF_OK;
}

/* An engine with the test clock (and no scheduled expiry) on a new database
 * in a new temporary directory, with tenant "t": its admin's auth and API
 * key.  The fixture of the engine tests (test_ledger, test_faults). */
typedef struct tmpdir_engine {
    char dir[64];
    char db[128];
    jf_engine *eng;
    jf_auth auth;
    char api_key[128];
} tmpdir_engine;

/* Opens te in /tmp/jifen-<prefix>-XXXXXX; false on any failure. */
static inline bool tmpdir_engine_open(tmpdir_engine *te, const char *prefix)
{
    jf_engine_options o = {.db_path = te->db, .test_clock = true};
    return tmpdir_make(te->dir, sizeof(te->dir), te->db, sizeof(te->db), prefix, "t.db") &&
           jf_engine_open(&o, &te->eng, NULL, 0) == JF_OK &&
           tmpdir_tenant(te->eng, "t", &te->auth, te->api_key, sizeof(te->api_key));
}

/* Frees te's engine and removes its directory; true when that worked. */
static inline bool tmpdir_engine_close(tmpdir_engine *te)
{
    jf_engine_free(te->eng);
    te->eng = NULL;
    return tmpdir_remove(te->dir);
}

#endif
