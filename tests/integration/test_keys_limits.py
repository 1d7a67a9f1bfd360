"""API keys, model access, rate limits and budgets, as a caller sees them.

Each test writes a keys.conf (secrets made here, only their SHA-256 in the
file, the way `sluicectl key new` does), starts sluiced in front of one
mockllm, and checks what the caller gets back: status, error JSON in the
caller's protocol, retry-after.  Where the usage row matters, `database`
points at a fresh database in the session's PostgreSQL (the `pg` fixture)
and the row is checked too.

Prices are chosen so that costs are round: gpt-4o-mini input 100 USD per
1M tokens = 100 micro-USD per prompt token, and the mock is told how many
prompt tokens to report (x-mock-prompt-tokens).
"""

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time

import pytest

from conftest import UsageDb, BUILD, closed_port, post, request, wait_for

SLUICECTL = os.path.join(BUILD, "sluicectl")
UPSTREAM_ENV = "SLUICE_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-dummy-" + "u" * 24
CHAT = "/v1/chat/completions"
MSGS = "/v1/messages"
PRICES = ("price gpt-4o-mini input 100 output 0;\n"
          "price gpt-4o input 100 output 1000;\n"
          "price claude-sonnet-4-5 input 100 output 0;\n")


# ---------------------------------------------------------------------------
# Keys, databases and a gateway built from them.
# ---------------------------------------------------------------------------

def new_secret():
    return "sk-sluice-" + secrets.token_urlsafe(32)


def limits_block(kind, name, first=(), models=None, rpm=None, tpm=None,
                 budget=None, **more):
    """A `key` or `team` block: FIRST lines, the limits, then MORE
    directives by name (True: a directive without a value)."""
    lines = ["%s %s {" % (kind, name)] + ["    %s" % ln for ln in first]
    for k, v in (("models", models), ("rpm", rpm), ("tpm", tpm),
                 ("budget", budget)) + tuple(more.items()):
        if v is True:
            lines.append("    %s;" % k)
        elif v:
            lines.append("    %s %s;" % (k, v))
    lines.append("}")
    return "\n".join(lines) + "\n"


def key_block(name, secret, **limits):
    return limits_block("key", name, ["hash sha256:%s;" % hashlib.sha256(
        secret.encode()).hexdigest()], **limits)


class Keys:
    """A keys.conf: {name: (secret, block)}, rewritten whole (by rename,
    so a reload never reads half a file)."""

    def __init__(self, path):
        self.path = str(path)
        self.keys = {}

    def add(self, name, **opts):
        secret = new_secret()
        self.keys[name] = (secret, key_block(name, secret, **opts))
        return secret

    def add_block(self, name, secret, block):
        self.keys[name] = (secret, block)

    def remove(self, name):
        del self.keys[name]

    def secret(self, name):
        return self.keys[name][0]

    def write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(b for _, b in self.keys.values()))
        os.chmod(tmp, 0o600)    # sluiced refuses a world-readable one
        os.rename(tmp, self.path)


class Db(UsageDb):

    def rows(self):
        """{request_id: row dict} for every row."""
        cols = ("request_id", "status", "key_name", "error_class", "model",
                "cost_micro_usd", "worker_pid")
        got = self.query("SELECT request_id::text, status, key_name, "
                         "error_class, model, cost_micro_usd, worker_pid "
                         "FROM usage_events")
        return {r[0]: dict(zip(cols, r)) for r in got}

    def wait_rows(self, n, timeout=10.0):
        wait_for(lambda: self.count() >= n, timeout, interval=0.05,
                 what="%d usage rows" % n)
        rows = self.rows()
        assert len(rows) == n, "expected %d rows, got %d" % (n, len(rows))
        return rows


@pytest.fixture
def db(make_db):
    return make_db(Db)


