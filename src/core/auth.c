/*
 * Tenants and API keys.
 *
 * A key reads "jf_<20 hex digits of the key id>_<43 characters of secret>".
 * The secret is 32 random bytes from libsodium; only its BLAKE2b-256 hash is
 * stored, and the hash is compared in constant time.  The key id in the
 * clear lets us find the row without scanning, and appears in logs as the
 * actor.  Keys are looked up on every request, so a revocation takes effect
 * on the next one.
 */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "core.h"

#define KEY_SECRET_BYTES 32
#define KEY_ID_HEX 20

static void key_hash(const char *secret, uint8_t out[JF_HASH_BYTES])
{
    crypto_generichash(out, JF_HASH_BYTES, (const uint8_t *)secret, strlen(secret), NULL, 0);
}

jf_err jf_key_insert(jf_db *db, int64_t tenant, const char *name, jf_role role, int64_t now,
                     char *key_id, char *secret_out, size_t secret_len)
{
    uint8_t raw[KEY_SECRET_BYTES], hash[JF_HASH_BYTES];
    char secret[sodium_base64_ENCODED_LEN(KEY_SECRET_BYTES,
                                          sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(secret, sizeof(secret), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    key_hash(secret, hash);
    jf_id_new("key_", key_id);
    if (snprintf(secret_out, secret_len, "jf_%s_%s", key_id + 4, secret) >= (int)secret_len)
        return JF_ERR_INTERNAL;
    sodium_memzero(secret, sizeof(secret));
    return jf_db_run(db,
                     "INSERT INTO api_keys(id, tenant_id, name, role, hash, created_at)"
                     " VALUES(?,?,?,?,?,?)",
                     "sIssbI", key_id, tenant, name, jf_role_name(role), hash, JF_HASH_BYTES, now);
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

_Static_assert(JF_ID_LEN_MAX > 4 + KEY_ID_HEX, "a key id fits in an id");

/* Splits "jf_<hex>_<secret>" into the key id and the secret.  It runs on
 * every request, so the id is copied by hand: snprintf and a strchr per
 * digit were a quarter of the key check's instructions. */
static bool key_parse(const char *key, char id[JF_ID_LEN_MAX], const char **secret)
{
    size_t len = strlen(key);
    if (strncmp(key, "jf_", 3) != 0 || len < 3 + KEY_ID_HEX + 2 || len > 200)
        return false;
    for (int i = 0; i < KEY_ID_HEX; i++)
        if (!is_lower_hex(key[3 + i]))
            return false;
    if (key[3 + KEY_ID_HEX] != '_')
        return false;
    memcpy(id, "key_", 4);
    memcpy(id + 4, key + 3, KEY_ID_HEX);
    id[4 + KEY_ID_HEX] = '\0';
    *secret = key + 4 + KEY_ID_HEX;
    return true;
}

static void auth_fill(jf_auth *out, const char *id, int64_t tenant, jf_role role)
{
    out->tenant = tenant;
    out->role = role;
    jf_str_copy(out->actor, sizeof(out->actor), id);
}

/* The key's row from the database, cached when valid. */
static jf_err key_read(jf_engine *eng, const char *id, uint8_t stored[JF_HASH_BYTES],
                       int64_t *tenant, jf_role *role)
{
    uint64_t epoch = jf_key_cache_epoch(eng->keys);
    jf_db *db = jf_read_acquire(eng);
    if (db == NULL)
        return JF_ERR_IO;
    jf_err err = JF_ERR_IO;
    sqlite3_stmt *st = jf_db_query(
        db, "SELECT tenant_id, role, hash FROM api_keys WHERE id=? AND revoked_at IS NULL", "s",
        id);
    if (st != NULL) {
        err = JF_ERR_UNAUTHORIZED;
        if (jf_db_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 2) == JF_HASH_BYTES) {
            *tenant = sqlite3_column_int64(st, 0);
            *role = jf_role_parse(jf_db_text(st, 1));
            memcpy(stored, sqlite3_column_blob(st, 2), JF_HASH_BYTES);
            err = *role == JF_ROLE_NONE ? JF_ERR_UNAUTHORIZED : JF_OK;
        }
        sqlite3_reset(st);
    }
    jf_read_release(eng, db);
    if (err == JF_OK)
        jf_key_cache_put(eng->keys, epoch, id, stored, *tenant, *role);
    return err;
}

static jf_err key_lookup(jf_engine *eng, const char *id, const char *secret, jf_auth *out)
{
    uint8_t hash[JF_HASH_BYTES], stored[JF_HASH_BYTES];
    int64_t tenant = 0;
    jf_role role = JF_ROLE_NONE;
    key_hash(secret, hash);
    jf_err err = JF_OK;
    if (!jf_key_cache_get(eng->keys, id, stored, &tenant, &role))
        err = key_read(eng, id, stored, &tenant, &role);
    if (err != JF_OK)
        return err;
    if (sodium_memcmp(stored, hash, JF_HASH_BYTES) != 0)
        return JF_ERR_UNAUTHORIZED;
    auth_fill(out, id, tenant, role);
    return JF_OK;
}

jf_err jf_auth_bearer(jf_engine *eng, const char *authorization, jf_auth *out)
{
    memset(out, 0, sizeof(*out));
    if (authorization == NULL)
        return JF_ERR_UNAUTHORIZED;
    const char *key = authorization;
    if (strncasecmp(key, "Bearer ", 7) == 0)
        key += 7;
    while (*key == ' ')
        key++;
    char id[JF_ID_LEN_MAX];
    const char *secret = NULL;
    if (!key_parse(key, id, &secret))
        return JF_ERR_UNAUTHORIZED;
    jf_err err = key_lookup(eng, id, secret, out);
    if (err != JF_OK)
        memset(out, 0, sizeof(*out));
    return err;
}

static json_t *key_json(sqlite3_stmt *st);

static jf_err key_row(jf_ctx *ctx, sqlite3_stmt *st, json_t **out)
{
    (void)ctx;
    *out = key_json(st);
    return JF_OK;
}

static json_t *key_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    jf_json_set(o, "id", json_string(jf_db_text(st, 0)));
    jf_json_set(o, "name", jf_json_text(jf_db_text(st, 1)));
    jf_json_set(o, "role", json_string(jf_db_text(st, 2)));
    jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 3)));
    int64_t revoked = jf_db_int_or(st, 4, -1);
    jf_json_set(o, "revoked_at", jf_json_time_value(revoked));
    return o;
}

