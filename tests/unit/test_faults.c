/*
 * Allocation failures and I/O errors (the test plan's T3), as SQLite's malloc
 * and I/O-error tests do them.  Every allocation the library makes (its own
 * and jansson's, through the linker's --wrap of malloc, calloc, realloc and
 * strdup: the library routes jansson's through a hook of its own, which calls
 * malloc; SQLite's, through SQLITE_CONFIG_MALLOC) can be rigged to fail, and
 * so can every read, write, truncation, sync and size query SQLite makes (a
 * VFS registered as the default before the engine's own shim wraps it: a
 * write fails as a full disk or as an I/O error, in turn).  For each
 * operation and each kind of fault the loop fails call 1, then 2, and so on,
 * until the operation runs to its end without reaching the rigged one; once
 * with only that call failing, once with it and every one after it failing
 * until the request returns.  Before each armed call every connection's
 * statement cache is emptied (jf_db_stmts_expire), so that the call prepares
 * its statements again and the failures reach the preparations too (the
 * setup and the snapshots would otherwise have prepared them all); a
 * preparation counts as one allocation (below).
 *
 * After every call: the answer is a success or a system failure (never a
 * crash, a hang, a business refusal or a success without a body), `jifen
 * verify` is clean, the state is all or nothing (the members' points either
 * as before or as after a success), and the same request sent again with no
 * fault is answered: a replay of the stored answer when the first call had
 * been applied, a fresh application when it had not, with the effect of a
 * clean run.  The ASan build adds leaks and bad accesses on the failure paths.
 *
 * The checkpointer's calls are left alone: it retries a failed pass on its
 * own, and its timer would make the count of calls differ from run to run.
 * The idempotency-key filter (src/core/idemfilter.c) is off
 * (JIFEN_IDEM_FILTER=0): whether a call looks its key up would depend on when
 * the filter's build ended, and with it the count of allocations per call,
 * the loops' lengths and which call each index fails (test_birthday_sweep's
 * members then met a birthday of a member a loop year before).  The filter
 * allocates nothing on the writer's path.
 * Every other thread of the engine (the writer, the syncer) and the calling
 * thread count.  The syncer's fdatasync of the WAL is not a VFS call (a
 * failed one stops the server: tests/api/test_io_faults.py).
 */
#include <execinfo.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>

#include "db.h"
#include "jifen/jifen.h"
#include "rigged_alloc.h"
#include "tmpdir.h"

/* ---- the rigged allocator (rigged_alloc.h), and SQLite's ---- */

/* All but the checkpointer's (the file's opening paragraph). */
static bool counted_thread(const char *name)
{
    return strcmp(name, "jifen-ckpt") != 0;
}

/* ---- a statement's preparation counts as one allocation ----
 *
 * Each armed call prepares its statements again (fault_once), and a
 * preparation makes some fifty allocations inside SQLite's parser: counted
 * one by one they made the loops thirteen times longer (test_earn: 79
 * allocations, then 1,016 with its 17 preparations), while every one of them
 * fails the preparation the same way, with SQLITE_NOMEM (which of them
 * fails is SQLite's own tests' business).  So only the first allocation of a
 * preparation the engine asks for (db.c, through the linker's --wrap of
 * sqlite3_prepare_v3) counts; the others fail only once every call fails.
 * FAULT_PREPARE_ALLOCS=all counts them all (the long run, docs/TESTING.md). */
static _Thread_local bool preparing, prepare_counted;
static bool prepare_allocs_all;

int __real_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int len, unsigned flags,
                              sqlite3_stmt **st, const char **tail);
int __wrap_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int len, unsigned flags,
                              sqlite3_stmt **st, const char **tail);

int __wrap_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int len, unsigned flags,
                              sqlite3_stmt **st, const char **tail)
{
    preparing = !prepare_allocs_all;
    prepare_counted = false;
    int rc = __real_sqlite3_prepare_v3(db, sql, len, flags, st, tail);
    preparing = false;
    return rc;
}

/* Whether SQLite's allocation fails now. */
static bool sq_fail_now(void)
{
    if (preparing && prepare_counted)
        return fail_now_uncounted(FAULT_ALLOC);
    prepare_counted = preparing;
    return fail_now();
}

static void *sq_malloc(int n)
{
    return sq_fail_now() ? NULL : __real_malloc((size_t)n);
}

static void sq_free(void *p)
{
    free(p);
}

static void *sq_realloc(void *p, int n)
{
    return sq_fail_now() ? NULL : __real_realloc(p, (size_t)n);
}

static int sq_size(void *p)
{
    return p ? (int)malloc_usable_size(p) : 0;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *unused)
{
    (void)unused;
    return SQLITE_OK;
}

static void sq_shutdown(void *unused)
{
    (void)unused;
}

/* ---- the rigged VFS: the default one, wrapped ---- */

static sqlite3_vfs *real_vfs;

typedef struct io_file {
    sqlite3_file base;
    sqlite3_file *real; /* allocated right after this struct */
} io_file;

#define REAL(f) (((io_file *)(f))->real)

static int io_close(sqlite3_file *f)
{
    return REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
}

static int io_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return fail_now_of(FAULT_IO) ? SQLITE_IOERR_READ
                                 : REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

/* A failed write is a full disk or an I/O error, by turns. */
static int io_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    static atomic_int turn;
    if (fail_now_of(FAULT_IO))
        return atomic_fetch_add(&turn, 1) % 2 ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int io_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return fail_now_of(FAULT_IO) ? SQLITE_IOERR_TRUNCATE
                                 : REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int io_sync(sqlite3_file *f, int flags)
{
    return fail_now_of(FAULT_IO) ? SQLITE_IOERR_FSYNC : REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int io_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return fail_now_of(FAULT_IO) ? SQLITE_IOERR_FSTAT : REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int io_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}

static int io_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}

static int io_check_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int io_fcntl(sqlite3_file *f, int op, void *arg)
{
    int rc = REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
    if (rc == SQLITE_OK && op == SQLITE_FCNTL_VFSNAME) {
        char **name = arg;
        char *wrapped = sqlite3_mprintf("rigged/%z", *name);
        *name = wrapped;
    }
    return rc;
}

static int io_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int io_device(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int io_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}

static int io_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void io_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int io_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int io_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int io_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods io_methods = {
    .iVersion = 3,
    .xClose = io_close,
    .xRead = io_read,
    .xWrite = io_write,
    .xTruncate = io_truncate,
    .xSync = io_sync,
    .xFileSize = io_file_size,
    .xLock = io_lock,
    .xUnlock = io_unlock,
    .xCheckReservedLock = io_check_lock,
    .xFileControl = io_fcntl,
    .xSectorSize = io_sector,
    .xDeviceCharacteristics = io_device,
    .xShmMap = io_shm_map,
    .xShmLock = io_shm_lock,
    .xShmBarrier = io_shm_barrier,
    .xShmUnmap = io_shm_unmap,
    .xFetch = io_fetch,
    .xUnfetch = io_unfetch,
};

