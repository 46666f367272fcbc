/*
 * Full-state comparisons of the model test: a member's points as GET
 * /members/{id} and GET /members/{id}/points show them, and the member's
 * whole lot list (status=all) against the oracle's lots.
 *
 * Lots are matched to oracle lots by engine id once an id has been tied to a
 * lot without doubt; a new lot is tied by (transaction id, amount,
 * available_at, expires_at).  Lots that share all of these (say two pieces
 * of one transfer with the same expiry) are interchangeable until one is
 * consumed first; for those the comparison prefers a candidate with the same
 * remaining and never ties the id, so the check stays exact without
 * depending on the engine's id order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef struct e_lot {
    char id[MT_ID_LEN];
    char txn[MT_ID_LEN];
    int64_t amount, remaining, available_at, expires_at;
    char status[16];
    int match; /* the oracle lot, or -1 */
} e_lot;

/* GET /members/{id}: its points object and debt against the oracle. */
static void check_member_get(model *md, int m, const o_view *v)
{
    jf_result res;
    const char *id = md->o.members[m].id;
    jf_err err = mt_call(md, JF_OP_MEMBER_GET, id, NULL, NULL, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    mt_expect_points_obj(md, root, "points", m);
    int64_t debt = mt_int(md, root, "debt");
    if (debt != v->debt)
        mt_fail(md, "member %s (m%d) debt: engine %lld, oracle %lld", id, m, (long long)debt,
                (long long)v->debt);
    json_decref(root);
    jf_result_deinit(&res);
}

/* GET /members/{id}/points against the oracle. */
static void check_points_only(model *md, int m, const o_view *v)
{
    jf_result res;
    const char *id = md->o.members[m].id;
    jf_err err = mt_call(md, JF_OP_MEMBER_POINTS, id, NULL, NULL, NULL, 0, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    const char *names[5] = {"balance", "available", "pending", "held", "debt"};
    int64_t want[5] = {v->balance, v->available, v->pending, v->held, v->debt};
    for (int i = 0; i < 5; i++) {
        int64_t got = mt_int(md, root, names[i]);
        if (got != want[i])
            mt_fail(md,
                    "GET points of member %s (m%d): %s engine %lld, oracle %lld (oracle "
                    "balance=%lld available=%lld pending=%lld held=%lld debt=%lld; engine %.*s)",
                    id, m, names[i], (long long)got, (long long)want[i], (long long)v->balance,
                    (long long)v->available, (long long)v->pending, (long long)v->held,
                    (long long)v->debt, (int)res.body_len, res.body);
    }
    json_decref(root);
    jf_result_deinit(&res);
}

void mt_check_points(model *md, int m)
{
    o_view v;
    o_view_get(&md->o, m, &v);
    check_points_only(md, m, &v);
    check_member_get(md, m, &v);
}

/* Reads one lot of the list; fails the run on a malformed lot. */
static void parse_lot(model *md, json_t *j, e_lot *e)
{
    memset(e, 0, sizeof *e);
    e->match = -1;
    snprintf(e->id, sizeof e->id, "%s", mt_str(md, j, "id"));
    const char *txn = mt_str(md, j, "transaction_id");
    snprintf(e->txn, sizeof e->txn, "%s", txn ? txn : "");
    e->amount = mt_int(md, j, "amount");
    e->remaining = mt_int(md, j, "remaining");
    const char *av = mt_str(md, j, "available_at");
    const char *ex = mt_str(md, j, "expires_at");
    if (!mt_time_parse(av, &e->available_at))
        mt_fail(md, "lot %s: bad available_at %s", e->id, av ? av : "null");
    e->expires_at = MT_NEVER;
    if (ex != NULL && !mt_time_parse(ex, &e->expires_at))
        mt_fail(md, "lot %s: bad expires_at %s", e->id, ex);
    snprintf(e->status, sizeof e->status, "%s", mt_str(md, j, "status"));
}

/* Appends one page of lots to *out; returns the next cursor (malloc'd) or
 * NULL on the last page. */
static char *fetch_page(model *md, int m, const char *limit, const char *cursor, e_lot **out,
                        int *n, int *cap)
{
    jf_param params[3] = {{"status", "all"}, {"limit", limit}, {"cursor", cursor}};
    jf_result res;
    jf_err err = mt_call(md, JF_OP_MEMBER_LOTS, md->o.members[m].id, NULL, NULL, params,
                         cursor ? 3 : 2, &res);
    mt_expect_err(md, JF_OK, err, &res);
    json_t *root = mt_json(md, &res);
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data))
        mt_fail(md, "lots reply has no data array: %.*s", (int)res.body_len, res.body);
    for (size_t i = 0; i < json_array_size(data); i++) {
        e_lot e;
        parse_lot(md, json_array_get(data, i), &e);
        MT_PUSH(*out, *n, *cap, e);
    }
    const char *next = mt_str(md, root, "next_cursor");
    char *ret = next ? mt_xstrdup(next) : NULL;
    json_decref(root);
    jf_result_deinit(&res);
    return ret;
}

