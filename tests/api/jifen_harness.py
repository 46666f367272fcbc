"""Black-box harness for jifen's HTTP API tests (Python 3 standard library only).

A test starts the real server binary (`build/jifen`, or $JIFEN_BIN) on a fresh
database in a temporary directory, with two tenants created by `jifen init`,
and talks HTTP/1.1 to it over keep-alive connections on 127.0.0.1 only.

    env = start_env(self)            # registers cleanup: verify, SIGTERM, rm
    c = env.admin                    # Client of tenant t1's admin key
    st, hdrs, body = c.post("/v1/members", {"external_id": "x"})

Randomised tests take their seed from seed_for(name): $SEED when set,
otherwise a fresh one; the seed is always printed as `seed=...` so a failure
can be replayed with `SEED=... python3 tests/api/test_x.py`.
"""

import http.client
import json
import os
import queue
import resource
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import uuid
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
READY_RE = re.compile(r"jifen listening on http://([0-9A-Za-z.\-\[\]:]+):(\d+)")
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0
# `jifen verify` at the end of each test: a long soak's millions of transactions
# take minutes (make soak sets JIFEN_VERIFY_TIMEOUT_S).
VERIFY_TIMEOUT_S = float(os.environ.get("JIFEN_VERIFY_TIMEOUT_S") or CLI_TIMEOUT_S)
POINTS_MAX = 9007199254740991
DAY_MS = 86400000

_UNSET = object()


def jifen_bin():
    """The server binary: $JIFEN_BIN, else <repo>/build/jifen."""
    path = os.environ.get("JIFEN_BIN") or os.path.join(REPO, "build", "jifen")
    return os.path.abspath(path)


def is_asan_build(path):
    """Whether the binary at path is built with AddressSanitizer (a library
    preloaded before its runtime needs ASAN_OPTIONS=verify_asan_link_order=0)."""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def is_tsan_build(path):
    """Whether the binary at path is built with ThreadSanitizer (`make tsan`)."""
    with open(path, "rb") as f:
        return b"__tsan_init" in f.read()


