/*
 * Fuzzes API-key authentication (jf_auth_bearer, src/core/auth.c) with
 * Authorization header values.  The engine holds two tenants: A with a live
 * admin key and a key revoked at start, B with its admin key.  In an input,
 * "$A", "$R" and "$B" stand for those three keys.  Besides the sanitizers:
 * a value is accepted only when it is exactly one live key, after an
 * optional case-insensitive "Bearer " and spaces, and then for that key's
 * tenant and role; the revoked key never is (I9 and the roles rest on this).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "jifen/jifen.h"

#define TEXT_MAX 512

static struct {
    char dir[256], db[300];
    jf_engine *eng;
    char key_a[256], key_r[256], key_b[256];
    jf_auth auth_a, auth_b;
} fz;

static void die(const char *what, jf_err err)
{
    fprintf(stderr, "fuzz_auth: %s: %s\n", what, jf_err_code(err));
    abort();
}

static void tenant(const char *name, char *key, size_t key_len, jf_auth *auth)
{
    char id[64];
    jf_err err = jf_tenant_create(fz.eng, name, id, sizeof id, key, key_len);
    if (err == JF_OK)
        err = jf_auth_bearer(fz.eng, key, auth);
    if (err != JF_OK)
        die("a tenant", err);
}

/* A second admin key of tenant A, revoked at once. */
static void revoked_key(void)
{
    static const char body[] = "{\"role\": \"admin\", \"name\": \"revoked\"}";
    jf_request req = {
        .op = JF_OP_KEY_CREATE, .auth = &fz.auth_a, .body = body, .body_len = sizeof body - 1};
    jf_result res;
    jf_err err = jf_call_sync(fz.eng, &req, &res);
    json_t *root = err == JF_OK ? json_loadb(res.body, res.body_len, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(root, "id"));
    const char *key = json_string_value(json_object_get(root, "api_key"));
    if (id == NULL || key == NULL)
        die("a key to revoke", err);
    snprintf(fz.key_r, sizeof fz.key_r, "%s", key);
    jf_request rev = {.op = JF_OP_KEY_REVOKE, .auth = &fz.auth_a, .path_id = id};
    jf_result rres;
    if ((err = jf_call_sync(fz.eng, &rev, &rres)) != JF_OK)
        die("revoking it", err);
    jf_result_deinit(&rres);
    json_decref(root);
    jf_result_deinit(&res);
}

static void at_exit(void)
{
    static const char *suffixes[] = {"", "-wal", "-shm", "-keys"};
    char path[320];
    jf_engine_free(fz.eng);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s%s", fz.db, suffixes[i]);
        unlink(path);
    }
    rmdir(fz.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char errbuf[256] = "";
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz.dir, sizeof fz.dir, "%s/jifen-fuzz-auth-XXXXXX", base);
    if (mkdtemp(fz.dir) == NULL) {
        perror("fuzz_auth: mkdtemp");
        abort();
    }
    snprintf(fz.db, sizeof fz.db, "%s/auth.db", fz.dir);
    jf_engine_options opts = {.db_path = fz.db};
    jf_err err = jf_engine_open(&opts, &fz.eng, errbuf, sizeof errbuf);
    if (err != JF_OK)
        die(errbuf, err);
    tenant("a", fz.key_a, sizeof fz.key_a, &fz.auth_a);
    tenant("b", fz.key_b, sizeof fz.key_b, &fz.auth_b);
    revoked_key();
    atexit(at_exit);
    return 0;
}

/* The input with "$A", "$R" and "$B" replaced by the keys. */
static void expand(const uint8_t *data, size_t size, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < size && o < TEXT_MAX; i++) {
        const char *key = NULL;
        if (data[i] == '$' && i + 1 < size)
            key = data[i + 1] == 'A'   ? fz.key_a
                  : data[i + 1] == 'R' ? fz.key_r
                  : data[i + 1] == 'B' ? fz.key_b
                                       : NULL;
        size_t n = key ? strlen(key) : 0;
        if (key != NULL && o + n <= TEXT_MAX) {
            memcpy(out + o, key, n);
            o += n;
            i++;
        } else {
            out[o++] = (char)data[i];
        }
    }
    out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[TEXT_MAX + 1];
    if (fz.eng == NULL)
        LLVMFuzzerInitialize(NULL, NULL);
    expand(data, size, text);
    jf_auth got;
    if (jf_auth_bearer(fz.eng, text, &got) != JF_OK) {
        if (got.tenant != 0)
            die("a refusal left a tenant", JF_ERR_UNAUTHORIZED);
        return 0;
    }
    const char *key = text;
    if (strncasecmp(key, "Bearer ", 7) == 0)
        key += 7;
    key += strspn(key, " ");
    const jf_auth *want = strcmp(key, fz.key_a) == 0   ? &fz.auth_a
                          : strcmp(key, fz.key_b) == 0 ? &fz.auth_b
                                                       : NULL;
    if (want == NULL || got.tenant != want->tenant || got.role != want->role ||
        strcmp(got.actor, want->actor) != 0) {
        fprintf(stderr, "fuzz_auth: accepted \"%s\" as tenant %lld (%s)\n", text,
                (long long)got.tenant, got.actor);
        abort();
    }
    return 0;
}
