#!/usr/bin/python3
"""perf_guard.py - the request path's cost in instructions, against the
baseline committed in bench/perf-guard.json (make perf-guard, part of
make check; make perf-guard-update rewrites the baseline).

    bench/perf_guard.py [--update] [--build DIR] [--baseline FILE]
                        [--counts N]

Time on a shared 2-core machine moves by tens of percent between runs;
the instructions one worker spends on a fixed workload under callgrind
do not (two runs agree within 0.05 %, see bench/callgrind_run.py for
why), so they can fail a build.  Each kind of request is sent COUNT
times and its instructions per request printed; the guard fails when a
kind costs more than TOLERANCE over the baseline, and names the kinds
that got cheaper by more than that, so that the baseline is lowered on
purpose and not left loose.

Counts depend on the binary and on everything that runs with it, so the
baseline records what it was taken with (valgrind, compiler, flags, the
libraries on the request path, the CPU) and the workload's digest.  When
any of them differs the comparison would mean nothing: the guard fails
and says what differs, because skipping would let a regression through
on exactly the build CI runs.  The remedy is make perf-guard-update on
a tree without your change, committed alone with the reason.

--update measures twice, refuses to write a baseline from two runs that
disagree by more than 0.5 %, and prints old against new.  --counts N
overrides every kind's count (the determinism test; a baseline is never
written or compared then).
"""

import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import callgrind_run as cg	# noqa: E402

TOLERANCE = 0.05	# fail above baseline × 1.05; name those below × 0.95
AGREE = 0.005		# two runs of --update must agree this closely
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(TOP, "bench", "perf-guard.json")

GZIP_1K = {"x-mock-gzip": "1", "Accept-Encoding": "gzip",
           "x-mock-chunks": "110"}	# a ~1 KB answer, gzipped by mockllm


def messages(chars, stream=False):
    """An Anthropic client's request of CHARS prompt characters."""
    doc = {"model": "gpt-4o-mini", "max_tokens": 256,
           "messages": [{"role": "user", "content": "x" * chars}]}
    if stream:
        doc["stream"] = True
    return cg.Request(path="/v1/messages", doc=doc,
                      headers={"anthropic-version": "2023-06-01"})


CACHE_CONF = "cache 16m;"

# name, count, request.  100 of each: seven runs at this count agreed
# within 0.03 %, and make perf-guard takes 7 to 20 s with the machine's
# load average at 10 (bench/RESULTS.md, issue 22).
KINDS = [
    ("chat_1k", 100, cg.Request(1024)),
    ("chat_100k", 100, cg.Request(100 * 1024)),
    ("stream_20", 100, cg.Request(1024, stream=True)),
    ("refused_key", 100, cg.Request(1024, key="sk-wrong", status=401)),
    ("gzip_answer", 100, cg.Request(200, headers=GZIP_1K)),
    # an Anthropic Messages request for a model on the OpenAI mock: the
    # translate stage both ways (issue 16), its answer of 20 chunks; the
    # same streamed (20 chunks become Anthropic's event sequence) and
    # with a 100 KB prompt, the counterparts of stream_20 and chat_100k
    ("translated_1k", 100, messages(900)),
    ("translated_stream", 100, messages(900, stream=True)),
    ("translated_100k", 100, messages(100 * 1024)),
    # the answer cache (issue 20), in a run with "cache 16m;": chat_1k's
    # request answered from the arena (the warm-up stored it), and asked
    # upstream and stored anew each time (Cache-Control: no-cache): its
    # cost over chat_1k is what a miss adds
    ("cache_hit_1k", 100, cg.Request(1024, conf=CACHE_CONF)),
    ("cache_miss_1k", 100, cg.Request(
        1024, headers={"Cache-Control": "no-cache"}, conf=CACHE_CONF)),
]

# the Debian packages whose code runs on the request path
LIB_PKGS = ["libc6", "libevent-2.1-7", "libssl3", "zlib1g", "libbrotli1",
            "libzstd1"]
# CPU features that decide glibc's string functions (and so the counts)
CPU_FLAGS = ["sse4_2", "avx", "avx2", "bmi2", "erms", "fsrm", "avx512f",
             "avx512bw"]


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return out.splitlines()[0].strip() if out.strip() else "none"


def cpu():
    model, flags = "unknown", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.strip() == "model name" and model == "unknown":
                model = v.strip()
            elif k.strip() == "flags" and not flags:
                flags = set(v.split())
    return "%s [%s]" % (model, " ".join(x for x in CPU_FLAGS if x in flags))


def environment():
    """What the counts depend on besides the source: compared exactly.
    Warning options are left out of the flags, since they change no
    code."""
    flags = os.environ.get("SLUICE_CFLAGS", "unknown (not run by make)")
    flags = " ".join(w for w in flags.split() if not w.startswith("-W"))
    libs = {}
    for p in LIB_PKGS:
        v = first_line(["dpkg-query", "-W", "-f=${Version}\n", p])
        libs[p] = v
    return {
        "valgrind": first_line(["valgrind", "--version"]),
        "cc": first_line([os.environ.get("CC", "cc"), "--version"]),
        "cflags": flags,
        "ldflags": os.environ.get("SLUICE_LDFLAGS", "").strip(),
        "libraries": libs,
        "cpu": cpu(),
    }


def workload_digest(kinds):
    h = hashlib.sha256()
    h.update(cg.CREATED.encode())
    for name, n, req in kinds:
        h.update(("%s %d %s\n" % (name, n, req.digest())).encode())
    return h.hexdigest()[:16]


