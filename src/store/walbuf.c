/*
 * A SQLite VFS shim that writes each commit's WAL frames with one pwrite
 * instead of two per page, and reads WAL frames through a memory map
 * instead of a pread each (see walbuf.h).
 *
 * SQLite writes a WAL frame as two calls, the 24-byte frame header and then
 * the page, so a commit of 200 pages costs 400 system calls, each taking
 * the file's lock and touching one or two page-cache pages.  On the
 * writer's path that was a third of the commit.  No packaged library does
 * this (SQLite itself has no write-combining for the WAL), so it is a small
 * VFS wrapper around the default one:
 *
 * - Writes to a WAL file that continue the previous one are collected in a
 *   buffer (JF_WAL_BUFFER_BYTES); anything else flushes it first.
 * - The page that completes a commit frame (a frame header with a non-zero
 *   "database size after commit") flushes the buffer, and its error, if
 *   any, is that write's: the commit fails as it would without the shim.
 *   So does an earlier flush's failure in the same transaction (its error
 *   went to the call that triggered it), so no commit is published with a
 *   hole in its frames.
 * - Before any read, sync, truncate, size query, lock change, file control
 *   or close of that file the buffer is flushed, so the file never looks
 *   different from what SQLite wrote.
 * - Readers on other connections only read frames the wal-index header has
 *   published, and the writer publishes it after the commit frame, that is
 *   after the flush.  As a second line, xShmBarrier (which SQLite calls
 *   between the two copies of that header) flushes whatever this thread
 *   has pending; a failure there cannot be returned and aborts, as a failed
 *   WAL flush does in PostgreSQL.
 *
 * - Reads of a WAL are copies from a map of it that every connection of
 *   the process shares (wal_read says why that is safe).
 *
 * Two things concern database files rather than the WAL:
 * - A connection can ask for its writes to be paced (jf_walbuf_pace, used
 *   by the checkpointer): every so many bytes they are written back to the
 *   disk and waited for (paced_write).
 * - A read transaction's request to drop the whole memory map is ignored
 *   while the file's size is unchanged (shim_unfetch says why).
 *
 * Every other call goes straight to the wrapped VFS.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jifen/limits.h"
#include "walbuf.h"

typedef struct walbuf_file {
    sqlite3_file base;  /* our methods; SQLite sees this */
    sqlite3_file *real; /* the wrapped file, allocated right after this struct */
    bool is_wal;
    unsigned char *buf;
    size_t len;              /* pending bytes in buf */
    sqlite3_int64 off;       /* file offset of buf[0] */
    bool commit_next;        /* the next write is a commit frame's page: flush after it */
    bool failed;             /* a flush failed since the last commit: that commit must fail */
    const char *name;        /* valid until xClose (SQLite's promise) */
    int pace_fd;             /* database files whose writes are paced: -1 if not */
    size_t pace_bytes;       /* write back after this many bytes written */
    size_t unpaced;          /* bytes written since the last write-back */
    sqlite3_int64 map_size;  /* file size at the last unmap let through: -1 if none */
    sqlite3_int64 chunk;     /* SQLITE_FCNTL_CHUNK_SIZE of a database file; 0 if none */
    struct wal_map *map;     /* the WAL's map for reads (wal_read); NULL if none yet */
    bool map_failed;         /* none could be had: reads go to the file */
    sqlite3_int64 map_known; /* the WAL's size when last asked: reads below come from map */
} walbuf_file;

/* A WAL mapped for reading, shared by every connection of the process to
 * it: each connection's own map would fault every page in again and count
 * it again in the resident size.  Found by the file's identity, which stays
 * the file's while the map holds it. */
typedef struct wal_map {
    dev_t dev;
    ino_t ino;
    const unsigned char *base;
    int refs; /* 0: the slot is free */
} wal_map;
static wal_map wal_maps[JF_WAL_MAPS_MAX];
static pthread_mutex_t wal_maps_mu = PTHREAD_MUTEX_INITIALIZER;

static sqlite3_vfs walbuf_vfs;
static sqlite3_vfs *real_vfs;
static sqlite3_io_methods walbuf_methods[4]; /* one per iVersion of the wrapped methods */
static _Atomic unsigned long long stat_writes, stat_flushes, stat_paces, stat_maps_kept, stat_grows,
    stat_map_reads;

/* The file with bytes pending in this thread, if any: at most one, since a
 * thread writes one WAL at a time and switching flushes the other. */
