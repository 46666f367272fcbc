/*
 * Referral codes and referral rewards (referral.h).
 */
#include <assert.h>
#include <ctype.h>
#include <string.h>

#include "ledger.h"
#include "referral.h"
#include "rules.h"
#include "txid.h"

#define CODE_BITS 39
#define CODE_MASK ((UINT64_C(1) << CODE_BITS) - 1)
#define CODE_MUL UINT64_C(0x5DEECE66D) /* odd: invertible modulo 2^39 */
#define CODE_XOR UINT64_C(0x2A5F3C91B7)

static const char alphabet[] = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";
#define BASE ((uint64_t)(sizeof alphabet - 1))

_Static_assert(sizeof alphabet - 1 == 31, "31 unambiguous characters");
_Static_assert(JF_REFERRAL_CODE_LEN == 8, "31^8 > 2^39");

/* The inverse of CODE_MUL modulo 2^64 (Newton's iteration doubles the
 * correct low bits each step: 3, 6, 12, 24, 48, 96). */
static uint64_t mul_inverse(void)
{
    uint64_t x = CODE_MUL;
    for (int i = 0; i < 5; i++)
        x *= 2 - CODE_MUL * x;
    assert(x * CODE_MUL == 1);
    return x;
}

/* The keyed permutation: txid.h's Feistel network on 40 bits (two halves
 * of 20), and cycle-walking down to 39 bits: a value of 2^39 or more is
 * enciphered again until it falls below, which ends because the value it
 * started from is below.  Without the key a code tells nothing of the
 * member's number, and a made-up code names a member with the odds of
 * members to 2^39. */
#define HALF_BITS 20
_Static_assert(JF_REFERRAL_KEY_BYTES == JF_TXID_KEY_BYTES, "the same permutation's key");

static uint64_t keyed(const uint8_t key[JF_REFERRAL_KEY_BYTES], uint64_t v, bool inverse)
{
    assert(v <= CODE_MASK);
    do
        v = jf_feistel(key, v, HALF_BITS, inverse);
    while (v > CODE_MASK);
    return v;
}

void jf_referral_code(const uint8_t *key, int64_t seq, char out[JF_REFERRAL_CODE_LEN + 1])
{
    assert(seq >= 1 && (uint64_t)seq <= CODE_MASK);
    uint64_t v = key ? keyed(key, (uint64_t)seq, false)
                     : (((uint64_t)seq ^ CODE_XOR) * CODE_MUL) & CODE_MASK;
    for (int i = JF_REFERRAL_CODE_LEN - 1; i >= 0; i--) {
        out[i] = alphabet[v % BASE];
        v /= BASE;
    }
    out[JF_REFERRAL_CODE_LEN] = '\0';
}

bool jf_referral_code_parse(const uint8_t *key, const char *code, int64_t *seq)
{
    uint64_t v = 0;
    if (code == NULL || strlen(code) != JF_REFERRAL_CODE_LEN)
        return false;
    for (int i = 0; i < JF_REFERRAL_CODE_LEN; i++) {
        const char *p = strchr(alphabet, toupper((unsigned char)code[i]));
        if (p == NULL || code[i] == '\0')
            return false;
        v = v * BASE + (uint64_t)(p - alphabet);
    }
    if (v > CODE_MASK)
        return false;
    uint64_t s = key ? keyed(key, v, true) : ((v * mul_inverse()) & CODE_MASK) ^ CODE_XOR;
    if (s < 1 || s > CODE_MASK)
        return false;
    *seq = (int64_t)s;
    return true;
}

/* ---- rewards ---- */

static jf_err reward_one(jf_ctx *ctx, const char *member_id, const char *referee_id, const char *on,
                         bool referrer, int64_t *points)
{
    jf_member m;
    size_t n = 0, live = 0;
    jf_trigger_facts tf = {.referral_on = on, .referrer = referrer};
    *points = 0;
    jf_err err = jf_member_load(ctx, member_id, &m);
    if (err != JF_OK || strcmp(m.status, "active") != 0)
        return err;
    jf_award *aw = jf_awards_new();
    err = aw ? jf_rules_awards(ctx, m.id, "referral", NULL, &tf, aw, &n, &live) : JF_ERR_NOMEM;
    for (size_t i = 0; err == JF_OK && i < n; i++)
        if (!jf_points_add_checked(*points, aw[i].points, points))
            err = jf_fail(ctx, JF_ERR_POINTS_OVERFLOW, "The referral earns too many points.");
    if (err == JF_OK && *points > 0)
        err = jf_awards_earn(ctx, m.id, aw, n, *points,
                             json_pack("{ssssss}", "referral", on, "role",
                                       referrer ? "referrer" : "referee", "referee_id", referee_id),
                             false, NULL);
    free(aw);
    return err;
}

jf_err jf_referral_reward(jf_ctx *ctx, const char *referee_id, const char *on,
                          int64_t *referee_points)
{
    char referrer[JF_ID_LEN_MAX] = "";
    int64_t got = 0;
    *referee_points = 0;
    sqlite3_stmt *st = jf_db_query(ctx->db,
                                   "SELECT referred_by FROM members WHERE tenant_id=? AND id=?"
                                   " AND referred_by IS NOT NULL",
                                   "Is", ctx->auth->tenant, referee_id);
    if (st == NULL)
        return JF_ERR_IO;
    if (jf_db_step(st) == SQLITE_ROW)
        jf_str_copy(referrer, sizeof referrer, jf_db_text(st, 0));
    sqlite3_reset(st);
    if (!referrer[0])
        return JF_OK;
    assert(strcmp(referrer, referee_id) != 0);
    jf_err err = reward_one(ctx, referrer, referee_id, on, true, &got);
    if (err == JF_OK)
        err = reward_one(ctx, referee_id, referee_id, on, false, referee_points);
    return err;
}
