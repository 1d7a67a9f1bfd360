"""Teams and attribution (issue 19, items 1 and 2).

A team in keys.conf binds every key of it with its own models, rpm, tpm
and budget, shared by those keys across workers (a second key state
slot, held and charged like the key's).  Every row names the key's team,
the end user the caller named (x-sluice-user, OpenAI's `user`, Anthropic's
`metadata.user_id`) and the request's tags (the key's, then
x-sluice-tags); the x-sluice-* headers never reach the upstream.
"""

import json
import threading

from conftest import post, wait_for
from test_keys_limits import (CHAT, MSGS, Keys, anthropic_error,  # noqa: F401
                              db, gateway, limits_block, message,
                              openai_error)
from test_holds import IN_PRICE, OUT_PRICE, body_of, burst, held


def team_block(name, **limits):
    return limits_block("team", name, **limits)


def member(keys, name, team, tags=None, models=None):
    """A key of TEAM (with TAGS)."""
    secret = keys.add(name, models=models, team=team, tags=tags)
    return secret


def with_teams(keys, *blocks):
    """keys.write(), then the team blocks appended (0600 kept)."""
    keys.write()
    with open(keys.path, "a") as f:
        f.write("".join(blocks))


def started(gateway, keys, blocks, **kw):
    """A gateway whose keys.conf has BLOCKS too (write() would drop them,
    so the gateway's own write is followed by ours before it starts)."""
    s = gateway(keys, start=False, **kw)
    with_teams(keys, *blocks)
    s.start()
    if kw.get("db") is not None:
        wait_for(lambda: "key spend loaded" in s.log_text(), 15,
                 what="the collector to load key spend")
    return s


def usd(micro):
    return "%d.%06d" % divmod(micro, 10**6)


def test_a_team_budget_is_shared_by_its_keys_across_workers(
        gateway, mock, tmp_path, db):
    _, worst = held(20)
    actual = 5 * IN_PRICE + 10 * OUT_PRICE
    budget = 2 * worst + 3 * actual + worst // 2
    keys = Keys(tmp_path / "keys.conf")
    a = member(keys, "a", "eng")
    b = member(keys, "b", "eng")
    lone = keys.add("lone")
    s = started(gateway, keys, [team_block(
        "eng", budget="%s per day" % usd(budget))], db=db)
    h = {"x-mock-prompt-tokens": "5", "x-mock-completion-tokens": "10"}
    got = []
    for i in range(10):
        secret = (a, b)[i % 2]
        st, _, body = post(s.port, CHAT, body_of(20), headers=dict(
            h, Authorization="Bearer " + secret))
        got.append((st, body))
    # each costs `actual`; a worst case fits while spend + worst <= budget
    n_ok = next(i for i in range(10) if (i * actual) + worst > budget)
    assert n_ok < 9
    assert [st for st, _ in got] == [200] * n_ok + [429] * (10 - n_ok), got
    j = openai_error(got[-1][0], got[-1][1], 429, "insufficient_quota",
                     "budget_exceeded")
    assert "team `eng`" in j["error"]["message"], j
    # both keys were refused by the team, a key outside it was not
    assert {st for st, _ in got[n_ok:n_ok + 2]} == {429}
    st, _, body = post(s.port, CHAT, body_of(20), headers=dict(
        h, Authorization="Bearer " + lone))
    assert st == 200, body
    wait_for(lambda: db.count() == 11, 10, what="11 rows")
    rows = db.query("SELECT key_name, team, status, cost_micro_usd "
                    "FROM usage_events ORDER BY ts_start")
    assert [(r[0], r[1], r[2]) for r in rows[:10]] == [
        (("a", "b")[i % 2], "eng", 200 if i < n_ok else 429)
        for i in range(10)]
    assert rows[10][:3] == ("lone", None, 200)
    assert sum(r[3] or 0 for r in rows if r[1] == "eng") == n_ok * actual
    assert db.query("SELECT team, (cost_usd * 1e6)::bigint "
                    "FROM cost_by_team_day") == [("eng", n_ok * actual)]

    # the team's spend survives a restart: loaded by team from the rows
    assert s.stop() == 0
    s.start()
    wait_for(lambda: s.log_text().count("key spend loaded") >= 2, 15,
             what="the spend loaded again")
    st, _, body = post(s.port, CHAT, body_of(20), headers=dict(
        h, Authorization="Bearer " + a))
    j = openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    assert "team `eng`" in j["error"]["message"], j


