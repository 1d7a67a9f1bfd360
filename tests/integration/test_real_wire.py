"""Compressed answers are metered exactly (issue 14, items 1 and 7).

The upstream is real_upstream.RealUpstream, which answers like a
provider's edge: it compresses in the coding the request asks for, after
a 100 and a 103, chunked, and writes its streams in small pieces with
CRLF line ends and keep-alive comments, cut inside events and keys.
Each test asserts what the user sees: the client gets exactly the bytes
the upstream sent (and they decode to the answer), and the usage row
carries the upstream's tokens and their cost; an answer sluice cannot
read is still billed, by estimate.
"""

import http.client
import json

import pytest

from real_upstream import (A_INPUT, A_OUTPUT, A_READ, A_WRITE, COMPLETION,
                           PROMPT, RealUpstream, decompress, words)
from test_hostile import (CHAT, PRICES, cost, db, gateway,  # noqa: F401
                          send, sse_events, strict)

MODEL = "gpt-4o-mini"
ENCODINGS = ["gzip", "deflate", "br", "zstd"]


@pytest.fixture
def real():
    ups = []

    def make(**kw):
        up = RealUpstream(**kw)
        ups.append(up)
        return up

    yield make
    for up in ups:
        up.stop()


def chat(stream):
    b = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return b


def exchange(s, up, stream, accept, extra=None):
    h = {"Accept-Encoding": accept} if accept is not None else {}
    h.update(extra or {})
    st, hdrs, data = send(s, CHAT, chat(stream), h)
    assert st == 200, (st, data[:300])
    return hdrs, data, up.last()


def exact_row(db, rid):
    row = db.row(rid)
    got = (row["usage_source"], row["prompt_tokens"],
           row["completion_tokens"], row["cost_micro_usd"])
    assert got == ("upstream", PROMPT, COMPLETION,
                   cost(MODEL, PROMPT, COMPLETION, PRICES)), row
    return row


def content_of(stream, plain):
    if not stream:
        return json.loads(plain)["choices"][0]["message"]["content"]
    return "".join(e["choices"][0]["delta"].get("content", "")
                   for e in sse_events(plain)
                   if e != "[DONE]" and e["choices"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("enc", ENCODINGS)
def test_compressed_answer_reaches_client_as_sent_and_is_metered(
        gateway, real, db, enc, stream):
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, stream, enc)
    assert seen["encoding"] == enc
    assert hdrs.get("content-encoding") == enc, hdrs
    assert data == seen["sent"], "the client got other bytes than were sent"
    plain = decompress(enc, data)
    assert content_of(stream, plain) == \
        "Hello, world! Compressed answers are metered exactly."
    exact_row(db, hdrs["x-request-id"])


# ~100 KB answers: 19,000 words whole, 700 one-word events streamed
LONG = {False: 19000, True: 700}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("enc", ENCODINGS)
def test_a_compressed_100kb_answer_is_whole_and_metered(
        gateway, real, db, enc, stream):
    """An answer of ~100 KB, compressed: the usage comes after all the
    text, many reads and many decoder outputs later."""
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, stream, enc,
                                {"x-real-words": str(LONG[stream])})
    assert hdrs.get("content-encoding") == enc, hdrs
    assert data == seen["sent"], "the client got other bytes than were sent"
    plain = decompress(enc, data)
    assert len(plain) >= 100 * 1024 > len(data), (len(plain), len(data))
    assert content_of(stream, plain) == "".join(words(LONG[stream]))
    row = exact_row(db, hdrs["x-request-id"])
    assert row["bytes_out"] >= len(data), row


def test_raw_deflate_is_metered(gateway, real, db):
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, True, "deflate",
                                {"x-real-raw-deflate": "1"})
    assert data == seen["sent"]
    exact_row(db, hdrs["x-request-id"])


def test_a_browser_list_reaches_the_upstream_filtered(gateway, real, db):
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, False,
                                "gzip, deflate, br, zstd, x-exotic;q=0.9")
    assert seen["headers"]["accept-encoding"] == "gzip, deflate, br, zstd"
    exact_row(db, hdrs["x-request-id"])


