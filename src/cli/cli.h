/*
 * Shared pieces of the `jifen` command: the option parser, exit codes and
 * small helpers used by every subcommand.
 *
 * The CLI is a thin client of libjifen (include/jifen only).  Each
 * subcommand is a function cmd_x(argc, argv) where argv[0] is the
 * subcommand's name; it parses its own options, prints to stdout (results)
 * and stderr (problems) and returns the process exit code.
 */
#ifndef JF_CLI_H
#define JF_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jifen/jifen.h"

/* Exit codes (API.md: verify exits 1 on violations). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_VIOLATIONS 1
#define CLI_EXIT_ERROR 2

/* One option of a subcommand: a flag (--json) or an option with a value
 * (--db FILE or --db=FILE).  Exactly one of value and flag is set. */
typedef struct cli_opt {
    const char *name; /* "--db" */
    const char **value;
    bool *flag;
} cli_opt;

/* What cli_parse found. */
typedef enum cli_parse_result {
    CLI_PARSE_OK,
    CLI_PARSE_HELP,  /* -h or --help was given: print usage, exit 0 */
    CLI_PARSE_ERROR, /* a message is already on stderr: exit 2 */
} cli_parse_result;

/*
 * Parses argv[1..argc) of a subcommand against opts.  Positional arguments
 * go to pos (at most pos_max; more is an error) and their count to *pos_n.
 * "--" ends the options.  Keeps no state between calls.
 */
cli_parse_result cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts,
                           size_t opt_count, const char **pos, int pos_max, int *pos_n);

/* A subcommand of the shape "jifen NAME ACTION --db FILE --tenant T ...":
 * opts must bind --db and --tenant to *db and *tenant. */
typedef struct cli_tenant_cmd {
    const char *name, *usage;
    const cli_opt *opts;
    size_t opt_count;
    const char *const *db, *const *tenant;
    const char **pos; /* positional arguments after ACTION */
    int pos_max, pos_n;
} cli_tenant_cmd;

/* Answers "help" / -h / a missing ACTION, parses the options after ACTION
 * and requires --db and --tenant.  Returns true when the command goes on;
 * otherwise *rc is its exit code (usage or the error already printed). */
bool cli_tenant_cmd_parse(cli_tenant_cmd *c, int argc, char **argv, int *rc);

/* Reads at most max bytes of path ("-": standard input) as a string
 * (malloc'd); NULL when it cannot be read or is longer. */
char *cli_read_file(const char *path, size_t max);

/* Opens the database at db, runs op as the console admin of tenant (with
 * path_id and a JSON body, either may be NULL) and drains the engine.  On
 * an error prints it ("jifen: <cmd>: ...") and returns CLI_EXIT_ERROR;
 * res holds the answer either way (jf_result_deinit frees it). */
int cli_tenant_call(const char *cmd, const char *db, const char *tenant, jf_op op,
                    const char *path_id, const char *body, jf_result *res);

/* Prints "jifen: <message>" on stderr and returns CLI_EXIT_ERROR. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "jifen <cmd>: missing --<opt>" plus a hint; returns CLI_EXIT_ERROR. */
int cli_missing(const char *cmd, const char *opt);

/* Parses a decimal integer in [min, max]; false for anything else. */
bool cli_parse_long(const char *s, long min, long max, long *out);

/* Opens the engine on db, printing the reason on failure. */
jf_err cli_open(const char *db, bool no_writer, bool test_clock, int expiry_interval_s,
                jf_engine **eng);

/* The same with every engine option (jifen serve's tuning flags). */
jf_err cli_open_with(const jf_engine_options *o, jf_engine **eng);

/* Prints an engine failure as "jifen: <code>: <detail>"; returns 2. */
int cli_fail_result(const jf_result *res);

/* Prints a JSON text followed by a newline, reformatted compactly when it
 * parses (so --json output is always exactly one line). */
void cli_print_json_line(const char *json);

/* Prints " key=value" for the scalar members of a JSON object (nested
 * objects as "outer.inner=value"), without a newline.  jansson's json_t. */
struct json_t;
void cli_print_fields(struct json_t *o);

/* Subcommands. */
int cmd_init(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_expire(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_tenants(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_tiers(int argc, char **argv);

#endif
