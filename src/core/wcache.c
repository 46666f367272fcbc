/*
 * What the writer remembers between batches (docs/PERFORMANCE.md): member
 * rows, and for each tenant a lower bound on the deadlines of its open
 * holds.  Every earn or spend loads its member (status, debt, birthday)
 * and asks whether the member has overdue holds to void first; both were a
 * statement on a random page each time (8 of the writer's ~100 us per W1
 * earn), though members change rarely and most tenants have no hold due.
 * An order earn of a tenant with tiers also reads the member's tier, kept
 * with the row (jf_tier_record marks the member dirty before it writes it).
 *
 * Member rows.  A two-way table: a member may sit in either slot of the pair
 * its hash picks, and a member that finds both taken by others replaces one
 * of them (a direct-mapped table left a sixth of 100,000 members in 262,144
 * slots colliding, so 17% of W1's earns read the row).  The rule that
 * keeps it exact: an entry is only ever filled from a row no write of the
 * current batch has touched, so it holds committed state whether the batch
 * then commits or rolls back.  Whoever writes a member row marks the member
 * dirty first (jf_wcache_member_dirty): its entry goes, and until the batch
 * ends the member is read from the database and never cached.  When more
 * members are dirty than the set holds, the table is bypassed for the rest
 * of the batch and emptied at its end.
 *
 * Hold deadlines.  For a tenant with a known bound, no open hold is due
 * before it, so a write at an earlier time skips the per-member check.  A
 * new hold lowers the bound (still a bound if its batch rolls back); a bound
 * is read exactly (the earliest open hold) at most once per batch, and any
 * rollback forgets all of them, since a hold voided or captured inside the
 * rolled-back work is open again.
 *
 * Parsed bodies.  A rule's version and a tier configuration's version
 * never change once written (their rows are immutable), so the writer
 * keeps each body it parsed, by (tenant, kind, id, version): every earn of
 * a tenant with rules or tiers parsed them all again (the sample rules and
 * a tier configuration: about 250,000 instructions per earn).  A version
 * written by a batch that is rolled back may be written again with other
 * content, so any rollback forgets them all.  What a caller derives from a
 * body (a rule's plan, rules.c) can be left with it, is served only with
 * that very body, and goes with it.
 *
 * Live rules.  Every earn of a tenant with rules asked the database which
 * of its rules a trigger fires (a join of three tables and a sort, about
 * 52,000 instructions per order earn of the sample rules); the answer only
 * changes when a rule or a campaign is written, or when time crosses a
 * campaign's window, so the writer keeps the rows before the windows are
 * applied (rules_db.c applies them at each earn).  A write of a rule or a
 * campaign forgets them all, and none is kept or served until its batch
 * ends, so what is kept is committed state; any rollback forgets them too.
 *
 * Tier configurations.  Every order earn of a tenant with tiers read its
 * current configuration's row and filled its tiers from the body (a query
 * and 37 lookups in it, about 13,000 instructions; twice before the
 * command's memo, tiers.c), though it only changes when a new version is
 * written.  The writer keeps each tenant's as filled, with the program's
 * time zone it was filled in (a program whose zone changed misses).  A
 * write of a configuration forgets them all and keeps none before its
 * batch ends, as for live rules; any rollback forgets them too.
 *
 * Another process may write the database between batches (the CLI): each
 * batch starts with SQLite's data version, and a change empties the table
 * and forgets the bounds and bodies.  Only the writer thread touches this.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tiers.h"

typedef struct member_slot {
    uint64_t gen; /* valid when equal to the table's generation */
    int64_t tenant;
    jf_member m;
} member_slot;

typedef struct body_slot {
    int64_t tenant, version;
    char kind;
    char id[JF_ID_LEN_MAX];
    json_t *body;  /* a reference of the table's own; NULL when free */
    void *derived; /* jf_wcache_body_derive's, or NULL; goes with body */
} body_slot;

typedef struct live_slot {
    int64_t tenant;         /* 0 when free */
    bool drafts, has_event; /* an event of "" is not no event */
    char trigger[16];
    char event[JF_EVENT_NAME_LEN_MAX + 1];
    size_t n;
    jf_live_rule rows[JF_RULES_ACTIVE_MAX];
} live_slot;

