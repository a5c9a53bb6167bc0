"""XEP-0198 Stream Management: acknowledgements, resumption, and no lost messages.

Covers: the <sm/> stream feature; <enable resume='true'/> answered with <enabled id max/>;
<r/> answered with <a h/> counting the stanzas the client sent; a connection cut mid-flood
and resumed with <resume previd h/> delivers every message exactly once and in order
(the ones sent while disconnected included); a session that is never resumed hands every
unacknowledged message to offline storage, so the next login gets them (with delay
stamps), and so does a session whose client closes its stream without acknowledging; a
resume with an unknown id fails with item-not-found.
"""

import asyncio
import time
import xml.etree.ElementTree as ET

from rampart_harness import NS_CLIENT, RawXMPP

NS_SM = "urn:xmpp:sm:3"
NS_DELAY = "urn:xmpp:delay"

# Short hibernation so the "never resumed" case is quick; resumption happens well within it.
RAMPART_LIMITS = {"resume_timeout_secs": 3}


class SmClient:
    """A raw client that counts the stanzas it receives (XEP-0198 'h')."""

    def __init__(self, server, user, resource="sm", resume_max=RAMPART_LIMITS["resume_timeout_secs"], **raw_opts):
        self.raw = RawXMPP(server, **raw_opts)
        self.resume_max = resume_max
        self.user = user
        self.resource = resource
        self.h = 0
        self.bodies: list[str] = []

    def login_and_enable(self) -> str:
        feats = self.raw.negotiate_tls()
        res = self.raw.auth_plain(self.user.localpart, self.user.password)
        assert res.tag.endswith("success"), ET.tostring(res)
        self.raw.open_stream()
        feats = self.raw.features()
        assert feats.find(f"{{{NS_SM}}}sm") is not None, f"no <sm/> feature: {ET.tostring(feats)!r}"
        self.raw.bind(self.resource)
        self.raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = self.raw.expect(NS_SM, "enabled")
        assert enabled.get("resume") == "true" and enabled.get("id"), ET.tostring(enabled)
        assert int(enabled.get("max")) == self.resume_max
        self.raw.send("<presence/>")
        return enabled.get("id")

    def resume(self, previd: str, h: int) -> ET.Element:
        self.raw.negotiate_tls()
        res = self.raw.auth_plain(self.user.localpart, self.user.password)
        assert res.tag.endswith("success"), ET.tostring(res)
        self.raw.open_stream()
        self.raw.features()
        self.raw.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")
        return self.raw.next_element()

    def pump(self, until_bodies: int, timeout: float = 10) -> None:
        """Read until `until_bodies` message bodies were seen in total."""
        deadline = time.monotonic() + timeout
        while len(self.bodies) < until_bodies:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(self.bodies)} of {until_bodies} messages: {self.bodies}"
            el = self.raw.next_element(timeout=left)
            assert el is not None, f"connection ended after {self.bodies}"
            self.take(el)

    def take(self, el: ET.Element) -> None:
        if el.tag in (f"{{{NS_CLIENT}}}message", f"{{{NS_CLIENT}}}presence", f"{{{NS_CLIENT}}}iq"):
            self.h += 1
            body = el.find(f"{{{NS_CLIENT}}}body")
            if body is not None and body.text:
                self.bodies.append(body.text)


async def sender(clients, user):
    c = await clients(user, "pc")
    await c.go_online()
    return c


async def test_ack_request_counts_client_stanzas(server, new_user):
    bob = new_user("bob")
    c = SmClient(server, bob)
    c.login_and_enable()  # sent one stanza after enabling: the presence
    c.raw.send(f"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='{NS_SM}'/>")
    while True:
        el = c.raw.next_element()
        assert el is not None
        if el.tag == f"{{{NS_SM}}}a":
            assert el.get("h") == "2", ET.tostring(el)
            break
    c.raw.close()


async def test_resume_after_cut_loses_and_duplicates_nothing(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await sender(clients, alice)
    b1 = SmClient(server, bob)
    previd = b1.login_and_enable()
    for i in range(20):
        a.send_msg(f"{bob.jid}/sm", f"m{i:02}")
    await a.sync()
    b1.pump(20)
    # Acknowledge only what arrived, then cut the TCP connection without closing the stream.
    b1.raw.send(f"<a xmlns='{NS_SM}' h='{b1.h}'/>")
    await asyncio.sleep(0.2)
    b1.raw.close()
    for i in range(20, 30):
        a.send_msg(f"{bob.jid}/sm", f"m{i:02}")
    await a.sync()
    b2 = SmClient(server, bob)
    resumed = b2.resume(previd, b1.h)
    assert resumed is not None and resumed.tag == f"{{{NS_SM}}}resumed", \
        ET.tostring(resumed) if resumed is not None else "no answer to <resume/>"
    assert resumed.get("previd") == previd
    b2.pump(10)
    everything = b1.bodies + b2.bodies
    assert everything == [f"m{i:02}" for i in range(30)], everything
    b2.raw.close()


async def unacked_then(server, new_user, clients, bodies: list[str], end) -> list:
    """Bob's SM session receives `bodies` and acknowledges none; `end(b1)` ends it; a new
    login of Bob's then collects what comes back from offline storage."""
    alice, bob = new_user("alice"), new_user("bob")
    a = await sender(clients, alice)
    b1 = SmClient(server, bob)
    b1.login_and_enable()
    for body in bodies:
        a.send_msg(bob.jid, body)
    await a.sync()
    b1.pump(len(bodies))
    await end(b1)
    b = await clients(bob, "later")
    await b.go_online()
    got = await b.messages.collect(len(bodies), lambda m: m["body"] in bodies, timeout=10)
    assert [m["body"] for m in got] == bodies
    return got


async def test_unresumed_session_hands_unacked_messages_to_offline_storage(server, new_user, clients):
    async def cut_and_never_resume(b1):
        b1.raw.close()  # never acknowledged, never resumed
        await asyncio.sleep(4.5)  # past resume_timeout_secs

    got = await unacked_then(server, new_user, clients, [f"unacked {i}" for i in range(8)], cut_and_never_resume)
    assert all(m.xml.find(f"{{{NS_DELAY}}}delay") is not None for m in got), "no delay stamps"


async def test_closed_stream_hands_unacked_messages_to_offline_storage(server, new_user, clients):
    # A clean close (not a broken connection) is no resumable end: what the client never
    # acknowledged goes back to the router at once.
    async def close_stream(b1):
        b1.raw.send("</stream:stream>")
        await asyncio.sleep(0.5)
        b1.raw.close()

    await unacked_then(server, new_user, clients, [f"unacked at close {i}" for i in range(5)], close_stream)


async def test_resume_unknown_id_fails(server, new_user):
    bob = new_user("bob")
    c = SmClient(server, bob)
    el = c.resume("no-such-session", 0)
    assert el is not None and el.tag == f"{{{NS_SM}}}failed", ET.tostring(el) if el is not None else None
    assert el.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    # The stream stays usable: the client can bind normally instead.
    assert c.raw.bind("fresh").endswith("/fresh")
    c.raw.close()