@pytest.fixture
def gateway(sluice, mock, tmp_path, monkeypatch):
    """gateway(keys, workers=2, db=None) -> a started Sluice in front of
    `mock`: gpt-* on an OpenAI upstream, claude-* on an Anthropic one,
    both carrying their own key from UPSTREAM_ENV."""
    monkeypatch.setenv(UPSTREAM_ENV, UPSTREAM_KEY)

    def make(keys, workers=2, db=None, start=True, extra=""):
        keys.write()
        extra = "keys_file %s;\n%s%s" % (keys.path, PRICES, extra)
        if db is not None:
            extra += 'database "%s";\n' % db.conninfo()
        s = sluice(
            start=start, workers=workers, extra=extra,
            upstreams={
                "oai": {"url": mock.url, "api_key_env": UPSTREAM_ENV},
                "anth": {"url": mock.url, "protocol": "anthropic",
                         "api_key_env": UPSTREAM_ENV},
            },
            routes=[("claude-*", "anth"), ("*", "oai")])
        # budgeted keys get 503 until the collector has loaded their
        # spend from PostgreSQL (the log says when): wait for that
        if start and db is not None and "budget" in open(keys.path).read():
            wait_for(lambda: "key spend loaded" in s.log_text(), 15,
                     what="the collector to load key spend")
        return s

    return make


def chat(port, secret=None, model="gpt-4o-mini", how="bearer", prompt=None,
         headers=None, max_tokens=None):
    """One chat completion on a fresh connection."""
    h = {}
    if secret is not None:
        if how == "bearer":
            h["Authorization"] = "Bearer " + secret
        else:
            h["x-api-key"] = secret
    if prompt is not None:
        h["x-mock-prompt-tokens"] = str(prompt)
        h["x-mock-completion-tokens"] = "0"
    h.update(headers or {})
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return post(port, CHAT, body, headers=h)


def message(port, secret=None, model="claude-sonnet-4-5", how="x-api-key"):
    h = {"anthropic-version": "2023-06-01"}
    if secret is not None:
        if how == "bearer":
            h["Authorization"] = "Bearer " + secret
        else:
            h["x-api-key"] = secret
    return post(port, MSGS, {"model": model, "max_tokens": 16, "messages": [
        {"role": "user", "content": "hi"}]}, headers=h)


def openai_error(status, body, want_status, want_type, want_code):
    assert status == want_status, (status, body)
    j = json.loads(body)
    assert set(j) == {"error"}, j
    assert j["error"]["type"] == want_type, j
    assert j["error"]["code"] == want_code, j
    assert j["error"]["message"], j
    return j


def anthropic_error(status, body, want_status, want_type):
    assert status == want_status, (status, body)
    j = json.loads(body)
    assert j["type"] == "error", j
    assert j["error"]["type"] == want_type, j
    assert j["error"]["message"], j
    return j


def retry_after(headers):
    assert "retry-after" in headers, headers
    v = int(headers["retry-after"])
    assert v >= 1, headers
    return v


# ---------------------------------------------------------------------------
# Authentication.
# ---------------------------------------------------------------------------

