"""sluiced -t: check a configuration file, like nginx -t."""

import subprocess

import pytest

from conftest import SLUICED


def run_check(path):
    r = subprocess.run([SLUICED, "-t", "-c", str(path)], timeout=10,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    return r.returncode, r.stdout.decode(errors="replace")


GOOD = """\
# a comment
listen 127.0.0.1:18080;
workers 2;
log stderr info;
upstream local {
    url http://127.0.0.1:8000;
    protocol openai;
    read_timeout 30s;
}
route * local;
"""


def test_config_check_accepts_good_config(tmp_path):
    conf = tmp_path / "good.conf"
    conf.write_text(GOOD)
    rc, out = run_check(conf)
    assert rc == 0, out
    assert "test is successful" in out, out
    assert str(conf) in out, out


@pytest.mark.parametrize("lines,bad_line", [
    # misspelled directive on line 3
    (["listen 127.0.0.1:18080;", "workers 2;", "lisen 1.2.3.4;"], 3),
    # route to an upstream that does not exist
    (["listen 127.0.0.1:18080;", "", "upstream a {",
      "    url http://127.0.0.1:1;", "}", "route * nosuch;"], 6),
    # bad value inside an upstream block
    (["listen 127.0.0.1:18080;", "upstream a {",
      "    url http://127.0.0.1:1;", "    read_timeout forever;", "}",
      "route * a;"], 4),
], ids=["unknown-directive", "unknown-upstream", "bad-duration"])
def test_config_check_names_file_and_line(tmp_path, lines, bad_line):
    conf = tmp_path / "bad.conf"
    conf.write_text("\n".join(lines) + "\n")
    rc, out = run_check(conf)
    assert rc == 1, out
    assert "%s:%d:" % (conf, bad_line) in out, out
    assert "test failed" in out, out
