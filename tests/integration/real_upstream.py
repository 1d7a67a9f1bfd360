"""A test upstream that answers like a provider's edge (issue 14): it
compresses when asked, answers chunked, and writes its streams the way
real ones arrive.

    up = RealUpstream()
    ... point an upstream block at up.url ...
    up.requests()   # [{"headers": {lower name: value}, "body": {..},
                    #   "encoding": what it used, "sent": the body bytes
                    #   exactly as written, before chunking}]
    up.stop()

What it answers: POST /v1/chat/completions and /v1/messages (Anthropic:
a message, or a stream with ping events and the cumulative usage of
message_delta, input and cache fields repeated; anything else: 404), always
after a "100 Continue" and a "103 Early Hints", always chunked.  The
model is the body's; its tokens are PROMPT and COMPLETION below.  The
coding is the first of the request's Accept-Encoding that it knows
(gzip, deflate, br, zstd) and whose q is not 0, else none; a request
header x-real-encoding forces one (an upstream that ignores
Accept-Encoding; any name, sent as is, the body then left plain unless
it is one of the four), x-real-raw-deflate: 1 sends raw deflate for
"deflate" (as some servers do) and x-real-corrupt: 1 flips bytes in the
middle of the compressed body; x-real-close-after: N closes the
connection after N pieces of the answer, mid-stream, as an edge that
drops a stream does; x-real-words: N makes the answer N words long
(words(N): WORDS over and over, every seventh with its number, so that
a long answer is not trivially compressible), for answers of 100 KB.

A stream (body "stream": true) is SSE with CRLF line ends, starts with a
": keep-alive" comment and has another between events, and is written
in small pieces cut across events and inside JSON keys ("us" | "age"),
each piece compressed and flushed on its own so that it leaves as it
would from a real edge; the last event before [DONE] carries the usage.
A whole answer is a chat.completion JSON, compressed at once and written
in a few chunks (of at most 4 KB).

Bounded: at most max_conns connections, every recv has a timeout, heads
of at most 64 KB, bodies of at most 1 MB, and the server stops by itself
after `lifetime` seconds.  Only 127.0.0.1 is used.
"""

import json
import socket
import threading
import time
import zlib

import brotli
import zstandard

from upstream_threads import stop_server

HOST = "127.0.0.1"
PROMPT = 13
COMPLETION = 29
KNOWN = ("gzip", "deflate", "br", "zstd")
WORDS = ["Hello", ",", " wor", "ld", "! ", "Compressed", " answers", " are",
         " metered", " exactly", "."]


def words(n=None):
    """The answer's words: WORDS, or N of them cycled and numbered."""
    if n is None:
        return list(WORDS)
    return [WORDS[i % len(WORDS)] + (" %d" % i if i % 7 == 6 else "")
            for i in range(n)]


def pick_encoding(accept):
    """The first coding of ACCEPT that is KNOWN and not refused (q=0)."""
    for el in (accept or "").split(","):
        parts = [p.strip() for p in el.split(";")]
        name = parts[0].lower()
        q = 1.0
        for p in parts[1:]:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if name in KNOWN and q > 0:
            return name
    return None


class Encoder:
    """Compress piece by piece, each piece flushed so it can be sent."""

    def __init__(self, enc, raw_deflate=False):
        self.enc = enc
        if enc == "gzip":
            self.z = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif enc == "deflate":
            self.z = zlib.compressobj(6, zlib.DEFLATED,
                                      -15 if raw_deflate else 15)
        elif enc == "br":
            self.z = brotli.Compressor()
        elif enc == "zstd":
            self.z = zstandard.ZstdCompressor().compressobj()
        else:
            self.z = None

    def piece(self, data):
        if self.z is None:
            return data
        if self.enc == "br":
            return self.z.process(data) + self.z.flush()
        if self.enc == "zstd":
            return self.z.compress(data) + self.z.flush(
                zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self):
        if self.z is None:
            return b""
        if self.enc == "br":
            return self.z.finish()
        return self.z.flush()


