"""The administrator's group chat policy (`[muc]` in the configuration,
docs/config.md): who may create rooms and how many each may own.

This module runs its own server with

    [muc]
    create = "admins"
    admins = ["boss@localhost"]
    max_rooms_per_user = 1
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rampart_harness import RampartServer, User
from test_muc import create, join, join_error, new_room, online

POLICY = '[muc]\ncreate = "admins"\nadmins = ["boss@localhost"]\nmax_rooms_per_user = 1\n'


@pytest.fixture(scope="module")
def server():
    srv = RampartServer(Path(__file__).resolve().parent / ".work" / "test_muc_policy",
                        extra_toml=POLICY)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def boss(server) -> User:
    pw = "pw-" + secrets.token_urlsafe(12)
    r = server.cli("user", "add", "boss@localhost", "--password", pw)
    assert r.returncode == 0, r.stderr
    return User("boss", pw)


async def test_only_admins_create_rooms_and_within_quota(clients, new_user, boss):
    b = await online(clients, boss)
    room = new_room("official")
    await create(b, room, "boss")
    # One room each: the second is refused.
    assert await join_error(b, new_room("another"), "boss") == ("resource-constraint", "wait")
    # Others may not create rooms, but may use the existing one.
    a = await online(clients, new_user("alice"))
    assert await join_error(a, new_room("mine"), "alice") == ("not-allowed", "cancel")
    await join(a, room, "alice")


def test_bad_policy_is_refused_by_config_check(tmp_path):
    bad = tmp_path / "rampart.toml"
    bad.write_text(f'domain = "localhost"\ndata_dir = "{tmp_path}/data"\n[muc]\ncreate = "everyone"\n')
    srv = RampartServer.__new__(RampartServer)
    r = RampartServer.cli(srv, "config", "check", config=bad)
    assert r.returncode != 0 and "muc.create" in (r.stderr + r.stdout), r
