/*
 * Referrals (邀请有礼; docs/RULES.md, Referrals): every member's referral
 * code, the link from a new member to the member who referred them, and the
 * rewards of "referral" rules on the referee's signup or first purchase.
 *
 * A code is the member's internal sequence number (unique across tenants)
 * scrambled by a bijection modulo 2^39 and written as 8 characters of an
 * alphabet without look-alikes (no 0/O, 1/I/L): unique by construction, so
 * no code is ever stored, retried or migrated, and codes of consecutive
 * members do not look consecutive.  A code is resolved inside the caller's
 * tenant only; another tenant's code is unknown.
 *
 * No self-referral and no cycles, by construction: a member is linked to
 * its referrer once, when it is created, and the referrer already exists,
 * so every link points to an older member.
 */
#ifndef JF_REFERRAL_H
#define JF_REFERRAL_H

#include "core.h"

/* The referral code of the member with sequence number seq (1 ..
 * 2^39 - 1): JF_REFERRAL_CODE_LEN characters and a NUL.  Pure. */
void jf_referral_code(int64_t seq, char out[JF_REFERRAL_CODE_LEN + 1]);

/* The sequence number a code stands for; false for anything that is not a
 * code (wrong length, a character outside the alphabet, out of range).
 * Lower case is accepted.  Pure. */
bool jf_referral_code_parse(const char *code, int64_t *seq);

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
