"""XEP-0280 Message Carbons: one user's devices stay in sync.

Covers: enabling carbons; a chat message delivered to one resource is copied to the
account's other carbons-enabled resources as <received/>; a chat message a resource sends
is copied to its carbons-enabled siblings as <sent/>; resources without carbons get no
copies; <private/> messages are not copied; disabling stops the copies; the feature is
advertised in the server's disco#info.
"""

import asyncio
import xml.etree.ElementTree as ET

from rampart_harness import DOMAIN, NS_DISCO_INFO

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"


async def online(clients, user, resource):
    c = await clients(user, resource)
    await c.go_online()
    return c


async def enable(c, on=True):
    resp = await c.iq("set", f"<{'enable' if on else 'disable'} xmlns='{NS_CARBONS}'/>")
    assert resp["type"] == "result", resp


def carbon(m, kind):
    """The forwarded inner message of a <sent/>/<received/> carbon, or None."""
    x = m.xml.find(f"{{{NS_CARBONS}}}{kind}")
    if x is None:
        return None
    return x.find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")


def body_of(inner):
    b = inner.find("{jabber:client}body") if inner is not None else None
    return b.text if b is not None else None


async def test_carbons_feature_advertised(server, new_user, clients):
    a = await online(clients, new_user("alice"), "pc")
    resp = await a.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=DOMAIN)
    feats = {f.get("var") for f in resp.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    assert NS_CARBONS in feats, feats


async def test_received_and_sent_copies(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    phone = await online(clients, alice, "phone")
    desk = await online(clients, alice, "desk")
    plain = await online(clients, alice, "nocarbons")
    b = await online(clients, bob, "pc")
    await enable(phone)
    await enable(desk)

    b.send_msg(f"{alice.jid}/phone", "to your phone")
    await phone.wait_message(lambda m: m["body"] == "to your phone")
    c = await desk.wait_message(lambda m: body_of(carbon(m, "received")) == "to your phone",
                                what="<received/> carbon on the desk")
    assert c["from"] == alice.jid, c["from"]
    inner = carbon(c, "received")
    assert inner.get("from") == f"{bob.jid}/pc" and inner.get("to") == f"{alice.jid}/phone"
    await plain.messages.assert_none(lambda m: carbon(m, "received") is not None,
                                     what="carbon on a resource that did not enable them")

    phone.send_msg(bob.jid, "reply from my phone")
    await b.wait_message(lambda m: m["body"] == "reply from my phone")
    c = await desk.wait_message(lambda m: body_of(carbon(m, "sent")) == "reply from my phone",
                                what="<sent/> carbon on the desk")
    assert carbon(c, "sent").get("to") == bob.jid
    await phone.messages.assert_none(lambda m: carbon(m, "sent") is not None,
                                     what="a sent carbon back to the sending resource")


async def test_private_and_disabled_are_not_copied(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    phone = await online(clients, alice, "phone")
    desk = await online(clients, alice, "desk")
    b = await online(clients, bob, "pc")
    await enable(desk)

    m = b.make_message(mto=f"{alice.jid}/phone", mbody="just for the phone", mtype="chat")
    m.append(ET.Element(f"{{{NS_CARBONS}}}private"))
    m.send()
    await phone.wait_message(lambda m: m["body"] == "just for the phone")
    await desk.messages.assert_none(lambda m: carbon(m, "received") is not None,
                                    what="carbon of a <private/> message")

    await enable(desk, on=False)
    b.send_msg(f"{alice.jid}/phone", "after disabling")
    await phone.wait_message(lambda m: m["body"] == "after disabling")
    await desk.messages.assert_none(lambda m: carbon(m, "received") is not None,
                                    what="carbon after <disable/>")
