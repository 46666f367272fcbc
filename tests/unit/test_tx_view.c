/*
 * A transaction's view has two renderers in src/core/tx.c: jf_tx_view_json
 * builds the tree that reads answer with, and jf_tx_view_text writes the
 * same bytes straight from the writer's structs for the answer of a write
 * (the tree and its dump were a tenth of the writer's time per earn).  A
 * stored answer is replayed byte for byte and a read of the same
 * transaction must say the same, so the two must never differ: fixed cases
 * (every field null, every field set, text jansson refuses as UTF-8,
 * metadata that does not parse), and a seeded random test over many views
 * (SEED=n replays a run; the seed is printed).  Lists of transactions are
 * written as text too (jf_list_rows_text) and compared with the tree's
 * pages the same way, below, and so are a member's points and a write's
 * answer around its transaction (jf_points_reply_text).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "rules.h"
#include "tmpdb.h"
#include "seed.h"

/* The tree's text and the text written directly are the same; frees both. */
static void assert_same_text(char *want, char *got)
{
    assert_non_null(want);
    assert_non_null(got);
    if (strcmp(want, got) != 0)
        fprintf(stderr, "tree: %s\ntext: %s\n", want, got);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

static void assert_same_view(const jf_chain_tx *t, int64_t reversed_points)
{
    json_t *tree = jf_tx_view_json(t, reversed_points);
    char *want = jf_json_dump(tree, NULL);
    json_decref(tree);
    jf_jtext b = {0};
    jf_tx_view_text(&b, t, reversed_points);
    jf_jt_raw(&b, "}");
    size_t len = 0;
    char *got = jf_jt_take(&b, &len);
    assert_int_equal(len, got ? strlen(got) : 0);
    assert_same_text(want, got);
}

static void test_every_field_null(void **state)
{
    (void)state;
    jf_chain_tx t = {.created_at = -1};
    assert_same_view(&t, 0);
}

static void test_every_field_set(void **state)
{
    (void)state;
    jf_chain_tx t = {.points = 9007199254740991,
                     .delta = -9007199254740991,
                     .order_amount = 12345,
                     .created_at = 1764720000123,
                     .id = "tx_01",
                     .type = "earn",
                     .member_id = "mem_1",
                     .counterparty_id = "mem_2",
                     .reverses = "tx_00",
                     .hold_id = "hold_1",
                     .order_id = "o-\"1\"\n",
                     .order_currency = "CNY",
                     .reason = "积分 ✓",
                     .note = "tab\there \x01",
                     .channel = "pos",
                     .store_id = "store/7",
                     .actor = "key_1",
                     .metadata = "{\"b\":[1,2,{\"c\":null}],\"a\":\"键\",\"r\":0.5}"};
    assert_same_view(&t, INT64_MIN);
    t.order_currency = NULL; /* an order without an amount */
    assert_same_view(&t, INT64_MAX);
}

static void test_text_jansson_refuses(void **state)
{
    (void)state;
    /* Invalid UTF-8 is null in the tree (json_string refuses it), so it
     * must be null in the text too; metadata that does not parse as well. */
    jf_chain_tx t = {.created_at = 0,
                     .id = "tx_\xff",
                     .type = "earn",
                     .note = "\xc3",
                     .metadata = "{not json",
                     .order_id = "\xe7\xa7"};
    assert_same_view(&t, 1);
}

static const char *random_text(unsigned *seed, char *buf, size_t cap)
{
    /* Besides text, sequences jansson refuses as UTF-8 (an overlong form, a
     * surrogate half, past U+10FFFF, cut short, a lone continuation byte, a
     * five-byte form's lead) and the edges it accepts (U+10FFFF, U+FFFF,
     * U+2028). */
    static const char *const pieces[] = {
        TEST_TEXT_PIECES,   "_",        "\xff", "\xc0\x80",     "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "\xe7\xa7", "\x80", "\xe0\x9f\xbf", "\xef\xbf\xbf",
        "\xf8\x90\x80\x80"};
    if (rand_r(seed) % 4 == 0)
        return NULL;
    buf[0] = '\0';
    int n = rand_r(seed) % 10;
    for (int i = 0; i < n && strlen(buf) + 5 < cap; i++)
        strcat(buf, pieces[rand_r(seed) % (sizeof(pieces) / sizeof(pieces[0]))]);
    return buf;
}

static int64_t random_i64(unsigned *seed)
{
    int64_t hi = rand_r(seed), lo = rand_r(seed);
    return (int64_t)((uint64_t)hi << 33 ^ (uint64_t)lo) * (rand_r(seed) % 2 ? 1 : -1);
}

/* A view of random fields; its strings are written into text. */
static jf_chain_tx random_view(unsigned *seed, char text[14][64], const char *const *metadata,
                               size_t n_metadata)
{
    int k = 0;
    return (jf_chain_tx){.points = random_i64(seed),
                         .delta = random_i64(seed),
                         .order_amount = random_i64(seed),
                         .created_at =
                             rand_r(seed) % 5 ? random_i64(seed) & INT64_C(0x1ffffffffff) : -1,
                         .id = random_text(seed, text[k++], 64),
                         .type = random_text(seed, text[k++], 64),
                         .member_id = random_text(seed, text[k++], 64),
                         .counterparty_id = random_text(seed, text[k++], 64),
                         .reverses = random_text(seed, text[k++], 64),
                         .hold_id = random_text(seed, text[k++], 64),
                         .order_id = random_text(seed, text[k++], 64),
                         .order_currency = random_text(seed, text[k++], 64),
                         .reason = random_text(seed, text[k++], 64),
                         .note = random_text(seed, text[k++], 64),
                         .channel = random_text(seed, text[k++], 64),
                         .store_id = random_text(seed, text[k++], 64),
                         .actor = random_text(seed, text[k++], 64),
                         .metadata = metadata[rand_r(seed) % n_metadata]};
}

static void test_random_views(void **state)
{
    (void)state;
    static const char *const metadata[] = {NULL,
                                           "{}",
                                           "{\"k\":\"v\",\"n\":-1}",
                                           "[1,\"积\"]",
                                           "{\"x\":1.25e-7}",
                                           "{bad",
                                           "\"just a string\""};
    unsigned seed = test_seed("test_tx_view");
    char text[14][64];
    for (int i = 0; i < 5000; i++) {
        jf_chain_tx t = random_view(&seed, text, metadata, sizeof(metadata) / sizeof(metadata[0]));
        assert_same_view(&t, random_i64(&seed));
    }
}

/* ---- lists: jf_list_rows_text against jf_list_rows ----
 *
 * A history page (GET /v1/members/{id}/transactions, GET /v1/transactions)
 * is written as text row by row; its bytes must be those of the tree that
 * jf_list_rows builds and dumps, for every page size and cursor. */

/* A table with the columns TX_COLUMNS reads and the index it names. */
static tmpdb *tx_table(void)
{
    tmpdb *t = tmpdb_open("txview");
    assert_non_null(t);
    assert_int_equal(jf_db_exec(&t->db, "CREATE TABLE transactions(tenant_id, seq, id, type,"
                                        " member_id, counterparty_id, points, reverses, hold_id,"
                                        " order_id, order_amount, order_currency, reason, note,"
                                        " channel, store_id, actor, metadata, created_at, hash,"
                                        " delta);"
                                        "CREATE INDEX tx_reverses ON transactions(tenant_id,"
                                        " reverses)"),
                     JF_OK);
    return t;
}

static void tx_insert(tmpdb *t, int64_t seq, const jf_chain_tx *v)
{
    assert_int_equal(jf_db_run(&t->db,
                               "INSERT INTO transactions VALUES(1,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
                               "?,?,NULL,?)",
                               "IssssIsssIsssssssII", seq, v->id, v->type, v->member_id,
                               v->counterparty_id, v->points, v->reverses, v->hold_id, v->order_id,
                               v->order_amount, v->order_currency, v->reason, v->note, v->channel,
                               v->store_id, v->actor, v->metadata, v->created_at, v->delta),
                     JF_OK);
}

/* Both lists of the table's rows, newest first, limit per page from the
 * cursor (-1: from the newest), compared byte for byte. */
static void assert_same_list(tmpdb *t, int64_t limit, int64_t cursor)
{
    static const char sql[] =
        TX_COLUMNS " WHERE tenant_id = 1 AND seq < ?1 ORDER BY seq DESC LIMIT ?2";
    jf_ctx tree = {0}, text = {0};
    sqlite3_stmt *st = jf_db_query(&t->db, sql, "II", cursor < 0 ? INT64_MAX : cursor, limit + 1);
    assert_int_equal(jf_list_rows(&tree, st, limit, 0, jf_tx_row), JF_OK);
    st = jf_db_query(&t->db, sql, "II", cursor < 0 ? INT64_MAX : cursor, limit + 1);
    assert_int_equal(jf_list_rows_text(&text, st, limit, 0, jf_tx_row_text), JF_OK);
    size_t len = 0;
    char *want = jf_json_dump(tree.out, &len);
    assert_non_null(want);
    assert_non_null(text.reply_body);
    if (strcmp(want, text.reply_body) != 0)
        fprintf(stderr, "tree: %s\ntext: %s\n", want, text.reply_body);
    assert_string_equal(text.reply_body, want);
    assert_int_equal(text.reply_body_len, len);
    free(want);
    free(text.reply_body);
    json_decref(tree.out);
}

static void test_list_pages(void **state)
{
    (void)state;
    tmpdb *t = tx_table();
    assert_same_list(t, 20, -1); /* an empty page */
    jf_chain_tx v = {.points = 100,
                     .delta = 100,
                     .created_at = 1764720000123,
                     .id = "tx_a",
                     .type = "earn",
                     .member_id = "mem_1",
                     .reason = "积分 \"✓\"",
                     .actor = "key_1",
                     .metadata = "{\"k\":[1,2]}"};
    tx_insert(t, 1, &v);
    /* A reversal of tx_a: tx_a's row carries the reversed points. */
    jf_chain_tx r = {.points = 40,
                     .delta = -40,
                     .created_at = 1764720000999,
                     .id = "tx_b",
                     .type = "reverse",
                     .member_id = "mem_1",
                     .reverses = "tx_a",
                     .actor = "key_1"};
    tx_insert(t, 2, &r);
    jf_chain_tx e = {.created_at = -1, .id = "tx_c", .type = "adjust", .note = "\xff"};
    tx_insert(t, 3, &e);
    for (int64_t limit = 1; limit <= 4; limit++)
        for (int64_t cursor = -1; cursor <= 4; cursor++)
            assert_same_list(t, limit, cursor);
    assert_true(tmpdb_close(t));
}

static void test_list_random_rows(void **state)
{
    (void)state;
    static const char *const metadata[] = {NULL, "{}", "[1,\"积\"]", "{bad"};
    unsigned seed = test_seed("test_tx_view (lists)");
    tmpdb *t = tx_table();
    char text[14][64];
    for (int64_t seq = 1; seq <= 200; seq++) {
        jf_chain_tx v = random_view(&seed, text, metadata, sizeof(metadata) / sizeof(metadata[0]));
        /* Points stay small: a row's reversed points are a SUM over the rows
         * that name it, and random ids repeat. */
        v.points %= 1000000;
        tx_insert(t, seq, &v);
    }
    for (int i = 0; i < 200; i++)
        assert_same_list(t, 1 + rand_r(&seed) % 60, rand_r(&seed) % 4 ? rand_r(&seed) % 202 : -1);
    assert_true(tmpdb_close(t));
}

/* ---- a member's lots: jf_lot_row_text against jf_lot_row ---- */

/* Every row of lots_v as the lots list writes it (text) and as the tree it
 * replaced, statuses as of now, compared byte for byte with the envelope. */
static void assert_same_lots(tmpdb *t, int64_t now, int64_t next)
{
    jf_ctx ctx = {.now_ms = now};
    sqlite3_stmt *st = jf_db_query(&t->db,
                                   "SELECT id, tx_id, amount, remaining, available_at, expires_at,"
                                   " expired_tx_seq, created_at FROM lots_v ORDER BY rowid",
                                   "");
    assert_non_null(st);
    json_t *data = json_array();
    jf_jtext b = {0};
    jf_list_text_begin(&b);
    for (int n = 0; sqlite3_step(st) == SQLITE_ROW; n++) {
        json_t *o = NULL;
        assert_int_equal(jf_lot_row(&ctx, st, &o), JF_OK);
        json_array_append_new(data, o);
        if (n > 0)
            jf_jt_raw(&b, ",");
        assert_int_equal(jf_lot_row_text(&ctx, st, &b), JF_OK);
    }
    sqlite3_reset(st);
    jf_list_text_end(&b, next);
    assert_int_equal(jf_reply_text(&ctx, &b, JF_OK), JF_OK);
    json_t *tree = jf_list_envelope(data, next);
    size_t len = 0;
    char *want = jf_json_dump(tree, &len);
    json_decref(tree);
    assert_non_null(want);
    if (strcmp(want, ctx.reply_body) != 0)
        fprintf(stderr, "tree: %s\ntext: %s\n", want, ctx.reply_body);
    assert_string_equal(ctx.reply_body, want);
    assert_int_equal(ctx.reply_body_len, len);
    free(want);
    free(ctx.reply_body);
}

static tmpdb *lots_table(void)
{
    tmpdb *t = tmpdb_open("txview");
    assert_non_null(t);
    assert_int_equal(jf_db_exec(&t->db, "CREATE TABLE lots_v(id, tx_id, amount, remaining,"
                                        " available_at, expires_at, expired_tx_seq, created_at)"),
                     JF_OK);
    return t;
}

static void test_lots_statuses(void **state)
{
    (void)state;
    tmpdb *t = lots_table();
    assert_same_lots(t, 1000, -1); /* no lots */
    /* expired by the job; due and not yet expired; consumed; pending;
     * available without expiry; a transaction id that is gone */
    assert_int_equal(jf_db_exec(&t->db, "INSERT INTO lots_v VALUES"
                                        "('lot_1','tx_1',100,0,10,500,7,10),"
                                        "('lot_2','tx_2',100,60,10,900,NULL,10),"
                                        "('lot_3','tx_3',100,0,10,NULL,NULL,10),"
                                        "('lot_4','tx_4',100,100,5000,NULL,NULL,10),"
                                        "('lot_5','tx_5',100,100,10,NULL,NULL,1764720000123),"
                                        "('lot_\"6\"',NULL,1,1,0,9007199254740991,NULL,0)"),
                     JF_OK);
    for (int64_t now = 0; now <= 6000; now += 500)
        assert_same_lots(t, now, now % 1000 ? 40 : -1);
    assert_true(tmpdb_close(t));
}

static void test_lots_random_rows(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_tx_view (lots)");
    tmpdb *t = lots_table();
    char id[64], tx[64];
    for (int i = 0; i < 300; i++) {
        int64_t amount = 1 + rand_r(&seed) % 1000;
        assert_int_equal(jf_db_run(&t->db, "INSERT INTO lots_v VALUES(?,?,?,?,?,?,?,?)", "ssIIIIII",
                                   random_text(&seed, id, sizeof(id)),
                                   random_text(&seed, tx, sizeof(tx)), amount,
                                   (int64_t)(rand_r(&seed) % (amount + 1)),
                                   (int64_t)(rand_r(&seed) % 100000),
                                   (int64_t)(rand_r(&seed) % 3 ? rand_r(&seed) % 100000 : -1),
                                   (int64_t)(rand_r(&seed) % 4 ? -1 : rand_r(&seed)),
                                   (int64_t)(rand_r(&seed) % 100000)),
                         JF_OK);
    }
    /* -1 stands for NULL in the two nullable columns. */
    assert_int_equal(jf_db_exec(&t->db, "UPDATE lots_v SET expires_at = NULL WHERE expires_at < 0;"
                                        "UPDATE lots_v SET expired_tx_seq = NULL"
                                        " WHERE expired_tx_seq < 0"),
                     JF_OK);
    for (int i = 0; i < 20; i++)
        assert_same_lots(t, rand_r(&seed) % 100000, rand_r(&seed) % 2 ? rand_r(&seed) : -1);
    assert_true(tmpdb_close(t));
}

/* ---- a member's points: jf_points_answer_text against its tree ---- */

static void test_points_answers(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_tx_view (points)");
    char id[64];
    for (int i = 0; i < 2000; i++) {
        jf_points p = {.balance = random_i64(&seed),
                       .held = random_i64(&seed),
                       .debt = random_i64(&seed),
                       .pending = random_i64(&seed),
                       .available = random_i64(&seed)};
        const char *member = i == 0 ? "mem_1" : random_text(&seed, id, sizeof(id));
        int64_t as_of = i == 1 ? -1 : random_i64(&seed) & INT64_C(0x1ffffffffff);
        json_t *tree = jf_points_answer_json(member, as_of, &p);
        char *want = jf_json_dump(tree, NULL);
        json_decref(tree);
        jf_jtext b = {0};
        jf_points_answer_text(&b, member, as_of, &p);
        assert_same_text(want, jf_jt_take(&b, NULL));
    }
}

/* ---- a write's answer: jf_points_reply_text against its tree ----
 *
 * {"transaction": T, "points": P, ...}: T is text already (above); P and the
 * keys after it were a tree that the writer dumped and joined to T. */

/* The answer as the tree and the join wrote it before the points were text. */
static char *reply_by_tree(const char *tx, const jf_points *p, json_t *more)
{
    json_t *rest = json_object();
    json_object_set_new(rest, "points", jf_points_json(p));
    if (more)
        json_object_update(rest, more);
    char *text = jf_json_dump(rest, NULL);
    json_decref(rest);
    assert_non_null(text);
    size_t n = strlen(tx) + strlen(text) + 32;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "{\"transaction\":%s,%s", tx, text + 1);
    free(text);
    return out;
}

