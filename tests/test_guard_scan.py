"""`rampart scan FILE...` (threat defense from the command line; see
crates/rampart/src/admin.rs and main.rs) with the built-in YARA rules only.

Contract checked: one line per file, in the order given — ``PATH: OK``,
``PATH: ENGINE:SIGNATURE FOUND (reason)`` (or the rule id for a file-name
finding), ``PATH: ERROR reason`` — and the exit status: 0 when every file is
clean, 1 when any file is malicious (even if others could not be read),
non-zero with "some files could not be scanned" on standard error when files
could not be read and none was malicious. Also: the file-name lure rule
(``lure.executable``, a double extension such as ``holiday.jpg.exe``), the
Rampart test marker rule, an empty file, and a configuration with
``[guard] enabled = false`` (scan refuses to claim anything is clean).

Scanning with ClamAV (clamd) is covered in test_guard_clamav.py. No server
process is needed: the command reads the configuration and scans.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rampart_harness import RampartServer

WORK_ROOT = Path(__file__).resolve().parent / ".work"

EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = "ENTERPRISE-IM-MALWARE-TEST-" + "MARKER-7f3a9c"


@pytest.fixture(scope="module")
def cfg() -> RampartServer:
    """A configuration (never started) to run `rampart scan` with."""
    return RampartServer(WORK_ROOT / "test_guard_scan")


@pytest.fixture
def files(tmp_path):
    d = tmp_path
    (d / "eicar.com").write_text(EICAR)
    (d / "notes.txt").write_text("Meeting notes: ship 2.4 on Monday.\n")
    (d / "report.pdf").write_bytes(b"%PDF-1.4\n% harmless test document\n%%EOF\n")
    (d / "marker.txt").write_text(f"some text around {MARKER} and after\n")
    (d / "holiday.jpg.exe").write_bytes(b"not really an executable")
    (d / "empty.dat").write_bytes(b"")
    (d / "a-directory").mkdir()
    return d


def lines_of(r) -> dict[str, str]:
    out = {}
    for line in r.stdout.splitlines():
        path, _, verdict = line.partition(": ")
        out[path] = verdict
    return out


def scan(cfg, *paths):
    return cfg.cli("scan", *[str(p) for p in paths])


def test_eicar_file_is_found(cfg, files):
    p = files / "eicar.com"
    r = scan(cfg, p)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    v = lines_of(r)[str(p)]
    assert re.fullmatch(r"\S*EICAR_Test_File FOUND \(.*signature EICAR_Test_File\)", v), v


def test_clean_file_is_ok(cfg, files):
    p = files / "notes.txt"
    r = scan(cfg, p)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == f"{p}: OK\n", r.stdout


def test_mixed_list_reports_each_file_in_order(cfg, files):
    order = ["notes.txt", "eicar.com", "report.pdf", "marker.txt", "empty.dat"]
    r = scan(cfg, *(files / n for n in order))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    got = [line.partition(": ")[0] for line in r.stdout.splitlines()]
    assert got == [str(files / n) for n in order], r.stdout
    v = lines_of(r)
    assert v[str(files / "notes.txt")] == "OK"
    assert v[str(files / "report.pdf")] == "OK"
    assert v[str(files / "empty.dat")] == "OK"
    assert "EICAR_Test_File FOUND" in v[str(files / "eicar.com")]
    assert "Rampart_Test_Marker FOUND" in v[str(files / "marker.txt")]


def test_executable_name_is_found(cfg, files):
    p = files / "holiday.jpg.exe"
    r = scan(cfg, p)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    v = lines_of(r)[str(p)]
    assert v.startswith("lure.executable FOUND"), v
    assert "double extension (.exe)" in v, v


def test_unreadable_files_are_errors(cfg, files):
    missing, directory = files / "no-such-file.bin", files / "a-directory"
    r = scan(cfg, missing, files / "notes.txt", directory)
    assert r.returncode != 0, (r.stdout, r.stderr)
    v = lines_of(r)
    assert v[str(missing)].startswith("ERROR"), v
    assert v[str(directory)].startswith("ERROR"), v
    assert v[str(files / "notes.txt")] == "OK", v
    assert "some files could not be scanned" in r.stderr, r.stderr


def test_malicious_wins_over_unreadable(cfg, files):
    r = scan(cfg, files / "no-such-file.bin", files / "eicar.com")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    v = lines_of(r)
    assert v[str(files / "no-such-file.bin")].startswith("ERROR"), v
    assert "FOUND" in v[str(files / "eicar.com")], v


def test_scan_refuses_when_threat_defense_is_off(cfg, files, tmp_path):
    conf = tmp_path / "off.toml"
    conf.write_text(cfg.config_text() + "\n[guard]\nenabled = false\n")
    r = cfg.cli("scan", str(files / "eicar.com"), config=conf)
    assert r.returncode != 0 and "switched off" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert "OK" not in r.stdout, r.stdout
