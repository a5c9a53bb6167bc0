#!/usr/bin/env python3
"""The file system's own fsync latency, for comparison with the archive's commit tail.

Writes 16 KiB and fsyncs it every 0.5 ms for DURATION seconds (default 8) on a file in DIR
(default /tmp), then prints the count and the p50/p99/p99.9/max latency of the fsync calls.
Usage: bench/fsync_probe.py [DIR] [DURATION]
"""
import os
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
duration = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
path = os.path.join(directory, "rampart-fsync-probe.bin")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
buf = b"x" * 16384
lat = []
off = 0
try:
    end = time.time() + duration
    while time.time() < end:
        os.pwrite(fd, buf, off)
        off = (off + len(buf)) % (4 << 20)
        t = time.perf_counter()
        os.fsync(fd)
        lat.append(time.perf_counter() - t)
        time.sleep(0.0005)
finally:
    os.close(fd)
    os.unlink(path)
lat.sort()
n = len(lat)
print(f"{n} fsyncs: p50 {lat[n // 2] * 1e6:.0f} us  p99 {lat[int(n * .99)] * 1e6:.0f} us  "
      f"p99.9 {lat[int(n * .999)] * 1e6:.0f} us  max {lat[-1] * 1e6:.0f} us")
