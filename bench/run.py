#!/usr/bin/env python3
"""jifen side-by-side benchmark (issue 3): `make bench`, `make bench-smoke`.

Starts every system itself on 127.0.0.1 in a temporary directory (jifen on a
copy of a seeded database; PostgreSQL 15 from initdb with fsync and
synchronous_commit on; Redis with appendonly yes + appendfsync always; the
SQLite baseline in-process), runs the workloads of issue 3, tears everything
down on every exit path, prints one table and writes the results as JSON.

  W1  earn, uniform over the members, closed loop at each --w1-conns
  W1o earn, open loop at half of each system's best W1 rate (p99 target)
  W2  earn on 10 hot members, each round with a W1 run on jifen beside it
      (W1b), the target's reference
  W3  redeem: 20% refused for insufficient points, 5% retries of an earlier key
  W4  transfers between random pairs, both directions
  W5  bulk: POST /v1/batch, --batch-size operations per request ("n/a" until
      jifen serves it); baselines: one SQLite transaction / one PL/pgSQL call
      per batch
  W6  expire --lots lots (jifen, test clock) while W1 runs at half its max
  W7  read-heavy: 80% balance and history reads, 20% earns
  W8  jifen only (no baseline computes rules): order earns, each computed by
      the tenant's rules from an order with two lines, on a program with
      `jifen init`'s sample rules active and three tiers on growth (what a
      merchant's till sends; W1 sends fixed points to a program without either)
  W1f jifen only, the floor: W1's earns at each --w1-conns to frozen members,
      which the writer refuses before its first write (422 member_frozen);
      what the HTTP path, the queue and the commit loop cost without a ledger,
      the bound on any store behind them (the targets' lines say which target
      it puts out of reach in this run)
  W1fo jifen only, the p99 target's floor: W1o's earns at jifen's W1o rate and
      connections, every one to a frozen member
  W5f jifen only, W5's floor: W5's batches, every operation to a frozen member

Throughput is the median of --runs runs; so are the latency percentiles and
the CPU time per operation (server process only: jifen, the postmaster and
its backends, redis-server; the SQLite baseline is one process).  Python 3
standard library only.  See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as B  # noqa: E402
import report  # noqa: E402
import systems as S  # noqa: E402

HERE = S.HERE
ROOT = S.ROOT
SYSTEM_ORDER = ["jifen", "pg-func", "pg-txn", "sqlite", "redis"]
WORKLOADS = ["W1", "W1o", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W1f", "W1fo", "W5f"]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long run: tiny sizes, 1 run")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--duration", type=float, help="measured seconds per run")
    ap.add_argument("--warmup", type=float,
                    help="unmeasured seconds before each run (default 5: a jifen server's "
                    "first pass through its WAL writes new page-cache pages; bench/README.md)")
    ap.add_argument("--members", type=int)
    ap.add_argument("--w1-conns", help="comma-separated connection counts for W1")
    ap.add_argument("--conns", type=int, help="connections for W1o, W2-W4, W7")
    ap.add_argument("--systems", help="comma-separated subset of " + ",".join(SYSTEM_ORDER))
    ap.add_argument("--workloads", help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--lots", type=int, help="lots to expire in W6")
    ap.add_argument("--w6-rate", type=int,
                    help="W6's foreground in earns/s, the same in every run (default: half of"
                         " W1's maximum, measured on the W6 database before each run)")
    ap.add_argument("--order-lines", type=int, default=2,
                    help="lines of each W8 order earn (1-100; loadgen --order-lines)")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--batch-conns", type=int, default=4)
    ap.add_argument("--out", help="results JSON (default bench/results/latest.json)")
    ap.add_argument("--workdir", help="parent of the temporary directory (default /tmp)")
    ap.add_argument("--jifen-bin", default=os.path.join(ROOT, "build", "jifen"))
    ap.add_argument("--jifen-threads", type=int)
    ap.add_argument("--no-install", action="store_true", help="do not apt-get missing packages")
    ap.add_argument("--no-cache", action="store_true", help="reseed jifen's base database")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--strict", action="store_true", help="exit 1 on any error (smoke default)")
    ap.add_argument("--steal-max", type=float,
                    help="a round of a cell row (one run of each system) during which the "
                    "hypervisor stole more than this percent of the CPU time is measured "
                    "again (default 15; -1 in --smoke, so that the path is exercised)")
    ap.add_argument("--steal-retries", type=int,
                    help="how many times a stolen round is measured again; the attempt "
                    "with the least stolen time is kept, the others are reported as "
                    "discarded (default 2; 1 in --smoke)")
    a = ap.parse_args(argv)
    smoke = a.smoke
    defaults = dict(runs=1 if smoke else 3, duration=0.5 if smoke else 10.0,
                    warmup=0.2 if smoke else 5.0, members=200 if smoke else 100000,
                    w1_conns="16" if smoke else "1,16,64,256", conns=16 if smoke else 64,
                    lots=500 if smoke else 1000000)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.steal_retries is None:
        a.steal_retries = 1 if smoke else 2
    if a.steal_max is None:
        a.steal_max = -1.0 if smoke else 15.0
    a.w1_conns = [int(x) for x in str(a.w1_conns).split(",") if x]
    # The smoke run keeps to jifen and the in-process SQLite baseline so that it
    # takes seconds; --systems adds PostgreSQL and Redis when they are installed.
    a.systems = (a.systems.split(",") if a.systems
                 else ["jifen", "sqlite"] if smoke else list(SYSTEM_ORDER))
    a.workloads = a.workloads.split(",") if a.workloads else list(WORKLOADS)
    for s in a.systems:
        if s not in SYSTEM_ORDER:
            ap.error(f"unknown system {s}")
    for w in a.workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    if not (1 <= a.runs <= 20 and 0.2 <= a.duration <= 600 and 0 <= a.warmup <= 60
            and 2 <= a.members <= 10_000_000 and 1 <= a.conns <= 1000
            and all(1 <= c <= 1000 for c in a.w1_conns) and 0 <= a.lots <= 20_000_000
            and 0 <= a.steal_retries <= 10 and 1 <= a.order_lines <= 100):
        ap.error("a size is out of range")
    a.strict = a.strict or smoke
    a.out = a.out or os.path.join(HERE, "results", "smoke.json" if smoke else "latest.json")
    a.cache = os.path.join(HERE, ".cache")
    a.cache_enabled = not a.no_cache and not smoke
    a.seed_timeout = 3600
    a.pgbench_threads = 2
    return a


def machine_info(cfg, workdir):
    info = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    r = B.run(["df", "-P", workdir], 10, check=False)
    info["workdir_fs"] = r.stdout.splitlines()[-1].split()[0] if r.returncode == 0 else "?"
    r = B.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], 10, check=False)
    info["jifen_commit"] = r.stdout.strip() if r.returncode == 0 else "?"
    r = B.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "include"], 10,
              check=False)
    info["jifen_tree_dirty"] = bool(r.stdout.strip())
    info["jifen_bin"] = getattr(cfg, "jifen_bin_source", cfg.jifen_bin)
    if os.path.exists(cfg.jifen_bin):
        info["jifen_bin_sha256"] = S.file_sha(cfg.jifen_bin, 16)
    info["loadavg_start"] = B.loadavg()
    info["cpu_ticks_start"] = B.cpu_ticks()
    return info


# The disk traffic beside the log flushes in fsync_lat's last test: random 4 KiB
# pages, paced as jifen's checkpointer paces its copies, at about half of what
# that checkpointer wrote at 3,000 earns/s (38 MB/s, docs/PERFORMANCE.md).
FSYNC_BG_MBPS = "20"


def fsync_latency(cfg, workdir):
    secs, bg_secs = ("1", "1") if cfg.smoke else ("3", "10")
    return B.run_json([os.path.join(S.BIN, "fsync_lat"), "--dir", workdir, "--seconds", secs,
                       "--bg-mbps", FSYNC_BG_MBPS, "--bg-seconds", bg_secs], 90)


class Bench:
    def __init__(self, cfg, workdir):
        self.cfg = cfg
        self.workdir = workdir
        self.results = []  # one entry per (workload label, system)
        self.errors = []
        self.systems = {}
        self.versions = {}
        self.pg = None

    # -- systems
    def make_systems(self):
        pg = self.pg
        for name in self.cfg.systems:
            if name == "jifen":
                sysobj = S.Jifen(self.cfg, self.workdir)
            elif name == "sqlite":
                sysobj = S.SQLite(self.cfg, self.workdir)
            elif name == "redis":
                sysobj = S.Redis(self.cfg, self.workdir)
            else:
                pg = pg or S.PgServer(self.cfg, self.workdir)
                sysobj = S.Postgres(pg, name.split("-")[1])
            ok, why = sysobj.available()
            if not ok:
                B.log(f"skipping {name}: {why}")
                self.results.append({"label": "all", "system": name, "na": why})
                continue
            B.log(f"setting up {name}")
            try:
                sysobj.setup()
            except B.BenchError as e:
                self.fail(f"{name} setup", e)
                continue
            self.systems[name] = sysobj
            self.versions[name] = getattr(sysobj, "version", None)
            self.pg = pg

    def fail(self, what, err):
        msg = f"{what}: {err}"
        B.log("ERROR " + msg)
        self.errors.append(msg)

    def ordered(self):
        return [(n, self.systems[n]) for n in SYSTEM_ORDER if n in self.systems]

    def run_once(self, sysobj, wl, conns, rate, duration, prefix):
        """One run, with the share of the machine's CPU time stolen during it."""
        t0 = B.cpu_ticks()
        res = sysobj.run(wl, conns, rate, duration, self.cfg.warmup, prefix)
        if "na" not in res:
            res["steal_pct"] = B.steal_pct(t0, B.cpu_ticks())
        return res

    # -- one run of one system
    def measure_once(self, label, wl, name, sysobj, conns, rate, i):
        """Run i of one cell: the result of loadgen (or the baseline's driver), or
        {"na": why} when the system has no such workload."""
        prefix = f"{label}-{name}-{conns}-{i}-{int(time.time() * 1000) % 10**9}"
        prefix = prefix.replace(" ", "").replace("=", "")
        res = self.run_once(sysobj, wl, conns, rate, self.cfg.duration, prefix)
        # A window in which nothing finished, and nothing failed, is a
        # stall longer than the window (this machine's disk alone stalls
        # for 0.1-1.3 s every so often; a smoke window is 0.5 s), not a
        # broken driver: measure again, longer, before a strict run
        # calls it an error.
        for longer in (4, 16):
            if "na" in res or res.get("ok") or res.get("refused") or res.get("errors"):
                break
            B.log(f"  {label} {name}: nothing finished in {self.cfg.duration} s; "
                  f"measuring {longer}x as long")
            res = self.run_once(sysobj, wl, conns, rate, self.cfg.duration * longer,
                                f"{prefix}-x{longer}")
        if res.get("errors"):
            B.log(f"  {label} {name}: {res['errors']} errors (status {res.get('status', '')})")
        return res

    def cell_entry(self, label, wl, name, conns, rate, runs):
        """The table's entry for one cell: the medians of its runs."""
        entry = report.summarize(label, wl, name, conns, rate, runs)
        self.results.append(entry)
        B.log(f"  {label:<14} {name:<8} {entry['throughput']:>10.0f} ops/s  "
              f"p50 {entry['p50_ms']:.2f} ms  p99 {entry['p99_ms']:.2f} ms  "
              f"cpu/op {report.fmt_cpu(entry['cpu_us_per_op'])} us"
              f"{report.fmt_steal(entry)}")
        # The floor's every answer is a refusal (Jifen.run checks that none wrote).
        done = entry["refused"] if wl.get("frozen") else entry["ok"]
        if self.cfg.strict and (done == 0 or entry["errors"]):
            raise B.BenchError(f"{label} on {name}: {entry['errors']} errors, {entry['ok']} ok")
        return entry

    def workload(self, wid, wl, variants, only=None, beside=None):
        """Runs wl on every system; variants = [(label, conns, rate_fn or None)].

        beside = (id, wl, label): another workload run on jifen in every round,
        right after jifen's run of wl and on the same server and database, for a
        target that compares the two; it gets a table row of its own.

        The runs of a variant take turns across the systems (the first run of
        each system, then the second of each, and so on).  The machine's
        speed drifts within minutes (a VM's stolen CPU time went from 48% to
        8% in twenty minutes here; bench/README.md), and with a system's runs
        in a row that drift fell on whichever system ran during it; taking
        turns spreads it over all of them, which is what a ratio between two
        cells needs.  A system is prepared (seeded) before its first run of
        the workload, as before; pg-func and pg-txn share one database, so
        each of them is seeded again before a run that follows the other's
        (Postgres.before_run).
        """
        wl = dict(wl, id=wid)
        prepared = set()
        for label, conns, rate_fn in variants:
            cells = []
            for name, sysobj in self.ordered():
                if only and name not in only:
                    continue
                rate = rate_fn(name) if rate_fn else 0
                # A cell: one system's runs of one workload; key names it in a
                # round, where a workload run beside shares the system.
                if not rate_fn or rate:
                    cells.append({"name": name, "key": name, "sys": sysobj, "rate": rate,
                                  "wl": wl, "label": label, "runs": []})
                if beside and name == "jifen" and not rate_fn:
                    bid, bwl, blabel = beside
                    cells.append({"name": name, "key": f"{name} {bid}", "sys": sysobj, "rate": 0,
                                  "wl": dict(bwl, id=bid), "label": blabel, "runs": []})
            for i in range(self.cfg.runs):
                self.round(label, conns, cells, i, prepared)
            for c in cells:
                if c.get("na"):
                    self.results.append({"label": c["label"], "workload": c["wl"]["id"],
                                         "system": c["name"], "na": c["na"]})
                elif c["runs"] and not c.get("failed"):
                    entry = self.cell_entry(c["label"], c["wl"], c["name"], conns, c["rate"],
                                            c["runs"])
                    entry["discarded_runs"] = c["discarded"]

    def round(self, label, conns, cells, i, prepared):
        """Run i of every system of a cell row, measured again (up to
        --steal-retries times) while the hypervisor steals more than
        --steal-max percent of the CPU time during it (B.pick_round)."""
        attempts = []
        while True:
            results = []
            for c in cells:
                res = self.round_run(conns, c, i + len(attempts) * 100, prepared)
                if res is not None:
                    res["_cell"] = c["key"]
                    results.append(res)
            attempts.append(results)
            kept, discarded, again = B.pick_round(attempts, self.cfg.steal_max)
            if not again or len(attempts) > self.cfg.steal_retries:
                break
            B.log(f"  {label} run {i + 1}: {B.round_steal(results):.1f}% of the CPU time "
                  f"stolen (over {self.cfg.steal_max:g}%); measuring the round again")
        by_name = {c["key"]: c for c in cells}
        for res in kept:
            by_name[res.pop("_cell")]["runs"].append(res)
        for res in discarded:
            by_name[res.pop("_cell")]["discarded"].append(res)

    def round_run(self, conns, c, i, prepared):
        """One run of one system in a round: its result, or None when the
        system has no such workload or failed (recorded in c)."""
        c.setdefault("discarded", [])
        if c.get("na") or c.get("failed"):
            return None
        wl, label = c["wl"], c["label"]
        wid = wl["id"]
        try:
            if c["name"] not in prepared:
                c["sys"].prepare(wl)
                prepared.add(c["name"])
            elif hasattr(c["sys"], "before_run"):
                c["sys"].before_run(wl)
            res = self.measure_once(label, wl, c["name"], c["sys"], conns, c["rate"], i)
        except B.BenchError as e:
            self.fail(f"{wid} on {c['name']}", e)
            c["failed"] = True
            if self.cfg.strict:
                raise
            return None
        if "na" in res:
            c["na"] = res["na"]
            return None
        return res

    def best_w1(self, name):
        vals = [r for r in self.results if r.get("workload") == "W1" and r["system"] == name
                and r.get("throughput")]
        return max(vals, key=lambda r: r["throughput"]) if vals else None

    def run_all(self):
        cfg = self.cfg
        wls = cfg.workloads
        if "W1" in wls:
            self.workload("W1", {"kind": "earn"},
                          [(f"W1 earn c={c}", c, None) for c in cfg.w1_conns])
        def half(name):
            best = self.best_w1(name)
            return round(best["throughput"] / 2) if best else 0
        if "W1o" in wls:
            self.workload("W1o", {"kind": "earn"},
                          [(f"W1o earn 50%", cfg.conns, half)])
        if "W2" in wls:
            # W2's target is a ratio to W1 at the same connections; W1's own
            # row ran minutes before, on a machine whose speed drifts by a
            # third within minutes (bench/README.md), so each W2 round also
            # runs W1 on jifen beside it (W1b) and the target takes the
            # ratio round by round.
            self.workload("W2", {"kind": "earn", "hot": 10},
                          [(f"W2 hot10 c={cfg.conns}", cfg.conns, None)],
                          beside=("W1b", {"kind": "earn"}, f"W1 beside W2 c={cfg.conns}"))
        if "W3" in wls:
            self.workload("W3", {"kind": "redeem"},
                          [(f"W3 redeem c={cfg.conns}", cfg.conns, None)])
        if "W4" in wls:
            self.workload("W4", {"kind": "transfer"},
                          [(f"W4 transfer c={cfg.conns}", cfg.conns, None)])
        if "W5" in wls:
            self.workload("W5", {"kind": "batch"},
                          [(f"W5 batch{cfg.batch_size} c={cfg.batch_conns}", cfg.batch_conns,
                            None)])
        if "W6" in wls and "jifen" in self.systems:
            try:
                import expiry
                best = self.best_w1("jifen")
                entry = expiry.run_w6(self.systems["jifen"], cfg, best)
                self.results.append(entry)
            except B.BenchError as e:
                self.fail("W6 on jifen", e)
                if cfg.strict:
                    raise
        if "W7" in wls:
            self.workload("W7", {"kind": "read"},
                          [(f"W7 read80 c={cfg.conns}", cfg.conns, None)])
        if "W8" in wls and "jifen" in self.systems:
            lines = "" if cfg.order_lines == 2 else f" {cfg.order_lines} lines"
            self.workload("W8", {"kind": "earn", "orders": True, "base": "rules"},
                          [(f"W8 orders{lines} c={cfg.conns}", cfg.conns, None)],
                          only=("jifen",))
        if "W1f" in wls and "jifen" in self.systems:
            self.workload("W1f", {"kind": "earn", "frozen": S.FLOOR_MEMBERS},
                          [(f"W1f floor c={c}", c, None) for c in cfg.w1_conns],
                          only=("jifen",))
        if "W1fo" in wls and "jifen" in self.systems:
            # The floor of the p99 target: W1o's offered rate and connections,
            # every earn to a frozen member.
            self.workload("W1fo", {"kind": "earn", "frozen": S.FLOOR_MEMBERS},
                          [("W1fo floor 50%", cfg.conns, lambda name: half("jifen"))],
                          only=("jifen",))
        if "W5f" in wls and "jifen" in self.systems:
            self.workload("W5f", {"kind": "batch", "frozen": S.FLOOR_MEMBERS},
                          [(f"W5f floor c={cfg.batch_conns}", cfg.batch_conns, None)],
                          only=("jifen",))

    def close(self):
        for name, sysobj in reversed(self.ordered()):
            try:
                sysobj.close()
            except Exception as e:  # teardown must go on
                B.log(f"closing {name}: {e}")
        if self.pg:
            self.pg.close()


