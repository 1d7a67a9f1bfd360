"""Hardening (issue 8, parts 1 and 2): hostile clients, broken upstreams
and bad input get a clear answer and cost nothing else.

Client side: raw sockets against a sluiced in front of mockllm, so that
the bytes on the wire are exactly the ones under test.  Upstream side: an
"evil upstream" in this file (EvilUpstream, a bounded socket server thread
on 127.0.0.1) reads each request and answers with crafted bytes; sluiced
meters into a fresh database in the session's PostgreSQL, and every test
asserts the status the client saw, the usage row (status, error_class),
and that the same workers still serve the next request.
"""

import itertools
import json
import os
import select
import socket
import struct
import threading
import time
import uuid

import psycopg
import pytest

from conftest import HOST, post, wait_for

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}
MESSAGES = {"model": "claude-test", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]}
CHAT_PATH = "/v1/chat/completions"
MSG_PATH = "/v1/messages"

# What Anthropic's API calls each status (client.c anthropic_error_type).
ANTHROPIC_TYPE = {400: "invalid_request_error", 408: "invalid_request_error",
                  413: "request_too_large", 414: "invalid_request_error",
                  431: "invalid_request_error"}


# ---------------------------------------------------------------------------
# Raw HTTP over a socket
# ---------------------------------------------------------------------------

def dechunk(data):
    """(payload, complete) of a chunked body; complete only with the
    terminating zero chunk and its empty trailer line."""
    out = b""
    for _ in range(100000):
        eol = data.find(b"\r\n")
        if eol < 0:
            return out, False
        try:
            size = int(data[:eol].split(b";")[0], 16)
        except ValueError:
            return out, False
        data = data[eol + 2:]
        if size == 0:
            return out, data.startswith(b"\r\n")
        if len(data) < size + 2:
            return out + data[:size], False
        out += data[:size]
        data = data[size + 2:]
    return out, False


def parse_head(raw):
    """(status, {lower-case name: value}, rest) of a response head."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


class Raw:
    """One client connection to sluiced, spoken byte by byte."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read once more into buf; False at EOF (or a reset)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out; have %r" % self.buf[:300])
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise AssertionError("timed out; have %r" % self.buf[:300])
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def read_response(self, timeout=10.0):
        """The next complete response: (status, headers, body).  1xx
        answers are returned like any other."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            if b"\r\n\r\n" in self.buf:
                break
            if not self._fill(deadline):
                raise AssertionError("EOF before a response head; got %r"
                                     % self.buf[:300])
        status, headers, rest = parse_head(self.buf)
        if status < 200:
            self.buf = rest
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            for _ in range(10000):
                body, done = dechunk(rest)
                if done:
                    end = rest.index(b"0\r\n\r\n", len(body)) + 5
                    self.buf = rest[end:]
                    return status, headers, body
                if not self._fill(deadline):
                    raise AssertionError("EOF inside a chunked body")
                _, _, rest = parse_head(self.buf)
        n = int(headers.get("content-length", "0"))
        for _ in range(10000):
            if len(rest) >= n:
                break
            if not self._fill(deadline):
                raise AssertionError("EOF inside a body: %d of %d bytes"
                                     % (len(rest), n))
            _, _, rest = parse_head(self.buf)
        self.buf = rest[n:]
        return status, headers, rest[:n]

    def read_until_eof(self, timeout=10.0):
        """Everything until the peer closes; raises if it does not."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if not self._fill(deadline):
                data, self.buf = self.buf, b""
                return data
        raise AssertionError("no EOF")

    def closed_within(self, timeout):
        """True if the peer closes within timeout (bytes still in flight
        are read and kept in buf); False if it stays open."""
        try:
            self.read_until_eof(timeout)
            return True
        except AssertionError:
            return False

    def close(self):
        self.sock.close()


