"""Black-box tests of every jifen HTTP endpoint: success shapes, every error code
reachable over HTTP, and the exact ledger semantics of spec.md, end to end with
the test clock.  Run: python3 tests/api/test_api.py (JIFEN_BIN=build/jifen)."""

import json
import os
import re
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402
from jifen_harness import DAY_MS, POINTS_MAX, fmt_time, parse_time, q  # noqa: E402

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

MEMBER_FIELDS = ["id", "external_id", "name", "phone", "birthday", "tags", "status", "points",
                 "debt", "created_at", "updated_at"]
TXN_FIELDS = ["id", "type", "member_id", "counterparty_member_id", "points", "reverses",
              "reversed_points", "hold_id", "order", "reason", "note", "channel", "store_id",
              "actor", "metadata", "created_at"]
POINTS_FIELDS = ["member_id", "as_of", "balance", "available", "pending", "held", "debt"]
LOT_FIELDS = ["id", "transaction_id", "amount", "remaining", "available_at", "expires_at",
              "status"]
HOLD_FIELDS = ["id", "member_id", "points", "captured", "released", "status", "expires_at",
               "created_at"]
PROGRAM_FIELDS = ["id", "name", "currency", "earn_rate", "expiry", "pending_days", "debt_floor",
                  "timezone", "hold_ttl_seconds", "operator_adjust_max", "updated_at"]
KEY_FIELDS = ["id", "name", "role", "created_at", "revoked_at"]

# A fixed instant far from today for calendar tests (the test clock only moves
# forward, and each ledger test has its own server): local time in
# Asia/Shanghai is 2030-01-15 12:00.
T2030 = parse_time("2030-01-15T04:00:00Z")


