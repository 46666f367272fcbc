"""The operator's commands that other tests do not reach: `jifen tenants` (table and
JSON), `jifen init` refusing a bad tenant name without adding a tenant, `jifen expire`
(due lots and overdue holds of every tenant, once), `jifen keys list`, `jifen serve`
refusing tuning options out of range, and `--help` of every command.
Run: python3 tests/api/test_cli.py"""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jifen_harness as H  # noqa: E402

COMMANDS = ["init", "serve", "verify", "expire", "keys", "tenants", "rules", "tiers"]


def cli_json(*args):
    rc, out, err = H.run_cli(list(args) + ["--json"])
    if rc != 0:
        raise AssertionError("jifen %s: rc %d, %s%s" % (" ".join(args), rc, out, err))
    return json.loads(out)


class TenantTests(unittest.TestCase):
    def setUp(self):
        self.env = H.start_env(self)

    def tenants(self):
        return cli_json("tenants", "--db", self.env.db)

    def test_tenants_lists_every_tenant(self):
        m = H.create_member(self.env.admin)
        H.check_ok(H.earn(self.env.admin, m["id"], 10), 201, "earn")
        got = {t["name"]: t for t in self.tenants()}
        self.assertEqual(set(got), {"t1", "t2"})
        self.assertEqual((got["t1"]["id"], got["t2"]["id"]),
                         (self.env.t1["tenant_id"], self.env.t2["tenant_id"]))
        self.assertEqual((got["t1"]["transactions"], got["t2"]["transactions"]), (1, 0))
        for t in got.values():
            H.parse_time(t["created_at"])
        rc, out, err = H.run_cli(["tenants", "--db", self.env.db])
        self.assertEqual(rc, 0, err)
        rows = [line.split("\t") for line in out.splitlines()]
        self.assertEqual(sorted(r[:2] for r in rows),
                         sorted([[t["id"], n] for n, t in got.items()]))
        self.assertIn("transactions=1", out)

    def test_init_refuses_a_bad_tenant_name(self):
        for name in ["", "n" * 201]:
            rc, out, err = H.run_cli(["init", "--db", self.env.db, "--tenant", name, "--json"])
            self.assertNotEqual(rc, 0, (name, out))
            self.assertIn("1 to 200 bytes", err)
        self.assertEqual(sorted(t["name"] for t in self.tenants()), ["t1", "t2"])
        # The limit counts bytes: 66 Chinese characters are 198.
        rc, out, err = H.run_cli(["init", "--db", self.env.db, "--tenant", "店铺" * 33,
                                  "--json"])
        self.assertEqual(rc, 0, err)
        self.assertIn("店铺" * 33, [t["name"] for t in self.tenants()])
        rc, out, err = H.run_cli(["init", "--db", self.env.db, "--tenant", "店铺" * 34])
        self.assertNotEqual(rc, 0, out)
        self.assertEqual(len(self.tenants()), 3)

    def test_keys_list_shows_roles_and_no_secret(self):
        kid, _ = self.env.key("pos", name="till 3")
        keys = cli_json("keys", "list", "--db", self.env.db, "--tenant", "t1")["data"]
        mine = [k for k in keys if k["id"] == kid]
        self.assertEqual(len(mine), 1, keys)
        self.assertEqual((mine[0]["role"], mine[0]["name"]), ("pos", "till 3"))
        self.assertTrue(all("api_key" not in k and "secret" not in k for k in keys), keys)
        others = cli_json("keys", "list", "--db", self.env.db, "--tenant", "t2")["data"]
        self.assertNotIn(kid, [k["id"] for k in others])

    def test_help_of_every_command(self):
        rc, out, _ = H.run_cli(["--help"])
        self.assertEqual(rc, 0)
        for cmd in COMMANDS:
            self.assertIn(cmd, out)
            rc, out1, err = H.run_cli([cmd, "--help"])
            self.assertEqual(rc, 0, (cmd, err))
            self.assertIn("usage: jifen %s" % cmd, out1)
        rc, _, err = H.run_cli(["no-such-command"])
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip())


class ServeOptionTests(unittest.TestCase):
    """`jifen serve` refuses a tuning option out of its range before it opens anything."""

    def test_serve_refuses_tuning_options_out_of_range(self):
        d = tempfile.mkdtemp(prefix="jifen-serve-")
        self.addCleanup(shutil.rmtree, d, True)
        db = os.path.join(d, "never.db")
        bad = [("--checkpoint-interval", v, "10 to 60000") for v in ["9", "60001", "1s", ""]]
        bad += [("--wal-restart-frames", v, "1024 to 4194304") for v in ["1023", "4194305"]]
        for opt, value, rng in bad:
            rc, out, err = H.run_cli(["serve", "--db", db, "--listen", "127.0.0.1:0", opt, value])
            self.assertEqual(rc, 2, (opt, value, out, err))
            self.assertIn(opt, err)
            self.assertIn(rng, err)
            self.assertFalse(os.path.exists(db), (opt, value))
        rc, out, _ = H.run_cli(["serve", "--help"])
        self.assertEqual(rc, 0)
        self.assertIn("--checkpoint-interval MS", out)


class ExpireCommandTests(unittest.TestCase):
    """`jifen expire` with the server stopped: what is due by the wall clock goes, in every
    tenant, once."""

    def setUp(self):
        self.env = H.start_env(self, test_clock=False)

    def test_expire_due_lots_and_overdue_holds_of_every_tenant(self):
        a, b = self.env.admin, self.env.admin2
        due = H.fmt_time(int(time.time() * 1000) + 3000)
        m1 = H.create_member(a)
        H.check_ok(H.earn(a, m1["id"], 100, expires_at=due), 201, "earn due")
        H.check_ok(H.earn(a, m1["id"], 7), 201, "earn kept")
        m2 = H.create_member(b)
        H.check_ok(H.earn(b, m2["id"], 50), 201, "earn t2")
        H.check_ok(b.post("/v1/members/%s/holds" % m2["id"], {"points": 20, "ttl_seconds": 1},
                          idem=True), 201, "hold")
        self.env.server.stop()
        time.sleep(max(0.0, H.parse_time(due) / 1000.0 - time.time()) + 0.3)
        totals = cli_json("expire", "--db", self.env.db)
        by_tenant = {t["tenant_id"]: t for t in totals}
        t1, t2 = by_tenant[self.env.t1["tenant_id"]], by_tenant[self.env.t2["tenant_id"]]
        self.assertEqual((t1["expiry"]["expired_points"], t1["expiry"]["lots"],
                          t1["holds"]["voided_holds"]), (100, 1, 0), totals)
        self.assertEqual((t2["expiry"]["expired_points"], t2["holds"]["voided_holds"]), (0, 1),
                         totals)
        again = cli_json("expire", "--db", self.env.db)
        for t in again:
            self.assertEqual((t["expiry"]["expired_points"], t["expiry"]["lots"],
                              t["holds"]["voided_holds"]), (0, 0, 0), again)
        rc, out, err = H.run_cli(["expire", "--db", self.env.db])
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), 2, out)
        self.assertIn("holds.voided_holds=0", out)
        self.env.start_server()
        p1, p2 = H.points_of(a, m1["id"]), H.points_of(b, m2["id"])
        self.assertEqual((p1["available"], p2["available"], p2["held"]), (7, 50, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
