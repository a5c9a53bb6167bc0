"""Crash durability of the compliance archive: the archive write is durable
before delivery, so a SIGKILL can never lose a message someone already got.

Covers: A floods B with 2000 chat messages and the server is SIGKILLed
mid-flood (as soon as B has received a few hundred); after a restart every
message B received (matched by its body id) is in the archive with a
'delivered' verdict, under the archive id its <stanza-id/> named; nothing
is archived twice or that A never sent; `archive verify` passes over the
recovered file, `archive.db` also opens read-only with Python's sqlite3 and
agrees; the restarted server keeps appending to the same chain.

Also: a clean stop leaves archive.db complete on its own; a commit log that
does not continue the archive database (here, another server's log files
copied over) stops the server from starting, with the
reason; `archive verify` still runs on the database; with the log files moved
away, as the message says, the server starts and continues the database's chain.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import sqlite3
import time
from pathlib import Path

from rampart_harness import (
    RampartServer, ServerDied, archive_search, archive_verdict, archive_verify, deliver_messages,
    make_client, stanza_id_of,
)

WORK = Path(__file__).resolve().parent / ".work" / "test_archive_crash"
FLOOD = 2000
KILL_AFTER = 300


async def test_sigkill_mid_flood_loses_nothing_delivered():
    srv = RampartServer(WORK)
    srv.start()
    alice, bob = srv.add_user("alice"), srv.add_user("bob")
    a = make_client(srv, alice, "flood")
    b = make_client(srv, bob, "sink")
    tag = "f" + secrets.token_hex(4)
    try:
        await a.login()
        await b.login()
        await b.go_online()
        sent = [f"{tag} {i:05d}" for i in range(FLOOD)]
        for body in sent:
            a.send_msg(bob.jid, body)
        deadline = time.monotonic() + 60
        while len(b.messages.items) < KILL_AFTER:
            assert time.monotonic() < deadline, (
                f"B received only {len(b.messages.items)} messages in 60s; server log:\n"
                + srv.log_text())
            await asyncio.sleep(0.005)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        assert srv.proc.returncode == -signal.SIGKILL
        received = {m["body"]: stanza_id_of(m, bob.jid)
                    for m in b.messages.items if (m["body"] or "").startswith(tag)}
        a.kill()
        b.kill()
        assert len(received) >= KILL_AFTER
        print(f"B received {len(received)} of {FLOOD} before SIGKILL")

        srv.start()
        r = archive_verify(srv)
        assert r.returncode == 0 and r.stdout.startswith("ok:"), (r.stdout, r.stderr)
        recs = archive_search(srv, tag, "--limit", "100000")
        archived = {}
        for rec in recs:
            assert rec["body"] not in archived, f"archived twice: {rec['body']}"
            archived[rec["body"]] = rec
        assert set(archived) <= set(sent), set(archived) - set(sent)
        lost = sorted(set(received) - set(archived))
        assert not lost, (f"{len(lost)} of {len(received)} messages B received are not in the "
                          f"archive after the crash, e.g. {lost[:5]}")
        for body, sid in received.items():
            rec = archived[body]
            assert archive_verdict(rec)[0] == "delivered", rec
            assert sid == str(rec["seq"]), (body, sid, rec["seq"])
        print(f"archived {len(archived)} of {FLOOD}; {len(archived) - len(received)} archived "
              "but not seen by B before the kill")

        # read-only look at the file agrees with the CLI
        con = sqlite3.connect(f"file:{srv.data_dir / 'archive.db'}?mode=ro", uri=True)
        try:
            rows = dict(con.execute(
                "SELECT body, seq FROM records WHERE kind = 'message' AND body LIKE ?",
                (tag + " %",)).fetchall())
            head = con.execute("SELECT seq FROM chain_head").fetchone()[0]
            n, lo, hi = con.execute("SELECT count(*), min(seq), max(seq) FROM records").fetchone()
        finally:
            con.close()
        assert rows == {b_: r_["seq"] for b_, r_ in archived.items()}
        assert (n, lo, hi) == (head, 1, head), "records must be dense from 1 to the head"

        # the restarted server continues the chain
        await deliver_messages(srv, alice, bob, [f"{tag} after restart"])
        assert [r_["body"] for r_ in archive_search(srv, f"{tag} after restart")] == \
            [f"{tag} after restart"]
        r = archive_verify(srv)
        assert r.returncode == 0, (r.stdout, r.stderr)
    finally:
        a.kill()
        b.kill()
        srv.stop()


LOG_FILES = ("archive-commit.0.log", "archive-commit.1.log")


async def test_a_commit_log_that_does_not_continue_the_database_stops_the_start():
    here = RampartServer(WORK / "log-here")
    other = RampartServer(WORK / "log-other")
    tag = "l" + secrets.token_hex(4)
    try:
        here.start()
        alice, bob = here.add_user("alice"), here.add_user("bob")
        await deliver_messages(here, alice, bob, [f"{tag} here {i}" for i in range(2)])
        here.stop()
        other.start()
        carol, dave = other.add_user("carol"), other.add_user("dave")
        # more records than `here` holds, so the foreign log reaches past its head
        await deliver_messages(other, carol, dave, [f"{tag} other {i}" for i in range(12)])
        other.stop()
        # a clean stop leaves the database complete on its own (the applier drained)
        for srv, n in ((here, 2), (other, 12)):
            con = sqlite3.connect(f"file:{srv.data_dir / 'archive.db'}?mode=ro", uri=True)
            try:
                got = con.execute("SELECT count(*) FROM records WHERE kind = 'message' "
                                  "AND body LIKE ?", (tag + " %",)).fetchone()[0]
            finally:
                con.close()
            assert got == n, f"archive.db holds {got} of {n} messages after a clean stop"
        for name in LOG_FILES:
            shutil.copyfile(other.data_dir / name, here.data_dir / name)

        try:
            here.start()
        except ServerDied as e:
            refusal = str(e)
        else:
            raise AssertionError("the server started on a commit log from another archive")
        assert "the compliance archive cannot take records" in refusal, refusal
        assert "does not continue the archive database" in refusal, refusal

        # the database itself is intact and can be checked
        r = archive_verify(here)
        assert r.returncode == 0 and r.stdout.startswith("ok:"), (r.stdout, r.stderr)

        # moving the log away (what the refusal says to do) lets the server go on
        for name in LOG_FILES:
            (here.data_dir / name).rename(here.workdir / name)
        here.start()
        await deliver_messages(here, alice, bob, [f"{tag} here after"])
        bodies = sorted(r_["body"] for r_ in archive_search(here, tag))
        assert bodies == sorted([f"{tag} here 0", f"{tag} here 1", f"{tag} here after"]), bodies
        r = archive_verify(here)
        assert r.returncode == 0 and r.stdout.startswith("ok:"), (r.stdout, r.stderr)
    finally:
        here.stop()
        other.stop()
