"""Compliance archive: what gets journaled, as an administrator sees it with
`rampart archive search --json` (issue "Compliance archive").

Covers: delivered and offline messages exchanged with slixmpp are archived
with from (full JID), to, kind, direction, verdict, body, stanza XML and a
timestamp inside the test window, and the delivered copy carries a XEP-0359
<stanza-id by='recipient bare JID' id='SEQ'/> naming the archive record;
full-text search (all words must occur, case- and diacritic-insensitive,
prefixes with '*', non-ASCII words such as "Grüße" and "日本語 テキスト");
the --from/--with/--since/--until/--verdict/--limit filters; a message with
a XEP-0334 <no-store/> hint is archived anyway; chat-state-only signalling is
not; messages refused by threat defense (EICAR, an executable link on a bare
IP) are archived with verdict blocked, the rule and the reason, and the
sender gets policy-violation; a message to an unknown account is archived as
bounced; a message to several resources, or delivered later from offline
storage, is archived once (every copy names the same id), and XEP-0280
carbon copies are not archived again; the blast rule's
quarantine and every later message of the quarantined account are archived
as quarantined with their rules; subscription requests, logins and logouts
are journaled; messages refused because the recipient blocks the sender
(XEP-0191), and messages to remote domains, are archived as bounced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import time
import xml.etree.ElementTree as ET

import pytest

from rampart_harness import (
    DOMAIN, archive_search, archive_verdict, archive_verify, stanza_error, stanza_id_of,
)

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def now_ms() -> int:
    return int(time.time() * 1000)


def tag() -> str:
    """A unique word (one full-text token)."""
    return "t" + secrets.token_hex(6)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(
        timespec="milliseconds")


def by_body(recs: list[dict]) -> dict[str, dict]:
    return {r["body"]: r for r in recs if r.get("body") is not None}


async def poll(fn, pred, timeout: float = 10, what: str = "a condition"):
    """Call fn() until pred(result) holds (bounded); returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        res = await asyncio.to_thread(fn)
        if pred(res):
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {res!r}")
        await asyncio.sleep(0.2)


