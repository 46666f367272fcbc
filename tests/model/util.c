/*
 * Small helpers of the model test: a seeded random number generator
 * (xoshiro256** seeded through splitmix64, so one 64-bit seed replays a whole
 * run), RFC 3339 time formatting and parsing written from the calendar
 * arithmetic (no time zone state, so any year works), and allocation that
 * aborts the test on out-of-memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void mt_rng_seed(mt_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t mt_rng_next(mt_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

int64_t mt_rng_range(mt_rng *r, int64_t lo, int64_t hi)
{
    /* The modulo bias is irrelevant for spans this small next to 2^64. */
    uint64_t span = (uint64_t)(hi - lo) + 1;
    if (span == 0)
        return (int64_t)mt_rng_next(r);
    return lo + (int64_t)(mt_rng_next(r) % span);
}

bool mt_rng_chance(mt_rng *r, double percent)
{
    return (double)(mt_rng_next(r) >> 11) * 0x1.0p-53 * 100.0 < percent;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

void mt_time_format_offset(int64_t ms, int offset_min, bool with_ms, char *buf, size_t len)
{
    int64_t local = ms + (int64_t)offset_min * 60000;
    int64_t days = floor_div(local, MT_DAY_MS);
    int64_t rest = local - days * MT_DAY_MS;
    int64_t y, m, d;
    civil_from_days(days, &y, &m, &d);
    char frac[16] = "";
    if (with_ms)
        snprintf(frac, sizeof frac, ".%03d", (int)(rest % 1000));
    char zone[16] = "Z";
    if (offset_min != 0)
        snprintf(zone, sizeof zone, "%c%02d:%02d", offset_min < 0 ? '-' : '+', abs(offset_min) / 60,
                 abs(offset_min) % 60);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%s%s", (int)y, (int)m, (int)d,
             (int)(rest / 3600000), (int)(rest / 60000 % 60), (int)(rest / 1000 % 60), frac, zone);
}

void mt_time_format(int64_t ms, char *buf, size_t len)
{
    mt_time_format_offset(ms, 0, true, buf, len);
}

/* Reads exactly n decimal digits. */
static bool digits(const char *s, int n, int64_t *out)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool mt_time_parse(const char *s, int64_t *ms)
{
    int64_t y, mo, d, h, mi, se, f;
    if (s == NULL || strlen(s) != 24)
        return false;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[23] != 'Z')
        return false;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se) ||
        !digits(s + 20, 3, &f))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
        return false;
    *ms = days_from_civil(y, mo, d) * MT_DAY_MS + h * 3600000 + mi * 60000 + se * 1000 + f;
    return true;
}

void *mt_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL) {
        fprintf(stderr, "model_test: out of memory\n");
        exit(2);
    }
    return q;
}

char *mt_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = mt_xrealloc(NULL, n);
    memcpy(p, s, n);
    return p;
}
