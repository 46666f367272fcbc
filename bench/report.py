"""Medians over runs, the printed table and the issue-3 targets for run.py."""

import benchlib as B

SYSTEM_ORDER = ["jifen", "pg-func", "pg-txn", "sqlite", "redis"]


def summarize(label, wl, name, conns, rate, runs):
    """One table entry: the median of each figure over the runs (never a single run)."""
    def med(path):
        vals = []
        for r in runs:
            v = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            vals.append(v)
        return B.median(vals)

    entry = {"label": label, "workload": wl["id"], "kind": wl["kind"], "system": name,
             "conns": conns, "rate": rate, "n_runs": len(runs),
             "throughput": med(["throughput"]),
             "throughput_runs": [round(r["throughput"], 1) for r in runs],
             "p50_ms": med(["lat_us", "p50"]) / 1e3, "p99_ms": med(["lat_us", "p99"]) / 1e3,
             "p999_ms": med(["lat_us", "p999"]) / 1e3, "max_ms": med(["lat_us", "max"]) / 1e3,
             "cpu_us_per_op": med(["cpu_us_per_op"]),
             "ok": sum(r.get("ok") or 0 for r in runs),
             "refused": sum(r.get("refused") or 0 for r in runs),
             "replayed": sum(r.get("replayed") or 0 for r in runs),
             "errors": sum((r.get("errors") or 0) + (r.get("op_failed") or 0) for r in runs),
             "unsent": sum(r.get("unsent") or 0 for r in runs),
             "steal_pct": med(["steal_pct"]),
             "steal_max_pct": max((r["steal_pct"] for r in runs
                                   if r.get("steal_pct") is not None), default=None),
             "runs": runs}
    if any(r.get("wal") for r in runs):
        entry["wal"] = {k: med(["wal", k]) for k in B.WAL_METRICS.values()}
    if wl.get("frozen"):
        entry["note"] = (f"every {'operation' if wl['kind'] == 'batch' else 'earn'} refused by "
                         "the writer (member_frozen), nothing written: the HTTP path, queue "
                         "and commit loop alone")
    if wl["kind"] == "read":
        entry["read_p99_ms"] = med(["read_lat_us", "p99"]) / 1e3
        entry["write_p99_ms"] = med(["write_lat_us", "p99"]) / 1e3
    return entry


def fmt_cpu(v):
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_num(v):
    return "-" if v is None else f"{v:,.0f}"


# Stolen CPU time below this share of a cell's runs is not worth a note.
STEAL_NOTE_PCT = 2.0


def fmt_steal(e):
    """", steal N% (max M%)" when the hypervisor took CPU time during the
    cell's runs; empty otherwise."""
    hi = e.get("steal_max_pct")
    if hi is None or hi < STEAL_NOTE_PCT:
        return ""
    return f", steal {e['steal_pct']:.0f}% (max {hi:.0f}%)"


def fmt_wal(e):
    """"WAL restarts N (M forced, writer X ms)" for a jifen cell whose runs
    restarted the WAL (medians; W6: during the expiry, else over the run with
    its warmup); empty otherwise."""
    w = e.get("wal")
    if not w or not w.get("restarts"):
        return ""
    return (f"WAL restarts {w['restarts']:g} ({w['forced']:g} forced, writer "
            f"{w['restart_s'] * 1e3:.0f} ms)")


def notes(e):
    out = []
    if e.get("rate"):
        out.append(f"offered {e['rate']:,.0f}/s")
    if e.get("refused"):
        out.append(f"refused {e['refused']}")
    if e.get("replayed"):
        out.append(f"replayed {e['replayed']}")
    if e.get("errors"):
        out.append(f"ERRORS {e['errors']}")
    if e.get("unsent"):
        out.append(f"unsent {e['unsent']}")
    if "read_p99_ms" in e:
        out.append(f"read p99 {fmt_ms(e['read_p99_ms'])} / write p99 {fmt_ms(e['write_p99_ms'])}")
    if e.get("note"):
        out.append(e["note"])
    wal = fmt_wal(e)
    if wal:
        out.append(wal)
    steal = fmt_steal(e)
    if steal:
        out.append(steal[2:])
    if e.get("discarded_runs"):
        out.append(f"{len(e['discarded_runs'])} run(s) over --steal-max measured again")
    return ", ".join(out)


