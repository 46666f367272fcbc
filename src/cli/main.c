/*
 * The `jifen` command: entry point and subcommand dispatch.
 *
 * Each subcommand lives in its own cmd_*.c and is a thin client of libjifen;
 * this file only picks one by name and prints the top-level help and
 * version.  Exit codes: 0 ok, 1 verify found violations, 2 usage or
 * runtime error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"init", cmd_init, "create the database if needed, a tenant and its admin API key"},
    {"serve", cmd_serve, "serve the HTTP/JSON API"},
    {"verify", cmd_verify, "check every ledger invariant; exit 1 on a violation"},
    {"expire", cmd_expire,
     "expire due points, void overdue holds, grant due birthday bonuses, run due tier evaluations"},
    {"keys", cmd_keys, "create, list or revoke API keys of a tenant"},
    {"tenants", cmd_tenants, "list the tenants in a database"},
    {"rules", cmd_rules, "list, show or create the earning rules of a tenant"},
    {"tiers", cmd_tiers, "show or set a tenant's tiers, a member's tier; run tier evaluations"},
};

#define SUBCOMMAND_COUNT (sizeof subcommands / sizeof subcommands[0])

static void usage(FILE *f)
{
    fputs("usage: jifen <command> [options]\n"
          "\n"
          "jifen is a loyalty points engine: a double-entry points ledger with\n"
          "expiry, holds and an HTTP/JSON API.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++)
        fprintf(f, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
    fputs("  help      show this help, or 'jifen help <command>'\n"
          "\n"
          "options:\n"
          "  -h, --help     show this help\n"
          "  -V, --version  show the version\n"
          "\n"
          "Run 'jifen <command> --help' for a command's options.\n"
          "Exit status: 0 ok, 1 verify found violations, 2 usage or runtime error.\n",
          f);
}

static const subcommand *find_subcommand(const char *name)
{
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++)
        if (strcmp(subcommands[i].name, name) == 0)
            return &subcommands[i];
    return NULL;
}

/* "jifen help" and "jifen help <command>". */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const subcommand *sc = find_subcommand(argv[2]);
    if (!sc)
        return cli_fail("unknown command '%s' (see 'jifen --help')", argv[2]);
    char *sub_argv[] = {(char *)sc->name, (char *)"--help", NULL};
    return sc->run(2, sub_argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_ERROR;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)
        return usage(stdout), CLI_EXIT_OK;
    if (strcmp(cmd, "help") == 0)
        return help(argc, argv);
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("jifen %s\n", jf_version());
        return CLI_EXIT_OK;
    }
    const subcommand *sc = find_subcommand(cmd);
    if (!sc)
        return cli_fail("unknown command '%s' (see 'jifen --help')", cmd);
    return sc->run(argc - 1, argv + 1);
}
