"""A stand-in for Google's OAuth2 token endpoint and Vertex AI's Anthropic
publisher endpoint, for the vertex tests.

It checks what sluice sends independently of sluice's code: the token
request's JWT assertion is verified with python3-jwt (RS256, against the
public half of a service-account key the test made with
python3-cryptography: issuer, audience, scope, lifetime), and each model
request must carry a token this endpoint issued and that has not expired.
Bodies must be Vertex's (no "model", anthropic_version vertex-2023-10-16).

Knobs: token_lifetime (seconds, the expires_in it grants), token_fail
(answer every token request 500), revoked (reject every issued token, as
after a revocation).  Everything it saw is kept.
"""

import json
import secrets
import time
import urllib.parse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cloud_common import StandIn

PROMPT, COMPLETION = 19, 7
TEXT = ["Hello", " from", " Vertex"]
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class Vertex(StandIn):
    def __init__(self, project, region,
                 email="sluice@test.iam.gserviceaccount.com"):
        self.project, self.region, self.email = project, region, email
        self.key = rsa.generate_private_key(public_exponent=65537,
                                            key_size=2048)
        self.tokens = {}            # token -> expiry (time.time())
        self.token_requests = []    # (ok, why, claims)
        self.requests = []          # (path, headers, body, verdict)
        self.token_lifetime = 3600
        self.token_fail = False
        self.revoked = False
        super().__init__()

    def on_post(self, h):
        if h.path == "/token":
            self.token(h)
        else:
            self.model(h)

    @property
    def token_uri(self):
        return self.url + "/token"

    def key_file(self, path):
        """Write a service-account JSON key, as Google's console makes."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": self.project,
            "private_key_id": "0123abcd", "private_key": pem,
            "client_email": self.email, "client_id": "1",
            "token_uri": self.token_uri}))
        path.chmod(0o600)
        return str(path)

    def token(self, h):
        n = int(h.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(h.rfile.read(n).decode())
        ok, why, claims = False, "", None
        try:
            assert form["grant_type"] == [
                "urn:ietf:params:oauth:grant-type:jwt-bearer"], "grant_type"
            claims = jwt.decode(form["assertion"][0], self.key.public_key(),
                                algorithms=["RS256"],
                                audience=self.token_uri,
                                issuer=self.email,
                                options={"require": ["exp", "iat"]})
            assert claims["scope"] == SCOPE, "scope"
            assert 0 < claims["exp"] - claims["iat"] <= 3600, "lifetime"
            ok = True
        except Exception as e:      # noqa: BLE001 - any failure is a 400
            why = "%s: %s" % (type(e).__name__, e)
        with self.lock:
            self.token_requests.append((ok, why, claims))
        if self.token_fail:
            self.reply(h, 500, {"error": "internal_failure"})
            return
        if not ok:
            self.reply(h, 400, {"error": "invalid_grant",
                                "error_description": why})
            return
        tok = "ya29.test-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[tok] = time.time() + self.token_lifetime
        self.reply(h, 200, {"access_token": tok, "token_type": "Bearer",
                            "expires_in": self.token_lifetime})

    def model(self, h):
        n = int(h.headers.get("Content-Length", "0"))
        body = h.rfile.read(n)
        auth = h.headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else None
        with self.lock:
            exp = self.tokens.get(tok)
        verdict = "ok"
        if exp is None or self.revoked:
            verdict = "unknown token"
        elif exp < time.time():
            verdict = "expired token"
        self.requests.append((h.path, dict(h.headers.items()),
                              body.decode(errors="replace"), verdict))
        if verdict != "ok":
            self.reply(h, 401, {"error": {
                "code": 401, "message": "Request had invalid authentication "
                "credentials (%s)." % verdict, "status": "UNAUTHENTICATED"}})
            return
        doc = json.loads(body)
        if "model" in doc or doc.get("anthropic_version") != \
                "vertex-2023-10-16":
            self.reply(h, 400, {"error": {"code": 400, "message":
                                          "bad body", "status":
                                          "INVALID_ARGUMENT"}})
            return
        prefix = "/v1/projects/%s/locations/%s/publishers/anthropic/models/" \
            % (self.project, self.region)
        if not h.path.startswith(prefix):
            self.reply(h, 404, {"error": {"code": 404, "message":
                                          "not found: " + h.path}})
            return
        model, _, action = h.path[len(prefix):].partition(":")
        if action == "rawPredict":
            self.reply(h, 200, {
                "id": "msg_vrtx_1", "type": "message", "role": "assistant",
                "model": model, "content": [{"type": "text",
                                              "text": "".join(TEXT)}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": PROMPT,
                          "output_tokens": COMPLETION}})
            return
        events = [("message_start", {"type": "message_start", "message": {
            "id": "msg_vrtx_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None,
            "usage": {"input_tokens": PROMPT, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start",
                                     "index": 0, "content_block": {
                                         "type": "text", "text": ""}})]
        events += [("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": t}}) for t in TEXT]
        events += [("content_block_stop", {"type": "content_block_stop",
                                           "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {
                       "stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": COMPLETION}}),
                   ("message_stop", {"type": "message_stop"})]
        self.send_chunked(h, "text/event-stream", [
            ("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode()
            for name, data in events])
