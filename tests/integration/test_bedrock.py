"""protocol bedrock: Claude on AWS Bedrock, through sluice.

The upstream is tests/integration/bedrock_upstream.py, which checks each
request's SigV4 signature with botocore (not sluice's code) and answers
as Bedrock does: a Messages JSON from /invoke, AWS event-stream frames
from /invoke-with-response-stream.  Clients get Anthropic's answers (or
OpenAI's, translated), streamed event by event; every row carries the
upstream's usage exactly; a bad CRC, an exception frame, a frame cut off
and a wrong signature each reach the client as a clear error in its own
format and leave a row with the error class.
"""

import hashlib
import json
import signal

import pytest
from botocore.credentials import Credentials

from bedrock_upstream import COMPLETION, PROMPT, TEXT, Bedrock
from cloud_common import (Db, assert_cloud_sdk_results, exact_cost,
                          run_cloud_check, sse_events, stream)
from conftest import post, wait_for

SECRET = "sk-sluice-bedrock-test-0123456789abcdef"
AK, SK, REGION = "AKIDSLUICETEST", "bedrock/secret+key/0123456789", "us-west-2"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
PRICE = ("0.25", "1.25")        # USD per 1M tokens: input, output
ASK = [{"role": "user", "content": "Hello?"}]


def cost(prompt, completion):
    return exact_cost(PRICE, prompt, completion)


@pytest.fixture
def db(make_db):
    return make_db(Db)


@pytest.fixture
def bedrock():
    b = Bedrock(AK, SK, REGION)
    yield b
    b.stop()


