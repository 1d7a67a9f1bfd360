"""Hostile clients (issue 13): the request the upstream acts on is exactly
the request sluice checked, routed and billed, and no client can erase a
usage row.

A key holder is the attacker.  The upstream is strict_upstream.StrictUpstream,
which reads bodies the way Python and Go providers do (json.loads: escapes
decoded, the last of duplicate keys wins), serves the model named by the
parsed body and logs every request line, header and body it received; a
Content-Length that does not match the bytes sent shows up in its errors()
(a body that does not parse, or a next request that does not start with a
method).  Each test is named for the numbered finding of the issue it
reproduces and asserts what the user sees: the status and the JSON error in
the caller's shape, the usage row in PostgreSQL, and what the upstream got.

Every loop is bounded in count and time; everything is on 127.0.0.1; the
only processes ended are the ones the fixtures started.
"""

import hashlib
import http.client
import json
import os
import re
import resource
import secrets
import select
import socket
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from conftest import HOST, UsageDb, free_port, request, wait_for
from strict_upstream import StrictUpstream, tokens

CHAT = "/v1/chat/completions"
COMPL = "/v1/completions"
RESP = "/v1/responses"
MSGS = "/v1/messages"
MESSAGES = [{"role": "user", "content": "hello"}]
UPSTREAM_ENV = "SLUICE_TEST_STRICT_KEY"
UPSTREAM_KEY = "sk-upstream-strict-" + "k" * 24

# USD per 1M tokens (= micro-USD per token), first match wins; the
# catch-all is free, so a model priced by it costs 0.
PRICES = [("gpt-4o-mini", "0.15", "0.60"), ("gpt-4o", "2.50", "10.00"),
          ("o1-pro", "150", "600"), ("claude-sonnet-4-5", "3.00", "15.00"),
          ("*", "0", "0")]

LOG_LINE_RE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[\d+\] ")


def price_lines(prices=PRICES):
    return "\n".join("price %s input %s output %s;" % p for p in prices)


def cost(model, prompt, completion, prices=PRICES):
    """The micro-USD cost of PROMPT and COMPLETION tokens of MODEL, priced
    by the first line that is exactly MODEL (the tests never rely on a
    glob other than the catch-all)."""
    for glob, inp, out in prices:
        if glob == model or glob == "*":
            exact = prompt * Decimal(inp) + completion * Decimal(out)
            assert exact % 1 != Decimal("0.5"), "numbers that do not tie"
            return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    raise AssertionError("no price for %s" % model)


# ---------------------------------------------------------------------------
# Fixtures: strict upstreams, a database, keys, a gateway.
# ---------------------------------------------------------------------------

@pytest.fixture
def strict():
    """strict(**kw) -> a StrictUpstream; all are stopped at teardown.
    Requested before `sluice`, so sluiced stops first."""
    made = []

    def make(**kw):
        up = StrictUpstream(**kw)
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


class Db(UsageDb):

    def _q(self, sql, params=()):
        try:
            return self.query(sql, params)
        except psycopg.errors.UndefinedTable:
            return None

    def row(self, rid, timeout=15.0):
        """The row of request RID as {column: value} (every column, from
        row_to_json), waited for by bounded polling."""
        def get():
            r = self._q("SELECT row_to_json(u)::text FROM usage_events u "
                        "WHERE request_id = %s", (rid,))
            return json.loads(r[0][0]) if r else None
        return wait_for(get, timeout, what="the usage row of %s" % rid)

    def count(self, where="TRUE", params=()):
        r = self._q("SELECT count(*) FROM usage_events WHERE " + where,
                    params)
        return r[0][0] if r else 0

    def rows(self, where="TRUE", params=()):
        r = self._q("SELECT row_to_json(u)::text FROM usage_events u WHERE "
                    + where, params)
        return [json.loads(x[0]) for x in r] if r else []


@pytest.fixture
def db(make_db):
    return make_db(Db)


def new_secret():
    return "sk-sluice-" + secrets.token_urlsafe(32)


def keys_file(tmp_path, **keys):
    """keys_file(tmp_path, name={"models": .., "budget": .., "tpm": ..})
    -> (path, {name: secret})."""
    secrets_ = {}
    text = []
    for name, opts in keys.items():
        secret = new_secret()
        secrets_[name] = secret
        text.append("key %s {" % name)
        text.append("    hash sha256:%s;" %
                    hashlib.sha256(secret.encode()).hexdigest())
        for k, v in (opts or {}).items():
            text.append("    %s %s;" % (k, v))
        text.append("}")
    path = tmp_path / "keys.conf"
    path.write_text("\n".join(text) + "\n")
    os.chmod(path, 0o600)
    return str(path), secrets_


def bearer(secret):
    return {"Authorization": "Bearer " + secret}


@pytest.fixture
def gateway(strict, db, sluice, monkeypatch):
    """gateway(up=None, protocol="openai", upstream={more directives},
    extra="", keys=None, workers=1, routes=None, upstreams=None)
    -> (sluiced, strict upstream): sluiced metering into `db`, every model
    routed to one strict upstream carrying its own key."""
    monkeypatch.setenv(UPSTREAM_ENV, UPSTREAM_KEY)

    def make(up=None, protocol="openai", upstream=None, extra="", keys=None,
             workers=1, routes=None, upstreams=None, prices=PRICES,
             start=True):
        up = up or strict()
        spec = {"url": up.url, "protocol": protocol,
                "api_key_env": UPSTREAM_ENV, "read_timeout": "10s"}
        spec.update(upstream or {})
        conf = 'database "%s";\n%s\n%s' % (db.conninfo(), price_lines(prices),
                                          extra)
        if keys:
            conf += "\nkeys_file %s;" % keys
        s = sluice(upstreams=upstreams or {"up": spec},
                   routes=routes or [("*", "up")], extra=conf,
                   workers=workers, start=start)
        if start and keys and "budget" in open(keys).read():
            wait_for(lambda: "key spend loaded" in s.log_text(), 15,
                     what="the collector to load key spend")
        return s, up

    return make


def body_bytes(body):
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def send(s, path, body, headers=None, method="POST", timeout=15.0):
    """One request on a fresh connection: (status, headers, body)."""
    h = {"Content-Type": "application/json"}
    if path.startswith(MSGS):
        h["anthropic-version"] = "2023-06-01"
    h.update(headers or {})
    return request(s.port, method, path, body_bytes(body), h, timeout)


def openai_error(st, hdrs, data, status, code):
    assert st == status, (st, data[:500])
    doc = json.loads(data)
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert err.get("code") == code, doc
    assert err.get("type") and err.get("message"), doc
    assert hdrs.get("x-request-id"), hdrs
    return doc


def anthropic_error(st, hdrs, data, status):
    assert st == status, (st, data[:500])
    doc = json.loads(data)
    assert doc.get("type") == "error", doc
    assert doc["error"]["type"] == "invalid_request_error", doc
    assert doc["error"]["message"], doc
    assert doc.get("request_id") == hdrs.get("x-request-id"), (doc, hdrs)
    return doc


def sse_events(data):
    out = []
    for line in data.decode().splitlines():
        if line.startswith("data: "):
            d = line[6:]
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


def no_control_chars(row):
    """Every text value of ROW is free of C0 controls and DEL."""
    bad = {k: v for k, v in row.items() if isinstance(v, str) and
           any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in v)}
    assert not bad, "control characters in the usage row: %r" % bad


def log_is_clean(s):
    """No raw CR anywhere in sluiced's log, and every line is one of its
    own (starts with a timestamp and a pid): nothing forged a line."""
    with open(s.log_path, "rb") as f:
        text = f.read()
    assert b"\r" not in text, "a raw CR in the log: %r" % text[
        max(0, text.index(b"\r") - 200):text.index(b"\r") + 100]
    forged = [ln for ln in text.split(b"\n") if ln and
              not LOG_LINE_RE.match(ln)]
    assert not forged, "log lines not written by sluiced: %r" % forged[:5]


def chat_body(model="gpt-4o", **kw):
    b = {"model": model, "messages": MESSAGES}
    b.update(kw)
    return b


def no_upstream_request(up, what):
    assert up.requests() == [], "%s reached the upstream: %r" % (
        what, [r["line"] for r in up.requests()])


