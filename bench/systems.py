"""The systems under test: jifen and the durable baselines.

Each system offers the same small interface to run.py:

  available()            -> (bool, reason)   packages present?
  setup()                   start what is shared by all workloads, seed the base data
  prepare(wl)               fresh state for one workload (copy of the base DB / reseed)
  run(wl, conns, rate, duration, warmup, prefix) -> one run's result dict
  close()                   stop everything it started

A result dict has: throughput (ops/s), ops, lat_us / read_lat_us / write_lat_us
(n, mean, p50, p90, p99, p999, max in microseconds), cpu_s (server CPU during
the measured window), errors, refused, replayed, and "na" (why it does not
apply) when the system cannot run the workload.

Workload kinds (wl["kind"]): earn, redeem, transfer, read, batch; wl["hot"]
restricts earns to that many members; wl["frozen"] (jifen only, W1f and W5f)
sends the earns to that many members frozen first, so that the writer refuses
every one.
"""

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import benchlib as B

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(HERE, "build")
LOADGEN = os.path.join(BIN, "loadgen")
PGBIN = "/usr/lib/postgresql/15/bin"
SEED_BALANCE = 1000
# The floor's members (W1f, W5f), frozen through the API before its runs (about a
# second's work here): enough that the earns spread over the writer's member cache
# as W1's do over 100,000, and the in-flight keys never collide.
FLOOR_MEMBERS = 1000


def loadgen_workload(wl):
    return {"earn": "earn", "redeem": "redeem", "transfer": "transfer", "read": "read",
            "batch": "batch"}[wl["kind"]]


def normalize(res, cpu_s=None):
    """Adds cpu_us_per_op to a loadgen/sqlite_bench result."""
    if cpu_s is not None:
        res["server_cpu_s"] = cpu_s
    ops = res.get("ops") or 0
    cpu = res.get("server_cpu_s")
    res["cpu_us_per_op"] = cpu / ops * 1e6 if cpu is not None and cpu >= 0 and ops else None
    return res


def file_sha(path, n=12):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


# --------------------------------------------------------------------------- jifen

# W8's tiers: the demo's (scripts/demo.sh), on growth over a rolling 12 months.
RULES_TIERS = {
    "window": {"type": "rolling_months", "months": 12},
    "tiers": [
        {"code": "silver", "name": "Silver", "name_zh": "银卡", "threshold": 0},
        {"code": "gold", "name": "Gold", "name_zh": "金卡", "threshold": 200, "retain": 150,
         "benefits": {"earn_multiplier": {"num": 5, "den": 4}}},
        {"code": "diamond", "name": "Diamond", "name_zh": "钻石卡", "threshold": 2000,
         "benefits": {"earn_multiplier": {"num": 3, "den": 2},
                      "birthday_multiplier": {"num": 2}}}]}

