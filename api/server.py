"""`tulifo api`: the FastAPI app under uvicorn.

Uvicorn imports `api.server:app_from_environment` in every worker process (with `--workers N` they
are spawned, not forked), so each builds its settings, logging and app from `TULIFO_*` itself.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from api.auth import passwords
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings, get_settings

# Open SSE/WebSocket streams would hold a graceful shutdown forever; after this many seconds
# uvicorn closes them. Below the supervisor's 15 s patience (infrastructure/local/supervise.py).
GRACEFUL_SHUTDOWN_S = 8


def app_from_environment() -> FastAPI:
    """Uvicorn's app factory."""
    from api.app import create_app

    settings = get_settings()
    configure_logging(
        service=f"{settings.service_name}-api",
        level=settings.log_level,
        json_lines=settings.log_json,
    )
    return create_app(settings)


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's own handlers drain requests, then stop).

    Proxy headers are off by default: with them on, any client could pick the IP that login
    throttling counts by sending X-Forwarded-For. Turn them on behind a proxy you name.
    """
    if workers > 1:
        # Each worker process sizes its bcrypt threads and queue by its share of the machine.
        os.environ[passwords.PROCESSES_ENV] = str(workers)
    uvicorn.run(
        "api.server:app_from_environment",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        # Our logging (configure_logging) is set up by the factory; our middleware writes the
        # access line with the request id, so uvicorn's own would be a duplicate.
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
