#!/usr/bin/env python3
"""When in a run the slow messages fell: reads a `rampart-load ... --dump-latencies FILE`
file ("SENT_NS LATENCY_NS" lines) and prints how many messages took longer than THRESHOLD_MS
(default 3), grouped into clusters (slow messages less than 20 ms apart), with each cluster's
start (ms from the first message), span, count and worst latency. Periodic clusters point at
periodic work in the server (e.g. checkpoints); see docs/benchmarks-log.md, session 8.
Usage: bench/latency_clusters.py FILE [THRESHOLD_MS] [MAX_CLUSTERS_SHOWN]
"""
import sys

GAP_NS = 20_000_000  # slow messages closer than this belong to one cluster

path = sys.argv[1]
threshold_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
shown = int(sys.argv[3]) if len(sys.argv) > 3 else 40
with open(path) as f:
    rows = sorted(tuple(map(int, line.split())) for line in f if line.strip())
if not rows:
    sys.exit(f"{path}: no samples")
t0 = rows[0][0]
slow = [(sent - t0, lat) for sent, lat in rows if lat > threshold_ms * 1e6]
print(f"{len(rows)} messages; {len(slow)} over {threshold_ms:.1f} ms")
clusters = []  # [start, end, count, worst]
for at, lat in slow:
    if clusters and at - clusters[-1][1] < GAP_NS:
        c = clusters[-1]
        c[1], c[2], c[3] = at, c[2] + 1, max(c[3], lat)
    else:
        clusters.append([at, at, 1, lat])
print(f"{len(clusters)} clusters")
for start, end, n, worst in clusters[:shown]:
    print(f"at {start / 1e6:8.1f} ms  span {(end - start) / 1e6:5.1f} ms  n={n:3d}  "
          f"max {worst / 1e6:.1f} ms")
