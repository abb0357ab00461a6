"""Input no client of ours sends, but anyone can: a clear 4xx naming the field, never a 500."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.api.conftest import Account
from tests.api.gigs import Gig, book_gig


def cursor_of(created_at: str, item_id: str | None = None) -> str:
    """A cursor shaped like ours (api/pagination.py) around a time of the caller's choosing."""
    raw = json.dumps([created_at, item_id or str(uuid.uuid4())]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Times Python parses but cannot move to UTC, where the database driver would have to.
OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
BAD_CURSORS = [
    *(cursor_of(t) for t in OUT_OF_RANGE),
    cursor_of("2026-01-01T00:00:00"),  # no time zone
    cursor_of("2026-01-01T00:00:00+00:00", "not-a-uuid"),
    base64.urlsafe_b64encode(b"[" * 140).decode(),  # deeper than ours, still under the length cap
    "%%%",
]


@pytest.fixture
async def gig(client: httpx.AsyncClient) -> Gig:
    return await book_gig(client, amount_cents=1_000)


def listings(gig: Gig) -> list[tuple[str, Account | None]]:
    """Every paginated listing, with who may read it (None: anyone)."""
    return [
        ("/api/projects", None),
        (f"/api/users/{gig.worker.id}/reviews", None),
        ("/api/billing/payments", gig.client),
        (f"/api/projects/{gig.project_id}/bids", gig.client),
    ]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_a_cursor_we_did_not_issue_is_a_422_naming_it(
    client: httpx.AsyncClient, gig: Gig, cursor: str
) -> None:
    for path, who in listings(gig):
        response = await client.get(
            path, params={"cursor": cursor}, headers=who.headers if who else {}
        )
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert [d["field"] for d in error["details"]] == ["cursor"], (path, error)


@pytest.mark.parametrize("before", OUT_OF_RANGE)
async def test_a_notifications_page_before_a_time_out_of_range_is_a_422_naming_it(
    client: httpx.AsyncClient, gig: Gig, before: str
) -> None:
    response = await client.get(
        "/api/notifications", params={"before": before}, headers=gig.worker.headers
    )
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == ["before"]


async def test_a_notifications_page_before_a_time_without_a_zone_reads_it_as_utc(
    client: httpx.AsyncClient, gig: Gig
) -> None:
    response = await client.get(
        "/api/notifications",
        params={"before": "2999-01-01T00:00:00"},
        headers=gig.worker.headers,
    )
    assert response.status_code == 200, response.text
