"""Translation between OpenAI chat completions and Anthropic Messages.

A request whose format is not its upstream's is rewritten for the
upstream and its answer for the client, streamed or not, tool calls
included, and its usage row carries the upstream's own numbers (read
from the upstream's bytes, not the translated ones) with both formats
named.  The official SDKs from npm (tests/sdk/xlate_check.mjs) make a
tool call round trip each way, streamed and not; the other tests speak
HTTP directly and look at what the mock received.

mockllm reports the tokens each request forces (x-mock-*-tokens), so every
number is checked exactly: what the SDK reports, in its own format's split
of the cached input, and the row, in the upstream's.
"""

import hashlib
import json
import os
import subprocess
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from conftest import HOST, UsageDb, post, read_stream, wait_for

import http.client

SECRET = "sk-sluice-xlate-test-0123456789abcdef"
# USD per 1M tokens: input, output, cached input
PRICES = {"claude-*": ("3", "15", "0.30"), "gpt-*": ("0.15", "0.60", "0.075")}
P, C, K = 31, 7, 10             # what the mock is told to report
TOKENS = {"x-mock-prompt-tokens": str(P), "x-mock-completion-tokens": str(C),
          "x-mock-cached-tokens": str(K)}
COLS = ("model", "endpoint", "stream", "status", "error_class",
        "prompt_tokens", "completion_tokens", "cached_tokens",
        "cost_micro_usd", "usage_source", "client_format", "upstream_format",
        "upstream", "served_model")
