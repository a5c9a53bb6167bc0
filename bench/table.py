#!/usr/bin/env python3
"""Print the side-by-side table (Markdown) from rampart-load --json results.

Usage: table.py RESULTS_DIR NAME...   (reads RESULTS_DIR/NAME-WORKLOAD.rN.json, one per
round, or NAME-WORKLOAD.json) and prints each metric's median over the rounds.
The first name starting with "rampart" is compared with the better of the non-Rampart names.
"""
import glob
import json
import os
import statistics
import sys

res, names = sys.argv[1], sys.argv[2:]


def runs(name, workload):
    """Every round's report of one server on one workload."""
    files = glob.glob(os.path.join(glob.escape(res), f"{glob.escape(name)}-{workload}.r*.json"))
    files.append(os.path.join(res, f"{name}-{workload}.json"))
    out = []
    for path in sorted(files):
        try:
            with open(path) as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            pass
    return out


def median(name, workload, path):
    vals = [v for v in (get(d, *path) for d in runs(name, workload)) if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


# (label, workload, path, higher_is_better, target: (kind, value) or None, format)
ROWS = [
    ("flood: delivered msg/s", "flood", ("msgs_per_s",), True, ("ratio", 3.0), "{:.0f}"),
    ("flood: server CPU µs/msg", "flood", ("server_cpu_us_per_msg",), False, ("ratio", 1 / 3), "{:.1f}"),
    ("flood: server cores used", "flood", ("usage", "server_cores"), None, None, "{:.2f}"),
    ("flood: generator cores used", "flood", ("usage", "generator_cores"), None, None, "{:.2f}"),
    ("flood: machine busy %", "flood", ("usage", "machine_busy"), None, None, "{:.0f}", 100),
    ("flood: load average (1 min)", "flood", ("usage", "loadavg_1m"), None, None, "{:.1f}"),
    ("flood: p99 latency ms", "flood", ("latency", "p99_us"), False, None, "{:.1f}", 1e-3),
    ("flood: missing msgs", "flood", ("missing",), None, None, "{:.0f}"),
    ("latency: delivered msg/s", "latency", ("msgs_per_s",), None, None, "{:.0f}"),
    ("latency: p50 µs", "latency", ("latency", "p50_us"), False, None, "{:.0f}"),
    ("latency: p99 µs", "latency", ("latency", "p99_us"), False, ("ratio", 1 / 5), "{:.0f}"),
    ("latency: p99.9 µs", "latency", ("latency", "p999_us"), False, None, "{:.0f}"),
    ("latency: server CPU µs/msg", "latency", ("server_cpu_us_per_msg",), False, None, "{:.1f}"),
    ("latency: generator cores used", "latency", ("usage", "generator_cores"), None, None, "{:.2f}"),
    ("latency: load average (1 min)", "latency", ("usage", "loadavg_1m"), None, None, "{:.1f}"),
    ("idle: connections", "idle", ("idle_connections",), None, None, "{:.0f}"),
    ("idle: server RSS KiB/conn", "idle", ("rss_kib_per_conn",), False, ("abs", 10.0), "{:.1f}"),
    ("idle: logins/s while opening", "idle", ("connections", "logins_per_s"), True, None, "{:.0f}"),
    ("logins: logins/s", "logins", ("logins_per_s",), True, None, "{:.0f}"),
    ("logins: server CPU ms/login", "logins", ("server_cpu_ms_per_login",), False, None, "{:.2f}"),
    ("logins: generator cores used", "logins", ("usage", "generator_cores"), None, None, "{:.2f}"),
]

rampart = next((n for n in names if n.startswith("rampart")), None)
# Variants ("ejabberd-mam") are shown beside the peers but are not what the targets compare.
peers = [n for n in names if not n.startswith("rampart") and "-" not in n]
print()
print("| metric | " + " | ".join(names) + " | Rampart vs better peer | target | met? |")
print("|---" * (len(names) + 4) + "|")
for row in ROWS:
    label, w, path, higher, target, fmt = row[:6]
    scale = row[6] if len(row) > 6 else 1
    vals = {n: median(n, w, path) for n in names}
    vals = {n: (v * scale if isinstance(v, (int, float)) else v) for n, v in vals.items()}
    cells = [fmt.format(vals[n]) if isinstance(vals[n], (int, float)) else "–" for n in names]
    ratio, tgt, met = "", "", ""
    r = vals.get(rampart) if rampart else None
    pv = [vals[p] for p in peers if isinstance(vals[p], (int, float))]
    if higher is not None and isinstance(r, (int, float)) and pv:
        best = max(pv) if higher else min(pv)
        if best > 0:
            ratio = f"{r / best:.2f}×"
    if target:
        kind, t = target
        if kind == "abs":
            tgt = f"≤ {t:g}"
            if isinstance(r, (int, float)):
                met = "yes" if r <= t else f"no ({r / t:.1f}× over)"
        else:
            tgt = f"≥ {t:g}×" if higher else f"≤ 1/{1 / t:.0f}×"
            if ratio:
                x = float(ratio[:-1])
                ok = x >= t if higher else x <= t
                met = "yes" if ok else (f"no (needs {t / x:.1f}× more)" if higher else f"no ({x / t:.1f}× over)")
    print(f"| {label} | " + " | ".join(cells) + f" | {ratio} | {tgt} | {met} |")
errs = []
for n in names:
    for w in ("flood", "latency", "idle", "logins"):
        for i, d in enumerate(runs(n, w), 1):
            e = get(d, "errors")
            if e:
                errs.append(f"{n} {w} (run {i}): " + ", ".join(f"{k} ×{v}" for k, v in e.items()))
print()
print("errors: " + ("; ".join(errs) if errs else "none"))
