"""Gemini through Google's OpenAI-compatible endpoint: the documented
upstream block (protocol openai, strip_path /v1, the AI Studio key as a
Bearer token) works, and Gemini's usage is metered exactly.

The stand-in answers as that endpoint does: at /v1beta/openai/chat/
completions only, with the key required; a JSON answer whose usage has
prompt, completion and total tokens and nothing else; a stream whose
lines end in CRLF, whose last content chunk carries both the finish
reason and the usage (no separate usage chunk), then [DONE].
"""

import hashlib
import json

import pytest

from cloud_common import Db, StandIn, exact_cost, sse_events, stream
from conftest import post

SECRET = "sk-sluice-gemini-test-0123456789abcdef"
GEMINI_KEY = "AIzaSyTEST-gemini-key-0123456789"
PRICE = ("0.10", "0.40")
PROMPT, COMPLETION = 8, 5
TEXT = ["Hello", " from", " Gemini"]
ASK = [{"role": "user", "content": "Hello?"}]


class Gemini(StandIn):
    def __init__(self):
        self.seen = []
        super().__init__()

    def on_post(self, h):
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        self.seen.append((h.path, h.headers.get("Authorization"), body))
        if h.headers.get("Authorization") != "Bearer " + GEMINI_KEY:
            self.reply(h, 401, [{"error": {"code": 401, "message":
                                           "API key not valid.",
                                           "status": "UNAUTHENTICATED"}}])
            return
        if h.path != "/v1beta/openai/chat/completions":
            self.reply(h, 404, [{"error": {"code": 404,
                                           "message": "not found"}}])
            return
        usage = {"completion_tokens": COMPLETION, "prompt_tokens": PROMPT,
                 "total_tokens": PROMPT + COMPLETION}
        if not body.get("stream"):
            self.reply(h, 200, {
                "choices": [{"finish_reason": "stop", "index": 0,
                             "message": {"content": "".join(TEXT),
                                         "role": "assistant"}}],
                "created": 1760000000, "id": "gem-1",
                "model": body["model"], "object": "chat.completion",
                "usage": usage})
            return
        chunks = []
        for i, t in enumerate(TEXT):
            c = {"choices": [{"delta": {"content": t, "role": "assistant"},
                              "index": 0}],
                 "created": 1760000000, "id": "gem-1",
                 "model": body["model"], "object": "chat.completion.chunk"}
            if i == len(TEXT) - 1:
                c["choices"][0]["finish_reason"] = "stop"
                c["usage"] = usage
            chunks.append(("data: %s\r\n\r\n" % json.dumps(c)).encode())
        chunks.append(b"data: [DONE]\r\n\r\n")
        self.send_chunked(h, "text/event-stream", chunks)


@pytest.fixture
def db(make_db):
    return make_db(Db)


@pytest.fixture
def gemini():
    g = Gemini()
    yield g
    g.stop()


@pytest.fixture
def gs(sluice, gemini, db, tmp_path):
    keys = tmp_path / "keys.conf"
    keys.write_text("key gm {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    keys.chmod(0o600)
    keyfile = tmp_path / "gemini.key"
    keyfile.write_text(GEMINI_KEY + "\n")
    keyfile.chmod(0o600)
    # as the README's example, with the stand-in's address
    return sluice(upstreams={"gemini": {
        "url": gemini.url + "/v1beta/openai", "protocol": "openai",
        "strip_path": "/v1", "api_key_file": str(keyfile)}},
        routes=[("gemini-*", "gemini")],
        extra='database "%s";\nkeys_file %s;\n'
              'price gemini-* input %s output %s;\n' %
              ((db.conninfo(), keys) + PRICE))


def auth():
    return {"Authorization": "Bearer " + SECRET}


def test_gemini_answer_metered_exactly(gs, gemini, db):
    st, h, data = post(gs.port, "/v1/chat/completions",
                       {"model": "gemini-2.0-flash", "messages": ASK},
                       headers=auth())
    assert st == 200, data
    assert json.loads(data)["choices"][0]["message"]["content"] == \
        "".join(TEXT)
    path, key, _ = gemini.seen[-1]
    assert (path, key) == ("/v1beta/openai/chat/completions",
                           "Bearer " + GEMINI_KEY)
    row = db.where(h["x-request-id"])
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"],
            row["cost_micro_usd"], row["usage_source"], row["upstream"]) == \
        (200, PROMPT, COMPLETION, exact_cost(PRICE, PROMPT, COMPLETION),
         "upstream", "gemini"), row


def test_gemini_stream_usage_on_its_last_chunk_is_metered(gs, gemini, db):
    st, h, text, _ = stream(gs.port, "/v1/chat/completions",
                            {"model": "gemini-2.0-flash", "stream": True,
                             "messages": ASK}, auth())
    assert st == 200, text
    evs = sse_events(text.replace("\r\n", "\n"))
    assert evs[-1][1] == "[DONE]"
    assert "".join(d["choices"][0]["delta"]["content"]
                   for _, d in evs[:-1]) == "".join(TEXT)
    row = db.where(h["x-request-id"])
    assert (row["stream"], row["prompt_tokens"], row["completion_tokens"],
            row["cost_micro_usd"], row["usage_source"]) == \
        (True, PROMPT, COMPLETION, exact_cost(PRICE, PROMPT, COMPLETION),
         "upstream"), row
