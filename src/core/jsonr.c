/*
 * JSON text to jansson values: the tree json_loadb(text, len, flags) builds,
 * refused where it refuses, at a fraction of its cost.  json.c parses every
 * request body and every stored text through it.
 *
 * Why our own: jansson 2.14's decoder costs about 100 instructions per byte.
 * Its lexer takes each byte through a stream that checks it as UTF-8, saves
 * it into a token buffer with a memcpy of one byte, and then converts the
 * token: a W8 order of two lines (235 bytes) took 47,000 of the HTTP
 * thread's 105,000 instructions (docs/PERFORMANCE-HISTORY.md, "Since commit
 * 3d50393"), and a till's order of twenty lines would take more than the
 * writer spends on it.  That lexer also drops a byte when growing its token
 * buffer fails (akheron/jansson#362, not fixed in Debian 12's 2.14), after
 * which it may read past the buffer or abort; json.c used to set a reserve
 * of memory aside for every parse to prevent it.  No packaged parser builds
 * jansson values, and the engine works on them; so this one reads the text
 * once, takes a string without escapes straight from it, decodes numbers by
 * hand, and builds the values through jansson's own API (a failed
 * allocation there is a NULL it sees, never a lost byte).
 *
 * What it takes is what jansson takes (tests/unit/test_jsonr.c and
 * tests/fuzz/fuzz_json.c compare the two on random and mutated text):
 * RFC 8259's grammar; strings of UTF-8 as jansson checks it, without control
 * characters or \u0000, surrogate escapes only in pairs; integers within
 * json_int_t ("too big integer"), reals that do not overflow a double;
 * whitespace of space, tab, CR and LF; and the flags JSON_REJECT_DUPLICATES
 * and JSON_DECODE_ANY.  One difference on purpose: containers nested deeper
 * than JF_JSON_DECODE_DEPTH_MAX are refused (jansson allows 2,048), so that
 * the recursion stays small on any thread's stack.  Reals are converted by
 * strtod, as jansson converts them, in the process's C locale (jifen never
 * calls setlocale).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

_Static_assert(sizeof(json_int_t) == sizeof(int64_t), "json_int_t holds an int64_t");

typedef struct reader {
    const unsigned char *start, *p, *end;
    size_t flags;
    int depth_max; /* the deepest container read so far */
    char *buf;     /* an escaped string's bytes, a real's text */
    size_t cap;
    jf_json_read_error *e;
} reader;

/* Notes the first fault (with its place) and returns NULL for the caller
 * to pass up. */
static json_t *fault(reader *r, jf_json_fault f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *fault(reader *r, jf_json_fault f, const char *fmt, ...)
{
    if (r->e->fault != JF_JSON_FAULT_NONE)
        return NULL;
    r->e->fault = f;
    r->e->at = (size_t)(r->p - r->start);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->e->text, sizeof r->e->text, fmt, ap);
    va_end(ap);
    return NULL;
}

