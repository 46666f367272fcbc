"""POST /v1/batch: many point operations in one request, each with its own
idempotency key and result.  A refused operation changes nothing for its
neighbours; a retried batch replays each operation; roles, validation and
keys in flight apply per operation.
Run: python3 tests/api/test_batch.py"""

import os
import sys
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
        two of its lots, and a new one only past a slice's 1,000 lots."""
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
        # first); big: 1,090 lots of 1, 998 in the first slice (x took 2 of
        # its 1,000) and 92 in the next; mixed: 2 of its 4 lots of 5 are due.
        self.assertEqual(got, [4 + 1090 + 10, 2 + 1090 + 2, 1 + 2 + 1])

        def expires(mid):
            ts = H.list_all(self.a, "/v1/members/%s/transactions" % mid, {})
            return sorted(t["points"] for t in ts if t["type"] == "expire")

        self.assertEqual(expires(x), [4])
        self.assertEqual(expires(big), [92, 998])
        self.assertEqual(expires(mixed), [10])
        self.assertEqual(H.points_of(self.a, mixed)["available"], 10)
        self.assertEqual(H.points_of(self.a, big)["balance"], 0)

if __name__ == "__main__":
    unittest.main()