def raw_request(path, body=b"", headers=(), method="POST"):
    """A request with Host and Content-Length (unless headers carry a
    Content-Length or Transfer-Encoding of their own)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: sluice"]
    lines += list(headers)
    if not any(h.lower().startswith(("content-length:",
                                     "transfer-encoding:"))
               for h in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def assert_error(status, headers, body, want, path=CHAT_PATH, code=None):
    """The answer is WANT with a JSON error in the caller's protocol."""
    assert status == want, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), \
        headers
    assert headers.get("x-request-id"), headers
    doc = json.loads(body)
    if path.startswith(MSG_PATH):
        assert doc.get("type") == "error", doc
        assert doc["error"]["type"] == ANTHROPIC_TYPE[want], doc
        assert isinstance(doc["error"]["message"], str) and \
            doc["error"]["message"], doc
    else:
        err = doc["error"]
        assert isinstance(err["message"], str) and err["message"], doc
        for k in ("type", "param", "code"):
            assert k in err, doc
        if code is not None:
            assert err["code"] == code, doc
    return doc


def worker_cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])       # utime + stime


def assert_serves(s, pids, model="gpt-test"):
    """The same workers as before still answer a normal request."""
    st, _, body = post(s.port, CHAT_PATH, dict(CHAT, model=model))
    assert st == 200, body[:300]
    assert s.worker_pids() == pids, "a worker was replaced"


@pytest.fixture
def front(mock, sluice):
    """front(**kw) -> a one-worker sluiced in front of the mock, with
    both an OpenAI route (gpt-*) and an Anthropic one (claude-*)."""
    def make(extra="", workers=1):
        s = sluice(upstreams={"oai": mock.url,
                              "anth": {"url": mock.url,
                                       "protocol": "anthropic"}},
                   routes=[("claude-*", "anth"), ("*", "oai")],
                   extra=extra, workers=workers)
        s.pids0 = s.worker_pids()
        return s
    return make


# ---------------------------------------------------------------------------
# 1. Clients: timeouts and connection limits
# ---------------------------------------------------------------------------

def test_slowloris_clients_are_cut_at_header_timeout_and_others_served(
        front):
    s = front(extra="client_header_timeout 2s;")
    n = 200
    trickle = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\n"
               b"X-Slow: " + b"a" * 200)
    socks = [socket.create_connection((HOST, s.port), timeout=5)
             for _ in range(n)]
    first = [None] * n          # when its first byte went out
    ended = [None] * n          # when sluiced closed it
    got = [b""] * n
    stop = threading.Event()

    def trickler():
        for step in range(len(trickle)):
            if stop.is_set() or all(e is not None for e in ended):
                return
            for i, sk in enumerate(socks):
                if ended[i] is not None:
                    continue
                r, _, _ = select.select([sk], [], [], 0)
                if r:
                    try:
                        data = sk.recv(4096)
                    except OSError:
                        data = b""
                    got[i] += data
                    if not data:
                        ended[i] = time.monotonic()
                        continue
                try:
                    sk.send(trickle[step:step + 1])
                except OSError:
                    ended[i] = time.monotonic()
                    continue
                if first[i] is None:
                    first[i] = time.monotonic()
            stop.wait(0.3)

    t = threading.Thread(target=trickler, daemon=True)
    t.start()
    try:
        served = 0
        deadline = time.monotonic() + 8
        for _ in range(200):
            if all(e is not None for e in ended) or \
                    time.monotonic() > deadline:
                break
            st, _, body = post(s.port, CHAT_PATH, CHAT, timeout=5)
            assert st == 200, body[:300]
            served += 1
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(5)
        for sk in socks:
            sk.close()
    assert served >= 5, served
    open_ = [i for i in range(n) if ended[i] is None]
    assert not open_, "%d trickling clients still open after 8 s" % \
        len(open_)
    took = sorted(ended[i] - first[i] for i in range(n))
    assert 1.5 <= took[0] and took[-1] <= 4.5, \
        "cut after %.2f..%.2f s (client_header_timeout 2s)" % (took[0],
                                                                took[-1])
    for i in range(n):
        if got[i]:                  # what was said, if anything: a 408
            st, h, body = parse_head(got[i])
            assert_error(st, h, body, 408)
    assert_serves(s, s.pids0)


