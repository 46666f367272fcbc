/*
 * src/core/jsonr.c reads what jansson's json_loadb reads: the same texts
 * accepted and refused, the same trees built (json_equal, which tells an
 * integer from a real), a duplicate key and an integer out of range named
 * as jansson names them (the API answers duplicate_field and
 * amount_out_of_range for them).  Fixed cases cover each escape, surrogate
 * pairs and lone halves, UTF-8 that jansson refuses, the integer extremes,
 * reals that overflow and underflow, numbers JSON does not allow, literals,
 * whitespace, trailing text, NUL bytes and nesting; a seeded random test
 * writes JSON text with random spacing and escapes, mutates some of it
 * byte by byte, and compares the two readers on every text (SEED=n replays
 * a run; the seed is printed).  The one difference on purpose, nesting
 * deeper than JF_JSON_DECODE_DEPTH_MAX, is tested on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "seed.h"

/* jansson's refusal of a key twice, and of an integer out of json_int_t's
 * range (whose code it shares with a real's overflow; its text does not). */
static bool jansson_duplicate(const json_error_t *je)
{
    return json_error_code(je) == json_error_duplicate_key;
}

static bool jansson_too_big(const json_error_t *je)
{
    return json_error_code(je) == json_error_numeric_overflow &&
           strncmp(je->text, "too big", 7) == 0;
}

