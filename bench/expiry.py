"""W6: expire --lots lots in jifen while W1 earns run at half of W1's maximum
(or at --w6-rate earns/s, the same in every run).

The lots are made once through the API (earns of 1 point with an explicit
expires_at one day after the real clock, 1,000 per POST /v1/batch when served) on a copy of the base database,
which is then cached like the base.  Each run starts jifen with
--test-clock on a fresh copy, moves the clock two days on, measures W1
(open loop at half of W1's maximum on that database, measured first in a
closed loop with the same connections, and never above half of jifen's best
W1 cell) for --duration without expiry,
then starts the same load again and calls POST /v1/expiry/run until it
reports no more lots; the load generator's measurement window is closed
(SIGUSR1) when expiry is done, so its latencies are those under expiry.
"""

import datetime
import json
import os
import shutil
import signal
import subprocess
import time

import benchlib as B
import report
import systems as S

EXPIRY_CALLS_MAX = 10000


def iso(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def build_base(jf, cfg):
    cdir = jf.cache_dir("w6")
    if cfg.cache_enabled and os.path.exists(os.path.join(cdir, "meta.json")):
        B.log(f"W6: using cached database with {cfg.lots:,} lots {cdir}")
        return cdir
    build = os.path.join(jf.dir, "w6-build")
    shutil.rmtree(build, ignore_errors=True)
    os.makedirs(build)
    db = os.path.join(build, "base.db")
    B.copy_db(os.path.join(jf.base, "base.db"), db)
    # Seeded on the real clock: jifen's test clock stands still, and a million
    # journal rows stamped with one millisecond collide in their time-ordered ids.
    jf.start(db)
    try:
        now = datetime.datetime.now(datetime.timezone.utc)
        clock = {"now": iso(now)}
        expires = iso(now + datetime.timedelta(days=1))
        t0 = time.monotonic()
        ok = jf.earn_each(cfg.lots, 1, "lot", jf.members_file, expires_at=expires)
        if ok != cfg.lots:
            raise B.BenchError(f"W6 seeding made {ok} of {cfg.lots} lots")
        B.log(f"W6: made {cfg.lots:,} lots in {time.monotonic() - t0:.1f}s")
    finally:
        jf.stop()
    with open(os.path.join(build, "meta.json"), "w") as f:
        json.dump({"clock": clock["now"], "expires_at": expires, "lots": cfg.lots}, f)
    if not cfg.cache_enabled:
        return build
    tmp = cdir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(build, tmp)
    os.replace(tmp, cdir)
    shutil.rmtree(build, ignore_errors=True)
    return cdir


def loadgen_argv(jf, cfg, rate, duration, prefix):
    return [S.LOADGEN, "--port", str(jf.port), "--api-key", jf.key, "--workload", "earn",
            "--members", jf.members_file, "--conns", str(cfg.conns), "--rate", str(rate),
            "--duration", str(duration), "--warmup", "1", "--prefix", prefix,
            "--cpu-pid", str(jf.proc.pid)]


def expire_all(jf, cfg):
    """Calls POST /v1/expiry/run until no lot is left; returns (lots, seconds, calls)."""
    total, calls = 0, 0
    t0 = time.monotonic()
    deadline = t0 + cfg.w6_max_s
    while calls < EXPIRY_CALLS_MAX and time.monotonic() < deadline:
        status, body = jf.http("POST", "/v1/expiry/run", {}, timeout=cfg.w6_max_s,
                               idem=f"w6-{time.time_ns()}")
        calls += 1
        if status != 200:
            raise B.BenchError(f"POST /v1/expiry/run answered {status}: {body}")
        total += body.get("lots", 0)
        if body.get("lots", 0) == 0 or total >= cfg.lots:
            break
    return total, time.monotonic() - t0, calls


def one_run(jf, cfg, base, rate, i):
    with open(os.path.join(base, "meta.json")) as f:
        meta = json.load(f)
    db = os.path.join(jf.dir, "w6.db")
    B.copy_db(os.path.join(base, "base.db"), db)
    jf.start(db, test_clock=True)
    try:
        status, clock = jf.http("GET", "/v1/test/clock")
        target = max(parse_iso(meta["expires_at"]) + datetime.timedelta(days=1),
                     parse_iso(clock["now"]) + datetime.timedelta(seconds=1))
        status, body = jf.http("PUT", "/v1/test/clock", {"now": iso(target)})
        if status != 200:
            raise B.BenchError(f"PUT /v1/test/clock answered {status}: {body}")
        # W1's maximum on this database, closed loop with the foreground's
        # connections: half of it is the foreground's rate (never above half
        # of the best W1 cell).  The best cell ran on the smaller base
        # database, often with more connections; half of it overloaded the
        # foreground here before the expiry began (p99 0.86 s "before").
        # --w6-rate fixes the foreground instead: runs on a VM whose speed
        # moves between minutes (that maximum moved 2x between runs) then
        # expire beside the same load.
        top = {"throughput": None}
        if not cfg.w6_rate:
            top = B.run_json(loadgen_argv(jf, cfg, 0, cfg.duration, f"w6m-{i}-{time.time_ns()}"),
                             cfg.duration + 120)
            rate = max(1, min(rate, round(top["throughput"] / 2)))
        t0 = B.cpu_ticks()
        before = B.run_json(loadgen_argv(jf, cfg, rate, cfg.duration, f"w6b-{i}-{time.time_ns()}"),
                            cfg.duration + 120)
        before["steal_pct"] = B.steal_pct(t0, B.cpu_ticks())
        t0 = B.cpu_ticks()
        p = subprocess.Popen(loadgen_argv(jf, cfg, rate, cfg.w6_max_s, f"w6d-{i}-{time.time_ns()}"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.2)  # past the load generator's 1 s warmup
            wal0 = jf.wal_counters()
            lots, secs, calls = expire_all(jf, cfg)
            wal = B.wal_delta(wal0, jf.wal_counters())
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR1)
            out, err = p.communicate(timeout=60)
        during = json.loads(out)
        during["steal_pct"] = B.steal_pct(t0, B.cpu_ticks())
        during["wal"] = wal
    finally:
        jf.stop()
    return {"lots_expired": lots, "expire_s": secs, "calls": calls, "before": before,
            "during": during, "w1_max": top["throughput"], "rate": rate}


def run_w6(jf, cfg, best_w1):
    lots = cfg.lots
    if not best_w1 and not cfg.w6_rate:
        return {"label": "W6 expire", "workload": "W6", "system": "jifen",
                "na": "needs W1 results for jifen (half of its max rate)"}
    cfg.w6_max_s = max(60, min(1800, lots / 1000))
    base = build_base(jf, cfg)
    cap = cfg.w6_rate or max(1, round(best_w1["throughput"] / 2))
    runs = []
    for i in range(cfg.runs):
        r = one_run(jf, cfg, base, cap, i)
        B.log(f"  W6 run {i}: {r['lots_expired']:,} lots in {r['expire_s']:.2f}s "
              f"({r['calls']} calls); "
              + (f"W1 max here {r['w1_max']:,.0f}/s, " if r["w1_max"] else "fixed ")
              + f"foreground at "
              f"{r['rate']:,}/s: p99 {r['before']['lat_us']['p99'] / 1e3:.2f} ms -> "
              f"{r['during']['lat_us']['p99'] / 1e3:.2f} ms")
        runs.append(r)
    med = B.median
    rate = round(med([r["rate"] for r in runs]))
    during = [r["during"] for r in runs]
    entry = report.summarize(f"W6 expire {lots:,}", {"id": "W6", "kind": "expiry"}, "jifen",
                             cfg.conns, rate, during)
    expire_s = med([r["expire_s"] for r in runs])
    lots_expired = med([r["lots_expired"] for r in runs])
    p99_before = med([r["before"]["lat_us"]["p99"] for r in runs]) / 1e3
    p99_during = entry["p99_ms"]
    # No earn answered inside the expiry's window (a smoke run's 500 lots expire
    # before the load generator's warmup ends): there is no ratio to judge.
    answered = med([r["during"]["lat_us"]["n"] for r in runs])
    p99_ratio = p99_during / p99_before if p99_before and answered else None
    entry.update({
        "lots": lots, "lots_expired": int(lots_expired), "expire_s": expire_s,
        "expire_lots_per_s": lots_expired / expire_s if expire_s else None,
        "p99_before_ms": p99_before, "p99_ratio": p99_ratio,
        "throughput_foreground": entry["throughput"],
        "before_runs": [r["before"] for r in runs],
        "expiry_runs": [{k: r[k] for k in ("lots_expired", "expire_s", "calls", "w1_max", "rate")}
                        for r in runs],
        "w1_max_here": None if cfg.w6_rate else med([r["w1_max"] for r in runs]),
        "rate_cap": cap,
    })
    # The table shows expiry's rate in the ops/s column; latencies are W1's under expiry.
    entry["throughput"] = entry["expire_lots_per_s"]
    how = ("fixed by --w6-rate" if cfg.w6_rate else
           f"half of {entry['w1_max_here']:,.0f}/s on this database")
    entry["note"] = (f"{int(lots_expired):,} lots in {expire_s:.2f} s; foreground W1 at "
                     f"{rate:,}/s ({how}): "
                     f"p99 {p99_before:.2f} -> "
                     + (f"{p99_during:.2f} ms ({p99_ratio:.2f}x)" if p99_ratio is not None
                        else "none answered during the expiry")
                     + "; ops/s column = lots expired per second")
    entry["rate"] = 0  # not an offered-rate row in the notes
    return entry