typedef struct tiers_slot {
    int64_t tenant; /* 0 when free */
    bool found;     /* false: the tenant has no configuration */
    char tz[JF_TIMEZONE_LEN_MAX + 1];
    jf_tier_config cfg; /* when found; its body a reference of the table's own */
} tiers_slot;

typedef struct tenant_slot {
    int64_t tenant; /* 0 when free */
    bool known;
    int64_t bound_ms; /* no open hold of the tenant is due before this */
    uint64_t batch;   /* the batch that last read the bound exactly */
} tenant_slot;

struct jf_wcache {
    member_slot *members; /* lazily touched pages: calloc'd, JF_WCACHE_MEMBERS slots */
    uint64_t gen;         /* bumped to empty the table in O(1) */
    uint64_t batch;
    int64_t data_version;
    /* Members written in this batch, by hash (open addressing, half full at most). */
    struct {
        int64_t tenant;
        char id[JF_ID_LEN_MAX];
    } dirty[2 * JF_WCACHE_DIRTY_MAX];
    int dirty_used[JF_WCACHE_DIRTY_MAX]; /* the slots taken, to free them at the end */
    int dirty_n;
    bool bypass; /* the dirty set overflowed: no lookups until the batch ends */
    tenant_slot tenants[JF_WCACHE_TENANTS];
    body_slot bodies[JF_WCACHE_BODIES];
    live_slot *live;         /* JF_WCACHE_LIVE slots */
    uint64_t live_bypassed;  /* the batch that wrote a rule or campaign */
    tiers_slot *tiers;       /* JF_WCACHE_TIERS slots */
    uint64_t tiers_bypassed; /* the batch that wrote a tier configuration */
};

_Static_assert((JF_WCACHE_MEMBERS & (JF_WCACHE_MEMBERS - 1)) == 0, "slots are a power of two");
_Static_assert((JF_WCACHE_TENANTS & (JF_WCACHE_TENANTS - 1)) == 0, "slots are a power of two");
_Static_assert((JF_WCACHE_BODIES & (JF_WCACHE_BODIES - 1)) == 0, "slots are a power of two");
_Static_assert((JF_WCACHE_LIVE & (JF_WCACHE_LIVE - 1)) == 0, "slots are a power of two");
_Static_assert((JF_WCACHE_TIERS & (JF_WCACHE_TIERS - 1)) == 0, "slots are a power of two");

jf_wcache *jf_wcache_new(void)
{
    jf_wcache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->members = calloc(JF_WCACHE_MEMBERS, sizeof(*c->members));
    c->live = calloc(JF_WCACHE_LIVE, sizeof(*c->live));
    c->tiers = calloc(JF_WCACHE_TIERS, sizeof(*c->tiers));
    if (c->members == NULL || c->live == NULL || c->tiers == NULL) {
        free(c->members);
        free(c->live);
        free(c->tiers);
        free(c);
        return NULL;
    }
    c->gen = 1; /* calloc'd slots hold generation 0: empty */
    c->data_version = -1;
    return c;
}

static void body_forget(body_slot *b)
{
    json_decref(b->body);
    free(b->derived);
    b->body = NULL;
    b->derived = NULL;
}

static void forget_bodies(jf_wcache *c)
{
    for (int i = 0; i < JF_WCACHE_BODIES; i++)
        body_forget(&c->bodies[i]);
}

static void forget_tiers(jf_wcache *c)
{
    for (int i = 0; i < JF_WCACHE_TIERS; i++) {
        tiers_slot *t = &c->tiers[i];
        if (t->tenant != 0 && t->found)
            jf_tier_config_free(&t->cfg);
        t->tenant = 0;
    }
}

static void forget_live(jf_wcache *c)
{
    for (int i = 0; i < JF_WCACHE_LIVE; i++)
        c->live[i].tenant = 0;
}

void jf_wcache_free(jf_wcache *c)
{
    if (c == NULL)
        return;
    forget_bodies(c);
    forget_tiers(c);
    free(c->members);
    free(c->live);
    free(c->tiers);
    free(c);
}

static uint64_t member_hash(int64_t tenant, const char *id)
{
    return jf_hash_str(JF_HASH_STR_SEED ^ (uint64_t)tenant, id);
}

static void forget_bounds(jf_wcache *c)
{
    for (int i = 0; i < JF_WCACHE_TENANTS; i++)
        c->tenants[i].known = false;
}

