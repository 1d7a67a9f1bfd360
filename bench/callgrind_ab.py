#!/usr/bin/python3
"""callgrind_ab.py - instructions (or system calls, or CPU time) per
request of one sluiced worker, for one or more builds.

    bench/callgrind_ab.py [-r REPEAT] [-w NAME,...] [-s | -t] BUILD ...

Time on a shared 2-core machine moves by tens of percent from run to run;
instruction counts do not, so an A/B of two builds of the request path is
made here.  For each build, bench/callgrind_run.py runs sluiced with one
worker under callgrind in front of the build's mockllm and sends each
workload in a phase of its own after a warm-up; a figure is the phase's
instructions less those of an empty phase, divided by its requests.
With -s, sluiced runs without valgrind and `strace -c -f` on the worker
counts its system calls per request instead (all, then each kind made at
least once in 20 requests); with -t, the worker's CPU time per request
from /proc/PID/schedstat (noisy on a shared machine: a check that
instructions saved are time saved).  Both count each phase's requests
only, after WARM requests of each workload: the first ones of a process
make calls no later request makes (the upstream connection, malloc's
arena growing).
The workloads: a 1 KB chat with a key, a 100 KB chat, a 1 KB stream of
20 events, a request refused for its key, and (-w to pick them) answers
of 1 KB and 100 KB, plain and gzip-compressed by mockllm (x-mock-gzip),
for the cost of decoding a copy for the usage reader.  make perf-guard
measures a fixed set of these against a committed baseline.
"""

import os
import select
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import callgrind_run as cg	# noqa: E402

GZIP = {"x-mock-gzip": "1", "Accept-Encoding": "gzip"}
# the format a workload's client speaks, and the model it asks for: the
# config routes claude-* to an Anthropic upstream, the rest to an OpenAI one
CHAT = ("/v1/chat/completions", "gpt-4o-mini")
CHAT_XL = ("/v1/chat/completions", "claude-sonnet-4-5")
MSGS = ("/v1/messages", "claude-sonnet-4-5")
MSGS_XL = ("/v1/messages", "gpt-4o-mini")
WORKLOADS = [
    ("chat_1k", 400, cg.Request(1024)),
    ("chat_100k", 100, cg.Request(100 * 1024)),
    ("stream_1k", 200, cg.Request(1024, stream=True)),
    ("refused_401", 400, cg.Request(1024, key="sk-wrong", status=401)),
    # answers of ~1 KB and ~100 KB (mockllm: x-mock-chunks words)
    ("answer_1k", 400, cg.Request(200, headers={"x-mock-chunks": "110"})),
    ("answer_1k_gz", 400,
     cg.Request(200, headers=dict(GZIP, **{"x-mock-chunks": "110"}))),
    ("answer_100k", 100,
     cg.Request(200, headers={"x-mock-chunks": "16700"})),
    ("answer_100k_gz", 100,
     cg.Request(200, headers=dict(GZIP, **{"x-mock-chunks": "16700"}))),
]
DEFAULT = ["chat_1k", "chat_100k", "stream_1k", "refused_401"]
WARM = 20               # -s, -t: requests of each workload first


class Strace:
    """strace -c -f on the worker from now; stop(): {syscall: calls},
    "total" included."""
    TOOL = "strace"

    def __init__(self, wpid):
        fd, self.out = tempfile.mkstemp(prefix="sluice-strace-", dir="/tmp")
        os.close(fd)
        self.proc = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(wpid), "-o", self.out],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # strace says "attached" on stderr before it counts anything
        ready, _, _ = select.select([self.proc.stderr], [], [], 10.0)
        if not ready or b"attached" not in self.proc.stderr.readline():
            self.proc.kill()
            self.proc.wait()
            raise cg.Failed("strace did not attach to %d" % wpid)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        counts = {}
        with open(self.out) as f:
            for line in f:
                cols = line.split()
                # % time, seconds, usecs/call, calls, [errors,] syscall
                if len(cols) >= 5 and cols[3].isdigit() and \
                        not cols[0].startswith("-"):
                    counts[cols[-1]] = int(cols[3])
        os.unlink(self.out)
        return counts


class Cpu:
    """The worker's CPU time from now; stop(): {"total": ns}."""
    TOOL = None

    def __init__(self, wpid):
        self.path = "/proc/%d/schedstat" % wpid
        self.t0 = self.ns()

    def ns(self):
        with open(self.path) as f:
            return int(f.read().split()[0])

    def stop(self):
        return {"total": self.ns() - self.t0}


def traced(build, work, tracer):
    """What TRACER saw of each workload, per request: {name: {k: v}}."""
    warm = [req for _, _, req in work for _ in range(WARM)]
    got = cg.run(build, [[(n, req)] for _, n, req in work], warm, tracer)
    return {name: {k: x / n for k, x in c.items()}
            for (name, n, _), c in zip(work, got)}


def table(builds, rows, note):
    print("%-15s" % "workload" + "".join("%20s" % label(b) for b in builds)
          + ("%10s" % "ratio" if len(builds) == 2 else ""))
    for name, row, fmt in rows:
        line = "%-15s" % name + "".join(fmt % v for v in row)
        if len(builds) == 2 and row[0] > 0:
            line += "%10.3f" % (row[1] / row[0])
        print(line)
    print(note)


def label(build):
    """The build's directory and its parent: "wt-old/build"."""
    b = os.path.abspath(build)
    return os.path.basename(os.path.dirname(b)) + "/" + os.path.basename(b)


def main():
    args = sys.argv[1:]
    repeat = 1
    names = DEFAULT
    tracer = None
    while args and args[0] in ("-r", "-w", "-s", "-t"):
        if args[0] in ("-s", "-t"):
            tracer = Strace if args[0] == "-s" else Cpu
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
    res = {}
    # the builds take turns; each figure is the least of REPEAT runs
    # (instructions agree within 0.05 %: one is enough; system calls
    # and CPU time vary with timing, and the least is the request's own)
    try:
        for _ in range(repeat):
            for b in builds:
                if tracer is None:
                    for name, v in cg.measure(b, work).items():
                        res[(b, name)] = min(res.get((b, name), v), v)
                    continue
                for name, v in traced(b, work, tracer).items():
                    if (b, name) not in res or \
                            v["total"] < res[(b, name)]["total"]:
                        res[(b, name)] = v
    except cg.Failed as e:
        sys.exit("callgrind_ab: %s" % e)
    if tracer is None:
        table(builds, [(name, [res[(b, name)] for b in builds], "%20.0f")
                       for name, *_ in work],
              "(instructions per request in the worker, an empty phase "
              "subtracted; least of %d runs)" % repeat)
        return
    if tracer is Cpu:
        table(builds, [(name, [res[(b, name)]["total"] / 1000 for b in
                               builds], "%20.1f") for name, *_ in work],
              "(CPU us per request in the worker, schedstat, after %d "
              "of each; least of %d runs)" % (WARM, repeat))
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
          "-f after %d of each; least total of %d runs)" % (WARM, repeat))


if __name__ == "__main__":
    main()
