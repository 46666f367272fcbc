/*
 * Which idempotency keys the database may hold: a Bloom filter over every
 * stored (tenant, key), so that the writer skips the lookup of a key it
 * has surely never stored (idem.c, jf_idem_lookup).  Nearly every write
 * carries a new key, and the lookup that finds nothing was about 7% of the
 * writer's instructions per earn (docs/PERFORMANCE.md); a probe here costs
 * a hash and one cache line.
 *
 * Why our own: no Debian package offers a concurrent Bloom filter as a C
 * library, and the part that matters is not the bit array but the protocol
 * below, which ties the filter to SQLite's snapshots.
 *
 * The filter only ever answers "surely absent" or "maybe": a maybe is a
 * lookup, as without it.  It must never say absent for a stored key, so:
 *
 *   - The writer adds every key it stores (jf_idem_filter_add), even in a
 *     batch later rolled back: a key too many is only a lookup.
 *   - A builder thread fills a new filter from the table.  The writer adopts
 *     the new filter at a batch's start, before the builder's snapshot
 *     begins: what was committed before the adoption is in the snapshot, and
 *     every key stored after it goes in through the writer.  Until the scan
 *     is done the filter is not asked.
 *   - Another process (the CLI) may store keys between batches: each batch
 *     starts with SQLite's data version, read inside its write transaction
 *     (engine.c, writer_apply_all), and a change forgets the filter and
 *     builds it again.
 *   - A batch run again after a failure (eng->careful) looks every key up.
 *     So a key the filter missed through a bug would fail its first attempt
 *     on the table's primary key, and be answered as the replay it is when
 *     its batch runs again; I5 rests on that key, not on this file.
 *
 * The same filter holds the orders that earned (jf_idem_filter_order_*),
 * so that an order earn skips its check that the order has not earned
 * before (ledger.c, earn_order_check: about 7,000 instructions, 3.6% of the
 * writer's work on an order earn): under the tenant's complement, which no
 * tenant's id (above 0) is, added by the writer with every earn of an order
 * (tx.c) and by the builder from the `tx_order` index, under the rules
 * above.  A wrongly absent order would fail its first attempt on that
 * index, which is UNIQUE for earns, and be refused when its batch runs
 * again, whose check looks every order up.
 *
 * The filter is sized from the keys the database holds (twice them, at
 * JF_IDEM_FILTER_BITS_PER_KEY bits each); once it holds more keys than it
 * was sized for, it is forgotten and built again larger.  Building starts
 * after the writer has stored JF_IDEM_FILTER_WRITES_MIN keys, so a short
 * CLI command never scans the table.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Bits set per key, all in one 512-bit block (one cache line): with 10 bits
 * per key about 1% of absent keys answer "maybe". */
enum { PROBES = 7, BLOCK_WORDS = 8, BLOCK_BITS = 512 };

typedef struct bloom {
    _Atomic uint64_t *words; /* blocks * BLOCK_WORDS; set by the writer and the builder at once */
    size_t blocks;
    size_t capacity;     /* keys it was sized for */
    _Atomic size_t keys; /* keys added (repeats counted again) */
} bloom;

typedef enum { F_IDLE, F_REQUESTED, F_OFFERED, F_SCANNING, F_READY } filter_state;

struct jf_idem_filter {
    char *db_path;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool has_thread, stopping;
    /* mu: where the filter is; gen moves at every forget, and a builder
     * whose generation has passed drops its work. */
    filter_state state;
    uint64_t gen;
    bloom *offered;       /* F_OFFERED: built by the builder, not yet adopted */
    size_t keys_before;   /* keys the last filter held when it was forgotten */
    bool broken;          /* a build failed: none is asked for until a forget */
    _Atomic bool abandon; /* the builder's generation passed: stop scanning */
    /* Writer thread only. */
    bloom *w;              /* adopted: F_SCANNING or F_READY */
    bool w_ready;          /* w answers absences in this batch */
    int64_t data_version;  /* at the last batch's start */
    uint64_t writes;       /* keys stored before the first build */
    int64_t not_before_ms; /* no build is asked for before this (monotonic) */
    /* Counters for /metrics. */
    _Atomic uint64_t skipped, builds, forgets;
    _Atomic int64_t build_us;
};