def upstream_clean(up):
    """Every request the upstream got was well formed and parsed."""
    assert up.errors() == [], up.errors()
    for r in up.requests():
        assert r.get("complete") and r["json_error"] is None, r


# ---------------------------------------------------------------------------
# 1. The model name reaches the Azure request line unchecked.
# ---------------------------------------------------------------------------

AZ_VERSION = "2024-10-21"


def azure(gateway, **kw):
    return gateway(protocol="azure", **kw)


def test_finding1_azure_model_never_reaches_request_line(gateway, db):
    """A model with CR/LF (raw in the JSON string, or escaped) that would
    end the request line and smuggle a DELETE carrying the operator's
    api-key onto the pooled connection: refused before routing; the
    next user's request is the only one the upstream sees, and it gets
    its own answer."""
    s, up = azure(gateway)
    smuggle = ("gpt-4o/chat/completions?api-version=%s HTTP/1.1\r\n"
               "Host: x\r\nContent-Length: 2\r\n\r\n{}"
               "DELETE /openai/files/file-victim HTTP/1.1\r\nX-Pad: "
               % AZ_VERSION)
    raw = (b'{"model":"' + smuggle.encode() + b'","messages":'
           + json.dumps(MESSAGES).encode() + b'}')
    st, h, data = send(s, CHAT, raw)
    assert st == 400, "a model with raw CR/LF was answered %d; the " \
        "upstream got %r" % (st, up.lines())
    openai_error(st, h, data, 400, "invalid_json")
    assert db.row(h["x-request-id"])["status"] == 400
    no_upstream_request(up, "a model with raw CR/LF")

    escaped = json.dumps(chat_body(smuggle)).encode()      # \r\n escaped
    assert b"\r" not in escaped
    st, h, data = send(s, CHAT, escaped)
    assert st == 400, "a model with escaped CR/LF was answered %d; the " \
        "upstream got %r" % (st, up.lines())
    openai_error(st, h, data, 400, "invalid_model")
    row = db.row(h["x-request-id"])
    assert row["status"] == 400 and row["error_class"] == "invalid_model"
    no_control_chars(row)
    no_upstream_request(up, "a model with escaped CR/LF")

    # the next user: exactly one request line, the expected one, and the
    # answer is the one to that request
    st, h, data = send(s, CHAT, chat_body("gpt-4o"))
    assert st == 200, data
    assert json.loads(data)["model"] == "gpt-4o"
    assert up.lines() == [
        "POST /openai/deployments/gpt-4o/chat/completions?api-version=%s "
        "HTTP/1.1" % AZ_VERSION]
    assert up.last().hdr("api-key") == UPSTREAM_KEY
    upstream_clean(up)
    log_is_clean(s)


AZ_BAD_DEPLOYMENTS = ["gpt-4o/../x", "a?b", "x&api-version=1",
                      "gpt-4o/../../openai/files", "a#b", "a%2fb",
                      "a;b", "gpt-4o/chat", "a\\b", "~user", "a:b",
                      "a@b", "a+b", "a=b", "a,b", "(a)", "'a'"]


def test_finding1_azure_deployment_fallback_only_for_safe_names(gateway, db):
    """No deployment line: the model becomes the deployment only if it is
    [A-Za-z0-9._-]+; anything else is 400 invalid_deployment and never
    reaches the upstream.  Every request that goes is one request line,
    exactly POST /openai/deployments/<name>/chat/completions?api-version=V.
    """
    s, up = azure(gateway, upstream={"deployment": "gpt-4o-mini prod-mini"})
    wrong = []
    for model in AZ_BAD_DEPLOYMENTS:
        st, h, data = send(s, CHAT, chat_body(model))
        try:
            openai_error(st, h, data, 400, "invalid_deployment")
        except (AssertionError, ValueError) as e:
            wrong.append((model, st, data[:200], str(e)[:200]))
    assert not wrong, "not refused as invalid_deployment: %r" % wrong
    no_upstream_request(up, "an unsafe deployment name")

    # a name outside 0x21..0x7e is not even a model
    st, h, data = send(s, CHAT, chat_body("gpt 4o"))
    openai_error(st, h, data, 400, "invalid_model")
    no_upstream_request(up, "a model with a space")

    good = ["gpt-4o", "Gpt_4o.v2-1", "a", "gpt-4o-mini"]
    for model in good:
        st, h, data = send(s, CHAT, chat_body(model))
        assert st == 200, (model, data)
        assert json.loads(data)["model"] == model
    dep = {"gpt-4o-mini": "prod-mini"}
    assert up.lines() == [
        "POST /openai/deployments/%s/chat/completions?api-version=%s "
        "HTTP/1.1" % (dep.get(m, m), AZ_VERSION) for m in good]
    assert [r["body"]["model"] for r in up.requests()] == good
    upstream_clean(up)
    rid = h["x-request-id"]
    assert db.row(rid)["model"] == "gpt-4o-mini"


# Bodies that are not JSON by RFC 8259, each sent as is.
INVALID_JSON = {
    "raw_lf_in_string": b'{"model":"gpt-4o","messages":[{"role":"user",'
                        b'"content":"a\nb"}]}',
    "raw_cr_in_model": b'{"model":"gpt-4o\r","messages":[]}',
    "raw_tab_in_string": b'{"model":"gpt-4o","messages":[{"role":"user",'
                         b'"content":"a\tb"}]}',
    "raw_nul_in_string": b'{"model":"gpt-4o","messages":[{"role":"user",'
                         b'"content":"a\x00b"}]}',
    "raw_0x1f_in_key": b'{"model":"gpt-4o","a\x1fb":1,"messages":[]}',
    "bad_escape": b'{"model":"gpt-4o","messages":[{"role":"user",'
                  b'"content":"\\x41"}]}',
    "short_unicode_escape": b'{"model":"gpt-4o","messages":[{"role":"user",'
                            b'"content":"\\u12"}]}',
    "lone_high_surrogate": b'{"model":"gpt-4o","messages":[{"role":"user",'
                           b'"content":"\\ud800"}]}',
    "lone_low_surrogate": b'{"model":"gpt-4o","messages":[{"role":"user",'
                          b'"content":"x\\udc00y"}]}',
    "surrogate_in_model": b'{"model":"gpt-4o\\ud83d","messages":[]}',
    "trailing_comma_object": b'{"model":"gpt-4o","messages":[],}',
    "trailing_comma_array": b'{"model":"gpt-4o","messages":[{"role":"user",'
                            b'"content":"hi"},]}',
    "trailing_comma_nested": b'{"model":"gpt-4o","messages":[{"role":"user",'
                             b'"content":"hi",}]}',
    "missing_comma_nested": b'{"model":"gpt-4o","messages":[{"role":"user" '
                            b'"content":"hi"}]}',
    "missing_colon_nested": b'{"model":"gpt-4o","metadata":{"a" "b"},'
                            b'"messages":[]}',
    "bare_word_nested": b'{"model":"gpt-4o","messages":[{"role":user}]}',
    "bad_literal_nested": b'{"model":"gpt-4o","messages":[],"n":[tru]}',
    "leading_zero": b'{"model":"gpt-4o","messages":[],"n":[01]}',
    "nan": b'{"model":"gpt-4o","messages":[],"temperature":NaN}',
    "single_quotes": b"{\"model\":\"gpt-4o\",\"messages\":[{'role':'user'}]}",
    "comment": b'{"model":"gpt-4o",/* hi */"messages":[]}',
    "invalid_utf8": b'{"model":"gpt-4o","messages":[{"role":"user",'
                    b'"content":"\xff\xfe"}]}',
    "overlong_utf8": b'{"model":"gpt-4o","messages":[{"role":"user",'
                     b'"content":"\xc0\xaf"}]}',
    "utf8_surrogate": b'{"model":"gpt-4o","messages":[{"role":"user",'
                      b'"content":"\xed\xa0\x80"}]}',
    "two_documents": b'{"model":"gpt-4o","messages":[]}{"model":"o1-pro"}',
    "unclosed_nested": b'{"model":"gpt-4o","messages":[{"role":"user"]}',
}


