"""Token and budget limits are held at admission and settled at the end
(issue 18, item 1): a burst of concurrent requests cannot pass a budget
or a tokens-per-minute limit between them, the hold is replaced by what
the request used, and a worker's death gives its requests' holds back.

Prices (test_keys_limits.PRICES): gpt-4o at 100 micro-USD an input token
and 1000 an output token.  A request holds its input estimated from its
body (4 bytes a token, rounded up) plus its max_tokens; the mock answers
with the prompt and completion tokens the headers ask for.
"""

import json
import os
import signal
import threading
import time

from conftest import HOST, post, wait_for
from test_keys_limits import (CHAT, Keys, chat, db, gateway,  # noqa: F401
                              openai_error)

MODEL = "gpt-4o"
IN_PRICE, OUT_PRICE = 100, 1000


def body_of(max_tokens, stream=False):
    b = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
         "max_tokens": max_tokens}
    if stream:
        b["stream"] = True
    return b


def held(max_tokens, stream=False):
    """What sluice holds for body_of(max_tokens): (tokens, micro-USD)."""
    n = len(json.dumps(body_of(max_tokens, stream)).encode())
    est = (n + 3) // 4
    return est + max_tokens, est * IN_PRICE + max_tokens * OUT_PRICE


def burst(port, secret, n, max_tokens, latency_ms, prompt=5, completion=10):
    """N requests at once, each on its own connection: [(status, body)]."""
    out = [None] * n
    go = threading.Event()
    h = {"Authorization": "Bearer " + secret,
         "x-mock-latency-ms": str(latency_ms),
         "x-mock-prompt-tokens": str(prompt),
         "x-mock-completion-tokens": str(completion)}

    def one(i):
        go.wait(10)
        try:
            st, _, body = post(port, CHAT, body_of(max_tokens), headers=h,
                               timeout=30)
            out[i] = (st, body)
        except OSError as e:
            out[i] = (None, repr(e))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    go.set()
    for t in ts:
        t.join(60)
    return out


def test_a_budget_worth_five_requests_admits_five_of_fifty_at_once(
        gateway, mock, tmp_path, db):
    _, worst = held(20)
    actual = 5 * IN_PRICE + 10 * OUT_PRICE
    assert actual < worst
    budget = 5 * worst + worst // 2            # 5 holds fit, 6 do not
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("burst", budget="%d.%06d per day" % divmod(budget, 10**6))
    s = gateway(keys, db=db)
    # 50 at once, each answered after a second: all are admitted or
    # refused while the first ones still hold their worst case
    got = burst(s.port, k, 50, 20, 1000)
    statuses = sorted(st for st, _ in got)
    assert statuses == [200] * 5 + [429] * 45, got
    for st, body in got:
        if st == 429:
            j = openai_error(st, body, 429, "insufficient_quota",
                             "budget_exceeded")
            assert "lower max_tokens" in j["error"]["message"], j
    rows = db.wait_rows(50)
    spent = sum(r["cost_micro_usd"] or 0 for r in rows.values())
    assert spent == 5 * actual <= budget
    # the holds were replaced by what was used: room for 3 more worst
    # cases, one after another
    left = budget - 5 * actual
    assert left // worst == 3
    for _ in range(3):
        st, _, body = post(s.port, CHAT, body_of(20), headers={
            "Authorization": "Bearer " + k, "x-mock-prompt-tokens": "5",
            "x-mock-completion-tokens": "10"})
        assert st == 200, body
    left -= 3 * actual
    st, _, body = post(s.port, CHAT, body_of(20), headers={
        "Authorization": "Bearer " + k})
    assert (st == 200) == (left >= worst), (st, body, left, worst)


def test_tokens_per_minute_are_held_by_requests_under_way(
        gateway, mock, tmp_path):
    tokens, _ = held(400)
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("tpm", tpm=1000)
    s = gateway(keys)
    assert 2 * tokens <= 1000 < 3 * tokens
    got = burst(s.port, k, 5, 400, 1000)
    statuses = sorted(st for st, _ in got)
    assert statuses == [200, 200, 429, 429, 429], got
    for st, body in got:
        if st == 429:
            j = openai_error(st, body, 429, "tokens", "rate_limit_exceeded")
            assert "%d tokens" % tokens in j["error"]["message"], j
    # both used 15 tokens: the rest of their holds came back
    st, _, body = post(s.port, CHAT, body_of(400), headers={
        "Authorization": "Bearer " + k})
    assert st == 200, body


class SlowStream(threading.Thread):
    """A stream of 40 events 300 ms apart; `events` counts what came."""

    def __init__(self, port, secret, max_tokens):
        super().__init__(daemon=True)
        self.port, self.secret, self.max_tokens = port, secret, max_tokens
        self.status = None
        self.events = 0
        self.started = threading.Event()

    def run(self):
        import http.client
        conn = http.client.HTTPConnection(HOST, self.port, timeout=20)
        try:
            conn.request("POST", CHAT, body=json.dumps(
                body_of(self.max_tokens, stream=True)).encode(), headers={
                    "Content-Type": "application/json",
                    "Authorization": "Bearer " + self.secret,
                    "x-mock-chunks": "40", "x-mock-chunk-delay-ms": "300"})
            resp = conn.getresponse()
            self.status = resp.status
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: {"):
                    self.events += 1
                    if self.events >= 2:
                        self.started.set()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            self.started.set()
            conn.close()


def test_a_dying_worker_gives_its_holds_back(gateway, mock, tmp_path):
    _, worst = held(100, stream=True)
    budget = 2 * worst + worst // 2
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("dies", budget="%d.%06d per day" % divmod(budget, 10**6))
    s = gateway(keys, workers=1)
    streams = [SlowStream(s.port, k, 100) for _ in range(2)]
    for t in streams:
        t.start()
    for t in streams:
        assert t.started.wait(20) and t.status == 200, t.status
    # two worst cases held: a third does not fit
    st, _, body = post(s.port, CHAT, body_of(100), headers={
        "Authorization": "Bearer " + k})
    openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    [victim] = s.worker_pids()
    os.kill(victim, signal.SIGKILL)
    for t in streams:
        t.join(30)
    assert all(t.events < 40 for t in streams)
    wait_for(lambda: len(s.worker_pids()) == 1 and
             s.worker_pids() != [victim], 10, what="a new worker")
    # the master charged the cut streams their estimates (a few hundred
    # micro-USD) in place of their holds: a worst case fits again
    deadline = time.monotonic() + 10
    while True:
        st, _, body = post(s.port, CHAT, body_of(100), headers={
            "Authorization": "Bearer " + k})
        if st == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert st == 200, body
    assert "died with 2 requests in flight" in s.log_text()
