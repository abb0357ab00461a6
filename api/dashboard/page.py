"""GET /dashboard: the live dashboard page, served by the API itself.

Static files, no build step and nothing from a CDN: one HTML page, one script and one style
sheet, all from this origin, so the API's strict Content-Security-Policy (`default-src 'self'`,
api/middleware.py) holds for the page unchanged: no inline script or style anywhere.
The page signs in with POST /api/auth/login and reads GET /api/dashboard/stream.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from fastapi.responses import Response

from api.routers import GatedRouter

router = GatedRouter(tags=["dashboard"], include_in_schema=False)

STATIC: Final = Path(__file__).parent / "static"
# The page's files: name → content type. Only these are served; no path reaches the disk.
FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    # Named by the page, so the browser does not ask for /favicon.ico (a 404 in its console).
    "favicon.svg": "image/svg+xml",
}
# Revalidated on every load: a deploy's new script is never mixed with an old page.
_HEADERS: Final = {"Cache-Control": "no-cache"}


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=FILES[name], headers=_HEADERS)


@router.get("/dashboard")
async def dashboard_page() -> Response:
    return _file("index.html")


@router.get("/dashboard/dashboard.js")
async def dashboard_script() -> Response:
    return _file("dashboard.js")


@router.get("/dashboard/dashboard.css")
async def dashboard_styles() -> Response:
    return _file("dashboard.css")


@router.get("/dashboard/favicon.svg")
async def dashboard_icon() -> Response:
    return _file("favicon.svg")