def decompress(enc, data):
    """What a client does with an answer of coding ENC."""
    if enc in (None, "identity"):
        return data
    if enc == "gzip":
        return zlib.decompress(data, 31)
    if enc == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -15)
    if enc == "br":
        return brotli.decompress(data)
    if enc == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise AssertionError("no decoder for %r" % enc)


def usage():
    return {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION,
            "total_tokens": PROMPT + COMPLETION}


def whole_answer(model, ws):
    return json.dumps({
        "id": "chatcmpl-real", "object": "chat.completion",
        "created": 1700000000, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant",
                                 "content": "".join(ws)}}],
        "usage": usage()}).encode()


def stream_text(model, ws):
    """The SSE text of a stream, CRLF line ends, with keep-alives."""
    ev = [": keep-alive\r\n\r\n"]
    for i, w in enumerate(ws):
        ev.append("data: " + json.dumps({
            "id": "chatcmpl-real", "object": "chat.completion.chunk",
            "created": 1700000000, "model": model,
            "choices": [{"index": 0, "delta": {"content": w},
                         "finish_reason": None}]}) + "\r\n\r\n")
        if i == 4:
            ev.append(": keep-alive\r\n\r\n")
    ev.append("data: " + json.dumps({
        "id": "chatcmpl-real", "object": "chat.completion.chunk",
        "created": 1700000000, "model": model, "choices": [],
        "usage": usage()}) + "\r\n\r\n")
    ev.append("data: [DONE]\r\n\r\n")
    return "".join(ev).encode()


# Anthropic: uncached input, 5-minute cache writes, cache reads, output
A_INPUT, A_WRITE, A_READ, A_OUTPUT = 7, 20, 100, 29


def anthropic_usage(output):
    return {"input_tokens": A_INPUT, "cache_creation_input_tokens": A_WRITE,
            "cache_read_input_tokens": A_READ,
            "cache_creation": {"ephemeral_5m_input_tokens": A_WRITE,
                               "ephemeral_1h_input_tokens": 0},
            "output_tokens": output}


