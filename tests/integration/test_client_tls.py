"""TLS for clients: "listen ... ssl" beside a plain listener, TLS 1.2 and
1.3 only, ALPN http/1.1, handshake failures counted by reason and never
metered, plain HTTP answered as nginx does, session tickets shared by
every worker and rotated, certificates reloaded on SIGHUP and checked by
sluiced -t, client certificates as an identity.

Certificates are made with the openssl CLI (pki.py); clients are curl,
openssl s_client, Python's ssl module and the npm SDKs."""

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import HOST, SLUICED, free_port, request, wait_for
from pki import make_ca, make_cert, openssl
from test_metrics import check_exposition, promtool_check, value
from test_sdks import assert_sdk_results, run_sdk_check, sdk_keys
from test_signals import RequestLoop


CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}
CHAT_PATH = "/v1/chat/completions"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("clienttls")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    server = make_cert(d, "ca", "server", "IP:127.0.0.1,DNS:localhost")
    renewed = make_cert(d, "ca", "renewed", "IP:127.0.0.1,DNS:localhost",
                        subject="/CN=renewed", days=3)
    alice = make_cert(d, "ca", "alice", usage="clientAuth",
                      subject="/O=Example/CN=alice")
    bob = make_cert(d, "ca", "bob", usage="clientAuth", subject="/CN=bob")
    mallory = make_cert(d, "otherca", "mallory", usage="clientAuth",
                        subject="/O=Example/CN=alice")
    return {"dir": d, "ca": str(d / "ca.pem"),
            "other_ca": str(d / "otherca.pem"), "server": server,
            "renewed": renewed, "alice": alice, "bob": bob,
            "mallory": mallory}


def tls_lines(pki, port, cert=None, extra=""):
    cert = cert or pki["server"]
    return ("listen %s:%d ssl;\nssl_certificate %s;\n"
            "ssl_certificate_key %s;\n%s\n" % (HOST, port, cert[0], cert[1],
                                               extra))


def start(sluice, mock, pki, extra="", workers=2, cert=None, upstreams=None,
          **kw):
    """sluiced with a plain listener (s.port), a TLS one (s.tls_port) and
    admin_listen (s.admin_port)."""
    tls_port, admin_port = free_port(), free_port()
    s = sluice(upstreams=upstreams or {"mock": mock.url}, workers=workers,
               extra="admin_listen %s:%d;\n" % (HOST, admin_port) +
               tls_lines(pki, tls_port, cert, extra), **kw)
    # bound by the master with the plain one, which start() waited for
    s.tls_port, s.admin_port = tls_port, admin_port
    return s


def metrics(s):
    st, _, body = request(s.admin_port, "GET", "/metrics")
    assert st == 200, (st, body)
    return check_exposition(body.decode())


def status(s):
    st, _, body = request(s.admin_port, "GET", "/status")
    assert st == 200, (st, body)
    return json.loads(body)


def failures(s):
    fam = metrics(s).get("sluice_tls_handshake_failures_total",
                         {"samples": []})
    return {l["reason"]: v for _, l, v in fam["samples"] if v}


def handshakes(s):
    f = metrics(s)
    return (value(f, "sluice_tls_handshakes_total", session="full"),
            value(f, "sluice_tls_handshakes_total", session="resumed"))


def requests_total(s):
    return status(s)["totals"]["requests"]


def curl(port, *args, ca=None, path="/v1/chat/completions", body=CHAT,
         headers=()):
    """curl over https to 127.0.0.1:PORT: (exit code, status, body, -v
    output)."""
    cmd = ["curl", "-sS", "-v", "--max-time", "15", "-o", "-", "-w",
           "\n%{http_code}"]
    if ca:
        cmd += ["--cacert", ca]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary",
                json.dumps(body)]
    cmd += list(args) + ["https://%s:%d%s" % (HOST, port, path)]
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    out = r.stdout.decode(errors="replace")
    text, _, code = out.rpartition("\n")
    return (r.returncode, int(code or 0), text,
            r.stderr.decode(errors="replace"))


