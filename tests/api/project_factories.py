"""The project factories' old names, kept for `tests/api/test_projects_status.py` until it imports
`tests.api.gigs` like every other test; delete this module then.

The gigs are `tests.api.gigs`' own, built by its factories; the one difference is this view's
`project_id`, the API's string (as these factories answered it) where `gigs.Gig` has a UUID.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import httpx

from tests.api import gigs
from tests.api.conftest import Account
from tests.api.gigs import (
    STATUSES,
    accept_bid,
    auth,
    bid_body,
    book,
    create_project,
    fund_escrow,
    project_body,
    project_status,
    put_status,
    row_counts,
    submit_bid,
)

__all__ = [
    "STATUSES",
    "Gig",
    "accept_bid",
    "auth",
    "awarded_gig",
    "bid_body",
    "book",
    "booked_gig",
    "create_project",
    "fund_escrow",
    "gig_in_status",
    "open_gig",
    "project_body",
    "project_status",
    "put_status",
    "row_counts",
    "submit_bid",
]


class Gig(gigs.Gig):
    @property
    def project_id(self) -> str:  # type: ignore[override]
        return str(self.project["id"])


def _view(gig: gigs.Gig) -> Gig:
    return Gig(**{field.name: getattr(gig, field.name) for field in dataclasses.fields(gig)})


async def open_gig(client: httpx.AsyncClient, **kwargs: Any) -> Gig:
    return _view(await gigs.open_gig(client, **kwargs))


async def awarded_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    return _view(await gigs.awarded_gig(client, amount_cents=amount_cents, owner=owner))


async def booked_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    return _view(await gigs.booked_gig(client, amount_cents=amount_cents, owner=owner))


async def gig_in_status(
    client: httpx.AsyncClient, db: asyncpg.Connection, status: str, *, owner: Account | None = None
) -> Gig:
    return _view(await gigs.gig_in_status(client, db, status, owner=owner))
