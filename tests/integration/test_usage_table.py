"""The usage table at scale: usage_events partitioned by UTC month, the
collector making partitions ahead and dropping them past usage_retention,
the upgrade from schema 3 that keeps every row, and exactly-once loading
by ring position (epoch of the shared segment, lane, position) whatever
order and host the events come from.

Spool files are made the way a host makes them, by a sluiced without a
reachable database, and replayed with `sluicectl spool replay`; a few
tests rewrite their records (the fourth event size: 2,272 bytes after a
16-byte header) to play an older sluice or a row of an old month.
"""

import os
import shutil
import struct
import subprocess
import time

import pytest

from conftest import BUILD, free_port, wait_for
from test_metering import (Db, Load, assert_rows_match_answers, price_lines,
                           replay, spool_files)

SLUICECTL = os.path.join(BUILD, "sluicectl")
FIXTURE_V3 = os.path.join(os.path.dirname(__file__), "schema_v3.sql")

HEADER = 16
EVENT = 2288            # sizeof(struct usage_event), schema 7
EVENT_V3 = 848          # the same without the origin
TS_OFF = 16             # ts_start_us, after the 16-byte request_id
ORIGIN_OFF = 848        # origin_epoch[16], origin_pos, origin_lane


@pytest.fixture
def db(make_db):
    return make_db(Db)


def db_conf(tmp_path, db, extra=""):
    conf = tmp_path / ("db%d.conf" % free_port())
    conf.write_text('listen 127.0.0.1:%d;\ndatabase "%s";\n%s\n'
                    "upstream u { url http://127.0.0.1:9; }\nroute * u;\n"
                    % (free_port(), db.conninfo(), extra))
    return conf


