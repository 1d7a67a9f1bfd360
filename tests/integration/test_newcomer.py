"""A newcomer's path, as the README tells it: a fresh clone, `make run`,
the curl line it prints, then the psql line it prints shows the row.
(Issue 9: every command of the quickstart is run by a test.)"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, wait_for


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_fresh_clone_make_run_curl_psql():
    if not port_free(8080) or not port_free(9090):
        pytest.fail("ports 8080/9090 are taken: make run needs them")
    tmp = tempfile.mkdtemp(prefix="sluice-newcomer-")
    os.chmod(tmp, 0o755)            # the postgres user walks into run/pg
    clone = os.path.join(tmp, "sluice")
    subprocess.run(["git", "clone", "-q", ROOT, clone], check=True,
                   timeout=60)
    out_path = os.path.join(tmp, "make-run.out")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    out = open(out_path, "w")
    proc = subprocess.Popen(["make", "run"], cwd=clone, stdout=out,
                            stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        def printed():
            with open(out_path) as f:
                return f.read()

        wait_for(lambda: "Stop with ^C." in printed() or
                 proc.poll() is not None, 420, interval=0.5,
                 what="make run to start")
        text = printed()
        assert proc.poll() is None, text[-3000:]
        wait_for(lambda: not port_free(8080), 30, what="sluiced on 8080")

        # the curl line, run as printed (two lines joined at the "\")
        m = re.search(r"^\s*(curl .*?\\\n\s*-d '.*?')\s*$", text, re.M | re.S)
        assert m, text[-2000:]
        curl = m.group(1).replace("\\\n", " ")
        r = subprocess.run(curl, shell=True, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and '"choices"' in r.stdout, r

        # the psql line, run as printed, until the row is written
        m = re.search(r"^\s*(psql .*)$", text, re.M)
        assert m, text[-2000:]
        psql = m.group(1)

        def row():
            p = subprocess.run(psql, shell=True, capture_output=True,
                               text=True, timeout=30)
            return "gpt-4o-mini" in p.stdout and "200" in p.stdout and p
        p = wait_for(row, 20, interval=0.3, what="the usage row in psql")
        assert "(1 row)" in p.stdout, p.stdout
    finally:
        # ^C, as the README says: the whole foreground process group
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail("make run did not stop on ^C")
        out.close()
        wait_for(lambda: port_free(8080), 30, what="port 8080 released")
        pg = os.path.join(clone, "run", "pg")
        if os.path.isdir(pg):
            subprocess.run([os.path.join(clone, "etc", "pg.sh"), "stop", pg],
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
