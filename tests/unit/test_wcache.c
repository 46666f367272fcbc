/*
 * The writer's memory between batches (src/core/wcache.c), as a table: a
 * member read in one batch is served in the next; a member written in a
 * batch is never served or filled until that batch ends; a dirty set that
 * overflows empties the table at the batch's end; another process's write
 * (a new data version) empties it; hold bounds are lowered by new holds,
 * read again at most once per batch when passed, and forgotten on rollback;
 * parsed bodies are served by their exact key and forgotten on a rollback or
 * another process's write; live rules and tier configurations are forgotten
 * when one is written (and not kept again in that batch), on a rollback and
 * on another process's write, and a configuration filled in another time
 * zone is not served.
 * The engine-level checks (a frozen member, debt, an overdue hold seen by
 * the next write) are in tests/api.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core.h"
#include "tiers.h"

static jf_member member(const char *id, int64_t debt)
{
    jf_member m = {.seq = 7, .debt = debt};
    snprintf(m.id, sizeof(m.id), "%s", id);
    snprintf(m.status, sizeof(m.status), "active");
    return m;
}

static void test_served_across_batches(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    assert_non_null(c);
    jf_member m = member("mem_a", 5), got;
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_member_get(c, 1, "mem_a", &got));
    jf_wcache_member_put(c, 1, &m);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    assert_true(jf_wcache_member_get(c, 1, "mem_a", &got));
    assert_int_equal(got.debt, 5);
    assert_string_equal(got.id, "mem_a");
    /* Another tenant's member of the same id is another member. */
    assert_false(jf_wcache_member_get(c, 2, "mem_a", &got));
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
    jf_wcache_free(NULL);
}

/* Ids of tenant 1 whose hash picks one slot, so one pair (brute force over
 * "mem_<n>"); fills ids[0..n). */
static void same_slot_ids(char (*ids)[32], int n)
{
    uint64_t slot = 0;
    for (int found = 0, i = 0; found < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "mem_%d", i);
        uint64_t p = jf_hash_str(JF_HASH_STR_SEED ^ 1u, id) & (JF_WCACHE_MEMBERS - 1);
        if (found == 0)
            slot = p;
        if (p == slot)
            snprintf(ids[found++], 32, "%s", id);
    }
}

static void test_two_members_of_one_pair(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    char ids[3][32];
    same_slot_ids(ids, 3);
    jf_member got;
    jf_wcache_batch_begin(c, 1);
    for (int i = 0; i < 3; i++) {
        jf_member m = member(ids[i], 10 + i);
        jf_wcache_member_put(c, 1, &m);
        if (i == 1) {
            /* Two members of one pair are both kept. */
            assert_true(jf_wcache_member_get(c, 1, ids[0], &got));
            assert_int_equal(got.debt, 10);
            assert_true(jf_wcache_member_get(c, 1, ids[1], &got));
            assert_int_equal(got.debt, 11);
        }
    }
    /* A third replaces one of them; whatever is served is right. */
    int served = 0;
    for (int i = 0; i < 3; i++)
        if (jf_wcache_member_get(c, 1, ids[i], &got)) {
            assert_int_equal(got.debt, 10 + i);
            served++;
        }
    assert_int_equal(served, 2);
    assert_true(jf_wcache_member_get(c, 1, ids[2], &got));
    /* Writing one forgets it in whichever slot it sits. */
    jf_wcache_member_dirty(c, 1, ids[2]);
    assert_false(jf_wcache_member_get(c, 1, ids[2], &got));
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_member_get(c, 1, ids[2], &got));
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
}

static void test_dirty_member_not_served_nor_filled(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    jf_member m = member("mem_a", 5), got;
    jf_wcache_batch_begin(c, 1);
    jf_wcache_member_put(c, 1, &m);
    jf_wcache_member_dirty(c, 1, "mem_a");
    assert_false(jf_wcache_member_get(c, 1, "mem_a", &got));
    /* A row read after the write (uncommitted) must not be remembered. */
    m.debt = 9;
    jf_wcache_member_put(c, 1, &m);
    assert_false(jf_wcache_member_get(c, 1, "mem_a", &got));
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_member_get(c, 1, "mem_a", &got));
    jf_wcache_member_put(c, 1, &m); /* read from the committed row */
    assert_true(jf_wcache_member_get(c, 1, "mem_a", &got));
    assert_int_equal(got.debt, 9);
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
}

