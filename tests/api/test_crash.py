"""Crash safety over HTTP (invariants I5, I8): writers send earns, redeems and
transfers with unique Idempotency-Keys while the server is killed with SIGKILL
at a random moment; after each restart every acknowledged transaction is
there, `jifen verify` is clean, and re-sending every unacknowledged request
(same key, same body) applies it exactly once.
Run: python3 tests/api/test_crash.py (SEED=... replays the schedule)."""

import os
import random
import sys
import threading
import time
import uuid
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

WRITERS = 8
MEMBERS = 12
FUND = 1000000
MAX_OPS_PER_WRITER = 3000       # per cycle
MAX_INDIVIDUAL_GETS = 2500      # per cycle; the rest is checked through the list
TIME_BUDGET_S = 50.0


class Req:
    __slots__ = ("key", "path", "body", "kind", "frm", "to", "n", "state", "txn_id",
                 "replayed", "resp", "acked_ns")

    def __init__(self, key, path, body, kind, frm, to, n):
        self.key, self.path, self.body = key, path, body
        self.kind, self.frm, self.to, self.n = kind, frm, to, n
        self.state = "sent"  # sent -> acked | unacked | refused | failed (io_error)
        self.txn_id = None
        self.replayed = False
        self.resp = None
        self.acked_ns = None  # time.monotonic_ns() when its 201 arrived

    def effects(self):
        if self.kind == "earn":
            return {self.frm: self.n}
        if self.kind == "redeem":
            return {self.frm: -self.n}
        return {self.frm: -self.n, self.to: self.n}

    def __repr__(self):
        return "<%s %s %r key=%s state=%s resp=%r>" % (self.kind, self.path, self.body, self.key,
                                                      self.state, self.resp)


