#!/usr/bin/python3
"""callgrind_ab.py - instructions (or system calls, or CPU time) per
request of one sluiced worker, for one or more builds.

    bench/callgrind_ab.py [-r REPEAT] [-w NAME,...] [-s | -t] BUILD ...

Time on a shared 2-core machine moves by tens of percent from run to run;
instruction counts do not, so an A/B of two builds of the request path is
made here.  For each build and workload, sluiced runs with one worker
under callgrind (children traced) in front of the build's mockllm, and a
keep-alive client sends the requests one after another; the worker's
instructions (the busiest process's callgrind total) minus those of a run
that served only WARM requests of the same workload, divided by the
requests after those, is the figure: what a warm request costs, without
the once-per-process work of the first ones (lazy symbol binding,
OpenSSL's SHA-256 fetch, the first upstream connection).  The key has
rpm, tpm and a budget, so the limits are checked and charged.  With -s,
sluiced runs without valgrind and `strace -c -f` on the worker counts
its system calls per request instead (all, then each kind made at
least once in 20 requests), over the same requests after the same warm-up; with -t, the
worker's CPU time per request from /proc/PID/schedstat (noisy on a
shared machine: a check that instructions saved are time saved).  The
workloads: a 1 KB chat with a key, a 100 KB chat, a 1 KB stream of 20
events, a request refused for its key, and (-w to pick them) answers of
1 KB and 100 KB, plain and gzip-compressed by mockllm (x-mock-gzip), for
the cost of decoding a copy for the usage reader.  Everything talks to
127.0.0.1; every run is bounded.
"""

import glob
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
SECRET = "sk-sluice-bench-0123456789abcdef"
GZIP = {"x-mock-gzip": "1", "Accept-Encoding": "gzip"}
WORKLOADS = [
    # name, requests, body size, stream, key, headers
    ("chat_1k", 400, 1024, False, SECRET, {}),
    ("chat_100k", 100, 100 * 1024, False, SECRET, {}),
    ("stream_1k", 200, 1024, True, SECRET, {}),
    ("refused_401", 400, 1024, False, "sk-wrong", {}),
    # answers of ~1 KB and ~100 KB (mockllm: x-mock-chunks words)
    ("answer_1k", 400, 200, False, SECRET, {"x-mock-chunks": "110"}),
    ("answer_1k_gz", 400, 200, False, SECRET,
     dict(GZIP, **{"x-mock-chunks": "110"})),
    ("answer_100k", 100, 200, False, SECRET, {"x-mock-chunks": "16700"}),
    ("answer_100k_gz", 100, 200, False, SECRET,
     dict(GZIP, **{"x-mock-chunks": "16700"})),
]
DEFAULT = ["chat_1k", "chat_100k", "stream_1k", "refused_401"]
WARM = 20               # requests served before the counted ones


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit("callgrind_ab: a process exited early")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("callgrind_ab: port %d never opened" % port)


def body_of(size, stream):
    doc = {"model": "gpt-4o-mini", "stream": stream,
           "messages": [{"role": "user", "content": ""}]}
    doc["messages"][0]["content"] = "x" * max(
        0, size - len(json.dumps(doc)))
    return json.dumps(doc).encode()


def drive(port, n, size, stream, key, extra):
    body = body_of(size, stream)
    hdrs = {"Content-Type": "application/json",
            "Authorization": "Bearer " + key,
            "x-mock-chunks": "20"}
    hdrs.update(extra)
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", body, hdrs)
        r = conn.getresponse()
        r.read()
        if r.will_close:
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.close()


def worker_ir(outdir):
    """The callgrind total of the busiest process: the worker."""
    best = 0
    for f in glob.glob(os.path.join(outdir, "cg.*")):
        with open(f, errors="replace") as fh:
            for line in fh:
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    best = max(best, int(m.group(1)))
                    break
    return best


def stop(proc, sig, timeout):
    """Send SIG to a process we started; kill it if it outlives TIMEOUT."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def worker_pid(master, timeout=10.0):
    """The master's child whose title says it is a worker."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open("/proc/%d/task/%d/children" % (master, master)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        for pid in kids:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if f.read().startswith(b"sluice: worker"):
                        return pid
            except OSError:
                pass
        time.sleep(0.1)
    sys.exit("callgrind_ab: no worker under pid %d" % master)


def strace_counts(path):
    """strace -c's table: {syscall: calls}, "total" included."""
    counts = {}
    with open(path) as f:
        for line in f:
            cols = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(cols) >= 5 and cols[3].isdigit() and \
                    not cols[0].startswith("-"):
                counts[cols[-1]] = int(cols[3])
    return counts


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def cpu_drive(sl, tmp, sport, warm, n, size, stream, key, extra):
    """Serve WARM requests, then N: the worker's CPU time for those."""
    drive(sport, warm, size, stream, key, extra)
    wpid = worker_pid(sl.pid)
    t0 = cpu_ns(wpid)
    drive(sport, n, size, stream, key, extra)
    return {"total": cpu_ns(wpid) - t0}


