/*
 * The per-tenant hash chain (tamper evidence).
 *
 * hash(n) = BLAKE2b-256(hash(n-1) || canonical(tx n)), with hash(0) = 32
 * zero bytes.  The canonical encoding is versioned and unambiguous: every
 * field is written as its length and bytes (or "-" for null), integers in
 * decimal, postings in their stored order.  Changing any stored field, or
 * deleting or inserting a transaction, breaks every later link.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "ledger.h"

static void put_str(crypto_generichash_state *st, const char *s)
{
    char len[24];
    if (s == NULL) {
        crypto_generichash_update(st, (const uint8_t *)"-;", 2);
        return;
    }
    int n = snprintf(len, sizeof(len), "%zu:", strlen(s));
    crypto_generichash_update(st, (const uint8_t *)len, (size_t)n);
    crypto_generichash_update(st, (const uint8_t *)s, strlen(s));
    crypto_generichash_update(st, (const uint8_t *)";", 1);
}

static void put_int(crypto_generichash_state *st, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRId64 ";", v);
    crypto_generichash_update(st, (const uint8_t *)buf, (size_t)n);
}

void jf_chain_hash(const uint8_t prev[JF_HASH_BYTES], const jf_chain_tx *t,
                   uint8_t out[JF_HASH_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, JF_HASH_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)"jifen-tx-v1;", 12);
    crypto_generichash_update(&st, prev, JF_HASH_BYTES);
    put_int(&st, t->tenant);
    put_int(&st, t->seq);
    put_str(&st, t->id);
    put_str(&st, t->type);
    put_str(&st, t->member_id);
    put_str(&st, t->counterparty_id);
    put_int(&st, t->points);
    put_int(&st, t->delta);
    put_str(&st, t->reverses);
    put_str(&st, t->hold_id);
    put_str(&st, t->order_id);
    put_int(&st, t->order_amount);
    put_str(&st, t->order_currency);
    put_str(&st, t->reason);
    put_str(&st, t->note);
    put_str(&st, t->channel);
    put_str(&st, t->store_id);
    put_str(&st, t->actor);
    put_str(&st, t->metadata);
    put_str(&st, t->idem_key);
    put_int(&st, t->created_at);
    put_int(&st, t->posting_count);
    for (int i = 0; i < t->posting_count; i++) {
        put_str(&st, t->postings[i].account);
        put_int(&st, t->postings[i].amount);
    }
    crypto_generichash_final(&st, out, JF_HASH_BYTES);
}
