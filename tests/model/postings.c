/*
 * Stored transactions against the oracle: GET /transactions/{id} of a recent
 * transaction must show the oracle's type, points and reversed_points, and
 * exactly the postings spec.md "Accounts" prescribes for that movement
 * (compared as sums per account, so the order and any split of one account's
 * amount into several rows do not matter; they must sum to zero, I1).  At
 * the end, every member's history (GET /members/{id}/transactions, newest
 * first) must be the oracle's transactions of that member, including the
 * holds the system voided and the expiries, with actor "system".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define POSTINGS_MAX 16

typedef struct posting {
    char account[MT_ID_LEN + 16];
    int64_t amount;
} posting;

typedef struct postings {
    posting p[POSTINGS_MAX];
    int n;
} postings;

/* Adds amount to the account's sum; returns false when the table is full. */
static bool add(postings *ps, const char *account, int64_t amount)
{
    for (int i = 0; i < ps->n; i++) {
        if (strcmp(ps->p[i].account, account) == 0) {
            ps->p[i].amount += amount;
            return true;
        }
    }
    if (ps->n == POSTINGS_MAX)
        return false;
    snprintf(ps->p[ps->n].account, sizeof ps->p[0].account, "%s", account);
    ps->p[ps->n++].amount = amount;
    return true;
}

/* Adds amount to member m's points or held account. */
static void add_member(model *md, postings *ps, int m, const char *kind, int64_t amount)
{
    char account[MT_ID_LEN + 16];
    snprintf(account, sizeof account, "member:%s:%s", md->o.members[m].id, kind);
    add(ps, account, amount);
}

/* The postings of reversing n points of the oracle transaction orig. */
static void expect_reverse(model *md, const o_txn *orig, int64_t n, postings *ps)
{
    switch (orig->type) {
    case O_EARN:
        add_member(md, ps, orig->member, "points", -n);
        add(ps, "program:issuance", n);
        break;
    case O_REDEEM:
    case O_CAPTURE:
        add(ps, "program:redemption", -n);
        add_member(md, ps, orig->member, "points", n);
        break;
    case O_ADJUST:
        add_member(md, ps, orig->member, "points", -orig->sign * n);
        add(ps, "program:adjustment", orig->sign * n);
        break;
    case O_TRANSFER:
        add_member(md, ps, orig->other, "points", -n);
        add_member(md, ps, orig->member, "points", n);
        break;
    default:
        mt_fail(md, "the oracle reversed a %s", o_type_name(orig->type));
    }
}

static void expect_postings(model *md, const o_txn *tx, postings *ps)
{
    int64_t n = tx->points;
    int64_t held = tx->hold >= 0 ? md->o.txns[tx->hold].points : 0;
    switch (tx->type) {
    case O_EARN:
        add_member(md, ps, tx->member, "points", n);
        add(ps, "program:issuance", -n);
        if (tx->growth != 0) {
            add_member(md, ps, tx->member, "growth", tx->growth);
            add(ps, "program:growth_issuance", -tx->growth);
        }
        break;
    case O_REDEEM:
        add_member(md, ps, tx->member, "points", -n);
        add(ps, "program:redemption", n);
        break;
    case O_ADJUST:
        add_member(md, ps, tx->member, "points", tx->sign * n);
        add(ps, "program:adjustment", -tx->sign * n);
        break;
    case O_TRANSFER:
        add_member(md, ps, tx->member, "points", -n);
        add_member(md, ps, tx->other, "points", n);
        break;
    case O_HOLD:
        add_member(md, ps, tx->member, "points", -n);
        add_member(md, ps, tx->member, "held", n);
        break;
    case O_CAPTURE:
    case O_VOID:
        add_member(md, ps, tx->member, "held", -held);
        add_member(md, ps, tx->member, "points", held - n * (tx->type == O_CAPTURE));
        if (tx->type == O_CAPTURE)
            add(ps, "program:redemption", n);
        break;
    case O_REVERSE:
        expect_reverse(md, &md->o.txns[tx->reverses], n, ps);
        if (tx->growth != 0) {
            add_member(md, ps, md->o.txns[tx->reverses].member, "growth", -tx->growth);
            add(ps, "program:growth_issuance", tx->growth);
        }
        break;
    default:
        mt_fail(md, "no expected postings for a %s", o_type_name(tx->type));
    }
}

/* Removes accounts whose sum is zero (an earn of 0 points moves nothing). */
static void drop_zeros(postings *ps)
{
    int k = 0;
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].amount != 0)
            ps->p[k++] = ps->p[i];
    ps->n = k;
}

static bool same_postings(const postings *a, const postings *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++) {
        int j = 0;
        while (j < b->n && strcmp(a->p[i].account, b->p[j].account) != 0)
            j++;
        if (j == b->n || a->p[i].amount != b->p[j].amount)
            return false;
    }
    return true;
}

static void print_postings(const char *who, const postings *ps)
{
    fprintf(stderr, "  %s postings:\n", who);
    for (int i = 0; i < ps->n; i++)
        fprintf(stderr, "    %-40s %lld\n", ps->p[i].account, (long long)ps->p[i].amount);
}

