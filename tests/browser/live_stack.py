"""What the dashboard tests run: the API under uvicorn on a free port (a stream must be read as
it is written, which httpx's in-process transport does not do: it waits for the whole body),
a reader of its Server-Sent Events, and the pipeline behind it (outbox relay → Kafka → a Faust
worker running the live agent → Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from bridges.relay import OutboxRelay
from infrastructure.processes import ManagedProcess, free_port
from infrastructure.settings import Settings
from tests.conftest import wait_until
from tests.streams.workers import REPO, new_app_id, worker_env

# Joining the consumer group and the first assignment take seconds on Tansu; a busy machine
# shared with other test runs takes several times that.
PIPELINE_DEADLINE_S = 90.0


@dataclass
class LiveApi:
    url: str
    app: FastAPI

    @property
    def open_streams(self) -> int:
        hub = getattr(self.app.state, "dashboard_hub", None)
        return 0 if hub is None else int(hub.subscribers)


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[LiveApi]:
    """The API of `settings`, served by uvicorn in this event loop on a free port."""
    from api.app import create_app

    # Every test signs in from 127.0.0.1 over TCP, and the counters live in the shared Redis
    # across runs: the per-IP login limit is tested elsewhere.
    app = create_app(settings.model_copy(update={"login_max_per_ip": 1_000_000}))
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        # Streams still open at the end are cut after this, not waited for.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    # Tests stop it themselves; uvicorn's signal handlers would take over pytest's Ctrl-C.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=30, what="uvicorn")
        if task.done():
            task.result()
        yield LiveApi(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@dataclass
class Frame:
    event: str
    id: str | None
    data: Any


@dataclass
class SseStream:
    """One open GET /api/dashboard/stream, read frame by frame."""

    response: httpx.Response
    frames: list[Frame] = field(default_factory=list)
    comments: int = 0
    closed: bool = False
    _buffer: str = ""
    _chunks: AsyncIterator[str] | None = None

    async def _read_more(self) -> bool:
        if self._chunks is None:
            self._chunks = self.response.aiter_text()
        try:
            chunk = await self._chunks.__anext__()
        except (StopAsyncIteration, httpx.ReadError, httpx.RemoteProtocolError):
            self.closed = True
            return False
        self._buffer += chunk
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            self._parse(block)
        return True

    def _parse(self, block: str) -> None:
        event, event_id, data = "message", None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
        if data:
            self.frames.append(Frame(event, event_id, json.loads("\n".join(data))))

    async def until(self, predicate: Any, *, timeout: float = 30.0, what: str = "") -> Frame:
        """The first frame (read so far or to come) for which `predicate(frame)` holds."""
        checked = 0

        async def look() -> Frame:
            nonlocal checked
            while True:
                while checked < len(self.frames):
                    frame = self.frames[checked]
                    checked += 1
                    if predicate(frame):
                        return frame
                if not await self._read_more():
                    raise AssertionError(f"the stream closed before {what or predicate}")

        try:
            return await asyncio.wait_for(look(), timeout)
        except TimeoutError:
            seen = [(f.event, f.id) for f in self.frames]
            raise AssertionError(f"no {what or predicate} within {timeout}s; saw {seen}") from None

    async def until_closed(self, *, timeout: float = 30.0) -> None:
        async def drain() -> None:
            while await self._read_more():
                pass

        await asyncio.wait_for(drain(), timeout)

    def ids(self, event: str | None = None) -> set[str]:
        return {f.id for f in self.frames if f.id and (event is None or f.event == event)}


@asynccontextmanager
async def open_stream(http: httpx.AsyncClient, token: str) -> AsyncIterator[SseStream]:
    request = http.build_request(
        "GET",
        "/api/dashboard/stream",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        timeout=httpx.Timeout(10.0, read=None),
    )
    response = await http.send(request, stream=True)
    try:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response)
    finally:
        await response.aclose()


# --- the pipeline -----------------------------------------------------------------------------


@dataclass
class Pipeline:
    settings: Settings
    worker: ManagedProcess

    def worker_log(self, tail: int = 4000) -> str:
        assert self.worker.log_path is not None
        return self.worker.log_path.read_text(errors="replace")[-tail:]


def pipeline_settings(settings: Settings, kafka: str, directory: Path) -> Settings:
    """`settings` (the API's database and Redis) with Kafka, topics and a worker of its own."""
    run = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            "topic_prefix": f"dash{run}",
            "faust_app_id": new_app_id(),
            "faust_data_dir": str(directory / "faust"),
            "relay_poll_seconds": 0.1,
        }
    )


def spawn_live_worker(settings: Settings, directory: Path, name: str) -> ManagedProcess:
    """A worker running only the live agent: a child process configured by TULIFO_*."""
    env = worker_env(
        settings,
        TULIFO_FAUST_DATA_DIR=settings.faust_data_dir,
        TULIFO_WORKER_AGENTS="live",
    )
    return ManagedProcess.spawn(
        name,
        [sys.executable, "-m", "streams.worker"],
        env=env,
        cwd=REPO,
        log_path=directory / f"{name}.log",
    )


@asynccontextmanager
async def live_pipeline(settings: Settings, directory: Path) -> AsyncIterator[Pipeline]:
    """The outbox relay (a task here) and a live-agent worker, until the block ends."""
    worker = spawn_live_worker(settings, directory, "live-worker")
    relay = OutboxRelay(settings)
    relay_task = asyncio.create_task(relay.run())
    try:
        yield Pipeline(settings, worker)
    finally:
        await relay.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(relay_task, 15)
        worker.stop()
