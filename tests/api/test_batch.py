"""POST /v1/batch: many point operations in one request, each with its own
idempotency key and result.  A refused operation changes nothing for its
neighbours; a retried batch replays each operation; roles, validation and
keys in flight apply per operation.
Run: python3 tests/api/test_batch.py"""

import os
import re
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402


def op(kind, oid, body, key=None):
    return {"op": kind, "id": oid, "idempotency_key": key or "b-" + uuid.uuid4().hex,
            "body": body}


class BatchTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = H.Env()
        cls.addClassCleanup(cls.env.close)
        cls.a = cls.env.admin

    def batch(self, ops, client=None, **headers):
        return (client or self.a).post("/v1/batch", {"operations": ops}, **headers)

    def test_mixed_results_and_isolation(self):
        m = H.create_member(self.a)
        n = H.create_member(self.a)
        ops = [op("earn", m["id"], {"points": 100}),
               op("redeem", m["id"], {"points": 1000}),      # refused: 422
               op("redeem", m["id"], {"points": 30}),
               op("transfer", m["id"], {"to_member_id": n["id"], "points": 20}),
               op("earn", "mem_nope", {"points": 1}),         # 404
               op("earn", m["id"], {"points": 0}),            # 400
               {"op": "bogus", "id": m["id"], "idempotency_key": "x"}]
        r = self.batch(ops)
        self.assertEqual(r.status, 200, r)
        res = r.body["results"]
        self.assertEqual([x["status"] for x in res], [201, 422, 201, 201, 404, 400, 400])
        self.assertEqual(res[1]["error"]["code"], "insufficient_points")
        self.assertEqual(res[4]["error"]["code"], "not_found")
        self.assertEqual(res[5]["error"]["code"], "invalid_field")
        self.assertEqual(r.body["succeeded"], 3)
        self.assertEqual(r.body["failed"], 4)
        self.assertEqual(res[2]["body"]["points"]["available"], 70)
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 50)
        self.assertEqual(H.points_of(self.a, n["id"])["available"], 20)

    def test_retry_replays_each_operation(self):
        m = H.create_member(self.a)
        ops = [op("earn", m["id"], {"points": 5}) for _ in range(10)]
        first = self.batch(ops)
        again = self.batch(ops)
        self.assertEqual(first.status, 200, first)
        self.assertTrue(all(not x["replayed"] for x in first.body["results"]))
        self.assertTrue(all(x["replayed"] for x in again.body["results"]))
        self.assertEqual([x["body"] for x in first.body["results"]],
                         [x["body"] for x in again.body["results"]])
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 50)
        # A single request with one of the keys replays the same stored response.
        single = self.a.post("/v1/members/%s/earn" % m["id"], {"points": 5},
                             headers={"Idempotency-Key": ops[3]["idempotency_key"]})
        self.assertEqual(single.status, 201, single)
        self.assertTrue(single.replayed)
        self.assertEqual(single.body, first.body["results"][3]["body"])

    def test_same_key_twice_in_one_batch(self):
        m = H.create_member(self.a)
        o = op("earn", m["id"], {"points": 5})
        r = self.batch([o, dict(o)])
        self.assertEqual([x["status"] for x in r.body["results"]], [201, 409])
        self.assertEqual(r.body["results"][1]["error"]["code"], "idempotency_key_in_flight")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 5)

    def test_roles_apply_per_operation(self):
        _, pos = self.env.key("pos")
        _, ro = self.env.key("readonly")
        m = H.create_member(self.a)
        r = self.batch([op("earn", m["id"], {"points": 9}),
                        op("adjust", m["id"], {"points": 5, "reason": "r"})], client=pos)
        self.assertEqual([x["status"] for x in r.body["results"]], [201, 403])
        r = self.batch([op("earn", m["id"], {"points": 9})], client=ro)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 9)

    def test_bad_batches(self):
        m = H.create_member(self.a)
        self.assertEqual(self.batch([]).code, "invalid_field")
        too_many = [op("earn", m["id"], {"points": 1}) for _ in range(1001)]
        self.assertEqual(self.batch(too_many).status, 400)
        r = self.a.post("/v1/batch", {"operations": [], "x": 1})
        self.assertEqual(r.code, "unknown_field")
        r = self.a.post("/v1/batch", {"operations": [op("earn", m["id"], {"points": 1})]},
                        headers={"Idempotency-Key": "whole"})
        self.assertEqual(r.code, "invalid_request")
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 0)

    def test_thousand_operations(self):
        members = [H.create_member(self.a)["id"] for _ in range(10)]
        ops = [op("earn", members[i % 10], {"points": 1}) for i in range(1000)]
        r = self.batch(ops)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["succeeded"], 1000)
        for mid in members:
            self.assertEqual(H.points_of(self.a, mid)["available"], 100)

    def test_expiry_one_transaction_per_member_across_slices(self):
        """Expiry takes each member's due lots together: one `expire`
        transaction per member, even when a thousand other lots come between
        two of its lots, and a new one only past a slice's 250 lots
        (JF_EXPIRY_SLICE_LOTS)."""
        day = 86400000
        t0 = H.clock_now(self.a)
        due, later = H.fmt_time(t0 + day), H.fmt_time(t0 + 3 * day)
        big, x, mixed = (H.create_member(self.a)["id"] for _ in range(3))

        def earn(mid, points, expires_at=due):
            return op("earn", mid, {"points": points, "expires_at": expires_at})

        ops = [earn(x, 2)] + [earn(big, 1) for _ in range(999)]
        self.assertEqual(self.batch(ops).body["succeeded"], 1000)
        ops = [earn(big, 1) for _ in range(91)] + [earn(x, 2)]
        ops += [earn(mixed, 5, due if i % 2 else later) for i in range(4)]
        self.assertEqual(self.batch(ops).body["succeeded"], 96)
        H.clock_set(self.a, t0 + 2 * day)
        got = [0, 0, 0]
        for _ in range(10):
            b = self.a.post("/v1/expiry/run", {}).body
            got = [g + b[k] for g, k in zip(got, ("expired_points", "lots", "members"))]
            if b["lots"] == 0:
                break
        # x: its two lots of 2 in one transaction (its first lot comes up
        # first); big: 1,090 lots of 1, 248 in the first slice (x took 2 of
        # its 250), 250 in each of the next three and 92 in the fifth; mixed:
        # 2 of its 4 lots of 5 are due.
        self.assertEqual(got, [4 + 1090 + 10, 2 + 1090 + 2, 1 + 5 + 1])

        def expires(mid):
            ts = H.list_all(self.a, "/v1/members/%s/transactions" % mid, {})
            return sorted(t["points"] for t in ts if t["type"] == "expire")

        self.assertEqual(expires(x), [4])
        self.assertEqual(expires(big), [92, 248, 250, 250, 250])
        self.assertEqual(expires(mixed), [10])
        self.assertEqual(H.points_of(self.a, mixed)["available"], 10)
        self.assertEqual(H.points_of(self.a, big)["balance"], 0)