/* Sums the engine's postings per account; fails on a malformed list. */
static void engine_postings(model *md, json_t *root, postings *ps)
{
    json_t *list = json_object_get(root, "postings");
    if (!json_is_array(list))
        mt_fail(md, "the transaction has no postings array");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *p = json_array_get(list, i);
        const char *account = mt_str(md, p, "account");
        if (account == NULL || !add(ps, account, mt_int(md, p, "amount")))
            mt_fail(md, "posting %zu has no account or there are too many accounts", i);
    }
}

static void compare_txn(model *md, int t, json_t *root)
{
    const o_txn *tx = &md->o.txns[t];
    const char *type = mt_str(md, root, "type");
    int64_t points = mt_int(md, root, "points");
    int64_t reversed = mt_int(md, root, "reversed_points");
    if (type == NULL || strcmp(type, o_type_name(tx->type)) != 0 || points != tx->points ||
        reversed != tx->reversed)
        mt_fail(md, "transaction %s: engine %s points %lld reversed %lld, oracle %s %lld/%lld",
                tx->id, type ? type : "null", (long long)points, (long long)reversed,
                o_type_name(tx->type), (long long)tx->points, (long long)tx->reversed);
    postings want = {.n = 0}, got = {.n = 0};
    expect_postings(md, tx, &want);
    engine_postings(md, root, &got);
    drop_zeros(&want);
    drop_zeros(&got);
    if (!same_postings(&want, &got)) {
        mt_fail_header(md);
        print_postings("engine", &got);
        print_postings("oracle", &want);
        mt_fail(md, "transaction %s (%s): the postings differ (see above)", tx->id, type);
    }
}

void mt_op_txn_get(model *md)
{
    jf_result res;
    if (md->nrecent == 0)
        return;
    int lo = md->nrecent > 400 ? md->nrecent - 400 : 0;
    int t = md->recent[mt_rng_range(&md->rng, lo, md->nrecent - 1)];
    mt_desc(md, "TRANSACTION_GET %s (%s of m%d)", md->o.txns[t].id, o_type_name(md->o.txns[t].type),
            md->o.txns[t].member);
    jf_err err = mt_call(md, JF_OP_TRANSACTION_GET, md->o.txns[t].id, NULL, NULL, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    compare_txn(md, t, root);
    json_decref(root);
    jf_result_deinit(&res);
}

typedef struct e_txn {
    char id[MT_ID_LEN];
    char type[16];
    char actor[MT_ID_LEN];
    int64_t points;
} e_txn;

/* Appends the engine's transactions of member m (as member_id, not as
 * counterparty), newest first, one page; returns the next cursor or NULL. */
static char *history_page(model *md, int m, const char *cursor, e_txn **out, int *n, int *cap)
{
    jf_param params[2] = {{"limit", "1000"}, {"cursor", cursor}};
    jf_result res;
    const char *mid = md->o.members[m].id;
    jf_err err =
        mt_call(md, JF_OP_MEMBER_TRANSACTIONS, mid, NULL, NULL, params, cursor ? 2 : 1, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    json_t *data = json_object_get(root, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *j = json_array_get(data, i);
        const char *member = mt_str(md, j, "member_id");
        if (member == NULL || strcmp(member, mid) != 0)
            continue;
        e_txn e;
        memset(&e, 0, sizeof e);
        snprintf(e.id, sizeof e.id, "%s", mt_str(md, j, "id"));
        snprintf(e.type, sizeof e.type, "%s", mt_str(md, j, "type"));
        const char *actor = mt_str(md, j, "actor");
        snprintf(e.actor, sizeof e.actor, "%s", actor ? actor : "");
        e.points = mt_int(md, j, "points");
        MT_PUSH(*out, *n, *cap, e);
    }
    const char *next = mt_str(md, root, "next_cursor");
    char *ret = next ? mt_xstrdup(next) : NULL;
    json_decref(root);
    jf_result_deinit(&res);
    return ret;
}

/* Compares the i-th oldest engine transaction with oracle transaction t. */
static void compare_history_entry(model *md, int m, int i, const e_txn *e, int t)
{
    const o_txn *tx = &md->o.txns[t];
    bool system = tx->id[0] == '\0';
    if (strcmp(e->type, o_type_name(tx->type)) == 0 && e->points == tx->points &&
        (system ? strcmp(e->actor, "system") == 0 : strcmp(e->id, tx->id) == 0))
        return;
    mt_fail(md,
            "transaction %d (oldest first) of member %s (m%d): engine %s %s %lld points actor "
            "%s, oracle %s %s %lld points%s",
            i, md->o.members[m].id, m, e->id, e->type, (long long)e->points, e->actor,
            system ? "(system)" : tx->id, o_type_name(tx->type), (long long)tx->points,
            system ? " by the system" : "");
}

void mt_check_history(model *md, int m)
{
    e_txn *list = NULL;
    int n = 0, cap = 0, k = 0;
    char *cursor = NULL;
    do {
        char *next = history_page(md, m, cursor, &list, &n, &cap);
        free(cursor);
        cursor = next;
    } while (cursor != NULL);
    for (int t = 0; t < md->o.ntxns; t++) {
        if (md->o.txns[t].member != m)
            continue;
        if (k == n)
            mt_fail(md, "member %s (m%d) has %d transactions in the engine, more in the oracle",
                    md->o.members[m].id, m, n);
        compare_history_entry(md, m, k, &list[n - 1 - k], t);
        k++;
    }
    if (k != n)
        mt_fail(md, "member %s (m%d) has %d transactions in the engine, %d in the oracle",
                md->o.members[m].id, m, n, k);
    free(list);
}
