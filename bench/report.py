"""report.py - the human summary of one bench/run.py result: the tables
run.py prints at the end of a run, and `run.py --table FILE` reprints.

Reads the result dict only.  A result written before a field existed
(haproxy, p99.9, schedstat CPU, spread) prints "-" where it is missing.
"""

TARGETS = ("direct", "sluice", "nginx", "haproxy")
ABBR = {"direct": "dir", "sluice": "slc", "nginx": "ngx", "haproxy": "hap"}


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def num(v, width, prec=0):
    if v is None:
        return "%*s" % (width, "-")
    return "%*.*f" % (width, prec, v)


def ratio(a, b, floor=0.1):
    if a is None or b is None:
        return None
    return a / max(b, floor)


def lat_key(c):
    return "ttfe_us" if c["mode"] == "ttfb" else "latency_us"


def pg_per_row(cells):
    """PostgreSQL's CPU over all the cells' usage rows, us per row (each
    cell's own figure at a low request rate is mostly the cluster's
    background work spread over few rows)."""
    s = [c["targets"]["sluice"] for c in cells]
    rows = sum(t.get("pg_rows", 0) for t in s)
    us = sum(t.get("pg_rows", 0) * t.get("pg_cpu_us_per_row", 0) for t in s)
    return us / rows if rows else None


def latency_table(cells, out):
    hdr = "%-9s %-5s %3s | %s | %s | %s | %s" % (
        "mode", "size", "c",
        " ".join("%8s" % ("rps " + ABBR[t]) for t in TARGETS),
        " ".join("%7s" % ("p50 " + ABBR[t]) for t in TARGETS),
        " ".join("%7s" % ("p99 " + ABBR[t]) for t in TARGETS),
        " ".join("%6s" % ("+p50 " + ABBR[t][0]) for t in TARGETS[1:]))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for c in cells:
        t, k = c["targets"], lat_key(c)
        base = get(t, "direct", k, "p50")
        added = [None if get(t, x, k, "p50") is None or base is None
                 else get(t, x, k, "p50") - base for x in TARGETS[1:]]
        print("%-9s %-5s %3d | %s | %s | %s | %s" % (
            c["mode"], c["size"], c["concurrency"],
            " ".join(num(get(t, x, "rps"), 8) for x in TARGETS),
            " ".join(num(get(t, x, k, "p50"), 7) for x in TARGETS),
            " ".join(num(get(t, x, k, "p99"), 7) for x in TARGETS),
            " ".join(num(a, 6) for a in added)), file=out)
    print("(latency in us: nonstream and answer* = whole response, stream "
          "= whole 20-event stream, ttfb = first SSE event; +p50 = p50 "
          "added over direct by sluice, nginx, haproxy)", file=out)


def cpu_table(cells, out):
    hdr = ("%-9s %-5s %3s | %7s %7s %7s %7s %7s | %5s %5s | %6s %6s %6s | "
           "%5s %5s" % ("mode", "size", "c", "slc", "slc wk", "nodb",
                        "ngx", "hap", "s/n", "s/h", "pg/row", "rows/r",
                        "drops", "rps/n", "rps/h"))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for c in cells:
        t = c["targets"]
        cpu = {x: get(t, x, "proxy_cpu_us_per_req") for x in
               ("sluice", "sluice_nodb", "nginx", "haproxy")}
        s = t["sluice"]
        n = s.get("served", s.get("requests"))
        rows = s.get("pg_rows")
        drops = None if "ring_drops" not in s else \
            sum(s["ring_drops"].values())
        print("%-9s %-5s %3d | %s %s %s %s %s | %s %s | %s %s %s | %s %s" % (
            c["mode"], c["size"], c["concurrency"],
            num(cpu["sluice"], 7, 1), num(s.get("workers_cpu_us_per_req"),
                                          7, 1),
            num(cpu["sluice_nodb"], 7, 1), num(cpu["nginx"], 7, 1),
            num(cpu["haproxy"], 7, 1),
            num(ratio(cpu["sluice"], cpu["nginx"]), 5, 2),
            num(ratio(cpu["sluice"], cpu["haproxy"]), 5, 2),
            num(s.get("pg_cpu_us_per_row"), 6, 1),
            num(ratio(rows, n, 1), 6, 2), num(drops, 6),
            num(ratio(s["rps"], get(t, "nginx", "rps"), 1e-9), 5, 2),
            num(ratio(s["rps"], get(t, "haproxy", "rps"), 1e-9), 5, 2)),
            file=out)
    print("(CPU in us per request from schedstat: slc = every sluiced "
          "process, slc wk = its workers alone, nodb = sluice without "
          "database, ngx/hap = every nginx/haproxy process or thread; "
          "s/n, s/h = sluice over nginx, haproxy; pg/row = PostgreSQL's "
          "CPU per usage row added, rows/r = rows per request, drops = "
          "usage events sluice dropped because a ring lane was full; "
          "rps/n, rps/h = sluice's throughput over nginx's, haproxy's)",
          file=out)


