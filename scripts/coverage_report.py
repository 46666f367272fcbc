#!/usr/bin/env python3
"""The report of `make coverage`: gcovr over a build made with JIFEN_COVERAGE=ON.

Usage: scripts/coverage_report.py BUILD_DIR

It runs gcovr (Debian's, 5.2) once over the .gcda files the tests left in BUILD_DIR, for the
sources of src/core, src/store and src/server, and writes into BUILD_DIR/coverage/:
index.html (per file, with each line's and branch's counts), coverage.json (gcovr's full
JSON, line by line) and summary.json (its per-file totals).  It then prints, from those:

- a table of every file's line and branch coverage, each directory's total and the total
  of the ledger core (LEDGER_CORE below: the files every write goes through);
- how many lines of src/core and src/store make an allocating or I/O call, and how many
  of them ran (call_sites);
- the failure sites of src/core and src/store that the run never took (see failure_sites),
  also written to BUILD_DIR/coverage/unreached-failures.txt.

gcovr 5.2 prints lines or branches per file, not both, and has no directory totals (the
HTML gained them in 6.0); hence the table here.  Branches are gcov's: each outcome of each
condition, including the short-circuit parts of && and || and the failing side of every
assertion, so 100 % is not reachable without tests that break invariants on purpose.
Standard library only.
"""

import json
import os
import re
import subprocess
import sys

DIRS = ("src/core", "src/store", "src/server")

# The files a ledger write goes through: the operations, lots, the transaction and its
# chain, holds, reversals, refunds, expiry, batches, the writer, and the store under it.
LEDGER_CORE = (
    "src/core/ledger.c", "src/core/lots.c", "src/core/tx.c", "src/core/holds.c",
    "src/core/reverse.c", "src/core/refunds.c", "src/core/expiry.c", "src/core/batch.c",
    "src/core/engine.c", "src/store/db.c", "src/store/walbuf.c",
)

# A failure result: what the library answers when memory or I/O failed.
FAILURE_RESULT = re.compile(r"\bJF_ERR_(NOMEM|IO)\b")
# A call that allocates or does I/O and reports failure by its return value.
FALLIBLE_CALL = re.compile(
    r"\b(malloc|calloc|realloc|strdup|strndup|open_memstream|json_(object|array|string\w*|"
    r"integer|real|loads\w*|dumps|copy|deep_copy|pack|object_set\w*|array_append\w*)|"
    r"jf_json_(dump|text|set|time_value)|jf_jt_take|jf_db_(query|open|run|exec|int|step)|"
    r"jf_\w+_new|sqlite3_(prepare\w*|step|exec|open\w*|bind_\w+|column_(text|blob)|"
    r"wal_checkpoint\w*|create_function\w*|file_control)|fopen|open|read|write|fsync|"
    r"fdatasync)\s*\(")
# A test of a result for failure: NULL, false, or a SQLite code other than a row or done.
FAILURE_TEST = re.compile(
    r"==\s*NULL|\(\s*!\s*[A-Za-z_][\w.>-]*\s*\)|!\s*[A-Za-z_][\w.>-]*\s*(\|\||&&)|"
    r"!=\s*SQLITE_(OK|ROW|DONE)\b|\?\s*[^:]*:\s*(NULL|false)\b")
FAILURE_EXIT = re.compile(r"^\s*(goto \w+|return( NULL| false| -1)?|break)\s*;")


