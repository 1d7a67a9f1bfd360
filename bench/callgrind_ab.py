#!/usr/bin/python3
"""callgrind_ab.py - instructions per request of one sluiced worker, for
one or more builds, under valgrind --tool=callgrind.

    bench/callgrind_ab.py [-r REPEAT] [-w NAME,...] BUILD [BUILD ...]

Time on a shared 2-core machine moves by tens of percent from run to run;
instruction counts do not, so an A/B of two builds of the request path is
made here.  For each build, bench/callgrind_run.py runs sluiced with one
worker under callgrind in front of the build's mockllm and sends each
workload in a phase of its own after a warm-up; a figure is the phase's
instructions less those of an empty phase, divided by its requests.
The workloads: a 1 KB chat with a key, a 100 KB chat, a 1 KB stream of
20 events, a request refused for its key, and (-w to pick them) answers
of 1 KB and 100 KB, plain and gzip-compressed by mockllm (x-mock-gzip),
for the cost of decoding a copy for the usage reader.  make perf-guard
measures a fixed set of these against a committed baseline.
"""

import os
import sys

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


def label(build):
    """The build's directory and its parent: "wt-old/build"."""
    b = os.path.abspath(build)
    return os.path.basename(os.path.dirname(b)) + "/" + os.path.basename(b)


def main():
    args = sys.argv[1:]
    repeat = 1
    names = DEFAULT
    while len(args) >= 2 and args[0] in ("-r", "-w"):
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
    # (runs agree within 0.05 %: one is enough)
    try:
        for _ in range(repeat):
            for b in builds:
                for name, v in cg.measure(b, work).items():
                    res[(b, name)] = min(res.get((b, name), v), v)
    except cg.Failed as e:
        sys.exit("callgrind_ab: %s" % e)
    print("%-15s" % "workload" + "".join("%20s" % label(b) for b in builds)
          + ("%10s" % "ratio" if len(builds) == 2 else ""))
    for name, *_ in work:
        row = [res[(b, name)] for b in builds]
        line = "%-15s" % name + "".join("%20.0f" % v for v in row)
        if len(builds) == 2 and row[0] > 0:
            line += "%10.3f" % (row[1] / row[0])
        print(line)
    print("(instructions per request in the worker, an empty phase "
          "subtracted; least of %d runs)" % repeat)


if __name__ == "__main__":
    main()
