"""The answer cache (issue 20): exact-match answers in shared memory.

Each test starts sluiced with `cache SIZE;` in front of one mockllm,
whose /stats counts the requests that reached it, so that a hit is
provably not forwarded.  Prices are round (gpt-4o-mini: 100 micro-USD a
prompt token, 1000 an output token with gpt-4o), tokens forced by
x-mock-* headers, which are not part of the cache key: the body is.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import HOST, free_port, post, request, wait_for
from test_keys_limits import (CHAT, MSGS, SLUICECTL, UPSTREAM_ENV,
                              UPSTREAM_KEY, Keys)

PRICES = ("price gpt-4o-mini input 100 output 1000;\n"
          "price claude-sonnet-4-5 input 100 output 1000;\n")
TOK = {"x-mock-prompt-tokens": "7", "x-mock-completion-tokens": "3"}
COST = 7 * 100 + 3 * 1000          # micro-USD of one such answer


@pytest.fixture
def cached(sluice, mock_factory, monkeypatch):
    """cached(keys=None, cache="1m", mock_args=(), extra="", db=None,
    workers=2) -> (sluice, mock), with admin_listen on s.admin."""
    monkeypatch.setenv(UPSTREAM_ENV, UPSTREAM_KEY)

    def make(keys=None, cache="1m", mock_args=(), extra="", db=None,
             workers=2, start=True, routes=None):
        m = mock_factory(*mock_args)
        admin = free_port()
        conf = "admin_listen 127.0.0.1:%d;\n%s%s" % (admin, PRICES, extra)
        if cache is not None:
            conf += "cache %s;\n" % cache
        if keys is not None:
            keys.write()
            conf += "keys_file %s;\n" % keys.path
        if db is not None:
            conf += 'database "%s";\n' % db.conninfo()
        s = sluice(start=start, workers=workers, extra=conf, upstreams={
            "oai": {"url": m.url, "api_key_env": UPSTREAM_ENV},
            "anth": {"url": m.url, "protocol": "anthropic",
                     "api_key_env": UPSTREAM_ENV}},
            routes=routes or [("claude-*", "anth"), ("*", "oai")])
        s.admin = admin
        return s, m

    return make


def ask(s, text="hi", secret=None, headers=None, model="gpt-4o-mini",
        stream=False, path=CHAT):
    h = dict(TOK)
    if secret is not None:
        h["Authorization"] = "Bearer " + secret
    h.update(headers or {})
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    if path == MSGS:
        body["max_tokens"] = 16
        h["anthropic-version"] = "2023-06-01"
    if stream:
        body["stream"] = True
        if path == CHAT:
            body["stream_options"] = {"include_usage": True}
    return post(s.port, path, body, headers=h)


def forwarded(m):
    return m.stats()["requests"]


def metric(s, name):
    st, _, body = request(s.admin, "GET", "/metrics")
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s on /metrics" % name)


def rows(db, n):
    wait_for(lambda: db.count() >= n, 15, what="%d usage rows" % n)
    cols = ("key_name", "status", "cache_hit", "prompt_tokens",
            "completion_tokens", "cost_micro_usd", "cost_saved_micro_usd",
            "worker_pid", "upstream")
    got = db.query("SELECT %s FROM usage_events ORDER BY ts_start" %
                   ", ".join(cols))
    return [dict(zip(cols, r)) for r in got]


def test_a_hit_is_served_by_every_worker_and_never_forwarded(cached,
                                                             make_db):
    db = make_db()
    s, m = cached(db=db)
    first = ask(s, "same question")
    assert first[0] == 200 and first[1]["x-sluice-cache"] == "miss"
    hits = [ask(s, "same question") for _ in range(8)]
    for st, h, body in hits:
        assert st == 200, body
        assert h["x-sluice-cache"] == "hit"
        assert body == first[2]
        assert h["content-type"] == "application/json"
        assert h["x-request-id"] != first[1]["x-request-id"]
    assert forwarded(m) == 1
    got = rows(db, 9)
    assert got[0]["cache_hit"] is False
    assert got[0]["cost_micro_usd"] == COST
    assert got[0]["cost_saved_micro_usd"] is None
    for r in got[1:]:
        assert (r["cache_hit"], r["status"], r["prompt_tokens"],
                r["completion_tokens"], r["cost_micro_usd"],
                r["cost_saved_micro_usd"], r["upstream"]) == \
            (True, 200, 7, 3, 0, COST, None)
    # both workers answered hits from the one arena
    assert len({r["worker_pid"] for r in got[1:]}) == 2
    assert metric(s, "sluice_cache_hits_total") == 8
    assert metric(s, "sluice_cache_misses_total") == 1
    assert metric(s, "sluice_cache_entries") == 1


def test_one_key_never_sees_another_keys_answer(cached, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    a = keys.add("a")
    b = keys.add("b")
    g1 = keys.add("g1", cache_scope="global")
    g2 = keys.add("g2", cache_scope="global")
    s, m = cached(keys=keys)
    assert ask(s, secret=a)[1]["x-sluice-cache"] == "miss"
    assert ask(s, secret=b)[1]["x-sluice-cache"] == "miss"
    assert ask(s, secret=a)[1]["x-sluice-cache"] == "hit"
    assert ask(s, secret=b)[1]["x-sluice-cache"] == "hit"
    assert forwarded(m) == 2
    # a shared namespace is opted into, by both sides
    assert ask(s, secret=g1)[1]["x-sluice-cache"] == "miss"
    assert ask(s, secret=g2)[1]["x-sluice-cache"] == "hit"
    assert forwarded(m) == 3


def test_a_team_scope_is_shared_by_the_team_only(cached, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    t1 = keys.add("t1", team="eng")
    t2 = keys.add("t2", team="eng")
    other = keys.add("other", cache_scope="team")
    s, m = cached(keys=keys, start=False)
    with open(keys.path, "a") as f:
        f.write("team eng {\n    cache_scope team;\n}\n")
    s.start()
    assert ask(s, secret=t1)[1]["x-sluice-cache"] == "miss"
    assert ask(s, secret=t2)[1]["x-sluice-cache"] == "hit"
    assert ask(s, secret=other)[1]["x-sluice-cache"] == "miss"
    assert forwarded(m) == 2


def test_cache_control_no_store_and_no_cache(cached):
    s, m = cached()
    st, h, _ = ask(s, headers={"Cache-Control": "no-store"})
    assert st == 200 and h["x-sluice-cache"] == "bypass"
    assert ask(s)[1]["x-sluice-cache"] == "miss"    # no-store kept nothing
    assert ask(s)[1]["x-sluice-cache"] == "hit"
    st, h, _ = ask(s, headers={"Cache-Control": "max-age=0, no-cache"})
    assert st == 200 and h["x-sluice-cache"] == "miss"
    assert ask(s, headers={"Cache-Control": "no-store"})[1][
        "x-sluice-cache"] == "bypass"
    assert forwarded(m) == 4
    assert ask(s)[1]["x-sluice-cache"] == "hit"    # no-cache stored anew
    assert forwarded(m) == 4


def test_cache_off_for_a_route_or_a_key(cached, tmp_path, sluice):
    keys = Keys(tmp_path / "keys.conf")
    on = keys.add("on")
    off = keys.add("off", cache="off")
    s, m = cached(keys=keys)
    for _ in range(2):
        assert ask(s, secret=off)[1]["x-sluice-cache"] == "bypass"
    assert forwarded(m) == 2
    # claude-* is routed with "cache off" in a second daemon
    s2, m2 = cached(keys=keys, routes=[("claude-*", "anth cache off"),
                                       ("*", "oai")])
    for _ in range(2):
        st, h, _ = ask(s2, secret=on, model="claude-sonnet-4-5", path=MSGS)
        assert st == 200 and h["x-sluice-cache"] == "bypass"
    assert forwarded(m2) == 2


def test_cache_is_off_by_default_and_says_nothing(cached):
    s, m = cached(cache=None)
    for _ in range(2):
        st, h, _ = ask(s)
        assert st == 200 and "x-sluice-cache" not in h
    assert forwarded(m) == 2


def test_an_entry_expires_at_cache_ttl(cached):
    s, m = cached(extra="cache_ttl 1s;\n")
    assert ask(s)[1]["x-sluice-cache"] == "miss"
    assert ask(s)[1]["x-sluice-cache"] == "hit"
    time.sleep(1.2)
    assert ask(s)[1]["x-sluice-cache"] == "miss"
    assert forwarded(m) == 2


def test_a_full_arena_evicts_and_stays_within_its_size(cached):
    # 8 slots of 4 KB: one set
    s, m = cached(cache="40k", extra="cache_max_entry 4k;\n")
    assert metric(s, "sluice_cache_slots") == 8
    for i in range(12):
        assert ask(s, "q%d" % i)[1]["x-sluice-cache"] == "miss"
    assert metric(s, "sluice_cache_entries") == 8
    assert metric(s, "sluice_cache_evictions_total") == 4
    # the newest are there
    assert ask(s, "q11")[1]["x-sluice-cache"] == "hit"
    assert forwarded(m) == 12


def test_answers_not_kept_evict_nothing_from_a_full_arena(cached):
    """Error answers (and any answer not kept) never take a slot: on a
    full arena they push no entry out."""
    s, m = cached(cache="40k", extra="cache_max_entry 4k;\n")
    for i in range(8):
        assert ask(s, "q%d" % i)[1]["x-sluice-cache"] == "miss"
    assert metric(s, "sluice_cache_entries") == 8
    for i in range(6):
        st, h, _ = ask(s, "e%d" % i, headers={"x-mock-status": "400"})
        assert st == 400 and h["x-sluice-cache"] == "miss"
    assert metric(s, "sluice_cache_evictions_total") == 0
    for i in range(8):
        assert ask(s, "q%d" % i)[1]["x-sluice-cache"] == "hit"
    assert forwarded(m) == 14


def test_an_answer_over_cache_max_entry_is_not_stored(cached):
    s, m = cached(cache="64k", extra="cache_max_entry 1k;\n",
                  mock_args=("--chunks", "300"))
    assert ask(s)[1]["x-sluice-cache"] == "miss"
    st, hd, body = ask(s)
    assert hd["x-sluice-cache"] == "miss" and len(body) > 1024
    assert metric(s, "sluice_cache_too_big_total") == 2
    assert forwarded(m) == 2


def parse_sse(body):
    events = []
    for block in body.decode().split("\n\n"):
        data = [ln[6:] for ln in block.split("\n") if ln.startswith("data: ")]
        if data:
            events.append("\n".join(data))
    return events


def test_a_stream_is_replayed_whole_with_its_usage_chunk(cached, make_db):
    db = make_db()
    s, m = cached(db=db)
    st, h, live = ask(s, "stream me", stream=True)
    assert st == 200 and h["x-sluice-cache"] == "miss"
    st, h, replay = ask(s, "stream me", stream=True)
    assert st == 200 and h["x-sluice-cache"] == "hit"
    assert h["content-type"] == "text/event-stream"
    assert replay == live
    ev = parse_sse(replay)
    assert ev[-1] == "[DONE]"
    usage = json.loads(ev[-2])["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (7, 3)
    # Anthropic's events too
    st, h, live = ask(s, "stream me", stream=True, model="claude-sonnet-4-5",
                      path=MSGS)
    st, h2, replay = ask(s, "stream me", stream=True,
                         model="claude-sonnet-4-5", path=MSGS)
    assert (h["x-sluice-cache"], h2["x-sluice-cache"]) == ("miss", "hit")
    assert replay == live
    assert forwarded(m) == 2
    got = rows(db, 4)
    assert [(r["cache_hit"], r["prompt_tokens"], r["completion_tokens"],
             r["cost_micro_usd"], r["cost_saved_micro_usd"]) for r in got] \
        == [(False, 7, 3, COST, None), (True, 7, 3, 0, COST)] * 2


def test_a_cut_stream_is_not_stored(cached):
    s, m = cached()
    h = {"x-mock-drop-after-chunks": "2"}
    with pytest.raises(Exception):      # the client sees it cut
        ask(s, "cut", stream=True, headers=h)
    st, hd, _ = ask(s, "cut", stream=True)
    assert st == 200 and hd["x-sluice-cache"] == "miss"
    assert forwarded(m) == 2


def test_errors_are_never_stored(cached):
    s, m = cached()
    st, h, _ = ask(s, "err", headers={"x-mock-status": "500"})
    assert st == 500
    st, h, _ = ask(s, "err")
    assert st == 200 and h["x-sluice-cache"] == "miss"
    assert forwarded(m) == 2


def test_concurrent_writers_of_one_request(cached):
    # a slot is claimed at an answer's first relayed bytes: streams whose
    # events come 50 ms apart are all being written at once
    s, m = cached(mock_args=("--latency-ms", "300"))
    out = []
    slow = {"x-mock-chunk-delay-ms": "50"}

    def one():
        out.append(ask(s, "together", stream=True, headers=slow))

    ts = [threading.Thread(target=one) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert [st for st, _, _ in out] == [200] * 6
    assert {h["x-sluice-cache"] for _, h, _ in out} == {"miss"}
    assert forwarded(m) == 6
    # one of them stored its answer, whole; the others were turned away
    assert metric(s, "sluice_cache_entries") == 1
    assert metric(s, "sluice_cache_stores_total") == 1
    assert metric(s, "sluice_cache_busy_total") == 5
    st, h, body = ask(s, "together", stream=True, headers=slow)
    assert h["x-sluice-cache"] == "hit"
    assert body in {b for _, _, b in out}
    assert forwarded(m) == 6


def test_a_worker_killed_while_storing_leaves_nothing_torn(cached):
    s, m = cached(workers=1)
    def hung():
        try:
            ask(s, "kill me", headers={"x-mock-hang": "1"})
        except Exception:
            pass        # its worker dies under it

    t = threading.Thread(target=hung)
    t.daemon = True
    t.start()
    wait_for(lambda: forwarded(m) == 1, 10, what="the hung request")
    [w] = s.worker_pids()
    os.kill(w, signal.SIGKILL)
    wait_for(lambda: len(s.worker_pids()) == 1 and s.worker_pids() != [w],
             15, what="the worker respawned")
    wait_for(lambda: ask(s, "other")[0] == 200, 10, what="serving")
    # the dead writer's slot is never read, then taken back
    st, h, body = ask(s, "kill me")
    assert st == 200 and h["x-sluice-cache"] == "miss", body
    st, h, body2 = ask(s, "kill me")
    assert h["x-sluice-cache"] == "hit" and body2 == body


def reload_with(s, old, new, gen):
    with open(s.conf_path) as f:
        conf = f.read()
    assert old in conf
    with open(s.conf_path, "w") as f:
        f.write(conf.replace(old, new))
    # a reload is refused while the generation before the last still
    # finishes its requests (slow under the sanitizers): ask again then,
    # as an operator would
    busy = "the previous generation is still finishing"
    end = time.time() + 10
    while True:
        refused = s.log_text().count(busy)
        s.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded: generation %d" % gen in s.log_text() or
                 s.log_text().count(busy) > refused, 10, what="the reload")
        if "reloaded: generation %d" % gen in s.log_text():
            return
        assert time.time() < end, "the reload was refused for 10 s"
        time.sleep(0.2)


def test_reload_keeps_the_arena_and_a_new_size_starts_anew(cached):
    s, m = cached()
    assert ask(s)[1]["x-sluice-cache"] == "miss"
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded: generation 2" in s.log_text(), 10,
             what="the reload")
    assert ask(s)[1]["x-sluice-cache"] == "hit"
    reload_with(s, "cache 1m;", "cache 2m;", 3)
    assert ask(s)[1]["x-sluice-cache"] == "miss"
    assert forwarded(m) == 2


def ctl(s, *args):
    return subprocess.run([SLUICECTL, "-c", s.conf_path] + list(args),
                          capture_output=True, text=True, timeout=20)


def test_a_flush_after_a_reload_to_a_new_size_empties_the_new_arena(cached):
    s, m = cached()
    assert ask(s, "old")[1]["x-sluice-cache"] == "miss"   # the first arena
    # an admin connection a worker of generation 1 takes before the
    # reload, as one may when the flush comes during it; the worker stops
    # listening at the reload, not serving what it took
    held = socket.create_connection((HOST, s.admin), timeout=10)
    held.sendall(b"POST /cache/flush HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)     # accepted by then: the workers are idle
    reload_with(s, "cache 1m;", "cache 2m;", 2)
    wait_for(lambda: s.log_text().count("graceful stop: ") >= 2, 10,
             what="generation 1 to stop listening")
    # the new generation's arena: what new requests are answered from
    assert ask(s, "new")[1]["x-sluice-cache"] == "miss"
    assert ask(s, "new")[1]["x-sluice-cache"] == "hit"
    held.sendall(b"Content-Length: 0\r\n\r\n")
    with held, held.makefile("rb") as f:
        got = f.read()      # to the close: one answer per connection
    head, _, body = got.partition(b"\r\n\r\n")
    # the old worker cannot reach that arena: it flushed its own and
    # says so, rather than a 200 that leaves the answer in place
    assert head.startswith(b"HTTP/1.1 503 "), got
    assert json.loads(body) == {
        "error": "this worker is of a previous generation, finishing "
        "after a reload: ask again", "flushed_here": 1}
    assert ask(s, "new")[1]["x-sluice-cache"] == "hit"
    # sluicectl's flush reaches a current worker: the next one is a miss
    r = ctl(s, "cache", "flush")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"flushed": 1}
    assert ask(s, "new")[1]["x-sluice-cache"] == "miss"
    assert forwarded(m) == 3


class FlushAnswers(threading.Thread):
    """An admin_listen that answers POST /cache/flush with ANSWERS in
    turn, the last one for good; `paths` records what was asked."""

    def __init__(self, port, answers):
        super().__init__(daemon=True)
        self.srv = socket.create_server((HOST, port))
        self.srv.settimeout(20)
        self.answers, self.paths = answers, []

    def run(self):
        try:
            while True:
                c, _ = self.srv.accept()
                with c:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += c.recv(4096)
                    self.paths.append(head.split(b" ")[1].decode())
                    i = min(len(self.paths), len(self.answers)) - 1
                    st, body = self.answers[i]
                    c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n"
                              b"Connection: close\r\n\r\n%s" %
                              (st, len(body), body))
        except OSError:
            pass


def test_sluicectl_asks_again_while_an_old_generation_answers(cached):
    s, _ = cached(start=False)
    old = (503, b'{"error":"previous generation","flushed_here":2}\n')
    srv = FlushAnswers(s.admin, [old, old, (200, b'{"flushed":3}\n')])
    srv.start()
    r = ctl(s, "cache", "flush", "a")
    assert r.returncode == 0, r.stderr
    # what every arena dropped, summed
    assert json.loads(r.stdout) == {"flushed": 7}
    assert srv.paths == ["/cache/flush?key=a"] * 3
    # an old generation that never goes away: bounded, then an error
    srv.answers, srv.paths = [old], []
    r = ctl(s, "cache", "flush")
    assert r.returncode == 1 and "503" in r.stderr, r
    assert srv.paths == ["/cache/flush"] * 50
    srv.srv.close()


def test_sluicectl_cache_flush_all_or_one_key(cached, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    a = keys.add("a")
    b = keys.add("b")
    s, m = cached(keys=keys)
    ask(s, secret=a)
    ask(s, secret=b)
    r = ctl(s, "cache", "flush", "a")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"flushed": 1}
    assert ask(s, secret=a)[1]["x-sluice-cache"] == "miss"
    assert ask(s, secret=b)[1]["x-sluice-cache"] == "hit"
    r = ctl(s, "cache", "flush")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"flushed": 2}
    assert ask(s, secret=a)[1]["x-sluice-cache"] == "miss"
    assert ask(s, secret=b)[1]["x-sluice-cache"] == "miss"
    assert forwarded(m) == 5


def test_official_sdks_read_cached_answers_as_live_ones(sdk, sluice, mock,
                                                        tmp_path):
    from test_sdks import assert_sdk_results, run_sdk_check, sdk_keys
    s = sluice(upstreams={"oai": mock.url,
                          "anth": {"url": mock.url,
                                   "protocol": "anthropic"}},
               routes=[("claude-*", "anth"), ("*", "oai")],
               extra="keys_file %s;\ncache 4m;\n" % sdk_keys(tmp_path))
    url = "http://127.0.0.1:%d" % s.port
    live = run_sdk_check(sdk, url)
    assert_sdk_results(live)
    n = forwarded(mock)
    # the same calls again: every answer, streams included, from the cache
    replayed = run_sdk_check(sdk, url)
    assert_sdk_results(replayed)
    assert replayed == live
    assert forwarded(mock) == n


def test_a_hit_counts_against_rpm_but_not_tpm(cached, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    limited = keys.add("limited", rpm=4)
    frugal = keys.add("frugal", tpm=60)
    # a request holds its body's tokens and 1 output token while it runs
    s, m = cached(keys=keys, extra="default_max_tokens 1;\n")
    got = [ask(s, "r", secret=limited)[0] for _ in range(6)]
    assert got == [200] * 4 + [429] * 2        # hits are requests too
    # 10 tokens charged for the miss; six hits charge none, so another
    # miss (about 30 tokens held) still fits in 60
    assert ask(s, "t", secret=frugal)[1]["x-sluice-cache"] == "miss"
    for _ in range(6):
        st, h, _ = ask(s, "t", secret=frugal)
        assert (st, h["x-sluice-cache"]) == (200, "hit")
    st, h, body = ask(s, "another", secret=frugal)
    assert (st, h["x-sluice-cache"]) == (200, "miss"), body
    assert forwarded(m) == 3


def test_a_translated_answer_is_cached_as_the_client_got_it(cached):
    s, m = cached()
    for stream in (False, True):
        # an OpenAI chat for a model on the Anthropic upstream
        st, h, live = ask(s, "translate me", model="claude-sonnet-4-5",
                          stream=stream)
        assert (st, h["x-sluice-cache"]) == (200, "miss"), live
        st, h, replay = ask(s, "translate me", model="claude-sonnet-4-5",
                            stream=stream)
        assert (st, h["x-sluice-cache"]) == (200, "hit")
        assert replay == live
        if not stream:
            assert json.loads(replay)["object"] == "chat.completion"
        else:
            assert parse_sse(replay)[-1] == "[DONE]"
    assert forwarded(m) == 2


def test_a_hit_head_on_the_wire(cached):
    """A hit's head as bytes: the client's request id echoed, its own
    x-request-id, Content-Length the body's, and Connection: close when
    the client asked to close, after which sluice closes."""
    s, m = cached()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "wire"}]}).encode()
    assert ask(s, "wire")[1]["x-sluice-cache"] == "miss"

    def raw(extra):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n" +
                  "".join("%s: %s\r\n" % kv for kv in TOK.items()).encode()
                  + extra + b"Content-Length: %d\r\n\r\n" % len(body) +
                  body)
        got = b""
        end = time.time() + 10
        while time.time() < end:
            b = c.recv(65536)
            if not b:
                break
            got += b
            head, sep, rest = got.partition(b"\r\n\r\n")
            if sep and b"Connection: close" not in head:
                n = int([ln for ln in head.split(b"\r\n") if ln.lower()
                         .startswith(b"content-length:")][0].split(b":")[1])
                if len(rest) >= n:
                    break
        c.close()
        return got.partition(b"\r\n\r\n")

    head, _, rest = raw(b"x-client-request-id: run-42\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    hd = dict(ln.split(b": ", 1) for ln in lines[1:])
    assert hd[b"x-sluice-cache"] == b"hit"
    assert hd[b"x-client-request-id"] == b"run-42"
    assert len(hd[b"x-request-id"]) == 36
    assert hd[b"Content-Type"] == b"application/json"
    assert int(hd[b"Content-Length"]) == len(rest)
    assert b"Connection" not in hd
    assert json.loads(rest)["object"] == "chat.completion"
    # asked to close: the hit says so, and the connection ends after it
    head, _, rest = raw(b"Connection: close\r\n")
    hd = dict(ln.split(b": ", 1) for ln in head.split(b"\r\n")[1:])
    assert hd[b"Connection"] == b"close"
    assert b"x-client-request-id" not in hd
    assert int(hd[b"Content-Length"]) == len(rest)
    assert forwarded(m) == 1


def worst_of(text):
    """What ask(s, text) holds of a budget with default_max_tokens 1:
    (input tokens estimated, micro-USD)."""
    body = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": text}]}
    est = (len(json.dumps(body).encode()) + 3) // 4
    return est, est * 100 + 1 * 1000


def usd(micro):
    return "$%d.%06d" % divmod(micro, 10**6)


def test_a_hit_spends_and_holds_nothing_of_a_budget(cached, make_db,
                                                    tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    est, worst = worst_of("other")
    assert worst_of("same")[1] <= COST
    # room for the first miss; after it, less than one more paid request
    budget = COST + worst - 1
    thrifty = keys.add("thrifty", budget="%s per day" % usd(budget)[1:])
    spent = keys.add("spent", budget="%s per day" % usd(COST)[1:])
    member = keys.add("member", team="eng")
    db = make_db()
    s, m = cached(keys=keys, db=db, extra="default_max_tokens 1;\n",
                  start=False)
    with open(keys.path, "a") as f:
        f.write("team eng {\n    budget %s per day;\n}\n" % usd(COST)[1:])
    s.start()
    wait_for(lambda: "key spend loaded" in s.log_text(), 15,
             what="the collector to load key spend")
    room_msg = ("This request may cost up to %s (%d input tokens "
                "estimated, 1 output tokens at most), more than the %s "
                "left of this key's budget with the requests under way; "
                "lower max_tokens, or retry when they are done." %
                (usd(worst), est, usd(budget - COST)))

    refusals = {
        thrifty: room_msg,
        spent: "This key has used its budget of %s per day." % usd(COST),
        member: "This team `eng` has used its budget of %s per day." %
        usd(COST)}

    def paid_ones_refused():
        for secret, msg in refusals.items():
            st, h, body = ask(s, "other", secret=secret)
            assert st == 429, body
            err = json.loads(body)["error"]
            assert (err["code"], err["message"]) == ("budget_exceeded", msg)

    for secret in refusals:
        st, h, body = ask(s, "same", secret=secret)
        assert (st, h["x-sluice-cache"]) == (200, "miss"), body
    # the room left is the budget less the spend less what is held: the
    # miss spent exactly COST and its hold is gone
    paid_ones_refused()
    # hits go on, used-up budgets (a key's, a team's) included: they
    # cost nothing
    for _ in range(10):
        for secret in refusals:
            st, h, body = ask(s, "same", secret=secret)
            assert (st, h["x-sluice-cache"]) == (200, "hit"), body
    # ...and neither spent nor held a micro-dollar of them
    paid_ones_refused()
    assert forwarded(m) == 3
    st, _, body = request(s.admin, "GET", "/metrics")
    ratios = {ln.split()[0]: ln.split()[1] for ln in
              body.decode().splitlines()
              if ln.startswith("sluice_budget_used_ratio{")}
    assert ratios == {
        'sluice_budget_used_ratio{key="thrifty"}': "%.6f" % (COST / budget),
        'sluice_budget_used_ratio{key="spent"}': "%.6f" % 1.0,
        'sluice_budget_used_ratio{team="eng"}': "%.6f" % 1.0}
    got = [r for r in rows(db, 3 * (1 + 1 + 10 + 1)) if r["status"] == 200]
    for name in ("thrifty", "spent", "member"):
        mine = [(r["cache_hit"], r["cost_micro_usd"],
                 r["cost_saved_micro_usd"]) for r in got
                if r["key_name"] == name]
        assert mine == [(False, COST, None)] + [(True, 0, COST)] * 10
    # what PostgreSQL says the keys spent, as the collector reloads it
    assert db.query("SELECT key_name, sum(cost_micro_usd) FROM usage_events"
                    " GROUP BY key_name ORDER BY key_name") == \
        [("member", COST), ("spent", COST), ("thrifty", COST)]


def status(s):
    st, _, body = request(s.admin, "GET", "/status")
    assert st == 200
    return json.loads(body)


def test_status_shows_the_arena_and_its_counters(cached):
    s, m = cached(cache="40k", extra="cache_max_entry 4k;\n")   # one set
    assert status(s)["cache"] == {
        "size_bytes": 40 * 1024, "max_entry_bytes": 4096, "slots": 8,
        "entries": 0, "hits": 0, "misses": 0, "stores": 0, "evictions": 0,
        "too_big": 0, "busy": 0}
    st, h, body = ask(s, "big", headers={"x-mock-chunks": "2000"})
    assert (st, h["x-sluice-cache"]) == (200, "miss") and len(body) > 4096
    for i in range(10):
        assert ask(s, "q%d" % i)[1]["x-sluice-cache"] == "miss"
    assert ask(s, "q9")[1]["x-sluice-cache"] == "hit"
    assert ask(s, "q8", headers={"Cache-Control": "no-store"})[1][
        "x-sluice-cache"] == "bypass"       # not looked up: no counter
    assert status(s)["cache"] == {
        "size_bytes": 40 * 1024, "max_entry_bytes": 4096, "slots": 8,
        "entries": 8, "hits": 1, "misses": 11, "stores": 10,
        "evictions": 2, "too_big": 1, "busy": 0}
    assert ctl(s, "cache", "flush").returncode == 0
    # the counters are the arena's since it was made; entries are now
    assert status(s)["cache"]["entries"] == 0
    assert status(s)["cache"]["stores"] == 10
    assert forwarded(m) == 12
    # without a cache, /status has no "cache" at all
    s2, _ = cached(cache=None)
    assert "cache" not in status(s2)
    assert status(s2)["upstreams"] != []
