/*
 * Identifiers: a type prefix and 20 random hex digits ("mem_", "lot_",
 * "key_", "ten_").  80 random bits make collisions negligible for any
 * one tenant's lifetime; the UNIQUE constraints catch one if it ever happens.
 *
 * Journal rows (lots, refunds, tier events) get time-ordered ids instead: 11
 * hex digits of milliseconds, 8 of a counter and 4 drawn once per process
 * (ordered_init), so a batch's inserts land at the end of an id index
 * rather than on a random page each, which keeps the pages one commit
 * writes few.  Transactions had them too until schema version 21; theirs now
 * carry their seq (src/store/txid.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "txid.h"

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

/* The random parts of this process's ordered ids, drawn once: a random
 * start for the counter and a 16-bit suffix.  Drawing them per id cost a
 * getrandom system call per transaction and per lot (about 1% of the
 * writer's samples under W1, with the kernel's part), and bought nothing:
 * the counter already separates every id of one process. */
static struct {
    pthread_once_t once;
    _Atomic uint32_t counter;
    char suffix[5];
} ordered = {.once = PTHREAD_ONCE_INIT};

static void ordered_init(void)
{
    uint8_t raw[6];
    randombytes_buf(raw, sizeof(raw));
    atomic_store(&ordered.counter,
                 (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3]);
    jf_hex(raw + 4, 2, ordered.suffix);
}

void jf_id_new_ordered(const char *prefix, int64_t now_ms, char out[JF_ID_LEN_MAX])
{
    /* The counter makes ids unique within one process and millisecond (a
     * 1,000-operation batch, or the frozen test clock); two processes
     * writing in the same millisecond differ in their suffix or, if those
     * match (1 in 65,536), in where their counters started. */
    pthread_once(&ordered.once, ordered_init);
    uint64_t ms = now_ms < 0 ? 0 : (uint64_t)now_ms & 0xfffffffffffull;
    uint32_t n = atomic_fetch_add(&ordered.counter, 1);
    /* prefix, %011llx, %08x and the suffix, by hand: snprintf cost 1,800
     * instructions an id, two ids per earn on the writer. */
    size_t plen = strlen(prefix);
    if (plen + 11 + 8 + 4 >= JF_ID_LEN_MAX) { /* no prefix is that long */
        out[0] = '\0';
        return;
    }
    memcpy(out, prefix, plen);
    char *p = jf_hex_fixed(jf_hex_fixed(out + plen, ms, 11), n, 8);
    memcpy(p, ordered.suffix, 5); /* its 4 digits and the terminator */
}