def test_compress_and_refused_gzip_leave_gzip_refused(gateway, real, db):
    """compress is dropped (sluice cannot read it); gzip;q=0 goes on as
    the refusal it is, so the upstream answers uncompressed."""
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, True, "compress, gzip;q=0")
    assert seen["headers"].get("accept-encoding") == "gzip;q=0"
    assert seen["encoding"] is None
    assert "content-encoding" not in hdrs
    assert data == seen["sent"]
    exact_row(db, hdrs["x-request-id"])


def test_only_unknown_codings_send_no_accept_encoding(gateway, real, db):
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, False, "compress, x-exotic, *")
    assert "accept-encoding" not in seen["headers"], seen["headers"]
    exact_row(db, hdrs["x-request-id"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_unreadable_coding_is_estimated_not_free(gateway, real, db, stream):
    """An upstream that ignores Accept-Encoding and answers in a coding
    sluice does not know: the client gets it as sent, the row is an
    estimate."""
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, stream, "gzip",
                                {"x-real-encoding": "x-exotic"})
    assert hdrs.get("content-encoding") == "x-exotic"
    assert data == seen["sent"]
    row = db.row(hdrs["x-request-id"])
    assert row["usage_source"] == "estimated", row
    assert row["prompt_tokens"] > 0 and row["cost_micro_usd"] >= 0, row


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("enc", ENCODINGS)
def test_corrupt_compressed_answer_is_relayed_and_estimated(
        gateway, real, db, enc, stream):
    s, up = gateway(up=real())
    hdrs, data, seen = exchange(s, up, stream, enc, {"x-real-corrupt": "1"})
    assert data == seen["sent"], "the client gets the bytes as sent"
    row = db.row(hdrs["x-request-id"])
    assert row["usage_source"] == "estimated", row
    # sluiced is still serving
    hdrs, data, seen = exchange(s, up, stream, enc)
    exact_row(db, hdrs["x-request-id"])


# -- Anthropic: pings, cumulative message_delta usage, cache writes ----------

CLAUDE = "claude-sonnet-4-5"
MSGS = "/v1/messages"


def message(stream):
    b = {"model": CLAUDE, "max_tokens": 64,
         "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        b["stream"] = True
    return b


def claude_cost(output):
    """In micro-USD at claude-sonnet-4-5's 3.00/15.00 (no cached price:
    reads at the input price; 5-minute writes at 1.25 times it)."""
    return (A_INPUT * 3 + A_READ * 3 + A_WRITE * 3.75 + output * 15)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("enc", [None] + ENCODINGS)
def test_anthropic_answer_with_cache_writes_is_metered_exactly(
        gateway, real, db, enc, stream):
    """message_delta repeats the input and cache counts cumulatively, with
    pings between events: the row counts each once, cache writes apart,
    and prices them at 1.25 times the input."""
    s, up = gateway(up=real(), protocol="anthropic")
    h = {"Accept-Encoding": enc} if enc else {}
    st, hdrs, data = send(s, MSGS, message(stream), h)
    assert st == 200, data[:300]
    seen = up.last()
    assert data == seen["sent"]
    row = db.row(hdrs["x-request-id"])
    got = {k: row[k] for k in ("usage_source", "prompt_tokens",
                               "completion_tokens", "cached_tokens",
                               "cache_write_5m_tokens",
                               "cache_write_1h_tokens", "cost_micro_usd",
                               "served_model")}
    assert got == {"usage_source": "upstream",
                   "prompt_tokens": A_INPUT + A_WRITE + A_READ,
                   "completion_tokens": A_OUTPUT, "cached_tokens": A_READ,
                   "cache_write_5m_tokens": A_WRITE,
                   "cache_write_1h_tokens": 0,
                   "cost_micro_usd": claude_cost(A_OUTPUT),
                   "served_model": CLAUDE}, row


@pytest.mark.parametrize("enc", [None, "gzip"])
def test_stream_closed_mid_answer_is_metered_from_what_arrived(
        gateway, real, db, enc):
    """The edge drops the stream after message_start and before
    message_delta: the row keeps message_start's counts, marked
    estimated (the bill is incomplete), and the cut is its error class."""
    s, up = gateway(up=real(), protocol="anthropic")
    h = {"x-real-close-after": "20"}
    if enc:
        h["Accept-Encoding"] = enc
    h.update({"Content-Type": "application/json",
              "anthropic-version": "2023-06-01"})
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=15)
    try:
        conn.request("POST", MSGS, json.dumps(message(True)).encode(), h)
        r = conn.getresponse()
        assert r.status == 200
        rid = r.getheader("x-request-id")
        with pytest.raises(http.client.IncompleteRead):
            r.read()        # the client sees the stream cut, too
    finally:
        conn.close()
    row = db.row(rid)
    got = {k: row[k] for k in ("usage_source", "error_class",
                               "prompt_tokens", "completion_tokens",
                               "cost_micro_usd")}
    assert got == {"usage_source": "estimated",
                   "error_class": "upstream_truncated",
                   "prompt_tokens": A_INPUT + A_WRITE + A_READ,
                   "completion_tokens": 1,
                   "cost_micro_usd": claude_cost(1)}, row


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_answer_cache_against_a_providers_edge(gateway, real, db,
                                                   stream):
    """The answer cache (issue 20) in front of an edge that answers after
    a 100 and a 103, chunked, a stream in pieces cut inside events and
    keys with CRLF and keep-alive comments: the plain answer is stored as
    the client got it and a hit replays those bytes exactly, billed with
    the upstream's tokens at cost 0; a compressed answer is relayed and
    never stored (and, once the arena is full, evicts nothing)."""
    s, up = gateway(up=real(), extra="cache 40k;\ncache_max_entry 4k;\n")

    def ask(text, accept=None):
        b = chat(stream)
        b["messages"][0]["content"] = text
        h = {"Accept-Encoding": accept} if accept else {}
        st, hdrs, data = send(s, CHAT, b, h)
        assert st == 200, (st, data[:300])
        return hdrs, data, up.last()

    hdrs, live, seen = ask("hi")
    assert seen["encoding"] is None
    assert hdrs["x-sluice-cache"] == "miss"
    assert content_of(stream, live) == \
        "Hello, world! Compressed answers are metered exactly."
    n = len(up.requests())
    hdrs, hit, _ = ask("hi")
    assert hdrs["x-sluice-cache"] == "hit"
    assert hit == live, "a hit replays other bytes than the live answer"
    assert len(up.requests()) == n, "a hit reached the upstream"
    row = db.row(hdrs["x-request-id"])
    assert (row["cache_hit"], row["prompt_tokens"], row["completion_tokens"],
            row["cost_micro_usd"], row["cost_saved_micro_usd"]) == \
        (True, PROMPT, COMPLETION, 0, cost(MODEL, PROMPT, COMPLETION, PRICES))
    # gzip asked and sent: relayed as sent, never stored
    hdrs, data, seen = ask("zipped", "gzip")
    assert hdrs.get("content-encoding") == "gzip"
    assert hdrs["x-sluice-cache"] == "miss"
    assert data == seen["sent"]
    assert ask("zipped", "gzip")[0]["x-sluice-cache"] == "miss"
    # a full arena (one set of 8 slots: "hi" and 7 more): compressed
    # answers push no entry out
    texts = ["hi"] + ["plain %d" % i for i in range(7)]
    for t in texts[1:]:
        assert ask(t)[0]["x-sluice-cache"] == "miss"
    before = len(up.requests())
    for i in range(4):
        assert ask("zipped %d" % i, "gzip")[0].get("content-encoding") == \
            "gzip"
    for t in texts:
        assert ask(t)[0]["x-sluice-cache"] == "hit", t
    assert len(up.requests()) == before + 4
