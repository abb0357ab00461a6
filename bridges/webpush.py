"""Web Push to browsers: RFC 8030 delivery, RFC 8291 payload encryption (aes128gcm), VAPID
(RFC 8292) signatures with the keys from settings.

pywebpush encrypts and posts; its aiohttp path (`WebPusher.send_async`) keeps the event loop
free without a thread. Failures come out as three kinds, so a caller knows what to do next:
- `SubscriptionGone` (404, 410): the browser unsubscribed or the subscription expired; delete it.
- `PushUnavailable` (429, 5xx, connection refused, timeout): sending again later may work.
- `PushRejected` (any other answer, or a payload too large): sending again will not help.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import json
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import http_ece
import pywebpush
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import Counter
from py_vapid import Vapid02

from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from tables import push_subscriptions as store
from tables.push_subscriptions import StoredSubscription

log = logging.getLogger(__name__)

# Push services must accept 4096-byte bodies (RFC 8030 §7.2); aes128gcm spends 86 bytes on its
# header (salt 16, record size 4, key id length 1, key id 65), 16 on the tag and 1 on the padding
# delimiter (RFC 8291 §4), which leaves this much for the JSON.
MAX_PAYLOAD_BYTES = 4096 - 86 - 16 - 1
# How long a push service keeps a message for a device that is offline. A day: a notification
# about a bid or a payment is stale after that, and the in-app list still has it.
DEFAULT_TTL_S = 24 * 3600
# Push services answer in well under a second; 10 s of silence means it is not healthy, and the
# agent's retry loop takes over.
PUSH_TIMEOUT_S = 10.0
# A VAPID token may live 24 h at most (RFC 8292 §2); one is signed per push service origin for
# 12 h and renewed an hour before it runs out.
VAPID_TOKEN_TTL_S = 12 * 3600
VAPID_RENEW_BEFORE_S = 3600
# RFC 8030 §5.4: a Topic is at most 32 characters of the base64url alphabet.
MAX_TOPIC_CHARS = 32
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

PUSHES = Counter("tulifo_web_push_total", "Web pushes by outcome", ["outcome"])


class PushError(Exception):
    """A push that was not delivered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SubscriptionGone(PushError):
    """The push service no longer knows the subscription (404/410): it will never work again."""


