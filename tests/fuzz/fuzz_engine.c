/*
 * A stateful fuzzer of the engine: every request the HTTP API can make, in
 * sequences, through jf_call_sync exactly as the server builds them.
 *
 * An input is text, one request per line (so the seeds in corpus/engine are
 * readable and a mutation usually stays a request):
 *
 *     <operation> <path id> <idempotency key> <JSON body to the end of the line>
 *
 * - <operation> is an operation name ("points.earn", jf_op_name); a name
 *   that is none picks one by its bytes, so a mutated name is still a call.
 * - <path id> is "-" for none, else the id; "?a=1&b=2" after it (or alone,
 *   after "-") becomes query parameters.
 * - <key> is "-" for none, "*" for a fresh key, else the key itself (the
 *   same key twice is a replay, or a reuse with another body).
 * - In the path id, the parameters and the body, "$m0".."$m7" stand for the
 *   members this input has created so far (by the "mem_" ids its answers
 *   carried), "$t0".."$t7" for transactions and holds ("txn_"), "$r" rules,
 *   "$c" campaigns, "$l" lots, "$k" API keys, "$q" members' referral codes
 *   (by the "referral_code" field: a code is enciphered under the
 *   database's random key, so an input cannot spell one); a bare "$m" is
 *   the latest.
 *
 * Each input runs on a tenant of its own, created for it, with the test
 * clock set back to the same instant first, so an input's effect does not
 * depend on the ones before it (the database is shared and reset every
 * FUZZ_DB_RESET inputs, default 20,000).
 *
 * What is checked, besides the sanitizers: every call returns the error
 * its result carries, from the error table; a success has a JSON body and
 * an error none; a keyed request that created something answers the same
 * bytes, marked replayed, when sent again; and every
 * FUZZ_VERIFY_EVERY inputs (default 1,000) and at exit, jf_verify finds no
 * violation of the ledger's invariants on the whole database, else the
 * report is printed and the run aborts.  FUZZ_TRACE=1 prints every call and
 * its answer (to see what a seed does).  A crash found this way reproduces
 * from its one input, whose tenant is then the only one (the artifact is
 * run on a fresh database).
 *
 * Built two ways (CMakeLists.txt): with libFuzzer (`make fuzz`, clang) and
 * with tests/fuzz/replay.c, which runs the committed corpus under ctest in
 * every build, the sanitizers' included.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "jifen/jifen.h"

#define LINES_MAX 48
#define SLOTS 8
#define PARAMS_MAX 8
#define TEXT_MAX (JF_BODY_BYTES_MAX + 1024)
/* Where the test clock stands when an input starts: 2030-01-01T00:00:00Z, later than the
 * real time for a while yet. */
#define FUZZ_START_MS 1893456000000LL

/* The id classes "$x" can name: the letter and the id's prefix (NULL: the
 * values of a field of that name instead, referral codes). */
static const struct {
    char letter;
    const char *prefix;
} classes[] = {{'m', "mem_"}, {'t', "txn_"}, {'r', "rul_"}, {'c', "cmp_"},
               {'l', "lot_"}, {'k', "key_"}, {'q', NULL}};
#define CLASSES (sizeof classes / sizeof classes[0])
#define CLASS_REFERRAL 6
#define REFERRAL_FIELD "referral_code"
_Static_assert(CLASS_REFERRAL == CLASSES - 1, "the last class");

typedef struct ids {
    char id[CLASSES][SLOTS][JF_ID_LEN_MAX];
    int n[CLASSES];
} ids;

static struct {
    char dir[256], db[300];
    jf_engine *eng;
    unsigned long inputs, tenants, keys, databases;
    unsigned long verify_every, reset_every;
    bool trace; /* FUZZ_TRACE set: print each call and its answer */
} fz;

static void die(const char *what, jf_err err, const char *detail)
{
    fprintf(stderr, "fuzz_engine: %s: %s %s\n", what, jf_err_code(err), detail ? detail : "");
    abort();
}

static unsigned long env_count(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    char *end;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    return v && *v && *end == '\0' && n > 0 ? n : dflt;
}

static void verify_or_abort(void)
{
    char *report = NULL;
    int64_t violations = 0;
    jf_err err = jf_verify(fz.eng, &report, &violations);
    if (err != JF_OK)
        die("jf_verify", err, NULL);
    if (violations != 0) {
        fprintf(stderr, "fuzz_engine: %lld invariant violations after %lu inputs:\n%s\n",
                (long long)violations, fz.inputs, report);
        abort();
    }
    free(report);
}

