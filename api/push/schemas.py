"""The browser's `PushSubscription.toJSON()`, checked before anything is stored: a key that is
not a P-256 point or an auth secret of the wrong size would only fail later, at every push."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, field_validator

from api.schemas import ApiModel, ResponseModel
from bridges.webpush import b64url_decode

# Push services' endpoints run to ~200 characters (FCM's are the longest); 2 KiB leaves room.
MAX_ENDPOINT_CHARS = 2048
# RFC 8291 §3: the user agent's key is an uncompressed P-256 point, its auth secret 16 bytes.
P256_POINT_BYTES = 65
AUTH_SECRET_BYTES = 16
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class PushKeysIn(ApiModel):
    p256dh: Annotated[str, Field(max_length=128, description="base64url, 65-byte P-256 point")]
    auth: Annotated[str, Field(max_length=64, description="base64url, 16-byte auth secret")]

    @field_validator("p256dh")
    @classmethod
    def _a_p256_point(cls, value: str) -> str:
        raw = b64url_decode(value)
        if len(raw) != P256_POINT_BYTES or raw[0] != 0x04:
            raise ValueError(f"must be an uncompressed P-256 point ({P256_POINT_BYTES} bytes)")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValueError("is not a point on the P-256 curve") from None
        return value.rstrip("=")

    @field_validator("auth")
    @classmethod
    def _a_16_byte_secret(cls, value: str) -> str:
        if len(b64url_decode(value)) != AUTH_SECRET_BYTES:
            raise ValueError(f"must be {AUTH_SECRET_BYTES} bytes")
        return value.rstrip("=")


class PushSubscriptionIn(ApiModel):
    """Exactly what `JSON.stringify(pushSubscription)` sends."""

    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_CHARS)]
    keys: PushKeysIn
    # Browsers send it (mostly null); a push service that expires a subscription answers 410
    # after that time, which removes it, so it is accepted and not kept.
    expiration_time: Annotated[int | None, Field(ge=0)] = None

    @field_validator("endpoint")
    @classmethod
    def _an_absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute https:// URL")
        if parts.username is not None or parts.fragment:
            raise ValueError("must not carry credentials or a fragment")
        return value


class UnsubscribeIn(ApiModel):
    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_CHARS)]


class PushSubscriptionOut(ResponseModel):
    endpoint: str


class VapidPublicKeyOut(ResponseModel):
    # Passed as `applicationServerKey` to `pushManager.subscribe()`.
    public_key: str


def endpoint_problem(endpoint: str, *, production: bool) -> str | None:
    """Why the API will not post to `endpoint`, or None.

    The worker POSTs to whatever endpoint is stored, so in production only public https hosts
    are taken (not loopback or private addresses: that would let anyone aim our worker at our
    own network). Outside production, http on loopback lets a local push service stand in.
    """
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if production:
        if parts.scheme != "https":
            return "must be an https:// URL"
        if host == "localhost" or host.endswith(".localhost") or _is_ip(host):
            return "must name a push service's host, not an address"
        return None
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "must be an https:// URL (http only for localhost)"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
