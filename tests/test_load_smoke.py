"""Smoke run of the load generator (crates/rampart-load) against the real server.

Runs bench/smoke.sh: a handful of connections and a few hundred messages through every
workload (flood, fixed-rate latency, idle connections, logins over STARTTLS and direct TLS,
each SASL mechanism) with --strict, so any stream error, failed login or missing message
fails the test. The real side-by-side benchmark (bench/peers.sh) is not a test.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_load_generator_smoke():
    if shutil.which("openssl") is None:
        pytest.skip("openssl (used by bench/common.sh to make the test certificate) is not installed")
    r = subprocess.run(["bash", str(ROOT / "bench" / "smoke.sh")], cwd=ROOT, capture_output=True,
                       text=True, timeout=230, env=os.environ.copy())
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "smoke: ok" in r.stdout, out[-6000:]
