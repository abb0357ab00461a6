"""Small factories for events, as the write side would create them."""

from __future__ import annotations

import uuid

from streams.events import Event, new_event
from streams.users import ProfileUpdated, UserRegistered


def user_registered(
    *, user_id: uuid.UUID | None = None, email: str | None = None, role: str = "worker"
) -> Event:
    user_id = user_id or uuid.uuid4()
    return new_event(
        UserRegistered(
            user_id=user_id,
            email=email or f"user-{user_id.hex[:12]}@example.com",
            name="Ada Lovelace",
            role=role,
        ),
        aggregate_id=user_id,
        actor_id=user_id,
    )


def profile_updated(*, user_id: uuid.UUID) -> Event:
    return new_event(
        ProfileUpdated(user_id=user_id, role="worker", changed=["bio"], profile={"bio": "hi"}),
        aggregate_id=user_id,
        actor_id=user_id,
    )
