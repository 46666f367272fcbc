/*
 * Time zones from TZif files (RFC 8536), civil dates and RFC 3339 times.
 *
 * jf_tz_get reads a zone file once, validates every count, index and offset
 * in it, and keeps the result in a small mutex-protected cache; after that a
 * zone is read-only and threads share it freely.  Lookups binary-search the
 * transition table and, past its end, evaluate the POSIX TZ string of the
 * file's footer.  The footer is parsed once at load time into a tz_footer, so
 * a lookup never touches text.
 *
 * Local wall times are converted back to instants by trying the offsets in
 * effect around the wall time; when none fits (a spring-forward gap) a binary
 * search finds the transition.  This works for table and footer alike, so
 * nothing here needs to enumerate footer transitions.
 */
#include "tz.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jifen/limits.h"

/* Real zone files are at most a few KiB; a larger file is not a zone. */
#define TZ_FILE_BYTES_MAX (1024 * 1024)

/* The cache holds at most this many zones.  The IANA database has about 600
 * names (twice that with the posix/ copies), so only a bug reaches it. */
#define TZ_CACHE_MAX 4096

#define TZ_NAME_LEN_MAX 64
_Static_assert(TZ_NAME_LEN_MAX == JF_TIMEZONE_LEN_MAX, "a stored timezone name can be loaded");

/* A time type's index is one byte, so a file has at most 256 types. */
#define TZ_TYPES_MAX 256

/* The longest footer we accept; real ones are under 60 characters. */
#define TZ_FOOTER_LEN_MAX 255

/* RFC 8536 bounds on a UT offset: more than -25 hours, less than 26 hours. */
#define TZ_UTOFF_MIN (-89999)
#define TZ_UTOFF_MAX 93599

/* Wall times lie within this many seconds of their instant (26 hours). */
#define TZ_SEARCH_WINDOW_S 93600

#define SECS_PER_DAY INT64_C(86400)
#define MS_PER_DAY INT64_C(86400000)

/* The Gregorian calendar repeats every 400 years, weekdays included
 * (146097 days is a whole number of weeks), and so do footer rules. */
#define CYCLE_DAYS INT64_C(146097)
#define CYCLE_S (CYCLE_DAYS * SECS_PER_DAY)
_Static_assert(146097 % 7 == 0, "a 400-year cycle is whole weeks");

/* The domain of jf_civil_from_days: years stay well inside int. */
#define DAYS_ABS_MAX (INT64_C(1) << 38)

/* One date of a POSIX TZ rule: Jn (kind 'J'), n (kind 'N') or Mm.w.d. */
typedef struct tz_rule_date {
    char kind;
    int n;           /* day for 'J' (1..365) and 'N' (0..365) */
    int month, week; /* for 'M': month 1..12, week 1..5 (5 = last) */
    int wday;        /* for 'M': 0 = Sunday */
    int32_t time_s;  /* local time of the change, -167h..167h */
} tz_rule_date;

/* A parsed footer.  Offsets are east-positive, unlike the POSIX text. */
typedef struct tz_footer {
    bool present; /* a non-empty TZ string */
    bool has_dst;
    int32_t std_off_s, dst_off_s;
    tz_rule_date start, end; /* start is in standard time, end in DST */
} tz_footer;

struct jf_tz {
    struct jf_tz *next; /* the cache's chain */
    char name[TZ_NAME_LEN_MAX + 1];
    uint32_t trans_count;
    uint32_t type_count;
    int64_t *trans_s;    /* strictly ascending */
    uint8_t *trans_type; /* each < type_count */
    int32_t *type_off_s; /* each within TZ_UTOFF_MIN..TZ_UTOFF_MAX */
    tz_footer footer;
};

static pthread_mutex_t cache_mutex = PTHREAD_MUTEX_INITIALIZER;
static jf_tz *cache_head;
static size_t cache_count;

/* ---- Integer helpers ---------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && (a < 0) != (b < 0))
        q--;
    return q;
}

/* a - floor_div(a, b) * b, without the product, which overflows for an a
 * within b of INT64_MIN (a transition time can be one: tests/fuzz/fuzz_tz.c). */
static int64_t floor_mod(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return r != 0 && (r < 0) != (b < 0) ? r + b : r;
}

static bool is_leap(int64_t year)
{
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static int days_in_month(int64_t year, int month)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    assert(month >= 1 && month <= 12);
    return month == 2 && is_leap(year) ? 29 : len[month - 1];
}