static int io_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                   int *out_flags)
{
    (void)vfs;
    io_file *p = (io_file *)f;
    p->real = (sqlite3_file *)(p + 1);
    int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
    f->pMethods = rc == SQLITE_OK ? &io_methods : NULL;
    return rc;
}

/* Registers the rigged VFS as the default, wrapping the one that was. */
static void io_vfs_install(void)
{
    static sqlite3_vfs vfs;
    real_vfs = sqlite3_vfs_find(NULL);
    vfs = *real_vfs;
    vfs.zName = "rigged";
    vfs.szOsFile = (int)sizeof(io_file) + real_vfs->szOsFile;
    vfs.xOpen = io_open;
    vfs.pAppData = NULL;
    if (sqlite3_vfs_register(&vfs, 1) != SQLITE_OK) {
        fprintf(stderr, "test_faults: cannot register the rigged VFS\n");
        exit(1);
    }
}

/* Installs the rigged allocator in SQLite (before it initializes). */
static void allocators_install(void)
{
    rig_prepare();
    rig_thread_takes_part = counted_thread;
    setenv("JIFEN_IDEM_FILTER", "0", 1); /* the file's opening paragraph */
    const char *prep = getenv("FAULT_PREPARE_ALLOCS");
    prepare_allocs_all = prep && strcmp(prep, "all") == 0;
    static const sqlite3_mem_methods methods = {sq_malloc,  sq_free, sq_realloc,  sq_size,
                                                sq_roundup, sq_init, sq_shutdown, NULL};
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) != SQLITE_OK) {
        fprintf(stderr, "test_faults: SQLite initialized before its allocator was set\n");
        exit(1);
    }
}

/* ---- a hang is a failure with a name ---- */

static char current[160];

/* fail_msg, after the stack of the allocation that was made to fail. */
#define fault_fail(...)                                                                            \
    do {                                                                                           \
        rig_print_where();                                                                         \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_faults: no answer within 60 s: ";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    w = write(2, current, strlen(current));
    w = write(2, "\n", 1);
    (void)w;
    abort();
}

/* ---- the engine ---- */

typedef struct fixture {
    tmpdir_engine te;
    char a[64], b[64]; /* two funded members */
    int keys;
    int day;              /* the test clock's day, counted from 2030-01-01 */
    int64_t lots_seen[2]; /* the members' lots in the last snapshot (lots_count) */
    int made;             /* rules or campaigns the case made in its tenant (tenant_room) */
    bool ready;           /* what a case's prep sets up once is there */
    char code[16];        /* member a's referral code, once a case needs it */
    char made_id[64];     /* the rule or campaign a case updates */
    char born[64];        /* test_birthday_sweep's member of the last call */
    jf_auth other;        /* an admin of another tenant (overdue_hold) */
} fixture;

#define FUND_POINTS 100000000
#define BODY_MAX 1024
#define VERIFY_EVERY 8 /* calls between two runs of jf_verify */

static jf_err call(fixture *f, jf_op op, const char *path_id, const char *key, const char *body,
                   jf_result *res)
{
    jf_request req = {.op = op,
                      .auth = &f->te.auth,
                      .path_id = path_id,
                      .body = body,
                      .body_len = body ? strlen(body) : 0,
                      .idempotency_key = key};
    memset(res, 0, sizeof(*res));
    return jf_call_sync(f->te.eng, &req, res);
}

/* Calls with no fault armed and wants success; returns the parsed body. */
static json_t *call_ok(fixture *f, jf_op op, const char *path_id, const char *body)
{
    char key[32];
    snprintf(key, sizeof(key), "setup-%d", ++f->keys);
    jf_result res;
    jf_err err = call(f, op, path_id, jf_op_is_write(op) ? key : NULL, body, &res);
    if (err != JF_OK)
        fail_msg("setup %s %s: %s (%s)", jf_op_name(op), body ? body : "", jf_err_code(err),
                 res.detail);
    json_t *out = json_loads(res.body, 0, NULL);
    jf_result_deinit(&res);
    assert_non_null(out);
    return out;
}

/* Copies o[k1] (or o[k1][k2]), a string, to out and frees o. */
static void id_of(json_t *o, const char *k1, const char *k2, char *out, size_t len)
{
    json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    assert_non_null(json_string_value(v));
    snprintf(out, len, "%s", json_string_value(v));
    json_decref(o);
}

static void new_member(fixture *f, const char *ext, char *id)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"external_id\":\"%s\"}", ext);
    id_of(call_ok(f, JF_OP_MEMBER_CREATE, NULL, body), "id", NULL, id, 64);
}

/* Members a and b of the fixture's tenant, new and funded. */
static void members_fund(fixture *f)
{
    new_member(f, "a", f->a);
    new_member(f, "b", f->b);
    char body[64];
    snprintf(body, sizeof(body), "{\"points\":%d}", FUND_POINTS);
    json_decref(call_ok(f, JF_OP_EARN, f->a, body));
    json_decref(call_ok(f, JF_OP_EARN, f->b, body));
    memset(f->lots_seen, 0, sizeof(f->lots_seen));
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_true(tmpdir_engine_open(&f->te, "faults"));
    json_decref(call_ok(f, JF_OP_CLOCK_SET, NULL, "{\"now\":\"2030-01-01T00:00:00Z\"}"));
    members_fund(f);
    *state = f;
    return 0;
}

/* Room for the call and its retry to create two more of something a tenant
 * has at most max of (rules, campaigns, archived ones too): when there is
 * none, the case goes on in a new tenant with new members a and b.  Only the
 * long run (FAULT_PREPARE_ALLOCS=all) makes that many calls. */
static void tenant_room(fixture *f, int max)
{
    if (f->made + 2 > max) {
        char name[32];
        snprintf(name, sizeof(name), "t%d", ++f->keys);
        assert_true(tmpdir_tenant(f->te.eng, name, &f->te.auth, NULL, 0));
        members_fund(f);
        f->made = 0;
    }
    f->made += 2;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_true(tmpdir_engine_close(&f->te));
    free(f);
    return 0;
}

/* ---- what a fault may change ---- */

/* The members' points and their numbers of transactions, and whether the
 * case's external id exists as a member. */
typedef struct snap {
    int64_t v[2][4];
    bool exists;
    int64_t ext_points; /* the external id's points available, when it exists */
} snap;

/* How many lots member id has from offset `from` on, page by page. */
static int64_t lots_from(fixture *f, const char *id, int64_t from)
{
    int64_t n = 0;
    char cursor[256] = "";
    if (from > 0)
        snprintf(cursor, sizeof(cursor), "c%" PRId64, from);
    do {
        jf_param params[2] = {{"limit", "1000"}, {"cursor", cursor}};
        jf_request req = {.op = JF_OP_MEMBER_LOTS,
                          .auth = &f->te.auth,
                          .path_id = id,
                          .params = params,
                          .param_count = cursor[0] ? 2 : 1};
        jf_result res;
        assert_int_equal(jf_call_sync(f->te.eng, &req, &res), JF_OK);
        json_t *o = json_loads(res.body, 0, NULL);
        jf_result_deinit(&res);
        n += (int64_t)json_array_size(json_object_get(o, "data"));
        const char *next = json_string_value(json_object_get(o, "next_cursor"));
        snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
        json_decref(o);
    } while (cursor[0]);
    return n;
}

