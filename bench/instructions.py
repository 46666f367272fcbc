#!/usr/bin/env python3
"""The writer's instructions per operation, counted by callgrind.

Why: on the benchmark's host the same binary scatters 15-20% between runs
(docs/PERFORMANCE.md), which hides a change of a few percent in throughput,
and the VM exposes no hardware counters to `perf stat`.  An instruction count
is the same from run to run within about 2%, so a change to the writer's
path can be measured on its own: this script runs `jifen serve` under
`valgrind --tool=callgrind`, counting only inside one function of the writer
(`--toggle-collect`), drives a fixed number of operations through the load
generator, and divides the count by the operations.

Each run first sends 550 earns and then zeroes callgrind's counters
(`callgrind_control --zero`), so that what happens once per process (the
statements' preparation, each HTTP thread's first read connection, the
idempotency-key filter's build) is not counted per operation.

Three functions are counted, in separate runs:
  jf_writer_apply  one command applied: its statements, rules, hash chain and
                   reply (the same however commits group the commands);
  writer_batch     the whole writer: the commands and the commits, whose share
                   depends on how many commands a commit carries, which under
                   valgrind's slowdown is far fewer than at full speed (the
                   batch endpoint's slices end at their time limit), so this
                   figure overstates the commit's part;
  MHD_run          the HTTP threads' work in user space (libmicrohttpd, the
                   request's JSON, validation, the API key, the response),
                   earns only: the kernel's part of a request (the sockets,
                   most of an HTTP thread's time) is not counted.

Workloads: earn (fixed points, W1's request), batch1000 (W5's), and orders
(W8's: an order with two lines, on a second base whose program has `jifen
init`'s sample rules active and three tiers on growth), the last for
jf_writer_apply and MHD_run only.

Usage: python3 bench/instructions.py [--jifen-bin build/jifen] [--members N]
           [--earns N] [--batches N] [--order-lines N] [--only WORKLOAD]
           [--out FILE] [--keep DIR]
`make bench-instructions` runs it with the defaults (about three minutes).
Instruction counts are not time: cache misses, the kernel and the other
threads are not in them.  Report them beside timed runs, not instead.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402
from systems import RULES_TIERS  # noqa: E402

LOADGEN = os.path.join(HERE, "build", "loadgen")
# Earns sent before the count starts (callgrind_control --zero): the
# statements' preparation, each HTTP thread's first read connection (its
# first API-key lookup) and the idempotency-key filter's build are once per
# process, not per operation.
WARMUP_EARNS = 500
# (function, workload) counted, in this order.
RUNS = (("jf_writer_apply", "earn"), ("jf_writer_apply", "batch1000"),
        ("writer_batch", "earn"), ("writer_batch", "batch1000"), ("MHD_run", "earn"),
        ("jf_writer_apply", "orders"), ("MHD_run", "orders"))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jifen-bin", default=os.path.join(ROOT, "build", "jifen"))
    ap.add_argument("--members", type=int, default=10000,
                    help="members seeded (each earns once before the counted runs)")
    ap.add_argument("--earns", type=int, default=3000, help="earns counted (16 connections)")
    ap.add_argument("--batches", type=int, default=5,
                    help="batches of 1,000 earns counted (2 connections)")
    ap.add_argument("--order-lines", type=int, default=2,
                    help="lines of each order earn (W8's is 2); another count writes its own "
                         "file unless --out names one")
    ap.add_argument("--only", choices=("earn", "batch1000", "orders"),
                    help="count this workload's runs alone")
    ap.add_argument("--out")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each run's callgrind output as DIR/FUNCTION-WORKLOAD.out "
                         "(for callgrind_annotate --inclusive=yes)")
    cfg = ap.parse_args(argv)
    if cfg.out is None:
        name = "instructions.json" if cfg.order_lines == 2 else \
            f"instructions-{cfg.order_lines}-lines.json"
        cfg.out = os.path.join(HERE, "results", name)
    return cfg


def callgrind_total(text):
    """The event total of a callgrind output file: its `summary:` line, else
    its `totals:` line (older versions write one of the two)."""
    for key in ("summary", "totals"):
        m = re.search(r"^%s:\s+(\d+)" % key, text, re.M)
        if m:
            return int(m.group(1))
    raise ValueError("no summary or totals line in the callgrind output")


def serve(argv, log):
    p = B.start(argv, "jifen", stop_signal=signal.SIGINT, stdout=subprocess.PIPE, stderr=log)
    line = B.wait_line(p, "jifen listening on", 120)
    return p, int(line.rsplit(":", 1)[1].strip().rstrip("/"))


def loadgen(port, key, args, timeout=900):
    argv = [LOADGEN, "--port", str(port), "--api-key", key] + [str(a) for a in args]
    r = B.run(argv, timeout, check=False)
    if r.returncode not in (0, 1):
        raise B.BenchError(f"loadgen exited {r.returncode}: {r.stderr[-400:]}")
    return json.loads(r.stdout)


def put_tiers(port, key):
    """W8's three tiers on growth (bench/systems.py, RULES_TIERS)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tiers", method="PUT",
                                 data=json.dumps(RULES_TIERS).encode(),
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        if r.status != 200:
            raise B.BenchError(f"PUT /v1/tiers answered {r.status}")