/* Seconds to milliseconds, saturating instead of overflowing. */
static int64_t s_to_ms_saturated(int64_t s)
{
    if (s > INT64_MAX / 1000)
        return INT64_MAX;
    if (s < INT64_MIN / 1000)
        return INT64_MIN;
    return s * 1000;
}

/* ---- Civil dates -------------------------------------------------------- */

/* Days since 1970-01-01 with 64-bit years, so carried months cannot overflow.
 * The year is counted from March so that the leap day ends it; an era is one
 * 400-year cycle. */
static int64_t days_from_civil64(int64_t year, int64_t month, int64_t day)
{
    year += floor_div(month - 1, 12);
    month = floor_mod(month - 1, 12) + 1;
    if (month <= 2)
        year -= 1;
    int64_t era = floor_div(year, 400);
    int64_t yoe = year - era * 400;                                    /* 0..399 */
    int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5; /* 0..365 */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;               /* 0..146096 */
    assert(yoe >= 0 && yoe <= 399 && doe >= 0 && doe <= 146096);
    return era * CYCLE_DAYS + doe - 719468 + (day - 1);
}

int64_t jf_days_from_civil(int year, int month, int day)
{
    return days_from_civil64(year, month, day);
}

void jf_civil_from_days(int64_t days, int *year, int *month, int *day)
{
    assert(days >= -DAYS_ABS_MAX && days <= DAYS_ABS_MAX);
    int64_t z = days + 719468; /* days since 0000-03-01 */
    int64_t era = floor_div(z, CYCLE_DAYS);
    int64_t doe = z - era * CYCLE_DAYS;                                  /* 0..146096 */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365 */
    int64_t mp = (5 * doy + 2) / 153;                                    /* 0 = March */
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    assert(yoe >= 0 && yoe <= 399 && doy >= 0 && doy <= 365);
    *year = (int)(yoe + era * 400 + (m <= 2));
    *month = (int)m;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
}

/* ---- POSIX TZ strings (the TZif footer) --------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Reads 1..max_digits decimal digits. */
static bool tzs_number(const char **p, int max_digits, int *out)
{
    const char *s = *p;
    int v = 0, n = 0;
    while (n < max_digits && is_digit(s[n])) {
        v = v * 10 + (s[n] - '0');
        n++;
    }
    if (n == 0)
        return false;
    *p = s + n;
    *out = v;
    return true;
}

/* A zone abbreviation: three or more letters, or <...> of letters, digits,
 * '+' and '-' (for numeric names such as <+08>).  The names only label
 * offsets, so they are checked and dropped. */
static bool tzs_name(const char **p)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '<') {
        s++;
        while (is_alpha(s[n]) || is_digit(s[n]) || s[n] == '+' || s[n] == '-')
            n++;
        if (s[n] != '>' || n < 3)
            return false;
        *p = s + n + 1;
        return true;
    }
    while (is_alpha(s[n]))
        n++;
    if (n < 3)
        return false;
    *p = s + n;
    return true;
}

/* [+-]h[h[h]][:mm[:ss]] with at most hours_max hours: 24 for offsets (POSIX),
 * 167 for rule times (the RFC 8536 extension). */
static bool tzs_hms(const char **p, int hours_max, int32_t *out)
{
    const char *s = *p;
    int sign = 1, h, m = 0, sec = 0;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    if (!tzs_number(&s, 3, &h) || h > hours_max)
        return false;
    if (*s == ':') {
        s++;
        if (!tzs_number(&s, 2, &m) || m > 59)
            return false;
        if (*s == ':') {
            s++;
            if (!tzs_number(&s, 2, &sec) || sec > 59)
                return false;
        }
    }
    *p = s;
    *out = sign * (h * 3600 + m * 60 + sec);
    return true;
}

/* Jn, n or Mm.w.d, then an optional /time (default 02:00:00). */
static bool tzs_date(const char **p, tz_rule_date *d)
{
    const char *s = *p;
    memset(d, 0, sizeof *d);
    if (*s == 'M') {
        s++;
        d->kind = 'M';
        if (!tzs_number(&s, 2, &d->month) || d->month < 1 || d->month > 12 || *s++ != '.')
            return false;
        if (!tzs_number(&s, 1, &d->week) || d->week < 1 || d->week > 5 || *s++ != '.')
            return false;
        if (!tzs_number(&s, 1, &d->wday) || d->wday > 6)
            return false;
    } else if (*s == 'J') {
        s++;
        d->kind = 'J';
        if (!tzs_number(&s, 3, &d->n) || d->n < 1 || d->n > 365)
            return false;
    } else {
        d->kind = 'N';
        if (!tzs_number(&s, 3, &d->n) || d->n > 365)
            return false;
    }
    d->time_s = 7200;
    if (*s == '/') {
        s++;
        if (!tzs_hms(&s, 167, &d->time_s))
            return false;
    }
    *p = s;
    return true;
}