class Jifen:
    name = "jifen"

    def __init__(self, cfg, workdir):
        self.cfg = cfg
        self.dir = os.path.join(workdir, "jifen")
        os.makedirs(self.dir, exist_ok=True)
        self.bin = cfg.jifen_bin
        self.proc = None
        self.db = None
        self.port = None
        self.key = None
        self.base = None  # directory holding base.db, members.txt, key.json
        self.bases = {}  # kind -> (directory, admin key): "plain", and "rules" for W8
        self.test_clock = False

    def available(self):
        if not os.access(self.bin, os.X_OK):
            return False, f"{self.bin} not built (make build)"
        return True, ""

    # -- server lifecycle
    def start(self, db, test_clock=False):
        self.db = db
        argv = [self.bin, "serve", "--db", db, "--listen", "127.0.0.1:0"]
        if test_clock:
            argv.append("--test-clock")
        if self.cfg.jifen_threads:
            argv += ["--threads", str(self.cfg.jifen_threads)]
        err = open(os.path.join(self.dir, "serve.log"), "ab")
        self.proc = B.start(argv, "jifen", stdout=subprocess.PIPE, stderr=err)
        err.close()
        line = B.wait_line(self.proc, "jifen listening on", 60)
        self.port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        self.test_clock = test_clock

    def stop(self, check=True):
        """Stops the server; then, unless check is False (the caller checks
        the file itself), runs check_file."""
        if self.proc:
            rc = B.stop(self.proc, timeout=60)
            self.proc = None
            if rc not in (0, None):
                B.log(f"jifen exited {rc} (see {self.dir}/serve.log)")
            if check:
                self.check_file()

    def check_file(self):
        """SQLite's quick_check on the database the server just used: load must
        never leave a corrupt file (SQLite's WAL-reset race did once, seeding W6;
        src/core/engine.c)."""
        con = sqlite3.connect(self.db, timeout=60)
        try:
            rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
        finally:
            con.close()
        if rows != ["ok"]:
            raise B.BenchError(f"jifen's database {self.db} fails quick_check: {rows[:3]}")

    def http(self, method, path, body=None, timeout=30, idem=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method)
        req.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if idem:
            req.add_header("Idempotency-Key", idem)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw[:200].decode(errors="replace")}

    def loadgen(self, args, timeout):
        argv = [LOADGEN, "--port", str(self.port), "--api-key", self.key] + [str(a) for a in args]
        r = B.run(argv, timeout, check=False)
        for line in r.stderr.splitlines()[:5]:
            B.log(f"  jifen: {line[:300]}")
        if r.returncode not in (0, 1):
            raise B.BenchError(f"loadgen exited {r.returncode}: {r.stderr[-400:]}")
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            raise B.BenchError(f"loadgen printed no JSON: {r.stderr[-400:]}") from e

    # -- base data
    def cache_dir(self, kind):
        """bench/.cache/<kind>-<members>[-<lots>]-<sha of the jifen binary>: a seeded
        database is reused while the binary is the same (seeding 100,000 members
        through the API is the slow part of a run); --no-cache forces reseeding."""
        tag = f"{kind}-{self.cfg.members}" + (f"-{self.cfg.lots}" if kind == "w6" else "")
        return os.path.join(self.cfg.cache, f"jifen-{tag}-{file_sha(self.bin)}")

    def earn_each(self, total, points, prefix, members_file, expires_at=None):
        """Earns `points` `total` times, going through the members in turn (each
        member total / members times).  Uses POST /v1/batch when jifen serves it
        (1,000 operations per request), single earns otherwise.  Returns the
        number of earns that succeeded."""
        per = next((b for b in range(min(1000, total), 0, -1) if total % b == 0), 1)
        common = ["--sequential", "--points", points, "--conns", 64 if per < 50 else 4,
                  "--members", members_file, "--prefix", prefix]
        if expires_at:
            common += ["--expires-at", expires_at]
        if per >= 50 and self.batch_supported()[0]:
            res = self.loadgen(["--workload", "batch", "--batch", per, "--count", total // per]
                               + common, timeout=self.cfg.seed_timeout)
            return res["ops"]
        res = self.loadgen(["--workload", "earn", "--count", total] + common,
                           timeout=self.cfg.seed_timeout)
        return res["ok"]

    def seed_members(self, db, out_dir):
        n = self.cfg.members
        t = time.monotonic()
        members = os.path.join(out_dir, "members.txt")
        res = self.loadgen(["--workload", "seed", "--count", n, "--conns", 64, "--prefix",
                            f"m{int(time.time())}", "--out", members],
                           timeout=self.cfg.seed_timeout)
        if res["ok"] != n:
            raise B.BenchError(f"jifen seeding created {res['ok']} of {n} members: {res['status']}")
        ok = self.earn_each(n, SEED_BALANCE, "seed", members)
        if ok != n:
            raise B.BenchError(f"jifen seed earns: {ok} of {n}")
        B.log(f"jifen: seeded {n} members with {SEED_BALANCE} points each in "
              f"{time.monotonic() - t:.1f}s")

    def setup(self):
        self.bases["plain"] = self.build_base("base", [])
        self.base, self.key = self.bases["plain"]

    def build_base(self, kind, init_args, configure=None):
        """A seeded base database (cached, cache_dir): `jifen init` with
        init_args, then configure() with the server up, then the members.
        Returns (directory, admin API key)."""
        cdir = self.cache_dir(kind)
        if self.cfg.cache_enabled and os.path.exists(os.path.join(cdir, "key.json")):
            B.log(f"jifen: using cached {kind} database {cdir}")
            with open(os.path.join(cdir, "key.json")) as f:
                return cdir, json.load(f)["api_key"]
        build = os.path.join(self.dir, f"{kind}-build")
        os.makedirs(build, exist_ok=True)
        db = os.path.join(build, "base.db")
        init = B.run([self.bin, "init", "--db", db, "--tenant", "bench", "--json"] + init_args,
                     60)
        info = json.loads(init.stdout)
        self.key = info["api_key"]
        self.start(db)
        try:
            if configure:
                configure()
            self.seed_members(db, build)
        finally:
            self.stop()
        with open(os.path.join(build, "key.json"), "w") as f:
            json.dump(info, f)
        if not self.cfg.cache_enabled:
            return build, info["api_key"]
        tmp = cdir + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(build, tmp)
        os.replace(tmp, cdir)
        return cdir, info["api_key"]

    def configure_tiers(self):
        status, body = self.http("PUT", "/v1/tiers", RULES_TIERS)
        if status != 200:
            raise B.BenchError(f"jifen: PUT /v1/tiers answered {status}: {body}")

    def use_base(self, wl):
        """The base W8 needs (its sample rules and tiers, built on first use),
        else the plain one."""
        kind = wl.get("base", "plain")
        if kind not in self.bases:
            self.bases[kind] = self.build_base(kind, ["--rules", "active"], self.configure_tiers)
        self.base, self.key = self.bases[kind]

    @property
    def members_file(self):
        return os.path.join(self.base, "members.txt")

    def prepare(self, wl):
        self.stop()
        self.use_base(wl)
        db = os.path.join(self.dir, "run.db")
        B.copy_db(os.path.join(self.base, "base.db"), db)
        self.start(db)
        if wl.get("frozen"):
            self.freeze(wl["frozen"])

    @property
    def frozen_file(self):
        return os.path.join(self.dir, "frozen.txt")

    def freeze(self, n):
        """Freezes the first n members of the base (PATCH status frozen) and
        lists them in frozen_file: the floor's earns go to them."""
        with open(self.members_file) as f:
            ids = [line.strip() for line in f if line.strip()][:n]
        for i, mid in enumerate(ids):
            status, body = self.http("PATCH", f"/v1/members/{mid}", {"status": "frozen"},
                                     idem=f"freeze-{i}-{time.time_ns()}")
            if status != 200 or body.get("status") != "frozen":
                raise B.BenchError(f"jifen: freezing {mid} answered {status}: {body}")
        with open(self.frozen_file, "w") as f:
            f.write("\n".join(ids) + "\n")

    def batch_supported(self):
        status, body = self.http("POST", "/v1/batch", {"operations": []})
        if status == 404:
            return False, "POST /v1/batch answers 404 (not implemented)"
        if status == 405:
            return False, "POST /v1/batch answers 405"
        return True, f"probe answered {status}"

    def metrics_text(self, timeout=30):
        """The server's /metrics (Prometheus text)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/metrics")
        req.add_header("Authorization", f"Bearer {self.key}")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode()

    def wal_counters(self):
        """The server's WAL restart counters (B.parse_wal_metrics), or None."""
        try:
            return B.parse_wal_metrics(self.metrics_text(timeout=10))
        except (OSError, ValueError):
            return None

    def run(self, wl, conns, rate, duration, warmup, prefix):
        """One loadgen run; its result's "wal" is what the WAL restarts did
        over the run, warmup included."""
        if wl["kind"] == "batch":
            ok, why = self.batch_supported()
            if not ok:
                return {"na": why}
        members = self.frozen_file if wl.get("frozen") else self.members_file
        args = ["--workload", loadgen_workload(wl), "--members", members,
                "--conns", conns, "--duration", duration, "--warmup", warmup,
                "--prefix", prefix, "--cpu-pid", self.proc.pid, "--rate", rate or 0]
        if wl.get("hot"):
            args += ["--hot", wl["hot"]]
        if wl.get("orders"):
            args += ["--orders", "--order-lines", self.cfg.order_lines]
        if wl.get("frozen"):
            args += ["--frozen"]
        if wl["kind"] == "batch":
            args += ["--batch", self.cfg.batch_size]
        before = self.wal_counters()
        res = normalize(self.loadgen(args, timeout=duration + warmup + 120))
        res["wal"] = B.wal_delta(before, self.wal_counters())
        applied = (res.get("ops") or 0) - (res.get("refused") or 0)
        if wl.get("frozen") and (applied or res.get("op_failed")):
            raise B.BenchError(f"the floor's operations were not all refused: {applied} applied, "
                               f"{res.get('op_failed')} failed otherwise ({res.get('status')})")
        return res

    def close(self):
        self.stop()


# --------------------------------------------------------------------------- SQLite

class SQLite:
    name = "sqlite"

    def __init__(self, cfg, workdir):
        self.cfg = cfg
        self.dir = os.path.join(workdir, "sqlite")
        os.makedirs(self.dir, exist_ok=True)
        self.exe = os.path.join(BIN, "sqlite_bench")
        self.base = os.path.join(self.dir, "base.db")
        self.db = os.path.join(self.dir, "run.db")

    def available(self):
        return (True, "") if os.access(self.exe, os.X_OK) else (False, "sqlite_bench not built")

    def setup(self):
        B.run([self.exe, "--db", self.base, "--init", "--nmembers", self.cfg.members,
               "--balance", SEED_BALANCE], 300)

    def prepare(self, wl):
        B.copy_db(self.base, self.db)

    def run(self, wl, conns, rate, duration, warmup, prefix):
        threads = conns
        if wl["kind"] == "batch":
            threads = min(conns, self.cfg.batch_conns)
        argv = [self.exe, "--db", self.db, "--workload", loadgen_workload(wl), "--threads",
                threads, "--duration", duration, "--warmup", warmup, "--nmembers",
                self.cfg.members, "--prefix", prefix, "--rate", rate or 0]
        if wl.get("hot"):
            argv += ["--hot", wl["hot"]]
        if wl["kind"] == "batch":
            argv += ["--batch", self.cfg.batch_size]
        return normalize(B.run_json([str(a) for a in argv], duration + warmup + 120))

    def close(self):
        pass


# --------------------------------------------------------------------------- Redis

def resp_encode(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_call(port, *args, timeout=60):
    """One command to Redis on 127.0.0.1; returns the decoded simple reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp_encode(*args))
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise B.BenchError("redis closed the connection")
            buf += chunk
        line, rest = buf.split(b"\r\n", 1)
        kind, val = line[:1], line[1:].decode()
        if kind == b"-":
            raise B.BenchError(f"redis: {val}")
        if kind == b"$":
            n = int(val)
            while len(rest) < n + 2:
                rest += s.recv(65536)
            return rest[:n].decode()
        return val


class Redis:
    name = "redis"

    def __init__(self, cfg, workdir):
        self.cfg = cfg
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.port = None
        self.sha = {}

    def available(self):
        return (True, "") if shutil.which("redis-server") else (False, "redis-server not installed")

    def setup(self):
        self.port = B.free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--protected-mode", "yes", "--logfile",
                os.path.join(self.dir, "redis.log"), "--daemonize", "no"]
        self.proc = B.start(argv, "redis", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        B.wait_port(self.port, 30)
        for op in ("earn", "redeem", "transfer"):
            with open(os.path.join(HERE, "redis", f"{op}.lua")) as f:
                self.sha[op] = resp_call(self.port, "SCRIPT", "LOAD", f.read())
        self.version = resp_call(self.port, "INFO", "server").split("redis_version:")[1].split()[0]

    def prepare(self, wl):
        resp_call(self.port, "FLUSHALL")
        res = self.loadgen(["--workload", "earn", "--sequential", "--count", self.cfg.members,
                            "--points", SEED_BALANCE, "--conns", 32, "--prefix", "seed"],
                           timeout=self.cfg.seed_timeout)
        if res["ok"] != self.cfg.members:
            raise B.BenchError(f"redis seeding: {res}")

    def loadgen(self, args, timeout):
        argv = [LOADGEN, "--proto", "resp", "--port", self.port, "--nmembers", self.cfg.members,
                "--sha-earn", self.sha["earn"], "--sha-redeem", self.sha["redeem"],
                "--sha-transfer", self.sha["transfer"]] + args
        return B.run_json([str(a) for a in argv], timeout)

    def run(self, wl, conns, rate, duration, warmup, prefix):
        if wl["kind"] == "batch":
            return {"na": "no batched variant for Redis"}
        args = ["--workload", loadgen_workload(wl), "--conns", conns, "--duration", duration,
                "--warmup", warmup, "--prefix", prefix, "--cpu-pid", self.proc.pid,
                "--rate", rate or 0]
        if wl.get("hot"):
            args += ["--hot", wl["hot"]]
        return normalize(self.loadgen(args, timeout=duration + warmup + 120))

    def close(self):
        if self.proc:
            B.stop(self.proc)
            self.proc = None


# --------------------------------------------------------------------------- PostgreSQL

class PgServer:
    """One PostgreSQL 15 instance shared by the pg-func and pg-txn variants."""

    def __init__(self, cfg, workdir):
        self.cfg = cfg
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.proc = None
        self.port = None
        self.started = False
        self.seeded_for = None  # the variant (pg-func or pg-txn) the tables were seeded for

    def available(self):
        for exe in ("initdb", "postgres", "pgbench", "psql"):
            if not os.access(os.path.join(PGBIN, exe), os.X_OK):
                return False, f"{PGBIN}/{exe} missing (postgresql-15)"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False, "no postgres user"
        return True, ""

    def _as_postgres(self):
        if os.getuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def setup(self):
        if self.started:
            return
        os.makedirs(self.dir, exist_ok=True)
        pw = pwd.getpwnam("postgres")
        if os.getuid() == 0:
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            # The postgres user must be able to reach the work directory.
            os.chmod(os.path.dirname(self.dir), 0o755)
        B.run([os.path.join(PGBIN, "initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
               "-E", "UTF8", "--locale=C"], 120, **self._as_postgres())
        self.port = B.free_port()
        # Durable (fsync, synchronous_commit, full_page_writes: the defaults),
        # tuned as a competent team would: big enough shared_buffers and WAL
        # that no checkpoint falls inside a measurement.
        settings = {
            "listen_addresses": "127.0.0.1", "port": self.port,
            "unix_socket_directories": self.dir, "max_connections": 300,
            "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
            "shared_buffers": "1GB", "wal_buffers": "64MB", "max_wal_size": "8GB",
            "checkpoint_timeout": "30min", "autovacuum": "on",
            "logging_collector": "off", "log_min_messages": "warning",
        }
        argv = [os.path.join(PGBIN, "postgres"), "-D", self.data]
        for k, v in settings.items():
            argv += ["-c", f"{k}={v}"]
        log = open(os.path.join(self.dir, "postgres.log"), "ab")
        # SIGINT is PostgreSQL's fast shutdown.
        self.proc = B.start(argv, "postgres", stop_signal=signal.SIGINT, stdout=log, stderr=log,
                            **self._as_postgres())
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = B.run([os.path.join(PGBIN, "pg_isready"), "-h", "127.0.0.1", "-p",
                       str(self.port)], 10, check=False)
            if r.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise B.BenchError(f"postgres exited; see {self.dir}/postgres.log")
            time.sleep(0.2)
        else:
            raise B.BenchError("postgres did not become ready in 60s")
        self.psql_file(os.path.join(HERE, "pg", "schema.sql"))
        self.version = self.psql("SHOW server_version").strip()
        self.started = True

    def psql(self, sql, variables=None, timeout=600):
        argv = [os.path.join(PGBIN, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                "postgres", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return B.run(argv, timeout).stdout

    def psql_file(self, path, variables=None, timeout=600):
        argv = [os.path.join(PGBIN, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path]
        for k, v in (variables or {}).items():
            argv += ["-v", f"{k}={v}"]
        return B.run(argv, timeout).stdout

    def reset(self):
        self.psql_file(os.path.join(HERE, "pg", "seed.sql"),
                       {"n": self.cfg.members, "balance": SEED_BALANCE})

    def pgbench(self, scripts, conns, duration, variables, rate=0, log_dir=None):
        """Runs pgbench; returns (stdout, list of (script_no, latency_us))."""
        argv = [os.path.join(PGBIN, "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                "postgres", "-n", "-M", "prepared", "-c", str(conns), "-j",
                str(min(conns, self.cfg.pgbench_threads)), "-T", str(max(1, round(duration)))]
        if rate:
            argv += ["-R", str(rate)]
        for k, v in variables.items():
            argv += ["-D", f"{k}={v}"]
        for s, w in scripts:
            argv += ["-f", f"{os.path.join(HERE, 'pg', s)}@{w}"]
        if log_dir:
            shutil.rmtree(log_dir, ignore_errors=True)
            os.makedirs(log_dir)
            argv += ["-l", f"--log-prefix={os.path.join(log_dir, 'pgl')}"]
        r = B.run(argv + ["postgres"], duration + 300, check=False)
        lat = []
        if log_dir:
            for fn in os.listdir(log_dir):
                with open(os.path.join(log_dir, fn)) as f:
                    for line in f:
                        p = line.split()
                        if len(p) >= 6 and p[2] != "skipped" and p[2] != "failed":
                            lat.append((int(p[3]), float(p[2])))
        return r, lat

    def close(self):
        if self.proc:
            B.stop(self.proc, timeout=60)
            self.proc = None


class Postgres:
    """pg-func (one PL/pgSQL call per operation) or pg-txn (interactive)."""

    SCRIPTS = {
        "func": {"earn": "func_earn.sql", "redeem": "func_redeem.sql",
                 "transfer": "func_transfer.sql", "batch": "func_batch.sql"},
        "txn": {"earn": "txn_earn.sql", "redeem": "txn_redeem.sql",
                "transfer": "txn_transfer.sql"},
    }

    def __init__(self, server, variant):
        self.server = server
        self.variant = variant
        self.name = f"pg-{variant}"
        self.cfg = server.cfg

    def available(self):
        return self.server.available()

    def setup(self):
        self.server.setup()
        self.version = self.server.version

    def prepare(self, wl):
        self.server.reset()
        self.server.seeded_for = self.name

    def before_run(self, wl):
        """pg-func and pg-txn share one database and their runs take turns
        (run.py, Bench.workload): each starts from its own seeding, never
        from the other's rows (a W3 redeem would find balances the other
        drained)."""
        if self.server.seeded_for != self.name:
            self.prepare(wl)

    def run(self, wl, conns, rate, duration, warmup, prefix):
        kind = wl["kind"]
        n = wl.get("hot") or self.cfg.members
        variables = {"n": n, "pfx": prefix, "batch": self.cfg.batch_size}
        if kind == "read":
            if self.variant != "func":
                return {"na": "W7 runs on pg-func only"}
            scripts = [("read_points.sql", 40), ("read_history.sql", 40), ("func_earn.sql", 20)]
            variables["n"] = self.cfg.members
        elif kind in self.SCRIPTS[self.variant]:
            scripts = [(self.SCRIPTS[self.variant][kind], 1)]
        else:
            return {"na": f"no {kind} script for {self.name}"}
        if kind == "batch":
            conns = min(conns, self.cfg.batch_conns)
        if warmup > 0:
            self.server.pgbench(scripts, conns, warmup, dict(variables, pfx=prefix + "w"), rate)
        cpu0 = B.tree_cpu_s(self.server.proc.pid)
        t0 = time.monotonic()
        r, lat = self.server.pgbench(scripts, conns, duration, variables, rate,
                                     log_dir=os.path.join(self.server.dir, "pgbench-log"))
        elapsed = time.monotonic() - t0
        time.sleep(0.3)  # let the backends exit and be reaped into the postmaster's cutime
        cpu1 = B.tree_cpu_s(self.server.proc.pid)
        tps = None
        for line in r.stdout.splitlines():
            if line.startswith("tps = "):
                tps = float(line.split()[2])
        failed = 0
        for line in r.stdout.splitlines():
            if line.startswith("number of failed transactions"):
                failed = int(line.split(":")[1].split()[0])
        aborted = r.stderr.count("aborted")
        if tps is None:
            raise B.BenchError(f"pgbench failed: {r.stderr[-600:]}")
        mult = self.cfg.batch_size if kind == "batch" else 1
        reads = [us for s, us in lat if kind == "read" and s < 2]
        writes = [us for s, us in lat if not (kind == "read" and s < 2)]
        res = {"workload": kind, "proto": "pgbench", "conns": conns, "rate": rate or 0,
               "duration_s": round(duration), "requests": len(lat), "ops": len(lat) * mult,
               "throughput": tps * mult, "ok": len(lat), "refused": None, "replayed": None,
               "errors": failed + aborted, "lat_us": B.lat_summary([us for _, us in lat]),
               "read_lat_us": B.lat_summary(reads), "write_lat_us": B.lat_summary(writes),
               "pgbench_elapsed_s": elapsed}
        if aborted:
            res["stderr"] = r.stderr[-600:]
        # CPU over the whole pgbench run (connection setup included: small).
        cpu = cpu1 - cpu0
        res["server_cpu_s"] = cpu
        res["cpu_us_per_op"] = cpu / (tps * mult * max(1, round(duration))) * 1e6 if tps else None
        return res

    def close(self):
        if self.variant == "func":
            pass  # the server is closed once by run.py
