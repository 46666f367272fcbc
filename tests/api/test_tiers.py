"""Tiers and growth value (成长值) over HTTP (docs/TIERS.md): PUT/GET /v1/tiers
versions, roles and validation codes; the member tier view's fields; growth from
explicit earns (also in a batch, replayed once), orders at the base rate, rules
(rule-level "growth", growth-only rules, event triggers), never moved by
redeeming, holding or transferring; upgrades in the transaction that crosses a
growth, spend or orders threshold, with history row and tier.upgraded event;
downgrades, retention and idempotency at anniversary and period-end (local
1 January) evaluations, late runs, as_of, one_level vs to_qualified, more than
one slice of 500; manual tiers and overrides; all-or-nothing imports of up to
1,000 entries; the tier and birthday multipliers stacking with a double-points
rule under the order cap, member_tiers_any; refunds and reversals taking growth
back (ceil on the running total, never below 0 in a window) without demoting
until evaluation; tier_in_use; history capped at 100; the event log's filters
and cursor; 32 concurrent earns crossing the threshold exactly once; `jifen
tiers evaluate|member`.

Every test starts its own server and database (jifen_harness.start_env), with
the test clock set to 2028-01-10T00:00:00Z (skipped if the clock is already
later) and moved forward only (the CLI test keeps the real clock).  No timing
thresholds, nothing random.
Run: python3 tests/api/test_tiers.py [-v]   (binary: build/jifen or $JIFEN_BIN)"""

import json
import os
import sys
import threading
import unittest
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

DAY = H.DAY_MS
HOUR = 3600 * 1000
T0 = H.parse_time("2028-01-10T00:00:00Z")


def add_months(ms, n):
    """ms + n calendar months (UTC, same day of month; the tests use day 10/11)."""
    dt = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    y, m = divmod(dt.month - 1 + n, 12)
    return int(dt.replace(year=dt.year + y, month=m + 1).timestamp() * 1000)


T1 = T0 + DAY  # 2028-01-11: the day the evaluated members cross into their tier
EVAL1 = add_months(T1, 12)  # 2029-01-11T00:00:00Z: their first anniversary

RATE = {"name": "1 point per yuan", "trigger": "purchase", "priority": 100,
        "effect": {"type": "rate", "points": 1, "per_amount": 100}}
DOUBLE = {"name": "double points", "trigger": "purchase", "priority": 50,
          "effect": {"type": "multiplier", "factor_num": 2, "factor_den": 1}}


def tiers_body(window=None, evaluation=None, downgrade=None, gold_benefits=None,
               drop=(), gold_retain=800):
    """silver 0 / gold 1000 (retain 800) / diamond 5000."""
    gold = {"code": "gold", "name": "Gold", "name_zh": "金卡", "threshold": 1000}
    if gold_retain is not None:
        gold["retain"] = gold_retain
    if gold_benefits is not None:
        gold["benefits"] = gold_benefits
    tiers = [{"code": "silver", "name": "Silver", "name_zh": "银卡", "threshold": 0},
             gold,
             {"code": "diamond", "name": "Diamond", "name_zh": "钻石卡", "threshold": 5000}]
    body = {"basis": "growth", "window": window or {"type": "lifetime"},
            "tiers": [t for t in tiers if t["code"] not in drop]}
    if evaluation is not None:
        body["evaluation"] = evaluation
    if downgrade is not None:
        body["downgrade"] = downgrade
    return body


ROLLING12 = {"type": "rolling_months", "months": 12}


def archive_all(c):
    for r in H.check_ok(c.get("/v1/rules"), 200, "rules")["data"]:
        if r["status"] != "archived":
            H.check_ok(c.post("/v1/rules/%s/archive" % r["id"]), 200, "archive")


def list_events(c, type_, limit=100):
    items, cursor = [], None
    for _ in range(1000):
        p = {"type": type_, "limit": limit}
        if cursor:
            p["cursor"] = cursor
        b = H.check_ok(c.get("/v1/events", params=p), 200, "GET /v1/events %r" % p)
        items.extend(b["data"])
        cursor = b.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError("too many event pages")


class TierTestCase(unittest.TestCase):
    """A fresh server per test; the clock at T0."""

    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        H.clock_set(self.c, max(T0, H.clock_now(self.c)))
        if H.clock_now(self.c) != T0:
            self.skipTest("the test clock is already past 2028-01-10")

    def tearDown(self):
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    # ------------------------------------------------------------ helpers

    def assertProblem(self, r, status, code):
        self.assertEqual((r.status, r.code), (status, code), r)

    def put_tiers(self, body, c=None):
        return H.check_ok((c or self.c).put("/v1/tiers", body), 200, "PUT /v1/tiers")

    def member(self, **kw):
        return H.create_member(self.c, **kw)["id"]

    def earn(self, mid, status=201, **body):
        """POST earn with a fresh Idempotency-Key.  status None: 200 or 201
        (a growth-only earn: the doc does not say whether it is a transaction)."""
        r = self.c.post("/v1/members/%s/earn" % mid, body, idem=True)
        if status is None:
            self.assertIn(r.status, (200, 201), r)
            return r.body
        return H.check_ok(r, status, "earn %r" % body)

    def view(self, mid, c=None):
        return H.check_ok((c or self.c).get("/v1/members/%s/tier" % mid), 200, "tier of %s" % mid)

    def tier(self, mid):
        v = self.view(mid)
        return v["tier"]["code"] if v.get("tier") else None

    def growth(self, mid):
        return self.view(mid)["growth"]

    def history(self, mid):
        return self.view(mid)["history"]

    def evaluate(self, body=None):
        r = self.c.post("/v1/tiers/evaluate", body or {})
        self.assertEqual(r.status, 200, r)
        return r.body

    def set_clock(self, ms):
        self.assertEqual(H.clock_set(self.c, ms), ms)

    def assertTimeEq(self, got, want_ms, what=""):
        self.assertIsNotNone(got, what)
        self.assertEqual(H.parse_time(got), want_ms,
                         "%s: %s != %s" % (what, got, H.fmt_time(want_ms)))

    def reach(self, mid, code, growth, at=T1):
        """growth-1 now, then 1 more (with 1 point) at `at`: the member crosses into
        `code` at `at`, and at most 1 growth lies on the window's start boundary."""
        self.earn(mid, status=None, growth=growth - 1)
        if at != H.clock_now(self.c):
            self.set_clock(at)
        b = self.earn(mid, points=1, growth=1)
        self.assertEqual(self.tier(mid), code)
        return b


# ================================================================ 1. configuration

