"""Documentation and operations: man pages, sample files, make install,
the init script and the systemd unit.

The directive check reads the parser's own tables (every cp_dirspec array
in common/config.c and common/keys.c), so a directive added to the parser
without an `.It Ic NAME` entry in man/sluice.conf.5 fails here, and so
does an entry left behind for a directive that is gone.
"""

import itertools
import os
import re
import shutil
import subprocess
import time

import psycopg
import pytest

from conftest import BUILD, MOCKLLM, ROOT, SLUICED, free_port, post, wait_for

MAN = os.path.join(ROOT, "man")
PAGES = ["sluiced.8", "sluicectl.8", "sluice.conf.5"]
CONF_EXAMPLE = os.path.join(ROOT, "etc", "sluice.conf.example")
KEYS_EXAMPLE = os.path.join(ROOT, "etc", "keys.conf.example")
INIT = os.path.join(ROOT, "etc", "init.d", "sluiced")
UNIT = os.path.join(ROOT, "etc", "sluiced.service")
SLUICECTL = os.path.join(BUILD, "sluicectl")

# Provider keys the example's api_key_env lines name.
DUMMY_KEYS = {"OPENAI_API_KEY": "sk-dummy-openai",
              "ANTHROPIC_API_KEY": "sk-dummy-anthropic"}


def read(path):
    with open(path) as f:
        return f.read()


def parser_tables():
    """{table name: [directive names]} for every cp_dirspec table."""
    tables = {}
    for src in ("common/config.c", "common/keys.c"):
        text = read(os.path.join(ROOT, src))
        for m in re.finditer(
                r"static\s+const\s+struct\s+cp_dirspec\s+(\w+)\s*\[\s*\]"
                r"\s*=\s*\{(.*?)\n\};", text, re.S):
            body = re.sub(r"/\*.*?\*/", "", m.group(2), flags=re.S)
            # each entry opens with its name: FN("x", ...), { "x", ...
            names = re.findall(r'(?:^|\n)\s*(?:\w+\s*\(|\{)\s*"([^"]+)"',
                               body)
            tables["%s:%s" % (src, m.group(1))] = names
    return tables


def documented_directives():
    return set(re.findall(r"^\.It Ic ([A-Za-z_]+)",
                          read(os.path.join(MAN, "sluice.conf.5")), re.M))


def example_env():
    env = dict(os.environ)
    env.update(DUMMY_KEYS)
    return env


# ---------------------------------------------------------------------------
# Man pages
# ---------------------------------------------------------------------------

def test_parser_tables_are_found():
    tables = parser_tables()
    for want in ("common/config.c:main_dirs", "common/config.c:upstream_dirs",
                 "common/keys.c:key_dirs"):
        assert tables.get(want), "no directives parsed from %s" % want
    names = set(itertools.chain.from_iterable(tables.values()))
    for known in ("listen", "upstream", "route", "url", "hash", "budget"):
        assert known in names


def test_every_directive_the_parser_accepts_is_documented():
    documented = documented_directives()
    missing = {t: sorted(set(n) - documented)
               for t, n in parser_tables().items()}
    missing = {t: n for t, n in missing.items() if n}
    assert not missing, (
        "directives without an `.It Ic NAME` entry in man/sluice.conf.5: %r"
        % missing)


def test_every_documented_directive_exists_in_the_parser():
    names = set(itertools.chain.from_iterable(parser_tables().values()))
    extra = sorted(documented_directives() - names)
    assert not extra, "man/sluice.conf.5 documents unknown directives: %r" % (
        extra,)