def strace_drive(sl, tmp, sport, warm, n, size, stream, key, extra):
    """Serve WARM requests, then N under strace -c on the worker."""
    drive(sport, warm, size, stream, key, extra)
    wpid = worker_pid(sl.pid)
    out = os.path.join(tmp, "strace.txt")
    st = subprocess.Popen(["strace", "-c", "-f", "-p", str(wpid), "-o", out],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # strace says "attached" on stderr before it counts anything
        ready, _, _ = select.select([st.stderr], [], [], 10.0)
        if not ready or b"attached" not in st.stderr.readline():
            sys.exit("callgrind_ab: strace did not attach to %d" % wpid)
        drive(sport, n, size, stream, key, extra)
    finally:
        stop(st, signal.SIGINT, 30)
    return strace_counts(out)


def run(build, n, size, stream, key, extra=None, traced=None, warm=0):
    """The worker's callgrind total after N requests; traced (strace_drive
    or cpu_drive): what it measures of N requests after WARM."""
    tmp = tempfile.mkdtemp(prefix="sluice-cg-")
    extra = extra or {}
    try:
        mport, sport = free_port(), free_port()
        mock = subprocess.Popen([os.path.join(build, "mockllm"), "-l",
                                 "%s:%d" % (HOST, mport), "--quiet"],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        keys = os.path.join(tmp, "keys.conf")
        with open(keys, "w") as f:
            # limits high enough never to refuse, but checked and charged
            f.write("key bench {\n\thash sha256:%s;\n\trpm 1000000;\n"
                    "\ttpm 1000000000;\n\tbudget 100000 per day;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
        os.chmod(keys, 0o600)
        conf = os.path.join(tmp, "sluice.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "listen %s:%d;" % (HOST, sport), "workers 1;",
                "pid_file %s/sluiced.pid;" % tmp,
                "log %s/sluiced.log warn;" % tmp,
                "spool_dir %s/spool;" % tmp, "shutdown_timeout 5s;",
                "user root;" if os.geteuid() == 0 else "",
                "keys_file %s;" % keys,
                "upstream mock {", "\turl http://%s:%d;" % (HOST, mport),
                "\tprotocol openai;", "}", "route * mock;",
                "price * input 0.15 output 0.60;"]) + "\n")
        cg = os.path.join(tmp, "cg")
        os.makedirs(cg)
        cmd = [os.path.join(build, "sluiced"), "-f", "-c", conf]
        if not traced:
            cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                   "--callgrind-out-file=%s/cg.%%p" % cg] + cmd
        sl = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        res = None
        try:
            wait_port(mport, mock)
            wait_port(sport, sl)
            if traced:
                res = traced(sl, tmp, sport, warm, n, size, stream, key,
                             extra)
            elif n > 0:
                drive(sport, n, size, stream, key, extra)
        finally:
            stop(sl, signal.SIGTERM, 120)
            mock.terminate()
            mock.wait(timeout=10)
        return res if traced else worker_ir(cg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def label(build):
    """The build's directory and its parent: "wt-old/build"."""
    b = os.path.abspath(build)
    return os.path.basename(os.path.dirname(b)) + "/" + os.path.basename(b)


def table(builds, rows, note):
    print("%-15s" % "workload" + "".join("%20s" % label(b) for b in builds)
          + ("%10s" % "ratio" if len(builds) == 2 else ""))
    for name, row, fmt in rows:
        line = "%-15s" % name + "".join(fmt % v for v in row)
        if len(builds) == 2 and row[0] > 0:
            line += "%10.3f" % (row[1] / row[0])
        print(line)
    print(note)


def main():
    args = sys.argv[1:]
    repeat = 3
    names = DEFAULT
    traced = None
    while args and args[0] in ("-r", "-w", "-s", "-t"):
        if args[0] in ("-s", "-t"):
            traced = strace_drive if args[0] == "-s" else cpu_drive
            args = args[1:]
            continue
        if len(args) < 2:
            sys.exit(__doc__)
        if args[0] == "-r":
            repeat = int(args[1])
        else:
            names = args[1].split(",")
        args = args[2:]
    work = [w for w in WORKLOADS if w[0] in names]
    if len(work) != len(names):
        sys.exit("callgrind_ab: workloads: " +
                 ", ".join(w[0] for w in WORKLOADS))
    builds = args
    if not builds:
        sys.exit(__doc__)
    tool = {None: "valgrind", strace_drive: "strace"}.get(traced, "cat")
    if shutil.which(tool) is None:
        sys.exit("callgrind_ab: %s not found (apt-get install %s)" %
                 (tool, tool))
    res = {}
    # the builds take turns, and each figure is the least of REPEAT runs:
    # how often the loop wakes for one request varies with timing, and
    # the fewest wake-ups is the request's own cost
    for _ in range(repeat):
        for b in builds:
            for name, n, size, stream, key, extra in work:
                if traced:
                    c = run(b, n, size, stream, key, extra, traced, WARM)
                    v = {k: x / n for k, x in c.items()}
                    if (b, name) not in res or \
                            v.get("total", 0) < res[(b, name)]["total"]:
                        res[(b, name)] = v
                    continue
                base = run(b, WARM, size, stream, key, extra)
                v = (run(b, WARM + n, size, stream, key, extra) - base) / n
                res[(b, name)] = min(res.get((b, name), v), v)
    if not traced:
        table(builds, [(name, [res[(b, name)] for b in builds], "%20.0f")
                       for name, *_ in work],
              "(instructions per request in the worker, the first %d "
              "subtracted; least of %d runs)" % (WARM, repeat))
        return
    if traced == cpu_drive:
        table(builds, [(name, [res[(b, name)]["total"] / 1000 for b in
                               builds], "%20.1f") for name, *_ in work],
              "(CPU us per request in the worker, schedstat, after %d "
              "requests; least of %d runs)" % (WARM, repeat))
        return
    rows = []
    for name, *_ in work:
        rows.append((name, [res[(b, name)].get("total", 0) for b in builds],
                     "%20.2f"))
        calls = set()
        for b in builds:
            calls |= {k for k, x in res[(b, name)].items()
                      if k != "total" and x >= 0.05}
        for k in sorted(calls):
            rows.append(("  " + k, [res[(b, name)].get(k, 0) for b in builds],
                         "%20.2f"))
    table(builds, rows, "(system calls per request in the worker, strace -c "
          "-f after %d requests; least total of %d runs)" % (WARM, repeat))


if __name__ == "__main__":
    main()