static void test_write_answers(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_tx_view (write answers)");
    const char *tx = "{\"id\":\"txn_1\",\"type\":\"earn\",\"points\":5}";
    for (int i = 0; i < 2000; i++) {
        jf_points p = {.pending = random_i64(&seed),
                       .available = random_i64(&seed),
                       .held = random_i64(&seed)};
        json_t *more = i % 3 == 0 ? NULL : json_object();
        if (i % 3 == 2)
            json_object_set_new(more, "to_points", jf_points_json(&p));
        assert_same_text(reply_by_tree(tx, &p, more), jf_points_reply_text(tx, &p, more, NULL));
        json_decref(more);
    }
}

/* ---- a write's answer left as data: jf_reply_draft_render ----
 *
 * The writer keeps a write's answer as a draft that the syncer renders once
 * the commit is durable; its bytes must be those jf_tx_reply_text and
 * jf_points_reply_text write on the writer, after the transaction the draft
 * was made from is gone (its strings overwritten here). */

static void random_awards(unsigned *seed, jf_ctx *ctx)
{
    ctx->awarded_n = (size_t)(rand_r(seed) % 4);
    ctx->awarded = ctx->awarded_n ? calloc(ctx->awarded_n, sizeof(jf_award)) : NULL;
    char text[64];
    for (size_t i = 0; i < ctx->awarded_n; i++) {
        jf_award *w = &ctx->awarded[i];
        const char *rule = random_text(seed, text, sizeof(text));
        snprintf(w->rule_id, sizeof(w->rule_id), "%s", rule ? rule : "rule_1");
        w->rule_version = rand_r(seed) % 9 + 1;
        w->points = random_i64(seed);
        w->growth = rand_r(seed) % 1000;
        const char *why = random_text(seed, text, sizeof(text));
        snprintf(w->explanation, sizeof(w->explanation), "%s", why ? why : "");
    }
}

