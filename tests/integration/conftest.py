"""Fixtures for sluice integration tests: real mockllm and sluiced processes.

Run with Debian's interpreter (it has pytest):

    SLUICE_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/integration

Everything listens on and talks to 127.0.0.1 only.  Every wait is bounded
by a count and a deadline, and every process a fixture starts is stopped
by its own pid (or its own process group) at teardown.

Fixtures:
    mock            one mockllm, function scope
    mock_factory    mock_factory(*args) -> another mockllm (extra CLI args)
    sluice          sluice(**kw) -> a running sluiced -f (see Sluice.config)
    sdk             build/sdk: the official JS SDKs from npm, and tests/sdk
    tmp_path        pytest's own, used for configs, logs, pid files, certs
"""

import glob
import http.client
import itertools
import json
import re
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("SLUICE_BUILD", os.path.join(ROOT, "build"))
SLUICED = os.path.join(BUILD, "sluiced")
MOCKLLM = os.path.join(BUILD, "mockllm")

HOST = "127.0.0.1"
LOG_TAIL_LINES = 60


# ---------------------------------------------------------------------------
# Small helpers shared by the tests.
# ---------------------------------------------------------------------------

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def closed_port():
    """A port nobody listens on (bound then released, never listened)."""
    return free_port()


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it is true; bounded by count and deadline."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    v = pred()
    if v:
        return v
    raise AssertionError("timed out after %.1fs waiting for %s" %
                         (timeout, what))