TOOLS_OA = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object"}}}]
TOOLS_AN = [{"name": "get_weather", "input_schema": {"type": "object"}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Db(UsageDb):

    def where(self, column, value, timeout=15.0):
        """The one row whose COLUMN is VALUE, waited for."""
        def get():
            try:
                r = self.query("SELECT %s FROM usage_events WHERE %s = %%s"
                               % (", ".join(COLS), column), (value,))
            except psycopg.errors.UndefinedTable:
                return None
            return r
        rows = wait_for(get, timeout, what="the row of %s" % value)
        assert len(rows) == 1, rows
        return dict(zip(COLS, rows[0]))


@pytest.fixture
def db(make_db):
    return make_db(Db)


def cost(model, prompt, cached, completion):
    """micro-USD, rounded once, as sluice prices: cached input at the
    cached price, the rest of the input at the input price."""
    inp, outp, cch = (Decimal(x) for x in PRICES[model])
    usd = (prompt - cached) * inp + cached * cch + completion * outp
    return int(usd.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture
def xs(sluice, mock, db, tmp_path):
    """sluiced with an OpenAI-format and an Anthropic upstream (both the
    mock), claude-* to the latter, everything else to the former."""
    keys = tmp_path / "keys.conf"
    keys.write_text("key xlate {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    keys.chmod(0o600)
    prices = "".join("price %s input %s output %s cached %s;\n" %
                     (m, *p) for m, p in PRICES.items())
    return sluice(upstreams={"oai": mock.url,
                             "anth": {"url": mock.url,
                                      "protocol": "anthropic"}},
                  routes=[("claude-*", "anth"), ("*", "oai")],
                  extra='database "%s";\nkeys_file %s;\n%s' %
                  (db.conninfo(), keys, prices))


def auth(extra=None):
    h = {"Authorization": "Bearer " + SECRET}
    h.update(TOKENS)
    h.update(extra or {})
    return h


def row_of(db, h):
    return db.where("request_id", h["x-request-id"])


# ---------------------------------------------------------------------------
# The official SDKs, both ways, with tool call round trips.
# ---------------------------------------------------------------------------

def test_sdks_across_formats_with_tool_round_trips(sdk, xs, db):
    r = subprocess.run(["node", "xlate_check.mjs"], cwd=sdk,
                       env=dict(os.environ,
                                SLUICE_URL="http://%s:%d" % (HOST, xs.port),
                                SLUICE_KEY=SECRET),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])

    # OpenAI's SDK on claude-*: Anthropic's input_tokens (31) leaves the
    # cache (10) out, OpenAI's prompt_tokens counts it
    oa_usage = {"prompt_tokens": P + K, "completion_tokens": C,
                "total_tokens": P + K + C,
                "prompt_tokens_details": {"cached_tokens": K}}
    for o in (out["oa"], out["oa_stream"]):
        assert o["finish1"] == "tool_calls", o
        assert o["call"]["name"] == "get_weather", o
        assert o["call"]["args"] == {"city": "Paris"}, o
        assert o["call"]["id"].startswith("toolu_mock"), o
        assert o["text2"].startswith("Hello from the mock"), o
        assert o["finish2"] == "stop", o
        assert o["usage1"] == oa_usage and o["usage2"] == oa_usage, o
    assert out["oa"]["object"] == "chat.completion"
    # role, the call's id and name, 2 argument pieces, finish, usage
    assert out["oa_stream"]["chunks"] == 6, out["oa_stream"]

    # Anthropic's SDK on gpt-*: OpenAI's prompt_tokens (31) holds the
    # cached 10, Anthropic's input_tokens does not
    for o in (out["an"], out["an_stream"]):
        assert o["stop1"] == "tool_use", o
        assert o["call"]["name"] == "get_weather", o
        assert o["call"]["input"] == {"city": "Paris"}, o
        assert o["call"]["id"].startswith("call_mock"), o
        assert o["text2"].startswith("Hello from the mock"), o
        assert o["stop2"] == "end_turn", o
        for u in (o["usage1"], o["usage2"]):
            assert (u["input_tokens"], u["output_tokens"],
                    u["cache_read_input_tokens"]) == (P - K, C, K), o
    assert out["an"]["type"] == "message"
    assert out["an_stream"]["types"] == [
        "message_start", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta",
        "message_stop"], out["an_stream"]

    # errors in the caller's shape, with the upstream's status and message
    assert out["oa_error"] == {"status": 429, "name": "RateLimitError",
                               "message": "mock failure",
                               "type": "rate_limit_error"}, out
    assert out["an_error"] == {"status": 503,
                               "name": "ServiceUnavailableError",
                               "message": "mock failure",
                               "type": "api_error"}, out
    assert out["oa_refused"]["status"] == 400, out
    assert "n greater than 1" in out["oa_refused"]["message"], out

    # the rows: the upstream's numbers exactly, both formats named
    for cid, stream in (("oa-1", False), ("oa-2", False), ("oa-s1", True),
                        ("oa-s2", True)):
        row = db.where("client_request_id", cid)
        assert row == dict(
            model="claude-sonnet-4-5", endpoint="/v1/chat/completions",
            stream=stream, status=200, error_class=None,
            prompt_tokens=P + K, completion_tokens=C, cached_tokens=K,
            cost_micro_usd=cost("claude-*", P + K, K, C),
            usage_source="upstream", client_format="openai",
            upstream_format="anthropic", upstream="anth",
            served_model="claude-sonnet-4-5"), (cid, row)
    for cid, stream in (("an-1", False), ("an-2", False), ("an-s1", True),
                        ("an-s2", True)):
        row = db.where("client_request_id", cid)
        assert row == dict(
            model="gpt-4o-mini", endpoint="/v1/messages", stream=stream,
            status=200, error_class=None, prompt_tokens=P,
            completion_tokens=C, cached_tokens=K,
            cost_micro_usd=cost("gpt-*", P, K, C), usage_source="upstream",
            client_format="anthropic", upstream_format="openai",
            upstream="oai", served_model="gpt-4o-mini"), (cid, row)


# ---------------------------------------------------------------------------
# What the upstream receives, and what the client gets back.
# ---------------------------------------------------------------------------

def test_openai_request_reaches_anthropic_translated(xs, mock, db):
    body = {"model": "claude-sonnet-4-5", "messages": [
        {"role": "system", "content": "Be brief."}] + ASK,
        "tools": TOOLS_OA, "tool_choice": "required", "temperature": 0.3,
        "stop": "END", "user": "u-7", "max_completion_tokens": 99}
    st, h, data = post(xs.port, "/v1/chat/completions", body,
                       headers=auth())
    assert st == 200, data
    assert h["content-type"] == "application/json"
    ans = json.loads(data)
    assert ans["object"] == "chat.completion"
    assert ans["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}
    last = mock.last()
    assert last["path"] == "/v1/messages"
    assert last["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in last["headers"]
    sent = json.loads(last["body"])
    assert sent == {
        "model": "claude-sonnet-4-5", "max_tokens": 99,
        "messages": [{"role": "user",
                      "content": "What is the weather in Paris?"}],
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [{"name": "get_weather",
                   "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"}, "temperature": 0.3,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-7"}}, sent
    assert int(last["headers"]["content-length"]) == len(last["body"])
    row = row_of(db, h)
    assert (row["prompt_tokens"], row["completion_tokens"],
            row["client_format"], row["upstream_format"]) == \
        (P + K, C, "openai", "anthropic"), row


def test_anthropic_request_reaches_openai_translated(xs, mock, db):
    body = {"model": "gpt-4o-mini", "max_tokens": 64, "system": "Be brief.",
            "messages": ASK, "stream": True,
            "metadata": {"user_id": "u-8"}}
    st, h, data = post(xs.port, "/v1/messages", body,
                       headers=auth({"anthropic-version": "2023-06-01",
                                     "anthropic-beta": "x-2025",
                                     "Accept-Encoding": "gzip"}))
    assert st == 200, data
    assert h["content-type"] == "text/event-stream"
    last = mock.last()
    assert last["path"] == "/v1/chat/completions"
    for name in ("anthropic-version", "anthropic-beta", "accept-encoding"):
        assert name not in last["headers"], last["headers"]
    assert json.loads(last["body"]) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}] + ASK,
        "max_tokens": 64, "user": "u-8", "stream": True,
        "stream_options": {"include_usage": True}}
    events = [e for e in data.decode().split("\n\n") if e]
    names = [e.split("\n")[0] for e in events]
    assert names[0] == "event: message_start"
    assert names[-2:] == ["event: message_delta", "event: message_stop"]
    delta = json.loads(events[-2].split("data: ", 1)[1])
    assert delta["usage"] == {"input_tokens": P - K, "output_tokens": C,
                              "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": K}
    row = row_of(db, h)
    assert (row["prompt_tokens"], row["completion_tokens"],
            row["cached_tokens"], row["stream"], row["usage_source"]) == \
        (P, C, K, True, "upstream"), row


def test_translated_stream_goes_out_event_by_event(xs, mock):
    """Each upstream event reaches the client before the next is sent:
    with 150 ms between the mock's events, the client's pieces arrive
    spread over the stream, not in one piece at its end."""
    conn = http.client.HTTPConnection(HOST, xs.port, timeout=20)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps({
            "model": "claude-sonnet-4-5", "stream": True,
            "messages": ASK}), auth({"Content-Type": "application/json",
                                     "x-mock-chunks": "4",
                                     "x-mock-chunk-delay-ms": "150"}))
        resp = conn.getresponse()
        assert resp.status == 200
        pieces = read_stream(resp)
    finally:
        conn.close()
    text = b"".join(p for _, p in pieces).decode()
    contents = [json.loads(e[6:])["choices"][0]["delta"].get("content")
                for e in text.split("\n\n") if e.startswith("data: {")
                and json.loads(e[6:])["choices"]]
    assert [c for c in contents if c] == ["Hello ", "from ", "the ",
                                          "mock "]
    assert text.endswith("data: [DONE]\n\n")
    # no usage chunk: the client did not ask for include_usage
    assert '"usage"' not in text
    # the events came apart in time: first to last spans the delays
    assert len(pieces) >= 4, pieces
    assert pieces[-1][0] - pieces[0][0] >= 0.3, pieces


def test_upstream_errors_come_back_in_the_callers_shape(xs, mock, db):
    st, h, data = post(xs.port, "/v1/chat/completions",
                       {"model": "claude-sonnet-4-5", "messages": ASK},
                       headers=auth({"x-mock-status": "529"}))
    assert st == 529, data
    assert json.loads(data) == {"error": {
        "message": "mock failure", "type": "overloaded_error",
        "param": None, "code": None}}
    row = row_of(db, h)
    assert (row["status"], row["usage_source"], row["upstream"]) == \
        (529, "none", "anth"), row

    st, h, data = post(xs.port, "/v1/messages",
                       {"model": "gpt-4o-mini", "max_tokens": 5,
                        "messages": ASK, "stream": True},
                       headers=auth({"x-mock-status": "401"}))
    assert st == 401, data
    body = json.loads(data)
    assert body["type"] == "error", body
    assert body["error"] == {"type": "authentication_error",
                             "message": "mock failure"}, body
    assert body["request_id"] == h["x-request-id"]


def test_untranslatable_requests_are_a_400_naming_why(xs, mock, db):
    cases = [
        ("/v1/chat/completions", {"model": "claude-sonnet-4-5",
                                  "messages": ASK, "n": 3},
         "n greater than 1"),
        ("/v1/chat/completions", {"model": "claude-sonnet-4-5",
                                  "messages": ASK, "logprobs": True},
         "logprobs"),
        ("/v1/chat/completions", {"model": "claude-sonnet-4-5",
                                  "messages": ASK,
                                  "modalities": ["text", "audio"]},
         "audio"),
        # Anthropic refuses thinking with a forced tool: not sent at all
        ("/v1/chat/completions", {"model": "claude-sonnet-4-5",
                                  "messages": ASK, "tools": TOOLS_OA,
                                  "tool_choice": "required",
                                  "reasoning_effort": "low"},
         "forced tool"),
        ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 5,
                          "messages": [{"role": "user", "content": [
                              {"type": "document", "source": {}}]}]},
         "`document` blocks"),
        ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 5,
                          "messages": ASK, "tools": [
                              {"type": "web_search_20250305",
                               "name": "web_search"}]},
         "server tool"),
    ]
    before = mock.stats()["requests"]
    for path, body, why in cases:
        st, h, data = post(xs.port, path, body, headers=auth())
        assert st == 400, (path, data)
        err = json.loads(data)["error"]
        assert why in err["message"], (why, err)
        if path == "/v1/messages":
            assert json.loads(data)["type"] == "error"
        else:
            assert err["code"] == "untranslatable", err
        row = row_of(db, h)
        assert (row["status"], row["error_class"], row["upstream"]) == \
            (400, "untranslatable", None), row
    assert mock.stats()["requests"] == before, "an upstream was asked"