static void show(const char *what, const char *text, size_t len)
{
    fprintf(stderr, "%s: \"", what);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

/* Reads text with both and checks they agree; returns ours (or NULL) and
 * its fault in *e. */
static json_t *compare(const char *text, size_t len, size_t flags, jf_json_read_error *e)
{
    json_error_t je;
    int depth = -1;
    json_t *ours = jf_json_read(text, len, flags, &depth, e);
    json_t *theirs = json_loadb(text, len, flags, &je);
    /* jansson 2.14 skips a NUL byte that follows a number or a literal (its
     * stream takes the NUL in its one-byte lookahead for an empty one) and
     * so accepts "[1\0]"; jsonr refuses every NUL byte outside a string, as
     * RFC 8259 does, before what jansson finds after it.  Such text is only
     * checked to be refused. */
    bool nul = memchr(text, '\0', len) != NULL && ours == NULL;
    if (nul) {
        json_decref(theirs);
        theirs = NULL;
    }
    bool agree = (ours == NULL) == (theirs == NULL) && (ours == NULL || json_equal(ours, theirs));
    if (agree && ours != NULL) {
        /* The members in the same order too: replies keep it. */
        char *a = jf_json_dump(ours, NULL), *b = jf_json_dump(theirs, NULL);
        agree = a && b && strcmp(a, b) == 0;
        free(a);
        free(b);
    }
    if (agree && ours == NULL && !nul) {
        /* The faults the API names apart are named apart by both. */
        agree = (e->fault == JF_JSON_FAULT_DUPLICATE) == jansson_duplicate(&je) &&
                (e->fault == JF_JSON_FAULT_TOO_BIG) == jansson_too_big(&je);
    }
    if (!agree) {
        show("text", text, len);
        fprintf(stderr, "flags %zu; jsonr: %s (%s); jansson: %s (%s)\n", flags,
                ours ? "accepted" : "refused", ours ? "" : e->text, theirs ? "accepted" : "refused",
                theirs ? "" : je.text);
    }
    assert_true(agree);
    assert_true(ours != NULL || e->fault != JF_JSON_FAULT_NONE);
    assert_true(ours == NULL || e->fault == JF_JSON_FAULT_NONE);
    assert_in_range(depth, 0, JF_JSON_DECODE_DEPTH_MAX);
    json_decref(theirs);
    return ours;
}

/* Both readers, then the outcome expected: accepted (want_fault NONE) or
 * refused with that fault. */
static void check(const char *text, size_t flags, jf_json_fault want_fault)
{
    jf_json_read_error e;
    json_t *v = compare(text, strlen(text), flags, &e);
    if (e.fault != want_fault)
        fprintf(stderr, "%s: fault %d, want %d (%s)\n", text, e.fault, want_fault, e.text);
    assert_int_equal(e.fault, want_fault);
    json_decref(v);
}

static void accepted(const char *text)
{
    check(text, JSON_REJECT_DUPLICATES, JF_JSON_FAULT_NONE);
}

static void refused(const char *text)
{
    check(text, JSON_REJECT_DUPLICATES, JF_JSON_FAULT_SYNTAX);
}

static void test_strings(void **state)
{
    (void)state;
    accepted("[\"\", \"plain\", \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]");
    accepted("[\"\\u0041\\u00e9\\u79EF\\uFFFF\\u2028\", \"a\\u0001b\"]");
    accepted("[\"\\ud83d\\ude00\", \"\\uDBFF\\uDFFF\", \"x\\uD800\\uDC00y\"]");
    accepted("[\"\xc3\xa9\xe7\xa7\xaf\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\x7f\"]");
    refused("[\"\\u0000\"]");
    refused("[\"\\ud800\"]");
    refused("[\"\\ud800x\"]");
    refused("[\"\\ud800\\u0041\"]");
    refused("[\"\\udc00\"]");
    refused("[\"\\ud800\\ud800\"]");
    refused("[\"\\u12\"]");
    refused("[\"\\u12g4\"]");
    refused("[\"\\x41\"]");
    refused("[\"\\'\"]");
    refused("[\"\\\"]");
    refused("[\"abc]");
    refused("[\"a\tb\"]");
    refused("[\"a\nb\"]");
    refused("[\"\x1f\"]");
    refused("[\"\xc0\x80\"]");         /* overlong */
    refused("[\"\xe0\x80\xaf\"]");     /* overlong */
    refused("[\"\xed\xa0\x80\"]");     /* a surrogate half in UTF-8 */
    refused("[\"\xf4\x90\x80\x80\"]"); /* past U+10FFFF */
    refused("[\"\xf5\x80\x80\x80\"]");
    refused("[\"\xe7\xa7\"]"); /* cut short */
    refused("[\"\x80\"]");
    refused("[\"\xff\"]");
    /* Keys: the same rules, escapes decoded, then compared as bytes. */
    accepted("{\"\\u00e9\": 1, \"\xc3\xa9x\": 2, \"\": 3}");
    check("{\"\\u00e9\": 1, \"\xc3\xa9\": 2}", JSON_REJECT_DUPLICATES, JF_JSON_FAULT_DUPLICATE);
    check("{\"a\": 1, \"b\": {\"a\": 2}, \"a\": 3}", JSON_REJECT_DUPLICATES,
          JF_JSON_FAULT_DUPLICATE);
    check("{\"a\": 1, \"a\": 3}", 0, JF_JSON_FAULT_NONE); /* the last one wins, as jansson's */
    /* A duplicate key is the fault even when its member fails otherwise: the
     * key comes first, as in jansson (jsonr.c, read_member). */
    check("{\"a\": 1, \"a\": tru}", JSON_REJECT_DUPLICATES, JF_JSON_FAULT_DUPLICATE);
    check("{\"a\": 1, \"a\" 2}", JSON_REJECT_DUPLICATES, JF_JSON_FAULT_DUPLICATE);
    check("{\"a\": 1, \"a\": [1, {\"b\": 1, \"b\": 2}]}", JSON_REJECT_DUPLICATES,
          JF_JSON_FAULT_DUPLICATE);
    check("{\"a\": 1, \"a\": tru}", 0, JF_JSON_FAULT_SYNTAX);
    check("{\"a\": {\"a\": 1}, \"b\": [{\"a\": 1}], \"c\": 1}", JSON_REJECT_DUPLICATES,
          JF_JSON_FAULT_NONE);
    refused("{\"\\u0000\": 1}");
}

static void test_numbers(void **state)
{
    (void)state;
    accepted("[0, -0, 1, -1, 10, 9007199254740991, -9007199254740991]");
    accepted("[9223372036854775807, -9223372036854775808]");
    check("[9223372036854775808]", 0, JF_JSON_FAULT_TOO_BIG);
    check("[-9223372036854775809]", 0, JF_JSON_FAULT_TOO_BIG);
    check("[123456789012345678901234567890]", 0, JF_JSON_FAULT_TOO_BIG);
    check("{\"points\": -99999999999999999999}", 0, JF_JSON_FAULT_TOO_BIG);
    accepted("[0.5, -0.0, 1.25e3, 1E3, 1e+3, 1e-3, 2.5E-3, 1.7976931348623157e308]");
    accepted("[1e-400, -4.9e-324, 0.0000000000000000000000000001]");
    accepted("[1.000000000000000000000000000000000000000000000000001]");
    refused("[1e400]");
    refused("[-1e400]");
    refused("[1.8e308]");
    refused("[01]");
    refused("[-01]");
    refused("[00]");
    refused("[1.]");
    refused("[.5]");
    refused("[+1]");
    refused("[-]");
    refused("[- 1]");
    refused("[1e]");
    refused("[1e+]");
    refused("[1.e5]");
    refused("[0x10]");
    refused("[1.5.3]");
    refused("[Infinity]");
    refused("[NaN]");
    refused("[1 2]");
    /* jansson reads the byte after a number as UTF-8 first: a number out of
     * range before a byte that is not is refused as that byte. */
    refused("[9223372036854775808\xff]");
    refused("[-9223372036854775809\xe7\x30]");
    check("[9223372036854775808\xc3\xa9]", 0, JF_JSON_FAULT_TOO_BIG);
}

static void test_structure(void **state)
{
    (void)state;
    accepted("{}");
    accepted("[]");
    accepted(" \t\r\n{ \"a\" : [ 1 , true , false , null , { } , [ ] ] } \n");
    refused("");
    refused("   ");
    refused("1");
    refused("\"a\"");
    refused("null");
    check("1", JSON_DECODE_ANY, JF_JSON_FAULT_NONE);
    check(" \"a\" ", JSON_DECODE_ANY, JF_JSON_FAULT_NONE);
    check("null", JSON_DECODE_ANY, JF_JSON_FAULT_NONE);
    check("-5", JSON_DECODE_ANY, JF_JSON_FAULT_NONE);
    check("", JSON_DECODE_ANY, JF_JSON_FAULT_SYNTAX);
    check("nul", JSON_DECODE_ANY, JF_JSON_FAULT_SYNTAX);
    check("truex", JSON_DECODE_ANY, JF_JSON_FAULT_SYNTAX);
    refused("[tru]");
    refused("[True]");
    refused("[truefalse]");
    refused("[nulll]");
    refused("{} {}");
    refused("{}x");
    refused("[1,]");
    refused("[,1]");
    refused("[1,,2]");
    refused("{,}");
    refused("{\"a\"}");
    refused("{\"a\":}");
    refused("{\"a\" 1}");
    refused("{\"a\":1,}");
    refused("{\"a\":1 \"b\":2}");
    refused("{a:1}");
    refused("{'a':1}");
    refused("[1]]");
    refused("[[1]");
    refused("{\"a\":[1}");
    refused("[\f1]");
    refused("[\v1]");
    refused("\xef\xbb\xbf{}"); /* a byte-order mark */
    refused("[1] // c");
    refused("[/* c */ 1]");
}

static void test_nul_bytes(void **state)
{
    (void)state;
    /* The last three jansson 2.14 accepts (compare). */
    static const char *const texts[] = {"{}\0",        "[\0]",  "[\"a\0b\"]",        "\0{}",
                                        "{\"a\0\":1}", "[1\0]", "{\"points\": 5\0}", "[true\0]"};
    static const size_t lens[] = {3, 3, 7, 3, 9, 4, 14, 7};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        jf_json_read_error e;
        json_t *v = compare(texts[i], lens[i], 0, &e);
        assert_null(v);
        assert_int_equal(e.fault, JF_JSON_FAULT_SYNTAX);
    }
}

