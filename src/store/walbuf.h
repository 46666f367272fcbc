/*
 * Write-combining for the WAL: a VFS that wraps SQLite's default one and
 * hands each commit's frames to the kernel in one write instead of two per
 * page.  What reaches the file, and when it is visible to other connections
 * and to fsync, is exactly what SQLite would have written (walbuf.c says
 * how).  It reads WAL frames through a memory map of the WAL that the
 * process's connections share, rather than a system call each.  It also
 * paces checkpoint writes (jf_walbuf_pace) and keeps a database file's memory
 * map across read transactions while the file's size is unchanged.  Open
 * connections with it by name: sqlite3_open_v2(..., vfs).
 */
#ifndef JF_WALBUF_H
#define JF_WALBUF_H

#include <sqlite3.h>

/* Registers the VFS on first use (not as the default) and returns its
 * name, or NULL when SQLite has no default VFS to wrap.  Thread-safe. */
const char *jf_walbuf_vfs(void);

/* What the VFS did since the process started (tests, profiling, /metrics). */
typedef struct jf_walbuf_stat {
    unsigned long long writes;    /* WAL writes SQLite made through the VFS */
    unsigned long long flushes;   /* writes passed on to the WAL file */
    unsigned long long paces;     /* paced write-backs of database files */
    unsigned long long maps_kept; /* memory maps kept at a read transaction's start */
    unsigned long long grows;     /* writes of zeros that grew a database file (grow) */
    unsigned long long map_reads; /* WAL reads served from the WAL's map (wal_read) */
} jf_walbuf_stat;
void jf_walbuf_stats(jf_walbuf_stat *out);

/* How many times this thread began a WAL file from its head: SQLite writes
 * the 32-byte WAL header at offset 0 only with the first frame of a new or
 * restarted WAL.  The writer reads it around each transaction to see which
 * commit restarted the WAL (engine.c, the WAL-reset guard). */
unsigned long long jf_walbuf_wal_starts(void);

/* The file-control opcode behind jf_walbuf_pace (well clear of SQLite's). */
#define JF_WALBUF_FCNTL_PACE 0x4a460001

/* Paces the writes to connection h's database file: after every `bytes`
 * written (a checkpoint copying the WAL), the file's dirty pages are written
 * to the disk and waited for, so a checkpoint never puts megabytes in the
 * disk's queue in front of another connection's WAL flush.  0 stops it.
 * Returns an SQLite result code. */
int jf_walbuf_pace(sqlite3 *h, int bytes);

#endif
