"""upstream_threads.py - what the raw-socket test upstreams share: ending
a listening socket, its acceptor thread and every connection thread,
bounded in time.  early_upstream.py and strict_upstream.py use it."""

import socket
import time


def close_quietly(s):
    try:
        s.close()
    except OSError:
        pass


def stop_server(srv, timeout):
    """Stop SRV: set its _stop event, shut every socket in srv._socks so
    the threads in srv._threads see it, join them and srv._acceptor
    within TIMEOUT seconds, then close the sockets and srv.lsock."""
    srv._stop.set()
    with srv.lock:
        socks = list(srv._socks)
        threads = list(srv._threads)
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    srv._acceptor.join(max(0.0, deadline - time.monotonic()))
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for s in socks:
        close_quietly(s)
    close_quietly(srv.lsock)
