"""The Faust application: built by `create_app(settings)`, never at import, so tests and tools can
make as many as they like, each with its own broker, ids and data directory.

Sharp edges of faust-streaming 0.15 this app is shaped around (DESIGN.md §7, faust sources):
- `table[key] = value` only works inside per-event iteration, and costs a changelog message per
  update; the stateful agents fold batches and write the memory store and changelog themselves
  (agents/folding.py), which is why the store is `memory://`.
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
from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents import client_data, escrow, live, matching, messages, notifications, ratings, search
from agents import jobs as job_scheduling
from agents.runtime import AgentDeps
from infrastructure.settings import Settings

# Every agent module registers itself here, by name: `register(app, deps)`.
AGENT_MODULES: dict[str, Callable[[faust.App, AgentDeps], None]] = {
    "notifications": notifications.register,
    "escrow": escrow.register,
    "ratings": ratings.register,
    "client_data": client_data.register,
    "matching": matching.register,
    "search": search.register,
    "jobs": job_scheduling.register,
    "messages": messages.register,
    "live": live.register,
}
# The agents that fold events into the PostgreSQL analytics read models: no outside effect, so a
# replay may run them over the whole history (with `client_data`, which folds into MongoDB:
# bridges/replay.py REPLAY_AGENTS).
READ_MODEL_AGENTS = ("escrow", "ratings")


def chosen_agents(names: str) -> list[str]:
    """The agents `TULIFO_WORKER_AGENTS` names (all when empty); ValueError for an unknown one."""
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(AGENT_MODULES))
    if unknown:
        raise ValueError(f"unknown agents {unknown}; known: {sorted(AGENT_MODULES)}")
    return wanted or list(AGENT_MODULES)


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
        # Batches the broker has not acked in this long expire and fail the send (not 20 min).
        producer_request_timeout=settings.kafka_ack_timeout_seconds,
        broker_session_timeout=settings.broker_session_timeout,
        # A dead member is noticed within the session timeout; heartbeats must come well inside.
        broker_heartbeat_interval=1.0,
        # Batches of thousands (agents/folding.py) need the stream's buffer and each poll to hold
        # them, and a commit per ~10k events rather than Faust's default of every 10 (§7).
        stream_buffer_maxsize=max(16_384, 2 * settings.fold_batch_max),
        broker_max_poll_records=settings.fold_batch_max,
        broker_commit_every=10_000,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # A new consumer group starts from the oldest event: nothing published before the
        # first worker ever started is skipped.
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.faust_web_port is not None,
        web_port=settings.faust_web_port or _FAUST_DEFAULT_WEB_PORT,
    )
    _set_fetch_wait(settings.consumer_fetch_max_wait_ms)
    deps = deps or AgentDeps.from_settings(settings)
    for name in chosen_agents(settings.worker_agents):
        AGENT_MODULES[name](app, deps)
    if settings.faust_web_port is not None:
        _add_metrics_page(app)
    return app


def _set_fetch_wait(wait_ms: int) -> None:
    """Faust builds its worker consumer with `fetch_max_wait_ms=1500` written into the call
    (faust/transport/drivers/aiokafka.py); the consumer it returns has not started yet, so setting
    the value it will hand to its fetcher is enough. Idempotent; one value per process."""
    thread_class = AIOKafkaConsumerThread
    original = getattr(thread_class, "_tulifo_original_create", None)
    if original is None:
        original = thread_class._create_worker_consumer
        thread_class._tulifo_original_create = original  # type: ignore[attr-defined]

    def create(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    thread_class._create_worker_consumer = create  # type: ignore[method-assign]


def _add_metrics_page(app: faust.App) -> None:
    # aiohttp takes the charset apart from the content type, and refuses it inside.
    content_type = "; ".join(
        part.strip() for part in CONTENT_TYPE_LATEST.split(";") if "charset" not in part
    )

    @app.page("/metrics")
    async def metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(), content_type=content_type)
