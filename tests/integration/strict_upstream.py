"""A strict test upstream: an HTTP/1.1 keep-alive server that reads each
request the way a Python or Go provider does and logs exactly what it got.

    up = StrictUpstream()
    ... point an upstream block at up.url ...
    up.requests()       # every request parsed, in order (see below)
    up.errors()         # everything that was not a well-formed request
    up.stop()

What it checks and logs.  Every request line, every header (in order, as
sent) and the raw body of every request, on every connection, is appended
to the log, a list of dicts:

    conn      connection number (1, 2, ...), seq: request number on it
    line      the request line, decoded as latin-1, exactly as received
    method, target, path, query ({name: [values]}), version
    headers   [(name, value)] as received; hdr(name) -> first value or None
    raw       the body bytes (Content-Length or chunked, decoded)
    body      json.loads(raw): escapes decoded, the last of duplicate keys
              wins (Python's behaviour); None if it did not parse
    json_error  why it did not parse, else None
    model     the model it served (see below)

Anything that is not a well-formed request (a request line that is not
METHOD SP target SP HTTP/1.x with an upper-case token method, a bad
header, a body that ends early, bytes left over in front of what should
be the next request, a body that is not JSON) is recorded in errors(), a
list of (conn, message), and the connection is answered 400 and closed
where a real server would do so.  So a Content-Length shorter than the
body sluice sent shows up as a bad request line ("uePOST ...") on the next
request of that pooled connection, and a longer one as a body that never
completes (or swallows the next request and fails to parse).

What it answers, from the parsed body (never from the raw bytes):
    POST /v1/chat/completions, /v1/completions, /v1/embeddings,
         /v1/responses, /v1/messages (Anthropic), and the Azure paths
         /openai/deployments/NAME/{chat/completions,completions,embeddings}
         ?api-version=V (the model is the body's "model", else NAME)
    The served model is body["model"].  Its token numbers are fixed per
    model: tokens(model) -> (prompt, completion), TOKENS below or a value
    derived from the name; the request headers x-strict-prompt-tokens and
    x-strict-completion-tokens override them.
    Streams when bool(body.get("stream")) is true (so "stream":"true" and
    "stream":1 stream too: a lenient provider).  A chat or completions
    stream carries a final usage chunk only when
    bool((body.get("stream_options") or {}).get("include_usage")) -- and
    never when the request has x-strict-no-usage or its model contains
    "nousage" (an upstream that ignores include_usage).  A Responses
    stream ends with response.completed carrying the request's
    "instructions" (so a 1.1 MB one makes a >1 MiB SSE line) and the
    usage.  x-strict-chunks (default 3) and x-strict-chunk-delay-ms
    (default 0) shape a stream.
    Every answer carries openai-organization: strict-org,
    openai-project: strict-proj (a proxy should strip them),
    x-strict-model: the served model and x-strict-seen-org / -project:
    the OpenAI-Organization / OpenAI-Project it received ("-" if none).
    Any other method or path: 404 (method and path are still logged).

Everything is bounded: at most max_conns connections, max_requests per
connection, heads of at most 64 KB and 200 headers, bodies of at most
max_body bytes, every recv has a timeout, a body that stalls for
body_timeout ends its connection, streams are at most 10000 chunks, and
the whole server stops by itself after `lifetime` seconds.  Only
127.0.0.1 is used.
"""

import json
import re
import socket
import threading
import time
import urllib.parse
import zlib

from upstream_threads import stop_server

HOST = "127.0.0.1"

# (prompt_tokens, completion_tokens) per model; others: see tokens().
TOKENS = {
    "gpt-4o": (1234, 56),
    "gpt-4o-mini": (40, 7),
    "o1-pro": (4321, 99),
    "claude-sonnet-4-5": (321, 45),
    "text-embedding-3-small": (17, 0),
}

METHOD_RE = re.compile(r"^[A-Z]+$")
VERSION_RE = re.compile(r"^HTTP/1\.[01]$")
AZURE_RE = re.compile(r"^/openai/deployments/([^/]*)/"
                      r"(chat/completions|completions|embeddings)$")


