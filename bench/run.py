#!/usr/bin/python3
"""run.py - sluice's overhead against a direct connection and against nginx.

    make bench                 full matrix (about 7 minutes)
    make bench QUICK=1         1 KB, c=10, both modes (under a minute)
    bench/run.py --smoke       the QUICK code path with tiny counts

One mockllm, three targets in front of it, the same workload against each,
back to back per cell (the order rotates from cell to cell) so that the
machine's drift hits all three alike:

    direct       the client talks to mockllm
    sluice       build/sluiced, workers = cores, metering on (a private
                 PostgreSQL: every request becomes a usage event and a row)
    nginx        proxy_pass with an upstream keepalive pool, same workers
    sluice_nodb  (1 KB cells only) sluiced without `database`: the workers
                 still push an event per request into the shared ring and
                 the collector still drains it, to the spool directory

CPUs: the proxy under test (all sluiced processes, all nginx processes,
and PostgreSQL, which only sluice uses) is pinned to CPU 0; the load
generator, mockllm and this script to CPU 1.  So a proxied request's
client and upstream share one core and the proxy has the other; "direct"
leaves CPU 0 idle.

Modes (a cell is mode x body size x concurrency):
    nonstream  wrk (one thread, keep-alive; bench/post.lua posts the body
               and prints percentiles); metric: whole-response latency
    stream     20 SSE events sent back to back; bench/streamload; metric:
               whole-stream latency (and throughput of streams)
    ttfb       5 SSE events, x-mock-chunk-delay-ms 1 (mockllm's libevent
               timers are coarse: ~4 ms in practice), so the first event
               travels alone; bench/streamload; metric: time from request
               written to first SSE event byte received, per request.
wrk cannot see a first event and h2load measures TTFB once per connection
from connect(), hence streamload.

Every run is bounded: wrk by -d and --timeout, streamload by -d and -n;
everything talks to 127.0.0.1 only.  Output: a table on stdout and
bench/results/<date>-<sha>.json; bench/compare checks two such files.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
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
from pgcluster import PgCluster  # noqa: E402

HOST = "127.0.0.1"
PROXY_CPU = "0"
LOAD_CPU = "1"
STREAM_CHUNKS = 20              # "stream" cells: 20 events, no delay
PACED_CHUNKS = 5                # "ttfb" cells: 5 events, 1 ms apart
PACED_DELAY_MS = 1
HOLD_STREAMS = 1000
HOLD_DELAY_MS = 300             # 20 chunks: each held stream lasts ~6 s

# The API key every request presents (sluice hashes and looks it up, and
# takes the key's rate-limit state; direct and nginx pass it to mockllm,
# which ignores it).  start_sluice() writes the matching keys.conf.
# --no-key clears AUTH_HEADERS and runs sluice without keys_file.
BENCH_SECRET = "sk-sluice-bench-0123456789abcdef"
AUTH_HEADERS = ["Authorization: Bearer " + BENCH_SECRET]

SIZES = [("100B", 100), ("1KB", 1024), ("10KB", 10 * 1024),
         ("100KB", 100 * 1024)]
CONCS = [1, 10, 50]


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


def children(pid):
    """Direct children of pid, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(d))
    return out


def tree(pid):
    return [pid] + children(pid)


def proc_status(pid, keys):
    r = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    r[k] = int(v.split()[0])
    except OSError:
        pass
    return r


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            t += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return t