static void test_overflow_bypasses_then_empties(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    jf_member keep = member("mem_keep", 1), got;
    jf_wcache_batch_begin(c, 1);
    jf_wcache_member_put(c, 1, &keep);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    char id[JF_ID_LEN_MAX];
    for (int i = 0; i <= JF_WCACHE_DIRTY_MAX; i++) {
        snprintf(id, sizeof(id), "mem_%d", i);
        jf_wcache_member_dirty(c, 1, id);
    }
    /* Past the set's size nothing is served, not even an untouched member. */
    assert_false(jf_wcache_member_get(c, 1, "mem_keep", &got));
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_member_get(c, 1, "mem_keep", &got));
    /* And the table works again once the batch is over. */
    jf_wcache_member_put(c, 1, &keep);
    assert_true(jf_wcache_member_get(c, 1, "mem_keep", &got));
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
}

static void test_other_process_empties(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    jf_member m = member("mem_a", 0), got;
    jf_wcache_batch_begin(c, 3);
    jf_wcache_member_put(c, 1, &m);
    jf_wcache_holds_bound_set(c, 1, 1000);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 4);
    int64_t bound = 0;
    assert_false(jf_wcache_member_get(c, 1, "mem_a", &got));
    assert_false(jf_wcache_holds_bound(c, 1, 0, &bound));
    jf_wcache_member_put(c, 1, &m);
    jf_wcache_batch_end(c);
    /* An unreadable version forgets everything too. */
    jf_wcache_batch_begin(c, -1);
    assert_false(jf_wcache_member_get(c, 1, "mem_a", &got));
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
}

static void test_hold_bounds(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    int64_t bound = 0;
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_holds_bound(c, 1, 0, &bound));
    jf_wcache_holds_bound_set(c, 1, 5000);
    assert_true(jf_wcache_holds_bound(c, 1, 100, &bound));
    assert_int_equal(bound, 5000);
    /* A new hold due earlier lowers it; one due later does not raise it. */
    jf_wcache_hold_opened(c, 1, 3000);
    jf_wcache_hold_opened(c, 1, 9000);
    assert_true(jf_wcache_holds_bound(c, 1, 100, &bound));
    assert_int_equal(bound, 3000);
    /* Passed within the batch that read it: kept (the caller checks). */
    assert_true(jf_wcache_holds_bound(c, 1, 4000, &bound));
    jf_wcache_batch_end(c);
    /* Passed, read in an earlier batch: read again. */
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_holds_bound(c, 1, 4000, &bound));
    jf_wcache_holds_bound_set(c, 1, 8000);
    assert_true(jf_wcache_holds_bound(c, 1, 4000, &bound));
    assert_int_equal(bound, 8000);
    /* A rollback forgets every bound. */
    jf_wcache_rollback(c);
    assert_false(jf_wcache_holds_bound(c, 1, 4000, &bound));
    /* An unknown bound is not lowered into a known one. */
    jf_wcache_hold_opened(c, 1, 10);
    assert_false(jf_wcache_holds_bound(c, 1, 0, &bound));
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
}

/* Past JF_WCACHE_TENANTS tenants a tenant gets no bound (every write checks
 * its member) rather than a read of the bound each time. */
static void test_untracked_tenant_has_no_bound(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    int64_t bound = 0;
    jf_wcache_batch_begin(c, 1);
    for (int64_t t = 1; t <= JF_WCACHE_TENANTS; t++)
        jf_wcache_holds_bound_set(c, t, INT64_MAX);
    assert_true(jf_wcache_holds_bound(c, JF_WCACHE_TENANTS + 1, 0, &bound));
    assert_int_equal(bound, INT64_MIN);
    assert_true(jf_wcache_holds_bound(c, 1, 0, &bound));
    assert_int_equal(bound, INT64_MAX);
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
}

/* Parsed bodies by (tenant, kind, id, version): served across batches as
 * new references, never for another key, and forgotten on a rollback (a
 * rolled-back version may be written again) and on another process's write. */
