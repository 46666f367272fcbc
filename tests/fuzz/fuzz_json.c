/*
 * Fuzzes the JSON reader every request body and every stored text goes
 * through (src/core/jsonr.c) against the parser it stands in for, jansson's
 * json_loadb.  The input's first byte picks the flags (bit 0
 * JSON_REJECT_DUPLICATES, bit 1 JSON_DECODE_ANY), the rest is the text.
 * Besides the sanitizers: both accept the same text and build equal trees
 * (json_equal tells an integer from a real); a refusal names a duplicate key
 * or an integer out of range as jansson does (the API answers them apart);
 * the depth reported is the tree's own; a refusal has a place inside the
 * text.  The differences on purpose are those of jsonr.c's preamble and
 * tests/unit/test_jsonr.c: nesting deeper than JF_JSON_DECODE_DEPTH_MAX, and
 * a NUL byte outside a string, which jansson 2.14 sometimes skips.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    jf_json_init();
    return 0;
}

static void fail(const char *what, const uint8_t *text, size_t len)
{
    fprintf(stderr, "fuzz_json: %s: \"", what);
    for (size_t i = 0; i < len; i++)
        fprintf(stderr, text[i] >= 0x20 && text[i] < 0x7f ? "%c" : "\\x%02x", text[i]);
    fprintf(stderr, "\"\n");
    abort();
}

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

/* The nesting of v's deepest container (0 for a scalar). */
static int depth_of(json_t *v)
{
    int max = 0;
    const char *k;
    size_t i;
    json_t *c;
    if (json_is_object(v)) {
        json_object_foreach(v, k, c)
        {
            int d = depth_of(c);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, c)
        {
            int d = depth_of(c);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t flags = (data[0] & 1 ? JSON_REJECT_DUPLICATES : 0) | (data[0] & 2 ? JSON_DECODE_ANY : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    jf_json_read_error e;
    json_error_t je;
    int depth = -1;
    json_t *ours = jf_json_read(text, len, flags, &depth, &e);
    json_t *theirs = json_loadb(text, len, flags, &je);
    bool skip = ours == NULL && (e.fault == JF_JSON_FAULT_DEPTH || memchr(text, '\0', len));
    if (ours == NULL && (e.fault == JF_JSON_FAULT_NONE || e.at > len || e.line < 1))
        fail("a refusal without a fault or a place", data, size);
    if (ours != NULL && (e.fault != JF_JSON_FAULT_NONE || depth != depth_of(ours)))
        fail("an accepted text with a fault or the wrong depth", data, size);
    if (!skip && (ours == NULL) != (theirs == NULL))
        fail(ours ? "accepted what jansson refuses" : "refused what jansson accepts", data, size);
    if (ours && theirs && !json_equal(ours, theirs))
        fail("a tree unlike jansson's", data, size);
    if (!skip && ours == NULL && e.fault != JF_JSON_FAULT_NOMEM &&
        ((e.fault == JF_JSON_FAULT_DUPLICATE) != jansson_duplicate(&je) ||
         (e.fault == JF_JSON_FAULT_TOO_BIG) != jansson_too_big(&je)))
        fail("a fault named unlike jansson's", data, size);
    json_decref(ours);
    json_decref(theirs);
    return 0;
}