/* std offset [dst [offset] ,start[/time],end[/time]].  A DST name without a
 * rule would leave the change dates to the implementation, so it is refused
 * rather than guessed; zic always writes the rule. */
static bool tzs_parse(const char *s, tz_footer *f)
{
    int32_t v;
    memset(f, 0, sizeof *f);
    if (*s == '\0')
        return true;
    if (!tzs_name(&s) || !tzs_hms(&s, 24, &v))
        return false;
    f->present = true;
    f->std_off_s = -v; /* POSIX counts west-positive */
    if (*s == '\0')
        return true;
    if (!tzs_name(&s))
        return false;
    f->has_dst = true;
    f->dst_off_s = f->std_off_s + 3600;
    if (*s != ',') {
        if (!tzs_hms(&s, 24, &v))
            return false;
        f->dst_off_s = -v;
    }
    if (*s != ',' || (s++, !tzs_date(&s, &f->start)))
        return false;
    if (*s != ',' || (s++, !tzs_date(&s, &f->end)))
        return false;
    return *s == '\0';
}

/* Days since the epoch of a rule's date in a year. */
static int64_t rule_day(const tz_rule_date *d, int64_t year)
{
    int64_t jan1 = days_from_civil64(year, 1, 1);
    if (d->kind == 'J')
        return jan1 + d->n - 1 + (is_leap(year) && d->n >= 60);
    if (d->kind == 'N')
        return jan1 + d->n;
    assert(d->kind == 'M');
    int64_t first = days_from_civil64(year, d->month, 1);
    int64_t wday_first = floor_mod(first + 4, 7); /* 1970-01-01 was a Thursday */
    int64_t day = first + floor_mod(d->wday - wday_first, 7) + 7 * (d->week - 1);
    while (day >= first + days_in_month(year, d->month))
        day -= 7;
    return day;
}

/* The offset a footer gives at utc_s.  The change instants of the years
 * around utc_s are compared in order (ends before starts of the same year,
 * later years last), and the latest one not after utc_s decides; a start that
 * coincides with the previous end so wins, which is how permanent DST
 * ("EST5EDT,0/0,J365/25") stays DST across New Year. */
static int32_t footer_offset(const tz_footer *f, int64_t utc_s)
{
    if (!f->has_dst)
        return f->std_off_s;
    int64_t t = floor_mod(utc_s, CYCLE_S); /* the same offset, years 1970..2369 */
    int y0, m, d;
    jf_civil_from_days(floor_div(t, SECS_PER_DAY), &y0, &m, &d);
    int64_t best = INT64_MIN;
    bool dst = false;
    for (int64_t y = y0 - 2; y <= y0 + 1; y++) {
        int64_t end = rule_day(&f->end, y) * SECS_PER_DAY + f->end.time_s - f->dst_off_s;
        int64_t start = rule_day(&f->start, y) * SECS_PER_DAY + f->start.time_s - f->std_off_s;
        if (end <= t && end >= best) {
            best = end;
            dst = false;
        }
        if (start <= t && start >= best) {
            best = start;
            dst = true;
        }
    }
    /* Year y0 - 2's changes fall at the latest in the first days of y0 - 1. */
    assert(best != INT64_MIN && best <= t);
    return dst ? f->dst_off_s : f->std_off_s;
}

/* ---- Lookups ------------------------------------------------------------ */

int32_t jf_tz_offset_s(const jf_tz *tz, int64_t utc_s)
{
    assert(tz != NULL && tz->type_count >= 1);
    uint32_t n = tz->trans_count;
    if (n == 0 || utc_s > tz->trans_s[n - 1]) {
        if (tz->footer.present)
            return footer_offset(&tz->footer, utc_s);
        return tz->type_off_s[n == 0 ? 0 : tz->trans_type[n - 1]];
    }
    if (utc_s < tz->trans_s[0])
        return tz->type_off_s[0];
    /* The last transition at or before utc_s: trans_s[lo] <= utc_s always. */
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (tz->trans_s[mid] <= utc_s)
            lo = mid;
        else
            hi = mid - 1;
    }
    assert(tz->trans_s[lo] <= utc_s && tz->trans_type[lo] < tz->type_count);
    return tz->type_off_s[tz->trans_type[lo]];
}

