"""XEP-0352 Client State Indication: an inactive client is not woken for trivia.

Covers: the <csi/> stream feature; after <inactive/>, presence updates and chat states
wait on the server (a newer presence from the same contact replaces an older one) and
arrive when the client sends <active/>; a message with a body is delivered at once, after
whatever was waiting, so order is kept.
"""

import xml.etree.ElementTree as ET

from rampart_harness import NS_CLIENT, RawXMPP

NS_CSI = "urn:xmpp:csi:0"


def login(server, user, resource):
    raw = RawXMPP(server)
    raw.negotiate_tls()
    res = raw.auth_plain(user.localpart, user.password)
    assert res.tag.endswith("success"), ET.tostring(res)
    raw.open_stream()
    feats = raw.features()
    assert feats.find(f"{{{NS_CSI}}}csi") is not None, f"no <csi/> feature: {ET.tostring(feats)!r}"
    raw.bind(resource)
    return raw


def drain(raw, seconds):
    """Every top-level element that arrives within `seconds`."""
    out = []
    while True:
        el = raw.next_element(timeout=seconds)
        if el is None:
            return out
        out.append(el)


def statuses(els):
    return [e.findtext(f"{{{NS_CLIENT}}}status") for e in els if e.tag == f"{{{NS_CLIENT}}}presence"]


async def test_inactive_client_gets_presence_later_and_messages_at_once(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    b = login(server, bob, "phone")
    b.send("<presence/>")
    drain(b, 0.5)
    a = await clients(alice, "pc")
    await a.go_online()
    b.send(f"<inactive xmlns='{NS_CSI}'/>")
    a.send_presence(pto=f"{bob.jid}/phone", pstatus="first")
    a.send_presence(pto=f"{bob.jid}/phone", pstatus="second")
    m = a.make_message(mto=f"{bob.jid}/phone", mtype="chat")
    m.append(ET.Element("{http://jabber.org/protocol/chatstates}composing"))
    m.send()
    await a.sync()
    assert drain(b, 1.0) == [], "an inactive client was sent presence or chat states"

    b.send(f"<active xmlns='{NS_CSI}'/>")
    got = drain(b, 1.0)
    assert statuses(got) == ["second"], f"held presence after <active/>: {statuses(got)}"
    assert any(e.find("{http://jabber.org/protocol/chatstates}composing") is not None for e in got)

    b.send(f"<inactive xmlns='{NS_CSI}'/>")
    a.send_presence(pto=f"{bob.jid}/phone", pstatus="third")
    a.send_msg(f"{bob.jid}/phone", "wake up")
    await a.sync()
    got = drain(b, 1.0)
    kinds = [(e.tag.split('}')[1], e.findtext(f"{{{NS_CLIENT}}}status") or e.findtext(f"{{{NS_CLIENT}}}body")) for e in got]
    assert kinds == [("presence", "third"), ("message", "wake up")], kinds
    b.close()
