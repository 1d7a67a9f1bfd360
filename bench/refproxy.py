"""refproxy.py - the configurations of the two reference proxies that
bench/run.py measures sluice against, both tuned as their users would for
a keep-alive reverse proxy on one host, and neither doing anything sluice
does on top (keys, routing by model, metering):

    nginx    worker_processes N, proxy_pass to an upstream block with a
             keepalive pool, nothing buffered to disk
    haproxy  nbthread N, http-reuse always (every idle server connection
             may carry any client's next request), keep-alive both sides,
             http-no-delay (SSE events leave as they come)

N is sluice's worker count.  Writing the files is all this module does;
run.py starts, pins and stops the processes.
"""

import os

# what both nginx configurations share: the process, the temp directories,
# bodies kept in memory (sluice keeps them in memory too; the default 16k
# would write the 100 KB bodies to a temp file), long keep-alive
NGINX_HEAD = """\
worker_processes %(w)d;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
daemon off;
master_process on;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    client_body_buffer_size 256k;
    client_max_body_size 16m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
"""

NGINX = NGINX_HEAD + """\
    upstream mock {
        server %(h)s:%(m)d;
        keepalive 256;
        keepalive_requests 1000000;
    }
%(tls)s%(servers)s}
"""

NGINX_SERVER = """\
    server {
%(listen)s        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
"""

# bench/tls_bench.py: the same certificate as sluice's; no session cache,
# so that resumption is by tickets only, as sluice's is.
NGINX_TLS = """\
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate %(c)s;
    ssl_certificate_key %(k)s;
    ssl_session_cache off;
"""

# No log line at all (nginx's access_log is off too).  maxconn matches
# nginx's worker_connections; the timeouts are nginx's keep-alive ones.
# http-no-delay: without it haproxy sends with MSG_MORE and holds a small
# SSE event back until more data comes (the first of five events 1 ms
# apart reached the client after 24 ms); an operator proxying streamed
# LLM answers sets it, as nginx's proxy_buffering off.
HAPROXY = """\
global
    nbthread %(w)d
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option http-no-delay
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 300s
    timeout http-keep-alive 75s
    timeout http-request 10s

frontend bench
    bind %(h)s:%(p)d
    default_backend mock

backend mock
    http-reuse always
    server mock %(h)s:%(m)d
"""


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def _temp_dirs(d):
    """The temp directories nginx insists on, under D."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)


def nginx_conf(d, workers, host, mock_port, port, tls=None):
    """Write DIR/nginx.conf (and the temp dirs nginx insists on): plain
    HTTP on PORT.  With TLS = (cert, key, tls_port, new_port), HTTPS on
    tls_port too, and on new_port HTTPS without tickets (every connection
    a full handshake)."""
    _temp_dirs(d)
    listen = "        listen %s:%d;\n" % (host, port)
    servers, extra = "", ""
    if tls is not None:
        cert, key, tls_port, new_port = tls
        extra = NGINX_TLS % {"c": cert, "k": key}
        listen += "        listen %s:%d ssl;\n" % (host, tls_port)
        servers = NGINX_SERVER % {"listen": (
            "        listen %s:%d ssl;\n        ssl_session_tickets off;\n"
            % (host, new_port))}
    servers = NGINX_SERVER % {"listen": listen} + servers
    return _write(os.path.join(d, "nginx.conf"), NGINX % {
        "w": workers, "d": d, "h": host, "m": mock_port, "tls": extra,
        "servers": servers})


# bench/run.py's cache cells: the floor of answering from memory, nginx
# sending a fixed answer with `return` (the request body read and dropped)
NGINX_STATIC = NGINX_HEAD + """\
    server {
        listen %(h)s:%(p)d;
        location / {
            default_type application/json;
            return 200 '%(body)s';
        }
    }
}
"""


def nginx_static_conf(d, workers, host, port, body):
    """Write DIR/nginx.conf: every request on PORT answered 200 with
    BODY (a str) from nginx's memory."""
    _temp_dirs(d)
    # in a quoted nginx string \\ and \' are the escapes; $ would name a
    # variable and has none
    if "$" in body:
        raise ValueError("an answer with $ cannot be served by return")
    body = body.replace("\\", "\\\\").replace("'", "\\'")
    return _write(os.path.join(d, "nginx.conf"), NGINX_STATIC % {
        "w": workers, "d": d, "h": host, "p": port, "body": body})


def haproxy_conf(d, workers, host, mock_port, port):
    os.makedirs(d, exist_ok=True)
    return _write(os.path.join(d, "haproxy.cfg"), HAPROXY % {
        "w": workers, "h": host, "m": mock_port, "p": port})
