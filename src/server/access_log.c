/*
 * The access log: one JSON object per line per answered request.
 *
 * Lines are built with jansson so every string is escaped correctly whatever
 * a client put in its path or headers, then written and flushed under a
 * mutex so that lines from different worker threads never interleave and a
 * crash loses at most the line being written.
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

static json_t *entry_json(const srv_log_entry *e)
{
    char ts[40];
    srv_format_rfc3339_ms(e->ts_ms, ts, sizeof ts);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "method", str_or_null(e->method));
    json_object_set_new(o, "path", str_or_null(e->path));
    json_object_set_new(o, "route", str_or_null(e->route));
    json_object_set_new(o, "status", json_integer(e->status));
    json_object_set_new(o, "duration_ms", json_real(e->duration_ms));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)e->bytes_in));
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)e->bytes_out));
    json_object_set_new(o, "key", str_or_null(e->key));
    json_object_set_new(o, "idempotency_key", str_or_null(e->idempotency_key));
    json_object_set_new(o, "replayed", json_boolean(e->replayed));
    json_object_set_new(o, "request_id", str_or_null(e->request_id));
    return o;
}

void srv_log_write(srv_log *l, const srv_log_entry *e)
{
    if (!l)
        return;
    json_t *o = entry_json(e);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    if (!line)
        return;
    pthread_mutex_lock(&l->mu);
    fputs(line, l->f);
    fputc('\n', l->f);
    fflush(l->f);
    pthread_mutex_unlock(&l->mu);
    free(line);
}