def test_unknown_key_is_401_in_callers_protocol(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    good = keys.add("alice")
    s = gateway(keys)
    wrong = new_secret()

    st, _, body = chat(s.port, wrong)
    openai_error(st, body, 401, "invalid_request_error", "invalid_api_key")
    st, _, body = chat(s.port, wrong, how="x-api-key")
    openai_error(st, body, 401, "invalid_request_error", "invalid_api_key")
    st, _, body = chat(s.port, None)
    openai_error(st, body, 401, "invalid_request_error", "missing_api_key")
    # a near miss: the right secret with one more character
    st, _, body = chat(s.port, good + "x")
    openai_error(st, body, 401, "invalid_request_error", "invalid_api_key")

    st, _, body = message(s.port, wrong)
    anthropic_error(st, body, 401, "authentication_error")
    st, _, body = message(s.port, None)
    anthropic_error(st, body, 401, "authentication_error")

    st, _, body = request(s.port, "GET", "/v1/models",
                          headers={"Authorization": "Bearer " + wrong})
    openai_error(st, body, 401, "invalid_request_error", "invalid_api_key")
    # nothing of that reached the upstream
    assert mock.stats()["requests"] == 0
    st, _, body = chat(s.port, good)
    assert st == 200, body
    assert mock.stats()["requests"] == 1


def test_expired_and_disabled_keys_are_401(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    old = keys.add("old", expires="2020-01-01")
    off = keys.add("off", disabled=True)
    later = keys.add("later", expires="2099-01-01")
    s = gateway(keys)

    st, _, body = chat(s.port, old)
    openai_error(st, body, 401, "invalid_request_error", "key_expired")
    st, _, body = chat(s.port, off)
    openai_error(st, body, 401, "invalid_request_error", "key_disabled")
    st, _, body = message(s.port, old)
    anthropic_error(st, body, 401, "authentication_error")
    st, _, body = message(s.port, off)
    anthropic_error(st, body, 401, "authentication_error")
    assert mock.stats()["requests"] == 0
    st, _, body = chat(s.port, later)
    assert st == 200, body


def test_bearer_and_x_api_key_both_work(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("alice")
    s = gateway(keys)
    for how in ("bearer", "x-api-key"):
        st, _, body = chat(s.port, k, how=how)
        assert st == 200, (how, body)
        assert json.loads(body)["object"] == "chat.completion"
        st, _, body = message(s.port, k, how=how)
        assert st == 200, (how, body)
        assert json.loads(body)["type"] == "message"
    assert mock.stats()["requests"] == 4


def test_model_outside_key_globs_is_403(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("alice", models="gpt-4o-mini claude-*")
    s = gateway(keys)

    st, _, body = chat(s.port, k, model="gpt-4.1")
    j = openai_error(st, body, 403, "invalid_request_error",
                     "model_not_allowed")
    assert "gpt-4.1" in j["error"]["message"]
    st, _, body = message(s.port, k, model="claude-sonnet-4-5")
    assert st == 200, body
    st, _, body = chat(s.port, k, model="gpt-4o-mini")
    assert st == 200, body
    st, _, body = message(s.port, k, model="gpt-4o-mini-but-not")
    anthropic_error(st, body, 403, "permission_error")
    assert mock.stats()["requests"] == 2

    # GET /v1/models: the models this key may ask for (globs cannot be
    # listed), in either protocol's shape
    st, _, body = request(s.port, "GET", "/v1/models",
                          headers={"Authorization": "Bearer " + k})
    assert st == 200, body
    j = json.loads(body)
    assert j["object"] == "list"
    assert [m["id"] for m in j["data"]] == ["gpt-4o-mini"]
    st, _, body = request(s.port, "GET", "/v1/models",
                          headers={"x-api-key": k,
                                   "anthropic-version": "2023-06-01"})
    assert st == 200, body
    assert [m["id"] for m in json.loads(body)["data"]] == ["gpt-4o-mini"]
    assert mock.stats()["requests"] == 2


# ---------------------------------------------------------------------------
# Limits.
# ---------------------------------------------------------------------------

def test_rpm_holds_across_two_workers(gateway, mock, tmp_path, db):
    n = 10
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("seq", rpm=n)
    k2 = keys.add("burst", rpm=n)
    s = gateway(keys, workers=2, db=db)

    # N + 5 quick requests, a new connection each: the workers take
    # turns accepting, so each admits some and the total must still be N
    results = [chat(s.port, k) for _ in range(n + 5)]
    assert [r[0] for r in results] == [200] * n + [429] * 5
    for st, hdrs, body in results[n:]:
        openai_error(st, body, 429, "requests", "rate_limit_exceeded")
        # one request per 6 s comes back
        assert 1 <= retry_after(hdrs) <= 7, hdrs

    # and N + 5 at once from as many threads
    burst = [None] * (n + 5)
    go = threading.Event()

    def one(i):
        go.wait(5)
        burst[i] = chat(s.port, k2)

    threads = [threading.Thread(target=one, args=(i,))
               for i in range(len(burst))]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(15)
    assert all(r is not None for r in burst), burst
    assert sorted(r[0] for r in burst) == [200] * n + [429] * 5
    for st, hdrs, body in burst:
        if st == 429:
            retry_after(hdrs)
    assert mock.stats()["requests"] == 2 * n

    rows = db.wait_rows(2 * (n + 5))
    seq = [rows[r[1]["x-request-id"]] for r in results]
    assert [(r["status"], r["key_name"], r["error_class"]) for r in seq] == \
        [(200, "seq", None)] * n + [(429, "seq", "rate_limit_exceeded")] * 5
    admitted_by = {r["worker_pid"] for r in seq[:n]}
    assert admitted_by <= set(s.worker_pids()), admitted_by
    assert len(admitted_by) == 2, \
        "both workers should have admitted some of the sequential " \
        "requests (else this proves nothing): %s" % admitted_by


def test_tpm_stops_key_after_usage_crosses_it(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("tok", tpm=1000)
    other = keys.add("other", tpm=1000)
    s = gateway(keys)

    # each holds its worst case (23 input tokens estimated from its 89
    # bytes, 10 output at most) and is charged what it used: 400
    st, _, body = chat(s.port, k, prompt=400, max_tokens=10)
    assert st == 200, body
    # 400 booked and 33 held fit in 1000: admitted, and it uses 900
    st, _, body = chat(s.port, k, prompt=900, max_tokens=10)
    assert st == 200, body
    st, hdrs, body = chat(s.port, k, prompt=1, max_tokens=10)
    j = openai_error(st, body, 429, "tokens", "rate_limit_exceeded")
    assert "tokens per minute" in j["error"]["message"]
    assert "33 tokens (23 input estimated, 10 output at most)" in \
        j["error"]["message"], j
    # 1300 tokens booked at 1000/min and 33 more asked: 20 s until they
    # fit in the minute again
    assert retry_after(hdrs) == 20, hdrs
    st, hdrs, body = message(s.port, k)
    anthropic_error(st, body, 429, "rate_limit_error")
    retry_after(hdrs)
    # another key is not affected
    st, _, body = chat(s.port, other, prompt=10)
    assert st == 200, body
    assert mock.stats()["requests"] == 3


def test_small_daily_budget_stops_key_once_spent(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    # 40 prompt tokens at 100 micro-USD = 0.004 USD a request
    k = keys.add("thrifty", budget="0.01 per day")
    s = gateway(keys)

    statuses = []
    for _ in range(3):
        st, _, body = chat(s.port, k, prompt=40)
        statuses.append(st)
    assert statuses == [200, 200, 200]        # 0, 0.004, 0.008 < 0.01
    st, hdrs, body = chat(s.port, k, prompt=40)
    j = openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    assert "budget" in j["error"]["message"]
    assert "per day" in j["error"]["message"]
    # until the next UTC midnight
    left = 86400 - int(time.time()) % 86400
    assert abs(retry_after(hdrs) - left) <= 5, (hdrs, left)
    st, hdrs, body = message(s.port, k)
    anthropic_error(st, body, 429, "rate_limit_error")
    assert mock.stats()["requests"] == 3


def collector_connected(s):
    return s.log_text().count("collector: connected to PostgreSQL")


def test_budget_still_holds_after_restart(gateway, mock, tmp_path, db):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("thrifty", budget="0.01 per day")
    s = gateway(keys, db=db)
    wait_for(lambda: collector_connected(s) == 1, 10,
             what="the collector to connect")
    for _ in range(3):
        st, _, body = chat(s.port, k, prompt=40)
        assert st == 200, body
    st, _, body = chat(s.port, k, prompt=40)
    openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    assert s.stop() == 0
    # SIGTERM drained every event: the rows are there as it exits
    rows = db.rows()
    assert sorted((r["status"], r["cost_micro_usd"] or 0)
                  for r in rows.values()) == \
        [(200, 4000)] * 3 + [(429, 0)], rows

    # the same sluice.conf and keys.conf again: fresh shared memory, so
    # only PostgreSQL knows the key spent its budget today.  Until the
    # collector has loaded that spend, the key is held with 503 (never
    # admitted: that would spend the budget twice); then it is refused.
    s.start()
    t0 = time.monotonic()
    held = 0
    while True:
        st, hdrs, body = chat(s.port, k, prompt=40)
        if st != 503:
            break
        assert json.loads(body)["error"]["code"] == "budget_loading", body
        assert hdrs.get("retry-after") == "1"
        held += 1
        assert time.monotonic() - t0 < 10, "held for 10 s after restart"
        time.sleep(0.05)
    openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    assert mock.stats()["requests"] == 3, "a request was admitted"
    # once loaded it stays refused
    for _ in range(3):
        st, _, body = chat(s.port, k, prompt=40)
        openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")


# ---------------------------------------------------------------------------
# Credentials in both directions.
# ---------------------------------------------------------------------------

def test_upstream_sees_its_own_key_never_the_clients(gateway, mock,
                                                     tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("alice")
    s = gateway(keys)

    def upstream_headers():
        last = mock.last()
        hdrs = last["headers"]
        flat = json.dumps(last)
        assert k not in flat, last
        return hdrs

    for how in ("bearer", "x-api-key"):
        st, rh, body = chat(s.port, k, how=how)
        assert st == 200, body
        assert UPSTREAM_KEY not in body.decode() + json.dumps(rh)
        h = upstream_headers()
        assert h.get("authorization") == "Bearer " + UPSTREAM_KEY, h
        assert "x-api-key" not in h, h

        st, rh, body = message(s.port, k, how=how)
        assert st == 200, body
        assert UPSTREAM_KEY not in body.decode() + json.dumps(rh)
        h = upstream_headers()
        assert h.get("x-api-key") == UPSTREAM_KEY, h
        assert "authorization" not in h, h

    # no log line carries either secret
    text = s.log_text()
    assert k not in text
    assert UPSTREAM_KEY not in text


# ---------------------------------------------------------------------------
# Reload.
# ---------------------------------------------------------------------------

def test_sighup_adds_and_removes_keys_without_failing_others(gateway, mock,
                                                             tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    steady = keys.add("steady")
    doomed = keys.add("doomed")
    limited = keys.add("limited", rpm=3)
    s = gateway(keys)

    for _ in range(3):
        st, _, body = chat(s.port, limited)
        assert st == 200, body
    st, _, _ = chat(s.port, limited)
    assert st == 429

    stop = threading.Event()
    seen = {"ok": 0, "bad": []}

    def loop():
        i = 0
        while not stop.is_set() and i < 5000:
            i += 1
            try:
                # alternate fresh connections and the Anthropic shape
                if i % 2:
                    st, _, body = chat(s.port, steady)
                else:
                    st, _, body = message(s.port, steady)
            except Exception as e:  # a reset counts as a failure
                seen["bad"].append(repr(e))
                continue
            if st == 200:
                seen["ok"] += 1
            else:
                seen["bad"].append((st, body[:200]))

    t = threading.Thread(target=loop)
    t.start()
    try:
        wait_for(lambda: seen["ok"] >= 20, 10, what="the loop to run")
        newbie = keys.add("newbie")
        keys.remove("doomed")
        keys.write()
        before = seen["ok"]
        t0 = time.monotonic()
        s.signal(signal.SIGHUP)
        wait_for(lambda: chat(s.port, newbie)[0] == 200, 1.0, interval=0.02,
                 what="the added key to be accepted")
        wait_for(lambda: chat(s.port, doomed)[0] == 401, 1.0, interval=0.02,
                 what="the removed key to be refused")
        took = time.monotonic() - t0
        # keep the loop going over the old generation's exit
        wait_for(lambda: seen["ok"] >= before + 50, 10,
                 what="the loop to go on after the reload")
    finally:
        stop.set()
        t.join(30)
    assert not seen["bad"], seen["bad"][:5]
    assert took < 1.0 + 0.5, took

    st, _, body = chat(s.port, doomed)
    openai_error(st, body, 401, "invalid_request_error", "invalid_api_key")
    st, _, body = message(s.port, doomed)
    anthropic_error(st, body, 401, "authentication_error")
    st, _, body = chat(s.port, newbie)
    assert st == 200, body
    # an unchanged key keeps its rate-limit state across the reload
    st, hdrs, body = chat(s.port, limited)
    openai_error(st, body, 429, "requests", "rate_limit_exceeded")
    retry_after(hdrs)


# ---------------------------------------------------------------------------
# Usage rows for refusals, and sluicectl end to end.
# ---------------------------------------------------------------------------

def test_every_refusal_has_its_usage_row(gateway, mock, tmp_path, db):
    keys = Keys(tmp_path / "keys.conf")
    ok = keys.add("alice", models="gpt-*", rpm=2)
    off = keys.add("off", disabled=True)
    old = keys.add("old", expires="2020-01-01")
    # its first request holds 1900 (19 input tokens estimated at 100) and
    # costs 2000 (the mock's 20): the second finds the budget spent
    poor = keys.add("poor", budget="0.002 per day")
    s = gateway(keys, db=db)

    want = []      # (x-request-id, status, key_name, error_class)

    def do(expect, key_name, error_class, fn, *args, **kw):
        st, hdrs, body = fn(*args, **kw)
        assert st == expect, (st, body)
        want.append((hdrs["x-request-id"], expect, key_name, error_class))

    do(401, None, "invalid_api_key", chat, s.port, new_secret())
    do(401, None, "missing_api_key", chat, s.port, None)
    do(401, None, "invalid_api_key", message, s.port, new_secret())
    do(401, "off", "key_disabled", chat, s.port, off)
    do(401, "old", "key_expired", message, s.port, old)
    do(403, "alice", "model_not_allowed", message, s.port, ok)
    do(200, "alice", None, chat, s.port, ok)
    do(429, "alice", "rate_limit_exceeded", chat, s.port, ok)
    do(200, "poor", None, chat, s.port, poor, prompt=20)
    do(429, "poor", "budget_exceeded", chat, s.port, poor, prompt=20)

    rows = db.wait_rows(len(want))
    for rid, status, name, cls in want:
        r = rows.get(rid)
        assert r is not None, "no row for %s (%s)" % (rid, cls)
        assert (r["status"], r["key_name"], r["error_class"]) == \
            (status, name, cls), r
    # a secret appears in no row and no log line
    text = s.log_text() + json.dumps(
        [list(r.values()) for r in rows.values()], default=str)
    for name in ("alice", "off", "old", "poor"):
        assert keys.secret(name) not in text


def test_sluicectl_key_new_secret_authenticates(gateway, mock, tmp_path):
    r = subprocess.run([SLUICECTL, "key", "new", "cli", "--models", "gpt-*",
                        "--rpm", "100", "--expires", "2099-12-31"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    m = re.match(r"secret: (sk-sluice-\S+)\n\n(key cli \{.*\}\n)\Z", out, re.S)
    assert m, out
    secret, block = m.group(1), m.group(2)
    assert secret not in block

    keys = Keys(tmp_path / "keys.conf")
    keys.add("other")
    keys.add_block("cli", secret, block)
    s = gateway(keys)
    st, _, body = chat(s.port, secret)
    assert st == 200, body
    st, _, body = chat(s.port, secret, how="x-api-key")
    assert st == 200, body
    st, _, body = message(s.port, secret)
    anthropic_error(st, body, 403, "permission_error")
    st, _, body = chat(s.port, secret[:-1])
    openai_error(st, body, 401, "invalid_request_error", "invalid_api_key")


def test_budgeted_key_waits_while_spend_is_not_loaded(sluice, mock,
                                                      tmp_path, monkeypatch):
    """PostgreSQL unreachable at the first start: the spend of earlier
    runs cannot be loaded, so a budgeted key is refused with 503 and
    Retry-After rather than allowed to spend its budget twice, while a
    key without a budget is served."""
    monkeypatch.setenv(UPSTREAM_ENV, UPSTREAM_KEY)
    keys = Keys(tmp_path / "keys.conf")
    rich = keys.add("rich")
    poor = keys.add("poor", budget="5 per day")
    keys.write()
    s = sluice(workers=1, extra="keys_file %s;\n%sdatabase \"host=127.0.0.1 "
               "port=%d dbname=none connect_timeout=1\";\n"
               % (keys.path, PRICES, closed_port()),
               upstreams={"oai": {"url": mock.url,
                                  "api_key_env": UPSTREAM_ENV}},
               routes=[("*", "oai")])
    st, hdrs, body = chat(s.port, poor)
    assert st == 503, body
    assert json.loads(body)["error"]["code"] == "budget_loading"
    assert hdrs.get("retry-after") == "1"
    st, _, body = chat(s.port, rich)
    assert st == 200, body


def test_burst_of_300_from_30_clients_admits_rpm_not_workers_times_rpm(
        gateway, mock, tmp_path):
    """rpm 60 with 4 workers: 300 requests from 30 concurrent clients are
    admitted between 60 and 60 + workers times, never 4 x 60."""
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("bursty", rpm=60)
    s = gateway(keys, workers=4)
    statuses = []
    lock = threading.Lock()

    def client():
        for _ in range(10):
            st, _, _ = chat(s.port, k)
            with lock:
                statuses.append(st)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 300
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, set(statuses)
    assert 60 <= admitted <= 64, admitted


def test_broken_keys_file_on_sighup_keeps_the_old_keys(gateway, mock,
                                                       tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("keeper")
    s = gateway(keys)
    assert chat(s.port, k)[0] == 200
    with open(keys.path, "a") as f:
        f.write("key broken {\n\thash nope;\n}\n")
    line = open(keys.path).read().splitlines().index("\thash nope;") + 1
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in s.log_text(), 5,
             what="the refused reload in the log")
    assert "%s:%d:" % (keys.path, line) in s.log_text()
    for _ in range(5):
        assert chat(s.port, k)[0] == 200
