/*
 * Unit tests of src/core/tz.c: civil dates, RFC 3339, zone loading, offsets
 * from transitions and footers, wall-time conversion and expiry periods.
 *
 * The offsets are checked against fixed values from the IANA data and, in
 * bulk, against glibc's localtime_r with TZ set: glibc's TZ is process-global,
 * which is why the engine cannot use it, but this test is single-threaded.
 * Synthetic TZif files (written to a temporary JIFEN_ZONEINFO directory) test
 * footer rules against glibc reading the same POSIX TZ string, and a
 * fuzz-style test truncates and mutates a real file at every offset; run it
 * under valgrind or -fsanitize=address,undefined to catch bad reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tz.h"

#define ZONEINFO "/usr/share/zoneinfo"

/* The temporary zone directory for synthetic files; "" when unused. */
static char tmp_dir[64];

/* ---- Helpers ------------------------------------------------------------ */

/* An RFC 3339 literal the test knows to be valid, in ms. */
static int64_t ms_of(const char *s)
{
    int64_t ms = 0;
    if (!jf_time_parse_rfc3339(s, &ms))
        fail_msg("test literal does not parse: %s", s);
    return ms;
}

static const jf_tz *zone(const char *name)
{
    const jf_tz *tz = NULL;
    jf_err err = jf_tz_get(name, &tz);
    if (err != JF_OK || tz == NULL)
        fail_msg("cannot load zone %s (error %d)", name, (int)err);
    return tz;
}

static void assert_time(int64_t ms, const char *expected)
{
    char buf[JF_TIME_BUF];
    jf_time_format_rfc3339(ms, buf);
    assert_string_equal(buf, expected);
}

static void use_system_zoneinfo(void)
{
    unsetenv("JIFEN_ZONEINFO");
    jf_tz_cache_clear();
}

static void use_tmp_zoneinfo(void)
{
    setenv("JIFEN_ZONEINFO", tmp_dir, 1);
    jf_tz_cache_clear();
}

static void write_tmp_file(const char *name, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* ---- Synthetic TZif files ----------------------------------------------- */

typedef struct tzif_spec {
    int version; /* 1, 2, 3 or 4 */
    int trans_count;
    const int64_t *trans_s;
    const uint8_t *trans_type;
    int type_count;
    const int32_t *type_off_s;
    const char *footer; /* for version >= 2 */
    int leap_count;     /* leap-second records (all zero) */
} tzif_spec;

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
    return p + bytes;
}

/* One header and data block; designations are all "ZZZ". */
static uint8_t *put_block(uint8_t *p, const tzif_spec *s, int time_size)
{
    memcpy(p, "TZif", 4);
    p[4] = s->version == 1 ? 0 : (uint8_t)('0' + s->version);
    memset(p + 5, 0, 15);
    p += 20;
    uint32_t counts[6] = {
        0, 0, (uint32_t)s->leap_count, (uint32_t)s->trans_count, (uint32_t)s->type_count, 4};
    for (int i = 0; i < 6; i++)
        p = put_be(p, counts[i], 4);
    for (int i = 0; i < s->trans_count; i++)
        p = put_be(p, (uint64_t)s->trans_s[i], time_size);
    for (int i = 0; i < s->trans_count; i++)
        *p++ = s->trans_type[i];
    for (int i = 0; i < s->type_count; i++) {
        p = put_be(p, (uint32_t)s->type_off_s[i], 4);
        *p++ = 0;
        *p++ = 0;
    }
    memcpy(p, "ZZZ", 4);
    p += 4;
    for (int i = 0; i < s->leap_count; i++)
        p = put_be(put_be(p, 0, time_size), 0, 4);
    return p;
}

static size_t build_tzif(uint8_t *buf, const tzif_spec *s)
{
    uint8_t *p = put_block(buf, s, 4);
    if (s->version >= 2) {
        p = put_block(p, s, 8);
        size_t n = strlen(s->footer);
        *p++ = '\n';
        memcpy(p, s->footer, n);
        p += n;
        *p++ = '\n';
    }
    return (size_t)(p - buf);
}

/* Writes a footer-only zone (no transitions, one type) as tmp_dir/name. */
static void write_footer_zone(const char *name, const char *footer, int32_t type_off_s)
{
    uint8_t buf[1024];
    tzif_spec s = {.version = 2, .type_count = 1, .type_off_s = &type_off_s, .footer = footer};
    write_tmp_file(name, buf, build_tzif(buf, &s));
}

/* ---- glibc as the oracle ------------------------------------------------ */

static void glibc_use(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static long glibc_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    assert_non_null(localtime_r(&tt, &tm));
    return tm.tm_gmtoff;
}

/* Compares offset and wall time at t with glibc, then checks that the wall
 * time maps back to t or, when ambiguous, to an earlier instant showing the
 * same wall time, and that the day starts no later than t. */
static void check_instant(const jf_tz *tz, int64_t t, const char *what)
{
    time_t tt = (time_t)t;
    struct tm tm;
    jf_civil c, back;
    assert_non_null(localtime_r(&tt, &tm));
    if (jf_tz_offset_s(tz, t) != tm.tm_gmtoff)
        fail_msg("%s at %lld: offset %d, glibc %ld", what, (long long)t, jf_tz_offset_s(tz, t),
                 tm.tm_gmtoff);
    jf_tz_to_civil(tz, t * 1000 + 999, &c);
    assert_int_equal(c.year, tm.tm_year + 1900);
    assert_int_equal(c.month, tm.tm_mon + 1);
    assert_int_equal(c.day, tm.tm_mday);
    assert_int_equal(c.wday, tm.tm_wday);
    assert_int_equal(c.hour, tm.tm_hour);
    assert_int_equal(c.minute, tm.tm_min);
    assert_int_equal(c.second, tm.tm_sec);
    int64_t u_ms = jf_tz_from_civil_ms(tz, c.year, c.month, c.day, c.hour, c.minute, c.second);
    assert_true(u_ms <= t * 1000);
    jf_tz_to_civil(tz, u_ms, &back);
    assert_memory_equal(&back, &c, sizeof c);
    int64_t day_ms = jf_tz_day_start_ms(tz, t * 1000);
    assert_true(day_ms <= t * 1000);
    jf_tz_to_civil(tz, day_ms, &back);
    assert_int_equal(back.day, c.day);
    jf_tz_to_civil(tz, day_ms - 1000, &back);
    assert_int_not_equal(back.day, c.day);
}

