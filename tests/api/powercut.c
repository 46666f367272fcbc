/*
 * An LD_PRELOAD library that records what the server writes to its database
 * and WAL files, and which of those writes a sync made durable, so that a
 * test can rebuild the files as a power cut could leave them
 * (tests/api/test_power_loss.py); it can also make one of those writes or
 * syncs fail (tests/api/test_io_faults.py).
 *
 * A kill -9 loses nothing the process wrote: the page cache keeps it.  A
 * power cut loses what no fsync or fdatasync of the file had made durable,
 * and the disk may have written any part of that, in any order, some of it
 * torn.  No packaged tool simulates that here (LazyFS, which the test plan
 * names, is not in Debian), so this library logs, for the two files named
 * by $JIFEN_POWERCUT_DB ("DB" and "DB-wal"), every write, truncation and
 * extension, and a marker for every successful fsync or fdatasync, to
 * "db.log" and "wal.log" in the directory $JIFEN_POWERCUT_DIR.  A record is
 * appended before the call it describes, under one lock with it, so the log
 * holds every change the file got, in the order it got them (and perhaps one
 * more whose call a kill interrupted: the caller never saw it succeed, so it
 * may or may not have happened, like any unsynced write).
 *
 * A file's creation is durable only once its directory is synced: an open
 * that creates one of the two files logs a 'C', and a sync of their
 * directory a 'D' in each log, which covers what a sync's marker would.
 *
 * Record: a byte ('W' write, 'T' truncate, 'S' sync, 'C' created, 'D' the
 * directory synced), then the offset, the length and the time
 * (CLOCK_MONOTONIC, ns; for 'S' and 'D' when the sync returned) as
 * little-endian uint64 (for 'T' the new size and 0; for 'S' and 'D' the
 * length of the log when the sync began, before which every record is
 * durable, and 0), then, for 'W', the bytes.  Extensions by fallocate are
 * logged as 'T' to the larger size when they grow the file.
 *
 * With $JIFEN_POWERCUT_LIE set, syncs are not marked: the log then
 * describes a disk that acknowledges flushes it does not keep, which the
 * test must catch (its canaries).  "db" drops the database file's only
 * (what a WAL restart before the database is durable would lose), anything
 * else every file's.
 *
 * $JIFEN_FAULT="FILE-OP:N" (FILE wal or db, OP write or sync) makes the Nth
 * such call fail with EIO instead, "FILE-OP:N+" that one and every later one
 * (tests/api/test_io_faults.py).
 *
 * Writes to those files by any other call (write, pwritev, a shared
 * writable mapping, a duplicated descriptor) would escape the log, so they
 * abort the process instead.  sync_file_range makes nothing durable (it
 * neither flushes the disk's cache nor the file's metadata) and passes
 * through unlogged.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536

enum { F_NONE, F_DB, F_WAL, F_COUNT, F_DIR = F_COUNT };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char fd_file[MAX_FDS];
static int log_fd[F_COUNT] = {-1, -1, -1};
static uint64_t log_len[F_COUNT]; /* bytes appended to each log so far */
static bool lie[F_COUNT];         /* syncs of the file not marked */
/* $JIFEN_FAULT: the call of fault_op ('W' or 'S') on fault_file that fails
 * with EIO, counted from 1 (0: none), and the calls so far. */
static int fault_file;
static char fault_op;
static unsigned long fault_at, fault_calls;
static bool fault_on; /* "+": every call from fault_at on fails */

