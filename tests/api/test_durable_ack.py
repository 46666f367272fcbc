"""Durable acknowledgement over HTTP (invariant I8, src/core/syncer.c).

The server runs with tests/api/fsync_gate.c preloaded, which holds every
flush of the database's "-wal" file while a gate file exists.  With the gate
closed a write must not be answered, and a read that may see it must not
answer either; once the gate opens both answer, the write replays under its
Idempotency-Key, and a SIGTERM during a held flush loses no answered write.
While the gate is closed a correct server cannot answer however long we wait,
so no timing makes these tests pass; the waits only give a wrong server the
time to show itself.  Setup happens with the gate open (creating a member is
a write too).  The tests are skipped when $JIFEN_FSYNC_GATE_LIB (set by ctest)
does not name the built library.
Run: JIFEN_FSYNC_GATE_LIB=build/tests/api/libfsync_gate.so \\
     python3 tests/api/test_durable_ack.py"""

import http.client
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

HELD_S = 0.5          # how long a held write is watched for a wrong answer
HELD_READ_S = 0.3     # the same for a read
ANSWER_TIMEOUT_S = 10.0


class Gate:
    """The gate file of one test and the server environment that obeys it."""

    def __init__(self, testcase):
        lib = os.environ.get("JIFEN_FSYNC_GATE_LIB")
        if not lib or not os.path.isfile(lib):
            raise unittest.SkipTest("JIFEN_FSYNC_GATE_LIB does not name the fsync_gate library "
                                    "(%r); build it and run through ctest" % lib)
        self.dir = tempfile.mkdtemp(prefix="jifen-gate-")
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "gate")
        self.hit = self.path + ".hit"
        preload = os.path.abspath(lib)
        if os.environ.get("LD_PRELOAD"):
            preload += ":" + os.environ["LD_PRELOAD"]
        self.env = {"LD_PRELOAD": preload, "JIFEN_FSYNC_GATE": self.path}
        if H.is_asan_build(H.jifen_bin()):
            # The preloaded library comes before the ASan runtime in the link order.
            opts = os.environ.get("ASAN_OPTIONS")
            self.env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "verify_asan_link_order=0"

    def close(self):
        if os.path.exists(self.hit):
            os.remove(self.hit)
        open(self.path, "w").close()

    def open(self):
        if os.path.exists(self.path):
            os.remove(self.path)

    def wait_hit(self):
        """Waits until the library holds a WAL flush (it creates <gate>.hit)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while not os.path.exists(self.hit):
            if time.monotonic() > deadline:
                raise AssertionError("no WAL flush reached the closed gate within %.0fs"
                                     % ANSWER_TIMEOUT_S)
            time.sleep(0.002)


class Pending:
    """One request sent from a thread of its own, on a connection of its own."""

    def __init__(self, client, method, path, body=None, idem=None):
        self.what = "%s %s" % (method, path)
        self.resp = self.error = None
        self.done = threading.Event()

        def run():
            try:
                self.resp = client.request(method, path, body, idem=idem, retry_idle=False)
            except BaseException as e:  # noqa: B902 - reported by result()
                self.error = e
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def result(self):
        if not self.done.wait(ANSWER_TIMEOUT_S):
            raise AssertionError("%s: no answer within %.0fs of the gate opening"
                                 % (self.what, ANSWER_TIMEOUT_S))
        if self.error is not None:
            raise AssertionError("%s failed: %r" % (self.what, self.error))
        return self.resp


class DurableAckTests(unittest.TestCase):
    def setUp(self):
        self.gate = Gate(self)
        self.env = H.start_env(self, env=self.gate.env)
        self.addCleanup(self.gate.open)  # runs before the env's cleanup
        self.key = self.env.t1["api_key"]

    def hold_earn(self, mid, points, key):
        """Closes the gate, sends an earn, checks that it is held; returns it."""
        self.gate.close()
        w = Pending(self.env.client(self.key), "POST", "/v1/members/%s/earn" % mid,
                    {"points": points}, key)
        self.assertFalse(w.done.wait(HELD_S),
                         "earn answered while its WAL flush was held: %r %r" % (w.resp, w.error))
        self.gate.wait_hit()
        return w

    def test_held_flush_holds_write_and_read(self):
        admin = self.env.admin
        mid = H.create_member(admin)["id"]
        self.assertFalse(os.path.exists(self.gate.hit), "a flush was held with the gate open")
        key = H.idem_key("durable")
        w = self.hold_earn(mid, 5, key)
        r = Pending(self.env.client(self.key), "GET", "/v1/members/%s" % mid)
        self.assertFalse(r.done.wait(HELD_READ_S),
                         "GET answered before a commit it may see was flushed: %r %r"
                         % (r.resp, r.error))
        self.assertFalse(w.done.is_set() or r.done.is_set(), "answered while the gate was closed")
        self.gate.open()
        earned = H.check_ok(w.result(), 201, "held earn")
        self.assertEqual(earned["transaction"]["points"], 5)
        seen = H.check_ok(r.result(), 200, "held GET")
        self.assertIn(seen["points"]["available"], (0, 5), "GET during the held flush")
        self.assertEqual(H.member_of(admin, mid)["points"]["available"], 5)
        rep = admin.post("/v1/members/%s/earn" % mid, {"points": 5}, idem=key)
        self.assertEqual(rep.status, 201, "replay: %r" % rep)
        self.assertTrue(rep.replayed, "replay without Idempotent-Replayed: true: %r" % rep)
        self.assertEqual(rep.body, earned, "replay body differs")
        self.assertEqual(H.member_of(admin, mid)["points"]["available"], 5)

    def hold_write(self, path, body, key):
        """Closes the gate, sends a write, checks that it is held; returns it."""
        self.gate.close()
        w = Pending(self.env.client(self.key), "POST", path, body, key)
        self.assertFalse(w.done.wait(HELD_S),
                         "%s answered while its WAL flush was held" % path)
        self.gate.wait_hit()
        return w

    def member_reads(self, mid):
        return [Pending(self.env.client(self.key), "GET", "/v1/members/%s/%s" % (mid, what))
                for what in ("points", "transactions", "lots")]

    def test_member_reads_wait_only_for_their_member(self):
        """A read of one member's points, transactions or lots waits for the
        flush of the last commit that changed that member (syncer.c), not for
        every commit: while an earn of A is held, B's reads are answered and
        A's are not; while a transfer from B to C is held, C's are held too,
        and A's (flushed by then) are answered.  Reads of anything else still
        wait for every commit (a member's GET, here)."""
        admin = self.env.admin
        a, b, c = (H.create_member(admin)["id"] for _ in range(3))
        H.check_ok(admin.post("/v1/members/%s/earn" % b, {"points": 7},
                              idem=H.idem_key("b-first")), 201, "earn of b")
        w = self.hold_write("/v1/members/%s/earn" % a, {"points": 5}, H.idem_key("held-a"))
        held_before = H.metric(admin, "jifen_reads_held_total")
        other = self.member_reads(b)
        for r in other:
            self.assertTrue(r.done.wait(ANSWER_TIMEOUT_S),
                            "%s waited for the flush of another member's earn" % r.what)
        self.assertEqual(H.metric(admin, "jifen_reads_held_total"), held_before,
                         "a read of another member counted as held")
        self.assertEqual(H.check_ok(other[0].result(), 200, "b's points")["available"], 7)
        self.assertEqual(len(H.check_ok(other[1].result(), 200, "b's history")["data"]), 1)
        held = self.member_reads(a) + [Pending(self.env.client(self.key), "GET",
                                               "/v1/members/%s" % b)]
        self.assertFalse(any(r.done.wait(HELD_READ_S) for r in held),
                         "a read answered before a commit it may show was flushed")
        self.assertEqual(H.metric(admin, "jifen_reads_held_total"), held_before + len(held))
        self.gate.open()
        H.check_ok(w.result(), 201, "held earn")
        self.assertEqual(H.check_ok(held[0].result(), 200, "a's points")["available"], 5)
        for r in held[1:]:
            H.check_ok(r.result(), 200, r.what)
        t = self.hold_write("/v1/members/%s/transfer" % b, {"to_member_id": c, "points": 2},
                            H.idem_key("held-transfer"))
        receiver = self.member_reads(c)
        self.assertFalse(any(r.done.wait(HELD_READ_S) for r in receiver),
                         "the receiver's read answered before the transfer was flushed")
        flushed = self.member_reads(a)
        for r in flushed:
            self.assertTrue(r.done.wait(ANSWER_TIMEOUT_S),
                            "%s waited though its member's last commit was flushed" % r.what)
        self.gate.open()
        H.check_ok(t.result(), 201, "held transfer")
        self.assertEqual(H.check_ok(receiver[0].result(), 200, "c's points")["available"], 2)

    def test_held_reads_leave_http_threads_free(self):
        """Reads waiting for a flush wait off the HTTP threads: with more reads
        held than the server has HTTP threads (2), a request that needs no
        flush is still answered while the gate stays closed."""
        mid = H.create_member(self.env.admin)["id"]
        w = self.hold_earn(mid, 3, H.idem_key("durable-free"))
        reads = [Pending(self.env.client(self.key), "GET", "/v1/members/%s" % mid)
                 for _ in range(4)]
        self.assertFalse(any(r.done.wait(HELD_READ_S) for r in reads),
                         "a GET answered before a commit it may see was flushed")
        health = Pending(self.env.client(None), "GET", "/healthz")
        self.assertTrue(health.done.wait(ANSWER_TIMEOUT_S),
                        "/healthz not answered while reads waited for a held flush")
        self.assertEqual(health.result().status, 200)
        self.assertFalse(w.done.is_set() or any(r.done.is_set() for r in reads),
                         "answered while the gate was closed")
        self.gate.open()
        H.check_ok(w.result(), 201, "held earn")
        for r in reads:
            self.assertEqual(H.check_ok(r.result(), 200, "held GET")["points"]["available"], 3)

    def test_writes_during_a_flush_share_the_next_commit(self):
        """Writes that arrive while a flush runs wait in one open transaction
        and commit together once it is over (engine.c, writer_take_held):
        committing earlier could not answer them sooner.  Once the writer has
        taken a write during the held flush it holds until the gate opens, so
        every later write must join it; writes are sent one at a time until
        one has, and nothing may commit meanwhile."""
        admin = self.env.admin
        most = 20
        mids = [H.create_member(admin)["id"] for _ in range(most + 1)]
        held_before = H.metric(admin, "jifen_writer_commands_held_total")
        first = self.hold_earn(mids[0], 1, H.idem_key("held-first"))
        commits_held = H.metric(admin, "jifen_writer_commits_total")
        writes = []
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while H.metric(admin, "jifen_writer_commands_held_total") == held_before:
            self.assertTrue(len(writes) < most and time.monotonic() < deadline,
                            "%d writes sent during a held flush and none joined a held commit"
                            % len(writes))
            m = mids[1 + len(writes)]
            writes.append(Pending(self.env.client(self.key), "POST", "/v1/members/%s/earn" % m,
                                  {"points": 10 + len(writes)},
                                  H.idem_key("held-%d" % len(writes))))
            while H.metric(admin, "jifen_writer_queue_depth") != 0:
                self.assertLess(time.monotonic(), deadline, "the writer left writes queued")
                time.sleep(0.002)
        self.assertEqual(H.metric(admin, "jifen_writer_commits_total"), commits_held,
                         "the writer committed while the flush before was held")
        self.assertFalse(first.done.is_set() or any(w.done.is_set() for w in writes),
                         "answered while the gate was closed")
        self.gate.open()
        H.check_ok(first.result(), 201, "held earn")
        for i, w in enumerate(writes):
            self.assertEqual(H.check_ok(w.result(), 201, "held earn")["points"]["available"],
                             10 + i)
        # The writes went out in one commit (a scheduled job may add another).
        self.assertLessEqual(H.metric(admin, "jifen_writer_commits_total") - commits_held, 2)
        for i in range(len(writes)):
            self.assertEqual(H.member_of(admin, mids[1 + i])["points"]["available"], 10 + i)

    def test_job_slice_joins_a_held_commit(self):
        """While a flush is held and nothing else is queued, the writer runs a
        sliced job's next slice in its open transaction instead of waiting
        (engine.c, writer_take_held): an expiry of 600 lots (slices of 250)
        sent while an earn's flush is held commits nothing, and one of its
        slices runs in the held commit, one only (JF_HELD_SLICES_MAX).  Once
        the gate opens the expiry answers for every lot."""
        admin = self.env.admin
        mids = [H.create_member(admin)["id"] for _ in range(3)]
        now = H.clock_now(admin)
        ops = [{"op": "earn", "id": mids[i % 3], "idempotency_key": H.idem_key("lot"),
                "body": {"points": 1, "expires_at": H.fmt_time(now + 3600 * 1000)}}
               for i in range(600)]
        r = admin.post("/v1/batch", {"operations": ops})
        self.assertEqual(H.check_ok(r, 200, "batch")["succeeded"], 600)
        H.clock_set(admin, now + 2 * 3600 * 1000)
        first = self.hold_earn(H.create_member(admin)["id"], 1, H.idem_key("held-first"))
        commits = H.metric(admin, "jifen_writer_commits_total")
        slices = H.metric(admin, "jifen_writer_job_slices_held_total")
        run = Pending(self.env.client(self.key), "POST", "/v1/expiry/run", {})
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while H.metric(admin, "jifen_writer_job_slices_held_total") == slices:
            self.assertLess(time.monotonic(), deadline, "no job slice joined the held commit")
            time.sleep(0.002)
        self.assertFalse(run.done.wait(HELD_S), "expiry answered while the gate was closed")
        self.assertEqual(H.metric(admin, "jifen_writer_job_slices_held_total"), slices + 1)
        self.assertEqual(H.metric(admin, "jifen_writer_commits_total"), commits,
                         "the writer committed while the flush before was held")
        self.gate.open()
        H.check_ok(first.result(), 201, "held earn")
        got = H.check_ok(run.result(), 200, "expiry")
        self.assertEqual((got["lots"], got["expired_points"], got["members"]), (600, 600, 3))
        for m in mids:
            self.assertEqual(H.points_of(admin, m)["balance"], 0)

    def test_sigterm_while_flush_held(self):
        env = self.env
        mid = H.create_member(env.admin)["id"]
        spare = env.client(self.key)  # a keep-alive connection open before the SIGTERM
        H.check_ok(spare.get("/healthz"), 200, "spare connection")
        w = self.hold_earn(mid, 7, H.idem_key("durable-term"))
        proc = env.server.proc
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while "shutting down" not in env.server.stderr_tail():
            self.assertLess(time.monotonic(), deadline, "server never said it was shutting down")
            time.sleep(0.01)
        # Draining: a write on a connection already open is refused, with when
        # to try again, and changes nothing (the points after restart below).
        r = spare.post("/v1/members/%s/earn" % mid, {"points": 1}, idem=True, retry_idle=False)
        self.assertEqual((r.status, r.code, r.headers.get("Retry-After")),
                         (503, "shutting_down", "1"), "a write while draining")
        self.assertFalse(w.done.is_set(), "earn answered while its flush was held: %r" % w.resp)
        # Quiesced: a new connection is closed unanswered (server.c, accept_policy).
        try:
            late = self.env.client(None).request("GET", "/healthz", retry_idle=False)
        except (OSError, http.client.HTTPException) as e:
            late = e
        self.assertNotIsInstance(late, H.Resp, "a new connection was served after SIGTERM")
        self.gate.open()
        rc = proc.wait(timeout=H.STOP_TIMEOUT_S)
        env.server.proc = None
        self.assertEqual(rc, 0, "exit code on SIGTERM; stderr: %s" % env.server.stderr_tail())
        resp = w.result()
        H.log("earn held over SIGTERM answered %d" % resp.status)
        if resp.status == 201:
            acked = 7
        else:
            self.assertEqual((resp.status, resp.code, resp.headers.get("Retry-After")),
                             (503, "shutting_down", "1"), "held earn")
            acked = 0
        env.start_server()
        self.assertEqual(H.member_of(env.admin, mid)["points"]["available"], acked,
                         "points after restart vs answered earns (earn answered %d)" % resp.status)


if __name__ == "__main__":
    unittest.main()