class PushUnavailable(PushError):
    """Not delivered this time (429, 5xx, network); sending it again later may work."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        # As the push service sent it (seconds or an HTTP date), for a caller that paces retries.
        self.retry_after = retry_after


class PushRejected(PushError):
    """The push service refused this message for good (a 4xx other than 404/410/429, or a
    payload over `MAX_PAYLOAD_BYTES`); sending it again will not help."""


class Urgency(enum.StrEnum):
    """How eagerly a push service wakes a device on battery for the message (RFC 8030 §5.3)."""

    VERY_LOW = "very-low"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@dataclass(frozen=True)
class PushSubscription:
    """What a browser's `PushSubscription.toJSON()` holds: where to post, and the keys the
    payload is encrypted for (base64url, as the browser gives them)."""

    endpoint: str
    p256dh: str
    auth: str

    @classmethod
    def of(cls, stored: StoredSubscription) -> PushSubscription:
        return cls(endpoint=stored.endpoint, p256dh=stored.p256dh, auth=stored.auth)

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


# --- keys


def b64url_decode(text: str) -> bytes:
    """base64url with or without padding; anything outside that alphabet is refused."""
    stripped = text.rstrip("=")
    if not stripped or not set(stripped) <= _BASE64URL:
        raise ValueError("must be base64url")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_key_text(key: ec.EllipticCurvePublicKey) -> str:
    """The uncompressed point in base64url: what a browser's `applicationServerKey` takes."""
    return b64url_encode(
        key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def parse_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM, base64url DER, or base64url of the raw 32-byte scalar."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key: Any = serialization.load_pem_private_key(text.encode(), password=None)
    else:
        raw = b64url_decode(text.replace("\n", ""))
        if len(raw) == 32:
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
        else:
            key = serialization.load_der_private_key(raw, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not a P-256 (prime256v1) private key")
    return key


@dataclass(frozen=True)
class VapidKeys:
    private_key: ec.EllipticCurvePrivateKey
    public_key: str
    subject: str

    @classmethod
    def from_settings(cls, settings: Settings) -> VapidKeys:
        """The configured key pair; ValueError naming the setting at fault."""
        private_key = parse_private_key_setting(settings.vapid_private_key.get_secret_value())
        public_key = _checked_public_key(private_key, settings.vapid_public_key)
        return cls(private_key=private_key, public_key=public_key, subject=settings.vapid_subject)


def parse_private_key_setting(text: str) -> ec.EllipticCurvePrivateKey:
    try:
        return parse_private_key(text)
    except ValueError as exc:
        raise ValueError(
            f"TULIFO_VAPID_PRIVATE_KEY: {exc} (PEM, or base64url of the raw 32-byte key)"
        ) from None


def _checked_public_key(private_key: ec.EllipticCurvePrivateKey, configured: str | None) -> str:
    derived = public_key_text(private_key.public_key())
    if configured is not None and configured.rstrip("=") != derived:
        raise ValueError(
            "TULIFO_VAPID_PUBLIC_KEY does not belong to TULIFO_VAPID_PRIVATE_KEY "
            f"(whose public key is {derived})"
        )
    return derived


def vapid_public_key(settings: Settings) -> str:
    """The public key browsers subscribe with (derived from the private key, and checked)."""
    return _public_key(settings.vapid_private_key.get_secret_value(), settings.vapid_public_key)


@functools.lru_cache(maxsize=4)
def _public_key(private_key: str, configured: str | None) -> str:
    # Served by a public endpoint: the key is parsed once, not on every request.
    return _checked_public_key(parse_private_key_setting(private_key), configured)


# --- sending


class WebPusher:
    """Sends pushes over one aiohttp session (its own unless given one); close it when done,
    or use it as an async context manager."""

    def __init__(
        self,
        keys: VapidKeys,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = PUSH_TIMEOUT_S,
    ) -> None:
        self.keys = keys
        self._vapid = Vapid02(keys.private_key)
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tokens: dict[str, tuple[float, dict[str, str]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> WebPusher:
        return cls(VapidKeys.from_settings(settings), **kwargs)

    async def __aenter__(self) -> WebPusher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        subscription: PushSubscription,
        payload: dict[str, Any],
        *,
        ttl: int = DEFAULT_TTL_S,
        urgency: Urgency = Urgency.NORMAL,
        topic: str | None = None,
    ) -> None:
        """Encrypt `payload` (as JSON) for `subscription` and hand it to its push service.

        `topic` lets a newer message replace one the device has not fetched yet (RFC 8030 §5.4).
        Raises SubscriptionGone, PushUnavailable or PushRejected.
        """
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > MAX_PAYLOAD_BYTES:
            PUSHES.labels("rejected").inc()
            raise PushRejected(
                f"payload is {len(data)} bytes; a push carries at most {MAX_PAYLOAD_BYTES}"
            )
        if topic is not None and (len(topic) > MAX_TOPIC_CHARS or not set(topic) <= _BASE64URL):
            raise ValueError(f"topic must be at most {MAX_TOPIC_CHARS} base64url characters")
        headers = {**self._vapid_headers(subscription.endpoint), "Urgency": str(urgency)}
        if topic is not None:
            headers["Topic"] = topic
        try:
            pusher = pywebpush.WebPusher(subscription.info(), aiohttp_session=self._client())
            response = await pusher.send_async(
                data, headers, ttl=ttl, content_encoding="aes128gcm", timeout=self._timeout
            )
        except (pywebpush.WebPushException, http_ece.ECEException, ValueError) as exc:
            # Raised before any request, for keys that cannot be encrypted to (the API checks
            # them when they are stored, so only a document edited by hand gets here).
            PUSHES.labels("rejected").inc()
            raise PushRejected(f"cannot encrypt for this subscription: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            PUSHES.labels("unavailable").inc()
            raise PushUnavailable(f"push service unreachable: {exc!r}") from exc
        assert isinstance(response, aiohttp.ClientResponse)  # str only when curl=True
        _raise_for_status(response)
        PUSHES.labels("delivered").inc()

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the loop it was made on.
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _vapid_headers(self, endpoint: str) -> dict[str, str]:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and cached[0] - VAPID_RENEW_BEFORE_S > now:
            return cached[1]
        expires = int(now) + VAPID_TOKEN_TTL_S
        claims = {"aud": audience, "exp": expires, "sub": self.keys.subject}
        headers: dict[str, str] = self._vapid.sign(claims)
        self._tokens[audience] = (expires, headers)
        return headers


def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    where = f"{response.method} {response.url.host}: {status} {response.reason or ''}".strip()
    if status in (404, 410):
        PUSHES.labels("gone").inc()
        raise SubscriptionGone(f"subscription gone ({where})", status=status)
    if status == 429 or status >= 500:
        PUSHES.labels("unavailable").inc()
        raise PushUnavailable(
            f"push service busy ({where})",
            status=status,
            retry_after=response.headers.get("Retry-After"),
        )
    PUSHES.labels("rejected").inc()
    raise PushRejected(f"push refused ({where})", status=status)


async def push_to_user(
    db: MongoDatabase,
    pusher: WebPusher,
    user_id: str,
    payload: dict[str, Any],
    *,
    ttl: int = DEFAULT_TTL_S,
    urgency: Urgency = Urgency.NORMAL,
    topic: str | None = None,
    delivery_id: str | None = None,
) -> int:
    """Push `payload` to every subscription of `user_id`; answers how many have it.

    A subscription answered 404/410 is deleted. One refused for good (PushRejected) is logged
    and skipped: the user's other devices still get theirs. When some push service was
    unavailable, PushUnavailable is raised after every subscription was tried. With a
    `delivery_id` (e.g. "<event_id>:<kind>"), each subscription remembers it got that push, and
    a retry sends only to the ones that did not. Without one, a retry resends to all: a `tag`
    in the payload then lets the browser's `showNotification` replace the copy it shows.
    """
    delivered = 0
    unavailable: PushUnavailable | None = None
    for stored in await store.list_for_user(db, user_id=user_id):
        if delivery_id is not None and delivery_id in stored.deliveries:
            delivered += 1
            continue
        try:
            await pusher.send(
                PushSubscription.of(stored), payload, ttl=ttl, urgency=urgency, topic=topic
            )
        except SubscriptionGone:
            await store.remove_gone(db, stored)
            log.info("push subscription gone, removed", extra={"user_id": user_id})
        except PushUnavailable as exc:
            unavailable = exc
        except PushRejected as exc:
            log.warning("push refused: %s", exc, extra={"user_id": user_id})
        else:
            delivered += 1
            if delivery_id is not None:
                await store.record_delivery(db, stored, delivery_id)
    if unavailable is not None:
        raise PushUnavailable(
            f"{delivered} delivered, some push services unavailable: {unavailable}",
            status=unavailable.status,
            retry_after=unavailable.retry_after,
        )
    return delivered