def cpu_stat():
    """{cpuN: (busy ticks, total ticks)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                out[line.split()[0]] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def mem_of(pids):
    """Sum over pids of VmRSS, VmHWM (peak) and Pss, in KB."""
    rss = hwm = pss = 0
    for p in pids:
        s = proc_status(p, ("VmRSS", "VmHWM"))
        rss += s.get("VmRSS", 0)
        hwm += s.get("VmHWM", 0)
        pss += pss_kb(p)
    return {"rss_kb": rss, "peak_rss_kb": hwm, "pss_kb": pss,
            "processes": len(pids)}


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


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.join(TOP, args.build)
        self.tmp = tempfile.mkdtemp(prefix="sluice-bench-")
        self.procs = []         # Popen objects we started, stopped by pid
        self.pg = None
        self.targets = {}       # name -> {"port":, "pids": callable}

    # -- processes --------------------------------------------------------

    def spawn(self, argv, cpu, name, stdout=None):
        out = open(os.path.join(self.tmp, name + ".out"), "w") \
            if stdout is None else stdout
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=out,
                             stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append((name, p))
        return p

    def stop_all(self):
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
        self.pg = PgCluster(os.path.join(self.tmp, "pgbase"))
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

    def start_sluice(self, name, database):
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        port = free_port()
        conf = os.path.join(d, "sluice.conf")
        lines = [
            "listen %s:%d;" % (HOST, port),
            "workers %d;" % self.args.workers,
            "pid_file %s/sluiced.pid;" % d,
            "log %s/sluiced.log warn;" % d,
            "spool_dir %s/spool;" % d,
            "shutdown_timeout 5s;",
        ]
        if os.geteuid() == 0:
            lines.append("user root;")   # root workers only when asked
        if database:
            lines.append('database "%s";' % database)
        if AUTH_HEADERS:
            keys = os.path.join(d, "keys.conf")
            with open(keys, "w") as f:
                f.write("key bench {\n\thash sha256:%s;\n}\n" %
                        hashlib.sha256(BENCH_SECRET.encode()).hexdigest())
            os.chmod(keys, 0o600)
            lines.append("keys_file %s;" % keys)
        lines += [
            "upstream mock {",
            "\turl http://%s:%d;" % (HOST, self.mock_port),
            "\tprotocol openai;",
            "\tmax_idle 256;",
            "}",
            "route * mock;",
            "price * input 0.15 output 0.60;",
        ]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.spawn([os.path.join(self.build, "sluiced"), "-f", "-c",
                        conf], PROXY_CPU, name)
        wait_port(port, p)
        self.targets[name] = {"port": port, "pids": lambda: tree(p.pid),
                              "dir": d}

    def start_nginx(self):
        d = os.path.join(self.tmp, "nginx")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, sub))
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""\
worker_processes %(w)d;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
daemon off;
master_process on;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    # Bodies stay in memory (sluice keeps them in memory too); the default
    # 16k would write the 100 KB bodies to a temp file.
    client_body_buffer_size 256k;
    client_max_body_size 16m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream mock {
        server %(h)s:%(m)d;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen %(h)s:%(p)d;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
""" % {"w": self.args.workers, "d": d, "h": HOST, "m": self.mock_port,
                "p": port})
        p = self.spawn(["/usr/sbin/nginx", "-p", d, "-e",
                        os.path.join(d, "error.log"), "-c", conf],
                       PROXY_CPU, "nginx")
        wait_port(port, p)
        self.targets["nginx"] = {"port": port, "pids": lambda: tree(p.pid)}

    # -- load --------------------------------------------------------------

    def run_wrk(self, port, conc, body, secs):
        argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % conc,
                "-d%ds" % max(1, round(secs)),  # whole seconds only
                "--timeout", "5s", "-s",
                os.path.join(TOP, "bench", "post.lua"),
                "http://%s:%d" % (HOST, port), "--", body] + AUTH_HEADERS
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True,
                           timeout=secs + 30, check=True)
        for line in r.stdout.splitlines():
            if line.startswith("JSON "):
                return json.loads(line[5:])
        raise RuntimeError("wrk printed no JSON:\n" + r.stdout)

    def run_stream(self, port, conc, body, secs, warm, extra=(),
                   hold=False, maxn=2000000):
        argv = ["taskset", "-c", LOAD_CPU,
                os.path.join(self.build, "streamload"), "-p", str(port),
                "-c", str(conc), "-d", str(secs), "-w", str(warm),
                "-n", str(maxn), "-b", body]
        for h in AUTH_HEADERS + list(extra):
            argv += ["-H", h]
        if hold:
            argv.append("--hold")
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True,
                           timeout=secs + warm + 30, check=True)
        return json.loads(r.stdout)

    def measure(self, target, fn):
        pids = self.targets[target]["pids"]()
        pg = tree(self.pg_pid) if target == "sluice" and self.pg else []
        c0, g0, t0 = cpu_ticks(pids), cpu_ticks(pg), time.time()
        s0 = cpu_stat()
        res = fn()
        c1, g1 = cpu_ticks(pids), cpu_ticks(pg)
        s1 = cpu_stat()
        # How busy each CPU was, everything included: CPU 0 during a
        # "direct" run shows what else the machine was doing.
        res["cpu_busy"] = {c: round((s1[c][0] - s0[c][0]) /
                                    max(1, s1[c][1] - s0[c][1]), 2)
                           for c in s1 if c in s0}
        hz = os.sysconf("SC_CLK_TCK")
        n = max(1, res.get("requests", 0))
        res["proxy_cpu_s"] = round((c1 - c0) / hz, 3)
        res["proxy_cpu_us_per_req"] = round((c1 - c0) / hz / n * 1e6, 1)
        if pg:
            res["pg_cpu_us_per_req"] = round((g1 - g0) / hz / n * 1e6, 1)
        res["wall_s"] = round(time.time() - t0, 3)
        return res

    # -- the matrix --------------------------------------------------------

    def cells(self):
        a = self.args
        if a.smoke or a.quick:
            c = 2 if a.smoke else 10
            sizes = [(n, b) for n, b in SIZES if n in a.sizes.split(",")]
            if not sizes:
                sys.exit("bench: --sizes: none of %s" %
                         ", ".join(n for n, _ in SIZES))
            return [(m, n, b, c) for n, b in sizes
                    for m in ("nonstream", "stream", "ttfb")]
        out = []
        for mode in ("nonstream", "stream"):
            for sname, size in SIZES:
                for c in CONCS:
                    out.append((mode, sname, size, c))
        for sname, size in (SIZES[1], SIZES[3]):
            for c in CONCS:
                out.append(("ttfb", sname, size, c))
        return out

    def run_cell(self, i, mode, sname, size, conc):
        a = self.args
        body = os.path.join(self.tmp, "%s-%s.json" % (mode, sname))
        if not os.path.exists(body):
            make_body(body, size, mode != "nonstream")
        order = ["direct", "sluice", "nginx"]
        if "sluice_nodb" in self.targets and sname == "1KB":
            order.append("sluice_nodb")
        k = i % len(order)
        order = order[k:] + order[:k]
        res = {}
        for t in order:
            port = self.targets[t]["port"]
            if mode == "nonstream":
                res[t] = self.measure(t, lambda: self.run_wrk(
                    port, conc, body, a.secs))
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
        return cell

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
        import http.client
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


