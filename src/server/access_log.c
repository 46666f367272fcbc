/*
 * The access log: one JSON object per line per answered request.
 *
 * Lines are built with jansson so every string is escaped correctly whatever
 * a client put in its path or headers, then written and flushed under a
 * mutex so that lines from different worker threads never interleave and a
 * crash loses at most the line being written.  A line that cannot be built
 * (out of memory) goes out short, with its time and status and
 * "incomplete", never with some fields silently missing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "server_int.h"

struct srv_log {
    FILE *f;
    pthread_mutex_t mu;
};

srv_log *srv_log_new(FILE *f)
{
    if (!f)
        return NULL;
    srv_log *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->f = f;
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

void srv_log_free(srv_log *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void srv_format_rfc3339_ms(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || len < 25) {
        if (len)
            buf[0] = '\0';
        return;
    }
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", date, frac);
}

/* json_string refuses invalid UTF-8 (a client can send any bytes in a
 * path); fall back to a marker rather than dropping the whole line. */
static json_t *str_or_null(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    return j ? j : json_string("(invalid utf-8)");
}

/* Sets o[k] = v; false when v or the set failed (jansson reports a failed
 * allocation only by its result), so that a line never goes out missing
 * one of its fields. */
static bool entry_set(json_t *o, const char *k, json_t *v)
{
    return v != NULL && json_object_set_new(o, k, v) == 0;
}

static json_t *entry_json(const srv_log_entry *e, const char *ts)
{
    json_t *o = json_object();
    bool ok = o != NULL && entry_set(o, "ts", json_string(ts)) &&
              entry_set(o, "method", str_or_null(e->method)) &&
              entry_set(o, "path", str_or_null(e->path)) &&
              entry_set(o, "route", str_or_null(e->route)) &&
              entry_set(o, "status", json_integer(e->status)) &&
              entry_set(o, "duration_ms", json_real(e->duration_ms)) &&
              entry_set(o, "bytes_in", json_integer((json_int_t)e->bytes_in)) &&
              entry_set(o, "bytes_out", json_integer((json_int_t)e->bytes_out)) &&
              entry_set(o, "key", str_or_null(e->key)) &&
              entry_set(o, "idempotency_key", str_or_null(e->idempotency_key)) &&
              entry_set(o, "replayed", json_boolean(e->replayed)) &&
              entry_set(o, "request_id", str_or_null(e->request_id));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void srv_log_write(srv_log *l, const srv_log_entry *e)
{
    if (!l)
        return;
    char ts[40];
    srv_format_rfc3339_ms(e->ts_ms, ts, sizeof ts);
    json_t *o = entry_json(e, ts);
    /* Not json_dumps: out of memory, it can return a line with a key left
     * out (jifen.h, jf_json_dumps_whole). */
    char *line = o ? jf_json_dumps_whole(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    /* Out of memory: a shorter line, made without allocating, still says
     * that a request was answered and how, rather than none at all. */
    char fallback[128];
    if (!line)
        snprintf(fallback, sizeof fallback,
                 "{\"ts\":\"%s\",\"status\":%d,\"incomplete\":\"out of memory\"}", ts, e->status);
    pthread_mutex_lock(&l->mu);
    fputs(line ? line : fallback, l->f);
    fputc('\n', l->f);
    fflush(l->f);
    pthread_mutex_unlock(&l->mu);
    free(line);
}
