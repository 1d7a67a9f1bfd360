#!/usr/bin/python3
"""soak.py - 200,000 mixed requests through sluice; RSS per worker must
stay flat after warm-up (issue 8: no leak on any request path).

    make soak                 (or: bench/soak.py [--requests N])

Mix per client thread, over keep-alive connections: 60 % non-streamed
chat, 30 % streamed chat (5 SSE events), 10 % streams the client abandons
after the first event (the connection is closed mid-stream, so sluice
cancels the upstream request).  Metering is on (a private PostgreSQL).
RSS of every worker is sampled from /proc every 10 % of the run; the
verdict compares each worker's private RSS (RssAnon: its heap) at the end
with its value after the warm-up (the first 20 %).  VmRSS is printed too,
but it also counts the pages of the shared event ring the worker has
written to, which grow until the ring has wrapped once (ring_slots
events x 512 bytes per lane) and say nothing about leaks.  Bounded: N requests, and a wall-clock limit.
Only 127.0.0.1.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from pgcluster import PgCluster  # noqa: E402

BUILD = os.environ.get("SLUICE_BUILD", os.path.join(TOP, "build"))
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]'
GROWTH_LIMIT_KB = 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(stream):
    body = BODY + (b',"stream":true}' if stream else b'}')
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nx-mock-chunks: 5\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class Conn:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def open(self):
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), 10)
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("closed")
        self.buf += d

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        h, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(h[9:12])
        return status, h.lower()

    def body_length(self, n):
        while len(self.buf) < n:
            self.fill()
        self.buf = self.buf[n:]

    def body_chunked(self, stop_after_first=False):
        while True:
            while b"\r\n" not in self.buf:
                self.fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self.fill()
            self.buf = self.buf[size + 2:]
            if size == 0:
                return True
            if stop_after_first:
                return False


def client(port, n, kind_seq, errors, done):
    c = Conn(port)
    c.open()
    for i in range(n):
        kind = kind_seq[i % len(kind_seq)]
        try:
            if c.sock is None:
                c.open()
            c.sock.sendall(request(kind != "plain"))
            status, h = c.head()
            if status != 200:
                errors.append(status)
            if b"content-length:" in h:
                n_ = int(h.split(b"content-length:")[1].split(b"\r\n")[0])
                c.body_length(n_)
            elif not c.body_chunked(stop_after_first=(kind == "abandon")):
                c.close()           # abandon the stream mid-way
        except (OSError, ConnectionError, ValueError) as e:
            errors.append(repr(e))
            c.close()
        done[0] += 1
    c.close()


def worker_rss(master_pid):
    out = {}
    try:
        kids = open("/proc/%d/task/%d/children" % (master_pid, master_pid)
                    ).read().split()
    except OSError:
        return out
    for k in kids:
        try:
            title = open("/proc/%s/cmdline" % k, "rb").read()
            if not title.startswith(b"sluice: worker"):
                continue
            for line in open("/proc/%s/status" % k):
                if line.startswith("RssAnon:"):
                    out[int(k)] = int(line.split()[1])
        except OSError:
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--limit-seconds", type=int, default=900)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sluice-soak-")
    pg = PgCluster(os.path.join(tmp, "pg"))
    pg.init()
    pg.start()
    mock = subprocess.Popen([os.path.join(BUILD, "mockllm"), "-l",
                             "127.0.0.1:0", "--quiet"],
                            stdout=subprocess.PIPE, text=True)
    mport = int(mock.stdout.readline().rsplit(":", 1)[1])
    port = free_port()
    conf = os.path.join(tmp, "sluice.conf")
    with open(conf, "w") as f:
        f.write("listen 127.0.0.1:%d;\nworkers 2;\nlog %s/sluiced.log warn;\n"
                "pid_file %s/sluiced.pid;\nspool_dir %s/spool;\n"
                "database \"%s\";\nupstream mock { url http://127.0.0.1:%d; }\n"
                "route * mock;\nprice * input 0.15 output 0.60;\n%s"
                % (port, tmp, tmp, tmp, pg.conninfo(), mport,
                   "user root;\n" if os.geteuid() == 0 else ""))
    sl = subprocess.Popen([os.path.join(BUILD, "sluiced"), "-f", "-c", conf])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        kinds = ["plain"] * 6 + ["stream"] * 3 + ["abandon"]
        per = a.requests // a.threads
        errors, done = [], [0]
        threads = [threading.Thread(target=client,
                                    args=(port, per, kinds[t:] + kinds[:t],
                                          errors, done), daemon=True)
                   for t in range(a.threads)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        samples = []
        total = per * a.threads
        next_mark = 0
        while any(t.is_alive() for t in threads):
            if time.monotonic() - t0 > a.limit_seconds:
                print("soak: wall-clock limit reached", file=sys.stderr)
                break
            if done[0] >= next_mark:
                samples.append((done[0], worker_rss(sl.pid)))
                next_mark += total // 10
            time.sleep(0.2)
        for t in threads:
            t.join(timeout=5)
        samples.append((done[0], worker_rss(sl.pid)))
        secs = time.monotonic() - t0
        print("requests %d in %.1f s (%.0f/s), errors %d" %
              (done[0], secs, done[0] / secs, len(errors)))
        print("%10s  %s" % ("requests", "RssAnon per worker (KiB)"))
        for n, rss in samples:
            print("%10d  %s" % (n, "  ".join("%d:%d" % kv
                                             for kv in sorted(rss.items()))))
        warm = next((s for s in samples if s[0] >= total // 5), samples[0])
        end = samples[-1]
        grew = {pid: end[1][pid] - warm[1].get(pid, end[1][pid])
                for pid in end[1]}
        print("growth after warm-up (KiB):", grew)
        ok = (done[0] == total and not errors and
              all(g <= GROWTH_LIMIT_KB for g in grew.values()))
        print("soak:", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        sl.terminate()
        sl.wait(timeout=60)
        mock.terminate()
        mock.wait(timeout=10)
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
