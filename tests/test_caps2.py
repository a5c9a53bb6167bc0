"""XEP-0390 Entity Capabilities 2.0 (issue #7), over real TLS.

The server's `<c xmlns='urn:xmpp:caps'>` (sha-256 and sha3-256 hashes of its
disco#info, computed here independently per XEP-0390 §4.1) is in the
post-auth stream features beside the XEP-0115 one, and the server answers
disco#info on `urn:xmpp:caps#<algo>.<hash>`. A client's caps 2.0 in presence
count for PEP `+notify` filtering only once the disco#info it returns hashes
to what it announced. slixmpp has no XEP-0390 plugin, so the client side is
the raw client `RawXMPP`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import xml.etree.ElementTree as ET

from rampart_harness import DOMAIN, NS_DISCO_INFO, RawXMPP
from test_pep import NS_EVENT, NS_TUNE, fresh_caps_memory, pep_client, tune  # noqa: F401 (autouse fixture)

NS_CAPS2 = "urn:xmpp:caps"
NS_HASHES2 = "urn:xmpp:hashes:2"
NS_CAPS = "http://jabber.org/protocol/caps"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def caps2_input(query: ET.Element) -> bytes:
    """XEP-0390 §4.1 from a disco#info <query/>: features, identities, forms."""
    def item(s: str) -> bytes:
        return s.encode() + b"\x1f"
    feats = b"".join(sorted(item(f.get("var")) for f in query.findall(f"{{{NS_DISCO_INFO}}}feature"))) + b"\x1c"
    ids = b"".join(sorted(
        item(i.get("category")) + item(i.get("type")) + item(i.get(XML_LANG, "")) + item(i.get("name", "")) + b"\x1e"
        for i in query.findall(f"{{{NS_DISCO_INFO}}}identity"))) + b"\x1c"
    forms = []
    for x in query.findall("{jabber:x:data}x"):
        fields = []
        for f in x.findall("{jabber:x:data}field"):
            values = sorted(item(v.text or "") for v in f.findall("{jabber:x:data}value"))
            fields.append(item(f.get("var")) + b"".join(values) + b"\x1e")
        forms.append(b"".join(sorted(fields)) + b"\x1d")
    return feats + ids + b"".join(sorted(forms)) + b"\x1c"


def digest(algo: str, data: bytes) -> str:
    h = {"sha-256": hashlib.sha256, "sha3-256": hashlib.sha3_256}[algo](data).digest()
    return base64.b64encode(h).decode()


def raw_features(server, user) -> ET.Element:
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        raw.auth_plain(user.localpart, user.password)
        raw.open_stream()
        return raw.features()
    finally:
        raw.close()


async def test_server_caps2_in_stream_features_and_disco_node(server, new_user, clients):
    u = new_user("caps2")
    feats = raw_features(server, u)
    c2 = feats.find(f"{{{NS_CAPS2}}}c")
    assert c2 is not None, ET.tostring(feats)
    hashes = {h.get("algo"): h.text for h in c2.findall(f"{{{NS_HASHES2}}}hash")}
    assert set(hashes) == {"sha-256", "sha3-256"}, hashes
    # The XEP-0115 element stays beside it.
    assert feats.find(f"{{{NS_CAPS}}}c") is not None
    # Stable: the same on the next login.
    again = {h.get("algo"): h.text for h in raw_features(server, u).find(f"{{{NS_CAPS2}}}c")}
    assert again == hashes

    c = await clients(u)
    for algo, value in hashes.items():
        node = f"{NS_CAPS2}#{algo}.{value}"
        resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}' node='{node}'/>", to=DOMAIN)
        assert resp["type"] == "result", resp
        q = resp.xml.find(f"{{{NS_DISCO_INFO}}}query")
        assert q.get("node") == node
        assert ("server", "im") in {(i.get("category"), i.get("type")) for i in q.findall(f"{{{NS_DISCO_INFO}}}identity")}
        # The hash is XEP-0390's of what the server answers (not XEP-0115's).
        assert digest(algo, caps2_input(q)) == value
    # Equal to the plain disco#info of the server.
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=DOMAIN)
    assert digest("sha-256", caps2_input(resp.xml.find(f"{{{NS_DISCO_INFO}}}query"))) == hashes["sha-256"]
    # A node with a wrong hash is not the server's.
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}' node='{NS_CAPS2}#sha-256.AAAA'/>", to=DOMAIN)
    assert resp["type"] == "error" and resp["error"]["condition"] == "item-not-found"


