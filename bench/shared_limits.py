#!/usr/bin/python3
"""shared_limits.py - what `limits shared` costs a request, and what three
hosts sharing one limit admit (issue 18, item 5).

    bench/shared_limits.py              both parts (about 3 minutes)
    bench/shared_limits.py --cost-only  the cost part (about 1 minute)
    bench/shared_limits.py --hosts-only the three hosts (about 2 minutes)

Cost: two sluiced side by side in front of one mockllm, metered into one
private PostgreSQL (fsync on), the bench key limited by rpm, tpm and a
budget far above what the run uses, so that every request takes all
three: `local` with `limits local;` and `shared` with `limits shared;`
(its collector leasing from that PostgreSQL).  wrk c=10, 1 KB
requests, ROUNDS rounds alternating the two; CPU per request from
/proc/PID/task/*/schedstat (bench/procstat.py) of all sluiced processes,
and of the workers alone.  Reported: the median of each and the ratio
shared / local.  bench/run.py's Bench starts and stops every process.

Three hosts: three sluiced with `limits shared`, one key with rpm LIMIT,
wrk c=HOST_CONC against each at once from the start of a UTC minute for
59 s; the 200s of that minute in all, counted by wrk (requests less
non-2xx and errors), against the limit.

Everything on 127.0.0.1; every run bounded by wrk's -d; processes
stopped by pid.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

ROUNDS = 5
SECS = 5
LIMIT = 600
HOST_CONC = 2           # per host: enough to be refused most of the time
BIG = ["rpm 1000000000;", "tpm 1000000000000;",
       "budget 1000000.00 per day;"]


def cost(b, body):
    conninfo = b.pg.conninfo()
    b.start_sluice("local", conninfo, 2, ["limits local;"], BIG)
    b.start_sluice("shared", conninfo, 2,
                   ["limits shared;", "host_name bench-shared;"], BIG)
    for t in ("local", "shared"):
        b.run_wrk(b.targets[t]["port"], 10, body, 1)      # warm-up
    got = {"local": [], "shared": []}
    for i in range(ROUNDS):
        order = ("local", "shared") if i % 2 == 0 else ("shared", "local")
        for t in order:
            port = b.targets[t]["port"]
            res = b.measure(t, lambda: b.run_wrk(port, 10, body, SECS))
            if res.get("non2xx"):
                raise RuntimeError("%s: %d non-2xx answers" %
                                   (t, res["non2xx"]))
            got[t].append(res)
            run.log("  %s: %.1f us/req (workers %.1f), %d requests" % (
                t, res["proxy_cpu_us_per_req"],
                res["workers_cpu_us_per_req"], res["served"]))
    out = {}
    for t, rs in got.items():
        out[t] = {
            "proxy_cpu_us_per_req": statistics.median(
                r["proxy_cpu_us_per_req"] for r in rs),
            "workers_cpu_us_per_req": statistics.median(
                r["workers_cpu_us_per_req"] for r in rs),
            "rps": statistics.median(r["rps"] for r in rs)}
    for k in ("proxy_cpu_us_per_req", "workers_cpu_us_per_req"):
        out["ratio_" + k] = round(out["shared"][k] / out["local"][k], 3)
    return out


def stop_sluices(b, names):
    """Stop the cost part's sluiced: a host of the same key with other
    limits would lease from the same rows (all hosts of one database must
    have the same keys.conf), and the three would be admitted nothing."""
    for name, p in b.procs:
        if name in names and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


def three_hosts(b, body, conc):
    conninfo = b.pg.conninfo()
    names = ["host%d" % i for i in range(3)]
    for n in names:
        b.start_sluice(n, conninfo, 1, ["limits shared;",
                                        "host_name bench-%s;" % n],
                       ["rpm %d;" % LIMIT])
    # from the start of a minute (each has leased it 10 s ahead) to its end
    t = time.time() + 12
    m = (int(t) // 60 + 1) * 60
    run.log("  waiting %.0f s for the minute to start" % (m - time.time()))
    while time.time() < m:
        time.sleep(0.1)
    res = {}

    def one(n):
        res[n] = b.run_wrk(b.targets[n]["port"], conc, body, 59)

    ts = [threading.Thread(target=one, args=(n,)) for n in names]
    for th in ts:
        th.start()
    for th in ts:
        th.join(120)
    # counted by the clients: under this load the rings may drop events
    # (a drop is counted, never waited for), so usage_events may miss some
    admitted = sum(r["requests"] - r["non2xx"] - r["errors"]
                   for r in res.values())
    asked = sum(r["requests"] for r in res.values())
    drops = 0
    for n in names:
        drops += sum(run.lane_values(b.metrics(n),
                                     "sluice_ring_drops_total").values())
    return {"limit": LIMIT, "hosts": 3, "conc_per_host": conc,
            "asked": asked, "admitted": admitted,
            "over_limit": admitted - LIMIT, "lease": "5%",
            "ring_drops": drops,
            "minute_start": m}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--cost-only", action="store_true")
    ap.add_argument("--hosts-only", action="store_true")
    ap.add_argument("--host-conc", type=int, default=HOST_CONC,
                    help="wrk connections per host in the three-host run")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    b = run.Bench(args)
    result = {"what": "limits shared vs local, bench/shared_limits.py",
              "rounds": ROUNDS, "secs": SECS, "conc": 10, "size": 1024}
    try:
        b.start_mock()
        b.start_pg()
        body = os.path.join(b.tmp, "body1k.json")
        run.make_body(body, 1024, False)
        if not args.hosts_only:
            run.log("cost: limits local vs shared, c=10, 1 KB")
            result["cost"] = cost(b, body)
            stop_sluices(b, ("local", "shared"))
        if not args.cost_only:
            run.log("three hosts, rpm %d, one minute" % LIMIT)
            result["three_hosts"] = three_hosts(b, body, args.host_conc)
    finally:
        b.stop_all()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
