"""Which channels a user's settings allow for a kind of notification, and in which precedence."""

from __future__ import annotations

from agents.notification_preferences import CHANNELS, wants
from api.users.schemas import UserSettings


def stored(patch: dict[str, object] | None = None) -> dict[str, object]:
    """The notifications section as the API stores it, after merging `patch` (camelCase in)."""
    settings = UserSettings.model_validate({"notifications": patch or {}})
    section: dict[str, object] = settings.model_dump(mode="json")["notifications"]
    return section


def test_a_user_who_said_nothing_gets_every_kind_on_every_channel() -> None:
    for prefs in ({}, stored()):
        for channel in CHANNELS:
            assert wants(prefs, kind="review_received", channel=channel)
            assert wants(prefs, kind="welcome", channel=channel)


def test_a_category_turned_off_silences_its_kinds_on_that_channel_only() -> None:
    prefs = stored({"reviews": {"email": False}})
    assert not wants(prefs, kind="review_received", channel="email")
    assert wants(prefs, kind="review_received", channel="in_app")
    assert wants(prefs, kind="new_bid", channel="email")


def test_a_kinds_own_choice_beats_its_category_both_ways() -> None:
    prefs = stored(
        {
            "bids": {"email": False},
            "types": {"bid_accepted": {"email": True}, "new_bid": {"inApp": False}},
        }
    )
    assert wants(prefs, kind="bid_accepted", channel="email")  # on though its category is off
    assert not wants(prefs, kind="new_bid", channel="email")  # the category still rules it
    assert not wants(prefs, kind="new_bid", channel="in_app")  # off though its category is on
    assert wants(prefs, kind="new_bid", channel="push")


def test_a_channel_switched_off_wins_over_everything() -> None:
    prefs = stored({"channels": {"push": False}, "types": {"review_received": {"push": True}}})
    assert not wants(prefs, kind="review_received", channel="push")
    assert not wants(prefs, kind="welcome", channel="push")
    assert wants(prefs, kind="review_received", channel="email")


def test_settings_of_an_unexpected_shape_count_as_unset() -> None:
    prefs = {"reviews": "nope", "types": {"review_received": {"email": None}}, "channels": []}
    assert wants(prefs, kind="review_received", channel="email")