class CrashTest(unittest.TestCase):
    def test_kill9_and_restart(self):
        seed = H.seed_for("test_kill9_and_restart")
        rnd = random.Random(seed)
        t_start = time.time()
        env = H.start_env(self, test_clock=False)
        admin = env.admin
        members = [H.create_member(admin)["id"] for _ in range(MEMBERS)]
        fund_txns = set()
        for mid in members:
            r = H.check_ok(H.earn(admin, mid, FUND), 201, "fund")
            fund_txns.add(r["transaction"]["id"])
        all_reqs = []
        cycles = rnd.randint(3, 5)
        H.log("crash test: seed=%d cycles=%d" % (seed, cycles))
        for cycle in range(cycles):
            if time.time() - t_start > TIME_BUDGET_S:
                H.log("time budget reached after %d cycles" % cycle)
                break
            wseeds = [rnd.randrange(2**31) for _ in range(WRITERS)]
            delay = rnd.uniform(0.3, 1.5)
            reqs = self.write_and_kill(env, members, wseeds, delay, cycle)
            all_reqs.extend(reqs)
            env.restart(kill=True)
            self.check_after_restart(env, members, fund_txns, all_reqs, reqs, rnd, cycle)
        resent = [r for r in all_reqs if r.resp == "resent"]
        H.log("crash test done in %.1fs: %d requests, %d re-sent (%d of them were committed "
              "before the kill and replayed)" % (time.time() - t_start, len(all_reqs),
                                                 len(resent), sum(r.replayed for r in resent)))

    def test_sigterm_under_load_loses_nothing(self):
        seed = H.seed_for("test_sigterm_under_load_loses_nothing")
        rnd = random.Random(seed)
        env = H.start_env(self, test_clock=False)
        members = [H.create_member(env.admin)["id"] for _ in range(MEMBERS)]
        fund_txns = set()
        for mid in members:
            fund_txns.add(H.check_ok(H.earn(env.admin, mid, FUND), 201, "fund")
                          ["transaction"]["id"])
        all_reqs = []
        for cycle in range(2):
            wseeds = [rnd.randrange(2**31) for _ in range(WRITERS)]
            reqs = self.write_and_kill(env, members, wseeds, rnd.uniform(0.3, 1.0), cycle,
                                       sigterm=True)
            all_reqs.extend(reqs)
            env.start_server()
            self.check_after_restart(env, members, fund_txns, all_reqs, reqs, rnd, cycle)
        # a graceful stop answers what it applied: nothing unanswered was committed
        lost = [r for r in all_reqs if r.resp == "resent" and r.replayed]
        self.assertEqual(lost, [], "SIGTERM committed requests without answering them")

    # ---------------------------------------------------------------- phases

    def write_and_kill(self, env, members, wseeds, delay, cycle, sigterm=False, faults=False,
                       until=None):
        """Runs the writers, then after delay kills the server with SIGKILL (or stops it
        with SIGTERM, which must exit 0).  With faults, a 500 io_error is a request the
        server says it did not write ("failed"), and the server may stop by itself (a
        failed flush stops it).  With until, the kill also waits (10 s at most) for
        until() to be true.  Returns every request sent."""
        stop = threading.Event()
        lists = [[] for _ in range(WRITERS)]
        errors = []

        def writer(w):
            wr = random.Random(wseeds[w])
            c = env.client(env.t1["api_key"], timeout=15)
            mine = lists[w]
            try:
                for i in range(MAX_OPS_PER_WRITER):
                    if stop.is_set():
                        return
                    kind = wr.choice(("earn", "earn", "redeem", "transfer"))
                    frm = wr.choice(members)
                    to = wr.choice([m for m in members if m != frm])
                    n = wr.randint(1, 20)
                    key = "crash-%d-%d-%d-%s" % (cycle, w, i, uuid.uuid4().hex[:8])
                    if kind == "earn":
                        body = {"points": n, "note": key}
                    elif kind == "redeem":
                        body = {"points": n}
                    else:
                        body = {"to_member_id": to, "points": n}
                    req = Req(key, "/v1/members/%s/%s" % (frm, kind), body, kind, frm, to, n)
                    mine.append(req)
                    try:
                        r = c.post(req.path, body, idem=key, retry_idle=False)
                    except Exception as e:  # the server died under us
                        req.state = "unacked"
                        req.resp = repr(e)
                        return
                    if r.status == 201 and isinstance(r.body, dict):
                        req.acked_ns = time.monotonic_ns()
                        req.state = "acked"
                        req.txn_id = r.body["transaction"]["id"]
                        req.replayed = r.replayed
                    elif faults and r.status == 500 and r.code == "io_error":
                        req.state = "failed"
                        req.resp = r
                    elif (sigterm and r.status == 503 and r.code == "shutting_down"
                          and r.headers.get("Retry-After") == "1"):
                        req.state = "unacked"  # refused while draining: not applied
                        req.resp = r
                        return
                    else:
                        req.state = "refused"
                        req.resp = r
                        return
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
            finally:
                c.close()

        threads = [threading.Thread(target=writer, args=(w,), daemon=True)
                   for w in range(WRITERS)]
        for t in threads:
            t.start()
        time.sleep(delay)
        # make sure something was acknowledged before the kill (bounded: 10 s more)
        deadline = time.time() + 10
        while time.time() < deadline and not any(
                r.state == "acked" for lst in lists for r in lst[:1]):
            time.sleep(0.01)
        # and for what the caller waits for (a fault reached on a loaded machine)
        while until is not None and time.time() < deadline and not until():
            time.sleep(0.01)
        if sigterm:
            rc = env.server.stop()
            stop.set()
            self.assertEqual(rc, 0, "exit code on SIGTERM under load; stderr: %s"
                             % env.server.stderr_tail())
        else:
            env.server.kill()
            stop.set()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse(any(t.is_alive() for t in threads), "writers did not stop")
        self.assertEqual(errors, [])
        reqs = [r for lst in lists for r in lst]
        refused = [r for r in reqs if r.state == "refused"]
        self.assertEqual(refused, [], "requests refused before the kill (cycle %d)" % cycle)
        acked = sum(1 for r in reqs if r.state == "acked")
        H.log("cycle %d: %s after %.2fs: %d acked, %d unacked"
              % (cycle, "SIGTERM" if sigterm else "SIGKILL", delay, acked, len(reqs) - acked))
        self.assertGreater(acked, 0, "no write was acknowledged before the kill")
        return reqs

    def check_after_restart(self, env, members, fund_txns, all_reqs, reqs, rnd, cycle):
        admin = env.admin
        # every acknowledged transaction of this cycle is there, unchanged
        acked = [r for r in reqs if r.state == "acked"]
        sample = acked if len(acked) <= MAX_INDIVIDUAL_GETS else rnd.sample(acked,
                                                                             MAX_INDIVIDUAL_GETS)
        for req in sample:
            r = admin.get("/v1/transactions/" + req.txn_id)
            self.assertEqual(r.status, 200, "acknowledged %r lost after kill -9: %r" % (req, r))
            self.assertEqual((r.body["type"], r.body["points"], r.body["member_id"]),
                             (req.kind, req.n, req.frm), "txn %s" % req.txn_id)
        rc, rep = env.verify()
        self.assertEqual(rc, 0, "verify after kill -9 (cycle %d): %r" % (cycle, rep))
        # re-send what was not acknowledged: a replay or a first application, never 2x;
        # what was answered io_error was not written, so never a replay
        for req in [r for r in reqs if r.state in ("unacked", "failed")]:
            r = admin.post(req.path, req.body, idem=req.key)
            self.assertEqual(r.status, 201, "re-sent %r -> %r" % (req, r))
            self.assertFalse(req.state == "failed" and r.replayed,
                             "%r was answered io_error but had been written" % req)
            req.state = "acked"
            req.txn_id = r.body["transaction"]["id"]
            req.replayed = r.replayed
            req.resp = "resent"
            self.assertEqual((r.body["transaction"]["type"], r.body["transaction"]["points"]),
                             (req.kind, req.n))
            again = admin.post(req.path, req.body, idem=req.key)
            self.assertEqual((again.status, again.raw), (201, r.raw), "second re-send")
            self.assertTrue(again.replayed)
        # one transaction per request, no duplicates, nothing else
        txns = H.list_all(admin, "/v1/transactions")
        ids = [t["id"] for t in txns]
        self.assertEqual(len(ids), len(set(ids)), "transaction listed twice")
        req_ids = [r.txn_id for r in all_reqs]
        self.assertEqual(len(req_ids), len(set(req_ids)),
                         "two requests answered with the same transaction")
        self.assertEqual(set(ids), set(req_ids) | fund_txns,
                         "transactions differ from the acknowledged + re-sent set "
                         "(missing %d, extra %d)"
                         % (len((set(req_ids) | fund_txns) - set(ids)),
                            len(set(ids) - set(req_ids) - fund_txns)))
        # per member: transaction count and balance implied by the requests
        want_bal = {m: FUND for m in members}
        want_cnt = Counter({m: 1 for m in members})
        for req in all_reqs:
            for m, d in req.effects().items():
                want_bal[m] += d
                want_cnt[m] += 1
        got_cnt = Counter()
        for t in txns:
            got_cnt[t["member_id"]] += 1
            if t.get("counterparty_member_id"):
                got_cnt[t["counterparty_member_id"]] += 1
        self.assertEqual(dict(got_cnt), dict(want_cnt), "transactions per member")
        for m in members:
            p = H.points_of(admin, m)
            self.assertEqual((p["balance"], p["available"]), (want_bal[m], want_bal[m]),
                             "balance of %s after cycle %d" % (m, cycle))
        rc, rep = env.verify()
        self.assertEqual(rc, 0, "verify after re-sending (cycle %d): %r" % (cycle, rep))


if __name__ == "__main__":
    unittest.main(verbosity=2)