class ConfigTests(TierTestCase):
    def test_put_get_versions_and_roles(self):
        m = self.member()
        self.assertProblem(self.c.get("/v1/members/%s/tier" % m), 404, "not_found")
        b = self.put_tiers(tiers_body())
        self.assertEqual(b["version"], 1, b)
        got = H.check_ok(self.c.get("/v1/tiers"), 200, "GET /v1/tiers")
        self.assertEqual(got["version"], 1, got)
        self.assertEqual([(t["code"], t["threshold"]) for t in got["tiers"]],
                         [("silver", 0), ("gold", 1000), ("diamond", 5000)])
        self.assertEqual(got["tiers"][1]["name_zh"], "金卡")
        self.assertEqual(got["window"]["type"], "lifetime")
        b2 = self.put_tiers(tiers_body(window=ROLLING12, downgrade="to_qualified"))
        self.assertEqual(b2["version"], 2, b2)
        got = H.check_ok(self.c.get("/v1/tiers"), 200, "GET /v1/tiers")
        self.assertEqual((got["version"], got["window"], got["downgrade"]),
                         (2, ROLLING12, "to_qualified"), got)
        # A member with no recorded tier is in the lowest tier (threshold 0).
        v = self.view(m)
        self.assertEqual((v["member_id"], v["tier"]["code"]), (m, "silver"), v)
        self.assertEqual(v["growth"], {"window": 0, "lifetime": 0}, v)
        self.assertEqual(v["next_tier"]["code"], "gold", v)
        self.assertEqual(v["next_tier"]["growth_needed"], 1000, v)
        # Roles: only admin configures, evaluates and imports.
        _, pos = self.env.key("pos")
        _, op = self.env.key("operator")
        self.assertProblem(pos.put("/v1/tiers", tiers_body()), 403, "forbidden")
        self.assertProblem(op.put("/v1/tiers", tiers_body()), 403, "forbidden")
        self.assertProblem(pos.post("/v1/tiers/evaluate", {}), 403, "forbidden")
        self.assertProblem(pos.post("/v1/tiers/import",
                                    {"members": [{"member_id": m, "tier": "gold"}]}),
                           403, "forbidden")
        self.assertEqual(H.check_ok(self.c.get("/v1/tiers"), 200, "get")["version"], 2)
        self.assertEqual(self.tier(m), "silver")
        # Another tenant sees no configuration of t1 and not t1's member.
        self.assertEqual(self.env.admin2.get("/v1/members/%s/tier" % m).status, 404)

    def test_member_tier_view_has_every_documented_field(self):
        # Every field of the GET example in docs/TIERS.md (all required in docs/openapi.yaml
        # MemberTier), also when no tier has a spend or orders threshold.
        self.put_tiers(tiers_body())
        m = self.member()
        self.earn(m, points=1, growth=1000)
        fields = {"member_id", "tier", "since", "manual", "override_until", "window", "growth",
                  "spend", "orders", "next_tier", "next_evaluation_at", "if_evaluated_now",
                  "history"}
        v = self.view(m)
        self.assertEqual(fields - set(v), set(), v)
        self.assertEqual((v["spend"], v["orders"]), (0, 0), v)
        self.assertEqual(set(v["history"][0]), {"id", "from", "to", "kind", "reason", "growth",
                                                "transaction_id", "actor", "until", "at"}, v)
        self.assertEqual(set(v["if_evaluated_now"]), {"decision", "tier", "explanation"}, v)

    def test_perks_and_rewards_are_kept_and_shown_to_members(self):
        # docs/TIERS.md: benefits.perks ([{"en", "zh"}], zh optional) and benefits.rewards
        # (reward ids) are stored with the configuration and shown in the member's tier.
        benefits = {"earn_multiplier": {"num": 3, "den": 2},
                    "perks": [{"en": "Free shipping", "zh": "包邮"}, {"en": "Lounge"}],
                    "rewards": ["rwd_lounge", "r" * 31]}
        self.put_tiers(tiers_body(gold_benefits=benefits))
        got = H.check_ok(self.c.get("/v1/tiers"), 200, "get")
        gold = [t for t in got["tiers"] if t["code"] == "gold"][0]
        self.assertEqual((gold["benefits"]["perks"], gold["benefits"]["rewards"]),
                         (benefits["perks"], benefits["rewards"]))
        m = self.member()
        silver = self.view(m)["tier"]
        self.assertEqual((silver["code"], silver.get("benefits", {}).get("perks")),
                         ("silver", None))
        self.earn(m, points=1, growth=1000)
        tier = self.view(m)["tier"]
        self.assertEqual(tier["code"], "gold")
        self.assertEqual((tier["benefits"]["perks"], tier["benefits"]["rewards"]),
                         (benefits["perks"], benefits["rewards"]))

    def test_validation_codes(self):
        def with_tiers(fn):
            b = tiers_body()
            fn(b["tiers"])
            return b

        def gold(**kw):
            return lambda ts: ts[1].update(kw)

        cases = [
            ("thresholds not increasing",
             with_tiers(lambda ts: ts[2].update(threshold=1000)), "invalid_field"),
            ("thresholds descending",
             with_tiers(lambda ts: ts.reverse()), "invalid_field"),
            ("duplicate codes", with_tiers(lambda ts: ts[2].update(code="gold")),
             "invalid_field"),
            ("bad code characters", with_tiers(gold(code="Gold!")), "invalid_field"),
            ("code too long", with_tiers(gold(code="g" * 33)), "invalid_field"),
            ("unknown field", dict(tiers_body(), colour="red"), "unknown_field"),
            ("unknown tier field", with_tiers(gold(colour="red")), "unknown_field"),
            ("retain > threshold", with_tiers(gold(retain=1001)), "invalid_field"),
            ("rolling_months without months",
             tiers_body(window={"type": "rolling_months"}), "missing_field"),
            ("months 0", tiers_body(window={"type": "rolling_months", "months": 0}),
             "invalid_field"),
            ("months 121", tiers_body(window={"type": "rolling_months", "months": 121}),
             "invalid_field"),
            ("window type", tiers_body(window={"type": "fortnight"}), "invalid_field"),
            ("earn_multiplier factor < 1",
             tiers_body(gold_benefits={"earn_multiplier": {"num": 1, "den": 2}}),
             "invalid_field"),
            ("earn_multiplier factor > 100",
             tiers_body(gold_benefits={"earn_multiplier": {"num": 101}}), "invalid_field"),
            ("no tiers", dict(tiers_body(), tiers=[]), "invalid_field"),
            ("11 tiers", dict(tiers_body(), tiers=[
                {"code": "t%d" % i, "name": "T%d" % i, "threshold": i * 10}
                for i in range(11)]), "invalid_field"),
            ("missing name", with_tiers(lambda ts: ts[1].pop("name")), "missing_field"),
            ("bad downgrade", tiers_body(downgrade="two_levels"), "invalid_field"),
            ("bad evaluation", tiers_body(evaluation="weekly"), "invalid_field"),
            ("window not an object", tiers_body(window="lifetime"), "invalid_field"),
            ("months without rolling_months",
             tiers_body(window={"type": "lifetime", "months": 12}), "invalid_field"),
            ("benefits not an object", tiers_body(gold_benefits=["perks"]), "invalid_field"),
            ("perks not an array",
             tiers_body(gold_benefits={"perks": {"en": "x"}}), "invalid_field"),
            ("21 perks", tiers_body(gold_benefits={"perks": [{"en": "p%d" % i}
                                                             for i in range(21)]}),
             "invalid_field"),
            ("perk not an object", tiers_body(gold_benefits={"perks": ["x"]}), "invalid_field"),
            ("perk without en", tiers_body(gold_benefits={"perks": [{"zh": "包邮"}]}),
             "missing_field"),
            ("perk field", tiers_body(gold_benefits={"perks": [{"en": "x", "fr": "x"}]}),
             "unknown_field"),
            ("perk too long", tiers_body(gold_benefits={"perks": [{"en": "x" * 501}]}),
             "invalid_field"),
            ("rewards not an array",
             tiers_body(gold_benefits={"rewards": "rwd_lounge"}), "invalid_field"),
            ("51 rewards", tiers_body(gold_benefits={"rewards": ["rwd_%d" % i
                                                                 for i in range(51)]}),
             "invalid_field"),
            ("empty reward id", tiers_body(gold_benefits={"rewards": [""]}), "invalid_field"),
            ("reward id not a string", tiers_body(gold_benefits={"rewards": [7]}),
             "invalid_field"),
            ("reward id too long", tiers_body(gold_benefits={"rewards": ["r" * 32]}),
             "invalid_field"),
        ]
        for what, body, code in cases:
            with self.subTest(what=what):
                self.assertProblem(self.c.put("/v1/tiers", body), 400, code)
        # Nothing was stored: the first valid PUT is version 1.
        self.assertEqual(self.put_tiers(tiers_body())["version"], 1)
        self.assertEqual(H.check_ok(self.c.get("/v1/tiers"), 200, "get")["version"], 1)


# ================================================================ 2. growth

