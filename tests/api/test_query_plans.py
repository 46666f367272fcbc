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
subquery or an inner loop of a join (run once per row of the outer one) must
not.

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
# entry of an index (MIN), a page of the event list (it stops at its
# limit; the filters are optional), and the idempotency-key filter's build
# (every stored key and every earned order once, on its own thread, and the
# tenants' counts that size it).
WHOLE_ON_PURPOSE = {
    "auth.c": ["FROM api_keys"],
    "campaigns.c": ["SELECT count(*) FROM campaigns WHERE tenant_id=?",
                    # one campaign or all of them: at most JF_CAMPAIGNS_MAX (limits.h)
                    "WHERE c.tenant_id=?1 AND (?2 IS NULL OR c.id=?2)"],
    "engine.c": ["FROM tenants", "FROM rules WHERE trigger='birthday'"],
    "holds.c": ["SELECT MIN(expires_at) FROM holds INDEXED BY holds_open"],
    "idemfilter.c": ["FROM tenants", "SELECT tenant_id, key FROM idempotency",
                     "order_id FROM transactions INDEXED BY tx_order"],
    "members.c": ["FROM members LIMIT ?"],
    "tenant.c": ["FROM tenants"],
    "tiers_ops.c": ["FROM tier_configs WHERE tenant_id=?",
                    "SELECT tier, count(*) FROM members",
                    "FROM events WHERE tenant_id=? AND (? IS NULL OR type=?2)"],
    "tiers.c": ["FROM tier_configs WHERE tenant_id=?"],
    "rules_db.c": ["FROM rules", "FROM campaigns"],
}

STRING = r'"(?:[^"\\]|\\.)*"'


# A name is one token: without the \b, a name followed by something that is
# not a token (a call's parenthesis) could be split anywhere, and the match
# would try every split before it failed (exponential in the name's length).
TOKEN = r'%s|\w+\b' % STRING


def string_macros(src, known=None):
    """#define NAME "..." OTHER "..." (possibly over several lines; OTHER a
    macro of the same kind defined before, here or in known): NAME -> text,
    known's included."""
    out = dict(known or {})
    for m in re.finditer(r'^#define (\w+)[ \t]+(?:\\\n\s*)?((?:(?:%s)[ \t]*(?:\\\n\s*)?)+)$'
                         % TOKEN, src, re.M):
        parts = re.findall(TOKEN, m.group(2))
        if all(p.startswith('"') or p in out for p in parts):
            out[m.group(1)] = "".join(out[p] if p in out else p[1:-1] for p in parts)
    return out


def function_macros(src):
    """#define NAME(a, b) "..." a "..." b: NAME -> (params, body tokens)."""
    out = {}
    for m in re.finditer(r'^#define (\w+)\(([\w\s,]*)\)[ \t]+(?:\\\n\s*)?'
                         r'((?:(?:%s)[ \t]*(?:\\\n\s*)?)+)$' % TOKEN, src, re.M):
        out[m.group(1)] = ([a.strip() for a in m.group(2).split(",")],
                           re.findall(TOKEN, m.group(3)))
    return out


def expand_calls(src, fmacros):
    """src with each call NAME(args) of a function-like string macro whose
    arguments are literals and macro names replaced by its body, the
    arguments put in (all on the call's line, so line numbers hold)."""
    arg = r'(?:\s*(?:%s))+' % TOKEN
    for _ in range(4):  # a macro's body may call another
        for name, (params, body) in fmacros.items():
            # (not a macro's own definition, which names its parameters)
            call = r'(?<!#define )\b%s\(\s*(%s(?:\s*,%s)*)\s*\)' % (name, arg, arg)

            def put(m, params=params, body=body):
                args = [[]]  # split at the commas between tokens, not those inside one
                for t in re.findall(r'%s|,' % TOKEN, m.group(1)):
                    if t == ",":
                        args.append([])
                    else:
                        args[-1].append(t)
                args = [" ".join(a) for a in args]
                if len(args) != len(params):
                    return m.group(0)
                given = dict(zip(params, args))
                return " ".join(given.get(t, t) for t in body)
            src = re.sub(call, put, src)
    return src


