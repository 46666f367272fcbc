"""POST /v1/batch: many point operations in one request, each with its own
idempotency key and result.  A refused operation changes nothing for its
neighbours; a retried batch replays each operation; roles, validation and
keys in flight apply per operation.
Run: python3 tests/api/test_batch.py"""

import os
import random
import sys
import threading
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

    def test_malformed_operations_fail_alone(self):
        # Each malformed operation gets its own 400 with a stable code, changes nothing,
        # and does not stop the well-formed operations around it.
        m = H.create_member(self.a)
        good = op("earn", m["id"], {"points": 7})
        cases = [
            ("not an object", ["earn", m["id"]], "invalid_field"),
            ("unknown field", dict(op("earn", m["id"], {"points": 1}), extra=1),
             "unknown_field"),
            ("no op", {"id": m["id"], "idempotency_key": "b-no-op", "body": {"points": 1}},
             "invalid_field"),
            ("op not a string", dict(op("earn", m["id"], {"points": 1}), op=1), "invalid_field"),
            ("no id", {"op": "earn", "idempotency_key": "b-no-id", "body": {"points": 1}},
             "missing_field"),
            ("empty id", op("earn", "", {"points": 1}), "missing_field"),
            ("id too long", op("earn", "m" * 200, {"points": 1}), "missing_field"),
            ("no key", {"op": "earn", "id": m["id"], "body": {"points": 1}},
             "idempotency_key_required"),
            ("key not a string", dict(op("earn", m["id"], {"points": 1}), idempotency_key=5),
             "idempotency_key_required"),
            ("empty key", dict(op("earn", m["id"], {"points": 1}), idempotency_key=""),
             "invalid_idempotency_key"),
            ("key with a tab", op("earn", m["id"], {"points": 1}, key="a\tb"),
             "invalid_idempotency_key"),
            ("key not ASCII", op("earn", m["id"], {"points": 1}, key="积分"),
             "invalid_idempotency_key"),
            ("key too long", op("earn", m["id"], {"points": 1}, key="k" * 129),
             "invalid_idempotency_key"),
            ("body not an object", op("earn", m["id"], [1]), "invalid_field"),
        ]
        r = self.batch([good] + [c[1] for c in cases] + [op("earn", m["id"], {"points": 5})])
        self.assertEqual(r.status, 200, r)
        res = r.body["results"]
        self.assertEqual(len(res), len(cases) + 2)
        self.assertEqual((res[0]["status"], res[-1]["status"]), (201, 201))
        for (what, _, code), got in zip(cases, res[1:-1]):
            self.assertEqual((got["status"], got.get("error", {}).get("code")), (400, code),
                             (what, got))
        self.assertEqual((r.body["succeeded"], r.body["failed"]), (2, len(cases)))
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 12)
        txs = self.a.get("/v1/members/%s/transactions" % m["id"]).body["data"]
        self.assertEqual(sorted(t["points"] for t in txs), [5, 7])
        # A body without "operations", or with operations that are not an array,
        # is refused whole.
        for body in ({}, {"operations": {"0": good}}, {"operations": "x"}):
            r = self.a.post("/v1/batch", body)
            self.assertEqual((r.status, r.code), (400, "invalid_field"), body)
        self.assertEqual(H.points_of(self.a, m["id"])["available"], 12)

    def test_thousand_operations(self):
        members = [H.create_member(self.a)["id"] for _ in range(10)]
        ops = [op("earn", members[i % 10], {"points": 1}) for i in range(1000)]
        r = self.batch(ops)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["succeeded"], 1000)
        for mid in members:
            self.assertEqual(H.points_of(self.a, mid)["available"], 100)

    def expire_all(self):
        """Runs expiry until a run expires nothing (at most ten runs);
        returns the totals [expired_points, lots, members]."""
        got = [0, 0, 0]
        for _ in range(10):
            b = self.a.post("/v1/expiry/run", {}).body
            got = [g + b[k] for g, k in zip(got, ("expired_points", "lots", "members"))]
            if b["lots"] == 0:
                break
        return got

    def expires(self, mid):
        """The points of mid's expire transactions, sorted."""
        ts = H.list_all(self.a, "/v1/members/%s/transactions" % mid, {})
        return sorted(t["points"] for t in ts if t["type"] == "expire")

    def test_expiry_moves_on_past_a_lot_a_redeem_emptied(self):
        """A member's due entry (schema version 18) stays at its earliest lot that
        expires when a redeem empties that lot: on that lot's day the expiry finds
        nothing due for the member, expires nothing, and moves the entry on; the
        forecast counts only the lot left, which expires on its day, once."""
        day = 86400000
        t0 = H.clock_now(self.a)
        m = H.create_member(self.a)["id"]
        for points, d in ((10, 3), (20, 9)):
            H.check_ok(H.earn(self.a, m, points, expires_at=H.fmt_time(t0 + d * day)), 201,
                       "earn")
        H.check_ok(H.redeem(self.a, m, 10), 201, "redeem the lot of day 3")
        H.clock_set(self.a, t0 + 4 * day)
        self.expire_all()
        self.assertEqual(self.expires(m), [])
        rows = [r for r in H.list_all(self.a, "/v1/expiry/forecast",
                                      {"until": H.fmt_time(t0 + 10 * day)})
                if r["member_id"] == m]
        self.assertEqual([(r["points"], r["lots"], H.parse_time(r["earliest_expires_at"]))
                          for r in rows], [(20, 1, t0 + 9 * day)])
        H.clock_set(self.a, t0 + 10 * day)
        self.expire_all()
        self.assertEqual(self.expires(m), [20])
        self.assertEqual(H.points_of(self.a, m)["balance"], 0)

    def test_expiry_one_transaction_per_member_across_slices(self):
        """Expiry takes each member's due lots together: one `expire`
        transaction per member, even when a thousand other lots come between
        two of its lots, and a new one only past a slice's 250 lots
        (JF_EXPIRY_SLICE_LOTS); a member with more due lots than a slice has
        left waits for the next slice, and the run's "members" counts each
        member once."""
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
        got = self.expire_all()
        # x: its two lots of 2 in one transaction (its first lot comes up
        # first); big: 1,090 lots of 1, more than the 248 the first slice has
        # left after x, so none there, then 250 in each of the next four
        # slices and 90 in the sixth; mixed: 2 of its 4 lots of 5 are due.
        self.assertEqual(got, [4 + 1090 + 10, 2 + 1090 + 2, 3])
        self.assertEqual(self.expires(x), [4])
        self.assertEqual(self.expires(big), [90, 250, 250, 250, 250])
        self.assertEqual(self.expires(mixed), [10])
        self.assertEqual(H.points_of(self.a, mixed)["available"], 10)
        self.assertEqual(H.points_of(self.a, big)["balance"], 0)

    def test_expiry_of_many_members_in_short_scans(self):
        """A slice scans for due members 64 at a time
        (JF_EXPIRY_SCAN_MEMBERS) and scans again while it has budget: 300
        members with one due lot each and 20 with three (one of them not yet
        due) all expire, one transaction per member, each lot once, and the
        points expired are what they held."""
        day = 86400000
        t0 = H.clock_now(self.a)
        # "later" is years on: other tests on this server move the clock too.
        due, later = H.fmt_time(t0 + day), H.fmt_time(t0 + 3650 * day)
        singles = [H.create_member(self.a)["id"] for _ in range(300)]
        triples = [H.create_member(self.a)["id"] for _ in range(20)]
        ops = [op("earn", m, {"points": 3, "expires_at": due}) for m in singles]
        for m in triples:
            ops += [op("earn", m, {"points": p, "expires_at": e})
                    for p, e in ((5, due), (7, due), (11, later))]
        for at in range(0, len(ops), 1000):
            part = ops[at:at + 1000]
            self.assertEqual(self.batch(part).body["succeeded"], len(part))
        H.clock_set(self.a, t0 + 2 * day)
        got = self.expire_all()
        self.assertEqual(got, [300 * 3 + 20 * 12, 300 + 40, 320])
        for m in singles[:5] + singles[-5:] + triples:
            self.assertEqual(self.expires(m), [3] if m in singles else [12], m)
            pts = H.points_of(self.a, m)
            self.assertEqual(pts["balance"], 0 if m in singles else 11, m)
            lots = H.list_all(self.a, "/v1/members/%s/lots" % m, {"status": "all"})
            self.assertEqual(sorted((x["remaining"], x["status"]) for x in lots),
                             [(0, "expired")] if m in singles
                             else [(0, "expired"), (0, "expired"), (11, "available")], m)


