"""File uploads scanned by ClamAV when it is configured: a real ``clamd`` with
the offline test signatures (``tests/data/guard/clamav``, see
``test_guard_clamav.py``), the server with ``[guard.clamav]`` and an HTTPS
upload listener, slixmpp's ``xep_0363`` as the client.

* a file matching a ClamAV-only signature (one the built-in YARA rules do not
  know) is refused with the signature's name;
* the same content *compressed inside a ZIP* is found too (clamd unpacks);
* fail closed: with clamd down an upload is refused with 503 and its GET URL
  never works; once clamd is back uploads are accepted again.

Skipped, with the reason printed, only when ``clamd`` is not installed.
"""

from __future__ import annotations

import asyncio
import io
import ssl
import zipfile

import aiohttp
import pytest
import slixmpp.plugins.xep_0363.http_upload as http_upload

from rampart_harness import HOST, RampartServer
from conftest import WORK_ROOT
from test_guard_clamav import CLAM_SIG, CLAMD, EICAR_LIKE, Clamd

UPLOAD_JID = "upload.localhost"


@pytest.fixture(scope="module")
def clamd():
    if CLAMD is None:
        reason = "clamd is not installed (apt-get install clamav clamav-daemon); skipping"
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    d = Clamd(WORK_ROOT / "test_upload_clamav.clamd")
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def server(clamd):
    srv = RampartServer(WORK_ROOT / "test_upload_clamav", http=True,
                        guard={"clamav": {"address": f"tcp:{HOST}:{clamd.port}"}})
    srv.extra_toml = f'[upload]\npublic_url = "https://localhost:{srv.http_port}"'
    srv.write_config()
    srv.start()
    yield srv
    srv.stop()


def ctx(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert_path))


@pytest.fixture(autouse=True)
def trust_server_cert(server, monkeypatch):
    real = aiohttp.ClientSession
    c = ctx(server)
    monkeypatch.setattr(http_upload, "ClientSession",
                        lambda **kw: real(connector=aiohttp.TCPConnector(ssl=c), **kw))


async def uploader(clients, user):
    c = clients.new(user, "files")
    c.register_plugin("xep_0363")
    await c.login()
    return c


async def upload(client, name: str, data: bytes, ctype: str) -> str:
    return await client["xep_0363"].upload_file(
        name, size=len(data), content_type=ctype, input_file=io.BytesIO(data), timeout=60)


async def get(server, url: str) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx(server))) as s:
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
            await r.read()
            return r.status


async def test_clamav_only_signature_is_refused(server, new_user, clients):
    c = await uploader(clients, new_user("drill"))
    with pytest.raises(http_upload.HTTPError) as e:
        await upload(c, "drill.txt", EICAR_LIKE.encode(), "text/plain")
    assert e.value.args[0] == 403
    assert CLAM_SIG in e.value.args[1], e.value.args[1]


async def test_signature_inside_a_zip_is_found(server, new_user, clients):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", "quarterly figures attached\n" * 20)
        z.writestr("drill.txt", EICAR_LIKE * 3)
    data = buf.getvalue()
    assert EICAR_LIKE.encode() not in data  # compressed: only an unpacking scanner sees it
    c = await uploader(clients, new_user("zipper"))
    with pytest.raises(http_upload.HTTPError) as e:
        await upload(c, "figures.zip", data, "application/zip")
    assert e.value.args[0] == 403
    assert CLAM_SIG in e.value.args[1], e.value.args[1]


async def test_clamd_down_fails_closed(server, clamd, new_user, clients):
    c = await uploader(clients, new_user("closed"))
    clamd.stop()
    try:
        iq = await c["xep_0363"].request_slot(UPLOAD_JID, "plain.txt", 11, "text/plain", timeout=30)
        put, url = iq["http_upload_slot"]["put"]["url"], iq["http_upload_slot"]["get"]["url"]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx(server))) as s:
            async with s.put(put, data=b"hello world", headers={"Content-Type": "text/plain"},
                             timeout=aiohttp.ClientTimeout(total=60)) as r:
                status, body = r.status, await r.text()
        assert status == 503 and "could not be scanned" in body, (status, body)
        assert await get(server, url) == 404
    finally:
        clamd.start()
    # Back to normal: the same kind of upload is accepted (the guard reconnects).
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            url = await upload(c, "plain.txt", b"hello world", "text/plain")
            break
        except http_upload.HTTPError as e:
            assert e.args[0] == 503, e.args
            assert asyncio.get_running_loop().time() < deadline, "uploads still refused after clamd came back"
            await asyncio.sleep(1)
    assert await get(server, url) == 200
