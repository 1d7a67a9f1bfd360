"""Errors made by sluice itself: right status, the caller's error JSON, and
x-request-id on every answer."""

import json
import re
import time
import uuid

from conftest import closed_port, post

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}
MESSAGES = {"model": "claude-test", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                     r"[0-9a-f]{12}$", re.I)


def openai_error(st, headers, body, want):
    assert st == want, (st, body)
    assert headers.get("content-type", "").startswith("application/json"), \
        headers
    doc = json.loads(body)
    err = doc["error"]
    assert isinstance(err["message"], str) and err["message"], doc
    for k in ("type", "param", "code"):
        assert k in err, doc
    return err


def test_upstream_connect_failure_is_502(sluice):
    s = sluice(upstreams={"down": "http://127.0.0.1:%d" % closed_port()})
    st, h, body = post(s.port, "/v1/chat/completions", CHAT)
    openai_error(st, h, body, 502)


def test_upstream_connect_failure_on_messages_is_anthropic_502(sluice):
    s = sluice(upstreams={"down": {"url": "http://127.0.0.1:%d" %
                                   closed_port(), "protocol": "anthropic"}})
    st, h, body = post(s.port, "/v1/messages", MESSAGES)
    assert st == 502, body
    doc = json.loads(body)
    assert doc["type"] == "error", doc
    assert doc["error"]["type"] and doc["error"]["message"], doc


def test_upstream_timeout_is_504(mock, sluice):
    s = sluice(upstreams={"mock": {"url": mock.url, "read_timeout": "1s"}})
    t0 = time.monotonic()
    st, h, body = post(s.port, "/v1/chat/completions", CHAT,
                       headers={"x-mock-hang": "1"})
    took = time.monotonic() - t0
    openai_error(st, h, body, 504)
    assert 0.8 <= took < 5, took
    # The hung upstream connection is not reused: the next request works.
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert st == 200, body


def test_unknown_path_is_404(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    st, h, body = post(s.port, "/v1/nosuch", CHAT)
    openai_error(st, h, body, 404)
    assert mock.stats()["requests"] == 0


def test_bad_json_is_400(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    st, h, body = post(s.port, "/v1/chat/completions", b'{"model": "x",')
    openai_error(st, h, body, 400)
    assert mock.stats()["requests"] == 0


def test_missing_model_is_400(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    st, h, body = post(s.port, "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "hi"}]})
    openai_error(st, h, body, 400)


def test_body_over_client_max_body_size_is_413(mock, sluice):
    s = sluice(upstreams={"mock": mock.url},
               extra="client_max_body_size 1k;")
    big = dict(CHAT, messages=[{"role": "user", "content": "x" * 4000}])
    st, h, body = post(s.port, "/v1/chat/completions", big)
    openai_error(st, h, body, 413)
    assert mock.stats()["requests"] == 0
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert st == 200, body


def test_header_over_client_max_header_size_is_431(mock, sluice):
    s = sluice(upstreams={"mock": mock.url},
               extra="client_max_header_size 1k;")
    st, h, body = post(s.port, "/v1/chat/completions", CHAT,
                       headers={"x-big": "y" * 4000})
    openai_error(st, h, body, 431)
    assert mock.stats()["requests"] == 0


def test_request_id_is_generated_and_sent_both_ways(mock, sluice):
    s = sluice(upstreams={"mock": mock.url})
    st, h, body = post(s.port, "/v1/chat/completions", CHAT)
    assert st == 200, body
    rid = h.get("x-request-id")
    assert rid and UUID_RE.match(rid), h
    assert mock.last()["headers"].get("x-request-id") == rid
    st, h2, _ = post(s.port, "/v1/chat/completions", CHAT)
    assert h2.get("x-request-id") != rid, "request ids repeat"


def test_client_request_id_is_echoed_but_never_the_key(mock, sluice):
    """A client's x-request-id comes back as x-client-request-id; the
    request's own id (x-request-id, to the client and the upstream) is
    sluice's UUIDv7, a new one each time even when the client repeats
    its id."""
    s = sluice(upstreams={"mock": mock.url})
    rid = str(uuid.uuid4())
    seen = set()
    for _ in range(2):
        st, h, body = post(s.port, "/v1/chat/completions", CHAT,
                           headers={"x-request-id": rid})
        assert st == 200, body
        assert h.get("x-client-request-id") == rid, h
        own = h.get("x-request-id")
        assert own != rid and UUID_RE.match(own), h
        assert uuid.UUID(own).version == 7, own
        assert mock.last()["headers"].get("x-request-id") == own
        seen.add(own)
    assert len(seen) == 2, seen


def test_error_answers_carry_request_id(sluice):
    s = sluice(upstreams={"down": "http://127.0.0.1:%d" % closed_port()})
    st, h, body = post(s.port, "/v1/chat/completions", CHAT)
    assert st == 502, body
    assert UUID_RE.match(h.get("x-request-id", "")), h
