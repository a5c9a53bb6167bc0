"""Threat defense in group chat (issue #6): every room message passes the
guard before any occupant sees it.

* A message with malware (EICAR) or a lure link (an executable on an IP
  literal) is refused: the sender gets ``policy-violation``, occupants get
  nothing, and the refusal is in the compliance archive.
* A bot swarm — several accounts posting the same machine-like command into
  one room within the room-bot window (default threshold 4 accounts in
  120 s) — is quarantined: the crossing message is refused, every account of
  the swarm is quarantined and removed from the room (307), and the room's
  owners and admins get a message from the room naming the accounts.
* A busy benign room (people greeting, agreeing, repeating "+1") is untouched.

The server runs with the shipped guard defaults; each test uses its own room,
accounts and text so the in-memory outbreak state of one cannot feed another.
"""

from __future__ import annotations

import secrets

from rampart_harness import (
    archive_search, archive_verdict, events_list, quarantine_list, stanza_error,
    stanza_error_text,
)
from test_muc import create, heard, join, muc, new_room, online, say, codes

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
NS_ALERT = "urn:xmpp:rampart:security:0"
ROOM_BOTS_THRESHOLD = 4


async def refused(c, mid: str) -> tuple[str, str]:
    err = await c.wait_message(lambda m: m["id"] == mid and m["type"] == "error",
                               timeout=15, what=f"the refusal of {mid}")
    return stanza_error(err)[0], stanza_error_text(err)


async def test_blocked_messages_never_reach_occupants(clients, new_user):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    room = new_room("guarded")
    await create(a, room, "alice")
    await join(b, room, "bob")
    tag = secrets.token_hex(3)
    for body in (f"{tag} look {EICAR}", f"{tag} new pics http://203.0.113.7/pics.scr"):
        mid = await say(b, room, body)
        cond, text = await refused(b, mid)
        assert cond == "policy-violation", (body, cond, text)
        await a.messages.assert_none(lambda m: m["body"] == body, within=1.0,
                                     what="a blocked message delivered to an occupant")
        await b.messages.assert_none(lambda m: m["type"] == "groupchat" and m["body"] == body,
                                     within=0.2, what="the blocked message echoed")
    # The room keeps working, and the refusals are on the record.
    await say(b, room, f"{tag} sorry, wrong paste")
    await heard(a, room, f"{tag} sorry, wrong paste")
    recs = archive_search(a.rampart, None, "--from", bob.jid)
    verdicts = {archive_verdict(r)[0] for r in recs if tag in (r.get("body") or "")}
    assert "blocked" in verdicts and "delivered" in verdicts, recs


async def test_bot_swarm_quarantined_and_owners_told(server, clients, new_user):
    alice = new_user("alice")
    a = await online(clients, alice)
    room = new_room("botnet")
    await create(a, room, "alice")
    bots = []
    for i in range(ROOM_BOTS_THRESHOLD):
        u = new_user(f"bot{i}")
        c = await online(clients, u)
        await join(c, room, f"node{i}")
        bots.append((u, c))
    command = f"!ddos 198.51.100.{secrets.randbelow(200) + 1} 443"
    # The first ones get through (nothing to tell them apart from a person yet)...
    for u, c in bots[:-1]:
        await say(c, room, command)
        await heard(a, room, command)
    # ...the one that makes it a chorus is refused and the swarm quarantined.
    u, c = bots[-1]
    mid = await say(c, room, command)
    cond, text = await refused(c, mid)
    assert cond == "policy-violation" and "quarantined" in text, text
    # The owner is told, by the room, which accounts and why.
    alert = await a.wait_message(lambda m: m["from"] == room and m.xml.find(f"{{{NS_ALERT}}}alert") is not None,
                                 timeout=15, what="the security alert from the room")
    named = {e.text for e in alert.xml.find(f"{{{NS_ALERT}}}alert")}
    assert named == {u.jid for u, _ in bots}, named
    assert "quarantined" in alert["body"]
    # Every bot is quarantined and removed from the room (307).
    q = quarantine_list(server)
    for u, _c in bots:
        assert u.jid in q, (u.jid, q)
    for i in range(ROOM_BOTS_THRESHOLD):
        p = await a.wait_presence(lambda s: s["from"] == f"{room}/node{i}" and s["type"] == "unavailable",
                                  timeout=15, what=f"node{i} removed")
        assert 307 in codes(p)
    # A bot can no longer post anything.
    u, c = bots[0]
    mid = await say(c, room, "innocent question")
    assert (await refused(c, mid))[0] in ("policy-violation", "not-acceptable")
    # Newcomers do not get the swarm's messages as history.
    late = await online(clients, new_user("late"))
    _p, _s, _o, history = await join(late, room, "late", maxstanzas=20)
    assert not [m for m in history if m["body"] == command], history
    # The security log has the room event.
    ev = events_list(server)
    room_ev = [e for e in ev if e.get("account") == room]
    assert room_ev and room_ev[0]["rule"] == "outbreak.room_bots", ev[:6]
    assert all(u.jid in room_ev[0]["reason"] for u, _ in bots), room_ev


async def test_busy_benign_room_untouched(server, clients, new_user):
    people = [new_user(n) for n in ("ann", "ben", "cat", "dan", "eve", "fay")]
    cs = [await online(clients, u) for u in people]
    room = new_room("standup")
    await create(cs[0], room, "ann")
    for u, c in zip(people[1:], cs[1:]):
        await join(c, room, u.localpart)
    lines = ["good morning!", "+1", "+1", "+1", "+1", "lgtm", "ok", "/me waves",
             "are we still meeting at three?", "yes, in the big room", "+1", "ok", "thanks all"]
    for i, line in enumerate(lines):
        c = cs[i % len(cs)]
        await say(c, room, line)
        await heard(cs[0], room, line)
    q = quarantine_list(server)
    assert not any(u.jid in q for u in people), q
    for c in cs:
        assert not [m for m in c.messages.items if m["type"] == "error"], "a benign message was refused"