static void db_remove(void)
{
    static const char *suffixes[] = {"", "-wal", "-shm", "-keys"};
    char path[320];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s%s", fz.db, suffixes[i]);
        unlink(path);
    }
}

static void engine_open(void)
{
    char errbuf[256] = "";
    jf_engine_options opts;
    memset(&opts, 0, sizeof opts);
    opts.db_path = fz.db;
    opts.test_clock = true;
    opts.expiry_interval_s = 0; /* jobs run when an input asks, not on a timer */
    /* Every answer kept as points only is rebuilt as it is stored and
     * compared with the one given (src/core/idem.c): a difference is an
     * internal error, which no input may cause. */
    setenv("JIFEN_CHECK_REPLIES", "1", 1);
    jf_err err = jf_engine_open(&opts, &fz.eng, errbuf, sizeof errbuf);
    if (err != JF_OK)
        die("jf_engine_open", err, errbuf);
    fz.databases++;
}

static void engine_close(void)
{
    verify_or_abort();
    jf_engine_free(fz.eng);
    fz.eng = NULL;
    db_remove();
}

static void at_exit(void)
{
    if (fz.eng != NULL) {
        engine_close();
        rmdir(fz.dir);
        fprintf(stderr, "fuzz_engine: %lu inputs on %lu databases, verified\n", fz.inputs,
                fz.databases);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz.dir, sizeof fz.dir, "%s/jifen-fuzz-XXXXXX", base);
    if (mkdtemp(fz.dir) == NULL) {
        perror("fuzz_engine: mkdtemp");
        abort();
    }
    snprintf(fz.db, sizeof fz.db, "%s/fuzz.db", fz.dir);
    fz.verify_every = env_count("FUZZ_VERIFY_EVERY", 1000);
    fz.reset_every = env_count("FUZZ_DB_RESET", 20000);
    fz.trace = getenv("FUZZ_TRACE") != NULL;
    engine_open();
    atexit(at_exit);
    return 0;
}

/* Appends src[0..n) to dst (capacity cap, used *len), replacing each "$x[d]"
 * by the id it names; an unknown or unfilled name stays as written. */
static void expand(const ids *known, const char *src, size_t n, char *dst, size_t cap, size_t *len)
{
    for (size_t i = 0; i < n && *len + 1 < cap; i++) {
        const char *id = NULL;
        size_t used = 1;
        if (src[i] == '$' && i + 1 < n) {
            for (size_t c = 0; c < CLASSES && id == NULL; c++) {
                if (src[i + 1] != classes[c].letter || known->n[c] == 0)
                    continue;
                int slot = known->n[c] - 1;
                used = 2;
                if (i + 2 < n && src[i + 2] >= '0' && src[i + 2] < '0' + SLOTS) {
                    slot = (src[i + 2] - '0') % known->n[c];
                    used = 3;
                }
                id = known->id[c][slot];
            }
        }
        if (id == NULL) {
            dst[(*len)++] = src[i];
            continue;
        }
        size_t idn = strlen(id);
        if (*len + idn + 1 >= cap)
            break;
        memcpy(dst + *len, id, idn);
        *len += idn;
        i += used - 1;
    }
    dst[*len] = '\0';
}

/* Remembers s in class c, once. */
static void remember(ids *known, size_t c, const char *s)
{
    if (strlen(s) >= JF_ID_LEN_MAX)
        return;
    for (int i = 0; i < known->n[c]; i++)
        if (strcmp(known->id[c][i], s) == 0)
            return;
    int slot = known->n[c] < SLOTS ? known->n[c]++ : SLOTS - 1;
    strcpy(known->id[c][slot], s);
}

/* Remembers every id an answer carries, by its prefix, and every referral
 * code, by its field. */
static void collect(ids *known, const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (size_t c = 0; c < CLASSES; c++)
            if (classes[c].prefix && strncmp(s, classes[c].prefix, strlen(classes[c].prefix)) == 0)
                remember(known, c, s);
        return;
    }
    const char *k;
    json_t *e;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
        {
            if (strcmp(k, REFERRAL_FIELD) == 0 && json_is_string(e))
                remember(known, CLASS_REFERRAL, json_string_value(e));
            collect(known, e);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e) collect(known, e);
    }
}

