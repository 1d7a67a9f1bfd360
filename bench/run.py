#!/usr/bin/python3
"""run.py - sluice's overhead against a direct connection, nginx and haproxy.

    make bench                 full matrix (about 10 minutes)
    make bench QUICK=1         1 KB cells, compressed answers, spread
                               (about 2 minutes)
    bench/run.py --smoke       the QUICK code path with tiny counts

One mockllm, four targets in front of it, the same workload against each,
back to back per cell (the order rotates from cell to cell) so that the
machine's drift hits all of them alike:

    direct       the client talks to mockllm
    sluice       build/sluiced, workers = cores, a key, metering on (a
                 private PostgreSQL with fsync and synchronous_commit on,
                 as production runs it: every request becomes a row)
    nginx        proxy_pass with an upstream keepalive pool, same workers
    haproxy      http-reuse always, keep-alive both sides, http-no-delay,
                 nbthread = sluice's workers (bench/refproxy.py has both
                 configs)
    sluice_nodb  (1 KB cells only) sluiced without `database`: the workers
                 still push an event per request into the shared ring and
                 the collector still drains it, to the spool directory
    sluice_w4    (spread cells only) sluiced with 4 workers, metered
    sluice_cache (cache cells only) sluiced with `cache 64m;`, metered,
                 and a second key with `cache off`
    nginx_static (cache cells only) nginx answering from memory

CPUs: the proxy under test (all sluiced processes, all nginx or haproxy
processes, and PostgreSQL, which only sluice uses) is pinned to CPU 0;
the load generator, mockllm and this script to CPU 1.  So a proxied
request's client and upstream share one core and the proxy has the
other; "direct" leaves CPU 0 idle.

CPU time is read from /proc/PID/task/*/schedstat (bench/procstat.py says
why not /proc/PID/stat), per target over the run, then divided by the
requests it served: sluice's processes together and its workers alone,
nginx's, haproxy's; PostgreSQL's apart, divided by the usage rows the run
added to the table (bench/pgmeter.py).  A sluice run ends when its ring
is empty (/metrics on its admin listener), so the rows and the
collector's work for a run fall inside that run.

Modes (a cell is mode x size x concurrency):
    nonstream  wrk (one thread, keep-alive; bench/post.lua posts the body
               and prints p50, p95, p99, p99.9); metric: whole-response
               latency
    stream     20 SSE events sent back to back; bench/streamload; metric:
               whole-stream latency (and throughput of streams)
    ttfb       5 SSE events, x-mock-chunk-delay-ms 1 (mockllm's libevent
               timers are coarse: ~4 ms in practice), so the first event
               travels alone; bench/streamload; metric: time from request
               written to first SSE event byte received, per request.
    answer     a 200-byte request and an answer of about SIZE (mockllm's
               x-mock-chunks words), as wrk's nonstream
    answer_gz  the same answer gzipped by mockllm (x-mock-gzip: 1 and
               Accept-Encoding: gzip): sluice decodes a copy to meter it
Translation cells (not in the matrix; --only xlate runs them alone): an
Anthropic client (/v1/messages) and an OpenAI chat client, each with a
1 KB request and an answer of about 1 KB or 100 KB, streamed or not,
through sluice to an upstream of the other format (translated, issue 16)
and of its own (passthrough), back to back; sluice's CPU per request of
each and their ratio.  JSON cells are wrk's, timed; streamed ones run a
count of streams to its end (XLATE_STREAMS), so that none is cut.
Cache cells (not in the matrix; --no-cache skips them; --only cache
runs them alone): 1 KB chats at c=1 and c=10, workers' CPU per request
(schedstat), twelve rounds of 1 s runs in rotating order, of:
"sluice_cache" answering from the cache (the warm-up's body: a hit);
"sluice_cache" with every
body different (bench/post_unique.lua: each a miss, looked up, asked
upstream and stored, a victim evicted once the arena is full); the same
daemon and bodies for a key with `cache off` ("off_key", the paired
comparison); "sluice" (no cache) with the same bodies; and
"nginx_static", nginx sending the hit's answer with `return 200` (the
floor of answering from memory over HTTP here).  Reported as a hit's
CPU (target under 10 us) and its ratio to the floor, and a miss's over
the cache being off (target: none measurable) with the spread of the
rounds' paired differences, never failed on.
Spread cells (not in the matrix): sluice_w4 under 8, 16 and 64 keep-alive
wrk clients; each worker's share of the requests, from the counter
sluice_ring_pushes_total{worker="i"} read before and after.  Reported
against the target (max share <= 1.3 x fair share), never failed on.
wrk cannot see a first event and h2load measures TTFB once per connection
from connect(), hence streamload.

Every run is bounded: wrk by -d and --timeout, streamload by -d and -n;
everything talks to 127.0.0.1 only; every process is stopped by its pid.
Output: the tables on stdout (bench/report.py) and
bench/results/<date>-<sha>.json; bench/compare checks two such files.
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "bench"))
from pgcluster import PgCluster  # noqa: E402
from pgmeter import PgMeter  # noqa: E402
from procstat import (CpuWindow, children, comm, cpu_stat,  # noqa: E402
                      loadavg, mem_of, tree)
import refproxy  # noqa: E402
import report  # noqa: E402

HOST = "127.0.0.1"
PROXY_CPU = "0"
LOAD_CPU = "1"
STREAM_CHUNKS = 20              # "stream" cells: 20 events, no delay
PACED_CHUNKS = 5                # "ttfb" cells: 5 events, 1 ms apart
PACED_DELAY_MS = 1
HOLD_STREAMS = 1000
HOLD_DELAY_MS = 300             # 20 chunks: each held stream lasts ~6 s

# The API key every request presents (sluice hashes and looks it up, and
# takes the key's rate-limit state; the other targets pass it to mockllm,
# which ignores it).  start_sluice() writes the matching keys.conf.
# --no-key clears AUTH_HEADERS and runs sluice without keys_file.
BENCH_SECRET = "sk-sluice-bench-0123456789abcdef"
AUTH_HEADERS = ["Authorization: Bearer " + BENCH_SECRET]
EXTRA_CONF = []     # --conf: directives added to every sluice.conf

SIZES = [("100B", 100), ("1KB", 1024), ("10KB", 10 * 1024),
         ("100KB", 100 * 1024)]
CONCS = [1, 10, 50]

# Answers of 957 and 100,495 bytes (mockllm: N words), gzipped by mockllm
# to 273 and 649 bytes; the numbers of bench/callgrind_ab.py's WORKLOADS.
ANSWER_WORDS = [("1KB", 110), ("100KB", 16700)]
ANSWER_REQUEST = 200
GZIP_HEADERS = ["x-mock-gzip: 1", "Accept-Encoding: gzip"]
ANSWER_CONC = 10

# Translation cells (issue 16): a client of each format, an answer of
# ANSWER_WORDS, streamed or not, through sluice to an upstream of the
# other format (translated) and, back to back, of its own (passthrough).
# Both upstreams are the one mockllm; the model picks the route.
# fmt: (client path, model translated, model passed through)
XLATE = {"an": ("/v1/messages", "gpt-4o-mini", "claude-bench"),
         "oa": ("/v1/chat/completions", "claude-bench", "gpt-4o-mini")}
XLATE_NAME = {"an": "messages>openai", "oa": "chat>anthropic"}
# Streamed cells run a count, not a time: a 100 KB stream (16,700
# events) lasts seconds, and the CPU of streams cut at the end of a
# timed run would be charged to the few that completed.
XLATE_STREAMS = {"1KB": 2000, "100KB": 20}
XLATE_STREAM_MAX_S = 60

# Many short rounds: the machine drifts by tens of percent over seconds,
# and a miss's cost is a few percent of a request, so each pair of runs
# compared is as close in time as wrk allows (whole seconds).
CACHE_ROUNDS = 12
CACHE_SECS = 1
CACHE_CONCS = (1, 10)
# sluice_cache's second key: the same daemon with the cache off, for the
# paired comparison with a miss
BENCH_OFF_SECRET = "sk-sluice-bench-off-0123456789ab"
SPREAD_WORKERS = 4
SPREAD_CLIENTS = [8, 16, 64]
SPREAD_TARGET = 1.3             # max share / fair share (issue 15)
DRAIN_S = 5.0                   # at most, waiting for a ring to empty


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process %d exited with %s" %
                               (proc.pid, proc.returncode))
        try:
            with socket.create_connection((HOST, port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing accepts on port %d" % port)


def make_body(path, size, stream):
    """A chat request padded to exactly size bytes."""
    base = {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": ""}]}
    if stream:
        # All targets get the usage chunk, so all return the same bytes
        # (sluice would otherwise add include_usage for its own metering).
        base["stream"] = True
        base["stream_options"] = {"include_usage": True}
    empty = len(json.dumps(base, separators=(",", ":")))
    base["messages"][0]["content"] = "x" * max(0, size - empty)
    data = json.dumps(base, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def xlate_body(path, fmt, model, stream):
    """A 1 KB request of client format FMT for MODEL."""
    doc = {"model": model, "max_tokens": 256, "messages": [
        {"role": "user", "content": "x" * 900}]}
    if stream:
        doc["stream"] = True
        if fmt == "oa":
            doc["stream_options"] = {"include_usage": True}
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def lane_values(text, name):
    """{lane: value} of a per-lane series in a /metrics text."""
    pat = re.compile(r'^%s\{worker="(\d+)"\} (\d+)$' % re.escape(name),
                     re.M)
    return {int(k): int(v) for k, v in pat.findall(text)}


def requests_of(res):
    """Requests a load tool got answered over its whole run (streamload's
    warm-up included: the CPU windows include it too)."""
    if res.get("tool") == "streamload":
        return res["completed"] + res["non2xx"]
    return res.get("requests", 0)


def version(argv):
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        return r.stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.join(TOP, args.build)
        self.tmp = tempfile.mkdtemp(prefix="sluice-bench-")
        self.procs = []         # Popen objects we started, stopped by pid
        self.pg = None
        self.pgm = None
        self.targets = {}       # name -> {"port":, "pids": callable, ...}

    # -- processes --------------------------------------------------------

    def spawn(self, argv, cpu, name, stdout=None):
        out = open(os.path.join(self.tmp, name + ".out"), "w") \
            if stdout is None else stdout
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=out,
                             stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append((name, p))
        return p

    def stop_all(self):
        if self.pgm is not None:
            self.pgm.close()
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log("%s (pid %d) ignored SIGTERM; killing it" %
                    (name, p.pid))
                p.kill()
                p.wait()
        if self.pg is not None:
            try:
                self.pg.stop()
                if not self.args.keep:
                    self.pg.destroy()   # its private dir under /tmp too
            except Exception as e:  # noqa: BLE001 - best effort at exit
                log("stopping PostgreSQL: %s" % e)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("kept " + self.tmp)

    def start_mock(self):
        outp = os.path.join(self.tmp, "mockllm.out")
        p = self.spawn([os.path.join(self.build, "mockllm"), "-l",
                        HOST + ":0", "--quiet"], LOAD_CPU, "mockllm")
        end = time.time() + 5
        while time.time() < end:
            with open(outp) as f:
                for line in f:
                    if line.startswith("listening on"):
                        self.mock_port = int(line.rsplit(":", 1)[1])
                        self.mock_pid = p.pid
                        self.targets["direct"] = {
                            "port": self.mock_port, "pids": lambda: []}
                        return
            time.sleep(0.05)
        raise RuntimeError("mockllm did not start")

    def start_pg(self):
        # fsync (and full_page_writes) on, synchronous_commit left at its
        # default, on: the tests' clusters turn fsync off for speed.
        self.pg = PgCluster(os.path.join(self.tmp, "pgbase"), fsync=True)
        self.pg.init()
        self.pg.start()
        with open(os.path.join(self.pg.datadir, "postmaster.pid")) as f:
            self.pg_pid = int(f.readline())
        # Move PostgreSQL to the proxy's CPU; backends fork from the
        # postmaster and inherit it.
        for p in tree(self.pg_pid):
            subprocess.run(["taskset", "-p", "-c", PROXY_CPU, str(p)],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        self.pgm = PgMeter(self.pg.conninfo(), self.pg_pid)
        return self.pgm.check_durable()

    def start_sluice(self, name, database, workers, extra=(), key_extra=(),
                     more_keys=""):
        """sluiced NAME; EXTRA: more sluice.conf lines, KEY_EXTRA: more
        lines in the bench key's block (bench/shared_limits.py),
        MORE_KEYS: more key blocks."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        port, admin = free_port(), free_port()
        conf = os.path.join(d, "sluice.conf")
        lines = [
            "listen %s:%d;" % (HOST, port),
            "admin_listen %s:%d;" % (HOST, admin),
            "workers %d;" % workers,
            "pid_file %s/sluiced.pid;" % d,
            "log %s/sluiced.log warn;" % d,
            "spool_dir %s/spool;" % d,
            "shutdown_timeout 5s;",
        ] + EXTRA_CONF
        if os.geteuid() == 0:
            lines.append("user root;")   # root workers only when asked
        if database:
            lines.append('database "%s";' % database)
        if AUTH_HEADERS:
            keys = os.path.join(d, "keys.conf")
            with open(keys, "w") as f:
                f.write("key bench {\n\thash sha256:%s;\n%s}\n%s" % (
                    hashlib.sha256(BENCH_SECRET.encode()).hexdigest(),
                    "".join("\t%s\n" % ln for ln in key_extra),
                    more_keys))
            os.chmod(keys, 0o600)
            lines.append("keys_file %s;" % keys)
        lines += [
            "upstream mock {",
            "\turl http://%s:%d;" % (HOST, self.mock_port),
            "\tprotocol openai;",
            "\tmax_idle 256;",
            "}",
            # the translation cells' Anthropic-protocol upstream
            "upstream mock_an {",
            "\turl http://%s:%d;" % (HOST, self.mock_port),
            "\tprotocol anthropic;",
            "\tmax_idle 256;",
            "}",
            "route claude-* mock_an;",
            "route * mock;",
            "price * input 0.15 output 0.60;",
        ] + list(extra)
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.spawn([os.path.join(self.build, "sluiced"), "-f", "-c",
                        conf], PROXY_CPU, name)
        wait_port(port, p)
        wait_port(admin, p)
        t = self.targets[name] = {
            "port": port, "admin": admin, "dir": d, "nworkers": workers,
            "pids": lambda: tree(p.pid),
            "workers": lambda: [c for c in children(p.pid)
                                if comm(c).startswith("worker")]}
        # the master binds before it forks: a port that accepts says
        # nothing of the workers, and the per-worker figures need them all
        end = time.time() + 10
        while len(t["workers"]()) < workers and time.time() < end:
            time.sleep(0.05)

    def start_nginx(self):
        d = os.path.join(self.tmp, "nginx")
        port = free_port()
        conf = refproxy.nginx_conf(d, self.args.workers, HOST,
                                   self.mock_port, port)
        p = self.spawn(["/usr/sbin/nginx", "-p", d, "-e",
                        os.path.join(d, "error.log"), "-c", conf],
                       PROXY_CPU, "nginx")
        wait_port(port, p)
        self.targets["nginx"] = {"port": port, "pids": lambda: tree(p.pid)}

    def start_haproxy(self):
        d = os.path.join(self.tmp, "haproxy")
        port = free_port()
        conf = refproxy.haproxy_conf(d, self.args.workers, HOST,
                                     self.mock_port, port)
        # -db: in the foreground, one process (its threads), ours to stop
        p = self.spawn([shutil.which("haproxy"), "-db", "-f", conf],
                       PROXY_CPU, "haproxy")
        wait_port(port, p)
        self.targets["haproxy"] = {"port": port, "pids": lambda: [p.pid]}

    # -- sluice's admin listener -----------------------------------------

    def metrics(self, target):
        c = http.client.HTTPConnection(HOST, self.targets[target]["admin"],
                                       timeout=5)
        try:
            c.request("GET", "/metrics", headers={"Connection": "close"})
            r = c.getresponse()
            return r.read().decode()
        finally:
            c.close()

    def drain(self, target):
        """Wait (bounded) until target's ring lanes are empty, i.e. every
        event so far is in PostgreSQL or the spool; seconds waited."""
        t0 = time.time()
        while time.time() - t0 < DRAIN_S:
            if sum(lane_values(self.metrics(target),
                               "sluice_ring_depth").values()) == 0:
                break
            time.sleep(0.02)
        else:
            log("  %s: ring not empty after %.0f s" % (target, DRAIN_S))
        return round(time.time() - t0, 3)

    # -- load --------------------------------------------------------------

    def run_wrk(self, port, conc, body, secs, extra=(), unique=None,
                auth=None):
        """wrk posting BODY (bench/post.lua), or with UNIQUE (a run
        number) a different body each request (bench/post_unique.lua);
        AUTH: the Authorization lines, AUTH_HEADERS unless given."""
        script = "post.lua" if unique is None else "post_unique.lua"
        argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % conc,
                "-d%ds" % max(1, round(secs)),  # whole seconds only
                "--timeout", "5s", "-s",
                os.path.join(TOP, "bench", script),
                "http://%s:%d" % (HOST, port), "--", body] + \
            ([] if unique is None else [str(unique)]) + \
            (AUTH_HEADERS if auth is None else auth) + list(extra)
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True,
                           timeout=secs + 30, check=True)
        for line in r.stdout.splitlines():
            if line.startswith("JSON "):
                return json.loads(line[5:])
        raise RuntimeError("wrk printed no JSON:\n" + r.stdout)

    def run_stream(self, port, conc, body, secs, warm, extra=(),
                   hold=False, maxn=2000000, path="/v1/chat/completions"):
        argv = ["taskset", "-c", LOAD_CPU,
                os.path.join(self.build, "streamload"), "-p", str(port),
                "-c", str(conc), "-d", str(secs), "-w", str(warm),
                "-n", str(maxn), "-b", body, "-P", path]
        for h in AUTH_HEADERS + list(extra):
            argv += ["-H", h]
        if hold:
            argv.append("--hold")
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True,
                           timeout=secs + warm + 30, check=True)
        return json.loads(r.stdout)

    def measure(self, target, fn):
        """Run fn() against target; add CPU per request (schedstat) of
        its processes, and for a sluice its ring counters and, metered,
        PostgreSQL's CPU per usage row."""
        t = self.targets[target]
        wins = {"proxy": CpuWindow(t["pids"])}
        if "workers" in t:
            wins["workers"] = CpuWindow(t["workers"])
            wins.update(("pid%d" % p, CpuWindow(lambda p=p: [p]))
                        for p in t["workers"]())
        pgw = self.pgm.window() if target == "sluice" and self.pgm \
            else None
        m0 = self.metrics(target) if "admin" in t else None
        rows0 = self.pgm.rows() if pgw else 0
        s0, t0 = cpu_stat(), time.time()
        for w in wins.values():
            w.start()
        if pgw:
            pgw.start()
        res = fn()
        if m0 is not None:
            res["drain_s"] = self.drain(target)
        ns = {k: w.stop()[0] for k, w in wins.items()}
        if pgw:
            pg_ns, pg_gone = pgw.stop()
        s1 = cpu_stat()
        res["wall_s"] = round(time.time() - t0, 3)
        # How busy each CPU was, everything included: CPU 0 during a
        # "direct" run shows what else the machine was doing.
        res["cpu_busy"] = {c: round((s1[c][0] - s0[c][0]) /
                                    max(1, s1[c][1] - s0[c][1]), 2)
                           for c in s1 if c in s0}
        res["served"] = requests_of(res)
        n = max(1, res["served"])
        res["proxy_cpu_s"] = round(ns["proxy"] / 1e9, 3)
        res["proxy_cpu_us_per_req"] = round(ns["proxy"] / 1e3 / n, 1)
        if "workers" in ns:
            res["workers_cpu_us_per_req"] = round(ns["workers"] / 1e3 / n,
                                                  1)
            res["worker_cpu_s"] = sorted(
                (round(v / 1e9, 3) for k, v in ns.items()
                 if k.startswith("pid")), reverse=True)
        if m0 is not None:
            m1 = self.metrics(target)
            for name, key in (("sluice_ring_pushes_total", "ring_pushes"),
                              ("sluice_ring_drops_total", "ring_drops")):
                a, b = lane_values(m0, name), lane_values(m1, name)
                res[key] = {str(k): b[k] - a.get(k, 0) for k in b
                            if b[k] != a.get(k, 0)}
        if pgw:
            rows = self.pgm.rows() - rows0
            res["pg_rows"] = rows
            res["pg_cpu_us_per_row"] = round(pg_ns / 1e3 / max(1, rows), 1)
            res["pg_cpu_us_per_req"] = round(pg_ns / 1e3 / n, 1)
            res["pg_exited_cpu_us"] = round(pg_gone / 1e3)
        return res

    # -- the matrix --------------------------------------------------------

    def cells(self):
        """[(mode, size name, request bytes, concurrency)]"""
        a = self.args
        answers = [(m, n, ANSWER_REQUEST, ANSWER_CONC)
                   for n, _ in ANSWER_WORDS for m in ("answer", "answer_gz")]
        if a.smoke:
            return [("nonstream", "1KB", 1024, 2), ("stream", "1KB", 1024, 2),
                    ("ttfb", "1KB", 1024, 2),
                    ("answer", "100KB", ANSWER_REQUEST, 2),
                    ("answer_gz", "100KB", ANSWER_REQUEST, 2)]
        if a.quick:
            sizes = [(n, b) for n, b in SIZES if n in a.sizes.split(",")]
            if not sizes:
                sys.exit("bench: --sizes: none of %s" %
                         ", ".join(n for n, _ in SIZES))
            out = [("nonstream", n, b, 1) for n, b in sizes]
            out += [(m, n, b, 10) for n, b in sizes
                    for m in ("nonstream", "stream", "ttfb")]
            return out + answers
        out = []
        for mode in ("nonstream", "stream"):
            for sname, size in SIZES:
                for c in CONCS:
                    out.append((mode, sname, size, c))
        for sname, size in (SIZES[1], SIZES[3]):
            for c in CONCS:
                out.append(("ttfb", sname, size, c))
        return out + answers

    def xlate_cells(self):
        """[(client format, answer size name, streamed)]: 1 KB and 100 KB
        answers, or --sizes with --quick and --only; one in --smoke."""
        a = self.args
        sizes = [n for n, _ in ANSWER_WORDS if not (a.quick or a.only)
                 or n in a.sizes.split(",")]
        out = [(f, n, s) for f in XLATE for n in sizes
               for s in (False, True)]
        return out[:1] if a.smoke else out

    def run_cell(self, i, mode, sname, size, conc):
        a = self.args
        body = os.path.join(self.tmp, "%s-%s.json" % (
            "stream" if mode in ("stream", "ttfb") else "post",
            sname if not mode.startswith("answer") else "answer"))
        if not os.path.exists(body):
            make_body(body, size, mode in ("stream", "ttfb"))
        order = [t for t in ("direct", "sluice", "nginx", "haproxy")
                 if t in self.targets]
        if "sluice_nodb" in self.targets and sname == "1KB" and \
                not mode.startswith("answer"):
            order.append("sluice_nodb")
        k = i % len(order)
        order = order[k:] + order[:k]
        extra = ()
        if mode.startswith("answer"):
            extra = ["x-mock-chunks: %d" % dict(ANSWER_WORDS)[sname]]
            if mode == "answer_gz":
                extra += GZIP_HEADERS
        res = {}
        for t in order:
            port = self.targets[t]["port"]
            if mode in ("nonstream", "answer", "answer_gz"):
                res[t] = self.measure(t, lambda: self.run_wrk(
                    port, conc, body, a.secs, extra))
            else:
                n, dl = (STREAM_CHUNKS, 0) if mode == "stream" else \
                    (PACED_CHUNKS, PACED_DELAY_MS)
                res[t] = self.measure(t, lambda: self.run_stream(
                    port, conc, body, a.secs, a.warm, extra=(
                        "x-mock-chunks: %d" % n,
                        "x-mock-chunk-delay-ms: %d" % dl)))
            if res[t].get("errors") or res[t].get("non2xx"):
                log("  %s: %d errors, %d non-2xx" % (
                    t, res[t].get("errors", 0), res[t].get("non2xx", 0)))
        cell = {"loadavg_1m": loadavg(),
                "mode": mode, "size": sname, "body_bytes":
                os.path.getsize(body), "concurrency": conc, "order": order,
                "targets": res, "derived": derive(mode, res)}
        if mode.startswith("answer"):
            cell["answer_words"] = dict(ANSWER_WORDS)[sname]
            cell["request_headers"] = extra
        return cell

    def run_xlate(self, i, fmt, sname, stream):
        """sluice's CPU per request for a FMT client's request translated
        and passed through, the answer SNAME, in alternating order."""
        a = self.args
        path, models = XLATE[fmt][0], dict(zip(
            ("translated", "passthrough"), XLATE[fmt][1:]))
        hdrs = ["x-mock-chunks: %d" % dict(ANSWER_WORDS)[sname]]
        if fmt == "an":
            hdrs.append("anthropic-version: 2023-06-01")
        port = self.targets["sluice"]["port"]
        res = {}
        for how in sorted(models, reverse=i % 2 == 1):
            body = os.path.join(self.tmp, "xlate-%s-%s-%d.json" % (
                fmt, how, stream))
            xlate_body(body, fmt, models[how], stream)
            res[how] = self.measure("sluice", lambda: self.run_stream(
                port, ANSWER_CONC, body, XLATE_STREAM_MAX_S, 0, extra=hdrs,
                maxn=XLATE_STREAMS[sname] // (100 if a.smoke else 1),
                path=path) if stream else self.run_wrk(
                port, ANSWER_CONC, body, a.secs, [path] + hdrs))
            if res[how].get("errors") or res[how].get("non2xx"):
                log("  %s: %d errors, %d non-2xx" % (
                    how, res[how].get("errors", 0),
                    res[how].get("non2xx", 0)))
        return {"format": fmt, "direction": XLATE_NAME[fmt],
                "size": sname, "stream": stream,
                "concurrency": ANSWER_CONC, "targets": res,
                "loadavg_1m": loadavg()}

    def cached_answer(self, body):
        """The bytes sluice_cache answers BODY with from the cache (the
        warm-up stored them)."""
        c = http.client.HTTPConnection(
            HOST, self.targets["sluice_cache"]["port"], timeout=10)
        try:
            with open(body, "rb") as f:
                data = f.read()
            hdrs = {"Content-Type": "application/json"}
            hdrs.update(h.split(": ", 1) for h in AUTH_HEADERS)
            c.request("POST", "/v1/chat/completions", data, hdrs)
            r = c.getresponse()
            answer = r.read()
            if r.status != 200 or r.getheader("x-sluice-cache") != "hit":
                raise RuntimeError("sluice_cache did not answer the "
                                   "warm-up's body from the cache")
            return answer.decode()
        finally:
            c.close()

    def start_nginx_static(self, answer):
        """nginx answering every request with ANSWER from memory: the
        floor of a cache hit over HTTP on this machine."""
        d = os.path.join(self.tmp, "nginx_static")
        port = free_port()
        conf = refproxy.nginx_static_conf(d, self.args.workers, HOST, port,
                                          answer)
        p = self.spawn(["/usr/sbin/nginx", "-p", d, "-e",
                        os.path.join(d, "error.log"), "-c", conf],
                       PROXY_CPU, "nginx_static")
        wait_port(port, p)
        self.targets["nginx_static"] = {
            "port": port, "pids": lambda: tree(p.pid),
            "workers": lambda: children(p.pid)}

    def run_cache(self):
        """Workers' CPU per request of a cache hit, of a miss, of the
        same daemon and requests with the cache off for the key, of
        sluice with no cache, and of nginx sending the hit's answer from
        memory, at each of CACHE_CONCS, CACHE_ROUNDS rounds in rotating
        order.  Misses and the cache-off runs post a different body each
        request (every one a real miss: looked up, asked upstream,
        stored, a victim evicted once the arena is full); hits and nginx
        the warm-up's body."""
        body = os.path.join(self.tmp, "post-1KB.json")
        if not os.path.exists(body):
            make_body(body, 1024, False)
        cport = self.targets["sluice_cache"]["port"]
        self.run_wrk(cport, 1, body, 1)       # stores the hits' answer
        answer = self.cached_answer(body)
        self.start_nginx_static(answer)
        self.run_wrk(self.targets["nginx_static"]["port"], 10, body, 1)
        off_auth = ["Authorization: Bearer " + BENCH_OFF_SECRET]
        runs = [("off", "sluice", {"unique": True}),
                ("off_key", "sluice_cache", {"unique": True,
                                             "auth": off_auth}),
                ("miss", "sluice_cache", {"unique": True}),
                ("hit", "sluice_cache", {}),
                ("floor", "nginx_static", {"auth": []})]
        if not AUTH_HEADERS:       # --no-key: no second key to turn off
            runs = [r for r in runs if r[0] != "off_key"]
        unique = 0
        out = []
        rounds = 1 if self.args.smoke else CACHE_ROUNDS
        for conc in CACHE_CONCS:
            got = {k: [] for k, _, _ in runs}
            for i in range(rounds):
                k = i % len(runs)
                for name, target, kw in runs[k:] + runs[:k]:
                    kw = dict(kw)
                    if kw.pop("unique", False):
                        unique += 1
                        kw["unique"] = unique
                    r = self.measure(target, lambda: self.run_wrk(
                        self.targets[target]["port"], conc, body,
                        min(CACHE_SECS, self.args.secs), **kw))
                    got[name].append({
                        "workers_cpu_us_per_req":
                            r["workers_cpu_us_per_req"],
                        "rps": r["rps"], "requests": r["requests"],
                        "errors": r["errors"], "non2xx": r["non2xx"],
                        "bytes_per_req": r.get("bytes_per_req")})
            out.append({"concurrency": conc, "runs": got})
        m = self.metrics("sluice_cache")
        return {"body_bytes": os.path.getsize(body),
                "answer_bytes": len(answer.encode()),
                "rounds": rounds, "cells": out,
                "metrics": {k: metric_value(m, k) for k in (
                    "sluice_cache_hits_total", "sluice_cache_misses_total",
                    "sluice_cache_stores_total",
                    "sluice_cache_evictions_total")},
                "loadavg_1m": loadavg()}

    def run_spread(self, clients):
        """Each worker's share of the requests of sluice_w4 under
        `clients` keep-alive connections opened at once."""
        body = os.path.join(self.tmp, "post-1KB.json")
        if not os.path.exists(body):
            make_body(body, 1024, False)
        t = self.targets["sluice_w4"]
        r = self.measure("sluice_w4", lambda: self.run_wrk(
            t["port"], clients, body, self.args.secs))
        counts = sorted(r["ring_pushes"].values(), reverse=True)
        counts += [0] * (t["nworkers"] - len(counts))   # idle workers
        total = sum(counts)
        fair = total / t["nworkers"]
        ratio = round(counts[0] / fair, 2) if total else None
        return {"workers": t["nworkers"], "clients": clients,
                "rps": r["rps"], "requests": r["requests"],
                "errors": r["errors"], "non2xx": r["non2xx"],
                "latency_us": r["latency_us"],
                "pushes_by_lane": r["ring_pushes"],
                "shares": [round(c / total, 3) for c in counts]
                if total else [],
                "max_over_fair": ratio, "target": SPREAD_TARGET,
                "met": ratio is not None and ratio <= SPREAD_TARGET,
                "worker_cpu_s": r["worker_cpu_s"],
                "proxy_cpu_us_per_req": r["proxy_cpu_us_per_req"],
                "loadavg_1m": loadavg()}

    def hold_streams(self, target):
        """RSS of target's processes while HOLD_STREAMS slow streams are
        open through it; sampled while they are all open."""
        body = os.path.join(self.tmp, "stream-1KB.json")
        if not os.path.exists(body):
            make_body(body, 1024, True)
        secs = STREAM_CHUNKS * HOLD_DELAY_MS / 1000.0
        argv = ["taskset", "-c", LOAD_CPU,
                os.path.join(self.build, "streamload"), "-p",
                str(self.targets[target]["port"]), "-c", str(HOLD_STREAMS),
                "-d", str(secs + 20), "-b", body, "--hold",
                "-H", "x-mock-chunks: %d" % STREAM_CHUNKS,
                "-H", "x-mock-chunk-delay-ms: %d" % HOLD_DELAY_MS]
        for h in AUTH_HEADERS:
            argv += ["-H", h]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        best = None
        t0 = time.time()
        try:
            while time.time() - t0 < secs * 0.8:
                time.sleep(0.5)
                if time.time() - t0 < secs * 0.3:
                    continue
                m = mem_of(self.targets[target]["pids"]())
                m["mock_active_connections"] = self.mock_active()
                if best is None or m["rss_kb"] > best["rss_kb"]:
                    best = m
            out, _ = p.communicate(timeout=secs + 40)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        r = json.loads(out)
        best["streams"] = HOLD_STREAMS
        best["completed"] = r["completed"]
        best["errors"] = r["errors"] + r["non2xx"]
        best["ttfe_p99_us"] = r["ttfe_us"]["p99"]
        return best

    def auth_probe(self):
        """True when sluice answers 401 to a request without the key."""
        if not AUTH_HEADERS:
            return False
        c = http.client.HTTPConnection(HOST, self.targets["sluice"]["port"],
                                       timeout=5)
        try:
            c.request("POST", "/v1/chat/completions",
                      body=b'{"model":"gpt-4o-mini","messages":[]}',
                      headers={"Content-Type": "application/json"})
            return c.getresponse().status == 401
        finally:
            c.close()

    def mock_active(self):
        try:
            with socket.create_connection((HOST, self.mock_port), 2) as s:
                s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                data = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    data += b
            js = json.loads(data.split(b"\r\n\r\n", 1)[1])
            return js.get("active_connections")
        except (OSError, ValueError):
            return None


