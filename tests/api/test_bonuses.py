"""Signup and birthday bonuses over HTTP (docs/RULES.md): a signup rule pays
once, at creation; a birthday rule pays once per local year of the program's
time zone (Asia/Shanghai across the UTC day boundary, with the test clock), at
the member's first activity of the day or by the daily job (POST
/v1/bonuses/run, `jifen expire`), whichever is first; idempotent.
Run: python3 tests/api/test_bonuses.py"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

HOUR = 3600 * 1000
# 15:30Z on 19 May 2027 is 23:30 in Shanghai; 16:30Z is 00:30 on 20 May.
EVE = H.parse_time("2027-05-19T15:30:00Z")
BIRTHDAY = {"name": "生日礼", "trigger": "birthday", "effect": {"type": "fixed", "points": 100}}
SIGNUP = {"name": "注册礼", "trigger": "signup", "effect": {"type": "fixed", "points": 30}}


def avail(c, mid):
    return H.points_of(c, mid)["available"]


def sweep(c):
    return H.check_ok(c.post("/v1/bonuses/run", {}), 200, "bonus run")["birthday_members"]


class BonusTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        H.clock_set(self.c, max(EVE, H.clock_now(self.c)))
        if H.clock_now(self.c) != EVE:
            self.skipTest("the test clock is already past 2027-05-19")

    def tearDown(self):
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def test_signup_once_at_creation_only(self):
        before = H.create_member(self.c)["id"]
        H.check_ok(self.c.post("/v1/rules", SIGNUP), 201, "rule")
        m = H.create_member(self.c)
        self.assertEqual(m["points"]["available"], 30)
        H.check_ok(H.earn(self.c, m["id"], points=1), 201, "activity")
        H.check_ok(H.earn(self.c, before, points=1), 201, "activity of an older member")
        self.assertEqual((avail(self.c, m["id"]), avail(self.c, before)), (31, 1))

    def test_birthday_at_first_activity_then_job_is_a_no_op(self):
        H.check_ok(self.c.post("/v1/rules", BIRTHDAY), 201, "rule")
        a = H.create_member(self.c, birthday="1990-05-20")["id"]
        b = H.create_member(self.c, birthday="1991-05-20")["id"]
        self.assertEqual(sweep(self.c), 0)  # 19 May in Shanghai: not yet
        H.check_ok(H.earn(self.c, a, points=1), 201, "eve")
        self.assertEqual(avail(self.c, a), 1)
        H.clock_advance(self.c, HOUR)  # 00:30 on 20 May in Shanghai, 16:30Z on 19 May
        r = H.check_ok(H.earn(self.c, a, points=1), 201, "first activity")
        self.assertEqual(r["points"]["available"], 102)
        H.check_ok(H.earn(self.c, a, points=1), 201, "second activity")
        self.assertEqual(avail(self.c, a), 103)
        self.assertEqual(sweep(self.c), 1)  # only b is still due
        self.assertEqual(sweep(self.c), 0)
        self.assertEqual(avail(self.c, b), 100)
        H.check_ok(H.earn(self.c, b, points=1), 201, "b's activity after the job")
        self.assertEqual(avail(self.c, b), 101)
        txs = H.list_all(self.c, "/v1/members/%s/transactions" % b)
        bonus = [t for t in txs if (t.get("metadata") or {}).get("bonus") == "birthday"]
        self.assertEqual([(t["points"], t["metadata"]["period"]) for t in bonus],
                         [(100, "2027")])
        # The next year pays again, once.
        H.clock_advance(self.c, 366 * 24 * HOUR)
        self.assertEqual(sweep(self.c), 2)
        self.assertEqual(sweep(self.c), 0)
        self.assertEqual((avail(self.c, a), avail(self.c, b)), (203, 201))

    def test_dry_run_undoes_the_birthday_bonus_it_grants_on_the_way(self):
        """A dry-run earn is a member's activity: the due birthday bonus is
        granted on the way and undone with the rest.  The writer keeps the
        tenant's chain head and the issuance account in memory for the batch;
        they must be undone with it, or the next transaction leaves a gap in
        the chain and the issuance balance is off (verify in tearDown)."""
        H.check_ok(self.c.post("/v1/rules", BIRTHDAY), 201, "rule")
        a = H.create_member(self.c, birthday="1990-05-20")["id"]
        H.clock_advance(self.c, HOUR)  # 20 May in Shanghai
        dry = H.check_ok(self.c.post("/v1/members/%s/earn" % a,
                                     {"order": {"id": "o-dry", "amount": 1000,
                                                "currency": "CNY"}, "dry_run": True}),
                         200, "dry run")
        self.assertTrue(dry["dry_run"])
        self.assertEqual(avail(self.c, a), 0, "the dry run's birthday bonus was kept")
        r = H.check_ok(H.earn(self.c, a, points=1), 201, "first real activity")
        self.assertEqual(r["points"]["available"], 101)
        txs = H.list_all(self.c, "/v1/members/%s/transactions" % a)
        self.assertEqual(sorted(t["points"] for t in txs), [1, 100])

    def test_leap_day_birthday(self):
        H.check_ok(self.c.post("/v1/rules", BIRTHDAY), 201, "rule")
        m = H.create_member(self.c, birthday="2000-02-29")["id"]
        H.clock_set(self.c, H.parse_time("2028-02-27T16:30:00Z"))  # 28 Feb 2028: leap year
        self.assertEqual(sweep(self.c), 0)
        H.clock_set(self.c, H.parse_time("2028-02-28T16:30:00Z"))  # 29 Feb 2028
        self.assertEqual(sweep(self.c), 1)
        H.clock_set(self.c, H.parse_time("2029-02-27T16:30:00Z"))  # 28 Feb 2029: common year
        H.check_ok(H.earn(self.c, m, points=1), 201, "activity on 28 Feb")
        self.assertEqual(avail(self.c, m), 201)
        self.assertEqual(sweep(self.c), 0)

    def test_validation(self):
        bad = dict(BIRTHDAY, effect={"type": "rate", "points": 1, "per_amount": 100})
        r = self.c.post("/v1/rules", bad)
        self.assertEqual((r.status, r.body.get("code")), (400, "invalid_field"), r)
        _, op = self.env.key("operator")
        self.assertEqual(op.post("/v1/bonuses/run", {}).status, 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
