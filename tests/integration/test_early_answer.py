"""An upstream that answers before it has read the request body, and the
request id in sluice's own Anthropic-shaped errors (issue 12).

1. A provider's edge may answer a request whose body it will not take
   (413, 400) as soon as it has the head, without reading the body, and
   keep the connection open.  The proxy must then not pool that
   connection: the rest of the body is still queued on it (as references
   into the client's body buffer, freed when the request ends), and the
   upstream would parse those bytes as the next request.  The rule, as in
   nginx's upstream keepalive module: a connection goes back to the pool
   only when its request was written in full and its response read in
   full; otherwise it is closed.  early_upstream.EarlyUpstream plays the
   edge and logs every request line it parses on every connection.

2. Every error sluice itself sends to an Anthropic endpoint is
   {"type":"error","error":{...},"request_id":ID} with ID the response's
   x-request-id, at every stage a request can be refused: the HTTP head,
   the key, the body.

Every wait is bounded; the upstream stops itself after its lifetime.
"""

import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import time

import psycopg
import pytest

from conftest import HOST, UsageDb, closed_port, wait_for
from early_upstream import REQUEST_LINE_RE, EarlyUpstream, queued_capacity

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                     r"[0-9a-f]{12}$", re.I)
CHAT_PATH = "/v1/chat/completions"
MSGS_PATH = "/v1/messages"

# The upstream answers early to any body over EARLY_THRESHOLD.  In both
# cases the body is larger than what the kernel can hold between sluice and
# an upstream that does not read (checked before the test: see
# queued_capacity), so when the 413 has arrived the rest of the body is
# still queued in sluice, as references into the client's body buffer.
#  - 60k: the upstream advertises a small MSS and a minimal receive buffer,
#    so the kernel takes only ~25 KB.  The body's evbuffer chain is below
#    glibc's mmap threshold: once freed it stays mapped and readable, and
#    without ASan the old code writes it out on the pooled connection
#    ahead of the next request (the upstream logs a JSON request line).
#  - 12m: the multi-megabyte case (the kernel takes at most tcp_wmem[2],
#    4 MB by default, plus 16 KB).  Its chain is mmapped: without ASan the
#    old code's writev of the freed chain fails with EFAULT and the
#    connection is dropped, which hides the bug; ASan (SAN=1) reports the
#    heap-use-after-free.
# (name: body bytes, upstream SO_RCVBUF, upstream TCP_MAXSEG)
EARLY_THRESHOLD = 16 << 10
BODIES = {"60k": (60000, 1024, 256), "12m": (12 << 20, 16384, None)}
ROUNDS = 3
REQUEST_TIMEOUT = 30.0


# ---------------------------------------------------------------------------
# 1. The early answer
# ---------------------------------------------------------------------------

class Db(UsageDb):

    def rows(self):
        """{request_id: (status, prompt_tokens)}; {} before the collector
        has created the table."""
        try:
            got = self.query("SELECT request_id::text, status, prompt_tokens "
                             "FROM usage_events")
        except psycopg.errors.UndefinedTable:
            return {}
        return {r[0]: (r[1], r[2]) for r in got}