/* The member's whole lot list.  Mostly one page of up to 1000; one time in
 * ten in small pages, so that the cursor is exercised too (a lost or
 * repeated lot then shows as a count or matching failure). */
static e_lot *fetch_lots(model *md, int m, int *n)
{
    e_lot *lots = NULL;
    int cap = 0;
    char *cursor = NULL, limit[16] = "1000";
    if (mt_rng_chance(&md->rng, 10))
        snprintf(limit, sizeof limit, "%d", (int)mt_rng_range(&md->rng, 1, 40));
    *n = 0;
    do {
        char *next = fetch_page(md, m, limit, cursor, &lots, n, &cap);
        free(cursor);
        cursor = next;
    } while (cursor != NULL);
    return lots;
}

/* The statuses the spec allows for an oracle lot.  Where spec.md leaves the
 * name open (a pending lot clawed back to zero, a due lot the job has not
 * reached) either reading is accepted. */
static bool status_ok(const oracle *o, const o_lot *l, const char *s)
{
    if (l->expired)
        return strcmp(s, "expired") == 0;
    if (o_lot_pending(o, l))
        return strcmp(s, "pending") == 0 || (l->remaining == 0 && strcmp(s, "consumed") == 0);
    if (l->remaining == 0)
        return strcmp(s, "consumed") == 0;
    if (o_lot_due(o, l))
        return strcmp(s, "available") == 0 || strcmp(s, "expired") == 0;
    return strcmp(s, "available") == 0;
}

static const char *o_lot_txn_id(const oracle *o, const o_lot *l)
{
    return o->txns[l->txn].id;
}

static bool same_key(const oracle *o, const o_lot *l, const e_lot *e)
{
    const char *tid = o_lot_txn_id(o, l);
    return (tid[0] == '\0' || strcmp(tid, e->txn) == 0) && l->amount == e->amount &&
           l->available_at == e->available_at && l->expires_at == e->expires_at;
}

static void fmt_time(int64_t t, char *buf, size_t len)
{
    if (t == MT_NEVER)
        snprintf(buf, len, "null");
    else
        mt_time_format(t, buf, len);
}

static void dump_lots(model *md, int m, const e_lot *e, int ne)
{
    const oracle *o = &md->o;
    const o_member *mem = &o->members[m];
    char a[40], x[40];
    mt_fail_header(md);
    fmt_time(o->now, a, sizeof a);
    fprintf(stderr, "  now %s, member %s (m%d) debt %lld\n  oracle lots (creation order):\n", a,
            mem->id, m, (long long)mem->debt);
    for (int i = 0; i < mem->nlots; i++) {
        const o_lot *l = &o->lots[mem->lots[i]];
        fmt_time(l->available_at, a, sizeof a);
        fmt_time(l->expires_at, x, sizeof x);
        fprintf(stderr, "    #%d %-26s txn %-26s %s amount %lld remaining %lld avail %s exp %s%s\n",
                mem->lots[i], l->id[0] ? l->id : "(unmapped)",
                o_lot_txn_id(o, l)[0] ? o_lot_txn_id(o, l) : "(system)",
                o_type_name(o->txns[l->txn].type), (long long)l->amount, (long long)l->remaining, a,
                x, l->expired ? " EXPIRED" : "");
    }
    fprintf(stderr, "  engine lots (list order):\n");
    for (int i = 0; i < ne; i++) {
        fmt_time(e[i].available_at, a, sizeof a);
        fmt_time(e[i].expires_at, x, sizeof x);
        fprintf(stderr, "    %-26s txn %-26s amount %lld remaining %lld avail %s exp %s %s\n",
                e[i].id, e[i].txn, (long long)e[i].amount, (long long)e[i].remaining, a, x,
                e[i].status);
    }
}

/* Engine lots matching oracle lot li that are still free; *best gets the one
 * to use (same remaining preferred).  Returns how many there are. */
static int candidates(model *md, int li, e_lot *e, int ne, int *best)
{
    const o_lot *l = &md->o.lots[li];
    int count = 0;
    *best = -1;
    for (int j = 0; j < ne; j++) {
        if (e[j].match >= 0 || !same_key(&md->o, l, &e[j]))
            continue;
        count++;
        if (*best < 0 || (e[j].remaining == l->remaining && e[*best].remaining != l->remaining))
            *best = j;
    }
    return count;
}

