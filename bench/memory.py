#!/usr/bin/env python3
"""Issue 3 item 7: resident memory with 1,000,000 members and 10,000,000
transactions, and the time a restart on that database takes to be ready.

`make bench-memory` (long: hours at a few thousand earns per second).
The database is built through the HTTP API only (members created with
POST /v1/members, transactions with earns; POST /v1/batch is used instead
when jifen serves it), so every row went through the engine's checks; writing
rows straight into SQLite would bypass the invariants.  Building stops at
--max-seconds and reports the size actually reached.

Reported (printed and bench/results/memory.json): members and transactions
reached, build rate, VmRSS / VmHWM of the server after the build, database
size on disk, bytes per transaction, shutdown time, the time of SQLite's
quick_check on the file (apart from the shutdown), restart time to the ready
line and to the first answered read and write, and VmRSS after the restart;
then, once 300 more earns made the writer ask for its idempotency-key filter
(and an earn every 0.1 s kept the writer's batches going), when it was ready, its build time, keys and bytes, and VmRSS with it.
Anonymous memory is reported right after the build and again once the server
has trimmed its heap after a second without writes (rss_anon_kib_idle).

  python3 bench/memory.py [--members 1000000] [--txns 10000000] [--max-seconds 21600]
                          [--keep DIR]     keep the built database in DIR
                          [--db FILE --key KEY --members-file F]   only measure a restart
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as B  # noqa: E402
import systems as S  # noqa: E402

CHUNK = 1_000_000  # earns per load generator call (each call is bounded in time too)


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_split(pid, when):
    """VmRSS in its parts: anonymous memory (the heap: page caches, queues)
    and file pages (the database mapped with mmap_size, which the kernel
    shares with its page cache and can drop at any time)."""
    return {f"rss_anon_kib_{when}": status_kib(pid, "RssAnon"),
            f"rss_file_kib_{when}": status_kib(pid, "RssFile")}


class Cfg:
    def __init__(self, a):
        self.members = a.members
        self.jifen_bin = a.jifen_bin
        self.jifen_threads = None
        self.cache = None
        self.cache_enabled = False
        self.seed_timeout = a.max_seconds + 600
        self.lots = 0


def build(jf, a, db):
    info = json.loads(B.run([jf.bin, "init", "--db", db, "--tenant", "memory", "--json"], 60).stdout)
    jf.key = info["api_key"]
    jf.base = os.path.dirname(db)
    jf.start(db)
    t0 = time.monotonic()
    deadline = t0 + a.max_seconds
    res = jf.loadgen(["--workload", "seed", "--count", a.members, "--conns", a.conns,
                      "--prefix", "mem", "--out", jf.members_file,
                      "--duration", min(3600, a.max_seconds)], timeout=a.max_seconds + 600)
    members = res["ok"]
    B.log(f"memory: {members:,} members in {time.monotonic() - t0:.0f}s")
    batch_ok, _ = jf.batch_supported()
    txns = 0
    while txns < a.txns and time.monotonic() < deadline:
        left = int(deadline - time.monotonic())
        if left < 5:
            break
        n = min(CHUNK, a.txns - txns)
        args = ["--members", jf.members_file, "--conns", a.conns, "--prefix", f"t{txns}",
                "--duration", min(3600, left)]
        if batch_ok:
            per = 1000
            args += ["--workload", "batch", "--batch", per, "--count", max(1, n // per)]
        else:
            args += ["--workload", "earn", "--count", n]
        r = jf.loadgen(args, timeout=min(3600, left) + 600)
        txns += r["ops"] if batch_ok else r["ok"]
        B.log(f"memory: {txns:,} transactions after {time.monotonic() - t0:.0f}s "
              f"({r['throughput']:.0f}/s in the last chunk, VmRSS "
              f"{status_kib(jf.proc.pid, 'VmRSS')} KiB)")
        if r["ok"] == 0:
            raise B.BenchError(f"earns failing: {r['status']}")
    build_s = time.monotonic() - t0
    out = {"members": members, "transactions": txns, "build_s": round(build_s, 1),
           "build_rate_per_s": round((members + txns) / build_s, 1) if build_s else None,
           "vmrss_kib_loaded": status_kib(jf.proc.pid, "VmRSS"),
           "vmhwm_kib_loaded": status_kib(jf.proc.pid, "VmHWM"), "api_key": jf.key}
    out.update(rss_split(jf.proc.pid, "loaded"))
    out.update(idle_rss(jf))
    return out


def idle_rss(jf, wait_s=10.0):
    """Anonymous memory once the server has handed back what the build's
    requests freed: jifen trims its heap after a second without writes
    (jifen_memory_trims_total); waits for the trim, at most wait_s."""
    def trims():
        return B.parse_metrics(jf.metrics_text(), ("jifen_memory_trims_total",)).get(
            "jifen_memory_trims_total")
    before, t0 = trims(), time.monotonic()
    while before is not None and trims() == before and time.monotonic() - t0 < wait_s:
        time.sleep(0.2)
    return {"idle_wait_s": round(time.monotonic() - t0, 1), **rss_split(jf.proc.pid, "idle")}


def restart(jf, db):
    out = {}
    t = time.monotonic()
    jf.stop(check=False)
    out["shutdown_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    jf.check_file()
    out["quick_check_s"] = round(time.monotonic() - t, 3)
    out["db_bytes"] = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
    with open(jf.members_file) as f:
        member = f.readline().strip()
    t = time.monotonic()
    jf.start(db)
    out["restart_ready_s"] = round(time.monotonic() - t, 3)
    status, _ = jf.http("GET", f"/v1/members/{member}/points")
    out["restart_first_read_s"] = round(time.monotonic() - t, 3)
    out["first_read_status"] = status
    status, _ = jf.http("POST", f"/v1/members/{member}/earn", {"points": 1},
                        idem=f"restart-{time.time_ns()}")
    out["restart_first_write_s"] = round(time.monotonic() - t, 3)
    out["first_write_status"] = status
    out["vmrss_kib_restarted"] = status_kib(jf.proc.pid, "VmRSS")
    out.update(rss_split(jf.proc.pid, "restarted"))
    out.update(filter_after_restart(jf, member, t))
    return out


FILTER_METRICS = ("jifen_idem_filter_ready", "jifen_idem_filter_keys",
                  "jifen_idem_filter_bytes", "jifen_idem_filter_build_seconds")


def filter_after_restart(jf, member, t0, wait_s=120.0):
    """The idempotency-key filter after a restart: the writer asks for it
    once JF_IDEM_FILTER_WRITES_MIN (256) keys were stored, and a thread of
    its own builds it from every stored key while the server answers.  Sends
    300 earns in one batch, waits for the filter, and reports when it was
    ready (from the restart), its build time, keys and bytes, and the
    resident memory with it.  The writer hands the filter on at the start of
    its batches, so an earn goes every 0.1 s until it is ready."""
    ops = [{"op": "earn", "id": member, "idempotency_key": f"filter-{time.time_ns()}-{i}",
            "body": {"points": 1}} for i in range(300)]
    status, _ = jf.http("POST", "/v1/batch", {"operations": ops}, timeout=120)
    out = {"filter_batch_status": status}
    m = {}
    while time.monotonic() - t0 < wait_s:
        m = B.parse_metrics(jf.metrics_text(), FILTER_METRICS)
        if m.get("jifen_idem_filter_ready") == 1:
            break
        jf.http("POST", f"/v1/members/{member}/earn", {"points": 1},
                idem=f"filter-tick-{time.time_ns()}")
        time.sleep(0.1)
    out["filter_ready"] = m.get("jifen_idem_filter_ready") == 1
    out["filter_ready_s"] = round(time.monotonic() - t0, 3)
    out["filter_build_s"] = m.get("jifen_idem_filter_build_seconds")
    out["filter_keys"] = int(m.get("jifen_idem_filter_keys", 0))
    out["filter_bytes"] = int(m.get("jifen_idem_filter_bytes", 0))
    out["vmrss_kib_filter_ready"] = status_kib(jf.proc.pid, "VmRSS")
    out.update(rss_split(jf.proc.pid, "filter_ready"))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--txns", type=int, default=10_000_000)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--max-seconds", type=int, default=6 * 3600)
    ap.add_argument("--jifen-bin", default=os.path.join(S.ROOT, "build", "jifen"))
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--keep", help="copy the built database (and members.txt, key) here")
    ap.add_argument("--db", help="measure a restart of this existing database only")
    ap.add_argument("--key", help="admin API key of --db")
    ap.add_argument("--members-file", help="member ids of --db (one per line)")
    ap.add_argument("--out", default=os.path.join(S.HERE, "results", "memory.json"))
    a = ap.parse_args(argv)
    if not (2 <= a.members <= 100_000_000 and 0 <= a.txns <= 1_000_000_000
            and 60 <= a.max_seconds <= 48 * 3600 and 1 <= a.conns <= 1000):
        ap.error("a size is out of range")
    signal_setup()
    B.run(["make", "-s", "-C", S.HERE], 300)
    workdir = B.register_dir(tempfile.mkdtemp(prefix="jifen-memory-", dir=a.workdir))
    jf = S.Jifen(Cfg(a), workdir)
    ok, why = jf.available()
    if not ok:
        print(f"bench-memory: {why}")
        return 1
    try:
        if a.db:
            if not (a.key and a.members_file):
                ap.error("--db needs --key and --members-file")
            jf.key = a.key
            jf.base = os.path.dirname(os.path.abspath(a.members_file))
            shutil.copyfile(a.members_file, os.path.join(workdir, "members.txt"))
            jf.base = workdir
            db = os.path.abspath(a.db)
            jf.start(db)
            result = {"members": None, "transactions": None,
                      "vmrss_kib_loaded": status_kib(jf.proc.pid, "VmRSS")}
            result.update(rss_split(jf.proc.pid, "loaded"))
        else:
            db = os.path.join(workdir, "memory.db")
            result = build(jf, a, db)
        result.update(restart(jf, db))
        result["db_bytes_per_txn"] = (round(result["db_bytes"] / result["transactions"])
                                      if result.get("transactions") else None)
        jf.stop()
        if a.keep and not a.db:
            os.makedirs(a.keep, exist_ok=True)
            B.copy_db(db, os.path.join(a.keep, "memory.db"))
            shutil.copyfile(jf.members_file, os.path.join(a.keep, "members.txt"))
            with open(os.path.join(a.keep, "key.json"), "w") as f:
                json.dump({"api_key": jf.key}, f)
    finally:
        jf.close()
        B.teardown()
    result["target"] = {"members": a.members, "transactions": a.txns,
                        "restart_ready_under_s": 10}
    result.pop("api_key", None)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    for k, v in result.items():
        print(f"{k:<24} {v}")
    return 0


def signal_setup():
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
