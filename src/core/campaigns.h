/*
 * Campaigns (docs/RULES.md, Campaigns): named sets of rules with a window
 * [starts_at, ends_at), a budget over all their rules' awards, and a status
 * draft -> active <-> paused -> ended (ended is final, nothing returns to
 * draft).  The operations behind /v1/campaigns; the evaluation side lives
 * with the rules (rules_db.c joins a rule to its campaign when loading live
 * rules, rules.c clips awards by the campaign's budget).
 */
#ifndef JF_CAMPAIGNS_H
#define JF_CAMPAIGNS_H

#include "core.h"

/* JF_ERR_NOT_FOUND (detail set) unless campaign_id is a campaign of the
 * caller's tenant.  Reads only. */
jf_err jf_campaign_check(jf_ctx *ctx, const char *campaign_id);

extern const jf_op_impl jf_op_campaign_create, jf_op_campaign_update, jf_op_campaign_get,
    jf_op_campaign_list;

#endif
