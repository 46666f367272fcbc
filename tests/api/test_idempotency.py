"""Idempotency over HTTP (invariant I5): replays are byte-identical, carry
`Idempotent-Replayed: true` and change nothing; a reused key with another
request is refused; keys are per tenant; refused requests are not stored.
Run: python3 tests/api/test_idempotency.py"""

import json
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402


class IdempotencyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = H.Env()
        cls.addClassCleanup(cls.env.close)
        cls.a = cls.env.admin
        cls.pos_id, cls.pos = cls.env.key("pos")

    # ---------------------------------------------------------------- helpers

    def snapshot(self, *mids):
        """Everything a replay must not change: points views, transaction and lot lists."""
        snap = {}
        for mid in mids:
            p = H.points_of(self.a, mid)
            p.pop("as_of", None)
            snap[mid] = (p,
                         [t["id"] for t in H.list_all(self.a, "/v1/members/%s/transactions"
                                                      % mid)],
                         H.list_all(self.a, "/v1/members/%s/lots" % mid),
                         H.list_all(self.a, "/v1/members/%s/holds" % mid, {"status": "all"}))
        snap["all"] = len(H.list_all(self.a, "/v1/transactions"))
        return snap

    def assertReplay(self, first, again, what):
        self.assertEqual(again.status, first.status, "%s: replay status %r vs %r"
                         % (what, again, first))
        self.assertEqual(again.raw, first.raw, "%s: replay body differs" % what)
        self.assertTrue(again.replayed, "%s: no Idempotent-Replayed: true on replay: %r"
                        % (what, dict(again.headers)))
        self.assertFalse(first.replayed, "%s: original marked as replayed" % what)

    def assertProblem(self, r, status, code, what=""):
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        self.assertTrue((r.headers.get("Content-Type") or "").startswith(
            "application/problem+json"), what)
        self.assertEqual(r.code, code, "%s: %r" % (what, r))

    def funded(self, n):
        m = H.create_member(self.a)
        if n:
            H.check_ok(H.earn(self.a, m["id"], n), 201, "fund")
        return m

    # ---------------------------------------------------------------- tests

    def test_replay_every_points_operation(self):
        m = self.funded(1000)
        other = self.funded(0)
        e = H.check_ok(H.earn(self.a, m["id"], 50), 201, "earn")
        hold_for_capture = H.check_ok(self.a.post("/v1/members/%s/holds" % m["id"],
                                                  {"points": 20}, idem=True), 201, "h")["hold"]
        hold_for_void = H.check_ok(self.a.post("/v1/members/%s/holds" % m["id"],
                                               {"points": 20}, idem=True), 201, "h")["hold"]
        ops = [
            ("earn", "/v1/members/%s/earn" % m["id"], {"points": 7}),
            ("earn order", "/v1/members/%s/earn" % m["id"],
             {"order": {"id": "o-" + uuid.uuid4().hex, "amount": 1234, "currency": "CNY"}}),
            ("redeem", "/v1/members/%s/redeem" % m["id"], {"points": 3}),
            ("adjust", "/v1/members/%s/adjust" % m["id"], {"points": -2, "reason": "r"}),
            ("transfer", "/v1/members/%s/transfer" % m["id"],
             {"to_member_id": other["id"], "points": 5}),
            ("hold", "/v1/members/%s/holds" % m["id"], {"points": 4}),
            ("capture", "/v1/holds/%s/capture" % hold_for_capture["id"], {"points": 5}),
            ("void", "/v1/holds/%s/void" % hold_for_void["id"], {}),
            ("reverse", "/v1/transactions/%s/reverse" % e["transaction"]["id"], {"points": 9}),
        ]
        for name, path, body in ops:
            with self.subTest(op=name):
                key = H.idem_key(name.replace(" ", "-"))
                first = self.a.post(path, body, idem=key)
                self.assertEqual(first.status, 201, "%s: %r" % (name, first))
                before = self.snapshot(m["id"], other["id"])
                for _ in range(2):
                    again = self.a.post(path, body, idem=key)
                    self.assertReplay(first, again, name)
                self.assertEqual(self.snapshot(m["id"], other["id"]), before,
                                 "%s: replay changed state" % name)
        # the transaction of each op exists once
        ts = H.list_all(self.a, "/v1/members/%s/transactions" % m["id"])
        self.assertEqual(len(ts), len(set(t["id"] for t in ts)))

    def test_replay_of_hold_after_capture_is_the_stored_response(self):
        m = self.funded(100)
        key = H.idem_key()
        first = self.a.post("/v1/members/%s/holds" % m["id"], {"points": 10}, idem=key)
        self.assertEqual(first.status, 201, first)
        hid = first.body["hold"]["id"]
        H.check_ok(self.a.post("/v1/holds/%s/capture" % hid, {}, idem=True), 201, "capture")
        again = self.a.post("/v1/members/%s/holds" % m["id"], {"points": 10}, idem=key)
        self.assertReplay(first, again, "hold replay after capture")
        self.assertEqual(again.body["hold"]["status"], "open")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 90)

    def test_canonical_body_and_other_key_of_same_tenant_replay(self):
        m = self.funded(0)
        key = H.idem_key()
        path = "/v1/members/%s/earn" % m["id"]
        first = self.a.post(path, '{"points": 11, "note": "a", "metadata": {"x": 1, "y": [1,2]}}',
                            idem=key)
        self.assertEqual(first.status, 201, first)
        again = self.a.post(path, '{ "metadata":{"y":[1, 2],"x":1},"note":"a","points":11 }',
                            idem=key)
        self.assertReplay(first, again, "reordered body")
        again = self.pos.post(path, '{"points":11,"note":"a","metadata":{"x":1,"y":[1,2]}}',
                              idem=key)
        self.assertReplay(first, again, "another key of the same tenant")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 11)
        self.assertEqual(len(H.list_all(self.a, "/v1/members/%s/transactions" % m["id"])), 1)

    def test_same_key_different_request_is_refused(self):
        m = self.funded(100)
        m2 = self.funded(100)
        key = H.idem_key()
        first = H.earn(self.a, m["id"], 10, idem=key)
        self.assertEqual(first.status, 201, first)
        before = self.snapshot(m["id"], m2["id"])
        cases = [
            ("different points", "/v1/members/%s/earn" % m["id"], {"points": 11}),
            ("extra field", "/v1/members/%s/earn" % m["id"], {"points": 10, "note": "x"}),
            ("another member", "/v1/members/%s/earn" % m2["id"], {"points": 10}),
            ("another path", "/v1/members/%s/redeem" % m["id"], {"points": 10}),
            ("another op on other object", "/v1/members/%s/holds" % m2["id"], {"points": 10}),
        ]
        for name, path, body in cases:
            with self.subTest(case=name):
                r = self.a.post(path, body, idem=key)
                self.assertProblem(r, 422, "idempotency_key_reused", name)
                self.assertFalse(r.replayed)
        self.assertEqual(self.snapshot(m["id"], m2["id"]), before)
        # the original still replays
        self.assertReplay(first, H.earn(self.a, m["id"], 10, idem=key), "after refusals")

    def test_keys_are_per_tenant(self):
        key = H.idem_key("shared")
        m1 = self.funded(0)
        m2 = H.create_member(self.env.admin2)
        r1 = H.earn(self.a, m1["id"], 5, idem=key)
        self.assertEqual(r1.status, 201, r1)
        # same key string, tenant 2, a different request: independent, not reused
        r2 = H.earn(self.env.admin2, m2["id"], 8, idem=key)
        self.assertEqual(r2.status, 201, r2)
        self.assertFalse(r2.replayed)
        self.assertNotEqual(r2.body["transaction"]["id"], r1.body["transaction"]["id"])
        self.assertEqual(H.points_of(self.env.admin2, m2["id"])["available"], 8)
        # each tenant replays its own
        self.assertReplay(r1, H.earn(self.a, m1["id"], 5, idem=key), "tenant 1")
        self.assertReplay(r2, H.earn(self.env.admin2, m2["id"], 8, idem=key), "tenant 2")
        # tenant 1's key on tenant 2's member path: refused (404, or 422 reused), never applied
        r = H.earn(self.a, m2["id"], 8, idem=key)
        self.assertIn((r.status, r.code), ((404, "not_found"), (422, "idempotency_key_reused")),
                      r)
        self.assertEqual(H.points_of(self.a, m1["id"])["available"], 5)
        self.assertEqual(H.points_of(self.env.admin2, m2["id"])["available"], 8)

    def test_refused_request_is_not_stored(self):
        m = self.funded(0)
        key = H.idem_key()
        r = H.redeem(self.a, m["id"], 50, idem=key)
        self.assertProblem(r, 422, "insufficient_points", "redeem on empty")
        self.assertFalse(r.replayed)
        r = H.redeem(self.a, m["id"], 50, idem=key)
        self.assertProblem(r, 422, "insufficient_points", "retry still evaluated anew")
        self.assertFalse(r.replayed)
        H.check_ok(H.earn(self.a, m["id"], 100), 201, "earn")
        first = H.redeem(self.a, m["id"], 50, idem=key)
        self.assertEqual(first.status, 201, "retry after earning: %r" % first)
        self.assertFalse(first.replayed)
        self.assertReplay(first, H.redeem(self.a, m["id"], 50, idem=key), "then replays")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 50)
        # a request refused by validation is not stored either
        key2 = H.idem_key()
        r = self.a.post("/v1/members/%s/earn" % m["id"], {"points": "x"}, idem=key2)
        self.assertEqual(r.status, 400, r)
        r = H.earn(self.a, m["id"], 3, idem=key2)
        self.assertEqual(r.status, 201, r)
        self.assertFalse(r.replayed)
        # and a frozen member's refusal
        key3 = H.idem_key()
        H.check_ok(self.a.patch("/v1/members/" + m["id"], {"status": "frozen"}), 200, "freeze")
        self.assertProblem(H.earn(self.a, m["id"], 4, idem=key3), 422, "member_frozen")
        H.check_ok(self.a.patch("/v1/members/" + m["id"], {"status": "active"}), 200, "thaw")
        r = H.earn(self.a, m["id"], 4, idem=key3)
        self.assertEqual(r.status, 201, r)
        self.assertFalse(r.replayed)
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 57)

    def test_optional_key_on_other_writes(self):
        key = H.idem_key()
        ext = "idem-member-" + uuid.uuid4().hex
        first = self.a.post("/v1/members", {"external_id": ext}, idem=key)
        self.assertEqual(first.status, 201, first)
        again = self.a.post("/v1/members", {"external_id": ext}, idem=key)
        self.assertReplay(first, again, "member create")
        r = self.a.post("/v1/members", {"external_id": ext + "-2"}, idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused", "member create other body")
        self.assertEqual(len(H.list_all(self.a, "/v1/members", {"external_id": ext})), 1)
        # without a key the second create is a conflict
        self.assertProblem(self.a.post("/v1/members", {"external_id": ext}), 409,
                           "member_exists")
        key = H.idem_key()
        first = self.a.post("/v1/api-keys", {"name": "idem", "role": "readonly"}, idem=key)
        self.assertEqual(first.status, 201, first)
        again = self.a.post("/v1/api-keys", {"name": "idem", "role": "readonly"}, idem=key)
        self.assertReplay(first, again, "key create")
        self.assertEqual(len([k for k in H.list_all(self.a, "/v1/api-keys")
                              if k["id"] == first.body["id"]]), 1)

    def test_replay_survives_restart(self):
        m = self.funded(0)
        key = H.idem_key()
        first = H.earn(self.a, m["id"], 21, idem=key)
        self.assertEqual(first.status, 201, first)
        self.env.restart()
        again = H.earn(self.a, m["id"], 21, idem=key)
        self.assertReplay(first, again, "after restart")
        self.assertProblem(H.earn(self.a, m["id"], 22, idem=key), 422, "idempotency_key_reused")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 21)

    def test_replay_after_state_change_still_returns_stored(self):
        m = self.funded(0)
        key = H.idem_key()
        first = H.earn(self.a, m["id"], 30, idem=key)
        self.assertEqual(first.status, 201, first)
        H.check_ok(H.redeem(self.a, m["id"], 30), 201, "redeem")
        again = H.earn(self.a, m["id"], 30, idem=key)
        self.assertReplay(first, again, "after later redeem")
        self.assertEqual(again.body["points"]["available"], 30, "stored body, not recomputed")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 0)
        body = json.loads(again.raw)
        self.assertEqual(body["transaction"]["id"], first.body["transaction"]["id"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