class SliceTests(unittest.TestCase):
    """The writer applies a batch in slices of at most 250 operations
    (JF_BATCH_SLICE_OPS), each committed on its own, and single requests
    queued meanwhile go between them; a crash between slices keeps the
    earlier ones, and a retry applies the rest exactly once."""

    @classmethod
    def setUpClass(cls):
        cls.env = H.Env()
        cls.addClassCleanup(cls.env.close)
        cls.a = cls.env.admin

    def test_a_thousand_operations_commit_in_slices(self):
        m = H.create_member(self.a)["id"]
        before = H.metric(self.a, "jifen_writer_commits_total")
        r = self.a.post("/v1/batch", {"operations": [op("earn", m, {"points": 1})
                                                     for _ in range(1000)]})
        self.assertEqual(r.body["succeeded"], 1000, r)
        # Four slices; a commit held for the flush before it may take one
        # more slice (JF_HELD_SLICES_MAX), so at least two commits.
        self.assertGreaterEqual(H.metric(self.a, "jifen_writer_commits_total") - before, 2)
        self.assertEqual([x["body"]["points"]["available"] for x in r.body["results"]],
                         list(range(1, 1001)))

    def test_single_earns_go_between_slices(self):
        """Batches of 1,000 earns of 1 point and single earns of 100,000
        points on one member: a single earn applied between two of a batch's
        operations shows as a jump in the balances the batch reports."""
        m = H.create_member(self.a)["id"]
        bulk = self.a.with_key(self.a.key)
        self.addCleanup(bulk.close)
        replies = []

        def send_batches():
            for _ in range(3):
                ops = [op("earn", m, {"points": 1}) for _ in range(1000)]
                replies.append(bulk.post("/v1/batch", {"operations": ops}))

        t = threading.Thread(target=send_batches)
        t.start()
        singles = 0
        while t.is_alive():
            H.check_ok(H.earn(self.a, m, 100000), 201)
            singles += 1
        t.join()
        jumps = 0
        for r in replies:
            self.assertEqual(r.body["succeeded"], 1000, r)
            bal = [x["body"]["points"]["available"] for x in r.body["results"]]
            steps = [b - a for a, b in zip(bal, bal[1:])]
            self.assertTrue(all(d == 1 or d % 100000 == 1 for d in steps), steps)
            jumps += sum(1 for d in steps if d != 1)
        self.assertGreater(jumps, 0, "no single earn between slices (%d sent)" % singles)
        self.assertEqual(H.points_of(self.a, m)["available"], 3000 + 100000 * singles)

    def test_kill_between_slices_then_retry(self):
        seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
        print("test_kill_between_slices_then_retry: SEED=%d" % seed, file=sys.stderr)
        rnd = random.Random(seed)
        members = [H.create_member(self.a)["id"] for _ in range(5)]
        ops = [op("earn", members[i % 5], {"points": 1 + i % 3}) for i in range(1000)]
        bulk = self.a.with_key(self.a.key)

        def send():
            try:
                bulk.post("/v1/batch", {"operations": ops})
            except Exception:  # the server was killed under it
                pass

        t = threading.Thread(target=send)
        t.start()
        # Kill once the first slice is readable (or after a random moment).
        deadline = time.monotonic() + rnd.uniform(0.0, 2.0)
        while time.monotonic() < deadline and H.points_of(self.a, members[0])["available"] == 0:
            pass
        self.env.restart(kill=True)
        t.join()
        bulk.close()
        r = self.a.post("/v1/batch", {"operations": ops})
        self.assertEqual(r.body["succeeded"], 1000, r)
        replayed = sum(1 for x in r.body["results"] if x.get("replayed"))
        print("  killed after %d of 1000 operations were written" % replayed, file=sys.stderr)
        # Written slices replay, the rest is applied now, in order: the
        # replayed operations are a prefix.
        self.assertEqual([x.get("replayed") for x in r.body["results"]],
                         [True] * replayed + [False] * (1000 - replayed))
        want = [sum(1 + i % 3 for i in range(k, 1000, 5)) for k in range(5)]
        self.assertEqual([H.points_of(self.a, mid)["available"] for mid in members], want)
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)


