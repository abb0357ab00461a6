"""`DomainRouter`: the router of each /api domain, which the app asks about a request only when the
path is under one of its routes' static prefixes (`GatedRouter` for the few outside /api).

FastAPI asks every included router in turn whether a request is its own, and each answers by
trying its routes' patterns one by one (~1.5 µs a route), twice for the router that matches (once
to find it, once to dispatch). With nineteen domains a request for one of the last paid ~115 µs
before its handler ran. A router none of whose routes' static prefixes the path starts with says
no at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

API_PREFIX = "/api"


class GatedRouter(APIRouter):
    """An APIRouter that answers `matches` only for paths under one of its routes' gates: the
    part of each route's path before its first parameter ("/api/projects/{id}/bids" ->
    "/api/projects/")."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gates: tuple[str, ...] = ()
        self._gated_routes = -1

    def gates(self) -> tuple[str, ...]:
        # Routes are added by decorators after __init__: the gates follow them.
        if self._gated_routes != len(self.routes):
            paths = {getattr(route, "path", "") for route in self.routes}
            self._gates = tuple(sorted({path.split("{", 1)[0] for path in paths}))
            self._gated_routes = len(self.routes)
        return self._gates

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(self.gates()):
            return Match.NONE, {}
        return super().matches(scope)


class DomainRouter(GatedRouter):
    """A GatedRouter under /api (`prefix` is the domain's part, e.g. "/users")."""

    def __init__(self, *, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(prefix=API_PREFIX + prefix, **kwargs)
