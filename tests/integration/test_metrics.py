"""Live telemetry: /metrics, /healthz, /status on admin_listen, and the
sluicectl commands that read them (status, reload, stop).

The exposition format is checked by promtool (from Debian's prometheus
package, which `make check` unpacks into build/tools without installing
it, since installing starts a Prometheus server) and by check_exposition()
below, a strict reading of the Prometheus text format 0.0.4.

Healthy, as /healthz means it: a worker of the current generation is
running, and the collector has gone round its loop within the last 5 s
and can make events durable (connected to PostgreSQL, or spooling).
"""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import (BUILD, ROOT, HOST, SLUICED, free_port, pid_alive, post,
                      read_stream, request, wait_for)

SLUICECTL = os.path.join(BUILD, "sluicectl")
SECRET = "sk-metrics-test-secret"
CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}
AUTH = {"Authorization": "Bearer " + SECRET}
HEARTBEAT_MAX_S = 5.0


# ---------------------------------------------------------------------------
# The exposition format, read strictly.
# ---------------------------------------------------------------------------

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$",
                    s):
        raise AssertionError("bad sample value %r" % s)
    return float(s)


def parse_labels(s, where):
    """'a="x",b="y"' -> dict; escapes \\\\, \\" and \\n only."""
    labels = {}
    i = 0
    while i < len(s):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", s[i:])
        assert m, "%s: bad label at %r" % (where, s[i:])
        name = m.group(1)
        i += m.end()
        val = []
        while True:
            assert i < len(s), "%s: unterminated label value" % where
            c = s[i]
            if c == "\\":
                assert i + 1 < len(s) and s[i + 1] in '\\"n', \
                    "%s: bad escape in label value" % where
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
                continue
            if c == '"':
                i += 1
                break
            assert c != "\n"
            val.append(c)
            i += 1
        assert name not in labels, "%s: label %s twice" % (where, name)
        labels[name] = "".join(val)
        if i < len(s):
            assert s[i] == ",", "%s: expected ',' at %r" % (where, s[i:])
            i += 1
    return labels


