#!/usr/bin/python3
"""tls_bench.py - HTTPS on the client side: sluice against nginx, one run.

    make bench-tls             about 2 minutes
    bench/tls_bench.py --quick the same code path, 2 s a measurement

One mockllm (plain HTTP), and in front of it sluiced and nginx, each with
one worker pinned to CPU 0 and the same certificate and key (ECDSA P-256
by default, --key rsa for RSA 2048), made here with the openssl CLI.  Each
serves a plain listener and a TLS one.  wrk, mockllm and this script run
on CPU 1.  Measured back to back, in this order, twice (ABAB), so the
machine's drift hits both alike:

    keepalive  wrk -c10 over keep-alive connections, a 1 KB chat POST:
               requests/s and the proxy's CPU per request, over TLS and
               over the plain listener (what TLS itself adds)
    handshake  the same POST with "Connection: close": every request is
               a new connection and a full TLS handshake (no session is
               resumed: sluice's counters show it), connections/s and CPU
               per connection
    newconn    the same over the plain listener: what a new connection
               costs without TLS, the baseline of the handshake rows

CPU is the sum of the first field of /proc/PID/schedstat (nanoseconds on
the CPU) over the server's processes: for sluice its master, workers and
collector (which spools the usage events: no database here), for nginx
its master and worker.  sluice meters every request (a usage event) and
nginx does not, so the plain rows are the baseline the TLS rows are read
against.

Bounded: every wrk run by -d and --timeout; 127.0.0.1 only; the processes
started here are stopped by their pid.  Output: a table on stdout and
bench/results/tls-<date>-<sha>.json.
"""

import argparse
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from pki import make_ca, make_cert  # noqa: E402
import refproxy  # noqa: E402
# processes (spawn pinned to a CPU, stop_all by pid) and mockllm as
# bench/run.py starts them
from run import (HOST, LOAD_CPU, PROXY_CPU, Bench, free_port,  # noqa: E402
                 git_sha, tree, wait_port)

BODY_SIZE = 1024


def log(msg):
    print("tls_bench: " + msg, file=sys.stderr, flush=True)


def schedstat_ns(pids):
    """CPU time of PIDS so far, in ns (schedstat's first field)."""
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/schedstat" % p) as f:
                t += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return t