def run_gcovr(build_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    args = ["gcovr", "--root", ".", "-j", str(os.cpu_count() or 1)]
    for d in DIRS:
        args += ["--filter", d + "/"]
    args += ["--json", os.path.join(out_dir, "coverage.json"),
             "--json-summary", os.path.join(out_dir, "summary.json"),
             "--html-details", os.path.join(out_dir, "index.html"),
             "--html-title", "jifen coverage", build_dir]
    subprocess.run(args, check=True)


def pct(covered, total):
    return "%5.1f%%" % (100.0 * covered / total) if total else "    - "


def row(name, lc, lt, bc, bt):
    return "%-28s %6d/%-6d %s   %6d/%-6d %s" % (name, lc, lt, pct(lc, lt), bc, bt, pct(bc, bt))


def add(acc, f):
    for k in ("line_covered", "line_total", "branch_covered", "branch_total"):
        acc[k] = acc.get(k, 0) + f[k]


def print_table(summary):
    print("%-28s %-20s   %-20s" % ("file", "lines", "branches"))
    core = "ledger core (%d files)" % len(LEDGER_CORE)
    groups = {d + "/": {} for d in DIRS}
    groups[core] = {}
    groups["total"] = {}
    for f in sorted(summary["files"], key=lambda f: f["filename"]):
        name = f["filename"]
        print(row(name, f["line_covered"], f["line_total"], f["branch_covered"],
                  f["branch_total"]))
        add(groups[os.path.dirname(name) + "/"], f)
        if name in LEDGER_CORE:
            add(groups[core], f)
        add(groups["total"], f)
    print()
    for name, g in groups.items():
        print(row(name, g.get("line_covered", 0), g.get("line_total", 0),
                  g.get("branch_covered", 0), g.get("branch_total", 0)))


def core_lines(coverage):
    """Yields (file, its text as lines, gcovr's line record) for each code line of
    src/core and src/store."""
    for f in coverage["files"]:
        name = f["file"]
        if not name.startswith(("src/core/", "src/store/")):
            continue
        with open(name, encoding="utf-8") as src:
            text = src.read().split("\n")
        for ln in f["lines"]:
            if not ln["gcovr/noncode"]:
                yield name, text, ln


def failure_sites(coverage):
    """Yields (file, line, reached, text) for each failure site of src/core and src/store.

    A failure site is a code line that names a failure result (JF_ERR_NOMEM, JF_ERR_IO), or
    tests for failure (NULL, false, a SQLite code) the result of an allocating or I/O call
    made on it or on one of the three lines before, or leaves (return, goto, break) right
    after such a test.  It is reached when the line ran and every branch gcov recorded on it
    went both ways.  This is what a grep finds, not a proof: a NULL test may be a lookup's
    "not there", and a failure passed up as `err` without naming it is not counted.
    """
    for name, text, ln in core_lines(coverage):
        n = ln["line_number"]
        t = text[n - 1]
        before = text[max(0, n - 4):n]
        tests_call = FAILURE_TEST.search(t) and any(FALLIBLE_CALL.search(b) for b in before)
        exits = FAILURE_EXIT.match(t) and n > 1 and FAILURE_TEST.search(text[n - 2]) and \
            any(FALLIBLE_CALL.search(b) for b in text[max(0, n - 5):n - 1])
        if not (FAILURE_RESULT.search(t) or tests_call or exits):
            continue
        reached = ln["count"] > 0 and all(b["count"] > 0 for b in ln["branches"])
        yield name, n, reached, t.strip()


def call_sites(coverage):
    """Yields (file, line, ran) for each line of src/core and src/store that makes an
    allocating or I/O call (FALLIBLE_CALL).  Under the fault loops (unit_faults) a call
    that ran inside an operation under test was made to fail at least once: they fail
    the first call, then the second, and so on, until the operation runs through."""
    for name, text, ln in core_lines(coverage):
        if FALLIBLE_CALL.search(text[ln["line_number"] - 1]):
            yield name, ln["line_number"], ln["count"] > 0


def print_calls(coverage):
    calls = list(call_sites(coverage))
    core = [c for c in calls if c[0] in LEDGER_CORE]
    print()
    print("allocating or I/O call sites (src/core, src/store): %d, %d ran"
          % (len(calls), sum(c[2] for c in calls)))
    print("  of which in the ledger core: %d, %d ran" % (len(core), sum(c[2] for c in core)))


def print_failures(coverage, path):
    sites = list(failure_sites(coverage))
    missed = [s for s in sites if not s[2]]
    core = [s for s in sites if s[0] in LEDGER_CORE]
    core_missed = [s for s in core if not s[2]]
    with open(path, "w", encoding="utf-8") as out:
        for name, n, _, t in missed:
            out.write("%s:%d: %s\n" % (name, n, t))
    print()
    print("failure sites (src/core, src/store): %d, %d reached, %d not (%s)"
          % (len(sites), len(sites) - len(missed), len(missed), path))
    print("  of which in the ledger core: %d, %d reached, %d not"
          % (len(core), len(core) - len(core_missed), len(core_missed)))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/coverage_report.py BUILD_DIR")
    build_dir = sys.argv[1]
    out_dir = os.path.join(build_dir, "coverage")
    run_gcovr(build_dir, out_dir)
    with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    with open(os.path.join(out_dir, "coverage.json"), encoding="utf-8") as f:
        coverage = json.load(f)
    print_table(summary)
    print_calls(coverage)
    print_failures(coverage, os.path.join(out_dir, "unreached-failures.txt"))
    print("\nHTML report: %s" % os.path.join(out_dir, "index.html"))


if __name__ == "__main__":
    main()
