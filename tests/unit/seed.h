/*
 * The seed of a randomized unit test: SEED=n in the environment replays a
 * run, else the time; printed with the test's name either way, so that a
 * failure can be replayed.
 */
#ifndef JF_TEST_SEED_H
#define JF_TEST_SEED_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline unsigned test_seed(const char *name)
{
    const char *env = getenv("SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    printf("%s: seed=%u\n", name, seed);
    return seed;
}

/* Pieces of random text for the JSON writers' tests (test_jsonw.c,
 * test_tx_view.c), all valid UTF-8: ASCII, quotes, a backslash, control
 * characters, multi-byte text and the edges jansson accepts (U+10FFFF,
 * U+2028, U+00A9). */
#define TEST_TEXT_PIECES                                                                           \
    "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x7f", "é", "积", "😀",               \
        "\xf4\x8f\xbf\xbf", "\xe2\x80\xa8", "\xc2\xa9"

#endif
