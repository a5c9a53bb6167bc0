"""eDiscovery export of the compliance archive: `rampart archive export
--format jsonl|eml --out DIR [filters]`, checked independently in Python.

Covers: records.jsonl holds every matching record (same count and seqs as
`archive search` with the same filters) with all fields; manifest.json names
the archive's public key (== archive-signing.pub), the records, the spine,
a signed checkpoint covering them and SHA-256 of every file; the whole
export verifies with a from-scratch Python implementation of the documented
procedure (record digest encoding, chain, Ed25519 checkpoint signature via
`cryptography`), also for an export filtered to one account (the spine
carries the other records' digests only); negative controls: an edited
record, a forged manifest digest, a tampered checkpoint and a wrong public
key are all rejected by that verifier; the eml format writes one RFC 5322
message per record (headers for parties, seq, hash, verdict; the body
decodes back, non-ASCII included); exporting into a directory that holds an
export, or in an unknown format, fails with a message.
"""

from __future__ import annotations

import asyncio
import email
import email.header
import email.policy
import json
import secrets
import shutil
import time

import pytest

from rampart_harness import (
    archive_search, archive_verdict, deliver_messages, make_client, verify_export_dir,
)

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def iso_now() -> str:
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def export(server, out, *args: str) -> str:
    r = server.cli("archive", "export", "--out", str(out), *args, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def public_key(server) -> str:
    return (server.data_dir / "archive-signing.pub").read_text().strip()


@pytest.fixture
async def traffic(server):
    """Messages between three fresh users (one blocked, one non-ASCII)."""
    alice, bob, carol = server.add_user("alice"), server.add_user("bob"), server.add_user("carol")
    tag = "x" + secrets.token_hex(4)
    await deliver_messages(server, alice, bob, [f"{tag} hello {i}" for i in range(3)]
                           + [f"{tag} Grüße, 日本語 テキスト"])
    await deliver_messages(server, carol, bob, [f"{tag} carol here"])
    a = make_client(server, alice, "pc")
    try:
        await a.login()
        a.send_msg(carol.jid, f"{tag} {EICAR}")
        await a.wait_message(lambda m: m["type"] == "error")
        await a.logout()
    finally:
        a.kill()
    # logouts are journaled when the sessions end
    deadline = time.monotonic() + 10
    while len([r for r in archive_search(server, None, "--from", alice.jid)
               if r["kind"] == "logout"]) < 2:
        assert time.monotonic() < deadline, "alice's logouts never reached the archive"
        await asyncio.sleep(0.1)
    return alice, bob, carol, tag


async def test_full_export_verifies_independently(server, traffic, tmp_path):
    until = iso_now()
    time.sleep(0.2)
    out = tmp_path / "all"
    text = export(server, out, "--format", "jsonl", "--until", until)
    manifest = json.loads((out / "manifest.json").read_text())
    expect = archive_search(server, None, "--until", until, "--limit", "1000000")
    assert [r["seq"] for r in manifest["records"]] == sorted(r["seq"] for r in expect)
    assert f"exported {len(expect)} records" in text, text
    assert manifest["format"] == "jsonl"
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(expect)
    exported = {r["seq"]: r for r in map(json.loads, lines)}
    for r in expect:
        assert exported[r["seq"]] == r, f"exported record {r['seq']} differs from search"
    assert set(exported) == set(range(1, max(exported) + 1)), \
        "a full export from the beginning has every seq"
    summary = verify_export_dir(out, public_key(server))
    assert summary["records"] == len(expect)
    assert summary["checkpoint_seq"] >= max(exported)
    assert not (out / "eml").exists()


async def test_export_filtered_to_one_account(server, traffic, tmp_path):
    alice, bob, carol, tag = traffic
    out = tmp_path / "alice"
    export(server, out, "--from", alice.jid)
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    expect = archive_search(server, None, "--from", alice.jid, "--limit", "100000")
    assert sorted(r["seq"] for r in recs) == sorted(r["seq"] for r in expect)
    assert recs and all(alice.jid in (r["from"].split("/")[0], r["to"].split("/")[0])
                        for r in recs), recs
    kinds = {r["kind"] for r in recs}
    assert {"message", "login", "logout"} <= kinds, kinds
    blocked = [r for r in recs if archive_verdict(r)[0] == "blocked"]
    assert len(blocked) == 1 and EICAR in blocked[0]["body"], blocked
    summary = verify_export_dir(out, public_key(server))
    # carol's message to bob sits between alice's records: digest only
    assert summary["spine"] > summary["records"], summary
    manifest_text = (out / "manifest.json").read_text()
    assert f"{tag} carol here" not in manifest_text

    # text filter
    out2 = tmp_path / "text"
    export(server, out2, "--text", "Grüße")
    recs2 = [json.loads(x) for x in (out2 / "records.jsonl").read_text().splitlines()]
    assert [r["body"] for r in recs2 if tag in r["body"]] == [f"{tag} Grüße, 日本語 テキスト"]
    verify_export_dir(out2, public_key(server))


async def test_verifier_rejects_altered_exports(server, traffic, tmp_path):
    alice, *_ = traffic
    out = tmp_path / "orig"
    export(server, out, "--from", alice.jid)
    verify_export_dir(out, public_key(server))

    def variant(name):
        d = tmp_path / name
        shutil.copytree(out, d)
        return d, json.loads((d / "manifest.json").read_text())

    # 1. an edited record: the file digest no longer matches
    d, m = variant("edited")
    lines = (d / "records.jsonl").read_text().splitlines()
    rec = json.loads(lines[-2])
    rec["at_ms"] += 1
    lines[-2] = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
    (d / "records.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(AssertionError, match="sha256"):
        verify_export_dir(d)
    # 2. ... and with the manifest's file digest forged to match: the record's
    #    content no longer matches the chain
    import hashlib
    m["files"] = [[n, hashlib.sha256((d / n).read_bytes()).hexdigest()] for n, _ in m["files"]]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AssertionError, match="does not match"):
        verify_export_dir(d)
    # 3. a forged spine digest breaks the chain to the checkpoint
    d, m = variant("spine")
    seq, dg = m["spine"][1]
    m["spine"][1] = [seq, ("0" if dg[0] != "0" else "1") + dg[1:]]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AssertionError):
        verify_export_dir(d)
    # 4. a tampered checkpoint
    d, m = variant("checkpoint")
    m["checkpoint"]["at_ms"] += 1
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AssertionError, match="checkpoint signature"):
        verify_export_dir(d)
    # 5. someone else's key
    with pytest.raises(AssertionError):
        verify_export_dir(out, "00" * 32)


