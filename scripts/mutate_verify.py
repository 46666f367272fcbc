#!/usr/bin/env python3
"""Mutation testing of `jifen verify` (src/core/verify.c): is every check needed by a test?

Usage: scripts/mutate_verify.py [--list] [--quick] [--only REGEX] [--jobs N]

`make mutation` runs it.  Each mutant is verify.c with one change.  The working tree is never
written: the script copies the tree (the files git tracks or would track, as they are in the
working tree) into a scratch copy, build-mut/tree, configures build-mut/build from it once,
and writes each mutant over the scratch copy's src/core/verify.c, putting the original back
after each mutant whatever happens (and at the start of every run).  Only what a stage needs
is built: test_verify first, then the other unit tests and the model test.

The mutants, found in verify.c by the shapes it is written in (no C parser):

- call: a call of a check function (check_*, not check_rows or check_rows_all) deleted: the call expression
  becomes `(0 ? call : JF_OK)`, so that the function stays referenced and the build's
  -Werror=unused-function holds.  Where the call also does something that is not a check
  (check_chain writes the chain head the report shows, check_file says whether the file is
  sound enough to read), that part is kept (CALL_KEEPS below).
- rows: a check_rows or check_rows_all call (one SQL query whose every row is a violation of the invariant it
  names) deleted: the call becomes JF_OK.
- violation: a direct violation() call that names an invariant (the checks that are C, not
  SQL: the hash chain, the file, member_state's entries of no member) deleted: the call
  becomes (void)0.
- cmp: one comparison in a check's SQL made false.  In the string literals of a check_rows
  call (and of a macro of this file it passes as its SQL), each `<>`, `!=`, `<`, `>`, `<=`,
  `>=` and `IS NOT` becomes ` AND 0 AND ` and each `IS NULL` and `IS NOT NULL` becomes
  `AND 0`.  A comparison binds tighter than AND, and AND tighter than OR, so `a <> b`
  turns into `a AND 0 AND b`, which is false whatever a and b are: a disjunct of a violation
  condition drops out, a conjunct makes the whole condition false.  Where the comparison is
  the operand of another, or sits in the SELECT list or a subquery, the mutant changes that
  value instead, and the clean ledgers of the tests usually catch it as a false violation.
  Making a whole WHERE false (appending `AND 0`) is not a separate mutant: it is what `rows`
  already does.  Comparisons with `=` are not mutated: they are the joins, and mostly mean
  "this row's partner".
- cond: a condition of the hash chain's check (I7, C code; CONDITIONS below) made so that it
  never finds what it looks for: a comparison of a stored hash or its length, the gap in the
  sequence, the head's count or hash.

Each mutant is run against unit_verify (tampered databases, one per check; seconds).  One
that survives it is run against every other unit test and the model test (MODEL_OPS=2000),
which check that `jifen verify` is clean after real work: they catch a mutant that reports
a violation where there is none.  A mutant that builds and passes all of them survives.  A
survivor fails the run unless ALLOWLIST names it with the reason the check cannot be caught
(redundant or unreachable); an allowlisted mutant that is killed fails it too, so the list
cannot go stale.  The script refuses to run when it finds fewer sites of a kind than
MIN_SITES, so that a rewrite of verify.c cannot make it test nothing.

--quick: the deletion mutants only (call, rows, violation), and unit_verify only.
--first-stage: every mutant, against unit_verify only.
--only REGEX: the mutants whose names match.  --list: print the mutants and stop.
--jobs N: ctest's -j for the second stage (default $CTEST_JOBS or 2).

Prints one line a mutant (killed by which test, or survived), the totals and the time; the
whole output of each test run is in build-mut/logs/.  Exit status 0 when every mutant is
killed or allowlisted.  Standard library only.
"""

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "src/core/verify.c"
MUT_DIR = os.path.join(ROOT, "build-mut")
TREE = os.path.join(MUT_DIR, "tree")
BUILD = os.path.join(MUT_DIR, "build")
LOGS = os.path.join(MUT_DIR, "logs")
MODEL_OPS = "2000"

