/*
 * `jifen serve`: opens the engine, starts the HTTP server and waits for
 * SIGTERM or SIGINT.
 *
 * Signals are blocked in every thread (the mask is set before the engine
 * and the server start their threads, which inherit it) and taken with
 * sigwait in main, so no work ever runs in a signal handler.  Shutdown order
 * matters: stop accepting, let in-flight requests finish (the server waits
 * for every request suspended on the writer), then drain and close the
 * engine, so every acknowledged write is committed before exit 0.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jifen/server.h"

#include "cli.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_EXPIRY_INTERVAL_S 60
/* Worker threads accepted on the command line. */
#define THREADS_MAX 256
/* The scheduled expiry runs at most once a day apart. */
#define EXPIRY_INTERVAL_MAX_S 86400

/* JIFEN_HTTP_LOOP_WAIT_MS, for tests only (tests/api/test_concurrency.py):
 * how long an HTTP loop may sleep with nothing due (jf_server_options).
 * Unset or not a number from 1 to 2^31-1: the default. */
static int loop_wait_from_env(void)
{
    const char *v = getenv("JIFEN_HTTP_LOOP_WAIT_MS");
    long ms = 0;
    return v && cli_parse_long(v, 1, INT_MAX, &ms) ? (int)ms : 0;
}

static const char serve_usage[] =
    "usage: jifen serve --db FILE [--listen HOST:PORT] [--test-clock] [--threads N]\n"
    "                   [--access-log FILE|-|off] [--expiry-interval SECONDS]\n"
    "                   [--wal-restart-frames N] [--checkpoint-interval MS]\n"
    "\n"
    "Serves the HTTP/JSON API until SIGTERM or SIGINT, then stops accepting,\n"
    "finishes in-flight requests and exits 0.  Prints one line when ready:\n"
    "  jifen listening on http://HOST:PORT\n"
    "\n"
    "  --db FILE                 the SQLite database (created when missing)\n"
    "  --listen HOST:PORT        IPv4 address and port (default " DEFAULT_LISTEN ");\n"
    "                            port 0 picks a free port, shown in the ready line\n"
    "  --test-clock              enable PUT/GET /v1/test/clock (tests only)\n"
    "  --threads N               HTTP threads, each an event loop (default 2, at least 2)\n"
    "  --access-log FILE|-|off   JSON-lines access log: a file (appended), '-' for\n"
    "                            stdout, or 'off' (the default)\n"
    "  --expiry-interval SECONDS how often scheduled expiry runs (default 60); overdue\n"
    "                            holds are voided every second.  0 disables both\n"
    "                            (with --test-clock the default is 0)\n"
    "  --wal-restart-frames N    start the write-ahead log again from its head past N\n"
    "                            pages (4 KiB each; default 65536 = 256 MiB, 1024 to\n"
    "                            4194304).  Lower saves disk and page cache and costs\n"
    "                            write throughput\n"
    "  --checkpoint-interval MS  how often the write-ahead log is copied into the\n"
    "                            database (default 100, 10 to 60000).  Longer writes\n"
    "                            fewer pages to the disk, but the writer then copies\n"
    "                            more itself at each restart of the log, which\n"
    "                            lengthens the latency tail\n"
    "\n"
    "Environment:\n"
    "  JIFEN_IDEM_FILTER=0       look every idempotency key up: no in-memory filter\n"
    "                            of the stored keys (README, \"Operating it\")\n";

typedef struct serve_args {
    const char *db, *listen, *threads, *access_log, *expiry, *wal_frames, *ckpt;
    bool test_clock;
    long threads_n, expiry_s, wal_frames_n, ckpt_ms;
} serve_args;

