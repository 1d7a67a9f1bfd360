"""No silent $0, and no unmetered answer when metering is told to refuse.

A model that no price line matches is recorded with a NULL cost (never
0), warned about once per worker process, counted on /metrics and listed
by `sluicectl prices check`.  Under `metering_full reject` a worker whose
event lane is full answers 503 with Retry-After before anything goes
upstream; under `metering_full serve` it serves and counts the drop.

The lane is filled by stopping the collector (SIGSTOP) and sending
exactly ring_slots requests on one worker: every figure below follows
from that count.
"""

import http.client
import json
import os
import signal
import subprocess

import pytest

from conftest import BUILD, HOST, UsageDb, free_port, post, request, wait_for
from test_metrics import check_exposition, value

SLUICECTL = os.path.join(BUILD, "sluicectl")
MSGS = [{"role": "user", "content": "hello"}]
TOKENS = {"x-mock-prompt-tokens": "1234",
          "x-mock-completion-tokens": "56",
          "x-mock-cached-tokens": "78"}
PRICE = "price gpt-4o-mini input 0.15 output 0.60 cached 0.075;\n"
# (1234 - 78) * 0.15 + 78 * 0.075 + 56 * 0.60 = 212.85 micro-USD
PRICED_COST = 213
SLOTS = 1024    # the smallest ring_slots


class Db(UsageDb):

    def rows(self):
        return self.query(
            "SELECT model, status, prompt_tokens, completion_tokens, "
            "cached_tokens, cost_micro_usd, usage_source FROM usage_events "
            "ORDER BY model, ts_start")


@pytest.fixture
def db(make_db):
    return make_db(Db)


def metrics(port):
    st, _, body = request(port, "GET", "/metrics")
    assert st == 200, (st, body)
    return check_exposition(body.decode())


