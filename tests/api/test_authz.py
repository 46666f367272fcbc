"""Authorization matrix: every route of spec.md x each role (admin, operator, pos,
readonly) x own tenant / other tenant's object / no key / garbage key / revoked key.

The expected roles come from JF_OP_MAP in include/jifen/jifen.h (read at run
time when the header is there, so the table below is checked against it):
JF_ROLES_ALL = readonly+pos+operator+admin, STAFF = pos+operator+admin,
OPS = operator+admin, ADMIN = admin.
Run: python3 tests/api/test_authz.py"""

import os
import re
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402
from jifen_harness import fmt_time, q  # noqa: E402

ROLES = ("admin", "operator", "pos", "readonly")
ROLE_SETS = {
    "JF_ROLES_ALL": {"readonly", "pos", "operator", "admin"},
    "JF_ROLES_STAFF": {"pos", "operator", "admin"},
    "JF_ROLES_OPS": {"operator", "admin"},
    "JF_ROLES_ADMIN": {"admin"},
}

# (method, path template, op, role set name, object kind of {id} or None)
ROUTES = [
    ("POST", "/v1/members", "MEMBER_CREATE", "JF_ROLES_STAFF", None),
    ("GET", "/v1/members", "MEMBER_LIST", "JF_ROLES_ALL", None),
    ("GET", "/v1/members/{mid}", "MEMBER_GET", "JF_ROLES_ALL", "member"),
    ("GET", "/v1/members/external/{ext}", "MEMBER_GET_EXTERNAL", "JF_ROLES_ALL", "member"),
    ("PATCH", "/v1/members/{mid}", "MEMBER_UPDATE", "JF_ROLES_OPS", "member"),
    ("GET", "/v1/members/{mid}/points", "MEMBER_POINTS", "JF_ROLES_ALL", "member"),
    ("GET", "/v1/members/{mid}/transactions", "MEMBER_TRANSACTIONS", "JF_ROLES_ALL", "member"),
    ("GET", "/v1/members/{mid}/lots", "MEMBER_LOTS", "JF_ROLES_ALL", "member"),
    ("GET", "/v1/members/{mid}/holds", "MEMBER_HOLDS", "JF_ROLES_ALL", "member"),
    ("POST", "/v1/members/{mid}/earn", "EARN", "JF_ROLES_STAFF", "member"),
    ("POST", "/v1/members/{mid}/redeem", "REDEEM", "JF_ROLES_STAFF", "member"),
    ("POST", "/v1/members/{mid}/adjust", "ADJUST", "JF_ROLES_OPS", "member"),
    ("POST", "/v1/members/{mid}/transfer", "TRANSFER", "JF_ROLES_STAFF", "member"),
    ("POST", "/v1/members/{mid}/holds", "HOLD", "JF_ROLES_STAFF", "member"),
    ("GET", "/v1/holds/{hid}", "HOLD_GET", "JF_ROLES_ALL", "hold"),
    ("POST", "/v1/holds/{hid}/capture", "HOLD_CAPTURE", "JF_ROLES_STAFF", "hold"),
    ("POST", "/v1/holds/{hid}/void", "HOLD_VOID", "JF_ROLES_STAFF", "hold"),
    ("GET", "/v1/transactions", "TRANSACTION_LIST", "JF_ROLES_ALL", None),
    ("GET", "/v1/transactions/{tid}", "TRANSACTION_GET", "JF_ROLES_ALL", "txn"),
    ("POST", "/v1/transactions/{tid}/reverse", "REVERSE", "JF_ROLES_OPS", "txn"),
    ("POST", "/v1/batch", "BATCH", "JF_ROLES_STAFF", None),
    ("GET", "/v1/program", "PROGRAM_GET", "JF_ROLES_ALL", None),
    ("PATCH", "/v1/program", "PROGRAM_UPDATE", "JF_ROLES_ADMIN", None),
    ("POST", "/v1/expiry/run", "EXPIRY_RUN", "JF_ROLES_ADMIN", None),
    ("GET", "/v1/expiry/forecast", "EXPIRY_FORECAST", "JF_ROLES_ALL", None),
    ("POST", "/v1/api-keys", "KEY_CREATE", "JF_ROLES_ADMIN", None),
    ("GET", "/v1/api-keys", "KEY_LIST", "JF_ROLES_ADMIN", None),
    ("DELETE", "/v1/api-keys/{kid}", "KEY_REVOKE", "JF_ROLES_ADMIN", "key"),
    ("POST", "/v1/members/{mid}/events", "MEMBER_EVENT", "JF_ROLES_STAFF", "member"),
    ("POST", "/v1/rules", "RULE_CREATE", "JF_ROLES_ADMIN", None),
    ("GET", "/v1/rules", "RULE_LIST", "JF_ROLES_ALL", None),
    ("GET", "/v1/rules/{rid}", "RULE_GET", "JF_ROLES_ALL", "rule"),
    ("PUT", "/v1/rules/{rid}", "RULE_UPDATE", "JF_ROLES_ADMIN", "rule"),
    ("POST", "/v1/rules/{rid}/archive", "RULE_ARCHIVE", "JF_ROLES_ADMIN", "rule"),
    ("POST", "/v1/orders/{oid}/refund", "ORDER_REFUND", "JF_ROLES_STAFF", "order"),
    ("GET", "/v1/orders/{oid}", "ORDER_GET", "JF_ROLES_ALL", "order"),
    ("POST", "/v1/members/{mid}/check-in", "CHECK_IN", "JF_ROLES_STAFF", "member"),
    ("GET", "/v1/members/{mid}/check-in", "CHECK_IN_CALENDAR", "JF_ROLES_ALL", "member"),
    ("POST", "/v1/bonuses/run", "BONUS_SWEEP", "JF_ROLES_ADMIN", None),
    ("POST", "/v1/campaigns", "CAMPAIGN_CREATE", "JF_ROLES_ADMIN", None),
    ("GET", "/v1/campaigns", "CAMPAIGN_LIST", "JF_ROLES_ALL", None),
    ("GET", "/v1/campaigns/{cid}", "CAMPAIGN_GET", "JF_ROLES_ALL", "campaign"),
    ("PATCH", "/v1/campaigns/{cid}", "CAMPAIGN_UPDATE", "JF_ROLES_ADMIN", "campaign"),
    ("GET", "/v1/tiers", "TIER_CONFIG_GET", "JF_ROLES_ALL", None),
    ("PUT", "/v1/tiers", "TIER_CONFIG_PUT", "JF_ROLES_ADMIN", None),
    ("POST", "/v1/tiers/evaluate", "TIER_EVALUATE", "JF_ROLES_ADMIN", None),
    ("POST", "/v1/tiers/import", "TIER_IMPORT", "JF_ROLES_ADMIN", None),
    ("GET", "/v1/members/{mid}/tier", "MEMBER_TIER_GET", "JF_ROLES_ALL", "member"),
    ("PUT", "/v1/members/{mid}/tier", "MEMBER_TIER_SET", "JF_ROLES_OPS", "member"),
    ("GET", "/v1/events", "EVENT_LIST", "JF_ROLES_ALL", None),
    ("PUT", "/v1/test/clock", "CLOCK_SET", "JF_ROLES_ADMIN", None),
    ("GET", "/v1/test/clock", "CLOCK_GET", "JF_ROLES_ADMIN", None),
]

