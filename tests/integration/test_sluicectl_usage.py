"""sluicectl usage: the operators' questions answered from a filled
usage table, as an aligned table and as CSV, by key, team, tag, end user
and model, over the last day, week or month."""

import csv
import io
import os
import subprocess
import uuid

import pytest

from conftest import BUILD, free_port

SLUICECTL = os.path.join(BUILD, "sluicectl")

# (key, team, end_user, tags, model, status, prompt, completion, cost
#  in micro-USD, age)
ROWS = [
    ("app", "eng", "u1", ["web", "prod"], "gpt-4o", 200, 100, 10, 3000, "1 hour"),
    ("app", "eng", "u2", ["web"], "gpt-4o", 200, 50, 5, 1500, "2 hours"),
    ("app", "eng", "u1", ["web"], "gpt-4o", 429, 0, 0, 0, "3 hours"),
    ("bot", "eng", None, ["batch"], "claude-x", 200, 1000, 100, 9000,
     "3 days"),
    ("ops", None, "u,\"3\"", None, "gpt-4o-mini", 500, 5, 0, 10,
     "30 minutes"),
    ("old", None, None, None, "gpt-4o", 200, 1, 1, 999999, "400 days"),
]


@pytest.fixture
def filled(pg, tmp_path):
    name = "usage_%d" % os.getpid()
    pg.psql('CREATE DATABASE "%s"' % name, dbname="postgres")
    conf = tmp_path / "sluice.conf"
    conf.write_text("listen 127.0.0.1:%d;\ndatabase \"%s\";\n"
                    "upstream u { url http://127.0.0.1:9; }\nroute * u;\n"
                    % (free_port(), pg.conninfo(name)))
    r = subprocess.run([SLUICECTL, "-c", str(conf), "db", "init"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import psycopg
    with psycopg.connect(pg.conninfo(name), autocommit=True) as c:
        for k, t, u, tags, m, st, p, co, cost, age in ROWS:
            # a month without a partition takes one first (sluice.conf(5))
            c.execute("SELECT sluice_usage_partition(now() - %s::interval)",
                      (age,))
            c.execute(
                "INSERT INTO usage_events (request_id, ts_start, key_name,"
                " team, end_user, tags, model, status, prompt_tokens,"
                " completion_tokens, cost_micro_usd) VALUES (%s,"
                " now() - %s::interval, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (uuid.uuid4(), age, k, t, u, tags, m, st, p, co, cost))
    yield conf
    pg.psql('DROP DATABASE "%s" WITH (FORCE)' % name, dbname="postgres")


def usage(conf, *args):
    r = subprocess.run([SLUICECTL, "-c", str(conf), "usage"] + list(args),
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def table(out):
    lines = out.splitlines()
    return lines[0].split(), [ln.split() for ln in lines[1:]]


def test_top_keys_of_the_last_day(filled):
    rc, out, err = usage(filled)
    assert rc == 0, err
    head, rows = table(out)
    assert head == ["KEY", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS",
                    "COST_USD", "ERRORS", "ERROR_RATE"]
    assert rows == [["app", "3", "150", "15", "0.004500", "1", "0.3333"],
                    ["ops", "1", "5", "0", "0.000010", "1", "1.0000"]]
    # the columns line up: numbers end where their titles end
    lines = out.splitlines()
    assert len({len(ln) for ln in lines}) == 1, out


def test_by_team_tag_user_and_model_over_a_week(filled):
    rc, out, _ = usage(filled, "--by", "team", "--since", "7d")
    assert table(out)[1] == [["eng", "4", "1150", "115", "0.013500", "1",
                              "0.2500"]]
    rc, out, _ = usage(filled, "--by", "tag", "--since", "7d", "--csv")
    assert rc == 0
    got = list(csv.reader(io.StringIO(out)))
    assert got[0] == ["TAG", "REQUESTS", "PROMPT_TOKENS",
                      "COMPLETION_TOKENS", "COST_USD", "ERRORS", "ERROR_RATE"]
    assert [(r[0], r[1], r[4]) for r in got[1:]] == [
        ("batch", "1", "0.009000"), ("web", "3", "0.004500"),
        ("prod", "1", "0.003000")]
    # CSV quotes what must be: an end user with a comma and quotes
    rc, out, _ = usage(filled, "--by", "user", "--csv", "--limit", "5")
    got = list(csv.reader(io.StringIO(out)))
    assert [(r[0], r[1]) for r in got[1:]] == [
        ("u1", "2"), ("u2", "1"), ('u,"3"', "1")]
    rc, out, _ = usage(filled, "--by", "model", "--since", "month",
                       "--limit", "1")
    head, rows = table(out)
    assert head[0] == "MODEL" and len(rows) == 1


def test_bad_arguments_are_refused(filled):
    for args in (["--by", "colour"], ["--limit", "0"], ["--limit", "x"],
                 ["extra"]):
        rc, out, err = usage(filled, *args)
        assert rc == 1 and out == "" and err, args
    rc, out, err = usage(filled, "--since", "fortnight")
    assert rc == 1 and "invalid input syntax for type interval" in err, err