def test_team_rpm_and_models_bind_every_key_of_it(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    a = member(keys, "a", "small")
    b = member(keys, "b", "small", models="gpt-* claude-*")
    s = started(gateway, keys, [team_block("small", models="gpt-*",
                                           rpm=3)])
    # the key allows claude-*, its team does not (and it took one of the
    # team's 3 requests a minute: the rate is taken at the head)
    st, _, body = message(s.port, b)
    anthropic_error(st, body, 403, "permission_error")
    assert "team `small`" in json.loads(body)["error"]["message"]
    got = [post(s.port, CHAT, body_of(5), headers={
        "Authorization": "Bearer " + (a, b)[i % 2]})[0] for i in range(3)]
    assert got == [200, 200, 429], got
    st, hdrs, body = post(s.port, CHAT, body_of(5), headers={
        "Authorization": "Bearer " + b})
    j = openai_error(st, body, 429, "requests", "rate_limit_exceeded")
    assert "of team `small`" in j["error"]["message"], j


def test_rows_carry_team_end_user_and_tags(gateway, mock, tmp_path, db):
    keys = Keys(tmp_path / "keys.conf")
    k = member(keys, "app", "eng", tags="web prod")
    s = started(gateway, keys, [team_block("eng")], db=db)
    auth = {"Authorization": "Bearer " + k}
    want = {}

    def do(path, body, headers, end_user, tags):
        st, hdrs, data = post(s.port, path, body, headers=dict(
            auth, **headers))
        assert st == 200, data
        # the x-sluice-* headers stopped at sluice
        seen = mock.last()["headers"]
        assert not [h for h in seen if h.startswith("x-sluice-")], seen
        want[hdrs["x-request-id"]] = ("eng", end_user, tags)

    chat = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}]}
    do(CHAT, chat, {}, None, ["web", "prod"])
    do(CHAT, dict(chat, user="u-17"), {"x-sluice-tags": "a, b,web"},
       "u-17", ["web", "prod", "a", "b"])
    # the header wins over the body
    do(CHAT, dict(chat, user="u-17"), {"x-sluice-user": "alice@example.com"},
       "alice@example.com", ["web", "prod"])
    msg = {"model": "claude-sonnet-4-5", "max_tokens": 16,
           "metadata": {"user_id": "9f3c"},
           "messages": [{"role": "user", "content": "hi"}]}
    do(MSGS, msg, {"anthropic-version": "2023-06-01",
                   "x-sluice-tags": "batch"}, "9f3c",
       ["web", "prod", "batch"])
    wait_for(lambda: db.count() == 4, 10, what="4 rows")
    rows = {r[0]: tuple(r[1:]) for r in db.query(
        "SELECT request_id::text, team, end_user, tags FROM usage_events")}
    assert rows == want
    by_tag = dict(db.query("SELECT tag, requests FROM cost_by_tag_day"))
    assert by_tag == {"web": 4, "prod": 4, "a": 1, "b": 1, "batch": 1}
    assert db.query("SELECT end_user, requests FROM top_end_users_month "
                    "ORDER BY end_user") == [
        ("9f3c", 1), ("alice@example.com", 1), ("u-17", 1)]