def sanitizer_heap(path):
    """Whether the binary's heap is a sanitizer's rather than glibc's (where
    malloc_trim hands nothing back)."""
    return is_asan_build(path) or is_tsan_build(path)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def seed_for(name):
    """The seed of a randomised test: $SEED or a fresh one; always printed."""
    env = os.environ.get("SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1, 2**31)
    log("%s: seed=%d" % (name, seed))
    return seed


def idem_key(prefix="k"):
    """A random Idempotency-Key (printable ASCII, well under 128 chars)."""
    return "%s-%s" % (prefix, uuid.uuid4().hex)


# ---------------------------------------------------------------- time helpers

def parse_time(s):
    """RFC 3339 (as the server prints it) -> milliseconds since the epoch."""
    if s is None:
        return None
    s2 = s.replace("Z", "+00:00")
    dt = datetime.fromisoformat(s2)
    return int(round(dt.timestamp() * 1000))


def fmt_time(ms):
    """Milliseconds since the epoch -> "YYYY-MM-DDTHH:MM:SS.mmmZ"."""
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


# ---------------------------------------------------------------- HTTP client

class Resp:
    """(status, headers, body) plus .raw bytes; body is parsed JSON when the
    response is JSON (application/json or application/problem+json), else
    text.  headers is an http.client.HTTPMessage (case-insensitive .get).
    Unpacks like a 3-tuple: st, hdrs, body = client.get(...)."""

    __slots__ = ("status", "headers", "body", "raw")

    def __init__(self, status, headers, body, raw):
        self.status, self.headers, self.body, self.raw = status, headers, body, raw

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def __getitem__(self, i):
        return (self.status, self.headers, self.body)[i]

    def __len__(self):
        return 3

    @property
    def code(self):
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def replayed(self):
        return (self.headers.get("Idempotent-Replayed") or "").strip().lower() == "true"

    def __repr__(self):
        return "<Resp %d %r>" % (self.status, self.raw[:600])


class Client:
    """One keep-alive HTTP/1.1 connection to the server with one API key.

    Writes are never retried silently, except that a request on a reused
    connection that the server had already closed (idle close) is re-sent once
    when nothing was received; reads are retried the same way."""

    def __init__(self, port, key=None, host="127.0.0.1", timeout=30.0):
        assert host == "127.0.0.1", "tests only talk to 127.0.0.1"
        self.host, self.port, self.key, self.timeout = host, port, key, timeout
        self.conn = None
        self.used = False

    def with_key(self, key):
        return Client(self.port, key, self.host, self.timeout)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None
        self.used = False

    def _connect(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.used = False
        return self.conn

    def request(self, method, path, body=None, key=_UNSET, idem=None, headers=None,
                params=None, content_type="application/json", retry_idle=True):
        """Sends one request.  body: dict/list -> JSON, str/bytes -> as is,
        None -> no body.  key: API key (default: the client's; None: no
        Authorization header).  idem: Idempotency-Key (True: a fresh one).
        Returns a Resp."""
        if params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(
                params, quote_via=urllib.parse.quote)
        hdrs = {}
        k = self.key if key is _UNSET else key
        if k is not None:
            hdrs["Authorization"] = "Bearer " + k
        if idem is True:
            idem = idem_key()
        if idem is not None:
            hdrs["Idempotency-Key"] = idem
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = bytes(body)
            if content_type is not None:
                hdrs["Content-Type"] = content_type
        elif method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = "0"
        if headers:
            hdrs.update(headers)
        for attempt in (0, 1):
            conn = self._connect()
            reused = self.used
            try:
                conn.request(method, path, body=data, headers=hdrs)
                r = conn.getresponse()
                raw = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError, http.client.BadStatusLine) as e:
                self.close()
                if attempt == 0 and reused and retry_idle:
                    log("note: connection closed by server before answer (%r); resending %s %s"
                        % (e, method, path))
                    continue
                raise
            except Exception:
                self.close()
                raise
            self.used = True
            if r.will_close:
                self.close()
            return Resp(r.status, r.msg, _decode(r.msg, raw), raw)
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        if body is None:
            body = {}
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def _decode(msg, raw):
    ctype = (msg.get("Content-Type") or "").lower()
    if "json" in ctype:
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return raw.decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def q(s):
    """Percent-encodes one path segment."""
    return urllib.parse.quote(s, safe="")


# ---------------------------------------------------------------- server process

class Server:
    """A running `jifen serve` process.  stdout is drained by a thread (the
    ready line gives the port); stderr goes to a file in the temp dir.  env:
    variables added to (or overriding) os.environ for the server process."""

    def __init__(self, db, workdir, test_clock=True, extra_args=(), env=None, nofile=None):
        self.db, self.workdir = db, workdir
        self.test_clock = test_clock
        self.extra_args = list(extra_args)
        self.env = dict(env) if env else None
        self.nofile = nofile  # the server's limit of open descriptors, when set
        self.proc = None
        self.port = None
        self.lines = []
        self.starts = 0

    def start(self):
        assert self.proc is None
        args = [jifen_bin(), "serve", "--db", self.db, "--listen", "127.0.0.1:0",
                "--access-log", "off"]
        if self.test_clock:
            args.append("--test-clock")
        args += self.extra_args
        self.starts += 1
        self.stderr_path = os.path.join(self.workdir, "serve-%d.stderr" % self.starts)
        errf = open(self.stderr_path, "wb")
        # Every answer the server will rebuild on a replay is rebuilt once as
        # it is stored and compared with the answer given (src/core/idem.c).
        child_env = dict(os.environ, JIFEN_CHECK_REPLIES="1", **(self.env or {}))
        limit = self.nofile

        def preexec():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errf,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=child_env,
                                     preexec_fn=preexec if limit is not None else None)
        errf.close()
        ready = queue.Queue()
        proc = self.proc

        def drain():
            found = False
            for line in iter(proc.stdout.readline, b""):
                text = line.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(text)
                if not found:
                    m = READY_RE.search(text)
                    if m:
                        found = True
                        ready.put(int(m.group(2)))
            proc.stdout.close()
            if not found:
                ready.put(None)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        try:
            port = ready.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            port = None
        if port is None:
            self.kill()
            raise AssertionError("server did not print its ready line within %.0fs: args=%r "
                                 "stdout=%r stderr=%r" % (READY_TIMEOUT_S, args, self.lines[-20:],
                                                          self.stderr_tail()))
        self.port = port
        return port

    def stderr_tail(self, n=3000):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM; returns the exit code (kills after STOP_TIMEOUT_S)."""
        if self.proc is None:
            return None
        p = self.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=STOP_TIMEOUT_S)
                self.proc = None
                return "timeout"
        self.proc = None
        return p.returncode

    def kill(self):
        """SIGKILL (kill -9) and reap."""
        if self.proc is None:
            return
        p = self.proc
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def run_cli(args, timeout=CLI_TIMEOUT_S):
    """Runs `jifen ARGS`; returns (exit code, stdout, stderr)."""
    p = subprocess.run([jifen_bin()] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def init_tenant(db, name):
    rc, out, err = run_cli(["init", "--db", db, "--tenant", name, "--json"])
    if rc != 0:
        raise AssertionError("jifen init --tenant %s failed rc=%d out=%r err=%r"
                             % (name, rc, out, err))
    obj = None
    for line in [out] + out.strip().splitlines()[::-1]:
        try:
            obj = json.loads(line)
            break
        except ValueError:
            continue
    if not isinstance(obj, dict) or "tenant_id" not in obj or "api_key" not in obj:
        raise AssertionError("jifen init --json printed no {tenant_id, api_key}: %r" % out)
    return obj


class Env:
    """A temp dir, a database with tenants t1 and t2, and a running server
    (env: extra environment of the server process only, not of the CLI)."""

    def __init__(self, test_clock=True, extra_args=(), env=None, nofile=None):
        if not os.path.exists(jifen_bin()):
            raise AssertionError("server binary not found: %s (set JIFEN_BIN)" % jifen_bin())
        self.dir = tempfile.mkdtemp(prefix="jifen-api-")
        self.db = os.path.join(self.dir, "jifen.db")
        self.closed = False
        try:
            self.t1 = init_tenant(self.db, "t1")
            self.t2 = init_tenant(self.db, "t2")
            self.server = Server(self.db, self.dir, test_clock, extra_args, env, nofile)
            self.server.start()
        except BaseException:
            self._kill_and_rm()
            raise
        self.clients = []
        self.admin = self.client(self.t1["api_key"])
        self.admin2 = self.client(self.t2["api_key"])

    @property
    def port(self):
        return self.server.port

    def client(self, key=None, timeout=30.0):
        c = Client(self.server.port, key, timeout=timeout)
        self.clients.append(c)
        return c

    def key(self, role, tenant=1, name=None):
        """Creates an API key of role in tenant (1 or 2); returns (key id, Client)."""
        admin = self.admin if tenant == 1 else self.admin2
        r = admin.post("/v1/api-keys", {"name": name or ("%s-key" % role), "role": role})
        if r.status != 201:
            raise AssertionError("POST /v1/api-keys role=%s -> %r" % (role, r))
        return r.body["id"], self.client(r.body["api_key"])

    def verify(self):
        """`jifen verify --db DB --json` -> (exit code, report (dict or text))."""
        rc, out, err = run_cli(["verify", "--db", self.db, "--json"], timeout=VERIFY_TIMEOUT_S)
        try:
            rep = json.loads(out)
        except ValueError:
            rep = out + err
        return rc, rep

    def restart(self, kill=False):
        for c in self.clients:
            c.close()
        if kill:
            self.server.kill()
        else:
            rc = self.server.stop()
            if rc != 0:
                raise AssertionError("server exit code on SIGTERM: %r; stderr: %s"
                                     % (rc, self.server.stderr_tail()))
        self.start_server()

    def start_server(self):
        """Starts the stopped server again and points every client at its new port."""
        for c in self.clients:
            c.close()
        self.server.start()
        for c in self.clients:
            c.port = self.server.port

    def _kill_and_rm(self, keep=False):
        srv = getattr(self, "server", None)
        if srv is not None:
            srv.kill()
        if keep or os.environ.get("JIFEN_KEEP"):
            log("keeping %s for inspection" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def close(self, check=True):
        """verify (server running), SIGTERM (exit 0 asserted), remove the temp dir.
        Always stops the server, even when a check fails."""
        if self.closed:
            return
        self.closed = True
        problems = []
        try:
            for c in self.clients:
                c.close()
            if check and self.server.running():
                rc, rep = self.verify()
                if rc != 0 or (isinstance(rep, dict) and rep.get("ok") is not True):
                    problems.append("jifen verify exit %d: %s" % (rc, json.dumps(rep)[:3000]
                                                                   if not isinstance(rep, str)
                                                                   else rep[:3000]))
            if self.server.proc is not None:
                was_running = self.server.running()
                rc = self.server.stop()
                if check and (rc != 0 or not was_running):
                    problems.append("server did not exit 0 on SIGTERM (running=%r rc=%r); "
                                    "stderr tail: %s" % (was_running, rc,
                                                         self.server.stderr_tail()))
        finally:
            self._kill_and_rm(keep=bool(problems))
        if problems:
            raise AssertionError("; ".join(problems))


def start_env(testcase, **kw):
    """Starts an Env and registers its close() as a cleanup of testcase."""
    env = Env(**kw)
    testcase.addCleanup(env.close)
    return env


# ---------------------------------------------------------------- API helpers

def check_ok(r, status, what=""):
    if r.status != status:
        raise AssertionError("%s: expected %d, got %r" % (what, status, r))
    return r.body


def split_response(buf):
    """The first whole HTTP response in raw bytes buf (with a Content-Length,
    as the server always sends): (status, body, bytes it takes), or None while
    it is incomplete.  For tests that talk to the server over raw sockets."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(buf) < end + 4 + length:
        return None
    return int(buf.split(b" ", 2)[1]), buf[end + 4:end + 4 + length], end + 4 + length


