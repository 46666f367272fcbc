"""Earning rules over HTTP (docs/RULES.md): CRUD and versioning, validation
errors, earns from orders with lines, awards in the transaction, dry runs,
custom events, and limits that 64 concurrent requests cannot exceed.
Run: python3 tests/api/test_rules.py"""

import os
import sys
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

# 2027-01-06 is a Wednesday; 02:00Z is 10:00 in Asia/Shanghai (the default zone).
WED = H.parse_time("2027-01-06T02:00:00Z")
THU = WED + H.DAY_MS

RATE = {"name": "1 point per yuan", "trigger": "purchase", "priority": 100,
        "effect": {"type": "rate", "points": 1, "per_amount": 100,
                   "exclude_points_paid": True}}
DOUBLE_WED = {"name": "double Wednesday", "trigger": "purchase", "priority": 50,
              "conditions": {"days_of_week": [3]},
              "effect": {"type": "multiplier", "factor_num": 2, "factor_den": 1}}
TEA_BONUS = {"name": "tea bonus", "trigger": "purchase", "priority": 10,
             "effect": {"type": "sku_bonus", "bonuses": [{"sku": "TEA", "points": 5}]}}


def create_rule(c, body, status=201):
    return H.check_ok(c.post("/v1/rules", body), status, "create rule %r" % body)


def rule_ids(c):
    return [r["id"] for r in H.check_ok(c.get("/v1/rules"), 200, "rules")["data"]]


def archive_all(c):
    for rid in rule_ids(c):
        H.check_ok(c.post("/v1/rules/%s/archive" % rid), 200, "archive")


def order(oid, lines=None, **extra):
    o = {"id": oid, "currency": "CNY"}
    if lines is not None:
        o["lines"] = lines
        o["amount"] = sum(ln["amount"] for ln in lines)
    o.update(extra)
    return o


class RulesCrudTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin

    def assertProblem(self, r, status, code, detail_part=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.body.get("code"), code, r)
        if detail_part:
            self.assertIn(detail_part, r.body.get("detail", ""), r)

    def test_init_ships_sample_rules_as_drafts(self):
        rules = H.check_ok(self.c.get("/v1/rules"), 200, "list")["data"]
        self.assertEqual(len(rules), 6)
        self.assertTrue(all(r["status"] == "draft" for r in rules))
        self.assertEqual(sorted(r["trigger"] for r in rules),
                         ["check_in", "event", "purchase", "purchase", "purchase", "referral"])
        # Drafts change nothing: an order earns at the program's base rate.
        m = H.create_member(self.c)
        b = H.check_ok(H.earn(self.c, m["id"], order=order("o1", amount=12345)), 201, "earn")
        self.assertEqual(b["transaction"]["points"], 123)
        self.assertEqual(b["transaction"]["awards"], [])

    def test_create_get_update_archive_versions(self):
        r = create_rule(self.c, RATE)
        self.assertEqual(r["version"], 1)
        self.assertEqual(r["status"], "active")
        self.assertEqual(len(r["versions"]), 1)
        rid = r["id"]
        upd = dict(RATE, effect={"type": "rate", "points": 2, "per_amount": 100})
        r2 = H.check_ok(self.c.put("/v1/rules/%s" % rid, upd), 200, "put")
        self.assertEqual(r2["version"], 2)
        self.assertEqual(r2["effect"]["points"], 2)
        self.assertEqual([v["version"] for v in r2["versions"]], [2, 1])
        r3 = H.check_ok(self.c.post("/v1/rules/%s/archive" % rid), 200, "archive")
        self.assertEqual((r3["version"], r3["status"]), (3, "archived"))
        self.assertEqual(r3["effect"]["points"], 2)
        got = H.check_ok(self.c.get("/v1/rules/%s" % rid), 200, "get")
        self.assertEqual(got["version"], 3)
        active = H.check_ok(self.c.get("/v1/rules", params={"status": "active"}), 200, "l")
        self.assertNotIn(rid, [x["id"] for x in active["data"]])
        # Another tenant's rule is 404; roles below admin may read but not write.
        self.assertEqual(self.env.admin2.get("/v1/rules/%s" % rid).status, 404)
        _, pos = self.env.key("pos")
        self.assertEqual(pos.get("/v1/rules/%s" % rid).status, 200)
        self.assertProblem(pos.post("/v1/rules", RATE), 403, "forbidden")
        self.assertProblem(self.c.put("/v1/rules/rul_nope", RATE), 404, "not_found")

    def test_versions_listed_are_the_newest_hundred(self):
        # Every update adds a version; the answer lists the newest 100 only, so
        # that a rule updated for years does not cost more on each update.
        rid = create_rule(self.c, RATE)["id"]
        for n in range(2, 103):
            upd = dict(RATE, effect={"type": "rate", "points": 1 + n % 5, "per_amount": 100})
            r = H.check_ok(self.c.put("/v1/rules/%s" % rid, upd), 200, "put")
        self.assertEqual(r["version"], 102)
        got = H.check_ok(self.c.get("/v1/rules/%s" % rid), 200, "get")
        self.assertEqual([v["version"] for v in got["versions"]], list(range(102, 2, -1)))
        self.assertEqual(r["versions"], got["versions"])

    @staticmethod
    def more_invalid_rules():
        """Each refusal of the rule validator that the cases above do not reach."""
        checkin = {"name": "c", "trigger": "check_in", "effect": {"type": "check_in",
                                                                   "points": 5}}
        referral = {"name": "r", "trigger": "referral",
                    "effect": {"type": "referral", "on": "signup", "referrer_points": 100}}
        bonus = TEA_BONUS["effect"]

        def cond(c):
            return dict(RATE, conditions=c)

        return [
            ([RATE], "invalid_json", "JSON object"),
            (dict(RATE, description="d" * 17000), "invalid_field", "16384 bytes of JSON"),
            (cond([1]), "invalid_field", "'conditions' must be an object"),
            (cond({"hours": "09:00-12:00"}), "invalid_field", "must be an object"),
            (cond({"hours": {"from": "10:00", "to": "10:00"}}), "invalid_field", "not be empty"),
            (cond({"hours": {"from": "24:30", "to": "10:00"}}), "invalid_field", "HH:MM"),
            (cond({"dates": {}}), "invalid_field", "'conditions.dates' must be an object"),
            (cond({"dates": {"from": "2026-02-30"}}), "invalid_field", "YYYY-MM-DD"),
            (cond({"dates": {"from": "2026-12-01", "to": "2026-11-01"}}), "invalid_field",
             "after"),
            (cond({"days_of_week": []}), "invalid_field", "1 to 7 days"),
            (cond({"days_of_week": [1, 2, 3, 4, 5, 6, 7, 1]}), "invalid_field", "1 to 7 days"),
            (cond({"include": {}}), "invalid_field", "skus, categories or labels"),
            (cond({"exclude": ["TEA"]}), "invalid_field", "skus, categories or labels"),
            (cond({"include": {"skus": []}}), "invalid_field", "array of 1 to"),
            (cond({"include": {"skus": [""]}}), "invalid_field", "Each element"),
            (cond({"member_tags_any": ["vip", 3]}), "invalid_field", "Each element"),
            (cond({"purchase_number": {"first": True, "nth": 2}}), "invalid_field",
             "purchase_number"),
            (cond({"purchase_number": {"first": False}}), "invalid_field", "must be true"),
            (cond({"purchase_number": {"nth": 0}}), "invalid_field", "nth"),
            (cond({"birthday": "year"}), "invalid_field", "birthday"),
            (dict(checkin, conditions={"channels": ["pos"]}), "invalid_field",
             "purchase rules"),
            (dict(TEA_BONUS, effect=dict(bonus, bonuses={"sku": "TEA"})), "invalid_field",
             "'effect.bonuses' must be an array"),
            (dict(TEA_BONUS, effect=dict(bonus, bonuses=["TEA"])), "invalid_field",
             "holds objects"),
            (dict(TEA_BONUS, effect=dict(bonus, bonuses=[{"points": 5}])), "missing_field",
             "sku"),
            (dict(RATE, effect=dict(RATE["effect"], exclude_points_paid="yes")),
             "invalid_field", "exclude_points_paid"),
            (dict(RATE, effect={"type": "check_in", "points": 5}), "invalid_field",
             "Check-in rules"),
            (dict(checkin, effect={"type": "rate", "points": 1, "per_amount": 100}),
             "invalid_field", "Check-in rules"),
            (dict(checkin, effect={"type": "check_in", "points": 5, "streak_bonus": {}}),
             "invalid_field", "streak_bonus"),
            (dict(checkin, effect={"type": "check_in", "points": 5, "streak_bonus": [7]}),
             "invalid_field", "holds objects"),
            (dict(referral, trigger="purchase"), "invalid_field", "Referral rules"),
            (dict(RATE, trigger="referral"), "invalid_field", "Referral rules"),
            (dict(referral, effect={"type": "referral", "on": "login",
                                    "referrer_points": 1}), "invalid_field", "effect.on"),
            (dict(referral, effect={"type": "referral", "on": "signup"}), "missing_field",
             "referrer_points or referee_points"),
            (dict(RATE, trigger="signup"), "invalid_field", "'fixed' effect only"),
            (dict(DOUBLE_WED, effect=dict(DOUBLE_WED["effect"], rounding="up")),
             "invalid_field", "rounding"),
            (dict(RATE, effect={"type": "points"}), "invalid_field", "effect.type"),
            (dict(RATE, effect=None), "invalid_field", "'effect' must be an object"),
            (dict(RATE, limits=[]), "invalid_field", "'limits' must be an object"),
            (dict(RATE, limits={"per_member": 5}), "invalid_field", "must be an object"),
            (dict(RATE, event="survey"), "invalid_field", "only for trigger"),
            (dict(RATE, exclusive="yes"), "invalid_field", "exclusive"),
            (dict(RATE, starts_at="2027-01-02T00:00:00Z", ends_at="2027-01-01T00:00:00Z"),
             "invalid_field", "before"),
            (dict(RATE, growth=2), "invalid_field", "'growth' must be"),
            (dict(RATE, growth={"factor_num": 1, "fixed": 5}), "invalid_field", "either"),
            (dict(RATE, growth={}), "invalid_field", "either"),
            (dict(RATE, growth={"fixed": 5, "factor_den": 2}), "invalid_field",
             "goes with 'factor_num'"),
        ]

    def test_live_rules_per_trigger_are_bounded(self):
        # At most 64 active or draft rules of one trigger (limits.h JF_RULES_ACTIVE_MAX): the
        # 65th is refused until one is archived; other triggers are not affected.
        archive_all(self.c)
        ids = [create_rule(self.c, {"name": "e%d" % i, "trigger": "event", "event": "e%d" % i,
                                    "status": "draft" if i % 2 else "active",
                                    "effect": {"type": "fixed", "points": 1}})["id"]
               for i in range(64)]
        extra = {"name": "one more", "trigger": "event", "event": "x",
                 "effect": {"type": "fixed", "points": 1}}
        self.assertProblem(self.c.post("/v1/rules", extra), 400, "invalid_request",
                           "archive one first")
        create_rule(self.c, RATE)
        H.check_ok(self.c.post("/v1/rules/%s/archive" % ids[0]), 200, "archive")
        create_rule(self.c, extra)
        self.assertProblem(self.c.post("/v1/rules", extra), 400, "invalid_request",
                           "archive one first")

    def test_validation_errors_are_precise(self):
        cases = [
            (dict(RATE, colour="red"), "unknown_field", "colour"),
            ({"trigger": "purchase", "effect": RATE["effect"]}, "missing_field", "name"),
            (dict(RATE, trigger="birthday"), "invalid_field", "trigger"),
            (dict(RATE, effect={"type": "rate", "points": 1}), "missing_field", "per_amount"),
            (dict(RATE, effect={"type": "rate", "points": 1, "per_amount": 100,
                                "rounding": "up"}), "invalid_field", "rounding"),
            (dict(RATE, conditions={"hours": {"from": "9:00", "to": "12:00"}}),
             "invalid_field", "HH:MM"),
            (dict(RATE, conditions={"days_of_week": [0]}), "invalid_field", "days_of_week"),
            (dict(RATE, conditions={"amount_min": 500, "amount_max": 100}),
             "invalid_field", "amount_min"),
            (dict(RATE, conditions={"include": {"colours": ["x"]}}), "unknown_field",
             "colours"),
            ({"name": "e", "trigger": "event", "effect": {"type": "fixed", "points": 5}},
             "missing_field", "event"),
            ({"name": "e", "trigger": "event", "event": "x",
              "conditions": {"amount_min": 1}, "effect": {"type": "fixed", "points": 5}},
             "invalid_field", "purchase rules"),
            ({"name": "e", "trigger": "event", "event": "x",
              "effect": {"type": "rate", "points": 1, "per_amount": 1}},
             "invalid_field", "fixed"),
            (dict(DOUBLE_WED, effect={"type": "multiplier", "factor_num": 1}),
             "invalid_field", "factor"),
            (dict(RATE, limits={"per_member": {"period": "fortnight", "max_points": 1}}),
             "invalid_field", "period"),
            (dict(RATE, limits={"budget": {}}), "missing_field", "max_points"),
            (dict(RATE, status="paused"), "invalid_field", "status"),
        ] + self.more_invalid_rules()
        before = rule_ids(self.c)
        for body, code, part in cases:
            with self.subTest(body=body):
                self.assertProblem(self.c.post("/v1/rules", body), 400, code, part)
        self.assertEqual(rule_ids(self.c), before, "a refused rule was stored")
        m = H.create_member(self.c)
        bad = order("o1", [{"sku": "A", "amount": 100}], amount=99)
        self.assertProblem(H.earn(self.c, m["id"], order=bad), 400, "invalid_field", "sum")
        # Each field of a line, checked in one pass over its keys (rules.c, line_validate).
        line_cases = [
            ({"sku": "A", "amount": 1, "colour": "red"}, "unknown_field", "'colour'"),
            ({"sku": 5, "amount": 1}, "invalid_field", "'sku' must be a string"),
            ({"sku": "A" * 200, "amount": 1}, "invalid_field", "'sku' must be 1 to"),
            ({"category": "", "amount": 1}, "invalid_field", "'category' must be 1 to"),
            ({"labels": "x", "amount": 1}, "invalid_field", "'order.lines[].labels' must be"),
            ({"labels": [""], "amount": 1}, "invalid_field", "Each element of 'order.lines[]"),
            ({"sku": "A"}, "missing_field", "'amount' is required"),
            ({"amount": -1}, "invalid_field", "'amount' must be between"),
            ({"amount": 1, "quantity": 0}, "invalid_field", "'quantity' must be between"),
            ({"amount": 1, "quantity": "2"}, "invalid_field", "'quantity' must be an integer"),
            ({"amount": 1, "gift_card": 1}, "invalid_field", "must be booleans"),
            ({"amount": 1, "shipping": "yes"}, "invalid_field", "must be booleans"),
            ("line", "invalid_field", "must be an object"),
        ]
        for n, (line, code, part) in enumerate(line_cases):
            with self.subTest(line=line):
                body = {"id": "ol%d" % n, "currency": "CNY", "amount": 6,
                        "lines": [{"sku": "OK", "amount": 5}, line]}
                self.assertProblem(H.earn(self.c, m["id"], order=body), 400, code, part)
        self.assertEqual(H.points_of(self.c, m["id"])["available"], 0)


class EarnRulesTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        archive_all(self.c)
        H.clock_set(self.c, WED)
        self.rate = create_rule(self.c, RATE)
        self.double = create_rule(self.c, DOUBLE_WED)
        self.tea = create_rule(self.c, TEA_BONUS)
        self.m = H.create_member(self.c)

    def test_earn_with_lines_awards_and_transaction(self):
        lines = [{"sku": "TEA", "category": "drinks", "amount": 3000, "quantity": 2},
                 {"sku": "GC", "amount": 10000, "gift_card": True},
                 {"sku": "SHIP", "amount": 800, "shipping": True},
                 {"sku": "CAKE", "category": "food", "amount": 5050}]
        o = order("o-lines", lines, paid_with_points=1000, channel="wechat")
        b = H.check_ok(H.earn(self.c, self.m["id"], order=o), 201, "earn")
        # Eligible: 3000 + 5050 = 8050, minus 1000 paid with points = 7050 -> 70.
        # Double Wednesday adds 70; TEA bonus 2 units x 5 = 10.
        tx = b["transaction"]
        by_rule = {a["rule_id"]: a for a in tx["awards"]}
        self.assertEqual(by_rule[self.rate["id"]]["points"], 70)
        self.assertEqual(by_rule[self.double["id"]]["points"], 70)
        self.assertEqual(by_rule[self.tea["id"]]["points"], 10)
        self.assertEqual(tx["points"], 150)
        self.assertTrue(all(a["rule_version"] == 1 for a in tx["awards"]))
        self.assertIn("double Wednesday", by_rule[self.double["id"]]["explanation"])
        self.assertEqual(H.points_of(self.c, self.m["id"])["available"], 150)
        lots = H.check_ok(self.c.get("/v1/members/%s/lots" % self.m["id"]), 200, "lots")
        self.assertEqual(sorted(x["amount"] for x in lots["data"]), [10, 70, 70])
        # A rule edit never recomputes what was awarded.
        H.check_ok(self.c.put("/v1/rules/%s" % self.rate["id"],
                              dict(RATE, effect={"type": "rate", "points": 5,
                                                 "per_amount": 100})), 200, "put")
        got = H.check_ok(self.c.get("/v1/transactions/%s" % tx["id"]), 200, "get tx")
        self.assertEqual(got["awards"], tx["awards"])
        b2 = H.check_ok(H.earn(self.c, self.m["id"], order=order("o2", amount=100)), 201, "e2")
        rate2 = [a for a in b2["transaction"]["awards"] if a["rule_id"] == self.rate["id"]]
        self.assertEqual((rate2[0]["rule_version"], rate2[0]["points"]), (2, 5))

    def test_an_empty_list_of_lines_has_nothing_eligible(self):
        """An order sent with `"lines": []` has no line a rule can count (quantity 0),
        unlike an order sent without lines, which is one line of quantity 1."""
        archive_all(self.c)
        create_rule(self.c, {"name": "one or more", "trigger": "purchase", "priority": 10,
                             "conditions": {"min_quantity": 1},
                             "effect": {"type": "fixed", "points": 9}})
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-empty", [])), 201, "earn")
        self.assertEqual(b["transaction"]["points"], 0)
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-none", amount=0)), 201,
                       "earn without lines")
        self.assertEqual(b["transaction"]["points"], 9)

    def test_purchase_number_counts_earlier_order_earns(self):
        """`purchase_number` compares the member's earlier order earns with nth − 1 (the
        count stops at the largest nth a live rule asks for): the first order earns the
        welcome bonus, the third the third-purchase bonus, and neither fires again; earns
        without an order are not purchases."""
        H.clock_set(self.c, THU)
        first = create_rule(self.c, {"name": "welcome", "trigger": "purchase", "priority": 20,
                                     "conditions": {"purchase_number": {"first": True}},
                                     "effect": {"type": "fixed", "points": 7}})
        third = create_rule(self.c, {"name": "third", "trigger": "purchase", "priority": 30,
                                     "conditions": {"purchase_number": {"nth": 3}},
                                     "effect": {"type": "fixed", "points": 33}})
        fired = []
        for i in range(6):
            H.check_ok(H.earn(self.c, self.m["id"], points=1), 201, "earn without an order")
            b = H.check_ok(H.earn(self.c, self.m["id"], order=order("pn-%d" % i, amount=1000)),
                           201, "order earn %d" % i)
            ids = {a["rule_id"] for a in b["transaction"]["awards"]}
            fired.append((first["id"] in ids, third["id"] in ids))
        self.assertEqual(fired, [(True, False), (False, False), (False, True),
                                 (False, False), (False, False), (False, False)])

    def test_limit_added_later_counts_the_period_so_far(self):
        """A per-member limit counts the awards its rule made in the period, also those
        made before the limit was there (schema version 12 keeps them in award_caps, and a
        version that brings the limit copies the rule's earlier awards in), and those made
        while a removed limit was away; another member's awards do not count."""
        H.clock_set(self.c, THU)
        body = {"name": "visit bonus", "trigger": "purchase", "priority": 5,
                "effect": {"type": "fixed", "points": 10}}
        rule = create_rule(self.c, body)
        other = H.create_member(self.c)["id"]
        n = [0]

        def bonus(mid):
            n[0] += 1
            b = H.check_ok(H.earn(self.c, mid, order=order("vb-%d" % n[0], amount=100)), 201,
                           "order %d" % n[0])
            got = [a for a in b["transaction"]["awards"] if a["rule_id"] == rule["id"]]
            return got[0]["points"] if got else 0

        def put(**extra):
            H.check_ok(self.c.put("/v1/rules/%s" % rule["id"], dict(body, **extra)), 200, "put")

        self.assertEqual([bonus(self.m["id"]), bonus(self.m["id"]), bonus(other)], [10, 10, 10])
        put(limits={"per_member": {"period": "day", "max_awards": 3}})
        self.assertEqual([bonus(self.m["id"]), bonus(self.m["id"]), bonus(other)], [10, 0, 10])
        put()  # the limit removed: awards again, still counted when it comes back
        self.assertEqual(bonus(self.m["id"]), 10)
        put(limits={"per_member": {"period": "day", "max_awards": 5}})
        self.assertEqual([bonus(self.m["id"]), bonus(self.m["id"])], [10, 0])
        H.clock_set(self.c, THU + H.DAY_MS)
        self.assertEqual(bonus(self.m["id"]), 10)
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def test_not_wednesday_and_conditions(self):
        H.clock_set(self.c, THU)
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-thu", amount=1000)), 201, "")
        self.assertEqual(b["transaction"]["points"], 10)
        self.assertEqual(len(b["transaction"]["awards"]), 1)
        # Explicit points bypass the rules.
        b = H.check_ok(H.earn(self.c, self.m["id"], points=7, order={"id": "o-x"}), 201, "")
        self.assertEqual((b["transaction"]["points"], b["transaction"]["awards"]), (7, []))

    def test_dry_run_writes_nothing(self):
        before = H.check_ok(self.c.get("/v1/transactions"), 200, "list")["data"]
        body = {"order": order("o-dry", amount=2000), "dry_run": True}
        r = self.c.post("/v1/members/%s/earn" % self.m["id"], body)  # no Idempotency-Key
        b = H.check_ok(r, 200, "dry run")
        self.assertEqual((b["dry_run"], b["total_points"]), (True, 40))
        self.assertEqual(len(b["awards"]), 2)
        self.assertEqual(H.check_ok(self.c.get("/v1/transactions"), 200, "l")["data"], before)
        self.assertEqual(H.points_of(self.c, self.m["id"])["available"], 0)
        # A dry run with a key stores no replay: the key stays free for the real earn.
        H.check_ok(self.c.post("/v1/members/%s/earn" % self.m["id"], body, idem="k-dry"), 200, "")
        real = self.c.post("/v1/members/%s/earn" % self.m["id"], {"order": body["order"]},
                           idem="k-dry")
        self.assertEqual(real.status, 201, real)
        self.assertFalse(real.replayed)
        self.assertEqual(real.body["transaction"]["points"], 40)
        # Drafts only in a dry run that asks for them.
        draft = create_rule(self.c, dict(TEA_BONUS, name="draft fixed", status="draft",
                                         effect={"type": "fixed", "points": 3}))
        o2 = order("o-dry2", amount=100)
        b = H.check_ok(self.c.post("/v1/members/%s/earn" % self.m["id"],
                                   {"order": o2, "dry_run": True}), 200, "")
        self.assertNotIn(draft["id"], [a["rule_id"] for a in b["awards"]])
        b = H.check_ok(self.c.post("/v1/members/%s/earn" % self.m["id"],
                                   {"order": o2, "dry_run": True, "include_drafts": True}),
                       200, "")
        self.assertIn(draft["id"], [a["rule_id"] for a in b["awards"]])
        r = self.c.post("/v1/members/%s/earn" % self.m["id"], {"order": o2}, idem=None)
        self.assertEqual(r.body["code"], "idempotency_key_required", r)

    def test_program_cap_on_the_base_rate(self):
        # With no live purchase rule the program's base rate computes an order's points,
        # and the program's cap applies to it as to rules (openapi: "rules and base rate").
        archive_all(self.c)
        H.program_patch(self.c, {"max_points_per_order": 30})
        b = H.check_ok(self.c.post("/v1/members/%s/earn" % self.m["id"],
                                   {"order": order("o-base-dry", amount=10000),
                                    "dry_run": True}), 200, "")
        self.assertEqual(b["total_points"], 30, b)
        self.assertEqual([a["points"] for a in b["awards"]], [30], b)
        self.assertIn("=> 100 points; capped from 100 to 30 by the program's "
                      "max_points_per_order 30.", b["awards"][0]["explanation"])
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-base-cap", amount=10000)),
                       201, "")
        self.assertEqual((b["transaction"]["points"], b["points"]["available"]), (30, 30))
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-base-under", amount=2999)),
                       201, "")
        self.assertEqual(b["transaction"]["points"], 29)
        H.program_patch(self.c, {"max_points_per_order": None})
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-base-free", amount=10000)),
                       201, "")
        self.assertEqual((b["transaction"]["points"], b["points"]["available"]), (100, 159))

    def test_program_cap_and_exclusive(self):
        H.program_patch(self.c, {"max_points_per_order": 50})
        b = H.check_ok(H.earn(self.c, self.m["id"], order=order("o-cap", amount=4000)), 201, "")
        self.assertEqual(b["transaction"]["points"], 50)
        self.assertTrue(any("max_points_per_order" in a["explanation"]
                            for a in b["transaction"]["awards"]))
        H.program_patch(self.c, {"max_points_per_order": None})
        create_rule(self.c, {"name": "VIP flat", "trigger": "purchase", "priority": 500,
                             "exclusive": True, "conditions": {"member_tags_any": ["vip"]},
                             "effect": {"type": "fixed", "points": 999}})
        vip = H.create_member(self.c, tags=["vip"])
        b = H.check_ok(H.earn(self.c, vip["id"], order=order("o-vip", amount=4000)), 201, "")
        self.assertEqual(b["transaction"]["points"], 999)
        self.assertEqual(len(b["transaction"]["awards"]), 1)


class EventTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        H.clock_set(self.c, WED)
        self.m = H.create_member(self.c)

    def event(self, name="review_posted", idem=True, **extra):
        body = {"name": name, "attributes": {"stars": 5}}
        body.update(extra)
        return self.c.post("/v1/members/%s/events" % self.m["id"], body, idem=idem)

    def test_review_posted_once_a_day(self):
        rules = H.check_ok(self.c.get("/v1/rules", params={"trigger": "event"}), 200, "")["data"]
        review = rules[0]
        # The sample rule is a draft: no award until it is activated.
        b = H.check_ok(self.event(), 200, "draft event")
        self.assertEqual((b["total_points"], b["transaction"]), (0, None))
        body = {k: review[k] for k in ("name", "trigger", "event", "effect", "limits")}
        H.check_ok(self.c.put("/v1/rules/%s" % review["id"], dict(body, status="active")),
                   200, "activate")
        b = H.check_ok(self.event(), 201, "first review")
        self.assertEqual(b["transaction"]["points"], 20)
        self.assertEqual(b["transaction"]["metadata"]["event"], "review_posted")
        self.assertEqual(b["transaction"]["awards"][0]["rule_version"], 2)
        b = H.check_ok(self.event(), 200, "second review, same day")
        self.assertEqual((b["total_points"], b["transaction"]), (0, None))
        self.assertIn("limit", b["awards"][0]["explanation"])
        H.clock_set(self.c, THU)
        dry = H.check_ok(self.event(idem=None, dry_run=True), 200, "dry")
        self.assertEqual(dry["total_points"], 20)
        H.check_ok(self.event(), 201, "next day")
        self.assertEqual(H.points_of(self.c, self.m["id"])["available"], 40)
        b = H.check_ok(self.event(name="survey_answered"), 200, "no rule")
        self.assertEqual((b["total_points"], b["awards"]), (0, []))
        self.assertEqual(self.event(idem=None).body["code"], "idempotency_key_required")


class LimitRaceTests(unittest.TestCase):
    def test_64_concurrent_earns_respect_caps_and_budget(self):
        env = H.start_env(self)
        c = env.admin
        archive_all(c)
        create_rule(c, {"name": "10 per order, 100 a day", "trigger": "purchase",
                        "effect": {"type": "fixed", "points": 10},
                        "limits": {"per_member": {"period": "day", "max_points": 100}}})
        create_rule(c, {"name": "launch bonus", "trigger": "purchase", "priority": -1,
                        "effect": {"type": "fixed", "points": 7},
                        "limits": {"budget": {"max_points": 50}}})
        one = H.create_member(c)
        many = [H.create_member(c) for _ in range(64)]
        key = env.t1["api_key"]
        clients = [env.client(key, timeout=60) for _ in range(64)]
        barrier = threading.Barrier(64, timeout=60)
        results = [None] * 64

        def run(i):
            try:
                barrier.wait()
                mid = one["id"] if i % 2 == 0 else many[i]["id"]
                results[i] = H.earn(clients[i], mid, order=order("race-%d" % i, amount=100))
            except BaseException as e:  # noqa: B902
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertTrue(all(getattr(r, "status", None) == 201 for r in results), results[:3])
        total_one = H.points_of(c, one["id"])["available"]
        total_many = sum(H.points_of(c, many[i]["id"])["available"] for i in range(1, 64, 2))
        # The member's cap: exactly 100 from the first rule, whatever the order.
        # The budget: exactly 50 across everyone (7 points per award, the last one trimmed).
        fixed_one = 100
        self.assertEqual(total_one + total_many, fixed_one + 32 * 10 + 50)
        self.assertLessEqual(total_one - fixed_one, 50)


class CliTests(unittest.TestCase):
    def test_rules_list_show_create(self):
        import json
        env = H.start_env(self)
        path = os.path.join(env.dir, "rule.json")
        with open(path, "w") as f:
            json.dump(RATE, f)
        rc, out, err = H.run_cli(["rules", "create", "--db", env.db, "--tenant", "t1",
                                  "--file", path, "--json"])
        self.assertEqual(rc, 0, err)
        rid = json.loads(out)["id"]
        rc, out, err = H.run_cli(["rules", "show", "--db", env.db, "--tenant", "t1", rid])
        self.assertEqual((rc, json.loads(out)["versions"][0]["actor"]), (0, "cli"))
        rc, out, err = H.run_cli(["rules", "list", "--db", env.db, "--tenant", "t1"])
        self.assertEqual(rc, 0, err)
        self.assertIn(rid, out)
        self.assertIn(rid, rule_ids(env.admin))
        with open(path, "w") as f:
            json.dump(dict(RATE, conditions={"days_of_week": [8]}), f)
        rc, out, err = H.run_cli(["rules", "create", "--db", env.db, "--tenant", "t1",
                                  "--file", path])
        self.assertEqual(rc, 2)
        self.assertIn("days_of_week", err)
        rc, out, err = H.run_cli(["rules", "--help"])
        self.assertEqual(rc, 0)
        self.assertIn("create", out)


# The schema version jifen upgrades a database to (src/store/schema.c).
SCHEMA_VERSION = 24


def meta_version(db):
    """The schema version a database's meta table records (text)."""
    return db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]


# Takes a database of schema version 24 back to version 23: an order earn's
# lines back in order_lines, a row each, and not in its transaction's row.
UNDO_V24 = (
    "INSERT INTO order_lines(tenant_id, order_id, n, sku, amount, quantity, points)"
    " SELECT t.tenant_id, t.order_id, j.key, j.value ->> 0, j.value ->> 1, j.value ->> 2,"
    " j.value ->> 3 FROM transactions t, json_each(t.order_lines) j"
    " WHERE t.order_lines IS NOT NULL;"
    "ALTER TABLE transactions DROP COLUMN order_lines;"
    "UPDATE meta SET value = '23' WHERE key = 'schema_version';")


# Takes a database of schema version 23 back to version 22: no pending marks.
UNDO_V23 = (
    "ALTER TABLE members DROP COLUMN pending_until;"
    "UPDATE meta SET value = '22' WHERE key = 'schema_version';")


# The transactions table's columns as versions 20 and 21 defined them, and
# what versions 16 to 21 made after it: indexes, triggers, the postings view.
TX_V21_TABLE_COLUMNS = (
    " tenant_id INTEGER NOT NULL, seq INTEGER NOT NULL CHECK(seq >= 1), id TEXT NOT NULL,"
    " type TEXT NOT NULL CHECK(type = 'earn' OR type = 'redeem' OR type = 'adjust'"
    " OR type = 'transfer' OR type = 'hold' OR type = 'capture' OR type = 'void'"
    " OR type = 'expire' OR type = 'reverse'),"
    " member_id TEXT, counterparty_id TEXT, points INTEGER NOT NULL CHECK(points >= 0),"
    " delta INTEGER NOT NULL, reverses TEXT, hold_id TEXT, order_id TEXT, order_amount INTEGER,"
    " order_currency TEXT, reason TEXT, note TEXT, channel TEXT, store_id TEXT,"
    " actor TEXT NOT NULL, metadata TEXT, idem_key TEXT, created_at INTEGER NOT NULL,"
    " prev_hash BLOB NOT NULL, hash BLOB NOT NULL,"
    " p0_account TEXT, p0_amount INTEGER CHECK(p0_amount <> 0),"
    " p1_account TEXT, p1_amount INTEGER CHECK(p1_amount <> 0),"
    " p2_account TEXT, p2_amount INTEGER CHECK(p2_amount <> 0),"
    " p3_account TEXT, p3_amount INTEGER CHECK(p3_amount <> 0),"
    " p4_account TEXT, p4_amount INTEGER CHECK(p4_amount <> 0),"
    " p5_account TEXT, p5_amount INTEGER CHECK(p5_amount <> 0),"
    " posting_count INTEGER NOT NULL DEFAULT 0 CHECK(posting_count >= 0 AND posting_count <= 6"
    " AND (p0_account IS NULL) = (posting_count <= 0) AND (p0_amount IS NULL) = (posting_count <= 0)"
    " AND (p1_account IS NULL) = (posting_count <= 1) AND (p1_amount IS NULL) = (posting_count <= 1)"
    " AND (p2_account IS NULL) = (posting_count <= 2) AND (p2_amount IS NULL) = (posting_count <= 2)"
    " AND (p3_account IS NULL) = (posting_count <= 3) AND (p3_amount IS NULL) = (posting_count <= 3)"
    " AND (p4_account IS NULL) = (posting_count <= 4) AND (p4_amount IS NULL) = (posting_count <= 4)"
    " AND (p5_account IS NULL) = (posting_count <= 5) AND (p5_amount IS NULL) = (posting_count <= 5)),")
TX_V21_AFTER_TABLE = (
    "CREATE INDEX tx_reverses ON transactions(tenant_id, reverses) WHERE reverses IS NOT NULL;"
    "CREATE INDEX tx_hold_capture ON transactions(tenant_id, hold_id)"
    " WHERE type = 'capture' AND hold_id IS NOT NULL;"
    "CREATE UNIQUE INDEX tx_order ON transactions(tenant_id, order_id, type,"
    " (CASE WHEN type = 'earn' THEN 0 ELSE seq END)) WHERE order_id IS NOT NULL;"
    "CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions"
    " BEGIN SELECT RAISE(ABORT, 'transactions are immutable'); END;"
    "CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions"
    " BEGIN SELECT RAISE(ABORT, 'transactions are immutable'); END;"
    "CREATE VIEW postings(tenant_id, tx_seq, n, account, amount, created_at) AS"
    " SELECT tenant_id, tx_seq, n, account, amount, created_at FROM posting_rows"
    " UNION ALL SELECT t.tenant_id, t.seq, s.n,"
    " CASE s.n WHEN 0 THEN t.p0_account WHEN 1 THEN t.p1_account WHEN 2 THEN t.p2_account"
    " WHEN 3 THEN t.p3_account WHEN 4 THEN t.p4_account WHEN 5 THEN t.p5_account END,"
    " CASE s.n WHEN 0 THEN t.p0_amount WHEN 1 THEN t.p1_amount WHEN 2 THEN t.p2_amount"
    " WHEN 3 THEN t.p3_amount WHEN 4 THEN t.p4_amount WHEN 5 THEN t.p5_amount END,"
    " t.created_at FROM transactions t JOIN posting_slots s ON s.n < t.posting_count;")


# Takes a database of schema version 22 back to version 21: transactions
# keyed by (tenant_id, seq) WITHOUT ROWID again, those two real columns, and
# the postings view without tx_key.
TX_V21_COLUMNS = (
    "tenant_id, seq, id, type, member_id, counterparty_id, points, delta, reverses, hold_id,"
    " order_id, order_amount, order_currency, reason, note, channel, store_id, actor, metadata,"
    " idem_key, created_at, prev_hash, hash, p0_account, p0_amount, p1_account, p1_amount,"
    " p2_account, p2_amount, p3_account, p3_amount, p4_account, p4_amount, p5_account,"
    " p5_amount, posting_count")
UNDO_V22 = (
    "DROP VIEW postings;"
    "CREATE TABLE transactions_v21("
    + TX_V21_TABLE_COLUMNS +
    " PRIMARY KEY(tenant_id, seq)) STRICT, WITHOUT ROWID;"
    "INSERT INTO transactions_v21(" + TX_V21_COLUMNS + ") SELECT " + TX_V21_COLUMNS +
    " FROM transactions ORDER BY txkey;"
    "DROP TABLE transactions;"
    "ALTER TABLE transactions_v21 RENAME TO transactions;"
    + TX_V21_AFTER_TABLE +
    "UPDATE meta SET value = '21' WHERE key = 'schema_version';")


# Takes a database of schema version 21 back to version 20: transactions with
# UNIQUE(tenant_id, id) again and no tx_old_ids (the postings view is made
# again over the new table, as version 16 made it).
UNDO_V21 = (
    "DROP VIEW postings;"
    "CREATE TABLE transactions_v20("
    + TX_V21_TABLE_COLUMNS +
    " PRIMARY KEY(tenant_id, seq), UNIQUE(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "INSERT INTO transactions_v20 SELECT * FROM transactions;"
    "DROP TABLE transactions;"
    "ALTER TABLE transactions_v20 RENAME TO transactions;"
    + TX_V21_AFTER_TABLE +
    "DROP TABLE tx_old_ids;"
    "UPDATE meta SET value = '20' WHERE key = 'schema_version';")


# Takes a database of schema version 20 back to version 19: an order's earn,
# redeems and holds in three partial indexes again.
UNDO_V20 = (
    "DROP INDEX tx_order;"
    "CREATE UNIQUE INDEX tx_order_earn ON transactions(tenant_id, order_id)"
    " WHERE type = 'earn' AND order_id IS NOT NULL;"
    "CREATE INDEX tx_order_redeem ON transactions(tenant_id, order_id)"
    " WHERE type = 'redeem' AND order_id IS NOT NULL;"
    "CREATE INDEX tx_order_hold ON transactions(tenant_id, order_id)"
    " WHERE type = 'hold' AND order_id IS NOT NULL;"
    "UPDATE meta SET value = '19' WHERE key = 'schema_version';")


