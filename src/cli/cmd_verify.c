/*
 * `jifen verify` (check the ledger invariants) and `jifen expire` (run
 * expiry and the hold sweep now).
 *
 * verify opens the database without a writer, so it is safe next to a
 * running server (SQLite WAL gives it a consistent snapshot).  It prints
 * each violation, the hash-chain head of every tenant and a verdict, and
 * its exit code is the verdict: 0 all hold, 1 violations, 2 could not check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char verify_usage[] =
    "usage: jifen verify --db FILE [--json]\n"
    "\n"
    "Checks every invariant of the ledger (I1..I7, I10: conservation, balances,\n"
    "lots, idempotency, reversals, the hash chain, expiry; A1..A3, R1..R3, G1, S1,\n"
    "S2, T1, T2; docs/LEDGER.md) on the database.  First it checks the file\n"
    "itself (F1, SQLite's quick_check); a file that fails it is reported alone,\n"
    "since nothing read from it can be trusted.  Safe to run while the server runs.\n"
    "\n"
    "  --db FILE  the SQLite database\n"
    "  --json     print the report as one JSON object\n"
    "\n"
    "Exit status: 0 all invariants hold, 1 violations found, 2 error.\n";

/* The per-tenant summary (transactions, chain head); the engine calls the
 * array "tenants" (older drafts of jifen.h said "chain_heads"). */
static json_t *tenant_heads(json_t *rep)
{
    json_t *t = json_object_get(rep, "tenants");
    return json_is_array(t) ? t : json_object_get(rep, "chain_heads");
}

static void print_report(const char *db, json_t *rep, int64_t violations)
{
    printf("jifen verify %s\n", db);
    json_t *checked = json_object_get(rep, "checked");
    if (json_is_object(checked)) {
        fputs("checked:", stdout);
        cli_print_fields(checked);
        putchar('\n');
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rep, "violations"), i, v)
    {
        json_t *inv = json_object_get(v, "invariant");
        json_t *detail = json_object_get(v, "detail");
        printf("VIOLATION %s: %s\n", json_is_string(inv) ? json_string_value(inv) : "?",
               json_is_string(detail) ? json_string_value(detail) : "");
    }
    json_t *heads = tenant_heads(rep);
    if (json_array_size(heads) > 0)
        puts("hash chains:");
    json_array_foreach(heads, i, v)
    {
        fputs(" ", stdout);
        if (json_is_object(v))
            cli_print_fields(v);
        else if (json_is_string(v))
            printf(" %s", json_string_value(v));
        putchar('\n');
    }
    if (violations == 0)
        puts("all invariants hold");
    else
        printf("%lld violation%s found\n", (long long)violations, violations == 1 ? "" : "s");
}

int cmd_verify(int argc, char **argv)
{
    const char *db = NULL, *pos[1];
    bool json = false;
    int pos_n = 0;
    const cli_opt opts[] = {{"--db", &db, NULL}, {"--json", NULL, &json}};
    cli_parse_result pr = cli_parse("verify", argc, argv, opts, 2, pos, 0, &pos_n);
    if (pr == CLI_PARSE_HELP)
        return fputs(verify_usage, stdout), CLI_EXIT_OK;
    if (pr == CLI_PARSE_ERROR)
        return CLI_EXIT_ERROR;
    if (!db)
        return cli_missing("verify", "--db FILE");
    jf_engine *eng = NULL;
    if (cli_open(db, true, false, 0, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    char *text = NULL;
    int64_t violations = 0;
    jf_err err = jf_verify(eng, &text, &violations);
    int rc = violations > 0 ? CLI_EXIT_VIOLATIONS : CLI_EXIT_OK;
    json_t *rep = text ? jf_json_loads_whole(text, 0) : NULL;
    if (err != JF_OK)
        rc = cli_fail("verify: cannot check %s: %s", db, jf_err_message(err));
    else if (json || !json_is_object(rep))
        cli_print_json_line(text ? text : "{}");
    else
        print_report(db, rep, violations);
    fflush(stdout);
    json_decref(rep);
    free(text);
    jf_engine_free(eng);
    return rc;
}

static const char expire_usage[] =
    "usage: jifen expire --db FILE [--json]\n"
    "\n"
    "Expires every lot that is due, voids every overdue hold and grants the\n"
    "birthday bonuses due today (docs/RULES.md), in every tenant, at the\n"
    "current time, and runs the tier evaluations due (docs/TIERS.md); prints\n"
    "one line of totals per tenant (holds.voided_holds, expiry.expired_points,\n"
    "expiry.lots, expiry.members, bonuses.birthday_members, tiers.*).  Running\n"
    "it again at once does nothing more.  A running server does the same every\n"
    "--expiry-interval seconds.\n"
    "\n"
    "  --db FILE  the SQLite database\n"
    "  --json     print the totals as one JSON array, an object per tenant\n";

/* One line per tenant (the engine answers an array of per-tenant totals) or
 * one line for a single object. */
static void print_totals(json_t *totals)
{
    size_t i;
    json_t *t;
    if (json_is_object(totals)) {
        fputs("expired:", stdout);
        cli_print_fields(totals);
        putchar('\n');
        return;
    }
    json_array_foreach(totals, i, t)
    {
        fputs("expired:", stdout);
        cli_print_fields(t);
        putchar('\n');
    }
    if (json_array_size(totals) == 0)
        puts("no tenants");
}

int cmd_expire(int argc, char **argv)
{
    const char *db = NULL, *pos[1];
    bool json = false;
    int pos_n = 0;
    const cli_opt opts[] = {{"--db", &db, NULL}, {"--json", NULL, &json}};
    cli_parse_result pr = cli_parse("expire", argc, argv, opts, 2, pos, 0, &pos_n);
    if (pr == CLI_PARSE_HELP)
        return fputs(expire_usage, stdout), CLI_EXIT_OK;
    if (pr == CLI_PARSE_ERROR)
        return CLI_EXIT_ERROR;
    if (!db)
        return cli_missing("expire", "--db FILE");
    jf_engine *eng = NULL;
    if (cli_open(db, false, false, 0, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    char *text = NULL;
    jf_err err = jf_maintenance_run(eng, &text);
    int rc = CLI_EXIT_OK;
    json_t *totals = text ? jf_json_loads_whole(text, 0) : NULL;
    if (err != JF_OK)
        rc = cli_fail("expire: %s", jf_err_message(err));
    else if (json || !(json_is_object(totals) || json_is_array(totals)))
        cli_print_json_line(text ? text : "{}");
    else
        print_totals(totals);
    fflush(stdout);
    json_decref(totals);
    free(text);
    jf_engine_drain(eng);
    jf_engine_free(eng);
    return rc;
}
