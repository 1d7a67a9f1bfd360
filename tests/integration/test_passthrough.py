"""Requests through sluice come back as if sent straight to the upstream.

mockllm's answers are deterministic except for a per-request sequence
number inside ids ("chatcmpl-mock17", "msg_mock17") and the "created" /
"created_at" timestamps; normalize() rewrites exactly those and nothing
else, so the rest of the body is compared byte for byte.
"""

import http.client
import json
import re

import pytest

from conftest import HOST, post, read_stream

ID_RE = re.compile(rb'"((?:chatcmpl-|cmpl-|resp_|msg_)mock)\d+"')
CREATED_RE = re.compile(rb'"(created|created_at)":\d+')

CHAT = {"model": "gpt-test", "messages": [
    {"role": "user", "content": "Say hello, with unicode: \u00e9\u4e2d"}]}
CASES = [
    ("/v1/chat/completions", CHAT),
    ("/v1/completions", {"model": "gpt-test", "prompt": "Say hello"}),
    ("/v1/embeddings", {"model": "text-embedding-test", "input": "hello"}),
    ("/v1/responses", {"model": "gpt-test", "input": "Say hello"}),
    ("/v1/messages", {"model": "claude-test", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hi"}]}),
]


def normalize(body):
    body = ID_RE.sub(rb'"\1N"', body)
    return CREATED_RE.sub(rb'"\1":N', body)


def two_upstreams(mock):
    """OpenAI-style models to one upstream block, claude-* to an
    Anthropic-protocol block; both are the same mock."""
    return dict(
        upstreams={"oai": mock.url,
                   "anth": {"url": mock.url, "protocol": "anthropic"}},
        routes=[("claude-*", "anth"), ("*", "oai")])


@pytest.mark.parametrize("path,body", CASES, ids=[c[0] for c in CASES])
def test_non_streaming_response_is_identical_to_direct(mock, sluice, path,
                                                       body):
    s = sluice(**two_upstreams(mock))
    raw = json.dumps(body).encode()
    dst, dh, dbody = post(mock.port, path, raw)
    st, h, sbody = post(s.port, path, raw)
    assert dst == 200, dbody
    assert st == dst, sbody
    assert h.get("content-type") == dh.get("content-type")
    assert normalize(sbody) == normalize(dbody)
    # The request reached the upstream unchanged.
    last = mock.last()
    assert last["path"] == path
    assert last["body"].encode() == raw


def stream_request(port, path, body, headers=None, timeout=15.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    conn.request("POST", path, body=json.dumps(body).encode(), headers=hdrs)
    return conn, conn.getresponse()


STREAM_CASES = [
    ("/v1/chat/completions",
     dict(CHAT, stream=True, stream_options={"include_usage": True})),
    ("/v1/completions", {"model": "gpt-test", "prompt": "hi",
                         "stream": True,
                         "stream_options": {"include_usage": True}}),
    ("/v1/responses", {"model": "gpt-test", "input": "hi", "stream": True}),
    ("/v1/messages", {"model": "claude-test", "max_tokens": 64,
                      "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}),
]
STREAM_IDS = ["chat", "completions", "responses", "messages"]


@pytest.mark.parametrize("path,body", STREAM_CASES, ids=STREAM_IDS)
def test_stream_is_identical_to_direct(mock, sluice, path, body):
    """Same status, text/event-stream, same events in the same order."""
    s = sluice(**two_upstreams(mock))
    sbody, dbody = stream_both(mock, s, path, body)
    assert normalize(sbody).decode() == normalize(dbody).decode()


def test_stream_without_include_usage_is_metered_with_one_more_chunk(
        mock, sluice):
    """To meter a stream whose client did not ask for usage, sluice asks
    the upstream for it (stream_options.include_usage).  The client then
    gets what OpenAI sends with that option set: the same content chunks,
    one more chunk with "choices":[] and the usage, then [DONE]."""
    s = sluice(**two_upstreams(mock))
    cases = [("/v1/chat/completions", dict(CHAT, stream=True)),
             ("/v1/completions", {"model": "gpt-test", "prompt": "hi",
                                  "stream": True})]
    for path, body in cases:
        sbody, _ = stream_both(mock, s, path, body)
        assert '"include_usage":true' in mock.last()["body"], path
        asked = dict(body, stream_options={"include_usage": True})
        _, dbody = stream_both(mock, s, path, asked)
        assert b'"choices":[]' in sbody, (path, sbody.decode())
        assert normalize(sbody).decode() == normalize(dbody).decode(), path


def stream_both(mock, s, path, body):
    """The same stream request direct and through sluice: both bodies."""
    hdrs = {"x-mock-chunks": "5", "x-mock-prompt-tokens": "7"}
    results = []
    for port in (mock.port, s.port):
        conn, resp = stream_request(port, path, body, hdrs)
        try:
            data = b"".join(d for _, d in read_stream(resp))
            results.append((resp.status, resp.getheader("content-type"),
                            data))
        finally:
            conn.close()
    (dst, dct, dbody), (st, ct, sbody) = results
    assert dst == 200 and dct.startswith("text/event-stream"), dbody
    assert st == 200, sbody
    assert ct is not None and ct.startswith("text/event-stream"), ct
    return sbody, dbody


@pytest.mark.parametrize("path,body", [STREAM_CASES[0], STREAM_CASES[3]],
                         ids=["chat", "messages"])
def test_stream_events_arrive_incrementally(mock, sluice, path, body):
    """5 events 100 ms apart: the first reaches the client well before the
    last, i.e. sluice relays events as they come instead of buffering."""
    s = sluice(**two_upstreams(mock))
    conn, resp = stream_request(s.port, path, body,
                                {"x-mock-chunks": "5",
                                 "x-mock-chunk-delay-ms": "100"})
    try:
        assert resp.status == 200
        pieces = read_stream(resp)
    finally:
        conn.close()
    assert pieces, "empty stream"
    first, end = pieces[0][0], pieces[-1][0]
    body = b"".join(d for _, d in pieces)
    assert body.count(b"data: ") >= 5, body
    assert end - first >= 0.3, (
        "first piece arrived only %.0f ms before the end; %d pieces" %
        ((end - first) * 1000, len(pieces)))


def test_hop_by_hop_headers_dropped_end_to_end_headers_kept(mock, sluice):
    """RFC 9110 7.6.1: the Connection header and the fields it names, and
    Keep-Alive, Proxy-Connection, TE, Upgrade, are for this hop only; the
    API's own headers (anthropic-version, anthropic-beta, openai-beta,
    user-agent, ...) must reach the upstream unchanged."""
    s = sluice(**two_upstreams(mock))
    st, _, body = post(s.port, "/v1/messages", CASES[4][1], headers={
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "do-not-forward",
        "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31",
        "openai-beta": "assistants=v2",
        "User-Agent": "sluice-test/1.0",
        "X-Custom": "kept",
    })
    assert st == 200, body
    got = mock.last()["headers"]
    for name in ("x-hop-secret", "keep-alive", "proxy-connection", "te"):
        assert name not in got, (name, got)
    assert "x-hop-secret" not in got.get("connection", "").lower(), got
    for name, value in (("anthropic-version", "2023-06-01"),
                        ("anthropic-beta", "prompt-caching-2024-07-31"),
                        ("openai-beta", "assistants=v2"),
                        ("user-agent", "sluice-test/1.0"),
                        ("x-custom", "kept")):
        assert got.get(name) == value, (name, got)