async def test_eml_export(server, traffic, tmp_path):
    alice, bob, carol, tag = traffic
    out = tmp_path / "eml"
    export(server, out, "--format", "eml", "--with", bob.jid)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "eml"
    recs = {r["seq"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    assert recs and len(manifest["records"]) == len(recs)
    emls = sorted((out / "eml").iterdir())
    assert len(emls) == len(recs), (len(emls), len(recs))
    listed = {x["file"] for x in manifest["records"]}
    assert listed == {f"eml/{p.name}" for p in emls}
    assert {n for n, _ in manifest["files"]} >= listed
    verify_export_dir(out, public_key(server))

    bodies_seen = set()
    for mr in manifest["records"]:
        r = recs[mr["seq"]]
        msg = email.message_from_bytes((out / mr["file"]).read_bytes(), policy=email.policy.default)
        assert str(msg["From"]) == r["from"], (msg["From"], r["from"])
        assert str(msg["To"]) == r["to"], (msg["To"], r["to"])
        assert msg["X-Rampart-Seq"] == str(r["seq"])
        assert msg["X-Rampart-Hash"] == r["hash"]
        assert msg["X-Rampart-Prev-Hash"] == r["prev_hash"]
        assert msg["X-Rampart-Verdict"] == archive_verdict(r)[0]
        assert msg["X-Rampart-Kind"] == r["kind"]
        assert msg["Date"] is not None and msg["Message-ID"]
        text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
        assert text.get_content().rstrip("\r\n") == (r["body"] or ""), (r["seq"], r["body"])
        if r["stanza_xml"]:
            xml = next(p for p in msg.walk() if p.get_content_type() == "application/xml")
            assert xml.get_content() == r["stanza_xml"] or \
                xml.get_payload(decode=True).decode() == r["stanza_xml"]
        bodies_seen.add(r["body"])
    assert f"{tag} Grüße, 日本語 テキスト" in bodies_seen
    assert f"{tag} carol here" in bodies_seen


async def test_export_errors(server, traffic, tmp_path):
    out = tmp_path / "twice"
    export(server, out)
    r = server.cli("archive", "export", "--out", str(out))
    assert r.returncode != 0 and "already" in r.stderr, (r.stdout, r.stderr)
    r = server.cli("archive", "export", "--format", "pdf", "--out", str(tmp_path / "pdf"))
    assert r.returncode != 0 and "format" in r.stderr, (r.stdout, r.stderr)


async def test_cli_verify_export(server, traffic, tmp_path):
    """`rampart archive verify-export` accepts a genuine export (with the archive's public
    key), and refuses an edited record, a wrong key and a malformed key."""
    out = tmp_path / "exp"
    export(server, out, "--format", "jsonl")
    key = public_key(server)
    r = server.cli("archive", "verify-export", str(out), "--public-key", key)
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stdout + r.stderr

    records = out / "records.jsonl"
    lines = records.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["body"] = "rewritten after the fact"
    lines[0] = json.dumps(rec)
    records.write_text("\n".join(lines) + "\n")
    r = server.cli("archive", "verify-export", str(out))
    assert r.returncode == 1 and r.stdout.startswith("INVALID"), r.stdout + r.stderr

    export(server, tmp_path / "exp2", "--format", "jsonl")
    r = server.cli("archive", "verify-export", str(tmp_path / "exp2"), "--public-key", "ab" * 32)
    assert r.returncode == 1 and "INVALID" in r.stdout, r.stdout + r.stderr
    r = server.cli("archive", "verify-export", str(tmp_path / "exp2"), "--public-key", "xyz")
    assert r.returncode != 0 and "64 hex digits" in r.stderr, r.stderr
