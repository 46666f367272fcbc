/*
 * Checked points arithmetic and named rounding.
 *
 * Points live in int64 but must stay within ±JF_POINTS_MAX so JavaScript
 * clients hold them exactly.  Every addition that can grow a balance goes
 * through jf_points_add_checked; every division names its rounding in the
 * function name (Redis checks overflow before INCRBY; TigerBeetle returns
 * overflow as a result instead of wrapping).
 */
#ifndef JF_ARITH_H
#define JF_ARITH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jifen/limits.h"

/* True when |v| <= JF_POINTS_MAX. */
static inline bool jf_points_in_range(int64_t v)
{
    return v >= -JF_POINTS_MAX && v <= JF_POINTS_MAX;
}

/* *out = a + b.  Returns false (and leaves *out alone) when the sum leaves
 * ±JF_POINTS_MAX or int64. */
static inline bool jf_points_add_checked(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r) || !jf_points_in_range(r))
        return false;
    *out = r;
    return true;
}

/* *out = a - b, with the same checks as jf_points_add_checked. */
static inline bool jf_points_sub_checked(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r) || !jf_points_in_range(r))
        return false;
    *out = r;
    return true;
}

/* *out = floor(amount * num / den) for amount >= 0, num >= 0, den >= 1.
 * Computed in 128 bits so the product cannot overflow; returns false when the
 * result leaves the points range or an argument is out of its domain. */
static inline bool jf_rate_apply_floor(int64_t amount, int64_t num, int64_t den, int64_t *out)
{
    if (amount < 0 || num < 0 || den < 1)
        return false;
    __int128 r = ((__int128)amount * num) / den;
    if (r > JF_POINTS_MAX)
        return false;
    *out = (int64_t)r;
    return true;
}

/* *out = ceil(amount * num / den), same domain as jf_rate_apply_floor. */
static inline bool jf_rate_apply_ceil(int64_t amount, int64_t num, int64_t den, int64_t *out)
{
    if (amount < 0 || num < 0 || den < 1)
        return false;
    __int128 p = (__int128)amount * num;
    __int128 r = p / den + (p % den != 0);
    if (r > JF_POINTS_MAX)
        return false;
    *out = (int64_t)r;
    return true;
}

/* *out = amount * num / den rounded half up (half away from zero for these
 * non-negative operands), same domain as jf_rate_apply_floor. */
static inline bool jf_rate_apply_round(int64_t amount, int64_t num, int64_t den, int64_t *out)
{
    if (amount < 0 || num < 0 || den < 1)
        return false;
    __int128 p = (__int128)amount * num;
    __int128 r = p / den + (2 * (p % den) >= den);
    if (r > JF_POINTS_MAX)
        return false;
    *out = (int64_t)r;
    return true;
}

/* Smaller of two int64 values. */
static inline int64_t jf_min_i64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Room for any int64 in decimal: 19 digits and a sign. */
#define JF_I64_DEC_MAX 20

/* v in decimal as "%lld" writes it, into out (no terminator); returns the
 * length.  For hot paths that format integers per write (the chain hash,
 * reply JSON): snprintf costs several times this. */
static inline size_t jf_i64_dec(int64_t v, char out[JF_I64_DEC_MAX])
{
    char tmp[JF_I64_DEC_MAX];
    size_t i = sizeof(tmp);
    /* Negated as unsigned so that INT64_MIN has a magnitude. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    size_t n = sizeof(tmp) - i;
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[i + k];
    return n;
}

#endif
