"""Registration, sign-in, token rotation with reuse detection, sign-out, and who is calling.

Each sign-in opens a session (a refresh-token family, api/sessions/): its access tokens stop
working the moment it is revoked, by sign-out, by its owner from the session list, or on reuse.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg
import redis.asyncio as aioredis

from api.auth import passwords, rate_limit, repository, tokens
from api.auth.schemas import (
    AuthenticatedUser,
    LoginRequest,
    MeOut,
    RegisterRequest,
    SessionOut,
    TokensOut,
    UserOut,
    split_name,
)
from api.errors import Conflict, ServiceUnavailable, Unauthorized
from api.sessions import service as sessions
from api.sessions.devices import Device
from api.users import service as users
from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from streams.events import new_event
from streams.users import UserRegistered

log = logging.getLogger(__name__)

# One message for unknown email and wrong password: the answer must not reveal which it was.
BAD_CREDENTIALS = "invalid email or password"


async def register(
    *,
    pool: asyncpg.Pool,
    mongo: MongoDatabase,
    settings: Settings,
    body: RegisterRequest,
    device: Device,
    client_ip: str,
) -> SessionOut:
    """Create a worker or client account with its profile, and sign it in."""
    password_hash = await passwords.hash_password(body.password, rounds=settings.bcrypt_rounds)
    user_id = uuid.uuid4()
    async with unit_of_work(pool) as conn:
        record = await create_account(
            conn,
            user_id=user_id,
            email=body.email,
            password_hash=password_hash,
            role=body.role,
            name=body.name,
            first_name=body.first_name,
            last_name=body.last_name,
        )
        family_id, jti = await _new_family(conn, user_id=user_id, settings=settings)
    return await _signed_in(
        record,
        family_id=family_id,
        jti=jti,
        mongo=mongo,
        settings=settings,
        device=device,
        client_ip=client_ip,
    )


async def _new_family(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, settings: Settings
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new refresh family (a session) for the user, in the caller's transaction: its id and
    its first token's jti."""
    family_id, jti = uuid.uuid4(), uuid.uuid4()
    await repository.create_family(
        conn,
        family_id=family_id,
        user_id=user_id,
        jti=jti,
        ttl_seconds=settings.refresh_token_ttl_seconds,
    )
    return family_id, jti


async def _signed_in(
    record: asyncpg.Record,
    *,
    family_id: uuid.UUID,
    jti: uuid.UUID,
    mongo: MongoDatabase,
    settings: Settings,
    device: Device,
    client_ip: str,
) -> SessionOut:
    """The answer to a sign-in whose refresh family is committed: its session's device recorded
    (best effort) and a token pair."""
    await sessions.open_session(
        mongo=mongo,
        settings=settings,
        session_id=family_id,
        user_id=record["id"],
        device=device,
        ip=client_ip,
    )
    pair = tokens.issue_pair(
        user_id=record["id"], role=record["role"], family_id=family_id, jti=jti, settings=settings
    )
    return _session(record, pair)


async def create_account(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    email: str,
    password_hash: str,
    role: str,
    name: str,
    first_name: str | None = None,
    last_name: str | None = None,
) -> asyncpg.Record:
    """Insert the user, its profile rows and `user.registered`, in the caller's transaction.
    Without first and last name (an admin made from the command line), they are split from
    `name`."""
    if first_name is None or last_name is None:
        first_name, last_name = split_name(name)
    try:
        record = await repository.insert_user(
            conn,
            user_id=user_id,
            email=email,
            password_hash=password_hash,
            role=role,
            name=name,
            first_name=first_name,
            last_name=last_name,
        )
    except asyncpg.UniqueViolationError as exc:
        # The unique index on lower(email) is the only arbiter: a pre-check would lose the race
        # between two concurrent registrations.
        raise Conflict(
            "an account with this email already exists",
            details=[{"field": "email", "message": "already registered", "type": "conflict"}],
        ) from exc
    await users.create_profile(conn, user_id=user_id, role=role)
    event = UserRegistered(user_id=user_id, email=email, name=name, role=role)
    await append_event(conn, new_event(event, aggregate_id=user_id, actor_id=user_id))
    return record


async def login(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    body: LoginRequest,
    device: Device,
    client_ip: str,
) -> SessionOut:
    """Check the credentials (throttled per email and per IP) and start a new token family."""
    limits = rate_limit.LoginLimits(
        max_per_email=settings.login_max_per_email,
        max_per_ip=settings.login_max_per_ip,
        window_seconds=settings.login_window_seconds,
    )
    # A place in the bcrypt queue first: a login refused for want of one (503) never had its
    # password checked, so it must not count against the email or the address.
    with passwords.hashing_slot(queue_per_thread=settings.bcrypt_queue_per_thread):
        # Counted before any bcrypt work, so a throttled caller costs us one Redis round trip.
        await rate_limit.count_login_attempt(redis, email=body.email, ip=client_ip, limits=limits)
        async with pool.acquire() as conn:
            record = await repository.find_user_by_email(conn, email=body.email)
        stored_hash = record["password_hash"] if record is not None else None
        matched = await passwords.verify_password(
            body.password, stored_hash, rounds=settings.bcrypt_rounds
        )
    if record is None or not matched:
        raise Unauthorized(BAD_CREDENTIALS)
    if not record["is_active"]:
        # Said plainly only to someone who knows the password.
        raise Unauthorized("this account is deactivated")
    await rate_limit.clear_email_attempts(redis, email=body.email)
    user_id: uuid.UUID = record["id"]
    async with unit_of_work(pool) as conn:
        family_id, jti = await _new_family(conn, user_id=user_id, settings=settings)
    return await _signed_in(
        record,
        family_id=family_id,
        jti=jti,
        mongo=mongo,
        settings=settings,
        device=device,
        client_ip=client_ip,
    )


