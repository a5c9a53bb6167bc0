"""Group chat (XEP-0045) on conference.localhost, driven with slixmpp's
xep_0045 / xep_0249 plugins over real TLS (issue #6; code in
crates/rampart-server/src/modules/muc/).

Lifecycle (create, lock until configured, configure, persist across a
restart, destroy), roles and affiliations (kick, ban, voice in a moderated
room, members-only, password, max users), nick conflicts and changes,
history on join, subject, private messages, mediated and direct invitations,
self-ping (XEP-0410), MAM on a room (XEP-0313, served from the compliance
archive), and the external-domains policy.

Threat defense in rooms (blocked messages, bot swarms) is in
tests/test_muc_guard.py.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET

from rampart_harness import (
    NS_CLIENT, archive_search, stanza_error, stanza_error_text, stanza_id_of,
)

MUC = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_PING = "urn:xmpp:ping"
NS_DATA = "jabber:x:data"
PLUGINS = ("xep_0004", "xep_0030", "xep_0045", "xep_0092", "xep_0199", "xep_0249", "xep_0359")


def new_room(tag: str = "room") -> str:
    return f"{tag}-{secrets.token_hex(3)}@{MUC}"


async def online(clients, user, resource: str = "pc", plugins=PLUGINS):
    """A logged-in, available client with the MUC plugins (and any others in `plugins`)."""
    c = clients.new(user, resource)
    for p in plugins:
        c.register_plugin(p)
    await c.login()
    await c.go_online()
    return c


def muc(c):
    return c.plugin["xep_0045"]


def codes(stanza) -> set[int]:
    x = stanza.xml.find(f"{{{NS_MUC_USER}}}x")
    if x is None:
        return set()
    return {int(s.get("code")) for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def item(stanza) -> dict:
    it = stanza.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
    return dict(it.attrib) if it is not None else {}


async def configure(c, room: str, **values) -> None:
    """Submit the room configuration form with muc#roomconfig_<key> = value."""
    form = c.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/muc#roomconfig")
    for k, v in values.items():
        if isinstance(v, bool):
            v = "1" if v else "0"
        form.add_field(var=f"muc#roomconfig_{k}", value=str(v))
    await muc(c).set_room_config(room, form)


async def create(c, room: str, nick: str, **config):
    """Create a room (status 201), configure it (an instant room if no config)."""
    pres, _subject, _occ, _hist = await muc(c).join_muc_wait(room, nick, maxstanzas=0, timeout=20)
    assert {110, 201} <= codes(pres), f"creating {room}: self-presence {pres}"
    await configure(c, room, **config)
    return pres


async def join(c, room: str, nick: str, **kw):
    kw.setdefault("timeout", 20)
    return await muc(c).join_muc_wait(room, nick, **kw)


async def join_error(c, room: str, nick: str, password: str | None = None) -> tuple[str, str]:
    """Try to enter; return the (condition, type) of the refusal."""
    p = muc(c).make_join_stanza(room, nick, password=password)
    p.send()
    err = await c.wait_presence(
        lambda s: s["type"] == "error" and s["from"].bare == room,
        timeout=15, what=f"the refusal to enter {room}")
    return stanza_error(err)


async def say(c, room: str, body: str) -> str:
    m = c.make_message(mto=room, mbody=body, mtype="groupchat")
    mid = "g-" + secrets.token_hex(6)
    m["id"] = mid
    m.send()
    return mid


async def heard(c, room: str, body: str, timeout: float = 15):
    return await c.wait_message(
        lambda m: m["type"] == "groupchat" and m["from"].bare == room and m["body"] == body,
        timeout=timeout, what=f"groupchat {body!r} in {room}")


async def disco_info(c, jid: str):
    return await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=jid)


def features(iq) -> set[str]:
    q = iq.xml.find(f"{{{NS_DISCO_INFO}}}query")
    return {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")} if q is not None else set()


def roominfo(iq) -> dict[str, str]:
    out = {}
    q = iq.xml.find(f"{{{NS_DISCO_INFO}}}query")
    for x in q.findall(f"{{{NS_DATA}}}x"):
        for f in x.findall(f"{{{NS_DATA}}}field"):
            v = f.find(f"{{{NS_DATA}}}value")
            out[f.get("var")] = v.text if v is not None and v.text else ""
    return out


# ----------------------------------------------------------------------------
async def test_service_discovery(clients, new_user):
    a = await online(clients, new_user("alice"))
    items = await a.iq("get", f"<query xmlns='{NS_DISCO_ITEMS}'/>", to="localhost")
    jids = {i.get("jid") for i in items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    assert MUC in jids, f"the server's disco#items do not list the chat service: {items}"
    info = await disco_info(a, MUC)
    ident = info.xml.find(f"{{{NS_DISCO_INFO}}}query/{{{NS_DISCO_INFO}}}identity")
    assert ident is not None and ident.get("category") == "conference", info
    assert NS_MUC in features(info)
    # XEP-0045 §10.1.4: a unique room name to create.
    u = await a.iq("get", "<unique xmlns='http://jabber.org/protocol/muc#unique'/>", to=MUC)
    name = u.xml.find("{http://jabber.org/protocol/muc#unique}unique").text
    assert name and "@" not in name
    await create(a, f"{name}@{MUC}", "alice")


async def test_room_lifecycle(clients, new_user):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    room = new_room("life")
    # Created and locked until configured: bob cannot enter yet.
    pres, subject, _occ, _hist = await muc(a).join_muc_wait(room, "alice", timeout=20)
    assert {110, 201, 170} <= codes(pres), pres
    assert item(pres).get("affiliation") == "owner" and item(pres).get("role") == "moderator"
    assert await join_error(b, room, "bob") == ("item-not-found", "cancel")
    # The owner gets the configuration form and submits it.
    form = await muc(a).get_room_config(room)
    fields = {f.get("var") for f in form.xml.iter(f"{{{NS_DATA}}}field")}
    assert {"muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom",
            "muc#roomconfig_persistentroom", "muc#roomconfig_roomsecret"} <= fields, form
    await configure(a, room, roomname="Lifecycle room", roomdesc="for testing", publicroom=True)
    info = await disco_info(a, room)
    f = features(info)
    assert {NS_MUC, "muc_temporary", "muc_open", "muc_unmoderated", "muc_semianonymous",
            "muc_unsecured", "muc_public", NS_MAM, "urn:xmpp:occupant-id:0"} <= f, f
    assert roominfo(info).get("muc#roomconfig_roomname") == "Lifecycle room"
    listed = await a.iq("get", f"<query xmlns='{NS_DISCO_ITEMS}'/>", to=MUC)
    assert room in {i.get("jid") for i in listed.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    # bob enters: each sees the other; bob's own presence has 110 and no 201.
    a.presences.items.clear()
    pres_b, _s, occupants, _h = await join(b, room, "bob")
    assert 110 in codes(pres_b) and 201 not in codes(pres_b)
    others = [o for o in occupants if 110 not in codes(o)]
    assert [o["from"].resource for o in others] == ["alice"], occupants
    # Semi-anonymous: bob does not see alice's real JID; alice (moderator) sees bob's.
    assert "jid" not in item(others[0]), others[0]
    p = await a.wait_presence(lambda s: s["from"] == f"{room}/bob", what="bob's arrival")
    assert item(p).get("jid", "").startswith(bob.jid)
    # Messages reach everyone, with the room's stanza-id; subject changes too.
    await say(b, room, "hello room")
    got = await heard(a, room, "hello room")
    assert got["from"] == f"{room}/bob"
    assert stanza_id_of(got, room), f"no stanza-id by the room: {got}"
    # XEP-0421: the same opaque occupant id on bob's presence and messages.
    oid = got.xml.find("{urn:xmpp:occupant-id:0}occupant-id").get("id")
    assert oid and bob.jid not in oid
    assert p.xml.find("{urn:xmpp:occupant-id:0}occupant-id").get("id") == oid
    await heard(b, room, "hello room")
    # A participant may not change the subject (the room does not allow it).
    sm = b.make_message(mto=room, msubject="mine now", mtype="groupchat")
    sm["id"] = "subj-" + secrets.token_hex(3)
    sm.send()
    e = await b.wait_message(lambda m: m["id"] == sm["id"] and m["type"] == "error")
    assert stanza_error(e)[0] == "forbidden"
    muc(a).set_subject(room, "Quarterly planning")
    s = await b.wait_message(lambda m: m["subject"] == "Quarterly planning", what="the subject")
    assert s["from"] == f"{room}/alice" and s["type"] == "groupchat"
    # Nick change: 303 with the new nick, then presence under it.
    new = await muc(b).set_self_nick(room, "robert", timeout=20)
    assert new == "robert"
    gone = await a.wait_presence(lambda s: s["from"] == f"{room}/bob" and s["type"] == "unavailable")
    assert 303 in codes(gone) and item(gone).get("nick") == "robert"
    await a.wait_presence(lambda s: s["from"] == f"{room}/robert" and s["type"] != "unavailable")
    # Leaving.
    muc(b).leave_muc(room, "robert")
    await a.wait_presence(lambda s: s["from"] == f"{room}/robert" and s["type"] == "unavailable")
    # A temporary room ends with its last occupant.
    muc(a).leave_muc(room, "alice")
    await a.wait_presence(lambda s: s["from"] == f"{room}/alice" and s["type"] == "unavailable")
    gone_info = await disco_info(a, room)
    assert stanza_error(gone_info)[0] == "item-not-found", gone_info


async def test_nick_conflict_and_session_end(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room("nick")
    await create(a, room, "alice")
    assert await join_error(b, room, "alice") == ("conflict", "cancel")
    await join(b, room, "bob")
    # bob's connection dies: he leaves the room.
    b.kill()
    p = await a.wait_presence(
        lambda s: s["from"] == f"{room}/bob" and s["type"] == "unavailable", timeout=30,
        what="bob leaving when his session ended")
    assert p is not None


async def test_history_on_join(clients, new_user):
    a = await online(clients, new_user("alice"))
    room = new_room("hist")
    await create(a, room, "alice")
    for i in range(5):
        await say(a, room, f"history line {i}")
        await heard(a, room, f"history line {i}")
    b = await online(clients, new_user("bob"))
    _p, _s, _o, history = await join(b, room, "bob", maxstanzas=2)
    assert [m["body"] for m in history] == ["history line 3", "history line 4"], history
    for m in history:
        d = m.xml.find(f"{{{NS_DELAY}}}delay")
        assert d is not None and d.get("from") == room and d.get("stamp"), m
    c = await online(clients, new_user("carol"))
    _p, _s, _o, history = await join(c, room, "carol", maxchars=0)
    assert history == []
    d = await online(clients, new_user("dave"))
    _p, _s, _o, history = await join(d, room, "dave", seconds=3600)
    assert len(history) == 5


async def test_moderation_voice_kick_ban(clients, new_user):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await online(clients, alice)
    b = await online(clients, bob)
    c = await online(clients, carol)
    room = new_room("mod")
    await create(a, room, "alice", moderatedroom=True)
    pres, _s, _o, _h = await join(c, room, "carol")
    assert item(pres).get("role") == "visitor", pres
    await join(b, room, "bob")
    # A visitor has no voice.
    mid = await say(c, room, "can anyone hear me")
    err = await c.wait_message(lambda m: m["id"] == mid and m["type"] == "error")
    assert stanza_error(err)[0] == "forbidden"
    await b.messages.assert_none(lambda m: m["body"] == "can anyone hear me", within=1.0)
    # She asks for voice; the moderator gets the request form and grants it.
    muc(c).request_voice(room, "participant")
    req = await a.wait_message(lambda m: m["from"] == room and m.xml.find(f"{{{NS_DATA}}}x") is not None,
                               what="the voice request")
    form = req.xml.find(f"{{{NS_DATA}}}x")
    fields = {f.get("var"): f.find(f"{{{NS_DATA}}}value").text for f in form.findall(f"{{{NS_DATA}}}field")}
    assert fields["muc#roomnick"] == "carol" and fields["muc#jid"].startswith(carol.jid), fields
    answer = a.make_message(mto=room)
    answer.append(ET.fromstring(
        f"<x xmlns='{NS_DATA}' type='submit'>"
        f"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
        f"<field var='muc#role'><value>participant</value></field>"
        f"<field var='muc#roomnick'><value>carol</value></field>"
        f"<field var='muc#request_allow'><value>true</value></field></x>"))
    answer.send()
    p = await b.wait_presence(lambda s: s["from"] == f"{room}/carol" and item(s).get("role") == "participant")
    assert p is not None
    await say(c, room, "now I can speak")
    await heard(b, room, "now I can speak")
    # Revoke and grant voice by admin IQ.
    await muc(a).set_role(room, "carol", "visitor")
    await b.wait_presence(lambda s: s["from"] == f"{room}/carol" and item(s).get("role") == "visitor")
    await muc(a).set_role(room, "carol", "participant")
    await b.wait_presence(lambda s: s["from"] == f"{room}/carol" and item(s).get("role") == "participant")
    # bob (a participant) may not kick.
    kick = await b.iq("set", f"<query xmlns='http://jabber.org/protocol/muc#admin'>"
                      f"<item nick='carol' role='none'/></query>", to=room)
    assert stanza_error(kick)[0] == "forbidden", kick
    # Kick: carol sees 307 + 110 with the reason; bob sees 307.
    await muc(a).set_role(room, "carol", "none", reason="calm down")
    own = await c.wait_presence(lambda s: s["from"] == f"{room}/carol" and s["type"] == "unavailable")
    assert {307, 110} <= codes(own), own
    assert own.xml.find(f".//{{{NS_MUC_USER}}}reason").text == "calm down"
    seen = await b.wait_presence(lambda s: s["from"] == f"{room}/carol" and s["type"] == "unavailable")
    assert 307 in codes(seen) and 110 not in codes(seen)
    # She may come back after a kick; a ban keeps her out.
    await join(c, room, "carol")
    await muc(a).set_affiliation(room, "outcast", jid=carol.jid, reason="spam")
    own = await c.wait_presence(lambda s: s["from"] == f"{room}/carol" and s["type"] == "unavailable"
                                and 301 in codes(s))
    assert item(own).get("affiliation") == "outcast"
    assert await join_error(c, room, "carol") == ("forbidden", "auth")
    outcasts = await muc(a).get_affiliation_list(room, "outcast")
    assert [str(j) for j in outcasts] == [carol.jid]
    # The last owner cannot leave the room ownerless.
    r = await a.iq("set", f"<query xmlns='http://jabber.org/protocol/muc#admin'>"
                   f"<item jid='{alice.jid}' affiliation='member'/></query>", to=room)
    assert stanza_error(r)[0] == "conflict", r


async def test_members_only_password_max_users(clients, new_user):
    alice, bob, carol, dave = (new_user(n) for n in ("alice", "bob", "carol", "dave"))
    a = await online(clients, alice)
    b = await online(clients, bob)
    c = await online(clients, carol)
    d = await online(clients, dave)
    room = new_room("members")
    await create(a, room, "alice", membersonly=True)
    assert await join_error(b, room, "bob") == ("registration-required", "auth")
    await muc(a).set_affiliation(room, "member", jid=bob.jid)
    await join(b, room, "bob")
    members = await muc(a).get_affiliation_list(room, "member")
    assert [str(j) for j in members] == [bob.jid]

    locked = new_room("secret")
    await create(a, locked, "alice", passwordprotectedroom=True, roomsecret="open sesame",
                 maxusers=2)
    assert "muc_passwordprotected" in features(await disco_info(c, locked))
    assert await join_error(c, locked, "carol") == ("not-authorized", "auth")
    assert await join_error(c, locked, "carol", password="wrong") == ("not-authorized", "auth")
    await join(c, locked, "carol", password="open sesame")
    # alice + carol = 2 = max users.
    assert await join_error(d, locked, "dave", password="open sesame") == ("service-unavailable", "wait")


async def test_private_messages(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room("pm")
    await create(a, room, "alice")
    await join(b, room, "bob")
    b.send_message(mto=f"{room}/alice", mbody="psst, alice", mtype="chat")
    pm = await a.wait_message(lambda m: m["body"] == "psst, alice", what="the private message")
    assert pm["from"] == f"{room}/bob" and pm["type"] == "chat"
    assert pm.xml.find(f"{{{NS_MUC_USER}}}x") is not None
    # IQs between occupants are relayed under occupant JIDs (here: software version).
    v = await b.iq("get", "<query xmlns='jabber:iq:version'/>", to=f"{room}/alice")
    assert v["type"] == "result" and v["from"] == f"{room}/alice", v
    assert v.xml.find("{jabber:iq:version}query/{jabber:iq:version}name") is not None, v
    mid = secrets.token_hex(4)
    m = b.make_message(mto=f"{room}/nobody", mbody="hello?", mtype="chat")
    m["id"] = mid
    m.send()
    err = await b.wait_message(lambda m: m["id"] == mid and m["type"] == "error")
    assert stanza_error(err)[0] == "item-not-found"
    # Private messages are not room history: they stay out of the room's archive view.
    await a.messages.assert_none(lambda m: m["type"] == "groupchat" and m["body"] == "psst, alice", within=0.5)


async def test_invitations(clients, new_user):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await online(clients, alice)
    b = await online(clients, bob)
    c = await online(clients, carol)
    room = new_room("invite")
    await create(a, room, "alice", membersonly=True)
    # Mediated (XEP-0045 §7.8.2): the room relays the invitation and makes bob a member.
    got = asyncio.get_running_loop().create_future()
    b.add_event_handler("groupchat_invite", lambda m: got.done() or got.set_result(m))
    muc(a).invite(room, bob.jid, reason="weekly sync")
    inv = await asyncio.wait_for(got, 15)
    assert inv["from"] == room
    el = inv.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
    assert el.get("from") == alice.jid
    assert el.find(f"{{{NS_MUC_USER}}}reason").text == "weekly sync"
    await join(b, room, "bob")  # members-only, but the invitation made him a member
    # Decline goes back to the inviter.
    # (slixmpp 1.17 raises its groupchat_decline event only for components, so wait on
    # the stanza itself.)
    muc(a).invite(room, carol.jid)
    await c.wait_message(lambda m: m.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite") is not None)
    muc(c).decline(room, alice.jid, reason="busy")
    dec = await a.wait_message(
        lambda m: m["from"] == room and m.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}decline") is not None,
        timeout=15, what="carol's decline")
    d = dec.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}decline")
    assert d.get("from") == carol.jid and d.find(f"{{{NS_MUC_USER}}}reason").text == "busy"
    # Direct invitation (XEP-0249) travels user to user.
    direct = asyncio.get_running_loop().create_future()
    c.add_event_handler("groupchat_direct_invite", lambda m: direct.done() or direct.set_result(m))
    a.plugin["xep_0249"].send_invitation(carol.jid, room, reason="please join")
    dm = await asyncio.wait_for(direct, 15)
    assert dm["groupchat_invite"]["jid"] == room
    # Invitations are on the record.
    recs = archive_search(a.rampart, None, "--from", alice.jid)
    assert any("weekly sync" in (r.get("body") or "") for r in recs), recs


async def test_external_jids_refused(clients, new_user):
    a = await online(clients, new_user("alice"))
    room = new_room("ext")
    await create(a, room, "alice")
    m = a.make_message(mto=room)
    m["id"] = mid = "ext-" + secrets.token_hex(4)
    m.append(ET.fromstring(f"<x xmlns='{NS_MUC_USER}'><invite to='mallory@elsewhere.example'/></x>"))
    m.send()
    err = await a.wait_message(lambda s: s["id"] == mid and s["type"] == "error")
    assert stanza_error(err) == ("not-allowed", "cancel"), err
    assert "other domains" in stanza_error_text(err)


async def test_self_ping(clients, new_user):
    a = await online(clients, new_user("alice"))
    room = new_room("ping")
    await create(a, room, "alice")
    info = await disco_info(a, room)
    assert "http://jabber.org/protocol/muc#self-ping-optimization" in features(info)
    r = await a.iq("get", f"<ping xmlns='{NS_PING}'/>", to=f"{room}/alice")
    assert r["type"] == "result", r
    muc(a).leave_muc(room, "alice")
    await a.wait_presence(lambda s: s["from"] == f"{room}/alice" and s["type"] == "unavailable")
    r = await a.iq("get", f"<ping xmlns='{NS_PING}'/>", to=f"{room}/alice")
    assert stanza_error(r)[0] in ("not-acceptable", "item-not-found"), r


async def test_mam_on_room(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room("mam")
    await create(a, room, "alice")
    await join(b, room, "bob")
    ids = []
    for i in range(3):
        await say(b, room, f"archived line {i}")
        got = await heard(a, room, f"archived line {i}")
        ids.append(stanza_id_of(got, room))
    assert all(ids), ids
    qid = "q" + secrets.token_hex(3)
    fin = await a.iq("set", f"<query xmlns='{NS_MAM}' queryid='{qid}'/>", to=room)
    assert fin["type"] == "result", fin
    results = [m for m in a.messages.items
               if m.xml.find(f"{{{NS_MAM}}}result") is not None
               and m.xml.find(f"{{{NS_MAM}}}result").get("queryid") == qid]
    bodies, senders, rids = [], [], []
    for m in results:
        r = m.xml.find(f"{{{NS_MAM}}}result")
        inner = r.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
        bodies.append(inner.find(f"{{{NS_CLIENT}}}body").text)
        senders.append(inner.get("from"))
        rids.append(r.get("id"))
        assert m["from"] == room
    assert bodies == [f"archived line {i}" for i in range(3)], bodies
    assert senders == [f"{room}/bob"] * 3, "MAM shows occupant JIDs, never real JIDs"
    assert rids == ids, "the MAM ids are the stanza-ids occupants saw"
    # Paging: after the first id.
    qid2 = "q" + secrets.token_hex(3)
    await a.iq("set", f"<query xmlns='{NS_MAM}' queryid='{qid2}'><set xmlns='http://jabber.org/protocol/rsm'>"
               f"<after>{ids[0]}</after></set></query>", to=room)
    page = [m for m in a.messages.items if m.xml.find(f"{{{NS_MAM}}}result") is not None
            and m.xml.find(f"{{{NS_MAM}}}result").get("queryid") == qid2]
    assert len(page) == 2
    # The compliance archive has the real sender, once per message.
    recs = archive_search(a.rampart, "archived line 1")
    assert len(recs) == 1 and recs[0]["from"].startswith(b.boundjid.bare), recs


async def test_destroy_room(clients, new_user):
    a = await online(clients, new_user("alice"))
    b = await online(clients, new_user("bob"))
    room = new_room("doomed")
    alt = new_room("elsewhere")
    await create(a, room, "alice", persistentroom=True)
    await join(b, room, "bob")
    # Only owners may destroy.
    r = await b.iq("set", f"<query xmlns='{NS_MUC_OWNER}'><destroy/></query>", to=room)
    assert stanza_error(r)[0] == "forbidden"
    await muc(a).destroy(room, reason="project over", altroom=alt)
    p = await b.wait_presence(lambda s: s["from"] == f"{room}/bob" and s["type"] == "unavailable")
    d = p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy")
    assert d is not None and d.get("jid") == alt, p
    assert d.find(f"{{{NS_MUC_USER}}}reason").text == "project over"
    info = await disco_info(a, room)
    assert stanza_error(info)[0] == "item-not-found"


async def test_persistent_room_survives_restart(server, clients, new_user):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await online(clients, alice)
    room = new_room("keep")
    await create(a, room, "alice", persistentroom=True, membersonly=True, roomname="Kept room")
    await muc(a).set_affiliation(room, "member", jid=bob.jid)
    muc(a).set_subject(room, "Survives restarts")
    await a.wait_message(lambda m: m["subject"] == "Survives restarts")
    await say(a, room, "said before the restart")
    await heard(a, room, "said before the restart")
    muc(a).leave_muc(room, "alice")
    await a.wait_presence(lambda s: s["from"] == f"{room}/alice" and s["type"] == "unavailable")
    server.restart()
    b = await online(clients, bob)
    info = await disco_info(b, room)
    assert {"muc_persistent", "muc_membersonly"} <= features(info), info
    assert roominfo(info).get("muc#roomconfig_roomname") == "Kept room"
    c = await online(clients, carol)
    assert await join_error(c, room, "carol") == ("registration-required", "auth")
    _p, subject, _o, history = await join(b, room, "bob", maxstanzas=5)
    assert subject["subject"] == "Survives restarts"
    # History comes back from the compliance archive.
    assert [m["body"] for m in history] == ["said before the restart"], history
    a2 = await online(clients, alice, "laptop")
    pres, _s, _o, _h = await join(a2, room, "alice")
    assert item(pres).get("affiliation") == "owner" and 201 not in codes(pres)


def test_hostile_room_stanzas_get_stanza_errors(server, new_user):
    """Malformed or unauthorized room stanzas from a raw client are answered with the
    protocol's own errors, and the server stays up."""
    from rampart_harness import RawXMPP, NS_CLIENT as C
    u = new_user("mallory")
    raw = RawXMPP(server)
    raw.login(u)
    room = new_room("hostile")

    def ask(xml: str, sid: str):
        raw.send(xml)
        deadline = 15
        while True:
            el = raw.next_element(timeout=deadline)
            assert el is not None, f"no answer to {sid}"
            if el.get("id") == sid:
                return el

    def cond(el) -> str:
        e = el.find(f"{{{C}}}error")
        assert e is not None, ET.tostring(e if e is not None else el)
        return next(c.tag.split("}")[1] for c in e if not c.tag.endswith("}text"))

    # Presence to the bare room JID: no nick.
    assert cond(ask(f"<presence id='p1' to='{room}'><x xmlns='{NS_MUC}'/></presence>", "p1")) == "jid-malformed"
    # Enter and create (status 201), then garbage.
    raw.send(f"<presence id='p2' to='{room}/m'><x xmlns='{NS_MUC}'/></presence>")
    # An admin IQ with 101 items.
    items = "".join(f"<item nick='n{i}' role='none'/>" for i in range(101))
    el = ask(f"<iq type='set' id='i1' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query></iq>", "i1")
    assert cond(el) == "bad-request"
    # A config form with nonsense values.
    el = ask(f"<iq type='set' id='i2' to='{room}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='submit'>"
             f"<field var='muc#roomconfig_maxusers'><value>99999999999999999999</value></field></x></query></iq>", "i2")
    assert cond(el) == "not-acceptable"
    # Unknown affiliation; role change for a nick that is not there.
    el = ask(f"<iq type='set' id='i3' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'>"
             f"<item jid='x@localhost' affiliation='emperor'/></query></iq>", "i3")
    assert cond(el) == "bad-request"
    el = ask(f"<iq type='set' id='i4' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'>"
             f"<item nick='ghost' role='none'/></query></iq>", "i4")
    assert cond(el) == "item-not-found"
    # Messages to a room that does not exist, groupchat to an occupant, invite without 'to'.
    el = ask(f"<message id='m1' type='groupchat' to='nowhere-{secrets.token_hex(3)}@{MUC}'><body>x</body></message>", "m1")
    assert cond(el) == "item-not-found"
    el = ask(f"<message id='m2' type='groupchat' to='{room}/m'><body>x</body></message>", "m2")
    assert cond(el) == "bad-request"
    el = ask(f"<message id='m3' to='{room}'><x xmlns='{NS_MUC_USER}'><invite/></x></message>", "m3")
    assert cond(el) == "jid-malformed"
    # MAM on a room with a bad RSM id.
    el = ask(f"<iq type='set' id='i5' to='{room}'><query xmlns='{NS_MAM}'><set xmlns='http://jabber.org/protocol/rsm'>"
             f"<after>not-a-number</after></set></query></iq>", "i5")
    assert cond(el) == "item-not-found"
    raw.close()
    server.assert_alive()
