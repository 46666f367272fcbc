/*
 * A latency histogram in the spirit of HdrHistogram: log-linear buckets over
 * nanoseconds, 64 sub-buckets per power of two, so every recorded value is
 * kept within 1.6% (one sub-bucket) from 64 ns up to 2^40 ns (about 18
 * minutes).  Recording is an index computation and one increment; merging
 * two histograms is adding their arrays.  Shared by the load generator and
 * the SQLite baseline; header-only so each bench program is one file.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_MAX_EXP 40
/* Values below HIST_SUB are exact; exponent e >= HIST_SUB_BITS uses row
 * e - HIST_SUB_BITS + 1. */
#define HIST_BUCKETS ((HIST_MAX_EXP - HIST_SUB_BITS + 2) * HIST_SUB)

typedef struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t n, max_ns;
    double sum_ns;
} hist;

static inline int hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (int)v;
    int e = 63 - __builtin_clzll(v);
    if (e > HIST_MAX_EXP)
        return HIST_BUCKETS - 1;
    int sub = (int)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* The midpoint of bucket i, in nanoseconds. */
static inline double hist_value(int i)
{
    if (i < HIST_SUB)
        return (double)i;
    int row = i / HIST_SUB, sub = i % HIST_SUB;
    int e = row + HIST_SUB_BITS - 1;
    double lo = (double)((uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS));
    double width = (double)(1ULL << (e - HIST_SUB_BITS));
    return lo + width / 2;
}

static inline void hist_record(hist *h, uint64_t ns)
{
    h->counts[hist_index(ns)]++;
    h->n++;
    h->sum_ns += (double)ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static inline void hist_merge(hist *into, const hist *from)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    into->sum_ns += from->sum_ns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

/* The value at quantile q (0..1) in nanoseconds; 0 for an empty histogram. */
static inline double hist_quantile(const hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) {
            double v = hist_value(i);
            return v > (double)h->max_ns ? (double)h->max_ns : v;
        }
    }
    return (double)h->max_ns;
}

/* Writes {"n":..,"mean":..,"p50":..,...,"max":..} with values in microseconds. */
static inline void hist_json(FILE *f, const hist *h)
{
    fprintf(f,
            "{\"n\": %llu, \"mean\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
            "\"p999\": %.1f, \"max\": %.1f}",
            (unsigned long long)h->n, h->n ? h->sum_ns / (double)h->n / 1e3 : 0.0,
            hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
            hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, (double)h->max_ns / 1e3);
}

#endif
