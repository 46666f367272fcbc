/*
 * `jifen tiers show|set|member|evaluate`: a tenant's tiers from the console.
 *
 * These run the engine operations of GET and PUT /v1/tiers, GET
 * /v1/members/{id}/tier and POST /v1/tiers/evaluate as the tenant's console
 * admin, so validation, errors and JSON are exactly the API's.
 * docs/TIERS.md describes the configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char tiers_usage[] =
    "usage: jifen tiers show     --db FILE --tenant ID_OR_NAME\n"
    "       jifen tiers set      --db FILE --tenant ID_OR_NAME --file TIERS.json\n"
    "       jifen tiers member   --db FILE --tenant ID_OR_NAME MEMBER_ID\n"
    "       jifen tiers evaluate --db FILE --tenant ID_OR_NAME [--as-of TIME]\n"
    "\n"
    "show prints the tenant's tier configuration; set stores a new version of\n"
    "it from a JSON file (--file - reads standard input; docs/TIERS.md);\n"
    "member prints a member's tier, growth, next evaluation and history;\n"
    "evaluate runs the evaluations (downgrades, retentions, ends of manual\n"
    "overrides) due by --as-of, an RFC 3339 time not in the future (default:\n"
    "now), and prints what they decided.  Each member is evaluated once per\n"
    "due date, so running it again changes nothing.\n";

int cmd_tiers(int argc, char **argv)
{
    const char *db = NULL, *tenant = NULL, *file = NULL, *as_of = NULL, *pos[1];
    const cli_opt opts[] = {{"--db", &db, NULL},
                            {"--tenant", &tenant, NULL},
                            {"--file", &file, NULL},
                            {"--as-of", &as_of, NULL}};
    bool member = argc >= 2 && strcmp(argv[1], "member") == 0;
    cli_tenant_cmd c = {"tiers", tiers_usage, opts, 4, &db, &tenant, pos, member ? 1 : 0, 0};
    int rc;
    if (!cli_tenant_cmd_parse(&c, argc, argv, &rc))
        return rc;
    const char *action = argv[1];
    jf_op op = JF_OP_TIER_CONFIG_GET;
    char *body = NULL;
    if (member && c.pos_n == 0)
        return cli_missing("tiers", "MEMBER_ID");
    if (member) {
        op = JF_OP_MEMBER_TIER_GET;
    } else if (strcmp(action, "set") == 0) {
        if (!file)
            return cli_missing("tiers", "--file TIERS.json");
        if ((body = cli_read_file(file, JF_BODY_BYTES_MAX)) == NULL)
            return cli_fail("tiers: cannot read '%s' (or it is over %d bytes)", file,
                            JF_BODY_BYTES_MAX);
        op = JF_OP_TIER_CONFIG_PUT;
    } else if (strcmp(action, "evaluate") == 0) {
        /* Without its as_of, the evaluation would run as of now. */
        json_t *b = as_of ? json_pack("{ss}", "as_of", as_of) : json_object();
        body = b ? jf_json_dumps_whole(b, JSON_COMPACT) : NULL;
        json_decref(b);
        if (body == NULL)
            return cli_fail("tiers: out of memory");
        op = JF_OP_TIER_EVALUATE;
    } else if (strcmp(action, "show") != 0) {
        return cli_fail("tiers: unknown action '%s' (show, set, member or evaluate)", action);
    }
    jf_result res;
    memset(&res, 0, sizeof res);
    rc = cli_tenant_call("tiers", db, tenant, op, member ? pos[0] : NULL, body, &res);
    if (rc == CLI_EXIT_OK)
        cli_print_json_line(res.body ? res.body : "{}");
    jf_result_deinit(&res);
    free(body);
    return rc;
}