/* The first instant in (lo, hi] whose glibc offset differs from lo's. */
static int64_t glibc_change(int64_t lo, int64_t hi)
{
    long off = glibc_offset(lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (glibc_offset(mid) == off)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* Samples [from, to] every step seconds; where glibc's offset changes, finds
 * the exact transition and checks the seconds around it.  Returns how many
 * transitions were seen. */
static int cross_check(const jf_tz *tz, const char *what, int64_t from, int64_t to, int64_t step)
{
    int changes = 0;
    long prev_off = glibc_offset(from);
    for (int64_t t = from; t <= to; t += step) {
        check_instant(tz, t, what);
        long off = glibc_offset(t);
        if (off != prev_off) {
            int64_t at = glibc_change(t - step, t);
            for (int64_t d = -2; d <= 1; d++)
                check_instant(tz, at + d, what);
            changes++;
        }
        prev_off = off;
    }
    return changes;
}

static const char *const cross_zones[] = {"Asia/Shanghai", "America/New_York",
                                          "Europe/London", "Australia/Lord_Howe",
                                          "Asia/Kolkata",  "America/Sao_Paulo"};

/* ---- Civil dates -------------------------------------------------------- */

static int test_month_len(int y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : len[m - 1];
}

/* Every day 1900..2200 against a counter, and back. */
static void days_round_trip_every_day(void **state)
{
    (void)state;
    int64_t expect = jf_days_from_civil(1900, 1, 1);
    assert_int_equal(expect, -25567);
    for (int y = 1900; y <= 2200; y++) {
        for (int m = 1; m <= 12; m++) {
            for (int d = 1; d <= test_month_len(y, m); d++) {
                int yy, mm, dd;
                assert_int_equal(jf_days_from_civil(y, m, d), expect);
                jf_civil_from_days(expect, &yy, &mm, &dd);
                if (yy != y || mm != m || dd != d)
                    fail_msg("day %lld gave %d-%d-%d, not %d-%d-%d", (long long)expect, yy, mm, dd,
                             y, m, d);
                expect++;
            }
        }
    }
    assert_int_equal(jf_days_from_civil(2201, 1, 1), expect);
}

static void days_known_values_and_carry(void **state)
{
    (void)state;
    assert_int_equal(jf_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(jf_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(jf_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(jf_days_from_civil(0, 3, 1), -719468);
    assert_int_equal(jf_days_from_civil(2026, 13, 1), jf_days_from_civil(2027, 1, 1));
    assert_int_equal(jf_days_from_civil(2026, 0, 1), jf_days_from_civil(2025, 12, 1));
    assert_int_equal(jf_days_from_civil(2026, -11, 1), jf_days_from_civil(2025, 1, 1));
    assert_int_equal(jf_days_from_civil(2026, 3, 0), jf_days_from_civil(2026, 2, 28));
    assert_int_equal(jf_days_from_civil(2028, 3, 0), jf_days_from_civil(2028, 2, 29));
    assert_int_equal(jf_days_from_civil(2026, 1, 32), jf_days_from_civil(2026, 2, 1));
    assert_int_equal(jf_days_from_civil(2026, 25, 1), jf_days_from_civil(2028, 1, 1));
    /* Far dates still round trip, far beyond what the engine stores. */
    for (int64_t days = -(INT64_C(1) << 37); days <= (INT64_C(1) << 37); days += 987654321) {
        int y, m, d;
        jf_civil_from_days(days, &y, &m, &d);
        assert_int_equal(jf_days_from_civil(y, m, d), days);
    }
}

static void date_parse_edges(void **state)
{
    (void)state;
    int y = -1, m = -1, d = -1;
    assert_true(jf_date_parse("2024-02-29", &y, &m, &d));
    assert_int_equal(y, 2024);
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
    assert_true(jf_date_parse("1900-01-01", &y, &m, &d));
    assert_true(jf_date_parse("2200-12-31", &y, &m, &d));
    assert_true(jf_date_parse("2000-02-29", &y, &m, &d));
    static const char *const bad[] = {
        "2023-02-29",
        "1900-02-29",
        "2100-02-29",
        "1899-12-31",
        "2201-01-01",
        "2026-13-01",
        "2026-00-10",
        "2026-04-31",
        "2026-01-00",
        "2026-1-01",
        "2026-01-1",
        "2026-01-01x",
        "",
        " 2026-01-01",
        "2026/01/01",
        "+026-01-01",
        "2026-01-01 ",
        "20260101",
        "2026-0a-01",
        "2026-01-01T00:00:00Z",
        "\xef\xbc\x92"
        "026-01-01",
        "2026--1-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        y = m = d = -7;
        if (jf_date_parse(bad[i], &y, &m, &d))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(y + m + d, -21);
    }
}

/* ---- RFC 3339 ----------------------------------------------------------- */

static void rfc3339_parse_accepts(void **state)
{
    (void)state;
    assert_int_equal(ms_of("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(ms_of("2026-11-23T10:00:00Z"), INT64_C(1795428000000));
    assert_int_equal(ms_of("2026-11-23t10:00:00z"), INT64_C(1795428000000));
    assert_int_equal(ms_of("2026-11-23T18:00:00+08:00"), INT64_C(1795428000000));
    assert_int_equal(ms_of("2026-11-23T05:00:00-05:00"), INT64_C(1795428000000));
    assert_int_equal(ms_of("2026-11-23T10:00:00-00:00"), INT64_C(1795428000000));
    assert_int_equal(ms_of("2026-11-23T15:30:00+05:30"), INT64_C(1795428000000));
    assert_int_equal(ms_of("1970-01-01T00:00:00.5Z"), 500);
    assert_int_equal(ms_of("1970-01-01T00:00:00.05Z"), 50);
    assert_int_equal(ms_of("1970-01-01T00:00:00.123Z"), 123);
    assert_int_equal(ms_of("1970-01-01T00:00:00.123999999Z"), 123);
    assert_int_equal(ms_of("1969-12-31T23:59:59.999Z"), -1);
    assert_int_equal(ms_of("2024-02-29T23:59:59Z"), INT64_C(1709251199000));
    assert_int_equal(ms_of("0000-01-01T00:00:00Z"), INT64_C(-62167219200000));
    assert_int_equal(ms_of("9999-12-31T23:59:59.999Z"), INT64_C(253402300799999));
    assert_int_equal(ms_of("2026-01-01T00:00:00+23:59"), ms_of("2025-12-31T00:01:00Z"));
}

static void rfc3339_parse_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "2026-02-29T00:00:00Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00Zjunk",
        "2026-01-01T00:00:00Z ",
        "2026-01-01T00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:60:00Z",
        "2026-12-31T23:59:60Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00.1234567890Z",
        "2026-01-01T00:00:00+0800",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+08:60",
        "2026-01-01T00:00:00+8:00",
        "2026-01-01T00:00:00+08",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-1-01T00:00:00Z",
        "26-01-01T00:00:00Z",
        "",
        "2026-01-01",
        "2026-01-01T0:00:00Z",
        "2026-01-01T00:00:00,5Z",
        " 2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00UTC",
        "2026-01-01X00:00:00Z",
        "-2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.+1Z",
        "2026-01-01T00:00:00Z+08:00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 42;
        if (jf_time_parse_rfc3339(bad[i], &ms))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(ms, 42);
    }
}

static void rfc3339_format_and_round_trip(void **state)
{
    (void)state;
    assert_time(0, "1970-01-01T00:00:00.000Z");
    assert_time(-1, "1969-12-31T23:59:59.999Z");
    assert_time(INT64_C(1795428000123), "2026-11-23T10:00:00.123Z");
    assert_time(INT64_MAX, "9999-12-31T23:59:59.999Z");
    assert_time(INT64_MIN, "0000-01-01T00:00:00.000Z");
    assert_time(INT64_C(253402300800000), "9999-12-31T23:59:59.999Z");
    char buf[JF_TIME_BUF];
    uint64_t x = 88172645463325252u; /* xorshift64: deterministic spread */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % UINT64_C(315569520000000)) - INT64_C(62167219200000);
        int64_t back = 0;
        jf_time_format_rfc3339(ms, buf);
        assert_int_equal(strlen(buf), 24);
        assert_true(jf_time_parse_rfc3339(buf, &back));
        assert_int_equal(back, ms);
    }
}

/* ---- Loading ------------------------------------------------------------ */

static void get_names_and_cache(void **state)
{
    (void)state;
    use_system_zoneinfo();
    const jf_tz *a = zone("Asia/Shanghai");
    assert_ptr_equal(zone("Asia/Shanghai"), a);
    assert_int_equal(jf_tz_offset_s(zone("UTC"), 0), 0);
    assert_int_equal(jf_tz_offset_s(zone("Etc/UTC"), INT64_C(1795428000)), 0);
    assert_int_equal(jf_tz_offset_s(zone("Etc/GMT-14"), 0), 14 * 3600);
    static const char *const bad[] = {
        "",
        "/etc/localtime",
        "../zoneinfo/UTC",
        "Asia/../UTC",
        "Asia/Shang hai",
        "Asia/Shanghai.",
        "Nope/Nowhere",
        "Asia",
        "Asia/",
        "right/UTC",
        "zone.tab",
        "Asia/Shanghai\n",
        "A2345678901234567890123456789012345678901234567890123456789012345",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const jf_tz *tz = (const jf_tz *)&a;
        if (jf_tz_get(bad[i], &tz) != JF_ERR_UNKNOWN_TIMEZONE)
            fail_msg("accepted zone name \"%s\"", bad[i]);
        assert_null(tz);
    }
    jf_tz_cache_clear();
    assert_int_equal(jf_tz_offset_s(zone("Asia/Shanghai"), 0), 8 * 3600);
    setenv("JIFEN_ZONEINFO", "/nonexistent", 1);
    jf_tz_cache_clear();
    const jf_tz *tz = NULL;
    assert_int_equal(jf_tz_get("Asia/Shanghai", &tz), JF_ERR_UNKNOWN_TIMEZONE);
    use_system_zoneinfo();
}

/* Calls visit(name, path) for every file under dir (skipping right/, the
 * leap-second zones) and returns the sum of what it returned. */
static int walk_zones(const char *dir, const char *prefix, int (*visit)(const char *, const char *))
{
    char path[512], name[256];
    int sum = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat st;
        if (e->d_name[0] == '.' || strcmp(e->d_name, "right") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(name, sizeof name, "%s%s", prefix, e->d_name);
        assert_int_equal(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            char sub[300];
            snprintf(sub, sizeof sub, "%s/", name);
            sum += walk_zones(path, sub, visit);
        } else {
            sum += visit(name, path);
        }
    }
    closedir(d);
    return sum;
}

/* Every TZif file of the system loads. */
static int load_one(const char *name, const char *path)
{
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "TZif", 4) != 0)
        return 0;
    const jf_tz *tz = NULL;
    if (jf_tz_get(name, &tz) != JF_OK)
        fail_msg("cannot load %s", name);
    return 1;
}

static void load_every_system_zone(void **state)
{
    (void)state;
    use_system_zoneinfo();
    assert_true(walk_zones(ZONEINFO, "", load_one) > 300);
    jf_tz_cache_clear();
}

/* ---- Fixed facts -------------------------------------------------------- */

static void shanghai_offsets_and_dst_history(void **state)
{
    (void)state;
    use_system_zoneinfo();
    const jf_tz *sh = zone("Asia/Shanghai");
    assert_int_equal(jf_tz_offset_s(sh, ms_of("2026-07-01T00:00:00Z") / 1000), 28800);
    assert_int_equal(jf_tz_offset_s(sh, ms_of("2026-01-01T00:00:00Z") / 1000), 28800);
    assert_int_equal(jf_tz_offset_s(sh, ms_of("2080-07-01T00:00:00Z") / 1000), 28800);
    /* 1986: DST from May 4 02:00 to Sep 14 02:00 local daylight time. */
    assert_int_equal(jf_tz_offset_s(sh, ms_of("1986-05-03T17:59:59Z") / 1000), 28800);
    assert_int_equal(jf_tz_offset_s(sh, ms_of("1986-05-03T18:00:00Z") / 1000), 32400);
    assert_int_equal(jf_tz_offset_s(sh, ms_of("1986-09-13T16:59:59Z") / 1000), 32400);
    assert_int_equal(jf_tz_offset_s(sh, ms_of("1986-09-13T17:00:00Z") / 1000), 28800);
    /* 1987..1991: from the Sunday on or after April 11 to that on or after Sep 11. */
    static const char *const spans[][2] = {
        {"1987-04-11T18:00:00Z", "1987-09-12T17:00:00Z"},
        {"1988-04-16T18:00:00Z", "1988-09-10T17:00:00Z"},
        {"1989-04-15T18:00:00Z", "1989-09-16T17:00:00Z"},
        {"1990-04-14T18:00:00Z", "1990-09-15T17:00:00Z"},
        {"1991-04-13T18:00:00Z", "1991-09-14T17:00:00Z"},
    };
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
        int64_t on = ms_of(spans[i][0]) / 1000, off = ms_of(spans[i][1]) / 1000;
        assert_int_equal(jf_tz_offset_s(sh, on - 1), 28800);
        assert_int_equal(jf_tz_offset_s(sh, on), 32400);
        assert_int_equal(jf_tz_offset_s(sh, off - 1), 32400);
        assert_int_equal(jf_tz_offset_s(sh, off), 28800);
    }
    assert_int_equal(jf_tz_offset_s(sh, ms_of("1992-07-01T00:00:00Z") / 1000), 28800);
    /* The fall-back hour 01:00..02:00 of 1991-09-15 happened twice. */
    assert_int_equal(jf_tz_from_civil_ms(sh, 1991, 9, 15, 1, 30, 0), ms_of("1991-09-14T16:30:00Z"));
}