def pct_or_none(d, key, q):
    try:
        return d[key][q]
    except (KeyError, TypeError):
        return None


def derive(mode, res):
    """sluice's (and nginx's) added latency over direct, and the ratios."""
    key = "ttfe_us" if mode == "ttfb" else "latency_us"
    d = {}
    base = res["direct"]
    for t in ("sluice", "nginx", "sluice_nodb"):
        if t not in res:
            continue
        for q in ("p50", "p99"):
            d["%s_added_%s_us" % (t, q)] = \
                res[t][key][q] - base[key][q]
    for q in ("p50", "p99"):
        s, n = d["sluice_added_%s_us" % q], d["nginx_added_%s_us" % q]
        # Added latency can be ~0 or negative for nginx; floor the divisor
        # at 1 us so the ratio stays finite (and say so in RESULTS.md).
        d["added_%s_ratio" % q] = round(s / max(n, 1.0), 3)
        d["added_%s_minus_nginx_us" % q] = s - n
    d["rps_ratio"] = round(res["sluice"]["rps"] / max(res["nginx"]["rps"],
                                                      1e-9), 3)
    d["metric"] = {"ttfb": "time to first SSE event", "stream":
                   "whole-stream latency"}.get(mode, "request latency")
    if mode != "nonstream":
        for t in ("sluice", "nginx"):
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