# How many sites of each kind verify.c had when this was written; finding fewer means that the
# shapes below no longer match the file, and the run stops rather than test less.
MIN_SITES = {"call": 11, "rows": 33, "violation": 6, "cmp": 58, "cond": 7}

# What a check function's call does besides checking, kept by its deletion: check_chain
# writes the chain head that the report shows, and check_file says whether the ledger checks
# may read the file at all (deleting the file check must not skip them).
CALL_KEEPS = {
    "check_chain": "jf_hex(head, JF_HASH_BYTES, head_hex), ",
    "check_file": "sound = true, ",
}

# Surviving mutants that no test can kill, each with the reason.  The key is the mutant's
# name as --list prints it.
ALLOWLIST = {}


def fail(msg):
    print("mutate_verify: " + msg, file=sys.stderr)
    sys.exit(2)


# ---- Reading verify.c ---------------------------------------------------------------------

def skip_literal(text, i):
    """Index just past the string or character literal that starts at text[i]."""
    quote = text[i]
    i += 1
    while text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def code_spans(text):
    """(start, end, kind) of each string literal and comment, in order."""
    spans, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = skip_literal(text, i)
            spans.append((i, j, "str" if c == '"' else "chr"))
            i = j
        elif text.startswith("/*", i):
            j = text.index("*/", i) + 2
            spans.append((i, j, "comment"))
            i = j
        elif text.startswith("//", i):
            j = text.index("\n", i)
            spans.append((i, j, "comment"))
            i = j
        else:
            i += 1
    return spans


def in_span(spans, pos):
    return any(s <= pos < e for s, e, _ in spans)