static jf_op op_parse(const char *name, size_t n)
{
    unsigned h = 5381;
    for (int op = 0; op < JF_OP__COUNT; op++)
        if (strlen(jf_op_name((jf_op)op)) == n && memcmp(jf_op_name((jf_op)op), name, n) == 0)
            return (jf_op)op;
    for (size_t i = 0; i < n; i++)
        h = h * 33 + (unsigned char)name[i];
    return (jf_op)(h % JF_OP__COUNT);
}

/* Splits "a=1&b=2" in place into params; returns how many. */
static size_t params_split(char *q, jf_param *params)
{
    size_t n = 0;
    for (char *p = q; p != NULL && *p != '\0' && n < PARAMS_MAX;) {
        char *amp = strchr(p, '&');
        if (amp != NULL)
            *amp = '\0';
        char *eq = strchr(p, '=');
        if (eq != NULL)
            *eq = '\0';
        params[n].name = p;
        params[n].value = eq ? eq + 1 : "";
        n++;
        p = amp ? amp + 1 : NULL;
    }
    return n;
}

/* The next space-separated field of [*p, end), or the rest when last. */
static size_t field(const char **p, const char *end, bool last, const char **start)
{
    *start = *p;
    const char *q = *p;
    while (q < end && (last || *q != ' '))
        q++;
    size_t n = (size_t)(q - *p);
    *p = q < end ? q + 1 : q;
    return n;
}

typedef struct replay_slot {
    jf_op op;
    char key[64];
    char *path, *body, *answer;
} replay_slot;

/* A keyed request answered before must answer the same again (API.md). */
static void check_replay(replay_slot *seen, int *nseen, jf_op op, const char *key, const char *path,
                         const char *body, const jf_result *res)
{
    if (key == NULL || !jf_op_requires_idempotency(op))
        return;
    for (int i = 0; i < *nseen; i++) {
        replay_slot *s = &seen[i];
        if (s->op != op || strcmp(s->key, key) != 0 || strcmp(s->path, path) != 0 ||
            strcmp(s->body, body) != 0)
            continue;
        if (res->err != JF_OK || !res->replayed || strcmp(s->answer, res->body) != 0) {
            fprintf(stderr,
                    "fuzz_engine: %s with key %s answered differently the second time (%s):\n"
                    "%s\n%s\n",
                    jf_op_name(op), key, jf_err_code(res->err), s->answer,
                    res->body ? res->body : "");
            abort();
        }
        return;
    }
    /* Only what created something is stored for replay: a dry run, say,
     * answers 200 and keeps nothing. */
    if (res->err == JF_OK && res->created && *nseen < LINES_MAX && strlen(key) < sizeof seen->key) {
        replay_slot *s = &seen[(*nseen)++];
        s->op = op;
        strcpy(s->key, key);
        s->path = strdup(path);
        s->body = strdup(body);
        s->answer = strdup(res->body);
    }
}

static void check_result(jf_op op, jf_err err, const jf_result *res, ids *known)
{
    if (err != res->err || err >= JF_ERR__COUNT || (err == JF_OK) != (res->body != NULL)) {
        fprintf(stderr, "fuzz_engine: %s returned %s with result %s and %s body\n", jf_op_name(op),
                jf_err_code(err), jf_err_code(res->err), res->body ? "a" : "no");
        abort();
    }
    if (err == JF_ERR_INTERNAL) {
        /* A failed ledger assertion, or an answer that would replay otherwise
         * (JIFEN_CHECK_REPLIES): a bug, whatever the input. */
        fprintf(stderr, "fuzz_engine: %s answered internal_error: %s\n", jf_op_name(op),
                res->detail);
        abort();
    }
    if (res->body == NULL)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(res->body, res->body_len, 0, &jerr);
    if (root == NULL) {
        fprintf(stderr, "fuzz_engine: %s answered text that is not JSON (%s): %.*s\n",
                jf_op_name(op), jerr.text, (int)res->body_len, res->body);
        abort();
    }
    collect(known, root);
    json_decref(root);
}

