"""Shared helpers for the Rampart integration tests.

Everything that knows how to run the server or talk to it lives here:

* :class:`RampartServer` -- writes a config, creates users through the CLI,
  starts ``$RAMPART_BIN --config CFG serve`` and stops it again.
* :class:`Client` -- a slixmpp client that verifies the server certificate
  for real (the server's self-signed ``<data_dir>/tls/cert.pem`` is loaded
  as the only trust anchor) and records everything it receives.
* :class:`RawXMPP` -- a blocking raw-socket client (plain TCP + STARTTLS or
  direct TLS) for hostile tests and for SASL details slixmpp hides.
* :class:`PlusRawXMPP` -- the same over pyOpenSSL, which (unlike Python's
  ``ssl`` module) can export keying material, so SCRAM-*-PLUS with the
  ``tls-exporter`` channel binding (RFC 9266) can be tested.
* SCRAM / PLAIN client-side helpers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import re
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.util.sasl import mechanisms as _sasl_mechanisms
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

REPO_ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "localhost"
HOST = "127.0.0.1"

NS_CLIENT = "jabber:client"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
NS_DELAY = "urn:xmpp:delay"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_TIME = "urn:xmpp:time"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"

STREAM_HEADER = (
    "<?xml version='1.0'?>"
    "<stream:stream to='{to}' version='1.0' xml:lang='en' "
    "xmlns='{ns}' xmlns:stream='{stream_ns}'{extra}>"
)


def rampart_bin() -> str:
    env = os.environ.get("RAMPART_BIN")
    if env:
        return env
    return str(REPO_ROOT / "target" / "debug" / "rampart")


# --------------------------------------------------------------------------
# slixmpp speed-up: its SCRAM implementation derives the salted password with
# a pure-Python HMAC loop.  hashlib.pbkdf2_hmac computes exactly the same
# value (RFC 5802 Hi() *is* PBKDF2 with HMAC and dkLen = hash length) in C,
# which keeps logins fast even if the server uses a high iteration count.
# --------------------------------------------------------------------------
def _fast_hi(self, text, salt, iterations):  # pragma: no cover - trivial
    name = self.hash().name
    if isinstance(text, str):
        text = text.encode("utf-8")
    return hashlib.pbkdf2_hmac(name, bytes(text), salt, iterations)


_sasl_mechanisms.SCRAM.Hi = _fast_hi


def wait_fd(fd: int, write: bool = False, timeout: float | None = 0.0) -> bool:
    """poll() for readability/writability (select() breaks above fd 1023)."""
    p = select.poll()
    p.register(fd, (select.POLLOUT if write else select.POLLIN) | select.POLLERR | select.POLLHUP)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return bool(p.poll(ms))


def local(tag: str) -> str:
    """Local name of an ElementTree tag ('{ns}name' -> 'name')."""
    return tag.rsplit("}", 1)[-1]


def ns_of(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


# --------------------------------------------------------------------------
# Ports, users, server process
# --------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    """Return n distinct currently-free TCP ports on the loopback address."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_table(name: str, table: dict) -> list[str]:
    """Lines of a TOML table; nested dicts become sub-tables ``[name.key]``."""
    lines = [f"[{name}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += ["", *toml_table(f"{name}.{k}", v)]
    return lines


_user_counter = itertools.count(1)


@dataclass
class User:
    localpart: str
    password: str
    domain: str = DOMAIN

    @property
    def jid(self) -> str:
        return f"{self.localpart}@{self.domain}"


class ServerDied(AssertionError):
    pass


class RampartServer:
    """One Rampart server process with its own config and data directory."""

    def __init__(self, workdir: Path, limits: dict | None = None, extra_toml: str = "",
                 guard: dict | None = None, http: bool = False, domain: str = DOMAIN,
                 tls: tuple[Path, Path] | None = None, ca_path: Path | None = None,
                 s2s: dict | None = None):
        self.workdir = Path(workdir)
        # Federation tests run servers with other domains and certificates from a test CA:
        # `tls` = (cert, key) files, `ca_path` = the CA clients trust, `s2s` = the [s2s]
        # table (then `listen.s2s` is set on a free port, `self.s2s_port`).
        self.domain = domain
        self.tls_files = tls
        self.ca_path = Path(ca_path) if ca_path else None
        self.s2s = dict(s2s) if s2s is not None else None
        self.s2s_port: int | None = free_ports(1)[0] if s2s is not None else None
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "rampart.toml"
        self.limits = dict(limits or {})
        self.extra_toml = extra_toml
        # The [guard] table (nested dicts are sub-tables such as [guard.clamav]).
        self.guard = dict(guard or {})
        self.c2s_port, self.c2s_tls_port = free_ports(2)
        # The HTTPS (upload) listener, only when asked for.
        self.http_port: int | None = free_ports(1)[0] if http else None
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._starts = 0
        self.write_config()

    # -- config ---------------------------------------------------------
    def config_text(self) -> str:
        lines = [
            f"domain = {toml_value(self.domain)}",
            f"data_dir = {toml_value(str(self.data_dir))}",
            "",
            "[listen]",
            f'c2s = "{HOST}:{self.c2s_port}"',
            f'c2s_tls = "{HOST}:{self.c2s_tls_port}"',
        ]
        if self.http_port:
            lines.append(f'http = "{HOST}:{self.http_port}"')
        if self.s2s_port:
            lines.append(f's2s = "{HOST}:{self.s2s_port}"')
        if self.tls_files:
            lines += ["", "[tls]", f"cert = {toml_value(str(self.tls_files[0]))}",
                      f"key = {toml_value(str(self.tls_files[1]))}"]
        if self.s2s is not None:
            lines += ["", *toml_table("s2s", self.s2s)]
        if self.limits:
            lines += ["", "[limits]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in self.limits.items()]
        if self.guard:
            lines += ["", *toml_table("guard", self.guard)]
        if self.extra_toml:
            lines += ["", self.extra_toml]
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    @property
    def cert_path(self) -> Path:
        """What clients trust: the test CA if one was given, else the generated cert."""
        if self.ca_path:
            return self.ca_path
        return self.data_dir / "tls" / "cert.pem"

    # -- CLI ------------------------------------------------------------
    def cli(self, *args: str, input: str | None = None, timeout: float = 60,
            config: Path | str | None = None) -> subprocess.CompletedProcess:
        cmd = [rampart_bin(), "--config", str(config or self.config_path), *args]
        return subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def add_user(self, prefix: str = "u", password: str | None = None) -> User:
        n = next(_user_counter)
        localpart = f"{prefix}{n}x{secrets.token_hex(3)}".lower()
        password = password or ("pw-" + secrets.token_urlsafe(12))
        r = self.cli("user", "add", f"{localpart}@{self.domain}", "--password", password)
        assert r.returncode == 0, (
            f"`rampart user add {localpart}@{self.domain}` failed with exit code "
            f"{r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        )
        return User(localpart, password, self.domain)

    def unknown_user(self, prefix: str = "ghost") -> User:
        """A user that was never created."""
        n = next(_user_counter)
        return User(f"{prefix}{n}x{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12))

    # -- process --------------------------------------------------------
    def start(self, timeout: float = 60, env: dict | None = None) -> None:
        """Start `rampart serve`; `env` adds environment variables for this
        start only (e.g. LD_PRELOAD/FAKETIME to run the server at another time)."""
        binary = rampart_bin()
        if not os.path.exists(binary):
            raise FileNotFoundError(
                f"server binary {binary} does not exist (build it with "
                "`cargo build -p rampart` or set RAMPART_BIN)")
        self._starts += 1
        self.log_path = self.workdir / f"server-{self._starts}.log"
        log = open(self.log_path, "wb")
        extra_env = env
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [binary, "--config", str(self.config_path), "serve"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerDied(
                    f"rampart serve exited with code {self.proc.returncode} during "
                    f"startup. Log:\n{self.log_text()}")
            if (self._port_open(self.c2s_port) and self._port_open(self.c2s_tls_port)
                    and (not self.http_port or self._port_open(self.http_port))
                    and self.cert_path.exists()):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"rampart serve did not accept on 127.0.0.1:{self.c2s_port} / "
                    f":{self.c2s_tls_port} (cert {self.cert_path} exists: "
                    f"{self.cert_path.exists()}) within {timeout}s. Log:\n{self.log_text()}")
            time.sleep(0.05)

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise ServerDied(f"the rampart server process is gone (exit code {code})")

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size if self.log_path else 0
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0, limit: int = 20000) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        data = self.log_path.read_bytes()[since:]
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = f"... ({len(text) - limit} characters cut) ...\n" + text[-limit:]
        return text


# --------------------------------------------------------------------------
# slixmpp client
# --------------------------------------------------------------------------
class LoginFailed(AssertionError):
    def __init__(self, outcome: str, client: "Client"):
        self.outcome = outcome
        self.client = client
        super().__init__(
            f"login as {client.requested_jid} failed: {outcome}; SASL failures: "
            f"{client.auth_failures}; stream errors: {client.stream_error_conditions}")


class StanzaBox:
    """Collects received stanzas; tests wait for ones matching a predicate."""

    def __init__(self) -> None:
        self.items: list = []
        self._consumed: set[int] = set()
        self._event = asyncio.Event()

    def put(self, item) -> None:
        self.items.append(item)
        self._event.set()

    def _find(self, pred):
        for i, item in enumerate(self.items):
            if i not in self._consumed and pred(item):
                self._consumed.add(i)
                return True, item
        return False, None

    async def wait_for(self, pred: Callable = lambda s: True, timeout: float = 10,
                       what: str = "a stanza"):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found, item = self._find(pred)
            if found:
                return item
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                seen = "\n  ".join(str(s) for s in self.items[-10:]) or "(nothing)"
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; last received:\n  {seen}")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def collect(self, n: int, pred: Callable = lambda s: True, timeout: float = 15,
                      what: str = "stanzas") -> list:
        out = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < n:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                out.append(await self.wait_for(pred, max(remaining, 0.001), what))
            except AssertionError:
                raise AssertionError(
                    f"received only {len(out)} of {n} {what} within {timeout}s") from None
        return out

    async def assert_none(self, pred: Callable = lambda s: True, within: float = 1.5,
                          what: str = "stanza") -> None:
        await asyncio.sleep(within)
        found, item = self._find(pred)
        assert not found, f"unexpectedly received {what}: {item}"

    def unconsumed(self, pred: Callable = lambda s: True) -> list:
        return [s for i, s in enumerate(self.items) if i not in self._consumed and pred(s)]


class Client(slixmpp.ClientXMPP):
    """slixmpp client that records what it receives.

    TLS is verified for real: the trust store holds only the server's
    self-signed certificate, and the host name 'localhost' is checked.
    """

    def __init__(self, server: RampartServer, jid: str, password: str, *,
                 direct_tls: bool = False, sasl_mech: str | None = None):
        super().__init__(jid, password, sasl_mech=sasl_mech)
        self.rampart = server
        ctx = ssl.create_default_context(cafile=str(server.cert_path))
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ssl_context = ctx
        self.direct_tls = direct_tls
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.use_ipv6 = False
        self.whitespace_keepalive = False
        # The tests decide how to answer subscription requests.
        self.auto_authorize = None
        self.auto_subscribe = False

        self.messages = StanzaBox()
        self.presences = StanzaBox()
        self.roster_pushes = StanzaBox()
        self.auth_failures: list[str] = []
        self.stream_errors: list = []
        self.disconnected_event = asyncio.Event()
        self._outcome: asyncio.Future | None = None

        self.register_handler(Callback(
            "test: messages", MatchXPath(f"{{{NS_CLIENT}}}message"),
            lambda s: self.messages.put(s)))
        self.register_handler(Callback(
            "test: presence", MatchXPath(f"{{{NS_CLIENT}}}presence"),
            lambda s: self.presences.put(s)))
        self.register_handler(Callback(
            "test: roster push", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_ROSTER}}}query"),
            self._on_roster_iq))
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", lambda _e: self._finish("auth-failed"))
        self.add_event_handler("no_auth", lambda _e: self._finish("no-acceptable-mechanism"))
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("ssl_invalid_chain", lambda e: self._finish(f"tls-invalid-chain: {e}"))

    # -- event plumbing ---------------------------------------------------
    def _finish(self, outcome: str) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)

    def _on_session_start(self, _event) -> None:
        self._finish("ok")

    def _on_failed_auth(self, stanza) -> None:
        self.auth_failures.append(stanza["condition"])

    def _on_stream_error(self, err) -> None:
        self.stream_errors.append(err)

    def _on_disconnected(self, _reason) -> None:
        self.disconnected_event.set()
        self._finish("disconnected")

    def _on_connection_failed(self, err) -> None:
        self.cancel_connection_attempt()
        self._finish(f"connection-failed: {err}")

    def _on_roster_iq(self, iq) -> None:
        if iq["type"] == "set":
            self.roster_pushes.put(iq)

    @property
    def stream_error_conditions(self) -> list[str]:
        return [e["condition"] for e in self.stream_errors]

    # -- connecting -------------------------------------------------------
    async def login(self, timeout: float = 20) -> "Client":
        loop = asyncio.get_running_loop()
        self._outcome = loop.create_future()
        self.disconnected_event.clear()
        port = self.rampart.c2s_tls_port if self.direct_tls else self.rampart.c2s_port
        self.connect(HOST, port)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except asyncio.TimeoutError:
            outcome = f"no session after {timeout}s"
        if outcome != "ok":
            self.kill()
            raise LoginFailed(outcome, self)
        return self

    def kill(self) -> None:
        """Drop the TCP connection without a closing stream tag."""
        self.cancel_connection_attempt()
        try:
            self.abort()
        except Exception:
            pass

    async def logout(self, timeout: float = 5) -> None:
        """Close the stream politely and wait until the connection is gone."""
        if self.transport is None:
            return
        self.disconnected_event.clear()
        self.disconnect(wait=timeout)
        try:
            await asyncio.wait_for(self.disconnected_event.wait(), timeout + 2)
        except asyncio.TimeoutError:
            self.kill()

    async def wait_disconnected(self, timeout: float = 10) -> bool:
        try:
            await asyncio.wait_for(self.disconnected_event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    # -- helpers ------------------------------------------------------------
    async def iq(self, itype: str, payload: str | ET.Element | None = None,
                 to: str | None = None, timeout: float = 10):
        """Send an IQ and return the response (result or error) stanza."""
        iq = self.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        if payload is not None:
            if isinstance(payload, str):
                payload = ET.fromstring(payload)
            iq.append(payload)
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise AssertionError(f"no response to IQ within {timeout}s: {iq}") from None

    async def ping_server(self, timeout: float = 10):
        resp = await self.iq("get", f"<ping xmlns='{NS_PING}'/>", to=self.rampart.domain, timeout=timeout)
        assert resp["type"] == "result", f"ping to the server failed: {resp}"
        return resp

    async def sync(self) -> None:
        """Round-trip to the server so everything sent before is processed."""
        await self.ping_server()

    async def go_online(self, priority: int | None = None, show: str | None = None,
                        status: str | None = None) -> None:
        self.send_presence(pshow=show, pstatus=status, ppriority=priority)
        await self.sync()

    async def roster_get(self, ver: str | None = None):
        q = f"<query xmlns='{NS_ROSTER}'/>" if ver is None else \
            f"<query xmlns='{NS_ROSTER}' ver='{ver}'/>"
        return await self.iq("get", q)

    async def wait_message(self, pred: Callable = lambda m: True, timeout: float = 10,
                           what: str = "a message"):
        return await self.messages.wait_for(pred, timeout, what)

    async def wait_presence(self, pred: Callable = lambda p: True, timeout: float = 10,
                            what: str = "a presence"):
        return await self.presences.wait_for(pred, timeout, what)

    def send_msg(self, to: str, body: str, mtype: str = "chat") -> None:
        self.send_message(mto=to, mbody=body, mtype=mtype)


def make_client(server: RampartServer, user: User, resource: str | None = None, **kw) -> Client:
    jid = user.jid + (f"/{resource}" if resource else "")
    return Client(server, jid, user.password, **kw)


def roster_items(iq) -> dict[str, ET.Element]:
    """Map bare JID -> <item/> element for a roster result or push."""
    q = iq.xml.find(f"{{{NS_ROSTER}}}query")
    if q is None:
        return {}
    return {item.get("jid"): item for item in q.findall(f"{{{NS_ROSTER}}}item")}


def item_groups(item: ET.Element) -> set[str]:
    return {g.text or "" for g in item.findall(f"{{{NS_ROSTER}}}group")}


def stanza_error(stanza) -> tuple[str, str]:
    """(condition, type) of a stanza error."""
    err = stanza.xml.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        return ("", "")
    cond = ""
    for child in err:
        if ns_of(child.tag) == NS_STANZA_ERR and local(child.tag) != "text":
            cond = local(child.tag)
    return (cond, err.get("type", ""))


# --------------------------------------------------------------------------
# Raw socket client
# --------------------------------------------------------------------------
class RawXMPP:
    """Blocking raw XMPP connection for hostile tests.

    Every byte read is kept (``self.raw`` for the whole connection, after TLS
    only the decrypted bytes), and the bytes of the current stream are parsed
    so that top-level elements (stanzas, features, stream errors) can be
    inspected.
    """

    def __init__(self, server: RampartServer, *, direct_tls: bool = False,
                 port: int | None = None, source_ip: str | None = None,
                 tls_max_version: ssl.TLSVersion | None = None, connect_timeout: float = 10,
                 rcvbuf: int | None = None):
        self.server = server
        self.direct_tls = direct_tls
        self.port = port or (server.c2s_tls_port if direct_tls else server.c2s_port)
        self.tls_max_version = tls_max_version
        self.raw = b""
        self.closed = False
        self.tls = False
        if rcvbuf is None:
            self.sock = socket.create_connection(
                (HOST, self.port), timeout=connect_timeout,
                source_address=(source_ip, 0) if source_ip else None)
        else:
            # A small receive buffer, set before connecting so that the TCP window is small
            # too: a client that stops reading makes the server's writes block sooner.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(connect_timeout)
            if source_ip:
                self.sock.bind((source_ip, 0))
            self.sock.connect((HOST, self.port))
        self.sock.settimeout(15)
        self._reset_parser()
        if direct_tls:
            self._start_tls(alpn=True)

    # -- transport --------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.server.cert_path))
        ctx.check_hostname = True
        if self.tls_max_version is not None:
            ctx.maximum_version = self.tls_max_version
        return ctx

    def _start_tls(self, alpn: bool = False) -> None:
        ctx = self.ssl_context()
        if alpn:
            ctx.set_alpn_protocols(["xmpp-client"])
        self.sock.settimeout(10)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=DOMAIN)
        self.sock.settimeout(15)
        self.tls = True
        self._reset_parser()

    def _pending(self) -> int:
        return self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0

    def _recv_raw(self, n: int) -> bytes:
        return self.sock.recv(n)

    def _send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fileno(self) -> int:
        return self.sock.fileno()

    def recv_some(self, timeout: float) -> bytes | None:
        """Up to 64 KiB of data; b'' when the peer closed; None on timeout."""
        if self.closed:
            return b""
        if not self._pending():
            if not wait_fd(self._fileno(), timeout=max(timeout, 0)):
                return None
        try:
            data = self._recv_raw(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        except (ssl.SSLWantReadError, TimeoutError):
            return None
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return b""
        self.raw += data
        self.stream_raw += data
        self._feed(data)
        return data

    def send(self, data: bytes | str) -> bool:
        """Send; returns False if the connection turned out to be closed."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            self._send_raw(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False

    def send_chunked(self, data: bytes | str, chunk: int = 8192) -> int:
        """Send in chunks, stopping as soon as the server answers or closes.

        A real client keeps reading while it writes; this avoids a server's
        RST (from closing with unread data) destroying its stream error before
        we had a chance to read it. Returns the number of bytes sent.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        sent = 0
        while sent < len(data):
            got = self.recv_some(0)
            if got is not None:  # server said something or closed
                break
            if not wait_fd(self._fileno(), write=True, timeout=5):
                break
            if not self.send(data[sent:sent + chunk]):
                break
            sent += chunk
        return min(sent, len(data))

    def read_until_close(self, timeout: float = 10) -> bytes:
        """Read until the server closes the connection (or timeout); returns
        every byte read on this connection (decrypted after TLS)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.recv_some(remaining)
        return self.raw

    def close(self) -> None:
        try:
            self.sock.close()
        except Exception:
            pass

    # -- parsing ----------------------------------------------------------
    def _reset_parser(self) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.stream_root: ET.Element | None = None
        self.elements: list[ET.Element] = []
        self._taken = 0
        self.stream_closed_by_peer = False
        self.parse_error: str | None = None
        self.stream_raw = b""

    def _feed(self, data: bytes) -> None:
        if self.parse_error:
            return
        try:
            self.parser.feed(data)
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                    if self.depth == 1:
                        self.stream_root = el
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.elements.append(el)
                        try:  # keep memory flat on long streams
                            self.stream_root.remove(el)
                        except ValueError:
                            pass
                    elif self.depth == 0:
                        self.stream_closed_by_peer = True
        except ET.ParseError as e:
            self.parse_error = str(e)

    def next_element(self, timeout: float = 10) -> ET.Element | None:
        """Next top-level element of the current stream, None if the server
        closed the connection or nothing arrived within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self._taken < len(self.elements):
                el = self.elements[self._taken]
                self._taken += 1
                return el
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.recv_some(remaining)

    def expect(self, ns: str, name: str, timeout: float = 10) -> ET.Element:
        el = self.next_element(timeout)
        assert el is not None, (
            f"expected <{name} xmlns='{ns}'/>, but the server "
            f"{'closed the connection' if self.closed else 'sent nothing'}; "
            f"stream so far: {self.stream_raw[-2000:]!r}")
        assert el.tag == f"{{{ns}}}{name}", (
            f"expected <{name} xmlns='{ns}'/>, got {ET.tostring(el)[:2000]!r}")
        return el

    def stream_error(self) -> str | None:
        """Condition of the stream error received on the current stream."""
        for el in self.elements:
            if el.tag == f"{{{NS_STREAM}}}error":
                for child in el:
                    if ns_of(child.tag) == NS_STREAM_ERR and local(child.tag) != "text":
                        return local(child.tag)
                return "(stream error without condition)"
        return None

    def stream_error_anywhere(self) -> str | None:
        """Like stream_error(), but falls back to scanning the raw bytes of the
        current stream (e.g. when the server's output was not parseable)."""
        cond = self.stream_error()
        if cond:
            return cond
        m = re.search(
            rb"<(?:\w+:)?error[^>]*>.*?<([a-z-]+)[^>]*xmlns=['\"]"
            + re.escape(NS_STREAM_ERR.encode()) + rb"['\"]",
            self.stream_raw, re.S)
        return m.group(1).decode() if m else None

    def describe(self) -> str:
        return (f"closed={self.closed} tls={self.tls} parse_error={self.parse_error} "
                f"stream bytes (last 1500): {self.stream_raw[-1500:]!r}")

    # -- protocol steps -----------------------------------------------------
    def open_stream(self, to: str = DOMAIN, ns: str = NS_CLIENT, stream_ns: str = NS_STREAM,
                    extra: str = "") -> None:
        self._reset_parser()
        self.send(STREAM_HEADER.format(to=to, ns=ns, stream_ns=stream_ns, extra=extra))

    def features(self, timeout: float = 10) -> ET.Element:
        return self.expect(NS_STREAM, "features", timeout)

    def starttls(self) -> None:
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.expect(NS_TLS, "proceed")
        self._start_tls()

    def negotiate_tls(self) -> ET.Element:
        """Open a stream and get to TLS; returns the post-TLS features."""
        if not self.tls:
            self.open_stream()
            self.features()
            self.starttls()
        self.open_stream()
        return self.features()

    def auth(self, mechanism: str, initial: bytes | None) -> ET.Element:
        if initial is None:
            payload = ""
        elif initial == b"":
            payload = "="
        else:
            payload = base64.b64encode(initial).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{payload}</auth>")
        el = self.next_element()
        assert el is not None, f"no answer to <auth mechanism='{mechanism}'>: {self.describe()}"
        return el

    def auth_plain(self, username: str, password: str, authzid: str = "") -> ET.Element:
        return self.auth("PLAIN", f"{authzid}\0{username}\0{password}".encode())

    def bind(self, resource: str | None = None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        el = self.next_element()
        assert el is not None and el.get("type") == "result", (
            f"resource binding failed: {None if el is None else ET.tostring(el)!r}")
        return el.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid").text

    def login(self, user: User, resource: str | None = "raw") -> str:
        """STARTTLS (unless direct TLS) + PLAIN + bind; returns the full JID."""
        feats = self.negotiate_tls()
        assert feats.find(f"{{{NS_SASL}}}mechanisms") is not None, ET.tostring(feats)
        res = self.auth_plain(user.localpart, user.password)
        assert res.tag == f"{{{NS_SASL}}}success", f"login failed: {ET.tostring(res)!r}"
        self.open_stream()
        self.features()
        return self.bind(resource)


def sasl_condition(el: ET.Element | None) -> str | None:
    if el is None or el.tag != f"{{{NS_SASL}}}failure":
        return None
    for child in el:
        if local(child.tag) != "text":
            return local(child.tag)
    return "(failure without condition)"


def mechanisms(features: ET.Element) -> list[str]:
    m = features.find(f"{{{NS_SASL}}}mechanisms")
    if m is None:
        return []
    return [x.text for x in m.findall(f"{{{NS_SASL}}}mechanism")]


class PlusRawXMPP(RawXMPP):
    """RawXMPP over pyOpenSSL, which can export TLS keying material
    (RFC 5705 / 8446 §7.5) for the tls-exporter channel binding."""

    def _start_tls(self, alpn: bool = False) -> None:
        from OpenSSL import SSL

        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.load_verify_locations(str(self.server.cert_path))
        ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
        if alpn:
            ctx.set_alpn_protos([b"xmpp-client"])
        plain = self.sock
        plain.setblocking(False)
        conn = SSL.Connection(ctx, plain)
        conn.set_tlsext_host_name(DOMAIN.encode())
        conn.set_connect_state()
        deadline = time.monotonic() + 10
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                wait_fd(plain.fileno(), timeout=max(0.0, deadline - time.monotonic()))
            except SSL.WantWriteError:
                wait_fd(plain.fileno(), write=True, timeout=max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError("TLS handshake timed out")
        # Pin the server certificate (pyOpenSSL does not check host names).
        want = ssl.PEM_cert_to_DER_cert(self.server.cert_path.read_text())
        got = conn.get_peer_certificate().to_cryptography().public_bytes(
            __import__("cryptography.hazmat.primitives.serialization",
                       fromlist=["Encoding"]).Encoding.DER)
        assert got == want, "server presented a different certificate"
        self.plain_sock = plain
        self.conn = conn
        self.tls = True
        self._reset_parser()

    def _pending(self) -> int:
        return self.conn.pending() if self.tls else 0

    def _fileno(self) -> int:
        return self.plain_sock.fileno() if self.tls else self.sock.fileno()

    def _recv_raw(self, n: int) -> bytes:
        if not self.tls:
            return self.sock.recv(n)
        from OpenSSL import SSL
        try:
            return self.conn.recv(n)
        except SSL.WantReadError:
            raise ssl.SSLWantReadError()
        except (SSL.ZeroReturnError, SSL.SysCallError):
            return b""
        except SSL.Error:
            return b""

    def _send_raw(self, data: bytes) -> None:
        if not self.tls:
            self.sock.sendall(data)
            return
        from OpenSSL import SSL
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view:
            try:
                n = self.conn.send(view.tobytes()[:16384])
                view = view[n:]
            except SSL.WantWriteError:
                wait_fd(self.plain_sock.fileno(), write=True, timeout=1)
            except SSL.WantReadError:
                wait_fd(self.plain_sock.fileno(), timeout=1)
            except (SSL.SysCallError, SSL.Error) as e:
                raise BrokenPipeError(str(e))
            if time.monotonic() > deadline:
                raise TimeoutError("send timed out")

    def tls_version(self) -> str:
        return self.conn.get_protocol_version_name()

    def tls_exporter(self) -> bytes:
        """RFC 9266 tls-exporter channel binding data."""
        return self.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")

    def close(self) -> None:
        try:
            (self.plain_sock if self.tls else self.sock).close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# SCRAM (RFC 5802 / RFC 7677) client, for the raw connections
# --------------------------------------------------------------------------
def _saslname(s: str) -> str:
    return s.replace("=", "=3D").replace(",", "=2C")


@dataclass
class ScramResult:
    outcome: str              # 'success' | 'failure' | 'challenge-failure'
    condition: str | None = None
    server_first: bytes | None = None
    server_signature_ok: bool | None = None
    element: ET.Element | None = None


def scram_auth(raw: RawXMPP, mechanism: str, username: str, password: str, *,
               gs2_flag: str = "n", cb_data: bytes = b"", authzid: str = "") -> ScramResult:
    """Run a SCRAM exchange on `raw`. mechanism e.g. 'SCRAM-SHA-256-PLUS'.

    gs2_flag: 'n' (no binding), 'y' (client supports binding but thinks the
    server does not), or 'p=tls-exporter' / 'p=tls-unique'.
    """
    base = mechanism[:-5] if mechanism.endswith("-PLUS") else mechanism
    hname = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[base]
    cnonce = base64.b64encode(os.urandom(18)).decode()
    gs2 = f"{gs2_flag},{'a=' + _saslname(authzid) if authzid else ''},"
    first_bare = f"n={_saslname(username)},r={cnonce}"
    el = raw.auth(mechanism, (gs2 + first_bare).encode())
    if el.tag != f"{{{NS_SASL}}}challenge":
        return ScramResult("failure", sasl_condition(el), element=el)
    server_first = base64.b64decode(el.text or "")
    attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
    nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
    assert nonce.startswith(cnonce), f"server nonce {nonce!r} does not extend ours {cnonce!r}"
    cbind = base64.b64encode(gs2.encode() + cb_data).decode()
    final_wo_proof = f"c={cbind},r={nonce}"
    salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, iters)
    client_key = hmac.new(salted, b"Client Key", hname).digest()
    stored_key = hashlib.new(hname, client_key).digest()
    auth_message = f"{first_bare},{server_first.decode()},{final_wo_proof}".encode()
    client_sig = hmac.new(stored_key, auth_message, hname).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
    server_key = hmac.new(salted, b"Server Key", hname).digest()
    server_sig = hmac.new(server_key, auth_message, hname).digest()
    final = f"{final_wo_proof},p={base64.b64encode(proof).decode()}"
    raw.send(f"<response xmlns='{NS_SASL}'>{base64.b64encode(final.encode()).decode()}</response>")
    el = raw.next_element()
    assert el is not None, f"no answer to the SCRAM client-final message: {raw.describe()}"
    if el.tag == f"{{{NS_SASL}}}challenge":
        # RFC 6120 §6.4.6 lets the server send the final message as a
        # challenge; the client then answers with an empty response.
        data = base64.b64decode(el.text or "")
        raw.send(f"<response xmlns='{NS_SASL}'/>")
        el2 = raw.next_element()
        ok = data == b"v=" + base64.b64encode(server_sig)
        if el2 is not None and el2.tag == f"{{{NS_SASL}}}success":
            return ScramResult("success", None, server_first, ok, el2)
        return ScramResult("failure", sasl_condition(el2), server_first, None, el2)
    if el.tag == f"{{{NS_SASL}}}success":
        data = base64.b64decode(el.text or "") if (el.text or "").strip() not in ("", "=") else b""
        ok = data == b"v=" + base64.b64encode(server_sig)
        return ScramResult("success", None, server_first, ok, el)
    return ScramResult("failure", sasl_condition(el), server_first, None, el)


# --------------------------------------------------------------------------
# Compliance archive (`rampart archive ...`)
# --------------------------------------------------------------------------
NS_SID = "urn:xmpp:sid:0"


def archive_search(server: RampartServer, query: str | None = None, *filters: str,
                   timeout: float = 60) -> list[dict]:
    """`rampart archive search [QUERY] FILTERS... --json` -> records, newest first."""
    args = ["archive", "search", *([query] if query is not None else []), *filters, "--json"]
    r = server.cli(*args, timeout=timeout)
    assert r.returncode == 0, (
        f"`rampart {' '.join(args)}` exited {r.returncode}\nstdout: {r.stdout[-2000:]}\n"
        f"stderr: {r.stderr[-2000:]}")
    import json
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def archive_verdict(rec: dict) -> tuple[str, str | None, str | None]:
    """(verdict, rule, reason-or-condition) of a record from `archive search --json`."""
    v = rec["verdict"]
    if isinstance(v, dict):
        return (v.get("verdict"), v.get("rule"), v.get("reason", v.get("condition")))
    return (v, rec.get("rule"), rec.get("reason", rec.get("condition")))


def archive_verify(server: RampartServer, config: Path | str | None = None,
                   timeout: float = 60) -> subprocess.CompletedProcess:
    """`rampart archive verify` (exit 0 and 'ok: ...', or exit 1 and 'TAMPERED: ...')."""
    return server.cli("archive", "verify", config=config, timeout=timeout)


def stanza_id_of(stanza, by: str) -> str | None:
    """The XEP-0359 <stanza-id by=BY id=.../> a delivered message carries."""
    xml = stanza.xml if hasattr(stanza, "xml") else stanza
    for sid in xml.findall(f"{{{NS_SID}}}stanza-id"):
        if sid.get("by") == by:
            return sid.get("id")
    return None


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _i64(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return _u64(len(b)) + b


def _opt(s: str | None) -> bytes:
    return b"\x00" if s is None else b"\x01" + _str(s)


def archive_record_digest(rec: dict) -> bytes:
    """A record's content digest, recomputed independently from the encoding
    documented in crates/rampart-archive/src/hash.rs."""
    verdict, rule, reason = archive_verdict(rec)
    h = hashlib.sha256(b"rampart-archive/record/v1")
    h.update(_i64(rec["at_ms"]))
    for k in ("kind", "direction", "from", "to"):
        h.update(_str(rec[k]))
    for k in ("remote_domain", "stanza_id", "body", "stanza_xml"):
        h.update(_opt(rec.get(k)))
    h.update(_str(verdict))
    for o in (rule, reason, rec.get("meta_json")):
        h.update(_opt(o))
    return h.digest()


def archive_chain_hash(seq: int, prev: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(b"rampart-archive/chain/v1" + _u64(seq) + prev + digest).digest()


def verify_export_dir(d: Path, public_key_hex: str | None = None) -> dict:
    """Verify an `archive export` directory the way an outside party would
    (the procedure in crates/rampart-archive/src/lib.rs), without Rampart:
    file digests, each record's digest against the spine, prev/hash links,
    tombstone and checkpoint Ed25519 signatures, and the chain from the
    oldest exported record to the signed checkpoint. Raises AssertionError."""
    import json
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    d = Path(d)
    m = json.loads((d / "manifest.json").read_text())
    assert m["version"] == "rampart-archive-export/1", m["version"]
    if public_key_hex is not None:
        assert m["public_key"] == public_key_hex, (m["public_key"], public_key_hex)
    pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(m["public_key"]))

    def signed(sig_hex: str, msg: bytes) -> bool:
        try:
            pk.verify(bytes.fromhex(sig_hex), msg)
            return True
        except InvalidSignature:
            return False

    cp = m["checkpoint"]
    cp_hash = bytes.fromhex(cp["hash"])
    assert signed(cp["signature"], b"rampart-archive/checkpoint/v1" + _u64(cp["seq"])
                  + cp_hash + _i64(cp["at_ms"])), f"checkpoint signature invalid: {cp}"
    names = set()
    for name, digest in m["files"]:
        assert ".." not in name and not name.startswith("/"), name
        got = hashlib.sha256((d / name).read_bytes()).hexdigest()
        assert got == digest, f"{name}: sha256 {got} != manifest {digest}"
        names.add(name)
    assert "records.jsonl" in names, m["files"]
    records = [json.loads(line) for line in (d / "records.jsonl").read_text().splitlines()
               if line.strip()]
    assert [r["seq"] for r in records] == [x["seq"] for x in m["records"]], \
        "records.jsonl and the manifest list different records"
    for r, mr in zip(records, m["records"]):
        assert (r["hash"], r["prev_hash"]) == (mr["hash"], mr["prev_hash"]), (r["seq"], mr)
    assert [r["seq"] for r in records] == sorted({r["seq"] for r in records}), \
        "records must be oldest first, each once"
    summary = {"records": len(records), "checkpoint_seq": cp["seq"],
               "spine": len(m["spine"]), "tombstones": len(m["tombstones"])}
    if not records:
        return summary
    spine = {seq: bytes.fromhex(dg) for seq, dg in m["spine"]}
    assert len(spine) == len(m["spine"]), "duplicate spine entries"
    tombs = {t["first_seq"]: t for t in m["tombstones"]}
    by_seq = {r["seq"]: r for r in records}
    running = bytes.fromhex(records[0]["prev_hash"])
    if records[0]["seq"] == 1:
        assert running == bytes(32), "record 1 must link to the genesis hash"
    seq, used = records[0]["seq"], 0
    while seq <= cp["seq"]:
        if seq in tombs:
            t = tombs[seq]
            msg = (b"rampart-archive/tombstone/v1" + _u64(t["first_seq"]) + _u64(t["last_seq"])
                   + bytes.fromhex(t["prev_hash"]) + bytes.fromhex(t["last_hash"])
                   + _i64(t["min_at_ms"]) + _i64(t["max_at_ms"]) + _i64(t["deleted_at_ms"]))
            assert signed(t["signature"], msg), f"tombstone signature invalid: {t}"
            assert bytes.fromhex(t["prev_hash"]) == running, f"tombstone does not link: {t}"
            assert not any(t["first_seq"] <= s <= t["last_seq"] for s in by_seq), t
            running = bytes.fromhex(t["last_hash"])
            seq = t["last_seq"] + 1
            continue
        assert seq in spine, f"the spine has no digest for seq {seq}"
        digest = spine[seq]
        used += 1
        r = by_seq.get(seq)
        if r is not None:
            assert archive_record_digest(r) == digest, \
                f"record {seq}: content does not match its spine digest"
            assert bytes.fromhex(r["prev_hash"]) == running, f"record {seq}: prev_hash"
        running = archive_chain_hash(seq, running, digest)
        if r is not None:
            assert bytes.fromhex(r["hash"]) == running, f"record {seq}: hash"
        seq += 1
    assert running == cp_hash, "the chain does not end in the signed checkpoint's hash"
    assert used == len(spine), "the spine has entries outside the checked range"
    assert max(by_seq) <= cp["seq"], "the checkpoint does not cover every exported record"
    return summary


async def deliver_messages(server: RampartServer, sender: User, recipient: User,
                           bodies: list[str], timeout: float = 30) -> list:
    """Log both users in (the recipient available), send `bodies` as chat
    messages to the recipient's bare JID, wait until all arrived, log out.
    Returns the received stanzas in order."""
    a = make_client(server, sender, "send")
    b = make_client(server, recipient, "recv")
    try:
        await a.login()
        await b.login()
        await b.go_online()
        for body in bodies:
            a.send_msg(recipient.jid, body)
        want = set(bodies)
        got = await b.messages.collect(len(bodies), lambda m: m["body"] in want,
                                       timeout=timeout, what="messages")
        await a.logout()
        await b.logout()
        return got
    finally:
        a.kill()
        b.kill()


# --------------------------------------------------------------------------
# Threat defense (`[guard]`, `rampart quarantine ...`, `rampart events ...`)
# --------------------------------------------------------------------------
def send_msg_id(client: "Client", to: str, body: str, mtype: str = "chat") -> str:
    """Send a message with a fresh id (to match the error bounced for it)."""
    msg = client.make_message(mto=to, mbody=body, mtype=mtype)
    mid = "m-" + secrets.token_hex(6)
    msg["id"] = mid
    msg.send()
    return mid


def stanza_error_text(stanza) -> str:
    """The <text/> of a stanza error ('' if none)."""
    err = stanza.xml.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        return ""
    t = err.find(f"{{{NS_STANZA_ERR}}}text")
    return (t.text or "") if t is not None else ""


def events_list(server: RampartServer, *args: str, timeout: float = 60) -> list[dict]:
    """`rampart events list --json ARGS...` -> events, newest first."""
    import json
    r = server.cli("events", "list", "--json", *args, timeout=timeout)
    assert r.returncode == 0, (
        f"`rampart events list --json {' '.join(args)}` exited {r.returncode}\n"
        f"stdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def quarantine_list(server: RampartServer, timeout: float = 60) -> dict[str, list[str]]:
    """`rampart quarantine list` -> {account: [time, rule, reason]}."""
    r = server.cli("quarantine", "list", timeout=timeout)
    assert r.returncode == 0, (
        f"`rampart quarantine list` exited {r.returncode}\nstdout: {r.stdout[-2000:]}\n"
        f"stderr: {r.stderr[-2000:]}")
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 4:
            out[parts[0]] = parts[1:]
    return out


# --------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------
async def assert_server_serves(server: RampartServer, user: User | None = None) -> None:
    """A normal client can still log in and get a message routed to itself."""
    server.assert_alive()
    user = user or server.add_user("check")
    c = make_client(server, user, "check")
    await c.login()
    try:
        await c.go_online()
        token = secrets.token_hex(8)
        c.send_msg(c.boundjid.full, f"still-alive {token}")
        await c.wait_message(lambda m: m["body"] == f"still-alive {token}", timeout=10,
                             what="a message to our own full JID")
    finally:
        await c.logout()
    server.assert_alive()


def raise_nofile_limit() -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def nofile_limit() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