def tokens(model, headers=None):
    """The (prompt, completion) tokens the upstream reports for MODEL."""
    if isinstance(model, str) and model in TOKENS:
        p, c = TOKENS[model]
    else:
        h = zlib.crc32(repr(model).encode("utf-8", "replace"))
        p, c = 100 + h % 900, 10 + (h >> 10) % 90
    if headers:
        if headers.get("x-strict-prompt-tokens"):
            p = int(headers["x-strict-prompt-tokens"])
        if headers.get("x-strict-completion-tokens"):
            c = int(headers["x-strict-completion-tokens"])
    return p, c


class _Eof(Exception):
    pass


class _Bad(Exception):
    """Not a well-formed request: answer 400 and close."""


class Request(dict):

    def hdr(self, name):
        name = name.lower()
        for k, v in self["headers"]:
            if k.lower() == name:
                return v
        return None

    def hdrs(self, name):
        name = name.lower()
        return [v for k, v in self["headers"] if k.lower() == name]


class StrictUpstream:

    def __init__(self, max_conns=512, max_requests=1000, lifetime=180.0,
                 max_body=64 << 20, recv_timeout=0.2, body_timeout=5.0):
        self.max_conns = max_conns
        self.max_requests = max_requests
        self.max_body = max_body
        self.recv_timeout = recv_timeout
        self.body_timeout = body_timeout
        self.deadline = time.monotonic() + lifetime
        self.lock = threading.Lock()
        self._log = []
        self._errors = []
        self.conns = 0
        self._stop = threading.Event()
        self._socks = []
        self._threads = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop,
                                          name="strict-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    # -- what the test reads -----------------------------------------------

    def requests(self):
        with self.lock:
            return list(self._log)

    def errors(self):
        with self.lock:
            return list(self._errors)

    def lines(self):
        return [r["line"] for r in self.requests()]

    def last(self):
        reqs = self.requests()
        assert reqs, "the strict upstream received no request"
        return reqs[-1]

    def clear(self):
        with self.lock:
            self._log = []
            self._errors = []

    def wait_idle(self, timeout=5.0):
        """Until no connection is in the middle of a request."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 1):
            with self.lock:
                busy = sum(1 for t in self._threads
                           if getattr(t, "busy", False) and t.is_alive())
            if not busy or time.monotonic() >= deadline:
                return not busy
            time.sleep(0.02)
        return False

    def stop(self, timeout=5.0):
        stop_server(self, timeout)

    # -- the server -----------------------------------------------------

    def _over(self):
        return self._stop.is_set() or time.monotonic() >= self.deadline

    def _error(self, no, msg):
        with self.lock:
            self._errors.append((no, msg))

    def _accept_loop(self):
        try:
            for _ in range(10 ** 7):
                if self._over():
                    break
                with self.lock:
                    if self.conns >= self.max_conns:
                        break
                try:
                    sock, _ = self.lsock.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                with self.lock:
                    self.conns += 1
                    no = self.conns
                    self._socks.append(sock)
                    t = threading.Thread(target=self._serve, args=(sock, no),
                                         name="strict-%d" % no, daemon=True)
                    self._threads.append(t)
                t.start()
        finally:
            try:
                self.lsock.close()
            except OSError:
                pass

    def _serve(self, sock, no):
        conn = _Conn(self, sock, no)
        try:
            conn.run()
        except Exception as e:          # recorded, the test reports it
            self._error(no, "exception: %r" % (e,))
        finally:
            threading.current_thread().busy = False
            try:
                sock.close()
            except OSError:
                pass


class _Conn:
    """One connection: requests parsed one after another from a buffer,
    the way a server's keep-alive loop does."""

    def __init__(self, srv, sock, no):
        self.srv = srv
        self.sock = sock
        self.no = no
        self.buf = bytearray()
        sock.settimeout(srv.recv_timeout)

    def _fill(self, stall=None):
        """Read more into buf.  Raises _Eof at EOF or the end of the
        server's life, and _Bad if STALL seconds pass without a byte."""
        t0 = time.monotonic()
        for _ in range(10 ** 6):
            if self.srv._over():
                raise _Eof()
            if stall is not None and time.monotonic() - t0 > stall:
                raise _Bad("no byte for %.1f s in the middle of a request"
                           % stall)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                raise _Eof()
            if not data:
                raise _Eof()
            self.buf += data
            return
        raise _Eof()

    def _line(self, limit, stall=None):
        scanned = 0
        for _ in range(10 ** 6):
            i = self.buf.find(b"\r\n", max(0, scanned - 1))
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise _Bad("line over %d bytes" % limit)
            scanned = len(self.buf)
            self._fill(stall)
        raise _Eof()

    def _take(self, n, stall):
        for _ in range(10 ** 7):
            if len(self.buf) >= n:
                data = bytes(self.buf[:n])
                del self.buf[:n]
                return data
            self._fill(stall)
        raise _Eof()

    def send(self, data):
        self.sock.settimeout(10.0)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(self.srv.recv_timeout)

    def run(self):
        me = threading.current_thread()
        for seq in range(1, self.srv.max_requests + 1):
            me.busy = False
            try:
                req = self._read_request(seq)
            except _Eof:
                if self.buf:
                    self.srv._error(self.no, "EOF inside a request: %r" %
                                    bytes(self.buf[:200]))
                return
            except _Bad as e:
                self.srv._error(self.no, str(e))
                try:
                    self.send(_response(400, {"error": {
                        "message": "bad request: %s" % e,
                        "type": "invalid_request_error"}}, close=True))
                except OSError:
                    pass
                return
            try:
                keep = _answer(self, req)
            except OSError:
                return
            if not keep or self.srv._over():
                return

    def _read_request(self, seq):
        srv = self.srv
        raw = self._line(65536)
        threading.current_thread().busy = True
        line = raw.decode("latin-1")
        req = Request(conn=self.no, seq=seq, line=line, headers=[], raw=b"",
                      body=None, json_error=None, model=None)
        parts = line.split(" ")
        ok = (len(parts) == 3 and METHOD_RE.match(parts[0]) and
              parts[1].startswith("/") and VERSION_RE.match(parts[2]))
        if not ok:
            with srv.lock:
                srv._log.append(req)
            raise _Bad("bad request line %r" % line[:200])
        req["method"], req["target"], req["version"] = parts
        path, _, query = parts[1].partition("?")
        req["path"] = path
        req["query"] = urllib.parse.parse_qs(query, keep_blank_values=True)
        size = 0
        for _ in range(201):
            h = self._line(65536, srv.body_timeout)
            size += len(h) + 2
            if not h:
                break
            if size > 65536:
                raise _Bad("request head over 64 KB")
            text = h.decode("latin-1")
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip() or \
                    any(ord(ch) < 0x21 or ord(ch) > 0x7e for ch in name):
                with srv.lock:
                    srv._log.append(req)
                raise _Bad("bad header line %r" % text[:200])
            req["headers"].append((name, value.strip(" \t")))
        else:
            raise _Bad("more than 200 headers")
        req["complete"] = False
        with srv.lock:
            srv._log.append(req)
        te = (req.hdr("transfer-encoding") or "").lower()
        cls = req.hdrs("content-length")
        if te and cls:
            raise _Bad("both Transfer-Encoding and Content-Length")
        if len(cls) > 1:
            raise _Bad("more than one Content-Length")
        if te == "chunked":
            req["raw"] = self._chunked()
        elif te:
            raise _Bad("Transfer-Encoding %r" % te)
        elif cls:
            if not cls[0].isdigit():
                raise _Bad("Content-Length %r" % cls[0])
            n = int(cls[0])
            if n > srv.max_body:
                raise _Bad("body of %d bytes" % n)
            req["raw"] = self._take(n, srv.body_timeout)
        req["complete"] = True
        if req["raw"] or req["method"] == "POST":
            try:
                req["body"] = json.loads(req["raw"].decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                req["json_error"] = str(e)
                srv._error(self.no, "body is not JSON (%s): %r" %
                           (e, req["raw"][:200]))
        return req

    def _chunked(self):
        srv = self.srv
        out = bytearray()
        for _ in range(100000):
            line = self._line(4096, srv.body_timeout)
            try:
                n = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Bad("bad chunk size %r" % line[:100])
            if n == 0:
                for _ in range(100):        # trailers
                    if not self._line(65536, srv.body_timeout):
                        return bytes(out)
                raise _Bad("too many trailers")
            if len(out) + n > srv.max_body:
                raise _Bad("chunked body over %d bytes" % srv.max_body)
            out += self._take(n, srv.body_timeout)
            if self._take(2, srv.body_timeout) != b"\r\n":
                raise _Bad("chunk not followed by CRLF")
        raise _Bad("too many chunks")


# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


def _head(status, ctype, extra, length=None, close=False):
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Other")),
             "Content-Type: " + ctype]
    lines += ["%s: %s" % kv for kv in extra]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append("Content-Length: %d" % length)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _response(status, doc, extra=(), close=False):
    body = json.dumps(doc).encode()
    return _head(status, "application/json", extra, len(body), close) + body


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(obj, event=None):
    s = ("event: %s\n" % event if event else "") + \
        "data: %s\n\n" % (obj if isinstance(obj, str) else json.dumps(obj))
    return s.encode()


