/*
 * API keys cached in memory, so that authenticating a request reads no
 * database (the lookup cost 7.7 us per request on the HTTP threads, a
 * quarter of their time per earn; docs/PERFORMANCE.md).
 *
 * Only keys found valid are cached, each with the key epoch that was
 * current before it was read.  A revocation bumps the epoch once it is
 * durable and before it is answered (jf_writer_finish), so the very next
 * request with that key reads the database again and is refused.  The
 * epoch is a counter in a small file beside the database (<db>-keys),
 * mapped shared by every process that opens the database, so a key revoked
 * by another process (`jifen keys revoke` while the server runs) stops
 * working at once too, as with the lookup it replaces.  Where that file
 * cannot be had (an in-memory database, a read-only directory) nothing is
 * cached.
 *
 * No packaged library fits: this is a direct-mapped table of
 * JF_KEY_CACHE_SLOTS entries under one mutex; a collision only costs a
 * database read.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

typedef struct key_slot {
    char id[JF_ID_LEN_MAX];
    uint8_t hash[JF_HASH_BYTES];
    int64_t tenant;
    jf_role role;
    uint64_t epoch;
    bool used;
} key_slot;

struct jf_key_cache {
    pthread_mutex_t mu;
    _Atomic uint64_t *epoch; /* in the shared mapping */
    key_slot slots[JF_KEY_CACHE_SLOTS];
};

enum { EPOCH_FILE_BYTES = 4096 };

/* Maps <db>-keys, creating it; NULL when it cannot be had. */
static _Atomic uint64_t *epoch_map(const char *db_path)
{
    if (db_path == NULL || db_path[0] == '\0' || strcmp(db_path, ":memory:") == 0 ||
        strncmp(db_path, "file:", 5) == 0)
        return NULL;
    char path[4096];
    if (snprintf(path, sizeof(path), "%s-keys", db_path) >= (int)sizeof(path))
        return NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *p = MAP_FAILED;
    /* A new file reads as zeros: epoch 0.  ftruncate never shrinks it here. */
    if (fstat(fd, &st) == 0 &&
        (st.st_size >= EPOCH_FILE_BYTES || ftruncate(fd, EPOCH_FILE_BYTES) == 0))
        p = mmap(NULL, EPOCH_FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : (_Atomic uint64_t *)p;
}

jf_key_cache *jf_key_cache_new(const char *db_path)
{
    _Atomic uint64_t *epoch = epoch_map(db_path);
    if (epoch == NULL)
        return NULL;
    jf_key_cache *kc = calloc(1, sizeof(*kc));
    if (kc == NULL) {
        munmap((void *)epoch, EPOCH_FILE_BYTES);
        return NULL;
    }
    pthread_mutex_init(&kc->mu, NULL);
    kc->epoch = epoch;
    return kc;
}

void jf_key_cache_free(jf_key_cache *kc)
{
    if (kc == NULL)
        return;
    munmap((void *)kc->epoch, EPOCH_FILE_BYTES);
    pthread_mutex_destroy(&kc->mu);
    free(kc);
}

uint64_t jf_key_cache_epoch(jf_key_cache *kc)
{
    return kc ? atomic_load(kc->epoch) : 0;
}

void jf_key_cache_bump(jf_key_cache *kc)
{
    if (kc)
        atomic_fetch_add(kc->epoch, 1);
}

static key_slot *slot_of(jf_key_cache *kc, const char *id)
{
    return &kc->slots[jf_hash_str(JF_HASH_STR_SEED, id) % JF_KEY_CACHE_SLOTS];
}

bool jf_key_cache_get(jf_key_cache *kc, const char *id, uint8_t hash[JF_HASH_BYTES],
                      int64_t *tenant, jf_role *role)
{
    if (kc == NULL)
        return false;
    uint64_t now = atomic_load(kc->epoch);
    pthread_mutex_lock(&kc->mu);
    key_slot *s = slot_of(kc, id);
    bool hit = s->used && s->epoch == now && strcmp(s->id, id) == 0;
    if (hit) {
        memcpy(hash, s->hash, JF_HASH_BYTES);
        *tenant = s->tenant;
        *role = s->role;
    }
    pthread_mutex_unlock(&kc->mu);
    return hit;
}

void jf_key_cache_put(jf_key_cache *kc, uint64_t epoch, const char *id,
                      const uint8_t hash[JF_HASH_BYTES], int64_t tenant, jf_role role)
{
    if (kc == NULL || strlen(id) >= JF_ID_LEN_MAX)
        return;
    pthread_mutex_lock(&kc->mu);
    key_slot *s = slot_of(kc, id);
    jf_str_copy(s->id, sizeof(s->id), id);
    memcpy(s->hash, hash, JF_HASH_BYTES);
    s->tenant = tenant;
    s->role = role;
    s->epoch = epoch;
    s->used = true;
    pthread_mutex_unlock(&kc->mu);
}
