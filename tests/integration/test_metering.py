"""Metering: every request becomes exactly one row in usage_events.

Each test gets a fresh database in the session's PostgreSQL cluster (the
`pg` fixture) and a sluiced whose `database` points at it; the collector
creates the schema on connect.  mockllm reports the token numbers each
request forces with x-mock-prompt-tokens / -completion-tokens /
-cached-tokens, so every row can be checked exactly: the count, the
request_id against the x-request-id the client received, the tokens
against what the mock reported and the cost against the price lines.

Rows are waited for by bounded polling; the only sleep that is not a
poll is the database outage itself.
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from conftest import (SLUICED, UsageDb, HOST, pid_alive, pids_children, post,
                      proc_title, wait_for)

# USD per 1M tokens (= micro-USD per token): input, output, cached input.
PRICES = {
    "gpt-4o-mini": ("0.15", "0.60", "0.075"),
    "claude-sonnet-4-*": ("3.00", "15.00", "0.30"),
    "text-embedding-3-small": ("0.02", "0", None),
    "gpt-4.1": ("2.00", "8.00", "0.50"),
}
CHAT_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-sonnet-4-5"
EMBED_MODEL = "text-embedding-3-small"

# The numbers the mock reports for the protocol-shape tests.
P, C, K = 1234, 56, 78
TOKENS = {"x-mock-prompt-tokens": str(P),
          "x-mock-completion-tokens": str(C),
          "x-mock-cached-tokens": str(K)}

ROW_COLUMNS = ("request_id", "status", "error_class", "key_name", "model",
               "upstream", "endpoint", "stream", "prompt_tokens",
               "completion_tokens", "cached_tokens", "cost_micro_usd",
               "usage_source", "worker_pid", "served_model",
               "reasoning_tokens", "cache_write_5m_tokens",
               "cache_write_1h_tokens")


def cost(price_model, prompt, completion, cached):
    """round((prompt - cached) * input + cached * cached_price
    + completion * output), the prices in USD per 1M tokens, in
    micro-USD.  The test numbers never land on a tie."""
    inp, out, cch = (Decimal(x) if x is not None else None
                     for x in PRICES[price_model])
    if cch is None:
        cch = inp
    exact = (prompt - cached) * inp + cached * cch + completion * out
    assert exact % 1 != Decimal("0.5"), "pick numbers that do not tie"
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# ---------------------------------------------------------------------------
# A fresh database per test, and a sluiced that meters into it.
# ---------------------------------------------------------------------------

class Db(UsageDb):

    def count(self):
        """(rows, distinct request_ids); (0, 0) before the collector
        has created the table."""
        try:
            return tuple(self.query(
                "SELECT count(*), count(DISTINCT request_id) "
                "FROM usage_events")[0])
        except psycopg.errors.UndefinedTable:
            return (0, 0)

    def rows(self):
        """{request_id: {column: value}} for every row."""
        got = self.query("SELECT request_id::text, %s FROM usage_events" %
                         ", ".join(ROW_COLUMNS[1:]))
        return {r[0]: dict(zip(ROW_COLUMNS, r)) for r in got}

    def wait_rows(self, n, timeout=15.0):
        """Wait until there are n rows; then the count must be exact and
        request_id unique."""
        wait_for(lambda: self.count()[0] >= n, timeout,
                 interval=0.05, what="%d usage rows" % n)
        total, distinct = self.count()
        assert (total, distinct) == (n, n), \
            "rows, distinct request_ids: expected %d, got %d, %d" % (
                n, total, distinct)
        return self.rows()


@pytest.fixture
def db(make_db):
    return make_db(Db)


def price_lines():
    out = []
    for model, (inp, outp, cch) in PRICES.items():
        out.append("price %s input %s output %s%s;" % (
            model, inp, outp, " cached %s" % cch if cch else ""))
    return "\n".join(out)


@pytest.fixture
def metered(db, mock, sluice):
    """metered(**sluice_kw) -> a sluiced metering into db; claude-* goes
    to the mock as an Anthropic upstream, everything else as OpenAI.
    db comes first so that it is dropped after sluiced has stopped."""
    def make(extra="", routes=None, **kw):
        conf = 'database "%s";\n%s\n%s' % (db.conninfo(), price_lines(),
                                          extra)
        return sluice(upstreams={"oai": mock.url,
                                 "anth": {"url": mock.url,
                                          "protocol": "anthropic"}},
                      routes=routes or [("claude-*", "anth"), ("*", "oai")],
                      extra=conf, **kw)
    return make


def sse_data(body):
    """The data: payloads of an SSE body, in order (JSON decoded, except
    the literal [DONE])."""
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: "):
            d = line[6:]
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


# ---------------------------------------------------------------------------
# Protocol shapes: the row carries what the mock reported, priced.
# ---------------------------------------------------------------------------

MSGS = [{"role": "user", "content": "hello"}]

# id: (path, body, prompt, completion, cached, price model) as the row
# must have them.  OpenAI-style prompt counts include cached tokens;
# Anthropic's input_tokens do not, so the row adds cache reads back.
SHAPES = {
    "chat": ("/v1/chat/completions",
             {"model": CHAT_MODEL, "messages": MSGS},
             P, C, K, "gpt-4o-mini"),
    "chat_stream_include_usage": (
        "/v1/chat/completions",
        {"model": CHAT_MODEL, "messages": MSGS, "stream": True,
         "stream_options": {"include_usage": True}},
        P, C, K, "gpt-4o-mini"),
    # completions usage has no cached detail: none cached.
    "completions": ("/v1/completions",
                    {"model": CHAT_MODEL, "prompt": "hello"},
                    P, C, 0, "gpt-4o-mini"),
    "completions_stream": ("/v1/completions",
                           {"model": CHAT_MODEL, "prompt": "hello",
                            "stream": True},
                           P, C, 0, "gpt-4o-mini"),
    # embeddings: input tokens only.
    "embeddings": ("/v1/embeddings",
                   {"model": EMBED_MODEL, "input": "hello"},
                   P, 0, 0, "text-embedding-3-small"),
    "responses": ("/v1/responses", {"model": CHAT_MODEL, "input": "hello"},
                  P, C, K, "gpt-4o-mini"),
    "responses_stream": ("/v1/responses",
                         {"model": CHAT_MODEL, "input": "hello",
                          "stream": True},
                         P, C, K, "gpt-4o-mini"),
    "anthropic_messages": ("/v1/messages",
                           {"model": CLAUDE_MODEL, "max_tokens": 64,
                            "messages": MSGS},
                           P + K, C, K, "claude-sonnet-4-*"),
    "anthropic_messages_stream": ("/v1/messages",
                                  {"model": CLAUDE_MODEL, "max_tokens": 64,
                                   "messages": MSGS, "stream": True},
                                  P + K, C, K, "claude-sonnet-4-*"),
}


def assert_usage_row(row, rid, path, body, prompt, completion, cached,
                     price_model):
    want = {"request_id": rid, "status": 200, "error_class": None,
            "model": body["model"], "endpoint": path,
            "stream": bool(body.get("stream")),
            "prompt_tokens": prompt, "completion_tokens": completion,
            "cached_tokens": cached,
            "cost_micro_usd": cost(price_model, prompt, completion, cached),
            "usage_source": "upstream",
            # the answer's own "model" (mockllm echoes the request's)
            "served_model": body["model"],
            # only the Responses API reports reasoning tokens here
            "reasoning_tokens": 0 if path == "/v1/responses" else None,
            "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0}
    got = {k: row[k] for k in want}
    assert got == want


@pytest.mark.parametrize("shape", list(SHAPES))
def test_row_has_the_tokens_the_upstream_reported_and_their_cost(
        metered, db, shape):
    path, body, prompt, completion, cached, price_model = SHAPES[shape]
    s = metered()
    st, hdrs, data = post(s.port, path, body, headers=TOKENS)
    assert st == 200, data
    if body.get("stream"):
        assert b"event: error" not in data
    rid = hdrs["x-request-id"]
    rows = db.wait_rows(1)
    assert_usage_row(rows[rid], rid, path, body, prompt, completion,
                     cached, price_model)


def test_chat_stream_without_include_usage_is_metered_and_client_gets_usage_chunk(
        metered, db):
    body = {"model": CHAT_MODEL, "messages": MSGS, "stream": True}
    s = metered()
    st, hdrs, data = post(s.port, "/v1/chat/completions", body,
                          headers=dict(TOKENS, **{"x-mock-chunks": "3"}))
    assert st == 200, data
    events = sse_data(data)
    assert events[-1] == "[DONE]", events[-3:]
    chunks = events[:-1]
    content = [e for e in chunks if e["choices"]]
    usage = [e for e in chunks if e.get("usage")]
    assert len(content) == 3, chunks
    # one extra final chunk: empty choices, the usage object
    assert len(usage) == 1 and usage[0] is chunks[-1], chunks
    assert usage[0]["choices"] == []
    assert usage[0]["usage"]["prompt_tokens"] == P
    assert usage[0]["usage"]["completion_tokens"] == C
    rid = hdrs["x-request-id"]
    rows = db.wait_rows(1)
    assert_usage_row(rows[rid], rid, "/v1/chat/completions", body, P, C, K,
                     "gpt-4o-mini")


def test_chat_stream_with_include_usage_gets_exactly_one_usage_chunk(
        metered, db):
    body = {"model": CHAT_MODEL, "messages": MSGS, "stream": True,
            "stream_options": {"include_usage": True}}
    s = metered()
    st, hdrs, data = post(s.port, "/v1/chat/completions", body,
                          headers=dict(TOKENS, **{"x-mock-chunks": "3"}))
    assert st == 200, data
    events = sse_data(data)
    assert events[-1] == "[DONE]"
    usage = [e for e in events[:-1] if e.get("usage")]
    assert len(usage) == 1, events
    db.wait_rows(1)


def test_model_without_price_is_metered_with_null_cost(metered, db):
    body = {"model": "gpt-unpriced", "messages": MSGS}
    s = metered()
    st, hdrs, data = post(s.port, "/v1/chat/completions", body,
                          headers=TOKENS)
    assert st == 200, data
    row = db.wait_rows(1)[hdrs["x-request-id"]]
    assert (row["prompt_tokens"], row["completion_tokens"],
            row["cached_tokens"], row["cost_micro_usd"],
            row["usage_source"]) == (P, C, K, None, "upstream")


def test_model_name_not_utf8_or_not_ascii_is_refused_and_metered(
        metered, db):
    """A body that is not valid UTF-8 is not JSON (400 invalid_json), and a
    model that is not printable ASCII is 400 invalid_model; each still
    leaves its row (PostgreSQL refuses a COPY with one invalid UTF-8 value:
    the row's text must never carry the client's bytes raw)."""
    s = metered()
    for model, code in ((b"gpt-\xff-" + "\u00e9".encode() * 70,
                         "invalid_json"),
                        ("gpt-\u00e9".encode(), "invalid_model")):
        body = b'{"model": "' + model + b'", "messages": [{"role": ' \
            b'"user", "content": "hello"}]}'
        st, hdrs, data = post(s.port, "/v1/chat/completions", body,
                              headers=TOKENS)
        assert st == 400, data
        assert json.loads(data)["error"]["code"] == code, data
        row = db.wait_rows(1 if code == "invalid_json" else 2)[
            hdrs["x-request-id"]]
        assert (row["status"], row["error_class"], row["model"]) == \
            (400, code, ""), row


def test_upstream_error_row_has_status_and_no_usage(metered, db):
    s = metered()
    st, hdrs, data = post(s.port, "/v1/chat/completions",
                          {"model": CHAT_MODEL, "messages": MSGS},
                          headers=dict(TOKENS, **{"x-mock-status": "500"}))
    assert st == 500, data
    row = db.wait_rows(1)[hdrs["x-request-id"]]
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"],
            row["cached_tokens"], row["cost_micro_usd"],
            row["usage_source"]) == (500, None, None, None, None, "none")


def test_client_disconnect_mid_stream_row_says_no_usage(metered, db):
    s = metered()
    conn = http.client.HTTPConnection(HOST, s.port, timeout=10)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps({"model": CHAT_MODEL, "messages": MSGS,
                                  "stream": True}),
                 headers=dict(TOKENS, **{"Content-Type": "application/json",
                                         "x-mock-chunks": "50",
                                         "x-mock-chunk-delay-ms": "100"}))
    resp = conn.getresponse()
    assert resp.status == 200
    rid = resp.getheader("x-request-id")
    assert resp.read1(65536)             # the stream has started
    conn.sock.shutdown(socket.SHUT_RDWR)
    resp.close()
    conn.close()
    row = db.wait_rows(1)[rid]
    assert (row["status"], row["error_class"], row["prompt_tokens"],
            row["completion_tokens"], row["cost_micro_usd"],
            row["usage_source"]) == (499, "client_closed", None, None, None,
                                     "none")


# ---------------------------------------------------------------------------
# Rejections by sluice itself: one row each, with status and error class.
# ---------------------------------------------------------------------------

SECRET = "sk-sluice-metering-test-alice"
AUTH = {"Authorization": "Bearer " + SECRET}

# id: (path, body (bytes or dict), headers, status, error_class, key_name,
#      model)
REJECTIONS = {
    "401_missing_key": ("/v1/chat/completions",
                        {"model": CHAT_MODEL, "messages": MSGS}, {},
                        401, "missing_api_key", None, None),
    "401_invalid_key": ("/v1/chat/completions",
                        {"model": CHAT_MODEL, "messages": MSGS},
                        {"Authorization": "Bearer sk-sluice-nobody"},
                        401, "invalid_api_key", None, None),
    "404_unknown_url": ("/v1/no/such/thing",
                        {"model": CHAT_MODEL, "messages": MSGS}, AUTH,
                        404, "unknown_url", None, None),
    "404_unknown_model": ("/v1/chat/completions",
                          {"model": "llama-unrouted", "messages": MSGS},
                          AUTH, 404, "model_not_found", "alice",
                          "llama-unrouted"),
    "400_invalid_json": ("/v1/chat/completions", b'{"model": "gpt-4o-mini"',
                         AUTH, 400, "invalid_json", "alice", None),
    "400_missing_model": ("/v1/chat/completions", {"messages": MSGS}, AUTH,
                          400, "missing_model", "alice", None),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejection_is_one_row_with_status_and_error_class(
        metered, db, tmp_path, case):
    path, body, headers, status, error_class, key_name, model = \
        REJECTIONS[case]
    keys = tmp_path / "keys.conf"
    keys.write_text("key alice {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    keys.chmod(0o600)
    s = metered(extra="keys_file %s;" % keys,
                routes=[("gpt-*", "oai"), ("claude-*", "anth")])
    st, hdrs, data = post(s.port, path, body, headers=headers)
    assert st == status, data
    assert json.loads(data)["error"]["code"] == error_class
    rid = hdrs["x-request-id"]
    row = db.wait_rows(1)[rid]
    want = {"status": status, "error_class": error_class,
            "key_name": key_name, "endpoint": path,
            "prompt_tokens": None, "completion_tokens": None,
            "cached_tokens": None, "cost_micro_usd": None,
            "usage_source": "none"}
    if model is not None:
        want["model"] = model
    assert {k: row[k] for k in want} == want


# ---------------------------------------------------------------------------
# Under load, and when something dies.
# ---------------------------------------------------------------------------

# Whole micro-USD per token, so that no load row lands on a rounding tie.
LOAD_MODEL = "gpt-4.1"
LOAD_BODY = json.dumps({"model": LOAD_MODEL, "messages": MSGS}).encode()


class Load:
    """`clients` threads, each sending `per_client` chat requests on one
    keep-alive http.client connection (replaced when it breaks; a thread
    gives up after `max_errors` failures in a row).  Every request forces
    its own prompt-token count, so each row can be matched to its answer.

    answered: [{"rid", "sent_rid", "status", "prompt", "completion"}]
    sent_rids: the x-request-id of every request sent (send_ids only)."""

    def __init__(self, port, clients=20, per_client=100, latency_ms=0,
                 pace_s=0.0, send_ids=False, max_errors=3,
                 max_seconds=60.0):
        self.port = port
        self.per_client = per_client
        self.latency_ms = latency_ms
        self.pace_s = pace_s
        self.send_ids = send_ids
        self.max_errors = max_errors
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.answered = []
        self.sent_rids = []
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(n,),
                                         daemon=True)
                        for n in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self.threads)
        assert alive == 0, "%d load clients still running" % alive

    def done(self):
        with self.lock:
            return len(self.answered)

    def run(self, n):
        conn = None
        errors_in_row = 0
        for i in range(self.per_client):
            if time.monotonic() > self.deadline:
                break
            prompt = 1 + n * 10000 + i
            completion = 1 + i % 7
            hdrs = {"Content-Type": "application/json",
                    "x-mock-prompt-tokens": str(prompt),
                    "x-mock-completion-tokens": str(completion)}
            if self.latency_ms:
                hdrs["x-mock-latency-ms"] = str(self.latency_ms)
            sent_rid = None
            if self.send_ids:
                sent_rid = str(uuid.uuid4())
                hdrs["x-request-id"] = sent_rid
                with self.lock:
                    self.sent_rids.append(sent_rid)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port,
                                                      timeout=15)
                conn.request("POST", "/v1/chat/completions", body=LOAD_BODY,
                             headers=hdrs)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append("client %d request %d: %r" %
                                       (n, i, e))
                if conn is not None:
                    conn.close()
                conn = None
                errors_in_row += 1
                if errors_in_row >= self.max_errors:
                    break
                time.sleep(0.02)
                continue
            errors_in_row = 0
            with self.lock:
                self.answered.append({
                    "rid": resp.getheader("x-request-id"),
                    "sent_rid": sent_rid,
                    "echo": resp.getheader("x-client-request-id"),
                    "status": resp.status,
                    "prompt": prompt, "completion": completion})
            if resp.will_close:
                conn.close()
                conn = None
            if self.pace_s:
                time.sleep(self.pace_s)
        if conn is not None:
            conn.close()


def assert_rows_match_answers(rows, answered):
    """Every answer has its row: same request_id, status and tokens."""
    missing = [a["rid"] for a in answered if a["rid"] not in rows]
    assert not missing, "%d answered requests have no row, e.g. %s" % (
        len(missing), missing[:5])
    wrong = []
    for a in answered:
        r = rows[a["rid"]]
        want = (a["status"], a["prompt"], a["completion"], 0,
                cost(LOAD_MODEL, a["prompt"], a["completion"], 0),
                "upstream")
        got = (r["status"], r["prompt_tokens"], r["completion_tokens"],
               r["cached_tokens"], r["cost_micro_usd"], r["usage_source"])
        if got != want:
            wrong.append((a["rid"], want, got))
    assert not wrong, "%d rows differ from their answers, e.g. %s" % (
        len(wrong), wrong[:3])


def collector_pid(s):
    pids = [p for p in pids_children(s.pid)
            if proc_title(p).startswith("sluice: collector")]
    return pids[0] if len(pids) == 1 and pid_alive(pids[0]) else None


def wakeups(pid):
    """Times PID slept and was woken (voluntary context switches)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches for %d" % pid)


