"""The benchmark harness still runs end to end (bench/run.py --smoke: the
QUICK code path with tiny counts against direct, sluice and nginx), so
`make bench` is not found broken only when someone needs a figure.  It
asserts the harness's own checks pass, not any timing."""

import os
import re
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


def test_tls_bench_smoke_runs_sluice_and_nginx():
    """bench/tls_bench.py --smoke: every cell once, 1 s each; the full
    handshake cells must not resume a single session."""
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench",
                                                         "tls_bench.py"),
                        "--smoke", "--build", BUILD],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for cell in ("keepalive_tls", "keepalive_plain", "handshake_tls"):
        assert cell in p.stdout, p.stdout
    lines = [ln for ln in p.stderr.splitlines()
             if "handshake_tls" in ln and "sluice" in ln]
    assert lines, p.stderr
    for ln in lines:
        full, resumed = re.search(r"handshakes (\d+) full (\d+) resumed",
                                  ln).groups()
        assert int(full) > 0 and int(resumed) == 0, ln
