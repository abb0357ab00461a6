"""Bodies of /api/users: profiles (common, worker and client parts) and per-user settings."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    HttpUrl,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas import ApiModel, ResponseModel

# $10,000 an hour: far above any real rate, low enough that rate x hours stays a sane bigint
# and a typo of a few extra zeros is caught.
MAX_HOURLY_RATE_CENTS = 1_000_000
MAX_SKILLS = 50
MAX_LIST_ITEMS = 50


def _text(max_length: int, *, min_length: int = 0) -> Any:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


def dedupe_skills(skills: list[str]) -> list[str]:
    # "Python" and "python " are one skill; the first spelling wins, order is kept.
    seen: set[str] = set()
    out = []
    for skill in skills:
        if skill.casefold() not in seen:
            seen.add(skill.casefold())
            out.append(skill)
    return out


Skill = Annotated[str, _text(50, min_length=1)]
Skills = Annotated[list[Skill], Field(max_length=MAX_SKILLS), AfterValidator(dedupe_skills)]
# ISO 4217 alphabetic code; accepted in any case, stored upper.
Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$"),
    AfterValidator(str.upper),
]
Availability = Literal["available", "busy", "unavailable"]
SocialNetwork = Literal[
    "website",
    "github",
    "gitlab",
    "linkedin",
    "twitter",
    "x",
    "dribbble",
    "behance",
    "stackoverflow",
    "medium",
    "youtube",
    "instagram",
    "facebook",
]


class ExperienceItem(ApiModel):
    title: Annotated[str, _text(200, min_length=1)]
    company: Annotated[str, _text(200)] = ""
    from_: date = Field(alias="from")
    # None: still there.
    to: date | None = None
    description: Annotated[str, _text(5000)] = ""

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> ExperienceItem:
        if self.to is not None and self.to < self.from_:
            raise ValueError("'to' must not be before 'from'")
        return self


class PortfolioItem(ApiModel):
    title: Annotated[str, _text(200, min_length=1)]
    url: HttpUrl
    description: Annotated[str, _text(2000)] = ""


# Columns of each profile table, named as the request's Python attributes.
COMMON_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "bio",
        "skills",
        "experience",
        "location",
        "avatar_url",
        "portfolio",
        "social_links",
    }
)
WORKER_FIELDS = frozenset({"headline", "hourly_rate_cents", "currency", "availability"})
CLIENT_FIELDS = frozenset({"company_name", "website"})
NULLABLE_FIELDS = frozenset({"avatar_url", "hourly_rate_cents", "website"})


class ProfileUpdate(ApiModel):
    """Merge semantics: fields left out keep their value; null clears a nullable one."""

    # The display name (`name`) follows: "first last".
    first_name: Annotated[str, _text(100, min_length=1)] | None = None
    last_name: Annotated[str, _text(100)] | None = None
    bio: Annotated[str, _text(5000)] | None = None
    skills: Skills | None = None
    experience: Annotated[list[ExperienceItem], Field(max_length=MAX_LIST_ITEMS)] | None = None
    location: Annotated[str, _text(200)] | None = None
    avatar_url: HttpUrl | None = None
    portfolio: Annotated[list[PortfolioItem], Field(max_length=MAX_LIST_ITEMS)] | None = None
    social_links: dict[SocialNetwork, HttpUrl] | None = None
    # Workers only.
    headline: Annotated[str, _text(200)] | None = None
    hourly_rate_cents: Annotated[int, Field(ge=0, le=MAX_HOURLY_RATE_CENTS)] | None = None
    currency: Currency | None = None
    availability: Availability | None = None
    # Clients only.
    company_name: Annotated[str, _text(200)] | None = None
    website: HttpUrl | None = None

    @field_validator(
        *sorted((COMMON_FIELDS | WORKER_FIELDS | CLIENT_FIELDS) - NULLABLE_FIELDS), mode="before"
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for values sent: an explicit null on a field that cannot be empty.
        if value is None:
            raise ValueError("may not be null")
        return value


class ProfileBase(ResponseModel):
    user_id: uuid.UUID
    name: str
    first_name: str
    last_name: str
    bio: str
    skills: list[str]
    experience: list[ExperienceItem]
    location: str
    avatar_url: str | None
    portfolio: list[PortfolioItem]
    social_links: dict[str, str]
    updated_at: datetime


class WorkerProfileOut(ProfileBase):
    role: Literal["worker"] = "worker"
    headline: str
    hourly_rate_cents: int | None
    currency: str
    availability: Availability
    # From the ratings agent's read model (analytics.worker_ratings) and the project lifecycle;
    # read-only here. A review shows here once the worker has folded it (well under a second).
    rating_average: float | None
    rating_count: int
    completed_projects: int


class ClientProfileOut(ProfileBase):
    role: Literal["client"] = "client"
    company_name: str
    website: str | None


class AdminProfileOut(ProfileBase):
    role: Literal["admin"] = "admin"


ProfileOut = Annotated[
    WorkerProfileOut | ClientProfileOut | AdminProfileOut, Field(discriminator="role")
]


class PublicWorkerProfile(WorkerProfileOut):
    # Present only when the worker chose privacy.showEmail.
    email: str | None = None
    member_since: datetime


class ProfileSummary(ResponseModel):
    """The few profile fields shown next to the user's name (GET /api/auth/me)."""

    avatar_url: str | None = None
    location: str = ""
    skills: list[str] = Field(default_factory=list)
    headline: str | None = None
    company_name: str | None = None


