/*
 * Time zones, civil dates and RFC 3339 times for the core.
 *
 * Ledger instants are UTC milliseconds since the Unix epoch (POSIX time, no
 * leap seconds).  Calendar rules (birthdays, "double points on Tuesday",
 * end-of-month expiry) are evaluated in the program's IANA time zone, which
 * this module reads from the TZif files of the system (RFC 8536) instead of
 * going through glibc: glibc keeps its zone in the process-global TZ, which
 * threads cannot share.  A loaded zone is immutable, so any number of threads
 * may use one jf_tz at once.
 *
 * The date helpers use the proleptic Gregorian calendar and are pure
 * functions; none of the functions here allocates except jf_tz_get.
 */
#ifndef JF_TZ_H
#define JF_TZ_H

#include <stdbool.h>
#include <stdint.h>

#include "jifen/errors.h"

typedef struct jf_tz jf_tz; /* immutable once loaded; shareable between threads */

/*
 * Returns the zone for an IANA name ("Asia/Shanghai", "UTC"), loading and
 * caching it on first use (a mutex-protected cache; entries live until
 * jf_tz_cache_clear).  The cache owns the zone: never free it.
 *
 * Name validation: 1..64 characters of A-Z a-z 0-9 '_' '+' '-' '/', no "..",
 * no leading '/'.  Zone directory: the environment variable JIFEN_ZONEINFO,
 * else /usr/share/zoneinfo, read when a name is first loaded; the cache is
 * keyed by name alone, so clear it after changing the directory.  "UTC" and
 * "Etc/UTC" are read from files like every other zone.  A footer with a DST
 * name but no change rule is refused rather than guessed, and so is one that
 * disagrees with the last transition's offset (RFC 8536, section 3.3).
 *
 * Errors: JF_ERR_UNKNOWN_TIMEZONE for a bad name, a file that is missing,
 * unreadable, not a regular file, larger than 1 MiB, or not a valid TZif
 * file (versions 1 to 4; a corrupt file never crashes the reader), and for
 * zones that count leap seconds (the right/ tree), whose instants are not
 * POSIX time.  JF_ERR_NOMEM when memory runs out or the cache is full.
 * Failures are not cached, and *out is set to NULL on failure.
 */
jf_err jf_tz_get(const char *name, const jf_tz **out);

/* Frees every cached zone.  Every jf_tz pointer handed out before becomes
 * invalid, so call this only when no other thread uses a zone (at shutdown,
 * or between tests). */
void jf_tz_cache_clear(void);

/*
 * UTC offset in seconds (east positive) at a UTC instant, using the
 * transitions, then the POSIX TZ footer string (v2+) for instants after the
 * last transition (footer rules: std/dst names incl. <+08> quoting, offsets,
 * Mm.w.d/time, Jn and n rules, time ranging -167..167h).  Instants before the
 * first transition use the zone's first time type (RFC 8536).  Defined for
 * every int64 instant; never fails.
 */
int32_t jf_tz_offset_s(const jf_tz *tz, int64_t utc_s);

/* Local calendar of a UTC instant (ms): year, month 1..12, day 1..31,
 * weekday 0=Sunday, hour, min, sec. */
typedef struct jf_civil {
    int year, month, day, wday, hour, minute, second;
} jf_civil;

/* Fills *out with the local wall time of utc_ms in tz (milliseconds are
 * dropped, rounding toward the past).  Defined for every int64 instant. */
void jf_tz_to_civil(const jf_tz *tz, int64_t utc_ms, jf_civil *out);

/*
 * The UTC instant (ms) of a local wall time.  Ambiguous (fall back): the
 * earliest instant, however many times the zone shows that wall time.  Nonexistent (spring forward
 * gap): the instant the wall clock jumps to, i.e. the transition itself; New York's 2026-03-08
 * 02:30 gives 07:00Z, which reads 03:00 EDT.  Month and day outside their ranges carry as in
 * jf_days_from_civil, so do hour, minute and second (they are added to local midnight).  Results
 * beyond int64 milliseconds saturate.
 */
int64_t jf_tz_from_civil_ms(const jf_tz *tz, int year, int month, int day, int hour, int minute,
                            int second);

/*
 * Expiry helper: the first instant (local midnight) of the period AFTER the
 * one that contains the local date of utc_ms shifted by add_months months.
 * A shifted day that the target month lacks becomes its last day, so Jan 31
 * plus one month is Feb 28 (or 29).  Weeks run Monday to Sunday (ISO 8601),
 * quarters start in January, April, July and October.
 * E.g. Asia/Shanghai, earn 2026-03-15T10:00+08, add_months 12, YEAR ->
 * 2028-01-01T00:00+08.  With add_months >= 0 the result is always after
 * utc_ms: where the wall clock was set back past that midnight (Alaska,
 * 1867), it is the midnight's next occurrence, or utc_ms's next second when
 * the clock never shows it again.  |add_months| must be at most 120000 (an assertion:
 * callers validate against JF_EXPIRY_MONTHS_MAX first).
 */
typedef enum jf_period {
    JF_PERIOD_DAY,
    JF_PERIOD_WEEK,
    JF_PERIOD_MONTH,
    JF_PERIOD_QUARTER,
    JF_PERIOD_YEAR
} jf_period;
int64_t jf_tz_period_end_ms(const jf_tz *tz, int64_t utc_ms, int add_months, jf_period period);

/* Start (local midnight, ms UTC) of the local day containing utc_ms.  When
 * midnight falls in a gap, the day starts at the transition. */
int64_t jf_tz_day_start_ms(const jf_tz *tz, int64_t utc_ms);

/*
 * Civil date arithmetic (proleptic Gregorian, after Howard Hinnant's
 * algorithms).  jf_days_from_civil counts days since 1970-01-01; a month
 * outside 1..12 carries into the year (month 13 is January of the next year)
 * and a day outside the month carries too (day 0 is the last day of the
 * previous month).  jf_civil_from_days is its inverse for days within
 * +-10^11 (years within about +-2.7e8), an assertion.
 */
int64_t jf_days_from_civil(int year, int month, int day);
void jf_civil_from_days(int64_t days, int *year, int *month, int *day);

/* "YYYY-MM-DD", a real date (leap years), year 1900..2200.  Returns false
 * and leaves the outputs alone for anything else, including trailing text. */
bool jf_date_parse(const char *s, int *year, int *month, int *day);

/*
 * RFC 3339: "2026-11-23T10:00:00Z", with optional fraction (up to 9 digits,
 * truncated to ms), 'Z'/'z' or +-hh:mm offset; 't' allowed.  Rejects
 * anything else (trailing text, bad ranges; leap second 60 is rejected).
 * Years are 0000..9999 as RFC 3339 says.  Returns false and leaves *utc_ms
 * alone on rejection.
 */
bool jf_time_parse_rfc3339(const char *s, int64_t *utc_ms);

/* Always "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL).  Instants before year
 * 0000 or after 9999 are clamped to the first or last millisecond of that
 * range, so the length never changes. */
#define JF_TIME_BUF 32
void jf_time_format_rfc3339(int64_t utc_ms, char buf[JF_TIME_BUF]);

#endif