/* n arrays in one another. */
static char *nested(int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    assert_non_null(s);
    memset(s, '[', (size_t)n);
    memset(s + n, ']', (size_t)n);
    s[2 * n] = '\0';
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    jf_json_read_error e;
    int depth = -1;
    const char *four = "{\"a\": [1, {\"b\": []}], \"c\": 2}";
    json_t *v = jf_json_read(four, strlen(four), 0, &depth, &e);
    assert_non_null(v);
    assert_int_equal(depth, 4);
    json_decref(v);
    v = jf_json_read("7", 1, JSON_DECODE_ANY, &depth, &e);
    assert_int_equal(depth, 0);
    json_decref(v);
    /* As deep as the reader goes: the same as jansson's. */
    char *s = nested(JF_JSON_DECODE_DEPTH_MAX);
    v = compare(s, strlen(s), 0, &e);
    assert_non_null(v);
    json_decref(v);
    free(s);
    /* Deeper: refused as too deep, where jansson (up to 2,048) takes it. */
    static const int too_deep[] = {JF_JSON_DECODE_DEPTH_MAX + 1, 3000};
    for (size_t i = 0; i < 2; i++) {
        s = nested(too_deep[i]);
        v = jf_json_read(s, strlen(s), 0, &depth, &e);
        assert_null(v);
        assert_int_equal(e.fault, JF_JSON_FAULT_DEPTH);
        assert_int_equal(depth, JF_JSON_DECODE_DEPTH_MAX);
        free(s);
    }
}

