/*
 * The chain's canonical encoding (src/core/chain.c) must never change:
 * `jifen verify` recomputes every stored link (I7), so a database written by
 * any earlier version has to hash the same today.  Each case's expected
 * hash was computed by the first implementation (an update per field,
 * integers through snprintf); the cases cover nulls, empty and multi-byte
 * strings, integer extremes, a string longer than the encoder's buffer and
 * the most postings a transaction carries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ledger.h"

static void hex(const uint8_t *h, char out[2 * JF_HASH_BYTES + 1])
{
    for (int i = 0; i < JF_HASH_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void assert_hash(const uint8_t prev[JF_HASH_BYTES], const jf_chain_tx *t, const char *want)
{
    uint8_t h[JF_HASH_BYTES];
    char got[2 * JF_HASH_BYTES + 1];
    jf_chain_hash(prev, t, h);
    hex(h, got);
    assert_string_equal(got, want);
}

static void test_golden_hashes(void **state)
{
    (void)state;
    uint8_t zero[JF_HASH_BYTES] = {0}, prev[JF_HASH_BYTES];
    for (int i = 0; i < JF_HASH_BYTES; i++)
        prev[i] = (uint8_t)(i * 7 + 1);

    /* An earn as the writer records it. */
    jf_posting p2[2] = {{"points:mem_01HXYZ", 120}, {"issuance", -120}};
    jf_chain_tx earn = {.tenant = 1,
                        .seq = 1,
                        .points = 120,
                        .delta = 120,
                        .order_amount = -1,
                        .created_at = 1764633600000,
                        .id = "tx_0193a1b2c3d4e5f60000001",
                        .type = "earn",
                        .member_id = "mem_01HXYZ",
                        .actor = "key_ab12cd34",
                        .idem_key = "order-1",
                        .postings = p2,
                        .posting_count = 2};
    assert_hash(zero, &earn, "1c93ea9edf05ecdacb5fc30657393b8c1e4e1ab32a2febff69e18fde03270536");

    /* Every field set, multi-byte and empty strings, integer extremes. */
    jf_posting p6[6] = {
        {"points:mem_a", INT64_MIN}, {"points:mem_b", INT64_MAX},   {"held:mem_a", 0},
        {"redemption", -1},          {"expired", 9007199254740991}, {"", 1}};
    jf_chain_tx full = {.tenant = 9223372036854775807,
                        .seq = -1,
                        .points = 0,
                        .delta = -9007199254740991,
                        .order_amount = 12345,
                        .created_at = INT64_MIN,
                        .id = "tx_x",
                        .type = "transfer",
                        .member_id = "mem_a",
                        .counterparty_id = "mem_b",
                        .reverses = "tx_prev",
                        .hold_id = "hold_1",
                        .order_id = "订单-42",
                        .order_currency = "CNY",
                        .reason = "",
                        .note = "note; with: colons",
                        .channel = "pos",
                        .store_id = "店铺 1",
                        .actor = "system",
                        .metadata = "{\"k\":\"v\"}",
                        .idem_key = "键",
                        .postings = p6,
                        .posting_count = 6};
    assert_hash(prev, &full, "c392acf3153af89bff46cff2a355e189f21cc68dad8bd824a6df4d4074d2c057");

    /* A note longer than the encoder's buffer, between short fields. */
    char note[1500];
    for (size_t i = 0; i < sizeof(note) - 1; i++)
        note[i] = (char)('a' + i % 26);
    note[sizeof(note) - 1] = '\0';
    char meta[700];
    memset(meta, 'm', sizeof(meta) - 1);
    meta[sizeof(meta) - 1] = '\0';
    jf_chain_tx longer = earn;
    longer.note = note;
    longer.metadata = meta;
    longer.seq = 2;
    assert_hash(prev, &longer, "cdc006c8e4734b27a4d5fc24505edc757554430956cda3c7fa093c02e7e00e1c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_hashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
