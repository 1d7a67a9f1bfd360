"""The performance guard (bench/perf_guard.py, make perf-guard) can be
trusted: its counts repeat, so a failure means the code, and its
comparison fails on what it must fail on (a kind 5 % dearer, a baseline
from another toolchain or workload) and passes the rest, naming kinds
that got cheaper."""

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import perf_guard as pg	# noqa: E402

# make check SAN=1: an ASan build does not run under valgrind (the
# Makefile skips make perf-guard then too)
pytestmark = pytest.mark.skipif(
    os.path.basename(os.path.normpath(BUILD)) == "san",
    reason="ASan builds do not run under valgrind")

AGREE = 0.005
# Fewer requests than the guard's 100 a kind, for time; eight runs at 50
# a kind agreed within 0.05 %.
COUNTS = 50


def guard_counts():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench",
                                                     "perf_guard.py"),
                        "--build", BUILD, "--counts", str(COUNTS)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_two_runs_count_every_kind_within_half_a_percent():
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is not installed (make deps installs it)")
    a, b = guard_counts(), guard_counts()
    assert set(a) == {name for name, _, _ in pg.KINDS}
    for kind in a:
        assert a[kind] > 10000, (kind, a[kind])	# the request was served
        assert abs(a[kind] - b[kind]) <= AGREE * min(a[kind], b[kind]), \
            (kind, a[kind], b[kind])


def baseline():
    env = pg.environment()
    digest = pg.workload_digest(pg.KINDS)
    doc = {"environment": env, "workload": digest,
           "kinds": {n: {"requests": c, "instructions": 100000}
                     for n, c, _ in pg.KINDS}}
    return doc, env, digest


def now(**changed):
    figures = {n: 100000 for n, _, _ in pg.KINDS}
    figures.update(changed)
    return figures


def test_compare_passes_within_five_percent_either_way():
    doc, env, digest = baseline()
    problems, cheaper = pg.compare(doc, env, digest,
                                   now(chat_1k=104999, chat_100k=95001))
    assert problems == [] and cheaper == []


def test_compare_fails_a_kind_more_than_five_percent_dearer():
    doc, env, digest = baseline()
    problems, _ = pg.compare(doc, env, digest, now(stream_20=105001))
    assert len(problems) == 1 and problems[0].startswith("stream_20:")
    assert "+5.0 %" in problems[0]


def test_compare_names_cheaper_kinds_and_still_passes():
    doc, env, digest = baseline()
    problems, cheaper = pg.compare(doc, env, digest, now(gzip_answer=90000))
    assert problems == []
    assert len(cheaper) == 1 and cheaper[0].startswith("gzip_answer:")


def test_compare_refuses_a_baseline_of_another_valgrind_or_flags():
    doc, env, digest = baseline()
    for key, value in (("valgrind", "valgrind-3.22.0"),
                       ("cflags", "-O0 -g")):
        other = copy.deepcopy(doc)
        other["environment"][key] = value
        problems, _ = pg.compare(other, env, digest, now())
        assert any(p.startswith("baseline taken with " + key)
                   for p in problems), problems
        assert problems[-1].startswith("the baseline does not apply")


def test_compare_refuses_a_baseline_of_another_workload():
    doc, env, digest = baseline()
    problems, _ = pg.compare(doc, env, "0" * 16, now(chat_1k=50000))
    assert problems[0].startswith("the workload changed")
    assert not any(p.startswith("chat_1k") for p in problems)


def test_compare_fails_a_kind_missing_from_the_baseline():
    doc, env, digest = baseline()
    del doc["kinds"]["refused_key"]
    problems, _ = pg.compare(doc, env, digest, now())
    assert problems == ["refused_key: no baseline"]


def test_the_committed_baseline_covers_every_kind():
    with open(pg.BASELINE) as f:
        doc = json.load(f)
    assert doc["workload"] == pg.workload_digest(pg.KINDS)
    assert set(doc["kinds"]) == {n for n, _, _ in pg.KINDS}