static uint64_t mix64(uint64_t x)
{
    /* MurmurHash3's finalizer: FNV-1a's low bits are weak on short keys. */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* The block of (tenant, key) and its PROBES bit positions (9 bits each). */
static uint64_t key_hash(int64_t tenant, const char *key, uint64_t *bits)
{
    uint64_t h = mix64(jf_hash_str(JF_HASH_STR_SEED ^ mix64((uint64_t)tenant), key));
    *bits = mix64(h ^ 0x9e3779b97f4a7c15ull);
    return h;
}

static bloom *bloom_new(size_t capacity)
{
    bloom *b = calloc(1, sizeof(*b));
    size_t bits = capacity * JF_IDEM_FILTER_BITS_PER_KEY;
    size_t blocks = (bits + BLOCK_BITS - 1) / BLOCK_BITS;
    if (b == NULL)
        return NULL;
    b->words = aligned_alloc(64, blocks * BLOCK_WORDS * sizeof(uint64_t));
    if (b->words == NULL) {
        free(b);
        return NULL;
    }
    memset(b->words, 0, blocks * BLOCK_WORDS * sizeof(uint64_t));
    b->blocks = blocks;
    b->capacity = capacity;
    return b;
}

static void bloom_free(bloom *b)
{
    if (b)
        free(b->words);
    free(b);
}

static _Atomic uint64_t *bloom_block(const bloom *b, uint64_t h)
{
    /* Lemire's multiply-shift: h's high bits pick the block without a division. */
    size_t i = (size_t)(((unsigned __int128)h * b->blocks) >> 64);
    return &b->words[i * BLOCK_WORDS];
}

static void bloom_add(bloom *b, int64_t tenant, const char *key)
{
    uint64_t bits;
    _Atomic uint64_t *blk = bloom_block(b, key_hash(tenant, key, &bits));
    for (int i = 0; i < PROBES; i++, bits >>= 9)
        atomic_fetch_or_explicit(&blk[(bits >> 6) & 7], 1ull << (bits & 63), memory_order_relaxed);
    atomic_fetch_add_explicit(&b->keys, 1, memory_order_relaxed);
}

static bool bloom_may_hold(const bloom *b, int64_t tenant, const char *key)
{
    uint64_t bits;
    _Atomic uint64_t *blk = bloom_block(b, key_hash(tenant, key, &bits));
    for (int i = 0; i < PROBES; i++, bits >>= 9) {
        uint64_t w = atomic_load_explicit(&blk[(bits >> 6) & 7], memory_order_relaxed);
        if ((w & (1ull << (bits & 63))) == 0)
            return false;
    }
    return true;
}

/* ---- the builder thread ---- */

/* Keys the database holds, about: every transaction of every tenant
 * (tenants.tx_seq) and every answer stored whole (responses.seq).  An
 * over-estimate (transactions without a key) only sizes the filter larger;
 * the earned orders, one transaction each, fit in its doubling
 * (capacity_for), and a filter that overflows is built again larger. */
static size_t estimate_keys(jf_db *db)
{
    int64_t tx = 0, responses = 0;
    if (jf_db_int(db, &tx, 0, "SELECT COALESCE(SUM(tx_seq), 0) FROM tenants", "") != JF_OK ||
        jf_db_int(db, &responses, 0, "SELECT COALESCE(MAX(seq), 0) FROM responses", "") != JF_OK)
        return 0;
    return (size_t)(tx > 0 ? tx : 0) + (size_t)(responses > 0 ? responses : 0);
}

static size_t capacity_for(size_t keys)
{
    size_t c = 2 * keys;
    return c < JF_IDEM_FILTER_KEYS_MIN ? JF_IDEM_FILTER_KEYS_MIN : c;
}

/* mu held: the builder lets go of b, which it owns.  The writer still
 * points at it only when the engine stops (the writer thread has ended). */
static void drop_locked(jf_idem_filter *f, bloom *b)
{
    if (f->w == b)
        f->w = NULL;
    if (f->offered == b)
        f->offered = NULL;
    bloom_free(b);
}

/* Offers b to the writer and waits until it is adopted: false when the
 * generation passed meanwhile (b is then dropped). */
static bool offer(jf_idem_filter *f, bloom *b, uint64_t gen)
{
    pthread_mutex_lock(&f->mu);
    bool ok = f->gen == gen && !f->stopping;
    if (ok) {
        f->offered = b;
        f->state = F_OFFERED;
        while (f->gen == gen && !f->stopping && f->state == F_OFFERED)
            pthread_cond_wait(&f->cv, &f->mu);
        ok = f->gen == gen && !f->stopping && f->state == F_SCANNING;
    }
    if (!ok)
        drop_locked(f, b);
    pthread_mutex_unlock(&f->mu);
    return ok;
}

/* An earned order's key space: the tenant's complement, below 0. */
static int64_t order_space(int64_t tenant)
{
    return ~tenant;
}

/* Adds every (tenant, text) sql reads to b, the tenant mapped by space;
 * false when the scan failed or its generation passed. */
static bool scan_one(jf_idem_filter *f, jf_db *db, bloom *b, const char *sql,
                     int64_t (*space)(int64_t))
{
    sqlite3_stmt *st = jf_db_query(db, sql, "");
    int rc = st ? SQLITE_ROW : SQLITE_ERROR;
    for (uint64_t n = 0; st && (rc = jf_db_step(st)) == SQLITE_ROW; n++) {
        if ((n & 4095) == 0 && atomic_load(&f->abandon))
            break;
        int64_t tenant = sqlite3_column_int64(st, 0);
        bloom_add(b, space ? space(tenant) : tenant, jf_db_text(st, 1));
    }
    if (st)
        sqlite3_reset(st);
    return rc == SQLITE_DONE;
}

/* The earned orders, from tx_order alone: the tenant comes from the key,
 * which the index holds, where the virtual tenant_id column would read
 * every transaction's row. */
#define ORDERS_SQL                                                                                 \
    "SELECT " JF_TX_TENANT_OF_SQL("txkey") ", order_id FROM transactions INDEXED BY tx_order"      \
                                           " WHERE order_id IS NOT NULL AND type = 'earn'"

/* Adds every stored key and every earned order to b, on a snapshot that
 * began after b's adoption.  False when the scan failed or its generation
 * passed. */
static bool scan_keys(jf_idem_filter *f, jf_db *db, bloom *b)
{
    if (jf_db_exec(db, "BEGIN") != JF_OK)
        return false;
    bool done = scan_one(f, db, b, "SELECT tenant_id, key FROM idempotency", NULL) &&
                scan_one(f, db, b, ORDERS_SQL, order_space);
    jf_db_exec(db, "COMMIT");
    return done;
}

/* One build for generation gen; b is the writer's once offered. */
static void build(jf_idem_filter *f, jf_db *db, uint64_t gen, size_t keys_before)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t keys = estimate_keys(db);
    bloom *b = bloom_new(capacity_for(keys > keys_before ? keys : keys_before));
    if (b == NULL || !offer(f, b, gen))
        return; /* without memory the writer looks every key up */
    bool done = scan_keys(f, db, b);
    pthread_mutex_lock(&f->mu);
    if (f->gen != gen || f->stopping || f->state != F_SCANNING) {
        drop_locked(f, b); /* forgotten while scanning: the writer let go of it */
    } else if (done) {
        f->state = F_READY; /* the writer's from now on */
        atomic_fetch_add(&f->builds, 1);
        atomic_store(&f->build_us, jf_elapsed_us(&t0));
    } else {
        /* The scan failed: the writer frees b at its next batch, and asks for
         * no other filter until this one is forgotten. */
        f->state = F_IDLE;
        f->broken = true;
    }
    pthread_mutex_unlock(&f->mu);
}

