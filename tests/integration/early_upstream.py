"""A small HTTP/1.1 keep-alive upstream that answers some requests before
reading their body, the way a provider's edge answers 413 to a body it
will not take.

    up = EarlyUpstream(threshold=1 << 20)
    ... point an upstream block at up.url ...
    up.release_early()      # let the connection that answered early go on
    up.stop()

Requests whose Content-Length is over `threshold` get, as soon as their
head is parsed and without one byte of their body read, a 413 with a JSON
error body, a Content-Length and no "Connection: close": the connection
stays open, and whatever bytes come next on it are parsed as the next
request, exactly as a real server would (the unread body included).  Any
other request has its body read and gets an OpenAI chat completion that
echoes the last message's content ("echo:" + content) and carries a usage
object, again keeping the connection open.

Every request line the upstream parses, on every connection, is appended
to `lines` as (connection number, line).  A line that is not a request
line gets a 400 and the connection is closed, as a real server does.  Bytes
that end at EOF before a CRLF were not a request (a server that sees the
peer close in the middle of a request line logs no request); they are
counted in `unterminated` and never appear in `lines`.

Ordering is made explicit rather than left to timing: after an early
answer the connection reads nothing more until the test calls
release_early() (or `hold_timeout` passes, which is counted in
`hold_timeouts`).  The test releases after its client has received the
413, i.e. after the proxy has finished with that request, so what the
proxy does with the connection afterwards (keep writing the old body into
it and reuse it, or close it) is what the upstream then sees.  A small
SO_RCVBUF (and, if asked, a small TCP_MAXSEG, which keeps the peer's
autotuned send buffer small too) on the listening socket, inherited by the
accepted sockets, keeps the kernel from absorbing the body while nothing
reads it; queued_capacity() measures how much it does absorb.

Note that this is the worst case for a proxy, not a well-behaved server:
a server that answers early and keeps the connection should read and
discard the rest of the body (RFC 9110 10.1.1).  A body whose bytes all
reached the kernel before the answer is therefore not the proxy's to
guard against; the tests make the body larger than what the kernel holds.

Everything is bounded: the listener accepts at most `max_conns`
connections, each connection handles at most `max_requests` requests, no
line, head or body is buffered beyond a limit, every recv has a timeout,
and the whole server stops by itself after `lifetime` seconds.  Only
127.0.0.1 is used.
"""

import json
import re
import socket
import threading
import time

from upstream_threads import stop_server

HOST = "127.0.0.1"
REQUEST_LINE_RE = re.compile(r"^(POST|GET) /v1/[a-z/_]+ HTTP/1\.1$")