def family_of(sample, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and types.get(
                sample[:-len(suffix)]) == "histogram":
            return sample[:-len(suffix)]
    return sample


def check_exposition(text):
    """Validate TEXT; return {family: {"type", "samples": [(name, labels,
    value)]}}.  Raises AssertionError with the line at fault."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, types, helps, seen, order = {}, {}, set(), set(), []
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (n, line)
        assert line == line.strip() or line.startswith("#"), where
        assert line, "%s: empty line" % where
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                assert len(parts) >= 3 and NAME_RE.match(parts[2]), where
                name = parts[2]
                if parts[1] == "HELP":
                    assert name not in helps, "%s: second HELP" % where
                    helps.add(name)
                else:
                    assert name not in types, "%s: second TYPE" % where
                    assert name not in families, \
                        "%s: TYPE after samples" % where
                    assert len(parts) == 4 and parts[3] in TYPES, where
                    types[name] = parts[3]
                    if name in order:
                        raise AssertionError("%s: family split" % where)
                    order.append(name)
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$",
                     line)
        assert m, "%s: not a sample line" % where
        name, labels = m.group(1), parse_labels(m.group(3) or "", where)
        value = parse_value(m.group(4))
        fam = family_of(name, types)
        assert fam in types, "%s: sample before its TYPE" % where
        assert order[-1] == fam, "%s: family %s is not contiguous" % (
            where, fam)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "%s: duplicate series" % where
        seen.add(key)
        t = types[fam]
        if t == "counter":
            assert name.endswith("_total"), "%s: counter without _total" % where
            assert value >= 0 and not math.isnan(value), where
        if t == "histogram":
            assert name != fam, "%s: bare histogram sample" % where
            if name.endswith("_bucket"):
                assert "le" in labels, "%s: bucket without le" % where
                parse_value(labels["le"])
            else:
                assert "le" not in labels, where
        families.setdefault(fam, {"type": t, "samples": []})
        families[fam]["samples"].append((name, labels, value))
    for fam, info in families.items():
        if info["type"] != "histogram":
            continue
        groups = {}
        for name, labels, value in info["samples"]:
            rest = tuple(sorted((k, v) for k, v in labels.items()
                                if k != "le"))
            groups.setdefault(rest, {"b": [], "sum": None, "count": None})
            g = groups[rest]
            if name.endswith("_bucket"):
                g["b"].append((parse_value(labels["le"]), value))
            elif name.endswith("_sum"):
                g["sum"] = value
            else:
                g["count"] = value
        for rest, g in groups.items():
            les = [le for le, _ in g["b"]]
            assert les == sorted(les), "%s: le not increasing" % fam
            assert les and les[-1] == float("inf"), "%s: no +Inf" % fam
            counts = [c for _, c in g["b"]]
            assert counts == sorted(counts), "%s: buckets not cumulative" % fam
            assert g["count"] is not None and g["sum"] is not None, fam
            assert g["count"] == counts[-1], "%s: _count != +Inf" % fam
    return families


def promtool_check(body):
    """Prometheus's own linter on an exposition (skips without it)."""
    promtool = os.path.join(ROOT, "build", "tools", "usr", "bin",
                            "promtool")
    if not os.access(promtool, os.X_OK):
        promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool could not be had: make check unpacks it from "
                    "Debian's prometheus package into build/tools")
    r = subprocess.run([promtool, "check", "metrics"], input=body,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def value(families, fam, sample=None, **labels):
    """The value of one series (0 if absent)."""
    sample = sample or fam
    for name, l, v in families.get(fam, {"samples": []})["samples"]:
        if name == sample and all(l.get(k) == str(x)
                                  for k, x in labels.items()):
            return v
    return 0


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def admin(s):
    return s.admin_port


def start(sluice, mock, keys=None, workers=2, extra="", **kw):
    port = free_port()
    extra = "admin_listen %s:%d;\n%s" % (HOST, port, extra)
    if keys is not None:
        extra += "\nkeys_file %s;" % keys
    s = sluice(upstreams={"mock": mock.url}, extra=extra, workers=workers,
               **kw)
    s.admin_port = port
    wait_for(lambda: healthz(s)[0] == 200, 10, what="/healthz 200")
    return s


def metrics(s):
    st, hdrs, body = request(admin(s), "GET", "/metrics")
    assert st == 200, (st, body)
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    return check_exposition(body.decode())


def healthz(s):
    try:
        st, _, body = request(admin(s), "GET", "/healthz", timeout=3.0)
    except OSError as e:
        return 0, str(e)
    return st, json.loads(body)


def status(s):
    st, _, body = request(admin(s), "GET", "/status")
    assert st == 200, (st, body)
    return json.loads(body)


def keys_file(tmp_path):
    path = tmp_path / "keys.conf"
    path.write_text("key alice {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    path.chmod(0o600)
    return str(path)


def chat_ok(s, n, headers=None):
    for _ in range(n):
        st, _, body = post(s.port, "/v1/chat/completions", CHAT, headers)
        assert st == 200, (st, body)


def total_requests(s):
    return status(s)["totals"]["requests"]


def ctl(s, *args, timeout=40):
    return subprocess.run([SLUICECTL, "-c", s.conf_path] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def collector_pid(s):
    pids = [p for p, t in s.children() if "collector" in t]
    assert len(pids) == 1, s.children()
    return pids[0]


# ---------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------

def test_metrics_count_requests_by_endpoint_and_status_class(mock, sluice,
                                                              tmp_path):
    s = start(sluice, mock, keys=keys_file(tmp_path))
    chat_ok(s, 10, AUTH)
    for _ in range(2):
        st, _, _ = post(s.port, "/v1/nope", CHAT, AUTH)
        assert st == 404
    st, _, _ = post(s.port, "/v1/chat/completions", CHAT,
                    {"Authorization": "Bearer sk-wrong"})
    assert st == 401

    def settled():
        f = metrics(s)
        return f if value(f, "sluice_request_duration_seconds",
                          "sluice_request_duration_seconds_count") == 13 \
            else None

    f = wait_for(settled, 5, what="13 requests in /metrics")
    chat = "/v1/chat/completions"
    assert value(f, "sluice_requests_total", endpoint=chat, code="2xx") == 10
    assert value(f, "sluice_requests_total", endpoint=chat, code="4xx") == 1
    assert value(f, "sluice_requests_total", endpoint="other",
                 code="4xx") == 2
    assert sum(v for _, _, v in f["sluice_requests_total"]["samples"]) == 13
    assert value(f, "sluice_rejections_total", code="401") == 1
    assert value(f, "sluice_rejections_total", code="429") == 0
    assert value(f, "sluice_upstream_requests_total", upstream="mock") == 10
    assert value(f, "sluice_upstream_failures_total", upstream="mock") == 0
    opened = value(f, "sluice_upstream_connections_opened_total",
                   upstream="mock")
    reused = value(f, "sluice_upstream_connections_reused_total",
                   upstream="mock")
    assert opened >= 1 and opened + reused == 10, (opened, reused)
    assert value(f, "sluice_upstream_ttfb_seconds",
                 "sluice_upstream_ttfb_seconds_count") == 10
    assert value(f, "sluice_request_bytes_total") > 0
    assert value(f, "sluice_response_bytes_total") > 0
    pushes = sum(v for _, _, v in f["sluice_ring_pushes_total"]["samples"])
    assert pushes == 13
    assert value(f, "sluice_workers_alive") == 2
    assert value(f, "sluice_healthy") == 1
    # /status says the same
    st = status(s)
    assert st["totals"]["requests"] == 13
    assert st["totals"]["by_class"]["2xx"] == 10
    assert st["totals"]["by_class"]["4xx"] == 3
    assert st["totals"]["rejected"]["401"] == 1
    assert sum(w["requests"] for w in st["workers"]) == 13


def test_metrics_pass_the_exposition_format_check(mock, sluice):
    s = start(sluice, mock)
    chat_ok(s, 3)
    st, _, body = request(admin(s), "GET", "/metrics")
    assert st == 200
    families = check_exposition(body.decode())
    for fam in ("sluice_requests_total", "sluice_request_duration_seconds",
                "sluice_upstream_ttfb_seconds", "sluice_overhead_seconds",
                "sluice_ring_depth", "sluice_collector_rows_spooled_total",
                "sluice_reloads_total", "sluice_worker_restarts_total",
                "sluice_requests_unpriced_total",
                "sluice_metering_full_rejections_total"):
        assert fam in families, fam
    promtool_check(body)
    # the other paths and methods
    assert request(admin(s), "GET", "/nope")[0] == 404
    assert request(admin(s), "POST", "/metrics", body=b"x")[0] == 405


def test_the_checker_refuses_broken_expositions():
    ok = ("# HELP a_total x\n# TYPE a_total counter\na_total 1\n"
          "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
          "h_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n")
    check_exposition(ok)
    for bad in (ok[:-1],                                   # no final newline
                ok.replace("h_count 2", "h_count 3"),      # count != +Inf
                ok.replace("a_total 1", "a 1"),            # no TYPE
                ok.replace("le=\"1\"} 1", "le=\"1\"} 5"),  # not cumulative
                ok + "a_total 2\n",                        # not contiguous
                ok.replace("a_total 1", "a_total{x=\"\\q\"} 1")):
        with pytest.raises(AssertionError):
            check_exposition(bad)


def test_active_streams_gauge_counts_a_stream_while_it_runs(mock, sluice):
    import http.client
    s = start(sluice, mock)
    conn = http.client.HTTPConnection(HOST, s.port, timeout=15)
    try:
        conn.request("POST", "/v1/chat/completions",
                     body=json.dumps(dict(CHAT, stream=True)),
                     headers={"Content-Type": "application/json",
                              "x-mock-chunks": "6",
                              "x-mock-chunk-delay-ms": "300"})
        resp = conn.getresponse()
        assert resp.status == 200
        wait_for(lambda: value(metrics(s), "sluice_active_streams") == 1, 3,
                 what="one active stream")
        f = metrics(s)
        assert value(f, "sluice_client_connections") >= 1
        read_stream(resp)
    finally:
        conn.close()
    wait_for(lambda: value(metrics(s), "sluice_active_streams") == 0, 5,
             what="no active stream")
    wait_for(lambda: value(metrics(s), "sluice_client_connections") == 0, 5,
             what="no client connection")


# ---------------------------------------------------------------------------
# Counters survive a worker's death and a reload
# ---------------------------------------------------------------------------

def test_admin_request_under_way_survives_the_reload_that_stops_its_worker(
        mock, sluice):
    """A worker that stops (here, the old generation at a SIGHUP) first
    answers the admin requests it had accepted: a prober asking /status
    mid-reload got its connection dropped."""
    s = start(sluice, mock, workers=1)
    c = socket.create_connection((HOST, admin(s)), timeout=5)
    try:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # not all yet
        time.sleep(0.3)     # accepted by the only worker
        s.signal(signal.SIGHUP)
        time.sleep(0.5)     # that worker is stopping now
        c.sendall(b"\r\n")
        got = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
    finally:
        c.close()
    assert got.startswith(b"HTTP/1.1 "), got[:200]
    assert b'"status"' in got, got[:400]


def test_counters_keep_rising_across_kill_9_and_sighup(mock, sluice):
    s = start(sluice, mock)
    chat_ok(s, 6)
    wait_for(lambda: total_requests(s) == 6, 5, what="6 requests")
    before = {w["slot"]: w["requests"] for w in status(s)["workers"]}
    victim = s.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in s.worker_pids() and
             len(s.worker_pids()) == 2, 10, what="the worker respawned")
    st = status(s)
    assert st["master"]["worker_restarts"] == 1
    assert st["totals"]["requests"] == 6     # nothing lost
    for w in st["workers"]:                  # per slot too
        assert w["requests"] >= before.get(w["slot"], 0)
    chat_ok(s, 4)
    wait_for(lambda: total_requests(s) == 10, 5, what="10 requests")

    s.signal(signal.SIGHUP)
    wait_for(lambda: status(s)["master"]["generation"] == 2, 10,
             what="generation 2")
    assert total_requests(s) == 10
    chat_ok(s, 5)
    wait_for(lambda: total_requests(s) == 15, 5, what="15 requests")
    f = metrics(s)
    assert value(f, "sluice_reloads_total", result="ok") == 1
    assert value(f, "sluice_worker_restarts_total") == 1
    assert value(f, "sluice_requests_total", endpoint="/v1/chat/completions",
                 code="2xx") == 15
    assert value(f, "sluice_generation") == 2


# ---------------------------------------------------------------------------
# /healthz
# ---------------------------------------------------------------------------

def test_healthz_turns_503_when_the_collector_stalls_and_back(mock, sluice):
    s = start(sluice, mock)
    st, body = healthz(s)
    assert (st, body) == (200, {"status": "ok"})
    coll = collector_pid(s)
    os.kill(coll, signal.SIGSTOP)
    try:
        st, body = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(healthz(s)),
            HEARTBEAT_MAX_S + 5, interval=0.25, what="/healthz 503")
        assert body["status"] == "unhealthy"
        assert "collector" in body["reason"], body
        # traffic still flows: workers never wait for the collector
        chat_ok(s, 2)
    finally:
        os.kill(coll, signal.SIGCONT)
    wait_for(lambda: healthz(s)[0] == 200, 5, what="/healthz 200 again")


# ---------------------------------------------------------------------------
# admin_listen on a public address
# ---------------------------------------------------------------------------

def test_public_admin_listen_is_refused_without_admin_allow(mock, sluice):
    port = free_port()
    s = sluice(start=False, upstreams={"mock": mock.url},
               extra="admin_listen 0.0.0.0:%d;" % port)
    r = subprocess.run([SLUICED, "-t", "-c", s.conf_path],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r.stderr
    assert "not a loopback address" in r.stderr
    assert "admin_allow 0.0.0.0;" in r.stderr
    s2 = sluice(start=False, upstreams={"mock": mock.url},
                extra="admin_listen 0.0.0.0:%d;\nadmin_allow 0.0.0.0;" % port)
    r = subprocess.run([SLUICED, "-t", "-c", s2.conf_path],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    s3 = sluice(start=False, upstreams={"mock": mock.url},
                extra="admin_listen localhost:%d;" % port)
    r = subprocess.run([SLUICED, "-t", "-c", s3.conf_path],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------
# sluicectl status, reload, stop
# ---------------------------------------------------------------------------

def test_sluicectl_status_prints_a_table_with_the_totals(mock, sluice):
    s = start(sluice, mock)
    chat_ok(s, 7)
    wait_for(lambda: total_requests(s) == 7, 5, what="7 requests")
    r = ctl(s, "status", "-n", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("WORKER"))
    assert header.split()[:4] == ["WORKER", "PID", "REQUESTS", "REQ/S"]
    for col in ("P50ms", "P99ms", "STREAMS", "REUSE%", "RING", "LAG"):
        assert col in header
    total = next(ln for ln in lines if ln.startswith("total"))
    assert int(total.split()[2]) == 7, r.stdout
    rows = [ln for ln in lines if re.match(r"^\d+ ", ln)]
    assert len(rows) == 2, r.stdout
    assert sum(int(ln.split()[2]) for ln in rows) == 7
    assert "healthy" in lines[0]
    assert any(ln.startswith("collector pid") for ln in lines)
    # -w refreshes: two tables, bounded by -n
    r = ctl(s, "status", "-w", "1", "-n", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("WORKER ") == 2


def test_sluicectl_reload_reports_accepted_then_refused(mock, sluice):
    s = start(sluice, mock)
    r = ctl(s, "reload")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reload accepted" in r.stdout
    assert "generation 2" in r.stdout
    with open(s.conf_path) as f:
        good = f.read()
    with open(s.conf_path, "a") as f:
        f.write("no_such_directive 1;\n")
    r = ctl(s, "reload")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "reload refused" in r.stdout
    assert "no_such_directive" in r.stdout
    # still serving, on the old configuration
    chat_ok(s, 2)
    st = status(s)
    assert st["master"]["generation"] == 2
    assert st["master"]["reloads_ok"] == 1
    assert st["master"]["reloads_failed"] == 1
    assert st["master"]["last_reload"]["ok"] is False
    with open(s.conf_path, "w") as f:
        f.write(good)
    r = ctl(s, "reload")
    assert r.returncode == 0 and "generation 3" in r.stdout, r.stdout


def test_sluicectl_stop_stops_the_daemon(mock, sluice):
    s = start(sluice, mock)
    chat_ok(s, 1)
    r = ctl(s, "stop")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopped" in r.stdout
    assert s.proc.wait(timeout=5) == 0
    assert not os.path.exists(s.pid_file)
    r = ctl(s, "stop")
    assert r.returncode == 1