class GrowthTests(TierTestCase):
    def test_growth_from_earns_orders_and_never_from_redeem(self):
        archive_all(self.c)
        self.put_tiers(tiers_body(gold_retain=None, drop=("diamond",)))
        m = self.member()
        self.earn(m, points=100, growth=40)
        self.assertEqual(self.growth(m)["lifetime"], 40)
        self.assertEqual(H.points_of(self.c, m)["available"], 100)
        self.earn(m, status=None, growth=500)  # growth alone, e.g. a migration
        self.assertEqual(self.growth(m), {"window": 540, "lifetime": 540})
        self.assertEqual(H.points_of(self.c, m)["available"], 100)
        H.check_ok(H.redeem(self.c, m, 60), 201, "redeem")
        self.assertEqual(self.growth(m)["lifetime"], 540)
        # Neither holding nor transferring points moves growth, on either side.
        other = self.member()
        H.check_ok(self.c.post("/v1/members/%s/holds" % m, {"points": 10}, idem=True), 201, "hold")
        H.check_ok(self.c.post("/v1/members/%s/transfer" % m,
                               {"to_member_id": other, "points": 20}, idem=True), 201, "transfer")
        self.assertEqual((self.growth(m)["lifetime"], self.growth(other)["lifetime"]), (540, 0))
        # A replayed earn adds its growth once.
        key = H.idem_key("growth")
        r1 = self.c.post("/v1/members/%s/earn" % other, {"points": 1, "growth": 70}, idem=key)
        r2 = self.c.post("/v1/members/%s/earn" % other, {"points": 1, "growth": 70}, idem=key)
        self.assertEqual((r1.status, r2.status, r2.replayed), (201, 201, True), (r1, r2))
        self.assertEqual(self.growth(other)["lifetime"], 70)
        # An order with no purchase rules: growth = the base points.
        rate = H.check_ok(self.c.get("/v1/program"), 200, "program")["earn_rate"]
        base = 12345 * rate["points"] // rate["per_amount"]
        b = self.earn(m, order={"id": "G1", "amount": 12345, "currency": "CNY"})
        self.assertEqual(b["transaction"]["points"], base)
        self.assertEqual(self.growth(m)["lifetime"], 540 + base)
        # An explicit growth in the body replaces the computed value.
        b = self.earn(m, order={"id": "G2", "amount": 10000, "currency": "CNY"}, growth=7)
        self.assertEqual(b["transaction"]["points"], 10000 * rate["points"] // rate["per_amount"])
        self.assertEqual(self.growth(m)["lifetime"], 540 + base + 7)
        self.assertEqual(self.tier(m), "silver")
        # Out of range growth is refused.
        r = self.c.post("/v1/members/%s/earn" % m, {"growth": -1}, idem=True)
        self.assertEqual(r.status, 400, r)
        r = self.c.post("/v1/members/%s/earn" % m, {"growth": H.POINTS_MAX + 1}, idem=True)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.growth(m)["lifetime"], 540 + base + 7)


    def test_batch_earns_add_growth_and_upgrade(self):
        self.put_tiers(tiers_body())
        m = self.member()

        def op(body):
            return {"op": "earn", "id": m, "idempotency_key": H.idem_key("b"), "body": body}

        r = self.c.post("/v1/batch", {"operations": [op({"points": 1, "growth": 600}),
                                                     op({"growth": 0, "points": 0}),
                                                     op({"points": 2, "growth": 600})]})
        self.assertEqual(r.status, 200, r)
        res = r.body["results"]
        self.assertEqual([x["status"] for x in res], [201, 400, 201], r)
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["growth"]["lifetime"]), ("gold", 1200), v)
        h = [x for x in v["history"] if x["to"] == "gold"]
        self.assertEqual([(x["kind"], x["transaction_id"]) for x in h],
                         [("upgrade", res[2]["body"]["transaction"]["id"])], v)

    def test_growth_only_rules(self):
        # docs/TIERS.md: "A rule with a fixed growth fires even when its effect gives 0
        # points, so growth-only rules ("profile completed: 50 growth") work."
        archive_all(self.c)
        self.put_tiers(tiers_body())
        m = self.member()
        # A purchase rate rule whose points floor to 0 on a small order.
        H.check_ok(self.c.post("/v1/rules", dict(RATE, growth={"fixed": 20})), 201, "rate")
        b = self.c.post("/v1/members/%s/earn" % m,
                        {"order": {"id": "GO1", "amount": 50, "currency": "CNY"}}, idem=True)
        self.assertIn(b.status, (200, 201), b)
        self.assertEqual(self.growth(m)["lifetime"], 20)
        self.assertEqual(H.points_of(self.c, m)["available"], 0)
        # An event rule that gives only growth (its effect must be fixed: 0 points).
        r = self.c.post("/v1/rules", {
            "name": "profile completed", "trigger": "event", "event": "profile_completed",
            "effect": {"type": "fixed", "points": 0}, "growth": {"fixed": 50}})
        self.assertEqual(r.status, 201, r)
        r = self.c.post("/v1/members/%s/events" % m, {"name": "profile_completed"}, idem=True)
        self.assertIn(r.status, (200, 201), r)
        self.assertEqual(self.growth(m)["lifetime"], 70)
        self.assertEqual(H.points_of(self.c, m)["available"], 0)

    def test_rule_growth_field_and_other_triggers(self):
        archive_all(self.c)
        self.put_tiers(tiers_body())
        rate = H.check_ok(self.c.post("/v1/rules", dict(
            RATE, growth={"factor_num": 1, "factor_den": 2})), 201, "rate, half growth")
        H.check_ok(self.c.post("/v1/rules", {
            "name": "review", "trigger": "event", "event": "review_posted",
            "effect": {"type": "fixed", "points": 10}}), 201, "review")
        H.check_ok(self.c.post("/v1/rules", {
            "name": "survey", "trigger": "event", "event": "survey",
            "effect": {"type": "fixed", "points": 5}, "growth": {"fixed": 20}}), 201, "survey")
        H.check_ok(self.c.post("/v1/rules", {
            "name": "vip day", "trigger": "event", "event": "vip_day",
            "effect": {"type": "fixed", "points": 1}, "growth": {"fixed": 1000}}), 201, "vip")
        got = H.check_ok(self.c.get("/v1/rules/%s" % rate["id"]), 200, "rule")
        self.assertEqual(got["growth"], {"factor_num": 1, "factor_den": 2}, got)
        m = self.member()
        # 10050 -> 100 points; growth 100 x 1/2 = 50.
        b = self.earn(m, order={"id": "RG1", "amount": 10050, "currency": "CNY"})
        self.assertEqual(b["transaction"]["points"], 100)
        self.assertEqual(self.growth(m)["lifetime"], 50)
        b = self.earn(m, order={"id": "RG2", "amount": 10100, "currency": "CNY"})
        self.assertEqual(self.growth(m)["lifetime"], 100)  # 101 x 1/2 = 50 (floor)

        def event(name):
            return H.check_ok(self.c.post("/v1/members/%s/events" % m, {"name": name},
                                          idem=True), 201, "event %s" % name)

        event("review_posted")  # an event rule without "growth" gives none
        self.assertEqual(self.growth(m)["lifetime"], 100)
        event("survey")
        self.assertEqual(self.growth(m)["lifetime"], 120)
        self.assertEqual(self.tier(m), "silver")
        # An event's growth upgrades at once, naming the event's transaction.
        b = event("vip_day")
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["growth"]["lifetime"]), ("gold", 1120), v)
        self.assertEqual((v["history"][0]["kind"], v["history"][0]["transaction_id"]),
                         ("upgrade", b["transaction"]["id"]), v)
        # A multiplier rule gives growth like any purchase rule, unless it says fixed 0.
        m2 = self.member()
        dbl = H.check_ok(self.c.post("/v1/rules", DOUBLE), 201, "double")
        self.earn(m2, order={"id": "RG3", "amount": 10000, "currency": "CNY"})
        self.assertEqual(self.growth(m2)["lifetime"], 50 + 100)  # rate 100 x 1/2, double 100
        H.check_ok(self.c.put("/v1/rules/%s" % dbl["id"], dict(DOUBLE, growth={"fixed": 0})),
                   200, "double without growth")
        b = self.earn(m2, order={"id": "RG4", "amount": 10000, "currency": "CNY"})
        self.assertEqual(b["transaction"]["points"], 200, b)
        self.assertEqual(self.growth(m2)["lifetime"], 150 + 50)
        for bad in ({"fixed": -1}, {"fixed": 1, "factor_num": 1}, {"factor_den": 2},
                    {"factor_num": 1, "factor_den": 0}):
            with self.subTest(growth=bad):
                r = self.c.post("/v1/rules", dict(RATE, growth=bad))
                self.assertEqual(r.status, 400, r)


# ================================================================ 3. upgrade at once

