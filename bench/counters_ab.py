#!/usr/bin/python3
"""counters_ab.py - what the live counters cost on the request path.

    make bench-counters            6 rounds of 5 s per build
    bench/counters_ab.py --build build --nocnt build/nocnt [--rounds N]

Two sluiced, one built as usual and one with -DSLUICE_NO_COUNTERS (the
counter updates compiled out), in front of one mockllm, no database (the
collector spools).  wrk posts a 1 KB chat request at concurrency 10,
alternating the two builds round by round so that the machine's drift
hits both alike.  sluiced is pinned to CPU 0, wrk and mockllm to CPU 1.
The result: median requests/s and latency per build, the difference, and
the spread between rounds of the same build (the noise it must stay in).
Everything listens on 127.0.0.1; every process started is stopped by pid.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HZ = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(master):
    """utime + stime of the master's children (workers and collector)."""
    total = 0
    try:
        with open("/proc/%d/task/%d/children" % (master, master)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return 0
    for pid in kids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def wrk(port, secs, body):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c10", "-d%ds" % secs,
         "--timeout", "5s", "-s", os.path.join(ROOT, "bench/post.lua"),
         "http://127.0.0.1:%d" % port, "--", body],
        capture_output=True, text=True, timeout=secs + 30).stdout
    for line in out.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])
    raise RuntimeError("wrk printed no JSON:\n" + out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--nocnt", default=os.path.join(ROOT, "build/nocnt"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    builds = {"counters": os.path.join(a.build, "sluiced"),
              "compiled-out": os.path.join(a.nocnt, "sluiced")}
    tmp = tempfile.mkdtemp(prefix="sluice-counters-ab-")
    body = os.path.join(tmp, "body.json")
    with open(body, "w") as f:
        json.dump({"model": "gpt-test", "messages": [
            {"role": "user", "content": "x" * 900}]}, f)
    mock = subprocess.Popen(
        ["taskset", "-c", "1", os.path.join(a.build, "mockllm"), "-l",
         "127.0.0.1:0", "--quiet"], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    procs, ports = {}, {}
    try:
        mport = int(mock.stdout.readline().decode().rsplit(":", 1)[1])
        for name, binary in builds.items():
            d = os.path.join(tmp, name)
            os.makedirs(os.path.join(d, "spool"))
            ports[name] = free_port()
            with open(os.path.join(d, "sluice.conf"), "w") as f:
                f.write("listen 127.0.0.1:%d;\nworkers 1;\npid_file %s/pid;\n"
                        "log %s/log warn;\nspool_dir %s/spool;\n"
                        "upstream mock { url http://127.0.0.1:%d; }\n"
                        "route * mock;\n" % (ports[name], d, d, d, mport))
            procs[name] = subprocess.Popen(
                ["taskset", "-c", "0", binary, "-f", "-c",
                 os.path.join(d, "sluice.conf")], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        for name in builds:
            wrk(ports[name], 1, body)          # warm up
        res = {name: [] for name in builds}
        for r in range(a.rounds):
            order = list(builds) if r % 2 == 0 else list(builds)[::-1]
            for name in order:
                t0 = cpu_ticks(procs[name].pid)
                j = wrk(ports[name], a.seconds, body)
                ticks = cpu_ticks(procs[name].pid) - t0
                j["cpu_us_per_req"] = (1e6 * ticks / HZ /
                                       max(1, j["requests"]))
                if j["errors"] or j["non2xx"]:
                    raise RuntimeError("%s: errors %r" % (name, j))
                res[name].append(j)
                print("round %d %-12s %8.0f req/s  p50 %5d us  p99 %6d us  "
                      "cpu %5.1f us/req" % (r, name, j["rps"],
                                            j["latency_us"]["p50"],
                                            j["latency_us"]["p99"],
                                            j["cpu_us_per_req"]), flush=True)
        med = {}
        for name, rs in res.items():
            rps = [x["rps"] for x in rs]
            p50 = [x["latency_us"]["p50"] for x in rs]
            cpu = [x["cpu_us_per_req"] for x in rs]
            med[name] = (statistics.median(rps), statistics.median(p50),
                         statistics.median(cpu))
            print("%-12s median %8.0f req/s (rounds %.0f..%.0f), p50 %d us "
                  "(rounds %d..%d), cpu %.1f us/req (rounds %.1f..%.1f)" %
                  (name, med[name][0], min(rps), max(rps), med[name][1],
                   min(p50), max(p50), med[name][2], min(cpu), max(cpu)))
        c, n = med["counters"], med["compiled-out"]
        print("counters vs compiled out: %+.1f%% req/s, %+.1f%% p50, "
              "%+.1f%% cpu per request" %
              (100.0 * (c[0] - n[0]) / n[0], 100.0 * (c[1] - n[1]) / n[1],
               100.0 * (c[2] - n[2]) / n[2]))
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        mock.terminate()
        mock.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
