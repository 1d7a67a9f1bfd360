"""Connection handling: client keep-alive, upstream keep-alive pool, and a
client that goes away in the middle of a stream."""

import http.client
import json
import socket
import time

from conftest import HOST, post, wait_for

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}


def test_keepalive_200_requests_reuse_upstream_connections(mock, sluice):
    s = sluice(upstreams={"mock": mock.url}, workers=2)
    before = mock.stats()
    body = json.dumps(CHAT).encode()
    conn = http.client.HTTPConnection(HOST, s.port, timeout=10)
    local_ports = set()
    statuses = []
    try:
        for _ in range(200):
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            statuses.append(resp.status)
            assert resp.status == 200, data
            # http.client silently reconnects if the server closed: the
            # local port shows whether it was the same connection.
            local_ports.add(conn.sock.getsockname()[1] if conn.sock else None)
    finally:
        conn.close()
    after = mock.stats()
    assert statuses.count(200) == 200
    assert len(local_ports) == 1, (
        "client connection was not kept alive: %d connections" %
        len(local_ports))
    assert after["requests"] - before["requests"] == 200
    # One more accept is our own GET /stats.
    upstream_conns = after["connections"] - before["connections"] - 1
    assert upstream_conns <= 2 * s.workers + 2, (
        "sluice opened %d upstream connections for 200 requests" %
        upstream_conns)


def test_client_disconnect_mid_stream_cancels_upstream(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    # Let sluice's pool settle: no sluice connection to the mock yet.
    base = mock.stats()["active_connections"]
    req = json.dumps(dict(CHAT, stream=True)).encode()
    sock = socket.create_connection((HOST, s.port), timeout=10)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n"
                     b"Host: sluice\r\nContent-Type: application/json\r\n"
                     b"x-mock-chunks: 20\r\nx-mock-chunk-delay-ms: 250\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(req) + req)
        got = b""
        deadline = time.monotonic() + 5
        for _ in range(100):
            if b"data: " in got or time.monotonic() > deadline:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got
        assert b"data: " in got, got
        assert mock.stats()["active_connections"] >= base + 1
    finally:
        sock.close()
    closed_at = time.monotonic()
    # The stream would run ~5 s more; the upstream must see the close now.
    wait_for(lambda: mock.stats()["active_connections"] <= base, 2.5,
             what="upstream connection closed after client left")
    assert time.monotonic() - closed_at < 2.5
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert st == 200, body


def test_upstream_connection_closed_by_upstream_is_not_reused(mock_factory,
                                                              sluice):
    """The mock answers "Connection: close" on every 3rd request of a
    connection and closes it; sluice must open a new one, never send a
    request into the closed one."""
    m = mock_factory("--close-after", "3")
    s = sluice(upstreams={"mock": m.url}, workers=1)
    body = json.dumps(CHAT).encode()
    conn = http.client.HTTPConnection(HOST, s.port, timeout=10)
    bad = []
    try:
        for i in range(30):
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                bad.append((i, resp.status, data[:200]))
    finally:
        conn.close()
    assert bad == []
    st = m.stats()
    assert st["requests"] == 30
    assert st["connections"] - 1 >= 10    # at most 3 requests each
