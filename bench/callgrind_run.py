"""callgrind_run.py - the instructions one sluiced worker spends on each
phase of a scripted workload, under valgrind --tool=callgrind.

Shared by bench/callgrind_ab.py (builds side by side) and
bench/perf_guard.py (make perf-guard: a committed baseline).

One run starts the build's mockllm and sluiced with one worker under
callgrind, sends a warm-up and then the phases from one client, and
stops sluiced.  Before each phase and after the last, the client makes
an admin request that callgrind is told to dump at (--dump-before=
admin_accept_cb), so each phase is one part of the worker's profile.  A
phase is requests on a new connection and then a closer, a request
refused for its key (the worker answers it by closing); measure() puts
an empty phase (the closer alone) first and subtracts it, so a figure is
the requests' own cost with one startup for all of them.

What would make two runs of one binary differ, and how it is avoided:

- A request in two writes.  http.client sends the head and the body in
  separate send()s, so the worker read them in one or two wake-ups as
  the scheduler pleased (0.5 % between runs of 400 requests, and the
  rejected request lingered or not).  Each request here is one send().
- Who goes first.  client_accept enables writing at once, so a worker
  that accepts before the request is there wakes once more, for an
  empty write (0.2 % on a refused request, a new connection each).  The
  client sends on a new connection only once the worker holds it and
  sleeps again, and waits for a connection the worker closes until the
  worker has let go of it: a close never shares a wake-up with the
  next accept.
- Lazy first-use work (the upstream connection, buffers, malloc's
  arena): one request of each kind first, outside every phase.
- The stack: sluiced gets ENV and nothing else, runs as a link in a
  /tmp directory whatever TMPDIR says and wherever the checkout is,
  since the sizes of the environment and argv move the stack, and
  memchr and memcpy count instructions by alignment (gzip_answer came
  out 0.15 % lower under make than from a shell).
- Answers: mockllm stamps "created" with --created, not the clock, so
  a gzipped answer has the same bytes, and costs the same to decode, in
  every run (0.2 % between runs otherwise).
- Timers: none of the worker's fires in a run of seconds; keep-alive
  and upstream idle timeouts are set far beyond one.
- Request ids: getrandom bytes, but reqid_new is branch-free over them
  and nothing on the path hashes them, so they change no count
  (tests/integration/test_perf_guard.py shows two runs agree).

Everything talks to 127.0.0.1; every wait is bounded.
"""

import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HOST = "127.0.0.1"
SECRET = "sk-sluice-bench-0123456789abcdef"
CREATED = "1767225600"	# mockllm's answers carry this time, not now
WAIT_S = 60.0		# for a process to come up or a close to be seen
MARK = "admin_accept_cb"	# where callgrind dumps: phase boundaries
# sluiced's whole environment: its size moves the stack, and with it the
# alignment that SIMD string functions' instruction counts depend on
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class Failed(Exception):
    """The workload did not run as scripted: no figure from it."""


