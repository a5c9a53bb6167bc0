"""Retention and legal holds of the compliance archive (`rampart archive
retention --older-than DUR`, `archive hold add|list|release`).

Retention deletes whole segments, and a segment only closes at a UTC day
boundary (or after 100 000 records, a size not configurable from
rampart.toml), never the open one. To get closed segments in a test, the
server is first run twice under libfaketime (the pinned `libfaketime` PyPI
package ships the preload library) at noon UTC three and two days ago, then
at the real time.

Covers: `--older-than 0s` on an archive whose records are all in the open
segment deletes nothing; with old segments, a legal hold on one account
keeps that account's segment while the other old segment is deleted and
replaced by a signed tombstone (verify "ok" with 1 tombstone; the deleted
messages vanish from search and from the users' MAM view, the held ones and
today's stay); `hold list` shows the hold active, then released; after the
release the held segment is deleted too (2 tombstones, verify ok); the open
segment is never deleted; an export spanning the tombstones still verifies
independently; tampering after retention (a surviving record, a tombstone)
is still detected; releasing an unknown hold fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from rampart_harness import (
    RampartServer, archive_search, archive_verify, deliver_messages, verify_export_dir,
)

WORK = Path(__file__).resolve().parent / ".work" / "test_archive_retention"
DAY_MS = 86_400_000


def faketime_env(at: dt.datetime) -> dict:
    """Environment that runs a process with its clock starting at `at` (UTC)."""
    import libfaketime
    so_dir = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src"
    assert (so_dir / "libfaketime.so.1").exists(), so_dir
    return {
        "LD_PRELOAD": str(so_dir / "libfaketime.so.1"),
        "FAKETIME": "@" + at.strftime("%Y-%m-%d %H:%M:%S"),
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
        "TZ": "UTC",
    }


def noon_days_ago(n: int) -> dt.datetime:
    today = dt.datetime.now(dt.timezone.utc).date()
    return dt.datetime.combine(today - dt.timedelta(days=n), dt.time(12, 0))


def verify_ok(srv: RampartServer) -> re.Match:
    r = archive_verify(srv)
    assert r.returncode == 0, (r.stdout, r.stderr)
    m = re.match(r"^ok: (\d+) records, (\d+) tombstones, (\d+) checkpoints verified", r.stdout)
    assert m, r.stdout
    return m


def retention(srv: RampartServer, older_than: str) -> tuple[int, int, int]:
    r = srv.cli("archive", "retention", "--older-than", older_than)
    assert r.returncode == 0, (r.stdout, r.stderr)
    m = re.search(r"deleted (\d+) records in (\d+) segments .*?; (\d+) old segments kept under "
                  r"legal hold", r.stdout)
    assert m, r.stdout
    return tuple(int(x) for x in m.groups())


def bodies(srv, *args) -> set[str]:
    return {r["body"] for r in archive_search(srv, *args) if r.get("body")}


@pytest.fixture(scope="module")
def aged():
    """A server whose archive has records from three UTC days."""
    srv = RampartServer(WORK)
    users = {n: srv.add_user(n) for n in ("alice", "bob", "carol", "dave", "eve", "frank")}
    srv.phase_ms = {}
    try:
        for name, days, sender, recipient in (("old", 3, "alice", "bob"),
                                              ("older", 2, "carol", "dave")):
            srv.start(env=faketime_env(noon_days_ago(days)))
            asyncio.run(deliver_messages(srv, users[sender], users[recipient],
                                         [f"{name} {sender} {i}" for i in range(3)]))
            assert srv.stop() == 0, srv.log_text()
        srv.start()
        asyncio.run(deliver_messages(srv, users["eve"], users["frank"],
                                     [f"today eve {i}" for i in range(3)]))
        srv.users = users
        yield srv
    finally:
        srv.stop()


def test_open_segment_is_never_deleted(tmp_path):
    """Without faked time every record is in today's open segment."""
    srv = RampartServer(tmp_path / "fresh")
    srv.start()
    try:
        a, b = srv.add_user("a"), srv.add_user("b")
        asyncio.run(deliver_messages(srv, a, b, ["keep me 1", "keep me 2"]))
        import time
        time.sleep(1.1)
        assert retention(srv, "0s") == (0, 0, 0)
        assert retention(srv, "1s") == (0, 0, 0)
        assert bodies(srv, "keep") == {"keep me 1", "keep me 2"}
        assert int(verify_ok(srv).group(2)) == 0
    finally:
        srv.stop()


def test_faked_days_made_closed_segments(aged):
    """Precondition for the rest: the records really carry the faked times."""
    recs = archive_search(aged, None, "--limit", "10000")
    by_body = {r["body"]: r for r in recs if r.get("body")}
    now_ms = dt.datetime.now(dt.timezone.utc).timestamp() * 1000
    for body, days in (("old alice 0", 3), ("older carol 0", 2), ("today eve 0", 0)):
        age_days = (now_ms - by_body[body]["at_ms"]) / DAY_MS
        assert days - 1 < age_days < days + 1, (body, age_days, aged.log_text())
    con = sqlite3.connect(f"file:{aged.data_dir / 'archive.db'}?mode=ro", uri=True)
    try:
        segs = con.execute("SELECT first_seq, last_seq, day FROM segments ORDER BY first_seq"
                           ).fetchall()
    finally:
        con.close()
    assert len({d for _, _, d in segs}) == 3, segs


