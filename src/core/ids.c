/*
 * Identifiers: a type prefix and 20 random hex digits ("mem_", "txn_",
 * "lot_", "key_", "ten_").  80 random bits make collisions negligible for any
 * one tenant's lifetime; the UNIQUE constraints catch one if it ever happens.
 *
 * Journal rows (transactions, lots) get time-ordered ids instead: 11 hex
 * digits of milliseconds, 8 of a counter and 4 random, so a batch's inserts land at
 * the end of the id index rather than on a random page each, which keeps
 * the pages one commit writes few.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core.h"

void jf_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void jf_id_new(const char *prefix, char out[JF_ID_LEN_MAX])
{
    uint8_t raw[10];
    char hex[21];
    randombytes_buf(raw, sizeof(raw));
    jf_hex(raw, sizeof(raw), hex);
    snprintf(out, JF_ID_LEN_MAX, "%s%s", prefix, hex);
}

void jf_id_new_ordered(const char *prefix, int64_t now_ms, char out[JF_ID_LEN_MAX])
{
    /* A process-wide counter makes ids unique within one millisecond (a
     * 1,000-operation batch, or the frozen test clock); the random suffix
     * keeps two processes writing in the same millisecond apart. */
    static _Atomic uint32_t counter;
    uint8_t raw[2];
    char hex[5];
    randombytes_buf(raw, sizeof(raw));
    jf_hex(raw, sizeof(raw), hex);
    uint64_t ms = now_ms < 0 ? 0 : (uint64_t)now_ms & 0xfffffffffffull;
    uint32_t n = atomic_fetch_add(&counter, 1);
    snprintf(out, JF_ID_LEN_MAX, "%s%011llx%08x%s", prefix, (unsigned long long)ms, n, hex);
}