def build_base(bin_, work, members, rules=False):
    """A database with `members` members, each holding one lot (the state the
    counted earns meet), and its admin key; with rules, W8's program: `jifen
    init`'s sample rules active and three tiers on growth."""
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "base.db")
    init = B.run([bin_, "init", "--db", db, "--tenant", "bench", "--json"] +
                 (["--rules", "active"] if rules else []), 60)
    key = json.loads(init.stdout)["api_key"]
    mfile = os.path.join(work, "members.txt")
    with open(os.path.join(work, "serve.log"), "ab") as log:
        p, port = serve([bin_, "serve", "--db", db, "--listen", "127.0.0.1:0"], log)
        try:
            if rules:
                put_tiers(port, key)
            res = loadgen(port, key, ["--workload", "seed", "--count", members, "--conns", 16,
                                      "--prefix", "m", "--out", mfile])
            if res["ok"] != members:
                raise B.BenchError(f"seeded {res['ok']} of {members} members")
            per = next(b for b in range(min(1000, members), 0, -1) if members % b == 0)
            loadgen(port, key, ["--workload", "batch", "--batch", per, "--count", members // per,
                                "--conns", 2, "--sequential", "--members", mfile,
                                "--prefix", "seed"])
        finally:
            B.stop(p, timeout=60)
    return db, key, mfile


def counted_run(bin_, base, key, mfile, work, function, workload, keep=None):
    """Instructions inside `function` per operation of one workload, on a
    fresh copy of the base."""
    db = os.path.join(work, "run.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    B.copy_db(base, db)
    out = os.path.join(work, "callgrind.out")
    argv = ["valgrind", "--tool=callgrind", f"--toggle-collect={function}",
            f"--callgrind-out-file={out}", bin_, "serve", "--db", db, "--listen", "127.0.0.1:0"]
    with open(os.path.join(work, "valgrind.log"), "ab") as log:
        p, port = serve(argv, log)
        try:
            # (order earns warm up with orders: their statements are prepared
            # once per process, as the plain earn's are)
            warm = ["--workload", "earn", "--conns", 16] + workload.get("warm", [])
            loadgen(port, key, warm + ["--count", WARMUP_EARNS, "--members", mfile,
                                       "--prefix", f"w{time.monotonic_ns()}"])
            time.sleep(1)  # the filter's build ends on its own thread
            loadgen(port, key, warm + ["--count", 50, "--members", mfile,
                                       "--prefix", f"v{time.monotonic_ns()}"])
            B.run(["callgrind_control", "--zero", str(p.pid)], 120)
            res = loadgen(port, key, workload["args"] + ["--members", mfile, "--prefix",
                                                         f"r{time.monotonic_ns()}"])
        finally:
            rc = B.stop(p, timeout=300)
    if rc not in (0, None):
        raise B.BenchError(f"jifen under valgrind exited {rc} (see {work}/valgrind.log)")
    with open(out) as f:
        total = callgrind_total(f.read())
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(out, os.path.join(keep, f"{function}-{workload['name']}.out"))
    ops = res["ops"]
    if ops <= 0 or (workload["name"] in ("earn", "orders") and res.get("ok") != ops):
        raise B.BenchError(f"{workload['name']}: {res.get('ok')} of {ops} operations succeeded")
    return {"function": function, "workload": workload["name"], "ops": ops,
            "instructions": total, "per_op": round(total / ops)}


def main(argv):
    cfg = parse_args(argv)
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)",
              file=sys.stderr)
        return 2
    if not os.access(LOADGEN, os.X_OK) or not os.access(cfg.jifen_bin, os.X_OK):
        print("instructions: build first (make build; make -C bench)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="jifen-instructions-")
    B.register_dir(work)
    workloads = [
        {"name": "earn", "args": ["--workload", "earn", "--conns", 16, "--count", cfg.earns]},
        {"name": "batch1000", "args": ["--workload", "batch", "--batch", 1000, "--conns", 2,
                                       "--count", cfg.batches]},
        {"name": "orders", "rules": True, "warm": ["--orders", "--order-lines", cfg.order_lines],
         "args": ["--workload", "earn", "--orders", "--order-lines", cfg.order_lines,
                  "--conns", 16, "--count", cfg.earns]},
    ]
    try:
        B.log(f"seeding {cfg.members} members, twice (plain, and W8's rules and tiers)")
        runs = [r for r in RUNS if cfg.only in (None, r[1])]
        bases = {}
        for rules in sorted({next(w for w in workloads if w["name"] == r[1]).get("rules", False)
                             for r in runs}):
            bases[rules] = build_base(cfg.jifen_bin, os.path.join(work, "rules" if rules
                                                                  else "plain"),
                                      cfg.members, rules)
        rows = []
        for function, wl in runs:
            wl = next(w for w in workloads if w["name"] == wl)
            base, key, mfile = bases[wl.get("rules", False)]
            r = counted_run(cfg.jifen_bin, base, key, mfile, work, function, wl, cfg.keep)
            B.log(f"{r['function']:16s} {r['workload']:10s} {r['ops']:7d} ops  "
                  f"{r['per_op']:9,d} instructions per op")
            rows.append(r)
    finally:
        B.teardown()
    doc = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "jifen_bin": cfg.jifen_bin, "members": cfg.members,
           "order_lines": cfg.order_lines, "results": rows}
    os.makedirs(os.path.dirname(cfg.out), exist_ok=True)
    with open(cfg.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"results: {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