def test_finding1_invalid_json_is_400_in_the_callers_shape(gateway, strict,
                                                           db):
    """The scanner accepted raw control characters (and much else) inside
    strings and containers; the body is now validated as strict JSON
    first.  Each body is 400 invalid_json (Anthropic's shape on
    /v1/messages), has its row, and never reaches the upstream."""
    up = strict()
    s, _ = gateway(up=up, upstreams={
        "up": {"url": up.url, "api_key_env": UPSTREAM_ENV},
        "anth": {"url": up.url, "protocol": "anthropic",
                 "api_key_env": UPSTREAM_ENV}},
        routes=[("claude-*", "anth"), ("*", "up")])
    wrong, rids = [], []
    for name, raw in INVALID_JSON.items():
        st, h, data = send(s, CHAT, raw)
        try:
            openai_error(st, h, data, 400, "invalid_json")
            rids.append(h["x-request-id"])
        except (AssertionError, ValueError) as e:
            wrong.append((name, st, data[:200], str(e)[:150]))
    for name in ("raw_lf_in_string", "lone_high_surrogate",
                 "trailing_comma_nested"):
        raw = INVALID_JSON[name].replace(b'"gpt-4o"', b'"claude-sonnet-4-5"')
        st, h, data = send(s, MSGS, raw)
        try:
            anthropic_error(st, h, data, 400)
            rids.append(h["x-request-id"])
        except (AssertionError, ValueError) as e:
            wrong.append(("messages:" + name, st, data[:200], str(e)[:150]))
    assert not wrong, "not refused as invalid_json: %r" % wrong
    no_upstream_request(up, "invalid JSON")
    for rid in rids:
        row = db.row(rid)
        assert (row["status"], row["error_class"]) == (400, "invalid_json"), \
            row
        no_control_chars(row)
    # valid JSON the validator must not refuse: escapes, UTF-8, nesting
    ok = ('{"model":"gpt-4o","messages":[{"role":"user","content":'
          '"\\u00e9\\ud83d\\ude00 caf\u00e9 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t"}],'
          '"metadata":{"a":[1,-2.5e+3,0.0,true,false,null,{}]},"n":[]}')
    st, h, data = send(s, CHAT, ok.encode())
    assert st == 200, data
    assert up.last()["body"] == json.loads(ok)
    upstream_clean(up)


# ---------------------------------------------------------------------------
# 2. Allow-list bypass through an escaped (or case-variant) duplicate key.
# ---------------------------------------------------------------------------

M = json.dumps(MESSAGES)
DUPLICATES = {
    "escaped_model": '{"model":"gpt-4o-mini","mod\\u0065l":"o1-pro",'
                     '"messages":%s}' % M,
    "escaped_model_first": '{"\\u006dodel":"o1-pro","model":"gpt-4o-mini",'
                           '"messages":%s}' % M,
    "fully_escaped_model": '{"model":"gpt-4o-mini","\\u006d\\u006f\\u0064'
                           '\\u0065\\u006c":"o1-pro","messages":%s}' % M,
    "upper_model": '{"model":"gpt-4o-mini","MODEL":"o1-pro",'
                   '"messages":%s}' % M,
    "capital_model": '{"Model":"o1-pro","model":"gpt-4o-mini",'
                     '"messages":%s}' % M,
    "escaped_upper_model": '{"model":"gpt-4o-mini","MOD\\u0045L":"o1-pro",'
                           '"messages":%s}' % M,
    "exact_model": '{"model":"gpt-4o-mini","messages":%s,'
                   '"model":"o1-pro"}' % M,
    "capital_stream": '{"model":"gpt-4o-mini","messages":%s,"stream":false,'
                      '"Stream":true}' % M,
    "escaped_stream": '{"model":"gpt-4o-mini","messages":%s,"stream":false,'
                      '"str\\u0065am":true}' % M,
    "exact_stream": '{"model":"gpt-4o-mini","messages":%s,"stream":false,'
                    '"stream":true}' % M,
    "exact_stream_options": '{"model":"gpt-4o-mini","messages":%s,'
                            '"stream":true,"stream_options":'
                            '{"include_usage":true},"stream_options":null}'
                            % M,
    "upper_stream_options": '{"model":"gpt-4o-mini","messages":%s,'
                            '"stream":true,"stream_options":'
                            '{"include_usage":true},"STREAM_OPTIONS":'
                            '{"include_usage":false}}' % M,
    "include_usage_twice": '{"model":"gpt-4o-mini","messages":%s,'
                           '"stream":true,"stream_options":'
                           '{"include_usage":true,"include_usage":false}}'
                           % M,
    "escaped_include_usage": '{"model":"gpt-4o-mini","messages":%s,'
                             '"stream":true,"stream_options":'
                             '{"include_usage":true,'
                             '"include_\\u0075sage":false}}' % M,
}


def test_finding2_duplicate_model_escaped_or_by_case_is_refused(
        gateway, strict, db, tmp_path):
    """{"model":"gpt-4o-mini","mod\\u0065l":"o1-pro"} passed the duplicate
    check and the key's allow-list while the upstream served o1-pro.  Any
    duplicate of model, stream or stream_options, decoded or differing
    only by case, and a duplicate include_usage: 400 duplicate_field
    (Anthropic's shape on /v1/messages), one row, nothing upstream."""
    path, sec = keys_file(tmp_path, alice={"models": "gpt-4o-mini claude-*"})
    up = strict()
    s, _ = gateway(up=up, keys=path, upstreams={
        "up": {"url": up.url, "api_key_env": UPSTREAM_ENV},
        "anth": {"url": up.url, "protocol": "anthropic",
                 "api_key_env": UPSTREAM_ENV}},
        routes=[("claude-*", "anth"), ("*", "up")])
    auth = bearer(sec["alice"])
    wrong, rids = [], []
    for name, raw in DUPLICATES.items():
        st, h, data = send(s, CHAT, raw.encode(), auth)
        try:
            openai_error(st, h, data, 400, "duplicate_field")
            rids.append(h["x-request-id"])
        except (AssertionError, ValueError) as e:
            wrong.append((name, st, data[:200], str(e)[:150]))
    for raw in ('{"model":"claude-sonnet-4-5","mod\\u0065l":"claude-opus-4",'
                '"max_tokens":16,"messages":%s}' % M,
                '{"model":"claude-sonnet-4-5","MODEL":"claude-opus-4",'
                '"max_tokens":16,"messages":%s}' % M):
        st, h, data = send(s, MSGS, raw.encode(), auth)
        try:
            anthropic_error(st, h, data, 400)
            rids.append(h["x-request-id"])
        except (AssertionError, ValueError) as e:
            wrong.append(("messages", st, data[:200], str(e)[:150]))
    assert not wrong, "not refused as duplicate_field: %r" % wrong
    no_upstream_request(up, "a body with a duplicate field")
    for rid in rids:
        row = db.row(rid)
        assert (row["status"], row["error_class"], row["key_name"]) == \
            (400, "duplicate_field", "alice"), row
    # keys that only look alike are fine, and other duplicates are the
    # upstream's business
    st, h, data = send(s, CHAT, ('{"model":"gpt-4o-mini","models":"x",'
                                 '"model_x":1,"messages":%s}' % M).encode(),
                       auth)
    assert st == 200, data
    assert up.last()["body"]["model"] == "gpt-4o-mini"
    assert json.loads(data)["model"] == "gpt-4o-mini"
    upstream_clean(up)


# ---------------------------------------------------------------------------
# 3. The stream_options edit trusted the value's first byte.
# ---------------------------------------------------------------------------

SO_HEAD = ('{"model":"gpt-4o-mini","messages":%s,"stream":true,'
           '"stream_options":{"include_usage":' % M).encode()
CRAFTED_INCLUDE_USAGE = {
    # after overwriting 5 bytes from the "f" with "true", a second
    # top-level "model" that was inside a key and an array appears
    "hides_a_second_model": SO_HEAD + b'f},"a},":[":"v","model":"o1-pro",'
                                      b'"],":":1"}',
    # the 5-byte overwrite runs past the end: the declared length is 2
    # bytes short and "ue" prefixes the next request on that connection
    "writes_past_the_end": SO_HEAD + b'f}}',
    "three_letters": SO_HEAD + b'fal}}',
    "long_f_word": SO_HEAD + b'f1234567}}',
    "f_then_space": SO_HEAD + b'f    }}',
    "fals_quote": SO_HEAD + b'fals"}}',
    # valid JSON that is not the literal false: replaced outright
    "string_false": SO_HEAD + b'"false"}}',
    "zero": SO_HEAD + b'0}}',
    "empty_object": SO_HEAD + b'{}}}',
}


