"""Message moderation and retraction in rooms: XEP-0425 moderated retraction
(v0.3 `urn:xmpp:message-moderate:1`, and the v0.2 `apply-to` form) and XEP-0424
retraction by the author, driven with slixmpp's xep_0045, xep_0424 and xep_0425
plugins over real TLS (issue #7; code in
crates/rampart-server/src/modules/muc/moderation.rs).

A moderator retracts a message by its stanza-id: every occupant gets the
announcement from the room, new occupants' history and MAM on the room show a
tombstone, the compliance archive keeps the original unchanged plus a
`moderation` record, and the archive's chain still verifies. Non-moderators get
`forbidden`, unknown ids `item-not-found`. An author retracts their own message
(by stanza-id or by their message id); retracting someone else's is refused.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import xml.etree.ElementTree as ET

from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rampart_harness import (
    NS_CLIENT, archive_search, archive_verify, stanza_error, stanza_id_of,
)
from test_muc import create, join, new_room
from test_muc import online as muc_online

MUC = "conference.localhost"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_RETRACT_0 = "urn:xmpp:message-retract:0"
NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_MODERATE_0 = "urn:xmpp:message-moderate:0"
NS_FASTEN = "urn:xmpp:fasten:0"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_DELAY = "urn:xmpp:delay"
PLUGINS = ("xep_0004", "xep_0030", "xep_0045", "xep_0359", "xep_0421", "xep_0424", "xep_0425")


async def online(clients, user, resource: str = "pc"):
    return await muc_online(clients, user, resource, plugins=PLUGINS)


async def say(c, room: str, body: str) -> str:
    m = c.make_message(mto=room, mbody=body, mtype="groupchat")
    mid = "g-" + secrets.token_hex(6)
    m["id"] = mid
    m.send()
    return mid


async def heard(c, room: str, body: str, timeout: float = 20):
    return await c.wait_message(
        lambda m: m["type"] == "groupchat" and m["from"].bare == room and m["body"] == body,
        timeout=timeout, what=f"groupchat {body!r} in {room}")


async def said(speaker, listener, room: str, body: str) -> str:
    """`speaker` says `body`; the room's stanza-id `listener` saw on it."""
    await say(speaker, room, body)
    got = await heard(listener, room, body)
    sid = stanza_id_of(got, room)
    assert sid, f"no stanza-id by the room on {got}"
    return sid


async def announcement(c, room: str, target: str, timeout: float = 20):
    """The room's moderation announcement for stanza-id `target`."""
    return await c.wait_message(
        lambda m: m["type"] == "groupchat" and m["from"] == JID(room)
        and m.xml.find(f"{{{NS_RETRACT}}}retract") is not None
        and m.xml.find(f"{{{NS_RETRACT}}}retract").get("id") == target,
        timeout=timeout, what=f"the room's retraction of {target}")


async def moderate(c, room: str, sid: str, reason: str = ""):
    """slixmpp's XEP-0425 request; the IQ error's (condition, type), or None on success."""
    try:
        await c.plugin["xep_0425"].moderate(JID(room), sid, reason, timeout=20)
        return None
    except IqError as e:
        return stanza_error(e.iq)


async def iq_raw(c, payload: str, to: str, timeout: float = 20):
    """Send an IQ set as text and return the reply as an ElementTree element (slixmpp's
    IQ error class does not know every RFC 6120 condition, e.g. policy-violation)."""
    iq_id = "raw-" + secrets.token_hex(6)
    got = asyncio.get_running_loop().create_future()
    c.register_handler(Callback(
        f"test: reply {iq_id}", MatchXPath("{jabber:client}iq"),
        lambda iq: (not got.done() and iq["id"] == iq_id and iq["type"] in ("result", "error")
                    and got.set_result(iq.xml))))
    c.send_raw(f"<iq type='set' id='{iq_id}' to='{to}'>{payload}</iq>")
    try:
        return await asyncio.wait_for(got, timeout)
    finally:
        c.remove_handler(f"test: reply {iq_id}")