def fmt_table(cells, out):
    hdr = ("%-9s %-5s %3s | %9s %9s %9s | %7s %7s %7s | %7s %7s %7s | "
           "%6s %6s %5s | %5s %5s" %
           ("mode", "size", "c", "rps dir", "rps slc", "rps ngx",
            "p50 dir", "p50 slc", "p50 ngx", "p99 dir", "p99 slc", "p99 ngx",
            "+p50 s", "+p50 n", "+p99s", "rps", "cpu"))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for c in cells:
        t = c["targets"]
        key = "ttfe_us" if c["mode"] == "ttfb" else "latency_us"
        dv = c["derived"]
        print("%-9s %-5s %3d | %9.0f %9.0f %9.0f | %7d %7d %7d | %7d %7d "
              "%7d | %6d %6d %5d | %5.2f %5.2f" % (
                  c["mode"], c["size"], c["concurrency"],
                  t["direct"]["rps"], t["sluice"]["rps"], t["nginx"]["rps"],
                  t["direct"][key]["p50"], t["sluice"][key]["p50"],
                  t["nginx"][key]["p50"], t["direct"][key]["p99"],
                  t["sluice"][key]["p99"], t["nginx"][key]["p99"],
                  dv["sluice_added_p50_us"], dv["nginx_added_p50_us"],
                  dv["sluice_added_p99_us"] - dv["nginx_added_p99_us"],
                  dv["rps_ratio"],
                  t["sluice"]["proxy_cpu_us_per_req"] /
                  max(t["nginx"]["proxy_cpu_us_per_req"], 0.1)), file=out)
        if "sluice_nodb" in t:
            n = t["sluice_nodb"]
            print("%-9s %-5s %3s   sluice without database: rps %.0f, "
                  "p50 %d, p99 %d, cpu %.1f us/req (metered: %.1f)" % (
                      "", "", "", n["rps"], n[key]["p50"], n[key]["p99"],
                      n["proxy_cpu_us_per_req"],
                      t["sluice"]["proxy_cpu_us_per_req"]), file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 KB, c=10 only (both modes)")
    ap.add_argument("--sizes", default="1KB",
                    help="with --quick: the body sizes, comma-separated "
                    "(100B, 1KB, 10KB, 100KB)")
    ap.add_argument("--smoke", action="store_true",
                    help="the quick code path with tiny counts; no JSON "
                    "file unless --out")
    ap.add_argument("--secs", type=float, default=None,
                    help="measured seconds per run (default 4, quick 3)")
    ap.add_argument("--warm", type=float, default=0.5,
                    help="unrecorded warm-up seconds per streaming run")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=None, help="JSON result path")
    ap.add_argument("--no-hold", action="store_true",
                    help="skip the 1,000-stream RSS measurement")
    ap.add_argument("--no-key", action="store_true",
                    help="run sluice without keys_file and send no "
                    "Authorization header")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp directory (logs, configs)")
    ap.add_argument("--table", metavar="JSON",
                    help="print the summary of a saved result and exit")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            report(json.load(f))
        return
    if args.secs is None:
        args.secs = 0.3 if args.smoke else 2 if args.quick else 4
    if args.smoke:
        args.warm = 0.1
        args.no_hold = True
    if args.quick:
        args.no_hold = True
    if args.no_key:
        AUTH_HEADERS.clear()

    os.sched_setaffinity(0, {int(LOAD_CPU)})
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
    for exe in ("sluiced", "mockllm", "streamload"):
        if not os.access(os.path.join(TOP, args.build, exe), os.X_OK):
            sys.exit("bench: %s/%s not built (make bench builds it)" %
                     (args.build, exe))

    started = datetime.datetime.now(datetime.timezone.utc)
    sha, dirty = git_sha()
    b = Bench(args)
    result = {"started": started.isoformat(timespec="seconds"),
              "git": sha, "dirty": dirty, "machine": machine(),
              "command": " ".join(sys.argv),
              "sluiced_sha256": file_sha256(os.path.join(
                  TOP, args.build, "sluiced")),
              "method": {
                  "cpus": "proxy (sluiced, nginx, PostgreSQL) on CPU %s; "
                          "load generator, mockllm, driver on CPU %s" %
                          (PROXY_CPU, LOAD_CPU),
                  "workers": args.workers, "secs_per_run": args.secs,
                  "stream_warmup_s": args.warm,
                  "nonstream_tool": "wrk -t1 (bench/post.lua)",
                  "stream_tool": "bench/streamload (per-request time to "
                                 "first SSE event)",
                  "stream_chunks": STREAM_CHUNKS,
                  "ttfb_chunks": PACED_CHUNKS,
                  "ttfb_chunk_delay_ms": PACED_DELAY_MS,
                  "nofile_limit": soft,
                  "api_key": bool(AUTH_HEADERS)},
              "cells": []}
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        b.start_mock()
        b.start_pg()
        b.start_sluice("sluice", b.pg.conninfo())
        b.start_sluice("sluice_nodb", None)
        b.start_nginx()
        # Warm every target once: upstream pools, page cache, PostgreSQL.
        warm_body = os.path.join(b.tmp, "warm.json")
        make_body(warm_body, 1024, False)
        for t in ("direct", "sluice", "sluice_nodb", "nginx"):
            if not args.smoke:
                b.run_wrk(b.targets[t]["port"], 10, warm_body, 1)
        result["auth_enforced"] = b.auth_probe()
        cells = b.cells()
        for i, (mode, sname, size, conc) in enumerate(cells):
            log("[%d/%d] %s %s c=%d" % (i + 1, len(cells), mode, sname,
                                         conc))
            result["cells"].append(b.run_cell(i, mode, sname, size, conc))
        mem = {"sluice_peak_after_matrix": mem_of(b.targets["sluice"]
                                                  ["pids"]())}
        if not args.no_hold:
            log("holding %d streams through sluice" % HOLD_STREAMS)
            mem["sluice_hold"] = b.hold_streams("sluice")
            log("holding %d streams through nginx" % HOLD_STREAMS)
            mem["nginx_hold"] = b.hold_streams("nginx")
            mem["sluice_peak_after_hold"] = mem_of(
                b.targets["sluice"]["pids"]())
        result["memory"] = mem
        # Usage rows written, as a check that metering was on.
        try:
            result["usage_rows"] = int(b.pg.psql(
                "SELECT count(*) FROM usage_events").strip())
        except Exception as e:  # noqa: BLE001 - informative only
            result["usage_rows"] = "unknown (%s)" % str(e).splitlines()[0]
    finally:
        b.stop_all()
    busy = [c["targets"]["direct"]["cpu_busy"].get("cpu" + PROXY_CPU, 0)
            for c in result["cells"]]
    result["contention"] = {
        "loadavg_1m_max": max([c["loadavg_1m"] for c in result["cells"]],
                              default=0),
        "proxy_cpu_busy_during_direct_max": max(busy, default=0),
        "note": "CPU %s should be idle while 'direct' runs; what it shows "
                "is other work on this machine" % PROXY_CPU}
    result["finished"] = datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")

    report(result)

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