def test_idle_collector_sleeps_until_the_next_event_and_loads_it(
        metered, db):
    """With no traffic the collector sleeps until a timer is due (its
    heartbeat, once a second) instead of polling the lanes (50 times a
    second before); the first event pushed after that wakes it through
    the ring's bell, and is loaded."""
    s = metered()
    st, hdrs, body = post(s.port, "/v1/chat/completions",
                          {"model": CHAT_MODEL, "messages": MSGS}, TOKENS)
    assert st == 200, body
    db.wait_rows(1)     # connected, schema checked, the batch flushed
    pid = collector_pid(s)
    assert pid is not None
    w0, t0 = wakeups(pid), time.monotonic()
    time.sleep(3)       # the idle stretch being measured, not a wait
    woke, secs = wakeups(pid) - w0, time.monotonic() - t0
    assert woke <= secs + 4, \
        "an idle collector woke %d times in %.1f s" % (woke, secs)

    st, hdrs, body = post(s.port, "/v1/chat/completions",
                          {"model": CHAT_MODEL, "messages": MSGS}, TOKENS)
    assert st == 200, body
    rows = db.wait_rows(2)
    row = rows[hdrs["x-request-id"]]
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"],
            row["cached_tokens"]) == (200, P, C, K)
    assert collector_pid(s) == pid


