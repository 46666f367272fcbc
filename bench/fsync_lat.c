/*
 * fsync_lat: the machine's durable-write latency, printed beside every
 * benchmark table because it bounds every durable system in it.
 *
 * Overwrites 8 KiB at a rotating offset of a written-out file in DIR, then
 * fdatasync (and, separately, fsync; and appending 8 KiB + fdatasync), up to --count times or
 * --seconds, whichever comes first, and prints one JSON object with the median, p99 and mean in
 * microseconds.  Like pg_test_fsync's "one 8kB write" test.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (16 * 1024 * 1024)
#define BLOCK 8192
#define COUNT_MAX 100000

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs the loop with sync (fdatasync or fsync); fills lat, returns n. */
static int measure(int fd, int (*sync)(int), double *lat, int count, double seconds, bool append)
{
    static char buf[BLOCK];
    double stop = now_us() + seconds * 1e6;
    int n = 0;
    for (; n < count && now_us() < stop; n++) {
        memset(buf, n & 0xff, sizeof buf);
        off_t off =
            append ? (off_t)FILE_BYTES + (off_t)n * BLOCK : (off_t)((n * BLOCK) % FILE_BYTES);
        double t = now_us();
        if (pwrite(fd, buf, BLOCK, off) != BLOCK || sync(fd) != 0) {
            perror("fsync_lat: write/sync");
            exit(2);
        }
        lat[n] = now_us() - t;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    return n;
}

static void report(const char *name, const double *lat, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += lat[i];
    printf("\"%s\": {\"n\": %d, \"median_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f}", name, n,
           n ? lat[n / 2] : 0, n ? lat[(int)(n * 0.99)] : 0, n ? sum / n : 0);
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    int count = 2000;
    double seconds = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0)
            count = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[i + 1], NULL);
    }
    if (count < 1 || count > COUNT_MAX || seconds <= 0 || seconds > 60) {
        fprintf(stderr, "usage: fsync_lat [--dir DIR] [--count N<=100000] [--seconds S<=60]\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_lat.%d.tmp", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    /* Write the file out (not fallocate: unwritten extents would turn every
     * later write into a metadata change and measure the journal instead). */
    static char zero[BLOCK];
    for (off_t off = 0; fd >= 0 && off < FILE_BYTES; off += BLOCK)
        if (pwrite(fd, zero, BLOCK, off) != BLOCK)
            fd = -1;
    if (fd < 0 || fsync(fd) != 0) {
        perror("fsync_lat: create");
        return 2;
    }
    double *lat = malloc(sizeof *lat * (size_t)count);
    if (!lat)
        return 2;
    printf("{\"dir\": \"%s\", ", dir);
    report("fdatasync", lat, measure(fd, fdatasync, lat, count, seconds / 3, false));
    printf(", ");
    report("fsync", lat, measure(fd, fsync, lat, count, seconds / 3, false));
    printf(", ");
    /* Appending changes the file size, so each sync also commits metadata
     * (the ext4 journal): what a growing log pays until it preallocates. */
    report("append_fdatasync", lat, measure(fd, fdatasync, lat, count, seconds / 3, true));
    printf("}\n");
    close(fd);
    unlink(path);
    free(lat);
    return 0;
}