class UpgradeTests(TierTestCase):
    def test_upgrade_on_the_crossing_award(self):
        self.put_tiers(tiers_body())
        m = self.member()
        b = self.earn(m, status=None, growth=999)
        self.assertIsNone(b.get("tier_upgrade"), b)
        self.assertEqual(self.tier(m), "silver")
        self.assertEqual(self.view(m)["next_tier"]["growth_needed"], 1, self.view(m))
        b = self.earn(m, points=5, growth=1)
        txid = b["transaction"]["id"]
        # The earn response names the new tier.  docs/TIERS.md does not name the field;
        # the server answers "tier_upgrade": {"from", "to", "reason"}.
        self.assertEqual((b["tier_upgrade"]["from"], b["tier_upgrade"]["to"]),
                         ("silver", "gold"), b)
        v = self.view(m)
        self.assertEqual(v["tier"]["code"], "gold", v)
        self.assertEqual(v["tier"]["threshold"], 1000, v)
        self.assertEqual(v["growth"], {"window": 1000, "lifetime": 1000}, v)
        self.assertTimeEq(v["since"], T0, "since")
        self.assertTimeEq(v["next_evaluation_at"], add_months(T0, 12), "anniversary")
        self.assertFalse(v["manual"])
        self.assertEqual(v["next_tier"]["code"], "diamond", v)
        self.assertEqual(v["next_tier"]["growth_needed"], 4000, v)
        ups = [h for h in v["history"] if h["to"] == "gold"]
        self.assertEqual(len(ups), 1, v["history"])
        h = ups[0]
        self.assertEqual((h["kind"], h["from"], h["to"], h["transaction_id"]),
                         ("upgrade", "silver", "gold", txid), h)
        self.assertEqual(h["growth"], 1000, h)
        self.assertEqual(v["history"][0]["id"], h["id"], "newest first")
        ev = [e for e in list_events(self.c, "tier.upgraded") if e["member_id"] == m]
        gold_ev = [e for e in ev if e["data"]["to"] == "gold"]
        self.assertEqual(len(gold_ev), 1, ev)
        e = gold_ev[0]
        self.assertEqual(e["type"], "tier.upgraded")
        self.assertEqual((e["data"]["from"], e["data"]["kind"], e["data"]["tier_change_id"]),
                         ("silver", "upgrade", h["id"]), e)
        self.assertEqual([x for x in list_events(self.c, "tier.downgraded")
                          if x["member_id"] == m], [])
        # Further growth below diamond changes nothing; t2 sees none of t1's events.
        self.earn(m, points=5, growth=3000)
        self.assertEqual(len([h for h in self.history(m) if h["kind"] == "upgrade"
                              and h["to"] == "gold"]), 1)
        self.assertEqual(self.tier(m), "gold")
        r = self.env.admin2.get("/v1/events", params={"type": "tier.upgraded"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x for x in r.body["data"] if x.get("member_id") == m], [])
        # One award past two thresholds goes straight to the highest one it reaches.
        m2 = self.member()
        b = self.earn(m2, points=1, growth=6000)
        self.assertEqual(b["tier_upgrade"]["to"], "diamond", b)
        v = self.view(m2)
        self.assertEqual(v["tier"]["code"], "diamond", v)
        self.assertIsNone(v["next_tier"], v)
        self.assertEqual([(h["kind"], h["from"], h["to"]) for h in v["history"]],
                         [("upgrade", "silver", "diamond")], v)

    def test_two_upgrades_in_one_order_earn(self):
        # A referee's first order upgrades it to gold, and its referral
        # reward in the same request to diamond: the second upgrade starts
        # from the first one's tier (what the command read of the member's
        # tier is forgotten when a tier change is recorded, tiers.c).
        self.put_tiers(tiers_body())
        rule = {"name": "referee first purchase", "trigger": "referral",
                "effect": {"type": "referral", "on": "first_purchase", "referee_points": 10},
                "growth": {"fixed": 5000}}
        H.check_ok(self.c.post("/v1/rules", rule), 201, "rule")
        a = H.create_member(self.c)
        r = H.create_member(self.c, referral_code=a["referral_code"])["id"]
        # A frozen referrer gets nothing, so nothing is read of it between
        # the referee's two upgrades.
        H.check_ok(self.c.patch("/v1/members/%s" % a["id"], {"status": "frozen"}), 200, "freeze")
        # 1,000 base points and growth: gold's threshold exactly.
        self.earn(r, order={"id": "two-up", "amount": 100000, "currency": "CNY"})
        self.assertEqual(self.growth(r), {"window": 6000, "lifetime": 6000})
        self.assertEqual([(h["kind"], h["from"], h["to"]) for h in reversed(self.history(r))],
                         [("upgrade", "silver", "gold"), ("upgrade", "gold", "diamond")])
        self.assertEqual(self.tier(r), "diamond")

    def test_no_tier_below_a_positive_lowest_threshold(self):
        self.put_tiers({"basis": "growth", "window": {"type": "lifetime"}, "tiers": [
            {"code": "bronze", "name": "Bronze", "threshold": 100},
            {"code": "gold", "name": "Gold", "threshold": 1000}]})
        m = self.member()
        v = self.view(m)
        self.assertIsNone(v["tier"], v)
        self.assertEqual((v["next_tier"]["code"], v["next_tier"]["growth_needed"]),
                         ("bronze", 100), v)
        self.earn(m, points=1, growth=99)
        self.assertIsNone(self.view(m)["tier"])
        self.earn(m, points=1, growth=1)
        v = self.view(m)
        self.assertEqual(v["tier"]["code"], "bronze", v)
        self.assertEqual([(h["kind"], h["from"], h["to"]) for h in v["history"]],
                         [("upgrade", None, "bronze")], v)

    def test_spend_and_orders_thresholds(self):
        archive_all(self.c)
        rate = H.check_ok(self.c.get("/v1/program"), 200, "program")["earn_rate"]
        if rate != {"points": 1, "per_amount": 100}:
            H.program_patch(self.c, {"earn_rate": {"points": 1, "per_amount": 100}})
        body = tiers_body()
        body["tiers"][1]["spend_threshold"] = 50000
        body["tiers"][2]["orders_threshold"] = 3
        self.put_tiers(body)
        m = self.member()
        # 50000 spent: 500 growth (short of 1000) but gold by spend.
        b = self.earn(m, order={"id": "S1", "amount": 50000, "currency": "CNY"})
        self.assertEqual(b["tier_upgrade"]["to"], "gold", b)
        self.earn(m, order={"id": "S2", "amount": 100, "currency": "CNY"})
        self.assertEqual(self.tier(m), "gold")
        b = self.earn(m, order={"id": "S3", "amount": 100, "currency": "CNY"})
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["spend"], v["orders"], v["growth"]["lifetime"]),
                         ("diamond", 50200, 3, 502), v)
        self.assertEqual([(h["to"], h["transaction_id"]) for h in v["history"]][0],
                         ("diamond", b["transaction"]["id"]), v)
        # Spend is net of refunds; a refund never demotes at once.
        H.check_ok(self.c.post("/v1/orders/S1/refund", {"amount": 25000}, idem=True), 201, "rf")
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["spend"], v["growth"]["lifetime"]),
                         ("diamond", 25200, 252), v)
        # Explicit growth without an order is neither spend nor an order.
        m2 = self.member()
        self.earn(m2, points=1, growth=10)
        v = self.view(m2)
        self.assertEqual((v["tier"]["code"], v["spend"], v["orders"]), ("silver", 0, 0), v)


# ================================================================ 4. anniversary evaluation

