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

#endif
