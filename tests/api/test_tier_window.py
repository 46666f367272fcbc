"""A seeded random test of the tier window's sums (docs/TIERS.md), which since
schema version 11 are read from each member's transaction entries in
member_state: growth, spend (order amounts net of refunds) and orders over a
rolling window, checked after every step against an oracle kept here from
what each request did and when.

Three members; each step is one of: an earn with explicit growth, an order
earn with an amount, an order earn without one, a partial refund of an
earlier order, a transfer between two members (which moves no growth, spend
or orders for either), or a move of the test clock by up to 36 hours or 5 to 40 days, so
that earlier transactions leave the 3-month window.  The oracle takes each
transaction's growth from the change of the member's lifetime growth (the
account's balance, a sum the window does not use), and its time from the
test clock; the window's start is the view's own (`window.from`), so this
checks the sums, not the calendar.  The seed is printed and replays the run:
SEED=... python3 tests/api/test_tier_window.py
"""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402
from test_tiers import TierTestCase  # noqa: E402  (a fresh server, the clock at T0)

STEPS = 300
# Thresholds out of reach: the sums are under test, not the tier moves.
TIERS = {"basis": "growth", "window": {"type": "rolling_months", "months": 3},
         "tiers": [{"code": "silver", "name": "Silver", "name_zh": "银卡", "threshold": 0},
                   {"code": "gold", "name": "Gold", "name_zh": "金卡", "threshold": 10 ** 9,
                    "spend_threshold": 10 ** 12, "orders_threshold": 10 ** 6}]}


class TierWindowModelTests(TierTestCase):
    def setUp(self):
        super().setUp()
        self.put_tiers(TIERS)

    def lifetime(self, m):
        return self.view(m)["growth"]["lifetime"]

    def test_random_steps_against_an_oracle(self):
        seed = H.seed_for("test_random_steps_against_an_oracle")
        rnd = random.Random(seed)
        members = [H.create_member(self.c)["id"] for _ in range(3)]
        # Per member: [(time, growth, spend, orders)] of each transaction.
        events = {m: [] for m in members}
        orders = []  # (order id, member, amount left to refund)
        for step in range(STEPS):
            kind = rnd.choice(["growth", "order", "order", "no_amount", "refund", "transfer",
                               "clock", "clock"])
            m = rnd.choice(members)
            now = H.clock_now(self.c)
            what = "step %d (seed %d): %s" % (step, seed, kind)
            if kind == "clock":
                # Mostly hours, so that checks come often near where an
                # earlier transaction leaves the window; now and then weeks.
                hours = rnd.randint(0, 36) if rnd.random() < 0.7 else rnd.randint(120, 960)
                H.clock_set(self.c, now + hours * 3600 * 1000 + rnd.randint(0, 999))
                continue
            before = {x: self.lifetime(x) for x in members}
            spend, count = 0, 0
            if kind == "growth":
                g = rnd.randint(1, 60)
                H.check_ok(H.earn(self.c, m, rnd.randint(1, 30), growth=g), 201, what)
            elif kind in ("order", "no_amount"):
                oid = "o-%d-%d" % (seed % 10 ** 6, step)
                order = {"id": oid}
                count = 1
                if kind == "order":
                    spend = rnd.randint(100, 20000)
                    order.update(amount=spend, currency="CNY")
                    orders.append([oid, m, spend])
                r = H.earn(self.c, m, None if kind == "order" else 5, order=order)
                H.check_ok(r, 201, what)
            elif kind == "refund":
                open_orders = [o for o in orders if o[2] > 0]
                if not open_orders:
                    continue
                o = rnd.choice(open_orders)
                m, amount = o[1], rnd.randint(1, o[2])
                r = self.c.post("/v1/orders/%s/refund" % o[0], {"amount": amount}, idem=True)
                if r.status != 201:
                    # Its clawback needs points the member has transferred
                    # away (no debt room): refused, and nothing changes.
                    self.assertEqual(r.code, "insufficient_points", what)
                    self.assertEqual({x: self.lifetime(x) for x in members}, before,
                                     what + ": a refused refund changed growth")
                    continue
                o[2] -= amount
                spend = -amount
            else:
                to = rnd.choice([x for x in members if x != m])
                r = self.c.post("/v1/members/%s/transfer" % m,
                                {"to_member_id": to, "points": 1}, idem=True)
                if r.status != 201:  # no points to give yet
                    self.assertEqual(r.code, "insufficient_points", what)
                    continue
            after = {x: self.lifetime(x) for x in members}
            for x in members:
                if x != m:
                    self.assertEqual(after[x], before[x], what + ": another member's growth")
            events[m].append((now, after[m] - before[m], spend, count))
            for x in members:
                self.check_member(x, events[x], what)

    def check_member(self, m, evs, what):
        v = self.view(m)
        start = H.parse_time(v["window"]["from"])
        end = H.parse_time(v["window"]["to"])
        inside = [e for e in evs if start <= e[0] <= end]
        growth = sum(e[1] for e in inside)
        spend = sum(e[2] for e in inside)
        want = (max(growth, 0), max(spend, 0), sum(e[3] for e in inside))
        got = (v["growth"]["window"], v["spend"], v["orders"])
        self.assertEqual(got, want, "%s: member %s, window %s..%s, %d of %d transactions in it"
                         % (what, m, v["window"]["from"], v["window"]["to"], len(inside),
                            len(evs)))


if __name__ == "__main__":
    unittest.main()