def s_client(port, *args, ca=None, path="/v1/models", headers=""):
    """openssl s_client sending one GET; (exit code, its output)."""
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close"
           "\r\n\r\n" % (path, headers)).encode()
    cmd = ["openssl", "s_client", "-connect", "%s:%d" % (HOST, port),
           "-ign_eof"]
    if ca:
        cmd += ["-CAfile", ca, "-verify_return_error"]
    r = subprocess.run(cmd + list(args), input=req, capture_output=True,
                       timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def reused(out):
    return "\nReused, " in out


# ---------------------------------------------------------------------------
# listen ... ssl
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("version,args", [
    ("TLSv1.3", ["--tlsv1.3"]),
    ("TLSv1.2", ["--tlsv1.2", "--tls-max", "1.2"]),
])
def test_https_and_plain_listeners_serve_side_by_side(mock, sluice, pki,
                                                      version, args):
    s = start(sluice, mock, pki)
    rc, st, body, err = curl(s.tls_port, *args, ca=pki["ca"])
    assert rc == 0 and st == 200, (rc, st, body, err)
    assert json.loads(body)["object"] == "chat.completion"
    assert "SSL connection using %s" % version in err, err
    assert "ALPN: server accepted http/1.1" in err, err
    # the plain listener, at the same time
    st, _, body = request(s.port, "POST", CHAT_PATH, CHAT)
    assert st == 200, body
    assert handshakes(s) == (1, 0)
    assert requests_total(s) == 2
    assert failures(s) == {}


def test_a_request_on_tls_is_metered_as_on_plain(mock, sluice, pki):
    """Keep-alive over TLS: three requests on one connection, one
    handshake, three requests counted."""
    s = start(sluice, mock, pki)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    import http.client
    conn = http.client.HTTPSConnection(HOST, s.tls_port, timeout=10,
                                       context=ctx)
    try:
        for _ in range(3):
            conn.request("POST", CHAT_PATH, body=json.dumps(CHAT),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200, data
            assert json.loads(data)["usage"]["completion_tokens"] == 10
    finally:
        conn.close()
    assert handshakes(s) == (1, 0)
    assert requests_total(s) == 3


def test_large_and_streamed_answers_arrive_whole_over_tls(mock, sluice,
                                                          pki):
    """A 100 KB request, an answer of many records, and a stream of 200
    events: the same bytes over TLS as over the plain listener."""
    import http.client
    s = start(sluice, mock, pki)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    big = dict(CHAT, messages=[{"role": "user", "content": "x" * 100000}])
    cases = [(big, {"x-mock-chunks": "20000"}),
             (dict(CHAT, stream=True), {"x-mock-chunks": "200"})]
    for body, hdrs in cases:
        got = []
        for tls in (True, False):
            if tls:
                conn = http.client.HTTPSConnection(HOST, s.tls_port,
                                                   timeout=20, context=ctx)
            else:
                conn = http.client.HTTPConnection(HOST, s.port, timeout=20)
            try:
                conn.request("POST", CHAT_PATH, body=json.dumps(body),
                             headers=dict(hdrs, **{
                                 "Content-Type": "application/json"}))
                resp = conn.getresponse()
                data = resp.read()
                assert resp.status == 200, data[:300]
            finally:
                conn.close()
            got.append(answer_text(data, body.get("stream")))
        assert len(got[0]) > (100000 if not body.get("stream") else 1000)
        assert got[0] == got[1]


def tls_socket(s, pki, rcvbuf=None):
    """A TLS connection to s.tls_port, its handshake done; a close
    without close_notify raises SSLEOFError on reading."""
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF    # Python sets it
    raw = socket.socket()
    raw.settimeout(20)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.connect((HOST, s.tls_port))
    return ctx.wrap_socket(raw, server_hostname=HOST,
                           suppress_ragged_eofs=False)


def chat_raw(body, close=False, extra=""):
    data = json.dumps(body).encode()
    return (b"POST %s HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n%s%s"
            b"Content-Length: %d\r\n\r\n%s" % (
                CHAT_PATH.encode(), extra.encode(),
                b"Connection: close\r\n" if close else b"", len(data),
                data))


def read_answers(c, n):
    """N Content-Length answers off a socket: [(status, body)], then a
    file of what follows (b"" once the server closed; over TLS, a close
    without close_notify raises SSLEOFError)."""
    fp = c.makefile("rb")
    got = []
    for _ in range(n):
        status = int(fp.readline().split()[1])
        length = None
        while True:
            line = fp.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        assert length is not None, status
        got.append((status, fp.read(length)))
    return got, fp


def test_pipelined_requests_over_tls_are_served_from_what_openssl_holds(
        mock, sluice, pki):
    """Requests pipelined after the Finished, 20 KB ones among them; the
    last TLS record holds the end of a body and a whole request, which
    OpenSSL keeps decrypted when the body's read stops at its end: no
    byte of it is on the socket any more, and it is served without
    waiting for one."""
    s = start(sluice, mock, pki, workers=1)
    big = dict(CHAT, messages=[{"role": "user", "content": "x" * 20000}])
    with tls_socket(s, pki) as c:
        # the last write, one record: the end of a body the worker
        # waits for, read into the body's memory, and a whole request
        last = chat_raw(CHAT, close=True)
        raw = chat_raw(CHAT) + chat_raw(big) * 2 + last
        cut = len(raw) - len(last) - 4000
        c.sendall(raw[:cut])
        time.sleep(0.5)
        c.sendall(raw[cut:])
        got, fp = read_answers(c, 4)
        assert [st for st, _ in got] == [200] * 4, got
        for _, body in got:
            assert json.loads(body)["usage"]["completion_tokens"] == 10
        # the close that follows "Connection: close" is a TLS one
        assert fp.read() == b""
    assert requests_total(s) == 4


def test_a_large_answer_to_a_slow_tls_reader_arrives_whole(mock, sluice,
                                                            pki):
    """An answer far bigger than the socket buffers, to a client that
    reads it only after a pause: the worker's writes wait for the socket
    (SSL_write's WANT_WRITE) and go on where they stopped."""
    s = start(sluice, mock, pki, workers=1)
    hdrs = "x-mock-chunks: 40000\r\n"
    with tls_socket(s, pki, rcvbuf=4096) as c:
        c.sendall(chat_raw(CHAT, close=True, extra=hdrs))
        time.sleep(1.0)
        got, fp = read_answers(c, 1)
        assert fp.read() == b""
    st, body = got[0]
    assert st == 200, body[:300]
    with socket.create_connection((HOST, s.port), timeout=20) as p:
        p.sendall(chat_raw(CHAT, close=True, extra=hdrs))
        plain, _ = read_answers(p, 1)
    text = json.loads(body)["choices"][0]["message"]["content"]
    assert len(text) > 200000
    assert text == json.loads(plain[0][1])["choices"][0]["message"][
        "content"]
    assert requests_total(s) == 2


def answer_text(data, stream):
    """The text of a chat answer, whole or streamed (ids and times differ
    from one answer to the next)."""
    if not stream:
        return json.loads(data)["choices"][0]["message"]["content"]
    text = []
    for ln in data.decode().split("\n"):
        if ln.startswith("data: {"):
            for ch in json.loads(ln[6:])["choices"]:
                text.append(ch["delta"].get("content") or "")
    assert data.rstrip().endswith(b"data: [DONE]"), data[-200:]
    return "".join(text)


def test_tls_below_1_2_is_refused_and_counted(mock, sluice, pki):
    s = start(sluice, mock, pki)
    rc, out = s_client(s.tls_port, "-tls1_1", "-cipher",
                       "DEFAULT:@SECLEVEL=0")
    assert rc != 0 and "protocol version" in out, out
    wait_for(lambda: failures(s) == {"protocol_version": 1}, 5,
             what="the failure counted")
    assert requests_total(s) == 0


def test_tls13_only_refuses_a_tls12_client(mock, sluice, pki):
    s = start(sluice, mock, pki, extra="ssl_protocols TLSv1.3;")
    rc, st, _, err = curl(s.tls_port, "--tlsv1.2", "--tls-max", "1.2",
                          ca=pki["ca"])
    assert rc != 0 and st == 0, err
    rc, st, _, err = curl(s.tls_port, "--tlsv1.3", ca=pki["ca"])
    assert rc == 0 and st == 200, err
    assert failures(s) == {"protocol_version": 1}
    assert requests_total(s) == 1


def test_no_shared_cipher_is_refused_and_counted(mock, sluice, pki):
    s = start(sluice, mock, pki,
              extra="ssl_ciphers ECDHE-RSA-AES256-GCM-SHA384;")
    rc, st, _, err = curl(s.tls_port, "--tls-max", "1.2", "--ciphers",
                          "ECDHE-RSA-AES128-GCM-SHA256", ca=pki["ca"])
    assert rc != 0 and st == 0, err
    rc, st, _, err = curl(s.tls_port, "--tls-max", "1.2", "--ciphers",
                          "ECDHE-RSA-AES256-GCM-SHA384", ca=pki["ca"])
    assert rc == 0 and st == 200, err
    assert failures(s) == {"no_shared_cipher": 1}


def test_alpn_offering_only_h2_is_refused(mock, sluice, pki):
    s = start(sluice, mock, pki)
    rc, out = s_client(s.tls_port, "-alpn", "h2", ca=pki["ca"])
    assert rc != 0 and "no application protocol" in out, out
    rc, out = s_client(s.tls_port, "-alpn", "h2,http/1.1", ca=pki["ca"])
    assert rc == 0 and "ALPN protocol: http/1.1" in out, out
    assert "HTTP/1.1 200" in out, out
    assert failures(s) == {"alpn": 1}


def test_a_client_that_distrusts_the_certificate_is_counted(mock, sluice,
                                                            pki):
    s = start(sluice, mock, pki)
    rc, st, _, err = curl(s.tls_port, ca=pki["other_ca"])
    assert rc == 60 and st == 0, err        # curl: peer certificate
    wait_for(lambda: failures(s) == {"client_alert": 1}, 5,
             what="the client's alert counted")
    assert requests_total(s) == 0


def test_plain_http_on_the_tls_port_gets_nginx_400(mock, sluice, pki):
    s = start(sluice, mock, pki)
    body = json.dumps(CHAT).encode()
    with socket.create_connection((HOST, s.tls_port), timeout=10) as c:
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        data = b""
        for _ in range(100):
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, html = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"Connection: close" in head
    assert (b"<center>The plain HTTP request was sent to HTTPS port"
            b"</center>") in html
    assert b"Content-Length: %d\r\n" % len(html) in head
    # curl's plain http:// to the TLS port: the same answer
    r = subprocess.run(["curl", "-sS", "--max-time", "10",
                        "http://%s:%d/v1/models" % (HOST, s.tls_port)],
                       capture_output=True, timeout=30)
    assert b"400 The plain HTTP request was sent to HTTPS port" in r.stdout
    assert failures(s) == {"http_request": 2}
    assert requests_total(s) == 0           # never a request, never a row
    assert mock.stats()["requests"] == 0


def test_the_handshake_is_bounded_by_client_header_timeout(mock, sluice,
                                                           pki):
    """A ClientHello trickled a byte at a time is cut at the deadline, not
    kept alive by each byte (an inactivity timeout would never fire)."""
    s = start(sluice, mock, pki, extra="client_header_timeout 1s;")
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40
    with socket.create_connection((HOST, s.tls_port), timeout=10) as c:
        closed = False
        for i in range(len(hello)):             # 0.25 s a byte: ~13 s
            try:
                c.sendall(hello[i:i + 1])
            except OSError:
                closed = True
                break
            c.settimeout(0.25)
            try:
                if c.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
    assert closed, "the server kept a trickling handshake open"
    assert failures(s) == {"timeout": 1}
    assert requests_total(s) == 0


def test_official_sdks_over_https_with_the_test_ca(sdk, sluice, mock, pki,
                                                  tmp_path):
    """The npm SDKs, unchanged but for an https:// base URL and the test
    CA in NODE_EXTRA_CA_CERTS (node verifies the certificate)."""
    s = start(sluice, mock, pki,
              upstreams={"oai": mock.url,
                         "anth": {"url": mock.url, "protocol": "anthropic"}},
              routes=[("claude-*", "anth"), ("*", "oai")],
              extra="keys_file %s;" % sdk_keys(tmp_path))
    url = "https://127.0.0.1:%d" % s.tls_port
    assert_sdk_results(run_sdk_check(sdk, url,
                                     {"NODE_EXTRA_CA_CERTS": pki["ca"]}))
    full, resumed = handshakes(s)
    assert full >= 1 and requests_total(s) == 8   # the calls it makes
    assert failures(s) == {}
    # without the CA node refuses the certificate: the check is real
    r = subprocess.run(["node", "sdk_check.mjs"], cwd=sdk,
                       env=dict(os.environ, SLUICE_URL=url, SLUICE_KEY="x"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "APIConnectionError" in r.stderr, r.stderr
    # node hangs up without an alert
    wait_for(lambda: failures(s) == {"closed": 1}, 5,
             what="node's refusal counted")
    assert requests_total(s) == 8


def test_tls_metrics_pass_promtool(mock, sluice, pki):
    s = start(sluice, mock, pki)
    curl(s.tls_port, ca=pki["ca"])
    curl(s.tls_port, ca=pki["other_ca"])
    st, _, body = request(s.admin_port, "GET", "/metrics")
    fams = check_exposition(body.decode())
    for fam in ("sluice_tls_handshakes_total",
                "sluice_tls_handshake_failures_total",
                "sluice_tls_certificate_expiry_timestamp_seconds",
                "sluice_tls_ticket_key_rotations_total"):
        assert fam in fams, fam
    promtool_check(body)


# ---------------------------------------------------------------------------
# Session tickets, shared by the workers
# ---------------------------------------------------------------------------

def tls_by_slot(s):
    """{worker pid: its slot's TLS counters}, for the current workers."""
    return {w["pid"]: w["tls"] for w in status(s)["workers"]
            if w["alive"]}


@pytest.mark.parametrize("proto", ["-tls1_3", "-tls1_2"])
def test_a_session_resumes_on_the_other_worker(mock, sluice, pki, tmp_path,
                                               proto):
    """A ticket one worker issued opens a session on another: the worker
    that did the full handshake is stopped (SIGSTOP), so the resumption
    can only be served by the other, whose counter shows it."""
    s = start(sluice, mock, pki, workers=2)
    sess = str(tmp_path / "sess.pem")
    rc, out = s_client(s.tls_port, proto, "-sess_out", sess, ca=pki["ca"])
    assert rc == 0 and "HTTP/1.1 200" in out and not reused(out), out
    before = tls_by_slot(s)
    full = [pid for pid, t in before.items() if t["full"] == 1]
    assert len(full) == 1, before
    first, other = full[0], [p for p in before if p != full[0]][0]
    os.kill(first, signal.SIGSTOP)
    try:
        rc, out = s_client(s.tls_port, proto, "-sess_in", sess,
                           ca=pki["ca"])
    finally:
        os.kill(first, signal.SIGCONT)
    assert rc == 0 and reused(out) and "HTTP/1.1 200" in out, out
    after = tls_by_slot(s)
    assert after[other]["resumed"] == 1 and after[other]["full"] == 0, after
    assert after[first] == before[first]
    assert handshakes(s) == (1, 1)


def test_ticket_keys_rotate_and_the_previous_key_still_resumes(mock, sluice,
                                                               pki,
                                                               tmp_path):
    """ssl_session_timeout 4s: a new key every 4 s.  A ticket issued just
    before a rotation resumes just after it, under the previous key."""
    s = start(sluice, mock, pki, extra="ssl_session_timeout 4s;")

    def rotations():
        return value(metrics(s), "sluice_tls_ticket_key_rotations_total")

    r0 = rotations()
    assert r0 >= 1                      # the key made at start
    wait_for(lambda: rotations() > r0, 10, interval=0.05,
             what="a key rotation")
    time.sleep(2.5)                     # 1.5 s before the next one
    sess = str(tmp_path / "sess.pem")
    rc, out = s_client(s.tls_port, "-tls1_3", "-sess_out", sess,
                       ca=pki["ca"])
    assert rc == 0 and not reused(out), out
    wait_for(lambda: rotations() > r0 + 1, 10, interval=0.05,
             what="the next rotation")
    rc, out = s_client(s.tls_port, "-tls1_3", "-sess_in", sess,
                       ca=pki["ca"])
    assert rc == 0 and reused(out), out
    # the keys are never written anywhere: nothing new in the spool dir
    assert not any(f.endswith(".pem") or "ticket" in f
                   for f in os.listdir(s.dir / "spool"))


def test_no_resumption_with_session_tickets_off(mock, sluice, pki, tmp_path):
    s = start(sluice, mock, pki, extra="ssl_session_tickets off;")
    sess = str(tmp_path / "sess.pem")
    for proto in ("-tls1_3", "-tls1_2"):
        rc, out = s_client(s.tls_port, proto, "-sess_out", sess,
                           ca=pki["ca"])
        assert rc == 0, out
        # no ticket, and no session id either: no worker keeps sessions
        assert not os.path.exists(sess), "%s: a session to resume" % proto
    assert handshakes(s) == (2, 0)


# ---------------------------------------------------------------------------
# Certificates on reload, and sluiced -t
# ---------------------------------------------------------------------------

def install(pair, d, name="live"):
    """Copy a certificate and its key where the config names them, as an
    ACME client renews them: new files moved over the old ones."""
    dst = (str(d / ("%s.pem" % name)), str(d / ("%s.key" % name)))
    for src, path in zip(pair, dst):
        tmp = path + ".new"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return dst


def not_after(pem):
    out = openssl("x509", "-in", pem, "-noout", "-enddate", cwd="/")
    return int(ssl.cert_time_to_seconds(out.strip().split("=", 1)[1]))


def served_cn(port, ca):
    """The CN of the certificate a new TLS connection is served with."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((HOST, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
            return dict(x[0] for x in c.getpeercert()["subject"])[
                "commonName"]


def tls_chat(ca, seen):
    """A RequestLoop sender: one chat over a new TLS connection (a full
    handshake each time), noting the certificate's CN in SEEN."""
    import http.client
    ctx = ssl.create_default_context(cafile=ca)

    def send(port):
        conn = http.client.HTTPSConnection(HOST, port, timeout=10,
                                           context=ctx)
        try:
            conn.connect()
            seen.add(dict(x[0] for x in conn.sock.getpeercert()[
                "subject"])["commonName"])
            conn.request("POST", CHAT_PATH, body=json.dumps(CHAT),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status == 200, (resp.status, data[:200])
        finally:
            conn.close()
    return send


def reloads(s, result):
    return value(metrics(s), "sluice_reloads_total", result=result)


def test_sighup_picks_up_a_renewed_certificate_with_no_failed_request(
        mock, sluice, pki, tmp_path):
    live = install(pki["server"], tmp_path)
    s = start(sluice, mock, pki, cert=live)
    expiry = "sluice_tls_certificate_expiry_timestamp_seconds"
    assert value(metrics(s), expiry) == not_after(pki["server"][0])
    sess = str(tmp_path / "sess.pem")
    rc, out = s_client(s.tls_port, "-sess_out", sess, ca=pki["ca"])
    assert rc == 0, out
    seen = set()
    with RequestLoop(s.tls_port, threads=3, send=tls_chat(pki["ca"],
                                                          seen)) as loop:
        wait_for(lambda: loop.ok >= 20, 15, what="requests before reload")
        install(pki["renewed"], tmp_path)
        s.signal(signal.SIGHUP)
        wait_for(lambda: "renewed" in seen, 15,
                 what="the renewed certificate served")
        ok = loop.ok
        wait_for(lambda: loop.ok >= ok + 20, 15, what="requests after it")
    assert loop.failures == [], "%d ok, %d failed: %r" % (
        loop.ok, len(loop.failures), loop.failures[:5])
    assert seen == {"server", "renewed"}
    assert served_cn(s.tls_port, pki["ca"]) == "renewed"
    assert value(metrics(s), expiry) == not_after(pki["renewed"][0])
    assert reloads(s, "ok") == 1
    # the ticket keys outlive the reload: the old session resumes
    rc, out = s_client(s.tls_port, "-sess_in", sess, ca=pki["ca"])
    assert rc == 0 and reused(out), out


def test_a_bad_key_on_reload_is_logged_and_the_old_certificate_serves(
        mock, sluice, pki, tmp_path):
    live = install(pki["server"], tmp_path)
    s = start(sluice, mock, pki, cert=live)
    # a renewal that went half-way: the new certificate, the old key
    shutil.copyfile(pki["renewed"][0], live[0])
    s.signal(signal.SIGHUP)
    wait_for(lambda: reloads(s, "failed") == 1, 10, what="a failed reload")
    log = s.log_text()
    assert ('ssl_certificate_key "%s" does not match ssl_certificate "%s"'
            % (live[1], live[0])) in log, s.log_tail()
    assert "keeping the running configuration and certificate" in log
    assert served_cn(s.tls_port, pki["ca"]) == "server"
    rc, st, _, err = curl(s.tls_port, ca=pki["ca"])
    assert rc == 0 and st == 200, err
    # a key that is no key at all, named in the message with the reason
    with open(live[1], "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nnot base64\n"
                "-----END PRIVATE KEY-----\n")
    s.signal(signal.SIGHUP)
    wait_for(lambda: reloads(s, "failed") == 2, 10, what="a failed reload")
    assert 'ssl_certificate_key "%s": ' % live[1] in s.log_text()
    assert served_cn(s.tls_port, pki["ca"]) == "server"
    # the renewal finished: the next reload takes it
    install(pki["renewed"], tmp_path)
    s.signal(signal.SIGHUP)
    wait_for(lambda: reloads(s, "ok") == 1, 10, what="a reload")
    wait_for(lambda: served_cn(s.tls_port, pki["ca"]) == "renewed", 10,
             what="the renewed certificate served")


def sluiced_t(conf):
    r = subprocess.run([SLUICED, "-t", "-c", conf], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stderr


def test_sluiced_t_checks_the_pair_and_says_when_it_expires(mock, sluice,
                                                            pki, tmp_path):
    live = install(pki["server"], tmp_path)
    s = start(sluice, mock, pki, cert=live, start=False)
    rc, err = sluiced_t(s.conf_path)
    assert rc == 0, err
    assert ('ssl_certificate "%s" (CN=server) expires ' % live[0]) in err
    assert ", in 1 day\n" in err or ", in 2 days\n" in err, err
    assert "test is successful" in err
    # the key of another certificate
    shutil.copyfile(pki["renewed"][1], live[1])
    rc, err = sluiced_t(s.conf_path)
    assert rc == 1, err
    assert ('ssl_certificate_key "%s" does not match ssl_certificate "%s"'
            % (live[1], live[0])) in err
    assert "test failed" in err
    # a certificate file with no certificate in it: file and reason
    install(pki["server"], tmp_path)
    with open(live[0], "w") as f:
        f.write("hello\n")
    rc, err = sluiced_t(s.conf_path)
    assert rc == 1 and 'ssl_certificate "%s": no start line' % live[0] \
        in err, err
    # a key readable by every user is refused before it is read
    install(pki["server"], tmp_path)
    os.chmod(live[1], 0o644)
    rc, err = sluiced_t(s.conf_path)
    assert rc == 1 and "is readable by every user (mode 0644)" in err, err


# ---------------------------------------------------------------------------
# Client certificates as an identity
# ---------------------------------------------------------------------------

BOB_SECRET = "sk-sluice-bob-0123456789abcdef"
CAROL_SECRET = "sk-sluice-carol-0123456789abcdef"


def cert_keys(pki, tmp_path):
    """alice: her certificate alone (by subject); bob: his secret and his
    certificate (by fingerprint, as openssl prints it); carol: a secret.
    alice and bob may use gpt-test only, so a 403 for another model shows
    which key a request was taken for."""
    subject = openssl("x509", "-in", pki["alice"][0], "-noout", "-subject",
                      "-nameopt", "RFC2253", cwd="/").strip()
    assert subject == "subject=CN=alice,O=Example", subject
    fp = openssl("x509", "-in", pki["bob"][0], "-noout", "-fingerprint",
                 "-sha256", cwd="/").strip().split("=", 1)[1]
    path = tmp_path / "keys.conf"
    path.write_text(
        'key alice {\n\tclient_cert subject "%s";\n\tmodels gpt-test;\n}\n'
        "key bob {\n\thash sha256:%s;\n\tclient_cert sha256:%s;\n"
        "\tmodels gpt-test;\n}\n"
        "key carol {\n\thash sha256:%s;\n}\n" % (
            subject.split("=", 1)[1],
            hashlib.sha256(BOB_SECRET.encode()).hexdigest(), fp,
            hashlib.sha256(CAROL_SECRET.encode()).hexdigest()))
    path.chmod(0o600)
    return str(path)


def mtls(sluice, mock, pki, tmp_path, verify="optional"):
    return start(sluice, mock, pki, extra="ssl_client_ca %s;\n"
                 "ssl_verify_client %s;\nkeys_file %s;" % (
                     pki["ca"], verify, cert_keys(pki, tmp_path)))


def as_client(who, pki):
    return ["--cert", pki[who][0], "--key", pki[who][1]]


def bearer(secret):
    return ("Authorization: Bearer %s" % secret,)


def error_code(body):
    return json.loads(body)["error"]["code"]


def test_a_client_certificate_alone_authenticates_its_key(mock, sluice, pki,
                                                          tmp_path):
    s = mtls(sluice, mock, pki, tmp_path)
    rc, st, body, err = curl(s.tls_port, *as_client("alice", pki),
                             ca=pki["ca"])
    assert rc == 0 and st == 200, (body, err)
    # it is alice's key: her models only
    rc, st, body, _ = curl(s.tls_port, *as_client("alice", pki),
                           ca=pki["ca"], body=dict(CHAT, model="other"))
    assert st == 403 and error_code(body) == "model_not_allowed", body
    # an SDK's placeholder secret does not get in the way of the cert
    rc, st, body, _ = curl(s.tls_port, *as_client("alice", pki),
                           ca=pki["ca"], headers=bearer("sk-placeholder"))
    assert st == 200, body
    # no certificate, no secret: nobody
    rc, st, body, _ = curl(s.tls_port, ca=pki["ca"])
    assert st == 401 and error_code(body) == "missing_api_key", body
    # carol's secret works with or without a certificate
    for args in ([], as_client("bob", pki)):
        rc, st, body, _ = curl(s.tls_port, *args, ca=pki["ca"],
                               headers=bearer(CAROL_SECRET))
        assert st == 200, body
    assert mock.stats()["requests"] == 4


def test_a_key_with_a_certificate_and_a_secret_needs_both(mock, sluice, pki,
                                                          tmp_path):
    s = mtls(sluice, mock, pki, tmp_path)
    rc, st, body, _ = curl(s.tls_port, *as_client("bob", pki), ca=pki["ca"],
                           headers=bearer(BOB_SECRET))
    assert st == 200, body
    for args in ([], as_client("alice", pki)):
        rc, st, body, _ = curl(s.tls_port, *args, ca=pki["ca"],
                               headers=bearer(BOB_SECRET))
        assert st == 401 and error_code(body) == "client_cert_required", \
            body
    # his certificate alone is not enough for a key that has a secret
    rc, st, body, _ = curl(s.tls_port, *as_client("bob", pki), ca=pki["ca"])
    assert st == 401 and error_code(body) == "missing_api_key", body
    # and over plain HTTP the secret alone is refused the same way
    st, _, body = request(s.port, "POST", CHAT_PATH, CHAT,
                          headers=dict([bearer(BOB_SECRET)[0].split(": ")]))
    assert st == 401 and error_code(body) == "client_cert_required", body
    assert mock.stats()["requests"] == 1


def test_a_certificate_from_another_ca_fails_the_handshake(mock, sluice, pki,
                                                           tmp_path):
    """mallory's certificate has alice's subject but another issuer."""
    s = mtls(sluice, mock, pki, tmp_path)
    rc, st, _, err = curl(s.tls_port, *as_client("mallory", pki),
                          ca=pki["ca"])
    assert rc != 0 and st == 0, err
    wait_for(lambda: failures(s) == {"bad_certificate": 1}, 5,
             what="the failure counted")
    assert requests_total(s) == 0 and mock.stats()["requests"] == 0


@pytest.mark.parametrize("proto", ["--tlsv1.3", "--tls-max"])
def test_verify_client_on_refuses_a_client_without_certificate(
        mock, sluice, pki, tmp_path, proto):
    s = mtls(sluice, mock, pki, tmp_path, verify="on")
    args = [proto] if proto == "--tlsv1.3" else ["--tls-max", "1.2"]
    rc, st, _, err = curl(s.tls_port, *args, ca=pki["ca"],
                          headers=bearer(CAROL_SECRET))
    assert rc != 0 and st == 0, err
    wait_for(lambda: failures(s) == {"bad_certificate": 1}, 5,
             what="the failure counted")
    rc, st, body, err = curl(s.tls_port, *args, *as_client("alice", pki),
                             ca=pki["ca"])
    assert rc == 0 and st == 200, (body, err)
    assert requests_total(s) == 1


def test_a_resumed_session_keeps_its_client_certificate(mock, sluice, pki,
                                                        tmp_path):
    s = mtls(sluice, mock, pki, tmp_path)
    sess = str(tmp_path / "sess.pem")
    rc, out = s_client(s.tls_port, "-cert", pki["alice"][0], "-key",
                       pki["alice"][1], "-sess_out", sess, ca=pki["ca"])
    assert rc == 0 and "HTTP/1.1 200" in out, out
    rc, out = s_client(s.tls_port, "-sess_in", sess, ca=pki["ca"])
    assert rc == 0 and reused(out) and "HTTP/1.1 200" in out, out
    # without the session, and without the certificate: refused
    rc, out = s_client(s.tls_port, ca=pki["ca"])
    assert rc == 0 and "HTTP/1.1 401" in out, out


def test_a_session_verified_under_one_client_ca_never_resumes_under_another(
        mock, sluice, pki, tmp_path):
    s = mtls(sluice, mock, pki, tmp_path)
    sess = str(tmp_path / "sess.pem")
    rc, out = s_client(s.tls_port, "-cert", pki["alice"][0], "-key",
                       pki["alice"][1], "-sess_out", sess, ca=pki["ca"])
    assert rc == 0 and "HTTP/1.1 200" in out, out
    with open(s.conf_path) as f:
        conf = f.read()
    with open(s.conf_path, "w") as f:
        f.write(conf.replace("ssl_client_ca %s;" % pki["ca"],
                             "ssl_client_ca %s;" % pki["other_ca"]))
    s.signal(signal.SIGHUP)
    wait_for(lambda: reloads(s, "ok") == 1, 10, what="the reload")
    rc, out = s_client(s.tls_port, "-sess_in", sess, ca=pki["ca"])
    assert not reused(out), out
    assert "HTTP/1.1 200" not in out, out
