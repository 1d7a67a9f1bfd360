"""Providers and routing (issue 6): failover, retries before the first
byte, balance, passive health, aliases, the Azure and Anthropic upstream
protocols and the protocol-family check.

Every upstream is a mockllm on 127.0.0.1.  Per-request mock headers
(x-mock-status, x-mock-drop-after-chunks) reach every upstream a request
is tried on, so an upstream that must fail while the next one answers
fails by its command line (--fail-status, --latency-ms) instead.  Which
upstream answered is read from the mocks' /stats and /last and, where
the issue asks for it, from the usage row (upstream, attempts).

Passive health is per worker: the tests that count failures run one
worker so that every request meets the same health state.
"""

import http.client
import json
import subprocess
import time

import psycopg
import pytest

from conftest import UsageDb, HOST, SLUICED, closed_port, post, wait_for

MSGS = [{"role": "user", "content": "hello"}]
CHAT = {"model": "gpt-4o-mini", "messages": MSGS}
CLAUDE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": MSGS}


# ---------------------------------------------------------------------------
# Usage rows: a fresh database per test that needs one.
# ---------------------------------------------------------------------------

class Db(UsageDb):

    def row(self, request_id, timeout=15.0):
        """The row of one request, waited for by bounded polling."""
        cols = ("model", "upstream", "attempts", "status", "error_class",
                "cost_micro_usd", "prompt_tokens", "completion_tokens")

        def get():
            try:
                r = self.query("SELECT %s FROM usage_events "
                               "WHERE request_id = %%s" % ", ".join(cols),
                               (request_id,))
            except psycopg.errors.UndefinedTable:
                return None
            return dict(zip(cols, r[0])) if r else None

        return wait_for(get, timeout, interval=0.05,
                        what="usage row of %s" % request_id)


@pytest.fixture
def db(make_db):
    return make_db(Db)


def database_line(db):
    return 'database "%s";' % db.conninfo()


def chat(s, body=CHAT, headers=None, timeout=10.0):
    st, hdrs, data = post(s.port, "/v1/chat/completions", body,
                          headers=headers, timeout=timeout)
    return st, hdrs, data


def requests_of(m):
    return m.stats()["requests"]


def log_count(s, text):
    return s.log_text().count(text)


# ---------------------------------------------------------------------------
# Failover and retries before the first byte.
# ---------------------------------------------------------------------------

def test_refused_connection_fails_over_to_second_upstream(
        mock_factory, sluice, db):
    good = mock_factory()
    s = sluice(upstreams={"dead": "http://%s:%d" % (HOST, closed_port()),
                          "good": good.url},
               routes=[("*", "failover dead good")],
               extra=database_line(db))
    st, hdrs, data = chat(s)
    assert st == 200, data
    assert json.loads(data)["object"] == "chat.completion"
    assert requests_of(good) == 1
    row = db.row(hdrs["x-request-id"])
    assert (row["upstream"], row["attempts"], row["status"]) == \
        ("good", 2, 200), row


@pytest.mark.parametrize("status", [503, 429, 500, 502, 504, 529])
def test_retryable_status_fails_over_to_second_upstream(
        mock_factory, sluice, db, status):
    bad = mock_factory("--fail-status", str(status))
    good = mock_factory()
    s = sluice(upstreams={"bad": bad.url, "good": good.url},
               routes=[("*", "failover bad good")],
               extra=database_line(db))
    st, hdrs, data = chat(s)
    assert st == 200, data
    assert "choices" in json.loads(data)
    assert (requests_of(bad), requests_of(good)) == (1, 1)
    row = db.row(hdrs["x-request-id"])
    assert (row["upstream"], row["attempts"], row["status"]) == \
        ("good", 2, 200), row
    assert "upstream bad answered %d, trying the next" % status in \
        s.log_text()


def test_client_error_status_is_not_retried(mock_factory, sluice):
    bad = mock_factory("--fail-status", "400")
    good = mock_factory()
    s = sluice(upstreams={"bad": bad.url, "good": good.url},
               routes=[("*", "failover bad good")])
    st, _, data = chat(s)
    assert st == 400, data
    assert (requests_of(bad), requests_of(good)) == (1, 0)


def test_max_attempts_1_passes_the_upstream_503_through(mock_factory,
                                                        sluice):
    bad = mock_factory("--fail-status", "503")
    good = mock_factory()
    # what the upstream itself answers, for comparison
    direct_st, _, direct = post(bad.port, "/v1/chat/completions", CHAT)
    assert direct_st == 503
    s = sluice(upstreams={"bad": bad.url, "good": good.url},
               routes=[("*", "failover bad good")],
               extra="max_attempts 1;")
    st, _, data = chat(s)
    assert st == 503, data
    assert json.loads(data) == json.loads(direct)
    assert (requests_of(bad), requests_of(good)) == (2, 0)


