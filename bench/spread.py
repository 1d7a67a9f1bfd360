#!/usr/bin/python3
"""spread.py - how evenly sluiced's workers share keep-alive clients.

    bench/spread.py [--build DIR]... [--workers N] [--conns 8,16,64]
                    [--secs S] [--rounds R]

Several --build give an A/B, the builds alternating within each client
count so that drift hits all of them; for the code before the workers
took turns: git archive e7bc8cb | tar -x -C /tmp/before && make -C
/tmp/before, then --build /tmp/before/build --build build.

For each client count C and round, a fresh sluiced with N workers (no
database: events are spooled) runs in front of the build's mockllm, and
wrk sends 1 KB chat requests for S seconds over C keep-alive connections.
Each worker's requests are the growth of its lane's push counter,
sluice_ring_pushes_total{worker="slot"} in /metrics, over the run.  The
figure printed is the busiest worker's requests over its fair share
(total / N): 1.00 is a perfect spread, N means one worker served all.
Also printed: wrk's requests/s and the CPU time of sluiced's processes
(master, workers, collector; /proc/PID/schedstat) per request.

Everything talks to 127.0.0.1; each run is bounded by S seconds of wrk
plus a few seconds of start and stop, and every process started here is
stopped by its pid.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HOST = "127.0.0.1"
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUSHES = re.compile(r'^sluice_ring_pushes_total\{worker="(\d+)"\} (\d+)$',
                    re.M)


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(what, fn, secs=10.0):
    end = time.time() + secs
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def accepts(port):
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def pushes(admin):
    with urllib.request.urlopen("http://%s:%d/metrics" % (HOST, admin),
                                timeout=5) as r:
        text = r.read().decode()
    return {int(w): int(n) for w, n in PUSHES.findall(text)}


def tree(pid):
    """PID and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_ns(pids):
    """CPU time from schedstat (first field, ns): ticks undercount."""
    n = 0
    for p in pids:
        try:
            with open("/proc/%d/schedstat" % p) as f:
                n += int(f.read().split()[0])
        except OSError:
            pass
    return n


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def start_sluiced(build, d, lines):
    """sluiced -f with LINES, its pid file, log and spool in D."""
    conf = os.path.join(d, "sluice.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines + [
            "pid_file %s/sluiced.pid;" % d,
            "log %s/sluiced.log warn;" % d,
            "spool_dir %s/spool;" % d,
            "user root;" if os.geteuid() == 0 else "",
        ]) + "\n")
    return subprocess.Popen([os.path.join(build, "sluiced"), "-f", "-c",
                             conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_mock(build, tmp):
    out = os.path.join(tmp, "mockllm.out")
    with open(out, "w") as f:
        p = subprocess.Popen([os.path.join(build, "mockllm"), "-l",
                              HOST + ":0", "--quiet"], stdout=f,
                             stderr=subprocess.STDOUT)

    def port():
        with open(out) as f:
            for line in f:
                if line.startswith("listening on"):
                    return int(line.rsplit(":", 1)[1])
        return None
    return p, wait_until("mockllm", port)


def one_run(args, build, tmp, mock_port, conns, body):
    d = tempfile.mkdtemp(dir=tmp)
    port, admin = free_port(), free_port()
    p = start_sluiced(build, d, [
        "listen %s:%d;" % (HOST, port),
        "admin_listen %s:%d;" % (HOST, admin),
        "workers %d;" % args.workers,
        "shutdown_timeout 5s;",
        "upstream mock { url http://%s:%d; max_idle 256; }" %
        (HOST, mock_port),
        "route * mock;",
    ])
    try:
        wait_until("sluiced", lambda: accepts(port) and accepts(admin))
        # every worker up (its lane is listed once its slot has a pid)
        time.sleep(0.5)
        before = pushes(admin)
        procs = tree(p.pid)
        cpu0 = cpu_ns(procs)
        w = subprocess.run(
            ["wrk", "-t2", "-c%d" % conns, "-d%ds" % args.secs,
             "-s", os.path.join(TOP, "bench", "post.lua"),
             "http://%s:%d/v1/chat/completions" % (HOST, port), "--", body],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=args.secs + 30)
        after = pushes(admin)
        cpu = cpu_ns(procs) - cpu0
    finally:
        stop(p)
    m = re.search(r"^JSON (.*)$", w.stdout, re.M)
    rps = json.loads(m.group(1))["rps"] if m else 0.0
    per = sorted((after.get(i, 0) - before.get(i, 0) for i in after),
                 reverse=True)[:args.workers]
    total = sum(per)
    share = max(per) / (total / args.workers) if total else float("nan")
    return share, per, rps, cpu / 1e3 / total if total else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", action="append")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--conns", default="8,16,64")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    builds = args.build or [os.path.join(TOP, "build")]
    if shutil.which("wrk") is None:
        sys.exit("spread.py: wrk is not installed (make bench installs it)")
    tmp = tempfile.mkdtemp(prefix="sluice-spread-")
    mock = None
    try:
        body = os.path.join(tmp, "body.json")
        with open(body, "w") as f:
            json.dump({"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": "x" * 900}]}, f)
        mock, mock_port = start_mock(builds[-1], tmp)
        print("%d workers, %ds per run" % (args.workers, args.secs))
        print("%-5s %6s %5s %9s %8s %9s  %s" % (
            "build", "conns", "round", "max/fair", "rps", "cpu/req",
            "requests per worker"))
        worst = {}
        for c in [int(x) for x in args.conns.split(",")]:
            for r in range(1, args.rounds + 1):
                for k, b in enumerate(builds):
                    share, per, rps, us = one_run(args, b, tmp, mock_port,
                                                  c, body)
                    worst[k, c] = max(worst.get((k, c), 0.0), share)
                    print("%-5s %6d %5d %9.2f %8.0f %6.1f us  %s" %
                          ("#%d" % (k + 1), c, r, share, rps, us,
                           " ".join(map(str, per))), flush=True)
        for k, b in enumerate(builds):
            print("#%d %s: worst max/fair " % (k + 1, b) + ", ".join(
                "c=%d %.2f" % (c, s) for (kk, c), s in sorted(worst.items())
                if kk == k))
    finally:
        if mock is not None:
            stop(mock)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