static _Thread_local walbuf_file *pending;

/* WAL headers this thread wrote (jf_walbuf_wal_starts). */
static _Thread_local unsigned long long wal_starts;

/* SQLite's unix VFS writes at most 0x1ffff bytes per call (seekAndWriteFd
 * masks the length) and reports the rest as a full disk, so a flush goes out
 * in pieces of whole pages below that. */
#define WRITE_PIECE_BYTES (31 * 4096)
/* The size of a WAL file's header (SQLite's file format). */
#define WAL_HEADER_BYTES 32
_Static_assert(WRITE_PIECE_BYTES < JF_WAL_BUFFER_BYTES, "a piece fits in the buffer");

static int flush(walbuf_file *p)
{
    if (p->len == 0)
        return SQLITE_OK;
    int rc = SQLITE_OK;
    for (size_t done = 0; done < p->len && rc == SQLITE_OK; done += WRITE_PIECE_BYTES) {
        size_t n = p->len - done < WRITE_PIECE_BYTES ? p->len - done : WRITE_PIECE_BYTES;
        rc =
            p->real->pMethods->xWrite(p->real, p->buf + done, (int)n, p->off + (sqlite3_int64)done);
        atomic_fetch_add(&stat_flushes, 1);
    }
    p->len = 0;
    if (rc != SQLITE_OK)
        p->failed = true;
    if (pending == p)
        pending = NULL;
    return rc;
}

/* The result of the write that ends a commit frame.  Bytes of this
 * transaction that an earlier flush failed to write (the error then went to
 * whichever call triggered it) fail the commit here, so SQLite never
 * publishes a commit with a hole in it. */
static int commit_result(walbuf_file *p, int rc)
{
    if (rc == SQLITE_OK && p->failed)
        rc = SQLITE_IOERR_WRITE;
    p->failed = false;
    return rc;
}

/* A frame header is the only 24-byte write SQLite makes to a WAL past its
 * 32-byte file header; bytes 4-7 hold the database size after a commit. */
static bool is_commit_frame_header(const unsigned char *data, int n, sqlite3_int64 off)
{
    return n == 24 && off >= 32 && (data[4] | data[5] | data[6] | data[7]) != 0;
}

static int buffer_write(walbuf_file *p, const void *data, int n, sqlite3_int64 off)
{
    bool ends_commit = p->commit_next;
    p->commit_next = is_commit_frame_header(data, n, off);
    int rc = SQLITE_OK;
    if (p->len > 0 &&
        (off != p->off + (sqlite3_int64)p->len || p->len + (size_t)n > JF_WAL_BUFFER_BYTES))
        rc = flush(p);
    if (rc == SQLITE_OK && pending && pending != p)
        rc = flush(pending);
    if (rc != SQLITE_OK)
        return ends_commit ? commit_result(p, rc) : rc;
    if (p->buf == NULL)
        p->buf = malloc(JF_WAL_BUFFER_BYTES);
    if (p->buf == NULL || (size_t)n > WRITE_PIECE_BYTES) {
        rc = p->real->pMethods->xWrite(p->real, data, n, off);
        return ends_commit ? commit_result(p, rc) : rc;
    }
    if (p->len == 0)
        p->off = off;
    memcpy(p->buf + p->len, data, (size_t)n);
    p->len += (size_t)n;
    pending = p;
    return ends_commit ? commit_result(p, flush(p)) : SQLITE_OK;
}

/* A write to a paced database file.  Every pace_bytes the file's dirty
 * pages are written to the disk and waited for (not flushed from its cache:
 * that stays the checkpoint's own sync), so the disk's queue never holds
 * more than that of this file when a WAL flush arrives behind it. */
static int paced_write(walbuf_file *p, const void *data, int n, sqlite3_int64 off)
{
    int rc = p->real->pMethods->xWrite(p->real, data, n, off);
    if (rc != SQLITE_OK || p->pace_fd < 0)
        return rc;
    p->unpaced += (size_t)n;
    if (p->unpaced < p->pace_bytes)
        return rc;
    p->unpaced = 0;
    atomic_fetch_add(&stat_paces, 1);
    if (sync_file_range(p->pace_fd, 0, 0,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER) != 0)
        return SQLITE_IOERR_WRITE;
    return rc;
}