def test_idle_keepalive_connection_closed_after_keepalive_timeout(front):
    s = front(extra="keepalive_timeout 1s;")
    c = Raw(s.port)
    try:
        c.send(raw_request(CHAT_PATH, CHAT))
        st, _, body = c.read_response()
        assert st == 200, body
        t0 = time.monotonic()
        assert c.closed_within(4), "idle connection kept past 4 s"
        took = time.monotonic() - t0
        assert c.buf == b"", c.buf      # closed without a word
        assert 0.7 <= took <= 2.5, took
    finally:
        c.close()
    assert_serves(s, s.pids0)


def test_stalled_body_is_408_after_client_body_timeout(front, mock):
    s = front(extra="client_body_timeout 1s;")
    body = json.dumps(CHAT).encode()
    c = Raw(s.port)
    try:
        c.send(raw_request(CHAT_PATH, b"", ["Content-Length: %d" % len(body)])
               + body[:10])
        t0 = time.monotonic()
        st, h, data = c.read_response(timeout=5)
        took = time.monotonic() - t0
        assert_error(st, h, data, 408, code="request_timeout")
        assert 0.7 <= took <= 2.5, took
        assert c.closed_within(5)
    finally:
        c.close()
    assert mock.stats()["requests"] == 0
    assert_serves(s, s.pids0)


def test_max_connections_closes_the_extra_one_without_busy_loop(front):
    s = front(extra="max_connections 5;")
    # The start-up probes' connections (queued before the worker ran)
    # count until the worker reads their EOF: let it settle first.
    assert post(s.port, CHAT_PATH, CHAT)[0] == 200
    time.sleep(0.3)
    conns = [Raw(s.port) for _ in range(5)]
    try:
        for c in conns:                 # all five accepted and working
            c.send(raw_request(CHAT_PATH, CHAT))
            st, _, body = c.read_response()
            assert st == 200, body
        sixth = Raw(s.port)
        try:
            assert sixth.closed_within(2), "6th connection not closed"
            assert sixth.buf == b""
        finally:
            sixth.close()
        (pid,) = s.pids0
        cpu0 = worker_cpu_ticks(pid)
        t0 = time.monotonic()
        for i in range(4):              # more knocking, 0.5 s apart
            extra = Raw(s.port)
            try:
                assert extra.closed_within(2)
            finally:
                extra.close()
            time.sleep(max(0, t0 + 0.5 * (i + 1) - time.monotonic()))
        cpu = (worker_cpu_ticks(pid) - cpu0) / os.sysconf("SC_CLK_TCK")
        assert cpu < 0.3, "worker used %.2f s CPU in %.1f s at the limit" % (
            cpu, time.monotonic() - t0)
        for c in conns:                 # the five are still usable
            c.send(raw_request(CHAT_PATH, CHAT))
            st, _, body = c.read_response()
            assert st == 200, body
    finally:
        for c in conns[1:]:
            c.close()
    conns[0].close()
    # One slot is free again: a new client gets in once the worker saw
    # the close.
    def new_client_served():
        try:
            st, _, _ = post(s.port, CHAT_PATH, CHAT, timeout=5)
        except (OSError, ConnectionError):
            return False
        return st == 200
    wait_for(new_client_served, 5, interval=0.1, what="a free slot")
    assert s.worker_pids() == s.pids0


def test_expect_100_continue_gets_continue_then_the_answer(front):
    s = front()
    body = json.dumps(CHAT).encode()
    c = Raw(s.port)
    try:
        c.send(raw_request(CHAT_PATH, b"", headers=[
            "Content-Type: application/json", "Expect: 100-continue",
            "Content-Length: %d" % len(body)]))
        st, _, _ = c.read_response(timeout=5)
        assert st == 100
        c.send(body)
        st, _, data = c.read_response()
        assert st == 200, data
        assert json.loads(data)["choices"], data
    finally:
        c.close()