# Takes a database of schema version 19 back to version 18: every answer
# stored whole, those that were kept as points only given a stand-in body
# {"rebuilt": key} (version 18 cannot rebuild them), and no after_ columns.
UNDO_V19 = (
    "DROP TRIGGER idempotency_no_update;"
    "INSERT INTO responses(tenant_id, body) SELECT tenant_id, '{\"rebuilt\":\"' || key || '\"}'"
    " FROM idempotency WHERE response_seq = -1 ORDER BY tenant_id, key;"
    "UPDATE idempotency SET response_seq = (SELECT r.seq FROM responses r WHERE r.tenant_id ="
    " idempotency.tenant_id AND r.body = '{\"rebuilt\":\"' || idempotency.key || '\"}'),"
    " after_available = NULL, after_pending = NULL, after_held = NULL WHERE response_seq = -1;"
    "ALTER TABLE idempotency DROP COLUMN after_held;"
    "ALTER TABLE idempotency DROP COLUMN after_pending;"
    "ALTER TABLE idempotency DROP COLUMN after_available;"
    "CREATE TRIGGER idempotency_no_update BEFORE UPDATE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "UPDATE meta SET value = '18' WHERE key = 'schema_version';")


def undo_v19(db, answers=None):
    """UNDO_V20 and UNDO_V19, then the answers given ({key: the raw bytes first answered}) stored
    in place of their stand-ins, as version 18 would have stored them."""
    db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + "DROP TRIGGER responses_no_update;")
    for key, raw in (answers or {}).items():
        db.execute("UPDATE responses SET body = ? WHERE body = ?",
                   (raw.decode(), '{"rebuilt":"%s"}' % key))
    db.executescript("CREATE TRIGGER responses_no_update BEFORE UPDATE ON responses"
                     " BEGIN SELECT RAISE(ABORT, 'responses are immutable'); END;")


# Takes a database of schema version 18 back to version 17: lots in the
# lots_due index again, no due entries (member_due and the members' due rows
# in member_state), and member_accounts over every kind 0 row.
UNDO_V18 = (
    "DELETE FROM member_state WHERE kind = 0 AND key1 = 3;"
    "DROP TABLE member_due;"
    "CREATE INDEX lots_due ON lots(tenant_id, expires_at)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND expires_at IS NOT NULL;"
    "DROP VIEW member_accounts;"
    "CREATE VIEW member_accounts AS SELECT m.tenant_id AS tenant_id, m.id AS member_id,"
    " s.key1 AS account, s.value AS balance FROM members m JOIN member_state s"
    " ON s.member_seq = m.seq WHERE s.kind = 0;"
    "UPDATE meta SET value = '17' WHERE key = 'schema_version';")


# Takes a database of schema version 17 back to version 16: lots with their
# UNIQUE(tenant_id, id) index again (the table copied).
UNDO_V17 = (
    "CREATE TABLE lots_v16(seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,"
    " id TEXT NOT NULL, member_id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount > 0),"
    " remaining INTEGER NOT NULL CHECK(remaining >= 0 AND remaining <= amount),"
    " available_at INTEGER NOT NULL, expires_at INTEGER, expired_tx_seq INTEGER,"
    " created_at INTEGER NOT NULL, closed INTEGER NOT NULL DEFAULT 0"
    "  CHECK(closed = (remaining = 0 OR expired_tx_seq IS NOT NULL)),"
    " expired_amount INTEGER CHECK(expired_amount > 0), UNIQUE(tenant_id, id)) STRICT;"
    "INSERT INTO lots_v16 SELECT seq, tenant_id, id, member_id, tx_seq, amount, remaining,"
    " available_at, expires_at, expired_tx_seq, created_at, closed, expired_amount FROM lots;"
    "DROP TRIGGER lots_no_delete; DROP TABLE lots; ALTER TABLE lots_v16 RENAME TO lots;"
    "CREATE INDEX lots_due ON lots(tenant_id, expires_at)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND expires_at IS NOT NULL;"
    "CREATE INDEX lots_pending ON lots(tenant_id, member_id, available_at, expires_at,"
    " remaining) WHERE remaining > 0 AND expired_tx_seq IS NULL AND available_at > created_at;"
    "CREATE TRIGGER lots_no_delete BEFORE DELETE ON lots"
    " BEGIN SELECT RAISE(ABORT, 'lots are never deleted'); END;"
    "UPDATE meta SET value = '16' WHERE key = 'schema_version';")


# Takes a database of schema version 16 back to version 15: each posting a row
# of the postings table again (those in their transaction's row moved out), no
# posting slots, no index of members in seq order.
UNDO_V16 = (
    "INSERT INTO posting_rows(tenant_id, tx_seq, n, account, amount, created_at)"
    " SELECT tenant_id, tx_seq, n, account, amount, created_at FROM postings"
    " WHERE (tenant_id, tx_seq) IN (SELECT tenant_id, seq FROM transactions"
    " WHERE posting_count > 0);"
    "DROP VIEW postings;"
    "DROP TRIGGER posting_slots_no_delete; DROP TRIGGER posting_slots_no_update;"
    "DROP TABLE posting_slots;"
    "ALTER TABLE posting_rows RENAME TO postings;"
    "ALTER TABLE transactions DROP COLUMN posting_count;"
    "ALTER TABLE transactions DROP COLUMN p0_account;"
    "ALTER TABLE transactions DROP COLUMN p0_amount;"
    "ALTER TABLE transactions DROP COLUMN p1_account;"
    "ALTER TABLE transactions DROP COLUMN p1_amount;"
    "ALTER TABLE transactions DROP COLUMN p2_account;"
    "ALTER TABLE transactions DROP COLUMN p2_amount;"
    "ALTER TABLE transactions DROP COLUMN p3_account;"
    "ALTER TABLE transactions DROP COLUMN p3_amount;"
    "ALTER TABLE transactions DROP COLUMN p4_account;"
    "ALTER TABLE transactions DROP COLUMN p4_amount;"
    "ALTER TABLE transactions DROP COLUMN p5_account;"
    "ALTER TABLE transactions DROP COLUMN p5_amount;"
    "DROP INDEX members_page;"
    "UPDATE meta SET value = '15' WHERE key = 'schema_version';")


# Takes a database of schema version 15 back to version 14: no referral key
# (the members' codes are then the unkeyed ones of before).
UNDO_V15 = (
    "DELETE FROM meta WHERE key = 'referral_key';"
    "UPDATE meta SET value = '14' WHERE key = 'schema_version';")


# Takes a database of schema version 14 back to version 13: no indexes of an
# order's redeems and holds, a hold's captures, or members by birthday.
UNDO_V14 = (
    "DROP INDEX tx_order_redeem; DROP INDEX tx_order_hold; DROP INDEX tx_hold_capture;"
    "DROP INDEX members_birthday;"
    "UPDATE meta SET value = '13' WHERE key = 'schema_version';")


# Takes a database of schema version 13 back to version 12: each expired lot's
# loss a consumption by its expire transaction, and no expired_amount.
UNDO_V13 = (
    "INSERT INTO consumptions(tenant_id, tx_seq, lot_seq, amount, created_at)"
    " SELECT l.tenant_id, l.expired_tx_seq, l.seq, l.expired_amount, x.created_at FROM lots l"
    " JOIN transactions x ON x.tenant_id = l.tenant_id AND x.seq = l.expired_tx_seq"
    " ORDER BY l.expired_tx_seq, l.expires_at, l.available_at, l.seq;"
    "ALTER TABLE lots DROP COLUMN expired_amount;"
    "UPDATE meta SET value = '12' WHERE key = 'schema_version';")


# Takes a database of schema version 12 back to version 11: no usage rows or
# award caps, and the awards' index by rule and member.
UNDO_V12 = (
    "DROP TABLE rule_usage; DROP TABLE award_caps; DROP INDEX awards_rule;"
    "CREATE INDEX awards_rule_member ON awards(tenant_id, rule_id, member_id, created_at);"
    "UPDATE meta SET value = '11' WHERE key = 'schema_version';")


# Takes a database of schema version 11 back to version 10: transaction
# entries in member_state without their time, order, latest time and growth,
# and tenants without tx_time_max.
UNDO_V11 = (
    "UPDATE member_state SET key2 = 0, key3 = 0, key4 = 0, value = NULL WHERE kind = 2;"
    "ALTER TABLE tenants DROP COLUMN tx_time_max;"
    "UPDATE meta SET value = '10' WHERE key = 'schema_version';")


# Takes a database of schema version 10 back to version 9: member_state keyed
# by the tenant and the member's id, its views read from it alone.
UNDO_V10 = (
    "CREATE TABLE member_state_v9(tenant_id INTEGER NOT NULL, member_id TEXT NOT NULL,"
    " kind INTEGER NOT NULL CHECK(kind = 0 OR kind = 1 OR kind = 2),"
    " key1 INTEGER NOT NULL, key2 INTEGER NOT NULL, key3 INTEGER NOT NULL,"
    " key4 INTEGER NOT NULL, value INTEGER,"
    " PRIMARY KEY(tenant_id, member_id, kind, key1, key2, key3, key4)) STRICT, WITHOUT ROWID;"
    "INSERT INTO member_state_v9 SELECT m.tenant_id, m.id, s.kind, s.key1, s.key2, s.key3,"
    " s.key4, s.value FROM member_state s JOIN members m ON m.seq = s.member_seq;"
    "DROP VIEW member_accounts; DROP VIEW member_lots; DROP VIEW member_txs;"
    "DROP TABLE member_state;"
    "ALTER TABLE member_state_v9 RENAME TO member_state;"
    "CREATE VIEW member_accounts AS SELECT tenant_id, member_id, key1 AS account,"
    " value AS balance FROM member_state WHERE kind = 0;"
    "CREATE VIEW member_lots AS SELECT tenant_id, member_id, key1 AS closed,"
    " key2 AS expires_key, key3 AS available_at, key4 AS seq, value AS remaining"
    " FROM member_state WHERE kind = 1;"
    "CREATE VIEW member_txs AS SELECT tenant_id, member_id, key1 AS seq FROM member_state"
    " WHERE kind = 2;"
    "UPDATE meta SET value = '9' WHERE key = 'schema_version';")


# Takes a database of schema version 9 back to version 8: each CHECK spelled
# as comparisons joined by OR becomes the IN list it was.
def undo_v9(db):
    import re
    spelled = re.compile(r"CHECK\((\w+) = ('[^']*'|\d+)((?: OR \1 = (?:'[^']*'|\d+))*)\)")

    def in_list(mo):
        items = [mo.group(2)] + re.findall(r" OR \w+ = ('[^']*'|\d+)", mo.group(3))
        return "CHECK(%s IN (%s))" % (mo.group(1), ", ".join(items))

    db.isolation_level = None
    db.execute("BEGIN IMMEDIATE")
    cookie = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    for name, sql in db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"
                                " AND sql LIKE '%CHECK(% = % OR %'").fetchall():
        db.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?",
                   (spelled.sub(in_list, sql), name))
    db.execute("PRAGMA schema_version = %d" % (cookie + 1))
    db.execute("PRAGMA writable_schema = RESET")
    db.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
    db.execute("COMMIT")


# Takes a database of schema version 8 back to version 7: each key row holds
# its response, and its created_at is cut to 32 bits as version 7 stored it.
# Version 7's triggers on lots and transactions come back as stubs for the
# migration to drop (nothing writes through them in between).
UNDO_V8 = (
    "CREATE TABLE idempotency_v7(tenant_id INTEGER NOT NULL, key TEXT NOT NULL,"
    " op TEXT NOT NULL, request_hash BLOB NOT NULL, created INTEGER NOT NULL,"
    " body TEXT NOT NULL, tx_id TEXT, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, key)) STRICT, WITHOUT ROWID;"
    "INSERT INTO idempotency_v7 SELECT i.tenant_id, i.key, i.op, i.request_hash, i.created,"
    " r.body, i.tx_id, (((i.created_at & 4294967295) + 2147483648) % 4294967296) - 2147483648"
    " FROM idempotency i JOIN responses r ON r.seq = i.response_seq;"
    "DROP TABLE idempotency; DROP TABLE responses;"
    "ALTER TABLE idempotency_v7 RENAME TO idempotency;"
    "CREATE TRIGGER idempotency_no_update BEFORE UPDATE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "CREATE TRIGGER idempotency_no_delete BEFORE DELETE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "DROP TRIGGER lots_no_delete;" + "".join(
        "CREATE TRIGGER %s AFTER %s ON %s BEGIN SELECT 1; END;" % t for t in (
            ("lots_state_insert", "INSERT", "lots"), ("lots_state_update", "UPDATE", "lots"),
            ("lots_state_move", "UPDATE", "lots"), ("lots_state_delete", "DELETE", "lots"),
            ("transactions_state", "INSERT", "transactions"))) +
    "UPDATE meta SET value = '7' WHERE key = 'schema_version';")

