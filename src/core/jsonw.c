/*
 * Compact JSON text of a json_t, byte for byte what jansson's
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes (with
 * JSON_SORT_KEYS too: the request fingerprint of idempotency), at a
 * fraction of its cost.
 *
 * Why our own: every write's reply is dumped on the writer thread, and
 * json_dumps was a tenth of the writer's time in W1 (docs/PERFORMANCE-HISTORY.md,
 * "Since commit 7b7e6c9").  It hands every fragment to a callback, checks
 * each array and object for cycles by formatting its address into a
 * hashtable entry (a malloc and a free per container), formats integers
 * with snprintf, and decodes every string as UTF-8 code point by code
 * point.  Our trees are built by our own code (no cycles) and nearly all
 * of their text is ASCII, so this walks the tree into one growing buffer,
 * copies ASCII runs whole and writes integers by hand.  What it does not
 * do as fast it leaves to jansson, so the bytes stay the same: a real
 * (jansson's own shortest round-trip formatting) is dumped by json_dumps
 * itself.  Text other than ASCII is checked as jansson checks UTF-8 and
 * copied as jansson copies it (it used to be dumped by jansson: a json_t and
 * a dump, two allocations, per string; docs/PERFORMANCE-HISTORY.md, "Since
 * commit 1d39995").  tests/unit/test_jsonw.c compares the two on random
 * trees.
 *
 * The same writer, piece by piece (jf_jt_*), renders a write's answer from
 * the writer's own structs without building a tree at all (tx.c,
 * jf_tx_view_text; test_tx_view.c compares it with the tree's dump).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef jf_jtext jsonw_buf;

static bool jw_reserve(jsonw_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024; /* a write's whole answer, mostly */
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        jf_json_alloc_note_failure();
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void jw_put(jsonw_buf *b, const char *s, size_t n)
{
    if (jw_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void jw_char(jsonw_buf *b, char c)
{
    if (jw_reserve(b, 1))
        b->p[b->len++] = c;
}

static void jw_int(jsonw_buf *b, json_int_t v)
{
    char tmp[JF_I64_DEC_MAX];
    jw_put(b, tmp, jf_i64_dec(v, tmp));
}

/* A value jansson dumps for us: its text appended whole. */
static void jw_jansson(jsonw_buf *b, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        b->failed = true;
        return;
    }
    jw_put(b, s, strlen(s));
    free(s);
}

/* A UTF-8 string quoted and escaped as jansson escapes it without
 * JSON_ENSURE_ASCII: the short forms for \b \f \n \r \t, \u00XX (upper-case
 * hex) for the other control characters, and nothing else but '"' and '\\';
 * every other byte, those of multi-byte sequences too, as it is. */
static void jw_escaped(jsonw_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    jw_char(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jw_put(b, s + run, i - run);
        run = i + 1;
        /* Pairs of a character and its short escape's letter; c is never
         * one of the letters, so memchr finds c's own slot. */
        static const char shorts[] = "\"\"\\\\\bb\ff\nn\rr\tt";
        const char *f = memchr(shorts, c, sizeof(shorts) - 1);
        char esc[6] = {'\\', f ? f[1] : 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
        size_t len = f ? 2 : 6;
        jw_put(b, esc, len);
    }
    jw_put(b, s + run, n - run);
    jw_char(b, '"');
}

/* The bytes of a UTF-8 sequence that starts with c (jansson's
 * utf8_check_first): 0 for a continuation byte, an overlong lead (0xC0,
 * 0xC1) or a lead past U+10FFFF (0xF5 and up). */
size_t jf_json_utf8_first(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return 2;
    if (c < 0xF0)
        return 3;
    return c < 0xF5 ? 4 : 0;
}

/* Whether the n-byte sequence at s is one code point as jansson accepts it
 * (utf8_check_full): continuation bytes, no overlong form, no surrogate
 * half, nothing past U+10FFFF. */
bool jf_json_utf8_full(const unsigned char *s, size_t n)
{
    static const unsigned char lead_mask[] = {0, 0, 0x1F, 0x0F, 0x07};
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t v = s[0] & lead_mask[n];
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return false;
        v = v << 6 | (s[i] & 0x3F);
    }
    return v >= least[n] && v <= 0x10FFFF && (v < 0xD800 || v > 0xDFFF);
}

/* Whether s is text json_stringn accepts: jansson's own check
 * (utf8_check_string) is not part of its API, and the bytes we write must
 * be the ones it would (test_jsonw.c and test_tx_view.c compare them on
 * random text, invalid sequences included). */
static bool jw_is_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = jf_json_utf8_first(u[i]);
        if (k == 0 || k > n - i || !jf_json_utf8_full(u + i, k))
            return false;
        i += k;
    }
    return true;
}

/* Printable ASCII but '"' and '\\': written between quotes as it is. */
static bool jw_is_plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static void jw_plain(jsonw_buf *b, const char *s, size_t n)
{
    if (!jw_reserve(b, n + 2))
        return;
    b->p[b->len] = '"';
    memcpy(b->p + b->len + 1, s, n);
    b->p[b->len + n + 1] = '"';
    b->len += n + 2;
}

/* s quoted as jansson quotes it, allocating nothing but the buffer's
 * growth.  False, writing nothing, for text jansson refuses as UTF-8. */
static bool jw_quoted(jsonw_buf *b, const char *s, size_t n)
{
    if (jw_is_plain(s, n)) {
        jw_plain(b, s, n);
        return true;
    }
    if (!jw_is_utf8(s, n))
        return false;
    jw_escaped(b, s, n);
    return true;
}

static void jw_string(jsonw_buf *b, const json_t *str)
{
    /* json_dumps fails on a string that is not UTF-8 (only
     * json_string_nocheck makes one). */
    if (!jw_quoted(b, json_string_value(str), json_string_length(str)))
        b->failed = true;
}