def test_no_retry_after_the_stream_started(mock_factory, sluice, db):
    first = mock_factory("--chunks", "6")
    second = mock_factory("--chunks", "6")
    s = sluice(upstreams={"first": first.url, "second": second.url},
               routes=[("*", "failover first second")],
               extra=database_line(db))
    conn = http.client.HTTPConnection(HOST, s.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions",
                     body=json.dumps(dict(CHAT, stream=True)),
                     headers={"Content-Type": "application/json",
                              "x-mock-drop-after-chunks": "2"})
        resp = conn.getresponse()
        assert resp.status == 200
        reqid = resp.getheader("x-request-id")
        with pytest.raises(http.client.IncompleteRead) as ei:
            resp.read()
        partial = ei.value.partial.decode()
    finally:
        conn.close()
    events = [ln[6:] for ln in partial.splitlines()
              if ln.startswith("data: ")]
    assert len(events) == 2, partial
    assert "[DONE]" not in events, partial
    assert [json.loads(e)["choices"][0]["delta"]["content"]
            for e in events] == ["Hello ", "from "], partial
    assert requests_of(first) == 1
    assert requests_of(second) == 0
    row = db.row(reqid)
    assert (row["upstream"], row["attempts"], row["error_class"]) == \
        ("first", 1, "upstream_truncated"), row


def test_tls_handshake_failure_fails_over_to_second_upstream(
        mock_factory, sluice, db):
    plain = mock_factory()      # speaks plain HTTP: the handshake fails
    good = mock_factory()
    s = sluice(upstreams={"tlsbad": "https://%s:%d" % (HOST, plain.port),
                          "good": good.url},
               routes=[("*", "failover tlsbad good")],
               extra=database_line(db))
    st, hdrs, data = chat(s)
    assert st == 200, data
    assert requests_of(good) == 1
    row = db.row(hdrs["x-request-id"])
    assert (row["upstream"], row["attempts"]) == ("good", 2), row


def test_first_byte_timeout_moves_to_next_upstream(mock_factory, sluice, db):
    slow = mock_factory("--latency-ms", "10000")
    good = mock_factory()
    s = sluice(upstreams={"slow": {"url": slow.url, "read_timeout": "1s"},
                          "good": good.url},
               routes=[("*", "failover slow good")],
               extra=database_line(db))
    t0 = time.monotonic()
    st, hdrs, data = chat(s)
    took = time.monotonic() - t0
    assert st == 200, data
    assert 0.9 <= took < 4.0, took
    assert (requests_of(slow), requests_of(good)) == (1, 1)
    row = db.row(hdrs["x-request-id"])
    assert (row["upstream"], row["attempts"], row["status"]) == \
        ("good", 2, 200), row


def test_all_upstreams_failing_gives_the_last_answer(mock_factory, sluice):
    a = mock_factory("--fail-status", "503")
    b = mock_factory("--fail-status", "502")
    s = sluice(upstreams={"a": a.url, "b": b.url},
               routes=[("*", "failover a b")])
    st, _, data = chat(s)
    # each upstream once (the default max_attempts), then b's own answer
    assert st == 502, data
    assert (requests_of(a), requests_of(b)) == (1, 1)


# ---------------------------------------------------------------------------
# Balance.
# ---------------------------------------------------------------------------

def test_balance_spreads_sequential_requests_over_both_upstreams(
        mock_factory, sluice):
    a, b = mock_factory(), mock_factory()
    s = sluice(upstreams={"a": a.url, "b": b.url},
               routes=[("*", "balance a b")])
    for i in range(40):
        st, _, data = chat(s)
        assert st == 200, (i, data)
    na, nb = requests_of(a), requests_of(b)
    assert na + nb == 40
    assert 15 <= na <= 25 and 15 <= nb <= 25, (na, nb)


def test_balance_prefers_the_upstream_with_fewer_in_flight(
        mock_factory, sluice):
    slow = mock_factory("--latency-ms", "1500")
    fast = mock_factory()
    s = sluice(upstreams={"slow": slow.url, "fast": fast.url},
               routes=[("*", "balance slow fast")], workers=1)
    # The first request of the route goes to slow and stays in flight.
    conn = http.client.HTTPConnection(HOST, s.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT),
                     headers={"Content-Type": "application/json"})
        wait_for(lambda: requests_of(slow) == 1, 5,
                 what="the held request to reach slow")
        for i in range(6):
            st, _, data = chat(s)
            assert st == 200, (i, data)
        assert (requests_of(slow), requests_of(fast)) == (1, 6)
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Passive health.
# ---------------------------------------------------------------------------

