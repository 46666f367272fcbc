/*
 * `jifen keys create|list|revoke`: API keys of a tenant from the console.
 *
 * These run the same engine operations as POST/GET/DELETE /v1/api-keys
 * (jf_call_sync with an admin "cli" identity from jf_tenant_auth), so the
 * validation, the audit trail and the JSON are exactly those of the API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char keys_usage[] =
    "usage: jifen keys create --db FILE --tenant ID_OR_NAME --role ROLE [--name NAME] [--json]\n"
    "       jifen keys list   --db FILE --tenant ID_OR_NAME [--json]\n"
    "       jifen keys revoke --db FILE --tenant ID_OR_NAME KEY_ID [--json]\n"
    "\n"
    "Manages the API keys of a tenant.  ROLE is admin, operator, pos or readonly.\n"
    "A new key's secret is printed once: only its hash is stored.\n";

typedef struct keys_args {
    const char *db, *tenant, *role, *name;
    bool json;
    const char *key_id;
} keys_args;

/* Runs one key operation as the tenant's console admin. */
static int run_op(const keys_args *a, jf_op op, const char *path_id, const char *body,
                  jf_result *res)
{
    jf_engine *eng = NULL;
    if (cli_open(a->db, false, false, 0, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    jf_auth auth;
    memset(&auth, 0, sizeof auth);
    int rc = CLI_EXIT_OK;
    jf_err err = jf_tenant_auth(eng, a->tenant, &auth);
    if (err != JF_OK) {
        rc = cli_fail("keys: no tenant '%s' (see 'jifen tenants')", a->tenant);
    } else {
        jf_request req = {
            .op = op,
            .auth = &auth,
            .path_id = path_id,
            .body = body,
            .body_len = body ? strlen(body) : 0,
        };
        if (jf_call_sync(eng, &req, res) != JF_OK)
            rc = cli_fail_result(res);
    }
    jf_engine_drain(eng);
    jf_engine_free(eng);
    return rc;
}

static const char *str_field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "-";
}

static int keys_create(const keys_args *a)
{
    if (!a->role)
        return cli_missing("keys", "--role ROLE");
    if (jf_role_parse(a->role) == JF_ROLE_NONE)
        return cli_fail("keys: unknown role '%s' (admin, operator, pos or readonly)", a->role);
    /* Packed whole or not at all, and dumped whole or not at all: a key
     * must not be made without the name asked for. */
    json_t *b = a->name ? json_pack("{s:s, s:s}", "role", a->role, "name", a->name)
                        : json_pack("{s:s}", "role", a->role);
    char *body = b ? jf_json_dumps_whole(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body)
        return cli_fail("keys: out of memory");
    jf_result res;
    memset(&res, 0, sizeof res);
    int rc = run_op(a, JF_OP_KEY_CREATE, NULL, body, &res);
    free(body);
    if (rc == CLI_EXIT_OK && a->json) {
        cli_print_json_line(res.body ? res.body : "{}");
    } else if (rc == CLI_EXIT_OK) {
        json_t *k = jf_json_loads_whole(res.body ? res.body : "{}", 0);
        printf("Created key %s (role %s) for tenant %s.\n"
               "API key (shown once; store it now, only its hash is kept):\n  %s\n",
               str_field(k, "id"), str_field(k, "role"), a->tenant, str_field(k, "api_key"));
        json_decref(k);
    }
    jf_result_deinit(&res);
    return rc;
}

static void print_keys_table(json_t *list)
{
    size_t i;
    json_t *k;
    printf("%-28s %-9s %-26s %-26s %s\n", "ID", "ROLE", "CREATED", "REVOKED", "NAME");
    json_array_foreach(json_object_get(list, "data"), i, k)
    {
        printf("%-28s %-9s %-26s %-26s %s\n", str_field(k, "id"), str_field(k, "role"),
               str_field(k, "created_at"), str_field(k, "revoked_at"), str_field(k, "name"));
    }
}

static int keys_list_or_revoke(const keys_args *a, bool revoke)
{
    if (revoke && !a->key_id)
        return cli_missing("keys", "KEY_ID");
    jf_result res;
    memset(&res, 0, sizeof res);
    int rc = run_op(a, revoke ? JF_OP_KEY_REVOKE : JF_OP_KEY_LIST, revoke ? a->key_id : NULL, NULL,
                    &res);
    json_t *j = (rc == CLI_EXIT_OK && res.body) ? jf_json_loads_whole(res.body, 0) : NULL;
    if (rc == CLI_EXIT_OK && (a->json || !json_is_object(j)))
        cli_print_json_line(res.body ? res.body : "{}");
    else if (rc == CLI_EXIT_OK && revoke)
        printf("Revoked key %s at %s.\n", str_field(j, "id"), str_field(j, "revoked_at"));
    else if (rc == CLI_EXIT_OK)
        print_keys_table(j);
    json_decref(j);
    jf_result_deinit(&res);
    return rc;
}

int cmd_keys(int argc, char **argv)
{
    keys_args a;
    memset(&a, 0, sizeof a);
    const char *pos[1];
    const cli_opt opts[] = {{"--db", &a.db, NULL},
                            {"--tenant", &a.tenant, NULL},
                            {"--role", &a.role, NULL},
                            {"--name", &a.name, NULL},
                            {"--json", NULL, &a.json}};
    bool revoke = argc >= 2 && strcmp(argv[1], "revoke") == 0;
    cli_tenant_cmd c = {"keys", keys_usage, opts, 5, &a.db, &a.tenant, pos, revoke ? 1 : 0, 0};
    int rc;
    if (!cli_tenant_cmd_parse(&c, argc, argv, &rc))
        return rc;
    const char *action = argv[1];
    a.key_id = c.pos_n ? pos[0] : NULL;
    if (strcmp(action, "create") == 0)
        return keys_create(&a);
    if (strcmp(action, "list") == 0 || revoke)
        return keys_list_or_revoke(&a, revoke);
    return cli_fail("keys: unknown action '%s' (create, list or revoke)", action);
}