void jf_tz_to_civil(const jf_tz *tz, int64_t utc_ms, jf_civil *out)
{
    assert(tz != NULL && out != NULL);
    int64_t s = floor_div(utc_ms, 1000);
    int64_t local_s = s + jf_tz_offset_s(tz, s);
    int64_t days = floor_div(local_s, SECS_PER_DAY);
    int64_t sod = local_s - days * SECS_PER_DAY;
    assert(sod >= 0 && sod < SECS_PER_DAY);
    jf_civil_from_days(days, &out->year, &out->month, &out->day);
    out->wday = (int)floor_mod(days + 4, 7);
    out->hour = (int)(sod / 3600);
    out->minute = (int)(sod / 60 % 60);
    out->second = (int)(sod % 60);
}

/* Keeps in *best the earlier of it and u = local_s - off, if u is after
 * after_s and the zone has the offset off at u (so u shows the wall time
 * local_s). */
static void try_offset(const jf_tz *tz, int64_t local_s, int32_t off, int64_t after_s,
                       int64_t *best)
{
    int64_t u = local_s - off;
    if (u > after_s && u < *best && jf_tz_offset_s(tz, u) == off)
        *best = u;
}

/* The index of the first transition after t (trans_count when none is). */
static uint32_t transition_after(const jf_tz *tz, int64_t t)
{
    uint32_t a = 0, b = tz->trans_count;
    while (a < b) {
        uint32_t mid = a + (b - a) / 2;
        if (tz->trans_s[mid] <= t)
            a = mid + 1;
        else
            b = mid;
    }
    return a;
}

/* The earliest instant after after_s whose wall time is local_s, or, in a
 * gap, the first instant after it (the transition).  Every solution u has
 * u + offset(u) = local_s, so lies within TZ_SEARCH_WINDOW_S of local_s, and
 * its offset is one the zone has in that window: the one at the window's
 * start, a transition's inside it, or past the last transition one of the
 * footer's two.  Trying each finds the earliest, however often the zone
 * changes in the window (a footer can change twice within an hour:
 * tests/fuzz/fuzz_tz.c found one whose repeated hour converted back to its
 * later instant when only the offsets at the window's ends and middle were
 * tried).  after_s is INT64_MIN but for the next period's start, which must
 * come after the instant it follows even where the wall clock went back a
 * whole day (Alaska in 1867, America/Juneau and America/Sitka).  The gap
 * search relies on wall time rising across it. */
static int64_t local_to_utc_s(const jf_tz *tz, int64_t local_s, int64_t after_s)
{
    int64_t lo = local_s - TZ_SEARCH_WINDOW_S, hi = local_s + TZ_SEARCH_WINDOW_S;
    int64_t best = INT64_MAX;
    uint32_t n = tz->trans_count;
    try_offset(tz, local_s, jf_tz_offset_s(tz, lo), after_s, &best);
    for (uint32_t i = transition_after(tz, lo); i < n && tz->trans_s[i] <= hi; i++)
        try_offset(tz, local_s, tz->type_off_s[tz->trans_type[i]], after_s, &best);
    if (tz->footer.present && (n == 0 || hi > tz->trans_s[n - 1])) {
        try_offset(tz, local_s, tz->footer.std_off_s, after_s, &best);
        if (tz->footer.has_dst)
            try_offset(tz, local_s, tz->footer.dst_off_s, after_s, &best);
    }
    if (best != INT64_MAX)
        return best;
    if (after_s >= lo) {
        /* Past after_s the wall clock never shows local_s (it is already
         * later, or skips it): the period starts at once. */
        if (after_s + 1 + jf_tz_offset_s(tz, after_s + 1) >= local_s || after_s >= hi)
            return after_s + 1;
        lo = after_s;
    }
    /* Invariant: wall(lo) < local_s <= wall(hi), as offsets stay within the window. */
    assert(lo + jf_tz_offset_s(tz, lo) < local_s && hi + jf_tz_offset_s(tz, hi) >= local_s);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + jf_tz_offset_s(tz, mid) >= local_s)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* The instant (ms) of local midnight starting y-m-d (carried as in
 * jf_days_from_civil), after after_s as in local_to_utc_s. */
static int64_t midnight_ms(const jf_tz *tz, int y, int m, int d, int64_t after_s)
{
    return s_to_ms_saturated(
        local_to_utc_s(tz, days_from_civil64(y, m, d) * SECS_PER_DAY, after_s));
}