def test_downed_upstream_is_skipped_until_its_cooldown_ends(
        mock_factory, sluice):
    bad = mock_factory("--fail-status", "503")
    good = mock_factory()
    s = sluice(upstreams={"bad": {"url": bad.url, "max_fails": "2",
                                  "fail_timeout": "2s"},
                          "good": good.url},
               routes=[("*", "failover bad good")], workers=1)
    for i in range(2):
        st, _, data = chat(s)
        assert st == 200, (i, data)
    t_down = time.monotonic()
    assert requests_of(bad) == 2
    down_line = "upstream bad: 2 failures in a row, down for 2000 ms"
    wait_for(lambda: down_line in s.log_text(), 5, what=repr(down_line))

    # While down, bad is skipped: every request goes straight to good.
    for i in range(5):
        st, _, data = chat(s)
        assert st == 200, (i, data)
    assert time.monotonic() - t_down < 1.5, "too slow to test the cooldown"
    assert requests_of(bad) == 2
    assert requests_of(good) == 7

    # After the cooldown bad is tried first again; x-mock-status 200
    # cancels its --fail-status, so this time it answers.
    back = None
    deadline = t_down + 5.0
    while time.monotonic() < deadline:
        st, _, data = chat(s, headers={"x-mock-status": "200"})
        assert st == 200, data
        if requests_of(bad) > 2:
            back = time.monotonic() - t_down
            break
        time.sleep(0.1)
    assert back is not None, "bad was not tried again within 5 s"
    assert back >= 1.8, "bad was tried again after %.2fs (< 2s)" % back
    assert requests_of(bad) == 3
    wait_for(lambda: "upstream bad answers again" in s.log_text(), 5,
             what="'answers again' log line")
    # each transition is logged once
    assert log_count(s, "failures in a row") == 1, s.log_text()
    assert log_count(s, "answers again") == 1, s.log_text()
    st, _, data = chat(s, headers={"x-mock-status": "200"})
    assert st == 200, data
    assert requests_of(bad) == 4


def test_an_upstream_down_alone_is_still_tried(mock_factory, sluice):
    bad = mock_factory("--fail-status", "503")
    s = sluice(upstreams={"bad": {"url": bad.url, "max_fails": "1",
                                  "fail_timeout": "30s"}},
               routes=[("*", "bad")], workers=1)
    for i in range(3):
        st, _, data = chat(s)
        assert st == 503, (i, data)
    assert requests_of(bad) == 3
    assert log_count(s, "upstream bad: 1 failures in a row") == 1


# ---------------------------------------------------------------------------
# Aliases.
# ---------------------------------------------------------------------------

def test_alias_asks_the_upstream_for_its_model(mock, sluice, db):
    s = sluice(upstreams={"oai": mock.url},
               routes=[("gpt-4o-mini", "oai")],
               extra="alias fast gpt-4o-mini;\n"
                     "price gpt-4o-mini input 1.00 output 2.00;\n" +
                     database_line(db))
    st, hdrs, data = chat(s, body={"model": "fast", "messages": MSGS},
                          headers={"x-mock-prompt-tokens": "100",
                                   "x-mock-completion-tokens": "7"})
    assert st == 200, data
    sent = json.loads(mock.last()["body"])
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == MSGS
    # the client gets the upstream's answer as it is
    assert json.loads(data)["model"] == "gpt-4o-mini"
    row = db.row(hdrs["x-request-id"])
    # the row keeps the name asked for, priced as the model behind it
    assert row["model"] == "fast", row
    assert (row["prompt_tokens"], row["completion_tokens"]) == (100, 7)
    assert row["cost_micro_usd"] == 100 * 1 + 7 * 2, row


def test_alias_with_stream_sends_model_and_include_usage(mock, sluice):
    s = sluice(upstreams={"oai": mock.url}, routes=[("gpt-4o-mini", "oai")],
               extra="alias fast gpt-4o-mini;")
    st, _, data = chat(s, body={"model": "fast", "messages": MSGS,
                                "stream": True})
    assert st == 200, data
    assert data.rstrip().endswith(b"data: [DONE]"), data
    sent = json.loads(mock.last()["body"])
    assert sent["model"] == "gpt-4o-mini"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_unaliased_model_without_route_is_404(mock, sluice):
    s = sluice(upstreams={"oai": mock.url}, routes=[("gpt-4o-mini", "oai")],
               extra="alias fast gpt-4o-mini;")
    st, _, data = chat(s, body={"model": "slow", "messages": MSGS})
    assert st == 404, data
    assert json.loads(data)["error"]["code"] == "model_not_found"