void jf_wcache_batch_begin(jf_wcache *c, int64_t data_version)
{
    if (c == NULL)
        return;
    c->batch++;
    if (data_version < 0 || data_version != c->data_version) {
        c->gen++;
        forget_bounds(c);
        forget_bodies(c);
        forget_live(c);
        forget_tiers(c);
        c->data_version = data_version;
    }
}

void jf_wcache_batch_end(jf_wcache *c)
{
    if (c == NULL)
        return;
    if (c->bypass)
        c->gen++;
    for (int i = 0; i < c->dirty_n; i++)
        c->dirty[c->dirty_used[i]].tenant = 0;
    c->dirty_n = 0;
    c->bypass = false;
}

void jf_wcache_rollback(jf_wcache *c)
{
    if (c == NULL)
        return;
    forget_bounds(c);
    forget_bodies(c);
    forget_live(c);
    forget_tiers(c);
}

/* The dirty set's slot for (tenant, id), whose member_hash is h: where it
 * is, or the free slot where it would go. */
static int dirty_slot(jf_wcache *c, uint64_t h, int64_t tenant, const char *id)
{
    enum { SLOTS = 2 * JF_WCACHE_DIRTY_MAX };
    for (uint64_t i = h % SLOTS;; i = (i + 1) % SLOTS)
        if (c->dirty[i].tenant == 0 ||
            (c->dirty[i].tenant == tenant && strcmp(c->dirty[i].id, id) == 0))
            return (int)i;
}

/* The two slots a member of hash h may sit in. */
static member_slot *member_pair(jf_wcache *c, uint64_t h)
{
    return &c->members[h & (JF_WCACHE_MEMBERS - 2)];
}

/* The slot of the pair for hash h that holds (tenant, id), or NULL. */
static member_slot *member_find(jf_wcache *c, uint64_t h, int64_t tenant, const char *id)
{
    member_slot *pair = member_pair(c, h);
    for (int k = 0; k < 2; k++)
        if (pair[k].gen == c->gen && pair[k].tenant == tenant && strcmp(pair[k].m.id, id) == 0)
            return &pair[k];
    return NULL;
}

void jf_wcache_member_dirty(jf_wcache *c, int64_t tenant, const char *id)
{
    if (c == NULL || c->bypass)
        return;
    uint64_t h = member_hash(tenant, id);
    member_slot *s = member_find(c, h, tenant, id);
    if (s)
        s->gen = 0;
    if (c->dirty_n == JF_WCACHE_DIRTY_MAX || strlen(id) >= JF_ID_LEN_MAX) {
        c->bypass = true;
        return;
    }
    int i = dirty_slot(c, h, tenant, id);
    if (c->dirty[i].tenant != 0)
        return;
    c->dirty[i].tenant = tenant;
    memcpy(c->dirty[i].id, id, strlen(id) + 1);
    c->dirty_used[c->dirty_n++] = i;
}

static bool member_is_dirty(jf_wcache *c, uint64_t h, int64_t tenant, const char *id)
{
    return c->bypass || c->dirty[dirty_slot(c, h, tenant, id)].tenant != 0;
}

bool jf_wcache_member_get(jf_wcache *c, int64_t tenant, const char *id, jf_member *out)
{
    if (c == NULL || tenant == 0)
        return false;
    uint64_t h = member_hash(tenant, id);
    if (member_is_dirty(c, h, tenant, id))
        return false;
    const member_slot *s = member_find(c, h, tenant, id);
    if (s == NULL)
        return false;
    *out = s->m;
    return true;
}

void jf_wcache_member_put(jf_wcache *c, int64_t tenant, const jf_member *m)
{
    if (c == NULL || tenant == 0)
        return;
    uint64_t h = member_hash(tenant, m->id);
    if (member_is_dirty(c, h, tenant, m->id))
        return;
    /* Its own slot, else a free one of the pair, else the one a hash bit
     * names (the pair's other member may be the busier one). */
    member_slot *s = member_find(c, h, tenant, m->id);
    member_slot *pair = member_pair(c, h);
    if (s == NULL)
        s = pair[0].gen != c->gen   ? &pair[0]
            : pair[1].gen != c->gen ? &pair[1]
                                    : &pair[(h >> 32) & 1];
    s->gen = c->gen;
    s->tenant = tenant;
    s->m = *m;
}

