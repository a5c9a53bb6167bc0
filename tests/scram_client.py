"""SCRAM-SHA-256 (RFC 7677) client side, without channel binding, for tests that speak SASL
by hand over a transport slixmpp does not have (WebSocket, BOSH).

    scram = ScramClient(user.localpart, user.password)
    send(auth(scram.first()))          # base64 initial response
    send(response(scram.final(challenge_b64)))
    scram.check_success(success_b64)   # the server proved it knows the password too
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os


class ScramClient:
    def __init__(self, username: str, password: str):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={username},r={self.nonce}"
        self.salted = b""
        self.auth_msg = b""

    def first(self) -> str:
        """The client-first message, base64 (for ``<auth/>``)."""
        return base64.b64encode(("n,," + self.first_bare).encode()).decode()

    def final(self, challenge_b64: str) -> str:
        """The client-final message with its proof, base64 (for ``<response/>``)."""
        server_first = base64.b64decode(challenge_b64).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce), "server nonce must extend ours"
        self.salted = hashlib.pbkdf2_hmac(
            "sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(self.salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(client_key).digest()
        final_wo_proof = f"c={base64.b64encode(b'n,,').decode()},r={attrs['r']}"
        self.auth_msg = f"{self.first_bare},{server_first},{final_wo_proof}".encode()
        sig = hmac.new(stored, self.auth_msg, hashlib.sha256).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
        return base64.b64encode(f"{final_wo_proof},p={proof}".encode()).decode()

    def check_success(self, success_b64: str) -> None:
        """Assert the server signature in ``<success/>``."""
        server_key = hmac.new(self.salted, b"Server Key", hashlib.sha256).digest()
        expect_v = base64.b64encode(hmac.new(server_key, self.auth_msg, hashlib.sha256).digest()).decode()
        assert base64.b64decode(success_b64).decode() == f"v={expect_v}", "server signature"