# --- settings


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _known_timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Paris', 'UTC')")
    return value


# BCP 47 in its common shapes: "en", "pt-BR", "zh-Hant-TW".
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{4})?(-([A-Z]{2}|[0-9]{3}))?$")


def _known_language_shape(value: str) -> str:
    if not _LANGUAGE.match(value):
        raise ValueError("expected a BCP 47 language tag such as 'en' or 'pt-BR'")
    return value


class ChannelPrefs(ApiModel):
    email: bool = True
    push: bool = True
    in_app: bool = True


def _off() -> ChannelPrefs:
    return ChannelPrefs(email=False, push=False, in_app=False)


# The kinds of notification (agents/notification_templates.py KINDS).
NotificationType = Literal[
    "welcome",
    "new_bid",
    "bid_accepted",
    "booking_created",
    "payment_completed",
    "payment_failed",
    "delivered",
    "changes_requested",
    "dispute_opened",
    "dispute_resolved",
    "review_received",
    "new_message",
    "deadline_reminder",
]


class ChannelOverride(ApiModel):
    """A kind's own choice per channel; null (or left out) follows the kind's category."""

    email: bool | None = None
    push: bool | None = None
    in_app: bool | None = None


class NotificationSettings(ApiModel):
    """Per category, per channel (email, web push, in-app). Marketing is opt-in.

    `channels` switches a channel off for everything; `types` overrides a kind's category
    (precedence: agents/notification_preferences.py)."""

    messages: ChannelPrefs = Field(default_factory=ChannelPrefs)
    bids: ChannelPrefs = Field(default_factory=ChannelPrefs)
    projects: ChannelPrefs = Field(default_factory=ChannelPrefs)
    payments: ChannelPrefs = Field(default_factory=ChannelPrefs)
    reviews: ChannelPrefs = Field(default_factory=ChannelPrefs)
    marketing: ChannelPrefs = Field(default_factory=_off)
    channels: ChannelPrefs = Field(default_factory=ChannelPrefs)
    types: dict[NotificationType, ChannelOverride] = Field(default_factory=dict)


class PrivacySettings(ApiModel):
    # "private" hides a worker's public profile (GET /api/users/{id} answers 404).
    profile_visibility: Literal["public", "private"] = "public"
    show_email: bool = False


class Preferences(ApiModel):
    language: Annotated[str, AfterValidator(_known_language_shape)] = "en"
    timezone: Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_timezone)] = (
        "UTC"
    )


class UserSettings(ApiModel):
    """Every field has a default: as a request body, what is left out keeps its value."""

    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    preferences: Preferences = Field(default_factory=Preferences)