static void new_york_2026(void **state)
{
    (void)state;
    use_system_zoneinfo();
    const jf_tz *ny = zone("America/New_York");
    jf_civil c;
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2026-03-08T06:59:59Z") / 1000), -5 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2026-03-08T07:00:00Z") / 1000), -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2026-11-01T05:59:59Z") / 1000), -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2026-11-01T06:00:00Z") / 1000), -5 * 3600);
    /* The gap: 02:00..03:00 on March 8 does not exist; it maps to the jump. */
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 3, 8, 1, 59, 59), ms_of("2026-03-08T06:59:59Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 3, 8, 2, 0, 0), ms_of("2026-03-08T07:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 3, 8, 2, 30, 0), ms_of("2026-03-08T07:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 3, 8, 2, 59, 59), ms_of("2026-03-08T07:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 3, 8, 3, 0, 0), ms_of("2026-03-08T07:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 3, 8, 3, 0, 1), ms_of("2026-03-08T07:00:01Z"));
    /* The overlap: 01:00..02:00 on November 1 happens twice; the earlier wins. */
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 11, 1, 0, 59, 59),
                     ms_of("2026-11-01T04:59:59Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 11, 1, 1, 0, 0), ms_of("2026-11-01T05:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 11, 1, 1, 30, 0), ms_of("2026-11-01T05:30:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2026, 11, 1, 2, 0, 0), ms_of("2026-11-01T07:00:00Z"));
    jf_tz_to_civil(ny, ms_of("2026-11-01T06:30:00Z"), &c);
    assert_int_equal(c.hour * 100 + c.minute, 130);
    jf_tz_to_civil(ny, ms_of("2026-11-01T05:30:00Z"), &c);
    assert_int_equal(c.hour * 100 + c.minute, 130);
    assert_int_equal(c.wday, 0);
    /* Both days start at local midnight, before the change. */
    assert_int_equal(jf_tz_day_start_ms(ny, ms_of("2026-03-08T20:00:00Z")),
                     ms_of("2026-03-08T05:00:00Z"));
    assert_int_equal(jf_tz_day_start_ms(ny, ms_of("2026-11-01T20:00:00Z")),
                     ms_of("2026-11-01T04:00:00Z"));
    assert_int_equal(jf_tz_day_start_ms(ny, ms_of("2026-11-02T04:59:59Z")),
                     ms_of("2026-11-01T04:00:00Z"));
}

