"""XMPP over WebSocket (RFC 7395) and its discovery (XEP-0156), as a browser client
(Converse.js) uses them: wss:// on the HTTPS listener with the server certificate
verified, subprotocol ``xmpp``, ``<open/>``/``<close/>`` framing, SASL SCRAM-SHA-256,
the stream restart, resource binding, then messages both ways with a slixmpp client on
the normal c2s port; the guard sees WebSocket traffic too (EICAR bounced with
policy-violation). Hostile clients: text that is not XML, an oversized message, a binary
message, a stanza before ``<open/>``, and an upgrade without the ``xmpp`` subprotocol.

slixmpp cannot speak WebSocket: the WebSocket client here is aiohttp's (pinned in
tests/requirements.txt for the upload tests).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from rampart_harness import (
    NS_BIND, NS_CLIENT, NS_SASL, NS_STANZA_ERR, NS_STREAM, NS_STREAM_ERR, RampartServer,
)
from scram_client import ScramClient
from conftest import WORK_ROOT

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MAX_STANZA = 16 * 1024


@pytest.fixture(scope="module")
def server():
    srv = RampartServer(WORK_ROOT / "test_websocket", http=True, limits={"max_stanza_bytes": MAX_STANZA})
    srv.start()
    yield srv
    srv.stop()


def ws_url(server) -> str:
    return f"wss://localhost:{server.http_port}/xmpp-websocket"


def ssl_ctx(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert_path))


class Ws:
    """A minimal RFC 7395 client: one XML element per text message."""

    def __init__(self, server):
        self.server = server
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, protocols=("xmpp",)):
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(ws_url(self.server), protocols=protocols,
                                                ssl=ssl_ctx(self.server), timeout=aiohttp.ClientWSTimeout(ws_close=10))
        assert self.ws.protocol == "xmpp"
        return self

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, text: str):
        await self.ws.send_str(text)

    async def recv(self, timeout: float = 20) -> ET.Element | None:
        """The next element, or None once the server closed the WebSocket."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return None
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return ET.fromstring(msg.data)

    async def recv_until(self, pred, timeout: float = 20) -> ET.Element:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            el = await self.recv(max(0.1, end - loop.time()))
            assert el is not None, "the server closed the WebSocket"
            if pred(el):
                return el

    async def open(self, domain: str):
        await self.send(f"<open xmlns='{NS_FRAMING}' to='{domain}' version='1.0'/>")
        opened = await self.recv()
        assert opened is not None and opened.tag == f"{{{NS_FRAMING}}}open", opened
        assert opened.get("from") == domain and opened.get("version") == "1.0", opened.attrib
        features = await self.recv()
        assert features is not None and features.tag == f"{{{NS_STREAM}}}features", features
        return features

    async def stream_error(self) -> tuple[str, str]:
        """Wait for <stream:error/> then <close/> and the end of the WebSocket."""
        err = await self.recv_until(lambda e: e.tag == f"{{{NS_STREAM}}}error")
        cond = next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{NS_STREAM_ERR}}}") and not c.tag.endswith("}text"))
        text = err.findtext(f"{{{NS_STREAM_ERR}}}text") or ""
        close = await self.recv()
        assert close is not None and close.tag == f"{{{NS_FRAMING}}}close", close
        assert await self.recv() is None, "the WebSocket should close after <close/>"
        return cond, text

    async def login(self, user, resource: str = "web") -> str:
        """SCRAM-SHA-256, stream restart, bind; returns the full JID."""
        features = await self.open(self.server.domain)
        mechs = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
        assert "SCRAM-SHA-256" in mechs, mechs
        assert not any(m.endswith("-PLUS") for m in mechs), f"no channel binding over WebSocket: {mechs}"
        assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        scram = ScramClient(user.localpart, user.password)
        await self.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{scram.first()}</auth>")
        ch = await self.recv()
        assert ch.tag == f"{{{NS_SASL}}}challenge", ET.tostring(ch)
        await self.send(f"<response xmlns='{NS_SASL}'>{scram.final(ch.text)}</response>")
        ok = await self.recv()
        assert ok.tag == f"{{{NS_SASL}}}success", ET.tostring(ok)
        scram.check_success(ok.text)
        # RFC 7395 §3.5: the stream restart is a new <open/>.
        features = await self.open(self.server.domain)
        assert features.find(f"{{{NS_BIND}}}bind") is not None, ET.tostring(features)
        await self.send(f"<iq xmlns='{NS_CLIENT}' type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                        f"<resource>{resource}</resource></bind></iq>")
        res = await self.recv()
        assert res.tag == f"{{{NS_CLIENT}}}iq" and res.get("type") == "result", ET.tostring(res)
        return res.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")


async def with_ws(server, fn):
    ws = Ws(server)
    await ws.connect()
    try:
        return await fn(ws)
    finally:
        await ws.close()


async def test_login_and_chat_with_a_tcp_client(server, new_user, clients):
    alice, bob = new_user("wsa"), new_user("wsb")
    cb = await clients(bob)
    await cb.go_online()
    ws = await Ws(server).connect()
    try:
        jid = await ws.login(alice)
        assert jid == f"{alice.jid}/web"
        await ws.send(f"<presence xmlns='{NS_CLIENT}'/>")
        await ws.send(f"<message xmlns='{NS_CLIENT}' to='{bob.jid}' type='chat' id='m1'><body>hello from the browser</body></message>")
        m = await cb.wait_message(lambda m: m["body"] == "hello from the browser", timeout=20)
        assert str(m["from"]) == jid
        cb.send_message(mto=jid, mbody="hello back", mtype="chat")
        got = await ws.recv_until(lambda e: e.tag == f"{{{NS_CLIENT}}}message")
        assert got.findtext(f"{{{NS_CLIENT}}}body") == "hello back"
        assert got.get("from").startswith(bob.jid)
        # A clean close: <close/> answered with <close/>, then the WebSocket ends.
        await ws.send(f"<close xmlns='{NS_FRAMING}'/>")
        closed = await ws.recv_until(lambda e: e.tag == f"{{{NS_FRAMING}}}close")
        assert closed is not None
    finally:
        await ws.close()


async def test_eicar_is_blocked_over_websocket(server, new_user, clients):
    alice, bob = new_user("wse"), new_user("wsf")
    cb = await clients(bob)
    await cb.go_online()

    async def run(ws):
        await ws.login(alice)
        await ws.send(f"<message xmlns='{NS_CLIENT}' to='{bob.jid}' type='chat' id='evil'><body>file: {EICAR}</body></message>")
        err = await ws.recv_until(lambda e: e.tag == f"{{{NS_CLIENT}}}message" and e.get("id") == "evil")
        assert err.get("type") == "error", ET.tostring(err)
        assert err.find(f"{{{NS_CLIENT}}}error/{{{NS_STANZA_ERR}}}policy-violation") is not None, ET.tostring(err)
        await ws.send(f"<message xmlns='{NS_CLIENT}' to='{bob.jid}' type='chat'><body>sentinel</body></message>")
        await cb.wait_message(lambda m: m["body"] == "sentinel", timeout=20)
        assert not cb.messages.unconsumed(lambda m: "EICAR" in m["body"]), "the EICAR message was delivered"

    await with_ws(server, run)


async def test_host_meta_discovery(server):
    expected = f"wss://{server.domain}:{server.http_port}/xmpp-websocket"
    async with aiohttp.ClientSession() as s:
        base = f"https://localhost:{server.http_port}/.well-known"
        async with s.get(f"{base}/host-meta", ssl=ssl_ctx(server)) as r:
            assert r.status == 200
            xrd = ET.fromstring(await r.text())
        links = [(l.get("rel"), l.get("href")) for l in xrd.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")]
        assert ("urn:xmpp:alt-connections:websocket", expected) in links, links
        async with s.get(f"{base}/host-meta.json", ssl=ssl_ctx(server)) as r:
            assert r.status == 200
            doc = json.loads(await r.text())
        assert {"rel": "urn:xmpp:alt-connections:websocket", "href": expected} in doc["links"], doc


async def test_upgrade_without_xmpp_subprotocol_is_refused(server):
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await s.ws_connect(ws_url(server), protocols=("chat",), ssl=ssl_ctx(server))
        assert e.value.status == 400


async def test_stanza_before_open(server):
    async def run(ws):
        await ws.send(f"<message xmlns='{NS_CLIENT}' to='x@localhost'><body>hi</body></message>")
        return await ws.stream_error()

    cond, text = await with_ws(server, run)
    assert cond == "not-well-formed" and "open" in text, (cond, text)


async def test_text_that_is_not_xml(server):
    async def run(ws):
        await ws.open(server.domain)
        await ws.send("this is not XML <<<")
        return await ws.stream_error()

    cond, _ = await with_ws(server, run)
    assert cond in ("not-well-formed", "invalid-xml", "bad-format"), cond


async def test_binary_message(server):
    async def run(ws):
        await ws.open(server.domain)
        await ws.ws.send_bytes(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        return await ws.stream_error()

    cond, text = await with_ws(server, run)
    assert cond == "policy-violation" and "binary" in text, (cond, text)


async def test_oversized_message(server):
    async def run(ws):
        await ws.open(server.domain)
        await ws.send(f"<message xmlns='{NS_CLIENT}'><body>{'A' * (MAX_STANZA * 2)}</body></message>")
        return await ws.stream_error()

    cond, _ = await with_ws(server, run)
    assert cond == "policy-violation", cond


async def test_open_without_framing_namespace(server):
    async def run(ws):
        await ws.send(f"<open to='{server.domain}' version='1.0'/>")
        return await ws.stream_error()

    cond, text = await with_ws(server, run)
    assert cond == "not-well-formed" and NS_FRAMING in text, (cond, text)


async def test_server_still_serves_after_hostile_clients(server, new_user):
    alice = new_user("wsok")
    ws = await Ws(server).connect()
    try:
        assert await ws.login(alice, "again") == f"{alice.jid}/again"
    finally:
        await ws.close()
    server.assert_alive()
