"""The benchmark harness still runs end to end (bench/run.py --smoke: the
QUICK code path with tiny counts against direct, sluice and nginx), so
`make bench` is not found broken only when someone needs a figure.  It
asserts the harness's own checks pass, not any timing."""

import os
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT


def test_bench_smoke_runs_all_three_targets():
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(
                "/usr/sbin/" + tool):
            pytest.fail("%s is not installed (make deps installs it)" % tool)
    streamload = os.path.join(BUILD, "streamload")
    if not os.path.exists(streamload):
        subprocess.run(["make", "-C", ROOT, "B=" + os.path.relpath(BUILD, ROOT),
                        os.path.relpath(streamload, ROOT)], check=True,
                       capture_output=True)
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench",
                                                         "run.py"),
                        "--smoke", "--build", BUILD],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for target in ("direct", "sluice", "nginx"):
        assert target in p.stdout, p.stdout[-2000:]