def big_chat_body(size):
    """A valid JSON chat request of about `size` bytes, with no CRLF in it
    (so no part of it can ever look like the end of a request line)."""
    head = {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": ""}]}
    pad = size - len(json.dumps(head))
    head["messages"][0]["content"] = "x" * max(pad, 0)
    raw = json.dumps(head).encode()
    assert b"\r\n" not in raw
    return raw


def small_chat_body(marker):
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": marker}]}).encode()


def exchange(conn, body):
    """POST body on conn (http.client reconnects if the last answer closed
    it): (status, headers, bytes) or a string saying what went wrong."""
    try:
        conn.request("POST", CHAT_PATH, body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close:
            conn.close()
        return resp.status, hdrs, data
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        return "%s: %s" % (type(e).__name__, e)


def check_small(label, marker, got, problems, answered):
    if isinstance(got, str):
        problems.append("%s: no answer (%s)" % (label, got))
        return
    st, h, data = got
    rid = h.get("x-request-id", "")
    if not UUID_RE.match(rid):
        problems.append("%s: x-request-id %r" % (label, rid))
    try:
        doc = json.loads(data)
        content = doc["choices"][0]["message"]["content"]
        usage = doc["usage"]
    except (ValueError, KeyError, IndexError, TypeError):
        doc, content, usage = None, None, None
    if st != 200 or content != "echo:" + marker:
        problems.append("%s: expected 200 with content %r, got %s %r" %
                        (label, "echo:" + marker, st, data[:300]))
        answered[rid] = (st, None)
        return
    answered[rid] = (200, usage["prompt_tokens"])


def check_big(label, got, problems, answered):
    if isinstance(got, str):
        problems.append("%s: no answer (%s)" % (label, got))
        return
    st, h, data = got
    rid = h.get("x-request-id", "")
    if not UUID_RE.match(rid):
        problems.append("%s: x-request-id %r" % (label, rid))
    try:
        code = json.loads(data)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if st != 413 or code != "request_too_large":
        problems.append("%s: expected the upstream's 413 request_too_large "
                        "relayed as is, got %s %r" % (label, st, data[:300]))
    answered[rid] = (st, None)


@pytest.mark.parametrize("size", list(BODIES))
def test_upstream_answering_before_reading_body_never_gets_pooled(
        sluice, make_db, size):
    """A chat request over the upstream's limit gets the upstream's early
    413, and every request after it, on the same client connection and on
    new ones, gets its own answer; the upstream never parses a byte of the
    unread body as a request line; sluiced's worker survives (no
    use-after-free: under SAN=1 the fixture fails on any ASan report); each
    request has its usage row."""
    nbytes, rcvbuf, maxseg = BODIES[size]
    cap = queued_capacity(rcvbuf, maxseg)
    if nbytes < 2 * cap:
        # then the whole body could be in the kernel before the answer:
        # sluice could not tell, and the test would prove nothing
        pytest.skip("this kernel queues %d bytes to a peer that does not "
                    "read; a %d-byte body is not safely more" % (cap, nbytes))
    db = make_db(Db)
    up = EarlyUpstream(threshold=EARLY_THRESHOLD, rcvbuf=rcvbuf,
                       maxseg=maxseg)
    try:
        s = sluice(workers=1, upstreams={"edge": up.url},
                   extra='client_max_body_size 32m;\ndatabase "%s";\n' %
                   db.conninfo())
        workers = s.worker_pids()
        big = big_chat_body(nbytes)
        problems, answered = [], {}
        keep = http.client.HTTPConnection(HOST, s.port,
                                          timeout=REQUEST_TIMEOUT)
        sent = 0
        try:
            for rnd in range(ROUNDS):
                got = exchange(keep, big)
                sent += 1
                # the client has the 413, so sluice is done with that
                # request: now the upstream may read on (see early_upstream)
                up.release_early()
                check_big("round %d big request" % rnd, got, problems,
                          answered)
                for k, where in enumerate(("same", "new", "same", "new")):
                    marker = "r%d-%d-%s" % (rnd, k, secrets.token_hex(4))
                    if where == "same":
                        got = exchange(keep, small_chat_body(marker))
                    else:
                        fresh = http.client.HTTPConnection(
                            HOST, s.port, timeout=REQUEST_TIMEOUT)
                        try:
                            got = exchange(fresh, small_chat_body(marker))
                        finally:
                            fresh.close()
                    sent += 1
                    check_small("round %d small request %d (%s client "
                                "connection)" % (rnd, k, where), marker,
                                got, problems, answered)
        finally:
            keep.close()

        alive = s.proc.poll() is None
        if not alive:
            problems.append("sluiced exited with %s" % s.proc.returncode)
        elif s.worker_pids() != workers:
            problems.append("the worker died: pids %s, now %s" %
                            (workers, s.worker_pids()))

        # one usage row per request, under the request id the client saw
        if alive:
            try:
                wait_for(lambda: len(db.rows()) >= sent, 15.0, interval=0.1,
                         what="%d usage rows" % sent)
            except AssertionError as e:
                problems.append(str(e))
            rows = db.rows()
            if len(rows) != sent:
                problems.append("%d requests, %d usage rows" %
                                (sent, len(rows)))
            for rid, (st, prompt) in answered.items():
                if rid not in rows:
                    problems.append("no usage row for request %s" % rid)
                elif rows[rid] != (st, prompt):
                    problems.append("usage row of %s: (status, prompt "
                                    "tokens) %s, the client got %s" %
                                    (rid, rows[rid], (st, prompt)))

        # Stop sluiced: it closes every upstream connection, so each of the
        # upstream's connections reads to its end and every line is logged.
        s.stop()
        try:
            wait_for(up.idle, 15.0, what="the upstream's connections to end")
        except AssertionError as e:
            problems.append(str(e))
        snap = up.snapshot()
        bad_lines = [(n, ln) for n, ln in snap["lines"]
                     if not REQUEST_LINE_RE.match(ln)]
        if bad_lines:
            problems.append("the upstream parsed %d line(s) that are not "
                            "request lines, e.g. %r" %
                            (len(bad_lines), bad_lines[:3]))
        if len(snap["lines"]) != sent:
            problems.append("the upstream parsed %d request lines for %d "
                            "requests" % (len(snap["lines"]), sent))
        if snap["early"] != ROUNDS:
            problems.append("the upstream answered early %d times, expected "
                            "%d" % (snap["early"], ROUNDS))
        if snap["hold_timeouts"] or snap["errors"]:
            problems.append("upstream trouble: %d hold timeouts, errors %s" %
                            (snap["hold_timeouts"], snap["errors"]))
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
    finally:
        up.stop()


# ---------------------------------------------------------------------------
# 2. request_id in sluice's own Anthropic errors
# ---------------------------------------------------------------------------

def raw_exchange(port, data, timeout=5.0):
    """Send raw bytes, read one response: (status, {name: value}, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sk:
        try:
            sk.sendall(data)
        except OSError:
            pass        # sluice may answer and close before reading it all
        buf = b""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            if b"\r\n\r\n" in buf or time.monotonic() > deadline:
                break
            try:
                chunk = sk.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        assert b"\r\n\r\n" in buf, "no response head: %r" % buf[:500]
        rhead, body = buf.split(b"\r\n\r\n", 1)
        lines = rhead.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        want = int(hdrs.get("content-length", "0"))
        for _ in range(10000):
            if len(body) >= want or time.monotonic() > deadline:
                break
            try:
                chunk = sk.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            body += chunk
        return status, hdrs, body[:want]


def raw_head(lines, body=b""):
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


MSG_BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 16,
                       "messages": [{"role": "user",
                                     "content": "hi"}]}).encode()
CLIENT_RID = "0b6c5e2e-8f3a-4c1d-9e7b-2a4f6d8c0e13"


def msg_head(secret, extra=(), body=MSG_BODY, method="POST",
             target=MSGS_PATH):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: sluice",
             "Content-Type: application/json",
             "anthropic-version: 2023-06-01"]
    if secret is not None:
        lines.append("x-api-key: " + secret)
    lines += list(extra)
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return raw_head(lines, body or b"")


# (id, request(secret) -> the bytes to send, status, Anthropic error type)
CASES = [
    # the HTTP head does not parse
    ("bad_header_line",
     lambda k: msg_head(k, ["this line has no colon"]),
     400, "invalid_request_error"),
    ("space_before_colon",
     lambda k: msg_head(k, ["X-Thing : 1"]),
     400, "invalid_request_error"),
    ("header_section_over_client_max_header_size",
     lambda k: msg_head(k, ["x-big: " + "y" * 20000]),
     431, "invalid_request_error"),
    ("request_line_too_long",
     lambda k: msg_head(k, target=MSGS_PATH + "?q=" + "a" * 9000),
     414, "invalid_request_error"),
    ("bad_http_version",
     lambda k: msg_head(k).replace(b"HTTP/1.1\r\n", b"HTTP/2.0\r\n", 1),
     505, "api_error"),
    ("chunked_and_content_length",
     lambda k: msg_head(k, ["Transfer-Encoding: chunked"]),
     400, "invalid_request_error"),
    ("unknown_transfer_coding",
     lambda k: msg_head(k, ["Transfer-Encoding: gzip"], body=None),
     501, "api_error"),
    # the head parses, the request is refused before the body
    ("method_not_allowed",
     lambda k: msg_head(k, method="GET", body=None),
     405, "invalid_request_error"),
    ("no_content_length",
     lambda k: msg_head(k, body=None),
     411, "invalid_request_error"),
    ("content_length_over_client_max_body_size",
     lambda k: msg_head(k, ["Content-Length: 999999999999"], body=None),
     413, "request_too_large"),
    # the key
    ("missing_api_key",
     lambda k: msg_head(None),
     401, "authentication_error"),
    ("unknown_api_key",
     lambda k: msg_head("sk-sluice-" + "z" * 43),
     401, "authentication_error"),
    # the body
    ("body_not_json",
     lambda k: msg_head(k, body=b"this is not json"),
     400, "invalid_request_error"),
]


@pytest.fixture
def keyed_gateway(sluice, tmp_path):
    """A sluiced with one key, claude-* on an Anthropic upstream nobody
    listens on (no case here gets as far as the upstream)."""
    secret = "sk-sluice-" + secrets.token_urlsafe(32)
    path = tmp_path / "keys.conf"
    path.write_text("key tester {\n    hash sha256:%s;\n}\n" %
                    hashlib.sha256(secret.encode()).hexdigest())
    os.chmod(path, 0o600)

    def make(extra=""):
        s = sluice(upstreams={"anth": {
            "url": "http://127.0.0.1:%d" % closed_port(),
            "protocol": "anthropic"}},
            extra="keys_file %s;\n%s" % (path, extra))
        return s, secret

    return make


def assert_anthropic_error(st, h, body, want_status, want_type,
                           want_rid=None):
    assert st == want_status, (st, h, body)
    assert h.get("content-type", "").startswith("application/json"), h
    rid = h.get("x-request-id", "")
    assert UUID_RE.match(rid), "x-request-id %r" % rid
    if want_rid is not None:
        assert rid == want_rid, (rid, want_rid)
    doc = json.loads(body)
    assert doc.get("type") == "error", doc
    assert doc["error"]["type"] == want_type, doc
    assert isinstance(doc["error"]["message"], str) and \
        doc["error"]["message"], doc
    assert doc.get("request_id") == rid, (
        "body request_id %r, x-request-id %r" % (doc.get("request_id"), rid))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_anthropic_error_from_sluice_carries_the_request_id_of_its_header(
        keyed_gateway, case):
    _, build, want_status, want_type = case
    s, secret = keyed_gateway()
    st, h, body = raw_exchange(s.port, build(secret))
    assert_anthropic_error(st, h, body, want_status, want_type)


def test_anthropic_error_keeps_the_request_id_the_client_sent(
        keyed_gateway):
    """A client's own x-request-id is echoed as x-client-request-id; the
    error's request id, in the header and the body alike, is sluice's."""
    s, _ = keyed_gateway()
    st, h, body = raw_exchange(s.port, msg_head(
        "sk-sluice-" + "z" * 43, ["x-request-id: " + CLIENT_RID]))
    assert_anthropic_error(st, h, body, 401, "authentication_error")
    assert h.get("x-client-request-id") == CLIENT_RID, h
    assert h.get("x-request-id") != CLIENT_RID, h


def test_header_timeout_on_messages_is_anthropic_error_with_request_id(
        keyed_gateway):
    """A head to /v1/messages that never ends: after client_header_timeout
    the 408 is in Anthropic's shape, request_id = x-request-id."""
    s, _ = keyed_gateway(extra="client_header_timeout 1s;")
    t0 = time.monotonic()
    st, h, body = raw_exchange(
        s.port, b"POST /v1/messages HTTP/1.1\r\nHost: sluice\r\n",
        timeout=6.0)
    assert time.monotonic() - t0 < 5.0
    assert_anthropic_error(st, h, body, 408, "invalid_request_error")