static void test_fault_place(void **state)
{
    (void)state;
    jf_json_read_error e;
    const char *text = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    assert_null(jf_json_read(text, strlen(text), 0, NULL, &e));
    assert_int_equal(e.fault, JF_JSON_FAULT_SYNTAX);
    assert_int_equal(e.line, 3);
    assert_int_equal(e.column, 8);
    assert_int_equal(e.at, 19);
    assert_string_equal(e.text, "invalid token");
    /* A duplicate is placed at its key's end, whatever follows it. */
    const char *dup[] = {"{\"a\": 1, \"a\" : 2}", "{\"a\": 1, \"a\" : tru}", "{\"a\": 1, \"a\" 2}"};
    for (size_t i = 0; i < sizeof dup / sizeof dup[0]; i++) {
        assert_null(jf_json_read(dup[i], strlen(dup[i]), JSON_REJECT_DUPLICATES, NULL, &e));
        assert_int_equal(e.fault, JF_JSON_FAULT_DUPLICATE);
        assert_int_equal(e.at, 13);
        assert_string_equal(e.text, "duplicate object key");
    }
}

/* ---- random text ---- */

typedef struct text {
    char buf[4096];
    size_t len;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->len + n < sizeof t->buf) {
        memcpy(t->buf + t->len, s, n);
        t->len += n;
    }
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void space(text *t, unsigned *seed)
{
    static const char *const ws[] = {"", "", "", " ", "\n", "\t", "\r\n", "  "};
    puts_(t, ws[rand_r(seed) % 8]);
}

/* One code point of a piece written raw, as a \u escape (a surrogate pair
 * past U+FFFF) or as a short escape. */
