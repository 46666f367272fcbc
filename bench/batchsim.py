#!/usr/bin/env python3
"""What a durable earn's writes cost by how they are grouped into commits
(bench/batchsim.c; docs/PERFORMANCE.md, "Next" item 1).

`make bench-batchsim`.  Uses the benchmark's seeded base database (bench/.cache,
built through the API by the same code as `make bench` when it is missing or
the jifen binary changed), copies it before each run, and runs batchsim for
every mode and batch size --runs times, printing the median of each figure:
CPU and wall time per earn and WAL frames per earn.  Results also go to
bench/results/batchsim.json.

  python3 bench/batchsim.py [--members 100000] [--count 100000] [--runs 3]
                            [--batches 25,1000,10000] [--modes rows,rows-sorted,...]

Modes (bench/batchsim.c says what each writes): rows, rows-sorted, journal,
journal-keys, rows-multi (the same rows in multi-row statements), and
rows-without-ids, -postings, -responses, -all (fewer rows per earn).
  python3 bench/batchsim.py --smoke   seconds: 200 members built apart, 100 earns per mode, one
                                      run; fails unless every mode wrote WAL frames and each
                                      rows-without mode fewer than rows (`make test`)
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as B  # noqa: E402
import systems as S  # noqa: E402

MODES = ["rows", "rows-sorted", "journal", "journal-keys", "rows-multi", "rows-without-ids",
         "rows-without-postings", "rows-without-responses", "rows-without-all"]
FIGURES = ["cpu_us_per_earn", "wall_us_per_earn", "wal_frames_per_earn"]


class Cfg:
    def __init__(self, a):
        self.members = a.members
        self.jifen_bin = a.jifen_bin
        self.jifen_threads = None
        self.cache = os.path.join(S.HERE, ".cache")
        self.cache_enabled = not a.smoke
        self.seed_timeout = 3600
        self.lots = 0


def run_one(exe, base_db, workdir, mode, batch, count, seed):
    db = os.path.join(workdir, "sim.db")
    B.copy_db(base_db, db)
    out = B.run([exe, "--db", db, "--mode", mode, "--batch", batch, "--count", count,
                 "--seed", seed], 3600)
    return json.loads(out.stdout)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batches", default="25,1000,10000")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jifen-bin", default=os.path.join(S.ROOT, "build", "jifen"))
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--out", default=os.path.join(S.HERE, "results", "batchsim.json"))
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        a.members, a.count, a.runs, a.batches, a.out = 200, 100, 1, "25", None
    modes = a.modes.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    if (any(m not in MODES for m in modes) or not all(1 <= b <= 100_000 for b in batches)
            or not (1 <= a.runs <= 15 and 1 <= a.count <= 10_000_000)):
        ap.error("a mode or a size is out of range")
    B.run(["make", "-s", "-C", S.HERE], 300)
    workdir = B.register_dir(tempfile.mkdtemp(prefix="jifen-batchsim-", dir=a.workdir))
    jf = S.Jifen(Cfg(a), workdir)
    ok, why = jf.available()
    if not ok:
        print(f"bench-batchsim: {why}")
        return 1
    try:
        rows = measure(jf, a, modes, batches, workdir)
    finally:
        B.teardown()
    if a.smoke:
        empty = [r["mode"] for r in rows if not r["wal_frames_per_earn"] > 0]
        if empty:
            print(f"bench-batchsim smoke: no WAL frames written in {', '.join(empty)}")
            return 1
        # The same earns with fewer rows must dirty fewer pages: a mode that
        # still wrote what it claims to leave out would not.
        frames = {r["mode"]: r["wal_frames_per_earn"] for r in rows}
        fat = [m for m in frames if m.startswith("rows-without-") and "rows" in frames
               and not frames[m] < frames["rows"]]
        if fat:
            print(f"bench-batchsim smoke: no fewer WAL frames than rows in {', '.join(fat)}")
            return 1
        return 0
    with open(a.out, "w") as f:
        json.dump({"jifen": S.file_sha(a.jifen_bin), "rows": rows}, f, indent=1)
    return 0


def measure(jf, a, modes, batches, workdir):
    jf.setup()
    base_db = os.path.join(jf.base, "base.db")
    exe = os.path.join(S.BIN, "batchsim")
    rows = []
    print(f"{'mode':<24}{'batch':>7}{'CPU us/earn':>13}{'wall us/earn':>14}{'WAL frames/earn':>17}")
    for mode in modes:
        for batch in batches:
            runs = [run_one(exe, base_db, workdir, mode, batch, a.count, seed)
                    for seed in range(1, a.runs + 1)]
            row = {"mode": mode, "batch": batch, "count": a.count, "runs": runs,
                   "members": runs[0]["members"]}
            row.update({f: statistics.median(r[f] for r in runs) for f in FIGURES})
            rows.append(row)
            print(f"{mode:<24}{batch:>7}{row['cpu_us_per_earn']:>13.2f}"
                  f"{row['wall_us_per_earn']:>14.2f}{row['wal_frames_per_earn']:>17.3f}",
                  flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
