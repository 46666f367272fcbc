/*
 * The rigged allocator of the failure loops (test_faults, test_http_faults):
 * every allocation the library makes can be made to fail, as SQLite's malloc
 * tests do it.  The library's own calls and jansson's (the library routes
 * jansson's through a hook of its own, which calls malloc) reach the
 * wrappers below through the linker's --wrap of malloc, calloc, realloc and
 * strdup (CMakeLists.txt), which works because the library is linked in
 * statically; shared libraries (libmicrohttpd, libc's own callers) are not
 * rigged.  A test may rig other kinds of calls (I/O) with the same countdown.
 *
 * Include it in exactly one file of a test executable: it defines the
 * wrappers.  Only the threads rig_thread_takes_part names count; it is set
 * once, before anything is armed.
 */
#ifndef JF_TEST_RIGGED_ALLOC_H
#define JF_TEST_RIGGED_ALLOC_H

#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

/* What the armed countdown fails: allocations, or another kind of call
 * the test rigs itself (test_faults: SQLite's I/O calls). */
typedef enum fault_kind { FAULT_ALLOC, FAULT_IO } fault_kind;

static atomic_bool armed;
static atomic_int armed_kind;
static atomic_bool forever;
static atomic_long countdown; /* the call that takes it to 0 fails */
static atomic_long injected;  /* failures handed out since the last arm */
static _Thread_local int thread_counts = -1;

/* Whether a thread of this name takes part; set before the first arm. */
static bool (*rig_thread_takes_part)(const char *name);

static bool thread_takes_part(void)
{
    if (thread_counts < 0) {
        char name[16] = "";
        pthread_getname_np(pthread_self(), name, sizeof(name));
        thread_counts = rig_thread_takes_part == NULL || rig_thread_takes_part(name);
    }
    return thread_counts != 0;
}

/* Where the first rigged call of an arm was: printed with a failure. */
static void *where[24];
static int where_n;

/* Whether calls of kind k made on this thread are rigged now. */
static bool rigged_now(fault_kind k)
{
    return atomic_load(&armed) && atomic_load(&armed_kind) == (int)k && thread_takes_part();
}

/* Whether a call of kind k that the countdown skips fails: only one after
 * the first failure of an arm with all_after, as every call then fails. */
static bool fail_now_uncounted(fault_kind k)
{
    if (!rigged_now(k) || !atomic_load(&forever) || atomic_load(&injected) == 0)
        return false;
    atomic_fetch_add(&injected, 1);
    return true;
}

static bool fail_now_of(fault_kind k)
{
    if (!rigged_now(k))
        return false;
    if (fail_now_uncounted(k))
        return true;
    if (atomic_fetch_sub(&countdown, 1) == 1) {
        where_n = backtrace(where, 24);
        atomic_fetch_add(&injected, 1);
        return true;
    }
    return false;
}

static bool fail_now(void)
{
    return fail_now_of(FAULT_ALLOC);
}

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

/* Loads what backtrace needs (it allocates the first time) before any call
 * is rigged. */
static void rig_prepare(void)
{
    where_n = backtrace(where, 24);
}

/* Arms: the n-th rigged call of kind k fails, and with all_after every one
 * after it too. */
static void arm(fault_kind k, long n, bool all_after)
{
    atomic_store(&armed_kind, (int)k);
    atomic_store(&injected, 0);
    atomic_store(&countdown, n);
    atomic_store(&forever, all_after);
    atomic_store(&armed, true);
}

/* Disarms; returns how many calls failed while armed. */
static long disarm(void)
{
    atomic_store(&armed, false);
    return atomic_load(&injected);
}

/* Prints the stack of the first call made to fail since the last arm. */
static void rig_print_where(void)
{
    if (atomic_load(&injected) > 0) {
        fprintf(stderr, "the first failed call:\n");
        backtrace_symbols_fd(where, where_n, 2);
    }
}

#endif