class AnniversaryTests(TierTestCase):
    def setUp(self):
        super().setUp()
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary"))

    def test_downgrade_retain_and_idempotent(self):
        a, b = self.member(), self.member()
        self.earn(a, status=None, growth=999)
        self.earn(b, status=None, growth=999)
        self.set_clock(T1)
        self.earn(a, points=1, growth=1)
        self.earn(b, points=1, growth=1)
        for mid in (a, b):
            v = self.view(mid)
            self.assertEqual(v["tier"]["code"], "gold", v)
            self.assertTimeEq(v["since"], T1, "since")
            self.assertTimeEq(v["next_evaluation_at"], EVAL1, "next evaluation")
        # b keeps earning within the year: 800 = gold's retain.
        self.set_clock(add_months(T0, 6))
        self.earn(b, points=1, growth=800)
        # Before the anniversary nothing is due.
        self.assertEqual(self.evaluate()["evaluated"], 0)
        self.assertEqual((self.tier(a), self.tier(b)), ("gold", "gold"))
        self.set_clock(EVAL1 + HOUR)
        va, vb = self.view(a), self.view(b)
        self.assertEqual((va["if_evaluated_now"]["decision"], va["if_evaluated_now"]["tier"]),
                         ("downgrade", "silver"), va)
        self.assertEqual((vb["if_evaluated_now"]["decision"], vb["if_evaluated_now"]["tier"]),
                         ("retain", "gold"), vb)
        self.assertEqual(self.tier(a), "gold", "no downgrade before the evaluation runs")
        # as_of in the future is refused and changes nothing.
        r = self.c.post("/v1/tiers/evaluate", {"as_of": H.fmt_time(EVAL1 + 2 * DAY)})
        self.assertProblem(r, 400, "invalid_field")
        self.assertEqual(self.tier(a), "gold")
        res = self.evaluate()
        self.assertEqual((res["evaluated"], res["retained"], res["downgraded"],
                          res["overrides_ended"]), (2, 1, 1, 0), res)
        va, vb = self.view(a), self.view(b)
        self.assertEqual(va["tier"]["code"], "silver", va)
        h = va["history"][0]
        self.assertEqual((h["kind"], h["from"], h["to"]), ("downgrade", "gold", "silver"), h)
        self.assertEqual(vb["tier"]["code"], "gold", vb)
        h = vb["history"][0]
        self.assertEqual((h["kind"], h["from"], h["to"]), ("retain", "gold", "gold"), h)
        self.assertTimeEq(vb["next_evaluation_at"], add_months(EVAL1, 12), "b's next")
        down = [e for e in list_events(self.c, "tier.downgraded")]
        self.assertEqual([(e["member_id"], e["data"]["from"], e["data"]["to"],
                           e["data"]["kind"]) for e in down],
                         [(a, "gold", "silver", "downgrade")], down)
        self.assertEqual(down[0]["data"]["tier_change_id"], va["history"][0]["id"])
        # A retain appends no event.
        self.assertEqual([e for e in list_events(self.c, "tier.changed")
                          if e["member_id"] == b], [])
        # Again: nothing new.
        na, nb = len(va["history"]), len(vb["history"])
        self.assertEqual(self.evaluate()["evaluated"], 0)
        self.set_clock(EVAL1 + 2 * HOUR)
        self.assertEqual(self.evaluate()["evaluated"], 0)
        self.assertEqual((len(self.history(a)), len(self.history(b))), (na, nb))
        self.assertEqual((self.tier(a), self.tier(b)), ("silver", "gold"))
        self.assertEqual(len(list_events(self.c, "tier.downgraded")), 1)

    def test_late_run_uses_the_window_ending_at_the_due_date(self):
        a = self.member()
        self.reach(a, "gold", 1000)
        # 900 growth after the due date but before the job runs: the window that ends
        # at the due date holds 1 (< retain 800), so the late run still downgrades.
        self.set_clock(EVAL1 + DAY)
        self.earn(a, points=1, growth=900)
        self.set_clock(EVAL1 + 5 * DAY)
        # as_of before the due date: nothing is due.
        self.assertEqual(self.evaluate({"as_of": H.fmt_time(EVAL1 - DAY)})["evaluated"], 0)
        self.assertEqual(self.tier(a), "gold")
        self.evaluate()
        v = self.view(a)
        self.assertEqual((v["tier"]["code"], v["history"][0]["kind"]), ("silver", "downgrade"), v)

    def test_override_end_uses_the_window_ending_at_until(self):
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary",
                                  downgrade="to_qualified"))
        m = self.member()
        until = add_months(T0, 1)
        H.check_ok(self.c.put("/v1/members/%s/tier" % m, {
            "tier": "diamond", "reason": "launch", "until": H.fmt_time(until)}), 200, "set")
        self.set_clock(T1)
        self.earn(m, points=1, growth=1200)
        # Run two days after T1's anniversary: the window ending now no longer holds the
        # 1200, the window ending at until does (gold).
        self.set_clock(EVAL1 + 2 * DAY)
        self.assertEqual(self.view(m)["growth"]["window"], 0)
        self.evaluate()
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["history"][0]["kind"], v["history"][0]["from"]),
                         ("gold", "override_end", "diamond"), v)

    def diamond_with_no_window_growth(self, downgrade):
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary",
                                  downgrade=downgrade))
        m = self.member()
        self.reach(m, "diamond", 5000)
        self.set_clock(EVAL1 + HOUR)
        self.evaluate()
        return m, self.view(m)

    def test_one_level(self):
        m, v = self.diamond_with_no_window_growth("one_level")
        self.assertEqual(v["tier"]["code"], "gold", v)
        h = v["history"][0]
        self.assertEqual((h["kind"], h["from"], h["to"]), ("downgrade", "diamond", "gold"), h)
        # One evaluation per due date: gold is not re-evaluated at once.
        n = len(v["history"])
        self.evaluate()
        self.assertEqual(len(self.history(m)), n)
        self.assertEqual(self.tier(m), "gold")

    def test_to_qualified(self):
        m, v = self.diamond_with_no_window_growth("to_qualified")
        self.assertEqual(v["tier"]["code"], "silver", v)
        h = v["history"][0]
        self.assertEqual((h["kind"], h["from"], h["to"]), ("downgrade", "diamond", "silver"), h)


# ================================================================ 5. calendar year, period end

class CalendarYearTests(TierTestCase):
    def test_period_end_at_local_new_year(self):
        p = H.check_ok(self.c.get("/v1/program"), 200, "program")
        if p["timezone"] != "Asia/Shanghai":
            H.program_patch(self.c, {"timezone": "Asia/Shanghai"})
        self.put_tiers(tiers_body(window={"type": "calendar_year"}, evaluation="period_end"))
        new_year = H.parse_time("2028-12-31T16:00:00Z")  # 2029-01-01 00:00 +08:00
        a, b, e = self.member(), self.member(), self.member()
        self.earn(a, points=1, growth=1000)  # gold by growth in 2028
        H.check_ok(self.c.put("/v1/members/%s/tier" % b, {"tier": "gold", "reason": "staff"}),
                   200, "manual gold")  # gold by hand, no growth at all
        va = self.view(a)
        self.assertEqual(va["tier"]["code"], "gold", va)
        self.assertEqual(va["window"]["type"], "calendar_year", va)
        self.assertTimeEq(va["window"]["from"], H.parse_time("2027-12-31T16:00:00Z"),
                          "window from (local 1 January)")
        self.assertTimeEq(va["next_evaluation_at"], new_year, "a's next evaluation")
        self.assertTimeEq(self.view(b)["next_evaluation_at"], new_year, "b's next evaluation")
        na, nb = len(va["history"]), len(self.history(b))
        # 23:59 on 31 December local: nothing due yet.
        self.set_clock(new_year - 60 * 1000)
        self.earn(e, points=1, growth=100)
        self.evaluate()
        self.assertEqual((len(self.history(a)), len(self.history(b))), (na, nb))
        self.assertEqual((self.tier(a), self.tier(b)), ("gold", "gold"))
        self.set_clock(new_year + 1000)
        self.evaluate()
        va, vb = self.view(a), self.view(b)
        self.assertEqual((va["tier"]["code"], va["history"][0]["kind"]), ("gold", "retain"), va)
        self.assertTimeEq(va["next_evaluation_at"], H.parse_time("2029-12-31T16:00:00Z"),
                          "a's next evaluation after retaining")
        self.assertEqual((vb["tier"]["code"], vb["history"][0]["kind"],
                          vb["history"][0]["from"]), ("silver", "downgrade", "gold"), vb)
        # The window is the local year: growth from 23:59 on 31 December is last year's.
        self.earn(e, points=1, growth=50)
        self.assertEqual(self.growth(e), {"window": 50, "lifetime": 150})
        self.assertTimeEq(self.view(e)["window"]["from"], new_year, "e's window from")

    def test_a_new_zone_moves_the_next_evaluation(self):
        """The writer keeps the filled configuration between requests
        (wcache.c): after the program's zone changes, an upgrade is
        scheduled at the new zone's new year, not the old one's."""
        H.program_patch(self.c, {"timezone": "Asia/Shanghai"})
        self.put_tiers(tiers_body(window={"type": "calendar_year"}, evaluation="period_end"))
        a, b = self.member(), self.member()
        self.earn(a, points=1, growth=1000)  # gold, its configuration kept
        self.assertTimeEq(self.view(a)["next_evaluation_at"],
                          H.parse_time("2028-12-31T16:00:00Z"), "a's (+08:00)")
        H.program_patch(self.c, {"timezone": "America/New_York"})
        self.earn(b, points=1, growth=1000)
        self.assertEqual(self.tier(b), "gold")
        self.assertTimeEq(self.view(b)["next_evaluation_at"],
                          H.parse_time("2029-01-01T05:00:00Z"), "b's (-05:00)")


# ================================================================ 6. manual tiers

