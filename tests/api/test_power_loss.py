"""Power loss (invariant I8 under a power cut; test plan T4b): writers send
earns, redeems and transfers with unique Idempotency-Keys to a server that
runs with tests/api/powercut.c preloaded, which logs, with the time of each,
every write to the database and its WAL and which of them a sync made
durable.  The server is killed with SIGKILL at a random moment.  The log
then allows a power cut at any instant T of the run: each file is rebuilt
as the cut could leave it (what a sync that ended before T covered, plus any
part of what was written before T and not covered: each such write kept,
lost or torn at a 512-byte boundary, each truncation kept or not, by the
seed, and a file created since the last sync of its directory perhaps
gone), the server starts on the rebuilt files, and the checks of
test_crash.py run with "acknowledged" meaning answered before T: every such
transaction is there, `jifen verify` is clean, re-sending every other
request applies it exactly once, balances add up.  Each cycle cuts right
after the first answer (the WAL just created), right after a WAL restart
began (the WAL restarts every 1,024 pages, the smallest threshold: the
database must be durable before the WAL's head is overwritten), at a random
instant, and at the kill; every 5 cycles start on a new database.

Two canaries must see acknowledged writes lost, or the checks above could
pass by seeing nothing: a disk that drops every flush (the library leaves
the sync markers out), and one that drops the database file's flushes only,
which loses what a WAL restart overwrote before the database held it.

Run: JIFEN_POWERCUT_LIB=build/tests/api/libpowercut.so python3
tests/api/test_power_loss.py (SEED=... replays the schedule and the cuts;
POWERCUT_CYCLES=N runs N cycles instead of 3, as `make power-loss` does)."""

import os
import random
import shutil
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402
import test_crash as C  # noqa: E402

CYCLES = int(os.environ.get("POWERCUT_CYCLES", "3"))  # `make power-loss` runs more
CYCLES_PER_DATABASE = 5
RESTART_FRAMES = 1024
HEAD = struct.Struct("<cQQQ")
TORN_UNIT = 512


def read_log(path):
    """The records of a powercut log: (log offset, op, offset, length, time, data)."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, "rb") as f:
        raw = f.read()
    pos = 0
    while pos + HEAD.size <= len(raw):
        op, off, n, ns = HEAD.unpack_from(raw, pos)
        start = pos
        pos += HEAD.size
        data = b""
        if op == b"W":
            if pos + n > len(raw):
                break  # the kill cut the record short: its write never happened
            data = raw[pos:pos + n]
            pos += n
        out.append((start, op, off, n, ns, data))
    return out


def apply(img, op, off, data):
    if op == b"W":
        if len(img) < off:
            img.extend(b"\0" * (off - len(img)))
        img[off:off + len(data)] = data
    elif op == b"T":
        if off < len(img):
            del img[off:]
        else:
            img.extend(b"\0" * (off - len(img)))


def rebuild(base, records, cut_ns, rnd, mode):
    """The file as a power cut at cut_ns leaves it: base, every record that a
    sync ended before the cut covered, then the rest written before the cut
    by mode ("none", "all" or "some"); None when the file was created and
    the cut takes its name (no sync of the directory since).  Returns
    (image, durable, unsynced, kept)."""
    def upto(marker):
        return max([off for (_, op, off, _, ns, _) in records if op == marker and ns <= cut_ns],
                   default=0)
    durable_upto, dir_upto = upto(b"S"), upto(b"D")
    created = [start for (start, op, _, _, ns, _) in records if op == b"C" and ns <= cut_ns]
    if created and created[-1] >= dir_upto:
        # Created, but no directory sync since: the name may be gone.
        gone = {"none": True, "all": False}.get(mode)
        if gone if gone is not None else rnd.random() < 0.5:
            return None, 0, 0, 0
    img = bytearray(base)
    kept = durable = 0
    tail = []
    for rec in records:
        start, op, off, n, ns, data = rec
        if op in (b"S", b"D", b"C") or ns > cut_ns:
            continue
        if start < durable_upto:
            apply(img, op, off, data)
            durable += 1
        else:
            tail.append(rec)
    for start, op, off, n, ns, data in tail:
        choice = {"none": "lose", "all": "keep"}.get(mode) or rnd.choice(("lose", "keep", "tear"))
        if choice == "lose":
            continue
        if choice == "tear" and op == b"W" and n > TORN_UNIT:
            data = data[:TORN_UNIT * rnd.randrange(1, (n + TORN_UNIT - 1) // TORN_UNIT)]
        apply(img, op, off, data)
        kept += 1
    return img, durable, len(tail), kept


def wal_start_times(records):
    """When each write of the WAL's head (its start or a restart) was logged."""
    return [ns for (_, op, off, _, ns, _) in records if op == b"W" and off == 0]


