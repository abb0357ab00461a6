"""Every SQL statement of the auth domain: accounts and refresh-token families (sessions)."""

from __future__ import annotations

import uuid

import asyncpg

_USER_COLUMNS = "id, email, name, first_name, last_name, role, is_active, created_at"


async def insert_user(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    email: str,
    password_hash: str,
    role: str,
    name: str,
    first_name: str,
    last_name: str,
) -> asyncpg.Record:
    """A new account; raises asyncpg.UniqueViolationError if the email (any case) is taken."""
    record: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO users (id, email, password_hash, role, name, first_name, last_name)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING {_USER_COLUMNS}""",
        user_id,
        email,
        password_hash,
        role,
        name,
        first_name,
        last_name,
    )
    return record


async def find_user_by_email(conn: asyncpg.Connection, *, email: str) -> asyncpg.Record | None:
    """The account with this email in any case, with its password hash."""
    # lower(email) = lower($1) is what the users_email_ci index serves.
    record: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)",
        email,
    )
    return record


_USER_IN_SESSION = f"""
    SELECT {", ".join("u." + column.strip() for column in _USER_COLUMNS.split(","))},
           (f.id IS NOT NULL AND f.revoked_at IS NULL) AS session_live
      FROM users u
      LEFT JOIN refresh_token_families f ON f.id = $2 AND f.user_id = u.id
     WHERE u.id = $1"""


async def get_user_in_session(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> asyncpg.Record | None:
    """The account with `session_live`: whether `session_id` is one of its families, unrevoked.

    One round trip answers both questions an access token raises on every request."""
    record: asyncpg.Record | None = await conn.fetchrow(_USER_IN_SESSION, user_id, session_id)
    return record


async def make_admin(conn: asyncpg.Connection, *, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE users SET role = 'admin', is_active = true, updated_at = now() WHERE id = $1",
        user_id,
    )


async def create_family(
    conn: asyncpg.Connection,
    *,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    jti: uuid.UUID,
    ttl_seconds: int,
) -> None:
    """Start a refresh-token family (one per sign-in) whose current token is `jti`."""
    await conn.execute(
        """INSERT INTO refresh_token_families (id, user_id, current_jti, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
        family_id,
        user_id,
        jti,
        float(ttl_seconds),
    )


async def rotate_family(
    conn: asyncpg.Connection,
    *,
    family_id: uuid.UUID,
    jti: uuid.UUID,
    new_jti: uuid.UUID,
    ttl_seconds: int,
) -> asyncpg.Record | None:
    """Swap the family's current token `jti` for `new_jti`, in one conditional UPDATE.

    None if `jti` is not the current token of a live family of an active user. Two requests
    racing with one token serialise on the row: the loser sees the new jti and gets None.
    The family's lifetime slides: each rotation gives it the refresh TTL again.
    """
    record: asyncpg.Record | None = await conn.fetchrow(
        """UPDATE refresh_token_families f
              SET current_jti = $3,
                  rotated_at = now(),
                  expires_at = now() + make_interval(secs => $4)
             FROM users u
            WHERE f.id = $1
              AND f.current_jti = $2
              AND f.revoked_at IS NULL
              AND f.expires_at > now()
              AND u.id = f.user_id
              AND u.is_active
        RETURNING u.id AS user_id, u.role""",
        family_id,
        jti,
        new_jti,
        float(ttl_seconds),
    )
    return record


async def revoke_family_on_reuse(
    conn: asyncpg.Connection, *, family_id: uuid.UUID, jti: uuid.UUID
) -> uuid.UUID | None:
    """Revoke a live family if `jti` is one of its superseded tokens; returns the user id then."""
    user_id: uuid.UUID | None = await conn.fetchval(
        """UPDATE refresh_token_families
              SET revoked_at = now(), revoked_reason = 'reuse'
            WHERE id = $1 AND current_jti <> $2 AND revoked_at IS NULL
        RETURNING user_id""",
        family_id,
        jti,
    )
    return user_id


async def revoke_family(
    conn: asyncpg.Connection, *, family_id: uuid.UUID, user_id: uuid.UUID, reason: str
) -> None:
    """Revoke a family of `user_id` (no-op if it is already revoked)."""
    await conn.execute(
        """UPDATE refresh_token_families
              SET revoked_at = now(), revoked_reason = $3
            WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL""",
        family_id,
        user_id,
        reason,
    )


async def find_family(
    conn: asyncpg.Connection, *, family_id: uuid.UUID, user_id: uuid.UUID
) -> asyncpg.Record | None:
    """A family of `user_id`, live or not; None for another user's or an unknown id."""
    record: asyncpg.Record | None = await conn.fetchrow(
        """SELECT id, revoked_at, expires_at FROM refresh_token_families
            WHERE id = $1 AND user_id = $2""",
        family_id,
        user_id,
    )
    return record


async def live_families(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, limit: int
) -> list[asyncpg.Record]:
    """The user's unrevoked, unexpired families, most recently used (rotated) first."""
    records: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, created_at, rotated_at, expires_at FROM refresh_token_families
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            ORDER BY rotated_at DESC, id
            LIMIT $2""",
        user_id,
        limit,
    )
    return records


async def revoke_user_families(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, keep: uuid.UUID | None, reason: str
) -> int:
    """Revoke every live family of `user_id` but `keep`; returns how many this call revoked."""
    status: str = await conn.execute(
        """UPDATE refresh_token_families
              SET revoked_at = now(), revoked_reason = $3
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
              AND id IS DISTINCT FROM $2""",
        user_id,
        keep,
        reason,
    )
    return int(status.split()[-1])


async def families_revoked_within(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, seconds: int
) -> list[uuid.UUID]:
    """Families of `user_id` revoked in the last `seconds`: those whose access tokens may live."""
    rows = await conn.fetch(
        """SELECT id FROM refresh_token_families
            WHERE user_id = $1 AND revoked_at > now() - make_interval(secs => $2)""",
        user_id,
        float(seconds),
    )
    return [row["id"] for row in rows]
