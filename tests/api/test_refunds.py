"""Order refunds over HTTP (docs/RULES.md, Refunds): POST /v1/orders/{id}/refund
claws back exactly what the refunded part earned (per line, or proportionally
with ceil) and returns the points that paid for it (floor, cumulative), never
more than the order; random buy-earn-refund sequences never gain a point;
debt floor; idempotent replays; `jifen verify` stays clean.
Run: python3 tests/api/test_refunds.py"""

import os
import random
import sys
from fractions import Fraction
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

RATE = {"name": "1 point per yuan", "trigger": "purchase", "priority": 100,
        "effect": {"type": "rate", "points": 1, "per_amount": 100}}
TEA_BONUS = {"name": "tea bonus", "trigger": "purchase", "priority": 10,
             "effect": {"type": "sku_bonus", "bonuses": [{"sku": "TEA", "points": 5}]}}


def refund(c, oid, body, idem=True, status=201):
    r = c.post("/v1/orders/%s/refund" % oid, body, idem=idem)
    return H.check_ok(r, status, "refund %s %r" % (oid, body))


def archive_all(c):
    for r in H.check_ok(c.get("/v1/rules"), 200, "rules")["data"]:
        H.check_ok(c.post("/v1/rules/%s/archive" % r["id"]), 200, "archive")


def available(c, mid):
    return H.points_of(c, mid)["available"]


class RefundTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        archive_all(self.c)
        self.m = H.create_member(self.c)["id"]

    def tearDown(self):
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def assertProblem(self, r, status, code, part=None):
        self.assertEqual((r.status, r.body.get("code")), (status, code), r)
        if part:
            self.assertIn(part, r.body.get("detail", ""), r)

    def test_amount_refund_base_rate_ceil_and_exact_remainder(self):
        # ¥105.50 earns 105 at the base rate (1 per 100, floor).
        H.check_ok(H.earn(self.c, self.m, order={"id": "A1", "amount": 10550,
                                                 "currency": "CNY"}), 201, "earn")
        b = refund(self.c, "A1", {"amount": 50})
        # ceil(105 * 50 / 10550) = 1: the member keeps floor(105 * 10500 / 10550) = 104.
        self.assertEqual(b["refund"]["clawback_points"], 1)
        self.assertEqual(b["transaction"]["type"], "reverse")
        self.assertEqual(b["points"]["available"], 104)
        b = refund(self.c, "A1", {"amount": 5000})
        self.assertEqual(b["refund"]["clawback_points"], 50)  # ceil(105*5050/10550)=51, minus 1
        b = refund(self.c, "A1", {"amount": 5500})
        self.assertEqual(b["refund"]["clawback_points"], 54)  # the exact remainder
        self.assertEqual(available(self.c, self.m), 0)
        o = H.check_ok(self.c.get("/v1/orders/A1"), 200, "order")
        self.assertEqual((o["refunded_amount"], o["clawback_points"], len(o["refunds"])),
                         (10550, 105, 3))
        self.assertProblem(self.c.post("/v1/orders/A1/refund", {"amount": 1}, idem=True),
                           422, "refund_exceeds_order")

    def test_errors(self):
        self.assertProblem(self.c.post("/v1/orders/nope/refund", {"amount": 1}, idem=True),
                           404, "not_found")
        self.assertEqual(self.c.get("/v1/orders/nope").status, 404)
        self.assertProblem(self.c.post("/v1/orders/x/refund", {"amount": 1}, idem=None),
                           400, "idempotency_key_required")
        self.assertProblem(self.c.post("/v1/orders/x/refund", {}, idem=True),
                           400, "missing_field")
        self.assertProblem(self.c.post("/v1/orders/x/refund", {"amount": 1, "lines": []},
                                       idem=True), 400, "missing_field")
        self.assertProblem(self.c.post("/v1/orders/x/refund", {"amount": 0}, idem=True),
                           400, "invalid_field")
        H.check_ok(H.earn(self.c, self.m, order={"id": "E1", "amount": 1000,
                                                 "currency": "CNY"}), 201, "earn")
        self.assertProblem(self.c.post("/v1/orders/E1/refund", {"amount": 1001}, idem=True),
                           422, "refund_exceeds_order")
        self.assertProblem(self.c.post("/v1/orders/E1/refund",
                                       {"lines": [{"sku": "A", "amount": 1}]}, idem=True),
                           400, "invalid_field", "without lines")
        _, ro = self.env.key("readonly")
        self.assertProblem(ro.post("/v1/orders/E1/refund", {"amount": 1}, idem=True),
                           403, "forbidden")
        _, pos = self.env.key("pos")
        refund(pos, "E1", {"amount": 1000})
        # Another tenant cannot see or refund the order.
        self.assertEqual(self.env.admin2.get("/v1/orders/E1").status, 404)

    def test_malformed_refunds_change_nothing(self):
        # Each malformed body is a 400 with a stable code, on an order that exists, and the
        # order and the member are as before; the same order then refunds normally.
        H.check_ok(H.earn(self.c, self.m, order={"id": "V1", "amount": 10000, "currency": "CNY",
                                                 "lines": [{"sku": "A", "amount": 10000}]}),
                   201, "earn")
        before = H.check_ok(self.c.get("/v1/orders/V1"), 200, "order")
        line = {"sku": "A", "amount": 1}
        money_max = 2 ** 53 - 1
        cases = [
            ({"lines": line}, "invalid_field"),
            ({"lines": []}, "invalid_field"),
            ({"lines": [line] * 501}, "invalid_field"),
            ({"lines": ["A"]}, "invalid_field"),
            ({"lines": [dict(line, colour="red")]}, "unknown_field"),
            ({"lines": [{"amount": 1}]}, "missing_field"),
            ({"lines": [{"sku": "A"}]}, "missing_field"),
            ({"lines": [{"sku": 7, "amount": 1}]}, "invalid_field"),
            ({"lines": [{"sku": "S" * 65, "amount": 1}]}, "invalid_field"),
            ({"lines": [dict(line, amount=0)]}, "invalid_field"),
            ({"lines": [dict(line, amount=money_max + 1)]}, "amount_out_of_range"),
            ({"lines": [dict(line, quantity=0)]}, "invalid_field"),
            ({"lines": [dict(line, amount=money_max), dict(line, amount=1)]},
             "amount_out_of_range"),
            ({"amount": "10"}, "invalid_field"),
            ({"amount": money_max + 1}, "amount_out_of_range"),
            ({"amount": 1, "colour": "red"}, "unknown_field"),
        ]
        for body, code in cases:
            r = self.c.post("/v1/orders/V1/refund", body, idem=True)
            self.assertEqual((r.status, r.body.get("code")), (400, code), (body, r))
        r = self.c.post("/v1/orders/%s/refund" % ("O" * 129), {"amount": 1}, idem=True)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(H.check_ok(self.c.get("/v1/orders/V1"), 200, "order"), before)
        self.assertEqual(available(self.c, self.m), 100)
        b = refund(self.c, "V1", {"lines": [{"sku": "A", "amount": 5000}]})
        self.assertEqual(b["points"]["available"], 50)

    def test_lines_claw_back_what_each_line_earned(self):
        H.check_ok(self.c.post("/v1/rules", RATE), 201, "rate")
        H.check_ok(self.c.post("/v1/rules", TEA_BONUS), 201, "tea")
        lines = [{"sku": "TEA", "amount": 3000, "quantity": 2},
                 {"sku": "GC", "amount": 10000, "gift_card": True},
                 {"sku": "CAKE", "amount": 6050}]
        b = H.check_ok(H.earn(self.c, self.m, order={"id": "L1", "amount": 19050,
                                                      "currency": "CNY", "lines": lines}),
                       201, "earn")
        self.assertEqual(b["transaction"]["points"], 90 + 10)  # 90 rate + 2 x 5 TEA
        o = H.check_ok(self.c.get("/v1/orders/L1"), 200, "order")
        # Rate 90 over TEA 3000 / CAKE 6050 -> 30 / 60; the gift card earned nothing.
        self.assertEqual([ln["points"] for ln in o["lines"]], [40, 0, 60])
        # Refunding the gift card claws back nothing; half the tea claws back 20.
        self.assertEqual(refund(self.c, "L1", {"lines": [{"sku": "GC", "amount": 10000}]})
                         ["refund"]["clawback_points"], 0)
        b = refund(self.c, "L1", {"lines": [{"sku": "TEA", "amount": 1500, "quantity": 1}]})
        self.assertEqual(b["refund"]["clawback_points"], 20)
        self.assertEqual(b["refund"]["lines"], [{"line": 0, "sku": "TEA", "amount": 1500,
                                                 "quantity": 1}])
        self.assertProblem(self.c.post("/v1/orders/L1/refund",
                                       {"lines": [{"sku": "TEA", "amount": 1501}]}, idem=True),
                           422, "refund_exceeds_order", "TEA")
        b = refund(self.c, "L1", {"amount": 1500 + 6050})
        self.assertEqual(b["refund"]["clawback_points"], 80)
        self.assertEqual(available(self.c, self.m), 0)

    def test_explicit_points_with_lines_and_no_amount(self):
        """An earn of explicit points may send an order's lines and currency without its
        amount: the points are split over the lines by their amounts, and `jifen verify`
        (the tearDown) stays clean, the order's stored amount being 0."""
        b = H.check_ok(H.earn(self.c, self.m, points=7, order={
            "id": "PL", "currency": "CNY",
            "lines": [{"sku": "A", "amount": 300}, {"sku": "B", "amount": 400}]}), 201, "earn")
        self.assertEqual(b["transaction"]["points"], 7)
        o = H.check_ok(self.c.get("/v1/orders/PL"), 200, "order")
        self.assertEqual([ln["points"] for ln in o["lines"]], [3, 4])

    def test_points_paid_are_returned_floor_and_settle_exactly(self):
        H.check_ok(H.earn(self.c, self.m, points=1000), 201, "seed points")
        H.check_ok(H.redeem(self.c, self.m, 333, order={"id": "P1"}), 201, "redeem")
        H.check_ok(H.earn(self.c, self.m, order={"id": "P1", "amount": 1000,
                                                 "currency": "CNY"}), 201, "earn")
        # Earned 10; paid 333.  A third refunded: claw ceil(10/3)=4, return floor(333/3)=111.
        b = refund(self.c, "P1", {"amount": 333})
        self.assertEqual((b["refund"]["clawback_points"], b["refund"]["returned_points"]),
                         (4, 110))  # floor(333 * 333 / 1000) = 110
        self.assertEqual(sorted(t["kind"] for t in b["refund"]["transactions"]),
                         ["clawback", "return"])
        b = refund(self.c, "P1", {"amount": 667})
        self.assertEqual((b["refund"]["clawback_points"], b["refund"]["returned_points"]),
                         (6, 223))
        self.assertEqual(available(self.c, self.m), 1000)
        # A hold captured for an order is returned the same way.
        r = H.check_ok(self.c.post("/v1/members/%s/holds" % self.m,
                                   {"points": 200, "order": {"id": "P2"}}, idem=True), 201, "h")
        H.check_ok(self.c.post("/v1/holds/%s/capture" % r["hold"]["id"], {"points": 150},
                               idem=True), 201, "capture")
        H.check_ok(H.earn(self.c, self.m, points=7, order={"id": "P2", "amount": 700,
                                                           "currency": "CNY"}), 201, "earn")
        b = refund(self.c, "P2", {"amount": 700})
        self.assertEqual((b["refund"]["clawback_points"], b["refund"]["returned_points"]),
                         (7, 150))
        self.assertEqual(available(self.c, self.m), 1000)

    def test_refund_after_spending_respects_the_debt_floor(self):
        H.check_ok(H.earn(self.c, self.m, order={"id": "D1", "amount": 10000,
                                                 "currency": "CNY"}), 201, "earn")
        H.check_ok(H.redeem(self.c, self.m, 100), 201, "spend all")
        self.assertProblem(self.c.post("/v1/orders/D1/refund", {"amount": 5000}, idem=True),
                           422, "insufficient_points")
        o = H.check_ok(self.c.get("/v1/orders/D1"), 200, "order")
        self.assertEqual((o["refunded_amount"], o["refunds"]), (0, []))
        H.program_patch(self.c, {"debt_floor": 60})
        b = refund(self.c, "D1", {"amount": 5000})
        self.assertEqual(b["refund"]["clawback_points"], 50)
        self.assertEqual(H.points_of(self.c, self.m)["balance"], -50)
        self.assertProblem(self.c.post("/v1/orders/D1/refund", {"amount": 5000}, idem=True),
                           422, "insufficient_points")

    def test_idempotent_replay(self):
        H.check_ok(H.earn(self.c, self.m, order={"id": "I1", "amount": 1000,
                                                 "currency": "CNY"}), 201, "earn")
        key = H.idem_key("refund")
        r1 = self.c.post("/v1/orders/I1/refund", {"amount": 500}, idem=key)
        r2 = self.c.post("/v1/orders/I1/refund", {"amount": 500}, idem=key)
        self.assertEqual((r1.status, r2.status), (201, 201))
        self.assertEqual(r1.raw, r2.raw)
        self.assertTrue(r2.replayed)
        self.assertProblem(self.c.post("/v1/orders/I1/refund", {"amount": 400}, idem=key),
                           422, "idempotency_key_reused")
        o = H.check_ok(self.c.get("/v1/orders/I1"), 200, "order")
        self.assertEqual((o["refunded_amount"], len(o["refunds"])), (500, 1))

    def test_random_buy_earn_refund_never_gains_a_point(self):
        seed = H.seed_for("refunds")
        rnd = random.Random(seed)
        H.check_ok(self.c.post("/v1/rules", dict(RATE, effect={
            "type": "rate", "points": 3, "per_amount": 700})), 201, "rate")
        H.check_ok(self.c.post("/v1/rules", TEA_BONUS), 201, "tea")
        H.check_ok(H.earn(self.c, self.m, points=100000), 201, "wallet")
        start = available(self.c, self.m)
        for k in range(12):
            oid = "R%d" % k
            skus = ["TEA", "CAKE", "GC", "PEN"]
            lines = [{"sku": rnd.choice(skus), "amount": rnd.randint(1, 9999),
                      "quantity": rnd.randint(1, 3)} for _ in range(rnd.randint(1, 4))]
            amount = sum(ln["amount"] for ln in lines)
            paid = rnd.choice([0, 0, rnd.randint(1, 500)])
            if paid:
                H.check_ok(H.redeem(self.c, self.m, paid, order={"id": oid}), 201, "pay")
            use_lines = rnd.random() < 0.6
            o = {"id": oid, "amount": amount, "currency": "CNY"}
            if use_lines:
                o["lines"] = lines
            e = H.check_ok(H.earn(self.c, self.m, order=o), 201, "earn")
            earned = e["transaction"]["points"]
            refunded = clawed = returned = 0
            while refunded < amount:
                if use_lines and rnd.random() < 0.5:
                    left = [ln["amount"] - ln["refunded_amount"] for ln in H.check_ok(
                        self.c.get("/v1/orders/%s" % oid), 200, "order")["lines"]]
                    sku = lines[rnd.choice([j for j, x in enumerate(left) if x > 0])]["sku"]
                    part = rnd.randint(1, sum(x for j, x in enumerate(left)
                                              if lines[j]["sku"] == sku))
                    body = {"lines": [{"sku": sku, "amount": part}]}
                else:
                    part = rnd.randint(1, amount - refunded)
                    body = {"amount": part}
                b = refund(self.c, oid, body)["refund"]
                refunded += part
                clawed += b["clawback_points"]
                returned += b["returned_points"]
                kept = earned - clawed
                what = "seed %d order %s" % (seed, oid)
                # The member keeps at most the exact share of what each line earned on
                # its part not refunded (the whole order is one line without lines),
                # and gets back exactly floor(the share of what paid for the part
                # refunded): never a point gained, less than one withheld until the end.
                o = H.check_ok(self.c.get("/v1/orders/%s" % oid), 200, "order")
                olines = o["lines"] or [{"amount": amount, "points": earned,
                                         "refunded_amount": refunded}]
                share = sum(Fraction(ln["points"] * (ln["amount"] - ln["refunded_amount"]),
                                     ln["amount"]) for ln in olines if ln["amount"])
                self.assertLessEqual(kept, share, what)
                self.assertLess(share - kept, len(olines), what)
                self.assertEqual(returned, paid * refunded // amount, what)
            self.assertEqual((clawed, returned), (earned, paid), "seed %d order %s" % (seed, oid))
            self.assertEqual(available(self.c, self.m), start, "seed %d order %s" % (seed, oid))


if __name__ == "__main__":
    unittest.main(verbosity=2)
