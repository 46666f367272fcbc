/*
 * Durable acknowledgement off the writer's path (docs/PERFORMANCE.md).
 *
 * The writer commits each batch with synchronous=NORMAL: the WAL frames are
 * written to the operating system, not yet flushed.  It hands the batch's
 * answered commands to this thread and goes on with the next batch at once.
 * The syncer takes everything handed to it so far, calls fdatasync on the
 * WAL file once, and only then sends the answers.  So no write is ever
 * acknowledged before it is on disk (I8), exactly as with synchronous=FULL,
 * but the flush of batch N overlaps the work of batch N+1, and one flush
 * covers every batch committed while the previous one ran.
 *
 * Why this is safe: SQLite's WAL is a log whose frames carry a running
 * checksum, so recovery keeps a prefix of committed transactions and never a
 * later commit without an earlier one; a flush of the file makes every
 * frame written before it durable; checkpoints (synchronous=NORMAL still
 * syncs the WAL before copying it and the database after) never lose a
 * frame.  The WAL file is the same inode for the engine's life: SQLite
 * deletes it only when the last connection closes, and the engine holds
 * several open.  The flush is checked against the file's link count anyway.
 *
 * Readers must not show what is not yet durable either: a read answered
 * between a commit and its flush could show points that a power cut then
 * takes back.  jf_syncer_answer_read holds a read's answer, after it ran,
 * until every commit that may be in its snapshot is flushed, and the syncer
 * sends it after that flush, so no HTTP thread ever waits for one (commit
 * generations: the writer numbers a commit before it starts it, so any
 * commit a snapshot can see has a number at most the one loaded after the
 * snapshot).
 *
 * A read of one member's points, transactions or lots only shows that
 * member's entries in member_state (and rows written with them), so it waits
 * only for the last commit that changed them: the writer notes, by member,
 * the number its open commit will get whenever it writes a member's entries
 * (jf_member_written), before that commit can be seen, and the read loads
 * that number after its snapshot.  Under a steady stream of earns a balance
 * read of another member no longer waits for the flush of commits it cannot
 * see into (W7 in docs/PERFORMANCE.md).  Every other read waits for every
 * commit numbered when it finished, as before.
 *
 * With no WAL file descriptor (it could not be opened) the engine keeps
 * synchronous=FULL and answers from the writer, as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"

/* Opens the WAL that the writer's connection uses; -1 when it cannot. */
static int wal_open(jf_engine *eng)
{
    const char *db = sqlite3_db_filename(eng->wdb.h, "main");
    if (db == NULL || db[0] == '\0')
        return -1;
    snprintf(eng->wal_path, sizeof(eng->wal_path), "%s-wal", db);
    return open(eng->wal_path, O_RDWR | O_CLOEXEC);
}

/* Flushes the WAL.  A failed flush is fatal, as in PostgreSQL: after a
 * failed fdatasync Linux may have dropped the dirty pages and marked them
 * clean, so no later flush could vouch for them.  Nothing unflushed was
 * answered; a restart recovers every answered write from the disk. */
static void wal_flush(jf_engine *eng)
{
    struct stat st = {0};
    int rc = fdatasync(eng->wal_fd);
    if (rc == 0)
        rc = fstat(eng->wal_fd, &st);
    if (rc == 0 && st.st_nlink > 0)
        return;
    if (rc == 0) {
        /* The file was replaced under us (it should never be): flush the one
         * the path names now, which is where the writer's frames went. */
        close(eng->wal_fd);
        eng->wal_fd = open(eng->wal_path, O_RDWR | O_CLOEXEC);
        if (eng->wal_fd >= 0 && fdatasync(eng->wal_fd) == 0)
            return;
    }
    fprintf(stderr, "jifen: cannot flush %s (%s); stopping so that nothing unflushed is lost\n",
            eng->wal_path, strerror(errno));
    abort();
}

/* A read whose answer waits for the flush of generation gen. */
typedef struct jf_read_wait {
    struct jf_read_wait *next;
    uint64_t gen;
    jf_result res;
    jf_done_fn done;
    void *done_ctx;
} jf_read_wait;

static void answer_now(jf_result *res, jf_done_fn done, void *done_ctx)
{
    done(done_ctx, res);
    jf_result_deinit(res);
}

/* Answers and frees a list of waiting reads. */
static void reads_answer(jf_read_wait *w)
{
    for (jf_read_wait *next; w; w = next) {
        next = w->next;
        answer_now(&w->res, w->done, w->done_ctx);
        free(w);
    }
}

