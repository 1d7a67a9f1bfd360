"""Process life: SIGHUP reload, SIGTERM graceful stop, worker respawn."""

import errno
import http.client
import json
import os
import re
import signal
import socket
import threading
import time

from conftest import HOST, pid_alive, post, read_stream, wait_for

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}


class RequestLoop:
    """N threads, each sending requests on a new connection per request
    until stopped (bounded by a request count and a deadline)."""

    def __init__(self, port, threads=3, max_seconds=20.0, max_requests=5000):
        self.port = port
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(threads)]

    def run(self):
        for _ in range(self.max_requests):
            if self.stop_flag.is_set() or time.monotonic() > self.deadline:
                return
            try:
                st, _, body = post(self.port, "/v1/chat/completions", CHAT,
                                   timeout=10)
                good = st == 200
                what = (st, body[:200])
            except Exception as e:  # noqa: BLE001 - any error is a failure
                good = False
                what = repr(e)
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append((time.monotonic(), what))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=15)
        assert not any(t.is_alive() for t in self.threads), "loop hung"


def test_sighup_changes_route_without_failing_requests(mock_factory, sluice):
    a, b = mock_factory(), mock_factory()
    ups = {"a": a.url, "b": b.url}
    s = sluice(upstreams=ups, routes=[("*", "a")])
    old_workers = set(s.worker_pids())
    with RequestLoop(s.port, threads=3) as loop:
        time.sleep(1.0)
        s.write_config(upstreams=ups, routes=[("*", "b")])
        t_hup = time.monotonic()
        s.signal(signal.SIGHUP)
        wait_for(lambda: b.stats()["requests"] > 0, 5,
                 what="requests to reach mock b after SIGHUP")
        time.sleep(1.5)
    assert loop.failures == [], "%d ok, %d failed; first (s after SIGHUP, "\
        "error): %r" % (loop.ok, len(loop.failures),
                        [("%+.3f" % (t - t_hup), e) for t, e in
                         loop.failures[:5]])
    assert loop.ok > 20, "request loop made only %d requests" % loop.ok
    # The old generation goes away; the new one serves the new route.
    wait_for(lambda: not (set(s.worker_pids()) & old_workers), 10,
             what="old workers to exit after reload")
    assert len(s.worker_pids()) == s.workers
    a_before, b_before = a.stats()["requests"], b.stats()["requests"]
    for _ in range(10):
        st, _, body = post(s.port, "/v1/chat/completions", CHAT)
        assert st == 200, body
    assert a.stats()["requests"] == a_before
    assert b.stats()["requests"] == b_before + 10


def test_sighup_with_broken_config_keeps_old_config(mock_factory, sluice):
    a, b = mock_factory(), mock_factory()
    s = sluice(upstreams={"a": a.url})
    workers = s.worker_pids()
    with open(s.conf_path, "w") as f:
        f.write(s.config(upstreams={"b": b.url}, routes=[("*", "nosuch")]))
    s.signal(signal.SIGHUP)
    time.sleep(1.0)
    assert s.proc.poll() is None, "master exited on a bad reload"
    for _ in range(5):
        st, _, body = post(s.port, "/v1/chat/completions", CHAT)
        assert st == 200, body
    assert a.stats()["requests"] == 5
    assert b.stats()["requests"] == 0
    assert s.worker_pids() == workers
    assert "nosuch" in s.log_text(), "reload error not logged"


def slow_stream(port, chunks=10, delay_ms=200):
    conn = http.client.HTTPConnection(HOST, port, timeout=15)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps(dict(CHAT, stream=True)).encode(),
                 headers={"Content-Type": "application/json",
                          "x-mock-chunks": str(chunks),
                          "x-mock-chunk-delay-ms": str(delay_ms)})
    return conn, conn.getresponse()


def test_sigterm_lets_slow_stream_finish_then_exits_0(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    conn, resp = slow_stream(s.port, chunks=10, delay_ms=200)
    try:
        assert resp.status == 200
        first = resp.read1(65536)
        assert b"data: " in first, first
        s.signal(signal.SIGTERM)
        rest = b"".join(d for _, d in read_stream(resp))
    finally:
        conn.close()
    body = first + rest
    events = [e for e in body.split(b"\n\n") if e.strip()]
    content = [e for e in events if b'"delta"' in e]
    assert len(content) == 10, body
    assert events[-1].strip() == b"data: [DONE]", body
    rc = s.proc.wait(timeout=12)
    assert rc == 0, s.log_tail()
    assert not os.path.exists(s.pid_file), "pid file left behind"


def test_sigterm_refuses_new_connections_while_draining(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    conn, resp = slow_stream(s.port, chunks=10, delay_ms=200)
    try:
        assert resp.status == 200
        resp.read1(65536)
        s.signal(signal.SIGTERM)

        def refused():
            try:
                c = socket.create_connection((HOST, s.port), timeout=1)
            except OSError as e:
                return e.errno == errno.ECONNREFUSED
            c.close()
            return False

        # The stream still has ~1.8 s to go: the daemon is draining.
        wait_for(refused, 1.0, what="connect() to be refused after SIGTERM")
        assert s.proc.poll() is None, "master exited before the stream ended"
        rest = b"".join(d for _, d in read_stream(resp))
        assert rest.rstrip().endswith(b"data: [DONE]"), rest[-300:]
    finally:
        conn.close()
    assert s.proc.wait(timeout=12) == 0


def test_killed_worker_is_respawned_and_service_continues(mock, sluice):
    s = sluice(upstreams={"mock": mock.url}, workers=2)
    workers = s.worker_pids()
    assert len(workers) == 2
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim), 5, what="worker to die")

    def respawned():
        now = s.worker_pids()
        return len(now) == 2 and victim not in now

    wait_for(respawned, 5, what="a new worker to replace %d" % victim)
    assert workers[1] in s.worker_pids()
    for _ in range(20):
        st, _, body = post(s.port, "/v1/chat/completions", CHAT)
        assert st == 200, body
    log = s.log_text()
    line = [ln for ln in log.splitlines() if str(victim) in ln and
            re.search(r"signal 9\b|SIGKILL|killed", ln, re.I)]
    assert line, "no log line says worker %d was killed by signal 9" % victim
    assert re.search(r"\b9\b|SIGKILL", line[0]), line[0]