/* The text in s[cap] with every byte past ASCII made an 'a'. */
static void ascii_from(char *s, size_t cap)
{
    for (size_t i = 0; i < cap && s[i]; i++)
        if ((unsigned char)s[i] >= 0x80)
            s[i] = 'a';
}

/* A transaction of random fields and its writer's context: an earn of this
 * command's awards, an earn without any, or another type. */
static void random_write(unsigned *seed, char text[14][64], jf_tx *tx, jf_ctx *ctx,
                         const char *const *metadata, size_t n_metadata)
{
    static const char *const types[] = {"earn", "redeem", "adjust", "reverse"};
    jf_chain_tx v = random_view(seed, text, metadata, n_metadata);
    *tx = (jf_tx){.seq = rand_r(seed) % 100 + 1,
                  .type = types[rand_r(seed) % 4],
                  .member_id = v.member_id,
                  .counterparty_id = v.counterparty_id,
                  .points = v.points,
                  .delta = v.delta,
                  .reverses = v.reverses,
                  .hold_id = v.hold_id,
                  .order_id = v.order_id,
                  .order_currency = v.order_currency,
                  .order_amount = rand_r(seed) % 3 ? v.order_amount : -1,
                  .reason = v.reason,
                  .note = v.note,
                  .channel = v.channel,
                  .store_id = v.store_id,
                  .actor = v.actor,
                  .metadata = v.metadata ? strdup(v.metadata) : NULL};
    snprintf(tx->id, sizeof(tx->id), "%s", v.id ? v.id : "txn_1");
    ctx->now_ms = v.created_at;
    ctx->awarded_tx_seq = rand_r(seed) % 2 ? tx->seq : 0;
    random_awards(seed, ctx);
    if (rand_r(seed) % 4 == 0) { /* ASCII only: the short forms of the bound */
        for (int i = 0; i < 14; i++)
            ascii_from(text[i], sizeof(text[i]));
        ascii_from(tx->id, sizeof(tx->id));
        for (size_t i = 0; i < ctx->awarded_n; i++) {
            ascii_from(ctx->awarded[i].rule_id, sizeof(ctx->awarded[i].rule_id));
            ascii_from(ctx->awarded[i].explanation, sizeof(ctx->awarded[i].explanation));
        }
    }
    if (rand_r(seed) % 2) { /* no metadata: what a draft is made of */
        free(tx->metadata);
        tx->metadata = NULL;
    }
    /* Awards written but none kept are read back: only the writer does. */
    if (strcmp(tx->type, "earn") == 0 && ctx->awarded_tx_seq == tx->seq && ctx->awarded_n == 0)
        ctx->awarded_tx_seq = 0;
}