def test_pipelined_requests_are_answered_in_order(front):
    s = front()
    rids = [str(uuid.uuid4()) for _ in range(4)]
    reqs = [raw_request(CHAT_PATH, CHAT, ["x-request-id: " + rids[0]]),
            raw_request("/v1/nosuch", b"", ["x-request-id: " + rids[1]],
                        method="GET"),
            raw_request(CHAT_PATH, dict(CHAT, stream=True),
                        ["x-request-id: " + rids[2]]),
            raw_request(MSG_PATH, MESSAGES, ["x-request-id: " + rids[3]])]
    c = Raw(s.port)
    try:
        c.send(b"".join(reqs))
        got = []
        for _ in reqs:
            st, h, body = c.read_response()
            got.append((h.get("x-client-request-id"), st))
        assert got == [(rids[0], 200), (rids[1], 404), (rids[2], 200),
                       (rids[3], 200)], got
    finally:
        c.close()


# ---------------------------------------------------------------------------
# 1. Clients: limits, smuggling and bad bodies.  Every case on both
# protocols: OpenAI-shaped errors on /v1/chat/completions, Anthropic-shaped
# on /v1/messages.
# ---------------------------------------------------------------------------

def _chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


def _smuggled(path):
    return raw_request(CHAT_PATH, CHAT)


# id: (build(path, good_body) -> bytes, status, OpenAI code, closes)
BAD_REQUESTS = {
    "request_line_over_8k_414": (
        lambda p, b: raw_request(p + "?pad=" + "a" * 9000, b), 414,
        "bad_request", True),
    "over_100_headers_431": (
        lambda p, b: raw_request(p, b, ["X-H%d: v" % i for i in range(101)]),
        431, "bad_request", True),
    "header_block_over_max_431": (
        lambda p, b: raw_request(p, b, ["X-Big: " + "y" * 20000]), 431,
        "header_too_large", True),
    "body_over_max_content_length_413": (
        lambda p, b: raw_request(p, b + b" " * 3000), 413, "body_too_large",
        True),
    "body_over_max_chunked_413": (
        lambda p, b: raw_request(p, _chunked(b + b" " * 3000, 500),
                                 ["Transfer-Encoding: chunked"]),
        413, "body_too_large", True),
    # Smuggling: a second request rides in the body; it must never run.
    "content_length_and_chunked_400": (
        lambda p, b: raw_request(p, _chunked(b, 1000) + _smuggled(p), [
            "Content-Length: %d" % len(_chunked(b, 1000)),
            "Transfer-Encoding: chunked"]), 400, "bad_request", True),
    "duplicate_content_length_400": (
        lambda p, b: raw_request(p, b + _smuggled(p), [
            "Content-Length: %d" % len(b), "Content-Length: %d" % len(b)]),
        400, "bad_request", True),
    "obs_fold_400": (
        lambda p, b: raw_request(p, b, ["X-Folded: one", " two"]), 400,
        "bad_request", True),
    "non_json_body_400": (
        lambda p, b: raw_request(p, b"model=gpt-test"), 400, "invalid_json",
        False),
    "json_without_model_400": (
        lambda p, b: raw_request(p, {"messages": [], "max_tokens": 1}), 400,
        "missing_model", False),
    "duplicate_model_400": (
        lambda p, b: raw_request(
            p, b[:-1] + b', "model": "' + json.loads(b)["model"].encode() +
            b'-other"}'), 400, "duplicate_field", False),
}


@pytest.mark.parametrize("path", [CHAT_PATH, MSG_PATH],
                         ids=["openai", "anthropic"])
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_status_in_the_callers_error_json(
        front, mock, case, path):
    build, want, code, closes = BAD_REQUESTS[case]
    s = front(extra="client_max_body_size 2k;")
    good = CHAT if path == CHAT_PATH else MESSAGES
    c = Raw(s.port)
    try:
        c.send(build(path, json.dumps(good).encode()))
        st, h, body = c.read_response()
        assert_error(st, h, body, want, path, code)
        if closes:
            assert h.get("connection", "").lower() == "close", h
            rest = c.read_until_eof(timeout=5)
            assert rest == b"", "bytes after the error: %r" % rest[:200]
        else:                           # the connection stays usable
            c.send(raw_request(path, good))
            st, _, body = c.read_response()
            assert st == 200, body
    finally:
        c.close()
    assert mock.stats()["requests"] == (0 if closes else 1), \
        "a refused (or smuggled) request reached the upstream"
    assert_serves(s, s.pids0)