def tail_table(cells, out):
    rows = [c for c in cells if c["mode"] == "nonstream" and
            c["concurrency"] in (1, 10)]
    if not rows:
        return
    hdr = "%-5s %3s | %s" % ("size", "c", " | ".join(
        "%-20s" % ("%s p50/p99/p99.9" % ABBR[t]) for t in TARGETS))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for c in rows:
        print("%-5s %3d | %s" % (c["size"], c["concurrency"], " | ".join(
            "%-20s" % "/".join(
                "-" if get(c["targets"], t, "latency_us", q) is None else
                "%d" % get(c["targets"], t, "latency_us", q)
                for q in ("p50", "p99", "p999")) for t in TARGETS)),
            file=out)
    print("(nonstream whole-response latency in us, sluice metering into "
          "PostgreSQL)", file=out)


def answer_table(cells, out):
    by = {(c["mode"], c["size"]): c for c in cells
          if c["mode"].startswith("answer")}
    sizes = [s for s in ("1KB", "100KB") if ("answer", s) in by and
             ("answer_gz", s) in by]
    if not sizes:
        return
    hdr = "%-5s %3s | %15s | %s" % ("answr", "c", "bytes plain/gz",
                                     " | ".join("%-20s" % (
                                         x + " plain/gz/ratio") for x in
                                         ("slc", "slc wk", "ngx", "hap")))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for s in sizes:
        p, g = by[("answer", s)], by[("answer_gz", s)]
        cols = []
        for x, f in (("sluice", "proxy_cpu_us_per_req"),
                     ("sluice", "workers_cpu_us_per_req"),
                     ("nginx", "proxy_cpu_us_per_req"),
                     ("haproxy", "proxy_cpu_us_per_req")):
            a, b = get(p["targets"], x, f), get(g["targets"], x, f)
            cols.append("%-20s" % ("%s/%s/%s" % (
                num(a, 1, 1), num(b, 1, 1), num(ratio(b, a), 1, 2))))
        print("%-5s %3d | %15s | %s" % (
            s, p["concurrency"], "%s/%s" % (
                num(get(p["targets"], "direct", "bytes_per_req"), 1),
                num(get(g["targets"], "direct", "bytes_per_req"), 1)),
            " | ".join(cols)), file=out)
    print("(CPU in us per request, schedstat; bytes = what the client "
          "received per response, head included; ratio = gzip/plain)",
          file=out)


def xlate_table(cells, out):
    """Translated against passthrough, the same client and answer."""
    if not cells:
        return
    hdr = "%-16s %-5s %-6s %3s | %-20s | %-20s | %11s" % (
        "client>upstream", "answr", "mode", "c", "slc pass/xlat/ratio",
        "slc wk pass/xlat/rat", "rps pass/xl")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for c in cells:
        p, x = c["targets"]["passthrough"], c["targets"]["translated"]
        cols = []
        for f in ("proxy_cpu_us_per_req", "workers_cpu_us_per_req"):
            a, b = p.get(f), x.get(f)
            cols.append("%-20s" % ("%s/%s/%s" % (
                num(a, 1, 1), num(b, 1, 1), num(ratio(b, a), 1, 2))))
        bad = sum(t.get(k, 0) for t in (p, x) for k in ("errors", "non2xx"))
        print("%-16s %-5s %-6s %3d | %s | %5.0f/%5.0f%s" % (
            c["direction"], c["size"], "stream" if c["stream"] else "json",
            c["concurrency"], " | ".join(cols), p["rps"], x["rps"],
            "  %d FAILED" % bad if bad else ""), file=out)
    print("(CPU in us per request, schedstat: slc = every sluiced process, "
          "slc wk = its workers; pass = the client's format to an upstream "
          "of that format, xlat = to one of the other format; ratio = "
          "xlat/pass)", file=out)


