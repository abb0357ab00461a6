"""A local stand-in for a browser vendor's push service, and the browser's side of a
subscription: what a test needs to receive a real Web Push message and read it."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

from bridges.webpush import PushSubscription, b64url_decode, b64url_encode, public_key_text


@dataclass
class Received:
    path: str
    # Case-insensitive, as HTTP header names are.
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class PushService:
    """Stands in for a browser vendor's push service (FCM, Mozilla autopush), the one boundary
    that cannot run here: it records every POST and answers with the status set per path."""

    received: list[Received] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, request.headers.copy(), body))
        status = self.answers.get(request.path, 201)
        headers = {"Retry-After": "30"} if status == 429 else {}
        return web.Response(status=status, headers=headers)

    def endpoint(self, name: str) -> str:
        return f"{self.url}/push/{name}"


@dataclass
class Browser:
    """A browser's side of a subscription: its own P-256 key pair and 16-byte auth secret."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def subscription(self) -> PushSubscription:
        return PushSubscription(
            endpoint=self.endpoint,
            p256dh=public_key_text(self.private_key.public_key()),
            auth=b64url_encode(self.auth),
        )

    def decrypt(self, body: bytes) -> Any:
        # RFC 8188 §2.1 header: salt(16) rs(4) idlen(1) keyid; RFC 8291 puts the sender's
        # ephemeral public key (65 bytes) in keyid.
        (rs,) = struct.unpack("!I", body[16:20])
        assert body[20] == 65 and rs >= 18
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), body[21:86])
        # No `dh=`: for aes128gcm http_ece takes the sender's key from that keyid itself (given
        # `dh` too, it tries to read the binary keyid as text).
        plain = http_ece.decrypt(
            body, version="aes128gcm", private_key=self.private_key, auth_secret=self.auth
        )
        return json.loads(plain)


@asynccontextmanager
async def running_push_service() -> AsyncIterator[PushService]:
    """A push service on a free loopback port, taking POSTs at /push/<name>."""
    service = PushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    service.url = str(server.make_url("")).rstrip("/")
    try:
        yield service
    finally:
        await server.close()


def vapid_claims(authorization: str, *, public_key: str, audience: str) -> dict[str, Any]:
    """The VAPID JWT's claims, verified against `public_key` (RFC 8292 §3: `vapid t=…,k=…`)."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(item.strip().split("=", 1) for item in params.split(","))
    assert parts["k"] == public_key
    verifying_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b64url_decode(parts["k"])
    )
    claims: dict[str, Any] = jwt.decode(
        parts["t"], key=verifying_key, algorithms=["ES256"], audience=audience
    )
    return claims