class ManualTierTests(TierTestCase):
    def test_manual_set_override_and_its_end(self):
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary",
                                  downgrade="to_qualified"))
        op_id, op = self.env.key("operator")
        _, pos = self.env.key("pos")
        m1, m2, m3 = self.member(), self.member(), self.member()
        until = add_months(T0, 3)
        body = {"tier": "diamond", "reason": "VIP", "until": H.fmt_time(until)}
        self.assertProblem(pos.put("/v1/members/%s/tier" % m1, body), 403, "forbidden")
        self.assertProblem(op.put("/v1/members/%s/tier" % m1, dict(body, tier="platinum")),
                           422, "unknown_tier")
        self.assertProblem(op.put("/v1/members/%s/tier" % m1,
                                  {"tier": "diamond", "until": H.fmt_time(until)}),
                           400, "missing_field")
        for past in (T0, T0 - DAY):
            self.assertProblem(op.put("/v1/members/%s/tier" % m1,
                                      dict(body, until=H.fmt_time(past))), 400, "invalid_field")
        self.assertEqual(self.history(m1), [])
        for mid in (m1, m2):
            H.check_ok(op.put("/v1/members/%s/tier" % mid, body), 200, "manual diamond")
        v = self.view(m1)
        self.assertEqual((v["tier"]["code"], v["manual"]), ("diamond", True), v)
        self.assertTimeEq(v["override_until"], until, "override_until")
        h = v["history"][0]
        self.assertEqual((h["kind"], h["from"], h["to"], h["reason"], h["actor"]),
                         ("manual", "silver", "diamond", "VIP", op_id), h)
        self.assertTimeEq(h["until"], until, "history until")
        ch = [e for e in list_events(self.c, "tier.changed") if e["member_id"] == m1]
        self.assertEqual([(e["data"]["kind"], e["data"]["to"]) for e in ch],
                         [("manual", "diamond")], ch)
        # Without until: held as if reached now, evaluated on the normal schedule.
        H.check_ok(op.put("/v1/members/%s/tier" % m3, {"tier": "gold", "reason": "staff"}),
                   200, "manual gold")
        v3 = self.view(m3)
        self.assertEqual(v3["tier"]["code"], "gold", v3)
        self.assertIsNone(v3["override_until"], v3)
        self.assertTimeEq(v3["since"], T0, "m3 since")
        self.assertTimeEq(v3["next_evaluation_at"], add_months(T0, 12), "m3 next evaluation")
        # A higher tier reached by growth still upgrades at once, override or not.
        m4 = self.member()
        H.check_ok(op.put("/v1/members/%s/tier" % m4, {"tier": "gold", "reason": "trial",
                                                      "until": H.fmt_time(until)}), 200, "m4")
        b = self.earn(m4, points=1, growth=5000)
        v4 = self.view(m4)
        self.assertEqual((v4["tier"]["code"], v4["history"][0]["kind"],
                          v4["history"][0]["transaction_id"]),
                         ("diamond", "upgrade", b["transaction"]["id"]), v4)
        # Another tenant cannot set t1's member; pos may read tiers but not set them.
        r = self.env.admin2.put("/v1/members/%s/tier" % m2, {"tier": "gold", "reason": "x"})
        self.assertEqual(r.status, 404, r)
        self.assertEqual(H.check_ok(pos.get("/v1/members/%s/tier" % m1), 200, "pos read")
                         ["tier"]["code"], "diamond")
        self.assertEqual(H.check_ok(pos.get("/v1/tiers"), 200, "pos read")["version"], 1)
        # m1 earns enough for gold in the window; m2 earns nothing.
        self.set_clock(T1)
        self.earn(m1, points=1, growth=1200)
        self.assertEqual(self.tier(m1), "diamond")
        # Before until: no evaluation.
        self.set_clock(add_months(T0, 2))
        self.evaluate()
        self.assertEqual((self.tier(m1), self.tier(m2)), ("diamond", "diamond"))
        self.assertEqual((len(self.history(m1)), len(self.history(m2))), (1, 1))
        # After until: the override ends; the window decides (to_qualified).
        self.set_clock(until + DAY)
        self.evaluate()
        for mid, want in ((m1, "gold"), (m2, "silver")):
            v = self.view(mid)
            self.assertEqual(v["tier"]["code"], want, v)
            self.assertIsNone(v["override_until"], v)
            h = v["history"][0]
            self.assertEqual((h["kind"], h["from"], h["to"]), ("override_end", "diamond", want), h)
        ch = [e for e in list_events(self.c, "tier.changed")
              if e["member_id"] in (m1, m2) and e["data"]["kind"] == "override_end"]
        self.assertEqual(sorted((e["member_id"], e["data"]["to"]) for e in ch),
                         sorted([(m1, "gold"), (m2, "silver")]), ch)
        n1 = len(self.history(m1))
        self.evaluate()
        self.assertEqual(len(self.history(m1)), n1)
        # The log pages with a cursor: one at a time gives the same list, oldest first.
        all_changed = list_events(self.c, "tier.changed")
        self.assertEqual(len(all_changed), 6, all_changed)  # 3 manual, m4's, 2 override ends
        self.assertEqual(list_events(self.c, "tier.changed", limit=1), all_changed)
        times = [H.parse_time(e["created_at"]) for e in all_changed]
        self.assertEqual(times, sorted(times), all_changed)
        # ?member_id= keeps one member's events, of every type, oldest first.
        r = self.c.get("/v1/events", params={"member_id": m4, "limit": 100})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([(e["member_id"], e["type"], e["data"]["kind"]) for e in r.body["data"]],
                         [(m4, "tier.changed", "manual"), (m4, "tier.upgraded", "upgrade")], r)


    def test_history_is_newest_first_and_capped_at_100(self):
        self.put_tiers(tiers_body())
        m = self.member()
        for i in range(105):
            H.check_ok(self.c.put("/v1/members/%s/tier" % m, {
                "tier": ("gold", "diamond")[i % 2], "reason": "r%d" % i}), 200, "set %d" % i)
        h = self.history(m)
        self.assertEqual(len(h), 100)
        self.assertEqual([x["reason"] for x in h], ["r%d" % i for i in range(104, 4, -1)])
        self.assertEqual(len([e for e in list_events(self.c, "tier.changed")
                              if e["member_id"] == m]), 105)


# ================================================================ 7. import

class ImportTests(TierTestCase):
    def test_import_all_or_nothing(self):
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary"))
        m1 = self.member()
        ext2 = "imp-ext-2"
        m2 = H.create_member(self.c, external_id=ext2)["id"]
        m3, m4 = self.member(), self.member()
        since = H.parse_time("2027-06-01T00:00:00Z")
        r = self.c.post("/v1/tiers/import", {"members": [
            {"member_id": m1, "tier": "gold"},
            {"external_id": ext2, "tier": "diamond", "since": H.fmt_time(since)}]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["imported"], 2, r)
        v1, v2 = self.view(m1), self.view(m2)
        self.assertEqual((v1["tier"]["code"], v1["history"][0]["kind"],
                          v1["history"][0]["to"]), ("gold", "import", "gold"), v1)
        self.assertTimeEq(v1["since"], T0, "m1 since (default now)")
        self.assertEqual((v2["tier"]["code"], v2["history"][0]["kind"]), ("diamond", "import"), v2)
        self.assertTimeEq(v2["since"], since, "m2 since")
        self.assertTimeEq(v2["next_evaluation_at"], add_months(since, 12), "m2 next evaluation")
        ch = [e for e in list_events(self.c, "tier.changed") if e["data"]["kind"] == "import"]
        self.assertEqual(sorted((e["member_id"], e["data"]["to"]) for e in ch),
                         sorted([(m1, "gold"), (m2, "diamond")]), ch)
        bad_batches = [
            ("unknown member", [{"member_id": m3, "tier": "gold"},
                                {"member_id": "mem_00000000000000000000", "tier": "gold"}]),
            ("unknown external id", [{"member_id": m3, "tier": "gold"},
                                     {"external_id": "no-such-ext", "tier": "gold"}]),
            ("unknown tier", [{"member_id": m3, "tier": "gold"},
                              {"member_id": m4, "tier": "platinum"}]),
            ("downgrading good entry first", [{"member_id": m1, "tier": "silver"},
                                              {"member_id": m4, "tier": "platinum"}]),
            ("since in the future", [{"member_id": m3, "tier": "gold"},
                                     {"member_id": m4, "tier": "gold",
                                      "since": H.fmt_time(T0 + DAY)}]),
            ("entry not an object", [{"member_id": m3, "tier": "gold"}, "m4"]),
            ("both ids", [{"member_id": m3, "tier": "gold"},
                          {"member_id": m4, "external_id": ext2, "tier": "gold"}]),
            ("neither id", [{"member_id": m3, "tier": "gold"}, {"tier": "gold"}]),
        ]
        for what, entries in bad_batches:
            with self.subTest(what=what):
                r = self.c.post("/v1/tiers/import", {"members": entries})
                self.assertTrue(400 <= r.status < 500, r)
                self.assertIsInstance(r.body, dict, r)
                self.assertTrue(r.body.get("code"), r)
        self.assertEqual((self.tier(m3), self.tier(m4), self.tier(m1)),
                         ("silver", "silver", "gold"))
        self.assertEqual((self.history(m3), self.history(m4)), ([], []))
        self.assertEqual(len(self.history(m1)), 1)
        ch2 = [e for e in list_events(self.c, "tier.changed") if e["data"]["kind"] == "import"]
        self.assertEqual(len(ch2), 2)
        r = self.c.post("/v1/tiers/import", {"members": [{"member_id": m3, "tier": "gold"}] * 1001})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.tier(m3), "silver")
        # m2's anniversary (since + 12 months) comes first: diamond -> gold (one_level).
        self.set_clock(add_months(since, 12) + DAY)
        self.evaluate()
        v1, v2 = self.view(m1), self.view(m2)
        self.assertEqual((v2["tier"]["code"], v2["history"][0]["kind"]), ("gold", "downgrade"), v2)
        self.assertEqual((v1["tier"]["code"], len(v1["history"])), ("gold", 1), v1)


    def test_import_of_1000_entries(self):
        # The documented maximum, each entry with member_id, tier and since (~90 KB).
        since = "2027-06-01T00:00:00.000Z"
        ids = [self.member() for _ in range(1000)]
        self.put_tiers(tiers_body())
        body = {"members": [{"member_id": mid, "tier": "gold", "since": since} for mid in ids]}
        r = self.c.post("/v1/tiers/import", body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["imported"], 1000, r)
        self.assertEqual((self.tier(ids[0]), self.tier(ids[-1])), ("gold", "gold"))
        self.assertTimeEq(self.view(ids[-1])["since"], H.parse_time(since), "since")

    def test_evaluate_runs_every_slice(self):
        # 1,100 members due at once: more than two slices of 500; one call does them all.
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary"))
        since = H.fmt_time(add_months(T0, -12) - DAY)  # due a day before T0
        ids = [self.member() for _ in range(1100)]
        for k in range(0, 1100, 500):  # 500 a request (test_import_of_1000_entries: 1,000)
            r = self.c.post("/v1/tiers/import", {"members": [
                {"member_id": mid, "tier": "gold", "since": since} for mid in ids[k:k + 500]]})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body["imported"], len(ids[k:k + 500]), r)
        res = self.evaluate()
        self.assertEqual((res["evaluated"], res["downgraded"]), (1100, 1100), res)
        for mid in (ids[0], ids[499], ids[500], ids[1000], ids[-1]):
            self.assertEqual(self.tier(mid), "silver", mid)
        self.assertEqual(len(list_events(self.c, "tier.downgraded")), 1100)
        self.assertEqual(self.evaluate()["evaluated"], 0)


