"""Records of the users domain."""

from __future__ import annotations

import uuid
from typing import ClassVar

from streams.events import EventData


class UserRegistered(EventData):
    event_type: ClassVar[str] = "user.registered"

    user_id: uuid.UUID
    email: str
    name: str
    role: str


class ProfileUpdated(EventData):
    event_type: ClassVar[str] = "profile.updated"

    user_id: uuid.UUID
    role: str
    # Names of the fields that changed (snake_case, e.g. "skills", "hourly_rate_cents"), and
    # only those fields' new values, JSON-ready (skills drive re-matching). A privacy change
    # arrives as changed=["profile_visibility"]: search drops or restores the worker on it.
    changed: list[str]
    profile: dict[str, object]