def test_finding3_crafted_include_usage_cannot_hide_a_model(
        gateway, strict, db, tmp_path):
    """Each crafted include_usage is either 400 invalid_json, or forwarded
    as valid JSON in which the upstream parses the very model sluice
    checked and billed, with stream_options {"include_usage": true} and a
    Content-Length equal to the bytes sent (the next request on that
    pooled connection is intact)."""
    path, sec = keys_file(tmp_path, alice={"models": "gpt-4o-mini"})
    s, up = gateway(keys=path, workers=1)
    auth = bearer(sec["alice"])
    wrong = []
    for name, raw in CRAFTED_INCLUDE_USAGE.items():
        up.clear()
        st, h, data = send(s, CHAT, raw, auth)
        rid = h.get("x-request-id")
        if st == 400:
            try:
                openai_error(st, h, data, 400, "invalid_json")
            except (AssertionError, ValueError) as e:
                wrong.append((name, "400 but %s" % str(e)[:200]))
            if up.requests():
                wrong.append((name, "400 yet forwarded: %r" % up.lines()))
        elif st == 200:
            got = up.requests()
            row = db.row(rid)
            if len(got) != 1 or got[0]["body"] is None:
                wrong.append((name, "upstream got %r" % [
                    (r["line"], r["raw"][-80:]) for r in got]))
            else:
                b = got[0]["body"]
                if b.get("model") != row["model"] or \
                        row["model"] != "gpt-4o-mini":
                    wrong.append((name, "upstream served %r, row says %r" %
                                  (b.get("model"), row["model"])))
                if b.get("stream_options") != {"include_usage": True}:
                    wrong.append((name, "upstream got stream_options %r" %
                                  b.get("stream_options")))
                if row["usage_source"] != "upstream":
                    wrong.append((name, "row usage_source %r" %
                                  row["usage_source"]))
        else:
            wrong.append((name, "status %d: %r" % (st, data[:200])))
        # the next user's request on the same (pooled) upstream connection
        st2, _, data2 = send(s, CHAT, chat_body("gpt-4o-mini"), auth)
        if st2 != 200 or json.loads(data2).get("model") != "gpt-4o-mini":
            wrong.append((name, "next request: %d %r" % (st2, data2[:200])))
        if up.errors():
            wrong.append((name, "upstream errors: %r" % up.errors()))
    assert not wrong, wrong
    log_is_clean(s)


# ---------------------------------------------------------------------------
# 4. A client erased its own usage rows; sluice's ids were predictable.
# ---------------------------------------------------------------------------

def assert_uuid7(rid, t0, t1, slack=0.02):
    u = uuid.UUID(rid)
    assert str(u) == rid.lower(), rid
    assert u.version == 7, "not a UUIDv7: %s" % rid
    assert u.variant == uuid.RFC_4122, "variant not 10: %s" % rid
    ms = int(u.hex[:12], 16)
    assert (t0 - slack) * 1000 <= ms <= (t1 + slack) * 1000, \
        "timestamp of %s is %d ms, not in [%d, %d]" % (
            rid, ms, t0 * 1000, t1 * 1000)


def test_finding4_ten_requests_with_one_client_id_make_ten_rows(gateway, db):
    """A client's x-request-id was the row's primary key (ON CONFLICT DO
    NOTHING kept one row of ten).  Now each request has sluice's own id
    (x-request-id back, the row's request_id) and the client's id is kept
    in client_request_id and echoed in x-client-request-id."""
    s, up = gateway(workers=2)
    cid = str(uuid.uuid4())
    t0 = time.time()
    got = []
    for _ in range(10):
        st, h, data = send(s, CHAT, chat_body("gpt-4o"),
                           {"x-request-id": cid})
        assert st == 200, data
        got.append(h)
    t1 = time.time()
    rids = [h["x-request-id"] for h in got]
    assert len(set(rids)) == 10, "x-request-id repeated: %s" % rids
    assert cid not in rids, "the client's id came back as sluice's"
    for h in got:
        assert h.get("x-client-request-id") == cid, h
        assert_uuid7(h["x-request-id"], t0, t1)
    # x-client-request-id (OpenAI's SDK header) is kept the same way
    cid2 = str(uuid.uuid4())
    st, h2, data = send(s, CHAT, chat_body("gpt-4o"),
                        {"x-client-request-id": cid2})
    assert st == 200, data
    assert h2.get("x-client-request-id") == cid2, h2
    assert h2["x-request-id"] not in rids + [cid2]
    # a refusal counts too
    st, h3, data = send(s, CHAT, b'{"model":', {"x-request-id": cid})
    assert st == 400
    rids.append(h3["x-request-id"])

    wait_for(lambda: db.count() >= 12, 15, what="12 rows")
    rows = db.rows("client_request_id = %s", (cid,))
    assert len(rows) == 11, "%d rows with client_request_id %s" % (
        len(rows), cid)
    assert sorted(r["request_id"] for r in rows) == sorted(rids)
    assert sorted(r["status"] for r in rows) == [200] * 10 + [400]
    (r2,) = db.rows("client_request_id = %s", (cid2,))
    assert r2["request_id"] == h2["x-request-id"]
    assert db.count() == 12


def test_finding4_request_ids_are_uuidv7_distinct_across_workers_and_restart(
        gateway, db):
    """Ids from two workers and from a restarted sluiced share no
    generator: all distinct, all UUIDv7 (version 7, variant 10) with the
    millisecond timestamp of when they were made."""
    s, up = gateway(workers=2)
    ids = []
    t0 = time.time()
    for i in range(200):
        st, h, data = send(s, CHAT, chat_body("gpt-4o"))
        assert st == 200, data
        ids.append(h["x-request-id"])
        if i % 10 == 9 and i >= 19:
            wait_for(lambda: db.count() >= len(ids), 15, what="the rows")
            pids = {r[0] for r in db.query(
                "SELECT DISTINCT worker_pid FROM usage_events")}
            if len(pids) >= 2:
                break
    t1 = time.time()
    assert len(pids) >= 2, "one worker served every request: %s" % pids
    for rid in ids:
        assert_uuid7(rid, t0, t1)
    before = len(ids)
    assert s.stop() == 0
    s.start()
    t2 = time.time()
    for _ in range(20):
        st, h, data = send(s, CHAT, chat_body("gpt-4o"))
        assert st == 200, data
        ids.append(h["x-request-id"])
    t3 = time.time()
    for rid in ids[before:]:
        assert_uuid7(rid, t2, t3)
    assert len(set(ids)) == len(ids), "an id repeated"
    # the random part (past the timestamp) shares nothing either
    assert len({rid.replace("-", "")[13:] for rid in ids}) == len(ids)
    wait_for(lambda: db.count() >= len(ids), 15, what="every row")
    assert {r[0] for r in db.query(
        "SELECT request_id::text FROM usage_events")} == set(ids)


# xoshiro256** (the old generator): each 64-bit output is a bijection of
# the state word s1, and the state transition is linear over GF(2), so
# four outputs give the whole state.  A UUIDv4 hides 4 + 2 bits of its two
# outputs; those are tried.
_M64 = (1 << 64) - 1


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & _M64


def _xo_next(st):
    s0, s1, s2, s3 = st
    r = (_rotl((s1 * 5) & _M64, 7) * 9) & _M64
    t = (s1 << 17) & _M64
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return r, [s0, s1, s2, s3]


