"""pgcluster.py - a private PostgreSQL 15 cluster for the integration tests.

The tests need a real PostgreSQL they may stop and start at will (to prove
that the collector spools while it is down and replays once it is back),
so each test session gets its own cluster: initdb into a directory, trust
auth, listening on 127.0.0.1 on a free port fixed for the cluster's life
and on a Unix socket inside its directory.  PostgreSQL refuses to run as
root: as root, the server runs as the 'postgres' system user through
runuser, in a directory it owns.

No pytest in here, so that scripts and benchmarks can use it too:

    pg = PgCluster("/tmp/x")
    pg.init(); pg.start()           # or: with PgCluster(d) as pg:
    pg.conninfo()                   # "host=127.0.0.1 port=N dbname=sluice user=postgres"
    pg.stop(); pg.start()           # same port
    pg.destroy()
"""

import os
import shutil
import socket
import subprocess
import tempfile

PGBIN = "/usr/lib/postgresql/15/bin"
DBNAME = "sluice"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"
# sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN".
SOCKDIR_MAX = 80


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, basedir, port=None, dbname=DBNAME, fsync=False):
        self.basedir = os.path.abspath(basedir)
        self.dbname = dbname
        self.fsync = fsync
        self.as_root = os.geteuid() == 0
        self._private = None
        os.makedirs(self.basedir, exist_ok=True)
        # As root the server's user must reach the directory; pytest's
        # tmp_path lives under a 0700 directory, and a long path does not
        # fit a socket name: then use a short private directory in /tmp,
        # linked from BASEDIR/pg so that a second PgCluster(basedir) finds
        # the same cluster (and its port) again.
        link = os.path.join(self.basedir, "pg")
        self.dir = link
        if os.path.islink(link):
            self.dir = self._private = os.readlink(link)
        elif self.as_root or len(self.dir) > SOCKDIR_MAX:
            self._private = tempfile.mkdtemp(prefix="sluice-pg-")
            self.dir = self._private
            os.symlink(self.dir, link)
        portfile = os.path.join(self.dir, "port")
        if port is None and os.path.exists(portfile):
            with open(portfile) as f:
                port = int(f.read())
        self.port = port or free_port()
        self.datadir = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        self.logfile = os.path.join(self.dir, "postgresql.log")
        self.running = False

    # -- helpers ---------------------------------------------------------

    def _run(self, argv, check=True, **kw):
        """Run a server-side command, as 'postgres' when we are root."""
        if self.as_root:
            argv = ["runuser", "-u", SYSTEM_USER, "--"] + argv
        return subprocess.run(argv, check=check, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, **kw)

    def _bin(self, name):
        return os.path.join(PGBIN, name)

    # -- lifecycle -------------------------------------------------------

    def init(self):
        """initdb once; calling it again on an existing cluster is a no-op."""
        if os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            return self
        os.makedirs(self.sockdir, exist_ok=True)
        if self.as_root:
            shutil.chown(self.dir, SYSTEM_USER, SYSTEM_USER)
            shutil.chown(self.sockdir, SYSTEM_USER, SYSTEM_USER)
            os.chmod(self.dir, 0o700)
        r = self._run([self._bin("initdb"), "-D", self.datadir,
                       "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                       "--locale=C", "--no-sync"], check=False)
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n" + r.stdout)
        conf = os.path.join(self.datadir, "postgresql.conf")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.sockdir,
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "50",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        lines = "".join("%s = %s\n" % kv for kv in settings.items())
        self._run(["sh", "-c", "cat >> '%s'" % conf], input=lines)
        with open(os.path.join(self.dir, "port"), "w") as f:
            f.write("%d\n" % self.port)
        return self

    def start(self, timeout=30):
        """Start the server (initdb first if needed), then ensure the db."""
        self.init()
        r = self._run([self._bin("pg_ctl"), "-D", self.datadir,
                       "-l", self.logfile, "-w", "-t", str(timeout),
                       "start"], check=False)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed:\n%s\n%s"
                               % (r.stdout, self.log_tail()))
        self.running = True
        self._createdb()
        return self

    def stop(self, mode="fast"):
        """Stop the server; connections are cut ('fast') or not waited for
        at all ('immediate')."""
        if not self.is_running():
            self.running = False
            return
        r = self._run([self._bin("pg_ctl"), "-D", self.datadir, "-w",
                       "-m", mode, "stop"], check=False)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl stop failed:\n" + r.stdout)
        self.running = False

    def is_running(self):
        if not os.path.exists(self.datadir):
            return False
        r = self._run([self._bin("pg_ctl"), "-D", self.datadir, "status"],
                      check=False)
        return r.returncode == 0

    def destroy(self):
        """Stop the server and remove everything it wrote."""
        try:
            self.stop(mode="immediate")
        except RuntimeError:
            pass
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            link = os.path.join(self.basedir, "pg")
            if os.path.islink(link):
                os.unlink(link)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

    # -- clients ---------------------------------------------------------

    def conninfo(self, dbname=None):
        return "host=127.0.0.1 port=%d dbname=%s user=%s" % (
            self.port, dbname or self.dbname, SUPERUSER)

    def psql(self, sql, dbname=None):
        """Run SQL with psql; stdout as text (unaligned, tuples only)."""
        r = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-Atq",
                            "-d", self.conninfo(dbname), "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.strip())
        return r.stdout

    def log_tail(self, n=40):
        try:
            with open(self.logfile) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _createdb(self):
        exists = self.psql("SELECT 1 FROM pg_database WHERE datname = '%s'"
                           % self.dbname, dbname="postgres").strip()
        if exists != "1":
            self.psql('CREATE DATABASE "%s"' % self.dbname,
                      dbname="postgres")


if __name__ == "__main__":
    import sys
    import time

    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    with PgCluster(d) as pg:
        print(pg.conninfo())
        print(pg.psql("SELECT version()").strip())
        pg.stop()
        time.sleep(1)
        pg.start()
        print(pg.psql("SELECT 1").strip())