/* 2050 lies beyond the last transition of the (fat) file: the footer rules. */
static void new_york_2050_from_footer(void **state)
{
    (void)state;
    use_system_zoneinfo();
    const jf_tz *ny = zone("America/New_York");
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2050-01-15T12:00:00Z") / 1000), -5 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2050-07-01T12:00:00Z") / 1000), -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2050-03-13T06:59:59Z") / 1000), -5 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2050-03-13T07:00:00Z") / 1000), -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2050-11-06T05:59:59Z") / 1000), -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2050-11-06T06:00:00Z") / 1000), -5 * 3600);
    assert_int_equal(jf_tz_from_civil_ms(ny, 2050, 3, 13, 2, 30, 0), ms_of("2050-03-13T07:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(ny, 2050, 11, 6, 1, 30, 0), ms_of("2050-11-06T05:30:00Z"));
    /* The footer repeats every 400 years and holds for any instant. */
    assert_int_equal(jf_tz_offset_s(ny, ms_of("2450-07-01T12:00:00Z") / 1000), -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, INT64_MAX), jf_tz_offset_s(ny, INT64_MAX - 1));
    int32_t far = jf_tz_offset_s(ny, INT64_MAX);
    assert_true(far == -5 * 3600 || far == -4 * 3600);
    assert_int_equal(jf_tz_offset_s(ny, INT64_MIN), jf_tz_offset_s(ny, INT64_MIN + 1));
}

/* A birthday is a local day: 16:00Z on May 1 is already May 2 in Shanghai. */
static void birthday_day_boundary(void **state)
{
    (void)state;
    use_system_zoneinfo();
    const jf_tz *sh = zone("Asia/Shanghai");
    jf_civil c;
    jf_tz_to_civil(sh, ms_of("2026-05-01T16:00:00Z"), &c);
    assert_int_equal(c.year, 2026);
    assert_int_equal(c.month, 5);
    assert_int_equal(c.day, 2);
    assert_int_equal(c.wday, 6);
    assert_int_equal(c.hour + c.minute + c.second, 0);
    jf_tz_to_civil(sh, ms_of("2026-05-01T15:59:59.999Z"), &c);
    assert_int_equal(c.day, 1);
    assert_int_equal(c.hour * 10000 + c.minute * 100 + c.second, 235959);
    assert_int_equal(jf_tz_day_start_ms(sh, ms_of("2026-05-02T15:59:59.999Z")),
                     ms_of("2026-05-01T16:00:00Z"));
    assert_int_equal(jf_tz_day_start_ms(sh, ms_of("2026-05-01T16:00:00Z")),
                     ms_of("2026-05-01T16:00:00Z"));
    assert_int_equal(jf_tz_day_start_ms(sh, ms_of("2026-05-01T15:59:59.999Z")),
                     ms_of("2026-04-30T16:00:00Z"));
    jf_tz_to_civil(zone("UTC"), ms_of("2026-05-01T16:00:00Z"), &c);
    assert_int_equal(c.day * 100 + c.hour, 116);
}