def test_2000_concurrent_requests_make_2000_rows_with_their_request_ids(
        metered, db):
    s = metered()
    load = Load(s.port, clients=20, per_client=100).start()
    load.join(timeout=60)
    assert not load.errors, load.errors[:5]
    assert len(load.answered) == 2000
    assert all(a["status"] == 200 for a in load.answered)
    received = {a["rid"] for a in load.answered}
    assert len(received) == 2000, "x-request-id repeated across responses"
    rows = db.wait_rows(2000, timeout=30)
    assert set(rows) == received
    assert_rows_match_answers(rows, load.answered)


def client_ids(db):
    """The client_request_id of every row."""
    return [r[0] for r in db.query(
        "SELECT client_request_id FROM usage_events")]


def test_sigterm_under_load_every_received_response_has_its_row(
        metered, db):
    s = metered()
    load = Load(s.port, clients=20, per_client=100, latency_ms=10,
                send_ids=True).start()
    wait_for(lambda: load.done() >= 300, 30, what="300 answers")
    s.signal(signal.SIGTERM)
    assert s.proc.wait(timeout=20) == 0
    load.join(timeout=30)
    # the master has exited: the rows must be there now, no waiting
    total, distinct = db.count()
    rows = db.rows()
    assert total == distinct == len(rows)
    assert 300 <= len(load.answered) < 2000, "SIGTERM was not mid-load"
    # the client's ids come back beside sluice's own, never instead
    assert all(a["echo"] == a["sent_rid"] != a["rid"]
               for a in load.answered)
    assert_rows_match_answers(rows, load.answered)
    # and no row for a request nobody sent
    assert set(client_ids(db)) <= set(load.sent_rids)


