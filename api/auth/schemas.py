"""Request and response bodies of /api/auth. JSON names are camelCase, as in the seed contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, StringConstraints, model_validator

from api.auth.passwords import BCRYPT_MAX_BYTES, fits_bcrypt
from api.schemas import ApiModel, FieldProblem, PairedApiModel, ResponseModel, filled_in
from api.users.schemas import ProfileSummary

# RFC 5321 caps a forward path at 256 octets including the angle brackets.
EMAIL_MAX_CHARS = 254
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 128


def _valid_email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    # Stored as typed; uniqueness ignores case (index users_email_ci).
    return value


def _fits_bcrypt(value: str) -> str:
    if not fits_bcrypt(value):
        raise ValueError(
            f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8 "
            f"(bcrypt ignores the rest); use fewer or simpler characters"
        )
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=EMAIL_MAX_CHARS),
    AfterValidator(_valid_email),
]
Password = Annotated[
    str,
    Field(min_length=PASSWORD_MIN_CHARS, max_length=PASSWORD_MAX_CHARS),
    AfterValidator(_fits_bcrypt),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# A last name may be empty: not everyone has one (the seed's clients send "" then).
LastName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
# A JWT of ours is ~300 bytes; the cap only stops absurd bodies reaching the decoder.
Token = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Role = Literal["worker", "client", "admin"]


def split_name(name: str) -> tuple[str, str]:
    """A display name as first and last name: the first word, and the rest ("Ann Lee Smith" →
    "Ann", "Lee Smith"). Only a default for accounts that gave one name; never shown over
    parts the user typed."""
    parts = name.strip().split(maxsplit=1)
    return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")


def join_name(first_name: str, last_name: str) -> str:
    return f"{first_name} {last_name}".strip()


class RegisterRequest(PairedApiModel):
    """The seed's shape names the user `firstName` + `lastName`; the one-field `name` (the
    display name) is accepted too. Given only the parts, the display name is "first last";
    given only `name`, the parts are split from it (`split_name`); given both, each is kept
    as sent."""

    either_or = (("firstName", "name"),)

    email: Email
    password: Password
    # None of the three is None once validated (`_names` fills them in); typed as stored.
    name: Name = filled_in("Display name; defaults to firstName + lastName.")
    first_name: Name = filled_in("The seed's form; split from name when only that is sent.")
    last_name: LastName = filled_in("May be empty.")
    # Admins are made by `tulifo create-admin` only.
    role: Literal["worker", "client"]

    @model_validator(mode="after")
    def _names(self) -> RegisterRequest:
        if self.first_name is None:
            if self.name is None or self.last_name is not None:
                problem = FieldProblem(
                    "firstName", "required: firstName and lastName (or name)", "missing"
                )
                raise problem.as_validation_error(type(self).__name__, None)
            self.first_name, self.last_name = split_name(self.name)
        if self.last_name is None:
            self.last_name = ""
        if self.name is None:
            self.name = join_name(self.first_name, self.last_name)
        return self


class LoginRequest(ApiModel):
    # Not format-checked: a malformed address simply matches no account.
    email: Annotated[str, StringConstraints(min_length=1, max_length=EMAIL_MAX_CHARS)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=PASSWORD_MAX_CHARS)]


class RefreshRequest(ApiModel):
    refresh_token: Token


class UserOut(ResponseModel):
    id: uuid.UUID
    email: str
    name: str
    first_name: str
    last_name: str
    role: Role
    created_at: datetime


class MeOut(UserOut):
    profile: ProfileSummary


class TokensOut(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    # Seconds the access token lives.
    expires_in: int


class SessionOut(TokensOut):
    user: UserOut


@dataclass(frozen=True)
class AuthenticatedUser:
    """Who a request speaks for: read from the database on every request, not from the token."""

    id: uuid.UUID
    email: str
    name: str
    role: Role
    created_at: datetime
    first_name: str = ""
    last_name: str = ""
    # The session (refresh-token family) of the access token presented.
    session_id: uuid.UUID | None = None
    # When that access token expires (Unix seconds): live sockets and streams end then.
    token_expires_at: int | None = None