WRITES_WITH_IDEM = {"EARN", "REDEEM", "ADJUST", "TRANSFER", "HOLD", "HOLD_CAPTURE", "HOLD_VOID",
                    "REVERSE", "MEMBER_EVENT", "ORDER_REFUND", "CHECK_IN"}
TIERS_BODY = {"window": {"type": "lifetime"},
              "tiers": [{"code": "silver", "name": "Silver", "threshold": 0},
                        {"code": "gold", "name": "Gold", "threshold": 100}]}
RULE_BODY = {"name": "authz rule", "trigger": "purchase", "status": "draft",
             "effect": {"type": "fixed", "points": 1}}


def header_op_roles():
    """{op: role set name} parsed from JF_OP_MAP, or None when the header is absent."""
    path = os.path.join(H.REPO, "include", "jifen", "jifen.h")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return dict(re.findall(r"X\((\w+),\s*\"[^\"]*\",\s*\d,\s*(JF_ROLES_\w+)\)", text))


class AuthzMatrix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = env = H.Env()
        cls.addClassCleanup(env.close)
        cls.keys = {}
        cls.key_ids = {}
        for role in ROLES:
            if role == "admin":
                cls.keys[role] = env.admin
                continue
            kid, c = env.key(role, name="matrix-" + role)
            cls.keys[role] = c
            cls.key_ids[role] = kid
        admin = env.admin
        cls.m1 = H.create_member(admin, external_id="authz-own " + uuid.uuid4().hex[:6])
        cls.m1b = H.create_member(admin)
        H.check_ok(H.earn(admin, cls.m1["id"], 100000), 201, "fund m1")
        cls.e1 = H.check_ok(H.earn(admin, cls.m1["id"], 100000), 201, "earn m1")
        cls.cmp1 = H.check_ok(admin.post("/v1/campaigns", {"name": "authz"}), 201, "c1")["id"]
        cls.cmp2 = H.check_ok(env.admin2.post("/v1/campaigns", {"name": "authz"}), 201,
                              "c2")["id"]
        H.check_ok(admin.put("/v1/tiers", TIERS_BODY), 200, "tiers 1")
        H.check_ok(env.admin2.put("/v1/tiers", TIERS_BODY), 200, "tiers 2")
        H.check_ok(H.earn(admin, cls.m1["id"], order={"id": "authz-o1", "amount": 10 ** 9,
                                                     "currency": "CNY"}), 201, "order o1")
        # tenant 2's objects
        a2 = env.admin2
        cls.m2 = H.create_member(a2, external_id="authz-other " + uuid.uuid4().hex[:6])
        cls.e2 = H.check_ok(H.earn(a2, cls.m2["id"], 1000), 201, "earn m2")
        H.check_ok(H.earn(a2, cls.m2["id"], order={"id": "authz-o2", "amount": 100,
                                                  "currency": "CNY"}), 201, "order o2")
        cls.h2 = H.check_ok(a2.post("/v1/members/%s/holds" % cls.m2["id"], {"points": 10},
                                    idem=True), 201, "hold m2")["hold"]
        cls.k2_id, cls.k2 = env.key("readonly", tenant=2, name="t2-ro")
        cls.r1 = H.check_ok(admin.get("/v1/rules"), 200, "rules t1")["data"][0]["id"]
        cls.r2 = H.check_ok(a2.get("/v1/rules"), 200, "rules t2")["data"][0]["id"]

    def test_table_matches_header(self):
        ops = header_op_roles()
        if ops is None:
            self.skipTest("include/jifen/jifen.h not found")
        for _, _, op, roles, _ in ROUTES:
            self.assertEqual(ops.get(op), roles, "JF_OP_MAP role set of %s" % op)
        self.assertEqual({r[2] for r in ROUTES} | {"HOLDS_SWEEP"}, set(ops),
                         "every op of JF_OP_MAP (except the unrouted sweep) has a route")

    # ---------------------------------------------------------------- request builders

    def fresh_hold(self):
        r = self.env.admin.post("/v1/members/%s/holds" % self.m1["id"], {"points": 1},
                                idem=True)
        return H.check_ok(r, 201, "fresh hold")["hold"]["id"]

    def fresh_key(self, tenant=1):
        return self.env.key("readonly", tenant=tenant, name="throwaway")[0]

    def build(self, route, other=False):
        """-> (method, path, body, idem) for one call of route, with fresh objects where a
        call consumes them.  other=True uses tenant 2's object for {id}."""
        method, tmpl, op, _, kind = route
        if other:
            ids = {"mid": self.m2["id"], "ext": q(self.m2["external_id"]), "hid": self.h2["id"],
                   "tid": self.e2["transaction"]["id"], "kid": self.k2_id, "rid": self.r2,
                   "oid": "authz-o2", "cid": self.cmp2}
        else:
            ids = {"mid": self.m1["id"], "ext": q(self.m1["external_id"]),
                   "tid": self.e1["transaction"]["id"], "rid": self.r1, "oid": "authz-o1",
                   "cid": self.cmp1}
            if op == "CHECK_IN":
                ids["mid"] = H.create_member(self.env.admin)["id"]  # once a day each
            if "{hid}" in tmpl:
                ids["hid"] = self.fresh_hold()
            if "{kid}" in tmpl:
                ids["kid"] = self.fresh_key()
        path = tmpl.format(**ids)
        body = None
        if op == "MEMBER_CREATE":
            body = {"external_id": "authz-" + uuid.uuid4().hex}
        elif op == "MEMBER_UPDATE":
            body = {"name": "n-" + uuid.uuid4().hex[:6]}
        elif op in ("EARN", "REDEEM"):
            body = {"points": 1}
        elif op == "ADJUST":
            body = {"points": 1, "reason": "authz"}
        elif op == "TRANSFER":
            body = {"to_member_id": self.m1b["id"], "points": 1}
        elif op == "HOLD":
            body = {"points": 1}
        elif op in ("HOLD_CAPTURE", "HOLD_VOID"):
            body = {}
        elif op == "REVERSE":
            body = {"points": 1}
        elif op == "PROGRAM_UPDATE":
            body = {"name": "authz program"}
        elif op in ("EXPIRY_RUN", "BONUS_SWEEP"):
            body = {}
        elif op == "EXPIRY_FORECAST":
            path += "?until=" + q("2099-01-01T00:00:00Z")
        elif op in ("CAMPAIGN_CREATE", "CAMPAIGN_UPDATE"):
            body = {"name": "authz campaign"}
        elif op == "ORDER_REFUND":
            body = {"amount": 1}
        elif op == "CHECK_IN":
            body = {}
        elif op == "MEMBER_EVENT":
            body = {"name": "authz_event"}
        elif op in ("RULE_CREATE", "RULE_UPDATE"):
            body = RULE_BODY
        elif op == "RULE_ARCHIVE":
            body = {}
        elif op == "KEY_CREATE":
            body = {"name": "authz", "role": "readonly"}
        elif op == "CLOCK_SET":
            body = {"now": fmt_time(H.clock_now(self.env.admin) + 1000)}
        elif op == "TIER_CONFIG_PUT":
            body = TIERS_BODY
        elif op == "TIER_EVALUATE":
            body = {}
        elif op == "TIER_IMPORT":
            body = {"members": [{"member_id": self.m1["id"], "tier": "silver"}]}
        elif op == "MEMBER_TIER_SET":
            body = {"tier": "silver", "reason": "authz"}
        elif op == "BATCH":
            body = {"operations": [{"op": "earn", "id": self.m1["id"], "body": {"points": 1},
                                    "idempotency_key": H.idem_key("authz-batch")}]}
        idem = H.idem_key("authz") if op in WRITES_WITH_IDEM else None
        return method, path, body, idem

    def call(self, client, route, other=False, key=H._UNSET):
        method, path, body, idem = self.build(route, other)
        r = client.request(method, path, body, idem=idem, key=key)
        return r, "%s %s" % (method, path)

    def assertCode(self, r, status, code, what):
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        ctype = (r.headers.get("Content-Type") or "").lower()
        self.assertTrue(ctype.startswith("application/problem+json"), "%s: %r" % (what, ctype))
        self.assertEqual(r.code, code, what)

    # ---------------------------------------------------------------- the matrix

    def test_roles_on_own_tenant(self):
        for route in ROUTES:
            allowed = ROLE_SETS[route[3]]
            for role in ROLES:
                with self.subTest(route=route[:2], role=role):
                    r, what = self.call(self.keys[role], route)
                    what = "%s as %s" % (what, role)
                    if role in allowed:
                        self.assertTrue(200 <= r.status < 300,
                                        "%s: allowed role should succeed, got %r" % (what, r))
                    else:
                        self.assertCode(r, 403, "forbidden", what)

    def test_other_tenants_objects_are_404(self):
        before = H.points_of(self.env.admin2, self.m2["id"])
        for route in ROUTES:
            if route[4] is None:
                continue
            allowed = ROLE_SETS[route[3]]
            for role in ROLES:
                with self.subTest(route=route[:2], role=role):
                    r, what = self.call(self.keys[role], route, other=True)
                    what = "%s as %s of tenant 1 on tenant 2's object" % (what, role)
                    if role in allowed:
                        self.assertCode(r, 404, "not_found", what)
                    else:
                        self.assertIn(r.status, (403, 404), what)
                        self.assertIn(r.code, ("forbidden", "not_found"), what)
        # nothing of tenant 2 changed
        after = H.points_of(self.env.admin2, self.m2["id"])
        for f in ("balance", "available", "pending", "held", "debt"):
            self.assertEqual(after[f], before[f], f)
        h = H.check_ok(self.env.admin2.get("/v1/holds/" + self.h2["id"]), 200, "t2 hold")
        self.assertEqual(h["status"], "open")
        t = H.check_ok(self.env.admin2.get("/v1/transactions/" + self.e2["transaction"]["id"]),
                       200, "t2 txn")
        self.assertEqual(t["reversed_points"], 0)
        m = H.member_of(self.env.admin2, self.m2["id"])
        self.assertEqual(m["name"], self.m2["name"])
        self.assertEqual(self.k2.get("/v1/program").status, 200, "t2 key was not revoked")
        self.assertEqual(len(H.list_all(self.env.admin2, "/v1/members/%s/transactions"
                                        % self.m2["id"])), 3)  # 2 earns and the hold
        o = H.check_ok(self.env.admin2.get("/v1/orders/authz-o2"), 200, "t2 order")
        self.assertEqual((o["refunded_amount"], o["refunds"]), (0, []))
        cal = H.check_ok(self.env.admin2.get("/v1/members/%s/check-in" % self.m2["id"]), 200,
                         "t2 check-ins")
        self.assertEqual(cal["days"], [])

    def test_other_tenant_references_in_bodies_and_filters(self):
        a = self.env.admin
        r = a.post("/v1/members/%s/transfer" % self.m1["id"],
                   {"to_member_id": self.m2["id"], "points": 1}, idem=True)
        self.assertCode(r, 404, "not_found", "transfer to tenant 2's member")
        r = a.get("/v1/transactions", params={"member_id": self.m2["id"]})
        if r.status == 200:
            self.assertEqual(r.body["data"], [], "tenant 2's transactions leaked")
        else:
            self.assertCode(r, 404, "not_found", "transactions of tenant 2's member")
        r = a.get("/v1/members", params={"external_id": self.m2["external_id"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["data"], [], "tenant 2's member leaked")
        for item in H.list_all(a, "/v1/members"):
            self.assertNotEqual(item["id"], self.m2["id"])
        for item in H.list_all(a, "/v1/transactions"):
            self.assertNotEqual(item["member_id"], self.m2["id"])
        for item in H.list_all(a, "/v1/api-keys"):
            self.assertNotEqual(item["id"], self.k2_id)
        r = a.get("/v1/expiry/forecast", params={"until": "2099-01-01T00:00:00Z"})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(self.m2["id"], [d["member_id"] for d in r.body["data"]])

    def test_no_key_and_garbage_keys_are_401(self):
        anon = self.env.client(None)
        bad = ("garbage", "jf_key_00000000000000000000_" + "A" * 32,
               self.env.t1["api_key"][:-1] + ("A" if self.env.t1["api_key"][-1] != "A"
                                              else "B"))
        for route in ROUTES:
            with self.subTest(route=route[:2], key=None):
                r, what = self.call(anon, route, key=None)
                self.assertCode(r, 401, "unauthorized", what + " without key")
            for key in bad:
                with self.subTest(route=route[:2], key=key):
                    r, what = self.call(anon, route, key=key)
                    self.assertCode(r, 401, "unauthorized", what + " with key %r" % key)
        # server routes need no key
        self.assertEqual(anon.get("/healthz", key=None).status, 200)
        self.assertEqual(anon.get("/metrics", key=None).status, 200)

    def test_revoked_keys_are_401_on_the_next_request(self):
        for role in ROLES:
            with self.subTest(role=role):
                kid, c = self.env.key(role, name="to-revoke-" + role)
                self.assertEqual(c.get("/v1/members").status, 200)
                r = self.env.admin.delete("/v1/api-keys/" + kid)
                self.assertEqual(r.status, 200, r)
                # the very next request on the same keep-alive connection
                r = c.get("/v1/members")
                self.assertCode(r, 401, "unauthorized", "revoked %s key" % role)
                for route in ROUTES:
                    r, what = self.call(c, route)
                    self.assertCode(r, 401, "unauthorized", what + " with revoked %s key" % role)
                r = self.env.admin.delete("/v1/api-keys/" + kid)
                self.assertIn(r.status, (200, 404, 422), "revoking twice: %r" % r)

    def test_key_revoked_by_the_cli_is_401_on_the_next_request(self):
        """Keys are cached in memory; `jifen keys revoke` from another process
        while the server runs must still stop the key at once."""
        kid, c = self.env.key("pos", name="cli-revoke")
        for _ in range(3):  # read once, then served from the cache
            self.assertEqual(c.get("/v1/members").status, 200)
        rc, out, err = H.run_cli(["keys", "revoke", "--db", self.env.db, "--tenant", "t1", kid])
        self.assertEqual(rc, 0, out + err)
        self.assertCode(c.get("/v1/members"), 401, "unauthorized", "key revoked by the CLI")
        # another key of the tenant is not affected, and a wrong secret for a
        # cached key is refused
        self.assertEqual(self.env.admin.get("/v1/members").status, 200)
        bad = self.env.client(self.env.admin.key[:-4] + "AAAA")
        self.assertCode(bad.get("/v1/members"), 401, "unauthorized", "wrong secret")

    def test_admin_of_tenant2_cannot_revoke_tenant1_key(self):
        kid, c = self.env.key("pos", name="t1-pos")
        r = self.env.admin2.delete("/v1/api-keys/" + kid)
        self.assertCode(r, 404, "not_found", "tenant 2 revoking tenant 1's key")
        self.assertEqual(c.get("/v1/program").status, 200, "key still works")


if __name__ == "__main__":
    unittest.main(verbosity=2)
