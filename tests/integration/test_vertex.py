"""protocol vertex: Claude on Google Vertex AI, through sluice.

The stand-in (tests/integration/vertex_upstream.py) is both the OAuth2
token endpoint, which verifies the service account's JWT with python3-jwt
against a key made in the test, and the Vertex endpoint, which requires a
token it issued on every request.  The token is fetched by the master's
refresher, never by a worker: requests do not add token fetches; a short
token is refreshed before it expires; a token endpoint that fails makes
requests fail with 502 only once no valid token is left; a token the
upstream rejects reaches the client as a clear error in its format.
"""

import hashlib
import json
import time

import pytest

from cloud_common import (Db, assert_cloud_sdk_results, exact_cost,
                          run_cloud_check, sse_events, stream)
from conftest import post, wait_for
from vertex_upstream import COMPLETION, PROMPT, TEXT, Vertex

SECRET = "sk-sluice-bedrock-test-0123456789abcdef"     # test_bedrock's key
PROJECT, REGION = "sluice-test-project", "us-east5"
MODEL = "claude-3-5-sonnet-v2@20241022"
PRICE = ("3", "15")
ASK = [{"role": "user", "content": "Hello?"}]


def cost(prompt, completion):
    return exact_cost(PRICE, prompt, completion)


@pytest.fixture
def db(make_db):
    return make_db(Db)


@pytest.fixture
def vertex():
    v = Vertex(PROJECT, REGION)
    yield v
    v.stop()