static void test_bodies(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    assert_non_null(c);
    json_t *rule = json_pack("{si}", "points", 5);
    jf_wcache_batch_begin(c, 1);
    assert_null(jf_wcache_body_get(c, 1, 'R', "rul_a", 2));
    jf_wcache_body_put(c, 1, 'R', "rul_a", 2, rule);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    json_t *got = jf_wcache_body_get(c, 1, 'R', "rul_a", 2);
    assert_ptr_equal(got, rule);
    assert_int_equal(rule->refcount, 3); /* ours, the table's, got */
    json_decref(got);
    assert_null(jf_wcache_body_get(c, 1, 'R', "rul_a", 3));
    assert_null(jf_wcache_body_get(c, 2, 'R', "rul_a", 2));
    assert_null(jf_wcache_body_get(c, 1, 'T', "rul_a", 2));
    assert_null(jf_wcache_body_get(NULL, 1, 'R', "rul_a", 2));
    jf_wcache_rollback(c);
    assert_null(jf_wcache_body_get(c, 1, 'R', "rul_a", 2));
    assert_int_equal(rule->refcount, 1);
    jf_wcache_body_put(c, 1, 'T', "", 4, rule);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 2); /* another process wrote */
    assert_null(jf_wcache_body_get(c, 1, 'T', "", 4));
    jf_wcache_body_put(c, 1, 'T', "", 4, rule);
    jf_wcache_free(c);
    assert_int_equal(rule->refcount, 1);
    json_decref(rule);
}

/* What a caller derived from a body (a rule's plan) is served only with
 * the very body kept for its key, goes when the body goes (a rollback, a
 * new body for the key, the table's end: the sanitizer build reports a
 * leak otherwise), and is freed at once when left for a body not kept. */
static void test_body_derived(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    assert_non_null(c);
    json_t *rule = json_pack("{si}", "points", 5), *other = json_pack("{si}", "points", 5);
    jf_wcache_batch_begin(c, 1);
    jf_wcache_body_put(c, 1, 'R', "rul_a", 2, rule);
    assert_null(jf_wcache_body_derived(c, 1, 'R', "rul_a", 2, rule));
    int *plan = malloc(sizeof(*plan));
    *plan = 42;
    jf_wcache_body_derive(c, 1, 'R', "rul_a", 2, rule, plan);
    assert_ptr_equal(jf_wcache_body_derived(c, 1, 'R', "rul_a", 2, rule), plan);
    assert_null(jf_wcache_body_derived(c, 1, 'R', "rul_a", 2, other));
    assert_null(jf_wcache_body_derived(c, 1, 'R', "rul_a", 3, rule));
    assert_null(jf_wcache_body_derived(c, 2, 'R', "rul_a", 2, rule));
    assert_null(jf_wcache_body_derived(NULL, 1, 'R', "rul_a", 2, rule));
    jf_wcache_body_derive(c, 1, 'R', "rul_a", 2, other, malloc(8)); /* freed at once */
    jf_wcache_body_derive(c, 1, 'R', "rul_b", 2, rule, malloc(8));
    jf_wcache_body_derive(NULL, 1, 'R', "rul_a", 2, rule, malloc(8));
    assert_ptr_equal(jf_wcache_body_derived(c, 1, 'R', "rul_a", 2, rule), plan);
    jf_wcache_body_put(c, 1, 'R', "rul_a", 2, other); /* a new body: the plan goes */
    assert_null(jf_wcache_body_derived(c, 1, 'R', "rul_a", 2, other));
    jf_wcache_body_derive(c, 1, 'R', "rul_a", 2, other, malloc(8));
    jf_wcache_rollback(c);
    assert_null(jf_wcache_body_derived(c, 1, 'R', "rul_a", 2, other));
    jf_wcache_body_put(c, 1, 'R', "rul_a", 2, rule);
    jf_wcache_body_derive(c, 1, 'R', "rul_a", 2, rule, malloc(8));
    jf_wcache_batch_end(c);
    jf_wcache_free(c);
    assert_int_equal(rule->refcount, 1);
    json_decref(rule);
    json_decref(other);
}

/* Live rules: served by their exact key until a rule or campaign is
 * written (then neither served nor kept before the next batch), a
 * rollback, or another process's write. */