int64_t jf_tz_from_civil_ms(const jf_tz *tz, int year, int month, int day, int hour, int minute,
                            int second)
{
    assert(tz != NULL);
    int64_t local_s = days_from_civil64(year, month, day) * SECS_PER_DAY + (int64_t)hour * 3600 +
                      (int64_t)minute * 60 + second;
    return s_to_ms_saturated(local_to_utc_s(tz, local_s, INT64_MIN));
}

int64_t jf_tz_day_start_ms(const jf_tz *tz, int64_t utc_ms)
{
    jf_civil c;
    jf_tz_to_civil(tz, utc_ms, &c);
    int64_t start_ms = jf_tz_from_civil_ms(tz, c.year, c.month, c.day, 0, 0, 0);
    /* Only a zone that jumps past midnight and back within a day could put
     * the start after utc_ms.  No real zone does, but a well-formed file can
     * say so, and the day must not start after the instant it contains. */
    return start_ms <= utc_ms ? start_ms : utc_ms;
}

int64_t jf_tz_period_end_ms(const jf_tz *tz, int64_t utc_ms, int add_months, jf_period period)
{
    assert(tz != NULL);
    assert(add_months >= -120000 && add_months <= 120000);
    jf_civil c;
    jf_tz_to_civil(tz, utc_ms, &c);
    int64_t months = (int64_t)c.year * 12 + (c.month - 1) + add_months;
    int y = (int)floor_div(months, 12);
    int m = (int)floor_mod(months, 12) + 1;
    int d = c.day < days_in_month(y, m) ? c.day : days_in_month(y, m);
    /* The next period starts after utc_ms unless the shift went back. */
    int64_t after_s = add_months >= 0 ? floor_div(utc_ms, 1000) : INT64_MIN;
    switch (period) {
    case JF_PERIOD_DAY:
        return midnight_ms(tz, y, m, d + 1, after_s);
    case JF_PERIOD_WEEK: {
        int since_monday = (int)floor_mod(jf_days_from_civil(y, m, d) + 3, 7);
        return midnight_ms(tz, y, m, d + 7 - since_monday, after_s);
    }
    case JF_PERIOD_MONTH:
        return midnight_ms(tz, y, m + 1, 1, after_s);
    case JF_PERIOD_QUARTER:
        return midnight_ms(tz, y, (m - 1) / 3 * 3 + 4, 1, after_s);
    case JF_PERIOD_YEAR:
        return midnight_ms(tz, y + 1, 1, 1, after_s);
    }
    assert(!"unknown jf_period");
    return INT64_MAX;
}

/* ---- TZif parsing ------------------------------------------------------- */

/* A bounds-checked cursor over the file's bytes. */
typedef struct tz_reader {
    const uint8_t *data;
    size_t len, pos;
} tz_reader;