static void jw_value(jsonw_buf *b, const json_t *v, int depth);

static void jw_key(jsonw_buf *b, const char *k, size_t kn)
{
    if (!jw_quoted(b, k, kn))
        b->failed = true;
}

typedef struct {
    const char *k;
    size_t n;
    json_t *v;
} jw_member;

/* jansson's order for JSON_SORT_KEYS: bytes, then the shorter first. */
static int jw_member_cmp(const void *a, const void *b)
{
    const jw_member *x = a, *y = b;
    int r = memcmp(x->k, y->k, x->n < y->n ? x->n : y->n);
    return r ? r : (x->n > y->n) - (x->n < y->n);
}

/* A request's objects have a handful of keys, which glibc's qsort (a merge
 * sort through a comparison function pointer) sorted at about 300
 * instructions a key: a third of an order earn's fingerprint on the HTTP
 * threads (idem.c, jf_request_hash).  Keys are unique, so any sort gives
 * the same order. */
static void members_insertion_sort(jw_member *m, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        jw_member x = m[i];
        size_t j = i;
        for (; j > 0 && jw_member_cmp(&m[j - 1], &x) > 0; j--)
            m[j] = m[j - 1];
        m[j] = x;
    }
}

static void jw_object(jsonw_buf *b, const json_t *obj, int depth)
{
    /* jansson iterates an object's keys in insertion order; so does this,
     * unless sorted. */
    size_t n = json_object_size(obj), i = 0;
    jw_member stack[16];
    jw_member *m = n <= 16 ? stack : malloc(n * sizeof(*m));
    if (m == NULL) {
        b->failed = true;
        jf_json_alloc_note_failure();
        return;
    }
    for (void *it = json_object_iter((json_t *)obj); it && i < n;
         it = json_object_iter_next((json_t *)obj, it), i++)
        m[i] = (jw_member){json_object_iter_key(it), json_object_iter_key_len(it),
                           json_object_iter_value(it)};
    if (b->sorted && i <= 16)
        members_insertion_sort(m, i);
    else if (b->sorted)
        qsort(m, i, sizeof(*m), jw_member_cmp);
    jw_char(b, '{');
    for (size_t k = 0; k < i && !b->failed; k++) {
        if (k > 0)
            jw_char(b, ',');
        jw_key(b, m[k].k, m[k].n);
        jw_char(b, ':');
        jw_value(b, m[k].v, depth + 1);
    }
    jw_char(b, '}');
    if (m != stack)
        free(m);
}

static void jw_array(jsonw_buf *b, const json_t *arr, int depth)
{
    jw_char(b, '[');
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n && !b->failed; i++) {
        if (i > 0)
            jw_char(b, ',');
        jw_value(b, json_array_get(arr, i), depth + 1);
    }
    jw_char(b, ']');
}

static void jw_value(jsonw_buf *b, const json_t *v, int depth)
{
    if (v == NULL || depth > JF_JSON_DUMP_DEPTH_MAX) {
        b->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        jw_object(b, v, depth);
        break;
    case JSON_ARRAY:
        jw_array(b, v, depth);
        break;
    case JSON_STRING:
        jw_string(b, v);
        break;
    case JSON_INTEGER:
        jw_int(b, json_integer_value(v));
        break;
    case JSON_REAL:
        jw_jansson(b, v);
        break;
    case JSON_TRUE:
        jw_put(b, "true", 4);
        break;
    case JSON_FALSE:
        jw_put(b, "false", 5);
        break;
    case JSON_NULL:
        jw_put(b, "null", 4);
        break;
    }
}

static char *jw_dump(json_t *v, size_t *len, bool sorted)
{
    jsonw_buf b = {.sorted = sorted};
    jw_value(&b, v, 0);
    return jf_jt_take(&b, len);
}

char *jf_json_dump(json_t *v, size_t *len)
{
    return jw_dump(v, len, false);
}

char *jf_json_dump_sorted(json_t *v, size_t *len)
{
    return jw_dump(v, len, true);
}

/* ---- text written piece by piece (jf_jtext, core.h) ---- */

void jf_jt_raw(jf_jtext *b, const char *s)
{
    jw_put(b, s, strlen(s));
}

void jf_jt_rawn(jf_jtext *b, const char *s, size_t n)
{
    jw_put(b, s, n);
}

void jf_jt_str(jf_jtext *b, const char *s)
{
    /* As jf_json_text: NULL, and text json_string refuses, are null. */
    if (s == NULL || !jw_quoted(b, s, strlen(s)))
        jw_put(b, "null", 4);
}

size_t jf_jt_str_max(const char *s)
{
    if (s == NULL)
        return 4; /* null */
    size_t n = strlen(s);
    if (jw_is_plain(s, n))
        return n + 2;
    return jw_is_utf8(s, n) ? 6 * n + 2 : 4; /* each byte at most \u00XX; else null */
}

void jf_jt_int(jf_jtext *b, int64_t v)
{
    jw_int(b, v);
}

void jf_jt_json(jf_jtext *b, const json_t *v)
{
    if (v == NULL)
        jw_put(b, "null", 4);
    else
        jw_value(b, v, 0);
}

void jf_jt_reserve(jf_jtext *b, size_t n)
{
    jw_reserve(b, n);
}

char *jf_jt_take(jf_jtext *b, size_t *len)
{
    if (!jw_reserve(b, 0)) {
        free(b->p);
        *b = (jf_jtext){0};
        return NULL;
    }
    b->p[b->len] = '\0';
    if (len)
        *len = b->len;
    char *p = b->p;
    *b = (jf_jtext){0};
    return p;
}
