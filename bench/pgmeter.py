"""pgmeter.py - PostgreSQL's share of a metered cell in bench/run.py: the
usage rows the cell added and the CPU time the cluster spent on them.

Production runs PostgreSQL with fsync and synchronous_commit on, and a
usage row then costs a WAL flush per commit; a bench without them would
hide that cost (issue 15).  check_durable() refuses to measure a cluster
where either is off.

Rows are counted with count(*) on usage_events, on one connection held
for the whole run.  That connection's backend is left out of the CPU
figure (the counting is the bench's work, not the load's), and so are
parallel workers, which this session never asks for.  Every other
process of the cluster counts: the collector's backend, the WAL writer,
the checkpointer, autovacuum (procstat.CpuWindow takes those that exit
inside a cell from the postmaster's reaped time).
"""

import psycopg

from procstat import CpuWindow, tree


class PgMeter:
    def __init__(self, conninfo, postmaster_pid):
        self.postmaster = postmaster_pid
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.backend = self._one("SELECT pg_backend_pid()")
        self._one("SET max_parallel_workers_per_gather = 0")

    def _one(self, sql):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0] if cur.description else None

    def settings(self):
        return {k: self._one("SHOW " + k) for k in (
            "fsync", "synchronous_commit", "full_page_writes",
            "wal_sync_method", "shared_buffers", "server_version")}

    def check_durable(self):
        s = self.settings()
        bad = [k for k in ("fsync", "synchronous_commit") if s[k] != "on"]
        if bad:
            raise RuntimeError("PostgreSQL runs with %s off; the bench "
                               "measures it as production runs it" %
                               " and ".join(bad))
        return s

    def rows(self):
        """Rows in usage_events now (0 before the collector made it)."""
        if self._one("SELECT to_regclass('usage_events')") is None:
            return 0
        return self._one("SELECT count(*) FROM usage_events")

    def window(self):
        """A CpuWindow over the cluster's processes but this one's."""
        return CpuWindow(lambda: [p for p in tree(self.postmaster)
                                  if p != self.backend],
                         parent=self.postmaster)

    def close(self):
        self.conn.close()