class Checks:
    """Shape and problem assertions shared by the test classes."""

    def assertTime(self, s, what="time"):
        self.assertIsInstance(s, str, what)
        self.assertRegex(s, TIME_RE, what)

    def assertFields(self, obj, fields, what):
        self.assertIsInstance(obj, dict, "%s is not an object: %r" % (what, obj))
        missing = [f for f in fields if f not in obj]
        self.assertEqual(missing, [], "%s lacks fields %r: %r" % (what, missing, obj))

    def assertProblem(self, r, status, code):
        self.assertEqual(r.status, status, "expected %d %s, got %r" % (status, code, r))
        ctype = (r.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.assertEqual(ctype, "application/problem+json", "Content-Type of %r" % r)
        b = r.body
        self.assertIsInstance(b, dict, "problem body not JSON object: %r" % r)
        self.assertFields(b, ["type", "title", "status", "detail", "code"], "problem")
        self.assertEqual(b["code"], code, "code in %r" % r)
        self.assertEqual(b["status"], status)
        self.assertEqual(b["type"], "https://jifen.dev/problems/" + code)
        self.assertIsInstance(b["title"], str)
        self.assertIsInstance(b["detail"], str)

    def assertStatus(self, r, status, what=""):
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        return r.body

    def assertJson(self, r):
        ctype = (r.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.assertEqual(ctype, "application/json", "Content-Type of %r" % r)

    def assertPoints3(self, p, available, pending=0, held=0):
        self.assertEqual({"available": p["available"], "pending": p["pending"],
                          "held": p["held"]},
                         {"available": available, "pending": pending, "held": held})

    def assertMember(self, m):
        self.assertFields(m, MEMBER_FIELDS, "member")
        self.assertTrue(m["id"].startswith("mem_"), m["id"])
        self.assertIn(m["status"], ("active", "frozen", "closed"))
        self.assertIsInstance(m["tags"], list)
        self.assertFields(m["points"], ["available", "pending", "held"], "member.points")
        self.assertIsInstance(m["debt"], int)
        self.assertTime(m["created_at"])
        self.assertTime(m["updated_at"])

    def assertTxn(self, t, type_=None, points=None):
        self.assertFields(t, TXN_FIELDS, "transaction")
        self.assertTrue(t["id"].startswith("txn_"), t["id"])
        self.assertIn(t["type"], ("earn", "redeem", "adjust", "transfer", "hold", "capture",
                                  "void", "expire", "reverse"))
        self.assertIsInstance(t["points"], int)
        self.assertGreaterEqual(t["points"], 0)
        self.assertIsInstance(t["reversed_points"], int)
        self.assertIsInstance(t["actor"], str)
        self.assertTime(t["created_at"])
        if type_ is not None:
            self.assertEqual(t["type"], type_)
        if points is not None:
            self.assertEqual(t["points"], points)

    def assertPointsResult(self, r, type_=None, points=None, status=201):
        b = self.assertStatus(r, status, "points-result")
        self.assertJson(r)
        self.assertFields(b, ["transaction", "points"], "points-result")
        self.assertTxn(b["transaction"], type_, points)
        self.assertFields(b["points"], ["available", "pending", "held"], "points-result.points")
        if status == 201 and not r.replayed:
            self.assertReplyMatchesStored(b["transaction"])
        return b

    def assertReplyMatchesStored(self, txn):
        """A write's reply renders its new transaction from memory: it must be
        exactly what GET /v1/transactions/{id} reads back, less the details."""
        stored = self.assertStatus(self.env.admin.get("/v1/transactions/%s" % txn["id"]), 200,
                                   "GET txn after write")
        for k in ("postings", "consumptions", "hash"):
            stored.pop(k, None)
        self.assertEqual(txn, stored, "reply vs stored transaction")

    def assertLot(self, lot):
        self.assertFields(lot, LOT_FIELDS, "lot")
        self.assertTrue(lot["id"].startswith("lot_"), lot["id"])
        self.assertIn(lot["status"], ("pending", "available", "consumed", "expired"))
        self.assertTime(lot["available_at"])
        if lot["expires_at"] is not None:
            self.assertTime(lot["expires_at"])
        self.assertGreaterEqual(lot["remaining"], 0)
        self.assertLessEqual(lot["remaining"], lot["amount"])

    def assertHold(self, h):
        self.assertFields(h, HOLD_FIELDS, "hold")
        self.assertTrue(h["id"].startswith("txn_"), h["id"])
        self.assertIn(h["status"], ("open", "captured", "voided", "expired"))
        self.assertTime(h["expires_at"])
        self.assertTime(h["created_at"])

    def assertProgram(self, p):
        self.assertFields(p, PROGRAM_FIELDS, "program")
        self.assertTrue(p["id"].startswith("ten_"), p["id"])
        self.assertFields(p["earn_rate"], ["points", "per_amount"], "earn_rate")
        self.assertIn("policy", p["expiry"])
        self.assertTime(p["updated_at"])

    def assertList(self, r):
        b = self.assertStatus(r, 200, "list")
        self.assertJson(r)
        self.assertFields(b, ["data", "next_cursor"], "list")
        self.assertIsInstance(b["data"], list)
        self.assertTrue(b["next_cursor"] is None or isinstance(b["next_cursor"], str))
        return b

    # small wrappers
    def member(self, c=None, **kw):
        return H.create_member(c or self.env.admin, **kw)

    def funded(self, points, c=None, **kw):
        c = c or self.env.admin
        m = self.member(c, **kw)
        if points:
            self.assertPointsResult(H.earn(c, m["id"], points), "earn", points)
        return m

    def pts(self, mid, c=None, **params):
        return H.points_of(c or self.env.admin, mid, **params)

    def lots(self, mid, c=None, **params):
        c = c or self.env.admin
        items = H.list_all(c, "/v1/members/%s/lots" % mid, params)
        for lot in items:
            self.assertLot(lot)
        return items

    def txn(self, tid, c=None):
        c = c or self.env.admin
        r = c.get("/v1/transactions/%s" % tid)
        b = self.assertStatus(r, 200, "GET txn")
        self.assertTxn(b)
        return b


# =====================================================================================
# Shapes and errors on one shared server (tests here do not change tenant-wide state
# except harmlessly).
# =====================================================================================

class SharedServerTests(unittest.TestCase, Checks):
    @classmethod
    def setUpClass(cls):
        cls.env = H.Env()
        cls.addClassCleanup(cls.env.close)
        cls.pos_id, cls.pos = cls.env.key("pos")
        cls.op_id, cls.op = cls.env.key("operator")
        cls.ro_id, cls.ro = cls.env.key("readonly")

    # ---------------------------------------------------------------- server routes

    def test_healthz_and_metrics_without_auth(self):
        c = self.env.client(None)
        r = c.get("/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, {"status": "ok"})
        r = c.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertIsInstance(r.body, str)
        self.assertRegex(r.body, r"(?m)^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [0-9.eE+\-]+$")

    def test_request_ids(self):
        """Every answer carries X-Request-Id: the client's own when it sends a
        printable one of at most 64 characters, else a generated req_ and 24
        hex digits, distinct across requests on several connections (each
        HTTP thread draws its own base), and also on errors."""
        own = "till-7/" + uuid.uuid4().hex
        r = self.env.admin.get("/v1/program", headers={"X-Request-Id": own})
        self.assertEqual(r.headers.get("X-Request-Id"), own)
        seen = set()
        for i in range(8):
            c = self.env.client(self.env.t1["api_key"])
            for path in ("/v1/program", "/v1/members/mem_missing", "/healthz"):
                r = c.get(path, headers={"X-Request-Id": "x" * 65} if i == 0 else None)
                rid = r.headers.get("X-Request-Id") or ""
                self.assertRegex(rid, r"^req_[0-9a-f]{24}$", path)
                seen.add(rid)
        self.assertEqual(len(seen), 24)

    def test_metrics_durability_histograms(self):
        """A durable write is counted in the commit, WAL-flush histograms; each
        histogram's buckets are cumulative and end at its count."""
        c = self.env.client(None)

        def histograms():
            body = c.get("/metrics").body
            out = {}
            for name in ("jifen_writer_commit_seconds", "jifen_wal_flush_seconds",
                         "jifen_checkpoint_seconds", "jifen_wal_restart_seconds"):
                buckets = [int(v) for v in re.findall(
                    r'(?m)^%s_bucket\{le="[^"]+"\} (\d+)$' % name, body)]
                count = re.search(r"(?m)^%s_count (\d+)$" % name, body)
                total = re.search(r"(?m)^%s_sum ([0-9.eE+\-]+)$" % name, body)
                self.assertTrue(buckets and count and total, name)
                self.assertEqual(buckets, sorted(buckets), name)
                self.assertEqual(buckets[-1], int(count.group(1)), name)
                out[name] = int(count.group(1))
            return out

        before = histograms()
        self.funded(10)
        after = histograms()
        self.assertGreater(after["jifen_writer_commit_seconds"],
                           before["jifen_writer_commit_seconds"])
        self.assertGreater(after["jifen_wal_flush_seconds"], before["jifen_wal_flush_seconds"])

    def counter_grows_with_writes(self, name):
        """Writes until /metrics counter `name` grows (within 20 s): a
        checkpoint pass leaves the newest commits to the next (engine.c, the
        WAL-reset guard), so nothing is copied once writes stop.  40 of
        these are well over JF_CHECKPOINT_PACE_BYTES."""
        c = self.env.client(None)

        def value():
            m = re.search(r"(?m)^%s (\d+)$" % name, c.get("/metrics").body)
            self.assertTrue(m, name)
            return int(m.group(1))

        before = value()
        deadline = time.monotonic() + 20
        while value() == before and time.monotonic() < deadline:
            for _ in range(10):
                self.funded(10)
            time.sleep(0.1)
        self.assertGreater(value(), before)

    def test_metrics_checkpoint_writes_are_paced(self):
        """The checkpointer's copies reach the disk in paced write-backs
        (src/store/walbuf.c), counted by jifen_checkpoint_writebacks_total."""
        self.counter_grows_with_writes("jifen_checkpoint_writebacks_total")

    def test_metrics_wal_frames_read_through_the_map(self):
        """The checkpointer reads the frames it copies through the process's
        map of the WAL (src/store/walbuf.c, wal_read), counted by
        jifen_wal_map_reads_total."""
        self.counter_grows_with_writes("jifen_wal_map_reads_total")

    # ---------------------------------------------------------------- members

    def test_member_create_shape(self):
        ext = "shape-" + uuid.uuid4().hex
        r = self.env.admin.post("/v1/members", {"external_id": ext, "name": "Zhang San",
                                                "phone": "13800000000", "birthday": "1990-05-17",
                                                "tags": ["vip", "gold"]})
        m = self.assertStatus(r, 201, "create member")
        self.assertJson(r)
        self.assertMember(m)
        self.assertEqual(m["external_id"], ext)
        self.assertEqual(m["name"], "Zhang San")
        self.assertEqual(m["phone"], "13800000000")
        self.assertEqual(m["birthday"], "1990-05-17")
        self.assertEqual(sorted(m["tags"]), ["gold", "vip"])
        self.assertEqual(m["status"], "active")
        self.assertPoints3(m["points"], 0, 0, 0)
        self.assertEqual(m["debt"], 0)
        # minimal member: optional fields are null / empty
        m2 = self.member()
        self.assertMember(m2)
        self.assertIsNone(m2["name"])
        self.assertIsNone(m2["phone"])
        self.assertIsNone(m2["birthday"])
        self.assertEqual(m2["tags"], [])
        # GET returns the same
        g = self.assertStatus(self.env.admin.get("/v1/members/" + m["id"]), 200, "get")
        self.assertMember(g)
        for f in ("id", "external_id", "name", "phone", "birthday", "status", "points", "debt",
                  "created_at"):
            self.assertEqual(g[f], m[f], f)

    def test_member_get_external(self):
        for ext in ("ext plain " + uuid.uuid4().hex[:6], "张三-" + uuid.uuid4().hex[:6],
                    "wx+o=penid&x?" + uuid.uuid4().hex[:6]):
            with self.subTest(ext=ext):
                m = self.member(external_id=ext)
                r = self.env.admin.get("/v1/members/external/" + q(ext))
                g = self.assertStatus(r, 200, "get external %r" % ext)
                self.assertMember(g)
                self.assertEqual(g["id"], m["id"])
                self.assertEqual(g["external_id"], ext)
        r = self.env.admin.get("/v1/members/external/" + q("no-such-" + uuid.uuid4().hex))
        self.assertProblem(r, 404, "not_found")

    def test_member_get_external_with_slash(self):
        # spec.md: the path id is the percent-decoded external_id.
        ext = "shop/1/" + uuid.uuid4().hex[:6]
        m = self.member(external_id=ext)
        r = self.env.admin.get("/v1/members/external/" + q(ext))
        g = self.assertStatus(r, 200, "get external with %%2F: %r" % ext)
        self.assertEqual(g["id"], m["id"])

    def test_member_patch(self):
        m = self.member(name="Old", phone="1", tags=["a"], birthday="2000-01-02")
        r = self.op.patch("/v1/members/" + m["id"], {"name": "New", "tags": ["b", "c"]})
        u = self.assertStatus(r, 200, "patch")
        self.assertMember(u)
        self.assertEqual(u["name"], "New")
        self.assertEqual(sorted(u["tags"]), ["b", "c"])
        self.assertEqual(u["phone"], "1")
        r = self.op.patch("/v1/members/" + m["id"], {"name": None, "phone": None,
                                                      "birthday": None, "tags": None})
        u = self.assertStatus(r, 200, "patch null clears")
        self.assertIsNone(u["name"])
        self.assertIsNone(u["phone"])
        self.assertIsNone(u["birthday"])
        self.assertEqual(u["tags"], [])
        self.assertEqual(u["external_id"], m["external_id"])
        g = H.member_of(self.env.admin, m["id"])
        self.assertIsNone(g["name"])
        # external_id is not patchable
        r = self.op.patch("/v1/members/" + m["id"], {"external_id": "x"})
        self.assertProblem(r, 400, "unknown_field")
        r = self.op.patch("/v1/members/" + m["id"], {"status": "sleeping"})
        self.assertProblem(r, 400, "invalid_field")

    def test_member_status_frozen_and_closed(self):
        a = self.funded(100)
        b = self.funded(100)
        c = self.env.admin
        u = self.assertStatus(c.patch("/v1/members/" + a["id"], {"status": "frozen"}), 200, "")
        self.assertEqual(u["status"], "frozen")
        self.assertProblem(H.earn(c, a["id"], 5), 422, "member_frozen")
        self.assertProblem(H.redeem(c, a["id"], 5), 422, "member_frozen")
        self.assertProblem(c.post("/v1/members/%s/holds" % a["id"], {"points": 5}, idem=True),
                           422, "member_frozen")
        # recipient frozen
        self.assertProblem(c.post("/v1/members/%s/transfer" % b["id"],
                                  {"to_member_id": a["id"], "points": 5}, idem=True),
                           422, "member_frozen")
        self.assertEqual(self.pts(a["id"])["available"], 100)
        self.assertEqual(self.pts(b["id"])["available"], 100)
        # unfreeze
        self.assertStatus(c.patch("/v1/members/" + a["id"], {"status": "active"}), 200, "")
        self.assertPointsResult(H.earn(c, a["id"], 5), "earn", 5)
        # close: final
        u = self.assertStatus(c.patch("/v1/members/" + a["id"], {"status": "closed"}), 200, "")
        self.assertEqual(u["status"], "closed")
        self.assertProblem(H.earn(c, a["id"], 5), 422, "member_closed")
        self.assertProblem(H.redeem(c, a["id"], 5), 422, "member_closed")
        self.assertProblem(c.patch("/v1/members/" + a["id"], {"status": "active"}), 422,
                           "member_closed")
        self.assertProblem(c.patch("/v1/members/" + a["id"], {"name": "again"}), 422,
                           "member_closed")
        self.assertProblem(c.post("/v1/members/%s/transfer" % b["id"],
                                  {"to_member_id": a["id"], "points": 5}, idem=True),
                           422, "member_closed")
        self.assertEqual(self.pts(b["id"])["available"], 100)
        self.assertEqual(H.member_of(c, a["id"])["status"], "closed")

    # ---------------------------------------------------------------- points ops shapes

    def test_earn_redeem_adjust_shapes_and_actor(self):
        m = self.member()
        r = self.pos.post("/v1/members/%s/earn" % m["id"],
                          {"points": 120, "channel": "pos", "store_id": "s1", "note": "n",
                           "metadata": {"k": "v", "n": 1}}, idem=True)
        b = self.assertPointsResult(r, "earn", 120)
        t = b["transaction"]
        self.assertEqual(t["member_id"], m["id"])
        self.assertEqual(t["actor"], self.pos_id)
        self.assertEqual(t["channel"], "pos")
        self.assertEqual(t["store_id"], "s1")
        self.assertEqual(t["note"], "n")
        self.assertEqual(t["metadata"], {"k": "v", "n": 1})
        self.assertIsNone(t["reverses"])
        self.assertEqual(t["reversed_points"], 0)
        self.assertIsNone(t["order"])
        self.assertIsNone(t["counterparty_member_id"])
        self.assertIsNone(t["hold_id"])
        self.assertPoints3(b["points"], 120)
        r = self.pos.post("/v1/members/%s/redeem" % m["id"], {"points": 20, "reason": "gift"},
                          idem=True)
        b = self.assertPointsResult(r, "redeem", 20)
        self.assertEqual(b["transaction"]["reason"], "gift")
        self.assertPoints3(b["points"], 100)
        r = self.op.post("/v1/members/%s/adjust" % m["id"], {"points": -30, "reason": "fix"},
                         idem=True)
        b = self.assertPointsResult(r, "adjust", 30)
        self.assertEqual(b["transaction"]["reason"], "fix")
        self.assertEqual(b["transaction"]["actor"], self.op_id)
        self.assertPoints3(b["points"], 70)
        r = self.op.post("/v1/members/%s/adjust" % m["id"], {"points": 5, "reason": "bonus"},
                         idem=True)
        b = self.assertPointsResult(r, "adjust", 5)
        self.assertPoints3(b["points"], 75)
        p = self.pts(m["id"])
        self.assertFields(p, POINTS_FIELDS, "points")
        self.assertEqual(p["member_id"], m["id"])
        self.assertTime(p["as_of"])
        self.assertEqual((p["balance"], p["available"], p["pending"], p["held"], p["debt"]),
                         (75, 75, 0, 0, 0))
        g = H.member_of(self.env.admin, m["id"])
        self.assertPoints3(g["points"], 75)

    def test_transaction_get_postings_consumptions(self):
        m = self.member()
        b = self.assertPointsResult(H.earn(self.env.admin, m["id"], 50), "earn", 50)
        tid = b["transaction"]["id"]
        t = self.txn(tid)
        self.assertIn("postings", t)
        self.assertIn("consumptions", t)
        self.assertIn("hash", t)
        self.assertRegex(t["hash"], r"^[0-9a-f]{16,}$")
        post = {p["account"]: p["amount"] for p in t["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: 50, "program:issuance": -50})
        self.assertEqual(sum(p["amount"] for p in t["postings"]), 0)
        rb = self.assertPointsResult(H.redeem(self.env.admin, m["id"], 20), "redeem", 20)
        t2 = self.txn(rb["transaction"]["id"])
        post = {p["account"]: p["amount"] for p in t2["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: -20, "program:redemption": 20})
        lot = self.lots(m["id"])[0]
        self.assertEqual(t2["consumptions"], [{"lot_id": lot["id"], "amount": 20}])
        self.assertEqual(lot["transaction_id"], tid)
        self.assertProblem(self.env.admin.get("/v1/transactions/txn_00000000000000000000"),
                           404, "not_found")

    def test_member_transactions_and_transaction_list(self):
        m = self.member()
        ids = []
        for n in (1, 2, 3):
            ids.append(self.assertPointsResult(H.earn(self.env.admin, m["id"], n))
                       ["transaction"]["id"])
        b = self.assertList(self.env.admin.get("/v1/members/%s/transactions" % m["id"]))
        self.assertEqual([t["id"] for t in b["data"]], ids[::-1], "newest first")
        for t in b["data"]:
            self.assertTxn(t)
        b = self.assertList(self.env.admin.get("/v1/members/%s/transactions" % m["id"],
                                               params={"limit": 2}))
        self.assertEqual(len(b["data"]), 2)
        self.assertIsNotNone(b["next_cursor"])
        b2 = self.assertList(self.env.admin.get("/v1/members/%s/transactions" % m["id"],
                                                params={"limit": 2,
                                                        "cursor": b["next_cursor"]}))
        self.assertEqual([t["id"] for t in b["data"] + b2["data"]], ids[::-1])
        self.assertIsNone(b2["next_cursor"])
        # global list with filters
        b = self.assertList(self.env.admin.get("/v1/transactions",
                                               params={"member_id": m["id"], "type": "earn"}))
        self.assertEqual([t["id"] for t in b["data"]], ids[::-1])
        b = self.assertList(self.env.admin.get("/v1/transactions",
                                               params={"member_id": m["id"], "type": "redeem"}))
        self.assertEqual(b["data"], [])
        b = self.assertList(self.env.admin.get("/v1/transactions", params={"limit": 1}))
        self.assertEqual(len(b["data"]), 1)

    def test_transfer_shape(self):
        a = self.funded(100)
        b = self.member()
        r = self.pos.post("/v1/members/%s/transfer" % a["id"],
                          {"to_member_id": b["id"], "points": 40, "note": "gift"}, idem=True)
        res = self.assertPointsResult(r, "transfer", 40)
        self.assertIn("to_points", res)
        self.assertPoints3(res["points"], 60)
        self.assertPoints3(res["to_points"], 40)
        t = res["transaction"]
        self.assertEqual(t["member_id"], a["id"])
        self.assertEqual(t["counterparty_member_id"], b["id"])
        full = self.txn(t["id"])
        post = {p["account"]: p["amount"] for p in full["postings"]}
        self.assertEqual(post, {"member:%s:points" % a["id"]: -40,
                                "member:%s:points" % b["id"]: 40})
        self.assertProblem(self.pos.post("/v1/members/%s/transfer" % a["id"],
                                         {"to_member_id": a["id"], "points": 1}, idem=True),
                           422, "same_member")
        self.assertProblem(self.pos.post("/v1/members/%s/transfer" % a["id"],
                                         {"to_member_id": "mem_00000000000000000000",
                                          "points": 1}, idem=True), 404, "not_found")
        self.assertProblem(self.pos.post("/v1/members/%s/transfer" % a["id"],
                                         {"points": 1}, idem=True), 400, "missing_field")

    def test_hold_shapes_capture_void(self):
        m = self.funded(100)
        c = self.pos
        r = c.post("/v1/members/%s/holds" % m["id"], {"points": 60, "ttl_seconds": 600,
                                                      "order": {"id": "o-" + uuid.uuid4().hex},
                                                      "note": "checkout"}, idem=True)
        res = self.assertPointsResult(r, "hold", 60)
        self.assertIn("hold", res)
        h = res["hold"]
        self.assertHold(h)
        self.assertEqual(h["id"], res["transaction"]["id"])
        self.assertEqual((h["member_id"], h["points"], h["captured"], h["released"],
                          h["status"]), (m["id"], 60, 0, 0, "open"))
        self.assertEqual(parse_time(h["expires_at"]) - parse_time(h["created_at"]), 600000)
        self.assertPoints3(res["points"], 40, 0, 60)
        g = self.assertStatus(self.ro.get("/v1/holds/" + h["id"]), 200, "GET hold")
        self.assertHold(g)
        self.assertEqual(g["status"], "open")
        hl = self.assertList(self.ro.get("/v1/members/%s/holds" % m["id"],
                                         params={"status": "open"}))
        self.assertEqual([x["id"] for x in hl["data"]], [h["id"]])
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["held"]), (40, 40, 60))
        # capture more than held
        self.assertProblem(c.post("/v1/holds/%s/capture" % h["id"], {"points": 61}, idem=True),
                           422, "capture_exceeds_hold")
        # capture part: the rest is released
        r = c.post("/v1/holds/%s/capture" % h["id"], {"points": 25}, idem=True)
        res = self.assertPointsResult(r, "capture", 25)
        self.assertEqual(res["transaction"]["hold_id"], h["id"])
        hh = res["hold"]
        self.assertHold(hh)
        self.assertEqual((hh["status"], hh["captured"], hh["released"]), ("captured", 25, 35))
        self.assertPoints3(res["points"], 75, 0, 0)
        full = self.txn(res["transaction"]["id"])
        post = {p["account"]: p["amount"] for p in full["postings"]}
        self.assertEqual(post, {"member:%s:held" % m["id"]: -60, "program:redemption": 25,
                                "member:%s:points" % m["id"]: 35})
        self.assertProblem(c.post("/v1/holds/%s/capture" % h["id"], {}, idem=True), 422,
                           "hold_not_open")
        self.assertProblem(c.post("/v1/holds/%s/void" % h["id"], {}, idem=True), 422,
                           "hold_not_open")
        hl = self.assertList(self.ro.get("/v1/members/%s/holds" % m["id"],
                                         params={"status": "open"}))
        self.assertEqual(hl["data"], [])
        hl = self.assertList(self.ro.get("/v1/members/%s/holds" % m["id"],
                                         params={"status": "all"}))
        self.assertEqual([x["id"] for x in hl["data"]], [h["id"]])
        self.assertProblem(self.ro.get("/v1/members/%s/holds" % m["id"],
                                       params={"status": "captured"}), 400, "invalid_request")
        # hold -> void
        r = c.post("/v1/members/%s/holds" % m["id"], {"points": 30}, idem=True)
        h2 = self.assertPointsResult(r, "hold", 30)["hold"]
        self.assertEqual(parse_time(h2["expires_at"]) - parse_time(h2["created_at"]), 900000,
                         "default ttl 900 s")
        r = c.post("/v1/holds/%s/void" % h2["id"], {}, idem=True)
        res = self.assertPointsResult(r, "void", 30)
        self.assertEqual((res["hold"]["status"], res["hold"]["captured"],
                          res["hold"]["released"]), ("voided", 0, 30))
        self.assertPoints3(res["points"], 75, 0, 0)
        self.assertProblem(c.post("/v1/holds/%s/void" % h2["id"], {}, idem=True), 422,
                           "hold_not_open")
        self.assertProblem(c.post("/v1/holds/%s/capture" % h2["id"], {}, idem=True), 422,
                           "hold_not_open")
        # capture {} captures all
        r = c.post("/v1/members/%s/holds" % m["id"], {"points": 10}, idem=True)
        h3 = self.assertPointsResult(r, "hold", 10)["hold"]
        res = self.assertPointsResult(c.post("/v1/holds/%s/capture" % h3["id"], {}, idem=True),
                                      "capture", 10)
        self.assertEqual((res["hold"]["captured"], res["hold"]["released"]), (10, 0))
        self.assertPoints3(res["points"], 65, 0, 0)
        # hold more than available
        self.assertProblem(c.post("/v1/members/%s/holds" % m["id"], {"points": 66}, idem=True),
                           422, "insufficient_points")
        self.assertProblem(self.ro.get("/v1/holds/txn_00000000000000000000"), 404, "not_found")

    def test_reverse_shapes_and_errors(self):
        m = self.funded(0)
        e = self.assertPointsResult(H.earn(self.env.admin, m["id"], 100), "earn", 100)
        eid = e["transaction"]["id"]
        r = self.op.post("/v1/transactions/%s/reverse" % eid, {"points": 30, "reason": "refund"},
                         idem=True)
        res = self.assertPointsResult(r, "reverse", 30)
        self.assertEqual(res["transaction"]["reverses"], eid)
        self.assertEqual(res["transaction"]["reason"], "refund")
        self.assertPoints3(res["points"], 70)
        self.assertEqual(self.txn(eid)["reversed_points"], 30)
        self.assertProblem(self.op.post("/v1/transactions/%s/reverse" % eid, {"points": 71},
                                        idem=True), 422, "reversal_exceeds_original")
        res = self.assertPointsResult(self.op.post("/v1/transactions/%s/reverse" % eid, {},
                                                   idem=True), "reverse", 70)
        self.assertPoints3(res["points"], 0)
        self.assertEqual(self.txn(eid)["reversed_points"], 100)
        self.assertProblem(self.op.post("/v1/transactions/%s/reverse" % eid, {}, idem=True),
                           422, "reversal_exceeds_original")
        # not reversible: a hold, a void, a reverse
        H.earn(self.env.admin, m["id"], 10)
        h = self.assertPointsResult(self.pos.post("/v1/members/%s/holds" % m["id"],
                                                  {"points": 5}, idem=True), "hold", 5)
        self.assertProblem(self.op.post("/v1/transactions/%s/reverse" % h["hold"]["id"], {},
                                        idem=True), 422, "not_reversible")
        v = self.assertPointsResult(self.pos.post("/v1/holds/%s/void" % h["hold"]["id"], {},
                                                  idem=True), "void", 5)
        self.assertProblem(self.op.post("/v1/transactions/%s/reverse"
                                        % v["transaction"]["id"], {}, idem=True),
                           422, "not_reversible")
        self.assertProblem(self.op.post("/v1/transactions/%s/reverse"
                                        % res["transaction"]["id"], {}, idem=True),
                           422, "not_reversible")
        self.assertProblem(self.op.post("/v1/transactions/txn_00000000000000000000/reverse",
                                        {}, idem=True), 404, "not_found")

    # ---------------------------------------------------------------- program, keys, clock

    def test_program_get(self):
        r = self.ro.get("/v1/program")
        p = self.assertStatus(r, 200, "program")
        self.assertJson(r)
        self.assertProgram(p)
        self.assertEqual(p["currency"], "CNY")
        self.assertEqual(p["earn_rate"], {"points": 1, "per_amount": 100})
        self.assertEqual(p["expiry"], {"policy": "never"})
        self.assertEqual(p["pending_days"], 0)
        self.assertEqual(p["debt_floor"], 0)
        self.assertEqual(p["timezone"], "Asia/Shanghai")
        self.assertEqual(p["hold_ttl_seconds"], 900)
        self.assertEqual(p["operator_adjust_max"], 10000)

    def test_program_patch_errors(self):
        c = self.env.admin
        self.assertProblem(c.patch("/v1/program", {"timezone": "Mars/Olympus_Mons"}), 422,
                           "unknown_timezone")
        self.assertEqual(self.ro.get("/v1/program").body["timezone"], "Asia/Shanghai")
        self.assertProblem(c.patch("/v1/program", {"earn_rate": {"points": 1,
                                                                 "per_amount": 0}}),
                           400, "invalid_field")
        self.assertProblem(c.patch("/v1/program", {"expiry": {"policy": "sometimes"}}),
                           400, "invalid_field")
        self.assertProblem(c.patch("/v1/program", {"expiry": {"policy": "days_after_earn",
                                                              "days": 0}}),
                           400, "invalid_field")
        self.assertProblem(c.patch("/v1/program", {"currency": "cny"}), 400, "invalid_field")
        self.assertProblem(c.patch("/v1/program", {"nonsense": 1}), 400, "unknown_field")
        for body, code in [({"earn_rate": 100}, "invalid_field"),
                           ({"earn_rate": {"points": 1, "per_amount": 100, "x": 1}},
                            "unknown_field"),
                           ({"expiry": "never"}, "invalid_field"),
                           ({"expiry": {"policy": "never", "months": 1}}, "unknown_field"),
                           ({"expiry": {"policy": "days_after_earn", "months": 1}},
                            "unknown_field"),
                           ({"expiry": {"policy": "end_of_month", "days": 30}},
                            "unknown_field"),
                           ({"expiry": {"policy": "end_of_quarter"}}, "missing_field"),
                           ({"expiry": {"days": 30}}, "missing_field")]:
            self.assertProblem(c.patch("/v1/program", body), 400, code)
        p = self.ro.get("/v1/program").body
        self.assertEqual(p["earn_rate"], {"points": 1, "per_amount": 100})
        self.assertEqual(p["expiry"], {"policy": "never"})
        self.assertEqual(p["currency"], "CNY")

    def test_program_patch_name_only(self):
        c = self.env.admin
        p = self.assertStatus(c.patch("/v1/program", {"name": "My Shop"}), 200, "patch name")
        self.assertProgram(p)
        self.assertEqual(p["name"], "My Shop")
        self.assertEqual(p["currency"], "CNY")
        self.assertEqual(self.ro.get("/v1/program").body["name"], "My Shop")

    def test_api_keys(self):
        c = self.env.admin
        r = c.post("/v1/api-keys", {"name": "till 7", "role": "pos"})
        k = self.assertStatus(r, 201, "create key")
        self.assertFields(k, KEY_FIELDS + ["api_key"], "key")
        self.assertTrue(k["id"].startswith("key_"), k)
        self.assertTrue(k["api_key"].startswith("jf_"), k)
        self.assertEqual((k["name"], k["role"], k["revoked_at"]), ("till 7", "pos", None))
        self.assertTime(k["created_at"])
        kc = self.env.client(k["api_key"])
        self.assertStatus(kc.get("/v1/program"), 200, "new key works")
        lst = H.list_all(c, "/v1/api-keys")
        mine = [x for x in lst if x["id"] == k["id"]]
        self.assertEqual(len(mine), 1)
        self.assertFields(mine[0], KEY_FIELDS, "listed key")
        for x in lst:
            self.assertNotIn("api_key", x)
            self.assertNotIn(k["api_key"], json.dumps(x))
        secret = k["api_key"].split("_")[-1]
        if len(secret) >= 16:
            self.assertNotIn(secret, json.dumps(lst))
        r = c.delete("/v1/api-keys/" + k["id"])
        rk = self.assertStatus(r, 200, "revoke")
        self.assertFields(rk, KEY_FIELDS, "revoked key")
        self.assertTime(rk["revoked_at"])
        self.assertNotIn("api_key", rk)
        self.assertProblem(kc.get("/v1/program"), 401, "unauthorized")
        self.assertProblem(c.post("/v1/api-keys", {"role": "superuser"}), 400, "invalid_field")
        self.assertProblem(c.post("/v1/api-keys", {"name": "x"}), 400, "missing_field")
        self.assertProblem(c.delete("/v1/api-keys/key_00000000000000000000"), 404, "not_found")

    def test_clock_get_put(self):
        c = self.env.admin
        r = c.get("/v1/test/clock")
        b = self.assertStatus(r, 200, "clock")
        self.assertTime(b["now"])
        now = parse_time(b["now"])
        b = self.assertStatus(c.put("/v1/test/clock", {"now": fmt_time(now + 1000)}), 200, "")
        self.assertGreaterEqual(parse_time(b["now"]), now + 1000)
        # offsets are accepted on input
        t = parse_time(b["now"]) + 3600000
        off = fmt_time(t + 8 * 3600000).replace("Z", "+08:00")
        b = self.assertStatus(c.put("/v1/test/clock", {"now": off}), 200, "offset input")
        self.assertEqual(parse_time(b["now"]), t)
        self.assertProblem(c.put("/v1/test/clock", {"now": fmt_time(t - 60000)}), 422,
                           "test_clock_backwards")
        self.assertProblem(c.put("/v1/test/clock", {"now": "yesterday"}), 400, "invalid_field")
        self.assertGreaterEqual(H.clock_now(c), t)

    # ---------------------------------------------------------------- errors

    def test_unauthorized(self):
        c = self.env.client(None)
        for key in (None, "garbage", "jf_key_00000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAA",
                    self.env.t1["api_key"] + "x", ""):
            with self.subTest(key=key):
                r = c.get("/v1/program", key=key)
                self.assertProblem(r, 401, "unauthorized")
        r = c.get("/v1/program", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        self.assertProblem(r, 401, "unauthorized")
        r = c.post("/v1/members", {"external_id": "x"}, key=None)
        self.assertProblem(r, 401, "unauthorized")

    def test_forbidden(self):
        self.assertProblem(self.ro.post("/v1/members", {"external_id": "ro-" +
                                                        uuid.uuid4().hex}), 403, "forbidden")
        m = self.member()
        self.assertProblem(self.pos.patch("/v1/members/" + m["id"], {"name": "x"}), 403,
                           "forbidden")
        self.assertProblem(self.op.patch("/v1/program", {"name": "x"}), 403, "forbidden")
        self.assertProblem(self.pos.post("/v1/members/%s/adjust" % m["id"],
                                         {"points": 1, "reason": "r"}, idem=True),
                           403, "forbidden")
        self.assertProblem(self.op.get("/v1/api-keys"), 403, "forbidden")
        self.assertProblem(self.op.get("/v1/test/clock"), 403, "forbidden")

    def test_not_found(self):
        c = self.env.admin
        self.assertProblem(c.get("/v1/members/mem_00000000000000000000"), 404, "not_found")
        self.assertProblem(c.get("/v1/members/nonsense"), 404, "not_found")
        self.assertProblem(H.earn(c, "mem_00000000000000000000", 1), 404, "not_found")
        self.assertProblem(c.get("/v1/nope"), 404, "not_found")
        self.assertProblem(c.get("/v2/members"), 404, "not_found")
        self.assertProblem(c.get("/v1/members/x/y/z"), 404, "not_found")

    def test_method_not_allowed(self):
        c = self.env.admin
        m = self.member()
        for method, path in (("DELETE", "/v1/members"), ("PUT", "/v1/program"),
                             ("GET", "/v1/members/%s/earn" % m["id"]),
                             ("DELETE", "/v1/members/%s" % m["id"]),
                             ("POST", "/v1/program"), ("PATCH", "/v1/api-keys")):
            with self.subTest(method=method, path=path):
                body = {} if method in ("PUT", "POST", "PATCH") else None
                r = c.request(method, path, body, idem=True)
                self.assertProblem(r, 405, "method_not_allowed")

    def test_invalid_json(self):
        m = self.member()
        # A token that reads "duplicate" or "too big" is a syntax error, not
        # duplicate_field or amount_out_of_range (jansson's message quoted the
        # token, and the server used to match on its text); a NUL byte after
        # a number is not the body's end.
        for raw in ('{"points": ', "points=1", '{"points": 1}}', "\xff\xfe", "",
                    '{"points": duplicate}', '{"points": too_big}', '{"points": 5\x00}'):
            with self.subTest(raw=raw):
                r = self.env.admin.post("/v1/members/%s/earn" % m["id"],
                                        raw.encode("latin-1"), idem=True)
                if raw == "":
                    # an empty body for a command that needs one
                    self.assertEqual(r.status, 400, r)
                    self.assertIn(r.code, ("invalid_json", "missing_field"), r)
                else:
                    self.assertProblem(r, 400, "invalid_json")
        self.assertEqual(self.pts(m["id"])["available"], 0)

    def test_odd_bodies_are_400(self):
        m = self.member()
        for raw in ('[]', '5', '"points"', 'null', '{"points": 1e2}'):
            with self.subTest(raw=raw):
                r = self.env.admin.post("/v1/members/%s/earn" % m["id"], raw, idem=True)
                self.assertEqual(r.status, 400, r)
                self.assertIn(r.code, ("invalid_json", "invalid_request", "invalid_field",
                                       "missing_field"), r)
                self.assertProblem(r, 400, r.code)
        self.assertEqual(self.pts(m["id"])["available"], 0)

    def test_earn_with_points_and_order_records_the_order(self):
        # docs/LEDGER.md: explicit points win over the earn rate; the order is kept as the
        # reference (and an order earns only once).
        m = self.member()
        oid = "both-" + uuid.uuid4().hex
        r = H.earn(self.env.admin, m["id"], 5, order={"id": oid, "amount": 100,
                                                       "currency": "CNY"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.body["transaction"]["points"], 5)
        self.assertEqual(r.body["transaction"]["order"]["id"], oid)
        self.assertEqual(self.pts(m["id"])["available"], 5)
        r = H.earn(self.env.admin, m["id"], 7, order={"id": oid})
        self.assertProblem(r, 409, "order_already_earned")
        self.assertEqual(self.pts(m["id"])["available"], 5)

    def test_unknown_field(self):
        m = self.member()
        r = H.earn(self.env.admin, m["id"], 1, bogus=1)
        self.assertProblem(r, 400, "unknown_field")
        r = self.env.admin.post("/v1/members", {"external_id": "u-" + uuid.uuid4().hex,
                                                "email": "a@b"})
        self.assertProblem(r, 400, "unknown_field")
        r = self.env.admin.post("/v1/members/%s/earn" % m["id"],
                                {"order": {"id": "o", "amount": 1, "currency": "CNY", "x": 1}},
                                idem=True)
        self.assertProblem(r, 400, "unknown_field")
        self.assertEqual(self.pts(m["id"])["available"], 0)

    def test_duplicate_field(self):
        m = self.member()
        r = self.env.admin.post("/v1/members/%s/earn" % m["id"], '{"points":1,"points":2}',
                                idem=True)
        self.assertProblem(r, 400, "duplicate_field")
        r = self.env.admin.post("/v1/members", '{"external_id":"d1","external_id":"d2"}')
        self.assertProblem(r, 400, "duplicate_field")
        r = self.env.admin.post("/v1/members/%s/earn" % m["id"],
                                '{"order":{"id":"a","id":"b","amount":100,"currency":"CNY"}}',
                                idem=True)
        self.assertProblem(r, 400, "duplicate_field")
        self.assertEqual(self.pts(m["id"])["available"], 0)

    def test_missing_field(self):
        m = self.member()
        self.assertProblem(self.env.admin.post("/v1/members", {"name": "x"}), 400,
                           "missing_field")
        self.assertProblem(self.op.post("/v1/members/%s/adjust" % m["id"], {"points": 5},
                                        idem=True), 400, "missing_field")
        self.assertProblem(self.pos.post("/v1/members/%s/redeem" % m["id"], {}, idem=True), 400,
                           "missing_field")
        self.assertProblem(self.pos.post("/v1/members/%s/earn" % m["id"],
                                         {"order": {"amount": 100, "currency": "CNY"}},
                                         idem=True), 400, "missing_field")
        r = self.ro.get("/v1/expiry/forecast")  # a required query parameter
        self.assertEqual(r.status, 400, r)
        self.assertIn(r.code, ("missing_field", "invalid_request"), r)
        self.assertProblem(r, 400, r.code)
        self.assertProblem(self.env.admin.put("/v1/test/clock", {}), 400, "missing_field")

    def test_invalid_field(self):
        m = self.member()
        c = self.env.admin
        cases = [
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": "10"}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": 0}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": -5}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": 1.5}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": 5, "pending_days": 3651}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": 5, "expires_at": "soon"}),
            ("POST", "/v1/members/%s/redeem" % m["id"], {"points": 0}),
            ("POST", "/v1/members/%s/adjust" % m["id"], {"points": 0, "reason": "r"}),
            ("POST", "/v1/members/%s/adjust" % m["id"], {"points": 3, "reason": ""}),
            ("POST", "/v1/members", {"external_id": ""}),
            ("POST", "/v1/members", {"external_id": "x" * 129}),
            ("POST", "/v1/members", {"external_id": "b-" + uuid.uuid4().hex,
                                     "birthday": "1990-13-01"}),
            ("POST", "/v1/members", {"external_id": "t-" + uuid.uuid4().hex, "tags": "vip"}),
            ("POST", "/v1/members", {"external_id": 12345}),
            ("POST", "/v1/members", {"external_id": "tg-" + uuid.uuid4().hex,
                                     "tags": ["t%d" % i for i in range(33)]}),
            ("POST", "/v1/members", {"external_id": "tl-" + uuid.uuid4().hex,
                                     "tags": ["x" * 65]}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": 5,
                                                       "metadata": {"k": "v" * 5000}}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"points": 5, "metadata": "text"}),
            ("POST", "/v1/members/%s/earn" % m["id"], {"order": {"id": "o1", "amount": -1,
                                                                 "currency": "CNY"}}),
            ("POST", "/v1/members/%s/holds" % m["id"], {"points": 1, "ttl_seconds": 0}),
            ("POST", "/v1/members/%s/holds" % m["id"], {"points": 1,
                                                        "ttl_seconds": 2592001}),
        ]
        for method, path, body in cases:
            with self.subTest(body=body):
                r = c.request(method, path, body, idem=True)
                self.assertProblem(r, 400, "invalid_field")
        # query parameters: API.md allows the generic code here
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}):
            with self.subTest(params=params):
                r = c.get("/v1/members", params=params)
                self.assertEqual(r.status, 400, r)
                self.assertProblem(r, 400, r.code)
                self.assertIn(r.code, ("invalid_field", "invalid_request"), r)
        self.assertEqual(self.pts(m["id"])["available"], 0)

    def test_amount_out_of_range(self):
        m = self.funded(10)
        c = self.env.admin
        for path, body in (("earn", {"points": POINTS_MAX + 1}),
                           ("redeem", {"points": POINTS_MAX + 1}),
                           ("adjust", {"points": -(POINTS_MAX + 1), "reason": "r"}),
                           ("earn", {"points": 2**63}),
                           ("earn", {"order": {"id": "big", "amount": POINTS_MAX + 1,
                                               "currency": "CNY"}})):
            with self.subTest(path=path, body=body):
                r = c.post("/v1/members/%s/%s" % (m["id"], path), body, idem=True)
                self.assertProblem(r, 400, "amount_out_of_range")
        self.assertEqual(self.pts(m["id"])["available"], 10)

    def test_invalid_cursor(self):
        for path in ("/v1/members", "/v1/transactions", "/v1/api-keys"):
            with self.subTest(path=path):
                r = self.env.admin.get(path, params={"cursor": "not-a-cursor!!"})
                self.assertProblem(r, 400, "invalid_cursor")

    def test_idempotency_key_required_and_invalid(self):
        m = self.funded(10)
        c = self.env.admin
        h = self.assertPointsResult(self.pos.post("/v1/members/%s/holds" % m["id"],
                                                  {"points": 1}, idem=True), "hold", 1)["hold"]
        e = self.txn(self.assertList(c.get("/v1/members/%s/transactions" % m["id"]))
                     ["data"][-1]["id"])
        other = self.member()
        for path, body in (("/v1/members/%s/earn" % m["id"], {"points": 1}),
                           ("/v1/members/%s/redeem" % m["id"], {"points": 1}),
                           ("/v1/members/%s/adjust" % m["id"], {"points": 1, "reason": "r"}),
                           ("/v1/members/%s/transfer" % m["id"], {"to_member_id": other["id"],
                                                                  "points": 1}),
                           ("/v1/members/%s/holds" % m["id"], {"points": 1}),
                           ("/v1/holds/%s/capture" % h["id"], {}),
                           ("/v1/holds/%s/void" % h["id"], {}),
                           ("/v1/transactions/%s/reverse" % e["id"], {})):
            with self.subTest(path=path):
                self.assertProblem(c.post(path, body), 400, "idempotency_key_required")
                self.assertProblem(c.post(path, body, idem="x" * 129), 400,
                                   "invalid_idempotency_key")
                self.assertProblem(c.post(path, body, idem="bad\x7fkey"), 400,
                                   "invalid_idempotency_key")
        self.assertEqual(self.pts(m["id"])["available"], 9)
        self.assertEqual(self.pts(m["id"])["held"], 1)
        # 128 printable characters (with spaces) are fine
        key = ("k ~" * 43)[:127] + "z"
        self.assertPointsResult(c.post("/v1/members/%s/earn" % m["id"], {"points": 1},
                                       idem=key), "earn", 1)

    def test_member_exists(self):
        ext = "dup-" + uuid.uuid4().hex
        self.member(external_id=ext)
        r = self.env.admin.post("/v1/members", {"external_id": ext})
        self.assertProblem(r, 409, "member_exists")

    def test_order_earn_floor_and_order_already_earned(self):
        m = self.member()
        oid = "order-" + uuid.uuid4().hex
        r = H.earn(self.env.admin, m["id"], order={"id": oid, "amount": 1999, "currency": "CNY"})
        b = self.assertPointsResult(r, "earn", 19)
        self.assertEqual(b["transaction"]["order"], {"id": oid, "amount": 1999,
                                                     "currency": "CNY"})
        self.assertPoints3(b["points"], 19)
        r = H.earn(self.env.admin, m["id"], order={"id": oid, "amount": 500, "currency": "CNY"})
        self.assertProblem(r, 409, "order_already_earned")
        # also for another member of the tenant
        m2 = self.member()
        r = H.earn(self.env.admin, m2["id"], order={"id": oid, "amount": 500, "currency": "CNY"})
        self.assertProblem(r, 409, "order_already_earned")
        # amount below one point: transaction with 0 points and no lot
        r = H.earn(self.env.admin, m["id"], order={"id": oid + "-s", "amount": 99,
                                                   "currency": "CNY"})
        b = self.assertPointsResult(r, "earn", 0)
        self.assertPoints3(b["points"], 19)
        self.assertEqual(len(self.lots(m["id"])), 1)
        self.assertEqual(self.pts(m["id"])["available"], 19)

    def test_currency_mismatch(self):
        m = self.member()
        r = H.earn(self.env.admin, m["id"], order={"id": "usd-" + uuid.uuid4().hex,
                                                   "amount": 1000, "currency": "USD"})
        self.assertProblem(r, 422, "currency_mismatch")
        self.assertEqual(self.pts(m["id"])["available"], 0)

    def test_payload_too_large(self):
        m = self.member()
        body = json.dumps({"points": 1, "note": "x" * (70 * 1024)})
        c = self.env.client(self.env.t1["api_key"])
        try:
            r = c.post("/v1/members/%s/earn" % m["id"], body, idem=True, retry_idle=False)
        except (ConnectionError, OSError) as e:
            self.fail("70 KiB body: connection failed instead of 413: %r" % e)
        self.assertProblem(r, 413, "payload_too_large")
        self.assertEqual(self.pts(m["id"])["available"], 0)
        # the same connection is still usable (or was closed cleanly by the server)
        self.assertStatus(c.get("/v1/members/" + m["id"]), 200, "same client after 413")
        # the server still works afterwards
        self.assertStatus(self.env.admin.get("/v1/program"), 200, "after 413")

    def test_headers_too_large(self):
        """A request line and headers beyond JF_HTTP_CONNECTION_MEMORY_BYTES
        (8 KiB) are refused by libmicrohttpd with 431, nothing written; 5 KiB
        of headers pass."""
        m = self.member()
        c = self.env.client(self.env.t1["api_key"])
        ok = c.get("/v1/members/" + m["id"], headers={"X-Pad": "a" * 5000})
        self.assertStatus(ok, 200, "5 KiB of headers")
        big = self.env.client(self.env.t1["api_key"])
        try:
            r = big.post("/v1/members/%s/earn" % m["id"], {"points": 1}, idem=True,
                         headers={"X-Pad": "a" * 10000}, retry_idle=False)
            self.assertEqual(r.status, 431, r)
        except (ConnectionError, OSError):
            pass  # closed after its answer: the status was not read
        self.assertEqual(self.pts(m["id"])["available"], 0)
        self.assertStatus(self.env.admin.get("/v1/program"), 200, "after 431")

    def test_unsupported_media_type(self):
        c = self.env.admin
        ext = "mt-" + uuid.uuid4().hex
        r = c.post("/v1/members", {"external_id": ext}, content_type="text/plain")
        self.assertProblem(r, 415, "unsupported_media_type")
        r = c.post("/v1/members", {"external_id": ext},
                   content_type="application/x-www-form-urlencoded")
        self.assertProblem(r, 415, "unsupported_media_type")
        r = c.post("/v1/members", {"external_id": ext},
                   content_type="application/json; charset=utf-8")
        self.assertStatus(r, 201, "json with charset")

    def test_insufficient_points(self):
        m = self.funded(50)
        self.assertProblem(H.redeem(self.pos, m["id"], 51), 422, "insufficient_points")
        self.assertProblem(self.op.post("/v1/members/%s/adjust" % m["id"],
                                        {"points": -51, "reason": "r"}, idem=True),
                           422, "insufficient_points")
        other = self.member()
        self.assertProblem(self.pos.post("/v1/members/%s/transfer" % m["id"],
                                         {"to_member_id": other["id"], "points": 51},
                                         idem=True), 422, "insufficient_points")
        self.assertEqual(self.pts(m["id"])["available"], 50)
        self.assertEqual(self.pts(other["id"])["available"], 0)
        self.assertPointsResult(H.redeem(self.pos, m["id"], 50), "redeem", 50)

    def test_adjustment_cap_exceeded(self):
        m = self.funded(20000)
        self.assertProblem(self.op.post("/v1/members/%s/adjust" % m["id"],
                                        {"points": 10001, "reason": "r"}, idem=True),
                           422, "adjustment_cap_exceeded")
        self.assertProblem(self.op.post("/v1/members/%s/adjust" % m["id"],
                                        {"points": -10001, "reason": "r"}, idem=True),
                           422, "adjustment_cap_exceeded")
        self.assertPointsResult(self.op.post("/v1/members/%s/adjust" % m["id"],
                                             {"points": 10000, "reason": "r"}, idem=True),
                                "adjust", 10000)
        self.assertEqual(self.pts(m["id"])["available"], 30000)

    def test_idempotency_key_reused(self):
        m = self.member()
        k = H.idem_key()
        self.assertPointsResult(H.earn(self.env.admin, m["id"], 5, idem=k), "earn", 5)
        self.assertProblem(H.earn(self.env.admin, m["id"], 6, idem=k), 422,
                           "idempotency_key_reused")
        self.assertEqual(self.pts(m["id"])["available"], 5)

    def test_list_members_filters_on_shared(self):
        tag = "tag" + uuid.uuid4().hex[:8]
        m = self.member(tags=[tag], phone="139" + uuid.uuid4().hex[:8])
        b = self.assertList(self.ro.get("/v1/members", params={"tag": tag}))
        self.assertEqual([x["id"] for x in b["data"]], [m["id"]])
        for x in b["data"]:
            self.assertMember(x)


