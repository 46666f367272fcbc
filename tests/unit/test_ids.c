/*
 * The writer's string copies and ids without snprintf (core.h jf_str_copy,
 * ids.c jf_id_new_ordered, tx.c's account names): each must write exactly
 * what the snprintf it replaced wrote, cut where it would have cut.  Ids are
 * checked by reading their parts back (the time, the counter, the suffix);
 * the random tests print their seed (SEED=n replays a run).  Transaction
 * ids (txid.h) are checked against snprintf and read back to their tenant
 * and seq, and every string that is not exactly such an id reads as none.
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
#include "txid.h"
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

/* The shared Feistel network (txid.h) gives, with halves of 20 bits, what
 * referral codes were made with before it was shared (values from that
 * code, commit 505f4a9): a code once printed must never change. */
static void test_feistel_known(void **state)
{
    (void)state;
    uint8_t key[JF_TXID_KEY_BYTES];
    for (int i = 0; i < JF_TXID_KEY_BYTES; i++)
        key[i] = (uint8_t)(i * 17 + 3);
    static const uint64_t in[] = {1, 2, 3, 1000, 123456789, 0x7fffffffff, 0xffffffffff};
    static const uint64_t out[] = {0x5d1536c9ec, 0x7a171f0e27, 0x9701ff5800, 0x76b58df46b,
                                   0xe7e9bea548, 0xadbf2b5bea, 0xe9a5881846};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        assert_int_equal(jf_feistel(key, in[i], 20, false), out[i]);
        assert_int_equal(jf_feistel(key, out[i], 20, true), in[i]);
    }
}

static int64_t rand_below(unsigned *seed, int64_t n)
{
    uint64_t r =
        (uint64_t)rand_r(seed) << 42 ^ (uint64_t)rand_r(seed) << 21 ^ (uint64_t)rand_r(seed);
    return (int64_t)(r % (uint64_t)n);
}

/* A lower-case hex digit other than c. */
static char other_hex_digit(char c, unsigned *seed)
{
    static const char hex[] = "0123456789abcdef";
    int64_t v = strchr(hex, c) - hex;
    return hex[(v + 1 + rand_below(seed, 15)) % 16];
}

/* A transaction id is "txn_", the second as %08x and the enciphered tenant
 * and seq as %016llx; it reads back to them under its key, and to nothing
 * else under another key or with any digit of its block changed. */
static void test_txids(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_txids");
    uint8_t key[JF_TXID_KEY_BYTES], other[JF_TXID_KEY_BYTES];
    for (int i = 0; i < JF_TXID_KEY_BYTES; i++) {
        key[i] = (uint8_t)rand_r(&seed);
        other[i] = (uint8_t)(key[i] ^ (i == 0 ? 1 : 0));
    }
    char id[JF_ID_LEN_MAX], bad[JF_ID_LEN_MAX], want[16];
    int64_t t = 0, s = 0;
    for (int i = 0; i < 5000; i++) {
        int64_t tenant =
            i % 5 == 0 ? JF_TXID_TENANT_MAX : 1 + rand_below(&seed, JF_TXID_TENANT_MAX);
        int64_t seq =
            i % 7 == 0 ? (i % 2 ? 1 : JF_TXID_SEQ_MAX) : 1 + rand_below(&seed, JF_TXID_SEQ_MAX);
        int64_t now = i % 11 == 0 ? -1 : rand_below(&seed, INT64_C(4000000000000));
        assert_true(jf_txid_make(key, tenant, seq, now, id));
        assert_int_equal(strlen(id), JF_TXID_LEN);
        snprintf(want, sizeof(want), "txn_%08llx",
                 (unsigned long long)(now < 0 ? 0 : now / 1000) & 0xffffffffULL);
        assert_memory_equal(id, want, 12);
        for (int k = 4; k < JF_TXID_LEN; k++)
            assert_non_null(strchr("0123456789abcdef", id[k]));
        assert_true(jf_txid_parse(key, id, strlen(id), &t, &s));
        assert_int_equal(t, tenant);
        assert_int_equal(s, seq);
        assert_false(jf_txid_parse(other, id, strlen(id), &t, &s) && t == tenant && s == seq);
        /* Another hex digit in the block: another block, so (a permutation)
         * another tenant and seq, or none.  In the time: the same. */
        memcpy(bad, id, sizeof(bad));
        size_t at = 4 + (size_t)rand_below(&seed, JF_TXID_LEN - 4);
        bad[at] = other_hex_digit(bad[at], &seed);
        bool parsed = jf_txid_parse(key, bad, strlen(bad), &t, &s);
        if (at < 4 + JF_TXID_TIME_DIGITS)
            assert_true(parsed && t == tenant && s == seq);
        else
            assert_false(parsed && t == tenant && s == seq);
        /* Anything but a lower-case hex digit, anywhere, or another length:
         * not an id. */
        memcpy(bad, id, sizeof(bad));
        at = (size_t)rand_below(&seed, JF_TXID_LEN);
        static const char others[] = "ABCDEFGgz/:@ `\xff";
        bad[at] = others[rand_below(&seed, sizeof(others) - 1)];
        assert_false(jf_txid_parse(key, bad, strlen(bad), &t, &s));
        assert_false(jf_txid_parse(key, id, JF_TXID_LEN - 1, &t, &s));
        memcpy(bad, id, JF_TXID_LEN);
        bad[JF_TXID_LEN] = '0';
        assert_false(jf_txid_parse(key, bad, JF_TXID_LEN + 1, &t, &s));
    }
    /* Out of range: no id, and nothing written. */
    memset(id, 'q', sizeof(id));
    assert_false(jf_txid_make(key, 0, 1, 0, id));
    assert_false(jf_txid_make(key, JF_TXID_TENANT_MAX + 1, 1, 0, id));
    assert_false(jf_txid_make(key, 1, 0, 0, id));
    assert_false(jf_txid_make(key, 1, JF_TXID_SEQ_MAX + 1, 0, id));
    assert_int_equal(id[0], 'q');
    /* The older forms, and none. */
    jf_id_new_ordered("txn_", 1764720000123, id);
    assert_false(jf_txid_parse(key, id, strlen(id), &t, &s));
    jf_id_new("txn_", id);
    assert_false(jf_txid_parse(key, id, strlen(id), &t, &s));
    assert_false(jf_txid_parse(key, NULL, 0, &t, &s));
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
        cmocka_unit_test(test_str_copy),      cmocka_unit_test(test_ordered_ids),
        cmocka_unit_test(test_feistel_known), cmocka_unit_test(test_txids),
        cmocka_unit_test(test_account_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