/* Unlinks the waiting reads whose generation is durable (all of them when
 * the syncer stops); called with sync_mu held. */
static jf_read_wait *reads_take(jf_engine *eng, bool all)
{
    uint64_t durable = atomic_load(&eng->durable_gen);
    jf_read_wait *ready = NULL, **link = &eng->r_head;
    while (*link) {
        jf_read_wait *w = *link;
        if (all || w->gen <= durable) {
            *link = w->next;
            w->next = ready;
            ready = w;
        } else {
            link = &w->next;
        }
    }
    return ready;
}

/* Wakes a writer that holds its commit for this flush (engine.c,
 * writer_take_held).  Taken without sync_mu held: nothing takes sync_mu
 * while holding eng->mu, so the order cannot deadlock. */
static void flush_over(jf_engine *eng)
{
    pthread_mutex_lock(&eng->mu);
    atomic_store(&eng->s_flushing, false);
    pthread_cond_broadcast(&eng->cv_work);
    pthread_mutex_unlock(&eng->mu);
}

static bool syncer_idle(const jf_engine *eng)
{
    return eng->s_head == NULL && eng->s_gen <= atomic_load(&eng->durable_gen);
}

static void *syncer_main(void *arg)
{
    jf_engine *eng = arg;
    pthread_setname_np(pthread_self(), "jifen-syncer");
    pthread_mutex_lock(&eng->sync_mu);
    for (;;) {
        while (syncer_idle(eng) && !eng->s_stopping)
            pthread_cond_wait(&eng->cv_sync, &eng->sync_mu);
        if (syncer_idle(eng))
            break;
        jf_cmd *list = eng->s_head;
        uint64_t gen = eng->s_gen;
        eng->s_head = eng->s_tail = NULL;
        eng->s_busy = true;
        pthread_mutex_unlock(&eng->sync_mu);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        atomic_store(&eng->s_flushing, true);
        wal_flush(eng);
        jf_hist_since(&eng->flush_hist, &t0);
        atomic_store(&eng->durable_gen, gen);
        flush_over(eng);
        pthread_mutex_lock(&eng->sync_mu);
        pthread_cond_broadcast(&eng->cv_durable);
        jf_read_wait *reads = reads_take(eng, false);
        pthread_mutex_unlock(&eng->sync_mu);
        reads_answer(reads);
        for (jf_cmd *c = list, *next; c; c = next) {
            next = c->next;
            jf_writer_finish(eng, c);
        }
        pthread_mutex_lock(&eng->sync_mu);
        eng->s_busy = false;
        pthread_cond_broadcast(&eng->cv_durable);
    }
    /* Stopping: whatever reads still wait saw only commits that were handed
     * over and flushed above, or none that will ever be. */
    jf_read_wait *reads = reads_take(eng, true);
    pthread_mutex_unlock(&eng->sync_mu);
    reads_answer(reads);
    return NULL;
}

jf_err jf_syncer_start(jf_engine *eng)
{
    eng->wal_fd = -1;
    /* A write transaction makes sure the WAL file exists before it is opened. */
    jf_err err = jf_db_exec(&eng->wdb, "BEGIN IMMEDIATE; COMMIT");
    if (err != JF_OK)
        return err;
    eng->wal_fd = wal_open(eng);
    if (eng->wal_fd < 0)
        return JF_OK;
    pthread_mutex_init(&eng->sync_mu, NULL);
    pthread_cond_init(&eng->cv_sync, NULL);
    pthread_cond_init(&eng->cv_durable, NULL);
    eng->has_sync_mu = true;
    if ((err = jf_db_exec(&eng->wdb, "PRAGMA synchronous=NORMAL")) != JF_OK)
        return err;
    if (pthread_create(&eng->syncer, NULL, syncer_main, eng) != 0) {
        jf_db_exec(&eng->wdb, "PRAGMA synchronous=FULL");
        return JF_ERR_NOMEM;
    }
    eng->has_syncer = true;
    return JF_OK;
}

uint64_t jf_syncer_begin_commit(jf_engine *eng)
{
    return atomic_fetch_add(&eng->commit_gen, 1) + 1;
}