def _truthy(v):
    return bool(v)


def _answer(conn, req):
    """Answer one request; False to close the connection."""
    h = {k.lower(): v for k, v in req["headers"]}
    body = req["body"]
    path = req["path"]
    m = AZURE_RE.match(path)
    kind = None
    if req["method"] == "POST":
        if m:
            kind = {"chat/completions": "chat", "completions": "completions",
                    "embeddings": "embeddings"}[m.group(2)]
        else:
            kind = {"/v1/chat/completions": "chat",
                    "/v1/completions": "completions",
                    "/v1/embeddings": "embeddings",
                    "/v1/responses": "responses",
                    "/v1/messages": "messages"}.get(path)
    if kind is None:
        conn.send(_response(404, {"error": {
            "message": "no such endpoint: %s %s" % (req["method"], path),
            "type": "invalid_request_error", "code": "unknown_url"}}))
        return True
    if not isinstance(body, dict):
        conn.send(_response(400, {"error": {
            "message": "the body is not a JSON object",
            "type": "invalid_request_error",
            "code": "strict_upstream_bad_body"}}))
        return True
    model = body.get("model")
    if model is None and m:
        model = urllib.parse.unquote(m.group(1))
    req["model"] = model
    prompt, completion = tokens(model, h)
    extra = [("openai-organization", "strict-org"),
             ("openai-project", "strict-proj"),
             ("x-strict-model", _header_safe(model)),
             ("x-strict-seen-org", _header_safe(h.get("openai-organization",
                                                      "-"))),
             ("x-strict-seen-project",
              _header_safe(h.get("openai-project", "-")))]
    stream = _truthy(body.get("stream"))
    so = body.get("stream_options")
    include_usage = isinstance(so, dict) and _truthy(so.get("include_usage"))
    if "x-strict-no-usage" in h or (isinstance(model, str) and
                                    "nousage" in model):
        include_usage = False
    nchunks = min(int(h.get("x-strict-chunks", "3")), 10000)
    delay = min(int(h.get("x-strict-chunk-delay-ms", "0")), 10000) / 1000.0
    ctx = dict(model=model, prompt=prompt, completion=completion,
               nchunks=nchunks, delay=delay, include_usage=include_usage,
               body=body)
    if kind == "embeddings":
        conn.send(_response(200, {
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0,
                      "embedding": [0.0, 0.1, 0.2]}],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}},
            extra))
        return True
    if not stream:
        conn.send(_response(200, _whole(kind, ctx), extra))
        return True
    conn.send(_head(200, "text/event-stream", extra))
    for piece in _stream(kind, ctx):
        if piece is None:
            time.sleep(delay)
            continue
        conn.send(_chunk(piece))
    conn.send(b"0\r\n\r\n")
    return True


