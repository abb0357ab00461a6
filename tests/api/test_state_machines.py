"""The two state machines (api/projects/lifecycle.py, api/escrow/lifecycle.py) as tables, and
the one writer of each status refusing to overwrite a row that moved meanwhile."""

from __future__ import annotations

import itertools
from typing import get_args

import asyncpg
import httpx
import pytest

from api.errors import Conflict
from api.escrow import lifecycle as escrow_lifecycle
from api.escrow import repository as escrow_repository
from api.projects import lifecycle as project_lifecycle
from api.projects import repository as project_repository
from api.projects.lifecycle import Actor, How, IllegalMove
from tests.api.gigs import gig_in_status

ACTORS: tuple[Actor, ...] = get_args(Actor)
ROUTES: tuple[How, ...] = get_args(How)

# Every project move the code writes, by whom and through which route: PUT /status
# (api/projects/service.py, and the cancellation a pinned refund finishes), accepting a bid
# (api/bids), opening and resolving a dispute (api/disputes), releasing the escrow (api/escrow).
# Written out here, not read from the table, so a change to the rules has to change this too.
PROJECT_MOVES_USED = {
    ("open", "awarded", "client", "accept_bid"),
    ("awarded", "in_progress", "worker", "status"),
    ("in_progress", "delivered", "worker", "status"),
    ("delivered", "in_progress", "client", "status"),
    ("delivered", "completed", "client", "status"),
    ("open", "cancelled", "client", "status"),
    ("awarded", "cancelled", "client", "status"),
    ("in_progress", "cancelled", "client", "status"),
    *(
        (source, "disputed", party, "open_dispute")
        for source in ("awarded", "in_progress", "delivered", "completed")
        for party in ("client", "worker")
    ),
    ("disputed", "completed", "admin", "resolve_dispute"),
    ("disputed", "cancelled", "admin", "resolve_dispute"),
    ("delivered", "completed", "client", "release_escrow"),
}

# Every hold move the code writes: the payment webhook, a dispute opened, release, refunds pinned
# (cancel, cancelled payment, resolution), recorded, refused, and a refund made at Stripe's
# dashboard, and a resolution settled without a refund.
ESCROW_MOVES_USED = {
    ("unfunded", "funded", "system"),
    ("funded", "frozen", "client"),
    ("funded", "frozen", "worker"),
    ("funded", "released", "client"),
    ("funded", "released", "system"),
    ("frozen", "released", "admin"),
    ("funded", "refunding", "client"),
    ("funded", "refunding", "system"),
    ("frozen", "refunding", "admin"),
    ("refunding", "refunded", "system"),
    ("refunding", "split", "system"),
    ("refunding", "funded", "system"),
    ("refunding", "frozen", "system"),
    ("funded", "refunded", "system"),
}


def test_the_project_table_is_exactly_the_moves_the_code_makes() -> None:
    assert {tuple(move) for move in project_lifecycle.MOVES} == PROJECT_MOVES_USED
    for source, target, actor, how in PROJECT_MOVES_USED:
        project_lifecycle.require_edge([source], target, actor=actor, how=how)  # type: ignore[arg-type]


def test_the_escrow_table_is_exactly_the_moves_the_code_makes() -> None:
    assert {tuple(move) for move in escrow_lifecycle.MOVES} == ESCROW_MOVES_USED
    for source, target, actor in ESCROW_MOVES_USED:
        escrow_lifecycle.require_edge([source], target, actor=actor)  # type: ignore[arg-type]


def test_every_project_move_not_in_the_table_is_refused() -> None:
    statuses = project_lifecycle.STATUSES
    for source, target, actor, how in itertools.product(statuses, statuses, ACTORS, ROUTES):
        if (source, target, actor, how) in PROJECT_MOVES_USED:
            continue
        with pytest.raises(IllegalMove):
            project_lifecycle.require_edge([source], target, actor=actor, how=how)