/* How many lots member id has, given that a snapshot saw `seen`.  Lots are
 * never deleted, so the count starts from the last lot seen; a loop that
 * makes thousands of calls (one lot each) would otherwise list them all
 * three times per call, which took most of its time.  When not even that
 * lot is there the member has fewer than seen, and all are counted. */
static int64_t lots_count(fixture *f, const char *id, int64_t seen)
{
    int64_t from = seen > 0 ? seen - 1 : 0;
    int64_t rest = lots_from(f, id, from);
    return rest > 0 || from == 0 ? from + rest : lots_from(f, id, 0);
}

static void snap_take(fixture *f, const char *ext, snap *s)
{
    memset(s, 0, sizeof(*s));
    const char *ids[2] = {f->a, f->b};
    for (int i = 0; i < 2; i++) {
        json_t *m = call_ok(f, JF_OP_MEMBER_GET, ids[i], NULL);
        json_t *p = json_object_get(m, "points");
        s->v[i][0] = json_integer_value(json_object_get(p, "available"));
        s->v[i][1] = json_integer_value(json_object_get(p, "pending"));
        s->v[i][2] = json_integer_value(json_object_get(p, "held"));
        json_decref(m);
        s->v[i][3] = f->lots_seen[i] = lots_count(f, ids[i], f->lots_seen[i]);
    }
    if (ext) {
        jf_result res;
        s->exists = call(f, JF_OP_MEMBER_GET_EXTERNAL, ext, NULL, NULL, &res) == JF_OK;
        json_t *m = s->exists ? json_loads(res.body, 0, NULL) : NULL;
        s->ext_points =
            json_integer_value(json_object_get(json_object_get(m, "points"), "available"));
        json_decref(m);
        jf_result_deinit(&res);
    }
}

static bool snap_equal(const snap *x, const snap *y)
{
    return memcmp(x->v, y->v, sizeof(x->v)) == 0 && x->exists == y->exists &&
           x->ext_points == y->ext_points;
}

static void assert_verified(fixture *f)
{
    char *json = NULL;
    int64_t violations = -1;
    assert_int_equal(jf_verify(f->te.eng, &json, &violations), JF_OK);
    if (violations != 0)
        fault_fail("%s (or one of the %d calls before it): verify: %s", current, VERIFY_EVERY - 1,
                   json);
    free(json);
}

/* ---- the loop ---- */

/* One operation under test.  prep runs with no fault armed before each
 * call: it may create what the call acts on (a hold to capture) and fills
 * in the path id, the body and the external id the snapshot looks for. */
typedef struct fault_case {
    const char *name;
    jf_op op;
    void (*prep)(fixture *f, int n, char *path_id, char *body, char *ext);
    bool parts;       /* a batch: each operation stands alone, with its own key */
    char on;          /* without prep: the call acts on member 'a' or 'b' ... */
    const char *body; /* ... with this body, in which %s stands for member b */
    /* Text every successful answer contains: a part of the stored
     * transaction that a failed allocation must not leave out (a
     * transaction's metadata was once stored as null when its dump failed). */
    const char *expect;
    /* A dry run: it takes no key and must leave the state as it was. */
    bool dry_run;
} fault_case;

static bool err_is_system(jf_err err)
{
    return err == JF_ERR_NOMEM || err == JF_ERR_IO || err == JF_ERR_INTERNAL;
}

/* The stored answer and a fresh one are the same request's: a retry of a
 * call that failed is applied now (not replayed) exactly when the failed
 * call left nothing behind. */
static void check_retry(fixture *f, const fault_case *c, const char *path_id, const char *body,
                        const char *key, jf_err err, const jf_result *first, bool applied)
{
    jf_result again;
    jf_err err2 = call(f, c->op, path_id, key, body, &again);
    if (err2 != JF_OK)
        fault_fail("%s: the retry failed: %s (%s)", current, jf_err_code(err2), again.detail);
    if (c->parts && strstr(again.body, "\"failed\":0") == NULL)
        fault_fail("%s: an operation of the retried batch failed: %s", current, again.body);
    if (key && err == JF_OK) {
        assert_true(again.replayed);
        assert_int_equal(again.body_len, first->body_len);
        assert_memory_equal(again.body, first->body, first->body_len);
    } else if (key && again.replayed != applied) {
        fault_fail("%s: the failed call was %sapplied, but the retry was %sreplayed", current,
                   applied ? "" : "not ", again.replayed ? "" : "not ");
    }
    jf_result_deinit(&again);
}

static const char *const kind_names[] = {"allocation", "I/O call"};

/* Runs case c with call n of kind k rigged; returns false once the call got
 * through without reaching it. */
