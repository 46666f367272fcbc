"""Process, file and measurement helpers for the benchmark orchestrator (run.py).

Everything started here is registered so that teardown() can stop it on any
exit path (normal end, exception, Ctrl-C, SIGTERM): servers get SIGTERM (or
their own fast-shutdown signal), then SIGKILL after a bounded wait.  Only
processes this module started are ever signalled, by pid.
"""

import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import time

_PROCS = []  # (Popen, stop_signal, name)
_DIRS = []
KEEP_DIRS = False
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def register_dir(path):
    _DIRS.append(path)
    return path


def start(argv, name, stop_signal=signal.SIGTERM, **kw):
    """Starts a server process in its own session and registers it."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    _PROCS.append((p, stop_signal, name))
    return p


def stop(p, timeout=15):
    """Stops one registered process: its stop signal, then SIGKILL."""
    for i, (q, sig, name) in enumerate(_PROCS):
        if q is p:
            _PROCS.pop(i)
            break
    else:
        sig, name = signal.SIGTERM, "?"
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {p.pid}) did not stop in {timeout}s; killing it")
            p.kill()
            p.wait(timeout=10)
        except ProcessLookupError:
            pass
    for f in (p.stdout, p.stderr):
        if f:
            f.close()
    return p.returncode


def teardown():
    while _PROCS:
        stop(_PROCS[-1][0])
    if not KEEP_DIRS:
        while _DIRS:
            shutil.rmtree(_DIRS.pop(), ignore_errors=True)


def wait_line(p, needle, timeout):
    """Reads p.stdout until a line containing needle; returns that line."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = p.stdout.fileno()
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise BenchError(f"process exited ({p.returncode}) before printing {needle!r}")
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 4096)
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if needle in line:
                    return line
    raise BenchError(f"timed out after {timeout}s waiting for {needle!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def run(argv, timeout, check=True, **kw):
    """Runs a command to completion, bounded in time; returns CompletedProcess."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    argv = [str(a) for a in argv]
    try:
        r = subprocess.run(argv, timeout=timeout, text=True, **kw)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{argv[0]} timed out after {timeout}s") from e
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv[:6]))}... exited {r.returncode}: "
                         f"{(r.stderr or '')[-800:]}")
    return r


def run_json(argv, timeout, **kw):
    r = run(argv, timeout, **kw)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"{argv[0]} printed no JSON: {r.stdout[-400:]} {r.stderr[-400:]}") from e


def proc_cpu_s(pid):
    """utime+stime of a process (all its threads, live and exited) in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_s(root_pid):
    """CPU of a process tree: the root with its reaped children (cutime, cstime)
    plus every live descendant.  Right for the PostgreSQL postmaster, whose
    backends come and go with the client connections."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(d), fields))
    total = 0.0
    try:
        with open(f"/proc/{root_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    except OSError:
        return 0.0
    stack = [root_pid]
    while stack:
        for pid, fields in children.get(stack.pop(), []):
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK
            stack.append(pid)
    return total


def percentile(sorted_vals, q):
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, int(q * len(sorted_vals)))
    return sorted_vals[i]


def lat_summary(vals_us):
    v = sorted(vals_us)
    return {"n": len(v), "mean": statistics.fmean(v) if v else 0.0,
            "p50": percentile(v, 0.5), "p90": percentile(v, 0.9), "p99": percentile(v, 0.99),
            "p999": percentile(v, 0.999), "max": v[-1] if v else 0.0}


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


# jifen's /metrics lines that say how often the writer restarted the WAL and
# how long its own copies before a restart took (docs/PERFORMANCE.md: the
# forced restarts are W1o's and W6's latency tail).
WAL_METRICS = {"jifen_wal_restarts_total": "restarts",
               "jifen_wal_restarts_forced_total": "forced",
               "jifen_wal_restart_seconds_sum": "restart_s"}


def parse_metrics(text, names):
    """{name: value} of the unlabelled samples of jifen's /metrics text whose
    name is in names (those absent are left out)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in names:
            out[parts[0]] = float(parts[1])
    return out


def parse_wal_metrics(text):
    """{"restarts", "forced", "restart_s"} from jifen's /metrics text; None
    when any of them is missing."""
    found = parse_metrics(text, WAL_METRICS)
    out = {WAL_METRICS[k]: v for k, v in found.items()}
    return out if len(out) == len(WAL_METRICS) else None


def wal_delta(before, after):
    """What the WAL counters did between two readings; None without both."""
    if not before or not after:
        return None
    return {k: after[k] - before[k] for k in WAL_METRICS.values()}


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_ticks():
    """(stolen, total) CPU ticks of the whole machine so far, from /proc/stat's
    first line: user nice system idle iowait irq softirq steal (guest time is
    inside user and nice).  Stolen time is what the hypervisor gave other
    guests while this VM's CPUs had work: on these machines it came and went
    within the hour (0% idle, 48% under load), and a run measured while it is
    high is slower for reasons that are not the system's."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return (v[7] if len(v) > 7 else 0), sum(v)


def steal_pct(before, after):
    """Percent of the machine's CPU time stolen between two cpu_ticks()."""
    total = after[1] - before[1]
    return round(100.0 * (after[0] - before[0]) / total, 1) if total > 0 else None


def round_steal(results):
    """The largest share of CPU time stolen during any run of one round (one
    run of each system of a cell row); None when no run measured it."""
    vals = [r.get("steal_pct") for r in results if r.get("steal_pct") is not None]
    return max(vals) if vals else None


def pick_round(attempts, steal_max):
    """(kept, discarded, again) for the attempts of one round so far, each a
    list of run results (one per system).  A round in which the hypervisor
    took more than steal_max percent of the CPU time during some run is
    measured again while retries last (the caller decides how many); what is
    kept is the attempt with the least stolen time, so a row's ratios come
    from runs of every system taken in the same quiet spell, and the others
    are reported beside it, never silently dropped.  again is True when the
    last attempt was stolen above steal_max."""
    if not attempts:
        return [], [], False
    stolen = [round_steal(a) for a in attempts]
    last = stolen[-1]
    again = last is not None and last > steal_max
    best = min(range(len(attempts)),
               key=lambda i: (stolen[i] if stolen[i] is not None else 0.0, i))
    discarded = [r for i, a in enumerate(attempts) if i != best for r in a]
    return attempts[best], discarded, again


def copy_db(src, dst):
    """Copies a SQLite database with its WAL (the source server is stopped),
    then writes everything dirty back to the disk (sync) before returning:
    otherwise the kernel writes the copy back (1.3 GB for W6's database, and
    a freshly built cache before it) during the measurement that follows,
    and on a slow disk that writeback was the measurement (W1's p99 0.35 to
    0.74 s at 5,000 earns/s on a fresh W6 copy, 32-66 ms after a sync, old
    and new builds alike)."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, dst + suffix)
        elif os.path.exists(dst + suffix):
            os.unlink(dst + suffix)
    os.sync()
