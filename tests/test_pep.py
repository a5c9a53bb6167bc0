"""XEP-0163 Personal Eventing (issue #7), over real TLS with slixmpp and its
plugins (xep_0030, xep_0060, xep_0115, xep_0163, xep_0084, xep_0153,
xep_0402, xep_0292), plus raw stanzas for error paths.

Covers: the account's disco#info (pubsub/pep identity, pubsub# features) and
the server's XEP-0115 caps in stream features; publish/notify between two
users with a presence subscription, filtered by +notify learned through
entity capabilities; last item on login; items (all, max_items, by id),
retract with notify, purge, delete; node configuration; publish-options
preconditions; access-model errors; bookmarks (XEP-0402) across two
resources and their XEP-0048 private-storage mirror; XEP-0084 avatars and
XEP-0398 conversion to the vCard; vCard4 over PEP (XEP-0292); OMEMO-style
nodes published with access_model=open; the guard refusing a lure link in an
item; the archive record of a publish.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import xml.etree.ElementTree as ET

import pytest
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rampart_harness import (
    DOMAIN, NS_DISCO_INFO, RawXMPP, archive_search, archive_verify, roster_items,
    stanza_error, stanza_error_text, verify_export_dir,
)

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_TUNE = "http://jabber.org/protocol/tune"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_OMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
NS_OMEMO_BUNDLE = "eu.siacs.conversations.axolotl.bundles:4242"

# Caps vers the (module-scoped) server has asked about already.
ASKED_VERS: set[str] = set()


@pytest.fixture(autouse=True, scope="module")
def fresh_caps_memory():
    """pep_client remembers which caps vers the server asked about, and each test module
    has its own server: modules that use pep_client import this fixture."""
    ASKED_VERS.clear()
    yield
    ASKED_VERS.clear()

PLUGINS = ["xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163"]


def tune(title: str) -> ET.Element:
    t = ET.Element(f"{{{NS_TUNE}}}tune")
    ET.SubElement(t, f"{{{NS_TUNE}}}title").text = title
    return t


def publish_options(**fields) -> Form:
    f = Form()
    f["type"] = "submit"
    f.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
    for k, v in fields.items():
        f.add_field(var=f"pubsub#{k}", value=v)
    return f


async def pep_client(clients, user, resource="pc", interests=(), plugins=(), online=True):
    """A logged-in client with the PEP plugins whose caps carry `+notify` for
    `interests`; returns once the server has asked for (and got) its caps."""
    c = clients.new(user, resource)
    for p in PLUGINS + list(plugins):
        c.register_plugin(p)
    asked = asyncio.Event()
    c.register_handler(Callback(
        "test: caps query", MatchXPath(f"{{jabber:client}}iq/{{{NS_DISCO_INFO}}}query"),
        lambda iq: asked.set() if iq["from"] == DOMAIN and iq["type"] == "get" else None))
    c.events = []
    c.register_handler(Callback(
        "test: pep events", MatchXPath(f"{{jabber:client}}message/{{{NS_EVENT}}}event"),
        lambda m: c.events.append(m)))
    for ns in interests:
        c.plugin["xep_0163"].add_interest(ns)
    await c.login()
    await c.roster_get()
    if online:
        await c.plugin["xep_0115"].update_caps(broadcast=False)
        ver = await c.plugin["xep_0115"].get_verstring(c.boundjid)
        await c.go_online()
        if ver not in ASKED_VERS:
            # The server asks once per ver (and caches the verified answer).
            await asyncio.wait_for(asked.wait(), 20)
            ASKED_VERS.add(ver)
        await asyncio.sleep(0.3)
        await c.sync()
    return c


def events_of(c, node):
    out = []
    for m in c.events:
        items = m.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
        if items is not None and items.get("node") == node:
            out.append(items)
    return out


async def wait_event(c, node, pred=lambda items: True, timeout=15, what="a PEP event"):
    deadline = asyncio.get_running_loop().time() + timeout
    seen = 0
    while True:
        evs = events_of(c, node)
        for e in evs[seen:]:
            if pred(e):
                return e
        seen = len(evs)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} on {node}; got {len(evs)} events")
        await asyncio.sleep(0.05)


def item_ids(items_el, ns=NS_EVENT):
    return [i.get("id") for i in items_el.findall(f"{{{ns}}}item")]


async def subscribe_to(a, a_user, b, b_user):
    """a subscribes to b's presence and b approves."""
    a.send_presence(pto=b_user.jid, ptype="subscribe")
    await b.wait_presence(lambda p: p["from"].bare == a_user.jid and p["type"] == "subscribe",
                          what="subscription request")
    b.send_presence(pto=a_user.jid, ptype="subscribed")
    await a.roster_pushes.wait_for(lambda p: roster_items(p).get(b_user.jid) is not None
                                   and roster_items(p)[b_user.jid].get("subscription") in ("to", "both"),
                                   what="roster push with subscription to")