static bool fault_once(fixture *f, const fault_case *c, fault_kind k, long n, bool all_after,
                       snap *delta_ref)
{
    char path_id[64] = "", body[BODY_MAX] = "", ext[64] = "", key[48];
    if (c->prep) {
        c->prep(f, (int)n, path_id, body, ext);
    } else {
        snprintf(path_id, sizeof(path_id), "%s", c->on == 'a' ? f->a : f->b);
        if (c->body)
            snprintf(body, sizeof(body), c->body, f->b);
    }
    snprintf(key, sizeof(key), "%s-%d%s-%ld", c->name, (int)k, all_after ? "all" : "one", n);
    snprintf(current, sizeof(current), "%s, %s %ld failing%s", c->name, kind_names[k], n,
             all_after ? " and every one after it" : "");
    const char *idem = jf_op_is_write(c->op) && !c->parts && !c->dry_run ? key : NULL;
    snap s0, s1, s2;
    snap_take(f, ext[0] ? ext : NULL, &s0);
    jf_result res;
    alarm(60);
    /* Every statement the call uses is prepared inside it, where the rigged
     * call can fail the preparation: the setup, the snapshots and the last
     * call's retry have prepared them all, and the connections cache them. */
    jf_db_stmts_expire();
    arm(k, n, all_after);
    jf_err err = call(f, c->op, path_id[0] ? path_id : NULL, idem, body[0] ? body : NULL, &res);
    long got = disarm();
    alarm(0);
    if (err != JF_OK && !err_is_system(err))
        fault_fail("%s: answered %s (%s)", current, jf_err_code(err), res.detail);
    if (got == 0 && err != JF_OK)
        fault_fail("%s: no fault reached, yet answered %s", current, jf_err_code(err));
    if ((err == JF_OK) != (res.body != NULL))
        fault_fail("%s: answered %s with%s a body", current, jf_err_code(err),
                   res.body ? "" : "out");
    if (err == JF_OK && c->expect && strstr(res.body, c->expect) == NULL)
        fault_fail("%s: answered success without %s: %s", current, c->expect, res.body);
    /* A violation stays in the database: checking every few calls (and at
     * the loop's end) finds each, for a fraction of the time. */
    if (n % VERIFY_EVERY == 0)
        assert_verified(f);
    snap_take(f, ext[0] ? ext : NULL, &s1);
    check_retry(f, c, path_id[0] ? path_id : NULL, body[0] ? body : NULL, idem, err, &res,
                !snap_equal(&s0, &s1));
    jf_result_deinit(&res);
    snap_take(f, ext[0] ? ext : NULL, &s2);
    if (c->dry_run && !snap_equal(&s1, &s0))
        fault_fail("%s: the dry run changed the state", current);
    /* All or nothing: before the retry the state is the old one or the new. */
    if (!c->parts && !snap_equal(&s1, &s0) && !snap_equal(&s1, &s2))
        fault_fail("%s: a part of the call stayed", current);
    if (err == JF_OK && !c->parts && !snap_equal(&s1, &s2))
        fault_fail("%s: the replay changed the state", current);
    /* Every application moves the points the same way. */
    snap d = {.exists = s2.exists != s0.exists, .ext_points = s2.ext_points - s0.ext_points};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            d.v[i][j] = s2.v[i][j] - s0.v[i][j];
    if (n == 1)
        *delta_ref = d;
    else if (!snap_equal(&d, delta_ref)) {
        for (int i = 0; i < 2; i++)
            fprintf(stderr,
                    "member %c: points and lots %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                    " moved by %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                    ", the first run's by %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n",
                    "ab"[i], s0.v[i][0], s0.v[i][1], s0.v[i][2], s0.v[i][3], d.v[i][0], d.v[i][1],
                    d.v[i][2], d.v[i][3], delta_ref->v[i][0], delta_ref->v[i][1],
                    delta_ref->v[i][2], delta_ref->v[i][3]);
        fprintf(stderr,
                "the case's member: points moved by %" PRId64 ", the first run's by %" PRId64 "\n",
                d.ext_points, delta_ref->ext_points);
        fault_fail("%s: the call's effect differs from its first run's", current);
    }
    return got > 0;
}

/* Runs once(f, arg, kind, n, all_after) for n = 1, 2, ... until it no
 * longer reaches the rigged call, for allocations then I/O calls, each alone
 * and with every one after it. */
static void fault_loop_of(fixture *f, const char *name,
                          bool (*once)(fixture *f, void *arg, fault_kind k, long n, bool all_after),
                          void *arg)
{
    for (int k = FAULT_ALLOC; k <= FAULT_IO; k++) {
        for (int mode = 0; mode < 2; mode++) {
            long n = 1;
            while (once(f, arg, (fault_kind)k, n, mode == 1))
                if (++n > 20000)
                    fault_fail("%s: still reaching faults after 20000 %ss", name, kind_names[k]);
            assert_verified(f);
#ifdef __SANITIZE_ADDRESS__
            /* Under ASan, which of the loops leaked (the report has the stack). */
            if (__lsan_do_recoverable_leak_check())
                fail_msg("%s: memory leaked with %ss failing", name, kind_names[k]);
#endif
            printf("%s: %ld %ss rigged in turn (%s)\n", name, n - 1, kind_names[k],
                   mode ? "each and every one after it" : "each alone");
        }
    }
}

/* A case's loop: fault_once, with the effect of each mode's first call as
 * the reference of the calls after it. */
typedef struct case_loop {
    const fault_case *c;
    snap delta;
} case_loop;

static bool case_once(fixture *f, void *arg, fault_kind k, long n, bool all_after)
{
    case_loop *l = arg;
    return fault_once(f, l->c, k, n, all_after, &l->delta);
}

static void fault_loop(fixture *f, const fault_case *c)
{
    case_loop l = {.c = c};
    fault_loop_of(f, c->name, case_once, &l);
}

/* ---- the operations ---- */

static void prep_member_create(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    snprintf(ext, 64, "new-%d-%d", n, ++f->keys);
    snprintf(body, BODY_MAX, "{\"external_id\":\"%s\",\"name\":\"N\",\"tags\":[\"x\"]}", ext);
}

static void prep_earn_order(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    snprintf(path_id, 64, "%s", f->a);
    snprintf(body, BODY_MAX,
             "{\"order\":{\"id\":\"o-%d-%d\",\"amount\":12345,\"currency\":\"CNY\","
             "\"lines\":[{\"sku\":\"s1\",\"category\":\"c\",\"amount\":12345,\"quantity\":1}]}}",
             n, ++f->keys);
}

/* A new hold of 40 on member a: its id goes to path_id. */
static void new_hold(fixture *f, char *path_id)
{
    id_of(call_ok(f, JF_OP_HOLD, f->a, "{\"points\":40,\"ttl_seconds\":600}"), "hold", "id",
          path_id, 64);
}

static void prep_capture(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)ext;
    new_hold(f, path_id);
    snprintf(body, BODY_MAX, "{\"points\":25}");
}

static void prep_void(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)ext;
    new_hold(f, path_id);
    snprintf(body, BODY_MAX, "{}");
}

static void prep_reverse(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)ext;
    id_of(call_ok(f, JF_OP_REDEEM, f->a, "{\"points\":20}"), "transaction", "id", path_id, 64);
    snprintf(body, BODY_MAX, "{\"points\":15}");
}

static void prep_batch(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    (void)ext;
    snprintf(
        body, BODY_MAX,
        "{\"operations\":["
        "{\"op\":\"earn\",\"id\":\"%s\",\"idempotency_key\":\"b1-%d-%d\",\"body\":{\"points\":9}},"
        "{\"op\":\"redeem\",\"id\":\"%s\",\"idempotency_key\":\"b2-%d-%d\",\"body\":{\"points\":4}}"
        ","
        "{\"op\":\"transfer\",\"id\":\"%s\",\"idempotency_key\":\"b3-%d-%d\","
        "\"body\":{\"to_member_id\":\"%s\",\"points\":3}}]}",
        f->a, n, f->keys + 1, f->b, n, f->keys + 2, f->b, n, f->keys + 3, f->a);
    f->keys += 3;
}

static void prep_member_update(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    snprintf(path_id, 64, "%s", f->b);
    snprintf(body, BODY_MAX, "{\"name\":\"B %d-%d\",\"tags\":[\"t%d\"]}", n, ++f->keys, n);
}

/* Sets the test clock to day f->day (counted from 2030-01-01) at hour h. */
static void clock_at(fixture *f, int h)
{
    time_t t = (time_t)1893456000 + (time_t)f->day * 86400 + h * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    char body[64];
    strftime(body, sizeof(body), "{\"now\":\"%Y-%m-%dT%H:%M:%SZ\"}", &tm);
    json_decref(call_ok(f, JF_OP_CLOCK_SET, NULL, body));
}

static void prep_check_in(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)ext;
    f->day++;
    clock_at(f, 10);
    snprintf(path_id, 64, "%s", f->a);
    snprintf(body, BODY_MAX, "{}");
}