def stringified(text):
    """text with each JF_SQL_STR(NAME) of an integer constant of limits.h
    (db.h: a number put into SQL as the preprocessor does) as its string."""
    with open(os.path.join(H.REPO, "include", "jifen", "limits.h")) as f:
        ints = dict(re.findall(r'^#define (\w+) (\d+)$', f.read(), re.M))
    return re.sub(r'\bJF_SQL_STR\((\w+)\)',
                  lambda m: '"%s"' % ints[m.group(1)] if m.group(1) in ints else m.group(0), text)


def in_define(src, pos):
    """Whether pos is in a #define, on its first line or a continued one."""
    start = src.rfind("\n", 0, pos) + 1
    while start > 0 and src[:start - 1].endswith("\\"):
        start = src.rfind("\n", 0, start - 1) + 1
    return src.startswith("#define", start)


def statements(path):
    """(line, sql) for each SQL statement written as adjacent literals and macros."""
    with open(path) as f:
        src = f.read()
    # Comments out, their lines kept: a comment may name a macro of SQL.
    src = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), src, flags=re.S)
    header = ""
    for h in (os.path.join(H.REPO, "src", "store", "db.h"), os.path.join(SRC, "ledger.h")):
        with open(h) as f:
            header += f.read() + "\n"
    header = stringified(header)
    # A macro whose body calls another one is a plain one once that call is
    # expanded (JF_TX_OF_TENANT_SQL calls JF_TX_KEY_SQL, verify.c's
    # TX_OF_TENANT calls JF_TX_OF_TENANT_SQL).
    header = expand_calls(header, function_macros(header))
    src = expand_calls(src, function_macros(header))
    src = expand_calls(src, dict(function_macros(header), **function_macros(src)))
    macros = string_macros(src, string_macros(header))
    names = "|".join(sorted(map(re.escape, macros), key=len, reverse=True)) or "(?!)"
    piece = r'(?:%s|\b(?:%s)\b)' % (STRING, names)
    for m in re.finditer(r'%s(?:\s*%s)*' % (piece, piece), src):
        if not m.group(0).startswith('"') and not re.match(r'\w', m.group(0)):
            continue
        if in_define(src, m.start()):
            continue  # a macro's own text (a column list), run only where it is used
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


