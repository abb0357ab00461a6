"""/api/projects: post (clients), the board (anyone), edit while open (its client), status moves
(each side its own; api/projects/lifecycle.py).

Who sees what is in api/projects/access.py: open projects are public; closed ones only to
their parties, their bidders and admins (404 for everyone else).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query, status

from api.auth.dependencies import Caller, SignedIn, Viewing, signed_in
from api.envelope import Envelope, ok
from api.errors import Invalid
from api.money import MAX_AMOUNT_CENTS
from api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor
from api.payments.provider import StripeDep
from api.projects import service
from api.projects.repository import ProjectFilters
from api.projects.schemas import (
    MAX_REQUIRED_SKILLS,
    MAX_SKILL_CHARS,
    ProjectCreate,
    ProjectOut,
    ProjectPage,
    ProjectStatus,
    ProjectUpdate,
    StatusChange,
)
from api.routers import DomainRouter
from api.schemas import ExactJsonRoute

router = DomainRouter(prefix="/projects", tags=["projects"], route_class=ExactJsonRoute)

ClientCaller = Annotated[Caller, Depends(signed_in("client"))]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(body: ProjectCreate, caller: ClientCaller) -> Envelope[ProjectOut]:
    return ok(await service.create_project(pool=caller.pool, client=caller.user, body=body))


@router.get("")
async def list_projects(
    visitor: Viewing,
    status_: Annotated[list[ProjectStatus] | None, Query(alias="status")] = None,
    skills: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_REQUIRED_SKILLS,
            description="repeat or comma-separate; matched ignoring case",
        ),
    ] = None,
    skills_match: Annotated[
        Literal["any", "all"],
        Query(alias="skillsMatch", description="any: at least one skill; all: every skill"),
    ] = "any",
    min_budget: Annotated[int | None, Query(alias="minBudget", ge=0, le=MAX_AMOUNT_CENTS)] = None,
    max_budget: Annotated[int | None, Query(alias="maxBudget", ge=0, le=MAX_AMOUNT_CENTS)] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
    mine: Annotated[
        bool,
        Query(description="clients: projects I posted; workers: projects I bid on or work on"),
    ] = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Envelope[ProjectPage]:
    """Newest first. Every filter narrows the list; `status` and `skills` may repeat."""
    if min_budget is not None and max_budget is not None and min_budget > max_budget:
        raise Invalid(
            "invalid request: minBudget: must not exceed maxBudget",
            details=[{"field": "minBudget", "message": "must not exceed maxBudget"}],
        )
    filters = ProjectFilters(
        statuses=tuple(status_ or ()),
        skills=skill_keys(skills or []),
        skills_match=skills_match,
        min_budget_cents=min_budget,
        max_budget_cents=max_budget,
        currency=currency.upper() if currency else None,
        mine=mine,
    )
    page = await service.list_projects(
        pool=visitor.pool,
        viewer=visitor.user,
        filters=filters,
        cursor=decode_cursor(cursor),
        limit=limit,
    )
    return ok(page)


def skill_keys(values: list[str]) -> tuple[str, ...]:
    """The skills asked for, lowercased and deduplicated, checked like a project's own."""
    keys = [part.strip().lower() for value in values for part in value.split(",")]
    unique = tuple(dict.fromkeys(key for key in keys if key))
    problem = None
    if len(unique) > MAX_REQUIRED_SKILLS:
        problem = f"at most {MAX_REQUIRED_SKILLS} skills"
    elif any(len(key) > MAX_SKILL_CHARS or "\x00" in key for key in unique):
        problem = f"each skill is 1..{MAX_SKILL_CHARS} characters, without NUL"
    if problem:
        raise Invalid(
            f"invalid request: skills: {problem}",
            details=[{"field": "skills", "message": problem, "type": "skills"}],
        )
    return unique


@router.get("/{project_id}")
async def read_project(project_id: uuid.UUID, visitor: Viewing) -> Envelope[ProjectOut]:
    return ok(
        await service.get_project(pool=visitor.pool, viewer=visitor.user, project_id=project_id)
    )


@router.patch("/{project_id}")
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, caller: SignedIn
) -> Envelope[ProjectOut]:
    return ok(
        await service.update_project(
            pool=caller.pool, user=caller.user, project_id=project_id, body=body
        )
    )


@router.put("/{project_id}/status")
async def change_status(
    project_id: uuid.UUID, body: StatusChange, caller: SignedIn, stripe: StripeDep
) -> Envelope[ProjectOut]:
    moved = await service.change_status(
        pool=caller.pool, stripe=stripe, user=caller.user, project_id=project_id, target=body.status
    )
    return ok(moved)
