/*
 * Fuzzes the TZif reader and the time-zone arithmetic (src/core/tz.c).  An
 * input is 8 bytes of an instant (milliseconds, little-endian) and then a
 * zone file, which the harness writes into a JIFEN_ZONEINFO directory of its
 * own and loads with jf_tz_get, as a program's zone is loaded.  A file the
 * reader refuses ends the input; for one it accepts, at that instant and
 * around it:
 *
 * - the offset stays within the TZif range (-89999..93599 s), and the local
 *   wall time from jf_tz_to_civil is in range, its weekday is its date's,
 *   and it is the instant plus that offset;
 * - a wall time that occurred converts back (jf_tz_from_civil_ms) to an
 *   instant showing the same wall time, no later than the one it came from
 *   (an ambiguous time gives the earlier instant);
 * - the local day starts no later than the instant, on the same date, and
 *   the next one (jf_tz_period_end_ms) starts after it, on a later date.
 *
 * The seeds (corpus/tz) are synthetic zones written by tz_seeds.py.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tz.h"

#define OFFSET_MIN_S (-89999)
#define OFFSET_MAX_S 93599
/* Round trips are checked within about 35,000 years of 1970, where no
 * conversion saturates. */
#define ROUND_TRIP_MS_MAX (INT64_C(1) << 50)

static char zone_path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char dir[256];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/jifen-fuzz-tz-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("fuzz_tz: mkdtemp");
        abort();
    }
    snprintf(zone_path, sizeof zone_path, "%s/Fuzz", dir);
    mkdir(zone_path, 0700);
    snprintf(zone_path, sizeof zone_path, "%s/Fuzz/Zone", dir);
    setenv("JIFEN_ZONEINFO", dir, 1);
    return 0;
}

static void fail(const char *what, int64_t ms, const jf_civil *c)
{
    fprintf(stderr, "fuzz_tz: %s at %lld ms (local %04d-%02d-%02d %02d:%02d:%02d, wday %d)\n", what,
            (long long)ms, c->year, c->month, c->day, c->hour, c->minute, c->second, c->wday);
    abort();
}

static bool same_wall(const jf_civil *a, const jf_civil *b)
{
    return a->year == b->year && a->month == b->month && a->day == b->day && a->hour == b->hour &&
           a->minute == b->minute && a->second == b->second;
}

static bool same_date(const jf_civil *a, const jf_civil *b)
{
    return a->year == b->year && a->month == b->month && a->day == b->day;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The checks that hold at every instant. */
static void check_civil(const jf_tz *tz, int64_t ms, jf_civil *c)
{
    int64_t s = floor_div(ms, 1000);
    int32_t off = jf_tz_offset_s(tz, s);
    jf_tz_to_civil(tz, ms, c);
    if (off < OFFSET_MIN_S || off > OFFSET_MAX_S)
        fail("offset out of range", ms, c);
    if (c->month < 1 || c->month > 12 || c->day < 1 || c->day > 31 || c->hour < 0 || c->hour > 23 ||
        c->minute < 0 || c->minute > 59 || c->second < 0 || c->second > 59 || c->wday < 0 ||
        c->wday > 6)
        fail("a wall time out of range", ms, c);
    if (ms < -ROUND_TRIP_MS_MAX || ms > ROUND_TRIP_MS_MAX)
        return;
    int64_t days = jf_days_from_civil(c->year, c->month, c->day);
    if (((days % 7 + 11) % 7) != c->wday) /* 1970-01-01 was a Thursday (4) */
        fail("the weekday is not the date's", ms, c);
    if (days * 86400 + c->hour * 3600 + c->minute * 60 + c->second != s + off)
        fail("the wall time is not the instant plus its offset", ms, c);
}

static void check_at(const jf_tz *tz, int64_t ms)
{
    jf_civil c, back_c, day_c, next_c;
    check_civil(tz, ms, &c);
    if (ms < -ROUND_TRIP_MS_MAX || ms > ROUND_TRIP_MS_MAX)
        return;
    int64_t back = jf_tz_from_civil_ms(tz, c.year, c.month, c.day, c.hour, c.minute, c.second);
    check_civil(tz, back, &back_c);
    if (!same_wall(&back_c, &c) || back > floor_div(ms, 1000) * 1000)
        fail("the wall time does not convert back", ms, &c);
    int64_t start = jf_tz_day_start_ms(tz, ms);
    check_civil(tz, start, &day_c);
    if (start > ms || !same_date(&day_c, &c))
        fail("the day does not start before the instant, on its date", ms, &c);
    int64_t next = jf_tz_period_end_ms(tz, ms, 0, JF_PERIOD_DAY);
    check_civil(tz, next, &next_c);
    if (next <= ms || jf_days_from_civil(next_c.year, next_c.month, next_c.day) <=
                          jf_days_from_civil(c.year, c.month, c.day))
        fail("the next day does not start after the instant, on a later date", ms, &c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t ms;
    if (size < sizeof ms)
        return 0;
    memcpy(&ms, data, sizeof ms);
    int fd = open(zone_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data + sizeof ms, size - sizeof ms) != (ssize_t)(size - sizeof ms)) {
        perror("fuzz_tz: writing the zone");
        abort();
    }
    close(fd);
    jf_tz_cache_clear();
    const jf_tz *tz;
    if (jf_tz_get("Fuzz/Zone", &tz) != JF_OK)
        return 0;
    static const int64_t steps_ms[] = {
        0,        1,         -1,          3600000,      -3600000,
        86400000, -86400000, 15552000000, -15552000000, 31557600000000};
    for (size_t i = 0; i < sizeof steps_ms / sizeof steps_ms[0]; i++) {
        int64_t at;
        if (!__builtin_add_overflow(ms, steps_ms[i], &at))
            check_at(tz, at);
    }
    return 0;
}
