/*
 * The writer's string copies and ids without snprintf (core.h jf_str_copy,
 * ids.c jf_id_new_ordered, tx.c's account names): each must write exactly
 * what the snprintf it replaced wrote, cut where it would have cut.  Ids are
 * checked by reading their parts back (the time, the counter, the suffix);
 * the random test prints its seed (SEED=n replays a run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "seed.h"

static void assert_copy_as_snprintf(size_t cap, const char *s)
{
    char want[64], got[64];
    memset(want, 'x', sizeof(want));
    memset(got, 'x', sizeof(got));
    snprintf(want, cap, "%s", s);
    jf_str_copy(got, cap, s);
    assert_memory_equal(got, want, cap);
    assert_int_equal(got[cap], 'x'); /* nothing written past cap */
}

static void test_str_copy(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "a", "mem_0123456789abcdef0123", "积分", "exactly7"};
    for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++)
        for (size_t cap = 1; cap < 40; cap++)
            assert_copy_as_snprintf(cap, texts[t]);
    char got[4] = "zzz";
    jf_str_copy(got, sizeof(got), NULL); /* a NULL column */
    assert_string_equal(got, "");
}

/* An id's parts: the prefix, 11 hex digits of milliseconds, 8 of the
 * counter, 4 of the suffix. */
static void id_parts(const char *id, const char *prefix, uint64_t *ms, uint32_t *n, char suffix[5])
{
    size_t p = strlen(prefix);
    assert_int_equal(strlen(id), p + 23);
    assert_memory_equal(id, prefix, p);
    for (size_t i = p; i < p + 23; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
    char part[12];
    memcpy(part, id + p, 11);
    part[11] = '\0';
    *ms = strtoull(part, NULL, 16);
    memcpy(part, id + p + 11, 8);
    part[8] = '\0';
    *n = (uint32_t)strtoul(part, NULL, 16);
    memcpy(suffix, id + p + 19, 5);
}

static void test_ordered_ids(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_ids");
    static const int64_t fixed[] = {0, 1, 15, 16, 1764720000123, 0xfffffffffffLL, -5};
    char id[JF_ID_LEN_MAX], first_suffix[5];
    uint64_t ms = 0;
    uint32_t n = 0, last = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t now = i < 7 ? fixed[i] : (int64_t)rand_r(&seed) * 1000 + rand_r(&seed) % 1000;
        const char *prefix = i % 2 ? "txn_" : "lot_";
        char suffix[5];
        jf_id_new_ordered(prefix, now, id);
        id_parts(id, prefix, &ms, &n, suffix);
        assert_int_equal(ms, now < 0 ? 0 : (uint64_t)now & 0xfffffffffffULL);
        if (i == 0)
            memcpy(first_suffix, suffix, 5);
        else
            assert_int_equal(n, last + 1); /* one process: one counter */
        assert_string_equal(suffix, first_suffix);
        char want[JF_ID_LEN_MAX];
        snprintf(want, sizeof(want), "%s%011llx%08x%s", prefix, (unsigned long long)ms, n, suffix);
        assert_string_equal(id, want);
        last = n;
    }
}

static void test_account_names(void **state)
{
    (void)state;
    jf_tx tx = {0};
    jf_tx_post(&tx, "points", "mem_1", 5);
    jf_tx_post(&tx, "issuance", NULL, -5);
    assert_int_equal(tx.posting_count, 2);
    assert_string_equal(tx.postings[0].account, "member:mem_1:points");
    assert_string_equal(tx.postings[1].account, "program:issuance");
    /* The longest member id there is: the name is cut as snprintf cuts it. */
    char long_id[JF_ID_LEN_MAX], want[sizeof(tx.postings[0].account)];
    memset(long_id, 'm', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    jf_tx_post(&tx, "growth", long_id, 1);
    snprintf(want, sizeof(want), "member:%s:%s", long_id, "growth");
    assert_string_equal(tx.postings[2].account, want);
    assert_int_equal(jf_tx_posting_find(&tx, "growth", long_id), 2);
    /* A kind long enough that the name must be cut. */
    char kind[40];
    memset(kind, 'k', sizeof(kind) - 1);
    kind[sizeof(kind) - 1] = '\0';
    jf_tx_post(&tx, kind, long_id, 1);
    char full[2 * sizeof(want)];
    int n = snprintf(full, sizeof(full), "member:%s:%s", long_id, kind);
    assert_true(n > (int)sizeof(want)); /* longer than the name can be */
    full[sizeof(want) - 1] = '\0';      /* where snprintf into the name cuts */
    assert_string_equal(tx.postings[3].account, full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str_copy),
        cmocka_unit_test(test_ordered_ids),
        cmocka_unit_test(test_account_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