def test_database_down_10s_under_load_spools_and_replays_every_row(
        metered, db, pg):
    s = metered()
    # 2,000 requests spread over ~13 s
    load = Load(s.port, clients=20, per_client=100, pace_s=0.12).start()
    try:
        wait_for(lambda: db.count()[0] > 0, 15,
                 what="the collector to load its first rows")
        pg.stop()
        before = load.done()
        time.sleep(10)                  # the outage under test
        during = load.done() - before
    finally:
        pg.start()
    load.join(timeout=60)
    assert during > 500, "sluice stopped answering while the db was down"
    assert not load.errors, load.errors[:5]
    assert len(load.answered) == 2000
    rows = db.wait_rows(2000, timeout=30)
    assert set(rows) == {a["rid"] for a in load.answered}
    assert_rows_match_answers(rows, load.answered)


def test_collector_killed_under_load_is_respawned_and_loses_no_row(
        metered, db):
    s = metered()
    load = Load(s.port, clients=20, per_client=100, pace_s=0.02).start()
    wait_for(lambda: db.count()[0] > 0, 15,
             what="the collector to load its first rows")
    old = wait_for(lambda: collector_pid(s), 5, what="the collector")
    wait_for(lambda: load.done() >= 500, 30, what="500 answers")
    done_at_kill = load.done()
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: collector_pid(s) not in (None, old) and
                   collector_pid(s), 10, what="a new collector")
    assert new != old
    load.join(timeout=60)
    assert done_at_kill < 2000, "the collector was not killed mid-load"
    assert not load.errors, load.errors[:5]
    assert len(load.answered) == 2000
    rows = db.wait_rows(2000, timeout=30)
    assert set(rows) == {a["rid"] for a in load.answered}
    assert_rows_match_answers(rows, load.answered)