def measure(build, kinds):
    figures = cg.measure(build, kinds)
    return {name: round(figures[name]) for name, _, _ in kinds}


def table(rows):
    """Rows of (kind, baseline or None, now)."""
    print("%-14s %12s %12s %9s" % ("kind", "baseline", "now", "change"))
    for name, base, now in rows:
        if base is None:
            print("%-14s %12s %12d" % (name, "-", now))
        else:
            print("%-14s %12d %12d %+8.1f%%" % (
                name, base, now, 100.0 * (now - base) / base))
    print("(instructions per request in the worker, callgrind; "
          "tolerance %d %%)" % round(TOLERANCE * 100))


def compare(baseline, env, digest, now):
    """Problems (a list of lines; empty: it passes) and the kinds that
    got cheaper beyond the tolerance."""
    problems, cheaper = [], []
    benv = baseline.get("environment", {})
    for k in sorted(set(benv) | set(env)):
        if benv.get(k) != env.get(k):
            problems.append("baseline taken with %s %s; this build: %s" % (
                k, json.dumps(benv.get(k)), json.dumps(env.get(k))))
    if baseline.get("workload") != digest:
        problems.append("the workload changed (digest %s, baseline %s)"
                        % (digest, baseline.get("workload")))
    if problems:
        problems.append("the baseline does not apply to this build, so "
                        "nothing was compared")
        return problems, cheaper
    base = baseline.get("kinds", {})
    for name in now:
        if name not in base:
            problems.append("%s: no baseline" % name)
            continue
        b = base[name]["instructions"]
        if now[name] > b * (1 + TOLERANCE):
            problems.append("%s: %d instructions per request, %+.1f %% "
                            "over the baseline %d" % (
                                name, now[name],
                                100.0 * (now[name] - b) / b, b))
        elif now[name] < b * (1 - TOLERANCE):
            cheaper.append("%s: %d, %.1f %% under the baseline %d" % (
                name, now[name], 100.0 * (b - now[name]) / b, b))
    for name in base:
        if name not in now:
            problems.append("%s: in the baseline, not measured" % name)
    return problems, cheaper


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def update(build, path, kinds):
    env, digest = environment(), workload_digest(kinds)
    a = measure(build, kinds)
    b = measure(build, kinds)
    bad = [n for n in a if abs(a[n] - b[n]) > AGREE * min(a[n], b[n])]
    if bad:
        for n in bad:
            print("%s: %d then %d" % (n, a[n], b[n]))
        sys.exit("perf-guard-update: two runs disagree by more than "
                 "%.1f %%: no baseline written (bench/callgrind_run.py "
                 "lists what has to stay fixed between runs)"
                 % (AGREE * 100))
    old = load(path).get("kinds", {})
    table([(n, old.get(n, {}).get("instructions"), min(a[n], b[n]))
           for n in a])
    doc = {
        "about": "instructions per request of one sluiced worker under "
                 "callgrind, bench/perf_guard.py; rewritten by make "
                 "perf-guard-update, whose commit says why",
        "taken_at": first_line(["git", "-C", TOP, "describe", "--always",
                                "--dirty"]),
        "tolerance_pct": round(TOLERANCE * 100),
        "environment": env,
        "workload": digest,
        "kinds": {n: {"requests": c, "instructions": min(a[n], b[n])}
                  for n, c, _ in kinds},
    }
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("perf-guard-update: wrote %s (taken at %s)" % (
        os.path.relpath(path), doc["taken_at"]))
    if doc["taken_at"].endswith("-dirty"):
        print("perf-guard-update: the tree has uncommitted changes, and "
              "the baseline counts them")


def main():
    args = sys.argv[1:]
    build, path, counts, do_update = os.path.join(TOP, "build"), \
        BASELINE, None, False
    while args:
        a = args.pop(0)
        if a == "--update":
            do_update = True
        elif a in ("--build", "--baseline", "--counts") and args:
            v = args.pop(0)
            if a == "--build":
                build = v
            elif a == "--baseline":
                path = v
            else:
                counts = int(v)
        else:
            sys.exit(__doc__)
    try:
        if counts is not None:
            kinds = [(n, counts, r) for n, _, r in KINDS]
            now = measure(build, kinds)
            print(json.dumps(now))
            return
        if do_update:
            update(build, path, KINDS)
            return
        baseline = load(path)
        if not baseline:
            sys.exit("perf-guard: no baseline %s: make perf-guard-update"
                     % path)
        now = measure(build, KINDS)
    except cg.Failed as e:
        sys.exit("perf-guard: the workload did not run: %s" % e)
    problems, cheaper = compare(baseline, environment(),
                                workload_digest(KINDS), now)
    applies = not problems or not problems[-1].startswith(
        "the baseline does not apply")
    base = baseline.get("kinds", {}) if applies else {}
    table([(n, base.get(n, {}).get("instructions"), now[n]) for n in now])
    if cheaper:
        print("cheaper by more than %d %%; lower the baseline on purpose "
              "(make perf-guard-update, a commit saying why):"
              % round(TOLERANCE * 100))
        for line in cheaper:
            print("  " + line)
    if problems:
        for line in problems:
            print("perf-guard: " + line)
        sys.exit("perf-guard: FAILED.  A change that costs more on "
                 "purpose, or a new toolchain: run make perf-guard-update "
                 "(on a tree without your change when the toolchain "
                 "moved), and commit bench/perf-guard.json saying why.")
    print("perf-guard: ok (baseline taken at %s)"
          % baseline.get("taken_at", "?"))


if __name__ == "__main__":
    main()