class RefusalAfterWriteTests(unittest.TestCase):
    """The writer runs commands without a savepoint each, since they check
    what can refuse them before their first write.  A redeem on a member with
    an overdue hold voids the hold first (a write) and can still be refused:
    then the batch is rolled back and run again with a savepoint per command.
    Real clock and no scheduler, so the hold is overdue and still open when
    the redeem comes (a test clock's move would void it at once)."""

    @classmethod
    def setUpClass(cls):
        cls.env = H.Env(test_clock=False, extra_args=("--expiry-interval", "0"))
        cls.addClassCleanup(cls.env.close)
        cls.a = cls.env.admin

    def redone(self):
        body = self.a.get("/metrics").body
        return int(re.search(r"(?m)^jifen_writer_batches_redone_total (\d+)$", body).group(1))

    def overdue_hold(self, mid, points):
        r = self.a.post("/v1/members/%s/holds" % mid, {"points": points, "ttl_seconds": 1},
                        idem=True)
        hold = H.check_ok(r, 201, "hold")["hold"]
        deadline = H.parse_time(hold["expires_at"]) / 1000.0
        time.sleep(max(0.0, deadline - time.time()) + 0.2)
        return hold["id"]

    def assert_held(self, mid, available, held, hold_id):
        p = H.points_of(self.a, mid)
        self.assertEqual((p["available"], p["held"]), (available, held))
        self.assertEqual(H.check_ok(self.a.get("/v1/holds/" + hold_id), 200)["status"], "open")

    def test_neighbours_succeed_and_the_refusal_changes_nothing(self):
        m, n, p = (H.create_member(self.a)["id"] for _ in range(3))
        H.check_ok(H.earn(self.a, m, 100), 201)
        hold = self.overdue_hold(m, 60)
        before = self.redone()
        ops = [op("earn", n, {"points": 10}), op("redeem", m, {"points": 500}),
               op("earn", p, {"points": 7})]
        r = self.batch_of(ops)
        self.assertEqual([x["status"] for x in r.body["results"]], [201, 422, 201], r)
        self.assertEqual(r.body["results"][1]["error"]["code"], "insufficient_points")
        self.assertEqual(r.body["results"][2]["body"]["points"]["available"], 7)
        self.assertEqual(self.redone(), before + 1)
        self.assert_held(m, 40, 60, hold)
        self.assertEqual(H.points_of(self.a, n)["available"], 10)
        self.assertEqual(H.points_of(self.a, p)["available"], 7)
        # A retry replays the two stored earns and refuses the redeem again.
        again = self.batch_of(ops)
        self.assertEqual([x["status"] for x in again.body["results"]], [201, 422, 201])
        self.assertEqual([x.get("replayed") for x in again.body["results"]],
                         [True, None, True])
        self.assertEqual(again.body["results"][0]["body"], r.body["results"][0]["body"])
        self.assertEqual(self.redone(), before + 2)
        # The same refusal on its own, then writes that need no second run.
        self.assertEqual(H.redeem(self.a, m, 500).code, "insufficient_points")
        self.assertEqual(self.redone(), before + 3)
        self.assert_held(m, 40, 60, hold)
        H.check_ok(H.earn(self.a, n, 1), 201)
        self.assertEqual(self.redone(), before + 3)
        # The member's next write that succeeds voids the overdue hold.
        H.check_ok(H.earn(self.a, m, 1), 201)
        p_m = H.points_of(self.a, m)
        self.assertEqual((p_m["available"], p_m["held"]), (101, 0))
        self.assertEqual(self.redone(), before + 3)

    def batch_of(self, ops):
        return self.a.post("/v1/batch", {"operations": ops})


if __name__ == "__main__":
    unittest.main()