/* A tenant of the input's own, at the same instant every time. */
static void tenant_new(jf_auth *auth)
{
    char name[64], tenant[64], key[256];
    jf_result res;
    snprintf(name, sizeof name, "fuzz-%lu", ++fz.tenants);
    jf_err err = jf_tenant_create(fz.eng, name, tenant, sizeof tenant, key, sizeof key);
    if (err == JF_OK)
        err = jf_tenant_auth(fz.eng, tenant, auth);
    if (err != JF_OK)
        die("a tenant for the input", err, NULL);
    if (jf_engine_now_ms(fz.eng) == FUZZ_START_MS)
        return;
    static const char clock[] = "{\"now\": \"2030-01-01T00:00:00Z\"}";
    jf_request req = {.op = JF_OP_CLOCK_SET,
                      .auth = auth,
                      .body = clock,
                      .body_len = sizeof clock - 1,
                      .idempotency_key = "fuzz-clock"};
    if ((err = jf_call_sync(fz.eng, &req, &res)) != JF_OK)
        die("setting the test clock", err, res.detail);
    jf_result_deinit(&res);
}

typedef struct line_buf {
    char path[512], key[160], body[TEXT_MAX];
    jf_param params[PARAMS_MAX];
} line_buf;

static void run_line(const char *p, const char *end, const jf_auth *auth, ids *known,
                     replay_slot *seen, int *nseen, line_buf *b)
{
    const char *f;
    size_t n = field(&p, end, false, &f);
    jf_op op = op_parse(f, n);
    size_t plen = 0, klen = 0, blen = 0, nparams = 0;
    n = field(&p, end, false, &f);
    expand(known, f, n, b->path, sizeof b->path, &plen);
    char *q = strchr(b->path, '?');
    if (q != NULL) {
        *q = '\0';
        nparams = params_split(q + 1, b->params);
    }
    n = field(&p, end, false, &f);
    if (n == 1 && f[0] == '*')
        klen = (size_t)snprintf(b->key, sizeof b->key, "fz-%lu", ++fz.keys);
    else
        expand(known, f, n, b->key, sizeof b->key, &klen);
    n = field(&p, end, true, &f);
    expand(known, f, n, b->body, sizeof b->body, &blen);
    bool no_path = strcmp(b->path, "-") == 0 || b->path[0] == '\0';
    bool no_key = strcmp(b->key, "-") == 0 || klen == 0;
    jf_request req = {.op = op,
                      .auth = auth,
                      .path_id = no_path ? NULL : b->path,
                      .params = nparams ? b->params : NULL,
                      .param_count = nparams,
                      .body = blen ? b->body : NULL,
                      .body_len = blen,
                      .idempotency_key = no_key ? NULL : b->key};
    jf_result res;
    memset(&res, 0, sizeof res);
    jf_err err = jf_call_sync(fz.eng, &req, &res);
    if (fz.trace)
        printf("  %s %s -> %s %.*s%s\n", jf_op_name(op), req.path_id ? req.path_id : "-",
               jf_err_code(err), res.body ? 160 : (int)strlen(res.detail),
               res.body ? res.body : res.detail, res.body && res.body_len > 160 ? "..." : "");
    check_result(op, err, &res, known);
    check_replay(seen, nseen, op, req.idempotency_key, b->path, b->body, &res);
    jf_result_deinit(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static line_buf b;
    if (fz.eng == NULL)
        LLVMFuzzerInitialize(NULL, NULL);
    /* The test clock only moves forward, so after an input that moved it
     * the next one starts on a new database (verified first). */
    if (jf_engine_now_ms(fz.eng) > FUZZ_START_MS ||
        (fz.inputs > 0 && fz.inputs % fz.reset_every == 0)) {
        engine_close();
        engine_open();
    }
    fz.inputs++;
    jf_auth auth;
    ids known;
    replay_slot seen[LINES_MAX];
    int nseen = 0, lines = 0;
    memset(&known, 0, sizeof known);
    tenant_new(&auth);
    const char *p = (const char *)data, *end = p + size;
    while (p < end && lines++ < LINES_MAX) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop > p && *p != '#')
            run_line(p, stop, &auth, &known, seen, &nseen, &b);
        p = nl ? nl + 1 : end;
    }
    for (int i = 0; i < nseen; i++) {
        free(seen[i].path);
        free(seen[i].body);
        free(seen[i].answer);
    }
    if (fz.inputs % fz.verify_every == 0)
        verify_or_abort();
    return 0;
}
