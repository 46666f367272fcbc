/*
 * The per-tenant hash chain (tamper evidence).
 *
 * hash(n) = BLAKE2b-256(hash(n-1) || canonical(tx n)), with hash(0) = 32
 * zero bytes.  The canonical encoding is versioned and unambiguous: every
 * field is written as its length and bytes (or "-" for null), integers in
 * decimal, postings in their stored order.  Changing any stored field, or
 * deleting or inserting a transaction, breaks every later link.
 */
#include <string.h>

#include <sodium.h>

#include "ledger.h"

/* The encoding is gathered in a buffer and hashed in a few large updates:
 * one update per field, and snprintf per integer, were a twentieth of the
 * writer's time per earn (docs/PERFORMANCE-HISTORY.md, "Since commit 7b7e6c9"). */
typedef struct {
    crypto_generichash_state st;
    size_t len;
    uint8_t buf[512];
} chain_enc;

static void put_bytes(chain_enc *e, const void *p, size_t n)
{
    if (e->len + n > sizeof(e->buf)) {
        crypto_generichash_update(&e->st, e->buf, e->len);
        e->len = 0;
    }
    if (n > sizeof(e->buf)) {
        crypto_generichash_update(&e->st, p, n);
        return;
    }
    memcpy(e->buf + e->len, p, n);
    e->len += n;
}

static void put_int(chain_enc *e, int64_t v)
{
    char buf[JF_I64_DEC_MAX + 1];
    size_t n = jf_i64_dec(v, buf);
    buf[n++] = ';';
    put_bytes(e, buf, n);
}

static void put_str(chain_enc *e, const char *s)
{
    if (s == NULL) {
        put_bytes(e, "-;", 2);
        return;
    }
    size_t len = strlen(s);
    char head[JF_I64_DEC_MAX + 1];
    size_t n = jf_i64_dec((int64_t)len, head);
    head[n++] = ':';
    put_bytes(e, head, n);
    put_bytes(e, s, len);
    put_bytes(e, ";", 1);
}

void jf_chain_hash(const uint8_t prev[JF_HASH_BYTES], const jf_chain_tx *t,
                   uint8_t out[JF_HASH_BYTES])
{
    chain_enc e;
    e.len = 0;
    crypto_generichash_init(&e.st, NULL, 0, JF_HASH_BYTES);
    put_bytes(&e, "jifen-tx-v1;", 12);
    put_bytes(&e, prev, JF_HASH_BYTES);
    put_int(&e, t->tenant);
    put_int(&e, t->seq);
    put_str(&e, t->id);
    put_str(&e, t->type);
    put_str(&e, t->member_id);
    put_str(&e, t->counterparty_id);
    put_int(&e, t->points);
    put_int(&e, t->delta);
    put_str(&e, t->reverses);
    put_str(&e, t->hold_id);
    put_str(&e, t->order_id);
    put_int(&e, t->order_amount);
    put_str(&e, t->order_currency);
    put_str(&e, t->reason);
    put_str(&e, t->note);
    put_str(&e, t->channel);
    put_str(&e, t->store_id);
    put_str(&e, t->actor);
    put_str(&e, t->metadata);
    put_str(&e, t->idem_key);
    put_int(&e, t->created_at);
    put_int(&e, t->posting_count);
    for (int i = 0; i < t->posting_count; i++) {
        put_str(&e, t->postings[i].account);
        put_int(&e, t->postings[i].amount);
    }
    crypto_generichash_update(&e.st, e.buf, e.len);
    crypto_generichash_final(&e.st, out, JF_HASH_BYTES);
}