/* Oracle lots of member m, other than li, not yet tied to an id and with the
 * same key as li. */
static int oracle_twins(const oracle *o, int m, int li)
{
    const o_member *mem = &o->members[m];
    const o_lot *l = &o->lots[li];
    int count = 0;
    for (int i = 0; i < mem->nlots; i++) {
        const o_lot *k = &o->lots[mem->lots[i]];
        if (mem->lots[i] != li && k->id[0] == '\0' && k->txn == l->txn && k->amount == l->amount &&
            k->available_at == l->available_at && k->expires_at == l->expires_at)
            count++;
    }
    return count;
}

/* Ties oracle lots to engine lots: by id, then by key (known transaction
 * first, system transactions last).  Fails when one has no partner. */
static void match_lots(model *md, int m, e_lot *e, int ne)
{
    o_member *mem = &md->o.members[m];
    for (int i = 0; i < mem->nlots; i++) {
        o_lot *l = &md->o.lots[mem->lots[i]];
        int j = 0;
        if (l->id[0] == '\0')
            continue;
        while (j < ne && strcmp(e[j].id, l->id) != 0)
            j++;
        if (j == ne) {
            dump_lots(md, m, e, ne);
            mt_fail(md, "lot %s (oracle #%d) is missing from the engine's list", l->id,
                    mem->lots[i]);
        }
        e[j].match = mem->lots[i];
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < mem->nlots; i++) {
            int li = mem->lots[i], best;
            o_lot *l = &md->o.lots[li];
            if (l->id[0] != '\0' || (o_lot_txn_id(&md->o, l)[0] == '\0') != (pass == 1))
                continue;
            int count = candidates(md, li, e, ne, &best);
            if (count == 0) {
                dump_lots(md, m, e, ne);
                mt_fail(md, "oracle lot #%d of member %s has no engine lot", li, mem->id);
            }
            e[best].match = li;
            if (count == 1 && pass == 0 && oracle_twins(&md->o, m, li) == 0)
                snprintf(l->id, sizeof l->id, "%s", e[best].id);
        }
    }
}

static void compare_lots(model *md, int m, e_lot *e, int ne)
{
    const oracle *o = &md->o;
    for (int j = 0; j < ne; j++) {
        const o_lot *l = &o->lots[e[j].match];
        if (!same_key(o, l, &e[j]) || l->remaining != e[j].remaining ||
            !status_ok(o, l, e[j].status)) {
            dump_lots(md, m, e, ne);
            mt_fail(md,
                    "engine lot %s (matched to oracle #%d): remaining %lld status %s, "
                    "oracle remaining %lld%s",
                    e[j].id, e[j].match, (long long)e[j].remaining, e[j].status,
                    (long long)l->remaining, l->expired ? " (expired)" : "");
        }
        if (j > 0 && e[j].expires_at < e[j - 1].expires_at) {
            dump_lots(md, m, e, ne);
            mt_fail(md, "lots are not listed earliest expiring first (at %s)", e[j].id);
        }
    }
}

void mt_check_lots(model *md, int m)
{
    int ne;
    e_lot *e = fetch_lots(md, m, &ne);
    const o_member *mem = &md->o.members[m];
    md->lot_checks++;
    if (ne != mem->nlots) {
        dump_lots(md, m, e, ne);
        mt_fail(md, "member %s (m%d) has %d lots in the engine, %d in the oracle", mem->id, m, ne,
                mem->nlots);
    }
    match_lots(md, m, e, ne);
    compare_lots(md, m, e, ne);
    free(e);
}

void mt_check_clock(model *md)
{
    int64_t now = jf_engine_now_ms(md->eng);
    if (now != md->o.now)
        mt_fail(md, "engine clock %lld, oracle clock %lld (does the test clock run by itself?)",
                (long long)now, (long long)md->o.now);
}

void mt_check_all(model *md, bool everyone)
{
    mt_check_clock(md);
    for (int m = 0; m < md->o.nmembers; m++) {
        o_member *mem = &md->o.members[m];
        if (everyone || mem->dirty) {
            mt_check_points(md, m);
            mt_check_lots(md, m);
            mem->dirty = false;
        } else if (!mem->retired) {
            /* Untouched since its last full check, but time moves points
             * between pending, available and due. */
            o_view v;
            o_view_get(&md->o, m, &v);
            check_points_only(md, m, &v);
        }
    }
    md->checks++;
}
