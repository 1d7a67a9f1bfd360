"""procstat.py - what bench/run.py reads from /proc: process trees, CPU
time and memory of the processes it measures.

CPU time is the first field of /proc/PID/task/TID/schedstat: nanoseconds
the thread ran, as the scheduler accounted them.  The utime and stime
ticks of /proc/PID/stat are sampled at the timer tick, and an
event-driven process that wakes, works a few microseconds and sleeps
between two ticks is missed by most of them (issue 15 saw sluice at a
third of its real CPU).  Threads are summed, so haproxy's threads count;
a process that exits inside a measured window leaves its time only in
its parent's cutime and cstime (ticks: the one record left of it), which
is how PostgreSQL's short-lived backends and autovacuum workers are
counted (see CpuWindow).

Read-only: nothing here starts or signals a process.
"""

import os


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    return st[st.rindex(")") + 2:].split()


def children(pid):
    """Direct children of pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = _stat_fields(int(d))
        if f is not None and int(f[1]) == pid:
            out.append(int(d))
    return out


def tree(pid):
    """pid and its direct children (sluiced, nginx and PostgreSQL fork
    every process they have straight from the master)."""
    return [pid] + children(pid)


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def cpu_ns(pid):
    """CPU time of every live thread of pid, in ns; None once it is gone."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass            # the thread ended between listdir and open
    return total


def reaped_ns(pid):
    """CPU time of pid's children that exited and were waited for."""
    f = _stat_fields(pid)
    if f is None:
        return 0
    return (int(f[13]) + int(f[14])) * 1000000000 // os.sysconf(
        "SC_CLK_TCK")


class CpuWindow:
    """CPU time a set of processes used between start() and stop().

    pids() is asked at both ends, so a process born inside the window
    counts from zero.  With parent set, children that exited inside the
    window are taken from the parent's reaped time, less what they had
    already used when the window opened."""

    def __init__(self, pids, parent=None):
        self.pids = pids
        self.parent = parent

    def start(self):
        self.t0 = {p: cpu_ns(p) for p in self.pids()}
        self.t0 = {p: v for p, v in self.t0.items() if v is not None}
        self.r0 = reaped_ns(self.parent) if self.parent else 0

    def stop(self):
        """ns used in the window: (total, of which by exited processes)."""
        t1 = {p: cpu_ns(p) for p in set(self.pids()) | set(self.t0)}
        live = sum(v - self.t0.get(p, 0) for p, v in t1.items()
                   if v is not None)
        gone = 0
        if self.parent:
            before = sum(self.t0[p] for p, v in t1.items()
                         if v is None and p in self.t0)
            gone = max(0, reaped_ns(self.parent) - self.r0 - before)
        return live + gone, gone


def cpu_stat():
    """{cpuN: (busy ticks, total ticks)} from /proc/stat (how busy each
    CPU was, every process included: a contention figure only)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                out[line.split()[0]] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _status(pid, keys):
    r = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    r[k] = int(v.split()[0])
    except OSError:
        pass
    return r


def _pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_of(pids):
    """Sum over pids of VmRSS, VmHWM (peak) and Pss, in KB."""
    rss = hwm = pss = 0
    for p in pids:
        s = _status(p, ("VmRSS", "VmHWM"))
        rss += s.get("VmRSS", 0)
        hwm += s.get("VmHWM", 0)
        pss += _pss_kb(p)
    return {"rss_kb": rss, "peak_rss_kb": hwm, "pss_kb": pss,
            "processes": len(pids)}
