/*
 * model_test: a seeded random model test of the jifen engine, in the manner
 * of SQLite's and TigerBeetle's auditors.
 *
 * It opens an engine on a fresh database with the test clock, creates one
 * tenant, sets its program, and runs MODEL_OPS random operations (earn,
 * redeem, adjust, transfer, holds, reversals, expiry, clock moves, replays)
 * through the public API, comparing every reply with an independent oracle
 * (oracle.c) and, every MODEL_CHECK_EVERY operations and at the end, every
 * member's points and lots.  Finally jf_verify must report no violation.
 *
 * Environment: MODEL_SEED (default: from the time), MODEL_OPS (default
 * 100000), MODEL_CHECK_EVERY (default 50), MODEL_TRACE=1 prints every
 * operation.  The first line names the seed; a failure prints the seed, the
 * operation, what was expected and what the engine did, the operations
 * before it, and exits 1.  The same seed replays the same run.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model.h"

/* A member is retired (no longer picked) once it has this many lots, so that
 * lot lists stay short and the run stays fast however long it is. */
#define RETIRE_LOTS 100

/* Runs start on 2035-01-01 (plus up to a year from the seed), so that a seed
 * replays the same times whenever it runs; the test clock cannot go back
 * before the real time. */
#define START_MS INT64_C(2051222400000)

static model g_model;

void mt_desc(model *md, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(md->desc, sizeof md->desc, fmt, ap);
    va_end(ap);
    snprintf(md->log[md->log_count % MT_LOG_RING], sizeof md->log[0], "#%ld %.480s", md->op_index,
             md->desc);
    md->log_count++;
    if (md->trace)
        printf("#%ld %s\n", md->op_index, md->desc);
}

void mt_fail_header(model *md)
{
    static bool printed;
    if (printed)
        return;
    printed = true;
    fflush(stdout);
    fprintf(stderr, "\nmodel_test FAILED seed=%llu at op %ld of %ld\n",
            (unsigned long long)md->seed, md->op_index, md->ops);
    fprintf(stderr, "  op: %s\n", md->desc);
}

_Noreturn void mt_fail(model *md, const char *fmt, ...)
{
    va_list ap;
    mt_fail_header(md);
    fprintf(stderr, "  ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  recent operations (oldest first):\n");
    long first = md->log_count > MT_LOG_RING ? md->log_count - MT_LOG_RING : 0;
    for (long i = first; i < md->log_count; i++)
        fprintf(stderr, "    %s\n", md->log[i % MT_LOG_RING]);
    fprintf(stderr, "  replay: MODEL_SEED=%llu MODEL_OPS=%ld MODEL_TRACE=1 model_test\n",
            (unsigned long long)md->seed, md->op_index + 1);
    fprintf(stderr, "  database kept in %s\n", md->dir);
    fprintf(stderr, "model_test: %ld ops passed, 1 failed (seed=%llu)\n", md->op_index,
            (unsigned long long)md->seed);
    exit(1);
}

_Noreturn void mt_oracle_bug(const char *cond, const char *file, int line)
{
    mt_fail(&g_model, "oracle assertion failed at %s:%d: %s (a bug in the oracle)", file, line,
            cond);
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < 0) {
        fprintf(stderr, "model_test: %s must be a non-negative integer\n", name);
        exit(2);
    }
    return n;
}