/* The six counts of a TZif header, in file order. */
typedef struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static const uint8_t *rd_take(tz_reader *r, uint64_t n)
{
    if (n > r->len - r->pos)
        return NULL;
    const uint8_t *p = r->data + r->pos;
    r->pos += (size_t)n;
    return p;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* The 44-byte header: "TZif", a version (0 or '2'..'4'), 15 unused bytes and
 * the counts. */
static bool rd_header(tz_reader *r, int *version, tzif_counts *c)
{
    const uint8_t *h = rd_take(r, 44);
    if (h == NULL || memcmp(h, "TZif", 4) != 0)
        return false;
    if (h[4] == 0)
        *version = 1;
    else if (h[4] >= '2' && h[4] <= '4')
        *version = h[4] - '0';
    else
        return false;
    c->isut = be32(h + 20);
    c->isstd = be32(h + 24);
    c->leap = be32(h + 28);
    c->time = be32(h + 32);
    c->type = be32(h + 36);
    c->chars = be32(h + 40);
    return true;
}

/* Bytes of a data block; cannot overflow, since each count is 32 bits. */
static uint64_t block_bytes(const tzif_counts *c, unsigned time_size)
{
    return (uint64_t)c->time * (time_size + 1) + (uint64_t)c->type * 6 + c->chars +
           (uint64_t)c->leap * (time_size + 4) + c->isstd + c->isut;
}

/* RFC 8536's rules for the block we use.  Leap-second records would make the
 * times TAI-based rather than POSIX time, so such zones are refused. */
static bool counts_valid(const tzif_counts *c)
{
    return c->type >= 1 && c->type <= TZ_TYPES_MAX && c->chars >= 1 && c->leap == 0 &&
           (c->isstd == 0 || c->isstd == c->type) && (c->isut == 0 || c->isut == c->type);
}

static bool flags_valid(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (p[i] > 1)
            return false;
    return true;
}

/* Fills the zone's tables from a data block whose size was checked. */
static bool read_block(tz_reader *r, const tzif_counts *c, unsigned time_size, jf_tz *tz)
{
    const uint8_t *times = rd_take(r, (uint64_t)c->time * time_size);
    const uint8_t *idx = rd_take(r, c->time);
    const uint8_t *types = rd_take(r, (uint64_t)c->type * 6);
    const uint8_t *chars = rd_take(r, c->chars);
    const uint8_t *isstd = rd_take(r, c->isstd);
    const uint8_t *isut = rd_take(r, c->isut);
    assert(times && idx && types && chars && isstd && isut);
    for (uint32_t i = 0; i < c->time; i++) {
        const uint8_t *p = times + (size_t)i * time_size;
        int64_t t = time_size == 8 ? be64(p) : (int32_t)be32(p);
        if ((i > 0 && t <= tz->trans_s[i - 1]) || idx[i] >= c->type)
            return false;
        tz->trans_s[i] = t;
        tz->trans_type[i] = idx[i];
    }
    for (uint32_t i = 0; i < c->type; i++) {
        const uint8_t *p = types + (size_t)i * 6;
        int32_t off = (int32_t)be32(p);
        if (off < TZ_UTOFF_MIN || off > TZ_UTOFF_MAX || p[4] > 1 || p[5] >= c->chars)
            return false;
        tz->type_off_s[i] = off;
    }
    /* Designations are NUL-terminated, so the last one ends the block. */
    if (chars[c->chars - 1] != '\0')
        return false;
    /* A UT indicator requires the standard-time indicator (RFC 8536). */
    for (uint32_t i = 0; i < c->isut; i++)
        if (isut[i] && (c->isstd == 0 || !isstd[i]))
            return false;
    return flags_valid(isstd, c->isstd) && flags_valid(isut, c->isut);
}

/* One allocation holds the zone and its three tables, largest alignment
 * first, so freeing a zone is one free(). */
static jf_tz *zone_alloc(const tzif_counts *c)
{
    size_t bytes = sizeof(jf_tz) + (size_t)c->time * 9 + (size_t)c->type * 4;
    jf_tz *tz = calloc(1, bytes);
    if (tz == NULL)
        return NULL;
    tz->trans_count = c->time;
    tz->type_count = c->type;
    tz->trans_s = (int64_t *)(tz + 1);
    tz->type_off_s = (int32_t *)(tz->trans_s + c->time);
    tz->trans_type = (uint8_t *)(tz->type_off_s + c->type);
    return tz;
}

/* The v2+ footer: a newline, a POSIX TZ string, a newline, end of file. */
static bool rd_footer(tz_reader *r, tz_footer *f)
{
    char text[TZ_FOOTER_LEN_MAX + 1];
    const uint8_t *nl = rd_take(r, 1);
    if (nl == NULL || *nl != '\n')
        return false;
    size_t n = 0;
    for (;;) {
        const uint8_t *b = rd_take(r, 1);
        if (b == NULL)
            return false;
        if (*b == '\n')
            break;
        if (n == TZ_FOOTER_LEN_MAX || *b < 0x20 || *b > 0x7e)
            return false;
        text[n++] = (char)*b;
    }
    text[n] = '\0';
    return r->pos == r->len && tzs_parse(text, f);
}

/* RFC 8536 (section 3.3): a footer must agree with the last transition, for
 * it takes over after it.  One that gives another offset would move the wall
 * clock at the next instant, a change no transition records (tests/fuzz found
 * such files; zic never writes one), so the file is refused as inconsistent. */
static bool footer_continues(const jf_tz *tz)
{
    uint32_t n = tz->trans_count;
    if (!tz->footer.present || n == 0)
        return true;
    int64_t last_s = tz->trans_s[n - 1];
    return footer_offset(&tz->footer, last_s) == tz->type_off_s[tz->trans_type[n - 1]];
}

/* Parses a whole TZif file.  Version 1 files use their only (32-bit) block;
 * later versions skip it for the 64-bit block and the footer. */
static jf_err parse_tzif(const uint8_t *data, size_t len, jf_tz **out)
{
    tz_reader r = {data, len, 0};
    tzif_counts c;
    int version, version2;
    *out = NULL;
    if (!rd_header(&r, &version, &c))
        return JF_ERR_UNKNOWN_TIMEZONE;
    if (version >= 2) {
        if (rd_take(&r, block_bytes(&c, 4)) == NULL || !rd_header(&r, &version2, &c) ||
            version2 != version)
            return JF_ERR_UNKNOWN_TIMEZONE;
    }
    unsigned time_size = version >= 2 ? 8 : 4;
    if (!counts_valid(&c) || block_bytes(&c, time_size) > r.len - r.pos)
        return JF_ERR_UNKNOWN_TIMEZONE;
    jf_tz *tz = zone_alloc(&c);
    if (tz == NULL)
        return JF_ERR_NOMEM;
    bool ok = read_block(&r, &c, time_size, tz);
    if (ok)
        ok = version >= 2 ? rd_footer(&r, &tz->footer) && footer_continues(tz) : r.pos == r.len;
    if (!ok) {
        free(tz);
        return JF_ERR_UNKNOWN_TIMEZONE;
    }
    assert(tz->type_count >= 1 && r.pos == r.len);
    *out = tz;
    return JF_OK;
}

/* ---- Files and the cache ------------------------------------------------ */

static bool name_valid(const char *name)
{
    size_t n = strnlen(name, TZ_NAME_LEN_MAX + 1);
    if (n == 0 || n > TZ_NAME_LEN_MAX || name[0] == '/' || strstr(name, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!is_alpha(ch) && !is_digit(ch) && ch != '_' && ch != '+' && ch != '-' && ch != '/')
            return false;
    }
    return true;
}

/* Reads a regular file of at most TZ_FILE_BYTES_MAX bytes.  O_NONBLOCK keeps
 * a FIFO planted in the directory from hanging the open. */
static jf_err read_file(const char *path, uint8_t **data, size_t *len)
{
    jf_err err = JF_ERR_UNKNOWN_TIMEZONE;
    uint8_t *buf = NULL;
    size_t n = 0, size;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return err;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TZ_FILE_BYTES_MAX)
        goto done;
    /* One spare byte shows a file that grew since fstat: it is being
     * replaced, and a half-written zone is not one to cache. */
    size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (buf == NULL) {
        err = JF_ERR_NOMEM;
        goto done;
    }
    for (;;) {
        ssize_t got = read(fd, buf + n, size + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            goto done;
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > size)
            goto done;
    }
    assert(n <= size && size <= TZ_FILE_BYTES_MAX);
    err = JF_OK;
done:
    close(fd);
    if (err != JF_OK) {
        free(buf);
        return err;
    }
    *data = buf;
    *len = n;
    return JF_OK;
}

