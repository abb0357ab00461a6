"""A worker that stops closes what its agents opened: Faust's `on_before_shutdown` runs each
closer `close_at_shutdown` registered (sent here as the worker's `App.on_stop` sends it), and the
notifier's closer shuts its PostgreSQL pool and its web-push HTTP session."""

from __future__ import annotations

import uuid

import faust
import pytest

from agents import live, notifications
from agents.notifications import Notifier, load_push
from agents.runtime import AgentDeps, RetryPolicy, close_at_shutdown
from bridges.webpush import WebPusher
from infrastructure.database import create_pool
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings

QUICK = RetryPolicy(attempts=1, first_delay_s=0.0, max_delay_s=0.0)


def _app() -> faust.App:
    return faust.App(f"shutdown-{uuid.uuid4().hex[:8]}", store="memory://", autodiscover=False)


async def test_every_closer_runs_at_shutdown_even_after_one_fails() -> None:
    app = _app()
    closed: list[str] = []

    async def broken() -> None:
        closed.append("broken")
        raise RuntimeError("the pool was already gone")

    async def fine() -> None:
        closed.append("fine")

    close_at_shutdown(app, broken)
    close_at_shutdown(app, fine)
    await app.on_before_shutdown.send()

    assert sorted(closed) == ["broken", "fine"]


async def test_the_notifier_closes_its_pool_and_its_push_session(
    database_url: str, mongo_db: MongoDatabase
) -> None:
    deps = AgentDeps(Settings(), mongo_db, mailer=None, retry=QUICK)  # type: ignore[arg-type]
    pool = await create_pool(database_url, min_size=1, max_size=1)
    hook = load_push(Settings())
    assert hook is not None and isinstance(hook.pusher, WebPusher)
    session = hook.pusher._client()  # what the first push opens
    notifier = Notifier(deps, pool=pool, push=hook)

    await notifier.close()

    assert session.closed
    assert pool.is_closing()


async def test_the_agents_register_their_closers_with_the_worker(
    monkeypatch: pytest.MonkeyPatch, mongo_db: MongoDatabase
) -> None:
    closed: list[str] = []

    async def notifier_closed(self: Notifier) -> None:
        closed.append("notifier")

    async def fanout_closed(self: live.LiveFanout) -> None:
        closed.append("live")

    monkeypatch.setattr(Notifier, "close", notifier_closed)
    monkeypatch.setattr(live.LiveFanout, "close", fanout_closed)
    app = _app()
    deps = AgentDeps(Settings(), mongo_db, mailer=None, retry=QUICK)  # type: ignore[arg-type]
    notifications.register(app, deps)
    live.register(app, deps)

    await app.on_before_shutdown.send()

    assert sorted(closed) == ["live", "notifier"]