def table(doc):
    res = doc["results"]
    m = doc.get("machine", {})
    f = doc.get("fsync") or {}
    lines = []
    lines.append(f"machine: {m.get('cpus')} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib')} GiB, "
                 f"kernel {m.get('kernel')}, fs {m.get('workdir_fs')}; jifen "
                 f"{m.get('jifen_commit')}{' (dirty tree)' if m.get('jifen_tree_dirty') else ''}"
                 f" bin {m.get('jifen_bin_sha256', '?')[:12]};"
                 f" load avg {m.get('loadavg_start')} -> {m.get('loadavg_end')}")
    if m.get("steal_pct") is not None:
        lines.append(f"CPU time stolen by the hypervisor over the whole run: {m['steal_pct']:.1f}%"
                     f" (a cell's share is in its notes from {STEAL_NOTE_PCT:.0f}%; cells"
                     " measured while it was high are slower for reasons not their system's)")
    if f:
        fe = doc.get("fsync_end") or {}
        lines.append(
            f"fsync latency (8 KiB, same filesystem): fdatasync median "
            f"{f['fdatasync']['median_us']:.0f} us (p99 {f['fdatasync']['p99_us']:.0f} us), "
            f"fsync {f['fsync']['median_us']:.0f} us, append+fdatasync "
            f"{f['append_fdatasync']['median_us']:.0f} us"
            + (f"; at the end: fdatasync {fe['fdatasync']['median_us']:.0f} us" if fe else ""))
        for name, doc_f in (("start", f), ("end", fe)):
            b = doc_f.get("fdatasync_beside_random_writes")
            if b:
                w = doc_f.get("beside_random_writes", {})
                lines.append(
                    f"fdatasync beside {w.get('reached_mbps', 0):.0f} MB/s of random 4 KiB writes"
                    f" ({name}, {b['n']:,} flushes): median {b['median_us']:.0f} us, p99 "
                    f"{b['p99_us']:.0f} us, p99.9 {b['p999_us']:.0f} us, max "
                    f"{b['max_us'] / 1000:.1f} ms")
    v = doc.get("versions") or {}
    lines.append("durable everywhere: fsync before ack.  versions: "
                 + ", ".join(f"{k} {x}" for k, x in v.items() if x))
    c = doc.get("config", {})
    lines.append(f"runs {c.get('runs')} (median), {c.get('duration')} s each after "
                 f"{c.get('warmup')} s warmup, {c.get('members'):,} members; CPU/op = server "
                 "process CPU time / ops")
    hdr = (f"{'workload':<18} {'system':<8} {'ops/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
           f"{'p99.9 ms':>8} {'CPU us/op':>9} {'jifen x':>8}  notes")
    lines.append("")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    labels = []
    for e in res:
        if e["label"] not in labels and e["label"] != "all":
            labels.append(e["label"])
    for label in labels:
        rows = [e for e in res if e["label"] == label]
        rows.sort(key=lambda e: SYSTEM_ORDER.index(e["system"]))
        jf = next((e for e in rows if e["system"] == "jifen" and e.get("throughput")), None)
        first = True
        for e in rows:
            name = label if first else ""
            first = False
            if "na" in e:
                lines.append(f"{name:<18} {e['system']:<8} {'n/a':>10}  {e['na']}")
                continue
            ratio = "-"
            if jf and e["system"] != "jifen" and e.get("throughput"):
                ratio = f"{jf['throughput'] / e['throughput']:.2f}x"
            lines.append(f"{name:<18} {e['system']:<8} {fmt_num(e['throughput']):>10} "
                         f"{fmt_ms(e['p50_ms']):>7} {fmt_ms(e['p99_ms']):>7} "
                         f"{fmt_ms(e['p999_ms']):>8} {fmt_cpu(e['cpu_us_per_op']):>9} "
                         f"{ratio:>8}  {notes(e)}")
    skipped = [e for e in res if e["label"] == "all"]
    for e in skipped:
        lines.append(f"{'(all)':<18} {e['system']:<8} {'n/a':>10}  {e['na']}")
    t = doc.get("targets") or []
    if t:
        lines.append("")
        lines.append("issue 3 targets (this run):")
        for x in t:
            lines.append(f"  {x['status']:<5} {x['name']:<48} {x['value']}")
    return "\n".join(lines)


def best(res, system, workload="W1"):
    vals = [e for e in res if e.get("workload") == workload and e["system"] == system
            and e.get("throughput")]
    return max(vals, key=lambda e: e["throughput"]) if vals else None


def cell_of(res, workload, conns=None):
    """jifen's entry for a workload (at those connections), or None."""
    return next((e for e in res if e.get("workload") == workload and e["system"] == "jifen"
                 and conns in (None, e.get("conns"))), None)


def w2_ratio(res, w2, jw1):
    """W2 against W1 at the same connections: the median of the ratios round by
    round to the W1 runs made beside W2's (W1b), when there are as many of
    them, else the ratio to the W1 row's cell (or to W1's best), measured
    minutes apart.  Returns (ratio, text)."""
    same = cell_of(res, "W1", w2["conns"]) or jw1
    apart = w2["throughput"] / same["throughput"]
    beside = cell_of(res, "W1b", w2["conns"])
    runs, base = w2.get("throughput_runs") or [], (beside or {}).get("throughput_runs") or []
    if not runs or len(runs) != len(base) or not all(base):
        return apart, f"{apart:.2f}x"
    each = [a / b for a, b in zip(runs, base)]
    r = B.median(each)
    return r, (f"{r:.2f}x round by round beside W1 ("
               + ", ".join(f"{x:.2f}" for x in each)
               + f"); against the W1 row's cell {apart:.2f}x")


