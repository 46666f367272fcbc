/*
 * Unit test of the one error table (include/jifen/errors.h).
 *
 * The codes are a public contract that integrators match on, so the table is
 * walked here row by row: the enum has no gaps, every code is non-empty
 * snake_case and unique, every message is a sentence ending in '.', every
 * status is a real HTTP status, and the jf_err_* functions answer exactly
 * what the table says, falling back to "internal_error" out of range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "jifen/errors.h"

typedef struct row {
    int value;
    const char *name;
    const char *code;
    const char *message;
    int status;
} row;

static const row rows[] = {
#define ROW(name, code, msg, status) {JF_ERR_##name, #name, code, msg, status},
    JF_ERRNO_MAP(ROW)
#undef ROW
};

#define ROW_COUNT (sizeof rows / sizeof rows[0])

/* The enum counts 0, 1, 2, ... in table order, and JF_ERR__COUNT ends it. */
static void enum_has_no_gaps(void **state)
{
    (void)state;
    assert_int_equal(ROW_COUNT, JF_ERR__COUNT);
    for (size_t i = 0; i < ROW_COUNT; i++)
        if (rows[i].value != (int)i)
            fail_msg("JF_ERR_%s is %d, expected %zu", rows[i].name, rows[i].value, i);
    assert_int_equal(JF_OK, 0);
    assert_int_equal(JF_ERR_OK, 0);
}

/* [a-z][a-z0-9]* words joined by single underscores. */
static bool is_snake_case(const char *s)
{
    if (s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; s[i] != '\0'; i++) {
        char c = s[i];
        if (c == '_') {
            if (s[i + 1] == '\0' || s[i + 1] == '_')
                return false;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
}

static void codes_are_snake_case_and_unique(void **state)
{
    (void)state;
    for (size_t i = 0; i < ROW_COUNT; i++) {
        assert_non_null(rows[i].code);
        if (rows[i].code[0] == '\0' || !is_snake_case(rows[i].code))
            fail_msg("JF_ERR_%s has code \"%s\"", rows[i].name, rows[i].code);
        for (size_t j = 0; j < i; j++)
            if (strcmp(rows[i].code, rows[j].code) == 0)
                fail_msg("JF_ERR_%s and JF_ERR_%s share \"%s\"", rows[j].name, rows[i].name,
                         rows[i].code);
    }
}

static void messages_are_sentences(void **state)
{
    (void)state;
    for (size_t i = 0; i < ROW_COUNT; i++) {
        const char *m = rows[i].message;
        assert_non_null(m);
        size_t n = strlen(m);
        if (n < 2 || m[n - 1] != '.' || m[0] < 'A' || m[0] > 'Z')
            fail_msg("JF_ERR_%s has message \"%s\"", rows[i].name, m);
    }
}

static void statuses_are_http(void **state)
{
    (void)state;
    for (size_t i = 0; i < ROW_COUNT; i++)
        if (rows[i].status < 200 || rows[i].status > 599)
            fail_msg("JF_ERR_%s has status %d", rows[i].name, rows[i].status);
    /* Only success answers 2xx; every failure is a 4xx or 5xx. */
    assert_int_equal(rows[JF_ERR_OK].status, 200);
    assert_string_equal(rows[JF_ERR_OK].code, "ok");
    for (size_t i = 1; i < ROW_COUNT; i++)
        assert_true(rows[i].status >= 400);
}

static void functions_agree_with_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ROW_COUNT; i++) {
        jf_err err = (jf_err)rows[i].value;
        assert_string_equal(jf_err_code(err), rows[i].code);
        assert_string_equal(jf_err_message(err), rows[i].message);
        assert_int_equal(jf_err_http_status(err), rows[i].status);
    }
}

/* Anything outside the enum reads as JF_ERR_INTERNAL, never as NULL. */
static void out_of_range_is_internal_error(void **state)
{
    (void)state;
    static const int outside[] = {JF_ERR__COUNT, JF_ERR__COUNT + 1, -1, 1000, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        jf_err err = (jf_err)outside[i];
        assert_string_equal(jf_err_code(err), "internal_error");
        assert_non_null(jf_err_message(err));
        assert_string_equal(jf_err_message(err), jf_err_message(JF_ERR_INTERNAL));
        assert_int_equal(jf_err_http_status(err), jf_err_http_status(JF_ERR_INTERNAL));
    }
    assert_string_equal(jf_err_code(JF_ERR_INTERNAL), "internal_error");
    assert_int_equal(jf_err_http_status(JF_ERR_INTERNAL), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(enum_has_no_gaps),
        cmocka_unit_test(codes_are_snake_case_and_unique),
        cmocka_unit_test(messages_are_sentences),
        cmocka_unit_test(statuses_are_http),
        cmocka_unit_test(functions_agree_with_table),
        cmocka_unit_test(out_of_range_is_internal_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