/* Loads a zone by a valid name; the caller holds the cache mutex, so the
 * environment lookup and the load are not repeated by a racing thread. */
static jf_err load_zone(const char *name, jf_tz **out)
{
    const char *dir = getenv("JIFEN_ZONEINFO");
    char path[4096];
    uint8_t *data;
    size_t len;
    if (dir == NULL || dir[0] == '\0')
        dir = "/usr/share/zoneinfo";
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return JF_ERR_UNKNOWN_TIMEZONE;
    jf_err err = read_file(path, &data, &len);
    if (err != JF_OK)
        return err;
    err = parse_tzif(data, len, out);
    free(data);
    if (err == JF_OK) {
        assert(strlen(name) <= TZ_NAME_LEN_MAX);
        memcpy((*out)->name, name, strlen(name) + 1);
    }
    return err;
}

jf_err jf_tz_get(const char *name, const jf_tz **out)
{
    assert(name != NULL && out != NULL);
    *out = NULL;
    if (!name_valid(name))
        return JF_ERR_UNKNOWN_TIMEZONE;
    jf_err err = JF_OK;
    pthread_mutex_lock(&cache_mutex);
    jf_tz *tz = cache_head;
    while (tz != NULL && strcmp(tz->name, name) != 0)
        tz = tz->next;
    if (tz == NULL) {
        if (cache_count >= TZ_CACHE_MAX)
            err = JF_ERR_NOMEM;
        else
            err = load_zone(name, &tz);
        if (err == JF_OK) {
            tz->next = cache_head;
            cache_head = tz;
            cache_count++;
        }
    }
    pthread_mutex_unlock(&cache_mutex);
    assert(err != JF_OK || (tz != NULL && tz->type_count >= 1));
    if (err == JF_OK)
        *out = tz;
    return err;
}