# ---------------------------------------------------------------------------
# Protocols.
# ---------------------------------------------------------------------------

def reached_mock(st, data):
    """mockllm answers Azure's /openai/deployments/NAME/... paths as the
    OpenAI endpoint they stand for."""
    return st == 200


def test_azure_stream_is_metered(mock, sluice, db, monkeypatch):
    """An Azure stream gets include_usage added like an OpenAI one, and
    its row carries the upstream's tokens and the price."""
    monkeypatch.setenv("SLUICE_TEST_AZURE_KEY", "az-secret-3")
    s = sluice(upstreams={"az": {"url": mock.url, "protocol": "azure",
                                 "api_key_env": "SLUICE_TEST_AZURE_KEY"}},
               routes=[("*", "az")],
               extra="price gpt-4o-mini input 1.00 output 2.00;\n" +
                     database_line(db))
    st, hdrs, data = chat(s, body=dict(CHAT, stream=True),
                          headers={"x-mock-prompt-tokens": "40",
                                   "x-mock-completion-tokens": "9"})
    assert st == 200, data
    assert data.rstrip().endswith(b"data: [DONE]"), data
    assert json.loads(mock.last()["body"])["stream_options"] == {
        "include_usage": True}
    row = db.row(hdrs["x-request-id"])
    assert (row["prompt_tokens"], row["completion_tokens"]) == (40, 9), row
    assert row["cost_micro_usd"] == 40 * 1 + 9 * 2, row
    assert row["upstream"] == "az", row