/* Member a earns an order of 10,000 fen with a new id (prefix, n and a
 * key count) in path_id; lines is "" or the order's "lines" member with its
 * leading comma. */
static void order_earned(fixture *f, const char *prefix, int n, char *path_id, const char *lines)
{
    char earn[320];
    snprintf(path_id, 64, "%s-%d-%d", prefix, n, ++f->keys);
    snprintf(earn, sizeof(earn),
             "{\"order\":{\"id\":\"%s\",\"amount\":10000,\"currency\":\"CNY\"%s}}", path_id, lines);
    json_decref(call_ok(f, JF_OP_EARN, f->a, earn));
}

static void prep_refund(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    order_earned(f, "r", n, path_id, "");
    /* The whole order: its lot closes, and member a's open lots (which a
     * clawback sorts) stay as many from call to call. */
    snprintf(body, BODY_MAX, "{\"amount\":10000}");
}

/* A lot of 100 on member a that is past its expiry: the run expires it. */
static void prep_expiry(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)path_id;
    (void)ext;
    f->day++;
    clock_at(f, 0);
    time_t t = (time_t)1893456000 + (time_t)f->day * 86400 + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    char earn[96];
    strftime(earn, sizeof(earn), "{\"points\":100,\"expires_at\":\"%Y-%m-%dT%H:%M:%SZ\"}", &tm);
    json_decref(call_ok(f, JF_OP_EARN, f->a, earn));
    clock_at(f, 2);
    snprintf(body, BODY_MAX, "{}");
}

/* Archives every active rule: a trigger holds at most 64 of them. */
static void rules_archive_all(fixture *f)
{
    jf_param params[] = {{"status", "active"}, {"limit", "1000"}};
    jf_request req = {
        .op = JF_OP_RULE_LIST, .auth = &f->te.auth, .params = params, .param_count = 2};
    jf_result res;
    assert_int_equal(jf_call_sync(f->te.eng, &req, &res), JF_OK);
    json_t *list = json_loads(res.body, 0, NULL);
    jf_result_deinit(&res);
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(list, "data"), i, r) json_decref(
        call_ok(f, JF_OP_RULE_ARCHIVE, json_string_value(json_object_get(r, "id")), NULL));
    json_decref(list);
}

static void prep_rule_create(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    (void)ext;
    tenant_room(f, JF_RULES_MAX);
    if (n % 16 == 0)
        rules_archive_all(f);
    snprintf(body, BODY_MAX,
             "{\"name\":\"r %d-%d\",\"trigger\":\"event\",\"event\":\"e%d\","
             "\"effect\":{\"type\":\"fixed\",\"points\":5}}",
             n, f->keys + 1, f->keys + 1);
    f->keys++;
}

/* Custom events on member a, which a rule pays 5 points for. */
static void prep_member_event(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)ext;
    if (!f->ready) {
        json_decref(call_ok(f, JF_OP_RULE_CREATE, NULL,
                            "{\"name\":\"survey\",\"trigger\":\"event\",\"event\":"
                            "\"survey_done\",\"effect\":{\"type\":\"fixed\",\"points\":5}}"));
        f->ready = true;
    }
    snprintf(path_id, 64, "%s", f->a);
    snprintf(body, BODY_MAX, "{\"name\":\"survey_done\"}");
}

static void prep_campaign_create(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    (void)ext;
    tenant_room(f, JF_CAMPAIGNS_MAX);
    snprintf(body, BODY_MAX,
             "{\"name\":\"c %d-%d\",\"starts_at\":\"2030-02-01T00:00:00Z\","
             "\"ends_at\":\"2030-03-01T00:00:00Z\"}",
             n, ++f->keys);
}

static void prep_key_create(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    (void)ext;
    snprintf(body, BODY_MAX, "{\"name\":\"till %d-%d\",\"role\":\"pos\"}", n, ++f->keys);
}

/* A new key, revoked by the call. */
static void prep_key_revoke(fixture *f, int n, char *path_id, char *body, char *ext)
{
    char create[BODY_MAX];
    prep_key_create(f, n, path_id, create, ext);
    id_of(call_ok(f, JF_OP_KEY_CREATE, NULL, create), "id", NULL, path_id, 64);
    snprintf(body, BODY_MAX, "{}");
}

#define TIERS                                                                                      \
    "{\"basis\":\"growth\",\"window\":{\"type\":\"lifetime\"},\"tiers\":["                         \
    "{\"code\":\"silver\",\"name\":\"Silver\",\"threshold\":0},"                                   \
    "{\"code\":\"gold\",\"name\":\"Gold\",\"threshold\":1000}]}"

static void prep_tiers_put(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)f;
    (void)n;
    (void)path_id;
    (void)ext;
    snprintf(body, BODY_MAX, "%s", TIERS);
}

/* A new member set to gold (the configuration put first): the reply carries
 * the member's tier history, up to JF_TIER_HISTORY_MAX changes of 30-odd
 * allocations each, which a member changed on every call would fill. */
/* The tier configuration, put once per case. */
static void tiers_once(fixture *f)
{
    if (!f->ready) {
        json_decref(call_ok(f, JF_OP_TIER_CONFIG_PUT, NULL, TIERS));
        f->ready = true;
    }
}

static void prep_tier_set(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    tiers_once(f);
    char member_ext[32];
    snprintf(member_ext, sizeof(member_ext), "tier-%d-%d", n, ++f->keys);
    new_member(f, member_ext, path_id);
    snprintf(body, BODY_MAX, "{\"tier\":\"gold\",\"reason\":\"service\"}");
}

/* An overdue hold of 40 on member a, made two hours before with a ttl of
 * 600 s: the next write for member a voids it first (ledger.c,
 * jf_member_writable), and so does the sweep.  Setting the clock voids the
 * overdue holds of the caller's tenant, so the second move is made by an
 * admin of another tenant. */
static void overdue_hold(fixture *f)
{
    char hold[64];
    f->day++;
    clock_at(f, 0);
    new_hold(f, hold);
    if (f->other.tenant == 0)
        assert_true(tmpdir_tenant(f->te.eng, "other", &f->other, NULL, 0));
    jf_auth own = f->te.auth;
    f->te.auth = f->other;
    clock_at(f, 2);
    f->te.auth = own;
}

static void prep_earn_voids_hold(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)ext;
    overdue_hold(f);
    snprintf(path_id, 64, "%s", f->a);
    snprintf(body, BODY_MAX, "{\"points\":70}");
}

static void prep_holds_sweep(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)n;
    (void)path_id;
    (void)ext;
    overdue_hold(f);
    snprintf(body, BODY_MAX, "{}");
}

/* Makes what body describes with op (once per case) and keeps its id in
 * f->made_id. */
static void made_once(fixture *f, jf_op op, const char *body)
{
    if (!f->ready) {
        id_of(call_ok(f, op, NULL, body), "id", NULL, f->made_id, sizeof(f->made_id));
        f->ready = true;
    }
}

/* A live rule, made once per case. */
static void rule_once(fixture *f, const char *rule)
{
    made_once(f, JF_OP_RULE_CREATE, rule);
}

