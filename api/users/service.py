"""Profiles and settings: reads, merge-updates and the `profile.updated` event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.errors import Invalid, NotFound
from api.users import repository
from api.users.schemas import (
    CLIENT_FIELDS,
    WORKER_FIELDS,
    AdminProfileOut,
    ClientProfileOut,
    PrivacySettings,
    ProfileSummary,
    ProfileUpdate,
    PublicWorkerProfile,
    UserSettings,
    WorkerProfileOut,
)
from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from streams.events import Event, new_event
from streams.users import ProfileUpdated

AnyProfile = WorkerProfileOut | ClientProfileOut | AdminProfileOut

_ROLE_FIELDS = {"worker": WORKER_FIELDS, "client": CLIENT_FIELDS}


async def create_profile(conn: asyncpg.Connection, *, user_id: uuid.UUID, role: str) -> None:
    """Give a new user an empty profile and the default settings, in the caller's transaction."""
    await repository.insert_profile_rows(
        conn, user_id=user_id, role=role, settings=UserSettings().model_dump(mode="json")
    )


async def get_profile(*, pool: asyncpg.Pool, user_id: uuid.UUID) -> AnyProfile:
    """The full profile of a user, as its owner sees it."""
    async with pool.acquire() as conn:
        record = await repository.fetch_profile(conn, user_id=user_id)
    if record is None:
        raise NotFound("profile not found")
    return _profile_out(record)


async def get_profile_summary(*, pool: asyncpg.Pool, user_id: uuid.UUID) -> ProfileSummary:
    """The few profile fields shown next to a user's name."""
    async with pool.acquire() as conn:
        record = await repository.fetch_profile(conn, user_id=user_id)
    if record is None:
        return ProfileSummary()
    return ProfileSummary(
        avatar_url=record["avatar_url"],
        location=record["location"],
        skills=record["skills"],
        headline=record["headline"],
        company_name=record["company_name"],
    )


# A write to one profile table is a plain read and one compare-and-set statement carrying its
# event: no transaction to open and commit, two round trips fewer than taking the row lock. When
# a concurrent write changed one of its columns in between, the statement matches nothing (and
# records nothing) and the write reads again; after this many tries it takes the lock.
OPTIMISTIC_TRIES = 3


@dataclass(frozen=True)
class _ProfileChange:
    """What a request changes in a profile read as `current`: the rows to write and the event."""

    current: Mapping[str, Any]
    changed: dict[str, Any]
    event: Event | None

    @property
    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        """(table, column -> new value) for each profile table the change touches."""
        return [
            (table, values)
            for table, columns in repository.PROFILE_TABLES.items()
            if (values := {c: self.changed[c] for c in columns if c in self.changed})
        ]

    def answer(self, stamps: Mapping[str, datetime]) -> AnyProfile:
        """The profile after the change (the row read, changes applied: not a second read),
        `stamps` the new `updated_at` of each table written."""
        updated = {**dict(self.current), **self.changed}
        for table, stamped in stamps.items():
            # A profile's `updated_at` is its profile tables' latest (users' is not one).
            if table != "users":
                updated["updated_at"] = max(
                    filter(None, (updated["updated_at"], stamped)), default=stamped
                )
        return _profile_out(updated)


def _change_of(
    current: asyncpg.Record | None, body: ProfileUpdate, user_id: uuid.UUID
) -> _ProfileChange:
    if current is None:
        raise NotFound("profile not found")
    sent = _sent_values(body)
    role: str = current["role"]
    _refuse_other_roles_fields(body, set(sent), role)
    if "first_name" in sent or "last_name" in sent:
        # One display name for every other domain (reviews, events, emails), kept in step.
        first = sent.get("first_name", current["first_name"])
        last = sent.get("last_name", current["last_name"])
        sent["name"] = f"{first} {last}".strip()
    changed = {column: value for column, value in sent.items() if current[column] != value}
    event = None
    if changed:
        event = new_event(
            ProfileUpdated(user_id=user_id, role=role, changed=list(changed), profile=changed),
            aggregate_id=user_id,
            actor_id=user_id,
        )
    return _ProfileChange(current, changed, event)


async def update_profile(
    *, pool: asyncpg.Pool, user_id: uuid.UUID, body: ProfileUpdate
) -> AnyProfile:
    """Apply the fields sent; emit `profile.updated` with those whose value really changed."""
    for _ in range(OPTIMISTIC_TRIES):
        async with pool.acquire() as conn:
            current = await repository.fetch_profile(conn, user_id=user_id)
            change = _change_of(current, body, user_id)
            if change.event is None:
                return change.answer({})
            writes = change.writes
            # The users table's display name is derived from two columns: that write locks.
            if len(writes) != 1 or writes[0][0] == "users":
                break
            (table, values) = writes[0]
            stamped = await repository.update_profile_columns(
                conn,
                table=table,
                user_id=user_id,
                values=values,
                event=change.event,
                expected={column: change.current[column] for column in values},
            )
            if stamped is not None:
                return change.answer({table: stamped})
    async with unit_of_work(pool) as conn:
        current = await repository.fetch_profile(conn, user_id=user_id, for_update=True)
        change = _change_of(current, body, user_id)
        if change.event is None:
            return change.answer({})
        writes = change.writes
        stamps: dict[str, datetime] = {}
        for index, (table, values) in enumerate(writes):
            last = index == len(writes) - 1
            stamped = await repository.update_profile_columns(
                conn,
                table=table,
                user_id=user_id,
                values=values,
                event=change.event if last else None,
            )
            if stamped is None:
                raise RuntimeError(f"user {user_id} has no {table} row to update")
            stamps[table] = stamped
    return change.answer(stamps)


