"""The official SDKs work with only their base URL pointed at sluice:
OpenAI's (chat, a metered stream with its extra usage chunk, embeddings,
models, a wrong key) and Anthropic's (messages, a stream, a wrong key),
from npm, run by node (tests/sdk/sdk_check.mjs)."""

import hashlib
import json
import os
import subprocess

SECRET = "sk-sluice-sdk-test-0123456789abcdef"


def sdk_keys(tmp_path):
    """A keys file with the one key the SDK check uses."""
    keys = tmp_path / "keys.conf"
    keys.write_text("key sdk {\n\thash sha256:%s;\n}\n" %
                    hashlib.sha256(SECRET.encode()).hexdigest())
    keys.chmod(0o600)
    return keys


def run_sdk_check(sdk, url, env=None):
    """sdk_check.mjs against URL: what each SDK call returned."""
    r = subprocess.run(["node", "sdk_check.mjs"], cwd=sdk,
                       env=dict(os.environ, SLUICE_URL=url,
                                SLUICE_KEY=SECRET, **(env or {})),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def assert_sdk_results(out):
    assert out["chat"]["content"].startswith("Hello")
    assert out["chat"]["usage"]["completion_tokens"] == 10
    # the stream: 20 content chunks, then the usage chunk sluice asked for
    cs = out["chat_stream"]
    assert cs["chunks"] == 21 and cs["text"].startswith("Hello ")
    assert cs["usage"]["completion_tokens"] == 20
    assert out["embeddings"]["dims"] == 8
    assert out["embeddings"]["usage"]["prompt_tokens"] >= 1
    assert out["bad_key"] == {"status": 401, "name": "AuthenticationError"}
    assert out["models"] == []      # only globs routed: nothing concrete

    m = out["messages"]
    assert m["text"].startswith("Hello") and m["usage"]["output_tokens"] == 10
    ms = out["messages_stream"]
    assert ms["text"].startswith("Hello ") and ms["output_tokens"] == 20
    assert out["bad_key_anthropic"] == {"status": 401,
                                        "name": "AuthenticationError"}


def test_official_sdks_through_sluice(sdk, sluice, mock, tmp_path):
    s = sluice(upstreams={"oai": mock.url,
                          "anth": {"url": mock.url,
                                   "protocol": "anthropic"}},
               routes=[("claude-*", "anth"), ("*", "oai")],
               extra="keys_file %s;\n" % sdk_keys(tmp_path))
    assert_sdk_results(run_sdk_check(sdk, "http://127.0.0.1:%d" % s.port))
