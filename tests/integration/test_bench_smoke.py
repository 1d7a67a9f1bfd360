"""The benchmark harness still runs end to end (bench/run.py --smoke: the
QUICK code path with tiny counts against direct, sluice, nginx and
haproxy), so `make bench` is not found broken only when someone needs a
figure.  It asserts the harness measured what it reports (every target
answered, CPU came from schedstat, PostgreSQL ran durable and got a row
per request, the spread cell read the per-worker counters), never a
timing."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT

PROXIES = ("sluice", "nginx", "haproxy")


def test_bench_smoke_measures_every_target(tmp_path):
    for tool in ("wrk", "nginx", "haproxy"):
        if shutil.which(tool) is None and not os.path.exists(
                "/usr/sbin/" + tool):
            pytest.fail("%s is not installed (make deps installs it)" % tool)
    streamload = os.path.join(BUILD, "streamload")
    if not os.path.exists(streamload):
        subprocess.run(["make", "-C", ROOT, "B=" + os.path.relpath(BUILD, ROOT),
                        os.path.relpath(streamload, ROOT)], check=True,
                       capture_output=True)
    out = tmp_path / "smoke.json"
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench",
                                                         "run.py"),
                        "--smoke", "--build", BUILD, "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(out.read_text())

    assert r["method"]["cpu_source"] == "schedstat"
    assert r["postgresql"]["fsync"] == "on"
    assert r["postgresql"]["synchronous_commit"] == "on"
    assert r["auth_enforced"] is True
    modes = {c["mode"] for c in r["cells"]}
    assert modes == {"nonstream", "stream", "ttfb", "answer", "answer_gz"}
    for c in r["cells"]:
        t = c["targets"]
        where = "%s %s" % (c["mode"], c["size"])
        assert set(PROXIES) | {"direct"} <= set(t), where
        for name in ("direct",) + PROXIES:
            assert t[name]["served"] > 0, (where, name)
            assert t[name]["errors"] == 0 and t[name]["non2xx"] == 0, \
                (where, name, t[name])
        for name in PROXIES:
            assert t[name]["proxy_cpu_us_per_req"] > 0, (where, name)
        s = t["sluice"]
        assert 0 < s["workers_cpu_us_per_req"] <= s["proxy_cpu_us_per_req"]
        # metering on: the table got a row for every request it served
        # (and for those cut in flight when the load stopped), or the
        # harness counted the event as dropped by a full ring lane
        assert s["pg_rows"] + sum(s["ring_drops"].values()) >= \
            s["served"], (where, s)
        assert s["pg_cpu_us_per_row"] > 0, where
        assert sum(s["ring_pushes"].values()) >= s["served"], where
        if c["mode"] == "nonstream":
            assert "p999" in s["latency_us"], where
    gz = [c for c in r["cells"] if c["mode"] == "answer_gz"][0]
    plain = [c for c in r["cells"] if c["mode"] == "answer"][0]
    # mockllm compressed the answer: the client got far fewer bytes
    assert gz["targets"]["sluice"]["bytes_per_req"] * 10 < \
        plain["targets"]["sluice"]["bytes_per_req"]

    # the translation pair: the same Anthropic client's request served
    # both ways, every request answered, CPU counted for each
    (x,) = r["xlate"]
    assert (x["format"], x["size"], x["stream"]) == ("an", "1KB", False)
    for how in ("translated", "passthrough"):
        t = x["targets"][how]
        assert t["served"] > 0 and t["errors"] == 0 and t["non2xx"] == 0, \
            (how, t)
        assert t["proxy_cpu_us_per_req"] > 0, how
        assert t["pg_rows"] + sum(t["ring_drops"].values()) >= t["served"]
    assert "messages>openai" in p.stdout

    # the answer cache's cells: every kind of run answered, the hits from
    # the arena and the misses each a new entry
    cache = r["cache"]
    assert [c["concurrency"] for c in cache["cells"]] == [1, 10]
    for c in cache["cells"]:
        assert set(c["runs"]) == {"off", "off_key", "miss", "hit", "floor"}
        for name, runs in c["runs"].items():
            for run in runs:
                assert run["requests"] > 0 and run["errors"] == 0 and \
                    run["non2xx"] == 0, (c["concurrency"], name, run)
                assert run["workers_cpu_us_per_req"] > 0, name
    m = cache["metrics"]
    misses = sum(run["requests"] for c in cache["cells"]
                 for run in c["runs"]["miss"])
    hits = sum(run["requests"] for c in cache["cells"]
               for run in c["runs"]["hit"])
    # the warm-ups' and cached_answer's requests come on top; the misses
    # may evict the hits' entry, and then a hit run's first requests (at
    # most one per connection) store it again
    assert m["sluice_cache_stores_total"] >= misses
    nhit = sum(len(c["runs"]["hit"]) for c in cache["cells"])
    assert m["sluice_cache_hits_total"] >= hits - 10 * nhit > 0
    assert "nginx return 200" in p.stdout

    (spread,) = r["spread"]
    assert spread["workers"] == 4 and len(spread["shares"]) == 4
    assert sum(spread["pushes_by_lane"].values()) >= spread["requests"]
    assert abs(sum(spread["shares"]) - 1) < 0.01
    assert spread["max_over_fair"] >= 1.0
    assert "spread 4 workers" in p.stdout


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