def test_worker_killed_under_load_every_answer_it_gave_has_its_row(
        metered, db):
    s = metered(workers=2)
    load = Load(s.port, clients=20, per_client=100, latency_ms=20,
                send_ids=True, max_errors=5).start()
    wait_for(lambda: load.done() >= 400, 30, what="400 answers")

    def busiest_worker():
        # the live worker with the most rows so far: it holds connections
        live = s.worker_pids()
        pids = [r[0] for r in db.query(
            "SELECT worker_pid FROM usage_events GROUP BY 1 "
            "ORDER BY count(*) DESC")]
        return next((p for p in pids if p in live), None)

    victim = wait_for(busiest_worker, 15, what="rows from a live worker")
    os.kill(victim, signal.SIGKILL)
    load.join(timeout=60)
    assert all(a["echo"] == a["sent_rid"] != a["rid"]
               for a in load.answered)
    received = {a["rid"] for a in load.answered}
    wait_for(lambda: received <= set(db.rows()), 15,
             what="a row for every answered request")
    rows = db.rows()
    total, distinct = db.count()
    assert total == distinct == len(rows)
    assert_rows_match_answers(rows, load.answered)
    # the victim had answered some of them before it died
    by_victim = [rid for rid in received if rows[rid]["worker_pid"] == victim]
    assert by_victim, "the killed worker had answered nothing"
    assert len(load.answered) < len(load.sent_rids), \
        "no request was cut by the kill"
    assert set(client_ids(db)) <= set(load.sent_rids)