def test_endpoints_that_do_not_translate(xs, mock):
    st, _, data = post(xs.port, "/v1/embeddings",
                       {"model": "claude-sonnet-4-5", "input": "x"},
                       headers=auth())
    assert st == 400, data
    err = json.loads(data)["error"]
    assert err["code"] == "unsupported_endpoint", err
    assert "only /v1/chat/completions" in err["message"], err


def test_count_tokens_is_answered_locally_for_openai_upstreams(xs, mock,
                                                               db):
    body = {"model": "gpt-4o-mini", "messages": ASK}
    before = mock.stats()["requests"]
    st, h, data = post(xs.port, "/v1/messages/count_tokens", body,
                       headers=auth())
    assert st == 200, data
    n = len(json.dumps(body).encode())
    assert json.loads(data) == {"input_tokens": (n + 3) // 4}
    assert mock.stats()["requests"] == before
    row = row_of(db, h)
    assert (row["status"], row["endpoint"], row["upstream"],
            row["usage_source"]) == (200, "/v1/messages/count_tokens", None,
                                     "none"), row


def test_route_max_tokens_is_the_default_sent_to_anthropic(sluice, mock):
    s = sluice(upstreams={"anth": {"url": mock.url,
                                   "protocol": "anthropic"}},
               routes=[("*", "anth max_tokens 777")])
    st, _, data = post(s.port, "/v1/chat/completions",
                       {"model": "claude-x", "messages": ASK})
    assert st == 200, data
    assert json.loads(mock.last()["body"])["max_tokens"] == 777


def test_passthrough_is_byte_for_byte(xs, mock):
    """Same format both sides: the upstream gets the client's bytes."""
    raw = (b'{"model":"claude-sonnet-4-5" ,"max_tokens":5,\n'
           b'"messages":[{"role":"user","content":"caf\\u00e9"}],'
           b'"top_k":3}')
    st, _, data = post(xs.port, "/v1/messages", raw, headers=auth())
    assert st == 200, data
    assert mock.last()["body"].encode() == raw
    st, _, data = post(xs.port, "/v1/chat/completions",
                       b'{"messages":[],"n":2, "model":"gpt-4o-mini"}',
                       headers=auth())
    assert st == 200, data
    assert mock.last()["body"] == '{"messages":[],"n":2, "model":' \
        '"gpt-4o-mini"}'


def test_a_cut_translated_stream_is_estimated_and_marked(xs, mock, db):
    conn = http.client.HTTPConnection(HOST, xs.port, timeout=20)
    pieces = []
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps({
            "model": "claude-sonnet-4-5", "stream": True,
            "messages": ASK}), auth({"Content-Type": "application/json",
                                     "x-mock-chunks": "6",
                                     "x-mock-drop-after-chunks": "3"}))
        resp = conn.getresponse()
        rid = resp.getheader("x-request-id")
        pieces = read_stream(resp)
    except http.client.IncompleteRead as e:
        pieces.append((0, e.partial))
    finally:
        conn.close()
    text = b"".join(p for _, p in pieces).decode()
    assert "[DONE]" not in text
    row = db.where("request_id", rid)
    assert row["error_class"] == "upstream_truncated", row
    assert row["usage_source"] == "estimated", row