def _xo_solver():
    """Rows R such that bit c of the state is parity(R[c] & v), where v
    holds s1 before four consecutive steps (s1_k at bits 64k..64k+63)."""
    def sx(a, b):
        return [x ^ y for x, y in zip(a, b)]
    st = [[1 << (w * 64 + i) for i in range(64)] for w in range(4)]
    rows = []
    for _ in range(4):
        rows += st[1]
        s0, s1, s2, s3 = st
        t = [0] * 17 + s1[:47]
        s2 = sx(s2, s0)
        s3 = sx(s3, s1)
        s1 = sx(s1, s2)
        s0 = sx(s0, s3)
        s2 = sx(s2, t)
        s3 = [s3[(i - 45) % 64] for i in range(64)]
        st = [s0, s1, s2, s3]
    aug = [[rows[j], 1 << j] for j in range(256)]
    for col in range(256):
        p = next((j for j in range(col, 256) if aug[j][0] >> col & 1), None)
        if p is None:
            return None
        aug[col], aug[p] = aug[p], aug[col]
        for j in range(256):
            if j != col and aug[j][0] >> col & 1:
                aug[j][0] ^= aug[col][0]
                aug[j][1] ^= aug[col][1]
    return [a[1] for a in aug]


def _uuid_outputs(rid):
    """The candidates for the two generator outputs behind a UUIDv4."""
    b = uuid.UUID(rid).bytes
    a = int.from_bytes(b[:8], "little")
    c = int.from_bytes(b[8:], "little")
    a_c = [(a & ~(0xf << 52)) | (x << 52) for x in range(16)]
    c_c = [(c & ~(0x3 << 6)) | (x << 6) for x in range(4)]
    return a_c, c_c


def _uuid4_of(a, c):
    b = bytearray(a.to_bytes(8, "little") + c.to_bytes(8, "little"))
    b[6] = (b[6] & 0x0f) | 0x40
    b[8] = (b[8] & 0x3f) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def predict_xoshiro_ids(observed, n):
    """From three consecutive ids of one xoshiro256** worker, the next N
    ids; None if no generator state explains them."""
    inv9, inv5 = pow(9, -1, 1 << 64), pow(5, -1, 1 << 64)

    def s1_of(r):
        x = (r * inv9) & _M64
        return (((x >> 7) | (x << 57)) & _M64) * inv5 & _M64

    solver = _xo_solver()
    if solver is None:
        return None
    a0, c0 = _uuid_outputs(observed[0])
    a1, c1 = _uuid_outputs(observed[1])
    for x0 in a0:
        for y0 in c0:
            for x1 in a1:
                for y1 in c1:
                    v = (s1_of(x0) | s1_of(y0) << 64 | s1_of(x1) << 128 |
                         s1_of(y1) << 192)
                    state = 0
                    for bit in range(256):
                        if (solver[bit] & v).bit_count() & 1:
                            state |= 1 << bit
                    st = [(state >> (64 * w)) & _M64 for w in range(4)]
                    out = []
                    for _ in range(3 + n):
                        ra, st = _xo_next(st)
                        rc, st = _xo_next(st)
                        out.append(_uuid4_of(ra, rc))
                    if out[:3] == list(observed):
                        return out[3:]
    return None


def test_finding4_next_request_ids_cannot_be_predicted(gateway):
    """Three observed ids of a worker gave the state of its xoshiro256**
    and so every next id (which an unauthenticated client then
    pre-inserted to erase another tenant's rows).  With ids from a
    CSPRNG, no state of that generator explains three ids, and the next
    ones are not the ones predicted."""
    s, up = gateway(workers=1)
    ids = []
    for _ in range(5):
        st, h, _ = request(s.port, "GET", "/v1/no-such-endpoint")
        assert st == 404
        ids.append(h["x-request-id"])
    predicted = predict_xoshiro_ids(ids[:3], 2)
    assert predicted != ids[3:], \
        "the next two request ids were predicted from three: %s" % predicted
    assert predicted is None, "a xoshiro256** state explains three ids"


def test_finding4_client_request_id_cannot_refund_the_budget(
        gateway, db, tmp_path):
    """Paid requests sharing one x-request-id left one row, so the spend
    loaded from the rows (every 30 s, and at start) refunded the others.
    Now every request keeps its row: after the spend is loaded again the
    key is still over its budget."""
    prices = [("gpt-4o-mini", "100", "0"), ("*", "0", "0")]
    path, sec = keys_file(tmp_path, thrifty={"budget": "0.01 per day"})
    s, up = gateway(keys=path, prices=prices, workers=2)
    auth = dict(bearer(sec["thrifty"]), **{"x-request-id": str(uuid.uuid4())})
    per = cost("gpt-4o-mini", tokens("gpt-4o-mini")[0], 0, prices)
    assert per == 4000          # 0.004 USD: 0, 0.004, 0.008 < 0.01
    for _ in range(3):
        st, _, data = send(s, CHAT, chat_body("gpt-4o-mini"), auth)
        assert st == 200, data
    st, h, data = send(s, CHAT, chat_body("gpt-4o-mini"), auth)
    openai_error(st, h, data, 429, "budget_exceeded")
    assert len(up.requests()) == 3

    # the spend is loaded from the rows again: on a restart (fresh shared
    # memory), exactly as the 30-second resync does
    assert s.stop() == 0            # SIGTERM drains every event first
    paid = db.query("SELECT count(*), coalesce(sum(cost_micro_usd), 0) "
                    "FROM usage_events WHERE key_name = 'thrifty'")[0]
    s.start()
    for _ in range(200):
        st, h, data = send(s, CHAT, chat_body("gpt-4o-mini"), auth)
        if st != 503:
            break
        assert json.loads(data)["error"]["code"] == "budget_loading", data
        time.sleep(0.05)
    assert st == 429, "the key was admitted again (%d) once its spend was " \
        "loaded from the rows: (rows, micro-USD) = %r" % (st, paid)
    openai_error(st, h, data, 429, "budget_exceeded")
    assert len(up.requests()) == 3, "a request over the budget was admitted"
    # what the spend load summed: every request has its row
    assert paid == (4, 3 * per), paid


# ---------------------------------------------------------------------------
# 5. Streams that ran unmetered.
# ---------------------------------------------------------------------------

STREAM_FLAGS = {
    "stream_options_null": (CHAT, '"stream":true,"stream_options":null'),
    "include_usage_null": (CHAT, '"stream":true,"stream_options":'
                                 '{"include_usage":null}'),
    "include_usage_false": (CHAT, '"stream":true,"stream_options":'
                                  '{"include_usage":false}'),
    "include_usage_false_and_more": (
        CHAT, '"stream":true,"stream_options":{"include_usage":false,'
              '"continuous_usage_stats":true}'),
    "include_usage_zero": (CHAT, '"stream":true,"stream_options":'
                                 '{"include_usage":0}'),
    "stream_options_array": (CHAT, '"stream":true,"stream_options":[]'),
    "escaped_stream_key": (CHAT, '"stre\\u0061m":true'),
    "stream_string_true": (CHAT, '"stream":"true"'),
    "stream_one": (CHAT, '"stream":1'),
    "stream_object": (CHAT, '"stream":{"x":1}'),
    "completions_include_usage_false": (
        COMPL, '"stream":true,"stream_options":{"include_usage":false}'),
    "completions_stream_string": (COMPL, '"stream":"yes"'),
}


def test_finding5_every_stream_flag_gets_include_usage_and_is_metered(
        gateway, db):
    """Any stream flag but absent, false or null makes sluice replace
    stream_options with {"include_usage":true}: the strict (lenient)
    upstream streams with usage and the row has the exact tokens."""
    s, up = gateway(workers=1)
    p, c = tokens("gpt-4o")
    wrong = []
    for name, (path, flags) in STREAM_FLAGS.items():
        up.clear()
        if path == CHAT:
            raw = '{"model":"gpt-4o","messages":%s,%s}' % (M, flags)
        else:
            raw = '{"model":"gpt-4o","prompt":"hi",%s}' % flags
        st, h, data = send(s, path, raw.encode())
        if st != 200:
            wrong.append((name, st, data[:200]))
            continue
        got = up.requests()
        if len(got) != 1 or got[0]["body"] is None:
            wrong.append((name, "upstream got %r" % got))
            continue
        so = got[0]["body"].get("stream_options")
        if so != {"include_usage": True}:
            wrong.append((name, "upstream stream_options %r" % (so,)))
        events = sse_events(data)
        if not events or events[-1] != "[DONE]":
            wrong.append((name, "not a stream: %r" % data[:200]))
        row = db.row(h["x-request-id"])
        want = ("upstream", p, c, cost("gpt-4o", p, c))
        have = (row["usage_source"], row["prompt_tokens"],
                row["completion_tokens"], row["cost_micro_usd"])
        if have != want:
            wrong.append((name, "row %r, want %r" % (have, want)))
    assert not wrong, wrong
    upstream_clean(up)


