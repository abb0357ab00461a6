"""Whether a user wants one kind of notification on one channel, from their settings.

The settings are `user_settings.notifications` as stored (api/users/schemas.py
NotificationSettings, snake_case keys). Precedence, first match wins:

1. `channels.<channel>` off: nothing on that channel, whatever else says (a master switch).
2. `types.<kind>.<channel>` set (true or false): the user's word about this very kind.
3. `<category>.<channel>` (the kind's category, agents/notification_templates.py CATEGORY).
4. On: a user who said nothing gets everything but marketing (whose category defaults off).

Read leniently: a key that is missing or not a boolean counts as unset, so settings written by
an older or newer schema never stop a notification from being decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from agents.notification_templates import CATEGORY

Channel = Literal["in_app", "email", "push"]
CHANNELS: Final[tuple[Channel, ...]] = ("in_app", "email", "push")


def _switch(section: object, channel: Channel) -> bool | None:
    if not isinstance(section, Mapping):
        return None
    value = section.get(channel)
    return value if isinstance(value, bool) else None


def wants(preferences: Mapping[str, object], *, kind: str, channel: Channel) -> bool:
    """True when the user (by these settings) is to get `kind` on `channel`."""
    if _switch(preferences.get("channels"), channel) is False:
        return False
    types = preferences.get("types")
    if isinstance(types, Mapping):
        chosen = _switch(types.get(kind), channel)
        if chosen is not None:
            return chosen
    category = CATEGORY.get(kind)
    if category is not None:
        by_category = _switch(preferences.get(category), channel)
        if by_category is not None:
            return by_category
    return True
