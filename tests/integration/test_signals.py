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


def plain_chat(port):
    st, _, body = post(port, "/v1/chat/completions", CHAT, timeout=10)
    return st == 200, (st, body[:200])


class RequestLoop:
    """N threads, each sending requests on a new connection per request
    until stopped (bounded by a request count and a deadline).  send(port)
    makes one request and returns (good, what); plain HTTP by default."""

    def __init__(self, port, threads=3, max_seconds=20.0, max_requests=100000,
                 send=None):
        self.port = port
        self.send = send or plain_chat
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
                good, what = self.send(self.port)
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
    with RequestLoop(s.port, threads=4) as loop:
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


def test_sighup_serves_connection_accepted_before_reload(mock_factory,
                                                         sluice):
    """A client that connected just before SIGHUP and sends its request
    just after is still served (by the old generation, old route): the
    reload must not drop connections that were accepted but have not sent
    their first byte yet.  The request loop above hits this window by
    chance; this test hits it every time."""
    a, b = mock_factory(), mock_factory()
    ups = {"a": a.url, "b": b.url}
    s = sluice(upstreams=ups, routes=[("*", "a")])
    req = json.dumps(CHAT).encode()
    socks = [socket.create_connection((HOST, s.port), timeout=5)
             for _ in range(4)]
    try:
        time.sleep(0.2)                 # accepted by the old workers
        s.write_config(upstreams=ups, routes=[("*", "b")])
        s.signal(signal.SIGHUP)
        time.sleep(0.3)                 # the old generation got SIGTERM
        answers = []
        for sock in socks:
            try:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n"
                             b"Host: sluice\r\nConnection: close\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(req)
                             + req)
                got = b""
                for _ in range(100):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                answers.append(got.split(b"\r\n", 1)[0] or b"(closed)")
            except OSError as e:
                answers.append(repr(e).encode())
    finally:
        for sock in socks:
            sock.close()
    assert all(x.startswith(b"HTTP/1.1 200 ") for x in answers), answers


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
    """After SIGTERM nobody will accept() again, so the listening socket
    must be closed (in the master too): a new client is refused at once
    instead of sitting in the backlog until the daemon exits."""
    s = sluice(upstreams={"mock": mock.url})
    conn, resp = slow_stream(s.port, chunks=10, delay_ms=200)
    try:
        assert resp.status == 200
        resp.read1(65536)
        t_term = time.monotonic()
        s.signal(signal.SIGTERM)
        outcome = None
        for _ in range(20):             # ~1 s; the stream has ~1.8 s left
            try:
                c = socket.create_connection((HOST, s.port), timeout=1)
            except OSError as e:
                outcome = ("refused" if e.errno == errno.ECONNREFUSED
                           else repr(e))
                break
            # Connected: see what a request on it gets, briefly.
            try:
                c.settimeout(0.5)
                c.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
                got = c.recv(100)
                outcome = "connected %.0f ms after SIGTERM, answered %r" % (
                    (time.monotonic() - t_term) * 1000, got[:40])
            except socket.timeout:
                outcome = ("connected %.0f ms after SIGTERM and got no "
                           "answer in 0.5 s (left in the backlog)" %
                           ((time.monotonic() - t_term) * 1000))
            except OSError as e:
                outcome = "connected, then %r" % e
            finally:
                c.close()
            if time.monotonic() - t_term > 1.0:
                break
            time.sleep(0.05)
        assert outcome == "refused", outcome
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