def test_finding5_duplicate_stream_flags_are_refused(gateway, db):
    """{"include_usage":true,"include_usage":false} and
    "stream":false,"stream":true: which one counts depends on the parser,
    so neither is picked: 400 duplicate_field, nothing upstream."""
    s, up = gateway()
    for raw in ('{"model":"gpt-4o","messages":%s,"stream":true,'
                '"stream_options":{"include_usage":true,'
                '"include_usage":false}}' % M,
                '{"model":"gpt-4o","messages":%s,"stream":false,'
                '"stream":true}' % M,
                '{"model":"gpt-4o","prompt":"x","stream":false,'
                '"stream":true}'):
        path = COMPL if '"prompt"' in raw else CHAT
        st, h, data = send(s, path, raw.encode())
        openai_error(st, h, data, 400, "duplicate_field")
        row = db.row(h["x-request-id"])
        assert (row["status"], row["error_class"]) == \
            (400, "duplicate_field"), row
    no_upstream_request(up, "a duplicate stream flag")


def test_finding5_stream_without_usage_is_estimated_and_charged(
        gateway, db, tmp_path):
    """An upstream that ignores include_usage (told so by a header, or a
    model named *nousage*): the 2xx stream ends without usage.  The row
    is estimated (positive prompt and completion tokens, and a cost where
    the model has a price) and the key is charged: its tpm then refuses
    it."""
    path, sec = keys_file(tmp_path, alice={"tpm": "20"}, bob={"tpm": "20"})
    s, up = gateway(keys=path)
    for key, model, hdr in (("alice", "gpt-4o", {"x-strict-no-usage": "1"}),
                            ("bob", "gpt-4o-nousage", {})):
        auth = bearer(sec[key])
        st, h, data = send(s, CHAT, chat_body(model, stream=True),
                           dict(auth, **hdr, **{"x-strict-chunks": "20"}))
        assert st == 200, data
        events = sse_events(data)
        assert events[-1] == "[DONE]"
        assert not any(isinstance(e, dict) and e.get("usage")
                       for e in events), "the upstream sent usage"
        assert up.last()["body"]["stream_options"] == {"include_usage": True}
        row = db.row(h["x-request-id"])
        assert row["usage_source"] == "estimated", row
        assert row["prompt_tokens"] and row["prompt_tokens"] > 0, row
        assert row["completion_tokens"] and row["completion_tokens"] > 0, row
        assert row["cost_micro_usd"] == cost(
            model, row["prompt_tokens"], row["completion_tokens"]), row
        if model == "gpt-4o":
            assert row["cost_micro_usd"] > 0, row
        # the estimate was charged: over 20 tokens a minute now
        st, h, data = send(s, CHAT, chat_body("gpt-4o"), auth)
        openai_error(st, h, data, 429, "rate_limit_exceeded")
    assert len(up.requests()) == 2


# ---------------------------------------------------------------------------
# 6. Escaped model names fell to the catch-all price.
# ---------------------------------------------------------------------------

def test_finding6_escaped_model_is_matched_routed_priced_as_decoded(
        gateway, strict, db, tmp_path):
    """"gpt-4\\u006f" is gpt-4o: allowed by the key's gpt-*, routed by the
    gpt-4o route, priced by price gpt-4o (not price *), recorded as
    gpt-4o; "\\u0067pt-4o-mini" is gpt-4o-mini for all of them too."""
    path, sec = keys_file(tmp_path, alice={"models": "gpt-*"})
    exact, other = strict(), strict()
    s, _ = gateway(up=exact, keys=path, upstreams={
        "exact": {"url": exact.url, "api_key_env": UPSTREAM_ENV},
        "other": {"url": other.url, "api_key_env": UPSTREAM_ENV},
        "mini": {"url": exact.url, "api_key_env": UPSTREAM_ENV}},
        routes=[("gpt-4o", "exact"), ("gpt-4o-mini", "mini"),
                ("*", "other")])
    auth = bearer(sec["alice"])
    for raw, model, upstream in (
            ('{"model":"gpt-4\\u006f","messages":%s}' % M, "gpt-4o",
             "exact"),
            ('{"model":"\\u0067pt-4o-mini","messages":%s}' % M,
             "gpt-4o-mini", "mini"),
            ('{"model":"\\u0067\\u0070\\u0074\\u002d4o","messages":%s}' % M,
             "gpt-4o", "exact")):
        exact.clear()
        st, h, data = send(s, CHAT, raw.encode(), auth)
        assert st == 200, (raw, data)
        assert json.loads(data)["model"] == model
        assert [r["body"]["model"] for r in exact.requests()] == [model]
        p, c = tokens(model)
        row = db.row(h["x-request-id"])
        assert (row["model"], row["upstream"], row["prompt_tokens"],
                row["completion_tokens"], row["cost_micro_usd"],
                row["key_name"]) == \
            (model, upstream, p, c, cost(model, p, c), "alice"), row
        assert row["cost_micro_usd"] > 0
    assert other.requests() == []
    # and an escape does not get a model past the allow-list
    st, h, data = send(s, CHAT, ('{"model":"\\u006f1-pro","messages":%s}'
                                 % M).encode(), auth)
    openai_error(st, h, data, 403, "model_not_allowed")
    assert db.row(h["x-request-id"])["model"] == "o1-pro"
    assert other.requests() == []


# ---------------------------------------------------------------------------
# 7. Responses usage lost past 1 MiB.
# ---------------------------------------------------------------------------

def test_finding7_responses_usage_found_in_an_event_over_1mib(gateway, db):
    """response.completed echoes the request's instructions: with 1.1 MB
    of them its SSE line is over 1 MiB, and the usage at its end is still
    found: usage_source upstream, the exact tokens."""
    s, up = gateway()
    instructions = ("You are a careful assistant. " * 40000)[:1100000]
    body = {"model": "gpt-4o", "input": "hello", "stream": True,
            "instructions": instructions}
    st, h, data = send(s, RESP, body, timeout=30)
    assert st == 200, data[:300]
    lines = [ln for ln in data.split(b"\n") if ln.startswith(b"data: ")]
    done = json.loads(lines[-1][6:])
    assert done["type"] == "response.completed"
    assert len(lines[-1]) > 1 << 20
    assert done["response"]["instructions"] == instructions
    p, c = tokens("gpt-4o")
    row = db.row(h["x-request-id"])
    assert (row["usage_source"], row["prompt_tokens"],
            row["completion_tokens"], row["cost_micro_usd"]) == \
        ("upstream", p, c, cost("gpt-4o", p, c)), row
    upstream_clean(up)


# ---------------------------------------------------------------------------
# 8. Unbounded client input while proxying.
# ---------------------------------------------------------------------------

def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_finding8_client_sending_while_a_stream_runs_is_not_buffered(
        gateway):
    """A client that keeps sending garbage as fast as it can during a 3 s
    streamed answer: the worker stops reading it (RSS grows by less than
    32 MB), the stream completes, and the worker serves the next client."""
    s, up = gateway(workers=1)
    (pid,) = s.worker_pids()
    assert send(s, CHAT, chat_body("gpt-4o"))[0] == 200     # warm up
    base = vm_rss_kb(pid)
    body = json.dumps(chat_body("gpt-4o", stream=True)).encode()
    head = ("POST %s HTTP/1.1\r\nHost: sluice\r\nContent-Type: "
            "application/json\r\nx-strict-chunks: 30\r\n"
            "x-strict-chunk-delay-ms: 100\r\nContent-Length: %d\r\n\r\n"
            % (CHAT, len(body))).encode()
    sk = socket.create_connection((HOST, s.port), timeout=5)
    sk.sendall(head + body)
    sk.setblocking(False)
    junk = os.urandom(1 << 16)
    sent, got, peak = 0, b"", base
    limit = 512 << 20               # bounded, and far over 32 MB
    t0 = time.monotonic()
    last_rss = 0.0
    try:
        for _ in range(10 ** 6):
            now = time.monotonic()
            if now - t0 > 8 or b"data: [DONE]" in got[-4096:]:
                break
            if now - last_rss > 0.05:
                peak = max(peak, vm_rss_kb(pid))
                last_rss = now
            r, w, _ = select.select([sk], [sk] if sent < limit else [], [],
                                    0.05)
            if r:
                try:
                    data = sk.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    break
                if data == b"":
                    break
                if data:
                    got = got[-8192:] + data
            if w:
                try:
                    sent += sk.send(junk)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    break
        took = time.monotonic() - t0
        peak = max(peak, vm_rss_kb(pid))
    finally:
        sk.close()
    assert b"data: [DONE]" in got, "the stream did not complete: %r" % \
        got[-300:]
    assert took >= 2.5, "the stream was not slow (%.1f s)" % took
    assert sent > 1 << 20, "the premise failed: sent only %d bytes" % sent
    grew = (peak - base) / 1024.0
    assert grew < 32, "worker RSS grew by %.0f MB while the client sent " \
        "%.0f MB" % (grew, sent / 1048576.0)
    st, _, data = send(s, CHAT, chat_body("gpt-4o"))
    assert st == 200, data
    assert s.worker_pids() == [pid]


