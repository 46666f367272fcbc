/*
 * Parsing under failed allocations (test plan T3): jf_json_parse_body and
 * jf_json_loads_whole, with each allocation of a parse failed in turn, and
 * with it and every later one failed.  A parse then answers out_of_memory
 * and nothing, or, when no failure reached it, the same tree as without
 * any.  It never aborts and never reads past its buffers (the ASan build).
 *
 * Every body and stored text is read by src/core/jsonr.c, whose scratch
 * buffer (an escaped string's bytes, a real's text) and whose jansson values
 * are allocated as it goes: a failure at any of them must come back as
 * out_of_memory with the partial tree freed.  The bodies below were made
 * for jansson 2.14's lexer, which jsonr.c replaced: it dropped a byte when
 * growing its token buffer failed (akheron/jansson#362) and then read past
 * the buffer and aborted; they put a closing quote, an escape and a
 * number's last digit at each of that buffer's growth points (16, 32, 64,
 * ... bytes of a token), and serve the reader as well.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core.h"
#include "rigged_alloc.h"

/* A body whose string tokens (quotes included) are len bytes long, one of
 * them ending in an escape, and a long number. */
static void body_make(char *out, size_t cap, size_t len)
{
    char s[300];
    size_t n = len - 2;
    memset(s, 'a', n);
    s[n] = '\0';
    char e[300];
    memcpy(e, s, n + 1);
    if (n >= 2) {
        e[n - 2] = '\\';
        e[n - 1] = 'n';
    }
    snprintf(out, cap, "{\"%s\": \"%s\", \"note\": [\"%s\", 12345678901234%zu]}", s, e, s, len);
}

/* Parses text with the n-th allocation failed (and every later one, with
 * all_after); checks the outcome against want.  Returns whether a failure
 * reached the parse. */
static bool parse_rigged(const char *text, const json_t *want, long n, bool all_after, bool stored)
{
    char detail[256] = "";
    jf_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.op = JF_OP_EARN;
    ctx.detail = detail;
    json_t *got = NULL;
    jf_json_alloc_reset();
    arm(FAULT_ALLOC, n, all_after);
    jf_err err = JF_OK;
    if (stored)
        got = jf_json_loads_whole(text, 0);
    else
        err = jf_json_parse_body(&ctx, text, strlen(text), &got);
    long failed = disarm();
    bool clean = failed == 0 ? err == JF_OK && json_equal(got, want)
                             : got == NULL && (stored || err == JF_ERR_NOMEM);
    if (!clean) {
        fprintf(stderr, "parse of %s with allocation %ld failed%s: error %d\n", text, n,
                all_after ? " and every later one" : "", (int)err);
        rig_print_where();
    }
    if (failed == 0) {
        assert_int_equal(err, JF_OK);
        assert_true(json_equal(got, want));
    } else if (stored) {
        assert_null(got);
    } else {
        assert_int_equal(err, JF_ERR_NOMEM);
        assert_null(got);
    }
    json_decref(got);
    return failed > 0;
}

/* Every allocation of the parse of text failed in turn, alone and with all
 * after it. */
static void parse_loop(const char *text, bool stored)
{
    json_t *want = json_loads(text, 0, NULL);
    assert_non_null(want);
    for (int mode = 0; mode < 2; mode++)
        for (long n = 1; parse_rigged(text, want, n, mode == 1, stored); n++)
            assert_true(n < 100000);
    json_decref(want);
}

/* The loop on the bodies of token lengths 3 to len_max. */
static void parse_lengths(size_t len_max, bool stored)
{
    char body[1024];
    for (size_t len = 3; len <= len_max; len++) {
        body_make(body, sizeof(body), len);
        parse_loop(body, stored);
    }
}

static void test_bodies_fail_cleanly(void **state)
{
    (void)state;
    parse_lengths(260, false);
}

static void test_stored_text_fails_cleanly(void **state)
{
    (void)state;
    parse_lengths(140, true);
}

int main(void)
{
    jf_json_init();
    rig_prepare();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies_fail_cleanly),
        cmocka_unit_test(test_stored_text_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
