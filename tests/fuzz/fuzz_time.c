/*
 * Fuzzes the parsers of the times and dates every request may carry
 * (src/core/tz.c): RFC 3339 instants and YYYY-MM-DD dates.  Besides the
 * sanitizers: a time accepted is within years 0000..9999 and formats
 * (jf_time_format_rfc3339) to text that parses back to the same instant; a
 * date accepted is a real date of 1900..2200 and the calendar functions give
 * it back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tz.h"

#define TEXT_MAX 256
/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z. */
#define YEAR0_MS INT64_C(-62167219200000)
#define YEAR9999_END_MS INT64_C(253402300799999)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fail(const char *what, const char *text)
{
    fprintf(stderr, "fuzz_time: %s: \"%s\"\n", what, text);
    abort();
}

static void check_time(const char *text)
{
    int64_t ms = INT64_MIN, again = INT64_MIN;
    char out[JF_TIME_BUF];
    if (!jf_time_parse_rfc3339(text, &ms)) {
        if (ms != INT64_MIN)
            fail("a refused time changed its output", text);
        return;
    }
    if (ms < YEAR0_MS - 86400000 || ms > YEAR9999_END_MS + 86400000)
        fail("a time accepted beyond the years 0000..9999 and a day", text);
    if (ms < YEAR0_MS || ms > YEAR9999_END_MS)
        return; /* an offset carried it out of the years the format writes */
    jf_time_format_rfc3339(ms, out);
    if (strlen(out) != 24 || !jf_time_parse_rfc3339(out, &again) || again != ms)
        fail("a time does not survive formatting", text);
}

static void check_date(const char *text)
{
    int y = -1, m = -1, d = -1, y2, m2, d2;
    if (!jf_date_parse(text, &y, &m, &d)) {
        if (y != -1 || m != -1 || d != -1)
            fail("a refused date changed its outputs", text);
        return;
    }
    if (y < 1900 || y > 2200 || m < 1 || m > 12 || d < 1 || d > 31)
        fail("a date accepted out of range", text);
    jf_civil_from_days(jf_days_from_civil(y, m, d), &y2, &m2, &d2);
    if (y2 != y || m2 != m || d2 != d)
        fail("a date accepted that the calendar does not have", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[TEXT_MAX + 1];
    if (size > TEXT_MAX)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    check_time(text);
    check_date(text);
    return 0;
}