def _header_safe(v):
    s = v if isinstance(v, str) else json.dumps(v)
    return "".join(ch if 0x20 <= ord(ch) < 0x7f else "?" for ch in s)[:200]


WORDS = ["Hello ", "from ", "the ", "strict ", "upstream. "]


def _word(i):
    return WORDS[i % len(WORDS)]


def _whole(kind, x):
    text = "".join(_word(i) for i in range(x["nchunks"]))
    p, c, model = x["prompt"], x["completion"], x["model"]
    if kind == "chat":
        return {"id": "chatcmpl-strict", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant",
                                         "content": text}}],
                "usage": {"prompt_tokens": p, "completion_tokens": c,
                          "total_tokens": p + c}}
    if kind == "completions":
        return {"id": "cmpl-strict", "object": "text_completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "text": text,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": p, "completion_tokens": c,
                          "total_tokens": p + c}}
    if kind == "responses":
        return _response_obj(x, "completed", text)
    return {"id": "msg_strict", "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": p, "output_tokens": c}}


def _response_obj(x, status, text):
    p, c = x["prompt"], x["completion"]
    done = status == "completed"
    return {"id": "resp_strict", "object": "response",
            "created_at": int(time.time()), "status": status,
            "model": x["model"],
            "instructions": x["body"].get("instructions"),
            "output": [{"type": "message", "id": "msg_strict",
                        "status": status, "role": "assistant",
                        "content": [{"type": "output_text",
                                     "text": text}]}] if done else [],
            "usage": {"input_tokens": p,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": c,
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": p + c} if done else None}


def _stream(kind, x):
    """The pieces of a stream; None means: wait the chunk delay."""
    p, c, model, n = x["prompt"], x["completion"], x["model"], x["nchunks"]
    now = int(time.time())
    if kind == "chat":
        for i in range(n):
            if i:
                yield None
            yield _sse({"id": "chatcmpl-strict",
                        "object": "chat.completion.chunk", "created": now,
                        "model": model,
                        "choices": [{"index": 0,
                                     "delta": {"content": _word(i)},
                                     "finish_reason": None}]})
        yield _sse({"id": "chatcmpl-strict", "object": "chat.completion.chunk",
                    "created": now, "model": model,
                    "choices": [{"index": 0, "delta": {},
                                 "finish_reason": "stop"}]})
        if x["include_usage"]:
            yield _sse({"id": "chatcmpl-strict",
                        "object": "chat.completion.chunk", "created": now,
                        "model": model, "choices": [],
                        "usage": {"prompt_tokens": p, "completion_tokens": c,
                                  "total_tokens": p + c}})
        yield _sse("[DONE]")
    elif kind == "completions":
        for i in range(n):
            if i:
                yield None
            yield _sse({"id": "cmpl-strict", "object": "text_completion",
                        "created": now, "model": model,
                        "choices": [{"index": 0, "text": _word(i),
                                     "finish_reason": None}]})
        if x["include_usage"]:
            yield _sse({"id": "cmpl-strict", "object": "text_completion",
                        "created": now, "model": model, "choices": [],
                        "usage": {"prompt_tokens": p, "completion_tokens": c,
                                  "total_tokens": p + c}})
        yield _sse("[DONE]")
    elif kind == "responses":
        yield _sse({"type": "response.created", "sequence_number": 0,
                    "response": _response_obj(x, "in_progress", "")},
                   "response.created")
        text = ""
        for i in range(n):
            if i:
                yield None
            text += _word(i)
            yield _sse({"type": "response.output_text.delta",
                        "sequence_number": i + 1, "item_id": "msg_strict",
                        "output_index": 0, "content_index": 0,
                        "delta": _word(i)}, "response.output_text.delta")
        yield _sse({"type": "response.completed", "sequence_number": n + 1,
                    "response": _response_obj(x, "completed", text)},
                   "response.completed")
    else:
        yield _sse({"type": "message_start", "message": {
            "id": "msg_strict", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None,
            "usage": {"input_tokens": p, "output_tokens": 1}}},
            "message_start")
        yield _sse({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}},
                   "content_block_start")
        for i in range(n):
            if i:
                yield None
            yield _sse({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": _word(i)}},
                       "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0},
                   "content_block_stop")
        yield _sse({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn",
                              "stop_sequence": None},
                    "usage": {"output_tokens": c}}, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")
