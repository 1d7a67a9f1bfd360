"""What the bedrock and vertex tests share: the stand-in servers' frame
(a threaded HTTP/1.1 server on 127.0.0.1 that keeps what it saw), the row
reader, the exact cost, the SSE reader and the SDK check."""

import http.client
import json
import os
import subprocess
import threading
import zlib
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from conftest import HOST, UsageDb, read_stream, wait_for

COLS = ("model", "stream", "status", "error_class", "prompt_tokens",
        "completion_tokens", "cost_micro_usd", "usage_source",
        "client_format", "upstream_format", "upstream")


class StandIn:
    """A threaded HTTP/1.1 server; subclasses answer in on_post(h)."""

    def __init__(self):
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                outer.on_post(self)

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def reply(self, h, status, body, ctype="application/json", extra=None):
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def send_chunked(self, h, ctype, pieces):
        """A 200 whose body is PIECES, one HTTP chunk (and write) each;
        gzipped, piece by piece, when the request accepts gzip, as the
        providers' edges do."""
        gz = "gzip" in h.headers.get("Accept-Encoding", "")
        z = zlib.compressobj(wbits=31) if gz else None
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        if gz:
            h.send_header("Content-Encoding", "gzip")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for piece in pieces:
            if z is not None:
                piece = z.compress(piece) + z.flush(zlib.Z_SYNC_FLUSH)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            h.wfile.flush()
        if z is not None:
            tail = z.flush()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


class Db(UsageDb):

    def where(self, rid, timeout=15.0):
        """The one row of request RID, waited for, as a dict of COLS."""
        def get():
            try:
                return self.query("SELECT %s FROM usage_events WHERE "
                                  "request_id = %%s" % ", ".join(COLS),
                                  (rid,))
            except psycopg.errors.UndefinedTable:
                return None
        rows = wait_for(get, timeout, what="the row of %s" % rid)
        assert len(rows) == 1, rows
        return dict(zip(COLS, rows[0]))


def exact_cost(price, prompt, completion):
    """micro-USD for PRICE (input, output USD per 1M), rounded once."""
    usd = prompt * Decimal(price[0]) + completion * Decimal(price[1])
    return int(usd.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def sse_events(text):
    """[(event, data as JSON)] of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        ev, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            out.append((ev, json.loads(data) if data != "[DONE]" else data))
    return out


def stream(port, path, body, headers):
    """POST BODY and read the answer piece by piece: (status, headers,
    text, pieces)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=20)
    try:
        conn.request("POST", path, json.dumps(body),
                     dict(headers, **{"Content-Type": "application/json"}))
        resp = conn.getresponse()
        pieces = read_stream(resp)
        return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                b"".join(p for _, p in pieces).decode(), len(pieces))
    finally:
        conn.close()


def run_cloud_check(sdk, port, key, model):
    """tests/sdk/cloud_check.mjs against sluice: what each SDK returned."""
    r = subprocess.run(["node", "cloud_check.mjs"], cwd=sdk,
                       env=dict(os.environ,
                                SLUICE_URL="http://%s:%d" % (HOST, port),
                                SLUICE_KEY=key, SLUICE_MODEL=model),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def assert_cloud_sdk_results(out, text, prompt, completion):
    """Both SDKs saw the answer and its usage exactly, streamed or not."""
    m = out["messages"]
    assert (m["text"], m["stop"], m["usage"]["input_tokens"],
            m["usage"]["output_tokens"]) == \
        (text, "end_turn", prompt, completion), m
    ms = out["messages_stream"]
    assert (ms["text"], ms["input_tokens"], ms["output_tokens"]) == \
        (text, prompt, completion), ms
    for c in (out["chat"], out["chat_stream"]):
        assert (c["text"], c["finish"]) == (text, "stop"), c
        assert (c["usage"]["prompt_tokens"],
                c["usage"]["completion_tokens"]) == (prompt, completion), c