def start(sluice, vertex, db, tmp_path):
    keys = tmp_path / "keys.conf"
    keys.write_text("key vx {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    keys.chmod(0o600)
    return sluice(upstreams={"vx": {
        "url": vertex.url, "protocol": "vertex", "region": REGION,
        "gcp_project": PROJECT,
        "gcp_credentials_file": vertex.key_file(tmp_path / "sa.json"),
        "deployment": "claude-3-5-sonnet* %s" % MODEL}},
        routes=[("claude-*", "vx")],
        extra='database "%s";\nkeys_file %s;\n'
              'price claude-* input %s output %s;\n' %
              ((db.conninfo(), keys) + PRICE))


def auth():
    return {"Authorization": "Bearer " + SECRET,
            "anthropic-version": "2023-06-01"}


def ask(port, stream_=False):
    return post(port, "/v1/messages", {"model": "claude-3-5-sonnet-latest",
                                       "max_tokens": 20, "messages": ASK},
                headers=auth())


def wait_token(vertex, n=1):
    wait_for(lambda: sum(ok for ok, _, _ in vertex.token_requests) >= n, 15,
             what="%d token(s) issued" % n)


def test_master_fetches_the_token_and_requests_carry_it(sluice, vertex, db,
                                                        tmp_path):
    s = start(sluice, vertex, db, tmp_path)
    wait_token(vertex)
    ok, why, claims = vertex.token_requests[0]
    assert ok, why
    assert claims["iss"] == vertex.email
    for _ in range(5):
        st, h, data = ask(s.port)
        assert st == 200, data
    # five requests, still one token: no worker fetched one
    assert len(vertex.token_requests) == 1
    path, hdrs, body, verdict = vertex.requests[-1]
    assert verdict == "ok"
    assert path == ("/v1/projects/%s/locations/%s/publishers/anthropic/"
                    "models/%s:rawPredict" % (PROJECT, REGION, MODEL))
    assert json.loads(body) == {"max_tokens": 20, "messages": ASK,
                                "anthropic_version": "vertex-2023-10-16"}
    assert json.loads(data)["usage"] == {"input_tokens": PROMPT,
                                         "output_tokens": COMPLETION}
    row = db.where(h["x-request-id"])
    assert row == dict(model="claude-3-5-sonnet-latest", stream=False,
                       status=200, error_class=None, prompt_tokens=PROMPT,
                       completion_tokens=COMPLETION,
                       cost_micro_usd=cost(PROMPT, COMPLETION),
                       usage_source="upstream", client_format="anthropic",
                       upstream_format="anthropic", upstream="vx"), row


def test_stream_is_anthropics_sse(sluice, vertex, db, tmp_path):
    s = start(sluice, vertex, db, tmp_path)
    wait_token(vertex)
    st, h, text, _ = stream(s.port, "/v1/messages",
                            {"model": "claude-3-5-sonnet-latest",
                             "max_tokens": 20, "stream": True,
                             "messages": ASK}, auth())
    assert st == 200, text
    evs = sse_events(text)
    assert evs[0][0] == "message_start" and evs[-1][0] == "message_stop"
    assert "".join(d["delta"]["text"] for e, d in evs
                   if e == "content_block_delta") == "".join(TEXT)
    assert vertex.requests[-1][0].endswith(":streamRawPredict")
    assert json.loads(vertex.requests[-1][2])["stream"] is True
    row = db.where(h["x-request-id"])
    assert (row["stream"], row["prompt_tokens"], row["completion_tokens"],
            row["usage_source"]) == (True, PROMPT, COMPLETION,
                                     "upstream"), row


def test_short_token_is_refreshed_before_it_expires(sluice, vertex, db,
                                                    tmp_path):
    vertex.token_lifetime = 4
    s = start(sluice, vertex, db, tmp_path)
    wait_token(vertex)
    deadline = time.monotonic() + 9
    n = 0
    while time.monotonic() < deadline and n < 40:
        st, _, data = ask(s.port)
        assert st == 200, data
        n += 1
        time.sleep(0.25)
    # a 4 s token, refreshed at half its life: three or more in 9 s
    assert sum(ok for ok, _, _ in vertex.token_requests) >= 3
    assert all(v == "ok" for _, _, _, v in vertex.requests)


def test_failing_token_endpoint_is_a_502_once_no_token_is_valid(
        sluice, vertex, db, tmp_path):
    vertex.token_fail = True
    s = start(sluice, vertex, db, tmp_path)
    wait_for(lambda: len(vertex.token_requests) >= 2, 15,
             what="the refresher retrying")
    st, h, data = ask(s.port)
    assert st == 502, data
    body = json.loads(data)
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "no valid Vertex AI access token" in body["error"]["message"]
    assert vertex.requests == []        # nothing went upstream
    row = db.where(h["x-request-id"])
    assert (row["status"], row["error_class"]) == (502, "upstream_auth"), row
    assert "token refresh failed" in s.log_text()
    # the endpoint recovers: the back-off retry gets a token, requests pass
    vertex.token_fail = False
    wait_for(lambda: ask(s.port)[0] == 200, 20, interval=0.5,
             what="a request served after the token endpoint recovered")


def test_rejected_token_is_a_clear_error_in_the_callers_format(
        sluice, vertex, db, tmp_path):
    s = start(sluice, vertex, db, tmp_path)
    wait_token(vertex)
    vertex.revoked = True
    st, h, data = ask(s.port)
    assert st == 401, data
    err = json.loads(data)["error"]
    assert err["type"] == "authentication_error", err
    assert "invalid authentication credentials" in err["message"]
    st, h2, data = post(s.port, "/v1/chat/completions",
                        {"model": "claude-3-5-sonnet-latest",
                         "messages": ASK}, headers=auth())
    assert st == 401, data
    assert "invalid authentication" in json.loads(data)["error"]["message"]
    row = db.where(h["x-request-id"])
    assert (row["status"], row["usage_source"]) == (401, "none"), row


def test_official_sdks_reach_vertex_unchanged(sdk, sluice, vertex, db,
                                              tmp_path):
    s = start(sluice, vertex, db, tmp_path)
    wait_token(vertex)
    out = run_cloud_check(sdk, s.port, SECRET, "claude-3-5-sonnet-latest")
    assert_cloud_sdk_results(out, "".join(TEXT), PROMPT, COMPLETION)
    assert len(vertex.requests) == 4
    assert all(v == "ok" for _, _, _, v in vertex.requests)


def test_refresh_failure_keeps_the_current_token_until_it_expires(
        sluice, vertex, db, tmp_path):
    vertex.token_lifetime = 6
    s = start(sluice, vertex, db, tmp_path)
    wait_token(vertex)
    vertex.token_fail = True
    # the token in hand is still good: served
    st, _, data = ask(s.port)
    assert st == 200, data
    # the refresh at half its life fails; the old token stays in use
    wait_for(lambda: "the current token is good for" in s.log_text(), 15,
             what="a logged refresh failure with a token still valid")
    # once it has expired, and only then, a 502 naming the cause
    wait_for(lambda: ask(s.port)[0] == 502, 15, interval=0.5,
             what="a 502 after the token expired")
    assert all(v == "ok" for _, _, _, v in vertex.requests)
