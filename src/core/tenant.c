/*
 * Tenants: creation (with the default program and the first admin key),
 * lookup for the CLI, and listing.  Tenant creation is rare and happens
 * outside the writer thread on a pooled connection with its own
 * BEGIN IMMEDIATE; SQLite's lock serialises it with the writer.
 */
#include <string.h>

#include "core.h"

static jf_err tenant_insert(jf_db *db, const char *name, int64_t now, char *public_id,
                            int64_t *tenant)
{
    uint8_t genesis[JF_HASH_BYTES] = {0};
    jf_id_new("ten_", public_id);
    jf_err err = jf_db_run(db,
                           "INSERT INTO tenants(public_id, name, created_at, chain_head)"
                           " VALUES(?,?,?,?)",
                           "ssIb", public_id, name, now, genesis, JF_HASH_BYTES);
    if (err == JF_OK)
        *tenant = sqlite3_last_insert_rowid(db->h);
    return err;
}

jf_err jf_tenant_create(jf_engine *eng, const char *name, char *tenant_id, size_t tenant_id_len,
                        char *api_key, size_t api_key_len)
{
    if (name == NULL || *name == '\0' || strlen(name) > JF_NAME_LEN_MAX)
        return JF_ERR_INVALID_FIELD;
    jf_db *db = jf_read_acquire(eng);
    if (db == NULL)
        return JF_ERR_IO;
    int64_t now = jf_now_ms(eng), tenant = 0;
    char public_id[JF_ID_LEN_MAX], key_id[JF_ID_LEN_MAX];
    jf_err err = jf_db_exec(db, "BEGIN IMMEDIATE");
    if (err == JF_OK)
        err = tenant_insert(db, name, now, public_id, &tenant);
    if (err == JF_OK)
        err = jf_program_insert_default(db, tenant, name, now);
    if (err == JF_OK)
        err = jf_key_insert(db, tenant, "initial admin key", JF_ROLE_ADMIN, now, key_id, api_key,
                            api_key_len);
    if (err == JF_OK)
        err = jf_db_exec(db, "COMMIT");
    else
        jf_db_exec(db, "ROLLBACK");
    if (err == JF_OK)
        jf_str_copy(tenant_id, tenant_id_len, public_id);
    jf_read_release(eng, db);
    return err;
}

jf_err jf_tenant_auth(jf_engine *eng, const char *id_or_name, jf_auth *out)
{
    memset(out, 0, sizeof(*out));
    jf_db *db = jf_read_acquire(eng);
    if (db == NULL)
        return JF_ERR_IO;
    int64_t tenant = 0;
    jf_err err = jf_db_int(db, &tenant, 0,
                           "SELECT id FROM tenants WHERE public_id=? OR name=? ORDER BY id LIMIT 1",
                           "ss", id_or_name, id_or_name);
    jf_read_release(eng, db);
    if (err == JF_OK && tenant == 0)
        err = JF_ERR_NOT_FOUND;
    if (err == JF_OK) {
        out->tenant = tenant;
        out->role = JF_ROLE_ADMIN;
        snprintf(out->actor, sizeof(out->actor), "cli");
    }
    return err;
}

jf_err jf_tenant_list(jf_engine *eng, char **json)
{
    jf_db *db = jf_read_acquire(eng);
    if (db == NULL)
        return JF_ERR_IO;
    sqlite3_stmt *st =
        jf_db_query(db, "SELECT public_id, name, created_at, tx_seq FROM tenants ORDER BY id", "");
    json_t *arr = json_array();
    while (st && jf_db_step(st) == SQLITE_ROW) {
        json_t *o = json_object();
        jf_json_set(o, "id", json_string(jf_db_text(st, 0)));
        jf_json_set(o, "name", json_string(jf_db_text(st, 1)));
        jf_json_set(o, "created_at", jf_json_time_value(sqlite3_column_int64(st, 2)));
        jf_json_set(o, "transactions", json_integer(sqlite3_column_int64(st, 3)));
        json_array_append_new(arr, o);
    }
    jf_err err = st ? JF_OK : JF_ERR_IO;
    if (st)
        sqlite3_reset(st);
    jf_read_release(eng, db);
    *json = err == JF_OK ? jf_json_dump(arr, NULL) : NULL;
    json_decref(arr);
    return err;
}
