"""XEP-0357 Push Notifications (issue #7, XEP-0479 Mobile).

A phone registers its app server with ``<enable xmlns='urn:xmpp:push:0' jid node>``
(optionally with a publish-options form) and disconnects; when a message arrives for it,
the server publishes a notification to that node, from the account's bare JID.

The app server here is a stand-in: a local slixmpp client whose full JID is the push
service JID; it records each publish IQ and answers with a result (or, in the error-path
test, with an error). slixmpp 1.17 has no XEP-0357 plugin, so the enable and disable
elements are small slixmpp stanza plugins defined below (publish-options use slixmpp's
XEP-0004 form).

Covers: the account advertises urn:xmpp:push:0; after the device logs out, a message to it
gives exactly one notification with the summary form (message-count) and neither body nor
sender (the enterprise default), with the registration's publish-options; a burst gives one
notification (rate limit); a device whose TCP connection dies while its XEP-0198 session
hibernates is notified, a connected one is not, and a message it received without
acknowledging it before the connection died notifies when the session hibernates; disable
stops notifications; an app server's item-not-found disables that registration only; a
ninth device drops the oldest; `rampart push list` / `remove` show and revoke registrations
(never their secrets); registrations survive a restart; a message the guard blocks
(EICAR) wakes nobody; malformed enable requests get bad-request and a push service on
another domain is refused while federation is off; with include_body and include_sender
on, the summary carries them; an app server on another domain is reached through
federation and the border policy (and refused where IQs may not go out); with
[push] enabled = false nothing is advertised and <enable/> gets service-unavailable.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp import Iq
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rampart_harness import (
    NS_CLIENT, NS_DISCO_INFO, RampartServer, RawXMPP, StanzaBox, make_client, send_msg_id,
    stanza_error,
)

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
NS_SM = "urn:xmpp:sm:3"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
SUMMARY = "urn:xmpp:push:summary"
WORK = Path(__file__).resolve().parent / ".work"

# Short enough for the tests to wait it out; a burst still gives one notification.
MIN_INTERVAL = 3

EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class PushEnable(ElementBase):
    name = "enable"
    namespace = NS_PUSH
    plugin_attrib = "push_enable"
    interfaces = {"jid", "node"}


class PushDisable(ElementBase):
    name = "disable"
    namespace = NS_PUSH
    plugin_attrib = "push_disable"
    interfaces = {"jid", "node"}


register_stanza_plugin(Iq, PushEnable)
register_stanza_plugin(Iq, PushDisable)
register_stanza_plugin(PushEnable, Form)


def push_config(extra: str = "") -> str:
    return f"[push]\nmin_interval_secs = {MIN_INTERVAL}\n{extra}"


@pytest.fixture(scope="module")
def server():
    srv = RampartServer(WORK / "test_push", extra_toml=push_config())
    srv.start()
    yield srv
    srv.stop()


class AppServer:
    """The stand-in push service: records publishes, answers result or an error."""

    def __init__(self, client, fail_nodes: dict[str, tuple[str, str]] | None = None):
        self.client = client
        self.jid = str(client.boundjid.full)
        self.pushes = StanzaBox()
        # Errors that came back to the app server (e.g. for its answers): there should be none.
        self.client_errors: list = []
        # node -> (error type, condition) to answer with.
        self.fail_nodes = dict(fail_nodes or {})
        client.register_handler(Callback(
            "test: push publish", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_PUBSUB}}}pubsub"),
            self._on_publish))
        client.register_handler(Callback(
            "test: iq errors", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_CLIENT}}}error"),
            lambda iq: self.client_errors.append(str(iq))))

    def _on_publish(self, iq) -> None:
        if iq["type"] != "set":
            return
        self.pushes.put(iq)
        node = publish_node(iq)
        reply = iq.reply(clear=True)
        if node in self.fail_nodes:
            reply["type"] = "error"
            reply["error"]["type"], reply["error"]["condition"] = self.fail_nodes[node]
        reply.send()

    async def wait_push(self, node: str, timeout: float = 15):
        return await self.pushes.wait_for(lambda iq: publish_node(iq) == node, timeout,
                                          f"a push notification for node {node}")

    async def assert_no_push(self, node: str, within: float = 2.0):
        await self.pushes.assert_none(lambda iq: publish_node(iq) == node, within,
                                      f"push notification for node {node}")


def publish_node(iq) -> str | None:
    p = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish")
    return None if p is None else p.get("node")


def form_fields(x: ET.Element) -> dict[str, str]:
    out = {}
    for f in x.findall(f"{{{NS_DATA}}}field"):
        v = f.find(f"{{{NS_DATA}}}value")
        out[f.get("var")] = v.text if v is not None else None
    return out


def summary_of(iq) -> dict[str, str]:
    x = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item/"
                    f"{{{NS_PUSH}}}notification/{{{NS_DATA}}}x")
    assert x is not None, f"no summary form in the notification: {iq}"
    return form_fields(x)


def publish_options_of(iq) -> dict[str, str] | None:
    x = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish-options/{{{NS_DATA}}}x")
    return None if x is None else form_fields(x)


async def app_server(clients, new_user, fail_nodes=None) -> AppServer:
    c = await clients(new_user("appsrv"), "push")
    return AppServer(c, fail_nodes)


async def enable(client, service: str, node: str, secret: str | None = None):
    iq = client.Iq()
    iq["type"] = "set"
    iq["push_enable"]["jid"] = service
    iq["push_enable"]["node"] = node
    if secret is not None:
        form = Form()
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
        form.add_field(var="secret", value=secret)
        iq["push_enable"].append(form)
    return await iq.send(timeout=15)


async def disable(client, service: str, node: str | None = None):
    iq = client.Iq()
    iq["type"] = "set"
    iq["push_disable"]["jid"] = service
    if node:
        iq["push_disable"]["node"] = node
    return await iq.send(timeout=15)


async def online(clients, user, resource="pc"):
    c = await clients(user, resource)
    await c.go_online()
    return c


def node_name() -> str:
    return "dev-" + secrets.token_hex(6)


async def test_account_advertises_push(server, new_user, clients):
    bob = new_user("bob")
    c = await clients(bob, "phone")
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=bob.jid)
    feats = {f.get("var") for f in resp.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    assert NS_PUSH in feats, feats


async def test_logged_out_device_gets_one_summary_without_body_or_sender(server, new_user, clients):
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    phone = await clients(bob, "phone")
    node = node_name()
    r = await enable(phone, app.jid, node, secret="s3cr3t-token")
    assert r["type"] == "result", r
    await phone.logout()
    a = await online(clients, alice)
    a.send_msg(bob.jid, "the quarterly numbers are in")
    push = await app.wait_push(node)
    assert push["from"].full == bob.jid, push["from"]
    fields = summary_of(push)
    assert fields.get("FORM_TYPE") == SUMMARY, fields
    assert fields.get("message-count") == "1", fields
    assert "last-message-body" not in fields and "last-message-sender" not in fields, fields
    assert "quarterly" not in str(push) and alice.jid not in str(push), push
    assert publish_options_of(push) == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s3cr3t-token"}
    # A burst while the device is away: still that one notification (rate limit).
    a.send_msg(bob.jid, "second")
    a.send_msg(bob.jid, "third")
    await a.sync()
    await app.assert_no_push(node, within=MIN_INTERVAL - 1)
    # The messages wait offline for the device, with nothing lost.
    phone2 = await clients(bob, "phone")
    await phone2.go_online()
    bodies = [m["body"] for m in await phone2.messages.collect(3, lambda m: m["body"])]
    assert bodies == ["the quarterly numbers are in", "second", "third"], bodies


async def test_hibernating_session_is_notified_connected_one_is_not(server, new_user, clients):
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    phone = clients.new(bob, "phone")
    phone.register_plugin("xep_0198")
    enabled = asyncio.Event()
    phone.add_event_handler("sm_enabled", lambda _e: enabled.set())
    await phone.login()
    await asyncio.wait_for(enabled.wait(), 15)
    await phone.go_online()
    node = node_name()
    assert (await enable(phone, app.jid, node))["type"] == "result"
    a = await online(clients, alice)
    # Connected: the message goes to the phone, the app server hears nothing.
    a.send_msg(bob.jid, "while connected")
    await phone.wait_message(lambda m: m["body"] == "while connected")
    await app.assert_no_push(node, within=1.5)
    # The TCP connection dies; the session hibernates for resumption.
    phone.kill()
    await asyncio.sleep(1.0)
    a.send_msg(bob.jid, "while the phone sleeps")
    push = await app.wait_push(node)
    assert summary_of(push).get("FORM_TYPE") == SUMMARY
    assert publish_options_of(push) is None
    await app.assert_no_push(node, within=1.0)


def raw_until(raw: RawXMPP, pred, what: str, timeout: float = 15) -> ET.Element:
    """Read top-level elements until one matches `pred`."""
    while True:
        el = raw.next_element(timeout)
        assert el is not None, f"no {what}: {raw.describe()}"
        if pred(el):
            return el


async def test_unacknowledged_message_notifies_when_the_session_hibernates(server, new_user, clients):
    """The phone got a message but its connection died before it acknowledged it
    (XEP-0198): when the session hibernates, the app server hears of it."""
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    raw = RawXMPP(server)
    raw.login(bob, "phone")
    raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    raw.expect(NS_SM, "enabled")
    node = node_name()
    raw.send(f"<iq type='set' id='push1'><enable xmlns='{NS_PUSH}' jid='{app.jid}' node='{node}'/></iq>"
             "<presence/>")
    res = raw_until(raw, lambda e: e.get("id") == "push1", "answer to <enable/>")
    assert res.get("type") == "result", ET.tostring(res)
    a = await online(clients, alice)
    a.send_msg(bob.jid, "did you get this?")
    await a.sync()
    raw_until(raw, lambda e: e.findtext(f"{{{NS_CLIENT}}}body") == "did you get this?", "the message")
    await app.assert_no_push(node, within=1.0)
    raw.close()  # gone without acknowledging
    push = await app.wait_push(node)
    assert summary_of(push).get("message-count") == "1", summary_of(push)
    await app.assert_no_push(node, within=1.0)


async def test_disable_stops_notifications(server, new_user, clients):
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    phone = await clients(bob, "phone")
    kept, dropped = node_name(), node_name()
    for n in (kept, dropped):
        assert (await enable(phone, app.jid, n))["type"] == "result"
    assert (await disable(phone, app.jid, dropped))["type"] == "result"
    await phone.logout()
    a = await online(clients, alice)
    a.send_msg(bob.jid, "one")
    await app.wait_push(kept)
    await app.assert_no_push(dropped, within=1.5)
    # Disabling the whole service (no node) removes the rest.
    phone = await clients(bob, "phone")
    assert (await disable(phone, app.jid))["type"] == "result"
    await phone.logout()
    await asyncio.sleep(MIN_INTERVAL + 0.5)
    a.send_msg(bob.jid, "two")
    await a.sync()
    await app.assert_no_push(kept, within=2.5)
    await app.assert_no_push(dropped, within=0.1)


async def test_app_server_error_disables_that_registration(server, new_user, clients):
    gone = node_name()
    app = await app_server(clients, new_user, fail_nodes={gone: ("cancel", "item-not-found")})
    alice, bob = new_user("alice"), new_user("bob")
    phone = await clients(bob, "phone")
    ok = node_name()
    for n in (gone, ok):
        assert (await enable(phone, app.jid, n))["type"] == "result"
    await phone.logout()
    a = await online(clients, alice)
    a.send_msg(bob.jid, "first")
    await app.wait_push(gone)
    await app.wait_push(ok)
    # After the rate-limit window only the registration the app server still knows is used.
    await asyncio.sleep(MIN_INTERVAL + 0.5)
    a.send_msg(bob.jid, "second")
    push = await app.wait_push(ok)
    assert summary_of(push).get("message-count") == "2", summary_of(push)
    await app.assert_no_push(gone, within=2.0)


async def test_too_many_devices_drops_the_oldest_registration(server, new_user, clients):
    """Beyond max_devices (8 by default) the least recently registered device is dropped."""
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    phone = await clients(bob, "phone")
    nodes = [node_name() for _ in range(9)]
    for n in nodes:
        assert (await enable(phone, app.jid, n))["type"] == "result"
    await phone.logout()
    a = await online(clients, alice)
    a.send_msg(bob.jid, "to every device")
    for n in nodes[1:]:
        await app.wait_push(n)
    await app.assert_no_push(nodes[0], within=1.5)


async def test_administrator_lists_and_removes_registrations(server, new_user, clients):
    """`rampart push list` shows who registered which app server (never the secrets);
    `rampart push remove` stops notifications to it while the server runs."""
    import json
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    phone = await clients(bob, "phone")
    node = node_name()
    assert (await enable(phone, app.jid, node, secret="very-secret-token"))["type"] == "result"
    r = server.cli("push", "list", bob.jid)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.split("\t")[:3] == [bob.jid, app.jid, node] and line.endswith("publish-options"), line
    assert "very-secret-token" not in r.stdout
    r = server.cli("push", "list", "--json")
    regs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert {"account": bob.jid, "service": app.jid, "node": node} in [
        {k: g[k] for k in ("account", "service", "node")} for g in regs], regs
    r = server.cli("push", "remove", bob.jid, app.jid, node)
    assert r.returncode == 0 and "removed 1" in r.stdout, (r.stdout, r.stderr)
    r = server.cli("push", "remove", bob.jid, app.jid, node)
    assert r.returncode != 0 and "no push registration" in r.stderr, (r.stdout, r.stderr)
    assert server.cli("push", "list", bob.jid).stdout.strip() == "no push registrations"
    await phone.logout()
    a = await online(clients, alice)
    a.send_msg(bob.jid, "nobody is woken")
    await a.sync()
    await app.assert_no_push(node, within=2.0)


async def test_registration_survives_restart(server, new_user, clients):
    alice, bob, appuser = new_user("alice"), new_user("bob"), new_user("appsrv")
    phone = await clients(bob, "phone")
    node = node_name()
    service = f"{appuser.jid}/push"
    assert (await enable(phone, service, node))["type"] == "result"
    await phone.logout()
    server.restart()
    app = AppServer(await clients(appuser, "push"))
    a = await online(clients, alice)
    a.send_msg(bob.jid, "after the restart")
    push = await app.wait_push(node)
    assert summary_of(push).get("message-count") == "1"


async def test_blocked_message_wakes_nobody(server, new_user, clients):
    app = await app_server(clients, new_user)
    alice, bob = new_user("alice"), new_user("bob")
    phone = await clients(bob, "phone")
    node = node_name()
    assert (await enable(phone, app.jid, node))["type"] == "result"
    await phone.logout()
    a = await online(clients, alice)
    mid = send_msg_id(a, bob.jid, f"open this: {EICAR}")
    err = await a.wait_message(lambda m: m["id"] == mid and m["type"] == "error")
    assert stanza_error(err)[0] == "policy-violation", err
    await app.assert_no_push(node, within=2.0)
    # The registration works: a clean message does wake the phone.
    a.send_msg(bob.jid, "a clean one")
    await app.wait_push(node)


async def test_bad_enable_requests(server, new_user, clients):
    bob = new_user("bob")
    phone = await clients(bob, "phone")
    cases = [
        ("set", f"<enable xmlns='{NS_PUSH}' jid='push.localhost'/>", "bad-request"),
        ("set", f"<enable xmlns='{NS_PUSH}' node='n'/>", "bad-request"),
        ("set", f"<enable xmlns='{NS_PUSH}' jid='a@b@c' node='n'/>", "bad-request"),
        ("set", f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='n'>"
                f"<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>urn:other</value>"
                f"</field></x></enable>", "bad-request"),
        ("get", f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='n'/>", "bad-request"),
        # Federation is off here: a push service on another domain could never be reached.
        ("set", f"<enable xmlns='{NS_PUSH}' jid='p2.siacs.eu' node='n'/>", "not-allowed"),
    ]
    for ty, payload, want in cases:
        resp = await phone.iq(ty, payload)
        assert resp["type"] == "error" and stanza_error(resp)[0] == want, (payload, resp)
    # The session is still fine.
    await phone.sync()


async def test_body_and_sender_when_the_administrator_allows_them():
    srv = RampartServer(WORK / "test_push_include",
                        extra_toml=push_config("include_body = true\ninclude_sender = true\n"))
    srv.start()
    made = []
    try:
        alice, bob, appuser = srv.add_user("alice"), srv.add_user("bob"), srv.add_user("appsrv")
        for u, r in ((appuser, "push"), (bob, "phone"), (alice, "pc")):
            c = make_client(srv, u, r)
            made.append(c)
            await c.login()
        appc, phone, a = made
        app = AppServer(appc)
        node = node_name()
        assert (await enable(phone, app.jid, node))["type"] == "result"
        await phone.logout()
        await a.go_online()
        a.send_msg(bob.jid, "lunch at noon?")
        fields = summary_of(await app.wait_push(node))
        assert fields.get("last-message-body") == "lunch at noon?", fields
        assert fields.get("last-message-sender") == alice.jid, fields
    finally:
        for c in made:
            c.kill()
        srv.stop()


async def test_remote_app_server_through_the_border_policy():
    """alpha.test (ours) lets IQs out to beta.test but only messages to gamma.test: a
    notification reaches the app server on beta.test (from the user's bare JID, over
    federation; its answer comes back) and is refused at the border towards gamma.test,
    with a security event."""
    from s2s_helpers import CertAuthority, route_to, s2s_server, wait_for
    from rampart_harness import User, events_list

    work = WORK / "test_push_federation"
    ca = CertAuthority(work / "ca")
    policy = {"domains": {'"beta.test"': {"allow": ["messages", "iqs"]},
                          '"gamma.test"': {"allow": ["messages"]}}}
    alpha = s2s_server(work / "alpha", ca, "alpha.test", ["beta.test", "gamma.test"], extra=policy,
                       extra_toml=push_config())
    beta = s2s_server(work / "beta", ca, "beta.test", ["alpha.test"])
    gamma = s2s_server(work / "gamma", ca, "gamma.test", ["alpha.test"])
    for s, peers in ((alpha, (beta, gamma)), (beta, (alpha,)), (gamma, (alpha,))):
        for p in peers:
            route_to(s, p)
    made = []

    async def login(server, user, resource):
        c = make_client(server, user, resource)
        made.append(c)
        await c.login()
        return c

    try:
        for s in (alpha, beta, gamma):
            s.start()
        alice, bob = alpha.add_user("alice"), alpha.add_user("bob")
        app_b = AppServer(await login(beta, beta.add_user("appsrv"), "push"))
        app_g = AppServer(await login(gamma, gamma.add_user("appsrv"), "push"))
        phone = await login(alpha, bob, "phone")
        nb, ng = node_name(), node_name()
        assert (await enable(phone, app_b.jid, nb))["type"] == "result"
        assert (await enable(phone, app_g.jid, ng))["type"] == "result"
        await phone.logout()
        a = await login(alpha, alice, "pc")
        await a.go_online()
        a.send_msg(bob.jid, "over the border?")
        push = await app_b.wait_push(nb, timeout=45)
        assert push["from"].full == bob.jid, push["from"]
        assert summary_of(push).get("message-count") == "1"
        assert "over the border" not in str(push)
        await app_g.assert_no_push(ng, within=3.0)
        ev = wait_for(lambda: [e for e in events_list(alpha) if e["rule"] == "s2s.rules" and e["account"] == bob.jid],
                      what="a security event for the refused notification")
        assert "gamma.test" in ev[0]["reason"], ev[0]
        # The answer from beta.test came back and was taken (no error went back to beta).
        await asyncio.sleep(1.0)
        assert not [i for i in app_b.client_errors if i], app_b.client_errors
    finally:
        for c in made:
            c.kill()
        for s in (alpha, beta, gamma):
            s.stop()


async def test_switched_off():
    """[push] enabled = false: not advertised, <enable/> gets service-unavailable."""
    srv = RampartServer(WORK / "test_push_off", extra_toml="[push]\nenabled = false\n")
    srv.start()
    made = []
    try:
        bob = srv.add_user("bob")
        phone = make_client(srv, bob, "phone")
        made.append(phone)
        await phone.login()
        resp = await phone.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=bob.jid)
        feats = {f.get("var") for f in resp.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
        assert NS_PUSH not in feats, feats
        resp = await phone.iq("set", f"<enable xmlns='{NS_PUSH}' jid='{bob.jid}/x' node='n'/>")
        assert resp["type"] == "error" and stanza_error(resp)[0] == "service-unavailable", resp
    finally:
        for c in made:
            c.kill()
        srv.stop()