@pytest.mark.parametrize("page", PAGES)
def test_man_page_is_clean_under_mandoc_lint(page):
    if shutil.which("mandoc") is None:
        pytest.skip("mandoc not installed")
    r = subprocess.run(["mandoc", "-Tlint", "-W", "warning",
                        os.path.join(MAN, page)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "")


def test_sluicectl_page_documents_every_command():
    src = read(os.path.join(ROOT, "master", "sluicectl.c"))
    table = src[src.index("ctl_cmds[] = {"):]
    table = table[:table.index("\n};")]
    cmds = [" ".join(re.findall(r'"([^"]+)"', m))
            for m in re.findall(r"\{\s*\{([^}]*)\}", table)]
    assert cmds
    page = read(os.path.join(MAN, "sluicectl.8"))
    for cmd in cmds:
        assert re.search(r"^\.It Cm %s\b" % re.escape(cmd), page, re.M), cmd


def test_sluiced_page_has_the_daemon_sections():
    page = read(os.path.join(MAN, "sluiced.8"))
    for sec in ("SYNOPSIS", "OPTIONS", "SIGNALS", "FILES",
                "EXIT STATUS", "EXAMPLES"):
        assert re.search(r"^\.Sh %s$" % sec, page, re.M), sec
    for sig in ("SIGHUP", "SIGTERM", "SIGQUIT", "SIGUSR1"):
        assert re.search(r"^\.It Dv %s" % sig, page, re.M), sig
    for opt in "cft":
        assert re.search(r"^\.It Fl %s\b" % opt, page, re.M), opt


# ---------------------------------------------------------------------------
# Sample files
# ---------------------------------------------------------------------------

def test_example_config_passes_sluiced_t():
    r = subprocess.run([SLUICED, "-t", "-c", CONF_EXAMPLE], env=example_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    assert "test is successful" in r.stdout


def test_example_keys_file_passes_sluiced_t_and_key_check(tmp_path):
    conf = tmp_path / "sluice.conf"
    # installed as keys.conf it is 0640; a checkout's copy may be 0644
    keys = tmp_path / "keys.conf"
    keys.write_text(read(KEYS_EXAMPLE))
    keys.chmod(0o640)
    conf.write_text(read(CONF_EXAMPLE) + "\nkeys_file %s;\n" % keys)
    r = subprocess.run([SLUICED, "-t", "-c", str(conf)], env=example_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    r = subprocess.run([SLUICECTL, "key", "check", "-c", str(conf)],
                       env=example_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == "%s: 4 keys" % keys


# ---------------------------------------------------------------------------
# make install / uninstall
# ---------------------------------------------------------------------------

INSTALLED = [
    "usr/local/sbin/sluiced",
    "usr/local/bin/sluicectl",
    "usr/local/share/man/man8/sluiced.8",
    "usr/local/share/man/man8/sluicectl.8",
    "usr/local/share/man/man5/sluice.conf.5",
    "usr/local/etc/sluice/sluice.conf",
    "usr/local/etc/sluice/keys.conf",
    "usr/local/share/sluice/sluiced.init",
    "usr/local/share/sluice/sluiced.service",
    "usr/local/share/sluice/sluice.logrotate",
]


def make(*args):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT] +
                       list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    assert r.returncode == 0, r.stdout
    return r.stdout


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


def test_make_install_installs_and_never_overwrites_config(tmp_path):
    dest = str(tmp_path / "dest")
    make("install", "DESTDIR=" + dest, "PREFIX=/usr/local")
    assert files_under(dest) == sorted(INSTALLED)
    assert os.access(os.path.join(dest, "usr/local/sbin/sluiced"), os.X_OK)
    assert os.access(os.path.join(dest, "usr/local/bin/sluicectl"), os.X_OK)
    conf = os.path.join(dest, "usr/local/etc/sluice/sluice.conf")
    assert read(conf) == read(CONF_EXAMPLE)
    # the init script and unit point at this install's paths
    unit = read(os.path.join(dest, "usr/local/share/sluice/sluiced.service"))
    assert "-c /usr/local/etc/sluice/sluice.conf" in unit

    with open(conf, "a") as f:
        f.write("# changed by the operator\n")
    changed = read(conf)
    make("install", "DESTDIR=" + dest, "PREFIX=/usr/local")
    assert read(conf) == changed

    out = make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr/local")
    assert files_under(dest) == ["usr/local/etc/sluice/sluice.conf"], out
    assert read(conf) == changed
    os.unlink(conf)
    make("install", "DESTDIR=" + dest, "PREFIX=/usr/local")
    make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr/local")
    assert files_under(dest) == []


def test_make_install_follows_prefix(tmp_path):
    dest = str(tmp_path / "dest")
    make("install", "DESTDIR=" + dest, "PREFIX=/opt/sluice")
    assert os.path.exists(os.path.join(dest, "opt/sluice/sbin/sluiced"))
    init = read(os.path.join(dest, "opt/sluice/share/sluice/sluiced.init"))
    assert "/opt/sluice/sbin/sluiced" in init
    assert "/usr/local/sbin/sluiced" not in init
    assert "/usr/local/etc" not in init
    make("uninstall", "DESTDIR=" + dest, "PREFIX=/opt/sluice")
    assert files_under(dest) == []


# ---------------------------------------------------------------------------
# Init script and systemd unit
# ---------------------------------------------------------------------------

def test_init_script_parses_and_has_lsb_headers():
    r = subprocess.run(["sh", "-n", INIT], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    text = read(INIT)
    assert os.access(INIT, os.X_OK)
    head = text[text.index("### BEGIN INIT INFO"):
                text.index("### END INIT INFO")]
    for field in ("Provides", "Required-Start", "Required-Stop",
                  "Default-Start", "Default-Stop", "Short-Description"):
        assert re.search(r"^# %s:\s+\S" % field, head, re.M), field
    for action in ("start", "stop", "reload", "force-reload", "restart",
                   "status", "configtest"):
        assert re.search(r"^\s*(\S+\|)?%s(\|\S+)?\)" % re.escape(action),
                         text, re.M), action


def test_systemd_unit_verifies(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    unit = read(UNIT)
    for want in ("ExecStartPre=/usr/local/sbin/sluiced -t",
                 "ExecStart=/usr/local/sbin/sluiced -f",
                 "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
                 "NoNewPrivileges=yes", "PrivateTmp=yes"):
        assert want in unit, want
    # verify checks that the binaries exist: point it at the build
    path = tmp_path / "sluiced.service"
    path.write_text(unit.replace("/usr/local/sbin/sluiced", SLUICED))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    assert "sluiced.service" not in r.stdout, r.stdout


_dbseq = itertools.count()


@pytest.fixture
def initd(tmp_path, pg, mock):
    """Run etc/init.d/sluiced against this build, a mock upstream and a
    fresh database; stops the daemon at teardown whatever happened."""
    if shutil.which("start-stop-daemon") is None:
        pytest.skip("start-stop-daemon not installed")
    dbname = "initd_%d_%d" % (os.getpid(), next(_dbseq))
    pg.psql('CREATE DATABASE "%s"' % dbname, dbname="postgres")

    class Init:
        port = free_port()
        conf = tmp_path / "sluice.conf"
        pidfile = tmp_path / "run" / "sluiced.pid"
        log = tmp_path / "sluiced.log"
        conninfo = pg.conninfo(dbname)

        def write_conf(self, workers=2, extra=""):
            self.conf.write_text(
                "listen 127.0.0.1:%d;\nworkers %d;\npid_file %s;\n"
                "log %s info;\ndatabase \"%s\";\nspool_dir %s;\n"
                "shutdown_timeout 10s;\n%s"
                "upstream mock { url %s; }\nroute * mock;\n"
                "price * input 1 output 2;\n%s" % (
                    self.port, workers, self.pidfile, self.log,
                    self.conninfo, tmp_path / "spool",
                    "user root;\n" if os.geteuid() == 0 else "",
                    mock.url, extra))

        def run(self, action):
            env = dict(os.environ, DAEMON=SLUICED, CONF=str(self.conf),
                       SLUICED_DEFAULTS="/nonexistent", STOP_TIMEOUT="30")
            return subprocess.run(["sh", INIT, action], env=env,
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  timeout=120)

        def rows(self):
            try:
                with psycopg.connect(self.conninfo, autocommit=True,
                                     connect_timeout=5) as c:
                    return c.execute("SELECT count(*) FROM usage_events"
                                     ).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return 0

        def query(self, sql):
            with psycopg.connect(self.conninfo, autocommit=True,
                                 connect_timeout=5) as c:
                return c.execute(sql).fetchall()

    it = Init()
    it.write_conf()
    yield it
    it.run("stop")
    if it.pidfile.exists():
        try:
            os.kill(int(it.pidfile.read_text()), 9)
        except (ValueError, OSError):
            pass
    try:
        pg.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % dbname,
                dbname="postgres")
    except RuntimeError:
        pass


def chat(port):
    st, hdrs, body = post(port, "/v1/chat/completions",
                          {"model": "gpt-4o-mini",
                           "messages": [{"role": "user", "content": "hi"}]})
    assert st == 200, body
    return hdrs["x-request-id"]


def test_init_script_start_reload_stop_drains_every_row(initd):
    assert initd.run("status").returncode == 3     # LSB: not running

    r = initd.run("start")
    assert r.returncode == 0, r.stdout
    pid = int(initd.pidfile.read_text())
    assert initd.run("status").returncode == 0
    # a second start leaves the running daemon alone
    assert initd.run("start").returncode == 0
    assert int(initd.pidfile.read_text()) == pid
    ids = [chat(initd.port) for _ in range(5)]

    # a good reload: a new worker generation, same master
    initd.write_conf(workers=1)
    r = initd.run("reload")
    assert r.returncode == 0, r.stdout
    wait_for(lambda: "generation 2" in initd.log.read_text(), 10,
             what="the reload in the log")
    ids += [chat(initd.port) for _ in range(5)]

    # a broken one is refused before the daemon sees it
    initd.write_conf(workers=1, extra="no_such_directive on;\n")
    r = initd.run("reload")
    assert r.returncode != 0
    line = initd.conf.read_text().splitlines().index(
        "no_such_directive on;") + 1
    assert "%s:%d: unknown directive" % (initd.conf, line) in r.stdout
    assert initd.run("configtest").returncode == 1
    assert "generation 3" not in initd.log.read_text()
    assert initd.run("status").returncode == 0
    assert int(initd.pidfile.read_text()) == pid
    ids += [chat(initd.port) for _ in range(5)]
    initd.write_conf(workers=1)

    # stop returns once the master has drained every event: no waiting
    r = initd.run("stop")
    assert r.returncode == 0, r.stdout
    assert not initd.pidfile.exists()
    assert initd.run("status").returncode == 3
    assert initd.rows() == len(ids)
    got = {str(r[0]) for r in initd.query(
        "SELECT request_id FROM usage_events")}
    assert got == set(ids)


def test_man_page_psql_examples_run(initd):
    """The five queries of sluice.conf(5) EXAMPLES are valid against the
    schema sluice creates, and see the rows."""
    page = read(os.path.join(MAN, "sluice.conf.5"))
    queries = re.findall(r'^\$ psql sluice -c "(.*?)"$', page, re.M | re.S)
    assert len(queries) == 5
    assert initd.run("start").returncode == 0
    chat(initd.port)
    wait_for(lambda: initd.rows() == 1, 15, what="the usage row")
    assert initd.run("stop").returncode == 0
    results = [initd.query(q) for q in queries]
    # spend today, month, per model, upstream health, failures: all see it
    assert all(len(rs) >= 1 for rs in results), results