def client_info(extra_feature: str) -> str:
    return (f"<identity category='client' type='pc' name='raw'/>"
            f"<feature var='{NS_DISCO_INFO}'/><feature var='{extra_feature}'/>")


def caps2_presence(info_xml: str, claimed: str | None = None) -> tuple[str, str]:
    q = ET.fromstring(f"<query xmlns='{NS_DISCO_INFO}'>{info_xml}</query>")
    value = claimed or digest("sha-256", caps2_input(q))
    return (f"<presence><c xmlns='{NS_CAPS2}'><hash xmlns='{NS_HASHES2}' algo='sha-256'>{value}</hash>"
            f"<hash xmlns='{NS_HASHES2}' algo='blake2b-256'>AAAA</hash></c></presence>", value)


def answer_caps_query(raw: RawXMPP, info_xml: str) -> str:
    """Wait for the server's disco#info query, answer it; return the node asked."""
    for _ in range(30):
        el = raw.next_element(10)
        assert el is not None, raw.describe()
        q = el.find(f"{{{NS_DISCO_INFO}}}query") if el.tag == "{jabber:client}iq" else None
        if q is not None and el.get("type") == "get":
            assert el.get("from") == DOMAIN
            node = q.get("node")
            raw.send(f"<iq type='result' id='{el.get('id')}' to='{DOMAIN}'>"
                     f"<query xmlns='{NS_DISCO_INFO}' node='{node}'>{info_xml}</query></iq>")
            return node
    raise AssertionError("the server never asked for the caps")


def events_until(raw: RawXMPP, seconds: float) -> list[ET.Element]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        el = raw.next_element(0.2)
        if el is not None and el.find(f"{{{NS_EVENT}}}event") is not None:
            out.append(el)
    return out


async def test_client_caps2_verified_then_used_for_notify(server, new_user, clients):
    alice = new_user("alice")
    a = await pep_client(clients, alice)
    raw = RawXMPP(server)
    try:
        raw.login(alice, resource="caps2")
        info = client_info(f"{NS_TUNE}+notify")
        presence, value = caps2_presence(info)
        raw.send(presence)
        node = answer_caps_query(raw, info)
        # Asked on the XEP-0390 node of the one hash it can compute.
        assert node == f"{NS_CAPS2}#sha-256.{value}"
        await a.sync()
        r = await a.plugin["xep_0060"].publish(None, NS_TUNE, id="t1", payload=tune("caps 2.0"))
        assert r["type"] == "result"
        evs = []
        deadline = time.monotonic() + 15
        while not evs and time.monotonic() < deadline:
            evs = events_until(raw, 0.5)
        assert evs, "no notification for a session with verified caps 2.0"
        items = evs[0].find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
        assert items.get("node") == NS_TUNE and items.find(f"{{{NS_EVENT}}}item").get("id") == "t1"
    finally:
        raw.close()


async def test_forged_caps2_get_no_notifications(server, new_user, clients):
    """A session whose disco#info does not hash (XEP-0390) to what it announced is
    not trusted: its claimed +notify features are ignored."""
    alice = new_user("alice")
    a = await pep_client(clients, alice)
    raw = RawXMPP(server)
    try:
        raw.login(alice, resource="forger")
        info = client_info(f"{NS_TUNE}+notify")
        forged = base64.b64encode(b"\x01" * 32).decode()
        presence, _ = caps2_presence(info, claimed=forged)
        raw.send(presence)
        node = answer_caps_query(raw, info)
        assert node == f"{NS_CAPS2}#sha-256.{forged}"
        await a.sync()
        r = await a.plugin["xep_0060"].publish(None, NS_TUNE, id="t2", payload=tune("not for forgers"))
        assert r["type"] == "result"
        await asyncio.sleep(0)
        assert events_until(raw, 2.0) == []
    finally:
        raw.close()
