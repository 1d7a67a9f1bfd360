"""sluicectl db init, as the README's deployment section runs it: creates
the schema on an empty database (usage_events partitioned by month, this
month's and next month's partitions made), says so, and changes nothing
when run again; the collector finds the same version when it connects."""

import os
import subprocess

from conftest import BUILD, free_port

SLUICECTL = os.path.join(BUILD, "sluicectl")


def test_db_init_creates_the_schema_once(pg, tmp_path):
    name = "dbinit_%d" % os.getpid()
    pg.psql('CREATE DATABASE "%s"' % name, dbname="postgres")
    conf = tmp_path / "sluice.conf"
    conf.write_text("listen 127.0.0.1:%d;\ndatabase \"%s\";\n"
                    "upstream u { url http://127.0.0.1:9; }\nroute * u;\n"
                    % (free_port(), pg.conninfo(name)))
    for _ in range(2):
        r = subprocess.run([SLUICECTL, "-c", str(conf), "db", "init"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip() == "schema at version 8", r.stdout
    tables = pg.psql("SELECT string_agg(relname, ',' ORDER BY relname) "
                     "FROM pg_class WHERE relname IN ('usage_events', "
                     "'usage_by_key_day', 'usage_by_model_day', "
                     "'cost_by_key_month', 'upstream_health_hourly')",
                     dbname=name).strip()
    assert tables == ("cost_by_key_month,upstream_health_hourly,"
                      "usage_by_key_day,usage_by_model_day,usage_events")
    assert pg.psql("SELECT count(*) FROM usage_events",
                   dbname=name).strip() == "0"
    # partitioned by month, this month's and next month's made
    assert pg.psql("SELECT string_agg(tablename, ',' ORDER BY from_ts) "
                   "FROM usage_partitions", dbname=name).strip() == \
        pg.psql("SELECT 'usage_events_' || to_char(now() AT TIME ZONE "
                "'UTC', 'YYYY_MM') || ',usage_events_' || to_char((now() "
                "AT TIME ZONE 'UTC') + interval '1 month', 'YYYY_MM')",
                dbname=name).strip()
    pg.psql('DROP DATABASE "%s" WITH (FORCE)' % name, dbname="postgres")
