"""HTTPS upstreams: certificate and host name verification with a private
CA given by ca_file.  Certificates are made with the openssl CLI."""

import json

import pytest

from conftest import post
from pki import make_ca, make_server_cert

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}


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
