/*
 * Identifiers: a type prefix and 20 random hex digits ("mem_", "txn_",
 * "lot_", "key_", "ten_").  80 random bits make collisions negligible for any
 * one tenant's lifetime; the UNIQUE constraints catch one if it ever happens.
 */
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
