/*
 * Request counters and the Prometheus text rendering of /metrics.
 *
 * Memory is fixed at start: one row per route (plus one for requests that
 * matched no route), each with a counter per status code we can answer and
 * a latency histogram.  Worker threads only ever add to atomics, so
 * recording a request takes no lock; /metrics reads the atomics relaxed,
 * which is as exact as a scrape needs.  The writer statistics come from the
 * engine (jf_engine_stats_get) at render time.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"

/* Status codes the server answers with; anything else lands in "other". */
static const int status_codes[] = {200, 201, 400, 401, 403, 404, 405,
                                   409, 413, 415, 422, 429, 500, 503};
#define STATUS_KNOWN ((int)(sizeof status_codes / sizeof status_codes[0]))
#define STATUS_SLOTS (STATUS_KNOWN + 1)

/* Upper bounds of the request latency buckets, in seconds; one more bucket
 * (+Inf) follows. */
static const double duration_les[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5};
#define DURATION_LES ((int)(sizeof duration_les / sizeof duration_les[0]))

/* The engine's histograms (jf_engine_stats) count each batch or commit in
 * one bucket only, the smallest whose bound holds it; Prometheus wants
 * cumulative buckets, so they are summed while rendering. */
#define ENGINE_BUCKETS_CUMULATIVE 0

typedef struct row {
    _Atomic uint64_t status[STATUS_SLOTS];
    _Atomic uint64_t duration[DURATION_LES + 1]; /* not cumulative; rendered cumulatively */
    _Atomic uint64_t duration_sum_ns;
} row;

struct srv_metrics {
    int rows; /* srv_route_count() + 1; the last row is "unmatched" */
    row r[];
};

srv_metrics *srv_metrics_new(void)
{
    int rows = srv_route_count() + 1;
    srv_metrics *m = calloc(1, sizeof *m + (size_t)rows * sizeof(row));
    if (!m)
        return NULL;
    m->rows = rows;
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    free(m);
}

static int status_slot(int status)
{
    for (int i = 0; i < STATUS_KNOWN; i++)
        if (status_codes[i] == status)
            return i;
    return STATUS_KNOWN;
}

void srv_metrics_record(srv_metrics *m, int route, int status, uint64_t duration_ns)
{
    if (!m)
        return;
    row *r = &m->r[(route >= 0 && route < m->rows - 1) ? route : m->rows - 1];
    atomic_fetch_add_explicit(&r->status[status_slot(status)], 1, memory_order_relaxed);
    double seconds = (double)duration_ns / 1e9;
    int b = 0;
    while (b < DURATION_LES && seconds > duration_les[b])
        b++;
    atomic_fetch_add_explicit(&r->duration[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->duration_sum_ns, duration_ns, memory_order_relaxed);
}

static uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Writes the route label value: "POST /v1/members/{id}/earn" or "unmatched". */
static void route_label(FILE *f, int i)
{
    const srv_route *rt = srv_route_at(i);
    if (rt)
        fprintf(f, "%s %s", rt->method, rt->pattern);
    else
        fputs("unmatched", f);
}

static void render_requests(FILE *f, srv_metrics *m)
{
    fputs("# HELP jifen_http_requests_total HTTP requests answered, by route and status.\n"
          "# TYPE jifen_http_requests_total counter\n",
          f);
    for (int i = 0; i < m->rows; i++) {
        for (int s = 0; s < STATUS_SLOTS; s++) {
            uint64_t n = load(&m->r[i].status[s]);
            if (n == 0)
                continue;
            fputs("jifen_http_requests_total{route=\"", f);
            route_label(f, i);
            if (s < STATUS_KNOWN)
                fprintf(f, "\",status=\"%d\"} %llu\n", status_codes[s], (unsigned long long)n);
            else
                fprintf(f, "\",status=\"other\"} %llu\n", (unsigned long long)n);
        }
    }
}

static void render_duration_row(FILE *f, row *r, int i)
{
    uint64_t cum = 0;
    for (int b = 0; b <= DURATION_LES; b++) {
        cum += load(&r->duration[b]);
        fputs("jifen_http_request_duration_seconds_bucket{route=\"", f);
        route_label(f, i);
        if (b < DURATION_LES)
            fprintf(f, "\",le=\"%g\"} %llu\n", duration_les[b], (unsigned long long)cum);
        else
            fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    fputs("jifen_http_request_duration_seconds_sum{route=\"", f);
    route_label(f, i);
    fprintf(f, "\"} %.9f\n", (double)load(&r->duration_sum_ns) / 1e9);
    fputs("jifen_http_request_duration_seconds_count{route=\"", f);
    route_label(f, i);
    fprintf(f, "\"} %llu\n", (unsigned long long)cum);
}

static void render_durations(FILE *f, srv_metrics *m)
{
    fputs("# HELP jifen_http_request_duration_seconds Time from request line to response "
          "sent.\n"
          "# TYPE jifen_http_request_duration_seconds histogram\n",
          f);
    for (int i = 0; i < m->rows; i++) {
        uint64_t any = 0;
        for (int b = 0; b <= DURATION_LES; b++)
            any += load(&m->r[i].duration[b]);
        if (any)
            render_duration_row(f, &m->r[i], i);
    }
}

/* Renders one engine histogram; les are the bucket bounds, count the total
 * number of observations (the +Inf bucket). */
static void render_engine_histogram(FILE *f, const char *name, const char *help, const double *les,
                                    const uint64_t *buckets, int n, uint64_t count, double sum)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum = ENGINE_BUCKETS_CUMULATIVE ? buckets[i] : cum + buckets[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, les[i], (unsigned long long)cum);
    }
    if (count < cum)
        count = cum;
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
    fprintf(f, "%s_sum %.9g\n%s_count %llu\n", name, sum, name, (unsigned long long)count);
}