REFS = ("nginx", "haproxy")


def metric_value(text, name):
    """The value of an unlabelled metric in /metrics TEXT, or None."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def derive(mode, res):
    """Each proxy's added latency over direct, and sluice's ratios to the
    reference proxies (the *_ratio names without a suffix are nginx's)."""
    key = "ttfe_us" if mode == "ttfb" else "latency_us"
    d = {}
    base = res["direct"]
    for t in ("sluice", "sluice_nodb") + REFS:
        if t not in res:
            continue
        for q in ("p50", "p99"):
            d["%s_added_%s_us" % (t, q)] = \
                res[t][key][q] - base[key][q]
    s = res["sluice"]
    for ref in REFS:
        if ref not in res:
            continue
        sfx = "" if ref == "nginx" else "_" + ref
        r = res[ref]
        for q in ("p50", "p99"):
            sa, ra = d["sluice_added_%s_us" % q], d["%s_added_%s_us" %
                                                      (ref, q)]
            # Added latency can be ~0 or negative for a reference; floor
            # the divisor at 1 us so the ratio stays finite.
            d["added_%s_ratio%s" % (q, sfx)] = round(sa / max(ra, 1.0), 3)
            d["added_%s_minus_%s_us" % (q, ref)] = sa - ra
        d["rps_ratio" + sfx] = round(s["rps"] / max(r["rps"], 1e-9), 3)
        d["cpu_ratio" + sfx] = round(s["proxy_cpu_us_per_req"] / max(
            r["proxy_cpu_us_per_req"], 0.1), 3)
    d["metric"] = {"ttfb": "time to first SSE event", "stream":
                   "whole-stream latency"}.get(mode, "request latency")
    if mode in ("stream", "ttfb"):
        for t in ("sluice",) + REFS:
            if t in res:
                d["%s_added_ttfe_p50_us" % t] = \
                    res[t]["ttfe_us"]["p50"] - base["ttfe_us"]["p50"]
    return d


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    return {"cpu": model, "cpus": os.cpu_count(), "kernel":
            platform.release(), "mem_kb": int(mem), "hostname":
            socket.gethostname()}


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def git_sha():
    try:
        sha = subprocess.run(["git", "-C", TOP, "rev-parse", "--short=12",
                              "HEAD"], stdout=subprocess.PIPE, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", TOP, "status", "--porcelain",
                                "--untracked-files=no"],
                               stdout=subprocess.PIPE, text=True,
                               check=True).stdout.strip() != ""
        return sha, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 KB cells at c=1 and 10, compressed answers, "
                    "spread")
    ap.add_argument("--sizes", default="1KB",
                    help="with --quick: the body sizes, comma-separated "
                    "(100B, 1KB, 10KB, 100KB)")
    ap.add_argument("--smoke", action="store_true",
                    help="the quick code path with tiny counts; no JSON "
                    "file unless --out")
    ap.add_argument("--secs", type=float, default=None,
                    help="measured seconds per run (default 3, quick 2)")
    ap.add_argument("--warm", type=float, default=0.5,
                    help="unrecorded warm-up seconds per streaming run")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=None, help="JSON result path")
    ap.add_argument("--no-hold", action="store_true",
                    help="skip the 1,000-stream RSS measurement")
    ap.add_argument("--no-spread", action="store_true",
                    help="skip the spread cells (4 workers)")
    ap.add_argument("--no-cache", action="store_true",
                    help="skip the answer cache cells")
    ap.add_argument("--no-key", action="store_true",
                    help="run sluice without keys_file and send no "
                    "Authorization header")
    ap.add_argument("--conf", action="append", default=[],
                    metavar="DIRECTIVE",
                    help="one more sluice.conf directive, e.g. "
                    "'batch_rows 100;' (repeatable)")
    ap.add_argument("--only", choices=["xlate", "cache"],
                    help="run only these cells (xlate: translation "
                    "against passthrough, --sizes picks their answers; "
                    "cache: the answer cache's)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp directory (logs, configs)")
    ap.add_argument("--table", metavar="JSON",
                    help="print the summary of a saved result and exit")
    args = ap.parse_args()
    if args.secs is None:
        args.secs = 0.3 if args.smoke else 2 if args.quick else 3
    if args.smoke:
        args.warm = 0.1
        args.no_hold = True
    if args.quick or args.only:
        args.no_hold = True
    if args.only:
        args.no_spread = True
    if args.no_key:
        AUTH_HEADERS.clear()
    EXTRA_CONF.extend(args.conf)
    return args