static void *builder_main(void *arg)
{
    jf_idem_filter *f = arg;
    pthread_setname_np(pthread_self(), "jifen-keyfilter");
    jf_db db;
    bool open = jf_db_open(&db, f->db_path, true) == JF_OK;
    /* The scan reads every key once: through pread and a small page cache
     * rather than the connection's memory map, so that the pages it read do
     * not stay counted in the server's resident memory (a restart with
     * 10,000,000 keys showed 940 MB of the map resident after the build). */
    if (open && jf_db_exec(&db, "PRAGMA mmap_size=0; PRAGMA cache_size=-2048") != JF_OK)
        open = false;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stopping && f->state != F_REQUESTED)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stopping || !open)
            break;
        uint64_t gen = f->gen;
        size_t before = f->keys_before;
        atomic_store(&f->abandon, false);
        pthread_mutex_unlock(&f->mu);
        build(f, &db, gen, before);
        pthread_mutex_lock(&f->mu);
        if (f->state == F_REQUESTED && f->gen == gen) {
            f->state = F_IDLE; /* not offered (no memory): no retry until forgotten */
            f->broken = true;
        }
    }
    pthread_mutex_unlock(&f->mu);
    jf_db_close(&db);
    return NULL;
}

/* ---- the writer's side ---- */

jf_idem_filter *jf_idem_filter_new(const char *db_path)
{
    jf_idem_filter *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->db_path = strdup(db_path)) == NULL) {
        free(f);
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->data_version = -1;
    return f;
}

void jf_idem_filter_free(jf_idem_filter *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->stopping = true;
    atomic_store(&f->abandon, true);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (f->has_thread)
        pthread_join(f->thread, NULL);
    bloom_free(f->w);
    bloom_free(f->offered);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f->db_path);
    free(f);
}

/* mu held: the filter is no longer asked or fed.  A filter being scanned
 * is the builder's to free (it sees the generation pass); one that is ready,
 * or whose scan failed, is the writer's. */
static void forget_locked(jf_idem_filter *f)
{
    if (f->w)
        f->keys_before = atomic_load(&f->w->keys);
    if (f->state != F_SCANNING)
        bloom_free(f->w);
    f->w = NULL;
    f->w_ready = false;
    f->broken = false;
    f->gen++;
    atomic_store(&f->abandon, true);
    atomic_fetch_add(&f->forgets, 1);
    f->state = F_IDLE;
    pthread_cond_broadcast(&f->cv);
    /* Another process that writes often (a script of CLI commands) would
     * otherwise keep the builder scanning the whole table. */
    int64_t gap_ms = 10 * atomic_load(&f->build_us) / 1000;
    f->not_before_ms = jf_mono_ms() + (gap_ms > 1000 ? gap_ms : 1000);
}

/* mu held: asks the builder for a filter, starting it the first time. */
static void request_locked(jf_idem_filter *f)
{
    if (!f->has_thread) {
        if (pthread_create(&f->thread, NULL, builder_main, f) != 0)
            return; /* no filter: every key is looked up */
        f->has_thread = true;
    }
    f->state = F_REQUESTED;
    pthread_cond_broadcast(&f->cv);
}

void jf_idem_filter_batch_begin(jf_idem_filter *f, int64_t data_version)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    bool foreign = data_version < 0 || data_version != f->data_version;
    f->data_version = data_version;
    bool full = f->w && atomic_load(&f->w->keys) > f->w->capacity;
    if ((foreign || full) && (f->w || f->state != F_IDLE))
        forget_locked(f);
    else if (foreign)
        f->broken = false; /* a failed build may succeed on what changed */
    if (f->state == F_OFFERED) {
        f->w = f->offered;
        f->offered = NULL;
        f->state = F_SCANNING;
        pthread_cond_broadcast(&f->cv);
    }
    if (f->state == F_IDLE && f->w) { /* its scan failed */
        bloom_free(f->w);
        f->w = NULL;
    }
    bool wanted = f->writes >= JF_IDEM_FILTER_WRITES_MIN || f->gen > 0;
    if (f->state == F_IDLE && f->w == NULL && wanted && !f->broken && data_version >= 0 &&
        jf_mono_ms() >= f->not_before_ms)
        request_locked(f);
    f->w_ready = f->state == F_READY && f->w != NULL;
    pthread_mutex_unlock(&f->mu);
}

bool jf_idem_filter_absent(jf_idem_filter *f, int64_t tenant, const char *key)
{
    if (f == NULL || !f->w_ready || bloom_may_hold(f->w, tenant, key))
        return false;
    atomic_fetch_add_explicit(&f->skipped, 1, memory_order_relaxed);
    return true;
}

void jf_idem_filter_add(jf_idem_filter *f, int64_t tenant, const char *key)
{
    if (f == NULL)
        return;
    if (f->w)
        bloom_add(f->w, tenant, key);
    else
        f->writes++;
}

bool jf_idem_filter_order_absent(jf_idem_filter *f, int64_t tenant, const char *order_id)
{
    return jf_idem_filter_absent(f, order_space(tenant), order_id);
}

void jf_idem_filter_order_add(jf_idem_filter *f, int64_t tenant, const char *order_id)
{
    jf_idem_filter_add(f, order_space(tenant), order_id);
}

void jf_idem_filter_stats_get(jf_idem_filter *f, jf_idem_filter_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    out->ready = f->state == F_READY;
    bloom *b = f->state == F_READY || f->state == F_SCANNING ? f->w : NULL;
    out->keys = b ? (uint64_t)atomic_load(&b->keys) : 0;
    out->bytes = b ? (uint64_t)(b->blocks * BLOCK_WORDS * sizeof(uint64_t)) : 0;
    pthread_mutex_unlock(&f->mu);
    out->lookups_skipped = atomic_load(&f->skipped);
    out->builds = atomic_load(&f->builds);
    out->forgets = atomic_load(&f->forgets);
    out->build_seconds = (double)atomic_load(&f->build_us) / 1e6;
}