void jf_tz_cache_clear(void)
{
    pthread_mutex_lock(&cache_mutex);
    jf_tz *tz = cache_head;
    while (tz != NULL) {
        jf_tz *next = tz->next;
        free(tz);
        tz = next;
    }
    cache_head = NULL;
    cache_count = 0;
    pthread_mutex_unlock(&cache_mutex);
}

/* ---- Text --------------------------------------------------------------- */

/* Reads exactly n digits. */
static bool take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* "YYYY-MM-DD" at *p with any year 0000..9999 and a real day. */
static bool take_date(const char **p, int *year, int *month, int *day)
{
    const char *s = *p;
    if (!take_digits(&s, 4, year) || *s++ != '-' || !take_digits(&s, 2, month) || *s++ != '-' ||
        !take_digits(&s, 2, day))
        return false;
    if (*month < 1 || *month > 12 || *day < 1 || *day > days_in_month(*year, *month))
        return false;
    *p = s;
    return true;
}

bool jf_date_parse(const char *s, int *year, int *month, int *day)
{
    int y, m, d;
    if (!take_date(&s, &y, &m, &d) || *s != '\0' || y < 1900 || y > 2200)
        return false;
    *year = y;
    *month = m;
    *day = d;
    return true;
}

/* "HH:MM:SS" then an optional fraction, whose first three digits are the
 * milliseconds. */
static bool take_time(const char **p, int64_t *sod_s, int *ms)
{
    const char *s = *p;
    int h, m, sec, digits = 0;
    if (!take_digits(&s, 2, &h) || *s++ != ':' || !take_digits(&s, 2, &m) || *s++ != ':' ||
        !take_digits(&s, 2, &sec) || h > 23 || m > 59 || sec > 59)
        return false;
    *ms = 0;
    if (*s == '.') {
        s++;
        while (is_digit(*s) && digits < 9) {
            if (digits < 3)
                *ms = *ms * 10 + (*s - '0');
            digits++;
            s++;
        }
        if (digits == 0)
            return false;
        for (int i = digits; i < 3; i++)
            *ms *= 10;
    }
    *sod_s = h * 3600 + m * 60 + sec;
    *p = s;
    return true;
}

/* 'Z', 'z' or +hh:mm / -hh:mm, as seconds east of UTC. */
static bool take_offset(const char **p, int32_t *off_s)
{
    const char *s = *p;
    int h, m;
    if (*s == 'Z' || *s == 'z') {
        *off_s = 0;
        *p = s + 1;
        return true;
    }
    if (*s != '+' && *s != '-')
        return false;
    int sign = *s++ == '-' ? -1 : 1;
    if (!take_digits(&s, 2, &h) || *s++ != ':' || !take_digits(&s, 2, &m) || h > 23 || m > 59)
        return false;
    *off_s = sign * (h * 3600 + m * 60);
    *p = s;
    return true;
}

bool jf_time_parse_rfc3339(const char *s, int64_t *utc_ms)
{
    int y, mo, d, ms;
    int64_t sod_s;
    int32_t off_s;
    if (!take_date(&s, &y, &mo, &d) || (*s != 'T' && *s != 't'))
        return false;
    s++;
    if (!take_time(&s, &sod_s, &ms) || !take_offset(&s, &off_s) || *s != '\0')
        return false;
    int64_t utc_s = days_from_civil64(y, mo, d) * SECS_PER_DAY + sod_s - off_s;
    *utc_ms = utc_s * 1000 + ms;
    return true;
}

static char *put_digits(char *p, int64_t v, int width)
{
    assert(v >= 0);
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

void jf_time_format_rfc3339(int64_t utc_ms, char buf[JF_TIME_BUF])
{
    int64_t min_ms = days_from_civil64(0, 1, 1) * MS_PER_DAY;
    int64_t max_ms = days_from_civil64(10000, 1, 1) * MS_PER_DAY - 1;
    if (utc_ms < min_ms)
        utc_ms = min_ms;
    if (utc_ms > max_ms)
        utc_ms = max_ms;
    int64_t days = floor_div(utc_ms, MS_PER_DAY);
    int64_t msod = utc_ms - days * MS_PER_DAY;
    int y, m, d;
    jf_civil_from_days(days, &y, &m, &d);
    char *p = buf;
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, msod / 3600000, 2);
    *p++ = ':';
    p = put_digits(p, msod / 60000 % 60, 2);
    *p++ = ':';
    p = put_digits(p, msod / 1000 % 60, 2);
    *p++ = '.';
    p = put_digits(p, msod % 1000, 3);
    *p++ = 'Z';
    *p = '\0';
    assert(p - buf == 24);
}
