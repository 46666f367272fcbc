/*
 * An LD_PRELOAD library that lets a black-box test hold the server's WAL
 * flushes (tests/api/test_durable_ack.py).
 *
 * The engine answers a write only after the syncer's fdatasync of the
 * "<db>-wal" file returns, and a read only after every commit its snapshot
 * may hold is flushed.  To prove that from outside, the test must be able to
 * keep a flush from finishing for as long as it likes: with this library
 * preloaded, an fdatasync or fsync of a file whose path ends in "-wal" waits
 * while the file named by $JIFEN_FSYNC_GATE exists (polled every 2 ms), then
 * calls the real function.  So a test can say "nothing is flushed now" and
 * check that nothing is answered, with no dependence on how fast the disk is.
 *
 * A call that waits first creates "<gate>.hit", so that the test knows a
 * flush is really being held before it looks for answers that must not come.
 * Every other call, and every call while the gate file is absent or the
 * variable unset, goes straight to the real function.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*sync_fn)(int fd);

#define GATE_POLL_NS 2000000L

/* True when fd is open on a file whose path ends in "-wal". */
static bool is_wal(int fd)
{
    char link[64];
    char path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n < 4)
        return false;
    path[n] = '\0';
    return strcmp(path + n - 4, "-wal") == 0;
}

/* Marks that a flush is being held: creates "<gate>.hit". */
static void mark_hit(const char *gate)
{
    char hit[PATH_MAX];
    int len = snprintf(hit, sizeof(hit), "%s.hit", gate);
    if (len < 0 || (size_t)len >= sizeof(hit))
        return;
    int fd = open(hit, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

/* Waits while the gate file exists, if fd is the WAL and a gate is named. */
static void wait_gate(int fd)
{
    const char *gate = getenv("JIFEN_FSYNC_GATE");
    if (gate == NULL || gate[0] == '\0' || access(gate, F_OK) != 0 || !is_wal(fd))
        return;
    mark_hit(gate);
    const struct timespec poll = {0, GATE_POLL_NS};
    while (access(gate, F_OK) == 0)
        nanosleep(&poll, NULL);
}

/* The next definition of name (libc's); aborts if there is none, since a
 * flush that silently did nothing would defeat the tests that use this. */
static sync_fn real_fn(const char *name)
{
    sync_fn fn;
    void *sym = dlsym(RTLD_NEXT, name);
    if (sym == NULL) {
        fprintf(stderr, "fsync_gate: no next definition of %s\n", name);
        abort();
    }
    memcpy(&fn, &sym, sizeof(fn));
    return fn;
}

int fdatasync(int fd)
{
    wait_gate(fd);
    return real_fn("fdatasync")(fd);
}

int fsync(int fd)
{
    wait_gate(fd);
    return real_fn("fsync")(fd);
}