def test_client_credentials_follow_the_upstreams_format(sluice, mock):
    """Without keys of sluice's own, the client's credential goes on to
    the upstream, in the header the upstream's format reads."""
    s = sluice(upstreams={"oai": mock.url,
                          "anth": {"url": mock.url,
                                   "protocol": "anthropic"}},
               routes=[("claude-*", "anth"), ("*", "oai")])
    st, _, data = post(s.port, "/v1/messages",
                       {"model": "gpt-4o-mini", "max_tokens": 5,
                        "messages": ASK}, headers={"x-api-key": "sk-abc"})
    assert st == 200, data
    h = mock.last()["headers"]
    assert h.get("authorization") == "Bearer sk-abc", h
    assert "x-api-key" not in h, h
    st, _, data = post(s.port, "/v1/chat/completions",
                       {"model": "claude-x", "messages": ASK},
                       headers={"Authorization": "Bearer sk-xyz"})
    assert st == 200, data
    h = mock.last()["headers"]
    assert h.get("x-api-key") == "sk-xyz", h
    assert "authorization" not in h, h


def test_every_row_names_the_clients_format(xs, db):
    st, h, _ = post(xs.port, "/v1/messages",
                    {"model": "gpt-4o-mini", "max_tokens": 5,
                     "messages": ASK}, headers={"x-api-key": "sk-wrong"})
    assert st == 401
    row = row_of(db, h)
    assert (row["client_format"], row["upstream_format"]) == \
        ("anthropic", None), row
