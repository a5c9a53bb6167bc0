"""BOSH (XEP-0124) with XMPP over BOSH (XEP-0206), as a browser client (Converse.js,
Strophe.js) uses it: ``POST https://<domain>:<http port>/http-bind`` with the server
certificate verified, session creation, SASL (SCRAM-SHA-256 and PLAIN) inside bodies,
the ``xmpp:restart`` stream restart, resource binding, then messages both ways with a
slixmpp client on the normal c2s port (long-polling delivers them); the guard sees BOSH
traffic too (EICAR bounced with policy-violation). Discovery: host-meta lists the BOSH
endpoint. Error paths: a rid out of the window, a repeated rid (the same answer again),
an unknown sid, an oversized body, a body that is not XML, a wrong ``to``, a missing
``to``, the inactivity timeout, the client's terminate, sessions per address, CORS.

slixmpp cannot speak BOSH: the BOSH client here is aiohttp's (pinned in
tests/requirements.txt for the upload tests).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from rampart_harness import (
    NS_BIND, NS_CLIENT, NS_SASL, NS_STANZA_ERR, NS_STREAM, RampartServer,
)
from scram_client import ScramClient
from conftest import WORK_ROOT

NS_BOSH = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MAX_STANZA = 16 * 1024
INACTIVITY = 4
WEB_ORIGIN = "https://web.corp.example"


@pytest.fixture(scope="module")
def server():
    srv = RampartServer(
        WORK_ROOT / "test_bosh", http=True,
        limits={"max_stanza_bytes": MAX_STANZA, "max_connections_per_ip": 12},
        extra_toml=(f"[http]\nbosh_max_wait = 30\nbosh_max_inactivity = {INACTIVITY}\n"
                    f"bosh_cors_origins = [\"{WEB_ORIGIN}\"]\n"))
    srv.start()
    yield srv
    srv.stop()


def bosh_url(server) -> str:
    return f"https://localhost:{server.http_port}/http-bind"


def ssl_ctx(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert_path))


def condition(body: ET.Element) -> str | None:
    return body.get("condition") if body.get("type") == "terminate" else None


class Bosh:
    """A minimal XEP-0206 client: one HTTP request per <body/>, rid counting up. Like
    Strophe.js it keeps up to ``requests`` requests open: ``send`` does not wait for its
    answer (the server holds it until something is queued or the next request comes)."""

    def __init__(self, server):
        self.server = server
        # A connection per request: the per-address HTTPS connection limit stays clear.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self.rid = random.randint(1_000_000, 10_000_000)
        self.sid: str | None = None
        self.created: ET.Element | None = None
        # Stanzas received in answers and not consumed yet.
        self.inbox: list[ET.Element] = []
        self.pending: set[asyncio.Future] = set()
        self.terminated: ET.Element | None = None

    async def send(self, payload: str = "", attrs: str = ""):
        """Send a body without waiting for its answer (at most two requests open)."""
        while len(self.pending) >= 2:
            await self._drain(60)
        self.rid += 1
        self.pending.add(asyncio.ensure_future(self.post(payload, attrs, rid=self.rid)))

    async def _drain(self, timeout: float):
        done, _ = await asyncio.wait(self.pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            self.pending.discard(t)
            body = t.result()
            if body.get("type") == "terminate":
                self.terminated = body

    async def close(self):
        for t in self.pending:
            t.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        await self.http.close()

    async def post_raw(self, data: bytes | str, headers: dict | None = None, timeout: float = 60):
        h = {"Content-Type": "text/xml; charset=utf-8", **(headers or {})}
        async with self.http.post(bosh_url(self.server), data=data, headers=h, ssl=ssl_ctx(self.server),
                                  timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.text(), r.headers

    async def post(self, payload: str = "", attrs: str = "", rid: int | None = None, timeout: float = 60) -> ET.Element:
        """Send one body (the next rid unless given) and parse the answer."""
        if rid is None:
            self.rid += 1
            rid = self.rid
        sid = f" sid='{self.sid}'" if self.sid else ""
        body = f"<body xmlns='{NS_BOSH}' rid='{rid}'{sid} {attrs}>{payload}</body>"
        status, text, _ = await self.post_raw(body, timeout=timeout)
        assert status == 200, (status, text)
        el = ET.fromstring(text)
        assert el.tag == f"{{{NS_BOSH}}}body", text
        self.inbox.extend(list(el))
        return el

    async def create(self, to: str | None = None, wait: int = 10) -> ET.Element:
        to = self.server.domain if to is None else to
        body = await self.post(attrs=f"to='{to}' wait='{wait}' hold='1' ver='1.11' xml:lang='en' "
                                     f"xmlns:xmpp='{NS_XBOSH}' xmpp:version='1.0'")
        if body.get("sid"):
            self.sid = body.get("sid")
            self.created = body
        return body

    async def take(self, pred, timeout: float = 30, what: str = "an element") -> ET.Element:
        """The first received element matching pred, polling (long-polling) as needed."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for i, el in enumerate(self.inbox):
                if pred(el):
                    return self.inbox.pop(i)
            assert self.terminated is None, f"session terminated: {ET.tostring(self.terminated)}"
            remaining = end - loop.time()
            assert remaining > 0, f"timed out waiting for {what}; have {[ET.tostring(e) for e in self.inbox]}"
            if not self.pending:
                await self.send()
            await self._drain(remaining)

    async def settle(self):
        """Wait for the open requests' answers (sending one more releases a held one)."""
        while self.pending:
            await self._drain(60)

    async def features(self) -> ET.Element:
        return await self.take(lambda e: e.tag == f"{{{NS_STREAM}}}features", what="stream features")

    async def login(self, user, resource: str = "web", mech: str = "SCRAM-SHA-256") -> str:
        """Create a session, authenticate, restart, bind; returns the full JID."""
        created = await self.create()
        assert created.get("type") is None, ET.tostring(created)
        features = await self.features()
        mechs = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
        assert mech in mechs, mechs
        assert not any(m.endswith("-PLUS") for m in mechs), f"no channel binding over BOSH: {mechs}"
        if mech == "PLAIN":
            token = base64.b64encode(f"\0{user.localpart}\0{user.password}".encode()).decode()
            await self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
            ok = await self.take(lambda e: e.tag.startswith(f"{{{NS_SASL}}}"), what="SASL outcome")
            assert ok.tag == f"{{{NS_SASL}}}success", ET.tostring(ok)
        else:
            await self.scram(user)
        # XEP-0206 §5: the stream restart.
        await self.send(attrs=f"xmlns:xmpp='{NS_XBOSH}' xmpp:restart='true'")
        features = await self.features()
        assert features.find(f"{{{NS_BIND}}}bind") is not None, ET.tostring(features)
        await self.send(f"<iq xmlns='{NS_CLIENT}' type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                        f"<resource>{resource}</resource></bind></iq>")
        res = await self.take(lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == "b1", what="bind result")
        assert res.get("type") == "result", ET.tostring(res)
        return res.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")

    async def scram(self, user):
        scram = ScramClient(user.localpart, user.password)
        await self.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{scram.first()}</auth>")
        ch = await self.take(lambda e: e.tag.startswith(f"{{{NS_SASL}}}"), what="SASL challenge")
        assert ch.tag == f"{{{NS_SASL}}}challenge", ET.tostring(ch)
        await self.send(f"<response xmlns='{NS_SASL}'>{scram.final(ch.text)}</response>")
        ok = await self.take(lambda e: e.tag.startswith(f"{{{NS_SASL}}}"), what="SASL outcome")
        assert ok.tag == f"{{{NS_SASL}}}success", ET.tostring(ok)
        scram.check_success(ok.text)


@pytest.fixture
async def bosh(server):
    made = []

    def new() -> Bosh:
        b = Bosh(server)
        made.append(b)
        return b

    yield new
    for b in made:
        await b.close()


async def test_session_creation_attributes(server, bosh):
    b = bosh()
    created = await b.create(wait=600)
    assert created.get("type") is None, ET.tostring(created)
    assert len(created.get("sid", "")) >= 16
    assert created.get("wait") == "30", "a longer wait than bosh_max_wait is capped"
    assert created.get("hold") == "1" and created.get("requests") == "2"
    assert created.get("inactivity") == str(INACTIVITY)
    assert created.get("polling") and created.get("ver") == "1.11"
    assert created.get("from") == server.domain
    assert created.get("authid"), "the stream id"
    assert created.get(f"{{{NS_XBOSH}}}version") == "1.0"
    assert created.get(f"{{{NS_XBOSH}}}restartlogic") == "true"
    # The SASL features come with the creation answer (or the next one).
    features = await b.features()
    mechs = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
    assert "SCRAM-SHA-256" in mechs and "PLAIN" in mechs, mechs


async def test_login_and_chat_with_a_tcp_client(server, new_user, clients, bosh):
    alice, bob = new_user("boa"), new_user("bob")
    cb = await clients(bob)
    await cb.go_online()
    b = bosh()
    jid = await b.login(alice)
    assert jid == f"{alice.jid}/web"
    await b.send(f"<presence xmlns='{NS_CLIENT}'/>")
    await b.send(f"<message xmlns='{NS_CLIENT}' to='{bob.jid}' type='chat' id='m1'><body>hello over BOSH</body></message>")
    m = await cb.wait_message(lambda m: m["body"] == "hello over BOSH", timeout=20)
    assert str(m["from"]) == jid
    await b.take(lambda e: e.tag == f"{{{NS_CLIENT}}}presence", what="our own presence")
    await b.settle()
    b.inbox.clear()
    # A long poll waits; the message from the TCP client answers it.
    poll = asyncio.ensure_future(b.post())
    await asyncio.sleep(1.5)
    assert not poll.done(), "the request is held while nothing is queued"
    cb.send_message(mto=jid, mbody="hello back", mtype="chat")
    await asyncio.wait_for(poll, 20)
    got = [e for e in b.inbox if e.tag == f"{{{NS_CLIENT}}}message"]
    assert got, [ET.tostring(e) for e in b.inbox]
    assert got[0].findtext(f"{{{NS_CLIENT}}}body") == "hello back"
    assert got[0].get("from").startswith(bob.jid)
    # Stanzas without xmlns inherit the BOSH namespace: they are jabber:client stanzas.
    await b.send(f"<message to='{bob.jid}' type='chat'><body>no namespace</body></message>")
    await cb.wait_message(lambda m: m["body"] == "no namespace", timeout=20)
    # The client's terminate (with a last stanza in it).
    bye = await b.post(f"<presence xmlns='{NS_CLIENT}' type='unavailable'/>", attrs="type='terminate'")
    assert bye.get("type") == "terminate" and bye.get("condition") is None, ET.tostring(bye)
    after = await b.post()
    assert condition(after) == "item-not-found", ET.tostring(after)


async def test_plain_login(server, new_user, bosh):
    alice = new_user("bop")
    b = bosh()
    assert await b.login(alice, "plain", mech="PLAIN") == f"{alice.jid}/plain"
    # Wrong password: a SASL failure, the session goes on.
    b2 = bosh()
    await b2.create()
    await b2.features()
    token = base64.b64encode(f"\0{alice.localpart}\0wrong".encode()).decode()
    await b2.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
    fail = await b2.take(lambda e: e.tag.startswith(f"{{{NS_SASL}}}"), what="SASL outcome")
    assert fail.tag == f"{{{NS_SASL}}}failure" and fail.find(f"{{{NS_SASL}}}not-authorized") is not None, ET.tostring(fail)


async def test_eicar_is_blocked_over_bosh(server, new_user, clients, bosh):
    alice, bob = new_user("boe"), new_user("bof")
    cb = await clients(bob)
    await cb.go_online()
    b = bosh()
    await b.login(alice)
    await b.send(f"<message xmlns='{NS_CLIENT}' to='{bob.jid}' type='chat' id='evil'><body>file: {EICAR}</body></message>")
    err = await b.take(lambda e: e.tag == f"{{{NS_CLIENT}}}message" and e.get("id") == "evil", what="the bounce")
    assert err.get("type") == "error", ET.tostring(err)
    assert err.find(f"{{{NS_CLIENT}}}error/{{{NS_STANZA_ERR}}}policy-violation") is not None, ET.tostring(err)
    await b.send(f"<message xmlns='{NS_CLIENT}' to='{bob.jid}' type='chat'><body>sentinel</body></message>")
    await cb.wait_message(lambda m: m["body"] == "sentinel", timeout=20)
    assert not cb.messages.unconsumed(lambda m: "EICAR" in m["body"]), "the EICAR message was delivered"


async def test_host_meta_lists_bosh(server):
    expected = f"https://{server.domain}:{server.http_port}/http-bind"
    async with aiohttp.ClientSession() as s:
        base = f"https://localhost:{server.http_port}/.well-known"
        async with s.get(f"{base}/host-meta", ssl=ssl_ctx(server)) as r:
            assert r.status == 200
            xrd = ET.fromstring(await r.text())
        links = [(l.get("rel"), l.get("href")) for l in xrd.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")]
        assert ("urn:xmpp:alt-connections:xbosh", expected) in links, links
        assert any(rel == "urn:xmpp:alt-connections:websocket" for rel, _ in links), links
        async with s.get(f"{base}/host-meta.json", ssl=ssl_ctx(server)) as r:
            doc = json.loads(await r.text())
        assert {"rel": "urn:xmpp:alt-connections:xbosh", "href": expected} in doc["links"], doc


async def test_bad_rid_terminates_with_item_not_found(server, bosh):
    b = bosh()
    await b.create()
    await b.features()
    # rid 3 ahead of the last: outside the window of requests='2'.
    bad = await b.post(rid=b.rid + 3)
    assert condition(bad) == "item-not-found", ET.tostring(bad)
    gone = await b.post()
    assert condition(gone) == "item-not-found", ET.tostring(gone)


async def test_repeated_rid_gets_the_same_answer(server, new_user, bosh):
    alice = new_user("bor")
    b = bosh()
    await b.login(alice)
    await b.settle()
    b.inbox.clear()
    first = b.rid
    # A ping whose answer comes back in the answer to its own request.
    answer = await b.post(f"<iq xmlns='{NS_CLIENT}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert [e.get("id") for e in answer] == ["p1"], ET.tostring(answer)
    b.inbox.clear()
    # The client lost the HTTP response and sends the same rid again: the same answer,
    # and the ping is not applied a second time.
    again = await b.post(f"<iq xmlns='{NS_CLIENT}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>", rid=b.rid)
    assert ET.tostring(again) == ET.tostring(answer)
    b.inbox.clear()
    await b.send(f"<iq xmlns='{NS_CLIENT}' type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>")
    await b.take(lambda e: e.get("id") == "p3", what="the next ping answer")
    await b.settle()
    assert not [e for e in b.inbox if e.get("id") == "p1"], "p1 was applied twice"
    # A rid older than the kept answers: item-not-found.
    old = await b.post(rid=first - 5)
    assert condition(old) == "item-not-found", ET.tostring(old)


async def test_stream_error_ends_the_session(server, bosh):
    """A stanza before authentication: the c2s stream error comes back as
    remote-stream-error with the <stream:error/> inside."""
    b = bosh()
    await b.create()
    await b.features()
    body = await b.post(f"<message xmlns='{NS_CLIENT}' to='x@{server.domain}'><body>too early</body></message>")
    assert condition(body) == "remote-stream-error", ET.tostring(body)
    err = body.find(f"{{{NS_STREAM}}}error")
    assert err is not None and err.find("{urn:ietf:params:xml:ns:xmpp-streams}not-authorized") is not None, ET.tostring(body)
    assert condition(await b.post()) == "item-not-found"


async def test_restart_with_payload_or_before_sasl_is_a_bad_request(server, bosh):
    b = bosh()
    await b.create()
    await b.features()
    body = await b.post(f"<presence xmlns='{NS_CLIENT}'/>", attrs=f"xmlns:xmpp='{NS_XBOSH}' xmpp:restart='true'")
    assert condition(body) == "bad-request", ET.tostring(body)
    b = bosh()
    await b.create()
    await b.features()
    body = await b.post(attrs=f"xmlns:xmpp='{NS_XBOSH}' xmpp:restart='true'")
    assert condition(body) == "bad-request", ET.tostring(body)


async def test_unknown_sid(server, bosh):
    b = bosh()
    b.sid = "00000000000000000000000000000000"
    body = await b.post()
    assert condition(body) == "item-not-found", ET.tostring(body)


async def test_oversized_body(server, bosh):
    b = bosh()
    await b.create()
    big = f"<body xmlns='{NS_BOSH}' rid='{b.rid + 1}' sid='{b.sid}'><message xmlns='{NS_CLIENT}'><body>{'A' * (MAX_STANZA * 2)}</body></message></body>"
    status, text, _ = await b.post_raw(big)
    assert status == 413, status
    assert condition(ET.fromstring(text)) == "policy-violation", text


async def test_body_that_is_not_xml(server, bosh):
    b = bosh()
    status, text, _ = await b.post_raw("this is not XML <<<")
    assert status == 200
    assert condition(ET.fromstring(text)) == "bad-request", text
    status, text, _ = await b.post_raw(f"<body xmlns='jabber:client' rid='5' to='{server.domain}'/>")
    assert condition(ET.fromstring(text)) == "bad-request", text


async def test_creation_errors(server, bosh):
    b = bosh()
    assert condition(await b.create(to="elsewhere.example")) == "host-unknown"
    body = await b.post(attrs="wait='10' hold='1'")
    assert condition(body) == "improper-addressing", ET.tostring(body)
    body = await b.post(attrs=f"to='{server.domain}' wait='soon'")
    assert condition(body) == "bad-request", ET.tostring(body)
    status, text, _ = await b.post_raw(f"<body xmlns='{NS_BOSH}' rid='x1' to='{server.domain}'/>")
    assert condition(ET.fromstring(text)) == "bad-request", text


async def test_inactivity_terminates_the_session(server, bosh):
    b = bosh()
    await b.create()
    await b.features()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + INACTIVITY + 20
    # No request for longer than `inactivity`: the session is gone.
    while True:
        await asyncio.sleep(INACTIVITY + 1)
        body = await b.post()
        if body.get("type") == "terminate":
            break
        assert loop.time() < deadline, "the session outlived its inactivity timeout"
    # The terminate (or, once collected, item-not-found).
    assert body.get("condition") in (None, "item-not-found"), ET.tostring(body)
    assert condition(await b.post()) == "item-not-found"


async def test_uncollected_messages_go_offline(server, new_user, clients, bosh):
    """A browser tab closed without a terminate: the message queued for the BOSH session
    is not lost when the session times out; it waits in offline storage."""
    alice, bob = new_user("boi"), new_user("boj")
    b = bosh()
    jid = await b.login(alice)
    await b.send(f"<presence xmlns='{NS_CLIENT}'/>")
    await b.take(lambda e: e.tag == f"{{{NS_CLIENT}}}presence", what="our own presence")
    await b.settle()
    # Nobody polls any more.
    cb = await clients(bob)
    cb.send_message(mto=jid, mbody="are you there?", mtype="chat")
    # The session ends after `inactivity`; the message is then stored offline.
    await asyncio.sleep(INACTIVITY * 2 + 2)
    ca = await clients(alice, "phone")
    await ca.go_online()
    m = await ca.wait_message(lambda m: m["body"] == "are you there?", timeout=30)
    assert str(m["from"]).startswith(bob.jid)


async def test_sessions_per_address_are_limited(server, bosh):
    made = []
    refused = None
    for _ in range(13):
        b = bosh()
        created = await b.create()
        if created.get("type") == "terminate":
            refused = created
            break
        made.append(b)
    assert refused is not None and refused.get("condition") == "policy-violation", "no limit"
    assert len(made) <= 12
    # Terminating one frees a place.
    for b in made:
        await b.post(attrs="type='terminate'")
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while True:
        b = bosh()
        created = await b.create()
        if created.get("type") is None:
            await b.post(attrs="type='terminate'")
            break
        assert loop.time() < end, "places were not freed"
        await asyncio.sleep(0.5)


async def test_cors(server, bosh):
    b = bosh()
    status, _, headers = await b.post_raw(f"<body xmlns='{NS_BOSH}' rid='1' to='nowhere.example'/>",
                                          headers={"Origin": WEB_ORIGIN})
    assert status == 200 and headers.get("Access-Control-Allow-Origin") == WEB_ORIGIN
    status, _, headers = await b.post_raw(f"<body xmlns='{NS_BOSH}' rid='1' to='nowhere.example'/>",
                                          headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers
    async with b.http.options(bosh_url(server), ssl=ssl_ctx(server),
                              headers={"Origin": WEB_ORIGIN, "Access-Control-Request-Method": "POST"}) as r:
        assert r.status == 204
        assert r.headers.get("Access-Control-Allow-Origin") == WEB_ORIGIN
        assert "POST" in r.headers.get("Access-Control-Allow-Methods", "")
    async with b.http.get(bosh_url(server), ssl=ssl_ctx(server)) as r:
        assert r.status == 405


async def test_server_still_serves_after_hostile_clients(server, new_user, bosh):
    alice = new_user("bok")
    b = bosh()
    assert await b.login(alice, "again") == f"{alice.jid}/again"
    await b.post(attrs="type='terminate'")
    server.assert_alive()