def ctl(conf, *args):
    r = subprocess.run([SLUICECTL, "prices", "check", "-c", str(conf)] +
                       list(args), capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout, r.stderr


def chat(port, model, headers=None):
    st, hdrs, body = post(port, "/v1/chat/completions",
                          {"model": model, "messages": MSGS},
                          headers=headers)
    return st, hdrs, json.loads(body)


# ---------------------------------------------------------------------------
# Item 3: no silent $0
# ---------------------------------------------------------------------------

def test_unpriced_model_costs_null_warns_once_and_is_counted(db, mock,
                                                             sluice):
    admin = free_port()
    s = sluice(upstreams={"mock": mock.url}, workers=1,
               extra='database "%s";\nadmin_listen %s:%d;\n%s' % (
                   db.conninfo(), HOST, admin, PRICE))
    for _ in range(3):
        st, _, _ = chat(s.port, "gpt-unpriced", TOKENS)
        assert st == 200
    st, _, _ = chat(s.port, "gpt-4o-mini", TOKENS)
    assert st == 200
    wait_for(lambda: db.count() >= 4, 15, what="4 usage rows")
    assert db.rows() == [
        ("gpt-4o-mini", 200, 1234, 56, 78, PRICED_COST, "upstream")] + [
        ("gpt-unpriced", 200, 1234, 56, 78, None, "upstream")] * 3
    log = s.log_text()
    assert log.count("model gpt-unpriced has no price") == 1, log
    assert "model gpt-4o-mini has no price" not in log
    fam = metrics(admin)
    assert value(fam, "sluice_requests_unpriced_total") == 3
    assert value(fam, "sluice_metering_full_rejections_total") == 0

    # what the operator's check says about the same rows
    rc, out, err = ctl(s.conf_path)
    assert (rc, err) == (1, ""), out + err
    assert out == ("%-40s %12s\n%-40s %12d\n"
                   "1 model without a price, 3 requests since 30 days ago\n"
                   % ("MODEL", "REQUESTS", "gpt-unpriced", 3))


def test_unpriced_warnings_are_bounded_per_process(mock, sluice):
    """A client cycling through made-up names gets 64 warnings, not one
    per name; every request is still counted."""
    admin = free_port()
    s = sluice(upstreams={"mock": mock.url}, workers=1,
               extra="admin_listen %s:%d;\n%s" % (HOST, admin, PRICE))
    for i in range(70):
        st, _, _ = chat(s.port, "made-up-%d" % i, TOKENS)
        assert st == 200
        st, _, _ = chat(s.port, "made-up-%d" % i, TOKENS)
        assert st == 200
    assert value(metrics(admin), "sluice_requests_unpriced_total") == 140
    log = s.log_text()
    assert log.count(" has no price: its cost is NULL") == 64, log
    assert log.count("model made-up-63 has no price: its cost is NULL; "
                     "64 models warned about, further ones are only "
                     "counted") == 1
    assert "model made-up-64 has no price" not in log


def test_prices_check_lists_unpriced_models_over_the_period(make_db,
                                                            tmp_path):
    db = make_db(Db)
    conf = tmp_path / "sluice.conf"
    conf.write_text('listen 127.0.0.1:%d;\ndatabase "%s";\n'
                    "upstream u { url http://127.0.0.1:9; }\nroute * u;\n"
                    "alias fast gpt-4o-mini;\n%s"
                    % (free_port(), db.conninfo(), PRICE))
    r = subprocess.run([SLUICECTL, "-c", str(conf), "db", "init"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rc, out, err = ctl(conf)
    assert (rc, out, err) == (
        0, "every model seen since 30 days ago has a price\n", "")

    def add(model, n, age, source="upstream"):
        # rows of a month the collector has not made a partition for
        # need one first, as sluice.conf(5) tells an operator
        db.execute("SELECT sluice_usage_partition(now() - %s::interval)",
                   (age,))
        for _ in range(n):
            db.execute("INSERT INTO usage_events (request_id, ts_start, "
                     "model, status, usage_source) VALUES "
                     "(gen_random_uuid(), now() - %s::interval, %s, 200, "
                     "%s)", (age, model, source))

    add("gpt-4o-mini", 5, "1 hour")        # priced
    add("fast", 2, "1 hour")               # an alias of a priced model
    add("gpt-5", 4, "2 days")
    add("claude-new", 1, "29 days")
    add("o9", 3, "40 days")                # older than the default period
    add("no-usage", 6, "1 hour", "none")   # a refused request: not billed
    rc, out, err = ctl(conf)
    assert (rc, err) == (1, "")
    assert out == ("%-40s %12s\n%-40s %12d\n%-40s %12d\n"
                   "2 models without a price, 5 requests since 30 days ago\n"
                   % ("MODEL", "REQUESTS", "claude-new", 1, "gpt-5", 4))
    rc, out, err = ctl(conf, "--since", "60 days")
    assert (rc, err) == (1, "")
    assert out == ("%-40s %12s\n%-40s %12d\n%-40s %12d\n%-40s %12d\n"
                   "3 models without a price, 8 requests since 60 days ago\n"
                   % ("MODEL", "REQUESTS", "claude-new", 1, "gpt-5", 4,
                      "o9", 3))
    rc, out, err = ctl(conf, "--since", "1 day")
    assert (rc, out, err) == (
        0, "every model seen since 1 day ago has a price\n", "")
    rc, out, err = ctl(conf, "--since", "fortnight")
    assert rc == 1 and out == ""
    assert "invalid input syntax for type interval" in err, err


def test_example_config_has_no_catch_all_price():
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(os.path.join(root, "etc", "sluice.conf.example")) as f:
        lines = [ln.split() for ln in f if ln.startswith("price")]
    assert lines and all(ln[1] != "*" for ln in lines), lines


# ---------------------------------------------------------------------------
# Item 6: metering_full serve | reject
# ---------------------------------------------------------------------------

def collector_pid(s):
    pids = [p for p, t in s.children() if "collector" in t]
    assert len(pids) == 1, s.children()
    return pids[0]


def fill_lane(s):
    """Stop the collector and push exactly SLOTS events on the one worker
    (one keep-alive connection); returns the collector's pid, stopped."""
    pid = collector_pid(s)
    os.kill(pid, signal.SIGSTOP)
    conn = http.client.HTTPConnection(HOST, s.port, timeout=10)
    body = json.dumps({"model": "gpt-4o-mini", "messages": MSGS})
    try:
        for _ in range(SLOTS):
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
    finally:
        conn.close()
    return pid


@pytest.mark.parametrize("policy", ["reject", "serve"])
def test_metering_full_policy_when_the_lane_is_full(mock, sluice, policy):
    admin = free_port()
    s = sluice(upstreams={"mock": mock.url}, workers=1,
               extra="admin_listen %s:%d;\nring_slots %d;\n"
                     "metering_full %s;\n%s" % (HOST, admin, SLOTS, policy,
                                                PRICE))
    pid = fill_lane(s)
    try:
        upstream_before = mock.stats()
        st, hdrs, body = chat(s.port, "gpt-4o-mini")
        st2, hdrs2, body2 = post(s.port, "/v1/messages",
                                 {"model": "claude-sonnet-4-5",
                                  "max_tokens": 8, "messages": MSGS},
                                 headers={"anthropic-version": "2023-06-01"})
        fam = metrics(admin)
        if policy == "reject":
            assert st == 503, (st, body)
            assert hdrs["retry-after"] == "1"
            assert body["error"]["code"] == "metering_full"
            assert body["error"]["type"] == "server_error"
            # the Anthropic caller gets the Anthropic shape
            assert st2 == 503 and hdrs2["retry-after"] == "1"
            assert json.loads(body2)["type"] == "error"
            assert json.loads(body2)["error"]["type"] == "api_error"
            # nothing went upstream
            assert mock.stats()["requests"] == upstream_before["requests"]
            assert value(fam, "sluice_metering_full_rejections_total") == 2
        else:
            assert st == 200, (st, body)
            assert st2 == 200     # served: translated for the OpenAI upstream
            assert value(fam, "sluice_metering_full_rejections_total") == 0
        # either way the two events found no slot: counted drops
        assert value(fam, "sluice_ring_pushes_total", worker="0") == SLOTS
        assert value(fam, "sluice_ring_drops_total", worker="0") == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    # the collector drains the lane and requests are served again
    wait_for(lambda: value(metrics(admin), "sluice_ring_depth",
                           worker="0") == 0, 15, what="an empty lane")
    st, _, _ = chat(s.port, "gpt-4o-mini")
    assert st == 200