def table_names(sql, tables, views=None):
    """Each name a plan may show for a table of the statement: the table's own
    name and its aliases (a derived table's or a CTE's name is not one), and
    those of the tables inside each view it reads (views: name -> SQL), whose
    steps the plan shows under the view."""
    names = set()
    for m in re.finditer(r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", sql, re.I):
        if m.group(1) in tables:
            names.add(m.group(1))
            if m.group(2) and m.group(2).upper() not in KEYWORDS:
                names.add(m.group(2))
        elif views and m.group(1) in views:
            inner = dict(views)
            del inner[m.group(1)]
            names |= table_names(views[m.group(1)], tables, inner)
    return names


def every_tenant_steps(rows, sql, views=None, tables=("transactions",)):
    """The plan's steps that read every tenant's rows of the tables: the
    transactions' key is tenant << 44 | seq since schema version 22 and
    their tenant_id a virtual column, so a condition on tenant_id alone
    (rather than a range of txkey, db.h's JF_TX_OF_TENANT_SQL) reads the
    whole table, and `jifen verify`, which reads whole tenants, would read
    every tenant's transactions once per tenant; the same for any table a
    statement of verify's for one tenant reads whole (the lots, which have
    no index that starts with the tenant: verify reads them once, for every
    tenant, in statements without a parameter)."""
    names = table_names(sql, set(tables), views)
    return [r[2] for r in rows
            if re.match(r"SCAN (\w+)", r[2]) and r[2].split()[1] in names
            or re.match(r"SEARCH (\w+) USING AUTOMATIC", r[2]) and r[2].split()[1] in names]


def whole_tenant_steps(rows, sql, tables, only_correlated, views=None):
    """The plan's steps that read a whole table or a whole tenant."""
    parents = {r[0]: r for r in rows}
    names = table_names(sql, tables, views)

    def correlated(r):
        while r[1] in parents:
            r = parents[r[1]]
            if "CORRELATED" in r[2]:
                return True
        return False

    bad, loops = [], {}
    for r in rows:
        d = r[2]
        m = re.match(r"(SCAN|SEARCH) (\w+)", d)
        if not m:
            continue
        # The loops of one SELECT are siblings, outermost first: an inner loop
        # that reads a whole tenant does so once per row of the outer one.
        inner = loops.get(r[1], 0) > 0
        loops[r[1]] = loops.get(r[1], 0) + 1
        if m.group(2) not in names:
            continue  # a subquery's result, a CTE, a constant row
        whole = m.group(1) == "SCAN" or re.search(r"\((tenant_id=\?)\)$", d)
        if whole and (not only_correlated or correlated(r) or inner):
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
        # src/store/db.c registers it deterministic, as here: the seq a
        # transaction id names (txid.h), a constant for the planner.
        cls.con.create_function("jf_tx_seq", 2, lambda tenant, tx_id: None, deterministic=True)
        cls.tables = {r[0] for r in cls.con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        cls.views = dict(cls.con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'view'"))

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
                steps = whole_tenant_steps(rows, sql, self.tables, name == "verify.c", self.views)
                # verify's statements without a parameter read every
                # tenant's rows once, on purpose.
                every = ("transactions",)
                if name == "verify.c":
                    every = self.tables if "?" in sql else ()
                steps += [s for s in every_tenant_steps(rows, sql, self.views, every)
                          if s not in steps]
                for step in steps:
                    found.append("%s:%d: %s\n    %s" % (name, line, step, sql[:160]))
        H.log("%d statements planned; %d not (built at run time or from function-like "
              "macros): %s" % (planned, len(unplanned), " ".join(unplanned)))
        # The extraction must keep finding the statements, or this test checks nothing.
        self.assertGreater(planned, 150)
        self.assertLess(len(unplanned), 10)
        self.assertEqual(found, [], "statements that read a whole tenant:\n" + "\n".join(found))

    def test_the_check_sees_a_whole_tenant_read(self):
        # A canary: the refund's totals as they were read before this test
        # (refunds.c), which the planner answers from the primary key's
        # first column, tenant_id, rather than from refunds_order.
        sql = ("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE tenant_id=? AND"
               " order_id=?")
        self.assertEqual(whole_tenant_steps(plan(self.con, sql), sql, self.tables, False),
                         ["SEARCH refunds USING PRIMARY KEY (tenant_id=?)"])

    def test_the_check_sees_through_a_view(self):
        # A canary: the growth a reversal took back, read through the view
        # `postings` as before schema version 16 (reverse.c): the planner
        # builds the view's union for the whole tenant, then searches it.
        sql = ("SELECT COALESCE(-SUM(p.amount), 0) FROM transactions r INDEXED BY tx_reverses"
               " CROSS JOIN postings p ON p.tenant_id = r.tenant_id AND p.tx_seq = r.seq"
               " WHERE r.tenant_id=? AND r.reverses=? AND p.account=?")
        steps = whole_tenant_steps(plan(self.con, sql), sql, self.tables, False, self.views)
        self.assertIn("SEARCH posting_rows USING PRIMARY KEY (tenant_id=?)", steps)
        # Since schema version 22, by tenant_id alone: every tenant's rows.
        self.assertIn("SCAN t", steps)

    def test_the_check_sees_every_tenant_read(self):
        # A canary: verify's sums of a tenant's postings by tenant_id, as
        # before schema version 22 (verify.c, I1), which now reads every
        # tenant's transactions.
        sql = ("SELECT seq, p0_amount FROM transactions WHERE tenant_id = ?"
               " AND posting_count > 0")
        self.assertEqual(every_tenant_steps(plan(self.con, sql), sql), ["SCAN transactions"])
        sql = ("SELECT seq, p0_amount FROM transactions t WHERE"
               " t.txkey BETWEEN (?1 << 44) AND (?1 << 44) + 5 AND posting_count > 0")
        self.assertEqual(every_tenant_steps(plan(self.con, sql), sql), [])

    def test_the_check_sees_verify_read_every_tenants_lots(self):
        # A canary: verify's I10 check of expired lots for one tenant, as it
        # was before it ran once over every tenant (verify.c): the lots have
        # no index that starts with the tenant.
        sql = ("SELECT l.id, l.remaining, l.expired_amount FROM lots l WHERE l.tenant_id = ?"
               " AND (l.expired_tx_seq IS NULL) <> (l.expired_amount IS NULL)")
        self.assertEqual(every_tenant_steps(plan(self.con, sql), sql, None, self.tables),
                         ["SCAN l"])
        self.assertEqual(every_tenant_steps(plan(self.con, sql), sql), [])


if __name__ == "__main__":
    unittest.main()