# Takes a database of schema version 7 back to version 6: a member's
# accounts in the accounts table, their lots and transactions indexed on those
# tables, no member_state.
UNDO_V7 = (
    "DROP TRIGGER IF EXISTS lots_state_insert; DROP TRIGGER IF EXISTS lots_state_update;"
    "DROP TRIGGER IF EXISTS lots_state_move; DROP TRIGGER IF EXISTS lots_state_delete;"
    "DROP TRIGGER transactions_state;"
    "INSERT INTO accounts SELECT tenant_id, 'member:' || member_id || CASE account"
    " WHEN 0 THEN ':points' WHEN 1 THEN ':growth' ELSE ':held' END, balance"
    " FROM member_accounts;"
    "DROP VIEW member_accounts; DROP VIEW member_lots; DROP VIEW member_txs;"
    "DROP TABLE member_state;"
    "CREATE INDEX tx_member ON transactions(tenant_id, member_id, seq);"
    "CREATE INDEX tx_counterparty ON transactions(tenant_id, counterparty_id, seq)"
    " WHERE counterparty_id IS NOT NULL;"
    "CREATE INDEX lots_member ON lots(tenant_id, member_id, closed, expires_at, available_at,"
    " remaining);"
    "UPDATE meta SET value = '6' WHERE key = 'schema_version';")