/* The tenant's slot, claimed when absent; NULL when the table is full. */
static tenant_slot *tenant_find(jf_wcache *c, int64_t tenant)
{
    uint64_t h = (uint64_t)tenant * 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < JF_WCACHE_TENANTS; k++) {
        tenant_slot *t = &c->tenants[(h + (uint64_t)k) & (JF_WCACHE_TENANTS - 1)];
        if (t->tenant == tenant)
            return t;
        if (t->tenant == 0) {
            t->tenant = tenant;
            t->known = false;
            return t;
        }
    }
    return NULL;
}

bool jf_wcache_holds_bound(jf_wcache *c, int64_t tenant, int64_t now_ms, int64_t *bound_ms)
{
    tenant_slot *t = c && tenant != 0 ? tenant_find(c, tenant) : NULL;
    if (t == NULL) {
        /* Not tracked (no table, or it is full): no bound, and none to read. */
        *bound_ms = INT64_MIN;
        return true;
    }
    if (!t->known)
        return false;
    /* A bound already passed is read again once per batch, so that holds
     * voided or captured since let it rise. */
    if (t->bound_ms <= now_ms && t->batch != c->batch)
        return false;
    *bound_ms = t->bound_ms;
    return true;
}

void jf_wcache_holds_bound_set(jf_wcache *c, int64_t tenant, int64_t bound_ms)
{
    tenant_slot *t = c && tenant != 0 ? tenant_find(c, tenant) : NULL;
    if (t == NULL)
        return;
    t->known = true;
    t->bound_ms = bound_ms;
    t->batch = c->batch;
}

void jf_wcache_hold_opened(jf_wcache *c, int64_t tenant, int64_t expires_ms)
{
    tenant_slot *t = c && tenant != 0 ? tenant_find(c, tenant) : NULL;
    if (t != NULL && t->known && expires_ms < t->bound_ms)
        t->bound_ms = expires_ms;
}

/* ---- parsed bodies ---- */

static body_slot *body_find(jf_wcache *c, int64_t tenant, char kind, const char *id,
                            int64_t version)
{
    uint64_t h = jf_hash_str(JF_HASH_STR_SEED ^ (uint64_t)tenant ^ (uint64_t)version * 31 ^
                                 (uint64_t)(unsigned char)kind,
                             id);
    return &c->bodies[h & (JF_WCACHE_BODIES - 1)];
}

static bool body_is(const body_slot *b, int64_t tenant, char kind, const char *id, int64_t version)
{
    return b->body != NULL && b->tenant == tenant && b->version == version && b->kind == kind &&
           strcmp(b->id, id) == 0;
}

json_t *jf_wcache_body_get(jf_wcache *c, int64_t tenant, char kind, const char *id, int64_t version)
{
    if (c == NULL || strlen(id) >= JF_ID_LEN_MAX)
        return NULL;
    body_slot *b = body_find(c, tenant, kind, id, version);
    return body_is(b, tenant, kind, id, version) ? json_incref(b->body) : NULL;
}

void jf_wcache_body_put(jf_wcache *c, int64_t tenant, char kind, const char *id, int64_t version,
                        json_t *body)
{
    if (c == NULL || body == NULL || strlen(id) >= JF_ID_LEN_MAX)
        return;
    body_slot *b = body_find(c, tenant, kind, id, version);
    body_forget(b);
    b->tenant = tenant;
    b->version = version;
    b->kind = kind;
    memcpy(b->id, id, strlen(id) + 1);
    b->body = json_incref(body);
}

json_t *jf_wcache_body_load(jf_wcache *c, int64_t tenant, char kind, const char *id,
                            int64_t version, const char *text)
{
    json_t *body = jf_wcache_body_get(c, tenant, kind, id, version);
    if (body == NULL && text != NULL && (body = jf_json_loads_whole(text, 0)) != NULL)
        jf_wcache_body_put(c, tenant, kind, id, version, body);
    return body;
}

const void *jf_wcache_body_derived(jf_wcache *c, int64_t tenant, char kind, const char *id,
                                   int64_t version, const json_t *body)
{
    if (c == NULL || strlen(id) >= JF_ID_LEN_MAX)
        return NULL;
    body_slot *b = body_find(c, tenant, kind, id, version);
    return body_is(b, tenant, kind, id, version) && b->body == body ? b->derived : NULL;
}

