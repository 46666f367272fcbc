/*
 * A database file in a new temporary directory, opened through the store
 * (db.c), for unit tests of the store itself; removed with its directory.
 */
#ifndef JF_TEST_TMPDB_H
#define JF_TEST_TMPDB_H

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "tmpdir.h"

typedef struct tmpdb {
    char dir[64], path[96];
    jf_db db;
} tmpdb;

/* Closes t and removes its directory; returns whether that worked. */
static inline int tmpdb_close(tmpdb *t)
{
    jf_db_close(&t->db);
    bool removed = tmpdir_remove(t->dir);
    free(t);
    return removed;
}

/* A new tmpdb named after the test file (prefix), opened; NULL on failure. */
static inline tmpdb *tmpdb_open(const char *prefix)
{
    tmpdb *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    if (!tmpdir_make(t->dir, sizeof(t->dir), t->path, sizeof(t->path), prefix, "t.db")) {
        free(t);
        return NULL;
    }
    if (jf_db_open(&t->db, t->path, false) != JF_OK) {
        tmpdb_close(t);
        return NULL;
    }
    return t;
}

#endif