async def iq_raw(c, itype, payload, to=None, timeout=20):
    """Send an IQ as text and return the reply as an ElementTree element
    (slixmpp's IQ error class does not know every RFC 6120 condition, e.g.
    policy-violation)."""
    import secrets
    iq_id = "raw-" + secrets.token_hex(6)
    got = asyncio.get_running_loop().create_future()
    c.register_handler(Callback(
        f"test: reply {iq_id}", MatchXPath("{jabber:client}iq"),
        lambda iq: (not got.done() and iq["id"] == iq_id and iq["type"] in ("result", "error")
                    and got.set_result(iq.xml))))
    to_attr = f" to='{to}'" if to else ""
    c.send_raw(f"<iq type='{itype}' id='{iq_id}'{to_attr}>{payload}</iq>")
    try:
        return await asyncio.wait_for(got, timeout)
    finally:
        c.remove_handler(f"test: reply {iq_id}")


def raw_error(el):
    """(condition, text) of an error reply given as an ElementTree element."""
    err = el.find("{jabber:client}error")
    if err is None:
        return ("", "")
    cond, text = "", ""
    for ch in err:
        if ch.tag == "{urn:ietf:params:xml:ns:xmpp-stanzas}text":
            text = ch.text or ""
        elif ch.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}"):
            cond = ch.tag.split("}")[1]
    return (cond, text)


def pubsub_err(resp):
    """(condition, pubsub#errors condition or None)."""
    cond, _ = stanza_error(resp)
    err = resp.xml.find("{jabber:client}error")
    app = None
    if err is not None:
        for ch in err:
            if ch.tag.startswith(f"{{{NS_ERRORS}}}"):
                app = ch.tag.split("}")[1]
    return cond, app


async def test_account_disco_and_server_caps(server, new_user, clients):
    u = new_user("disco")
    c = await pep_client(clients, u)
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=u.jid)
    q = resp.xml.find(f"{{{NS_DISCO_INFO}}}query")
    ids = {(i.get("category"), i.get("type")) for i in q.findall(f"{{{NS_DISCO_INFO}}}identity")}
    feats = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
    assert ("pubsub", "pep") in ids and ("account", "registered") in ids
    for f in ["publish", "publish-options", "access-presence", "access-open", "access-roster",
              "access-whitelist", "retrieve-items", "retract-items", "purge-nodes", "delete-nodes",
              "config-node", "auto-create", "last-published"]:
        assert f"{NS_PUBSUB}#{f}" in feats, f
    assert "urn:xmpp:bookmarks:1#compat" in feats
    assert "urn:xmpp:pep-vcard-conversion:0" in feats
    # Explicit subscriptions beside +notify (tests/test_pubsub_subscriptions.py).
    assert f"{NS_PUBSUB}#subscribe" in feats

    # The server's caps in the stream features hash its disco#info.
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        raw.auth_plain(u.localpart, u.password)
        raw.open_stream()
        feats_el = raw.features()
    finally:
        raw.close()
    cel = feats_el.find(f"{{{NS_CAPS}}}c")
    assert cel is not None and cel.get("hash") == "sha-1"
    info = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}' node='{cel.get('node')}#{cel.get('ver')}'/>", to=DOMAIN)
    assert info["type"] == "result", info
    q = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
    s = ""
    for i in sorted(q.findall(f"{{{NS_DISCO_INFO}}}identity"),
                    key=lambda i: (i.get("category"), i.get("type"), i.get("{http://www.w3.org/XML/1998/namespace}lang", ""), i.get("name", ""))):
        s += f"{i.get('category')}/{i.get('type')}/{i.get('{http://www.w3.org/XML/1998/namespace}lang', '')}/{i.get('name', '')}<"
    for f in sorted(x.get("var") for x in q.findall(f"{{{NS_DISCO_INFO}}}feature")):
        s += f + "<"
    assert base64.b64encode(hashlib.sha1(s.encode()).digest()).decode() == cel.get("ver")


