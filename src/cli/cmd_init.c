/*
 * `jifen init` (a new tenant with its admin key) and `jifen tenants` (list
 * them).  init creates the database on first use; every later run adds
 * another tenant, so one file can hold several merchants.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

/* Buffers for what jf_tenant_create writes back. */
#define TENANT_ID_BUF 64
#define API_KEY_BUF 256

static const char init_usage[] =
    "usage: jifen init --db FILE [--tenant NAME] [--rules draft|active|none] [--json]\n"
    "\n"
    "Creates the database FILE if needed, then a tenant with a default program,\n"
    "the sample earning rules and an admin API key.  Running it again adds\n"
    "another tenant.\n"
    "\n"
    "  --db FILE      the SQLite database (created when missing)\n"
    "  --tenant NAME  the tenant's name (default \"default\")\n"
    "  --rules S      status of the sample rules (docs/RULES.md): draft (default;\n"
    "                 preview them with a dry run, activate with PUT /v1/rules/{id}),\n"
    "                 active, or none to create no rules\n"
    "  --json         print {\"tenant_id\": \"...\", \"api_key\": \"...\"} and nothing else\n"
    "\n"
    "The API key is shown once: only its hash is stored.\n";

/* The sample rules every new tenant gets (docs/RULES.md explains each).
 * Until a purchase rule is active, orders earn at the program's base rate,
 * which is the same 1 point per yuan. */
static const char *const sample_rules[] = {
    "{\"name\": \"消费1元积1分 (1 point per yuan)\", \"trigger\": \"purchase\", \"priority\": 100,"
    " \"effect\": {\"type\": \"rate\", \"points\": 1, \"per_amount\": 100, \"rounding\": \"floor\","
    " \"exclude_points_paid\": true}}",
    "{\"name\": \"会员日双倍积分 (member day: double points on Wednesday)\", \"trigger\": "
    "\"purchase\","
    " \"priority\": 50, \"group\": \"double points\", \"conditions\": {\"days_of_week\": [3]},"
    " \"effect\": {\"type\": \"multiplier\", \"factor_num\": 2, \"factor_den\": 1}}",
    "{\"name\": \"生日月双倍积分 (birthday month: double points)\", \"trigger\": \"purchase\","
    " \"priority\": 50, \"group\": \"double points\", \"conditions\": {\"birthday\": \"month\"},"
    " \"effect\": {\"type\": \"multiplier\", \"factor_num\": 2, \"factor_den\": 1}}",
    "{\"name\": \"评价奖励 (review posted: 20 points, once a day)\", \"trigger\": \"event\","
    " \"event\": \"review_posted\", \"effect\": {\"type\": \"fixed\", \"points\": 20},"
    " \"limits\": {\"per_member\": {\"period\": \"day\", \"max_awards\": 1}}}",
    "{\"name\": \"连续签到 (daily check-in: 5 points, 50 more on the 7th day in a row)\","
    " \"trigger\": \"check_in\", \"effect\": {\"type\": \"check_in\", \"points\": 5,"
    " \"cycle_days\": 7, \"streak_bonus\": [{\"day\": 7, \"points\": 50}]}}",
    "{\"name\": \"邀请有礼 (referral: 100 to the referrer, 50 to the new member)\","
    " \"trigger\": \"referral\", \"effect\": {\"type\": \"referral\", \"on\": \"signup\","
    " \"referrer_points\": 100, \"referee_points\": 50},"
    " \"limits\": {\"per_member\": {\"period\": \"month\", \"max_awards\": 10}}}",
};

/* Writes rule (an object literal of n bytes ending in '}') into out with
 * "status": status added as its last member. */
static void rule_with_status(char *out, size_t cap, const char *rule, size_t n, const char *status)
{
    snprintf(out, cap, "%.*s, \"status\": \"%s\"}", (int)(n - 1), rule, status);
}

