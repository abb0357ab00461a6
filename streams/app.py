"""The Faust application: built by `create_app(settings)`, never at import, so tests and tools can
make as many as they like, each with its own broker, ids and data directory.

Sharp edges of faust-streaming 0.15 this app is shaped around (DESIGN.md §7, faust sources):
- Tables may only be written inside per-event iteration (`async for event in stream`), never
  from `stream.take()` batches ("Cannot modify table key from outside of stream iteration").
- Agents run with concurrency=1: a second actor on the same partition reorders its events.
- Faust acks an event when the iteration moves on, even if the agent body raised on it; our
  agents ack by hand once effects are done (agents/runtime.py), so nothing is acked half-done.
- Offsets are committed every `broker_commit_interval` (2.8 s) of acked events: a crash replays
  up to that much, which the idempotent sinks absorb.
- Faust only creates its internal topics; the event topics are created up front by the relay and
  by the worker (bridges/kafka.ensure_topics), with `topic_partitions` partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents import notifications
from agents.runtime import AgentDeps
from infrastructure.settings import Settings

# Every agent module registers itself here: `register(app, deps)`.
AGENT_MODULES: tuple[Callable[[faust.App, AgentDeps], None], ...] = (notifications.register,)

# Faust's own default port, used only when `faust_web_port` is set without a value of its own.
_FAUST_DEFAULT_WEB_PORT = 6066


def broker_url(bootstrap: str) -> str:
    """Faust's spelling of a bootstrap list: `kafka://h1:9092;kafka://h2:9092`."""
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


def create_app(settings: Settings, deps: AgentDeps | None = None) -> faust.App:
    """The worker's app with every agent registered; nothing connects until a worker starts it."""
    app = faust.App(
        settings.faust_app_id,
        broker=broker_url(settings.kafka_bootstrap),
        store="memory://",
        datadir=str(Path(settings.faust_data_dir) / settings.faust_app_id),
        autodiscover=False,
        # Seconds in Faust's current spelling of producer_linger_ms.
        producer_linger=settings.producer_linger_ms / 1000,
        broker_session_timeout=settings.broker_session_timeout,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # A new consumer group starts from the oldest event: nothing published before the
        # first worker ever started is skipped.
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.faust_web_port is not None,
        web_port=settings.faust_web_port or _FAUST_DEFAULT_WEB_PORT,
    )
    deps = deps or AgentDeps.from_settings(settings)
    for register in AGENT_MODULES:
        register(app, deps)
    if settings.faust_web_port is not None:
        _add_metrics_page(app)
    return app


def _add_metrics_page(app: faust.App) -> None:
    @app.page("/metrics")
    async def metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST)