class MemoryTrimTests(unittest.TestCase):
    """After a burst of batches the heap keeps what their requests freed;
    once the writer has been idle for a second (JF_MEMORY_TRIM_IDLE_MS) the
    checkpointer hands it back to the system (malloc_trim), once."""

    @classmethod
    def setUpClass(cls):
        cls.env = H.Env()
        cls.addClassCleanup(cls.env.close)
        cls.a = cls.env.admin

    def test_idle_trim_returns_the_burst(self):
        members = [H.create_member(self.a)["id"] for _ in range(20)]
        time.sleep(1.5)  # the trim after the members' creation, if any, comes first
        deadline = time.monotonic() + 20
        trims = H.metric(self.a, "jifen_memory_trims_total")
        clients = [self.a.with_key(self.a.key) for _ in range(8)]
        for c in clients:
            self.addCleanup(c.close)

        def send(c):
            for _ in range(2):
                ops = [op("earn", members[i % 20], {"points": 1, "metadata": {"n": "x" * 200}})
                       for i in range(1000)]
                self.assertEqual(c.post("/v1/batch", {"operations": ops}).body["succeeded"],
                                 1000)

        threads = [threading.Thread(target=send, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst = H.metric(self.a, "jifen_process_resident_anonymous_bytes")
        while (H.metric(self.a, "jifen_memory_trims_total") == trims
               and time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertEqual(H.metric(self.a, "jifen_memory_trims_total"), trims + 1)
        self.assertEqual(H.metric(self.a, "jifen_memory_trim_seconds_count"), trims + 1)
        after = H.metric(self.a, "jifen_process_resident_anonymous_bytes")
        print("  anonymous memory after the burst %.1f MB, after the trim %.1f MB"
              % (burst / 1e6, after / 1e6), file=sys.stderr)
        # Under `make asan` and `make tsan` the heap is the sanitizer's, which
        # malloc_trim does not touch; the trim's schedule is checked all the same.
        # The burst's size depends on how many batches the writer held at
        # once (23-39 MB here); a fixed drop of 8 MB failed a run whose burst
        # was 23 MB and whose trim returned 30% of it.  Freed memory the
        # allocator keeps (no trim) stays near the burst.
        if not H.sanitizer_heap(H.jifen_bin()):
            self.assertLess(after, burst * 3 // 4)
        time.sleep(1.5)  # idle, nothing new: no second trim
        self.assertEqual(H.metric(self.a, "jifen_memory_trims_total"), trims + 1)


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
        return H.metric(self.a, "jifen_writer_batches_redone_total")

    def forgets(self):
        return H.metric(self.a, "jifen_writer_cache_forgets_total")

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
        before, forgot = self.redone(), self.forgets()
        ops = [op("earn", n, {"points": 10}), op("redeem", m, {"points": 500}),
               op("earn", p, {"points": 7})]
        r = self.batch_of(ops)
        self.assertEqual([x["status"] for x in r.body["results"]], [201, 422, 201], r)
        self.assertEqual(r.body["results"][1]["error"]["code"], "insufficient_points")
        self.assertEqual(r.body["results"][2]["body"]["points"]["available"], 7)
        self.assertEqual(self.redone(), before + 1)
        # Undone writes (the hold's void) make the writer's cache forget
        # what it read; a refusal before any write (n has 10 points) does not.
        forgot_after = self.forgets()
        self.assertGreater(forgot_after, forgot)
        self.assertEqual(H.redeem(self.a, n, 11).code, "insufficient_points")
        self.assertEqual(self.forgets(), forgot_after)
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

    def test_refusal_in_a_later_slice(self):
        """The refused redeem comes after 300 earns, so past the batch's first
        slice (at most 250 operations): only its own slice runs again, and the
        results of the slices already committed stay."""
        m, n = (H.create_member(self.a)["id"] for _ in range(2))
        H.check_ok(H.earn(self.a, m, 100), 201)
        hold = self.overdue_hold(m, 60)
        before = self.redone()
        ops = [op("earn", n, {"points": 1}) for _ in range(300)]
        ops += [op("redeem", m, {"points": 500}), op("earn", n, {"points": 1})]
        r = self.batch_of(ops)
        res = r.body["results"]
        self.assertEqual([x["status"] for x in res], [201] * 300 + [422, 201], r)
        self.assertEqual([x["body"]["points"]["available"] for i, x in enumerate(res) if i != 300],
                         list(range(1, 302)))
        # At least once.  How often depends on the machine's speed, not only
        # on the code: a slice run again with savepoints may end on time
        # before the redeem, which then poisons the next slice too, and under
        # a sanitizer on a loaded machine that happened twice in one run.
        # The results above show what must hold whatever the count: every
        # earn applied once and in order (1 to 301), the refusal alone.
        self.assertGreaterEqual(self.redone() - before, 1)
        self.assert_held(m, 40, 60, hold)
        self.assertEqual(H.points_of(self.a, n)["available"], 301)

    def batch_of(self, ops):
        return self.a.post("/v1/batch", {"operations": ops})


if __name__ == "__main__":
    unittest.main()
