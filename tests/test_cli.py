"""The `rampart` command line: user management and config checking.

Covers: `user add` / `user list` / `user remove` / `user passwd` (with
--password and --password-stdin), their error exits (user exists, no such
user, invalid JID) with a message on stderr, that they take effect while
the server runs (a new password works at once, a removed user cannot log
in), and `config check` for a valid config and for invalid ones (unknown
key named as `listen.foo`, a bad listen address, a missing cert file).
"""

import secrets

import pytest

from rampart_harness import DOMAIN, LoginFailed, User


# Some tests here fail logins on purpose; keep the per-IP throttle out of the way.
RAMPART_LIMITS = {"auth_failures": 10000}


def fresh_jid(prefix="cli"):
    return f"{prefix}{secrets.token_hex(4)}@{DOMAIN}"


def listed(server) -> list[str]:
    r = server.cli("user", "list")
    assert r.returncode == 0, r.stderr
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


# -------------------------------------------------------------- user admin
def test_user_add_and_list(server):
    jid = fresh_jid()
    r = server.cli("user", "add", jid, "--password", "s3cret-pass")
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert jid in listed(server)


def test_user_list_is_one_jid_per_line(server):
    jids = [fresh_jid("line") for _ in range(3)]
    for j in jids:
        assert server.cli("user", "add", j, "--password", "pw-1234").returncode == 0
    lines = listed(server)
    for j in jids:
        assert lines.count(j) == 1, f"{j} appears {lines.count(j)} times in {lines}"
    for line in lines:
        assert "@" in line and " " not in line, f"not a bare JID: {line!r}"


def test_user_add_existing_fails(server):
    jid = fresh_jid()
    assert server.cli("user", "add", jid, "--password", "first-pw").returncode == 0
    r = server.cli("user", "add", jid, "--password", "second-pw")
    assert r.returncode != 0, "adding an existing user succeeded"
    assert r.stderr.strip(), "no error message on stderr"


@pytest.mark.parametrize("bad", ["@localhost", "a b@localhost", "x<y>@localhost", ""])
def test_user_add_invalid_jid_fails(server, bad):
    r = server.cli("user", "add", bad, "--password", "pw-1234")
    assert r.returncode != 0, f"`user add {bad!r}` succeeded"
    assert r.stderr.strip(), "no error message on stderr"
    assert bad == "" or bad not in listed(server)


def test_user_remove(server):
    jid = fresh_jid()
    assert server.cli("user", "add", jid, "--password", "pw-1234").returncode == 0
    r = server.cli("user", "remove", jid)
    assert r.returncode == 0, r.stderr
    assert jid not in listed(server)


def test_user_remove_unknown_fails(server):
    r = server.cli("user", "remove", fresh_jid("nobody"))
    assert r.returncode != 0
    assert r.stderr.strip(), "no error message on stderr"


def test_user_passwd_unknown_fails(server):
    r = server.cli("user", "passwd", fresh_jid("nobody"), "--password", "pw-1234")
    assert r.returncode != 0
    assert r.stderr.strip()


# ------------------------------------------- effects on the running server
async def test_password_stdin_and_login(server, clients):
    u = User(f"stdin{secrets.token_hex(4)}", "from-stdin-" + secrets.token_hex(4))
    r = server.cli("user", "add", u.jid, "--password-stdin", input=u.password + "\n")
    assert r.returncode == 0, r.stderr
    c = await clients(u, "r")
    assert c.boundjid.bare == u.jid


async def test_passwd_takes_effect_while_running(server, clients):
    u = User(f"pw{secrets.token_hex(4)}", "old-password-1")
    assert server.cli("user", "add", u.jid, "--password", u.password).returncode == 0
    c = await clients(u, "before")
    await c.ping_server()

    r = server.cli("user", "passwd", u.jid, "--password", "new-password-2")
    assert r.returncode == 0, r.stderr
    new = User(u.localpart, "new-password-2")
    c2 = await clients(new, "after")
    await c2.ping_server()

    stale = clients.new(u, "stale", sasl_mech="SCRAM-SHA-256")
    with pytest.raises(LoginFailed):
        await stale.login()
    assert stale.auth_failures == ["not-authorized"]