def preflight(args):
    """Tools, binaries and the fd limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * HOLD_STREAMS + 1024
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft < 3 * HOLD_STREAMS + 256 and not args.no_hold:
        log("RLIMIT_NOFILE %d is too low for %d streams; skipping the "
            "hold test" % (soft, HOLD_STREAMS))
        args.no_hold = True
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit("bench: %s not found (make bench installs it)" % tool)
    if shutil.which("haproxy") is None:
        if not args.smoke:
            sys.exit("bench: haproxy not found (make bench installs it)")
        log("bench: haproxy not installed; the smoke run goes without it")
    for exe in ("sluiced", "mockllm", "streamload"):
        if not os.access(os.path.join(TOP, args.build, exe), os.X_OK):
            sys.exit("bench: %s/%s not built (make bench builds it)" %
                     (args.build, exe))
    return soft


def main():
    args = parse_args()
    if args.table:
        with open(args.table) as f:
            report.report(json.load(f), sys.stdout)
        return
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    nofile = preflight(args)

    started = datetime.datetime.now(datetime.timezone.utc)
    sha, dirty = git_sha()
    b = Bench(args)
    result = {"started": started.isoformat(timespec="seconds"),
              "git": sha, "dirty": dirty, "machine": machine(),
              "command": " ".join(sys.argv),
              "sluiced_sha256": file_sha256(os.path.join(
                  TOP, args.build, "sluiced")),
              "method": {
                  "cpus": "proxy (sluiced, nginx, haproxy, PostgreSQL) on "
                          "CPU %s; load generator, mockllm, driver on CPU "
                          "%s" % (PROXY_CPU, LOAD_CPU),
                  "cpu_source": "schedstat",
                  "workers": args.workers, "secs_per_run": args.secs,
                  "stream_warmup_s": args.warm,
                  "nonstream_tool": "wrk -t1 (bench/post.lua)",
                  "stream_tool": "bench/streamload (per-request time to "
                                 "first SSE event)",
                  "stream_chunks": STREAM_CHUNKS,
                  "ttfb_chunks": PACED_CHUNKS,
                  "ttfb_chunk_delay_ms": PACED_DELAY_MS,
                  "answer_words": dict(ANSWER_WORDS),
                  "spread_workers": SPREAD_WORKERS,
                  "nofile_limit": nofile,
                  "api_key": bool(AUTH_HEADERS),
                  "nginx": version(["/usr/sbin/nginx", "-v"]),
                  "haproxy": version(["haproxy", "-v"])},
              "cells": []}

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        b.start_mock()
        result["postgresql"] = b.start_pg()
        b.start_sluice("sluice", b.pg.conninfo(), args.workers)
        b.start_sluice("sluice_nodb", None, args.workers)
        if not args.no_spread:
            b.start_sluice("sluice_w4", b.pg.conninfo(), SPREAD_WORKERS)
        if not args.no_cache:
            b.start_sluice("sluice_cache", b.pg.conninfo(), args.workers,
                           extra=["cache 64m;"], more_keys=(
                               "key bench_off {\n\thash sha256:%s;\n"
                               "\tcache off;\n}\n" % hashlib.sha256(
                                   BENCH_OFF_SECRET.encode()).hexdigest()))
        b.start_nginx()
        if shutil.which("haproxy"):
            b.start_haproxy()
        # Warm every target once: upstream pools, page cache, PostgreSQL.
        warm_body = os.path.join(b.tmp, "warm.json")
        make_body(warm_body, 1024, False)
        if not args.smoke:
            for t in b.targets:
                b.run_wrk(b.targets[t]["port"], 10, warm_body, 1)
        result["auth_enforced"] = b.auth_probe()
        cells = [] if args.only else b.cells()
        spread = [] if args.no_spread else \
            SPREAD_CLIENTS[:1] if args.smoke else SPREAD_CLIENTS
        xcells = b.xlate_cells() if args.only in (None, "xlate") else []
        for i, (mode, sname, size, conc) in enumerate(cells):
            log("[%d/%d] %s %s c=%d" % (i + 1, len(cells) + len(spread),
                                         mode, sname, conc))
            result["cells"].append(b.run_cell(i, mode, sname, size, conc))
        result["xlate"] = []
        for j, (f, n, s) in enumerate(xcells):
            log("[xlate %d/%d] %s %s answer%s" % (
                j + 1, len(xcells), XLATE_NAME[f], n,
                ", streamed" if s else ""))
            result["xlate"].append(b.run_xlate(j, f, n, s))
        if not args.no_cache and args.only in (None, "cache"):
            log("cache cells: off, off_key, miss, hit, floor x %d, c=%s"
                % (CACHE_ROUNDS, "/".join(map(str, CACHE_CONCS))))
            result["cache"] = b.run_cache()
        result["spread"] = []
        for j, c in enumerate(spread):
            log("[%d/%d] spread %d workers c=%d" % (
                len(cells) + j + 1, len(cells) + len(spread),
                SPREAD_WORKERS, c))
            result["spread"].append(b.run_spread(c))
        mem = {"sluice_peak_after_matrix": mem_of(b.targets["sluice"]
                                                  ["pids"]())}
        if not args.no_hold:
            for t in ("sluice", "nginx", "haproxy"):
                if t in b.targets:
                    log("holding %d streams through %s" % (HOLD_STREAMS, t))
                    mem[t + "_hold"] = b.hold_streams(t)
            mem["sluice_peak_after_hold"] = mem_of(
                b.targets["sluice"]["pids"]())
        result["memory"] = mem
        # Usage rows written, as a check that metering was on.
        result["usage_rows"] = b.pgm.rows()
    finally:
        b.stop_all()
    busy = [c["targets"]["direct"]["cpu_busy"].get("cpu" + PROXY_CPU, 0)
            for c in result["cells"]]
    result["contention"] = {
        "loadavg_1m_max": max([c["loadavg_1m"] for c in result["cells"] +
                               result.get("xlate", [])], default=0),
        # None: no cell ran "direct" (--only)
        "proxy_cpu_busy_during_direct_max": max(busy, default=None),
        "note": "CPU %s should be idle while 'direct' runs; what it shows "
                "is other work on this machine" % PROXY_CPU}
    result["finished"] = datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")

    report.report(result, sys.stdout)

    out = args.out
    if out is None and not args.smoke:
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        out = os.path.join(TOP, "bench", "results", "%s-%s%s.json" % (
            stamp, sha, "-dirty" if dirty else ""))
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print("wrote " + os.path.relpath(out, os.getcwd()))


if __name__ == "__main__":
    main()