class MigrationTests(unittest.TestCase):
    def restart_upgrading(self, env, db, from_version):
        """Closes db, starts the server on the database, and checks it said it
        upgraded it from from_version to the current SCHEMA_VERSION."""
        db.close()
        env.start_server()
        self.assertIn("upgrading the database from schema version %d to %d"
                      % (from_version, SCHEMA_VERSION), env.server.stderr_tail())

    def test_v23_store_keeps_its_order_lines(self):
        """Version 24 keeps an order earn's lines in its transaction's row.  An order
        earned under version 23 keeps its rows in order_lines: after the upgrade it
        shows the same lines and points, and refunds by line from them; an order
        earned after writes no row there, and both verify."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        archive_all(a)
        create_rule(a, RATE)
        create_rule(a, TEA_BONUS)
        m = H.create_member(a)["id"]
        lines = [{"sku": "TEA", "amount": 3000, "quantity": 2},
                 {"sku": "CAKE", "amount": 6050}, {"sku": "\u8336", "amount": 1000}]
        H.check_ok(H.earn(a, m, order=order("old", lines)), 201, "earn before")
        before = H.check_ok(a.get("/v1/orders/old"), 200, "order before")
        self.assertEqual([ln["points"] for ln in before["lines"]], [40, 60, 10])
        env.server.stop()
        db = sqlite3.connect(env.db)
        self.assertEqual(db.execute("SELECT count(*) FROM order_lines").fetchone()[0], 0)
        db.executescript(UNDO_V24)
        self.assertEqual(db.execute("SELECT n, sku, amount, quantity, points FROM order_lines"
                                    " ORDER BY n").fetchall(),
                         [(0, "TEA", 3000, 2, 40), (1, "CAKE", 6050, 1, 60),
                          (2, "\u8336", 1000, 1, 10)])
        self.restart_upgrading(env, db, 23)
        self.assertEqual(H.check_ok(a.get("/v1/orders/old"), 200, "order after"), before)
        b = H.check_ok(a.post("/v1/orders/old/refund",
                              {"lines": [{"sku": "TEA", "amount": 1500, "quantity": 1}]},
                              idem=True), 201, "refund of the old order")
        self.assertEqual(b["refund"]["clawback_points"], 20)
        self.assertEqual(b["refund"]["lines"], [{"line": 0, "sku": "TEA", "amount": 1500,
                                                 "quantity": 1}])
        H.check_ok(H.earn(a, m, order=order("new", lines)), 201, "earn after")
        after = H.check_ok(a.get("/v1/orders/new"), 200, "new order")
        self.assertEqual([(ln["sku"], ln["points"]) for ln in after["lines"]],
                         [("TEA", 40), ("CAKE", 60), ("\u8336", 10)])
        b = H.check_ok(a.post("/v1/orders/new/refund",
                              {"lines": [{"sku": "\u8336", "amount": 1000}]}, idem=True),
                       201, "refund of the new order")
        self.assertEqual(b["refund"]["clawback_points"], 10)
        self.assertEqual(b["refund"]["lines"][0]["sku"], "\u8336")
        self.assertEqual([[ln["sku"] for ln in r["lines"]] for r in
                          H.check_ok(a.get("/v1/orders/new"), 200, "order")["refunds"]],
                         [["\u8336"]])
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute("SELECT count(*) FROM order_lines").fetchone()[0], 3)
            rows = db.execute("SELECT order_id, order_lines FROM transactions"
                              " WHERE order_lines IS NOT NULL").fetchall()
            self.assertEqual(rows, [("new", '[["TEA",3000,2,40],["CAKE",6050,1,60],'
                                            '["\u8336",1000,1,10]]')])
            with self.assertRaises(sqlite3.IntegrityError):
                db.execute("INSERT INTO transactions(txkey, id, type, points, delta, actor,"
                           " created_at, prev_hash, hash, order_lines) VALUES(1 << 44 | 999999,"
                           " 'x', 'redeem', 1, -1, 'a', 0, x'', x'', '[]')")
        finally:
            db.close()
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v22_store_gets_pending_marks(self):
        """Version 23 gives each member with pending lots its pending mark: the
        points stay pending until their day, a redeem of them is refused until
        then, `jifen verify` passes, and members without pending points get
        none (0)."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        t0 = H.clock_set(a, 1900000000000)
        H.program_patch(a, {"pending_days": 7})
        m, n, o = (H.create_member(a)["id"] for _ in range(3))
        H.check_ok(H.earn(a, m, 100), 201, "pending earn")
        H.check_ok(H.earn(a, n, 40, pending_days=0), 201, "earn available at once")
        H.check_ok(H.earn(a, o, 30, pending_days=3), 201, "earn pending for 3 days")
        H.check_ok(H.redeem(a, o, 1), 422, "redeem of pending points")
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23)
        self.restart_upgrading(env, db, 22)
        db = sqlite3.connect(env.db)
        try:
            marks = dict(db.execute("SELECT id, pending_until FROM members"))
            until = dict(db.execute("SELECT member_id, MAX(available_at) FROM lots"
                                    " WHERE available_at > created_at GROUP BY member_id"))
        finally:
            db.close()
        self.assertEqual(until, {m: t0 + 7 * H.DAY_MS, o: t0 + 3 * H.DAY_MS})
        self.assertEqual({k: v for k, v in marks.items() if v}, until)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        self.assertEqual(H.points_of(a, m)["pending"], 100)
        self.assertEqual(H.points_of(a, n)["available"], 40)
        self.assertEqual(H.redeem(a, m, 1).status, 422)
        H.clock_set(a, t0 + 3 * H.DAY_MS)
        H.check_ok(H.redeem(a, o, 30), 201, "redeem of o's points once available")
        later = H.check_ok(H.earn(a, n, 5), 201, "a pending earn after the upgrade")
        self.assertEqual((later["points"]["available"], later["points"]["pending"]), (40, 5))
        self.assertEqual(H.redeem(a, n, 41).status, 422)
        self.assertEqual(H.points_of(a, n)["pending"], 5)
        H.clock_set(a, t0 + 7 * H.DAY_MS)
        H.check_ok(H.redeem(a, m, 100), 201, "redeem of m's points once available")
        self.assertEqual(H.points_of(a, n)["pending"], 5)
        H.clock_set(a, t0 + 10 * H.DAY_MS)
        p = H.points_of(a, n)
        self.assertEqual((p["pending"], p["available"]), (0, 45))
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v21_store_gets_transactions_keyed_by_rowid(self):
        """Version 22 keys transactions by a rowid, tenant << 44 | seq: every
        transaction of two tenants reads the same after the upgrade, by id and
        in every list, a replayed key answers the same bytes, reversals,
        refunds and new writes work, and `jifen verify` passes; tenant_id and
        seq are the rowid's halves."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        other = env.admin2
        m, n = H.create_member(a)["id"], H.create_member(a)["id"]
        o = H.create_member(other)["id"]
        order = {"id": "o-" + uuid.uuid4().hex, "amount": 5000, "currency": "CNY"}
        key = H.idem_key()
        first = a.post("/v1/members/%s/earn" % m, {"points": 300}, idem=key)
        self.assertEqual(first.status, 201, first)
        H.check_ok(a.post("/v1/members/%s/earn" % m, {"order": order}, idem=True), 201, "order")
        H.check_ok(H.redeem(a, m, 20, order={"id": order["id"]}), 201, "redeem for the order")
        H.check_ok(a.post("/v1/members/%s/transfer" % m, {"to_member_id": n, "points": 30},
                          idem=True), 201, "transfer")
        H.check_ok(a.post("/v1/transactions/%s/reverse" % first.body["transaction"]["id"],
                          {"points": 50}, idem=True), 201, "reverse part")
        for i in range(3):
            H.check_ok(H.earn(other, o, 10 + i), 201, "other tenant's earn")
        lists = {(c, p): H.list_all(c, p) for c, p in (
            (a, "/v1/transactions"), (a, "/v1/members/%s/transactions" % m),
            (a, "/v1/members/%s/transactions" % n), (other, "/v1/transactions"))}
        self.assertEqual(len(lists[(a, "/v1/transactions")]), 5)
        before = {(c, x["id"]): H.check_ok(c.get("/v1/transactions/%s" % x["id"]), 200)
                  for (c, _), rows in lists.items() for x in rows}
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22)
        self.restart_upgrading(env, db, 21)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(db.execute("SELECT count(*) FROM transactions WHERE"
                                        " txkey <> (tenant_id << 44) + seq OR txkey <> rowid"
                                        " OR seq < 1").fetchone()[0], 0)
            self.assertEqual(db.execute("SELECT count(DISTINCT tenant_id), count(*)"
                                        " FROM transactions").fetchone(), (2, 8))
        finally:
            db.close()
        for (c, p), rows in lists.items():
            self.assertEqual(H.list_all(c, p), rows, p)
        for (c, i), body in before.items():
            self.assertEqual(H.check_ok(c.get("/v1/transactions/%s" % i), 200), body, i)
            # Another tenant's transaction is not found by this one.
            stranger = other if c is a else a
            self.assertEqual(stranger.get("/v1/transactions/%s" % i).status, 404)
        again = a.post("/v1/members/%s/earn" % m, {"points": 300}, idem=key)
        self.assertEqual((again.status, again.raw), (first.status, first.raw))
        self.assertTrue(again.replayed)
        r = a.post("/v1/orders/%s/refund" % order["id"], {"amount": 5000}, idem=True)
        self.assertEqual(r.status, 201, r)
        H.check_ok(a.post("/v1/transactions/%s/reverse" % first.body["transaction"]["id"],
                          {"points": 100}, idem=True), 201, "reverse more")
        self.assertEqual(H.check_ok(a.get("/v1/transactions/%s" % first.body["transaction"]["id"]),
                                    200)["reversed_points"], 150)
        new = H.check_ok(H.earn(other, o, 7), 201, "earn after")["transaction"]
        self.assertEqual(H.list_all(other, "/v1/transactions")[0]["id"], new["id"])
        page = H.check_ok(other.get("/v1/transactions?limit=2"), 200)
        self.assertEqual([x["id"] for x in page["data"]],
                         [x["id"] for x in H.list_all(other, "/v1/transactions")[:2]])
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v19_store_gets_one_order_index(self):
        """Version 20 puts an order's earn, redeems and holds in one index
        (tx_order) instead of three: a refund by order still finds what paid for
        it, an order still earns once (the engine refuses a second earn, and the
        index refuses a second earn row written past it), and `jifen verify`
        passes."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m = H.create_member(a)["id"]
        order = {"id": "o-" + uuid.uuid4().hex, "amount": 5000, "currency": "CNY"}
        earned = H.check_ok(a.post("/v1/members/%s/earn" % m, {"order": order}, idem=True),
                            201, "order earn")
        H.check_ok(H.redeem(a, m, 20, order={"id": order["id"]}), 201, "redeem for the order")
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20)
        self.restart_upgrading(env, db, 19)
        db = sqlite3.connect(env.db)
        try:
            names = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'tx_order%'")}
            self.assertEqual(names, {"tx_order"})
            with self.assertRaises(sqlite3.IntegrityError):
                db.execute("INSERT INTO transactions(txkey, id, type, order_id, points,"
                           " delta, actor, created_at, prev_hash, hash) SELECT"
                           " txkey + 1000, id || 'x', 'earn', order_id, 1, 1, 'a', 0, x'',"
                           " x'' FROM transactions WHERE id = ?",
                           (earned["transaction"]["id"],))
        finally:
            db.rollback()
            db.close()
        again = a.post("/v1/members/%s/earn" % m, {"order": order}, idem=True)
        self.assertEqual((again.status, again.code), (409, "order_already_earned"), again)
        H.check_ok(H.redeem(a, m, 10, order={"id": order["id"]}), 201, "a second redeem")
        r = a.post("/v1/orders/%s/refund" % order["id"], {"amount": 5000}, idem=True)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(H.points_of(a, m)["available"], 0)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v20_store_keeps_its_transaction_ids(self):
        """Version 21 drops the index of transaction ids: an id made since
        enciphers its tenant and seq, and the ids given out before are kept in
        tx_old_ids.
        A v20 database (its ids made the old way, JIFEN_TEST_OLD_TXIDS) answers
        every old id as before after the upgrade: reads, a replayed key, a
        reversal by id, a refund; new ids have the new form; a made-up id of
        the new form is 404; and `jifen verify` passes, and fails when an old
        id's entry is missing."""
        import sqlite3
        env = H.start_env(self, env={"JIFEN_TEST_OLD_TXIDS": "1"})
        a = env.admin
        m, n = H.create_member(a)["id"], H.create_member(a)["id"]
        order = {"id": "o-" + uuid.uuid4().hex, "amount": 5000, "currency": "CNY"}
        key = H.idem_key()
        first = a.post("/v1/members/%s/earn" % m, {"points": 300}, idem=key)
        self.assertEqual(first.status, 201, first)
        earned = H.check_ok(a.post("/v1/members/%s/earn" % m, {"order": order}, idem=True),
                            201, "order earn")
        H.check_ok(H.redeem(a, m, 20), 201, "redeem")
        H.check_ok(a.post("/v1/members/%s/transfer" % m, {"to_member_id": n, "points": 30},
                          idem=True), 201, "transfer")
        part = H.check_ok(a.post("/v1/transactions/%s/reverse" % first.body["transaction"]["id"],
                                 {"points": 50}, idem=True), 201, "reverse part")
        ids = [x["id"] for x in H.list_all(a, "/v1/members/%s/transactions" % m)]
        self.assertEqual(len(ids), 5)
        for i in ids:
            self.assertEqual(len(i), 27, i)  # "txn_" and 23 hex digits, as before
        before = {i: H.check_ok(a.get("/v1/transactions/%s" % i), 200) for i in ids}
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21)
        env.server.env = None
        self.restart_upgrading(env, db, 20)
        db = sqlite3.connect(env.db)
        try:
            old = dict(db.execute("SELECT id, seq FROM tx_old_ids"))
            self.assertEqual(old, dict(db.execute("SELECT id, seq FROM transactions")))
            self.assertLessEqual(set(ids), set(old))
            self.assertEqual(db.execute(
                "SELECT count(*) FROM sqlite_master WHERE tbl_name = 'transactions'"
                " AND name LIKE 'sqlite_autoindex%'").fetchone()[0], 0)
        finally:
            db.close()
        for i in ids:
            self.assertEqual(H.check_ok(a.get("/v1/transactions/%s" % i), 200), before[i], i)
        again = a.post("/v1/members/%s/earn" % m, {"points": 300}, idem=key)
        self.assertEqual((again.status, again.raw), (first.status, first.raw))
        self.assertTrue(again.replayed)
        r = a.post("/v1/orders/%s/refund" % order["id"], {"amount": 5000}, idem=True)
        self.assertEqual(r.status, 201, r)
        rest = H.check_ok(a.post("/v1/transactions/%s/reverse" % first.body["transaction"]["id"],
                                 {"points": 100}, idem=True), 201, "reverse more")
        self.assertEqual(rest["transaction"]["points"], 100)
        self.assertEqual(H.check_ok(a.get("/v1/transactions/%s" % first.body["transaction"]["id"]),
                                    200)["reversed_points"], 150)
        self.assertEqual(rest["transaction"]["reverses"], first.body["transaction"]["id"])
        self.assertEqual(len(rest["transaction"]["id"]), 28)
        self.assertNotIn(rest["transaction"]["id"], ids)
        over = a.post("/v1/transactions/%s/reverse" % part["transaction"]["id"], {}, idem=True)
        self.assertEqual((over.status, over.code), (422, "not_reversible"), over)
        new = H.check_ok(H.earn(a, m, 7), 201, "earn after")["transaction"]["id"]
        self.assertEqual(H.check_ok(a.get("/v1/transactions/%s" % new), 200)["points"], 7)
        # Other digits of time: the same tenant and seq, but not that
        # transaction's id.
        forged = new[:4] + ("0" if new[4] != "0" else "1") + new[5:]
        self.assertEqual(a.get("/v1/transactions/%s" % forged).status, 404)
        self.assertEqual(a.get("/v1/transactions/%s" % (new[:-1] + "z")).status, 404)
        self.assertEqual(a.get("/v1/transactions/%s" % earned["transaction"]["id"]).status, 200)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        env.server.stop()
        db = sqlite3.connect(env.db)
        try:
            db.executescript("DROP TRIGGER tx_old_ids_no_delete;"
                             "DELETE FROM tx_old_ids WHERE id = '%s';" % ids[0])
        finally:
            db.close()
        rc, rep = env.verify()
        self.assertEqual(rc, 1, rep)
        self.assertIn("transaction id that does not lead to its transaction", str(rep))

    def test_v1_store_migrates_to_v2(self):
        """A database of schema version 1 (before rules) gains the rule tables (v2), the
        refund and check-in tables (v3) and the tier tables (v4) on open."""
        import sqlite3
        env = H.start_env(self)
        m = H.create_member(env.admin)
        H.check_ok(H.earn(env.admin, m["id"], 5), 201, "earn before")
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11 + UNDO_V10 +
                         UNDO_V8 + UNDO_V7 +
                         "DROP TABLE tier_configs; DROP TABLE tier_changes; DROP TABLE events;"
                         "DROP INDEX members_tier_eval; DROP INDEX members_tier;"
                         "ALTER TABLE members DROP COLUMN tier;"
                         "ALTER TABLE members DROP COLUMN tier_since;"
                         "ALTER TABLE members DROP COLUMN tier_eval_at;"
                         "ALTER TABLE members DROP COLUMN tier_manual;"
                         "ALTER TABLE members DROP COLUMN tier_override_until;"
                         "DROP INDEX refunds_member;"
                         "DROP TABLE order_lines; DROP TABLE refunds; DROP TABLE refund_lines;"
                         "DROP TABLE refund_transactions; DROP TABLE checkins; DROP TABLE bonus_grants;"
                         "DROP TABLE campaigns;"
                         "DROP INDEX members_referred_by;"
                         "ALTER TABLE members DROP COLUMN referred_by;"
                         "DROP TABLE awards; DROP TABLE rule_versions; DROP TABLE rules;"
                         "ALTER TABLE programs DROP COLUMN max_points_per_order;"
                         "UPDATE meta SET value = '1' WHERE key = 'schema_version';")
        db.commit()
        db.close()
        env.start_server()
        self.assertEqual(rule_ids(env.admin), [])
        create_rule(env.admin, RATE)
        b = H.check_ok(H.earn(env.admin, m["id"], order=order("o-mig", amount=500)), 201, "")
        self.assertEqual(b["transaction"]["points"], 5)
        self.assertEqual(H.points_of(env.admin, m["id"])["available"], 10)
        db = sqlite3.connect(env.db)
        self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
        with self.assertRaises(sqlite3.DatabaseError):
            db.execute("UPDATE rule_versions SET body = '{}'")
        db.close()

    def test_v5_lots_rebuilt_with_closed_flag(self):
        """Version 6 rebuilds the lots table with a closed flag (emptied or expired) and
        one index of a member's lots in place of two.  A v5 database with an open, an
        emptied and an expired lot keeps every lot and its seq, flags them right, answers
        the same points and lots, and refuses a flag that disagrees with the lot."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        t0 = H.parse_time(H.check_ok(a.get("/v1/test/clock"), 200)["now"])
        m = H.create_member(a)["id"]
        H.check_ok(a.post("/v1/members/%s/earn" % m, {"points": 30, "expires_at":
                                                      H.fmt_time(t0 + 1000)}, idem=True), 201)
        H.check_ok(H.earn(a, m, 100), 201, "earn 100")
        H.check_ok(H.earn(a, m, 50), 201, "earn 50")
        H.check_ok(a.put("/v1/test/clock", {"now": H.fmt_time(t0 + 2000)}), 200)
        H.check_ok(a.post("/v1/expiry/run", {}), 200, "expiry")
        H.check_ok(H.redeem(a, m, 100), 201, "redeem")
        before = sorted((x["id"], x["remaining"], x["status"])
                        for x in H.list_all(a, "/v1/members/%s/lots" % m, {"status": "all"}))
        env.server.stop()
        db = sqlite3.connect(env.db)
        seqs = dict(db.execute("SELECT id, seq FROM lots"))
        db.executescript(
            UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11 + UNDO_V10 + UNDO_V8 + UNDO_V7 +
            "CREATE TABLE lots_v5(seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,"
            " id TEXT NOT NULL, member_id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
            " amount INTEGER NOT NULL CHECK(amount > 0), remaining INTEGER NOT NULL"
            " CHECK(remaining >= 0 AND remaining <= amount), available_at INTEGER NOT NULL,"
            " expires_at INTEGER, expired_tx_seq INTEGER, created_at INTEGER NOT NULL,"
            " UNIQUE(tenant_id, id)) STRICT;"
            "INSERT INTO lots_v5 SELECT seq, tenant_id, id, member_id, tx_seq, amount, remaining,"
            " available_at, expires_at, expired_tx_seq, created_at FROM lots;"
            "DROP TABLE lots; ALTER TABLE lots_v5 RENAME TO lots;"
            "CREATE INDEX lots_member ON lots(tenant_id, member_id, expires_at);"
            "CREATE INDEX lots_due ON lots(tenant_id, expires_at) WHERE remaining > 0"
            " AND expired_tx_seq IS NULL AND expires_at IS NOT NULL;"
            "CREATE INDEX lots_open ON lots(tenant_id, member_id, expires_at, available_at,"
            " remaining) WHERE remaining > 0 AND expired_tx_seq IS NULL;"
            "CREATE INDEX lots_pending ON lots(tenant_id, member_id, available_at, expires_at,"
            " remaining) WHERE remaining > 0 AND expired_tx_seq IS NULL"
            " AND available_at > created_at;"
            "UPDATE meta SET value = '5' WHERE key = 'schema_version';")
        db.commit()
        db.close()
        env.start_server()
        # The test clock starts again from the real time; put it back after the redeem.
        H.check_ok(a.put("/v1/test/clock", {"now": H.fmt_time(t0 + 3000)}), 200)
        after = sorted((x["id"], x["remaining"], x["status"])
                       for x in H.list_all(a, "/v1/members/%s/lots" % m, {"status": "all"}))
        self.assertEqual(after, before)
        self.assertEqual([x["remaining"] for x in
                          H.list_all(a, "/v1/members/%s/lots" % m, {"status": "open"})], [50])
        self.assertEqual(H.points_of(a, m)["available"], 50)
        H.check_ok(H.redeem(a, m, 50), 201, "redeem after")
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(dict(db.execute("SELECT id, seq FROM lots")), seqs)
            self.assertEqual(sorted(r[0] for r in db.execute("SELECT closed FROM lots")),
                             [1, 1, 1])
            self.assertEqual(sorted(r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'lots' AND type = 'index'"
                " AND sql IS NOT NULL")), ["lots_pending"])  # lots_due gone in version 18
            with self.assertRaises(sqlite3.IntegrityError):
                db.execute("UPDATE lots SET closed = 0")
        finally:
            db.close()


    def test_v6_member_state_built(self):
        """Version 7 moves a member's account balances, lot entries and transaction
        entries into member_state.  A v6 database with expired, spent, held, transferred
        and growth points answers the same points, lots and history after the migration,
        passes `jifen verify` (which checks the mirror both ways), keeps only program
        accounts in the accounts table, and goes on taking writes."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        t0 = H.parse_time(H.check_ok(a.get("/v1/test/clock"), 200)["now"])
        m, n = H.create_member(a)["id"], H.create_member(a)["id"]
        # A rolling window: the tier view sums growth through the member's transactions.
        H.check_ok(a.put("/v1/tiers", {"basis": "growth", "window": {
            "type": "rolling_months", "months": 12}, "tiers": [
                {"code": "silver", "name": "Silver", "name_zh": "银卡", "threshold": 0},
                {"code": "gold", "name": "Gold", "name_zh": "金卡", "threshold": 1000}]}), 200)
        H.check_ok(a.post("/v1/members/%s/earn" % m, {"points": 30, "expires_at":
                                                      H.fmt_time(t0 + 1000)}, idem=True), 201)
        H.check_ok(H.earn(a, m, 100, growth=70), 201, "earn 100")
        H.check_ok(H.earn(a, m, 50), 201, "earn 50")
        H.check_ok(a.put("/v1/test/clock", {"now": H.fmt_time(t0 + 2000)}), 200)
        H.check_ok(a.post("/v1/expiry/run", {}), 200, "expiry")
        H.check_ok(H.redeem(a, m, 60), 201, "redeem")
        H.check_ok(a.post("/v1/members/%s/transfer" % m, {"to_member_id": n, "points": 20},
                          idem=True), 201, "transfer")
        H.check_ok(a.post("/v1/members/%s/holds" % m, {"points": 10}, idem=True), 201, "hold")

        def state():
            return ([H.points_of(a, x) for x in (m, n)],
                    [sorted((y["id"], y["remaining"], y["status"]) for y in
                            H.list_all(a, "/v1/members/%s/lots" % x, {"status": "all"}))
                     for x in (m, n)],
                    [[y["id"] for y in H.list_all(a, "/v1/members/%s/transactions" % x)]
                     for x in (m, n)],
                    H.check_ok(a.get("/v1/members/%s/tier" % m), 200)["growth"])
        before = state()
        self.assertEqual(before[0][0]["held"], 10)
        self.assertEqual(before[0][1]["available"], 20)
        self.assertEqual([len(x) for x in before[2]], [7, 1])  # n: the transfer
        self.assertEqual(before[3], {"window": 70, "lifetime": 70})
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11 + UNDO_V10 +
                         UNDO_V8 + UNDO_V7)
        db.commit()
        db.close()
        env.start_server()
        H.check_ok(a.put("/v1/test/clock", {"now": H.fmt_time(t0 + 3000)}), 200)
        # points_of answers as of the clock; compare everything but that.
        after = state()
        for x in before[0] + after[0]:
            x.pop("as_of", None)
        self.assertEqual(after, before)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute("SELECT count(*) FROM accounts WHERE account LIKE"
                                        " 'member:%'").fetchone()[0], 0)
            self.assertEqual(db.execute("SELECT count(*) FROM member_lots").fetchone()[0],
                             db.execute("SELECT count(*) FROM lots").fetchone()[0])
            self.assertEqual(sorted(r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND"
                " name IN ('tx_member', 'tx_counterparty', 'lots_member')")), [])
        finally:
            db.close()
        H.check_ok(H.redeem(a, n, 20), 201, "redeem after")
        self.assertEqual(H.points_of(a, n)["balance"], 0)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v7_responses_apart_from_keys(self):
        """Version 8 stores each key's response in `responses`, apart from the key.  After
        the migration a replay of a key answers the same bytes as before it, a key reused
        with another body is still refused, new keys work, `jifen verify` passes, and a
        key's created_at, which version 7 cut to 32 bits, is the time of its transaction."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m = H.create_member(a)["id"]
        first = a.post("/v1/members/%s/earn" % m, {"points": 40}, idem="mig-k1")
        H.check_ok(first, 201, "earn")
        H.check_ok(H.redeem(a, m, 15), 201, "redeem")
        env.server.stop()
        db = sqlite3.connect(env.db)
        undo_v19(db, {"mig-k1": first.raw})
        db.executescript(UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11 + UNDO_V10 + UNDO_V8)
        db.commit()
        self.assertTrue(db.execute("SELECT count(*) FROM idempotency WHERE created_at"
                                   " BETWEEN -2147483648 AND 2147483647").fetchone()[0] >= 2)
        self.restart_upgrading(env, db, 7)
        again = a.post("/v1/members/%s/earn" % m, {"points": 40}, idem="mig-k1")
        self.assertEqual((again.status, again.raw), (first.status, first.raw))
        self.assertEqual(again.headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(a.post("/v1/members/%s/earn" % m, {"points": 41},
                                idem="mig-k1").status, 422)
        H.check_ok(H.earn(a, m, 5), 201, "earn after")
        self.assertEqual(H.points_of(a, m)["balance"], 30)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute(
                "SELECT count(*) FROM idempotency i JOIN transactions t ON t.tenant_id ="
                " i.tenant_id AND t.id = i.tx_id WHERE i.created_at <> t.created_at"
                ).fetchone()[0], 0)
            self.assertGreaterEqual(db.execute(
                "SELECT count(*) FROM idempotency WHERE tx_id IS NOT NULL").fetchone()[0], 3)
            with self.assertRaises(sqlite3.DatabaseError):
                db.execute("UPDATE responses SET body = '{}'")
        finally:
            db.close()

    def test_v8_checks_without_in_lists(self):
        """Version 9 spells each CHECK's IN list as comparisons joined by OR, because
        SQLite builds an ephemeral B-tree for every row it checks against an IN list of
        three or more constants.  After the upgrade no table keeps an IN list, the
        constraints still refuse what they refused, the earlier ledger reads and verifies,
        and new writes work."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m = H.create_member(a)["id"]
        H.check_ok(H.earn(a, m, 40), 201, "earn")
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11 + UNDO_V10)
        undo_v9(db)
        self.assertGreaterEqual(db.execute("SELECT count(*) FROM sqlite_schema WHERE sql LIKE"
                                           " '%CHECK(kind IN (0, 1, 2))%'").fetchone()[0], 1)
        self.restart_upgrading(env, db, 8)
        H.check_ok(H.redeem(a, m, 15), 201, "redeem after")
        self.assertEqual(H.points_of(a, m)["balance"], 25)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        db = sqlite3.connect(env.db, isolation_level=None)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute("SELECT count(*) FROM sqlite_schema"
                                        " WHERE sql LIKE '%CHECK(% IN (%'").fetchone()[0], 0)
            db.execute("BEGIN")
            with self.assertRaisesRegex(sqlite3.IntegrityError, "CHECK constraint failed"):
                db.execute("INSERT INTO member_state VALUES(1, 3, 0, 0, 0, 0, 0)")
            with self.assertRaisesRegex(sqlite3.IntegrityError, "CHECK constraint failed"):
                db.execute("UPDATE members SET status = 'gone'")
            db.execute("ROLLBACK")
        finally:
            db.close()

    def test_v9_member_state_by_member_seq(self):
        """Version 10 keys member_state by the member's seq instead of the tenant and the
        member's id.  After the upgrade every member keeps its points, lots and history
        (a transfer's counterparty included), `jifen verify` passes, and writes work.  An
        entry whose member does not exist stops the upgrade and leaves the file at
        version 9."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m1, m2 = H.create_member(a)["id"], H.create_member(a)["id"]
        H.check_ok(H.earn(a, m1, 70), 201, "earn")
        H.check_ok(H.earn(a, m2, 20), 201, "earn")
        H.check_ok(H.redeem(a, m1, 15), 201, "redeem")
        H.check_ok(a.post("/v1/members/%s/transfer" % m1, {"to_member_id": m2, "points": 5},
                          idem=True), 201, "transfer")
        def state(m):
            pts = dict(H.points_of(a, m))
            pts.pop("as_of")  # the time of the answer
            return (pts, a.get("/v1/members/%s/transactions" % m).raw,
                    a.get("/v1/members/%s/lots" % m).raw)
        before = {m: state(m) for m in (m1, m2)}
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11 + UNDO_V10)
        entries = db.execute("SELECT count(*) FROM member_state").fetchone()[0]
        db.execute("INSERT INTO member_state VALUES(1, 'mem_nobody', 2, 1, 0, 0, 0, NULL)")
        db.commit()
        db.close()
        with self.assertRaises(AssertionError):
            env.start_server()
        self.assertIn("1 of its entries name a member that does not exist",
                      env.server.stderr_tail())
        db = sqlite3.connect(env.db)
        self.assertEqual(meta_version(db), "9")
        self.assertEqual(db.execute("SELECT count(*) FROM member_state").fetchone()[0],
                         entries + 1)
        db.execute("DELETE FROM member_state WHERE member_id = 'mem_nobody'")
        db.commit()
        self.restart_upgrading(env, db, 9)
        for m in (m1, m2):
            self.assertEqual(state(m), before[m])
        H.check_ok(H.redeem(a, m2, 25), 201, "redeem after")
        self.assertEqual(H.points_of(a, m2)["balance"], 0)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            # The redeem's transaction entry; its two lots' entries closed in place.
            self.assertEqual(db.execute("SELECT count(*) FROM member_state").fetchone()[0],
                             entries + 1)
        finally:
            db.close()

    def test_v10_transaction_entries_carry_window_sums(self):
        """Version 11 gives each transaction entry in member_state its time, its order
        amount, whether it is an order earn, and the member's growth in it, which a tier
        window sums.  A v10 database (those columns 0) upgrades to the same entries the
        writer makes, with a refund's negative growth and a transfer's counterparty (who
        gets no growth or spend from it); every member's tier view is unchanged, and
        `jifen verify` passes."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        tiers = {"basis": "growth", "window": {"type": "rolling_months", "months": 12},
                 "tiers": [{"code": "silver", "name": "Silver", "name_zh": "S", "threshold": 0},
                           {"code": "gold", "name": "Gold", "name_zh": "G", "threshold": 1000,
                            "spend_threshold": 90000},
                           {"code": "diamond", "name": "Diamond", "name_zh": "D",
                            "threshold": 5000, "orders_threshold": 4}]}
        H.check_ok(a.put("/v1/tiers", tiers), 200, "tiers")
        m1, m2 = H.create_member(a)["id"], H.create_member(a)["id"]
        for i, amount in enumerate((30000, 20000, 700)):
            H.check_ok(H.earn(a, m1, order=order("w%d" % i, amount=amount)), 201, "order earn")
        H.check_ok(H.earn(a, m1, 40, growth=25), 201, "growth earn")
        H.check_ok(H.earn(a, m2, 10, order={"id": "w-no-amount"}), 201, "order without amount")
        H.check_ok(a.post("/v1/orders/w0/refund", {"amount": 10000}, idem=True), 201, "refund")
        H.check_ok(a.post("/v1/members/%s/transfer" % m1, {"to_member_id": m2, "points": 5},
                          idem=True), 201, "transfer")

        def views():
            out = {}
            for m in (m1, m2):
                v = H.check_ok(a.get("/v1/members/%s/tier" % m), 200, "tier")
                del v["window"]["from"], v["window"]["to"]  # the time of the answer
                out[m] = v
            return out
        before = views()
        self.assertEqual((before[m1]["spend"], before[m1]["orders"]), (40700, 3), before)
        self.assertEqual((before[m2]["spend"], before[m2]["orders"]), (0, 1), before)
        env.server.stop()
        db = sqlite3.connect(env.db)
        q = "SELECT member_seq, key1, key2, key3, key4, value FROM member_state WHERE kind = 2"
        entries = db.execute(q).fetchall()
        growth = {r[5] for r in entries}
        self.assertTrue({25, 0}.issubset(growth) and min(growth) < 0, entries)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12 + UNDO_V11)
        self.restart_upgrading(env, db, 10)
        self.assertEqual(views(), before)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute(q).fetchall(), entries)
        finally:
            db.close()
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v11_rule_usage_and_award_caps_built(self):
        """Version 12 keeps each rule's usage (budgets) and the awards of rules with a
        per-member limit in tables of their own.  A v11 database upgrades to exactly the
        rows the writer keeps, verify passes, and the limit and the budget go on counting
        what was awarded before the upgrade."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        archive_all(a)
        capped = create_rule(a, {"name": "twice a day", "trigger": "purchase",
                                 "effect": {"type": "fixed", "points": 10},
                                 "limits": {"per_member": {"period": "day", "max_awards": 2}}})
        budget = create_rule(a, {"name": "budget", "trigger": "purchase", "priority": -1,
                                 "effect": {"type": "fixed", "points": 7},
                                 "limits": {"budget": {"max_points": 30}}})
        m1, m2 = H.create_member(a)["id"], H.create_member(a)["id"]
        for i, mid in enumerate((m1, m2, m1)):
            H.check_ok(H.earn(a, mid, order=order("u%d" % i, amount=100)), 201, "earn")
        env.server.stop()
        db = sqlite3.connect(env.db)
        tables = ("SELECT * FROM rule_usage ORDER BY 1, 2", "SELECT * FROM award_caps ORDER BY 5")
        kept = [db.execute(q).fetchall() for q in tables]
        self.assertEqual(kept[0], sorted([(1, capped["id"], 30, 3), (1, budget["id"], 21, 3)]))
        self.assertEqual(len(kept[1]), 3, kept)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13 + UNDO_V12)
        self.restart_upgrading(env, db, 11)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual([db.execute(q).fetchall() for q in tables], kept)
        finally:
            db.close()
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

        def awards(mid, oid):
            b = H.check_ok(H.earn(a, mid, order=order(oid, amount=100)), 201, oid)
            return {x["rule_id"]: x["points"] for x in b["transaction"]["awards"]}
        got = awards(m1, "u3")
        self.assertEqual((got.get(capped["id"], 0), got.get(budget["id"], 0)), (0, 7))
        got = awards(m2, "u4")
        self.assertEqual((got.get(capped["id"], 0), got.get(budget["id"], 0)), (10, 2))

    def test_v12_expiry_moves_onto_the_lot(self):
        """Version 13 records what an expired lot lost on the lot (expired_amount)
        instead of a consumption by the expiry.  A v12 database upgrades to exactly
        what the writer now writes: the same lots, no expiry consumptions, the same
        transaction views and points as of any time, and verify passes."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m1, m2 = H.create_member(a)["id"], H.create_member(a)["id"]
        now = H.clock_now(a)
        exp = H.fmt_time(now + 86400000)
        H.check_ok(H.earn(a, m1, 100, expires_at=exp), 201, "earn")
        H.check_ok(H.earn(a, m1, 50, expires_at=exp), 201, "earn")
        H.check_ok(H.redeem(a, m1, 30), 201, "redeem")
        H.check_ok(H.earn(a, m2, 40, expires_at=exp), 201, "earn")
        H.check_ok(H.earn(a, m2, 10), 201, "earn")
        H.clock_advance(a, 2 * 86400000)
        b = H.check_ok(a.post("/v1/expiry/run", {}), 200, "expiry")
        self.assertEqual((b["lots"], b["expired_points"]), (3, 160))
        before, after = H.fmt_time(now + 3600000), H.fmt_time(H.clock_now(a))

        def seen():
            ts = [t for mid in (m1, m2)
                  for t in H.list_all(a, "/v1/members/%s/transactions" % mid, {})]
            views = {t["id"]: a.get("/v1/transactions/%s" % t["id"]).body for t in ts}
            pts = [H.points_of(a, mid, as_of=at) for mid in (m1, m2) for at in (before, after)]
            return views, pts
        kept = seen()
        expired = [v for v in kept[0].values() if v["type"] == "expire"]
        lost = [c["amount"] for v in expired for c in v["consumptions"]]
        self.assertEqual((len(lost), sum(lost)), (3, 160))
        self.assertEqual([(p["balance"], p["available"]) for p in kept[1]],
                         [(120, 120), (0, 0), (50, 50), (10, 10)])
        env.server.stop()
        db = sqlite3.connect(env.db)
        lots = "SELECT seq, remaining, expired_tx_seq, expired_amount FROM lots ORDER BY seq"
        expiry_consumptions = ("SELECT count(*) FROM consumptions c JOIN transactions x"
                               " ON x.tenant_id = c.tenant_id AND x.seq = c.tx_seq"
                               " WHERE x.type = 'expire'")
        kept_lots = db.execute(lots).fetchall()
        self.assertEqual(sorted(r[3] for r in kept_lots if r[3] is not None), sorted(lost))
        self.assertEqual(db.execute(expiry_consumptions).fetchone()[0], 0)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14 + UNDO_V13)
        self.assertEqual(db.execute(expiry_consumptions).fetchone()[0], 3)
        self.restart_upgrading(env, db, 12)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(db.execute(lots).fetchall(), kept_lots)
            self.assertEqual(db.execute(expiry_consumptions).fetchone()[0], 0)
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
        finally:
            db.close()
        self.assertEqual(seen(), kept)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)


    def test_v13_gains_the_indexes_of_orders_and_birthdays(self):
        """Version 14 adds the indexes a refund (an order's redeems and holds, a
        hold's captures) and the birthday sweep look up by; before them the
        planner read every transaction, or every member, of the tenant."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        mid = H.create_member(a)["id"]
        H.check_ok(H.earn(a, mid, order={"id": "V14", "amount": 10000, "currency": "CNY"}),
                   201, "order earn")
        env.server.stop()
        names = ("SELECT name FROM sqlite_master WHERE type = 'index' AND name IN"
                 " ('tx_order_redeem', 'tx_order_hold', 'tx_hold_capture', 'members_birthday')")
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15 + UNDO_V14)
        self.assertEqual(db.execute(names).fetchall(), [])
        self.restart_upgrading(env, db, 13)
        db = sqlite3.connect(env.db)
        try:
            # The order's two indexes are one since version 20 (tx_order).
            self.assertEqual(sorted(r[0] for r in db.execute(names)),
                             ["members_birthday", "tx_hold_capture"])
            self.assertEqual(db.execute("SELECT count(*) FROM sqlite_master WHERE name ="
                                        " 'tx_order'").fetchone()[0], 1)
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
        finally:
            db.close()
        r = H.check_ok(a.post("/v1/orders/V14/refund", {"amount": 10000}, idem=True), 201,
                       "refund")
        self.assertEqual(r["points"]["available"], 0)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v18_stored_answers_kept(self):
        """Version 19 keeps the answers stored before it: their keys replay them byte
        for byte; writes after it keep an earn's or a redeem's answer as points only
        (response_seq -1), and both kinds of key replay and verify."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m = H.create_member(a)["id"]
        old = [(H.idem_key("e"), "earn", {"points": 50}), (H.idem_key("r"), "redeem",
                                                           {"points": 20})]
        first = {}
        for key, op, body in old:
            r = a.post("/v1/members/%s/%s" % (m, op), body, idem=key)
            self.assertEqual(r.status, 201, r)
            first[key] = r.raw
        env.server.stop()
        db = sqlite3.connect(env.db)
        undo_v19(db, first)
        self.restart_upgrading(env, db, 18)
        new_key = H.idem_key("n")
        again_new = H.check_ok(H.earn(a, m, 5, idem=new_key), 201, "earn after")
        for key, op, body in old:
            r = a.post("/v1/members/%s/%s" % (m, op), body, idem=key)
            self.assertEqual((r.status, r.raw), (201, first[key]), op)
            self.assertTrue(r.replayed)
        r = H.earn(a, m, 5, idem=new_key)
        self.assertEqual(r.body, again_new)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            seqs = dict(db.execute("SELECT key, response_seq FROM idempotency").fetchall())
        finally:
            db.close()
        self.assertGreater(seqs[old[0][0]], 0)
        self.assertGreater(seqs[old[1][0]], 0)
        self.assertEqual(seqs[new_key], -1)
        self.assertEqual(H.points_of(a, m)["available"], 35)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v17_due_entries_built_from_the_lots(self):
        """Version 18 gives each member with an open lot that expires one due entry at
        its earliest such lot (an emptied lot, a lot that never expires and an expired
        one do not count), drops lots_due, and the expiry then finds the members by
        their entries: what was due expires, once, and the rest later."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        day = 86400000
        t0 = H.clock_now(a)
        at = lambda d: H.fmt_time(t0 + d * day)  # noqa: E731
        m, n, k, z = (H.create_member(a)["id"] for _ in range(4))
        H.check_ok(H.earn(a, m, 10, expires_at=at(5)), 201, "m: 10 on day 5")
        H.check_ok(H.earn(a, m, 20, expires_at=at(9)), 201, "m: 20 on day 9")
        H.check_ok(H.earn(a, n, 7, expires_at=at(3)), 201, "n: 7 on day 3")
        H.check_ok(H.earn(a, n, 8, expires_at=at(12)), 201, "n: 8 on day 12")
        H.check_ok(H.redeem(a, n, 7), 201, "n spends the lot of day 3")
        H.check_ok(H.earn(a, k, 4, expires_at=at(1)), 201, "k: 4 on day 1")
        H.check_ok(H.earn(a, z, 6), 201, "z: points that never expire")
        H.clock_set(a, t0 + 2 * day)
        H.check_ok(a.post("/v1/expiry/run", {}, idem=True), 200, "k's lot expires")
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18)
        self.restart_upgrading(env, db, 17)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute("SELECT count(*) FROM sqlite_master WHERE name ="
                                        " 'lots_due'").fetchone()[0], 0)
            got = dict(db.execute("SELECT m.id, d.due_at FROM member_due d JOIN members m"
                                  " ON m.seq = d.member_seq").fetchall())
            rows = dict(db.execute("SELECT m.id, s.value FROM member_state s JOIN members m"
                                   " ON m.seq = s.member_seq WHERE s.kind = 0 AND s.key1 = 3"
                                   ).fetchall())
        finally:
            db.close()
        self.assertEqual(got, {m: t0 + 5 * day, n: t0 + 12 * day})
        self.assertEqual(rows, got)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        H.clock_set(a, t0 + 10 * day)
        r = H.check_ok(a.post("/v1/expiry/run", {}, idem=True), 200, "expiry on day 10")
        self.assertEqual((r["lots"], r["expired_points"]), (2, 30))
        self.assertEqual([H.points_of(a, x)["balance"] for x in (m, n, k, z)], [0, 8, 0, 6])
        H.clock_set(a, t0 + 13 * day)
        r = H.check_ok(a.post("/v1/expiry/run", {}, idem=True), 200, "expiry on day 13")
        self.assertEqual((r["lots"], r["expired_points"]), (1, 8))
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v16_lots_copied_without_their_id_index(self):
        """Version 17 copies lots into a table without UNIQUE(tenant_id, id): every lot,
        its seq (which consumptions name) and its state are kept."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        m = H.create_member(a)["id"]
        for points in (40, 25, 10):
            H.check_ok(H.earn(a, m, points), 201, "earn")
        H.check_ok(H.redeem(a, m, 50), 201, "redeem across two lots")
        lots = H.check_ok(a.get("/v1/members/%s/lots" % m), 200, "lots")["data"]
        env.server.stop()
        unique = ("SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                  " AND tbl_name = 'lots' AND name LIKE 'sqlite_autoindex_lots%'")
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17)
        self.assertEqual(db.execute(unique).fetchone()[0], 1)
        rows = db.execute("SELECT * FROM lots ORDER BY seq").fetchall()
        self.restart_upgrading(env, db, 16)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute(unique).fetchone()[0], 0)
            self.assertEqual(db.execute("SELECT * FROM lots ORDER BY seq").fetchall(), rows)
        finally:
            db.close()
        self.assertEqual(H.check_ok(a.get("/v1/members/%s/lots" % m), 200, "lots")["data"],
                         lots)
        H.check_ok(H.redeem(a, m, 20), 201, "redeem after")
        self.assertEqual(H.points_of(a, m)["available"], 5)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_v15_postings_stay_rows_and_new_ones_go_in_the_row(self):
        """Version 16 keeps a transaction's postings in its own row; those written
        before stay rows of posting_rows, and reads, reversals (growth taken back)
        and verify see both alike."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        H.check_ok(a.put("/v1/tiers", {"basis": "growth", "window": {"type": "lifetime"},
                                       "tiers": [{"code": "silver", "name": "Silver",
                                                  "threshold": 0},
                                                 {"code": "gold", "name": "Gold",
                                                  "threshold": 150}]}), 200, "tiers")
        m, n = H.create_member(a)["id"], H.create_member(a)["id"]
        old = H.check_ok(H.earn(a, m, 100, growth=100), 201, "earn before")["transaction"]["id"]
        moved = H.check_ok(a.post("/v1/members/%s/transfer" % m, {"to_member_id": n,
                                                                   "points": 30}, idem=True),
                           201, "transfer before")["transaction"]["id"]
        before = {t: H.check_ok(a.get("/v1/transactions/" + t), 200, t)["postings"]
                  for t in (old, moved)}
        self.assertEqual(len(before[old]), 4, before)  # points and growth, both sides
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16)
        self.assertEqual(db.execute("SELECT count(*) FROM postings").fetchone()[0], 6)
        self.restart_upgrading(env, db, 15)
        db = sqlite3.connect(env.db)
        try:
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
            self.assertEqual(db.execute("SELECT count(*) FROM posting_rows").fetchone()[0], 6)
            self.assertEqual(db.execute("SELECT count(*) FROM postings").fetchone()[0], 6)
        finally:
            db.close()
        for t, postings in before.items():
            self.assertEqual(H.check_ok(a.get("/v1/transactions/" + t), 200, t)["postings"],
                             postings)
        new = H.check_ok(H.earn(a, m, 80, growth=80), 201, "earn after")
        self.assertEqual(new["tier_upgrade"]["to"], "gold", new)  # 100 + 80 growth
        rev = H.check_ok(a.post("/v1/transactions/%s/reverse" % old, {"points": 50},
                                idem=True), 201, "reverse an old earn")["transaction"]["id"]
        got = {p["account"]: p["amount"] for p in
               H.check_ok(a.get("/v1/transactions/" + rev), 200, "rev")["postings"]}
        self.assertEqual(got["member:%s:growth" % m], -50, got)
        db = sqlite3.connect(env.db)
        try:
            counts = dict(db.execute("SELECT id, posting_count FROM transactions"))
            self.assertEqual((counts[old], counts[moved]), (0, 0))
            self.assertEqual((counts[new["transaction"]["id"]], counts[rev]), (4, 4))
            self.assertEqual(db.execute("SELECT count(*) FROM posting_rows").fetchone()[0], 6)
        finally:
            db.close()
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)

    def test_referral_codes_keyed_on_a_new_database_and_kept_on_an_old_one(self):
        """Version 15 keys the referral codes by a random key of the database
        (src/core/referral.h): a new database has one, and its codes are not
        the unkeyed ones anybody can compute; a database that had members
        before keeps their codes, which are printed and shared."""
        import sqlite3
        env = H.start_env(self)
        a = env.admin
        members = [H.create_member(a) for _ in range(3)]
        db = sqlite3.connect(env.db)
        try:
            key = db.execute("SELECT value FROM meta WHERE key = 'referral_key'").fetchone()
            seqs = {r[0]: r[1] for r in db.execute("SELECT id, seq FROM members")}
        finally:
            db.close()
        self.assertRegex(key[0], "^[0-9a-f]{32}$")
        for m in members:
            self.assertNotEqual(m["referral_code"], unkeyed_code(seqs[m["id"]]))
        linked = H.create_member(a, referral_code=members[0]["referral_code"])
        self.assertEqual(linked["referred_by"], members[0]["id"])
        env.server.stop()
        db = sqlite3.connect(env.db)
        db.executescript(UNDO_V24 + UNDO_V23 + UNDO_V22 + UNDO_V21 + UNDO_V20 + UNDO_V19 + UNDO_V18 + UNDO_V17 + UNDO_V16 + UNDO_V15)
        self.restart_upgrading(env, db, 14)
        db = sqlite3.connect(env.db)
        try:
            self.assertIsNone(db.execute("SELECT value FROM meta WHERE key = 'referral_key'")
                              .fetchone())
            self.assertEqual(meta_version(db), str(SCHEMA_VERSION))
        finally:
            db.close()
        for m in members:
            code = H.member_of(a, m["id"])["referral_code"]
            self.assertEqual(code, unkeyed_code(seqs[m["id"]]))
        linked = H.create_member(a, referral_code=unkeyed_code(seqs[members[1]["id"]]))
        self.assertEqual(linked["referred_by"], members[1]["id"])
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)


def unkeyed_code(seq):
    """A member's referral code without a key: the fixed bijection of
    src/core/referral.c written apart, as databases from before version 15
    show them."""
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    v = ((seq ^ 0x2A5F3C91B7) * 0x5DEECE66D) & ((1 << 39) - 1)
    out = ""
    for _ in range(8):
        out = alphabet[v % 31] + out
        v //= 31
    return out


if __name__ == "__main__":
    unittest.main()