def call_args(text, open_paren):
    """The call whose `(` is at open_paren: the index just past its `)`, and its top-level
    arguments as (start, end) pairs; string and character literals are skipped."""
    args, depth, i, begin = [], 0, open_paren, open_paren + 1
    while True:
        c = text[i]
        if c in "\"'":
            i = skip_literal(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append((begin, i))
                return i + 1, args
        elif c == "," and depth == 1:
            args.append((begin, i))
            begin = i + 1
        i += 1


def functions(text):
    """(name, body_start, body_end) of each function defined at the top level."""
    out = []
    for m in re.finditer(r"^(?:static\s+)?[A-Za-z_][\w \t*]*?\b([a-z_]\w*)\([^;{]*?\)\s*\n\{",
                         text, re.M):
        start = m.end() - 1
        end = text.index("\n}", start) + 2
        out.append((m.group(1), start, end))
    return out


def function_at(funcs, pos):
    for name, start, end in funcs:
        if start <= pos < end:
            return name
    return None


def literal_text(text, start, end):
    """The concatenated contents of the string literals between start and end."""
    return "".join(m.group(1) for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', text[start:end]))


def macro_end(text, m):
    """End of the #define that m matched, its continuation lines included."""
    i = m.end()
    while True:
        nl = text.index("\n", i)
        if text[nl - 1] != "\\":
            return nl
        i = nl + 1


def sql_pieces(text, start, end):
    """The SQL that text[start:end] spells, as (piece, file offset of a literal's contents or
    None): string literals by their contents, a macro of another file by its name (its
    argument list, if any, shown as "(...)")."""
    pieces, i = [], start
    while i < end:
        c = text[i]
        if c == '"':
            j = skip_literal(text, i)
            pieces.append((text[i + 1:j - 1], i + 1))
            i = j
        elif c.isalpha() or c == "_":
            m = re.match(r"\w+", text[i:])
            j = i + m.end()
            name = m.group(0)
            if text[j:j + 1] == "(":
                j = call_args(text, j)[0]
                name += "(...)"
            pieces.append((" " + name + " ", None))
            i = j
        else:
            i += 1
    return pieces


COMPARISON = re.compile(r"<>|!=|<=|>=|<|>|\bIS NOT NULL\b|\bIS NULL\b|\bIS NOT\b")
STOP_WORDS = r"(?:AND|OR|WHERE|HAVING|WHEN|THEN|ON|SELECT|ORDER|GROUP|UNION)"
STOP_AFTER = re.compile(r"\b%s\b" % STOP_WORDS)  # a keyword that starts at a position
STOP_BEFORE = re.compile(r"\b%s$" % STOP_WORDS)  # one that ends at the end of the text


def keyword_next(sql, i, step):
    """Whether a keyword that ends an expression starts at sql[i] (step +1), or ends just
    before it (step -1)."""
    if step > 0:
        return STOP_AFTER.match(sql, i) is not None
    return STOP_BEFORE.search(sql[:i]) is not None and not (sql[i:i + 1].isalnum() or
                                                            sql[i:i + 1] == "_")


def operand(sql, pos, step):
    """The operand of the comparison next to sql[pos], to its left (step -1) or right (+1):
    up to an unmatched parenthesis, a comma, or a keyword that ends an expression.  Only the
    mutant's name shows it."""
    depth, i = 0, pos
    while 0 <= (i - 1 if step < 0 else i) < len(sql):
        c = sql[i - 1] if step < 0 else sql[i]
        if c in "()":
            depth += 1 if (c == "(") == (step > 0) else -1
            if depth < 0:
                break
        elif depth == 0 and c == ",":
            break
        elif depth == 0 and keyword_next(sql, i, step):
            break
        i += step
    return squeeze(sql[i:pos] if step < 0 else sql[pos:i])


def squeeze(s, most=70):
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= most else s[:most - 3] + "..."


class Mutant:
    def __init__(self, kind, name, start, end, replacement):
        self.kind, self.name = kind, name
        self.start, self.end, self.replacement = start, end, replacement

    def apply(self, text):
        return text[:self.start] + self.replacement + text[self.end:]


def comparisons(text, label, sql_start, sql_end):
    """The cmp mutants of one check's SQL."""
    pieces = sql_pieces(text, sql_start, sql_end)
    sql = "".join(p for p, _ in pieces)
    where, at = [], 0  # where[k]: (start in sql, file offset or None) of piece k
    for p, off in pieces:
        where.append((at, off))
        at += len(p)
    out = []
    for c in COMPARISON.finditer(sql):
        k = max(i for i, (s, _) in enumerate(where) if s <= c.start())
        s, off = where[k]
        if off is None or c.end() > s + len(pieces[k][0]):
            fail("a comparison outside one string literal in %r" % label)
        op = c.group(0)
        unary = op.endswith("NULL")
        shown = operand(sql, c.start(), -1) + " " + op
        if not unary:
            shown += " " + operand(sql, c.end(), +1)
        start = off + c.start() - s
        out.append(Mutant("cmp", "cmp: %s: %s" % (label, squeeze(shown)), start,
                          start + len(op), "AND 0" if unary else " AND 0 AND "))
    return out


# Conditions of the C checks (the hash chain, I7), each made so that it never finds what it
# looks for: (name, the text as it stands in verify.c, exactly once, and its replacement).
CONDITIONS = [
    ("cond: I7 in chain_link: the stored hash not compared",
     "sodium_memcmp(sqlite3_column_blob(st, 21), hash, JF_HASH_BYTES) == 0", "1"),
    ("cond: I7 in chain_link: the stored hash's length not checked",
     "sqlite3_column_bytes(st, 21) == JF_HASH_BYTES", "1"),
    ("cond: I7 in chain_link: the stored previous hash not compared",
     "sodium_memcmp(sqlite3_column_blob(st, 20), prev, JF_HASH_BYTES) == 0", "1"),
    ("cond: I7 in chain_link: the stored previous hash's length not checked",
     "sqlite3_column_bytes(st, 20) == JF_HASH_BYTES", "1"),
    ("cond: I7 in check_chain: a gap in the sequence not noticed", "seq != expect", "0"),
    ("cond: I7 in check_chain: the head's sequence number not compared",
     "expect - 1 != head_seq", "0"),
    ("cond: I7 in check_chain: the head's hash not compared",
     "sodium_memcmp(prev, head, JF_HASH_BYTES) != 0", "0"),
]


def find_mutants(text):
    spans = code_spans(text)
    funcs = functions(text)
    macros = {m.group(1): (m.end(), macro_end(text, m))
              for m in re.finditer(r"^#define\s+(\w+)\b", text, re.M)}
    mutants = []

    # check_rows calls (rows), and the comparisons of their SQL (cmp); check_rows_all's
    # (a statement over every tenant) take no tenant after the SQL.
    for m in re.finditer(r"\bcheck_rows(_all)?\(", text):
        if in_span(spans, m.start()) or function_at(funcs, m.start()) is None:
            continue  # a comment, or the definition
        close, args = call_args(text, m.end() - 1)
        nargs = 4 if m.group(1) else 5
        inv = literal_text(text, *args[1]) if len(args) == nargs else ""
        what = literal_text(text, *args[2]) if len(args) == nargs else ""
        if not re.fullmatch(r"[A-Z][0-9]+", inv) or not what:
            fail("a check_rows call without an invariant and a description at offset %d"
                 % m.start())
        label = "%s %s" % (inv, what)
        mutants.append(Mutant("rows", "rows: " + label, m.start(), close, "JF_OK"))
        sql_start, sql_end = args[3]
        sql_name = text[sql_start:sql_end].strip()
        if sql_name in macros:
            sql_start, sql_end = macros[sql_name]
        mutants += comparisons(text, label, sql_start, sql_end)

    # Calls of the other check functions (call).
    for m in re.finditer(r"\b(check_(?!rows(?:_all)?\b)\w+)\(", text):
        fn = function_at(funcs, m.start())
        if in_span(spans, m.start()) or fn is None:
            continue
        close = call_args(text, m.end() - 1)[0]
        call = text[m.start():close]
        repl = "(%s0 ? %s : JF_OK)" % (CALL_KEEPS.get(m.group(1), ""), call)
        mutants.append(Mutant("call", "call: %s in %s" % (m.group(1), fn), m.start(), close,
                              repl))

    # violation() calls that name an invariant (violation).
    for m in re.finditer(r'\bviolation\(v, "([A-Z][0-9]+)"', text):
        if in_span(spans, m.start()):
            continue
        close, args = call_args(text, m.start() + len("violation"))
        msg = literal_text(text, *args[2])
        msg = re.sub(r"^tenant %lld: ", "", msg)
        mutants.append(Mutant("violation", "violation: %s in %s: %s"
                              % (m.group(1), function_at(funcs, m.start()), msg),
                              m.start(), close, "(void)0"))

    # The chain's conditions (cond).
    for name, old, new in CONDITIONS:
        at = [m.start() for m in re.finditer(re.escape(old), text)]
        if len(at) != 1:
            fail("%r stands %d times in %s, not once" % (old, len(at), TARGET))
        mutants.append(Mutant("cond", name, at[0], at[0] + len(old), new))

    # Two sites that read the same (check_file's two F1 calls) are told apart by number.
    seen = {}
    for mu in mutants:
        seen[mu.name] = seen.get(mu.name, 0) + 1
        if seen[mu.name] > 1:
            mu.name += " #%d" % seen[mu.name]
    return mutants


# ---- Building and testing -----------------------------------------------------------------

def run(args, log):
    """Runs a command, appending its output to the open file log; returns its exit status."""
    log.write("$ %s\n" % " ".join(args))
    log.flush()
    return subprocess.run(args, stdout=log, stderr=subprocess.STDOUT).returncode


def sync_tree(log):
    """Makes TREE the working tree's files as git sees them (tracked, or untracked and not
    ignored), copying only what differs so that ninja rebuilds only that."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, capture_output=True).stdout
    files = {f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))}
    for f in sorted(files):
        src, dst = os.path.join(ROOT, f), os.path.join(TREE, f)
        with open(src, "rb") as fh:
            data = fh.read()
        if os.path.exists(dst):
            with open(dst, "rb") as fh:
                if fh.read() == data:
                    continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as fh:
            fh.write(data)
        shutil.copymode(src, dst)
    for dirpath, _, names in os.walk(TREE):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), TREE)
            if rel not in files:
                os.unlink(os.path.join(dirpath, n))
                log.write("removed from the scratch tree: %s\n" % rel)


def configure(log):
    if os.path.exists(os.path.join(BUILD, "build.ninja")):
        return
    if run(["cmake", "-G", "Ninja", "-S", TREE, "-B", BUILD,
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], log) != 0:
        fail("cmake failed; see %s" % log.name)


def ctest_names():
    """The ctest tests of the second stage: every unit test but unit_verify, and the model
    test (target_of names the build target of each)."""
    out = subprocess.run(["ctest", "--test-dir", BUILD, "-N"], check=True, capture_output=True,
                         text=True).stdout
    names = re.findall(r"Test\s+#\d+: (\S+)", out)
    rest = [n for n in names if re.match(r"^unit_|^model$", n) and n != "unit_verify"]
    if "unit_verify" not in names or "model" not in rest:
        fail("ctest has no unit_verify or no model test: %s" % names)
    return rest


def target_of(test):
    return "model_test" if test == "model" else "test_" + test[len("unit_"):]


def run_tests(tests, jobs, log):
    """Builds and runs the ctest tests named; returns (built, the names of those that
    failed)."""
    if run(["ninja", "-C", BUILD, "-j", str(jobs)] + [target_of(t) for t in tests], log) != 0:
        return False, []
    env = dict(os.environ, MODEL_OPS=MODEL_OPS)
    regex = "^(%s)$" % "|".join(re.escape(t) for t in tests)
    out = subprocess.run(["ctest", "--test-dir", BUILD, "--output-on-failure", "-j", str(jobs),
                          "-R", regex], env=env, capture_output=True, text=True)
    log.write(out.stdout + out.stderr)
    failed = []
    if "The following tests FAILED:" in out.stdout:
        tail = out.stdout.split("The following tests FAILED:", 1)[1]
        failed = re.findall(r"^\s*\d+ - (\S+) \(", tail, re.M)
    if out.returncode != 0 and not failed:
        failed = ["ctest exit %d" % out.returncode]
    # A cmocka test names its failed cases; unit_verify's say which tampering caught it, and
    # its group setup failing means the mutant found violations in the clean ledger.
    cases = []
    for c in re.findall(r"^\[  FAILED  \] (\w+|GROUP SETUP)$", out.stdout, re.M):
        if c not in cases:
            cases.append(c)
    if len(failed) == 1 and failed[0].startswith("unit_") and cases:
        shown = " ".join(cases[:3]) + (" and %d more" % (len(cases) - 3) if len(cases) > 3 else "")
        failed = ["%s (%s)" % (failed[0], shown)]
    return True, failed


def write_target(text):
    with open(os.path.join(TREE, TARGET), "w") as fh:
        fh.write(text)


def diff(a, b):
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                        TARGET, TARGET + " (mutant)", n=1))


# ---- The run ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print the mutants and stop")
    ap.add_argument("--quick", action="store_true",
                    help="the deletion mutants only, against unit_verify only")
    ap.add_argument("--first-stage", action="store_true",
                    help="run unit_verify only (a survivor may still be killed by the rest)")
    ap.add_argument("--only", metavar="REGEX", help="the mutants whose names match")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("CTEST_JOBS", "2")))
    opts = ap.parse_args()

    with open(os.path.join(ROOT, TARGET)) as fh:
        original = fh.read()
    mutants = find_mutants(original)
    for kind, least in MIN_SITES.items():
        found = sum(1 for mu in mutants if mu.kind == kind)
        if found < least:
            fail("only %d %s sites in %s, expected at least %d: has verify.c changed shape?"
                 % (found, kind, TARGET, least))
    stale = sorted(set(ALLOWLIST) - {mu.name for mu in mutants})
    if stale:
        fail("allowlist entries that name no mutant: %s" % stale)
    if opts.quick:
        mutants = [mu for mu in mutants if mu.kind in ("call", "rows", "violation")]
    if opts.only:
        mutants = [mu for mu in mutants if re.search(opts.only, mu.name)]
    if opts.list:
        for mu in mutants:
            print(mu.name)
        return 0
    for mu in mutants:
        if mu.apply(original) == original:
            fail("mutant %r changes nothing" % mu.name)

    began = time.monotonic()
    os.makedirs(TREE, exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    os.makedirs(LOGS)
    with open(os.path.join(LOGS, "baseline.log"), "w") as log:
        sync_tree(log)
        configure(log)
        rest = [] if opts.quick or opts.first_stage else ctest_names()
        # The tests must pass on the unmutated source, or every mutant would look killed.
        for stage in (["unit_verify"], rest):
            if not stage:
                continue
            built, failed = run_tests(stage, opts.jobs, log)
            if not built or failed:
                fail("the unmutated tree does not %s: %s (see %s)"
                     % ("build" if not built else "pass", failed, log.name))
    print("baseline: built and passed in %.0f s; %d mutants" % (time.monotonic() - began,
                                                                 len(mutants)))

    results = []  # (mutant, outcome, killers)
    try:
        for i, mu in enumerate(mutants, 1):
            mutated = mu.apply(original)
            with open(os.path.join(LOGS, "%03d.log" % i), "w") as log:
                log.write("%s\n%s\n" % (mu.name, diff(original, mutated)))
                try:
                    write_target(mutated)
                    outcome, killers = "survived", []
                    for stage in (["unit_verify"], rest):
                        if not stage:
                            continue
                        built, failed = run_tests(stage, opts.jobs, log)
                        if not built:
                            outcome = "did not build"
                            break
                        if failed:
                            outcome, killers = "killed", failed
                            break
                finally:
                    write_target(original)
            if outcome == "survived" and mu.name in ALLOWLIST:
                outcome = "allowed"
            results.append((mu, outcome, killers))
            print("[%3d/%d] %-8s %s\n          %s" % (i, len(mutants), outcome, mu.name,
                                                 ", ".join(killers)), flush=True)
    finally:
        write_target(original)

    return report(results, time.monotonic() - began, opts)


def report(results, seconds, opts):
    kinds = sorted({mu.kind for mu, _, _ in results})
    print("\n%-10s %7s %7s %9s %8s %9s" % ("kind", "mutants", "killed", "survived", "allowed",
                                            "no build"))
    for kind in kinds + ["all"]:
        rows = [r for r in results if kind in ("all", r[0].kind)]
        count = {o: sum(1 for r in rows if r[1] == o)
                 for o in ("killed", "survived", "allowed", "did not build")}
        print("%-10s %7d %7d %9d %8d %9d" % (kind, len(rows), count["killed"],
                                             count["survived"], count["allowed"],
                                             count["did not build"]))
    by = {}
    for _, outcome, killers in results:
        if outcome == "killed":
            first = " + ".join(sorted(k.split(" ")[0] for k in killers))
            by[first] = by.get(first, 0) + 1
    print("killed by: " + ", ".join("%s %d" % kv for kv in sorted(by.items())))
    bad = 0
    for mu, outcome, _ in results:
        if outcome == "allowed":
            print("allowed:   %s\n           (%s)" % (mu.name, ALLOWLIST[mu.name]))
        elif outcome != "killed":
            print("%s: %s" % (outcome.upper(), mu.name))
            bad += 1
        elif mu.name in ALLOWLIST:
            print("KILLED BUT ALLOWLISTED (remove it from ALLOWLIST): %s" % mu.name)
            bad += 1
    print("%d mutants in %.0f s (%.1f min)%s; logs in %s"
          % (len(results), seconds, seconds / 60,
             ", unit_verify only" if opts.quick or opts.first_stage else "", LOGS))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
