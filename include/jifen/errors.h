/*
 * The one error table of jifen.
 *
 * Every failure the library can report is one row of JF_ERRNO_MAP: the enum
 * name, the stable snake_case code integrators match on, an English message,
 * and the HTTP status the server answers with.  Business outcomes
 * (insufficient_points) are separate rows from system failures (io_error,
 * out_of_memory), as TigerBeetle separates its result codes.  The codes are a
 * public contract: a row may be added, never renamed or removed.
 * tests/unit/test_errors.c walks the table.
 */
#ifndef JIFEN_ERRORS_H
#define JIFEN_ERRORS_H

/* X(ENUM, "code", "message", http_status) */
#define JF_ERRNO_MAP(X)                                                                            \
    X(OK, "ok", "Success.", 200)                                                                   \
    X(INVALID_REQUEST, "invalid_request", "The request is malformed or a value is out of range.",  \
      400)                                                                                         \
    X(INVALID_JSON, "invalid_json", "The body is not valid JSON.", 400)                            \
    X(UNKNOWN_FIELD, "unknown_field", "The body has a field this endpoint does not accept.", 400)  \
    X(DUPLICATE_FIELD, "duplicate_field", "The body repeats a field.", 400)                        \
    X(MISSING_FIELD, "missing_field", "A required field is missing.", 400)                         \
    X(INVALID_FIELD, "invalid_field", "A field has the wrong type or an invalid value.", 400)      \
    X(AMOUNT_OUT_OF_RANGE, "amount_out_of_range",                                                  \
      "An amount is outside the allowed range (|n| <= 9007199254740991).", 400)                    \
    X(INVALID_CURSOR, "invalid_cursor", "The pagination cursor is not valid.", 400)                \
    X(IDEMPOTENCY_KEY_REQUIRED, "idempotency_key_required",                                        \
      "This request changes points and needs an Idempotency-Key header.", 400)                     \
    X(INVALID_IDEMPOTENCY_KEY, "invalid_idempotency_key",                                          \
      "The Idempotency-Key must be 1 to 128 printable ASCII characters.", 400)                     \
    X(UNAUTHORIZED, "unauthorized", "A valid API key is required.", 401)                           \
    X(FORBIDDEN, "forbidden", "This API key's role may not do this.", 403)                         \
    X(NOT_FOUND, "not_found", "No such object.", 404)                                              \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", "This method is not allowed on this path.", 405)   \
    X(MEMBER_EXISTS, "member_exists", "A member with this external_id already exists.", 409)       \
    X(IDEMPOTENCY_KEY_IN_FLIGHT, "idempotency_key_in_flight",                                      \
      "A request with this Idempotency-Key is still being processed.", 409)                        \
    X(ORDER_ALREADY_EARNED, "order_already_earned", "Points were already earned for this order.",  \
      409)                                                                                         \
    X(PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is too large.", 413)               \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "The body must be application/json.", 415) \
    X(INSUFFICIENT_POINTS, "insufficient_points", "The member does not have enough points.", 422)  \
    X(MEMBER_FROZEN, "member_frozen", "The member is frozen and can neither earn nor spend.", 422) \
    X(MEMBER_CLOSED, "member_closed", "The member's account is closed.", 422)                      \
    X(IDEMPOTENCY_KEY_REUSED, "idempotency_key_reused",                                            \
      "This Idempotency-Key was used with a different request.", 422)                              \
    X(REVERSAL_EXCEEDS_ORIGINAL, "reversal_exceeds_original",                                      \
      "The reversal is larger than what remains reversible.", 422)                                 \
    X(NOT_REVERSIBLE, "not_reversible", "This type of transaction cannot be reversed.", 422)       \
    X(HOLD_NOT_OPEN, "hold_not_open", "The hold is already captured, voided or expired.", 422)     \
    X(CAPTURE_EXCEEDS_HOLD, "capture_exceeds_hold", "The capture is larger than the hold.", 422)   \
    X(SAME_MEMBER, "same_member", "A transfer needs two different members.", 422)                  \
    X(ADJUSTMENT_CAP_EXCEEDED, "adjustment_cap_exceeded",                                          \
      "The adjustment is larger than this role may make.", 422)                                    \
    X(CURRENCY_MISMATCH, "currency_mismatch", "The order's currency is not the program's.", 422)   \
    X(POINTS_OVERFLOW, "points_overflow", "The result would exceed the points range.", 422)        \
    X(UNKNOWN_TIMEZONE, "unknown_timezone", "The time zone is not a known IANA name.", 422)        \
    X(TEST_CLOCK_BACKWARDS, "test_clock_backwards", "The test clock cannot move backwards.", 422)  \
    X(REFUND_EXCEEDS_ORDER, "refund_exceeds_order",                                                \
      "The refund exceeds what remains refundable of the order.", 422)                             \
    X(ALREADY_CHECKED_IN, "already_checked_in",                                                    \
      "The member has already checked in today (program time zone).", 409)                         \
    X(TIER_IN_USE, "tier_in_use", "Members hold a tier this change would remove.", 409)            \
    X(UNKNOWN_TIER, "unknown_tier", "The program has no tier with this code.", 422)                \
    X(INVALID_REFERRAL_CODE, "invalid_referral_code", "No member has this referral code.", 422)    \
    X(RATE_LIMITED, "rate_limited", "Too many requests queued; retry shortly.", 429)               \
    X(INTERNAL, "internal_error", "An internal error occurred.", 500)                              \
    X(IO, "io_error", "The store failed to read or write.", 500)                                   \
    X(NOMEM, "out_of_memory", "Out of memory.", 503)                                               \
    X(SHUTTING_DOWN, "shutting_down", "The server is shutting down.", 503)                         \
    X(CORRUPT, "store_corrupt", "The store failed an integrity check.", 500)

typedef enum jf_err {
#define JF__ERR_ENUM(name, code, msg, status) JF_ERR_##name,
    JF_ERRNO_MAP(JF__ERR_ENUM)
#undef JF__ERR_ENUM
        JF_ERR__COUNT
} jf_err;

#define JF_OK JF_ERR_OK

/* The stable snake_case code of err, e.g. "insufficient_points".  Never NULL:
 * an out-of-range value yields "internal_error". */
const char *jf_err_code(jf_err err);

/* The English message of err.  Never NULL. */
const char *jf_err_message(jf_err err);

/* The HTTP status the server answers err with (200 for JF_OK). */
int jf_err_http_status(jf_err err);

#endif