async def test_publish_notifies_owner_and_subscriber_with_notify(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await pep_client(clients, alice, interests=[NS_TUNE])
    a2 = await pep_client(clients, alice, resource="phone", interests=[NS_TUNE])
    b = await pep_client(clients, bob, interests=[NS_TUNE])
    c = await pep_client(clients, carol)  # no +notify for tune
    await subscribe_to(b, bob, a, alice)
    await subscribe_to(c, carol, a, alice)

    r = await a.plugin["xep_0060"].publish(None, NS_TUNE, id="current", payload=tune("First"))
    assert r["type"] == "result"
    for who in (a, a2, b):
        ev = await wait_event(who, NS_TUNE, what="tune notification")
        assert item_ids(ev) == ["current"]
        assert ev.find(f"{{{NS_EVENT}}}item/{{{NS_TUNE}}}tune/{{{NS_TUNE}}}title").text == "First"
    ev_msg = [m for m in b.events][-1]
    assert ev_msg["from"] == alice.jid and ev_msg["type"] == "headline"
    # Carol is subscribed but did not ask for tunes (+notify), so she gets nothing.
    await asyncio.sleep(1.0)
    assert events_of(c, NS_TUNE) == []

    # A contact that logs in later gets the last item once its caps are known.
    b2 = await pep_client(clients, bob, resource="laptop", interests=[NS_TUNE])
    ev = await wait_event(b2, NS_TUNE, what="last published item on login")
    assert item_ids(ev) == ["current"]


async def test_items_retract_purge_delete(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    node = "urn:example:history"
    a = await pep_client(clients, alice, interests=[node])
    b = await pep_client(clients, bob, interests=[node])
    await subscribe_to(b, bob, a, alice)
    ps = a.plugin["xep_0060"]
    opts = publish_options(max_items="10")
    for i in range(4):
        r = await ps.publish(None, node, id=f"i{i}", payload=tune(f"t{i}"), options=opts)
        assert r["type"] == "result"
    # All, newest first; max_items; by id; the contact may read them (presence model).
    r = await ps.get_items(None, node)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["i3", "i2", "i1", "i0"]
    r = await b.plugin["xep_0060"].get_items(alice.jid, node, max_items=2)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["i3", "i2"]
    r = await b.plugin["xep_0060"].get_item(alice.jid, node, "i1")
    assert [i["id"] for i in r["pubsub"]["items"]] == ["i1"]

    # Retract with notify.
    r = await ps.retract(None, node, "i0", notify=True)
    assert r["type"] == "result"
    ev = await wait_event(a, node, lambda e: e.find(f"{{{NS_EVENT}}}retract") is not None, what="retract")
    assert ev.find(f"{{{NS_EVENT}}}retract").get("id") == "i0"
    resp = await a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><retract node='{node}'><item id='i0'/></retract></pubsub>")
    assert stanza_error(resp)[0] == "item-not-found"

    # The owner's disco#items lists the node (XEP-0060 §5.2); a contact sees none.
    resp = await a.iq("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=alice.jid)
    nodes = [i.get("node") for i in resp.xml.findall("{http://jabber.org/protocol/disco#items}query/{http://jabber.org/protocol/disco#items}item")]
    assert node in nodes, nodes
    resp = await b.iq("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=alice.jid)
    assert resp.xml.findall("{http://jabber.org/protocol/disco#items}query/{http://jabber.org/protocol/disco#items}item") == []

    # Purge, then delete.
    r = await ps.purge(None, node)
    assert r["type"] == "result"
    r = await ps.get_items(None, node)
    assert list(r["pubsub"]["items"]) == []
    r = await ps.delete_node(None, node)
    assert r["type"] == "result"
    resp = await a.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub>")
    assert stanza_error(resp) == ("item-not-found", "cancel")


async def test_node_configuration_and_publish_options_precondition(server, new_user, clients):
    alice = new_user("alice")
    a = await pep_client(clients, alice)
    ps = a.plugin["xep_0060"]
    node = "urn:example:config"
    r = await ps.publish(None, node, id="x", payload=tune("x"))
    assert r["type"] == "result"
    r = await ps.get_node_config(None, node)
    form = r["pubsub_owner"]["configure"]["form"]
    values = form.get_values()
    assert values["pubsub#access_model"] == "presence"
    assert str(values["pubsub#max_items"]) == "1"

    # Precondition not met: the node is presence-only, the publisher asks for open.
    resp = await a.iq("set",
        f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='y'>"
        f"<tune xmlns='{NS_TUNE}'/></item></publish><publish-options>"
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
        "<field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub>")
    assert pubsub_err(resp) == ("conflict", "precondition-not-met")
    # The item was not published.
    r = await ps.get_items(None, node)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["x"]

    # Reconfigure, then the same publish-options match.
    cfg = Form()
    cfg["type"] = "submit"
    cfg.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    cfg.add_field(var="pubsub#access_model", value="open")
    cfg.add_field(var="pubsub#max_items", value="5")
    r = await ps.set_node_config(None, node, cfg)
    assert r["type"] == "result"
    r = await ps.publish(None, node, id="y", payload=tune("y"), options=publish_options(access_model="open"))
    assert r["type"] == "result"
    r = await ps.get_items(None, node)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["y", "x"]

    # Invalid configuration values are refused.
    bad = Form()
    bad["type"] = "submit"
    bad.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    bad.add_field(var="pubsub#access_model", value="authorize")
    resp = await a.iq("set", ET.fromstring(
        f"<pubsub xmlns='{NS_OWNER}'><configure node='{node}'>{ET.tostring(bad.xml).decode()}</configure></pubsub>"))
    assert stanza_error(resp)[0] == "not-acceptable"


async def test_access_models_and_errors(server, new_user, clients):
    alice, bob, mallory = new_user("alice"), new_user("bob"), new_user("mallory")
    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    m = await pep_client(clients, mallory)
    await subscribe_to(b, bob, a, alice)
    ps = a.plugin["xep_0060"]
    await ps.publish(None, "urn:example:presence", id="p", payload=tune("p"))
    await ps.publish(None, "urn:example:open", id="o", payload=tune("o"), options=publish_options(access_model="open"))
    await ps.publish(None, "urn:example:white", id="w", payload=tune("w"), options=publish_options(access_model="whitelist"))
    await ps.publish(None, "urn:example:roster", id="r", payload=tune("r"), options=publish_options(access_model="roster"))

    def items_req(node):
        return f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub>"

    # Presence: the subscriber reads, a stranger gets presence-subscription-required.
    assert (await b.iq("get", items_req("urn:example:presence"), to=alice.jid))["type"] == "result"
    resp = await m.iq("get", items_req("urn:example:presence"), to=alice.jid)
    assert pubsub_err(resp) == ("not-authorized", "presence-subscription-required")
    # Open: anyone.
    assert (await m.iq("get", items_req("urn:example:open"), to=alice.jid))["type"] == "result"
    # Whitelist: only the owner.
    resp = await b.iq("get", items_req("urn:example:white"), to=alice.jid)
    assert pubsub_err(resp) == ("not-allowed", "closed-node")
    assert (await a.iq("get", items_req("urn:example:white")))["type"] == "result"
    # Roster with no allowed groups.
    resp = await b.iq("get", items_req("urn:example:roster"), to=alice.jid)
    assert pubsub_err(resp) == ("not-authorized", "not-in-roster-group")
    # Nobody publishes to someone else's PEP service.
    resp = await m.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='x'><item><tune xmlns='{NS_TUNE}'/></item></publish></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    # Error paths the XEP defines.
    resp = await a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='x'/></pubsub>")
    assert pubsub_err(resp) == ("bad-request", "item-required")
    resp = await a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='x' jid='{alice.jid}'/><options/></pubsub>")
    assert pubsub_err(resp) == ("feature-not-implemented", "unsupported")
    resp = await a.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='urn:example:none'/></pubsub>")
    assert stanza_error(resp)[0] == "item-not-found"
    big = "x" * (200 * 1024)
    resp = await a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='big'><item><tune xmlns='{NS_TUNE}'><title>{big}</title></tune></item></publish></pubsub>", timeout=30)
    assert pubsub_err(resp) == ("not-acceptable", "payload-too-big")
    assert (await a.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>"))["type"] == "result"


async def test_bookmarks_across_resources_and_private_mirror(server, new_user, clients):
    u = new_user("books")
    pc = await pep_client(clients, u, "pc", interests=[NS_BOOKMARKS], plugins=["xep_0402", "xep_0049", "xep_0048"])
    phone = await pep_client(clients, u, "phone", interests=[NS_BOOKMARKS], plugins=["xep_0402"])
    conf = ET.Element(f"{{{NS_BOOKMARKS}}}conference", {"name": "Coven", "autojoin": "true"})
    ET.SubElement(conf, f"{{{NS_BOOKMARKS}}}nick").text = "Hecate"
    opts = publish_options(persist_items="true", max_items="max", send_last_published_item="never", access_model="whitelist")
    r = await pc.plugin["xep_0060"].publish(None, NS_BOOKMARKS, id="coven@conference.localhost", payload=conf, options=opts)
    assert r["type"] == "result"
    ev = await wait_event(phone, NS_BOOKMARKS, what="bookmark on the other resource")
    assert item_ids(ev) == ["coven@conference.localhost"]
    assert ev.find(f"{{{NS_EVENT}}}item/{{{NS_BOOKMARKS}}}conference").get("name") == "Coven"
    # XEP-0402 #compat: the legacy XEP-0048 view in private storage has it too.
    resp = await pc.iq("get", "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>")
    confs = resp.xml.findall("{jabber:iq:private}query/{storage:bookmarks}storage/{storage:bookmarks}conference")
    assert [(c.get("jid"), c.get("autojoin")) for c in confs] == [("coven@conference.localhost", "true")]
    assert confs[0].find("{storage:bookmarks}nick").text == "Hecate"
    # And a legacy client's private-storage write shows up as PEP bookmarks.
    resp = await pc.iq("set",
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
        "<conference jid='sabbat@conference.localhost' name='Sabbat' autojoin='false'><nick>H</nick></conference>"
        "</storage></query>")
    assert resp["type"] == "result", resp
    ev = await wait_event(phone, NS_BOOKMARKS, lambda e: "sabbat@conference.localhost" in item_ids(e), what="bookmark from private storage")
    r = await phone.plugin["xep_0060"].get_items(None, NS_BOOKMARKS)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["sabbat@conference.localhost"]


async def test_avatar_publish_and_vcard_conversion(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice, plugins=["xep_0084", "xep_0054", "xep_0153"])
    b = await pep_client(clients, bob, interests=["urn:xmpp:avatar:metadata"], plugins=["xep_0084"])
    await subscribe_to(b, bob, a, alice)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    sha = hashlib.sha1(png).hexdigest()
    r = await a.plugin["xep_0084"].publish_avatar(png)
    assert r["type"] == "result"
    r = await a.plugin["xep_0084"].publish_avatar_metadata([{"id": sha, "type": "image/png", "bytes": len(png)}])
    assert r["type"] == "result"
    ev = await wait_event(b, "urn:xmpp:avatar:metadata", what="avatar metadata")
    assert item_ids(ev) == [sha]
    r = await b.plugin["xep_0084"].retrieve_avatar(alice.jid, sha)
    data = r.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items/{{{NS_PUBSUB}}}item/{{urn:xmpp:avatar:data}}data")
    assert base64.b64decode(data.text) == png
    # XEP-0398: the vCard now carries the photo.
    resp = await b.iq("get", "<vCard xmlns='vcard-temp'/>", to=alice.jid)
    binval = resp.xml.find("{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL")
    assert binval is not None and base64.b64decode(binval.text) == png
    # XEP-0153: presence carries the hash.
    a.send_presence(pstatus="new status")
    p = await b.wait_presence(lambda p: p["from"].bare == alice.jid and p["status"] == "new status", what="presence")
    photo = p.xml.find("{vcard-temp:x:update}x/{vcard-temp:x:update}photo")
    assert photo is not None and photo.text == sha

    # The other way: a vCard PHOTO becomes the PEP avatar.
    png2 = b"\x89PNG\r\n\x1a\n" + b"second" * 50
    sha2 = hashlib.sha1(png2).hexdigest()
    resp = await a.iq("set", f"<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(png2).decode()}</BINVAL></PHOTO></vCard>")
    assert resp["type"] == "result", resp
    ev = await wait_event(b, "urn:xmpp:avatar:metadata", lambda e: sha2 in item_ids(e), what="avatar from vCard")
    info = ev.find(f"{{{NS_EVENT}}}item/{{urn:xmpp:avatar:metadata}}metadata/{{urn:xmpp:avatar:metadata}}info")
    assert info.get("bytes") == str(len(png2)) and info.get("type") == "image/png"


async def test_vcard4_over_pep(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice, plugins=["xep_0292"])
    b = await pep_client(clients, bob, plugins=["xep_0292"])
    await subscribe_to(b, bob, a, alice)
    r = await a.plugin["xep_0292"].publish_vcard(full_name="Alice Liddell", nickname="alice", email="alice@example.org")
    assert r["type"] == "result"
    r = await b.plugin["xep_0292"].retrieve_vcard(alice.jid)
    vc = r.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items/{{{NS_PUBSUB}}}item/{{urn:ietf:params:xml:ns:vcard-4.0}}vcard")
    assert vc is not None
    assert vc.find("{urn:ietf:params:xml:ns:vcard-4.0}fn/{urn:ietf:params:xml:ns:vcard-4.0}text").text == "Alice Liddell"


async def test_omemo_nodes_with_open_access(server, new_user, clients):
    alice, stranger = new_user("alice"), new_user("stranger")
    a = await pep_client(clients, alice)
    s = await pep_client(clients, stranger)
    ps = a.plugin["xep_0060"]
    devices = ET.Element(f"{{{NS_OMEMO_DEVICES}}}list")
    ET.SubElement(devices, f"{{{NS_OMEMO_DEVICES}}}device", {"id": "4242"})
    bundle = ET.Element("{eu.siacs.conversations.axolotl}bundle")
    ET.SubElement(bundle, "{eu.siacs.conversations.axolotl}signedPreKeyPublic", {"signedPreKeyId": "1"}).text = base64.b64encode(b"k" * 33).decode()
    ET.SubElement(bundle, "{eu.siacs.conversations.axolotl}identityKey").text = base64.b64encode(b"i" * 33).decode()
    pre = ET.SubElement(bundle, "{eu.siacs.conversations.axolotl}prekeys")
    for i in range(1, 6):
        ET.SubElement(pre, "{eu.siacs.conversations.axolotl}preKeyPublic", {"preKeyId": str(i)}).text = base64.b64encode(bytes([i]) * 33).decode()
    opts = publish_options(access_model="open")
    assert (await ps.publish(None, NS_OMEMO_DEVICES, id="current", payload=devices, options=opts))["type"] == "result"
    assert (await ps.publish(None, NS_OMEMO_BUNDLE, id="current", payload=bundle, options=opts))["type"] == "result"
    # Someone without a subscription fetches both (that is what OMEMO needs).
    r = await s.plugin["xep_0060"].get_items(alice.jid, NS_OMEMO_DEVICES)
    assert r.xml.find(f".//{{{NS_OMEMO_DEVICES}}}device").get("id") == "4242"
    r = await s.plugin["xep_0060"].get_items(alice.jid, NS_OMEMO_BUNDLE)
    assert len(r.xml.findall(".//{eu.siacs.conversations.axolotl}preKeyPublic")) == 5
    # Republishing with the same options meets the precondition.
    assert (await ps.publish(None, NS_OMEMO_DEVICES, id="current", payload=devices, options=opts))["type"] == "result"


async def test_guard_blocks_lure_in_item_and_archive_records_publish(server, new_user, clients, tmp_path):
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice, interests=[NS_TUNE])
    b = await pep_client(clients, bob, interests=[NS_TUNE])
    await subscribe_to(b, bob, a, alice)
    ps = a.plugin["xep_0060"]
    lure = tune("click")
    ET.SubElement(lure, f"{{{NS_TUNE}}}uri").text = "http://203.0.113.9/invoice.scr"
    resp = await iq_raw(a, "set",
        f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_TUNE}'><item id='lure'>{ET.tostring(lure).decode()}</item></publish></pubsub>")
    cond, text = raw_error(resp)
    assert cond == "policy-violation", ET.tostring(resp)
    assert "executable" in text, text
    # Nothing was published: the node was not even created, and Bob saw nothing.
    resp = await a.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_TUNE}'/></pubsub>")
    assert stanza_error(resp)[0] == "item-not-found"
    assert events_of(b, NS_TUNE) == []

    # An accepted publish is on the record (kind "publish"), and the chain verifies.
    r = await a.plugin["xep_0060"].publish(None, NS_TUNE, id="rec1", payload=tune("Recorded tune"))
    assert r["type"] == "result"
    await wait_event(b, NS_TUNE, lambda e: "rec1" in item_ids(e), what="accepted tune")
    recs = archive_search(server, "Recorded")
    pub = [x for x in recs if x.get("kind") == "publish"]
    assert pub, recs
    assert pub[0]["from"].startswith(alice.jid)
    blocked = [x for x in archive_search(server, None, "--from", alice.jid) if x.get("kind") == "publish" and "invoice.scr" in (x.get("stanza_xml") or "")]
    verdicts = {x["verdict"]["verdict"] if isinstance(x["verdict"], dict) else x["verdict"] for x in blocked}
    assert "blocked" in verdicts, blocked
    v = archive_verify(server)
    assert v.returncode == 0, v.stdout + v.stderr
    # The eDiscovery export carries publish records and verifies independently.
    out = tmp_path / "export"
    r = server.cli("archive", "export", "--out", str(out), "--format", "jsonl", "--from", alice.jid, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    exported = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines() if x.strip()]
    pub_key = (server.data_dir / "archive-signing.pub").read_text().strip()
    verify_export_dir(out, pub_key)
    assert any(x.get("kind") == "publish" for x in exported), exported[:3]


async def test_forged_caps_get_no_notifications(server, new_user, clients):
    """A session whose disco#info does not hash to the ver it announced is not
    trusted: its claimed +notify features are ignored."""
    alice = new_user("alice")
    a = await pep_client(clients, alice)
    raw = RawXMPP(server)
    try:
        raw.login(alice, resource="forger")
        raw.send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                 "node='urn:forger' ver='AAAAAAAAAAAAAAAAAAAAAAAAAAA='/></presence>")
        q = None
        for _ in range(20):
            el = raw.next_element(10)
            assert el is not None, raw.describe()
            if el.tag == "{jabber:client}iq" and el.find(f"{{{NS_DISCO_INFO}}}query") is not None:
                q = el
                break
        assert q is not None and q.get("from") == DOMAIN
        node = q.find(f"{{{NS_DISCO_INFO}}}query").get("node")
        assert node == "urn:forger#AAAAAAAAAAAAAAAAAAAAAAAAAAA="
        raw.send(f"<iq type='result' id='{q.get('id')}' to='{DOMAIN}'><query xmlns='{NS_DISCO_INFO}' node='{node}'>"
                 "<identity category='client' type='pc'/>"
                 f"<feature var='{NS_TUNE}+notify'/></query></iq>")
        await a.sync()
        r = await a.plugin["xep_0060"].publish(None, NS_TUNE, id="t", payload=tune("secret-ish"))
        assert r["type"] == "result"
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            el = raw.next_element(0.2)
            assert el is None or el.find(f"{{{NS_EVENT}}}event") is None, ET.tostring(el)
    finally:
        raw.close()


async def test_last_item_on_subscription_approval(server, new_user, clients):
    """XEP-0163 §4.3.3: a new subscriber's sessions get the last items of the
    nodes they are interested in as soon as the subscription is approved."""
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice, interests=[NS_TUNE])
    b = await pep_client(clients, bob, interests=[NS_TUNE])
    r = await a.plugin["xep_0060"].publish(None, NS_TUNE, id="before", payload=tune("Before you came"))
    assert r["type"] == "result"
    await asyncio.sleep(0.5)
    assert events_of(b, NS_TUNE) == [], "no subscription yet, nothing for Bob"
    await subscribe_to(b, bob, a, alice)
    ev = await wait_event(b, NS_TUNE, what="the last tune after approval")
    assert item_ids(ev) == ["before"]
