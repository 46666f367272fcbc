/*
 * `jifen rules list|show|create`: a tenant's earning rules from the console.
 *
 * These run the same engine operations as GET /v1/rules, GET /v1/rules/{id}
 * and POST /v1/rules (jf_call_sync with the tenant's console admin), so the
 * validation, its error details and the JSON are exactly those of the API.
 * docs/RULES.md describes the rule JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char rules_usage[] =
    "usage: jifen rules list   --db FILE --tenant ID_OR_NAME [--json]\n"
    "       jifen rules show   --db FILE --tenant ID_OR_NAME RULE_ID [--json]\n"
    "       jifen rules create --db FILE --tenant ID_OR_NAME --file RULE.json [--json]\n"
    "\n"
    "Lists, shows (current version and its version history) or creates the\n"
    "earning rules of a tenant.  --file - reads the rule from standard input.\n"
    "A rule is JSON as described in docs/RULES.md, e.g.\n"
    "  {\"name\": \"1 point per yuan\", \"trigger\": \"purchase\",\n"
    "   \"effect\": {\"type\": \"rate\", \"points\": 1, \"per_amount\": 100}}\n";

typedef struct rules_args {
    const char *db, *tenant, *file, *rule_id;
    bool json;
} rules_args;

static const char *str_field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "-";
}

static void print_rule_line(json_t *r)
{
    const char *trigger = str_field(r, "trigger");
    printf("%-26s v%-3lld %-8s %-8s %6lld  %s%s%s\n", str_field(r, "id"),
           (long long)json_integer_value(json_object_get(r, "version")), str_field(r, "status"),
           trigger, (long long)json_integer_value(json_object_get(r, "priority")),
           str_field(r, "name"), strcmp(trigger, "event") == 0 ? "  event=" : "",
           strcmp(trigger, "event") == 0 ? str_field(r, "event") : "");
}

static int rules_print(const rules_args *a, jf_op op, const char *id, const char *body)
{
    jf_result res;
    memset(&res, 0, sizeof res);
    int rc = cli_tenant_call("rules", a->db, a->tenant, op, id, body, &res);
    json_t *j = (rc == CLI_EXIT_OK && res.body) ? jf_json_loads_whole(res.body, 0) : NULL;
    if (rc == CLI_EXIT_OK && (a->json || op != JF_OP_RULE_LIST || !json_is_object(j))) {
        cli_print_json_line(res.body ? res.body : "{}");
    } else if (rc == CLI_EXIT_OK) {
        size_t i;
        json_t *r;
        printf("%-26s %-4s %-8s %-8s %6s  %s\n", "ID", "VER", "STATUS", "TRIGGER", "PRIO", "NAME");
        json_array_foreach(json_object_get(j, "data"), i, r) print_rule_line(r);
    }
    json_decref(j);
    jf_result_deinit(&res);
    return rc;
}

int cmd_rules(int argc, char **argv)
{
    const char *pos[1];
    rules_args a;
    memset(&a, 0, sizeof a);
    const cli_opt opts[] = {{"--db", &a.db, NULL},
                            {"--tenant", &a.tenant, NULL},
                            {"--file", &a.file, NULL},
                            {"--json", NULL, &a.json}};
    bool show = argc >= 2 && strcmp(argv[1], "show") == 0;
    cli_tenant_cmd c = {"rules", rules_usage, opts, 4, &a.db, &a.tenant, pos, show ? 1 : 0, 0};
    int rc;
    if (!cli_tenant_cmd_parse(&c, argc, argv, &rc))
        return rc;
    const char *action = argv[1];
    if (strcmp(action, "list") == 0)
        return rules_print(&a, JF_OP_RULE_LIST, NULL, NULL);
    if (show)
        return c.pos_n ? rules_print(&a, JF_OP_RULE_GET, pos[0], NULL)
                       : cli_missing("rules", "RULE_ID");
    if (strcmp(action, "create") != 0)
        return cli_fail("rules: unknown action '%s' (list, show or create)", action);
    if (!a.file)
        return cli_missing("rules", "--file RULE.json");
    char *body = cli_read_file(a.file, JF_RULE_BYTES_MAX);
    if (body == NULL)
        return cli_fail("rules: cannot read '%s' (or it is over %d bytes)", a.file,
                        JF_RULE_BYTES_MAX);
    rc = rules_print(&a, JF_OP_RULE_CREATE, NULL, body);
    free(body);
    return rc;
}
