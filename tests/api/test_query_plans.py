"""Every SQL statement of the engine through SQLite's query planner.

A statement that reads a whole tenant where it meant one order or one member
costs nothing in a test's small database and everything in a merchant's: a
refund once read every transaction of its tenant, in the writer, because the
planner of Debian's SQLite (3.40) took the primary key's first column
(tenant_id) over no index at all.  This test builds a database with `jifen
init`, pulls each SQL statement out of src/core/*.c (adjacent string literals
and the string macros between them), asks SQLite for its plan, and fails on a
step that scans a table or searches it by tenant alone, unless the statement
is listed below as reading a whole tenant on purpose.  `jifen verify` reads
whole tenants by design: in verify.c only the steps inside a correlated
subquery (run once per row of the outer one) must not.

Run: python3 tests/api/test_query_plans.py"""

import glob
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

SRC = os.path.join(H.REPO, "src", "core")

# Statements that read a whole tenant (or every tenant) on purpose, by file
# and a piece of their text: small per-tenant tables (API keys, campaigns,
# rules, tier configurations), the tenant list, the scheduler's look across
# tenants, the writer's cache warmed with every member at start, the first
# entry of an index (MIN), and a page of the event list (it stops at its
# limit; the filters are optional).
WHOLE_ON_PURPOSE = {
    "auth.c": ["FROM api_keys"],
    "campaigns.c": ["SELECT count(*) FROM campaigns WHERE tenant_id=?"],
    "engine.c": ["FROM tenants", "FROM rules WHERE trigger='birthday'"],
    "holds.c": ["SELECT MIN(expires_at) FROM holds INDEXED BY holds_open"],
    "members.c": ["FROM members LIMIT ?"],
    "tenant.c": ["FROM tenants"],
    "tiers_ops.c": ["FROM tier_configs WHERE tenant_id=?",
                    "SELECT tier, count(*) FROM members",
                    "FROM events WHERE tenant_id=? AND (? IS NULL OR type=?2)"],
    "tiers.c": ["FROM tier_configs WHERE tenant_id=?"],
    "rules_db.c": ["FROM rules", "FROM campaigns"],
}

STRING = r'"(?:[^"\\]|\\.)*"'


def string_macros(src):
    """#define NAME "..." "..." (possibly over several lines): NAME -> text."""
    out = {}
    for m in re.finditer(r'^#define (\w+)\s+((?:%s\s*(?:\\\n\s*)?)+)$' % STRING, src, re.M):
        out[m.group(1)] = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
    return out


def statements(path):
    """(line, sql) for each SQL statement written as adjacent literals and macros."""
    with open(path) as f:
        src = f.read()
    macros = string_macros(src)
    names = "|".join(sorted(map(re.escape, macros), key=len, reverse=True)) or "(?!)"
    piece = r'(?:%s|\b(?:%s)\b)' % (STRING, names)
    for m in re.finditer(r'%s(?:\s*%s)*' % (piece, piece), src):
        if not m.group(0).startswith('"') and not re.match(r'\w', m.group(0)):
            continue
        parts = re.findall(r'%s|\w+' % STRING, m.group(0))
        sql = "".join(macros[p] if p in macros else p[1:-1] for p in parts)
        sql = sql.replace('\\"', '"')
        if re.match(r'\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b', sql) and "#define" not in sql:
            yield src[:m.start()].count("\n") + 1, sql


def plan(con, sql):
    """EXPLAIN QUERY PLAN rows (id, parent, detail), or None when it cannot prepare."""
    for n in range(0, 40):
        try:
            return [(r[0], r[1], r[3]) for r in con.execute("EXPLAIN QUERY PLAN " + sql,
                                                            [None] * n)]
        except sqlite3.ProgrammingError:
            continue  # the wrong number of parameters: try the next
        except sqlite3.OperationalError:
            return None
    return None


KEYWORDS = {"WHERE", "ON", "INDEXED", "JOIN", "LEFT", "INNER", "CROSS", "NOT", "USING",
            "GROUP", "ORDER", "LIMIT", "UNION", "SET", "VALUES", "AS"}


def table_names(sql, tables):
    """Each name a plan may show for a table of the statement: the table's own
    name and its aliases (a derived table's or a CTE's name is not one)."""
    names = set()
    for m in re.finditer(r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", sql, re.I):
        if m.group(1) in tables:
            names.add(m.group(1))
            if m.group(2) and m.group(2).upper() not in KEYWORDS:
                names.add(m.group(2))
    return names


def whole_tenant_steps(rows, sql, tables, only_correlated):
    """The plan's steps that read a whole table or a whole tenant."""
    parents = {r[0]: r for r in rows}
    names = table_names(sql, tables)

    def correlated(r):
        while r[1] in parents:
            r = parents[r[1]]
            if "CORRELATED" in r[2]:
                return True
        return False

    bad = []
    for r in rows:
        d = r[2]
        m = re.match(r"(SCAN|SEARCH) (\w+)", d)
        if not m or m.group(2) not in names:
            continue  # a subquery's result, a CTE, a constant row
        whole = m.group(1) == "SCAN" or re.search(r"\((tenant_id=\?)\)$", d)
        if whole and (not only_correlated or correlated(r)):
            bad.append(d)
    return bad


class QueryPlanTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="jifen-plans-")
        db = os.path.join(cls.dir, "db")
        subprocess.run([H.jifen_bin(), "init", "--db", db, "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        cls.con = sqlite3.connect(db)
        cls.con.create_function("jf_kept", 1, lambda x: x)
        cls.tables = {r[0] for r in cls.con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    @classmethod
    def tearDownClass(cls):
        cls.con.close()
        subprocess.run(["rm", "-rf", cls.dir], check=True)

    def test_no_statement_reads_a_whole_tenant_by_mistake(self):
        planned, unplanned, found = 0, [], []
        for path in sorted(glob.glob(os.path.join(SRC, "*.c"))):
            name = os.path.basename(path)
            for line, sql in statements(path):
                rows = plan(self.con, sql)
                if rows is None:
                    unplanned.append("%s:%d" % (name, line))
                    continue
                planned += 1
                if any(p in sql for p in WHOLE_ON_PURPOSE.get(name, [])):
                    continue
                for step in whole_tenant_steps(rows, sql, self.tables, name == "verify.c"):
                    found.append("%s:%d: %s\n    %s" % (name, line, step, sql[:160]))
        H.log("%d statements planned; %d not (built at run time or from function-like "
              "macros): %s" % (planned, len(unplanned), " ".join(unplanned)))
        # The extraction must keep finding the statements, or this test checks nothing.
        self.assertGreater(planned, 150)
        self.assertLess(len(unplanned), 30)
        self.assertEqual(found, [], "statements that read a whole tenant:\n" + "\n".join(found))

    def test_the_check_sees_a_whole_tenant_read(self):
        # A canary: the refund's totals as they were read before this test
        # (refunds.c), which the planner answers from the primary key's
        # first column, tenant_id, rather than from refunds_order.
        sql = ("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE tenant_id=? AND"
               " order_id=?")
        self.assertEqual(whole_tenant_steps(plan(self.con, sql), sql, self.tables, False),
                         ["SEARCH refunds USING PRIMARY KEY (tenant_id=?)"])


if __name__ == "__main__":
    unittest.main()
