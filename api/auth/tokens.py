"""JWTs: HS256 only, access and refresh tokens signed with different secrets.

A refresh token can never authenticate a request twice over: it is signed with the refresh
secret (the access check fails on the signature) and says `type: refresh` (checked too).

Both tokens name their session, the refresh-token family: `fam` in a refresh token, `sid` in an
access token, so revoking a session reaches its access tokens too: every request looks its session
up (api/auth/service.authenticate), and open sockets watch the deny-list (api/sessions/denylist.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from api.errors import Unauthorized
from infrastructure.settings import Settings

ALGORITHM = "HS256"
ROLES = frozenset({"worker", "client", "admin"})
_REQUIRED = ["sub", "role", "type", "iat", "exp", "jti"]

TokenType = Literal["access", "refresh"]


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    jti: uuid.UUID
    # The refresh-token family the token was issued in.
    session_id: uuid.UUID
    # Unix seconds.
    expires_at: int


@dataclass(frozen=True)
class RefreshClaims:
    user_id: uuid.UUID
    role: str
    jti: uuid.UUID
    family_id: uuid.UUID


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def issue_access_token(
    *, user_id: uuid.UUID, role: str, session_id: uuid.UUID, settings: Settings
) -> str:
    """A short-lived token that authenticates requests on behalf of session `session_id`."""
    return _encode(
        {
            "sub": str(user_id),
            "role": role,
            "type": "access",
            "jti": str(uuid.uuid4()),
            "sid": str(session_id),
        },
        secret=settings.jwt_access_secret.get_secret_value(),
        ttl=settings.access_token_ttl_seconds,
    )


def issue_refresh_token(
    *, user_id: uuid.UUID, role: str, family_id: uuid.UUID, jti: uuid.UUID, settings: Settings
) -> str:
    """A long-lived token that only buys a new pair at /auth/refresh, once."""
    return _encode(
        {
            "sub": str(user_id),
            "role": role,
            "type": "refresh",
            "jti": str(jti),
            "fam": str(family_id),
        },
        secret=settings.jwt_refresh_secret.get_secret_value(),
        ttl=settings.refresh_token_ttl_seconds,
    )


def issue_pair(
    *, user_id: uuid.UUID, role: str, family_id: uuid.UUID, jti: uuid.UUID, settings: Settings
) -> TokenPair:
    """An access token and the refresh token whose `jti` is the family's current one."""
    return TokenPair(
        access_token=issue_access_token(
            user_id=user_id, role=role, session_id=family_id, settings=settings
        ),
        refresh_token=issue_refresh_token(
            user_id=user_id, role=role, family_id=family_id, jti=jti, settings=settings
        ),
        expires_in=settings.access_token_ttl_seconds,
    )


# Access tokens verified before, by their exact text (signature included), with the secret they
# were verified under and their expiry. A client sends one token with every request of its 15
# minutes, and verifying it anew (PyJWT checks each character of each segment in Python) costs
# more than the rest of authentication. A hit is only ever a token this process verified; it is
# refused once expired like any other. Oldest first out when full.
_VERIFIED: dict[str, tuple[str, int, AccessClaims]] = {}
_VERIFIED_MAX = 20_000


def decode_access_token(token: str, *, settings: Settings) -> AccessClaims:
    """The claims of a valid access token; anything else is Unauthorized."""
    secret = settings.jwt_access_secret.get_secret_value()
    known = _VERIFIED.get(token)
    if known is not None:
        known_secret, expires, known_claims = known
        if known_secret == secret and time.time() < expires:
            return known_claims
        del _VERIFIED[token]  # expired (decoded below, to say so) or another secret's
    claims = _decode(token, secret=secret, kind="access")
    access = AccessClaims(
        user_id=_uuid(claims, "sub"),
        role=_role(claims),
        jti=_uuid(claims, "jti"),
        # Required, yet checked only here, so an expired token is still reported as expired:
        # a token without `sid` could not be revoked before it expires, so none is accepted.
        session_id=_uuid(claims, "sid"),
        expires_at=int(claims["exp"]),
    )
    if len(_VERIFIED) >= _VERIFIED_MAX:
        del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[token] = (secret, access.expires_at, access)
    return access


def decode_refresh_token(token: str, *, settings: Settings) -> RefreshClaims:
    """The claims of a valid refresh token; anything else is Unauthorized."""
    claims = _decode(token, secret=settings.jwt_refresh_secret.get_secret_value(), kind="refresh")
    return RefreshClaims(
        user_id=_uuid(claims, "sub"),
        role=_role(claims),
        jti=_uuid(claims, "jti"),
        family_id=_uuid(claims, "fam"),
    )


def _encode(claims: dict[str, Any], *, secret: str, ttl: int) -> str:
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + ttl}, secret, algorithm=ALGORITHM)


def _decode(token: str, *, secret: str, kind: TokenType) -> dict[str, Any]:
    try:
        # The algorithm list is pinned: a token's own header never chooses how it is checked,
        # which rules out alg=none and HS/RS confusion.
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": _REQUIRED}
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized(f"{kind} token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid {kind} token") from exc
    if claims.get("type") != kind:
        raise Unauthorized(f"invalid {kind} token")
    return claims


def _uuid(claims: dict[str, Any], name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(claims[name]))
    except (KeyError, ValueError) as exc:
        raise Unauthorized("invalid token") from exc


def _role(claims: dict[str, Any]) -> str:
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthorized("invalid token")
    return str(role)