/* Sao Paulo's DST began at midnight: that day started at 01:00. */
static void day_start_in_gap(void **state)
{
    (void)state;
    use_system_zoneinfo();
    const jf_tz *sp = zone("America/Sao_Paulo");
    assert_int_equal(jf_tz_day_start_ms(sp, ms_of("2018-11-04T15:00:00Z")),
                     ms_of("2018-11-04T03:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(sp, 2018, 11, 4, 0, 0, 0), ms_of("2018-11-04T03:00:00Z"));
    assert_int_equal(jf_tz_from_civil_ms(sp, 2018, 2, 17, 23, 30, 0),
                     ms_of("2018-02-18T01:30:00Z"));
    assert_int_equal(jf_tz_period_end_ms(sp, ms_of("2018-11-03T15:00:00Z"), 0, JF_PERIOD_DAY),
                     ms_of("2018-11-04T03:00:00Z"));
}

/* ---- Threads ------------------------------------------------------------ */

static const char *const thread_zones[] = {"Asia/Shanghai", "America/New_York",
                                           "Europe/London", "UTC",
                                           "Asia/Kolkata",  "Australia/Lord_Howe"};

/* Each thread loads the zones in its own order and uses them at once; the
 * first load of a name races with the others. */
static void *thread_body(void *arg)
{
    size_t first = (size_t)(uintptr_t)arg;
    const size_t n = sizeof thread_zones / sizeof thread_zones[0];
    uintptr_t sum = 0;
    for (int round = 0; round < 200; round++) {
        const jf_tz *tz = NULL;
        if (jf_tz_get(thread_zones[(first + (size_t)round) % n], &tz) != JF_OK)
            return NULL;
        jf_civil c;
        jf_tz_to_civil(tz, INT64_C(1795428000000) + round * INT64_C(86400000), &c);
        sum += (uintptr_t)jf_tz_day_start_ms(tz, INT64_C(1795428000000));
    }
    return (void *)(sum | 1);
}

static void threads_share_the_cache(void **state)
{
    (void)state;
    use_system_zoneinfo();
    pthread_t th[8];
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_body, (void *)(uintptr_t)i), 0);
    for (size_t i = 0; i < 8; i++) {
        void *ret = NULL;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_non_null(ret);
    }
    /* One zone per name, whoever loaded it. */
    for (size_t i = 0; i < sizeof thread_zones / sizeof thread_zones[0]; i++)
        assert_ptr_equal(zone(thread_zones[i]), zone(thread_zones[i]));
}

/* ---- Expiry periods ----------------------------------------------------- */

typedef struct period_case {
    const char *zone, *earned;
    int add_months;
    jf_period period;
    const char *expected;
} period_case;

static const period_case period_cases[] = {
    /* The example of tz.h: 2026-03-15 + 12 months is in 2027, which ends at 2028. */
    {"Asia/Shanghai", "2026-03-15T02:00:00Z", 12, JF_PERIOD_YEAR, "2027-12-31T16:00:00.000Z"},
    /* Month and year ends, December rolling into January. */
    {"Asia/Shanghai", "2026-12-15T02:00:00Z", 0, JF_PERIOD_MONTH, "2026-12-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-12-10T02:00:00Z", 1, JF_PERIOD_MONTH, "2027-01-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-12-10T02:00:00Z", 1, JF_PERIOD_YEAR, "2027-12-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-12-10T02:00:00Z", 0, JF_PERIOD_YEAR, "2026-12-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-11-10T02:00:00Z", 25, JF_PERIOD_MONTH, "2028-12-31T16:00:00.000Z"},
    /* The local date decides: 16:30Z on Dec 31 is already 2027 in Shanghai. */
    {"Asia/Shanghai", "2026-12-31T16:30:00Z", 0, JF_PERIOD_YEAR, "2027-12-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-12-31T15:59:59Z", 0, JF_PERIOD_YEAR, "2026-12-31T16:00:00.000Z"},
    /* Month ends: Jan 31 + 1 month is Feb 28 (or 29), not March 3. */
    {"Asia/Shanghai", "2026-01-31T02:00:00Z", 1, JF_PERIOD_MONTH, "2026-02-28T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-01-31T02:00:00Z", 1, JF_PERIOD_DAY, "2026-02-28T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-03-31T02:00:00Z", 1, JF_PERIOD_DAY, "2026-04-30T16:00:00.000Z"},
    {"Asia/Shanghai", "2028-01-31T02:00:00Z", 1, JF_PERIOD_WEEK, "2028-03-05T16:00:00.000Z"},
    {"Asia/Shanghai", "2027-01-31T02:00:00Z", 1, JF_PERIOD_WEEK, "2027-02-28T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-03-31T02:00:00Z", -1, JF_PERIOD_MONTH, "2026-02-28T16:00:00.000Z"},
    {"Asia/Shanghai", "2028-02-29T02:00:00Z", 12, JF_PERIOD_MONTH, "2029-02-28T16:00:00.000Z"},
    {"Asia/Shanghai", "2028-02-29T02:00:00Z", 12, JF_PERIOD_DAY, "2029-02-28T16:00:00.000Z"},
    {"Asia/Shanghai", "2028-02-29T02:00:00Z", 12, JF_PERIOD_YEAR, "2029-12-31T16:00:00.000Z"},
    /* Weeks run Monday to Sunday: 2026-03-15 is a Sunday, the 16th a Monday. */
    {"Asia/Shanghai", "2026-03-15T02:00:00Z", 0, JF_PERIOD_WEEK, "2026-03-15T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-03-16T02:00:00Z", 0, JF_PERIOD_WEEK, "2026-03-22T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-03-15T16:00:00Z", 0, JF_PERIOD_WEEK, "2026-03-22T16:00:00.000Z"},
    /* Quarters. */
    {"Asia/Shanghai", "2026-02-10T02:00:00Z", 0, JF_PERIOD_QUARTER, "2026-03-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-03-31T15:00:00Z", 0, JF_PERIOD_QUARTER, "2026-03-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-03-31T16:00:00Z", 0, JF_PERIOD_QUARTER, "2026-06-30T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-11-05T02:00:00Z", 0, JF_PERIOD_QUARTER, "2026-12-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-08-20T02:00:00Z", 3, JF_PERIOD_QUARTER, "2026-12-31T16:00:00.000Z"},
    {"Asia/Shanghai", "2026-08-20T02:00:00Z", 6, JF_PERIOD_QUARTER, "2027-03-31T16:00:00.000Z"},
    /* Days and months that end in another offset than they began. */
    {"America/New_York", "2026-03-07T17:00:00Z", 0, JF_PERIOD_DAY, "2026-03-08T05:00:00.000Z"},
    {"America/New_York", "2026-03-08T17:00:00Z", 0, JF_PERIOD_DAY, "2026-03-09T04:00:00.000Z"},
    {"America/New_York", "2026-10-15T17:00:00Z", 0, JF_PERIOD_MONTH, "2026-11-01T04:00:00.000Z"},
    {"America/New_York", "2026-02-15T17:00:00Z", 0, JF_PERIOD_MONTH, "2026-03-01T05:00:00.000Z"},
    {"America/New_York", "2026-12-31T23:00:00Z", 0, JF_PERIOD_YEAR, "2027-01-01T05:00:00.000Z"},
    {"America/New_York", "2027-01-01T05:00:00Z", 0, JF_PERIOD_YEAR, "2028-01-01T05:00:00.000Z"},
    {"UTC", "2026-01-31T23:59:59.999Z", 1, JF_PERIOD_MONTH, "2026-03-01T00:00:00.000Z"},
    {"UTC", "2026-05-20T00:00:00Z", 1200, JF_PERIOD_YEAR, "2127-01-01T00:00:00.000Z"},
};

static void period_end_examples(void **state)
{
    (void)state;
    use_system_zoneinfo();
    char got[JF_TIME_BUF];
    for (size_t i = 0; i < sizeof period_cases / sizeof period_cases[0]; i++) {
        const period_case *pc = &period_cases[i];
        int64_t end =
            jf_tz_period_end_ms(zone(pc->zone), ms_of(pc->earned), pc->add_months, pc->period);
        jf_time_format_rfc3339(end, got);
        if (strcmp(got, pc->expected) != 0)
            fail_msg("case %zu (%s %s +%d): %s, expected %s", i, pc->zone, pc->earned,
                     pc->add_months, got, pc->expected);
    }
}

/* ---- Against glibc ------------------------------------------------------ */

/* 1970..2100 in the zones the brief names: the transitions of the files and,
 * after 2037, their footers. */
static void cross_check_named_zones(void **state)
{
    (void)state;
    use_system_zoneinfo();
    int64_t from = ms_of("1970-01-01T00:00:00Z") / 1000;
    int64_t to = ms_of("2100-12-31T23:59:59Z") / 1000;
    for (size_t i = 0; i < sizeof cross_zones / sizeof cross_zones[0]; i++) {
        char tzvar[80];
        snprintf(tzvar, sizeof tzvar, ":%s", cross_zones[i]);
        glibc_use(tzvar);
        int changes = cross_check(zone(cross_zones[i]), cross_zones[i], from, to, 89993);
        /* Shanghai changed 12 times since 1970, Kolkata never. */
        assert_true(strcmp(cross_zones[i], "Asia/Kolkata") == 0 ? changes == 0 : changes >= 12);
    }
    unsetenv("TZ");
}

/* Before 1970 the tables hold history back to local mean time. */
static void cross_check_named_zones_before_1970(void **state)
{
    (void)state;
    use_system_zoneinfo();
    int64_t from = ms_of("1890-01-01T00:00:00Z") / 1000;
    int64_t to = ms_of("1970-01-01T00:00:00Z") / 1000;
    for (size_t i = 0; i < sizeof cross_zones / sizeof cross_zones[0]; i++) {
        char tzvar[80];
        snprintf(tzvar, sizeof tzvar, ":%s", cross_zones[i]);
        glibc_use(tzvar);
        cross_check(zone(cross_zones[i]), cross_zones[i], from, to, 89993);
    }
    unsetenv("TZ");
}

/* Every system zone, sampled coarsely (offsets only, to stay fast). */
static int sample_one(const char *name, const char *path)
{
    const jf_tz *tz = NULL;
    (void)path;
    if (strncmp(name, "posix/", 6) == 0 || jf_tz_get(name, &tz) != JF_OK)
        return 0; /* a copy, or not a TZif file (load_every_system_zone checks) */
    char tzvar[300];
    snprintf(tzvar, sizeof tzvar, ":%s", name);
    glibc_use(tzvar);
    for (int64_t t = INT64_C(-2208988800); t < INT64_C(4133980800); t += 2617493) {
        if (jf_tz_offset_s(tz, t) != glibc_offset(t))
            fail_msg("%s at %lld: %d, glibc %ld", name, (long long)t, jf_tz_offset_s(tz, t),
                     glibc_offset(t));
    }
    return 1;
}

static void cross_check_every_zone(void **state)
{
    (void)state;
    use_system_zoneinfo();
    assert_true(walk_zones(ZONEINFO, "", sample_one) > 300);
    unsetenv("TZ");
    jf_tz_cache_clear();
}

/* Footers alone (files without transitions) against glibc reading the same
 * POSIX TZ string, across a century and around far years.  glibc evaluates
 * rules for years before 1972 as if they were 1970, so earlier instants are
 * checked against the same instant 400 years later instead: the Gregorian
 * calendar, and with it every rule, repeats with that period. */
static const char *const footers[] = {
    "EST5EDT,M3.2.0,M11.1.0",
    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
    "IST-1GMT0,M10.5.0,M3.5.0/1",
    "<+0330>-3:30<+0430>,J79/24,J263/24",
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "NZST-12NZDT,M9.5.0,M4.1.0/3",
    "AAA-5BBB,59/2,300/2",
    "AAA3BBB,J60/2,J300/2",
    "AAA5BBB4:30,M4.1.0/1:30:15,M10.5.0/3:00:01",
    "AAA+5BBB+3,M2.5.0,M12.5.6/18",
    "AAA0BBB,M1.1.0/0,M12.5.6/24",
    "XXX3YYY,M3.5.0/-25,M10.5.0/49",
    "<-03>3",
    "UTC0",
    "<+0545>-5:45",
    "<-0930>9:30",
};

static void footer_rules_against_glibc(void **state)
{
    (void)state;
    static const char *const windows[][2] = {
        {"1973-01-01T00:00:00Z", "2100-01-01T00:00:00Z"},
        {"2399-06-01T00:00:00Z", "2401-06-01T00:00:00Z"},
        {"9998-06-01T00:00:00Z", "9999-12-30T00:00:00Z"},
    };
    const int64_t cycle_s = INT64_C(146097) * 86400;
    use_tmp_zoneinfo();
    for (size_t i = 0; i < sizeof footers / sizeof footers[0]; i++) {
        write_footer_zone("Footer_Test", footers[i], 0);
        jf_tz_cache_clear();
        const jf_tz *tz = zone("Footer_Test");
        glibc_use(footers[i]);
        for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++)
            cross_check(tz, footers[i], ms_of(windows[w][0]) / 1000, ms_of(windows[w][1]) / 1000,
                        7 * 86400 + 3593);
        for (int64_t t = ms_of("1500-01-01T00:00:00Z") / 1000; t < 0; t += 7 * 86400 + 3593)
            assert_int_equal(jf_tz_offset_s(tz, t), jf_tz_offset_s(tz, t + cycle_s));
    }
    unsetenv("TZ");
    use_system_zoneinfo();
}