def metric(client, name):
    """One sample of /metrics (answered without a read, so also while a
    flush is held)."""
    r = client.get("/metrics", key=None)
    check_ok(r, 200, "metrics")
    for line in r.raw.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("metric %s missing" % name)


def create_member(c, external_id=None, **fields):
    body = {"external_id": external_id or ("ext-" + uuid.uuid4().hex[:12])}
    body.update(fields)
    r = c.post("/v1/members", body)
    return check_ok(r, 201, "create member %r" % body)


def earn(c, mid, points=None, idem=True, **extra):
    body = dict(extra)
    if points is not None:
        body["points"] = points
    return c.post("/v1/members/%s/earn" % mid, body, idem=idem)


def redeem(c, mid, points, idem=True, **extra):
    body = {"points": points}
    body.update(extra)
    return c.post("/v1/members/%s/redeem" % mid, body, idem=idem)


def points_of(c, mid, **params):
    r = c.get("/v1/members/%s/points" % mid, params=params or None)
    return check_ok(r, 200, "points of %s" % mid)


def member_of(c, mid):
    return check_ok(c.get("/v1/members/%s" % mid), 200, "member %s" % mid)


def list_all(c, path, params=None, limit=1000, max_pages=1000):
    """Walks every page of a list endpoint; returns the items."""
    items = []
    cursor = None
    for _ in range(max_pages):
        p = dict(params or {})
        p["limit"] = limit
        if cursor:
            p["cursor"] = cursor
        b = check_ok(c.get(path, params=p), 200, "list %s" % path)
        items.extend(b["data"])
        cursor = b.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError("list %s: more than %d pages" % (path, max_pages))


def clock_now(c):
    b = check_ok(c.get("/v1/test/clock"), 200, "GET test clock")
    return parse_time(b["now"])


def clock_set(c, ms):
    b = check_ok(c.put("/v1/test/clock", {"now": fmt_time(ms)}), 200, "PUT test clock")
    return parse_time(b["now"])


def clock_advance(c, delta_ms):
    return clock_set(c, clock_now(c) + delta_ms)


def program_patch(c, body):
    return check_ok(c.patch("/v1/program", body), 200, "PATCH program %r" % body)