void jf_wcache_body_derive(jf_wcache *c, int64_t tenant, char kind, const char *id, int64_t version,
                           const json_t *body, void *derived)
{
    body_slot *b = c && strlen(id) < JF_ID_LEN_MAX ? body_find(c, tenant, kind, id, version) : NULL;
    if (b == NULL || !body_is(b, tenant, kind, id, version) || b->body != body) {
        free(derived);
        return;
    }
    free(b->derived);
    b->derived = derived;
}

/* The slot of (tenant, trigger, event, drafts), when the key fits one. */
static live_slot *live_find(jf_wcache *c, int64_t tenant, const char *trigger, const char *event,
                            bool drafts)
{
    if (c == NULL || c->live_bypassed == c->batch || strlen(trigger) >= sizeof c->live->trigger ||
        (event && strlen(event) > JF_EVENT_NAME_LEN_MAX))
        return NULL;
    uint64_t h =
        jf_hash_str(jf_hash_str(JF_HASH_STR_SEED ^ (uint64_t)tenant, trigger), event ? event : "");
    return &c->live[(h ^ (uint64_t)drafts) & (JF_WCACHE_LIVE - 1)];
}

static bool live_is(const live_slot *l, int64_t tenant, const char *trigger, const char *event,
                    bool drafts)
{
    return l->tenant == tenant && l->drafts == drafts && l->has_event == (event != NULL) &&
           strcmp(l->trigger, trigger) == 0 && strcmp(l->event, event ? event : "") == 0;
}

bool jf_wcache_live_get(jf_wcache *c, int64_t tenant, const char *trigger, const char *event,
                        bool drafts, const jf_live_rule **rows, size_t *n)
{
    live_slot *l = live_find(c, tenant, trigger, event, drafts);
    if (l == NULL || !live_is(l, tenant, trigger, event, drafts))
        return false;
    *rows = l->rows;
    *n = l->n;
    return true;
}

void jf_wcache_live_put(jf_wcache *c, int64_t tenant, const char *trigger, const char *event,
                        bool drafts, const jf_live_rule *rows, size_t n)
{
    live_slot *l = live_find(c, tenant, trigger, event, drafts);
    if (l == NULL || n > JF_RULES_ACTIVE_MAX)
        return;
    l->tenant = tenant;
    l->drafts = drafts;
    l->has_event = event != NULL;
    jf_str_copy(l->trigger, sizeof l->trigger, trigger);
    jf_str_copy(l->event, sizeof l->event, event ? event : "");
    memcpy(l->rows, rows, n * sizeof(*rows));
    l->n = n;
}

void jf_wcache_live_changed(jf_wcache *c)
{
    if (c == NULL)
        return;
    forget_live(c);
    c->live_bypassed = c->batch;
}

/* The slot of a tenant's tier configuration; NULL while not kept. */
static tiers_slot *tiers_find(jf_wcache *c, int64_t tenant)
{
    if (c == NULL || c->tiers_bypassed == c->batch)
        return NULL;
    uint64_t h = jf_hash_str(JF_HASH_STR_SEED ^ (uint64_t)tenant, "tiers");
    return &c->tiers[h & (JF_WCACHE_TIERS - 1)];
}

bool jf_wcache_tiers_get(jf_wcache *c, int64_t tenant, const char *tz, jf_tier_config *cfg,
                         bool *found)
{
    const tiers_slot *t = tiers_find(c, tenant);
    if (t == NULL || t->tenant != tenant || strcmp(t->tz, tz) != 0)
        return false;
    *found = t->found;
    memset(cfg, 0, sizeof(*cfg));
    if (t->found) {
        *cfg = t->cfg;
        json_incref(cfg->body);
    }
    return true;
}

void jf_wcache_tiers_put(jf_wcache *c, int64_t tenant, const char *tz, const jf_tier_config *cfg,
                         bool found)
{
    tiers_slot *t = tiers_find(c, tenant);
    if (t == NULL || strlen(tz) >= sizeof t->tz)
        return;
    if (t->tenant != 0 && t->found)
        jf_tier_config_free(&t->cfg);
    t->tenant = tenant;
    t->found = found;
    jf_str_copy(t->tz, sizeof t->tz, tz);
    if (found) {
        t->cfg = *cfg;
        json_incref(t->cfg.body);
    }
}

void jf_wcache_tiers_changed(jf_wcache *c)
{
    if (c == NULL)
        return;
    forget_tiers(c);
    c->tiers_bypassed = c->batch;
}