static uint64_t env_seed(void)
{
    const char *v = getenv("MODEL_SEED");
    if (v != NULL && *v != '\0') {
        char *end;
        unsigned long long n = strtoull(v, &end, 0);
        if (*end == '\0')
            return n;
        fprintf(stderr, "model_test: MODEL_SEED must be an integer\n");
        exit(2);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* A scratch directory on a RAM disk when there is one: the test measures
 * the ledger, not the disk's fsync. */
static void make_dir(model *md)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(md->dir, sizeof md->dir, "%s/jifen-model-XXXXXX", base);
    if (mkdtemp(md->dir) == NULL) {
        perror("model_test: mkdtemp");
        exit(2);
    }
    snprintf(md->db_path, sizeof md->db_path, "%s/model.db", md->dir);
}

static void remove_dir(const model *md)
{
    DIR *d = opendir(md->dir);
    char path[600];
    if (d == NULL)
        return;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", md->dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(md->dir);
}

static void open_engine(model *md)
{
    char errbuf[256] = "", tenant[64], key[256];
    jf_engine_options opts;
    memset(&opts, 0, sizeof opts);
    opts.db_path = md->db_path;
    opts.test_clock = true;
    opts.expiry_interval_s = 0;
    /* Every answer kept as points only is also rebuilt as it is stored and
     * compared with the one given (src/core/idem.c). */
    setenv("JIFEN_CHECK_REPLIES", "1", 1);
    jf_err err = jf_engine_open(&opts, &md->eng, errbuf, sizeof errbuf);
    if (err != JF_OK)
        mt_fail(md, "jf_engine_open: %s (%s)", jf_err_code(err), errbuf);
    err = jf_tenant_create(md->eng, "model", tenant, sizeof tenant, key, sizeof key);
    if (err != JF_OK)
        mt_fail(md, "jf_tenant_create: %s", jf_err_code(err));
    err = jf_tenant_auth(md->eng, tenant, &md->auth);
    if (err != JF_OK || md->auth.role != JF_ROLE_ADMIN)
        mt_fail(md, "jf_tenant_auth: %s (role %d)", jf_err_code(err), (int)md->auth.role);
}

static void set_program(model *md, int64_t pending_days)
{
    char body[512], key[64];
    jf_result res;
    snprintf(body, sizeof body,
             "{\"currency\":\"CNY\",\"earn_rate\":{\"points\":1,\"per_amount\":100},"
             "\"expiry\":{\"policy\":\"days_after_earn\",\"days\":30},\"pending_days\":%lld,"
             "\"debt_floor\":50,\"timezone\":\"UTC\",\"hold_ttl_seconds\":900,"
             "\"operator_adjust_max\":1000000}",
             (long long)pending_days);
    mt_desc(md, "PROGRAM_UPDATE body=%s", body);
    mt_new_key(md, key, sizeof key);
    jf_err err = mt_call(md, JF_OP_PROGRAM_UPDATE, NULL, body, key, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    if (mt_int(md, root, "pending_days") != pending_days || mt_int(md, root, "debt_floor") != 50 ||
        mt_int(md, root, "expiry.days") != 30)
        mt_fail(md, "the program did not take the update: %.*s", (int)res.body_len, res.body);
    json_decref(root);
    jf_result_deinit(&res);
}

static void setup(model *md)
{
    make_dir(md);
    open_engine(md);
    int64_t start = START_MS + mt_rng_range(&md->rng, 0, 365 * MT_DAY_MS);
    int64_t real = jf_engine_now_ms(md->eng);
    if (start < real)
        start = real + 1000;
    int64_t pending_days = mt_rng_chance(&md->rng, 50) ? 0 : 2;
    o_init(&md->o, start, pending_days, 30, 50);
    mt_clock_set(md, start);
    set_program(md, pending_days);
    int members = (int)mt_rng_range(&md->rng, 8, 20);
    md->active = mt_xrealloc(NULL, (size_t)members * sizeof *md->active);
    for (int i = 0; i < members; i++)
        md->active[md->nactive++] = mt_member_create(md);
    printf("model_test: %d members, pending_days %lld, db %s\n", members, (long long)pending_days,
           md->db_path);
}

/* Compares the whole state, then retires members whose lot lists grew long
 * and puts fresh members in their places. */
static void checkpoint(model *md)
{
    int bad;
    mt_desc(md, "CHECK all members");
    const char *broken = o_invariants(&md->o, &bad);
    if (broken != NULL)
        mt_fail(md, "oracle invariant broken for m%d: %s (a bug in the oracle)", bad, broken);
    mt_check_all(md, false);
    for (int i = 0; i < md->nactive; i++) {
        o_member *mem = &md->o.members[md->active[i]];
        if (mem->nlots < RETIRE_LOTS)
            continue;
        mem->retired = true;
        md->active[i] = mt_member_create(md);
    }
}

static void finish(model *md)
{
    char *json = NULL;
    int64_t violations = -1;
    mt_desc(md, "FINAL CHECK of every member");
    mt_check_all(md, true);
    for (int m = 0; m < md->o.nmembers; m++)
        mt_check_history(md, m);
    mt_desc(md, "jf_verify");
    jf_err err = jf_verify(md->eng, &json, &violations);
    if (err != JF_OK || violations != 0)
        mt_fail(md, "jf_verify: %s, %lld violations: %s", jf_err_code(err), (long long)violations,
                json ? json : "(no report)");
    free(json);
}

/* Frees everything the run allocated (the engine is already closed). */
static void model_free(model *md)
{
    int kept = md->nreplays < MT_REPLAY_RING ? md->nreplays : MT_REPLAY_RING;
    for (int i = 0; i < kept; i++) {
        free(md->replays[i].path_id);
        free(md->replays[i].body);
        free(md->replays[i].key);
        free(md->replays[i].reply);
    }
    for (int i = 0; i < md->norders; i++)
        free(md->orders[i]);
    free(md->orders);
    free(md->active);
    free(md->recent);
    free(md->holds);
    o_free(&md->o);
}

int main(void)
{
    model *md = &g_model;
    md->seed = env_seed();
    md->ops = env_long("MODEL_OPS", 100000);
    long check_every = env_long("MODEL_CHECK_EVERY", 50);
    md->trace = env_long("MODEL_TRACE", 0) != 0;
    printf("model_test seed=%llu ops=%ld\n", (unsigned long long)md->seed, md->ops);
    fflush(stdout);
    mt_rng_seed(&md->rng, md->seed);
    setup(md);
    for (md->op_index = 0; md->op_index < md->ops; md->op_index++) {
        mt_op_random(md);
        if (check_every > 0 && (md->op_index + 1) % check_every == 0)
            checkpoint(md);
    }
    finish(md);
    const o_stats *st = &md->o.stats;
    printf("model_test: covered %ld debts, %ld debt payments, %ld restores (%ld into new lots), "
           "%ld holds swept, %ld lots expired\n",
           st->debt_created, st->debt_paid, st->restored + st->restored_new, st->restored_new,
           st->holds_swept, st->lots_expired);
    printf("model_test: %ld ops passed, 0 failed (seed=%llu; %d members, %d lots, %d "
           "transactions, %ld checks, %ld lot lists, %ld replays, %ld expected errors)\n",
           md->ops, (unsigned long long)md->seed, md->o.nmembers, md->o.nlots, md->o.ntxns,
           md->checks, md->lot_checks, md->replays_done, md->errors_expected);
    jf_engine_free(md->eng);
    remove_dir(md);
    model_free(md);
    return 0;
}
