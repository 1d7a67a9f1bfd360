"""The pictures (issue 19, item 5): the Grafana dashboard and the
Prometheus alerting rules under etc/ are checked against the real thing.

- every SQL query of the dashboard runs against a schema that sluiced
  created and filled (Grafana's macros expanded as its PostgreSQL data
  source expands them), and returns rows;
- the rules pass `promtool check rules` (Debian's prometheus package);
- every metric the dashboard and the rules name is one /metrics serves.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, free_port, post, request, wait_for
from test_keys_limits import CHAT, Keys, db, gateway  # noqa: F401
from test_metrics import check_exposition
from test_teams import started, team_block

DASHBOARD = os.path.join(ROOT, "etc", "grafana", "sluice.json")
RULES = os.path.join(ROOT, "etc", "prometheus", "sluice-rules.yml")
METRIC_RE = re.compile(r"\bsluice_[a-z0-9_]+")


def panels():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["panels"], "no panels"
    return dash["panels"]


def grafana_sql(q):
    """Expand the macros of Grafana's PostgreSQL data source the way it
    does, for a 24-hour range."""
    q = re.sub(r"\$__timeGroupAlias\((\w+),\s*'(\d+)([hd])'\)",
               lambda m: 'floor(extract(epoch from %s) / %d) * %d AS "time"'
               % (m.group(1), *(2 * [int(m.group(2)) * (
                   3600 if m.group(3) == "h" else 86400)])), q)
    q = re.sub(r"\$__timeFilter\((\w+)\)",
               r"\1 BETWEEN now() - interval '24 hours' AND now()", q)
    assert "$__" not in q, q
    return q


def prom_exprs():
    out = [t["expr"] for p in panels() for t in p["targets"] if "expr" in t]
    with open(RULES) as f:
        out += re.findall(r"expr:\s*(\|[\s\S]*?\n(?=\s+for:|\s+labels:)|.*)",
                          f.read())
    return out


def test_every_dashboard_query_runs_on_a_filled_schema(
        gateway, mock, tmp_path, db):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("app", team="eng", tags="web")
    s = started(gateway, keys, [team_block("eng")], db=db)
    auth = {"Authorization": "Bearer " + k, "x-sluice-user": "u1"}
    for _ in range(3):
        st, _, body = post(s.port, CHAT, {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}]}, headers=auth)
        assert st == 200, body
    st, _, body = post(s.port, CHAT, {"model": "gpt-4o-mini"}, headers=auth)
    assert st == 200 or st >= 400
    wait_for(lambda: db.count() == 4, 10, what="4 rows")
    queries = [t["rawSql"] for p in panels() for t in p["targets"]
               if "rawSql" in t]
    assert len(queries) >= 8
    for q in queries:
        rows = db.query(grafana_sql(q))
        assert rows, "no rows from %r" % q


def test_the_rules_pass_promtool():
    promtool = os.path.join(ROOT, "build", "tools", "usr", "bin", "promtool")
    if not os.access(promtool, os.X_OK):
        promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool could not be had: make check unpacks it from "
                    "Debian's prometheus package into build/tools")
    r = subprocess.run([promtool, "check", "rules", RULES],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout, r.stdout


def test_every_metric_named_is_served(gateway, mock, tmp_path):
    keys = Keys(tmp_path / "keys.conf")
    k = keys.add("app", budget="1.00 per day", team="eng")
    port = free_port()
    s = started(gateway, keys, [team_block("eng", budget="10 per day")],
                extra="admin_listen 127.0.0.1:%d;\n" % port)
    st, _, body = post(s.port, CHAT, {
        "model": "gpt-4o-mini", "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer " + k,
                 "x-mock-prompt-tokens": "100",
                 "x-mock-completion-tokens": "0"})
    assert st == 200, body
    st, _, body = request(port, "GET", "/metrics")
    assert st == 200
    fams = check_exposition(body.decode())
    served = set(fams)
    for f in list(fams):
        if fams[f]["type"] == "histogram":
            served |= {f + "_bucket", f + "_sum", f + "_count"}
    named = set()
    for e in prom_exprs():
        named |= set(METRIC_RE.findall(e))
    assert len(named) >= 15, named
    assert not named - served, sorted(named - served)
    # the budget gauge: 100 prompt tokens at 100 micro-USD of a $1 key
    # budget, and of the team's $10
    text = body.decode()
    assert 'sluice_budget_used_ratio{key="app"} 0.010000' in text, text
    assert 'sluice_budget_used_ratio{team="eng"} 0.001000' in text, text