static json_t *nomem(reader *r)
{
    return fault(r, JF_JSON_FAULT_NOMEM, "out of memory");
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void skip_space(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* The scratch buffer, at least n bytes; n never exceeds the text's length
 * plus one, so it is bounded by the body's own limit. */
static bool scratch(reader *r, size_t n)
{
    if (n <= r->cap)
        return true;
    size_t cap = r->cap ? r->cap : 256;
    while (cap < n)
        cap *= 2;
    char *p = realloc(r->buf, cap);
    if (p == NULL)
        return nomem(r), false;
    r->buf = p;
    r->cap = cap;
    return true;
}

static int hex_digit(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The four hex digits after "\u" at q; -1 when they are not. */
static long hex4(const reader *r, const unsigned char *q)
{
    if (r->end - q < 6 || q[0] != '\\' || q[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int d = hex_digit(q[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t utf8_put(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A \u escape at *q (one code point, or a surrogate pair as two escapes)
 * appended to out as UTF-8; *q moves past it.  False on a fault. */
static bool unicode_escape(reader *r, const unsigned char **q, char *out, size_t *o)
{
    long v = hex4(r, *q);
    if (v < 0)
        return fault(r, JF_JSON_FAULT_SYNTAX, "invalid escape"), false;
    *q += 6;
    if (v >= 0xD800 && v <= 0xDBFF) {
        long lo = hex4(r, *q);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fault(r, JF_JSON_FAULT_SYNTAX, "invalid Unicode '\\u%04lX'", v), false;
        *q += 6;
        v = ((v - 0xD800) << 10) + (lo - 0xDC00) + 0x10000;
    } else if (v >= 0xDC00 && v <= 0xDFFF) {
        return fault(r, JF_JSON_FAULT_SYNTAX, "invalid Unicode '\\u%04lX'", v), false;
    } else if (v == 0) {
        return fault(r, JF_JSON_FAULT_SYNTAX, "\\u0000 is not allowed"), false;
    }
    *o += utf8_put(out + *o, (unsigned long)v);
    return true;
}

/* One escape at *q (the backslash) appended to out. */
static bool escape(reader *r, const unsigned char **q, char *out, size_t *o)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (r->end - *q < 2)
        return fault(r, JF_JSON_FAULT_SYNTAX, "premature end of input"), false;
    if ((*q)[1] == 'u')
        return unicode_escape(r, q, out, o);
    const char *f = (*q)[1] ? strchr(from, (*q)[1]) : NULL;
    if (f == NULL)
        return fault(r, JF_JSON_FAULT_SYNTAX, "invalid escape"), false;
    out[(*o)++] = to[f - from];
    *q += 2;
    return true;
}

/* Where a string's next byte that needs a look ends the plain run at q:
 * the closing quote, a backslash, a control character or a byte of UTF-8
 * (checked here and stepped over).  NULL on a fault. */
static const unsigned char *plain_run(reader *r, const unsigned char *q)
{
    while (q < r->end) {
        unsigned char c = *q;
        if (c == '"' || c == '\\')
            return q;
        if (c < 0x20) {
            r->p = q;
            return fault(r, JF_JSON_FAULT_SYNTAX, "control character 0x%x", c), NULL;
        }
        if (c < 0x80) {
            q++;
            continue;
        }
        size_t k = jf_json_utf8_first(c);
        if (k == 0 || k > (size_t)(r->end - q) || !jf_json_utf8_full(q, k)) {
            r->p = q;
            return fault(r, JF_JSON_FAULT_SYNTAX, "invalid UTF-8"), NULL;
        }
        q += k;
    }
    r->p = q;
    return fault(r, JF_JSON_FAULT_SYNTAX, "premature end of input"), NULL;
}

/* The string whose opening quote is at r->p: *s and *n are its bytes, in
 * the text itself when it has no escape, else in the scratch buffer (valid
 * until the next string or number is read). */
static bool read_string(reader *r, const char **s, size_t *n)
{
    const unsigned char *begin = r->p + 1, *q = plain_run(r, begin);
    if (q == NULL)
        return false;
    if (*q == '"') {
        *s = (const char *)begin;
        *n = (size_t)(q - begin);
        r->p = q + 1;
        return true;
    }
    /* An escape: the decoded bytes are never more than the text's. */
    if (!scratch(r, (size_t)(r->end - begin) + 1))
        return false;
    size_t o = (size_t)(q - begin);
    memcpy(r->buf, begin, o);
    while (*q == '\\') {
        r->p = q;
        if (!escape(r, &q, r->buf, &o))
            return false;
        const unsigned char *run = q;
        if ((q = plain_run(r, run)) == NULL)
            return false;
        memcpy(r->buf + o, run, (size_t)(q - run));
        o += (size_t)(q - run);
    }
    *s = r->buf;
    *n = o;
    r->p = q + 1;
    return true;
}

/* A number's text: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
typedef struct number {
    const unsigned char *begin, *digits, *digits_end, *end;
    bool neg, is_real;
} number;

/* The number at r->p, which r->p then passes; false on a fault. */
static bool scan_number(reader *r, number *n)
{
    const unsigned char *q = r->p, *end = r->end;
    *n = (number){.begin = q, .neg = *q == '-'};
    q += n->neg;
    if (q >= end || !is_digit(*q) || (*q == '0' && q + 1 < end && is_digit(q[1])))
        return fault(r, JF_JSON_FAULT_SYNTAX, "invalid token"), false;
    n->digits = q;
    while (q < end && is_digit(*q))
        q++;
    n->digits_end = q;
    if (q < end && *q == '.') {
        if (++q >= end || !is_digit(*q))
            return r->p = q, fault(r, JF_JSON_FAULT_SYNTAX, "invalid token"), false;
        while (q < end && is_digit(*q))
            q++;
        n->is_real = true;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        q += q < end && (*q == '+' || *q == '-');
        if (q >= end || !is_digit(*q))
            return r->p = q, fault(r, JF_JSON_FAULT_SYNTAX, "invalid token"), false;
        while (q < end && is_digit(*q))
            q++;
        n->is_real = true;
    }
    /* jansson reads the byte after a number as UTF-8 before it converts the
     * number: a byte that is not fails the number's text first. */
    size_t k = q < end && *q >= 0x80 ? jf_json_utf8_first(*q) : 1;
    if (k != 1 && (k == 0 || k > (size_t)(end - q) || !jf_json_utf8_full(q, k)))
        return r->p = q, fault(r, JF_JSON_FAULT_SYNTAX, "invalid UTF-8"), false;
    r->p = n->end = q;
    return true;
}

/* An integer's value as jansson's strtoll reads it, or a fault past
 * json_int_t's range. */
static bool integer_value(reader *r, const number *n, json_int_t *out)
{
    uint64_t limit = n->neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (const unsigned char *q = n->digits; q < n->digits_end; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (v > (limit - d) / 10) {
            r->p = n->begin;
            return fault(r, JF_JSON_FAULT_TOO_BIG,
                         n->neg ? "too big negative integer" : "too big integer"),
                   false;
        }
        v = v * 10 + d;
    }
    *out = !n->neg ? (json_int_t)v : v > (uint64_t)INT64_MAX ? INT64_MIN : -(json_int_t)v;
    return true;
}

static json_t *real(reader *r, const number *n)
{
    size_t len = (size_t)(n->end - n->begin);
    if (!scratch(r, len + 1))
        return NULL;
    memcpy(r->buf, n->begin, len);
    r->buf[len] = '\0';
    errno = 0;
    char *stop = NULL;
    double d = strtod(r->buf, &stop);
    if (stop != r->buf + len) /* a bug: the text is a number by JSON's grammar */
        abort();
    if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE) {
        r->p = n->begin;
        return fault(r, JF_JSON_FAULT_SYNTAX, "real number overflow");
    }
    json_t *j = json_real(d);
    return j ? j : nomem(r);
}

static json_t *read_number(reader *r)
{
    number n;
    json_int_t v = 0;
    if (!scan_number(r, &n))
        return NULL;
    if (n.is_real)
        return real(r, &n);
    if (!integer_value(r, &n, &v))
        return NULL;
    json_t *j = json_integer(v);
    return j ? j : nomem(r);
}

/* A fault where the grammar wants something else ("',' or ']'", "':'",
 * "end of file").  jansson reads the next token before it looks at what it
 * is, so an integer out of range there is named as that (the API answers
 * amount_out_of_range for it, invalid_json for the rest): it is read the
 * same way first. */
static json_t *expected(reader *r, const char *what)
{
    const unsigned char *at = r->p;
    number n;
    json_int_t v;
    if (at < r->end && (*at == '-' || is_digit(*at)) && scan_number(r, &n) && !n.is_real)
        integer_value(r, &n, &v);
    r->p = at;
    return fault(r, JF_JSON_FAULT_SYNTAX, "%s expected", what);
}

static json_t *read_literal(reader *r, const char *word, size_t n, json_t *value)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return fault(r, JF_JSON_FAULT_SYNTAX, "invalid token");
    r->p += n;
    return value;
}

static json_t *read_value(reader *r, int depth);

/* After a member or an element: true at the separator (stepped over), false
 * at the closing bracket (stepped over too) or on a fault (*bad). */
static bool next_item(reader *r, char close, bool *bad)
{
    skip_space(r);
    if (r->p < r->end && *r->p == ',') {
        r->p++;
        return true;
    }
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return false;
    }
    *bad = true;
    expected(r, close == ']' ? "',' or ']'" : "',' or '}'");
    return false;
}

/* One entering of a container at depth: false when it is too deep. */
static bool enter(reader *r, int depth)
{
    if (depth > JF_JSON_DECODE_DEPTH_MAX)
        return fault(r, JF_JSON_FAULT_DEPTH, "nested deeper than %d", JF_JSON_DECODE_DEPTH_MAX),
               false;
    r->depth_max = depth > r->depth_max ? depth : r->depth_max;
    r->p++;
    skip_space(r);
    return true;
}

/* One member "key": value into o. */
static bool read_member(reader *r, json_t *o, int depth)
{
    skip_space(r);
    const char *k = NULL;
    size_t kn = 0;
    if (r->p >= r->end || *r->p != '"')
        return expected(r, "string or '}'"), false;
    if (!read_string(r, &k, &kn))
        return false;
    /* A key decoded in the scratch buffer would not outlive the value's own
     * strings: it gets a copy (keys with escapes are rare). */
    char *copy = NULL;
    if (k == r->buf) {
        if ((copy = malloc(kn + 1)) == NULL)
            return nomem(r), false;
        k = memcpy(copy, k, kn);
    }
    bool ok = false;
    skip_space(r);
    const unsigned char *at = r->p;
    size_t size = json_object_size(o);
    if (r->p >= r->end || *r->p != ':') {
        expected(r, "':'");
    } else {
        r->p++;
        json_t *v = read_value(r, depth);
        /* The set takes v, and frees it when it fails. */
        ok = v != NULL && json_object_setn_new_nocheck(o, k, kn, v) == 0;
        if (v != NULL && !ok)
            nomem(r);
    }
    /* A duplicate key is found by the set replacing a value (the size does not
     * grow) instead of a lookup before it, about 240 instructions a key; a
     * member that fails otherwise looks its key up, so that a duplicate is
     * still the fault, at the key, as jansson has it. */
    bool dups = r->flags & JSON_REJECT_DUPLICATES;
    if (dups && (ok ? json_object_size(o) == size : json_object_getn(o, k, kn) != NULL)) {
        r->e->fault = JF_JSON_FAULT_NONE;
        r->p = at;
        fault(r, JF_JSON_FAULT_DUPLICATE, "duplicate object key");
        ok = false;
    }
    free(copy);
    return ok;
}

/* One element of an array, or one member of an object, into c. */
static bool read_item(reader *r, json_t *c, int depth)
{
    if (json_is_object(c))
        return read_member(r, c, depth);
    json_t *v = read_value(r, depth);
    if (v == NULL)
        return false;
    if (json_array_append_new(c, v) != 0) /* v is freed */
        return nomem(r), false;
    return true;
}

/* The array (close ']') or object (close '}') whose opening bracket is at
 * r->p. */
static json_t *read_container(reader *r, int depth, char close)
{
    if (!enter(r, depth))
        return NULL;
    json_t *c = close == ']' ? json_array() : json_object();
    if (c == NULL)
        return nomem(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return c;
    }
    bool bad = false;
    do {
        if (!read_item(r, c, depth)) {
            bad = true;
            break;
        }
    } while (next_item(r, close, &bad));
    if (bad) {
        json_decref(c);
        c = NULL;
    }
    return c;
}

static json_t *read_value(reader *r, int depth)
{
    skip_space(r);
    if (r->p >= r->end)
        return fault(r, JF_JSON_FAULT_SYNTAX, "premature end of input");
    const char *s = NULL;
    size_t n = 0;
    json_t *v;
    switch (*r->p) {
    case '{':
        return read_container(r, depth + 1, '}');
    case '[':
        return read_container(r, depth + 1, ']');
    case '"':
        if (!read_string(r, &s, &n))
            return NULL;
        v = json_stringn_nocheck(s, n);
        return v ? v : nomem(r);
    case 't':
        return read_literal(r, "true", 4, json_true());
    case 'f':
        return read_literal(r, "false", 5, json_false());
    case 'n':
        return read_literal(r, "null", 4, json_null());
    default:
        if (*r->p == '-' || is_digit(*r->p))
            return read_number(r);
        return fault(r, JF_JSON_FAULT_SYNTAX, "invalid token");
    }
}

/* Line and column (both from 1, the column in bytes) of the fault. */
static void fault_place(const reader *r)
{
    jf_json_read_error *e = r->e;
    e->line = 1;
    e->column = 1;
    for (size_t i = 0; i < e->at; i++) {
        if (r->start[i] == '\n') {
            e->line++;
            e->column = 1;
        } else {
            e->column++;
        }
    }
}

json_t *jf_json_read(const char *text, size_t len, size_t flags, int *depth, jf_json_read_error *e)
{
    if ((flags & ~(size_t)(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)) != 0)
        abort(); /* a bug: no caller asks for jansson's other flags */
    const unsigned char *t = (const unsigned char *)text;
    reader r = {.start = t, .p = t, .end = t + len, .flags = flags, .e = e};
    memset(e, 0, sizeof(*e));
    skip_space(&r);
    json_t *v = NULL;
    if (!(flags & JSON_DECODE_ANY) && (r.p >= r.end || (*r.p != '{' && *r.p != '[')))
        expected(&r, "'[' or '{'");
    else if ((v = read_value(&r, 0)) != NULL) {
        skip_space(&r);
        if (r.p != r.end) {
            json_decref(v);
            v = expected(&r, "end of file");
        }
    }
    free(r.buf);
    /* Every way to NULL notes its fault, and a fault never leaves a tree. */
    if ((v == NULL) != (e->fault != JF_JSON_FAULT_NONE))
        abort();
    if (v == NULL)
        fault_place(&r);
    if (depth)
        *depth = r.depth_max;
    return v;
}