def port_accepts(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def request(port, method, path, body=None, headers=None, timeout=10.0,
            host=HOST, tls=False):
    """One request on a fresh connection: (status, headers, body bytes).

    Header names in the returned dict are lower-cased.  body may be bytes,
    str or a dict/list (sent as JSON)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def post(port, path, body, headers=None, timeout=10.0):
    return request(port, "POST", path, body, headers, timeout)


def read_stream(resp, limit=1000):
    """Read a (chunked) response piece by piece: [(monotonic time, bytes)].

    read1() returns as soon as some bytes of the body are available, so
    the timestamps show when each piece arrived."""
    pieces = []
    for _ in range(limit):
        data = resp.read1(65536)
        if not data:
            break
        pieces.append((time.monotonic(), data))
    return pieces


def pids_children(pid):
    """Direct children of pid (Linux /proc)."""
    kids = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return sorted(kids)


def proc_title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------------------
# mockllm
# ---------------------------------------------------------------------------

class Mock:
    """A running mockllm on 127.0.0.1:<port>."""

    def __init__(self, args=(), log_path=None):
        if not os.access(MOCKLLM, os.X_OK):
            pytest.fail("mockllm not built: %s (run make)" % MOCKLLM)
        self.args = list(args)
        self.tls = "--cert" in self.args
        self.log_path = log_path
        err = open(log_path, "wb") if log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [MOCKLLM, "-l", "%s:0" % HOST, "--quiet"] + self.args,
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        finally:
            if log_path:
                err.close()
        self.port = self._read_port(timeout=5.0)

    def _read_port(self, timeout):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        for _ in range(200):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0].decode()
                if line.startswith("listening on "):
                    return int(line.rsplit(":", 1)[1])
                break
        self.stop()
        pytest.fail("mockllm %s did not report its port; stdout: %r" %
                    (self.args, buf))

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", HOST,
                               self.port)

    def stats(self):
        st, _, body = request(self.port, "GET", "/stats", timeout=5.0,
                                tls=self.tls)
        assert st == 200, (st, body)
        return json.loads(body)

    def last(self):
        st, _, body = request(self.port, "GET", "/last", timeout=5.0,
                                tls=self.tls)
        assert st == 200, (st, body)
        return json.loads(body)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def mock_factory(tmp_path):
    """mock_factory(*cli_args) -> Mock; all are stopped at teardown."""
    mocks = []

    def make(*args):
        m = Mock(args, log_path=str(tmp_path / ("mockllm%d.log" % len(mocks))))
        mocks.append(m)
        return m

    yield make
    for m in mocks:
        m.stop()


@pytest.fixture
def mock(mock_factory):
    return mock_factory()


# ---------------------------------------------------------------------------
# sluiced
# ---------------------------------------------------------------------------

def upstream_block(name, url, protocol="openai", **directives):
    lines = ["upstream %s {" % name, "\turl %s;" % url,
             "\tprotocol %s;" % protocol]
    for k, v in directives.items():
        lines.append("\t%s %s;" % (k, v))
    lines.append("}")
    return "\n".join(lines)


class Sluice:
    """A sluiced -f started from a config built from keyword arguments.

    config(upstreams=..., routes=..., extra=..., workers=...):
        upstreams: {name: url} or {name: {"url": .., "protocol": ..,
                   other upstream directives...}}
        routes:    [(glob, name-or-"a b"), ...]; default: ("*", first)
        extra:     more top-level directive lines (a string)
    """

    def __init__(self, tmp_path, idx):
        self.dir = tmp_path / ("sluice%d" % idx)
        self.dir.mkdir()
        (self.dir / "spool").mkdir()
        self.conf_path = str(self.dir / "sluice.conf")
        self.log_path = str(self.dir / "sluiced.log")
        self.stderr_path = str(self.dir / "sluiced.stderr")
        self.pid_file = str(self.dir / "sluiced.pid")
        self.port = free_port()
        self.proc = None
        self.stuck = False

    def config(self, upstreams, routes=None, extra="", workers=2,
               shutdown_timeout="10s"):
        blocks = []
        for name, spec in upstreams.items():
            if isinstance(spec, str):
                spec = {"url": spec}
            spec = dict(spec)
            url = spec.pop("url")
            proto = spec.pop("protocol", "openai")
            blocks.append(upstream_block(name, url, proto, **spec))
        if routes is None:
            routes = [("*", next(iter(upstreams)))]
        lines = [
            "listen %s:%d;" % (HOST, self.port),
            "workers %d;" % workers,
            "pid_file %s;" % self.pid_file,
            "log %s debug;" % self.log_path,
            "spool_dir %s;" % (self.dir / "spool"),
            "shutdown_timeout %s;" % shutdown_timeout,
            # sluiced refuses root workers unless asked for them outright
            "user root;" if os.geteuid() == 0 and "user " not in extra
            else "",
            extra,
        ] + blocks + ["route %s %s;" % (g, u) for g, u in routes]
        return "\n".join(lines) + "\n"

    def write_config(self, **kw):
        self.workers = kw.get("workers", 2)
        with open(self.conf_path, "w") as f:
            f.write(self.config(**kw))

    def start(self, timeout=10.0):
        if not os.access(SLUICED, os.X_OK):
            pytest.fail("sluiced not built: %s (run make)" % SLUICED)
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [SLUICED, "-f", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True)
        finally:
            err.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(
                    "sluiced exited with %s at start\n%s" %
                    (self.proc.returncode, self.log_tail()))
            return port_accepts(self.port)

        wait_for(up, timeout, what="sluiced to accept on %d" % self.port)
        # Workers accept on the shared socket as soon as they exist; wait
        # until all of them are there so tests see a settled daemon.
        wait_for(lambda: len(self.worker_pids()) >= self.workers, timeout,
                 what="%d workers" % self.workers)
        # ... and listening: a worker takes its turn at accepting only
        # once it is on the sockets (each says so in the log), and the
        # first one there would otherwise take every connection
        wait_for(lambda: len(re.findall(r"worker slot \d+ serving",
                                        self.log_text())) >= self.workers,
                 timeout, what="%d workers serving" % self.workers)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def children(self):
        return [(p, proc_title(p)) for p in pids_children(self.pid)]

    def worker_pids(self):
        return sorted(p for p, t in self.children() if "worker" in t)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; SIGKILL the group only if stuck."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stuck = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
            return None

    def log_text(self):
        out = []
        for p in (self.log_path, self.stderr_path):
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def log_tail(self, n=LOG_TAIL_LINES):
        """The end of the log: its last non-debug lines (process events,
        warnings), then its last lines of any level."""
        parts = []
        for p in (self.log_path, self.stderr_path):
            try:
                with open(p, "rb") as f:
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            if not lines:
                continue
            events = [ln for ln in lines if " debug: " not in ln]
            if len(events) < len(lines):
                parts.append("==> %s (non-debug lines) <==\n%s" %
                             (p, "\n".join(events[-n:])))
            parts.append("==> %s <==\n%s" % (p, "\n".join(lines[-n // 3:])))
        return "\n".join(parts) or "(no sluiced log)"


@pytest.fixture
def sluice(request, tmp_path):
    """sluice(**config_kwargs) -> a started Sluice; stopped at teardown.

    Teardown sends SIGTERM and waits; a daemon that does not exit is
    SIGKILLed (its whole process group) and the test fails."""
    instances = []
    request.node._sluices = instances

    def make(start=True, **kw):
        s = Sluice(tmp_path, len(instances))
        instances.append(s)
        s.write_config(**kw)
        if start:
            s.start()
        return s

    yield make
    stuck = []
    for s in instances:
        s.stop()
        if s.stuck:
            stuck.append(s)
    if stuck:
        pytest.fail("sluiced did not exit within 15s of SIGTERM (killed):\n"
                    + "\n".join(s.log_tail() for s in stuck))
    # A sanitizer build (make check SAN=1) reports into the log or stderr
    # of whichever process hit the bug; any report fails the test.
    for s in instances:
        text = s.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:"):
            if marker in text:
                pytest.fail("sanitizer report in sluiced's output:\n" +
                            text[text.index(marker) - 200:][:3000])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in getattr(item, "_sluices", []):
            rep.sections.append(("sluiced log tail (%s)" % s.dir, s.log_tail()))


# ---------------------------------------------------------------------------
# PostgreSQL (metering tests)
# ---------------------------------------------------------------------------

def pg_port():
    """A free port below the kernel's ephemeral range, so that no
    outgoing connection can take it while PostgreSQL is down (initdb, or
    a test that stops and restarts the server)."""
    import random
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        return port
    return None


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    """One private PostgreSQL 15 cluster for the session (pgcluster.py),
    on 127.0.0.1 and a free port; destroyed at the end.  Tests that need
    a clean table create their own database in it."""
    from pgcluster import PgCluster
    err = None
    for attempt in range(3):        # a port taken since we chose it
        cluster = PgCluster(str(tmp_path_factory.mktemp("pg")),
                            port=pg_port())
        try:
            cluster.start()
            break
        except (RuntimeError, OSError) as e:
            cluster.destroy()
            err = e
    else:
        pytest.fail("cannot start PostgreSQL: %s" % err)
    yield cluster
    cluster.destroy()


# ---------------------------------------------------------------------------
# A fresh database per test, for the tests that read usage rows.
# ---------------------------------------------------------------------------

class UsageDb:
    """One database in the session's cluster; test modules subclass it
    with the queries they need."""

    def __init__(self, pg, name):
        self.pg = pg
        self.name = name

    def conninfo(self):
        return self.pg.conninfo(self.name)

    def query(self, sql, params=()):
        import psycopg
        with psycopg.connect(self.conninfo(), autocommit=True,
                             connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql, params=()):
        """A statement that returns no rows (INSERT, UPDATE)."""
        import psycopg
        with psycopg.connect(self.conninfo(), autocommit=True,
                             connect_timeout=5) as conn:
            conn.execute(sql, params)

    def count(self):
        """Rows in usage_events; 0 before the collector has created it."""
        import psycopg
        try:
            return self.query("SELECT count(*) FROM usage_events")[0][0]
        except psycopg.errors.UndefinedTable:
            return 0


_usage_db_seq = itertools.count()


@pytest.fixture
def make_db(pg):
    """make_db(cls=UsageDb) -> a new, empty database; dropped at
    teardown."""
    made = []

    def make(cls=UsageDb):
        name = "t_%d_%d" % (os.getpid(), next(_usage_db_seq))
        pg.psql('CREATE DATABASE "%s"' % name, dbname="postgres")
        made.append(name)
        return cls(pg, name)

    yield make
    for name in made:
        try:
            pg.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name,
                    dbname="postgres")
        except RuntimeError:
            pass


# ---------------------------------------------------------------------------
# The official SDKs (tests/sdk), from npm.
# ---------------------------------------------------------------------------

SDK_SRC = os.path.join(ROOT, "tests", "sdk")
SDK_DIR = os.path.join(BUILD, "sdk")


@pytest.fixture(scope="session")
def sdk():
    """build/sdk: node_modules with the pinned SDK versions, installed once
    from the npm registry, and the scripts of tests/sdk beside them."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail("%s is needed to run the official JS SDKs" % tool)
    os.makedirs(SDK_DIR, exist_ok=True)
    for f in glob.glob(os.path.join(SDK_SRC, "*")):
        shutil.copy(f, SDK_DIR)
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "openai")):
        r = subprocess.run(["npm", "install", "--no-package-lock",
                            "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=SDK_DIR, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    return SDK_DIR