# ---------------------------------------------------------------------------
# 9. EMFILE spun the worker.
# ---------------------------------------------------------------------------

def open_files_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return float("inf") if soft == "unlimited" else int(soft)
    raise AssertionError("no open files limit for %d" % pid)


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


class low_nofile:
    """Lower this process's soft RLIMIT_NOFILE while sluiced starts, so
    that it inherits a limit under its max_connections."""

    def __init__(self, soft):
        self.soft = soft

    def __enter__(self):
        self.old = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (min(self.soft, self.old[1]), self.old[1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_NOFILE, self.old)


def test_finding9_sluiced_raises_the_open_files_limit_for_max_connections(
        gateway):
    """Started with a soft limit of 1024 and max_connections 5000 (the
    shipped init script's situation), sluiced raises each worker's
    RLIMIT_NOFILE to what max_connections needs."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY and hard < 6000:
        pytest.skip("hard open-files limit %d, not root" % hard)
    s, up = gateway(workers=2, extra="max_connections 5000;", start=False)
    with low_nofile(1024):
        s.start()
    for pid in s.worker_pids():
        assert open_files_limit(pid) >= 5000, \
            "worker %d: Max open files %s" % (pid, open_files_limit(pid))
    assert send(s, CHAT, chat_body("gpt-4o"))[0] == 200


def test_finding9_emfile_pauses_accept_instead_of_spinning(gateway):
    """worker_rlimit_nofile 64 under max_connections 4096 and 150 idle
    clients: the worker runs out of descriptors, but pauses accepting
    instead of spinning (< 0.5 s CPU in 3 s, a handful of log lines), and
    once the clients are gone a normal request is answered."""
    s, up = gateway(workers=1, extra="worker_rlimit_nofile 64;\n"
                                      "max_connections 4096;")
    (pid,) = s.worker_pids()
    assert open_files_limit(pid) == 64
    assert send(s, CHAT, chat_body("gpt-4o"))[0] == 200
    socks = []
    try:
        for _ in range(150):
            socks.append(socket.create_connection((HOST, s.port), timeout=5))
        time.sleep(0.5)             # let the worker hit the limit
        n0 = len(s.log_text().splitlines())
        cpu0, t0 = cpu_ns(pid), time.monotonic()
        time.sleep(3)
        cpu = (cpu_ns(pid) - cpu0) / 1e9
        wall = time.monotonic() - t0
        new = s.log_text().splitlines()[n0:]
    finally:
        for sk in socks:
            sk.close()
    noisy = [ln for ln in new if "Too many open files" in ln or
             "accept" in ln]
    assert cpu < 0.5, "the worker used %.2f s CPU in %.1f s" % (cpu, wall)
    assert len(noisy) <= 10, "%d accept/EMFILE log lines in 3 s, e.g. %s" % (
        len(noisy), noisy[:3])

    def served():
        try:
            return send(s, CHAT, chat_body("gpt-4o"), timeout=3)[0] == 200
        except (OSError, http.client.HTTPException):
            return False
    wait_for(served, 10, interval=0.2, what="a request answered again")
    assert s.worker_pids() == [pid]


# ---------------------------------------------------------------------------
# 10. The admin port fell to slow clients.
# ---------------------------------------------------------------------------

def test_finding10_slow_admin_clients_do_not_lock_out_healthz(gateway):
    """64 connections to admin_listen sending a byte every 4 s (the
    timeout restarted on every byte): /healthz on a new connection still
    answers within 3 s, all along."""
    admin = free_port()
    s, up = gateway(workers=1, extra="admin_listen %s:%d;" % (HOST, admin))
    socks = [socket.create_connection((HOST, admin), timeout=5)
             for _ in range(64)]
    slow = b"GET /healthz HTTP/1.1\r\n"
    answers, t0 = [], time.monotonic()
    try:
        for step in range(3):               # bytes at 0, 4 and 8 s
            for sk in socks:
                try:
                    sk.send(slow[step:step + 1])
                except OSError:
                    pass
            for probe in range(2):          # probes at +1 and +3 s
                time.sleep(1.0 if probe == 0 else 2.0)
                t = time.monotonic()
                try:
                    st, _, body = request(admin, "GET", "/healthz",
                                          timeout=3.0)
                    answers.append((round(t - t0, 1), st,
                                    round(time.monotonic() - t, 2), body))
                except (OSError, http.client.HTTPException) as e:
                    answers.append((round(t - t0, 1), repr(e), None, b""))
            time.sleep(max(0.0, t0 + 4 * (step + 1) - time.monotonic()))
            if time.monotonic() - t0 > 11:
                break
    finally:
        for sk in socks:
            sk.close()
    bad = [a for a in answers
           if a[1] not in (200, 503) or a[2] is None or a[2] > 3.0]
    assert not bad, "healthz unanswered: %r" % bad
    for _, st, _, body in answers:
        assert isinstance(json.loads(body), dict), body


# ---------------------------------------------------------------------------
# 11. Smaller: headers, Connection, methods, control characters.
# ---------------------------------------------------------------------------

def test_finding11_client_org_and_project_headers_are_dropped(gateway):
    """A client's OpenAI-Organization / OpenAI-Project chose which account
    paid; they no longer reach the upstream, and the upstream's
    openai-organization / openai-project answer headers are not returned."""
    s, up = gateway()
    st, h, data = send(s, CHAT, chat_body("gpt-4o"), {
        "OpenAI-Organization": "org-victim", "OpenAI-Project": "proj-victim",
        "x-custom": "kept"})
    assert st == 200, data
    got = up.last()
    assert got.hdr("openai-organization") is None, got["headers"]
    assert got.hdr("openai-project") is None, got["headers"]
    assert got.hdr("x-custom") == "kept"
    assert h.get("x-strict-seen-org") == "-", h
    assert "openai-organization" not in h, h
    assert "openai-project" not in h, h
    assert h.get("x-strict-model") == "gpt-4o", h


def test_finding11_upstream_organization_and_project_directives(gateway):
    """organization ORG; and project PROJ; in the upstream block: sluice
    sends them itself, whatever the client sent."""
    s, up = gateway(upstream={"organization": "org-operator",
                              "project": "proj-operator"})
    for hdrs in ({}, {"OpenAI-Organization": "org-victim",
                      "OpenAI-Project": "proj-victim"}):
        st, h, data = send(s, CHAT, chat_body("gpt-4o"), hdrs)
        assert st == 200, data
        got = up.last()
        assert got.hdrs("openai-organization") == ["org-operator"], \
            got["headers"]
        assert got.hdrs("openai-project") == ["proj-operator"], \
            got["headers"]
        assert "openai-organization" not in h and "openai-project" not in h


def test_finding11_drop_and_pass_headers_per_upstream(gateway, strict):
    """drop_headers removes client headers on one upstream; pass_headers
    lets a default-dropped one (openai-organization) through."""
    a, b = strict(), strict()
    s, _ = gateway(up=a, upstreams={
        "a": {"url": a.url, "api_key_env": UPSTREAM_ENV,
              "drop_headers": "x-tenant-secret X-Other"},
        "b": {"url": b.url, "api_key_env": UPSTREAM_ENV,
              "pass_headers": "openai-organization"}},
        routes=[("gpt-4o", "a"), ("*", "b")])
    hdrs = {"x-tenant-secret": "s3cret", "x-other": "o", "x-kept": "k",
            "OpenAI-Organization": "org-client",
            "OpenAI-Project": "proj-client"}
    for model, up in (("gpt-4o", a), ("gpt-4o-mini", b)):
        st, h, data = send(s, CHAT, chat_body(model), hdrs)
        assert st == 200, data
    ga, gb = a.last(), b.last()
    assert ga.hdr("x-tenant-secret") is None and ga.hdr("x-other") is None, \
        ga["headers"]
    assert ga.hdr("x-kept") == "k"
    assert ga.hdr("openai-organization") is None
    assert gb.hdr("x-tenant-secret") == "s3cret" and gb.hdr("x-kept") == "k"
    assert gb.hdr("openai-organization") == "org-client", gb["headers"]
    assert gb.hdr("openai-project") is None, gb["headers"]


def test_finding11_anthropic_beta_passes_and_is_recorded(gateway, db):
    """anthropic-beta reaches an Anthropic upstream by default (Claude
    Code and the SDKs need it) and the row records it: a beta can change
    the price."""
    s, up = gateway(protocol="anthropic")
    beta = "prompt-caching-2024-07-31,context-1m-2025-08-07"
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16,
            "messages": MESSAGES}
    st, h, data = send(s, MSGS, body, {"anthropic-beta": beta})
    assert st == 200, data
    assert up.last().hdr("anthropic-beta") == beta
    row = db.row(h["x-request-id"])
    assert "anthropic_beta" in row, "no column anthropic_beta: %r" % row
    assert [x.strip() for x in row["anthropic_beta"].split(",")] == \
        beta.split(","), row
    st, h, data = send(s, MSGS, body)
    assert st == 200, data
    assert up.last().hdr("anthropic-beta") is None
    assert db.row(h["x-request-id"])["anthropic_beta"] in (None, ""), row


def test_finding11_anthropic_betas_list_restricts_the_header(gateway, db):
    """anthropic_betas LIST; in the upstream block: betas not in it are
    taken out of the header (and not recorded); none left, no header."""
    s, up = gateway(protocol="anthropic", upstream={
        "anthropic_betas": "prompt-caching-2024-07-31 "
                           "token-efficient-tools-2025-02-19"})
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16,
            "messages": MESSAGES}
    st, h, data = send(s, MSGS, body, {
        "anthropic-beta": "context-1m-2025-08-07, prompt-caching-2024-07-31,"
                          "token-efficient-tools-2025-02-19"})
    assert st == 200, data
    sent = up.last().hdrs("anthropic-beta")
    assert len(sent) == 1, up.last()["headers"]
    assert sorted(x.strip() for x in sent[0].split(",")) == [
        "prompt-caching-2024-07-31", "token-efficient-tools-2025-02-19"]
    row = db.row(h["x-request-id"])
    assert sorted(x.strip() for x in row["anthropic_beta"].split(",")) == [
        "prompt-caching-2024-07-31", "token-efficient-tools-2025-02-19"], row
    st, h, data = send(s, MSGS, body,
                       {"anthropic-beta": "context-1m-2025-08-07"})
    assert st == 200, data
    assert up.last().hdr("anthropic-beta") is None, up.last()["headers"]
    assert db.row(h["x-request-id"])["anthropic_beta"] in (None, "")


def test_finding11_connection_listed_headers_of_any_length_are_stripped(
        gateway):
    """A header named in the client's Connection header is hop-by-hop and
    is not forwarded, however long its name (names over 63 bytes were)."""
    s, up = gateway()
    long_name = "x-" + "l" * 98
    assert len(long_name) == 100
    huge_name = "x-" + "h" * 998
    st, h, data = send(s, CHAT, chat_body("gpt-4o"), {
        "Connection": "keep-alive, %s, X-Short, %s" % (long_name, huge_name),
        long_name: "long-secret", "x-short": "short-secret",
        huge_name: "huge-secret", "x-kept": "k"})
    assert st == 200, data
    got = up.last()
    names = [k.lower() for k, _ in got["headers"]]
    assert long_name not in names and huge_name not in names, names
    assert "x-short" not in names and "connection" not in names, names
    assert got.hdr("x-kept") == "k"
    flat = json.dumps(got["headers"])
    assert "secret" not in flat, flat


def test_finding11_methods_are_case_sensitive_and_only_get_post(gateway, db):
    """RFC 9110: "PoSt" is not POST.  It was forwarded as typed; now it is
    405, as is any method but GET and POST, on any path."""
    s, up = gateway()
    body = json.dumps(chat_body("gpt-4o")).encode()
    for method, path in (("PoSt", CHAT), ("post", CHAT), ("pOST", MSGS),
                         ("PUT", CHAT), ("DELETE", CHAT), ("PATCH", CHAT),
                         ("OPTIONS", CHAT), ("get", "/v1/models"),
                         ("DELETE", "/v1/models"), ("PUT", "/v1/nosuch"),
                         ("TRACE", "/v1/chat/completions")):
        st, h, data = send(s, path, body, method=method)
        assert st == 405, (method, path, st, data[:200])
        doc = json.loads(data)
        if path.startswith(MSGS):
            assert doc["type"] == "error", doc
        else:
            assert doc["error"]["code"] == "method_not_allowed", doc
        row = db.row(h["x-request-id"])
        assert row["status"] == 405, row
    no_upstream_request(up, "a method other than POST")
    st, _, data = send(s, CHAT, body)
    assert st == 200, data
    st, _, data = request(s.port, "GET", "/v1/models")
    assert st == 200, data
    assert up.lines() == ["POST %s HTTP/1.1" % CHAT]


BAD_MODELS = {
    "escaped_crlf": "gpt-4o\r\n2026-01-01T00:00:00.000Z [1] worker 0: "
                    "INJECTED admin login",
    "escaped_lf": "gpt-4o\nINJECTED",
    "escaped_cr": "gpt-4o\rINJECTED",
    "escaped_nul": "gpt-4o\u0000INJECTED",
    "escaped_tab": "gpt-4o\tx",
    "escaped_esc": "gpt-4o\u001b[31m",
    "del": "gpt-4o\u007f",
    "space": "gpt 4o",
    "leading_space": " gpt-4o",
    "non_ascii": "gpt-4o-\u00e9",
    "emoji": "gpt-\U0001F600",
    "too_long": "g" * 128,
}


def test_finding11_model_with_control_characters_never_reaches_log_or_row(
        gateway, db):
    """A CR/LF in a model forged log lines and was stored raw.  A model
    that is not 1..127 bytes of printable ASCII is 400 invalid_model: not
    forwarded, no forged log line, and its row (status 400) has no control
    character in any text column."""
    s, up = gateway()
    wrong, rids = [], []
    for name, model in BAD_MODELS.items():
        st, h, data = send(s, CHAT, json.dumps(chat_body(model)).encode())
        try:
            openai_error(st, h, data, 400, "invalid_model")
            rids.append(h["x-request-id"])
        except (AssertionError, ValueError) as e:
            wrong.append((name, st, data[:200], str(e)[:150]))
    # raw UTF-8 and raw CR/LF in the JSON text
    for raw, code in (('{"model":"gpt-4o-\u00e9","messages":[]}'.encode(),
                       "invalid_model"),
                      (b'{"model":"gpt-4o\r\nINJECTED","messages":[]}',
                       "invalid_json")):
        st, h, data = send(s, CHAT, raw)
        try:
            openai_error(st, h, data, 400, code)
            rids.append(h["x-request-id"])
        except (AssertionError, ValueError) as e:
            wrong.append((raw[:40], st, data[:200], str(e)[:150]))
    assert not wrong, wrong
    no_upstream_request(up, "a model that is not printable ASCII")
    for rid in rids:
        row = db.row(rid)
        assert row["status"] == 400, row
        no_control_chars(row)
    # the longest model that is allowed, exactly as sent
    model = "m" * 127
    st, h, data = send(s, CHAT, chat_body(model))
    assert st == 200, data
    assert up.last()["body"]["model"] == model
    assert db.row(h["x-request-id"])["model"] == model
    log_is_clean(s)