async def mam(c, room: str) -> list:
    """MAM on the room: the archived messages (the inner <message/>s), oldest first."""
    qid = "q" + secrets.token_hex(4)
    fin = await c.iq("set", f"<query xmlns='{NS_MAM}' queryid='{qid}'/>", to=room, timeout=20)
    assert fin["type"] == "result", fin
    out = []
    for m in c.messages.items:
        r = m.xml.find(f"{{{NS_MAM}}}result")
        if r is not None and r.get("queryid") == qid:
            out.append((r.get("id"), r.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")))
    return out


async def history_on_join(c, room: str, nick: str) -> dict:
    """Enter `room`; the history the room sent, by stanza-id. (slixmpp's join_muc_wait
    keeps only history with a body; tombstones have none, so read what arrived.)"""
    await join(c, room, nick)
    out = {}
    for m in c.messages.items:
        d = m.xml.find(f"{{{NS_DELAY}}}delay")
        if m["type"] == "groupchat" and m["from"].bare == room and d is not None and d.get("from") == room:
            out[stanza_id_of(m, room)] = m.xml
    return out


def body_of(el) -> str | None:
    b = el.find(f"{{{NS_CLIENT}}}body")
    return b.text if b is not None else None


def assert_moderated_tombstone(el, by: str, reason: str) -> None:
    """`el` is a tombstone of a moderated message: no body, <retracted><moderated by/>."""
    assert body_of(el) is None, f"the retracted text is still shown: {ET_str(el)}"
    r = el.find(f"{{{NS_RETRACT}}}retracted")
    assert r is not None and r.get("stamp"), ET_str(el)
    m = r.find(f"{{{NS_MODERATE}}}moderated")
    assert m is not None and m.get("by") == by, ET_str(el)
    assert m.find(f"{{{NS_OCCUPANT_ID}}}occupant-id") is not None
    assert r.find(f"{{{NS_RETRACT}}}reason").text == reason
    # The v0.2 form too, for older clients.
    legacy = el.find(f"{{{NS_MODERATE_0}}}moderated")
    assert legacy is not None and legacy.find(f"{{{NS_RETRACT_0}}}retracted") is not None, ET_str(el)


def ET_str(el) -> str:
    return ET.tostring(el, encoding="unicode")


# ----------------------------------------------------------------------------
async def test_room_advertises_moderation_and_retraction(clients, new_user):
    a = await online(clients, new_user("alice"))
    room = new_room()
    await create(a, room, "alice")
    info = await a.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=room)
    q = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
    features = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
    assert {NS_MODERATE, NS_MODERATE_0, NS_RETRACT, NS_RETRACT + "#tombstone"} <= features, features


async def test_moderator_retracts_a_message(clients, new_user):
    alice, bob, carol, dave = (new_user(n) for n in ("alice", "bob", "carol", "dave"))
    a = await online(clients, alice)
    b = await online(clients, bob)
    c = await online(clients, carol)
    room = new_room()
    await create(a, room, "alice")
    await join(b, room, "bob")
    await join(c, room, "carol")
    keep = await said(b, c, room, "a perfectly fine message")
    text = "buy cheap pills " + secrets.token_hex(4)
    sid = await said(b, c, room, text)
    events = []
    c.add_event_handler("moderated_message", events.append)

    assert await moderate(a, room, sid, "spam is not welcome") is None
    # Everyone in the room, the author and the moderator included, gets the announcement
    # from the room's bare JID, naming the moderator and the reason.
    for client in (a, b, c):
        m = await announcement(client, room, sid)
        r = m.xml.find(f"{{{NS_RETRACT}}}retract")
        mod = r.find(f"{{{NS_MODERATE}}}moderated")
        assert mod is not None and mod.get("by") == f"{room}/alice", m
        assert mod.find(f"{{{NS_OCCUPANT_ID}}}occupant-id") is not None, m
        assert r.find(f"{{{NS_RETRACT}}}reason").text == "spam is not welcome"
        # And the v0.2 form for older clients.
        f = m.xml.find(f"{{{NS_FASTEN}}}apply-to")
        assert f is not None and f.get("id") == sid, m
        assert f.find(f"{{{NS_MODERATE_0}}}moderated/{{{NS_RETRACT_0}}}retract") is not None, m
    assert events and events[0]["retract"]["id"] == sid, "slixmpp's xep_0425 saw the moderation"

    # A new occupant's history shows the tombstone, the other message as it was.
    d = await online(clients, dave)
    by_sid = await history_on_join(d, room, "dave")
    assert body_of(by_sid[keep]) == "a perfectly fine message"
    tomb = by_sid[sid]
    assert tomb.get("from") == f"{room}/bob"
    assert_moderated_tombstone(tomb, f"{room}/alice", "spam is not welcome")
    assert text not in ET_str(tomb), "history must not leak the retracted text"

    # MAM on the room: the same tombstone under the same id, and the announcement after it
    # (a client catching up applies it to the copy it already has).
    listing = await mam(d, room)
    results = dict(listing)
    assert body_of(results[keep]) == "a perfectly fine message"
    assert_moderated_tombstone(results[sid], f"{room}/alice", "spam is not welcome")
    anns = [(i, m) for i, m in listing if m.find(f"{{{NS_RETRACT}}}retract") is not None]
    assert len(anns) == 1 and int(anns[0][0]) > int(sid), [ET_str(m) for _, m in anns]
    ann = anns[0][1]
    assert ann.get("from") == room and ann.find(f"{{{NS_RETRACT}}}retract").get("id") == sid
    assert ann.find(f"{{{NS_RETRACT}}}retract/{{{NS_MODERATE}}}moderated").get("by") == f"{room}/alice"

    # The compliance archive keeps the original unchanged and records the act.
    originals = archive_search(a.rampart, text)
    assert len(originals) == 1 and originals[0]["body"] == text, originals
    assert originals[0]["from"].startswith(bob.jid)
    acts = archive_search(a.rampart, None, "--with", room, "--kind", "moderation")
    assert len(acts) == 1 and acts[0]["kind"] == "moderation", acts
    act = acts[0]
    assert act["from"].startswith(alice.jid) and act["to"] == room
    assert act["stanza_id"] == sid and act["body"] == "spam is not welcome"
    meta = json.loads(act["meta_json"])
    assert meta["target_from"].startswith(bob.jid) and meta["room_nick"] == "alice", meta
    assert int(act["seq"]) > int(originals[0]["seq"])
    # Nothing was edited or deleted: the hash chain verifies.
    v = archive_verify(a.rampart)
    assert v.returncode == 0 and v.stdout.startswith("ok"), v.stdout + v.stderr
    # An export of the room's records holds both, and verifies on its own.
    out = a.rampart.workdir / f"export-{secrets.token_hex(3)}"
    r = a.rampart.cli("archive", "export", "--format", "jsonl", "--out", str(out), "--with", room)
    assert r.returncode == 0, r.stdout + r.stderr
    exported = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
    by_seq = {int(x["seq"]): x for x in exported}
    assert by_seq[int(originals[0]["seq"])]["body"] == text
    assert by_seq[int(act["seq"])]["kind"] == "moderation"
    r = a.rampart.cli("archive", "verify-export", str(out))
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr


async def test_moderation_errors(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room()
    await create(a, room, "alice")
    await join(b, room, "bob")
    sid = await said(a, b, room, "the owner speaks")
    # A participant is no moderator.
    assert await moderate(b, room, sid, "I do not like it") == ("forbidden", "auth")
    # Ids the room never gave out.
    assert (await moderate(a, room, "999999999"))[0] == "item-not-found"
    assert (await moderate(a, room, "not-a-stanza-id"))[0] == "item-not-found"
    # A stanza-id of another room is not this room's message.
    other = new_room("other")
    await create(a, other, "alice")
    await join(b, other, "bob")
    elsewhere = await said(b, a, other, "said in the other room")
    assert (await moderate(a, room, elsewhere))[0] == "item-not-found"
    # Every occupant would read the reason: it passes the guard like a message.
    r = await iq_raw(a, f"<moderate xmlns='{NS_MODERATE}' id='{sid}'><retract xmlns='{NS_RETRACT}'/>"
                        "<reason>see http://203.0.113.7/pics.scr</reason></moderate>", to=room)
    err = r.find(f"{{{NS_CLIENT}}}error")
    assert err is not None and err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}policy-violation") is not None, ET_str(r)
    await b.messages.assert_none(lambda m: m.xml.find(f"{{{NS_RETRACT}}}retract") is not None, within=1.5)
    assert body_of(dict(await mam(a, room))[sid]) == "the owner speaks", "a refused moderation retracts nothing"
    refused = archive_search(a.rampart, "pics", "--verdict", "blocked", "--with", room)
    assert len(refused) == 1 and refused[0]["from"].startswith(a.boundjid.bare), refused
    # Once retracted, it cannot be retracted again.
    assert await moderate(a, room, sid) is None
    await announcement(b, room, sid)
    assert (await moderate(a, room, sid))[0] == "item-not-found"
    # A request without an id.
    r = await a.iq("set", f"<moderate xmlns='{NS_MODERATE}'><retract xmlns='{NS_RETRACT}'/></moderate>", to=room)
    assert stanza_error(r)[0] == "bad-request", r
    # Not an occupant at all.
    outsider = await online(clients, new_user("eve"))
    r = await outsider.iq("set", f"<moderate xmlns='{NS_MODERATE}' id='{elsewhere}'><retract xmlns='{NS_RETRACT}'/></moderate>", to=other)
    assert stanza_error(r)[0] == "forbidden", r


async def test_legacy_apply_to_form(clients, new_user):
    """The XEP-0425 v0.2 request (`apply-to` with moderate:0) still works."""
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room()
    await create(a, room, "alice")
    await join(b, room, "bob")
    sid = await said(b, a, room, "old clients moderate this")
    r = await a.iq("set", f"<apply-to xmlns='{NS_FASTEN}' id='{sid}'><moderate xmlns='{NS_MODERATE_0}'>"
                   f"<retract xmlns='{NS_RETRACT_0}'/><reason>legacy</reason></moderate></apply-to>", to=room)
    assert r["type"] == "result", r
    m = await announcement(b, room, sid)
    assert m.xml.find(f"{{{NS_FASTEN}}}apply-to/{{{NS_MODERATE_0}}}moderated/{{{NS_MODERATE_0}}}reason").text == "legacy"
    results = dict(await mam(a, room))
    assert_moderated_tombstone(results[sid], f"{room}/alice", "legacy")


async def test_author_retracts_own_message(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    c = await online(clients, new_user("carol"))
    room = new_room()
    await create(a, room, "alice")
    await join(b, room, "bob")
    await join(c, room, "carol")
    sid = await said(b, c, room, "oops, wrong room")
    # By the room's stanza-id, with slixmpp's XEP-0424 plugin.
    sent = b.plugin["xep_0424"].send_retraction(JID(room), sid, mtype="groupchat")
    got = await c.wait_message(
        lambda m: m["from"] == JID(f"{room}/bob") and m["retract"]["id"] == sid,
        timeout=20, what="bob's retraction relayed to carol")
    assert got.xml.find(f"{{{NS_OCCUPANT_ID}}}occupant-id") is not None, got
    # By the message's own id (what clients without stanza-ids use).
    mid = await say(b, room, "another slip")
    await heard(c, room, "another slip")
    sid2 = stanza_id_of((await heard(a, room, "another slip")), room)
    r2 = b.make_message(mto=room, mtype="groupchat", mbody="/me retracted a message")
    r2["retract"]["id"] = mid
    r2["id"] = "r-" + secrets.token_hex(4)
    r2.send()
    await c.wait_message(lambda m: m["retract"]["id"] == mid, timeout=20, what="the second retraction")

    results = dict(await mam(a, room))
    for target, retraction_id in ((sid, sent["id"]), (sid2, r2["id"])):
        t = results[target]
        assert body_of(t) is None, ET_str(t)
        rt = t.find(f"{{{NS_RETRACT}}}retracted")
        assert rt is not None and rt.get("id") == retraction_id, ET_str(t)
        assert rt.find(f"{{{NS_MODERATE}}}moderated") is None, "an author's retraction is not a moderation"
    # The retraction messages themselves stay in MAM (XEP-0424 §5: clients catch up).
    assert any(m.find(f"{{{NS_RETRACT}}}retract") is not None for m in results.values())
    # New occupants see tombstones too.
    d = await online(clients, new_user("dave"))
    by_sid = await history_on_join(d, room, "dave")
    assert body_of(by_sid[sid]) is None and by_sid[sid].find(f"{{{NS_RETRACT}}}retracted") is not None
    # The archive keeps what was said.
    assert len(archive_search(a.rampart, "wrong room")) == 1


async def test_retracting_anothers_message_is_forbidden(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    c = await online(clients, new_user("carol"))
    room = new_room()
    await create(a, room, "alice")
    await join(b, room, "bob")
    await join(c, room, "carol")
    sid = await said(b, c, room, "bob's words")
    for who in (c, a):  # a participant, and a moderator not using XEP-0425
        m = who.make_message(mto=room, mtype="groupchat", mbody="/me retracted a message")
        m["retract"]["id"] = sid
        m["id"] = mid = "x-" + secrets.token_hex(4)
        m.send()
        err = await who.wait_message(lambda s: s["type"] == "error" and s["id"] == mid,
                                     timeout=20, what="the refusal")
        assert stanza_error(err)[0] == "forbidden", err
    await b.messages.assert_none(lambda s: s["retract"]["id"] == sid, within=2)
    results = dict(await mam(a, room))
    assert body_of(results[sid]) == "bob's words", "nothing was retracted"


async def test_tombstone_survives_restart(server, clients, new_user):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await online(clients, alice)
    b = await online(clients, bob)
    room = new_room("persist")
    await create(a, room, "alice", persistentroom=True)
    await join(b, room, "bob")
    kept = await said(b, a, room, "this one stays")
    sid = await said(b, a, room, "this one goes")
    assert await moderate(a, room, sid, "off topic") is None
    await announcement(b, room, sid)
    server.restart()
    c = await online(clients, carol)
    by_sid = await history_on_join(c, room, "carol")
    assert set(by_sid) >= {kept, sid}, f"history after a restart carries the stanza-ids: {list(by_sid)}"
    assert body_of(by_sid[kept]) == "this one stays"
    assert_moderated_tombstone(by_sid[sid], f"{room}/alice", "off topic")
    v = archive_verify(server)
    assert v.returncode == 0, v.stdout + v.stderr


async def test_author_retracts_message_older_than_the_history(clients, new_user):
    """A message no longer in the room's history (50 by default) is found on the record by
    its id among the author's latest messages."""
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room("old")
    await create(a, room, "alice")
    await join(b, room, "bob")
    mid = await say(b, room, "an old slip")
    sid = stanza_id_of(await heard(a, room, "an old slip"), room)
    for i in range(55):
        await say(b, room, f"filler {i}")
    await heard(a, room, "filler 54", timeout=60)
    r = b.make_message(mto=room, mtype="groupchat", mbody="/me retracted a message")
    r["retract"]["id"] = mid
    r.send()
    await a.wait_message(lambda m: m["retract"]["id"] == mid, timeout=20, what="the retraction")
    results = dict(await mam(a, room))
    assert body_of(results[sid]) is None and results[sid].find(f"{{{NS_RETRACT}}}retracted") is not None, \
        ET_str(results[sid])
    assert "filler 0" in {body_of(m) for m in results.values()}
