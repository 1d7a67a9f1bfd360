"""Test certificates, made with the openssl CLI in a temporary directory:
a CA, and certificates it signs for servers and for clients.  Shared by
the upstream TLS tests, the client TLS tests and bench/tls_bench.py."""

import subprocess


def openssl(*args, cwd, check=True):
    """Run the openssl CLI in cwd; its combined output."""
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = r.stdout.decode(errors="replace")
    if check:
        assert r.returncode == 0, out
    return out


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=sluice test %s" % name,
            "-keyout", "%s.key" % name, "-out", "%s.pem" % name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return str(d / ("%s.pem" % name))


def make_cert(d, ca, name, san=None, usage="serverAuth", days=2,
              subject=None, key="rsa:2048"):
    """A certificate for NAME signed by CA (a make_ca name): (pem, key).
    usage: serverAuth or clientAuth; key: an openssl -newkey argument, or
    "ec" for ECDSA P-256."""
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
              if key == "ec" else ["-newkey", key])
    openssl("req", *newkey, "-nodes", "-subj",
            subject or "/CN=%s" % name, "-keyout", "%s.key" % name,
            "-out", "%s.csr" % name, cwd=d)
    (d / ("%s.key" % name)).chmod(0o600)
    ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage
    if san:
        ext = "subjectAltName=%s\n" % san + ext
    (d / ("%s.ext" % name)).write_text(ext)
    openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.pem" % ca,
            "-CAkey", "%s.key" % ca, "-CAcreateserial", "-days", str(days),
            "-extfile", "%s.ext" % name, "-out", "%s.pem" % name, cwd=d)
    return str(d / ("%s.pem" % name)), str(d / ("%s.key" % name))


def make_server_cert(d, ca, name, san):
    return make_cert(d, ca, name, san)