/* The next definition of name (libc's), looked up once per call site. */
#define REAL(name, type)                                                                           \
    ({                                                                                             \
        static void *volatile sym_;                                                                \
        if (sym_ == NULL)                                                                          \
            sym_ = real_sym(#name);                                                                \
        (type) sym_;                                                                               \
    })

static void *real_sym(const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    if (sym == NULL) {
        fprintf(stderr, "powercut: no next definition of %s\n", name);
        abort();
    }
    return sym;
}

static void die(const char *what, int fd)
{
    fprintf(stderr, "powercut: %s on a logged file (fd %d): the log would miss it\n", what, fd);
    abort();
}

/* The file fd is open on: F_DB, F_WAL or F_NONE.  Caller holds mu. */
static int file_of(int fd)
{
    return fd >= 0 && fd < MAX_FDS ? fd_file[fd] : F_NONE;
}

/* Aborts when fd is on a file the library watches (a logged file or their
 * directory): call would change it unlogged. */
static void refuse_logged(int fd, const char *call)
{
    pthread_mutex_lock(&mu);
    int f = file_of(fd);
    pthread_mutex_unlock(&mu);
    if (f != F_NONE)
        die(call, fd);
}

/* Writes all of buf to the log of file f, or aborts. */
static void log_bytes(int f, const void *buf, size_t n)
{
    ssize_t (*real_write)(int, const void *, size_t) =
        REAL(write, ssize_t(*)(int, const void *, size_t));
    const char *p = buf;
    while (n > 0) {
        ssize_t k = real_write(log_fd[f], p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            perror("powercut: log write");
            abort();
        }
        p += k;
        n -= (size_t)k;
        log_len[f] += (uint64_t)k;
    }
}

static void log_record(int f, char op, uint64_t off, uint64_t len, const void *data)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    unsigned char head[25];
    head[0] = (unsigned char)op;
    for (int i = 0; i < 8; i++) {
        head[1 + i] = (unsigned char)(off >> (8 * i));
        head[9 + i] = (unsigned char)(len >> (8 * i));
        head[17 + i] = (unsigned char)(ns >> (8 * i));
    }
    log_bytes(f, head, sizeof(head));
    if (op == 'W' && len > 0)
        log_bytes(f, data, len);
}

/* Opens the log of file f on first use; caller holds mu. */
static void log_open(int f)
{
    if (log_fd[f] >= 0)
        return;
    const char *dir = getenv("JIFEN_POWERCUT_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, f == F_DB ? "db.log" : "wal.log");
    int (*real_open)(const char *, int, ...) = REAL(open, int (*)(const char *, int, ...));
    log_fd[f] = real_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd[f] < 0) {
        perror("powercut: log open");
        abort();
    }
    const char *l = getenv("JIFEN_POWERCUT_LIE");
    lie[F_DB] = l != NULL;
    lie[F_WAL] = l != NULL && strcmp(l, "db") != 0;
    char file[8] = "", op[8] = "", plus[2] = "";
    const char *fault = getenv("JIFEN_FAULT");
    if (fault && sscanf(fault, "%7[a-z]-%7[a-z]:%lu%1[+]", file, op, &fault_at, plus) >= 3) {
        fault_file = strcmp(file, "wal") == 0 ? F_WAL : F_DB;
        fault_op = strcmp(op, "sync") == 0 ? 'S' : 'W';
        fault_on = plus[0] == '+';
    }
}

/* Whether this call (op on file f) is the one $JIFEN_FAULT fails; caller
 * holds mu.  A failed write writes nothing and a failed sync makes nothing
 * durable, so neither is logged. */
static bool fault_now(int f, char op)
{
    if (fault_at == 0 || f != fault_file || op != fault_op)
        return false;
    if (++fault_calls < fault_at || (fault_calls > fault_at && !fault_on))
        return false;
    if (fault_calls == fault_at)
        fprintf(stderr, "powercut: failing %s call %lu%s of the %s with EIO\n",
                op == 'W' ? "write" : "sync", fault_at, fault_on ? " and every one after" : "",
                f == F_WAL ? "WAL" : "database");
    return true;
}

/* Notes which logged file, if any, a freshly opened fd is on, and logs a
 * 'C' when the open created it (existed: whether it did before). */
