"""`tulifo worker`: one Faust worker process running every agent, until SIGTERM or SIGINT.

Also runnable as `python -m streams.worker` with `TULIFO_*` in the environment (the tests do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import faust
from aiokafka.errors import KafkaError

from bridges.kafka import ensure_topics
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings, get_settings
from streams.app import create_app

log = logging.getLogger("streams.worker")  # not "__main__" under `python -m`

# While Kafka is not reachable at startup, ask again this often.
_TOPICS_RETRY_S = 2.0


def main(settings: Settings) -> None:
    """Create the topics, then run the Faust worker on this thread until a signal stops it."""
    configure_logging(
        service=f"{settings.service_name}-worker",
        level=settings.log_level,
        json_lines=settings.log_json,
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if not loop.run_until_complete(_prepare(settings)):
        loop.close()
        return
    # Faust creates only the last level of its data directory.
    Path(settings.faust_data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=settings.log_level,
        # Keep our JSON logging: mode would replace the root handlers with its colour logger.
        override_logging=False,
        quiet=True,
    )
    # The terminal spinner writes escape codes to stdout even when quiet; logs say "Ready".
    worker.spinner = None
    try:
        worker.execute_from_commandline()  # installs SIGTERM/SIGINT handlers; stops cleanly
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise


async def _prepare(settings: Settings) -> bool:
    """Create the event topics (Faust subscribes by name); False if stopped by a signal first."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            try:
                await ensure_topics(settings)
                return True
            except (KafkaError, OSError) as exc:
                log.warning("Kafka not reachable yet (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _TOPICS_RETRY_S)
        return False
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


if __name__ == "__main__":
    main(get_settings())
