"""sluicectl key new / key hash / key check, and keys_file through sluiced -t.

No daemon runs here: these are the operator's steps before a reload.
"""

import os
import re
import subprocess

from conftest import BUILD, SLUICED, free_port

SLUICECTL = os.path.join(BUILD, "sluicectl")


def run(args, stdin=None):
    r = subprocess.run(args, input=stdin, timeout=10,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return (r.returncode, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"))


def write_conf(tmp_path, keys_file):
    conf = tmp_path / "sluice.conf"
    conf.write_text(
        "listen 127.0.0.1:%d;\n"
        "upstream u { url http://127.0.0.1:1; }\n"
        "route * u;\n"
        "price * input 0 output 0;\n"
        "keys_file %s;\n" % (free_port(), keys_file))
    return conf


def key_new(*args):
    rc, out, err = run([SLUICECTL, "key", "new"] + list(args))
    assert rc == 0, err
    m = re.match(r"secret: (sk-sluice-[A-Za-z0-9_-]{43})\n\n(key .*\}\n)\Z",
                 out, re.S)
    assert m, out
    return m.group(1), m.group(2), err


def test_key_new_block_passes_sluiced_check(tmp_path):
    secret, block, err = key_new(
        "alice", "--models", "gpt-4o-mini,claude-*", "--rpm", "600",
        "--tpm", "200000", "--budget", "25/day", "--expires", "2099-01-01")
    assert "shown once" in err
    assert secret not in err
    assert block == (
        "key alice {\n"
        "    hash     %s;\n"
        "    models   gpt-4o-mini claude-*;\n"
        "    rpm      600;\n"
        "    tpm      200000;\n"
        "    budget   25.00 per day;\n"
        "    expires  2099-01-01;\n"
        "}\n" % re.search(r"sha256:[0-9a-f]{64}", block).group(0))
    _, block2, _ = key_new("bob", "--budget", "300/month")
    assert "budget   300.00 per month;" in block2

    keys = tmp_path / "keys.conf"
    keys.write_text(block + "\n" + block2)
    keys.chmod(0o600)
    conf = write_conf(tmp_path, "keys.conf")     # relative to the config
    rc, out, err = run([SLUICED, "-t", "-c", str(conf)])
    assert rc == 0, out + err

    rc, out, err = run([SLUICECTL, "-c", str(conf), "key", "check"])
    assert rc == 0, err
    assert out == "%s: 2 keys\n" % keys

    # the hash of the printed secret is the hash in the block
    rc, out, err = run([SLUICECTL, "key", "hash"],
                       stdin=(secret + "\n").encode())
    assert rc == 0, err
    assert out.strip() in block
    assert out.startswith("sha256:")


def test_key_new_in_a_team_passes_sluiced_check(tmp_path):
    _, block, _ = key_new("carol", "--team", "eng", "--rpm", "10")
    assert block.endswith("    rpm      10;\n    team     eng;\n}\n"), block
    keys = tmp_path / "keys.conf"
    keys.write_text(block)
    keys.chmod(0o600)
    conf = write_conf(tmp_path, "keys.conf")
    # a key naming a team the file lacks is refused, with its line
    rc, out, err = run([SLUICED, "-t", "-c", str(conf)])
    assert rc == 1
    assert '%s:4: key "carol": no team "eng" in this file' % keys in \
        out + err, out + err
    keys.write_text(block + "team eng {\n    budget 100 per month;\n}\n")
    rc, out, err = run([SLUICED, "-t", "-c", str(conf)])
    assert rc == 0, out + err
    rc, out, err = run([SLUICECTL, "-c", str(conf), "key", "check"])
    assert rc == 0, err
    assert out == "%s: 1 key, 1 team\n" % keys
    rc, out, err = run([SLUICECTL, "key", "new", "x", "--team", "a b"])
    assert rc == 1 and "invalid --team" in err


def test_key_new_makes_a_new_secret_each_time():
    s1, b1, _ = key_new("same")
    s2, b2, _ = key_new("same")
    assert s1 != s2 and b1 != b2


def test_key_new_refuses_bad_options():
    for args in (["a b"], ["x", "--rpm", "0"], ["x", "--rpm", "ten"],
                 ["x", "--budget", "25/week"], ["x", "--budget", "25"],
                 ["x", "--expires", "2027-02-30"],
                 ["x", "--models", "gpt;rm"], []):
        rc, out, err = run([SLUICECTL, "key", "new"] + args)
        assert rc == 1, args
        assert out == "", args
        assert err, args


def test_broken_keys_file_fails_sluiced_check(tmp_path):
    keys = tmp_path / "keys.conf"
    _, block, _ = key_new("alice")
    keys.write_text(block + "key bob {\n    hash sha256:abc;\n}\n")
    keys.chmod(0o600)
    conf = write_conf(tmp_path, str(keys))
    bad_line = block.count("\n") + 2

    rc, out, err = run([SLUICED, "-t", "-c", str(conf)])
    assert rc == 1, out + err
    assert "%s:%d:" % (keys, bad_line) in out + err, out + err

    rc, out, err = run([SLUICECTL, "key", "check", "-c", str(conf)])
    assert rc == 1
    assert "%s:%d: key \"bob\": invalid hash" % (keys, bad_line) in err