static void string_char(text *t, unsigned *seed, const char *piece)
{
    const unsigned char *u = (const unsigned char *)piece;
    size_t k = jf_json_utf8_first(u[0]);
    unsigned long cp = k == 1 ? u[0] : (u[0] & (0xFF >> (k + 1)));
    for (size_t i = 1; i < k; i++)
        cp = cp << 6 | (u[i] & 0x3F);
    static const char shorts[] = "\"\"\\\\\bb\ff\nn\rr\tt//";
    const char *f = cp < 0x80 ? memchr(shorts, (int)cp, sizeof shorts - 1) : NULL;
    char esc[32];
    int how = rand_r(seed) % 4;
    if (cp < 0x20 || cp == '"' || cp == '\\' || how == 0) {
        if (f && (f - shorts) % 2 == 0 && how != 1) {
            char s[2] = {'\\', f[1]};
            put(t, s, 2);
        } else if (cp >= 0x10000) {
            unsigned long v = cp - 0x10000;
            snprintf(esc, sizeof esc, "\\u%04lx\\u%04lX", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            puts_(t, esc);
        } else {
            snprintf(esc, sizeof esc, how == 2 ? "\\u%04lx" : "\\u%04lX", cp);
            puts_(t, esc);
        }
        return;
    }
    put(t, piece, k);
}

static void string(text *t, unsigned *seed, bool key)
{
    static const char *const pieces[] = {TEST_TEXT_PIECES, "\x1f", "\b", "\r"};
    /* Keys of few characters from few pieces, so that duplicates happen. */
    static const char *const key_pieces[] = {"k", "\xc3\xa9", "\n"};
    size_t n = key ? 3 : sizeof(pieces) / sizeof(pieces[0]);
    puts_(t, "\"");
    for (int i = rand_r(seed) % (key ? 3 : 8); i > 0; i--)
        string_char(t, seed, (key ? key_pieces : pieces)[rand_r(seed) % n]);
    puts_(t, "\"");
}

static void number(text *t, unsigned *seed)
{
    static const char *const edges[] = {"0",
                                        "-0",
                                        "9223372036854775807",
                                        "-9223372036854775808",
                                        "9223372036854775808",
                                        "-9223372036854775809",
                                        "9007199254740991",
                                        "1e308",
                                        "1e309",
                                        "-2.5E-310",
                                        "1e-999",
                                        "0.1",
                                        "100000000000000000000000"};
    char s[64];
    switch (rand_r(seed) % 4) {
    case 0:
        puts_(t, edges[rand_r(seed) % (sizeof(edges) / sizeof(edges[0]))]);
        return;
    case 1:
        snprintf(s, sizeof s, "%d", rand_r(seed) - RAND_MAX / 2);
        break;
    case 2:
        snprintf(s, sizeof s, "%.*g", 1 + rand_r(seed) % 17, (double)rand_r(seed) / 7.0);
        break;
    default:
        snprintf(s, sizeof s, "%d.%d%s%d", rand_r(seed) % 100, rand_r(seed) % 1000,
                 rand_r(seed) % 2 ? "e" : "E-", rand_r(seed) % 40);
    }
    puts_(t, s);
}

static void value(text *t, unsigned *seed, int depth)
{
    static const char *const literals[] = {"true", "false", "null"};
    int kind = rand_r(seed) % (depth < 4 ? 7 : 5);
    space(t, seed);
    if (kind <= 1) {
        number(t, seed);
    } else if (kind == 2) {
        puts_(t, literals[rand_r(seed) % 3]);
    } else if (kind <= 4) {
        string(t, seed, false);
    } else {
        bool obj = kind == 6;
        puts_(t, obj ? "{" : "[");
        for (int i = rand_r(seed) % 5, first = 1; i > 0; i--, first = 0) {
            if (!first)
                puts_(t, ",");
            if (obj) {
                space(t, seed);
                string(t, seed, true);
                space(t, seed);
                puts_(t, ":");
            }
            value(t, seed, depth + 1);
            space(t, seed);
        }
        puts_(t, obj ? "}" : "]");
    }
    space(t, seed);
}

/* A byte changed, dropped or added, or the text cut short. */
static void mutate(text *t, unsigned *seed)
{
    static const char bytes[] = "{}[]:,\"\\ \n0123456789-+.eEtfnulrasbu\x00\x01\x1f\x7f\x80\xbf"
                                "\xc3\xc0\xe7\xed\xa0\xf0\xf4\xf5\xff";
    if (t->len == 0)
        return;
    size_t at = (size_t)rand_r(seed) % t->len;
    char c = bytes[rand_r(seed) % (sizeof bytes - 1)];
    switch (rand_r(seed) % 4) {
    case 0:
        t->buf[at] = c;
        break;
    case 1:
        memmove(t->buf + at, t->buf + at + 1, t->len - at - 1);
        t->len--;
        break;
    case 2:
        if (t->len + 1 < sizeof t->buf) {
            memmove(t->buf + at + 1, t->buf + at, t->len - at);
            t->buf[at] = c;
            t->len++;
        }
        break;
    default:
        t->len = at;
    }
}

static void test_random_texts(void **state)
{
    (void)state;
    unsigned seed = test_seed("test_jsonr");
    int counts[2] = {0, 0};
    for (int i = 0; i < 30000; i++) {
        text t = {.len = 0};
        bool any = rand_r(&seed) % 4 == 0;
        value(&t, &seed, 0);
        for (int m = rand_r(&seed) % 4 == 0 ? 1 + rand_r(&seed) % 3 : 0; m > 0; m--)
            mutate(&t, &seed);
        jf_json_read_error e;
        size_t flags =
            (any ? JSON_DECODE_ANY : 0) | (rand_r(&seed) % 2 ? JSON_REJECT_DUPLICATES : 0);
        json_t *v = compare(t.buf, t.len, flags, &e);
        counts[v != NULL]++;
        json_decref(v);
    }
    printf("test_jsonr: %d texts accepted by both, %d refused by both\n", counts[1], counts[0]);
    /* Both kinds in numbers: a generator that made only one would test little. */
    assert_true(counts[0] > 3000 && counts[1] > 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),      cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_structure),    cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_depth),        cmocka_unit_test(test_fault_place),
        cmocka_unit_test(test_random_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
