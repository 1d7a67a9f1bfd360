#!/usr/bin/python3
"""callgrind_ab.py - instructions per request of one sluiced worker, for
one or more builds, under valgrind --tool=callgrind.

    bench/callgrind_ab.py [-r REPEAT] [-w NAME,...] BUILD [BUILD ...]

Time on a shared 2-core machine moves by tens of percent from run to run;
instruction counts do not, so an A/B of two builds of the request path is
made here.  For each build and workload, sluiced runs with one worker
under callgrind (children traced) in front of the build's mockllm, and a
keep-alive client sends the requests one after another; the worker's
instructions (the busiest process's callgrind total) minus those of a run
that served no request, divided by the requests, is the figure.  The
workloads: a 1 KB chat with a key, a 100 KB chat, a 1 KB stream of 20
events, a request refused for its key, and (-w to pick them) answers of
1 KB and 100 KB, plain and gzip-compressed by mockllm (x-mock-gzip), for
the cost of decoding a copy for the usage reader; and format translation
next to passthrough (-w xlate_*, and the passthrough cells they compare
with): an OpenAI chat for a claude-* model (an Anthropic upstream) and an
Anthropic Messages request for a gpt-* model, 1 KB and 100 KB, streamed
and not.  Everything talks to 127.0.0.1; every run is bounded.
"""

import glob
import hashlib
import http.client
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

HOST = "127.0.0.1"
SECRET = "sk-sluice-bench-0123456789abcdef"
GZIP = {"x-mock-gzip": "1", "Accept-Encoding": "gzip"}
# the format a workload's client speaks, and the model it asks for: the
# config routes claude-* to an Anthropic upstream, the rest to an OpenAI one
CHAT = ("/v1/chat/completions", "gpt-4o-mini")
CHAT_XL = ("/v1/chat/completions", "claude-sonnet-4-5")
MSGS = ("/v1/messages", "claude-sonnet-4-5")
MSGS_XL = ("/v1/messages", "gpt-4o-mini")
WORKLOADS = [
    # name, requests, body size, stream, key, headers[, (path, model)]
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
    # translation, next to the passthrough of the same client format
    ("stream_100k", 100, 100 * 1024, True, SECRET, {}),
    ("xlate_1k", 400, 1024, False, SECRET, {}, CHAT_XL),
    ("xlate_100k", 100, 100 * 1024, False, SECRET, {}, CHAT_XL),
    ("xlate_stream_1k", 200, 1024, True, SECRET, {}, CHAT_XL),
    ("xlate_stream_100k", 100, 100 * 1024, True, SECRET, {}, CHAT_XL),
    ("messages_1k", 400, 1024, False, SECRET, {}, MSGS),
    ("messages_100k", 100, 100 * 1024, False, SECRET, {}, MSGS),
    ("messages_stream_1k", 200, 1024, True, SECRET, {}, MSGS),
    ("messages_stream_100k", 100, 100 * 1024, True, SECRET, {}, MSGS),
    ("xlate_an_1k", 400, 1024, False, SECRET, {}, MSGS_XL),
    ("xlate_an_100k", 100, 100 * 1024, False, SECRET, {}, MSGS_XL),
    ("xlate_an_stream_1k", 200, 1024, True, SECRET, {}, MSGS_XL),
    ("xlate_an_stream_100k", 100, 100 * 1024, True, SECRET, {}, MSGS_XL),
]
DEFAULT = ["chat_1k", "chat_100k", "stream_1k", "refused_401"]


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


def body_of(size, stream, model="gpt-4o-mini", anthropic=False):
    doc = {"model": model, "stream": stream,
           "messages": [{"role": "user", "content": ""}]}
    if anthropic:
        doc["max_tokens"] = 256
    doc["messages"][0]["content"] = "x" * max(
        0, size - len(json.dumps(doc)))
    return json.dumps(doc).encode()


def drive(port, n, size, stream, key, extra, api=CHAT):
    path, model = api
    body = body_of(size, stream, model, path == "/v1/messages")
    hdrs = {"Content-Type": "application/json",
            "Authorization": "Bearer " + key,
            "x-mock-chunks": "20"}
    hdrs.update(extra)
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    for _ in range(n):
        conn.request("POST", path, body, hdrs)
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


def run(build, n, size, stream, key, extra=None, api=CHAT):
    tmp = tempfile.mkdtemp(prefix="sluice-cg-")
    try:
        mport, sport = free_port(), free_port()
        mock = subprocess.Popen([os.path.join(build, "mockllm"), "-l",
                                 "%s:%d" % (HOST, mport), "--quiet"],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        keys = os.path.join(tmp, "keys.conf")
        with open(keys, "w") as f:
            f.write("key bench {\n\thash sha256:%s;\n}\n" %
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
                "\tprotocol openai;", "}",
                "upstream mockan {", "\turl http://%s:%d;" % (HOST, mport),
                "\tprotocol anthropic;", "}",
                "route claude-* mockan;", "route * mock;",
                "price * input 0.15 output 0.60;"]) + "\n")
        cg = os.path.join(tmp, "cg")
        os.makedirs(cg)
        sl = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes",
             "--callgrind-out-file=%s/cg.%%p" % cg,
             os.path.join(build, "sluiced"), "-f", "-c", conf],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(mport, mock)
            wait_port(sport, sl)
            if n > 0:
                drive(sport, n, size, stream, key, extra or {}, api)
        finally:
            sl.send_signal(signal.SIGTERM)
            try:
                sl.wait(timeout=120)
            except subprocess.TimeoutExpired:
                sl.kill()
                sl.wait()
            mock.terminate()
            mock.wait(timeout=10)
        return worker_ir(cg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def label(build):
    """The build's directory and its parent: "wt-old/build"."""
    b = os.path.abspath(build)
    return os.path.basename(os.path.dirname(b)) + "/" + os.path.basename(b)


def main():
    args = sys.argv[1:]
    repeat = 3
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
    if shutil.which("valgrind") is None:
        sys.exit("callgrind_ab: valgrind not found (apt-get install "
                 "valgrind)")
    res = {}
    # the builds take turns, and each figure is the least of REPEAT runs:
    # how often the loop wakes for one request varies with timing, and
    # the fewest wake-ups is the request's own cost
    for _ in range(repeat):
        for b in builds:
            base = run(b, 0, 0, False, SECRET)
            for name, n, size, stream, key, extra, *api in work:
                v = (run(b, n, size, stream, key, extra, *api) - base) / n
                res[(b, name)] = min(res.get((b, name), v), v)
    print("%-15s" % "workload" + "".join("%20s" % label(b) for b in builds)
          + ("%10s" % "ratio" if len(builds) == 2 else ""))
    for name, *_ in work:
        row = [res[(b, name)] for b in builds]
        line = "%-15s" % name + "".join("%20.0f" % v for v in row)
        if len(builds) == 2 and row[0] > 0:
            line += "%10.3f" % (row[1] / row[0])
        print(line)
    print("(instructions per request in the worker, startup subtracted; "
          "least of %d runs)" % repeat)


if __name__ == "__main__":
    main()