def targets(doc):
    res = doc["results"]
    out = []

    def add(name, value, ok):
        out.append({"name": name, "value": value,
                    "status": "n/a" if ok is None else ("ok" if ok else "MISS")})

    jw1 = best(res, "jifen")
    floor = best(res, "jifen", "W1f")
    for base, want in (("pg-func", 4), ("sqlite", 8)):
        b = best(res, base)
        if jw1 and b:
            r = jw1["throughput"] / b["throughput"]
            add(f"W1 max >= {want}x {base} max", f"{r:.2f}x ({jw1['throughput']:,.0f} vs "
                f"{b['throughput']:,.0f} ops/s)" + floor_ratio(floor, b, want), r >= want)
        else:
            add(f"W1 max >= {want}x {base} max", "not measured", None)
    w2 = best(res, "jifen", "W2")
    if w2 and jw1:
        r, text = w2_ratio(res, w2, jw1)
        add("W2 hot >= 0.9x W1 (same connections)", text, r >= 0.9)
    else:
        add("W2 hot >= 0.9x W1 (same connections)", "not measured", None)
    w5 = cell_of(res, "W5")
    w5f = best(res, "jifen", "W5f")
    if w5 and w5.get("throughput"):
        add("W5 batch >= 500,000 ops/s", f"{w5['throughput']:,.0f} ops/s"
            + floor_ops(w5f, 500000), w5["throughput"] >= 500000)
    else:
        add("W5 batch >= 500,000 ops/s", (w5 or {}).get("na", "not measured"), None)
    w1o = cell_of(res, "W1o")
    if w1o and w1o.get("p99_ms") is not None:
        add("p99 <= 2 ms at half of W1 max", f"{w1o['p99_ms']:.2f} ms at {w1o['rate']:,}/s"
            + floor_p99(res, 2), w1o["p99_ms"] <= 2)
    else:
        add("p99 <= 2 ms at half of W1 max", "not measured", None)
    w6 = next((e for e in res if e.get("workload") == "W6"), None)
    if w6 and w6.get("expire_s") is not None:
        add("W6 expiry <= 10 s", f"{w6['lots_expired']:,} lots in {w6['expire_s']:.1f} s",
            w6["expire_s"] <= 10 and w6["lots_expired"] >= w6["lots"])
        ratio = w6.get("p99_ratio")
        add("W6 W1 p99 at most doubles",
            "no earn answered during the expiry" if ratio is None else f"{ratio:.2f}x",
            None if ratio is None else ratio <= 2)
    else:
        add("W6 expiry <= 10 s", (w6 or {}).get("na", "not measured"), None)
    if jw1 and jw1.get("cpu_us_per_op") is not None:
        add("CPU <= 20 us per durable earn", f"{jw1['cpu_us_per_op']:.1f} us at W1 c="
            f"{jw1['conns']}" + floor_cpu(res, 20), jw1["cpu_us_per_op"] <= 20)
    return out


# The floor (W1f: earns the writer refuses before writing) bounds what any
# store behind jifen's HTTP path could reach in the same run: a target the
# floor itself misses is out of reach whatever the ledger costs.
BEYOND = ": beyond reach of any store behind this HTTP path"


def floor_ratio(floor, base, want):
    """"; the floor N.NNx" (and why it matters) for a W1 ratio target."""
    if not floor:
        return ""
    r = floor["throughput"] / base["throughput"]
    return f"; the floor (W1f) {r:.2f}x" + (BEYOND if r < want else "")


def floor_ops(floor, want):
    """"; the floor N ops/s" for W5's throughput target."""
    if not floor:
        return ""
    tput = floor["throughput"]
    return f"; the floor (W5f) {tput:,.0f} ops/s" + (BEYOND if tput < want else "")


def floor_p99(res, want_ms):
    """"; the floor N ms" for the p99 target: the floor's p99 at W1o's rate (W1fo)."""
    f = cell_of(res, "W1fo")
    if not f or f.get("p99_ms") is None:
        return ""
    return (f"; the floor (W1fo) {f['p99_ms']:.2f} ms at {f['rate']:,}/s"
            + (BEYOND if f["p99_ms"] > want_ms else ""))


def floor_cpu(res, want_us):
    """"; the floor N us" for the CPU target: the floor's least CPU per earn."""
    cpu = [e["cpu_us_per_op"] for e in res if e.get("workload") == "W1f"
           and e["system"] == "jifen" and e.get("cpu_us_per_op") is not None]
    if not cpu:
        return ""
    return f"; the floor (W1f) {min(cpu):.1f} us" + (BEYOND if min(cpu) > want_us else "")