def anthropic_message(model, ws):
    return json.dumps({
        "id": "msg_real", "type": "message", "role": "assistant",
        "model": model, "content": [{"type": "text",
                                     "text": "".join(ws)}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": anthropic_usage(A_OUTPUT)}).encode()


def anthropic_stream_text(model, ws):
    """message_start (usage so far), pings between events, deltas, a
    message_delta repeating the input and cache counts with the output,
    message_stop; CRLF line ends."""
    def ev(name, data):
        return "event: %s\r\ndata: %s\r\n\r\n" % (name, json.dumps(data))
    msg = {"id": "msg_real", "type": "message", "role": "assistant",
           "model": model, "content": [], "stop_reason": None,
           "usage": anthropic_usage(1)}
    out = [ev("message_start", {"type": "message_start", "message": msg}),
           ev("ping", {"type": "ping"}),
           ev("content_block_start", {"type": "content_block_start",
                                      "index": 0, "content_block":
                                      {"type": "text", "text": ""}})]
    for i, w in enumerate(ws):
        out.append(ev("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}}))
        if i == 5:
            out.append(ev("ping", {"type": "ping"}))
    usage = anthropic_usage(A_OUTPUT)
    del usage["cache_creation"]
    out += [ev("content_block_stop", {"type": "content_block_stop",
                                      "index": 0}),
            ev("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": "end_turn",
                                           "stop_sequence": None},
                                 "usage": usage}),
            ev("message_stop", {"type": "message_stop"})]
    return "".join(out).encode()


def cut(text):
    """Pieces of TEXT cut across events and inside the "usage" key."""
    pieces, pos = [], 0
    k = text.find(b'"usage"')
    cuts = sorted({k + 3} | set(range(7, len(text), 53)))
    for c in cuts:
        if pos < c < len(text):
            pieces.append(text[pos:c])
            pos = c
    pieces.append(text[pos:])
    return pieces


class RealUpstream:

    def __init__(self, max_conns=64, lifetime=120.0, recv_timeout=0.2):
        self.max_conns = max_conns
        self.recv_timeout = recv_timeout
        self.deadline = time.monotonic() + lifetime
        self.lock = threading.Lock()
        self._log = []
        self.conns = 0
        self._stop = threading.Event()
        self._socks = []
        self._threads = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop,
                                          name="real-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    def requests(self):
        with self.lock:
            return list(self._log)

    def last(self):
        reqs = self.requests()
        assert reqs, "the real upstream received no request"
        return reqs[-1]

    def stop(self, timeout=5.0):
        stop_server(self, timeout)

    def _running(self):
        return not self._stop.is_set() and time.monotonic() < self.deadline

    def _accept_loop(self):
        while self._running():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                if self.conns >= self.max_conns:
                    s.close()
                    continue
                self.conns += 1
                self._socks.append(s)
                t = threading.Thread(target=self._serve, args=(s,),
                                     daemon=True)
                self._threads.append(t)
            t.start()

    def _recv_until(self, s, buf, pred, limit):
        while not pred(buf):
            if len(buf) > limit or not self._running():
                return None
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return None
            if not d:
                return None
            buf += d
        return buf

    def _serve(self, s):
        s.settimeout(self.recv_timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while self._running():
                buf = self._recv_until(s, buf, lambda b: b"\r\n\r\n" in b,
                                       64 << 10)
                if buf is None:
                    return
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                hdrs = {}
                for ln in lines[1:]:
                    name, _, value = ln.partition(":")
                    hdrs.setdefault(name.strip().lower(), value.strip())
                n = int(hdrs.get("content-length", "0"))
                buf = self._recv_until(s, buf, lambda b: len(b) >= n,
                                       1 << 20)
                if buf is None:
                    return
                body, buf = buf[:n], buf[n:]
                if not self._answer(s, lines[0], hdrs, body):
                    return
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _answer(self, s, line, hdrs, raw):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        anthropic = line.startswith("POST /v1/messages ")
        if not (anthropic or line.startswith("POST /v1/chat/completions ")) \
                or not isinstance(body, dict):
            s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return True
        model = str(body.get("model"))
        stream = bool(body.get("stream"))
        enc = hdrs.get("x-real-encoding") or pick_encoding(
            hdrs.get("accept-encoding"))
        encoder = Encoder(enc, hdrs.get("x-real-raw-deflate") == "1")
        n = hdrs.get("x-real-words")
        ws = words(min(int(n), 40000) if n and n.isdigit() else None)
        if stream:
            text = anthropic_stream_text(model, ws) if anthropic else \
                stream_text(model, ws)
            pieces = [encoder.piece(p) for p in cut(text)]
            pieces.append(encoder.finish())
        else:
            whole = encoder.piece(anthropic_message(model, ws) if anthropic
                                  else whole_answer(model, ws)) + \
                encoder.finish()
            # a few chunks; a long answer in chunks of at most 4 KB
            step = min(max(1, len(whole) // 3), 4096)
            pieces = [whole[i:i + step] for i in range(0, len(whole), step)]
        pieces = [p for p in pieces if p]
        if hdrs.get("x-real-corrupt") == "1":
            allb = bytearray(b"".join(pieces))
            for i in range(len(allb) // 3, len(allb) // 3 + 12):
                allb[i] ^= 0x5a
            pieces = [bytes(allb)]
        with self.lock:
            self._log.append({"headers": hdrs, "body": body,
                              "encoding": enc, "sent": b"".join(pieces)})
        head = ["HTTP/1.1 200 OK",
                "Content-Type: " + ("text/event-stream; charset=utf-8"
                                    if stream else "application/json"),
                "Transfer-Encoding: chunked", "Vary: Accept-Encoding"]
        if enc:
            head.append("Content-Encoding: " + enc)
        s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload"
                  b"\r\n\r\n")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        close_after = int(hdrs.get("x-real-close-after", "0") or 0)
        for i, p in enumerate(pieces):
            if close_after and i == close_after:
                return False        # dropped mid-answer: no last chunk
            s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
            if stream and i < 64:   # the first ones alone; then in bulk
                time.sleep(0.002)
        s.sendall(b"0\r\n\r\n")
        return True
