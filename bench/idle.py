#!/usr/bin/python3
"""idle.py - what an idle sluiced costs: its collector's CPU and wake-ups.

    bench/idle.py [--build DIR] [--secs S] [--rounds R] [--no-db]

sluiced (2 workers) starts in front of the build's mockllm, with a
private PostgreSQL (tests/integration/pgcluster.py) as its database
unless --no-db; one request goes through so that every process has done
its first work; then, with no traffic at all, the collector's CPU time
(/proc/PID/schedstat, first field) and its voluntary context switches
(/proc/PID/status: one per sleep it woke from) are read S seconds apart.
Printed per round: CPU in ms and as a share of a core, and wake-ups per
second; the workers' and the master's are printed beside it.

Everything talks to 127.0.0.1 and every process started here is stopped
by its pid; a round takes S seconds and a few more to start and stop.
"""

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "bench"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from pgcluster import PgCluster  # noqa: E402
from spread import (HOST, accepts, cpu_ns, free_port,  # noqa: E402
                    start_mock, start_sluiced, stop, tree, wait_until)


def switches(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def one_round(args, tmp, mock_port, conninfo):
    d = tempfile.mkdtemp(dir=tmp)
    port = free_port()
    p = start_sluiced(args.build, d, [
        "listen %s:%d;" % (HOST, port),
        "workers 2;",
        'database "%s";' % conninfo if conninfo else "",
        "upstream mock { url http://%s:%d; }" % (HOST, mock_port),
        "route * mock;",
    ])
    try:
        wait_until("sluiced", lambda: accepts(port))
        c = http.client.HTTPConnection(HOST, port, timeout=10)
        c.request("POST", "/v1/chat/completions", body=json.dumps(
            {"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": "hi"}]}),
            headers={"Content-Type": "application/json"})
        c.getresponse().read()
        c.close()
        time.sleep(2)       # the batch is flushed, the connection is up
        procs = {q: title(q) for q in tree(p.pid)}
        cpu0 = {q: cpu_ns([q]) for q in procs}
        sw0 = {q: switches(q) for q in procs}
        t0 = time.monotonic()
        time.sleep(args.secs)
        dt = time.monotonic() - t0
        out = {}
        for q, t in procs.items():
            role = ("collector" if "collector" in t else
                    "worker" if "worker" in t else "master")
            ms = (cpu_ns([q]) - cpu0[q]) / 1e6
            wk = (switches(q) - sw0[q]) / dt
            a, b = out.get(role, (0.0, 0.0))
            out[role] = (a + ms, b + wk)
        return out, dt
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-db", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sluice-idle-")
    mock, pg = None, None
    try:
        mock, mock_port = start_mock(args.build, tmp)
        conninfo = ""
        if not args.no_db:
            pg = PgCluster(os.path.join(tmp, "pg"), fsync=True)
            pg.init()
            pg.start()
            conninfo = pg.conninfo()
        print("idle sluiced, %s, %.0f s a round, build %s" % (
            "no database" if args.no_db else "PostgreSQL", args.secs,
            args.build))
        for r in range(1, args.rounds + 1):
            out, dt = one_round(args, tmp, mock_port, conninfo)
            print("round %d: " % r + "; ".join(
                "%s %.1f ms CPU (%.3f %% of a core), %.1f wake-ups/s" %
                (role, ms, ms / 10 / dt, wk)
                for role, (ms, wk) in sorted(out.items())), flush=True)
    finally:
        if mock is not None:
            stop(mock)
        if pg is not None:
            try:
                pg.stop()
                pg.destroy()
            except Exception as e:  # noqa: BLE001 - best effort at exit
                print("stopping PostgreSQL: %s" % e, file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