class Request:
    """One request, its bytes built once, and the status it must get."""

    def __init__(self, size=1024, stream=False, key=SECRET, headers=None,
                 status=200, path="/v1/chat/completions", doc=None,
                 conf=""):
        """A chat of SIZE bytes, or the body DOC as it is; CONF: more
        sluice.conf lines for the run that measures it."""
        self.conf = conf
        if doc is None:
            doc = {"model": "gpt-4o-mini", "stream": stream,
                   "messages": [{"role": "user", "content": ""}]}
            doc["messages"][0]["content"] = "x" * max(
                0, size - len(json.dumps(doc)))
        body = json.dumps(doc).encode()
        hdrs = {"Host": HOST, "Content-Type": "application/json",
                "Authorization": "Bearer " + key, "x-mock-chunks": "20"}
        hdrs.update(headers or {})
        hdrs["Content-Length"] = str(len(body))
        head = "POST %s HTTP/1.1\r\n" % path + "".join(
            "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.raw = head.encode() + body
        self.status = status

    def digest(self):
        """The bytes sent and the status expected, in short."""
        return hashlib.sha256(self.raw + self.conf.encode()).hexdigest()[
            :16] + ":%d" % self.status


REFUSED = Request(key="sk-wrong", status=401)


class Marker(Request):
    """The admin request at a phase boundary: a 404, which reads no
    counters and so costs the same every time."""

    def __init__(self):
        self.conf = ""
        self.raw = b"GET /mark HTTP/1.1\r\nHost: %s\r\n\r\n" % \
            HOST.encode()
        self.status = 404


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Failed("mockllm exited early")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Failed("port %d never opened" % port)


def wait_worker(log, proc):
    """The worker's pid, once it logged that it serves (a probe
    connection would be one more accept, at a moment of its own)."""
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Failed("sluiced exited early")
        try:
            with open(log) as f:
                m = re.search(r"\[(\d+)\] worker \d+: worker slot 0 "
                              r"serving", f.read())
            if m:
                return int(m.group(1))
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise Failed("the worker never said it serves")


class Client:
    """One keep-alive client of one port that waits for the worker at
    each connection's start and end (see the top of this file)."""

    def __init__(self, port, wpid):
        self.port, self.wpid, self.sock = port, wpid, None

    def send(self, req):
        if self.sock is None:
            self.connect()
        self.sock.sendall(req.raw)
        r = http.client.HTTPResponse(self.sock)
        r.begin()
        r.read()
        if r.status != req.status:
            raise Failed("status %d, expected %d" % (r.status, req.status))
        if r.will_close:
            self.closed_by_worker()

    def connect(self):
        self.sock = socket.create_connection((HOST, self.port),
                                             timeout=WAIT_S)
        self.wait(lambda: self.worker_holds(self.worker_end()) and
                  self.asleep(), "accepted a connection")

    def closed_by_worker(self):
        while self.sock.recv(65536):
            pass
        inode = self.worker_end()
        self.sock.close()
        self.sock = None
        self.wait(lambda: not self.worker_holds(inode),
                  "closed a connection")

    def wait(self, done, what):
        end = time.monotonic() + WAIT_S
        while not done():
            if time.monotonic() > end:
                raise Failed("the worker never " + what)
            time.sleep(0.001)

    def worker_end(self):
        """The inode of the worker's socket of this connection; 0 before
        the worker accepted it and after it closed it."""
        local = ":%04X" % self.port
        remote = ":%04X" % self.sock.getsockname()[1]
        with open("/proc/net/tcp") as f:
            for line in f:
                p = line.split()
                if p[1].endswith(local) and p[2].endswith(remote):
                    return int(p[9])
        return 0

    def worker_holds(self, inode):
        link = "socket:[%d]" % inode
        d = "/proc/%d/fd" % self.wpid
        for fd in os.listdir(d):
            try:
                if os.readlink(os.path.join(d, fd)) == link:
                    return True
            except FileNotFoundError:
                pass
        return False

    def asleep(self):
        with open("/proc/%d/stat" % self.wpid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "S"


def worker_parts(outdir):
    """The instructions in each numbered part of the worker's profile,
    in order (only the worker reaches MARK, so only it has parts)."""
    for first in glob.glob(os.path.join(outdir, "cg.*.1")):
        parts = []
        while True:
            f = "%s.%d" % (first[:-2], len(parts) + 1)
            if not os.path.exists(f):
                return parts
            with open(f, errors="replace") as fh:
                m = re.search(r"^(?:summary|totals): (\d+)", fh.read(),
                              re.M)
            if m is None:
                raise Failed("%s: no total" % f)
            parts.append(int(m.group(1)))
    raise Failed("no callgrind parts of a worker")


def config(tmp, sport, aport, mport, extra=""):
    keys = os.path.join(tmp, "keys.conf")
    with open(keys, "w") as f:
        f.write("key bench {\n\thash sha256:%s;\n}\n" %
                hashlib.sha256(SECRET.encode()).hexdigest())
    os.chmod(keys, 0o600)
    conf = os.path.join(tmp, "sluice.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "listen %s:%d;" % (HOST, sport),
            "admin_listen %s:%d;" % (HOST, aport), "workers 1;",
            "pid_file %s/sluiced.pid;" % tmp,
            # info: the worker says when it serves; nothing per request
            "log %s/sluiced.log info;" % tmp,
            "spool_dir %s/spool;" % tmp, "shutdown_timeout 5s;",
            "keepalive_timeout 600s;",
            "user root;" if os.geteuid() == 0 else "",
            "keys_file %s;" % keys,
            "upstream mock {", "\turl http://%s:%d;" % (HOST, mport),
            "\tprotocol openai;", "\tidle_timeout 600s;", "}",
            extra.replace("@TMP@", tmp).replace("@MOCK@", "http://%s:%d"
                                                 % (HOST, mport)),
            "route * mock;",
            "price * input 0.15 output 0.60;"]) + "\n")
    return conf