/* A check-in that pays: 5 points and, with a cycle of one day, the day-1
 * streak bonus of 20 on every check-in, so each call earns the same. */
static void prep_check_in_pays(fixture *f, int n, char *path_id, char *body, char *ext)
{
    rule_once(f, "{\"name\":\"ci\",\"trigger\":\"check_in\",\"effect\":{\"type\":\"check_in\","
                 "\"points\":5,\"cycle_days\":1,\"streak_bonus\":[{\"day\":1,\"points\":20}]}}");
    prep_check_in(f, n, path_id, body, ext);
}

/* Member a's referral code, read once. */
static void referral_code(fixture *f)
{
    if (f->code[0] == '\0')
        id_of(call_ok(f, JF_OP_MEMBER_GET, f->a, NULL), "referral_code", NULL, f->code,
              sizeof(f->code));
}

/* A new member referred by a: the signup rule pays a 100 and it 50. */
static void prep_referral_signup(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    rule_once(f, "{\"name\":\"invite\",\"trigger\":\"referral\",\"effect\":{\"type\":\"referral\","
                 "\"on\":\"signup\",\"referrer_points\":100,\"referee_points\":50}}");
    referral_code(f);
    snprintf(ext, 64, "ref-%d-%d", n, ++f->keys);
    snprintf(body, BODY_MAX, "{\"external_id\":\"%s\",\"referral_code\":\"%s\"}", ext, f->code);
}

/* The first order of a new member referred by a: the rule pays a 200. */
static void prep_referral_purchase(fixture *f, int n, char *path_id, char *body, char *ext)
{
    rule_once(f, "{\"name\":\"first\",\"trigger\":\"referral\",\"effect\":{\"type\":\"referral\","
                 "\"on\":\"first_purchase\",\"referrer_points\":200}}");
    referral_code(f);
    snprintf(ext, 64, "fp-%d-%d", n, ++f->keys);
    char member[160];
    snprintf(member, sizeof(member), "{\"external_id\":\"%s\",\"referral_code\":\"%s\"}", ext,
             f->code);
    id_of(call_ok(f, JF_OP_MEMBER_CREATE, NULL, member), "id", NULL, path_id, 64);
    snprintf(body, BODY_MAX,
             "{\"order\":{\"id\":\"fp-%d-%d\",\"amount\":5000,\"currency\":\"CNY\"}}", n,
             ++f->keys);
}

/* A member created two days before its birthday, then the day comes: the
 * daily job pays it the birthday rule's 10 points.  The member of the call
 * before is frozen first: the clock moves three days a call, so a loop of
 * more than 122 calls would meet its birthday again a year on, and pay it
 * as well. */
static void prep_birthday_sweep(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    rule_once(f, "{\"name\":\"bd\",\"trigger\":\"birthday\","
                 "\"effect\":{\"type\":\"fixed\",\"points\":10}}");
    if (f->born[0])
        json_decref(call_ok(f, JF_OP_MEMBER_UPDATE, f->born, "{\"status\":\"frozen\"}"));
    f->day++;
    clock_at(f, 2);
    time_t t = (time_t)1893456000 + (time_t)(f->day + 2) * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    char birthday[16], member[160];
    strftime(birthday, sizeof(birthday), "1992-%m-%d", &tm);
    snprintf(ext, 64, "bd-%d-%d", n, ++f->keys);
    snprintf(member, sizeof(member), "{\"external_id\":\"%s\",\"birthday\":\"%s\"}", ext, birthday);
    id_of(call_ok(f, JF_OP_MEMBER_CREATE, NULL, member), "id", NULL, f->born, sizeof f->born);
    f->day += 2;
    clock_at(f, 10);
    snprintf(body, BODY_MAX, "{}");
}

/* The two lines of prep_refund_lines' order, and of its refund. */
#define REFUND_LINES                                                                               \
    "\"lines\":[{\"sku\":\"tea\",\"amount\":6000,\"quantity\":2},"                                 \
    "{\"sku\":\"cake\",\"amount\":4000,\"quantity\":1}]"

/* An order of two lines, then a refund of both lines by SKU: the whole
 * order, so that its lot closes and member a's open lots, which a clawback
 * sorts, stay as many from call to call (as in prep_refund). */
static void prep_refund_lines(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    order_earned(f, "rl", n, path_id, "," REFUND_LINES);
    snprintf(body, BODY_MAX, "{" REFUND_LINES "}");
}

static void prep_program_update(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)f;
    (void)path_id;
    (void)ext;
    snprintf(body, BODY_MAX,
             "{\"earn_rate\":{\"points\":1,\"per_amount\":%d},\"pending_days\":0,"
             "\"expiry\":{\"policy\":\"days_after_earn\",\"days\":%d}}",
             100 + n % 2, 365 + n % 3);
}

static void prep_rule_update(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    /* A new rule every 16 updates: a rule's answer lists its versions (the
     * newest JF_RULE_VERSIONS_SHOWN), so one rule updated on every call
     * would cost more on every call. */
    if (n % 16 == 0 && f->ready) {
        json_decref(call_ok(f, JF_OP_RULE_ARCHIVE, f->made_id, NULL));
        tenant_room(f, JF_RULES_MAX);
        f->ready = false;
    }
    rule_once(f, "{\"name\":\"up\",\"trigger\":\"event\",\"event\":\"upd\","
                 "\"effect\":{\"type\":\"fixed\",\"points\":5}}");
    snprintf(path_id, 64, "%s", f->made_id);
    snprintf(body, BODY_MAX,
             "{\"name\":\"up %d-%d\",\"trigger\":\"event\",\"event\":\"upd\","
             "\"effect\":{\"type\":\"fixed\",\"points\":%d}}",
             n, ++f->keys, 1 + n % 9);
}

static void prep_campaign_update(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)ext;
    made_once(f, JF_OP_CAMPAIGN_CREATE,
              "{\"name\":\"c\",\"starts_at\":\"2030-02-01T00:00:00Z\","
              "\"ends_at\":\"2030-03-01T00:00:00Z\"}");
    snprintf(path_id, 64, "%s", f->made_id);
    snprintf(body, BODY_MAX, "{\"name\":\"c %d-%d\",\"budget\":{\"max_points\":%d}}", n, ++f->keys,
             1000 + n);
}

/* An import of a new member (external id ext) as gold, reached at since
 * (none: now). */
static void tier_import_body(fixture *f, int n, char *ext, const char *since, char *body)
{
    tiers_once(f);
    char member[96], id[64];
    snprintf(ext, 64, "imp-%d-%d", n, ++f->keys);
    snprintf(member, sizeof(member), "{\"external_id\":\"%s\"}", ext);
    id_of(call_ok(f, JF_OP_MEMBER_CREATE, NULL, member), "id", NULL, id, sizeof(id));
    snprintf(body, BODY_MAX, "{\"members\":[{\"member_id\":\"%s\",\"tier\":\"gold\"%s%s%s}]}", id,
             since ? ",\"since\":\"" : "", since ? since : "", since ? "\"" : "");
}