# ================================================================ 8. tier multiplier

class MultiplierTests(TierTestCase):
    def test_gold_multiplier_stacks_with_double_points(self):
        archive_all(self.c)
        rate = H.check_ok(self.c.post("/v1/rules", RATE), 201, "rate")
        double = H.check_ok(self.c.post("/v1/rules", DOUBLE), 201, "double")
        self.put_tiers(tiers_body(gold_benefits={"earn_multiplier": {"num": 3, "den": 2},
                                                 "birthday_multiplier": {"num": 2}}))
        g, s = self.member(birthday="1990-05-20"), self.member()
        self.earn(g, status=None, growth=1000)
        self.assertEqual(self.tier(g), "gold")
        order = {"id": "M-dry", "amount": 10000, "currency": "CNY"}
        dry = H.check_ok(self.c.post("/v1/members/%s/earn" % g,
                                     {"order": order, "dry_run": True}), 200, "dry run")
        self.assertEqual(dry["total_points"], 250, dry)
        by = {a["rule_id"]: a["points"] for a in dry["awards"]}
        self.assertEqual(by, {rate["id"]: 100, double["id"]: 100, "tier:gold": 50}, dry)
        b = self.earn(g, order=dict(order, id="M-g"))
        self.assertEqual(b["transaction"]["points"], 250, b)
        by = {a["rule_id"]: a["points"] for a in b["transaction"]["awards"]}
        self.assertEqual(by, {rate["id"]: 100, double["id"]: 100, "tier:gold": 50}, b)
        self.assertEqual(H.points_of(self.c, g)["available"], 250)
        # The tier award gives no growth; the purchase rules give their points.
        self.assertEqual(self.growth(g)["lifetime"], 1000 + 200)
        b = self.earn(s, order=dict(order, id="M-s"))
        self.assertEqual(b["transaction"]["points"], 200, b)
        self.assertNotIn("tier:gold", [a["rule_id"] for a in b["transaction"]["awards"]])
        dry = H.check_ok(self.c.post("/v1/members/%s/earn" % s,
                                     {"order": dict(order, id="M-sd"), "dry_run": True}),
                         200, "dry run silver")
        self.assertEqual(dry["total_points"], 200, dry)
        # A rule for gold members only.
        only = H.check_ok(self.c.post("/v1/rules", {
            "name": "gold only", "trigger": "purchase", "priority": 5,
            "conditions": {"member_tiers_any": ["gold"]},
            "effect": {"type": "fixed", "points": 7}}), 201, "gold-only rule")
        b = self.earn(g, order=dict(order, id="M-g2"))
        self.assertEqual(b["transaction"]["points"], 257, b)
        self.assertIn(only["id"], [a["rule_id"] for a in b["transaction"]["awards"]])
        b = self.earn(s, order=dict(order, id="M-s2"))
        self.assertEqual(b["transaction"]["points"], 200, b)
        self.assertNotIn(only["id"], [a["rule_id"] for a in b["transaction"]["awards"]])
        # On a gold member's birthday (local date: 08:00 on 10 January in Shanghai) the
        # birthday multiplier x2 adds the rate points once more: 100+100+50+100 (+7).
        bd = self.member(birthday="1996-01-10")
        self.earn(bd, status=None, growth=1000)
        b = self.earn(bd, order=dict(order, id="M-bd"))
        by = {a["rule_id"]: a["points"] for a in b["transaction"]["awards"]}
        self.assertEqual(by, {rate["id"]: 100, double["id"]: 100, "tier:gold": 50,
                              "tier:gold:birthday": 100, only["id"]: 7}, b)
        self.assertEqual(b["transaction"]["points"], 357, b)
        self.assertEqual(self.growth(bd)["lifetime"], 1000 + 200 + 7)
        # The program's cap applies after all of them.
        H.program_patch(self.c, {"max_points_per_order": 240})
        b = self.earn(g, order=dict(order, id="M-cap"))
        self.assertEqual(b["transaction"]["points"], 240, b)
        self.assertEqual(sum(a["points"] for a in b["transaction"]["awards"]), 240, b)
        H.program_patch(self.c, {"max_points_per_order": None})
        r = self.c.post("/v1/rules", {"name": "bad", "trigger": "purchase",
                                      "conditions": {"member_tiers_any": "gold"},
                                      "effect": {"type": "fixed", "points": 7}})
        self.assertEqual(r.status, 400, r)


# ================================================================ 9. refunds and reversals

    def test_gold_multiplier_with_a_double_points_campaign(self):
        """The double points come from a campaign (双11): while it is active a gold member's
        order earns base + double + gold (100 + 100 + 50); paused, base + gold (150)."""
        archive_all(self.c)
        H.check_ok(self.c.post("/v1/rules", RATE), 201, "rate")
        cmp = H.check_ok(self.c.post("/v1/campaigns", {"name": "双11"}), 201, "campaign")
        H.check_ok(self.c.post("/v1/rules", dict(DOUBLE, campaign_id=cmp["id"])), 201, "double")
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "active"}), 200, "on")
        self.put_tiers(tiers_body(gold_benefits={"earn_multiplier": {"num": 3, "den": 2}}))
        g = self.member()
        self.earn(g, status=None, growth=1000)
        self.assertEqual(self.tier(g), "gold")
        order = {"id": "C-1", "amount": 10000, "currency": "CNY"}
        b = self.earn(g, order=order)
        by = {a["rule_id"]: a["points"] for a in b["transaction"]["awards"]}
        self.assertEqual(sorted(by.values()), [50, 100, 100], b)
        self.assertEqual(b["transaction"]["points"], 250, b)
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "paused"}), 200, "off")
        b = self.earn(g, order=dict(order, id="C-2"))
        self.assertEqual(b["transaction"]["points"], 150, b)
        self.assertEqual({a["rule_id"] for a in b["transaction"]["awards"]} & {"tier:gold"},
                         {"tier:gold"}, b)