def db_init(conf):
    r = subprocess.run([SLUICECTL, "-c", str(conf), "db", "init"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def partitions(db):
    return [r[0] for r in db.query(
        "SELECT tablename FROM usage_partitions ORDER BY from_ts "
        "NULLS FIRST")]


def month_name(db, expr):
    """The partition name of the UTC month of SQL expression EXPR."""
    return db.query("SELECT 'usage_events_' || to_char((%s) AT TIME ZONE "
                    "'UTC', 'YYYY_MM')" % expr)[0][0]


def spool_without_db(sluice, mock, clients=5, per_client=40, extra="",
                     workers=2):
    """A stopped sluiced's spool of clients * per_client rows, and the
    answers; the spool holds several files when batch_rows is small."""
    s = sluice(upstreams={"oai": mock.url}, workers=workers,
               extra=price_lines() + "\n" + extra)
    load = Load(s.port, clients=clients, per_client=per_client).start()
    load.join(timeout=60)
    assert not load.errors, load.errors[:5]
    assert len(load.answered) == clients * per_client
    assert s.stop() == 0
    files = spool_files(s)
    assert files
    return s, load.answered


def read_records(path):
    data = path.read_bytes()
    magic, version, size = struct.unpack("=8sII", data[:HEADER])
    assert (magic, version, size) == (b"SLUICESP", 1, EVENT)
    body = data[HEADER:]
    assert len(body) % EVENT == 0
    return [body[i:i + EVENT] for i in range(0, len(body), EVENT)]


def write_records(path, records, size=EVENT):
    path.write_bytes(struct.pack("=8sII", b"SLUICESP", 1, size) +
                     b"".join(records))


def origin(rec):
    epoch = rec[ORIGIN_OFF:ORIGIN_OFF + 16]
    pos, lane = struct.unpack("=QI", rec[ORIGIN_OFF + 16:ORIGIN_OFF + 28])
    return epoch, lane, pos


def replay_ok(conf, spool):
    r = replay(conf, spool)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


# ---------------------------------------------------------------------------
# Partitions
# ---------------------------------------------------------------------------

def test_collector_makes_this_and_next_month_partitions(db, mock, sluice):
    s = sluice(upstreams={"oai": mock.url},
               extra='database "%s";\n%s' % (db.conninfo(), price_lines()))
    load = Load(s.port, clients=2, per_client=5).start()
    load.join(timeout=30)
    rows = db.wait_rows(10)
    assert_rows_match_answers(rows, load.answered)
    this = month_name(db, "now()")
    nxt = month_name(db, "now() + interval '1 month'")
    assert partitions(db) == [this, nxt]
    assert db.query("SELECT count(*) FROM %s" % this)[0][0] == 10
    assert db.query("SELECT relkind FROM pg_class WHERE relname = "
                    "'usage_events'")[0][0] == "p"


def test_usage_retention_drops_whole_months_past_it(db, mock, sluice,
                                                     tmp_path):
    assert db_init(db_conf(tmp_path, db)) == "schema at version 8"
    # the month 13 months back still holds rows younger than 13 months;
    # the month before it holds none
    old = "(now() AT TIME ZONE 'UTC' - interval '14 months') AT TIME ZONE 'UTC'"
    edge = "(now() AT TIME ZONE 'UTC' - interval '13 months') AT TIME ZONE 'UTC'"
    recent = "now() - interval '40 days'"
    for expr, n in ((old, 2), (edge, 3), (recent, 4)):
        db.execute("SELECT sluice_usage_partition(%s)" % expr)
        db.execute("INSERT INTO usage_events (request_id, ts_start, "
                   "key_name, model, status, usage_source) SELECT "
                   "gen_random_uuid(), %s, 'k', 'm', 200, 'upstream' "
                   "FROM generate_series(1, %d)" % (expr, n))
    gone, kept = month_name(db, old), month_name(db, edge)
    assert gone in partitions(db) and kept in partitions(db)
    assert db.count() == (9, 9)

    s = sluice(upstreams={"oai": mock.url},
               extra='database "%s";\nusage_retention 13months;\n%s'
               % (db.conninfo(), price_lines()))
    wait_for(lambda: gone not in partitions(db), 15, what="%s dropped" % gone)
    assert kept in partitions(db)
    assert month_name(db, "now()") in partitions(db)
    assert db.count() == (7, 7)
    assert "usage_retention: dropped partition %s" % gone in s.log_text()
    # and the table takes new rows as before
    load = Load(s.port, clients=1, per_client=5).start()
    load.join(timeout=30)
    wait_for(lambda: db.count()[0] == 12, 15, what="12 rows")


def test_spooled_rows_of_a_month_without_partition_get_one(
        db, mock, sluice, tmp_path):
    s, answered = spool_without_db(sluice, mock, clients=2, per_client=10)
    spool = s.dir / "spool"
    # 2020-03-15 12:00 UTC, as a host with a wrong clock would write it
    ts = 1584273600 * 1000000
    for name in spool_files(s):
        recs = [r[:TS_OFF] + struct.pack("=q", ts) + r[TS_OFF + 8:]
                for r in read_records(spool / name)]
        write_records(spool / name, recs)
    conf = db_conf(tmp_path, db)
    r = replay_ok(conf, spool)
    assert "20 rows, 20 new" in r.stdout
    assert "usage_events_2020_03" in partitions(db)
    assert db.query("SELECT count(*) FROM usage_events_2020_03")[0][0] == 20
    assert {x[0] for x in db.query("SELECT request_id::text FROM "
                                   "usage_events")} == \
        {a["rid"] for a in answered}


# ---------------------------------------------------------------------------
# Upgrade
# ---------------------------------------------------------------------------

# the columns schemas 5 to 7 add (NULL, or no cache hit, in every upgraded
# row) are left out
V3_ROW = ("(to_jsonb(u) - 'team' - 'end_user' - 'tags' - 'client_format'"
          " - 'upstream_format' - 'cache_hit' - 'cost_saved_micro_usd')::text")


def snapshot(db):
    return {
        "rows": [r[0] for r in db.query(
            "SELECT %s FROM usage_events u ORDER BY request_id" % V3_ROW)],
        "by_key_day": db.query("SELECT * FROM usage_by_key_day "
                               "ORDER BY 1, 2"),
        "by_model_day": db.query("SELECT * FROM usage_by_model_day "
                                 "ORDER BY 1, 2"),
        "month": db.query("SELECT * FROM cost_by_key_month"),
        "health": db.query("SELECT * FROM upstream_health_hourly "
                           "ORDER BY 1, 2"),
    }


def test_upgrade_from_schema_3_keeps_every_row(db, pg, mock, sluice,
                                               tmp_path):
    with open(FIXTURE_V3) as f:
        pg.psql(f.read(), dbname=db.name)
    # 120 rows over the last 70 days, with every kind of value and NULLs
    db.execute(
        "INSERT INTO usage_events SELECT gen_random_uuid(),"
        " now() - g * interval '14 hours', 'key-' || g %% 4,"
        " CASE WHEN g %% 5 = 0 THEN NULL ELSE 'gpt-' || g %% 3 END,"
        " CASE WHEN g %% 7 = 0 THEN NULL ELSE 'up' || g %% 2 END,"
        " '/v1/chat/completions', g %% 2 = 0, 200 + (g %% 3) * 150,"
        " CASE WHEN g %% 3 = 1 THEN 'upstream_error' END,"
        " g * 10, g, g %% 4, CASE WHEN g %% 9 = 0 THEN NULL ELSE g * 7 END,"
        " (ARRAY['upstream', 'estimated', 'none'])[1 + g %% 3], 1 + g %% 2,"
        " 100 + g, 900 + g, 1000 * g, 500 * g, 40 + g,"
        " ('10.0.' || g %% 250 || '.1')::inet, 4000 + g,"
        " CASE WHEN g %% 4 = 0 THEN 'client-' || g END,"
        " CASE WHEN g %% 6 = 0 THEN 'beta-x' END, g %% 5, g %% 2, g %% 8,"
        " 'gpt-snap-' || g FROM generate_series(1, 120) g")
    before = snapshot(db)
    assert len(before["rows"]) == 120

    assert db_init(db_conf(tmp_path, db)) == "schema at version 8"
    after = snapshot(db)
    assert after == before
    assert db.query("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname = 'usage_events_pkey'")[0][0] == \
        "PRIMARY KEY (request_id, ts_start)"
    # the old table is the partition of the months its rows span
    old = month_name(db, "now() - 120 * interval '14 hours'") + "_" + \
        month_name(db, "now() - interval '14 hours'")[len("usage_events_"):]
    parts = partitions(db)
    assert parts[0] == old
    assert parts[-1] == month_name(db, "now() + interval '1 month'")
    assert db.query("SELECT count(*) FROM %s" % old)[0][0] == 120

    # sluiced loads into it, and the old rows stay as they were
    s = sluice(upstreams={"oai": mock.url},
               extra='database "%s";\n%s' % (db.conninfo(), price_lines()))
    load = Load(s.port, clients=2, per_client=10).start()
    load.join(timeout=30)
    wait_for(lambda: db.count()[0] >= 140, 15, what="140 rows")
    assert s.stop() == 0
    assert db.count() == (140, 140)
    rows = db.rows()
    assert_rows_match_answers(rows, load.answered)
    old_rows = set(before["rows"])
    assert {r[0] for r in db.query(
        "SELECT %s FROM usage_events u" % V3_ROW)} >= old_rows
    assert db.query("SELECT count(*) FROM usage_events WHERE team IS NOT "
                    "NULL OR end_user IS NOT NULL OR tags IS NOT NULL") == \
        [(0,)]


# ---------------------------------------------------------------------------
# Exactly once, by ring position
# ---------------------------------------------------------------------------

def test_spool_files_replayed_newest_first_still_load_every_row(
        db, mock, sluice, tmp_path):
    """Committed positions are ranges, not one high-water mark: a file
    loaded after a newer one of the same lanes still counts."""
    s, answered = spool_without_db(sluice, mock, clients=4, per_client=50,
                                   extra="batch_rows 40;")
    spool = s.dir / "spool"
    files = spool_files(s)
    assert len(files) >= 3, files
    epochs = {origin(r)[0] for r in read_records(spool / files[0])}
    assert len(epochs) == 1 and epochs.pop()[6] >> 4 == 7   # a UUIDv7
    saved = {n: (spool / n).read_bytes() for n in files}
    conf = db_conf(tmp_path, db)

    newest = tmp_path / "newest"
    newest.mkdir()
    shutil.move(str(spool / files[-1]), str(newest / files[-1]))
    n_new = len(read_records(newest / files[-1]))
    r = replay_ok(conf, newest)
    assert "%d rows, %d new" % (n_new, n_new) in r.stdout
    r = replay_ok(conf, spool)
    assert "%d rows, %d new" % (200 - n_new, 200 - n_new) in r.stdout
    rows = db.wait_rows(200, timeout=1)
    assert set(rows) == {a["rid"] for a in answered}
    assert_rows_match_answers(rows, answered)

    # everything again, in any order: nothing new, no conflict check
    for n, data in saved.items():
        (spool / n).write_bytes(data)
    r = replay_ok(conf, spool)
    assert "200 rows, 0 new" in r.stdout
    assert "conflict check" not in r.stderr
    assert db.count() == (200, 200)


def test_spools_of_two_hosts_with_the_same_positions_both_load(
        db, mock, sluice, tmp_path):
    """Two hosts (or two runs of one) fill lanes from position 0 each:
    the segment's epoch keeps their events apart."""
    # one worker each: both fill lane 0 from position 0
    a, ans_a = spool_without_db(sluice, mock, clients=2, per_client=30,
                                workers=1)
    b, ans_b = spool_without_db(sluice, mock, clients=2, per_client=30,
                                workers=1)
    ra = [origin(r) for f in spool_files(a)
          for r in read_records(a.dir / "spool" / f)]
    rb = [origin(r) for f in spool_files(b)
          for r in read_records(b.dir / "spool" / f)]
    assert {e for e, _, _ in ra}.isdisjoint({e for e, _, _ in rb})
    assert {(l, p) for _, l, p in ra} & {(l, p) for _, l, p in rb}
    conf = db_conf(tmp_path, db)
    assert "60 rows, 60 new" in replay_ok(conf, a.dir / "spool").stdout
    assert "60 rows, 60 new" in replay_ok(conf, b.dir / "spool").stdout
    rows = db.wait_rows(120, timeout=1)
    assert_rows_match_answers(rows, ans_a + ans_b)


def test_spool_of_schema_3_replays_through_the_conflict_check(
        db, mock, sluice, tmp_path):
    """A spool written before events carried their position (event size
    848) is loaded by request id, and twice is still once."""
    s, answered = spool_without_db(sluice, mock, clients=2, per_client=25)
    spool = s.dir / "spool"
    old = {}
    for name in spool_files(s):
        recs = [r[:EVENT_V3] for r in read_records(spool / name)]
        write_records(spool / name, recs, size=EVENT_V3)
        old[name] = (spool / name).read_bytes()
    conf = db_conf(tmp_path, db)
    assert "50 rows, 50 new" in replay_ok(conf, spool).stdout
    for n, data in old.items():
        (spool / n).write_bytes(data)
    assert "50 rows, 0 new" in replay_ok(conf, spool).stdout
    rows = db.wait_rows(50, timeout=1)
    assert_rows_match_answers(rows, answered)
    assert db.query("SELECT count(*) FROM sluice_lane_marks")[0][0] == 0


def test_rows_without_their_positions_are_skipped_not_refused(
        db, mock, sluice, tmp_path):
    """A row in the table whose position was never recorded (as when the
    master meters again a request a worker finished just before dying)
    makes its batch go through the conflict check instead of failing."""
    s, answered = spool_without_db(sluice, mock, clients=2, per_client=25)
    spool = s.dir / "spool"
    saved = {n: (spool / n).read_bytes() for n in spool_files(s)}
    conf = db_conf(tmp_path, db)
    assert "50 rows, 50 new" in replay_ok(conf, spool).stdout
    db.execute("DELETE FROM sluice_lane_marks")
    for n, data in saved.items():
        (spool / n).write_bytes(data)
    r = replay_ok(conf, spool)
    assert "50 rows, 0 new" in r.stdout
    assert "conflict check" in r.stderr
    assert spool_files(s) == []
    rows = db.wait_rows(50, timeout=1)
    assert_rows_match_answers(rows, answered)
    # and the positions are recorded now: a third replay skips by them
    for n, data in saved.items():
        (spool / n).write_bytes(data)
    r = replay_ok(conf, spool)
    assert "50 rows, 0 new" in r.stdout
    assert "conflict check" not in r.stderr