# =====================================================================================
# Ledger scenarios: a fresh server per test (program settings and the clock are
# tenant-wide).
# =====================================================================================

class LedgerTests(unittest.TestCase, Checks):
    def setUp(self):
        self.env = H.start_env(self)
        self.c = self.env.admin

    def set_clock(self, ms):
        self.assertEqual(H.clock_set(self.c, ms), ms)
        return ms

    def lot_by_txn(self, mid, tid):
        got = [lot for lot in self.lots(mid) if lot["transaction_id"] == tid]
        self.assertEqual(len(got), 1, "lots of txn %s: %r" % (tid, got))
        return got[0]

    def test_order_earn_floor_rounding(self):
        m = self.member()
        cases = [(1999, 19), (100, 1), (99, 0), (0, 0), (123456789, 1234567)]
        total = 0
        for i, (amount, pts) in enumerate(cases):
            b = self.assertPointsResult(H.earn(self.c, m["id"], order={
                "id": "ord-%d" % i, "amount": amount, "currency": "CNY"}), "earn", pts)
            total += pts
            self.assertEqual(b["points"]["available"], total)
        H.program_patch(self.c, {"earn_rate": {"points": 3, "per_amount": 7}})
        b = self.assertPointsResult(H.earn(self.c, m["id"], order={
            "id": "ord-x", "amount": 1000, "currency": "CNY"}), "earn", 428)  # floor(3000/7)
        total += 428
        self.assertEqual(b["points"]["available"], total)
        self.assertEqual(len(self.lots(m["id"])), 4)

    def test_points_max_and_overflow(self):
        # a fresh tenant: program:issuance starts at 0, so it can issue POINTS_MAX once
        m = self.member()
        e = self.assertPointsResult(H.earn(self.c, m["id"], POINTS_MAX), "earn", POINTS_MAX)
        self.assertEqual(self.pts(m["id"])["available"], POINTS_MAX)
        self.assertProblem(H.earn(self.c, m["id"], 1), 422, "points_overflow")
        m2 = self.member()
        self.assertProblem(H.earn(self.c, m2["id"], 1), 422, "points_overflow")
        self.assertEqual(self.pts(m["id"])["available"], POINTS_MAX)
        self.assertEqual(self.pts(m2["id"])["available"], 0)
        # a redeem moves points to program:redemption; issuance stays full
        self.assertPointsResult(H.redeem(self.c, m["id"], 5), "redeem", 5)
        self.assertProblem(H.earn(self.c, m2["id"], 1), 422, "points_overflow")
        # reversing part of the earn gives issuance room again
        self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse"
                                            % e["transaction"]["id"], {"points": 5}, idem=True),
                                "reverse", 5)
        self.assertPointsResult(H.earn(self.c, m2["id"], 1), "earn", 1)
        self.assertEqual(self.pts(m["id"])["available"], POINTS_MAX - 10)

    def test_pending_days_then_available(self):
        t0 = self.set_clock(T2030)
        H.program_patch(self.c, {"pending_days": 7})
        m = self.member()
        b = self.assertPointsResult(H.earn(self.c, m["id"], 100), "earn", 100)
        self.assertPoints3(b["points"], 0, 100, 0)
        lot = self.lots(m["id"])[0]
        self.assertEqual(lot["status"], "pending")
        self.assertEqual(parse_time(lot["available_at"]), t0 + 7 * DAY_MS)
        self.assertIsNone(lot["expires_at"])
        self.assertProblem(H.redeem(self.c, m["id"], 1), 422, "insufficient_points")
        # body override: available at once
        b = self.assertPointsResult(H.earn(self.c, m["id"], 10, pending_days=0), "earn", 10)
        self.assertPoints3(b["points"], 10, 100, 0)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["pending"]), (110, 10, 100))
        self.set_clock(t0 + 7 * DAY_MS - 1)
        self.assertEqual(self.pts(m["id"])["pending"], 100)
        self.set_clock(t0 + 7 * DAY_MS)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["pending"]), (110, 110, 0))
        self.assertPoints3(H.member_of(self.c, m["id"])["points"], 110)
        self.assertEqual(self.lot_by_txn(m["id"], lot["transaction_id"])["status"], "available")
        self.assertPointsResult(H.redeem(self.c, m["id"], 110), "redeem", 110)

    def test_expiry_days_after_earn_forecast_run(self):
        t0 = self.set_clock(T2030)
        p = H.program_patch(self.c, {"expiry": {"policy": "days_after_earn", "days": 30}})
        self.assertEqual(p["expiry"], {"policy": "days_after_earn", "days": 30})
        m = self.member()
        never = self.member()
        H.program_patch(self.c, {"expiry": {"policy": "days_after_earn", "days": 30}})
        e = self.assertPointsResult(H.earn(self.c, m["id"], 100), "earn", 100)
        self.assertPointsResult(H.earn(self.c, never["id"], 7,
                                       expires_at=fmt_time(t0 + 400 * DAY_MS)), "earn", 7)
        lot = self.lots(m["id"])[0]
        self.assertEqual(parse_time(lot["expires_at"]), t0 + 30 * DAY_MS)
        # forecast
        r = self.env.client(self.env.key("readonly")[1].key).get(
            "/v1/expiry/forecast", params={"until": fmt_time(t0 + 31 * DAY_MS)})
        f = self.assertStatus(r, 200, "forecast")
        self.assertFields(f, ["until", "total_points", "total_lots", "data", "next_cursor"],
                          "forecast")
        self.assertEqual((f["total_points"], f["total_lots"]), (100, 1))
        self.assertEqual(len(f["data"]), 1)
        self.assertEqual(f["data"][0]["member_id"], m["id"])
        self.assertEqual((f["data"][0]["points"], f["data"][0]["lots"]), (100, 1))
        self.assertEqual(parse_time(f["data"][0]["earliest_expires_at"]), t0 + 30 * DAY_MS)
        self.assertIsNone(f["next_cursor"])
        self.assertEqual(parse_time(f["until"]), t0 + 31 * DAY_MS)
        f = self.assertStatus(self.c.get("/v1/expiry/forecast", params={
            "until": fmt_time(t0 + 30 * DAY_MS - 1)}), 200, "forecast before")
        self.assertEqual((f["total_points"], f["total_lots"], f["data"]), (0, 0, []))
        # nothing is due yet
        r = self.c.post("/v1/expiry/run", {})
        b = self.assertStatus(r, 200, "expiry run early")
        self.assertEqual((b["expired_points"], b["lots"], b["members"]), (0, 0, 0))
        # due: in balance, in neither available nor pending
        self.set_clock(t0 + 30 * DAY_MS)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["pending"]), (100, 0, 0))
        self.assertProblem(H.redeem(self.c, m["id"], 1), 422, "insufficient_points")
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "expiry run")
        self.assertEqual((b["expired_points"], b["lots"], b["members"]), (100, 1, 1))
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "expiry run again")
        self.assertEqual((b["expired_points"], b["lots"], b["members"]), (0, 0, 0))
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["pending"]), (0, 0, 0))
        lot = self.lots(m["id"])[0]
        self.assertEqual((lot["status"], lot["remaining"]), ("expired", 0))
        ts = self.assertList(self.c.get("/v1/members/%s/transactions" % m["id"]))["data"]
        self.assertEqual([t["type"] for t in ts], ["expire", "earn"])
        self.assertEqual(ts[0]["points"], 100)
        x = self.txn(ts[0]["id"])
        post = {p["account"]: p["amount"] for p in x["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: -100, "program:expired": 100})
        self.assertEqual(x["consumptions"], [{"lot_id": lot["id"], "amount": 100}])
        self.assertProblem(self.env.key("operator")[1].post(
            "/v1/transactions/%s/reverse" % ts[0]["id"], {}, idem=True), 422, "not_reversible")
        # the earn is fully expired: reversing it takes from nothing and needs debt
        self.assertProblem(self.c.post("/v1/transactions/%s/reverse" % e["transaction"]["id"],
                                       {}, idem=True), 422, "insufficient_points")
        self.assertEqual(self.pts(never["id"])["available"], 7)
        f = self.assertStatus(self.c.get("/v1/expiry/forecast", params={
            "until": fmt_time(t0 + 31 * DAY_MS)}), 200, "forecast after")
        self.assertEqual(f["total_points"], 0)

    def test_expiry_end_of_month_quarter_year(self):
        # 2030-01-15T04:00Z is 12:00 on Jan 15 in Asia/Shanghai (UTC+8)
        self.set_clock(T2030)
        m = self.member()
        cases = [
            ({"policy": "end_of_month", "months": 0}, "2030-01-31T16:00:00.000Z"),
            ({"policy": "end_of_month", "months": 1}, "2030-02-28T16:00:00.000Z"),
            ({"policy": "end_of_month", "months": 12}, "2031-01-31T16:00:00.000Z"),
            ({"policy": "end_of_quarter", "months": 0}, "2030-03-31T16:00:00.000Z"),
            ({"policy": "end_of_quarter", "months": 3}, "2030-06-30T16:00:00.000Z"),
            ({"policy": "end_of_year", "months": 0}, "2030-12-31T16:00:00.000Z"),
            ({"policy": "end_of_year", "months": 12}, "2031-12-31T16:00:00.000Z"),
        ]
        for expiry, want in cases:
            with self.subTest(expiry=expiry):
                p = H.program_patch(self.c, {"expiry": expiry})
                self.assertEqual(p["expiry"], expiry)
                b = self.assertPointsResult(H.earn(self.c, m["id"], 1), "earn", 1)
                lot = self.lot_by_txn(m["id"], b["transaction"]["id"])
                self.assertEqual(lot["expires_at"], want)
        # due exactly at expires_at: only the first lot (2030-01-31T16:00Z)
        self.set_clock(parse_time("2030-01-31T16:00:00Z"))
        f = self.assertStatus(self.c.get("/v1/expiry/forecast", params={
            "until": "2030-02-01T00:00:00Z"}), 200, "forecast")
        self.assertEqual((f["total_points"], f["total_lots"]), (1, 1))
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run")
        self.assertEqual((b["expired_points"], b["lots"], b["members"]), (1, 1, 1))
        # 2030-01-31T17:00Z is already Feb 1 in Shanghai: end of month is Feb's end
        self.set_clock(parse_time("2030-01-31T17:00:00Z"))
        H.program_patch(self.c, {"expiry": {"policy": "end_of_month", "months": 0}})
        b = self.assertPointsResult(H.earn(self.c, m["id"], 1), "earn", 1)
        self.assertEqual(self.lot_by_txn(m["id"], b["transaction"]["id"])["expires_at"],
                         "2030-02-28T16:00:00.000Z")
        # and in UTC it is still January
        H.program_patch(self.c, {"timezone": "UTC"})
        b = self.assertPointsResult(H.earn(self.c, m["id"], 1), "earn", 1)
        self.assertEqual(self.lot_by_txn(m["id"], b["transaction"]["id"])["expires_at"],
                         "2030-02-01T00:00:00.000Z")
        # positive adjust follows the policy too
        b = self.assertPointsResult(self.c.post("/v1/members/%s/adjust" % m["id"],
                                                {"points": 2, "reason": "r"}, idem=True),
                                    "adjust", 2)
        self.assertEqual(self.lot_by_txn(m["id"], b["transaction"]["id"])["expires_at"],
                         "2030-02-01T00:00:00.000Z")

    def test_redeem_earliest_expiring_first_and_reverse_restores(self):
        t0 = self.set_clock(T2030)
        m = self.member()
        ea = H.earn(self.c, m["id"], 100, expires_at=fmt_time(t0 + 10 * DAY_MS))
        eb = H.earn(self.c, m["id"], 100, expires_at=fmt_time(t0 + 5 * DAY_MS))
        ec = H.earn(self.c, m["id"], 100)  # never
        ed = H.earn(self.c, m["id"], 100, expires_at=fmt_time(t0 + 10 * DAY_MS))  # tie with A
        ids = {}
        for name, r in (("A", ea), ("B", eb), ("C", ec), ("D", ed)):
            ids[name] = self.lot_by_txn(m["id"], self.assertPointsResult(r, "earn", 100)
                                        ["transaction"]["id"])["id"]
        lots = self.lots(m["id"])
        self.assertEqual([lot["id"] for lot in lots], [ids[k] for k in "BADC"],
                         "lots earliest expiring first, null last, ties by creation")
        r = H.redeem(self.c, m["id"], 150)
        red = self.assertPointsResult(r, "redeem", 150)
        self.assertPoints3(red["points"], 250)
        rem = {lot["id"]: lot["remaining"] for lot in self.lots(m["id"])}
        self.assertEqual(rem, {ids["B"]: 0, ids["A"]: 50, ids["C"]: 100, ids["D"]: 100})
        st = {lot["id"]: lot["status"] for lot in self.lots(m["id"])}
        self.assertEqual(st[ids["B"]], "consumed")
        open_ids = [lot["id"] for lot in self.lots(m["id"], status="open")]
        self.assertNotIn(ids["B"], open_ids)
        self.assertEqual(sorted(open_ids), sorted([ids["A"], ids["C"], ids["D"]]))
        t = self.txn(red["transaction"]["id"])
        self.assertEqual(sorted((x["lot_id"], x["amount"]) for x in t["consumptions"]),
                         sorted([(ids["B"], 100), (ids["A"], 50)]))
        # partial reverse: most recently consumed first (A's 50, then B)
        op = self.env.key("operator")[1]
        rv = self.assertPointsResult(op.post("/v1/transactions/%s/reverse"
                                             % red["transaction"]["id"], {"points": 60},
                                             idem=True), "reverse", 60)
        self.assertPoints3(rv["points"], 310)
        rem = {lot["id"]: lot["remaining"] for lot in self.lots(m["id"])}
        self.assertEqual(rem, {ids["B"]: 10, ids["A"]: 100, ids["C"]: 100, ids["D"]: 100})
        rt = self.txn(rv["transaction"]["id"])
        self.assertEqual(sorted((x["lot_id"], x["amount"]) for x in rt["consumptions"]),
                         sorted([(ids["A"], -50), (ids["B"], -10)]))
        post = {p["account"]: p["amount"] for p in rt["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: 60, "program:redemption": -60})
        # the rest
        rv = self.assertPointsResult(op.post("/v1/transactions/%s/reverse"
                                             % red["transaction"]["id"], {}, idem=True),
                                     "reverse", 90)
        self.assertPoints3(rv["points"], 400)
        rem = {lot["id"]: lot["remaining"] for lot in self.lots(m["id"])}
        self.assertEqual(rem, {ids["B"]: 100, ids["A"]: 100, ids["C"]: 100, ids["D"]: 100})
        self.assertEqual(len(self.lots(m["id"])), 4, "restores go back to the same lots")
        self.assertEqual(self.txn(red["transaction"]["id"])["reversed_points"], 150)
        self.assertProblem(op.post("/v1/transactions/%s/reverse" % red["transaction"]["id"],
                                   {"points": 1}, idem=True), 422, "reversal_exceeds_original")
        self.assertProblem(op.post("/v1/transactions/%s/reverse" % red["transaction"]["id"],
                                   {}, idem=True), 422, "reversal_exceeds_original")

    def test_restore_into_expired_lot_creates_new_lot(self):
        t0 = self.set_clock(T2030)
        m = self.member()
        e = self.assertPointsResult(H.earn(self.c, m["id"], 100,
                                           expires_at=fmt_time(t0 + DAY_MS)), "earn", 100)
        lot = self.lot_by_txn(m["id"], e["transaction"]["id"])
        red = self.assertPointsResult(H.redeem(self.c, m["id"], 40), "redeem", 40)
        self.set_clock(t0 + DAY_MS)
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run")
        self.assertEqual(b["expired_points"], 60)
        rv = self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse"
                                                 % red["transaction"]["id"], {}, idem=True),
                                     "reverse", 40)
        lots = self.lots(m["id"])
        self.assertEqual(len(lots), 2, lots)
        new = [x for x in lots if x["id"] != lot["id"]][0]
        self.assertEqual((new["amount"], new["remaining"]), (40, 40))
        self.assertEqual(new["expires_at"], lot["expires_at"])
        self.assertEqual(new["transaction_id"], rv["transaction"]["id"])
        old = [x for x in lots if x["id"] == lot["id"]][0]
        self.assertEqual((old["status"], old["remaining"]), ("expired", 0))
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"]), (40, 0))  # due, not spendable
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run 2")
        self.assertEqual((b["expired_points"], b["lots"]), (40, 1))
        self.assertEqual(self.pts(m["id"])["balance"], 0)

    def test_hold_expires_at_deadline_after_clock_move(self):
        t0 = self.set_clock(T2030)
        m = self.funded(100)
        h = self.assertPointsResult(self.c.post("/v1/members/%s/holds" % m["id"],
                                                {"points": 70, "ttl_seconds": 60}, idem=True),
                                    "hold", 70)["hold"]
        self.assertEqual(parse_time(h["expires_at"]), t0 + 60000)
        self.set_clock(t0 + 59999)
        self.assertEqual(self.assertStatus(self.c.get("/v1/holds/" + h["id"]), 200, "")
                         ["status"], "open")
        self.set_clock(t0 + 61000)  # sweep voids it
        g = self.assertStatus(self.c.get("/v1/holds/" + h["id"]), 200, "hold after")
        self.assertHold(g)
        self.assertNotEqual(g["status"], "open")
        self.assertEqual((g["captured"], g["released"]), (0, 70))
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["held"]), (100, 100, 0))
        self.assertProblem(self.c.post("/v1/holds/%s/capture" % h["id"], {}, idem=True), 422,
                           "hold_not_open")
        self.assertProblem(self.c.post("/v1/holds/%s/void" % h["id"], {}, idem=True), 422,
                           "hold_not_open")
        ts = self.assertList(self.c.get("/v1/members/%s/transactions" % m["id"]))["data"]
        self.assertEqual([t["type"] for t in ts], ["void", "hold", "earn"])
        self.assertEqual((ts[0]["actor"], ts[0]["points"], ts[0]["hold_id"]),
                         ("system", 70, h["id"]))
        hl = self.assertList(self.c.get("/v1/members/%s/holds" % m["id"],
                                        params={"status": "open"}))
        self.assertEqual(hl["data"], [])
        self.assertPointsResult(H.redeem(self.c, m["id"], 100), "redeem", 100)
        # spec.md hold statuses: open|captured|voided|expired; the deadline makes it expired
        self.assertEqual(g["status"], "expired", "status of a hold voided at its deadline")

    def test_more_overdue_holds_than_one_sweep_slice(self):
        # The sweep voids overdue holds 64 at a time; 130 due at once (two full slices and
        # a partial one) are all voided by one clock move, each by its own transaction,
        # while a hold with a later deadline stays open.
        t0 = self.set_clock(T2030)
        m = self.funded(200)
        for _ in range(130):
            self.assertPointsResult(self.c.post("/v1/members/%s/holds" % m["id"],
                                                {"points": 1, "ttl_seconds": 60}, idem=True),
                                    "hold", 1)
        late = self.assertPointsResult(self.c.post("/v1/members/%s/holds" % m["id"],
                                                   {"points": 5, "ttl_seconds": 3600},
                                                   idem=True), "hold", 5)["hold"]
        p = self.pts(m["id"])
        self.assertEqual((p["available"], p["held"]), (65, 135))
        self.set_clock(t0 + 61000)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["held"]), (195, 195, 5))
        open_holds = self.assertList(self.c.get("/v1/members/%s/holds" % m["id"],
                                                params={"status": "open", "limit": 1000}))
        self.assertEqual([h["id"] for h in open_holds["data"]], [late["id"]])
        voids = [t for t in self.assertList(self.c.get(
                 "/v1/members/%s/transactions" % m["id"], params={"limit": 1000}))["data"]
                 if t["type"] == "void"]
        self.assertEqual((len(voids), {t["actor"] for t in voids}), (130, {"system"}))
        rc, rep = self.env.verify()
        self.assertEqual(rc, 0, rep)

    def test_void_after_lot_expired_restores_into_new_due_lot(self):
        t0 = self.set_clock(T2030)
        m = self.member()
        e = self.assertPointsResult(H.earn(self.c, m["id"], 100,
                                           expires_at=fmt_time(t0 + DAY_MS)), "earn", 100)
        lot = self.lot_by_txn(m["id"], e["transaction"]["id"])
        h = self.assertPointsResult(self.c.post("/v1/members/%s/holds" % m["id"],
                                                {"points": 50, "ttl_seconds": 2 * 86400},
                                                idem=True), "hold", 50)["hold"]
        self.set_clock(t0 + DAY_MS)
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run")
        self.assertEqual((b["expired_points"], b["lots"]), (50, 1))
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["held"]), (0, 0, 50))
        v = self.assertPointsResult(self.c.post("/v1/holds/%s/void" % h["id"], {}, idem=True),
                                    "void", 50)
        self.assertPoints3(v["points"], 0, 0, 0)  # restored but already due
        lots = self.lots(m["id"])
        self.assertEqual(len(lots), 2, lots)
        new = [x for x in lots if x["id"] != lot["id"]][0]
        self.assertEqual((new["amount"], new["remaining"], new["expires_at"]),
                         (50, 50, lot["expires_at"]))
        self.assertEqual(self.pts(m["id"])["balance"], 50)
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run 2")
        self.assertEqual((b["expired_points"], b["lots"]), (50, 1))
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["held"]), (0, 0, 0))
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run 3")
        self.assertEqual((b["expired_points"], b["lots"]), (0, 0))

    def test_clawback_order_when_reversing_an_earn(self):
        t0 = self.set_clock(T2030)
        m = self.member()
        ea = self.assertPointsResult(H.earn(self.c, m["id"], 100), "earn", 100)  # never
        eb = self.assertPointsResult(H.earn(self.c, m["id"], 100,
                                            expires_at=fmt_time(t0 + 5 * DAY_MS)), "earn", 100)
        la = self.lot_by_txn(m["id"], ea["transaction"]["id"])
        lb = self.lot_by_txn(m["id"], eb["transaction"]["id"])
        self.assertPointsResult(H.redeem(self.c, m["id"], 150), "redeem", 150)
        rem = {x["id"]: x["remaining"] for x in self.lots(m["id"])}
        self.assertEqual(rem, {lb["id"]: 0, la["id"]: 50})
        # A's own lot has 50, nothing else: 50 of debt is over the floor of 0
        self.assertProblem(self.c.post("/v1/transactions/%s/reverse" % ea["transaction"]["id"],
                                       {}, idem=True), 422, "insufficient_points")
        ec = self.assertPointsResult(H.earn(self.c, m["id"], 100,
                                            expires_at=fmt_time(t0 + 9 * DAY_MS)), "earn", 100)
        ed = self.assertPointsResult(H.earn(self.c, m["id"], 100,
                                            expires_at=fmt_time(t0 + 3 * DAY_MS)), "earn", 100)
        lc = self.lot_by_txn(m["id"], ec["transaction"]["id"])
        ld = self.lot_by_txn(m["id"], ed["transaction"]["id"])
        rv = self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse"
                                                 % ea["transaction"]["id"], {}, idem=True),
                                     "reverse", 100)
        # A's lot first (50), then other lots earliest expiring first: D (t0+3d) gives 50
        rem = {x["id"]: x["remaining"] for x in self.lots(m["id"])}
        self.assertEqual(rem, {la["id"]: 0, lb["id"]: 0, lc["id"]: 100, ld["id"]: 50})
        self.assertPoints3(rv["points"], 150)
        t = self.txn(rv["transaction"]["id"])
        self.assertEqual(sorted((x["lot_id"], x["amount"]) for x in t["consumptions"]),
                         sorted([(la["id"], 50), (ld["id"], 50)]))
        post = {p["account"]: p["amount"] for p in t["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: -100, "program:issuance": 100})

    def test_adjust_reversals(self):
        m = self.funded(100)
        op = self.env.key("operator")[1]
        neg = self.assertPointsResult(op.post("/v1/members/%s/adjust" % m["id"],
                                              {"points": -40, "reason": "damage"}, idem=True),
                                      "adjust", 40)
        pos = self.assertPointsResult(op.post("/v1/members/%s/adjust" % m["id"],
                                              {"points": 25, "reason": "goodwill"}, idem=True),
                                      "adjust", 25)
        self.assertPoints3(pos["points"], 85)
        post = {p["account"]: p["amount"] for p in self.txn(neg["transaction"]["id"])["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: -40, "program:adjustment": 40})
        post = {p["account"]: p["amount"] for p in self.txn(pos["transaction"]["id"])["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: 25, "program:adjustment": -25})
        lots_before = len(self.lots(m["id"]))
        rv = self.assertPointsResult(op.post("/v1/transactions/%s/reverse"
                                             % neg["transaction"]["id"], {}, idem=True),
                                     "reverse", 40)
        self.assertPoints3(rv["points"], 125)
        self.assertEqual(len(self.lots(m["id"])), lots_before, "restored into the same lot")
        rv = self.assertPointsResult(op.post("/v1/transactions/%s/reverse"
                                             % pos["transaction"]["id"], {"points": 10},
                                             idem=True), "reverse", 10)
        self.assertPoints3(rv["points"], 115)
        post = {p["account"]: p["amount"] for p in self.txn(rv["transaction"]["id"])["postings"]}
        self.assertEqual(post, {"member:%s:points" % m["id"]: -10, "program:adjustment": 10})
        self.assertProblem(op.post("/v1/transactions/%s/reverse" % pos["transaction"]["id"],
                                   {"points": 16}, idem=True), 422, "reversal_exceeds_original")

    def test_keep_alive_across_reads_and_writes(self):
        c = self.env.client(self.env.t1["api_key"])
        m = H.create_member(c)
        sock = c.conn.sock
        self.assertIsNotNone(sock)
        for i in range(5):
            self.assertPointsResult(H.earn(c, m["id"], 1), "earn", 1)
            self.assertStatus(c.get("/v1/members/" + m["id"]), 200, "get")
            self.assertProblem(H.redeem(c, m["id"], 1000), 422, "insufficient_points")
            self.assertIsNotNone(c.conn, "server closed the keep-alive connection")
            self.assertIs(c.conn.sock, sock, "a new connection was opened after request %d" % i)

    def test_hold_capture_reverse(self):
        m = self.funded(100)
        h = self.assertPointsResult(self.c.post("/v1/members/%s/holds" % m["id"],
                                                {"points": 50}, idem=True), "hold", 50)["hold"]
        cap = self.assertPointsResult(self.c.post("/v1/holds/%s/capture" % h["id"],
                                                  {"points": 30}, idem=True), "capture", 30)
        self.assertPoints3(cap["points"], 70)
        rv = self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse"
                                                 % cap["transaction"]["id"], {}, idem=True),
                                     "reverse", 30)
        self.assertPoints3(rv["points"], 100)
        self.assertEqual(len(self.lots(m["id"])), 1)
        self.assertEqual(self.lots(m["id"])[0]["remaining"], 100)
        self.assertProblem(self.c.post("/v1/transactions/%s/reverse"
                                       % cap["transaction"]["id"], {}, idem=True),
                           422, "reversal_exceeds_original")

    def test_transfer_keeps_lot_expiry_and_reverse(self):
        t0 = self.set_clock(T2030)
        a = self.member()
        b = self.member()
        x = fmt_time(t0 + 20 * DAY_MS)
        ex = self.assertPointsResult(H.earn(self.c, a["id"], 100, expires_at=x), "earn", 100)
        en = self.assertPointsResult(H.earn(self.c, a["id"], 50), "earn", 50)
        lx = self.lot_by_txn(a["id"], ex["transaction"]["id"])
        ln = self.lot_by_txn(a["id"], en["transaction"]["id"])
        r = self.c.post("/v1/members/%s/transfer" % a["id"], {"to_member_id": b["id"],
                                                              "points": 120}, idem=True)
        tr = self.assertPointsResult(r, "transfer", 120)
        self.assertPoints3(tr["points"], 30)
        self.assertPoints3(tr["to_points"], 120)
        bl = self.lots(b["id"])
        self.assertEqual(sorted((lot["amount"], lot["remaining"], lot["expires_at"] or "")
                                for lot in bl), [(20, 20, ""), (100, 100, x)])
        for lot in bl:
            self.assertEqual(lot["status"], "available")
            self.assertEqual(lot["transaction_id"], tr["transaction"]["id"])
        # expiry follows the sender's lot
        f = self.assertStatus(self.c.get("/v1/expiry/forecast", params={
            "until": fmt_time(t0 + 21 * DAY_MS)}), 200, "forecast")
        self.assertEqual(f["total_points"], 100)
        self.assertEqual([d["member_id"] for d in f["data"]], [b["id"]])
        # reverse 30: the recipient gives back (from the lots the transfer created) and the
        # sender's most recently consumed lot (the never-expiring one) is refilled first
        rv = self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse"
                                                 % tr["transaction"]["id"], {"points": 30},
                                                 idem=True), "reverse", 30)
        self.assertPoints3(rv["points"], 60)
        rem = {lot["id"]: lot["remaining"] for lot in self.lots(a["id"])}
        self.assertEqual(rem, {lx["id"]: 10, ln["id"]: 50})
        self.assertEqual(self.pts(b["id"])["available"], 90)
        post = {p["account"]: p["amount"] for p in self.txn(rv["transaction"]["id"])["postings"]}
        self.assertEqual(post, {"member:%s:points" % a["id"]: 30,
                                "member:%s:points" % b["id"]: -30})
        # at X the sender's 10 left in lot X and the recipient's 70 left in its X lot expire
        self.set_clock(t0 + 20 * DAY_MS)
        run = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run")
        self.assertEqual((run["expired_points"], run["lots"], run["members"]), (80, 2, 2))
        pa, pb = self.pts(a["id"]), self.pts(b["id"])
        self.assertEqual((pa["balance"], pa["available"]), (50, 50))
        self.assertEqual((pb["balance"], pb["available"]), (20, 20))

    def test_reverse_earn_after_spending_debt_floor(self):
        m = self.member()
        e = self.assertPointsResult(H.earn(self.c, m["id"], 100), "earn", 100)
        self.assertPointsResult(H.redeem(self.c, m["id"], 80), "redeem", 80)
        eid = e["transaction"]["id"]
        self.assertProblem(self.c.post("/v1/transactions/%s/reverse" % eid, {}, idem=True),
                           422, "insufficient_points")
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["debt"]), (20, 20, 0))
        self.assertEqual(self.txn(eid)["reversed_points"], 0)
        H.program_patch(self.c, {"debt_floor": 100})
        rv = self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse" % eid, {},
                                                 idem=True), "reverse", 100)
        self.assertPoints3(rv["points"], 0)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["pending"], p["debt"]),
                         (-80, 0, 0, 80))
        mm = H.member_of(self.c, m["id"])
        self.assertEqual(mm["debt"], 80)
        for lot in self.lots(m["id"]):
            self.assertEqual(lot["remaining"], 0)
        # a later credit pays the debt first
        e2 = self.assertPointsResult(H.earn(self.c, m["id"], 50), "earn", 50)
        self.assertPoints3(e2["points"], 0)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["debt"]), (-30, 0, 30))
        l2 = self.lot_by_txn(m["id"], e2["transaction"]["id"])
        self.assertEqual((l2["amount"], l2["remaining"]), (50, 0))
        self.assertIn({"lot_id": l2["id"], "amount": 50},
                      self.txn(e2["transaction"]["id"])["consumptions"])
        e3 = self.assertPointsResult(H.earn(self.c, m["id"], 40), "earn", 40)
        self.assertPoints3(e3["points"], 10)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["debt"]), (10, 10, 0))

    def test_debt_floor_limit(self):
        H.program_patch(self.c, {"debt_floor": 50})
        m = self.member()
        e = self.assertPointsResult(H.earn(self.c, m["id"], 100), "earn", 100)
        self.assertPointsResult(H.redeem(self.c, m["id"], 60), "redeem", 60)
        # clawing back 100 needs 60 of debt > 50
        self.assertProblem(self.c.post("/v1/transactions/%s/reverse" % e["transaction"]["id"],
                                       {}, idem=True), 422, "insufficient_points")
        # 90 needs 50: allowed
        self.assertPointsResult(self.c.post("/v1/transactions/%s/reverse"
                                            % e["transaction"]["id"], {"points": 90},
                                            idem=True), "reverse", 90)
        self.assertEqual(self.pts(m["id"])["debt"], 50)

    def test_points_as_of(self):
        t0 = self.set_clock(T2030)
        m = self.member()
        t1 = self.set_clock(t0 + 3600000)
        self.assertPointsResult(H.earn(self.c, m["id"], 100), "earn", 100)
        t2 = self.set_clock(t1 + 3600000)
        self.assertPointsResult(H.redeem(self.c, m["id"], 30), "redeem", 30)
        self.assertPointsResult(self.c.post("/v1/members/%s/holds" % m["id"],
                                            {"points": 20, "ttl_seconds": 86400}, idem=True),
                                "hold", 20)
        self.set_clock(t2 + 3600000)
        for as_of, bal, held in ((t0 + 1000, 0, 0), (t1 + 1000, 100, 0), (t2 + 1000, 50, 20),
                                 (t2 + 3600000, 50, 20)):
            with self.subTest(as_of=fmt_time(as_of)):
                p = self.pts(m["id"], as_of=fmt_time(as_of))
                self.assertEqual(parse_time(p["as_of"]), as_of)
                self.assertEqual((p["balance"], p["held"]), (bal, held))
        # an offset is accepted
        p = self.pts(m["id"], as_of=fmt_time(t1 + 1000 + 8 * 3600000).replace("Z", "+08:00"))
        self.assertEqual(p["balance"], 100)
        p = self.pts(m["id"])
        self.assertEqual((p["balance"], p["available"], p["held"]), (50, 50, 20))
        r = self.c.get("/v1/members/%s/points" % m["id"], params={"as_of": "last week"})
        self.assertEqual(r.status, 400, r)
        self.assertIn(r.code, ("invalid_field", "invalid_request"), r)

    def test_members_list_search_and_pagination(self):
        c = self.c
        made = []
        specs = [("e-alice", "Alice Wang", "13900000001", ["vip", "gold"]),
                 ("e-alina", "Alina Li", "13900000002", ["vip"]),
                 ("e-bob", "Bob", "13900000003", []),
                 ("e-carol", "Carol", "13900000004", ["gold"]),
                 ("e-dave", "Dave", "13900000005", []),
                 ("e-eve", None, None, []),
                 ("e-frank", "Frank", "13900000006", ["vip"])]
        for ext, name, phone, tags in specs:
            body = {"external_id": ext, "tags": tags}
            if name:
                body["name"] = name
            if phone:
                body["phone"] = phone
            made.append(self.assertStatus(c.post("/v1/members", body), 201, "create"))
        by_ext = {m["external_id"]: m["id"] for m in made}
        all_ids = set(by_ext.values())

        def ids(params):
            return set(x["id"] for x in H.list_all(c, "/v1/members", params))

        self.assertEqual(ids({}), all_ids)
        self.assertEqual(ids({"external_id": "e-bob"}), {by_ext["e-bob"]})
        self.assertEqual(ids({"external_id": "e-bo"}), set(), "external_id is exact")
        self.assertEqual(ids({"phone": "13900000004"}), {by_ext["e-carol"]})
        self.assertEqual(ids({"name": "Ali"}), {by_ext["e-alice"], by_ext["e-alina"]})
        self.assertEqual(ids({"name": "Alice"}), {by_ext["e-alice"]})
        self.assertEqual(ids({"name": "Wang"}), set(), "name is a prefix match")
        self.assertEqual(ids({"tag": "vip"}), {by_ext[e] for e in ("e-alice", "e-alina",
                                                                    "e-frank")})
        self.assertEqual(ids({"tag": "vip", "name": "Ali"}), {by_ext["e-alice"],
                                                              by_ext["e-alina"]})
        self.assertEqual(ids({"tag": "none"}), set())
        c.patch("/v1/members/" + by_ext["e-bob"], {"status": "frozen"})
        self.assertEqual(ids({"status": "frozen"}), {by_ext["e-bob"]})
        self.assertEqual(ids({"status": "active"}), all_ids - {by_ext["e-bob"]})
        # pagination: limit 2 walks every member once
        seen = []
        cursor = None
        pages = 0
        for _ in range(20):
            params = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            b = self.assertList(c.get("/v1/members", params=params))
            pages += 1
            self.assertLessEqual(len(b["data"]), 2)
            seen.extend(x["id"] for x in b["data"])
            cursor = b["next_cursor"]
            if not cursor:
                break
        self.assertIsNone(cursor, "pagination did not end")
        self.assertEqual(len(seen), len(set(seen)), "duplicates across pages: %r" % seen)
        self.assertEqual(set(seen), all_ids)
        self.assertGreaterEqual(pages, 4)
        # filtered pagination
        seen = []
        cursor = None
        for _ in range(10):
            params = {"limit": 1, "tag": "vip"}
            if cursor:
                params["cursor"] = cursor
            b = self.assertList(c.get("/v1/members", params=params))
            seen.extend(x["id"] for x in b["data"])
            cursor = b["next_cursor"]
            if not cursor:
                break
        self.assertEqual(sorted(seen), sorted(by_ext[e] for e in ("e-alice", "e-alina",
                                                                  "e-frank")))
        # external lookup
        g = self.assertStatus(c.get("/v1/members/external/e-carol"), 200, "external")
        self.assertEqual(g["id"], by_ext["e-carol"])

    def test_expiry_run_is_admin_and_forecast_pagination(self):
        t0 = self.set_clock(T2030)
        H.program_patch(self.c, {"expiry": {"policy": "days_after_earn", "days": 1}})
        ms = [self.funded(10 + i) for i in range(5)]
        seen = []
        cursor = None
        for _ in range(10):
            params = {"until": fmt_time(t0 + 2 * DAY_MS), "limit": 2}
            if cursor:
                params["cursor"] = cursor
            f = self.assertStatus(self.c.get("/v1/expiry/forecast", params=params), 200, "")
            self.assertEqual((f["total_points"], f["total_lots"]), (60, 5))
            self.assertLessEqual(len(f["data"]), 2)
            seen.extend(d["member_id"] for d in f["data"])
            cursor = f["next_cursor"]
            if not cursor:
                break
        self.assertEqual(sorted(seen), sorted(m["id"] for m in ms))
        op = self.env.key("operator")[1]
        self.assertProblem(op.post("/v1/expiry/run", {}), 403, "forbidden")
        self.set_clock(t0 + DAY_MS)
        b = self.assertStatus(self.c.post("/v1/expiry/run", {}), 200, "run")
        self.assertEqual((b["expired_points"], b["lots"], b["members"]), (60, 5, 5))