class RefundTests(TierTestCase):
    def test_refund_drops_growth_not_the_tier_until_evaluation(self):
        archive_all(self.c)
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary"))
        rate = H.check_ok(self.c.get("/v1/program"), 200, "program")["earn_rate"]
        amount = -(-1000 * rate["per_amount"] // rate["points"])  # earns >= 1000
        m = self.member()
        b = self.earn(m, order={"id": "R1", "amount": amount, "currency": "CNY"})
        pts = b["transaction"]["points"]
        self.assertGreaterEqual(pts, 1000)
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["growth"]["lifetime"]), ("gold", pts), v)
        due = v["next_evaluation_at"]
        self.assertTimeEq(due, add_months(T0, 12), "next evaluation")
        self.set_clock(T0 + DAY)
        H.check_ok(self.c.post("/v1/orders/R1/refund", {"amount": amount}, idem=True),
                   201, "refund")
        v = self.view(m)
        self.assertEqual(v["growth"]["lifetime"], 0, v)
        self.assertLess(v["growth"]["window"], 1000, v)
        self.assertEqual(v["tier"]["code"], "gold", v)
        self.assertEqual(v["next_evaluation_at"], due, v)
        self.evaluate()
        self.assertEqual(self.tier(m), "gold")
        self.set_clock(add_months(T0, 12) + DAY)
        self.evaluate()
        v = self.view(m)
        self.assertEqual(v["tier"]["code"], "silver", v)
        self.assertEqual((v["history"][0]["kind"], v["history"][0]["from"]),
                         ("downgrade", "gold"), v)

    def test_refund_of_growth_earned_before_the_window(self):
        # Gold by an order at T0; refunded 11 months later; 13 months after T0 the rolling
        # window holds neither the earn nor (it is all taken back) any growth: the view
        # shows no negative growth (MemberTier.growth.window is non-negative in
        # docs/openapi.yaml) and the evaluation downgrades.
        archive_all(self.c)
        H.check_ok(self.c.post("/v1/rules", RATE), 201, "rate")
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary"))
        m = self.member()
        self.earn(m, order={"id": "W1", "amount": 100000, "currency": "CNY"})
        self.assertEqual(self.tier(m), "gold")
        self.set_clock(add_months(T0, 11))
        H.check_ok(self.c.post("/v1/orders/W1/refund", {"amount": 100000}, idem=True), 201, "rf")
        self.set_clock(add_months(T0, 13))
        v = self.view(m)
        self.assertEqual(v["growth"]["lifetime"], 0, v)
        self.assertGreaterEqual(v["growth"]["window"], 0, v)
        self.assertLessEqual(v["next_tier"]["growth_needed"], 5000, v)
        self.evaluate()
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["history"][0]["kind"]), ("silver", "downgrade"), v)
        self.assertGreaterEqual(v["growth"]["window"], 0, v)

    def test_partial_refunds_take_growth_back_ceil_on_running_total(self):
        archive_all(self.c)
        H.check_ok(self.c.post("/v1/rules", RATE), 201, "rate")
        self.put_tiers(tiers_body())
        m = self.member()
        b = self.earn(m, order={"id": "P1", "amount": 10000, "currency": "CNY"}, growth=37)
        self.assertEqual(b["transaction"]["points"], 100)
        self.assertEqual(self.growth(m)["lifetime"], 37)
        # Clawback ceil(100 x 3333 / 10000) = 34 points -> growth ceil(37 x 34 / 100) = 13;
        # running 6666 -> 67 points -> growth 25 in all; the rest settles exactly.
        for amount, clawed, left in ((3333, 34, 24), (3333, 33, 12), (3334, 33, 0)):
            r = H.check_ok(self.c.post("/v1/orders/P1/refund", {"amount": amount}, idem=True),
                           201, "refund %d" % amount)
            self.assertEqual(r["refund"]["clawback_points"], clawed, r)
            self.assertEqual(self.growth(m)["lifetime"], left, "after refunding %d" % amount)

    def test_reversal_takes_growth_back_ceil_on_running_total(self):
        self.put_tiers(tiers_body())
        m = self.member()
        eid = self.earn(m, points=100, growth=37)["transaction"]["id"]
        other = self.member()
        self.earn(other, points=10, growth=5)
        for pts, left in ((33, 37 - 13), (33, 37 - 25), (None, 0)):
            body = {} if pts is None else {"points": pts}
            H.check_ok(self.c.post("/v1/transactions/%s/reverse" % eid, body, idem=True),
                       201, "reverse %r" % body)
            # ceil(37 * 33 / 100) = 13; ceil(37 * 66 / 100) = 25; the rest: all of it.
            self.assertEqual(self.growth(m)["lifetime"], left, "after reversing %r" % body)
        self.assertEqual(self.growth(other)["lifetime"], 5)
        # A full reversal in one go takes back exactly all of it.
        e2 = self.earn(m, points=3, growth=1000)["transaction"]["id"]
        self.assertEqual(self.tier(m), "gold")
        H.check_ok(self.c.post("/v1/transactions/%s/reverse" % e2, {}, idem=True), 201, "rev")
        self.assertEqual(self.growth(m)["lifetime"], 0)
        self.assertEqual(self.tier(m), "gold")  # no demotion until evaluation


# ================================================================ 10. removal while held

class RemovalTests(TierTestCase):
    def test_tier_in_use(self):
        self.put_tiers(tiers_body())
        m = self.member()
        self.earn(m, points=1, growth=1000)
        self.assertEqual(self.tier(m), "gold")
        self.assertProblem(self.c.put("/v1/tiers", tiers_body(drop=("gold",))), 409,
                           "tier_in_use")
        got = H.check_ok(self.c.get("/v1/tiers"), 200, "get")
        self.assertEqual((got["version"], [t["code"] for t in got["tiers"]]),
                         (1, ["silver", "gold", "diamond"]))
        self.assertEqual(self.tier(m), "gold")
        self.assertEqual(self.put_tiers(tiers_body(drop=("diamond",)))["version"], 2)


# ================================================================ 11. concurrency

class ConcurrencyTests(TierTestCase):
    def test_32_concurrent_earns_upgrade_exactly_once(self):
        # 32 x 100 = 3200: past gold (1000), short of diamond (5000).
        self.put_tiers(tiers_body())
        m = self.member()
        n = 32
        key = self.env.t1["api_key"]
        clients = [self.env.client(key, timeout=60) for _ in range(n)]
        barrier = threading.Barrier(n, timeout=60)
        results = [None] * n

        def run(i):
            try:
                barrier.wait()
                results[i] = clients[i].post("/v1/members/%s/earn" % m,
                                             {"points": 1, "growth": 100}, idem=True)
            except BaseException as e:  # noqa: B902
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertTrue(all(getattr(r, "status", None) == 201 for r in results),
                        [r for r in results if getattr(r, "status", None) != 201][:3])
        txids = {r.body["transaction"]["id"] for r in results}
        v = self.view(m)
        self.assertEqual((v["tier"]["code"], v["growth"]["lifetime"]), ("gold", 3200), v)
        ups = [h for h in v["history"] if h["kind"] == "upgrade" and h["to"] == "gold"]
        self.assertEqual(len(ups), 1, v["history"])
        self.assertEqual([h for h in v["history"] if h["kind"] != "upgrade"], [], v["history"])
        self.assertIn(ups[0]["transaction_id"], txids)
        self.assertEqual(ups[0]["growth"], 1000, ups[0])
        ev = [e for e in list_events(self.c, "tier.upgraded")
              if e["member_id"] == m and e["data"]["to"] == "gold"]
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(H.points_of(self.c, m)["available"], n)



# ================================================================ the command line

class CliTests(TierTestCase):
    def setUp(self):
        # The CLI runs on the real clock, so the server's test clock is left at its start
        # (the real time then), not moved to 2028: every change is in real-time order.
        self.env = H.start_env(self)
        self.c = self.env.admin
        if H.clock_now(self.c) < H.parse_time("2026-06-02T00:00:00Z"):
            self.skipTest("the real clock is before 2026-06-02")

    def test_tiers_evaluate_and_member_from_the_command_line(self):
        # A tier imported as reached in mid-2025 is due in mid-2026, past for the CLI.
        self.put_tiers(tiers_body(window=ROLLING12, evaluation="anniversary"))
        m = self.member()
        r = self.c.post("/v1/tiers/import", {"members": [
            {"member_id": m, "tier": "gold", "since": "2025-06-01T00:00:00Z"}]})
        self.assertEqual(r.status, 200, r)
        db = self.env.db
        rc, out, err = H.run_cli(["tiers", "evaluate", "--db", db, "--tenant", "t1",
                                  "--as-of", "2025-12-01T00:00:00Z"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["evaluated"], 0, out)
        rc, out, err = H.run_cli(["tiers", "evaluate", "--db", db, "--tenant", "t1"])
        self.assertEqual(rc, 0, err)
        res = json.loads(out)
        self.assertEqual((res["evaluated"], res["downgraded"]), (1, 1), out)
        rc, out, err = H.run_cli(["tiers", "member", "--db", db, "--tenant", "t1", m])
        self.assertEqual(rc, 0, err)
        v = json.loads(out)
        self.assertEqual((v["tier"]["code"], v["history"][0]["kind"], v["history"][0]["actor"]),
                         ("silver", "downgrade", "cli"), v)
        self.assertEqual(self.tier(m), "silver")  # the server sees it
        rc, out, err = H.run_cli(["tiers", "evaluate", "--db", db, "--tenant", "t1"])
        self.assertEqual((rc, json.loads(out)["evaluated"]), (0, 0), out + err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