async def test_delivered_and_offline_messages_are_archived_with_fields(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await clients(alice, "pc")
    b = await clients(bob, "phone")
    await a.go_online()
    await b.go_online()
    t = tag()
    t0 = now_ms()
    a.send_msg(bob.jid, f"hello bob {t}")
    a.send_msg(carol.jid, f"hello carol {t}")  # carol is offline
    got = await b.wait_message(lambda m: m["body"] == f"hello bob {t}")
    await a.sync()
    t1 = now_ms()

    recs = archive_search(server, t)
    assert len(recs) == 2, recs
    m = by_body(recs)
    to_bob, to_carol = m[f"hello bob {t}"], m[f"hello carol {t}"]
    for rec, to in ((to_bob, bob.jid), (to_carol, carol.jid)):
        assert rec["kind"] == "message", rec
        assert rec["direction"] == "local", rec
        assert rec["from"] == f"{alice.jid}/pc", rec
        assert rec["to"] == to, rec
        assert t0 - 50 <= rec["at_ms"] <= t1 + 50, (t0, rec["at_ms"], t1)
        assert isinstance(rec["seq"], int) and rec["seq"] >= 1, rec
        assert HEX64.match(rec["hash"]) and HEX64.match(rec["prev_hash"]), rec
        assert rec["body"] in rec["stanza_xml"], rec
    assert archive_verdict(to_bob)[0] == "delivered", to_bob
    assert archive_verdict(to_carol)[0] == "offline", to_carol
    assert to_bob["seq"] != to_carol["seq"]
    # newest first
    assert [r["seq"] for r in recs] == sorted((r["seq"] for r in recs), reverse=True)

    # The delivered copy names its archive record (XEP-0359).
    assert stanza_id_of(got, bob.jid) == str(to_bob["seq"]), got

    # Carol gets hers later, from offline storage, with the same archive id.
    c = await clients(carol, "tab")
    await c.go_online()
    off = await c.wait_message(lambda m: m["body"] == f"hello carol {t}")
    assert stanza_id_of(off, carol.jid) == str(to_carol["seq"]), off

    r = archive_verify(server)
    assert r.returncode == 0 and r.stdout.startswith("ok:"), (r.returncode, r.stdout, r.stderr)


async def test_full_text_search_is_unicode_aware(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    b = await clients(bob, "phone")
    await b.go_online()
    bodies = [
        "Viele Grüße aus München, Straße 7",
        "日本語 テキスト を 検索",
        "Ελληνικά κείμενο και русский текст",
        "plain english words only",
    ]
    for body in bodies:
        a.send_msg(bob.jid, body)
    await b.messages.collect(len(bodies), lambda m: m["body"] in bodies, what="the bodies")

    def bodies_for(q: str) -> set[str]:
        return {r["body"] for r in archive_search(server, q, "--from", alice.jid)}

    assert bodies_for("Grüße") == {bodies[0]}
    assert bodies_for("grüße") == {bodies[0]}, "full-text search must be case-insensitive"
    assert bodies_for("gruße") == {bodies[0]}, "full-text search must ignore diacritics"
    assert bodies_for("MÜNCHEN") == {bodies[0]}
    assert bodies_for("Münch*") == {bodies[0]}, "a trailing * is a prefix query"
    assert bodies_for("straße 7") == {bodies[0]}
    assert bodies_for("日本語 テキスト") == {bodies[1]}
    assert bodies_for("テキスト") == {bodies[1]}
    assert bodies_for("検索") == {bodies[1]}
    assert bodies_for("русский") == {bodies[2]}
    assert bodies_for("κείμενο") == {bodies[2]}
    # every word must occur
    assert bodies_for("Grüße テキスト") == set()
    assert bodies_for("english nowhere") == set()
    assert bodies_for("words") == {bodies[3]}
    # FTS5 syntax in user input is inert, not an error
    assert bodies_for('english OR "nothing"') == set()
    bodies_for("NEAR(english words) AND -x")  # must not be a query error (exit 0)


async def test_search_filters(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await clients(alice, "pc")
    b = await clients(bob, "phone")
    c = await clients(carol, "tab")
    await b.go_online()
    await c.go_online()
    t = tag()
    a.send_msg(bob.jid, f"early one {t}")
    a.send_msg(carol.jid, f"early two {t}")
    await b.wait_message(lambda m: m["body"] == f"early one {t}")
    await c.wait_message(lambda m: m["body"] == f"early two {t}")
    await asyncio.sleep(0.05)
    mid = now_ms()
    await asyncio.sleep(0.05)
    b.send_msg(alice.jid, f"late three {t}")  # alice online? she never sent presence
    c.send_msg(bob.jid, f"late four {t}")
    await b.wait_message(lambda m: m["body"] == f"late four {t}")
    await b.sync()
    await asyncio.sleep(0.05)
    end = now_ms()

    everything = {f"early one {t}", f"early two {t}", f"late three {t}", f"late four {t}"}
    assert set(by_body(archive_search(server, t))) == everything

    def bodies(*f: str) -> set[str]:
        return set(by_body(archive_search(server, t, *f)))

    # --from: sent or received by the account
    assert bodies("--from", alice.jid) == {f"early one {t}", f"early two {t}", f"late three {t}"}
    assert bodies("--from", alice.localpart) == bodies("--from", alice.jid), \
        "a JID without @ is a user of the configured domain"
    assert bodies("--from", carol.jid) == {f"early two {t}", f"late four {t}"}
    # --with (with --from: the other party; alone: a party)
    assert bodies("--from", alice.jid, "--with", bob.jid) == {f"early one {t}", f"late three {t}"}
    assert bodies("--from", bob.jid, "--with", carol.jid) == {f"late four {t}"}
    assert bodies("--with", carol.jid) == {f"early two {t}", f"late four {t}"}
    # --since / --until (RFC 3339); since inclusive, until exclusive
    assert bodies("--since", iso(mid)) == {f"late three {t}", f"late four {t}"}
    assert bodies("--until", iso(mid)) == {f"early one {t}", f"early two {t}"}
    assert bodies("--since", iso(mid), "--until", iso(end)) == {f"late three {t}", f"late four {t}"}
    assert bodies("--since", iso(end + 60_000)) == set()
    assert bodies("--since", "1h") == everything, "a duration means that long ago"
    # --verdict: alice never sent available presence, so 'late three' went offline
    assert bodies("--verdict", "offline") == {f"late three {t}"}
    assert bodies("--verdict", "delivered") == everything - {f"late three {t}"}
    assert bodies("--verdict", "blocked") == set()
    # --limit keeps the newest
    lim = archive_search(server, t, "--limit", "2")
    assert {r["body"] for r in lim} == {f"late four {t}", f"late three {t}"}, lim
    # bad filter values are refused with a message
    r = server.cli("archive", "search", t, "--verdict", "maybe", "--json")
    assert r.returncode != 0 and "verdict" in r.stderr, (r.returncode, r.stdout, r.stderr)
    r = server.cli("archive", "search", t, "--since", "yesterday-ish", "--json")
    assert r.returncode != 0, (r.returncode, r.stdout, r.stderr)


async def test_no_store_hint_is_archived_anyway_and_chat_states_are_not(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    b = await clients(bob, "phone")
    await b.go_online()
    t = tag()
    msg = a.make_message(mto=bob.jid, mbody=f"please forget this {t}", mtype="chat")
    msg.append(ET.fromstring("<no-store xmlns='urn:xmpp:hints'/>"))
    msg.append(ET.fromstring("<no-permanent-store xmlns='urn:xmpp:hints'/>"))
    msg.send()
    got = await b.wait_message(lambda m: m["body"] == f"please forget this {t}")
    # signalling only: a chat state without a body
    a.send_raw(f"<message to='{bob.jid}/phone' type='chat' id='cs-{t}'>"
               "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    await b.wait_message(lambda m: m["id"] == f"cs-{t}")

    recs = archive_search(server, t)
    assert len(recs) == 1, recs
    rec = recs[0]
    assert archive_verdict(rec)[0] == "delivered"
    assert "no-store" in rec["stanza_xml"], rec["stanza_xml"]
    assert stanza_id_of(got, bob.jid) == str(rec["seq"])
    everything = archive_search(server, None, "--from", alice.jid, "--with", bob.jid)
    assert not [r for r in everything if r.get("stanza_id") == f"cs-{t}"], \
        "a chat-state-only message must not be archived"


async def test_blocked_messages_are_archived_with_verdict_and_rule(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    b = await clients(bob, "phone")
    await b.go_online()
    t = tag()
    bad = {
        f"test file {t} {EICAR}": "signature",
        f"new screensaver {t} http://203.0.113.7/x.scr": "lure.",
    }
    for body in bad:
        a.send_msg(bob.jid, body)
    errs = await a.messages.collect(
        2, lambda m: m["type"] == "error", what="policy-violation bounces")
    for e in errs:
        assert stanza_error(e)[0] == "policy-violation", e
    a.send_msg(bob.jid, f"harmless {t}")
    await b.wait_message(lambda m: m["body"] == f"harmless {t}")
    await b.messages.assert_none(lambda m: m["body"] in bad, within=0.3, what="a blocked message")

    blocked = archive_search(server, t, "--verdict", "blocked")
    assert len(blocked) == 2, blocked
    for rec in blocked:
        assert rec["body"] in bad, rec
        verdict, rule, reason = archive_verdict(rec)
        assert verdict == "blocked", rec
        assert rule and rule.startswith(bad[rec["body"]]), (rule, rec)
        assert reason, rec
        assert rec["from"] == f"{alice.jid}/pc" and rec["to"] == bob.jid, rec
        assert rec["kind"] == "message"
    # the EICAR text itself is searchable (by the words around it)
    assert [r["body"] for r in archive_search(server, f"test file {t}")] == [f"test file {t} {EICAR}"]
    assert {archive_verdict(r)[0] for r in archive_search(server, t)} == {"blocked", "delivered"}


async def test_message_to_unknown_account_is_archived_as_bounced(server, new_user, clients):
    alice = new_user("alice")
    ghost = server.unknown_user()
    a = await clients(alice, "pc")
    t = tag()
    a.send_msg(ghost.jid, f"anyone home {t}")
    err = await a.wait_message(lambda m: m["type"] == "error")
    assert stanza_error(err)[0] == "service-unavailable"
    recs = archive_search(server, t)
    assert len(recs) == 1, recs
    verdict, _rule, cond = archive_verdict(recs[0])
    assert verdict == "bounced" and cond == "service-unavailable", recs[0]
    assert recs[0]["to"] == ghost.jid


async def test_subscriptions_logins_and_logouts_are_journaled(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    t0 = now_ms()
    a = await clients(alice, "desk")
    b = await clients(bob, "phone")
    await b.go_online()
    a.send_presence(pto=bob.jid, ptype="subscribe")
    await b.wait_presence(lambda p: p["type"] == "subscribe")
    await a.logout()
    t1 = now_ms()

    def journal():
        return archive_search(server, None, "--from", alice.jid)

    recs = await poll(journal, lambda rs: any(r["kind"] == "logout" for r in rs),
                      what="alice's logout in the archive")
    kinds = [r["kind"] for r in reversed(recs)]  # oldest first
    assert kinds[0] == "login", kinds
    assert "subscription" in kinds and kinds.index("subscription") > 0, kinds
    assert kinds[-1] == "logout", kinds
    login = next(r for r in recs if r["kind"] == "login")
    assert login["from"] == f"{alice.jid}/desk", login
    assert login["to"] == DOMAIN, login
    assert '"desk"' in (login["meta_json"] or ""), login
    assert "127.0.0.1" in (login["meta_json"] or ""), "login records the client address"
    logout = next(r for r in recs if r["kind"] == "logout")
    assert logout["from"] == f"{alice.jid}/desk", logout
    sub = next(r for r in recs if r["kind"] == "subscription")
    assert sub["from"] == alice.jid and sub["to"] == bob.jid, sub
    assert "subscribe" in (sub["meta_json"] or "") + (sub["stanza_xml"] or ""), sub
    for r in recs:
        assert t0 - 50 <= r["at_ms"] <= now_ms(), r
    assert login["at_ms"] <= sub["at_ms"] <= logout["at_ms"] <= t1 + 5000


async def test_message_to_several_resources_and_from_offline_storage_is_archived_once(
        server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await clients(alice, "pc")
    b1 = await clients(bob, "one")
    b2 = await clients(bob, "two")
    await b1.go_online()
    await b2.go_online()
    t = tag()
    a.send_msg(bob.jid, f"to both {t}")
    a.send_msg(carol.jid, f"stored {t}")
    m1 = await b1.wait_message(lambda m: m["body"] == f"to both {t}")
    m2 = await b2.wait_message(lambda m: m["body"] == f"to both {t}")
    c = await clients(carol, "later")
    await c.go_online()
    await c.wait_message(lambda m: m["body"] == f"stored {t}")
    await asyncio.sleep(0.3)
    recs = archive_search(server, t)
    assert sorted(r["body"] for r in recs) == [f"stored {t}", f"to both {t}"], recs
    seq = next(r["seq"] for r in recs if r["body"] == f"to both {t}")
    assert stanza_id_of(m1, bob.jid) == stanza_id_of(m2, bob.jid) == str(seq)


async def test_carbon_copies_are_not_archived_again(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a1 = await clients(alice, "pc")
    a2 = await clients(alice, "tab")
    b1 = await clients(bob, "one")
    b2 = await clients(bob, "two")
    for c in (a1, a2, b1, b2):
        await c.go_online()
    for c in (a2, b2):
        resp = await c.iq("set", "<enable xmlns='urn:xmpp:carbons:2'/>")
        assert resp["type"] == "result", resp
    t = tag()
    a1.send_msg(f"{bob.jid}/one", f"with carbons {t}")
    await b1.wait_message(lambda m: m["body"] == f"with carbons {t}")
    for c in (a2, b2):  # the sent and the received carbon
        await c.wait_message(lambda m: f"with carbons {t}" in str(m), what="a carbon copy")
    await a1.sync()
    recs = archive_search(server, t)
    assert len(recs) == 1, recs
    assert recs[0]["to"] == f"{bob.jid}/one", recs[0]


async def test_quarantine_verdicts_are_archived(server, new_user, clients):
    """The same link to 5 recipients fires the blast rule (default threshold):
    that message and everything the account sends afterwards is refused and
    archived as quarantined."""
    worm = new_user("worm")
    victims = [new_user("v") for _ in range(6)]
    w = await clients(worm, "pc")
    t = tag()
    link = f"https://files.example.net/{t}/invoice"
    for v in victims[:5]:
        w.send_msg(v.jid, f"look at this {link}")
    err = await w.wait_message(lambda m: m["type"] == "error", timeout=10,
                               what="the bounce of the message that fired the blast rule")
    assert stanza_error(err)[0] == "policy-violation", err
    w.send_msg(victims[5].jid, f"innocent afterwards {t}")
    err = await w.wait_message(lambda m: m["type"] == "error", timeout=10)
    assert stanza_error(err)[0] == "policy-violation", err

    recs = archive_search(server, t, "--from", worm.jid)
    got = {r["to"]: archive_verdict(r) for r in recs}
    assert len(recs) == 6, recs
    for v in victims[:4]:
        assert got[v.jid][0] == "offline", got  # then withdrawn from the queues
    verdict, rule, reason = got[victims[4].jid]
    assert verdict == "quarantined" and rule and rule != "quarantine" and reason, got
    verdict, rule, reason = got[victims[5].jid]
    assert (verdict, rule) == ("quarantined", "quarantine") and reason, got
    assert {r["body"] for r in archive_search(server, t, "--verdict", "quarantined")} == {
        f"look at this {link}", f"innocent afterwards {t}"}


async def test_refused_because_the_recipient_blocks_the_sender_is_archived(
        server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    b = await clients(bob, "phone")
    await b.go_online()
    resp = await b.iq("set", f"<block xmlns='urn:xmpp:blocking'><item jid='{alice.jid}'/></block>")
    assert resp["type"] == "result", resp
    t = tag()
    a.send_msg(bob.jid, f"you blocked me {t}")
    err = await a.wait_message(lambda m: m["type"] == "error")
    assert stanza_error(err)[0] == "service-unavailable", err
    recs = archive_search(server, t)
    assert len(recs) == 1, (
        "a message with a body that the server refused (the recipient blocks the sender, "
        f"XEP-0191) is not in the compliance archive: {recs}")
    assert archive_verdict(recs[0])[0] == "bounced", recs


async def test_message_to_a_remote_domain_is_archived(server, new_user, clients):
    alice = new_user("alice")
    a = await clients(alice, "pc")
    t = tag()
    a.send_msg("partner@elsewhere.example", f"our secret plans {t}")
    err = await a.wait_message(lambda m: m["type"] == "error")
    assert stanza_error(err)[0] == "remote-server-not-found", err
    recs = archive_search(server, t)
    assert len(recs) == 1, (
        "a message with a body addressed outside the company (bounced: federation off) is "
        f"not in the compliance archive: {recs}")
    assert archive_verdict(recs[0])[0] == "bounced", recs
