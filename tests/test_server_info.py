"""Queries answered by the server itself.

Covers: service discovery of the server (XEP-0030: identity server/im and
the advertised features; disco#items), XMPP ping (XEP-0199), software
version (XEP-0092, name 'Rampart'), entity time (XEP-0202), and an IQ with
an unknown payload to the server (service-unavailable / feature-not-
implemented), plus IQ error rules (RFC 6120 §8.2.3).
"""

import datetime as dt

from rampart_harness import (
    DOMAIN, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_ROSTER, NS_TIME, NS_VERSION,
    stanza_error,
)

REQUIRED_FEATURES = {NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION, NS_TIME, NS_ROSTER}


async def test_disco_info_of_server(server, new_user, clients):
    c = await clients(new_user("disco"), "r")
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=DOMAIN)
    assert resp["type"] == "result", resp
    assert resp["from"] == DOMAIN
    query = resp.xml.find(f"{{{NS_DISCO_INFO}}}query")
    identities = {(i.get("category"), i.get("type"))
                  for i in query.findall(f"{{{NS_DISCO_INFO}}}identity")}
    assert ("server", "im") in identities, f"identities: {identities}"
    features = {f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")}
    missing = REQUIRED_FEATURES - features
    assert not missing, f"features missing from disco#info: {missing} (have {features})"


async def test_disco_items_of_server(server, new_user, clients):
    c = await clients(new_user("disco"), "r")
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_ITEMS}'/>", to=DOMAIN)
    assert resp["type"] == "result", resp
    assert resp.xml.find(f"{{{NS_DISCO_ITEMS}}}query") is not None


async def test_ping_server(server, new_user, clients):
    c = await clients(new_user("ping"), "r")
    resp = await c.iq("get", f"<ping xmlns='{NS_PING}'/>", to=DOMAIN)
    assert resp["type"] == "result", resp
    assert resp["from"] == DOMAIN


async def test_ping_with_slixmpp_plugin(server, new_user, clients):
    c = clients.new(new_user("ping"), "r")
    c.register_plugin("xep_0199")
    await c.login()
    rtt = await c.plugin["xep_0199"].ping(jid=DOMAIN, timeout=10)
    assert rtt is not None and rtt < 10


async def test_software_version(server, new_user, clients):
    c = clients.new(new_user("ver"), "r")
    c.register_plugin("xep_0092")
    await c.login()
    resp = await c.plugin["xep_0092"].get_version(DOMAIN, timeout=10)
    assert resp["type"] == "result", resp
    assert resp["software_version"]["name"] == "Rampart", resp
    assert resp["software_version"]["version"], "no version string"


async def test_entity_time(server, new_user, clients):
    c = await clients(new_user("time"), "r")
    resp = await c.iq("get", f"<time xmlns='{NS_TIME}'/>", to=DOMAIN)
    assert resp["type"] == "result", resp
    t = resp.xml.find(f"{{{NS_TIME}}}time")
    tzo = t.findtext(f"{{{NS_TIME}}}tzo")
    utc = t.findtext(f"{{{NS_TIME}}}utc")
    assert tzo and (tzo == "Z" or tzo[0] in "+-"), f"tzo {tzo!r}"
    assert utc and utc.endswith("Z"), f"utc {utc!r}"
    when = dt.datetime.fromisoformat(utc.split(".")[0].rstrip("Z") + "+00:00")
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((now - when).total_seconds()) < 120, f"server time {utc} vs now {now}"


async def test_unknown_iq_payload_to_server_is_an_error(server, new_user, clients):
    c = await clients(new_user("unk"), "r")
    resp = await c.iq("get", "<query xmlns='urn:example:nothing-like-this'/>", to=DOMAIN)
    assert resp["type"] == "error", resp
    assert stanza_error(resp)[0] in ("service-unavailable", "feature-not-implemented"), resp


async def test_iq_without_to_is_handled_by_account(server, new_user, clients):
    """An IQ with no 'to' is processed on behalf of the user's account
    (RFC 6120 §10.3.3); roster get is the canonical example."""
    c = await clients(new_user("noto"), "r")
    resp = await c.iq("get", f"<query xmlns='{NS_ROSTER}'/>")
    assert resp["type"] == "result", resp


async def test_iq_get_with_two_children_is_bad_request(server, new_user, clients):
    """RFC 6120 §8.2.3: an IQ get/set MUST contain exactly one child."""
    c = await clients(new_user("iq2"), "r")
    import asyncio
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    got = asyncio.get_running_loop().create_future()
    c.register_handler(Callback("two-kids", MatchXPath("{jabber:client}iq"),
                                lambda s: (s["id"] == "two-kids" and not got.done()
                                           and got.set_result(s))))
    c.send_raw(f"<iq type='get' id='two-kids' to='{DOMAIN}'><ping xmlns='{NS_PING}'/>"
               f"<query xmlns='{NS_DISCO_INFO}'/></iq>")
    resp = await asyncio.wait_for(got, 10)
    assert resp["type"] == "error", resp
    assert stanza_error(resp)[0] == "bad-request", resp
