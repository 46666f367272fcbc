/*
 * fsync_lat: the machine's durable-write latency, printed beside every
 * benchmark table because it bounds every durable system in it.
 *
 * Overwrites 8 KiB at a rotating offset of a written-out file in DIR, then
 * fdatasync (and, separately, fsync; and appending 8 KiB + fdatasync), up to --count times or
 * --seconds, whichever comes first, and prints one JSON object with the median, p99, p99.9,
 * maximum and mean in microseconds.  Like pg_test_fsync's "one 8kB write" test.
 *
 * With --bg-mbps N it then measures fdatasync once more while another thread
 * writes N MB/s of 4 KiB pages at random offsets of a second file, written
 * back every 64 KiB as jifen's checkpointer does (JF_CHECKPOINT_PACE_BYTES):
 * the disk traffic a database's checkpoints put beside its log flushes.  A
 * durable system's latency tail follows the tail of this figure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (16 * 1024 * 1024)
#define BLOCK 8192
#define COUNT_MAX 1000000
#define BG_FILE_BYTES (64 * 1024 * 1024)
#define BG_PAGE 4096
#define BG_PACE_PAGES 16

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
    printf("\"%s\": {\"n\": %d, \"median_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f, \"mean_us\": %.1f}",
           name, n, n ? lat[n / 2] : 0, n ? lat[(int)(n * 0.99)] : 0, n ? lat[(int)(n * 0.999)] : 0,
           n ? lat[n - 1] : 0, n ? sum / n : 0);
}

/* Writes a file of bytes out (not fallocate: unwritten extents would turn
 * every later write into a metadata change and measure the journal
 * instead); returns its descriptor or -1. */
static int file_create(const char *path, off_t bytes)
{
    static char zero[BLOCK];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (off_t off = 0; fd >= 0 && off < bytes; off += BLOCK)
        if (pwrite(fd, zero, BLOCK, off) != BLOCK) {
            close(fd);
            fd = -1;
        }
    if (fd >= 0 && fsync(fd) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

typedef struct bg_writer {
    int fd;
    double mbps;
    atomic_bool stop;
    long long pages;
} bg_writer;

/* Random 4 KiB pages at bg->mbps, written back every BG_PACE_PAGES. */
static void *bg_main(void *arg)
{
    bg_writer *bg = arg;
    static char page[BG_PAGE];
    unsigned int seed = 12345;
    double start = now_us(), per_page_us = BG_PAGE / bg->mbps; /* MB/s = bytes/us */
    while (!atomic_load(&bg->stop)) {
        memset(page, (int)(bg->pages & 0xff), sizeof page);
        off_t off = (off_t)(rand_r(&seed) % (BG_FILE_BYTES / BG_PAGE)) * BG_PAGE;
        if (pwrite(bg->fd, page, BG_PAGE, off) != BG_PAGE)
            break;
        if (++bg->pages % BG_PACE_PAGES == 0)
            sync_file_range(bg->fd, 0, 0,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER);
        double ahead = start + (double)bg->pages * per_page_us - now_us();
        if (ahead > 0)
            usleep((useconds_t)ahead);
    }
    return NULL;
}

/* fdatasync beside bg_main; prints its report and the rate reached. */
static void measure_beside(const char *dir, int fd, double *lat, int count, double seconds,
                           double mbps)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_lat_bg.%d.tmp", dir, (int)getpid());
    bg_writer bg = {.fd = file_create(path, BG_FILE_BYTES), .mbps = mbps};
    pthread_t t;
    if (bg.fd < 0 || pthread_create(&t, NULL, bg_main, &bg) != 0) {
        perror("fsync_lat: background writer");
        exit(2);
    }
    double t0 = now_us();
    int n = measure(fd, fdatasync, lat, count, seconds, false);
    double elapsed_s = (now_us() - t0) / 1e6;
    atomic_store(&bg.stop, true);
    pthread_join(t, NULL);
    report("fdatasync_beside_random_writes", lat, n);
    printf(", \"beside_random_writes\": {\"target_mbps\": %.1f, \"reached_mbps\": %.1f}", mbps,
           (double)bg.pages * BG_PAGE / 1e6 / elapsed_s);
    close(bg.fd);
    unlink(path);
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    int count = 2000;
    double seconds = 2, bg_mbps = 0, bg_seconds = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0)
            count = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[i + 1], NULL);
        else if (strcmp(argv[i], "--bg-mbps") == 0)
            bg_mbps = strtod(argv[i + 1], NULL);
        else if (strcmp(argv[i], "--bg-seconds") == 0)
            bg_seconds = strtod(argv[i + 1], NULL);
    }
    if (count < 1 || count > COUNT_MAX || seconds <= 0 || seconds > 60 || bg_mbps < 0 ||
        bg_mbps > 1000 || bg_seconds <= 0 || bg_seconds > 600) {
        fprintf(stderr, "usage: fsync_lat [--dir DIR] [--count N<=1000000] [--seconds S<=60]\n"
                        "                 [--bg-mbps MB/s (0: none) [--bg-seconds S<=600]]\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_lat.%d.tmp", dir, (int)getpid());
    int fd = file_create(path, FILE_BYTES);
    if (fd < 0) {
        perror("fsync_lat: create");
        return 2;
    }
    double *lat = malloc(sizeof *lat * COUNT_MAX); /* the run beside writes is bound by time */
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
    if (bg_mbps > 0) {
        printf(", ");
        measure_beside(dir, fd, lat, COUNT_MAX, bg_seconds, bg_mbps);
    }
    printf("}\n");
    close(fd);
    unlink(path);
    free(lat);
    return 0;
}
