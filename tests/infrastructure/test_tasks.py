"""Stopping a background task whose loop may swallow a cancellation (infrastructure/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.tasks import stop_task


async def test_a_task_that_swallowed_its_cancellation_is_stopped_all_the_same() -> None:
    swallowed = 0

    async def reader() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                # What a cancel lost inside an expiring `asyncio.timeout` looks like to a loop:
                # nothing happened, read again.
                if swallowed == 0:
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), timeout=30)
    assert task.cancelled()
    assert swallowed == 1


async def test_what_the_task_raised_is_raised() -> None:
    async def failing() -> None:
        raise RuntimeError("broken")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broken"):
        await stop_task(task)


async def test_a_finished_task_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await stop_task(task)
    assert task.done() and not task.cancelled()
