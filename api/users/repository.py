"""Every SQL statement of the users domain: profiles (common, worker, client) and settings."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from bridges.outbox import append_event_with
from streams.events import Event

# Which table holds which profile column. Column names are also the schema's attribute names,
# and the only names ever interpolated into SQL below.
PROFILE_TABLES: dict[str, frozenset[str]] = {
    "users": frozenset({"first_name", "last_name", "name"}),
    "user_profiles": frozenset(
        {"bio", "skills", "experience", "location", "avatar_url", "portfolio", "social_links"}
    ),
    "worker_profiles": frozenset({"headline", "hourly_rate_cents", "currency", "availability"}),
    "client_profiles": frozenset({"company_name", "website"}),
}

_PROFILE_SELECT = """
SELECT u.id AS user_id, u.role, u.name, u.first_name, u.last_name, u.email, u.is_active,
       u.created_at,
       p.bio, p.skills, p.experience, p.location, p.avatar_url, p.portfolio, p.social_links,
       greatest(p.updated_at, w.updated_at, c.updated_at) AS updated_at,
       w.headline, w.hourly_rate_cents, w.currency, w.availability,
       r.average AS rating_average, coalesce(r.count, 0) AS rating_count, w.completed_projects,
       c.company_name, c.website
  FROM users u
  JOIN user_profiles p ON p.user_id = u.id
  LEFT JOIN worker_profiles w ON w.user_id = u.id
  LEFT JOIN client_profiles c ON c.user_id = u.id
  -- Ratings have one writer, the ratings agent (agents/ratings.py): read its model, keep none.
  LEFT JOIN analytics.worker_ratings r ON r.worker_id = u.id AND u.role = 'worker'
 WHERE u.id = $1
"""


async def insert_profile_rows(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, role: str, settings: dict[str, Any]
) -> None:
    """The empty profile, the role's own profile row and the settings of a new user."""
    await conn.execute("INSERT INTO user_profiles (user_id) VALUES ($1)", user_id)
    await conn.execute(
        """INSERT INTO user_settings (user_id, notifications, privacy, preferences)
           VALUES ($1, $2, $3, $4)""",
        user_id,
        settings["notifications"],
        settings["privacy"],
        settings["preferences"],
    )
    if role == "worker":
        await conn.execute(
            "INSERT INTO worker_profiles (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
        )
    elif role == "client":
        await conn.execute(
            "INSERT INTO client_profiles (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
        )


async def fetch_profile(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, for_update: bool = False
) -> asyncpg.Record | None:
    """The whole profile of a user; `for_update` locks it until the transaction ends."""
    # Only the inner side can be locked; one lock on user_profiles serialises profile writers.
    sql = _PROFILE_SELECT + (" FOR UPDATE OF p" if for_update else "")
    record: asyncpg.Record | None = await conn.fetchrow(sql, user_id)
    return record


async def fetch_profile_and_privacy(
    conn: asyncpg.Connection, *, user_id: uuid.UUID
) -> tuple[asyncpg.Record, dict[str, Any]] | None:
    """A profile with the owner's privacy settings, to decide what the public may see."""
    profile = await fetch_profile(conn, user_id=user_id)
    if profile is None:
        return None
    privacy = await conn.fetchval("SELECT privacy FROM user_settings WHERE user_id = $1", user_id)
    return profile, privacy or {}


async def update_profile_columns(
    conn: asyncpg.Connection,
    *,
    table: str,
    user_id: uuid.UUID,
    values: dict[str, Any],
    event: Event | None = None,
    expected: Mapping[str, Any] | None = None,
) -> datetime | None:
    """Set `values` (column -> value) on one profile table row; returns its new `updated_at`.

    With `event`, the event is recorded in the same statement (bridges/outbox.append_event_with).
    With `expected` (column -> value read before), the row is written only if those columns still
    hold those values: None when they do not (and no event recorded)."""
    allowed = PROFILE_TABLES[table]
    unknown = (set(values) | set(expected or ())) - allowed
    if unknown:
        raise ValueError(f"not columns of {table}: {sorted(unknown)}")
    columns = sorted(values)
    checked = sorted(expected or ())
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=2))
    first_check = len(columns) + 2
    conditions = "".join(
        f" AND {column} IS NOT DISTINCT FROM ${i}"
        for i, column in enumerate(checked, start=first_check)
    )
    key = "id" if table == "users" else "user_id"
    sql = (
        f"UPDATE {table} SET {assignments}, updated_at = now() WHERE {key} = $1{conditions}"
        " RETURNING updated_at"
    )
    args = (
        user_id,
        *(values[column] for column in columns),
        *((expected or {})[column] for column in checked),
    )
    if event is None:
        updated_at: datetime | None = await conn.fetchval(sql, *args)
        return updated_at
    record = await append_event_with(conn, event, sql, *args)
    return None if record is None else record["updated_at"]


async def fetch_settings(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, for_update: bool = False
) -> asyncpg.Record | None:
    """The stored settings sections of a user."""
    record: asyncpg.Record | None = await conn.fetchrow(
        "SELECT notifications, privacy, preferences FROM user_settings WHERE user_id = $1"
        + (" FOR UPDATE" if for_update else ""),
        user_id,
    )
    return record


async def store_settings(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, settings: dict[str, Any]
) -> None:
    """Replace the settings of a user with the resolved document."""
    await conn.execute(
        """UPDATE user_settings
              SET notifications = $2, privacy = $3, preferences = $4, updated_at = now()
            WHERE user_id = $1""",
        user_id,
        settings["notifications"],
        settings["privacy"],
        settings["preferences"],
    )
