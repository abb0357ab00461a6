"""Admins are made from the command line only (`tulifo create-admin`), never over HTTP."""

from __future__ import annotations

import uuid

import asyncpg
from pydantic import TypeAdapter, ValidationError

from api.auth import passwords, repository, service
from api.auth.schemas import Email, Name, Password
from api.errors import Invalid
from infrastructure.database import unit_of_work

_email: TypeAdapter[str] = TypeAdapter(Email)
_password: TypeAdapter[str] = TypeAdapter(Password)
_name: TypeAdapter[str] = TypeAdapter(Name)


async def create_admin(
    *, pool: asyncpg.Pool, email: str, password: str, name: str, rounds: int
) -> uuid.UUID:
    """Create an admin account, or promote (and reactivate) the account with this email.

    A promoted account keeps its password and name: the operator's arguments never overwrite
    a credential someone else chose. The same rules as registration apply to new accounts.
    """
    email = _valid(_email, email, "email")
    async with unit_of_work(pool) as conn:
        existing = await repository.find_user_by_email(conn, email=email)
        if existing is not None:
            await repository.make_admin(conn, user_id=existing["id"])
            user_id: uuid.UUID = existing["id"]
            return user_id
    password = _valid(_password, password, "password")
    name = _valid(_name, name, "name")
    password_hash = await passwords.hash_password(password, rounds=rounds)
    user_id = uuid.uuid4()
    async with unit_of_work(pool) as conn:
        await service.create_account(
            conn,
            user_id=user_id,
            email=email,
            password_hash=password_hash,
            role="admin",
            name=name,
        )
    return user_id


def _valid(adapter: TypeAdapter[str], value: str, field: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise Invalid(
            f"{field}: {message}", details=[{"field": field, "message": message}]
        ) from exc
