"""Privileges and secrets (issue 8, part 5): root workers only when the
configuration asks for them, secret files readable by nobody else, and
workers that cannot be dumped or traced by their peers."""

import os
import pwd
import subprocess

import pytest

from conftest import SLUICED, free_port, post

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def base_conf(tmp_path, extra):
    return ("listen 127.0.0.1:%d;\nworkers 1;\npid_file %s/p.pid;\n"
            "spool_dir %s/spool;\nupstream u { url http://127.0.0.1:9; }\n"
            "route * u;\n%s" % (free_port(), tmp_path, tmp_path, extra))


def check(conf_text, tmp_path, *args):
    conf = tmp_path / "sluice.conf"
    conf.write_text(conf_text)
    return subprocess.run([SLUICED] + list(args) + ["-c", str(conf)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30), conf


def test_world_readable_api_key_file_is_refused(tmp_path):
    key = tmp_path / "openai.key"
    key.write_text("sk-provider-secret\n")
    key.chmod(0o644)
    text = base_conf(tmp_path, "upstream p {\n url http://127.0.0.1:9;\n"
                     " api_key_file %s;\n}\n" % key)
    r, conf = check(text, tmp_path, "-t")
    assert r.returncode == 1, r.stdout
    assert "%s:9: " % conf in r.stdout and "readable by every user" in \
        r.stdout, r.stdout
    assert "sk-provider-secret" not in r.stdout
    key.chmod(0o600)
    r, _ = check(text, tmp_path, "-t")
    assert r.returncode == 0, r.stdout


def test_world_readable_keys_file_is_refused(tmp_path):
    keys = tmp_path / "keys.conf"
    keys.write_text("key a {\n\thash sha256:%s;\n}\n" % ("ab" * 32))
    keys.chmod(0o644)
    text = base_conf(tmp_path, "keys_file %s;\n" % keys)
    r, _ = check(text, tmp_path, "-t")
    assert r.returncode == 1, r.stdout
    assert "%s: readable by every user" % keys in r.stdout, r.stdout
    keys.chmod(0o640)
    r, _ = check(text, tmp_path, "-t")
    assert r.returncode == 0, r.stdout


@as_root
def test_root_workers_need_an_explicit_user(tmp_path):
    r, conf = check(base_conf(tmp_path, ""), tmp_path, "-f")
    assert r.returncode == 1, r.stdout
    assert "refusing to run workers as root" in r.stdout, r.stdout
    assert not os.path.exists(tmp_path / "p.pid")


@as_root
def test_workers_drop_to_user_and_are_not_dumpable(sluice, mock):
    nobody = pwd.getpwnam("nobody")
    s = sluice(upstreams={"m": mock.url}, extra="user nobody;")
    st, _, _ = post(s.port, "/v1/chat/completions", {"model": "x"})
    assert st == 200
    for pid in s.worker_pids():
        with open("/proc/%d/status" % pid) as f:
            uid = next(l for l in f if l.startswith("Uid:")).split()[1:]
        assert all(int(u) == nobody.pw_uid for u in uid), uid
        # PR_SET_DUMPABLE 0: the kernel makes /proc/PID root's, so the
        # account the worker runs as cannot read its memory or environment
        assert os.stat("/proc/%d/environ" % pid).st_uid == 0
