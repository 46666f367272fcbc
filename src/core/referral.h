/*
 * Referrals (邀请有礼; docs/RULES.md, Referrals): every member's referral
 * code, the link from a new member to the member who referred them, and the
 * rewards of "referral" rules on the referee's signup or first purchase.
 *
 * A code is the member's internal sequence number (unique across tenants)
 * enciphered by a permutation of the numbers below 2^39 and written as 8
 * characters of an alphabet without look-alikes (no 0/O, 1/I/L): unique by
 * construction, so no code is ever stored, retried or migrated.  The
 * permutation is keyed by the database's referral key (meta
 * 'referral_key', made at random with the database since schema version
 * 15), so that a code reveals nothing of how many members there are or when
 * one joined, and codes cannot be listed by counting.  A database that
 * already had members before version 15 has no key and keeps the unkeyed
 * bijection of before (a fixed multiplication and XOR, public in this
 * file), since its members' codes are printed and shared already.  A code
 * is resolved inside the caller's tenant only; another tenant's code is
 * unknown.
 *
 * No self-referral and no cycles, by construction: a member is linked to
 * its referrer once, when it is created, and the referrer already exists,
 * so every link points to an older member.
 */
#ifndef JF_REFERRAL_H
#define JF_REFERRAL_H

#include "core.h"

/* The size of a referral key: SipHash-2-4's (libsodium's crypto_shorthash). */
#define JF_REFERRAL_KEY_BYTES 16

/* The engine's referral key, or NULL for a database without one. */
const uint8_t *jf_referral_key(const jf_engine *eng);

/* The referral code of the member with sequence number seq (1 ..
 * 2^39 - 1) under key (JF_REFERRAL_KEY_BYTES; NULL for a database without
 * one): JF_REFERRAL_CODE_LEN characters and a NUL.  Pure. */
void jf_referral_code(const uint8_t *key, int64_t seq, char out[JF_REFERRAL_CODE_LEN + 1]);

/* The sequence number a code stands for under key (NULL: none); false for
 * anything that is not a code (wrong length, a character outside the
 * alphabet, out of range).  Lower case is accepted.  Pure. */
bool jf_referral_code_parse(const uint8_t *key, const char *code, int64_t *seq);

/* Rewards the referral of referee_id at `on` ("signup" or
 * "first_purchase"): the live "referral" rules are evaluated once for the
 * referrer and once for the referee, and each who gets points gets an earn
 * (without an idempotency key: the command's own answer carries that).  A
 * member without a referrer, or a referrer who is frozen or closed, gets
 * nothing.  *referee_points tells what the referee got.  Runs on the writer
 * inside the command's savepoint. */
jf_err jf_referral_reward(jf_ctx *ctx, const char *referee_id, const char *on,
                          int64_t *referee_points);

#endif
