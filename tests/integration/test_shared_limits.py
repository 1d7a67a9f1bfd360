"""Limits shared across hosts (issue 18, items 2 to 4): three sluiced
instances on one machine (their own ports, spool dirs, pid files and
host_name), one PostgreSQL, `limits shared`.  Each collector leases slices
of every limited key's limits from PostgreSQL (sql/lease.c) and the
workers spend them from shared memory.

What the tests prove, as the README's scaling section says it:
- a budget spent through the three hosts is never exceeded, and is used
  up to less than one request's worst case per host;
- rpm 60 under load spread over the three admits exactly 60 in a UTC
  minute (the documented bound, a slice and a half per host that dies
  without reporting, is 0 here: no host dies before it reported);
- one instance SIGKILLed while holding a slice of a key it never used
  gives that slice back when its lease expires: the two others then admit
  the whole 60 in the minute;
- PostgreSQL stopped: each host falls back to its share, the limit over
  the three hosts PostgreSQL saw, says so once in its log and on /metrics,
  and leases again once PostgreSQL is back.

Every load loop is bounded by a count and a deadline.
"""

import os
import signal
import threading
import time

import pytest

from conftest import free_port, post, request, wait_for
from test_holds import IN_PRICE, OUT_PRICE, body_of, held
from test_keys_limits import (CHAT, Keys, db, gateway,  # noqa: F401
                              openai_error)

LEASED = "limits: leased from PostgreSQL"


def shared(host, lease="5%", ttl="10s", admin=None):
    extra = ("limits shared;\nhost_name %s;\nlimit_lease %s;\n"
             "limit_lease_ttl %s;\n" % (host, lease, ttl))
    if admin is not None:
        extra += "admin_listen 127.0.0.1:%d;\n" % admin
    return extra


def three(gateway, keys, db, **kw):
    """Three instances sharing DB's limits, each leasing already."""
    hosts = [gateway(keys, db=db, extra=shared("host-%d" % i, **kw))
             for i in range(3)]
    for s in hosts:
        wait_for(lambda: LEASED in s.log_text(), 15,
                 what="the collector's first lease")
    return hosts


def ask(port, secret, completion=10):
    h = {"Authorization": "Bearer " + secret,
         "x-mock-prompt-tokens": "5",
         "x-mock-completion-tokens": str(completion)}
    try:
        st, _, body = post(port, CHAT, body_of(20), headers=h, timeout=10)
    except OSError:
        return None, b""
    return st, body


def load(targets, until, pause=0.05, cap=5000):
    """One thread per (port, secret) in TARGETS asking until the wall
    clock reaches UNTIL: {(port, secret): [(time, status)]}."""
    got = {t: [] for t in targets}

    def run(t):
        for _ in range(cap):
            now = time.time()
            if now >= until:
                return
            st, _ = ask(*t)
            got[t].append((now, st))
            time.sleep(pause)

    ts = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in ts:
        t.start()
    for t in ts:
        t.join(until - time.time() + 30)
    return got


def admitted(db, key, lo, hi):
    """200s of KEY with ts_start in [LO, HI) (epoch seconds)."""
    return db.query(
        "SELECT count(*) FROM usage_events WHERE key_name = %s AND "
        "status = 200 AND ts_start >= to_timestamp(%s) AND "
        "ts_start < to_timestamp(%s)", (key, lo, hi))[0][0]


def rows_of(db, key):
    return db.query("SELECT count(*) FROM usage_events WHERE key_name = %s",
                    (key,))[0][0]


def test_a_budget_shared_by_three_hosts_is_never_exceeded(gateway, mock,
                                                          tmp_path, db):
    _, worst = held(20)
    actual = 5 * IN_PRICE + 10 * OUT_PRICE
    budget = 30 * actual
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("shared", budget="%d.%06d per day" % divmod(budget, 10**6))
    hosts = three(gateway, keys, db)
    sent = 0
    # round-robin over the hosts until each has been refused 5 times in
    # a row (a refused host may get a slice more a tick later)
    refused = {s.port: 0 for s in hosts}
    for _ in range(300):
        if min(refused.values()) >= 5:
            break
        for s in hosts:
            st, body = ask(s.port, k)
            sent += 1
            if st == 200:
                refused[s.port] = 0
            else:
                openai_error(st, body, 429, "insufficient_quota",
                             "budget_exceeded")
                refused[s.port] += 1
                time.sleep(0.05)
    assert min(refused.values()) >= 5
    wait_for(lambda: rows_of(db, "shared") == sent, 15,
             what="every row written")
    spend, n = db.query(
        "SELECT coalesce(sum(cost_micro_usd), 0), count(*) FROM "
        "usage_events WHERE key_name = 'shared' AND status = 200")[0]
    # never over; and used up but for less than a worst case per host
    assert spend <= budget, (spend, budget)
    assert spend > budget - 3 * worst, (spend, budget, worst)
    assert spend == n * actual
    # each host took part
    per_host = db.query(
        "SELECT host, used FROM sluice_leases WHERE key_name = 'shared' "
        "AND kind = 'budget' ORDER BY host")
    assert [h for h, _ in per_host] == ["host-0", "host-1", "host-2"]
    assert sum(u for _, u in per_host) == spend
