"""Connections over all workers: a worker takes a new connection only when
it holds fewer than the others (or, all even, accepted least recently), so
keep-alive clients end up shared evenly whatever order the kernel wakes
the workers in (shm/spread.c)."""

import contextlib
import http.client
import json
import os
import signal

from conftest import HOST, wait_for
from test_metrics import metrics, start, value

CHAT = {"model": "gpt-test",
        "messages": [{"role": "user", "content": "hello"}]}
BODY = json.dumps(CHAT).encode()


def per_worker(s, family, workers):
    f = metrics(s)
    return [value(f, family, worker=str(i)) for i in range(workers)]


def started(sluice, mock, workers):
    s = start(sluice, mock, workers=workers)
    # a worker counts once its line says it listens
    wait_for(lambda: per_worker(s, "sluice_worker_listening", workers) ==
             [1] * workers, 10, what="every worker listening")
    return s


def ask(conn):
    conn.request("POST", "/v1/chat/completions", body=BODY,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, data
    assert resp.getheader("connection", "").lower() != "close"


@contextlib.contextmanager
def served_one_by_one(s, n):
    """N keep-alive connections, each served once before the next opens
    (so accepted and counted): the count decides, not who wakes first."""
    conns = []
    try:
        for _ in range(n):
            c = http.client.HTTPConnection(HOST, s.port, timeout=10)
            ask(c)
            conns.append(c)
        yield conns
    finally:
        for c in conns:
            c.close()


def test_keepalive_clients_opened_one_after_another_share_the_workers(
        mock, sluice):
    s = started(sluice, mock, 2)
    with served_one_by_one(s, 8) as conns:
        assert per_worker(s, "sluice_worker_connections", 2) == [4, 4]
        # and each keeps its worker: 8 more requests, 4 on each
        for c in conns:
            ask(c)
        assert per_worker(s, "sluice_ring_pushes_total", 2) == [8, 8]
    wait_for(lambda: per_worker(s, "sluice_worker_connections", 2) ==
             [0, 0], 10, what="connections closed")


def test_a_queued_burst_is_shared_not_taken_by_the_first_awake(mock, sluice):
    s = started(sluice, mock, 2)
    pids = s.worker_pids()
    assert len(pids) == 2, pids
    conns = []
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        # with every worker stopped the eight connections and their
        # requests wait in the listening socket's backlog; whichever
        # worker runs first would once have accepted all of them
        for _ in range(8):
            c = http.client.HTTPConnection(HOST, s.port, timeout=10)
            c.connect()
            c.request("POST", "/v1/chat/completions", body=BODY,
                      headers={"Content-Type": "application/json"})
            conns.append(c)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    try:
        for c in conns:
            resp = c.getresponse()
            assert resp.status == 200, resp.read()
            resp.read()
        assert per_worker(s, "sluice_worker_connections", 2) == [4, 4]
        assert per_worker(s, "sluice_ring_pushes_total", 2) == [4, 4]
    finally:
        for c in conns:
            c.close()


def test_a_single_worker_takes_every_connection(mock, sluice):
    s = started(sluice, mock, 1)
    with served_one_by_one(s, 5):
        assert per_worker(s, "sluice_worker_connections", 1) == [5]


def test_new_connections_go_to_the_new_generation_after_a_reload(
        mock, sluice):
    s = started(sluice, mock, 2)
    s.signal(signal.SIGHUP)
    # the new generation runs in the two other slots; the old one stops
    # accepting at once (what its backlog held stays for the new one)
    # (the reload forks the new generation into the first free slots, 2
    # and 3; until slot 0 has stopped and slot 3 started, the sorted
    # flags can read [0, 0, 1, 1] with an old worker still among them)
    wait_for(lambda: per_worker(s, "sluice_worker_listening", 4) ==
             [0, 0, 1, 1], 10, what="only the new generation listening")
    listening = per_worker(s, "sluice_worker_listening", 4)
    new_slots = [i for i in range(4) if listening[i] == 1]
    with served_one_by_one(s, 4):
        held = per_worker(s, "sluice_worker_connections", 4)
        assert [held[i] for i in new_slots] == [2, 2], held
