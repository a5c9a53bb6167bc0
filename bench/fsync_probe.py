#!/usr/bin/env python3
"""The file system's own sync latency, for comparison with the archive's commit tail.

Default: writes 16 KiB and fsyncs it every 0.5 ms for DURATION seconds (default 8) on a file
in DIR (default /tmp), then prints the count and the p50/p99/p99.9/max latency of the fsync
calls.

--split: what a durable commit is made of on this disk. On a preallocated 8 MiB file, every
0.5 ms for DURATION seconds each: a small buffered write + fdatasync (what the archive's
commit log does); a 4 KiB O_DIRECT write alone (the write's round trip to the device, no
flush); a 4 KiB O_DIRECT|O_DSYNC write (write and flush). Needs a file system that allows
O_DIRECT (not tmpfs).

Usage: bench/fsync_probe.py [--split] [DIR] [DURATION]
"""
import mmap
import os
import sys
import time

args = [a for a in sys.argv[1:] if a != "--split"]
split = "--split" in sys.argv[1:]
directory = args[0] if args else "/tmp"
duration = float(args[1]) if len(args) > 1 else 8.0
path = os.path.join(directory, "rampart-fsync-probe.bin")
SIZE = 8 << 20


def summary(lat):
    lat = sorted(lat)
    n = len(lat)
    return (f"{n} calls: p50 {lat[n // 2] * 1e6:.0f} us  p99 {lat[int(n * .99)] * 1e6:.0f} us  "
            f"p99.9 {lat[int(n * .999)] * 1e6:.0f} us  max {lat[-1] * 1e6:.0f} us")


def timed(op, step=4096):
    """Run op(offset) every 0.5 ms for `duration` seconds, the offset moving by `step`
    within the file's 8 MiB; its latencies."""
    lat = []
    off = 0
    end = time.time() + duration
    while time.time() < end:
        t = time.perf_counter()
        op(off)
        lat.append(time.perf_counter() - t)
        off = (off + step) % SIZE
        time.sleep(0.0005)
    return lat


def plain():
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    buf = b"x" * 16384
    try:
        def op(off):
            os.pwrite(fd, buf, off)
            os.fsync(fd)
        return timed(op, len(buf))
    finally:
        os.close(fd)


def with_split():
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"\0" * SIZE)
    os.fsync(fd)
    frame = b"y" * 600
    page = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
    page.write(b"z" * 4096)

    def logged(off):
        os.pwrite(fd, frame, off)
        os.fdatasync(fd)
    out = [("write + fdatasync (the commit log)", timed(logged))]
    os.close(fd)
    for label, flags in [("O_DIRECT write, no flush", os.O_DIRECT),
                         ("O_DIRECT|O_DSYNC write (write + flush)", os.O_DIRECT | os.O_DSYNC)]:
        fd = os.open(path, os.O_RDWR | flags)
        try:
            out.append((label, timed(lambda off: os.pwritev(fd, [page], off))))
        finally:
            os.close(fd)
    return out


try:
    if split:
        for label, lat in with_split():
            print(f"{label}: {summary(lat)}")
    else:
        print(f"fsync: {summary(plain())}")
finally:
    if os.path.exists(path):
        os.unlink(path)