static void prep_tier_import(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    tier_import_body(f, n, ext, NULL, body);
}

/* A new member imported as gold a year and a half ago without the growth to
 * keep it: the evaluation, due since its anniversary, takes it down. */
static void prep_tier_evaluate(fixture *f, int n, char *path_id, char *body, char *ext)
{
    (void)path_id;
    tier_import_body(f, n, ext, "2028-06-01T00:00:00Z", body);
    json_decref(call_ok(f, JF_OP_TIER_IMPORT, NULL, body));
    snprintf(body, BODY_MAX, "{}");
}

#define CASE(fn_name, op_enum, prep_fn, parts)                                                     \
    static void fn_name(void **state)                                                              \
    {                                                                                              \
        static const fault_case c = {#fn_name, op_enum, prep_fn, parts, 0, NULL, NULL, false};     \
        fault_loop(*state, &c);                                                                    \
    }

/* A case whose every successful answer contains `expect`. */
#define CASE_KEEPS(fn_name, op_enum, prep_fn, expect)                                              \
    static void fn_name(void **state)                                                              \
    {                                                                                              \
        static const fault_case c = {#fn_name, op_enum, prep_fn, false, 0, NULL, expect, false};   \
        fault_loop(*state, &c);                                                                    \
    }

/* An operation on member `on` with a fixed body. */
#define SIMPLE(fn_name, op_enum, on, body)                                                         \
    static void fn_name(void **state)                                                              \
    {                                                                                              \
        static const fault_case c = {#fn_name, op_enum, NULL, false, on, body, NULL, false};       \
        fault_loop(*state, &c);                                                                    \
    }

/* The same, and every successful answer contains `expect`. */
#define SIMPLE_KEEPS(fn_name, op_enum, on, body, expect)                                           \
    static void fn_name(void **state)                                                              \
    {                                                                                              \
        static const fault_case c = {#fn_name, op_enum, NULL, false, on, body, expect, false};     \
        fault_loop(*state, &c);                                                                    \
    }

CASE(test_member_create, JF_OP_MEMBER_CREATE, prep_member_create, false)
SIMPLE(test_earn, JF_OP_EARN, 'a', "{\"points\":70}")
SIMPLE_KEEPS(test_earn_metadata, JF_OP_EARN, 'a',
             "{\"points\":10,\"channel\":\"pos\",\"metadata\":{\"till\":\"t-7\"}}",
             "\"metadata\":{\"till\":\"t-7\"}")
CASE(test_earn_order, JF_OP_EARN, prep_earn_order, false)

/* A dry run runs in a savepoint that the writer rolls back: the savepoint's
 * statements fail too, and nothing may stay. */
static void test_earn_dry_run(void **state)
{
    static const fault_case c = {.name = "test_earn_dry_run",
                                 .op = JF_OP_EARN,
                                 .on = 'a',
                                 .body = "{\"points\":70,\"dry_run\":true}",
                                 .expect = "\"dry_run\":true",
                                 .dry_run = true};
    fault_loop(*state, &c);
}

SIMPLE(test_redeem, JF_OP_REDEEM, 'a', "{\"points\":30}")
SIMPLE(test_adjust, JF_OP_ADJUST, 'b', "{\"points\":-5,\"reason\":\"correction\"}")
SIMPLE(test_transfer, JF_OP_TRANSFER, 'a', "{\"to_member_id\":\"%s\",\"points\":12}")
SIMPLE(test_hold, JF_OP_HOLD, 'a', "{\"points\":40,\"ttl_seconds\":600}")
CASE(test_capture, JF_OP_HOLD_CAPTURE, prep_capture, false)
CASE(test_void, JF_OP_HOLD_VOID, prep_void, false)
CASE(test_reverse, JF_OP_REVERSE, prep_reverse, false)
CASE(test_batch, JF_OP_BATCH, prep_batch, true)
CASE(test_member_update, JF_OP_MEMBER_UPDATE, prep_member_update, false)
CASE(test_check_in, JF_OP_CHECK_IN, prep_check_in, false)
CASE(test_refund, JF_OP_ORDER_REFUND, prep_refund, false)
CASE(test_expiry, JF_OP_EXPIRY_RUN, prep_expiry, false)
CASE(test_rule_create, JF_OP_RULE_CREATE, prep_rule_create, false)
CASE_KEEPS(test_member_event, JF_OP_MEMBER_EVENT, prep_member_event,
           "\"metadata\":{\"event\":\"survey_done\"")
CASE(test_campaign_create, JF_OP_CAMPAIGN_CREATE, prep_campaign_create, false)
CASE(test_key_create, JF_OP_KEY_CREATE, prep_key_create, false)
CASE_KEEPS(test_key_revoke, JF_OP_KEY_REVOKE, prep_key_revoke, "\"revoked_at\":\"")
CASE(test_tiers_put, JF_OP_TIER_CONFIG_PUT, prep_tiers_put, false)
CASE(test_tier_set, JF_OP_MEMBER_TIER_SET, prep_tier_set, false)
CASE_KEEPS(test_earn_voids_hold, JF_OP_EARN, prep_earn_voids_hold, "\"held\":0")
CASE_KEEPS(test_holds_sweep, JF_OP_HOLDS_SWEEP, prep_holds_sweep, "\"voided_holds\":1")
CASE_KEEPS(test_check_in_pays, JF_OP_CHECK_IN, prep_check_in_pays, "\"points\":25")
CASE(test_referral_signup, JF_OP_MEMBER_CREATE, prep_referral_signup, false)
CASE(test_referral_purchase, JF_OP_EARN, prep_referral_purchase, false)
CASE_KEEPS(test_birthday_sweep, JF_OP_BONUS_SWEEP, prep_birthday_sweep, "\"birthday_members\":1")
CASE(test_refund_lines, JF_OP_ORDER_REFUND, prep_refund_lines, false)
CASE(test_program_update, JF_OP_PROGRAM_UPDATE, prep_program_update, false)
CASE(test_rule_update, JF_OP_RULE_UPDATE, prep_rule_update, false)
CASE(test_campaign_update, JF_OP_CAMPAIGN_UPDATE, prep_campaign_update, false)
CASE_KEEPS(test_tier_import, JF_OP_TIER_IMPORT, prep_tier_import, "\"imported\":1")
CASE_KEEPS(test_tier_evaluate, JF_OP_TIER_EVALUATE, prep_tier_evaluate, "\"downgraded\":1")
SIMPLE(test_member_get, JF_OP_MEMBER_GET, 'a', NULL)
SIMPLE(test_member_transactions, JF_OP_MEMBER_TRANSACTIONS, 'a', NULL)

/* The maintenance run (`jifen expire`): not an operation of jf_call but a
 * function that runs the hold sweep, expiry, the birthday job and the tier
 * evaluations of every tenant through the writer.  Each call has an
 * overdue hold and an expired lot to work on.  It answers a system failure
 * with no report, or success with a whole one: one row per tenant, each
 * with its three sections. */
static bool maintenance_once(fixture *f, void *arg, fault_kind k, long n, bool all_after)
{
    (void)arg;
    char path_id[64], body[BODY_MAX], ext[64];
    prep_expiry(f, (int)n, path_id, body, ext);
    overdue_hold(f);
    snprintf(current, sizeof(current), "test_maintenance, %s %ld failing%s", kind_names[k], n,
             all_after ? " and every one after it" : "");
    char *json = NULL;
    alarm(60);
    jf_db_stmts_expire();
    arm(k, n, all_after);
    jf_err err = jf_maintenance_run(f->te.eng, &json);
    long got = disarm();
    alarm(0);
    if (err != JF_OK && !err_is_system(err))
        fault_fail("%s: answered %s", current, jf_err_code(err));
    if (err != JF_OK && json != NULL)
        fault_fail("%s: answered %s with a report", current, jf_err_code(err));
    json_t *rows = json ? json_loads(json, 0, NULL) : NULL;
    if (err == JF_OK && json_array_size(rows) != 2)
        fault_fail("%s: the report is not one row per tenant: %s", current, json ? json : "NULL");
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if (!json_is_object(json_object_get(row, "expiry")) ||
            !json_is_object(json_object_get(row, "bonuses")) ||
            !json_is_object(json_object_get(row, "tiers")))
            fault_fail("%s: a row of the report lacks a section: %s", current, json);
    }
    json_decref(rows);
    free(json);
    /* Run again with nothing failing, it does the rest: no expired lot or
     * overdue hold stays for the next call to find. */
    if (jf_maintenance_run(f->te.eng, &json) != JF_OK)
        fault_fail("%s: the run after it failed", current);
    free(json);
    if (n % VERIFY_EVERY == 0)
        assert_verified(f);
    return got > 0;
}

static void test_maintenance(void **state)
{
    fault_loop_of(*state, "test_maintenance", maintenance_once, NULL);
}

/* A burst of concurrent earns, half on member a and half on b, sent at once
 * (jf_call) so that the writer takes them from its queue together, into one
 * batch or into a commit held open for the flush before it: each one alone
 * is applied or not, whatever its neighbours' fate. */
#define BURST 8
#define BURST_POINTS 10

typedef struct burst {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left;
    jf_result res[BURST];
} burst;

typedef struct burst_slot {
    burst *b;
    int i;
} burst_slot;

static void burst_done(void *arg, jf_result *res)
{
    burst_slot *s = arg;
    pthread_mutex_lock(&s->b->mu);
    s->b->res[s->i] = *res;
    memset(res, 0, sizeof(*res));
    s->b->left--;
    pthread_cond_signal(&s->b->cv);
    pthread_mutex_unlock(&s->b->mu);
}

/* Sends the burst with keys[i] and waits for every answer. */
static void burst_send(fixture *f, burst *b, char keys[BURST][48])
{
    static const char body[] = "{\"points\":10}";
    burst_slot slots[BURST];
    b->left = BURST;
    for (int i = 0; i < BURST; i++) {
        slots[i] = (burst_slot){b, i};
        jf_request req = {.op = JF_OP_EARN,
                          .auth = &f->te.auth,
                          .path_id = i % 2 ? f->b : f->a,
                          .body = body,
                          .body_len = sizeof(body) - 1,
                          .idempotency_key = keys[i]};
        jf_call(f->te.eng, &req, burst_done, &slots[i]);
    }
    pthread_mutex_lock(&b->mu);
    while (b->left > 0)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static bool burst_once(fixture *f, void *arg, fault_kind k, long n, bool all_after)
{
    (void)arg;
    burst b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    char keys[BURST][48];
    for (int i = 0; i < BURST; i++)
        snprintf(keys[i], sizeof(keys[i]), "burst-%d%s-%ld-%d", (int)k, all_after ? "all" : "one",
                 n, i);
    snprintf(current, sizeof(current), "test_burst, %s %ld failing%s", kind_names[k], n,
             all_after ? " and every one after it" : "");
    snap s0, s1, s2;
    snap_take(f, NULL, &s0);
    alarm(60);
    jf_db_stmts_expire();
    arm(k, n, all_after);
    burst_send(f, &b, keys);
    long got = disarm();
    alarm(0);
    int64_t applied[2] = {0, 0};
    bool ok[BURST];
    for (int i = 0; i < BURST; i++) {
        jf_err err = b.res[i].err;
        ok[i] = err == JF_OK;
        if (!ok[i] && !err_is_system(err))
            fault_fail("%s: earn %d answered %s (%s)", current, i, jf_err_code(err),
                       b.res[i].detail);
        if (ok[i] != (b.res[i].body != NULL))
            fault_fail("%s: earn %d answered %s with%s a body", current, i, jf_err_code(err),
                       b.res[i].body ? "" : "out");
        applied[i % 2] += ok[i] ? BURST_POINTS : 0;
        jf_result_deinit(&b.res[i]);
    }
    snap_take(f, NULL, &s1);
    /* Each earn that failed left nothing, each that succeeded all of it. */
    for (int m = 0; m < 2; m++)
        if (s1.v[m][0] - s0.v[m][0] != applied[m])
            fault_fail("%s: member %c gained %" PRId64 " points, its successful earns %" PRId64,
                       current, "ab"[m], s1.v[m][0] - s0.v[m][0], applied[m]);
    burst_send(f, &b, keys);
    for (int i = 0; i < BURST; i++) {
        if (b.res[i].err != JF_OK)
            fault_fail("%s: earn %d's retry failed: %s", current, i, jf_err_code(b.res[i].err));
        if (b.res[i].replayed != ok[i])
            fault_fail("%s: earn %d %s, but its retry was %sreplayed", current, i,
                       ok[i] ? "succeeded" : "failed", b.res[i].replayed ? "" : "not ");
        jf_result_deinit(&b.res[i]);
    }
    snap_take(f, NULL, &s2);
    for (int m = 0; m < 2; m++)
        if (s2.v[m][0] - s0.v[m][0] != BURST / 2 * BURST_POINTS)
            fault_fail("%s: member %c gained %" PRId64 " points after the retries", current,
                       "ab"[m], s2.v[m][0] - s0.v[m][0]);
    if (n % VERIFY_EVERY == 0)
        assert_verified(f);
    return got > 0;
}

static void test_burst(void **state)
{
    fault_loop_of(*state, "test_burst", burst_once, NULL);
}

int main(void)
{
    allocators_install();
    io_vfs_install();
    /* FAULT_CASE=test_refund (a glob) runs only the cases it names. */
    if (getenv("FAULT_CASE"))
        cmocka_set_test_filter(getenv("FAULT_CASE"));
    signal(SIGALRM, on_alarm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_member_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earn_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earn_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earn_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redeem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adjust, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_void, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reverse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_campaign_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiers_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tier_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earn_voids_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_in_pays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referral_signup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referral_purchase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_birthday_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_campaign_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tier_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tier_evaluate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_transactions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