def test_every_escrow_move_not_in_the_table_is_refused() -> None:
    statuses = escrow_lifecycle.STATUSES
    for source, target, actor in itertools.product(statuses, statuses, ACTORS):
        if (source, target, actor) in ESCROW_MOVES_USED:
            continue
        with pytest.raises(IllegalMove):
            escrow_lifecycle.require_edge([source], target, actor=actor)


def test_a_move_from_several_statuses_needs_every_edge() -> None:
    project_lifecycle.require_edge(
        ["awarded", "in_progress"], "cancelled", actor="client", how="status"
    )
    with pytest.raises(IllegalMove):
        project_lifecycle.require_edge(
            ["in_progress", "delivered"], "cancelled", actor="client", how="status"
        )
    with pytest.raises(IllegalMove):
        escrow_lifecycle.require_edge([], "funded", actor="system")


def test_terminal_statuses_have_no_way_out() -> None:
    assert project_lifecycle.terminal_statuses() == {"cancelled"}
    assert escrow_lifecycle.terminal_statuses() == {"released", "refunded", "split"}
    for move in project_lifecycle.MOVES:
        assert move.source != "cancelled"
    for escrow_move in escrow_lifecycle.MOVES:
        assert escrow_move.source not in {"released", "refunded", "split"}
    # Every status the tables name is one the database accepts (and the other way round).
    assert {m.source for m in project_lifecycle.MOVES} | {
        m.target for m in project_lifecycle.MOVES
    } == set(project_lifecycle.STATUSES)
    assert {m.source for m in escrow_lifecycle.MOVES} | {
        m.target for m in escrow_lifecycle.MOVES
    } == set(escrow_lifecycle.STATUSES)


def test_put_status_offers_only_the_status_route_moves() -> None:
    # Disputes and awards are in the table, but not PUT /status's to make.
    assert project_lifecycle.allowed_moves("awarded", "client") == ["cancelled"]
    assert project_lifecycle.allowed_moves("delivered", "client") == ["in_progress", "completed"]
    assert project_lifecycle.allowed_moves("completed", "worker") == []
    with pytest.raises(Conflict):
        project_lifecycle.check_move(current="in_progress", target="disputed", party="client")


async def test_a_project_move_from_a_stale_status_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "in_progress")
    project_id = gig.project_id
    before = await db.fetchrow("SELECT status, updated_at FROM projects WHERE id = $1", project_id)
    # Decided from 'awarded' while another request already moved the project on.
    with pytest.raises(Conflict) as refused:
        await project_repository.move_status(
            db,
            project_id=project_id,
            source="awarded",
            target="in_progress",
            actor="worker",
            how="status",
        )
    assert refused.value.status_code == 409
    assert refused.value.code == "PROJECT_STATUS_CHANGED"
    assert refused.value.details["currentStatus"] == "in_progress"
    after = await db.fetchrow("SELECT status, updated_at FROM projects WHERE id = $1", project_id)
    assert after == before


async def test_an_escrow_move_from_a_stale_status_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "in_progress")
    hold = await db.fetchrow(
        "SELECT id, status, funded_at, updated_at FROM escrow_holds WHERE project_id = $1",
        gig.project_id,
    )
    assert hold["status"] == "funded"
    # A second payment_intent.succeeded decided from the 'unfunded' it read before the first.
    with pytest.raises(Conflict) as refused:
        await escrow_repository.move_hold(
            db, escrow_id=hold["id"], source="unfunded", target="funded", actor="system"
        )
    assert refused.value.status_code == 409
    assert refused.value.code == "ESCROW_STATUS_CHANGED"
    after = await db.fetchrow(
        "SELECT id, status, funded_at, updated_at FROM escrow_holds WHERE id = $1", hold["id"]
    )
    assert after == hold


async def test_a_move_not_in_the_table_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "delivered")
    project_id = gig.project_id
    # delivered → cancelled is no one's move: the writer refuses it before any SQL runs.
    with pytest.raises(IllegalMove):
        await project_repository.move_status(
            db,
            project_id=project_id,
            source="delivered",
            target="cancelled",
            actor="client",
            how="status",
        )
    assert await db.fetchval("SELECT status FROM projects WHERE id = $1", project_id) == "delivered"
