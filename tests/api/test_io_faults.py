"""I/O errors (test plan T3, the I/O half): the server runs with
tests/api/powercut.c preloaded and $JIFEN_FAULT set, so that one call of the
writes or syncs of its WAL or database fails with EIO, at a call number the
seed picks, while 8 writers send earns, redeems and transfers.  A failed WAL
write fails its commit: the batch's requests are answered 500 io_error and
nothing of them is written.  A failed WAL flush stops the server (as
PostgreSQL does: Linux may have dropped the pages).  A failed checkpoint
write or sync is tried again by a later pass.  Whatever happened, after a
kill -9 and a restart without faults every acknowledged write is there,
`jifen verify` is clean, a request answered io_error is applied when re-sent
(never replayed: it was not written), and balances add up.

Run: JIFEN_POWERCUT_LIB=build/tests/api/libpowercut.so python3
tests/api/test_io_faults.py (SEED=... replays the fault points)."""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402
import test_crash as C  # noqa: E402
import test_power_loss as P  # noqa: E402

# Which call fails, per kind: the range of call numbers reached within the
# first second of writes on an idle machine (the writers run 1 to 1.5 s, and
# longer until the fault is reached) (a commit is one WAL write and one
# flush; a checkpoint pass, every 100 ms, many database writes and one sync).
FAULTS = {"wal-write": (20, 200), "wal-sync": (20, 200), "db-write": (20, 1000),
          "db-sync": (1, 4)}


class IoFaultTest(unittest.TestCase):
    setUp = P.PowerLossTest.setUp
    start_logged = P.PowerLossTest.start_logged
    extra_args = P.PowerLossTest.extra_args
    write_and_kill = C.CrashTest.write_and_kill
    check_after_restart = C.CrashTest.check_after_restart

    def run_fault(self, kind, forever=False):
        rnd = random.Random(H.seed_for("test_io_faults_" + kind + ("+" if forever else "")))
        lo, hi = FAULTS[kind]
        fault = "%s:%d%s" % (kind, rnd.randint(lo, hi), "+" if forever else "")
        env = H.start_env(self, test_clock=False)
        members = [H.create_member(env.admin)["id"] for _ in range(C.MEMBERS)]
        fund_txns = {H.check_ok(H.earn(env.admin, mid, C.FUND), 201, "fund")
                     ["transaction"]["id"] for mid in members}
        logdir = os.path.join(env.dir, "powercut")
        self.start_logged(env, logdir, None, {"JIFEN_FAULT": fault})
        wseeds = [rnd.randrange(2**31) for _ in range(C.WRITERS)]
        def stderr_text():
            with open(env.server.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        # The writers run 1 to 1.5 s, and on until the fault is reached: a
        # loaded machine (ctest -j2) may commit and checkpoint too little in
        # that time to reach it.
        reqs = self.write_and_kill(env, members, wseeds, rnd.uniform(1.0, 1.5), 0, faults=True,
                                   until=lambda: "powercut: failing" in stderr_text())
        stderr = stderr_text()
        self.assertIn("powercut: failing", stderr, "the fault %s was never reached" % fault)
        failed = sum(r.state == "failed" for r in reqs)
        H.log("%s: %d acked, %d answered io_error, %d unanswered; server %s" % (
            fault, sum(r.state == "acked" for r in reqs), failed,
            sum(r.state == "unacked" for r in reqs),
            "stopped itself" if "cannot flush" in stderr else "ran until killed"))
        if kind == "wal-write":
            self.assertGreater(failed, 0, "a failed WAL write failed no request")
        if forever:
            # Every commit fails from then on: each writer's last answer is an
            # io_error, and the server answered them rather than stopping.
            last = {}
            for r in reqs:
                if r.state in ("acked", "failed"):
                    last[r.key.split("-")[2]] = r.state
            self.assertEqual(set(last.values()), {"failed"}, "answers after the WAL failed")
            self.assertNotIn("cannot flush", stderr)
        env.server = H.Server(env.db, env.dir, False, self.extra_args())
        env.start_server()
        self.check_after_restart(env, members, fund_txns, reqs, reqs, rnd, 0)

    def test_wal_write_fails(self):
        self.run_fault("wal-write")

    def test_wal_sync_fails(self):
        self.run_fault("wal-sync")

    def test_database_write_fails(self):
        self.run_fault("db-write")

    def test_database_sync_fails(self):
        self.run_fault("db-sync")

    def test_wal_writes_fail_from_then_on(self):
        """Every commit fails once the WAL cannot be written: requests are
        answered io_error, not acknowledged, and the server keeps running."""
        self.run_fault("wal-write", forever=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
