"""Tamper evidence of the compliance archive: edit `<data_dir>/archive.db`
behind the server's back with Python's sqlite3 module and check that
`rampart archive verify` exits non-zero naming the first bad record
("TAMPERED: record N: ..."), while an untouched archive verifies "ok".

This module's server makes a signed checkpoint every 5 records
(`[archive] checkpoint_every_records = 5`).

Covers, each on a copy of the stopped server's data directory: an untouched
copy verifies; a changed body; a changed stanza XML (what MAM replays); a
blocked verdict rewritten as delivered; a deleted record in the middle; two
records' contents swapped; the stored hash of a record replaced; the last
record deleted; the tail truncated with the chain head rewritten to match
(caught by a signed checkpoint); a checkpoint's hash altered; a record
changed while the server runs (and keeps appending) is still reported.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from rampart_harness import (
    RampartServer, archive_search, archive_verify, deliver_messages, make_client,
)

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
WORK = Path(__file__).resolve().parent / ".work" / "test_archive_tamper"
TAMPERED = re.compile(r"^TAMPERED: record (\d+): (.+)$")
CONTENT_COLS = ["at_ms", "kind", "direction", "from_jid", "to_jid", "remote_domain",
                "stanza_id", "body", "stanza_xml", "verdict", "verdict_rule",
                "verdict_reason", "meta_json", "prev_hash", "hash"]


async def populate(srv: RampartServer) -> None:
    alice, bob, carol = srv.add_user("alice"), srv.add_user("bob"), srv.add_user("carol")
    await deliver_messages(srv, alice, bob, [f"alice to bob {i}" for i in range(8)])
    await deliver_messages(srv, carol, alice, [f"carol to alice {i}" for i in range(4)])
    a = make_client(srv, alice, "pc")
    try:
        await a.login()
        a.send_msg(bob.jid, f"infected {EICAR}")
        await a.wait_message(lambda m: m["type"] == "error", what="the policy-violation bounce")
        a.send_msg(bob.jid, "alice to bob after the block")  # bob is offline
        await a.sync()
        await a.logout()
    finally:
        a.kill()


@pytest.fixture(scope="module")
def archive_server():
    srv = RampartServer(WORK, extra_toml="[archive]\ncheckpoint_every_records = 5\n")
    srv.start()
    try:
        asyncio.run(populate(srv))
        r = archive_verify(srv)
        assert r.returncode == 0 and r.stdout.startswith("ok:"), (r.stdout, r.stderr)
        srv.records = sorted(archive_search(srv, None, "--limit", "10000"),
                             key=lambda r: r["seq"])
        assert srv.stop() == 0, srv.log_text()
        yield srv
    finally:
        srv.stop()


def clone(srv: RampartServer, name: str) -> tuple[Path, Path]:
    """Copy the (stopped) server's data directory; returns (config, archive.db)."""
    dst = srv.workdir / f"clone-{name}"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(srv.data_dir, dst / "data")
    cfg = dst / "rampart.toml"
    cfg.write_text(srv.config_text().replace(str(srv.data_dir), str(dst / "data")))
    return cfg, dst / "data" / "archive.db"


def sql(db: Path, *statements: tuple) -> None:
    con = sqlite3.connect(db, timeout=10)
    try:
        with con:
            for st in statements:
                con.execute(*st) if isinstance(st, tuple) else con.execute(st)
    finally:
        con.close()