def test_azure_path_api_version_key_and_deployment(mock, sluice,
                                                   monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_AZURE_KEY", "az-secret-1")
    s = sluice(upstreams={"az": {"url": mock.url, "protocol": "azure",
                                 "api_key_env": "SLUICE_TEST_AZURE_KEY",
                                 "deployment": "gpt-4o-mini prod-mini",
                                 "api_version": "2024-06-01"}},
               routes=[("*", "az")])
    st, _, data = chat(s, headers={"Authorization": "Bearer client-key"})
    assert reached_mock(st, data), (st, data)
    last = mock.last()
    assert last["method"] == "POST"
    assert last["path"] == ("/openai/deployments/prod-mini/chat/completions"
                            "?api-version=2024-06-01"), last
    assert last["headers"].get("api-key") == "az-secret-1", last
    assert "authorization" not in last["headers"], last
    assert json.loads(last["body"])["model"] == "gpt-4o-mini"

    # no deployment line: the deployment is the model's name
    st, _, data = post(s.port, "/v1/embeddings",
                       {"model": "text-embedding-3-small", "input": "hi"})
    assert reached_mock(st, data), (st, data)
    assert mock.last()["path"] == (
        "/openai/deployments/text-embedding-3-small/embeddings"
        "?api-version=2024-06-01")

    st, _, data = post(s.port, "/v1/completions",
                       {"model": "gpt-4o-mini", "prompt": "hi"})
    assert reached_mock(st, data), (st, data)
    assert mock.last()["path"] == (
        "/openai/deployments/prod-mini/completions?api-version=2024-06-01")


def test_azure_default_api_version(mock, sluice, monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_AZURE_KEY", "az-secret-2")
    s = sluice(upstreams={"az": {"url": mock.url, "protocol": "azure",
                                 "api_key_env": "SLUICE_TEST_AZURE_KEY"}},
               routes=[("*", "az")])
    st, _, data = chat(s)
    assert reached_mock(st, data), (st, data)
    last = mock.last()
    assert last["path"] == ("/openai/deployments/gpt-4o-mini/"
                            "chat/completions?api-version=2024-10-21"), last
    assert last["headers"].get("api-key") == "az-secret-2"


def test_azure_rejects_an_endpoint_it_does_not_serve(mock, sluice,
                                                     monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_AZURE_KEY", "az-secret-3")
    s = sluice(upstreams={"az": {"url": mock.url, "protocol": "azure",
                                 "api_key_env": "SLUICE_TEST_AZURE_KEY"}},
               routes=[("*", "az")])
    st, _, data = post(s.port, "/v1/responses",
                       {"model": "gpt-4o-mini", "input": "hi"})
    assert st == 400, data
    assert json.loads(data)["error"]["code"] == "unsupported_endpoint"
    assert requests_of(mock) == 0


def test_anthropic_headers_added(mock, sluice, monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_ANTH_KEY", "sk-ant-test")
    s = sluice(upstreams={"anth": {"url": mock.url,
                                   "protocol": "anthropic",
                                   "api_key_env": "SLUICE_TEST_ANTH_KEY"}},
               routes=[("*", "anth")])
    st, _, data = post(s.port, "/v1/messages", CLAUDE,
                       headers={"x-api-key": "client-key"})
    assert st == 200, data
    assert json.loads(data)["type"] == "message"
    last = mock.last()
    assert last["path"] == "/v1/messages"
    assert last["headers"].get("anthropic-version") == "2023-06-01", last
    assert last["headers"].get("x-api-key") == "sk-ant-test", last

    # the client's own version is kept, not doubled
    st, _, data = post(s.port, "/v1/messages", CLAUDE,
                       headers={"anthropic-version": "2099-01-01"})
    assert st == 200, data
    last = mock.last()
    assert last["headers"].get("anthropic-version") == "2099-01-01", last


def test_translate_off_makes_a_mismatch_a_400_both_ways(mock, sluice, db):
    s = sluice(upstreams={"oai": mock.url,
                          "anth": {"url": mock.url,
                                   "protocol": "anthropic"}},
               routes=[("claude-*", "anth translate off"),
                       ("*", "oai translate off")],
               extra=database_line(db))
    # OpenAI format to an Anthropic upstream
    st, h1, data = chat(s, body={"model": "claude-sonnet-4-5",
                                 "messages": MSGS})
    assert st == 400, data
    err = json.loads(data)["error"]
    assert err["code"] == "protocol_mismatch", err
    assert err["type"] == "invalid_request_error", err
    assert "/v1/messages" in err["message"], err
    # Anthropic format to an OpenAI upstream: Anthropic's error shape
    st, h2, data = post(s.port, "/v1/messages",
                        dict(CLAUDE, model="gpt-4o-mini"))
    assert st == 400, data
    body = json.loads(data)
    assert body["type"] == "error", body
    assert body["error"]["type"] == "invalid_request_error", body
    assert "/v1/chat/completions" in body["error"]["message"], body
    assert requests_of(mock) == 0
    for h in (h1, h2):
        row = db.row(h["x-request-id"])
        assert (row["status"], row["error_class"]) == \
            (400, "protocol_mismatch"), row


def test_config_check_rejects_a_route_mixing_protocols(tmp_path):
    conf = tmp_path / "mixed.conf"
    conf.write_text("\n".join([
        "listen 127.0.0.1:18080;",
        "upstream oai {",
        "    url http://127.0.0.1:1;",
        "}",
        "upstream anth {",
        "    url http://127.0.0.1:2;",
        "    protocol anthropic;",
        "}",
        "route * failover oai anth;",
    ]) + "\n")
    r = subprocess.run([SLUICED, "-t", "-c", str(conf)], timeout=10,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 1, out
    assert "%s:9:" % conf in out, out
    assert "different protocols" in out, out
    assert "test failed" in out, out


def test_config_check_accepts_openai_and_azure_in_one_route(tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_AZURE_KEY", "k")
    conf = tmp_path / "family.conf"
    conf.write_text("\n".join([
        "listen 127.0.0.1:18080;",
        "upstream oai { url http://127.0.0.1:1; }",
        "upstream az {",
        "    url http://127.0.0.1:2;",
        "    protocol azure;",
        "    api_key_env SLUICE_TEST_AZURE_KEY;",
        "}",
        "route * balance oai az;",
    ]) + "\n")
    r = subprocess.run([SLUICED, "-t", "-c", str(conf)], timeout=10,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out


# ---------------------------------------------------------------------------
# DNS.
# ---------------------------------------------------------------------------

def test_localhost_upstream_name_resolves(mock, sluice):
    s = sluice(upstreams={"local": "http://localhost:%d" % mock.port})
    for i in range(3):
        st, _, data = chat(s)
        assert st == 200, (i, data)
    assert requests_of(mock) == 3
    assert mock.last()["headers"]["host"] == "localhost:%d" % mock.port


def test_balance_spreads_1000_requests_evenly_over_three(mock_factory,
                                                         sluice):
    mocks = [mock_factory() for _ in range(3)]
    s = sluice(upstreams={"a": mocks[0].url, "b": mocks[1].url,
                          "c": mocks[2].url},
               routes=[("*", "balance a b c")], workers=1)
    for _ in range(1000):
        st, _, data = chat(s)
        assert st == 200, data
    counts = [requests_of(m) for m in mocks]
    assert sum(counts) == 1000, counts
    for n in counts:
        assert abs(n - 1000 / 3) <= 1000 / 3 * 0.10, counts