async def test_passwd_stdin(server, clients):
    u = User(f"pws{secrets.token_hex(4)}", "old-password-1")
    assert server.cli("user", "add", u.jid, "--password", u.password).returncode == 0
    r = server.cli("user", "passwd", u.jid, "--password-stdin", input="via-stdin-pw\n")
    assert r.returncode == 0, r.stderr
    c = await clients(User(u.localpart, "via-stdin-pw"), "r")
    await c.ping_server()


async def test_removed_user_cannot_log_in(server, clients):
    u = User(f"rm{secrets.token_hex(4)}", "pw-" + secrets.token_hex(6))
    assert server.cli("user", "add", u.jid, "--password", u.password).returncode == 0
    c = await clients(u, "r")
    await c.logout()
    assert server.cli("user", "remove", u.jid).returncode == 0
    gone = clients.new(u, "again", sasl_mech="PLAIN")
    with pytest.raises(LoginFailed):
        await gone.login()
    assert gone.auth_failures == ["not-authorized"]


async def test_user_added_while_running_can_log_in(server, clients):
    u = User(f"live{secrets.token_hex(4)}", "pw-" + secrets.token_hex(6))
    assert server.cli("user", "add", u.jid, "--password", u.password).returncode == 0
    c = await clients(u, "r")
    await c.ping_server()


# ------------------------------------------------------------ config check
def write_cfg(tmp_path, server, extra_listen="", extra="", c2s=None):
    cfg = tmp_path / "check.toml"
    cfg.write_text(
        f'domain = "localhost"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f"{extra}\n"
        f"[listen]\n"
        f'c2s = "{c2s or "127.0.0.1:15222"}"\n'
        f'c2s_tls = "127.0.0.1:15223"\n'
        f"{extra_listen}\n")
    return cfg


def test_config_check_valid(server, tmp_path):
    r = server.cli("config", "check", config=write_cfg(tmp_path, server))
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert "ok" in (r.stdout + r.stderr).lower(), f"stdout: {r.stdout!r} stderr: {r.stderr!r}"


def test_config_check_of_running_servers_config(server):
    r = server.cli("config", "check")
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"


def test_config_check_unknown_key(server, tmp_path):
    r = server.cli("config", "check", config=write_cfg(tmp_path, server, extra_listen="foo = 1"))
    assert r.returncode != 0, "unknown key accepted"
    assert "listen.foo" in (r.stderr + r.stdout), f"message does not name listen.foo: {r.stderr!r}"


def test_config_check_unknown_top_level_key(server, tmp_path):
    r = server.cli("config", "check", config=write_cfg(tmp_path, server, extra="colour = 'blue'"))
    assert r.returncode != 0, "unknown key accepted"
    assert "colour" in (r.stderr + r.stdout), r.stderr


def test_config_check_bad_address(server, tmp_path):
    r = server.cli("config", "check",
                   config=write_cfg(tmp_path, server, c2s="not-an-address:99999"))
    assert r.returncode != 0, "bad listen address accepted"
    out = r.stderr + r.stdout
    assert "c2s" in out, f"message does not name the key: {out!r}"


def test_config_check_missing_file(server, tmp_path):
    r = server.cli("config", "check", config=tmp_path / "does-not-exist.toml")
    assert r.returncode != 0
    assert r.stderr.strip()


def test_config_check_bad_limit_type(server, tmp_path):
    r = server.cli("config", "check",
                   config=write_cfg(tmp_path, server, extra_listen="\n[limits]\nmax_stanza_bytes = 'lots'"))
    assert r.returncode != 0, "a string for max_stanza_bytes was accepted"
    assert "max_stanza_bytes" in (r.stderr + r.stdout), r.stderr


def test_config_check_missing_cert_file(server, tmp_path):
    missing = tmp_path / "no-such-cert.pem"
    key = tmp_path / "key.pem"
    key.write_text("not really a key\n")
    r = server.cli("config", "check", config=write_cfg(
        tmp_path, server, extra=f'\n[tls]\ncert = "{missing}"\nkey = "{key}"\n'))
    # NB: write_cfg puts `extra` before [listen]; a [tls] table there is fine
    assert r.returncode != 0, "a missing certificate file was accepted"
    out = r.stderr + r.stdout
    assert "tls.cert" in out and str(missing) in out, f"message: {out!r}"