def test_header_that_never_ends_is_431_at_the_limit_not_the_timeout(front):
    s = front(extra="client_max_header_size 2k;")
    c = Raw(s.port)
    try:
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\n")
        for i in range(10):             # 4 KiB of headers, no end
            c.send(b"X-More-%d: %s\r\n" % (i, b"z" * 400))
        st, h, body = c.read_response(timeout=2)
        assert_error(st, h, body, 431, code="header_too_large")
        assert c.closed_within(5)
    finally:
        c.close()
    assert_serves(s, s.pids0)


def test_deeply_nested_json_is_answered_quickly_and_worker_survives(front):
    """Request bodies are read by a one-pass scanner that refuses nesting
    deeper than 512 levels: 400 at once, whether the brackets close or
    not; 500 levels are passed on to the upstream."""
    s = front()
    head = b'{"model": "gpt-test", "messages": [], "x": '
    cases = [
        # 100,000 arrays deep, closed, padded to 1 MiB
        (head + b"[" * 100000 + b"]" * 100000 + b"}", 400),
        # never closed: 100,000 '[' in 1 MiB
        (head + b"[" * 100000, 400),
        # 500 deep: within the limit, so the upstream answers
        (head + b"[" * 500 + b"]" * 500 + b"}", 200),
    ]
    for body, want in cases:
        body = body + b" " * (1024 * 1024 - len(body))
        t0 = time.monotonic()
        try:
            st, h, data = post(s.port, CHAT_PATH, body, timeout=8)
        except socket.timeout:
            pytest.fail("no answer in 8 s to a deeply nested body")
        took = time.monotonic() - t0
        assert st == want, data[:300]
        if want == 400:
            assert_error(st, h, data, 400, code="invalid_json")
        assert took < 5, "took %.1f s" % took
    assert_serves(s, s.pids0)


def test_json_with_a_million_values_is_answered_quickly(front):
    """The scanner makes no token per value: a body of 500,000 or
    1,500,000 numbers is skipped in one pass and passed on."""
    s = front()
    for ntok in (500000, 1500000):
        nums = ntok - 8
        body = (b'{"model": "gpt-test", "messages": [], "x": [' +
                b",".join([b"0"] * nums) + b"]}")
        t0 = time.monotonic()
        st, h, data = post(s.port, CHAT_PATH, body, timeout=15)
        took = time.monotonic() - t0
        assert st == 200, (ntok, data[:300])
        assert took < 5, "%d values took %.1f s" % (ntok, took)
    assert_serves(s, s.pids0)


# ---------------------------------------------------------------------------
# 2. Upstreams: an evil upstream, a metered sluiced
# ---------------------------------------------------------------------------

class EvilUpstream:
    """A socket server thread on 127.0.0.1 that reads each request (head
    and Content-Length body) and hands the connection to handler(conn).
    Everything is bounded: accept polls a stop flag, handlers run in their
    own threads and must return within a few seconds (they may wait on
    self.stop), and stop() closes it all."""

    def __init__(self, handler):
        self.handler = handler
        self.stop_ev = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.requests = 0
        self.threads = []
        self.errors = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,),
                                 daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        conn.settimeout(5)
        try:
            buf = b""
            for _ in range(1000):
                if b"\r\n\r\n" in buf:
                    break
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, body = buf.partition(b"\r\n\r\n")
            n = 0
            for ln in head.split(b"\r\n"):
                if ln.lower().startswith(b"content-length:"):
                    n = int(ln.split(b":")[1])
            for _ in range(1000):
                if len(body) >= n:
                    break
                data = conn.recv(65536)
                if not data:
                    return
                body += data
            self.requests += 1
            self.handler(self, conn)
        except OSError:
            pass            # sluiced gave up on us: what some tests want
        except Exception as e:      # a bug in the test: report it
            self.errors.append(repr(e))
        finally:
            conn.close()

    def wait_peer_close(self, conn, timeout=8.0):
        """Hold the connection open until sluiced closes it (or stop)."""
        conn.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while not self.stop_ev.is_set() and time.monotonic() < deadline:
            try:
                if conn.recv(4096) == b"":
                    return
            except socket.timeout:
                continue

    def stop(self):
        self.stop_ev.set()
        self.lsock.close()
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)
        assert not self.errors, self.errors