def test_bad_tags_and_end_users_get_400_and_a_row(gateway, mock, tmp_path,
                                                   db):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("app")
    s = gateway(keys, db=db)
    auth = {"Authorization": "Bearer " + k}
    chat = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}]}
    before = mock.stats()["requests"]
    cases = [
        (CHAT, chat, {"x-sluice-tags": "has space"}, "invalid_tags"),
        (CHAT, chat, {"x-sluice-tags": ",".join("t%d" % i
                                                for i in range(17))},
         "invalid_tags"),
        (CHAT, chat, {"x-sluice-tags": "x" * 65}, "invalid_tags"),
        (CHAT, chat, {"x-sluice-user": "a\tb"}, "invalid_end_user"),
        (CHAT, dict(chat, user="u" * 257), {}, "invalid_end_user"),
        (CHAT, dict(chat, user="a\nb"), {}, "invalid_end_user"),
    ]
    rids = []
    for path, body, h, code in cases:
        st, hdrs, data = post(s.port, path, body, headers=dict(auth, **h))
        openai_error(st, data, 400, "invalid_request_error", code)
        rids.append((hdrs["x-request-id"], code))
    msg = {"model": "claude-sonnet-4-5", "max_tokens": 16,
           "metadata": {"user_id": "x" * 300},
           "messages": [{"role": "user", "content": "hi"}]}
    st, hdrs, data = post(s.port, MSGS, msg, headers=dict(
        auth, **{"anthropic-version": "2023-06-01"}))
    anthropic_error(st, data, 400, "invalid_request_error")
    rids.append((hdrs["x-request-id"], "invalid_end_user"))
    assert mock.stats()["requests"] == before, "a bad one went upstream"
    wait_for(lambda: db.count() == len(rids), 10, what="a row each")
    rows = dict(db.query("SELECT request_id::text, error_class "
                         "FROM usage_events"))
    assert rows == dict(rids)
    assert db.query("SELECT count(*) FROM usage_events WHERE "
                    "tags IS NOT NULL OR end_user IS NOT NULL") == [(0,)]


def user_key(keys, name, per_user):
    return keys.add(name, end_user_budget="%s per day" % usd(per_user))


def test_each_end_user_has_a_budget_of_their_own(gateway, mock, tmp_path,
                                                  db):
    _, worst = held(20)
    actual = 5 * IN_PRICE + 10 * OUT_PRICE
    per_user = 2 * worst + worst // 2          # 2 holds fit, 3 do not
    keys = Keys(tmp_path / "keys.conf")
    k = user_key(keys, "app", per_user)
    s = gateway(keys, db=db)
    h = {"Authorization": "Bearer " + k, "x-mock-prompt-tokens": "5",
         "x-mock-completion-tokens": "10"}

    def ask(user):
        hh = dict(h, **({"x-sluice-user": user} if user else {}))
        return post(s.port, CHAT, body_of(20), headers=hh)

    # one after another: u1 spends `actual` a request
    n_ok = next(i for i in range(10) if i * actual + worst > per_user)
    got = [ask("u1")[0] for _ in range(n_ok + 1)]
    assert got == [200] * n_ok + [429], got
    st, _, body = ask("u1")
    j = openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    assert "end user" in j["error"]["message"], j
    # another end user, and a request naming none, are not held to it
    assert ask("u2")[0] == 200
    assert ask(None)[0] == 200
    # at once: 10 requests naming no user all go; 10 of a new user,
    # and 2 worst cases fit
    got = burst(s.port, k, 10, 20, 1000)
    assert sorted(st for st, _ in got) == [200] * 10
    hb = dict(h, **{"x-sluice-user": "u3", "x-mock-latency-ms": "1000"})
    out = []
    ts = [threading.Thread(target=lambda: out.append(post(
        s.port, CHAT, body_of(20), headers=hb, timeout=30)[0]))
        for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sorted(out) == [200, 200] + [429] * 8, out
    # a restart loads each end user's spend from the rows
    wait_for(lambda: db.count() == n_ok + 2 + 2 + 10 + 10, 15,
             what="every row")
    assert s.stop() == 0
    s.start()
    wait_for(lambda: s.log_text().count("key spend loaded") >= 2, 15,
             what="the spend loaded again")
    st, _, body = ask("u1")
    openai_error(st, body, 429, "insufficient_quota", "budget_exceeded")
    assert ask("u2")[0] == 200
