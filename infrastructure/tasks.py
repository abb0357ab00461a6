"""Stopping background tasks that wait on I/O with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long one cancellation is given before it is sent again.
CANCEL_PATIENCE_S = 1.0


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and return once it has ended, raising what it raised (but its cancellation).

    One `cancel()` is not always enough on Python 3.11: a cancellation that lands while an
    `asyncio.timeout` is expiring can come out as a TimeoutError, and redis-py's
    `PubSub.get_message(timeout=...)` answers that with a quiet None, so a reader loop goes on
    as if never cancelled and whoever awaits it waits for ever (seen as an API shutdown hanging
    in tests). So the cancellation is repeated until the task is done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=CANCEL_PATIENCE_S)
    with contextlib.suppress(asyncio.CancelledError):
        await task