def reset(conn):
    """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    conn.close()


SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
EVENT = (b'data: {"id":"c1","object":"chat.completion.chunk",'
         b'"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n')


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


_db_seq = itertools.count()


@pytest.fixture
def evil(pg, mock, sluice):
    """evil(handler, **upstream_directives) -> (sluiced, db name): models
    gpt-ok* go to the mock, everything else to an EvilUpstream running
    handler; sluiced meters into a database of its own."""
    dbs, evils, sluices = [], [], []

    def make(handler, second=None, **directives):
        name = "hardening_%d_%d" % (os.getpid(), next(_db_seq))
        pg.psql('CREATE DATABASE "%s"' % name, dbname="postgres")
        dbs.append(name)
        e = EvilUpstream(handler)
        evils.append(e)
        ups = {"evil": dict(url=e.url, **directives), "mock": mock.url}
        s = sluice(upstreams=ups,
                   routes=[("gpt-ok*", "mock"),
                           ("*", "evil mock" if second else "evil")],
                   extra='database "%s";' % pg.conninfo(name), workers=1)
        sluices.append(s)
        s.pids0 = s.worker_pids()
        s.db = name
        s.evil = e
        return s

    yield make
    # sluiced first (the sluice fixture's own stop is then a no-op that
    # still reports a stuck daemon), so that no collector is connected
    # when its database is dropped; then the evil upstreams.
    for s in sluices:
        s.stop()
    for e in evils:
        e.stop_ev.set()
    for e in evils:
        e.stop()
    for name in dbs:
        try:
            pg.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name,
                    dbname="postgres")
        except RuntimeError:
            pass


def row_for(pg, dbname, rid, timeout=15.0):
    """(status, error_class) of the usage row of the request the client
    sent with x-request-id rid (its client_request_id)."""
    def get():
        try:
            with psycopg.connect(pg.conninfo(dbname), autocommit=True,
                                 connect_timeout=5) as conn:
                return conn.execute(
                    "SELECT status, error_class FROM usage_events "
                    "WHERE client_request_id = %s", (rid,)).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    rows = wait_for(get, timeout, interval=0.1, what="usage row of " + rid)
    assert len(rows) == 1, rows
    return tuple(rows[0])


def send_chat(s, stream=False, timeout=10.0):
    """A chat request on a raw connection: (rid, Raw) with the request
    sent."""
    rid = str(uuid.uuid4())
    c = Raw(s.port, timeout=timeout)
    c.send(raw_request(CHAT_PATH, dict(CHAT, stream=stream),
                       ["x-request-id: " + rid]))
    return rid, c


def expect_early_error(s, pg, want=502, code="upstream_error"):
    rid, c = send_chat(s)
    try:
        st, h, body = c.read_response(timeout=10)
    finally:
        c.close()
    assert_error(st, h, body, want, code=code)
    assert h["x-client-request-id"] == rid
    assert row_for(pg, s.db, rid) == (want, code)
    assert_serves(s, s.pids0, model="gpt-ok")


def expect_truncated(s, pg, error_class, stream=True, timeout=10.0):
    """The head and some body arrive, then the connection ends without
    the end of the body.  Returns what arrived."""
    rid, c = send_chat(s, stream=stream)
    try:
        data = c.read_until_eof(timeout=timeout)
    finally:
        c.close()
    st, h, rest = parse_head(data)
    assert st == 200, data[:300]
    assert h["x-client-request-id"] == rid
    if h.get("transfer-encoding") == "chunked":
        body, complete = dechunk(rest)
        assert not complete, "a truncated stream must not end cleanly"
    else:
        body = rest
        assert len(body) < int(h["content-length"]), (len(body), h)
    assert row_for(pg, s.db, rid) == (200, error_class)
    assert_serves(s, s.pids0, model="gpt-ok")
    return body


def test_upstream_malformed_status_line_is_502(evil, pg):
    def handler(e, conn):
        conn.sendall(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n{}")
        e.wait_peer_close(conn)
    s = evil(handler)
    expect_early_error(s, pg)


def test_upstream_endless_header_is_502(evil, pg):
    def handler(e, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                     b"\r\n")
        line = b"X-Endless: " + b"e" * 1000 + b"\r\n"
        for _ in range(1024):           # up to 1 MiB, or until cut off
            conn.sendall(line)
    s = evil(handler)
    expect_early_error(s, pg)


def test_upstream_reset_before_any_byte_is_502(evil, pg):
    s = evil(lambda e, conn: reset(conn))
    expect_early_error(s, pg)


def test_upstream_reset_before_any_byte_with_a_second_upstream(evil, pg,
                                                               mock):
    """Not retried (the request may have run): 502; or, if sluiced
    retries, answered by the second upstream exactly once."""
    s = evil(lambda e, conn: reset(conn), second=True)
    rid, c = send_chat(s)
    try:
        st, h, body = c.read_response(timeout=10)
    finally:
        c.close()
    assert st in (200, 502), body[:300]
    if st == 502:
        assert_error(st, h, body, 502, code="upstream_error")
        assert mock.stats()["requests"] == 0
        assert row_for(pg, s.db, rid) == (502, "upstream_error")
    else:
        assert mock.stats()["requests"] == 1
        assert row_for(pg, s.db, rid) == (200, None)
    assert_serves(s, s.pids0, model="gpt-ok")


def test_upstream_bad_chunked_encoding_truncates_the_stream(evil, pg):
    def handler(e, conn):
        conn.sendall(SSE_HEAD + chunk(EVENT))
        e.stop_ev.wait(0.3)
        conn.sendall(b"zz-not-hex\r\n" + EVENT + b"\r\n")
        e.wait_peer_close(conn)
    s = evil(handler)
    body = expect_truncated(s, pg, "upstream_bad_body")
    assert body == EVENT, body


def test_upstream_content_length_that_lies_truncates(evil, pg):
    payload = json.dumps({"id": "x", "object": "chat.completion",
                          "choices": []}).encode()

    def handler(e, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n" % (len(payload) + 500)
                     + payload)
        e.stop_ev.wait(0.2)             # then a clean close (FIN)
    s = evil(handler)
    body = expect_truncated(s, pg, "upstream_truncated", stream=False)
    assert body == payload


def test_upstream_reset_mid_content_length_answer_truncates(evil, pg):
    """A 200 KB answer whose upstream resets after 60 KB in pieces: read
    past the bufferevent, the client gets a prefix of what was sent, no
    more, and the row says upstream_truncated."""
    payload = (b'{"id":"x","object":"chat.completion","choices":[],"pad":"'
               + b"p" * 200000 + b'"}')

    def handler(e, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n" % len(payload))
        for i in range(6):
            conn.sendall(payload[i * 10000:(i + 1) * 10000])
            e.stop_ev.wait(0.05)
        reset(conn)
    s = evil(handler)
    body = expect_truncated(s, pg, "upstream_truncated", stream=False)
    assert 0 < len(body) <= 60000 and payload.startswith(body), len(body)


def test_upstream_sse_that_goes_silent_ends_at_read_timeout(evil, pg):
    def handler(e, conn):
        conn.sendall(SSE_HEAD + chunk(EVENT))
        e.wait_peer_close(conn)         # then nothing, for ever
    s = evil(handler, read_timeout="1s")
    t0 = time.monotonic()
    body = expect_truncated(s, pg, "upstream_timeout", timeout=6)
    assert body == EVENT, body
    assert time.monotonic() - t0 < 6


def test_upstream_reset_mid_stream_truncates(evil, pg):
    def handler(e, conn):
        conn.sendall(SSE_HEAD + chunk(EVENT))
        e.stop_ev.wait(0.3)
        reset(conn)
    s = evil(handler)
    body = expect_truncated(s, pg, "upstream_truncated")
    assert body == EVENT, body
