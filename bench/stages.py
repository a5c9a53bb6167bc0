#!/usr/bin/env python3
"""Where each message's latency went, stage by stage (bench/stage-timing.patch).

Usage: bench/stages.py GENERATOR_DUMP SERVER_STAGES [SLOW_MS]
Joins rampart-load's --dump-latencies file (SENT LATENCY per line) with the server's
RAMPART_X_STAGES file on the send time (both on CLOCK_MONOTONIC), then prints each stage's
p50/p90/p99/max, its mean among the messages slower than SLOW_MS (default 3), and which stage
was the largest in each slow message. Stages: net_in (generator write to the server's read),
guard, to_commit (queued for the archive until the commit thread took it), to_append and
back (0 on a thread that commits itself), append (CPU and write, without the sync), sync
(the commit log's fdatasync), to_delivery (commit to the delivery task), deliver,
to_recipient (to the recipient's session task), flush (its write), net_out (to the
generator's read)."""
import sys
gen = {}
for line in open(sys.argv[1]):
    a, b = line.split()
    gen[int(a)] = int(b)
S = {}; R = {}
for line in open(sys.argv[2]):
    p = line.split()
    if p[0] == 'S':
        S[int(p[1])] = list(map(int, p[2:]))
    else:
        R[int(p[1])] = list(map(int, p[2:]))
thr = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
names = ['net_in', 'guard', 'to_commit', 'to_append', 'append', 'sync', 'back', 'to_delivery', 'deliver', 'to_recipient', 'flush', 'net_out']
rows = []
for sent, lat in gen.items():
    s = S.get(sent); r = R.get(sent)
    if not s or not r or s[2] == 0:
        continue
    read, gated, picked, b0, b1, resumed, batch, seen, delivered, sy = s
    deq, fl = r
    recv = sent + lat
    segs = [read - sent, gated - read, picked - gated, b0 - picked, b1 - b0 - sy, sy, resumed - b1, seen - resumed, delivered - seen, deq - seen, fl - deq, recv - fl]
    rows.append((lat, segs, batch, sent))
print(f"joined {len(rows)} of {len(gen)} messages")
def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))]
print(f"{'segment':16} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  mean_in_slow  (ms; slow = latency > {thr} ms)")
slow = [r for r in rows if r[0] / 1e6 > thr]
for i, n in enumerate(names):
    v = [r[1][i] / 1e6 for r in rows]
    ms = sum(r[1][i] for r in slow) / len(slow) / 1e6 if slow else 0
    print(f"{n:16} {pct(v,.5):8.3f} {pct(v,.9):8.3f} {pct(v,.99):8.3f} {max(v):8.3f}  {ms:8.3f}")
lat = [r[0] / 1e6 for r in rows]
print(f"{'latency':16} {pct(lat,.5):8.3f} {pct(lat,.9):8.3f} {pct(lat,.99):8.3f} {max(lat):8.3f}  n_slow={len(slow)}")
b = [r[2] for r in rows]
print("batch size p50/p99/max", pct(b, .5), pct(b, .99), max(b))
# which segment dominates each slow message
from collections import Counter
c = Counter()
for r in slow:
    c[names[max(range(len(names)), key=lambda i: r[1][i])]] += 1
print("dominant segment in slow messages:", c.most_common())
