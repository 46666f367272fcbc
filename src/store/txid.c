/*
 * Transaction ids that carry their tenant and seq (txid.h).  Hex by hand, as
 * ids.c makes its ids: snprintf cost about 1,800 instructions an id on the
 * writer.
 */
#include <string.h>

#include <sodium.h>

#include "txid.h"

_Static_assert(JF_TXID_KEY_BYTES == crypto_shorthash_KEYBYTES, "SipHash-2-4's key");

char *jf_hex_fixed(char *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        p[i] = hex[v & 15];
    return p + digits;
}

/* Round i's function of half: SipHash-2-4 of the round and the half's four
 * bytes, little-endian, cut to half_bits.  (With halves of 20 bits this is
 * byte for byte what referral codes were made with before it was shared.) */
static uint64_t feistel_round(const uint8_t key[JF_TXID_KEY_BYTES], int round, uint64_t half,
                              uint64_t mask)
{
    uint8_t in[5] = {(uint8_t)round, (uint8_t)half, (uint8_t)(half >> 8), (uint8_t)(half >> 16),
                     (uint8_t)(half >> 24)};
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, in, sizeof in, key);
    uint64_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint64_t)out[i] << (8 * i);
    return v & mask;
}

uint64_t jf_feistel(const uint8_t key[JF_TXID_KEY_BYTES], uint64_t v, int half_bits, bool inverse)
{
    uint64_t mask = half_bits >= 32 ? UINT64_C(0xffffffff) : (UINT64_C(1) << half_bits) - 1;
    uint64_t l = (v >> half_bits) & mask, r = v & mask;
    for (int i = 0; i < 4; i++) {
        if (!inverse) {
            uint64_t t = l ^ feistel_round(key, i, r, mask);
            l = r;
            r = t;
        } else {
            uint64_t t = r ^ feistel_round(key, 3 - i, l, mask);
            r = l;
            l = t;
        }
    }
    return l << half_bits | r;
}

bool jf_txid_make(const uint8_t key[JF_TXID_KEY_BYTES], int64_t tenant, int64_t seq, int64_t now_ms,
                  char out[JF_ID_LEN_MAX])
{
    if (tenant < 1 || tenant > JF_TXID_TENANT_MAX || seq < 1 || seq > JF_TXID_SEQ_MAX)
        return false;
    uint64_t block =
        jf_feistel(key, (uint64_t)tenant << JF_TXID_SEQ_BITS | (uint64_t)seq, 32, false);
    /* The second, for the eye only: ids sort roughly by time (it wraps in
     * 2106, and nothing reads it back). */
    uint64_t s = now_ms < 0 ? 0 : (uint64_t)now_ms / 1000;
    memcpy(out, "txn_", 4);
    char *p =
        jf_hex_fixed(jf_hex_fixed(out + 4, s, JF_TXID_TIME_DIGITS), block, JF_TXID_BLOCK_DIGITS);
    *p = '\0';
    return true;
}

/* The value of a lower-case hex digit, or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool jf_txid_parse(const uint8_t key[JF_TXID_KEY_BYTES], const char *id, size_t len,
                   int64_t *tenant, int64_t *seq)
{
    if (id == NULL || len != JF_TXID_LEN || memcmp(id, "txn_", 4) != 0)
        return false;
    uint64_t block = 0;
    for (size_t i = 4; i < JF_TXID_LEN; i++) {
        int v = hex_value(id[i]);
        if (v < 0)
            return false;
        if (i >= 4 + JF_TXID_TIME_DIGITS)
            block = block << 4 | (uint64_t)v;
    }
    uint64_t plain = jf_feistel(key, block, 32, true);
    int64_t t = (int64_t)(plain >> JF_TXID_SEQ_BITS);
    int64_t s = (int64_t)(plain & (uint64_t)JF_TXID_SEQ_MAX);
    if (t < 1 || s < 1)
        return false;
    *tenant = t;
    *seq = s;
    return true;
}
