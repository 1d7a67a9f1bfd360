"""A collector that cannot load into PostgreSQL for a while never lets a
ring lane overflow: it spools instead, and replays once it can.

The case PostgreSQL being down covers is in test_metering.py.  Here
PostgreSQL is up but does not take rows: another session holds
usage_events locked (a LOCK TABLE, an ALTER TABLE that waits), which
makes every load wait for the lock.  Without a bound on that wait the
collector stalls, the worker's lane (1,024 slots here) fills, and the
events past it are dropped: rows lost for good.
"""

import threading
import time

import psycopg

from conftest import HOST, free_port, wait_for
from test_metering import Load, assert_rows_match_answers, metered  # noqa
from test_metering import db  # noqa: F401 (fixture)
from test_prices import metrics
from test_metrics import value

LOCK_S = 8              # how long the table stays locked


def test_a_locked_usage_table_spools_and_loses_no_row(metered, db):
    admin = free_port()
    s = metered(workers=1, extra="admin_listen %s:%d;\nring_slots 1024;\n"
                "batch_ms 50ms;" % (HOST, admin))
    # the collector has made the table and loads rows
    warm = Load(s.port, clients=1, per_client=5).start()
    warm.join(timeout=30)
    db.wait_rows(5)

    locker = psycopg.connect(db.conninfo())
    locker.execute("LOCK TABLE usage_events IN ACCESS EXCLUSIVE MODE")
    # 1,800 requests in about 6 s, while the table is locked: more than
    # the lane holds
    load = Load(s.port, clients=6, per_client=300, pace_s=0.02,
                max_seconds=40).start()
    released = threading.Event()

    def release():
        time.sleep(LOCK_S)
        locker.rollback()
        released.set()
    t = threading.Thread(target=release, daemon=True)
    t.start()
    try:
        load.join(timeout=60)
        t.join(timeout=LOCK_S + 5)
    finally:
        locker.close()
    assert released.is_set()
    assert not load.errors, load.errors[:5]
    assert len(load.answered) == 1800

    fam = metrics(admin)
    assert value(fam, "sluice_ring_drops_total", worker="0") == 0
    rows = db.wait_rows(1805, timeout=60)
    assert {a["rid"] for a in load.answered} <= set(rows)
    assert_rows_match_answers(rows, load.answered)
    log = s.log_text()
    assert "usage_events is locked" in log
    assert "usage_events is free again" in log or "replayed" in log