def role_of(pid):
    """master, worker or collector, from the process title."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for role in ("worker", "collector"):
        if role in title:
            return role
    return "master"


class TlsBench(Bench):
    def certificate(self):
        d = pathlib.Path(self.tmp)
        make_ca(d, "ca")
        key = "rsa:2048" if self.args.key == "rsa" else "ec"
        self.cert = make_cert(d, "ca", "server", "IP:127.0.0.1", key=key)
        body = {"model": "gpt-bench", "messages": [
            {"role": "user", "content": ""}]}
        empty = len(json.dumps(body))
        body["messages"][0]["content"] = "x" * (BODY_SIZE - empty)
        self.body = os.path.join(self.tmp, "body.json")
        with open(self.body, "w") as f:
            f.write(json.dumps(body))

    def start_sluice(self, name="sluice", tickets=True):
        d = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(d, "spool"))
        plain, tls, admin = free_port(), free_port(), free_port()
        lines = [
            "listen %s:%d;" % (HOST, plain),
            "listen %s:%d ssl;" % (HOST, tls),
            "admin_listen %s:%d;" % (HOST, admin),
            "ssl_certificate %s;" % self.cert[0],
            "ssl_certificate_key %s;" % self.cert[1],
            "ssl_session_tickets %s;" % ("on" if tickets else "off"),
            "workers 1;",
            "pid_file %s/sluiced.pid;" % d,
            "log %s/sluiced.log warn;" % d,
            "spool_dir %s/spool;" % d,
            "shutdown_timeout 5s;",
            "user root;" if os.geteuid() == 0 else "",
            "upstream mock {",
            "\turl http://%s:%d;" % (HOST, self.mock_port),
            "\tmax_idle 256;",
            "}",
            "route * mock;",
            "price * input 0.15 output 0.60;",
        ]
        conf = os.path.join(d, "sluice.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.spawn([os.path.join(self.build, "sluiced"), "-f", "-c",
                        conf], PROXY_CPU, name)
        wait_port(plain, p)
        self.targets[name] = {"plain": plain, "tls": tls, "admin": admin,
                              "pids": lambda: tree(p.pid)}

    def start_nginx(self):
        d = os.path.join(self.tmp, "nginx")
        plain, tls, tls_new = free_port(), free_port(), free_port()
        conf = refproxy.nginx_conf(d, 1, HOST, self.mock_port, plain,
                                   tls=(self.cert[0], self.cert[1], tls,
                                        tls_new))
        p = self.spawn(["/usr/sbin/nginx", "-p", d, "-e",
                        os.path.join(d, "error.log"), "-c", conf],
                       PROXY_CPU, "nginx")
        wait_port(plain, p)
        self.targets["nginx"] = {"plain": plain, "tls": tls,
                                 "pids": lambda: tree(p.pid)}
        self.targets["nginx_new"] = {"tls": tls_new,
                                     "pids": lambda: tree(p.pid)}

    def sluice_handshakes(self, target):
        """(full, resumed) TLS handshakes a sluiced has done."""
        import http.client
        c = http.client.HTTPConnection(HOST, self.targets[target]["admin"],
                                       timeout=10)
        try:
            c.request("GET", "/status")
            st = json.loads(c.getresponse().read())["totals"]["tls"]
        finally:
            c.close()
        return st["full"], st["resumed"]

    def wrk(self, target, listener, conc, close):
        t = self.targets[target]
        scheme = "https" if listener == "tls" else "http"
        argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % conc,
                "-d%ds" % self.args.seconds, "--timeout", "5s", "-s",
                os.path.join(TOP, "bench", "post.lua"),
                "%s://%s:%d" % (scheme, HOST, t[listener]), "--",
                self.body]
        if close:
            argv.append("Connection: close")
        pids = t["pids"]()
        c0 = schedstat_ns(pids)
        w0 = {p: schedstat_ns([p]) for p in pids}
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True,
                           timeout=self.args.seconds + 30, check=True)
        c1 = schedstat_ns(pids)
        res = None
        for line in r.stdout.splitlines():
            if line.startswith("JSON "):
                res = json.loads(line[5:])
        if res is None:
            raise RuntimeError("wrk printed no JSON:\n" + r.stdout)
        n = max(1, res["requests"])
        res["cpu_s"] = round((c1 - c0) / 1e9, 3)
        res["cpu_us_per_req"] = round((c1 - c0) / 1e3 / n, 1)
        # the same per process role: the worker's share is the proxy's
        by = {}
        for p, ns in w0.items():
            role = role_of(p)
            by[role] = by.get(role, 0) + schedstat_ns([p]) - ns
        res["cpu_us_per_req_by_role"] = {k: round(v / 1e3 / n, 1)
                                         for k, v in by.items()}
        return res

    def run(self):
        """Each cell twice, sluice and nginx in turn (ABBA)."""
        cells = [("keepalive_tls", "sluice", "nginx", "tls", False),
                 ("keepalive_plain", "sluice", "nginx", "plain", False),
                 ("handshake_tls", "sluice_new", "nginx_new", "tls", True),
                 ("newconn_plain", "sluice", "nginx", "plain", True)]
        out = {}
        for rnd in range(self.args.rounds):
            for key, s, n, listener, close in cells:
                for target in (s, n) if rnd == 0 else (n, s):
                    side = "sluice" if target.startswith("sluice") else \
                        "nginx"
                    if side == "sluice":
                        before = self.sluice_handshakes(target)
                    res = self.wrk(target, listener, 10, close)
                    if side == "sluice" and listener == "tls":
                        after = self.sluice_handshakes(target)
                        res["full_handshakes"] = after[0] - before[0]
                        res["resumed_handshakes"] = after[1] - before[1]
                    out.setdefault(key, {}).setdefault(side, []).append(res)
                    log("%-15s %-6s %8.0f req/s %7.1f us CPU/req (worker "
                        "%.1f) errors %d%s" % (
                            key, side, res["rps"], res["cpu_us_per_req"],
                            res["cpu_us_per_req_by_role"].get("worker", 0),
                                res["errors"] + res["non2xx"],
                                "" if "full_handshakes" not in res else
                                ", handshakes %d full %d resumed" % (
                                    res["full_handshakes"],
                                    res["resumed_handshakes"])))
        return out


def summary(out):
    """The mean of the two rounds per cell and target, and the ratios."""
    rows = {}
    for key, by in out.items():
        row = {}
        for target, runs in by.items():
            row[target] = {
                "rps": round(sum(r["rps"] for r in runs) / len(runs), 1),
                "cpu_us_per_req": round(sum(r["cpu_us_per_req"]
                                            for r in runs) / len(runs), 1),
                "worker_cpu_us_per_req": round(sum(
                    r["cpu_us_per_req_by_role"].get("worker", 0)
                    for r in runs) / len(runs), 1),
                "p99_us": max(r["latency_us"]["p99"] for r in runs),
                "errors": sum(r["errors"] + r["non2xx"] for r in runs),
            }
        row["rps_ratio"] = round(row["sluice"]["rps"] /
                                 max(row["nginx"]["rps"], 1), 3)
        row["cpu_ratio"] = round(row["sluice"]["cpu_us_per_req"] /
                                 max(row["nginx"]["cpu_us_per_req"], 0.1), 3)
        row["worker_cpu_ratio"] = round(
            row["sluice"]["worker_cpu_us_per_req"] /
            max(row["nginx"]["worker_cpu_us_per_req"], 0.1), 3)
        rows[key] = row
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="2 s a run")
    ap.add_argument("--smoke", action="store_true",
                    help="1 s a run, one round, nothing saved (the test)")
    ap.add_argument("--key", choices=("ec", "rsa"), default="ec")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 2
    if args.smoke:
        args.seconds, args.rounds, args.no_save = 1, 1, True
    else:
        args.rounds = 2
    b = TlsBench(args)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        b.certificate()
        b.start_mock()
        b.start_sluice()
        b.start_sluice("sluice_new", tickets=False)
        b.start_nginx()
        out = b.run()
    finally:
        b.stop_all()
    rows = summary(out)
    # CPU per request: all of each server's processes, then the workers
    # alone (sluice's collector spools a usage row for every request)
    print("%-15s %9s %9s %6s %9s %9s %6s %9s %9s %6s" % (
        "cell", "sluice/s", "nginx/s", "ratio", "sluice us", "nginx us",
        "ratio", "s.wrk us", "n.wrk us", "ratio"))
    for key, r in rows.items():
        print("%-15s %9.0f %9.0f %6.3f %9.1f %9.1f %6.3f %9.1f %9.1f %6.3f"
              % (key, r["sluice"]["rps"], r["nginx"]["rps"], r["rps_ratio"],
                 r["sluice"]["cpu_us_per_req"], r["nginx"]["cpu_us_per_req"],
                 r["cpu_ratio"], r["sluice"]["worker_cpu_us_per_req"],
                 r["nginx"]["worker_cpu_us_per_req"],
                 r["worker_cpu_ratio"]))
    sha, dirty = git_sha()
    result = {"tool": "bench/tls_bench.py",
              "sha": sha + ("-dirty" if dirty else ""),
              "date": datetime.datetime.utcnow().isoformat() + "Z",
              "key": args.key, "seconds": args.seconds,
              "concurrency": 10, "body_bytes": BODY_SIZE,
              "cpus": "proxy on CPU %s, wrk and mockllm on CPU %s" % (
                  PROXY_CPU, LOAD_CPU),
              "summary": rows, "runs": out}
    if not args.no_save:
        path = os.path.join(TOP, "bench", "results", "tls-%s-%s.json" % (
            datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ"),
            result["sha"]))
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        log("wrote " + os.path.relpath(path, TOP))
    bad = [k for k, r in rows.items()
           if r["sluice"]["errors"] or r["nginx"]["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