/* A field of /proc/self/status in KiB ("RssAnon"), or -1. */
static long long proc_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kib = -1;
    size_t n = strlen(field);
    while (f && kib < 0 && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kib = strtoll(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

/* The heap's resident size and the idle trims that return it (engine.c). */
static void render_memory(FILE *f, const jf_engine_stats *st)
{
    fprintf(f,
            "# HELP jifen_memory_trims_total Times freed heap memory was handed back to the"
            " system after the writer had been idle.\n"
            "# TYPE jifen_memory_trims_total counter\njifen_memory_trims_total %llu\n",
            (unsigned long long)st->memory_trims);
    long long anon = proc_status_kib("RssAnon");
    if (anon >= 0)
        fprintf(f,
                "# HELP jifen_process_resident_anonymous_bytes Resident anonymous memory"
                " (the heap; the database's memory map is file-backed and not counted).\n"
                "# TYPE jifen_process_resident_anonymous_bytes gauge\n"
                "jifen_process_resident_anonymous_bytes %lld\n",
                anon * 1024);
}

/* The writer's filter of stored idempotency keys (src/core/idemfilter.c). */
static void render_idem_filter(FILE *f, const jf_engine_stats *st)
{
    fprintf(f,
            "# HELP jifen_idem_filter_ready 1 while the writer's filter of stored idempotency"
            " keys answers (a key it calls absent is not looked up).\n"
            "# TYPE jifen_idem_filter_ready gauge\njifen_idem_filter_ready %d\n"
            "# HELP jifen_idem_filter_keys Keys in the filter.\n"
            "# TYPE jifen_idem_filter_keys gauge\njifen_idem_filter_keys %llu\n"
            "# HELP jifen_idem_filter_bytes Memory of the filter.\n"
            "# TYPE jifen_idem_filter_bytes gauge\njifen_idem_filter_bytes %llu\n"
            "# HELP jifen_idem_lookups_skipped_total Idempotency keys the filter found absent,"
            " so that the writer did not look them up.\n"
            "# TYPE jifen_idem_lookups_skipped_total counter\n"
            "jifen_idem_lookups_skipped_total %llu\n"
            "# HELP jifen_idem_filter_builds_total Filters built from the stored keys.\n"
            "# TYPE jifen_idem_filter_builds_total counter\njifen_idem_filter_builds_total %llu\n"
            "# HELP jifen_idem_filter_forgets_total Filters forgotten because another process"
            " wrote the database or the filter filled up.\n"
            "# TYPE jifen_idem_filter_forgets_total counter\n"
            "jifen_idem_filter_forgets_total %llu\n"
            "# HELP jifen_idem_filter_build_seconds Time the last build took.\n"
            "# TYPE jifen_idem_filter_build_seconds gauge\njifen_idem_filter_build_seconds %.6f\n",
            st->idem_filter_ready ? 1 : 0, (unsigned long long)st->idem_filter_keys,
            (unsigned long long)st->idem_filter_bytes, (unsigned long long)st->idem_lookups_skipped,
            (unsigned long long)st->idem_filter_builds, (unsigned long long)st->idem_filter_forgets,
            st->idem_filter_build_seconds);
}

static void render_engine(FILE *f, jf_engine *eng)
{
    jf_engine_stats st = {0};
    jf_engine_stats_get(eng, &st);
    fprintf(f,
            "# HELP jifen_writer_commits_total Batches the writer committed.\n"
            "# TYPE jifen_writer_commits_total counter\njifen_writer_commits_total %llu\n"
            "# HELP jifen_writer_commands_total Write commands the writer applied.\n"
            "# TYPE jifen_writer_commands_total counter\njifen_writer_commands_total %llu\n"
            "# HELP jifen_writer_rejected_total Write commands refused by the rules.\n"
            "# TYPE jifen_writer_rejected_total counter\njifen_writer_rejected_total %llu\n"
            "# HELP jifen_writer_batches_redone_total Batches rolled back and run again,"
            " a savepoint per command, after a command failed having written.\n"
            "# TYPE jifen_writer_batches_redone_total counter\n"
            "jifen_writer_batches_redone_total %llu\n"
            "# HELP jifen_writer_cache_forgets_total Times rolled-back work made the writer"
            " forget the rule and tier bodies it had parsed.\n"
            "# TYPE jifen_writer_cache_forgets_total counter\n"
            "jifen_writer_cache_forgets_total %llu\n"
            "# HELP jifen_writer_commands_held_total Write commands that joined a commit"
            " the writer held while the WAL flush before it ran.\n"
            "# TYPE jifen_writer_commands_held_total counter\n"
            "jifen_writer_commands_held_total %llu\n"
            "# HELP jifen_writer_job_slices_held_total Slices of expiry or batch jobs the"
            " writer ran in a held commit while nothing else was queued.\n"
            "# TYPE jifen_writer_job_slices_held_total counter\n"
            "jifen_writer_job_slices_held_total %llu\n"
            "# HELP jifen_reads_held_total Reads answered right after a WAL flush instead of"
            " at once, because they could see a commit not yet on disk.\n"
            "# TYPE jifen_reads_held_total counter\njifen_reads_held_total %llu\n"
            "# HELP jifen_writer_queue_depth Write commands waiting for the writer.\n"
            "# TYPE jifen_writer_queue_depth gauge\njifen_writer_queue_depth %llu\n"
            "# HELP jifen_wal_restarts_total Times the writer copied the whole WAL past the"
            " restart threshold, so that its next commit starts the WAL again.\n"
            "# TYPE jifen_wal_restarts_total counter\njifen_wal_restarts_total %llu\n"
            "# HELP jifen_wal_starts_total Commits that started the WAL again from its head.\n"
            "# TYPE jifen_wal_starts_total counter\njifen_wal_starts_total %llu\n"
            "# HELP jifen_wal_starts_during_checkpoint_total Of those, commits during which a"
            " checkpoint ran (SQLite's WAL-reset race; the engine rules it out, so 0).\n"
            "# TYPE jifen_wal_starts_during_checkpoint_total counter\n"
            "jifen_wal_starts_during_checkpoint_total %llu\n"
            "# HELP jifen_wal_restarts_forced_total WAL restarts made past twice the threshold,"
            " the writer copying what the checkpointer had not.\n"
            "# TYPE jifen_wal_restarts_forced_total counter\njifen_wal_restarts_forced_total %llu\n"
            "# HELP jifen_writer_warm_members Member rows the writer cached at start.\n"
            "# TYPE jifen_writer_warm_members gauge\njifen_writer_warm_members %lld\n"
            "# HELP jifen_writer_warm_seconds Time the writer took to cache them.\n"
            "# TYPE jifen_writer_warm_seconds gauge\njifen_writer_warm_seconds %.6f\n"
            "# HELP jifen_checkpoint_writebacks_total Paced write-backs of checkpoint copies"
            " to the disk.\n"
            "# TYPE jifen_checkpoint_writebacks_total counter\n"
            "jifen_checkpoint_writebacks_total %llu\n"
            "# HELP jifen_wal_map_reads_total WAL frames read through the process's map of the"
            " WAL instead of a system call.\n"
            "# TYPE jifen_wal_map_reads_total counter\njifen_wal_map_reads_total %llu\n",
            (unsigned long long)st.commits, (unsigned long long)st.commands,
            (unsigned long long)st.rejected, (unsigned long long)st.batches_redone,
            (unsigned long long)st.cache_forgets, (unsigned long long)st.commands_held,
            (unsigned long long)st.job_slices_held, (unsigned long long)st.reads_held,
            (unsigned long long)st.queue_depth, (unsigned long long)st.wal_restarts,
            (unsigned long long)st.wal_starts, (unsigned long long)st.wal_starts_during_checkpoint,
            (unsigned long long)st.wal_restarts_forced, (long long)st.warm_members, st.warm_seconds,
            (unsigned long long)st.checkpoint_writebacks, (unsigned long long)st.wal_map_reads);
    enum { BATCH_N = sizeof st.batch_size_buckets / sizeof st.batch_size_buckets[0] };
    double batch_les[BATCH_N], lat_les[JF_LATENCY_BUCKETS];
    for (int i = 0; i < BATCH_N; i++)
        batch_les[i] = (double)(1u << i);
    for (int i = 0; i < JF_LATENCY_BUCKETS; i++)
        lat_les[i] = 50e-6 * (double)(1u << i);
    /* Every applied command belongs to exactly one batch, so the sum of all
     * batch sizes is the command count. */
    render_engine_histogram(f, "jifen_writer_batch_size", "Commands per committed batch.",
                            batch_les, st.batch_size_buckets, BATCH_N, st.commits,
                            (double)st.commands);
    static const struct {
        const char *name, *help;
        size_t offset;
    } lat[] = {
        {"jifen_writer_commit_seconds", "Time to commit one batch.",
         offsetof(jf_engine_stats, commit)},
        {"jifen_wal_flush_seconds",
         "Time of one flush (fdatasync) of the WAL before answers go out.",
         offsetof(jf_engine_stats, wal_flush)},
        {"jifen_checkpoint_seconds", "Time of one checkpoint pass (WAL copied into the database).",
         offsetof(jf_engine_stats, checkpoint)},
        {"jifen_wal_restart_seconds",
         "The writer's own copy of the WAL's last frames before a restart, every attempt (no "
         "write is applied meanwhile; one that finds the checkpointer mid-pass returns at once).",
         offsetof(jf_engine_stats, wal_restart)},
        {"jifen_memory_trim_seconds",
         "Time of one trim of the heap after the writer had been idle (malloc_trim; an "
         "allocation in the arena being trimmed waits for it).",
         offsetof(jf_engine_stats, memory_trim)},
    };
    for (size_t i = 0; i < sizeof lat / sizeof lat[0]; i++) {
        const jf_latency_hist *h = (const jf_latency_hist *)((const char *)&st + lat[i].offset);
        render_engine_histogram(f, lat[i].name, lat[i].help, lat_les, h->buckets,
                                JF_LATENCY_BUCKETS, h->count, (double)h->sum_us / 1e6);
    }
    render_memory(f, &st);
    render_idem_filter(f, &st);
}

char *srv_metrics_render(srv_metrics *m, jf_engine *eng, const srv_loops *loops, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    render_requests(f, m);
    render_durations(f, m);
    srv_loops_render(loops, f);
    render_engine(f, eng);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}
