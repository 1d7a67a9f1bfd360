"""A stand-in for AWS Bedrock's runtime endpoint, for the bedrock tests.

It checks what sluice sends independently of sluice's code: each request's
SigV4 signature is computed again with Debian's python3-botocore (its
SigV4Auth, over the headers the request says it signed) and compared; the
body must be Bedrock's (no "model", no "stream", anthropic_version
bedrock-2023-05-31).  A request that fails either is answered as Bedrock
does (403 InvalidSignatureException, 400 ValidationException).

Answers: /invoke a Messages JSON; /invoke-with-response-stream AWS
event-stream frames, built here with zlib's CRC32, each carrying one
Anthropic event base64-encoded in "bytes".  The request's x-test-stream
header picks how: "whole" (each frame in one write), "split" (frames cut
across writes at odd offsets, several frames in one write), "badcrc" (the
third frame's message CRC wrong), "exception" (a throttlingException
frame after message_start), "cut" (the answer ends inside a frame).

Every request it saw is kept (method, path, headers, body, verdict).
"""

import base64
import json
import struct
import zlib

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cloud_common import StandIn

PROMPT, COMPLETION = 25, 12     # what every answer reports
TEXT = ["Hello", " from", " Bedrock"]


def header(name, value):
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v


def frame(headers, payload):
    total = 16 + len(headers) + len(payload)
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + headers + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def chunk(event):
    raw = json.dumps(event, separators=(",", ":")).encode()
    payload = json.dumps({"bytes": base64.b64encode(raw).decode(),
                          "p": "abcdefgh"}).encode()
    return frame(header(":event-type", "chunk") +
                 header(":content-type", "application/json") +
                 header(":message-type", "event"), payload)


def exception(kind, message):
    return frame(header(":exception-type", kind) +
                 header(":content-type", "application/json") +
                 header(":message-type", "exception"),
                 json.dumps({"message": message}).encode())


def events(model_id):
    yield {"type": "message_start", "message": {
        "id": "msg_bdrk_1", "type": "message", "role": "assistant",
        "model": model_id, "content": [], "stop_reason": None,
        "usage": {"input_tokens": PROMPT, "output_tokens": 1}}}
    yield {"type": "content_block_start", "index": 0,
           "content_block": {"type": "text", "text": ""}}
    for t in TEXT:
        yield {"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": t}}
    yield {"type": "content_block_stop", "index": 0}
    yield {"type": "message_delta", "delta": {"stop_reason": "end_turn",
           "stop_sequence": None}, "usage": {"output_tokens": COMPLETION}}
    yield {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": PROMPT, "outputTokenCount": COMPLETION,
        "invocationLatency": 10, "firstByteLatency": 5}}


class Bedrock(StandIn):
    def __init__(self, key_id, secret, region, token=None):
        self.creds = Credentials(key_id, secret, token)
        self.region = region
        self.seen = []
        super().__init__()

    def signature_ok(self, h, body):
        """Sign the request again with botocore over the headers it says
        it signed; (ok, why)."""
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return False, "no SigV4 Authorization header"
        parts = dict(p.strip().split("=", 1)
                     for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        signed = parts["SignedHeaders"].split(";")
        date = h.headers.get("X-Amz-Date", "")
        scope = "%s/%s/%s/bedrock/aws4_request" % (
            self.creds.access_key, date[:8], self.region)
        if parts["Credential"] != scope:
            return False, "credential scope %s" % parts["Credential"]
        if "host" not in signed or "x-amz-date" not in signed:
            return False, "host and x-amz-date must be signed"
        req = AWSRequest(method="POST", url=self.url + h.path, data=body,
                         headers={n: h.headers[n] for n in signed})
        req.context["timestamp"] = date
        signer = SigV4Auth(self.creds, "bedrock", self.region)
        canonical = signer.canonical_request(req)
        sts = signer.string_to_sign(req, canonical)
        want = signer.signature(sts, req)
        if want != parts["Signature"]:
            return False, "signature mismatch"
        return True, canonical

    def on_post(self, h):
        n = int(h.headers.get("Content-Length", "0"))
        body = h.rfile.read(n)
        ok, why = self.signature_ok(h, body)
        entry = {"path": h.path, "headers": dict(h.headers.items()),
                 "body": body.decode(errors="replace"), "signed": ok,
                 "why": why}
        with self.lock:
            self.seen.append(entry)
        if not ok:
            self.reply(h, 403, {"message": "The request signature we "
                                "calculated does not match the signature "
                                "you provided."},
                       extra={"x-amzn-ErrorType":
                              "InvalidSignatureException",
                              "x-amzn-RequestId": "req-standin"})
            return
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if (not isinstance(doc, dict) or "model" in doc or "stream" in doc
                or doc.get("anthropic_version") != "bedrock-2023-05-31"):
            self.reply(h, 400, {"message": "Malformed input request"})
            return
        path = h.path.split("/")
        if len(path) != 4 or path[1] != "model":
            self.reply(h, 404, {"message": "unknown operation"})
            return
        model_id = path[2].replace("%3A", ":")
        if path[3] == "invoke":
            self.reply(h, 200, {
                "id": "msg_bdrk_1", "type": "message", "role": "assistant",
                "model": model_id,
                "content": [{"type": "text", "text": "".join(TEXT)}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": PROMPT,
                          "output_tokens": COMPLETION}})
            return
        if path[3] != "invoke-with-response-stream":
            self.reply(h, 404, {"message": "unknown operation"})
            return
        self.stream(h, model_id, h.headers.get("x-test-stream", "whole"))

    def stream(self, h, model_id, mode):
        frames = [chunk(e) for e in events(model_id)]
        if mode == "badcrc":
            bad = bytearray(frames[2])
            bad[-1] ^= 0xFF
            frames[2] = bytes(bad)
        elif mode == "exception":
            frames = frames[:1] + [exception("throttlingException",
                                             "Too many requests, please "
                                             "wait before trying again.")]
        elif mode == "cut":
            frames[-1] = frames[-1][:-5]
        if mode == "split":
            blob = b"".join(frames)
            cuts, i, step = [], 0, 3
            while i < len(blob):        # pieces of 3, 50, 97, ... bytes
                cuts.append(blob[i:i + step])
                i += step
                step = step + 47 if step < 200 else 3
            frames = cuts
        self.send_chunked(h, "application/vnd.amazon.eventstream", frames)