/* Permanent DST (RFC 8536, 3.3.1) stays DST across New Year, where glibc
 * briefly falls back to standard time, so it is checked by value. */
static void footer_permanent_dst(void **state)
{
    (void)state;
    use_tmp_zoneinfo();
    write_footer_zone("Footer_Test", "EST5EDT,0/0,J365/25", -5 * 3600);
    const jf_tz *tz = zone("Footer_Test");
    static const char *const at[] = {"2026-01-01T00:00:00Z", "2026-01-01T04:59:59Z",
                                     "2026-01-01T05:00:00Z", "2026-07-01T00:00:00Z",
                                     "2028-12-31T23:00:00Z", "1969-12-31T23:00:00Z"};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        assert_int_equal(jf_tz_offset_s(tz, ms_of(at[i]) / 1000), -4 * 3600);
    assert_int_equal(jf_tz_from_civil_ms(tz, 2027, 1, 1, 0, 0, 0), ms_of("2027-01-01T04:00:00Z"));
    use_system_zoneinfo();
}

static void footer_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "EST5EDT",
        "ES5",
        "EST",
        "<+8>-8",
        "<+08-8",
        "EST25",
        "EST5:60",
        "EST 5",
        "5EST",
        "EST5EDT,M13.1.0,M11.1.0",
        "EST5EDT,M3.6.0,M11.1.0",
        "EST5EDT,M3.2.7,M11.1.0",
        "EST5EDT,M3.2.0/168,M11.1.0",
        "EST5EDT,J0,J365",
        "EST5EDT,366,1",
        "EST5EDT,M3.2.0",
        "EST5EDT,M3.2.0,M11.1.0x",
        "EST5EDT,M3.2.0,,M11.1.0",
        "EST5EDT25,M3.2.0,M11.1.0",
        "EST5EDT,M3.2.0/2:60,M11.1.0",
        "EST5EDT,M3.2,M11.1.0",
        "EST5EDT,M0.2.0,M11.1.0",
        "EST5EDT,J366,J1",
        "EST-",
    };
    use_tmp_zoneinfo();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_footer_zone("Footer_Test", bad[i], 0);
        jf_tz_cache_clear();
        const jf_tz *tz = NULL;
        if (jf_tz_get("Footer_Test", &tz) != JF_ERR_UNKNOWN_TIMEZONE)
            fail_msg("accepted footer \"%s\"", bad[i]);
    }
    use_system_zoneinfo();
}

/* ---- File structure ----------------------------------------------------- */

static const int64_t syn_trans[] = {1000, 2000, 3000};
static const uint8_t syn_types[] = {1, 2, 1};
static const int32_t syn_offs[] = {3600, 7200, -34200};
/* Agrees with the last transition (+2 h in January 1970), as RFC 8536 asks,
 * and is +4 h in summer. */
#define SYN_FOOTER "AAA-2BBB-4,M3.5.0,M10.5.0"
/* 1970-07-01T00:00:00Z: summer, after the last transition. */
#define SYN_SUMMER_S 15638400

static const jf_tz *load_spec(const tzif_spec *s, jf_err *err)
{
    uint8_t buf[2048];
    const jf_tz *tz = NULL;
    write_tmp_file("Syn_Zone", buf, build_tzif(buf, s));
    jf_tz_cache_clear();
    *err = jf_tz_get("Syn_Zone", &tz);
    return tz;
}

static void tzif_versions_and_tables(void **state)
{
    (void)state;
    jf_err err;
    use_tmp_zoneinfo();
    for (int version = 1; version <= 4; version++) {
        tzif_spec s = {version, 3, syn_trans, syn_types, 3, syn_offs, SYN_FOOTER, 0};
        const jf_tz *tz = load_spec(&s, &err);
        assert_int_equal(err, JF_OK);
        assert_int_equal(jf_tz_offset_s(tz, INT64_MIN), 3600); /* type 0 before */
        assert_int_equal(jf_tz_offset_s(tz, 999), 3600);
        assert_int_equal(jf_tz_offset_s(tz, 1000), 7200);
        assert_int_equal(jf_tz_offset_s(tz, 1999), 7200);
        assert_int_equal(jf_tz_offset_s(tz, 2000), -34200);
        assert_int_equal(jf_tz_offset_s(tz, 3000), 7200);
        /* After the last transition: the footer (v2+), else the last type. */
        assert_int_equal(jf_tz_offset_s(tz, 3001), 7200);
        assert_int_equal(jf_tz_offset_s(tz, SYN_SUMMER_S), version == 1 ? 7200 : 4 * 3600);
        if (version == 1)
            assert_int_equal(jf_tz_offset_s(tz, INT64_MAX), 7200);
    }
    /* A footer that disagrees with the last transition is refused (RFC 8536
     * section 3.3): it would move the clock with no transition to say so. */
    tzif_spec disagrees = {2, 3, syn_trans, syn_types, 3, syn_offs, "AAA-4", 0};
    assert_null(load_spec(&disagrees, &err));
    assert_int_equal(err, JF_ERR_UNKNOWN_TIMEZONE);
    /* No transitions: the footer if any, else type 0. */
    tzif_spec none = {2, 0, NULL, NULL, 1, syn_offs, "", 0};
    assert_int_equal(jf_tz_offset_s(load_spec(&none, &err), 123456789), 3600);
    none.footer = "<+08>-8";
    assert_int_equal(jf_tz_offset_s(load_spec(&none, &err), 123456789), 8 * 3600);
    /* Leap-second zones, unknown versions and disorder are refused. */
    tzif_spec leap = {2, 3, syn_trans, syn_types, 3, syn_offs, SYN_FOOTER, 1};
    assert_null(load_spec(&leap, &err));
    assert_int_equal(err, JF_ERR_UNKNOWN_TIMEZONE);
    static const int64_t unsorted[] = {1000, 3000, 2000};
    tzif_spec disorder = {2, 3, unsorted, syn_types, 3, syn_offs, SYN_FOOTER, 0};
    assert_null(load_spec(&disorder, &err));
    static const uint8_t bad_type[] = {1, 3, 1};
    tzif_spec bad_index = {2, 3, syn_trans, bad_type, 3, syn_offs, SYN_FOOTER, 0};
    assert_null(load_spec(&bad_index, &err));
    static const int32_t too_far[] = {93600};
    tzif_spec bad_off = {2, 0, NULL, NULL, 1, too_far, "", 0};
    assert_null(load_spec(&bad_off, &err));
    tzif_spec no_types = {2, 0, NULL, NULL, 0, syn_offs, "", 0};
    assert_null(load_spec(&no_types, &err));
    use_system_zoneinfo();
}

