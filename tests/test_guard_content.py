"""Threat defense, content findings: what a user sees when a message carries
malware or a lure link (issue "Threat defense"; rules in
crates/rampart-guard/src/{lib.rs,url.rs,blocklist.rs,config.rs}).

Covers, over real TLS with slixmpp clients:

* a malicious payload (the EICAR test string, caught by the built-in YARA
  rule ``EICAR_Test_File``) in a message body: the sender gets a message
  error ``policy-violation`` whose text names the signature; the recipient
  gets nothing;
* lure links, each refused with ``policy-violation`` and a text that says why
  (``lure.*`` rules, defaults of ``[guard.lure]``): executable extensions
  (``.scr`` on an IP literal, mixed-case ``Photo.JPG.exe`` double extension,
  trailing punctuation, percent-encoded ``%2E%65%78%65``), bare and obfuscated
  public IP literals, a URL shortener (bit.ly), lookalikes of the configured
  brand domain ``northwindbank.com`` (digit typo, transposition, punycode
  homoglyph, mixed-script punycode);
* lures hidden outside the body text: an XHTML-IM ``href``, an XEP-0066 OOB
  ``<url/>``, the ``<subject/>``;
* blocklists from ``[guard] blocklists = [...]``: a plain list
  (tests/data/guard/blocklist_plain.txt: host, ``*.`` wildcard, hosts-file and
  adblock forms, an exact URL) and a URLhaus CSV dump
  (tests/data/guard/urlhaus_sample.csv: exact URLs only, quoted fields);
* negative controls that must be delivered: the genuine brand domain, a
  private-network IP (``allow_private_ip_literals`` default true), a
  different URL on a host URLhaus lists only one URL of;
* blocklist reload on SIGHUP: a host appended to the list file is blocked
  after ``kill -HUP`` without a restart.

Every blocked case asserts that 0 copies reached the recipient: the sender
follows up with a benign sentinel; once the sentinel has arrived (messages
from one session are routed in order), nothing else may have.

Thresholds: none of the behavioural rules can fire here — each test uses a
fresh sender/recipient pair, so every key has one recipient (blast needs 5),
nobody sends anything on (epidemic needs a relay) and the recipient never
answers (auto_reply needs answers).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import time
from pathlib import Path

import pytest

from rampart_harness import (
    RampartServer, send_msg_id, stanza_error, stanza_error_text, events_list,
)

DATA = Path(__file__).resolve().parent / "data" / "guard"
WORK_ROOT = Path(__file__).resolve().parent / ".work"

# The brand whose lookalikes must be caught (replaces the built-in brand list).
BRAND = "northwindbank.com"

# Built from two parts so this source file is not itself flagged by scanners.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture(scope="module")
def server(request):
    """Server with brand_domains and two blocklists (a writable copy of the
    plain list, for the SIGHUP reload test, and the URLhaus CSV fixture)."""
    workdir = WORK_ROOT / re.sub(r"[^A-Za-z0-9_.-]", "_", request.module.__name__)
    plain = workdir / "blocklist.txt"
    srv = RampartServer(workdir, guard={
        "brand_domains": [BRAND],
        "blocklists": [str(plain), str(DATA / "urlhaus_sample.csv")],
    })
    shutil.copy(DATA / "blocklist_plain.txt", plain)
    srv.blocklist_path = plain
    try:
        srv.start()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv.stop()


async def pair(new_user, clients):
    a, b = new_user("snd"), new_user("rcv")
    ca = await clients(a, "pc")
    cb = await clients(b, "pc")
    await ca.go_online()
    await cb.go_online()
    return a, b, ca, cb


async def sentinel_then_nothing_else(ca, cb, b, what: str) -> None:
    """Send a benign sentinel after the tested messages; once it arrives, the
    recipient must have received nothing else."""
    token = f"sentinel {secrets.token_hex(4)}"
    ca.send_msg(b.jid, token)
    await cb.wait_message(lambda m: m["body"] == token, timeout=10,
                          what="the benign sentinel message")
    await asyncio.sleep(0.3)
    leaked = cb.messages.unconsumed(lambda m: m["type"] != "error" and m["body"])
    assert not leaked, (
        f"{what}: {len(leaked)} refused message(s) reached the recipient anyway: "
        + "; ".join(repr(m["body"][:120]) for m in leaked))


async def expect_refusal(ca, mid: str, timeout: float = 10):
    err = await ca.wait_message(lambda m: m["id"] == mid and m["type"] == "error",
                                timeout=timeout, what=f"the error bounced for message {mid}")
    return stanza_error(err), stanza_error_text(err)


async def assert_blocked(ca, cb, b, cases: list[tuple[str, str]]) -> None:
    """Send each (body, expected text fragment); each must come back as a
    policy-violation naming the reason; none may reach the recipient."""
    sent = [(send_msg_id(ca, b.jid, body), body, want) for body, want in cases]
    problems = []
    for mid, body, want in sent:
        try:
            (cond, _typ), text = await expect_refusal(ca, mid)
        except AssertionError:
            problems.append(f"{body!r}: no error came back (was it delivered?)")
            continue
        if cond != "policy-violation":
            problems.append(f"{body!r}: condition {cond!r}, expected policy-violation")
        if want.lower() not in text.lower():
            problems.append(f"{body!r}: error text {text!r} does not say {want!r}")
    await sentinel_then_nothing_else(ca, cb, b, "blocked messages")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# 1. malicious payload
# ---------------------------------------------------------------------------
async def test_eicar_in_body_is_refused_naming_the_signature(server, new_user, clients):
    a, b, ca, cb = await pair(new_user, clients)
    mid = send_msg_id(ca, b.jid, f"here is the test file: {EICAR}")
    (cond, typ), text = await expect_refusal(ca, mid)
    assert cond == "policy-violation", (cond, typ, text)
    assert "EICAR_Test_File" in text and "signature" in text, (
        f"error text does not name the signature: {text!r}")
    await sentinel_then_nothing_else(ca, cb, b, "EICAR message")
    ev = [e for e in events_list(server) if e["account"] == a.jid]
    assert any(e["rule"] == "signature" and e["action"] == "block"
               and "EICAR_Test_File" in (e["evidence"].get("signature") or "") for e in ev), ev


# ---------------------------------------------------------------------------
# 2. lure links
# ---------------------------------------------------------------------------
LURES = {
    "ip-literal-scr": ("look at my photos http://203.0.113.7/pics.scr",
                       "executable file (.scr)"),
    "ip-literal": ("new gallery: http://203.0.113.7/gallery/2024", "bare IP address"),
    "ip-obfuscated-hex": ("mirror http://0xCB007107/gallery", "obfuscated IP address"),
    "mixed-case-double-ext": ("wow HTTP://Example.COM/Photo.JPG.exe",
                              "double extension (.exe)"),
    "trailing-paren-dot": ("(grab it from https://downloads.example.net/setup.exe).",
                           "executable file (.exe)"),
    "trailing-bangs": ("quick!! https://downloads.example.net/tool.scr!!!",
                       "executable file (.scr)"),
    "quoted": ('the "installer" is "https://cdn.example.org/fix/vpn-fix.bat"',
               "executable file (.bat)"),
    "percent-encoded-ext": ("the report https://files.example.org/report%2E%65%78%65",
                            "executable file (.exe)"),
    "percent-encoded-upper": ("https://files.example.org/q3-summary%2e%45%58%45 pls",
                              "executable file (.exe)"),
    "archive-inner-exe": ("invoice https://files.example.org/invoice.pdf.exe.zip",
                          "(.exe)"),
    "shortener": ("see https://bit.ly/3xYz9Qa", "shortened link"),
    "shortener-subdomain-case": ("HTTPS://TinyURL.com/y7kq2m", "shortened link"),
    "lookalike-digit": ("log in at https://n0rthwindbank.com/secure", f"imitating {BRAND}"),
    "lookalike-transposed": ("https://northwindbnak.com/login", f"imitating {BRAND}"),
    "lookalike-punycode": ("verify: https://xn--nrthwindbank-4ib.com/account",
                           f"imitating {BRAND}"),
}


@pytest.mark.parametrize("case", list(LURES), ids=list(LURES))
async def test_lure_link_is_refused_with_reason(server, new_user, clients, case):
    body, want = LURES[case]
    a, b, ca, cb = await pair(new_user, clients)
    await assert_blocked(ca, cb, b, [(body, want)])


async def test_mixed_script_lookalike_reason_is_specific(server, new_user, clients):
    """A Cyrillic 'а' in the brand name: the reason says the domain deceives
    (mixed scripts) or names the imitated brand."""
    a, b, ca, cb = await pair(new_user, clients)
    mid = send_msg_id(ca, b.jid, "https://xn--northwindbnk-69j.com/x")
    (cond, _), text = await expect_refusal(ca, mid)
    assert cond == "policy-violation"
    assert "mixed scripts" in text or f"imitating {BRAND}" in text, text
    await sentinel_then_nothing_else(ca, cb, b, "mixed-script lookalike")


HIDDEN = {
    # XHTML-IM: an innocent body, the lure only in the link target.
    "xhtml-href": ("<html xmlns='http://jabber.org/protocol/xhtml-im'>"
                   "<body xmlns='http://www.w3.org/1999/xhtml'><p>my "
                   "<a href='http://203.0.113.7/pics.scr'>holiday photos</a></p></body></html>",
                   "executable file (.scr)"),
    # Out-of-band data (XEP-0066): the client shows it as a download.
    "oob-url": ("<x xmlns='jabber:x:oob'><url>https://cdn.example.org/photo.jpg.exe</url>"
                "<desc>my photo</desc></x>", "double extension (.exe)"),
    # The subject, not the body.
    "subject": ("<subject xmlns='jabber:client'>invoice https://bit.ly/3xYz9Qa</subject>",
                "shortened link"),
}


@pytest.mark.parametrize("case", list(HIDDEN), ids=list(HIDDEN))
async def test_lure_outside_the_body_is_refused(server, new_user, clients, case):
    """Worms hide the link where a user does not read it as text."""
    import xml.etree.ElementTree as ET
    payload, want = HIDDEN[case]
    a, b, ca, cb = await pair(new_user, clients)
    msg = ca.make_message(mto=b.jid, mbody="look at this :)", mtype="chat")
    msg["id"] = mid = "m-" + secrets.token_hex(6)
    msg.append(ET.fromstring(payload))
    msg.send()
    (cond, _typ), text = await expect_refusal(ca, mid)
    assert cond == "policy-violation", (cond, text)
    assert want in text, f"error text {text!r} does not say {want!r}"
    await sentinel_then_nothing_else(ca, cb, b, case)


BLOCKLISTED = {
    # plain list
    "plain-host": ("update here https://malware-cdn.example/payload", "(malware-cdn.example)"),
    "plain-host-subdomain": ("http://dl.malware-cdn.example/update.bin",
                             "(malware-cdn.example)"),
    "plain-wildcard": ("http://panel.worm-c2.example/gate", "(worm-c2.example)"),
    "plain-hosts-file": ("https://phish-login.example/o365", "(phish-login.example)"),
    "plain-adblock": ("https://ads-dropper.example/a", "(ads-dropper.example)"),
    "plain-exact-url": ("http://tracker.example/dropper/stage2", "(tracker.example/dropper/stage2)"),
    # URLhaus CSV (exact URLs)
    "urlhaus-url": ("http://drop.example/bin.sh", "(drop.example/bin.sh)"),
    "urlhaus-ip-port": ("http://198.51.100.23:4455/i", "(198.51.100.23:4455/i)"),
    "urlhaus-quoted-comma": ("http://quoted.example/a,b", "(quoted.example/a,b)"),
    "urlhaus-js": ("https://compromised-blog.example/wp-content/uploads/2026/invoice.js",
                   "known malicious site"),
}


@pytest.mark.parametrize("case", list(BLOCKLISTED), ids=list(BLOCKLISTED))
async def test_blocklisted_link_is_refused(server, new_user, clients, case):
    body, want = BLOCKLISTED[case]
    a, b, ca, cb = await pair(new_user, clients)
    if not want.startswith("known"):
        want = f"known malicious site {want}"
    await assert_blocked(ca, cb, b, [(body, want)])


async def test_benign_links_are_delivered(server, new_user, clients):
    """Negative controls: none of these is a lure or on a blocklist."""
    a, b, ca, cb = await pair(new_user, clients)
    bodies = [
        f"the real site: https://{BRAND}/login",
        f"and https://online.{BRAND}/statements",
        "intranet wiki http://10.1.2.3/wiki/Onboarding",
        # URLhaus lists one URL on drop.example, not the whole host.
        "docs at http://drop.example/readme",
        "nice article https://www.example.com/2024/05/rust-async.html.",
        "the spreadsheet https://files.example.org/q3-summary.xlsx",
    ]
    for body in bodies:
        ca.send_msg(b.jid, body)
    for body in bodies:
        await cb.wait_message(lambda m, body=body: m["body"] == body, timeout=10,
                              what=f"benign message {body!r}")
    errors = ca.messages.unconsumed(lambda m: m["type"] == "error")
    assert not errors, [stanza_error_text(e) for e in errors]


async def test_blocklist_reload_on_sighup(server, new_user, clients):
    a, b, ca, cb = await pair(new_user, clients)
    host = f"fresh-{secrets.token_hex(3)}.example"
    before = f"new tool: https://{host}/get"
    ca.send_msg(b.jid, before)
    await cb.wait_message(lambda m: m["body"] == before, timeout=10,
                          what="the link before it was blocklisted")

    log_mark = server.log_size()
    with open(server.blocklist_path, "a") as f:
        f.write(f"{host}\n")
    os.kill(server.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "blocklists reloaded" not in server.log_text(since=log_mark):
        assert time.monotonic() < deadline, (
            "no 'blocklists reloaded' in the server log within 10 s of SIGHUP:\n"
            + server.log_text(since=log_mark))
        await asyncio.sleep(0.1)
    assert server.alive(), "the server died on SIGHUP"

    await assert_blocked(ca, cb, b, [(f"again https://{host}/get",
                                      f"known malicious site ({host})"),
                                     (f"https://cdn.{host}/x", f"({host})")])
