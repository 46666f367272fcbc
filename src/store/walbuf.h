/*
 * Write-combining for the WAL: a VFS that wraps SQLite's default one and
 * hands each commit's frames to the kernel in one write instead of two per
 * page.  What reaches the file, and when it is visible to other connections
 * and to fsync, is exactly what SQLite would have written (walbuf.c says
 * how).  Open connections with it by name: sqlite3_open_v2(..., vfs).
 */
#ifndef JF_WALBUF_H
#define JF_WALBUF_H

#include <sqlite3.h>

/* Registers the VFS on first use (not as the default) and returns its
 * name, or NULL when SQLite has no default VFS to wrap.  Thread-safe. */
const char *jf_walbuf_vfs(void);

/* WAL writes SQLite made through the VFS, and writes it passed on to the
 * file, since the process started (tests and profiling). */
void jf_walbuf_stats(unsigned long long *writes, unsigned long long *flushes);

#endif