def test_hold_keeps_a_segment_and_release_lets_retention_delete_it(aged):
    alice, bob, dave = aged.users["alice"], aged.users["bob"], aged.users["dave"]
    before = int(verify_ok(aged).group(1))

    r = aged.cli("archive", "hold", "add", "--reason", "case 42: alice", "--from", alice.jid)
    assert r.returncode == 0, (r.stdout, r.stderr)
    hold_id = re.search(r"legal hold (\d+) added", r.stdout).group(1)
    r = aged.cli("archive", "hold", "list")
    assert r.returncode == 0 and re.search(rf"^{hold_id}\t.*\tactive\t.*case 42", r.stdout, re.M), \
        r.stdout

    deleted, segments, held = retention(aged, "1d")
    assert (segments, held) == (1, 1), (deleted, segments, held)
    assert deleted >= 3  # carol's 3 messages, plus logins/logouts of that day
    m = verify_ok(aged)
    assert int(m.group(2)) == 1, m.group(0)
    assert int(m.group(1)) == before - deleted
    assert bodies(aged, "older") == set(), "the deleted segment's messages are gone"
    assert bodies(aged, "old") == {f"old alice {i}" for i in range(3)}, "held messages stay"
    assert bodies(aged, "today") == {f"today eve {i}" for i in range(3)}
    # nothing of dave's remains, not even in the user's MAM view's index
    assert archive_search(aged, None, "--from", dave.jid) == []

    # An export that spans the tombstone verifies independently.
    out = aged.workdir / "export-after-retention"
    shutil.rmtree(out, ignore_errors=True)
    r = aged.cli("archive", "export", "--out", str(out))
    assert r.returncode == 0, (r.stdout, r.stderr)
    summary = verify_export_dir(out, (aged.data_dir / "archive-signing.pub").read_text().strip())
    assert summary["tombstones"] == 1, summary

    # Release; the hold no longer protects alice's segment.
    r = aged.cli("archive", "hold", "release", hold_id)
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = aged.cli("archive", "hold", "list")
    assert re.search(rf"^{hold_id}\t.*\treleased ", r.stdout, re.M), r.stdout
    r = aged.cli("archive", "hold", "release", hold_id)
    assert r.returncode != 0, "releasing a released hold must fail"
    r = aged.cli("archive", "hold", "release", "999999")
    assert r.returncode != 0, "releasing an unknown hold must fail"

    deleted2, segments2, held2 = retention(aged, "1d")
    assert (segments2, held2) == (1, 0), (deleted2, segments2, held2)
    m = verify_ok(aged)
    assert int(m.group(2)) == 2, m.group(0)
    assert bodies(aged, "old") == set()
    assert archive_search(aged, None, "--from", bob.jid) == []
    # today's (open) segment is never deleted, however short the age
    assert retention(aged, "0s") == (0, 0, 0)
    assert bodies(aged, "today") == {f"today eve {i}" for i in range(3)}

    # The server keeps appending after the tombstones; the chain still verifies.
    asyncio.run(deliver_messages(aged, aged.users["eve"], aged.users["frank"], ["today eve late"]))
    verify_ok(aged)


def test_tampering_after_retention_is_detected(aged):
    # runs after the retention test (module order): two tombstones exist
    aged.stop()
    db = aged.data_dir / "archive.db"
    backup = aged.workdir / "archive-backup"
    shutil.rmtree(backup, ignore_errors=True)
    backup.mkdir()
    for f in aged.data_dir.glob("archive.db*"):
        shutil.copy2(f, backup / f.name)

    def restore():
        for f in aged.data_dir.glob("archive.db*"):
            f.unlink()
        for f in backup.iterdir():
            shutil.copy2(f, aged.data_dir / f.name)

    def edit(*statements):
        con = sqlite3.connect(db, timeout=10)
        try:
            with con:
                for st in statements:
                    con.execute(*st)
        finally:
            con.close()

    con = sqlite3.connect(db)
    try:
        tombs = con.execute("SELECT first_seq, last_seq FROM tombstones ORDER BY first_seq"
                            ).fetchall()
        first_live = con.execute("SELECT min(seq) FROM records").fetchone()[0]
    finally:
        con.close()
    assert len(tombs) == 2, tombs
    assert first_live == tombs[-1][1] + 1, (tombs, first_live)
    try:
        verify_ok(aged)
        # a surviving record
        edit(("UPDATE records SET body = 'forged' WHERE seq = ?", (first_live + 1,)))
        r = archive_verify(aged)
        assert r.returncode != 0 and r.stdout.startswith(f"TAMPERED: record {first_live + 1}:"), \
            r.stdout
        restore()
        verify_ok(aged)
        # a tombstone's time span widened (signature no longer matches)
        edit(("UPDATE tombstones SET min_at_ms = min_at_ms - 86400000 WHERE first_seq = ?",
              (tombs[1][0],)))
        r = archive_verify(aged)
        assert r.returncode != 0 and r.stdout.startswith(f"TAMPERED: record {tombs[1][0]}:"), \
            r.stdout
        assert "tombstone" in r.stdout, r.stdout
        restore()
        # a deleted tombstone leaves a gap
        edit(("DELETE FROM tombstones WHERE first_seq = ?", (tombs[0][0],)))
        r = archive_verify(aged)
        assert r.returncode != 0 and r.stdout.startswith("TAMPERED: record "), r.stdout
        restore()
        verify_ok(aged)
    finally:
        restore()
