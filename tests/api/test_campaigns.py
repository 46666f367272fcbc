"""Campaigns over HTTP (docs/RULES.md, Campaigns): a campaign's rules earn only
while it is active and inside its window; draft campaigns can be previewed with
a dry run; paused and ended campaigns stop earning; the budget caps all its
rules together, even under 64 concurrent requests; ended is final.
Run: python3 tests/api/test_campaigns.py"""

import os
import sys
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

DAY = 24 * 3600 * 1000
START = H.parse_time("2027-06-01T00:00:00Z")


def archive_all(c):
    for r in H.check_ok(c.get("/v1/rules"), 200, "rules")["data"]:
        H.check_ok(c.post("/v1/rules/%s/archive" % r["id"]), 200, "archive")


def review_rule(cid, points=10, name="review bonus"):
    return {"name": name, "trigger": "event", "event": "review_posted", "campaign_id": cid,
            "effect": {"type": "fixed", "points": points}}


def event(c, mid, **kw):
    body = {"name": "review_posted"}
    body.update(kw)
    return c.post("/v1/members/%s/events" % mid, body, idem=None if kw else True)


class CampaignTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin
        archive_all(self.c)
        H.clock_set(self.c, max(START, H.clock_now(self.c)))
        if H.clock_now(self.c) != START:
            self.skipTest("the test clock is already past 2027-06-01")
        self.m = H.create_member(self.c)["id"]

    def tearDown(self):
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def points(self):
        return H.points_of(self.c, self.m)["available"]

    def test_lifecycle_window_and_preview(self):
        cmp = H.check_ok(self.c.post("/v1/campaigns", {
            "name": "618", "starts_at": H.fmt_time(START + DAY),
            "ends_at": H.fmt_time(START + 3 * DAY)}), 201, "create")
        self.assertEqual((cmp["status"], cmp["budget"]), ("draft", {"max_points": None,
                                                                    "max_awards": None}))
        H.check_ok(self.c.post("/v1/rules", review_rule(cmp["id"])), 201, "rule")
        r = self.c.post("/v1/rules", review_rule("cmp_nope"))
        self.assertEqual(r.status, 404, r)
        H.clock_set(self.c, START + DAY)
        # Draft: earns nothing, but a dry run with drafts previews it.
        self.assertEqual(H.check_ok(event(self.c, self.m), 200, "draft")["total_points"], 0)
        prev = H.check_ok(event(self.c, self.m, dry_run=True, include_drafts=True), 200, "pv")
        self.assertEqual(prev["total_points"], 10)
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "active"}), 200, "a")
        self.assertEqual(H.check_ok(event(self.c, self.m), 201, "active")["transaction"]
                         ["points"], 10)
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "paused"}), 200, "p")
        self.assertEqual(H.check_ok(event(self.c, self.m), 200, "paused")["total_points"], 0)
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "active"}), 200, "a")
        H.clock_set(self.c, START + 3 * DAY)  # the window is over
        self.assertEqual(H.check_ok(event(self.c, self.m), 200, "after")["total_points"], 0)
        got = H.check_ok(self.c.get("/v1/campaigns/%s" % cmp["id"]), 200, "get")
        self.assertEqual((got["usage"], len(got["rules"])), ({"points": 10, "awards": 1}, 1))
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "ended"}), 200, "e")
        r = self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "active"})
        self.assertEqual((r.status, r.body.get("code")), (400, "invalid_request"), r)
        self.assertEqual(len(H.check_ok(self.c.get("/v1/campaigns"), 200, "list")["data"]), 1)
        self.assertEqual(self.env.admin2.get("/v1/campaigns/%s" % cmp["id"]).status, 404)

    def test_budget_is_shared_by_its_rules_and_never_exceeded(self):
        cmp = H.check_ok(self.c.post("/v1/campaigns", {
            "name": "budgeted", "status": "active", "budget": {"max_points": 1000}}), 201, "c")
        H.check_ok(self.c.post("/v1/rules", review_rule(cmp["id"], 30, "a")), 201, "a")
        H.check_ok(self.c.post("/v1/rules", review_rule(cmp["id"], 20, "b")), 201, "b")
        members = [H.create_member(self.c)["id"] for _ in range(8)]
        errors = []

        def worker(mid):
            c = self.env.client(self.env.t1["api_key"])
            for _ in range(8):
                r = event(c, mid)
                if r.status not in (200, 201):
                    errors.append(r)

        threads = [threading.Thread(target=worker, args=(mid,)) for mid in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        total = sum(H.points_of(self.c, mid)["available"] for mid in members)
        self.assertEqual(total, 1000)  # 64 events x 50 would be 3200
        got = H.check_ok(self.c.get("/v1/campaigns/%s" % cmp["id"]), 200, "get")
        self.assertEqual(got["usage"]["points"], 1000)

    def test_budget_holds_within_one_batch(self):
        """The order earns of one POST /v1/batch run in one writer batch, which
        keeps each rule's usage in memory until its commit (hot.c): every
        earn still sees the awards of those before it, and so does the
        campaign's usage after it."""
        cmp = H.check_ok(self.c.post("/v1/campaigns", {
            "name": "batched", "status": "active", "budget": {"max_points": 100}}), 201, "c")
        H.check_ok(self.c.post("/v1/rules", {
            "name": "order bonus", "trigger": "purchase", "campaign_id": cmp["id"],
            "effect": {"type": "fixed", "points": 30}}), 201, "rule")
        tag = uuid.uuid4().hex[:8]
        ops = [{"op": "earn", "id": self.m, "idempotency_key": "cb-%s-%d" % (tag, i),
                "body": {"order": {"id": "cb-%s-%d" % (tag, i), "amount": 1000,
                                   "currency": "CNY"}}} for i in range(6)]
        r = H.check_ok(self.c.post("/v1/batch", {"operations": ops}), 200, "batch")
        self.assertEqual(r["failed"], 0, r)
        got = [x["body"]["transaction"]["points"] for x in r["results"]]
        self.assertEqual(got, [30, 30, 30, 10, 0, 0])
        self.assertEqual(self.points(), 100)
        usage = H.check_ok(self.c.get("/v1/campaigns/%s" % cmp["id"]), 200, "get")["usage"]
        self.assertEqual(usage, {"points": 100, "awards": 4})

    def test_validation(self):
        for body in ({}, {"name": "x", "status": "live"},
                     {"name": "x", "budget": {}}, {"name": "x", "budget": 1000},
                     {"name": "x", "budget": {"max_points": 1, "max_euros": 1}},
                     {"name": "x", "starts_at": "2027-01-02T00:00:00Z",
                      "ends_at": "2027-01-01T00:00:00Z"}):
            with self.subTest(body=body):
                self.assertEqual(self.c.post("/v1/campaigns", body).status, 400)
        _, op = self.env.key("operator")
        self.assertEqual(op.post("/v1/campaigns", {"name": "x"}).status, 403)
        self.assertEqual(op.get("/v1/campaigns").status, 200)
        self.assertEqual(H.check_ok(self.c.get("/v1/campaigns"), 200, "list")["data"], [])
        cmp = H.check_ok(self.c.post("/v1/campaigns", {"name": "x"}), 201, "c")
        # A campaign that has started cannot go back to draft; a draft may stay one.
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "draft"}), 200, "d")
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "active"}), 200, "a")
        r = self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "draft"})
        self.assertEqual((r.status, r.body.get("code")), (400, "invalid_request"), r)
        self.assertIn("back to draft", r.body.get("detail", ""), r)
        H.check_ok(self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "paused"}), 200, "p")
        r = self.c.patch("/v1/campaigns/%s" % cmp["id"], {"status": "draft"})
        self.assertEqual((r.status, r.body.get("code")), (400, "invalid_request"), r)
        self.assertEqual(H.check_ok(self.c.get("/v1/campaigns/%s" % cmp["id"]), 200,
                                    "get")["status"], "paused")
        rule = H.check_ok(self.c.post("/v1/rules", review_rule(cmp["id"])), 201, "r")
        r = self.c.put("/v1/rules/%s" % rule["id"], review_rule(None))
        self.assertEqual(r.status, 400, r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
