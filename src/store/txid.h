/*
 * Transaction ids that carry their row's key.  Since schema version 21 an
 * id is "txn_", 8 hex digits of the second it was made at and 16 of a
 * 64-bit block that enciphers the tenant and the tenant's transaction seq
 * under the database's key (meta 'txid_key').  So a lookup by id is a
 * lookup of the transactions table's primary key, (tenant_id, seq), and the
 * table needs no index of its ids: the one it had cost an earn about 6,000
 * of the writer's instructions (schema.c, version 21).  The block is a
 * keyed permutation, so two transactions never share an id, in one tenant
 * or across tenants, and an id says nothing of how many transactions the
 * merchant has made; another tenant's id, or a made-up one, names nothing
 * in the caller's tenant.  Ids made before keep their form ("txn_" and 23
 * or 20 hex digits, never 24) and are found through tx_old_ids.
 */
#ifndef JF_TXID_H
#define JF_TXID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jifen/limits.h"

/* "txn_" and 24 hex digits. */
#define JF_TXID_LEN 28
#define JF_TXID_TIME_DIGITS 8
#define JF_TXID_BLOCK_DIGITS 16
_Static_assert(JF_TXID_LEN == 4 + JF_TXID_TIME_DIGITS + JF_TXID_BLOCK_DIGITS, "id parts");
_Static_assert(JF_TXID_LEN < JF_ID_LEN_MAX, "a transaction id fits an id buffer");
_Static_assert(JF_TXID_TENANT_BITS + JF_TXID_SEQ_BITS == 64, "tenant and seq fill the block");

/* The database's key: SipHash-2-4's (libsodium's crypto_shorthash). */
#define JF_TXID_KEY_BYTES 16

/* A keyed permutation of the numbers below 2^(2 * half_bits), half_bits
 * 1..32: a 4-round Feistel network, each round's function SipHash-2-4
 * under key of the round and the half.  Four rounds of a pseudorandom
 * function make a pseudorandom permutation (Luby-Rackoff), so without the
 * key a value tells nothing of the number it enciphers.  inverse undoes it.
 * Referral codes use it too (referral.c).  Written here because no packaged
 * library offers format-preserving encryption; SipHash is libsodium's. */
uint64_t jf_feistel(const uint8_t key[JF_TXID_KEY_BYTES], uint64_t v, int half_bits, bool inverse);

/* Writes v's last `digits` hex digits, zero-padded and lower case, at p (no
 * terminator; as %0*llx when v fits them) and returns the end.  ids.c makes
 * its ids with it too. */
char *jf_hex_fixed(char *p, uint64_t v, int digits);

/* Writes into out the id of the tenant's transaction seq made at now_ms.
 * Returns false, writing nothing, when the tenant or the seq is out of the
 * id's range (1..JF_TXID_TENANT_MAX, 1..JF_TXID_SEQ_MAX). */
bool jf_txid_make(const uint8_t key[JF_TXID_KEY_BYTES], int64_t tenant, int64_t seq, int64_t now_ms,
                  char out[JF_ID_LEN_MAX]);

/* The tenant and the seq that id (len bytes) names under key, or false when
 * it is not an id of this form: exactly "txn_" and 24 lower-case hex digits
 * whose block deciphers to a tenant and a seq in range.  Never reads past
 * len. */
bool jf_txid_parse(const uint8_t key[JF_TXID_KEY_BYTES], const char *id, size_t len,
                   int64_t *tenant, int64_t *seq);

#endif