async def refresh(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    refresh_token: str,
    client_ip: str,
) -> TokensOut:
    """Trade the family's current refresh token for a new pair; a replayed one kills the family."""
    claims = tokens.decode_refresh_token(refresh_token, settings=settings)
    new_jti = uuid.uuid4()
    async with unit_of_work(pool) as conn:
        rotated = await repository.rotate_family(
            conn,
            family_id=claims.family_id,
            jti=claims.jti,
            new_jti=new_jti,
            ttl_seconds=settings.refresh_token_ttl_seconds,
        )
        reused_by = None
        if rotated is None:
            reused_by = await repository.revoke_family_on_reuse(
                conn, family_id=claims.family_id, jti=claims.jti
            )
    # Raised after the unit of work has committed, so the revocation sticks.
    if reused_by is not None:
        log.warning(
            "refresh token reuse: family revoked",
            extra={"user_id": str(reused_by), "family_id": str(claims.family_id)},
        )
        await _end_reused_session(redis=redis, mongo=mongo, settings=settings, claims=claims)
        raise Unauthorized("refresh token reuse detected; sign in again")
    if rotated is None:
        raise Unauthorized("refresh token is no longer valid; sign in again")
    await sessions.note_refresh(
        mongo=mongo, settings=settings, session_id=claims.family_id, ip=client_ip
    )
    pair = tokens.issue_pair(
        user_id=rotated["user_id"],
        role=rotated["role"],
        family_id=claims.family_id,
        jti=new_jti,
        settings=settings,
    )
    return _tokens(pair)


async def _end_reused_session(
    *,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    claims: tokens.RefreshClaims,
) -> None:
    """Deny the access tokens of a family just revoked for reuse: the thief may hold one."""
    try:
        await sessions.end_sessions(
            redis=redis,
            mongo=mongo,
            settings=settings,
            session_ids=[claims.family_id],
            reason="reuse",
        )
    except ServiceUnavailable:
        # The answer is 401 whatever happens here. While Redis is down no access token passes
        # `authenticate` at all; afterwards this family's last one lives out its 15 minutes.
        log.warning(
            "could not deny the access tokens of a reused family",
            extra={"family_id": str(claims.family_id)},
        )


async def logout(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    mongo: MongoDatabase,
    settings: Settings,
    refresh_token: str,
) -> None:
    """End the session of `refresh_token`: the refresh token and its access tokens, at once."""
    claims = tokens.decode_refresh_token(refresh_token, settings=settings)
    async with unit_of_work(pool) as conn:
        await repository.revoke_family(
            conn, family_id=claims.family_id, user_id=claims.user_id, reason="logout"
        )
    # Denied even if the family was revoked before: a retried sign-out after a 503 lands here.
    await sessions.end_sessions(
        redis=redis,
        mongo=mongo,
        settings=settings,
        session_ids=[claims.family_id],
        reason="logout",
    )


async def authenticate(*, pool: asyncpg.Pool, settings: Settings, token: str) -> AuthenticatedUser:
    """The active user an access token speaks for, in a session not revoked.

    PostgreSQL decides both, in one query: a revocation commits there first (api/sessions), so
    a token stops working the moment its session or account does, on every API process."""
    claims = tokens.decode_access_token(token, settings=settings)
    async with pool.acquire() as conn:
        record = await repository.get_user_in_session(
            conn, user_id=claims.user_id, session_id=claims.session_id
        )
    if record is not None and not record["session_live"]:
        raise Unauthorized("this session has been signed out; sign in again")
    # Checked on every request, so deactivating an account takes effect at once.
    if record is None or not record["is_active"]:
        raise Unauthorized("account not found or deactivated")
    return AuthenticatedUser(
        id=record["id"],
        email=record["email"],
        name=record["name"],
        role=record["role"],
        created_at=record["created_at"],
        first_name=record["first_name"],
        last_name=record["last_name"],
        session_id=claims.session_id,
        token_expires_at=claims.expires_at,
    )


async def describe(*, pool: asyncpg.Pool, user: AuthenticatedUser) -> MeOut:
    """The signed-in user with a summary of their profile."""
    summary = await users.get_profile_summary(pool=pool, user_id=user.id)
    return MeOut(
        id=user.id,
        email=user.email,
        name=user.name,
        first_name=user.first_name,
        last_name=user.last_name,
        role=user.role,
        created_at=user.created_at,
        profile=summary,
    )


def _session(record: asyncpg.Record, pair: tokens.TokenPair) -> SessionOut:
    user = UserOut(
        id=record["id"],
        email=record["email"],
        name=record["name"],
        first_name=record["first_name"],
        last_name=record["last_name"],
        role=record["role"],
        created_at=record["created_at"],
    )
    return SessionOut(
        user=user,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )


def _tokens(pair: tokens.TokenPair) -> TokensOut:
    return TokensOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )
