/*
 * Signup and birthday bonuses (docs/RULES.md, Signup and birthday bonuses):
 * live rules with trigger "signup" pay once ever, when the member is
 * created; rules with trigger "birthday" pay once per local year of the
 * program's time zone, on the member's birthday, at whichever comes first
 * of the member's first activity that day (any write to the member) and the
 * daily job (the scheduler, `jifen expire`, POST /v1/bonuses/run).
 *
 * Exactly once: each grant is a row of bonus_grants keyed by (member, kind,
 * period), written on the writer in the same command as its earn, so a
 * second attempt finds the row and does nothing, whatever raced.  When no
 * rule of the kind is live nothing is recorded, so a rule activated later
 * that day still pays; a live rule that pays 0 (a cap) still records the
 * grant.
 */
#ifndef JF_BONUS_H
#define JF_BONUS_H

#include "core.h"

/* Grants the signup bonus of a member just created.  Writer only. */
jf_err jf_bonus_signup(jf_ctx *ctx, const char *member_id);

/* Grants the birthday bonus when today (local) is the member's birthday
 * (YYYY-MM-DD as stored; NULL or "" when not set) and this year's is not
 * granted yet; a cheap no-op otherwise.  Called by every write that acts for
 * a member, with the member row it already read.  Writer only. */
jf_err jf_bonus_birthday_due(jf_ctx *ctx, const char *member_id, const char *birthday);

/* POST /v1/bonuses/run and the daily job: one bounded slice of members
 * whose birthday is today; runs again while slices come back full. */
extern const jf_op_impl jf_op_bonus_sweep;

#endif
