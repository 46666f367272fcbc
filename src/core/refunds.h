/*
 * Order refunds (docs/RULES.md, Refunds): the arithmetic that decides how
 * many points a refund claws back and returns, and the operations behind
 * POST /v1/orders/{order_id}/refund and GET /v1/orders/{order_id}.
 *
 * Invariants, stated first because everything below serves them:
 *   R1  Σ refunded amounts of an order never exceed the order's amount.
 *   R2  Σ clawbacks of an order's refunds never exceed what the order
 *       earned; once the whole order is refunded they equal it exactly.
 *   R3  Σ points returned never exceed the points that paid for the order;
 *       once the whole order is refunded they equal them exactly.
 *   R4  after any sequence of refunds the member keeps at most the exact
 *       proportional share of the earn on the part not refunded, and gets
 *       back at most the exact proportional share of the points paid on the
 *       part refunded: a buy–earn–refund cycle never gains a point.
 * Both targets are computed on *cumulative* refunded amounts and each
 * refund takes the difference from what earlier refunds took, so rounding
 * never accumulates over many partial refunds and the last one settles
 * exactly.  The clawback rounds up (ceil) and the return rounds down
 * (floor): each errs by less than one point against the member until the
 * final refund, never for ever.
 */
#ifndef JF_REFUNDS_H
#define JF_REFUNDS_H

#include "core.h"

/* Splits total into out[0..n) proportionally to weights w (all >= 0) by the
 * largest-remainder method: out[i] = floor(total * w[i] / Σw), then the
 * points left go one each to the largest remainders (the earlier line on a
 * tie).  Σ out = total exactly and out[i] <= ceil(total * w[i] / Σw).  When
 * Σw = 0 everything goes to out[0].  Returns false when n is 0 or above
 * JF_ORDER_LINES_MAX, total is negative or a weight is out of range.
 * Pure. */
bool jf_split_largest_remainder(int64_t total, const int64_t *w, size_t n, int64_t *out);

/* One line of an earned order as refunds see it. */
typedef struct jf_refund_line {
    int64_t amount;   /* the line's amount (minor units) */
    int64_t points;   /* the earn's points attributed to the line */
    int64_t refunded; /* cumulative refunded amount of the line, <= amount */
} jf_refund_line;

/* The cumulative clawback after refunds up to lines[].refunded:
 * Σ ceil(points * refunded / amount) over lines with an amount, at most
 * earned; exactly earned when every line is fully refunded (so points on a
 * zero-amount line come back with the last refund).  False on overflow or
 * refunded outside [0, amount].  Pure. */
bool jf_refund_clawback_target_ceil(const jf_refund_line *lines, size_t n, int64_t earned,
                                    int64_t *out);

/* The cumulative points returned after refunding `refunded` of an order of
 * `order_amount` that `paid` points paid for: floor(paid * refunded /
 * order_amount), exactly paid when refunded = order_amount.  False on a
 * domain error.  Pure. */
bool jf_refund_return_target_floor(int64_t paid, int64_t order_amount, int64_t refunded,
                                   int64_t *out);

/* The lines of an earned order with the points attributed to each (the
 * awards split over lines by jf_rule_line_weights, or `points` over the
 * line amounts when no rule ran), as the JSON text the earn's transaction
 * row keeps (schema.c, version 24): an array of [sku, amount, quantity,
 * points].  *text is malloc'd, the caller's; NULL for an order without
 * lines.  Called by the earn on the writer, before its transaction is
 * committed.  Returns out_of_memory when the text cannot be made. */
struct jf_award;
jf_err jf_order_lines_text(jf_ctx *ctx, const struct jf_award *awards, size_t count, bool ruled,
                           int64_t points, char **text);

extern const jf_op_impl jf_op_order_refund, jf_op_order_get;

#endif
