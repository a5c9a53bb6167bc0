"""Upload retention (``[upload] retention_days``) end to end: files uploaded
while the server ran three days in the past (under libfaketime, as in
``test_archive_retention.py``) are deleted by the retention task once the
server runs at the real time with ``retention_days = 1``: their links answer
404. A file whose uploader is under an active legal hold
(``rampart archive hold add --from``) is kept, and so is a fresh upload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import ssl

import aiohttp
import pytest
import slixmpp.plugins.xep_0363.http_upload as http_upload

from rampart_harness import RampartServer, make_client
from conftest import WORK_ROOT
from test_archive_retention import faketime_env


def ctx(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert_path))


async def get(server, url: str) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx(server))) as s:
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
            await r.read()
            return r.status


async def upload_as(server, user, name: str, data: bytes) -> str:
    real = aiohttp.ClientSession
    c = ctx(server)
    http_upload.ClientSession = lambda **kw: real(connector=aiohttp.TCPConnector(ssl=c), **kw)
    client = make_client(server, user, "files")
    client.register_plugin("xep_0363")
    await client.login()
    try:
        return await client["xep_0363"].upload_file(
            name, size=len(data), content_type="text/plain", input_file=io.BytesIO(data), timeout=60)
    finally:
        client.kill()


@pytest.fixture
def restore_client_session():
    real = http_upload.ClientSession
    yield
    http_upload.ClientSession = real


async def test_old_uploads_are_deleted_unless_held(restore_client_session):
    srv = RampartServer(WORK_ROOT / "test_upload_retention", http=True)
    srv.extra_toml = f'[upload]\npublic_url = "https://localhost:{srv.http_port}"\nretention_days = 1'
    srv.write_config()
    try:
        old_user, held_user = srv.add_user("old"), srv.add_user("held")
        three_days_ago = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=3)
        srv.start(env=faketime_env(three_days_ago))
        # The retention task runs at start too: nothing is old yet for that clock.
        old_url = await upload_as(srv, old_user, "old.txt", b"old minutes\n" * 10)
        held_url = await upload_as(srv, held_user, "held.txt", b"held minutes\n" * 10)
        assert await get(srv, old_url) == 200
        srv.stop()

        r = srv.cli("archive", "hold", "add", "--reason", "case 42", "--from", held_user.jid)
        assert r.returncode == 0, r.stderr
        srv.start()
        fresh_url = await upload_as(srv, old_user, "fresh.txt", b"fresh minutes\n" * 10)
        deadline = asyncio.get_running_loop().time() + 60
        while await get(srv, old_url) != 404:
            assert asyncio.get_running_loop().time() < deadline, "the 3-day-old upload was not deleted"
            await asyncio.sleep(1)
        assert await get(srv, held_url) == 200, "an upload under legal hold was deleted"
        assert await get(srv, fresh_url) == 200
        assert "upload retention applied" in srv.log_text()
    finally:
        srv.stop()
