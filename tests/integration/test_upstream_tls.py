"""HTTPS upstreams: certificate and host name verification with a private
CA given by ca_file.  Certificates are made with the openssl CLI."""

import json
import subprocess

import pytest

from conftest import post

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode(errors="replace")


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=sluice test %s" % name,
            "-keyout", "%s.key" % name, "-out", "%s.pem" % name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return str(d / ("%s.pem" % name))


def make_server_cert(d, ca, name, san):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj",
            "/CN=%s" % name, "-keyout", "%s.key" % name,
            "-out", "%s.csr" % name, cwd=d)
    (d / ("%s.ext" % name)).write_text(
        "subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n" % san)
    openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.pem" % ca,
            "-CAkey", "%s.key" % ca, "-CAcreateserial", "-days", "2",
            "-extfile", "%s.ext" % name, "-out", "%s.pem" % name, cwd=d)
    return str(d / ("%s.pem" % name)), str(d / ("%s.key" % name))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "otherca")
    good = make_server_cert(d, "ca", "server",
                            "IP:127.0.0.1,DNS:localhost")
    wrong_name = make_server_cert(d, "ca", "elsewhere",
                                  "DNS:elsewhere.invalid")
    return {"ca": ca, "other_ca": other_ca, "good": good,
            "wrong_name": wrong_name}


def tls_mock(mock_factory, cert):
    return mock_factory("--cert", cert[0], "--key", cert[1])


def assert_openai_error(st, body, want):
    assert st == want, body
    err = json.loads(body)["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert "type" in err, err


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_https_upstream_with_private_ca(mock_factory, sluice, pki, host):
    m = tls_mock(mock_factory, pki["good"])
    s = sluice(upstreams={"tls": {
        "url": "https://%s:%d" % (host, m.port), "ca_file": pki["ca"]}})
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert st == 200, body
    assert json.loads(body)["object"] == "chat.completion"
    assert m.stats()["requests"] == 1


def test_https_upstream_signed_by_another_ca_is_refused(mock_factory, sluice,
                                                        pki):
    m = tls_mock(mock_factory, pki["good"])
    s = sluice(upstreams={"tls": {
        "url": "https://localhost:%d" % m.port, "ca_file": pki["other_ca"]}})
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert_openai_error(st, body, 502)
    assert m.stats()["requests"] == 0


def test_https_upstream_without_ca_file_uses_system_store(mock_factory,
                                                          sluice, pki):
    m = tls_mock(mock_factory, pki["good"])
    s = sluice(upstreams={"tls": "https://localhost:%d" % m.port})
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert_openai_error(st, body, 502)
    assert m.stats()["requests"] == 0


def test_https_upstream_with_wrong_host_name_is_refused(mock_factory, sluice,
                                                        pki):
    """The CA is trusted but the certificate names another host."""
    m = tls_mock(mock_factory, pki["wrong_name"])
    s = sluice(upstreams={"tls": {
        "url": "https://localhost:%d" % m.port, "ca_file": pki["ca"]}})
    st, _, body = post(s.port, "/v1/chat/completions", CHAT)
    assert_openai_error(st, body, 502)
    assert m.stats()["requests"] == 0