static int parse_serve(int argc, char **argv, serve_args *a, bool *help)
{
    const char *pos[1];
    int pos_n = 0;
    const cli_opt opts[] = {
        {"--db", &a->db, NULL},
        {"--listen", &a->listen, NULL},
        {"--threads", &a->threads, NULL},
        {"--access-log", &a->access_log, NULL},
        {"--expiry-interval", &a->expiry, NULL},
        {"--test-clock", NULL, &a->test_clock},
        {"--wal-restart-frames", &a->wal_frames, NULL},
        {"--checkpoint-interval", &a->ckpt, NULL},
    };
    cli_parse_result pr = cli_parse("serve", argc, argv, opts, 8, pos, 0, &pos_n);
    *help = pr == CLI_PARSE_HELP;
    if (pr != CLI_PARSE_OK)
        return pr == CLI_PARSE_HELP ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    if (!a->db)
        return cli_missing("serve", "--db FILE");
    if (!a->listen)
        a->listen = DEFAULT_LISTEN;
    a->threads_n = JF_HTTP_THREADS_DEFAULT;
    if (a->threads && !cli_parse_long(a->threads, 2, THREADS_MAX, &a->threads_n))
        return cli_fail("serve: --threads must be a number from 2 to %d", THREADS_MAX);
    a->expiry_s = a->test_clock ? 0 : DEFAULT_EXPIRY_INTERVAL_S;
    if (a->expiry && !cli_parse_long(a->expiry, 0, EXPIRY_INTERVAL_MAX_S, &a->expiry_s))
        return cli_fail("serve: --expiry-interval must be 0 to %d seconds", EXPIRY_INTERVAL_MAX_S);
    a->wal_frames_n = 0;
    if (a->wal_frames && !cli_parse_long(a->wal_frames, JF_WAL_RESTART_FRAMES_MIN,
                                         JF_WAL_RESTART_FRAMES_MAX, &a->wal_frames_n))
        return cli_fail("serve: --wal-restart-frames must be a number from %d to %d",
                        JF_WAL_RESTART_FRAMES_MIN, JF_WAL_RESTART_FRAMES_MAX);
    a->ckpt_ms = 0;
    if (a->ckpt && !cli_parse_long(a->ckpt, JF_CHECKPOINT_INTERVAL_MS_MIN,
                                   JF_CHECKPOINT_INTERVAL_MS_MAX, &a->ckpt_ms))
        return cli_fail("serve: --checkpoint-interval must be a number from %d to %d (ms)",
                        JF_CHECKPOINT_INTERVAL_MS_MIN, JF_CHECKPOINT_INTERVAL_MS_MAX);
    return CLI_EXIT_OK;
}

/* Opens the access log: NULL with *ok for "off", stdout for "-". */
static FILE *open_access_log(const char *spec, bool *ok)
{
    *ok = true;
    if (!spec || strcmp(spec, "off") == 0)
        return NULL;
    if (strcmp(spec, "-") == 0)
        return stdout;
    FILE *f = fopen(spec, "a");
    if (!f) {
        *ok = false;
        cli_fail("serve: cannot open access log %s", spec);
    }
    return f;
}

/* The host part of HOST:PORT for the ready line ("0.0.0.0" when empty). */
static void listen_host(const char *listen, char *buf, size_t len)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    if (n == 0 || (n == 1 && listen[0] == '*'))
        snprintf(buf, len, "0.0.0.0");
    else
        snprintf(buf, len, "%.*s", (int)n, listen);
}

/* Blocks until SIGTERM or SIGINT arrives; they are blocked in all threads. */
static void wait_for_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ;
    fprintf(stderr, "jifen: %s received, shutting down\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int run_server(const serve_args *a, FILE *log, const sigset_t *set)
{
    jf_engine *eng = NULL;
    jf_engine_options eo = {
        .db_path = a->db,
        .test_clock = a->test_clock,
        .expiry_interval_s = (int)a->expiry_s,
        .wal_restart_frames = (int)a->wal_frames_n,
        .checkpoint_interval_ms = (int)a->ckpt_ms,
    };
    if (cli_open_with(&eo, &eng) != JF_OK)
        return CLI_EXIT_ERROR;
    jf_server_options so = {
        .listen = a->listen,
        .threads = (int)a->threads_n,
        .test_clock = a->test_clock,
        .access_log = log,
        .loop_wait_ms = loop_wait_from_env(),
    };
    jf_server *srv = NULL;
    char why[256] = "";
    if (jf_server_start(eng, &so, &srv, why, sizeof why) != JF_OK) {
        jf_engine_free(eng);
        return cli_fail("serve: %s", why);
    }
    char host[64];
    listen_host(a->listen, host, sizeof host);
    printf("jifen listening on http://%s:%d\n", host, jf_server_port(srv));
    fflush(stdout);
    wait_for_signal(set);
    jf_server_quiesce(srv);
    jf_server_free(srv);
    jf_engine_drain(eng);
    jf_engine_free(eng);
    return CLI_EXIT_OK;
}

int cmd_serve(int argc, char **argv)
{
    serve_args a;
    memset(&a, 0, sizeof a);
    bool help = false;
    int rc = parse_serve(argc, argv, &a, &help);
    if (help)
        return fputs(serve_usage, stdout), CLI_EXIT_OK;
    if (rc != CLI_EXIT_OK)
        return rc;
    bool ok;
    FILE *log = open_access_log(a.access_log, &ok);
    if (!ok)
        return CLI_EXIT_ERROR;
    /* Block the signals before any thread exists so that every thread
     * inherits the mask and only sigwait here ever takes them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = run_server(&a, log, &set);
    if (log && log != stdout)
        fclose(log);
    return rc;
}