async def get_public_profile(*, pool: asyncpg.Pool, user_id: uuid.UUID) -> PublicWorkerProfile:
    """A worker's profile as anyone may see it; 404 for anyone else or a private profile."""
    async with pool.acquire() as conn:
        found = await repository.fetch_profile_and_privacy(conn, user_id=user_id)
    if found is None:
        raise NotFound("no public profile for this user")
    record, stored_privacy = found
    privacy = PrivacySettings.model_validate(stored_privacy)
    # One answer for "no such user", "not a worker", "deactivated" and "private": the public
    # must not learn which accounts exist.
    if record["role"] != "worker" or not record["is_active"]:
        raise NotFound("no public profile for this user")
    if privacy.profile_visibility != "public":
        raise NotFound("no public profile for this user")
    profile = _profile_out(record)
    return PublicWorkerProfile(
        **profile.model_dump(),
        email=record["email"] if privacy.show_email else None,
        member_since=record["created_at"],
    )


async def get_settings(*, pool: asyncpg.Pool, user_id: uuid.UUID) -> UserSettings:
    """A user's settings, defaults filled in."""
    async with pool.acquire() as conn:
        record = await repository.fetch_settings(conn, user_id=user_id)
    if record is None:
        raise NotFound("settings not found")
    return _settings_out(record)


async def update_settings(
    *, pool: asyncpg.Pool, user_id: uuid.UUID, role: str, body: UserSettings
) -> UserSettings:
    """Merge the sections and keys sent into the stored settings."""
    patch = body.model_dump(exclude_unset=True)
    async with unit_of_work(pool) as conn:
        record = await repository.fetch_settings(conn, user_id=user_id, for_update=True)
        if record is None:
            raise NotFound("settings not found")
        current = _settings_out(record)
        merged = UserSettings.model_validate(_deep_merge(current.model_dump(), patch))
        if merged == current:
            return current
        await repository.store_settings(
            conn, user_id=user_id, settings=merged.model_dump(mode="json")
        )
        visibility = merged.privacy.profile_visibility
        if visibility != current.privacy.profile_visibility:
            # Search and matching drop or restore the worker on this event.
            event = ProfileUpdated(
                user_id=user_id,
                role=role,
                changed=["profile_visibility"],
                profile={"profile_visibility": visibility},
            )
            await append_event(conn, new_event(event, aggregate_id=user_id, actor_id=user_id))
    return merged


def _sent_values(body: ProfileUpdate) -> dict[str, Any]:
    """Column -> value as stored (JSON-ready), for each field present in the request."""
    dumped = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    fields = type(body).model_fields
    return {
        name: dumped[field.alias or name]
        for name, field in fields.items()
        if (field.alias or name) in dumped
    }


def _refuse_other_roles_fields(body: ProfileUpdate, sent: set[str], role: str) -> None:
    fields = type(body).model_fields
    mine = _ROLE_FIELDS.get(role, frozenset())
    foreign = sorted((WORKER_FIELDS | CLIENT_FIELDS) & sent - mine)
    if foreign:
        details = [
            {
                "field": fields[name].alias or name,
                "message": f"not a field of a {role} profile",
                "type": "role",
            }
            for name in foreign
        ]
        names = ", ".join(d["field"] for d in details)
        raise Invalid(f"invalid request: {names} not allowed for role {role}", details=details)


def _profile_out(record: Mapping[str, Any]) -> AnyProfile:
    common: dict[str, Any] = {
        "user_id": record["user_id"],
        "name": record["name"],
        "first_name": record["first_name"],
        "last_name": record["last_name"],
        "bio": record["bio"],
        "skills": record["skills"],
        "experience": record["experience"],
        "location": record["location"],
        "avatar_url": record["avatar_url"],
        "portfolio": record["portfolio"],
        "social_links": record["social_links"],
        "updated_at": record["updated_at"],
    }
    if record["role"] == "worker":
        rating = record["rating_average"]
        return WorkerProfileOut(
            **common,
            headline=record["headline"],
            hourly_rate_cents=record["hourly_rate_cents"],
            currency=record["currency"],
            availability=record["availability"],
            rating_average=float(rating) if rating is not None else None,
            rating_count=record["rating_count"],
            completed_projects=record["completed_projects"],
        )
    if record["role"] == "client":
        return ClientProfileOut(
            **common, company_name=record["company_name"], website=record["website"]
        )
    return AdminProfileOut(**common)


def _settings_out(record: asyncpg.Record) -> UserSettings:
    return UserSettings.model_validate(
        {
            "notifications": record["notifications"] or {},
            "privacy": record["privacy"] or {},
            "preferences": record["preferences"] or {},
        }
    )


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