static int shim_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    walbuf_file *p = (walbuf_file *)f;
    if (!p->is_wal)
        return paced_write(p, data, n, off);
    atomic_fetch_add(&stat_writes, 1);
    if (off == 0 && n == WAL_HEADER_BYTES)
        wal_starts++;
    return buffer_write(p, data, n, off);
}

/* Finds or makes the map of fd's file; NULL when the table is full or the
 * map cannot be made (the reads then go to the file). */
static wal_map *wal_map_get(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    wal_map *m = NULL, *free_slot = NULL;
    pthread_mutex_lock(&wal_maps_mu);
    for (size_t i = 0; i < JF_WAL_MAPS_MAX && m == NULL; i++) {
        wal_map *w = &wal_maps[i];
        if (w->refs > 0 && w->dev == st.st_dev && w->ino == st.st_ino)
            m = w;
        else if (w->refs == 0 && free_slot == NULL)
            free_slot = w;
    }
    if (m == NULL && free_slot) {
        void *base = mmap(NULL, JF_WAL_MAP_BYTES, PROT_READ, MAP_SHARED, fd, 0);
        if (base != MAP_FAILED) {
            *free_slot = (wal_map){.dev = st.st_dev, .ino = st.st_ino, .base = base};
            m = free_slot;
        }
    }
    if (m)
        m->refs++;
    pthread_mutex_unlock(&wal_maps_mu);
    return m;
}

/* Maps a WAL for reading, through a descriptor of our own that is closed at
 * once (the map keeps the file; SQLite holds no POSIX lock on a WAL, whose
 * locks are in the -shm file, so closing it releases none).  Past the
 * file's end the map is only address space. */
static void wal_map_open(walbuf_file *p)
{
    int fd = p->name ? open(p->name, O_RDONLY | O_CLOEXEC) : -1;
    p->map = fd >= 0 ? wal_map_get(fd) : NULL;
    if (fd >= 0)
        close(fd);
    p->map_failed = p->map == NULL;
}

static void wal_unmap(walbuf_file *p)
{
    if (p->map == NULL)
        return;
    pthread_mutex_lock(&wal_maps_mu);
    if (--p->map->refs == 0)
        munmap((void *)p->map->base, JF_WAL_MAP_BYTES);
    pthread_mutex_unlock(&wal_maps_mu);
    p->map = NULL;
}

static int shim_close(sqlite3_file *f)
{
    walbuf_file *p = (walbuf_file *)f;
    int rc = flush(p);
    wal_unmap(p);
    int rc2 = p->real->pMethods->xClose(p->real);
    if (p->pace_fd >= 0)
        close(p->pace_fd);
    p->pace_fd = -1;
    free(p->buf);
    p->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

/* The wrappers below flush (WAL files only; a no-op otherwise) and forward. */
#define REAL(f) (((walbuf_file *)(f))->real)
#define FLUSH_OR_RETURN(f)                                                                         \
    do {                                                                                           \
        int frc_ = flush((walbuf_file *)(f));                                                      \
        if (frc_ != SQLITE_OK)                                                                     \
            return frc_;                                                                           \
    } while (0)

/* A read of a WAL: a copy from its map instead of a pread.  SQLite reads a
 * WAL's frames a page at a time (the writer's pages that its cache let go,
 * a reader's pages newer than the database file, and every frame the
 * checkpointer copies), and each pread cost a system call, a page-cache
 * lookup and the kernel's copy.  The map shares the page cache with the
 * writes, so it shows them as pread would.  SQLite reads only frames that a
 * read lock or the checkpoint lock keeps in the file (the WAL is restarted
 * or truncated only when no one uses them), and a read past the size last
 * asked of the file asks again, so no copy touches the map past the file's
 * end.  Anything else (past the map, a map that failed) is read as before. */
static int wal_read(walbuf_file *p, void *buf, int n, sqlite3_int64 off)
{
    sqlite3_int64 end = off + n;
    if (p->map == NULL && !p->map_failed)
        wal_map_open(p);
    if (p->map && off >= 0 && end <= (sqlite3_int64)JF_WAL_MAP_BYTES) {
        if (end > p->map_known && p->real->pMethods->xFileSize(p->real, &p->map_known) != SQLITE_OK)
            p->map_known = 0;
        if (end <= p->map_known) {
            memcpy(buf, p->map->base + off, (size_t)n);
            atomic_fetch_add_explicit(&stat_map_reads, 1, memory_order_relaxed);
            return SQLITE_OK;
        }
    }
    return p->real->pMethods->xRead(p->real, buf, n, off);
}

static int shim_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    FLUSH_OR_RETURN(f);
    walbuf_file *p = (walbuf_file *)f;
    if (p->is_wal)
        return wal_read(p, buf, n, off);
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    FLUSH_OR_RETURN(f);
    walbuf_file *p = (walbuf_file *)f;
    if (p->map_known > size)
        p->map_known = size;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int shim_sync(sqlite3_file *f, int flags)
{
    FLUSH_OR_RETURN(f);
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int shim_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    FLUSH_OR_RETURN(f);
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int shim_lock(sqlite3_file *f, int level)
{
    FLUSH_OR_RETURN(f);
    return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int shim_unlock(sqlite3_file *f, int level)
{
    FLUSH_OR_RETURN(f);
    return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int shim_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

/* JF_WALBUF_FCNTL_PACE on a database file: *(int *)arg bytes between
 * write-backs, 0 to stop.  The pages are written back through a descriptor
 * of our own (sync_file_range acts on the file, not on the descriptor);
 * SQLite offers no way to reach the one its VFS holds. */
static int pace(walbuf_file *p, int bytes)
{
    if (p->is_wal || p->name == NULL || bytes < 0)
        return SQLITE_MISUSE;
    if (bytes > 0 && p->pace_fd < 0 && (p->pace_fd = open(p->name, O_RDONLY | O_CLOEXEC)) < 0)
        return SQLITE_CANTOPEN;
    p->pace_bytes = (size_t)bytes;
    p->unpaced = 0;
    if (bytes == 0 && p->pace_fd >= 0) {
        close(p->pace_fd);
        p->pace_fd = -1;
    }
    return SQLITE_OK;
}

/* Debian's SQLite is built without posix_fallocate, so it grows a database
 * file to its chunk size (SQLITE_FCNTL_CHUNK_SIZE, db.c) by writing one byte
 * into every 4 KiB block: 8,192 system calls per 32 MiB chunk, on whichever
 * thread's write needs the room (the checkpointer's copy, or the writer's
 * at a WAL restart).  A size hint is met here instead, with zeros written
 * GROW_PIECE bytes at a time (512 calls per chunk): the blocks are written
 * either way, so later writes into them change no file metadata for an
 * fdatasync to journal, and the wrapped VFS then finds the file long
 * enough and only maps it.  Not paced, as SQLite's own writes are not.
 * (Replaying the engine fuzzer's 621 inputs, 215 new databases: 12.0 s ->
 * 11.3 s; the rest of a chunk's cost is its 32 MiB of page cache.) */
#define GROW_PIECE (64 * 1024) /* under the 128 KiB the unix VFS writes at most per call */

static int grow(walbuf_file *p, sqlite3_int64 want)
{
    static const unsigned char zeros[GROW_PIECE];
    sqlite3_int64 size = 0;
    if (p->is_wal || p->chunk <= 0 || p->real->pMethods->xFileSize(p->real, &size) != SQLITE_OK)
        return SQLITE_OK; /* the wrapped VFS grows it as before */
    sqlite3_int64 target = (want + p->chunk - 1) / p->chunk * p->chunk;
    while (size < target) {
        int n = target - size < GROW_PIECE ? (int)(target - size) : GROW_PIECE;
        int rc = p->real->pMethods->xWrite(p->real, zeros, n, size);
        if (rc != SQLITE_OK)
            return rc;
        atomic_fetch_add(&stat_grows, 1);
        size += n;
    }
    return SQLITE_OK;
}

static int shim_file_control(sqlite3_file *f, int op, void *arg)
{
    walbuf_file *p = (walbuf_file *)f;
    if (op == JF_WALBUF_FCNTL_PACE)
        return pace(p, *(int *)arg);
    FLUSH_OR_RETURN(f);
    if (op == SQLITE_FCNTL_CHUNK_SIZE && !p->is_wal)
        p->chunk = *(int *)arg;
    if (op == SQLITE_FCNTL_SIZE_HINT) {
        int rc = grow(p, *(sqlite3_int64 *)arg);
        if (rc != SQLITE_OK)
            return rc;
    }
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int shim_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int shim_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int shim_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, out);
}

static int shim_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void shim_shm_barrier(sqlite3_file *f)
{
    if (pending && flush(pending) != SQLITE_OK) {
        fprintf(stderr, "jifen: writing the WAL failed before publishing a commit; stopping\n");
        abort();
    }
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int shim_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int shim_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    FLUSH_OR_RETURN(f);
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, out);
}

/* SQLite asks to drop a database file's whole memory map (page NULL) at the
 * start of every read transaction that follows a commit by another
 * connection, in case another process truncated the file and extended it
 * again.  On Linux a shared mapping shows the file's page cache as it is
 * now, truncations included, so a map of a file whose size has not changed
 * is still right.  Remapping instead cost a reader an munmap (with a TLB
 * shootdown on every core the process runs on), an mmap and a page fault
 * for every page it touched again: about every other read request under
 * W7.  A file that grew or shrank is remapped as before. */
static int shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page)
{
    walbuf_file *p = (walbuf_file *)f;
    if (page == NULL && !p->is_wal) {
        sqlite3_int64 size = -1;
        if (p->real->pMethods->xFileSize(p->real, &size) != SQLITE_OK)
            size = -1;
        if (size >= 0 && size == p->map_size) {
            atomic_fetch_add(&stat_maps_kept, 1);
            return SQLITE_OK;
        }
        p->map_size = size;
    }
    return p->real->pMethods->xUnfetch(p->real, off, page);
}

static int shim_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                     int *out_flags)
{
    (void)vfs;
    walbuf_file *p = (walbuf_file *)f;
    memset(p, 0, sizeof(*p));
    p->real = (sqlite3_file *)(p + 1);
    p->pace_fd = -1;
    p->map_size = -1;
    p->chunk = 0;
    p->name = name;
    p->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
    const sqlite3_io_methods *m = p->real->pMethods;
    p->base.pMethods = m ? &walbuf_methods[m->iVersion < 1   ? 1
                                           : m->iVersion > 3 ? 3
                                                             : m->iVersion]
                         : NULL;
    return rc;
}

static void walbuf_init(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (real_vfs == NULL)
        return;
    const sqlite3_io_methods m = {
        .xClose = shim_close,
        .xRead = shim_read,
        .xWrite = shim_write,
        .xTruncate = shim_truncate,
        .xSync = shim_sync,
        .xFileSize = shim_file_size,
        .xLock = shim_lock,
        .xUnlock = shim_unlock,
        .xCheckReservedLock = shim_check_reserved,
        .xFileControl = shim_file_control,
        .xSectorSize = shim_sector_size,
        .xDeviceCharacteristics = shim_device_characteristics,
        .xShmMap = shim_shm_map,
        .xShmLock = shim_shm_lock,
        .xShmBarrier = shim_shm_barrier,
        .xShmUnmap = shim_shm_unmap,
        .xFetch = shim_fetch,
        .xUnfetch = shim_unfetch,
    };
    for (int v = 1; v <= 3; v++) {
        walbuf_methods[v] = m;
        walbuf_methods[v].iVersion = v;
    }
    /* Every other VFS method is the wrapped one's, called with our vfs:
     * the unix VFS reads only mxPathname and pAppData from it, both copied;
     * only xOpen, which sizes the file, needs its own vfs. */
    walbuf_vfs = *real_vfs;
    walbuf_vfs.zName = "jifen-walbuf";
    walbuf_vfs.szOsFile = (int)sizeof(walbuf_file) + real_vfs->szOsFile;
    walbuf_vfs.xOpen = shim_open;
    walbuf_vfs.pNext = NULL;
    sqlite3_vfs_register(&walbuf_vfs, 0);
}

const char *jf_walbuf_vfs(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, walbuf_init);
    return real_vfs ? walbuf_vfs.zName : NULL;
}

void jf_walbuf_stats(jf_walbuf_stat *out)
{
    out->writes = atomic_load(&stat_writes);
    out->flushes = atomic_load(&stat_flushes);
    out->paces = atomic_load(&stat_paces);
    out->maps_kept = atomic_load(&stat_maps_kept);
    out->map_reads = atomic_load(&stat_map_reads);
    out->grows = atomic_load(&stat_grows);
}

unsigned long long jf_walbuf_wal_starts(void)
{
    return wal_starts;
}

int jf_walbuf_pace(sqlite3 *h, int bytes)
{
    return sqlite3_file_control(h, "main", JF_WALBUF_FCNTL_PACE, &bytes);
}