def row(db: Path, seq: int) -> dict:
    con = sqlite3.connect(db, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        r = con.execute("SELECT * FROM records WHERE seq = ?", (seq,)).fetchone()
        return dict(r) if r else None
    finally:
        con.close()


def expect_tampered(srv: RampartServer, cfg: Path, seq: int, reason: str = "") -> str:
    r = archive_verify(srv, config=cfg)
    first = (r.stdout.splitlines() or [""])[0]
    assert r.returncode != 0, f"verify accepted a tampered archive: {r.stdout} {r.stderr}"
    m = TAMPERED.match(first)
    assert m, f"expected 'TAMPERED: record N: ...', got stdout {r.stdout!r} stderr {r.stderr!r}"
    assert int(m.group(1)) == seq, f"expected the first bad record to be {seq}: {first}"
    assert reason.lower() in m.group(2).lower(), (reason, first)
    return first


def messages(srv) -> list[dict]:
    return [r for r in srv.records if r["kind"] == "message"]


def test_schema_is_what_these_tests_edit(archive_server):
    _cfg, db = clone(archive_server, "schema")
    con = sqlite3.connect(db)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(records)")]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert cols == ["seq", *CONTENT_COLS], cols
    assert {"records", "checkpoints", "tombstones", "chain_head", "segments"} <= tables, tables


def test_untouched_copy_verifies(archive_server):
    cfg, _db = clone(archive_server, "untouched")
    r = archive_verify(archive_server, config=cfg)
    assert r.returncode == 0, (r.stdout, r.stderr)
    m = re.match(r"^ok: (\d+) records, 0 tombstones, (\d+) checkpoints verified; head seq (\d+)",
                 r.stdout)
    assert m, r.stdout
    n = len(archive_server.records)
    assert int(m.group(1)) == n and int(m.group(3)) == n, (n, r.stdout)
    # checkpoint_every_records = 5: a checkpoint follows the group commit that crosses each
    # 5 records, so how many there are depends on how the records were batched.
    assert 1 <= int(m.group(2)) <= n // 5, f"expected checkpoints every >= 5 records: {r.stdout}"


def test_changed_body(archive_server):
    victim = messages(archive_server)[3]
    cfg, db = clone(archive_server, "body")
    sql(db, ("UPDATE records SET body = ? WHERE seq = ?", ("I never said that", victim["seq"])))
    expect_tampered(archive_server, cfg, victim["seq"], "content does not match")


def test_changed_stanza_xml(archive_server):
    victim = messages(archive_server)[5]
    cfg, db = clone(archive_server, "xml")
    sql(db, ("UPDATE records SET stanza_xml = replace(stanza_xml, 'alice to bob', 'alice to eve') "
             "WHERE seq = ?", (victim["seq"],)))
    assert "alice to eve" in row(db, victim["seq"])["stanza_xml"]
    expect_tampered(archive_server, cfg, victim["seq"])


def test_blocked_verdict_rewritten_as_delivered(archive_server):
    blocked = [r for r in archive_server.records
               if isinstance(r["verdict"], dict) and r["verdict"].get("verdict") == "blocked"]
    assert len(blocked) == 1, archive_server.records
    cfg, db = clone(archive_server, "verdict")
    sql(db, ("UPDATE records SET verdict = 'delivered', verdict_rule = NULL, "
             "verdict_reason = NULL WHERE seq = ?", (blocked[0]["seq"],)))
    expect_tampered(archive_server, cfg, blocked[0]["seq"])


def test_deleted_record_in_the_middle(archive_server):
    victim = messages(archive_server)[2]
    cfg, db = clone(archive_server, "delete")
    sql(db, ("DELETE FROM records WHERE seq = ?", (victim["seq"],)))
    expect_tampered(archive_server, cfg, victim["seq"], "missing")


def test_swapped_records(archive_server):
    msgs = messages(archive_server)
    i, j = msgs[1]["seq"], msgs[6]["seq"]
    cfg, db = clone(archive_server, "swap")
    ri, rj = row(db, i), row(db, j)
    sets = ", ".join(f"{c} = ?" for c in CONTENT_COLS)
    sql(db,
        (f"UPDATE records SET {sets} WHERE seq = ?", (*[rj[c] for c in CONTENT_COLS], i)),
        (f"UPDATE records SET {sets} WHERE seq = ?", (*[ri[c] for c in CONTENT_COLS], j)))
    assert row(db, i)["body"] == rj["body"]
    expect_tampered(archive_server, cfg, i)
    # swapping only the bodies (hashes left in place) is caught at the first one too
    cfg, db = clone(archive_server, "swap-bodies")
    sql(db, ("UPDATE records SET body = ? WHERE seq = ?", (rj["body"], i)),
        ("UPDATE records SET body = ? WHERE seq = ?", (ri["body"], j)))
    expect_tampered(archive_server, cfg, i, "content does not match")


def test_replaced_record_hash(archive_server):
    victim = messages(archive_server)[4]
    cfg, db = clone(archive_server, "hash")
    sql(db, ("UPDATE records SET hash = ? WHERE seq = ?", (b"\x01" * 32, victim["seq"])))
    expect_tampered(archive_server, cfg, victim["seq"])


def test_deleted_last_record(archive_server):
    last = archive_server.records[-1]["seq"]
    cfg, db = clone(archive_server, "tail")
    sql(db, ("DELETE FROM records WHERE seq = ?", (last,)))
    expect_tampered(archive_server, cfg, last)


def test_truncated_tail_with_rewritten_head_is_caught_by_a_checkpoint(archive_server):
    cfg, db = clone(archive_server, "truncate")
    con = sqlite3.connect(db)
    try:
        cps = [r[0] for r in con.execute("SELECT seq FROM checkpoints ORDER BY seq")]
    finally:
        con.close()
    assert len(cps) >= 2, cps
    keep = cps[-1] - 3  # cut records a signed checkpoint covers
    kept = row(db, keep)
    sql(db, ("DELETE FROM records WHERE seq > ?", (keep,)),
        ("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (keep, kept["hash"])))
    # The commit log still holds the newest records, and opening would put them back (or,
    # cut mid-batch, refuse appends): this attacker removes it too.
    for log in db.parent.glob("archive-commit.*.log"):
        log.unlink()
    first = expect_tampered(archive_server, cfg, keep + 1)
    assert "checkpoint" in first or "truncated" in first, first


def test_altered_checkpoint(archive_server):
    cfg, db = clone(archive_server, "checkpoint")
    con = sqlite3.connect(db)
    try:
        seq = con.execute("SELECT seq FROM checkpoints ORDER BY seq LIMIT 1").fetchone()[0]
    finally:
        con.close()
    sql(db, ("UPDATE checkpoints SET at_ms = at_ms + 1 WHERE seq = ?", (seq,)))
    first = expect_tampered(archive_server, cfg, seq)
    assert "checkpoint" in first, first


async def test_tampering_while_the_server_runs(archive_server):
    """WAL mode: a second writer edits a record under a live server, which keeps
    appending; verify still names the edited record."""
    cfg, db = clone(archive_server, "live")
    srv = RampartServer(archive_server.workdir / "live-server")
    shutil.rmtree(srv.data_dir, ignore_errors=True)
    shutil.copytree(db.parent, srv.data_dir)
    srv.start()
    try:
        r = archive_verify(srv)
        assert r.returncode == 0 and r.stdout.startswith("ok:"), (r.stdout, r.stderr)
        victim = messages(archive_server)[0]
        live_db = srv.data_dir / "archive.db"
        sql(live_db, ("UPDATE records SET body = body || '!' WHERE seq = ?", (victim["seq"],)))
        u, v = srv.add_user("dora"), srv.add_user("emil")
        await deliver_messages(srv, u, v, ["after the edit 1", "after the edit 2"])
        assert len(archive_search(srv, "after edit")) == 2
        expect_tampered(srv, srv.config_path, victim["seq"], "content does not match")
        srv.assert_alive()
    finally:
        srv.stop()