class VerifyCanaryTests(unittest.TestCase, Checks):
    """Test the test: `jifen verify` must notice a lot changed behind the engine's back,
    or the clean verify every other test relies on would prove nothing."""

    def test_verify_detects_a_tampered_lot(self):
        import sqlite3
        env = H.start_env(self)
        m = H.create_member(env.admin)
        self.assertEqual(H.earn(env.admin, m["id"], 100).status, 201)
        self.assertEqual(H.redeem(env.admin, m["id"], 30).status, 201)
        lot = H.list_all(env.admin, "/v1/members/%s/lots" % m["id"])[0]
        rc, rep = env.verify()
        self.assertEqual(rc, 0, rep)
        self.assertEqual(env.server.stop(), 0)
        db = sqlite3.connect(env.db)
        try:
            cols = [r[1] for r in db.execute("PRAGMA table_info(lots)")]
            if "remaining" not in cols or "id" not in cols:
                self.skipTest("schema has no lots(id, remaining): %r" % cols)
            n = db.execute("UPDATE lots SET remaining = remaining + 1 WHERE id = ?",
                           (lot["id"],)).rowcount
            db.commit()
        finally:
            db.close()
        self.assertEqual(n, 1)
        rc, rep = env.verify()
        self.assertEqual(rc, 1, "verify missed a lot with remaining changed: %r" % (rep,))
        self.assertIsInstance(rep, dict, rep)
        self.assertIs(rep.get("ok"), False)
        self.assertTrue(rep.get("violations"), rep)