def queued_capacity(rcvbuf, maxseg=None, timeout=3.0):
    """How many bytes a fresh loopback connection can queue to a peer that
    listens with these options and never reads: the peer's receive buffer
    plus the sender's (autotuned) send buffer.  Measured with a throwaway
    listener, so that a test can check its premise that a body is larger
    than what the kernel absorbs."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    cli = srv = None
    try:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if maxseg is not None:
            ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, maxseg)
        ls.bind((HOST, 0))
        ls.listen(1)
        ls.settimeout(timeout)
        cli = socket.create_connection(ls.getsockname(), timeout=timeout)
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        srv, _ = ls.accept()
        cli.setblocking(False)
        chunk = b"x" * 65536
        total, stalls = 0, 0
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            try:
                total += cli.send(chunk)
                stalls = 0
                continue
            except BlockingIOError:
                pass
            stalls += 1
            if stalls >= 10 or time.monotonic() >= deadline:
                break
            time.sleep(0.02)        # let window updates come in
        return total
    finally:
        for s in (cli, srv, ls):
            if s is not None:
                s.close()


class EarlyUpstream:

    def __init__(self, threshold=1 << 20, rcvbuf=16384, maxseg=None,
                 hold_timeout=15.0,
                 max_conns=64, max_requests=200, lifetime=120.0,
                 max_buffer=64 << 20, recv_timeout=0.25):
        self.threshold = threshold
        self.hold_timeout = hold_timeout
        self.max_conns = max_conns
        self.max_requests = max_requests
        self.max_buffer = max_buffer
        self.recv_timeout = recv_timeout
        self.deadline = time.monotonic() + lifetime

        self.lock = threading.Lock()
        self.lines = []             # (conn no, request line), in order
        self.early = 0              # early answers sent
        self.small = 0              # ordinary answers sent
        self.bad = 0                # 400s for lines that were not requests
        self.unterminated = []      # (conn no, bytes) ended by EOF, no CRLF
        self.hold_timeouts = 0
        self.errors = []            # (conn no, repr of an exception)
        self.conns = 0
        self._release = threading.Semaphore(0)
        self._stop = threading.Event()
        self._socks = []
        self._threads = []

        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # set before listen() so that accepted sockets start with it
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if maxseg is not None:
            self.lsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG,
                                  maxseg)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop,
                                          name="early-upstream-accept",
                                          daemon=True)
        self._acceptor.start()

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    # -- control from the test ------------------------------------------

    def release_early(self):
        """Let one connection that answered early read on."""
        self._release.release()

    def snapshot(self):
        with self.lock:
            return dict(lines=list(self.lines), early=self.early,
                        small=self.small, bad=self.bad,
                        unterminated=list(self.unterminated),
                        hold_timeouts=self.hold_timeouts,
                        errors=list(self.errors), conns=self.conns)

    def idle(self):
        """True when no connection thread is running."""
        with self.lock:
            threads = list(self._threads)
        return not any(t.is_alive() for t in threads)

    def stop(self, timeout=5.0):
        self._stop.set()
        # wake every held connection; they see _stop and end
        for _ in range(self.max_conns):
            self._release.release()
        stop_server(self, timeout)

    # -- the server -------------------------------------------------------

    def _over(self):
        return self._stop.is_set() or time.monotonic() >= self.deadline

    def _accept_loop(self):
        try:
            while not self._over():
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
                                         name="early-upstream-%d" % no,
                                         daemon=True)
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
            with self.lock:
                self.errors.append((no, repr(e)))
        finally:
            try:
                sock.close()
            except OSError:
                pass


class _Eof(Exception):
    pass


class _Conn:
    """One accepted connection: requests parsed one after another from a
    byte buffer, the way a server's keep-alive loop does."""

    def __init__(self, srv, sock, no):
        self.srv = srv
        self.sock = sock
        self.no = no
        self.buf = bytearray()
        sock.settimeout(srv.recv_timeout)

    def _fill(self):
        """Read more bytes into buf; raise _Eof at EOF, error or the end
        of the server's life."""
        for _ in range(1000000):
            if self.srv._over():
                raise _Eof()
            if len(self.buf) > self.srv.max_buffer:
                raise _Eof()
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                raise _Eof()
            if not data:
                raise _Eof()
            self.buf += data
            return
        raise _Eof()

    def _line(self):
        """The next CRLF-terminated line, without the CRLF."""
        scanned = 0
        for _ in range(10000000):
            i = self.buf.find(b"\r\n", max(0, scanned - 1))
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            scanned = len(self.buf)
            self._fill()
        raise _Eof()

    def _take(self, n):
        for _ in range(10000000):
            if len(self.buf) >= n:
                data = bytes(self.buf[:n])
                del self.buf[:n]
                return data
            self._fill()
        raise _Eof()

    def _send(self, status, reason, body, close=False):
        head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n%s\r\n" %
                (status, reason, len(body),
                 "Connection: close\r\n" if close else ""))
        self.sock.settimeout(10.0)
        try:
            self.sock.sendall(head.encode() + body)
        finally:
            self.sock.settimeout(self.srv.recv_timeout)

    def run(self):
        srv = self.srv
        try:
            for _ in range(srv.max_requests):
                if not self._one():
                    return
        except _Eof:
            if self.buf:
                with srv.lock:
                    srv.unterminated.append((self.no, len(self.buf)))

    def _one(self):
        """One request; False when the connection is to be closed."""
        srv = self.srv
        # RFC 9112 2.2: empty lines before a request line are ignored
        for _ in range(16):
            raw = self._line()
            if raw:
                break
        text = raw.decode("latin-1")
        with srv.lock:
            srv.lines.append((self.no, text[:100] + (
                "...(%d bytes)" % len(text) if len(text) > 100 else "")))
        parts = text.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            with srv.lock:
                srv.bad += 1
            self._send(400, "Bad Request",
                       b'{"error":{"message":"bad request line",'
                       b'"type":"invalid_request_error"}}', close=True)
            return False
        headers = {}
        size = 0
        for _ in range(200):
            h = self._line()
            size += len(h) + 2
            if not h:
                break
            if size > 65536 or b":" not in h:
                self._send(400, "Bad Request", b'{"error":{"message":'
                           b'"bad header","type":"invalid_request_error"}}',
                           close=True)
                return False
            k, v = h.split(b":", 1)
            headers[k.strip().lower().decode("latin-1")] = \
                v.strip().decode("latin-1")
        else:
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return False
        if length > srv.threshold:
            # the edge's answer: at once, body unread, connection kept
            body = json.dumps({"error": {
                "message": "Request body of %d bytes is too large" % length,
                "type": "invalid_request_error", "param": None,
                "code": "request_too_large"}}).encode()
            self._send(413, "Payload Too Large", body)
            with srv.lock:
                srv.early += 1
            if not srv._release.acquire(timeout=srv.hold_timeout):
                with srv.lock:
                    srv.hold_timeouts += 1
            # what follows on this connection is the next request
            return True
        data = self._take(length)
        try:
            doc = json.loads(data)
            marker = doc["messages"][-1]["content"]
            model = doc.get("model", "")
        except (ValueError, KeyError, IndexError, TypeError):
            self._send(400, "Bad Request", b'{"error":{"message":'
                       b'"not a chat request","type":'
                       b'"invalid_request_error"}}')
            return True
        with srv.lock:
            srv.small += 1
            n = srv.small
        prompt = 10 + n
        body = json.dumps({
            "id": "chatcmpl-early%d" % n,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {
                "role": "assistant", "content": "echo:" + str(marker)},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 2,
                      "total_tokens": prompt + 2},
        }).encode()
        self._send(200, "OK", body)
        return True
