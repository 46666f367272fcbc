"""Referrals over HTTP (docs/RULES.md, Referrals): every member has a short,
unambiguous, unique referral code; POST /v1/members with "referral_code" links
the new member to the referrer (unknown code: 422 invalid_referral_code; another
tenant's code is unknown); "referral" rules reward referrer and/or referee on
signup or on the referee's first purchase, once, with caps.
Run: python3 tests/api/test_referrals.py"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

SIGNUP = {"name": "邀请有礼 signup", "trigger": "referral",
          "effect": {"type": "referral", "on": "signup", "referrer_points": 100,
                     "referee_points": 50},
          "limits": {"per_member": {"period": "lifetime", "max_awards": 2}}}
FIRST = {"name": "邀请有礼 first purchase", "trigger": "referral",
         "effect": {"type": "referral", "on": "first_purchase", "referrer_points": 200}}


def points(c, mid):
    return H.points_of(c, mid)["available"]


class ReferralTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin

    def tearDown(self):
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def test_codes_are_short_unambiguous_and_unique(self):
        codes = [H.create_member(self.c)["referral_code"] for _ in range(40)]
        codes += [H.create_member(self.env.admin2)["referral_code"] for _ in range(10)]
        self.assertEqual(len(set(codes)), len(codes))
        for code in codes:
            self.assertRegex(code, r"^[2-9A-HJKMNP-Z]{8}$")
            self.assertIsNone(re.search(r"[01OIL]", code))
        m = H.create_member(self.c)
        self.assertEqual(H.member_of(self.c, m["id"])["referral_code"], m["referral_code"])
        self.assertIsNone(m["referred_by"])

    def test_link_and_errors(self):
        a = H.create_member(self.c)
        b = H.create_member(self.c, referral_code=a["referral_code"].lower())
        self.assertEqual(b["referred_by"], a["id"])
        for bad in ("ZZZZZZZZ", "2345678", "O0O0O0O0", "AAAAAAAAA"):
            r = self.c.post("/v1/members", {"external_id": "x-" + bad, "referral_code": bad})
            self.assertEqual((r.status, r.body.get("code")), (422, "invalid_referral_code"), r)
        other = H.create_member(self.env.admin2)
        r = self.c.post("/v1/members", {"external_id": "x-other",
                                        "referral_code": other["referral_code"]})
        self.assertEqual((r.status, r.body.get("code")), (422, "invalid_referral_code"), r)
        # Without rules a referral links and awards nothing.
        self.assertEqual((points(self.c, a["id"]), points(self.c, b["id"])), (0, 0))

    def test_signup_and_first_purchase_rewards_with_caps(self):
        H.check_ok(self.c.post("/v1/rules", SIGNUP), 201, "signup rule")
        H.check_ok(self.c.post("/v1/rules", FIRST), 201, "first purchase rule")
        a = H.create_member(self.c)
        refs = [H.create_member(self.c, referral_code=a["referral_code"]) for _ in range(3)]
        self.assertEqual([points(self.c, r["id"]) for r in refs], [50, 50, 50])
        self.assertEqual(points(self.c, a["id"]), 200)  # the cap: 2 signup awards
        txs = H.list_all(self.c, "/v1/members/%s/transactions" % a["id"])
        self.assertEqual(sorted(t["metadata"]["role"] for t in txs), ["referrer", "referrer"])
        t = H.check_ok(self.c.get("/v1/transactions/%s" % txs[0]["id"]), 200, "tx")
        self.assertIn("referral at signup", t["awards"][0]["explanation"])
        order = {"id": "ref-o1", "amount": 1000, "currency": "CNY"}
        b = H.check_ok(H.earn(self.c, refs[0]["id"], order=order), 201, "first purchase")
        self.assertEqual(b["points"]["available"], 60)  # 50 + 10 base-rate points
        self.assertEqual(points(self.c, a["id"]), 400)
        order = {"id": "ref-o2", "amount": 1000, "currency": "CNY"}
        H.check_ok(H.earn(self.c, refs[0]["id"], order=order), 201, "second purchase")
        self.assertEqual(points(self.c, a["id"]), 400)  # only the first purchase counts
        # Explicit points are not a purchase; a frozen referrer gets nothing.
        H.check_ok(H.earn(self.c, refs[1]["id"], points=5), 201, "points")
        self.assertEqual(points(self.c, a["id"]), 400)
        H.check_ok(self.c.patch("/v1/members/%s" % a["id"], {"status": "frozen"}), 200, "f")
        order = {"id": "ref-o3", "amount": 1000, "currency": "CNY"}
        H.check_ok(H.earn(self.c, refs[2]["id"], order=order), 201, "frozen referrer")
        H.check_ok(self.c.patch("/v1/members/%s" % a["id"], {"status": "active"}), 200, "a")
        self.assertEqual(points(self.c, a["id"]), 400)

    def test_rule_validation(self):
        bad = [dict(SIGNUP, effect={"type": "referral", "on": "birthday",
                                    "referrer_points": 1}),
               dict(SIGNUP, effect={"type": "referral", "on": "signup"}),
               dict(SIGNUP, effect={"type": "fixed", "points": 1}),
               {"name": "x", "trigger": "purchase", "effect": SIGNUP["effect"]}]
        for body in bad:
            with self.subTest(body=body):
                self.assertEqual(self.c.post("/v1/rules", body).status, 400)


if __name__ == "__main__":
    unittest.main(verbosity=2)