class WriterMemoryTests(unittest.TestCase, Checks):
    """The writer remembers member rows between batches (src/core/wcache.c).  A row
    another process changes while the server runs must be read again: SQLite's data
    version tells the writer, which then forgets what it holds."""

    def test_member_frozen_by_another_process_is_seen(self):
        import sqlite3
        env = H.start_env(self)
        m = H.create_member(env.admin)
        self.assertEqual(H.earn(env.admin, m["id"], 100).status, 201)  # row now remembered
        db = sqlite3.connect(env.db, timeout=10)
        try:
            n = db.execute("UPDATE members SET status = 'frozen' WHERE id = ?",
                           (m["id"],)).rowcount
            db.commit()
        finally:
            db.close()
        self.assertEqual(n, 1)
        self.assertProblem(H.earn(env.admin, m["id"], 5), 422, "member_frozen")
        self.assertProblem(H.redeem(env.admin, m["id"], 5), 422, "member_frozen")
        self.assertEqual(H.points_of(env.admin, m["id"])["available"], 100)


    def test_program_changed_elsewhere_is_seen(self):
        """The writer keeps the program row between batches (engine.c,
        writer_program): a change through the API, or by another process, must
        reach the next earn."""
        import sqlite3
        env = H.start_env(self)
        c = env.admin
        m = H.create_member(c)

        def earned(amount):
            r = H.earn(c, m["id"], order={"id": "o-" + uuid.uuid4().hex, "amount": amount,
                                          "currency": "CNY"})
            self.assertEqual(r.status, 201, r)
            return r.body["transaction"]["points"]

        self.assertEqual(earned(1000), 10)  # 1 point per 100 fen: the program now remembered
        H.program_patch(c, {"earn_rate": {"points": 3, "per_amount": 100}})
        self.assertEqual(earned(1000), 30)
        db = sqlite3.connect(env.db, timeout=10)
        try:
            n = db.execute("UPDATE programs SET earn_points = 5 WHERE earn_points = 3").rowcount
            db.commit()
        finally:
            db.close()
        self.assertEqual(n, 1)
        self.assertEqual(earned(1000), 50)

    def test_rows_cached_at_start_are_exact(self):
        """The writer fills its member cache from the database at start
        (jf_members_warm), and a points read takes a cached member's debt from
        it: after a restart, a member's debt and status must be the row's."""
        env = H.start_env(self)
        c = env.admin
        H.program_patch(c, {"debt_floor": 100})
        a, f = H.create_member(c), H.create_member(c)
        e = H.earn(c, a["id"], 100)
        self.assertEqual(e.status, 201)
        self.assertEqual(H.redeem(c, a["id"], 80).status, 201)
        rv = c.post("/v1/transactions/%s/reverse" % e.body["transaction"]["id"], {}, idem=True)
        self.assertEqual(rv.status, 201, rv)
        self.assertStatus(c.patch("/v1/members/" + f["id"], {"status": "frozen"}), 200, "freeze")
        self.assertEqual(H.earn(c, f["id"], 5).status, 422)
        env.restart()
        # a's 80 of debt: an earn pays it first, and its answer reads the points
        r = H.earn(c, a["id"], 50)
        self.assertEqual(r.status, 201, r)
        # the writer took the earn after its warm-up
        self.assertGreaterEqual(H.metric(c, "jifen_writer_warm_members"), 2)
        self.assertEqual(r.body["points"]["available"], 0)
        p = H.points_of(c, a["id"])
        self.assertEqual((p["balance"], p["available"], p["debt"]), (-30, 0, 30))
        r = H.earn(c, a["id"], 40)
        self.assertEqual(r.body["points"]["available"], 10)
        # the answer of an earn by a member with no debt, cached since the start
        b = H.create_member(c)
        self.assertEqual(H.earn(c, b["id"], 7).status, 201)
        env.restart()
        r = H.earn(c, b["id"], 3)
        self.assertEqual(r.body["points"]["available"], 10)
        self.assertEqual(H.points_of(c, b["id"])["debt"], 0)
        self.assertProblem(H.earn(c, f["id"], 5), 422, "member_frozen")


class NoTestClockTests(unittest.TestCase, Checks):
    def test_clock_routes_absent_without_flag(self):
        env = H.start_env(self, test_clock=False)
        self.assertProblem(env.admin.get("/v1/test/clock"), 404, "not_found")
        self.assertProblem(env.admin.put("/v1/test/clock", {"now": "2030-01-01T00:00:00Z"}),
                           404, "not_found")
        self.assertStatus(env.admin.get("/v1/program"), 200, "program")


if __name__ == "__main__":
    unittest.main(verbosity=2)