/* Creates the sample rules in the new tenant with the given status. */
static int create_sample_rules(jf_engine *eng, const char *tenant_id, const char *status)
{
    jf_auth auth;
    if (jf_tenant_auth(eng, tenant_id, &auth) != JF_OK)
        return cli_fail("init: the new tenant %s is missing", tenant_id);
    for (size_t i = 0; i < sizeof sample_rules / sizeof sample_rules[0]; i++) {
        /* The status goes in as text: each sample is an object literal
         * without one, and a status is a plain word.  (Through jansson, a
         * failed allocation could drop the key and create the rule active.) */
        const char *rule = sample_rules[i];
        size_t n = strlen(rule);
        size_t cap = n + strlen(status) + 16;
        char *body = malloc(cap);
        if (body == NULL)
            return cli_fail("init: out of memory");
        rule_with_status(body, cap, rule, n, status);
        jf_request req = {
            .op = JF_OP_RULE_CREATE, .auth = &auth, .body = body, .body_len = strlen(body)};
        jf_result res;
        jf_err err = jf_call_sync(eng, &req, &res);
        free(body);
        int rc = err == JF_OK ? CLI_EXIT_OK : cli_fail_result(&res);
        jf_result_deinit(&res);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    return CLI_EXIT_OK;
}

/* Both values are ids and base64url text (no character JSON escapes), so
 * the line is written directly: nothing to allocate, nothing to lose. */
static void print_init_json(const char *tenant_id, const char *api_key)
{
    printf("{\"tenant_id\":\"%s\",\"api_key\":\"%s\"}\n", tenant_id, api_key);
}

int cmd_init(int argc, char **argv)
{
    const char *db = NULL, *tenant = NULL, *rules = "draft", *pos[1];
    bool json = false;
    int pos_n = 0;
    const cli_opt opts[] = {{"--db", &db, NULL},
                            {"--tenant", &tenant, NULL},
                            {"--rules", &rules, NULL},
                            {"--json", NULL, &json}};
    cli_parse_result pr = cli_parse("init", argc, argv, opts, 4, pos, 0, &pos_n);
    if (pr == CLI_PARSE_HELP)
        return fputs(init_usage, stdout), CLI_EXIT_OK;
    if (pr == CLI_PARSE_ERROR)
        return CLI_EXIT_ERROR;
    if (!db)
        return cli_missing("init", "--db FILE");
    if (!tenant)
        tenant = "default";
    if (strcmp(rules, "draft") != 0 && strcmp(rules, "active") != 0 && strcmp(rules, "none") != 0)
        return cli_fail("init: --rules must be draft, active or none");
    jf_engine *eng = NULL;
    if (cli_open(db, false, false, 0, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    char tenant_id[TENANT_ID_BUF] = "", api_key[API_KEY_BUF] = "";
    jf_err err =
        jf_tenant_create(eng, tenant, tenant_id, sizeof tenant_id, api_key, sizeof api_key);
    int rc = CLI_EXIT_OK, rules_rc = CLI_EXIT_OK;
    if (err == JF_OK && strcmp(rules, "none") != 0)
        rules_rc = create_sample_rules(eng, tenant_id, rules);
    /* The key is printed even if a sample rule failed: it is shown only once. */
    if (err == JF_ERR_INVALID_FIELD) {
        rc = cli_fail("cannot create tenant '%s': a tenant's name is 1 to %d bytes", tenant,
                      JF_NAME_LEN_MAX);
    } else if (err != JF_OK) {
        rc = cli_fail("cannot create tenant '%s': %s", tenant, jf_err_message(err));
    } else if (json) {
        print_init_json(tenant_id, api_key);
    } else {
        printf("Created tenant %s (%s) in %s.\n"
               "Admin API key (shown once; store it now, only its hash is kept):\n"
               "  %s\n",
               tenant_id, tenant, db, api_key);
    }
    fflush(stdout);
    jf_engine_free(eng);
    return rc != CLI_EXIT_OK ? rc : rules_rc;
}

static const char tenants_usage[] = "usage: jifen tenants --db FILE [--json]\n"
                                    "\n"
                                    "Lists the tenants in the database.\n"
                                    "\n"
                                    "  --db FILE  the SQLite database\n"
                                    "  --json     print the list as one JSON array\n";

/* One tenant per line: id, name and then any other scalar fields. */
static void print_tenants_table(json_t *list)
{
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        json_t *id = json_object_get(t, "id");
        json_t *name = json_object_get(t, "name");
        printf("%s\t%s", json_is_string(id) ? json_string_value(id) : "?",
               json_is_string(name) ? json_string_value(name) : "");
        const char *k;
        json_t *v;
        json_object_foreach(t, k, v)
        {
            if (strcmp(k, "id") == 0 || strcmp(k, "name") == 0)
                continue;
            if (json_is_string(v))
                printf("\t%s=%s", k, json_string_value(v));
            else if (json_is_integer(v))
                printf("\t%s=%lld", k, (long long)json_integer_value(v));
        }
        putchar('\n');
    }
    if (json_array_size(list) == 0)
        puts("no tenants (create one with 'jifen init')");
}

int cmd_tenants(int argc, char **argv)
{
    const char *db = NULL, *pos[1];
    bool json = false;
    int pos_n = 0;
    const cli_opt opts[] = {{"--db", &db, NULL}, {"--json", NULL, &json}};
    cli_parse_result pr = cli_parse("tenants", argc, argv, opts, 2, pos, 0, &pos_n);
    if (pr == CLI_PARSE_HELP)
        return fputs(tenants_usage, stdout), CLI_EXIT_OK;
    if (pr == CLI_PARSE_ERROR)
        return CLI_EXIT_ERROR;
    if (!db)
        return cli_missing("tenants", "--db FILE");
    jf_engine *eng = NULL;
    if (cli_open(db, true, false, 0, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    char *text = NULL;
    jf_err err = jf_tenant_list(eng, &text);
    int rc = CLI_EXIT_OK;
    json_t *list = text ? jf_json_loads_whole(text, 0) : NULL;
    if (err != JF_OK)
        rc = cli_fail("cannot list tenants: %s", jf_err_message(err));
    else if (json || !json_is_array(list))
        cli_print_json_line(text ? text : "[]");
    else
        print_tenants_table(list);
    json_decref(list);
    free(text);
    jf_engine_free(eng);
    return rc;
}
