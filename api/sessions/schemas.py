"""Response bodies of /api/sessions, camelCase on the wire like every other router's."""

from __future__ import annotations

import uuid
from datetime import datetime

from api.schemas import ResponseModel
from api.sessions.devices import DeviceKind


class DeviceOut(ResponseModel):
    # "Firefox 126 on Windows"; "Unknown device" when the header said nothing we know.
    label: str
    browser: str | None
    os: str | None
    kind: DeviceKind
    user_agent: str


class SessionItem(ResponseModel):
    id: uuid.UUID
    # True for the session of the access token that asked.
    current: bool
    device: DeviceOut
    # The address of the sign-in or of the latest refresh.
    ip: str | None
    created_at: datetime
    # The sign-in or the latest refresh: an access token lives 15 minutes, so this is exact to
    # within that, without a write per request.
    last_used_at: datetime
    expires_at: datetime


class SessionList(ResponseModel):
    items: list[SessionItem]


class RevokedOut(ResponseModel):
    revoked: int