bool jf_syncer_submit(jf_engine *eng, jf_cmd *list, uint64_t gen)
{
    if (!eng->has_syncer)
        return false;
    jf_cmd *tail = list;
    while (tail && tail->next)
        tail = tail->next;
    pthread_mutex_lock(&eng->sync_mu);
    if (list) {
        if (eng->s_tail)
            eng->s_tail->next = list;
        else
            eng->s_head = list;
        eng->s_tail = tail;
    }
    /* Even a batch with nothing to answer (only a parked job's slice) is
     * flushed: readers may wait on its generation. */
    if (gen > eng->s_gen)
        eng->s_gen = gen;
    pthread_cond_signal(&eng->cv_sync);
    pthread_mutex_unlock(&eng->sync_mu);
    return true;
}

/* Blocks until generation want is flushed (or the syncer stops). */
static void wait_durable(jf_engine *eng, uint64_t want)
{
    pthread_mutex_lock(&eng->sync_mu);
    /* The writer hands every numbered commit over, failed ones included. */
    while (atomic_load(&eng->durable_gen) < want && !eng->s_stopping)
        pthread_cond_wait(&eng->cv_durable, &eng->sync_mu);
    pthread_mutex_unlock(&eng->sync_mu);
}

void jf_member_written(jf_ctx *ctx, int64_t member_seq)
{
    jf_engine *eng = ctx->eng;
    if (eng == NULL || ctx->db != &eng->wdb || member_seq <= 0)
        return;
    /* The writer alone numbers commits, and numbers its open one next
     * (jf_syncer_begin_commit), after everything in it was applied. */
    uint64_t gen = atomic_load(&eng->commit_gen) + 1;
    size_t slot = (size_t)((uint64_t)member_seq & (JF_MEMBER_GEN_SLOTS - 1));
    atomic_store_explicit(&eng->member_gen[slot], gen, memory_order_release);
}

uint64_t jf_member_read_gen(jf_engine *eng, int64_t member_seq)
{
    size_t slot = (size_t)((uint64_t)member_seq & (JF_MEMBER_GEN_SLOTS - 1));
    return atomic_load_explicit(&eng->member_gen[slot], memory_order_acquire);
}

void jf_syncer_answer_read(jf_engine *eng, uint64_t want, jf_result *res, jf_done_fn done,
                           void *done_ctx)
{
    if (!eng || !eng->has_syncer)
        want = 0;
    else if (want == JF_READ_WANTS_ALL)
        want = atomic_load(&eng->commit_gen);
    if (want == 0 || atomic_load(&eng->durable_gen) >= want) {
        answer_now(res, done, done_ctx);
        return;
    }
    atomic_fetch_add_explicit(&eng->reads_held, 1, memory_order_relaxed);
    jf_read_wait *w = malloc(sizeof(*w));
    if (w == NULL) {
        wait_durable(eng, want);
        answer_now(res, done, done_ctx);
        return;
    }
    *w = (jf_read_wait){.gen = want, .res = *res, .done = done, .done_ctx = done_ctx};
    memset(res, 0, sizeof(*res));
    pthread_mutex_lock(&eng->sync_mu);
    /* Checked again under the lock: the syncer takes waiting reads only
     * after a flush, and the flush that covers this one may just be over. */
    bool now = atomic_load(&eng->durable_gen) >= want || eng->s_stopping;
    if (!now) {
        w->next = eng->r_head;
        eng->r_head = w;
    }
    pthread_mutex_unlock(&eng->sync_mu);
    if (now)
        reads_answer(w);
}

void jf_syncer_drain(jf_engine *eng)
{
    if (!eng->has_syncer)
        return;
    pthread_mutex_lock(&eng->sync_mu);
    while (!syncer_idle(eng) || eng->s_busy)
        pthread_cond_wait(&eng->cv_durable, &eng->sync_mu);
    pthread_mutex_unlock(&eng->sync_mu);
}

void jf_syncer_stop(jf_engine *eng)
{
    if (eng->has_syncer) {
        pthread_mutex_lock(&eng->sync_mu);
        eng->s_stopping = true;
        pthread_cond_broadcast(&eng->cv_sync);
        pthread_cond_broadcast(&eng->cv_durable);
        pthread_mutex_unlock(&eng->sync_mu);
        pthread_join(eng->syncer, NULL);
        eng->has_syncer = false;
    }
    if (eng->wal_fd >= 0)
        close(eng->wal_fd);
    eng->wal_fd = -1;
    if (eng->has_sync_mu) {
        pthread_mutex_destroy(&eng->sync_mu);
        pthread_cond_destroy(&eng->cv_sync);
        pthread_cond_destroy(&eng->cv_durable);
        eng->has_sync_mu = false;
    }
}