def run(build, phases, warmup=(), tracer=None, conf=""):
    """The worker's instructions in each phase, a list of lists of
    (count, Request): the requests on a new connection, then REFUSED to
    close it.  Warm-up requests go first, on a connection of their own,
    outside every phase.  With TRACER, sluiced runs without valgrind and
    each phase's figure is what tracer(wpid) measured of its requests
    (the closer left out): an object whose stop() returns it."""
    tool = "valgrind" if tracer is None else getattr(tracer, "TOOL", None)
    if tool is not None and shutil.which(tool) is None:
        raise Failed("%s not found (apt-get install %s)" % (tool, tool))
    for prog in ("sluiced", "mockllm"):
        if not os.access(os.path.join(build, prog), os.X_OK):
            raise Failed("no %s in %s (make)" % (prog, build))
    tmp = tempfile.mkdtemp(prefix="sluice-cg-", dir="/tmp")
    procs = []
    try:
        mport, sport, aport = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            [os.path.join(build, "mockllm"), "-l", "%s:%d" % (HOST, mport),
             "--quiet", "--created", CREATED],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        conf = config(tmp, sport, aport, mport, conf)
        cg = os.path.join(tmp, "cg")
        os.makedirs(cg)
        # argv[0] is on the stack too: the same length from any checkout
        exe = os.path.join(tmp, "sluiced")
        os.symlink(os.path.abspath(os.path.join(build, "sluiced")), exe)
        cmd = [exe, "-f", "-c", conf]
        if tracer is None:
            cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                   "--dump-before=" + MARK,
                   "--callgrind-out-file=%s/cg.%%p" % cg] + cmd
        sl = subprocess.Popen(
            cmd,
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sl)
        wait_port(mport, procs[0])
        wpid = wait_worker(os.path.join(tmp, "sluiced.log"), sl)
        c, admin = Client(sport, wpid), Client(aport, wpid)
        for req in warmup:
            c.send(req)
        if c.sock is not None:
            c.send(REFUSED)
        traced = []
        for phase in phases:
            admin.send(Marker())
            t = tracer(wpid) if tracer is not None else None
            for n, req in phase:
                for _ in range(n):
                    c.send(req)
            if t is not None:
                traced.append(t.stop())
            c.send(REFUSED)
            if c.sock is not None:
                raise Failed("the closer left its connection open")
        admin.send(Marker())
        sl.send_signal(signal.SIGTERM)
        try:
            sl.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise Failed("sluiced did not stop in 120 s")
        if tracer is not None:
            return traced
        # part 1 ends at the first marker; after the last one comes
        # the file of the exit, unnumbered
        parts = worker_parts(cg)
        if len(parts) != len(phases) + 1:
            raise Failed("%d parts of the worker's profile for %d phases"
                         % (len(parts), len(phases)))
        return parts[1:]
    finally:
        # a graceful stop first: SIGKILL would orphan the worker
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(build, kinds, warmup=None, extra=""):
    """Instructions per request of each kind, a list of (name, count,
    Request), with the empty phase subtracted: {name: float}.  The
    warm-up is one request of each kind unless given.  Kinds whose
    requests carry other config lines (Request.conf) are measured in a
    run of their own, in the order they first come; EXTRA goes into the
    config of every run."""
    out = {}
    for conf in dict.fromkeys(req.conf for _, _, req in kinds):
        group = [k for k in kinds if k[2].conf == conf]
        wu = warmup if warmup is not None else [req for _, _, req in group]
        ir = run(build, [[]] + [[(n, req)] for _, n, req in group], wu,
                 conf="\n".join(c for c in (conf, extra) if c))
        out.update({name: (ir[i + 1] - ir[0]) / n
                    for i, (name, n, _) in enumerate(group)})
    return out