#define KEY_COLUMNS "SELECT id, name, role, created_at, revoked_at FROM api_keys"

static jf_err key_get_json(jf_ctx *ctx, const char *id, json_t **out)
{
    sqlite3_stmt *st = jf_db_query(ctx->db, KEY_COLUMNS " WHERE id=? AND tenant_id=?", "sI", id,
                                   ctx->auth->tenant);
    if (st == NULL)
        return JF_ERR_IO;
    jf_err err = JF_ERR_NOT_FOUND;
    if (jf_db_step(st) == SQLITE_ROW) {
        *out = key_json(st);
        err = JF_OK;
    }
    sqlite3_reset(st);
    return err;
}

static jf_err key_create_validate(jf_ctx *ctx)
{
    static const char *const fields[] = {"name", "role", NULL};
    const char *s = NULL;
    jf_err err = jf_json_allow(ctx, ctx->body, fields);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "name", false, JF_KEY_NAME_LEN_MAX, &s);
    if (err == JF_OK)
        err = jf_json_str(ctx, ctx->body, "role", true, 16, &s);
    if (err == JF_OK && jf_role_parse(s) == JF_ROLE_NONE)
        err =
            jf_fail(ctx, JF_ERR_INVALID_FIELD, "'role' must be admin, operator, pos or readonly.");
    return err;
}

static jf_err key_create(jf_ctx *ctx)
{
    const char *name = json_string_value(json_object_get(ctx->body, "name"));
    jf_role role = jf_role_parse(json_string_value(json_object_get(ctx->body, "role")));
    char id[JF_ID_LEN_MAX], secret[128];
    json_t *key = NULL;
    jf_err err = jf_key_insert(ctx->db, ctx->auth->tenant, name, role, ctx->now_ms, id, secret,
                               sizeof(secret));
    if (err == JF_OK)
        err = key_get_json(ctx, id, &key);
    if (err != JF_OK)
        return err;
    json_object_set_new(key, "api_key", json_string(secret));
    sodium_memzero(secret, sizeof(secret));
    json_decref(ctx->out);
    ctx->out = key;
    ctx->created = true;
    return JF_OK;
}

static jf_err key_list(jf_ctx *ctx)
{
    int64_t limit, cursor;
    jf_err err = jf_list_params(ctx, &limit, &cursor);
    if (err != JF_OK)
        return err;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT id, name, role, created_at, revoked_at, rowid"
                                   " FROM api_keys WHERE tenant_id=? AND rowid>? ORDER BY rowid"
                                   " LIMIT ?",
                                   "III", ctx->auth->tenant, cursor, limit + 1);
    return jf_list_rows(ctx, st, limit, 5, key_row);
}

static jf_err key_revoke(jf_ctx *ctx)
{
    jf_err err = jf_db_run(ctx->db,
                           "UPDATE api_keys SET revoked_at=? WHERE id=? AND tenant_id=?"
                           " AND revoked_at IS NULL",
                           "IsI", ctx->now_ms, ctx->path_id, ctx->auth->tenant);
    json_t *key = NULL;
    if (err == JF_OK)
        err = key_get_json(ctx, ctx->path_id ? ctx->path_id : "", &key);
    if (err != JF_OK)
        return err;
    json_decref(ctx->out);
    ctx->out = key;
    return JF_OK;
}

const jf_op_impl jf_op_key_create = {key_create_validate, key_create};
const jf_op_impl jf_op_key_list = {NULL, key_list};
const jf_op_impl jf_op_key_revoke = {NULL, key_revoke};