def report(result):
    """The human summary of one result (also: run.py --table FILE)."""
    fmt_table(result["cells"], sys.stdout)
    print("(latency in us: nonstream = whole response, stream = whole "
          "20-event stream, ttfb = first SSE event; +p50 s/n = added by sluice/nginx over direct; "
          "+p99s = sluice's added p99 minus nginx's; rps = sluice/nginx; "
          "cpu = sluice/nginx proxy CPU per request)")
    for k, m in result["memory"].items():
        extra = ""
        if "streams" in m:
            extra = " while holding %d streams (%s completed, mock saw %s " \
                    "open)" % (m["streams"], m["completed"],
                               m["mock_active_connections"])
        print("memory %-24s RSS %6.1f MB, sum of peaks %6.1f MB, PSS %6.1f "
              "MB over %d processes%s" % (
                  k, m["rss_kb"] / 1024, m["peak_rss_kb"] / 1024,
                  m["pss_kb"] / 1024, m["processes"], extra))
    if "contention" in result:
        print("contention: max 1-min load average %.1f; CPU %s busy %.0f%% "
              "(max) while only 'direct' ran, which leaves it idle" % (
                  result["contention"]["loadavg_1m_max"], PROXY_CPU,
                  100 * result["contention"][
                      "proxy_cpu_busy_during_direct_max"]))
    print("usage rows written by the metered sluice: %s" %
          result.get("usage_rows"))


if __name__ == "__main__":
    main()
