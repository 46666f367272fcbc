"""Daily check-in over HTTP (docs/RULES.md, Check-in): once per local day of the
program's time zone (Asia/Shanghai across the UTC day boundary, with the test
clock), the streak and its reset, points from a "check_in" rule with a streak
bonus, limits, the month's calendar, idempotent replays.
Run: python3 tests/api/test_checkin.py"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

HOUR = 3600 * 1000
# 2027-03-01T15:30Z is 23:30 on 1 March in Shanghai; 16:30Z is 00:30 on 2 March.
T0 = H.parse_time("2027-03-01T15:30:00Z")
STREAK = {"name": "连续签到", "trigger": "check_in",
          "effect": {"type": "check_in", "points": 5,
                     "streak_bonus": [{"day": 3, "points": 20}, {"day": 7, "points": 50}]}}


def check_in(c, mid, idem=True):
    return c.post("/v1/members/%s/check-in" % mid, {}, idem=idem)


def calendar(c, mid, month=None):
    return H.check_ok(c.get("/v1/members/%s/check-in" % mid,
                            params={"month": month} if month else None), 200, "calendar")


class CheckInTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        H.clock_set(self.c, max(T0, H.clock_now(self.c)))
        if H.clock_now(self.c) != T0:
            self.skipTest("the test clock is already past 2027-03-01")
        self.m = H.create_member(self.c)["id"]

    def tearDown(self):
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def assertProblem(self, r, status, code):
        self.assertEqual((r.status, r.body.get("code")), (status, code), r)

    def test_once_per_local_day_across_the_utc_boundary(self):
        H.check_ok(self.c.post("/v1/rules", STREAK), 201, "rule")
        b = H.check_ok(check_in(self.c, self.m), 201, "first")
        self.assertEqual(b["check_in"], {"date": "2027-03-01", "streak": 1, "points": 5})
        self.assertEqual(b["transaction"]["points"], 5)
        self.assertEqual(len(b["awards"]), 1)
        # 20 minutes later it is still 1 March in Shanghai (15:50Z).
        H.clock_advance(self.c, 20 * 60 * 1000)
        self.assertProblem(check_in(self.c, self.m), 409, "already_checked_in")
        # 00:30 on 2 March in Shanghai, still 1 March in UTC: a new day.
        H.clock_advance(self.c, 40 * 60 * 1000)
        b = H.check_ok(check_in(self.c, self.m), 201, "second day")
        self.assertEqual(b["check_in"], {"date": "2027-03-02", "streak": 2, "points": 5})
        H.clock_advance(self.c, 24 * HOUR)
        b = H.check_ok(check_in(self.c, self.m), 201, "third day")
        self.assertEqual(b["check_in"], {"date": "2027-03-03", "streak": 3, "points": 25})
        self.assertIn("bonus 20", b["awards"][0]["explanation"])
        self.assertEqual(H.points_of(self.c, self.m)["available"], 35)
        # Miss 4 March: the streak starts again on 5 March.
        H.clock_advance(self.c, 48 * HOUR)
        b = H.check_ok(check_in(self.c, self.m), 201, "after a gap")
        self.assertEqual(b["check_in"], {"date": "2027-03-05", "streak": 1, "points": 5})
        cal = calendar(self.c, self.m, "2027-03")
        self.assertEqual([d["date"] for d in cal["days"]],
                         ["2027-03-01", "2027-03-02", "2027-03-03", "2027-03-05"])
        self.assertEqual((cal["current_streak"], cal["checked_in_today"], cal["today"]),
                         (1, True, "2027-03-05"))
        self.assertEqual(calendar(self.c, self.m, "2027-02")["days"], [])
        H.clock_advance(self.c, 24 * HOUR)
        cal = calendar(self.c, self.m)
        self.assertEqual((cal["month"], cal["current_streak"], cal["checked_in_today"]),
                         ("2027-03", 1, False))

    def test_seven_day_bonus_cycle_and_limits(self):
        rule = dict(STREAK, effect=dict(STREAK["effect"], cycle_days=7),
                    limits={"budget": {"max_points": 100}})
        H.check_ok(self.c.post("/v1/rules", rule), 201, "rule")
        got = []
        for _ in range(9):
            b = H.check_ok(check_in(self.c, self.m), 201, "check in")
            got.append(b["check_in"]["points"])
            H.clock_advance(self.c, 24 * HOUR)
        # 5 5 25 5 5 5 55 = 105 is capped at the budget of 100, then nothing.
        self.assertEqual(got, [5, 5, 25, 5, 5, 5, 50, 0, 0])
        b = H.check_ok(check_in(self.c, self.m), 201, "tenth")
        self.assertEqual((b["check_in"]["streak"], b["transaction"]), (10, None))

    def test_no_rule_records_the_streak_without_points(self):
        b = H.check_ok(check_in(self.c, self.m), 201, "no rule")
        self.assertEqual((b["check_in"]["points"], b["transaction"], b["awards"]), (0, None, []))
        self.assertEqual(calendar(self.c, self.m)["current_streak"], 1)

    def test_replay_key_and_errors(self):
        H.check_ok(self.c.post("/v1/rules", STREAK), 201, "rule")
        key = H.idem_key("checkin")
        r1 = check_in(self.c, self.m, idem=key)
        r2 = check_in(self.c, self.m, idem=key)
        self.assertEqual((r1.status, r2.status, r1.raw), (201, 201, r2.raw))
        self.assertTrue(r2.replayed)
        self.assertProblem(check_in(self.c, self.m, idem=None), 400, "idempotency_key_required")
        self.assertProblem(check_in(self.c, "mem_nope"), 404, "not_found")
        r = self.c.get("/v1/members/%s/check-in" % self.m, params={"month": "2027-13"})
        self.assertProblem(r, 400, "invalid_request")
        bad = dict(STREAK, effect={"type": "rate", "points": 1, "per_amount": 1})
        self.assertEqual(self.c.post("/v1/rules", bad).status, 400)
        bad = {"name": "x", "trigger": "purchase", "effect": STREAK["effect"]}
        self.assertEqual(self.c.post("/v1/rules", bad).status, 400)


if __name__ == "__main__":
    unittest.main(verbosity=2)