static void test_live_rules(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    assert_non_null(c);
    jf_live_rule rows[2] = {{.id = "rul_a",
                             .version = 3,
                             .starts_at = INT64_MIN,
                             .ends_at = INT64_MAX,
                             .budget_points = -1,
                             .budget_awards = -1},
                            {.id = "rul_b",
                             .version = 1,
                             .campaign_id = "cmp_x",
                             .starts_at = 10,
                             .ends_at = 20,
                             .budget_points = 100,
                             .budget_awards = -1}};
    const jf_live_rule *got = NULL;
    size_t n = 0;
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_live_put(c, 1, "purchase", NULL, false, rows, 2);
    rows[0].version = 99; /* the table keeps its own copy */
    assert_true(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    assert_int_equal(n, 2);
    assert_int_equal(got[0].version, 3);
    assert_string_equal(got[1].campaign_id, "cmp_x");
    assert_int_equal(got[1].budget_points, 100);
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, true, &got, &n));
    assert_false(jf_wcache_live_get(c, 2, "purchase", NULL, false, &got, &n));
    assert_false(jf_wcache_live_get(c, 1, "event", NULL, false, &got, &n));
    assert_false(jf_wcache_live_get(c, 1, "purchase", "review", false, &got, &n));
    assert_false(jf_wcache_live_get(c, 1, "purchase", "", false, &got, &n));
    assert_false(jf_wcache_live_get(NULL, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_live_put(c, 1, "event", "review", false, rows, 1);
    assert_true(jf_wcache_live_get(c, 1, "event", "review", false, &got, &n));
    assert_int_equal(n, 1);
    jf_wcache_live_changed(c);
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_live_put(c, 1, "purchase", NULL, false, rows, 2); /* not kept in this batch */
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_live_put(c, 1, "purchase", NULL, false, rows, 0);
    assert_true(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    assert_int_equal(n, 0);
    jf_wcache_rollback(c);
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_live_put(c, 1, "purchase", NULL, false, rows, 1);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 2); /* another process wrote */
    assert_false(jf_wcache_live_get(c, 1, "purchase", NULL, false, &got, &n));
    jf_wcache_free(c);
}

/* A tenant's tier configuration: a copy with its own reference to the
 * body, by tenant and the program's zone. */
static void test_tier_configs(void **state)
{
    (void)state;
    jf_wcache *c = jf_wcache_new();
    assert_non_null(c);
    jf_tier_config cfg = {.version = 3, .n = 2, .body = json_pack("{s:i}", "v", 3)};
    jf_tier_config got;
    bool found = false;
    assert_non_null(cfg.body);
    jf_wcache_batch_begin(c, 1);
    assert_false(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    jf_wcache_tiers_put(c, 1, "Asia/Shanghai", &cfg, true);
    assert_int_equal(cfg.body->refcount, 2);
    assert_true(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    assert_true(found);
    assert_int_equal(got.version, 3);
    assert_int_equal(got.n, 2);
    assert_ptr_equal(got.body, cfg.body);
    assert_int_equal(cfg.body->refcount, 3);
    jf_tier_config_free(&got);
    assert_false(jf_wcache_tiers_get(c, 1, "UTC", &got, &found));
    assert_false(jf_wcache_tiers_get(c, 2, "Asia/Shanghai", &got, &found));
    assert_false(jf_wcache_tiers_get(NULL, 1, "Asia/Shanghai", &got, &found));
    jf_wcache_tiers_put(c, 2, "UTC", NULL, false); /* a tenant without one */
    assert_true(jf_wcache_tiers_get(c, 2, "UTC", &got, &found));
    assert_false(found);
    assert_null(got.body);
    /* A configuration written: none served or kept before the batch ends. */
    jf_wcache_tiers_changed(c);
    assert_int_equal(cfg.body->refcount, 1);
    assert_false(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    jf_wcache_tiers_put(c, 1, "Asia/Shanghai", &cfg, true);
    assert_false(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 1);
    jf_wcache_tiers_put(c, 1, "Asia/Shanghai", &cfg, true);
    assert_true(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    jf_tier_config_free(&got);
    jf_wcache_rollback(c);
    assert_false(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    jf_wcache_tiers_put(c, 1, "Asia/Shanghai", &cfg, true);
    jf_wcache_batch_end(c);
    jf_wcache_batch_begin(c, 2); /* another process wrote */
    assert_false(jf_wcache_tiers_get(c, 1, "Asia/Shanghai", &got, &found));
    assert_int_equal(cfg.body->refcount, 1);
    jf_wcache_tiers_put(c, 1, "Asia/Shanghai", &cfg, true);
    jf_wcache_free(c); /* lets its reference go */
    assert_int_equal(cfg.body->refcount, 1);
    jf_tier_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_served_across_batches),
        cmocka_unit_test(test_two_members_of_one_pair),
        cmocka_unit_test(test_dirty_member_not_served_nor_filled),
        cmocka_unit_test(test_overflow_bypasses_then_empties),
        cmocka_unit_test(test_other_process_empties),
        cmocka_unit_test(test_hold_bounds),
        cmocka_unit_test(test_untracked_tenant_has_no_bound),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_body_derived),
        cmocka_unit_test(test_live_rules),
        cmocka_unit_test(test_tier_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