def start(sluice, bedrock, db, tmp_path, secret=SK, token=None):
    keys = tmp_path / "keys.conf"
    keys.write_text("key bd {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    keys.chmod(0o600)
    cred = tmp_path / "aws-credentials"
    cred.write_text("[default]\naws_access_key_id = %s\n"
                    "aws_secret_access_key = %s\n%s" %
                    (AK, secret, "aws_session_token = %s\n" % token
                     if token else ""))
    cred.chmod(0o600)
    return sluice(upstreams={"bd": {
        "url": bedrock.url, "protocol": "bedrock", "region": REGION,
        "aws_credentials_file": str(cred),
        "deployment": "claude-3-haiku* %s" % MODEL_ID}},
        routes=[("claude-*", "bd")],
        extra='database "%s";\nkeys_file %s;\n'
              'price claude-* input %s output %s;\n' %
              ((db.conninfo(), keys) + PRICE))


@pytest.fixture
def bs(sluice, bedrock, db, tmp_path):
    return start(sluice, bedrock, db, tmp_path)


def auth(extra=None):
    h = {"Authorization": "Bearer " + SECRET, "anthropic-version":
         "2023-06-01"}
    h.update(extra or {})
    return h


def test_request_is_signed_and_shaped_for_bedrock(bs, bedrock, db):
    st, h, data = post(bs.port, "/v1/messages",
                       {"model": "claude-3-haiku-20240307", "max_tokens": 50,
                        "messages": ASK}, headers=auth())
    assert st == 200, data
    answer = json.loads(data)
    assert answer["content"][0]["text"] == "".join(TEXT)
    assert answer["usage"] == {"input_tokens": PROMPT,
                               "output_tokens": COMPLETION}
    seen = bedrock.seen[-1]
    assert seen["signed"], seen["why"]
    assert seen["path"] == \
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    body = json.loads(seen["body"])
    assert body == {"max_tokens": 50, "messages": ASK,
                    "anthropic_version": "bedrock-2023-05-31"}
    # the client's credentials and anthropic-version stay with sluice
    names = {k.lower() for k in seen["headers"]}
    assert "anthropic-version" not in names and "x-api-key" not in names
    assert {k.lower(): v for k, v in seen["headers"].items()}[
        "authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=%s/" % AK)
    row = db.where(h["x-request-id"])
    assert row == dict(model="claude-3-haiku-20240307", stream=False,
                       status=200, error_class=None, prompt_tokens=PROMPT,
                       completion_tokens=COMPLETION,
                       cost_micro_usd=cost(PROMPT, COMPLETION),
                       usage_source="upstream", client_format="anthropic",
                       upstream_format="anthropic", upstream="bd"), row


@pytest.mark.parametrize("mode,accept", [("whole", None), ("split", None),
                                         ("split", "gzip, br")])
def test_event_stream_is_relayed_as_anthropic_sse(bs, bedrock, db, mode,
                                                  accept):
    # the stand-in gzips when asked; sluice, which reads the frames, never
    # asks, whatever the client accepts
    hdrs = {"x-test-stream": mode}
    if accept:
        hdrs["Accept-Encoding"] = accept
    st, h, text, npieces = stream(
        bs.port, "/v1/messages", {"model": "claude-3-haiku-20240307",
                                  "max_tokens": 50, "stream": True,
                                  "messages": ASK},
        auth(hdrs))
    assert st == 200, text
    assert h["content-type"] == "text/event-stream"
    evs = sse_events(text)
    assert [e for e, _ in evs] == [
        "message_start", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"], text
    assert all(d["type"] == e for e, d in evs)
    assert "".join(d["delta"]["text"] for e, d in evs
                   if e == "content_block_delta") == "".join(TEXT)
    assert evs[-1][1]["amazon-bedrock-invocationMetrics"][
        "outputTokenCount"] == COMPLETION
    seen = bedrock.seen[-1]
    assert seen["signed"], seen["why"]
    assert seen["headers"].get("Accept-Encoding") == "identity"
    assert seen["path"].endswith("%3A0/invoke-with-response-stream")
    assert "stream" not in json.loads(seen["body"])
    row = db.where(h["x-request-id"])
    assert (row["stream"], row["status"], row["error_class"],
            row["prompt_tokens"], row["completion_tokens"],
            row["cost_micro_usd"], row["usage_source"]) == \
        (True, 200, None, PROMPT, COMPLETION,
         cost(PROMPT, COMPLETION), "upstream"), row


@pytest.mark.parametrize("mode,kind,says", [
    ("badcrc", "api_error", "message CRC mismatch"),
    ("cut", "api_error", "the answer ended inside a frame"),
    ("exception", "rate_limit_error", "Too many requests, please wait"),
])
def test_broken_stream_ends_with_an_error_event(bs, db, mode, kind, says):
    st, h, text, _ = stream(
        bs.port, "/v1/messages", {"model": "claude-3-haiku-20240307",
                                  "max_tokens": 50, "stream": True,
                                  "messages": ASK},
        auth({"x-test-stream": mode}))
    assert st == 200, text
    evs = sse_events(text)
    assert evs[0][0] == "message_start"
    assert evs[-1][0] == "error", text
    assert evs[-1][1]["error"]["type"] == kind
    assert says in evs[-1][1]["error"]["message"], evs[-1]
    assert "message_stop" not in [e for e, _ in evs]
    row = db.where(h["x-request-id"])
    assert row["error_class"] == "upstream_protocol", row
    # what the upstream said before it broke is not the whole bill
    assert row["usage_source"] == "estimated", row


def test_wrong_signature_is_a_clear_error(sluice, bedrock, db, tmp_path):
    s = start(sluice, bedrock, db, tmp_path, secret="not-the-secret")
    st, h, data = post(s.port, "/v1/messages",
                       {"model": "claude-3-haiku-20240307", "max_tokens": 5,
                        "messages": ASK}, headers=auth())
    assert st == 403, data
    assert not bedrock.seen[-1]["signed"]
    assert bedrock.seen[-1]["why"] == "signature mismatch"
    body = json.loads(data)
    assert body["type"] == "error", body
    assert body["error"]["type"] == "permission_error", body
    assert "signature" in body["error"]["message"], body
    row = db.where(h["x-request-id"])
    assert (row["status"], row["usage_source"], row["prompt_tokens"]) == \
        (403, "none", None), row
    # an OpenAI-format client gets OpenAI's error shape, same message
    st, h, data = post(s.port, "/v1/chat/completions",
                       {"model": "claude-3-haiku-20240307",
                        "messages": ASK}, headers=auth())
    assert st == 403, data
    err = json.loads(data)["error"]
    assert err["type"] == "permission_error", err
    assert err["message"].startswith("The request signature we calculated")
    assert db.where(h["x-request-id"])["client_format"] == "openai"


def test_session_token_is_sent_and_signed(sluice, db, tmp_path):
    b = Bedrock(AK, SK, REGION, token="FwoGZXIvYXdzEXAMPLETOKEN")
    try:
        s = start(sluice, b, db, tmp_path, token="FwoGZXIvYXdzEXAMPLETOKEN")
        st, h, data = post(s.port, "/v1/messages",
                           {"model": "claude-3-haiku-20240307",
                            "max_tokens": 5, "messages": ASK},
                           headers=auth())
        assert st == 200, data
        seen = b.seen[-1]
        assert seen["signed"], seen["why"]
        hdrs = {k.lower(): v for k, v in seen["headers"].items()}
        assert hdrs["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
        assert "x-amz-security-token" in hdrs["authorization"]
    finally:
        b.stop()


def test_openai_client_reaches_bedrock_translated(bs, bedrock, db):
    st, h, data = post(bs.port, "/v1/chat/completions",
                       {"model": "claude-3-haiku-20240307",
                        "messages": ASK}, headers=auth())
    assert st == 200, data
    answer = json.loads(data)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "".join(TEXT)
    assert answer["usage"]["prompt_tokens"] == PROMPT
    assert answer["usage"]["completion_tokens"] == COMPLETION
    assert json.loads(bedrock.seen[-1]["body"])["anthropic_version"] == \
        "bedrock-2023-05-31"
    row = db.where(h["x-request-id"])
    assert (row["client_format"], row["upstream_format"],
            row["prompt_tokens"], row["completion_tokens"],
            row["cost_micro_usd"]) == \
        ("openai", "anthropic", PROMPT, COMPLETION,
         cost(PROMPT, COMPLETION)), row

    st, h, text, _ = stream(bs.port, "/v1/chat/completions",
                            {"model": "claude-3-haiku-20240307",
                             "stream": True, "messages": ASK,
                             "stream_options": {"include_usage": True}},
                            auth({"x-test-stream": "split"}))
    assert st == 200, text
    evs = sse_events(text)
    assert evs[-1][1] == "[DONE]", text
    chunks = [d for _, d in evs[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in chunks if c["choices"]) == "".join(TEXT)
    assert chunks[-1]["usage"]["prompt_tokens"] == PROMPT
    assert chunks[-1]["usage"]["completion_tokens"] == COMPLETION
    row = db.where(h["x-request-id"])
    assert (row["stream"], row["prompt_tokens"], row["completion_tokens"],
            row["usage_source"]) == (True, PROMPT, COMPLETION,
                                     "upstream"), row


def test_official_sdks_reach_bedrock_unchanged(sdk, bs, bedrock, db):
    n = len(bedrock.seen)
    out = run_cloud_check(sdk, bs.port, SECRET, "claude-3-haiku-20240307")
    assert_cloud_sdk_results(out, "".join(TEXT), PROMPT, COMPLETION)
    assert out["messages_stream"]["events"] == 8
    seen = bedrock.seen[n:]
    assert len(seen) == 4 and all(s["signed"] for s in seen), seen
    assert [s["path"].rsplit("/", 1)[1] for s in seen] == [
        "invoke", "invoke-with-response-stream", "invoke",
        "invoke-with-response-stream"]
    wait_for(lambda: db.count() >= 4, 15, what="4 rows")
    rows = db.query("SELECT client_format, stream, prompt_tokens, "
                    "completion_tokens, usage_source FROM usage_events "
                    "ORDER BY client_format, stream")
    assert rows == [("anthropic", False, PROMPT, COMPLETION, "upstream"),
                    ("anthropic", True, PROMPT, COMPLETION, "upstream"),
                    ("openai", False, PROMPT, COMPLETION, "upstream"),
                    ("openai", True, PROMPT, COMPLETION, "upstream")], rows


def test_other_endpoints_are_refused_for_bedrock(bs, bedrock):
    n = len(bedrock.seen)
    st, _, data = post(bs.port, "/v1/messages/count_tokens",
                       {"model": "claude-3-haiku-20240307",
                        "messages": ASK}, headers=auth())
    assert st == 400, data
    err = json.loads(data)["error"]
    assert err["type"] == "invalid_request_error"
    assert "/v1/messages/count_tokens is not served by a Bedrock upstream" \
        in err["message"], err
    st, _, data = post(bs.port, "/v1/embeddings",
                       {"model": "claude-3-haiku-20240307", "input": "x"},
                       headers=auth())
    assert st == 400, data
    assert len(bedrock.seen) == n       # nothing went upstream


def test_rotated_credentials_file_is_read_again_on_sighup(sluice, bedrock,
                                                          db, tmp_path):
    s = start(sluice, bedrock, db, tmp_path)
    req = {"model": "claude-3-haiku-20240307", "max_tokens": 5,
           "messages": ASK}
    assert post(s.port, "/v1/messages", req, headers=auth())[0] == 200
    # AWS rotates the key: the stand-in wants the new one at once
    bedrock.creds = Credentials(AK, "rotated/secret", None)
    assert post(s.port, "/v1/messages", req, headers=auth())[0] == 403
    cred = tmp_path / "aws-credentials"
    cred.write_text("[default]\naws_access_key_id = %s\n"
                    "aws_secret_access_key = rotated/secret\n" % AK)
    old = set(s.worker_pids())
    s.signal(signal.SIGHUP)
    wait_for(lambda: not (set(s.worker_pids()) & old), 10,
             what="the old workers to exit after the reload")
    st, _, data = post(s.port, "/v1/messages", req, headers=auth())
    assert st == 200, data
    assert bedrock.seen[-1]["signed"], bedrock.seen[-1]["why"]