# The mock's answer text: chunk i is MOCK_WORDS[i % 13] and a space.
MOCK_WORDS = ("Hello", "from", "the", "mock", "upstream.", "This", "answer",
              "is", "deterministic", "and", "cheap", "to", "make.")
SLOW_CHUNKS = 40


class SlowStream(threading.Thread):
    """One slow chat stream (no usage reported): `rid` once its response
    head came, `text` the content the client read before it was cut."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.rid = None
        self.text = ""
        self.events = 0
        self.error = None
        self.started = threading.Event()

    def run(self):
        body = json.dumps({"model": LOAD_MODEL, "messages": MSGS,
                           "stream": True}).encode()
        self.body_len = len(body)
        conn = http.client.HTTPConnection(HOST, self.port, timeout=20)
        try:
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Content-Type": "application/json",
                                  "x-mock-chunks": str(SLOW_CHUNKS),
                                  "x-mock-chunk-delay-ms": "300"})
            resp = conn.getresponse()
            self.rid = resp.getheader("x-request-id")
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: {"):
                    d = json.loads(line[6:])
                    self.text += d["choices"][0]["delta"].get(
                        "content") or ""
                    self.events += 1
                    if self.events >= 2:
                        self.started.set()
        except (OSError, http.client.HTTPException) as e:
            self.error = e
        finally:
            self.started.set()
            conn.close()


def test_worker_killed_mid_stream_every_started_request_has_one_row(
        metered, db):
    s = metered(workers=1)
    load = Load(s.port, clients=8, per_client=200, latency_ms=20,
                send_ids=True, max_errors=5).start()
    streams = [SlowStream(s.port) for _ in range(6)]
    for t in streams:
        t.start()
    for t in streams:
        assert t.started.wait(20), "a stream never got going"
    wait_for(lambda: load.done() >= 100, 30, what="100 answers")
    [victim] = s.worker_pids()
    os.kill(victim, signal.SIGKILL)
    for t in streams:
        t.join(30)
    load.join(timeout=60)
    assert all(t.rid and t.events >= 2 for t in streams), \
        [(t.rid, t.events, t.error) for t in streams]
    assert all(t.events < SLOW_CHUNKS for t in streams), \
        "a stream ended before the kill"
    # every request a client saw start has its row, exactly one
    seen = {t.rid for t in streams} | {a["rid"] for a in load.answered}
    wait_for(lambda: seen <= set(db.rows()), 15,
             what="a row for every request that got its head")
    rows = db.rows()
    total, distinct = db.count()
    assert total == distinct == len(rows)
    assert_rows_match_answers(rows, load.answered)
    assert set(client_ids(db)) <= set(load.sent_rids) | {None}
    bytes_in = dict(db.query(
        "SELECT request_id::text, bytes_in FROM usage_events"))
    full = "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " "
                   for i in range(SLOW_CHUNKS))
    for t in streams:
        row = rows[t.rid]
        # as the worker would have metered a stream without usage:
        # 4 bytes a token, in from the body read (its head is more than
        # the body: counting it would change the figure), out from the
        # text relayed
        assert {k: row[k] for k in ("status", "error_class", "stream",
                                    "usage_source", "worker_pid",
                                    "model", "cached_tokens")} == {
            "status": 200, "error_class": "worker_died", "stream": True,
            "usage_source": "estimated", "worker_pid": victim,
            "model": LOAD_MODEL, "cached_tokens": 0}
        assert bytes_in[t.rid] > 2 * t.body_len
        assert row["prompt_tokens"] == (t.body_len + 3) // 4 > 0
        # the worker relayed at least what the client read, and less
        # than the whole answer
        assert (len(t.text) + 3) // 4 <= row["completion_tokens"] < \
            (len(full) + 3) // 4
        assert row["completion_tokens"] > 0
        assert row["cost_micro_usd"] == cost(
            LOAD_MODEL, row["prompt_tokens"], row["completion_tokens"], 0)
    # a death row is only ever one of the victim's, estimated
    died = [r for r in rows.values() if r["error_class"] == "worker_died"]
    assert {t.rid for t in streams} <= {r["request_id"] for r in died}
    assert all(r["worker_pid"] == victim and
               r["usage_source"] == "estimated" for r in died)


def test_a_reload_raising_max_connections_covers_every_connection(
        metered, db):
    """The in-flight tables are sized from max_connections at start; a
    reload that raises it gives the new workers tables of the new size,
    so a death still meters every request of theirs."""
    s = metered(workers=1, extra="max_connections 3;")
    [old] = s.worker_pids()
    with open(s.conf_path) as f:
        text = f.read()
    assert "max_connections 3;" in text
    with open(s.conf_path, "w") as f:
        f.write(text.replace("max_connections 3;", "max_connections 12;"))
    s.signal(signal.SIGHUP)
    wait_for(lambda: len(s.worker_pids()) == 1 and
             s.worker_pids() != [old], 10, what="the new generation alone")
    [victim] = s.worker_pids()
    streams = [SlowStream(s.port) for _ in range(8)]
    for t in streams:
        t.start()
    for t in streams:
        assert t.started.wait(20), "a stream never got going"
    os.kill(victim, signal.SIGKILL)
    for t in streams:
        t.join(30)
    assert all(t.rid and 2 <= t.events < SLOW_CHUNKS for t in streams), \
        [(t.rid, t.events, t.error) for t in streams]
    rids = {t.rid for t in streams}
    wait_for(lambda: rids <= set(db.rows()), 15,
             what="a row for each of the 8 streams")
    rows = db.rows()
    total, distinct = db.count()
    assert total == distinct == len(rows) == 8
    assert {(r["error_class"], r["worker_pid"], r["usage_source"])
            for r in rows.values()} == {("worker_died", victim, "estimated")}
    assert "stays at its size" not in s.log_text()


# ---------------------------------------------------------------------------
# The spool at a stop: emptied when PostgreSQL answers, or by sluicectl.
# ---------------------------------------------------------------------------

SLUICECTL = os.path.join(os.path.dirname(SLUICED), "sluicectl")


def spool_files(s):
    return sorted(p.name for p in (s.dir / "spool").iterdir()
                  if p.name.endswith(".bin"))


def test_sigterm_a_second_after_the_database_came_back_loads_every_row(
        metered, db, pg):
    s = metered()
    first = Load(s.port, clients=2, per_client=5).start()
    first.join(timeout=30)
    db.wait_rows(10)
    try:
        pg.stop()
        down_at = time.monotonic()
        load = Load(s.port, clients=10, per_client=30).start()
        load.join(timeout=60)
        wait_for(lambda: spool_files(s), 10, what="spool files")
        # long enough for the reconnect backoff to reach its 5 s ceiling
        time.sleep(max(0.0, 8.0 - (time.monotonic() - down_at)))
    finally:
        pg.start()
    time.sleep(1)
    s.signal(signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0
    assert not load.errors, load.errors[:5]
    answered = first.answered + load.answered
    assert len(answered) == 310
    # sluiced has exited: every row is there now, and the spool is empty
    total, distinct = db.count()
    assert (total, distinct) == (310, 310)
    rows = db.rows()
    assert set(rows) == {a["rid"] for a in answered}
    assert_rows_match_answers(rows, answered)
    assert spool_files(s) == []


def replay(conf, spool_dir):
    return subprocess.run([SLUICECTL, "spool", "replay", "-c", str(conf),
                           str(spool_dir)], capture_output=True, text=True,
                          timeout=60)


def test_sluicectl_spool_replay_loads_a_spool_left_without_database(
        mock, db, sluice, tmp_path):
    s = sluice(upstreams={"oai": mock.url}, extra=price_lines())
    load = Load(s.port, clients=5, per_client=40).start()
    load.join(timeout=60)
    assert not load.errors, load.errors[:5]
    assert len(load.answered) == 200
    conf = tmp_path / "replay.conf"
    conf.write_text(s.config(upstreams={"oai": mock.url},
                             extra='database "%s";' % db.conninfo()))
    spool = s.dir / "spool"
    wait_for(lambda: spool_files(s), 10, what="spool files")
    # a running collector owns its spool: replay refuses it
    r = replay(conf, spool)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "in use" in r.stderr
    assert s.stop() == 0
    files = spool_files(s)
    assert files
    saved = {n: (spool / n).read_bytes() for n in files}

    r = replay(conf, spool)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "%d files from %s: 200 rows, 200 new" % (len(files), spool) \
        in r.stdout
    assert spool_files(s) == []
    rows = db.wait_rows(200, timeout=1)
    assert set(rows) == {a["rid"] for a in load.answered}
    assert_rows_match_answers(rows, load.answered)

    # the same files again: idempotent, nothing new
    for n, data in saved.items():
        (spool / n).write_bytes(data)
    r = replay(conf, spool)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "200 rows, 0 new" in r.stdout
    assert db.count() == (200, 200)
    assert spool_files(s) == []