def spread_table(spread, out):
    if not spread:
        return
    for s in spread:
        print("spread %d workers, %2d clients: max share / fair share %s "
              "(target <= %.1f: %s); shares %s; worker CPU s %s; %.0f "
              "rps" % (
                  s["workers"], s["clients"], num(s["max_over_fair"], 1, 2),
                  s["target"], "met" if s["met"] else "NOT MET",
                  " ".join("%.0f%%" % (100 * x) for x in s["shares"]),
                  " ".join("%.2f" % x for x in s["worker_cpu_s"]),
                  s["rps"]),
              file=out)


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def cache_table(cache, out):
    """Per concurrency: the medians of a hit, a miss, the cache off (for
    the key, in the same daemon, and in sluice without a cache) and
    nginx's floor; a hit over the floor; a miss over the cache off, as
    the median and range of the rounds' paired differences."""
    if not cache:
        return
    if "cells" not in cache:      # a result from before the floor cells
        cache = {"cells": [cache], "rounds": len(cache["runs"]["hit"])}
    print("answer cache, 1 KB chat, workers' CPU us/request, median of %d "
          "rounds (hit target < 10; a miss's cost over the cache off: "
          "none measurable)" % cache["rounds"], file=out)
    for cell in cache["cells"]:
        runs = cell["runs"]
        med = {k: median([r["workers_cpu_us_per_req"] for r in v])
               for k, v in runs.items()}
        line = "  c=%d: hit %.1f" % (cell["concurrency"], med["hit"])
        if med.get("floor"):
            line += " (nginx return 200 %.1f: x%.2f)" % (
                med["floor"], med["hit"] / med["floor"])
        line += ", miss %.1f" % med["miss"]
        base = "off_key" if "off_key" in runs else "off"
        d = [m["workers_cpu_us_per_req"] - o["workers_cpu_us_per_req"]
             for m, o in zip(runs["miss"], runs[base])]
        # noise only adds time: the least of each is the least noisy
        least = min(r["workers_cpu_us_per_req"] for r in runs["miss"]) - \
            min(r["workers_cpu_us_per_req"] for r in runs[base])
        line += ", %s %.1f: miss %+.1f (rounds %+.1f..%+.1f; least %+.1f)" \
            % (base, med[base], median(d), min(d), max(d), least)
        if base != "off" and "off" in med:
            line += ", sluice without cache %.1f" % med["off"]
        print(line, file=out)


def report(result, out):
    cells = result["cells"]
    if cells:       # none with run.py --only
        latency_table(cells, out)
        print(file=out)
        cpu_table(cells, out)
        print(file=out)
        tail_table(cells, out)
        print(file=out)
    answer_table(cells, out)
    xlate_table(result.get("xlate"), out)
    spread_table(result.get("spread"), out)
    cache_table(result.get("cache"), out)
    for k, m in result["memory"].items():
        extra = ""
        if "streams" in m:
            extra = " while holding %d streams (%s completed, mock saw %s " \
                    "open)" % (m["streams"], m["completed"],
                               m["mock_active_connections"])
        print("memory %-24s RSS %6.1f MB, sum of peaks %6.1f MB, PSS %6.1f "
              "MB over %d processes%s" % (
                  k, m["rss_kb"] / 1024, m["peak_rss_kb"] / 1024,
                  m["pss_kb"] / 1024, m["processes"], extra), file=out)
    if "contention" in result:
        busy = result["contention"]["proxy_cpu_busy_during_direct_max"]
        print("contention: max 1-min load average %.1f; CPU 0 busy %s "
              "(max) while only 'direct' ran, which leaves it idle" % (
                  result["contention"]["loadavg_1m_max"],
                  "-" if busy is None else "%.0f%%" % (100 * busy)),
              file=out)
    pg = result.get("postgresql")
    if pg:
        print("PostgreSQL %s: fsync %s, synchronous_commit %s, "
              "full_page_writes %s, wal_sync_method %s" % (
                  pg["server_version"], pg["fsync"],
                  pg["synchronous_commit"], pg["full_page_writes"],
                  pg["wal_sync_method"]), file=out)
        print("PostgreSQL CPU per usage row over all cells: %s us" %
              num(pg_per_row(cells), 1, 1), file=out)
    drops = [(c["mode"], c["size"], c["concurrency"],
              sum(c["targets"]["sluice"]["ring_drops"].values()))
             for c in cells if c["targets"]["sluice"].get("ring_drops")]
    if drops:
        print("usage events dropped (ring lane full): %d, in %s" % (
            sum(d[3] for d in drops), ", ".join(
                "%s %s c=%d (%d)" % d for d in drops)), file=out)
    print("usage rows in the table at the end: %s" %
          result.get("usage_rows"), file=out)
