"""Routers gated by their prefix still route everything under it, and nothing else."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from starlette.routing import Match

from api.routers import DomainRouter

projects = DomainRouter(prefix="/projects")
bids = DomainRouter(prefix="/projects/{project_id}/bids")


@projects.get("/{project_id}")
async def a_project(project_id: str) -> dict[str, str]:
    return {"project": project_id}


@bids.get("")
async def its_bids(project_id: str) -> dict[str, str]:
    return {"bidsOf": project_id}


def _scope(path: str) -> dict[str, object]:
    return {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}


def test_a_router_says_no_to_paths_outside_its_prefix_before_trying_its_routes() -> None:
    assert projects.matches(_scope("/api/users/me"))[0] is Match.NONE
    assert bids.matches(_scope("/api/projects"))[0] is Match.NONE
    # Under the static part of a path with a parameter: the routes decide.
    assert bids.gates() == ("/api/projects/",)


async def test_a_router_without_a_prefix_of_its_own_is_gated_by_its_routes_paths() -> None:
    spread = DomainRouter()

    @spread.get("/reviews")
    async def reviews() -> dict[str, str]:
        return {"reviews": "all"}

    @spread.get("/users/{user_id}/reviews")
    async def of_a_user(user_id: str) -> dict[str, str]:
        return {"reviewsOf": user_id}

    assert spread.gates() == ("/api/reviews", "/api/users/")
    assert spread.matches(_scope("/api/projects"))[0] is Match.NONE
    app = FastAPI()
    app.include_router(spread)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/api/reviews")).json() == {"reviews": "all"}
        assert (await c.get("/api/users/u1/reviews")).json() == {"reviewsOf": "u1"}
        assert (await c.get("/api/users/u1")).status_code == 404


async def test_gated_routers_still_route_every_path_under_them() -> None:
    app = FastAPI()
    app.include_router(projects)
    app.include_router(bids)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        project = await c.get("/api/projects/p1")
        its = await c.get("/api/projects/p1/bids")
        elsewhere = await c.get("/api/elsewhere/p1")

    assert project.json() == {"project": "p1"}
    assert its.json() == {"bidsOf": "p1"}
    assert elsewhere.status_code == 404