static void tzif_version_byte_and_trailer(void **state)
{
    (void)state;
    uint8_t buf[2048];
    const jf_tz *tz;
    tzif_spec s = {2, 3, syn_trans, syn_types, 3, syn_offs, SYN_FOOTER, 0};
    size_t n = build_tzif(buf, &s);
    use_tmp_zoneinfo();
    write_tmp_file("Syn_Zone", buf, n);
    assert_int_equal(jf_tz_get("Syn_Zone", &tz), JF_OK);
    buf[n] = '\n'; /* trailing data after the footer */
    write_tmp_file("Syn_Zone", buf, n + 1);
    jf_tz_cache_clear();
    assert_int_equal(jf_tz_get("Syn_Zone", &tz), JF_ERR_UNKNOWN_TIMEZONE);
    buf[4] = '1';
    write_tmp_file("Syn_Zone", buf, n);
    assert_int_equal(jf_tz_get("Syn_Zone", &tz), JF_ERR_UNKNOWN_TIMEZONE);
    /* A file over 1 MiB is refused before it is parsed. */
    uint8_t *big = calloc(1, (1 << 20) + 1);
    assert_non_null(big);
    memcpy(big, buf, n);
    big[4] = '2';
    write_tmp_file("Syn_Zone", big, (1 << 20) + 1);
    free(big);
    assert_int_equal(jf_tz_get("Syn_Zone", &tz), JF_ERR_UNKNOWN_TIMEZONE);
    use_system_zoneinfo();
}

/* ---- Corrupt files ------------------------------------------------------ */

/* Uses a zone that loaded from a mutated file, so that ASan and valgrind see
 * every lookup path run on whatever the file said. */
static void exercise(const jf_tz *tz)
{
    static const int64_t at[] = {
        INT64_MIN,  -INT64_C(10000000000), -1,       0, 1000000000, 2000000000,
        3000000000, INT64_C(4000000000),   INT64_MAX};
    jf_civil c;
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        int32_t off = jf_tz_offset_s(tz, at[i]);
        assert_true(off >= -89999 && off <= 93599);
        jf_tz_to_civil(tz, at[i], &c);
        jf_tz_to_civil(tz, at[i] / 1000 * 1000, &c);
        assert_true(c.month >= 1 && c.month <= 12 && c.hour >= 0 && c.hour <= 23);
    }
    for (int p = JF_PERIOD_DAY; p <= JF_PERIOD_YEAR; p++)
        (void)jf_tz_period_end_ms(tz, INT64_C(1795428000000), 12, (jf_period)p);
    (void)jf_tz_day_start_ms(tz, INT64_C(1795428000000));
    (void)jf_tz_from_civil_ms(tz, 2026, 3, 8, 2, 30, 0);
    (void)jf_tz_from_civil_ms(tz, 2050, 11, 6, 1, 30, 0);
}

/* Loads data as a zone; returns whether it loaded. */
static bool try_load(const uint8_t *data, size_t len)
{
    const jf_tz *tz = NULL;
    write_tmp_file("Fuzz_Zone", data, len);
    jf_tz_cache_clear();
    jf_err err = jf_tz_get("Fuzz_Zone", &tz);
    assert_true(err == JF_OK || err == JF_ERR_UNKNOWN_TIMEZONE);
    if (err == JF_OK)
        exercise(tz);
    return err == JF_OK;
}

static void fuzz_truncated_and_mutated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *orig = read_whole_file(ZONEINFO "/America/New_York", &len);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    use_tmp_zoneinfo();
    assert_true(try_load(orig, len));
    /* Every proper prefix is incomplete. */
    for (size_t cut = 0; cut < len; cut++)
        assert_false(try_load(orig, cut));
    /* Every byte replaced by each of a few values. */
    int loaded = 0;
    for (size_t i = 0; i < len; i++) {
        const uint8_t with[4] = {0x00, 0xff, (uint8_t)(orig[i] ^ 0x01), (uint8_t)(orig[i] ^ 0x80)};
        for (int k = 0; k < 4; k++) {
            memcpy(buf, orig, len);
            buf[i] = with[k];
            loaded += try_load(buf, len);
        }
    }
    /* Random bursts of mutations. */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, orig, len);
        for (int k = 0; k < 1 + round % 8; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[(x >> 16) % len] = (uint8_t)x;
        }
        loaded += try_load(buf, len);
    }
    assert_true(loaded > 0); /* some mutations (e.g. in names) stay valid */
    free(buf);
    free(orig);
    use_system_zoneinfo();
}

/* ---- Main --------------------------------------------------------------- */

static int make_tmp_dir(void **state)
{
    (void)state;
    /* tmpfs when there is one: the fuzz test rewrites a file 20,000 times. */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/jifen_tz_XXXXXX", base);
    return mkdtemp(tmp_dir) == NULL ? -1 : 0;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    static const char *const files[] = {"Footer_Test", "Syn_Zone", "Fuzz_Zone"};
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp_dir, files[i]);
        unlink(path);
    }
    jf_tz_cache_clear();
    return rmdir(tmp_dir);
}

/* An optional argument selects tests by cmocka's glob filter, e.g.
 * `valgrind ./test_tz 'fuzz*'`. */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(days_round_trip_every_day),
        cmocka_unit_test(days_known_values_and_carry),
        cmocka_unit_test(date_parse_edges),
        cmocka_unit_test(rfc3339_parse_accepts),
        cmocka_unit_test(rfc3339_parse_rejects),
        cmocka_unit_test(rfc3339_format_and_round_trip),
        cmocka_unit_test(get_names_and_cache),
        cmocka_unit_test(load_every_system_zone),
        cmocka_unit_test(shanghai_offsets_and_dst_history),
        cmocka_unit_test(new_york_2026),
        cmocka_unit_test(new_york_2050_from_footer),
        cmocka_unit_test(birthday_day_boundary),
        cmocka_unit_test(day_start_in_gap),
        cmocka_unit_test(period_end_examples),
        cmocka_unit_test(threads_share_the_cache),
        cmocka_unit_test(cross_check_named_zones),
        cmocka_unit_test(cross_check_named_zones_before_1970),
        cmocka_unit_test(cross_check_every_zone),
        cmocka_unit_test(footer_rules_against_glibc),
        cmocka_unit_test(footer_permanent_dst),
        cmocka_unit_test(footer_rejects),
        cmocka_unit_test(tzif_versions_and_tables),
        cmocka_unit_test(tzif_version_byte_and_trailer),
        cmocka_unit_test(fuzz_truncated_and_mutated),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