def as_of(reqs, cut_ns):
    """Copies of reqs as a cut at cut_ns leaves them: acknowledged only if the
    answer arrived before the cut, else unacknowledged (to be re-sent)."""
    out = []
    for r in reqs:
        c = C.Req(r.key, r.path, r.body, r.kind, r.frm, r.to, r.n)
        if r.state == "acked" and r.acked_ns < cut_ns:
            c.state, c.txn_id, c.replayed, c.acked_ns = "acked", r.txn_id, r.replayed, r.acked_ns
        else:
            c.state = "unacked"
        out.append(c)
    return out


class PowerLossTest(unittest.TestCase):
    write_and_kill = C.CrashTest.write_and_kill
    check_after_restart = C.CrashTest.check_after_restart

    def setUp(self):
        lib = os.environ.get("JIFEN_POWERCUT_LIB")
        if not lib or not os.path.isfile(lib):
            raise unittest.SkipTest("JIFEN_POWERCUT_LIB does not name the powercut library "
                                    "(%r); build it and run through ctest" % lib)
        if H.is_asan_build(H.jifen_bin()) or H.is_tsan_build(H.jifen_bin()):
            raise unittest.SkipTest("the powercut library wraps mmap and write, which the "
                                    "sanitizers intercept too; the plain build runs this test")
        self.lib = os.path.abspath(lib)

    def start_logged(self, env, logdir, lie, extra_env=None):
        """Stops the server cleanly, keeps the files as they are (all durable
        then), and starts it again with the library logging into logdir (and
        extra_env in its environment)."""
        rc = env.server.stop()
        self.assertEqual(rc, 0, "exit code on SIGTERM: %s" % env.server.stderr_tail())
        os.sync()
        shutil.rmtree(logdir, ignore_errors=True)
        os.makedirs(logdir)
        base = {}
        for suffix in ("", "-wal"):
            path = env.db + suffix
            if os.path.exists(path):
                with open(path, "rb") as f:
                    base[suffix] = f.read()
        penv = {"LD_PRELOAD": self.lib, "JIFEN_POWERCUT_DIR": logdir,
                "JIFEN_POWERCUT_DB": os.path.realpath(env.db)}
        if lie:
            penv["JIFEN_POWERCUT_LIE"] = lie
        penv.update(extra_env or {})
        env.server = H.Server(env.db, env.dir, False, self.extra_args(), penv)
        env.start_server()
        return base

    def extra_args(self):
        return ["--wal-restart-frames", str(RESTART_FRAMES)]

    def cut_power(self, env, logdir, base, cut_ns, what, rnd, cycle):
        """Rebuilds the database and its WAL as a power cut at cut_ns leaves
        them and starts the server on them (without the library)."""
        mode = "none" if self.lie else rnd.choice(("none", "all", "some", "some"))
        notes = []
        for suffix, name in (("", "db.log"), ("-wal", "wal.log")):
            records = read_log(os.path.join(logdir, name))
            path = env.db + suffix
            if not records and suffix not in base:
                if os.path.exists(path):
                    os.remove(path)
                continue
            img, durable, unsynced, kept = rebuild(base.get(suffix, b""), records, cut_ns, rnd,
                                                   mode)
            if img is None:
                notes.append("%s created and gone" % name)
                if os.path.exists(path):
                    os.remove(path)
                continue
            notes.append("%s %d durable, %d of %d unsynced kept"
                         % (name, durable, kept, unsynced))
            with open(path, "wb") as f:
                f.write(img)
        if os.path.exists(env.db + "-shm"):
            os.remove(env.db + "-shm")  # rebuilt from the WAL on open
        H.log("cycle %d: power cut %s (%s): %s" % (cycle, what, mode, "; ".join(notes)))
        env.server = H.Server(env.db, env.dir, False, self.extra_args())
        env.start_server()

    def cut_instants(self, logdir, reqs, rnd):
        """Where to cut besides the kill: right after the first write was
        answered (the WAL is new then), right after a WAL restart began
        (the log's first head write is the WAL's own start), and anywhere."""
        starts = wal_start_times(read_log(os.path.join(logdir, "wal.log")))[1:]
        acked = sorted(r.acked_ns for r in reqs if r.state == "acked")
        cuts = []
        if acked:
            cuts.append((acked[0] + 1, "after the first answer"))
        if starts:
            cuts.append((rnd.choice(starts), "after a WAL restart began"))
        if len(acked) > 1:
            cuts.append((rnd.randrange(acked[0], acked[-1]), "at a random instant"))
        return starts, cuts

    def run_cycles(self, name, cycles, lie):
        """Runs cycles on a fresh database every CYCLES_PER_DATABASE cycles
        (each check lists every transaction so far); returns how many WAL
        restarts the logs hold."""
        rnd = random.Random(H.seed_for(name))
        self.lie = lie
        restarts = 0
        for first in range(0, cycles, CYCLES_PER_DATABASE):
            restarts += self.run_on_one_database(rnd, range(first, min(cycles, first +
                                                                      CYCLES_PER_DATABASE)))
        return restarts

    def run_on_one_database(self, rnd, cycles):
        env = H.Env(test_clock=False)
        # After a lying disk the database may fail verify: the canary's point.
        self.addCleanup(env.close, not self.lie)
        members = [H.create_member(env.admin)["id"] for _ in range(C.MEMBERS)]
        fund_txns = set()
        for mid in members:
            r = H.check_ok(H.earn(env.admin, mid, C.FUND), 201, "fund")
            fund_txns.add(r["transaction"]["id"])
        logdir = os.path.join(env.dir, "powercut")
        all_reqs = []
        restarts = 0
        for cycle in cycles:
            base = self.start_logged(env, logdir, self.lie)
            wseeds = [rnd.randrange(2**31) for _ in range(C.WRITERS)]
            delay = rnd.uniform(1.0 if self.lie else 0.5, 2.0)  # a canary needs a WAL restart
            reqs = self.write_and_kill(env, members, wseeds, delay, cycle)
            starts, cuts = self.cut_instants(logdir, reqs, rnd)
            restarts += len(starts)
            for cut_ns, what in ([] if self.lie else cuts):
                self.cut_power(env, logdir, base, cut_ns, what, rnd, cycle)
                then = as_of(reqs, cut_ns)
                self.check_after_restart(env, members, fund_txns, all_reqs + then, then, rnd,
                                         cycle)
                rc = env.server.stop()
                self.assertEqual(rc, 0, "exit code on SIGTERM: %s" % env.server.stderr_tail())
            all_reqs.extend(reqs)
            self.cut_power(env, logdir, base, 2**63, "at the kill", rnd, cycle)
            self.check_after_restart(env, members, fund_txns, all_reqs, reqs, rnd, cycle)
        env.close(not self.lie)
        return restarts

    def test_power_cut_loses_no_acknowledged_write(self):
        restarts = self.run_cycles("test_power_cut_loses_no_acknowledged_write", CYCLES,
                                   lie=None)
        self.assertGreater(restarts, 0, "no WAL restart happened: the cuts missed the case")

    def canary(self, name, lie):
        with self.assertRaises(AssertionError) as caught:
            self.run_cycles(name, 1, lie=lie)
        H.log("canary caught: %s" % str(caught.exception)[:200])

    def test_canary_a_disk_that_drops_flushes_is_caught(self):
        self.canary("test_canary_a_disk_that_drops_flushes_is_caught", "all")

    def test_canary_a_database_file_that_drops_flushes_is_caught(self):
        self.canary("test_canary_a_database_file_that_drops_flushes_is_caught", "db")


if __name__ == "__main__":
    unittest.main(verbosity=2)