static void note_open(int fd, bool existed)
{
    const char *db = getenv("JIFEN_POWERCUT_DB");
    if (fd < 0 || db == NULL || getenv("JIFEN_POWERCUT_DIR") == NULL)
        return;
    if (fd >= MAX_FDS) {
        fprintf(stderr, "powercut: fd %d beyond the table\n", fd);
        abort();
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    int f = F_NONE;
    if (n > 0) {
        path[n] = '\0';
        size_t dl = strlen(db);
        const char *slash = strrchr(db, '/');
        if (strcmp(path, db) == 0)
            f = F_DB;
        else if ((size_t)n == dl + 4 && strncmp(path, db, dl) == 0 &&
                 strcmp(path + dl, "-wal") == 0)
            f = F_WAL;
        else if (slash && (size_t)n == (size_t)(slash - db) && strncmp(path, db, (size_t)n) == 0)
            f = F_DIR;
    }
    pthread_mutex_lock(&mu);
    fd_file[fd] = (unsigned char)f;
    if (f != F_NONE && f != F_DIR) {
        log_open(f);
        if (!existed)
            log_record(f, 'C', 0, 0, NULL);
    }
    pthread_mutex_unlock(&mu);
}

/* Whether an open of path with flags finds the file there already. */
static bool exists_at(int dirfd, const char *path, int flags)
{
    struct stat st;
    return !(flags & O_CREAT) || fstatat(dirfd, path, &st, 0) == 0;
}

static int open_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

#define OPEN_WRAPPER(name)                                                                         \
    int name(const char *path, int flags, ...)                                                     \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        int mode = open_mode(flags, ap);                                                           \
        va_end(ap);                                                                                \
        bool existed = exists_at(AT_FDCWD, path, flags);                                           \
        int fd = REAL(name, int (*)(const char *, int, ...))(path, flags, mode);                   \
        note_open(fd, existed);                                                                    \
        return fd;                                                                                 \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                                       \
    int name(int dirfd, const char *path, int flags, ...)                                          \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        int mode = open_mode(flags, ap);                                                           \
        va_end(ap);                                                                                \
        bool existed = exists_at(dirfd, path, flags);                                              \
        int fd = REAL(name, int (*)(int, const char *, int, ...))(dirfd, path, flags, mode);       \
        note_open(fd, existed);                                                                    \
        return fd;                                                                                 \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

int close(int fd)
{
    pthread_mutex_lock(&mu);
    if (fd >= 0 && fd < MAX_FDS)
        fd_file[fd] = F_NONE;
    int rc = REAL(close, int (*)(int))(fd);
    pthread_mutex_unlock(&mu);
    return rc;
}

#define PWRITE_WRAPPER(name)                                                                       \
    ssize_t name(int fd, const void *buf, size_t n, off_t off)                                     \
    {                                                                                              \
        pthread_mutex_lock(&mu);                                                                   \
        int f = file_of(fd);                                                                       \
        if (f != F_NONE && fault_now(f, 'W')) {                                                    \
            pthread_mutex_unlock(&mu);                                                             \
            errno = EIO;                                                                           \
            return -1;                                                                             \
        }                                                                                          \
        if (f != F_NONE)                                                                           \
            log_record(f, 'W', (uint64_t)off, n, buf);                                             \
        ssize_t rc = REAL(name, ssize_t(*)(int, const void *, size_t, off_t))(fd, buf, n, off);    \
        pthread_mutex_unlock(&mu);                                                                 \
        return rc;                                                                                 \
    }
PWRITE_WRAPPER(pwrite)
PWRITE_WRAPPER(pwrite64)

/* The file's size after a truncation to size, or an extension to at least
 * size (grow_only), logged as 'T'. */
static void log_size(int fd, off_t size, bool grow_only)
{
    int f = file_of(fd);
    if (f == F_NONE)
        return;
    struct stat st;
    if (grow_only && (fstat(fd, &st) != 0 || st.st_size >= size))
        return;
    log_record(f, 'T', (uint64_t)size, 0, NULL);
}

#define TRUNCATE_WRAPPER(name)                                                                     \
    int name(int fd, off_t size)                                                                   \
    {                                                                                              \
        pthread_mutex_lock(&mu);                                                                   \
        log_size(fd, size, false);                                                                 \
        int rc = REAL(name, int (*)(int, off_t))(fd, size);                                        \
        pthread_mutex_unlock(&mu);                                                                 \
        return rc;                                                                                 \
    }
TRUNCATE_WRAPPER(ftruncate)
TRUNCATE_WRAPPER(ftruncate64)

#define FALLOCATE_WRAPPER(name)                                                                    \
    int name(int fd, int mode, off_t off, off_t len)                                               \
    {                                                                                              \
        pthread_mutex_lock(&mu);                                                                   \
        if (mode != 0 && file_of(fd) != F_NONE)                                                    \
            die("fallocate with a mode", fd);                                                      \
        log_size(fd, off + len, true);                                                             \
        int rc = REAL(name, int (*)(int, int, off_t, off_t))(fd, mode, off, len);                  \
        pthread_mutex_unlock(&mu);                                                                 \
        return rc;                                                                                 \
    }
FALLOCATE_WRAPPER(fallocate)
FALLOCATE_WRAPPER(fallocate64)

#define POSIX_FALLOCATE_WRAPPER(name)                                                              \
    int name(int fd, off_t off, off_t len)                                                         \
    {                                                                                              \
        pthread_mutex_lock(&mu);                                                                   \
        log_size(fd, off + len, true);                                                             \
        int rc = REAL(name, int (*)(int, off_t, off_t))(fd, off, len);                             \
        pthread_mutex_unlock(&mu);                                                                 \
        return rc;                                                                                 \
    }
POSIX_FALLOCATE_WRAPPER(posix_fallocate)
POSIX_FALLOCATE_WRAPPER(posix_fallocate64)

/* A sync makes durable what was logged for the file before it began: the
 * marker, written once the real call succeeded, carries the log's length at
 * that moment.  Writes logged while the flush ran (the writer goes on while
 * the syncer flushes) stay unsynced, as they may be on a real disk. */
static int sync_and_mark(int fd, int (*real)(int))
{
    pthread_mutex_lock(&mu);
    int f = file_of(fd);
    uint64_t upto[F_COUNT];
    memcpy(upto, log_len, sizeof(upto));
    bool fail = f != F_NONE && f != F_DIR && fault_now(f, 'S');
    pthread_mutex_unlock(&mu);
    if (fail) {
        errno = EIO;
        return -1;
    }
    int rc = real(fd);
    if (rc != 0 || f == F_NONE)
        return rc;
    pthread_mutex_lock(&mu);
    if (file_of(fd) == f && f != F_DIR && !lie[f])
        log_record(f, 'S', upto[f], 0, NULL);
    /* A sync of the directory makes the files created before it durable. */
    for (int g = F_DB; file_of(fd) == F_DIR && g < F_COUNT; g++)
        if (log_fd[g] >= 0 && !lie[g])
            log_record(g, 'D', upto[g], 0, NULL);
    pthread_mutex_unlock(&mu);
    return rc;
}

int fsync(int fd)
{
    return sync_and_mark(fd, REAL(fsync, int (*)(int)));
}

int fdatasync(int fd)
{
    return sync_and_mark(fd, REAL(fdatasync, int (*)(int)));
}

ssize_t write(int fd, const void *buf, size_t n)
{
    refuse_logged(fd, "write");
    return REAL(write, ssize_t(*)(int, const void *, size_t))(fd, buf, n);
}

#define VECTOR_WRAPPER(name)                                                                       \
    ssize_t name(int fd, const struct iovec *iov, int cnt, off_t off)                              \
    {                                                                                              \
        refuse_logged(fd, #name);                                                                  \
        return REAL(name, ssize_t(*)(int, const struct iovec *, int, off_t))(fd, iov, cnt, off);   \
    }
VECTOR_WRAPPER(pwritev)
VECTOR_WRAPPER(pwritev64)

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    refuse_logged(fd, "writev");
    return REAL(writev, ssize_t(*)(int, const struct iovec *, int))(fd, iov, cnt);
}

#define MMAP_WRAPPER(name)                                                                         \
    void *name(void *addr, size_t len, int prot, int flags, int fd, off_t off)                     \
    {                                                                                              \
        if ((prot & PROT_WRITE) && (flags & MAP_SHARED))                                           \
            refuse_logged(fd, "a shared writable mapping");                                        \
        return REAL(name, void *(*)(void *, size_t, int, int, int, off_t))(addr, len, prot, flags, \
                                                                           fd, off);               \
    }
MMAP_WRAPPER(mmap)
MMAP_WRAPPER(mmap64)

int dup(int fd)
{
    refuse_logged(fd, "dup");
    return REAL(dup, int (*)(int))(fd);
}

int dup2(int fd, int fd2)
{
    refuse_logged(fd, "dup");
    return REAL(dup2, int (*)(int, int))(fd, fd2);
}