def build_tools():
    B.run(["make", "-s", "-C", HERE], 300)


def install_deps(cfg):
    if cfg.no_install or cfg.smoke:
        return
    r = B.run([os.path.join(HERE, "install-deps.sh")], 1200, check=False,
              stdout=None, stderr=None)
    if r.returncode != 0:
        B.log("install-deps failed; systems whose packages are missing are skipped")


def main(argv):
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # A background job of a non-interactive shell starts with SIGINT ignored;
    # take it back so that Ctrl-C / kill -INT always tears down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    B.KEEP_DIRS = cfg.keep
    install_deps(cfg)
    build_tools()
    parent = cfg.workdir or "/tmp"
    workdir = B.register_dir(tempfile.mkdtemp(prefix="jifen-bench-", dir=parent))
    os.chmod(workdir, 0o755)
    os.makedirs(cfg.cache, exist_ok=True)
    # Run one fixed copy of the jifen binary: a rebuild during a long run must
    # not mix two versions in one table.
    if os.access(cfg.jifen_bin, os.X_OK):
        pinned = os.path.join(workdir, "jifen-bin")
        shutil.copy2(cfg.jifen_bin, pinned)
        cfg.jifen_bin_source, cfg.jifen_bin = cfg.jifen_bin, pinned
    started = time.time()
    bench = Bench(cfg, workdir)
    rc = 0
    info, fsync, fsync_end = {}, None, None
    try:
        info = machine_info(cfg, workdir)
        if info["loadavg_start"] > 0.7:
            B.log(f"WARNING: load average {info['loadavg_start']:.2f} before the run: other "
                  "processes share the CPUs and will depress and scatter the numbers")
        B.log("measuring fsync latency")
        fsync = fsync_latency(cfg, workdir)
        bench.make_systems()
        bench.run_all()
        fsync_end = fsync_latency(cfg, workdir)
        info["loadavg_end"] = B.loadavg()
        info["steal_pct"] = B.steal_pct(info["cpu_ticks_start"], B.cpu_ticks())
    except KeyboardInterrupt:
        B.log("interrupted; tearing down")
        rc = 130
    except B.BenchError as e:
        bench.fail("bench", e)
        rc = 1
    finally:
        bench.close()
        B.teardown()
    if rc == 130:
        return rc
    if rc == 1 and not bench.results:
        return rc
    doc = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "elapsed_s": round(time.time() - started, 1), "smoke": cfg.smoke,
           "machine": info, "fsync": fsync, "fsync_end": fsync_end,
           "versions": bench.versions,
           "config": {k: getattr(cfg, k) for k in ("runs", "duration", "warmup", "members",
                                                   "w1_conns", "conns", "lots", "batch_size",
                                                   "batch_conns", "systems", "workloads")},
           "results": bench.results, "errors": bench.errors}
    doc["targets"] = report.targets(doc)
    os.makedirs(os.path.dirname(cfg.out), exist_ok=True)
    with open(cfg.out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(cfg.out + ".tmp", cfg.out)
    print(report.table(doc))
    print(f"results: {os.path.relpath(cfg.out, os.getcwd())}")
    if bench.errors:
        print(f"{len(bench.errors)} error(s):")
        for e in bench.errors:
            print("  " + e)
        if cfg.strict:
            return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