static void test_drafts(void **state)
{
    (void)state;
    static const char *const metadata[] = {NULL, "{}", "{\"k\":\"v\",\"n\":-1}", "[1,\"积\"]",
                                           "{\"x\":1.25e-7}"};
    unsigned seed = test_seed("test_tx_view (drafts)");
    jf_auth auth = {.tenant = 1};
    char text[14][64];
    int drafts = 0;
    for (int i = 0; i < 3000; i++) {
        jf_ctx ctx = {.auth = &auth};
        jf_tx tx;
        memset(text, 0, sizeof(text)); /* the last round overwrote them, ends and all */
        random_write(&seed, text, &tx, &ctx, metadata, sizeof(metadata) / sizeof(metadata[0]));
        jf_points p = {.pending = random_i64(&seed),
                       .available = random_i64(&seed),
                       .held = random_i64(&seed)};
        json_t *more = i % 4 == 0 ? json_pack("{si}", "to_points", 7) : NULL;
        jf_jtext b = {0};
        assert_int_equal(jf_tx_reply_text(&ctx, &tx, &b), JF_OK);
        char *tx_text = jf_jt_take(&b, NULL);
        assert_non_null(tx_text);
        char *want = jf_points_reply_text(tx_text, &p, more, NULL);
        free(tx_text);
        /* An answer with metadata is written on the writer. */
        bool plain = tx.metadata == NULL;
        jf_reply_draft *d = jf_reply_draft_new(&ctx, &tx, &p);
        assert_int_equal(d != NULL, plain);
        drafts += plain;
        if (d == NULL) {
            free(want);
            free(ctx.awarded);
            free(tx.metadata);
            json_decref(more);
            continue;
        }
        bool kept = strcmp(tx.type, "earn") == 0 && ctx.awarded_tx_seq == tx.seq;
        if (kept) /* the draft took them */
            assert_null(ctx.awarded);
        free(ctx.awarded);
        free(tx.metadata);
        memset(&tx, 'x', sizeof(tx));
        memset(text, 'x', sizeof(text));
        size_t len = 0;
        char *got = jf_reply_draft_render(d, more, &len);
        assert_int_equal(len, got ? strlen(got) : 0);
        assert_same_text(want, got);
        jf_reply_draft_free(d);
        json_decref(more);
    }
    printf("test_drafts: %d of 3000 answers drafted\n", drafts);
    assert_true(drafts > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_null),
        cmocka_unit_test(test_every_field_set),
        cmocka_unit_test(test_text_jansson_refuses),
        cmocka_unit_test(test_random_views),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_list_random_rows),
        cmocka_unit_test(test_lots_statuses),
        cmocka_unit_test(test_lots_random_rows),
        cmocka_unit_test(test_points_answers),
        cmocka_unit_test(test_write_answers),
        cmocka_unit_test(test_drafts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
