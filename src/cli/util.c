/*
 * Helpers shared by the subcommands of `jifen`: a stateless option parser
 * (getopt keeps global state, which a command made of several parsers does
 * not want), error printing and opening the engine.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("jifen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_ERROR;
}

int cli_missing(const char *cmd, const char *opt)
{
    return cli_fail("%s: missing %s (see 'jifen %s --help')", cmd, opt, cmd);
}

bool cli_tenant_cmd_parse(cli_tenant_cmd *c, int argc, char **argv, int *rc)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(c->usage, argc < 2 ? stderr : stdout);
        *rc = argc < 2 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
        return false;
    }
    cli_parse_result pr = cli_parse(c->name, argc - 1, argv + 1, c->opts, c->opt_count, c->pos,
                                    c->pos_max, &c->pos_n);
    *rc = pr == CLI_PARSE_ERROR ? CLI_EXIT_ERROR : CLI_EXIT_OK;
    if (pr == CLI_PARSE_HELP)
        fputs(c->usage, stdout);
    if (pr != CLI_PARSE_OK)
        return false;
    if (*c->db == NULL || *c->tenant == NULL) {
        *rc = cli_missing(c->name, *c->db == NULL ? "--db FILE" : "--tenant ID_OR_NAME");
        return false;
    }
    return true;
}

char *cli_read_file(const char *path, size_t max)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(max + 2);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    if (f != stdin)
        fclose(f);
    if (buf == NULL || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cli_tenant_call(const char *cmd, const char *db, const char *tenant, jf_op op,
                    const char *path_id, const char *body, jf_result *res)
{
    jf_engine *eng = NULL;
    if (cli_open(db, false, false, 0, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    jf_auth auth;
    memset(&auth, 0, sizeof auth);
    int rc = CLI_EXIT_OK;
    if (jf_tenant_auth(eng, tenant, &auth) != JF_OK) {
        rc = cli_fail("%s: no tenant '%s' (see 'jifen tenants')", cmd, tenant);
    } else {
        jf_request req = {.op = op,
                          .auth = &auth,
                          .path_id = path_id,
                          .body = body,
                          .body_len = body ? strlen(body) : 0};
        if (jf_call_sync(eng, &req, res) != JF_OK)
            rc = cli_fail_result(res);
    }
    jf_engine_drain(eng);
    jf_engine_free(eng);
    return rc;
}

static const cli_opt *find_opt(const cli_opt *opts, size_t n, const char *arg, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, arg, len) == 0)
            return &opts[i];
    return NULL;
}

/* Handles one "--name", "--name=value" or "--name value" at argv[*i]. */
static cli_parse_result parse_one(const char *cmd, int argc, char **argv, int *i,
                                  const cli_opt *opts, size_t n)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const cli_opt *o = find_opt(opts, n, arg, len);
    if (!o) {
        cli_fail("%s: unknown option '%.*s' (see 'jifen %s --help')", cmd, (int)len, arg, cmd);
        return CLI_PARSE_ERROR;
    }
    if (o->flag) {
        if (eq) {
            cli_fail("%s: %s takes no value", cmd, o->name);
            return CLI_PARSE_ERROR;
        }
        *o->flag = true;
        return CLI_PARSE_OK;
    }
    if (eq) {
        *o->value = eq + 1;
    } else if (*i + 1 < argc) {
        *o->value = argv[++*i];
    } else {
        cli_fail("%s: %s needs a value", cmd, o->name);
        return CLI_PARSE_ERROR;
    }
    return CLI_PARSE_OK;
}

cli_parse_result cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts,
                           size_t opt_count, const char **pos, int pos_max, int *pos_n)
{
    bool only_pos = false;
    *pos_n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0))
            return CLI_PARSE_HELP;
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            cli_parse_result r = parse_one(cmd, argc, argv, &i, opts, opt_count);
            if (r != CLI_PARSE_OK)
                return r;
            continue;
        }
        if (*pos_n >= pos_max) {
            cli_fail("%s: unexpected argument '%s' (see 'jifen %s --help')", cmd, a, cmd);
            return CLI_PARSE_ERROR;
        }
        pos[(*pos_n)++] = a;
    }
    return CLI_PARSE_OK;
}

bool cli_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !((*s >= '0' && *s <= '9') || *s == '-'))
        return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || !end || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

jf_err cli_open(const char *db, bool no_writer, bool test_clock, int expiry_interval_s,
                jf_engine **eng)
{
    jf_engine_options o = {
        .db_path = db,
        .test_clock = test_clock,
        .expiry_interval_s = expiry_interval_s,
        .no_writer = no_writer,
    };
    return cli_open_with(&o, eng);
}

jf_err cli_open_with(const jf_engine_options *o, jf_engine **eng)
{
    char why[512] = "";
    jf_err err = jf_engine_open(o, eng, why, sizeof why);
    if (err != JF_OK)
        cli_fail("cannot open %s: %s", o->db_path, why[0] ? why : jf_err_message(err));
    return err;
}

int cli_fail_result(const jf_result *res)
{
    return cli_fail("%s: %s", jf_err_code(res->err),
                    res->detail[0] ? res->detail : jf_err_message(res->err));
}

void cli_print_json_line(const char *json)
{
    json_t *j = jf_json_loads_whole(json, JSON_DECODE_ANY);
    /* Out of memory, jansson's dump may leave a key out (jifen.h,
     * jf_json_dumps_whole): the engine's own text then, as it came. */
    char *s = j ? jf_json_dumps_whole(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fputs(s ? s : json, stdout);
    fputc('\n', stdout);
    free(s);
    json_decref(j);
}

/* Prints " key=value" for each scalar member, descending into nested
 * objects as "outer.inner=value". */
static void print_fields(json_t *o, const char *prefix)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (json_is_object(v)) {
            char nested[128];
            snprintf(nested, sizeof nested, "%s%s.", prefix, k);
            print_fields(v, nested);
        } else if (json_is_string(v)) {
            printf(" %s%s=%s", prefix, k, json_string_value(v));
        } else if (json_is_integer(v)) {
            printf(" %s%s=%lld", prefix, k, (long long)json_integer_value(v));
        } else if (json_is_boolean(v)) {
            printf(" %s%s=%s", prefix, k, json_is_true(v) ? "true" : "false");
        }
    }
}

void cli_print_fields(json_t *o)
{
    if (json_is_object(o))
        print_fields(o, "");
}
